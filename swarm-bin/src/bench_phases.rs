//! Where a benchmark window's acknowledged requests spent their time, from
//! the server's own histograms: a heartbeat's whole time in the server
//! (`swarm_http_request_duration_seconds{route="register"}`: what the drone
//! measured, less its connection and its own thread), waiting for the writer
//! (`swarm_writer_wait_seconds{lane="drone"}`), for the WAL's fsync
//! (`swarm_store_fsync_duration_seconds`), and what the writer's rounds
//! took (`swarm_writer_step_seconds{step="round"}`: a long one is what a
//! request queued behind it waits for). The bench reads them in-process
//! when a window opens and closes (`RunningServer::activity_metrics`, no
//! copy of the core) and keeps each window kind's difference, so a latency
//! seen by the drones can be split into the server's parts.

use serde_json::{json, Value};
use std::collections::BTreeMap;

/// The histograms split out, by family and label prefix.
const PHASES: [(&str, &str, &str); 4] = [
    (
        "request_register",
        "swarm_http_request_duration_seconds_bucket",
        "route=\"register\",",
    ),
    (
        "writer_wait_drone",
        "swarm_writer_wait_seconds_bucket",
        "lane=\"drone\",",
    ),
    ("fsync", "swarm_store_fsync_duration_seconds_bucket", ""),
    (
        "writer_round",
        "swarm_writer_step_seconds_bucket",
        "step=\"round\",",
    ),
];

/// `over_25ms` counts what took longer than this (a bucket bound): rare
/// stalls that a p99 does not show.
const SLOW_S: f64 = 0.025;

/// Cumulative bucket counts by upper bound (`f64::INFINITY` for `+Inf`).
type Buckets = Vec<(f64, f64)>;

/// The buckets of `family` whose labels start with `labels` in a
/// Prometheus text exposition, in the order given.
fn buckets(text: &str, family: &str, labels: &str) -> Buckets {
    text.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?.strip_prefix('{')?;
            let rest = rest.strip_prefix(labels)?;
            let (le, value) = rest.strip_prefix("le=\"")?.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, value.trim().parse().ok()?))
        })
        .collect()
}

/// `later - earlier`, bucket by bucket (buckets missing from `earlier` were 0).
fn minus(later: &Buckets, earlier: &Buckets) -> Buckets {
    later
        .iter()
        .map(|&(le, n)| {
            let before = earlier
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, v)| *v);
            (le, (n - before).max(0.0))
        })
        .collect()
}

/// The `q` quantile in ms, interpolated inside its bucket as Prometheus'
/// `histogram_quantile` does (the last finite bound when it falls in `+Inf`).
fn quantile_ms(b: &Buckets, q: f64) -> Value {
    let total = b.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return Value::Null;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(le, n) in b {
        if n >= rank {
            if le.is_infinite() {
                return json!(lower.0 * 1000.0);
            }
            let share = if n > lower.1 {
                (rank - lower.1) / (n - lower.1)
            } else {
                1.0
            };
            return json!((lower.0 + (le - lower.0) * share) * 1000.0);
        }
        lower = (le, n);
    }
    json!(lower.0 * 1000.0)
}

/// How many took longer than `bound`; null when `bound` is not one of the
/// buckets' bounds (and the window had any).
fn over(b: &Buckets, bound: f64) -> Value {
    let total = b.last().map_or(0.0, |(_, n)| *n);
    if total <= 0.0 {
        return json!(0.0);
    }
    b.iter()
        .find(|(le, _)| *le == bound)
        .map_or(Value::Null, |(_, within)| json!(total - within))
}

/// The phases' buckets summed over every window of a kind.
#[derive(Default)]
pub(crate) struct Phases {
    open: Option<(u64, Vec<Buckets>)>,
    by_kind: BTreeMap<u64, Vec<Buckets>>,
}

impl Phases {
    /// A window of `kind` opens (`None`: no window) with the server's
    /// metrics as `text`; the window open until now is closed and counted.
    pub(crate) fn mark(&mut self, kind: Option<u64>, text: &str) {
        let now: Vec<Buckets> = PHASES
            .iter()
            .map(|(_, family, labels)| buckets(text, family, labels))
            .collect();
        if let Some((k, then)) = self.open.take() {
            let sums = self
                .by_kind
                .entry(k)
                .or_insert_with(|| vec![Vec::new(); PHASES.len()]);
            for ((sum, later), earlier) in sums.iter_mut().zip(&now).zip(&then) {
                let delta = minus(later, earlier);
                *sum = if sum.is_empty() {
                    delta
                } else {
                    sum.iter()
                        .zip(&delta)
                        .map(|(&(le, a), &(_, b))| (le, a + b))
                        .collect()
                };
            }
        }
        self.open = kind.map(|k| (k, now));
    }

