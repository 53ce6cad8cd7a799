//! End-to-end tests of the drone agent (issue 6 §1): real `swarm serve` and
//! real `swarm drone` processes on 127.0.0.1, with the bundled STAND-IN
//! builder (`--builder standin`), which sleeps and writes a gpkg-shaped tar.
//!
//! Each test owns its server, drones and temp dirs; every process (builders
//! included) is killed when the test ends, pass or fail.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::drone::{processes, Drone};
use support::lossy_proxy::LossyProxy;
use support::{request, swarm_bin, Server};

/// Policy for tests that need a dead drone noticed quickly.
const FAST_LIVENESS: [(&str, &str); 4] = [
    ("SWARM_POLICY_HEARTBEAT_GRACE_MS", "2000"),
    ("SWARM_POLICY_CONFIRMED_DEAD_AFTER_MS", "3000"),
    ("SWARM_POLICY_OFFLINE_TIMEOUT_MS", "4000"),
    ("SWARM_POLICY_FAILOVER_GRACE_MS", "1000"),
];

fn alive(pid: u32) -> bool {
    processes().iter().any(|p| p.pid == pid)
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn queue(server: &Server, packages: Value) {
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": packages }));
    assert_eq!(code, 200, "queue: {v}");
}

/// The queue entry of `atom`.
fn entry(server: &Server, atom: &str) -> Value {
    let (code, v) = server.get("/api/v1/queue?limit=1000");
    assert_eq!(code, 200, "{v}");
    v["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["atom"] == atom).cloned())
        .unwrap_or_else(|| panic!("{atom} not in the queue: {v}"))
}

/// Waits until `atom` is assigned and started; returns (drone, lease).
fn wait_started(server: &Server, atom: &str, secs: u64) -> (String, u64) {
    let mut found = None;
    wait_until(secs, &format!("{atom} to start"), || {
        let s = &entry(server, atom)["status"];
        if s["state"] == "assigned" && s["started"] == true {
            found = Some((
                s["drone"].as_str().unwrap_or_default().to_string(),
                s["lease"].as_u64().unwrap_or_default(),
            ));
        }
        found.is_some()
    });
    found.unwrap_or_default()
}

fn state_of(server: &Server, atom: &str) -> String {
    entry(server, atom)["status"]["state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Successful builds of `atom` in the server's history.
fn successes(server: &Server, atom: &str) -> Vec<Value> {
    let (_, v) = server.get("/api/v1/history?limit=1000");
    v["builds"]
        .as_array()
        .map(|b| {
            b.iter()
                .filter(|b| b["package"] == atom && b["outcome"] == "success")
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    hex::encode(Sha256::digest(&bytes))
}

/// A sizes file for the stand-in builder: `atom units` lines.
fn sizes(dir: &Path, lines: &[(&str, u32)]) -> String {
    let path = dir.join("sizes");
    let text: String = lines.iter().map(|(a, n)| format!("{a} {n}\n")).collect();
    std::fs::write(&path, text).expect("sizes");
    path.to_string_lossy().into_owned()
}

#[test]
fn the_agent_builds_a_small_dag_and_the_artifacts_land_in_staging_with_their_sha256() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    queue(
        &server,
        json!([
            {"atom": "app-misc/top-3", "deps": ["dev-libs/mid-2.0", "virtual/glue-1"]},
            {"atom": "dev-libs/mid-2.0", "deps": ["dev-libs/base-1.0"]},
            "dev-libs/base-1.0",
            "virtual/glue-1",
            "sys-apps/side-1.2",
        ]),
    );
    let mut a = Drone::start(&server, dir.path(), "drone-a", &[], &[]);
    let mut b = Drone::start(&server, dir.path(), "drone-b", &[], &[]);
    server.wait_for(60, "all five built", |s| s["counts"]["built"] == 5);

    let staging = server.data_dir.join("staging");
    let mut stored_at = Vec::new();
    for (cat, pf) in [
        ("dev-libs", "base-1.0"),
        ("dev-libs", "mid-2.0"),
        ("app-misc", "top-3"),
        ("sys-apps", "side-1.2"),
    ] {
        let staged = staging.join(cat).join(format!("{pf}.gpkg.tar"));
        let built: Vec<PathBuf> = [&a, &b]
            .iter()
            .map(|d| d.pkgdir.join(cat).join(format!("{pf}.gpkg.tar")))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(built.len(), 1, "{cat}/{pf} built by exactly one drone");
        assert!(std::fs::metadata(&staged).expect("staged").len() >= 1024);
        assert_eq!(sha256_of(&staged), sha256_of(&built[0]), "{cat}/{pf}");
        let atom = format!("={cat}/{pf}");
        assert_eq!(successes(&server, &atom).len(), 1, "{atom} built once");
        stored_at.push(
            std::fs::metadata(&staged)
                .and_then(|m| m.modified())
                .expect("mtime"),
        );
    }
    assert!(
        stored_at[0] <= stored_at[1] && stored_at[1] <= stored_at[2],
        "dependencies are built first"
    );
    // Virtuals reach the binhost too: a valid (empty) gpkg, uploaded like any package.
    let glue = staging.join("virtual/glue-1.gpkg.tar");
    let pkg = swarm_net::binpkg::inspect(&glue).expect("the virtual's gpkg is staged and valid");
    assert_eq!(pkg.cpv, "virtual/glue-1");
    // Every staged package passed the server's validation.
    for (cat, pf) in [("dev-libs", "base-1.0"), ("app-misc", "top-3")] {
        let pkg = swarm_net::binpkg::inspect(&staging.join(cat).join(format!("{pf}.gpkg.tar")))
            .expect("valid");
        assert_eq!(pkg.cpv, format!("{cat}/{pf}"));
    }
    for d in [&mut a, &mut b] {
        d.signal(rustix::process::Signal::TERM);
        assert_eq!(d.wait_exit(20), Some(0), "{}", d.log_text());
    }
}

#[test]
fn a_drone_killed_mid_build_loses_its_lease_to_another_and_its_late_report_is_stale() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &FAST_LIVENESS);
    let atom = "=dev-libs/victim-1.0";
    // 10 minutes of stand-in build: the orphaned builder must still be running
    // when the test checks it, however slowly a loaded CI machine gets there.
    let sizes = sizes(dir.path(), &[(atom, 6000)]);
    queue(&server, json!([atom]));
    let mut dead = Drone::start(
        &server,
        dir.path(),
        "drone-dead",
        &[],
        &[("SWARM_STANDIN_SIZES", sizes.as_str())],
    );
    let (holder, lease) = wait_started(&server, atom, 30);
    assert_eq!(holder, "drone-dead");
    // The script and its `sleep`: the same two in two looks 100 ms apart,
    // so no short-lived `$(awk ...)` of the script's start is taken for
    // the grandchild (it exits at once, and "outlived" below failed).
    let mut orphaned = Vec::new();
    wait_until(10, "the builder and its grandchild", || {
        let now = dead.builder_processes();
        let settled = now.len() >= 2 && now == orphaned;
        orphaned = now;
        settled
    });
    dead.kill9();

    // Another drone takes the package once the dead one is offline.
    let mut heir = Drone::start(&server, dir.path(), "drone-heir", &[], &[]);
    wait_until(60, "the heir to build the victim", || {
        state_of(&server, atom) == "built"
    });
    let built = successes(&server, atom);
    assert_eq!(built.len(), 1, "{built:?}");
    assert_eq!(built[0]["drone"], "drone-heir");
    let (_, events) = server.get("/api/v1/events/history?limit=1000");
    assert!(
        events["events"].as_array().is_some_and(|e| e
            .iter()
            .any(|e| e["kind"] == "reclaimed" && e["drone"] == "drone-dead")),
        "the dead drone's lease was reclaimed: {events}"
    );

    // The dead drone's report, arriving late, is refused as stale.
    let (code, v) = request(
        "POST",
        &format!("{}/api/v1/complete", server.url),
        Some(
            &json!({"node_name": "drone-dead", "package": atom, "status": "success",
                    "lease": lease, "build_duration_s": 600.0})
            .to_string(),
        ),
        None,
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["stale"], true, "{v}");
    assert_eq!(v["action"], "stop_work", "{v}");
    assert_eq!(successes(&server, atom).len(), 1, "still built once");

    // Its builder outlived it (own process group); the agent, started again,
    // kills what its predecessor left running.
    assert!(orphaned.iter().all(|(pid, _)| alive(*pid)), "{orphaned:?}");
    let mut again = Drone::start(&server, dir.path(), "drone-dead", &[], &[]);
    wait_until(15, "the leftover build to be killed", || {
        orphaned.iter().all(|(pid, _)| !alive(*pid))
    });
    for d in [&mut heir, &mut again] {
        d.signal(rustix::process::Signal::TERM);
        assert_eq!(d.wait_exit(20), Some(0), "{}", d.log_text());
    }
}

#[test]
fn sigterm_finishes_or_returns_the_running_build_and_nothing_is_lost_or_built_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let finish_atom = "=dev-libs/finish-1.0";
    let return_atom = "=dev-libs/return-1.0";
    let sizes = sizes(dir.path(), &[(finish_atom, 30), (return_atom, 600)]);
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];

    // --on-stop finish: the build runs to the end and is reported, then exit 0.
    queue(&server, json!([finish_atom]));
    let mut finisher = Drone::start(
        &server,
        dir.path(),
        "drone-finish",
        &["--on-stop", "finish"],
        &env,
    );
    wait_started(&server, finish_atom, 30);
    finisher.signal(rustix::process::Signal::TERM);
    assert_eq!(finisher.wait_exit(30), Some(0), "{}", finisher.log_text());
    assert_eq!(state_of(&server, finish_atom), "built");
    assert_eq!(successes(&server, finish_atom).len(), 1);

    // --on-stop return: the build is killed and handed back at once.
    queue(&server, json!([return_atom]));
    let mut returner = Drone::start(
        &server,
        dir.path(),
        "drone-return",
        &["--on-stop", "return"],
        &env,
    );
    wait_started(&server, return_atom, 30);
    // The builder forks its grandchild just after it starts: on a loaded
    // machine "started" can be reported before the fork.
    let mut builders = Vec::new();
    wait_until(10, "the builder and its grandchild", || {
        builders = returner.builder_processes();
        builders.len() >= 2
    });
    let asked = Instant::now();
    returner.signal(rustix::process::Signal::TERM);
    assert_eq!(returner.wait_exit(15), Some(0), "{}", returner.log_text());
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "returned at once"
    );
    for (pid, _) in &builders {
        assert!(!alive(*pid), "builder process {pid} outlived the return");
    }
    let state = state_of(&server, return_atom);
    assert_ne!(state, "built");
    assert_ne!(state, "assigned", "the lease went back");

    // A second SIGTERM while draining returns at once as well.
    let mut drainer = Drone::start(
        &server,
        dir.path(),
        "drone-drain",
        &["--on-stop", "finish"],
        &env,
    );
    wait_started(&server, return_atom, 30);
    drainer.signal(rustix::process::Signal::TERM);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        drainer.child.try_wait().ok().flatten(),
        None,
        "still draining"
    );
    drainer.signal(rustix::process::Signal::TERM);
    assert_eq!(drainer.wait_exit(15), Some(0), "{}", drainer.log_text());
    assert_ne!(state_of(&server, return_atom), "assigned");

    // The returned package is built by the next drone, once.
    let fast = dir.path().join("sizes-fast");
    std::fs::write(&fast, format!("{return_atom} 5\n")).expect("sizes");
    let fast = fast.to_string_lossy().into_owned();
    let mut last = Drone::start(
        &server,
        dir.path(),
        "drone-last",
        &[],
        &[("SWARM_STANDIN_SIZES", fast.as_str())],
    );
    wait_until(60, "the returned package to be built", || {
        state_of(&server, return_atom) == "built"
    });
    assert_eq!(successes(&server, return_atom).len(), 1);
    assert_eq!(successes(&server, finish_atom).len(), 1);
    last.signal(rustix::process::Signal::TERM);
    assert_eq!(last.wait_exit(20), Some(0));
}

