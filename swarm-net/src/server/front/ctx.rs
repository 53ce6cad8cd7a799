//! What every connection thread of the front door shares: the limits, the
//! handler, the open sockets and the counters.

use super::limits::HttpLimits;
use super::request::{Request, Response};
use super::tls::TlsServer;
use std::collections::BTreeMap;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

pub(crate) type Handler = Arc<dyn Fn(&mut Request<'_>) -> Response + Send + Sync>;

/// Counters of the front door, for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct FrontStats {
    pub(crate) open: AtomicUsize,
    pub(crate) overflow_open: AtomicUsize,
    pub(crate) accepted: AtomicU64,
    /// Refused before routing or for lack of room, by status.
    pub(crate) refused_busy: AtomicU64,
    pub(crate) refused_timeout: AtomicU64,
    pub(crate) refused_malformed: AtomicU64,
    pub(crate) refused_too_large: AtomicU64,
    /// Closed to make room for a new connection, by what they were doing.
    pub(crate) evicted_idle: AtomicU64,
    pub(crate) evicted_head: AtomicU64,
    pub(crate) evicted_behind: AtomicU64,
    /// Connections reset because a reply was not read by its deadline.
    pub(crate) reply_timeouts: AtomicU64,
    /// Bytes of large replies being sent now (`reply_budget`).
    pub(crate) reply_bytes: AtomicU64,
    /// When a connection last found every place serving a request
    /// (milliseconds since [`EPOCH`], plus one; 0: never).
    full_at_ms: AtomicU64,
}

/// The instant `FrontStats::full_at_ms` counts from.
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

