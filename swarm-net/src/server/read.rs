//! Read endpoints: served from the published view (never the writer), and
//! from the history tables for anything older than the current state.

use super::http::{ApiError, Query, Reply};
use super::metrics::gauge;
use super::shared::Shared;
use super::v3;
use serde_json::{json, Value};
use swarm_core::{Atom, DroneStatus, PackageStatus};
use swarm_store::listed_text::LISTED_ITEM_MAX;
use swarm_store::EventFilter;

/// 200 while the server can record inputs and store uploads; 503 with the reason while every
/// connection place serves a request (the last 2 s), or while the
/// store cannot write (disk full, read-only file system...) or an fsync of
/// the WAL has hung for `FSYNC_HUNG` or the writer for `WRITER_STUCK`, and
/// for good once the writer or the fsync thread died. Otherwise it turns
/// back to 200 by itself: the writer probes the store every second
/// meanwhile, and a hung fsync or step that ends is no longer in flight.
pub(crate) fn health(sh: &Shared) -> Result<Reply, ApiError> {
    // The last committed seq, read without a copy of the core: a monitor
    // polling health must not make the writer copy a large queue.
    let seq = sh.committed.load(std::sync::atomic::Ordering::SeqCst);
    let store = store_trouble(sh);
    let staging = sh.staging_health.trouble();
    let front_full = sh.metrics.front.full_within(FRONT_FULL_WINDOW);
    let reason = store
        .clone()
        .or_else(|| staging.clone())
        .or_else(|| front_full.then(front_trouble));
    let (code, status) = match &reason {
        None => (200, "ok"),
        Some(_) => (503, "unhealthy"),
    };
    // What does not stop the server's work but takes one of its promises: 200 all the same.
    let warnings: Vec<String> = id_file_trouble(sh).into_iter().collect();
    Reply::with_status(
        code,
        &json!({
            "status": status,
            "reason": reason,
            "store_writable": store.is_none(),
            "staging_writable": staging.is_none(),
            "connections_full": front_full,
            "warnings": warnings,
            "version": env!("CARGO_PKG_VERSION"),
            "build": sh.build,
            "seq": seq,
            "uptime_s": sh.started.elapsed().as_secs(),
        }),
    )
}

/// How recently a connection must have found no place for health to say so.
const FRONT_FULL_WINDOW: std::time::Duration = std::time::Duration::from_secs(2);

/// What health says while connections find no place: health itself is
/// answered by an overflow thread then, and a 200 hid that every drone got
/// 503 (h110).
fn front_trouble() -> String {
    "every connection place (http.max_connections) is serving a request: anything but \
     /api/v1/health is answered 503 \"server busy\" (swarm_http_refused_total{reason=\"busy\"}); \
     connections that hold a place without progress are closed by the http timeouts"
        .to_string()
}

/// Why the store cannot take writes now, if it cannot: the writer or the
/// fsync thread died (until a restart), a write failed (disk full,
/// read-only file system...), an fsync of the WAL failed since the start
/// (until a restart), one has not returned for `FSYNC_HUNG`, or a step of
/// the writer has not ended for `WRITER_STUCK`. A disk that hangs never fails a write:
/// it stops answering, and every acknowledged request waits on that fsync
/// or on the writer it holds.
fn store_trouble(sh: &Shared) -> Option<String> {
    if let Some(why) = sh.metrics.lost_thread() {
        return Some(format!(
            "{why}: nothing is recorded until the server restarts (`swarm serve` exits for its \
             service manager to restart it)"
        ));
    }
    if let Some(f) = sh.store_fault.read().ok().and_then(|f| f.clone()) {
        return Some(format!("the store cannot write: {f}"));
    }
    if let Some(e) = sh.metrics.fsync_failure() {
        return Some(format!(
            "an fsync of the WAL failed ({e}): the requests it covered were answered with an \
             error, and what was acknowledged since may not survive a crash; check the disk, then \
             restart the server (it checks the log against what was acknowledged)"
        ));
    }
    // A writer held by its own fsync: its step began a moment before the
    // fsync, so while it is stuck any fsync in flight is named instead.
    let stuck = sh
        .metrics
        .writer_busy()
        .filter(|busy| *busy >= super::metrics::WRITER_STUCK);
    if let Some(age) = sh
        .metrics
        .fsync_in_flight()
        .filter(|age| *age >= super::metrics::FSYNC_HUNG || stuck.is_some())
    {
        return Some(format!(
            "an fsync of the WAL has not returned for {} s: the disk hangs, and no request is \
             acknowledged until it returns",
            age.as_secs()
        ));
    }
    stuck.map(|busy| {
        format!(
            "the writer has been on one step for {} s without finishing it (a write the disk \
             holds, a checkpoint, a stalled read of the database, or a rebuild of a very large \
             state after a failed write): no request is acknowledged until it ends",
            busy.as_secs()
        )
    })
}

