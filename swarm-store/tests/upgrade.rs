//! Opening a store of an older schema upgrades it in the same transaction as the replay that
//! proves its log: a log this build decides otherwise (inputs an older swarm logged after its
//! last snapshot) is refused with the file left at its old schema, for the swarm that wrote
//! it. Before, the schema was upgraded first and then the replay refused: no version opened the
//! store any more (h33 F1).

use rusqlite::Connection;
use std::path::Path;
use swarm_core::{Control, Input, Timestamp};
use swarm_store::{Store, StoreError, StoreOptions};

fn opts() -> StoreOptions {
    StoreOptions {
        open_at: Some(Timestamp(1)),
        ..StoreOptions::default()
    }
}

/// A new store whose log ends in a pause and a resume.
fn paused_and_resumed(db: &Path, opts: StoreOptions) -> Store {
    let mut store = Store::open(db, opts).expect("open");
    store
        .append(Timestamp(10), Input::Control(Control::Pause))
        .expect("pause");
    store
        .append(Timestamp(11), Input::Control(Control::Resume))
        .expect("resume");
    store
}

/// A store whose log ends in a pause and a resume, taken back to schema 5 (before the log's
/// checksums) as an older swarm left it.
fn version_5_store(db: &Path) {
    drop(paused_and_resumed(db, opts()));
    let conn = Connection::open(db).expect("sqlite");
    conn.execute_batch(
        "ALTER TABLE input_log DROP COLUMN crc; DELETE FROM meta WHERE key = 'crc_from'; \
         PRAGMA user_version = 5;",
    )
    .expect("back to schema 5");
}

fn schema_of(db: &Path) -> (i64, bool) {
    let conn = Connection::open(db).expect("sqlite");
    let version = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    let crc: i64 = conn
        .query_row(
            "SELECT count(*) FROM pragma_table_info('input_log') WHERE name = 'crc'",
            [],
            |r| r.get(0),
        )
        .expect("columns");
    (version, crc == 1)
}

/// The outbox rows of the last two inputs swapped: what another core would have answered.
fn swap_last_outputs(db: &Path) {
    let conn = Connection::open(db).expect("sqlite");
    conn.execute_batch(
        "CREATE TEMP TABLE last AS SELECT seq, output FROM outbox \
           WHERE seq >= (SELECT max(seq) - 1 FROM outbox) AND idx = 0; \
         UPDATE outbox SET output = (SELECT output FROM last WHERE last.seq != outbox.seq) \
           WHERE idx = 0 AND seq IN (SELECT seq FROM last);",
    )
    .expect("swap");
}

#[test]
fn an_older_store_whose_log_replays_otherwise_is_refused_and_left_at_its_schema() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("swarm.db");
    version_5_store(&db);
    assert_eq!(schema_of(&db), (5, false));
    swap_last_outputs(&db);
    match Store::open(&db, opts()) {
        Err(StoreError::Diverged { .. }) => {}
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a log that replays otherwise was opened"),
    }
    assert_eq!(
        schema_of(&db),
        (5, false),
        "the refused open left the store upgraded"
    );
    // Put right (as the swarm that wrote it would read it), it upgrades on the next open.
    swap_last_outputs(&db);
    let store = Store::open(&db, opts()).expect("opens");
    assert!(store.last_seq().0 >= 2, "{:?}", store.last_seq());
    drop(store);
    assert_eq!(schema_of(&db), (6, true));
}

/// A store closed with a snapshot opens from it, whatever the log's last outputs say: the swarm
/// that opens it next may decide them otherwise.
#[test]
fn a_store_closed_with_a_snapshot_opens_without_replaying_its_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("swarm.db");
    {
        let mut store = paused_and_resumed(&db, opts());
        let seq = store.snapshot_on_close().expect("snapshot");
        assert_eq!(seq, Some(store.last_seq()));
        assert_eq!(
            store.snapshot_on_close().expect("again"),
            None,
            "nothing new"
        );
    }
    swap_last_outputs(&db);
    let store = Store::open(&db, opts()).expect("opens from the snapshot");
    assert!(!store.swarm().expect("state").view().paused());
    let conn = Connection::open(&db).expect("sqlite");
    let logged: i64 = conn
        .query_row("SELECT count(*) FROM input_log", [], |r| r.get(0))
        .expect("count");
    assert!(logged >= 2, "the log is kept: {logged} rows");
}

/// Every build said `0.1.0`, so a log another build decides otherwise read as damage, and the
/// way out was named as "restore a backup" (h33 F2). The build that wrote the store last is
/// recorded and named.
#[test]
fn a_log_refused_as_another_builds_names_that_build() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("swarm.db");
    let built_by = |build: &str| StoreOptions {
        build: Some(build.into()),
        ..opts()
    };
    drop(paused_and_resumed(&db, built_by("0.1.0+aaaa")));
    swap_last_outputs(&db);
    let err = match Store::open(&db, built_by("0.1.0+bbbb")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a log that replays otherwise was opened"),
    };
    assert!(err.starts_with("replaying input log seq"), "{err}");
    assert!(
        err.contains("last written by swarm 0.1.0+aaaa, and this is swarm 0.1.0+bbbb"),
        "{err}"
    );
    // The same build finds the same damage, and says nothing of another build.
    let err = match Store::open(&db, built_by("0.1.0+aaaa")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("opened"),
    };
    assert!(!err.contains("last written by"), "{err}");
}

fn logged_rows(db: &Path) -> i64 {
    let conn = Connection::open(db).expect("sqlite");
    conn.query_row("SELECT count(*) FROM input_log", [], |r| r.get(0))
        .expect("count")
}

/// The upgrade is one way, so the store is copied aside first, for the swarm that wrote it
/// (h33 F4); an earlier copy of the same schema (older than the store) is replaced.
#[test]
fn an_older_store_is_copied_aside_before_its_upgrade() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("swarm.db");
    version_5_store(&db);
    let rows = logged_rows(&db);
    let backup = dir.path().join("swarm.db.schema5-backup");
    std::fs::write(&backup, b"an earlier copy").expect("stale copy");
    drop(Store::open(&db, opts()).expect("upgrades"));
    assert_eq!(schema_of(&db), (6, true));
    assert_eq!(
        schema_of(&backup),
        (5, false),
        "the copy is the store as it was"
    );
    assert_eq!(logged_rows(&backup), rows);
    assert!(!dir.path().join("swarm.db.schema5-backup.new").exists());
    // Opened again, a store of the latest schema takes no copy.
    std::fs::remove_file(&backup).expect("rm");
    drop(Store::open(&db, opts()).expect("reopens"));
    assert!(!backup.exists(), "a store of the latest schema was copied");
}

/// No copy, no upgrade: the store is left at its schema, and the error says where the copy
/// was to go.
#[test]
fn an_upgrade_whose_copy_cannot_be_written_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("swarm.db");
    version_5_store(&db);
    let backup = dir.path().join("swarm.db.schema5-backup");
    std::fs::create_dir(&backup).expect("a directory in the way");
    std::fs::write(backup.join("x"), b"x").expect("not empty");
    let err = match Store::open(&db, opts()) {
        Err(e @ StoreError::UpgradeBackupFailed { .. }) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("upgraded without a copy"),
    };
    assert!(err.contains("swarm.db.schema5-backup"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(schema_of(&db), (5, false));
    std::fs::remove_dir_all(&backup).expect("rm");
    drop(Store::open(&db, opts()).expect("upgrades once the copy can be written"));
    assert_eq!(schema_of(&backup), (5, false));
}
