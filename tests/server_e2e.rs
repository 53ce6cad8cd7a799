//! A real `swarm serve` on 127.0.0.1, driven with the exact request bodies of
//! V3-PROTOCOL.md: reply shapes, the lease lifecycle, bad input, auth,
//! artifacts, and a SIGKILL under load.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::{request, request_raw, Server};

fn v3_register(id: &str, name: &str, task: Value) -> Value {
    json!({"id": id, "name": name, "ip": "127.0.0.1", "type": "drone", "version": "2.6.1",
        "capabilities": {"cores": 8, "ram_gb": 16, "auto_reboot": false, "portage_timestamp": "2026-02-16 00:00"},
        "metrics": {"cpu_percent": 12.5, "ram_percent": 40.1, "load_1m": 0.5},
        "current_task": task})
}

/// A counter of the server's `/metrics` (a line `name value`).
fn counter(server: &Server, name: &str) -> u64 {
    let (_, m) = request("GET", &format!("{}/metrics", server.url), None, None);
    counter_in(m.as_str().unwrap_or_default(), name)
}

/// A counter in a `/metrics` text.
fn counter_in(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no counter {name} in /metrics"))
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// What a v3 drone rsyncs into staging for `atom`: a valid gpkg of `inside`
/// (the package it really holds), or `None` for 4 KiB of junk.
fn stage_as(server: &Server, atom: &str, inside: Option<&str>) {
    let (cat, pf) = atom
        .trim_start_matches('=')
        .split_once('/')
        .expect("cat/pf");
    let dir = server.data_dir.join("staging").join(cat);
    std::fs::create_dir_all(&dir).expect("mkdir");
    let path = dir.join(format!("{pf}.gpkg.tar"));
    match inside {
        Some(cpv) => {
            let meta: std::collections::BTreeMap<String, String> = [("SLOT", "0"), ("EAPI", "8")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            swarm_net::binpkg::write_gpkg(cpv, &meta, &[("usr/share/x", b"x\n")], &path)
                .expect("write_gpkg");
        }
        None => std::fs::write(&path, vec![7u8; 4096]).expect("write"),
    }
}

fn stage(server: &Server, atom: &str) {
    stage_as(server, atom, Some(atom.trim_start_matches('=')));
}

fn work(server: &Server, id: &str) -> Value {
    let (code, v) = server.get(&format!("/api/v1/work?id={id}"));
    assert_eq!(code, 200, "{v}");
    v
}

fn complete(server: &Server, id: &str, pkg: &str, status: &str) -> Value {
    let (code, v) = server.post(
        "/api/v1/complete",
        &json!({"id": id, "package": pkg, "status": status, "build_duration_s": 42.5, "error_detail": null}),
    );
    assert_eq!(code, 200, "{v}");
    v
}

#[test]
fn a_v3_drone_goes_through_the_whole_lifecycle() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);

    // Registration: the v3 reply shape.
    let (code, r) = s.post(
        "/api/v1/register",
        &v3_register("drone-a-0001", "drone-alpha", Value::Null),
    );
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["status"], "registered");
    assert_eq!(r["orchestrator_name"], "swarm");
    assert_eq!(
        r["orchestrator"], "127.0.0.1",
        "the address the drone reached us at"
    );
    assert!(r["orchestrator_port"].as_u64().is_some());
    let allowed: BTreeSet<String> = [
        "status",
        "orchestrator",
        "orchestrator_port",
        "orchestrator_name",
        "epoch",
        "leases",
        "paused",
        "revoke",
        "stop_work",
        // swarm's additions for its own agent (a v3 drone ignores them).
        "slots",
        "cores_per_slot",
        "max_artifact_bytes",
        "farm_id",
        "upload_check",
    ]
    .iter()
    .map(|k| k.to_string())
    .collect();
    assert!(keys(&r).is_subset(&allowed), "unexpected reply keys: {r}");
    assert!(
        r.get("revoke").is_none() && r.get("stop_work").is_none(),
        "{r}"
    );
    let (_, r) = s.post(
        "/api/v1/register",
        &v3_register("drone-b-0002", "drone-beta", Value::Null),
    );
    assert_eq!(r["status"], "registered");

    // Nothing queued: package null.
    assert_eq!(work(&s, "drone-a-0001")["package"], Value::Null);

    // v3 admin call with X-Admin-Key.
    let token = s.token();
    let (code, q) = request_raw(
        "POST",
        &format!("{}/api/v1/queue", s.url),
        Some(json!({"packages": ["dev-libs/foo-1.0", "dev-libs/bar-2.0", "app-misc/baz-3", "app-misc/qux-4", "app-misc/masked-1", "app-misc/up-1"], "portage_timestamp": null}).to_string().as_bytes()),
        None,
        &[("X-Admin-Key", token.as_str())],
    );
    assert_eq!(code, 200, "{q}");
    assert_eq!(q["status"], "ok");
    assert_eq!(q["queued"], 6);
    // Queuing it again adds nothing.
    let (_, q) = s.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/foo-1.0"]}));
    assert_eq!(q["queued"], 0);

    // Work, and the idempotent re-poll.
    let w1 = work(&s, "drone-a-0001");
    let pkg_a = w1["package"].as_str().expect("a package").to_string();
    assert!(w1["lease"].as_u64().is_some(), "{w1}");
    let w2 = work(&s, "drone-a-0001");
    assert_eq!(
        w2["package"], w1["package"],
        "re-poll must return the same atom"
    );
    assert_eq!(w2["lease"], w1["lease"]);

    // A heartbeat naming it marks it started.
    let (_, hb) = s.post(
        "/api/v1/register",
        &v3_register("drone-a-0001", "drone-alpha", json!(pkg_a)),
    );
    assert!(hb.get("stop_work").is_none(), "{hb}");

    // Success without a binary is missing_binary.
    let c = complete(&s, "drone-a-0001", &pkg_a, "success");
    assert_eq!(c["accepted"], false, "{c}");
    assert_eq!(c["recorded"], "missing_binary");
    // What that costs is the core's rule (issue 10): the package is not at fault, so it used
    // no attempt and waits out no backoff; the build counts as undelivered in its history.
    let (_, e) = s.get(&format!("/api/v1/explain?package={pkg_a}"));
    assert_eq!(e["status"]["attempts"], 0, "{e}");
    assert_eq!(e["status"]["status"]["state"], "queued", "{e}");
    assert!(e["status"]["status"]["retry_at"].is_null(), "{e}");

    // Drone B: success with a binary rsynced into staging (v3 style).
    let wb = work(&s, "drone-b-0002");
    let pkg_b = wb["package"].as_str().expect("b package").to_string();
    stage(&s, &pkg_b);
    let c = complete(&s, "drone-b-0002", &pkg_b, "success");
    assert_eq!(
        c,
        json!({"status": "ok", "accepted": true, "recorded": "built"})
    );

    // A stale completion: drone A reports B's finished package.
    let c = complete(&s, "drone-a-0001", &pkg_b, "success");
    assert_eq!(c["stale"], true, "{c}");
    assert_eq!(c["accepted"], false);
    assert_eq!(c["action"], "stop_work");
    let reason = c["reason"].as_str().expect("reason");
    assert!(
        ["work already completed elsewhere", "work reclaimed"].contains(&reason)
            || reason.starts_with("work reassigned to"),
        "{reason}"
    );

    // Drone A reports (lease-less, as v3 drones do) a package given to drone B and not yet
    // built: the protocol's stale answer names B, so A stops.
    let wb2 = work(&s, "drone-b-0002");
    let p = wb2["package"].as_str().expect("a package for B");
    let c = complete(&s, "drone-a-0001", p, "success");
    assert_eq!(c["stale"], true, "{c}");
    assert_eq!(c["action"], "stop_work", "{c}");
    let to = c["reassigned_to"].as_str().expect("reassigned_to");
    assert_eq!(c["reason"], format!("work reassigned to {to}"), "{c}");
    let c = complete(&s, "drone-b-0002", p, "returned");
    assert_eq!(c["stale"], json!(null), "B still held it: {c}");

    // returned, masked, upload_failed, failed.
    for status in [
        "returned",
        "masked",
        "upload_failed",
        "compile error in foo.c",
    ] {
        let w = work(&s, "drone-b-0002");
        let Some(p) = w["package"].as_str() else {
            break;
        };
        let c = complete(&s, "drone-b-0002", p, status);
        assert_eq!(c["status"], "ok", "{status}: {c}");
        assert_eq!(c["accepted"], false, "{status}: {c}");
        assert!(c.get("stale").is_none(), "{status}: {c}");
    }
    let (_, st) = s.get("/api/v1/status");
    for k in [
        "needed",
        "delegated",
        "received",
        "blocked",
        "failed",
        "total",
        "nodes",
        "nodes_online",
        "paused",
    ] {
        assert!(st.get(k).is_some(), "status lacks v3 counter {k}: {st}");
    }
    assert_eq!(st["nodes"], 2);
    assert!(st["received"].as_u64().expect("received") >= 1);
    assert!(
        st["blocked"].as_u64().expect("blocked") >= 1,
        "masked blocks: {st}"
    );

    // Revoke delivery: an operator reclaims A's package; A hears it while it reports it.
    let w = work(&s, "drone-a-0001");
    if let Some(p) = w["package"].as_str() {
        let (code, r) = s.admin_post(
            "/api/v1/control",
            &json!({"action": "reclaim", "package": p}),
        );
        assert_eq!(code, 200, "{r}");
        for _ in 0..2 {
            let (_, hb) = s.post(
                "/api/v1/register",
                &v3_register("drone-a-0001", "drone-alpha", json!(p)),
            );
            let revoked: Vec<&str> = hb["revoke"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            assert!(
                revoked.contains(&p),
                "revoke must repeat while the drone reports it: {hb}"
            );
            assert_eq!(hb["stop_work"]["package"], p, "{hb}");
        }
        // Once the drone stops reporting it, the revoke stops.
        let (_, hb) = s.post(
            "/api/v1/register",
            &v3_register("drone-a-0001", "drone-alpha", Value::Null),
        );
        assert!(hb.get("revoke").is_none(), "{hb}");
    }

    // Pause: heartbeat says paused, work is null.
    let (code, _) = s.admin_post("/api/v1/control", &json!({"action": "pause"}));
    assert_eq!(code, 200);
    let (_, hb) = s.post(
        "/api/v1/register",
        &v3_register("drone-b-0002", "drone-beta", Value::Null),
    );
    assert_eq!(hb["paused"], true, "{hb}");
    assert_eq!(work(&s, "drone-b-0002")["package"], Value::Null);
    let (code, _) = s.admin_post("/api/v1/control", &json!({"action": "resume"}));
    assert_eq!(code, 200);

    // Orchestrators are ignored; no id at all is a 400.
    let (code, r) = s.post(
        "/api/v1/register",
        &json!({"id": "o-1", "type": "orchestrator"}),
    );
    assert_eq!((code, r["status"].as_str()), (200, Some("ignored")));
    let (code, r) = s.post("/api/v1/register", &json!({"ip": "1.2.3.4"}));
    assert_eq!((code, r["error"].as_str()), (400, Some("Missing node ID")));
}

