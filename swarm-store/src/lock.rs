//! One writer per database: an exclusive `flock` on `<db>.lock`, and one on
//! `<db>-wal` once SQLite has opened it.
//!
//! Two writers would each replay the log into their own core and interleave
//! appends the other never saw, so the second `Store::open` is refused with a
//! clear error instead. The kernel drops the lock when the holder dies (even by
//! SIGKILL), so a crash never leaves a stale lock behind. Readers (the SQL
//! explorer) take no lock: WAL lets them read while the writer writes.
//!
//! The lock file alone can be deleted under a running server (an operator
//! clearing "stale" locks): a second server then took a new one and opened
//! the same database, and the first could only refuse writes until restarted
//! (h23). The WAL cannot go while a server has the database open, so the
//! second is refused there. Not the database file: SQLite holds POSIX locks
//! on it, and closing any other descriptor of it would drop them all; it
//! holds none on the WAL (its WAL locks are in `-shm`).

use crate::error::StoreError;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// Held for the life of a `Store`.
#[derive(Debug)]
pub(crate) struct LockFile {
    _file: File,
    _wal: Option<File>,
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
        // swarm never deletes its lock file: a new one is a first start, or one deleted.
        let new = std::fs::symlink_metadata(&lock).is_err();
        match ExclusiveLock::take(&lock) {
            Ok(Some(held)) => {
                let others = if new {
                    crate::lock_holders::others_with_deleted(&lock)
                } else {
                    Vec::new()
                };
                if let Some((pid, name)) = others.first() {
                    return Err(StoreError::LockFileDeleted {
                        path: db.to_owned(),
                        holder: format!("pid {pid} ({name})"),
                    });
                }
                Ok(LockFile {
                    _file: held.file,
                    _wal: None,
                })
            }
            Ok(None) => Err(StoreError::Locked {
                path: db.to_owned(),
                lock,
            }),
            Err(source) => Err(StoreError::Io { path: lock, source }),
        }
    }

    /// Also locks the WAL once SQLite has opened it: `Ok(false)` while there
    /// is none yet (a new database has one from its first write on; a
    /// database in WAL mode, from its first read). Taken before anything is
    /// written where it exists, so a second writer is refused having only read.
    pub(crate) fn hold_wal(&mut self, db: &Path) -> Result<bool, StoreError> {
        let wal = crate::db_path::beside_database(db, "-wal");
        let io = |source| StoreError::Io {
            path: wal.clone(),
            source,
        };
        let file = match OpenOptions::new().read(true).open(&wal) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io(e)),
        };
        match ExclusiveLock::lock(file).map_err(io)? {
            Some(held) => {
                self._wal = Some(held.file);
                Ok(true)
            }
            None => Err(StoreError::WalHeld {
                path: db.to_owned(),
                wal,
                lock: lock_path(db),
            }),
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
        ExclusiveLock::lock(file)
    }

    /// Takes the lock on the directory `dir` itself: unlike a lock file, a directory with
    /// files in it cannot be deleted from under its holder.
    pub fn take_dir(dir: &Path) -> std::io::Result<Option<ExclusiveLock>> {
        ExclusiveLock::lock(File::open(dir)?)
    }

    fn lock(file: File) -> std::io::Result<Option<ExclusiveLock>> {
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
