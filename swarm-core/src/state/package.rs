//! Packages and their lifecycle.
//!
//! ```text
//!   enqueue ┌─┐ backoff over, or retried now
//!         ▼ │ ▼     assign                    success
//!    ┌─► Queued ─────────────────► Assigned ──────────► Built
//!    │   │   ▲                      │ │ ▲
//!    │   │   └──────────────────────┘ │ │
//!    │   │     failure with retries   │ │
//!    │   │     left (backoff),        │ │ a sweeper
//!    │   │     reclaim, return        │ │ retries it
//!    │   │                   failure  ▼ │
//!    │   └──── operator block ───► Blocked ───┐
//!    │                              │  ▲      │ operator block of a
//!    │                              │  └──────┘ package whose sweep
//!    └────────── unblock ───────────┘           lease ended
//! ```
//! "failure" into Blocked: N drones, max attempts, masked, undeliverable, or a sweep lease that
//! fails or is reclaimed. These edges are [`Stage::legal`]; `Package::enter` refuses any other
//! move with an [`IllegalTransition`] (a bug in the core; `check_invariants` reports it).
//! Packages are born Queued (enqueue) and leave only when `fresh` or a profile's removal
//! drops them.

use super::IllegalTransition;
use crate::atom::Atom;
use crate::id::{DroneName, LeaseId};
use crate::output::BlockReason;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

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

/// Drones whose builds of a package never delivered, and when (one entry per drone). Hashes
/// and serialises as nothing while empty, so a state from before it existed keeps its digest
/// and its snapshots.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct Undelivering(pub(crate) BTreeMap<DroneName, Timestamp>);

impl Undelivering {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::hash::Hash for Undelivering {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if !self.0.is_empty() {
            self.0.hash(h);
        }
    }
}

/// A package's state without its data: the boxes of the diagram above.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    Queued,
    Assigned,
    Built,
    Blocked,
}

impl Stage {
    /// Whether the diagram draws an edge from `from` to `to`: the one list of legal moves.
    pub(crate) fn legal(from: Stage, to: Stage) -> bool {
        use Stage::*;
        matches!(
            (from, to),
            (Queued, Queued) // backoff over, or retried now
                | (Queued, Assigned) // assign
                | (Queued, Blocked) // operator block
                | (Assigned, Queued) // failure with retries left, reclaim, return
                | (Assigned, Built) // success
                | (Assigned, Blocked) // failure: N drones, max attempts, masked, ...
                | (Blocked, Queued) // unblock
                | (Blocked, Assigned) // a sweeper retries it
                | (Blocked, Blocked) // operator block of a package whose sweep lease ended
        )
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
    pub(crate) key: Arc<str>,
    /// Duration hint from the enqueue, until one is learned.
    pub(crate) hint_ms: Option<u64>,
    /// Enqueue order: the last tie-breaker.
    pub(crate) order: u64,
    /// `next_lease` when it was (re)queued: leases issued before then predate it.
    pub(crate) lease_mark: u64,
    pub(crate) generation: u64,
    pub(crate) priority: i32,
    /// Shared with published copies, as `eff_deps` and `dependents`: a
    /// change to a package's plan (its critical path, on every slice of a
    /// propagation) then copies a few pointers, not its lists.
    pub(crate) deps: Arc<[Atom]>,
    /// Private: it changes only through `Swarm::transition` (swarm/upkeep.rs), along an edge
    /// of the diagram (`Package::enter`), which keeps the index (ready and sweep sets, retry
    /// and auto-unblock timers) in step with it.
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
    /// Which drones those builds were on. Whose fault an undelivered build was shows only
    /// later: another drone delivering the package puts it on the drones that did not (their
    /// upload hold); a package no drone delivers is the package's (`max_attempts`).
    #[serde(default, skip_serializing_if = "Undelivering::is_empty")]
    pub(crate) undelivered_by: Undelivering,
    /// The profile it is built for; only drones that profile admits get it.
    #[serde(
        default,
        skip_serializing_if = "crate::profile::ProfileTag::is_default"
    )]
    pub(crate) profile: crate::profile::ProfileTag,
    // ---- the plan: recomputed on enqueue and periodically, never per request ----
    /// Dependencies that count (in the queue, cycle edges removed).
    pub(crate) eff_deps: Arc<[PkgId]>,
    /// Packages whose `eff_deps` contain this one. A `Vec` inside, unlike the
    /// other lists: each enqueue pushes to it, and a popular library's list
    /// is thousands long.
    pub(crate) dependents: Arc<Vec<PkgId>>,
    /// `eff_deps` not yet Built.
    pub(crate) unbuilt: u32,
    /// The estimate the plan used: learned, else hinted, else the default.
    pub(crate) est_ms: u64,
    /// Remaining critical path through this package, in ms.
    pub(crate) cp_ms: u64,
}

