//! The operator CLI against a real `swarm serve` on 127.0.0.1: each command
//! is a real `swarm` process, found through `SWARM_URL` and the data dir's
//! token file exactly as on the server's own host.

mod support;

use serde_json::{json, Value};
use std::process::{Command, Output};
use support::cli::{json_of, ok, swarm};
use support::{swarm_bin, Server};

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
    let nodes = s.get("/api/v1/nodes?all=true").1;
    assert_eq!(nodes[0]["drained"], true, "{nodes}");
    let bad = swarm(&s, &["control", "explode"]);
    assert!(!bad.status.success(), "an unknown action must fail");

    // The SQL explorer through the server, and metrics.
    let sql = json_of(&s, &["sql", "--json", "SELECT COUNT(*) AS n FROM packages"]);
    assert!(sql.to_string().contains('4'), "{sql}");
    // --timeout-ms reaches the server: a runaway query stops at the budget asked for, and one
    // longer than the server allows is refused, not silently cut to it.
    let runaway =
        "WITH RECURSIVE r(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM r) SELECT count(*) FROM r";
    let out = swarm(&s, &["sql", "--timeout-ms", "150", runaway]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("budget of 150 ms"),
        "{err}"
    );
    let out = swarm(&s, &["sql", "--timeout-ms", "60000", "SELECT 1"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("at most 2000 ms"),
        "{err}"
    );
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

/// `swarm` run as an operator in a fresh shell: no data dir or token in the
/// environment, an empty home, and RUST_BACKTRACE=1 as many shells have.
fn bare(server: &Server, home: &std::path::Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(swarm_bin());
    cmd.args(args)
        .env("SWARM_URL", &server.url)
        .env("HOME", home)
        .env("RUST_BACKTRACE", "1")
        .env_remove("XDG_DATA_HOME")
        .env_remove("SWARM_DATA_DIR")
        .env_remove("SWARM_TOKEN_FILE")
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("ADMIN_SECRET")
        .current_dir(home)
        .stdin(std::process::Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run swarm")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn admin_commands_find_a_custom_data_dirs_token_or_say_how() {
    let dir = tempfile::tempdir().expect("dir");
    let home = tempfile::tempdir().expect("home");
    let data = dir.path().join("custom-data");
    let s = Server::start(&data, &[]);
    let data_arg = data.to_str().expect("utf-8");

    let out = bare(&s, home.path(), &["control", "pause"], &[]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("--data-dir DIR"), "{err}");
    assert!(err.contains("SWARM_TOKEN_FILE"), "{err}");
    assert!(
        !err.contains("backtrace"),
        "no backtrace for an ordinary error: {err}"
    );
    assert_eq!(err.matches("error:").count(), 1, "{err}");

    let out = bare(
        &s,
        home.path(),
        &["control", "pause", "--data-dir", data_arg],
        &[],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let token_file = data.join("admin.token");
    let out = bare(
        &s,
        home.path(),
        &["control", "resume"],
        &[("SWARM_TOKEN_FILE", token_file.to_str().expect("utf-8"))],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = bare(
        &s,
        home.path(),
        &["control", "resume"],
        &[("SWARM_DATA_DIR", data_arg)],
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn destructive_actions_need_yes_without_a_terminal_and_node_remove_retires_a_drone() {
    let dir = tempfile::tempdir().expect("dir");
    let home = tempfile::tempdir().expect("home");
    let s = Server::start(dir.path(), &[]);
    let data = s.data_dir.to_str().expect("utf-8").to_owned();
    let env = [("SWARM_DATA_DIR", data.as_str())];
    s.post(
        "/api/v1/register",
        &json!({"node_name": "drone-old", "capabilities": {"cores": 4, "ram_gb": 8}}),
    );
    ok(&s, &["queue", "add", "dev-libs/a-1", "dev-libs/b-1"]);

    for action in ["fresh", "reset", "clear_history"] {
        let out = bare(&s, home.path(), &["control", action], &env);
        assert!(!out.status.success(), "{action} ran without --yes");
        let err = stderr(&out);
        assert!(err.contains("--yes"), "{action}: {err}");
    }
    let err = stderr(&bare(&s, home.path(), &["control", "fresh"], &env));
    assert!(err.contains("drops 2 packages"), "{err}");
    assert_eq!(
        json_of(&s, &["status", "--json"])["total"],
        2,
        "nothing was dropped"
    );
    let out = bare(&s, home.path(), &["control", "fresh", "--yes"], &env);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(json_of(&s, &["status", "--json"])["total"], 0);

    let out = bare(&s, home.path(), &["node", "remove", "drone-old"], &env);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--yes"), "{}", stderr(&out));
    assert_eq!(
        s.get("/api/v1/nodes?all=true").1.as_array().map(Vec::len),
        Some(1)
    );
    let out = bare(
        &s,
        home.path(),
        &["node", "remove", "drone-old", "--yes"],
        &env,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        s.get("/api/v1/nodes?all=true").1.as_array().map(Vec::len),
        Some(0)
    );
    let out = bare(
        &s,
        home.path(),
        &["node", "remove", "drone-old", "--yes"],
        &env,
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no drone named"), "{}", stderr(&out));
}

#[test]
fn node_remove_with_revoke_keeps_a_running_agent_out() {
    let dir = tempfile::tempdir().expect("dir");
    let home = tempfile::tempdir().expect("home");
    let s = Server::start(dir.path(), &[]);
    let data = s.data_dir.to_str().expect("utf-8").to_owned();
    let env = [("SWARM_DATA_DIR", data.as_str())];
    let (code, v) = s.admin_post("/api/v1/nodes/drone-gone/enroll", &json!({}));
    assert_eq!(code, 200, "{v}");
    let token = v["token"].as_str().expect("a token").to_owned();
    let register = || {
        support::request(
            "POST",
            &format!("{}/api/v1/register", s.url),
            Some(r#"{"node_name": "drone-gone", "capabilities": {"cores": 4, "ram_gb": 8}}"#),
            Some(&token),
        )
        .0
    };
    let remove = |name: &str, extra: &[&str]| {
        let mut args = vec!["node", "remove", name, "--yes"];
        args.extend_from_slice(extra);
        let out = bare(&s, home.path(), &args, &env);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = |name: &str| {
        s.get("/api/v1/nodes?all=true")
            .1
            .as_array()
            .map_or(0, |a| a.iter().filter(|n| n["name"] == name).count())
    };
    let plain = |name: &str| {
        s.post(
            "/api/v1/register",
            &json!({"node_name": name, "capabilities": {"cores": 4, "ram_gb": 8}}),
        )
        .0
    };
    assert_eq!(register(), 200);
    // Removal alone forgets the state: the agent's next call brings it back.
    let said = remove("drone-gone", &[]);
    assert!(
        said.contains("registers again at its next heartbeat"),
        "{said}"
    );
    assert_eq!(listed("drone-gone"), 0);
    assert_eq!(register(), 200, "the credential still works");
    assert_eq!(listed("drone-gone"), 1);
    let said = remove("drone-gone", &["--revoke"]);
    assert!(said.contains("its credential is revoked"), "{said}");
    assert_eq!(listed("drone-gone"), 0);
    assert_eq!(register(), 401, "the revoked credential is refused");
    // Nor may a caller without a credential take the name (h110 F2).
    assert_eq!(plain("drone-gone"), 403, "the name stays locked");
    assert_eq!(listed("drone-gone"), 0);
    // A drone with no credential of its own is removed all the same.
    assert_eq!(plain("drone-plain"), 200);
    let said = remove("drone-plain", &["--revoke"]);
    assert!(said.contains("had no credential of its own"), "{said}");
    assert_eq!(listed("drone-plain"), 0);
}

#[test]
fn the_cli_says_what_it_means_in_the_words_of_point_eleven() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);

    // The version and the commit it was built from (`0.1.0+1a2b3c4d5e6f`).
    let version = ok(&s, &["--version"]);
    let build = version
        .trim()
        .strip_prefix(&format!("swarm {}+", env!("CARGO_PKG_VERSION")))
        .unwrap_or_default();
    assert!(
        build.len() == 12 && build.bytes().all(|b| b.is_ascii_hexdigit()),
        "{version}"
    );
    // The server says which build serves, so an operator can tell an upgrade took.
    let running = version.trim().strip_prefix("swarm ").unwrap_or_default();
    let (_, health) = s.get("/api/v1/health");
    assert_eq!(health["build"], json!(running), "{health}");
    let metrics = ureq::get(&format!("{}/metrics", s.url))
        .call()
        .expect("metrics")
        .into_string()
        .expect("text");
    let info = format!("swarm_build_info{{build=\"{running}\"}} 1");
    assert!(metrics.contains(&info), "/metrics has `{info}`");

    let out = swarm(&s, &["events", "--kind", "nonsense"]);
    assert!(!out.status.success(), "a nonsense kind is an error");
    assert!(
        stderr(&out).contains("built, build_failed"),
        "{}",
        stderr(&out)
    );

    let empty = ok(&s, &["queue", "list", "--state", "blocked"]);
    assert_eq!(empty, "no blocked packages\n");

    let list: Value = serde_json::from_str(&ok(&s, &["sim", "--list", "--json"])).expect("JSON");
    assert!(list.as_array().is_some_and(|l| !l.is_empty()), "{list}");

    // A built package is reported as built, not as "queued or building".
    s.post(
        "/api/v1/register",
        &json!({"node_name": "d1", "capabilities": {"cores": 4}}),
    );
    ok(&s, &["queue", "add", "virtual/built-1"]);
    let (_, w) = s.get("/api/v1/work?id=d1");
    let p = w["package"].as_str().expect("work").to_owned();
    let (code, v) = s.post(
        "/api/v1/complete",
        &json!({"node_name": "d1", "package": p, "status": "success"}),
    );
    assert_eq!(code, 200, "{v}");
    let again = ok(&s, &["queue", "add", "virtual/built-1"]);
    assert!(again.contains("1 already built"), "{again}");
    assert!(again.contains("0 new packages"), "{again}");

    // An unknown package: one line, non-zero exit.
    let out = swarm(&s, &["explain", "dev-libs/nope-1"]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert_eq!(err.matches("not in the queue").count(), 1, "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).is_empty());
    // The same exit with --json, after the server's JSON (it was 0; h13).
    let out = swarm(&s, &["explain", "dev-libs/nope-1", "--json"]);
    assert!(!out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");
    assert_eq!(v["package"], "=dev-libs/nope-1", "{v}");
    let out = swarm(&s, &["explain", "virtual/built-1", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn explain_names_the_blocked_dependency_and_the_command_that_unblocks_it() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    let (code, v) = s.admin_post(
        "/api/v1/queue",
        &json!({"packages": [
            {"atom": "dev-libs/base-1"},
            {"atom": "app-misc/top-1", "deps": ["dev-libs/base-1"]}
        ]}),
    );
    assert_eq!(code, 200, "{v}");
    ok(&s, &["control", "block", "dev-libs/base-1"]);
    let text = ok(&s, &["explain", "app-misc/top-1"]);
    assert!(text.contains("held up by: =dev-libs/base-1"), "{text}");
    assert!(
        text.contains("swarm control unblock =dev-libs/base-1"),
        "{text}"
    );
}

#[test]
fn a_serve_that_cannot_listen_leaves_no_data_dir_and_says_the_port_is_taken() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(&dir.path().join("first"), &[]);
    let second = dir.path().join("second");
    let out = Command::new(swarm_bin())
        .args(["serve", "--listen", &s.addr, "--data-dir"])
        .arg(&second)
        .env("RUST_BACKTRACE", "1")
        .env("SELF_HEAL_ENABLED", "false")
        .output()
        .expect("run serve");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("in use"), "{err}");
    assert!(!err.contains("backtrace"), "{err}");
    assert!(
        !second.exists(),
        "a failed start left {} behind",
        second.display()
    );
}

/// `swarm serve` as a user without privilege: as `nobody` (through
/// `setpriv`) when the test runs as root, else as the test's own user.
/// Returns `None` (after saying why) when that cannot be arranged outside CI;
/// under `CI=true` that is a failure, never a skip.
fn unprivileged_serve(
    bin: &std::path::Path,
    args: &[&str],
    data_dir: &std::path::Path,
) -> Option<Output> {
    let root = rustix::process::geteuid().is_root();
    let mut cmd = if root {
        if !std::path::Path::new("/usr/bin/setpriv").exists() {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true but /usr/bin/setpriv (util-linux) is missing: it runs serve as nobody"
            );
            eprintln!("SKIPPED: running as root without /usr/bin/setpriv to drop to nobody");
            return None;
        }
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(bin);
        c
    } else {
        Command::new(bin)
    };
    let out = cmd
        .arg("serve")
        .args(args)
        .arg("--data-dir")
        .arg(data_dir)
        .env("HOME", "/nonexistent")
        .env("RUST_BACKTRACE", "1")
        .env("SELF_HEAL_ENABLED", "false")
        .env_remove("SWARM_CONFIG")
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("ADMIN_SECRET")
        .env_remove("COLUMNS")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run swarm serve");
    Some(out)
}

/// A port below the kernel's first unprivileged one (80 where it can be).
fn privileged_port() -> Option<u16> {
    let start: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_unprivileged_port_start")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024);
    match start {
        0 | 1 => None,
        s if s > 80 => Some(80),
        s => Some(s - 1),
    }
}

#[test]
fn serve_without_privilege_says_permission_denied_for_the_port_and_the_data_dir() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    // Everything `nobody` must reach: a copy of the binary in a 0755 dir.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.path().join("swarm");
    std::fs::copy(swarm_bin(), &bin).expect("copy the binary");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let root = rustix::process::geteuid().is_root();
    // A data dir the unprivileged user owns, for the port check.
    let own = dir.path().join("own");
    std::fs::create_dir(&own).expect("mkdir");
    if root {
        rustix::fs::chown(
            &own,
            Some(rustix::fs::Uid::from_raw(65534)),
            Some(rustix::fs::Gid::from_raw(65534)),
        )
        .expect("chown to nobody");
    }

    // 1. A privileged port: permission denied, not "another server".
    let Some(port) = privileged_port() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true but this kernel lets every user bind every port \
             (net.ipv4.ip_unprivileged_port_start = 0): the port message cannot be checked"
        );
        eprintln!("SKIPPED: every port is unprivileged here");
        return;
    };
    let data = own.join("data");
    let listen = format!("127.0.0.1:{port}");
    let Some(out) = unprivileged_serve(&bin, &["--listen", &listen], &data) else {
        return;
    };
    let err = stderr(&out);
    assert!(!out.status.success(), "serve started on {listen}: {err}");
    assert!(
        err.contains(&format!("cannot listen on {listen}: permission denied"))
            && err.contains("ports below 1024 need root or CAP_NET_BIND_SERVICE"),
        "{err}"
    );
    assert!(
        !err.contains("in use") && !err.contains("another") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(
        !data.exists(),
        "a failed start left {} behind",
        data.display()
    );

    // 2. A data dir of another user (root's, or one whose token file this
    // user cannot read): permission denied naming the fix, never
    // "File exists (os error 17)".
    let theirs = dir.path().join("theirs");
    std::fs::create_dir(&theirs).expect("mkdir");
    let token = theirs.join("admin.token");
    std::fs::write(&token, "0123456789abcdef0123456789abcdef\n").expect("token");
    std::fs::set_permissions(
        &token,
        std::fs::Permissions::from_mode(if root { 0o600 } else { 0o000 }),
    )
    .expect("chmod");
    let Some(out) = unprivileged_serve(&bin, &["--listen", "127.0.0.1:0"], &theirs) else {
        return;
    };
    let err = stderr(&out);
    assert!(
        !out.status.success(),
        "serve started with another user's data dir: {err}"
    );
    assert!(
        err.contains(&format!(
            "permission denied on the admin token file {}",
            token.display()
        )) && err.contains("run `swarm serve` as the user that owns the data directory"),
        "{err}"
    );
    assert!(
        !err.contains("File exists") && !err.contains("os error 17") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(theirs.join("admin.token").exists() && !theirs.join("swarm.db").exists());
}

/// The log `swarm serve` writes on stderr from start until it listens (then
/// it is stopped).
fn serve_start_log(data_dir: &std::path::Path) -> String {
    serve_start_log_with(data_dir, &[])
}

/// [`serve_start_log`] with more environment.
fn serve_start_log_with(data_dir: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    use std::io::{BufRead, BufReader, Read};
    let mut child = Command::new(swarm_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .envs(env.iter().copied())
        .env("SELF_HEAL_ENABLED", "false")
        .env("NO_COLOR", "1")
        .env_remove("SWARM_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start serve");
    let stdout = child.stdout.take().expect("stdout");
    let stderr = child.stderr.take().expect("stderr");
    let log = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = BufReader::new(stderr).read_to_string(&mut text);
        text
    });
    // "listening on …" comes after every start-up warning.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("listening on ") {
                let _ = tx.send(());
            }
        }
    });
    let up = rx.recv_timeout(std::time::Duration::from_secs(30)).is_ok();
    support::terminate_child(&mut child, std::time::Duration::from_secs(10));
    let text = log.join().expect("stderr reader");
    assert!(up, "serve never said it listens: {text}");
    text
}

#[test]
fn serve_warns_when_other_users_cannot_reach_the_binhost_on_disk() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // As a data dir made under umask 077 is: nginx (dist/nginx/) gets 403.
    let data = dir.path().join("data");
    std::fs::create_dir(&data).expect("mkdir");
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let log = serve_start_log(&data);
    assert!(
        log.contains("a web server running as another user cannot read the binhost from disk")
            && log.contains(&format!("{} is 0700", data.display())),
        "{log}"
    );
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o711)).expect("chmod");
    let log = serve_start_log(&data);
    assert!(!log.contains("cannot read the binhost"), "{log}");
}

