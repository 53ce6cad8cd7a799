//! Run one argv with a deadline: the child is killed when it overruns, and a
//! grandchild that keeps the output pipe open cannot hold us either.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Output beyond this is read and thrown away: a probe prints a few lines, and
/// a runaway remote must not fill the server's memory.
const OUTPUT_CAP: usize = 64 * 1024;
/// How long to wait for the output pipes after the child is gone. A grandchild
/// (say `sleep` under a killed `sh`) may hold them open much longer.
const PIPE_GRACE: Duration = Duration::from_millis(200);

/// How a run ended.
#[derive(Debug)]
pub(crate) enum Ended {
    /// The child exited; `None` when a signal killed it.
    Exited(Option<i32>),
    /// It overran the deadline and was killed.
    TimedOut,
    /// The stop flag was raised; the child was killed.
    Stopped,
    /// It could not be started at all (missing binary, permissions).
    SpawnFailed(std::io::Error),
}

/// What a run produced.
#[derive(Debug)]
pub(crate) struct RunResult {
    pub(crate) ended: Ended,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) elapsed: Duration,
}

/// Runs `argv` (no shell) with stdin closed, capturing output, killing the
/// child at `timeout` or as soon as `stop` is raised.
pub(crate) fn run(argv: &[String], timeout: Duration, stop: Option<&AtomicBool>) -> RunResult {
    let started = Instant::now();
    let Some((program, args)) = argv.split_first() else {
        return RunResult {
            ended: Ended::SpawnFailed(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "empty command",
            )),
            stdout: String::new(),
            stderr: String::new(),
            elapsed: started.elapsed(),
        };
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            return RunResult {
                ended: Ended::SpawnFailed(e),
                stdout: String::new(),
                stderr: String::new(),
                elapsed: started.elapsed(),
            }
        }
    };
    let stdout = read_in_background(child.stdout.take());
    let stderr = read_in_background(child.stderr.take());
    let ended = wait_until(&mut child, started + timeout, stop);
    RunResult {
        ended,
        stdout: collect(stdout),
        stderr: collect(stderr),
        elapsed: started.elapsed(),
    }
}

fn wait_until(child: &mut Child, deadline: Instant, stop: Option<&AtomicBool>) -> Ended {
    let mut nap = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ended::Exited(status.code()),
            Ok(None) => {}
            Err(e) => {
                kill(child);
                return Ended::SpawnFailed(e);
            }
        }
        if stop.is_some_and(|s| s.load(Ordering::Relaxed)) {
            kill(child);
            return Ended::Stopped;
        }
        let now = Instant::now();
        if now >= deadline {
            kill(child);
            return Ended::TimedOut;
        }
        std::thread::sleep(nap.min(deadline - now));
        nap = (nap * 2).min(Duration::from_millis(20));
    }
}

fn kill(child: &mut Child) {
    // Errors mean it already exited; `wait` reaps it either way, so no zombie is left.
    let _ = child.kill();
    let _ = child.wait();
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> mpsc::Receiver<Chunk> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut pipe) = pipe {
        let spawned = std::thread::Builder::new()
            .name("swarm-heal-pipe".into())
            .spawn(move || {
                let mut kept = 0usize;
                let mut buf = [0u8; 4096];
                loop {
                    match pipe.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let take = n.min(OUTPUT_CAP.saturating_sub(kept));
                            kept += take;
                            if take > 0 && tx.send(Chunk::Data(buf[..take].to_vec())).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send(Chunk::End);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a thread to read command output; output is lost");
        }
    }
    rx
}

/// A piece of output, or the end of it.
enum Chunk {
    Data(Vec<u8>),
    End,
}

/// Everything read so far, waiting at most [`PIPE_GRACE`] for the rest.
fn collect(rx: mpsc::Receiver<Chunk>) -> String {
    let deadline = Instant::now() + PIPE_GRACE;
    let mut bytes = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Chunk::Data(data)) => bytes.extend_from_slice(&data),
            Ok(Chunk::End) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), script.into()]
    }

    #[test]
    fn captures_output_and_exit_code() {
        let r = run(
            &sh("echo out; echo err >&2; exit 3"),
            Duration::from_secs(5),
            None,
        );
        assert!(matches!(r.ended, Ended::Exited(Some(3))), "{r:?}");
        assert_eq!(r.stdout, "out\n");
        assert_eq!(r.stderr, "err\n");
    }

    #[test]
    fn a_grandchild_holding_the_pipe_does_not_hold_the_caller() {
        let started = Instant::now();
        let r = run(&sh("sleep 3 & echo hi"), Duration::from_secs(5), None);
        assert!(matches!(r.ended, Ended::Exited(Some(0))), "{r:?}");
        assert_eq!(r.stdout, "hi\n");
        assert!(started.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn a_raised_stop_flag_kills_the_child() {
        let stop = AtomicBool::new(true);
        let r = run(&sh("exec sleep 5"), Duration::from_secs(10), Some(&stop));
        assert!(matches!(r.ended, Ended::Stopped), "{r:?}");
        assert!(r.elapsed < Duration::from_secs(2));
    }

    #[test]
    fn a_missing_program_is_a_spawn_failure() {
        let r = run(
            &["/nonexistent/swarm-probe".to_owned()],
            Duration::from_secs(1),
            None,
        );
        assert!(matches!(r.ended, Ended::SpawnFailed(_)), "{r:?}");
    }
}
