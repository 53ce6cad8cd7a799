//! A client written for Build Swarm v3 reads a real `swarm serve`: every
//! field V3-PROTOCOL.md lists under "Read endpoints v3 tools expect" is there,
//! with v3's type and v3's unit, and holds the value the run produced.

mod support;

use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use support::{request, Server};

fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// A Unix time in seconds within a minute of now: catches milliseconds.
fn assert_recent_seconds(v: &Value, what: &str) {
    let t = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(
        (now_s() - t).abs() < 60.0,
        "{what} = {t} is not Unix seconds near now ({})",
        now_s()
    );
}

fn register(s: &Server, id: &str, name: &str, cores: u32, task: Value) {
    let (code, r) = s.post(
        "/api/v1/register",
        &json!({"id": id, "name": name, "ip": "127.0.0.1", "type": "drone", "version": "2.6.1",
            "capabilities": {"cores": cores, "ram_gb": 16, "auto_reboot": false,
                             "portage_timestamp": "2026-02-16 00:00"},
            "metrics": {"cpu_percent": 12.5, "ram_percent": 40.1, "load_1m": 0.5},
            "current_task": task}),
    );
    assert_eq!(code, 200, "{r}");
}

fn work(s: &Server, id: &str) -> String {
    let (code, w) = s.get(&format!("/api/v1/work?id={id}"));
    assert_eq!(code, 200, "{w}");
    w["package"].as_str().expect("work").to_string()
}

fn complete(s: &Server, id: &str, pkg: &str, status: &str) {
    let (code, r) = s.post(
        "/api/v1/complete",
        &json!({"id": id, "package": pkg, "status": status, "build_duration_s": 42.5,
                "error_detail": if status == "success" { Value::Null } else { json!("it broke") }}),
    );
    assert_eq!(code, 200, "{r}");
}

/// The run every check below reads: 14 queued, one built in 42.5 s, one
/// building, one masked (blocked), one infra failure (back in the queue, a
/// failure on drone-beta's record), a third drone stopped cleanly.
struct Run {
    s: Server,
    built: String,
    building: String,
    masked: String,
    _dir: tempfile::TempDir,
}

fn run() -> Run {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    register(&s, "drone-a-0001", "drone-alpha", 8, Value::Null);
    register(&s, "drone-b-0002", "drone-beta", 4, Value::Null);
    register(&s, "drone-c-0003", "drone-gone", 2, Value::Null);
    let (code, r) = s.post(
        "/api/v1/deregister",
        &json!({"id": "drone-c-0003", "reason": "test"}),
    );
    assert_eq!(code, 200, "{r}");
    let pkgs: Vec<String> = (0..14).map(|i| format!("virtual/pkg{i:02}-1")).collect();
    let (code, r) = s.admin_post("/api/v1/queue", &json!({ "packages": pkgs }));
    assert_eq!((code, r["queued"].as_u64()), (200, Some(14)), "{r}");

    let built = work(&s, "drone-a-0001");
    register(&s, "drone-a-0001", "drone-alpha", 8, json!(built));
    complete(&s, "drone-a-0001", &built, "success");
    let building = work(&s, "drone-a-0001");
    register(&s, "drone-a-0001", "drone-alpha", 8, json!(building));

    let masked = work(&s, "drone-b-0002");
    complete(&s, "drone-b-0002", &masked, "masked");
    // A failure of the drone's own (an upload failure would not do: it costs the drone an
    // upload hold, not a failure on its record).
    let lost = work(&s, "drone-b-0002");
    let (code, r) = s.post(
        "/api/v1/complete",
        &json!({"id": "drone-b-0002", "package": lost, "status": "failed",
                "failure_class": "infra", "error_detail": "No space left on device"}),
    );
    assert_eq!(code, 200, "{r}");
    Run {
        s,
        built,
        building,
        masked,
        _dir: dir,
    }
}