/// Why the store-id file cannot be written, if it cannot: the next start is refused, and an older
/// copy of the database put back meanwhile would open without a word.
fn id_file_trouble(sh: &Shared) -> Option<String> {
    let why = sh.id_file_fault.read().ok().and_then(|f| f.clone())?;
    Some(format!(
        "the store-id file cannot be written ({why}): the next start of the server is refused \
         until it can (a restart, a crash or an upgrade is then an outage), and meanwhile an older \
         copy of the database put back would not be refused; fix that file or its directory \
         (swarm tries again once a minute)"
    ))
}

/// `GET /api/v1/status`: v3's fields (V3-PROTOCOL.md) and swarm's own.
pub(crate) fn status(sh: &Shared) -> Result<Reply, ApiError> {
    let totals = sh.with_history(|h| h.totals())?;
    let p = sh.fresh();
    let view = p.swarm.view();
    let c = view.counts();
    let drones = view.drones();
    let by = |s: DroneStatus| drones.iter().filter(|d| d.status == s).count();
    let failed = view
        .queue()
        .filter(|pkg| matches!(pkg.status, PackageStatus::Queued { .. }) && pkg.attempts > 0)
        .count();
    let mut out = json!({
        // Build Swarm v3's counters, for its tooling.
        "needed": c.queued,
        "delegated": c.assigned,
        "received": c.built,
        "blocked": c.blocked,
        "failed": failed,
        "total": c.total,
        "nodes": drones.len(),
        "nodes_online": by(DroneStatus::Online),
        "paused": view.paused(),
        // swarm's own.
        "counts": c,
        "drone_counts": {
            "online": by(DroneStatus::Online),
            "suspect": by(DroneStatus::Suspect),
            "offline": by(DroneStatus::Offline),
            "stopped": by(DroneStatus::Stopped),
        },
        "leases": view.lease_count(),
        "brake": view.brake(),
        "generation": view.generation(),
        "expected_portage": view.expected_portage(),
        "seq": p.seq,
        "now_ms": view.now().0,
    });
    if let Some(obj) = out.as_object_mut() {
        obj.extend(v3::status_fields(
            &view,
            &drones,
            |d| sh.said_of(&d.name),
            &totals,
        ));
    }
    Reply::ok(&out)
}

/// `GET /api/v1/profiles`: every profile, its expected environment, world set, the drones it
/// admits and how the others differ, its packages, and the binhost path its releases are
/// published at (issue 17).
pub(crate) fn profiles(sh: &Shared) -> Result<Reply, ApiError> {
    let p = sh.fresh();
    let view = p.swarm.view();
    let list: Vec<serde_json::Value> = view
        .profiles()
        .into_iter()
        .map(|v| {
            let mut j = json!(v);
            j["binhost"] = json!(swarm_core::profile::binhost_path(&v.name));
            let foreign = built_in_another_env(sh, view, &v.name);
            j["built_in_another_env"] = json!(foreign.len());
            if let Some((atom, why)) = foreign.first() {
                j["note"] = json!(format!(
                    "{} built package(s) no release of profile {} takes (e.g. {atom}: {why}); \
                     `swarm fresh --profile {}` builds them again",
                    foreign.len(),
                    v.name,
                    v.name
                ));
            }
            j
        })
        .collect();
    Reply::ok(&json!({ "profiles": list }))
}

