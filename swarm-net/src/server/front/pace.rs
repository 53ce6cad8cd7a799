//! How long a connection's writes may block, over the whole connection: a
//! bucket of time. It starts with the grace (`write_timeout`), every write is
//! credited with what its bytes take at `min_reply_rate`, the time a write
//! blocks is taken out, and it never holds more than twice the grace.
//!
//! One deadline per reply (h110's fix) let a client that stopped reading a
//! large package keep its place for size ÷ rate (hours, h111 F1), and a
//! pipelining client reading steadily above the rate was cut off because
//! the kernel still held earlier replies' bytes (h111 F3). The bucket runs
//! dry only for a client slower than the rate on average: one that reads
//! nothing is cut within twice the grace of its kernel buffers filling,
//! one at half the rate within about four times the grace. A stream's waits
//! for news, and a keep-alive connection's idle time, are not writes.

use super::limits::HttpLimits;
use std::time::{Duration, Instant};

/// A connection's bucket.
#[derive(Debug)]
pub(super) struct Pace {
    left: Duration,
    grace: Duration,
    rate: u64,
}

impl Pace {
    pub(super) fn new(limits: &HttpLimits) -> Pace {
        Pace {
            left: limits.write_timeout,
            grace: limits.write_timeout,
            rate: limits.min_reply_rate.max(1),
        }
    }

    /// The deadline of a write of `len` bytes begun at `now`.
    pub(super) fn deadline(&mut self, len: usize, now: Instant) -> Instant {
        let credit = Duration::from_secs_f64(len as f64 / self.rate as f64);
        self.left = (self.left + credit).min(self.grace * 2);
        now + self.left
    }

    /// Takes out what a write begun at `began` blocked until `now`.
    pub(super) fn spent(&mut self, began: Instant, now: Instant) {
        self.left = self
            .left
            .saturating_sub(now.saturating_duration_since(began));
    }

    /// Whether the client is behind: it has used up half its grace. Such a
    /// connection may be closed to make room for a newcomer (h111 F2); half,
    /// so a stall of a few milliseconds on a new connection does not count.
    pub(super) fn behind(&self) -> bool {
        self.left < self.grace / 2
    }

    /// When a write begun at `began` with deadline `by` puts the client behind,
    /// if it blocks that long: marked then, not only once the write gives up
    /// (a client reading nothing was never marked before its reset, h112 M1).
    pub(super) fn behind_at(&self, began: Instant, by: Instant) -> Instant {
        by.checked_sub(self.grace / 2)
            .map_or(began, |at| at.max(began))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(grace_s: u64, rate: u64) -> Pace {
        Pace::new(&HttpLimits {
            write_timeout: Duration::from_secs(grace_s),
            min_reply_rate: rate,
            ..HttpLimits::default()
        })
    }

    /// Writes of `piece` bytes, each blocking as long as a reader at `read_rate`
    /// takes for them, until the bucket's deadline passes; the seconds that took
    /// (None: still going after `limit_s`).
    fn lasts(p: &mut Pace, piece: usize, read_rate: f64, limit_s: f64) -> Option<f64> {
        let start = Instant::now();
        let mut at = start;
        while (at - start).as_secs_f64() < limit_s {
            let by = p.deadline(piece, at);
            let takes = Duration::from_secs_f64(piece as f64 / read_rate);
            if at + takes > by {
                return Some((by - start).as_secs_f64());
            }
            p.spent(at, at + takes);
            at += takes;
        }
        None
    }

    #[test]
    fn a_reader_at_the_rate_never_runs_dry_and_a_slower_one_does() {
        let k = 64 * 1024;
        assert_eq!(lasts(&mut pace(30, 16_384), k, 16_384.0, 3_600.0), None);
        assert_eq!(lasts(&mut pace(30, 16_384), k, 20_000.0, 3_600.0), None);
        // Half the rate: the grace and its credit run out within minutes, not hours.
        let half = lasts(&mut pace(30, 16_384), k, 8_192.0, 3_600.0).expect("cut");
        assert!((60.0..=200.0).contains(&half), "{half}");
        // Nothing read: the first write that blocks is cut at twice the grace at most.
        let none = lasts(&mut pace(30, 16_384), k, 1e-3, 3_600.0).expect("cut");
        assert!(none <= 60.0 + 1e-6, "{none}");
    }

    #[test]
    fn credit_is_capped_and_a_behind_connection_says_so() {
        let mut p = pace(30, 16_384);
        let now = Instant::now();
        // Gigabytes written at once (into kernel buffers) buy at most twice the grace.
        let by = p.deadline(1 << 30, now);
        assert_eq!(by - now, Duration::from_secs(60));
        assert!(!p.behind());
        p.spent(now, now + Duration::from_secs(44));
        assert!(!p.behind(), "16 s of 30 left: not behind yet");
        assert_eq!(
            p.behind_at(now, now + Duration::from_secs(16)),
            now + Duration::from_secs(1)
        );
        p.spent(now, now + Duration::from_secs(2));
        assert!(p.behind());
    }
}
