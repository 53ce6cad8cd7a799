//! Reading the server while the demo runs.

use anyhow::bail;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use swarm_net::client::admin::{Node, Status};
use swarm_net::client::{Client, ClientError};

/// How often the demo asks the server how things stand.
pub(super) const TICK: Duration = Duration::from_millis(250);

/// Reads the server with a little patience (a loaded machine may answer one
/// request late) and watches the stop flag and the deadline.
pub(super) struct Poller<'a> {
    client: &'a Client,
    stop: &'a AtomicBool,
    deadline: Instant,
    /// The last event id seen.
    pub(super) after: i64,
}

impl<'a> Poller<'a> {
    pub(super) fn new(client: &'a Client, stop: &'a AtomicBool, deadline: Instant) -> Poller<'a> {
        Poller {
            client,
            stop,
            deadline,
            after: 0,
        }
    }

    pub(super) fn retry<T>(
        &self,
        mut call: impl FnMut() -> Result<T, ClientError>,
    ) -> anyhow::Result<T> {
        let mut tries = 0;
        loop {
            match call() {
                Ok(v) => return Ok(v),
                Err(e) if e.is_transport() && tries < 20 => {
                    tries += 1;
                    self.check()?;
                    std::thread::sleep(TICK);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(super) fn status(&self) -> anyhow::Result<Status> {
        self.retry(|| self.client.status().map(|a| a.body))
    }

    pub(super) fn nodes(&self) -> anyhow::Result<Vec<Node>> {
        self.retry(|| self.client.nodes().map(|a| a.body.nodes))
    }

    /// Events since the last call.
    pub(super) fn events(&mut self) -> anyhow::Result<Vec<swarm_net::client::admin::EventRecord>> {
        let after = self.after;
        let page = self.retry(|| self.client.events_after(after, Some(1000)).map(|a| a.body))?;
        if let Some(last) = page.events.last() {
            self.after = last.id;
        }
        Ok(page.events)
    }

    pub(super) fn check(&self) -> anyhow::Result<()> {
        if self.stop.load(Ordering::Relaxed) {
            bail!("interrupted");
        }
        if Instant::now() > self.deadline {
            bail!("gave up: the run did not finish within --timeout-s");
        }
        Ok(())
    }

    /// Sleeps one tick; true when a signal came meanwhile.
    pub(super) fn sleep(&self, stop: &AtomicBool) -> bool {
        let end = Instant::now() + TICK;
        while Instant::now() < end {
            if stop.load(Ordering::Relaxed) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// Sleeps one tick, failing on a signal or the deadline.
    pub(super) fn pause(&self, waiting_for: Option<&str>) -> anyhow::Result<()> {
        let end = Instant::now() + TICK;
        while Instant::now() < end {
            if let Err(e) = self.check() {
                return Err(match waiting_for {
                    Some(w) => e.context(w.to_string()),
                    None => e,
                });
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        Ok(())
    }
}
