//! Keeping the index (ready set, ranks, timers) in step with the state after each change.

use super::{Out, Swarm};
use crate::id::DroneName;
use crate::index::{Index, TimerKey};
use crate::output::{Event, Output};
use crate::policy::{extend, liveness, plan, schedule};
use crate::state::{Liveness, PackageState, PkgId};
use crate::time::Timestamp;
use crate::violation::Violation;

impl Swarm {
    /// A sign of life. An online drone's timers stay where they are (the
    /// liveness check re-reads `last_heartbeat`); a returning drone is resynced.
    pub(super) fn touch(&mut self, name: &DroneName, out: &mut Out) {
        let now = self.st.now;
        let grace = self.st.config.heartbeat_grace_ms;
        let Some(d) = self.st.drones.get_mut(name) else {
            return;
        };
        d.last_heartbeat = now;
        self.touched.drone(name);
        if d.liveness() != Liveness::Online {
            d.probe = Default::default();
            d.ladder = Default::default();
            if self.set_liveness(name, Liveness::Online) {
                out.push(Output::Event(Event::CameBack {
                    drone: name.clone(),
                }));
            }
        } else if d.check_at.is_none() {
            // Just registered: its first liveness check.
            d.check_at = Some(now.plus(grace));
            self.sync_drone(name);
        }
    }

    /// Sets a deadline, never in the past: a deadline behind `now` would look
    /// like one the adapter missed (see the failover rule in `handle`).
    pub(super) fn set_timer(&mut self, key: TimerKey, at: Option<Timestamp>) {
        let now = self.st.now;
        self.ix.set_timer(key, at.map(|t| t.max(now)));
    }

    /// The one way a package changes state: moves it along an edge of its diagram
    /// (`state/package.rs`) and brings the index (ready and sweep sets, retry and auto-unblock
    /// timers) in step, so no caller can leave them apart. Other fields the new state depends
    /// on are set before it. An illegal move is refused: the package stays as it was and
    /// `check_invariants` reports it (the core never panics on what an input led it to).
    pub(crate) fn transition(&mut self, pkg: PkgId, to: PackageState) {
        match self.st.pkg_mut(pkg).enter(to) {
            Ok(()) => self.sync_pkg(pkg),
            Err(e) => {
                let atom = &self.st.pkg(pkg).atom;
                self.refuse(format!("package {atom}: {e}"));
            }
        }
    }

    /// The one way a drone's liveness changes: moves it along an edge of its diagram
    /// (`state/drone.rs`), re-arms its liveness check for the new state, and brings its timers
    /// and the touched set in step. Other fields the new state depends on are set before it.
    /// An illegal move is refused as [`Swarm::transition`] refuses one. Whether it moved.
    pub(crate) fn set_liveness(&mut self, name: &DroneName, to: Liveness) -> bool {
        let Some(d) = self.st.drones.get_mut(name) else {
            return false;
        };
        if let Err(e) = d.enter(to) {
            self.refuse(format!("drone {name}: {e}"));
            return false;
        }
        let next = (self.st.drones.get(name)).and_then(|d| liveness::next_check(&self.st, d));
        if let Some(d) = self.st.drones.get_mut(name) {
            d.check_at = next;
        }
        self.sync_drone(name);
        true
    }

    /// Keeps the first illegal move for `check_invariants` (invariant 16).
    fn refuse(&mut self, detail: String) {
        self.refused.get_or_insert(Violation {
            invariant: 16,
            detail,
        });
    }

    /// After a change to a package: records it as touched and brings its index entries in step.
    pub(crate) fn sync_pkg(&mut self, pkg: PkgId) {
        self.touched.package(pkg);
        self.index_pkg(pkg);
    }

    /// [`Swarm::sync_pkg`] for a package only the plan moved (its rank, not its row).
    fn index_pkg(&mut self, pkg: PkgId) {
        let p = self.st.pkg(pkg);
        let ready = schedule::is_ready(&self.st, p).then(|| schedule::ready_key(&self.st, pkg, p));
        let sweep = schedule::is_sweepable(p).then(|| schedule::ready_key(&self.st, pkg, p));
        let retry_at = p.retry_at();
        let auto = match *p.state() {
            PackageState::Blocked {
                auto_unblock_at, ..
            } => auto_unblock_at,
            _ => None,
        };
        Index::set_member(&mut self.ix.ready, &mut self.ix.ready_key, pkg, ready);
        Index::set_member(&mut self.ix.sweepable, &mut self.ix.sweep_key, pkg, sweep);
        self.set_timer(TimerKey::Retry(pkg), retry_at);
        self.set_timer(TimerKey::AutoUnblock(pkg), auto);
    }

    /// After a package's plan moved (or it was just queued): only a package
    /// in the ready or sweep set has a key that depends on it, and its
    /// timers do not; the rest of a long ancestry costs no index lookup.
    pub(super) fn sync_rank(&mut self, pkg: PkgId) {
        let p = self.st.pkg(pkg);
        if schedule::is_ready(&self.st, p) || schedule::is_sweepable(p) {
            self.index_pkg(pkg);
        }
    }

