//! The shapes a view hands out: plain, serialisable values, so callers never hold the core's state.

use crate::atom::Atom;
use crate::buildenv::{BuildEnv, EnvDiff};
use crate::health::DroneHealth;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::input::DroneKind;
use crate::output::BlockReason;
use crate::time::Timestamp;
use serde::Serialize;
use std::collections::BTreeMap;

/// How many packages are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// All packages in the queue.
    pub total: u32,
    /// Queued (ready, waiting for dependencies, or backing off).
    pub queued: u32,
    /// Queued and ready to assign now.
    pub ready: u32,
    /// Queued, held back by retry backoff.
    pub backoff: u32,
    /// Holding a lease (started or not).
    pub assigned: u32,
    /// Holding a lease, and the build started.
    pub building: u32,
    /// Built.
    pub built: u32,
    /// Blocked.
    pub blocked: u32,
}

/// Drone liveness as the outside sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DroneStatus {
    /// Heartbeat fresh.
    Online,
    /// Heartbeat late: no new work.
    Suspect,
    /// Heartbeat older than the offline timeout: holds nothing.
    Offline,
    /// Stopped cleanly: the agent said goodbye. Holds nothing, expects no work.
    Stopped,
}

/// One drone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DroneView {
    /// Name.
    pub name: DroneName,
    /// v3 machine id.
    pub machine_id: Option<String>,
    /// Epoch.
    pub epoch: Epoch,
    /// Liveness.
    pub status: DroneStatus,
    /// Self-assessed health.
    pub health: DroneHealth,
    /// Machine kind.
    pub kind: DroneKind,
    /// Cores.
    pub cores: u32,
    /// RAM, MiB.
    pub ram_mb: u64,
    /// Build slots.
    pub slots: u32,
    /// Last heartbeat.
    pub last_heartbeat: Timestamp,
    /// Paused by an operator.
    pub paused: bool,
    /// Drained by an operator.
    pub drained: bool,
    /// Grounded until then.
    pub grounded_until: Option<Timestamp>,
    /// Consecutive infra/OOM failures.
    pub consecutive_failures: u32,
    /// Escalation steps taken since it was last healthy.
    pub escalation_steps: u8,
    /// Leases held.
    pub leases: Vec<LeaseView>,
    /// Successful builds.
    pub builds_ok: u64,
    /// Failed builds.
    pub builds_failed: u64,
    /// Memory use, percent.
    pub mem_percent: Option<u8>,
    /// Disk use, percent.
    pub disk_percent: Option<u8>,
    /// Load × 100.
    pub load_centi: Option<u32>,
    /// Portage snapshot.
    pub portage_snapshot: Option<String>,
    /// Agent version.
    pub version: Option<String>,
    /// Why it gets no work right now, if it gets none.
    pub no_work: Option<String>,
    /// Set aside by the brake for its cause: it gets one trial build a window (`no_work`
    /// says when the next is; none while it is due).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub set_aside: bool,
    /// Its build environment as it reported it (empty: none reported).
    #[serde(skip_serializing_if = "BuildEnv::is_empty")]
    pub env: BuildEnv,
    /// How its environment differs from the closest profile's when no profile admits it (empty
    /// when one does): what keeps it from getting work.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env_differences: Vec<EnvDiff>,
    /// The profiles whose packages it may build: the default one (`expect_env`'s) first, then
    /// the named ones by name. Empty: it gets no work of any (see `env_differences`).
    pub serves: Vec<String>,
    /// When it serves no profile: the one it comes closest to (fewest differing variables),
    /// which `env_differences` is measured against.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest_profile: Option<String>,
}

/// One profile (see [`crate::profile`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProfileView {
    /// Its name; `default` is `expect_env`'s.
    pub name: String,
    /// The environment its packages must be built in (empty: any).
    pub env: BuildEnv,
    /// Drones whose environment it admits.
    pub matching: Vec<DroneName>,
    /// Its packages in the queue not built yet.
    pub unbuilt: u32,
    /// Its packages in the queue, built or not.
    pub packages: u32,
    /// The drones it does not admit and what differs ("environment differs in CFLAGS (-O3 vs
    /// -O2)"), by drone.
    pub differing: BTreeMap<DroneName, String>,
    /// Its world set (named profiles; empty: none written down).
    pub world: Vec<String>,
    /// Its packages by state: waiting, leased to a drone (started or not), built, blocked.
    pub states: ProfileStates,
}

/// How many of one profile's packages are in each state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ProfileStates {
    /// Waiting to be assigned.
    pub queued: u32,
    /// Leased to a drone (building, or about to).
    pub building: u32,
    /// Built.
    pub built: u32,
    /// Blocked.
    pub blocked: u32,
}

/// One lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LeaseView {
    /// Lease id.
    pub lease: LeaseId,
    /// Package.
    pub package: Atom,
    /// Holder.
    pub drone: DroneName,
    /// Issued at.
    pub issued_at: Timestamp,
    /// Started at.
    pub started_at: Option<Timestamp>,
    /// The package's profile (`None`: the default profile): whose binhost its binary is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// A package's state as the outside sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PackageStatus {
    /// Waiting to be assigned.
    Queued {
        /// Backing off until then.
        retry_at: Option<Timestamp>,
    },
    /// Leased.
    Assigned {
        /// Lease.
        lease: LeaseId,
        /// Holder.
        drone: DroneName,
        /// Whether it started.
        started: bool,
    },
    /// Built.
    Built {
        /// When.
        at: Timestamp,
    },
    /// Blocked.
    Blocked {
        /// Why.
        reason: BlockReason,
        /// Retried automatically then.
        auto_unblock_at: Option<Timestamp>,
    },
}

/// One package.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PackageView {
    /// Atom.
    pub atom: Atom,
    /// State.
    pub status: PackageStatus,
    /// Priority.
    pub priority: i32,
    /// Failed attempts.
    pub attempts: u32,
    /// Remaining critical path, ms.
    pub critical_path_ms: u64,
    /// Estimated duration, ms.
    pub estimate_ms: u64,
    /// Queue generation.
    pub generation: u64,
    /// Dependencies in the queue that are not built yet.
    pub waiting_for: u32,
    /// Last failure detail.
    pub last_error: Option<String>,
    /// Its profile; `None` is the default profile.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

/// The disruption brake's state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrakeView {
    /// Engaged?
    pub engaged: bool,
    /// Why.
    pub reason: String,
    /// Packages held.
    pub held: Vec<Atom>,
    /// Drones set aside for the cause it is engaged for: each gets a trial build a window,
    /// and a success returns it to work.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub set_aside: Vec<DroneName>,
    /// How often each drone set aside gets a trial build (the brake window), while any is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trial_every_ms: Option<u64>,
}
