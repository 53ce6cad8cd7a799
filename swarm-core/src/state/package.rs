//! Packages and their lifecycle.
//!
//! ```text
//!             enqueue
//!                │
//!                ▼        assign           success
//!   ┌──────► Queued ─────────────► Assigned ────────► Built
//!   │        ▲  │ retry_at          │  │ failure (attempts < max,
//!   │        │  └── backoff ◄───────┘  │   fewer than N drones)
//!   │        │        reclaim/return   │
//!   │ unblock│                         │ failure: N drones, max attempts,
//!   │        │                         ▼ masked, operator block
//!   └────────┴──────────────────── Blocked
//! ```
//! Every other transition is a bug; `check_invariants` looks for the traces.

use crate::atom::Atom;
use crate::id::{DroneName, LeaseId};
use crate::output::BlockReason;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Index of a package in `SwarmState::packages`. Dense, so hot paths avoid string lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct PkgId(pub(crate) u32);

impl PkgId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

/// A count that hashes and serialises as nothing while it is zero, so a state from before
/// the count existed keeps its digest and its snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct QuietCount(pub(crate) u32);

impl QuietCount {
    pub(crate) fn is_zero(&self) -> bool {
        self.0 == 0
    }
}

impl std::hash::Hash for QuietCount {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if self.0 != 0 {
            self.0.hash(h);
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) enum PackageState {
    Queued {
        /// Held back by retry backoff until then.
        retry_at: Option<Timestamp>,
    },
    Assigned {
        lease: LeaseId,
    },
    Built {
        at: Timestamp,
    },
    Blocked {
        reason: BlockReason,
        since: Timestamp,
        /// When it is retried automatically (`None`: never, or the cap is used up).
        auto_unblock_at: Option<Timestamp>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Package {
    pub(crate) atom: Atom,
    /// `atom.key()`, cached: learned durations and memory needs live under it.
    pub(crate) key: String,
    /// Duration hint from the enqueue, until one is learned.
    pub(crate) hint_ms: Option<u64>,
    /// Enqueue order: the last tie-breaker.
    pub(crate) order: u64,
    /// `next_lease` when it was (re)queued: leases issued before then predate it.
    pub(crate) lease_mark: u64,
    pub(crate) generation: u64,
    pub(crate) priority: i32,
    pub(crate) deps: Vec<Atom>,
    /// Private: it changes only through `Swarm::transition` (swarm/upkeep.rs), which keeps
    /// the index (ready and sweep sets, retry and auto-unblock timers) in step with it.
    state: PackageState,
    pub(crate) attempts: u32,
    pub(crate) auto_unblocks: u32,
    /// Bad-host memory: drone → when it last failed this package.
    pub(crate) failed_on: BTreeMap<DroneName, Timestamp>,
    /// Drones that failed it with class `build`.
    pub(crate) build_failed_on: BTreeSet<DroneName>,
    /// Returned by this drone: prefer others.
    pub(crate) avoid: Option<DroneName>,
    pub(crate) last_error: Option<String>,
    /// Builds of it whose binary never arrived. Not attempts (it built, and the package is not
    /// at fault): it only bounds how often it is rebuilt for nothing (`max_attempts`).
    #[serde(default, skip_serializing_if = "QuietCount::is_zero")]
    pub(crate) undelivered: QuietCount,
    /// The profile it is built for; only drones that profile admits get it.
    #[serde(
        default,
        skip_serializing_if = "crate::profile::ProfileTag::is_default"
    )]
    pub(crate) profile: crate::profile::ProfileTag,
    // ---- the plan: recomputed on enqueue and periodically, never per request ----
    /// Dependencies that count (in the queue, cycle edges removed).
    pub(crate) eff_deps: Vec<PkgId>,
    /// Packages whose `eff_deps` contain this one.
    pub(crate) dependents: Vec<PkgId>,
    /// `eff_deps` not yet Built.
    pub(crate) unbuilt: u32,
    /// The estimate the plan used: learned, else hinted, else the default.
    pub(crate) est_ms: u64,
    /// Remaining critical path through this package, in ms.
    pub(crate) cp_ms: u64,
}

impl Package {
    /// A package newly queued with the queue's current marks (see `SwarmState::new_package`).
    pub(crate) fn queued(
        spec: &crate::input::PackageSpec,
        order: u64,
        lease_mark: u64,
        generation: u64,
    ) -> Package {
        Package {
            atom: spec.atom.clone(),
            key: spec.atom.key().to_owned(),
            hint_ms: spec
                .estimate_s
                .map(|s| s.saturating_mul(1000).min(crate::time::MAX_DURATION_MS)),
            order,
            lease_mark,
            generation,
            priority: spec.priority,
            deps: spec.deps.clone(),
            state: PackageState::Queued { retry_at: None },
            attempts: 0,
            auto_unblocks: 0,
            failed_on: BTreeMap::new(),
            build_failed_on: BTreeSet::new(),
            avoid: None,
            last_error: None,
            undelivered: QuietCount(0),
            profile: crate::profile::ProfileTag(spec.profile.clone()),
            eff_deps: Vec::new(),
            dependents: Vec::new(),
            unbuilt: 0,
            est_ms: 0,
            cp_ms: 0,
        }
    }

    /// Where the package stands.
    pub(crate) fn state(&self) -> &PackageState {
        &self.state
    }

    /// Moves the package to `to` without touching the index: only `Swarm::transition`
    /// calls it (and test fixtures building a bare state), so no caller can forget the index.
    pub(crate) fn enter(&mut self, to: PackageState) {
        self.state = to;
    }

    pub(crate) fn is_queued(&self) -> bool {
        matches!(self.state, PackageState::Queued { .. })
    }

    pub(crate) fn is_built(&self) -> bool {
        matches!(self.state, PackageState::Built { .. })
    }

    pub(crate) fn lease(&self) -> Option<LeaseId> {
        match self.state {
            PackageState::Assigned { lease } => Some(lease),
            _ => None,
        }
    }

    pub(crate) fn retry_at(&self) -> Option<Timestamp> {
        match self.state {
            PackageState::Queued { retry_at } => retry_at,
            _ => None,
        }
    }

    /// Whether `drone` failed it within the memory window.
    pub(crate) fn failed_recently_on(
        &self,
        drone: &DroneName,
        now: Timestamp,
        memory_ms: u64,
    ) -> bool {
        self.failed_on
            .get(drone)
            .is_some_and(|at| now.since(*at) < memory_ms)
    }

    /// Forget failures, as an unblock does, so the package gets a real new chance.
    pub(crate) fn forget_failures(&mut self) {
        self.attempts = 0;
        self.undelivered = QuietCount(0);
        self.failed_on.clear();
        self.build_failed_on.clear();
    }
}