/// SIGHUP (the terminal of a foreground agent or server closes) stops both
/// as SIGTERM does instead of killing them unlogged: the agent finishes and
/// delivers its running build and exits 0, the server closes its store and
/// exits 0, and the build is still recorded after a restart.
#[test]
fn sighup_stops_the_agent_and_the_server_cleanly_as_sigterm_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(&dir.path().join("server"), &[]);
    let atom = "=dev-libs/hangup-1.0";
    let sizes = sizes(dir.path(), &[(atom, 30)]);
    queue(&server, json!([atom]));
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-hangup",
        &["--on-stop", "finish"],
        &[("SWARM_STANDIN_SIZES", sizes.as_str())],
    );
    wait_started(&server, atom, 30);
    drone.signal(rustix::process::Signal::HUP);
    assert_eq!(drone.wait_exit(30), Some(0), "{}", drone.log_text());
    assert!(
        drone.log_text().contains("stop requested"),
        "{}",
        drone.log_text()
    );
    assert_eq!(state_of(&server, atom), "built", "finished and delivered");
    assert_eq!(
        server.stop_with(rustix::process::Signal::HUP),
        Some(0),
        "a clean close, not death by the signal"
    );
    server.restart();
    assert_eq!(state_of(&server, atom), "built");
    assert_eq!(successes(&server, atom).len(), 1);
}