#[test]
fn v4_poll_report_sync_portage_and_reregistration() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let reg = |name: &str, ts: &str| json!({"node_name": name, "capabilities": {"cores": 4, "ram_gb": 8, "portage_timestamp": ts}});
    let (code, r) = s.post("/api/v1/register", &reg("v4-drone", "2026-02-16 00:00"));
    assert_eq!(code, 200, "{r}");
    let epoch1 = r["epoch"].as_u64().expect("epoch");

    // A queue computed on a newer tree: the drone must sync first.
    let (code, _) = s.admin_post("/api/v1/queue", &json!({"packages": ["virtual/a-1", "virtual/b-1"], "portage_timestamp": "2026-02-17 00:00"}));
    assert_eq!(code, 200);
    let (code, w) = s.get("/api/v1/poll?node=v4-drone");
    assert_eq!(code, 200);
    assert_eq!(
        w,
        json!({"action": "sync_portage", "expected_timestamp": "2026-02-17 00:00"})
    );
    // After the sync, the heartbeat carries the new timestamp and work flows.
    s.post("/api/v1/register", &reg("v4-drone", "2026-02-17 00:00"));
    let (_, w) = s.get("/api/v1/poll?node=v4-drone");
    let p = w["package"].as_str().expect("work after sync").to_string();
    let (code, r) = s.post("/api/v1/report", &json!({"node": "v4-drone", "package": p, "status": "success", "duration": 3.0, "error": null}));
    assert_eq!(code, 200, "{r}");
    assert_eq!(r["accepted"], true, "virtual packages need no binary: {r}");

    // The same name under a new id is the same drone in a new epoch; the old
    // lease is gone, and a report on it is stale.
    let (_, w) = s.get("/api/v1/poll?node=v4-drone");
    let held = w["package"].as_str().expect("second package").to_string();
    let (code, r) = s.post("/api/v1/register", &json!({"id": "new-machine-id", "name": "v4-drone", "capabilities": {"portage_timestamp": "2026-02-17 00:00"}}));
    assert_eq!(code, 200, "{r}");
    assert!(r["epoch"].as_u64().expect("epoch") > epoch1, "{r}");
    let (_, r) = s.post("/api/v1/report", &json!({"node": "v4-drone", "package": held, "status": "success", "lease": w["lease"], "epoch": epoch1}));
    assert_eq!(r["stale"], true, "{r}");
    let (_, nodes) = s.get("/api/v1/nodes?all=true");
    assert_eq!(nodes.as_array().map(Vec::len), Some(1), "{nodes}");
}

