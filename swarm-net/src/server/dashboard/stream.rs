//! `GET /api/v1/events/stream`: the activity feed pushed as server-sent
//! events, so a dashboard tab does not poll.
//!
//! One hub (the dashboard thread) reads new rows of `events` twice a second,
//! once for every client, into a ring. Each client has its own small thread
//! that writes what it has not seen yet, so a slow or stuck browser blocks
//! only itself and never an HTTP worker. The response is taken over from
//! tiny_http (`Request::upgrade`) and written as a close-delimited HTTP/1.1
//! body: no chunk buffering stands between an event and the browser.
//!
//! Resuming: `Last-Event-ID` (what `EventSource` sends on reconnect) or
//! `?after=ID`; without either, only new events. Bounds: at most
//! [`MAX_CLIENTS`] streams, a keep-alive comment every 15 s (a dead peer is
//! noticed by the failed write), and each stream ends after an hour (the
//! browser reconnects where it left off).

use super::super::http::{header, respond, ApiError, Query, Reply};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use swarm_store::{EventFilter, History};

/// Streams open at once; more are refused with 503.
pub(crate) const MAX_CLIENTS: usize = 32;
/// Events kept for clients that fall behind or resume.
const RING: usize = 1000;
/// A comment line this often keeps proxies from timing out and finds dead peers.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// A stream is closed after this long; the browser resumes with Last-Event-ID.
const MAX_LIFETIME: Duration = Duration::from_secs(3600);

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

/// Takes over the request: checks the limit, answers the headers, and hands
/// the connection to its own thread.
pub(crate) fn accept(feed: &Arc<Feed>, req: tiny_http::Request, url: &str) {
    let q = Query::parse(url);
    let resume = header(&req, "Last-Event-ID")
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
            respond(req, Reply::from(e));
            return;
        }
    };
    if feed.clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
        feed.clients.fetch_sub(1, Ordering::SeqCst);
        let e = ApiError::new(503, format!("too many event streams open (limit {MAX_CLIENTS}); close a dashboard tab or poll /api/v1/events?after="));
        respond(req, Reply::from(e));
        return;
    }
    let mut resp = tiny_http::Response::empty(200);
    for (k, v) in [
        ("Content-Type", "text/event-stream; charset=utf-8"),
        ("Cache-Control", "no-cache, no-store"),
        ("X-Accel-Buffering", "no"),
    ] {
        if let Ok(h) = tiny_http::Header::from_bytes(k, v) {
            resp = resp.with_header(h);
        }
    }
    // `upgrade` writes the status line and headers without a length or
    // chunking and gives back the raw connection; the body ends when it closes.
    let stream = req.upgrade("swarm-events", resp);
    let feed2 = Arc::clone(feed);
    let spawned = std::thread::Builder::new()
        .name("swarm-sse".into())
        .spawn(move || {
            serve(&feed2, stream, after);
            feed2.clients.fetch_sub(1, Ordering::SeqCst);
        });
    if let Err(e) = spawned {
        feed.clients.fetch_sub(1, Ordering::SeqCst);
        tracing::warn!(error = %e, "cannot start an event-stream thread");
    }
}

fn serve(feed: &Feed, mut out: Box<dyn tiny_http::ReadWrite + Send>, mut seen: i64) {
    let began = Instant::now();
    let mut quiet_since = Instant::now();
    if out
        .write_all(b"retry: 3000\n\n")
        .and_then(|()| out.flush())
        .is_err()
    {
        return;
    }
    while !feed.closed.load(Ordering::SeqCst) && began.elapsed() < MAX_LIFETIME {
        let (events, gap) = feed.since(seen);
        let mut buf = String::new();
        if gap {
            buf.push_str("event: gap\ndata: {}\n\n");
        }
        for (id, json) in &events {
            buf.push_str(&format!("id: {id}\ndata: {json}\n\n"));
            seen = *id;
        }
        if buf.is_empty() && quiet_since.elapsed() >= KEEPALIVE {
            buf.push_str(": keep-alive\n\n");
        }
        if !buf.is_empty() {
            if out
                .write_all(buf.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                return;
            }
            quiet_since = Instant::now();
        }
        feed.wait(
            seen,
            KEEPALIVE
                .saturating_sub(quiet_since.elapsed())
                .max(Duration::from_millis(100)),
        );
    }
}
