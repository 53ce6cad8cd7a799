//! Reading a build log costs the server a decoder's buffers, not the log:
//! many readers that never read their reply (the way to hold a reply in a
//! server's memory) cannot take it into gigabytes. Alone in its binary, so
//! the process's RSS is this server's.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const LOG_BYTES: usize = 8 * 1024 * 1024;
const READERS: usize = 48;

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

#[test]
fn many_stalled_readers_of_a_large_log_do_not_hold_it_in_memory() {
    let dir = tempfile::tempdir().expect("dir");
    // A first start makes the data dir (a log without its database is
    // evidence of lost state, refused).
    drop(swarm_net::server::start(common::options(dir.path(), "t")).expect("first start"));
    // A log as an upload may leave it: 8 MiB of text in a few KB of gzip.
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).expect("logs dir");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&vec![b'A'; LOG_BYTES]).expect("gzip");
    std::fs::write(logs.join("1.log.gz"), gz.finish().expect("gzip")).expect("write log");
    let server = swarm_net::server::start(common::options(dir.path(), "t")).expect("server");
    let addr = server.addr();

    // One whole read works and gives the whole text.
    let mut one = TcpStream::connect(addr).expect("connect");
    one.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    one.write_all(b"GET /api/v1/logs/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut reply = Vec::new();
    one.read_to_end(&mut reply).expect("read the log");
    let text = reply.iter().filter(|b| **b == b'A').count();
    assert_eq!(text, LOG_BYTES, "the whole log is served");
    // Text a drone wrote is never run as a script by a browser.
    let head = String::from_utf8_lossy(&reply[..reply.len().min(1024)]).to_lowercase();
    assert!(
        head.contains("\r\nx-content-type-options: nosniff\r\n"),
        "{head}"
    );

    let before = rss_bytes();
    let stalled: Vec<TcpStream> = (0..READERS)
        .map(|_| {
            let mut s = TcpStream::connect(addr).expect("connect");
            s.write_all(b"GET /api/v1/logs/1 HTTP/1.1\r\nHost: x\r\n\r\n")
                .expect("send");
            s
        })
        .collect();
    // Each reply is written until the socket's buffers are full; wait
    // until the server has taken them all up, and watch its memory.
    let mut peak = before;
    let until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < until {
        peak = peak.max(rss_bytes());
        std::thread::sleep(Duration::from_millis(50));
    }
    let grew = peak.saturating_sub(before);
    eprintln!(
        "{READERS} stalled readers of an 8 MiB log: the server grew by {} MB",
        grew / (1024 * 1024)
    );
    // Holding each reply whole would be 2 x 8 MiB per reader (the text and
    // its bytes), about 800 MB here.
    assert!(
        grew < 150 * 1024 * 1024,
        "{READERS} stalled readers of an 8 MiB log grew the server by {} MB",
        grew / (1024 * 1024)
    );
    drop(stalled);
}

/// A FIFO or a symlink put where swarm serves files from (a release's
/// tree, the log directory) is refused at once: a FIFO would hold the
/// connection and its thread until a writer came (enough of them and every
/// request is refused for want of connections), and a link would serve
/// what lies outside.
#[test]
fn a_fifo_or_a_link_planted_where_files_are_served_is_refused_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    drop(swarm_net::server::start(common::options(dir.path(), "t")).expect("first start"));
    let outside = dir.path().join("outside.gz");
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(b"SECRET outside the log dir").expect("gzip");
    std::fs::write(&outside, gz.finish().expect("gzip")).expect("outside");
    let logs = dir.path().join("logs");
    let binhost = dir.path().join("binhost");
    std::fs::create_dir_all(&binhost).expect("binhost");
    let fifo = |p: &std::path::Path| {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .expect("mkfifo")
    };
    fifo(&binhost.join("fifo"));
    fifo(&logs.join("900.log.gz"));
    std::os::unix::fs::symlink(&outside, logs.join("901.log.gz")).expect("symlink");
    let server = swarm_net::server::start(common::options(dir.path(), "t")).expect("server");
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .build();
    for (path, want) in [
        ("/binhost/fifo", 404),
        ("/api/v1/logs/900", 500),
        ("/api/v1/logs/901", 500),
    ] {
        let url = format!("http://{}{path}", server.addr());
        let (status, body) = match agent.get(&url).call() {
            Ok(r) => (r.status(), r.into_string().unwrap_or_default()),
            Err(ureq::Error::Status(s, r)) => (s, r.into_string().unwrap_or_default()),
            Err(e) => panic!("{path}: {e} (a hang ends in a timeout)"),
        };
        assert_eq!(status, want, "{path}: {body}");
        assert!(!body.contains("SECRET"), "{path}: {body}");
    }
}
