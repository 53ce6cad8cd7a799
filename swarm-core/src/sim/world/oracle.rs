//! The oracle: the ground truth the world knows (which drones really are alive,
//! which builds really run) checked against what the swarm decided, and the
//! figures the SLO report is made of.

use super::{Ev, SimFailure, World, START_EPOCH_MS};
use crate::id::DroneName;
use crate::output::{EscalationAction, Event, Output, ReclaimReason, RejectReason};
use crate::time::{MINUTE_MS, SECOND_MS};

impl World {
    /// All work is settled: every package is built, blocked, or waits on a
    /// blocked dependency (a verdict for a human), and nothing is leased.
    pub(super) fn done(&mut self) -> bool {
        if self.stats.enqueued_at == 0 || self.swarm.view().lease_count() > 0 {
            return false;
        }
        if self.built.len() + self.blocked.len() == self.pkgs.len() {
            return true;
        }
        // Before healing, blocked work may be the faults' doing: only the strict rule ends a run.
        if !self.healing || self.swarm.view().ready_count() > 0 {
            return false;
        }
        let key = (self.built.len(), self.blocked.len());
        if let Some((checked, settled)) = self.settled_checked {
            if checked == key {
                return settled;
            }
        }
        // Packages come after their dependencies only in generated worlds, so iterate to a fixpoint.
        let mut stuck: Vec<bool> = (0..self.pkgs.len())
            .map(|i| self.blocked.contains(&i))
            .collect();
        let mut changed = true;
        while changed {
            changed = false;
            for (i, p) in self.pkgs.iter().enumerate() {
                if !stuck[i] && !self.built.contains(&i) && p.deps.iter().any(|d| stuck[*d]) {
                    stuck[i] = true;
                    changed = true;
                }
            }
        }
        let settled = (0..self.pkgs.len()).all(|i| stuck[i] || self.built.contains(&i));
        self.settled_checked = Some((key, settled));
        settled
    }

