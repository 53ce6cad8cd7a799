//! `Store`: the one writer. Every input is durable before its outputs are
//! returned, and any failure drops the in-memory core and rebuilds it from the
//! file, so memory never holds anything the file does not.

use crate::acked::{self, Acked, Marker, SharedMarker};
use crate::checkpointer::Checkpointer;
use crate::db_path::file_id;
use crate::error::StoreError;
use crate::id_file;
use crate::lock::LockFile;
use crate::read_tables::{self, Applied, OutputJson, ReadTables};
use crate::recover::{self, format_digest, verify_snapshot};
use crate::schema::{self, meta_get, meta_set};
use crate::snapshotter::{Prepared, Snapshotter};
use crate::upgrade_backup;
use rusqlite::config::DbConfig;
use rusqlite::{params, Connection, OpenFlags, TransactionBehavior};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use swarm_core::{Config, Envelope, Input, Output, Seq, Swarm, Timestamp};

/// How hard a commit waits for the disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// WAL with `synchronous=NORMAL`: a commit survives a crash of swarm
    /// (even SIGKILL) but the commits since the last WAL checkpoint may be
    /// lost if the machine loses power.
    Normal,
    /// `synchronous=FULL` (the default): every group commit is fsynced
    /// before its replies, so an acknowledged input survives power loss.
    /// Measured at the throughput of NORMAL over HTTP (group commit
    /// amortises the fsync; see the README's *Measuring*).
    #[default]
    Full,
}

/// Store settings. `Default` gives the documented defaults.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The policy for a new store. An existing store keeps the config it was
    /// created with (it is in its snapshots and `meta`), so replay reproduces
    /// what was decided; `Store::config` says which one is in force.
    pub config: Config,
    /// Durability of each commit.
    pub synchronous: Synchronous,
    /// Write a snapshot every this many inputs (default 10,000: a snapshot of a
    /// 5,000-package state costs ~28 ms, so 1,000 held appends to ~28k/s; replaying
    /// 10,000 inputs on open stays well under a second). Large states stretch
    /// the interval to two inputs per package (at most 500,000).
    pub snapshot_every: u64,
    /// Snapshots to keep (default 2). The log is compacted up to the oldest kept
    /// one, so any of them can serve as the base if a newer one fails to verify.
    pub keep_snapshots: u32,
    /// Delete log and outbox rows behind the oldest kept snapshot (default
    /// true). Off keeps the whole log for audits and full `swarm export`s, at
    /// the price of unbounded growth.
    pub compact_log: bool,
    /// Finished `builds` rows older than this are deleted at each snapshot
    /// (default 30 days; `None`: keep forever).
    pub builds_retention_ms: Option<u64>,
    /// `events` rows older than this are deleted at each snapshot (default 7 days).
    pub events_retention_ms: Option<u64>,
    /// The instant stamped on the `Recovered` input that `open` appends. The
    /// store reads no clock: `swarm serve` passes the wall clock. `None`: the
    /// last logged instant.
    pub open_at: Option<Timestamp>,
    /// Run `PRAGMA quick_check` on open (default true): a damaged page stops the
    /// store at open instead of in the middle of a write.
    pub verify_on_open: bool,
    /// Prepare snapshots on a background thread (default false). The writer
    /// then pays only for a copy of the core, not for serialising and
    /// verifying it, which keeps append latency flat on large queues (the
    /// server turns this on). The snapshot is written in a later transaction.
    pub background_snapshots: bool,
    /// Checkpoint the WAL on a background thread (default false) instead of
    /// inside the commit that crosses SQLite's threshold, which then waits
    /// for the copy and its fsync (the server turns this on; see
    /// `checkpointer`). Should the WAL still grow past 16 times the
    /// threshold, the writer checkpoints it itself.
    pub background_checkpoints: bool,
    /// Open even when the database holds less than the acknowledgement
    /// marker says was acknowledged (default false: refuse with
    /// [`StoreError::LossDetected`]). The loss is recorded as a
    /// `loss_accepted` event and in [`OpenReport::loss`].
    pub accept_loss: bool,
    /// Files and directories whose content shows the store had state,
    /// besides the store-id file the store writes itself (`<stem>.store-id`;
    /// the server passes its own files in the data dir: build logs, drone
    /// credentials, releases). When the database is missing or empty and
    /// no marker says what was acknowledged (an `rm -f swarm.db*` also
    /// removes the marker), any of them with content (a file with bytes, a
    /// directory with an entry) refuses the open as
    /// [`StoreError::StateWithoutDatabase`] instead of starting a new,
    /// empty store; `accept_loss` opens anyway and records the loss.
    pub state_evidence: Vec<PathBuf>,
    /// Fault injection for tests: while the value is nonzero, the database
    /// may grow to at most that many pages, so writes fail as on a full disk.
    pub fault_page_limit: Option<Arc<AtomicU64>>,
    /// Fault injection for tests: what every fsync of the WAL made through
    /// `wal_sync` (those before answering, and the one at the end of
    /// `open`) does instead of working: hang, or fail; and whether each
    /// commit hangs or panics first.
    pub fault_sync: Option<Arc<crate::SyncFaults>>,
    /// With `synchronous: Full`, commit without waiting for the fsync and
    /// leave it to the caller (default false): [`Store::wal_sync`] gives the
    /// handle that fsyncs the WAL from another thread, and nothing may be
    /// acknowledged before it returns. The server does this so the writer
    /// applies the next batch while the last one reaches the disk; see
    /// `wal_sync.rs`. The marker then moves with those fsyncs
    /// ([`WalSync::sync_acknowledging`](crate::WalSync::sync_acknowledging),
    /// before the replies) and by [`Store::acknowledge`].
    pub defer_sync: bool,
    /// This swarm build (`0.1.0+commit`), recorded in `meta.last_build` by each open that
    /// succeeds: a log another build decides otherwise is refused naming the build that wrote
    /// it (h33 F2: every build said `0.1.0`). `None` records nothing.
    pub build: Option<String>,
    /// How often, at most, the store-id file is told how far the acknowledged inputs reached
    /// (with `synchronous: Full`; 60 s by default). An older copy of the database put back
    /// after a crash is refused when it ends before the last such record: recorded only at
    /// each start and clean stop, a copy from last night put back after a crash today opened
    /// without the inputs acknowledged since the last start. Each record is a small file
    /// written whole, two fsyncs on the writer's thread.
    pub reached_every: std::time::Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            config: Config::default(),
            synchronous: Synchronous::Full,
            snapshot_every: 10_000,
            keep_snapshots: 2,
            compact_log: true,
            builds_retention_ms: Some(30 * swarm_core::time::HOUR_MS * 24),
            events_retention_ms: Some(7 * swarm_core::time::HOUR_MS * 24),
            open_at: None,
            verify_on_open: true,
            background_snapshots: false,
            background_checkpoints: false,
            accept_loss: false,
            state_evidence: Vec::new(),
            fault_page_limit: None,
            fault_sync: None,
            defer_sync: false,
            build: None,
            reached_every: std::time::Duration::from_secs(60),
        }
    }
}

