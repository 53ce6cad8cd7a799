//! Runs one builder in its own process group and watches it.
//!
//! The builder is the leader of a new process group (`process_group(0)`), so
//! emerge, its ebuild phases, make and every compiler they start can be
//! stopped together: TERM to the group, a grace period, then KILL to the
//! group. Killing only the leader would orphan the compilers, which is how v3
//! drones ended up with builds running for packages they no longer held.
//! A terminal's Ctrl-C does not reach the group either: the agent decides.
//!
//! stdout and stderr go to one log file; the log's growth is the build's
//! sign of life (stall timeout), next to an overall timeout.

use rustix::io::Errno;
use rustix::process::{kill_process_group, test_kill_process_group, Pid, Signal};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often the watcher looks at the child, its log and the stop flag.
const TICK: Duration = Duration::from_millis(100);

/// One build to run.
#[derive(Debug)]
pub(crate) struct BuildSpec<'a> {
    pub(crate) argv: &'a [String],
    pub(crate) env: Vec<(String, String)>,
    pub(crate) dir: &'a Path,
    pub(crate) log: &'a Path,
    pub(crate) stall_timeout: Option<Duration>,
    pub(crate) build_timeout: Option<Duration>,
    pub(crate) kill_grace: Duration,
}

/// How a build ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The builder exited with this code.
    Exited(i32),
    /// The builder died of a signal the agent did not send.
    Signaled(i32),
    /// The log did not grow for the stall timeout; the group was killed.
    Stalled(Duration),
    /// The build ran past the overall timeout; the group was killed.
    TimedOut(Duration),
    /// The agent asked it to stop (revoke, return, shutdown); the group was killed.
    Stopped,
    /// The builder could not be started.
    SpawnFailed(String),
}

/// A finished build.
#[derive(Clone, Debug)]
pub(crate) struct Finished {
    pub(crate) ended: Ended,
    pub(crate) took: Duration,
}

/// Runs the build to its end. `on_spawn` gets the process group id;
/// `should_stop` is polled every tick.
pub(crate) fn run(
    spec: &BuildSpec<'_>,
    on_spawn: impl FnOnce(i32),
    should_stop: impl Fn() -> bool,
) -> Finished {
    let start = Instant::now();
    let ended = match spawn(spec) {
        Ok(child) => {
            let pgid = i32::try_from(child.id()).unwrap_or(i32::MAX);
            on_spawn(pgid);
            watch(spec, child, pgid, start, should_stop)
        }
        Err(e) => Ended::SpawnFailed(e),
    };
    Finished {
        ended,
        took: start.elapsed(),
    }
}

fn spawn(spec: &BuildSpec<'_>) -> Result<Child, String> {
    use std::io::Write;
    let (program, args) = spec
        .argv
        .split_first()
        .ok_or_else(|| "empty builder command".to_string())?;
    // Build output: not for every user of the drone (h11).
    let mut log = std::os::unix::fs::OpenOptionsExt::mode(
        std::fs::OpenOptions::new().create(true).append(true),
        0o640,
    )
    .open(spec.log)
    .map_err(|e| format!("cannot open log {}: {e}", spec.log.display()))?;
    let _ = writeln!(
        log,
        "swarm drone: running {}",
        shell_words::join(spec.argv.iter().map(String::as_str))
    );
    let err = log
        .try_clone()
        .map_err(|e| format!("cannot open log {}: {e}", spec.log.display()))?;
    crate::child_env::without_secrets(&mut Command::new(program))
        .args(args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(spec.dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))
}

