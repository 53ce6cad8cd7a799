//! A checksum per input log row, written with the row and checked wherever
//! the row is read back (replay on open, `Export`, `swarm export`).
//!
//! Replay compares each input's recomputed outputs with the outbox, which
//! catches most damage, but not a changed byte that still parses and gives
//! the same outputs: an enqueue's atom renamed by one flipped bit enqueued
//! another package without a word (a bit-flip audit: 1 of 12 flips). The
//! page checks SQLite makes (`cell_size_check`, `quick_check`) see page
//! structure, not a cell's contents. So each row carries a CRC-32 of its
//! seq, time and text, and a row that no longer matches it is refused as
//! damaged, naming its seq.
//!
//! The migration that added the column checksummed the rows already logged
//! (a change made before it cannot be told). A row without one is read as
//! before only ahead of the first seq with one (`meta.crc_from`, set by that
//! migration, or the log's first checksummed row): from there on it lost its
//! checksum (one flipped bit turns the cell's type into NULL).

use crate::error::StoreError;
use rusqlite::types::ValueRef;

/// The `meta` key of the first seq written with a checksum.
pub const CRC_FROM: &str = "crc_from";

/// The checksum stored with a row (as an integer cell).
pub fn of(seq: u64, at_ms: u64, input: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&at_ms.to_le_bytes());
    h.update(input.as_bytes());
    h.finalize()
}

/// The first seq written with a checksum: `meta.crc_from`, or the lowest
/// row that has one, whichever is lower. The log says it too, so a
/// `crc_from` missing (a store written before migration 6 set it) or
/// damaged does not turn the NULL check off (`u64::MAX`, no check, only
/// when neither says anything).
pub fn crc_from(meta: Option<&str>, first_checksummed: Option<i64>) -> u64 {
    let meta = meta.and_then(|v| v.parse().ok()).unwrap_or(u64::MAX);
    let logged = first_checksummed.map_or(u64::MAX, |s| s.max(0) as u64);
    meta.min(logged)
}

/// The lowest seq with a checksum, for [`crc_from`].
pub const FIRST_CHECKSUMMED: &str = "SELECT min(seq) FROM input_log WHERE crc IS NOT NULL";

/// A log row's time and input text as SQLite stored its cells, once the
/// row matches its checksum; or the reason the row is damaged, naming its
/// seq. What every reader of the log calls before parsing the input.
pub fn checked<'r>(
    seq: u64,
    at_ms: ValueRef<'_>,
    input: ValueRef<'r>,
    crc: ValueRef<'_>,
    crc_from: u64,
) -> Result<(u64, &'r str), StoreError> {
    let at = time(seq, at_ms)?;
    let (text, stored) = cells(seq, input, crc, crc_from)?;
    check_log_row(seq, at, text, stored)?;
    Ok((at, text))
}

/// A row's input text and stored checksum as SQLite gives them, or the
/// reason the row is damaged: a cell of another type than its column's is
/// a changed byte too (SQLite keeps each cell's type in the row's header).
fn cells<'r>(
    seq: u64,
    input: ValueRef<'r>,
    crc: ValueRef<'_>,
    crc_from: u64,
) -> Result<(&'r str, Option<i64>), StoreError> {
    let damaged = |detail: String| StoreError::BadLogRecord { seq, detail };
    let text = match input {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map_err(|e| damaged(format!("its input is not valid UTF-8 text ({e})")))?,
        other => return Err(damaged(format!("its input is {}, not text", kind(other)))),
    };
    let stored = match crc {
        ValueRef::Integer(n) => Some(n),
        ValueRef::Null if seq >= crc_from => {
            return Err(damaged(format!(
                "its checksum is missing, though every row from seq {crc_from} on was written \
                 with one"
            )))
        }
        ValueRef::Null => None,
        other => {
            return Err(damaged(format!(
                "its checksum is {}, not an integer",
                kind(other)
            )))
        }
    };
    Ok((text, stored))
}