#[test]
fn a_revoke_kills_the_whole_build_process_group_leaving_no_grandchild() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let atom = "=dev-libs/revoked-1.0";
    let sizes = sizes(dir.path(), &[(atom, 600)]);
    queue(&server, json!([atom]));
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-r",
        &[],
        &[("SWARM_STANDIN_SIZES", sizes.as_str())],
    );
    wait_started(&server, atom, 30);
    let mut builders = Vec::new();
    wait_until(10, "the builder and its grandchild", || {
        builders = drone.builder_processes();
        builders.len() >= 2
    });
    let pgid = builders[0].1;
    assert!(builders.iter().all(|(_, g)| *g == pgid));
    assert!(
        builders.iter().any(|(pid, _)| *pid as i32 != pgid),
        "a grandchild in the group: {builders:?}"
    );

    // Blocking a package the drone builds takes its lease away: the next
    // heartbeat reply revokes it.
    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "block", "package": atom}),
    );
    assert_eq!(code, 200, "{v}");
    wait_until(15, "the revoked build's process group to die", || {
        builders.iter().all(|(pid, _)| !alive(*pid))
    });
    assert!(
        processes().iter().all(|p| p.pgid != pgid),
        "nothing is left in process group {pgid}"
    );
    assert_eq!(
        drone.child.try_wait().ok().flatten(),
        None,
        "the agent lives on"
    );
    assert!(drone.log_text().contains("revoked"), "{}", drone.log_text());
    assert_eq!(successes(&server, atom).len(), 0);
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0));
}

#[test]
fn builds_survive_a_control_plane_outage_and_their_uploads_and_reports_land_after_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(&dir.path().join("server"), &[]);
    let atoms = ["=dev-libs/steady-1.0", "=dev-libs/steady-2.0"];
    let sizes = sizes(dir.path(), &[(atoms[0], 60), (atoms[1], 60)]);
    queue(&server, json!(atoms));
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let mut a = Drone::start(&server, dir.path(), "drone-a", &[], &env);
    let mut b = Drone::start(&server, dir.path(), "drone-b", &[], &env);
    for atom in atoms {
        wait_started(&server, atom, 30);
    }
    // The builds' group leaders (the builder scripts, alive for the whole build): the script's own
    // short-lived children (`$(awk ...)` while it reads its size) may come and go at any time.
    // On a loaded machine "started" can be reported before the fork: wait for them.
    let leaders = |d: &Drone| -> Vec<(u32, i32)> {
        d.builder_processes()
            .into_iter()
            .filter(|(pid, pgid)| *pid as i32 == *pgid)
            .collect()
    };
    let mut before = Vec::new();
    wait_until(10, "both builders' processes", || {
        before = [&a, &b].iter().map(|d| leaders(d)).collect();
        before.iter().all(|l: &Vec<(u32, i32)>| !l.is_empty())
    });
    // Down long enough for the builds to end and their uploads to find no server.
    server.kill9();
    std::thread::sleep(Duration::from_secs(2));
    for (d, procs) in [&a, &b].iter().zip(&before) {
        assert!(
            procs.iter().all(|(pid, _)| alive(*pid)),
            "{}'s build keeps running while the server is down",
            d.name
        );
    }
    std::thread::sleep(Duration::from_secs(18));
    server.restart();
    server.wait_for(60, "both built after the restart", |s| {
        s["counts"]["built"] == 2
    });
    for atom in atoms {
        let built = successes(&server, atom);
        assert_eq!(built.len(), 1, "{atom}: {built:?}");
        let pf = atom.trim_start_matches("=dev-libs/");
        assert!(server
            .data_dir
            .join("staging/dev-libs")
            .join(format!("{pf}.gpkg.tar"))
            .exists());
    }
    for d in [&mut a, &mut b] {
        assert!(
            !d.log_text().contains("ended=Stopped"),
            "no build was dropped: {}",
            d.log_text()
        );
        d.signal(rustix::process::Signal::TERM);
        assert_eq!(d.wait_exit(20), Some(0), "{}", d.log_text());
    }
}

#[test]
fn a_drone_on_a_stale_portage_tree_syncs_first_then_builds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let stamp = dir.path().join("timestamp.chk");
    std::fs::write(&stamp, "Mon, 16 Feb 2026 00:00:00 +0000\n").expect("stamp");
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["dev-libs/fresh-1.0"], "portage_timestamp": "2026-02-17 00:00"}),
    );
    assert_eq!(code, 200, "{v}");
    // The "sync" writes the newer timestamp, as `emaint sync` would.
    let sync = format!(
        "sh -c 'echo \"Tue, 17 Feb 2026 00:00:00 +0000\" > {}'",
        stamp.display()
    );
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-sync",
        &[
            "--sync-command",
            &sync,
            "--portage-timestamp-file",
            &stamp.to_string_lossy(),
        ],
        &[],
    );
    wait_until(60, "the package to be built after the sync", || {
        state_of(&server, "=dev-libs/fresh-1.0") == "built"
    });
    let log = drone.log_text();
    assert!(log.contains("Portage synced"), "{log}");
    let (_, nodes) = server.get("/api/v1/nodes?all=true");
    let node = nodes
        .as_array()
        .and_then(|n| n.iter().find(|n| n["name"] == "drone-sync").cloned())
        .expect("node");
    assert_eq!(node["portage_snapshot"], "2026-02-17 00:00", "{node}");
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0));
}

