//! End-to-end tests of issue 11: every attack runs against a real
//! `swarm serve` over 127.0.0.1 while a real `swarm drone` (stand-in
//! builder) builds a real package. Each test asserts the refusal AND that
//! the build finishes while the attack is on.

mod support;

use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};
use support::drone::Drone;
use support::Server;

/// Short front-door timeouts so each test takes seconds.
const SHORT_TIMEOUTS: [(&str, &str); 3] = [
    ("SWARM_HTTP_HEADER_TIMEOUT_S", "2"),
    ("SWARM_HTTP_IDLE_TIMEOUT_S", "1"),
    ("SWARM_HTTP_BODY_TIMEOUT_S", "1"),
];

const ATOM: &str = "=dev-libs/under-attack-1.0";

/// One package queued and a drone started to build it.
struct Build {
    drone: Drone,
}

impl Build {
    fn start(server: &Server, dir: &Path) -> Build {
        let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": [ATOM] }));
        assert_eq!(code, 200, "queue: {v}");
        Build {
            drone: Drone::start(server, dir, "honest", &[], &[]),
        }
    }

    /// Waits for the build to be counted, with its artifact in staging.
    fn finish(self, server: &Server) {
        server.wait_for(60, "the honest drone's build", |s| {
            s["counts"]["built"] == 1
        });
        let staged = server
            .data_dir
            .join("staging/dev-libs/under-attack-1.0.gpkg.tar");
        assert!(
            staged.exists(),
            "artifact staged; drone log:\n{}",
            self.drone.log_text()
        );
    }
}

fn connect(server: &Server) -> TcpStream {
    let s = TcpStream::connect(&server.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s
}

/// Reads whatever the server sends until it closes (or 10 s pass).
fn read_all(s: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Sends raw bytes on a new connection; the whole answer, as text.
fn raw(server: &Server, bytes: &[u8]) -> String {
    let mut s = connect(server);
    let _ = s.write_all(bytes);
    read_all(&mut s)
}

fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

/// `/api/v1/health` answers 200 (through ureq with a 5 s timeout).
fn assert_healthy(server: &Server) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let r = agent
        .get(&format!("{}/api/v1/health", server.url))
        .call()
        .expect("health answers during the attack");
    assert_eq!(r.status(), 200);
}

fn metric(server: &Server, line_prefix: &str) -> f64 {
    let (_, v) = server.get("/metrics");
    let text = v.as_str().unwrap_or_default().to_string();
    text.lines()
        .find_map(|l| {
            l.strip_prefix(line_prefix)
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(-1.0)
}

#[test]
fn stalled_bodies_get_408_and_neither_health_nor_a_build_waits_for_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &SHORT_TIMEOUTS);
    // The attack: headers and 3 bytes of a 100 KB body, then silence.
    let mut stalled: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(
                b"POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n{\"i",
            )
            .expect("send");
            s
        })
        .collect();
    let build = Build::start(&server, dir.path());
    assert_healthy(&server);
    for s in &mut stalled {
        let answer = read_all(s);
        assert_eq!(status_of(&answer), 408, "{answer}");
        assert!(answer.contains("timed out"), "{answer}");
    }
    assert_healthy(&server);
    build.finish(&server);
}

#[test]
fn huge_headers_get_431_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &SHORT_TIMEOUTS);
    let build = Build::start(&server, dir.path());
    // Four senders, each trying to push 64 MiB of one header.
    let addr = server.addr.clone();
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let addr = addr.clone();
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(&addr).expect("connect");
                s.set_read_timeout(Some(Duration::from_secs(10))).ok();
                s.set_write_timeout(Some(Duration::from_secs(10))).ok();
                let _ = s.write_all(b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ");
                let chunk = vec![b'a'; 1 << 20];
                let mut sent = 0usize;
                for _ in 0..64 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len();
                }
                (read_all(&mut s), sent)
            })
        })
        .collect();
    for t in senders {
        let (answer, sent) = t.join().expect("sender");
        assert!(sent < 64 << 20, "the server stopped reading the header");
        assert!(
            answer.is_empty() || status_of(&answer) == 431,
            "431 or a closed connection: {answer}"
        );
    }
    let big_url = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(20_000));
    let answer = raw(&server, big_url.as_bytes());
    assert_eq!(status_of(&answer), 414, "{answer}");
    let answer = raw(
        &server,
        format!(
            "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(32 * 1024)
        )
        .as_bytes(),
    );
    assert_eq!(status_of(&answer), 431, "{answer}");
    let rss_kb: u64 = std::fs::read_to_string(format!("/proc/{}/status", server.child.id()))
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next().and_then(|n| n.parse().ok()))
        .expect("VmRSS");
    assert!(
        rss_kb < 256 * 1024,
        "server RSS {rss_kb} KiB after 256 MiB of headers were offered"
    );
    assert_healthy(&server);
    build.finish(&server);
}