#[test]
fn status_carries_every_v3_field_with_v3_types_and_values() {
    let r = run();
    let (code, st) = r.s.get("/api/v1/status");
    assert_eq!(code, 200);
    // Counters: 14 = 1 built + 1 blocked + 1 delegated + 11 needed.
    assert_eq!(st["needed"], 11, "{st}");
    assert_eq!(st["delegated"], 1, "{st}");
    assert_eq!(st["received"], 1, "{st}");
    assert_eq!(st["blocked"], 1, "{st}");
    assert_eq!(st["total"], 14, "{st}");
    assert_eq!(st["queue_depth"], 12, "needed + delegated: {st}");
    assert_eq!(st["queue_received"], 1, "{st}");
    assert_eq!(st["queue_blocked"], 1, "{st}");
    assert_eq!(st["nodes"], 3, "{st}");
    assert_eq!(st["nodes_online"], 2, "{st}");
    assert_eq!(st["total_cores"], 14, "8 + 4 + 2: {st}");
    assert_eq!(st["paused"], false, "{st}");
    let (_, health) = r.s.get("/api/v1/health");
    assert_eq!(st["version"], health["version"], "{st}");
    assert!(st["version"].is_string());
    // The session (swarm's queue generation).
    let session = &st["session"];
    assert!(session["id"].is_string(), "{session}");
    assert_eq!(session["status"], "active", "{session}");
    assert_eq!(session["total_packages"], 14, "{session}");
    assert_eq!(session["completed_packages"], 1, "{session}");
    // packages{}: the first 10 needed, delegated by atom, blocked.
    let needed = st["packages"]["needed"].as_array().expect("needed list");
    assert_eq!(needed.len(), 10, "v3 lists the first 10 of 11: {st}");
    assert!(needed
        .iter()
        .all(|a| a.as_str().is_some_and(|a| a.starts_with("=virtual/pkg"))));
    assert!(!needed.contains(&json!(r.building)));
    assert_eq!(
        st["packages"]["delegated"],
        json!({ r.building.as_str(): {"drone": "drone-alpha"} }),
        "{st}"
    );
    assert_eq!(st["packages"]["blocked"], json!([r.masked]), "{st}");
    // drones: an object keyed by name, as v3's CLI iterates drones.values().
    let drones = st["drones"].as_object().expect("drones by name");
    assert_eq!(drones.len(), 3, "{st}");
    let a = &st["drones"]["drone-alpha"];
    assert_eq!(a["name"], "drone-alpha");
    assert_eq!(a["ip"], "127.0.0.1", "{a}");
    assert_eq!(a["status"], "online", "{a}");
    assert_eq!(a["current_task"], json!(r.building), "{a}");
    assert_eq!(a["assigned_packages"], json!([r.building]), "{a}");
    assert_eq!(a["build_progress"][0]["package"], json!(r.building), "{a}");
    assert_recent_seconds(&a["build_progress"][0]["building_since"], "building_since");
    assert_eq!(a["capabilities"]["cores"], 8, "{a}");
    assert_eq!(a["capabilities"]["ram_gb"], 16.0, "{a}");
    assert_eq!(
        a["capabilities"]["portage_timestamp"], "2026-02-16 00:00",
        "{a}"
    );
    assert_eq!(a["metrics"]["cpu_percent"], 12.5, "{a}");
    assert_eq!(a["metrics"]["ram_percent"], 40, "{a}");
    assert_eq!(a["metrics"]["load_1m"], 0.5, "{a}");
    assert_recent_seconds(&a["last_seen"], "last_seen");
    assert_eq!(st["drones"]["drone-gone"]["status"], "stopped", "{st}");
    // drone_health: only drones with failures (the infra failure is beta's).
    let dh = st["drone_health"].as_object().expect("drone_health");
    assert_eq!(dh.keys().collect::<Vec<_>>(), vec!["drone-beta"], "{st}");
    assert_eq!(st["drone_health"]["drone-beta"]["failures"], 1, "{st}");
    assert!(st["drone_health"]["drone-beta"]
        .as_object()
        .is_some_and(|h| h.contains_key("grounded_until")));
    // timing: v3's build statistics.
    assert_eq!(st["timing"]["total_builds"], 3, "{st}");
    assert_eq!(st["timing"]["successful"], 1, "{st}");
    assert_eq!(st["timing"]["avg_duration_s"], 42.5, "{st}");
    // swarm's own, next to v3's.
    assert_eq!(st["drone_counts"]["stopped"], 1, "{st}");
    assert!(st["counts"].is_object() && st["brake"].is_object());
}

