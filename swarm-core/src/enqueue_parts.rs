//! Splitting a big push into parts the writer can commit one at a time.
//!
//! A push of thousands of packages is planned in one step; while that step
//! and its commit run, every drone input waits. Cut into parts, committed in
//! order with drone inputs between them, the wait is one part. A part ends
//! only where no package before the cut depends on one after it (matched by
//! package key, which covers every spelling of the dependency), so each part
//! is a queue whose dependencies are already there, and the planner sees the
//! same dependency graph as for the whole push: a dependent is never queued
//! before what it waits for. Pushes that name a generation or a Portage
//! snapshot are never split: those apply to the push as a whole.

use crate::input::Enqueue;
use std::collections::BTreeMap;

/// What a package weighs in a part, besides one per dependency it names:
/// its plan, its read-table row and its log entry cost about as much as
/// sixteen dependency edges (measured: about 16 µs against 0.8 µs).
pub const PACKAGE_WEIGHT: u64 = 16;

/// The weight of a part as the server cuts a push: sixteen packages of two
/// dependencies, about 0.25 ms of the writer's CPU at 100,000 queued
/// (plan, read-table rows, log and commit; `swarm-store`'s `writer_cost`
/// test measures it). A heartbeat that arrives while a part is committed
/// waits for that part, so this bounds what a big import adds to it.
pub const PART_WEIGHT: u64 = 16 * (PACKAGE_WEIGHT + 2);

impl Enqueue {
    /// Splits this push into parts weighing at most `max_weight` (one part
    /// when it weighs no more, names a generation or snapshot, or has no cut
    /// that keeps dependencies before dependents). A package weighs
    /// [`PACKAGE_WEIGHT`] plus one per dependency: a part is sized by the
    /// work it holds the writer for, not by a count of atoms. Parts keep the
    /// packages' order; a part weighs more than `max_weight` only where no
    /// cut is allowed (or one package alone weighs more).
    pub fn into_parts(self, max_weight: u64) -> Vec<Enqueue> {
        let weights: Vec<u64> = self
            .packages
            .iter()
            .map(|p| PACKAGE_WEIGHT.saturating_add(p.deps.len() as u64))
            .collect();
        if weights.iter().sum::<u64>() <= max_weight
            || self.generation.is_some()
            || self.portage_snapshot.is_some()
        {
            return vec![self];
        }
        let cuts = allowed_cuts(&self);
        let mut bounds = Vec::new();
        let mut start = 0;
        let n = self.packages.len();
        while start < n {
            // The furthest end within `max_weight` (one package at least),
            // then the last allowed cut up to it, else the first one after.
            let mut limit = start + 1;
            let mut weight = weights[start];
            while limit < n && weight.saturating_add(weights[limit]) <= max_weight {
                weight += weights[limit];
                limit += 1;
            }
            let end = (start + 1..=limit)
                .rev()
                .find(|&c| cuts[c])
                .or_else(|| (limit + 1..=n).find(|&c| cuts[c]))
                .unwrap_or(n);
            bounds.push(end - start);
            start = end;
        }
        let mut packages = self.packages.into_iter();
        bounds
            .into_iter()
            .map(|len| Enqueue {
                packages: packages.by_ref().take(len).collect(),
                generation: None,
                portage_snapshot: None,
            })
            .collect()
    }
}

/// `cuts[c]`: packages `..c` depend on none of `c..` (`cuts[n]` is true).
fn allowed_cuts(e: &Enqueue) -> Vec<bool> {
    let n = e.packages.len();
    let mut last_of_key: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, p) in e.packages.iter().enumerate() {
        last_of_key.insert(p.atom.key(), i);
    }
    let mut cuts = vec![false; n + 1];
    // The furthest package that something before the cut depends on.
    let mut reach = 0usize;
    for (i, p) in e.packages.iter().enumerate() {
        cuts[i] = i > 0 && reach < i;
        for d in &p.deps {
            if let Some(&k) = last_of_key.get(d.key()) {
                reach = reach.max(k);
            }
        }
    }
    cuts[n] = true;
    cuts
}

#[cfg(test)]
mod tests {
    use super::PACKAGE_WEIGHT as W;
    use crate::{Atom, Enqueue, Generation, PackageSpec};

