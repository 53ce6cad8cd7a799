//! Log lines that repeat while their cause lasts (a full disk, a wrong drone token retried
//! every second): the first is written at once, later ones at most once per interval with
//! how many there were, so the cause is seen without the log filling the disk it is about.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// One rate limit: when the last line was written, and occurrences since.
#[derive(Debug)]
pub struct RepeatLog {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl RepeatLog {
    /// At most one line per `every`.
    pub const fn new(every: Duration) -> RepeatLog {
        RepeatLog {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// Counts one occurrence; `Some(n)` when a line is due now, with the occurrences it
    /// covers (this one included).
    pub fn note(&self, now: Instant) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.1 += 1;
        if st.0.is_some_and(|at| now.duration_since(at) < self.every) {
            return None;
        }
        let n = st.1;
        *st = (Some(now), 0);
        Some(n)
    }

    /// The cause is gone: `Some(n)` when it had been logged, with the occurrences not yet
    /// reported, so the recovery is logged once; the next occurrence is logged at once.
    pub fn clear(&self) -> Option<u64> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let was = st.0.map(|_| st.1);
        *st = (None, 0);
        was
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_is_logged_then_one_line_an_interval_with_the_count() {
        let log = RepeatLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(log.note(t0), Some(1));
        assert_eq!(log.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(30)), None);
        assert_eq!(log.note(t0 + Duration::from_secs(61)), Some(3));
        assert_eq!(log.note(t0 + Duration::from_secs(62)), None);
    }

    #[test]
    fn a_recovery_is_reported_once_and_the_next_failure_is_logged_at_once() {
        let log = RepeatLog::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert_eq!(log.clear(), None, "nothing failed");
        assert_eq!(log.note(t0), Some(1));
        assert_eq!(log.note(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.clear(), Some(1), "one not yet reported");
        assert_eq!(log.clear(), None, "reported once");
        assert_eq!(log.note(t0 + Duration::from_secs(2)), Some(1));
    }
}
