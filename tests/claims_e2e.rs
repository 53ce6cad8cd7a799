//! End-to-end tests of issue 11's bounds on what drones claim, against a
//! real `swarm serve` over 127.0.0.1 while a real `swarm drone` (stand-in
//! builder) builds a package: absurd claims get a 400 naming the field, a
//! register storm is held by `max_registrations_per_minute` and
//! `max_drones`, and the prober never goes where a caller points it.

mod support;

use serde_json::{json, Value};
use std::path::Path;
use std::time::{Duration, Instant};
use support::drone::Drone;
use support::Server;

const ATOM: &str = "=dev-libs/claimed-1.0";

/// Queues one package and starts an honest drone to build it.
fn honest_build(server: &Server, dir: &Path) -> Drone {
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": [ATOM] }));
    assert_eq!(code, 200, "queue: {v}");
    Drone::start(server, dir, "honest", &[], &[])
}

/// The honest build is counted and its artifact staged.
fn finished(server: &Server, drone: &Drone) {
    let status = server.wait_for(60, "the honest drone's build", |s| {
        s["counts"]["built"] == 1
    });
    assert!(
        server
            .data_dir
            .join("staging/dev-libs/claimed-1.0.gpkg.tar")
            .exists(),
        "artifact staged: {status}; drone log:\n{}",
        drone.log_text()
    );
}

fn register(server: &Server, body: &Value) -> (u16, Value) {
    support::request(
        "POST",
        &format!("{}/api/v1/register", server.url),
        Some(&body.to_string()),
        None,
    )
}

#[test]
fn absurd_claims_get_a_400_naming_the_field_and_cannot_hoard_the_queue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let drone = honest_build(&server, dir.path());
    let long_name = "n".repeat(300);
    for (body, field) in [
        (
            json!({"name": "hoarder", "capabilities": {"cores": 4_294_967_295u32}}),
            "capabilities.cores",
        ),
        (
            json!({"name": "hoarder", "capabilities": {"ram_gb": 1e15}}),
            "capabilities.ram_gb",
        ),
        (
            json!({"name": "hoarder", "metrics": {"load_1m": 1e300}}),
            "metrics.load_1m",
        ),
        (
            json!({"name": "hoarder", "leases": (0..5000).collect::<Vec<u64>>()}),
            "leases",
        ),
        (
            json!({"name": "hoarder", "version": "v".repeat(1000)}),
            "version",
        ),
        (json!({ "name": long_name }), "name"),
    ] {
        let (code, v) = register(&server, &body);
        assert_eq!(code, 400, "{field}: {v}");
        assert_eq!(v["field"], field, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap_or("")
                .contains(field.rsplit('.').next().unwrap_or(field)),
            "the error names {field}: {v}"
        );
    }
    // No absurd claim left a drone behind.
    let (_, nodes) = server.get("/api/v1/nodes?all=true");
    assert!(
        !nodes.to_string().contains("hoarder"),
        "a refused registration registered: {nodes}"
    );
    // A drone of the largest real size registers; its slots stay bounded.
    let (code, v) = register(
        &server,
        &json!({"name": "big", "capabilities": {"cores": 1024}}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.get("/api/v1/work?id=big&free_slots=100000");
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["field"], "free_slots", "{v}");
    let (code, v) = support::request(
        "POST",
        &format!("{}/api/v1/complete", server.url),
        Some(
            &json!({"id": "big", "package": ATOM, "status": "failed", "build_duration_s": 1e300})
                .to_string(),
        ),
        None,
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["field"], "build_duration_s", "{v}");
    finished(&server, &drone);
}

/// Registers `n` invented names as fast as possible; the statuses seen.
fn storm(server: &Server, n: usize) -> Vec<u16> {
    (0..n)
        .map(|i| register(server, &json!({ "name": format!("storm-{i}") })).0)
        .collect()
}

