//! Derived lookups: rebuilt from `SwarmState` on restore, kept current
//! incrementally by `Swarm`, and compared with a rebuild by `check_invariants`.

use crate::atom::Atom;
use crate::id::DroneName;
use crate::state::{PkgId, SwarmState};
use crate::time::Timestamp;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

/// Scheduling order: priority, then remaining critical path, then enqueue order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ReadyKey {
    pub(crate) priority: Reverse<i32>,
    pub(crate) critical_path_ms: Reverse<u64>,
    pub(crate) order: u64,
    pub(crate) pkg: PkgId,
}

/// A deadline stored as data (quinn-style): a late Tick delays it, never skips it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKey {
    /// Suspicion and offline judgement, checked lazily against the last heartbeat.
    Liveness(DroneName),
    ConfirmedDead(DroneName),
    Unground(DroneName),
    Retry(PkgId),
    AutoUnblock(PkgId),
    Brake,
    Replan,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    pub(crate) by_atom: BTreeMap<Atom, PkgId>,
    /// Packages per `category/pn`, to refresh estimates when a duration is learned.
    pub(crate) by_key: BTreeMap<String, Vec<PkgId>>,
    pub(crate) ready: BTreeSet<ReadyKey>,
    /// Membership of `ready`, by package.
    pub(crate) ready_key: BTreeMap<PkgId, ReadyKey>,
    /// Blocked packages a sweeper may try.
    pub(crate) sweepable: BTreeSet<ReadyKey>,
    pub(crate) sweep_key: BTreeMap<PkgId, ReadyKey>,
    pub(crate) timers: BTreeSet<(Timestamp, TimerKey)>,
    pub(crate) timer_at: BTreeMap<TimerKey, Timestamp>,
    /// Every atom some package declares as a dependency: an enqueue that
    /// adds none of them leaves the existing packages' plan as it was, so
    /// the plan is extended instead of recomputed (see `plan::extend`).
    pub(crate) declared: BTreeSet<Atom>,
    /// Each package's depth in the dependency graph (`policy::extend`), by id:
    /// the order in which critical paths are pushed to dependencies.
    pub(crate) depth: Vec<u32>,
}

impl Index {
    /// Sets or clears one deadline.
    pub(crate) fn set_timer(&mut self, key: TimerKey, at: Option<Timestamp>) {
        let old = self.timer_at.get(&key).copied();
        if old == at {
            return;
        }
        if let Some(old) = old {
            self.timers.remove(&(old, key.clone()));
            self.timer_at.remove(&key);
        }
        if let Some(at) = at {
            self.timers.insert((at, key.clone()));
            self.timer_at.insert(key, at);
        }
    }

    /// The earliest deadline.
    pub(crate) fn next_timer(&self) -> Option<Timestamp> {
        self.timers.first().map(|(at, _)| *at)
    }

    /// Removes and returns the earliest deadline if it is due.
    pub(crate) fn pop_due(&mut self, now: Timestamp) -> Option<TimerKey> {
        if self.next_timer()? > now {
            return None;
        }
        let (_, key) = self.timers.pop_first()?;
        self.timer_at.remove(&key);
        Some(key)
    }

    /// Puts a package in or out of an ordered set.
    pub(crate) fn set_member(
        set: &mut BTreeSet<ReadyKey>,
        keys: &mut BTreeMap<PkgId, ReadyKey>,
        pkg: PkgId,
        key: Option<ReadyKey>,
    ) {
        let old = keys.get(&pkg).copied();
        if old == key {
            return;
        }
        if let Some(old) = old {
            set.remove(&old);
            keys.remove(&pkg);
        }
        if let Some(key) = key {
            set.insert(key);
            keys.insert(pkg, key);
        }
    }

    /// Atom lookup table for a state.
    pub(crate) fn atoms_of(st: &SwarmState) -> BTreeMap<Atom, PkgId> {
        st.packages
            .iter()
            .enumerate()
            .map(|(i, p)| (p.atom.clone(), PkgId(i as u32)))
            .collect()
    }

    /// Every declared dependency of a state.
    pub(crate) fn declared_of(st: &SwarmState) -> BTreeSet<Atom> {
        st.packages
            .iter()
            .flat_map(|p| p.deps.iter().cloned())
            .collect()
    }

    /// Packages per key for a state.
    pub(crate) fn keys_of(st: &SwarmState) -> BTreeMap<String, Vec<PkgId>> {
        let mut by_key: BTreeMap<String, Vec<PkgId>> = BTreeMap::new();
        for (i, p) in st.packages.iter().enumerate() {
            by_key
                .entry(p.key.clone())
                .or_default()
                .push(PkgId(i as u32));
        }
        by_key
    }
}