/// A keep-alive connection that made one request and then went quiet.
fn idle_connection(server: &Server) -> TcpStream {
    let mut s = connect(server);
    s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).expect("first answer");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    s
}

#[test]
fn idle_connections_are_closed_and_beyond_the_connection_bound_newcomers_take_their_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = SHORT_TIMEOUTS.to_vec();
    env.push(("SWARM_HTTP_MAX_CONNECTIONS", "48"));
    let server = Server::start(&dir.path().join("server"), &env);
    // Keep-alive connections that made one request and then went quiet.
    let mut idle: Vec<TcpStream> = (0..40).map(|_| idle_connection(&server)).collect();
    // 20 more that never send a byte: beyond the bound of 48, each takes
    // the place of an idle one.
    let silent: Vec<TcpStream> = (0..20).map(|_| connect(&server)).collect();
    let answer = raw(
        &server,
        b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 200, "beyond the bound: {answer}");
    // The idle ones are closed by the server (made room, or idle timeout 1 s).
    let began = Instant::now();
    for s in &mut idle {
        let mut buf = [0u8; 64];
        assert_eq!(s.read(&mut buf).expect("closed, not timed out"), 0);
    }
    assert!(began.elapsed() < Duration::from_secs(9));
    drop(silent);
    let build = Build::start(&server, dir.path());
    // Attack again while the drone builds: 30 idle connections held open.
    let held: Vec<TcpStream> = (0..30).map(|_| connect(&server)).collect();
    assert_healthy(&server);
    build.finish(&server);
    drop(held);
    assert!(metric(&server, "swarm_http_evicted_total{state=\"idle\"}") >= 1.0);
}

/// A connection that sent the head of a `POST /api/v1/register` and the
/// first part of its body, the rest to come later.
fn start_slow_register(server: &Server, name: &str) -> (TcpStream, Vec<u8>) {
    let body = json!({ "name": name }).to_string().into_bytes();
    let mut s = connect(server);
    let head = format!(
        "POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).expect("send head");
    let (now, later) = body.split_at(body.len() / 2);
    s.write_all(now).expect("send half a body");
    (s, later.to_vec())
}

/// Registers `name` as a new drone would; it must be answered 200 within 2 s.
fn assert_registers_promptly(server: &Server, name: &str) {
    let began = Instant::now();
    let (code, v) = server.post("/api/v1/register", &json!({ "name": name }));
    assert_eq!(
        code, 200,
        "{name} registers while every place is taken: {v}"
    );
    let took = began.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "{name} registered after {took:?}"
    );
}

/// The server closed one of `conns` without an answer (well before any
/// timeout of its own) and answered none. Which one is not asked: the
/// oldest by the server's clock, and on a loaded machine the threads that
/// mark connections idle may do so out of the order the test made them
/// (CI once saw the second closed, not the first).
fn assert_one_closed_without_answer(conns: &[TcpStream], what: &str) {
    let until = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 512];
    loop {
        for (i, s) in conns.iter().enumerate() {
            s.set_nonblocking(true).expect("nonblocking");
            let seen = s.peek(&mut buf);
            s.set_nonblocking(false).expect("blocking");
            match seen {
                Ok(0) => return,
                Ok(n) => panic!(
                    "{what}: #{i} was answered: {}",
                    String::from_utf8_lossy(&buf[..n])
                ),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                // A reset is a close too.
                Err(_) => return,
            }
        }
        assert!(Instant::now() < until, "{what}: none was closed");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server has not closed `s` (nor answered on it).
fn assert_still_open(s: &TcpStream, what: &str) {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 512];
    match s.peek(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{what} was closed or answered: {other:?}"),
    }
    s.set_nonblocking(false).expect("blocking");
}