#[test]
fn bad_input_gets_a_4xx_that_says_what_was_wrong() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    s.post("/api/v1/register", &json!({"node_name": "d1"}));
    let token = s.token();
    let big = vec![b' '; 1024 * 1024 + 10];
    let post_eps = [
        "/api/v1/register",
        "/api/v1/complete",
        "/api/v1/report",
        "/api/v1/started",
        "/api/v1/return",
        "/api/v1/queue",
        "/api/v1/control",
    ];
    for ep in post_eps {
        let url = format!("{}{}", s.url, ep);
        for (body, want) in [
            (b"{not json".to_vec(), 400),
            (b"".to_vec(), 400),
            (b"[1,2,3]".to_vec(), 400),
            (big.clone(), 413),
        ] {
            // Drone endpoints take a drone's credential, never the admin token.
            let auth = ep.contains("queue") || ep.contains("control");
            let (code, v) = request_raw(
                "POST",
                &url,
                Some(&body),
                auth.then_some(token.as_str()),
                &[],
            );
            assert_eq!(code, want, "{ep} with {} bytes: {v}", body.len());
            assert!(
                v["error"].as_str().is_some_and(|e| !e.is_empty()),
                "{ep}: {v}"
            );
        }
    }
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "/api/v1/register",
            json!({"node_name": 7}),
            400,
            Some("node_name"),
        ),
        (
            "/api/v1/register",
            json!({"node_name": "d1", "capabilities": {"cores": "many"}}),
            400,
            Some("capabilities.cores"),
        ),
        (
            "/api/v1/register",
            json!({"node_name": "bad name with spaces"}),
            400,
            Some("name").or(Some("node_name")),
        ),
        (
            "/api/v1/register",
            json!({"node_name": ".."}),
            400,
            Some("node_name"),
        ),
        (
            "/api/v1/register",
            json!({"node_name": "."}),
            400,
            Some("node_name"),
        ),
        (
            "/api/v1/register",
            json!({"node_name": " ..\t"}),
            400,
            Some("node_name"),
        ),
        (
            "/api/v1/register",
            json!({"node_name": "d1", "current_task": "not an atom!!"}),
            400,
            Some("current_task"),
        ),
        (
            "/api/v1/complete",
            json!({"id": "d1", "status": "success"}),
            400,
            Some("package"),
        ),
        (
            "/api/v1/complete",
            json!({"id": "ghost", "package": "=a/b-1", "status": "success"}),
            404,
            Some("id"),
        ),
        (
            "/api/v1/complete",
            json!({"id": "d1", "package": "no slash", "status": "success"}),
            400,
            Some("package"),
        ),
        ("/api/v1/started", json!({"id": "d1"}), 400, Some("lease")),
        (
            "/api/v1/queue",
            json!({"packages": ["=ok/fine-1", "bad atom"]}),
            400,
            Some("packages[1]"),
        ),
        (
            "/api/v1/queue",
            json!({"packages": ["=ok/fine-1", {"atom": "bad atom"}]}),
            400,
            Some("packages[1].atom"),
        ),
        (
            "/api/v1/queue",
            json!({"packages": [{"atom": "=ok/fine-1", "deps": ["ok/dep", "bad dep"]}]}),
            400,
            Some("packages[0].deps[1]"),
        ),
        (
            "/api/v1/queue",
            json!({"packages": [], "surprise": 1}),
            400,
            None,
        ),
        (
            "/api/v1/queue",
            json!({"packages": []}),
            400,
            Some("packages"),
        ),
        (
            "/api/v1/control",
            json!({"action": "explode"}),
            400,
            Some("action"),
        ),
        (
            "/api/v1/control",
            json!({"action": "block"}),
            400,
            Some("package"),
        ),
        // `retry_failures` acts on every failed package: a package would be ignored.
        (
            "/api/v1/control",
            json!({"action": "retry_failures", "package": "=dev-libs/a-1"}),
            400,
            Some("package"),
        ),
    ];
    for (ep, body, want, field) in cases {
        // Drone endpoints take a drone's credential, never the admin token.
        let admin = ep.contains("queue") || ep.contains("control");
        let (code, v) = request(
            "POST",
            &format!("{}{}", s.url, ep),
            Some(&body.to_string()),
            admin.then_some(token.as_str()),
        );
        assert_eq!(code, want, "{ep} {body}: {v}");
        assert!(v["error"].as_str().is_some(), "{ep} {body}: {v}");
        if let Some(f) = field {
            if ep == "/api/v1/register" && f == "name" {
                assert_eq!(v["field"], "node_name", "{v}");
            } else {
                assert_eq!(v["field"], f, "{ep} {body}: {v}");
            }
        }
    }
    let (_, v) = request(
        "POST",
        &format!("{}/api/v1/queue", s.url),
        Some(r#"{"packages": []}"#),
        Some(&token),
    );
    assert_eq!(v["error"], "No packages", "v3's exact error: {v}");
    let (code, v) = s.get("/api/v1/work?id=ghost");
    assert_eq!((code, &v["package"]), (404, &Value::Null), "{v}");
    assert_eq!(v["error"], "unknown drone; register first");
    let (code, _) = s.get("/api/v1/work");
    assert_eq!(code, 400);
    let (code, v) = s.get("/api/v1/queue?limit=lots");
    assert_eq!((code, v["field"].as_str()), (400, Some("limit")));
    let (code, _) = s.get("/api/v1/queue?state=sideways");
    assert_eq!(code, 400);
    let (code, v) = s.get("/api/v1/explain?package=%%%");
    assert_eq!(code, 400, "{v}");
    let (code, _) = s.get("/api/v1/nope");
    assert_eq!(code, 404);
    let (code, _) = request("DELETE", &format!("{}/api/v1/status", s.url), None, None);
    assert_eq!(code, 405);
    // After all that, the server still serves.
    let (code, h) = s.get("/api/v1/health");
    assert_eq!((code, h["status"].as_str()), (200, Some("ok")));
}

#[test]
fn every_admin_endpoint_refuses_a_missing_or_wrong_token() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    s.post("/api/v1/register", &json!({"node_name": "d1"}));
    let eps: [(&str, &str); 8] = [
        ("POST", "/api/v1/queue"),
        ("POST", "/api/v1/control"),
        ("POST", "/api/v1/nodes/d1/pause"),
        ("POST", "/api/v1/nodes/d1/resume"),
        ("POST", "/api/v1/nodes/d1/drain"),
        ("POST", "/api/v1/nodes/d1/reset-escalation"),
        ("GET", "/api/v1/sql/tables"),
        ("GET", "/api/v1/sql/query?q=SELECT%201"),
    ];
    for (m, ep) in eps {
        let url = format!("{}{}", s.url, ep);
        let body = match ep {
            "/api/v1/queue" => json!({"packages": ["=a/b-1"]}).to_string(),
            "/api/v1/control" => json!({"action": "pause"}).to_string(),
            _ => "{}".to_string(),
        };
        let b = (m == "POST").then_some(body.as_str());
        let (code, v) = request(m, &url, b, None);
        assert_eq!(code, 401, "{m} {ep} without a token: {v}");
        let (code, v) = request(m, &url, b, Some("wrong-token"));
        assert_eq!(code, 403, "{m} {ep} with a wrong token: {v}");
        let (code, v) = request(m, &url, b, Some(&s.token()));
        assert_eq!(code, 200, "{m} {ep} with the token: {v}");
    }
    // Nothing the refused calls asked for happened (the last, authorised pause did).
    let (_, q) = s.get("/api/v1/queue");
    assert_eq!(q["total"], 1, "only the authorised queue call counted: {q}");
    // The SQL explorer is read-only even with the token.
    let (code, v) = s.admin_get("/api/v1/sql/query?q=DELETE%20FROM%20packages");
    assert_eq!(code, 400, "{v}");
    let (code, v) = s.admin_get("/api/v1/sql/query?q=SELECT%20atom%2C%20status%20FROM%20packages");
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(1), "{v}");
    // One query at a time: while a runaway one uses its budget, another is told to retry.
    let runaway = std::thread::spawn({
        let url = format!(
            "{}/api/v1/sql/query?q=WITH%20RECURSIVE%20r(x)%20AS%20(SELECT%201%20UNION%20ALL%20SELECT%20x%2B1%20FROM%20r)%20SELECT%20count(*)%20FROM%20r",
            s.url
        );
        let token = s.token();
        move || request("GET", &url, None, Some(&token))
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (code, v) = s.admin_get("/api/v1/sql/query?q=SELECT%201");
    assert_eq!(code, 429, "{v}");
    let (code, v) = runaway.join().expect("runaway query");
    assert_eq!(code, 400, "stopped at its budget: {v}");
    let (code, v) = s.admin_get("/api/v1/sql/query?q=SELECT%201");
    assert_eq!(code, 200, "the turn is given back: {v}");
    // A query may ask for a shorter budget, never a longer one.
    let (code, v) = s.admin_get("/api/v1/sql/query?timeout_ms=2001&q=SELECT%201");
    assert_eq!((code, &v["field"]), (400, &json!("timeout_ms")), "{v}");
    for bad in ["0", "-1", "x", "99999999999999999999"] {
        let (code, v) = s.admin_get(&format!("/api/v1/sql/query?timeout_ms={bad}&q=SELECT%201"));
        assert_eq!(code, 400, "timeout_ms={bad}: {v}");
    }
    let (code, v) = s.admin_get(
        "/api/v1/sql/query?timeout_ms=120&q=WITH%20RECURSIVE%20r(x)%20AS%20(SELECT%201%20UNION%20ALL%20SELECT%20x%2B1%20FROM%20r)%20SELECT%20count(*)%20FROM%20r",
    );
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("budget of 120 ms"), "{v}");
}

#[test]
fn a_drone_token_when_configured_is_required() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[("SWARM_DRONE_TOKEN", "drone-secret")]);
    let body = json!({"node_name": "d1"}).to_string();
    let url = format!("{}/api/v1/register", s.url);
    let (code, _) = request("POST", &url, Some(&body), None);
    assert_eq!(code, 401);
    let (code, v) = request("POST", &url, Some(&body), Some("drone-secret"));
    assert_eq!(code, 200, "{v}");
    // Read endpoints stay open.
    assert_eq!(s.get("/api/v1/status").0, 200);
}

