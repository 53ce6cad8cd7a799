//! A client reads at most its reply cap of a JSON reply: a server (or
//! whoever answers in its place) streaming gigabytes cannot make it hold
//! them, as it could an agent.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;
use swarm_net::client::{Auth, Client, ClientError};

/// Serves one request with an endless chunked JSON string; returns the
/// bytes it managed to send before the client hung up.
fn endless_json_server() -> (String, std::thread::JoinHandle<u64>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut head = [0u8; 1024];
        let _ = conn.read(&mut head);
        let _ = conn.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        let _ = conn.write_all(b"10\r\n{\"status\":\"AAAAA\r\n");
        let chunk = vec![b'A'; 64 * 1024];
        let mut sent = 0u64;
        // 256 MiB at most: the test ends either way.
        while sent < 256 << 20 {
            let frame = format!("{:x}\r\n", chunk.len());
            if conn.write_all(frame.as_bytes()).is_err()
                || conn.write_all(&chunk).is_err()
                || conn.write_all(b"\r\n").is_err()
            {
                break;
            }
            sent += chunk.len() as u64;
        }
        sent
    });
    (url, server)
}

#[test]
fn a_json_reply_over_the_cap_is_refused_not_read_whole() {
    let (url, server) = endless_json_server();
    let client = Client::new(url, Duration::from_secs(20)).with_reply_cap(1 << 20);
    let e = client
        .get_json::<serde_json::Value>("/api/v1/register", Auth::None)
        .expect_err("over the cap");
    assert!(
        matches!(&e, ClientError::Decode { cause, .. } if cause.contains("over 1048576 bytes")),
        "{e}"
    );
    drop(client);
    let sent = server.join().expect("server");
    assert!(
        sent < 256 << 20,
        "the client stopped reading: {sent} bytes sent"
    );
}
