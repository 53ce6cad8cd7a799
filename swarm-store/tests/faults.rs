//! Bad files and failing disks: each ends in a typed error that says what to
//! do, never a panic and never a silent reset.

mod common;

use common::{open, small_opts};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use swarm_core::{Input, Seq, Timestamp};
use swarm_store::{Store, StoreError, StoreOptions};

/// A closed store with some history (WAL checkpointed into the main file).
fn store_with_history(path: &Path, inputs: u64) -> u64 {
    let mut store = open(path, small_opts(100_000, 0));
    let ops: Vec<_> = (0..inputs).map(|i| common::op_from(i * 7919 + 3)).collect();
    let mut at = 0;
    for (op, dt) in &ops {
        at += dt;
        let input = common::to_input(op, store.swarm().expect("state").view());
        store.append(Timestamp(at), input).expect("append");
    }
    store.last_seq().0
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw open")
}

/// A closed store with 10 inputs of history, then `sql` run on its file; with the rows its
/// last statement changed.
fn history_changed_by(sql: &str) -> (tempfile::TempDir, u64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 10);
    let db = raw(&path);
    db.execute_batch(sql).expect(sql);
    let changed = db.changes();
    (dir, changed)
}

/// The open of a store whose log was changed: the seq its `BadLogRecord` names, and its text.
fn bad_record(path: &Path, case: &str) -> (u64, String) {
    match Store::open(path, StoreOptions::default()) {
        Err(e @ StoreError::BadLogRecord { seq, .. }) => (seq, e.to_string()),
        Err(other) => panic!("{case}: expected BadLogRecord, got {other:?}"),
        Ok(_) => panic!("{case}: the store opened"),
    }
}

#[test]
fn a_file_with_garbage_in_the_middle_is_reported_damaged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 300);
    let len = std::fs::metadata(&path).expect("meta").len();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    let page = 4096;
    let start = (len / 3) / page * page;
    f.seek(SeekFrom::Start(start)).expect("seek");
    let garbage: Vec<u8> = (0..(len / 3)).map(|i| (i * 31 % 251) as u8).collect();
    f.write_all(&garbage).expect("write garbage");
    drop(f);
    match Store::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::DamagedAtOpen { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("damaged") && msg.contains("backup"), "{msg}");
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
}

#[test]
fn a_file_overwritten_from_the_start_is_reported_damaged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 20);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    f.write_all(&[0xA5; 200]).expect("garbage header");
    drop(f);
    match Store::open(&path, StoreOptions::default()) {
        Err(StoreError::DamagedAtOpen { .. }) => {}
        other => panic!("expected Damaged, got {other:?}"),
    }
}

/// The message names the files as they are called (a `db_path` of `farm.db`), and says the way
/// on without a backup, which `--accept-loss` alone is not (h41 F4, F7).
#[test]
fn a_truncated_file_is_reported_damaged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("farm.db");
    store_with_history(&path, 300);
    let len = std::fs::metadata(&path).expect("meta").len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open file");
    f.set_len(len / 2).expect("truncate");
    drop(f);
    match Store::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::DamagedAtOpen { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&format!("{}*", path.display())), "{msg}");
            assert!(!msg.contains("swarm.db"), "{msg}");
            assert!(
                msg.contains("Without a backup") && msg.contains("--accept-loss"),
                "{msg}"
            );
        }
        other => panic!("expected Damaged, got {other:?}"),
    }
}

#[test]
fn a_file_from_a_newer_schema_asks_to_upgrade_swarm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 5);
    raw(&path)
        .pragma_update(None, "user_version", 99)
        .expect("bump version");
    match Store::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::NewerSchema { found: 99, .. }) => {
            assert!(e.to_string().contains("upgrade swarm"), "{e}");
        }
        other => panic!("expected NewerSchema, got {other:?}"),
    }
}

#[test]
fn a_sqlite_file_that_is_not_a_store_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("other.db");
    raw(&path)
        .execute_batch("CREATE TABLE mine (x INTEGER)")
        .expect("foreign table");
    match Store::open(&path, StoreOptions::default()) {
        Err(StoreError::NotAStore { .. }) => {}
        other => panic!("expected NotAStore, got {other:?}"),
    }
}