#[test]
fn artifact_uploads_are_checked_and_atomic() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[("SWARM_MAX_ARTIFACT_BYTES", "65536")]);
    let pkg = tempfile::tempdir().expect("dir");
    let gpkg = pkg.path().join("foo-1.0.gpkg.tar");
    swarm_net::binpkg::write_gpkg("dev-libs/foo-1.0", &Default::default(), &[], &gpkg)
        .expect("write_gpkg");
    let data = std::fs::read(&gpkg).expect("gpkg");
    let sha = hex::encode(Sha256::digest(&data));
    let url = |p: &str| format!("{}/api/v1/artifacts/{}", s.url, p);
    // Uploads are taken only under a live lease: one drone holds each package.
    let (code, _) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/foo-1.0", "=dev-libs/bar-1.0", "=dev-libs/big-1.0"]}),
    );
    assert_eq!(code, 200);
    for d in ["up-1", "up-2", "up-3"] {
        s.post("/api/v1/register", &json!({"node_name": d}));
        assert!(work(&s, d)["lease"].as_u64().is_some());
    }
    let (code, v) = request_raw(
        "PUT",
        &url("dev-libs/foo-1.0.gpkg.tar"),
        Some(&data),
        None,
        &[("X-Sha256", sha.as_str())],
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["sha256"], sha.as_str());
    let stored =
        std::fs::read(dir.path().join("staging/dev-libs/foo-1.0.gpkg.tar")).expect("stored");
    assert_eq!(hex::encode(Sha256::digest(&stored)), sha);

    // Raw requests: an HTTP client would normalise `..` away before sending.
    for bad in [
        "../etc/passwd.gpkg.tar",
        "../../x-1.gpkg.tar",
        "dev-libs/..%2F..%2Fx-1.gpkg.tar",
        "%2Fetc/x-1.gpkg.tar",
        "/etc/x-1.gpkg.tar",
        "dev-libs/foo.exe",
        "dev-libs/a/b-1.gpkg.tar",
    ] {
        let code = raw_put(&s.addr, &format!("/api/v1/artifacts/{bad}"), &data);
        assert_eq!(code, 400, "{bad} was not refused");
    }
    assert!(!dir.path().join("etc").exists() && !dir.path().join("x-1.gpkg.tar").exists());
    let wrong = "0".repeat(64);
    let (code, v) = request_raw(
        "PUT",
        &url("dev-libs/bar-1.0.gpkg.tar"),
        Some(&data),
        None,
        &[("X-Sha256", wrong.as_str())],
    );
    assert_eq!(code, 400, "{v}");
    assert!(
        !dir.path()
            .join("staging/dev-libs/bar-1.0.gpkg.tar")
            .exists(),
        "a mismatch stores nothing"
    );
    let (code, v) = request_raw(
        "PUT",
        &url("dev-libs/big-1.0.gpkg.tar"),
        Some(&vec![0u8; 70_000]),
        None,
        &[],
    );
    assert_eq!(code, 413, "{v}");
    assert!(!dir
        .path()
        .join("staging/dev-libs/big-1.0.gpkg.tar")
        .exists());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("staging/dev-libs"))
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
}

/// A PUT with the path exactly as given, over a plain TCP socket.
fn raw_put(addr: &str, path: &str, body: &[u8]) -> u16 {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(addr).expect("connect");
    let head = format!(
        "PUT {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).expect("write");
    sock.write_all(body).expect("write");
    let mut out = String::new();
    let _ = sock.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn acknowledged_completions_survive_a_sigkill_under_load() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start(dir.path(), &[]);
    let n_pkgs = 300;
    let pkgs: Vec<String> = (0..n_pkgs).map(|i| format!("=virtual/p{i}-1")).collect();
    let (code, _) = s.admin_post("/api/v1/queue", &json!({"packages": pkgs}));
    assert_eq!(code, 200);
    let drones: Vec<String> = (0..6).map(|i| format!("load-{i}")).collect();
    for d in &drones {
        s.post(
            "/api/v1/register",
            &json!({"node_name": d, "capabilities": {"cores": 64}}),
        );
    }
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let url = s.url.clone();
    let threads: Vec<_> = drones
        .iter()
        .map(|d| {
            let (d, url, acked, stop) = (d.clone(), url.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new()
                    .timeout(std::time::Duration::from_secs(5))
                    .build();
                while !stop.load(Ordering::Relaxed) {
                    let Ok(w) = agent.get(&format!("{url}/api/v1/work?id={d}")).call() else {
                        continue;
                    };
                    let Ok(w) = w.into_json::<Value>() else {
                        continue;
                    };
                    let Some(p) = w["package"].as_str() else {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    };
                    let body =
                        json!({"id": d, "package": p, "status": "success", "lease": w["lease"]});
                    if let Ok(r) = agent
                        .post(&format!("{url}/api/v1/complete"))
                        .send_json(body)
                    {
                        if let Ok(v) = r.into_json::<Value>() {
                            if v["accepted"] == true {
                                if let Ok(mut a) = acked.lock() {
                                    a.insert(p.to_string());
                                }
                            }
                        }
                    }
                }
            })
        })
        .collect();
    // Kill once some work is acknowledged, mid-stream.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while acked.lock().map(|a| a.len()).unwrap_or(0) < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "no progress under load"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    s.kill9();
    let acked_at_kill: BTreeSet<String> = acked.lock().expect("lock").clone();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let acked_total: BTreeSet<String> = acked.lock().expect("lock").clone();
    assert!(acked_total.len() >= acked_at_kill.len());
    s.restart();
    let (_, built) = s.get("/api/v1/queue?state=built&limit=1000");
    let built: BTreeSet<String> = built["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["atom"].as_str().map(str::to_string))
        .collect();
    let lost: Vec<_> = acked_total.difference(&built).collect();
    assert!(
        lost.is_empty(),
        "acknowledged completions lost in the kill: {lost:?}"
    );
    // No package has two live leases.
    let (_, nodes) = s.get("/api/v1/nodes?all=true");
    let mut holders: BTreeMap<String, u32> = BTreeMap::new();
    for n in nodes.as_array().expect("nodes") {
        for l in n["leases"].as_array().expect("leases") {
            *holders
                .entry(l["package"].as_str().expect("pkg").to_string())
                .or_default() += 1;
        }
    }
    assert!(
        holders.values().all(|&c| c == 1),
        "double leases: {holders:?}"
    );
}

#[test]
fn sigterm_stops_the_server_cleanly_and_state_persists() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start(dir.path(), &[]);
    s.admin_post("/api/v1/queue", &json!({"packages": ["=virtual/keep-1"]}));
    let (_, health) = s.get("/api/v1/health");
    let logged = health["seq"].as_u64().expect("seq");
    assert_eq!(s.terminate(), Some(0), "SIGTERM must exit 0");
    s.restart();
    let (_, q) = s.get("/api/v1/queue");
    assert_eq!(q["total"], 1, "{q}");
    // A clean stop writes a snapshot: the next start (maybe of another swarm build, which
    // could decide the log otherwise) replays nothing (h33 F1).
    let (code, snap) = s.admin_get("/api/v1/sql/query?q=SELECT%20max(seq)%20FROM%20snapshots");
    assert_eq!(code, 200, "{snap}");
    assert!(
        snap["rows"][0][0].as_u64() >= Some(logged),
        "no snapshot at seq {logged} or later: {snap}"
    );
    // The events feed is served from the database, across restarts.
    let (_, ev) = s.get("/api/v1/events?after=0&limit=1000");
    let kinds: Vec<&str> = ev["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"queued"), "{kinds:?}");
    let next = ev["next"].as_i64().expect("next");
    let (_, later) = s.get(&format!("/api/v1/events?after={next}"));
    assert_eq!(later["events"].as_array().map(Vec::len), Some(0));
    let (code, m) = request("GET", &format!("{}/metrics", s.url), None, None);
    assert_eq!(code, 200);
    let text = m.as_str().expect("metrics text");
    for name in [
        "swarm_queue_packages",
        "swarm_drones",
        "swarm_leases",
        "swarm_replan_pending",
        "swarm_publish_cost_seconds",
        "swarm_http_requests_total",
        "swarm_reclaims_total",
    ] {
        assert!(text.contains(name), "metrics lack {name}");
    }
}

#[test]
fn a_revoke_is_repeated_after_a_restart_until_the_drone_stops_reporting_its_work() {
    let dir = tempfile::tempdir().expect("dir");
    let mut s = Server::start(dir.path(), &[]);
    s.post(
        "/api/v1/register",
        &v3_register("drone-r-0001", "drone-rho", Value::Null),
    );
    s.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/revoked-1"]}),
    );
    let p = work(&s, "drone-r-0001")["package"]
        .as_str()
        .expect("a package for the one drone")
        .to_string();
    let (code, r) = s.admin_post(
        "/api/v1/control",
        &json!({"action": "reclaim", "package": p}),
    );
    assert_eq!(code, 200, "{r}");
    // The server dies before the drone calls again: the revoke is core state, not memory.
    s.kill9();
    s.restart();
    let revoked = |hb: &Value| -> Vec<String> {
        hb["revoke"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    // A heartbeat that does not say what it builds hears the revoke again, twice.
    let mut silent = v3_register("drone-r-0001", "drone-rho", Value::Null);
    silent
        .as_object_mut()
        .expect("object")
        .remove("current_task");
    for _ in 0..2 {
        let (code, hb) = s.post("/api/v1/register", &silent);
        assert_eq!(code, 200, "{hb}");
        assert_eq!(
            revoked(&hb),
            vec![p.clone()],
            "repeated after a restart: {hb}"
        );
    }
    // Given the atom again, it must not be told to stop it.
    let w = work(&s, "drone-r-0001");
    assert_eq!(w["package"], p.as_str(), "{w}");
    assert!(w.get("revoke").is_none(), "{w}");
    let (_, hb) = s.post("/api/v1/register", &silent);
    assert!(hb.get("revoke").is_none(), "{hb}");
}

#[test]
fn a_read_storm_during_writes_is_served_with_rationed_copies() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let pkgs: Vec<String> = (0..2000).map(|i| format!("=virtual/storm{i}-1")).collect();
    s.admin_post("/api/v1/queue", &json!({ "packages": pkgs }));
    let metric = |name: &str| counter(&s, name);
    let copies_before = metric("swarm_published_copies_total");
    let stop = Arc::new(AtomicBool::new(false));
    let url = s.url.clone();
    // Writers: heartbeats commit continuously, so every read finds the copy stale.
    let writers: Vec<_> = (0..3)
        .map(|i| {
            let (url, stop) = (url.clone(), stop.clone());
            std::thread::spawn(move || {
                let body = json!({"node_name": format!("storm-{i}")}).to_string();
                while !stop.load(Ordering::Relaxed) {
                    request("POST", &format!("{url}/api/v1/register"), Some(&body), None);
                }
            })
        })
        .collect();
    let started = std::time::Instant::now();
    let readers: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut reads = 0u64;
                for _ in 0..25 {
                    let (code, v) = request("GET", &format!("{url}/api/v1/status"), None, None);
                    assert_eq!(code, 200, "{v}");
                    reads += 1;
                }
                reads
            })
        })
        .collect();
    let reads: u64 = readers.into_iter().map(|r| r.join().expect("reader")).sum();
    let secs = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        let _ = w.join();
    }
    let copies = metric("swarm_published_copies_total") - copies_before;
    assert_eq!(reads, 200);
    // One forced copy per 50 ms at most, plus the writer's own idle refreshes.
    let allowed = (secs / 0.05).ceil() as u64 + 5 + secs.ceil() as u64;
    assert!(
        copies <= allowed,
        "{copies} copies for {reads} reads in {secs:.2} s (allowed {allowed})"
    );
    assert!(
        copies >= 1,
        "reads after writes must have forced at least one copy"
    );
}