/// What `open` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The snapshot the state was restored from (0: replayed from the start).
    pub snapshot_seq: u64,
    /// Inputs replayed on top of it, each checked against the outbox.
    pub replayed: u64,
    /// Snapshots that failed to verify, newest first, with the reason.
    pub skipped_snapshots: Vec<(u64, String)>,
    /// The seq of the `Recovered` input appended.
    pub recovered_seq: u64,
    /// What was lost, when `accept_loss` let the store open on less than
    /// was acknowledged.
    pub loss: Option<String>,
}

/// `wal_sync::sync_left` at open, refusing the start when it fails: nothing the open records as
/// acknowledged may rest on commits only in the page cache.
fn sync_wal_at_open(db: &Path, opts: &StoreOptions) -> Result<(), StoreError> {
    crate::wal_sync::sync_left(db, opts.fault_sync.as_deref()).map_err(|e| StoreError::Io {
        path: crate::db_path::beside_database(db, "-wal"),
        source: std::io::Error::other(format!(
            "its fsync at start failed ({e}): what was written into it may not be on the disk, \
             and nothing was recorded as acknowledged; check the disk before starting again"
        )),
    })
}

/// The durable, crash-only home of one `Swarm`. Single writer: see `lock`.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    opts: StoreOptions,
    /// `None` after a failed write whose rebuild also failed.
    core: Option<Swarm>,
    config: Config,
    tables: ReadTables,
    last_seq: u64,
    last_snapshot: u64,
    poison: Option<String>,
    report: OpenReport,
    /// Bumped by every rebuild: background snapshots of older generations may
    /// describe rolled-back inputs and are dropped.
    generation: u64,
    snapshotter: Option<Snapshotter>,
    checkpointer: Option<Checkpointer>,
    /// Shared with every `WalSync` (see `acked`).
    marker: SharedMarker,
    /// The page limit last applied from `fault_page_limit`.
    applied_page_limit: u64,
    /// Why the last write failed, until one succeeds.
    write_error: Option<String>,
    /// The database, its WAL and the marker as opened, checked before
    /// writes (`check_file`).
    file: FileIdentity,
    /// `meta.store_id`: which history this is (new after an accepted loss).
    store_id: String,
    /// When the store-id file was last told how far the store came (`reached_every`).
    reached_recorded: std::time::Instant,
    /// The seq the store-id file was last told (`record_reached`).
    reached_on_file: u64,
    /// Why the store-id file could not be told how far the store came, until it can again.
    id_file_error: Option<String>,
    _lock: LockFile,
}

/// Which files the database, its WAL and the marker are, and when that was
/// last checked.
struct FileIdentity {
    /// The database's device and inode at open; `None` if they could not be read.
    id: Option<(u64, u64)>,
    /// The WAL's, from the first time it was seen (at the end of `open`,
    /// where the open's own commit made sure it exists; SQLite keeps that
    /// file while the store's connection is open).
    wal: Option<(u64, u64)>,
    /// The marker's, as the store has it open.
    marker: Option<(u64, u64)>,
    checked: std::time::Instant,
    /// Once the WAL was found deleted or replaced: whether what the file SQLite still has open
    /// held was copied into the database then (the error says so).
    wal_copied: Option<bool>,
}

