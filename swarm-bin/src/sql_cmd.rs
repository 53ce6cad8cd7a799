//! `swarm sql`: ad-hoc read-only SQL over a store, through swarm-store's
//! explorer (a separate read-only connection; SQLite itself refuses writes).
//!
//! Without `--db` or `--data-dir` it asks a running server instead
//! (`GET /api/v1/sql/*` with the admin token) and prints the same way.
//!
//! Also home of [`StoreLocation`], the `--db FILE | --data-dir DIR` pair that
//! every command reading a store shares.

use crate::cli::conn::{admin_error, AdminArgs};
use anyhow::Context;
use clap::builder::TypedValueParser as _;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_net::client::admin::SqlAnswer;
use swarm_store::{
    ColumnInfo, Explorer, ExplorerOptions, QueryResult, StoreError, TableInfo, SCHEMA_VERSION,
};

/// `PRAGMA application_id` of a swarm store ("SWRM"); swarm-store keeps its own
/// copy private, so it is repeated here to refuse foreign SQLite files early.
const STORE_APPLICATION_ID: i64 = 0x5357_524d;

/// The file name of the store inside a data directory.
pub(crate) const DB_FILE_NAME: &str = "swarm.db";

/// Which store to read: a database file, or a data directory holding `swarm.db`.
#[derive(clap::Args, Clone, Debug)]
#[group(required = true, multiple = false)]
pub(crate) struct StoreLocation {
    /// The store's database file.
    #[arg(long, value_name = "FILE")]
    db: Option<PathBuf>,
    /// A data directory holding the store as `swarm.db` (the layout `swarm serve` uses).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
}

impl StoreLocation {
    /// The database file this names.
    pub(crate) fn path(&self) -> PathBuf {
        match (&self.db, &self.data_dir) {
            (Some(db), _) => db.clone(),
            (None, Some(dir)) => dir.join(DB_FILE_NAME),
            // clap's group makes one of them required.
            (None, None) => PathBuf::from(DB_FILE_NAME),
        }
    }

    /// Opens swarm-store's read-only explorer on the store, refusing a missing
    /// file, a SQLite file that is not a swarm store, and a newer schema. Never
    /// creates, locks or writes the database.
    pub(crate) fn open_explorer(&self, opts: ExplorerOptions) -> anyhow::Result<Explorer> {
        let path = self.path();
        check_exists(&path, self.data_dir.as_deref())?;
        let explorer = Explorer::open(&path, opts)
            .with_context(|| format!("opening the store {} read-only", path.display()))?;
        check_is_store(&explorer, &path)?;
        Ok(explorer)
    }
}

