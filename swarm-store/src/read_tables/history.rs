//! The history tables (`builds`, `events`): rows appended from an input's outputs, never
//! rewritten from the view.

use crate::error::StoreError;
use rusqlite::{params, Connection};
use swarm_core::{Input, Output, Timestamp};

/// An output, serialised once for the outbox and the history tables.
pub(crate) struct OutputJson {
    pub(crate) value: serde_json::Value,
    pub(crate) text: String,
}

impl OutputJson {
    pub(crate) fn new(output: &Output) -> Result<OutputJson, StoreError> {
        let value = serde_json::to_value(output)?;
        let text = serde_json::to_string(&value)?;
        Ok(OutputJson { value, text })
    }
}

/// Context of one applied input.
pub(crate) struct Applied<'a> {
    pub(crate) seq: u64,
    pub(crate) at: Timestamp,
    pub(crate) input: &'a Input,
    pub(crate) outputs: &'a [OutputJson],
}

/// `builds` and `events`: history rows, appended, never rewritten from the view.
pub(super) fn write_history(conn: &Connection, a: &Applied<'_>) -> Result<(), StoreError> {
    let at = a.at.0 as i64;
    let seq = a.seq as i64;
    for o in a.outputs {
        let body = &o.value["body"];
        let str_field = |k: &str| body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let lease = body.get("lease").and_then(|v| v.as_u64()).map(|l| l as i64);
        match o.value["type"].as_str() {
            Some("command") if body["command"] == "assign" => {
                conn.prepare_cached(
                    "INSERT INTO builds (lease, package, drone, epoch, created_at, seq, profile)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (lease) DO NOTHING",
                )?
                .execute(params![
                    lease,
                    str_field("package"),
                    str_field("drone"),
                    body["epoch"].as_i64(),
                    at,
                    seq,
                    str_field("profile")
                        .unwrap_or_else(|| swarm_core::profile::DEFAULT_PROFILE.to_owned())
                ])?;
            }
            Some("event") => {
                let kind = body["event"].as_str().unwrap_or("unknown");
                conn.prepare_cached(
                    "INSERT INTO events (seq, at_ms, kind, drone, package, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )?
                .execute(params![
                    seq,
                    at,
                    kind,
                    str_field("drone"),
                    str_field("package"),
                    body.to_string()
                ])?;
                let Some(lease) = lease else { continue };
                match kind {
                    "started" => {
                        conn.prepare_cached("UPDATE builds SET started_at = ?2 WHERE lease = ?1")?
                            .execute(params![lease, at])?;
                    }
                    "built" => {
                        conn.prepare_cached(
                            "UPDATE builds SET finished_at = ?2, outcome = 'success',
                                duration_ms = ?3, env_digest = ?4
                             WHERE lease = ?1 AND finished_at IS NULL",
                        )?
                        .execute(params![
                            lease,
                            at,
                            body["duration_ms"].as_i64(),
                            str_field("env")
                        ])?;
                    }
                    "build_failed" => {
                        conn.prepare_cached(
                            "UPDATE builds SET finished_at = ?2, outcome = 'failed',
                                class = ?3, detail = ?4
                             WHERE lease = ?1 AND finished_at IS NULL",
                        )?
                        .execute(params![
                            lease,
                            at,
                            str_field("class"),
                            str_field("detail")
                        ])?;
                    }
                    "reclaimed" => {
                        conn.prepare_cached(
                            "UPDATE builds SET finished_at = ?2, outcome = 'reclaimed',
                                detail = ?3
                             WHERE lease = ?1 AND finished_at IS NULL",
                        )?
                        .execute(params![
                            lease,
                            at,
                            str_field("reason")
                        ])?;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
    Ok(())
}

pub(super) fn tag_outcome(outcome: &swarm_core::Outcome) -> String {
    serde_json::to_value(outcome)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "ended".to_owned())
}
