//! Derived lookups: rebuilt from `SwarmState` on restore, kept current
//! incrementally by `Swarm`, and compared with a rebuild by `check_invariants`.

use crate::atom::Atom;
use crate::id::DroneName;
use crate::state::{PkgId, SwarmState};
use crate::time::Timestamp;
use imbl::{OrdMap, OrdSet};
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

/// The packages of one atom: one per profile it is queued for (nearly always just one, kept
/// inline so a queue of one profile costs no allocation per package).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum AtomIds {
    One(PkgId),
    Many(Vec<PkgId>),
}

impl AtomIds {
    pub(crate) fn iter(&self) -> impl Iterator<Item = PkgId> + '_ {
        let (one, many) = match self {
            AtomIds::One(id) => (Some(*id), &[][..]),
            AtomIds::Many(ids) => (None, &ids[..]),
        };
        one.into_iter().chain(many.iter().copied())
    }

    fn push(&mut self, id: PkgId) {
        match self {
            AtomIds::One(first) => *self = AtomIds::Many(vec![*first, id]),
            AtomIds::Many(ids) => ids.push(id),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            AtomIds::One(_) => 1,
            AtomIds::Many(ids) => ids.len(),
        }
    }
}

/// Atom → its packages, one per profile: a package is (profile, atom).
pub(crate) type ByAtom = OrdMap<Atom, AtomIds>;

/// `category/pn` → its packages.
pub(crate) type ByKey = OrdMap<std::sync::Arc<str>, Vec<PkgId>>;

/// Adds a package to an atom table.
pub(crate) fn add_atom(by_atom: &mut ByAtom, atom: &Atom, id: PkgId) {
    match by_atom.get_mut(atom) {
        Some(ids) => ids.push(id),
        None => {
            by_atom.insert(atom.clone(), AtomIds::One(id));
        }
    }
}

/// The package of `atom` queued for `profile` (`None`: the default profile).
pub(crate) fn find_in(
    by_atom: &ByAtom,
    st: &SwarmState,
    profile: Option<&str>,
    atom: &Atom,
) -> Option<PkgId> {
    by_atom
        .get(atom)?
        .iter()
        .find(|id| st.pkg(*id).profile.0.as_deref() == profile)
}

/// The tables keyed by atom and by `category/pn` are persistent maps
/// (`imbl`): a copy of the core for readers (`Shared::fresh`, paced by its
/// cost) shares them instead of copying their strings. With `std` maps, a
/// copy of a queue growing to 200,000 packages took 35–180 ms of the
/// writer, and every drone's heartbeat waited that long. The ready, sweep
/// and timer tables hold small `Copy` keys; they stay `std` and are copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Index {
    /// Packages by atom; each package is (profile, atom), so an atom has one per profile.
    pub(crate) by_atom: ByAtom,
    /// Packages per `category/pn`, to refresh estimates when a duration is learned.
    pub(crate) by_key: ByKey,
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
    pub(crate) declared: OrdSet<Atom>,
    /// Each package's depth in the dependency graph (`policy::extend`), by id:
    /// the order in which critical paths are pushed to dependencies.
    pub(crate) depth: Vec<u32>,
    /// Failure texts already diagnosed, for the brake's common-cause scan.
    pub(crate) causes: crate::failure::Diagnoses,
}

