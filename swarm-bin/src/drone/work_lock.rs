//! One agent per work dir: an exclusive `flock` on `<work dir>/agent.lock`.
//!
//! A second agent on the same work dir took it for an earlier agent's
//! leftovers: it killed the first one's running build at start, which was
//! then reported as a failure, and both delivered from one spool. The
//! kernel drops the lock when its holder dies (even by SIGKILL), so a crash
//! never leaves a stale lock; the file descriptor is close-on-exec, so
//! builders do not inherit it.

use anyhow::Context;
use std::path::Path;
use swarm_store::ExclusiveLock;

/// Held for the agent's life.
#[derive(Debug)]
pub(crate) struct WorkLock {
    _held: ExclusiveLock,
}

impl WorkLock {
    /// Takes the lock, or says that another agent runs on `work_dir`.
    pub(crate) fn acquire(work_dir: &Path) -> anyhow::Result<WorkLock> {
        let path = work_dir.join("agent.lock");
        match ExclusiveLock::take(&path).with_context(|| format!("locking {}", path.display()))? {
            Some(held) => Ok(WorkLock { _held: held }),
            None => anyhow::bail!(
                "another swarm drone runs on the work dir {} (it holds {}): two agents on one \
                 work dir kill each other's builds and share one spool; give each its own --work-dir",
                work_dir.display(),
                path.display()
            ),
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
