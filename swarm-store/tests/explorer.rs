//! The SQL explorer: everything that reads works, everything else is refused
//! by SQLite, and nothing changes the file.

mod common;

use common::{open, small_opts};
use std::path::Path;
use std::time::{Duration, Instant};
use swarm_core::Timestamp;
use swarm_store::{Explorer, ExplorerOptions, StoreError};

fn fixture(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("swarm.db");
    let mut store = open(&path, small_opts(100_000, 0));
    let mut at = 0;
    for i in 0..150u64 {
        let (op, dt) = common::op_from(i * 7919 + 11);
        at += dt;
        let input = common::to_input(&op, store.swarm().expect("state").view());
        store.append(Timestamp(at), input).expect("append");
    }
    path
}

fn file_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).expect("read db")
}

fn explorer(path: &Path, budget_ms: u64) -> Explorer {
    Explorer::open(
        path,
        ExplorerOptions {
            budget: Duration::from_millis(budget_ms),
            max_rows: 50,
            ..ExplorerOptions::default()
        },
    )
    .expect("explorer opens")
}

#[test]
fn reads_that_a_keyword_filter_rejected_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = fixture(dir.path());
    let x = explorer(&path, 2_000);
    let r = x
        .query("SELECT created_at FROM builds ORDER BY created_at")
        .expect("created_at is a column, not a CREATE");
    assert_eq!(r.columns[0].name, "created_at");
    assert_eq!(r.columns[0].decl_type.as_deref(), Some("INTEGER"));
    let r = x
        .query("SELECT name, status FROM drones WHERE status = 'deleted'")
        .expect("'deleted' is a string, not a DELETE");
    assert!(r.rows.is_empty());
    let r = x
        .query("SELECT status, count(*) AS n FROM packages GROUP BY status")
        .expect("group by");
    assert_eq!(r.columns[1].name, "n");
    assert_eq!(r.columns[1].observed_type.as_deref(), Some("integer"));
    let r = x
        .query("SELECT kind, body FROM events ORDER BY id LIMIT 3")
        .expect("events");
    assert_eq!(r.columns[1].observed_type.as_deref(), Some("text"));
    let r = x.query("PRAGMA table_info(builds)").expect("table_info");
    assert!(r.rows.iter().any(|row| row[1] == "created_at"));
    x.query("PRAGMA user_version")
        .expect("reading user_version");
    x.query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 10) SELECT sum(i) FROM n")
        .expect("bounded recursion");
    let r = x.query("SELECT seq FROM input_log").expect("many rows");
    assert!(r.truncated, "150 rows capped at 50");
    assert_eq!(r.rows.len(), 50);
    let tables = x.tables().expect("tables");
    for t in [
        "builds",
        "drones",
        "events",
        "input_log",
        "leases",
        "meta",
        "outbox",
        "packages",
        "snapshots",
    ] {
        assert!(tables.iter().any(|n| n == t), "{t} in {tables:?}");
    }
    let schema = x.schema().expect("schema");
    let builds = schema.iter().find(|t| t.name == "builds").expect("builds");
    assert!(builds
        .columns
        .iter()
        .any(|(c, ty)| c == "created_at" && ty == "INTEGER"));
}