/// The built packages of a named `profile` whose build was recorded in an environment the
/// profile does not admit now, with why (the release gate's rule): after `profile edit`, or a
/// drone's drift between its build and its report, they count as built while no release of
/// the profile takes them, and nothing said so (h31).
fn built_in_another_env(
    sh: &Shared,
    view: swarm_core::View<'_>,
    profile: &str,
) -> Vec<(String, String)> {
    if profile == swarm_core::profile::DEFAULT_PROFILE {
        return Vec::new();
    }
    let envs = sh
        .with_history(|h| h.last_build_envs(profile))
        .unwrap_or_default();
    envs.into_iter()
        .filter_map(|(package, vars)| {
            let atom = Atom::parse(&package).ok()?;
            let built = view
                .package_in(&atom, profile)
                .is_some_and(|p| matches!(p.status, PackageStatus::Built { .. }));
            let recorded = swarm_core::BuildEnv::new(vars).ok()?;
            let why = swarm_core::release_gate::not_in_release_of(
                view,
                profile,
                Some(&atom),
                Some(&recorded),
            )?;
            built.then_some((package, why))
        })
        .collect()
}

/// `GET /api/v1/nodes[?all=true][&format=legacy]`: v3's flat array of the
/// online drones (every drone with `all=true`), each with v3's fields next to
/// swarm's; `format=legacy` wraps it as `{drones, orchestrators}`.
pub(crate) fn nodes(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let all = match q.get("all") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") || v == "1" => true,
        Some(v) if v.eq_ignore_ascii_case("false") || v == "0" => false,
        Some(v) => {
            return Err(ApiError::field(
                400,
                "all",
                format!("all={v:?}: use true or false"),
            ))
        }
    };
    let legacy = match q.get("format") {
        None | Some("") => false,
        Some("legacy") => true,
        Some(f) => {
            return Err(ApiError::field(
                400,
                "format",
                format!("unknown format {f:?}: leave it out, or use legacy"),
            ))
        }
    };
    let p = sh.fresh();
    let view = p.swarm.view();
    let mut out = Vec::new();
    for d in view.drones() {
        if !all && d.status != DroneStatus::Online {
            continue;
        }
        let mut v = node_fields(sh, &view, &d)?;
        // A list carries a bounded part of each environment; `/api/v1/nodes/NAME` has it whole.
        for (field, budget) in [
            ("env", LISTED_ITEM_MAX),
            ("env_differences", LISTED_DIFF_MAX),
        ] {
            if let Some(text) = v.get_mut(field) {
                swarm_store::listed_text::clip_all_within(text, budget);
            }
        }
        out.push(v);
    }
    if legacy {
        return Reply::ok(&json!({ "drones": out, "orchestrators": [] }));
    }
    Reply::ok(&Value::Array(out))
}

/// What a fleet list carries of a drone's differences from its closest profile: the dashboard
/// and `swarm fleet` show a line of them; the drone's own read has them whole.
const LISTED_DIFF_MAX: usize = 4 * 1024;

/// `GET /api/v1/nodes/NAME`: one drone, online or not, as the list shows it but with its whole
/// environment (a list clips it, h32).
pub(crate) fn node(sh: &Shared, name: &str) -> Result<Reply, ApiError> {
    let p = sh.fresh();
    let view = p.swarm.view();
    let d = view
        .drones()
        .into_iter()
        .find(|d| d.name.as_str() == name || sh.resolve(name).is_some_and(|n| n == d.name))
        .ok_or_else(|| {
            ApiError::new(
                404,
                format!("no drone named {name:?} (`swarm fleet` lists them)"),
            )
        })?;
    Reply::ok(&node_fields(sh, &view, &d)?)
}

