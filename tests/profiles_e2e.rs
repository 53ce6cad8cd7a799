//! Profiles over HTTP (issue 17): two profiles share one fleet of drones with different CFLAGS;
//! each profile's packages go only to the drone its environment admits, `explain` names the
//! profile no drone matches and how the drone differs, `/api/v1/profiles` lists them, and bad
//! requests are refused with the field named. Drones are spoken for over the real HTTP API.

mod support;

use serde_json::{json, Value};
use support::Server;

fn register(server: &Server, name: &str, cflags: &str) {
    let (code, v) = server.post(
        "/api/v1/register",
        &json!({"node_name": name, "capabilities": {"cores": 4, "ram_gb": 16, "env": {"CFLAGS": cflags}}}),
    );
    assert_eq!(code, 200, "{v}");
}

/// A drone's `--env-command`: a shell script in `dir` running `body`.
fn env_command(dir: &std::path::Path, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("env.sh");
    std::fs::write(&script, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script.to_string_lossy().into_owned()
}

/// A server and a drone whose environment command prints the returned file (`CFLAGS=-O2` at
/// first); removed, the command fails.
fn drone_reading_a_file(
    dir: &std::path::Path,
    name: &str,
) -> (Server, std::path::PathBuf, support::drone::Drone) {
    let server = Server::start(&dir.join("data"), &[]);
    let env_file = dir.join("env");
    std::fs::write(&env_file, "CFLAGS=-O2\n").expect("env");
    let script = env_command(dir, &format!("cat '{}'", env_file.display()));
    let drone = support::drone::Drone::start(&server, dir, name, &["--env-command", &script], &[]);
    (server, env_file, drone)
}

fn control(server: &Server, body: Value) -> (u16, Value) {
    server.admin_post("/api/v1/control", &body)
}

/// Everything a drone is handed when it asks until it gets nothing more.
fn take_all(server: &Server, drone: &str) -> Vec<String> {
    let mut got = Vec::new();
    for _ in 0..20 {
        let (code, v) = server.get(&format!("/api/v1/work?id={drone}"));
        match v["package"].as_str() {
            Some(p) if code == 200 => got.push(p.to_string()),
            _ => break,
        }
    }
    got
}

#[test]
fn each_profile_is_built_only_by_the_drone_it_admits_and_explain_says_why_not() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    register(&server, "drone-o2", "-O2 -pipe");
    register(&server, "drone-o3", "-O3 -pipe");
    let (code, v) = control(
        &server,
        json!({"action": "expect_env", "drone": "drone-o2"}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = control(
        &server,
        json!({"action": "set_profile", "profile": "fast-amd64", "env": {"CFLAGS": "-O3 -pipe"}}),
    );
    assert_eq!(code, 200, "{v}");

    // A package naming no profile that exists is refused, with the field named.
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/x-1.0"], "profile": "nope"}),
    );
    assert_eq!(code, 400, "{v}");
    assert_eq!(v["field"], "profile", "{v}");
    let (code, v) = control(
        &server,
        json!({"action": "set_profile", "profile": "Bad/Name"}),
    );
    assert_eq!((code, v["field"].as_str()), (400, Some("profile")), "{v}");

    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/d1-1.0", "=dev-libs/d2-1.0"]}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/f1-1.0", {"atom": "=dev-libs/f2-1.0"}], "profile": "fast-amd64"}),
    );
    assert_eq!(code, 200, "{v}");

    // Each drone takes as much as its slots allow: only its own profile's packages.
    let o3 = take_all(&server, "drone-o3");
    let o2 = take_all(&server, "drone-o2");
    assert!(
        !o3.is_empty() && o3.iter().all(|p| p.starts_with("=dev-libs/f")),
        "drone-o3 took {o3:?}"
    );
    assert!(
        !o2.is_empty() && o2.iter().all(|p| p.starts_with("=dev-libs/d")),
        "drone-o2 took {o2:?}"
    );

    let (_, profiles) = server.get("/api/v1/profiles");
    let list = profiles["profiles"].as_array().expect("profiles");
    assert_eq!(list.len(), 2, "{profiles}");
    assert_eq!(list[0]["name"], "default", "{profiles}");
    assert_eq!(list[1]["name"], "fast-amd64", "{profiles}");
    assert_eq!(list[1]["matching"], json!(["drone-o3"]), "{profiles}");
    assert_eq!(list[1]["unbuilt"], 2, "{profiles}");

    // A profile in use cannot be removed.
    let (code, v) = control(
        &server,
        json!({"action": "remove_profile", "profile": "fast-amd64"}),
    );
    assert_eq!(code, 409, "{v}");

    // drone-o3 drifts to -O2: no drone matches fast-amd64 any more, and explain says so.
    register(&server, "drone-o3", "-O2 -pipe");
    // The drift is an event naming the profile it left (and the default one it joined).
    let (_, events) = server.get("/api/v1/events?after=0&limit=1000");
    let changed = |profile: Option<&str>, matches: bool| {
        find_event(&events, &|e| {
            e["event"] == "env_changed"
                && e["drone"] == "drone-o3"
                && e["matches"] == matches
                && e["profile"].as_str() == profile
        })
    };
    assert!(changed(Some("fast-amd64"), false), "{events}");
    assert!(changed(None, true), "{events}");
    assert!(!changed(Some("fast-amd64"), true), "{events}");
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/f3-1.0"], "profile": "fast-amd64"}),
    );
    assert_eq!(code, 200, "{v}");
    assert!(take_all(&server, "drone-o3")
        .iter()
        .all(|p| !p.starts_with("=dev-libs/f")));
    let (_, v) = server.get("/api/v1/explain?package=%3Ddev-libs%2Ff3-1.0");
    assert_eq!(
        v["explain"].as_str().unwrap_or_default(),
        "no drone matches profile fast-amd64: drone-o2 differs in CFLAGS (-O2 -pipe vs -O3 -pipe) (and 1 more drones differ)",
        "{v}"
    );
}