fn check_exists(path: &Path, data_dir: Option<&Path>) -> anyhow::Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => anyhow::bail!(
            "{} is not a file; --db takes the database file (use --data-dir for a directory \
             holding {DB_FILE_NAME})",
            path.display()
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => match data_dir {
            Some(dir) => anyhow::bail!(
                "no store in {}: {} does not exist (is this the server's data directory?)",
                dir.display(),
                path.display()
            ),
            None => anyhow::bail!("no store at {}: the file does not exist", path.display()),
        },
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn single_integer(explorer: &Explorer, sql: &str) -> anyhow::Result<i64> {
    let r = explorer
        .query(sql)
        .with_context(|| format!("reading `{sql}`"))?;
    r.rows
        .first()
        .and_then(|row| row.first())
        .and_then(Value::as_i64)
        .with_context(|| format!("`{sql}` gave no integer"))
}

fn check_is_store(explorer: &Explorer, path: &Path) -> anyhow::Result<()> {
    // Both reads go through the explorer's guards (an empty or damaged file
    // fails here with SQLite's own message).
    let app = single_integer(explorer, "PRAGMA application_id")
        .with_context(|| format!("{} is not a readable SQLite database", path.display()))?;
    if app != STORE_APPLICATION_ID {
        return Err(StoreError::NotAStore {
            path: path.to_owned(),
            application_id: app,
        }
        .into());
    }
    let version = single_integer(explorer, "PRAGMA user_version")?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::NewerSchema {
            found: version,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    Ok(())
}

#[derive(clap::Args)]
pub(crate) struct SqlArgs {
    /// The store's database file, read directly (no server needed).
    #[arg(long, value_name = "FILE", conflicts_with_all = ["data_dir", "server"])]
    db: Option<PathBuf>,
    // `--data-dir DIR` (in `remote`): read DIR/swarm.db directly. Without
    // --db or --data-dir, the query goes to the server
    // (`GET /api/v1/sql/query`, admin token).
    #[command(flatten)]
    remote: AdminArgs,
    /// One read-only statement, e.g. "SELECT status, count(*) FROM packages GROUP BY status".
    /// Writes, ATTACH, PRAGMA writes and multiple statements are refused by SQLite itself.
    #[arg(
        value_name = "QUERY",
        required_unless_present_any = ["tables", "schema"],
        conflicts_with_all = ["tables", "schema"]
    )]
    query: Option<String>,
    /// List the tables and views, and exit.
    #[arg(long, conflicts_with = "schema")]
    tables: bool,
    /// Show every table's columns with their declared types, and its CREATE statement.
    #[arg(long)]
    schema: bool,
    /// Print JSON: {"columns":[...],"types":[...],"rows":[...],"truncated":bool}.
    #[arg(long)]
    json: bool,
    /// Return at most this many rows (1 to 1000000); a longer answer is marked as truncated.
    #[arg(
        long,
        value_name = "N",
        default_value_t = ExplorerOptions::default().max_rows,
        value_parser = clap::value_parser!(u32).range(1..=1_000_000).map(|n| n as usize)
    )]
    max_rows: usize,
    /// Abort the query after this many milliseconds (1 to 600000: a query that runs for more
    /// than ten minutes holds its read snapshot, and the WAL cannot be checkpointed behind it).
    /// Asking a server (no --db), at most 2000: its explorer's budget; more is refused.
    #[arg(
        long,
        value_name = "N",
        default_value_t = ExplorerOptions::default().budget.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=600_000)
    )]
    timeout_ms: u64,
}

pub(crate) fn run(args: SqlArgs) -> anyhow::Result<()> {
    if args.db.is_none() && args.remote.data_dir.is_none() {
        return run_remote(args);
    }
    let store = StoreLocation {
        db: args.db.clone(),
        data_dir: args.remote.data_dir.clone(),
    };
    let opts = ExplorerOptions {
        budget: Duration::from_millis(args.timeout_ms),
        max_rows: args.max_rows,
        ..ExplorerOptions::default()
    };
    let explorer = store.open_explorer(opts)?;
    if args.tables || args.schema {
        let tables = explorer
            .schema()
            .with_context(|| format!("reading the schema of {}", store.path().display()))?;
        if args.tables {
            print_tables(&tables, args.json)?;
        } else {
            print_schema(&tables, args.json)?;
        }
        return Ok(());
    }
    let Some(query) = args.query else {
        anyhow::bail!("give a QUERY, --tables or --schema");
    };
    // The explorer's message says what was refused and why; no wrapping needed.
    let result = explorer.query(&query)?;
    if args.json {
        emit(&(serde_json::to_string(&result_json(&result))? + "\n"))
    } else {
        emit(&render_table(&result, args.max_rows))
    }
}

