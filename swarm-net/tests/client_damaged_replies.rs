//! A success whose body is not swarm's JSON (a proxy's maintenance page) or breaks off (the
//! connection closed mid-reply) is not swarm's judgement of the call: the drone retries it.
//! h36 saw finished builds reported as failed uploads, or dropped, for both, although the
//! server had stored the upload.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::Duration;
use swarm_net::client::{Auth, Client, ClientError};

/// Answers one request with `reply` as it is, then closes the connection.
fn one_reply(reply: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut head = [0u8; 4096];
        let _ = conn.read(&mut head);
        let _ = conn.write_all(reply);
    });
    (url, server)
}

fn call(reply: &'static [u8]) -> ClientError {
    let (url, server) = one_reply(reply);
    let client = Client::new(url, Duration::from_secs(10));
    let e = client
        .get_json::<serde_json::Value>("/api/v1/work", Auth::Drone)
        .expect_err("not a reply to take");
    server.join().expect("server");
    e
}

#[test]
fn a_page_instead_of_json_is_worth_retrying() {
    let e = call(
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 38\r\n\r\n\
          <html><h1>Maintenance</h1></html>\n\n\n\n\n",
    );
    assert!(matches!(e, ClientError::Decode { .. }), "{e}");
    assert!(e.is_worth_retrying(), "{e}");
}

#[test]
fn a_reply_cut_off_is_a_transport_failure() {
    let e = call(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n\
          {\"accepted\":",
    );
    assert!(e.is_transport(), "{e}");
    assert!(e.is_worth_retrying(), "{e}");
    assert!(e.to_string().contains("the reply was cut off"), "{e}");
}

/// A report's 200 whose JSON is not swarm's answer (`{}`, a gateway's own JSON) does not count
/// as answered: the agent removed the spooled build on it (h39, a review).
#[test]
fn a_report_answered_with_json_that_is_not_a_report_answer_is_worth_retrying() {
    for reply in [
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"[..],
        &b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 20\r\n\r\n{\"gateway\":\"queued\"}"[..],
    ] {
        let (url, server) = one_reply(reply);
        let client = Client::new(url, Duration::from_secs(10));
        let req = swarm_net::wire::CompleteRequest {
            package: Some("=dev-libs/a-1".into()),
            status: Some("success".into()),
            lease: Some(1),
            ..Default::default()
        };
        let e = client.complete(&req).expect_err("not an answer to a report");
        server.join().expect("server");
        assert!(matches!(e, ClientError::Decode { .. }), "{e}");
        assert!(e.is_worth_retrying(), "{e}");
    }
}
