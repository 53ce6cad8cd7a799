//! Drones and the fleet-wide brake.
//!
//! ```text
//!   register/heartbeat            no heartbeat for heartbeat_grace
//!  ─────────────────► Online ───────────────────────────────► Suspect
//!                       ▲  ◄──────── heartbeat ─────────────────┘ │
//!                       │                                         │ offline_timeout
//!                       └──────────── heartbeat ─── Offline ◄─────┘
//!
//!   any ── deregister (clean stop) ──► Stopped ── register/heartbeat ──► Online
//! ```
//! Online drones never lose work for age; Suspect drones get no new work;
//! Offline drones hold nothing. Stopped drones said goodbye: they hold
//! nothing, are never judged by heartbeat age and never escalated. A Suspect
//! drone that probes confirm dead loses its leases early but stays Suspect
//! until `offline_timeout`; "any" includes Stopped (a goodbye said twice).
//! These edges are [`Liveness::legal`]; `Drone::enter` refuses any other move
//! with an [`IllegalTransition`] (a bug in the core; `check_invariants` reports it).

use super::IllegalTransition;
use crate::health::DroneHealth;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::input::DroneSpec;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Liveness {
    Online,
    Suspect,
    Offline,
    /// Stopped cleanly (the agent deregistered).
    Stopped,
}

impl Liveness {
    /// Whether the diagram draws an edge from `from` to `to`: the one list of legal moves.
    pub(crate) fn legal(from: Liveness, to: Liveness) -> bool {
        use Liveness::*;
        matches!(
            (from, to),
            (Online, Suspect) // no heartbeat for heartbeat_grace
                | (Suspect, Offline) // offline_timeout
                | (Suspect | Offline | Stopped, Online) // a sign of life
                | (_, Stopped) // deregister
        )
    }
}

/// Consecutive probe failures, for escalation and confirmed-dead reclaim.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct ProbeStreak {
    /// Failures that count toward escalation.
    pub(crate) failures: u32,
    pub(crate) first_at: Option<Timestamp>,
    /// Consecutive "down" answers (unreachable/timeout/service_down).
    pub(crate) down: u32,
    /// When the second consecutive "down" arrived.
    pub(crate) confirmed_at: Option<Timestamp>,
}

/// Where a drone stands on the escalation ladder.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Ladder {
    /// Steps taken since the drone was last healthy.
    pub(crate) steps: u8,
    pub(crate) last_at: Option<Timestamp>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Drone {
    pub(crate) spec: DroneSpec,
    pub(crate) epoch: Epoch,
    pub(crate) last_heartbeat: Timestamp,
    /// Private: it changes only through `Swarm::set_liveness` (swarm/upkeep.rs), along an
    /// edge of the diagram (`Drone::enter`), which re-arms the liveness check and keeps the
    /// timers and the touched set in step with it.
    liveness: Liveness,
    /// When liveness is next checked; at or before the true deadline (see `policy::liveness`).
    pub(crate) check_at: Option<Timestamp>,
    pub(crate) health: DroneHealth,
    pub(crate) mem_percent: Option<u8>,
    pub(crate) disk_percent: Option<u8>,
    pub(crate) load_centi: Option<u32>,
    pub(crate) paused: bool,
    pub(crate) drained: bool,
    pub(crate) leases: BTreeSet<LeaseId>,
    pub(crate) consecutive_failures: u32,
    pub(crate) groundings: u32,
    pub(crate) grounded_until: Option<Timestamp>,
    pub(crate) upload_failures: VecDeque<Timestamp>,
    pub(crate) upload_hold_until: Option<Timestamp>,
    pub(crate) probe: ProbeStreak,
    pub(crate) ladder: Ladder,
    pub(crate) builds_ok: u64,
    pub(crate) builds_failed: u64,
    /// The last `sync_portage` this drone was given (see `portage::gate`).
    #[serde(default)]
    pub(crate) sync_asked: crate::portage::LastSyncAsk,
    /// Revokes it has not yet been seen to obey, repeated in its replies.
    #[serde(default, skip_serializing_if = "super::RevokeBox::is_empty")]
    pub(crate) revokes: super::RevokeBox,
    /// Leases it ended by its own reports, so a report sent again after a lost reply is
    /// answered as the first was (see `state::reported`).
    #[serde(default, skip_serializing_if = "super::ReportedLeases::is_empty")]
    pub(crate) reported: super::ReportedLeases,
}

impl Drone {
    pub(crate) fn new(spec: DroneSpec, now: Timestamp) -> Self {
        Drone {
            spec,
            epoch: Epoch(1),
            last_heartbeat: now,
            liveness: Liveness::Online,
            check_at: None,
            health: DroneHealth::Healthy,
            mem_percent: None,
            disk_percent: None,
            load_centi: None,
            paused: false,
            drained: false,
            leases: BTreeSet::new(),
            consecutive_failures: 0,
            groundings: 0,
            grounded_until: None,
            upload_failures: VecDeque::new(),
            upload_hold_until: None,
            probe: ProbeStreak::default(),
            ladder: Ladder::default(),
            builds_ok: 0,
            builds_failed: 0,
            sync_asked: crate::portage::LastSyncAsk(None),
            revokes: super::RevokeBox::default(),
            reported: super::ReportedLeases::default(),
        }
    }

