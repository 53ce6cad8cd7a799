//! Counters and histograms for `GET /metrics` (Prometheus text format 0.0.4).
//!
//! Gauges (queue depth, drones by state, leases) are read from the published
//! view at scrape time; only what happens between scrapes is counted here.
//! The exposition format is a few lines of text, so it is written directly
//! rather than through a metrics framework.

use super::in_flight::{watch_now_ms, InFlight, Watched};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Duration;
use swarm_core::{Event, Output};

/// An fsync running this long means the disk hangs: health turns 503.
pub(crate) const FSYNC_HUNG: Duration = Duration::from_secs(10);
/// A step of the writer (a commit and its replies, the marker after an
/// fsync, a probe of the store, a copy for readers) running this long means
/// it is stuck: health turns 503. Steps are bounded (most pushes come in
/// parts, ticks have a budget), so a healthy one takes milliseconds; a push
/// committed whole at the 100,000-package maximum or a copy of a very large
/// queue, a second or two. Also past it: an inline fsync that hangs (the
/// fsync is named), and the rebuild of the state after a failed write when
/// it is very large (over a million packages).
pub(crate) const WRITER_STUCK: Duration = Duration::from_secs(10);

/// Requests and the store's own waits (an fsync, a request waiting for the
/// writer): tenths of a millisecond when the disk and the writer keep up.
/// Requests share these bounds so a drone's call (about half a millisecond)
/// can be split into the store's parts of it, bucket for bucket
/// (`swarm bench import`); with a first bound at 0.5 ms, most heartbeats
/// fell in one bucket.
const STORE_BUCKETS_S: [f64; 15] = [
    0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
    0.5, 2.5,
];
const BUILD_BUCKETS_S: [f64; 9] = [
    10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    total: u64,
}

impl Histogram {
    fn observe(&mut self, buckets: &[f64], v: f64) {
        if self.counts.len() != buckets.len() {
            self.counts = vec![0; buckets.len()];
        }
        for (i, b) in buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.total += 1;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str, buckets: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, b) in buckets.iter().enumerate() {
            let c = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {c}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.total
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.total);
    }
}

#[derive(Default)]
struct Inner {
    requests: BTreeMap<(&'static str, u16), u64>,
    latency: BTreeMap<&'static str, Histogram>,
    events: BTreeMap<String, u64>,
    reclaims: BTreeMap<String, u64>,
    rejections: BTreeMap<String, u64>,
    escalations: BTreeMap<String, u64>,
    /// Release actions the server could not carry out, by action.
    release_failures: BTreeMap<&'static str, u64>,
    build_seconds: Histogram,
    batches: u64,
    publishes: u64,
    batched_inputs: u64,
    store_errors: u64,
    fsyncs: u64,
    fsync_seconds: Histogram,
    /// Fsyncs that had run `FSYNC_HUNG` or longer when they returned.
    fsyncs_hung: u64,
    /// Steps of the writer that had run `WRITER_STUCK` or longer when they
    /// ended.
    writer_stalls: u64,
    /// How long the writer's steps took, by kind (`Metrics::writer_step`).
    writer_steps: BTreeMap<&'static str, Histogram>,
    /// The first fsync of the WAL that failed, kept until a restart.
    fsync_failed: Option<String>,
    /// By lane: `drone` (drones' own requests), `bulk` (pushes, until the
    /// commit of their first part) or `other` (controls, copies for
    /// readers, probe results).
    writer_wait: BTreeMap<&'static str, Histogram>,
}

/// Everything counted since the server started.
#[derive(Default)]
pub(crate) struct Metrics {
    inner: Mutex<Inner>,
    /// The front door's own counters (connections, refusals).
    pub(crate) front: std::sync::Arc<super::front::FrontStats>,
    fsync_watch: InFlight,
    writer_watch: InFlight,
    /// Why a thread the store needs (the writer, the fsync thread) died, if
    /// one did: nothing is recorded after. Outside `inner`, which a panic
    /// elsewhere may poison.
    thread_lost: std::sync::OnceLock<String>,
}

/// A step of the writer in progress (`Metrics::writer_step`): watched until
/// it is dropped.
pub(crate) struct WriterStep<'a> {
    metrics: &'a Metrics,
    kind: &'static str,
    began: Watched,
    started: std::time::Instant,
}

impl Drop for WriterStep<'_> {
    fn drop(&mut self) {
        self.metrics.writer_watch.end(self.began);
        let took = self.started.elapsed();
        if let Ok(mut m) = self.metrics.inner.lock() {
            if took >= WRITER_STUCK {
                m.writer_stalls += 1;
            }
            m.writer_steps
                .entry(self.kind)
                .or_default()
                .observe(&STORE_BUCKETS_S, took.as_secs_f64());
        }
    }
}

