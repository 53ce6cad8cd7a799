//! What every connection thread of the front door shares: the limits, the
//! handler, the open sockets and the counters.

use super::limits::HttpLimits;
use super::request::{Request, Response};
use super::tls::TlsServer;
use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

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
}

impl FrontStats {
    /// Appends the front door's gauges and counters (Prometheus text).
    pub(crate) fn render(&self, out: &mut String) {
        use std::fmt::Write as _;
        let g = |v: &AtomicUsize| v.load(Ordering::Relaxed);
        let c = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP swarm_http_connections_open Connections being served."
        );
        let _ = writeln!(out, "# TYPE swarm_http_connections_open gauge");
        let _ = writeln!(out, "swarm_http_connections_open {}", g(&self.open));
        let _ = writeln!(
            out,
            "# HELP swarm_http_connections_accepted_total Connections accepted."
        );
        let _ = writeln!(out, "# TYPE swarm_http_connections_accepted_total counter");
        let _ = writeln!(
            out,
            "swarm_http_connections_accepted_total {}",
            c(&self.accepted)
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
    /// Open sockets, so a shutdown can close them.
    pub(super) sockets: Mutex<BTreeMap<u64, TcpStream>>,
    pub(super) next_id: AtomicU64,
}

impl Ctx {
    pub(super) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
