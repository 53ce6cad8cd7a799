//! One agent per work dir: an exclusive `flock` on `<work dir>/agent.lock`.
//!
//! A second agent on the same work dir took it for an earlier agent's
//! leftovers: it killed the first one's running build at start, which was
//! then reported as a failure, and both delivered from one spool. The
//! kernel drops the lock when its holder dies (even by SIGKILL), so a crash
//! never leaves a stale lock; the file descriptor is close-on-exec, so
//! builders do not inherit it.

use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{Duration, Instant};

/// Held for the agent's life.
#[derive(Debug)]
pub(crate) struct WorkLock {
    _file: File,
}

/// How long a held lock is retried before it means another agent: a child
/// forked by another thread shares the descriptor until it execs.
const PATIENCE: Duration = Duration::from_millis(500);

impl WorkLock {
    /// Takes the lock, or says that another agent runs on `work_dir`.
    pub(crate) fn acquire(work_dir: &Path) -> anyhow::Result<WorkLock> {
        use rustix::fs::{flock, FlockOperation};
        let path = work_dir.join("agent.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let deadline = Instant::now() + PATIENCE;
        loop {
            match flock(&file, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(WorkLock { _file: file }),
                Err(e) if e == rustix::io::Errno::WOULDBLOCK && Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) if e == rustix::io::Errno::WOULDBLOCK => anyhow::bail!(
                    "another swarm drone runs on the work dir {} (it holds {}): two agents on one \
                     work dir kill each other's builds and share one spool; give each its own --work-dir",
                    work_dir.display(),
                    path.display()
                ),
                Err(e) => {
                    return Err(std::io::Error::from(e))
                        .with_context(|| format!("locking {}", path.display()))
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::WorkLock;

    #[test]
    fn a_second_agent_on_one_work_dir_is_refused_and_may_start_once_the_first_is_gone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let first = WorkLock::acquire(dir.path()).expect("first");
        let second = WorkLock::acquire(dir.path()).expect_err("second");
        let msg = format!("{second:#}");
        assert!(
            msg.contains("another swarm drone runs on the work dir"),
            "{msg}"
        );
        assert!(msg.contains("--work-dir"), "{msg}");
        drop(first);
        WorkLock::acquire(dir.path()).expect("after the first is gone");
    }
}
