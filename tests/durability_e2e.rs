//! Durability through the real `swarm serve` binary: a store that lost
//! acknowledged inputs is refused with a message naming the file and the way
//! out, and `--accept-loss` starts anyway and records the loss.

mod support;

use serde_json::{json, Value};
use std::process::{Command, Stdio};
use support::drone::Drone;
use support::{largest_store_file, swarm_bin, terminate_child, Server};

#[test]
fn serve_refuses_a_zero_byte_database_and_accept_loss_records_the_loss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    {
        let mut server = Server::start(data, &[]);
        let (code, _) = server.admin_post(
            "/api/v1/queue",
            &json!({ "packages": ["dev-libs/a-1", "dev-libs/b-1"] }),
        );
        assert_eq!(code, 200);
        assert_eq!(server.terminate(), Some(0));
    }
    let db = data.join("swarm.db");
    std::fs::write(&db, b"").expect("empty swarm.db");
    let out = serve_until_refused(data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");
    assert!(stderr.contains("empty"), "{stderr}");
    assert!(stderr.contains("--accept-loss"), "{stderr}");
    assert!(out.stdout.is_empty(), "never listened");
    assert_eq!(std::fs::metadata(&db).expect("db").len(), 0, "untouched");

    let server = Server::start_with(data, "127.0.0.1:0", &["--accept-loss"], &[]);
    let (code, body) = server.get("/api/v1/events?after=0");
    assert_eq!(code, 200);
    let events = body["events"].as_array().expect("events");
    let loss = events
        .iter()
        .find(|e| e["kind"] == "loss_accepted")
        .unwrap_or_else(|| panic!("a loss_accepted event in {body}"));
    assert!(
        loss["body"]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("empty")),
        "{loss}"
    );
}

/// The audit's `rm -f swarm.db*`: the glob takes the marker too. The data
/// dir still shows the farm had state (the store-id file beside the
/// database), so the start is refused instead of serving an empty farm;
/// `--accept-loss` on a store that lost nothing says so (h23): left in a service unit, it
/// would accept the next loss without a refused start to tell anyone.
#[test]
fn accept_loss_on_a_store_that_lost_nothing_warns_to_drop_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = &dir.path().join("data");
    drop(Server::start(data, &[]));
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(data, &["--accept-loss"], &[], &log);
    let (code, _) = server.get("/api/v1/health");
    assert_eq!(code, 200);
    wait_until(10, "the warning", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("nothing was lost"))
    });
}

/// `--accept-loss` starts anew and records the loss.
#[test]
fn serve_refuses_a_data_dir_with_state_whose_database_and_marker_were_removed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    {
        let mut server = Server::start(data, &[]);
        let (code, _) =
            server.admin_post("/api/v1/queue", &json!({ "packages": ["dev-libs/a-1"] }));
        assert_eq!(code, 200);
        server.kill9();
    }
    for f in ["swarm.db", "swarm.db-wal", "swarm.db-shm", "swarm.db.acked"] {
        let _ = std::fs::remove_file(data.join(f));
    }
    let out = serve_until_refused(data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(
        stderr.contains(&data.join("swarm.db").display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("swarm.store-id"), "{stderr}");
    assert!(stderr.contains("--accept-loss"), "{stderr}");
    assert!(out.stdout.is_empty(), "never listened");
    assert!(!data.join("swarm.db").exists(), "no new, empty store");
    let server = Server::start_with(data, "127.0.0.1:0", &["--accept-loss"], &[]);
    let (_, body) = server.get("/api/v1/events?after=0");
    assert!(
        body["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["kind"] == "loss_accepted")),
        "{body}"
    );
}

/// A database on a volume of its own (`db_path`) that did not mount takes the build logs,
/// credentials and time series beside it along, but the data dir's staging tree still holds the
/// records of what leases stored, which only a run with a store writes: the start is refused
/// naming them (h41 F3: it made a new, empty farm).
#[test]
fn a_database_volume_that_did_not_mount_is_refused_when_staging_shows_stored_uploads() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let volume = dir.path().join("dbvol");
    let db = volume.join("swarm.db");
    let env = [("SWARM_DB_PATH", db.to_str().expect("utf-8 path"))];
    std::fs::create_dir(&volume).expect("the mounted volume");
    {
        let server = Server::start(&data, &env);
        let (code, _) =
            server.admin_post("/api/v1/queue", &json!({ "packages": ["dev-libs/a-1"] }));
        assert_eq!(code, 200);
    }
    // What a stored upload leaves beside its package (`lease_files`).
    let records = data.join("staging/.leases/.by-lease");
    std::fs::create_dir_all(&records).expect("records dir");
    std::fs::write(records.join("1"), "dev-libs/a-1.gpkg.tar\n").expect("record");
    let leases = data.join("staging/.leases");
    let mode = |p: &std::path::Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).expect("meta").permissions())
            & 0o777
    };
    std::fs::set_permissions(&leases, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    std::fs::rename(&volume, dir.path().join("dbvol.unmounted")).expect("unmount");
    std::fs::create_dir(&volume).expect("the empty mount point");
    let out = serve_until_refused_with(&data, &[("SWARM_DB_PATH", db.as_os_str())]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "refused: {stderr}");
    assert!(stderr.contains("staging/.leases"), "{stderr}");
    assert_eq!(
        mode(&leases),
        0o755,
        "a web server may publish staging (h42 F5)"
    );
    assert!(stderr.contains("--accept-loss"), "{stderr}");
    assert!(!db.exists(), "no new, empty store");
    // A new farm on a staging volume an earlier one used starts (h43 F2): that volume's
    // records are no evidence of this data dir's state.
    let staging = data.join("staging");
    let server = Server::start(
        &dir.path().join("new-farm"),
        &[("STAGING_PATH", staging.to_str().expect("utf-8 path"))],
    );
    assert_eq!(server.get("/api/v1/health").0, 200);
}

/// An operator who puts the admin token into a new data dir before the
/// first start (configuration management does) gets a farm that starts and
/// takes that token: a token is no evidence of an earlier store.
#[test]
fn a_new_data_dir_holding_only_a_provisioned_admin_token_starts_and_uses_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    std::fs::write(data.join("admin.token"), "provisioned-token-0123456789\n").expect("token");
    let server = Server::start(data, &[]);
    assert_eq!(server.token(), "provisioned-token-0123456789");
    let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": ["dev-libs/a-1"] }));
    assert_eq!(
        code, 200,
        "the provisioned token is the admin token: {body}"
    );
    assert!(
        data.join("swarm.store-id").is_file(),
        "evidence for later starts"
    );
}

/// A first start that fails leaves no admin token it generated behind, so
/// the next start does not take the token for an earlier run's state.
#[test]
fn a_failed_first_start_in_an_existing_data_dir_leaves_no_token_behind() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    std::fs::create_dir(data.join("swarm.db")).expect("a directory in its place");
    let out = serve_until_refused(data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is a directory"), "{stderr}");
    assert!(
        !data.join("admin.token").exists(),
        "the generated token stays"
    );
    std::fs::remove_dir(data.join("swarm.db")).expect("rmdir");
    let server = Server::start(data, &[]);
    let (code, body) = server.get("/api/v1/health");
    assert_eq!(code, 200, "a fresh farm starts: {body}");
}

/// Runs `swarm serve` on `data`, expected to be refused at start: its
/// output. One that is still running after 30 s fails the test.
fn serve_until_refused(data: &std::path::Path) -> std::process::Output {
    serve_until_refused_with(data, &[])
}

