//! A client answers a redirect, never follows it. Followed, a drone's
//! registration POST became a GET to whatever the Location named, and a
//! `{"status":"ok"}` there read as "registered" (h8, last session).

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use swarm_net::client::{Auth, Client, ClientError};
use swarm_net::wire::RegisterRequest;

/// Serves `requests` requests with `reply`, counting them.
fn serve(reply: String, requests: usize) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&seen);
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < requests && std::time::Instant::now() < deadline {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).expect("blocking");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut head = [0u8; 4096];
            let _ = conn.read(&mut head);
            counted.fetch_add(1, Ordering::SeqCst);
            let _ = conn.write_all(reply.as_bytes());
            served += 1;
        }
    });
    (url, seen)
}

fn redirect_to(location: &str) -> String {
    format!(
        "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
}

#[test]
fn a_redirect_is_an_error_naming_where_it_points_and_is_not_followed() {
    let ok = "{\"status\":\"ok\"}";
    let (elsewhere, hits) = serve(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{ok}",
            ok.len()
        ),
        8,
    );
    let (server, asked) = serve(redirect_to(&format!("{elsewhere}/ok")), 8);
    let client =
        Client::new(server, Duration::from_secs(10)).with_drone_token(Some("drone-secret".into()));
    let req = RegisterRequest {
        name: Some("d1".into()),
        ..RegisterRequest::default()
    };
    let e = client
        .register(&req)
        .expect_err("a redirect is no registration");
    assert!(
        matches!(&e, ClientError::Server { status: 302, body, .. }
            if body.error.contains(&format!("redirected to {elsewhere}/ok"))),
        "{e}"
    );
    assert!(
        e.is_worth_retrying(),
        "a proxy's redirect is no judgement of the call: {e}"
    );
    let text = client
        .get_text("/metrics", Auth::None)
        .expect_err("nor is it metrics");
    assert_eq!(text.status(), Some(302), "{text}");
    let json = client
        .get_json::<serde_json::Value>("/api/v1/status", Auth::None)
        .expect_err("nor a status");
    assert_eq!(json.status(), Some(302), "{json}");
    assert_eq!(asked.load(Ordering::SeqCst), 3, "each call asked once");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "the redirect was not followed"
    );
}
