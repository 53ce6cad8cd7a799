//! HEAD on a read is answered as its GET would be, less the body
//! (monitoring and `curl -I` got 405), and never where a GET acts.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The status line and headers (lowercased) and the body of one request.
fn ask(addr: SocketAddr, method: &str, path: &str, auth: Option<&str>) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let auth = auth.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .expect("send");
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).expect("read");
    let end = reply
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a head")
        + 4;
    let head = String::from_utf8_lossy(&reply[..end]).to_lowercase();
    (head, reply[end..].to_vec())
}

fn status(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}

fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
}

#[test]
fn head_reads_answer_as_get_without_a_body_and_never_act() {
    let dir = tempfile::tempdir().expect("dir");
    // A build log, which is streamed: made after a first start (a log
    // without its database is evidence of lost state).
    drop(swarm_net::server::start(common::options(dir.path(), "admin-t")).expect("first start"));
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs dir");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b">>> Emerging dev-libs/a-1\n").expect("gzip");
    std::fs::write(dir.path().join("logs/1.log.gz"), gz.finish().expect("gzip")).expect("log");
    let mut opts = common::options(dir.path(), "admin-t");
    opts.read_token = Some("read-t".into());
    let server = swarm_net::server::start(opts).expect("server");
    let addr = server.addr();

    // Health is open; the guarded reads want the read token as GET does.
    for (path, auth) in [
        ("/api/v1/health", None),
        ("/health", None),
        ("/api/v1/status", Some("read-t")),
        ("/api/v1/queue", Some("read-t")),
        ("/metrics", Some("read-t")),
        ("/api/v1/releases", Some("read-t")),
        ("/api/v1/logs/1", Some("read-t")),
    ] {
        let (get, get_body) = ask(addr, "GET", path, auth);
        let (head, head_body) = ask(addr, "HEAD", path, auth);
        assert_eq!(status(&get), 200, "GET {path}: {get}");
        assert_eq!(status(&head), 200, "HEAD {path}: {head}");
        assert!(head_body.is_empty(), "HEAD {path} sent a body");
        assert!(!get_body.is_empty(), "GET {path} sent none");
        assert!(head.contains("content-type: "), "HEAD {path}: {head}");
        // A fixed-length GET says a length to HEAD too (not the same one:
        // the figures move between the two).
        assert_eq!(
            content_length(&get).is_some(),
            content_length(&head).is_some(),
            "HEAD {path}: {head}"
        );
    }
    // A streamed reply to HEAD sends nothing after its head, not even the
    // last chunk: on a kept connection, the next reply follows at once.
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(
        b"HEAD /api/v1/logs/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer read-t\r\n\r\n\
          GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .expect("send");
    let mut both = String::new();
    s.read_to_string(&mut both).expect("read");
    let (first, rest) = both.split_once("\r\n\r\n").expect("a first head");
    assert!(first.contains("chunked"), "{first}");
    assert!(
        rest.starts_with("HTTP/1.1 200 "),
        "after HEAD's head: {rest:?}"
    );

    let (head, _) = ask(addr, "HEAD", "/api/v1/status", None);
    assert_eq!(status(&head), 401, "the read token guards HEAD: {head}");

    // Where a GET does more than read, HEAD is still refused.
    for path in [
        "/api/v1/work?drone=d1",
        "/api/v1/poll",
        "/api/v1/events/stream",
    ] {
        let (head, body) = ask(addr, "HEAD", path, Some("read-t"));
        assert_eq!(status(&head), 405, "HEAD {path}: {head}");
        assert!(body.is_empty());
    }
    let (head, _) = ask(addr, "HEAD", "/api/v1/sql/tables", Some("admin-t"));
    assert!(
        matches!(status(&head), 404 | 405),
        "HEAD on the SQL explorer runs no query: {head}"
    );
}
