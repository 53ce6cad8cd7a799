//! Loss of acknowledged inputs outside swarm's control: a deleted `-wal`,
//! flipped WAL bytes, a 0-byte or missing `swarm.db`, another store put in
//! its place. Each one is refused at open with `LossDetected` naming the
//! file and the way out; `accept_loss` opens anyway and records the loss.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use swarm_core::{Input, Timestamp};
use swarm_store::{Store, StoreError, StoreOptions};

const CHILD_ENV: &str = "SWARM_STORE_LOSS_CHILD_DB";
/// Inputs the child acknowledges after the checkpointed history.
const CHILD_INPUTS: u64 = 40;

fn opts(at: u64) -> StoreOptions {
    StoreOptions {
        open_at: Some(Timestamp(at)),
        ..StoreOptions::default()
    }
}

/// The child: appends `CHILD_INPUTS` inputs, one commit each, prints the last
/// acknowledged seq and exits without closing the store (as `kill -9` would
/// leave it: the newest commits only in the `-wal` file).
#[test]
fn loss_child_writer() {
    let Ok(db) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut store = Store::open(&db, opts(10_000)).expect("child open");
    for i in 0..CHILD_INPUTS {
        let (op, _) = common::op_from(i * 104_729 + 11);
        let input = common::to_input(&op, store.swarm().expect("state").view());
        store
            .append(Timestamp(10_000 + i), input)
            .expect("child append");
    }
    println!("\nacked {}", store.last_seq().0);
    std::process::exit(0);
}

/// A store with checkpointed history, then `CHILD_INPUTS` acknowledged inputs
/// that live only in the WAL. Returns the last acknowledged seq.
fn crashed_store(db: &Path) -> u64 {
    {
        let mut store = Store::open(db, opts(1)).expect("open");
        for i in 0..30u64 {
            let (op, _) = common::op_from(i * 7919 + 3);
            let input = common::to_input(&op, store.swarm().expect("state").view());
            store.append(Timestamp(100 + i), input).expect("append");
        }
    }
    let text = run_child("loss_child_writer", &[(CHILD_ENV, db.as_os_str())]);
    let acked = printed(&text, "acked ");
    assert!(
        wal(db).metadata().map(|m| m.len()).unwrap_or(0) > 0,
        "the child's commits are in the WAL"
    );
    acked
}

/// Runs the test `name` of this binary as a child with `env`; its output.
fn run_child(name: &str, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .envs(env.iter().copied())
        .output()
        .expect("run child");
    assert!(out.status.success(), "child failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The seq a child printed after `what`.
fn printed(text: &str, what: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(what))
        .expect("child printed its seq")
        .trim()
        .parse()
        .expect("seq")
}

fn wal(db: &Path) -> PathBuf {
    PathBuf::from(format!("{}-wal", db.display()))
}

/// Opens and expects `LossDetected`; returns its message.
fn refused(db: &Path, acked: u64) -> String {
    match Store::open(db, opts(20_000)) {
        Err(e @ StoreError::LossDetected { acked_seq, .. }) => {
            assert_eq!(acked_seq, acked, "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&db.display().to_string()),
                "names the file: {msg}"
            );
            assert!(msg.contains("--accept-loss"), "says what to do: {msg}");
            assert!(msg.contains(".acked"), "names the marker: {msg}");
            msg
        }
        other => panic!("expected LossDetected, got {other:?}"),
    }
}

fn open_accepting_loss(db: &Path) -> Store {
    Store::open(
        db,
        StoreOptions {
            accept_loss: true,
            ..opts(30_000)
        },
    )
    .expect("accept_loss opens")
}

/// `accept_loss` opens, says what was lost, and leaves a `loss_accepted` event;
/// the next plain open works (the marker was rewritten).
fn accepted(db: &Path) {
    let store = open_accepting_loss(db);
    let loss = store.open_report().loss.clone().expect("loss reported");
    assert!(loss.contains("acknowledged"), "{loss}");
    let explorer = store.explorer().expect("explorer");
    let rows = explorer
        .query("SELECT body FROM events WHERE kind = 'loss_accepted'")
        .expect("query");
    assert_eq!(rows.rows.len(), 1, "one loss event");
    drop(explorer);
    drop(store);
    Store::open(db, opts(40_000)).expect("a plain open works after the loss was accepted");
}

#[test]
fn a_clean_crash_loses_nothing_and_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = crashed_store(&db);
    let store = Store::open(&db, opts(20_000)).expect("opens");
    assert!(store.last_seq().0 > acked);
    assert_eq!(store.open_report().loss, None);
}

#[test]
fn a_deleted_wal_after_a_crash_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = crashed_store(&db);
    std::fs::remove_file(wal(&db)).expect("delete -wal");
    let msg = refused(&db, acked);
    assert!(msg.contains("-wal"), "{msg}");
    accepted(&db);
}

