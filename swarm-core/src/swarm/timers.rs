//! Deadlines coming due: retry backoffs, groundings, liveness checks.

use super::{Out, Swarm};
use crate::id::DroneName;
use crate::index::TimerKey;
use crate::output::{Event, Output, ReclaimReason};
use crate::policy::{brake, extend, liveness, plan};
use crate::state::{Liveness, PackageState};

impl Swarm {
    pub(super) fn fire_due_timers(&mut self, out: &mut Out) {
        while let Some(key) = self.ix.pop_due(self.st.now) {
            self.on_timer(key, out);
        }
    }

    pub(super) fn on_timer(&mut self, key: TimerKey, out: &mut Out) {
        match key {
            TimerKey::Liveness(name) => self.on_liveness_check(&name, out),
            TimerKey::ConfirmedDead(name) => {
                if self.disrupt(&name, "reclaim", out) {
                    self.reclaim_all(&name, ReclaimReason::ConfirmedDead, out);
                }
                self.sync_drone(&name);
            }
            TimerKey::Unground(name) => {
                if let Some(d) = self.st.drones.get_mut(&name) {
                    d.grounded_until = None;
                    d.consecutive_failures = 0;
                    out.push(Output::Event(Event::Ungrounded {
                        drone: name.clone(),
                    }));
                }
                self.sync_drone(&name);
            }
            TimerKey::Retry(pkg) => match self.st.packages.get(pkg.index()) {
                Some(p) if p.is_queued() => {
                    self.transition(pkg, PackageState::Queued { retry_at: None })
                }
                _ => self.sync_pkg(pkg),
            },
            TimerKey::AutoUnblock(pkg) => self.unblock(pkg, false, out),
            TimerKey::Brake => {
                let spent = self.cause_spent_at().is_some_and(|at| at <= self.st.now);
                if spent && self.brake_trying() {
                    // Its trials decide; look again a window later.
                    self.st.brake.cause_checked_at = Some(self.st.now);
                } else if self.st.brake.engaged
                    && (spent || self.st.brake.cause.is_none() && brake::may_release(&self.st))
                {
                    self.release_brake(false, out);
                }
                self.sync_brake();
            }
            TimerKey::Replan => {
                let relearned_due = !self.st.relearned.is_empty()
                    && self.st.now >= self.st.last_plan.plus(self.st.config.replan_interval_ms);
                if relearned_due && plan::refresh_estimates(&mut self.st, &self.ix.by_key) {
                    plan::recompute_critical_paths(&mut self.st);
                    self.resync_all_packages();
                }
                if !self.st.cp_pending.is_empty() {
                    let moved = extend::propagate(
                        &mut self.st,
                        &self.ix.depth,
                        [],
                        extend::PROPAGATION_BUDGET,
                    );
                    for id in moved {
                        self.sync_rank(id);
                    }
                }
                self.sync_replan();
            }
        }
    }

    /// A drone's liveness deadline came up. Heartbeats do not move the timer
    /// (that would cost two index updates per heartbeat); the check re-reads
    /// the last heartbeat and either judges the drone or looks again later.
    pub(super) fn on_liveness_check(&mut self, name: &DroneName, out: &mut Out) {
        let now = self.st.now;
        let (suspect, offline) = match self.st.drones.get(name) {
            Some(d) => (
                liveness::suspect_at(&self.st, d).is_some_and(|t| t <= now),
                liveness::offline_at(&self.st, d).is_some_and(|t| t <= now),
            ),
            None => return,
        };
        if suspect && self.set_liveness(name, Liveness::Suspect) {
            out.push(Output::Event(Event::WentSuspect {
                drone: name.clone(),
            }));
        }
        if offline && self.set_liveness(name, Liveness::Offline) {
            out.push(Output::Event(Event::WentOffline {
                drone: name.clone(),
            }));
            self.reclaim_all(name, ReclaimReason::Offline, out);
        }
        let next = self
            .st
            .drones
            .get(name)
            .and_then(|d| liveness::next_check(&self.st, d));
        if let Some(d) = self.st.drones.get_mut(name) {
            d.check_at = next;
        }
        self.sync_drone(name);
    }
}