/// Whether some object anywhere in `v` satisfies `want`.
fn find_event(v: &Value, want: &dyn Fn(&Value) -> bool) -> bool {
    want(v)
        || match v {
            Value::Array(a) => a.iter().any(|x| find_event(x, want)),
            Value::Object(o) => o.values().any(|x| find_event(x, want)),
            _ => false,
        }
}

/// A second change of a drone's environment within a minute is held back (each change is
/// logged in full), so the farm still has the one before: the drone builds in an environment
/// the farm does not know, and would have its builds stamped with the old one (h31). It gets
/// no new work until a heartbeat brings the change in; reporting the environment the farm has
/// lets it work again.
#[test]
fn a_drone_whose_environment_change_is_held_back_gets_no_new_work_meanwhile() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    register(&server, "drone-a", "-O2 -pipe");
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/a-1", "=dev-libs/b-1"]}),
    );
    assert_eq!(code, 200, "{v}");
    // The first change after the first report goes in; the second, at once after, is held.
    register(&server, "drone-a", "-O3 -pipe");
    assert_eq!(server.node("drone-a")["env"]["CFLAGS"], "-O3 -pipe");
    register(&server, "drone-a", "-O1");
    assert_eq!(server.node("drone-a")["env"]["CFLAGS"], "-O3 -pipe", "held");
    let (code, v) = server.get("/api/v1/work?id=drone-a");
    assert_eq!(code, 200, "{v}");
    assert!(v["package"].is_null(), "work given while held: {v}");
    assert!(
        v["reason"]
            .as_str()
            .is_some_and(|r| r.contains("changed again")),
        "{v}"
    );
    register(&server, "drone-a", "-O3 -pipe");
    let (_, v) = server.get("/api/v1/work?id=drone-a");
    assert!(v["package"].is_string(), "work again: {v}");
}