#[test]
fn flipped_wal_bytes_after_a_crash_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = crashed_store(&db);
    let mut bytes = std::fs::read(wal(&db)).expect("read -wal");
    // Ten bytes in the middle of the WAL: SQLite's frame checksum fails there
    // and it silently ignores that frame and every later one.
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 10] {
        *b ^= 0x5a;
    }
    std::fs::write(wal(&db), &bytes).expect("write -wal");
    refused(&db, acked);
    accepted(&db);
}

/// The refusal keeps the WAL it tells the operator to restore from: closing
/// the refused connection neither checkpoints its valid prefix into the
/// database nor deletes the `-wal` file. Restoring the damaged byte then
/// opens with every acknowledged input.
#[test]
fn a_refused_open_leaves_the_damaged_wal_byte_for_byte_and_a_repaired_one_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = crashed_store(&db);
    let mut bytes = std::fs::read(wal(&db)).expect("read -wal");
    let mid = bytes.len() / 2;
    let good = bytes[mid];
    bytes[mid] ^= 0x5a;
    std::fs::write(wal(&db), &bytes).expect("write -wal");
    let db_before = std::fs::read(&db).expect("read swarm.db");
    refused(&db, acked);
    let after = std::fs::read(wal(&db)).expect("the -wal file survives a refused open");
    assert!(after == bytes, "the refused open changed the -wal file");
    assert!(
        std::fs::read(&db).expect("read swarm.db") == db_before,
        "the refused open checkpointed into swarm.db"
    );
    bytes[mid] = good;
    std::fs::write(wal(&db), &bytes).expect("restore the byte");
    let store = Store::open(&db, opts(20_000)).expect("the repaired store opens");
    assert!(
        store.last_seq().0 > acked,
        "every acknowledged input is back"
    );
    assert_eq!(store.open_report().loss, None);
}

/// After an accepted loss, seqs go on from where the surviving log ends,
/// reusing numbers the lost inputs had. The original files put back later
/// (the operator found the lost WAL) end past every seq acknowledged since:
/// without a new store id they opened silently, and what was acknowledged
/// after the loss was gone.
#[test]
fn the_files_from_before_an_accepted_loss_put_back_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = crashed_store(&db);
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).expect("mkdir");
    for f in [db.clone(), wal(&db)] {
        std::fs::copy(&f, saved.join(f.file_name().expect("name"))).expect("save");
    }
    std::fs::remove_file(wal(&db)).expect("delete -wal");
    let after_loss = {
        let mut store = open_accepting_loss(&db);
        let loss = store.open_report().loss.clone().expect("loss reported");
        assert!(
            loss.contains(&format!("store id is now {} (was ", store.store_id())),
            "the id drones are told is the new one: {loss}"
        );
        for i in 0..3 {
            store
                .append(Timestamp(31_000 + i), Input::Tick)
                .expect("append");
        }
        store.last_seq().0
    };
    assert!(
        after_loss < acked,
        "seqs are reused: {after_loss} < {acked}"
    );
    let _ = std::fs::remove_file(PathBuf::from(format!("{}-shm", db.display())));
    for f in [db.clone(), wal(&db)] {
        std::fs::copy(saved.join(f.file_name().expect("name")), &f).expect("put back");
    }
    let msg = refused(&db, after_loss);
    assert!(msg.contains("another store"), "{msg}");
}

/// The same, with the marker put back too (h23's F1): a `cp backup/swarm.db* .` brings the
/// old `swarm.db.acked`, which agrees with the old database; only the store-id file beside
/// them says this data dir ran another store since. An older copy of the same store put back
/// whole (database, WAL and marker) is refused the same way once a loss gave a new id, and
/// another farm's whole set always is.
#[test]
fn the_files_from_before_an_accepted_loss_put_back_with_their_marker_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = crashed_store(&db);
    let saved = dir.path().join("saved");
    std::fs::create_dir(&saved).expect("mkdir");
    let files = [
        db.clone(),
        wal(&db),
        PathBuf::from(format!("{}.acked", db.display())),
    ];
    for f in &files {
        std::fs::copy(f, saved.join(f.file_name().expect("name"))).expect("save");
    }
    std::fs::remove_file(wal(&db)).expect("delete -wal");
    let after_loss = {
        let mut store = open_accepting_loss(&db);
        store
            .append(Timestamp(31_000), Input::Tick)
            .expect("append");
        store.last_seq().0
    };
    assert!(after_loss < acked);
    let _ = std::fs::remove_file(PathBuf::from(format!("{}-shm", db.display())));
    for f in &files {
        std::fs::copy(saved.join(f.file_name().expect("name")), f).expect("put back");
    }
    let err = Store::open(&db, opts(1)).expect_err("refused");
    let msg = format!("{err:#}");
    assert!(
        msg.contains("another store") && msg.contains("swarm.store-id"),
        "{msg}"
    );
    // Taken on purpose, it opens, and says so.
    let store = open_accepting_loss(&db);
    assert!(store.open_report().loss.is_some());
}

