//! `GET /api/v1/events/stream`: the activity feed pushed as server-sent
//! events, so a dashboard tab does not poll.
//!
//! One hub (the dashboard thread) reads new rows of `events` twice a second,
//! once for every client, into a ring. Each stream is served on its
//! connection's own thread (see `front`), so a slow or stuck browser blocks
//! only itself. The body is a reader that blocks until there is news; the
//! front door writes each read as one chunk, so nothing buffers an event.
//!
//! Resuming: `Last-Event-ID` (what `EventSource` sends on reconnect) or
//! `?after=ID`; without either, only new events. Bounds: at most
//! [`MAX_CLIENTS`] streams, [`MAX_PER_PEER`] from one address, a keep-alive comment every 15 s (a dead peer is
//! noticed by the failed write; a client that closed its connection, within a second), and each
//! stream ends after an hour (the browser reconnects where it left off).

use super::super::front::{Hangup, Request, Response, ResponseBody};
use super::super::http::{into_response, ApiError, Query, Reply};
use std::collections::VecDeque;
use std::io::Read;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use swarm_store::{EventFilter, History};

/// Streams open at once; more are refused with 503.
pub(crate) const MAX_CLIENTS: usize = 32;
/// Streams open at once from one address (a reverse proxy's clients by
/// their `X-Forwarded-For`): one client cannot take every place and keep
/// the operators' dashboards out. Half the total: the dashboards of operators behind one proxy that
/// passes no `X-Forwarded-For` share an address, and a stream a closed tab held behind a proxy
/// that keeps its upstream connection is freed only at its next keep-alive write.
pub(crate) const MAX_PER_PEER: usize = 16;
/// Events kept for clients that fall behind or resume.
const RING: usize = 1000;
/// A comment line this often keeps proxies from timing out and finds dead peers.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// How often a waiting stream looks whether its client closed the connection.
const HANGUP_CHECK: Duration = Duration::from_secs(1);
/// A stream is closed after this long; the browser resumes with Last-Event-ID.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

/// The addresses one client can use as it likes count as one: every loopback address (a local
/// process took all 32 streams from 127.0.0.2 and 127.0.0.3, h30) and an IPv6 /64 (what one
/// host is given).
fn one_client(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(v4) if v4.is_loopback() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_loopback() => IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => one_client(IpAddr::V4(v4)),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

#[derive(Default)]
struct Ring {
    /// (event id, the `data:` JSON), oldest first.
    events: VecDeque<(i64, String)>,
    /// Highest id read from the table.
    latest: i64,
    loaded: bool,
}

/// The shared ring and the clients reading it.
#[derive(Default)]
pub(crate) struct Feed {
    ring: Mutex<Ring>,
    wake: Condvar,
    clients: AtomicUsize,
    /// Streams open, by the address they come from.
    per_peer: Mutex<std::collections::HashMap<IpAddr, usize>>,
    closed: AtomicBool,
}

impl Feed {
    /// Reads events newer than the ring's latest (the hub calls this).
    pub(crate) fn poll(&self, h: &History) -> Result<(), swarm_store::StoreError> {
        let (latest, loaded) = match self.ring.lock() {
            Ok(r) => (r.latest, r.loaded),
            Err(_) => return Ok(()),
        };
        let rows = if loaded {
            h.events_after(latest, 500)?
        } else {
            let mut rows = h.events_recent(&EventFilter::default(), RING as u32)?;
            rows.sort_by_key(|e| e.id);
            rows
        };
        let Ok(mut r) = self.ring.lock() else {
            return Ok(());
        };
        r.loaded = true;
        if rows.is_empty() {
            return Ok(());
        }
        for e in rows {
            if e.id <= r.latest {
                continue;
            }
            r.latest = e.id;
            let json = serde_json::to_string(&e).unwrap_or_else(|_| "{}".into());
            r.events.push_back((e.id, json));
            while r.events.len() > RING {
                r.events.pop_front();
            }
        }
        drop(r);
        self.wake.notify_all();
        Ok(())
    }

    /// Ends every stream (server shutdown).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.wake.notify_all();
    }

    /// Counts a new stream from `peer`, or says which bound it would pass.
    fn admit(&self, peer: IpAddr) -> Result<(), ApiError> {
        let mut per_peer = self
            .per_peer
            .lock()
            .map_err(|_| ApiError::internal("event stream table poisoned"))?;
        let mine = per_peer.entry(one_client(peer)).or_default();
        if *mine >= MAX_PER_PEER {
            return Err(ApiError::new(
                503,
                format!("too many event streams open from {peer} (limit {MAX_PER_PEER}); close a dashboard tab or poll /api/v1/events?after="),
            ));
        }
        if self.clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            self.clients.fetch_sub(1, Ordering::SeqCst);
            return Err(ApiError::new(
                503,
                format!("too many event streams open (limit {MAX_CLIENTS}); close a dashboard tab or poll /api/v1/events?after="),
            ));
        }
        *mine += 1;
        Ok(())
    }

    fn leave(&self, peer: IpAddr) {
        self.clients.fetch_sub(1, Ordering::SeqCst);
        if let Ok(mut per_peer) = self.per_peer.lock() {
            let peer = one_client(peer);
            if let Some(n) = per_peer.get_mut(&peer) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    per_peer.remove(&peer);
                }
            }
        }
    }

    /// Streams open now (for /metrics and tests).
    pub(crate) fn clients(&self) -> usize {
        self.clients.load(Ordering::SeqCst)
    }

    /// What a client that has seen `after` should get next: the events, and
    /// whether some were lost off the ring (it should reload).
    fn since(&self, after: i64) -> (Vec<(i64, String)>, bool) {
        let Ok(r) = self.ring.lock() else {
            return (Vec::new(), false);
        };
        let gap = r
            .events
            .front()
            .is_some_and(|(first, _)| *first > after + 1)
            && after < r.latest
            && after > 0;
        let out = r
            .events
            .iter()
            .filter(|(id, _)| *id > after)
            .cloned()
            .collect();
        (out, gap)
    }

    fn latest(&self) -> i64 {
        self.ring.lock().map(|r| r.latest).unwrap_or(0)
    }

    /// Waits for news, at most `d`.
    fn wait(&self, seen: i64, d: Duration) {
        let Ok(r) = self.ring.lock() else { return };
        if r.latest > seen || self.closed.load(Ordering::SeqCst) {
            return;
        }
        let _ = self.wake.wait_timeout(r, d);
    }
}

