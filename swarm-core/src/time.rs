//! Virtual time. The core never reads a clock: every instant arrives in an envelope.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Milliseconds since the Unix epoch, as stamped on an envelope.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

/// One second in milliseconds, for readable configuration arithmetic.
pub const SECOND_MS: u64 = 1_000;
/// One minute in milliseconds.
pub const MINUTE_MS: u64 = 60 * SECOND_MS;
/// One hour in milliseconds.
pub const HOUR_MS: u64 = 60 * MINUTE_MS;
/// The longest build duration or estimate the core believes (30 days): a
/// reported duration or an enqueue hint above it is clamped to it, so one
/// bogus report (`build_duration_s: 1e300`) cannot pin a learned estimate,
/// and every critical-path sum stays far from overflow.
pub const MAX_DURATION_MS: u64 = 30 * 24 * HOUR_MS;

impl Timestamp {
    /// The instant `ms` later; saturates instead of wrapping so a huge config value
    /// means "never" rather than "long ago".
    pub fn plus(self, ms: u64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms))
    }

    /// Milliseconds from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// Milliseconds since the epoch.
    pub fn as_ms(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Renders a duration for humans in explanations and reasons ("2h 5m", "90s").
pub fn human_ms(ms: u64) -> String {
    let s = ms / SECOND_MS;
    match s {
        0..=119 => format!("{s}s"),
        120..=7_199 => format!("{}m", s / 60),
        _ => format!("{}h {}m", s / 3_600, (s % 3_600) / 60),
    }
}

/// `base · 3^(n-1)`, capped: the backoff shape shared by retries and grounding.
pub fn exponential_ms(base_ms: u64, n: u32, cap_ms: u64) -> u64 {
    let factor = 3u64.saturating_pow(n.saturating_sub(1));
    base_ms.saturating_mul(factor).min(cap_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_triples_and_caps() {
        assert_eq!(exponential_ms(60_000, 1, HOUR_MS), 60_000);
        assert_eq!(exponential_ms(60_000, 2, HOUR_MS), 180_000);
        assert_eq!(exponential_ms(60_000, 4, HOUR_MS), 1_620_000);
        assert_eq!(exponential_ms(60_000, 5, HOUR_MS), HOUR_MS);
        assert_eq!(exponential_ms(60_000, 200, HOUR_MS), HOUR_MS);
    }

    #[test]
    fn time_arithmetic_saturates() {
        assert_eq!(Timestamp(u64::MAX).plus(5), Timestamp(u64::MAX));
        assert_eq!(Timestamp(5).since(Timestamp(10)), 0);
        assert_eq!(human_ms(90_000), "90s");
        assert_eq!(human_ms(2 * HOUR_MS + 5 * MINUTE_MS), "2h 5m");
    }
}