/// `remove_profile` with `force` while a build of the profile runs: the core keeps a profile
/// that still builds, and the fresh queue in front of it was applied all the same, so the
/// profile stayed and its queued packages were gone (h31). Now it is refused first, naming the
/// build, and nothing changes.
#[test]
fn a_forced_removal_while_a_build_of_the_profile_runs_changes_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    register(&server, "drone-o3", "-O3 -pipe");
    let (code, v) = control(
        &server,
        json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O3 -pipe"}}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/run-1.0", "=dev-libs/wait-1.0"], "profile": "fast"}),
    );
    assert_eq!(code, 200, "{v}");
    let (_, w) = server.get("/api/v1/work?id=drone-o3");
    let running = w["package"].as_str().expect("work").to_owned();
    let (code, v) = server.post(
        "/api/v1/started",
        &json!({"node_name": "drone-o3", "lease": w["lease"], "package": running}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = control(
        &server,
        json!({"action": "remove_profile", "profile": "fast", "force": true, "reason": "h31"}),
    );
    assert_eq!((code, &v["field"]), (409, &json!("force")), "{v}");
    assert!(
        v["error"].as_str().is_some_and(|e| e.contains(&running)),
        "{v}"
    );
    let (_, q) = server.get("/api/v1/queue");
    assert_eq!(q["total"], 2, "the queued package is still there: {q}");
    let (_, profiles) = server.get("/api/v1/profiles");
    assert!(profiles.to_string().contains("\"fast\""), "{profiles}");
}

/// A profile edited after its packages were built: they count as built, while no release of
/// the profile takes them (built in an environment it no longer admits), and nothing said so
/// (h31). `/api/v1/profiles` counts them and says what builds them again.
#[test]
fn packages_built_before_a_profile_edit_are_named_as_not_the_profiles_to_release() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let (code, v) = control(
        &server,
        json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O3"}}),
    );
    assert_eq!(code, 200, "{v}");
    let _drone = support::drone::Drone::start(
        &server,
        dir.path(),
        "drone-o3",
        &["--env-command", "echo CFLAGS=-O3"],
        &[],
    );
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=dev-libs/a-1"], "profile": "fast"}),
    );
    assert_eq!(code, 200, "{v}");
    server.wait_for(60, "the build", |s| s["counts"]["built"] == 1);
    let fast = |server: &Server| {
        let (_, v) = server.get("/api/v1/profiles");
        v["profiles"][1].clone()
    };
    assert_eq!(
        fast(&server)["built_in_another_env"],
        0,
        "{}",
        fast(&server)
    );
    let (code, v) = control(
        &server,
        json!({"action": "set_profile", "profile": "fast", "env": {"CFLAGS": "-O2"}}),
    );
    assert_eq!(code, 200, "{v}");
    let p = fast(&server);
    assert_eq!(p["built_in_another_env"], 1, "{p}");
    let note = p["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("=dev-libs/a-1") && note.contains("swarm fresh --profile fast"),
        "{p}"
    );
}

/// A drone's environment changed twice within a minute: the server holds the second change
/// back, so the farm still has the first. A build whose pre-build read saw the second started
/// at once and was recorded under the first (h32). It now waits until the server takes the
/// change, and the drift hands the package back unbuilt.
#[test]
fn a_build_waits_out_an_environment_change_the_server_holds_back() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, env_file, _drone) = drone_reading_a_file(dir.path(), "drone-e");
    let cflags = |server: &Server| server.node("drone-e")["env"]["CFLAGS"].clone();
    server.wait_for(30, "the first environment", |_| cflags(&server) == "-O2");
    let expect = |server: &Server| {
        let (code, v) = control(server, json!({"action": "expect_env", "drone": "drone-e"}));
        assert_eq!(code, 200, "{v}");
    };
    expect(&server);
    // A first change, seen by the package's pre-build read: taken, a drift, handed back.
    std::fs::write(&env_file, "CFLAGS=-O3\n").expect("env");
    let (code, v) = server.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/p-1"]}));
    assert_eq!(code, 200, "{v}");
    server.wait_for(30, "the first change", |_| cflags(&server) == "-O3");
    // A second at once: held back for the rest of the minute. The farm now expects the first,
    // so the package is given again, and its pre-build read sees the second.
    std::fs::write(&env_file, "CFLAGS=-Os\n").expect("env");
    expect(&server);
    server.wait_for(100, "the second change, once the minute is over", |_| {
        cflags(&server) == "-Os"
    });
    std::thread::sleep(std::time::Duration::from_secs(2));
    let (_, history) = server.get("/api/v1/history?limit=100");
    let built = history["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["outcome"] == "success")
        .count();
    assert_eq!(
        built, 0,
        "built under an environment the farm did not have: {history}"
    );
    let (_, status) = server.get("/api/v1/status");
    assert_eq!(status["counts"]["built"], 0, "{status}");
}

