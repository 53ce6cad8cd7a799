//! The canonical state: everything `digest` hashes and a snapshot carries.
//!
//! Derived lookups (ready set, timers, atom → id) live in `crate::index` and are
//! rebuilt from this on `restore`.

mod drone;
mod lease;
mod package;
mod reported;
mod revoke_box;
mod transition;

pub(crate) use drone::{Brake, Drone, Liveness};
pub(crate) use lease::Lease;
pub(crate) use package::{Package, PackageState, PkgId};
pub(crate) use reported::{EndedLease, ReportedLeases};
pub(crate) use revoke_box::RevokeBox;
pub use revoke_box::REVOKE_REPEAT_MS;
pub(crate) use transition::IllegalTransition;

use crate::config::Config;
use crate::id::{DroneName, LeaseId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

/// Learned from history, per `category/pn`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Learned {
    /// Moving average of successful build durations.
    pub(crate) duration_ms: Option<u64>,
    /// At least this much RAM (MiB), learned from OOM kills.
    pub(crate) ram_mb: u64,
}

/// The whole serialisable state of a swarm. Opaque outside the crate; its JSON
/// form is the snapshot format.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SwarmState {
    pub(crate) config: Config,
    pub(crate) now: Timestamp,
    pub(crate) next_lease: u64,
    pub(crate) next_order: u64,
    pub(crate) generation: u64,
    pub(crate) paused: bool,
    pub(crate) expected_portage: Option<String>,
    /// The build environment a drone must have to get work (`expect_env`); empty: any.
    #[serde(default, skip_serializing_if = "crate::buildenv::BuildEnv::is_empty")]
    pub(crate) expected_env: crate::buildenv::BuildEnv,
    /// Named profiles and their expected environments (the default profile is `expected_env`).
    #[serde(default, skip_serializing_if = "crate::profile::Profiles::is_empty")]
    pub(crate) profiles: crate::profile::Profiles,
    /// Named profiles' world sets (what `swarm fresh --profile` queues).
    #[serde(default, skip_serializing_if = "crate::profile::Worlds::is_empty")]
    pub(crate) profile_worlds: crate::profile::Worlds,
    /// Set by `Recovered`: nobody is judged offline before this.
    pub(crate) grace_until: Option<Timestamp>,
    /// Shared with published copies of the state: cloning the state copies
    /// pointers, not packages, and a package is copied when first changed
    /// after (`pkg_mut`). That copy shares the package's text and lists, so
    /// it costs one allocation: a slice of a propagation moves a thousand
    /// critical paths, each in a package a publish shared. Serialised and
    /// hashed as the packages themselves.
    pub(crate) packages: Vec<std::sync::Arc<Package>>,
    pub(crate) drones: BTreeMap<DroneName, Drone>,
    pub(crate) leases: BTreeMap<LeaseId, Lease>,
    pub(crate) learned: BTreeMap<String, Learned>,
    pub(crate) brake: Brake,
    /// Fleet-wide escalation instants inside the rate-limit window.
    pub(crate) escalations: VecDeque<Timestamp>,
    /// Keys whose duration was learned since the last plan.
    pub(crate) relearned: std::collections::BTreeSet<String>,
    pub(crate) last_plan: Timestamp,
    /// Packages whose critical path an enqueue has yet to recompute (see
    /// `policy::extend`): ticks drain it a bounded slice at a time.
    #[serde(default, skip_serializing_if = "PendingPlan::is_empty")]
    pub(crate) cp_pending: PendingPlan,
}

/// Packages waiting for their critical path, by (depth, id): the deepest
/// comes first (see `policy::extend`). Empty, it hashes to nothing and is
/// not serialised, so states (and snapshots) without pending work keep the
/// digest and the format they had before it existed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct PendingPlan(pub(crate) std::collections::BTreeSet<(u32, PkgId)>);

impl PendingPlan {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::hash::Hash for PendingPlan {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        if !self.0.is_empty() {
            self.0.hash(h);
        }
    }
}

impl SwarmState {
    pub(crate) fn new(config: Config) -> Self {
        SwarmState {
            config,
            now: Timestamp(0),
            next_lease: 1,
            next_order: 0,
            generation: 0,
            paused: false,
            expected_portage: None,
            expected_env: crate::buildenv::BuildEnv::default(),
            profiles: crate::profile::Profiles::default(),
            profile_worlds: crate::profile::Worlds::default(),
            grace_until: None,
            packages: Vec::new(),
            drones: BTreeMap::new(),
            leases: BTreeMap::new(),
            learned: BTreeMap::new(),
            brake: Brake::default(),
            escalations: VecDeque::new(),
            relearned: std::collections::BTreeSet::new(),
            last_plan: Timestamp(0),
            cp_pending: PendingPlan::default(),
        }
    }