/// Two stores, `ours` and `theirs`, each opened and closed once in a directory of its own.
fn two_stores(dir: &Path) -> (PathBuf, PathBuf) {
    let [ours, theirs] = ["ours", "theirs"].map(|name| {
        let d = dir.join(name);
        std::fs::create_dir_all(&d).expect("mkdir");
        drop(Store::open(d.join("swarm.db"), opts(1)).expect("open"));
        d
    });
    (ours, theirs)
}

/// Another farm's whole set of files (database, WAL, marker) in this data dir's place.
#[test]
fn another_farms_files_with_their_marker_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours, theirs) = two_stores(dir.path());
    let db = ours.join("swarm.db");
    for name in ["swarm.db", "swarm.db.acked"] {
        std::fs::copy(theirs.join(name), ours.join(name)).expect("replace");
    }
    let err = Store::open(&db, opts(1)).expect_err("refused");
    assert!(format!("{err:#}").contains("another store"), "{err:#}");
}

/// The id drones are told (`farm_id`) outlives a restart.
#[test]
fn the_store_id_is_kept_across_a_reopen() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let id = Store::open(&db, opts(1))
        .expect("open")
        .store_id()
        .to_owned();
    assert!(!id.is_empty());
    assert_eq!(Store::open(&db, opts(1)).expect("reopen").store_id(), id);
}

#[test]
fn a_zero_byte_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = Store::open(&db, opts(1)).expect("open").last_seq().0;
    std::fs::write(&db, b"").expect("truncate to 0 bytes");
    let msg = refused(&db, acked);
    assert!(msg.contains("empty"), "{msg}");
    assert_eq!(
        std::fs::metadata(&db).expect("db").len(),
        0,
        "a refused open writes nothing"
    );
    accepted(&db);
}

#[test]
fn a_missing_database_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let acked = Store::open(&db, opts(1)).expect("open").last_seq().0;
    std::fs::remove_file(&db).expect("delete db");
    let msg = refused(&db, acked);
    assert!(msg.contains("missing"), "{msg}");
    assert!(!db.exists(), "a refused open creates nothing");
    accepted(&db);
}

#[test]
fn another_store_in_its_place_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let other = dir.path().join("other.db");
    let acked = {
        let mut s = Store::open(&db, opts(1)).expect("open");
        for i in 0..5 {
            s.append(Timestamp(10 + i), Input::Tick).expect("append");
        }
        s.last_seq().0
    };
    drop(Store::open(&other, opts(1)).expect("open other"));
    std::fs::rename(&other, &db).expect("replace");
    let msg = refused(&db, acked);
    assert!(msg.contains("another store"), "{msg}");
}

/// A store written before markers and store-id files has neither: it opens and gets both.
#[test]
fn a_store_without_a_marker_opens_and_gets_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    drop(Store::open(&db, opts(1)).expect("open"));
    let marker = PathBuf::from(format!("{}.acked", db.display()));
    let id_file = dir.path().join("swarm.store-id");
    std::fs::remove_file(&marker).expect("remove marker");
    std::fs::remove_file(&id_file).expect("remove the store-id file");
    let store = Store::open(&db, opts(2)).expect("opens: nothing was acknowledged to lose");
    assert_eq!(store.open_report().loss, None);
    assert!(marker.exists());
    assert!(id_file.exists());
}

/// After a crash, the marker and the `-wal` deleted together lose the newest acknowledged
/// inputs, and nothing is left that says so but the store-id file, which swarm writes only once
/// the marker exists: refused, naming both files and the way out (h41 F2: it opened without a
/// word, 40 inputs short).
#[test]
fn a_deleted_marker_and_wal_after_a_crash_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    crashed_store(&db);
    std::fs::remove_file(dir.path().join("swarm.db.acked")).expect("delete the marker");
    std::fs::remove_file(wal(&db)).expect("delete -wal");
    let msg = match Store::open(&db, opts(20_000)) {
        Err(e @ StoreError::MarkerMissing { .. }) => e.to_string(),
        other => panic!("expected MarkerMissing, got {other:?}"),
    };
    for names in [
        db.display().to_string(),
        "swarm.db.acked".into(),
        "swarm.store-id".into(),
        "--accept-loss".into(),
    ] {
        assert!(msg.contains(&names), "{names}: {msg}");
    }
    accepted(&db);
}