#[test]
fn a_drone_token_is_sent_when_the_server_requires_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("server"),
        &[("SWARM_DRONE_TOKEN", "drone-secret")],
    );
    queue(&server, json!(["dev-libs/guarded-1.0"]));
    let mut outsider = Drone::start(&server, dir.path(), "drone-outsider", &[], &[]);
    let mut member = Drone::start(
        &server,
        dir.path(),
        "drone-member",
        &["--token", "drone-secret"],
        &[],
    );
    wait_until(30, "the package to be built", || {
        state_of(&server, "=dev-libs/guarded-1.0") == "built"
    });
    assert_eq!(
        successes(&server, "=dev-libs/guarded-1.0")[0]["drone"],
        "drone-member"
    );
    assert!(
        outsider.log_text().contains("401") || outsider.log_text().contains("403"),
        "{}",
        outsider.log_text()
    );
    for d in [&mut outsider, &mut member] {
        d.signal(rustix::process::Signal::TERM);
        assert_eq!(d.wait_exit(20), Some(0), "{}", d.log_text());
    }
}
/// `swarm fleet` as an operator runs it.
fn fleet_text(server: &Server) -> String {
    let out = Command::new(swarm_bin())
        .arg("fleet")
        .env("SWARM_URL", &server.url)
        .output()
        .expect("swarm fleet");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn status_of_drone(server: &Server, name: &str) -> String {
    let (_, v) = server.get("/api/v1/nodes?all=true");
    v.as_array()
        .and_then(|n| n.iter().find(|d| d["name"] == name))
        .map(|d| d["status"].as_str().unwrap_or_default().to_string())
        .unwrap_or_default()
}

#[test]
fn a_drone_stopped_cleanly_shows_as_stopped_and_a_killed_one_stops_showing_as_building() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Liveness fast enough that a silent drone is suspect within seconds,
    // but offline (and its work requeued) only after a minute.
    let server = Server::start(
        &dir.path().join("server"),
        &[
            ("SWARM_POLICY_HEARTBEAT_GRACE_MS", "2000"),
            ("SWARM_POLICY_OFFLINE_TIMEOUT_MS", "60000"),
            ("SWARM_POLICY_CONFIRMED_DEAD_AFTER_MS", "30000"),
            ("SWARM_POLICY_FAILOVER_GRACE_MS", "1000"),
        ],
    );
    let atom = "=dev-libs/long-1.0";
    let sizes = sizes(dir.path(), &[(atom, 600)]);
    let mut stopping = Drone::start(&server, dir.path(), "drone-stop", &[], &[]);
    wait_until(20, "drone-stop to register", || {
        status_of_drone(&server, "drone-stop") == "online"
    });
    stopping.signal(rustix::process::Signal::TERM);
    assert_eq!(stopping.wait_exit(20), Some(0), "{}", stopping.log_text());
    assert!(
        stopping
            .log_text()
            .contains("told the server this drone stopped"),
        "{}",
        stopping.log_text()
    );
    assert_eq!(status_of_drone(&server, "drone-stop"), "stopped");

    queue(&server, json!([atom]));
    let mut killed = Drone::start(
        &server,
        dir.path(),
        "drone-killed",
        &[],
        &[("SWARM_STANDIN_SIZES", sizes.as_str())],
    );
    let (holder, _) = wait_started(&server, atom, 30);
    assert_eq!(holder, "drone-killed");
    assert!(fleet_text(&server).contains("building"));
    killed.kill9();
    wait_until(20, "drone-killed to turn suspect", || {
        status_of_drone(&server, "drone-killed") == "suspect"
    });
    let fleet = fleet_text(&server);
    assert!(
        !fleet.contains("building"),
        "a dead drone's package is not building: {fleet}"
    );
    assert!(fleet.contains("no word: drone suspect"), "{fleet}");
    // Well past the heartbeat grace, the cleanly stopped drone is still just stopped.
    assert_eq!(status_of_drone(&server, "drone-stop"), "stopped");
    assert!(fleet.contains("stopped cleanly"), "{fleet}");
}

#[test]
fn a_drone_whose_builder_is_missing_refuses_to_start_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let mut d = Drone::start(
        &server,
        dir.path(),
        "drone-nobuilder",
        &["--builder", "/nonexistent/usr/bin/emerge --oneshot {atom}"],
        &[],
    );
    let code = d.wait_exit(20);
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}");
    let log = d.log_text();
    assert!(
        log.contains("/nonexistent/usr/bin/emerge does not exist"),
        "{log}"
    );
    assert!(!log.contains("Stack backtrace"), "{log}");
    let (_, nodes) = server.get("/api/v1/nodes?all=true");
    assert_eq!(
        nodes.as_array().map(Vec::len),
        Some(0),
        "it never registered: {nodes}"
    );
}

#[test]
fn a_missing_and_a_wrong_drone_token_are_told_apart_in_the_agents_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("server"),
        &[("SWARM_DRONE_TOKEN", "drone-secret")],
    );
    let missing = Drone::start(&server, dir.path(), "drone-notoken", &[], &[]);
    let wrong = Drone::start(
        &server,
        dir.path(),
        "drone-wrongtoken",
        &["--token", "not-the-secret"],
        &[],
    );
    wait_until(20, "both agents to log the refusal", || {
        missing.log_text().contains("sends none")
            && wrong.log_text().contains("refused this drone's token")
    });
    assert!(!missing.log_text().contains("refused this drone's token"));
}

