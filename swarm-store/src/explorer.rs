//! The SQL explorer (`swarm sql`, `GET /api/v1/sql/*`): arbitrary SELECTs over
//! the store, read-only by SQLite itself rather than by a keyword filter.
//!
//! Build Swarm v3 filtered queries by keyword and so refused `SELECT created_at
//! FROM builds` ("create") and `WHERE status = 'deleted'` ("delete"). Here the
//! guards are SQLite's own, layered so any one of them suffices:
//! - a separate connection opened with `SQLITE_OPEN_READ_ONLY` and `query_only`;
//! - an authorizer that allows reads only: no write of any kind, no ATTACH or
//!   DETACH, no transaction control, PRAGMAs from a read-only allowlist (and
//!   only without a value, except the introspection ones that take a table
//!   name), and no function with side effects (`load_extension`, `writefile`...);
//! - `sqlite3_stmt_readonly` must hold, and only one statement per query;
//! - a progress handler that aborts after the time budget (runaway CTEs), a
//!   1 MiB cap on any string or blob (`randomblob` floods), and a row cap;
//! - no single step that outlasts the budget: linear `instr`, `replace` and
//!   `trim` (`explorer_functions`) and a short LIKE/GLOB pattern, since the
//!   budget is checked between steps.

use crate::error::StoreError;
use rusqlite::hooks::{AuthAction, AuthContext, Authorization};
use rusqlite::limits::Limit;
use rusqlite::types::ValueRef;
use rusqlite::{Batch, Connection, ErrorCode};
use serde::Serialize;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Longest LIKE or GLOB pattern: matching costs up to the pattern's length
/// times the text's, in one step of the time budget.
const MAX_PATTERN_BYTES: i32 = 256;

/// Limits of the explorer.
#[derive(Clone, Debug)]
pub struct ExplorerOptions {
    /// A query is aborted after this long (default 2 s).
    pub budget: Duration,
    /// At most this many rows are returned; more is reported as `truncated` (default 1000).
    pub max_rows: usize,
    /// Largest string or blob a query may build, bytes (default 1 MiB).
    pub max_value_bytes: i32,
    /// The rows of one reply stay within this many bytes as encoded JSON
    /// (blobs as hex, text escaped; default 4 MiB): the rows that would pass
    /// it are left out and reported as `truncated`, and a first row that
    /// passes it alone refuses the query. With `max_rows` alone, 1,000 rows
    /// of 1 MiB values made a 1 GB reply; counting raw lengths before each
    /// row only, one row of 40 blobs made an 80 MB reply.
    pub max_reply_bytes: usize,
    /// SQLite's page cache for this connection, KiB (default 8 MiB).
    pub cache_kib: u32,
}

impl Default for ExplorerOptions {
    fn default() -> Self {
        ExplorerOptions {
            budget: Duration::from_secs(2),
            max_rows: 1000,
            max_value_bytes: 1 << 20,
            max_reply_bytes: 4 << 20,
            cache_kib: 8 * 1024,
        }
    }
}

/// One result column.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ColumnInfo {
    /// Its name.
    pub name: String,
    /// The declared type of the table column it comes from, if any.
    pub decl_type: Option<String>,
    /// The storage class of the first non-NULL value: integer, real, text or
    /// blob (`mixed` if rows disagree; `None` if all were NULL).
    pub observed_type: Option<String>,
}

/// A query's answer.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct QueryResult {
    /// Columns, in order.
    pub columns: Vec<ColumnInfo>,
    /// Rows as JSON values: integers and reals as numbers, text as strings,
    /// blobs as lowercase hex strings, NULL as null.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows matched than `max_rows`, or the next row would have passed `max_reply_bytes`.
    pub truncated: bool,
    /// Wall time spent.
    pub elapsed_ms: u64,
}

/// One table or view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableInfo {
    /// Name.
    pub name: String,
    /// `table` or `view`.
    pub kind: String,
    /// Its columns: name and declared type.
    pub columns: Vec<(String, String)>,
    /// The `CREATE` statement.
    pub sql: String,
}

/// PRAGMAs that only read and take a table or index name as their argument.
const PRAGMAS_WITH_ARG: &[&str] = &[
    "table_info",
    "table_xinfo",
    "index_list",
    "index_info",
    "index_xinfo",
    "foreign_key_list",
];