fn serve_until_refused_with(
    data: &std::path::Path,
    env: &[(&str, &std::ffi::OsStr)],
) -> std::process::Output {
    let mut child = Command::new(swarm_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("SELF_HEAL_ENABLED", "false")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run swarm serve");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            terminate_child(&mut child, std::time::Duration::from_secs(5));
            panic!(
                "swarm serve on {} was not refused: it kept running",
                data.display()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().expect("its output")
}

fn metric(server: &Server, name: &str) -> Option<String> {
    let (_, body) = server.get("/metrics");
    let text = body.as_str().unwrap_or_default().to_string();
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .map(|l| l[name.len() + 1..].to_string())
}

#[test]
fn health_is_503_with_the_reason_while_the_store_cannot_write_and_recovers_by_itself() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = &dir.path().join("data");
    let log = dir.path().join("server.log");
    let server = Server::start_logging_to(data, &[], &[("SWARM_LOG", "info")], &log);
    let (code, body) = server.get("/api/v1/health");
    assert_eq!((code, body["status"].as_str()), (200, Some("ok")), "{body}");
    assert_eq!(
        metric(&server, "swarm_store_writable").as_deref(),
        Some("1")
    );
    // A file-size limit just above the store's files: the next growth fails,
    // as on a full disk (`ulimit -f`, applied to the running server).
    server.limit_file_size(Some(largest_store_file(data) + 16 * 1024));
    let mut refused = None;
    for i in 0..400 {
        let packages: Vec<String> = (0..50).map(|p| format!("dev-libs/p{i}x{p}-1")).collect();
        let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": packages }));
        if code != 200 {
            refused = Some((code, body));
            break;
        }
    }
    let (code, body) = refused.expect("a write failed under the file-size limit");
    assert_eq!(code, 503, "{body}");
    // Clients retrying into the full disk: the log says so, but not once per retry (h23:
    // 21,101 lines in 5 s from two clients).
    for i in 0..200 {
        let (code, _) = server.admin_post(
            "/api/v1/queue",
            &json!({ "packages": [format!("dev-libs/retry{i}-1")] }),
        );
        assert_eq!(code, 503);
    }
    let text = std::fs::read_to_string(&log).expect("server log");
    for line in ["group commit failed", "request failed"] {
        let n = text.matches(line).count();
        assert!(
            (1..=3).contains(&n),
            "{n} lines of {line:?} for 201 refused writes:\n{text}"
        );
    }
    let (code, body) = server.get("/api/v1/health");
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["store_writable"], json!(false), "{body}");
    assert!(
        body["reason"]
            .as_str()
            .is_some_and(|r| r.contains("cannot write")),
        "{body}"
    );
    assert_eq!(
        metric(&server, "swarm_store_writable").as_deref(),
        Some("0")
    );
    // Space returns: health turns back without any request writing.
    server.limit_file_size(None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let (code, body) = server.get("/api/v1/health");
        if code == 200 {
            assert_eq!(body["store_writable"], json!(true), "{body}");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never recovered: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(
        metric(&server, "swarm_store_writable").as_deref(),
        Some("1")
    );
    let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": ["dev-libs/z-1"] }));
    assert_eq!(code, 200, "writes work again: {body}");
    let text = std::fs::read_to_string(&log).expect("server log");
    assert!(
        text.contains("group commits succeed again"),
        "the recovery is logged: {text}"
    );
}

/// `rm swarm.db-wal` under a running server: SQLite writes on into the
/// unlinked file, which a crash loses. Health turns 503 naming the WAL,
/// writes are refused, and a clean stop keeps every acknowledged package.
#[test]
fn a_wal_deleted_under_the_running_server_turns_health_503_and_a_clean_stop_keeps_everything() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let mut server = Server::start(data, &[]);
    let (code, body) =
        server.admin_post("/api/v1/queue", &json!({ "packages": ["dev-libs/w0-1"] }));
    assert_eq!(code, 200, "{body}");
    std::fs::remove_file(data.join("swarm.db-wal")).expect("delete the WAL");
    let mut acknowledged = 1;
    let mut refused = None;
    for i in 1..40 {
        let atom = format!("dev-libs/w{i}-1");
        let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": [atom] }));
        if code != 200 {
            refused = Some((code, body));
            break;
        }
        acknowledged += 1;
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, body) = refused.expect("writes were refused once the WAL was gone");
    assert_eq!(code, 503, "{body}");
    let (code, body) = server.get("/api/v1/health");
    assert_eq!(code, 503, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default().to_owned();
    assert!(
        reason.contains("swarm.db-wal") && reason.contains("SIGTERM"),
        "{body}"
    );
    assert_eq!(
        metric(&server, "swarm_store_writable").as_deref(),
        Some("0")
    );
    assert_eq!(server.terminate(), Some(0), "a clean stop");
    assert_restart_queues(data, acknowledged);
}

/// A server started on `data` finds `acknowledged` packages queued.
fn assert_restart_queues(data: &std::path::Path, acknowledged: usize) {
    let server = Server::start(data, &[]);
    let (_, q) = server.get("/api/v1/queue?limit=1000");
    assert_eq!(
        q["total"],
        json!(acknowledged),
        "every acknowledged package: {q}"
    );
}

/// The same, but the server is killed (-9) once it refuses writes: what the deleted WAL held was
/// copied into swarm.db when the server noticed, so the restart finds every acknowledged package
/// and needs no `--accept-loss`. Before, a crash then lost every input since the last checkpoint.
#[test]
fn a_wal_deleted_under_the_running_server_loses_nothing_to_a_later_kill() {
    // Deleted, or replaced by an older copy of itself: that copy's frames replayed over the
    // database made the restart read the store as damaged (h38 F1); it is moved aside.
    for replaced in [false, true] {
        wal_lost_then_kill(replaced);
    }
}

fn wal_lost_then_kill(replaced: bool) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let mut server = Server::start(data, &[]);
    let mut acknowledged = 0;
    let wal = data.join("swarm.db-wal");
    let older = data.join("older-wal");
    for i in 0..40 {
        if i == 5 {
            std::fs::copy(&wal, &older).expect("a copy of the WAL");
        }
        let atom = format!("dev-libs/k{i}-1");
        let (code, body) = server.admin_post("/api/v1/queue", &json!({ "packages": [atom] }));
        assert_eq!(code, 200, "{body}");
        acknowledged += 1;
    }
    if replaced {
        std::fs::rename(&older, &wal).expect("the older copy over the WAL");
    } else {
        std::fs::remove_file(&wal).expect("delete the WAL");
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let atom = format!("dev-libs/k{acknowledged}-1");
        let (code, _) = server.admin_post("/api/v1/queue", &json!({ "packages": [atom] }));
        if code != 200 {
            break;
        }
        acknowledged += 1;
        assert!(std::time::Instant::now() < deadline, "writes never refused");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (code, body) = server.get("/api/v1/health");
    assert_eq!(code, 503, "{body}");
    server.kill9();
    assert_restart_queues(data, acknowledged);
    assert_eq!(
        data.join("swarm.db-wal.replaced").exists(),
        replaced,
        "the file that replaced the WAL is set aside"
    );
}

#[test]
fn upload_temp_files_left_by_a_killed_server_are_removed_at_start() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    // The farm ran once and was killed: what it left follows.
    Server::start(data, &[]).kill9();
    let cat = data.join("staging").join("dev-libs");
    std::fs::create_dir_all(&cat).expect("staging");
    let stale = cat.join(".upload-4242-7.tmp");
    std::fs::write(&stale, vec![0u8; 1 << 20]).expect("stale temp");
    let kept = cat.join("foo-1.gpkg.tar");
    std::fs::write(&kept, b"a finished upload").expect("artifact");
    // A build log's upload (`logs/.<lease>.tmp`) a kill -9 cut short.
    let logs = data.join("logs");
    std::fs::create_dir_all(&logs).expect("logs");
    let stale_log = logs.join(".7.tmp");
    std::fs::write(&stale_log, b"half a gzip").expect("stale log temp");
    let server = Server::start(data, &[]);
    assert!(!stale.exists(), "the stale temp file is gone");
    assert!(!stale_log.exists(), "the stale build-log temp file is gone");
    assert!(kept.exists(), "finished uploads stay");
    // An upload of the running server in flight: a second server started
    // on the same data dir is refused, and leaves it alone.
    let in_flight = cat.join(".upload-777-1.tmp");
    std::fs::write(&in_flight, b"half an upload").expect("temp");
    let log_in_flight = logs.join(".8.tmp");
    std::fs::write(&log_in_flight, b"half a gzip").expect("log temp");
    let out = serve_until_refused(data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a second server was let in: {stderr}"
    );
    assert!(stderr.contains("already open"), "{stderr}");
    assert!(
        in_flight.exists(),
        "the refused server removed the running one's upload in flight"
    );
    assert!(
        log_in_flight.exists(),
        "the refused server removed the running one's log upload in flight"
    );
    // The same with its lock file deleted (h23: the second took a new one and the
    // database, and the first refused writes until restarted): refused, as the first still
    // has the deleted lock file open (and holds the WAL).
    std::fs::remove_file(data.join("swarm.db.lock")).expect("delete the lock file");
    let out = serve_until_refused(data);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("already open"),
        "a second server was let in past a deleted lock file: {stderr}"
    );
    assert!(in_flight.exists() && log_in_flight.exists(), "{stderr}");
    let (code, v) = server.get("/api/v1/health");
    assert_eq!(code, 200, "the running server is still healthy: {v}");
    let (code, v) = server.admin_post("/api/v1/queue", &json!({"packages": ["=dev-libs/after-1"]}));
    assert_eq!(code, 200, "the running server still writes: {v}");
    // The WAL deleted too, and the -shm: the running server still has its deleted lock file
    // open, and the refusal names it (h32 F6: SQLite's bare "disk I/O error"; h38 F2: with
    // the -shm gone too, and the first server's WAL copied into swarm.db, a second got in).
    std::fs::remove_file(data.join("swarm.db-wal")).expect("delete the WAL");
    let _ = std::fs::remove_file(data.join("swarm.db.lock"));
    for shm_too in [false, true] {
        if shm_too {
            let _ = std::fs::remove_file(data.join("swarm.db-shm"));
            let _ = std::fs::remove_file(data.join("swarm.db.lock"));
        }
        let out = serve_until_refused(data);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success()
                && stderr.contains(&format!("(pid {} (swarm))", server.child.id())),
            "the refusal names the running server: {stderr}"
        );
    }
}