/// Server mode: the same query, tables or schema, asked of `swarm serve`
/// through its admin SQL endpoints, printed the same way as file mode.
fn run_remote(args: SqlArgs) -> anyhow::Result<()> {
    let url = args.remote.server.url();
    let c = args.remote.client().with_context(|| {
        format!(
            "no --db or --data-dir given, so the query would go to the server at {url}, \
             which needs the admin token"
        )
    })?;
    let ask = |e: swarm_net::client::ClientError| {
        let unreachable = e.is_transport();
        let err = admin_error(e, &c.token_source);
        if unreachable {
            err.context(format!(
                "no --db or --data-dir given, so the query went to the server at {url}, \
                 which did not answer (to read a store file directly, pass --db FILE or \
                 --data-dir DIR)"
            ))
        } else {
            err
        }
    };
    if args.tables || args.schema {
        let answer = if args.tables {
            c.client.sql_tables()
        } else {
            c.client.sql_schema()
        }
        .map_err(ask)?;
        if answer.get("columns").is_some() && answer.get("rows").is_some() {
            let result = query_result(serde_json::from_value(answer)?, args.max_rows);
            return print_result(&result, args.json, args.max_rows);
        }
        let tables = remote_tables(&answer)?;
        return if args.tables {
            print_tables(&tables, args.json)
        } else {
            print_schema(&tables, args.json)
        };
    }
    let Some(query) = args.query.as_deref() else {
        anyhow::bail!("give a QUERY, --tables or --schema");
    };
    let answer = c.client.sql_query(query, args.timeout_ms).map_err(ask)?;
    let result = query_result(answer.body, args.max_rows);
    print_result(&result, args.json, args.max_rows)
}

fn print_result(result: &QueryResult, json: bool, max_rows: usize) -> anyhow::Result<()> {
    if json {
        emit(&(serde_json::to_string(&result_json(result))? + "\n"))
    } else {
        emit(&render_table(result, max_rows))
    }
}

/// The server's answer as the explorer's, cut to `max_rows` here too so
/// --max-rows means the same in both modes.
fn query_result(answer: SqlAnswer, max_rows: usize) -> QueryResult {
    let mut rows = answer.rows;
    let truncated = answer.truncated || rows.len() > max_rows;
    rows.truncate(max_rows);
    QueryResult {
        columns: answer
            .columns
            .into_iter()
            .map(|c| ColumnInfo {
                name: c.name,
                decl_type: c.decl_type,
                observed_type: c.observed_type,
            })
            .collect(),
        rows,
        truncated,
        elapsed_ms: answer.elapsed_ms,
    }
}

/// Tables as the server lists them: names, or objects shaped like
/// [`TableInfo`] (columns as `[name, type]` pairs or `{name, type}` objects),
/// bare or under a `tables` key.
fn remote_tables(answer: &Value) -> anyhow::Result<Vec<TableInfo>> {
    let list = answer
        .get("tables")
        .unwrap_or(answer)
        .as_array()
        .context("the server's table list is not a JSON list")?;
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or("").to_owned();
    list.iter()
        .map(|t| match t {
            Value::String(name) => Ok(TableInfo {
                name: name.clone(),
                kind: "table".to_owned(),
                columns: Vec::new(),
                sql: String::new(),
            }),
            Value::Object(o) => Ok(TableInfo {
                name: text(o.get("name")),
                kind: o
                    .get("kind")
                    .or_else(|| o.get("type"))
                    .and_then(Value::as_str)
                    .unwrap_or("table")
                    .to_owned(),
                columns: o
                    .get("columns")
                    .and_then(Value::as_array)
                    .map(|cols| {
                        cols.iter()
                            .map(|c| match c {
                                Value::Array(pair) => (text(pair.first()), text(pair.get(1))),
                                other => (
                                    text(other.get("name")),
                                    text(other.get("type").or_else(|| other.get("decl_type"))),
                                ),
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
                sql: text(o.get("sql")),
            }),
            other => anyhow::bail!("unexpected entry in the server's table list: {other}"),
        })
        .collect()
}

fn print_tables(tables: &[TableInfo], json: bool) -> anyhow::Result<()> {
    if json {
        let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
        return emit(&(serde_json::to_string(&names)? + "\n"));
    }
    let mut out = String::new();
    for t in tables {
        if t.kind == "table" {
            writeln!(out, "{}", t.name)?;
        } else {
            writeln!(out, "{} ({})", t.name, t.kind)?;
        }
    }
    emit(&out)
}

fn print_schema(tables: &[TableInfo], json: bool) -> anyhow::Result<()> {
    if json {
        return emit(&(serde_json::to_string(tables)? + "\n"));
    }
    let mut out = String::new();
    for (i, t) in tables.iter().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{} ({})", t.name, t.kind)?;
        let width = t.columns.iter().map(|(n, _)| n.len()).max().unwrap_or(0);
        for (name, ty) in &t.columns {
            writeln!(out, "  {name:width$}  {ty}")?;
        }
    }
    emit(&out)
}

/// The `--json` shape, in this key order.
#[derive(serde::Serialize)]
struct JsonAnswer<'a> {
    /// Column names.
    columns: Vec<&'a str>,
    /// Each column's declared type (lowercase), else the storage class seen, else null.
    types: Vec<Option<String>>,
    rows: &'a [Vec<Value>],
    truncated: bool,
}

fn result_json(r: &QueryResult) -> JsonAnswer<'_> {
    JsonAnswer {
        columns: r.columns.iter().map(|c| c.name.as_str()).collect(),
        types: r
            .columns
            .iter()
            .map(|c| {
                c.decl_type
                    .as_deref()
                    .map(str::to_ascii_lowercase)
                    .or_else(|| c.observed_type.clone())
            })
            .collect(),
        rows: &r.rows,
        truncated: r.truncated,
    }
}

/// Writes to stdout; a reader that went away (`swarm sql ... | head`) ends
/// the output quietly instead of panicking like `println!`.
fn emit(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing to stdout"),
    }
}

