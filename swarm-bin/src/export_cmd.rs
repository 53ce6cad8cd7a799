//! `swarm export`: a store's input log as envelopes (JSON lines), the format
//! `swarm sim --write-log` writes and `swarm replay` reads.
//!
//! The log is read through swarm-store's read-only explorer connection, page
//! by page in seq order: export never takes the writer lock, never appends
//! (no `Recovered`), and works while `swarm serve` runs. Each page is its own
//! read transaction, so the seqs are checked to be contiguous: if compaction
//! removed rows mid-export, the export fails instead of leaving a gap.

use crate::sql_cmd::StoreLocation;
use anyhow::{bail, Context};
use rusqlite::types::ValueRef;
use serde_json::Value;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;
use swarm_core::{Envelope, Seq, Timestamp};
use swarm_store::{ExplorerOptions, StoreError};

/// Rows read per query.
const PAGE: usize = 10_000;
/// A progress line on stderr every this many envelopes.
const PROGRESS_EVERY: u64 = 100_000;

#[derive(clap::Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    store: StoreLocation,
    /// Export the inputs after this seq (exclusive); 0 exports the whole log.
    /// Inputs compacted into a snapshot can no longer be exported.
    #[arg(long, value_name = "SEQ", default_value_t = 0)]
    since: u64,
    /// Write the log to this file instead of stdout (written to FILE.partial,
    /// then renamed, so a failed export never leaves a log that looks complete).
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

/// One logged input, checked and parsed the way the store does on recovery.
/// The row comes as (seq, at_ms, hex of the input's bytes, crc, and the
/// SQLite types of at_ms, input and crc): the cells exactly as stored, so a
/// changed type or a byte that is not UTF-8 is refused as the store refuses
/// it, not read past by the explorer's lossy text.
fn parse_row(row: &[Value], crc_from: u64) -> Result<Envelope, anyhow::Error> {
    let cell = |i: usize| row.get(i).and_then(Value::as_str);
    let (Some(seq), Some(hex_input), Some(at_type), Some(input_type), Some(crc_type)) = (
        row.first().and_then(Value::as_u64),
        cell(2),
        cell(4),
        cell(5),
        cell(6),
    ) else {
        bail!("input_log row {row:?} is not (seq, at_ms, input, crc)");
    };
    let bytes = hex::decode(hex_input).context("the explorer's hex() of an input")?;
    let integer = |i: usize| row.get(i).and_then(Value::as_i64).unwrap_or(0);
    let (at, text) = swarm_store::log_crc::checked(
        seq,
        stored_as(at_type, &[], integer(1)),
        stored_as(input_type, &bytes, 0),
        stored_as(crc_type, &[], integer(3)),
        crc_from,
    )?;
    Ok(Envelope {
        seq: Seq(seq),
        at: Timestamp(at),
        input: swarm_store::parse_logged_input(seq, text, None)?,
    })
}

/// A cell as SQLite stored it, from its `typeof()` and its value.
fn stored_as<'a>(sqlite_type: &str, bytes: &'a [u8], integer: i64) -> ValueRef<'a> {
    match sqlite_type {
        "null" => ValueRef::Null,
        "integer" => ValueRef::Integer(integer),
        "real" => ValueRef::Real(integer as f64),
        "text" => ValueRef::Text(bytes),
        _ => ValueRef::Blob(bytes),
    }
}

/// The first seq written with a checksum (see `swarm_store::log_crc::crc_from`).
fn crc_from(explorer: &swarm_store::Explorer) -> anyhow::Result<u64> {
    let first = |sql: &str| -> anyhow::Result<Option<Value>> {
        let r = explorer
            .query(sql)
            .context("reading where the checksummed log starts")?;
        Ok(r.rows.first().and_then(|row| row.first()).cloned())
    };
    let meta = first("SELECT value FROM meta WHERE key = 'crc_from'")?.and_then(|v| match v {
        Value::String(s) => Some(s),
        other => other.as_u64().map(|n| n.to_string()),
    });
    let logged = first(swarm_store::log_crc::FIRST_CHECKSUMMED)?.and_then(|v| v.as_i64());
    Ok(swarm_store::log_crc::crc_from(meta.as_deref(), logged))
}

fn compacted_through(explorer: &swarm_store::Explorer) -> anyhow::Result<u64> {
    let r = explorer
        .query("SELECT value FROM meta WHERE key = 'compacted_through'")
        .context("reading the log horizon from meta")?;
    Ok(r.rows
        .first()
        .and_then(|row| row.first())
        .and_then(|v| match v {
            Value::String(s) => s.parse().ok(),
            other => other.as_u64(),
        })
        .unwrap_or(0))
}

