//! Running a local program (emerge, portageq) with a deadline and bounded
//! output: the operator commands that ask Portage must never hang or eat
//! memory because Portage did.

use anyhow::Context;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Output kept per stream; more is read and dropped (and said).
pub(crate) const MAX_OUTPUT_BYTES: usize = 64 << 20;

/// What a finished program printed.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Its exit code (`None`: killed by a signal).
    pub(crate) code: Option<i32>,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    /// A stream was longer than [`MAX_OUTPUT_BYTES`] and cut.
    pub(crate) truncated: bool,
}

impl Ran {
    /// The last `n` lines of stderr, else of stdout: what to show when it failed.
    pub(crate) fn tail(&self, n: usize) -> String {
        let text = if self.stderr.trim().is_empty() {
            &self.stdout
        } else {
            &self.stderr
        };
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

fn drain(
    mut r: impl Read + Send + 'static,
    max_bytes: usize,
) -> std::thread::JoinHandle<(Vec<u8>, bool)> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut cut = false;
        let mut buf = [0u8; 64 * 1024];
        loop {
            match r.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let room = max_bytes.saturating_sub(kept.len());
                    cut |= n > room;
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
        }
        (kept, cut)
    })
}

/// Runs `argv` (no shell) with `timeout`; on timeout kills its whole process
/// group and fails saying so. `what` names it in errors.
pub(crate) fn run(argv: &[String], timeout: Duration, what: &str) -> anyhow::Result<Ran> {
    run_capped(argv, timeout, what, MAX_OUTPUT_BYTES)
}

/// [`run`] keeping at most `max_bytes` of each stream. The deadline covers the
/// program and anything it left behind holding its output: a daemon it forked
/// that keeps the pipe open would otherwise make reading wait forever.
pub(crate) fn run_capped(
    argv: &[String],
    timeout: Duration,
    what: &str,
    max_bytes: usize,
) -> anyhow::Result<Ran> {
    let (program, args) = argv
        .split_first()
        .context("no program to run (the command is empty)")?;
    let mut child = crate::child_env::without_secrets(&mut Command::new(program))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!("cannot run {what}: `{program}` is not on PATH")
            } else {
                anyhow::anyhow!("cannot run {what} (`{program}`): {e}")
            }
        })?;
    let out = drain(child.stdout.take().context("stdout pipe")?, max_bytes);
    let err = drain(child.stderr.take().context("stderr pipe")?, max_bytes);
    let deadline = Instant::now() + timeout;
    // Done when the program has exited and its output is closed: a process it started may
    // hold the output open after it exits, and the deadline covers that too.
    let mut status = None;
    while status.is_none() || !(out.is_finished() && err.is_finished()) {
        if status.is_none() {
            status = child.try_wait().context("waiting for it")?;
        }
        if Instant::now() >= deadline {
            if let Some(pgid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL);
            }
            let _ = child.kill();
            let _ = child.wait();
            let (_, _) = (out.join(), err.join());
            match status {
                None => anyhow::bail!("{what} did not finish within {timeout:?} and was killed"),
                Some(_) => anyhow::bail!(
                    "{what} exited, but a process it started kept its output open past {timeout:?} and was killed"
                ),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = status.context("the loop ends only once the program exited")?;
    let (stdout, cut_out) = out.join().unwrap_or_default();
    let (stderr, cut_err) = err.join().unwrap_or_default();
    Ok(Ran {
        code: status.code(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
        truncated: cut_out || cut_err,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn keeps_both_streams_and_the_exit_code() {
        let r = run(
            &sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(10),
            "t",
        )
        .expect("runs");
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (Some(3), "out\n", "err\n")
        );
        assert_eq!(r.tail(5), "err");
    }

    #[test]
    fn a_program_past_its_deadline_is_killed_with_its_children() {
        let e = run(
            &sh("sleep 30 & sleep 30"),
            Duration::from_millis(300),
            "slow",
        )
        .expect_err("times out");
        assert!(e.to_string().contains("did not finish within 300ms"), "{e}");
    }

    #[test]
    fn a_program_that_leaves_a_child_holding_its_output_is_not_waited_for_forever() {
        let started = Instant::now();
        let e = run(
            &sh("(sleep 30; echo late) & echo early"),
            Duration::from_millis(500),
            "leaver",
        )
        .expect_err("the leftover child holds stdout past the deadline");
        assert!(e.to_string().contains("kept its output open"), "{e}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "waited for the leftover child"
        );
    }

    #[test]
    fn output_past_the_cap_is_cut_and_said() {
        let r = run_capped(
            &sh("head -c 5000 /dev/zero"),
            Duration::from_secs(10),
            "t",
            100,
        )
        .expect("runs");
        assert_eq!((r.stdout.len(), r.truncated), (100, true));
    }

    #[test]
    fn a_missing_program_is_named() {
        let e = run(
            &["swarm-no-such-program".into()],
            Duration::from_secs(1),
            "emerge",
        )
        .expect_err("missing");
        assert!(e.to_string().contains("not on PATH"), "{e}");
    }
}
