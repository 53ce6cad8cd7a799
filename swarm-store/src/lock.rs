//! One writer per database: an exclusive `flock` on `<db>.lock`.
//!
//! Two writers would each replay the log into their own core and interleave
//! appends the other never saw, so the second `Store::open` is refused with a
//! clear error instead. The kernel drops the lock when the holder dies (even by
//! SIGKILL), so a crash never leaves a stale lock behind. Readers (the SQL
//! explorer) take no lock: WAL lets them read while the writer writes.

use crate::error::StoreError;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Held for the life of a `Store`.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
}

/// The lock file next to a database.
pub(crate) fn lock_path(db: &Path) -> PathBuf {
    // Beside the file the path resolves to: a symlinked database and its
    // target must take the same lock.
    crate::db_path::beside_database(db, ".lock")
}

impl LockFile {
    /// Takes the lock or says who has it.
    pub(crate) fn acquire(db: &Path) -> Result<LockFile, StoreError> {
        let lock = lock_path(db);
        match ExclusiveLock::take(&lock) {
            Ok(Some(held)) => Ok(LockFile { _file: held.file }),
            Ok(None) => Err(StoreError::Locked {
                path: db.to_owned(),
                lock,
            }),
            Err(source) => Err(StoreError::Io { path: lock, source }),
        }
    }
}

/// An exclusive `flock` on a file, held until dropped. Also what keeps a
/// second drone agent off a work dir.
#[derive(Debug)]
pub struct ExclusiveLock {
    file: File,
}

impl ExclusiveLock {
    /// Takes the lock on `path` (creating the file); `Ok(None)` when
    /// another process holds it.
    pub fn take(path: &Path) -> std::io::Result<Option<ExclusiveLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // A lock can stay held for a moment after its owner let go: a child
        // forked by another thread shares the descriptor until it execs. So
        // a held lock is retried briefly before it counts as another holder.
        let deadline = std::time::Instant::now() + LOCK_PATIENCE;
        loop {
            match try_lock(&file) {
                Ok(()) => return Ok(Some(ExclusiveLock { file })),
                Err(Some(e)) => return Err(e),
                Err(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(None) => return Ok(None),
            }
        }
    }
}

/// How long a held lock is retried before it means another writer.
const LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_millis(500);

/// `Err(None)`: somebody else holds it.
#[cfg(unix)]
fn try_lock(file: &File) -> Result<(), Option<std::io::Error>> {
    use rustix::fs::{flock, FlockOperation};
    match flock(file, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(()),
        Err(e) if e == rustix::io::Errno::WOULDBLOCK => Err(None),
        Err(e) => Err(Some(e.into())),
    }
}

/// Elsewhere the lock is advisory only: one writer is the operator's job.
#[cfg(not(unix))]
fn try_lock(_file: &File) -> Result<(), Option<std::io::Error>> {
    Ok(())
}