#[test]
fn a_register_storm_is_held_by_the_rate_and_the_drone_cap() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The rate: 5 new drones a minute (the honest one is the first).
    let server = Server::start(
        &dir.path().join("rate"),
        &[("SWARM_MAX_REGISTRATIONS_PER_MINUTE", "5")],
    );
    let drone = honest_build(&server, dir.path());
    server.wait_for(30, "the honest drone registered", |s| s["nodes"] == 1);
    let began = Instant::now();
    let codes = storm(&server, 200);
    let ok = codes.iter().filter(|c| **c == 200).count();
    assert!(
        ok <= 5 && codes.iter().all(|c| *c == 200 || *c == 429),
        "{ok} of 200 invented drones registered: {codes:?}"
    );
    assert!(began.elapsed() < Duration::from_secs(30));
    let (_, nodes) = server.get("/api/v1/status");
    assert!(nodes["nodes"].as_u64() <= Some(6), "{nodes}");
    finished(&server, &drone);
    drop(drone);

    // The cap: 4 drones at most, whatever the rate.
    let server = Server::start(
        &dir.path().join("cap"),
        &[
            ("SWARM_MAX_DRONES", "4"),
            ("SWARM_MAX_REGISTRATIONS_PER_MINUTE", "100000"),
        ],
    );
    let drone = honest_build(&server, &dir.path().join("cap-drone"));
    server.wait_for(30, "the honest drone registered", |s| s["nodes"] == 1);
    let codes = storm(&server, 50);
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 200 || *c == 503), "{codes:?}");
    let (code, v) = register(&server, &json!({"name": "one-more"}));
    assert_eq!(code, 503, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("max_drones"),
        "{v}"
    );
    // Known drones still re-register (heartbeat) at the cap.
    let (code, v) = register(&server, &json!({"name": "storm-0"}));
    assert_eq!(code, 200, "{v}");
    // A removed drone frees its place: the count follows the core.
    let (code, v) = server.admin_post("/api/v1/nodes/storm-1/remove", &json!({}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = register(&server, &json!({"name": "one-more"}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = register(&server, &json!({"name": "and-another"}));
    assert_eq!(code, 503, "{v}");
    finished(&server, &drone);
    drop(drone);
    // After a restart the cap still counts every drone the store knows.
    let mut server = server;
    server.restart();
    let (code, v) = register(&server, &json!({"name": "after-restart"}));
    assert_eq!(code, 503, "{v}");
    let (code, v) = register(&server, &json!({"name": "storm-0"}));
    assert_eq!(code, 200, "{v}");
}

#[test]
fn the_prober_goes_only_where_the_operator_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let probed = dir.path().join("probed");
    let stub = dir.path().join("probe.sh");
    std::fs::write(
        &stub,
        format!(
            "#!/bin/sh\necho \"$1 $2\" >> '{}'\nprintf 'service=up\\n'\n",
            probed.display()
        ),
    )
    .expect("stub");
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let command = format!("{} {{drone}} {{address}}", stub.display());
    let server = Server::start(
        &dir.path().join("server"),
        &[
            ("SELF_HEAL_ENABLED", "true"),
            ("SWARM_PROBE_INTERVAL_S", "1"),
            ("SWARM_PROBE_COMMAND", command.as_str()),
            ("SWARM_PROBE_NETWORKS", "192.0.2.0/24"),
        ],
    );
    let drone = honest_build(&server, dir.path());
    // Documentation addresses (RFC 5737): the stub only writes them down.
    for (name, ip) in [("aimer", "203.0.113.7"), ("allowed", "192.0.2.5")] {
        let (code, v) = register(&server, &json!({"name": name, "ip": ip}));
        assert_eq!(code, 200, "{v}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let text = loop {
        let text = std::fs::read_to_string(&probed).unwrap_or_default();
        if text.contains("aimer ") && text.contains("allowed ") {
            break text;
        }
        assert!(Instant::now() < deadline, "not probed: {text:?}");
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        !text.contains("203.0.113.7"),
        "the prober went where a caller pointed it:\n{text}"
    );
    assert!(text.contains("aimer 127.0.0.1"), "{text}");
    assert!(
        text.contains("allowed 192.0.2.5"),
        "an address inside probe.networks is used:\n{text}"
    );
    finished(&server, &drone);
}