fn wait_until(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while !f() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// A finished build waiting in a dead agent's spool, and its server, dead
/// too (restart it).
struct SpooledBuild {
    server: Server,
    drone: Drone,
    lease: u64,
    /// `SWARM_STANDIN_SIZES` for the agents of the test.
    sizes: String,
}

/// The token flags every agent of these tests uses.
const DRONE_TOKEN: [&str; 2] = ["--token", "drone-secret"];

/// Queues `atom` (a stand-in build of `size`, 10 per second) on a new
/// server in `dir/server` with `server_env`, starts the agent `name`, and
/// waits for the build to start. Returns the server, the agent and its
/// `SWARM_STANDIN_SIZES`.
fn start_one_build(
    dir: &std::path::Path,
    atom: &str,
    name: &str,
    size: u32,
    server_env: &[(&str, &str)],
) -> (Server, Drone, String) {
    let sizes = dir.join("sizes");
    std::fs::write(&sizes, format!("={atom} {size}\n")).expect("sizes");
    let sizes = sizes.to_string_lossy().into_owned();
    let mut env = vec![("SWARM_DRONE_TOKEN", "drone-secret")];
    env.extend_from_slice(server_env);
    let server = Server::start(&dir.join("server"), &env);
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({ "packages": [format!("={atom}")] }),
    );
    assert_eq!(code, 200, "{v}");
    let drone = Drone::start(
        &server,
        dir,
        name,
        &DRONE_TOKEN,
        &[("SWARM_STANDIN_SIZES", sizes.as_str())],
    );
    wait_until(60, "the build to start", || {
        drone.log_text().contains("build starts")
    });
    (server, drone, sizes)
}

/// Queues `atom` (a 3 s stand-in build) on a new server with `server_env`,
/// starts the agent `name`, and kills the server while the build runs; once
/// the finished build's upload is retried against nothing, kills the agent.
fn spool_one_build(
    dir: &std::path::Path,
    atom: &str,
    name: &str,
    server_env: &[(&str, &str)],
) -> SpooledBuild {
    let (mut server, mut drone, sizes) = start_one_build(dir, atom, name, 30, server_env);
    let log = drone.log.clone();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let lease = queue_status(&server, &format!("={atom}"))["lease"]
        .as_u64()
        .expect("the build's lease");
    // The server goes away while the build runs; the build ends, is spooled,
    // and its upload is retried against nothing.
    server.kill9();
    wait_until(60, "the upload to be retried", || {
        read_log().contains("artifact upload failed")
    });
    drone.kill9();
    SpooledBuild {
        server,
        drone,
        lease,
        sizes,
    }
}

