//! A real `swarm drone` process for end-to-end tests, with the bundled
//! stand-in builder, killed (with its builders) on drop.

use super::{swarm_bin, Server};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `swarm drone`. Killed, with any builder it left, on drop.
pub struct Drone {
    pub child: Child,
    pub name: String,
    pub work_dir: PathBuf,
    pub pkgdir: PathBuf,
    pub log: PathBuf,
}

impl Drone {
    /// Starts a drone with the stand-in builder, 1 s heartbeats and polls.
    pub fn start(
        server: &Server,
        dir: &Path,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Drone {
        let work_dir = dir.join(name);
        let pkgdir = work_dir.join("pkgdir");
        std::fs::create_dir_all(&work_dir).expect("work dir");
        let config = dir.join("empty-swarm.toml");
        std::fs::write(&config, "").expect("config");
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log).expect("log");
        let mut cmd = Command::new(swarm_bin());
        cmd.arg("drone");
        if !args.contains(&"--server") {
            cmd.args(["--server", &server.url]);
        }
        cmd.args(["--name", name])
            .args(["--machine-id", &format!("test-machine-{name}")])
            .args(if args.contains(&"--builder") {
                &[][..]
            } else {
                &["--builder", "standin"][..]
            })
            .args(["--heartbeat-s", "1", "--poll-s", "1"])
            .args(["--kill-grace-s", "1", "--config"])
            .arg(&config)
            .arg("--work-dir")
            .arg(&work_dir)
            .arg("--pkgdir")
            .arg(&pkgdir)
            .args(args)
            .env_remove("SWARM_URL")
            .env_remove("SWARM_DRONE_NAME")
            .env_remove("SWARM_DRONE_TOKEN")
            .env_remove("SWARM_CONFIG")
            .env("SWARM_LOG", "info")
            .env("SWARM_STANDIN_SCALE_MS", "100")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        // Stand-in builds write a few KiB: a test machine short of the real
        // 5 GiB floor must not stall every test drone (one test sets its own).
        if !args.contains(&"--min-free-disk") {
            cmd.args(["--min-free-disk", "64MiB"]);
        }
        if !args.contains(&"--portage-timestamp-file") {
            cmd.arg("--portage-timestamp-file")
                .arg(dir.join("no-timestamp"));
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn swarm drone");
        Drone {
            child,
            name: name.to_string(),
            work_dir,
            pkgdir,
            log,
        }
    }

    pub fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, sig);
    }

    /// Waits for the agent to exit; its exit code, or None on timeout.
    pub fn wait_exit(&mut self, secs: u64) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The live processes of this drone's builds: (pid, pgid) of every
    /// process in a group led by its stand-in builder.
    pub fn builder_processes(&self) -> Vec<(u32, i32)> {
        let script = self.work_dir.join("standin-builder.sh");
        let script = script.to_string_lossy();
        let leaders: Vec<i32> = processes()
            .into_iter()
            .filter(|p| p.cmdline.contains(script.as_ref()) && p.pid as i32 == p.pgid)
            .map(|p| p.pgid)
            .collect();
        processes()
            .into_iter()
            .filter(|p| leaders.contains(&p.pgid))
            .map(|p| (p.pid, p.pgid))
            .collect()
    }
}

impl Drop for Drone {
    fn drop(&mut self) {
        self.kill9();
        for (_, pgid) in self.builder_processes() {
            if let Some(pg) = rustix::process::Pid::from_raw(pgid) {
                let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
            }
        }
        if std::thread::panicking() {
            eprintln!("---- log of drone {} ----\n{}", self.name, self.log_text());
        }
    }
}

/// A live (non-zombie) process, from /proc.
pub struct Proc {
    pub pid: u32,
    pub pgid: i32,
    pub cmdline: String,
}

pub fn processes() -> Vec<Proc> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, r)| r.split_whitespace().collect())
            .unwrap_or_default();
        if matches!(fields.first(), Some(&"Z" | &"X") | None) {
            continue;
        }
        let Some(pgid) = fields.get(2).and_then(|p| p.parse().ok()) else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
            .unwrap_or_default();
        out.push(Proc { pid, pgid, cmdline });
    }
    out
}