impl Index {
    /// Sets or clears one deadline.
    pub(crate) fn set_timer(&mut self, key: TimerKey, at: Option<Timestamp>) {
        let old = match at {
            Some(at) => {
                let old = self.timer_at.insert(key.clone(), at);
                if old == Some(at) {
                    return;
                }
                self.timers.insert((at, key.clone()));
                old
            }
            None => self.timer_at.remove(&key),
        };
        if let Some(old) = old {
            self.timers.remove(&(old, key));
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
    pub(crate) fn atoms_of(st: &SwarmState) -> ByAtom {
        let mut by_atom = ByAtom::new();
        for (i, p) in st.packages.iter().enumerate() {
            add_atom(&mut by_atom, &p.atom, PkgId(i as u32));
        }
        by_atom
    }

    /// Every declared dependency of a state.
    pub(crate) fn declared_of(st: &SwarmState) -> OrdSet<Atom> {
        st.packages
            .iter()
            .flat_map(|p| p.deps.iter().cloned())
            .collect()
    }

    /// Packages per key for a state.
    pub(crate) fn keys_of(st: &SwarmState) -> ByKey {
        let mut by_key = ByKey::new();
        for (i, p) in st.packages.iter().enumerate() {
            by_key
                .entry(p.key.clone())
                .or_default()
                .push(PkgId(i as u32));
        }
        by_key
    }
}

#[cfg(test)]
mod tests {
    use crate::state::PkgId;
    use crate::*;
    use std::sync::Arc;

    /// Readers get a copy of the core per publish; it must cost pointers,
    /// not packages (see `Index` and `SwarmState::packages`).
    #[test]
    fn a_copy_of_the_core_shares_packages_and_tables_until_they_change() {
        let mut s = Swarm::new(Config::default()).expect("defaults");
        let atom = |i: usize| Atom::parse(&format!("dev-libs/p{i}-1")).expect("atom");
        let _ = s.handle(&Envelope {
            seq: Seq(1),
            at: Timestamp(1_000),
            input: Input::Enqueue(Enqueue {
                packages: (0..3)
                    .map(|i| PackageSpec {
                        deps: (1..=i).map(|d| atom(d - 1)).collect(),
                        ..PackageSpec::new(atom(i))
                    })
                    .collect(),
                ..Enqueue::default()
            }),
        });
        let copy = s.clone();
        let shared = |a: &Swarm, b: &Swarm| {
            a.st.packages
                .iter()
                .zip(&b.st.packages)
                .map(|(x, y)| Arc::ptr_eq(x, y))
                .collect::<Vec<_>>()
        };
        assert_eq!(shared(&s, &copy), [true, true, true]);
        for (name, same) in [
            ("by_atom", s.ix.by_atom.ptr_eq(&copy.ix.by_atom)),
            ("by_key", s.ix.by_key.ptr_eq(&copy.ix.by_key)),
            ("declared", s.ix.declared.ptr_eq(&copy.ix.declared)),
        ] {
            assert!(same, "{name} was copied, not shared");
        }
        s.st.pkg_mut(PkgId(1)).priority = 7;
        assert_eq!(shared(&s, &copy), [true, false, true]);
        assert_eq!(copy.st.pkg(PkgId(1)).priority, 0, "the copy never changes");
        // The changed package's copy took pointers to its lists and text,
        // not copies: a slice of a propagation copies each package it moves.
        let (mine, theirs) = (s.st.pkg(PkgId(1)), copy.st.pkg(PkgId(1)));
        assert!(
            Arc::ptr_eq(&mine.eff_deps, &theirs.eff_deps),
            "eff_deps copied"
        );
        assert!(
            Arc::ptr_eq(&mine.dependents, &theirs.dependents),
            "dependents copied"
        );
        assert!(Arc::ptr_eq(&mine.deps, &theirs.deps), "deps copied");
        assert!(Arc::ptr_eq(&mine.key, &theirs.key), "key copied");
        assert!(mine.atom.shares_text(&theirs.atom), "atom copied");
    }

    /// Clearing failures forgets them, and writes only the packages that
    /// had some: the others stay shared with a published copy.
    #[test]
    fn clearing_failures_forgets_them_and_copies_only_the_packages_that_had_some() {
        let mut s = Swarm::new(Config::default()).expect("defaults");
        let atom = |i: usize| Atom::parse(&format!("dev-libs/p{i}-1")).expect("atom");
        let drone = crate::id::DroneName::new("d1").expect("name");
        let mut seq = 0;
        let mut input = |s: &mut Swarm, input: Input| {
            seq += 1;
            s.handle(&Envelope {
                seq: Seq(seq),
                at: Timestamp(1_000 + seq),
                input,
            })
        };
        let _ = input(
            &mut s,
            Input::Enqueue(Enqueue {
                packages: (0..3).map(|i| PackageSpec::new(atom(i))).collect(),
                ..Enqueue::default()
            }),
        );
        let failed = s.st.pkg_mut(PkgId(1));
        failed.failed_on.insert(drone.clone(), Timestamp(1_000));
        failed.build_failed_on.insert(drone);
        let copy = s.clone();
        let _ = input(&mut s, Input::Control(Control::ClearFailures));
        let p = s.st.pkg(PkgId(1));
        assert!(p.failed_on.is_empty() && p.build_failed_on.is_empty());
        assert_eq!(
            copy.st.pkg(PkgId(1)).failed_on.len(),
            1,
            "the copy keeps its own"
        );
        for i in [0, 2] {
            assert!(
                Arc::ptr_eq(&s.st.packages[i], &copy.st.packages[i]),
                "package {i} had nothing to forget but was copied"
            );
        }
    }
}