#[test]
fn nodes_is_a_flat_array_of_v3_nodes_and_offline_ones_need_all() {
    let r = run();
    let (code, nodes) = r.s.get("/api/v1/nodes");
    assert_eq!(code, 200);
    let list = nodes.as_array().expect("a flat JSON array");
    let names: Vec<&str> = list.iter().filter_map(|n| n["name"].as_str()).collect();
    assert_eq!(
        names,
        ["drone-alpha", "drone-beta"],
        "the stopped drone only with all=true"
    );
    let a = &list[0];
    for (field, check) in [
        ("id", Value::is_string as fn(&Value) -> bool),
        ("name", Value::is_string),
        ("ip", Value::is_string),
        ("type", Value::is_string),
        ("status", Value::is_string),
        ("online", Value::is_boolean),
        ("paused", Value::is_boolean),
        ("cpu_percent", Value::is_number),
        ("ram_percent", Value::is_number),
        ("capabilities", Value::is_object),
        ("metrics", Value::is_object),
        ("current_task", Value::is_string),
        ("assigned_packages", Value::is_array),
        ("build_progress", Value::is_array),
        ("builds_completed", Value::is_number),
        ("builds_failed", Value::is_number),
        ("last_seen", Value::is_number),
        ("version", Value::is_string),
    ] {
        assert!(
            check(&a[field]),
            "node field {field} missing or mistyped: {a}"
        );
    }
    assert_eq!(a["id"], "drone-a-0001", "v3's id is the machine id: {a}");
    assert_eq!(a["type"], "drone");
    assert_eq!(
        (a["status"].as_str(), a["online"].as_bool()),
        (Some("online"), Some(true))
    );
    assert_eq!(a["cpu_percent"], 12.5, "{a}");
    assert_eq!(a["ram_percent"], 40, "{a}");
    assert_eq!(a["current_task"], json!(r.building));
    assert_eq!(a["assigned_packages"], json!([r.building]));
    let p = &a["build_progress"][0];
    assert_eq!(p["package"], json!(r.building), "{p}");
    assert_recent_seconds(&p["building_since"], "building_since");
    assert!(
        p["elapsed_s"]
            .as_f64()
            .is_some_and(|e| (0.0..60.0).contains(&e)),
        "{p}"
    );
    assert!(
        p["estimated_s"].is_number() && p["progress_pct"].is_number(),
        "{p}"
    );
    assert_eq!(a["builds_completed"], 1, "{a}");
    assert_eq!(a["builds_failed"], 0, "{a}");
    assert_recent_seconds(&a["last_seen"], "last_seen");
    assert_eq!(a["version"], "2.6.1");
    assert_eq!(list[1]["current_task"], Value::Null, "beta builds nothing");

    let (_, all) = r.s.get("/api/v1/nodes?all=true");
    let all = all.as_array().expect("array");
    assert_eq!(all.len(), 3);
    let gone = all
        .iter()
        .find(|n| n["name"] == "drone-gone")
        .expect("gone");
    assert_eq!(
        (gone["online"].as_bool(), gone["status"].as_str()),
        (Some(false), Some("stopped"))
    );

    let (_, legacy) = r.s.get("/api/v1/nodes?format=legacy");
    assert_eq!(legacy["orchestrators"], json!([]));
    assert_eq!(
        legacy["drones"].as_array().map(Vec::len),
        Some(2),
        "{legacy}"
    );
    let (code, e) = r.s.get("/api/v1/nodes?all=maybe");
    assert_eq!((code, e["field"].as_str()), (400, Some("all")), "{e}");
}

#[test]
fn history_has_v3_entries_newest_first_and_stats() {
    let r = run();
    let (code, h) = r.s.get("/api/v1/history?limit=10");
    assert_eq!(code, 200, "{h}");
    let history = h["history"].as_array().expect("history");
    // Three attempts ended with a result; the building one has not.
    assert_eq!(history.len(), 3, "{h}");
    let statuses: Vec<&str> = history
        .iter()
        .filter_map(|e| e["status"].as_str())
        .collect();
    assert_eq!(
        statuses.last(),
        Some(&"success"),
        "newest first: {statuses:?}"
    );
    let ok = history.last().expect("oldest");
    assert_eq!(ok["package"], json!(r.built));
    assert_eq!(ok["drone_id"], "drone-a-0001", "{ok}");
    assert_eq!(ok["drone_name"], "drone-alpha", "{ok}");
    assert_eq!(ok["duration_seconds"], 42.5, "{ok}");
    assert!(ok
        .as_object()
        .is_some_and(|o| o.contains_key("error_message")));
    assert_recent_seconds(&ok["timestamp"], "timestamp");
    assert!(history.iter().all(|e| e["package"] != json!(r.building)));

    let st = &h["stats"];
    assert_eq!(st["total"], 3, "{st}");
    assert_eq!(st["success"], 1, "{st}");
    assert_eq!(st["failed"], 2, "{st}");
    assert_eq!(st["success_rate"], 33.3, "{st}");
    assert_eq!(st["avg_duration_s"], 42.5, "{st}");
    assert_eq!(st["total_duration_s"], 42.5, "{st}");
    let per = st["per_drone"].as_array().expect("per_drone");
    let beta = per
        .iter()
        .find(|d| d["drone_name"] == "drone-beta")
        .expect("beta");
    assert_eq!(
        (beta["total"].as_u64(), beta["success"].as_u64()),
        (Some(2), Some(0)),
        "{st}"
    );
    let alpha = per
        .iter()
        .find(|d| d["drone_name"] == "drone-alpha")
        .expect("alpha");
    assert_eq!(alpha["success_rate"], 100.0, "{st}");
    // swarm's own list is still there: every attempt, the open one too.
    assert_eq!(h["builds"].as_array().map(Vec::len), Some(4), "{h}");
}