/// An environment command that starts failing (a Portage upgrade that broke `portageq`): the
/// agent went on reporting the last environment it had read, so its builds were stamped with
/// one it could no longer vouch for (h32 F3). A failed read now reports no environment, and a
/// farm that expects one gives the drone no work until a read works again.
#[test]
fn a_drone_whose_environment_can_no_longer_be_read_gets_no_work() {
    let dir = tempfile::tempdir().expect("dir");
    let (server, env_file, _drone) = drone_reading_a_file(dir.path(), "drone-f");
    let env = |server: &Server| server.node("drone-f")["env"].clone();
    server.wait_for(30, "the environment", |_| env(&server)["CFLAGS"] == "-O2");
    let (code, v) = control(&server, json!({"action": "expect_env", "drone": "drone-f"}));
    assert_eq!(code, 200, "{v}");
    let queue = |atom: &str| {
        let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": [atom] }));
        assert_eq!(code, 200, "{v}");
    };
    queue("=dev-libs/f-1");
    server.wait_for(60, "a build", |s| s["counts"]["built"] == 1);
    // Output the server would refuse is a failed read too (h35: every heartbeat got a 400,
    // and the drone built on under the environment the server last heard).
    std::fs::write(&env_file, "CFLAGS=-O2\n=novalue\nbad key=x\n").expect("garble");
    queue("=dev-libs/f-2");
    server.wait_for(100, "no environment reported", |_| {
        env(&server).as_object().is_none_or(|e| e.is_empty())
    });
    std::fs::remove_file(&env_file).expect("break the command");
    std::thread::sleep(std::time::Duration::from_secs(3));
    let (_, status) = server.get("/api/v1/status");
    assert_eq!(
        status["counts"]["built"], 1,
        "built with an environment the drone could not read: {status}"
    );
    let no_work = server.node("drone-f")["no_work"].to_string();
    assert!(no_work.contains("environment"), "{no_work}");
    // Mended, the command is read again within a minute or two, not ten (h35 F3).
    std::fs::write(&env_file, "CFLAGS=-O2\n").expect("mend");
    server.wait_for(
        180,
        "the package built once the environment reads again",
        |s| s["counts"]["built"] == 2,
    );
}

/// An environment command that takes seconds (a slow `portageq`, a hung one until its 20 s
/// limit): every build waited for its own read, four 0.6 s builds took 63 s (h32). A slow read
/// turns the reads before builds off for ten minutes; the ten-minute read goes on.
#[test]
fn a_slow_environment_command_is_not_run_before_every_build() {
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let count = dir.path().join("reads");
    let script = env_command(
        dir.path(),
        &format!(
            "echo read >> '{}'\nsleep 6\necho CFLAGS=-O2",
            count.display()
        ),
    );
    let drone = support::drone::Drone::start(
        &server,
        dir.path(),
        "drone-slow",
        &["--env-command", &script],
        &[],
    );
    let atoms: Vec<String> = (0..4).map(|i| format!("=dev-libs/s{i}-1")).collect();
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": atoms }));
    assert_eq!(code, 200, "{v}");
    server.wait_for(90, "four builds", |s| s["counts"]["built"] == 4);
    let reads = std::fs::read_to_string(&count)
        .expect("reads")
        .lines()
        .count();
    assert!(
        reads <= 2,
        "{reads} reads of a 6 s environment command for 4 builds"
    );
    let log = std::fs::read_to_string(&drone.log).expect("drone log");
    assert!(
        log.contains("builds start without a read of their own"),
        "{log}"
    );
}