/// A report of a virtual package (no binary to look for) costs no copy of the
/// core: one per report made `swarm bench http` 50 times slower on a large queue.
#[test]
fn reports_of_virtual_packages_force_no_copies_of_the_core() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    // Past the size up to which the writer refreshes the copy by itself when idle.
    let pkgs: Vec<String> = (0..6000).map(|i| format!("=virtual/big{i}-1")).collect();
    s.admin_post("/api/v1/queue", &json!({ "packages": pkgs }));
    let (code, v) = s.post(
        "/api/v1/register",
        &v3_register("copy-0001", "copy-drone", Value::Null),
    );
    assert_eq!(code, 200, "{v}");
    let copies = || counter(&s, "swarm_published_copies_total");
    let before = copies();
    for _ in 0..30 {
        let w = work(&s, "copy-0001");
        let pkg = w["package"].as_str().expect("a package").to_string();
        let r = complete(&s, "copy-0001", &pkg, "success");
        assert_eq!(r["accepted"], true, "{r}");
    }
    let made = copies() - before;
    assert!(
        made <= 3,
        "{made} copies of the core for 30 work->complete cycles"
    );
}

/// Every sample of a histogram family in a `/metrics` text: `(labels and le, value)`.
fn histogram(text: &str, name: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(name)?;
            let (labels, v) = rest.rsplit_once(' ')?;
            Some((labels.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// The value of one sample of `histogram`'s output, by its suffix and labels.
fn sample(histogram: &[(String, f64)], label: &str) -> Option<f64> {
    histogram.iter().find(|(l, _)| l == label).map(|(_, v)| *v)
}

#[test]
fn fsyncs_writer_waits_and_rounds_are_timed_on_metrics() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path(), &[]);
    // A drone's request (answered after its fsync) and a push (a bulk job).
    let (code, _) = s.post(
        "/api/v1/register",
        &v3_register("timed-0001", "timed", json!(null)),
    );
    assert_eq!(code, 200);
    let (code, q) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": [{"atom": "=app-misc/timed-1"}]}),
    );
    assert_eq!(code, 200, "{q}");
    // Every fsync counted is timed, once (both read from one scrape).
    let (_, m) = request("GET", &format!("{}/metrics", s.url), None, None);
    let text = m.as_str().unwrap_or_default().to_owned();
    let fsync = histogram(&text, "swarm_store_fsync_duration_seconds");
    let fsyncs = counter_in(&text, "swarm_store_fsyncs_total");
    let count = sample(&fsync, "_count").expect("fsync count");
    assert!(count >= 1.0, "{fsync:?}");
    assert_eq!(count as u64, fsyncs, "{fsync:?}");
    let inf = sample(&fsync, "_bucket{le=\"+Inf\"}");
    assert_eq!(inf, Some(count), "{fsync:?}");
    // Buckets only grow, and an fsync takes some time.
    let buckets: Vec<f64> = fsync
        .iter()
        .filter(|(l, _)| l.starts_with("_bucket"))
        .map(|(_, v)| *v)
        .collect();
    assert!(buckets.windows(2).all(|w| w[0] <= w[1]), "{fsync:?}");
    let sum = sample(&fsync, "_sum");
    assert!(sum.is_some_and(|v| v > 0.0), "{fsync:?}");
    // The drone's request and the push each waited for the writer, in their own lane.
    let waits = histogram(&text, "swarm_writer_wait_seconds");
    for lane in ["drone", "bulk"] {
        let n = sample(&waits, &format!("_count{{lane=\"{lane}\"}}"));
        assert!(n.is_some_and(|n| n >= 1.0), "lane {lane}: {waits:?}");
    }
    // The writer's rounds (at least the two commits above) are timed too.
    let steps = histogram(&text, "swarm_writer_step_seconds");
    let rounds = sample(&steps, "_count{step=\"round\"}");
    assert!(rounds.is_some_and(|n| n >= 2.0), "{steps:?}");
}

