//! `swarm export`: the input log as envelopes, one JSON object per line — the
//! format `swarm sim` writes and `swarm replay` reads, so production history
//! can be replayed with every check.
//!
//! Compaction deletes log rows behind the oldest kept snapshot; asking for
//! older inputs is `StoreError::ExportTooOld`, never a silently shorter log.

use crate::error::StoreError;
use crate::log_crc;
use crate::recover::{compacted_through, crc_from, parse_input, NEWEST_WRITER};
use crate::schema::meta_get;
use rusqlite::Connection;
use std::collections::VecDeque;
use std::io::Write;
use swarm_core::{Envelope, Seq, Timestamp};

const PAGE: i64 = 1000;

/// The envelopes after a seq, read a page at a time.
pub struct Export<'c> {
    conn: &'c Connection,
    after: u64,
    /// `meta.newest_writer` (see `recover::parse_input`).
    newest_writer: Option<String>,
    /// `meta.crc_from` (see `log_crc`).
    crc_from: u64,
    buf: VecDeque<Envelope>,
    done: bool,
}

impl std::fmt::Debug for Export<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Export")
            .field("after", &self.after)
            .finish_non_exhaustive()
    }
}

impl<'c> Export<'c> {
    pub(crate) fn new(conn: &'c Connection, since: u64) -> Result<Export<'c>, StoreError> {
        let horizon = compacted_through(conn)?;
        if since < horizon {
            return Err(StoreError::ExportTooOld {
                requested: since,
                oldest_available: horizon,
            });
        }
        Ok(Export {
            conn,
            after: since,
            newest_writer: meta_get(conn, NEWEST_WRITER)?,
            crc_from: crc_from(conn)?,
            buf: VecDeque::new(),
            done: false,
        })
    }

    fn fill(&mut self) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, at_ms, input, crc FROM input_log WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let mut rows = stmt.query([self.after as i64, PAGE])?;
        let mut n = 0;
        while let Some(row) = rows.next()? {
            let seq = row.get::<_, i64>(0)? as u64;
            let (at, text) = log_crc::checked(
                seq,
                row.get_ref(1)?,
                row.get_ref(2)?,
                row.get_ref(3)?,
                self.crc_from,
            )?;
            let at = Timestamp(at);
            let input = parse_input(seq, text, self.newest_writer.as_deref())?;
            self.buf.push_back(Envelope {
                seq: Seq(seq),
                at,
                input,
            });
            self.after = seq;
            n += 1;
        }
        self.done = n < PAGE;
        Ok(())
    }

    /// Writes every remaining envelope as JSON lines; returns how many.
    pub fn write_jsonl(self, mut out: impl Write) -> Result<u64, StoreError> {
        let mut n = 0;
        for env in self {
            let env = env?;
            serde_json::to_writer(&mut out, &env)?;
            out.write_all(b"\n").map_err(|source| StoreError::Io {
                path: "export output".into(),
                source,
            })?;
            n += 1;
        }
        Ok(n)
    }
}

impl Iterator for Export<'_> {
    type Item = Result<Envelope, StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.buf.pop_front().map(Ok)
    }
}
