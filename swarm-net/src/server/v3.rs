//! Build Swarm v3's fields on the read endpoints (V3-PROTOCOL.md, "Read
//! endpoints v3 tools expect"), placed next to swarm's own so tools written
//! for v3 keep working. v3's units are kept: times are Unix seconds (floats),
//! durations seconds, drones keyed by name.

use super::http::ApiError;
use serde_json::{json, Map, Value};
use swarm_core::{DroneStatus, DroneView, LeaseView, PackageStatus, View};
use swarm_store::{BuildRow, BuildTotals, EventRow, PackageStats};

/// How many queued atoms `packages.needed` lists (v3: the first 10).
const NEEDED_SHOWN: usize = 10;

/// Milliseconds since the epoch as v3's Unix seconds.
fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// One decimal, as v3 rounds its figures.
fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// v3's node `type`: names starting with `sweeper-` are sweepers.
fn node_type(d: &DroneView) -> &'static str {
    if d.name.is_sweeper() {
        "sweeper"
    } else {
        "drone"
    }
}

/// v3's `capabilities` of a drone, from what it registered.
fn capabilities(d: &DroneView) -> Value {
    json!({
        "cores": d.cores,
        "ram_gb": round1(d.ram_mb as f64 / 1024.0),
        "portage_timestamp": d.portage_snapshot,
        "kind": d.kind,
    })
}

/// v3's `metrics` of a drone, from its last heartbeat.
fn metrics(d: &DroneView, cpu_percent: Option<f64>) -> Value {
    json!({
        "cpu_percent": cpu_percent,
        "ram_percent": d.mem_percent,
        "load_1m": d.load_centi.map(|l| f64::from(l) / 100.0),
        "disk_percent": d.disk_percent,
    })
}

/// v3's `build_progress`: each lease with its elapsed time against the
/// package's learned estimate; `null` figures until the build starts.
pub(crate) fn build_progress(view: &View<'_>, leases: &[LeaseView]) -> Vec<Value> {
    let now = view.now().0;
    leases
        .iter()
        .map(|l| {
            let estimate_ms = view.package(&l.package).map_or(0, |p| p.estimate_ms);
            let elapsed_ms = l.started_at.map(|s| now.saturating_sub(s.0));
            let pct =
                elapsed_ms.and_then(|e| (e * 100).checked_div(estimate_ms).map(|p| p.min(99)));
            json!({
                "package": l.package.as_str(),
                "lease": l.lease,
                "building_since": l.started_at.map(|s| secs(s.0)),
                "elapsed_s": elapsed_ms.map(|e| round1(secs(e))),
                "estimated_s": l.started_at.map(|_| round1(secs(estimate_ms))),
                "progress_pct": pct,
            })
        })
        .collect()
}

/// What a drone said in its last heartbeat that the core keeps no record
/// of, for `/status` and `/nodes`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Said {
    /// Where it can be reached.
    pub(crate) address: Option<String>,
    /// v3's `metrics.cpu_percent`.
    pub(crate) cpu_percent: Option<f64>,
    /// It sent `current_task: null` (or ""): building nothing, whatever its
    /// leases say until its report arrives.
    pub(crate) idle: bool,
}

/// What a drone is building: its first started lease, unless it said it
/// builds nothing (v3: "null clears it"; h14 saw an idle drone shown as
/// building until its report came).
fn current_task<'d>(d: &'d DroneView, said: &Said) -> Option<&'d str> {
    if said.idle {
        return None;
    }
    d.leases
        .iter()
        .find(|l| l.started_at.is_some())
        .map(|l| l.package.as_str())
}

/// The v3 fields of one `/nodes` entry, added to swarm's `DroneView`.
pub(crate) fn add_node_fields(
    obj: &mut Map<String, Value>,
    view: &View<'_>,
    d: &DroneView,
    said: &Said,
) {
    let (address, cpu_percent) = (&said.address, said.cpu_percent);
    let fields = json!({
        "id": d.machine_id,
        "ip": address,
        "address": address,
        "type": node_type(d),
        "online": d.status == DroneStatus::Online,
        "cpu_percent": cpu_percent.unwrap_or(0.0),
        "ram_percent": d.mem_percent.unwrap_or(0),
        "capabilities": capabilities(d),
        "metrics": metrics(d, cpu_percent),
        "current_task": current_task(d, said),
        "assigned_packages": d.leases.iter().map(|l| l.package.as_str()).collect::<Vec<_>>(),
        "build_progress": build_progress(view, &d.leases),
        "builds_completed": d.builds_ok,
        "builds_failed": d.builds_failed,
        "last_seen": secs(d.last_heartbeat.0),
    });
    if let Value::Object(map) = fields {
        obj.extend(map);
    }
}

/// v3's build `stats` (also `/status`'s `timing`): v3's own names
/// (`total_builds`, `successful`) next to the documented ones (`total`, `success`).
pub(crate) fn stats(t: &BuildTotals) -> Value {
    let avg = |sum: i64, n: i64| {
        if n > 0 {
            round1(sum as f64 / n as f64 / 1000.0)
        } else {
            0.0
        }
    };
    let rate = |ok: i64, n: i64| {
        if n > 0 {
            round1(ok as f64 * 100.0 / n as f64)
        } else {
            0.0
        }
    };
    let per_drone: Vec<Value> = t
        .per_drone
        .iter()
        .map(|d| {
            json!({
                "drone_name": d.drone,
                "total": d.total,
                "success": d.success,
                "success_rate": rate(d.success, d.total),
                "avg_duration": avg(d.success_duration_ms, d.timed),
            })
        })
        .collect();
    json!({
        "total": t.total,
        "total_builds": t.total,
        "success": t.success,
        "successful": t.success,
        "failed": t.total - t.success,
        "success_rate": rate(t.success, t.total),
        "avg_duration_s": avg(t.success_duration_ms, t.timed),
        "total_duration_s": round1(t.success_duration_ms as f64 / 1000.0),
        "per_drone": per_drone,
    })
}