fn node_fields(
    sh: &Shared,
    view: &swarm_core::View<'_>,
    d: &swarm_core::DroneView,
) -> Result<Value, ApiError> {
    let mut v = serde_json::to_value(d).map_err(ApiError::internal)?;
    if let Some(obj) = v.as_object_mut() {
        v3::add_node_fields(obj, view, d, &sh.said_of(&d.name));
    }
    Ok(v)
}

fn state_name(s: &PackageStatus) -> &'static str {
    match s {
        PackageStatus::Queued { .. } => "queued",
        PackageStatus::Assigned { .. } => "assigned",
        PackageStatus::Built { .. } => "built",
        PackageStatus::Blocked { .. } => "blocked",
    }
}

pub(crate) fn queue(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let state = q.get("state");
    if let Some(s) = state {
        if !["queued", "assigned", "built", "blocked"].contains(&s) {
            return Err(ApiError::field(
                400,
                "state",
                format!("unknown state {s:?}: use queued, assigned, built or blocked"),
            ));
        }
    }
    let offset = q.number("offset", 0, u64::MAX)? as usize;
    let limit = q.number("limit", 100, 1000)? as usize;
    // A search over the whole queue, not over the page a client has (h30: the dashboard
    // searched its first 1,000 of 50,000 and said a queued package was not there).
    let search = match q.get("q").map(str::trim) {
        Some(text) if text.len() > Atom::MAX_LEN => {
            return Err(ApiError::field(
                400,
                "q",
                format!("a search is at most {} bytes, as an atom is", Atom::MAX_LEN),
            ))
        }
        Some(text) if !text.is_empty() => Some(text.to_lowercase()),
        _ => None,
    };
    let p = sh.fresh();
    let view = p.swarm.view();
    let mut total = 0usize;
    let mut items = Vec::new();
    for pkg in view.queue() {
        if state.is_some_and(|s| s != state_name(&pkg.status)) {
            continue;
        }
        if search
            .as_deref()
            .is_some_and(|t| !pkg.atom.as_str().to_lowercase().contains(t))
        {
            continue;
        }
        if total >= offset && items.len() < limit {
            // A list carries the start of each failure's text (`explain` has it whole).
            let mut item = value(&pkg);
            swarm_store::listed_text::clip_all(&mut item);
            items.push(item);
        }
        total += 1;
    }
    Reply::ok(&json!({"total": total, "offset": offset, "limit": limit, "items": items}))
}

pub(crate) fn explain(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let text = q
        .get("package")
        .ok_or_else(|| ApiError::field(400, "package", "send ?package=<atom>"))?;
    let atom = Atom::parse(text)
        .map_err(|e| ApiError::field(400, "package", format!("bad atom {text:?}: {e}")))?;
    // An atom queued in several profiles is several packages: `?profile=` says which.
    let profile = q.get("profile");
    let p = sh.fresh();
    let view = p.swarm.view();
    // Without `?profile=`, an atom queued in several profiles has no one status: the
    // explanation gives each profile's, and `packages` lists them.
    let packages = view.packages_of(&atom);
    let status = match profile {
        Some(name) => view.package_in(&atom, name),
        None if packages.len() == 1 => packages.first().cloned(),
        None => None,
    };
    let profiles: Vec<&str> = view
        .queued_profiles(&atom)
        .into_iter()
        .map(|p| p.unwrap_or(swarm_core::profile::DEFAULT_PROFILE))
        .collect();
    Reply::ok(&json!({
        "package": atom.as_str(),
        "explain": view.explain_in(&atom, profile),
        "status": status,
        "profiles": profiles,
        "packages": packages,
    }))
}

/// The optional `package` query parameter, normalised.
pub(crate) fn package_param(q: &Query) -> Result<Option<String>, ApiError> {
    q.get("package")
        .map(|p| {
            Atom::parse(p)
                .map(|a| a.as_str().to_string())
                .map_err(|e| ApiError::field(400, "package", format!("bad atom {p:?}: {e}")))
        })
        .transpose()
}