#[test]
fn a_big_push_goes_in_parts_and_is_answered_once_with_every_package_counted() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path(), &[]);
    // A chain of 600 (each depends on the one before): the server commits
    // it in 38 parts (of `swarm_core::PART_WEIGHT`: about 16 packages) and
    // answers once, with every part counted.
    let packages: Vec<Value> = (0..600)
        .map(|i| {
            let deps: Vec<String> = (i > 0)
                .then(|| format!("=app-misc/chain{}-1", i - 1))
                .into_iter()
                .collect();
            json!({"atom": format!("=app-misc/chain{i}-1"), "deps": deps})
        })
        .collect();
    let fsyncs = || counter(&s, "swarm_store_fsyncs_total");
    // One acknowledged write first: its answer comes after its fsync, so the start-up's own
    // fsyncs are all counted before the push (on a loaded machine they can still be pending).
    let (code, _) = s.post(
        "/api/v1/register",
        &v3_register("settle-0001", "settle", json!(null)),
    );
    assert_eq!(code, 200);
    let commits = || counter(&s, "swarm_store_batches_total");
    let commits_before = commits();
    let fsyncs_before = fsyncs();
    let (code, q) = s.admin_post("/api/v1/queue", &json!({ "packages": packages }));
    assert_eq!(code, 200, "{q}");
    assert_eq!(
        (q["queued"].as_u64(), q["already"].as_u64()),
        (Some(600), Some(0)),
        "{q}"
    );
    // Parts that answer nobody are not fsynced one by one: the fsync before
    // the answer covers them all (a heartbeat meanwhile does not queue
    // behind a disk kept busy by the push). Reading the count may add one:
    // `/metrics` asks the writer for a fresh copy, and when that round also
    // commits a tick of the push's critical-path walk (still going on a
    // loaded machine: 16 of 40 runs beside three spinning threads), the
    // copy's answer waits for that tick's fsync. An fsync a commit would
    // be 3 at least: the parts go in 3 commits (below).
    let made = fsyncs() - fsyncs_before;
    assert!(
        (1..=2).contains(&made),
        "{made} fsyncs for one push of 38 parts"
    );
    // While nothing else waits, parts share commits (up to 16 a commit):
    // the 38 parts of this push go in 3 commits, not 38 (the rest of the
    // count: ticks and the publish the reads here ask for).
    let made = commits() - commits_before;
    assert!(made < 12, "{made} group commits for one push of 38 parts");
    let (_, status) = s.get("/api/v1/status");
    assert_eq!(status["total"], 600, "{status}");
    // Only the head of the chain is ready: no part let a dependent go first.
    assert_eq!(status["counts"]["ready"], json!(1), "{status}");
    let (code, again) = s.admin_post("/api/v1/queue", &json!({ "packages": packages }));
    assert_eq!(code, 200, "{again}");
    assert_eq!(
        (again["queued"].as_u64(), again["already"].as_u64()),
        (Some(0), Some(600)),
        "{again}"
    );
}

/// A v3 drone's rsynced file over the upload limit is refused unread, as an
/// upload of it would be (before this check it was hashed whole, of any size,
/// while the drone's request waited; found by the breaker).
#[test]
fn a_v3_drones_rsynced_file_over_the_upload_limit_is_refused_unread() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[("SWARM_MAX_ARTIFACT_BYTES", "1024")]);
    let (code, r) = s.post(
        "/api/v1/register",
        &v3_register("drone-c-0003", "drone-gamma", Value::Null),
    );
    assert_eq!(code, 200, "{r}");
    let (code, q) = s.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/foo-1.0"]}));
    assert_eq!(code, 200, "{q}");
    let w = work(&s, "drone-c-0003");
    let pkg = w["package"].as_str().expect("a package").to_string();
    // A valid build of the package, but larger than an upload may be.
    stage_as(&s, &pkg, Some(pkg.trim_start_matches('=')));
    let c = complete(&s, "drone-c-0003", &pkg, "success");
    assert_eq!(c["recorded"], "invalid_binary", "{c}");
    assert_eq!(c["accepted"], false, "{c}");
}

/// A v3 drone's rsynced file counts only when it passes the checks an upload
/// passes: junk, or a valid package of something else, is `invalid_binary`.
#[test]
fn a_v3_drones_rsynced_file_counts_only_when_it_is_a_valid_build() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let (code, r) = s.post(
        "/api/v1/register",
        &v3_register("drone-c-0003", "drone-gamma", Value::Null),
    );
    assert_eq!(code, 200, "{r}");
    let (code, q) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/foo-1.0", "=dev-libs/bar-2.0", "=app-misc/baz-3"]}),
    );
    assert_eq!(code, 200, "{q}");
    for (inside, recorded) in [
        (None, "invalid_binary"),
        (Some("dev-libs/other-9"), "invalid_binary"),
        (Some(""), "built"),
    ] {
        let w = work(&s, "drone-c-0003");
        let pkg = w["package"].as_str().expect("a package").to_string();
        let inside = inside.map(|c| {
            if c.is_empty() {
                pkg.trim_start_matches('=')
            } else {
                c
            }
        });
        stage_as(&s, &pkg, inside);
        let c = complete(&s, "drone-c-0003", &pkg, "success");
        assert_eq!(c["recorded"], recorded, "{pkg} holding {inside:?}: {c}");
        assert_eq!(c["accepted"], recorded == "built", "{c}");
    }
}

#[test]
fn a_v3_drones_rsynced_file_of_another_slot_than_its_lease_does_not_count() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let (code, r) = s.post(
        "/api/v1/register",
        &v3_register("drone-c-0004", "drone-delta", Value::Null),
    );
    assert_eq!(code, 200, "{r}");
    let (code, q) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["app-misc/u1:2", "app-misc/u2:2"]}),
    );
    assert_eq!(code, 200, "{q}");
    // Held to the lease's slot as an upload is (h18's F4).
    let staging = s.data_dir.join("staging/app-misc");
    std::fs::create_dir_all(&staging).expect("mkdir");
    for _ in 0..2 {
        let w = work(&s, "drone-c-0004");
        let pkg = w["package"].as_str().expect("a package").to_string();
        let (cpv, slot, recorded) = match pkg.as_str() {
            "app-misc/u1:2" => ("app-misc/u1-3", "3", "invalid_binary"),
            _ => ("app-misc/u2-1", "2", "built"),
        };
        let bytes = support::packages::gpkg_of_slot(dir.path(), cpv, slot);
        let file = format!("{}.gpkg.tar", cpv.trim_start_matches("app-misc/"));
        std::fs::write(staging.join(file), bytes).expect("stage");
        let c = complete(&s, "drone-c-0004", &pkg, "success");
        assert_eq!(c["recorded"], recorded, "{pkg} as SLOT {slot}: {c}");
    }
}

/// One POST over a raw socket, with exactly these headers (as a browser
/// would send a form or a `fetch` with `text/plain`): status and body.
fn raw_post(s: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    raw_request(s, "POST", path, &s.addr.to_string(), headers, body)
}

/// One request over a raw socket naming the server `host`, with exactly these headers.
fn raw_request(
    s: &Server,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    use std::io::{Read, Write};
    let mut conn = std::net::TcpStream::connect(&s.addr).expect("connect");
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head += &format!("{k}: {v}\r\n");
    }
    conn.write_all(format!("{head}\r\n{body}").as_bytes())
        .expect("write");
    let mut reply = String::new();
    conn.read_to_string(&mut reply).expect("read");
    let status = reply
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (status, reply)
}