    /// After a change to a drone: records it as touched and brings its timers in step.
    pub(crate) fn sync_drone(&mut self, name: &DroneName) {
        self.touched.drone(name);
        let (check, dead, unground) = match self.st.drones.get(name) {
            Some(d) => (
                d.check_at,
                liveness::confirmed_dead_at(&self.st, d),
                d.grounded_until,
            ),
            None => (None, None, None),
        };
        self.set_timer(TimerKey::Liveness(name.clone()), check);
        self.set_timer(TimerKey::ConfirmedDead(name.clone()), dead);
        self.set_timer(TimerKey::Unground(name.clone()), unground);
    }

    pub(super) fn sync_brake(&mut self) {
        let at = self
            .st
            .brake
            .engaged
            .then(|| {
                let window = self.st.config.brake_window_ms;
                let now = self.st.now;
                let expiries = self.st.brake.disrupted.values().map(|at| at.plus(window));
                let grounded_ends = self.st.drones.values().filter_map(|d| d.grounded_until);
                let next = expiries.chain(grounded_ends).filter(|t| *t > now).min();
                // A brake engaged for a common cause stays until the operator acts, its
                // drones pass their trials, or it has nothing left to do.
                match (next, &self.st.brake.cause) {
                    (Some(t), _) => Some(t),
                    (None, None) => Some(now),
                    (None, Some(_)) => None,
                }
            })
            .flatten();
        let spent = self.cause_spent_at();
        let at = match (at, spent) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.set_timer(TimerKey::Brake, at);
    }

    /// When a brake engaged for a cause that holds no package may release itself: a window
    /// after the last failure with its cause, unless a drone it set aside is trying a build
    /// or could (then it looks again a window later, and the trials decide). Such a brake
    /// with no drone trying (none failed with the cause twice; those set aside were removed,
    /// are late, paused or drained; or the queue has nothing left to try) did nothing but
    /// stop every grounding and dead-drone reclaim of the fleet until an operator released
    /// it (h25).
    pub(super) fn cause_spent_at(&mut self) -> Option<Timestamp> {
        let b = &self.st.brake;
        if b.cause.is_none() || !b.engaged || !b.held.is_empty() {
            return None;
        }
        let window = self.st.config.brake_window_ms;
        let causes = &mut self.ix.causes;
        // Failures older than the window are pruned as new ones come: none left with the
        // cause means the last one is at least a window old.
        let last = b
            .failures
            .iter()
            .rev()
            .find(|f| causes.of(&f.3).is_some_and(|c| b.engaged_for(&c)))
            .map(|f| f.0);
        Some(
            last.max(b.cause_checked_at)
                .unwrap_or_default()
                .plus(window),
        )
    }

    /// Whether a drone the brake set aside is trying a build or could try one: online, and
    /// holding a build, or neither paused nor drained with packages to try (ready, or backing
    /// off after a failed trial: a short queue is all backing off between trials). A drone
    /// whose heartbeat is late tries nothing, whatever it holds: with the brake engaged its
    /// work is reclaimed only when it is judged offline (h26).
    pub(super) fn brake_trying(&self) -> bool {
        let backing_off = self
            .ix
            .timer_at
            .range(TimerKey::Retry(PkgId(0))..)
            .next()
            .is_some_and(|(key, _)| matches!(key, TimerKey::Retry(_)));
        let to_try = !self.ix.ready.is_empty() || backing_off;
        let b = &self.st.brake;
        b.cause_drones
            .iter()
            .filter_map(|name| self.st.drones.get(name))
            .any(|d| {
                d.liveness() == Liveness::Online
                    && (!d.leases.is_empty() || to_try && !d.paused && !d.drained)
            })
    }

    pub(super) fn sync_replan(&mut self) {
        let dirty = !self.st.relearned.is_empty();
        let relearn = dirty.then(|| self.st.last_plan.plus(self.st.config.replan_interval_ms));
        // Critical paths an enqueue left to finish: a slice per tick, the
        // next one `PROPAGATION_PAUSE_MS` on, so one `Tick` never drains it
        // all and a busy writer's other inputs come first.
        let pending = (!self.st.cp_pending.is_empty())
            .then(|| self.st.now.plus(extend::PROPAGATION_PAUSE_MS));
        let at = match (relearn, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.set_timer(TimerKey::Replan, at);
    }

    /// Recomputes the plan and re-sorts the ready set.
    pub(crate) fn replan(&mut self) {
        plan::replan(&mut self.st);
        self.ix.depth = extend::depths(&self.st);
        self.resync_all_packages();
    }

    /// Re-ranks every package after the plan moved; no row changes with it.
    pub(super) fn resync_all_packages(&mut self) {
        for i in 0..self.st.packages.len() {
            self.index_pkg(PkgId(i as u32));
        }
        self.sync_replan();
    }

    /// Derives every index entry from the state (restore, `fresh`).
    pub(crate) fn rebuild_index(&mut self) {
        self.touched.all();
        self.ix = Index {
            by_atom: Index::atoms_of(&self.st),
            by_key: Index::keys_of(&self.st),
            declared: Index::declared_of(&self.st),
            depth: extend::depths(&self.st),
            ..Index::default()
        };
        for i in 0..self.st.packages.len() {
            self.index_pkg(PkgId(i as u32));
        }
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        for name in &names {
            self.sync_drone(name);
        }
        self.sync_brake();
        self.sync_replan();
    }
}