fn tag<T: serde::Serialize>(v: &T, key: &str) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|j| j.get(key).and_then(|s| s.as_str().map(str::to_string)))
        .unwrap_or_else(|| "unknown".into())
}

impl Metrics {
    pub(crate) fn request(&self, route: &'static str, status: u16, took: Duration) {
        if let Ok(mut m) = self.inner.lock() {
            *m.requests.entry((route, status)).or_default() += 1;
            m.latency
                .entry(route)
                .or_default()
                .observe(&STORE_BUCKETS_S, took.as_secs_f64());
        }
    }

    pub(crate) fn batch(&self, inputs: usize) {
        if let Ok(mut m) = self.inner.lock() {
            m.batches += 1;
            m.batched_inputs += inputs as u64;
        }
    }

    /// Counted apart from the event it records, which a store that cannot
    /// write (as on the full disk that failed the action) does not keep.
    pub(crate) fn release_failed(&self, action: &'static str) {
        if let Ok(mut m) = self.inner.lock() {
            *m.release_failures.entry(action).or_default() += 1;
        }
    }

    pub(crate) fn published(&self) {
        if let Ok(mut m) = self.inner.lock() {
            m.publishes += 1;
        }
    }

    /// One fsync of the WAL before answering (`defer_sync`), and the
    /// acknowledgement marker moved to `seq` after it
    /// (`WalSync::sync_acknowledging`): watched while it runs (a disk that
    /// hangs shows in health and `/metrics` before the fsync returns, if
    /// ever), then counted and timed when it worked.
    pub(crate) fn fsync(&self, sync: &swarm_store::WalSync, seq: u64) -> std::io::Result<()> {
        let began = self.fsync_watch.begin(watch_now_ms());
        let result = sync.sync_acknowledging(swarm_core::Seq(seq));
        self.fsync_watch.end(began);
        let took = match result {
            Ok(took) => took,
            Err(e) => {
                if let Ok(mut m) = self.inner.lock() {
                    m.fsync_failed.get_or_insert_with(|| e.to_string());
                }
                return Err(e);
            }
        };
        if let Ok(mut m) = self.inner.lock() {
            m.fsyncs += 1;
            if took >= FSYNC_HUNG {
                m.fsyncs_hung += 1;
            }
            m.fsync_seconds
                .observe(&STORE_BUCKETS_S, took.as_secs_f64());
        }
        Ok(())
    }