    /// A package newly queued now, stamped with the queue's current order, lease mark and
    /// generation; the plan fields are filled by the next replan.
    pub(crate) fn new_package(&self, spec: &crate::input::PackageSpec) -> Package {
        Package::queued(spec, self.next_order, self.next_lease, self.generation)
    }

    /// The environment a package of `profile` must be built in; `None` when the profile does
    /// not exist (removed while the package waited): then no drone matches.
    pub(crate) fn expected_env_of(
        &self,
        profile: &crate::profile::ProfileTag,
    ) -> Option<&crate::buildenv::BuildEnv> {
        match &profile.0 {
            None => Some(&self.expected_env),
            Some(name) => self.profiles.0.get(name),
        }
    }

    /// Whether some profile (the default one included) admits this environment: a drone no
    /// profile admits gets no work at all and hears why from [`Self::closest_profile_mismatch`].
    pub(crate) fn admitted_by_some_profile(&self, env: &crate::buildenv::BuildEnv) -> bool {
        self.expected_env.admits(env) || self.profiles.0.values().any(|p| p.admits(env))
    }

    /// How a drone no profile admits differs from the profile it comes closest to (fewest
    /// differing values; the default profile on a tie, then the first by name), so the operator
    /// fixes the value that matters: "environment differs in CFLAGS (-O2 vs -O3)" for the
    /// default profile, "closest profile fast: environment differs in ..." for a named one.
    pub(crate) fn closest_profile_mismatch(&self, env: &crate::buildenv::BuildEnv) -> String {
        let named = self.profiles.0.iter().map(|(n, e)| (Some(n.as_str()), e));
        let closest = std::iter::once((None, &self.expected_env))
            .chain(named)
            .map(|(name, expected)| (name, expected.differences(env)))
            // `min_by_key` keeps the first of equals: the default profile, then by name.
            .min_by_key(|(_, diffs)| diffs.len());
        let Some((name, diffs)) = closest else {
            return crate::buildenv::describe_differences(&[]);
        };
        let words = crate::buildenv::describe_differences(&diffs);
        match name {
            None => words,
            Some(name) => format!("closest profile {name}: {words}"),
        }
    }

    pub(crate) fn pkg(&self, id: PkgId) -> &Package {
        &self.packages[id.index()]
    }

    /// Forgets which drones failed a package (its attempts stay counted).
    /// A package with nothing to forget is not written, so a published copy
    /// that shares it keeps sharing it.
    pub(crate) fn forget_failures(&mut self, id: PkgId) {
        let p = self.pkg(id);
        if p.failed_on.is_empty() && p.build_failed_on.is_empty() {
            return;
        }
        let p = self.pkg_mut(id);
        p.failed_on.clear();
        p.build_failed_on.clear();
    }

    pub(crate) fn pkg_mut(&mut self, id: PkgId) -> &mut Package {
        std::sync::Arc::make_mut(&mut self.packages[id.index()])
    }

    /// Estimated build time of a package: learned history, else the enqueue's
    /// hint, else the default.
    pub(crate) fn estimate_ms(&self, p: &Package) -> u64 {
        self.learned_ms(&p.key)
            .or(p.hint_ms)
            .unwrap_or(self.config.default_duration_ms)
    }

    /// Learned build time for a `category/pn`, if any.
    pub(crate) fn learned_ms(&self, key: &str) -> Option<u64> {
        self.learned.get(key).and_then(|l| l.duration_ms)
    }

    /// RAM a package is known to need (0: unknown).
    pub(crate) fn ram_need_mb(&self, key: &str) -> u64 {
        self.learned.get(key).map_or(0, |l| l.ram_mb)
    }

    /// Whether a live lease has not started building yet.
    pub(crate) fn is_not_started(&self, lid: LeaseId) -> bool {
        self.leases
            .get(&lid)
            .is_some_and(|l| l.started_at.is_none())
    }

    /// Not-started leases a drone holds.
    pub(crate) fn not_started(&self, drone: &Drone) -> u32 {
        drone
            .leases
            .iter()
            .filter(|l| self.is_not_started(**l))
            .count() as u32
    }
}
