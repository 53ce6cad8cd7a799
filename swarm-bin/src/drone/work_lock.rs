//! One agent per work dir: an exclusive `flock` on `<work dir>/agent.lock`,
//! and one on the work dir itself, which cannot be deleted from under its
//! holder as the lock file can (h36 F6: with `agent.lock` deleted, a second
//! agent got in and killed the first one's build).
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
    _dir: ExclusiveLock,
}

impl WorkLock {
    /// Takes the lock, or says that another agent runs on `work_dir`.
    pub(crate) fn acquire(work_dir: &Path) -> anyhow::Result<WorkLock> {
        let path = work_dir.join("agent.lock");
        let Some(held) =
            ExclusiveLock::take(&path).with_context(|| format!("locking {}", path.display()))?
        else {
            anyhow::bail!(
                "another swarm drone runs on the work dir {} (it holds {}): two agents on one \
                 work dir kill each other's builds and share one spool; give each its own --work-dir",
                work_dir.display(),
                path.display()
            )
        };
        let Some(dir) = ExclusiveLock::take_dir(work_dir)
            .with_context(|| format!("locking {}", work_dir.display()))?
        else {
            anyhow::bail!(
                "another swarm drone runs on the work dir {} (it holds a lock on the directory, \
                 although {} was free: deleted while that agent ran?): two agents on one work dir \
                 kill each other's builds and share one spool; stop that agent, or give this one \
                 its own --work-dir",
                work_dir.display(),
                path.display()
            )
        };
        Ok(WorkLock {
            _held: held,
            _dir: dir,
        })
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
        // Its lock file deleted, the first still holds the directory (h36 F6).
        std::fs::remove_file(dir.path().join("agent.lock")).expect("rm agent.lock");
        let second = WorkLock::acquire(dir.path()).expect_err("second, past a deleted lock file");
        let msg = format!("{second:#}");
        assert!(msg.contains("holds a lock on the directory"), "{msg}");
        drop(first);
        WorkLock::acquire(dir.path()).expect("after the first is gone");
    }
}
