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
//! Rows written before the column existed (schema 5 and older) have none and
//! are read as before.

use crate::error::StoreError;

/// The checksum stored with a row.
pub(crate) fn of(seq: u64, at_ms: u64, input: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(&at_ms.to_le_bytes());
    h.update(input.as_bytes());
    h.finalize()
}

/// Checks a row read back against its stored checksum (`None`: a row from
/// before checksums, taken as it is).
pub fn check_log_row(
    seq: u64,
    at_ms: u64,
    input: &str,
    stored: Option<i64>,
) -> Result<(), StoreError> {
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
    use super::{check_log_row, of};

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
}