/// Opens a stream: checks the limit and answers with a body that yields
/// events as they come (the front door writes it chunked, on the
/// connection's own thread).
pub(crate) fn open(feed: &Arc<Feed>, req: &Request<'_>, url: &str, peer: IpAddr) -> Response {
    let q = Query::parse(url);
    let resume = req
        .header("Last-Event-ID")
        .map(str::to_string)
        .or_else(|| q.get("after").map(str::to_string));
    let after = match resume.as_deref().map(str::parse::<i64>) {
        None => feed.latest(),
        Some(Ok(n)) if n >= 0 => n,
        Some(_) => {
            let e = ApiError::field(
                400,
                "after",
                "`after` / Last-Event-ID must be an event id (a whole number)",
            );
            return into_response(Reply::from(e));
        }
    };
    if let Err(e) = feed.admit(peer) {
        return into_response(Reply::from(e));
    }
    let reader = Events {
        hangup: req.hangup(),
        feed: Arc::clone(feed),
        peer,
        seen: after,
        began: Instant::now(),
        quiet_since: Instant::now(),
        pending: b"retry: 3000\n\n".to_vec(),
        done: false,
    };
    Response {
        status: 200,
        content_type: "text/event-stream; charset=utf-8",
        headers: vec![
            ("Cache-Control", "no-cache, no-store".to_string()),
            ("X-Accel-Buffering", "no".to_string()),
        ],
        body: ResponseBody::Stream(Box::new(reader)),
    }
}

/// The body of one stream: blocks until there is something to send.
struct Events {
    /// Whether the client has closed its connection, looked at while there is no news.
    hangup: Option<Hangup>,
    feed: Arc<Feed>,
    peer: IpAddr,
    seen: i64,
    began: Instant,
    quiet_since: Instant,
    pending: Vec<u8>,
    done: bool,
}

impl Events {
    /// Fills `pending` with the next events or a keep-alive; false at the end.
    fn fill(&mut self) -> bool {
        loop {
            if self.feed.closed.load(Ordering::SeqCst) || self.began.elapsed() >= MAX_LIFETIME {
                return false;
            }
            let (events, gap) = self.feed.since(self.seen);
            if gap {
                self.pending.extend_from_slice(b"event: gap\ndata: {}\n\n");
            }
            for (id, json) in &events {
                self.pending
                    .extend_from_slice(format!("id: {id}\ndata: {json}\n\n").as_bytes());
                self.seen = *id;
            }
            if self.pending.is_empty() && self.quiet_since.elapsed() >= KEEPALIVE {
                self.pending.extend_from_slice(b": keep-alive\n\n");
            }
            if !self.pending.is_empty() {
                self.quiet_since = Instant::now();
                return true;
            }
            let left = KEEPALIVE.saturating_sub(self.quiet_since.elapsed());
            self.feed.wait(
                self.seen,
                left.clamp(Duration::from_millis(100), HANGUP_CHECK),
            );
            if self.hangup.as_ref().is_some_and(Hangup::seen) {
                return false;
            }
        }
    }
}

impl Read for Events {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.pending.is_empty() && (self.done || !self.fill()) {
            self.done = true;
            return Ok(0);
        }
        let n = buf.len().min(self.pending.len());
        buf[..n].copy_from_slice(&self.pending[..n]);
        self.pending.drain(..n);
        Ok(n)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.feed.leave(self.peer);
    }
}

#[cfg(test)]
mod tests {
    use super::{Feed, MAX_CLIENTS, MAX_PER_PEER};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn loopback_addresses_and_an_ipv6_64_count_as_one_client() {
        let feed = Feed::default();
        for i in 0..MAX_PER_PEER {
            let peer = ip(&format!("127.0.0.{}", 2 + i % 2));
            assert!(feed.admit(peer).is_ok(), "stream {i}");
        }
        for more in ["127.0.0.4", "::1", "::ffff:127.0.0.9"] {
            let e = feed.admit(ip(more)).expect_err(more).body.error;
            assert!(
                e.contains("too many event streams open from"),
                "{more}: {e}"
            );
        }
        for i in 0..MAX_PER_PEER {
            assert!(
                feed.admit(ip(&format!("2001:db8::{i:x}"))).is_ok(),
                "v6 {i}"
            );
        }
        assert!(feed.admit(ip("2001:db8::ffff:1")).is_err(), "the same /64");
        assert_eq!(
            feed.clients(),
            MAX_CLIENTS,
            "the others are another client's"
        );
        feed.leave(ip("127.0.0.5"));
        assert!(
            feed.admit(ip("127.0.0.6")).is_ok(),
            "a place freed on loopback"
        );
    }
}