/// One v3 `history` entry, for an attempt that ended with a result.
pub(crate) fn history_item(b: &BuildRow, machine_id: Option<&str>) -> Option<Value> {
    let status = b.outcome.as_deref()?;
    let finished = b.finished_at?;
    Some(json!({
        "package": b.package,
        "drone_id": machine_id.unwrap_or(&b.drone),
        "drone_name": b.drone,
        "status": status,
        "duration_seconds": b.duration_ms.map(|d| round1(d as f64 / 1000.0)),
        "error_message": b.detail,
        "timestamp": secs(u64::try_from(finished).unwrap_or(0)),
    }))
}

/// v3's `since=<unix ts>` (seconds, fractions allowed) as milliseconds.
pub(crate) fn unix_ms(text: &str) -> Result<i64, ApiError> {
    match text.trim().parse::<f64>() {
        Ok(s) if s.is_finite() && (0.0..=1.0e11).contains(&s) => Ok((s * 1000.0) as i64),
        _ => Err(ApiError::field(
            400,
            "since",
            format!("since={text:?}: send a Unix time in seconds"),
        )),
    }
}

/// One `/build-stats/by-package` row: v3's fields (`attempts`, `successes`,
/// `tried_on`, `last_attempt` in Unix seconds) next to swarm's.
pub(crate) fn package_stats(p: &PackageStats) -> Value {
    let mut v = serde_json::to_value(p).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("attempts".into(), json!(p.builds));
        obj.insert("successes".into(), json!(p.ok));
        obj.insert(
            "last_attempt".into(),
            json!(p
                .last_attempt_ms
                .map(|ms| secs(u64::try_from(ms).unwrap_or(0)))),
        );
    }
    v
}

/// v3's fields of one event (`type`, `message`, `details`, `timestamp`),
/// next to swarm's (`kind`, `body`, `at_ms`).
pub(crate) fn event(e: &EventRow) -> Value {
    let mut message = e.kind.replace('_', " ");
    if let Some(p) = &e.package {
        message.push(' ');
        message.push_str(p);
    }
    if let Some(d) = &e.drone {
        message.push_str(" (");
        message.push_str(d);
        message.push(')');
    }
    let mut v = serde_json::to_value(e).unwrap_or(Value::Null);
    if let Some(obj) = v.as_object_mut() {
        obj.insert("type".into(), json!(e.kind));
        obj.insert("message".into(), json!(message));
        obj.insert("details".into(), e.body.clone());
        obj.insert(
            "timestamp".into(),
            json!(secs(u64::try_from(e.at_ms).unwrap_or(0))),
        );
    }
    v
}

/// v3's fields of `/status` that swarm does not have under the same name.
pub(crate) fn status_fields(
    view: &View<'_>,
    drones: &[DroneView],
    said_of: impl Fn(&DroneView) -> Said,
    totals: &BuildTotals,
) -> Map<String, Value> {
    let c = view.counts();
    let mut needed = Vec::new();
    let mut delegated = Map::new();
    let mut blocked = Vec::new();
    for p in view.queue() {
        match &p.status {
            PackageStatus::Queued { .. } if needed.len() < NEEDED_SHOWN => {
                needed.push(json!(p.atom.as_str()));
            }
            PackageStatus::Assigned { drone, .. } => {
                delegated.insert(p.atom.as_str().to_owned(), json!({ "drone": drone }));
            }
            PackageStatus::Blocked { .. } => blocked.push(json!(p.atom.as_str())),
            _ => {}
        }
    }
    let mut by_name = Map::new();
    let mut health = Map::new();
    for d in drones {
        let said = said_of(d);
        by_name.insert(
            d.name.as_str().to_owned(),
            json!({
                "name": d.name,
                "ip": said.address,
                "status": d.status,
                "current_task": current_task(d, &said),
                "assigned_packages": d.leases.iter().map(|l| l.package.as_str()).collect::<Vec<_>>(),
                "build_progress": build_progress(view, &d.leases),
                "capabilities": capabilities(d),
                "metrics": metrics(d, said.cpu_percent),
                "last_seen": secs(d.last_heartbeat.0),
            }),
        );
        // A grounded drone's failures were reset as it was grounded: listed
        // only for its failures, it left `drone_health` just when
        // `grounded_until` had something to say (h14).
        if d.consecutive_failures > 0 || d.grounded_until.is_some() {
            health.insert(
                d.name.as_str().to_owned(),
                json!({
                    "node_id": d.machine_id,
                    "failures": d.consecutive_failures,
                    "grounded_until": d.grounded_until.map(|g| secs(g.0)),
                    "escalation_level": d.escalation_steps,
                }),
            );
        }
    }
    let session = (c.total > 0).then(|| {
        let open = c.queued + c.assigned > 0;
        json!({
            "id": format!("generation-{}", view.generation()),
            "name": format!("generation {}", view.generation()),
            "status": if open { "active" } else { "completed" },
            "total_packages": c.total,
            "completed_packages": c.built,
            "failed_packages": c.blocked,
        })
    });
    let fields = json!({
        "queue_depth": c.queued + c.assigned,
        "queue_received": c.built,
        "queue_blocked": c.blocked,
        "total_cores": drones.iter().map(|d| u64::from(d.cores)).sum::<u64>(),
        "session": session,
        "version": env!("CARGO_PKG_VERSION"),
        "packages": {"needed": needed, "delegated": delegated, "blocked": blocked},
        "drones": by_name,
        "drone_health": health,
        "timing": stats(totals),
    });
    match fields {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}
