//! The bounds of the front door, set by the operator (`[http]`).

use std::time::Duration;

/// Bodies up to this size go out in one write with their head, and do not count against
/// the reply memory budget (`reply_budget`): the front door's threads bound them. A larger
/// one is written after its head, not copied next to it, in pieces of this size, each
/// credited to the connection's pace as it goes.
pub(super) const ONE_WRITE_MAX: usize = 64 * 1024;

/// The bounds of the front door. Every wait has a timeout, every input a cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    /// Connections served at once. At the bound a new connection takes the
    /// place of one idle between requests (else of one still sending its
    /// request head), oldest first; only when every one is serving a
    /// request is `/api/v1/health` alone answered (by a few overflow
    /// threads) and anything else gets 503.
    pub max_connections: usize,
    /// From connecting (or a request's first byte) to its complete headers.
    pub header_timeout: Duration,
    /// A keep-alive connection with no new request for this long is closed.
    pub idle_timeout: Duration,
    /// No body byte for this long: 408 and the connection is closed.
    pub body_idle_timeout: Duration,
    /// After one body idle timeout of grace, the body must arrive at least
    /// this fast on average (bytes per second), whatever its size.
    pub min_body_rate: u64,
    /// How far behind `min_reply_rate` a client may fall while it reads its
    /// replies (see `pace`): a write may block this long on a new connection.
    pub write_timeout: Duration,
    /// Replies must be read at least this fast on average (bytes per second),
    /// give or take `write_timeout`, else the connection is reset: a client
    /// reading a trickle held its place, and the reply's memory, for hours
    /// (h110, h111).
    pub min_reply_rate: u64,
    /// Request line plus headers (beyond: 431).
    pub max_header_bytes: usize,
    /// The request target (beyond: 414).
    pub max_url_bytes: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(15),
            min_body_rate: 16 * 1024,
            write_timeout: Duration::from_secs(30),
            min_reply_rate: 16 * 1024,
            max_header_bytes: 16 * 1024,
            max_url_bytes: 8 * 1024,
        }
    }
}

/// The smallest listen queue, whatever `max_connections` is.
const MIN_LISTEN_BACKLOG: usize = 1024;

impl HttpLimits {
    /// Connections the kernel may queue for the acceptor: enough that every
    /// connection the server serves can reconnect at once without a SYN
    /// dropped. Not a bound on what is served (`max_connections` is).
    pub(crate) fn listen_backlog(&self) -> usize {
        self.max_connections.max(MIN_LISTEN_BACKLOG)
    }

    pub(super) fn body(&self) -> BodyLimits {
        BodyLimits {
            idle: self.body_idle_timeout,
            min_rate: self.min_body_rate,
        }
    }
}

/// The body's share of the limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BodyLimits {
    pub(super) idle: Duration,
    pub(super) min_rate: u64,
}
