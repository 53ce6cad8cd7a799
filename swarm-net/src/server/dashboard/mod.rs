//! The dashboard `swarm serve` answers at `/`: embedded files (`assets`),
//! the pushed event stream (`stream`), minute-by-minute history for the
//! charts (`series`) and the SLO metrics (`slo`).
//!
//! One background thread, `swarm-dashboard`, feeds both the stream (new
//! rows of `events`, twice a second) and the series (a sample of the
//! published view every few seconds). It never touches the writer.
//!
//! The page reads through the same endpoints as any client (with the token
//! it holds, when the server's reads need one: `read_token`); actions
//! send the admin token as a Bearer header (kept in the tab's
//! sessionStorage, never in a URL, never in a cookie, so there is no
//! ambient authority a forged request could borrow).

pub(crate) mod assets;
pub(crate) mod kept;
pub(crate) mod series;
pub(crate) mod slo;
pub(crate) mod stream;

use super::shared::Shared;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use swarm_store::History;

/// How often the stream looks for new events.
const FEED_EVERY: Duration = Duration::from_millis(500);
/// How often the series samples the view.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Takes one sample of the published view into the series.
fn sample(sh: &Shared) {
    let p = sh.published();
    let view = p.swarm.view();
    let now = (sh.clock)().0;
    let totals = sh.metrics.totals();
    sh.dashboard
        .series
        .sample(series::gauges(&view, now), totals);
}

/// The `swarm-dashboard` thread: feeds the stream and the series until stop.
pub(crate) fn run(sh: &Shared) {
    let mut history: Option<History> = None;
    let mut last_sample: Option<Instant> = None;
    let mut warned = false;
    while !sh.stop.load(Ordering::SeqCst) {
        if history.is_none() {
            history = History::open(&sh.db_path).ok();
        }
        if let Some(h) = &history {
            if let Err(e) = sh.dashboard.feed.poll(h) {
                if !warned {
                    tracing::warn!(error = %e, "the event stream cannot read events; retrying");
                    warned = true;
                }
                history = None;
            }
        }
        if last_sample.is_none_or(|t| t.elapsed() >= SAMPLE_EVERY) {
            sample(sh);
            last_sample = Some(Instant::now());
        }
        std::thread::sleep(FEED_EVERY);
    }
    sh.dashboard.feed.close();
}
