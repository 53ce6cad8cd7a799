//! One error type for the crate. Every message says what went wrong and what an
//! operator can do about it; none of them is ever "fixed" silently.

use std::path::PathBuf;
use swarm_core::ConfigError;

/// Everything the store can refuse or fail at.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The file could not be opened or locked at the OS level.
    #[error("cannot open {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this one) has the database open for writing.
    #[error(
        "{path} is already open for writing by another swarm process (lock file {lock} is held); \
         stop that process first, or use `swarm sql` for read-only access"
    )]
    Locked {
        /// The database.
        path: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// Another process still has the lock file open though it was deleted: a server running on
    /// the database, which a new lock file would let a second one in beside (h38 F2).
    #[error(
        "{path} is already open for writing by another swarm process ({holder}): it still has \
         the lock file open, which was deleted while it ran; stop that process first (SIGTERM), \
         or use `swarm sql` for read-only access"
    )]
    LockFileDeleted {
        /// The database.
        path: PathBuf,
        /// `pid 123 (swarm)`.
        holder: String,
    },
    /// Another process writes the database although its lock file was free:
    /// the lock file was deleted under it.
    #[error(
        "{path} is already open for writing by another swarm process: it holds the WAL {wal}, \
         although the lock file {lock} was free (deleted while that process ran?); stop that \
         process first, or use `swarm sql` for read-only access"
    )]
    WalHeld {
        /// The database.
        path: PathBuf,
        /// Its WAL.
        wal: PathBuf,
        /// The lock file that should have said so.
        lock: PathBuf,
    },
    /// SQLite could not open the database while another process holds locks on its `-shm`:
    /// that process has it open, with the lock file and the WAL deleted under it (h32 F6).
    #[error(
        "{path} is open in another process ({holders}), which holds locks on {}, although the \
         lock file {} and the WAL were free (deleted while that process ran?); SQLite said: \
         {detail}. stop that process first (a swarm serve: SIGTERM, and its clean stop keeps \
         what it acknowledged), then start again",
        crate::db_path::beside_database(path, "-shm").display(),
        crate::db_path::beside_database(path, ".lock").display()
    )]
    OpenElsewhere {
        /// The database.
        path: PathBuf,
        /// `pid 123 (swarm)`, ...
        holders: String,
        /// What SQLite said.
        detail: String,
    },
    /// The file is not a SQLite database, or SQLite found it inconsistent.
    #[error(
        "the store database is damaged ({detail}); stop swarm and restore swarm.db* from a backup \
         (then `swarm serve --accept-loss` if it is older than what was acknowledged: the start \
         says so); `swarm replay` can check a `swarm export` log of the backup first"
    )]
    Damaged {
        /// What SQLite or the store found.
        detail: String,
    },
    /// [`StoreError::Damaged`] met while the store opened: the files are named as they are
    /// called (`farm.db*` for a `db_path` of `farm.db`), and the way on without a backup is said
    /// (h41 F4, F7: `--accept-loss` cannot open a file SQLite cannot read).
    #[error(
        "the store database {path} is damaged ({detail}). Stop here and restore {path}* (the \
         database, its -wal file and its .acked marker) from a backup, then start (with \
         `swarm serve --accept-loss` if the backup is older than what was acknowledged: the start \
         says so); `swarm replay` can check a `swarm export` log of the backup first. Without a \
         backup: move {path} and its -wal and -shm files aside (keep them: sqlite3's .recover may \
         read part of them), then start once with `swarm serve --accept-loss`, which starts an \
         empty farm and records the loss"
    )]
    DamagedAtOpen {
        /// The database.
        path: PathBuf,
        /// What SQLite or the store found.
        detail: String,
    },
    /// The store's configuration (`meta.config`) does not parse: not damage SQLite found, and
    /// not worth moving the database aside for (h42 F8).
    #[error(
        "the store's configuration (meta config) does not parse ({detail}): a newer swarm wrote \
         this store (upgrade swarm to open it; never downgrade a store), or the file was edited \
         (restore it from a backup)"
    )]
    ConfigUnreadable {
        /// What the parser said.
        detail: String,
    },
    /// SQLite cannot keep the store in WAL mode: the file system's doing, not the file's.
    #[error(
        "SQLite cannot run the store in WAL mode ({detail}): the file system does not support it \
         (a network file system?) or the database is read-only; put the data dir on a local, \
         writable file system"
    )]
    NoWal {
        /// What was found.
        detail: String,
    },
    /// A SQLite database, but not one written by swarm.
    #[error(
        "{path} is a SQLite database but not a swarm store (application id {application_id:#x}); \
         point swarm at another file"
    )]
    NotAStore {
        /// The file.
        path: PathBuf,
        /// Its `PRAGMA application_id`.
        application_id: i64,
    },
    /// The file was written by a newer swarm with a newer schema.
    #[error(
        "the store has schema version {found} but this swarm understands at most {supported}; \
         upgrade swarm (never downgrade a store)"
    )]
    NewerSchema {
        /// The file's `PRAGMA user_version`.
        found: i64,
        /// The newest version this build knows.
        supported: i64,
    },
    /// The log holds an input whose kind this swarm does not know, and the
    /// store does not show that no newer swarm wrote it (then it is
    /// [`StoreError::BadLogRecord`]).
    #[error(
        "input log seq {seq} has input kind {kind:?}, which this swarm does not know: if a newer \
         swarm wrote this store, upgrade swarm to open it (never downgrade a store); if not, the \
         log was edited or damaged: restore the file from a backup"
    )]
    UnknownInputKind {
        /// Where.
        seq: u64,
        /// The `type` tag found.
        kind: String,
    },
    /// A log or outbox row that does not parse.
    #[error(
        "input log seq {seq} cannot be read ({detail}); the file was edited or damaged: restore \
         it from a backup"
    )]
    BadLogRecord {
        /// Where.
        seq: u64,
        /// The parse error.
        detail: String,
    },
    /// Replaying the log gave other outputs than the ones recorded when the input was accepted.
    #[error(
        "replaying input log seq {seq} gives different outputs than the outbox recorded \
         ({detail}); the log was written by another swarm version or edited. keep the file for \
         diagnosis and open it with the swarm version that wrote it"
    )]
    Diverged {
        /// The first diverging input.
        seq: u64,
        /// What differs.
        detail: String,
    },
    /// [`StoreError::Diverged`] or [`StoreError::NoUsableSnapshot`] on a store another swarm
    /// build wrote last: most likely that build's, not damage.
    #[error(
        "{cause}. The store was last written by swarm {written_by}, and this is swarm {this}: \
         most likely {written_by} decides its log otherwise, so open it with that build (nothing \
         here was changed). A clean stop (SIGTERM) of a build that writes a snapshot on close \
         leaves nothing to replay for the next one"
    )]
    OtherBuild {
        /// `meta.last_build`.
        written_by: String,
        /// This build.
        this: String,
        /// What the open found.
        cause: Box<StoreError>,
    },
    /// No snapshot verifies and the log no longer reaches back to the beginning.
    #[error(
        "no snapshot verifies ({detail}) and the log was compacted up to seq {compacted_through}, \
         so the state cannot be rebuilt; restore the file from a backup"
    )]
    NoUsableSnapshot {
        /// Why each snapshot was refused.
        detail: String,
        /// Log rows up to here are gone.
        compacted_through: u64,
    },
    /// SQLite ran out of space (disk full or `max_page_count` reached).
    #[error(
        "the disk or the database size limit is full ({detail}); the failed input was not \
         recorded. free space (or raise the limit) and retry"
    )]
    DiskFull {
        /// What SQLite said.
        detail: String,
    },
    /// The database holds less than the acknowledgement marker says was
    /// acknowledged: inputs were lost outside swarm's control.
    #[error(
        "{db} has lost acknowledged inputs: {detail}. The marker {marker} records seq {acked_seq} \
         as acknowledged. Stop here and restore {db} together with its -wal file from a backup; \
         or, to run on what is left and record the loss, start once with \
         `swarm serve --accept-loss`"
    )]
    LossDetected {
        /// The database.
        db: PathBuf,
        /// The acknowledgement marker.
        marker: PathBuf,
        /// The last acknowledged seq, per the marker.
        acked_seq: u64,
        /// The last seq the database holds (0: none).
        found_seq: u64,
        /// What is missing.
        detail: String,
    },
    /// The acknowledgement marker is missing beside a database with content, though the store-id
    /// file shows this data dir ran a store, which swarm writes only once the marker exists: a
    /// deleted marker and a deleted `-wal` file lost acknowledged inputs without a word (h41 F2).
    #[error(
        "the acknowledgement marker {marker} is missing, but {id_file} shows this data dir ran a \
         swarm store, and swarm writes that file only once the marker exists: something deleted \
         the marker, so swarm cannot tell whether {db} lost acknowledged inputs (a deleted marker \
         and a deleted -wal file lose them without a word). Restore {db}, its -wal file and the \
         marker from a backup; or, to run on what {db} holds and record the loss, start once \
         with `swarm serve --accept-loss`, which writes the marker anew"
    )]
    MarkerMissing {
        /// The database.
        db: PathBuf,
        /// Where the marker belongs.
        marker: PathBuf,
        /// The store-id file.
        id_file: PathBuf,
    },
    /// The database's log ends before a seq the store-id file says this store had reached: an
    /// older copy of the database files, which bring their own marker, was put back (h41 F1).
    #[error(
        "{db} ends at seq {found_seq}, but this data dir's store had reached seq {reached_seq} \
         ({id_file}, written at each start, at a clean stop and once a minute while the store \
         ran): an older copy of the database files \
         (a backup, which brings its own acknowledgement marker) was put back, and what was \
         acknowledged after it is not in it. Restore the newest copy instead; or, to run on this \
         one and record the loss, start once with `swarm serve --accept-loss`"
    )]
    OlderThanReached {
        /// The database.
        db: PathBuf,
        /// The store-id file.
        id_file: PathBuf,
        /// The seq the store had reached, per the store-id file.
        reached_seq: u64,
        /// The last seq the database holds.
        found_seq: u64,
    },
    /// The database is missing or empty and so is the acknowledgement
    /// marker, but the data dir shows the store had state (an `rm -f
    /// swarm.db*`, or a `swarm.db` linked into a volume that did not mount):
    /// starting would make a new, empty store in its place.
    #[error(
        "{db} is not there to open: {detail}, and there is no acknowledgement marker {marker}, \
         but the data dir shows this farm had state ({evidence}); swarm does not start a new, \
         empty store in its place. If the database lives on a volume that is not mounted (or a \
         link that points elsewhere), mount or mend it; otherwise restore {db}, its -wal file \
         and {marker} from a backup; or, to start anew and record the loss, start once with \
         `swarm serve --accept-loss`"
    )]
    StateWithoutDatabase {
        /// The database path.
        db: PathBuf,
        /// Where the marker belongs.
        marker: PathBuf,
        /// What is wrong with the database.
        detail: String,
        /// The files that show the farm had state.
        evidence: String,
    },
    /// The acknowledgement marker exists but neither of its slots reads.
    #[error(
        "the acknowledgement marker {marker} is damaged, so swarm cannot tell whether the database \
         lost acknowledged inputs; check the database (or restore it from a backup), then start \
         once with `swarm serve --accept-loss`, which rewrites the marker"
    )]
    MarkerUnreadable {
        /// The marker file.
        marker: PathBuf,
    },
    /// The acknowledgement marker is empty beside a database with content.
    /// swarm never leaves it so (it is written whole and renamed into
    /// place), so something else emptied it, and what it said is gone.
    #[error(
        "the acknowledgement marker {marker} is empty, though swarm writes it whole and never \
         empties it, so swarm cannot tell whether the database lost acknowledged inputs (an \
         emptied marker and a deleted -wal file would lose them without a word); check the \
         database and its -wal file (or restore them from a backup), then start once with \
         `swarm serve --accept-loss`, which rewrites the marker"
    )]
    MarkerEmpty {
        /// The marker file.
        marker: PathBuf,
    },
    /// Something other than a regular file is where the acknowledgement
    /// marker belongs (a FIFO, a directory, a device): never opened, as a
    /// FIFO would block the start for good.
    #[error(
        "the acknowledgement marker {marker} is a {kind}, not a regular file, so swarm cannot read \
         what was acknowledged and does not replace it; move it out of the way (`mv {marker} \
         {marker}.moved`), put back the marker file from a backup taken with the database if there \
         is one, and start again (without a marker swarm writes a new one and cannot tell whether \
         acknowledged inputs were lost before this start)"
    )]
    MarkerNotAFile {
        /// The marker path.
        marker: PathBuf,
        /// What is there: "FIFO (named pipe)", "directory", ...
        kind: &'static str,
    },
    /// Something other than a regular file is where the database belongs
    /// (a directory, a FIFO, a device such as a link to `/dev/null`):
    /// refused before anything is opened or created beside it.
    #[error(
        "{path} is a {kind}, not a regular file, so it cannot be the store's database; point \
         swarm at a database file (`db_path` in the config, or --data-dir), or move this out of \
         the way (`mv {path} {path}.moved`) and put the database back from a backup"
    )]
    DatabaseNotAFile {
        /// The database path.
        path: PathBuf,
        /// What is there: "directory", "FIFO (named pipe)", ..., with the
        /// link it was reached through.
        kind: String,
    },
    /// The database could not be opened or prepared at start. No input was
    /// involved: nothing was recorded or lost by this.
    #[error(
        "cannot open the store {path} ({detail}); check that it and the files beside it \
         (-wal, -shm) are regular files swarm may write, that the file system is not read-only, \
         file-size limits (ulimit -f) and free space"
    )]
    OpenFailed {
        /// The database path.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The copy an older store gets before its one-way schema upgrade could not be written.
    #[error(
        "the store is of schema {schema}, which this swarm upgrades (after which older swarm \
         builds refuse it), and the copy taken first could not be written to {backup} \
         ({detail}); nothing was changed. free space beside the database (the copy is about its \
         size) and start again, or start the swarm build that wrote it"
    )]
    UpgradeBackupFailed {
        /// Where the copy was to go.
        backup: PathBuf,
        /// The store's schema.
        schema: i64,
        /// What failed.
        detail: String,
    },
    /// The disk (or the database size limit) is full at start.
    #[error(
        "cannot open the store {path}: the disk or the database size limit is full ({detail}); \
         free space (or raise the limit) and start again"
    )]
    OpenDiskFull {
        /// The database path.
        path: PathBuf,
        /// What SQLite said.
        detail: String,
    },
    /// The file system refused a write (I/O error, read-only, size limit).
    #[error(
        "the database cannot be written ({detail}); the failed input was not recorded. check \
         free space, whether the file system went read-only, file-size limits (ulimit -f) and \
         permissions"
    )]
    WriteFailed {
        /// What SQLite said.
        detail: String,
    },
    /// The database file was deleted or replaced under the running store:
    /// writes would go to a file no restart finds.
    #[error(
        "{path} was deleted or replaced while swarm ran ({detail}); writes are refused, as \
         nothing written now would be found by a restart: put the file back from a backup, or \
         stop swarm serve and start it again to see what the data dir holds"
    )]
    DatabaseReplaced {
        /// The database path.
        path: PathBuf,
        /// What was found at it.
        detail: String,
    },
    /// The WAL was deleted or replaced under the running store: SQLite goes
    /// on writing into the file it has open, which no restart finds, so a
    /// crash would lose every commit since the last checkpoint.
    #[error(
        "{wal}, the write-ahead log of {db}, was deleted or replaced while swarm ran ({detail}); \
         writes are refused, as what SQLite writes into the log it has open would be lost at a \
         crash; {}. stop swarm serve with SIGTERM (a clean stop copies everything the open log \
         holds into {db}) and start it again",
        if *copied {
            "everything committed was copied from the file SQLite still has open into the \
             database when swarm noticed, so a crash now loses nothing acknowledged"
        } else {
            "copying what that file holds into the database failed (the log says why), so a \
             kill -9 or a crash before a clean stop loses every input since the last checkpoint"
        }
    )]
    WalReplaced {
        /// The WAL path.
        wal: PathBuf,
        /// The database path.
        db: PathBuf,
        /// What was found at the WAL path.
        detail: String,
        /// Whether what the open WAL held was copied into the database when this was noticed.
        copied: bool,
    },
    /// The acknowledgement marker was deleted or replaced under the running
    /// store: a restart could no longer tell whether acknowledged inputs
    /// were lost.
    #[error(
        "the acknowledgement marker {marker} was deleted or replaced while swarm ran ({detail}); \
         writes are refused, as a restart could no longer tell whether acknowledged inputs were \
         lost. stop swarm serve with SIGTERM and start it again: the start writes a new marker"
    )]
    MarkerReplaced {
        /// The marker path.
        marker: PathBuf,
        /// What was found at it.
        detail: String,
    },
    /// A previous write failed and the state could not be rebuilt from the file.
    #[error("the store could not rebuild its state after a failed write ({reason}); reopen it")]
    Poisoned {
        /// Why the rebuild failed.
        reason: String,
    },
    /// `export_since` asked for inputs compaction already removed.
    #[error(
        "inputs up to seq {oldest_available} were compacted into a snapshot; export can start \
         at --since {oldest_available} or later (asked for --since {requested})"
    )]
    ExportTooOld {
        /// What was asked.
        requested: u64,
        /// The earliest `since` that works.
        oldest_available: u64,
    },
    /// The config given for a new store does not validate.
    #[error("invalid config for a new store: {0}")]
    Config(#[from] ConfigError),
    /// The SQL explorer refused a statement before running it.
    #[error("query refused: {reason}")]
    QueryRefused {
        /// Why.
        reason: String,
    },
    /// The SQL explorer stopped a query at its time budget.
    #[error("query stopped after its time budget of {budget_ms} ms; add a LIMIT or a WHERE")]
    QueryTimeout {
        /// The budget.
        budget_ms: u64,
    },
    /// The SQL explorer's query failed in SQLite (syntax error, unknown column...).
    #[error("query failed: {detail}")]
    Query {
        /// SQLite's message.
        detail: String,
    },
    /// Any other SQLite failure.
    #[error("sqlite error: {0}")]
    Sqlite(rusqlite::Error),
    /// A value that would not serialise (a bug).
    #[error("cannot serialise a record: {0}")]
    Json(#[from] serde_json::Error),
}

impl StoreError {
    /// The error as `Store::open` reports it: a write that fails there is
    /// the open's own, with no input to speak of.
    pub(crate) fn at_open(self, path: &std::path::Path) -> StoreError {
        match self {
            StoreError::WriteFailed { detail } => StoreError::OpenFailed {
                path: path.to_owned(),
                detail,
            },
            StoreError::DiskFull { detail } => StoreError::OpenDiskFull {
                path: path.to_owned(),
                detail,
            },
            StoreError::Damaged { detail } => StoreError::DamagedAtOpen {
                path: path.to_owned(),
                detail,
            },
            e => e,
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        use rusqlite::ErrorCode as C;
        match e.sqlite_error_code() {
            Some(C::DatabaseCorrupt | C::NotADatabase) => StoreError::Damaged {
                detail: e.to_string(),
            },
            Some(C::DiskFull) => StoreError::DiskFull {
                detail: e.to_string(),
            },
            Some(C::SystemIoFailure | C::ReadOnly | C::CannotOpen) => StoreError::WriteFailed {
                detail: e.to_string(),
            },
            _ => StoreError::Sqlite(e),
        }
    }
}
