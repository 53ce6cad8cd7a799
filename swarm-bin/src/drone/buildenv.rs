//! The drone's build environment as Portage resolves it (issue 17): `portageq envvar -v` for the
//! variables that decide binary compatibility, and the profile `make.profile` points at. Never
//! make.conf parsed by hand: profiles, `package.env` and defaults all feed what Portage uses.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What the agent asks Portage for by default; `--env-command` replaces it.
pub(crate) const DEFAULT_ENV_COMMAND: &str =
    "portageq envvar -v ARCH CHOST CFLAGS CXXFLAGS LDFLAGS FCFLAGS USE FEATURES ACCEPT_KEYWORDS";

/// FEATURES that change what lands in a binary package; the rest (ccache, parallel-fetch, ...)
/// change how a build runs, not what it makes, and would split the fleet for nothing.
const BINARY_FEATURES: [&str; 7] = [
    "compressdebug",
    "installsources",
    "nostrip",
    "splitdebug",
    "noman",
    "nodoc",
    "noinfo",
];

/// How long Portage may take to answer; a hung `portageq` must not stop the heartbeat for long.
const TIMEOUT: Duration = Duration::from_secs(20);

/// Parses `portageq envvar -v` output: `NAME=value` or `NAME='quoted value'` per line.
pub(crate) fn parse_envvar(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let (name, raw) = line.split_once('=')?;
            let words = shell_words::split(raw).ok()?;
            let mut value = words.join(" ");
            if name == "FEATURES" {
                value = value
                    .split_whitespace()
                    .filter(|f| BINARY_FEATURES.contains(f))
                    .collect::<Vec<_>>()
                    .join(" ");
            }
            Some((name.trim().to_string(), value))
        })
        .collect()
}

/// The profile a Portage configuration root uses, as the part after `profiles/` of the path
/// `make.profile` points at (`default/linux/amd64/23.0`), or the whole path when it has none.
pub(crate) fn profile_of(config_root: &Path) -> Option<String> {
    let link = config_root.join("etc/portage/make.profile");
    let target = std::fs::canonicalize(&link).ok()?;
    let text = target.to_string_lossy().into_owned();
    Some(match text.rsplit_once("/profiles/") {
        Some((_, p)) => p.to_string(),
        None => text,
    })
}

/// Runs `argv` and reads the environment; `Err` says why there is none, in words.
pub(crate) fn read(argv: &[String]) -> Result<BTreeMap<String, String>, String> {
    let (program, args) = argv.split_first().ok_or("the env command is empty")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{program} did not start: {e}"))?;
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        // A fingerprint is small; 1 MiB bounds a runaway command.
        let _ = (&mut stdout).take(1 << 20).read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program} did not answer within {TIMEOUT:?}"));
            }
            Err(e) => return Err(format!("waiting for {program}: {e}")),
        }
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = (&mut e).take(4096).read_to_string(&mut err);
        }
        return Err(format!("{program} failed ({status}): {}", err.trim()));
    }
    let mut vars = parse_envvar(&text);
    let root = std::env::var_os("PORTAGE_OVERRIDE_EPREFIX")
        .or_else(|| std::env::var_os("PORTAGE_CONFIGROOT"))
        .unwrap_or_else(|| "/".into());
    if let Some(profile) = profile_of(Path::new(&root)) {
        vars.insert("PROFILE".into(), profile);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portageq_output_is_read_as_portage_prints_it() {
        let text = "ARCH=amd64\nCFLAGS='-O2 -pipe -march=x86-64-v3'\nLDFLAGS=''\n\
                    USE='amd64 elibc_glibc ssl'\n\
                    FEATURES='assume-digests buildpkg ccache splitdebug nostrip'\n";
        let vars = parse_envvar(text);
        assert_eq!(vars["ARCH"], "amd64");
        assert_eq!(vars["CFLAGS"], "-O2 -pipe -march=x86-64-v3");
        assert_eq!(vars["LDFLAGS"], "");
        assert_eq!(vars["USE"], "amd64 elibc_glibc ssl");
        assert_eq!(vars["FEATURES"], "splitdebug nostrip");
    }

    #[test]
    fn the_profile_is_named_from_its_profiles_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let profile = dir.path().join("repo/profiles/default/linux/amd64/23.0");
        std::fs::create_dir_all(&profile).expect("profile dir");
        std::fs::create_dir_all(dir.path().join("root/etc/portage")).expect("etc");
        std::os::unix::fs::symlink(&profile, dir.path().join("root/etc/portage/make.profile"))
            .expect("link");
        assert_eq!(
            profile_of(&dir.path().join("root")).as_deref(),
            Some("default/linux/amd64/23.0")
        );
        assert_eq!(profile_of(&dir.path().join("nowhere")), None);
    }

    #[test]
    fn a_missing_or_failing_command_says_why() {
        let missing = read(&["/nonexistent/portageq".into()]).expect_err("no such program");
        assert!(missing.contains("did not start"), "{missing}");
        let failing =
            read(&["sh".into(), "-c".into(), "echo boom >&2; exit 3".into()]).expect_err("exit 3");
        assert!(failing.contains("boom"), "{failing}");
    }
}