    /// Why the first failed fsync of the WAL failed, if one did since the
    /// start. Kept: after a failed fdatasync Linux may drop the pages it
    /// could not write and report nothing to the next one, so later fsyncs
    /// that work do not make the log whole again; a restart checks it.
    pub(crate) fn fsync_failure(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|m| m.fsync_failed.clone())
    }

    /// Records that a thread the store needs died (the first one says why).
    pub(crate) fn thread_lost(&self, why: String) {
        let _ = self.thread_lost.set(why);
    }

    /// Records and logs that `thread` panicked, with the panic's message as
    /// far as it is text.
    pub(crate) fn thread_panicked(&self, thread: &str, panic: &(dyn std::any::Any + Send)) {
        let text = panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".into());
        tracing::error!(thread, reason = %text, "a thread the store needs panicked: nothing is recorded from now on; health is 503, and `swarm serve` exits so its service manager restarts it (the restart checks the log)");
        self.thread_lost(format!("the {thread} thread panicked ({text})"));
    }

    /// Why a thread the store needs died, if one did.
    pub(crate) fn lost_thread(&self) -> Option<&str> {
        self.thread_lost.get().map(String::as_str)
    }

    /// How long the oldest fsync still running has been running.
    pub(crate) fn fsync_in_flight(&self) -> Option<Duration> {
        self.fsync_watch.age(watch_now_ms())
    }

    /// Marks the start of a step of the writer, watched until the guard is
    /// dropped: a writer held outside the fsyncs watched before answering
    /// (a `write()` the kernel throttles, a checkpoint on its thread, a
    /// stalled read of the database) shows in health while it is held.
    /// `kind` names the step in `swarm_writer_step_seconds`.
    pub(crate) fn writer_step(&self, kind: &'static str) -> WriterStep<'_> {
        WriterStep {
            metrics: self,
            kind,
            began: self.writer_watch.begin(watch_now_ms()),
            started: std::time::Instant::now(),
        }
    }

    /// How long the writer's current step has been running (`None`: it
    /// waits for work).
    pub(crate) fn writer_busy(&self) -> Option<Duration> {
        self.writer_watch.age(watch_now_ms())
    }

    /// How long requests of a lane waited for the writer to start their
    /// commit: what a big push, a tick or a copy for readers costs them.
    pub(crate) fn writer_waits(
        &self,
        waits: impl ExactSizeIterator<Item = (&'static str, Duration)>,
    ) {
        if waits.len() == 0 {
            return;
        }
        if let Ok(mut m) = self.inner.lock() {
            for (lane, took) in waits {
                m.writer_wait
                    .entry(lane)
                    .or_default()
                    .observe(&STORE_BUCKETS_S, took.as_secs_f64());
            }
        }
    }

    pub(crate) fn store_error(&self) {
        if let Ok(mut m) = self.inner.lock() {
            m.store_errors += 1;
        }
    }

    pub(crate) fn outputs(&self, outputs: &[Output]) {
        let Ok(mut m) = self.inner.lock() else {
            return;
        };
        for o in outputs {
            let Output::Event(e) = o else { continue };
            let kind = tag(e, "event");
            match e {
                Event::Reclaimed { reason, .. } => {
                    let r = serde_json::to_value(reason)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    *m.reclaims.entry(r).or_default() += 1;
                }
                Event::InputRejected { reason } => {
                    *m.rejections.entry(tag(reason, "why")).or_default() += 1;
                }
                Event::Escalated { action, .. } => {
                    let a = serde_json::to_value(action)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default();
                    *m.escalations.entry(a).or_default() += 1;
                }
                Event::Built { duration_ms, .. } => {
                    m.build_seconds
                        .observe(&BUILD_BUCKETS_S, *duration_ms as f64 / 1000.0);
                }
                _ => {}
            }
            *m.events.entry(kind).or_default() += 1;
        }
    }

    /// Event totals the dashboard's time series turns into per-minute counts.
    pub(crate) fn totals(&self) -> super::dashboard::series::Totals {
        let Ok(m) = self.inner.lock() else {
            return Default::default();
        };
        let n = |k: &str| m.events.get(k).copied().unwrap_or(0);
        super::dashboard::series::Totals {
            built: n("built"),
            failed: n("build_failed"),
            reclaimed: n("reclaimed"),
        }
    }

    /// Appends the counters to `out`.
    pub(crate) fn render(&self, out: &mut String) {
        self.front.render(out);
        let Ok(m) = self.inner.lock() else { return };
        counter_family(
            out,
            "swarm_http_requests_total",
            "HTTP requests by route and status.",
            m.requests
                .iter()
                .map(|((r, s), v)| (format!("route=\"{r}\",status=\"{s}\""), *v)),
        );
        histogram_family(
            out,
            "swarm_http_request_duration_seconds",
            "Request latency by route.",
            m.latency
                .iter()
                .map(|(route, h)| (format!("route=\"{route}\""), h)),
            &STORE_BUCKETS_S,
        );
        counter_family(
            out,
            "swarm_events_total",
            "Core events by kind.",
            m.events.iter().map(|(k, v)| (format!("kind=\"{k}\""), *v)),
        );
        counter_family(
            out,
            "swarm_reclaims_total",
            "Leases taken back, by reason.",
            m.reclaims
                .iter()
                .map(|(k, v)| (format!("reason=\"{k}\""), *v)),
        );
        counter_family(
            out,
            "swarm_rejections_total",
            "Inputs refused by the core, by reason.",
            m.rejections
                .iter()
                .map(|(k, v)| (format!("reason=\"{k}\""), *v)),
        );
        counter_family(
            out,
            "swarm_escalations_total",
            "Self-healing steps, by action.",
            m.escalations
                .iter()
                .map(|(k, v)| (format!("action=\"{k}\""), *v)),
        );
        counter_family(
            out,
            "swarm_release_failures_total",
            "Binhost release actions the server could not carry out (a full disk, a binhost \
             root without its releases, an index it could not write), by action.",
            m.release_failures
                .iter()
                .map(|(k, v)| (format!("action=\"{k}\""), *v)),
        );
        histogram_family(
            out,
            "swarm_build_duration_seconds",
            "Reported duration of successful builds.",
            std::iter::once((String::new(), &m.build_seconds)),
            &BUILD_BUCKETS_S,
        );
        counter_family(
            out,
            "swarm_store_batches_total",
            "Group commits.",
            std::iter::once((String::new(), m.batches)),
        );
        counter_family(
            out,
            "swarm_store_inputs_total",
            "Inputs made durable.",
            std::iter::once((String::new(), m.batched_inputs)),
        );
        counter_family(
            out,
            "swarm_store_fsyncs_total",
            "fsyncs of the WAL before answering (one covers every commit before it; a batch \
             that answers nobody, such as a part of a big push, waits for the next).",
            std::iter::once((String::new(), m.fsyncs)),
        );
        histogram_family(
            out,
            "swarm_store_fsync_duration_seconds",
            "How long each fsync of the WAL made before answering took (synchronous=full; \
             every reply it covered waited that long): a slow disk shows here first.",
            std::iter::once((String::new(), &m.fsync_seconds)),
            &STORE_BUCKETS_S,
        );
        gauge(
            out,
            "swarm_store_fsync_in_flight_seconds",
            &format!(
                "How long the oldest fsync of the WAL still running has been running (0: none): \
                 a disk that hangs shows here while it hangs, and health is 503 past {} s.",
                FSYNC_HUNG.as_secs()
            ),
            &[(
                String::new(),
                self.fsync_in_flight().unwrap_or_default().as_secs_f64(),
            )],
        );
        gauge(
            out,
            "swarm_writer_busy_seconds",
            &format!(
                "How long the writer's current step (a commit and its replies, the marker after \
                 an fsync, a probe of the store, a copy for readers) has been running (0: it \
                 waits for work): a writer held by the disk shows here, and health is 503 past \
                 {} s.",
                WRITER_STUCK.as_secs()
            ),
            &[(
                String::new(),
                self.writer_busy().unwrap_or_default().as_secs_f64(),
            )],
        );
        counter_family(
            out,
            "swarm_writer_stalls_total",
            &format!(
                "Steps of the writer that ran {} s or longer (health was 503 meanwhile, and \
                 every request waiting for the writer waited for it; an fsync it made that hung \
                 counts here too): a stall shorter than a scrape interval still counts here.",
                WRITER_STUCK.as_secs()
            ),
            std::iter::once((String::new(), m.writer_stalls)),
        );
        histogram_family(
            out,
            "swarm_writer_step_seconds",
            "How long each step of the writer took, by step (round: a group commit with its \
             tick, copy for readers and replies, which requests queued behind it wait for; \
             acknowledge: moving the marker after fsyncs, often nothing to do; idle: a wake-up \
             without work, now and then a probe of the store or a copy).",
            m.writer_steps
                .iter()
                .map(|(step, h)| (format!("step=\"{step}\""), h)),
            &STORE_BUCKETS_S,
        );
        histogram_family(
            out,
            "swarm_writer_wait_seconds",
            "How long requests waited for the writer to start the commit that holds them, by \
             lane (drone: drones' own requests, which go ahead of bulk work; bulk: pushes, \
             until the commit of their first part; other: controls, copies for readers, probe \
             results).",
            m.writer_wait
                .iter()
                .map(|(lane, h)| (format!("lane=\"{lane}\""), h)),
            &STORE_BUCKETS_S,
        );
        counter_family(
            out,
            "swarm_store_fsyncs_hung_total",
            &format!(
                "Fsyncs of the WAL that ran {} s or longer (health was 503 meanwhile): a hang \
                 shorter than a scrape interval still counts here.",
                FSYNC_HUNG.as_secs()
            ),
            std::iter::once((String::new(), m.fsyncs_hung)),
        );
        counter_family(
            out,
            "swarm_store_errors_total",
            "Failed group commits and failed fsyncs of the WAL (every input they covered was \
             answered with an error).",
            std::iter::once((String::new(), m.store_errors)),
        );
        counter_family(
            out,
            "swarm_published_copies_total",
            "Copies of the core made for readers (rationed under read storms).",
            std::iter::once((String::new(), m.publishes)),
        );
    }
}

fn histogram_family<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (String, &'a Histogram)>,
    buckets: &[f64],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} histogram");
    for (labels, h) in rows {
        h.render(out, name, &labels, buckets);
    }
}

fn counter_family(
    out: &mut String,
    name: &str,
    help: &str,
    rows: impl Iterator<Item = (String, u64)>,
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} counter");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}

/// One gauge line with its header.
pub(crate) fn gauge<V: std::fmt::Display>(
    out: &mut String,
    name: &str,
    help: &str,
    rows: &[(String, V)],
) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} gauge");
    for (labels, v) in rows {
        if labels.is_empty() {
            let _ = writeln!(out, "{name} {v}");
        } else {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    }
}
