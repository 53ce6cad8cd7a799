//! Every main command of the operator CLI at 80 columns (issue 16): each is a
//! real `swarm` process against a real `swarm serve` on 127.0.0.1 with
//! `COLUMNS=80`, over a farm with a v3 drone, a v4 drone with a long name, a
//! blocked package and a long atom; plus `--help` of every command and
//! subcommand, and the errors an operator meets first (no server, a DNS name
//! that does not resolve, https to a plain-http server, a bad atom, an
//! unknown package, a bad flag, a missing file, a taken port). The test fails
//! on any line, stdout or stderr, wider than 80 columns.
//!
//! Exempt, by design: `swarm metrics` (the Prometheus exposition format,
//! one sample or `# HELP` per line, read by promtool and scrapers) and
//! `--json` (for scripts).

mod support;

use serde_json::json;
use std::process::Command;
use support::{swarm_bin, Server};

const WIDTH: usize = 80;

/// Runs `swarm ARGS` at 80 columns; returns its exit status and every line
/// it printed (stdout, then stderr).
fn run(server: &Server, args: &[&str]) -> (bool, String) {
    let out = Command::new(swarm_bin())
        .args(args)
        .env("COLUMNS", WIDTH.to_string())
        .env("LINES", "24")
        .env("SWARM_URL", &server.url)
        .env("SWARM_DATA_DIR", &server.data_dir)
        .env("RUST_BACKTRACE", "1")
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("SWARM_LOG")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run swarm");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The subcommands `swarm [PARENT] --help` lists (its "Commands:" block).
fn subcommands(server: &Server, parent: &[&str]) -> Vec<String> {
    let mut args = parent.to_vec();
    args.push("--help");
    let (_, text) = run(server, &args);
    text.lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A command's line is indented by two; wrapped text by more.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_main_commands_their_help_and_their_errors_fit_80_columns() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(&dir.path().join("data"), &[]);
    // A v3 drone (status shows the v3 line) and a v4 drone with a long name.
    let (code, v) = s.post(
        "/api/v1/register",
        &json!({"id": "drone-a-0001", "name": "drone-alpha-in-the-basement-rack", "ip": "127.0.0.1",
            "type": "drone", "version": "2.6.1",
            "capabilities": {"cores": 2, "ram_gb": 16, "auto_reboot": false, "portage_timestamp": "2026-02-16 00:00"},
            "metrics": {"cpu_percent": 12.5, "ram_percent": 40.1, "load_1m": 0.5}, "current_task": null}),
    );
    assert_eq!(code, 200, "{v}");
    let (code, v) = s.post(
        "/api/v1/register",
        &json!({"node_name": "drone-beta", "capabilities": {"cores": 8, "ram_gb": 16}}),
    );
    assert_eq!(code, 200, "{v}");
    let long = "=dev-python/sphinxcontrib-applehelp-2.0.0_p20241221-r1";
    let (ok, text) = run(
        &s,
        &[
            "queue",
            "add",
            long,
            "sys-devel/gcc-14.2.1_p20241221",
            "dev-libs/icu-74.2",
        ],
    );
    assert!(ok, "{text}");
    let (ok, text) = run(&s, &["control", "block", "dev-libs/icu-74.2"]);
    assert!(ok, "{text}");
    // `control retry`: a package that never failed is refused, saying so.
    let (ok, text) = run(&s, &["control", "retry", "sys-devel/gcc-14.2.1_p20241221"]);
    assert!(!ok && text.contains("has not failed"), "{text}");

    let mut runs: Vec<Vec<String>> = [
        &["status"][..],
        &["fleet"],
        &["fleet", "--all"],
        &["queue", "list"],
        &["queue", "list", "--state", "blocked"],
        &["queue", "list", "--state", "built"],
        &["history"],
        &["history", "--stats"],
        &["events"],
        &["explain", "dev-libs/icu-74.2"],
        &["explain", long],
        &["explain", "dev-libs/not-queued-1"],
        &["control", "pause"],
        &["control", "resume"],
        &["control", "retry", "dev-libs/icu-74.2"],
        &["control", "fresh"],
        &["node", "pause", "drone-beta"],
        &["node", "resume", "drone-beta"],
        &["node", "remove", "no-such-drone", "--yes"],
        &["release", "list"],
        &["release", "create"],
        &["release", "diff", "a", "b"],
        &["release", "publish", "no-such-release"],
        &["logs", "dev-libs/icu-74.2"],
        &["config", "defaults"],
        &["config", "check"],
        &["config", "show"],
        &["monitor", "--once"],
        &["sim", "--list"],
        // The first errors: a bad atom, a bad flag, no server, DNS, TLS.
        &["queue", "add", "not an atom//"],
        &["status", "--no-such-flag"],
        &["status", "--server", "http://127.0.0.1:9"],
        &["status", "--server", "http://no-such-host.invalid:8100"],
        &["config", "check", "--config", "/nonexistent/swarm.toml"],
        &["sql", "/nonexistent/swarm.db", "select 1"],
        &["replay", "/nonexistent/envelopes.jsonl"],
        &["queue", "import", "/nonexistent/world.txt"],
        &["logs", "dev-libs/icu-74.2", "--build", "99999"],
        &["events", "--kind", "nonsense"],
        &["sim", "--scenario", "no-such-scenario"],
    ]
    .iter()
    .map(|a| a.iter().map(|s| (*s).to_owned()).collect())
    .collect();
    let https = format!("https://{}", s.addr);
    let taken = dir.path().join("second");
    runs.push(vec![
        "serve".into(),
        "--listen".into(),
        s.addr.clone(),
        "--data-dir".into(),
        taken.display().to_string(),
    ]);
    runs.push(vec!["status".into(), "--server".into(), https]);
    // `--help` of every command and subcommand.
    runs.push(vec!["--help".into()]);
    for top in subcommands(&s, &[]) {
        runs.push(vec![top.clone(), "--help".into()]);
        for sub in subcommands(&s, &[&top]) {
            runs.push(vec![top.clone(), sub, "--help".into()]);
        }
    }
    assert!(
        runs.len() > 60,
        "the help of every (sub)command: {}",
        runs.len()
    );

    let mut wide = Vec::new();
    let mut printed = 0;
    for args in &runs {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (_, text) = run(&s, &args);
        assert!(!text.contains("stack backtrace"), "swarm {args:?}: {text}");
        printed += text.lines().count();
        for line in text.lines() {
            let n = line.chars().count();
            if n > WIDTH {
                wide.push(format!("swarm {} ({n} columns): {line}", args.join(" ")));
            }
        }
    }
    eprintln!(
        "{} commands, {printed} lines, {} wider than {WIDTH}",
        runs.len(),
        wide.len()
    );
    assert!(printed > 500, "the commands printed something: {printed}");
    assert!(
        wide.is_empty(),
        "{} lines past {WIDTH} columns:\n{}",
        wide.len(),
        wide.join("\n")
    );
}