/// A row's time as stored, or the reason the row is damaged.
fn time(seq: u64, at_ms: ValueRef<'_>) -> Result<u64, StoreError> {
    match at_ms {
        ValueRef::Integer(n) if n >= 0 => Ok(n as u64),
        other => Err(StoreError::BadLogRecord {
            seq,
            detail: format!(
                "its time is {}, not a count of milliseconds",
                match other {
                    ValueRef::Integer(_) => "negative",
                    other => kind(other),
                }
            ),
        }),
    }
}

fn kind(v: ValueRef<'_>) -> &'static str {
    match v {
        ValueRef::Null => "NULL",
        ValueRef::Integer(_) => "an integer",
        ValueRef::Real(_) => "a real number",
        ValueRef::Text(_) => "text",
        ValueRef::Blob(_) => "a blob",
    }
}

/// Checks a row read back against its stored checksum (`None`: a row from
/// before checksums, taken as it is).
fn check_log_row(seq: u64, at_ms: u64, input: &str, stored: Option<i64>) -> Result<(), StoreError> {
    let Some(stored) = stored else {
        return Ok(());
    };
    let computed = of(seq, at_ms, input);
    if stored == i64::from(computed) {
        return Ok(());
    }
    // The row's start says which row it is to someone reading the file.
    let shown: String = input.chars().take(120).collect();
    let more = if shown.len() < input.len() { "…" } else { "" };
    Err(StoreError::BadLogRecord {
        seq,
        detail: format!(
            "the row (time {at_ms}, input {shown}{more}) no longer matches the checksum written \
             with it ({stored:#x}, now {computed:#x}): a byte of it changed after it was written"
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::{cells, check_log_row, of};
    use rusqlite::types::ValueRef;

    #[test]
    fn any_changed_field_or_byte_is_refused_and_old_rows_pass() {
        let text = r#"{"type":"enqueue","atoms":["dev-libs/a-1"]}"#;
        let crc = Some(i64::from(of(7, 1_000, text)));
        assert!(check_log_row(7, 1_000, text, crc).is_ok());
        assert!(check_log_row(8, 1_000, text, crc).is_err(), "seq");
        assert!(check_log_row(7, 1_001, text, crc).is_err(), "time");
        let flipped = text.replace("a-1", "c-1");
        let e = check_log_row(7, 1_000, &flipped, crc).expect_err("one bit of the atom");
        let msg = e.to_string();
        assert!(
            msg.contains("seq 7") && msg.contains("dev-libs/c-1"),
            "{msg}"
        );
        assert!(msg.contains("restore it from a backup"), "{msg}");
        assert!(
            check_log_row(7, 1_000, &flipped, None).is_ok(),
            "no checksum"
        );
    }

    #[test]
    fn a_cell_of_another_type_or_a_lost_checksum_is_damage_named_by_seq() {
        let text = ValueRef::Text(b"{}");
        assert_eq!(
            cells(9, text, ValueRef::Integer(5), 3).expect("whole"),
            ("{}", Some(5))
        );
        assert_eq!(
            cells(2, text, ValueRef::Null, 3).expect("older"),
            ("{}", None)
        );
        for (input, crc, says) in [
            (text, ValueRef::Null, "checksum is missing"),
            (text, ValueRef::Blob(b"\0\0\0\x05"), "checksum is a blob"),
            (text, ValueRef::Real(5.0), "checksum is a real number"),
            (text, ValueRef::Text(b"5"), "checksum is text"),
            (
                ValueRef::Blob(b"{}"),
                ValueRef::Integer(5),
                "input is a blob",
            ),
            (
                ValueRef::Text(b"{\xff}"),
                ValueRef::Integer(5),
                "not valid UTF-8",
            ),
        ] {
            let e = cells(9, input, crc, 3).expect_err(says);
            let msg = e.to_string();
            assert!(msg.contains("seq 9 ") && msg.contains(says), "{msg}");
            assert!(msg.contains("restore it from a backup"), "{msg}");
        }
    }
}
