//! Rebuilding the core from the file: the only way a `Store` ever gets its
//! state, on open and after any failed write (crash-only).
//!
//! The newest snapshot whose digest verifies is restored, then the log tail is
//! replayed and every recomputed output is compared with the outbox row written
//! when the input was first accepted. Any difference is `StoreError::Diverged`
//! naming the seq: the store refuses to run on a state it cannot reproduce.

use crate::error::StoreError;
use crate::log_crc;
use crate::schema::meta_get;
use rusqlite::Connection;
use swarm_core::{Config, Envelope, Input, Output, Seq, Swarm, SwarmState, Timestamp};

/// A core rebuilt from the file.
pub(crate) struct Rebuilt {
    pub(crate) swarm: Swarm,
    /// The last logged seq (0: empty log).
    pub(crate) last_seq: u64,
    /// The snapshot the replay started from (0: the beginning).
    pub(crate) base_seq: u64,
    /// Inputs replayed on top of it.
    pub(crate) replayed: u64,
    /// Snapshots that did not verify, newest first, with the reason.
    pub(crate) skipped: Vec<(u64, String)>,
}

/// Parses a stored digest (16 hex digits).
pub(crate) fn parse_digest(text: &str) -> Option<u64> {
    u64::from_str_radix(text, 16).ok()
}

/// Formats a digest the way `snapshots.digest` stores it.
pub(crate) fn format_digest(digest: u64) -> String {
    format!("{digest:016x}")
}

/// Restores a snapshot and checks it gives the recorded digest.
pub(crate) fn verify_snapshot(state: &str, digest: &str) -> Result<Swarm, String> {
    let want = parse_digest(digest).ok_or_else(|| format!("digest {digest:?} is not hex"))?;
    let state: SwarmState =
        serde_json::from_str(state).map_err(|e| format!("state does not parse: {e}"))?;
    let swarm = Swarm::restore(state).map_err(|e| e.to_string())?;
    let got = swarm.digest();
    if got != want {
        return Err(format!(
            "digest {} does not match the recorded {digest}",
            format_digest(got)
        ));
    }
    Ok(swarm)
}

/// The `meta` key naming the newest swarm version that wrote the store: an
/// input kind unknown to a swarm at least that new cannot come from a newer
/// swarm, so the log was edited or damaged.
pub(crate) const NEWEST_WRITER: &str = "newest_writer";

/// The version of this build.
pub(crate) const THIS_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `a.b.c` as numbers (a pre-release or build suffix ignored); `None` if
/// it is not one.
fn version_numbers(v: &str) -> Option<Vec<u64>> {
    let core = v.split(['-', '+']).next()?;
    core.split('.').map(|n| n.parse().ok()).collect()
}

/// Whether `v` is a newer version than this build (`None`: cannot tell).
pub(crate) fn newer_than_this(v: &str) -> Option<bool> {
    Some(version_numbers(v)? > version_numbers(THIS_VERSION)?)
}

/// Where a store's checksummed log starts (see `log_crc::crc_from`).
pub(crate) fn crc_from(conn: &Connection) -> Result<u64, StoreError> {
    Ok(log_crc::crc_from(
        meta_get(conn, log_crc::CRC_FROM)?.as_deref(),
        conn.query_row(log_crc::FIRST_CHECKSUMMED, [], |r| r.get(0))?,
    ))
}

/// Parses one logged input, telling an unknown kind from a damaged record.
/// `newest_writer` is `meta.newest_writer`: when no newer swarm wrote the
/// store, an unknown kind is damage, not a newer swarm's input.
pub fn parse_input(seq: u64, text: &str, newest_writer: Option<&str>) -> Result<Input, StoreError> {
    match serde_json::from_str::<Input>(text) {
        Ok(input) => Ok(input),
        Err(e) => {
            let kind = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_owned));
            match kind {
                Some(kind) if e.to_string().contains(&format!("unknown variant `{kind}`")) => {
                    match newest_writer.filter(|v| newer_than_this(v) == Some(false)) {
                        Some(v) => Err(StoreError::BadLogRecord {
                            seq,
                            detail: format!(
                                "its input kind {kind:?} is not one swarm writes, and no newer \
                                 swarm than this one ({THIS_VERSION}) wrote this store (the \
                                 newest was {v})"
                            ),
                        }),
                        None => Err(StoreError::UnknownInputKind { seq, kind }),
                    }
                }
                _ => Err(StoreError::BadLogRecord {
                    seq,
                    detail: e.to_string(),
                }),
            }
        }
    }
}

/// The log horizon: inputs up to this seq were compacted away.
pub(crate) fn compacted_through(conn: &Connection) -> Result<u64, StoreError> {
    Ok(meta_get(conn, "compacted_through")?
        .and_then(|v| v.parse().ok())
        .unwrap_or(0))
}

