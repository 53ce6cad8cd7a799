//! Build environments end to end (issue 17): two real `swarm drone`s, each in its own real
//! Portage prefix whose make.conf differs only in CFLAGS, report what the real `portageq`
//! resolves; once the operator expects the environment of one, only that one builds, and the
//! other is told exactly what differs.

mod support;

use serde_json::{json, Value};
use support::drone::Drone;
use support::portage::{machine_env_with, venv};
use support::Server;

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn node(server: &Server, name: &str) -> Value {
    let (_, v) = server.get("/api/v1/nodes?all=true");
    v.as_array()
        .and_then(|n| n.iter().find(|d| d["name"] == name).cloned())
        .unwrap_or_default()
}

#[test]
fn only_the_drone_whose_portage_environment_is_expected_builds_and_the_other_hears_why() {
    let Some(venv) = venv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let machine = |name: &str, cflags: &str| {
        machine_env_with(
            &dir.path().join(name),
            &venv,
            &["--make-conf-extra", &format!("CFLAGS=\"{cflags}\"")],
        )
    };
    let (o2, o3) = (machine("m-o2", "-O2 -pipe"), machine("m-o3", "-O3 -pipe"));
    let server = Server::start(&dir.path().join("server"), &[]);
    let _a = Drone::start(&server, dir.path(), "drone-o2", &[], &refs(&o2));
    let _b = Drone::start(&server, dir.path(), "drone-o3", &[], &refs(&o3));
    server.wait_for(60, "both drones to report their environment", |_| {
        ["drone-o2", "drone-o3"]
            .iter()
            .all(|n| node(&server, n)["env"]["CFLAGS"].is_string())
    });
    let a = node(&server, "drone-o2");
    assert_eq!(a["env"]["CFLAGS"], "-O2 -pipe", "{a}");
    assert_eq!(a["env"]["ARCH"], "amd64", "{a}");
    assert_eq!(a["env"]["PROFILE"], "default/linux/amd64", "{a}");
    assert_eq!(node(&server, "drone-o3")["env"]["CFLAGS"], "-O3 -pipe");

    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "drone": "drone-o2"}),
    );
    assert_eq!(code, 200, "{v}");
    let atoms: Vec<String> = (0..6).map(|i| format!("=dev-libs/env{i}-1.0")).collect();
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": atoms }));
    assert_eq!(code, 200, "{v}");
    server.wait_for(90, "all six built", |s| s["counts"]["built"] == 6);

    let (_, history) = server.get("/api/v1/history?limit=100");
    let builders: Vec<&str> = history["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["outcome"] == "success")
        .filter_map(|b| b["drone"].as_str())
        .collect();
    assert_eq!(builders.len(), 6, "{history}");
    assert!(builders.iter().all(|d| *d == "drone-o2"), "{builders:?}");
    let b = node(&server, "drone-o3");
    assert_eq!(
        b["no_work"], "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)",
        "{b}"
    );
    assert_eq!(b["env_differences"][0]["key"], "CFLAGS", "{b}");

    // A malformed environment written down is refused with the field named.
    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "env": {"C FLAGS": "-O2"}}),
    );
    assert_eq!(code, 400, "{v}");
    assert!(v.to_string().contains("env"), "{v}");
}