/// The queue entry's status of `atom`.
fn queue_status(server: &Server, atom: &str) -> serde_json::Value {
    let (code, v) = server.get("/api/v1/queue?limit=1000");
    assert_eq!(code, 200, "{v}");
    v["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["atom"] == atom))
        .map(|i| i["status"].clone())
        .unwrap_or_else(|| panic!("{atom} not in the queue: {v}"))
}

#[test]
fn a_finished_build_is_spooled_and_delivered_across_a_server_outage_and_an_agent_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let atom = "dev-libs/spooled-1.0";
    let SpooledBuild {
        mut server,
        drone,
        sizes,
        ..
    } = spool_one_build(dir.path(), atom, "drone-s", &[]);
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let log = drone.log.clone();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let spool = dir.path().join("drone-s").join("spool");
    let spooled = || {
        std::fs::read_dir(&spool)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                    .count()
            })
            .unwrap_or(0)
    };
    assert_eq!(
        spooled(),
        1,
        "the finished build is on disk: {}",
        read_log()
    );
    // The agent died mid-retry; the binary package in PKGDIR goes away too
    // (the spool holds its own link).
    let _ = std::fs::remove_dir_all(&drone.pkgdir);
    std::thread::sleep(std::time::Duration::from_secs(2));
    server.restart();
    // The entry keeps the farm that leased it.
    let entry_path = std::fs::read_dir(&spool)
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "json"))
        .expect("the entry");
    let entry: Value =
        serde_json::from_slice(&std::fs::read(&entry_path).expect("entry")).expect("json");
    assert!(
        entry["farm"].as_str().is_some_and(|f| !f.is_empty()),
        "the farm is kept: {entry}"
    );
    // Restarted with a wrong token first: a refused credential is the
    // drone's fault, not the server's judgement of the build, so the build
    // stays spooled (it was dropped as "refused" before).
    let mut wrong = Drone::start(&server, dir.path(), "drone-s", &["--token", "wrong"], &env);
    let wrong_log = wrong.log.clone();
    wait_until(60, "the wrong credential to be refused", || {
        spooled() == 0
            || std::fs::read_to_string(&wrong_log)
                .unwrap_or_default()
                .contains("refuses this drone's credential")
    });
    wrong.kill9();
    assert_eq!(
        spooled(),
        1,
        "the build is still spooled: {}",
        std::fs::read_to_string(&wrong_log).unwrap_or_default()
    );
    // A copy of the spool as it is now, put back below.
    let copy = dir.path().join("spool-copy");
    std::fs::create_dir(&copy).expect("mkdir");
    for e in std::fs::read_dir(&spool).expect("spool").flatten() {
        std::fs::copy(e.path(), copy.join(e.file_name())).expect("copy");
    }
    let mut drone = Drone::start(&server, dir.path(), "drone-s", &DRONE_TOKEN, &env);
    server.wait_for(60, "the spooled build to be delivered", |s| {
        s["counts"]["built"] == 1
    });
    let (_, history) = server.get("/api/v1/history?limit=100");
    let outcomes: Vec<&str> = history["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["package"] == format!("={atom}"))
        .filter_map(|b| b["outcome"].as_str())
        .collect();
    assert_eq!(outcomes, ["success"], "{history}");
    // The build log was spooled with the report and arrived with it.
    let lease = history["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .find(|b| b["package"] == format!("={atom}"))
        .and_then(|b| b["lease"].as_u64())
        .expect("the build's lease");
    let (code, text) = server.get(&format!("/api/v1/logs/{lease}"));
    assert_eq!(code, 200, "the build log: {text}");
    assert!(
        text.as_str()
            .is_some_and(|t| t.contains(&format!("STAND-IN build of ={atom}"))),
        "the build log: {text}"
    );
    assert!(server
        .data_dir
        .join("staging/dev-libs/spooled-1.0.gpkg.tar")
        .exists());
    wait_until(10, "the spool to empty", || {
        std::fs::read_dir(&spool).map_or(true, |d| d.count() == 0)
    });
    assert!(
        read_log().contains("earlier agent left in the spool"),
        "{}",
        read_log()
    );
    // An agent killed after its report was answered, before it cleared the
    // spool: the next one finds the lease ended. It says so and sends the
    // report to hear what became of the build; it does not call the build's
    // artifact refused and report it failed.
    drone.kill9();
    for e in std::fs::read_dir(&copy).expect("copy").flatten() {
        std::fs::copy(e.path(), spool.join(e.file_name())).expect("put back");
    }
    let drone = Drone::start(&server, dir.path(), "drone-s", &DRONE_TOKEN, &env);
    wait_until(30, "the put-back entry to be answered", || {
        std::fs::read_dir(&spool).map_or(true, |d| d.count() == 0)
    });
    let text = read_log();
    assert!(
        text.contains("no longer holds this build's lease") && !text.contains("artifact refused"),
        "{text}"
    );
    // Its report was recorded already: the answer says so, not "stale".
    assert!(text.contains("report sent again"), "{text}");
    let (_, again) = server.get("/api/v1/history?limit=100");
    assert_eq!(
        again["builds"], history["builds"],
        "nothing was recorded twice"
    );
    assert_eq!(server.get("/api/v1/status").1["counts"]["built"], 1);
    drop(drone);
}

/// A restarted agent delivers its spool while it registers and beats: a
/// delivery the server keeps answering with errors for longer than its
/// offline timeout neither makes the drone offline nor loses the lease, and
/// the build lands under the lease it was built for. (Delivered before
/// registering, the drone sent no heartbeat meanwhile: the server reclaimed
/// the lease and the finished build was refused.)
/// A FIFO where the spooled package was (or a directory) is this drone's fault: the build is
/// reported `upload_failed`, saying so, where a FIFO hung the delivery for good and a directory
/// failed mid-send as a network error retried for ever (h36 F7).
#[test]
fn a_spooled_package_that_is_not_a_regular_file_is_reported_not_waited_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let atom = "dev-libs/fifo-1.0";
    let SpooledBuild {
        mut server,
        drone,
        sizes,
        ..
    } = spool_one_build(dir.path(), atom, "drone-f", &[]);
    let spool = dir.path().join("drone-f").join("spool");
    let package = std::fs::read_dir(&spool)
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.to_string_lossy().ends_with(".0.artifact"))
        .unwrap_or_else(|| panic!("no spooled package: {}", drone.log_text()));
    std::fs::remove_file(&package).expect("rm");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &package,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .expect("a FIFO in its place");
    server.restart();
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let _drone = Drone::start(&server, dir.path(), "drone-f", &DRONE_TOKEN, &env);
    let detail = || {
        let (_, history) = server.get("/api/v1/history?limit=100");
        history["builds"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|b| b["package"] == format!("={atom}") && !b["outcome"].is_null())
            .map(|b| b.to_string())
    };
    wait_until(60, "the build to be reported", || detail().is_some());
    let detail = detail().unwrap_or_default();
    assert!(
        detail.contains("upload_failed") || detail.contains("upload failed"),
        "{detail}"
    );
    assert!(detail.contains("not a regular file"), "{detail}");
}

#[test]
fn a_spool_delivery_slower_than_the_offline_timeout_keeps_the_drone_online_and_its_lease() {
    let dir = tempfile::tempdir().expect("temp dir");
    let atom = "dev-libs/slowspool-1.0";
    let SpooledBuild {
        mut server,
        lease,
        sizes,
        ..
    } = spool_one_build(
        dir.path(),
        atom,
        "drone-l",
        &[
            ("SWARM_POLICY_HEARTBEAT_GRACE_MS", "2000"),
            ("SWARM_POLICY_CONFIRMED_DEAD_AFTER_MS", "3000"),
            ("SWARM_POLICY_OFFLINE_TIMEOUT_MS", "4000"),
            ("SWARM_POLICY_FAILOVER_GRACE_MS", "1000"),
        ],
    );
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    // The server comes back unable to store the package (its category's
    // directory cannot be made: 507, retried) for longer than its offline
    // timeout.
    let blocked = server.data_dir.join("staging/dev-libs");
    let _ = std::fs::remove_dir_all(&blocked);
    std::fs::write(&blocked, b"in the way").expect("block the category dir");
    server.restart();
    let mut drone = Drone::start(&server, dir.path(), "drone-l", &DRONE_TOKEN, &env);
    let log = drone.log.clone();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(60, "the restarted agent's upload to be refused", || {
        read_log().contains("artifact upload failed")
    });
    std::thread::sleep(std::time::Duration::from_secs(9));
    let status = queue_status(&server, &format!("={atom}"));
    assert_eq!(status["state"], "assigned", "{status}\n{}", read_log());
    assert_eq!(status["drone"], "drone-l", "{status}");
    assert_eq!(status["lease"], lease, "the lease is the build's: {status}");
    let node = server.node("drone-l");
    assert_eq!(node["status"], "online", "{node}");
    assert!(
        !read_log().contains("handed back a lease"),
        "the spooled build's lease was handed back as an orphan: {}",
        read_log()
    );
    // A SIGTERM while it waits: the build is delivered first, as a job's
    // finished build is (given up, the goodbye gave its lease back and the
    // package was built again).
    drone.signal(rustix::process::Signal::TERM);
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert_eq!(
        drone.wait_exit(0),
        None,
        "left before delivering: {}",
        read_log()
    );
    std::fs::remove_file(&blocked).expect("unblock");
    server.wait_for(60, "the spooled build to be delivered", |s| {
        s["counts"]["built"] == 1
    });
    assert_eq!(drone.wait_exit(30), Some(0), "{}", read_log());
    let (builds, history) = builds_of(&server, atom);
    assert_eq!(builds, [(Some("success".into()), Some(lease))], "{history}");
    drop(drone);
}