fn watch(
    spec: &BuildSpec<'_>,
    mut child: Child,
    pgid: i32,
    start: Instant,
    should_stop: impl Fn() -> bool,
) -> Ended {
    let mut log_len = log_size(spec.log);
    let mut grew_at = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                // The leader is gone; anything it left behind in the group goes too.
                if group_alive(pgid) {
                    tracing::warn!(pgid, "builder left processes behind; killing them");
                    let _ = kill_group(pgid, Signal::KILL);
                    wait_group_gone(pgid, Duration::from_secs(2));
                }
                // Killed while a stop is asked: the agent leaving at once kills every build
                // itself, and such a build is stopped, not a crash to report (h45 F6). An exit of
                // its own, 0 included, stays what it was.
                if status.signal().is_some() && should_stop() {
                    return Ended::Stopped;
                }
                return ended_of(status);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(pgid, "cannot wait for the builder: {e}");
                stop_group(&mut child, pgid, spec.kill_grace);
                return Ended::SpawnFailed(format!("lost track of the builder: {e}"));
            }
        }
        if should_stop() {
            stop_group(&mut child, pgid, spec.kill_grace);
            return Ended::Stopped;
        }
        if let Some(limit) = spec.build_timeout {
            if start.elapsed() >= limit {
                stop_group(&mut child, pgid, spec.kill_grace);
                return Ended::TimedOut(limit);
            }
        }
        if let Some(limit) = spec.stall_timeout {
            let len = log_size(spec.log);
            if len != log_len {
                log_len = len;
                grew_at = Instant::now();
            } else if grew_at.elapsed() >= limit {
                stop_group(&mut child, pgid, spec.kill_grace);
                return Ended::Stalled(limit);
            }
        }
        std::thread::sleep(TICK);
    }
}

fn ended_of(status: ExitStatus) -> Ended {
    match (status.code(), status.signal()) {
        (Some(code), _) => Ended::Exited(code),
        (None, Some(sig)) => Ended::Signaled(sig),
        (None, None) => Ended::Exited(-1),
    }
}

fn log_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn kill_group(pgid: i32, sig: Signal) -> rustix::io::Result<()> {
    match Pid::from_raw(pgid) {
        Some(pid) => kill_process_group(pid, sig),
        None => Err(Errno::SRCH),
    }
}

/// Whether a live process is still in the group. Zombies do not count: they
/// are dead already, and their reaping is up to their parent (for orphaned
/// grandchildren, init, which may take its time).
pub(crate) fn group_alive(pgid: i32) -> bool {
    let Some(pid) = Pid::from_raw(pgid) else {
        return false;
    };
    if test_kill_process_group(pid).is_err() {
        return false;
    }
    // Something is there; without /proc, assume it lives.
    live_members(pgid).is_none_or(|n| n > 0)
}

/// Live (non-zombie) processes in process group `pgid`, from `/proc`.
pub(crate) fn live_members(pgid: i32) -> Option<usize> {
    let dir = std::fs::read_dir("/proc").ok()?;
    let mut n = 0;
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let (state, pgrp) = stat_state_and_pgrp(&stat);
        if pgrp == Some(pgid) && !matches!(state, Some("Z" | "X")) {
            n += 1;
        }
    }
    Some(n)
}

/// State and process group from a `/proc/<pid>/stat` line. The command name
/// is in parentheses and may contain anything, so fields are counted after the last `)`.
fn stat_state_and_pgrp(stat: &str) -> (Option<&str>, Option<i32>) {
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    (
        fields.first().copied(),
        fields.get(2).and_then(|p| p.parse().ok()),
    )
}

