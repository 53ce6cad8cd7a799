//! A TCP proxy on 127.0.0.1 in front of a real server that loses replies: requests to one path
//! go through and are answered, but while it is set to, the answer never reaches the client (a
//! reply lost on the way: a proxy that dropped it, a timeout). Everything else passes untouched.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The methods a request line may start with: a read of the client's side that starts with
/// one begins a new request on the (keep-alive) connection.
const METHODS: [&[u8]; 5] = [b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE "];

struct Shared {
    /// `"POST /api/v1/complete"`: the request line whose answers are lost.
    target: Vec<u8>,
    losing: AtomicBool,
    lost: AtomicU64,
    stop: AtomicBool,
}

/// The running proxy; stops accepting on drop (connections already open end with their peers).
pub struct LossyProxy {
    pub url: String,
    addr: SocketAddr,
    sh: Arc<Shared>,
}

impl LossyProxy {
    /// Proxies to `upstream` (`host:port`), losing the answers to requests whose line starts
    /// with `target` (e.g. `"POST /api/v1/complete"`) from the start.
    pub fn start(upstream: &str, target: &str) -> LossyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let sh = Arc::new(Shared {
            target: target.as_bytes().to_vec(),
            losing: AtomicBool::new(true),
            lost: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let upstream = upstream.to_string();
        let shared = Arc::clone(&sh);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if shared.stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                relay(client, server, Arc::clone(&shared));
            }
        });
        LossyProxy {
            url: format!("http://{addr}"),
            addr,
            sh,
        }
    }

    /// How many answers it lost so far.
    pub fn lost(&self) -> u64 {
        self.sh.lost.load(Ordering::SeqCst)
    }

    /// Lets every answer through from now on.
    pub fn pass_all(&self) {
        self.sh.losing.store(false, Ordering::SeqCst);
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.sh.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the stop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

/// Pumps both ways; an answer to a target request is read and dropped while losing.
fn relay(client: TcpStream, server: TcpStream, sh: Arc<Shared>) {
    let targeted = Arc::new(AtomicBool::new(false));
    let (mut c_in, mut s_out) = (
        client.try_clone().expect("clone"),
        server.try_clone().expect("clone"),
    );
    let (flag, shared) = (Arc::clone(&targeted), Arc::clone(&sh));
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        while let Ok(n) = c_in.read(&mut buf) {
            if n == 0 {
                break;
            }
            let chunk = &buf[..n];
            if METHODS.iter().any(|m| chunk.starts_with(m)) {
                flag.store(chunk.starts_with(&shared.target), Ordering::SeqCst);
            }
            if s_out.write_all(chunk).is_err() {
                break;
            }
        }
        let _ = s_out.shutdown(Shutdown::Write);
    });
    let (mut s_in, mut c_out) = (server, client);
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 << 10];
        let mut counted = false;
        while let Ok(n) = s_in.read(&mut buf) {
            if n == 0 {
                break;
            }
            if targeted.load(Ordering::SeqCst) && sh.losing.load(Ordering::SeqCst) {
                if !counted {
                    sh.lost.fetch_add(1, Ordering::SeqCst);
                    counted = true;
                }
                continue;
            }
            counted = false;
            if c_out.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        let _ = c_out.shutdown(Shutdown::Both);
    });
}
