//! The dashboard's event stream is open to any reader, so one address
//! cannot take every place and keep the operators' dashboards out.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Opens a stream as `from` (the `X-Forwarded-For` of a loopback proxy)
/// and returns the connection with the status of its answer.
fn open_stream(addr: std::net::SocketAddr, from: &str) -> (TcpStream, u16) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        format!(
            "GET /api/v1/events/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Forwarded-For: {from}\r\n\r\n"
        )
        .as_bytes(),
    )
    .expect("send");
    let mut head = [0u8; 12];
    s.read_exact(&mut head).expect("status line");
    let status = String::from_utf8_lossy(&head[9..12])
        .parse()
        .expect("a status");
    (s, status)
}

#[test]
fn one_address_cannot_take_every_event_stream() {
    let dir = tempfile::tempdir().expect("dir");
    // Behind a proxy on this host, as dist/nginx/ (`tls_proxy`): the
    // callers' addresses come in `X-Forwarded-For`.
    let server = swarm_net::server::start(swarm_net::server::ServerOptions {
        behind_proxy: true,
        ..common::options(dir.path(), "t")
    })
    .expect("server");
    let addr = server.addr();
    let mut held = Vec::new();
    for _ in 0..16 {
        let (s, status) = open_stream(addr, "203.0.113.9");
        assert_eq!(status, 200);
        held.push(s);
    }
    // The head of a stream: one Cache-Control (the stream's own), nosniff.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 4096 {
        held[0].read_exact(&mut byte).expect("the stream's head");
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert_eq!(head.matches("cache-control:").count(), 1, "{head}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    let (mut refused, status) = open_stream(addr, "203.0.113.9");
    assert_eq!(status, 503, "a seventeenth stream from one address");
    let mut why = String::new();
    let _ = refused.read_to_string(&mut why);
    assert!(why.contains("from 203.0.113.9 (limit 16)"), "{why}");
    // A line of the caller's own before the proxy's: the proxy's last entry
    // counts, not the first line (h11).
    let (_, status) = open_stream(addr, "198.51.100.8\r\nX-Forwarded-For: 203.0.113.9");
    assert_eq!(status, 503, "the proxy's line names the full address");
    // An operator's dashboard elsewhere still gets its stream.
    let (s, status) = open_stream(addr, "198.51.100.7");
    assert_eq!(status, 200, "another address");
    held.push(s);
    // A stop ends the streams rather than waiting them out: before, the
    // front door waited its whole drain bound (10 s) for them.
    let t = std::time::Instant::now();
    drop(server);
    let took = t.elapsed();
    eprintln!("stop with {} streams open took {took:?}", held.len());
    assert!(took < Duration::from_secs(8), "stop took {took:?}");
}

/// With no proxy declared, a loopback caller's `X-Forwarded-For` is not
/// believed: one local process naming a new address on each stream took
/// every place (h10).
#[test]
fn without_a_proxy_forwarded_addresses_are_not_believed() {
    let dir = tempfile::tempdir().expect("dir");
    let server = swarm_net::server::start(common::options(dir.path(), "t")).expect("server");
    let addr = server.addr();
    let mut held = Vec::new();
    for i in 0..16 {
        let (s, status) = open_stream(addr, &format!("203.0.113.{i}"));
        assert_eq!(status, 200);
        held.push(s);
    }
    let (mut refused, status) = open_stream(addr, "198.51.100.7");
    assert_eq!(status, 503, "a seventeenth stream from loopback");
    let mut why = String::new();
    let _ = refused.read_to_string(&mut why);
    assert!(why.contains("from 127.0.0.1 (limit 16)"), "{why}");
    // A client that closes its connection gives its place back within a second or two, not at
    // the stream's next keep-alive 15 s on (h32): a closed tab's place is the next tab's.
    drop(held.pop());
    let t = std::time::Instant::now();
    let freed = loop {
        let (s, status) = open_stream(addr, "198.51.100.7");
        if status == 200 {
            held.push(s);
            break t.elapsed();
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the place was not given back"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(freed < Duration::from_secs(5), "given back after {freed:?}");
}