    /// Where the drone stands: online, suspect, offline or stopped.
    pub(crate) fn liveness(&self) -> Liveness {
        self.liveness
    }

    /// Moves the drone to `to` if the diagram allows it, without touching the index: only
    /// `Swarm::set_liveness` calls it (and tests of bare drones). Refused, it stays where it was.
    pub(crate) fn enter(&mut self, to: Liveness) -> Result<(), IllegalTransition<Liveness>> {
        if !Liveness::legal(self.liveness, to) {
            return Err(IllegalTransition {
                from: self.liveness,
                to,
            });
        }
        self.liveness = to;
        Ok(())
    }

    pub(crate) fn is_grounded(&self, now: Timestamp) -> bool {
        self.grounded_until.is_some_and(|u| u > now)
    }

    pub(crate) fn heartbeat_fresh(&self, now: Timestamp, grace_ms: u64) -> bool {
        now.since(self.last_heartbeat) < grace_ms
    }
}

/// The disruption brake: stops the swarm from grounding, reclaiming or
/// escalating most of the fleet at once (the "every drone grounded over a stale
/// queue" incident).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Brake {
    pub(crate) engaged: bool,
    pub(crate) reason: String,
    /// Packages whose assignment is paused while engaged.
    pub(crate) held: BTreeSet<crate::atom::Atom>,
    /// Last disruption (or would-be disruption) per drone.
    pub(crate) disrupted: BTreeMap<DroneName, Timestamp>,
    /// Recent failures: (at, drone, package, detail), pruned to the window.
    pub(crate) failures: VecDeque<(Timestamp, DroneName, crate::atom::Atom, String)>,
    /// The failure cause it engaged for (`policy::brake::common_cause`), if
    /// that is why: it then stays until the operator releases it or runs
    /// `fresh`, and later failures with the same cause join the held set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause: Option<String>,
    /// Drones whose builds failed with that cause, when it is not a stale queue: the fault
    /// is theirs (a full disk, a broken proxy on some of the fleet), so they take no new work
    /// while it is engaged, and the packages they failed go to the other drones instead of
    /// being held (h22: 3 of 5 drones with full disks had every package held and the 2
    /// healthy drones idle).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub(crate) cause_drones: BTreeSet<DroneName>,
    /// When each drone in `cause_drones` was set aside or last given a trial build: one
    /// every `brake_window_ms`, and a success returns it to work. Without trials a cause
    /// shared by the whole fleet (a mirror down at night) idled it until an operator acted.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) trials: BTreeMap<DroneName, Timestamp>,
    /// When the brake last found a drone it set aside trying a build, a window or more after
    /// the last failure with its cause: it looks again a window later (see
    /// `Swarm::cause_spent_at`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cause_checked_at: Option<Timestamp>,
}

impl Brake {
    /// Whether it is engaged and has set `drone` aside (one trial build a window).
    pub(crate) fn sets_aside(&self, drone: &DroneName) -> bool {
        self.engaged && self.cause_drones.contains(drone)
    }

    /// Whether it is engaged for `cause`.
    pub(crate) fn engaged_for(&self, cause: &crate::failure::Cause) -> bool {
        self.cause.as_deref() == Some(cause.to_string().as_str())
    }
}

// By hand so a state without a cause digests as before the field existed.
impl std::hash::Hash for Brake {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.engaged.hash(state);
        self.reason.hash(state);
        self.held.hash(state);
        self.disrupted.hash(state);
        self.failures.hash(state);
        if let Some(c) = &self.cause {
            c.hash(state);
        }
        if !self.cause_drones.is_empty() {
            self.cause_drones.hash(state);
        }
        if !self.trials.is_empty() {
            self.trials.hash(state);
        }
        if let Some(at) = self.cause_checked_at {
            at.hash(state);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::transition::check;
    use Liveness::*;

    const ALL: [Liveness; 4] = [Online, Suspect, Offline, Stopped];

    #[test]
    fn the_table_draws_exactly_the_edges_of_the_diagram() {
        assert_eq!(
            check::edges(&ALL, Liveness::legal),
            [
                (Online, Suspect),
                (Online, Stopped),
                (Suspect, Online),
                (Suspect, Offline),
                (Suspect, Stopped),
                (Offline, Online),
                (Offline, Stopped),
                (Stopped, Online),
                (Stopped, Stopped),
            ]
        );
    }

    #[test]
    fn a_drone_goes_offline_only_through_suspicion_and_back_only_online() {
        assert!(!Liveness::legal(Online, Offline), "skips suspicion");
        for from in [Offline, Stopped] {
            assert!(!Liveness::legal(from, Suspect), "{from:?} -> Suspect");
        }
        assert!(
            !Liveness::legal(Stopped, Offline),
            "a stopped drone is not judged"
        );
    }

    #[test]
    fn an_illegal_move_is_refused_and_the_drone_stays_where_it_was() {
        check::assert_enter_follows(&ALL, Liveness::legal, |from, to| {
            let mut d = Drone::new(DroneSpec::default(), Timestamp(0));
            d.liveness = from;
            (d.enter(to), d.liveness())
        });
    }
}