impl PackageState {
    /// Which box of the diagram it is in.
    pub(crate) fn stage(&self) -> Stage {
        match self {
            PackageState::Queued { .. } => Stage::Queued,
            PackageState::Assigned { .. } => Stage::Assigned,
            PackageState::Built { .. } => Stage::Built,
            PackageState::Blocked { .. } => Stage::Blocked,
        }
    }
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
            key: spec.atom.key().into(),
            hint_ms: spec
                .estimate_s
                .map(|s| s.saturating_mul(1000).min(crate::time::MAX_DURATION_MS)),
            order,
            lease_mark,
            generation,
            priority: spec.priority,
            deps: spec.deps.as_slice().into(),
            state: PackageState::Queued { retry_at: None },
            attempts: 0,
            auto_unblocks: 0,
            failed_on: BTreeMap::new(),
            build_failed_on: BTreeSet::new(),
            avoid: None,
            last_error: None,
            undelivered: QuietCount(0),
            undelivered_by: Undelivering::default(),
            profile: crate::profile::ProfileTag(spec.profile.clone()),
            eff_deps: Arc::default(),
            dependents: Arc::default(),
            unbuilt: 0,
            est_ms: 0,
            cp_ms: 0,
        }
    }

    /// Where the package stands.
    pub(crate) fn state(&self) -> &PackageState {
        &self.state
    }

    /// Moves the package to `to` if the diagram allows it, without touching the index: only
    /// `Swarm::transition` calls it (and test fixtures building a bare state), so no caller
    /// can forget the index. Refused, the package stays where it was.
    pub(crate) fn enter(&mut self, to: PackageState) -> Result<(), IllegalTransition<Stage>> {
        let (from, next) = (self.state.stage(), to.stage());
        if !Stage::legal(from, next) {
            return Err(IllegalTransition { from, to: next });
        }
        self.state = to;
        Ok(())
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
        // `undelivered_by` stays: a delivery after an unblock still says whose builds failed
        // (h24: cleared here, a broken drone's strikes were lost at every unblock).
        self.failed_on.clear();
        self.build_failed_on.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::PackageSpec;
    use crate::state::transition::check;
    use Stage::*;

    const STAGES: [Stage; 4] = [Queued, Assigned, Built, Blocked];

    fn package_in(state: PackageState) -> Package {
        let atom = Atom::parse("dev-libs/a-1").unwrap_or_else(|e| unreachable!("{e}"));
        let mut p = Package::queued(&PackageSpec::new(atom), 0, 1, 0);
        p.state = state;
        p
    }

    fn state_of(stage: Stage) -> PackageState {
        match stage {
            Queued => PackageState::Queued { retry_at: None },
            Assigned => PackageState::Assigned { lease: LeaseId(1) },
            Built => PackageState::Built { at: Timestamp(1) },
            Blocked => PackageState::Blocked {
                reason: BlockReason::Operator,
                since: Timestamp(1),
                auto_unblock_at: None,
            },
        }
    }

    #[test]
    fn the_table_draws_exactly_the_edges_of_the_diagram() {
        assert_eq!(
            check::edges(&STAGES, Stage::legal),
            [
                (Queued, Queued),
                (Queued, Assigned),
                (Queued, Blocked),
                (Assigned, Queued),
                (Assigned, Built),
                (Assigned, Blocked),
                (Blocked, Queued),
                (Blocked, Assigned),
                (Blocked, Blocked),
            ]
        );
    }

    #[test]
    fn a_built_package_never_moves_again() {
        for to in STAGES {
            assert!(!Stage::legal(Built, to), "Built -> {to:?}");
        }
    }

    #[test]
    fn only_a_success_under_a_lease_builds_and_a_live_lease_is_never_replaced() {
        assert!(!Stage::legal(Queued, Built), "built without a lease");
        assert!(!Stage::legal(Blocked, Built), "built without a lease");
        assert!(
            !Stage::legal(Assigned, Assigned),
            "a second lease would orphan the first"
        );
    }

    #[test]
    fn an_illegal_move_is_refused_and_the_package_stays_where_it_was() {
        check::assert_enter_follows(&STAGES, Stage::legal, |from, to| {
            let mut p = package_in(state_of(from));
            (p.enter(state_of(to)), p.state().stage())
        });
    }

    #[test]
    fn an_illegal_move_says_which_in_its_message() {
        let mut p = package_in(state_of(Built));
        let e = p.enter(state_of(Assigned)).expect_err("built is final");
        assert_eq!(e.to_string(), "illegal transition from Built to Assigned");
    }
}
