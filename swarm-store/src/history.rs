//! Fixed, parameterised reads of the `builds` and `events` tables for the
//! HTTP API: history that outlives any in-memory ring (v3 kept 200 events and
//! lost the rest).
//!
//! A separate read-only connection, so a slow reader never holds up the
//! writer (WAL readers do not block it).

use crate::error::StoreError;
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One row of `events`. Also what the HTTP client decodes: missing fields
/// default, so a client outlives a server that adds or drops one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventRow {
    /// Monotonic id: follow the feed with `after = id`.
    pub id: i64,
    /// The input that caused it.
    pub seq: i64,
    /// When, ms since the epoch.
    pub at_ms: i64,
    /// The event's kind (`built`, `reclaimed`...).
    pub kind: String,
    /// The drone it concerns.
    pub drone: Option<String>,
    /// The package it concerns.
    pub package: Option<String>,
    /// The event itself.
    pub body: serde_json::Value,
}

/// One row of `builds`: one attempt (also decoded by the HTTP client).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildRow {
    /// Row id.
    pub id: i64,
    /// The lease of the attempt.
    pub lease: i64,
    /// Package.
    pub package: String,
    /// Drone.
    pub drone: String,
    /// The drone's epoch.
    pub epoch: i64,
    /// Lease issued, ms.
    pub created_at: i64,
    /// Build started, ms.
    pub started_at: Option<i64>,
    /// Ended, ms.
    pub finished_at: Option<i64>,
    /// How it ended.
    #[serde(deserialize_with = "text_or_json")]
    pub outcome: Option<String>,
    /// Failure class.
    #[serde(deserialize_with = "text_or_json")]
    pub class: Option<String>,
    /// Failure detail.
    #[serde(deserialize_with = "text_or_json")]
    pub detail: Option<String>,
    /// Reported duration, ms.
    pub duration_ms: Option<i64>,
    /// The digest of the building drone's environment, stamped when it reported the build
    /// (`environments` holds the values); absent for failed builds and drones reporting none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub env_digest: Option<String>,
    /// The profile the build was for (`default` for the default profile): the same atom is
    /// built once per profile, and a list showed two builds of it alike (h31 F5).
    pub profile: String,
}

/// Per-package build statistics (also decoded by the HTTP client).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PackageStats {
    /// Package.
    pub package: String,
    /// Attempts.
    pub builds: i64,
    /// Successful ones.
    pub ok: i64,
    /// Failed ones.
    pub failed: i64,
    /// Mean duration of the successful ones, ms.
    pub avg_duration_ms: Option<i64>,
    /// Outcome of the latest attempt.
    #[serde(deserialize_with = "text_or_json")]
    pub last_outcome: Option<String>,
    /// The drones that tried it, by name.
    pub tried_on: Vec<String>,
    /// When the latest attempt was leased, ms.
    pub last_attempt_ms: Option<i64>,
}

/// Totals over the kept build history, in the terms of Build Swarm v3's
/// `stats` (`/api/v1/history`, `timing` in `/api/v1/status`). A build is an
/// attempt that ended with a result (success, failed, upload_failed, undelivered or
/// masked); returned and reclaimed leases built nothing and are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BuildTotals {
    /// Builds.
    pub total: i64,
    /// Successful ones.
    pub success: i64,
    /// Sum of the successful builds' reported durations, ms.
    pub success_duration_ms: i64,
    /// Successful builds that reported a duration.
    pub timed: i64,
    /// The same per drone, most builds first.
    pub per_drone: Vec<DroneTotals>,
}

/// [`BuildTotals`] of one drone.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DroneTotals {
    /// Drone.
    pub drone: String,
    /// Builds.
    pub total: i64,
    /// Successful ones.
    pub success: i64,
    /// Sum of the successful builds' reported durations, ms.
    pub success_duration_ms: i64,
    /// Successful builds that reported a duration.
    pub timed: i64,
}

/// Filters for the newest-first event history.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only this drone.
    pub drone: Option<String>,
    /// Only this kind.
    pub kind: Option<String>,
    /// Only this package.
    pub package: Option<String>,
    /// Only events after this time, ms since the epoch.
    pub since_ms: Option<i64>,
}

/// A read-only reader of history.
pub struct History {
    conn: Connection,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History").finish_non_exhaustive()
    }
}

const EVENT_COLS: &str = "id, seq, at_ms, kind, drone, package, body";
/// `detail` is read as its first 2,048 characters and its length in bytes, and cut to 2,048
/// bytes as lists show it (`listed_text`), so a read of 10,000 builds holds no 64 KiB details.
const BUILD_COLS: &str =
    "id, lease, package, drone, epoch, created_at, started_at, finished_at, outcome, class, \
     substr(detail, 1, 2048), duration_ms, env_digest, length(CAST(detail AS BLOB)), profile";

