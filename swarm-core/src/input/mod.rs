//! What the world tells the swarm. Variants use the sender's verb.
//!
//! The JSON form of every type here is the durable log format (frozen by insta
//! snapshots): change it only with a migration.

use crate::atom::Atom;
use crate::id::{DroneName, Epoch, Generation, LeaseId, Seq};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

mod announce;
mod drone;
mod probe;
pub use announce::{Announce, SpecFacts};
pub use drone::{DroneKind, DroneSpec, Heartbeat};
pub use probe::{ProbeFigures, ProbeReach, ProbeStatus};

/// One input, stamped with its log position and the adapter's clock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// Log position.
    pub seq: Seq,
    /// When the adapter received it. The core never lets time go backwards.
    pub at: Timestamp,
    /// The input itself.
    pub input: Input,
}

/// Every input the core accepts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Input {
    /// A drone announces itself (also counts as a heartbeat).
    Register(DroneSpec),
    /// A drone's periodic report of health and the builds it holds.
    Heartbeat(Heartbeat),
    /// A drone registers or heartbeats, saying what it is as it goes (v3 drones do both on one
    /// endpoint): the core merges that into its spec, registering it if new. Adapters send
    /// this; `Register` and `Heartbeat` stay for the logs written before it.
    Announce(Announce),
    /// A drone with free slots asks for work.
    RequestWork {
        /// The drone asking.
        drone: DroneName,
        /// Slots it can fill now. `None`: a v3 drone, which never says; it builds one
        /// package at a time and polls again until it reports it, so while it holds a lease
        /// the answer is that lease again ([`Command::Resend`]), else one new one.
        ///
        /// [`Command::Resend`]: crate::output::Command::Resend
        #[serde(default)]
        free_slots: Option<u32>,
    },
    /// A drone started building a leased package.
    BuildStarted(Report),
    /// A drone finished (or gave up on) a leased package.
    BuildFinished {
        /// Which lease, from whom.
        #[serde(flatten)]
        report: Report,
        /// What happened.
        outcome: Outcome,
        /// Wall time of the build, as the drone measured it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        duration_ms: Option<u64>,
    },
    /// A drone is stopping cleanly (its agent got SIGTERM and finished or
    /// returned its builds): it is Stopped, not failing. It holds nothing,
    /// gets no work, is never probed into escalation, and registers again
    /// when it starts.
    Deregister {
        /// The drone leaving.
        drone: DroneName,
    },
    /// What the self-healing prober saw of one drone: the figures, which the core
    /// judges against the thresholds in [`Config`](crate::Config) (the prober sends these).
    ProbeFigures(ProbeFigures),
    /// A verdict on one drone, judged outside the core: what probers before
    /// `ProbeFigures` sent, kept so their logs replay; tests and the simulator may
    /// still send it.
    ProbeResult {
        /// The drone probed.
        drone: DroneName,
        /// What the probe saw.
        status: ProbeStatus,
    },
    /// Packages to build.
    Enqueue(Enqueue),
    /// An operator action.
    Control(Control),
    /// The binhost adapter did something to a release (created, published,
    /// rolled back, kept, tagged, purged, a gate override). The core decides
    /// nothing from it; it records it as an event, in the log, for the feed.
    Release(ReleaseNote),
    /// Appended by the store when a control plane starts: every drone gets a grace period.
    Recovered,
    /// Time passed; fire due deadlines.
    Tick,
}

/// What happened to a binhost release, as the adapter that did it says.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseNote {
    /// The action: `created`, `published`, `rolled_back`, `kept`, `unkept`,
    /// `tagged`, `untagged`, `purged`, `gate_overridden`; or `<verb>_failed`
    /// (`create_failed`, `publish_failed`, ...) when the server could not
    /// carry one out, with the reason as its detail.
    pub action: String,
    /// The release it concerns.
    pub release: String,
    /// For humans: counts, the tag, the operator's reason for an override.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// Who reports on which lease. Legacy drones send no lease; they are matched by (drone, package).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    /// The reporting drone.
    pub drone: DroneName,
    /// The package.
    pub package: Atom,
    /// The lease, when the drone knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseId>,
    /// The drone's epoch, when it knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
}

/// Why a build failed; decides whose fault it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureClass {
    /// The package's fault: counts toward blocking the package, not against the drone.
    Build,
    /// The drone's environment (sandbox, disk, network, lost upload): counts against the drone.
    Infra,
    /// Out of memory: counts against the drone and teaches the package's memory need.
    Oom,
}