fn wait_group_gone(pgid: i32, limit: Duration) {
    let deadline = Instant::now() + limit;
    while group_alive(pgid) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// TERM to the whole group, `grace` for it to go, then KILL to the whole
/// group; reaps the leader either way.
pub(crate) fn stop_group(child: &mut Child, pgid: i32, grace: Duration) {
    tracing::info!(pgid, "stopping the build: TERM to its process group");
    let _ = kill_group(pgid, Signal::TERM);
    let deadline = Instant::now() + grace;
    let mut reaped = false;
    while Instant::now() < deadline {
        if !reaped {
            reaped = matches!(child.try_wait(), Ok(Some(_)));
        }
        if reaped && !group_alive(pgid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if group_alive(pgid) {
        tracing::warn!(pgid, "build still running after the grace period: KILL");
        let _ = kill_group(pgid, Signal::KILL);
    }
    if !reaped {
        let _ = child.wait();
    }
    // Grandchildren now belong to init (or a subreaper), which reaps them.
    wait_group_gone(pgid, Duration::from_secs(2));
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn spec<'a>(argv: &'a [String], dir: &'a Path, log: &'a Path) -> BuildSpec<'a> {
        BuildSpec {
            argv,
            env: vec![("SWARM_ATOM".into(), "=a/b-1".into())],
            dir,
            log,
            stall_timeout: None,
            build_timeout: None,
            kill_grace: Duration::from_millis(500),
        }
    }

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    /// Whether `pid` is a live (non-zombie) process, read from `/proc`.
    pub(crate) fn process_alive(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Ok(stat) => {
                // The state follows the parenthesised command name.
                let state = stat
                    .rsplit_once(')')
                    .and_then(|(_, rest)| rest.split_whitespace().next());
                !matches!(state, Some("Z" | "X") | None)
            }
            Err(_) => false,
        }
    }

    /// Pids of the live processes whose process group is `pgid`.
    pub(crate) fn group_members(pgid: i32) -> Vec<u32> {
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
            let (state, pgrp) = stat_state_and_pgrp(&stat);
            if pgrp == Some(pgid) && !matches!(state, Some("Z" | "X")) {
                out.push(pid);
            }
        }
        out
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let stat = "4242 (a) b (c)) S 1 4240 4240 0 -1 4194560";
        assert_eq!(stat_state_and_pgrp(stat), (Some("S"), Some(4240)));
        assert_eq!(stat_state_and_pgrp("garbage"), (None, None));
    }

    #[test]
    fn output_goes_to_the_log_and_the_exit_code_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let argv = sh("echo out; echo err >&2; echo \"$SWARM_ATOM\"; exit 3");
        let f = run(&spec(&argv, dir.path(), &log), |_| {}, || false);
        assert_eq!(f.ended, Ended::Exited(3));
        let text = std::fs::read_to_string(&log).expect("log");
        assert!(text.contains("swarm drone: running sh -c"), "{text}");
        assert!(text.contains("out\n") && text.contains("err\n") && text.contains("=a/b-1"));
    }

    #[test]
    fn a_builder_that_cannot_start_is_reported_not_panicked_on() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let argv = vec!["/nonexistent/builder".to_string()];
        let f = run(&spec(&argv, dir.path(), &log), |_| {}, || false);
        assert!(matches!(f.ended, Ended::SpawnFailed(ref e) if e.contains("cannot start")));
    }

    #[test]
    fn a_signal_the_agent_did_not_send_is_reported_as_such() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let argv = sh("kill -9 $$");
        let f = run(&spec(&argv, dir.path(), &log), |_| {}, || false);
        assert_eq!(f.ended, Ended::Signaled(9));
    }

    /// A third signal kills every build's group at once, without the runner's stop: the build
    /// is stopped, not a crash (it was reported as an `infra` failure).
    #[test]
    fn a_build_killed_while_a_stop_is_asked_is_stopped_not_crashed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let mark = dir.path().join("pid");
        // The stop is asked once the builder is reaped, which only the runner's own wait does:
        // the runner has seen its end before the stop is asked, whatever the machine's load.
        let asked = || {
            std::fs::read_to_string(&mark)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
                .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
        };
        let argv = sh(&format!("echo $$ > {}; kill -9 $$", mark.display()));
        let f = run(&spec(&argv, dir.path(), &log), |_| {}, asked);
        assert_eq!(f.ended, Ended::Stopped);
        std::fs::remove_file(&mark).expect("remove the mark");
        let argv = sh(&format!("echo $$ > {}; exit 0", mark.display()));
        let f = run(&spec(&argv, dir.path(), &log), |_| {}, asked);
        assert_eq!(
            f.ended,
            Ended::Exited(0),
            "a build that ended by itself keeps its end"
        );
    }

    #[test]
    fn stopping_kills_the_whole_process_group_leaving_no_grandchild() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let pidfile = dir.path().join("grandchild.pid");
        // The grandchild ignores TERM, so only the group KILL after the grace period ends it.
        let script = format!(
            "(trap '' TERM; exec sleep 300) & echo $! > {}; wait",
            pidfile.display()
        );
        let argv = sh(&script);
        let stop = AtomicBool::new(false);
        let pgid = std::sync::Mutex::new(0);
        std::thread::scope(|s| {
            let handle = s.spawn(|| {
                run(
                    &spec(&argv, dir.path(), &log),
                    |g| *pgid.lock().expect("lock") = g,
                    || stop.load(Ordering::SeqCst),
                )
            });
            let deadline = Instant::now() + Duration::from_secs(10);
            while !pidfile.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            std::thread::sleep(Duration::from_millis(100));
            let grandchild: u32 = std::fs::read_to_string(&pidfile)
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid");
            assert!(process_alive(grandchild));
            let g = *pgid.lock().expect("lock");
            assert!(group_members(g).contains(&grandchild));
            stop.store(true, Ordering::SeqCst);
            let f = handle.join().expect("join");
            assert_eq!(f.ended, Ended::Stopped);
            assert!(
                !process_alive(grandchild),
                "grandchild {grandchild} survived"
            );
            assert_eq!(group_members(g), Vec::<u32>::new());
        });
    }

    #[test]
    fn a_build_that_obeys_term_stops_without_waiting_for_the_grace_period() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let argv = sh("sleep 300 & wait $!");
        let mut s = spec(&argv, dir.path(), &log);
        s.kill_grace = Duration::from_secs(5);
        let asked = std::sync::Mutex::new(None::<Instant>);
        let f = run(
            &s,
            |_| {},
            || {
                let mut a = asked.lock().expect("lock");
                let t = *a.get_or_insert_with(Instant::now);
                t.elapsed() > Duration::from_millis(300)
            },
        );
        assert_eq!(f.ended, Ended::Stopped);
        assert!(f.took < Duration::from_secs(3), "took {:?}", f.took);
    }

    #[test]
    fn a_silent_build_is_killed_after_the_stall_timeout() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let argv = sh("echo start; sleep 30");
        let mut s = spec(&argv, dir.path(), &log);
        s.stall_timeout = Some(Duration::from_millis(400));
        let f = run(&s, |_| {}, || false);
        assert_eq!(f.ended, Ended::Stalled(Duration::from_millis(400)));
        assert!(f.took < Duration::from_secs(10));
    }

    #[test]
    fn a_chatty_build_is_not_stalled_but_still_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let argv = sh("while :; do echo tick; sleep 0.05; done");
        let mut s = spec(&argv, dir.path(), &log);
        s.stall_timeout = Some(Duration::from_millis(500));
        s.build_timeout = Some(Duration::from_millis(1200));
        let f = run(&s, |_| {}, || false);
        assert_eq!(f.ended, Ended::TimedOut(Duration::from_millis(1200)));
    }

    #[test]
    fn processes_a_finished_builder_left_behind_are_killed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("b.log");
        let pidfile = dir.path().join("straggler.pid");
        let script = format!(
            "sleep 300 </dev/null >/dev/null 2>&1 & echo $! > {}; exit 0",
            pidfile.display()
        );
        let argv = sh(&script);
        let f = run(&spec(&argv, dir.path(), &log), |_| {}, || false);
        assert_eq!(f.ended, Ended::Exited(0));
        let pid: u32 = std::fs::read_to_string(&pidfile)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        assert!(!process_alive(pid), "straggler {pid} survived");
    }
}
