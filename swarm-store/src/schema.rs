//! The schema and its migrations, versioned by `PRAGMA user_version`.
//!
//! `MIGRATIONS[i]` takes a file from version `i` to `i + 1`, each in its own
//! transaction. A file newer than this build is refused (never "downgraded"),
//! and a SQLite file that is not a swarm store is refused by `application_id`.
//!
//! Timestamps in the read tables are milliseconds since the Unix epoch, the
//! core's `Timestamp`; `created_at`, `started_at`, `finished_at` in `builds`
//! keep the names operators know from Build Swarm v3.

use crate::error::StoreError;
use rusqlite::{Connection, OptionalExtension};
use std::path::Path;

/// `PRAGMA application_id` of a swarm store ("SWRM").
pub(crate) const APPLICATION_ID: i64 = 0x5357_524d;

/// Migrations, oldest first. Append only; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the first schema.
    "
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    -- The durable log: one row per input, the core's Input as JSON.
    CREATE TABLE input_log (
        seq   INTEGER PRIMARY KEY,
        at_ms INTEGER NOT NULL,
        input TEXT NOT NULL
    );
    -- What the core answered to each input, checked again on every open.
    CREATE TABLE outbox (
        seq    INTEGER NOT NULL,
        idx    INTEGER NOT NULL,
        output TEXT NOT NULL,
        PRIMARY KEY (seq, idx)
    ) WITHOUT ROWID;
    -- The core's state after input `seq`; digest is the core's digest() in hex.
    CREATE TABLE snapshots (
        seq    INTEGER PRIMARY KEY,
        digest TEXT NOT NULL,
        state  TEXT NOT NULL
    );
    -- Read tables: current state for humans, the dashboard and the SQL explorer.
    CREATE TABLE packages (
        atom               TEXT PRIMARY KEY,
        status             TEXT NOT NULL,
        lease              INTEGER,
        drone              TEXT,
        started            INTEGER,
        retry_at_ms        INTEGER,
        built_at_ms        INTEGER,
        block_reason       TEXT,
        auto_unblock_at_ms INTEGER,
        priority           INTEGER NOT NULL,
        attempts           INTEGER NOT NULL,
        generation         INTEGER NOT NULL,
        last_error         TEXT,
        updated_seq        INTEGER NOT NULL
    );
    CREATE INDEX packages_status ON packages (status);
    CREATE TABLE drones (
        name                 TEXT PRIMARY KEY,
        machine_id           TEXT,
        epoch                INTEGER NOT NULL,
        status               TEXT NOT NULL,
        health               TEXT NOT NULL,
        kind                 TEXT NOT NULL,
        cores                INTEGER NOT NULL,
        ram_mb               INTEGER NOT NULL,
        slots                INTEGER NOT NULL,
        last_heartbeat_ms    INTEGER NOT NULL,
        paused               INTEGER NOT NULL,
        drained              INTEGER NOT NULL,
        grounded_until_ms    INTEGER,
        consecutive_failures INTEGER NOT NULL,
        escalation_steps     INTEGER NOT NULL,
        builds_ok            INTEGER NOT NULL,
        builds_failed        INTEGER NOT NULL,
        mem_percent          INTEGER,
        disk_percent         INTEGER,
        load_centi           INTEGER,
        portage_snapshot     TEXT,
        version              TEXT,
        updated_seq          INTEGER NOT NULL
    );
    CREATE TABLE leases (
        lease        INTEGER PRIMARY KEY,
        package      TEXT NOT NULL,
        drone        TEXT NOT NULL,
        issued_at_ms INTEGER NOT NULL,
        started_at_ms INTEGER
    );
    -- One row per attempt (lease); kept for the history retention.
    CREATE TABLE builds (
        id          INTEGER PRIMARY KEY,
        lease       INTEGER NOT NULL UNIQUE,
        package     TEXT NOT NULL,
        drone       TEXT NOT NULL,
        epoch       INTEGER NOT NULL,
        created_at  INTEGER NOT NULL,
        started_at  INTEGER,
        finished_at INTEGER,
        outcome     TEXT,
        class       TEXT,
        detail      TEXT,
        duration_ms INTEGER,
        seq         INTEGER NOT NULL
    );
    CREATE INDEX builds_package ON builds (package, created_at);
    CREATE INDEX builds_finished ON builds (finished_at);
    -- The activity feed: every Event output; kept for the events retention.
    CREATE TABLE events (
        id      INTEGER PRIMARY KEY,
        seq     INTEGER NOT NULL,
        at_ms   INTEGER NOT NULL,
        kind    TEXT NOT NULL,
        drone   TEXT,
        package TEXT,
        body    TEXT NOT NULL
    );
    CREATE INDEX events_at ON events (at_ms);
    CREATE INDEX events_drone ON events (drone, at_ms);
    ",
    // 1 -> 2: builds stamped with the building drone's environment (issue 17), and the
    // environments themselves, once each, so a release gate can say what differs.
    "
    ALTER TABLE builds ADD COLUMN env_digest TEXT;
    CREATE TABLE environments (
        digest    TEXT PRIMARY KEY,
        env       TEXT NOT NULL,
        first_seq INTEGER NOT NULL
    );
    ",
    // 2 -> 3: a package is (profile, atom) (issue 17): the same atom may be queued once per
    // profile. `packages` is keyed by both, its rows kept as the default profile's (the read
    // tables are rewritten from the core on open anyway); leases and builds say whose profile
    // they were for.
    "
    CREATE TABLE packages_v3 (
        atom               TEXT NOT NULL,
        profile            TEXT NOT NULL DEFAULT 'default',
        status             TEXT NOT NULL,
        lease              INTEGER,
        drone              TEXT,
        started            INTEGER,
        retry_at_ms        INTEGER,
        built_at_ms        INTEGER,
        block_reason       TEXT,
        auto_unblock_at_ms INTEGER,
        priority           INTEGER NOT NULL,
        attempts           INTEGER NOT NULL,
        generation         INTEGER NOT NULL,
        last_error         TEXT,
        updated_seq        INTEGER NOT NULL,
        PRIMARY KEY (profile, atom)
    );
    INSERT INTO packages_v3 (atom, profile, status, lease, drone, started, retry_at_ms,
        built_at_ms, block_reason, auto_unblock_at_ms, priority, attempts, generation,
        last_error, updated_seq)
    SELECT atom, 'default', status, lease, drone, started, retry_at_ms, built_at_ms,
        block_reason, auto_unblock_at_ms, priority, attempts, generation, last_error,
        updated_seq
    FROM packages;
    DROP TABLE packages;
    ALTER TABLE packages_v3 RENAME TO packages;
    CREATE INDEX packages_status ON packages (status);
    CREATE INDEX packages_atom ON packages (atom);
    ALTER TABLE leases ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
    ALTER TABLE builds ADD COLUMN profile TEXT NOT NULL DEFAULT 'default';
    ",
    // 3 -> 4: two indexes that no query of swarm's uses, each written on every work->complete
    // cycle: `packages_status` (three values; every status change moved an entry) and
    // `events_drone` (an entry per event, spread over every drone's range, so a group commit
    // dirtied a page per drone it named). The SQL explorer still filters on both columns, by a
    // scan; the events API filters by drone with `?1 IS NULL OR drone = ?1`, which no index serves.
    "
    DROP INDEX packages_status;
    DROP INDEX events_drone;
    ",
    // 4 -> 5: `builds_finished` only over finished attempts. It serves the history retention
    // (`finished_at < ?`, which implies NOT NULL, so the partial index still serves it); a
    // NULL entry written at every assignment and moved again when the build finished was work
    // for nothing.
    "
    DROP INDEX builds_finished;
    CREATE INDEX builds_finished ON builds (finished_at) WHERE finished_at IS NOT NULL;
    ",
    // 5 -> 6: a CRC-32 per input log row (`log_crc`), checked wherever the row is read back:
    // a changed byte that still parses and replays to the same outputs was otherwise taken
    // as the input. The rows already logged get theirs now (`swarm_log_crc`, registered by
    // `migrate`; a row whose input is not text keeps NULL and is refused as damaged), so a
    // change from here on is caught in them too; `crc_from` is the first seq with one, so a
    // NULL from there on is damage.
    "
    ALTER TABLE input_log ADD COLUMN crc INTEGER;
    UPDATE input_log SET crc = swarm_log_crc(seq, at_ms, input);
    INSERT INTO meta (key, value) SELECT 'crc_from', COALESCE(MIN(seq), 1) FROM input_log;
    ",
];