/// One build in the history: its outcome and its lease.
type HistoryBuild = (Option<String>, Option<u64>);

/// `atom`'s builds in the server's history, and the history for messages.
fn builds_of(server: &Server, atom: &str) -> (Vec<HistoryBuild>, Value) {
    let (_, history) = server.get("/api/v1/history?limit=100");
    let builds = history["builds"]
        .as_array()
        .expect("builds")
        .iter()
        .filter(|b| b["package"] == format!("={atom}"))
        .map(|b| {
            (
                b["outcome"].as_str().map(str::to_owned),
                b["lease"].as_u64(),
            )
        })
        .collect();
    (builds, history)
}

/// Farm `b` (a new store) gets `atom` queued and leases it to drone `name`
/// (as an earlier agent on it would have taken it); returns the lease.
fn lease_on_new_farm(b: &Server, atom: &str, name: &str) -> Value {
    let (code, v) = b.admin_post(
        "/api/v1/queue",
        &json!({ "packages": [format!("={atom}")] }),
    );
    assert_eq!(code, 200, "{v}");
    let machine = format!("test-machine-{name}");
    let register = json!({"id": machine, "name": name, "node_name": name,
        "capabilities": {"cores": 4}});
    let (code, v) = support::request(
        "POST",
        &format!("{}/api/v1/register", b.url),
        Some(&register.to_string()),
        Some("drone-secret"),
    );
    assert_eq!(code, 200, "{v}");
    let (code, work) = support::request(
        "GET",
        &format!("{}/api/v1/work?id={machine}", b.url),
        None,
        Some("drone-secret"),
    );
    assert_eq!(code, 200, "{work}");
    work["lease"].clone()
}

/// The sha256 of the one build spooled in `spool`.
fn spooled_sha256(spool: &std::path::Path) -> String {
    let entries: Vec<std::path::PathBuf> = std::fs::read_dir(spool)
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(entries.len(), 1, "one build is spooled");
    let entry: Value =
        serde_json::from_slice(&std::fs::read(&entries[0]).expect("entry")).expect("json");
    entry["artifacts"][0]["sha256"]
        .as_str()
        .expect("its artifact's sha256")
        .to_string()
}

/// Waits until farm `b` built `atom`, and checks its package is not the
/// build set aside (`foreign`): farm B may well have offered the same lease
/// again, and the drone built it for B.
fn built_for_b_not_a(b: &Server, atom: &str, foreign: &str, log: &std::path::Path) {
    let read_log = || std::fs::read_to_string(log).unwrap_or_default();
    b.wait_for(60, "farm B's own build", |s| s["counts"]["built"] == 1);
    let (cat, pf) = atom.split_once('/').expect("cat/pf");
    let staged = std::fs::read(b.data_dir.join(format!("staging/{cat}/{pf}.gpkg.tar")))
        .expect("farm B's package");
    use sha2::Digest;
    let staged = hex::encode(sha2::Sha256::digest(&staged));
    assert_ne!(
        staged,
        foreign,
        "farm A's build landed on farm B: {}",
        read_log()
    );
    assert!(
        read_log().contains("belongs to another farm"),
        "{}",
        read_log()
    );
}

/// A spooled build goes only to the farm that leased it. The agent is
/// pointed at a new farm whose lease of the same number, for the same
/// package, is this drone's: delivered there, farm A's build would land as
/// farm B's. It is set aside, and farm B gets its own build.
#[test]
fn a_spooled_build_is_not_delivered_to_another_farm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let atom = "dev-libs/farmed-1.0";
    let SpooledBuild { lease, sizes, .. } = spool_one_build(dir.path(), atom, "drone-f", &[]);
    let b = Server::start(
        &dir.path().join("server-b"),
        &[("SWARM_DRONE_TOKEN", "drone-secret")],
    );
    let spool = dir.path().join("drone-f/spool");
    assert_eq!(
        lease_on_new_farm(&b, atom, "drone-f"),
        lease,
        "the same number"
    );
    let foreign = spooled_sha256(&spool);
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let drone = Drone::start(&b, dir.path(), "drone-f", &DRONE_TOKEN, &env);
    built_for_b_not_a(&b, atom, &foreign, &drone.log);
    let set_aside = std::fs::read_dir(&spool)
        .expect("spool")
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bad"))
        .count();
    assert_eq!(set_aside, 1, "the foreign build is kept, set aside");
    drop(drone);
}

/// The same when the server changes while the build is being delivered
/// (farm A, answering 507, is replaced by farm B on its address): the
/// farm is checked by the server at each upload and report, not once.
#[test]
fn a_build_is_not_delivered_to_a_farm_that_replaced_its_own_meanwhile() {
    let dir = tempfile::tempdir().expect("temp dir");
    let atom = "dev-libs/swapped-1.0";
    let SpooledBuild {
        mut server,
        lease,
        sizes,
        ..
    } = spool_one_build(dir.path(), atom, "drone-w", &[]);
    let spool = dir.path().join("drone-w/spool");
    let foreign = spooled_sha256(&spool);
    let blocked = server.data_dir.join("staging/dev-libs");
    let _ = std::fs::remove_dir_all(&blocked);
    std::fs::write(&blocked, b"in the way").expect("block the category dir");
    server.restart();
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let drone = Drone::start(&server, dir.path(), "drone-w", &DRONE_TOKEN, &env);
    let log = drone.log.clone();
    wait_until(60, "the delivery to farm A to be retried", || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("artifact upload failed")
    });
    let b = replace_farm(&mut server, &dir.path().join("server-b"));
    assert_eq!(
        lease_on_new_farm(&b, atom, "drone-w"),
        lease,
        "the same number"
    );
    built_for_b_not_a(&b, atom, &foreign, &log);
    drop(drone);
}

/// Kills `server` and starts a new farm (a new store in `data`) on its
/// address, as an operator's mix-up would.
fn replace_farm(server: &mut Server, data: &std::path::Path) -> Server {
    let addr = server.addr.clone();
    server.kill9();
    // The port may linger for a moment after the kill.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let attempt = std::panic::catch_unwind(|| {
            Server::start_on(data, &addr, &[("SWARM_DRONE_TOKEN", "drone-secret")])
        });
        match attempt {
            Ok(b) => return b,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(200))
            }
            Err(e) => std::panic::resume_unwind(e),
        }
    }
}

