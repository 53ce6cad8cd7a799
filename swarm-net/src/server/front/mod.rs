//! The front door: accepts connections and speaks HTTP/1.x on them with
//! every wait bounded and every input capped, so no client can jam the
//! server.
//!
//! Why not tiny_http (the first choice of the design): it gives a handler
//! no per-connection read timeouts, reads headers without a size limit,
//! keeps idle keep-alive connections forever, and has no bound on open
//! connections; none of it is configurable without forking it. The async
//! servers (hyper and friends) bound all of it but would put an executor
//! under handlers that block on the single writer by design. So requests
//! are parsed by `httparse` (hyper's own parser) and served on blocking
//! threads here:
//!
//! ```text
//! accept ──▶ open < max_connections ? ──yes──▶ own thread: head ▶ handler ▶ reply (keep-alive)
//!                   │ no                               ▲
//!                   ▼                                  │ takes its place
//!            a connection idle between requests ──yes──┤ (closed; oldest first)
//!                   │ none                             │
//!            a connection still sending its head ─yes──┘ (closed; oldest first)
//!                   │ none: every one is serving a request
//!                   ▼
//!            overflow thread (few, 2 s): /api/v1/health answered, anything else 503
//!                   │ overflow full
//!                   ▼
//!            503 written at once, closed
//! ```
//! Each connection's thread reads its request and runs the handler itself
//! (no hand-over between threads), which is also what keeps latency low.
//! Idle and half-sent connections cannot shut others out: at the bound the
//! oldest of them is closed for a new one (an HTTP client retries a request
//! on a kept-alive connection the server closed). Not per client address:
//! drones behind NAT, or behind the nginx proxy, share one.
//! With `tls_cert`/`tls_key`, each connection thread first runs the TLS
//! handshake (under the header timeout) and then the same loop over the
//! encrypted stream.
//! Files: `conn.rs` the per-connection loop · `request.rs` what handlers see ·
//! `socket.rs` the stream and its buffered reads · `limits.rs` the bounds ·
//! `ctx.rs` what connection threads share · `tls.rs` the handshake.

mod conn;
mod ctx;
mod limits;
mod pace;
mod reply_budget;
mod request;
mod socket;
mod tls;

use ctx::Ctx;
pub(crate) use ctx::{FrontStats, Handler};
pub use limits::HttpLimits;
pub(crate) use request::{Method, Request, Response, ResponseBody};
pub(crate) use socket::Hangup;
use socket::Stream;
pub use tls::{TlsServer, TlsSetupError};

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub(crate) use conn::parse_head;

/// Connections beyond `max_connections` served at once (one request, 2 s).
const OVERFLOW_THREADS: usize = 32;

/// How long an overflow connection may take to send its request.
const OVERFLOW_WAIT: Duration = Duration::from_secs(2);

/// The running front door.
pub(crate) struct FrontDoor {
    addr: SocketAddr,
    ctx: Arc<Ctx>,
    acceptor: Option<JoinHandle<()>>,
}

/// Binds `addr` (port 0 picks one) with a listen queue of `backlog`.
///
/// Not `TcpListener::bind`: std listens with a queue of 128, and Linux drops
/// a SYN that finds the queue full; its client sends it again only a second
/// later. A burst of new connections (200 stalled ones opened at once, or
/// reopened together when the server times them out) overflowed it and
/// held `/api/v1/health` for a second.
pub(crate) fn bind(addr: SocketAddr, backlog: usize) -> io::Result<TcpListener> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};
    let family = match addr {
        SocketAddr::V4(_) => AddressFamily::INET,
        SocketAddr::V6(_) => AddressFamily::INET6,
    };
    let fd = rustix::net::socket_with(family, SocketType::STREAM, SocketFlags::CLOEXEC, None)?;
    // As std does: a restarted server binds while old connections linger.
    rustix::net::sockopt::set_socket_reuseaddr(&fd, true)?;
    rustix::net::bind(&fd, &addr)?;
    // The kernel caps it at net.core.somaxconn.
    rustix::net::listen(&fd, i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(TcpListener::from(fd))
}

/// Starts accepting on `listener`.
pub(crate) fn start(
    listener: TcpListener,
    limits: HttpLimits,
    tls: Option<TlsServer>,
    handler: Handler,
    always_open: fn(&str) -> bool,
    stats: Arc<FrontStats>,
) -> io::Result<FrontDoor> {
    let addr = listener.local_addr()?;
    let ctx = Arc::new(Ctx {
        limits,
        handler,
        tls,
        always_open,
        stop: AtomicBool::new(false),
        stats,
        sockets: Mutex::new(BTreeMap::new()),
        next_id: AtomicU64::new(0),
    });
    let acceptor = {
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name("swarm-accept".into())
            .spawn(move || accept_loop(&listener, &ctx))?
    };
    Ok(FrontDoor {
        addr,
        ctx,
        acceptor: Some(acceptor),
    })
}