/// Waits until the server serves at most `n` connections.
fn wait_open_at_most(server: &Server, n: f64) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let open = metric(server, "swarm_http_connections_open ");
        if open <= n {
            return;
        }
        assert!(Instant::now() < until, "{open} connections still open");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The reviewer's attack, at a bound of 32 with the default timeouts (10 s
/// for headers, 60 s idle, so nothing here times out): every place held by
/// half-sent heads, then by idle keep-alive connections. A drone's
/// register is still answered 200 at once, because the oldest of them is
/// closed to make room. The oldest connection of all, in the middle of a
/// slow request body, is never the one closed; and when every place is
/// serving a request, only health is answered beyond the bound.
#[test]
fn idle_and_half_sent_connections_make_room_for_a_drone_but_a_request_in_progress_keeps_its_place()
{
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(
        &dir.path().join("server"),
        &[("SWARM_HTTP_MAX_CONNECTIONS", "32")],
    );
    let (mut patient, rest) = start_slow_register(&server, "patient");
    std::thread::sleep(Duration::from_millis(300));
    // 31 heads that never end: every place taken.
    let half: Vec<TcpStream> = (0..31)
        .map(|_| {
            let mut s = connect(&server);
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n")
                .expect("send");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_registers_promptly(&server, "newcomer-1");
    assert_still_open(&patient, "the request in progress");
    assert_one_closed_without_answer(&half, "the half-sent heads");
    drop(half);
    wait_open_at_most(&server, 2.0);
    // 31 keep-alive connections that made one request and went quiet.
    let idle: Vec<TcpStream> = (0..31).map(|_| idle_connection(&server)).collect();
    std::thread::sleep(Duration::from_millis(300));
    assert_registers_promptly(&server, "newcomer-2");
    assert_still_open(&patient, "the request in progress");
    assert_one_closed_without_answer(&idle, "the idle connections");
    drop(idle);
    wait_open_at_most(&server, 2.0);
    // Every place serving a request: nothing to close, so beyond the bound
    // only health is answered.
    let mut busy: Vec<(TcpStream, Vec<u8>)> = (0..31)
        .map(|i| start_slow_register(&server, &format!("slow-{i}")))
        .collect();
    fill_with_requests_in_progress(&server, &mut busy);
    let answer = raw(
        &server,
        b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    // Answered, and with the truth: nothing else is served now.
    assert_eq!(status_of(&answer), 503, "health beyond the bound: {answer}");
    assert!(answer.contains("\"connections_full\":true"), "{answer}");
    assert_still_open(&patient, "the request in progress");
    drop(busy);
    // The request in progress since before the attack was never closed.
    patient.write_all(&rest).expect("send the rest of the body");
    let answer = read_all(&mut patient);
    assert_eq!(status_of(&answer), 200, "the slow register: {answer}");
    wait_open_at_most(&server, 1.0);
    assert!(metric(&server, "swarm_http_evicted_total{state=\"head\"}") >= 1.0);
    assert!(metric(&server, "swarm_http_evicted_total{state=\"idle\"}") >= 1.0);
    assert!(metric(&server, "swarm_http_refused_total{reason=\"busy\"}") >= 1.0);
}

/// A connection whose socket takes in at most a few KiB unread, so the
/// server's writes to it make progress only as fast as it reads.
fn small_window_connection(server: &Server) -> TcpStream {
    use rustix::net::{sockopt, AddressFamily, SocketType};
    let addr: std::net::SocketAddr = server.addr.parse().expect("server address");
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None).expect("socket");
    sockopt::set_socket_recv_buffer_size(&fd, 2048).expect("SO_RCVBUF");
    rustix::net::connect(&fd, &addr).expect("connect");
    TcpStream::from(fd)
}

/// Reads `s` a few hundred bytes at a time, about 1 KiB a second, until
/// the server closes it or `stop` is set.
fn trickle_read(mut s: TcpStream, stop: &std::sync::atomic::AtomicBool) {
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut buf = [0u8; 256];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(250)),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// h110: clients that asked for replies and read them at a trickle held
/// every place as long as they liked (a place is never given to another
/// while it answers, and each write's timeout started over with every
/// partial send), so every drone got 503 while health said 200. Replies must
/// now be read at `min_reply_rate`, give or take `write_timeout_s`: the slow
/// readers are reset, or closed to make room once behind, and drones get in.
#[test]
fn clients_reading_replies_at_a_trickle_lose_their_places() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = SHORT_TIMEOUTS.to_vec();
    env.extend([
        ("SWARM_HTTP_MAX_CONNECTIONS", "4"),
        ("SWARM_HTTP_WRITE_TIMEOUT_S", "2"),
    ]);
    let server = Server::start(&dir.path().join("server"), &env);
    // Each asks for a 51 KB dashboard file 200 times over, pipelined.
    let ask = b"GET /ui/vendor/uPlot.iife.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".repeat(200);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let mut s = small_window_connection(&server);
            s.write_all(&ask).expect("send the requests");
            // Being answered: its place serves a request.
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut first = [0u8; 12];
            s.read_exact(&mut first).expect("the first answer begins");
            assert_eq!(&first, b"HTTP/1.1 200");
            let stop = stop.clone();
            std::thread::spawn(move || trickle_read(s, &stop))
        })
        .collect();
    let _stop_on_drop = StopOnDrop(stop.clone());
    register_once_there_is_room(&server, 30);
    // Every reader's place is given back: reset once behind by more than the
    // grace, or closed to make room while behind (or between two of its
    // pipelined requests).
    wait_places_given_back(&server);
    let cut = metric(&server, "swarm_http_reply_timeouts_total ")
        + metric(&server, "swarm_http_evicted_total{state=\"behind\"} ");
    assert!(cut >= 1.0, "{cut}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for r in readers {
        r.join().expect("reader");
    }
}

