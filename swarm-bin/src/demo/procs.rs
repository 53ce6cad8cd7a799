//! The demo's children: one `swarm serve` and N `swarm drone`s, all this very
//! executable, and the guarantee that none of them (nor a builder they
//! started) outlives the demo.
//!
//! - Each child leads its own process group, so a terminal's Ctrl-C reaches
//!   only the demo, which then stops the children in order: drones first
//!   (SIGTERM; they kill their builds and hand the leases back while the
//!   server still answers), then the server, each with SIGKILL after a grace.
//! - The demo makes itself a child subreaper, so a builder orphaned by a
//!   killed drone is re-parented to the demo rather than to init.
//! - Every child gets `SWARM_DEMO_RUN=<run id>` in its environment, which the
//!   drones pass on to their builders. The final sweep kills whatever still
//!   carries the mark, or is still the demo's child, and reaps it.
//!
//! The [`Supervisor`] does all this on drop too, so an error or a panic
//! cleans up the same way as a normal end.

use anyhow::{bail, Context};
use rustix::process::{kill_process, kill_process_group, waitpid, Pid, Signal, WaitOptions};
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The environment variable that marks the demo's processes.
pub(crate) const RUN_MARK: &str = "SWARM_DEMO_RUN";

/// How long a child may take to stop after SIGTERM before it gets SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(10);

/// Environment variables a child must not inherit from the demo's caller
/// besides the server's and agent's own (`SWARM_*`) and Build Swarm v3's
/// (`swarm_net::settings::v3_variables`): the demo sets its own.
const OTHER_ENV: &[&str] = &["PKGDIR"];

/// One child process.
#[derive(Debug)]
pub(crate) struct Proc {
    /// `server` or the drone's name.
    pub(crate) name: String,
    /// Its pid (and process group id).
    pub(crate) pid: u32,
    /// Where its stdout and stderr go.
    pub(crate) log: PathBuf,
    child: Child,
    status: Option<ExitStatus>,
}

impl Proc {
    fn poll(&mut self) -> bool {
        if self.status.is_none() {
            if let Ok(Some(s)) = self.child.try_wait() {
                self.status = Some(s);
            }
        }
        self.status.is_some()
    }

    fn signal(&self, sig: Signal) {
        if self.status.is_some() {
            return;
        }
        if let Some(pid) = pid_of(self.pid) {
            let _ = kill_process(pid, sig);
        }
    }

    fn kill_group(&self) {
        if self.status.is_some() {
            return;
        }
        if let Some(pid) = pid_of(self.pid) {
            let _ = kill_process_group(pid, Signal::KILL);
            let _ = kill_process(pid, Signal::KILL);
        }
    }

    fn wait(&mut self) {
        if self.status.is_none() {
            if let Ok(s) = self.child.wait() {
                self.status = Some(s);
            }
        }
    }
}

/// What the final cleanup did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub(crate) struct Cleanup {
    /// Children that had to be SIGKILLed after the grace.
    pub(crate) forced: Vec<String>,
    /// Stray processes (orphaned builders) the sweep killed.
    pub(crate) swept: Vec<u32>,
    /// Pids of the demo's processes still alive afterwards (should be empty).
    pub(crate) left: Vec<u32>,
}

/// What killing a drone did.
#[derive(Clone, Debug)]
pub(crate) struct Killed {
    /// The drone's pid.
    pub(crate) pid: u32,
    /// Process groups of the builds it was running, killed with it.
    pub(crate) builds: Vec<u32>,
}

/// Starts, kills and finally stops the demo's children.
#[derive(Debug)]
pub(crate) struct Supervisor {
    run_id: String,
    exe: PathBuf,
    server: Option<Proc>,
    drones: Vec<Proc>,
    cleaned: Option<Cleanup>,
}

impl Supervisor {
    /// A supervisor for children of `exe`, marked with `run_id`. Makes this
    /// process a child subreaper (best effort: without it the mark still
    /// finds orphaned builders).
    pub(crate) fn new(exe: PathBuf, run_id: String) -> Supervisor {
        if let Err(e) = rustix::process::set_child_subreaper(Some(rustix::process::getpid())) {
            tracing::debug!(error = %e, "cannot become a child subreaper");
        }
        Supervisor {
            run_id,
            exe,
            server: None,
            drones: Vec::new(),
            cleaned: None,
        }
    }

    /// The mark every child carries.
    pub(crate) fn run_id(&self) -> &str {
        &self.run_id
    }

    /// The server, once started.
    pub(crate) fn server(&self) -> Option<&Proc> {
        self.server.as_ref()
    }

    /// The drones, in start order (killed ones included).
    pub(crate) fn drones(&self) -> &[Proc] {
        &self.drones
    }