impl FrontDoor {
    /// Stops accepting, closes every open connection, and waits (bounded)
    /// for handlers in flight to finish.
    pub(crate) fn stop(&mut self) {
        let Some(acceptor) = self.acceptor.take() else {
            return;
        };
        self.ctx.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        let _ = acceptor.join();
        if let Ok(socks) = self.ctx.sockets.lock() {
            for s in socks.values() {
                let _ = s.sock.shutdown(Shutdown::Read);
            }
        }
        let until = Instant::now() + Duration::from_secs(10);
        while self.ctx.stats.open.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: &TcpListener, ctx: &Arc<Ctx>) {
    loop {
        let (sock, peer) = match listener.accept() {
            Ok(x) => x,
            Err(e) => {
                if ctx.stopping() {
                    return;
                }
                // Out of descriptors and the like: do not spin.
                tracing::warn!(error = %e, "accept failed");
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
        };
        if ctx.stopping() {
            return;
        }
        let _ = sock.set_nodelay(true);
        ctx.stats.accepted.fetch_add(1, Ordering::Relaxed);
        let open = ctx.stats.open.fetch_add(1, Ordering::SeqCst);
        // At the bound, a connection idle between requests (else one still
        // sending its head) is closed and this one takes its place: idle
        // and half-open sockets must not shut out a drone with a request.
        if open < ctx.limits.max_connections || ctx.make_room() {
            spawn_conn(sock, peer, ctx, false);
            continue;
        }
        ctx.stats.open.fetch_sub(1, Ordering::SeqCst);
        ctx.stats.note_full();
        let over = ctx.stats.overflow_open.fetch_add(1, Ordering::SeqCst);
        if over < OVERFLOW_THREADS {
            spawn_conn(sock, peer, ctx, true);
        } else {
            ctx.stats.overflow_open.fetch_sub(1, Ordering::SeqCst);
            ctx.stats.refused(503);
            refuse_now(sock);
        }
    }
}

/// 503 without reading a byte: nothing here may block the acceptor.
fn refuse_now(mut sock: TcpStream) {
    let _ = sock.set_nonblocking(true);
    let body = r#"{"error":"server busy: too many open connections; retry shortly"}"#;
    let _ = write!(
        sock,
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = sock.shutdown(Shutdown::Write);
}

/// Gives the connection its own thread; it deregisters itself when done.
fn spawn_conn(sock: TcpStream, peer: SocketAddr, ctx: &Arc<Ctx>, overflow: bool) {
    let id = ctx.next_id.fetch_add(1, Ordering::Relaxed);
    let counter = if overflow {
        &ctx.stats.overflow_open
    } else {
        &ctx.stats.open
    };
    // Unbooked, it could not be closed on stop and would count as evicted.
    let booked = sock
        .try_clone()
        .is_ok_and(|clone| ctx.register(id, clone, overflow));
    if !booked {
        tracing::warn!("cannot book a connection; connection refused");
        refuse_now(sock);
        counter.fetch_sub(1, Ordering::SeqCst);
        return;
    }
    let worker_ctx = ctx.clone();
    let spawned = std::thread::Builder::new()
        .name(
            if overflow {
                "swarm-http-over"
            } else {
                "swarm-http"
            }
            .into(),
        )
        .spawn(move || {
            let ctx = worker_ctx;
            let _done = Deregister {
                ctx: &ctx,
                id,
                overflow,
            };
            let mut limits = ctx.limits.clone();
            if overflow {
                limits.header_timeout = limits.header_timeout.min(OVERFLOW_WAIT);
                limits.body_idle_timeout = limits.body_idle_timeout.min(OVERFLOW_WAIT);
            }
            let stream = match &ctx.tls {
                None => Stream::Plain(sock),
                Some(tls) => {
                    let deadline = Instant::now() + limits.header_timeout;
                    match tls::accept(sock, tls, deadline) {
                        Ok(s) => s,
                        Err(why) => {
                            handshake_failed(&ctx, peer, why);
                            return;
                        }
                    }
                }
            };
            conn::serve(stream, peer, &ctx, &limits, id, overflow);
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start a connection thread; connection refused");
        if let Ok(mut socks) = ctx.sockets.lock() {
            if let Some(s) = socks.remove(&id) {
                refuse_now(s.sock);
            }
        }
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counts and logs a connection that never finished its TLS handshake.
fn handshake_failed(ctx: &Ctx, peer: SocketAddr, why: tls::NoHandshake) {
    match why {
        tls::NoHandshake::TimedOut => {
            ctx.stats.refused(408);
            tracing::debug!(%peer, "TLS handshake not complete within the header timeout; closed");
        }
        tls::NoHandshake::PlainHttp => {
            ctx.stats.refused(400);
            tracing::info!(%peer, "a client spoke plain http to the TLS port; told it to use https");
        }
        tls::NoHandshake::Gone(cause) => {
            ctx.stats.refused(400);
            tracing::info!(%peer, error = %cause, "TLS handshake failed");
        }
    }
}

/// Removes a connection from the books however its thread ends.
struct Deregister<'a> {
    ctx: &'a Ctx,
    id: u64,
    overflow: bool,
}

impl Drop for Deregister<'_> {
    fn drop(&mut self) {
        // Not booked any more: evicted, and counted out then.
        if !self.ctx.deregister(self.id) {
            return;
        }
        let counter = if self.overflow {
            &self.ctx.stats.overflow_open
        } else {
            &self.ctx.stats.open
        };
        counter.fetch_sub(1, Ordering::SeqCst);
    }
}