/// Builds before the `reached seq` line wrote the store-id file before the marker, so one of
/// their starts killed between the two left the file without a marker: that opens (h42 F4).
#[test]
fn a_missing_marker_beside_an_id_file_of_earlier_builds_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    drop(Store::open(&db, opts(1)).expect("open"));
    let id_file = dir.path().join("swarm.store-id");
    let text = std::fs::read_to_string(&id_file).expect("id file");
    let first = text.lines().next().expect("the id line");
    std::fs::write(
        &id_file,
        format!("{first}\n# written by an earlier build\n"),
    )
    .expect("old");
    std::fs::remove_file(dir.path().join("swarm.db.acked")).expect("remove marker");
    let store = Store::open(&db, opts(2)).expect("opens");
    assert_eq!(store.open_report().loss, None);
}

/// An older copy of the database files put back (a backup, with its own marker, which agrees
/// with it) is refused: the store-id file, which stays behind, says how far the store had come
/// at its last clean stop (h41 F1: the copy opened, four acknowledged packages short).
#[test]
fn an_older_copy_of_the_database_put_back_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let backup = dir.path().join("backup");
    std::fs::create_dir(&backup).expect("backup dir");
    let files = ["swarm.db", "swarm.db-wal", "swarm.db.acked"];
    let run = |at: u64, inputs: u64| {
        let mut store = Store::open(&db, opts(at)).expect("open");
        for i in 0..inputs {
            store
                .append(Timestamp(at + i), Input::Tick)
                .expect("append");
        }
        store.snapshot_on_close().expect("a clean stop");
        store.last_seq().0
    };
    let copied = run(1, 5);
    for f in files {
        if dir.path().join(f).exists() {
            std::fs::copy(dir.path().join(f), backup.join(f)).expect("back up");
        }
    }
    let reached = run(1_000, 4);
    assert!(reached > copied);
    for f in ["swarm.db-wal", "swarm.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    for f in files {
        if backup.join(f).exists() {
            std::fs::copy(backup.join(f), dir.path().join(f)).expect("put back");
        }
    }
    let msg = match Store::open(&db, opts(20_000)) {
        Err(
            e @ StoreError::OlderThanReached {
                reached_seq,
                found_seq,
                ..
            },
        ) => {
            assert_eq!((reached_seq, found_seq), (reached, copied), "{e}");
            e.to_string()
        }
        other => panic!("expected OlderThanReached, got {other:?}"),
    };
    for names in [
        db.display().to_string(),
        "swarm.store-id".into(),
        "--accept-loss".into(),
    ] {
        assert!(msg.contains(&names), "{names}: {msg}");
    }
    accepted(&db);
}

const BACKUP_CHILD_ENV: &str = "SWARM_STORE_BACKUP_CHILD_DB";
/// Set: the child commits as the server does, fsyncing after each commit from a `WalSync`
/// and acknowledging then (`defer_sync`).
const BACKUP_CHILD_DEFERS: &str = "SWARM_STORE_BACKUP_CHILD_DEFERS";
const BACKED_UP_FILES: [&str; 3] = ["swarm.db", "swarm.db-wal", "swarm.db.acked"];

/// The child: a store that records how far it came after every commit, copied aside after 5
/// inputs (`<dir>/backup`), 4 more inputs, and an exit without closing (a crash). With
/// `BACKUP_CHILD_DEFERS`, each commit is made durable and acknowledged as the server's writer
/// does it.
#[test]
fn backup_child_writer() {
    let Ok(db) = std::env::var(BACKUP_CHILD_ENV) else {
        return;
    };
    let db = PathBuf::from(db);
    let dir = db.parent().expect("data dir");
    let defers = std::env::var_os(BACKUP_CHILD_DEFERS).is_some();
    let opts = StoreOptions {
        reached_every: std::time::Duration::ZERO,
        defer_sync: defers,
        ..opts(1)
    };
    let mut store = Store::open(&db, opts).expect("child open");
    let sync = store.wal_sync();
    assert_eq!(sync.is_some(), defers);
    for i in 0..9u64 {
        if i == 5 {
            println!("\ncopied {}", store.last_seq().0);
            for f in BACKED_UP_FILES {
                std::fs::copy(dir.join(f), dir.join("backup").join(f)).expect("back up");
            }
        }
        store
            .append(Timestamp(10 + i), Input::Tick)
            .expect("append");
        if let Some(sync) = &sync {
            let seq = store.last_seq();
            sync.sync_acknowledging(seq).expect("fsync");
            store.acknowledge(seq).expect("acknowledge");
        }
    }
    println!("\nacked {}", store.last_seq().0);
    std::process::exit(0);
}

