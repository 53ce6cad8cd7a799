//! The wal-index header (`-shm`), read without ever closing a descriptor of
//! the file.
//!
//! SQLite marks "a connection has this database open" with a POSIX lock on
//! `-shm`, and POSIX drops every lock a process holds on a file when the
//! process closes *any* descriptor of that file. The checkpoint thread used
//! to open `-shm`, read its header and close it after every commit: that
//! dropped the server's locks, the next process to open the database
//! (`swarm export`, the `sqlite3` tool) took itself for the first, reset
//! `-shm`, and the server, which maps it, died of SIGBUS (h28: 3 of 4 runs
//! with a reader every 2 s). SQLite itself never closes such a descriptor
//! while a connection holds locks. So the file is opened once and read with
//! `pread`; a descriptor is never closed, only left open when the store
//! closes or the file is replaced (one per store opened, per process).

use std::fs::File;
use std::mem::ManuallyDrop;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;

/// Reads `mxFrame` and `nBackfill` from one `-shm` file.
pub(crate) struct ShmHeader {
    path: PathBuf,
    /// Never dropped: closing it would drop this process's locks on `-shm`.
    file: Option<ManuallyDrop<File>>,
}

impl ShmHeader {
    pub(crate) fn new(path: PathBuf) -> ShmHeader {
        ShmHeader { path, file: None }
    }

    /// The wal-index header's `mxFrame` (frames in the WAL) and `nBackfill`
    /// (frames already copied into the database), from the start of the
    /// `-shm` file (its layout is part of SQLite's documented file format,
    /// <https://www.sqlite.org/walformat.html>: `mxFrame` at byte 16,
    /// `nBackfill` at byte 96, in the machine's byte order). `None` when the
    /// file cannot be read. A torn read (SQLite updates the header while we
    /// read it) only moves a checkpoint by one nudge.
    pub(crate) fn frames(&mut self) -> Option<(u64, u64)> {
        let on_disk = std::fs::metadata(&self.path).ok()?;
        let current = self.file.as_ref().is_some_and(|f| {
            f.metadata()
                .is_ok_and(|m| (m.dev(), m.ino()) == (on_disk.dev(), on_disk.ino()))
        });
        if !current {
            // A replaced file: the old descriptor is left open, not closed.
            self.file = Some(ManuallyDrop::new(File::open(&self.path).ok()?));
        }
        let mut head = [0u8; 100];
        self.file.as_ref()?.read_exact_at(&mut head, 0).ok()?;
        let word =
            |at: usize| u32::from_ne_bytes([head[at], head[at + 1], head[at + 2], head[at + 3]]);
        Some((u64::from(word(16)), u64::from(word(96))))
    }
}
