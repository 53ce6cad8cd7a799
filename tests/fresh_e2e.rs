//! `swarm fresh` end to end: the real `swarm` CLI runs the real `emerge -p --emptytree --tree` in a
//! Portage prefix over the fixture repository, finds the repository's `timestamp.chk` with the real
//! `portageq`, and starts a new generation on a real `swarm serve` with the tree's edges and the
//! snapshot; then v3-style drones are gated on that snapshot over HTTP. Needs the Portage venv
//! (`SWARM_PORTAGE_VENV`); fails under `CI=true` without it.

mod support;

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::portage::{copy_fixture_repo, machine_env_with, venv};
use support::{swarm_bin, Server};

/// The world of the test machine: the targets tests/portage/emerge-outputs.sh uses.
const WORLD: &str = "app-misc/hello\napp-misc/daemon\nx11-libs/gtk+\ndev-libs/circ-a\n\
                     app-misc/plugin-host\ndev-lang/lang:1\n";

const CHK: &str = "Mon, 16 Feb 2026 00:45:01 +0000";

fn swarm(server: &Server, env: &[(String, String)], args: &[&str]) -> Output {
    Command::new(swarm_bin())
        .args(args)
        .args(["--server", &server.url, "--data-dir"])
        .arg(&server.data_dir)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("SWARM_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .expect("run swarm")
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn queue(server: &Server) -> Vec<Value> {
    let (code, body) = server.get("/api/v1/queue?limit=1000");
    assert_eq!(code, 200, "{body}");
    body["items"].as_array().cloned().unwrap_or_default()
}

fn atoms(items: &[Value]) -> BTreeSet<String> {
    items
        .iter()
        .filter_map(|p| p["atom"].as_str().map(str::to_owned))
        .collect()
}

/// What emerge itself lists as merged, read without swarm's parser.
fn emerge_merges(env: &[(String, String)], machine: &Path) -> BTreeSet<String> {
    let out = Command::new("emerge")
        .args(["-p", "--emptytree", "--color=n", "@world"])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(machine)
        .output()
        .expect("run emerge");
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("[ebuild"))
        .filter_map(|l| l.split(']').nth(1))
        .filter_map(|rest| rest.split_whitespace().next())
        .map(|cpv| format!("={cpv}"))
        .collect()
}

fn register(server: &Server, id: &str, snapshot: Option<&str>) {
    let mut caps = json!({"cores": 4, "ram_gb": 8});
    if let Some(s) = snapshot {
        caps["portage_timestamp"] = json!(s);
    }
    let (code, body) = server.post(
        "/api/v1/register",
        &json!({"id": id, "name": id, "capabilities": caps}),
    );
    assert_eq!(code, 200, "{body}");
}

fn work(server: &Server, id: &str) -> Value {
    let (code, body) = server.get(&format!("/api/v1/work?id={id}"));
    assert_eq!(code, 200, "{body}");
    body
}

#[test]
fn fresh_runs_the_real_emerge_and_starts_a_generation_with_its_edges_and_snapshot() {
    let Some(venv) = venv() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let repo = dir.path().join("repo");
    copy_fixture_repo(&repo);
    std::fs::write(repo.join("metadata/timestamp.chk"), format!("{CHK}\n")).expect("chk");
    let machine = dir.path().join("machine");
    let repo_arg = repo.display().to_string();
    let env = machine_env_with(&machine, &venv, &["--repo", &repo_arg]);
    std::fs::write(machine.join("prefix/var/lib/portage/world"), WORLD).expect("world");
    let server = Server::start(&dir.path().join("data"), &[]);
    let (code, body) = server.admin_post(
        "/api/v1/queue",
        &json!({"packages": ["=app-misc/stale-1.0"], "portage_timestamp": "2026-01-01 00:00"}),
    );
    assert_eq!(code, 200, "{body}");

    // Without a terminal and without --yes nothing happens.
    let out = swarm(&server, &env, &["fresh"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("pass --yes"), "{}", text(&out));
    assert_eq!(
        atoms(&queue(&server)),
        BTreeSet::from(["=app-misc/stale-1.0".to_owned()])
    );

    // A snapshot Portage never writes is refused before anything changes.
    let out = swarm(
        &server,
        &env,
        &["fresh", "--yes", "--portage-timestamp", "latest"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("is not a Portage snapshot"),
        "{}",
        text(&out)
    );
    assert_eq!(queue(&server).len(), 1);

    let out = swarm(&server, &env, &["fresh", "--yes", "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    let want = emerge_merges(&env, &machine);
    assert!(want.len() >= 15, "the fixture world merges {want:?}");
    let items = queue(&server);
    assert_eq!(
        atoms(&items),
        want,
        "the queue is exactly what emerge would merge"
    );
    assert_eq!(v["packages"], json!(want.len()));
    assert!(v["edges"].as_u64().unwrap_or(0) >= 10, "{v}");
    assert_eq!(v["portage_snapshot"], json!("2026-02-16 00:45"));
    assert!(
        v["portage_snapshot_from"]
            .as_str()
            .is_some_and(|f| f.ends_with("metadata/timestamp.chk")),
        "found with portageq: {v}"
    );
    assert_eq!(v["server"]["generation"], json!(1), "{v}");
    assert_eq!(v["server"]["queued"], json!(want.len()), "{v}");
    let waiting = |atom: &str| {
        items
            .iter()
            .find(|p| p["atom"] == json!(atom))
            .map(|p| p["waiting_for"].as_u64().unwrap_or(0))
    };
    assert_eq!(
        waiting("=app-misc/daemon-0.9"),
        Some(3),
        "libcrypt, builder, lang-2.0"
    );
    assert_eq!(waiting("=dev-libs/libfoo-1.2"), Some(0));
    let (_, status) = server.get("/api/v1/status");
    assert_eq!(
        status["expected_portage"],
        json!("2026-02-16 00:45"),
        "{status}"
    );

    // The gate over v3's HTTP: another (older or newer) or no snapshot syncs
    // to this one, told which; timestamp.chk's own text is the same snapshot.
    register(&server, "older", Some("2026-02-15 00:00"));
    register(&server, "newer", Some("2026-03-01 00:00"));
    register(&server, "silent", None);
    register(&server, "current", Some(CHK));
    for id in ["older", "newer", "silent"] {
        assert_eq!(
            work(&server, id),
            json!({"action": "sync_portage", "expected_timestamp": "2026-02-16 00:45"}),
            "{id}"
        );
        assert_eq!(
            work(&server, id)["package"],
            Value::Null,
            "{id}: asked once, then waits"
        );
    }
    let got = work(&server, "current");
    assert!(
        got["package"].as_str().is_some_and(|p| want.contains(p)),
        "{got}"
    );
}

#[test]
fn fresh_reads_emerge_output_from_stdin_and_refuses_a_listing_with_nothing_to_build() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(&dir.path().join("data"), &[]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let run = |input: &Path, extra: &[&str]| {
        let mut args = vec!["fresh", "--yes", "--json", "--input", "-"];
        args.extend_from_slice(extra);
        Command::new(swarm_bin())
            .args(&args)
            .args(["--server", &server.url, "--data-dir"])
            .arg(&server.data_dir)
            .stdin(std::fs::File::open(input).expect("input"))
            .output()
            .expect("run swarm")
    };
    let out = run(
        &root.join("portage/emerge/tree-verbose.txt"),
        &["--portage-timestamp", CHK],
    );
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["server"]["generation"], json!(1), "{v}");
    assert_eq!(
        v["server"]["portage_snapshot"],
        json!("2026-02-16 00:45"),
        "{v}"
    );
    assert_eq!(
        queue(&server).len(),
        v["packages"].as_u64().unwrap_or(0) as usize
    );

    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "Calculating dependencies... done!\n").expect("write");
    let out = run(&empty, &["--no-snapshot"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("no package lines"), "{}", text(&out));
    assert!(text(&out).contains("nothing was changed"), "{}", text(&out));
    assert_eq!(
        queue(&server).len(),
        v["packages"].as_u64().unwrap_or(0) as usize
    );

    // Reading from stdin, the snapshot must be said (or refused explicitly).
    let out = run(
        &root.join("portage/emerge/tree.txt"),
        &["--emerge", "/nonexistent/emerge"],
    );
    assert!(!out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("--no-snapshot"), "{}", text(&out));
}