/// A kind this swarm does not know, in a store a newer swarm wrote: the
/// operator is told to upgrade.
#[test]
fn an_unknown_input_kind_from_a_newer_swarm_names_its_seq_and_says_upgrade() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    let last = store_with_history(&path, 10);
    let db = raw(&path);
    let teleport = r#"{"type":"teleport"}"#;
    let crc = swarm_store::log_crc::of(last + 1, 99_999_999, teleport);
    db.execute(
        "INSERT INTO input_log (seq, at_ms, input, crc) VALUES (?1, 99999999, ?2, ?3)",
        rusqlite::params![last as i64 + 1, teleport, i64::from(crc)],
    )
    .expect("insert");
    db.execute(
        "UPDATE meta SET value = '999.0.0' WHERE key = 'newest_writer'",
        [],
    )
    .expect("a newer swarm wrote it");
    drop(db);
    let e = match Store::open(&path, StoreOptions::default()) {
        Err(e) => e,
        Ok(_) => panic!("a store with an unknown input kind opened"),
    };
    match &e {
        StoreError::UnknownInputKind { seq, kind } => {
            assert_eq!(*seq, last + 1);
            assert_eq!(kind, "teleport");
        }
        other => panic!("expected UnknownInputKind, got {other:?}"),
    }
    assert!(e.to_string().contains("upgrade swarm"), "{e}");
}

/// The audit's `update input_log set input='{"type":"bogus"}'` in a store
/// only this swarm wrote: damage, not a newer swarm, so no "upgrade".
#[test]
fn a_corrupted_input_kind_in_a_store_no_newer_swarm_wrote_is_reported_damaged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 10);
    raw(&path)
        .execute(
            "UPDATE input_log SET input = '{\"type\":\"bogus\"}' WHERE seq = 5",
            [],
        )
        .expect("corrupt");
    match Store::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::BadLogRecord { seq: 5, .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("\"bogus\""), "{msg}");
            assert!(msg.contains("edited or damaged"), "{msg}");
            assert!(!msg.contains("upgrade"), "{msg}");
        }
        other => panic!("expected BadLogRecord at seq 5, got {other:?}"),
    }
}

/// One bit of a logged atom flipped (`a` 0x61 to `c` 0x63): the row still parses and
/// replays to the same outputs. On a copy whose log has no checksums, as swarm kept it before
/// schema 6, the store opens queuing the other package without a word (what a bit-flip audit
/// found); with the checksum the open is refused, naming the row.
#[test]
fn a_flipped_bit_in_a_logged_atom_is_refused_though_it_replays_to_the_same_outputs() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    let mut store = open(&path, small_opts(100_000, 0));
    let atom = swarm_core::Atom::parse("dev-libs/aaa-1").expect("atom");
    let enqueue = swarm_core::Enqueue {
        packages: vec![swarm_core::PackageSpec::new(atom)],
        ..swarm_core::Enqueue::default()
    };
    store
        .append(Timestamp(5), Input::Enqueue(enqueue))
        .expect("append");
    let seq = store.last_seq().0;
    drop(store);
    let flipped = raw(&path)
        .execute(
            "UPDATE input_log SET input = replace(input, 'dev-libs/aaa-1', 'dev-libs/caa-1')
             WHERE seq = ?1",
            [seq as i64],
        )
        .expect("flip");
    assert_eq!(flipped, 1);

    let copy = tempfile::tempdir().expect("temp dir");
    for entry in std::fs::read_dir(dir.path()).expect("list") {
        let from = entry.expect("entry").path();
        std::fs::copy(&from, copy.path().join(from.file_name().expect("name"))).expect("copy");
    }
    let unchecked = copy.path().join("swarm.db");
    raw(&unchecked)
        .execute_batch(&format!(
            "UPDATE input_log SET crc = NULL WHERE seq <= {seq};
             DELETE FROM meta WHERE key = 'crc_from';"
        ))
        .expect("an old row");
    drop(open(&unchecked, StoreOptions::default()));
    let queued: String = raw(&unchecked)
        .query_row("SELECT group_concat(atom) FROM packages", [], |r| r.get(0))
        .expect("packages");
    assert_eq!(
        queued, "=dev-libs/caa-1",
        "without a checksum the flip is silent"
    );

    let (at, msg) = bad_record(&path, "a row that no longer matches its checksum");
    assert_eq!(at, seq, "{msg}");
    assert!(
        msg.contains("dev-libs/caa-1") && msg.contains("checksum"),
        "{msg}"
    );
    assert!(msg.contains("restore it from a backup"), "{msg}");
}