impl History {
    /// Opens a read-only connection to a store file.
    pub fn open(path: impl AsRef<Path>) -> Result<History, StoreError> {
        let conn = crate::read_only::open(path.as_ref())?;
        conn.busy_timeout(std::time::Duration::from_secs(2))?;
        conn.pragma_update(None, "query_only", 1)?;
        Ok(History { conn })
    }

    /// Events with `id > after`, oldest first.
    pub fn events_after(&self, after: i64, limit: u32) -> Result<Vec<EventRow>, StoreError> {
        let sql = format!("SELECT {EVENT_COLS} FROM events WHERE id > ?1 ORDER BY id LIMIT ?2");
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![after, limit], event_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest events matching `filter`, newest first.
    pub fn events_recent(
        &self,
        filter: &EventFilter,
        limit: u32,
    ) -> Result<Vec<EventRow>, StoreError> {
        let sql = format!(
            "SELECT {EVENT_COLS} FROM events WHERE (?1 IS NULL OR drone = ?1) \
             AND (?2 IS NULL OR kind = ?2) AND (?3 IS NULL OR package = ?3) \
             AND (?5 IS NULL OR at_ms > ?5) ORDER BY id DESC LIMIT ?4"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(
            params![
                filter.drone,
                filter.kind,
                filter.package,
                limit,
                filter.since_ms
            ],
            event_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The newest event id (0 when there is none).
    pub fn last_event_id(&self) -> Result<i64, StoreError> {
        let id: Option<i64> = self
            .conn
            .query_row("SELECT MAX(id) FROM events", [], |r| r.get(0))
            .optional()?
            .flatten();
        Ok(id.unwrap_or(0))
    }

    /// The newest build attempts, newest first, optionally for one package or drone.
    pub fn builds(
        &self,
        package: Option<&str>,
        drone: Option<&str>,
        limit: u32,
    ) -> Result<Vec<BuildRow>, StoreError> {
        let sql = format!(
            "SELECT {BUILD_COLS} FROM builds WHERE (?1 IS NULL OR package = ?1) \
             AND (?2 IS NULL OR drone = ?2) ORDER BY id DESC LIMIT ?3"
        );
        let mut st = self.conn.prepare_cached(&sql)?;
        let rows = st.query_map(params![package, drone, limit], build_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Totals over the kept build history, overall and per drone.
    pub fn totals(&self) -> Result<BuildTotals, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT drone, COUNT(*), SUM(outcome = 'success'), \
                    SUM(CASE WHEN outcome = 'success' AND duration_ms > 0 THEN duration_ms END), \
                    SUM(outcome = 'success' AND duration_ms > 0) \
             FROM builds WHERE outcome IN ('success', 'failed', 'upload_failed', 'undelivered', 'masked') \
             GROUP BY drone ORDER BY COUNT(*) DESC, drone",
        )?;
        let rows = st.query_map([], |r| {
            Ok(DroneTotals {
                drone: r.get(0)?,
                total: r.get(1)?,
                success: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                success_duration_ms: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                timed: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
            })
        })?;
        let per_drone: Vec<DroneTotals> = rows.collect::<Result<_, _>>()?;
        Ok(BuildTotals {
            total: per_drone.iter().map(|d| d.total).sum(),
            success: per_drone.iter().map(|d| d.success).sum(),
            success_duration_ms: per_drone.iter().map(|d| d.success_duration_ms).sum(),
            timed: per_drone.iter().map(|d| d.timed).sum(),
            per_drone,
        })
    }

    /// Statistics per package over the kept history, most-built first.
    pub fn stats_by_package(&self, limit: u32) -> Result<Vec<PackageStats>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT package, COUNT(*), \
                    SUM(outcome = 'success'), \
                    SUM(outcome IN ('failed', 'upload_failed', 'undelivered', 'masked')), \
                    CAST(AVG(CASE WHEN outcome = 'success' THEN duration_ms END) AS INTEGER), \
                    (SELECT b2.outcome FROM builds b2 WHERE b2.package = b.package ORDER BY b2.id DESC LIMIT 1), \
                    (SELECT GROUP_CONCAT(d, char(31)) FROM (SELECT DISTINCT drone AS d FROM builds b3 \
                        WHERE b3.package = b.package ORDER BY d)), \
                    MAX(created_at) \
             FROM builds b GROUP BY package ORDER BY COUNT(*) DESC, package LIMIT ?1",
        )?;
        let rows = st.query_map(params![limit], |r| {
            Ok(PackageStats {
                package: r.get(0)?,
                builds: r.get(1)?,
                ok: r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                failed: r.get::<_, Option<i64>>(3)?.unwrap_or(0),
                avg_duration_ms: r.get(4)?,
                last_outcome: r.get(5)?,
                tried_on: r
                    .get::<_, Option<String>>(6)?
                    // Unit separators: drone names cannot hold control characters.
                    .map(|d| d.split('\u{1f}').map(str::to_owned).collect())
                    .unwrap_or_default(),
                last_attempt_ms: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// How the build of `lease` ended (its outcome's status: `success`, `failed`,
    /// `reclaimed`...): `None` when the history holds no such lease (pruned by
    /// retention, or never leased), `Some(None)` while it has not ended.
    pub fn lease_outcome(&self, lease: u64) -> Result<Option<Option<String>>, StoreError> {
        let mut st = self
            .conn
            .prepare_cached("SELECT outcome FROM builds WHERE lease = ?1")?;
        Ok(st
            .query_row([lease as i64], |r| r.get::<_, Option<String>>(0))
            .optional()?)
    }

    /// The drone of each package's latest successful build in `profile` (package as
    /// queued → drone): which machine a release's binary came from. Per profile: the same
    /// atom built for two profiles was built twice, on different drones.
    pub fn last_builders(
        &self,
        profile: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let mut st = self.conn.prepare_cached(
            "SELECT package, drone, MAX(id) FROM builds WHERE outcome = 'success' AND profile = ?1 \
             GROUP BY package",
        )?;
        let rows = st.query_map([profile], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The build environment recorded with each package's latest successful build in
    /// `profile` (package as queued → variable → value): what a profile's release binaries
    /// were built with. Packages whose build recorded none (an older server, a drone
    /// reporting no environment) are left out.
    pub fn last_build_envs(
        &self,
        profile: &str,
    ) -> Result<
        std::collections::BTreeMap<String, std::collections::BTreeMap<String, String>>,
        StoreError,
    > {
        let mut st = self.conn.prepare_cached(
            "SELECT b.package, e.env FROM builds b JOIN environments e ON e.digest = b.env_digest \
             WHERE b.id IN (SELECT MAX(id) FROM builds WHERE outcome = 'success' AND profile = ?1 \
             GROUP BY package)",
        )?;
        let rows = st.query_map([profile], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })?;
        let mut out = std::collections::BTreeMap::new();
        for row in rows {
            let (package, env) = row?;
            if let Ok(env) = serde_json::from_str(&env) {
                out.insert(package, env);
            }
        }
        Ok(out)
    }
}

/// Text, or any other JSON value as its text: a reader keeps working when a
/// column's encoding changes under it.
fn text_or_json<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

fn event_row(r: &Row<'_>) -> rusqlite::Result<EventRow> {
    let body: String = r.get(6)?;
    Ok(EventRow {
        id: r.get(0)?,
        seq: r.get(1)?,
        at_ms: r.get(2)?,
        kind: r.get(3)?,
        drone: r.get(4)?,
        package: r.get(5)?,
        body: {
            let mut body = serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body));
            crate::listed_text::clip_all(&mut body);
            body
        },
    })
}

fn build_row(r: &Row<'_>) -> rusqlite::Result<BuildRow> {
    Ok(BuildRow {
        id: r.get(0)?,
        lease: r.get(1)?,
        package: r.get(2)?,
        drone: r.get(3)?,
        epoch: r.get(4)?,
        created_at: r.get(5)?,
        started_at: r.get(6)?,
        finished_at: r.get(7)?,
        outcome: r.get(8)?,
        class: r.get(9)?,
        detail: r.get::<_, Option<String>>(10)?.map(|head| {
            let whole = r.get::<_, Option<i64>>(13).ok().flatten().unwrap_or(0);
            crate::listed_text::clip_of(&head, usize::try_from(whole).unwrap_or(0))
        }),
        duration_ms: r.get(11)?,
        env_digest: r.get(12)?,
        profile: r.get(14)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Store, StoreOptions};
    use swarm_core::{DroneName, DroneSpec, Input, Timestamp};

    #[test]
    fn events_survive_in_order_and_filter() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("s.db");
        let mut store = Store::open(&path, StoreOptions::default()).expect("open");
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            let spec = DroneSpec {
                name: DroneName::new(*name).expect("name"),
                cores: 4,
                ram_mb: 8192,
                ..DroneSpec::default()
            };
            store
                .append(Timestamp(1_000 + i as u64), Input::Register(spec))
                .expect("append");
        }
        let h = History::open(&path).expect("history");
        let all = h.events_after(0, 100).expect("events");
        assert_eq!(all.len(), 3);
        assert!(all.windows(2).all(|w| w[0].id < w[1].id));
        let after = h.events_after(all[0].id, 100).expect("events");
        assert_eq!(after.len(), 2);
        let b = h
            .events_recent(
                &EventFilter {
                    drone: Some("b".into()),
                    ..EventFilter::default()
                },
                10,
            )
            .expect("recent");
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].drone.as_deref(), Some("b"));
        assert_eq!(h.last_event_id().expect("last"), all[2].id);
        assert!(h.builds(None, None, 10).expect("builds").is_empty());
        assert!(h.stats_by_package(10).expect("stats").is_empty());
    }
}
