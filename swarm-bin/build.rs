//! Embeds the fixture ebuild repository of tests/portage/repo in the binary,
//! so `swarm demo --builder emerge` can build it on any machine with Portage.
//! The files stay where the real-Portage tests use them: one copy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(&path, out)?;
        } else {
            out.push(path);
        }
    }
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let portage = manifest.join("../tests/portage");
    let repo = portage.join("repo");
    println!("cargo:rerun-if-changed={}", repo.display());
    let mut files = Vec::new();
    walk(&repo, &mut files)?;
    files.sort();
    let mut code = String::from(
        "/// The fixture repository (tests/portage/repo): (relative path, contents).\n\
         pub(crate) const FIXTURE_REPO: &[(&str, &[u8])] = &[\n",
    );
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        let rel = f.strip_prefix(&repo)?.to_string_lossy().replace('\\', "/");
        let abs = f.canonicalize()?;
        writeln!(
            code,
            "    ({rel:?}, include_bytes!({:?})),",
            abs.display().to_string()
        )?;
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR")?).join("fixture_repo.rs");
    std::fs::write(out, code)?;
    build_name(&manifest);
    Ok(())
}

/// `SWARM_BUILD`: the version and, in a git checkout, its commit (`0.1.0+1a2b3c4d5e6f`). Every
/// build said `0.1.0`, so a store could not tell the operator which swarm wrote it (h33 F2).
fn build_name(manifest: &Path) {
    let version = std::env::var("CARGO_PKG_VERSION").unwrap_or_default();
    let git = manifest.join("../.git");
    // Rerun when the commit moves; only files that exist (a missing one reruns every build).
    let head = git.join("HEAD");
    let mut watched = vec![head.clone(), git.join("packed-refs")];
    if let Ok(text) = std::fs::read_to_string(&head) {
        if let Some(r) = text.trim().strip_prefix("ref: ") {
            watched.push(git.join(r));
        }
    }
    for w in watched.iter().filter(|w| w.exists()) {
        println!("cargo:rerun-if-changed={}", w.display());
    }
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(manifest)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_hexdigit()));
    let name = match commit {
        Some(c) => format!("{version}+{c}"),
        None => version,
    };
    println!("cargo:rustc-env=SWARM_BUILD={name}");
}