/// A copy of the database put back after a crash, older than what the store acknowledged
/// since its last start, is refused too: the store-id file was told how far the store came
/// while it ran, not only at its start and clean stop. Whether the store fsyncs each commit
/// or the server's writer does (`defer_sync`).
#[test]
fn an_older_copy_put_back_after_a_crash_is_refused() {
    older_copy_after_a_crash(false);
    older_copy_after_a_crash(true);
}

fn older_copy_after_a_crash(defers: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    std::fs::create_dir(dir.path().join("backup")).expect("backup dir");
    let mut env = vec![(BACKUP_CHILD_ENV, db.as_os_str())];
    if defers {
        env.push((BACKUP_CHILD_DEFERS, std::ffi::OsStr::new("1")));
    }
    let text = run_child("backup_child_writer", &env);
    let (copied, acked) = (printed(&text, "copied "), printed(&text, "acked "));
    assert!(acked > copied);
    for f in ["swarm.db-wal", "swarm.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    for f in BACKED_UP_FILES {
        std::fs::copy(dir.path().join("backup").join(f), dir.path().join(f)).expect("put back");
    }
    match Store::open(&db, opts(20_000)) {
        Err(StoreError::OlderThanReached {
            reached_seq,
            found_seq,
            ..
        }) => assert_eq!(
            (reached_seq, found_seq),
            (acked, copied),
            "defers: {defers}"
        ),
        other => panic!("expected OlderThanReached (defers: {defers}), got {other:?}"),
    }
    accepted(&db);
}

/// swarm leaves its marker whole (written to a new file and renamed into
/// place), so an emptied one is something else's doing. Beside a database
/// whose `-wal` was deleted too, it would hide the loss: the start is
/// refused, naming the marker and the way out, for a 0-byte marker and for
/// one of zeros alike, and `--accept-loss` opens and records it.
#[test]
fn an_emptied_marker_beside_a_database_that_lost_its_wal_is_refused() {
    for zeros in [0usize, 128] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("swarm.db");
        crashed_store(&db);
        let marker = dir.path().join("swarm.db.acked");
        std::fs::write(&marker, vec![0u8; zeros]).expect("empty the marker");
        std::fs::remove_file(wal(&db)).expect("delete -wal");
        let msg = match Store::open(&db, opts(20_000)) {
            Err(e @ StoreError::MarkerEmpty { .. }) => e.to_string(),
            Err(e) => panic!("{zeros} zeros: expected MarkerEmpty, got {e}"),
            Ok(s) => panic!(
                "{zeros} zeros: opened at seq {} without a word",
                s.last_seq().0
            ),
        };
        assert!(msg.contains(&marker.display().to_string()), "{msg}");
        assert!(
            msg.contains("is empty") && msg.contains("--accept-loss"),
            "{msg}"
        );
        accepted(&db);
        assert_eq!(
            std::fs::metadata(&marker).expect("marker").len(),
            128,
            "the accepted open wrote the marker whole"
        );
    }
}

/// An empty marker beside no database (a crash before swarm's first marker
/// was renamed into place, on a farm with no state) hides nothing: the
/// store opens and writes its marker whole, leaving no `.new` file.
#[test]
fn an_empty_marker_beside_no_database_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let marker = dir.path().join("swarm.db.acked");
    std::fs::write(&marker, b"").expect("empty marker");
    std::fs::write(dir.path().join("swarm.db.acked.new"), b"half").expect("leftover");
    let store = Store::open(&db, opts(1)).expect("opens: nothing to lose");
    assert_eq!(store.open_report().loss, None);
    assert_eq!(std::fs::metadata(&marker).expect("marker").len(), 128);
    assert!(
        !dir.path().join("swarm.db.acked.new").exists(),
        "the new marker was renamed into place"
    );
}

/// Opens `db` on another thread; `None` if the open had not returned after 20 s.
fn open_within_20s(db: &Path) -> Option<Result<Store, StoreError>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let db = db.to_owned();
    std::thread::spawn(move || {
        let _ = tx.send(Store::open(&db, opts(20_000)));
    });
    rx.recv_timeout(std::time::Duration::from_secs(20)).ok()
}

/// A FIFO where the store-id file belongs is never read: the writer records that file once a
/// minute, and a read of a FIFO blocks until a writer comes (h44 F3: every write stopped). A
/// running store warns and goes on; a start is refused naming it.
#[test]
fn a_fifo_in_place_of_the_store_id_file_blocks_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (db, id_file, mut store) = recording_each_commit(dir.path());
    std::fs::remove_file(&id_file).expect("remove the store-id file");
    let made = Command::new("mkfifo")
        .arg(&id_file)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let appended = store.append(Timestamp(5), Input::Tick).map(|_| ());
        let _ = tx.send((appended, store));
    });
    let (appended, store) = rx
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("the write did not wait on the FIFO");
    appended.expect("the write works");
    drop(store);
    match open_within_20s(&db).expect("the open did not wait on the FIFO") {
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("swarm.store-id") && msg.contains("FIFO"),
                "{msg}"
            );
        }
        Ok(_) => panic!("opened with a FIFO in place of the store-id file"),
    }
}

