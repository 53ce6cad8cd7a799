//! Shared helpers for the end-to-end tests: find (or build) the `swarm`
//! binary, run real `swarm serve` processes on 127.0.0.1, and speak HTTP.
#![allow(dead_code, unreachable_pub)]

pub mod cli;
pub mod drone;
pub mod lossy_proxy;
pub mod nginx;
pub mod packages;
pub mod portage;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `swarm` binary of this workspace, built once if missing.
///
/// `SWARM_TEST_BIN` names another binary instead (a release build, for the
/// measurements the ignored tests print); nothing is built then.
pub fn swarm_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("SWARM_TEST_BIN").map(PathBuf::from) {
            assert!(
                bin.is_file(),
                "SWARM_TEST_BIN={} is not a file",
                bin.display()
            );
            return bin;
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target"));
        let bin = target.join("debug").join("swarm");
        // Always ask cargo: it is a no-op when the binary is fresh, and it
        // keeps `cargo test -p swarm-tests` from running a stale binary.
        let status = Command::new(env!("CARGO"))
            .args(["build", "-q", "-p", "swarm-bin", "--bin", "swarm"])
            .current_dir(&root)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cargo build of the swarm binary failed");
        assert!(bin.exists(), "no binary at {}", bin.display());
        bin
    })
    .clone()
}

/// SIGTERM, then SIGKILL if `child` has not exited within `grace`; reaped.
pub fn terminate_child(child: &mut Child, grace: Duration) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("pid");
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running `swarm serve` child. Killed on drop.
pub struct Server {
    pub child: Child,
    pub url: String,
    pub addr: String,
    pub data_dir: PathBuf,
    pub env: Vec<(String, String)>,
}

/// The largest of the store's files in `data`, in bytes.
pub fn largest_store_file(data: &Path) -> u64 {
    ["swarm.db", "swarm.db-wal", "swarm.db-shm"]
        .iter()
        .filter_map(|f| std::fs::metadata(data.join(f)).ok())
        .map(|m| m.len())
        .max()
        .unwrap_or(0)
}

impl Server {
    /// Sets (or with `None` lifts) the running server's file-size limit (`ulimit -f`): a limit
    /// just above the store's files fails the next write that grows one, as a full disk does.
    pub fn limit_file_size(&self, limit: Option<u64>) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        rustix::process::prlimit(
            Some(pid),
            rustix::process::Resource::Fsize,
            rustix::process::Rlimit {
                current: limit,
                maximum: None,
            },
        )
        .expect("prlimit on our own child");
    }

    /// Starts a server on a free loopback port with the given extra env.
    pub fn start(data_dir: &Path, env: &[(&str, &str)]) -> Server {
        Server::start_on(data_dir, "127.0.0.1:0", env)
    }

    /// Starts a server on `listen`.
    pub fn start_on(data_dir: &Path, listen: &str, env: &[(&str, &str)]) -> Server {
        Server::start_with(data_dir, listen, &[], env)
    }

    /// Starts a server on `listen` with extra `swarm serve` flags.
    pub fn start_with(
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Server {
        Server::start_inner(data_dir, listen, args, env, Stdio::inherit())
    }

    /// [`Server::start`] with extra `swarm serve` flags, whose log (stderr) goes to `log`,
    /// for tests of what it logs.
    pub fn start_logging_to(
        data_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
        log: &Path,
    ) -> Server {
        let file = std::fs::File::create(log).expect("server log file");
        Server::start_inner(data_dir, "127.0.0.1:0", args, env, Stdio::from(file))
    }

    fn start_inner(
        data_dir: &Path,
        listen: &str,
        args: &[&str],
        env: &[(&str, &str)],
        stderr: Stdio,
    ) -> Server {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut cmd = Command::new(swarm_bin());
        cmd.args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(args)
            .env("SWARM_LOG", "warn")
            .env("SELF_HEAL_ENABLED", "false")
            .env("RUST_BACKTRACE", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn swarm serve");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("swarm serve did not print its address within 60 s");
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        let addr = url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .to_string();
        Server {
            child,
            url,
            addr,
            data_dir: data_dir.to_path_buf(),
            env,
        }
    }

    /// The admin token the server generated.
    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("admin.token"))
            .expect("admin.token")
            .trim()
            .to_string()
    }

    /// SIGKILL, no goodbye.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.stop_with(rustix::process::Signal::TERM)
    }

    /// Sends `sig` and waits up to 20 s for the exit; its status code (None
    /// for death by a signal, or still running: then it is killed).
    pub fn stop_with(&mut self, sig: rustix::process::Signal) -> Option<i32> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, sig);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        None
    }

    /// Starts a new server on the same address and data dir.
    pub fn restart(&mut self) {
        self.kill9();
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            // The port may linger for a moment after the kill.
            let attempt =
                std::panic::catch_unwind(|| Server::start_on(&self.data_dir, &self.addr, &env));
            match attempt {
                Ok(s) => {
                    // The old child is dead already; dropping it reaps it.
                    drop(std::mem::replace(self, s));
                    return;
                }
                Err(_) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(200))
                }
                Err(e) => std::panic::resume_unwind(e),
            }
        }
    }

    /// The drone `name` as `/api/v1/nodes?all=true` lists it (`Null` if absent).
    pub fn node(&self, name: &str) -> Value {
        let (_, v) = self.get("/api/v1/nodes?all=true");
        v.as_array()
            .and_then(|n| n.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        request("GET", &format!("{}{}", self.url, path), None, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        request(
            "POST",
            &format!("{}{}", self.url, path),
            Some(&body.to_string()),
            None,
        )
    }

    pub fn admin_post(&self, path: &str, body: &Value) -> (u16, Value) {
        let t = self.token();
        request(
            "POST",
            &format!("{}{}", self.url, path),
            Some(&body.to_string()),
            Some(&t),
        )
    }

    pub fn admin_get(&self, path: &str) -> (u16, Value) {
        let t = self.token();
        request("GET", &format!("{}{}", self.url, path), None, Some(&t))
    }

    /// Waits until `f(status)` holds, or panics after `secs`.
    pub fn wait_for(&self, secs: u64, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let (code, v) = self.get("/api/v1/status");
            if code == 200 && f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status {v}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP request; any status is returned, never an error.
pub fn request(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> (u16, Value) {
    request_raw(method, url, body.map(str::as_bytes), token, &[])
}

/// One HTTP request with raw bytes and extra headers.
pub fn request_raw(
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    let mut req = agent.request(method, url);
    if let Some(t) = token {
        req = req.set("Authorization", &format!("Bearer {t}"));
    }
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match body {
        Some(b) => req.set("Content-Type", "application/json").send_bytes(b),
        None => req.call(),
    };
    let resp = match resp {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{method} {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}