/// How often a write checks that the database, its WAL and the marker are
/// still the files opened (a `stat` each).
const FILE_CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Copies every commit in the WAL the store's connection has open into the database file (a
/// `FULL` checkpoint, which fsyncs it) after that WAL was deleted or replaced: the file is
/// unlinked, so what it alone holds would be gone at a crash, and no restart would find it.
fn copy_out_of_lost_wal(conn: &Connection, db: &Path) -> bool {
    let done = conn
        .query_row("PRAGMA wal_checkpoint(FULL)", [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(|e| e.to_string())
        .and_then(|(busy, frames, copied)| {
            if busy == 0 && copied == frames {
                Ok(())
            } else {
                Err(format!(
                    "{copied} of {frames} WAL frames copied; a reader held the rest"
                ))
            }
        });
    match &done {
        Ok(()) => tracing::error!(
            db = %db.display(),
            "the WAL was deleted or replaced under the store: what it held is copied into the \
             database, and writes are refused until a restart"
        ),
        Err(e) => tracing::error!(
            db = %db.display(),
            error = %e,
            "the WAL was deleted or replaced under the store, and what it held could not all be \
             copied into the database: stop swarm serve with SIGTERM now"
        ),
    }
    done.is_ok()
}

/// Moves a file that replaced the WAL out of its name once the store's own WAL was copied into
/// the database: swarm.db holds everything then, and at the next open SQLite would replay
/// that file's frames (an older copy of the WAL, say) over newer pages, and the store read as
/// damaged (h38 F1).
fn set_aside_foreign_wal(wal: &Path) {
    if std::fs::symlink_metadata(wal).is_err() {
        return;
    }
    let mut aside = wal.as_os_str().to_owned();
    aside.push(".replaced");
    match std::fs::rename(wal, &aside) {
        Ok(()) => tracing::error!(
            found = %wal.display(),
            moved_to = %std::path::Path::new(&aside).display(),
            "a file replaced the store's WAL; moved aside, as the database holds everything"
        ),
        Err(e) => tracing::error!(
            found = %wal.display(),
            error = %e,
            "a file replaced the store's WAL and could not be moved aside: remove it before the \
             next start, or that start replays it over the database"
        ),
    }
}

/// The writer's own checkpoints of a WAL far behind, logged while they go on.
static FAR_BEHIND: crate::repeat_log::RepeatLog =
    crate::repeat_log::RepeatLog::new(std::time::Duration::from_secs(60));

/// Refuses a database path that leads to something other than a regular
/// file (or to nothing yet), naming what it is.
fn check_is_a_file(path: &Path) -> Result<(), StoreError> {
    let Ok(meta) = std::fs::metadata(path) else {
        // Missing (the loss check decides) or unreadable (the open says why).
        return Ok(());
    };
    if meta.is_file() {
        return Ok(());
    }
    let mut kind = crate::own_file::kind_of(&meta.file_type()).to_owned();
    if let Ok(target) = std::fs::read_link(path) {
        kind.push_str(&format!(
            " (through the symbolic link to {})",
            target.display()
        ));
    }
    Err(StoreError::DatabaseNotAFile {
        path: path.to_owned(),
        kind,
    })
}

/// What is at `path` now when it is not the file `opened`, in words;
/// `None` when it still is.
fn changed(path: &Path, opened: (u64, u64)) -> Option<String> {
    match file_id(path) {
        Ok(now) if now == opened => None,
        Ok(_) => Some("another file is there now".to_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("it is gone".to_owned()),
        Err(e) => Some(format!("it cannot be read: {e}")),
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("last_seq", &self.last_seq)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating or migrating) a store, rebuilds the core from the newest
    /// verified snapshot and the log tail (checked against the outbox), and
    /// appends `Input::Recovered`.
    pub fn open(path: impl AsRef<Path>, opts: StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref();
        Store::open_checked(path.to_owned(), opts).map_err(|e| match e.at_open(path) {
            StoreError::OpenFailed { path, detail } => {
                let shm = crate::db_path::beside_database(&path, "-shm");
                let holders = crate::lock_holders::others_locking(&shm);
                if holders.is_empty() {
                    return StoreError::OpenFailed { path, detail };
                }
                StoreError::OpenElsewhere {
                    holders: holders
                        .iter()
                        .map(|(pid, name)| format!("pid {pid} ({name})"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    path,
                    detail,
                }
            }
            e => e,
        })
    }

    fn open_checked(path: PathBuf, opts: StoreOptions) -> Result<Store, StoreError> {
        // Before the lock: nothing is created beside a directory or a
        // device (a link to /dev/null would get /dev/null.lock).
        check_is_a_file(&path)?;
        let mut lock = LockFile::acquire(&path)?;
        let mut loss = LossCheck {
            db: path.clone(),
            accept: opts.accept_loss,
            acked: None,
            evidence: opts
                .state_evidence
                .iter()
                .cloned()
                .chain([id_file::path(&path)])
                .collect(),
            found: Vec::new(),
        };
        match acked::read(&path) {
            Ok(a) => loss.acked = a,
            Err(e @ (StoreError::MarkerUnreadable { .. } | StoreError::MarkerEmpty { .. }))
                if opts.accept_loss =>
            {
                loss.found.push(format!("unknown: {e}"));
            }
            // Beside a missing or empty database an empty marker hides
            // nothing: it is read as none, and the data dir's evidence
            // decides (`LossCheck::missing`).
            Err(StoreError::MarkerEmpty { .. })
                if std::fs::metadata(&path).map_or(true, |m| m.len() == 0) => {}
            Err(e) => return Err(e),
        }
        // Only an id file that says how far the store came was written after the marker:
        // builds before wrote it first, and a start of theirs killed between the two left
        // it without a marker (h42 F4).
        // What this data dir's store-id file said before this open rewrites it.
        let ran = id_file::read(&path);
        if loss.acked.is_none()
            && ran.as_ref().is_some_and(|(_, reached)| reached.is_some())
            && std::fs::metadata(&path).is_ok_and(|m| m.len() > 0)
        {
            loss.refuse(
                StoreError::MarkerMissing {
                    db: path.clone(),
                    marker: acked::marker_path(&path),
                    id_file: id_file::path(&path),
                },
                "the acknowledgement marker was missing, though the store-id file shows it \
                 existed: which acknowledged inputs the database lost, if any, is unknown"
                    .into(),
            )?;
        }
        match std::fs::metadata(&path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                loss.missing(0, "the database file is missing")?;
            }
            Ok(m) if m.len() == 0 => loss.missing(0, "the database file is empty (0 bytes)")?,
            _ => {}
        }
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(&path, flags)?;
        // Until the open succeeds, closing this connection neither
        // checkpoints the WAL into the database nor deletes it: a refused
        // open (loss detected, a damaged WAL frame, an older database under
        // a live WAL) leaves the -wal file, byte for byte, for the operator
        // to restore from. SQLite otherwise copies the valid prefix and
        // deletes the file when its last connection closes.
        conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)?;
        let deferred = opts.defer_sync && opts.synchronous == Synchronous::Full;
        schema::configure_writer(&conn, opts.synchronous == Synchronous::Full && !deferred)?;
        let wal_held = lock.hold_wal(&path)?;
        // An older store is upgraded in one transaction with the replay that proves its log, and
        // committed only once that holds. A log this build decides otherwise (inputs an older
        // swarm logged after its last snapshot) is refused with the file left as it was, for the
        // swarm that wrote it: before, the schema was upgraded first, and then no version opened
        // the store (h33 F1). A refused or killed open rolls back when the connection closes.
        // The upgrade is one way, so the store is first copied aside for the build that wrote
        // it (h33 F4).
        let upgrading = match schema::older_version(&conn)? {
            Some(from) => {
                let backup = upgrade_backup::take(&conn, &path, from)?;
                conn.execute_batch("BEGIN IMMEDIATE")?;
                Some((from, backup))
            }
            None => None,
        };
        schema::migrate(&mut conn, &path)?;
        // A new database: the migration's write made the WAL, a read opens it.
        if !wal_held {
            conn.query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))?;
            if !lock.hold_wal(&path)? {
                return Err(StoreError::NoWal {
                    detail: "SQLite made no WAL for the database".into(),
                });
            }
        }
        // Before anything this open decides from the log (and before `--accept-loss` gives the
        // store a new id): see `sync_left`.
        sync_wal_at_open(&path, &opts)?;
        if opts.verify_on_open {
            schema::quick_check(&conn)?;
        }
        let config = match meta_get(&conn, "config")? {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| StoreError::ConfigUnreadable {
                    detail: e.to_string(),
                })?
            }
            None => {
                opts.config.validate()?;
                let tx = conn.savepoint()?;
                meta_set(&tx, "config", &serde_json::to_string(&opts.config)?)?;
                meta_set(&tx, "created_by", env!("CARGO_PKG_VERSION"))?;
                tx.commit()?;
                opts.config.clone()
            }
        };
        let had_id = meta_get(&conn, "store_id")?;
        let new_history = had_id.is_none();
        let store_id = match had_id {
            Some(id) => {
                if let Some(a) = loss.acked.clone().filter(|a| a.store_id != id) {
                    loss.missing(
                        0,
                        &format!(
                            "the database is another store (id {id}) than the one whose inputs \
                             were acknowledged (id {}, in {}): {}* were replaced, or that marker \
                             was",
                            a.store_id,
                            acked::marker_path(&path).display(),
                            path.display()
                        ),
                    )?;
                } else if let Some((ran, _)) = ran.as_ref().filter(|(ran, _)| *ran != id) {
                    // The marker is named `swarm.db.acked`: a backup of `swarm.db*` put back
                    // (or another farm's) brings its own, which agrees with it. The id file
                    // beside them says which store this data dir ran last.
                    loss.missing(
                        0,
                        &format!(
                            "the database is another store (id {id}) than the one this data dir \
                             ran last (id {ran}, in {}): {}* were replaced by older or other \
                             files, and what store {ran} acknowledged is not in them",
                            id_file::path(&path).display(),
                            path.display()
                        ),
                    )?;
                }
                id
            }
            None => {
                if loss.found.is_empty() && loss.acked.is_some() {
                    loss.missing(
                        0,
                        "the database has no store id: it was created anew, or the commits \
                         that gave it one were only in a -wal file that is gone (deleted, \
                         replaced, or not copied in before a crash)",
                    )?;
                }
                let id = new_store_id();
                let tx = conn.savepoint()?;
                meta_set(&tx, "store_id", &id)?;
                tx.commit()?;
                id
            }
        };
        let last_build = meta_get(&conn, LAST_BUILD)?;
        let rebuilt = recover::rebuild(&conn, &config).map_err(|e| {
            written_by_another_build(e, last_build.as_deref(), opts.build.as_deref())
        })?;
        if let Some((from, backup)) = upgrading {
            conn.execute_batch("COMMIT")?;
            tracing::warn!(
                store = %path.display(),
                from,
                to = schema::LATEST,
                backup = %backup.display(),
                to_go_back = %format!(
                    "stop swarm, remove {db}-wal and {db}-shm, copy {backup} to {db} and start \
                     the build that wrote it with --accept-loss (what is logged from now on is \
                     lost)",
                    db = path.display(),
                    backup = backup.display()
                ),
                "upgraded the store's schema, after a copy of it; older swarm builds refuse it \
                 from now on"
            );
        }

        if loss.found.is_empty() {
            if let Some(a) = loss.acked.clone().filter(|a| a.seq > rebuilt.last_seq) {
                loss.missing(
                    rebuilt.last_seq,
                    &format!(
                        "its log ends at seq {}, before the last acknowledged seq {} ({} \
                         acknowledged {} gone; a deleted or damaged -wal file loses the \
                         newest commits)",
                        rebuilt.last_seq,
                        a.seq,
                        a.seq - rebuilt.last_seq,
                        if a.seq - rebuilt.last_seq == 1 {
                            "input is"
                        } else {
                            "inputs are"
                        }
                    ),
                )?;
            }
        }
        if loss.found.is_empty() && !new_history {
            // The marker came with the database files, so it agrees with an older copy of them;
            // the store-id file stays behind and says how far this store had come.
            let reached = ran
                .as_ref()
                .filter(|(ran, _)| *ran == store_id)
                .and_then(|(_, reached)| *reached)
                .filter(|reached| *reached > rebuilt.last_seq);
            if let Some(reached_seq) = reached {
                loss.refuse(
                    StoreError::OlderThanReached {
                        db: path.clone(),
                        id_file: id_file::path(&path),
                        reached_seq,
                        found_seq: rebuilt.last_seq,
                    },
                    format!(
                        "its log ends at seq {}, before seq {reached_seq}, which the store had \
                         reached and acknowledged (an older copy of the database was put back)",
                        rebuilt.last_seq
                    ),
                )?;
            }
        }
        // An accepted loss starts a new history: seqs from here on reuse
        // numbers the lost inputs had. Under a new store id, the files from
        // before (the original database and WAL put back later) are refused
        // as another store instead of opening silently without what is
        // acknowledged after the loss.
        let store_id = if loss.found.is_empty() || new_history {
            store_id
        } else {
            let id = new_store_id();
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            meta_set(&tx, "store_id", &id)?;
            tx.commit()?;
            loss.found.push(format!(
                "the store id is now {id} (was {store_id}): the files from before the loss are \
                 refused if put back"
            ));
            id
        };
        // Which swarm wrote this store, newest first: an input kind this
        // build does not know is then damage, not a newer swarm's.
        let newest_writer = meta_get(&conn, recover::NEWEST_WRITER)?;
        if newest_writer.as_deref() != Some(recover::THIS_VERSION)
            && newest_writer
                .as_deref()
                .is_none_or(|v| recover::newer_than_this(v) == Some(false))
        {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            meta_set(&tx, recover::NEWEST_WRITER, recover::THIS_VERSION)?;
            tx.commit()?;
        }
        if let Some(build) = opts
            .build
            .as_deref()
            .filter(|b| last_build.as_deref() != Some(*b))
        {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            meta_set(&tx, LAST_BUILD, build)?;
            tx.commit()?;
        }
        // Again: the open's own commits since (a new store's id, `--accept-loss`'s new id, the
        // newest writer) are in the page cache only, with the writer's deferred fsyncs, and the
        // marker and the store-id file about to name this store must not outlive them (h47).
        sync_wal_at_open(&path, &opts)?;
        let marker = Marker::open(&path, &store_id, rebuilt.last_seq)?;
        // After the marker: the file then also says that the marker existed.
        id_file::record(&path, &store_id, rebuilt.last_seq, false)?;
        acked::remove_legacy(&path);
        let marker_id = marker.file_id();
        let id_of_store = store_id.clone();
        let config = rebuilt.swarm.config().clone();
        let last_snapshot: u64 =
            conn.query_row("SELECT COALESCE(MAX(seq), 0) FROM snapshots", [], |r| {
                r.get::<_, i64>(0)
            })? as u64;
        let tables = {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let t = ReadTables::rewrite(&tx, rebuilt.swarm.view(), rebuilt.last_seq)?;
            tx.commit()?;
            t
        };
        let open_at = opts.open_at.unwrap_or(rebuilt.swarm.view().now());
        let opened_id = file_id(&path).ok();
        let mut store = Store {
            conn,
            path,
            opts,
            core: Some(rebuilt.swarm),
            config,
            tables,
            last_seq: rebuilt.last_seq,
            last_snapshot,
            poison: None,
            report: OpenReport {
                snapshot_seq: rebuilt.base_seq,
                replayed: rebuilt.replayed,
                skipped_snapshots: rebuilt.skipped,
                recovered_seq: 0,
                loss: None,
            },
            generation: 0,
            snapshotter: None,
            checkpointer: None,
            marker: Arc::new(std::sync::Mutex::new(marker)),
            applied_page_limit: 0,
            write_error: None,
            file: FileIdentity {
                id: opened_id,
                wal: None,
                marker: marker_id,
                checked: std::time::Instant::now(),
                wal_copied: None,
            },
            store_id: id_of_store,
            reached_recorded: std::time::Instant::now(),
            reached_on_file: rebuilt.last_seq,
            id_file_error: None,
            _lock: lock,
        };
        if store.opts.background_snapshots {
            let bg = Snapshotter::start().map_err(|e| StoreError::Poisoned {
                reason: format!("cannot start the snapshot thread: {e}"),
            })?;
            store.snapshotter = Some(bg);
        }
        if store.opts.background_checkpoints {
            store
                .conn
                .pragma_update(None, "wal_autocheckpoint", 0)
                .map_err(StoreError::from)?;
            let cp = Checkpointer::start(&store.path).map_err(|e| StoreError::Poisoned {
                reason: format!("cannot start the checkpoint thread: {e}"),
            })?;
            store.checkpointer = Some(cp);
        }
        let (seq, _) = store.append(open_at, Input::Recovered)?;
        store.report.recovered_seq = seq.0;
        // That commit made the WAL: the file SQLite has open from now on.
        store.file.wal = file_id(&store.wal_path()).ok();
        if !loss.found.is_empty() {
            let detail = loss.describe();
            store.record_loss(seq.0, open_at, &detail)?;
            store.report.loss = Some(detail);
        }
        // What open wrote is durable before anyone relies on it.
        if let Some(sync) = store.wal_sync() {
            let last = store.last_seq;
            sync.sync_acknowledging(Seq(last))
                .map_err(|source| StoreError::Io {
                    path: sync.path().to_owned(),
                    source,
                })?;
            store.acknowledge(Seq(last))?;
        }
        // Opened: a clean close checkpoints and removes the WAL again.
        store
            .conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, false)?;
        Ok(store)
    }

    /// Records an accepted loss: an event in the feed and `meta.last_loss`.
    fn record_loss(&mut self, seq: u64, at: Timestamp, detail: &str) -> Result<(), StoreError> {
        let body = serde_json::json!({ "type": "loss_accepted", "detail": detail });
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO events (seq, at_ms, kind, drone, package, body)
             VALUES (?1, ?2, 'loss_accepted', NULL, NULL, ?3)",
            params![seq as i64, at.0 as i64, body.to_string()],
        )?;
        meta_set(
            &tx,
            "last_loss",
            &format!("seq {seq} at {} ms: {detail}", at.0),
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Appends one input: durable before its outputs are returned.
    pub fn append(
        &mut self,
        at: Timestamp,
        input: Input,
    ) -> Result<(Seq, Vec<Output>), StoreError> {
        let mut done = self.append_batch(vec![(at, input)])?;
        done.pop().ok_or_else(|| StoreError::Poisoned {
            reason: "a batch of one returned nothing".into(),
        })
    }

    /// Group commit: appends many inputs in one transaction and one fsync, in
    /// order, and returns each one's seq and outputs. All or nothing: on error
    /// none of them was recorded (the core is rebuilt from the file), so the
    /// caller answers every sender with the error and none is acknowledged.
    pub fn append_batch(
        &mut self,
        inputs: Vec<(Timestamp, Input)>,
    ) -> Result<Vec<(Seq, Vec<Output>)>, StoreError> {
        self.append_batch_then(inputs, || None)
    }

    /// Group commit that may grow: appends `inputs`, then each batch `more`
    /// gives, in the same transaction, until it gives `None`. A writer with
    /// bulk work in hand (the parts of a big push) adds the next part while
    /// nobody else waits, so the parts share one commit and rewrite their
    /// hot pages (the last page of the log, the index pages the new rows
    /// land on) once instead of once a part; it stops adding the moment
    /// another input comes, so that input waits for one part, not for the
    /// whole push. All or nothing as `append_batch`: on error none of the
    /// inputs, including those `more` gave, was recorded.
    pub fn append_batch_then(
        &mut self,
        inputs: Vec<(Timestamp, Input)>,
        more: impl FnMut() -> Option<Vec<(Timestamp, Input)>>,
    ) -> Result<Vec<(Seq, Vec<Output>)>, StoreError> {
        let done = self.append_batch_noting(inputs, more, |_| ())?;
        Ok(done.into_iter().map(|(seq, out, ())| (seq, out)).collect())
    }

    /// [`Store::append_batch_then`], and `note` reads the core right after each input, in
    /// order: for what a caller answers from the state an input left rather than from the
    /// state after the whole batch (a drone's [`Swarm::verdict`](swarm_core::Swarm::verdict)).
    pub fn append_batch_noting<T>(
        &mut self,
        inputs: Vec<(Timestamp, Input)>,
        more: impl FnMut() -> Option<Vec<(Timestamp, Input)>>,
        note: impl FnMut(&Swarm) -> T,
    ) -> Result<Vec<(Seq, Vec<Output>, T)>, StoreError> {
        let result = self
            .apply_faults()
            .and_then(|()| self.ensure_core())
            .and_then(|()| match self.try_append(inputs, more, note) {
                Ok(done) => Ok(done),
                Err(e) => {
                    self.rebuild_after_failure();
                    Err(e)
                }
            });
        self.note_write(result.as_ref().err());
        result
    }

    /// The handle that makes commits durable when `defer_sync` is in force
    /// (`None`: every commit is as durable as `synchronous` says by itself).
    pub fn wal_sync(&self) -> Option<crate::wal_sync::WalSync> {
        self.defers_sync().then(|| {
            crate::wal_sync::WalSync::new(
                &self.path,
                self.opts.fault_sync.clone(),
                self.marker.clone(),
            )
        })
    }

    fn defers_sync(&self) -> bool {
        self.opts.defer_sync && self.opts.synchronous == Synchronous::Full
    }

    /// Records in the marker that everything up to `seq` is acknowledged:
    /// with `defer_sync`, after a [`WalSync::sync`](crate::WalSync::sync)
    /// that began after `seq` was committed (a
    /// [`WalSync::sync_acknowledging`](crate::WalSync::sync_acknowledging)
    /// has recorded it already, before its replies; this never moves the
    /// marker back).
    /// With `defer_sync` this is also where the checkpointer is nudged: the
    /// commits it would copy into the database are durable in the WAL only
    /// now, and a writer that never nudged it left the WAL to grow for good.
    pub fn acknowledge(&mut self, seq: Seq) -> Result<(), StoreError> {
        acked::record_shared(&self.marker, seq.0.min(self.last_seq))?;
        if self.defers_sync() {
            self.nudge_checkpoints();
        }
        self.record_reached_if_due();
        Ok(())
    }

    fn note_write(&mut self, error: Option<&StoreError>) {
        self.write_error = error.map(ToString::to_string);
        if error.is_none() && !self.defers_sync() {
            // After the commit: the marker never leads the database.
            if let Err(e) = acked::record_shared(&self.marker, self.last_seq) {
                self.write_error = Some(e.to_string());
            }
            self.nudge_checkpoints();
        }
        // Also after an idle probe (a write too), so a server that acknowledges nothing for a
        // while still finds out that the file cannot be written (h48 F3).
        if error.is_none() {
            self.record_reached_if_due();
        }
    }

    /// After a durable commit: the background checkpointer may copy it into
    /// the database, and a WAL it could not keep small is checkpointed here.
    fn nudge_checkpoints(&self) {
        if let Some(cp) = &self.checkpointer {
            cp.nudge();
            self.checkpoint_if_far_behind();
        }
    }

    /// The safety net of background checkpoints: a WAL the thread could not
    /// keep small (it only copies what no commit races) is checkpointed here,
    /// where no commit can race it.
    fn checkpoint_if_far_behind(&self) {
        let size = std::fs::metadata(self.wal_path()).map_or(0, |m| m.len());
        if size >= 16 * crate::checkpointer::CHECKPOINT_BYTES {
            // While a reader holds an old snapshot (a long `swarm sql`, a
            // `sqlite3` session left in a transaction) this is every commit:
            // a line per commit filled the log (h29: 834 lines in 86 s).
            if let Some(n) = FAR_BEHIND.note(std::time::Instant::now()) {
                tracing::info!(
                    wal_bytes = size,
                    times = n,
                    "the WAL grew past 16 times the checkpoint threshold; the writer checkpoints it (a reader holding an old snapshot keeps it from starting over; logged at most once a minute while it lasts)"
                );
            }
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        } else {
            FAR_BEHIND.clear();
        }
    }

    /// The injected faults a write meets first (`fault_page_limit`,
    /// `SyncFaults::commit_hang_ms` and `commit_panic`).
    fn apply_faults(&mut self) -> Result<(), StoreError> {
        self.check_file()?;
        if let Some(faults) = &self.opts.fault_sync {
            crate::wal_sync::hold(&faults.commit_hang_ms, std::time::Instant::now());
            assert!(
                !faults.commit_panic.load(Ordering::SeqCst),
                "a commit panicked (injected by SyncFaults::commit_panic)"
            );
        }
        let Some(limit) = &self.opts.fault_page_limit else {
            return Ok(());
        };
        let want = limit.load(Ordering::SeqCst);
        if want != self.applied_page_limit {
            self.set_max_page_count(if want == 0 { 0xffff_fffe } else { want })?;
            self.applied_page_limit = want;
        }
        Ok(())
    }

    /// Refuses to write once the database file was deleted or replaced under
    /// the store (an `rm -rf` of the data dir, a restore over a running
    /// server): SQLite would go on writing to the unlinked file, and every
    /// reply would acknowledge what no restart can find. Checked at most
    /// every `FILE_CHECK_EVERY`; a refusal shows in health (`write_error`).
    ///
    /// The same holds for the WAL (an `rm swarm.db-wal`: every commit since
    /// the last checkpoint would live only in the unlinked file, gone at a
    /// crash) and for the marker (a restart could no longer tell whether
    /// acknowledged inputs were lost).
    fn check_file(&mut self) -> Result<(), StoreError> {
        if self.file.checked.elapsed() < FILE_CHECK_EVERY && self.write_error.is_none() {
            return Ok(());
        }
        self.file.checked = std::time::Instant::now();
        if let Some(opened) = self.file.id {
            if let Some(detail) = changed(&self.path, opened) {
                return Err(StoreError::DatabaseReplaced {
                    path: self.path.clone(),
                    detail,
                });
            }
        }
        let wal = self.wal_path();
        match self.file.wal {
            Some(opened) => {
                if let Some(detail) = changed(&wal, opened) {
                    let copied = *self
                        .file
                        .wal_copied
                        .get_or_insert_with(|| copy_out_of_lost_wal(&self.conn, &self.path));
                    if copied {
                        set_aside_foreign_wal(&wal);
                    }
                    return Err(StoreError::WalReplaced {
                        wal,
                        db: self.path.clone(),
                        detail,
                        copied,
                    });
                }
            }
            // Not seen yet: the first one seen is SQLite's.
            None => self.file.wal = file_id(&wal).ok(),
        }
        if let Some(opened) = self.file.marker {
            let marker = acked::marker_path(&self.path);
            if let Some(detail) = changed(&marker, opened) {
                // The store knows what it acknowledged: it writes the marker anew rather than
                // refusing writes until a restart, which writes the same.
                let rewritten = match self.marker.lock() {
                    Ok(mut m) => m.rewrite(&self.path).map(|()| (m.file_id(), m.highest())),
                    Err(_) => Err(StoreError::Poisoned {
                        reason: "a thread panicked while it wrote the acknowledgement marker"
                            .into(),
                    }),
                };
                match rewritten {
                    Ok((id, seq)) => {
                        self.file.marker = id;
                        tracing::warn!(
                            marker = %marker.display(),
                            found = %detail,
                            seq,
                            "the acknowledgement marker was deleted or replaced under the running \
                             store; it is written anew with the last acknowledged seq"
                        );
                    }
                    Err(e) => {
                        return Err(StoreError::MarkerReplaced {
                            marker,
                            detail: format!("{detail}; writing it anew failed: {e}"),
                        })
                    }
                }
            }
        }
        Ok(())
    }

    /// The WAL, where SQLite keeps it.
    fn wal_path(&self) -> PathBuf {
        crate::db_path::beside_database(&self.path, "-wal")
    }

    /// Why the last write failed, or `None` when it worked. Cleared by the
    /// next write that works (an append or [`Store::probe_write`]).
    pub fn write_error(&self) -> Option<&str> {
        self.write_error.as_deref()
    }

    /// Checks that the database takes writes, without logging an input: one
    /// transaction writing 64 KiB into `meta` (about what a large batch
    /// writes). Used while a write error is outstanding, so health recovers
    /// by itself once space returns, and now and then while idle. A probe
    /// that works says the store took 64 KiB now, not that every later
    /// append fits: `write_error` always describes the latest attempt.
    pub fn probe_write(&mut self, at: Timestamp) -> Result<(), StoreError> {
        let result = self.apply_faults().and_then(|()| {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let filler = " ".repeat(PROBE_BYTES);
            meta_set(&tx, "write_probe", &format!("{}{filler}", at.0))?;
            tx.commit()?;
            Ok(())
        });
        if result.is_err() && !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let result = result.and_then(|()| self.ensure_core());
        self.note_write(result.as_ref().err());
        result
    }

    fn try_append<T>(
        &mut self,
        inputs: Vec<(Timestamp, Input)>,
        mut more: impl FnMut() -> Option<Vec<(Timestamp, Input)>>,
        mut note: impl FnMut(&Swarm) -> T,
    ) -> Result<Vec<(Seq, Vec<Output>, T)>, StoreError> {
        let Store {
            conn,
            core,
            tables,
            opts,
            snapshotter,
            ..
        } = self;
        let core = core.as_mut().ok_or_else(|| StoreError::Poisoned {
            reason: "no state".into(),
        })?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut seq = self.last_seq;
        let mut last_snapshot = self.last_snapshot;
        if let Some(prepared) = snapshotter.as_mut().and_then(Snapshotter::poll) {
            // Only a snapshot of committed inputs of this generation.
            if prepared.generation == self.generation && prepared.seq <= self.last_seq {
                write_prepared(&tx, prepared, core.view().now().0, opts)?;
            }
        }
        let mut done = Vec::with_capacity(inputs.len());
        let mut batch = inputs.into_iter();
        while let Some((at, input)) = batch.next().or_else(|| {
            batch = more()?.into_iter();
            batch.next()
        }) {
            seq += 1;
            // The log holds the core's smallest equivalent of the input (a drone's spec said
            // again is not logged again); the core handles that same form, here and in replay.
            let input = core.condense(input);
            let input_text = serde_json::to_value(&input)?.to_string();
            let crc = crate::log_crc::of(seq, at.0, &input_text);
            tx.prepare_cached(
                "INSERT INTO input_log (seq, at_ms, input, crc) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![seq as i64, at.0 as i64, input_text, i64::from(crc)])?;
            let env = Envelope {
                seq: Seq(seq),
                at,
                input,
            };
            let outputs = core.handle(&env);
            let jsons = outputs
                .iter()
                .map(OutputJson::new)
                .collect::<Result<Vec<_>, _>>()?;
            for (idx, o) in jsons.iter().enumerate() {
                tx.prepare_cached("INSERT INTO outbox (seq, idx, output) VALUES (?1, ?2, ?3)")?
                    .execute(params![seq as i64, idx as i64, o.text])?;
            }
            tables.apply(
                &tx,
                core.view(),
                core.touched(),
                &Applied {
                    seq,
                    at,
                    input: &env.input,
                    outputs: &jsons,
                },
            )?;
            if seq >= last_snapshot + snapshot_interval(opts, core) {
                match snapshotter.as_mut() {
                    Some(bg) if !bg.busy() => {
                        if !bg.request(self.generation, seq, core) {
                            snapshot_and_compact(&tx, core, seq, opts)?;
                        }
                        last_snapshot = seq;
                    }
                    // One at a time: try again at the next input.
                    Some(_) => {}
                    None => {
                        snapshot_and_compact(&tx, core, seq, opts)?;
                        last_snapshot = seq;
                    }
                }
            }
            done.push((Seq(seq), outputs, note(core)));
        }
        tx.commit()?;
        self.last_seq = seq;
        self.last_snapshot = last_snapshot;
        Ok(done)
    }

    fn ensure_core(&mut self) -> Result<(), StoreError> {
        if self.core.is_some() {
            return Ok(());
        }
        self.rebuild_after_failure();
        match &self.poison {
            None => Ok(()),
            Some(reason) => Err(StoreError::Poisoned {
                reason: reason.clone(),
            }),
        }
    }

    /// Crash-only: forget memory, believe the file.
    fn rebuild_after_failure(&mut self) {
        self.core = None;
        self.generation += 1;
        // A failed COMMIT may leave the transaction open; end it.
        if !self.conn.is_autocommit() {
            let _ = self.conn.execute_batch("ROLLBACK");
        }
        let last_snapshot = self
            .conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM snapshots", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|s| s as u64);
        match (recover::rebuild(&self.conn, &self.config), last_snapshot) {
            (Ok(rebuilt), Ok(last_snapshot)) => {
                self.tables = ReadTables::from_view(rebuilt.swarm.view());
                self.last_seq = rebuilt.last_seq;
                self.last_snapshot = last_snapshot;
                self.core = Some(rebuilt.swarm);
                self.poison = None;
            }
            (Err(e), _) => self.poison = Some(e.to_string()),
            (_, Err(e)) => self.poison = Some(StoreError::from(e).to_string()),
        }
    }

    /// The core, read-only. An error if a failed write left no usable state.
    pub fn swarm(&self) -> Result<&Swarm, StoreError> {
        self.core.as_ref().ok_or_else(|| StoreError::Poisoned {
            reason: self.poison.clone().unwrap_or_default(),
        })
    }

    /// The config in force (the one the store was created with).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Which history this store holds: made once, kept across restarts and
    /// copies of the files, new after an accepted loss. A drone agent keeps it
    /// with a finished build, so the build goes only to the farm it was built
    /// for (lease numbers mean nothing elsewhere).
    pub fn store_id(&self) -> &str {
        &self.store_id
    }

    /// The last acknowledged seq.
    pub fn last_seq(&self) -> Seq {
        Seq(self.last_seq)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What `open` found.
    pub fn open_report(&self) -> &OpenReport {
        &self.report
    }

    /// Compares the read tables with the core's view: `Err` names the first difference.
    pub fn check_read_tables(&self) -> Result<(), StoreError> {
        let swarm = self.swarm()?;
        read_tables::check(&self.conn, swarm.view()).map_err(|detail| StoreError::Damaged {
            detail: format!("read tables disagree with the core: {detail}"),
        })
    }

    /// Caps the database size (`PRAGMA max_page_count`) for this connection; an
    /// append past it fails with `StoreError::DiskFull`. Returns the cap in force.
    pub fn set_max_page_count(&mut self, pages: u64) -> Result<u64, StoreError> {
        let set: i64 =
            self.conn
                .query_row(&format!("PRAGMA max_page_count = {pages}"), [], |r| {
                    r.get(0)
                })?;
        Ok(set as u64)
    }

    /// Pages the database uses now.
    pub fn page_count(&self) -> Result<u64, StoreError> {
        let n: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        Ok(n as u64)
    }

    /// Writes a snapshot now (and compacts), whatever `snapshot_every` says.
    pub fn snapshot(&mut self) -> Result<Seq, StoreError> {
        self.write_snapshot(self.opts.compact_log)
    }

    /// Writes a snapshot if inputs were logged since the last one, and compacts nothing: a clean
    /// stop leaves no log for the next open to replay. A swarm build whose core decides one of
    /// those inputs otherwise (an upgrade) then starts from the state instead of refusing the
    /// store (h33 F1), and a large farm's restart replays nothing.
    /// The store-id file then says how far the store came (what it acknowledged): an older copy
    /// of the database put back is refused at the next open.
    pub fn snapshot_on_close(&mut self) -> Result<Option<Seq>, StoreError> {
        self.record_reached(true);
        if self.last_seq <= self.last_snapshot {
            return Ok(None);
        }
        self.write_snapshot(false).map(Some)
    }

    /// `record_reached`, at most once per `reached_every`, in every mode, so a file that cannot
    /// be written is found while the server runs, not at its next start (h48 F3). It moves the
    /// recorded seq on only with `synchronous: Full`, where the marker says what is durable:
    /// after a power loss under `Normal` the file would claim inputs the log lost, and call the
    /// database an older copy; there it says again what it said.
    fn record_reached_if_due(&mut self) {
        if self.reached_recorded.elapsed() >= self.opts.reached_every {
            self.reached_recorded = std::time::Instant::now();
            self.record_reached(self.opts.synchronous == Synchronous::Full);
        }
    }

    /// Records in the store-id file the last seq acknowledged (durable, by the marker), or with
    /// `move_on` false the seq it said last (a check that it can still be written). A failure
    /// is logged when it starts and when a record works again, and kept for
    /// [`Store::id_file_error`] meanwhile (h44 F4: it was a warning a minute, seen by no monitor).
    fn record_reached(&mut self, move_on: bool) {
        let reached = if move_on {
            let Ok(marker) = self.marker.lock() else {
                return;
            };
            marker.highest()
        } else {
            self.reached_on_file
        };
        let now = id_file::record(&self.path, &self.store_id, reached, true)
            .err()
            .map(|e| e.to_string());
        if now.is_none() {
            self.reached_on_file = reached;
        }
        if now != self.id_file_error {
            match &now {
                Some(e) => {
                    tracing::error!(error = %e, "cannot write the store-id file: the next start is refused until it can be written, and meanwhile an older copy of the database put back would open without a word; health and /metrics say so until a record works (tried once a minute)")
                }
                None => tracing::info!("the store-id file records how far the store came again"),
            }
            self.id_file_error = now;
        }
    }

    /// Why the store-id file could not be written, until a record works (tried once per
    /// `reached_every` while the store writes, idle probes included). The store still takes
    /// writes, but its next open is refused while the file cannot be written (the open records
    /// it), and meanwhile an older copy of the database put back is not refused: a monitor must
    /// show it.
    pub fn id_file_error(&self) -> Option<&str> {
        self.id_file_error.as_deref()
    }

    fn write_snapshot(&mut self, compact_log: bool) -> Result<Seq, StoreError> {
        self.ensure_core()?;
        let Store {
            conn, core, opts, ..
        } = self;
        let core = core.as_ref().ok_or_else(|| StoreError::Poisoned {
            reason: "no state".into(),
        })?;
        let opts = StoreOptions {
            compact_log,
            ..opts.clone()
        };
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        snapshot_and_compact(&tx, core, self.last_seq, &opts)?;
        tx.commit()?;
        self.last_snapshot = self.last_seq;
        Ok(Seq(self.last_seq))
    }

    /// The log in the simulator's envelope format, from `since` (exclusive) on.
    pub fn export_since(&self, since: Seq) -> Result<crate::export::Export<'_>, StoreError> {
        crate::export::Export::new(&self.conn, since.0)
    }

    /// A read-only SQL explorer on this store's file (a separate connection).
    pub fn explorer(&self) -> Result<crate::explorer::Explorer, StoreError> {
        crate::explorer::Explorer::open(&self.path, crate::explorer::ExplorerOptions::default())
    }
}

/// The `meta` key naming the swarm build that last opened the store to write.
const LAST_BUILD: &str = "last_build";

/// A log refused as another swarm's (replayed otherwise, or no snapshot this build can read),
/// with the build that wrote it named when it is not this one.
fn written_by_another_build(e: StoreError, last: Option<&str>, this: Option<&str>) -> StoreError {
    match (&e, last, this) {
        (
            StoreError::Diverged { .. } | StoreError::NoUsableSnapshot { .. },
            Some(last),
            Some(this),
        ) if last != this => StoreError::OtherBuild {
            written_by: last.to_owned(),
            this: this.to_owned(),
            cause: Box::new(e),
        },
        _ => e,
    }
}

/// Bytes a `probe_write` writes.
const PROBE_BYTES: usize = 64 * 1024;

/// What `open` found missing, refused unless `accept_loss`.
struct LossCheck {
    db: PathBuf,
    accept: bool,
    acked: Option<Acked>,
    /// `StoreOptions::state_evidence`.
    evidence: Vec<PathBuf>,
    found: Vec<String>,
}

/// Which of `paths` have content: a file with bytes, a directory with an
/// entry.
fn with_content(paths: &[PathBuf]) -> Vec<&Path> {
    paths
        .iter()
        .filter(|p| match std::fs::metadata(p) {
            Ok(m) if m.is_dir() => std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some()),
            Ok(m) => m.len() > 0,
            Err(_) => false,
        })
        .map(PathBuf::as_path)
        .collect()
}