/// `GET /api/v1/history`: swarm's `builds` (every attempt, newest first),
/// and v3's `history` (attempts that ended with a result) and `stats`.
pub(crate) fn history(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let limit = q.number("limit", 100, 10_000)? as u32;
    let package = package_param(&q)?;
    let drone = q.get("drone").map(str::to_string);
    let (builds, totals) = sh.with_history(|h| {
        Ok((
            h.builds(package.as_deref(), drone.as_deref(), limit)?,
            h.totals()?,
        ))
    })?;
    let p = sh.fresh();
    let view = p.swarm.view();
    let machine_ids: std::collections::BTreeMap<String, Option<String>> = view
        .drones()
        .into_iter()
        .map(|d| (d.name.as_str().to_owned(), d.machine_id))
        .collect();
    let history: Vec<Value> = builds
        .iter()
        .filter_map(|b| {
            let id = machine_ids.get(&b.drone).and_then(Option::as_deref);
            v3::history_item(b, id)
        })
        .collect();
    Reply::ok(&json!({
        "builds": builds,
        "history": history,
        "stats": v3::stats(&totals),
    }))
}

/// `GET /api/v1/events?after=ID` (swarm) or `?since=ID` (v3): events with a
/// larger id, oldest first, with `next` (swarm) and `latest_id` (v3): the
/// last id returned, or the newest id there is when nothing is newer, so a v3
/// client polling with an id from before a reset catches up.
pub(crate) fn events(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let after = match (q.get("after"), q.get("since")) {
        (Some(_), Some(_)) => {
            return Err(ApiError::field(
                400,
                "since",
                "send after or since, not both",
            ))
        }
        (_, Some(_)) => q.number("since", 0, i64::MAX as u64)? as i64,
        _ => q.number("after", 0, i64::MAX as u64)? as i64,
    };
    let limit = q.number("limit", 200, 10_000)? as u32;
    let (events, newest) =
        sh.with_history(|h| Ok((h.events_after(after, limit)?, h.last_event_id()?)))?;
    let next = events.last().map(|e| e.id).unwrap_or(after);
    let latest_id = events.last().map(|e| e.id).unwrap_or(newest);
    let events: Vec<Value> = events.iter().map(v3::event).collect();
    Reply::ok(&json!({ "events": events, "next": next, "latest_id": latest_id }))
}

/// `GET /api/v1/events/history`: the newest events, newest first; `kind`
/// (v3: `type`), `drone`, `package` and v3's `since` (Unix seconds) filter;
/// `total` counts what came back.
pub(crate) fn events_history(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let limit = q.number("limit", 200, 10_000)? as u32;
    let filter = EventFilter {
        drone: q.get("drone").map(str::to_string),
        kind: q.get("kind").or_else(|| q.get("type")).map(str::to_string),
        package: q.get("package").map(str::to_string),
        since_ms: q.get("since").map(v3::unix_ms).transpose()?,
    };
    let events = sh.with_history(|h| h.events_recent(&filter, limit))?;
    let next = events.first().map(|e| e.id).unwrap_or(0);
    let total = events.len();
    // The newest `limit` events, listed oldest first as v3 listed them.
    let events: Vec<Value> = events.iter().rev().map(v3::event).collect();
    Reply::ok(&json!({ "events": events, "next": next, "total": total }))
}

pub(crate) fn build_stats(sh: &Shared, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let limit = q.number("limit", 1000, 100_000)? as u32;
    let packages = sh.with_history(|h| h.stats_by_package(limit))?;
    let packages: Vec<Value> = packages.iter().map(v3::package_stats).collect();
    Reply::ok(&json!({ "packages": packages }))
}

