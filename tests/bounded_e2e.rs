//! "Nothing unbounded" (issue 14), against a real `swarm serve` over
//! 127.0.0.1: every numeric field of every request is refused past its
//! bound with a 400 naming the field (and accepted at the bound), and an
//! idle server appends no input to its log and writes no log line.
//!
//! Identifiers (`lease`, `epoch`) are the one kind of number left unbounded
//! on purpose: they are only compared, never added or waited on, and an
//! unknown one is answered as stale.

mod support;

use serde_json::{json, Value};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::Server;

/// How a request reaches the server.
#[derive(Clone, Copy)]
enum Call {
    /// `POST /api/v1/queue` with the admin token.
    Queue,
    /// `POST /api/v1/register`.
    Register,
    /// `POST /api/v1/complete`.
    Complete,
    /// `GET /api/v1/work?id=bounded&free_slots=N`.
    Work,
}

fn call(server: &Server, how: Call, body: &Value) -> (u16, Value) {
    match how {
        Call::Queue => server.admin_post("/api/v1/queue", body),
        Call::Register => server.post("/api/v1/register", body),
        Call::Complete => server.post("/api/v1/complete", body),
        Call::Work => server.get(&format!(
            "/api/v1/work?id=bounded&free_slots={}",
            body.as_u64().unwrap_or(0)
        )),
    }
}

fn queue_one(spec: Value) -> Value {
    json!({ "packages": [spec] })
}