/// Rebuilds the core from the newest verified snapshot plus the log tail.
pub(crate) fn rebuild(conn: &Connection, config: &Config) -> Result<Rebuilt, StoreError> {
    let horizon = compacted_through(conn)?;
    let mut skipped = Vec::new();
    let mut base = None;
    {
        let mut stmt = conn.prepare("SELECT seq FROM snapshots ORDER BY seq DESC")?;
        let seqs: Vec<u64> = stmt
            .query_map([], |r| r.get::<_, i64>(0))?
            .map(|s| s.map(|s| s as u64))
            .collect::<Result<_, _>>()?;
        for seq in seqs {
            let (digest, state): (String, String) = conn.query_row(
                "SELECT digest, state FROM snapshots WHERE seq = ?1",
                [seq as i64],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            match verify_snapshot(&state, &digest) {
                Ok(swarm) => {
                    base = Some((seq, swarm));
                    break;
                }
                Err(why) => skipped.push((seq, why)),
            }
        }
    }
    let (base_seq, mut swarm) = match base {
        Some(b) => b,
        None if horizon == 0 => (0, Swarm::new(config.clone())?),
        None => {
            let detail = if skipped.is_empty() {
                "there are none".to_owned()
            } else {
                describe_skipped(&skipped)
            };
            return Err(StoreError::NoUsableSnapshot {
                detail,
                compacted_through: horizon,
            });
        }
    };
    if base_seq < horizon {
        return Err(StoreError::NoUsableSnapshot {
            detail: format!(
                "the newest verified snapshot is at seq {base_seq}; {}",
                describe_skipped(&skipped)
            ),
            compacted_through: horizon,
        });
    }
    let newest_writer = meta_get(conn, NEWEST_WRITER)?;
    let (last_seq, replayed) = replay_tail(conn, &mut swarm, base_seq, newest_writer.as_deref())?;
    Ok(Rebuilt {
        swarm,
        last_seq,
        base_seq,
        replayed,
        skipped,
    })
}

fn describe_skipped(skipped: &[(u64, String)]) -> String {
    skipped
        .iter()
        .map(|(seq, why)| format!("snapshot {seq}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Replays every input after `base_seq`, checking seqs are contiguous and the
/// outputs match the outbox. Returns the last seq and the count replayed.
fn replay_tail(
    conn: &Connection,
    swarm: &mut Swarm,
    base_seq: u64,
    newest_writer: Option<&str>,
) -> Result<(u64, u64), StoreError> {
    let mut inputs =
        conn.prepare("SELECT seq, at_ms, input, crc FROM input_log WHERE seq > ?1 ORDER BY seq")?;
    let mut outbox =
        conn.prepare("SELECT seq, idx, output FROM outbox WHERE seq > ?1 ORDER BY seq, idx")?;
    let mut outbox_rows = outbox
        .query_map([base_seq as i64], |r| {
            let text = match r.get_ref(2)? {
                rusqlite::types::ValueRef::Text(bytes) => std::str::from_utf8(bytes)
                    .map(str::to_owned)
                    .map_err(|e| format!("an outbox row is not valid UTF-8 text ({e})")),
                _ => Err("an outbox row is not text".to_owned()),
            };
            Ok((r.get::<_, i64>(0)? as u64, text))
        })?
        .peekable();
    let crc_from = crc_from(conn)?;
    let mut rows = inputs.query([base_seq as i64])?;
    let mut expected = base_seq + 1;
    let mut replayed = 0;
    while let Some(row) = rows.next()? {
        let seq = row.get::<_, i64>(0)? as u64;
        if seq != expected {
            return Err(StoreError::Damaged {
                detail: format!("the input log jumps from seq {} to seq {seq}", expected - 1),
            });
        }
        let (at, text) = log_crc::checked(
            seq,
            row.get_ref(1)?,
            row.get_ref(2)?,
            row.get_ref(3)?,
            crc_from,
        )?;
        let at = Timestamp(at);
        let input = parse_input(seq, text, newest_writer)?;
        let out = swarm.handle(&Envelope {
            seq: Seq(seq),
            at,
            input,
        });
        let mut recorded = Vec::new();
        while let Some(Ok((s, _))) = outbox_rows.peek() {
            if *s > seq {
                break;
            }
            let Some(next) = outbox_rows.next() else {
                break;
            };
            let (s, text) = next?;
            let text = text.map_err(|detail| StoreError::BadLogRecord { seq: s, detail })?;
            if s < seq {
                return Err(StoreError::Damaged {
                    detail: format!("outbox rows for seq {s} have no input"),
                });
            }
            recorded.push(text);
        }
        if let Some(Err(_)) = outbox_rows.peek() {
            if let Some(Err(e)) = outbox_rows.next() {
                return Err(e.into());
            }
        }
        compare_outputs(seq, &out, &recorded)?;
        expected += 1;
        replayed += 1;
    }
    if let Some(row) = outbox_rows.next() {
        let (s, _) = row?;
        return Err(StoreError::Damaged {
            detail: format!("outbox rows for seq {s} have no input"),
        });
    }
    Ok((expected - 1, replayed))
}

fn compare_outputs(seq: u64, computed: &[Output], recorded: &[String]) -> Result<(), StoreError> {
    if computed.len() != recorded.len() {
        return Err(StoreError::Diverged {
            seq,
            detail: format!(
                "recomputed {} outputs, the outbox has {}",
                computed.len(),
                recorded.len()
            ),
        });
    }
    for (idx, (c, r)) in computed.iter().zip(recorded).enumerate() {
        let c = serde_json::to_value(c)?;
        let r: serde_json::Value =
            serde_json::from_str(r).map_err(|e| StoreError::BadLogRecord {
                seq,
                detail: format!("outbox row {idx}: {e}"),
            })?;
        if c != r {
            return Err(StoreError::Diverged {
                seq,
                detail: format!("output {idx} is now {c} but the outbox has {r}"),
            });
        }
    }
    Ok(())
}
