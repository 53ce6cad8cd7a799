//! Rate-limited warnings, so an attacker cannot fill the log: the first
//! refusal of a caller is logged, then at most one line per [`LOG_EVERY`]
//! with how many were not.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One line per caller per this interval (plus a count of the quiet ones).
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Refusals logged per caller.
#[derive(Default)]
pub(crate) struct RefusalLog {
    last: Mutex<BTreeMap<String, (Instant, u64)>>,
}

impl RefusalLog {
    pub(crate) fn note(&self, who: &str, line: impl FnOnce() -> String) {
        let Ok(mut m) = self.last.lock() else { return };
        if m.len() > 10_000 {
            m.retain(|_, (at, _)| at.elapsed() < LOG_EVERY);
        }
        let now = Instant::now();
        match m.get_mut(who) {
            Some((at, quiet)) if at.elapsed() < LOG_EVERY => *quiet += 1,
            Some((at, quiet)) => {
                tracing::warn!(suppressed = *quiet, "{}", line());
                *at = now;
                *quiet = 0;
            }
            None => {
                tracing::warn!("{}", line());
                m.insert(who.to_string(), (now, 0));
            }
        }
    }
}