#[test]
fn every_write_form_and_runaway_query_is_refused_and_the_file_is_unchanged() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = fixture(dir.path());
    let before = file_bytes(&path);
    let x = explorer(&path, 200);
    let attacks = [
        "INSERT INTO meta (key, value) VALUES ('x', 'y')",
        "UPDATE drones SET paused = 1",
        "DELETE FROM input_log",
        "REPLACE INTO meta (key, value) VALUES ('config', '{}')",
        "DROP TABLE builds",
        "ALTER TABLE builds ADD COLUMN x",
        "CREATE TABLE evil (x)",
        "CREATE TEMP TABLE evil (x)",
        "CREATE INDEX evil ON builds (detail)",
        "CREATE VIEW evil AS SELECT 1",
        "ATTACH DATABASE '/tmp/swarm-explorer-attack.db' AS evil",
        "DETACH DATABASE main",
        "PRAGMA user_version = 9",
        "PRAGMA journal_mode = delete",
        "PRAGMA query_only = 0",
        "PRAGMA writable_schema = 1",
        "VACUUM",
        "VACUUM INTO '/tmp/swarm-explorer-attack-copy.db'",
        "REINDEX",
        "ANALYZE",
        "BEGIN IMMEDIATE",
        "SAVEPOINT s",
        "SELECT load_extension('/tmp/evil.so')",
        "SELECT writefile('/tmp/swarm-explorer-attack.txt', 'x')",
        "SELECT 1; DELETE FROM input_log",
        "SELECT 1; SELECT 2",
        "WITH x AS (SELECT 1) DELETE FROM events",
    ];
    for sql in attacks {
        match x.query(sql) {
            Err(StoreError::QueryRefused { reason }) => {
                assert!(!reason.is_empty(), "{sql}");
            }
            Err(StoreError::Query { detail }) => {
                // Refused while compiling (unknown function, read-only file): still a clear error.
                assert!(!detail.is_empty(), "{sql}");
            }
            other => panic!("{sql:?} was not refused: {other:?}"),
        }
    }
    // Runaway work is stopped by the budget.
    let started = Instant::now();
    match x.query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
    ) {
        Err(StoreError::QueryTimeout { budget_ms: 200 }) => {}
        other => panic!("endless CTE: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match x.query("SELECT randomblob(1000000000)") {
        Err(StoreError::Query { detail }) => assert!(detail.contains("too big"), "{detail}"),
        other => panic!("randomblob flood: {other:?}"),
    }
    match x.query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT randomblob(100000) FROM n") {
        Err(StoreError::QueryTimeout { .. }) => {}
        Ok(r) => assert!(r.truncated && r.rows.len() <= 50),
        other => panic!("randomblob rows: {other:?}"),
    }
    // Still usable after all that.
    x.query("SELECT count(*) FROM builds")
        .expect("reads still work");
    drop(x);
    assert!(!Path::new("/tmp/swarm-explorer-attack.db").exists());
    assert!(!Path::new("/tmp/swarm-explorer-attack-copy.db").exists());
    assert!(!Path::new("/tmp/swarm-explorer-attack.txt").exists());
    assert!(before == file_bytes(&path), "the database file changed");
    // And the store still opens and verifies.
    let store = open(&path, small_opts(100_000, 1 << 40));
    store.check_read_tables().expect("tables");
}

#[test]
fn a_reply_stops_growing_at_its_byte_cap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = fixture(dir.path());
    let ex = Explorer::open(
        &path,
        ExplorerOptions {
            max_rows: 1000,
            max_reply_bytes: 1 << 20,
            ..ExplorerOptions::default()
        },
    )
    .expect("explorer opens");
    // 1,000 rows of 400 KB (as hex) each would be 400 MB; the cap keeps it
    // within 1 MiB.
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000) \
               SELECT i, zeroblob(200000) FROM n";
    let r = ex.query(sql).expect("query");
    assert!(r.truncated, "reported truncated");
    let bytes: usize = r
        .rows
        .iter()
        .flatten()
        .map(|v| v.as_str().map_or(8, str::len))
        .sum();
    assert!(bytes < 2 << 20, "{bytes} bytes");
    assert!(r.rows.len() >= 2, "{} rows", r.rows.len());
}

fn capped_explorer(dir: &Path) -> Explorer {
    Explorer::open(fixture(dir), ExplorerOptions::default()).expect("explorer opens")
}

