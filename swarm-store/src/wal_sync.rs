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
//! acknowledgement marker is written right after the fsync, before the
//! replies it covers are sent ([`WalSync::sync_acknowledging`]): it never
//! leads the database, and no reply is received while it says less, so a
//! WAL cut back behind a reply is refused at open instead of opening
//! without what the reply acknowledged. Checkpoints keep SQLite's own NORMAL
//! ordering (the WAL is synced before it is copied into the database).
//!
//! [`Store::acknowledge`]: crate::Store::acknowledge

use crate::acked::{self, SharedMarker};
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Makes the store's WAL durable: everything committed before `sync` began.
#[derive(Debug)]
pub struct WalSync {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// `StoreOptions::fault_sync`.
    faults: Option<Arc<SyncFaults>>,
    /// The store's acknowledgement marker.
    marker: SharedMarker,
}

impl WalSync {
    pub(crate) fn new(
        db: &std::path::Path,
        faults: Option<Arc<SyncFaults>>,
        marker: SharedMarker,
    ) -> WalSync {
        WalSync {
            path: crate::db_path::beside_database(db, "-wal"),
            file: Mutex::new(None),
            faults,
            marker,
        }
    }

    /// [`WalSync::sync`], then records in the acknowledgement marker that
    /// everything through `seq` is acknowledged: what to call before
    /// answering the commits through `seq` (committed before this call).
    /// The marker never moves back. An error from either means those
    /// commits are not acknowledged: answer them with an error. Gives how
    /// long the fsync took (the marker's 64-byte write is not counted).
    pub fn sync_acknowledging(&self, seq: swarm_core::Seq) -> io::Result<Duration> {
        let took = self.sync()?;
        acked::record_shared(&self.marker, seq.0).map_err(io::Error::other)?;
        Ok(took)
    }

    /// The WAL file this syncs.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// fsyncs (fdatasync) the WAL. An error means commits since the last
    /// successful sync may not be durable: answer them with an error.
    /// Gives how long the fdatasync took (opening the file the first time
    /// is not counted): a slow disk is what stretches every acknowledged
    /// reply, heartbeats included, and the server shows it.
    pub fn sync(&self) -> io::Result<Duration> {
        let mut slot = self
            .file
            .lock()
            .map_err(|_| io::Error::other("WAL sync handle poisoned"))?;
        if slot.is_none() {
            *slot = Some(File::open(&self.path)?);
        }
        let started = Instant::now();
        if let Some(faults) = &self.faults {
            injected(faults, started)?;
        }
        match slot.as_ref() {
            Some(f) => f.sync_data().map(|()| started.elapsed()),
            None => Err(io::Error::other("WAL file not open")),
        }
    }
}

/// Fault injection for tests (`StoreOptions::fault_sync`): what the fsyncs
/// of the WAL made through [`WalSync`], and the store's commits, do instead
/// of working, so a server's handling of a bad disk (or a bug on the
/// threads that write) can be tested on a good one.
#[derive(Debug, Default)]
pub struct SyncFaults {
    /// While nonzero, each fsync first waits until it is cleared or that
    /// many milliseconds have passed, as on a disk that hangs.
    pub hang_ms: AtomicU64,
    /// While set, each fsync fails, as on a disk that lost the write (EIO).
    pub fail: AtomicBool,
    /// While nonzero, each commit (of a batch, or a probe of the store)
    /// first waits until it is cleared or that many milliseconds have
    /// passed: a writer held outside any fsync watched before answering, as
    /// by a `write()` the kernel throttles or a checkpoint on its thread.
    pub commit_hang_ms: AtomicU64,
    /// While set, each commit panics, as a bug on the writer's thread would.
    pub commit_panic: AtomicBool,
    /// While set, each fsync panics, as a bug on the thread that makes it would.
    pub fsync_panic: AtomicBool,
}

/// What `SyncFaults` does to an fsync: a hang, a panic, a failure.
fn injected(faults: &SyncFaults, started: Instant) -> io::Result<()> {
    hold(&faults.hang_ms, started);
    assert!(
        !faults.fsync_panic.load(Ordering::SeqCst),
        "an fsync panicked (injected by SyncFaults::fsync_panic)"
    );
    if faults.fail.load(Ordering::SeqCst) {
        return Err(io::Error::other(
            "input/output error (injected by SyncFaults::fail)",
        ));
    }
    Ok(())
}

/// fsyncs the WAL an earlier process left, if there is one, before an open records its end as
/// acknowledged (the marker and the store-id file). After a `kill -9` what that process wrote
/// is in the page cache, not necessarily on the disk: a power loss before the next fsync took
/// commits the open had vouched for, and the next start was refused as a loss (h44).
pub(crate) fn sync_left(db: &std::path::Path, faults: Option<&SyncFaults>) -> io::Result<()> {
    let path = crate::db_path::beside_database(db, "-wal");
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(faults) = faults {
        injected(faults, Instant::now())?;
    }
    file.sync_data()
}

/// Waits while `knob` (one of `SyncFaults`' hangs) is nonzero, at most that
/// many milliseconds from `started`.
pub(crate) fn hold(knob: &AtomicU64, started: Instant) {
    loop {
        let ms = knob.load(Ordering::SeqCst);
        if ms == 0 || started.elapsed() >= Duration::from_millis(ms) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
