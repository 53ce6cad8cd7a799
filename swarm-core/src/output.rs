//! What the swarm tells the world: imperative `Command`s an adapter performs,
//! and past-tense `Event`s that form the activity feed.

use crate::atom::Atom;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::input::FailureClass;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// One output of `Swarm::handle`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "body", rename_all = "snake_case")]
pub enum Output {
    /// Something an adapter must do.
    Command(Command),
    /// Something that happened.
    Event(Event),
}

/// Escalation steps, in ladder order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationAction {
    /// Restart the drone service.
    RestartService,
    /// Kill and restart everything the drone runs.
    HardRestart,
    /// Reboot the machine (containers and VMs only).
    Reboot,
    /// Page a human; nothing automatic is left.
    Manual,
}

/// Commands, imperative.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum Command {
    /// Give a drone a package under a new lease.
    Assign {
        /// To whom.
        drone: DroneName,
        /// What.
        package: Atom,
        /// Under which lease.
        lease: LeaseId,
        /// The drone's epoch the lease belongs to.
        epoch: Epoch,
        /// The profile it is built for (`None`: the default profile); its binary belongs in
        /// that profile's binhost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Tell a v3 drone again what it holds (it polled without reporting it): the same lease,
    /// not a new one.
    Resend {
        /// To whom.
        drone: DroneName,
        /// What it holds.
        package: Atom,
        /// The lease it holds.
        lease: LeaseId,
        /// The lease's profile (`None`: the default profile).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Tell a drone to stop building something that is no longer its own.
    Revoke {
        /// Which drone.
        drone: DroneName,
        /// The lease, if known (legacy reports have none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<LeaseId>,
        /// The package, if known (a heartbeat may name a lease long gone).
        /// At least one of `lease` and `package` is set.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        package: Option<Atom>,
        /// Why.
        reason: RevokeReason,
    },
    /// Run a self-healing step on a drone.
    Escalate {
        /// Which drone.
        drone: DroneName,
        /// Which step.
        action: EscalationAction,
    },
    /// The drone's Portage tree differs from the queue's (or is unknown): sync
    /// to `expected` first.
    SyncPortage {
        /// Which drone.
        drone: DroneName,
        /// The snapshot the queue was computed on.
        expected: String,
    },
}

/// Why a drone is told to stop. The v3 reply text is derived from it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum RevokeReason {
    /// Someone else holds the package now.
    ReassignedTo {
        /// The new holder.
        drone: DroneName,
    },
    /// It is already built.
    CompletedElsewhere,
    /// It was taken back (offline, rebalance, grounding, operator...).
    Reclaimed {
        /// The reclaim reason.
        reason: ReclaimReason,
    },
    /// The lease or package is unknown (removed by `fresh`, or never existed).
    Unknown,
}

impl fmt::Display for RevokeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RevokeReason::ReassignedTo { drone } => write!(f, "work reassigned to {drone}"),
            RevokeReason::CompletedElsewhere => f.write_str("work already completed elsewhere"),
            RevokeReason::Reclaimed { .. } | RevokeReason::Unknown => f.write_str("work reclaimed"),
        }
    }
}

/// Why work was taken back from a drone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReclaimReason {
    /// Heartbeat older than `offline_timeout`.
    Offline,
    /// Suspect and confirmed down by probes.
    ConfirmedDead,
    /// The drone handed it back.
    Returned,
    /// The drone reported Critical health.
    Critical,
    /// The drone's name re-registered under a new machine id.
    Reregistered,
    /// The circuit breaker grounded the drone (not-started work only).
    Grounded,
    /// An idle drone took it (not-started work only).
    Stolen,
    /// Operator `rebalance` (not-started work only).
    Rebalance,
    /// Operator `reclaim` or `block`.
    Operator,
    /// Operator `fresh` (not-started work only).
    Fresh,
    /// The drone's build environment no longer matches the expected one (not-started work only).
    EnvDrift,
}

impl ReclaimReason {
    /// Reasons that may take work from a drone whose heartbeat is fresh (invariant 4).
    pub fn allowed_for_fresh_drone(self) -> bool {
        !matches!(self, ReclaimReason::Offline | ReclaimReason::ConfirmedDead)
    }