pub(crate) fn metrics(sh: &Shared) -> Result<Reply, ApiError> {
    let p = sh.fresh();
    let view = p.swarm.view();
    let c = view.counts();
    let mut out = String::new();
    let row = |k: &str, v: u32| (format!("state=\"{k}\""), u64::from(v));
    gauge(
        &mut out,
        "swarm_queue_packages",
        "Packages by state.",
        &[
            row("ready", c.ready),
            row("waiting", c.queued.saturating_sub(c.ready + c.backoff)),
            row("backoff", c.backoff),
            row("assigned", c.assigned.saturating_sub(c.building)),
            row("building", c.building),
            row("built", c.built),
            row("blocked", c.blocked),
        ],
    );
    gauge(
        &mut out,
        "swarm_leases",
        "Live leases.",
        &[(String::new(), u64::from(view.lease_count()))],
    );
    let drones = view.drones();
    let count = |s: DroneStatus| drones.iter().filter(|d| d.status == s).count() as u64;
    gauge(
        &mut out,
        "swarm_drones",
        "Drones by liveness.",
        &[
            ("state=\"online\"".into(), count(DroneStatus::Online)),
            ("state=\"suspect\"".into(), count(DroneStatus::Suspect)),
            ("state=\"offline\"".into(), count(DroneStatus::Offline)),
            ("state=\"stopped\"".into(), count(DroneStatus::Stopped)),
        ],
    );
    gauge(
        &mut out,
        "swarm_paused",
        "1 when the whole swarm is paused.",
        &[(String::new(), u64::from(view.paused()))],
    );
    gauge(
        &mut out,
        "swarm_brake_engaged",
        "1 when the disruption brake holds reclaims.",
        &[(String::new(), u64::from(view.brake().engaged))],
    );
    gauge(
        &mut out,
        "swarm_replan_pending",
        "Entries left in the critical-path walk a big push leaves to ticks; 0 once the queue's order is exact.",
        &[(String::new(), view.replan_pending() as u64)],
    );
    gauge(
        &mut out,
        "swarm_log_seq",
        "Inputs made durable (the log position).",
        &[(String::new(), p.seq)],
    );
    // Seconds, as Prometheus names base units (promtool checks it); the
    // writer keeps microseconds.
    let cost_us = sh
        .publish_cost_us
        .load(std::sync::atomic::Ordering::Relaxed);
    gauge(
        &mut out,
        "swarm_publish_cost_seconds",
        "What the writer's last copy of the state for readers cost it; forced copies are 10 \
         times this apart (50 ms to 1 s).",
        &[(String::new(), cost_us as f64 / 1e6)],
    );
    let writable = store_trouble(sh).is_none();
    gauge(
        &mut out,
        "swarm_store_writable",
        "1 while the store takes writes; 0 while it cannot write (disk full, read-only file system), since an fsync of the WAL failed or the writer or fsync thread died (until a restart), or while an fsync hangs or the writer is stuck; /api/v1/health says why.",
        &[(String::new(), u64::from(writable))],
    );
    gauge(
        &mut out,
        "swarm_store_id_file_current",
        "1 while the store-id file can be written (tried once a minute while the store writes, idle probes included); 0 while it cannot: the next start is refused until it can, and an older copy of the database put back meanwhile would open without a word; /api/v1/health's warnings say why.",
        &[(String::new(), u64::from(id_file_trouble(sh).is_none()))],
    );
    gauge(
        &mut out,
        "swarm_staging_writable",
        "1 while uploads can be stored; 0 since an upload failed on the staging disk (507), until an upload as big is stored in that category or a probe finds its directories writable with that much space free (at most once a second, while health or this is read); /api/v1/health says why.",
        &[(String::new(), u64::from(sh.staging_health.trouble().is_none()))],
    );
    gauge(
        &mut out,
        "swarm_build_info",
        "1, labelled with the swarm build serving (`swarm --version`).",
        &[(
            format!("build=\"{}\"", super::dashboard::slo::label(&sh.build)),
            1,
        )],
    );
    super::dashboard::slo::render(
        &mut out,
        &view,
        sh.dashboard.series.reclaims_in(60),
        sh.dashboard.feed.clients(),
    );
    sh.metrics.render(&mut out);
    Ok(Reply::Text(200, "text/plain; version=0.0.4", out))
}

/// JSON of a published value, for the admin replies that echo state.
pub(crate) fn value<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}