/// The schema version this build writes.
pub(crate) const LATEST: i64 = MIGRATIONS.len() as i64;

/// The writer's page cache, KiB.
const WRITER_CACHE_KIB: i64 = 64 * 1024;

/// The WAL's size after SQLite starts it over, bytes. Without a limit the
/// file keeps the size of the largest burst it ever held (a 200,000-package
/// import leaves hundreds of MB behind for good); with it, the first commit
/// after a checkpoint that copied everything truncates the file to this.
/// Four times the checkpoint threshold, so a normal WAL is never truncated
/// only to grow again.
pub(crate) const WAL_SIZE_LIMIT: i64 = 16 << 20;

/// Connection settings for the writer.
pub(crate) fn configure_writer(conn: &Connection, full_sync: bool) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::NoWal {
            detail: format!("cannot switch the journal to WAL (got {mode})"),
        });
    }
    conn.pragma_update(
        None,
        "synchronous",
        if full_sync { "FULL" } else { "NORMAL" },
    )?;
    // A page cache that holds the hot parts of the tables and indexes of a
    // large queue (the default is 2 MiB): without it every commit re-reads
    // index pages from the OS.
    conn.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
    conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)?;
    // Checked on every open: a damaged page must stop the store, not feed it garbage.
    conn.pragma_update(None, "cell_size_check", "ON")?;
    Ok(())
}