    /// Reasons that may take a started build (invariant 5).
    pub fn may_take_started(self) -> bool {
        matches!(
            self,
            ReclaimReason::Offline
                | ReclaimReason::ConfirmedDead
                | ReclaimReason::Returned
                | ReclaimReason::Critical
                | ReclaimReason::Reregistered
                | ReclaimReason::Operator
        )
    }
}

/// Why an input was refused. The input is still logged; nothing changed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum RejectReason {
    /// `expect_env` from a drone that has reported no build environment.
    NoEnvironment {
        /// The drone.
        drone: DroneName,
    },
    /// The drone never registered.
    UnknownDrone {
        /// Its name.
        drone: DroneName,
    },
    /// A report that does not match the package's live lease or the drone's epoch.
    StaleReport {
        /// Who sent it.
        drone: DroneName,
        /// About what.
        package: Atom,
        /// Its lease, if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lease: Option<LeaseId>,
    },
    /// The package is not in the queue.
    UnknownPackage {
        /// Its atom.
        package: Atom,
    },
    /// An enqueue for an older queue generation.
    StaleGeneration {
        /// The generation named.
        given: u64,
        /// The current generation.
        current: u64,
    },
    /// An enqueue naming a Portage snapshot in no form Portage writes.
    BadSnapshot {
        /// The text given.
        given: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A forced removal of a profile while builds of it run: the removal drops its queue and
    /// the profile in one step, so it waits for them (or their reclaim), changing nothing.
    ProfileBuilding {
        /// The profile.
        profile: String,
        /// Its packages being built.
        running: Vec<Atom>,
    },
    /// An enqueue naming a profile that does not exist; refused whole.
    UnknownProfile {
        /// The profile named.
        profile: String,
    },
    /// An enqueue naming a package the queue held for another profile, from when the queue held
    /// one package per atom. No longer given (a package is now (profile, atom)); kept so logs
    /// that recorded it still read.
    ProfileConflict {
        /// The package.
        package: Atom,
        /// The profile the queue holds it for (`default` for none).
        queued_for: String,
        /// The profile the push asked for.
        asked_for: String,
    },
    /// An operator action naming an atom queued in several profiles without saying which.
    AmbiguousPackage {
        /// The atom.
        package: Atom,
        /// The profiles it is queued in (`default` for the default profile).
        profiles: Vec<String>,
    },
    /// A control action that does not apply now.
    IllegalControl {
        /// What was wrong.
        detail: String,
    },
}

/// Why a package is blocked.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "why", rename_all = "snake_case")]
pub enum BlockReason {
    /// Failed with class `build` on this many distinct drones.
    FailedOnDrones {
        /// How many.
        drones: u32,
    },
    /// Used up `max_attempts`.
    AttemptsExhausted {
        /// How many.
        attempts: u32,
    },
    /// Every drone that could build it has failed it recently.
    NoEligibleDrone,
    /// Needs more memory than any drone has.
    NeedsMemory {
        /// MiB needed.
        ram_mb: u64,
    },
    /// Masked in Portage: blocked for good.
    Masked,
    /// Blocked by an operator.
    Operator,
    /// Built this many times, but its binary never arrived (`max_attempts` deliveries failed).
    Undeliverable {
        /// How many.
        times: u32,
    },
}

impl fmt::Display for BlockReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockReason::FailedOnDrones { drones } => write!(f, "failed on {drones} drones"),
            BlockReason::AttemptsExhausted { attempts } => {
                write!(f, "gave up after {attempts} attempts")
            }
            BlockReason::NoEligibleDrone => f.write_str("every eligible drone has failed it"),
            BlockReason::NeedsMemory { ram_mb } => {
                write!(
                    f,
                    "needs more than {} GB RAM; no drone has it",
                    ram_mb / 1024
                )
            }
            BlockReason::Masked => f.write_str("masked"),
            BlockReason::Operator => f.write_str("blocked by operator"),
            BlockReason::Undeliverable { times } => {
                write!(f, "built {times} times, but no binary of it ever arrived")
            }
        }
    }
}

