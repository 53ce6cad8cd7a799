//! The operator CLI against a real `swarm serve` on 127.0.0.1: each command
//! is a real `swarm` process, found through `SWARM_URL` and the data dir's
//! token file exactly as on the server's own host.

mod support;

use serde_json::{json, Value};
use std::process::{Command, Output};
use support::{swarm_bin, Server};

fn swarm(server: &Server, args: &[&str]) -> Output {
    Command::new(swarm_bin())
        .args(args)
        .env("SWARM_URL", &server.url)
        .env("SWARM_DATA_DIR", &server.data_dir)
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("ADMIN_SECRET")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run swarm")
}

fn ok(server: &Server, args: &[&str]) -> String {
    let out = swarm(server, args);
    assert!(
        out.status.success(),
        "swarm {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json_of(server: &Server, args: &[&str]) -> Value {
    let text = ok(server, args);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("swarm {args:?}: not JSON ({e}): {text}"))
}

#[test]
fn operators_drive_a_real_server_from_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    s.post(
        "/api/v1/register",
        &json!({"node_name": "drone-alpha", "capabilities": {"cores": 8, "ram_gb": 16}}),
    );

    // Admin commands find the token in the data dir.
    ok(&s, &["queue", "add", "dev-libs/icu-74.2", "virtual/libc-1"]);
    let list = json_of(&s, &["queue", "list", "--json"]);
    assert_eq!(list["total"], 2, "{list}");

    let import = dir.path().join("world.txt");
    std::fs::write(
        &import,
        "These are the packages that would be merged, in order:\n\n\
         [ebuild  N     ] dev-libs/libxml2-2.13.4::gentoo  USE=\"-icu\" 0 KiB\n\
         [ebuild  N     ] app-misc/jq-1.7.1::gentoo  0 KiB\n",
    )
    .expect("write");
    ok(&s, &["queue", "import", import.to_str().expect("utf8")]);
    let status = json_of(&s, &["status", "--json"]);
    assert_eq!(status["total"], 4, "{status}");
    assert_eq!(status["nodes"], 1);

    // Human output names what it shows.
    let fleet = ok(&s, &["fleet"]);
    assert!(fleet.contains("drone-alpha"), "{fleet}");
    let text = ok(&s, &["status"]);
    assert!(text.contains('4'), "{text}");

    // Work flows; history, events and explain reflect it.
    let (_, w) = s.get("/api/v1/work?id=drone-alpha");
    let p = w["package"].as_str().expect("work").to_string();
    let explain = ok(&s, &["explain", &p]);
    assert!(explain.contains("drone-alpha"), "{explain}");
    let events = json_of(&s, &["events", "--json", "--limit", "50"]);
    assert!(events.to_string().contains("queued"), "{events}");

    // Control and drone actions.
    ok(&s, &["control", "pause"]);
    assert_eq!(json_of(&s, &["status", "--json"])["paused"], true);
    ok(&s, &["control", "resume"]);
    ok(&s, &["node", "drain", "drone-alpha"]);
    let nodes = s.get("/api/v1/nodes").1;
    assert_eq!(nodes["nodes"][0]["drained"], true, "{nodes}");
    let bad = swarm(&s, &["control", "explode"]);
    assert!(!bad.status.success(), "an unknown action must fail");

    // The SQL explorer through the server, and metrics.
    let sql = json_of(&s, &["sql", "--json", "SELECT COUNT(*) AS n FROM packages"]);
    assert!(sql.to_string().contains('4'), "{sql}");
    let metrics = ok(&s, &["metrics"]);
    assert!(metrics.contains("swarm_queue_packages"), "{metrics}");
    let monitor = ok(&s, &["monitor", "--once"]);
    assert!(monitor.contains("drone-alpha"), "{monitor}");

    // A wrong token is refused with a message that says so.
    let out = Command::new(swarm_bin())
        .args(["control", "pause", "--token", "wrong"])
        .env("SWARM_URL", &s.url)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("token"), "{err}");
}