fn reg(extra: Value) -> Value {
    let mut body = json!({ "name": "bounded" });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn report(extra: Value) -> Value {
    let mut body = json!({ "id": "bounded", "package": "=dev-libs/bounded-1", "status": "failed" });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

fn ids(n: u64) -> Vec<u64> {
    (1..=n).collect()
}

/// The atom every refused enqueue names.
const REFUSED: &str = "=dev-libs/refused-1";

/// (field, how, a body at the bound, a body one past it). The 100,000
/// packages at the bound are not sent: queuing them costs the test
/// seconds and shows nothing the other rows do not.
fn table() -> Vec<(&'static str, Call, Option<Value>, Value)> {
    let atom = REFUSED;
    let deps =
        |n: usize| -> Vec<String> { (0..n).map(|i| format!("=dev-libs/dep{i}-1")).collect() };
    let atoms = |n: usize| -> Vec<String> { (0..n).map(|i| format!("=d/p{i}-1")).collect() };
    let names = |n: usize| -> Vec<String> { (0..n).map(|i| format!("dev-libs/a{i}-1")).collect() };
    vec![
        (
            "packages[0].priority",
            Call::Queue,
            Some(queue_one(
                json!({"atom": "=dev-libs/top-1", "priority": 1_000_000}),
            )),
            queue_one(json!({"atom": atom, "priority": 1_000_001})),
        ),
        (
            "packages[0].priority",
            Call::Queue,
            Some(queue_one(
                json!({"atom": "=dev-libs/low-1", "priority": -1_000_000}),
            )),
            queue_one(json!({"atom": atom, "priority": -1_000_001})),
        ),
        (
            "packages[0].estimate_s",
            Call::Queue,
            Some(queue_one(
                json!({"atom": "=dev-libs/est-1", "estimate_s": 2_592_000}),
            )),
            queue_one(json!({"atom": atom, "estimate_s": 2_592_001})),
        ),
        (
            "packages[0].deps",
            Call::Queue,
            Some(queue_one(
                json!({"atom": "=dev-libs/deps-1", "deps": deps(4096)}),
            )),
            queue_one(json!({"atom": atom, "deps": deps(4097)})),
        ),
        (
            "packages",
            Call::Queue,
            None,
            json!({ "packages": atoms(100_001) }),
        ),
        (
            "generation",
            Call::Queue,
            Some(json!({"packages": ["=dev-libs/gen-1"], "generation": 9_007_199_254_740_992u64})),
            json!({"packages": [atom], "generation": 9_007_199_254_740_993u64}),
        ),
        (
            "capabilities.cores",
            Call::Register,
            Some(reg(json!({"capabilities": {"cores": 1024}}))),
            reg(json!({"capabilities": {"cores": 1025}})),
        ),
        (
            "capabilities.ram_gb",
            Call::Register,
            Some(reg(json!({"capabilities": {"ram_gb": 65_536.0}}))),
            reg(json!({"capabilities": {"ram_gb": 65_537.0}})),
        ),
        (
            "metrics.cpu_percent",
            Call::Register,
            Some(reg(json!({"metrics": {"cpu_percent": 1000.0}}))),
            reg(json!({"metrics": {"cpu_percent": 1000.5}})),
        ),
        (
            "metrics.ram_percent",
            Call::Register,
            Some(reg(json!({"metrics": {"ram_percent": 0.0}}))),
            reg(json!({"metrics": {"ram_percent": -0.5}})),
        ),
        (
            "metrics.disk_percent",
            Call::Register,
            Some(reg(json!({"metrics": {"disk_percent": 100.0}}))),
            reg(json!({"metrics": {"disk_percent": 1e9}})),
        ),
        (
            "metrics.load_1m",
            Call::Register,
            Some(reg(json!({"metrics": {"load_1m": 100_000.0}}))),
            reg(json!({"metrics": {"load_1m": 100_001.0}})),
        ),
        (
            "disk_percent",
            Call::Register,
            Some(reg(json!({"disk_percent": 99.0}))),
            reg(json!({"disk_percent": 1001.0})),
        ),
        (
            "leases",
            Call::Register,
            Some(reg(json!({"leases": ids(4096)}))),
            reg(json!({"leases": ids(4097)})),
        ),
        (
            "started",
            Call::Register,
            Some(reg(json!({"started": ids(4096)}))),
            reg(json!({"started": ids(4097)})),
        ),
        (
            "build_duration_s",
            Call::Complete,
            Some(report(json!({"build_duration_s": 2_592_000.0}))),
            report(json!({"build_duration_s": 2_592_001.0})),
        ),
        (
            "duration",
            Call::Complete,
            Some(report(json!({"duration": 2_592_000.0}))),
            report(json!({"duration": 1e300})),
        ),
        (
            "artifacts",
            Call::Complete,
            Some(report(json!({"artifacts": names(512)}))),
            report(json!({"artifacts": names(513)})),
        ),
        ("free_slots", Call::Work, Some(json!(1024)), json!(1025)),
    ]
}

#[test]
fn every_numeric_field_of_every_request_is_refused_past_its_bound_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Room for a 100,001-package list: the package cap, not the body cap, refuses it.
    let server = Server::start(
        &dir.path().join("server"),
        &[("SWARM_MAX_BODY_BYTES", "4194304")],
    );
    let (code, v) = call(&server, Call::Register, &reg(json!({})));
    assert_eq!(code, 200, "the drone registers: {v}");
    for (field, how, at_bound, past) in table() {
        let (code, v) = call(&server, how, &past);
        assert_eq!(code, 400, "{field} past its bound: {v}");
        assert_eq!(v["field"], field, "{v}");
        let last = field.rsplit('.').next().unwrap_or(field);
        let last = last.split('[').next().unwrap_or(last);
        assert!(
            v["error"].as_str().unwrap_or("").contains(last),
            "the error names {field}: {v}"
        );
        if let Some(at_bound) = at_bound {
            let (code, v) = call(&server, how, &at_bound);
            assert!(
                code != 400 || v["field"] != field,
                "{field} at its bound is accepted: {code} {v}"
            );
        }
    }
    // Nothing refused reached the queue.
    let (code, v) = server.admin_get("/api/v1/explain?package=%3Ddev-libs%2Frefused-1");
    assert_eq!(code, 200, "{v}");
    assert!(v["status"].is_null(), "a refused package was queued: {v}");
}

/// The log's length and the server's stderr, after `settle` of quiet.
fn quiet_figures(server: &Server, stderr: &std::path::Path) -> (u64, u64) {
    let (code, health) = server.get("/api/v1/health");
    assert_eq!(code, 200, "{health}");
    let seq = health["seq"].as_u64().expect("health reports the seq");
    let logged = std::fs::metadata(stderr).map(|m| m.len()).unwrap_or(0);
    (seq, logged)
}

#[test]
fn an_idle_server_appends_no_input_and_logs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("server");
    let stderr_path = dir.path().join("stderr.log");
    let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
    let mut child = Command::new(support::swarm_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("SWARM_LOG", "debug")
        .env("SELF_HEAL_ENABLED", "false")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawn swarm serve");
    let mut out = child.stdout.take().expect("stdout");
    let mut first = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut byte = [0u8];
    while !first.ends_with(b"\n") && Instant::now() < deadline {
        if out.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        first.extend_from_slice(&byte);
    }
    let line = String::from_utf8_lossy(&first).trim().to_string();
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    let server = Server {
        addr: url.trim_start_matches("http://").to_string(),
        url,
        child,
        data_dir: data,
        env: Vec::new(),
    };
    // Something to look after: a drone (its liveness deadline is 90 s
    // away) and a queue with a ready package and a dependent.
    let (code, v) = server.post("/api/v1/register", &json!({"name": "idle-drone"}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/idle-1",
            {"atom": "=dev-libs/idle-2", "deps": ["=dev-libs/idle-1"]}]}),
    );
    assert_eq!(code, 200, "{v}");
    std::thread::sleep(Duration::from_millis(1500));
    let (seq, logged) = quiet_figures(&server, &stderr_path);
    std::thread::sleep(Duration::from_secs(4));
    let logged_after = std::fs::metadata(&stderr_path)
        .map(|m| m.len())
        .unwrap_or(0);
    let (seq_after, _) = quiet_figures(&server, &stderr_path);
    let text = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let tail = text.get(logged as usize..).unwrap_or("");
    assert_eq!(seq_after, seq, "inputs appended while idle");
    assert_eq!(
        logged_after, logged,
        "the idle server logged (SWARM_LOG=debug):\n{tail}"
    );
}

