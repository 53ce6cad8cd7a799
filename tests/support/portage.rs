//! The real Portage for end-to-end tests (tests/portage/): find its venv and
//! make isolated Portage machines with `prefix.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The Portage venv (`SWARM_PORTAGE_VENV`, else `target/portage-venv`), or
/// `None` with the reason printed outside CI; under `CI=true` a missing venv
/// fails the test, so CI never passes by skipping.
pub fn venv() -> Option<PathBuf> {
    let venv = std::env::var_os("SWARM_PORTAGE_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/portage-venv"));
    if venv.join("bin/emerge").is_file() {
        return Some(venv);
    }
    let why = format!(
        "no Portage venv at {} (run tests/portage/venv.sh or set SWARM_PORTAGE_VENV)",
        venv.display()
    );
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{why}: CI must run the real-Portage tests");
    }
    eprintln!("SKIPPED: {why}");
    None
}

/// Makes the Portage machine `dir` with tests/portage/prefix.sh and returns
/// the environment that makes emerge work there.
pub fn machine_env(dir: &Path, venv: &Path) -> Vec<(String, String)> {
    machine_env_with(dir, venv, &[])
}

/// [`machine_env`] with more `prefix.sh` options (`--repo DIR`, ...).
pub fn machine_env_with(dir: &Path, venv: &Path, options: &[&str]) -> Vec<(String, String)> {
    let out = Command::new("bash")
        .arg(repo_root().join("tests/portage/prefix.sh"))
        .arg(dir)
        .args(options)
        .env("SWARM_PORTAGE_VENV", venv)
        .output()
        .expect("prefix.sh runs");
    assert!(
        out.status.success(),
        "prefix.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = std::env::var("PATH").unwrap_or_default();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').replace("$PATH", &path)))
        .collect()
}

/// Copies the fixture repository (tests/portage/repo) to `dest`, so a test can
/// add files (a `metadata/timestamp.chk`) without touching the committed one.
pub fn copy_fixture_repo(dest: &Path) {
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo_root().join("tests/portage/repo"))
        .arg(dest)
        .status()
        .expect("cp runs");
    assert!(status.success(), "copying the fixture repository failed");
}