    /// Each phase's count, p50 and p99 (ms, bucket-interpolated) for a kind.
    pub(crate) fn report(&self, kind: u64) -> Value {
        let empty = Vec::new();
        let sums = self.by_kind.get(&kind).unwrap_or(&empty);
        let mut out = serde_json::Map::new();
        for (i, (name, _, _)) in PHASES.iter().enumerate() {
            let b = sums.get(i).cloned().unwrap_or_default();
            out.insert(
                (*name).to_string(),
                json!({
                    "count": b.last().map_or(0.0, |(_, n)| *n),
                    "p50": quantile_ms(&b, 0.5),
                    "p99": quantile_ms(&b, 0.99),
                    "over_25ms": over(&b, SLOW_S),
                }),
            );
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::{buckets, quantile_ms, Phases};

    fn text(drone: [u64; 3], fsync: [u64; 3]) -> String {
        let mut t = String::from("# TYPE swarm_writer_wait_seconds histogram\n");
        for (lane, counts) in [("other", [9, 9, 9]), ("drone", drone)] {
            for (le, n) in ["0.001", "0.01", "+Inf"].iter().zip(counts) {
                t += &format!(
                    "swarm_writer_wait_seconds_bucket{{lane=\"{lane}\",le=\"{le}\"}} {n}\n"
                );
            }
        }
        for (le, n) in ["0.001", "0.01", "+Inf"].iter().zip(fsync) {
            t += &format!("swarm_store_fsync_duration_seconds_bucket{{le=\"{le}\"}} {n}\n");
        }
        t
    }

    #[test]
    fn windows_count_only_what_happened_in_them() {
        let mut p = Phases::default();
        p.mark(Some(1), &text([10, 10, 10], [5, 5, 5]));
        // In the window: 100 drone waits under 1 ms, 100 fsyncs of 1-10 ms.
        p.mark(Some(2), &text([110, 110, 110], [5, 105, 105]));
        // In the second: 100 drone waits of 1-10 ms; nothing after `None`.
        p.mark(None, &text([110, 210, 210], [5, 105, 105]));
        p.mark(Some(1), &text([999, 999, 999], [999, 999, 999]));
        let quiet = p.report(1);
        assert_eq!(quiet["writer_wait_drone"]["count"], 100.0, "{quiet}");
        assert_eq!(quiet["fsync"]["count"], 100.0, "{quiet}");
        assert_eq!(quiet["writer_wait_drone"]["p50"], 0.5, "{quiet}");
        let p99 = quiet["fsync"]["p99"].as_f64().expect("p99");
        assert!((p99 - 9.91).abs() < 1e-9, "{quiet}");
        let busy = p.report(2);
        assert_eq!(busy["writer_wait_drone"]["count"], 100.0, "{busy}");
        assert_eq!(busy["fsync"]["count"], 0.0, "{busy}");
        assert!(busy["fsync"]["p99"].is_null(), "{busy}");
        assert!((busy["writer_wait_drone"]["p50"].as_f64().expect("p50") - 5.5).abs() < 1e-9);
    }

    #[test]
    fn rounds_past_25_ms_are_counted_for_their_window_only() {
        let rounds = |idle: u64, fast: u64, slow: u64| {
            let mut t = String::new();
            for (step, counts) in [
                ("idle", [idle, idle, idle]),
                ("round", [fast, fast, fast + slow]),
            ] {
                for (le, n) in ["0.01", "0.025", "+Inf"].iter().zip(counts) {
                    t += &format!(
                        "swarm_writer_step_seconds_bucket{{step=\"{step}\",le=\"{le}\"}} {n}\n"
                    );
                }
            }
            t
        };
        let mut p = Phases::default();
        p.mark(Some(1), &rounds(0, 50, 2));
        // In the window: 40 fast rounds, 3 slow ones, and slow idle steps.
        p.mark(None, &rounds(70, 90, 5));
        let r = &p.report(1)["writer_round"];
        assert_eq!(r["count"], 43.0, "{r}");
        assert_eq!(r["over_25ms"], 3.0, "{r}");
        // A window with no rounds: none slow.
        assert_eq!(p.report(2)["writer_round"]["over_25ms"], 0.0);
    }

    #[test]
    fn a_quantile_in_the_open_bucket_is_the_last_bound() {
        let b = buckets(
            &text([0, 0, 4], [0, 0, 0]),
            "swarm_writer_wait_seconds_bucket",
            "lane=\"drone\",",
        );
        assert_eq!(b.len(), 3);
        assert_eq!(quantile_ms(&b, 0.99), 10.0);
    }
}