    fn spec(name: &str, deps: &[&str]) -> PackageSpec {
        let atom = |s: &str| Atom::parse(s).expect("atom");
        PackageSpec {
            deps: deps.iter().map(|d| atom(d)).collect(),
            ..PackageSpec::new(atom(name))
        }
    }

    fn sizes(parts: &[Enqueue]) -> Vec<usize> {
        parts.iter().map(|p| p.packages.len()).collect()
    }

    #[test]
    fn a_push_in_dependency_order_is_cut_into_parts_of_at_most_max() {
        // Each package depends on the one before: every cut is allowed.
        let packages: Vec<PackageSpec> = (0..10)
            .map(|i| {
                let dep = format!("=app-misc/p{}-1", i.max(1) - 1);
                let deps: Vec<&str> = if i == 0 { vec![] } else { vec![dep.as_str()] };
                spec(&format!("=app-misc/p{i}-1"), &deps)
            })
            .collect();
        let whole = Enqueue {
            packages: packages.clone(),
            ..Enqueue::default()
        };
        // Four packages of one dependency weigh 4 * (W + 1).
        let parts = whole.into_parts(4 * (W + 1));
        assert_eq!(sizes(&parts), vec![4, 4, 2]);
        let joined: Vec<PackageSpec> = parts.into_iter().flat_map(|p| p.packages).collect();
        assert_eq!(joined, packages, "order and content are kept");
    }

    /// Packages naming many dependencies cost more to plan: fewer go in a
    /// part, so a part holds the writer for about the same time.
    #[test]
    fn parts_are_sized_by_weight_so_packages_with_many_dependencies_go_fewer_to_a_part() {
        let base: Vec<PackageSpec> = (0..40)
            .map(|i| spec(&format!("=app-misc/base{i}-1"), &[]))
            .collect();
        let names: Vec<String> = (0..40).map(|i| format!("app-misc/base{i}")).collect();
        let deps: Vec<&str> = names.iter().map(String::as_str).collect();
        let heavy: Vec<PackageSpec> = (0..8)
            .map(|i| spec(&format!("=app-misc/heavy{i}-1"), &deps))
            .collect();
        let light = Enqueue {
            packages: base,
            ..Enqueue::default()
        };
        assert_eq!(sizes(&light.into_parts(8 * W)), vec![8; 5]);
        let heavy = Enqueue {
            packages: heavy,
            ..Enqueue::default()
        };
        // One heavy package weighs W + 40: two fit in 8 * W (= 128), three do not.
        assert_eq!(sizes(&heavy.into_parts(8 * W)), vec![2; 4]);
    }

    #[test]
    fn no_part_ends_before_a_package_that_an_earlier_one_depends_on() {
        // p0 depends on p5 (any version of its key): no cut in 1..=5.
        let mut packages: Vec<PackageSpec> = (0..8)
            .map(|i| spec(&format!("=app-misc/p{i}-1"), &[]))
            .collect();
        packages[0] = spec("=app-misc/p0-1", &["app-misc/p5"]);
        let parts = Enqueue {
            packages,
            ..Enqueue::default()
        }
        .into_parts(3 * W + 1);
        assert_eq!(sizes(&parts), vec![6, 2]);
    }

    #[test]
    fn small_pushes_and_pushes_with_a_generation_or_snapshot_stay_whole() {
        let packages: Vec<PackageSpec> = (0..6)
            .map(|i| spec(&format!("=app-misc/p{i}-1"), &[]))
            .collect();
        let plain = Enqueue {
            packages: packages.clone(),
            ..Enqueue::default()
        };
        assert_eq!(sizes(&plain.clone().into_parts(6 * W)), vec![6]);
        assert_eq!(sizes(&plain.into_parts(2 * W)), vec![2, 2, 2]);
        let with_generation = Enqueue {
            packages: packages.clone(),
            generation: Some(Generation(3)),
            ..Enqueue::default()
        };
        assert_eq!(sizes(&with_generation.into_parts(2 * W)), vec![6]);
        let with_snapshot = Enqueue {
            packages,
            portage_snapshot: Some("2026-12-01T00:00:00Z".into()),
            ..Enqueue::default()
        };
        assert_eq!(sizes(&with_snapshot.into_parts(2 * W)), vec![6]);
    }
}