impl LossCheck {
    /// Records a loss: an error unless losses are accepted. With no marker,
    /// a loss only when the data dir shows the store had state.
    fn missing(&mut self, found_seq: u64, detail: &str) -> Result<(), StoreError> {
        let acked_seq = self.acked.as_ref().map_or(0, |a| a.seq);
        if self.acked.is_none() {
            let shown = with_content(&self.evidence);
            if shown.is_empty() {
                // Nothing was acknowledged here: nothing can be lost.
                return Ok(());
            }
            let evidence = shown
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ");
            if !self.accept {
                return Err(StoreError::StateWithoutDatabase {
                    db: self.db.clone(),
                    marker: acked::marker_path(&self.db),
                    detail: detail.to_owned(),
                    evidence,
                });
            }
            self.found.push(format!(
                "{detail} and there is no acknowledgement marker, but the data dir had state \
                 ({evidence})"
            ));
            return Ok(());
        }
        if !self.accept {
            return Err(StoreError::LossDetected {
                db: self.db.clone(),
                marker: acked::marker_path(&self.db),
                acked_seq,
                found_seq,
                detail: detail.to_owned(),
            });
        }
        if self.acked.is_some() || !self.found.is_empty() {
            self.found.push(format!(
                "{detail} (acknowledged through seq {acked_seq}, found {found_seq})"
            ));
        }
        Ok(())
    }