#[test]
fn the_agent_accepts_a_server_address_without_a_scheme() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let mut d = Drone::start(
        &server,
        dir.path(),
        "drone-bare",
        &["--server", server.addr.as_str()],
        &[],
    );
    wait_until(20, "drone-bare to register", || {
        status_of_drone(&server, "drone-bare") == "online"
    });
    d.signal(rustix::process::Signal::TERM);
    assert_eq!(d.wait_exit(20), Some(0), "{}", d.log_text());
}

/// The drone's disk floor is absolute free space: set above what the disk has,
/// the drone reports Degraded, the server says why it gets no work, the log
/// names the floor, and nothing is built; set to what any machine has, the same
/// package builds. (A percentage floor stalled every drone on a big, 90 % full
/// CI disk that still had gigabytes free.)
#[test]
fn a_drone_below_its_free_disk_floor_takes_no_work_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    queue(&server, json!(["dev-libs/base-1.0"]));
    let mut full = Drone::start(
        &server,
        dir.path(),
        "drone-full",
        &["--min-free-disk", "1PiB"],
        &[],
    );
    let node = |name: &str| {
        let (_, v) = server.get("/api/v1/nodes?all=true");
        v.as_array()
            .and_then(|n| n.iter().find(|d| d["name"] == name).cloned())
            .unwrap_or_default()
    };
    wait_until(30, "drone-full to report degraded", || {
        node("drone-full")["health"] == "degraded"
    });
    let why = node("drone-full")["no_work"].to_string();
    assert!(
        why.contains("degraded") && why.contains("disk"),
        "no_work: {why}"
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(state_of(&server, "=dev-libs/base-1.0"), "queued");
    let log = full.log_text();
    assert!(
        log.contains("below the") && log.contains("MiB floor (--min-free-disk)"),
        "{log}"
    );
    full.kill9();

    let _fine = Drone::start(
        &server,
        dir.path(),
        "drone-fine",
        &["--min-free-disk", "1MiB"],
        &[],
    );
    server.wait_for(30, "the package built", |s| s["counts"]["built"] == 1);
}

#[test]
fn a_bad_free_disk_floor_is_refused_with_the_setting_named() {
    let out = Command::new(swarm_bin())
        .args(["drone", "--server", "http://127.0.0.1:9", "--name", "x"])
        .args(["--builder", "standin", "--min-free-disk", "lots"])
        .env_remove("SWARM_CONFIG")
        .output()
        .expect("swarm drone");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("min-free-disk \"lots\""), "{err}");
}

/// A binary package over the server's limit is reported `upload_failed` at
/// once instead of being sent: the server's 413 came while the body was
/// still being sent, the agent saw a broken connection and retried it as an
/// outage for ever, with the slot held and the lease kept alive.
#[test]
fn a_binary_package_over_the_servers_limit_is_reported_upload_failed_not_retried_for_ever() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("server"),
        &[("SWARM_MAX_ARTIFACT_BYTES", "1048576")],
    );
    let builder = dir.path().join("big-builder.sh");
    std::fs::write(
        &builder,
        "atom=$1; category=$2; pf=$3\n\
         mkdir -p \"$PKGDIR/$category\"\n\
         out=\"$PKGDIR/$category/$pf.gpkg.tar\"\n\
         \"$SWARM_BIN\" standin-gpkg \"$category/$pf\" \"$out.tmp\" || exit 1\n\
         head -c 16000000 /dev/zero >> \"$out.tmp\"\n\
         mv \"$out.tmp\" \"$out\"\n",
    )
    .expect("builder");
    let atom = "=dev-libs/big-1.0";
    queue(&server, json!([atom]));
    let template = format!("sh {} {{atom}} {{category}} {{pf}}", builder.display());
    let bin = support::swarm_bin();
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-big",
        &["--builder", &template],
        &[("SWARM_BIN", bin.to_str().expect("utf-8 path"))],
    );
    wait_until(60, "the upload failure to be reported", || {
        drone.log_text().contains("recorded=upload_failed")
    });
    assert!(successes(&server, atom).is_empty());
    let log = drone.log_text();
    assert!(
        log.contains("over the 1048576 bytes the server takes"),
        "the agent says why: {log}"
    );
    assert!(!log.contains("broken pipe"), "nothing was sent: {log}");
    // The operator reads why in history, not only in the drone's log (h21's finding 5).
    let (_, v) = server.get("/api/v1/history?limit=1000");
    let row = v["builds"]
        .as_array()
        .and_then(|b| {
            b.iter()
                .find(|b| b["package"] == atom && !b["finished_at"].is_null())
                .cloned()
        })
        .unwrap_or_else(|| panic!("no history row for {atom}: {v}"));
    let said = row["detail"].as_str().unwrap_or_default();
    assert!(
        said.starts_with("upload failed: ") && said.contains("over the 1048576 bytes"),
        "history keeps the refusal: {row}"
    );
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0), "{}", drone.log_text());
}

/// A second agent started on a work dir another agent runs on is refused at
/// once, saying why, and the first one's build goes on to succeed. Before,
/// it took the running build for an earlier agent's leftovers, killed it,
/// and the build was reported failed.
#[test]
fn a_second_agent_on_the_same_work_dir_is_refused_and_the_first_ones_build_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let atom = "=dev-libs/shared-dir-1.0";
    let sizes = sizes(dir.path(), &[(atom, 30)]);
    queue(&server, json!([atom]));
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let mut first = Drone::start(&server, dir.path(), "drone-a", &[], &env);
    wait_started(&server, atom, 30);
    // The same work dir under another path (its own log file).
    let other = dir.path().join("other");
    std::fs::create_dir(&other).expect("mkdir");
    std::os::unix::fs::symlink(&first.work_dir, other.join("drone-a")).expect("symlink");
    let mut second = Drone::start(&server, &other, "drone-a", &[], &env);
    let code = second.wait_exit(20);
    assert!(
        code.is_some_and(|c| c != 0),
        "refused: {code:?}\n{}",
        second.log_text()
    );
    assert!(
        second
            .log_text()
            .contains("another swarm drone runs on the work dir"),
        "{}",
        second.log_text()
    );
    server.wait_for(60, "the first agent's build", |s| s["counts"]["built"] == 1);
    assert_eq!(successes(&server, atom).len(), 1);
    first.signal(rustix::process::Signal::TERM);
    assert_eq!(first.wait_exit(20), Some(0), "{}", first.log_text());
}

