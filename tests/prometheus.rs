//! Prometheus: `dist/prometheus/alerts.yml` passes `promtool check rules`,
//! and a live server's `/metrics` passes `promtool check metrics` (the
//! exposition lint) with the SLO families the alerts use.
//!
//! Without promtool this fails under `CI=true` and skips elsewhere.

mod support;

use serde_json::json;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use support::Server;

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but promtool is missing: install Debian's prometheus package"
        );
        eprintln!("SKIPPED: promtool is not installed (apt-get install prometheus)");
        return None;
    }
    Some("promtool")
}

fn alerts_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("dist/prometheus/alerts.yml")
}

#[test]
fn the_alert_rules_pass_promtool() {
    let Some(tool) = promtool() else { return };
    let out = Command::new(tool)
        .args(["check", "rules"])
        .arg(alerts_file())
        .output()
        .expect("run promtool");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool check rules: {text}");
    assert!(text.contains("SUCCESS"), "{text}");
    // Every metric the rules name is one swarm exports (a typo would alert never).
    let rules = std::fs::read_to_string(alerts_file()).expect("alerts.yml");
    for name in [
        "swarm_drone_not_started_age_seconds",
        "swarm_drone_heartbeat_age_seconds",
        "swarm_delegated_not_started_age_seconds_count",
        "swarm_reclaims_total",
        "swarm_brake_engaged",
        "swarm_drones",
        "swarm_store_errors_total",
        "swarm_cores",
        "swarm_drone_env_drift",
        "swarm_drone_env_matches",
        "swarm_profile_matching_drones",
        "swarm_profile_unbuilt_packages",
    ] {
        assert!(rules.contains(name), "alerts.yml uses {name}");
    }
}

