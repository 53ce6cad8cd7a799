//! TLS end to end over 127.0.0.1, with certificates made in the test
//! (rcgen): a real `swarm serve` with tls_cert/tls_key, the CLI and a real
//! `swarm drone` trusting the test CA with `--ca` and finishing a build over
//! https; the wrong CA, a name mismatch and a plain-http server refused with
//! a message that says which; the front door's limits over TLS (a stalled
//! handshake is dropped, /health answers meanwhile, 431 still holds; at the
//! connection bound, idle then half-open connections make room); and
//! dist/nginx/swarm-proxy.conf run by a real nginx in front of a plain
//! `swarm serve`, with the CLI and a drone build going through it.

mod support;

use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::drone::Drone;
use support::{swarm_bin, Server};

const ATOM: &str = "=dev-libs/over-tls-1.0";

/// A CA and files under `dir`: `NAME-ca.pem`, and certificates it signs.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pem: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("swarm test CA {name}"));
        let cert = params.clone().self_signed(&key).expect("CA cert");
        let pem = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&pem, cert.pem()).expect("write CA");
        Ca { params, key, pem }
    }

    /// A server certificate for `names` (DNS names or IP addresses):
    /// (cert.pem, key.pem).
    fn issue(&self, dir: &Path, file: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let issuer = self.params.clone().self_signed(&self.key).expect("issuer");
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &issuer, &self.key).expect("sign");
        let (c, k) = (
            dir.join(format!("{file}-cert.pem")),
            dir.join(format!("{file}-key.pem")),
        );
        std::fs::write(&c, cert.pem()).expect("write cert");
        std::fs::write(&k, key.serialize_pem()).expect("write key");
        (c, k)
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// `swarm serve` with TLS on a free loopback port.
fn tls_server(dir: &Path, cert: &Path, key: &Path, extra: &[(&str, &str)]) -> Server {
    let mut env = vec![
        ("SWARM_TLS_CERT", path_str(cert)),
        ("SWARM_TLS_KEY", path_str(key)),
    ];
    env.extend_from_slice(extra);
    let server = Server::start(&dir.join("server"), &env);
    assert!(server.url.starts_with("https://"), "{}", server.url);
    server
}