/// A drone whose reported environment changes at every heartbeat (each
/// change is logged in full: up to about 1.5 MB) has its first report and
/// one change a minute taken; the rest are left out and the drone keeps the
/// environment it had. Before, these 20 heartbeats logged 7.8 MB.
#[test]
fn a_drone_environment_changing_at_every_heartbeat_changes_once_a_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let env = |round: usize| -> Value {
        let mut vars = serde_json::Map::new();
        vars.insert("CFLAGS".into(), json!(format!("-O2 -pipe -DROUND={round}")));
        for k in 0..95 {
            vars.insert(
                format!("X{k}"),
                json!(format!("{round}").repeat(8 * 1024 / 2)),
            );
        }
        Value::Object(vars)
    };
    let logged_bytes = || {
        let (code, v) = server.admin_get(
            "/api/v1/sql/query?q=SELECT%20COALESCE(SUM(LENGTH(input))%2C0)%20FROM%20input_log",
        );
        assert_eq!(code, 200, "{v}");
        v["rows"][0][0].as_u64().expect("a sum")
    };
    let before = logged_bytes();
    for round in 0..20 {
        let (code, v) = server.post(
            "/api/v1/register",
            &json!({"name": "fickle", "capabilities": {"env": env(round % 10)}}),
        );
        assert_eq!(code, 200, "round {round}: {v}");
    }
    let logged = logged_bytes() - before;
    let one = env(0).to_string().len() as u64;
    assert!(
        logged < 3 * one,
        "{logged} bytes logged for 20 heartbeats with 10 different environments of {one} bytes"
    );
    let fickle = server.node("fickle");
    assert_eq!(
        fickle["env"]["CFLAGS"], "-O2 -pipe -DROUND=1",
        "the first change is taken, and kept: {}",
        fickle["env"]["CFLAGS"]
    );
}