    /// A command for this executable with a clean, marked environment, in its
    /// own process group, stdin closed.
    fn command(&self, args: &[String], env: &[(String, String)]) -> Command {
        let mut cmd = Command::new(&self.exe);
        cmd.args(args).stdin(Stdio::null()).process_group(0);
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            let ours = key.starts_with("SWARM_") && key != "SWARM_LOG";
            let v3 = key.starts_with("SELF_HEAL_")
                || swarm_net::settings::v3_variables().any(|n| n == key);
            if ours || v3 || OTHER_ENV.contains(&key) {
                cmd.env_remove(key);
            }
        }
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        cmd.env(RUN_MARK, &self.run_id);
        cmd
    }

    /// Starts `swarm serve` with `args` and waits for its "listening on" line.
    /// Returns the URL it serves.
    pub(crate) fn start_server(
        &mut self,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<String> {
        let stderr = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let mut out_log = stderr
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        let mut child = self
            .command(args, env)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("starting {} serve", self.exe.display()))?;
        let stdout = child.stdout.take();
        let pid = child.id();
        self.server = Some(Proc {
            name: "server".into(),
            pid,
            log: log.to_path_buf(),
            child,
            status: None,
        });
        let (tx, rx) = mpsc::channel();
        if let Some(stdout) = stdout {
            // Reads the ready line, then keeps draining stdout into the log so
            // the server never writes into a closed pipe.
            std::thread::Builder::new()
                .name("demo-server-stdout".into())
                .spawn(move || {
                    let mut tx = Some(tx);
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if let Some(url) = line.strip_prefix("listening on ") {
                            if let Some(tx) = tx.take() {
                                let _ = tx.send(url.trim().to_string());
                            }
                        }
                        let _ = writeln!(out_log, "{line}");
                    }
                })
                .context("starting the server's stdout reader")?;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(url) => return Ok(url),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    bail!(
                        "swarm serve closed its stdout without saying where it listens\n{}",
                        tail(log)
                    )
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(server) = self.server.as_mut() {
                if server.poll() {
                    bail!(
                        "swarm serve exited ({}) before listening\n{}",
                        status_text(server.status),
                        tail(log)
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("swarm serve did not listen within 30 s\n{}", tail(log));
            }
        }
    }

    /// Starts one `swarm drone` named `name`, logging to `log`.
    pub(crate) fn start_drone(
        &mut self,
        name: &str,
        args: &[String],
        env: &[(String, String)],
        log: &Path,
    ) -> anyhow::Result<u32> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let err = out
            .try_clone()
            .with_context(|| format!("opening {}", log.display()))?;
        let child = self
            .command(args, env)
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting drone {name}"))?;
        let pid = child.id();
        self.drones.push(Proc {
            name: name.to_string(),
            pid,
            log: log.to_path_buf(),
            child,
            status: None,
        });
        Ok(pid)
    }

    /// The first child found to have exited on its own, with its log's tail.
    pub(crate) fn check_alive(&mut self, killed: Option<&str>) -> anyhow::Result<()> {
        let procs = self.server.iter_mut().chain(self.drones.iter_mut());
        for p in procs {
            if Some(p.name.as_str()) == killed {
                continue;
            }
            if p.poll() {
                bail!(
                    "{} (pid {}) exited unexpectedly ({})\n{}",
                    p.name,
                    p.pid,
                    status_text(p.status),
                    tail(&p.log)
                );
            }
        }
        Ok(())
    }

    /// SIGKILLs a drone and the builds it runs, as if its machine lost power.
    pub(crate) fn kill_drone(&mut self, name: &str) -> anyhow::Result<Killed> {
        let Some(p) = self.drones.iter_mut().find(|p| p.name == name) else {
            bail!("no drone named {name}");
        };
        if p.poll() {
            bail!("drone {name} has already exited");
        }
        // Its builders lead their own process groups; find them first.
        let builds: Vec<u32> = processes()
            .into_iter()
            .filter(|s| s.ppid == p.pid)
            .map(|s| s.pid)
            .collect();
        p.signal(Signal::KILL);
        for &b in &builds {
            if let Some(pid) = pid_of(b) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        }
        p.wait();
        Ok(Killed { pid: p.pid, builds })
    }

    /// Stops every child (drones, then the server), sweeps up strays and
    /// reports. Runs once; later calls return the first report.
    pub(crate) fn shutdown(&mut self) -> Cleanup {
        if let Some(done) = &self.cleaned {
            return done.clone();
        }
        let mut cleanup = Cleanup::default();
        stop_all(&mut self.drones, &mut cleanup);
        if let Some(server) = self.server.as_mut() {
            stop_all(std::slice::from_mut(server), &mut cleanup);
        }
        cleanup.swept = sweep(&self.run_id);
        let known: Vec<u32> = self
            .server
            .iter()
            .chain(&self.drones)
            .map(|p| p.pid)
            .chain(cleanup.swept.iter().copied())
            .collect();
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            reap_adopted();
            let marked = marked_processes(&self.run_id);
            cleanup.left = known
                .iter()
                .copied()
                .filter(|&pid| is_alive(pid))
                .chain(marked)
                .collect();
            cleanup.left.sort_unstable();
            cleanup.left.dedup();
            if cleanup.left.is_empty() || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.cleaned = Some(cleanup.clone());
        cleanup
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// SIGTERM to all, wait up to the grace, then SIGKILL the rest.
fn stop_all(procs: &mut [Proc], cleanup: &mut Cleanup) {
    for p in procs.iter_mut() {
        if !p.poll() {
            p.signal(Signal::TERM);
        }
    }
    let deadline = Instant::now() + STOP_GRACE;
    while procs.iter_mut().any(|p| !p.poll()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    for p in procs.iter_mut() {
        if !p.poll() {
            cleanup.forced.push(p.name.clone());
            p.kill_group();
            p.wait();
        }
    }
}

/// Kills every process carrying the run's mark or still parented to the demo
/// (an orphaned builder after the agents are gone), whole process group
/// included, and reaps the ones that are the demo's. Returns their pids.
fn sweep(run_id: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut swept = Vec::new();
    for _ in 0..5 {
        let strays: Vec<Stat> = processes()
            .into_iter()
            .filter(|s| s.pid != me && s.state != 'Z')
            .filter(|s| s.ppid == me || has_mark(s.pid, run_id))
            .collect();
        if strays.is_empty() {
            break;
        }
        for s in &strays {
            if let Some(pid) = pid_of(s.pid) {
                if s.pgid == s.pid {
                    let _ = kill_process_group(pid, Signal::KILL);
                }
                let _ = kill_process(pid, Signal::KILL);
            }
            swept.push(s.pid);
        }
        std::thread::sleep(Duration::from_millis(50));
        reap_adopted();
    }
    swept.sort_unstable();
    swept.dedup();
    swept
}

/// Reaps exited processes the demo adopted as a subreaper. Only called once
/// every `Child` has been waited for, so it cannot steal their statuses.
fn reap_adopted() {
    let me = std::process::id();
    for s in processes() {
        if s.ppid == me && s.state == 'Z' {
            if let Some(pid) = pid_of(s.pid) {
                let _ = waitpid(Some(pid), WaitOptions::NOHANG);
            }
        }
    }
}

/// Live (not zombie) processes marked with `run_id`.
fn marked_processes(run_id: &str) -> Vec<u32> {
    processes()
        .into_iter()
        .filter(|s| s.state != 'Z' && has_mark(s.pid, run_id))
        .map(|s| s.pid)
        .collect()
}

/// Whether `pid` exists and is not a zombie.
pub(crate) fn is_alive(pid: u32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z')
}

/// The fields of `/proc/<pid>/stat` the demo needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    pid: u32,
    state: char,
    ppid: u32,
    pgid: u32,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(pid, &text)
}

/// `pid (comm) state ppid pgrp ...`; `comm` may hold spaces and parentheses,
/// so the fields are counted from its last `)`.
fn parse_stat(pid: u32, text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgid = fields.next()?.parse().ok()?;
    Some(Stat {
        pid,
        state,
        ppid,
        pgid,
    })
}

/// Every process this user can see.
fn processes() -> Vec<Stat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(stat)
        .collect()
}

/// Whether a process's environment holds `SWARM_DEMO_RUN=<run_id>`.
fn has_mark(pid: u32, run_id: &str) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    let mark = format!("{RUN_MARK}={run_id}");
    env.split(|&b| b == 0).any(|kv| kv == mark.as_bytes())
}

fn pid_of(raw: u32) -> Option<Pid> {
    i32::try_from(raw).ok().and_then(Pid::from_raw)
}

fn status_text(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "still running".into(), |s| s.to_string())
}

/// The last lines of a log, for an error message.
pub(crate) fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(15);
    format!(
        "last lines of {}:\n{}",
        path.display(),
        lines[from..].join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_is_read_past_a_command_name_with_spaces_and_parentheses() {
        let s = parse_stat(42, "42 (sh (x) y) S 7 42 42 0 -1 4194560 0 0");
        assert_eq!(
            s,
            Some(Stat {
                pid: 42,
                state: 'S',
                ppid: 7,
                pgid: 42
            })
        );
        assert_eq!(parse_stat(1, "garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_carries_no_mark() {
        assert!(is_alive(std::process::id()));
        assert!(!has_mark(std::process::id(), "no-such-run"));
    }
}