/// Another farm answers at the drone's address for a while, then the first
/// one comes back. The first farm's build, running meanwhile, is neither
/// stopped by the other farm's replies nor delivered to it (set aside).
/// Back, the first farm still has the package "building" under the lease it
/// gave: the drone delivers the set-aside build to it, so it is built once,
/// not twice, and not left "building" on an idle drone for good (what an
/// audit saw: the agent took the other farm's revoke, dropped the build and
/// remembered the lease as reported). Should the build not go home, the
/// lease is handed back instead (`swarm-core/tests/agent.rs`).
#[test]
fn a_build_another_farm_refused_goes_to_its_own_farm_when_it_is_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let atom = "dev-libs/interlude-1.0";
    let (mut a, drone, _) = start_one_build(dir.path(), atom, "drone-i", 60, &[]);
    let read_log = || drone.log_text();
    let mut b = replace_farm(&mut a, &dir.path().join("server-b"));
    wait_until(90, "farm B to refuse farm A's build", || {
        read_log().contains("belongs to another farm")
    });
    assert!(
        !read_log().contains("stopping revoked builds"),
        "farm B stopped farm A's build: {}",
        read_log()
    );
    b.kill9();
    a.restart();
    a.wait_for(120, "farm A's package built", |s| s["counts"]["built"] == 1);
    assert_eq!(
        read_log().matches("build starts").count(),
        1,
        "built once, delivered when its farm was back: {}",
        read_log()
    );
    let left: Vec<_> = std::fs::read_dir(dir.path().join("drone-i/spool"))
        .expect("spool")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "bad" || x == "json"))
        .collect();
    assert!(left.is_empty(), "nothing left in the spool: {left:?}");
    drop(drone);
}

/// Starts, returns and build logs name the farm that gave the lease too: a
/// server of another farm refuses them (409) and records nothing, since its
/// lease of that number is another one (a farm replaced at the same
/// address, a store's loss accepted).
#[test]
fn lease_calls_naming_another_farm_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let s = Server::start(dir.path(), &[("SWARM_DRONE_TOKEN", "drone-secret")]);
    let atom = "dev-libs/farmed-call-1.0";
    let lease = lease_on_new_farm(&s, atom, "drone-c");
    let beat = json!({"id": "test-machine-drone-c", "name": "drone-c", "node_name": "drone-c"});
    let (code, v) = support::request(
        "POST",
        &format!("{}/api/v1/register", s.url),
        Some(&beat.to_string()),
        Some("drone-secret"),
    );
    assert_eq!(code, 200, "{v}");
    let farm = v["farm_id"]
        .as_str()
        .expect("the register reply names the farm");
    let call = |path: &str, farm_id: &str| {
        let body = json!({"node_name": "drone-c", "lease": lease, "package": format!("={atom}"),
                          "farm_id": farm_id, "reason": "test"});
        support::request(
            "POST",
            &format!("{}{path}", s.url),
            Some(&body.to_string()),
            Some("drone-secret"),
        )
    };
    for path in ["/api/v1/started", "/api/v1/return"] {
        let (code, v) = call(path, "another-farm");
        assert_eq!(code, 409, "{path}: {v}");
        assert_eq!(v["field"], "farm_id", "{path}: {v}");
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, b"a log of another farm's build\n").expect("gzip");
    let gz = gz.finish().expect("gzip");
    let (code, v) = support::request_raw(
        "PUT",
        &format!(
            "{}/api/v1/logs/{lease}?package=%3D{atom}&node=drone-c",
            s.url
        ),
        Some(&gz),
        Some("drone-secret"),
        &[("X-Swarm-Farm", "another-farm")],
    );
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["field"], "X-Swarm-Farm", "{v}");
    // A drone that did not hold the lease is refused before its body is
    // read and decompressed (garbage here, which would be a 400 after).
    let (code, v) = support::request_raw(
        "PUT",
        &format!(
            "{}/api/v1/logs/{lease}?package=%3D{atom}&node=drone-x",
            s.url
        ),
        Some(b"not gzip at all"),
        Some("drone-secret"),
        &[("X-Swarm-Farm", farm)],
    );
    assert_eq!(code, 403, "{v}");
    // Nothing was recorded: the lease is still this drone's, and a return
    // naming this farm hands it back.
    let (code, v) = call("/api/v1/return", farm);
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["recorded"], "returned", "{v}");
}

