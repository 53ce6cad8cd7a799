//! Calls watched while they run: an fsync of the WAL, a step of the writer.
//! A disk that hangs fails nothing; it stops answering, so health must see
//! the call that has not returned, not wait for its result.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// When the calls in flight began, so one that hangs is seen while it hangs
/// rather than when (if ever) it returns. One slot per call that can run at
/// once: today the writer fsyncs inline only while the fsync thread is
/// idle, so one would do for fsyncs, but a slot each keeps a second one
/// visible should both ever run together.
#[derive(Default)]
pub(crate) struct InFlight {
    /// Starts (`watch_now_ms`) of the calls in flight; 0: a free slot.
    since_ms: [AtomicU64; 4],
}

/// Which slot `InFlight::begin` took and when (`None`: none was free).
pub(crate) type Watched = Option<(usize, u64)>;

impl InFlight {
    /// Records a start at `now_ms` (nonzero) in a free slot.
    pub(crate) fn begin(&self, now_ms: u64) -> Watched {
        self.since_ms.iter().enumerate().find_map(|(i, slot)| {
            slot.compare_exchange(0, now_ms, Ordering::SeqCst, Ordering::SeqCst)
                .ok()
                .map(|_| (i, now_ms))
        })
    }

    pub(crate) fn end(&self, watched: Watched) {
        if let Some((i, began)) = watched {
            let _ = self.since_ms[i].compare_exchange(began, 0, Ordering::SeqCst, Ordering::SeqCst);
        }
    }

    /// How long the oldest call in flight has been running, at least: both
    /// ends are whole milliseconds cut down, so the difference can be up to
    /// 1 ms more than the call's age, and a call 9,999.5 ms old read as 10 s,
    /// turning health 503 before the 10 s it promises (a CI run of
    /// `disk_faults` caught it).
    pub(crate) fn age(&self, now_ms: u64) -> Option<Duration> {
        self.since_ms
            .iter()
            .map(|slot| slot.load(Ordering::SeqCst))
            .filter(|since| *since != 0)
            .min()
            .map(|since| Duration::from_millis(now_ms.saturating_sub(since).saturating_sub(1)))
    }
}

/// Milliseconds on a clock of this process, from 1 (0 means "none" above).
pub(crate) fn watch_now_ms() -> u64 {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    let ms = BASE
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_millis();
    u64::try_from(ms).unwrap_or(u64::MAX - 1) + 1
}

#[cfg(test)]
mod tests {
    use super::InFlight;
    use std::time::Duration;

    #[test]
    fn the_oldest_fsync_in_flight_is_watched_until_it_returns() {
        let w = InFlight::default();
        assert_eq!(w.age(500), None, "nothing in flight");
        let first = w.begin(100);
        // A second fsync meanwhile: the oldest start counts.
        let second = w.begin(200);
        assert_eq!(w.age(12_101), Some(Duration::from_secs(12)));
        w.end(first);
        // The first returned, the second still hangs: still seen, from its own start.
        assert_eq!(
            w.age(12_201),
            Some(Duration::from_secs(12)),
            "the second still runs"
        );
        w.end(second);
        assert_eq!(w.age(12_200), None, "both returned");
        // Two starting in the same millisecond end apart.
        let (a, b) = (w.begin(20_000), w.begin(20_000));
        w.end(a);
        assert_eq!(w.age(20_251), Some(Duration::from_millis(250)));
        w.end(b);
        assert_eq!(w.age(20_250), None);
    }
}