#[test]
fn events_since_an_id_returns_only_newer_ones_and_latest_id() {
    let r = run();
    let (code, all) = r.s.get("/api/v1/events?since=0");
    assert_eq!(code, 200, "{all}");
    let events = all["events"].as_array().expect("events");
    assert!(events.len() > 5, "{all}");
    for e in events {
        assert!(
            e["id"].is_i64() && e["type"].is_string() && e["message"].is_string(),
            "{e}"
        );
        assert!(e["details"].is_object(), "{e}");
        assert_recent_seconds(&e["timestamp"], "event timestamp");
    }
    let latest = all["latest_id"].as_i64().expect("latest_id");
    assert_eq!(Some(latest), events.last().and_then(|e| e["id"].as_i64()));
    assert!(events.iter().any(
        |e| e["type"] == "built" && e["message"].as_str().is_some_and(|m| m.contains(&r.built))
    ));

    // Only events with id > since.
    let mid = events[events.len() / 2]["id"].as_i64().expect("id");
    let (_, later) = r.s.get(&format!("/api/v1/events?since={mid}"));
    let ids: Vec<i64> = later["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_i64())
        .collect();
    assert!(
        !ids.is_empty() && ids.iter().all(|i| *i > mid),
        "{ids:?} after {mid}"
    );
    assert_eq!(later["latest_id"], latest);

    // Nothing newer: no events, and latest_id still says where the feed is,
    // also to a client whose id is from before a reset.
    let (_, none) = r.s.get(&format!("/api/v1/events?since={latest}"));
    assert_eq!(none["events"], json!([]));
    assert_eq!(none["latest_id"], latest);
    let (_, ahead) = r.s.get("/api/v1/events?since=999999");
    assert_eq!(ahead["events"], json!([]));
    assert_eq!(ahead["latest_id"], latest);

    let (code, e) = r.s.get("/api/v1/events?since=-1");
    assert_eq!(code, 400, "{e}");
    let (_, hist) = r.s.get("/api/v1/events/history?type=built&limit=50");
    assert_eq!(hist["total"], 1, "{hist}");
    assert_eq!(hist["events"][0]["type"], "built", "{hist}");
    // since= is a Unix time in seconds: everything is after an hour ago, nothing after now+60.
    let hour_ago = now_s() - 3600.0;
    let (_, recent) = r.s.get(&format!(
        "/api/v1/events/history?since={hour_ago}&limit=1000"
    ));
    assert_eq!(
        recent["total"].as_u64(),
        Some(events.len() as u64),
        "{recent}"
    );
    let ids: Vec<u64> = recent["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["id"].as_u64())
        .collect();
    assert!(ids.len() > 1, "{recent}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "oldest first, as v3: {ids:?}"
    );
    let (_, future) =
        r.s.get(&format!("/api/v1/events/history?since={}", now_s() + 60.0));
    assert_eq!(future["total"], 0, "{future}");
    let (code, e) = r.s.get("/api/v1/events/history?since=yesterday");
    assert_eq!((code, e["field"].as_str()), (400, Some("since")), "{e}");
}

#[test]
fn build_stats_by_package_carry_v3_fields() {
    let r = run();
    let (code, v) = r.s.get("/api/v1/build-stats/by-package");
    assert_eq!(code, 200, "{v}");
    let rows = v["packages"].as_array().expect("packages");
    let row = |atom: &str| {
        rows.iter()
            .find(|p| p["package"] == atom)
            .unwrap_or_else(|| panic!("{atom} missing: {v}"))
    };
    let built = row(&r.built);
    assert_eq!(
        (built["attempts"].as_u64(), built["successes"].as_u64()),
        (Some(1), Some(1)),
        "{built}"
    );
    assert_eq!(built["tried_on"], json!(["drone-alpha"]), "{built}");
    assert_recent_seconds(&built["last_attempt"], "last_attempt");
    let masked = row(&r.masked);
    assert_eq!(
        (masked["attempts"].as_u64(), masked["successes"].as_u64()),
        (Some(1), Some(0)),
        "{masked}"
    );
    assert_eq!(masked["tried_on"], json!(["drone-beta"]), "{masked}");
}

#[test]
fn an_empty_queue_post_is_a_400_saying_no_packages() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let (code, r) = s.admin_post("/api/v1/queue", &json!({"packages": []}));
    assert_eq!(
        (code, r["error"].as_str()),
        (400, Some("No packages")),
        "{r}"
    );
    // With v3's admin header too.
    let token = s.token();
    let (code, r) = support::request_raw(
        "POST",
        &format!("{}/api/v1/queue", s.url),
        Some(br#"{"packages":[],"portage_timestamp":"2026-02-16 00:00"}"#),
        None,
        &[("X-Admin-Key", token.as_str())],
    );
    assert_eq!(
        (code, r["error"].as_str()),
        (400, Some("No packages")),
        "{r}"
    );
    // A body without the list is not an empty queue post either way.
    let (code, r) = request(
        "POST",
        &format!("{}/api/v1/queue", s.url),
        Some("{}"),
        Some(&token),
    );
    assert_eq!(code, 400, "{r}");
    let (_, q) = s.get("/api/v1/queue");
    assert_eq!(q["total"], 0);
}

/// What h14 found driving the server as a v3 drone: a heartbeat with only
/// `id` was refused (409), `current_task: null` did not clear the node's
/// task, and a grounded drone left `drone_health` as it was grounded.
#[test]
fn a_v3_drone_heartbeating_by_id_alone_is_heard_and_its_grounding_is_shown() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[("SWARM_POLICY_MAX_DRONE_FAILURES", "2")]);
    let id = "0123456789abcdef0123456789abcdef";
    register(&s, id, "drone-india", 8, Value::Null);
    let pkgs: Vec<String> = (0..3).map(|i| format!("virtual/i{i}-1")).collect();
    let (code, r) = s.admin_post("/api/v1/queue", &json!({ "packages": pkgs }));
    assert_eq!(code, 200, "{r}");
    let node = |s: &Server| {
        let (code, nodes) = s.get("/api/v1/nodes");
        assert_eq!(code, 200, "{nodes}");
        nodes
            .as_array()
            .and_then(|a| a.iter().find(|n| n["name"] == "drone-india").cloned())
            .unwrap_or_else(|| panic!("drone-india not in {nodes}"))
    };

    // Every field but `id` is optional: the name it registered with holds.
    let first = work(&s, id);
    let beat = |task: Value| {
        s.post(
            "/api/v1/register",
            &json!({"id": id, "metrics": {"cpu_percent": 5.0}, "current_task": task}),
        )
    };
    let (code, r) = beat(json!(first));
    assert_eq!(
        (code, r["status"].as_str()),
        (200, Some("registered")),
        "{r}"
    );
    let n = node(&s);
    assert_eq!(n["current_task"], json!(first), "{n}");
    assert_eq!(n["online"], json!(true), "{n}");
    let (_, nodes) = s.get("/api/v1/nodes?all=true");
    assert_eq!(
        nodes.as_array().map(Vec::len),
        Some(1),
        "one drone: {nodes}"
    );

    // "null clears it", though the lease stays until the report.
    let (code, r) = beat(Value::Null);
    assert_eq!(code, 200, "{r}");
    assert_eq!(node(&s)["current_task"], Value::Null);
    let (code, st) = s.get("/api/v1/status");
    assert_eq!(code, 200, "{st}");
    assert_eq!(
        st["drones"]["drone-india"]["current_task"],
        Value::Null,
        "{st}"
    );

    // Two infra failures ground it (the policy above): `drone_health`
    // shows until when.
    let fail = |pkg: &str| {
        let (code, r) = s.post(
            "/api/v1/complete",
            &json!({"id": id, "package": pkg, "status": "failed",
                    "failure_class": "infra", "error_detail": "No space left on device"}),
        );
        assert_eq!(code, 200, "{r}");
    };
    fail(&first);
    fail(&work(&s, id));
    let (code, w) = s.get(&format!("/api/v1/work?id={id}"));
    assert_eq!((code, &w["package"]), (200, &Value::Null), "grounded: {w}");
    let (_, st) = s.get("/api/v1/status");
    let health = &st["drone_health"]["drone-india"];
    assert_recent_seconds_ahead(&health["grounded_until"], "grounded_until");
    assert_eq!(health["node_id"], json!(id), "{st}");
}

/// A Unix time in seconds, from now to two hours ahead.
fn assert_recent_seconds_ahead(v: &Value, what: &str) {
    let t = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(
        t >= now_s() - 5.0 && t <= now_s() + 7_200.0,
        "{what} = {t} is not Unix seconds ahead of now ({})",
        now_s()
    );
}