/// A store in `dir` whose store-id file is told how far it came at each commit: its database,
/// that file, the store.
fn recording_each_commit(dir: &Path) -> (PathBuf, PathBuf, Store) {
    let db = dir.join("swarm.db");
    let every_commit = StoreOptions {
        reached_every: std::time::Duration::ZERO,
        ..opts(1)
    };
    let store = Store::open(&db, every_commit).expect("open");
    (db, dir.join("swarm.store-id"), store)
}

/// A store-id file that cannot be written is kept for health and `/metrics` until a record works
/// again (h44 F4: it was a warning in the log once a minute, which no monitor saw), and the
/// store writes meanwhile.
#[test]
fn a_store_id_file_that_cannot_be_written_is_told_until_a_record_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (_, id_file, mut store) = recording_each_commit(dir.path());
    assert_eq!(store.id_file_error(), None);
    std::fs::remove_file(&id_file).expect("remove the store-id file");
    std::fs::create_dir(&id_file).expect("a directory in its place");
    store
        .append(Timestamp(5), Input::Tick)
        .expect("the store writes all the same");
    let why = store.id_file_error().expect("the failed record is kept");
    assert!(
        why.contains("swarm.store-id") && why.contains("directory"),
        "{why}"
    );
    std::fs::remove_dir(&id_file).expect("the directory moved away");
    store.append(Timestamp(6), Input::Tick).expect("append");
    assert_eq!(store.id_file_error(), None);
    let text = std::fs::read_to_string(&id_file).expect("the store-id file is back");
    assert!(
        text.contains(&format!("reached seq {}", store.last_seq().0)),
        "{text}"
    );
}

/// The file is tried in every mode, and when nothing is acknowledged: with `synchronous=normal`
/// (where it says again what it said, never more) and on an idle probe of a store that defers
/// its fsyncs, as the server's writer does (h48 F3: both showed the file current while it could
/// not be written, until the next start was refused).
#[test]
fn a_store_id_file_that_cannot_be_written_is_found_in_every_mode_and_while_idle() {
    use swarm_store::Synchronous;
    for (mode, defer_sync) in [(Synchronous::Normal, false), (Synchronous::Full, true)] {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("swarm.db");
        let id_file = dir.path().join("swarm.store-id");
        let every_write = StoreOptions {
            reached_every: std::time::Duration::ZERO,
            synchronous: mode,
            defer_sync,
            ..opts(1)
        };
        let mut store = Store::open(&db, every_write).expect("open");
        let at_open = std::fs::read_to_string(&id_file).expect("the store-id file");
        // A directory in the file's place; then an intact file whose `.new` name is taken by a
        // directory (an immutable file or a read-only directory alike): a read is fine there,
        // a write is not.
        let fresh = dir.path().join("swarm.store-id.new");
        std::fs::remove_file(&id_file).expect("remove the store-id file");
        for (blocked, word, at) in [
            (&id_file, "directory", 5),
            (&fresh, "swarm.store-id.new", 8),
        ] {
            std::fs::create_dir(blocked).expect("a directory in the way");
            store.probe_write(Timestamp(at)).expect("the probe writes");
            let why = store
                .id_file_error()
                .unwrap_or_else(|| panic!("{mode:?}: {word} not found"));
            assert!(why.contains(word), "{why}");
            std::fs::remove_dir(blocked).expect("the directory moved away");
            store
                .append(Timestamp(at + 1), Input::Tick)
                .expect("append");
            store
                .probe_write(Timestamp(at + 2))
                .expect("the probe writes");
            assert_eq!(store.id_file_error(), None, "{mode:?}");
        }
        let text = std::fs::read_to_string(&id_file).expect("the store-id file is back");
        if mode == Synchronous::Normal {
            assert_eq!(text, at_open, "normal claims no more than at its open");
        }
    }
}