/// A drone's register on a new connection, asked every 200 ms until it is answered 200
/// (503 meanwhile: every place taken), within `secs`.
fn register_once_there_is_room(server: &Server, secs: u64) {
    let register = b"POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 15\r\nConnection: close\r\n\r\n{\"name\":\"late\"}";
    let until = Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = raw(server, register);
        if status_of(&answer) == 200 {
            return;
        }
        assert_eq!(status_of(&answer), 503, "{answer}");
        assert!(
            Instant::now() < until,
            "no place for a drone after {secs} s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// A download of a 64 MiB file on the binhost (made if missing) that has begun and of
/// which the client reads nothing more.
fn stalled_download(server: &Server) -> TcpStream {
    let big = server.data_dir.join("binhost/big.bin");
    if !big.exists() {
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(64 << 20))
            .expect("a 64 MiB file on the binhost");
    }
    let mut s = small_window_connection(server);
    s.write_all(b"GET /binhost/big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .expect("ask");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut first = [0u8; 12];
    s.read_exact(&mut first).expect("the answer begins");
    assert_eq!(&first, b"HTTP/1.1 200");
    s
}

/// Waits until the server serves at most the one connection asking.
fn wait_places_given_back(server: &Server) {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let open = metric(server, "swarm_http_connections_open ");
        if (0.0..=1.0).contains(&open) {
            return;
        }
        assert!(Instant::now() < until, "{open} connections still open");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// h111 F1: one deadline per reply, of its size at the rate, let a client that
/// asked for a large package and read nothing keep its place for hours (a
/// 64 MiB file: 68 minutes). The connection's pace runs dry within twice the
/// grace of the kernel's buffers filling, and the connection is reset.
#[test]
fn a_client_that_stops_reading_a_large_download_is_reset_within_the_grace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let env = [("SWARM_HTTP_WRITE_TIMEOUT_S", "2")];
    let server = Server::start(&dir.path().join("server"), &env);
    let s = stalled_download(&server);
    // Read nothing more: reset well within a minute, not after size / rate.
    let until = Instant::now() + Duration::from_secs(45);
    while metric(&server, "swarm_http_reply_timeouts_total ") < 1.0 {
        assert!(
            Instant::now() < until,
            "a client reading nothing of a 64 MiB download still holds its place after 45 s"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_places_given_back(&server);
    drop(s);
}

/// h112 M1: a client that reads nothing of a large download was marked as behind only as
/// its write gave up, so until its reset (twice the grace) its place could not make room,
/// and clients that reconnect at once held every place. It is marked once it has used half
/// its grace, and from then on a newcomer takes its place.
#[test]
fn a_client_reading_nothing_makes_room_for_a_drone_before_its_reset() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Reset after 40 s of a blocked write (twice the grace); behind after 30 s.
    let env = [
        ("SWARM_HTTP_WRITE_TIMEOUT_S", "20"),
        ("SWARM_HTTP_MAX_CONNECTIONS", "2"),
    ];
    let server = Server::start(&dir.path().join("server"), &env);
    let _stalled: Vec<TcpStream> = (0..2).map(|_| stalled_download(&server)).collect();
    register_once_there_is_room(&server, 60);
    // Room was made by closing a stalled download, not by its reset 10 s later.
    assert!(metric(&server, "swarm_http_evicted_total{state=\"behind\"} ") >= 1.0);
    assert_eq!(metric(&server, "swarm_http_reply_timeouts_total "), 0.0);
}

/// Stops the trickling readers on drop, so a failed assertion ends them.
struct StopOnDrop(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Waits until every place is serving a request, which a status request
/// beyond the bound shows by its 503. On a loaded machine the server may not
/// have read a slow register's head yet, and a connection whose answer the
/// test has already read (the last /metrics poll, the last status request)
/// may hold its place a moment longer: then a slow register is closed to make
/// room (it was still a half-sent head) or refused (no place for it), and the
/// status request gets a place. Such slow registers are replaced and the
/// status asked again; no 503 within 20 s fails, as does any other answer.
fn fill_with_requests_in_progress(server: &Server, busy: &mut [(TcpStream, Vec<u8>)]) {
    let until = Instant::now() + Duration::from_secs(20);
    for round in 0.. {
        std::thread::sleep(Duration::from_millis(300));
        let answer = raw(
            server,
            b"GET /api/v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if status_of(&answer) == 503 {
            return;
        }
        assert_eq!(status_of(&answer), 200, "status beyond the bound: {answer}");
        assert!(
            Instant::now() < until,
            "every place still not serving a request after 20 s"
        );
        // The status request's own place is free once its thread ends.
        std::thread::sleep(Duration::from_millis(300));
        for (i, slot) in busy.iter_mut().enumerate() {
            if !still_waiting(&mut slot.0) {
                *slot = start_slow_register(server, &format!("slow-{round}-{i}"));
            }
        }
    }
}

/// A slow register the server still waits on; false if it was closed
/// without an answer or refused (503 busy, or 408 from an overflow place,
/// which waits less for a body); anything else fails.
fn still_waiting(s: &mut TcpStream) -> bool {
    s.set_nonblocking(true).expect("nonblocking");
    let mut buf = [0u8; 1];
    let waiting = match s.peek(&mut buf) {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => true,
        Ok(0) | Err(_) => false,
        Ok(_) => {
            s.set_nonblocking(false).expect("blocking");
            let answer = read_all(s);
            assert!(
                matches!(status_of(&answer), 503 | 408),
                "a slow register: {answer}"
            );
            false
        }
    };
    let _ = s.set_nonblocking(false);
    waiting
}

/// Sends SIGCONT on drop, so a failed assertion never leaves the server stopped.
struct Resume(rustix::process::Pid);

impl Drop for Resume {
    fn drop(&mut self) {
        let _ = rustix::process::kill_process(self.0, rustix::process::Signal::CONT);
    }
}

/// 300 connections arriving while the acceptor cannot take them (the
/// server stopped, as a busy acceptor is for a moment, e.g. when 200
/// stalled connections reconnect together): the kernel queues every one
/// for it. std's listen queue of 128 dropped the SYNs beyond it, and a
/// dropped SYN costs its client a second, /health included.
#[test]
fn a_burst_of_connections_the_acceptor_cannot_take_yet_is_queued_not_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &SHORT_TIMEOUTS);
    let addr: std::net::SocketAddr = server.addr.parse().expect("server address");
    let pid = rustix::process::Pid::from_child(&server.child);
    let resume = Resume(pid);
    rustix::process::kill_process(pid, rustix::process::Signal::STOP).expect("SIGSTOP");
    let mut burst: Vec<TcpStream> = (0..300)
        .map(|i| {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
                .unwrap_or_else(|e| {
                    panic!("connection {i} of the burst not established: {e} (its SYN was dropped: the listen queue is too short)")
                });
            s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .expect("send");
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            s
        })
        .collect();
    drop(resume);
    for (i, s) in burst.iter_mut().enumerate() {
        let answer = read_all(s);
        assert_eq!(status_of(&answer), 200, "connection {i}: {answer}");
    }
    assert_healthy(&server);
}

#[test]
fn invalid_utf8_unsupported_versions_and_duplicate_lengths_get_400() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &SHORT_TIMEOUTS);
    let build = Build::start(&server, dir.path());
    let cases: [(&[u8], &str); 6] = [
        (
            b"GET /api/v1/n\xff\xfedes HTTP/1.1\r\nHost: x\r\n\r\n",
            "not valid UTF-8",
        ),
        (
            b"GET /api/v1/nodes HTTP/1.1\r\nHost: \xc3\x28\r\n\r\n",
            "not valid UTF-8",
        ),
        (
            b"GET /api/v1/health HTTP/2.0\r\nHost: x\r\n\r\n",
            "unsupported HTTP version",
        ),
        (
            b"GET /api/v1/health HTTP/0.9\r\n\r\n",
            "unsupported HTTP version",
        ),
        (
            b"POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            "more than one Content-Length",
        ),
        (
            b"POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            "one framing",
        ),
    ];
    for (bytes, why) in cases {
        let answer = raw(&server, bytes);
        assert_eq!(
            status_of(&answer),
            400,
            "{}: {answer}",
            String::from_utf8_lossy(bytes)
        );
        assert!(answer.contains(why), "{why}: {answer}");
        assert!(answer.contains("Connection: close"), "{answer}");
    }
    // A JSON body that is not UTF-8 is refused by the parser, naming it.
    let (code, v) = support::request_raw(
        "POST",
        &format!("{}/api/v1/register", server.url),
        Some(b"{\"id\":\"x\xff\"}"),
        None,
        &[],
    );
    assert_eq!(code, 400, "{v}");
    assert_healthy(&server);
    build.finish(&server);
}