/// The drone's credential never reaches a build: a builder runs an ebuild's
/// code, and what it prints lands in a build log any reader of the server
/// can fetch. Here the builder prints its whole environment.
#[test]
fn the_drone_token_is_not_in_a_builds_environment_nor_its_log() {
    // The umask a login shell has (the agent inherits it).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "drone-secret-never-in-a-log";
    let server = Server::start(&dir.path().join("server"), &[("SWARM_DRONE_TOKEN", secret)]);
    let builder = dir.path().join("env-builder.sh");
    std::fs::write(
        &builder,
        "category=$1; pf=$2\n\
         env\n\
         mkdir -p \"$PKGDIR/$category\"\n\
         \"$SWARM_BIN\" standin-gpkg \"$category/$pf\" \"$PKGDIR/$category/$pf.gpkg.tar\"\n",
    )
    .expect("builder");
    let atom = "=dev-libs/env-shown-1.0";
    queue(&server, json!([atom]));
    let template = format!("sh {} {{category}} {{pf}}", builder.display());
    let bin = support::swarm_bin();
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-env",
        &["--builder", &template],
        &[
            ("SWARM_BIN", bin.to_str().expect("utf-8 path")),
            ("SWARM_DRONE_TOKEN", secret),
            // A host that is server and drone has the other credentials too (h10).
            ("ADMIN_SECRET", "admin-secret-never-in-a-log"),
            ("SWARM_READ_TOKEN", "read-token-never-in-a-log"),
        ],
    );
    server.wait_for(60, "the build", |s| s["counts"]["built"] == 1);
    let lease = successes(&server, atom)
        .first()
        .and_then(|b| b["lease"].as_u64())
        .expect("the build's lease");
    let (code, text) = server.get(&format!("/api/v1/logs/{lease}"));
    assert_eq!(code, 200, "the build log: {text}");
    let text = text.as_str().unwrap_or_default();
    assert!(
        text.contains("PKGDIR="),
        "the builder printed its environment: {text}"
    );
    for secret in [secret, "admin-secret-never", "read-token-never"] {
        assert!(
            !text.contains(secret),
            "{secret} is in the build log: {text}"
        );
    }
    // The drone's copy of the log is not for every user of the host either
    // (h11; the drone started under umask 022, set below).
    let logs = drone.work_dir.join("logs");
    let mut checked = vec![logs.clone()];
    checked.extend(
        std::fs::read_dir(&logs)
            .expect("the log dir")
            .map(|e| e.expect("entry").path()),
    );
    assert!(checked.len() > 1, "a build log is kept: {checked:?}");
    for p in checked {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&p).expect("mode").permissions(),
        );
        assert_eq!(mode & 0o007, 0, "{}: {mode:o}", p.display());
    }
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0), "{}", drone.log_text());
}

/// A spooled build of a real-sized package whose lease ended meanwhile (its
/// agent was killed, the lease reclaimed) is told so, and the drone goes back
/// to work. The server refuses such an upload from its headers, before the
/// body, and under a 12 MiB body still being sent that refusal reached the
/// agent as a broken pipe: retried as an outage for ever, the spooled build
/// held the drone's slot and the package was never built (h21). The agent now
/// asks the server first (`X-Swarm-Check`).
#[test]
fn a_big_spooled_build_whose_lease_ended_is_let_go_and_the_drone_builds_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start(&dir.path().join("server"), &FAST_LIVENESS);
    let atom = "=dev-libs/big-1.0";
    let gpkg = dir.path().join("big-1.0.gpkg.tar");
    support::packages::big_gpkg("dev-libs/big-1.0", 12 << 20, &gpkg);
    let go = dir.path().join("go");
    let builder = dir.path().join("big-builder.sh");
    std::fs::write(
        &builder,
        format!(
            "category=$1; pf=$2\n\
             while [ ! -e {go} ]; do sleep 0.1; done\n\
             mkdir -p \"$PKGDIR/$category\"\n\
             cp {gpkg} \"$PKGDIR/$category/$pf.gpkg.tar\"\n",
            go = go.display(),
            gpkg = gpkg.display()
        ),
    )
    .expect("builder");
    let template = format!("sh {} {{category}} {{pf}}", builder.display());
    let args = ["--builder", template.as_str()];
    queue(&server, json!([atom]));
    let mut first = Drone::start(&server, dir.path(), "drone-big", &args, &[]);
    wait_started(&server, atom, 30);

    // The build ends while the server is down: spooled, and retried.
    server.kill9();
    std::fs::write(&go, "").expect("go");
    wait_until(30, "the upload to be retried", || {
        first.log_text().contains("artifact upload failed")
    });
    first.kill9();

    // Its lease is reclaimed while the agent is gone.
    server.restart();
    wait_until(30, "the dead drone's lease reclaimed", || {
        let (_, events) = server.get("/api/v1/events/history?limit=1000");
        events["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "reclaimed"))
    });

    let mut again = Drone::start(&server, dir.path(), "drone-big", &args, &[]);
    wait_until(90, "the package built by the restarted drone", || {
        state_of(&server, atom) == "built"
    });
    let log = again.log_text();
    assert!(
        log.contains("the server no longer holds this build's lease"),
        "the spooled build heard its lease was gone: {log}"
    );
    // Taken back, not reported: the report's answer says so (a lost reply would be "repeated").
    assert!(log.contains("report was stale"), "{log}");
    // It asked first (the upload waits for the register reply that says it may).
    assert!(!log.contains("broken pipe"), "{log}");
    assert_eq!(successes(&server, atom).len(), 1);
    again.signal(rustix::process::Signal::TERM);
    assert_eq!(again.wait_exit(20), Some(0), "{}", again.log_text());
}