#[test]
fn a_web_page_on_another_origin_cannot_drive_the_drone_api() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let body = |name: &str| v3_register(&format!("m-{name}"), name, Value::Null).to_string();
    let plain = ("Content-Type", "text/plain");
    let (code, reply) = raw_post(
        &s,
        "/api/v1/register",
        &[plain, ("Origin", "http://evil.example")],
        &body("csrf-victim"),
    );
    assert_eq!(code, 403, "{reply}");
    assert!(reply.contains("cross-origin request refused"), "{reply}");
    let (code, reply) = raw_post(
        &s,
        "/api/v1/register",
        &[plain, ("Sec-Fetch-Site", "cross-site")],
        &body("csrf-victim"),
    );
    assert_eq!(code, 403, "{reply}");
    // The dashboard's own origin, and drones (no Origin), are served.
    let own = format!("http://{}", s.addr);
    let (code, reply) = raw_post(
        &s,
        "/api/v1/register",
        &[("Origin", &own), ("Sec-Fetch-Site", "same-origin")],
        &body("same-origin"),
    );
    assert_eq!(code, 200, "{reply}");
    let (code, reply) = raw_post(&s, "/api/v1/register", &[], &body("no-origin"));
    assert_eq!(code, 200, "{reply}");
    let browser_get = |path: &str, headers: &[(&str, &str)]| {
        support::request_raw("GET", &format!("{}{path}", s.url), None, None, headers)
    };
    for (what, path, headers) in [
        // An `<img>` on another port of this host asks for work as a
        // credential-less loopback drone: a GET with no Origin, `same-site`.
        (
            "same-site",
            "/api/v1/work?id=no-origin",
            &[("Sec-Fetch-Site", "same-site"), ("Sec-Fetch-Dest", "image")][..],
        ),
        // The same from a page on a plain-http host name: the browser sends
        // no Sec-Fetch-Site and no Origin, but its User-Agent.
        (
            "a browser",
            "/api/v1/work?id=no-origin",
            &[("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0")][..],
        ),
        // Another site's page gets no event stream either.
        (
            "another site's stream",
            "/api/v1/events/stream",
            &[
                ("Origin", "http://evil.example"),
                ("Sec-Fetch-Site", "cross-site"),
            ][..],
        ),
    ] {
        let (code, v) = browser_get(path, headers);
        assert_eq!(code, 403, "{what}: {v}");
    }
    let (_, nodes) = s.get("/api/v1/nodes?all=true");
    let nodes = nodes.to_string();
    assert!(!nodes.contains("csrf-victim"), "recorded: {nodes}");
    assert!(
        nodes.contains("same-origin") && nodes.contains("no-origin"),
        "{nodes}"
    );
}

/// DNS rebinding: a page under `evil.example`, whose name the attacker points at this server,
/// is same-origin to the browser (its Origin and Host agree), so only the name tells it apart.
/// A browser's request must name the server by an address, localhost, this machine's name or
/// an allowed name; drones and the CLI are not asked (h30 F4).
#[test]
fn a_browser_reaching_the_server_under_a_foreign_name_is_refused() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(
        dir.path(),
        &[("SWARM_ALLOWED_HOSTS", "swarm.example.org,*.lan")],
    );
    let port = s.addr.rsplit(':').next().expect("a port").to_string();
    let chrome = ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0");
    let get = |host: &str, headers: &[(&str, &str)]| {
        raw_request(
            &s,
            "GET",
            "/api/v1/status",
            &format!("{host}:{port}"),
            headers,
            "",
        )
    };
    for host in [
        "evil.example",
        "127.0.0.1.nip.io",
        "swarm.example.org.evil.example",
    ] {
        let origin = format!("http://{host}:{port}");
        for headers in [
            &[chrome][..],
            &[
                ("Origin", origin.as_str()),
                ("Sec-Fetch-Site", "same-origin"),
            ][..],
            &[("Sec-Fetch-Mode", "navigate")][..],
            // Firefox lets a page set its User-Agent and sends no Sec-Fetch-* to plain http,
            // but a page cannot take its Accept-Language away (h35 F2).
            &[("User-Agent", "x"), ("Accept-Language", "en-US,en;q=0.5")][..],
        ] {
            let (code, reply) = get(host, headers);
            assert_eq!(code, 403, "{host} {headers:?}: {reply}");
            assert!(reply.contains("allowed_hosts"), "{reply}");
        }
    }
    for host in [
        "127.0.0.1",
        "localhost",
        "swarm.example.org",
        "farm.lan",
        "[::1]",
    ] {
        let (code, reply) = get(host, &[chrome, ("Sec-Fetch-Site", "same-origin")]);
        assert_eq!(code, 200, "{host}: {reply}");
    }
    // Two Host headers: which one counts could differ between a proxy and the server.
    let (code, reply) = get("127.0.0.1", &[("Host", "evil.example")]);
    assert_eq!(code, 400, "{reply}");
    // Not a browser: a drone or curl naming the server anyhow is served as before.
    let (code, reply) = get("evil.example", &[]);
    assert_eq!(code, 200, "{reply}");
    let (code, reply) = raw_request(
        &s,
        "POST",
        "/api/v1/register",
        "drones.example",
        &[],
        &v3_register("m-1", "named-anyhow", Value::Null).to_string(),
    );
    assert_eq!(code, 200, "{reply}");
}

#[test]
fn json_followed_by_more_is_refused_and_queues_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let token = s.token();
    for body in [
        r#"{"packages":["=dev-libs/trailing-1.0"]}{"x":1}"#,
        r#"{"packages":["=dev-libs/trailing-1.0"]} garbage"#,
    ] {
        let url = format!("{}/api/v1/queue", s.url);
        let (code, v) = request_raw("POST", &url, Some(body.as_bytes()), Some(&token), &[]);
        assert_eq!(code, 400, "{body}: {v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or("")
                .contains("trailing characters"),
            "{v}"
        );
    }
    let (code, v) = s.post("/api/v1/register", &json!({"id": "m1", "name": "drone-a"}));
    assert_eq!(code, 200, "{v}");
    let url = format!("{}/api/v1/register", s.url);
    let (code, v) = request_raw(
        "POST",
        &url,
        Some(br#"{"id":"m1","name":"drone-a"} garbage"#),
        None,
        &[],
    );
    assert_eq!(code, 400, "{v}");
    let st = s.wait_for(5, "status", |_| true);
    assert_eq!(st["counts"]["queued"], 0, "{st}");
}

#[test]
fn a_bad_queue_number_names_its_field_and_bound() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let atom = "=dev-libs/bounds-1.0";
    for (item, field, says) in [
        (
            json!({"atom": atom, "priority": 1e300}),
            "priority",
            "from -2147483648 to 2147483647",
        ),
        (
            json!({"atom": atom, "priority": 1.5}),
            "priority",
            "from -2147483648 to 2147483647",
        ),
        (
            json!({"atom": atom, "priority": 3_000_000_000u64}),
            "priority",
            "from -2147483648 to 2147483647",
        ),
        (
            json!({"atom": atom, "estimate_s": -1}),
            "estimate_s",
            "a whole number of seconds from 0",
        ),
        (
            json!({"atom": atom, "prio": 1}),
            "prio",
            "unknown field `prio`",
        ),
    ] {
        let (code, v) = s.admin_post(
            "/api/v1/queue",
            &json!({ "packages": ["=dev-libs/ok-1.0", item] }),
        );
        assert_eq!(code, 400, "{item}: {v}");
        assert_eq!(v["field"], format!("packages[1].{field}"), "{item}: {v}");
        let error = v["error"].as_str().unwrap_or_default();
        assert!(error.contains(says), "{item}: {error}");
        assert!(
            !error.contains("did not match any variant"),
            "{item}: {error}"
        );
    }
    let (code, v) = s.admin_post("/api/v1/queue", &json!({ "packages": [42] }));
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or_default()
            .contains("an atom string or an object"),
        "{v}"
    );
    let (code, v) = s.admin_post("/api/v1/queue", &json!({ "packages": [atom, {"atom": "=dev-libs/spec-1.0", "priority": -5, "estimate_s": 60}] }));
    assert_eq!((code, &v["queued"]), (200, &json!(2)), "{v}");
    s.post(
        "/api/v1/register",
        &v3_register("m-slots", "slots", json!(null)),
    );
    let (code, v) = s.get("/api/v1/work?id=m-slots&free_slots=99999999999");
    assert_eq!(code, 400, "{v}");
    let error = v["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("at most 1024") && !error.contains("whole number"),
        "{error}"
    );
}

