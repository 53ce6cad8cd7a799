//! Retry pacing: exponential backoff with jitter, so a fleet that lost its
//! control plane does not come back in lockstep.
//!
//! The jitter comes from a xorshift seeded by the clock's nanoseconds and the
//! pid; it needs to differ between drones, not to be unpredictable.

use std::time::Duration;

/// Exponential backoff between `base` and `cap`, ±25 % jitter.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    cap: Duration,
    next: Duration,
    rng: u64,
}

impl Backoff {
    /// Starts at `base`, doubles per failure up to `cap`.
    pub(crate) fn new(base: Duration, cap: Duration) -> Backoff {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let seed = (u64::from(nanos) << 20) ^ u64::from(std::process::id()) ^ 0x9E37_79B9_7F4A_7C15;
        Backoff {
            base,
            cap: cap.max(base),
            next: base,
            rng: seed | 1,
        }
    }

    /// The wait before the next attempt; each call lengthens the following one.
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        self.jitter(d)
    }

    /// Back to `base` after a success.
    pub(crate) fn reset(&mut self) {
        self.next = self.base;
    }

    /// `d` scaled by a factor in [0.75, 1.25).
    pub(crate) fn jitter(&mut self, d: Duration) -> Duration {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let permille = 750 + (self.rng % 500);
        d * u32::try_from(permille).unwrap_or(1000) / 1000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_within_the_jitter() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let mut expected = [1, 2, 4, 8, 8, 8].into_iter();
        for _ in 0..6 {
            let nominal = Duration::from_secs(expected.next().unwrap_or(8));
            let d = b.next_delay();
            assert!(
                d >= nominal * 3 / 4 && d < nominal * 5 / 4,
                "{d:?} vs {nominal:?}"
            );
        }
        b.reset();
        assert!(b.next_delay() < Duration::from_millis(1250));
    }

    #[test]
    fn jitter_varies() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(1));
        let draws: std::collections::BTreeSet<_> =
            (0..20).map(|_| b.jitter(Duration::from_secs(10))).collect();
        assert!(draws.len() > 10);
    }
}