#[test]
fn one_row_of_forty_blobs_is_refused_with_the_reply_limit() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ex = capped_explorer(dir.path());
    // 40 blobs of 1 MB are 80 MB as hex: the reviewer's 80 MB reply.
    let cols = vec!["zeroblob(1000000)"; 40].join(", ");
    match ex.query(&format!("SELECT {cols}")) {
        Err(StoreError::QueryRefused { reason }) => {
            assert!(reason.contains("reply limit of 4194304 bytes"), "{reason}")
        }
        other => panic!("expected a refusal naming the reply limit, got {other:?}"),
    }
}

#[test]
fn escaped_control_characters_count_at_their_encoded_size() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ex = capped_explorer(dir.path());
    // Each row is 500,000 char(1)s: 0.5 MB of text, 3 MB as JSON (`\u0001`).
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 100) \
               SELECT replace(hex(zeroblob(250000)), '0', char(1)) FROM n";
    let r = ex.query(sql).expect("query");
    assert!(r.truncated, "reported truncated");
    let encoded = serde_json::to_string(&r.rows).expect("json").len();
    assert!(encoded <= 4 << 20, "{encoded} bytes of rows");
    assert_eq!(r.rows.len(), 1, "a second row would pass 4 MiB");
    // And one row of two such values (6 MB encoded) is refused.
    let one = "SELECT replace(hex(zeroblob(250000)), '0', char(1)), \
               replace(hex(zeroblob(250000)), '0', char(1))";
    match ex.query(one) {
        Err(StoreError::QueryRefused { reason }) => {
            assert!(reason.contains("reply limit"), "{reason}")
        }
        other => panic!("expected a refusal naming the reply limit, got {other:?}"),
    }
}

#[test]
fn rows_of_blobs_stop_before_the_cap_mid_way() {
    let dir = tempfile::tempdir().expect("temp dir");
    let ex = capped_explorer(dir.path());
    // Each row: two 700 KB blobs, 2.8 MB as hex; the second row would pass 4 MiB.
    let sql = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 40) \
               SELECT zeroblob(700000), zeroblob(700000) FROM n";
    let r = ex.query(sql).expect("query");
    assert!(r.truncated, "reported truncated");
    let encoded = serde_json::to_string(&r.rows).expect("json").len();
    assert!(encoded <= 4 << 20, "{encoded} bytes of rows");
    assert_eq!(r.rows.len(), 1);
}

/// The budget is checked between SQLite's steps, and one call of a string
/// function is one step: SQLite's own `instr` of a 500 kB needle in 1 MB took
/// 5.5 s a call, so this query ran 11 s and more against its 2 s budget. The
/// explorer's linear stand-ins answer it within the budget, and a LIKE
/// pattern long enough to cost as much is refused.
#[test]
fn no_single_string_function_call_outlasts_the_budget() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = fixture(dir.path());
    let ex = explorer(&path, 2_000);
    for f in [
        "instr(printf('%.*c', 1000000, 'a'), printf('%.*c', 500000 + x, 'a') || 'b')",
        "length(replace(printf('%.*c', 1000000, 'a'), printf('%.*c', 500000 + x, 'a') || 'b', 'c'))",
        "length(trim(printf('%.*c', 1000000, 'a'), printf('%.*c', 500000 + x, 'b')))",
    ] {
        // Each row also takes a few thousand steps, so the budget is looked
        // at after each call.
        let q = format!(
            "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM r WHERE x < 2), \
             c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 2000) \
             SELECT x, {f}, (SELECT count(*) FROM c) FROM r"
        );
        let r = ex.query(&q).unwrap_or_else(|e| panic!("{f}: {e}"));
        assert_eq!(r.rows.len(), 2, "{f}");
    }
    let long = "%a".repeat(200);
    match ex.query(&format!(
        "SELECT printf('%.*c', 1000000, 'a') LIKE '{long}b'"
    )) {
        Err(StoreError::Query { detail }) => assert!(detail.contains("LIKE"), "{detail}"),
        other => panic!("a 400-byte LIKE pattern ran: {other:?}"),
    }
}