/// PRAGMAs allowed without a value (with one, most of them write).
const PRAGMAS_READ: &[&str] = &[
    "user_version",
    "schema_version",
    "application_id",
    "page_count",
    "page_size",
    "freelist_count",
    "encoding",
    "journal_mode",
    "table_list",
    "function_list",
    "collation_list",
    "compile_options",
    "data_version",
];

/// Functions with side effects, or that reach outside the database.
const FUNCTIONS_DENIED: &[&str] = &[
    "load_extension",
    "writefile",
    "readfile",
    "edit",
    "fts3_tokenizer",
    "sqlite_dbpage",
];

/// A read-only connection to a store for ad-hoc SQL.
pub struct Explorer {
    conn: Connection,
    opts: ExplorerOptions,
    base: Instant,
    deadline_ns: Arc<AtomicU64>,
    denied: Arc<Mutex<Option<String>>>,
}

impl std::fmt::Debug for Explorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Explorer")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

fn authorize(ctx: &AuthContext<'_>) -> Result<(), String> {
    match ctx.action {
        AuthAction::Select | AuthAction::Read { .. } | AuthAction::Recursive => Ok(()),
        AuthAction::Function { function_name } => {
            let name = function_name.to_ascii_lowercase();
            if FUNCTIONS_DENIED.contains(&name.as_str()) {
                Err(format!("function {function_name}() has side effects"))
            } else {
                Ok(())
            }
        }
        AuthAction::Pragma {
            pragma_name,
            pragma_value,
        } => {
            let name = pragma_name.to_ascii_lowercase();
            if PRAGMAS_WITH_ARG.contains(&name.as_str())
                || (PRAGMAS_READ.contains(&name.as_str()) && pragma_value.is_none())
            {
                Ok(())
            } else if pragma_value.is_some() {
                Err(format!("PRAGMA {pragma_name} with a value may write"))
            } else {
                Err(format!("PRAGMA {pragma_name} is not on the read-only list"))
            }
        }
        AuthAction::Attach { .. } => Err("ATTACH is not allowed".into()),
        AuthAction::Detach { .. } => Err("DETACH is not allowed".into()),
        AuthAction::Transaction { .. } | AuthAction::Savepoint { .. } => {
            Err("transaction control is not allowed".into())
        }
        other => Err(format!("{} is a write", action_name(&other))),
    }
}

fn action_name(a: &AuthAction<'_>) -> String {
    match a {
        AuthAction::Insert { table_name } | AuthAction::Delete { table_name }
            if table_name.starts_with("sqlite_") =>
        {
            "a schema change".into()
        }
        AuthAction::Insert { table_name } => format!("INSERT into {table_name}"),
        AuthAction::Update { table_name, .. } => format!("UPDATE of {table_name}"),
        AuthAction::Delete { table_name } => format!("DELETE from {table_name}"),
        other => {
            let debug = format!("{other:?}");
            let head = debug
                .split(|c: char| !c.is_alphanumeric())
                .next()
                .unwrap_or("statement");
            let mut out = String::new();
            for (i, c) in head.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    out.push(' ');
                }
                out.push(c.to_ascii_uppercase());
            }
            out
        }
    }
}