/// What is not a regular file where the marker belongs is refused at once,
/// with a message naming the file and what to do: a FIFO is not opened for
/// reading (that blocks until a writer comes, for good at a start).
#[test]
fn a_fifo_or_a_directory_in_place_of_the_marker_is_refused_saying_what_to_do() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    drop(Store::open(&db, opts(1)).expect("open"));
    let marker = dir.path().join("swarm.db.acked");
    for (kind, make) in [("FIFO", "mkfifo"), ("directory", "mkdir")] {
        std::fs::remove_file(&marker).expect("remove the marker");
        let made = Command::new(make).arg(&marker).status().expect(make);
        assert!(made.success(), "{make}");
        let msg = match open_within_20s(&db) {
            None => panic!("a {kind} marker: the open hangs"),
            Some(Ok(_)) => panic!("a {kind} marker: opened"),
            Some(Err(e)) => e.to_string(),
        };
        assert!(msg.contains(&marker.display().to_string()), "{msg}");
        assert!(msg.contains(kind), "{msg}");
        assert!(
            msg.contains("not a regular file") && msg.contains("move it"),
            "{msg}"
        );
        if kind == "directory" {
            std::fs::remove_dir(&marker).expect("rmdir");
        } else {
            std::fs::remove_file(&marker).expect("rm fifo");
        }
        // Moved away: the store opens, if told to accept that what the marker said is gone,
        // and writes a new marker.
        drop(open_accepting_loss(&db));
        assert!(marker.is_file(), "a new marker");
    }
}

fn evidence_opts(at: u64, evidence: &Path) -> StoreOptions {
    StoreOptions {
        state_evidence: vec![evidence.to_owned()],
        ..opts(at)
    }
}

/// `rm -f swarm.db*` removes the marker with the database. A data dir that
/// shows the farm had state (here: a file the caller names, such as the
/// server's build logs) refuses the start instead of opening a new, empty
/// store; `accept_loss` starts anew and records the loss. Without such
/// evidence a fresh store opens as before. (The store-id file, evidence of
/// its own, is removed here too: see the next test.)
#[test]
fn a_deleted_database_and_marker_are_refused_when_the_data_dir_shows_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let token = dir.path().join("admin.token");
    drop(Store::open(&db, opts(1)).expect("open"));
    let empty_token = dir.path().join("empty.token");
    std::fs::write(&empty_token, b"").expect("an empty file shows nothing");
    std::fs::write(&token, b"secret\n").expect("admin token");
    for f in STORE_FILES {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    assert!(
        Store::open(&db, evidence_opts(2, &empty_token)).is_ok(),
        "an empty file is no evidence"
    );
    for f in STORE_FILES {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let msg = match Store::open(&db, evidence_opts(3, &token)) {
        Err(e @ StoreError::StateWithoutDatabase { .. }) => e.to_string(),
        other => panic!("expected StateWithoutDatabase, got {other:?}"),
    };
    for part in [
        db.display().to_string(),
        token.display().to_string(),
        "swarm.db.acked".into(),
        "missing".into(),
        "--accept-loss".into(),
    ] {
        assert!(msg.contains(&part), "{part} in {msg}");
    }
    assert!(!db.exists(), "a refused open creates no database");
    let store = Store::open(
        &db,
        StoreOptions {
            accept_loss: true,
            ..evidence_opts(4, &token)
        },
    )
    .expect("accept_loss starts anew");
    let loss = store
        .open_report()
        .loss
        .clone()
        .expect("the loss is recorded");
    assert!(loss.contains("admin.token"), "{loss}");
    drop(store);
    Store::open(&db, evidence_opts(5, &token)).expect("and opens from then on");
}

/// Every file the store keeps beside `swarm.db`, the store-id file too.
const STORE_FILES: [&str; 5] = [
    "swarm.db",
    "swarm.db-wal",
    "swarm.db-shm",
    "swarm.db.acked",
    "swarm.store-id",
];

/// The store-id file is written at every open, outside the `swarm.db*`
/// names: after an `rm -f swarm.db*` it alone shows the farm had state, and
/// the start is refused naming it. Files an operator may put in a new data
/// dir first (an admin token) are no evidence: that start opens.
#[test]
fn the_store_id_file_outlives_rm_swarm_db_star_and_refuses_the_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    std::fs::write(dir.path().join("admin.token"), b"provisioned\n").expect("token");
    let id = {
        let store = Store::open(&db, opts(1)).expect("a first start beside a provisioned token");
        store.store_id().to_owned()
    };
    let id_file = dir.path().join("swarm.store-id");
    let text = std::fs::read_to_string(&id_file).expect("the store-id file");
    assert!(text.starts_with(&format!("swarm store {id}\n")), "{text}");
    for f in STORE_FILES.iter().filter(|f| f.starts_with("swarm.db")) {
        let _ = std::fs::remove_file(dir.path().join(f));
    }
    let msg = match Store::open(&db, opts(2)) {
        Err(e @ StoreError::StateWithoutDatabase { .. }) => e.to_string(),
        other => panic!("expected StateWithoutDatabase, got {other:?}"),
    };
    assert!(msg.contains(&id_file.display().to_string()), "{msg}");
    assert!(!msg.contains("admin.token"), "{msg}");
    let store = Store::open(
        &db,
        StoreOptions {
            accept_loss: true,
            ..opts(3)
        },
    )
    .expect("accept_loss starts anew");
    let new_id = store.store_id().to_owned();
    assert_ne!(new_id, id);
    drop(store);
    let text = std::fs::read_to_string(&id_file).expect("the store-id file");
    assert!(
        text.starts_with(&format!("swarm store {new_id}\n")),
        "{text}"
    );
}