/// The schema of `conn` when it is a store of an older one, which opening upgrades (a foreign
/// file is refused by [`migrate`]).
pub(crate) fn older_version(conn: &Connection) -> Result<Option<i64>, StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    Ok(Some(version).filter(|v| app == APPLICATION_ID && (1..LATEST).contains(v)))
}

/// Creates or migrates the schema; refuses newer and foreign files.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let app: i64 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    if version > LATEST {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: LATEST,
        });
    }
    if app != APPLICATION_ID {
        let has_tables: Option<String> = conn
            .query_row(
                "SELECT name FROM sqlite_schema WHERE type = 'table' LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        if app != 0 || has_tables.is_some() {
            return Err(StoreError::NotAStore {
                path: path.to_owned(),
                application_id: app,
            });
        }
    }
    // Migration 6 checksums the rows already logged.
    conn.create_scalar_function(
        "swarm_log_crc",
        3,
        rusqlite::functions::FunctionFlags::SQLITE_UTF8
            | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let (seq, at) = (ctx.get::<i64>(0)?, ctx.get::<i64>(1)?);
            Ok(match ctx.get_raw(2) {
                rusqlite::types::ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                    .ok()
                    .map(|text| i64::from(crate::log_crc::of(seq as u64, at as u64, text))),
                _ => None,
            })
        },
    )?;
    // Savepoints: inside the transaction `Store::open` upgrades an older store in, they nest.
    for (from, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.savepoint()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", from as i64 + 1)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.commit()?;
    }
    Ok(())
}

/// `PRAGMA quick_check`: page structure of every table and index, O(size).
pub(crate) fn quick_check(conn: &Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare("PRAGMA quick_check(5)")?;
    let problems: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<Result<_, _>>()?;
    if problems.len() == 1 && problems[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Damaged {
        detail: problems.join("; "),
    })
}

/// Reads one `meta` value.
pub(crate) fn meta_get(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()?)
}

