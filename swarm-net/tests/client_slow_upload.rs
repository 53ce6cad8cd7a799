//! An upload may take longer than a call's timeout as long as its body
//! keeps moving: an overall timeout failed every upload slower than 30 s,
//! even one the server then stored, and the agent retried it for ever (h21:
//! 48 MiB at 0.7 MB/s). A stall still fails the call (per read and write).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use swarm_net::client::drone::Binding;
use swarm_net::client::Client;

/// Takes one upload of at least `body` bytes at about `rate` bytes a
/// second, then answers it as the server does; returns the bytes it read.
fn slow_reader(rate: usize, body: usize) -> (String, std::thread::JoinHandle<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        // Small reads keep the kernel's buffers from taking the body at once.
        let mut buf = vec![0u8; rate / 20];
        let mut got = 0;
        let mut tail = Vec::new();
        // The body comes chunked (a reader of unknown length): it ends with
        // the last chunk's `0\r\n\r\n`.
        while got < body || !tail.ends_with(b"0\r\n\r\n") {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            got += n;
            tail.extend_from_slice(&buf[..n]);
            let keep = tail.len().saturating_sub(8);
            tail.drain(..keep);
            std::thread::sleep(Duration::from_millis(50));
        }
        let reply = br#"{"status":"stored","path":"dev-libs/a-1.gpkg.tar","size":1,"sha256":"00"}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(reply);
        got
    });
    (url, server)
}

#[test]
fn an_upload_longer_than_the_call_timeout_still_lands() {
    // 3 MiB at about 1 MiB a second against a 1 s timeout per call.
    let (url, server) = slow_reader(1 << 20, 3 << 20);
    let client = Client::new(url, Duration::from_secs(1));
    let body = vec![7u8; 3 << 20];
    let started = Instant::now();
    let reply = client
        .put_artifact_for_lease(
            "dev-libs",
            "a-1.gpkg.tar",
            body.as_slice(),
            &"0".repeat(64),
            &Binding::default(),
        )
        .expect("a slow upload that keeps moving lands");
    assert_eq!(reply.status, "stored");
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the upload outlasted the call timeout, as the test means it to"
    );
    assert!(server.join().expect("server") >= 3 << 20);
}

/// A server that takes one request's head (and whatever else one read gets) and never answers,
/// until the client gave up (a send on the sender) or 60 s passed.
fn silent_server() -> (
    String,
    std::sync::mpsc::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        let _ = done_rx.recv_timeout(Duration::from_secs(60));
    });
    (url, done_tx, server)
}

/// Runs `what` against a server that never answers, with a 2 s call timeout: it fails as a
/// transport failure, within 30 s (not the bulk agent's ten-minute answer wait).
fn fails_against_silence(
    what: &str,
    call: impl FnOnce(&Client) -> Result<(), swarm_net::client::ClientError>,
) {
    let (url, done_tx, server) = silent_server();
    let client = Client::new(url, Duration::from_secs(2));
    let started = Instant::now();
    let e = call(&client).expect_err("nobody answered");
    let waited = started.elapsed();
    let _ = done_tx.send(());
    server.join().expect("server");
    assert!(e.is_transport(), "{what}: {e}");
    assert!(
        waited < Duration::from_secs(30),
        "the {what} waited {waited:?} for an answer"
    );
}

/// An upload check has no body to wait for: a server that takes it and never answers fails it
/// within the call's timeout, not the ten minutes an uploaded package's answer may take (h36
/// F3: one stalled check held a drone's delivery for 587 s after the server recovered).
#[test]
fn an_upload_check_nobody_answers_fails_within_the_call_timeout() {
    fails_against_silence("check", |client| {
        client
            .check_artifact_for_lease(
                "dev-libs",
                "a-1.gpkg.tar",
                1 << 20,
                &"0".repeat(64),
                &Binding::default(),
            )
            .map(|_| ())
    });
}

/// A build log (at most 1 MiB of text, gzipped) is no package to validate: a server that takes
/// it and never answers fails it within the call's timeout. On the bulk agent each try waited
/// ten minutes, three tries before a return was even sent (h39, a review).
#[test]
fn a_log_upload_nobody_answers_fails_within_the_call_timeout() {
    let gzip = vec![0x1fu8; 64 * 1024];
    fails_against_silence("log upload", |client| {
        client
            .put_log(7, "dev-libs/a-1", "drone-1", None, &gzip)
            .map(|_| ())
    });
}

/// A build log over a slow link may take longer than the call timeout to send, as long as it
/// keeps the server's slowest accepted rate: on a plain 30 s timeout a poorly compressible log
/// over 20 KiB/s timed out at every try and held its build's report for ever (h40).
#[test]
fn a_log_slower_than_the_call_timeout_still_lands() {
    let body = 192 * 1024;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        // About 64 KiB a second: the head, then the body by its Content-Length.
        let mut buf = vec![0u8; 3200];
        let mut got = Vec::new();
        loop {
            let n = conn.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                if got.len() >= end + 4 + body {
                    break;
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let reply = br#"{"status":"ok","lease":7,"bytes":1}"#;
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            reply.len()
        );
        let _ = conn.write_all(head.as_bytes());
        let _ = conn.write_all(reply);
    });
    let client = Client::new(url, Duration::from_secs(1));
    let gzip = vec![0x1fu8; body];
    let started = Instant::now();
    client
        .put_log(7, "dev-libs/a-1", "drone-1", None, &gzip)
        .expect("a slow log that keeps moving lands");
    assert!(
        started.elapsed() > Duration::from_secs(1),
        "the upload outlasted the call timeout, as the test means it to"
    );
    server.join().expect("server");
}