/// Writes the envelopes after `since` to `out`; returns (count, last seq).
fn export(
    explorer: &swarm_store::Explorer,
    since: u64,
    out: &mut dyn Write,
    dest: &str,
) -> anyhow::Result<(u64, u64)> {
    let horizon = compacted_through(explorer)?;
    if since < horizon {
        return Err(StoreError::ExportTooOld {
            requested: since,
            oldest_available: horizon,
        }
        .into());
    }
    let crc_from = crc_from(explorer)?;
    let mut after = since;
    let mut n = 0u64;
    loop {
        let sql = format!(
            "SELECT seq, at_ms, hex(input), crc, typeof(at_ms), typeof(input), typeof(crc) \
             FROM input_log WHERE seq > {after} ORDER BY seq LIMIT {PAGE}"
        );
        let page = explorer.query(&sql).with_context(|| {
            format!(
                "reading the input log after seq {after} (if the file is damaged, stop \
                     swarm and restore swarm.db* from a backup; `swarm serve` checks the file \
                     at start and says what it found)"
            )
        })?;
        for row in &page.rows {
            let env = parse_row(row, crc_from)?;
            if env.seq.0 != after + 1 {
                let horizon = compacted_through(explorer).unwrap_or(0);
                bail!(
                    "the input log jumps from seq {after} to seq {}: it was compacted while \
                     exporting (now compacted through seq {horizon}); run the export again \
                     with --since {horizon} or later",
                    env.seq
                );
            }
            serde_json::to_writer(&mut *out, &env)
                .map_err(std::io::Error::from)
                .and_then(|()| out.write_all(b"\n"))
                .with_context(|| format!("writing the log to {dest} (at seq {})", env.seq))?;
            after = env.seq.0;
            n += 1;
            if n % PROGRESS_EVERY == 0 {
                eprintln!("exported {n} inputs (through seq {after})");
            }
        }
        if page.rows.len() < PAGE {
            break;
        }
    }
    out.flush()
        .with_context(|| format!("writing the log to {dest}"))?;
    Ok((n, after))
}

fn partial_path(out: &Path) -> PathBuf {
    let mut s = out.as_os_str().to_owned();
    s.push(".partial");
    PathBuf::from(s)
}

pub(crate) fn run(args: ExportArgs) -> anyhow::Result<()> {
    let explorer = args.store.open_explorer(ExplorerOptions {
        // One page of an index range scan; generous so a busy disk is not a failure.
        budget: Duration::from_secs(120),
        max_rows: PAGE + 1,
        // One logged input may be a large Enqueue: no 1 MiB cap here.
        max_value_bytes: i32::MAX,
        // A page of the log is read whole; its size is bounded by PAGE rows.
        max_reply_bytes: usize::MAX,
        ..ExplorerOptions::default()
    })?;
    match explorer.schema_version()? {
        v if v < swarm_store::SCHEMA_VERSION => anyhow::bail!(
            "the store has schema version {v}, older than this swarm's {}: export it with the \
             swarm that wrote it, or start `swarm serve` on its data dir once (that upgrades the \
             store, after which older swarm builds refuse it) and stop it with SIGTERM",
            swarm_store::SCHEMA_VERSION
        ),
        v if v > swarm_store::SCHEMA_VERSION => anyhow::bail!(
            "the store has schema version {v} but this swarm understands at most {}: export it \
             with the newer swarm that wrote it",
            swarm_store::SCHEMA_VERSION
        ),
        _ => {}
    }
    let (n, last) = match &args.out {
        None => {
            let stdout = std::io::stdout();
            let mut w = BufWriter::new(stdout.lock());
            export(&explorer, args.since, &mut w, "stdout")?
        }
        Some(path) => {
            let tmp = partial_path(path);
            let file = std::fs::File::create(&tmp)
                .with_context(|| format!("creating {}", tmp.display()))?;
            let mut w = BufWriter::new(file);
            let dest = tmp.display().to_string();
            let done = export(&explorer, args.since, &mut w, &dest).inspect_err(|_| {
                let _ = std::fs::remove_file(&tmp);
            })?;
            let file = w
                .into_inner()
                .map_err(|e| e.into_error())
                .with_context(|| format!("writing {dest}"))?;
            file.sync_all().with_context(|| format!("syncing {dest}"))?;
            std::fs::rename(&tmp, path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            done
        }
    };
    let to = args
        .out
        .as_ref()
        .map_or_else(|| "stdout".to_owned(), |p| p.display().to_string());
    if n == 0 {
        eprintln!(
            "exported 0 inputs: the log holds nothing after seq {}",
            args.since
        );
    } else {
        eprintln!(
            "exported {n} inputs (seq {}..={last}) from {} to {to}",
            args.since + 1,
            args.store.path().display()
        );
    }
    Ok(())
}