/// Cells longer than this are shortened in the text table (`--json` prints them whole).
const MAX_CELL_CHARS: usize = 80;

fn cell(v: &Value) -> String {
    let s = match v {
        Value::Null => "NULL".to_owned(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let s: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if s.chars().count() > MAX_CELL_CHARS {
        let mut short: String = s.chars().take(MAX_CELL_CHARS - 1).collect();
        short.push('…');
        short
    } else {
        s
    }
}

/// An aligned text table: header, rule, rows (numbers right-aligned), then a
/// row count and the truncation note.
fn render_table(r: &QueryResult, max_rows: usize) -> String {
    let header: Vec<String> = r.columns.iter().map(|c| c.name.clone()).collect();
    let cells: Vec<Vec<(String, bool)>> = r
        .rows
        .iter()
        .map(|row| row.iter().map(|v| (cell(v), v.is_number())).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, (c, _)) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |parts: Vec<String>| parts.join("  ").trim_end().to_owned() + "\n";
    out += &line(
        header
            .iter()
            .zip(&widths)
            .map(|(h, w)| format!("{h:w$}"))
            .collect(),
    );
    out += &line(widths.iter().map(|w| "-".repeat(*w)).collect());
    for row in &cells {
        out += &line(
            row.iter()
                .zip(&widths)
                .map(|((c, numeric), w)| {
                    if *numeric {
                        format!("{c:>w$}")
                    } else {
                        format!("{c:w$}")
                    }
                })
                .collect(),
        );
    }
    let n = r.rows.len();
    out += &format!("({n} row{})\n", if n == 1 { "" } else { "s" });
    if r.truncated && n < max_rows {
        // Fewer rows than asked for: the explorer's reply limit cut it.
        let limit_mib = swarm_store::ExplorerOptions::default().max_reply_bytes >> 20;
        out += &format!(
            "(truncated at {n} row{}: the next row would pass the {limit_mib} MiB reply limit; \
             select fewer or shorter columns, or narrow the query with WHERE/LIMIT)\n",
            if n == 1 { "" } else { "s" }
        );
    } else if r.truncated {
        out += &format!(
            "(truncated at {max_rows} rows; raise --max-rows or narrow the query with WHERE/LIMIT)\n"
        );
    }
    out
}