/// The CLI with `args`, never reading a config or token from the machine.
fn cli(args: &[&str]) -> Output {
    Command::new(swarm_bin())
        .args(args)
        .env_remove("SWARM_URL")
        .env_remove("SWARM_CA")
        .env_remove("SWARM_ADMIN_TOKEN")
        .env_remove("SWARM_TOKEN_FILE")
        .env_remove("SWARM_DATA_DIR")
        .output()
        .expect("run swarm")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn refused(out: &Output, what: &str) -> String {
    assert!(!out.status.success(), "{what} should have failed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A rustls client configuration trusting only `ca`.
fn client_config(ca: &Path) -> Arc<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read CA") {
        roots.add(cert.expect("CA pem")).expect("add CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// GET over https trusting `ca`: (status, JSON).
fn https_get(url: &str, ca: &Path) -> (u16, Value) {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .tls_config(client_config(ca))
        .build();
    let resp = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {url}: {e}"),
    };
    let status = resp.status();
    let text = resp.into_string().unwrap_or_default();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn wait_built(url: &str, ca: &Path, n: u64, drone: &Drone) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (code, v) = https_get(&format!("{url}/api/v1/status"), ca);
        if code == 200 && v["counts"]["built"] == n {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not built over https: {v}\ndrone log:\n{}",
            drone.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Enrolls `name` and queues ATOM through the CLI at `url`; returns the
/// token file.
fn enroll_and_queue(url: &str, ca: &Path, data_dir: &Path, dir: &Path, name: &str) -> PathBuf {
    let common = ["--server", url, "--ca", path_str(ca), "--data-dir"];
    let mut enroll = vec!["node", "enroll", name, "--json"];
    enroll.extend_from_slice(&common);
    enroll.push(path_str(data_dir));
    let got: Value =
        serde_json::from_str(&ok(&cli(&enroll), "enroll over https")).expect("enroll JSON");
    let token_file = dir.join(format!("{name}.token"));
    std::fs::write(&token_file, got["token"].as_str().expect("token")).expect("token file");
    let mut add = vec!["queue", "add", ATOM];
    add.extend_from_slice(&common);
    add.push(path_str(data_dir));
    ok(&cli(&add), "queue add over https");
    token_file
}

#[test]
fn a_drone_and_the_cli_work_over_https_with_the_servers_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "good");
    let (cert, key) = ca.issue(dir.path(), "server", &["localhost", "127.0.0.1"]);
    let server = tls_server(dir.path(), &cert, &key, &[]);
    let token_file = enroll_and_queue(&server.url, &ca.pem, &server.data_dir, dir.path(), "secure");
    let drone = Drone::start(
        &server,
        dir.path(),
        "secure",
        &[
            "--server",
            &server.url,
            "--ca",
            path_str(&ca.pem),
            "--token-file",
            path_str(&token_file),
        ],
        &[],
    );
    wait_built(&server.url, &ca.pem, 1, &drone);
    assert!(
        server
            .data_dir
            .join("staging/dev-libs/over-tls-1.0.gpkg.tar")
            .exists(),
        "the artifact was uploaded over https"
    );
    // The CLI reads over https too, with the CA from the environment.
    let out = Command::new(swarm_bin())
        .args(["status", "--json", "--server", &server.url])
        .env("SWARM_CA", &ca.pem)
        .output()
        .expect("status");
    let status: Value = serde_json::from_str(&ok(&out, "status over https")).expect("JSON");
    assert_eq!(status["counts"]["built"], 1, "{status}");
}

#[test]
fn a_wrong_ca_a_wrong_name_and_plain_http_are_refused_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "good");
    let other = Ca::new(dir.path(), "other");
    let (cert, key) = ca.issue(dir.path(), "server", &["127.0.0.1"]);
    let server = tls_server(dir.path(), &cert, &key, &[]);
    let url = server.url.as_str();

    // The system store does not know the test CA; neither does another CA.
    for (args, what) in [
        (vec!["status", "--server", url], "no --ca"),
        (
            vec!["status", "--server", url, "--ca", path_str(&other.pem)],
            "another CA",
        ),
    ] {
        let err = refused(&cli(&args), what);
        assert!(
            err.contains("signed by a CA this client does not trust") && err.contains("--ca FILE"),
            "{what}: {err}"
        );
    }
    // A CA file that is not one.
    let bogus = dir.path().join("bogus.pem");
    std::fs::write(&bogus, "hello\n").expect("write");
    let err = refused(
        &cli(&["status", "--server", url, "--ca", path_str(&bogus)]),
        "bogus CA file",
    );
    assert!(
        err.contains("bogus.pem") && err.contains("no CERTIFICATE"),
        "{err}"
    );

    // A certificate for another name.
    let (cert2, key2) = ca.issue(dir.path(), "elsewhere", &["binhost.invalid"]);
    let misnamed = tls_server(&dir.path().join("b"), &cert2, &key2, &[]);
    let err = refused(
        &cli(&[
            "status",
            "--server",
            &misnamed.url,
            "--ca",
            path_str(&ca.pem),
        ]),
        "name mismatch",
    );
    assert!(
        err.contains("not valid for 127.0.0.1") && err.contains("binhost.invalid"),
        "{err}"
    );

    // https:// to a server that speaks plain http.
    let plain = Server::start(&dir.path().join("plain"), &[]);
    let https_to_plain = plain.url.replace("http://", "https://");
    let err = refused(
        &cli(&[
            "status",
            "--server",
            &https_to_plain,
            "--ca",
            path_str(&ca.pem),
        ]),
        "https to plain http",
    );
    assert!(err.contains("did not answer in TLS"), "{err}");

    // http:// to the TLS port: a readable 400, not a hang or garbage.
    let http_to_tls = server.url.replace("https://", "http://");
    let (code, v) = support::request("GET", &format!("{http_to_tls}/api/v1/health"), None, None);
    assert_eq!(code, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap_or("").contains("speaks https"),
        "{v}"
    );

    // The agent says the same in its log, instead of retrying in silence.
    let (code, v) = https_get(&format!("{url}/api/v1/health"), &ca.pem);
    assert_eq!(code, 200, "{v}");
    let mut drone = Drone::start(
        &server,
        dir.path(),
        "doubtful",
        &["--server", url, "--ca", path_str(&other.pem)],
        &[],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while !drone
        .log_text()
        .contains("signed by a CA this client does not trust")
    {
        assert!(
            Instant::now() < deadline,
            "the agent never said why https failed:\n{}",
            drone.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    drone.kill9();
}

/// A TLS `swarm serve` on 127.0.0.1 with a certificate from a new CA.
fn loopback_tls_server(dir: &Path, extra: &[(&str, &str)]) -> (Ca, Server) {
    let ca = Ca::new(dir, "good");
    let (cert, key) = ca.issue(dir, "server", &["127.0.0.1"]);
    let server = tls_server(dir, &cert, &key, extra);
    (ca, server)
}

/// A connection that stopped halfway through its TLS hello.
fn half_a_hello(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .expect("half a hello");
    s
}

/// A TLS client stream to `addr` trusting `ca`, handshake done.
fn tls_stream(addr: &str, ca: &Path) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let sock = TcpStream::connect(addr).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
    let conn = rustls::ClientConnection::new(client_config(ca), name).expect("client");
    let mut s = rustls::StreamOwned::new(conn, sock);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("handshake");
    }
    s
}

/// Sends a byte every 200 ms until the server closes `sock`, which must be
/// well before 8 s (the server's header timeout is 1 s). What the server
/// sends meanwhile (an alert, a 408) is read on to the close.
fn assert_cut_while_dripping(sock: &mut TcpStream, what: &str) {
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let began = std::time::Instant::now();
    loop {
        let mut buf = [0u8; 256];
        match sock.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if sock.write_all(&[0]).is_err() {
                    return;
                }
            }
            Err(_) => return,
        }
        assert!(
            began.elapsed() < Duration::from_secs(8),
            "{what} dripping a byte per 200 ms was kept open past the 1 s header timeout"
        );
    }
}