/// An agent killed (kill -9) right after its builder exited, before the build was spooled:
/// the next agent finds the builder's recorded success, delivers the package the build left
/// in its PKGDIR and builds nothing again; no build directory is left behind. Before, the
/// finished build was lost (the spool's half-written entry removed at start) and the same
/// lease built again from scratch (h36 F2: 14 of 40 kills).
#[test]
fn an_agent_killed_right_after_its_builder_exited_delivers_that_build_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let atom = "=dev-libs/window-1.0";
    // Big enough that reading it (before the spool entry is written) takes a while.
    let gpkg = dir.path().join("window-1.0.gpkg.tar");
    support::packages::big_gpkg("dev-libs/window-1.0", 24 << 20, &gpkg);
    let runs = dir.path().join("runs");
    let builder = dir.path().join("window-builder.sh");
    std::fs::write(
        &builder,
        format!(
            "category=$1; pf=$2\n\
             echo run >> {runs}\n\
             mkdir -p \"$PKGDIR/$category\"\n\
             cp {gpkg} \"$PKGDIR/$category/$pf.gpkg.tar\"\n",
            runs = runs.display(),
            gpkg = gpkg.display()
        ),
    )
    .expect("builder");
    let template = format!("sh {} {{category}} {{pf}}", builder.display());
    let args = ["--builder", template.as_str()];
    queue(&server, json!([atom]));
    let mut first = Drone::start(&server, dir.path(), "drone-window", &args, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !first.log_text().contains("build ended") {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for the build to end"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    first.kill9();
    let lease = entry(&server, atom)["status"]["lease"].as_u64();

    let mut again = Drone::start(&server, dir.path(), "drone-window", &args, &[]);
    wait_until(90, "the package recorded built", || {
        state_of(&server, atom) == "built"
    });
    let log = again.log_text();
    let built = std::fs::read_to_string(&runs).unwrap_or_default();
    assert_eq!(built.lines().count(), 1, "built once, not again: {log}");
    assert!(
        log.contains("spooling it now instead of building it again"),
        "{log}"
    );
    let ok = successes(&server, atom);
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert_eq!(
        ok[0]["lease"].as_u64(),
        lease,
        "under the first lease: {ok:?}"
    );
    assert_eq!(
        sha256_of(&server.data_dir.join("staging/dev-libs/window-1.0.gpkg.tar")),
        sha256_of(&gpkg)
    );
    // The recovered build's directory goes once it is spooled.
    let left: Vec<PathBuf> = std::fs::read_dir(again.work_dir.join("builds"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "build dirs left: {left:?}");
    again.signal(rustix::process::Signal::TERM);
    assert_eq!(again.wait_exit(20), Some(0), "{}", again.log_text());
}

/// A build that writes another slot of its package along (`dev-java/jdk:17`
/// bootstrapping `:21`, as openjdk does) uploads only the one its lease
/// covers and counts; the other stays on the drone. Both were uploaded: the
/// server refused the first, and the whole build was reported
/// `upload_failed`, then held the drone (h21).
#[test]
fn a_build_that_writes_another_slot_along_uploads_only_the_leased_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let builder = dir.path().join("jdk-builder.sh");
    std::fs::write(
        &builder,
        "mkdir -p \"$PKGDIR/dev-java\"\n\
         \"$SWARM_BIN\" standin-gpkg --slot 17 dev-java/jdk-17.0.9 \"$PKGDIR/dev-java/jdk-17.0.9.gpkg.tar\" || exit 1\n\
         \"$SWARM_BIN\" standin-gpkg --slot 21 dev-java/jdk-21.0.5 \"$PKGDIR/dev-java/jdk-21.0.5.gpkg.tar\" || exit 1\n",
    )
    .expect("builder");
    let atom = "dev-java/jdk:21";
    queue(&server, json!([atom]));
    let template = format!("sh {} {{atom}}", builder.display());
    let bin = support::swarm_bin();
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-jdk",
        &["--builder", &template],
        &[("SWARM_BIN", bin.to_str().expect("utf-8 path"))],
    );
    wait_until(60, "the build to be recorded", || {
        drone.log_text().contains("recorded=")
    });
    assert_eq!(state_of(&server, atom), "built", "{}", drone.log_text());
    let staged: Vec<String> = std::fs::read_dir(server.data_dir.join("staging/dev-java"))
        .expect("staged")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(staged, ["jdk-21.0.5.gpkg.tar"]);
    assert!(
        drone.pkgdir.join("dev-java/jdk-17.0.9.gpkg.tar").is_file(),
        "the other slot stays on the drone"
    );
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0), "{}", drone.log_text());
}

/// A build that wrote nothing is not counted built with an earlier build's
/// package found in the drone's PKGDIR (h21: a `~` atom that emerge answered
/// with "nothing to do" was reported a success with the old file's sha256).
#[test]
fn a_build_that_wrote_nothing_is_not_counted_with_an_earlier_builds_package() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let atom = "=dev-libs/stale-1.0";
    let bin = support::swarm_bin();
    let pkgdir = dir.path().join("drone-stale").join("pkgdir");
    let old = pkgdir.join("dev-libs/stale-1.0.gpkg.tar");
    std::fs::create_dir_all(old.parent().expect("dir")).expect("mkdir");
    let made = Command::new(&bin)
        .args(["standin-gpkg", "dev-libs/stale-1.0"])
        .arg(&old)
        .status()
        .expect("standin-gpkg");
    assert!(made.success());
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(&old)
        .and_then(|f| f.set_modified(hour_ago))
        .expect("an earlier build's mtime");
    queue(&server, json!([atom]));
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-stale",
        &["--builder", "true {atom}"],
        &[],
    );
    wait_until(60, "the build to be recorded", || {
        drone.log_text().contains("recorded=")
    });
    assert!(drone.log_text().contains("recorded=failed"));
    assert!(successes(&server, atom).is_empty());
    let (_, history) = server.get("/api/v1/history?limit=1000");
    assert!(
        history
            .to_string()
            .contains("an earlier build's, not this one's"),
        "the failure says why: {history}"
    );
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0), "{}", drone.log_text());
}

