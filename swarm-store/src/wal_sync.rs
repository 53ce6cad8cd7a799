//! Group commit with the fsync off the writer's thread.
//!
//! With `synchronous=FULL` every commit waits for an fsync of the WAL
//! (milliseconds on a virtual disk), and the writer can do nothing else
//! meanwhile: throughput is at most a batch per (fsync + CPU). With
//! [`StoreOptions::defer_sync`](crate::StoreOptions) the writer commits
//! with `synchronous=NORMAL` (frames reach the OS, no fsync) and a second
//! thread fsyncs the WAL file through its own descriptor while the writer
//! applies the next batch. Nothing is acknowledged before that fsync
//! returns, so the durability of what was acknowledged is that of FULL:
//! every frame of a commit was written before the fsync began. The
//! acknowledgement marker follows the fsync too ([`Store::acknowledge`]),
//! so it never leads the database. Checkpoints keep SQLite's own NORMAL
//! ordering (the WAL is synced before it is copied into the database).
//!
//! [`Store::acknowledge`]: crate::Store::acknowledge

use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::Mutex;

/// Makes the store's WAL durable: everything committed before `sync` began.
#[derive(Debug)]
pub struct WalSync {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl WalSync {
    pub(crate) fn new(db: &std::path::Path) -> WalSync {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        WalSync {
            path: PathBuf::from(wal),
            file: Mutex::new(None),
        }
    }

    /// The WAL file this syncs.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// fsyncs (fdatasync) the WAL. An error means commits since the last
    /// successful sync may not be durable: answer them with an error.
    /// Gives how long it took: a slow disk is what stretches every
    /// acknowledged reply (heartbeats included), and the server shows it.
    pub fn sync(&self) -> io::Result<std::time::Duration> {
        let started = std::time::Instant::now();
        self.sync_untimed().map(|()| started.elapsed())
    }

    fn sync_untimed(&self) -> io::Result<()> {
        let mut slot = self
            .file
            .lock()
            .map_err(|_| io::Error::other("WAL sync handle poisoned"))?;
        if slot.is_none() {
            *slot = Some(File::open(&self.path)?);
        }
        match slot.as_ref() {
            Some(f) => f.sync_data(),
            None => Err(io::Error::other("WAL file not open")),
        }
    }
}
