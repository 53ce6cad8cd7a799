//! WAL checkpoints off the writer's thread.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses 1,000
//! WAL pages: that commit copies the pages into the database and (with
//! `synchronous=FULL`) fsyncs it, so one input in every few dozen large ones
//! waits tens of milliseconds longer, and every drone whose heartbeat shares
//! that commit waits with it. With [`StoreOptions::background_checkpoints`]
//! the writer's connection does no automatic checkpoint; after each commit
//! it nudges this thread, which checkpoints from its own connection once the
//! WAL holds [`CHECKPOINT_FRAMES`] not yet copied, then catches up on what
//! was committed meanwhile (`checkpoint_due`). A `PASSIVE` checkpoint takes
//! no writer lock, so commits go on meanwhile, and SQLite starts the WAL
//! over from its beginning at the first commit that begins with everything
//! copied.
//! Durability is unchanged: a commit is durable in the WAL before its reply,
//! a checkpoint only moves it into the database file.
//!
//! [`StoreOptions::background_checkpoints`]: crate::StoreOptions::background_checkpoints

use crate::shm_header::ShmHeader;
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

/// Frames waiting in the WAL from which a nudge checkpoints: SQLite's own
/// default threshold (1,000 pages).
pub(crate) const CHECKPOINT_FRAMES: u64 = 1_000;

/// The same in bytes of WAL (pages of 4 KiB), for when the wal-index cannot
/// be read, and for the writer's safety net.
pub(crate) const CHECKPOINT_BYTES: u64 = CHECKPOINT_FRAMES * 4_096;

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
        // Where SQLite keeps them, also for a symlinked database.
        let wal = crate::db_path::beside_database(db, "-wal");
        let shm = ShmHeader::new(crate::db_path::beside_database(db, "-shm"));
        let (nudge, rx) = mpsc::sync_channel(1);
        let handle = std::thread::Builder::new()
            .name("swarm-checkpoint".into())
            .spawn(move || run(&conn, &wal, shm, &rx))?;
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

/// Whether a checkpoint is due: when [`CHECKPOINT_FRAMES`] wait, and also
/// when a checkpoint since the WAL last started over left frames behind
/// (committed while it copied). SQLite starts the WAL over only at a
/// commit that begins with every frame copied; during an import the
/// writer commits while every checkpoint runs, so without the catch-up the
/// WAL never started over: it grew to 64 MB, where the writer checkpointed
/// it itself (`Store::checkpoint_if_far_behind`), and every fsync of a
/// reply extended the file. The catch-up copies the few frames left, so
/// the writer's first commit after a pause (between two posts) starts the
/// WAL over and reuses its blocks: it stays under 8 MB. The size of the
/// file says neither (SQLite keeps the file after starting over, up to
/// `journal_size_limit`): it is the fallback.
fn checkpoint_due(wal: &Path, shm: &mut ShmHeader) -> bool {
    match shm.frames() {
        Some((frames, copied)) => {
            let waiting = frames.saturating_sub(copied);
            waiting >= CHECKPOINT_FRAMES || (copied > 0 && waiting > 0)
        }
        None => std::fs::metadata(wal).map_or(0, |m| m.len()) >= CHECKPOINT_BYTES,
    }
}

/// Failed checkpoints, logged while they go on.
static FAILURES: crate::repeat_log::RepeatLog =
    crate::repeat_log::RepeatLog::new(Duration::from_secs(60));

fn run(conn: &Connection, wal: &Path, mut shm: ShmHeader, rx: &Receiver<()>) {
    for () in rx {
        if !checkpoint_due(wal, &mut shm) {
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
                if let Some(n) = FAILURES.clear() {
                    tracing::info!(failures_not_logged = n, "WAL checkpoints work again");
                }
                tracing::debug!(busy, frames, copied, "WAL checkpoint");
            }
            // A full disk fails every try for as long as it lasts (h23: a line a second).
            Err(e) => {
                if let Some(n) = FAILURES.note(std::time::Instant::now()) {
                    tracing::warn!(error = %e, failures = n, "WAL checkpoint failed; tried again as commits go on (logged at most once a minute while it lasts)")
                }
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

#[cfg(test)]
mod tests {
    use super::{checkpoint_due, CHECKPOINT_BYTES, CHECKPOINT_FRAMES};
    use crate::shm_header::ShmHeader;
    use rusqlite::Connection;

    #[test]
    fn no_checkpoint_is_due_after_one_though_the_wal_file_keeps_its_size() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("cp.db");
        let conn = Connection::open(&db).expect("open");
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .expect("wal");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no autocheckpoint");
        conn.execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        let mut shm = ShmHeader::new(dir.path().join("cp.db-shm"));
        let wal = dir.path().join("cp.db-wal");
        for _ in 0..CHECKPOINT_FRAMES + 100 {
            conn.execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .expect("insert");
        }
        assert!(
            checkpoint_due(&wal, &mut shm),
            "{} frames wait",
            CHECKPOINT_FRAMES + 100
        );
        conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .expect("checkpoint");
        // Everything copied; the next commit starts the WAL over.
        conn.execute("INSERT INTO t VALUES (1)", [])
            .expect("insert");
        let size = std::fs::metadata(&wal).expect("wal").len();
        assert!(size >= CHECKPOINT_BYTES, "the WAL file shrank to {size}");
        assert!(
            !checkpoint_due(&wal, &mut shm),
            "a checkpoint is due after one copied everything"
        );
    }

    /// An import commits while every checkpoint runs: the frames those
    /// commits add must be copied too (whatever their number), or the WAL
    /// never starts over and grows to the writer's safety net.
    #[test]
    fn frames_left_behind_by_a_checkpoint_are_due_so_the_wal_can_start_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join("cp.db");
        let writer = Connection::open(&db).expect("open");
        writer
            .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .expect("wal");
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no autocheckpoint");
        writer
            .execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        for _ in 0..CHECKPOINT_FRAMES + 100 {
            writer
                .execute("INSERT INTO t VALUES (zeroblob(4000))", [])
                .expect("insert");
        }
        // A reader in the WAL keeps the writer from starting it over, as
        // the writer's own commits racing the checkpoint do in an import.
        let mut reader = Connection::open(&db).expect("reader");
        let read = reader.transaction().expect("read");
        let _: i64 = read
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("count");
        let checkpointer = Connection::open(&db).expect("checkpointer");
        checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .expect("checkpoint");
        let mut shm = ShmHeader::new(dir.path().join("cp.db-shm"));
        let wal = dir.path().join("cp.db-wal");
        writer
            .execute("INSERT INTO t VALUES (1)", [])
            .expect("a commit after the checkpoint");
        let (frames, copied) = shm.frames().expect("wal-index");
        assert!(
            frames > copied && frames - copied < CHECKPOINT_FRAMES,
            "{frames} frames, {copied} copied"
        );
        assert!(
            checkpoint_due(&wal, &mut shm),
            "{} frames left behind by a checkpoint are not due",
            frames - copied
        );
        drop(read);
        checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .expect("catch-up");
        writer
            .execute("INSERT INTO t VALUES (2)", [])
            .expect("a commit that starts the WAL over");
        let (frames, copied) = shm.frames().expect("wal-index");
        assert_eq!(copied, 0, "the WAL started over ({frames} frames)");
        assert!(
            !checkpoint_due(&wal, &mut shm),
            "nothing is due after it started over"
        );
    }
}
