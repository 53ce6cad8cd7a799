//! The fleet-wide brake: a common cause of failures stops new work before it burns
//! every package's attempts.

use super::{Out, Swarm};
use crate::atom::Atom;
use crate::id::DroneName;
use crate::output::{Event, Output};
use crate::policy::brake;
use crate::state::PkgId;

impl Swarm {
    /// Asks the brake whether `name` may be disrupted; records the (would-be)
    /// disruption and engages the brake when it is one too many.
    pub(super) fn disrupt(&mut self, name: &DroneName, what: &str, out: &mut Out) -> bool {
        let verdict = brake::assess(&self.st, name, what);
        let now = self.st.now;
        let window = self.st.config.brake_window_ms;
        self.st
            .brake
            .disrupted
            .retain(|_, at| now.since(*at) < window);
        self.st.brake.disrupted.insert(name.clone(), now);
        let allowed = match verdict {
            brake::Verdict::Allow => true,
            brake::Verdict::Hold { engage: None } => false,
            brake::Verdict::Hold {
                engage: Some((reason, held)),
            } => {
                self.engage_brake(reason, held, None, out);
                false
            }
        };
        self.sync_brake();
        allowed
    }

    /// Engages the brake when one failure cause hits many packages on most of
    /// the fleet. While it is engaged for a cause, a package failing with that
    /// cause is held too when the cause is a stale queue; otherwise the drone it
    /// failed on is set aside and the package is forgiven, for the other drones.
    pub(super) fn brake_on_common_cause(
        &mut self,
        drone: &DroneName,
        atom: &Atom,
        detail: &str,
        out: &mut Out,
    ) {
        if !self.st.config.brake_enabled {
            return;
        }
        if self.st.brake.engaged {
            let Some(cause) = self.ix.causes.of(detail) else {
                return;
            };
            if !self.st.brake.engaged_for(&cause) {
                return;
            }
            // The brake holds an atom in every profile: the cause is not the environment.
            let newly = if cause.means_stale_queue() {
                self.st.brake.held.insert(atom.clone())
            } else {
                let causes = &mut self.ix.causes;
                let again =
                    brake::repeatedly_failing(&self.st, &cause, |d| causes.of(d)).contains(drone);
                let set_aside = again && self.st.brake.cause_drones.insert(drone.clone());
                if set_aside {
                    self.st.brake.trials.insert(drone.clone(), self.st.now);
                    self.sync_drone(drone);
                    self.sync_brake();
                }
                true
            };
            if newly {
                self.forgive_atom(atom);
            }
            return;
        }
        let Some(found) = brake::common_cause(&self.st, |d| self.ix.causes.of(d)) else {
            return;
        };
        let held = found.held();
        let now = self.st.now;
        self.st.brake.trials = found.drones.iter().map(|d| (d.clone(), now)).collect();
        self.st.brake.cause_drones = found.drones;
        for failed in &found.failed {
            self.forgive_atom(failed);
        }
        self.engage_brake(found.reason, held, Some(found.cause.to_string()), out);
        self.sync_brake();
    }

    /// Whether the brake explains a failure on `drone` with `detail`: it is engaged for that
    /// cause (not a stale queue), and it set the drone aside before. Such a failure (a trial
    /// build on a drone still broken, or work it held when set aside) uses none of the
    /// package's attempts: trials every window through a night would otherwise block good
    /// packages one by one.
    pub(super) fn brake_explains(&mut self, drone: &DroneName, detail: &str) -> bool {
        let brake = &self.st.brake;
        if !brake.sets_aside(drone) {
            return false;
        }
        self.ix
            .causes
            .of(detail)
            .is_some_and(|cause| !cause.means_stale_queue() && brake.engaged_for(&cause))
    }

    /// A drone the brake set aside built a package: the cause is gone from it, and it takes
    /// work again. Once no drone is left set aside the brake has nothing left to do and
    /// releases itself, so a cause that hit the whole fleet (a mirror down at night) ends
    /// without an operator.
    pub(super) fn brake_trial_passed(&mut self, drone: &DroneName, out: &mut Out) {
        if !self.st.brake.engaged || !self.st.brake.cause_drones.remove(drone) {
            return;
        }
        self.st.brake.trials.remove(drone);
        if self.st.brake.cause_drones.is_empty() && self.st.brake.held.is_empty() {
            self.release_brake(false, out);
        } else {
            self.sync_drone(drone);
            self.sync_brake();
        }
    }

    /// Forgets which drones failed `atom` (in every profile).
    fn forgive_atom(&mut self, atom: &Atom) {
        for pkg in self.ids_of(atom) {
            let p = self.st.pkg_mut(pkg);
            p.failed_on.clear();
            p.build_failed_on.clear();
            self.sync_pkg(pkg);
        }
    }

    /// Engages the brake: holds `held`, forgives the failures it explains.
    pub(super) fn engage_brake(
        &mut self,
        reason: String,
        held: std::collections::BTreeSet<Atom>,
        cause: Option<String>,
        out: &mut Out,
    ) {
        self.st.brake.engaged = true;
        self.st.brake.reason = reason.clone();
        self.st.brake.cause = cause;
        let count = held.len() as u32;
        self.st.brake.held = held;
        self.forgive_brake_failures();
        self.resync_held_and_drones();
        out.push(Output::Event(Event::BrakeEngaged {
            reason,
            held: count,
        }));
    }

    /// The brake has judged that the fault is not in the drones: their failure
    /// streaks, and the held packages' failure memory, would otherwise ground
    /// drones and starve packages once it releases.
    pub(super) fn forgive_brake_failures(&mut self) {
        let held = self.held_by_brake();
        // Attempts stay counted: `max_attempts` is a promise about real builds.
        for pkg in held {
            self.st.forget_failures(pkg);
        }
        let now = self.st.now;
        for d in self.st.drones.values_mut() {
            if !d.is_grounded(now) {
                d.consecutive_failures = 0;
            }
        }
    }

    pub(crate) fn release_brake(&mut self, operator: bool, out: &mut Out) {
        if !self.st.brake.engaged {
            return;
        }
        self.st.brake.engaged = false;
        self.st.brake.reason.clear();
        self.st.brake.cause = None;
        self.st.brake.cause_drones.clear();
        self.st.brake.trials.clear();
        self.st.brake.cause_checked_at = None;
        // What it engaged for is judged over: kept, one new failure would engage it again
        // for all the old ones and set every drone aside (h24).
        self.st.brake.failures.clear();
        self.resync_held_and_drones();
        self.st.brake.held.clear();
        self.sync_brake();
        out.push(Output::Event(Event::BrakeReleased { operator }));
    }

    pub(super) fn held_by_brake(&self) -> Vec<PkgId> {
        let held = self.st.brake.held.iter();
        held.flat_map(|a| self.ids_of(a)).collect()
    }

    pub(super) fn resync_held_and_drones(&mut self) {
        let held = self.held_by_brake();
        for pkg in held {
            self.sync_pkg(pkg);
        }
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        for name in &names {
            self.sync_drone(name);
        }
    }
}
