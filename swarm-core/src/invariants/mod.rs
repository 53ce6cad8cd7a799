//! The invariants of DESIGN §8.
//!
//! `Swarm::check_invariants` checks what a single state can show (1, 2, 6, 7, 9,
//! 11, plus index consistency). `Monitor` watches the stream of envelopes and
//! outputs and checks what only history can show (3, 4, 5, 6, 10, 11), keeping
//! its own record of heartbeats and probes so it does not trust the core's.

mod monitor;
mod quick;

pub use monitor::Monitor;

use crate::index::Index;
use crate::policy::escalate;
use crate::state::{PackageState, PkgId};
use crate::swarm::Swarm;
use crate::violation::{fail, Violation};

impl Swarm {
    /// Checks every invariant one state can show. Cost is linear in the leases and drones,
    /// not in the queue: the simulator calls it after every step, and
    /// `check_invariants_deep` (every step in the property tests) adds the passes over the
    /// whole queue.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        if quick::holds(self) {
            return Ok(());
        }
        self.check_each_invariant()
    }

    /// `check_invariants` without the fast path: each invariant in turn, so the first one
    /// broken is the one reported, with what broke it.
    fn check_each_invariant(&self) -> Result<(), Violation> {
        // 16. Transitions: every state change the core attempted was an edge of its diagram.
        if let Some(v) = &self.refused {
            return Err(v.clone());
        }
        let st = &self.st;
        // 1 and 2. Conservation and exclusivity: every lease is its package's live lease and
        // on its drone's books (that no assigned package lacks a live lease, a pass over the
        // whole queue, is in the deep check).
        for (lid, l) in &st.leases {
            let p = st.packages.get(l.pkg.index());
            if p.map(|p| (p.lease(), &p.atom)) != Some((Some(*lid), &l.package)) {
                return fail(
                    2,
                    format!(
                        "lease {lid} on {} is not the package's live lease",
                        l.package
                    ),
                );
            }
            let Some(d) = st.drones.get(&l.drone) else {
                return fail(
                    2,
                    format!("lease {lid} belongs to unregistered drone {}", l.drone),
                );
            };
            if !d.leases.contains(lid) || d.epoch != l.epoch {
                return fail(
                    2,
                    format!(
                        "lease {lid} is not on {}'s books in epoch {}",
                        l.drone, d.epoch
                    ),
                );
            }
        }
        for d in st.drones.values() {
            for lid in &d.leases {
                if st.leases.get(lid).is_none_or(|l| l.drone != d.spec.name) {
                    return fail(
                        2,
                        format!("{} lists lease {lid}, which is not its own", d.spec.name),
                    );
                }
            }
            // 6. Offline liveness.
            quick::drone_state(st, d)?;
            // 7. Prefetch.
            let not_started = st.not_started(d);
            if not_started > st.config.max_prefetch {
                return fail(
                    7,
                    format!("{} holds {not_started} not-started leases", d.spec.name),
                );
            }
            // 14. One lease per atom per drone: a report names only the atom.
            let held = crate::policy::schedule::held_atoms(st, d);
            if let Some(twice) = held
                .iter()
                .enumerate()
                .find_map(|(i, a)| held[..i].contains(a).then_some(a))
            {
                return fail(14, format!("{} holds two leases of {twice}", d.spec.name));
            }
            // 15. A revoke repeated to a drone never names work it holds a live lease of: it would
            // stop the build it was rightly given.
            if let Some(a) = d.revokes.0.keys().find(|a| held.contains(a)) {
                return fail(
                    15,
                    format!(
                        "{} is told to stop {a}, which it holds a lease of",
                        d.spec.name
                    ),
                );
            }
            if usize::from(d.ladder.steps) > escalate::ladder(d.spec.kind).len() {
                return fail(
                    10,
                    format!("{} climbed past the top of its ladder", d.spec.name),
                );
            }
        }
        // 9. Dependencies.
        for l in st.leases.values() {
            for dep in st.pkg(l.pkg).eff_deps.iter() {
                let dep = st.pkg(*dep);
                if dep.lease_mark <= l.id.0 && !dep.is_built() {
                    return fail(
                        9,
                        format!(
                            "{} is leased ({}) before its dependency {} is built",
                            l.package, l.id, dep.atom
                        ),
                    );
                }
            }
        }
        // 11. No restart storm.
        let recent = escalate::recent(st);
        if recent > st.config.max_escalations_per_window {
            return fail(11, format!("{recent} escalations inside one window"));
        }
        Ok(())
    }

    /// `check_invariants`, plus proof that every incremental index (ready set,
    /// timers, dependency counts) equals one rebuilt from scratch. Costs a copy
    /// of the state: property tests run it every step, the simulator sometimes
    /// (through [`Swarm::check_invariants_deep_in_place`], which spares the copy).
    pub fn check_invariants_deep(&self) -> Result<(), Violation> {
        self.check_whole_queue()?;
        let mut fresh = Swarm {
            st: self.st.clone(),
            ix: Index::default(),
            touched: Default::default(),
            decided: Default::default(),
            refused: None,
        };
        fresh.rebuild_index();
        self.check_index_equals(&fresh.ix)
    }

    /// `check_invariants_deep` without copying the state: the index is rebuilt from the
    /// state in place, compared with the live one, and the live one (with the touched set,
    /// which a rebuild marks whole) put back. The simulator's deep check: the copy of the
    /// state cost as much as the rebuild itself.
    pub(crate) fn check_invariants_deep_in_place(&mut self) -> Result<(), Violation> {
        self.check_whole_queue()?;
        let live = std::mem::take(&mut self.ix);
        let touched = std::mem::take(&mut self.touched);
        self.rebuild_index();
        let fresh = std::mem::replace(&mut self.ix, live);
        self.touched = touched;
        self.check_index_equals(&fresh)
    }

    /// `check_invariants` and the passes over the whole queue that the index does not need.
    fn check_whole_queue(&self) -> Result<(), Violation> {
        self.check_invariants()?;
        // 17. A report answered as a repeat names a lease that has ended: every lease a drone's
        // reports are remembered to have ended was issued and is live no more (a pass over the
        // drones' memories, up to 32 leases each, so not in the per-step check).
        for d in self.st.drones.values() {
            if let Some(e) =
                d.reported.0.iter().find(|e| {
                    self.st.leases.contains_key(&e.lease) || e.lease.0 >= self.st.next_lease
                })
            {
                return fail(
                    17,
                    format!(
                        "{} would have a report of lease {} ({}) answered as a repeat, but that lease {}",
                        d.spec.name,
                        e.lease,
                        e.atom,
                        if e.lease.0 >= self.st.next_lease { "was never issued" } else { "is live" }
                    ),
                );
            }
        }
        // Enqueue order increases with the position: an enqueue's plan
        // compares the new packages with the last one only.
        if let Some(w) = self
            .st
            .packages
            .windows(2)
            .find(|w| w[0].order >= w[1].order)
        {
            return fail(
                0,
                format!(
                    "{} (enqueue order {}) sits before {} (enqueue order {})",
                    w[0].atom, w[0].order, w[1].atom, w[1].order
                ),
            );
        }
        // 1. Conservation of the atom index: every package indexed once, nothing else.
        let indexed: usize = self.ix.by_atom.values().map(|ids| ids.len()).sum();
        if indexed != self.st.packages.len() {
            return fail(
                1,
                format!(
                    "{indexed} packages indexed by atom for {} packages",
                    self.st.packages.len()
                ),
            );
        }
        // 1. Conservation: every assigned package's lease is live and names it back.
        for (i, p) in self.st.packages.iter().enumerate() {
            let id = PkgId(i as u32);
            if let PackageState::Assigned { lease } = *p.state() {
                match self.st.leases.get(&lease) {
                    Some(l) if l.pkg == id && l.package == p.atom => {}
                    _ => {
                        return fail(
                            1,
                            format!(
                                "{} is assigned under lease {lease}, which is not its live lease",
                                p.atom
                            ),
                        )
                    }
                }
            }
        }
        for (i, p) in self.st.packages.iter().enumerate() {
            if self.pkg_in(p.profile.0.as_deref(), &p.atom) != Some(PkgId(i as u32)) {
                return fail(
                    1,
                    format!(
                        "{} of profile {} is not indexed under its position {i} (or is queued twice)",
                        p.atom,
                        p.profile.name()
                    ),
                );
            }
        }
        for p in &self.st.packages {
            let unbuilt = p
                .eff_deps
                .iter()
                .filter(|d| !self.st.pkg(**d).is_built())
                .count() as u32;
            if unbuilt != p.unbuilt {
                return fail(
                    0,
                    format!(
                        "{} counts {} unbuilt dependencies, really {unbuilt}",
                        p.atom, p.unbuilt
                    ),
                );
            }
        }
        Ok(())
    }

    /// Every incremental index equals `fresh`, the one rebuilt from scratch.
    fn check_index_equals(&self, fresh: &Index) -> Result<(), Violation> {
        if fresh.by_atom != self.ix.by_atom {
            return fail(1, "atom index drifted".to_owned());
        }
        if fresh.by_key != self.ix.by_key {
            return fail(0, "package-per-key index drifted".to_owned());
        }
        if fresh.declared != self.ix.declared {
            return fail(0, "declared-dependency index drifted".to_owned());
        }
        if fresh.depth != self.ix.depth {
            return fail(0, "dependency depths drifted".to_owned());
        }
        if let Some((d, p)) = self
            .st
            .cp_pending
            .0
            .iter()
            .find(|(d, p)| self.ix.depth.get(p.index()) != Some(d))
        {
            return fail(
                0,
                format!("package #{} waits for its plan at depth {d}", p.0),
            );
        }
        if fresh.ready != self.ix.ready || fresh.sweepable != self.ix.sweepable {
            return fail(
                0,
                format!(
                    "ready set drifted: {} indexed, {} expected",
                    self.ix.ready.len(),
                    fresh.ready.len()
                ),
            );
        }
        if fresh.timer_at != self.ix.timer_at {
            let diff: Vec<String> = fresh
                .timer_at
                .iter()
                .filter(|(k, v)| self.ix.timer_at.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k:?}@{}", v.0))
                .chain(
                    self.ix
                        .timer_at
                        .iter()
                        .filter(|(k, _)| !fresh.timer_at.contains_key(*k))
                        .map(|(k, v)| format!("stale {k:?}@{}", v.0)),
                )
                .take(3)
                .collect();
            return fail(0, format!("timers drifted: {}", diff.join(", ")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