/// A drone's environment (up to 96 values of 16 KiB) is listed in part: `/api/v1/nodes`
/// repeated each drone's whole, and 40 such drones answered 40.7 MB to anyone who can read
/// (h32). The drone's own read has it whole.
#[test]
fn a_fleet_list_carries_part_of_each_environment_and_a_drone_read_all_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let mut env = serde_json::Map::new();
    env.insert("CFLAGS".into(), json!("-O2 -pipe"));
    for k in 0..90 {
        env.insert(format!("X{k:02}"), json!("y".repeat(8 * 1024)));
    }
    let env = Value::Object(env);
    let whole = env.to_string().len();
    for i in 0..6 {
        let (code, v) = server.post(
            "/api/v1/register",
            &json!({"name": format!("wide-{i}"), "capabilities": {"env": env}}),
        );
        assert_eq!(code, 200, "{v}");
    }
    let (code, list) = server.get("/api/v1/nodes?all=true");
    assert_eq!(code, 200, "{list}");
    let listed = list.to_string().len();
    assert!(
        listed < 6 * 24 * 1024,
        "{listed} bytes listed for 6 drones of {whole} bytes of environment each"
    );
    let one = &list.as_array().expect("a list")[0];
    assert_eq!(
        one["env"]["CFLAGS"], "-O2 -pipe",
        "{}",
        one["env"]["CFLAGS"]
    );
    assert_eq!(
        one["env"]["X89"],
        format!("… [{} bytes not listed]", 8 * 1024)
    );
    let (code, own) = server.get("/api/v1/nodes/wide-0");
    assert_eq!(code, 200, "{own}");
    assert_eq!(own["name"], "wide-0");
    assert_eq!(own["env"]["X89"].as_str().map(str::len), Some(8 * 1024));
    assert_eq!(own["env"].to_string().len(), whole);
    let (code, gone) = server.get("/api/v1/nodes/nobody");
    assert_eq!(code, 404, "{gone}");
    assert!(gone.to_string().contains("no drone named"), "{gone}");
}

/// A failure's text, up to 64 KiB from a drone, is listed clipped: with 1,000 of them
/// `/api/v1/events/history?limit=10000` answered 133 MB to anyone who can read, and eight
/// such reads took the server to 5.8 GB (h30). `explain` still has the whole text.
#[test]
fn lists_carry_the_start_of_a_long_failure_text_and_explain_the_whole() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    let (code, v) = server.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/long-1"]}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.post("/api/v1/register", &json!({"node_name": "d1"}));
    assert_eq!(code, 200, "{v}");
    let (_, w) = server.get("/api/v1/work?id=d1");
    assert_eq!(w["package"], "=dev-libs/long-1", "{w}");
    // Four bytes a character: a cut inside one would show, and so would a cut counted in
    // characters (h32: 2,048 of them were 8 KiB).
    let detail = "😀".repeat(15_000);
    let (code, v) = server.post(
        "/api/v1/complete",
        &json!({"id": "d1", "package": "=dev-libs/long-1", "status": "failed",
                "failure_class": "build", "error_detail": detail}),
    );
    assert_eq!(code, 200, "{v}");
    let listed = |path: &str| {
        let (code, v) = server.get(path);
        assert_eq!(code, 200, "{path}: {v}");
        let text = v.to_string();
        assert!(
            text.contains("more bytes not listed]") && text.len() < 20_000,
            "{path}: {} bytes",
            text.len()
        );
    };
    listed("/api/v1/history?limit=10000");
    let (_, v) = server.get("/api/v1/history?limit=10");
    let listed_detail = v["builds"][0]["detail"].as_str().unwrap_or_default();
    assert!(
        listed_detail.len() <= 2048 + 40 && listed_detail.ends_with("more bytes not listed]"),
        "{} bytes, ending {:?}",
        listed_detail.len(),
        listed_detail.chars().rev().take(40).collect::<String>()
    );
    listed("/api/v1/events/history?limit=10000");
    listed("/api/v1/events?since=0&limit=10000");
    listed("/api/v1/queue?limit=1000");
    let (code, v) = server.get("/api/v1/explain?package=%3Ddev-libs%2Flong-1");
    assert_eq!(code, 200, "{v}");
    assert!(
        v.to_string().contains(&detail),
        "explain has the whole text"
    );
}
