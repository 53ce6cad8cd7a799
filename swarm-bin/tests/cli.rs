//! The `swarm` binary as an operator uses it: real processes, real files.

use std::path::Path;
use std::process::{Command, Output};

fn swarm(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("the swarm binary runs")
}

/// The long-compile scenario under a policy file.
fn long_compile_under(policy: &Path) -> Output {
    swarm(&[
        "sim",
        "-s",
        "long-compile",
        "--config",
        policy.to_str().expect("utf-8"),
    ])
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_explains_every_command() {
    let out = swarm(&["--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!("help", text(&out.stdout));
    let out = swarm(&["sim", "--help"]);
    assert!(out.status.success());
    insta::assert_snapshot!("sim_help", text(&out.stdout));
    let out = swarm(&["replay", "--help"]);
    insta::assert_snapshot!("replay_help", text(&out.stdout));
}

#[test]
fn an_operator_fleet_file_simulates_and_reports_json() {
    let out = swarm(&[
        "sim",
        "--file",
        "scenarios/example-fleet.toml",
        "--seed",
        "3",
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value =
        serde_json::from_str(text(&out.stdout).trim()).expect("one JSON report");
    for key in [
        "invariant_violations",
        "makespan_s",
        "lower_bound_s",
        "makespan_ratio",
        "churn_per_hour_pct",
        "busy_ratio_pct",
        "false_reclaims",
        "false_escalations",
        "duplicate_builds",
        "reclaims",
        "reclaims_by_reason",
        "escalations",
        "brake_engagements",
        "grounded_max_pct",
        "built",
        "blocked",
        "failed",
    ] {
        assert!(
            report.get(key).is_some(),
            "the JSON report lacks {key}: {report}"
        );
    }
    assert_eq!(report["scenario"], "my-homelab");
    assert_eq!(report["invariant_violations"], 0);
}

#[test]
fn an_unknown_scenario_is_refused_with_the_list_of_known_ones() {
    let out = swarm(&["sim", "--scenario", "no-such-thing"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("unknown scenario \"no-such-thing\""), "{err}");
    assert!(err.contains("world-rebuild"), "{err}");
}

#[test]
fn a_bad_policy_value_names_the_offending_key() {
    let dir = std::env::temp_dir().join(format!("swarm-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "max_prefetch = 0\n").expect("write");
    let out = long_compile_under(&bad);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("max_prefetch must be greater than zero"),
        "{}",
        text(&out.stderr)
    );
    std::fs::write(&bad, "max_prefetch = \"two\"\n").expect("write");
    let out = long_compile_under(&bad);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("max_prefetch"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_policy_prints_the_seed_and_writes_a_replayable_log() {
    let dir = std::env::temp_dir().join(format!("swarm-cli-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let policy = dir.join("trigger-happy.toml");
    std::fs::write(
        &policy,
        "heartbeat_grace_ms = 5000\noffline_timeout_ms = 12000\nconfirmed_dead_after_ms = 12000\n",
    )
    .expect("write");
    let dir_s = dir.to_str().expect("utf-8");
    let out = swarm(&[
        "sim",
        "-s",
        "long-compile",
        "--config",
        policy.to_str().expect("utf-8"),
        "--log-dir",
        dir_s,
    ]);
    assert!(
        !out.status.success(),
        "reclaiming healthy drones must fail the run"
    );
    let err = text(&out.stderr);
    assert!(err.contains("SWARM_SIM_SEED=1"), "{err}");
    let log = dir.join("swarm-sim-long-compile-swarm-1.jsonl");
    assert!(log.exists(), "{err}");
    // The log replays; under the policy it was recorded with, the reclaims come back.
    let out = swarm(&[
        "replay",
        log.to_str().expect("utf-8"),
        "--base",
        policy.to_str().expect("utf-8"),
        "--json",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let figures: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert!(
        figures["reclaims_by_reason"]["Offline"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "{figures}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_golden_log_replays_to_its_recorded_digest() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../swarm-core/tests/golden/silent-death-small.jsonl");
    let out = swarm(&[
        "replay",
        golden.to_str().expect("utf-8"),
        "--json",
        "--config",
        "/dev/null",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let figures: serde_json::Value = serde_json::from_str(text(&out.stdout).trim()).expect("JSON");
    assert_eq!(figures["invariant_violations"], 0);
    assert_eq!(
        figures["diverged_steps"], 0,
        "the defaults replayed twice must agree"
    );
    assert_eq!(figures["built"], 6);
}

#[test]
fn a_corrupt_log_is_refused_with_its_line_number() {
    let dir = std::env::temp_dir().join(format!("swarm-cli-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let log = dir.join("bad.jsonl");
    std::fs::write(
        &log,
        "{\"seq\":1,\"at\":0,\"input\":{\"type\":\"tick\"}}\n{not json\n",
    )
    .expect("write");
    let out = swarm(&["replay", log.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("line 2: not an envelope"),
        "{}",
        text(&out.stderr)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_log_without_line_breaks_is_refused_without_reading_it_all() {
    // Endless: without the bound, replay reads until memory runs out.
    let out = swarm(&["replay", "/dev/zero"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("/dev/zero line 1 is longer than 80 MiB"),
        "{err}"
    );
}

/// A URL nothing listens on: a port the kernel just handed out and took back.
fn closed_port_url() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[test]
fn operator_commands_explain_themselves() {
    for (name, args) in [
        ("status_help", &["status", "--help"][..]),
        ("fleet_help", &["fleet", "--help"]),
        ("queue_help", &["queue", "--help"]),
        ("queue_add_help", &["queue", "add", "--help"]),
        ("queue_list_help", &["queue", "list", "--help"]),
        ("queue_import_help", &["queue", "import", "--help"]),
        ("fresh_help", &["fresh", "--help"]),
        ("history_help", &["history", "--help"]),
        ("events_help", &["events", "--help"]),
        ("explain_help", &["explain", "--help"]),
        ("control_help", &["control", "--help"]),
        ("node_help", &["node", "--help"]),
        ("node_drain_help", &["node", "drain", "--help"]),
        ("monitor_help", &["monitor", "--help"]),
        ("metrics_help", &["metrics", "--help"]),
        ("sql_help", &["sql", "--help"]),
    ] {
        let out = swarm(args);
        assert!(out.status.success(), "{name}: {}", text(&out.stderr));
        insta::assert_snapshot!(name, text(&out.stdout));
    }
}

#[test]
fn a_command_against_a_closed_port_asks_whether_the_server_runs() {
    let url = closed_port_url();
    for args in [
        &["status", "--server", &url][..],
        &["fleet", "--server", &url, "--json"],
        &["monitor", "--once", "--server", &url],
        &[
            "queue",
            "add",
            "--server",
            &url,
            "--token",
            "t",
            "dev-libs/foo-1.0",
        ],
        &["node", "drain", "--server", &url, "--token", "t", "alpha"],
        &["metrics", "--server", &url],
    ] {
        let out = swarm(args);
        assert!(!out.status.success(), "{args:?} must fail");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("cannot reach {url}/")),
            "{args:?}: {err}"
        );
        assert!(err.contains("is `swarm serve` running?"), "{args:?}: {err}");
    }
}

#[test]
fn sql_without_a_store_file_asks_the_server_and_says_how_to_read_a_file() {
    let url = closed_port_url();
    let out = swarm(&["sql", "--server", &url, "--token", "t", "SELECT 1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("--db FILE"), "{err}");
    assert!(err.contains("is `swarm serve` running?"), "{err}");
    let out = swarm(&["sql", "--server", &url, "--db", "x.db", "SELECT 1"]);
    assert!(
        !out.status.success(),
        "--server and --db exclude each other"
    );
}

#[test]
fn an_admin_command_without_a_token_says_where_it_looked() {
    if Path::new("/var/lib/swarm/admin.token").exists() {
        return; // this host runs a server: its token would be found
    }
    let home = tempfile::tempdir().expect("temp dir");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["control", "pause", "--server", &closed_port_url()])
        .current_dir(home.path())
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("ADMIN_SECRET")
        .env_remove("SWARM_DATA_DIR")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", home.path())
        .output()
        .expect("the swarm binary runs");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("no admin token"), "{err}");
    assert!(err.contains("/var/lib/swarm/admin.token"), "{err}");
}

#[test]
fn queue_import_reads_emerge_output_from_stdin() {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["queue", "import", "-", "--dry-run", "--priority", "3"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("the swarm binary runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(
            b"[ebuild  N     ] app-editors/vim-9.1.0148::gentoo  USE=\"acl\"\n\
              [ebuild  N     ]  app-editors/vim-core-9.1.0148::gentoo\n",
        )
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let body: serde_json::Value = serde_json::from_str(&text(&out.stdout)).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({"packages": [
            {"atom": "=app-editors/vim-9.1.0148", "deps": ["=app-editors/vim-core-9.1.0148"], "priority": 3},
            {"atom": "=app-editors/vim-core-9.1.0148", "priority": 3},
        ]})
    );
}

#[test]
fn a_wrong_control_target_is_refused_before_anything_is_sent() {
    let out = swarm(&[
        "control",
        "block",
        "alpha",
        "--token",
        "t",
        "--server",
        &closed_port_url(),
    ]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("`block` takes a package atom"), "{err}");
    assert!(!err.contains("cannot reach"), "{err}");
}

#[test]
fn a_queue_page_outside_what_the_server_serves_is_refused_before_anything_is_sent() {
    for limit in ["0", "1001"] {
        let out = swarm(&[
            "queue",
            "list",
            "--limit",
            limit,
            "--server",
            &closed_port_url(),
        ]);
        assert_eq!(out.status.code(), Some(2), "--limit {limit}");
        let err = text(&out.stderr);
        assert!(err.contains("1..=1000"), "--limit {limit}: {err}");
        assert!(!err.contains("cannot reach"), "--limit {limit}: {err}");
    }
}

#[test]
fn config_defaults_explains_every_setting_and_points_at_the_design_document() {
    let out = swarm(&["config", "defaults"]);
    assert!(out.status.success());
    let text = text(&out.stdout);
    insta::assert_snapshot!("config_defaults", text);
    let design =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/DESIGN.md"))
            .expect("the project carries docs/DESIGN.md");
    assert!(
        text.contains("docs/DESIGN.md, section 3 \"Policy\""),
        "{text}"
    );
    assert!(design.contains("\n## 3. Policy\n"));
    // Every section the README cites exists, and nothing cites a design
    // document the project does not carry.
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README");
    for (cite, heading) in [
        ("#3-policy", "## 3. Policy"),
        ("#8-invariants", "## 8. Invariants"),
    ] {
        assert!(
            readme.contains(&format!("docs/DESIGN.md{cite}")),
            "README cites {cite}"
        );
        assert!(design.contains(heading), "DESIGN.md has {heading}");
    }
    assert!(
        !readme.contains("DESIGN §"),
        "README cites a design document by a bare name"
    );
    // The README's replay example names a file that exists.
    assert!(readme.contains("swarm replay swarm-core/tests/golden/silent-death-small.jsonl"));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../swarm-core/tests/golden/silent-death-small.jsonl")
        .exists());
}

#[test]
fn ordinary_errors_print_one_line_and_no_backtrace_even_with_rust_backtrace_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["status", "--server", "http://127.0.0.1:1"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(!err.contains("backtrace"), "{err}");
    assert_eq!(
        err.matches("http://127.0.0.1:1/api/v1/status").count(),
        1,
        "URL once: {err}"
    );
    assert!(err.contains("is `swarm serve` running?"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_swarm"))
        .args(["status", "--server", "http://no-such-host.invalid:8100"])
        .env("RUST_BACKTRACE", "1")
        .output()
        .expect("runs");
    let err = text(&out.stderr);
    assert!(
        !err.contains("swarm serve"),
        "a DNS error is not a stopped server: {err}"
    );
    // The version, and in a git checkout its commit (h33 F2: every build said 0.1.0).
    let out = swarm(&["--version"]);
    assert_eq!(
        text(&out.stdout),
        format!("swarm {}\n", env!("SWARM_BUILD"))
    );
    assert!(
        env!("SWARM_BUILD").starts_with(&format!("{}+", env!("CARGO_PKG_VERSION"))),
        "{}",
        env!("SWARM_BUILD")
    );
}

#[test]
fn seeds_run_in_parallel_print_in_seed_order_with_the_digests_of_one_job() {
    let digests = |jobs: &str| -> Vec<(u64, String)> {
        let out = swarm(&[
            "sim", "-s", "chaos", "--seed", "5", "--runs", "4", "--jobs", jobs, "--json",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON report");
                (
                    v["seed"].as_u64().expect("seed"),
                    v["digest"].as_str().expect("digest").to_string(),
                )
            })
            .collect()
    };
    let parallel = digests("3");
    let seeds: Vec<u64> = parallel.iter().map(|(s, _)| *s).collect();
    assert_eq!(seeds, vec![5, 6, 7, 8], "reports in seed order");
    assert_eq!(parallel, digests("1"), "the same runs as one job gives");
}