/// Writes one `meta` value.
pub(crate) fn meta_set(conn: &Connection, key: &str, value: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )?
    .execute([key, value])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store file as a build before migration 3 left it: one package row, one lease, one build.
    fn version_2_file(path: &Path) {
        let mut conn = Connection::open(path).expect("create");
        at_version(
            &mut conn,
            2,
            "INSERT INTO packages (atom, status, priority, attempts, generation, updated_seq)
                 VALUES ('=sys-libs/zlib-1.3', 'queued', 0, 0, 0, 1);
             INSERT INTO leases (lease, package, drone, issued_at_ms)
                 VALUES (7, '=sys-libs/zlib-1.3', 'd0', 5);
             INSERT INTO builds (lease, package, drone, epoch, created_at, seq)
                 VALUES (7, '=sys-libs/zlib-1.3', 'd0', 1, 5, 1);",
        );
    }

    /// Makes `conn` a store as a build of schema `version` left it, holding `rows`.
    fn at_version(conn: &mut Connection, version: usize, rows: &str) {
        let tx = conn.transaction().expect("tx");
        for sql in &MIGRATIONS[..version] {
            tx.execute_batch(sql).expect("old migration");
        }
        tx.pragma_update(None, "user_version", version as i64)
            .expect("version");
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .expect("app id");
        tx.execute_batch(rows).expect("old rows");
        tx.commit().expect("commit");
    }

    /// The indexes a work->complete cycle writes are the ones queries use: the history
    /// retention still finds finished builds by the index of them, which holds no entry for
    /// an unfinished build.
    #[test]
    fn the_retention_uses_the_partial_index_of_finished_builds() {
        let mut conn = Connection::open_in_memory().expect("open");
        migrate(&mut conn, Path::new(":memory:")).expect("migrates");
        let plan: String = conn
            .query_row(
                "EXPLAIN QUERY PLAN DELETE FROM builds WHERE finished_at < ?1",
                [1],
                |r| r.get(3),
            )
            .expect("plan");
        assert!(plan.contains("builds_finished"), "{plan}");
        let sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'builds_finished'",
                [],
                |r| r.get(0),
            )
            .expect("index");
        assert!(sql.ends_with("WHERE finished_at IS NOT NULL"), "{sql}");
        for gone in ["packages_status", "events_drone"] {
            let n: i64 = conn
                .query_row(
                    "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name = ?1",
                    [gone],
                    |r| r.get(0),
                )
                .expect("schema");
            assert_eq!(n, 0, "{gone} is written on every cycle and read by nothing");
        }
    }

    /// Rows logged before checksums get theirs at the migration, so a later change in them is
    /// caught too; `crc_from` says where they start, so a NULL after it is damage.
    #[test]
    fn a_version_5_log_migrates_with_every_row_checksummed() {
        let mut conn = Connection::open_in_memory().expect("open");
        at_version(
            &mut conn,
            5,
            "INSERT INTO input_log (seq, at_ms, input) VALUES (4, 5, '{}'), (5, 6, '{\"a\":1}');",
        );
        migrate(&mut conn, Path::new(":memory:")).expect("migrates");
        assert_eq!(
            meta_get(&conn, "crc_from").expect("meta").as_deref(),
            Some("4")
        );
        let rows: Vec<(i64, i64, String, Option<i64>)> = conn
            .prepare("SELECT seq, at_ms, input, crc FROM input_log ORDER BY seq")
            .expect("select")
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .expect("rows")
            .collect::<Result<_, _>>()
            .expect("read");
        assert_eq!(rows.len(), 2);
        for (seq, at, input, crc) in rows {
            let want = i64::from(crate::log_crc::of(seq as u64, at as u64, &input));
            assert_eq!(crc, Some(want), "seq {seq}");
        }
        let mut fresh = Connection::open_in_memory().expect("open");
        migrate(&mut fresh, Path::new(":memory:")).expect("new store");
        assert_eq!(
            meta_get(&fresh, "crc_from").expect("meta").as_deref(),
            Some("1")
        );
    }

    #[test]
    fn a_version_2_file_migrates_keeping_its_rows_as_the_default_profiles() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("swarm.db");
        version_2_file(&path);
        let mut conn = Connection::open(&path).expect("open");
        migrate(&mut conn, &path).expect("migrates");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("version");
        assert_eq!(version, LATEST);
        let row = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        assert_eq!(
            row("SELECT profile || ' ' || atom || ' ' || status FROM packages"),
            "default =sys-libs/zlib-1.3 queued"
        );
        assert_eq!(row("SELECT profile FROM leases WHERE lease = 7"), "default");
        assert_eq!(row("SELECT profile FROM builds WHERE lease = 7"), "default");
        // The same atom in another profile is another row; twice in one profile is refused.
        let insert = "INSERT INTO packages (atom, profile, status, priority, attempts, generation,
            updated_seq) VALUES ('=sys-libs/zlib-1.3', ?1, 'queued', 0, 0, 0, 2)";
        conn.execute(insert, ["server"]).expect("a second profile");
        assert!(
            conn.execute(insert, ["server"]).is_err(),
            "one row per (profile, atom)"
        );
        // A whole store opens on it (its read tables are rewritten from the core).
        drop(conn);
        let store = crate::Store::open(&path, crate::StoreOptions::default()).expect("store opens");
        store.check_read_tables().expect("read tables agree");
    }
}
