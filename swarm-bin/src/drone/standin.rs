//! The STAND-IN builder: `swarm-bin/scripts/standin-builder.sh`, compiled into
//! the binary so `swarm drone --builder standin` (and `swarm demo`) work from
//! an installed `swarm` alone. It compiles nothing: it sleeps in proportion to
//! a package's size, writes a small gpkg-shaped tar to `$PKGDIR`, and fails or
//! "runs out of memory" for the atoms listed in `SWARM_STANDIN_FAIL` /
//! `SWARM_STANDIN_OOM`. The script's header documents its knobs.

use anyhow::Context;
use std::path::{Path, PathBuf};

/// The script's text.
pub(crate) const SCRIPT: &str = include_str!("../../scripts/standin-builder.sh");

/// The file name it is written under in the work dir.
pub(crate) const FILE_NAME: &str = "standin-builder.sh";

/// Writes the script into `dir` (replacing an older copy) and returns the
/// builder template that runs it.
pub(crate) fn install(dir: &Path) -> anyhow::Result<Vec<String>> {
    let path: PathBuf = dir.join(FILE_NAME);
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    std::fs::write(&tmp, SCRIPT).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(vec![
        "sh".into(),
        path.to_string_lossy().into_owned(),
        "{atom}".into(),
        "{category}".into(),
        "{pf}".into(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drone::template::argv;
    use std::process::Command;
    use swarm_core::Atom;

    fn run(dir: &Path, atom: &str, env: &[(&str, &str)]) -> (i32, String, PathBuf) {
        let template = install(dir).expect("install");
        let atom = Atom::parse(atom).expect("atom");
        let argv = argv(&template, &atom);
        let pkgdir = dir.join("pkgdir");
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .env("PKGDIR", &pkgdir)
            .env("SWARM_STANDIN_SCALE_MS", "10")
            .envs(env.iter().copied())
            .output()
            .expect("runs");
        let text = String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr);
        let artifact = pkgdir
            .join(atom.category())
            .join(format!("{}.gpkg.tar", atom.pf()));
        (out.status.code().unwrap_or(-1), text, artifact)
    }

    #[test]
    fn the_script_says_it_is_a_stand_in() {
        assert!(SCRIPT.contains("STAND-IN BUILDER -- NOT A REAL BUILDER"));
    }

    #[test]
    fn it_writes_a_gpkg_shaped_tar_of_at_least_one_kib() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, text, artifact) = run(dir.path(), "dev-libs/foo-1.0", &[]);
        assert_eq!(code, 0, "{text}");
        let meta = std::fs::metadata(&artifact).expect("artifact");
        assert!(meta.len() >= 1024);
        let list = Command::new("tar")
            .arg("-tf")
            .arg(&artifact)
            .output()
            .expect("tar");
        let list = String::from_utf8_lossy(&list.stdout);
        for member in [
            "foo-1.0/gpkg-1",
            "foo-1.0/metadata.tar",
            "foo-1.0/image.tar",
        ] {
            assert!(list.lines().any(|l| l == member), "{member} in {list}");
        }
    }

    #[test]
    fn listed_atoms_fail_or_run_out_of_memory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (code, _, artifact) = run(
            dir.path(),
            "dev-libs/foo-1.0",
            &[("SWARM_STANDIN_FAIL", "a/b-1, =dev-libs/foo-1.0")],
        );
        assert_eq!(code, 1);
        assert!(!artifact.exists());
        let (code, text, artifact) = run(
            dir.path(),
            "dev-libs/foo-1.0",
            &[("SWARM_STANDIN_OOM", "dev-libs/foo-1.0")],
        );
        assert_eq!(code, 137);
        assert!(text.contains("Out of memory: Killed process"), "{text}");
        assert!(!artifact.exists());
    }

    #[test]
    fn a_sizes_file_sets_the_duration() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sizes = dir.path().join("sizes");
        std::fs::write(&sizes, "# atom units\n=dev-libs/foo-1.0 7\n").expect("write");
        let sizes = sizes.to_string_lossy().into_owned();
        let (code, text, _) = run(
            dir.path(),
            "dev-libs/foo-1.0",
            &[("SWARM_STANDIN_SIZES", sizes.as_str())],
        );
        assert_eq!(code, 0);
        assert!(text.contains("compiling for 0.070s (7 units"), "{text}");
    }
}
