//! WAL checkpoints off the writer's thread.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000
//! WAL pages: that commit copies the pages into the database and (with
//! `synchronous=FULL`) fsyncs it, so one input in every few dozen large ones
//! waits tens of milliseconds longer, and every drone whose heartbeat shares
//! that commit waits with it. With [`StoreOptions::background_checkpoints`]
//! the writer's connection does no automatic checkpoint; after each commit
//! it nudges this thread, which checkpoints from its own connection once the
//! WAL holds [`CHECKPOINT_BYTES`]. A `PASSIVE` checkpoint takes no writer
//! lock, so commits go on meanwhile, and SQLite starts the WAL over from its
//! beginning at the first commit after a checkpoint that copied everything.
//! Durability is unchanged: a commit is durable in the WAL before its reply,
//! a checkpoint only moves it into the database file.
//!
//! [`StoreOptions::background_checkpoints`]: crate::StoreOptions::background_checkpoints

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// WAL size from which a nudge checkpoints: SQLite's own default threshold
/// (1,000 pages of 4 KiB).
pub(crate) const CHECKPOINT_BYTES: u64 = 1_000 * 4_096;

pub(crate) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to `db`.
    pub(crate) fn start(db: &Path) -> std::io::Result<Checkpointer> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(db, flags).map_err(std::io::Error::other)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(std::io::Error::other)?;
        let wal = PathBuf::from(format!("{}-wal", db.display()));
        let (nudge, rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("swarm-checkpoint".into())
            .spawn(move || run(&conn, &wal, &rx))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            handle: Some(handle),
        })
    }

    /// Called after a commit: never blocks (a nudge already waiting covers it).
    pub(crate) fn nudge(&self) {
        if let Some(tx) = &self.nudge {
            match tx.try_send(()) {
                Ok(()) | Err(TrySendError::Full(())) => {}
                Err(TrySendError::Disconnected(())) => {
                    tracing::warn!("the checkpoint thread is gone; the WAL is no longer checkpointed in the background");
                }
            }
        }
    }
}

fn run(conn: &Connection, wal: &Path, rx: &Receiver<()>) {
    for () in rx {
        let size = std::fs::metadata(wal).map_or(0, |m| m.len());
        if size < CHECKPOINT_BYTES {
            continue;
        }
        // (busy, WAL frames, frames copied); a busy or partial checkpoint is
        // retried at the next nudge.
        let r = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match r {
            Ok((busy, frames, copied)) => {
                tracing::debug!(busy, frames, copied, "WAL checkpoint");
            }
            Err(e) => {
                tracing::warn!(error = %e, "WAL checkpoint failed; retried at the next commit")
            }
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.nudge = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