#[test]
fn live_metrics_pass_promtool_and_carry_the_slo_families() {
    let Some(tool) = promtool() else { return };
    let dir = tempfile::tempdir().expect("dir");
    let server = Server::start(dir.path(), &[]);
    // A drone with work it has not started: the families then have rows.
    // Two environments; the first is expected, so the second drifts.
    for (name, cflags) in [("drone-one", "-O2"), ("drone-two", "-O3")] {
        let (code, v) = server.post(
            "/api/v1/register",
            &json!({"node_name": name, "capabilities": {"cores": 4, "ram_gb": 16, "env": {"CFLAGS": cflags}}}),
        );
        assert_eq!(code, 200, "{v}");
    }
    let (code, v) = server.admin_post(
        "/api/v1/control",
        &json!({"action": "expect_env", "drone": "drone-one"}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/foo-1.0"]}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = server.get("/api/v1/work?id=drone-one");
    assert_eq!(
        (code, v["package"].as_str()),
        (200, Some("=dev-libs/foo-1.0")),
        "{v}"
    );

    let metrics = ureq::get(&format!("{}/metrics", server.url))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    for line in [
        "swarm_delegated_not_started_age_seconds_count 1",
        "swarm_drone_not_started_leases{drone=\"drone-one\"} 1",
        "swarm_drone_heartbeat_age_seconds{drone=\"drone-one\"}",
        "swarm_cores{state=\"total\"} 8",
        "swarm_reclaims_last_hour 0",
        "swarm_drone_env_drift{drone=\"drone-one\"} 0",
        "swarm_drone_env_drift{drone=\"drone-two\"} 1",
        "swarm_drone_env_matches{drone=\"drone-one\",profile=\"default\"} 1",
        "swarm_drone_env_matches{drone=\"drone-two\",profile=\"default\"} 0",
        "swarm_profile_matching_drones{profile=\"default\"} 1",
        "swarm_profile_unbuilt_packages{profile=\"default\"} 1",
    ] {
        assert!(metrics.contains(line), "/metrics has `{line}`:\n{metrics}");
    }
    let mut child = Command::new(tool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(metrics.as_bytes())
        .expect("feed promtool");
    let out = child.wait_with_output().expect("promtool output");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.trim().is_empty(),
        "promtool check metrics complained:\n{text}"
    );
}

#[test]
fn the_profile_alerts_fire_for_an_unserved_profile_and_a_drone_that_left_one() {
    let Some(tool) = promtool() else { return };
    // From minute 6 no drone matches `fast`, which has work; `lean` stays served throughout.
    let fast_summary = "no online drone matches profile fast, which has packages to build";
    let fast_description = "`swarm explain` on one of its packages names the drones and what \
                            differs; `swarm profile show fast` lists them all.";
    let text = format!(
        r#"      - series: 'swarm_profile_unbuilt_packages{{instance="a",profile="fast"}}'
        values: '3x40'
      - series: 'swarm_profile_matching_drones{{instance="a",profile="fast"}}'
        values: '1x5 0x35'
      - series: 'swarm_drone_env_matches{{instance="a",drone="d1",profile="fast"}}'
        values: '1x5 0x35'
      - series: 'swarm_profile_unbuilt_packages{{instance="a",profile="lean"}}'
        values: '3x40'
      - series: 'swarm_profile_matching_drones{{instance="a",profile="lean"}}'
        values: '1x40'
      - series: 'swarm_drone_env_matches{{instance="a",drone="d2",profile="lean"}}'
        values: '1x40'
    alert_rule_test:
      - eval_time: 10m
        alertname: SwarmProfileUnserved
        exp_alerts: []
      - eval_time: 10m
        alertname: SwarmDroneLeftProfile
        exp_alerts: []
      - eval_time: 25m
        alertname: SwarmProfileUnserved
        exp_alerts:
          - exp_labels: {{severity: warning, instance: a, profile: fast}}
            exp_annotations:
              summary: "{fast_summary}"
              description: "{fast_description}"
      - eval_time: 25m
        alertname: SwarmDroneLeftProfile
        exp_alerts:
          - exp_labels: {{severity: info, instance: a, drone: d1, profile: fast}}
            exp_annotations:
              summary: "d1 stopped matching profile fast"
              description: "`swarm profile show fast` says what differs on it now."
"#
    );
    promtool_test_rules(tool, &text);
}

#[test]
fn the_slow_disk_alert_fires_for_slow_fsyncs_only() {
    let Some(tool) = promtool() else { return };
    // Ten fsyncs a minute on each server: `slow`'s take 0.5-2.5 s, `fast`'s under 1 ms.
    let bucket = |instance: &str, le: &str, values: &str| {
        input_series(
            &format!(
                "swarm_store_fsync_duration_seconds_bucket{{instance=\"{instance}\",le=\"{le}\"}}"
            ),
            values,
        )
    };
    let mut series = String::new();
    for le in ["0.001", "0.1", "0.5", "2.5", "+Inf"] {
        let slow = if matches!(le, "2.5" | "+Inf") {
            "0+10x40"
        } else {
            "0x40"
        };
        series += &bucket("slow", le, slow);
        series += &bucket("fast", le, "0+10x40");
    }
    let firing = r#"          - exp_labels: {severity: warning, instance: slow}
            exp_annotations:
              summary: "swarm's disk takes over 0.5 s to fsync (p99)"
              description: "The 99th percentile of WAL fsyncs is 2.48s. Every acknowledged request waits for one: check the disk (iostat, SMART, a noisy neighbour on a VM) or move the data directory to faster storage."
"#;
    promtool_test_rules(
        tool,
        &quiet_then_firing(&series, "SwarmSlowDisk", ("5m", "30m"), firing),
    );
}

#[test]
fn the_staging_alert_fires_after_two_minutes_of_refused_uploads() {
    let Some(tool) = promtool() else { return };
    let series = input_series("swarm_staging_writable{instance=\"full\"}", "1 1 1 0x10")
        + &input_series("swarm_staging_writable{instance=\"blip\"}", "1 1 1 0 1x10")
        + &input_series("swarm_staging_writable{instance=\"fine\"}", "1x13");
    let firing = r#"          - exp_labels: {severity: critical, instance: full}
            exp_annotations:
              summary: "swarm cannot store uploaded packages"
              description: "Uploads to the staging area fail (disk full? permissions? a volume not mounted?). Drones keep their builds and retry; /api/v1/health says what failed."
"#;
    promtool_test_rules(
        tool,
        &quiet_then_firing(&series, "SwarmStagingNotWritable", ("4m", "6m"), firing),
    );
}

#[test]
fn the_store_id_file_alert_fires_after_ten_minutes_of_failed_records_only() {
    let Some(tool) = promtool() else { return };
    let name = "swarm_store_id_file_current";
    let series = input_series(&format!("{name}{{instance=\"stuck\"}}"), "1 1 1 0x20")
        + &input_series(
            &format!("{name}{{instance=\"blip\"}}"),
            "1 1 1 0 0 0 0 0 1x15",
        )
        + &input_series(&format!("{name}{{instance=\"fine\"}}"), "1x23");
    let firing = r#"          - exp_labels: {severity: critical, instance: stuck}
            exp_annotations:
              summary: "swarm cannot write its store-id file"
              description: "swarm.store-id beside the database cannot be written: the server's next start is refused until it can, and meanwhile an older copy of the database put back would not be refused. /api/v1/health's warnings say what failed; fix that file or its directory."
"#;
    promtool_test_rules(
        tool,
        &quiet_then_firing(&series, "SwarmStoreIdFileStale", ("8m", "15m"), firing),
    );
}

/// A rules test's body: the `series`, then `alert` firing for no instance
/// at the first time and for exactly the `firing` ones (their YAML entries
/// under `exp_alerts:`) at the second.
fn quiet_then_firing(
    series: &str,
    alert: &str,
    (quiet, fires): (&str, &str),
    firing: &str,
) -> String {
    format!(
        "{series}    alert_rule_test:\n      - eval_time: {quiet}\n        alertname: {alert}\n        \
         exp_alerts: []\n      - eval_time: {fires}\n        alertname: {alert}\n        \
         exp_alerts:\n{firing}"
    )
}

/// One entry of a rules test's `input_series:`.
fn input_series(series: &str, values: &str) -> String {
    format!("      - series: '{series}'\n        values: '{values}'\n")
}

/// Runs `promtool test rules` on the alert rules with these input series and
/// expected alerts (the YAML under `input_series:`, indented as one test's
/// fields): it passes only if, at each listed time, the alerts of the listed
/// name that fire are exactly the expected ones.
fn promtool_test_rules(tool: &str, series_and_alerts: &str) {
    let dir = tempfile::tempdir().expect("dir");
    let tests = dir.path().join("alerts.test.yml");
    let text = format!(
        "rule_files:\n  - {rules}\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n{series_and_alerts}",
        rules = alerts_file().display()
    );
    std::fs::write(&tests, text).expect("write tests");
    let out = Command::new(tool)
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .expect("run promtool");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "promtool test rules: {text}");
}

#[test]
fn the_store_alert_fires_for_a_hung_fsync_seen_live_or_only_counted_and_a_stalled_writer() {
    let Some(tool) = promtool() else { return };
    // `live` is caught while its fsync hangs; `brief` hung between two scrapes
    // (only the counter saw it); `stalled`'s writer was held between two
    // scrapes outside an fsync; `fine` none of these.
    let mut series = String::new();
    for (instance, writable, hung, stalls) in [
        ("live", "1 1 1 0x10", "0x13", "0x13"),
        ("brief", "1x13", "0 0 0 1x10", "0x13"),
        ("stalled", "1x13", "0x13", "0 0 0 1x10"),
        ("fine", "1x13", "0x13", "0x13"),
    ] {
        for (name, values) in [
            ("swarm_store_writable", writable),
            ("swarm_store_fsyncs_hung_total", hung),
            ("swarm_writer_stalls_total", stalls),
            ("swarm_store_errors_total", "0x13"),
        ] {
            series += &input_series(&format!("{name}{{instance=\"{instance}\"}}"), values);
        }
    }
    let summary = "swarm cannot write its database";
    let description = "Group commits are failing, or an fsync or the writer hangs (disk full? \
                       permissions? a read-only filesystem? a hung disk?). /api/v1/health says \
                       which; check the server log and the data directory.";
    let firing: String = ["live", "brief", "stalled"]
        .iter()
        .map(|instance| {
            format!(
                "          - exp_labels: {{severity: critical, instance: {instance}}}\n            \
                 exp_annotations: {{summary: \"{summary}\", description: \"{description}\"}}\n"
            )
        })
        .collect();
    promtool_test_rules(
        tool,
        &quiet_then_firing(&series, "SwarmStoreNotWritable", ("2m", "5m"), &firing),
    );
}

#[test]
fn the_release_alert_fires_for_an_action_that_failed_and_only_for_it() {
    let Some(tool) = promtool() else { return };
    // `a`'s publish failed at minute 3; `b`'s purge never did.
    let series = input_series(
        "swarm_release_failures_total{instance=\"a\",action=\"publish\"}",
        "0 0 0 1x20",
    ) + &input_series(
        "swarm_release_failures_total{instance=\"b\",action=\"purge\"}",
        "0x23",
    );
    let firing =
        "          - exp_labels: {severity: warning, instance: a, action: publish}\n            \
                  exp_annotations: {summary: \"a binhost release publish failed\", description: \
                  \"`swarm events --kind release` has the reason. Clients are still served the \
                  release published before; fix the cause and run the action again.\"}\n";
    promtool_test_rules(
        tool,
        &quiet_then_firing(&series, "SwarmReleaseActionFailed", ("2m", "10m"), firing),
    );
}