/// What one flipped bit in a row's header does: a cell's type changes (the checksum becomes
/// NULL or a blob, the input a blob) or its text stops being UTF-8. Each is refused by seq with
/// what is wrong, at the open and by `Export`, not passed as a row without a checksum nor
/// reported as a bare SQLite conversion error (h28 F2, F3).
#[test]
fn a_row_whose_cells_changed_type_is_refused_naming_its_seq_and_what_changed() {
    for (change, says) in [
        (
            "crc = NULL",
            "its checksum is missing, though every row from seq 1 on",
        ),
        (
            "crc = X'00000005'",
            "its checksum is a blob, not an integer",
        ),
        ("crc = 5.5", "its checksum is a real number"),
        (
            "input = CAST(input AS BLOB)",
            "its input is a blob, not text",
        ),
        ("at_ms = CAST(at_ms AS TEXT) || 'x'", "its time is text"),
        (
            "input = CAST(X'7B22FF227D' AS TEXT)",
            "its input is not valid UTF-8 text",
        ),
    ] {
        let (dir, changed) =
            history_changed_by(&format!("UPDATE input_log SET {change} WHERE seq = 5"));
        assert_eq!(changed, 1, "{change}");
        let (seq, msg) = bad_record(&dir.path().join("swarm.db"), change);
        assert_eq!(seq, 5, "{change}: {msg}");
        assert!(msg.contains(says), "{change}: {msg}");
        assert!(msg.contains("restore it from a backup"), "{change}: {msg}");
    }
}

/// `meta.crc_from` gone or damaged (a store written before migration 6 set it, or a flipped
/// bit) does not turn the NULL check off: the log's first checksummed row says it too (h29 N2).
#[test]
fn a_lost_checksum_is_refused_without_meta_crc_from() {
    for meta in [
        "DELETE FROM meta WHERE key = 'crc_from'",
        "UPDATE meta SET value = 'q' WHERE key = 'crc_from'",
    ] {
        let (dir, _) = history_changed_by(&format!(
            "{meta}; UPDATE input_log SET crc = NULL WHERE seq = 5;"
        ));
        let (seq, msg) = bad_record(&dir.path().join("swarm.db"), meta);
        assert_eq!(seq, 5, "{meta}: {msg}");
        assert!(msg.contains("its checksum is missing"), "{meta}: {msg}");
    }
}

/// An outbox row that is no longer text, or no longer UTF-8, is refused by its seq, not as a
/// bare SQLite conversion error (h28 F3).
#[test]
fn an_outbox_row_that_is_not_text_is_refused_naming_its_seq() {
    for (output, says) in [
        ("CAST(X'7B22FF227D' AS TEXT)", "not valid UTF-8 text"),
        ("CAST(output AS BLOB)", "not text"),
    ] {
        let (dir, _) = history_changed_by(&format!(
            "UPDATE outbox SET output = {output}
             WHERE seq = (SELECT max(seq) FROM outbox) AND idx = 0"
        ));
        let path = dir.path().join("swarm.db");
        let last: i64 = raw(&path)
            .query_row("SELECT max(seq) FROM outbox", [], |r| r.get(0))
            .expect("an output");
        let (seq, msg) = bad_record(&path, output);
        assert_eq!(seq, last as u64, "{output}: {msg}");
        assert!(msg.contains(says), "{output}: {msg}");
    }
}