    pub(super) fn fail(&mut self, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(SimFailure {
                seq: self.seq,
                reason,
            });
        }
    }

    /// Integrates busy slots and runnable demand up to `t`.
    pub(super) fn sample(&mut self, t: u64) {
        let dt = t.saturating_sub(self.last_sample);
        self.last_sample = t;
        if dt == 0 || self.stats.enqueued_at == 0 {
            return;
        }
        // Counting the fleet is linear in drones; big fleets recount every 10 s of virtual time.
        if self.agents.len() <= 64 || t.saturating_sub(self.fleet_counted_at) >= 10 * SECOND_MS {
            let (mut busy, mut slots) = (0u64, 0u64);
            for a in &self.agents {
                if a.alive && !a.partitioned {
                    slots += u64::from(a.slots);
                    if !a.hung {
                        busy += a.builds.values().filter(|j| j.started).count() as u64;
                    }
                }
            }
            self.fleet_count = (busy, slots);
            self.fleet_counted_at = t;
        }
        let (busy, slots) = self.fleet_count;
        let v = self.swarm.view();
        let demand = slots.min(u64::from(v.ready_count() + v.lease_count()));
        self.stats.busy_slot_ms += busy.min(demand) * dt;
        self.stats.demand_slot_ms += demand * dt;
    }

    pub(super) fn observe(&mut self, out: &[Output]) {
        let now = self.now;
        for o in out {
            match o {
                Output::Command(c) => self.route(c.clone()),
                Output::Event(e) => match e {
                    Event::Built { package, .. } => {
                        if let Some(&i) = self.by_atom.get(package) {
                            self.built.insert(i);
                        }
                        self.stats.built += 1;
                    }
                    Event::BuildFailed { .. } => self.stats.failed += 1,
                    Event::Blocked { package, .. } => {
                        if let Some(&i) = self.by_atom.get(package) {
                            self.blocked.insert(i);
                        }
                    }
                    Event::Unblocked { package, .. } => {
                        if let Some(&i) = self.by_atom.get(package) {
                            self.blocked.remove(&i);
                        }
                    }
                    Event::Reclaimed { drone, reason, .. } => self.on_reclaimed(drone, *reason),
                    Event::Escalated { drone, action } => self.on_escalated(drone, *action),
                    Event::BrakeEngaged { reason, .. } => {
                        self.stats.brake_engagements += 1;
                        if self.stats.brake_reason.is_none() {
                            self.stats.brake_reason = Some(reason.clone());
                        }
                    }
                    Event::Grounded { drone, until, .. } => {
                        self.grounded.insert(drone.clone(), until.0);
                        self.note_grounded();
                    }
                    Event::Ungrounded { drone } => {
                        self.grounded.remove(drone);
                    }
                    Event::InputRejected {
                        reason: RejectReason::StaleReport { .. },
                    } => self.stats.stale_rejected += 1,
                    Event::Queued { added, .. } if *added > 0 && self.stats.enqueued_at == 0 => {
                        self.stats.enqueued_at = now;
                    }
                    _ => {}
                },
            }
        }
    }

    pub(super) fn note_grounded(&mut self) {
        let now = START_EPOCH_MS + self.now + self.clock_offset;
        let grounded = self.grounded.values().filter(|u| **u > now).count() as u64;
        let active = u64::from(self.swarm.view().active_drones()).max(1);
        self.stats.grounded_max_pct = self.stats.grounded_max_pct.max(grounded * 100 / active);
    }

    pub(super) fn on_reclaimed(&mut self, drone: &DroneName, reason: ReclaimReason) {
        *self
            .stats
            .reclaims_by_reason
            .entry(format!("{reason:?}"))
            .or_default() += 1;
        let Some(&i) = self.by_name.get(drone) else {
            return;
        };
        let a = &self.agents[i];
        let reachable = a.alive && !a.partitioned;
        if reachable && reason != ReclaimReason::Returned {
            self.stats.reclaims_online += 1;
        }
        // The control plane can only be blamed once it could have seen fresh heartbeats.
        let reachable = reachable && self.seen_for_a_grace(i);
        if reachable
            && matches!(
                reason,
                ReclaimReason::Offline | ReclaimReason::ConfirmedDead
            )
        {
            self.stats.false_reclaims += 1;
            self.fail(format!(
                "oracle: {drone}'s work was reclaimed ({reason:?}) while it was alive and reachable"
            ));
        }
        if let Some(died) = self.agents[i].died_at.take() {
            if !self.agents[i].alive {
                self.stats.death_to_reclaim_ms.push(self.now - died);
            }
        }
    }

    pub(super) fn on_escalated(&mut self, drone: &DroneName, action: EscalationAction) {
        *self
            .stats
            .escalations_by_level
            .entry(format!("{action:?}"))
            .or_default() += 1;
        let Some(&i) = self.by_name.get(drone) else {
            return;
        };
        let (alive, hung, partitioned) = (
            self.agents[i].alive,
            self.agents[i].hung,
            self.agents[i].partitioned,
        );
        if alive && !hung && !partitioned && self.seen_for_a_grace(i) {
            self.stats.false_escalations += 1;
            self.fail(format!(
                "oracle: {drone} was escalated ({action:?}) while alive, reachable and working"
            ));
        }
        // The world's answer to the step: a reboot or a human brings a dead VM back;
        // a service restart cures a hang.
        let revive_in = match (action, alive) {
            (EscalationAction::Reboot, false) => Some(2 * MINUTE_MS),
            (EscalationAction::Manual, false) => Some(30 * MINUTE_MS),
            _ => None,
        };
        if let Some(dt) = revive_in {
            self.at(self.now + dt, Ev::Revive(i));
        }
        if hung
            && matches!(
                action,
                EscalationAction::RestartService | EscalationAction::HardRestart
            )
        {
            self.at(self.now + 30 * SECOND_MS, Ev::Revive(i));
        }
    }

    /// Reachable for at least a heartbeat grace: long enough for the control
    /// plane to have heard from it.
    pub(super) fn seen_for_a_grace(&self, i: usize) -> bool {
        self.now.saturating_sub(self.agents[i].reachable_since) >= self.heartbeat_grace_ms
    }
}
