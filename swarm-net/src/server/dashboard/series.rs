//! History for the dashboard's charts without Prometheus: one point per
//! minute for seven days, bounded in memory and on disk.
//!
//! The dashboard thread samples the published view every few seconds into
//! the current minute's bucket (gauges: the last sample; counts: the events
//! of that minute). A finished bucket is appended as one JSON line to
//! `timeseries.jsonl` beside the database, so a restart keeps the charts;
//! the file is rewritten without expired lines when it holds twice the
//! window. `GET /api/v1/timeseries?minutes=N` answers the newest N buckets,
//! the open one included.

use super::super::http::{ApiError, Query, Reply};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use swarm_core::{DroneStatus, View};

/// Width of a bucket.
pub(crate) const BUCKET_MS: u64 = 60_000;
/// Buckets kept: seven days of minutes.
pub(crate) const CAPACITY: usize = 7 * 24 * 60;

/// One minute of the farm.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct Point {
    /// Start of the minute, ms since the epoch.
    pub(crate) t: u64,
    /// Packages queued (ready, waiting or in backoff).
    pub(crate) queued: u32,
    /// Of those, ready to build now.
    pub(crate) ready: u32,
    /// Leased, not started.
    pub(crate) assigned: u32,
    /// Building.
    pub(crate) building: u32,
    /// Built (this generation).
    pub(crate) built: u32,
    /// Blocked.
    pub(crate) blocked: u32,
    /// Drones online.
    pub(crate) drones_online: u32,
    /// Cores of online drones.
    pub(crate) cores_total: u32,
    /// Cores running a build.
    pub(crate) cores_busy: u32,
    /// Successful builds finished in this minute.
    pub(crate) builds_ok: u64,
    /// Failed builds in this minute.
    pub(crate) builds_failed: u64,
    /// Leases taken back in this minute.
    pub(crate) reclaims: u64,
    /// Age of the oldest assigned-but-not-started lease, seconds.
    pub(crate) unstarted_max_s: u64,
}

/// Event counters at a sampling moment (totals since the server started).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    pub(crate) built: u64,
    pub(crate) failed: u64,
    pub(crate) reclaimed: u64,
}

struct Inner {
    points: VecDeque<Point>,
    last: Option<Totals>,
    lines_in_file: usize,
}

/// The bounded series and its file.
pub(crate) struct Series {
    inner: Mutex<Inner>,
    file: Option<PathBuf>,
    capacity: usize,
}

/// Cores a drone is using: its share per slot for each started build.
pub(crate) fn busy_cores(view: &View<'_>) -> (u32, u32) {
    let mut total = 0;
    let mut busy = 0;
    for d in view.drones() {
        if d.status != DroneStatus::Online {
            continue;
        }
        total += d.cores;
        let started = d.leases.iter().filter(|l| l.started_at.is_some()).count() as u32;
        let per = (d.cores / d.slots.max(1)).max(1);
        busy += (started * per).min(d.cores);
    }
    (total, busy)
}

/// The gauges of a point, read from the view.
pub(crate) fn gauges(view: &View<'_>, t: u64) -> Point {
    let c = view.counts();
    let (cores_total, cores_busy) = busy_cores(view);
    let now = view.now().0;
    let unstarted_max_s = view
        .leases()
        .iter()
        .filter(|l| l.started_at.is_none())
        .map(|l| now.saturating_sub(l.issued_at.0) / 1000)
        .max()
        .unwrap_or(0);
    Point {
        t,
        queued: c.queued,
        ready: c.ready,
        assigned: c.assigned.saturating_sub(c.building),
        building: c.building,
        built: c.built,
        blocked: c.blocked,
        drones_online: view
            .drones()
            .iter()
            .filter(|d| d.status == DroneStatus::Online)
            .count() as u32,
        cores_total,
        cores_busy,
        unstarted_max_s,
        ..Point::default()
    }
}

impl Series {
    /// Loads the file (if any), dropping points older than the window.
    pub(crate) fn open(file: Option<&Path>, now_ms: u64) -> Series {
        Series::with_capacity(file, now_ms, CAPACITY)
    }