/// `Export` reads rows the open did not replay (those before the newest snapshot): a changed
/// one is refused there too, by its seq.
#[test]
fn export_refuses_a_row_changed_after_it_was_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 6);
    let store = open(&path, StoreOptions::default());
    raw(&path)
        .execute("UPDATE input_log SET at_ms = at_ms + 1 WHERE seq = 2", [])
        .expect("change a row under the running store");
    match store
        .export_since(Seq(0))
        .and_then(|e| e.write_jsonl(Vec::new()))
    {
        Err(StoreError::BadLogRecord { seq: 2, detail }) => {
            assert!(detail.contains("checksum"), "{detail}");
        }
        other => panic!("expected BadLogRecord at seq 2, got {other:?}"),
    }
}

/// Opens `db` on another thread; `None` if the open had not returned after 20 s.
fn open_within_20s(db: &Path) -> Option<Result<Store, StoreError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let db = db.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Store::open(&db, StoreOptions::default()));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
}

/// A directory, a FIFO or a device where the database belongs is refused at
/// once, saying what it is, and nothing is created beside it (a link to
/// /dev/null got /dev/null.lock).
#[test]
fn a_directory_a_fifo_or_a_device_in_place_of_the_database_is_refused_saying_what_it_is() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let null_lock_before = Path::new("/dev/null.lock").exists();
    for (kind, make) in [
        ("directory", "mkdir"),
        ("FIFO", "mkfifo"),
        ("character device", "link to /dev/null"),
    ] {
        if make == "link to /dev/null" {
            std::os::unix::fs::symlink("/dev/null", &db).expect("symlink");
        } else {
            let made = std::process::Command::new(make)
                .arg(&db)
                .status()
                .expect(make);
            assert!(made.success(), "{make}");
        }
        let msg = match open_within_20s(&db) {
            None => panic!("a {kind} database: the open hangs"),
            Some(Ok(_)) => panic!("a {kind} database: opened"),
            Some(Err(e)) => e.to_string(),
        };
        assert!(msg.contains(&db.display().to_string()), "{msg}");
        assert!(msg.contains(&format!("is a {kind}")), "{msg}");
        assert!(msg.contains("not a regular file"), "{msg}");
        assert!(!msg.contains("the failed input"), "{msg}");
        if kind == "directory" {
            std::fs::remove_dir(&db).expect("rmdir");
        } else {
            std::fs::remove_file(&db).expect("rm");
        }
    }
    if !null_lock_before {
        assert!(
            !Path::new("/dev/null.lock").exists(),
            "a lock file was made beside /dev/null"
        );
    }
    let left: Vec<_> = std::fs::read_dir(dir.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "nothing is created beside it: {left:?}");
}

/// A failure at open is the open's own: no "failed input was not recorded".
#[test]
fn an_open_that_cannot_write_says_so_without_speaking_of_a_failed_input() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    store_with_history(&db, 5);
    // SQLite cannot open the WAL where it belongs.
    std::fs::create_dir(dir.path().join("swarm.db-wal")).expect("mkdir -wal");
    match Store::open(&db, StoreOptions::default()) {
        Err(e @ StoreError::OpenFailed { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains(&db.display().to_string()), "{msg}");
            assert!(!msg.contains("failed input"), "{msg}");
        }
        other => panic!("expected OpenFailed, got {other:?}"),
    }
}

#[test]
fn an_edited_outbox_is_a_divergence_naming_the_seq() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 60);
    let conn = raw(&path);
    let seq: i64 = conn
        .query_row("SELECT min(seq) FROM outbox WHERE seq > 5", [], |r| {
            r.get(0)
        })
        .expect("an output");
    conn.execute("DELETE FROM outbox WHERE seq = ?1", [seq])
        .expect("delete");
    drop(conn);
    match Store::open(&path, StoreOptions::default()) {
        Err(StoreError::Diverged { seq: s, .. }) => assert_eq!(s as i64, seq),
        other => panic!("expected Diverged, got {other:?}"),
    }
}

#[test]
fn a_snapshot_that_does_not_verify_is_skipped_for_an_older_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    let opts = StoreOptions {
        keep_snapshots: 2,
        ..small_opts(10, 0)
    };
    let mut store = open(&path, opts.clone());
    for i in 0..35 {
        store
            .append(Timestamp(i * 1000), Input::Tick)
            .expect("append");
    }
    drop(store);
    raw(&path)
        .execute(
            "UPDATE snapshots SET digest = '0000000000000bad' WHERE seq = (SELECT max(seq) FROM snapshots)",
            [],
        )
        .expect("break the newest snapshot");
    let store = open(&path, opts);
    let report = store.open_report();
    assert_eq!(report.skipped_snapshots.len(), 1, "{report:?}");
    assert_eq!(report.snapshot_seq, 20);
}