#[test]
fn the_front_door_limits_hold_over_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, server) = loopback_tls_server(dir.path(), &[("SWARM_HTTP_HEADER_TIMEOUT_S", "1")]);
    // Connections that never start a handshake, and ones that stop halfway
    // through their hello.
    let mut stalled: Vec<TcpStream> = (0..30)
        .map(|i| {
            let s = if i % 2 == 1 {
                half_a_hello(&server.addr)
            } else {
                TcpStream::connect(&server.addr).expect("connect")
            };
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
            s
        })
        .collect();
    // Health answers over TLS meanwhile.
    let (code, v) = https_get(&format!("{}/api/v1/health", server.url), &ca.pem);
    assert_eq!(code, 200, "{v}");
    // Every stalled handshake is closed by the server (read: EOF or reset,
    // never our own 15 s read timeout).
    for s in &mut stalled {
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(n) => assert_eq!(n, 0, "nothing is sent to a stalled handshake, it is closed"),
            Err(e) => assert!(
                !matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ),
                "a stalled TLS handshake was kept open: {e}"
            ),
        }
    }
    // A hello sent a byte at a time is cut at the header timeout too: the
    // socket's timeout restarted with every byte, and it was kept for ever.
    let mut drip = half_a_hello(&server.addr);
    assert_cut_while_dripping(&mut drip, "a hello");
    // After the handshake, a record dripped a byte at a time is cut at the
    // header timeout too (h12: rustls read on until the record was whole).
    let mut s = tls_stream(&server.addr, &ca.pem);
    s.sock
        .write_all(&[0x17, 0x03, 0x03, 0x40, 0x00])
        .expect("a record's header");
    assert_cut_while_dripping(&mut s.sock, "a record");
    // The header limit holds inside TLS: 431.
    let mut s = tls_stream(&server.addr, &ca.pem);
    let big = "x".repeat(20 * 1024);
    write!(
        s,
        "GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n\r\n"
    )
    .expect("send");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A request over TLS that sends its head slowly is cut at the header timeout.
    let mut s = tls_stream(&server.addr, &ca.pem);
    write!(s, "GET /api/v1/health HTTP/1.1\r\n").expect("send");
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let (code, _) = https_get(&format!("{}/api/v1/health", server.url), &ca.pem);
    assert_eq!(code, 200);
}

