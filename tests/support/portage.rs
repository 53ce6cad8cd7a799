//! The real Portage for end-to-end tests (tests/portage/): find its venv and
//! make isolated Portage machines with `prefix.sh`.

use super::{swarm_bin, Server};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

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

/// A Portage prefix: its directory and the environment that makes emerge work there.
pub struct Machine {
    pub dir: PathBuf,
    pub env: Vec<(String, String)>,
}

impl Machine {
    /// A machine whose make.conf sets `cflags`.
    pub fn new(venv: &Path, dir: &Path, cflags: &str) -> Machine {
        let cflags = format!("CFLAGS=\"{cflags}\"");
        Machine::with(venv, dir, &["--make-conf-extra", &cflags])
    }

    /// A machine made with these `prefix.sh` options (`--repo DIR`, ...).
    pub fn with(venv: &Path, dir: &Path, options: &[&str]) -> Machine {
        Machine {
            dir: dir.to_path_buf(),
            env: machine_env_with(dir, venv, options),
        }
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.envs(self.env.iter().map(|(k, v)| (k, v)))
            .env_remove("PORTAGE_BINHOST");
        c
    }
}

/// A real `swarm drone` whose builder is the real emerge in its machine (its process, its log);
/// killed on drop.
pub struct EmergeDrone(pub Child, pub PathBuf);

impl EmergeDrone {
    pub fn start(server: &Server, m: &Machine, name: &str) -> EmergeDrone {
        let log = m.dir.join("drone.log");
        let config = m.dir.join("empty-swarm.toml");
        std::fs::write(&config, "").expect("config");
        let child = m
            .command(&swarm_bin().to_string_lossy())
            .args(["drone", "--server", &server.url, "--name", name])
            .args(["--machine-id", &format!("profiles-e2e-{name}")])
            .args([
                "--builder",
                "emerge --oneshot --buildpkg --usepkg=n --nodeps --quiet {atom}",
            ])
            .args(["--heartbeat-s", "1", "--poll-s", "1", "--kill-grace-s", "1"])
            .args(["--min-free-disk", "64MiB", "--config"])
            .arg(&config)
            .arg("--work-dir")
            .arg(m.dir.join("work"))
            .arg("--pkgdir")
            .arg(m.dir.join("pkgdir"))
            .arg("--portage-timestamp-file")
            .arg(m.dir.join("no-timestamp"))
            .env_remove("SWARM_URL")
            .env_remove("SWARM_CONFIG")
            .env("SWARM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log"))
            .spawn()
            .expect("spawn swarm drone");
        EmergeDrone(child, log)
    }
}

impl Drop for EmergeDrone {
    fn drop(&mut self) {
        super::terminate_child(&mut self.0, Duration::from_secs(5));
    }
}