/// How a lease ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Outcome {
    /// Built and delivered.
    Success,
    /// Failed.
    Failed {
        /// Whose fault.
        class: FailureClass,
        /// The drone's words, for humans.
        #[serde(default)]
        detail: String,
    },
    /// Handed back without blame (shutdown, Critical health).
    Returned {
        /// Why.
        #[serde(default)]
        reason: String,
    },
    /// Built but the binary did not reach the binhost. Costs what an undelivered build costs;
    /// the detail is kept so history and `last_error` say why (the server's refusal, as the
    /// drone heard it).
    UploadFailed {
        /// The drone's words, for humans; absent in logs written before it was kept.
        #[serde(default, skip_serializing_if = "String::is_empty")]
        detail: String,
    },
    /// The drone reported it built, but the adapter found no binary of it uploaded under this
    /// lease, or one that is not a valid binary package of it. A fact, not a verdict: what it
    /// costs the package and the drone is the core's rule (`Swarm::on_undelivered`).
    Undelivered {
        /// What the adapter found, for humans (the file it looked for and why it does not count).
        #[serde(default)]
        detail: String,
    },
    /// Portage masks it: block for good.
    Masked,
}

/// Packages to queue.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Enqueue {
    /// The packages.
    pub packages: Vec<PackageSpec>,
    /// The queue generation this push belongs to; older than the current one is rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<Generation>,
    /// Portage snapshot the queue was computed on; drones on an older one must sync first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portage_snapshot: Option<String>,
}

/// One package to build.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageSpec {
    /// The atom.
    pub atom: Atom,
    /// Atoms it depends on; only those in the queue are waited for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deps: Vec<Atom>,
    /// Higher goes first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub priority: i32,
    /// Expected build time from elsewhere (Portage's merge history, a previous
    /// farm), used until swarm has learned its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimate_s: Option<u64>,
    /// The profile it is built for (`None`: the default profile, `expect_env`'s); only drones
    /// whose environment that profile admits build it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
}

fn is_zero(p: &i32) -> bool {
    *p == 0
}

impl PackageSpec {
    /// A package with no dependencies and normal priority.
    pub fn new(atom: Atom) -> Self {
        PackageSpec {
            atom,
            deps: Vec::new(),
            priority: 0,
            estimate_s: None,
            profile: None,
        }
    }
}