#[test]
fn a_full_disk_fails_the_append_and_the_store_recovers_when_space_returns() {
    full_disk(false);
}

#[test]
fn a_full_disk_with_background_snapshots_recovers_too() {
    full_disk(true);
}

fn full_disk(background_snapshots: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    let mut store = open(
        &path,
        StoreOptions {
            background_snapshots,
            // Snapshots now and then, so one may be in flight at the rollback.
            ..small_opts(if background_snapshots { 7 } else { 100_000 }, 0)
        },
    );
    let pages = store.page_count().expect("pages");
    store.set_max_page_count(pages + 2).expect("cap");
    let mut acked = Vec::new();
    let mut failure = None;
    for i in 0..5_000u64 {
        // Big inputs fill pages quickly.
        let input = Input::Enqueue(swarm_core::Enqueue {
            packages: (0..20)
                .map(|p| swarm_core::PackageSpec::new(common::atom(((i * 20 + p) % 250) as u8)))
                .collect(),
            portage_snapshot: Some("x".repeat(2000)),
            ..Default::default()
        });
        match store.append(Timestamp(i * 10), input) {
            Ok((seq, _)) => acked.push(seq),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    match failure {
        Some(e @ StoreError::DiskFull { .. }) => {
            assert!(e.to_string().contains("free space"), "{e}");
        }
        other => panic!("expected DiskFull, got {other:?}"),
    }
    let last = *acked.last().expect("some appends fit");
    assert_eq!(
        store.last_seq(),
        last,
        "the failed input is not acknowledged"
    );
    store
        .check_read_tables()
        .expect("tables consistent after the rollback");
    // Still full: a second failure, same error, no panic.
    assert!(matches!(
        store.append(Timestamp(1 << 40), Input::Tick),
        Err(StoreError::DiskFull { .. }) | Ok(_)
    ));
    store.set_max_page_count(1 << 30).expect("space returns");
    let (seq, _) = store
        .append(Timestamp(1 << 41), Input::Tick)
        .expect("append works again");
    assert!(seq > last);
    let digest = store.swarm().expect("state").digest();
    drop(store);
    let store = open(
        &path,
        StoreOptions {
            open_at: Some(Timestamp(1 << 41)),
            ..small_opts(100_000, 0)
        },
    );
    let logged = common::raw_log(&path);
    for seq in &acked {
        assert!(
            logged.iter().any(|(s, _, _)| *s == seq.0),
            "acked {seq:?} lost"
        );
    }
    let replayed = common::replay(
        store.config(),
        store
            .export_since(Seq(0))
            .expect("export")
            .map(|e| e.expect("env")),
    );
    assert_eq!(replayed.digest(), store.swarm().expect("state").digest());
    assert_ne!(digest, 0);
}

#[test]
fn a_second_open_of_the_same_file_is_refused_while_the_first_is_open() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    let store = open(&path, StoreOptions::default());
    match Store::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::Locked { .. }) => {
            assert!(e.to_string().contains("already open"), "{e}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
    // Readers are welcome alongside the writer.
    let explorer = store.explorer().expect("explorer");
    let rows = explorer
        .query("SELECT count(*) FROM input_log")
        .expect("query");
    assert_eq!(rows.rows[0][0], serde_json::json!(1));
    drop(store);
    let _again = open(&path, StoreOptions::default());
}

/// An operator clearing "stale" lock files under a running server: a second
/// open used to take a new lock file and the same database (h23), and the
/// first refused writes until restarted. The WAL it holds refuses the second.
#[test]
fn a_second_open_is_refused_even_with_the_lock_file_deleted() {
    let dir = tempfile::tempdir().expect("temp dir");
    // A store with history (its WAL exists before the migration), and a new one
    // (its WAL appears with its first write).
    let old = dir.path().join("old.db");
    drop(open(&old, StoreOptions::default()));
    for path in [old, dir.path().join("new.db")] {
        let lock = dir.path().join(format!("{}.lock", path.display()));
        let mut store = open(&path, StoreOptions::default());
        store
            .append(Timestamp(1), Input::Tick)
            .expect("a write before");
        std::fs::remove_file(&lock).expect("delete the lock file");
        match Store::open(&path, StoreOptions::default()) {
            Err(e @ StoreError::WalHeld { .. }) => {
                let text = e.to_string();
                assert!(
                    text.contains("already open") && text.contains("-wal"),
                    "{text}"
                );
            }
            other => panic!("{}: expected WalHeld, got {other:?}", path.display()),
        }
        // The first writes on, untouched by the refused one.
        store
            .append(Timestamp(2), Input::Tick)
            .expect("a write after the refused open");
        drop(store);
        drop(open(&path, StoreOptions::default()));
        assert!(lock.exists(), "the lock file is made again");
    }
}

#[test]
fn a_write_error_is_reported_until_a_probe_write_works_again() {
    use std::sync::atomic::{AtomicU64, Ordering};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    let limit = std::sync::Arc::new(AtomicU64::new(0));
    let mut store = open(
        &path,
        StoreOptions {
            fault_page_limit: Some(limit.clone()),
            ..small_opts(100_000, 0)
        },
    );
    assert_eq!(store.write_error(), None);
    limit.store(store.page_count().expect("pages"), Ordering::SeqCst);
    let mut failed = false;
    for i in 0..2_000u64 {
        let input = Input::Enqueue(swarm_core::Enqueue {
            packages: (0..20)
                .map(|p| swarm_core::PackageSpec::new(common::atom(((i * 20 + p) % 250) as u8)))
                .collect(),
            portage_snapshot: Some("x".repeat(2000)),
            ..Default::default()
        });
        if store.append(Timestamp(i), input).is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the page limit stops writes");
    assert!(
        store.write_error().is_some_and(|e| e.contains("full")),
        "{:?}",
        store.write_error()
    );
    limit.store(0, Ordering::SeqCst);
    store.probe_write(Timestamp(1 << 31)).expect("writes again");
    assert_eq!(store.write_error(), None);
    store
        .append(Timestamp(1 << 32), Input::Tick)
        .expect("append works");
}

/// A configuration with a field this build does not know (a newer swarm's) is named as such,
/// not as damage whose way on is to move the database aside (h42 F8).
#[test]
fn a_configuration_a_newer_swarm_wrote_is_not_called_damage() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("swarm.db");
    store_with_history(&path, 5);
    let conn = rusqlite::Connection::open(&path).expect("open");
    let changed = conn
        .execute(
            "UPDATE meta SET value = json_set(value, '$.from_a_newer_swarm', 1) \
             WHERE key = 'config'",
            [],
        )
        .expect("update");
    assert_eq!(changed, 1);
    drop(conn);
    match Store::open(&path, StoreOptions::default()) {
        Err(e @ StoreError::ConfigUnreadable { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("newer swarm"), "{msg}");
            assert!(!msg.contains("Without a backup"), "{msg}");
        }
        other => panic!("expected ConfigUnreadable, got {other:?}"),
    }
}

/// An open fsyncs the WAL it found before it records its end as acknowledged (the marker, the
/// store-id file): after a `kill -9` what the dead process wrote may be only in the page cache.
/// A failing fsync there refuses the start, naming the WAL.
#[test]
fn an_open_whose_fsync_of_the_wal_fails_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let faults = std::sync::Arc::new(swarm_store::SyncFaults::default());
    faults.fail.store(true, std::sync::atomic::Ordering::SeqCst);
    let opts = StoreOptions {
        fault_sync: Some(faults.clone()),
        ..small_opts(100_000, 0)
    };
    match Store::open(&db, opts.clone()) {
        Err(e @ StoreError::Io { .. }) => {
            let msg = e.to_string();
            assert!(
                msg.contains("swarm.db-wal") && msg.contains("injected"),
                "{msg}"
            );
        }
        other => panic!("expected the fsync's error, got {other:?}"),
    }
    faults
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    Store::open(&db, opts).expect("opens once the fsync works");
}