/// A token rotated with `node enroll` while the agent runs reaches it through its token
/// file, without a restart: the build it finished while its old token was refused is
/// delivered, and the drone goes on working (h21's finding 9). Before, the agent read the
/// file only at start and retried with the dead token until restarted.
#[test]
fn a_token_rotated_into_the_token_file_is_taken_up_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let enroll = |name: &str| {
        let (code, v) = server.admin_post(&format!("/api/v1/nodes/{name}/enroll"), &json!({}));
        assert_eq!(code, 200, "enroll {name}: {v}");
        v["token"].as_str().expect("token").to_string()
    };
    let token_file = dir.path().join("rotating.token");
    std::fs::write(&token_file, enroll("rotating")).expect("token file");
    let atom = "=dev-libs/rotated-1.0";
    let sizes = sizes(dir.path(), &[(atom, 40)]);
    queue(&server, json!([atom]));
    let drone = Drone::start(
        &server,
        dir.path(),
        "rotating",
        &["--token-file", token_file.to_str().expect("utf-8 path")],
        &[("SWARM_STANDIN_SIZES", &sizes)],
    );
    wait_started(&server, atom, 60);
    // Re-enrolling replaces the token: the running agent's is refused from now on.
    let fresh = enroll("rotating");
    wait_until(60, "the finished build's delivery to be refused", || {
        drone
            .log_text()
            .contains("the server refuses this drone's credential")
    });
    assert!(successes(&server, atom).is_empty());
    // A slip on the way: another drone's token in the file. The server answers 403 for who
    // the caller is, and the build stays spooled (h24: it was dropped, and built again).
    std::fs::write(&token_file, enroll("other")).expect("wrong token");
    wait_until(60, "the wrong token to be taken up and refused", || {
        let log = drone.log_text();
        log.contains("holds a new token") && log.contains("403")
    });
    std::fs::write(&token_file, format!("{fresh}\n")).expect("rotate");
    wait_until(60, "the build to be delivered with the new token", || {
        !successes(&server, atom).is_empty()
    });
    assert!(
        drone.log_text().contains("holds a new token"),
        "the agent says it took the new token up: {}",
        drone.log_text()
    );
    assert!(
        !drone.log_text().contains("dropping it"),
        "{}",
        drone.log_text()
    );
    assert_eq!(successes(&server, atom).len(), 1, "built once");
    // It goes on working with it.
    let next = "=dev-libs/rotated-2.0";
    queue(&server, json!([next]));
    wait_until(60, "the next build", || {
        !successes(&server, next).is_empty()
    });
}

/// A server and a drone `name` that reaches it through a proxy losing `/complete`'s answers,
/// once the drone's report of `atom` (queued alone) was taken and its answer lost.
fn a_reply_lost(dir: &Path, name: &str, atom: &str) -> (Server, LossyProxy, Drone) {
    let server = Server::start(&dir.join("server"), &[]);
    let proxy = LossyProxy::start(&server.addr, "POST /api/v1/complete");
    queue(&server, json!([atom]));
    let drone = Drone::start(&server, dir, name, &["--server", proxy.url.as_str()], &[]);
    wait_until(60, "the report's reply to be lost", || proxy.lost() > 0);
    (server, proxy, drone)
}

/// h49 F2 with real processes: the agent's report reaches the server and is recorded, but its
/// reply is lost (a proxy drops it) and the agent is killed waiting for it. The next agent
/// delivers the spooled report again and hears that it was recorded already: no stale answer,
/// no rejection in the history, the build counted once and the spool emptied. Before, the
/// server called the report stale ("work already completed elsewhere").
#[test]
fn a_report_whose_reply_was_lost_is_answered_as_recorded_when_the_next_agent_sends_it_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let atom = "=dev-libs/lost-reply-1.0";
    let (server, _proxy, mut first) = a_reply_lost(dir.path(), "drone-lr", atom);
    assert_eq!(
        state_of(&server, atom),
        "built",
        "the report itself went through"
    );
    first.kill9();
    let spool = first.work_dir.join("spool");
    let spooled = || std::fs::read_dir(&spool).map_or(0, |d| d.count());
    assert!(spooled() > 0, "the unanswered report stays spooled");

    let mut again = Drone::start(&server, dir.path(), "drone-lr", &[], &[]);
    wait_until(60, "the spooled report to be answered", || {
        again.log_text().contains("report sent again")
    });
    let log = again.log_text();
    assert!(!log.contains("report was stale"), "{log}");
    assert_eq!(successes(&server, atom).len(), 1);
    let (_, events) = server.get("/api/v1/events/history?limit=1000");
    let rejected: Vec<&Value> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["kind"] == "input_rejected")
        .collect();
    assert!(rejected.is_empty(), "{rejected:?}");
    wait_until(10, "the spool emptied", || spooled() == 0);
    again.signal(rustix::process::Signal::TERM);
    assert_eq!(again.wait_exit(20), Some(0), "{}", again.log_text());
}

/// h51 F1 with real processes: the agent keeps running while its report's reply is lost, and
/// its heartbeats still list the lease meanwhile. They are not told to stop it (before, the
/// server revoked it as "completed elsewhere", which ended the agent's retry and dropped the
/// spooled report); the report is sent again once the reply times out, and heard as recorded.
#[test]
fn an_agent_that_lost_its_reports_reply_keeps_it_through_its_heartbeats_and_hears_it_recorded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let atom = "=dev-libs/lost-reply-2.0";
    let (server, proxy, mut drone) = a_reply_lost(dir.path(), "drone-lr2", atom);
    proxy.pass_all();
    // The agent waits 30 s for the lost reply, heartbeating every second meanwhile.
    wait_until(90, "the report sent again to be answered", || {
        drone.log_text().contains("report sent again")
    });
    let log = drone.log_text();
    assert!(!log.contains("delivery ended"), "{log}");
    assert!(!log.contains("report was stale"), "{log}");
    assert_eq!(successes(&server, atom).len(), 1);
    let (_, events) = server.get("/api/v1/events/history?limit=1000");
    assert!(
        !events["events"]
            .as_array()
            .expect("events")
            .iter()
            .any(|e| e["kind"] == "input_rejected"),
        "{events}"
    );
    drone.signal(rustix::process::Signal::TERM);
    assert_eq!(drone.wait_exit(20), Some(0), "{}", drone.log_text());
}
