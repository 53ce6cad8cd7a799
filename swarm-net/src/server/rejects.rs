//! Logging drones the server turns away (wrong or missing drone token),
//! rate-limited: the first refusal is logged at once, later ones at most
//! once a minute with how many were refused meanwhile, so a misconfigured
//! drone retrying every second is seen without flooding the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often refusals are logged while they go on.
const EVERY: Duration = Duration::from_secs(60);

/// The rate limiter: when the last line was written, and refusals since.
#[derive(Debug, Default)]
pub(crate) struct RejectLog {
    state: Mutex<(Option<Instant>, u64)>,
}

impl RejectLog {
    /// Counts one refusal; `Some(n)` when a line is due now, with the
    /// refusals it covers (this one included).
    pub(crate) fn note(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.1 += 1;
        let due = st.0.is_none_or(|at| now.duration_since(at) >= EVERY);
        if !due {
            return None;
        }
        let n = st.1;
        *st = (Some(now), 0);
        Some(n)
    }
}

/// The process-wide limiter for refused drone requests.
pub(crate) fn drone_rejects() -> &'static RejectLog {
    static LOG: std::sync::OnceLock<RejectLog> = std::sync::OnceLock::new();
    LOG.get_or_init(RejectLog::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_refusal_is_logged_then_one_line_a_minute_with_the_count() {
        let log = RejectLog::default();
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(1));
        assert_eq!(log.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(30)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(61)), Some(3));
        assert_eq!(log.note(t0 + Duration::from_secs(62)), None);
    }
}