impl FrontStats {
    /// Appends the front door's gauges and counters (Prometheus text).
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let g = |v: &AtomicUsize| v.load(Ordering::Relaxed);
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let one = |out: &mut String, name: &str, kind: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {value}");
        };
        one(
            out,
            "swarm_http_connections_open",
            "gauge",
            "Connections being served.",
            g(&self.open) as u64,
        );
        one(
            out,
            "swarm_http_connections_accepted_total",
            "counter",
            "Connections accepted.",
            c(&self.accepted),
        );
        one(
            out,
            "swarm_http_reply_timeouts_total",
            "counter",
            "Connections reset because their client read its replies slower than \
             http.min_reply_rate on average by more than its slack (http.write_timeout_s).",
            c(&self.reply_timeouts),
        );
        one(
            out,
            "swarm_http_reply_bytes_sending",
            "gauge",
            "Bytes of large replies being sent now, which clients that read slowly hold (at \
             256 MiB further ones get 503).",
            c(&self.reply_bytes),
        );
        let _ = writeln!(
            out,
            "# HELP swarm_http_refused_total Requests refused by the front door before any handler, by reason."
        );
        let _ = writeln!(out, "# TYPE swarm_http_refused_total counter");
        for (reason, v) in [
            ("busy", &self.refused_busy),
            ("timeout", &self.refused_timeout),
            ("malformed", &self.refused_malformed),
            ("too_large", &self.refused_too_large),
        ] {
            let _ = writeln!(
                out,
                "swarm_http_refused_total{{reason=\"{reason}\"}} {}",
                c(v)
            );
        }
        let _ = writeln!(
            out,
            "# HELP swarm_http_evicted_total Connections closed to make room for a new one while all were taken, by what they were doing: idle between requests, not done sending their request headers, or behind on reading their replies."
        );
        let _ = writeln!(out, "# TYPE swarm_http_evicted_total counter");
        for (state, v) in [
            ("idle", &self.evicted_idle),
            ("head", &self.evicted_head),
            ("behind", &self.evicted_behind),
        ] {
            let _ = writeln!(
                out,
                "swarm_http_evicted_total{{state=\"{state}\"}} {}",
                c(v)
            );
        }
    }

    /// Notes that a connection found every place serving a request.
    pub(super) fn note_full(&self) {
        let ms = EPOCH.elapsed().as_millis() as u64 + 1;
        self.full_at_ms.store(ms, Ordering::Relaxed);
    }

    /// Whether a connection found every place serving a request within
    /// `window`: then requests other than health's are answered 503.
    pub(crate) fn full_within(&self, window: Duration) -> bool {
        let at = self.full_at_ms.load(Ordering::Relaxed);
        at > 0 && EPOCH.elapsed().as_millis() as u64 + 1 - at <= window.as_millis() as u64
    }

    pub(super) fn refused(&self, status: u16) {
        let c = match status {
            503 => &self.refused_busy,
            408 => &self.refused_timeout,
            413 | 414 | 431 => &self.refused_too_large,
            _ => &self.refused_malformed,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What every connection thread shares.
pub(crate) struct Ctx {
    pub(super) limits: HttpLimits,
    pub(super) handler: Handler,
    /// Set: every connection starts with a TLS handshake.
    pub(super) tls: Option<TlsServer>,
    /// Paths answered even by overflow threads.
    pub(super) always_open: fn(&str) -> bool,
    pub(super) stop: AtomicBool,
    pub(super) stats: Arc<FrontStats>,
    /// Open sockets, so a shutdown can close them, and what each connection
    /// is doing, so one can be closed to make room. A connection counted in
    /// `stats.open` is in here until its thread ends or it is evicted.
    pub(super) sockets: Mutex<BTreeMap<u64, Slot>>,
    pub(super) next_id: AtomicU64,
}

/// What a connection is doing, for choosing one to close when all the
/// places are taken:
///
/// ```text
///  accept ──▶ Head ──head complete──▶ Busy ──answer written, keep-alive──▶ Idle
///              ▲                       (never evicted)                      │
///              │                         │ client behind on its replies     │
///              │                         ▼                                  │
///              │                       Behind (evicted last)                │
///              └──────────────────first byte of the next request────────────┘
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    /// Waiting for (the rest of) a request head, or in the TLS handshake.
    Head,
    /// Kept alive between requests, no byte of the next one yet.
    Idle,
    /// Serving a request: its body, the handler, the answer.
    Busy,
    /// Answering a client that reads its replies slower than `min_reply_rate`
    /// (`pace`): closed to make room after the idle and the half-sent ones.
    Behind,
}

/// One open connection in the registry.
pub(super) struct Slot {
    pub(super) sock: TcpStream,
    phase: Phase,
    /// When it entered `phase`.
    since: Instant,
    overflow: bool,
}

impl Ctx {
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Books a new connection (waiting for its head); false if the
    /// registry is unusable.
    pub(super) fn register(&self, id: u64, sock: TcpStream, overflow: bool) -> bool {
        let Ok(mut socks) = self.sockets.lock() else {
            return false;
        };
        let slot = Slot {
            sock,
            phase: Phase::Head,
            since: Instant::now(),
            overflow,
        };
        socks.insert(id, slot);
        true
    }

    /// Removes a connection from the registry as its thread ends; false if
    /// it was not there (evicted, and counted out then).
    pub(super) fn deregister(&self, id: u64) -> bool {
        self.sockets
            .lock()
            .map(|mut socks| socks.remove(&id).is_some())
            .unwrap_or(false)
    }

    /// Records that connection `id` now does `phase`; false if it was
    /// evicted, and then it must not go on (above all not run a handler).
    pub(super) fn enter(&self, id: u64, phase: Phase) -> bool {
        let Ok(mut socks) = self.sockets.lock() else {
            return true;
        };
        match socks.get_mut(&id) {
            Some(slot) => {
                if slot.phase != phase {
                    slot.phase = phase;
                    slot.since = Instant::now();
                }
                true
            }
            None => false,
        }
    }

    /// Finds a place for a new connection once the open gauge says all are
    /// taken. The registry is the truth: a connection whose thread is
    /// ending leaves it a moment before the gauge, and its place is free
    /// (closing another for it would cut off a request just begun). Else the
    /// one idle longest between requests, else the one waiting longest for
    /// its request head, is closed. False: every place serves a request.
    pub(super) fn make_room(&self) -> bool {
        let Ok(mut socks) = self.sockets.lock() else {
            return false;
        };
        let booked = socks.values().filter(|s| !s.overflow).count();
        booked < self.limits.max_connections || Self::evict_one(&self.stats, &mut socks).is_some()
    }

    /// Closes the connection idle longest, else the one waiting longest for
    /// its head, and counts it out of `stats.open` (its thread will not).
    /// None: every connection is serving a request (or is an overflow one).
    fn evict_one(stats: &FrontStats, socks: &mut BTreeMap<u64, Slot>) -> Option<Phase> {
        let oldest = |phase: Phase| {
            socks
                .iter()
                .filter(|(_, s)| !s.overflow && s.phase == phase)
                .min_by_key(|(_, s)| s.since)
                .map(|(id, _)| *id)
        };
        let (id, phase) = oldest(Phase::Idle)
            .map(|id| (id, Phase::Idle))
            .or_else(|| oldest(Phase::Head).map(|id| (id, Phase::Head)))
            .or_else(|| oldest(Phase::Behind).map(|id| (id, Phase::Behind)))?;
        let slot = socks.remove(&id)?;
        // Its thread will not count itself out (it is not booked any more).
        stats.open.fetch_sub(1, Ordering::SeqCst);
        if phase == Phase::Behind {
            // A reset: the replies it did not read are dropped, not left to a client
            // that reads nothing (h112 L1).
            let _ = rustix::net::sockopt::set_socket_linger(&slot.sock, Some(Duration::ZERO));
        }
        // Its thread, blocked in a read, wakes up to the close and ends.
        let _ = slot.sock.shutdown(Shutdown::Both);
        let counter = match phase {
            Phase::Idle => &stats.evicted_idle,
            Phase::Behind => &stats.evicted_behind,
            _ => &stats.evicted_head,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        Some(phase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;
    use std::time::Duration;

    fn ctx() -> Ctx {
        Ctx {
            limits: HttpLimits::default(),
            handler: Arc::new(|_| Response::json(200, "{}".into())),
            tls: None,
            always_open: |_| false,
            stop: AtomicBool::new(false),
            stats: Arc::default(),
            sockets: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    fn evict_one(ctx: &Ctx) -> Option<Phase> {
        Ctx::evict_one(&ctx.stats, &mut ctx.sockets.lock().expect("registry"))
    }

    /// Books connections `ids`, waiting for their heads; the client ends.
    fn book(ctx: &Ctx, ids: std::ops::Range<u64>) -> Vec<TcpStream> {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        ids.map(|id| {
            let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
            let (sock, _) = listener.accept().expect("accept");
            assert!(ctx.register(id, sock, false));
            ctx.stats.open.fetch_add(1, Ordering::SeqCst);
            client
        })
        .collect()
    }

    /// A connection whose thread is ending has left the registry but not
    /// yet the gauge: its place is free, and no half-sent head is closed for
    /// a newcomer.
    #[test]
    fn a_place_left_by_an_ending_thread_is_taken_without_closing_anyone() {
        let mut ctx = ctx();
        ctx.limits.max_connections = 3;
        let mut clients = book(&ctx, 0..3);
        assert!(ctx.deregister(1));
        // The gauge still says 3 of 3 (the thread has not counted itself out).
        assert!(ctx.make_room());
        assert_eq!(ctx.stats.evicted_head.load(Ordering::SeqCst), 0);
        assert!(ctx.enter(0, Phase::Head) && ctx.enter(2, Phase::Head));
        // Truly full: the oldest head makes room.
        clients.extend(book(&ctx, 3..4));
        assert!(ctx.make_room());
        assert_eq!(ctx.stats.evicted_head.load(Ordering::SeqCst), 1);
        assert!(!ctx.enter(0, Phase::Busy), "the oldest head was closed");
    }

    /// h111 F2: clients that read their replies at a trickle, reset and back at once, held
    /// every place. One behind on its replies makes room once no idle or half-sent one is
    /// left; one answering a client that keeps up never does.
    #[test]
    fn a_connection_behind_on_its_replies_makes_room_after_the_idle_and_half_sent_ones() {
        let ctx = ctx();
        let _clients = book(&ctx, 0..3);
        assert!(ctx.enter(0, Phase::Busy));
        assert!(ctx.enter(1, Phase::Behind));
        assert_eq!(evict_one(&ctx), Some(Phase::Head));
        assert!(!ctx.enter(2, Phase::Busy), "the half-sent head went first");
        assert_eq!(evict_one(&ctx), Some(Phase::Behind));
        assert!(!ctx.enter(1, Phase::Idle), "then the one behind");
        assert_eq!(evict_one(&ctx), None, "never the one keeping up");
        assert_eq!(ctx.stats.evicted_behind.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn closes_the_longest_idle_first_then_the_longest_half_sent_and_never_a_busy_one() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let ctx = ctx();
        // Booked in order of id; 5 is an overflow connection.
        let mut clients = Vec::new();
        for id in 0..6 {
            let client = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
            client
                .set_read_timeout(Some(Duration::from_secs(5)))
                .expect("timeout");
            let (sock, _) = listener.accept().expect("accept");
            assert!(ctx.register(id, sock, id == 5));
            clients.push(client);
            std::thread::sleep(Duration::from_millis(2));
        }
        ctx.stats.open.store(5, Ordering::SeqCst);
        assert!(ctx.enter(0, Phase::Busy));
        assert!(ctx.enter(4, Phase::Idle));
        std::thread::sleep(Duration::from_millis(2));
        assert!(ctx.enter(2, Phase::Idle));
        // Idle ones first, the one idle longest first; then the half-sent
        // heads, the oldest first.
        for (phase, id) in [
            (Phase::Idle, 4),
            (Phase::Idle, 2),
            (Phase::Head, 1),
            (Phase::Head, 3),
        ] {
            assert_eq!(evict_one(&ctx), Some(phase));
            assert!(!ctx.enter(id, Phase::Busy), "{id} evicted");
            let mut buf = [0u8; 8];
            assert_eq!(clients[id as usize].read(&mut buf).expect("closed"), 0);
        }
        // Left: one serving a request and one overflow connection.
        assert_eq!(evict_one(&ctx), None);
        assert!(ctx.enter(0, Phase::Busy) && ctx.enter(5, Phase::Head));
        assert_eq!(ctx.stats.open.load(Ordering::SeqCst), 1);
        assert_eq!(ctx.stats.evicted_idle.load(Ordering::SeqCst), 2);
        assert_eq!(ctx.stats.evicted_head.load(Ordering::SeqCst), 2);
        // Their threads end without counting themselves out again.
        assert!(!ctx.deregister(4));
        assert!(ctx.deregister(0));
    }
}
