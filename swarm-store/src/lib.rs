//! The durable, crash-only home of a [`swarm_core::Swarm`]: SQLite in WAL mode.
//!
//! # The contract
//! - [`Store::append`] writes the input, runs the core, writes its outputs and
//!   the read-table changes in one `BEGIN IMMEDIATE` transaction, and returns
//!   the outputs only after the commit. [`Store::append_batch`] is group commit:
//!   many inputs, one transaction, one fsync.
//! - Crash-only: if anything in a transaction fails, the transaction is rolled
//!   back and the in-memory core is dropped and rebuilt from the file, so it
//!   never holds an input the file does not. The failed input is not
//!   acknowledged; the next append works.
//! - [`Store::open`] restores the newest snapshot whose digest verifies,
//!   replays the log tail, compares every recomputed output with the outbox
//!   (a difference is [`StoreError::Diverged`] naming the seq, never fixed
//!   silently) and appends [`swarm_core::Input::Recovered`].
//! - Growth is bounded: a snapshot every `snapshot_every` inputs, the log and
//!   outbox compacted behind the oldest kept snapshot, retention for `builds`
//!   and `events`.
//! - One writer per file, enforced by a lock file (see `lock.rs`); any number
//!   of read-only [`Explorer`]s alongside.
//!
//! # Files
//! `acked.rs` the acknowledgement marker (loss detection) · `schema.rs` tables and migrations · `store.rs` open/append/snapshot ·
//! `recover.rs` rebuilding the core from the file · `read_tables.rs` current
//! state for humans · `export.rs` the log as JSON lines · `explorer.rs` the
//! read-only SQL explorer · `read_only.rs` its connections · `lock.rs` single writer · `error.rs` [`StoreError`].
//!
//! ```
//! use swarm_store::{Store, StoreOptions};
//! use swarm_core::{Input, Timestamp};
//!
//! let dir = tempfile::tempdir().expect("temp dir");
//! let path = dir.path().join("swarm.db");
//! let mut store = Store::open(&path, StoreOptions::default()).expect("open");
//! let (seq, _outputs) = store.append(Timestamp(1_000), Input::Tick).expect("durable");
//! let digest = store.swarm().expect("state").digest();
//! drop(store);
//! let store = Store::open(&path, StoreOptions::default()).expect("reopen");
//! assert!(store.last_seq() > seq);
//! # let _ = digest;
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod acked;
mod checkpointer;
mod db_path;
mod error;
mod explorer;
mod explorer_functions;
mod export;
mod history;
mod id_file;
pub mod listed_text;
mod lock;
mod lock_holders;
pub mod log_crc;
mod own_file;
mod read_only;
mod read_tables;
mod recover;
pub mod repeat_log;
mod schema;
mod shm_header;
mod snapshotter;
mod store;
mod upgrade_backup;
mod wal_sync;
mod whole_file;

pub use error::StoreError;
pub use explorer::{ColumnInfo, Explorer, ExplorerOptions, QueryResult, TableInfo};
pub use export::Export;
pub use history::{
    BuildRow, BuildTotals, DroneTotals, EventFilter, EventRow, History, PackageStats,
};
pub use lock::ExclusiveLock;

/// Every file a store keeps for the database at `db`: the database, its
/// WAL and shared memory (beside the file a symlinked path resolves to),
/// the acknowledgement marker, the lock and the store-id file. For callers
/// that set their modes, so they do not spell these names again.
pub fn store_files(db: &std::path::Path) -> Vec<std::path::PathBuf> {
    vec![
        db.to_path_buf(),
        db_path::beside_database(db, "-wal"),
        db_path::beside_database(db, "-shm"),
        acked::marker_path(db),
        lock::lock_path(db),
        id_file::path(db),
    ]
}
pub use recover::parse_input as parse_logged_input;
pub use store::{OpenReport, Store, StoreOptions, Synchronous};
pub use swarm_core::{Envelope, Output};
pub use wal_sync::{SyncFaults, WalSync};

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = schema::LATEST;