impl Explorer {
    /// Opens the explorer's own read-only connection to a store file.
    pub fn open(path: impl AsRef<Path>, opts: ExplorerOptions) -> Result<Explorer, StoreError> {
        let conn = crate::read_only::open(path.as_ref())?;
        conn.pragma_update(None, "query_only", 1)?;
        // Memory: a bounded page cache, sorts and temporary tables on disk.
        // Best effort here: a file that is not a database fails (with its
        // own clear error) at the first query instead.
        let _ = conn.pragma_update(None, "cache_size", -i64::from(opts.cache_kib.max(64)));
        let _ = conn.pragma_update(None, "temp_store", "FILE");
        conn.set_limit(Limit::SQLITE_LIMIT_LENGTH, opts.max_value_bytes);
        conn.set_limit(Limit::SQLITE_LIMIT_SQL_LENGTH, 100_000);
        conn.set_limit(Limit::SQLITE_LIMIT_ATTACHED, 0);
        // One call is one step of the budget's clock: no call may cost the
        // product of two long arguments (see `explorer_functions`).
        conn.set_limit(Limit::SQLITE_LIMIT_LIKE_PATTERN_LENGTH, MAX_PATTERN_BYTES);
        crate::explorer_functions::register(&conn)?;
        let base = Instant::now();
        let deadline_ns = Arc::new(AtomicU64::new(u64::MAX));
        let handler_deadline = deadline_ns.clone();
        conn.progress_handler(
            1000,
            Some(move || {
                base.elapsed().as_nanos() as u64 > handler_deadline.load(Ordering::Relaxed)
            }),
        );
        let denied = Arc::new(Mutex::new(None));
        let auth_denied = denied.clone();
        conn.authorizer(Some(move |ctx: AuthContext<'_>| match authorize(&ctx) {
            Ok(()) => Authorization::Allow,
            Err(why) => {
                if let Ok(mut slot) = auth_denied.lock() {
                    slot.get_or_insert(why);
                }
                Authorization::Deny
            }
        }));
        Ok(Explorer {
            conn,
            opts,
            base,
            deadline_ns,
            denied,
        })
    }

    fn arm(&self) {
        let deadline = self.base.elapsed() + self.opts.budget;
        self.deadline_ns
            .store(deadline.as_nanos() as u64, Ordering::Relaxed);
        if let Ok(mut slot) = self.denied.lock() {
            *slot = None;
        }
    }

    fn disarm(&self) {
        self.deadline_ns.store(u64::MAX, Ordering::Relaxed);
    }

    fn map_err(&self, e: rusqlite::Error) -> StoreError {
        let denied = self.denied.lock().ok().and_then(|mut s| s.take());
        if let Some(why) = denied {
            return StoreError::QueryRefused {
                reason: format!("{why}; the explorer only reads"),
            };
        }
        match e.sqlite_error_code() {
            Some(ErrorCode::OperationInterrupted) => StoreError::QueryTimeout {
                budget_ms: self.opts.budget.as_millis() as u64,
            },
            Some(ErrorCode::AuthorizationForStatementDenied) => StoreError::QueryRefused {
                reason: "not authorized; the explorer only reads".into(),
            },
            Some(ErrorCode::ReadOnly) => StoreError::QueryRefused {
                reason: "the explorer's connection is read-only".into(),
            },
            _ => StoreError::Query {
                detail: e.to_string(),
            },
        }
    }

    /// Runs one read-only statement.
    pub fn query(&self, sql: &str) -> Result<QueryResult, StoreError> {
        let started = Instant::now();
        self.arm();
        let result = self.run(sql, started);
        self.disarm();
        result
    }

    fn run(&self, sql: &str, started: Instant) -> Result<QueryResult, StoreError> {
        let mut batch = Batch::new(&self.conn, sql);
        let mut stmt = match batch.next() {
            Ok(Some(stmt)) => stmt,
            Ok(None) => {
                return Err(StoreError::QueryRefused {
                    reason: "the query is empty".into(),
                })
            }
            Err(e) => return Err(self.map_err(e)),
        };
        match batch.next() {
            Ok(None) => {}
            Ok(Some(_)) | Err(_) => {
                return Err(StoreError::QueryRefused {
                    reason: "one statement per query (found more after the first ';')".into(),
                })
            }
        }
        if !stmt.readonly() {
            return Err(StoreError::QueryRefused {
                reason: "the statement would write; the explorer only reads".into(),
            });
        }
        if stmt.parameter_count() > 0 {
            return Err(StoreError::QueryRefused {
                reason: "parameters (?) are not supported; write the values in the query".into(),
            });
        }
        let mut columns: Vec<ColumnInfo> = stmt
            .columns()
            .iter()
            .map(|c| ColumnInfo {
                name: c.name().to_owned(),
                decl_type: c.decl_type().map(str::to_owned),
                observed_type: None,
            })
            .collect();
        let mut rows_out = Vec::new();
        let mut truncated = false;
        // The rows' bytes as they will be encoded: `[` and `]` of the list,
        // then each row. A row's values are measured before any of them is
        // converted, so nothing is built that the reply has no room for.
        let mut bytes = 2usize;
        let mut rows = stmt.query([]).map_err(|e| self.map_err(e))?;
        while let Some(row) = rows.next().map_err(|e| self.map_err(e))? {
            if rows_out.len() == self.opts.max_rows {
                truncated = true;
                break;
            }
            // `[`, `]` and the comma before the row, then each value and its comma.
            let mut row_bytes = 3usize;
            for i in 0..columns.len() {
                let v = row.get_ref(i).map_err(|e| self.map_err(e))?;
                row_bytes += encoded_len(v) + 1;
                if bytes + row_bytes > self.opts.max_reply_bytes {
                    break;
                }
            }
            if bytes + row_bytes > self.opts.max_reply_bytes {
                if rows_out.is_empty() {
                    return Err(StoreError::QueryRefused {
                        reason: format!(
                            "the first row alone passes the reply limit of {} bytes \
                             (as JSON, blobs as hex); select fewer or shorter values \
                             (length(), substr(), hex() of a part)",
                            self.opts.max_reply_bytes
                        ),
                    });
                }
                truncated = true;
                break;
            }
            bytes += row_bytes;
            let mut out = Vec::with_capacity(columns.len());
            for (i, col) in columns.iter_mut().enumerate() {
                let v = row.get_ref(i).map_err(|e| self.map_err(e))?;
                let (json, kind) = json_of(v);
                if let Some(kind) = kind {
                    match &col.observed_type {
                        None => col.observed_type = Some(kind.into()),
                        Some(seen) if seen != kind => col.observed_type = Some("mixed".into()),
                        Some(_) => {}
                    }
                }
                out.push(json);
            }
            rows_out.push(out);
        }
        Ok(QueryResult {
            columns,
            rows: rows_out,
            truncated,
            elapsed_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Tables and views with their columns.
    pub fn schema(&self) -> Result<Vec<TableInfo>, StoreError> {
        self.arm();
        let result = self.read_schema();
        self.disarm();
        result
    }

    fn read_schema(&self) -> Result<Vec<TableInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT name, type, sql FROM sqlite_schema
                 WHERE type IN ('table', 'view') AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .map_err(|e| self.map_err(e))?;
        let tables: Vec<(String, String, String)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .and_then(|rows| rows.collect())
            .map_err(|e| self.map_err(e))?;
        let mut out = Vec::new();
        for (name, kind, sql) in tables {
            let mut cols = self
                .conn
                .prepare("SELECT name, type FROM pragma_table_info(?1)")
                .map_err(|e| self.map_err(e))?;
            let columns = cols
                .query_map([&name], |r| Ok((r.get(0)?, r.get(1)?)))
                .and_then(|rows| rows.collect())
                .map_err(|e| self.map_err(e))?;
            out.push(TableInfo {
                name,
                kind,
                columns,
                sql,
            });
        }
        Ok(out)
    }

    /// The file's schema version (`PRAGMA user_version`): a tool that reads the log's columns
    /// by name says an older store is older, instead of failing on a column it lacks (h33 F3).
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        Ok(self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Names of the tables and views.
    pub fn tables(&self) -> Result<Vec<String>, StoreError> {
        Ok(self.schema()?.into_iter().map(|t| t.name).collect())
    }
}

/// The bytes a value takes in the JSON reply, as serde_json writes it:
/// blobs as quoted hex (two characters a byte), text quoted with `"` and `\\`
/// escaped, `\n`-style escapes for five control characters and `\u00XX` for
/// the others, and invalid UTF-8 as U+FFFD (three bytes); numbers at most 24.
fn encoded_len(v: ValueRef<'_>) -> usize {
    match v {
        ValueRef::Null => 4,
        ValueRef::Integer(_) | ValueRef::Real(_) => 24,
        ValueRef::Blob(b) => 2 * b.len() + 2,
        ValueRef::Text(t) => {
            let text = String::from_utf8_lossy(t);
            let escaped: usize = text
                .bytes()
                .map(|b| match b {
                    b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
                    0..=0x1f => 6,
                    _ => 1,
                })
                .sum();
            escaped + 2
        }
    }
}

fn json_of(v: ValueRef<'_>) -> (serde_json::Value, Option<&'static str>) {
    match v {
        ValueRef::Null => (serde_json::Value::Null, None),
        ValueRef::Integer(i) => (i.into(), Some("integer")),
        ValueRef::Real(f) => (
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
            Some("real"),
        ),
        ValueRef::Text(t) => (String::from_utf8_lossy(t).into_owned().into(), Some("text")),
        ValueRef::Blob(b) => {
            let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
            (hex.into(), Some("blob"))
        }
    }
}
