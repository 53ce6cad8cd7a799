//! `swarm export` and `swarm sql` against a real store: the binary, real files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use swarm_core::{
    Atom, DroneName, DroneSpec, Enqueue, Heartbeat, Input, Outcome, PackageSpec, Report, Timestamp,
};
use swarm_store::{Store, StoreOptions};

fn swarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the swarm binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// A small history: two drones register, three packages are queued, work is
/// requested, one build starts and finishes, heartbeats flow. Returns the
/// store's core digest as `swarm replay` prints it.
fn make_store(path: &Path, opts: StoreOptions) -> String {
    let mut store = Store::open(path, opts).expect("open a new store");
    let drone = |n: &str| DroneName::new(n.to_owned()).expect("drone name");
    let atom = |a: &str| Atom::parse(a).expect("atom");
    let mut at = 1_000;
    let mut step = |store: &mut Store, input: Input| {
        at += 1_500;
        store.append(Timestamp(at), input).expect("append");
    };
    for name in ["alpha", "bravo"] {
        step(
            &mut store,
            Input::Register(DroneSpec {
                name: drone(name),
                cores: 8,
                ram_mb: 16_384,
                ..DroneSpec::default()
            }),
        );
    }
    step(
        &mut store,
        Input::Enqueue(Enqueue {
            packages: ["dev-libs/a-1.0", "dev-libs/b-2.0", "app-misc/c-3.1"]
                .into_iter()
                .map(|a| PackageSpec::new(atom(a)))
                .collect(),
            ..Enqueue::default()
        }),
    );
    step(
        &mut store,
        Input::RequestWork {
            drone: drone("alpha"),
            free_slots: Some(1),
        },
    );
    let lease = store.swarm().expect("state").view().leases()[0].clone();
    let report = Report {
        drone: lease.drone.clone(),
        package: lease.package.clone(),
        lease: Some(lease.lease),
        epoch: None,
    };
    step(&mut store, Input::BuildStarted(report.clone()));
    step(
        &mut store,
        Input::Heartbeat(Heartbeat {
            drone: drone("bravo"),
            ..Heartbeat::default()
        }),
    );
    step(
        &mut store,
        Input::BuildFinished {
            report,
            outcome: Outcome::Success,
            duration_ms: Some(1_200),
        },
    );
    step(
        &mut store,
        Input::RequestWork {
            drone: drone("bravo"),
            free_slots: Some(2),
        },
    );
    step(&mut store, Input::Tick);
    format!("{:016x}", store.swarm().expect("state").digest())
}

fn fixture() -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let digest = make_store(&db, StoreOptions::default());
    (dir, db, digest)
}

fn sql_json(db: &Path, query: &str) -> serde_json::Value {
    let out = swarm(&["sql", "--db", s(db), "--json", query]);
    assert!(out.status.success(), "{query}: {}", text(&out.stderr));
    serde_json::from_str(text(&out.stdout).trim()).expect("one JSON answer")
}

