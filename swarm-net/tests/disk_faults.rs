//! A disk that hangs or fails an fsync of the WAL, or holds the writer
//! elsewhere: none of them fails a write, so health must notice the call
//! that does not return. The real server, in process, with the store's
//! fault injection (`SyncFaults`) acting on every WAL fsync made before
//! answering and on every commit.

mod common;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use swarm_net::server::{self, RunningServer, ServerOptions};
use swarm_store::{StoreOptions, SyncFaults};

fn start(dir: &std::path::Path, faults: Arc<SyncFaults>) -> RunningServer {
    server::start(ServerOptions {
        store: StoreOptions {
            fault_sync: Some(faults),
            ..StoreOptions::default()
        },
        ..common::options(dir, "hung-disk-token")
    })
    .expect("server starts")
}

fn get(url: &str) -> (u16, String) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(30))
        .build();
    match agent.get(url).call() {
        Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
        Err(ureq::Error::Status(code, r)) => (code, r.into_string().unwrap_or_default()),
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn health(base: &str) -> (u16, Value) {
    let (code, text) = get(&format!("{base}/api/v1/health"));
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn gauge(base: &str, name: &str) -> f64 {
    let (_, text) = get(&format!("{base}/metrics"));
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} "))?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in /metrics"))
}

/// Polls health until it answers `code`, and gives its body; fails at `deadline`.
fn health_turns(base: &str, code: u16, deadline: Instant) -> Value {
    loop {
        let (got, body) = health(base);
        if got == code {
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "health never turned {code}: {got} {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Health is 503 now, its reason says each of `words`, and `/metrics` agrees.
fn unhealthy_saying(base: &str, words: &[&str]) {
    let (code, body) = health(base);
    assert_eq!(code, 503, "{body}");
    let reason = body["reason"].as_str().unwrap_or_default();
    for w in words {
        assert!(reason.contains(w), "{w:?} not in {body}");
    }
    assert_eq!(gauge(base, "swarm_store_writable"), 0.0);
}

/// A server in a temporary data dir whose store's faults the test sets:
/// the dir (kept while the server runs), the faults, the server, its URL.
fn faulty_server() -> (tempfile::TempDir, Arc<SyncFaults>, RunningServer, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let faults = Arc::new(SyncFaults::default());
    let running = start(dir.path(), faults.clone());
    let base = format!("http://{}", running.addr());
    (dir, faults, running, base)
}

/// Registers a drone; its reply waits for the fsync that makes it durable.
fn register(base: &str, id: &str) -> u16 {
    let body = json!({"id": id, "name": id, "ip": "127.0.0.1",
        "capabilities": {"cores": 4, "ram_gb": 8}});
    match ureq::post(&format!("{base}/api/v1/register")).send_json(body) {
        Ok(r) => r.status(),
        Err(ureq::Error::Status(code, _)) => code,
        Err(e) => panic!("register: {e}"),
    }
}

/// One kind of hang (`knob` of the fault injection): health stays 200 while
/// it is short, turns 503 with `reason` once it has lasted 10 s, shows it
/// in the `in_flight` gauge (and not in `not_in_flight`), keeps the drone's
/// registration it holds unanswered, and turns back once it ends; `counter`
/// then counts it, for alerts whose scrapes missed it.
struct Hang {
    knob: fn(&SyncFaults) -> &AtomicU64,
    reason: &'static str,
    in_flight: &'static str,
    not_in_flight: Option<&'static str>,
    counter: &'static str,
}

fn health_follows(hang: Hang) {
    let (_dir, faults, running, base) = faulty_server();
    assert_eq!(health(&base).0, 200);
    assert!(gauge(&base, hang.in_flight) < 1.0);

    // The disk stops answering: a drone's registration waits on it.
    (hang.knob)(&faults).store(60_000, Ordering::SeqCst);
    let hung_at = Instant::now();
    let register = {
        let base = base.clone();
        std::thread::spawn(move || register(&base, "hung-0001"))
    };
    // A slow disk is not a hung one: health stays 200 for a while.
    std::thread::sleep(Duration::from_secs(3));
    let (code, body) = health(&base);
    assert_eq!(code, 200, "3 s into the hang: {body}");
    let body = health_turns(&base, 503, hung_at + Duration::from_secs(30));
    assert!(hung_at.elapsed() >= Duration::from_secs(10), "{body}");
    assert_eq!(body["store_writable"], json!(false), "{body}");
    unhealthy_saying(&base, &[hang.reason]);
    assert!(gauge(&base, hang.in_flight) >= 10.0);
    if let Some(other) = hang.not_in_flight {
        assert_eq!(gauge(&base, other), 0.0, "{other}");
    }
    assert!(!register.is_finished(), "answered before the disk did");

    // The disk answers again: the registration is acknowledged, health turns back.
    (hang.knob)(&faults).store(0, Ordering::SeqCst);
    assert_eq!(register.join().expect("register thread"), 200);
    health_turns(&base, 200, Instant::now() + Duration::from_secs(10));
    // A step or an fsync for the reads above may be running: under a second.
    assert!(gauge(&base, hang.in_flight) < 1.0);
    assert_eq!(gauge(&base, "swarm_store_writable"), 1.0);
    assert_eq!(gauge(&base, hang.counter), 1.0);
    running.shutdown();
}

#[test]
fn health_is_503_while_an_fsync_hangs_and_turns_back_when_it_returns() {
    health_follows(Hang {
        knob: |f| &f.hang_ms,
        reason: "an fsync of the WAL has not returned",
        in_flight: "swarm_store_fsync_in_flight_seconds",
        // The writer may fsync inline, and is then held too.
        not_in_flight: None,
        counter: "swarm_store_fsyncs_hung_total",
    });
}

#[test]
fn health_is_503_while_the_writer_is_held_outside_an_fsync() {
    // A commit's write is held (a checkpoint, a throttled write()): no fsync runs.
    health_follows(Hang {
        knob: |f| &f.commit_hang_ms,
        reason: "the writer has been on one step",
        in_flight: "swarm_writer_busy_seconds",
        not_in_flight: Some("swarm_store_fsync_in_flight_seconds"),
        counter: "swarm_writer_stalls_total",
    });
}

#[test]
fn a_writer_that_panics_turns_health_503_and_tells_the_server_s_owner() {
    let (_dir, faults, running, base) = faulty_server();
    assert_eq!(register(&base, "before-0001"), 200);
    assert_eq!(running.thread_failure(), None);

    // A bug on the writer's thread: its request is answered with an error, not left to time out.
    faults.commit_panic.store(true, Ordering::SeqCst);
    let asked = Instant::now();
    assert_eq!(register(&base, "panic-0001"), 503);
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "waited for a dead writer"
    );
    // The error reaches the client as the writer unwinds, a moment before the thread records it.
    health_turns(&base, 503, Instant::now() + Duration::from_secs(5));
    unhealthy_saying(&base, &["writer thread panicked", "restart"]);
    // Its owner (`swarm serve`) learns why, to exit for its service manager.
    let why = running.thread_failure().expect("the writer's failure");
    assert!(
        why.contains("injected by SyncFaults::commit_panic"),
        "{why}"
    );
    // Later requests are refused at once, and the server still shuts down.
    assert_eq!(register(&base, "after-0001"), 503);
    running.shutdown();
}

#[test]
fn a_failed_fsync_answers_with_an_error_and_health_stays_503_until_a_restart() {
    let (dir, faults, running, base) = faulty_server();
    assert_eq!(register(&base, "before-0001"), 200);
    assert_eq!(health(&base).0, 200);

    // The disk loses a write: the request it covered is not acknowledged.
    faults.fail.store(true, Ordering::SeqCst);
    assert_eq!(register(&base, "lost-0001"), 503);
    unhealthy_saying(&base, &["fsync of the WAL failed", "restart"]);

    // Later fsyncs work, but the log may have a hole: health stays 503.
    faults.fail.store(false, Ordering::SeqCst);
    assert_eq!(register(&base, "after-0001"), 200);
    let (code, body) = health(&base);
    assert_eq!(code, 503, "a failed fsync forgotten: {body}");

    // A restart checks the log against what was acknowledged, and health is 200 again.
    running.shutdown();
    let running = start(dir.path(), Arc::new(SyncFaults::default()));
    let base = format!("http://{}", running.addr());
    let (code, body) = health(&base);
    assert_eq!(code, 200, "{body}");
    let (_, drones) = get(&format!("{base}/api/v1/nodes"));
    for id in ["before-0001", "after-0001"] {
        assert!(
            drones.contains(id),
            "{id} acknowledged, then lost: {drones}"
        );
    }
    running.shutdown();
}

/// A store-id file that cannot be written takes the refusal of an older copy of the database put
/// back, not the server's work: health stays 200 with a warning saying so, `/metrics`' gauge is
/// 0, and both turn back once a record works (h44 F4: only the log said it).
#[test]
fn a_store_id_file_that_cannot_be_written_is_a_warning_until_it_can() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = server::start(ServerOptions {
        store: StoreOptions {
            reached_every: Duration::ZERO,
            ..StoreOptions::default()
        },
        ..common::options(dir.path(), "id-file-token")
    })
    .expect("server starts");
    let base = format!("http://{}", running.addr());
    let (code, body) = health(&base);
    assert_eq!((code, &body["warnings"]), (200, &json!([])), "{body}");
    assert_eq!(gauge(&base, "swarm_store_id_file_current"), 1.0);
    let id_file = dir.path().join("swarm.store-id");
    std::fs::remove_file(&id_file).expect("remove the store-id file");
    std::fs::create_dir(&id_file).expect("a directory in its place");
    let warned = |want: bool| {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut i = 0;
        loop {
            i += 1;
            assert_eq!(register(&base, &format!("d{want}{i}")), 200);
            let (code, body) = health(&base);
            assert_eq!(code, 200, "{body}");
            let warnings = body["warnings"].as_array().cloned().unwrap_or_default();
            if warnings.is_empty() != want {
                return (warnings, gauge(&base, "swarm_store_id_file_current"));
            }
            assert!(Instant::now() < deadline, "health never changed: {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let (warnings, current) = warned(true);
    let text = warnings[0].as_str().unwrap_or_default();
    assert!(
        text.contains("store-id")
            && text.contains("directory")
            && text.contains("next start")
            && text.contains("older copy"),
        "{text}"
    );
    assert_eq!(current, 0.0);
    std::fs::remove_dir(&id_file).expect("the directory moved away");
    let (_, current) = warned(false);
    assert_eq!(current, 1.0);
    assert!(std::fs::read_to_string(&id_file)
        .expect("the store-id file is back")
        .contains("reached seq"));
}