/// Reads one answer with a Content-Length body from a kept-alive stream.
fn read_one_answer(s: &mut impl Read) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = text[..end]
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + len {
                return text;
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// The server closed the connection: EOF, a reset, or a TLS close, well
/// before any timeout of its own (10 s for a head, 60 s idle).
fn closed_by_server(s: &mut impl Read, what: &str) {
    let began = Instant::now();
    let mut buf = [0u8; 64];
    let r = s.read(&mut buf);
    assert!(
        !matches!(&r, Ok(n) if *n > 0),
        "{what}: answered instead of closed"
    );
    if let Err(e) = &r {
        assert!(
            !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
            "{what}: still open after {:?}",
            began.elapsed()
        );
    }
}

/// At the connection bound over TLS, as in the clear: a drone's register
/// takes the place of the TLS connection idle longest, and once none is
/// idle, of the oldest connection still in its handshake; it is answered.
#[test]
fn at_the_connection_bound_over_tls_idle_then_half_open_connections_make_room() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca, server) = loopback_tls_server(dir.path(), &[("SWARM_HTTP_MAX_CONNECTIONS", "16")]);
    // 8 TLS connections that made one request and went quiet...
    let mut idle: Vec<_> = (0..8)
        .map(|_| {
            let mut s = tls_stream(&server.addr, &ca.pem);
            write!(s, "GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n").expect("send");
            let answer = read_one_answer(&mut s);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            s
        })
        .collect();
    // ...and 8 that never start their handshake: every place taken.
    let mut half_open: Vec<TcpStream> = (0..8)
        .map(|_| {
            let s = TcpStream::connect(&server.addr).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(8)))
                .expect("timeout");
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let register = |name: &str| {
        let body = format!(r#"{{"name":"{name}"}}"#);
        let mut s = tls_stream(&server.addr, &ca.pem);
        write!(
            s,
            "POST /api/v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        let answer = read_one_answer(&mut s);
        assert!(answer.starts_with("HTTP/1.1 200"), "{name}: {answer}");
    };
    register("newcomer-0");
    closed_by_server(&mut idle[0], "the TLS connection idle longest");
    // No idle connection left: 8 that stopped halfway through their hello
    // fill the places again, and the next register takes the place of the
    // oldest connection whose handshake never began.
    drop(idle);
    std::thread::sleep(Duration::from_millis(300));
    let _half_hello: Vec<TcpStream> = (0..8).map(|_| half_a_hello(&server.addr)).collect();
    std::thread::sleep(Duration::from_millis(300));
    register("newcomer-1");
    closed_by_server(&mut half_open[0], "the oldest handshake not begun");
}

#[test]
fn the_nginx_tls_proxy_example_carries_the_cli_and_a_drone_build() {
    let Some(bin) = support::nginx::find() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Ca::new(dir.path(), "good");
    let (cert, key) = ca.issue(dir.path(), "proxy", &["127.0.0.1"]);
    let server = Server::start(&dir.path().join("server"), &[("SWARM_TLS_PROXY", "true")]);
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("root");
    let example =
        std::fs::read_to_string(root.join("dist/nginx/swarm-proxy.conf")).expect("example");
    for needle in [
        "listen 443 ssl;",
        "/etc/swarm/tls/cert.pem",
        "/etc/swarm/tls/key.pem",
        "http://127.0.0.1:8100",
    ] {
        assert!(example.contains(needle), "the example has {needle}");
    }
    let ng = support::nginx::start(&bin, &dir.path().join("nginx"), |port| {
        example
            .replace("listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"))
            .replace("/etc/swarm/tls/cert.pem", path_str(&cert))
            .replace("/etc/swarm/tls/key.pem", path_str(&key))
            .replace("http://127.0.0.1:8100", &format!("http://{}", server.addr))
    });
    let url = format!("https://127.0.0.1:{}", ng.port);
    let token_file = enroll_and_queue(&url, &ca.pem, &server.data_dir, dir.path(), "proxied");
    let drone = Drone::start(
        &server,
        dir.path(),
        "proxied",
        &[
            "--server",
            &url,
            "--ca",
            path_str(&ca.pem),
            "--token-file",
            path_str(&token_file),
        ],
        &[],
    );
    wait_built(&url, &ca.pem, 1, &drone);
    assert!(
        server
            .data_dir
            .join("staging/dev-libs/over-tls-1.0.gpkg.tar")
            .exists(),
        "the artifact went through the proxy; nginx: {}",
        ng.error_log()
    );
    // A credential-less drone through the proxy is judged by its own
    // address (X-Forwarded-For), not by nginx's loopback one.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(10))
        .tls_config(client_config(&ca.pem))
        .build();
    // The client's own X-Forwarded-For entry is not believed: nginx appends
    // the address it saw (127.0.0.1, the test runs on loopback), and that
    // last entry is the one swarm checks, so this drone is allowed.
    let r = agent
        .post(&format!("{url}/api/v1/register"))
        .set("X-Forwarded-For", "192.0.2.7")
        .send_string(r#"{"name":"v3-through-proxy"}"#);
    assert!(r.is_ok(), "{r:?}");
    // Directly (no proxy), a forged X-Forwarded-For from loopback names an
    // address outside legacy_drones and is refused.
    let (code, v) = support::request_raw(
        "POST",
        &format!("{}/api/v1/register", server.url),
        Some(br#"{"name":"v3-forged"}"#),
        None,
        &[("X-Forwarded-For", "192.0.2.7")],
    );
    assert_eq!(code, 403, "{v}");
}