    fn with_capacity(file: Option<&Path>, now_ms: u64, capacity: usize) -> Series {
        let mut points = VecDeque::new();
        let mut lines = 0usize;
        let horizon = now_ms.saturating_sub(capacity as u64 * BUCKET_MS);
        if let Some(f) = file.and_then(|p| std::fs::File::open(p).ok()) {
            for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
                lines += 1;
                let Ok(p) = serde_json::from_str::<Point>(&line) else {
                    continue;
                };
                if p.t >= horizon && points.back().is_none_or(|b: &Point| b.t < p.t) {
                    points.push_back(p);
                }
            }
        }
        while points.len() > capacity {
            points.pop_front();
        }
        let s = Series {
            inner: Mutex::new(Inner {
                points,
                last: None,
                lines_in_file: lines,
            }),
            file: file.map(Path::to_path_buf),
            capacity,
        };
        if lines > s.len() {
            s.rewrite(true);
        }
        s
    }

    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.points.len()).unwrap_or(0)
    }

    /// Folds one sample into its minute.
    pub(crate) fn sample(&self, mut gauges: Point, totals: Totals) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let t = gauges.t - gauges.t % BUCKET_MS;
        gauges.t = t;
        let delta = match inner.last {
            // Counters restart with the server; a drop means a restart.
            Some(l)
                if totals.built >= l.built
                    && totals.failed >= l.failed
                    && totals.reclaimed >= l.reclaimed =>
            {
                Totals {
                    built: totals.built - l.built,
                    failed: totals.failed - l.failed,
                    reclaimed: totals.reclaimed - l.reclaimed,
                }
            }
            _ => Totals::default(),
        };
        inner.last = Some(totals);
        let mut finished = None;
        match inner.points.back_mut() {
            Some(cur) if cur.t == t => {
                gauges.builds_ok = cur.builds_ok + delta.built;
                gauges.builds_failed = cur.builds_failed + delta.failed;
                gauges.reclaims = cur.reclaims + delta.reclaimed;
                gauges.unstarted_max_s = gauges.unstarted_max_s.max(cur.unstarted_max_s);
                *cur = gauges;
            }
            Some(cur) if cur.t > t => return, // the clock stepped back: keep the newer minute
            prev => {
                finished = prev.map(|p| p.clone());
                gauges.builds_ok = delta.built;
                gauges.builds_failed = delta.failed;
                gauges.reclaims = delta.reclaimed;
                inner.points.push_back(gauges);
                while inner.points.len() > self.capacity {
                    inner.points.pop_front();
                }
            }
        }
        let Some(done) = finished else { return };
        inner.lines_in_file += 1;
        let compact = inner.lines_in_file > 2 * self.capacity;
        drop(inner);
        if compact {
            self.rewrite(false);
        } else {
            self.append(&done);
        }
    }

    fn append(&self, p: &Point) {
        let Some(path) = &self.file else { return };
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{}", serde_json::to_string(p).unwrap_or_default()));
        if let Err(e) = res {
            tracing::warn!(file = %path.display(), error = %e, "cannot append to the time series");
        }
    }

    /// Writes the finished points anew: all of them when `all`, else all but
    /// the open minute.
    fn rewrite(&self, all: bool) {
        let Some(path) = &self.file else { return };
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        let n = inner.points.len().saturating_sub(usize::from(!all));
        let mut text = String::new();
        for p in inner.points.iter().take(n) {
            text.push_str(&serde_json::to_string(p).unwrap_or_default());
            text.push('\n');
        }
        inner.lines_in_file = n;
        drop(inner);
        let tmp = path.with_extension("jsonl.tmp");
        let res = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = res {
            tracing::warn!(file = %path.display(), error = %e, "cannot rewrite the time series");
        }
    }

    /// The newest `n` points, oldest first.
    pub(crate) fn last(&self, n: usize) -> Vec<Point> {
        let Ok(inner) = self.inner.lock() else {
            return Vec::new();
        };
        let skip = inner.points.len().saturating_sub(n);
        inner.points.iter().skip(skip).cloned().collect()
    }

    /// Leases taken back within the last `minutes` (for the churn gauge).
    pub(crate) fn reclaims_in(&self, minutes: usize) -> u64 {
        self.last(minutes).iter().map(|p| p.reclaims).sum()
    }
}

/// `GET /api/v1/timeseries?minutes=N` (default 360, at most 7 days).
pub(crate) fn endpoint(series: &Series, url: &str) -> Result<Reply, ApiError> {
    let q = Query::parse(url);
    let minutes = q.number("minutes", 360, CAPACITY as u64)? as usize;
    Reply::ok(&serde_json::json!({
        "bucket_s": BUCKET_MS / 1000,
        "capacity": CAPACITY,
        "points": series.last(minutes.max(1)),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t: u64, queued: u32) -> Point {
        Point {
            t,
            queued,
            ..Point::default()
        }
    }

    fn totals(built: u64) -> Totals {
        Totals {
            built,
            ..Totals::default()
        }
    }

    #[test]
    fn samples_fold_into_minutes_and_count_events_per_minute() {
        let s = Series::open(None, 0);
        s.sample(at(60_000, 5), totals(10));
        s.sample(at(61_000, 4), totals(12));
        s.sample(at(119_999, 3), totals(13));
        s.sample(at(120_000, 2), totals(20));
        let pts = s.last(10);
        assert_eq!(pts.len(), 2);
        assert_eq!((pts[0].t, pts[0].queued, pts[0].builds_ok), (60_000, 3, 3));
        assert_eq!((pts[1].t, pts[1].queued, pts[1].builds_ok), (120_000, 2, 7));
        // A server restart resets counters: no negative or huge delta.
        s.sample(at(121_000, 2), totals(1));
        assert_eq!(s.last(1)[0].builds_ok, 7);
    }

    #[test]
    fn the_window_is_bounded_in_memory_and_on_disk_and_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("timeseries.jsonl");
        let s = Series::with_capacity(Some(&file), 0, 5);
        for m in 0..30u64 {
            s.sample(at(m * BUCKET_MS, m as u32), totals(m));
        }
        assert_eq!(s.last(100).len(), 5);
        let lines = std::fs::read_to_string(&file)
            .expect("file")
            .lines()
            .count();
        assert!(lines <= 10, "the file is compacted: {lines} lines");
        // Reopened at the same moment: the finished minutes are back.
        let again = Series::with_capacity(Some(&file), 29 * BUCKET_MS, 5);
        let pts = again.last(100);
        assert!(!pts.is_empty() && pts.len() <= 5, "{}", pts.len());
        assert_eq!(pts.last().map(|p| p.queued), Some(28));
        // Reopened a week later: everything expired, and the file is rewritten.
        let later = Series::with_capacity(Some(&file), 1000 * BUCKET_MS, 5);
        assert!(later.last(100).is_empty());
        assert_eq!(
            std::fs::read_to_string(&file)
                .expect("file")
                .lines()
                .count(),
            0
        );
    }
}
