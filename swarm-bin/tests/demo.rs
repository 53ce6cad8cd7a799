//! `swarm demo --drones 2 --packages tiny --json` end to end, as CI runs it:
//! a real `swarm serve`, two real `swarm drone`s with the stand-in builder,
//! one of them SIGKILLed halfway. The assertions read only the JSON summary
//! the demo prints (whose numbers come from the server) and `/proc`.

use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

/// Whether a process exists and is not a zombie.
fn alive(pid: u64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next())
        .unwrap_or("");
    state != "Z"
}

/// Processes whose environment carries the demo's run mark.
fn marked(run_id: &str) -> Vec<String> {
    let mark = format!("SWARM_DEMO_RUN={run_id}");
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u64>().ok()?;
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let has = env.split(|&b| b == 0).any(|kv| kv == mark.as_bytes());
            (has && alive(pid)).then(|| pid.to_string())
        })
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn the_tiny_demo_builds_all_but_the_broken_packages_and_recovers_a_killed_drones_work() {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args([
            "demo",
            "--drones",
            "2",
            "--packages",
            "tiny",
            "--json",
            "--speed",
            "360",
            "--timeout-s",
            "240",
        ])
        .output()
        .expect("swarm demo runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "swarm demo failed:\n{stderr}");
    let s: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}):\n{stderr}"));

    // Everything is built except the two packages the stand-in breaks.
    assert_eq!(s["complete"], true, "{stderr}");
    let c = &s["counts"];
    assert_eq!(c["total"], 12);
    assert_eq!(c["built"], 10, "{stderr}");
    assert_eq!(c["blocked"], 2, "{stderr}");
    assert_eq!(c["queued"], 0);
    assert_eq!(c["assigned"], 0);
    let blocked: BTreeSet<&str> = s["blocked"]
        .as_array()
        .expect("blocked list")
        .iter()
        .map(|b| {
            assert!(b["intended"].is_string(), "blocked by accident: {b}");
            assert!(!b["reason"].as_str().unwrap_or("").is_empty(), "{b}");
            b["atom"].as_str().unwrap_or("")
        })
        .collect();
    assert_eq!(
        blocked,
        BTreeSet::from(["=dev-vcs/git-2.47.1", "=dev-build/meson-1.6.0"])
    );
    let classes: BTreeSet<(&str, &str)> = s["failed_attempts"]
        .as_array()
        .expect("failures")
        .iter()
        .map(|f| {
            (
                f["atom"].as_str().unwrap_or(""),
                f["class"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert!(
        classes.contains(&("=dev-vcs/git-2.47.1", "build")),
        "{classes:?}"
    );
    assert!(
        classes.contains(&("=dev-build/meson-1.6.0", "oom")),
        "{classes:?}"
    );

    // The killed drone held work; the server reclaimed it when the drone went
    // offline and the other drone built it.
    let killed = &s["killed"];
    let victim = killed["drone"].as_str().expect("a drone was killed");
    let held = strings(&killed["held"]);
    assert!(!held.is_empty(), "the killed drone held nothing:\n{stderr}");
    let reclaims: Vec<&Value> = s["reclaims"]
        .as_array()
        .expect("reclaims")
        .iter()
        .filter(|r| r["drone"] == victim)
        .collect();
    assert!(
        !reclaims.is_empty(),
        "nothing reclaimed from {victim}, which held {held:?}:\n{stderr}"
    );
    for r in reclaims {
        let atom = r["atom"].as_str().unwrap_or("");
        assert!(
            held.iter().any(|h| h == atom),
            "{atom} was not held: {held:?}"
        );
        assert_eq!(r["reason"], "offline");
        if !blocked.contains(atom) {
            let by = r["rebuilt_by"].as_str().unwrap_or("");
            assert!(!by.is_empty() && by != victim, "{atom} rebuilt by {by:?}");
        }
    }
    let nodes = s["nodes"].as_array().expect("nodes");
    let status_of = |name: &str| {
        nodes
            .iter()
            .find(|n| n["name"] == name)
            .map(|n| n["status"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(status_of(victim).as_deref(), Some("offline"));

    // The makespan respects its lower bound (the bound is a bound).
    let t = &s["timing"];
    let makespan = t["makespan_ms"].as_u64().expect("makespan");
    let bound = t["lower_bound"]["bound_ms"].as_u64().expect("bound");
    assert!(bound > 0 && makespan >= bound, "{t}");

    // No child outlives the demo: the server, the drones, and any builder.
    let pids = &s["pids"];
    let mut all = vec![pids["server"].as_u64().expect("server pid")];
    for d in pids["drones"].as_array().expect("drone pids") {
        all.push(d["pid"].as_u64().expect("drone pid"));
    }
    assert_eq!(all.len(), 3);
    for pid in all {
        assert!(!alive(pid), "pid {pid} still runs");
    }
    assert_eq!(pids["left"], serde_json::json!([]));
    let run_id = s["run_id"].as_str().expect("run id");
    assert_eq!(marked(run_id), Vec::<String>::new());

    // Without --keep the files are gone.
    assert_eq!(s["files"]["kept"], false);
    let dir = s["files"]["data_dir"].as_str().expect("data dir");
    assert!(!std::path::Path::new(dir).exists(), "{dir} was not removed");
}