    /// A loss of another kind than a short log: `err` unless losses are accepted, else `note`
    /// joins what was found.
    fn refuse(&mut self, err: StoreError, note: String) -> Result<(), StoreError> {
        if !self.accept {
            return Err(err);
        }
        self.found.push(note);
        Ok(())
    }

    fn describe(&self) -> String {
        format!("{}: {}", self.db.display(), self.found.join("; "))
    }
}

/// A random id for a new store (16 hex digits), so the marker can tell this
/// store from another file put in its place.
fn new_store_id() -> String {
    let mut bytes = [0u8; 8];
    if getrandom::getrandom(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        bytes = (t ^ u64::from(std::process::id()).rotate_left(32)).to_le_bytes();
    }
    hex_of(&bytes)
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inputs between snapshots: `snapshot_every`, stretched for large states
/// (two inputs per package, up to `MAX_SNAPSHOT_INTERVAL`). A snapshot costs
/// CPU in proportion to the state (about 5 µs a package to serialise and
/// verify, off the writer), so a fixed interval would spend most of a busy
/// server's CPU on snapshots of a large queue: at 480,000 packages and
/// 100,000 inputs a snapshot took 2.5 CPU-seconds every 5 s of a 2-core
/// machine's 20,000 inputs/s. Two inputs per package keeps the cost per
/// input constant; replaying the longer tail on open costs a few times what
/// loading the snapshot itself does.
fn snapshot_interval(opts: &StoreOptions, core: &Swarm) -> u64 {
    let by_size = u64::from(core.view().package_count()) * 2;
    opts.snapshot_every
        .max(1)
        .max(by_size.min(MAX_SNAPSHOT_INTERVAL))
}

/// The longest interval `snapshot_interval` stretches to.
const MAX_SNAPSHOT_INTERVAL: u64 = 500_000;

/// Writes a verified snapshot of `core` after input `seq`, then compacts the
/// log behind the oldest kept snapshot and applies the history retention.
fn snapshot_and_compact(
    conn: &Connection,
    core: &Swarm,
    seq: u64,
    opts: &StoreOptions,
) -> Result<(), StoreError> {
    let digest = format_digest(core.digest());
    let state = serde_json::to_string(core.state())
        .map_err(|e| e.to_string())
        .and_then(|s| verify_snapshot(&s, &digest).map(|_| s));
    let prepared = Prepared {
        generation: 0,
        seq,
        digest,
        state,
    };
    write_prepared(conn, prepared, core.view().now().0, opts)
}

/// Writes a snapshot (unless it failed to verify: then it is recorded in
/// `meta` and nothing is compacted behind it), compacts the log behind the
/// oldest kept snapshot and applies the history retention as of `now`.
fn write_prepared(
    conn: &Connection,
    prepared: Prepared,
    now: u64,
    opts: &StoreOptions,
) -> Result<(), StoreError> {
    let Prepared {
        seq, digest, state, ..
    } = prepared;
    // Verified before relying on it: a snapshot that does not restore to the
    // same digest is never written, and nothing is compacted behind it.
    let state = match state {
        Ok(state) => state,
        Err(why) => {
            meta_set(conn, "snapshot_error", &format!("seq {seq}: {why}"))?;
            return Ok(());
        }
    };
    conn.prepare_cached(
        "INSERT OR REPLACE INTO snapshots (seq, digest, state) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![seq as i64, digest, state])?;
    conn.prepare_cached(
        "DELETE FROM snapshots WHERE seq NOT IN
            (SELECT seq FROM snapshots ORDER BY seq DESC LIMIT ?1)",
    )?
    .execute([i64::from(opts.keep_snapshots.max(1))])?;
    let oldest: i64 = conn.query_row("SELECT MIN(seq) FROM snapshots", [], |r| r.get(0))?;
    let horizon = recover::compacted_through(conn)?;
    if opts.compact_log && oldest as u64 > horizon {
        conn.prepare_cached("DELETE FROM input_log WHERE seq <= ?1")?
            .execute([oldest])?;
        conn.prepare_cached("DELETE FROM outbox WHERE seq <= ?1")?
            .execute([oldest])?;
        meta_set(conn, "compacted_through", &oldest.to_string())?;
    }
    if let Some(keep) = opts.builds_retention_ms {
        conn.prepare_cached("DELETE FROM builds WHERE finished_at < ?1")?
            .execute([now.saturating_sub(keep) as i64])?;
    }
    if let Some(keep) = opts.events_retention_ms {
        conn.prepare_cached("DELETE FROM events WHERE at_ms < ?1")?
            .execute([now.saturating_sub(keep) as i64])?;
    }
    Ok(())
}