#[test]
fn an_exported_log_replays_to_the_stores_digest() {
    let (dir, db, digest) = fixture();
    let log = dir.path().join("export.jsonl");
    let before = std::fs::read(&db).expect("read db");
    let out = swarm(&["export", "--db", s(&db), "--out", s(&log)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("exported 10 inputs"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("export.jsonl.partial").exists());
    assert_eq!(
        std::fs::read(&db).expect("read db"),
        before,
        "export must not write to the store"
    );
    let lines = std::fs::read_to_string(&log).expect("read log");
    assert_eq!(lines.lines().count(), 10, "Recovered and the nine inputs");
    assert!(lines.starts_with("{\"seq\":1,"), "{lines}");

    let out = swarm(&["replay", s(&log), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let figures: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert_eq!(figures["digest"], digest.as_str(), "{figures}");
    assert_eq!(figures["inputs"], 10);
    assert_eq!(figures["built"], 1);
    assert_eq!(figures["invariant_violations"], 0);

    // To stdout, from a data dir, and from a later seq.
    let out = swarm(&["export", "--data-dir", s(dir.path()), "--since", "7"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tail = text(&out.stdout);
    let seqs: Vec<u64> = tail
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("an envelope")["seq"]
                .as_u64()
                .expect("seq")
        })
        .collect();
    assert_eq!(seqs, vec![8, 9, 10]);
}

/// A row changed after it was written (its time, one bit) is refused by seq, not exported.
/// `swarm export` reads the cells as stored: a checksum turned into a blob or lost (NULL), or
/// an input that is no longer UTF-8, is refused as the store refuses it, not exported as a row
/// without a checksum or with the explorer's replacement characters (h28 F2, F4).
#[test]
fn export_refuses_a_changed_row_naming_its_seq() {
    for (change, says) in [
        (
            "at_ms = (at_ms | 1) - (at_ms & 1)",
            "no longer matches the checksum written with it",
        ),
        ("crc = CAST(crc AS BLOB)", "its checksum is a blob"),
        ("crc = NULL", "its checksum is missing"),
        ("at_ms = 'x'", "its time is text, not a count"),
        (
            "input = CAST(X'7B22FF227D' AS TEXT)",
            "its input is not valid UTF-8 text",
        ),
    ] {
        let (dir, db, _) = fixture();
        let changed = rusqlite::Connection::open(&db)
            .expect("raw open")
            .execute(&format!("UPDATE input_log SET {change} WHERE seq = 4"), [])
            .expect("change");
        assert_eq!(changed, 1);
        let log = dir.path().join("export.jsonl");
        let out = swarm(&["export", "--db", s(&db), "--out", s(&log)]);
        assert!(!out.status.success(), "{change}: exported");
        assert!(!log.exists(), "{change}: a log that looks complete");
        let err = text(&out.stderr);
        assert!(
            err.contains("input log seq 4 ") && err.contains(says),
            "{change}: {err}"
        );
    }
}

/// A store of an older schema (before the log's checksums) is named as older, with what to do,
/// not a bare "no such column: crc" (h33 F3); a newer one as newer.
#[test]
fn export_names_a_store_of_another_schema() {
    for (version, says) in [
        (5, "schema version 5, older than this swarm's"),
        (99, "schema version 99 but this swarm understands at most"),
    ] {
        let (dir, db, _) = fixture();
        rusqlite::Connection::open(&db)
            .expect("raw open")
            .execute_batch(&format!(
                "ALTER TABLE input_log DROP COLUMN crc; PRAGMA user_version = {version};"
            ))
            .expect("another schema");
        let log = dir.path().join("export.jsonl");
        let out = swarm(&["export", "--db", s(&db), "--out", s(&log)]);
        assert!(!out.status.success(), "{version}: exported");
        let err = text(&out.stderr);
        assert!(err.contains(says), "{version}: {err}");
        assert!(!err.contains("no such column"), "{version}: {err}");
    }
}

/// The explorer's limits are bounded where they are given: a budget of 0 or of days, or no
/// rows at all, is refused naming the flag and its range, before any file is opened.
#[test]
fn sql_refuses_limits_out_of_range_naming_the_flag() {
    let (_dir, db, _) = fixture();
    for (flag, value, range) in [
        ("--timeout-ms", "0", "1..=600000"),
        ("--timeout-ms", "86400000", "1..=600000"),
        ("--max-rows", "0", "1..=1000000"),
    ] {
        let out = swarm(&["sql", "--db", s(&db), flag, value, "SELECT 1"]);
        assert!(!out.status.success(), "{flag} {value} was taken");
        let err = text(&out.stderr);
        assert!(
            err.contains(flag) && err.contains(range),
            "{flag} {value}: {err}"
        );
    }
    let out = swarm(&["sql", "--db", s(&db), "--timeout-ms", "600000", "SELECT 1"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn export_does_not_need_the_writer_lock() {
    let (_dir, db, _) = fixture();
    let store = Store::open(&db, StoreOptions::default()).expect("the server holds the store");
    let out = swarm(&["export", "--db", s(&db)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout).lines().count() as u64,
        store.last_seq().0,
        "every acknowledged input, the server's Recovered included"
    );
}

#[test]
fn a_compacted_range_is_refused_with_the_first_seq_that_works() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("swarm.db");
    let opts = StoreOptions {
        snapshot_every: 2,
        keep_snapshots: 1,
        ..StoreOptions::default()
    };
    make_store(&db, opts);
    let out = swarm(&["export", "--db", s(&db), "--since", "0"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("compacted into a snapshot"), "{err}");
    assert!(err.contains("export can start at --since"), "{err}");
    assert!(out.stdout.is_empty(), "nothing written before the refusal");
    // And a file is not left behind looking like a complete log.
    let log = dir.path().join("out.jsonl");
    let out = swarm(&["export", "--db", s(&db), "--out", s(&log)]);
    assert!(!out.status.success());
    assert!(!log.exists());
    assert!(!dir.path().join("out.jsonl.partial").exists());
}

#[test]
fn missing_and_foreign_files_are_named() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = swarm(&["export", "--data-dir", s(dir.path())]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no store in"), "{err}");
    assert!(err.contains("swarm.db does not exist"), "{err}");
    assert!(!dir.path().join("swarm.db").exists(), "never created");

    let out = swarm(&["sql", "--db", s(&dir.path().join("nope.db")), "SELECT 1"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("the file does not exist"));

    let junk = dir.path().join("junk.db");
    std::fs::write(
        &junk,
        b"this is not sqlite, just some bytes long enough ...",
    )
    .expect("write");
    let out = swarm(&["sql", "--db", s(&junk), "SELECT 1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not a readable SQLite database"),
        "{}",
        text(&out.stderr)
    );

    let out = swarm(&["sql", "--db", "a.db", "--data-dir", "d", "SELECT 1"]);
    assert!(
        !out.status.success(),
        "--db and --data-dir exclude each other"
    );
}

#[test]
fn sql_reads_what_a_keyword_filter_rejected() {
    let (_dir, db, _) = fixture();
    let r = sql_json(&db, "SELECT created_at FROM builds");
    assert_eq!(r["columns"], serde_json::json!(["created_at"]));
    assert_eq!(r["types"], serde_json::json!(["integer"]));
    assert_eq!(r["truncated"], false);
    assert_eq!(r["rows"].as_array().map(Vec::len), Some(3), "{r}");

    let r = sql_json(&db, "SELECT name FROM drones WHERE status = 'deleted'");
    assert_eq!(r["rows"], serde_json::json!([]));

    let r = sql_json(&db, "SELECT atom, status FROM packages ORDER BY atom");
    assert_eq!(r["rows"].as_array().map(Vec::len), Some(3), "{r}");

    // Text: an aligned table with the column names and a row count.
    let out = swarm(&[
        "sql",
        "--db",
        s(&db),
        "SELECT name, cores FROM drones ORDER BY name",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let table = text(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines[0], "name   cores", "{table}");
    assert_eq!(lines[1], "-----  -----", "{table}");
    assert_eq!(lines[2], "alpha      8", "{table}");
    assert_eq!(lines[4], "(2 rows)", "{table}");

    // The row cap, in both forms.
    let out = swarm(&[
        "sql",
        "--db",
        s(&db),
        "--max-rows",
        "2",
        "SELECT seq FROM input_log",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("(truncated at 2 rows"),
        "{}",
        text(&out.stdout)
    );
    let out = swarm(&[
        "sql",
        "--data-dir",
        s(db.parent().expect("dir")),
        "--json",
        "--max-rows",
        "2",
        "SELECT seq FROM input_log",
    ]);
    let r: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert_eq!(r["truncated"], true);
    assert_eq!(r["rows"].as_array().map(Vec::len), Some(2));
}

#[test]
fn sql_cut_by_the_reply_limit_says_so_and_not_the_row_cap() {
    let (_dir, db, _) = fixture();
    // Rows of two 700 KB blobs: 2.8 MB each as hex, so a second passes 4 MiB.
    let out = swarm(&[
        "sql",
        "--db",
        s(&db),
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) \
         SELECT zeroblob(700000), zeroblob(700000) FROM n",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let tail: String = text(&out.stdout)
        .lines()
        .rev()
        .take(2)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        tail.contains("(truncated at 1 row: the next row would pass the 4 MiB reply limit"),
        "{tail}"
    );
    assert!(!tail.contains("raise --max-rows"), "{tail}");
}

#[test]
fn sql_refuses_writes_and_leaves_the_file_alone() {
    let (_dir, db, _) = fixture();
    let before = std::fs::read(&db).expect("read db");
    for query in [
        "DELETE FROM builds",
        "UPDATE drones SET cores = 1",
        "DROP TABLE builds",
        "PRAGMA user_version = 99",
        "ATTACH DATABASE '/tmp/x.db' AS x",
        "SELECT 1; DELETE FROM builds",
    ] {
        let out = swarm(&["sql", "--db", s(&db), query]);
        assert!(!out.status.success(), "{query} must be refused");
        let err = text(&out.stderr);
        assert!(err.contains("query refused"), "{query}: {err}");
        assert!(out.stdout.is_empty(), "{query}");
    }
    let out = swarm(&["sql", "--db", s(&db), "DELETE FROM builds"]);
    assert!(
        text(&out.stderr).contains("DELETE from builds"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&db).expect("read db"),
        before,
        "file unchanged"
    );
    let r = sql_json(&db, "SELECT count(*) AS n FROM builds");
    assert_eq!(r["rows"], serde_json::json!([[3]]));

    let out = swarm(&[
        "sql",
        "--db",
        s(&db),
        "--timeout-ms",
        "200",
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT max(i) FROM r",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("time budget of 200 ms"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn sql_lists_tables_and_schema() {
    let (_dir, db, _) = fixture();
    let out = swarm(&["sql", "--db", s(&db), "--tables"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let names: Vec<String> = text(&out.stdout).lines().map(str::to_owned).collect();
    for table in [
        "packages",
        "drones",
        "leases",
        "builds",
        "events",
        "input_log",
    ] {
        assert!(names.iter().any(|n| n == table), "{table} in {names:?}");
    }
    let out = swarm(&["sql", "--db", s(&db), "--tables", "--json"]);
    let json: Vec<String> = serde_json::from_str(text(&out.stdout).trim()).expect("JSON list");
    assert_eq!(json, names);

    let out = swarm(&["sql", "--db", s(&db), "--schema"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let schema = text(&out.stdout);
    assert!(schema.contains("builds (table)"), "{schema}");
    assert!(schema.contains("created_at"), "{schema}");

    let out = swarm(&["sql", "--db", s(&db)]);
    assert!(
        !out.status.success(),
        "a query or --tables/--schema is required"
    );
}