/// `swarm.db` a link into a volume that did not mount: the marker lives
/// beside the link, so it says what was acknowledged and the start is
/// refused instead of making an empty store on the wrong file system.
#[test]
fn a_database_linked_into_a_volume_that_did_not_mount_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).expect("volume");
    let db = dir.path().join("swarm.db");
    std::os::unix::fs::symlink(volume.join("swarm.db"), &db).expect("link");
    let acked = {
        let mut store = Store::open(&db, opts(1)).expect("open through the link");
        store.append(Timestamp(2), Input::Tick).expect("append");
        store.last_seq().0
    };
    assert!(
        dir.path().join("swarm.db.acked").is_file(),
        "the marker is beside the link"
    );
    assert!(
        !volume.join("swarm.db.acked").exists(),
        "not beside its target"
    );
    // The volume's mount point, empty: the link leads to nothing.
    for entry in std::fs::read_dir(&volume).expect("volume") {
        std::fs::remove_file(entry.expect("entry").path()).expect("unmount");
    }
    let msg = refused(&db, acked);
    assert!(msg.contains("missing"), "{msg}");
    assert!(
        !volume.join("swarm.db").exists(),
        "no new database on the wrong file system"
    );
}

/// A data dir given as a relative path or through a symbolic link spells
/// the marker's path otherwise than its real one: the marker is still its
/// own, kept at every open (it was taken for its old place and removed, so
/// every write after the first check was refused), and the store reopens.
#[test]
fn a_relative_or_symlinked_data_dir_keeps_its_marker_across_opens() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = dir.path().join("real");
    std::fs::create_dir(&real).expect("real dir");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink(&real, &link).expect("link");
    // The same temp dir, relative to this process's working directory.
    let cwd = std::env::current_dir().expect("cwd");
    let up: PathBuf = cwd.components().skip(1).map(|_| "..").collect();
    let relative = up.join(real.strip_prefix("/").expect("absolute"));
    for db in [link.join("swarm.db"), relative.join("swarm.db")] {
        for at in [1, 2] {
            let mut store = Store::open(&db, opts(at * 100)).expect("opens");
            let (op, _) = common::op_from(at);
            let input = common::to_input(&op, store.swarm().expect("state").view());
            store
                .append(Timestamp(at * 100 + 1), input)
                .expect("append");
            assert!(
                real.join("swarm.db.acked").is_file(),
                "{}: the marker is kept at open {at}",
                db.display()
            );
        }
        for f in STORE_FILES {
            let _ = std::fs::remove_file(real.join(f));
        }
    }
}

/// A store from before keeps its marker beside the link's target: it is
/// read there (a loss is still detected), then moved beside the link.
#[test]
fn a_marker_beside_a_links_target_is_read_and_moved_beside_the_link() {
    let dir = tempfile::tempdir().expect("temp dir");
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).expect("volume");
    let target = volume.join("swarm.db");
    let db = dir.path().join("swarm.db");
    // Written by its target's path, as the old layout put the marker there.
    let acked = crashed_store(&target);
    std::os::unix::fs::symlink(&target, &db).expect("link");
    let old = volume.join("swarm.db.acked");
    let new = dir.path().join("swarm.db.acked");
    assert!(old.is_file() && !new.exists());
    let saved = std::fs::read(wal(&target)).expect("WAL");
    std::fs::remove_file(wal(&target)).expect("lose the WAL");
    refused(&db, acked);
    std::fs::write(wal(&target), saved).expect("WAL back");
    let store = Store::open(&db, opts(20_000)).expect("a healthy store opens");
    assert_eq!(store.open_report().loss, None);
    drop(store);
    assert!(new.is_file(), "the marker is beside the link now");
    assert!(!old.exists(), "and gone from its old place");
}

/// Only the marker is another store's: the refusal says the marker may be the file that is foreign.
#[test]
fn another_stores_marker_beside_ours_is_refused_naming_the_marker() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (ours, theirs) = two_stores(dir.path());
    let db = ours.join("swarm.db");
    std::fs::copy(theirs.join("swarm.db.acked"), ours.join("swarm.db.acked")).expect("replace");
    let msg = format!("{:#}", Store::open(&db, opts(1)).expect_err("refused"));
    assert!(msg.contains("another store"), "{msg}");
    assert!(
        msg.contains("or that marker was") && msg.contains("swarm.db.acked"),
        "says the marker may be the foreign file: {msg}"
    );
}