/// With `read_token` set, the API's reads and `/metrics` need it (or the
/// admin token); health, `/binhost/`, the dashboard's own files and the
/// drones' calls stay as they are, and the CLI sends `$SWARM_READ_TOKEN`.
#[test]
fn a_read_token_guards_the_reads_and_nothing_else() {
    let dir = tempfile::tempdir().expect("dir");
    let read = "read-secret-0123456789";
    let s = Server::start(dir.path(), &[("SWARM_READ_TOKEN", read)]);
    let admin = s.token();
    let get = |path: &str, token: Option<&str>| {
        support::request_raw("GET", &format!("{}{path}", s.url), None, token, &[]).0
    };
    for path in [
        "/api/v1/status",
        "/api/v1/queue",
        "/api/v1/events?after=0",
        "/api/v1/events/stream",
        "/api/v1/logs/1",
        "/metrics",
        // Served as the path without its trailing slashes (h10: `/metrics/` was open).
        "/metrics/",
        "/metrics//",
        "/api/v1/metrics/",
        "/api/v1/status/",
    ] {
        assert_eq!(get(path, None), 401, "{path} without a token");
        assert_eq!(
            get(path, Some("wrong-token")),
            403,
            "{path} with a wrong one"
        );
    }
    assert_eq!(get("/api/v1/status", Some(read)), 200);
    assert_eq!(
        get("/api/v1/status", Some(&admin)),
        200,
        "the admin token reads too"
    );
    assert_eq!(get("/api/v1/health", None), 200, "monitoring asks bare");
    assert_eq!(
        get("/binhost/Packages", None),
        404,
        "Portage clients are not asked"
    );
    assert_eq!(get("/", None), 200, "the page itself asks for the token");
    // Drones are not readers: their calls keep their own rules.
    let (code, v) = s.post(
        "/api/v1/register",
        &json!({"node_name": "drone-r", "capabilities": {"cores": 2}}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(get("/api/v1/work?id=drone-r", None) < 300);
    // A read token is no admin token.
    let (code, v) = support::request(
        "POST",
        &format!("{}/api/v1/control", s.url),
        Some(&json!({"action": "pause"}).to_string()),
        Some(read),
    );
    assert_eq!(code, 403, "{v}");
    // The CLI: `swarm status` sends $SWARM_READ_TOKEN.
    let status = |token: Option<(&str, &str)>| {
        let mut cmd = std::process::Command::new(support::swarm_bin());
        cmd.args(["status", "--server", &s.url])
            .env_remove("SWARM_ADMIN_TOKEN")
            .env_remove("SWARM_READ_TOKEN")
            .stdin(std::process::Stdio::null());
        if let Some((var, t)) = token {
            cmd.env(var, t);
        }
        cmd.output().expect("run swarm status")
    };
    // The admin token is sent once the server asked for a token.
    for token in [("SWARM_READ_TOKEN", read), ("SWARM_ADMIN_TOKEN", &admin)] {
        let out = status(Some(token));
        assert!(
            out.status.success(),
            "{}: {}",
            token.0,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = status(None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read_token"), "says why: {err}");
}

/// Started by hand under the usual umask 022, the store, its WAL and the
/// build logs were world-readable: any local user read what `read_token`
/// guards (h10). What is published stays readable to a web server.
#[test]
fn a_hand_started_servers_private_files_are_not_world_readable() {
    use std::os::unix::fs::PermissionsExt;
    // The umask a login shell has (the server inherits it).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let (code, v) = s.post(
        "/api/v1/register",
        &json!({"node_name": "drone-u", "capabilities": {"cores": 2}}),
    );
    assert_eq!(code, 200, "{v}");
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let private = ["swarm.db", "swarm.db-wal", "logs"];
    for name in private {
        let p = s.data_dir.join(name);
        assert_eq!(mode(&p) & 0o007, 0, "{name}: {:o}", mode(&p));
    }
    assert_eq!(mode(&s.data_dir.join("staging")), 0o755, "published");
    // A data dir an older swarm left open to all is closed at the next start (h11).
    let mut s = s;
    s.kill9();
    for (name, open) in [("swarm.db", 0o644), ("logs", 0o755)] {
        let p = s.data_dir.join(name);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(open)).expect("chmod");
    }
    // An operator's file beside them is not the server's to close (h12).
    let operators = s.data_dir.join("swarm.toml");
    std::fs::write(&operators, "").expect("the operator's file");
    std::fs::set_permissions(&operators, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    s.restart();
    assert_eq!(mode(&operators), 0o644, "the operator's swarm.toml");
    for name in private {
        let p = s.data_dir.join(name);
        assert_eq!(
            mode(&p) & 0o007,
            0,
            "{name} after a restart: {:o}",
            mode(&p)
        );
    }
    assert_eq!(
        mode(&s.data_dir.join("swarm.db")),
        0o640,
        "the group's bits are kept"
    );
}

/// A drone without a credential reporting another credential-less drone's live lease (a drone
/// renamed on the same work dir) is told the lease is not its own (409 on `lease`), which the
/// agent reads as "stop"; a 403 read as its own credential refused, retried for ever (h38 F3).
#[test]
fn a_report_naming_another_open_drones_lease_is_a_conflict_not_a_refused_credential() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    for d in ["d-old", "d-new"] {
        let (code, v) = s.post("/api/v1/register", &json!({"node_name": d}));
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = s.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/x-1.0"]}));
    assert_eq!(code, 200, "{v}");
    let w = work(&s, "d-old");
    let lease = w["lease"]
        .as_u64()
        .unwrap_or_else(|| panic!("a lease: {w}"));
    let (code, v) = s.post(
        "/api/v1/complete",
        &json!({"id": "d-new", "package": "=dev-libs/x-1.0", "status": "success", "lease": lease}),
    );
    assert_eq!((code, v["field"].as_str()), (409, Some("lease")), "{v}");
}

#[test]
fn a_report_sent_again_after_its_reply_was_lost_is_answered_as_the_first_was() {
    // h49 F2: an agent whose `/complete` reply was lost sends the same report again. The lease
    // has ended by then; the server used to call the report stale ("work already completed
    // elsewhere"), count a rejection and send a revoke, for a build it had just recorded.
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(&dir.path().join("data"), &[]);
    let (code, r) = s.post("/api/v1/register", &v3_register("d1", "d1", Value::Null));
    assert_eq!(code, 200, "{r}");
    let epoch = r["epoch"].clone();
    let (code, q) = s.admin_post("/api/v1/queue", &json!({"packages": ["=app-misc/foo-1"]}));
    assert_eq!(code, 200, "{q}");
    let w = work(&s, "d1");
    assert_eq!(w["package"], "=app-misc/foo-1", "{w}");
    let lease = w["lease"].as_u64().expect("a lease");
    let gpkg = support::packages::gpkg_of_slot(dir.path(), "app-misc/foo-1", "0");
    let (code, v) = request_raw(
        "PUT",
        &format!("{}/api/v1/artifacts/app-misc/foo-1.gpkg.tar", s.url),
        Some(&gpkg),
        None,
        &[("X-Swarm-Lease", lease.to_string().as_str())],
    );
    assert_eq!(code, 200, "{v}");
    let report = json!({"id": "d1", "package": "=app-misc/foo-1", "status": "success",
        "lease": lease, "epoch": epoch, "build_duration_s": 3.0});
    let (code, first) = s.post("/api/v1/complete", &report);
    assert_eq!(code, 200, "{first}");
    assert_eq!(
        first,
        json!({"status": "ok", "accepted": true, "recorded": "built"})
    );
    // Absent until the first rejection.
    let stale = |s: &Server| {
        let (_, m) = request("GET", &format!("{}/metrics", s.url), None, None);
        let name = "swarm_rejections_total{reason=\"stale_report\"}";
        m.as_str()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            })
            .unwrap_or(0u64)
    };
    let rejected = stale(&s);

    // The same report again: the first answer, marked.
    let (code, c) = s.post("/api/v1/complete", &report);
    assert_eq!(code, 200, "{c}");
    assert_eq!(
        c,
        json!({"status": "ok", "accepted": true, "recorded": "repeated"})
    );
    assert_eq!(stale(&s), rejected, "a repeat is no rejection");
    // Nothing to stop in the drone's next reply, and the build counted once.
    let (_, hb) = s.post("/api/v1/register", &v3_register("d1", "d1", Value::Null));
    assert!(
        hb.get("revoke").is_none() && hb.get("stop_work").is_none(),
        "{hb}"
    );
    let (_, h) = s.get("/api/v1/history?limit=100");
    let built = h["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["package"] == "=app-misc/foo-1" && b["outcome"] == "success")
        .count();
    assert_eq!(built, 1, "{h}");
}