/// Past-tense events: the activity feed and the audit trail.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A drone's build environment stopped (or started) matching a profile's expected one
    /// (it drifted, or the profile changed): one event per profile.
    EnvChanged {
        /// Who.
        drone: DroneName,
        /// Whether it matches now.
        matches: bool,
        /// What differs, in words ("environment differs in CFLAGS (-O3 vs -O2)"); empty when it matches.
        differences: String,
        /// The named profile; absent for the default one (`expect_env`'s), as before profiles.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// A drone registered, or re-registered in a new epoch.
    Registered {
        /// Who.
        drone: DroneName,
        /// Its epoch now.
        epoch: Epoch,
    },
    /// A heartbeat is late: no new work until it comes.
    WentSuspect {
        /// Who.
        drone: DroneName,
    },
    /// No heartbeat for `offline_timeout`.
    WentOffline {
        /// Who.
        drone: DroneName,
    },
    /// A drone stopped cleanly and said so (`Input::Deregister`).
    Deregistered {
        /// Who.
        drone: DroneName,
    },
    /// An operator retired a drone; its history stays.
    Removed {
        /// Who.
        drone: DroneName,
    },
    /// A suspect, offline or stopped drone heartbeats again.
    CameBack {
        /// Who.
        drone: DroneName,
    },
    /// Work was taken back and requeued.
    Reclaimed {
        /// From whom.
        drone: DroneName,
        /// What.
        package: Atom,
        /// Which lease ended.
        lease: LeaseId,
        /// Why.
        reason: ReclaimReason,
        /// Whether the build had started.
        started: bool,
    },
    /// New packages are queued.
    Queued {
        /// How many were added.
        added: u32,
        /// How many were already queued or building.
        already: u32,
    },
    /// A build started.
    Started {
        /// Where.
        drone: DroneName,
        /// What.
        package: Atom,
        /// Lease.
        lease: LeaseId,
    },
    /// A package was built.
    Built {
        /// Where.
        drone: DroneName,
        /// What.
        package: Atom,
        /// Lease.
        lease: LeaseId,
        /// How long it took, as learned.
        duration_ms: u64,
        /// The digest of the drone's build environment when it reported the build
        /// ([`crate::BuildEnv::digest`]); absent when it reports none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<String>,
    },
    /// A build failed; it will be retried at `retry_at` unless blocked.
    BuildFailed {
        /// Where.
        drone: DroneName,
        /// What.
        package: Atom,
        /// Lease.
        lease: LeaseId,
        /// Whose fault.
        class: FailureClass,
        /// Failed attempts so far.
        attempt: u32,
        /// Not before then.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_at: Option<Timestamp>,
        /// The drone's words.
        detail: String,
    },
    /// A package is blocked.
    Blocked {
        /// What.
        package: Atom,
        /// Why.
        reason: BlockReason,
    },
    /// A package is queued again after being blocked.
    Unblocked {
        /// What.
        package: Atom,
        /// By an operator (false: automatic, after `failure_age`).
        operator: bool,
    },
    /// The circuit breaker tripped.
    Grounded {
        /// Who.
        drone: DroneName,
        /// Until when.
        until: Timestamp,
        /// Consecutive infra/OOM failures that tripped it.
        failures: u32,
    },
    /// A drone may take work again.
    Ungrounded {
        /// Who.
        drone: DroneName,
    },
    /// Upload failures: no work for a while.
    UploadHold {
        /// Who.
        drone: DroneName,
        /// Until when.
        until: Timestamp,
    },
    /// A self-healing step was ordered.
    Escalated {
        /// Who.
        drone: DroneName,
        /// Which step.
        action: EscalationAction,
    },
    /// An input was refused.
    InputRejected {
        /// Why.
        reason: RejectReason,
    },
    /// Too much of the fleet was about to be disrupted: grounding, suspicion
    /// reclaims and escalation stop.
    BrakeEngaged {
        /// Human explanation ("queue looks stale: ...").
        reason: String,
        /// Packages whose assignment is paused.
        held: u32,
    },
    /// The brake is off.
    BrakeReleased {
        /// By an operator (false: the ratio fell).
        operator: bool,
    },
    /// Assignment paused (swarm-wide, or one drone).
    Paused {
        /// `None`: the whole swarm.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drone: Option<DroneName>,
    },
    /// Assignment resumed.
    Resumed {
        /// `None`: the whole swarm.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drone: Option<DroneName>,
    },
    /// Something was done to a binhost release (see [`crate::ReleaseNote`]).
    Release {
        /// What was done.
        action: String,
        /// To which release.
        release: String,
        /// For humans.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// A control action was applied.
    ControlApplied {
        /// What it was, in its snake_case name.
        action: String,
        /// What it changed, for humans.
        summary: String,
    },
}
