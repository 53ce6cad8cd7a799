//! What a client sends and follows. A redirect is answered, never followed:
//! followed, a drone's registration POST became a GET to whatever the
//! Location named, and a `{"status":"ok"}` there read as "registered". And
//! an operator's admin token goes with a read only to a server that asked
//! for a token.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use swarm_net::client::{Auth, Client, ClientError};
use swarm_net::wire::RegisterRequest;

/// Serves up to 8 requests, the i-th with `replies[i]` (the last one again
/// once they run out), and keeps each request's head.
fn serve(replies: Vec<String>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let heads = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&heads);
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < 8 && std::time::Instant::now() < deadline {
            let Ok((mut conn, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            };
            conn.set_nonblocking(false).expect("blocking");
            conn.set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let mut head = [0u8; 4096];
            let n = conn.read(&mut head).unwrap_or(0);
            kept.lock()
                .expect("heads")
                .push(String::from_utf8_lossy(&head[..n]).to_lowercase());
            let reply = &replies[served.min(replies.len() - 1)];
            let _ = conn.write_all(reply.as_bytes());
            served += 1;
        }
    });
    (url, heads)
}

fn reply(status: &str, extra: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn a_redirect_is_an_error_naming_where_it_points_and_is_not_followed() {
    let (elsewhere, hits) = serve(vec![reply("200 OK", "", "{\"status\":\"ok\"}")]);
    let (server, asked) = serve(vec![reply(
        "302 Found",
        &format!("Location: {elsewhere}/ok\r\n"),
        "",
    )]);
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
    assert_eq!(
        asked.lock().expect("heads").len(),
        3,
        "each call asked once"
    );
    assert!(
        hits.lock().expect("heads").is_empty(),
        "the redirect was not followed"
    );
}

#[test]
fn the_read_fallback_token_goes_only_to_a_server_that_asks_for_one() {
    let ok = reply("200 OK", "", "{}");
    let asks = reply(
        "401 Unauthorized",
        "",
        "{\"error\":\"this server's reads need a token\"}",
    );
    let client = |url: String| {
        Client::new(url, Duration::from_secs(10)).with_read_fallback(Some("admin-secret".into()))
    };
    // Reads are open: the admin token never leaves.
    let (open, heads) = serve(vec![ok.clone()]);
    client(open)
        .get_json::<serde_json::Value>("/api/v1/status", Auth::None)
        .expect("read");
    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 1);
    assert!(!heads[0].contains("admin-secret"), "{heads:?}");
    // A server that asks gets it on the second try.
    let (guarded, heads) = serve(vec![asks, ok]);
    client(guarded)
        .get_text("/metrics", Auth::None)
        .expect("read with the token");
    let heads = heads.lock().expect("heads").clone();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(!heads[0].contains("admin-secret"), "{heads:?}");
    assert!(
        heads[1].contains("authorization: bearer admin-secret"),
        "{heads:?}"
    );
}

#[test]
fn tokens_are_sent_trimmed_and_a_header_error_never_shows_one() {
    let (url, heads) = serve(vec![reply("200 OK", "", "{\"status\":\"registered\"}")]);
    let req = RegisterRequest {
        name: Some("d1".into()),
        ..RegisterRequest::default()
    };
    Client::new(url.clone(), Duration::from_secs(10))
        .with_drone_token(Some("drone-secret\n".into()))
        .register(&req)
        .expect("registered with the trimmed token");
    let seen = heads.lock().expect("heads").clone();
    assert!(
        seen[0].contains("authorization: bearer drone-secret\r\n"),
        "{seen:?}"
    );
    // One a header cannot carry: the error says so without the token.
    let e = Client::new(url, Duration::from_secs(10))
        .with_drone_token(Some("drone\nsecret".into()))
        .register(&req)
        .expect_err("no header can carry it");
    let text = e.to_string();
    assert!(!text.contains("secret"), "{text}");
    assert!(text.contains("a token holds a character"), "{text}");
}

#[test]
fn a_token_is_called_unsendable_exactly_when_the_client_cannot_send_it() {
    // Port 1 refuses: a token the client can send fails on the connection,
    // one it cannot send fails before, on the header.
    let req = RegisterRequest {
        name: Some("d1".into()),
        ..RegisterRequest::default()
    };
    let odd = ['\u{a0}', 'é', '€', '\u{2028}', '\u{feff}'];
    let (mut refused, mut sendable) = (0, 0);
    for c in (0u8..0x80).map(char::from).chain(odd) {
        let token = format!("ab{c}cd");
        let header_error = Client::new("http://127.0.0.1:1", Duration::from_secs(5))
            .with_drone_token(Some(token.clone()))
            .register(&req)
            .expect_err("nothing listens on port 1")
            .to_string()
            .contains("a token holds a character");
        let verdict = swarm_net::client::unsendable_token(&token);
        assert_eq!(
            header_error,
            verdict.is_some(),
            "U+{:04X}: client refused it: {header_error}, verdict {verdict:?}",
            u32::from(c)
        );
        if header_error {
            refused += 1;
        } else {
            sendable += 1;
        }
    }
    // Both kinds were seen: the controls but the tab, DEL and the odd ones
    // refused; the tab, the space and the 94 printable ones sent.
    assert_eq!((refused, sendable), (31 + 1 + odd.len(), 96));
    // One that would not fit the server's headers is refused too.
    let long = "t".repeat(swarm_net::client::MAX_TOKEN_BYTES + 1);
    let why = swarm_net::client::unsendable_token(&long).expect("too long");
    assert!(why.contains("4097 bytes long"), "{why}");
    assert!(swarm_net::client::unsendable_token(&long[1..]).is_none());
}