/// Enrols `name` through the admin endpoint; its token.
fn enroll(server: &Server, name: &str) -> String {
    let (code, v) = server.admin_post(&format!("/api/v1/nodes/{name}/enroll"), &json!({}));
    assert_eq!(code, 200, "enroll {name}: {v}");
    assert_eq!(v["name"], name);
    v["token"].as_str().expect("token").to_string()
}

/// A drone request with `token` (if any); any status is returned.
fn as_drone(
    server: &Server,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, serde_json::Value) {
    support::request_raw(
        method,
        &format!("{}{}", server.url, path),
        body,
        token,
        headers,
    )
}

/// An enrolled honest drone building a package that takes a few seconds,
/// started; returns (build, its lease).
fn enrolled_build(server: &Server, dir: &Path) -> (Build, u64) {
    let token = enroll(server, "honest");
    let token_file = dir.join("honest.token");
    std::fs::write(&token_file, &token).expect("token file");
    let sizes = dir.join("sizes");
    std::fs::write(&sizes, format!("{ATOM} 30\n")).expect("sizes");
    let (code, v) = server.admin_post("/api/v1/queue", &json!({ "packages": [ATOM] }));
    assert_eq!(code, 200, "queue: {v}");
    let drone = Drone::start(
        server,
        dir,
        "honest",
        &["--token-file", token_file.to_str().expect("utf-8 path")],
        &[("SWARM_STANDIN_SIZES", sizes.to_str().expect("utf-8 path"))],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, q) = server.get("/api/v1/queue?limit=10");
        let item = q["items"]
            .as_array()
            .and_then(|i| i.first())
            .cloned()
            .unwrap_or_default();
        if item["status"]["state"] == "assigned" {
            let lease = item["status"]["lease"].as_u64().expect("lease");
            return (Build { drone }, lease);
        }
        assert!(Instant::now() < deadline, "never assigned: {q}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_forged_upload_and_report_for_another_drones_lease_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let (build, lease) = enrolled_build(&server, dir.path());
    let mallory = enroll(&server, "mallory");
    let (code, v) = as_drone(
        &server,
        "POST",
        "/api/v1/register",
        Some(json!({"name": "mallory"}).to_string().as_bytes()),
        Some(&mallory),
        &[],
    );
    assert_eq!(code, 200, "mallory registers as itself: {v}");
    let path = "/api/v1/artifacts/dev-libs/under-attack-1.0.gpkg.tar";
    let junk = vec![0x5au8; 4096];
    let lease_s = lease.to_string();
    for (token, headers) in [
        (
            Some(mallory.as_str()),
            vec![("X-Swarm-Lease", lease_s.as_str())],
        ),
        (Some(mallory.as_str()), vec![]),
        (None, vec![("X-Swarm-Lease", lease_s.as_str())]),
    ] {
        let (code, v) = as_drone(&server, "PUT", path, Some(&junk), token, &headers);
        // Naming the lease, another enrolled drone is told the lease is not its own (409 on
        // X-Swarm-Lease, which an honest drone reads as "stop": h36 F4); nothing is stored.
        if token.is_some() && !headers.is_empty() {
            assert_eq!(
                (code, v["field"].as_str()),
                (409, Some("X-Swarm-Lease")),
                "forged upload refused: {v}"
            );
            continue;
        }
        assert!(
            code == 403 || code == 400,
            "forged upload refused: {code} {v}"
        );
    }
    for (token, body) in [
        (
            Some(mallory.as_str()),
            json!({"id": "honest", "package": ATOM, "status": "success"}),
        ),
        (
            Some(mallory.as_str()),
            json!({"id": "mallory", "package": ATOM, "status": "masked", "lease": lease}),
        ),
        (
            None,
            json!({"id": "honest", "package": ATOM, "status": "success"}),
        ),
    ] {
        let (code, v) = as_drone(
            &server,
            "POST",
            "/api/v1/complete",
            Some(body.to_string().as_bytes()),
            token,
            &[],
        );
        if body.get("lease").is_some() {
            assert_eq!(
                (code, v["field"].as_str()),
                (409, Some("lease")),
                "forged report refused: {body} -> {v}"
            );
            continue;
        }
        assert_eq!(code, 403, "forged report refused: {body} -> {v}");
    }
    build.finish(&server);
    let staged = std::fs::read(
        server
            .data_dir
            .join("staging/dev-libs/under-attack-1.0.gpkg.tar"),
    )
    .expect("staged");
    assert_ne!(staged, junk, "the staged package is the honest drone's");
}

#[test]
fn impersonation_and_hijack_by_re_registering_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let (build, _) = enrolled_build(&server, dir.path());
    let mallory = enroll(&server, "mallory");
    let register = |token: Option<&str>, body: serde_json::Value| {
        as_drone(
            &server,
            "POST",
            "/api/v1/register",
            Some(body.to_string().as_bytes()),
            token,
            &[],
        )
    };
    // Impersonation: another credential, or none, under the honest name.
    let (code, v) = register(Some(&mallory), json!({"name": "honest", "ip": "127.0.0.9"}));
    assert_eq!(code, 403, "{v}");
    let (code, v) = register(None, json!({"name": "honest"}));
    assert_eq!(code, 403, "{v}");
    let (code, v) = as_drone(
        &server,
        "GET",
        "/api/v1/work?id=honest",
        None,
        Some(&mallory),
        &[],
    );
    assert_eq!(code, 403, "{v}");
    // Hijack: the honest drone's machine id under another name.
    let (code, v) = register(None, json!({"name": "thief", "id": "test-machine-honest"}));
    assert_eq!(code, 403, "{v}");
    let (code, v) = register(Some("swd_0000"), json!({"name": "honest"}));
    assert_eq!(code, 401, "{v}");
    // Shadowing: another drone's name as one's own machine id would take
    // that drone's calls (by name) over and lock it out.
    let (code, v) = register(None, json!({"name": "plain"}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = register(Some(&mallory), json!({"name": "mallory", "id": "plain"}));
    assert_eq!(code, 409, "{v}");
    assert_eq!(v["field"], "id", "{v}");
    let (code, v) = register(None, json!({"name": "plain"}));
    assert_eq!(code, 200, "plain still registers: {v}");
    let (code, v) = as_drone(&server, "GET", "/api/v1/work?id=plain", None, None, &[]);
    assert!(code < 300, "plain still asks for work: {code} {v}");
    // The other way round: a new drone named like a v3 drone's machine id
    // would take the calls that name it by that id.
    let (code, v) = register(None, json!({"name": "lv", "id": "lv-mid"}));
    assert_eq!(code, 200, "{v}");
    let (code, v) = register(None, json!({"name": "lv-mid"}));
    assert_eq!(code, 409, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap_or("")
            .contains("machine id of the drone lv"),
        "{v}"
    );
    build.finish(&server);
    // A name that reads as the enrolled drone's in a list is not taken without a credential.
    for lookalike in ["HONEST", "Honest"] {
        let (code, v) = register(None, json!({ "name": lookalike }));
        assert_eq!(code, 403, "{lookalike}: {v}");
    }
    // Revoked: the honest token stops working at once.
    let token = std::fs::read_to_string(dir.path().join("honest.token")).expect("token");
    let (code, _) = server.admin_post("/api/v1/nodes/honest/revoke", &json!({}));
    assert_eq!(code, 200);
    let (code, v) = register(Some(&token), json!({"name": "honest"}));
    assert_eq!(code, 401, "{v}");
    // And the name stays locked until it is enrolled again: with no credential at all, from
    // loopback (`legacy_drones`), it was open to anyone (h110 F2).
    let (code, v) = register(None, json!({"name": "honest"}));
    assert!(matches!(code, 401 | 403), "{code} {v}");
    let (code, v) = as_drone(&server, "GET", "/api/v1/work?id=honest", None, None, &[]);
    assert!(matches!(code, 401 | 403), "{code} {v}");
}

#[test]
fn the_agent_refuses_to_send_its_credential_over_plain_http_to_another_host() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("server"), &[]);
    let (build, _) = enrolled_build(&server, dir.path());
    let token_file = dir.path().join("honest.token");
    // `.invalid` never resolves: nothing leaves this machine even if the check broke.
    let out = std::process::Command::new(support::swarm_bin())
        .args([
            "drone",
            "--server",
            "http://binhost.invalid:8100",
            "--name",
            "honest",
            "--token-file",
        ])
        .arg(&token_file)
        .args(["--work-dir"])
        .arg(dir.path().join("w"))
        .output()
        .expect("run swarm drone");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("refusing to send the drone credential over plain http"),
        "{err}"
    );
    build.finish(&server);
}

/// `swarm bench http --stalled`: runs, holds its stalled connections, and
/// the drones' cycles and the health probe see no errors. Timings are
/// reported, never asserted.
#[test]
fn a_short_bench_with_stalled_connections_reports_no_errors() {
    let out = std::process::Command::new(support::swarm_bin())
        .args([
            "bench",
            "http",
            "--drones",
            "4",
            "--seconds",
            "2",
            "--stalled",
            "20",
            "--json",
        ])
        // A debug build: a small queue is plenty for two seconds.
        .env("SWARM_BENCH_PER_S", "3000")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run swarm bench http");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["stalled"], 20, "{v}");
    assert_eq!(v["stalled_connect_failures"], 0, "{v}");
    assert!(v["cycles"].as_u64().is_some_and(|c| c > 0), "{v}");
    assert_eq!(v["health_ms"]["failures"], 0, "{v}");
    assert!(
        v["health_ms"]["samples"].as_u64().is_some_and(|n| n > 0),
        "{v}"
    );
}