/// Operator actions (DESIGN §3 "Control actions", plus v3's names).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Control {
    /// Stop assigning work anywhere.
    Pause,
    /// Undo `pause`.
    Resume,
    /// Stop assigning work to one drone.
    PauseDrone {
        /// The drone.
        drone: DroneName,
    },
    /// Undo `pause_drone`.
    ResumeDrone {
        /// The drone.
        drone: DroneName,
    },
    /// Let a drone finish what it has and take nothing new.
    Drain {
        /// The drone.
        drone: DroneName,
    },
    /// Undo `drain`.
    Undrain {
        /// The drone.
        drone: DroneName,
    },
    /// Requeue one blocked package, or every blocked package.
    Unblock {
        /// `None`: all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        package: Option<Atom>,
        /// The profile it is queued in (`default` for the default profile); needed only when
        /// the atom is queued in several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Block a package by hand (revoking it if assigned).
    Block {
        /// The package.
        package: Atom,
        /// The profile it is queued in (`default` for the default profile); needed only when
        /// the atom is queued in several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Lift grounding from one drone or all.
    Unground {
        /// `None`: all.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drone: Option<DroneName>,
    },
    /// Forget every drone's failures, groundings and escalations, and release the brake.
    Reset,
    /// Reclaim every not-started lease so the next requests spread the work again.
    Rebalance,
    /// Forget which drones failed which packages, and drones' failure streaks.
    ClearFailures,
    /// Retry now: lift backoff holds and unblock everything not masked.
    RetryFailures,
    /// Retry one failed package now: a package waiting out its retry backoff
    /// is eligible at once, a blocked one is unblocked; either way its
    /// failures (attempts, the drones it failed on) are forgotten, so it gets
    /// a real new chance on any drone. Refused for a package that is built,
    /// being built, masked (it did not fail; `Unblock` it), or queued with no
    /// failure to forget.
    Retry {
        /// The package.
        package: Atom,
        /// The profile it is queued in (`default` for the default profile); needed only when
        /// the atom is queued in several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
    },
    /// Start a new queue generation: drop everything not running, revoke not-started leases.
    Fresh,
    /// Put a drone's escalation ladder back at the bottom.
    ResetEscalation {
        /// The drone.
        drone: DroneName,
    },
    /// Release the disruption brake.
    ReleaseBrake,
    /// Reclaim a package, or all of a drone's work (v3 `reclaim`).
    Reclaim {
        /// Reclaim this package's lease.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        package: Option<Atom>,
        /// The profile it is queued in (`default` for the default profile); needed only when
        /// the atom is queued in several.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile: Option<String>,
        /// Reclaim all of this drone's leases.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        drone: Option<DroneName>,
    },
    /// Forget learned build durations and memory needs.
    ClearHistory,
    /// Retire a drone: its leases go back to the queue and it leaves the
    /// fleet. Its build history stays; registering again brings it back.
    RemoveDrone {
        /// The drone.
        drone: DroneName,
    },
    /// Set the build environment every drone must have to get work: written down (`env`), or
    /// the one a reference drone reports now (`from`); neither clears it. Only the variables
    /// named count.
    ExpectEnv {
        /// The expected environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<crate::buildenv::BuildEnv>,
        /// Take it from this drone's report.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<DroneName>,
    },
    /// Creates or changes a named profile: the environment its packages must be built in,
    /// written down (`env`) or a reference drone's (`from`). Not-started work of that profile on
    /// drones it no longer admits is returned.
    SetProfile {
        /// The profile ([`crate::profile::name_problem`] says which names are good).
        name: String,
        /// The expected environment.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        env: Option<crate::buildenv::BuildEnv>,
        /// Take it from this drone's report.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        from: Option<DroneName>,
        /// The profile's world set (atoms and `@sets`, what `swarm fresh --profile` queues);
        /// `None` keeps the one it has.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        world: Option<Vec<String>>,
    },
    /// Removes a named profile; refused while packages of it are in the queue.
    RemoveProfile {
        /// The profile.
        name: String,
        /// Drop its packages not built yet first (`FreshProfile`'s work) and remove it, all or
        /// nothing: refused while a build of it runs. Two inputs could leave the queue dropped
        /// and the profile kept, when a build started between them (h31 F4).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        force: bool,
    },
    /// A new list for one named profile: its packages that are not being built leave the
    /// queue and their not-started leases are revoked; other profiles' packages and the queue
    /// generation stay as they are.
    FreshProfile {
        /// The profile.
        profile: String,
    },
}

impl Control {
    /// The action's name as operators and the v3 API spell it.
    pub fn name(&self) -> &'static str {
        match self {
            Control::Pause => "pause",
            Control::Resume => "resume",
            Control::PauseDrone { .. } => "pause_drone",
            Control::ResumeDrone { .. } => "resume_drone",
            Control::Drain { .. } => "drain",
            Control::Undrain { .. } => "undrain",
            Control::Unblock { .. } => "unblock",
            Control::Block { .. } => "block",
            Control::Unground { .. } => "unground",
            Control::Reset => "reset",
            Control::Rebalance => "rebalance",
            Control::ClearFailures => "clear_failures",
            Control::RetryFailures => "retry_failures",
            Control::Retry { .. } => "retry",
            Control::Fresh => "fresh",
            Control::ResetEscalation { .. } => "reset_escalation",
            Control::ReleaseBrake => "release_brake",
            Control::Reclaim { .. } => "reclaim",
            Control::ClearHistory => "clear_history",
            Control::RemoveDrone { .. } => "remove_drone",
            Control::ExpectEnv { .. } => "expect_env",
            Control::SetProfile { .. } => "set_profile",
            Control::RemoveProfile { .. } => "remove_profile",
            Control::FreshProfile { .. } => "fresh_profile",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    /// Logs written before the detail was kept read as they did, and an empty detail writes
    /// them back byte for byte, so replays and digests of old logs do not change.
    #[test]
    fn an_upload_failed_without_detail_reads_and_writes_as_before() {
        let old = r#"{"status":"upload_failed"}"#;
        let read: Outcome = serde_json::from_str(old).expect("old form");
        assert_eq!(
            read,
            Outcome::UploadFailed {
                detail: String::new()
            }
        );
        assert_eq!(serde_json::to_string(&read).expect("write"), old);
    }
}