#[test]
fn a_short_soak_serves_without_errors_and_leaks_no_files() {
    let out = Command::new(swarm_bin())
        .args([
            "bench",
            "soak",
            "--drones",
            "8",
            "--seconds",
            "40",
            "--speed",
            "120",
            "--json",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run swarm bench soak");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["errors"], json!(0), "{v}");
    assert!(v["built"].as_u64().is_some_and(|b| b > 0), "{v}");
    assert!(v["virtual_hours"].as_f64().is_some_and(|h| h > 1.0), "{v}");
    for which in ["start", "end"] {
        for key in ["rss_mib", "open_files", "db_bytes", "log_rows"] {
            assert!(
                v[which][key].as_f64().is_some_and(|x| x > 0.0),
                "{which}.{key}: {v}"
            );
        }
        assert!(v[which]["p99_ms"]["heartbeat"].as_f64().is_some(), "{v}");
    }
    // Checkpoints keep up: the commits reach the database file and the WAL
    // stays near its limit. A server that never checkpointed (the writer
    // nudged the checkpointer only on commits it fsynced itself) ended this
    // run with a 4 KiB database and an ever-growing WAL.
    let db = v["end"]["db_bytes"].as_u64().unwrap_or(0);
    let wal = v["end"]["wal_bytes"].as_u64().unwrap_or(u64::MAX);
    assert!(
        db > 256 << 10,
        "nothing reached the database: {db} bytes: {v}"
    );
    assert!(wal <= 64 << 20, "the WAL holds {wal} bytes: {v}");
    let files = |w: &str| v[w]["open_files"].as_u64().unwrap_or(0);
    assert!(
        files("end") <= files("start") + 8,
        "open files grew from {} to {}",
        files("start"),
        files("end")
    );
}

#[test]
fn the_import_benchmark_queues_everything_and_measures_heartbeats() {
    let out = Command::new(swarm_bin())
        .args(["bench", "import", "--packages", "6000", "--batch", "500"])
        .args(["--one-into", "1000", "--drones", "2", "--baseline-s", "1"])
        .args(["--beat-ms", "20", "--rounds", "3", "--reader-ms", "100"])
        .args(["--repeat", "2", "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("run swarm bench import");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["errors"], json!(0), "{v}");
    assert_eq!(v["posts"], json!(12), "{v}");
    assert_eq!(v["rounds"], json!(3), "{v}");
    // Two runs, each with its own figures; the heartbeats pool both.
    let runs = v["runs"].as_array().cloned().unwrap_or_default();
    assert_eq!(runs.len(), 2, "{v}");
    for r in &runs {
        assert!(r["import_s"].as_f64().is_some_and(|s| s > 0.0), "{v}");
        assert!(r["heartbeat_p99_ms"]["importing"].as_f64().is_some(), "{v}");
    }
    for (window, key) in [("baseline", "quiet"), ("during_import", "importing")] {
        let each: Vec<u64> = runs
            .iter()
            .map(|r| r["heartbeat_samples"][key].as_u64().unwrap_or(0))
            .collect();
        assert!(each.iter().all(|n| *n > 0), "{key}: {v}");
        assert_eq!(
            v["heartbeat_ms"][window]["samples"].as_u64(),
            Some(each.iter().sum()),
            "the {window} figures pool every run: {v}"
        );
    }
    // Every round imports: the posts are sliced, not all sent in the first.
    assert_eq!(v["posts_per_round"], json!([4, 4, 4]), "{v}");
    assert!(v["settle_s"].as_f64().is_some(), "{v}");
    // Quiet windows of even rounds (0, 2) and odd ones (1) both measured.
    let halves = v["heartbeat_ms"]["quiet_even_odd_rounds_p99"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(halves.len(), 2, "{v}");
    assert!(
        halves
            .iter()
            .all(|half| half.as_f64().is_some_and(|ms| ms > 0.0)),
        "{v}"
    );
    assert!(v["one_ms"]["p50"].as_f64().is_some(), "{v}");
    // The reader read through the run, and its reads were answered.
    assert!(
        v["reader"]["ms"]["samples"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
    for window in ["baseline", "during_import", "settling"] {
        assert!(
            v["heartbeat_ms"][window]["samples"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{window}: {v}"
        );
    }
    // Issue 14's targets, judged by the benchmark itself: p99 during / before.
    let targets = &v["targets"];
    assert!(
        targets["heartbeat_p99_during_over_before"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{v}"
    );
    for key in [
        "import_under_10_s",
        "one_into_under_5_ms",
        "heartbeat_p99_unchanged",
    ] {
        assert!(targets[key].is_boolean(), "{key}: {v}");
    }
    let verdict = targets["heartbeat_p99_verdict"].as_str();
    assert!(
        matches!(verdict, Some("met" | "not met" | "inconclusive")),
        "{v}"
    );
    assert_eq!(
        targets["heartbeat_p99_unchanged"].as_bool(),
        Some(verdict == Some("met")),
        "{v}"
    );
    // The server's side of each window, from its own histograms: every
    // heartbeat counted in a window waited for the writer once, in the drone lane.
    for (window, beats) in [("quiet", "baseline"), ("importing", "during_import")] {
        let side = &v["server_ms"][window];
        let waits = side["writer_wait_drone"]["count"].as_f64().unwrap_or(0.0);
        assert!(waits > 0.0, "{window}: {v}");
        assert!(
            side["writer_wait_drone"]["p99"].as_f64().is_some(),
            "{window}: {v}"
        );
        assert!(
            side["fsync"]["count"].as_f64().is_some_and(|n| n > 0.0),
            "{window}: {v}"
        );
        // Heartbeats that start in a window are counted there by the client;
        // the server counts the requests it took in it: about as many.
        let counted = v["heartbeat_ms"][beats]["samples"].as_f64().unwrap_or(0.0);
        assert!(
            waits >= counted * 0.5 && waits <= counted * 2.0 + 10.0,
            "{window}: {waits} drone waits against {counted} heartbeats: {v}"
        );
        // And the server timed each of them whole, no less than its wait.
        let timed = &side["request_register"];
        let requests = timed["count"].as_f64().unwrap_or(0.0);
        assert!(
            requests >= counted * 0.5 && requests <= counted * 2.0 + 10.0,
            "{window}: {requests} heartbeats timed against {counted}: {v}"
        );
        let (whole, wait) = (
            timed["p50"].as_f64(),
            side["writer_wait_drone"]["p50"].as_f64(),
        );
        assert!(
            whole.zip(wait).is_some_and(|(whole, wait)| whole >= wait),
            "{window}: a heartbeat's whole time under its wait: {v}"
        );
    }
}

/// Another process reading the store while the server writes (`swarm export`, which says it
/// works while the server runs, or the `sqlite3` tool) must not take the server down. SQLite
/// marks "a connection is open" with a lock on `swarm.db-shm`; POSIX drops every lock a
/// process holds on a file when it closes any descriptor of that file, and the checkpoint
/// thread opened and closed `-shm` after every commit to read its header. The next reader then
/// took itself for the first and reset `-shm` while the server, which maps it, was writing:
/// SIGBUS (h28: 3 of 4 runs with a reader every 2 s).
#[test]
fn readers_in_other_processes_do_not_take_the_running_server_down() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut s = Server::start(dir.path(), &[]);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let written = std::sync::atomic::AtomicU64::new(0);
    let exports = std::thread::scope(|scope| {
        // Writes all along, so the server is in a transaction when a reader opens.
        let writer = scope.spawn(|| {
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 20_000 {
                let atom = format!("=app-misc/busy{n}-1");
                let (code, _) = s.admin_post("/api/v1/queue", &json!({ "packages": [atom] }));
                if code != 200 {
                    break;
                }
                n += 1;
                written.store(n, std::sync::atomic::Ordering::SeqCst);
            }
        });
        let mut exports = Vec::new();
        for _ in 0..12 {
            std::thread::sleep(std::time::Duration::from_millis(300));
            let out = Command::new(swarm_bin())
                .args(["export", "--data-dir"])
                .arg(dir.path())
                .stdin(Stdio::null())
                .output()
                .expect("run swarm export");
            exports.push(out.status.success());
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = writer.join();
        exports
    });
    let gone = s.child.try_wait().expect("wait");
    assert_eq!(
        gone, None,
        "the server ended while other processes read its store"
    );
    assert!(exports.iter().all(|ok| *ok), "exports: {exports:?}");
    let n = written.load(std::sync::atomic::Ordering::SeqCst);
    let (_, status) = s.get("/api/v1/status");
    assert_eq!(status["total"], json!(n), "{status}");
}

/// A file-size limit (ulimit -f) met while the store opens fails the open with a message that
/// names it; SIGXFSZ killed the server there without a word (h38: an upgrade's copy of the store).
#[test]
fn a_file_size_limit_met_while_the_store_opens_is_a_refused_start_not_a_silent_death() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let out = Command::new("sh")
        .arg("-c")
        .arg("ulimit -f 8; exec \"$0\" serve --listen 127.0.0.1:0 --data-dir \"$1\"")
        .arg(swarm_bin())
        .arg(&data)
        .env("SELF_HEAL_ENABLED", "false")
        .stdin(Stdio::null())
        .output()
        .expect("run swarm serve under ulimit -f");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{:?}: {stderr}", out.status);
    assert!(stderr.contains("cannot open the store"), "{stderr}");
    assert!(stderr.contains("ulimit -f"), "{stderr}");
}

/// A finished build the spool could not take is delivered from its own files; the agent told to
/// leave at once meanwhile keeps that build's directory and outcome record, says no goodbye (it
/// would give the lease back), and the next start delivers the build under its lease. Before,
/// the directory went with the agent and the goodbye gave the lease back: the package was built
/// a second time (h39, a review).
#[test]
fn a_build_the_spool_could_not_take_survives_an_agent_told_to_leave_at_once() {
    leave_at_once_while_the_spool_is_blocked("dev-libs/unspooled-1.0", "drone-u", false, false);
}

/// The same, when the builder's success could not be recorded either at first (a full disk
/// fails both): the record is written again before the agent leaves. Without it the next start
/// removed the directory as unfinished, and the goodbye had given the lease back (h40 F2).
#[test]
fn a_build_whose_first_record_failed_survives_an_agent_told_to_leave_at_once() {
    leave_at_once_while_the_spool_is_blocked("dev-libs/unrecorded-1.0", "drone-r", true, false);
}

/// The same, when the spool still cannot be written at the next start: the build is delivered
/// from its directory while the agent registers, its lease held. Before, the directory was kept
/// for yet another start, the server went on listing the lease, and the package was built
/// again (h40 F3).
#[test]
fn a_build_the_spool_still_cannot_take_at_the_next_start_is_delivered_from_its_directory() {
    leave_at_once_while_the_spool_is_blocked("dev-libs/stillblocked-1.0", "drone-s", false, true);
}

/// Builds `atom` on agent `name` with its spool and the server's staging blocked (and, with
/// `block_record`, its outcome record's first write), sends three SIGTERMs while the agent
/// delivers it from its build directory, then unblocks the server (and, unless `still_blocked`,
/// the spool) and starts the agent again: the build is delivered once, under its first lease.
fn leave_at_once_while_the_spool_is_blocked(
    atom: &str,
    name: &str,
    block_record: bool,
    still_blocked: bool,
) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (server, mut drone, sizes) = start_one_build(dir.path(), atom, name, 30, &[]);
    let lease = queue_status(&server, &format!("={atom}"))["lease"]
        .as_u64()
        .expect("the build's lease");
    // The spool cannot be written (a file in its place), and the server
    // cannot store the package (507, retried).
    let work = dir.path().join(name);
    let spool = work.join("spool");
    let _ = std::fs::remove_dir_all(&spool);
    std::fs::write(&spool, b"in the way").expect("block the spool");
    let blocked = server.data_dir.join("staging/dev-libs");
    let _ = std::fs::remove_dir_all(&blocked);
    std::fs::write(&blocked, b"in the way").expect("block the category dir");
    // The record's temporary file cannot be made: a directory in its place.
    let record_block = block_record.then(|| {
        let build_dir = std::fs::read_dir(work.join("builds"))
            .expect("builds")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir())
            .expect("the build's directory");
        let block = build_dir.join("outcome.json.tmp");
        std::fs::create_dir(&block).expect("block the record");
        block
    });
    let log = drone.log.clone();
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(60, "the unspooled upload to be retried", || {
        let text = read_log();
        text.contains("cannot spool the finished build") && text.contains("artifact upload failed")
    });
    // The server says it cannot store uploads (h41 F5: health was 200 through every 507).
    let (code, health) = server.get("/api/v1/health");
    assert_eq!(code, 503, "{health}");
    assert_eq!(health["staging_writable"], false, "{health}");
    assert_eq!(health["store_writable"], true, "{health}");
    assert!(
        health["reason"]
            .as_str()
            .is_some_and(|r| r.contains("staging area cannot be written")),
        "{health}"
    );
    if let Some(block) = record_block {
        assert!(
            read_log().contains("cannot record the build's success"),
            "{}",
            read_log()
        );
        std::fs::remove_dir(&block).expect("unblock the record");
    }
    for _ in 0..3 {
        drone.signal(rustix::process::Signal::TERM);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    assert_eq!(drone.wait_exit(30), Some(0), "{}", read_log());
    assert!(
        read_log().contains("not telling the server this drone stopped"),
        "{}",
        read_log()
    );
    if !still_blocked {
        std::fs::remove_file(&spool).expect("unblock the spool");
    }
    std::fs::remove_file(&blocked).expect("unblock the category dir");
    wait_until(
        10,
        "health to turn back once staging can be written",
        || server.get("/api/v1/health").0 == 200,
    );
    let env = [("SWARM_STANDIN_SIZES", sizes.as_str())];
    let drone = Drone::start(&server, dir.path(), name, &DRONE_TOKEN, &env);
    server.wait_for(60, "the build to be delivered", |s| {
        s["counts"]["built"] == 1
    });
    let (builds, history) = builds_of(&server, atom);
    assert_eq!(
        builds,
        [(Some("success".into()), Some(lease))],
        "built once, under its lease: {history}\n{}",
        drone.log_text()
    );
    assert!(
        drone
            .log_text()
            .contains("spooling it now instead of building it again"),
        "{}",
        drone.log_text()
    );
    // Under its lease and not built again: a server that still lists the lease for this drone
    // gives it out again, and history shows the second build as the one success.
    assert!(
        !drone.log_text().contains("build starts"),
        "{}",
        drone.log_text()
    );
    if still_blocked {
        assert!(
            drone
                .log_text()
                .contains("delivering it from its build directory"),
            "{}",
            drone.log_text()
        );
        wait_until(30, "the delivered build's directory to go", || {
            std::fs::read_dir(work.join("builds"))
                .map(|d| d.flatten().all(|e| !e.path().join("outcome.json").exists()))
                .unwrap_or(true)
        });
    }
}

/// A builder that exits 0 a moment before the agent is told to leave at once (three signals):
/// the agent's runner looks at its builder every 100 ms, so the job may not have seen the end
/// when the third signal comes. The agent waits for it, keeps the build (spooled, no goodbye)
/// and the next start delivers it under its lease, without building it again. Before, the
/// goodbye went out first and gave the lease back, the build's record was written after it,
/// and the package was built a second time (h45 F2).
#[test]
fn a_build_that_ends_as_the_agent_is_told_to_leave_at_once_is_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = Server::start(
        &dir.path().join("server"),
        &[("SWARM_DRONE_TOKEN", "drone-secret")],
    );
    let atom = "dev-libs/lastmoment-1.0";
    let (code, v) = server.admin_post(
        "/api/v1/queue",
        &json!({ "packages": [format!("={atom}")] }),
    );
    assert_eq!(code, 200, "{v}");
    let builder = dir.path().join("last-moment.sh");
    // The signals come from a process outside the builder's group (which the agent kills),
    // 5 ms after the builder says it is about to exit 0.
    std::fs::write(
        &builder,
        "category=$1; pf=$2; agent=$PPID; mark=\"$PKGDIR/../ending\"\n\
         mkdir -p \"$PKGDIR/$category\"\n\
         \"$SWARM_BIN\" standin-gpkg \"$category/$pf\" \"$PKGDIR/$category/$pf.gpkg.tar\" || exit 1\n\
         setsid sh -c \"while [ ! -e '$mark' ]; do :; done; sleep 0.005; \
         kill -TERM $agent; sleep 0.01; kill -TERM $agent; sleep 0.01; kill -TERM $agent\" \
         </dev/null >/dev/null 2>&1 &\n\
         touch \"$mark\"\n\
         exit 0\n",
    )
    .expect("builder");
    let template = format!("sh {} {{category}} {{pf}} {{atom}}", builder.display());
    let bin = swarm_bin();
    let bin_env = [("SWARM_BIN", bin.to_str().expect("utf-8 path"))];
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "drone-l",
        &["--builder", &template, DRONE_TOKEN[0], DRONE_TOKEN[1]],
        &bin_env,
    );
    assert_eq!(drone.wait_exit(60), Some(0), "{}", drone.log_text());
    let first = drone.log_text();
    assert!(
        first.contains("leaving now"),
        "told to leave at once: {first}"
    );
    assert!(first.contains("got work lease=1"), "{first}");
    // Unless the job saw the end at once and delivered the build before the third signal (a
    // few per cent of runs), the build is kept, and no goodbye gives its lease back.
    if !first.contains("recorded=built") {
        assert!(
            first.contains("not telling the server this drone stopped"),
            "the build is kept, so no goodbye gives its lease back: {first}"
        );
        let lease = queue_status(&server, &format!("={atom}"))["lease"].as_u64();
        assert_eq!(lease, Some(1), "the lease is still the drone's: {first}");
    }
    // The next start delivers it (the stand-in would build it again, were it handed out).
    let drone = Drone::start(&server, dir.path(), "drone-l", &DRONE_TOKEN, &bin_env);
    server.wait_for(60, "the build to be delivered", |s| {
        s["counts"]["built"] == 1
    });
    let (builds, history) = builds_of(&server, atom);
    assert_eq!(
        builds,
        [(Some("success".into()), Some(1))],
        "built once, under its lease: {history}\n{first}\n{}",
        drone.log_text()
    );
    assert!(
        !drone.log_text().contains("build starts"),
        "{}",
        drone.log_text()
    );
}
