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
//! Checkpoints are paced, at most one per [`CHECKPOINT_GAP`]: the WAL file
//! keeps its size when SQLite starts it over (up to `journal_size_limit`),
//! so once it has held the threshold its size says nothing about what waits
//! to be copied, and every nudge (one per group commit) checkpointed: about
//! 90 checkpoints a second under `swarm bench http`, each with two fsyncs,
//! about 1 ms of CPU each (19 µs per work→complete cycle; paced, 3 µs).
//! Nudges that come during the gap share the next checkpoint.
//!
//! [`StoreOptions::background_checkpoints`]: crate::StoreOptions::background_checkpoints

use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// WAL size from which a nudge checkpoints: SQLite's own default threshold
/// (1,000 pages of 4 KiB).
pub(crate) const CHECKPOINT_BYTES: u64 = 1_000 * 4_096;

/// Least time between two background checkpoints. At the highest commit
/// rate measured (about 60 MB of WAL a second) the WAL then holds about
/// 3 MB between two, within the `journal_size_limit` of 16 MB. Not longer:
/// a checkpoint's fsync of the database shares the disk with the WAL's
/// fsyncs that replies wait for, and a larger one delays them more.
pub(crate) const CHECKPOINT_GAP: Duration = Duration::from_millis(50);

pub(crate) struct Checkpointer {
    nudge: Option<SyncSender<()>>,
    handle: Option<JoinHandle<()>>,
    /// Checkpoints run so far (for tests).
    #[cfg_attr(not(test), allow(dead_code))]
    runs: Arc<AtomicU64>,
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
        let runs = Arc::new(AtomicU64::new(0));
        let counted = runs.clone();
        let handle = std::thread::Builder::new()
            .name("swarm-checkpoint".into())
            .spawn(move || run(&conn, &wal, &rx, &counted))?;
        Ok(Checkpointer {
            nudge: Some(nudge),
            handle: Some(handle),
            runs,
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

/// How long to wait before the next checkpoint, the last one run at `last`.
fn wait_before(last: Option<Instant>, now: Instant) -> Duration {
    last.map_or(Duration::ZERO, |l| {
        (l + CHECKPOINT_GAP).saturating_duration_since(now)
    })
}

fn run(conn: &Connection, wal: &Path, rx: &Receiver<()>, runs: &AtomicU64) {
    let mut last = None;
    for () in rx {
        let size = std::fs::metadata(wal).map_or(0, |m| m.len());
        if size < CHECKPOINT_BYTES {
            continue;
        }
        // A sleep, not a wait on the channel: nudges meanwhile fill its one
        // slot without waking this thread, and share this checkpoint.
        let wait = wait_before(last, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
        last = Some(Instant::now());
        runs.fetch_add(1, Ordering::Relaxed);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_checkpoint_waits_for_the_gap() {
        let t = Instant::now();
        assert_eq!(wait_before(None, t), Duration::ZERO);
        assert_eq!(wait_before(Some(t), t), CHECKPOINT_GAP);
        assert_eq!(
            wait_before(Some(t), t + CHECKPOINT_GAP / 4),
            CHECKPOINT_GAP * 3 / 4
        );
        assert_eq!(wait_before(Some(t), t + CHECKPOINT_GAP * 2), Duration::ZERO);
    }

    /// A nudge per commit, as the writer sends them, runs a checkpoint per
    /// gap, not one per nudge.
    #[test]
    fn nudges_in_a_stream_share_paced_checkpoints() {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("cp.db");
        let conn = Connection::open(&db).expect("open");
        conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
            .expect("wal");
        conn.pragma_update(None, "wal_autocheckpoint", 0)
            .expect("no auto checkpoint");
        conn.execute_batch("CREATE TABLE t (x BLOB)")
            .expect("table");
        // A WAL past the threshold.
        for _ in 0..(CHECKPOINT_BYTES / 65_536 + 2) {
            conn.execute("INSERT INTO t VALUES (zeroblob(65536))", [])
                .expect("insert");
        }
        let cp = Checkpointer::start(&db).expect("start");
        let began = Instant::now();
        let mut nudges = 0u64;
        // Enough nudges that one checkpoint per nudge cannot pass for paced.
        while began.elapsed() < CHECKPOINT_GAP * 3 || nudges < 40 {
            conn.execute("INSERT INTO t VALUES (zeroblob(4096))", [])
                .expect("insert");
            cp.nudge();
            nudges += 1;
            std::thread::sleep(Duration::from_millis(1));
        }
        let runs = cp.runs.load(Ordering::Relaxed);
        let gaps = (began.elapsed().as_millis() / CHECKPOINT_GAP.as_millis()) as u64;
        assert!(
            runs <= gaps + 1,
            "{runs} checkpoints for {nudges} nudges in {gaps} gaps"
        );
    }
}