#[test]
fn settings_read_the_environment_that_is_text_and_refuse_their_own_that_is_not() {
    use std::os::unix::ffi::OsStrExt;
    let not_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9");
    let dir = tempfile::tempdir().expect("dir");
    // Anyone's variable: serve panicked (exit 101) on it (h13).
    let log = serve_start_log_with(&dir.path().join("data"), &[("H13_UNRELATED", not_utf8)]);
    assert!(!log.contains("panicked"), "{log}");
    // One of swarm's own is refused by name, by serve and check alike, and
    // by the CLI and the agent (read as unset, the agent ran without its
    // token; h15).
    let serve = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        "/nonexistent/h13",
    ];
    for (args, var) in [
        (&["config", "check"][..], "SWARM_ADMIN_TOKEN"),
        (&serve[..], "SWARM_ADMIN_TOKEN"),
        (
            &["queue", "add", "=a/b-1", "--server", "http://127.0.0.1:9"][..],
            "SWARM_ADMIN_TOKEN",
        ),
        (
            &["status", "--server", "http://127.0.0.1:9"][..],
            "SWARM_READ_TOKEN",
        ),
        (
            &["drone", "--server", "http://127.0.0.1:9", "--name", "d1"][..],
            "SWARM_DRONE_TOKEN",
        ),
    ] {
        let out = Command::new(swarm_bin())
            .args(args)
            .env(var, not_utf8)
            .env_remove("SWARM_CONFIG")
            .output()
            .expect("run");
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains(&format!("env {var} is not UTF-8 text")),
            "{args:?}: {err}"
        );
    }
    // $SWARM_CONFIG names the file for serve and check too, as for the agent.
    let toml = dir.path().join("swarm.toml");
    std::fs::write(&toml, "max_prefetch = \"many\"\n").expect("write");
    let out = Command::new(swarm_bin())
        .args(["config", "check"])
        .env("SWARM_CONFIG", &toml)
        .output()
        .expect("run");
    let err = stderr(&out);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&toml.display().to_string()), "{err}");
}

#[test]
fn an_admin_token_no_request_can_carry_is_named_before_anything_is_sent() {
    let dir = tempfile::tempdir().expect("dir");
    let s = Server::start(dir.path(), &[]);
    // It said "a control character inside it" of a non-ASCII one (h13).
    let err = support::cli::fails(&s, &["queue", "add", "=a/b-1", "--token", "t\u{f6}ken"]);
    assert!(
        err.contains("holds a non-ASCII character (U+00F6) at character 2"),
        "{err}"
    );
    assert!(!err.contains("t\u{f6}ken"), "{err}");
    let long = "t".repeat(20_000);
    let err = support::cli::fails(&s, &["queue", "add", "=a/b-1", "--token", &long]);
    assert!(err.contains("20000 bytes long"), "{err}");
}
