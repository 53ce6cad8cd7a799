//! Incremental planning: an enqueue extends the plan in time proportional to
//! the batch, not the queue.
//!
//! New packages get their dependencies, estimates and critical paths at once.
//! Their ancestors' critical paths grow with them; that change is pushed up
//! the dependency graph deepest first, stopping where a critical path does
//! not move, and at most [`PROPAGATION_PER_PACKAGE`] existing packages per
//! new one (never more than [`PROPAGATION_BUDGET`], a tick's slice), so a
//! small part of a big push does a small walk. What is left waits in `SwarmState::cp_pending` and is continued by the
//! next `Tick` (the `Replan` timer is due [`PROPAGATION_PAUSE_MS`] on while it
//! is not empty), so one input never holds the writer for longer than a bounded
//! slice, even when the new packages extend a chain as long as the queue.
//! Until then those ancestors rank by a shorter critical path than they
//! have; nothing else depends on it.

use crate::state::{PkgId, SwarmState};

/// Existing packages whose critical path one input may recompute; the rest
/// of a propagation is continued by the following ticks.
pub(crate) const PROPAGATION_BUDGET: usize = 1024;

/// Existing packages an enqueue may recompute per package it adds (up to
/// [`PROPAGATION_BUDGET`]): a part's walk costs in proportion to the part.
pub(crate) const PROPAGATION_PER_PACKAGE: usize = 8;

/// Time between two slices of a pending propagation.
pub(crate) const PROPAGATION_PAUSE_MS: u64 = 10;

/// Extends the plan to packages `first_new..` just appended. Returns the
/// packages whose plan changed (the new ones and the ancestors whose
/// critical path moved), or `None` when only a full `replan` is exact: an
/// existing package declares a dependency on a new one (the caller checks
/// that), or enqueue order does not follow the package order.
///
/// Why it is exact once `cp_pending` is drained: existing packages only
/// depend on existing ones, so the cycle-breaking walk over them, in enqueue
/// order before any new package, is the one `replan` did; new packages see
/// every existing one as done. Dependents lists grow at their end, in id
/// order, as `replan` builds them. Critical paths change only for the new
/// packages, for packages whose learned estimate changed, and for their
/// dependencies' ancestors, which `propagate` visits.
pub(crate) fn extend(
    st: &mut SwarmState,
    by_atom: &crate::index::ByAtom,
    by_key: &crate::index::ByKey,
    depth: &mut Vec<u32>,
    first_new: usize,
) -> Option<Vec<PkgId>> {
    let n = st.packages.len();
    // Enqueue order increases with the position (an invariant), so the
    // last existing package holds the largest order: no walk of the queue.
    let ordered = st.packages[first_new.saturating_sub(1)..]
        .windows(2)
        .all(|w| w[0].order < w[1].order);
    if !ordered || depth.len() != first_new {
        return None;
    }
    let new_ids: Vec<PkgId> = (first_new..n).map(|i| PkgId(i as u32)).collect();
    // Estimates learned since the last plan, as `replan` would set them.
    let mut seeds: Vec<PkgId> = Vec::new();
    let relearned = std::mem::take(&mut st.relearned);
    for &id in relearned
        .iter()
        .filter_map(|k| by_key.get(k.as_str()))
        .flatten()
    {
        if id.index() >= first_new {
            continue;
        }
        let est = st.estimate_ms(st.pkg(id));
        if est != st.pkg(id).est_ms {
            st.pkg_mut(id).est_ms = est;
            seeds.push(id);
        }
    }
    // Dependencies of the new packages, cycles broken as `replan` does.
    let declared: Vec<Vec<PkgId>> = new_ids
        .iter()
        .map(|&id| super::plan::declared_deps(st, st.pkg(id), by_atom))
        .collect();
    let eff = break_cycles_after(&declared, first_new);
    for (k, ds) in eff.iter().enumerate() {
        let id = PkgId((first_new + k) as u32);
        for d in ds {
            std::sync::Arc::make_mut(&mut st.pkg_mut(*d).dependents).push(id);
        }
    }
    for (k, ds) in eff.into_iter().enumerate() {
        let id = PkgId((first_new + k) as u32);
        let unbuilt = ds.iter().filter(|d| !st.pkg(**d).is_built()).count() as u32;
        let est = st.estimate_ms(st.pkg(id));
        let p = st.pkg_mut(id);
        p.eff_deps = ds.into();
        p.unbuilt = unbuilt;
        p.est_ms = est;
    }
    extend_depths(st, depth, first_new);
    st.last_plan = st.now;
    // The budget grows with the batch, never past a tick's slice on top of
    // the new packages: a small part of a big push does a small walk.
    let budget = new_ids.len()
        + new_ids
            .len()
            .saturating_mul(PROPAGATION_PER_PACKAGE)
            .min(PROPAGATION_BUDGET);
    let mut changed = propagate(st, depth, new_ids.iter().chain(&seeds).copied(), budget);
    // A new package whose critical path is 0 still needs indexing.
    changed.extend(new_ids.iter().copied());
    changed.extend(seeds);
    changed.sort_unstable();
    changed.dedup();
    Some(changed)
}

/// Recomputes the critical path of `seeds` and of every package in
/// `cp_pending`, then of the dependencies of each one that moved, deepest
/// first: a package is deeper than everything it depends on, so each one is
/// visited once, after all its dependents. Stops after `budget` packages;
/// the rest stays in `cp_pending`, which is this walk's own work list.
/// Returns the packages whose critical path changed.
pub(crate) fn propagate(
    st: &mut SwarmState,
    depth: &[u32],
    seeds: impl IntoIterator<Item = PkgId>,
    budget: usize,
) -> Vec<PkgId> {
    let mut todo = std::mem::take(&mut st.cp_pending.0);
    for p in seeds {
        todo.insert((depth_of(depth, p), p));
    }
    let mut changed = Vec::new();
    for _ in 0..budget {
        let Some((_, p)) = todo.pop_last() else {
            break;
        };
        let pkg = st.pkg(p);
        let tail = pkg
            .dependents
            .iter()
            .filter(|q| !st.pkg(**q).is_built())
            .map(|q| st.pkg(*q).cp_ms)
            .max()
            .unwrap_or(0);
        let cp = pkg.est_ms.saturating_add(tail);
        if cp == pkg.cp_ms {
            continue;
        }
        st.pkg_mut(p).cp_ms = cp;
        changed.push(p);
        for &d in st.pkg(p).eff_deps.iter() {
            todo.insert((depth_of(depth, d), d));
        }
    }
    st.cp_pending.0 = todo;
    changed
}

fn depth_of(depth: &[u32], p: PkgId) -> u32 {
    depth.get(p.index()).copied().unwrap_or(0)
}

/// Every package's depth: 0 without dependencies, else one more than its
/// deepest dependency. A package is always deeper than its dependencies, so
/// deepest-first visits dependents before what they depend on.
pub(crate) fn depths(st: &SwarmState) -> Vec<u32> {
    let mut depth = Vec::with_capacity(st.packages.len());
    extend_depths(st, &mut depth, 0);
    depth
}

/// Depths of packages `from..`, whose dependencies are below `from` or
/// among themselves (acyclic: `eff_deps` has its cycles broken).
fn extend_depths(st: &SwarmState, depth: &mut Vec<u32>, from: usize) {
    let n = st.packages.len();
    let local = |p: PkgId| p.index().checked_sub(from);
    let mut indegree: Vec<usize> = st.packages[from..]
        .iter()
        .map(|p| p.eff_deps.iter().filter(|d| local(**d).is_some()).count())
        .collect();
    let mut ready: Vec<usize> = (0..n - from).filter(|&k| indegree[k] == 0).collect();
    depth.resize(n, 0);
    let mut done = 0;
    while let Some(k) = ready.pop() {
        done += 1;
        let p = &st.packages[from + k];
        depth[from + k] = p
            .eff_deps
            .iter()
            .map(|d| depth[d.index()].saturating_add(1))
            .max()
            .unwrap_or(0);
        for q in p.dependents.iter() {
            if let Some(j) = local(*q) {
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.push(j);
                }
            }
        }
    }
    debug_assert_eq!(done, n - from, "eff_deps must be acyclic");
}

/// `break_cycles` for packages `first_new..` whose declared dependencies
/// may point at existing packages (all done, so kept) or at each other.
fn break_cycles_after(declared: &[Vec<PkgId>], first_new: usize) -> Vec<Vec<PkgId>> {
    let local = |id: PkgId| id.index().checked_sub(first_new);
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; declared.len()];
    let mut eff = vec![Vec::new(); declared.len()];
    for root in 0..declared.len() {
        if mark[root] != Mark::New {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        mark[root] = Mark::OnStack;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&dep) = declared[node].get(next) {
                top.1 += 1;
                match local(dep) {
                    None => eff[node].push(dep),
                    Some(d) => match mark[d] {
                        Mark::OnStack => {}
                        Mark::Done => eff[node].push(dep),
                        Mark::New => {
                            eff[node].push(dep);
                            mark[d] = Mark::OnStack;
                            stack.push((d, 0));
                        }
                    },
                }
            } else {
                mark[node] = Mark::Done;
                stack.pop();
            }
        }
    }
    eff
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    struct Feed {
        swarm: Swarm,
        seq: u64,
        at: u64,
    }

    impl Feed {
        fn input(&mut self, input: Input) -> Vec<Output> {
            self.seq += 1;
            self.at += 10;
            self.swarm.handle(&Envelope {
                seq: Seq(self.seq),
                at: Timestamp(self.at),
                input,
            })
        }
    }

    fn chain(from: usize, to: usize) -> Input {
        let atom = |i: usize| crate::atom::Atom::parse(&format!("dev-libs/c{i}-1")).expect("atom");
        Input::Enqueue(Enqueue {
            packages: (from..to)
                .map(|i| PackageSpec {
                    deps: if i == 0 { vec![] } else { vec![atom(i - 1)] },
                    ..PackageSpec::new(atom(i))
                })
                .collect(),
            ..Enqueue::default()
        })
    }

    /// A batch extending a chain longer than the budget leaves the rest of
    /// the propagation to ticks, which finish it: then the plan equals a
    /// full replan.
    #[test]
    fn a_long_chain_is_planned_in_bounded_slices_that_end_in_the_full_plan() {
        let mut f = Feed {
            swarm: Swarm::new(Config::default()).expect("defaults"),
            seq: 0,
            at: 1_000,
        };
        let n = PROPAGATION_BUDGET * 3;
        let _ = f.input(chain(0, n));
        assert!(
            f.swarm.state().cp_pending.is_empty(),
            "a batch plans itself"
        );
        let _ = f.input(chain(n, n + 10));
        let pending = f.swarm.state().cp_pending.0.len();
        assert_eq!(pending, 1, "the walk down the chain stopped at the budget");
        assert_eq!(f.swarm.view().replan_pending(), pending, "what readers see");
        let walked = 10 * (1 + PROPAGATION_PER_PACKAGE);
        let due = f.swarm.poll_timeout().expect("a tick is due");
        assert!(
            due.0 <= f.at + PROPAGATION_PAUSE_MS,
            "due at once, not after the replan interval"
        );
        let mut ticks = 0;
        while !f.swarm.state().cp_pending.is_empty() {
            let _ = f.input(Input::Tick);
            ticks += 1;
            assert!(ticks <= 4, "every tick makes progress");
        }
        assert_eq!(
            ticks,
            (n + 10 - walked).div_ceil(PROPAGATION_BUDGET),
            "{n} ancestors: {walked} with the batch, the rest a tick's slice at a time"
        );
        assert!(
            f.swarm.poll_timeout().is_none(),
            "nothing is due once the plan is whole"
        );
        assert_eq!(f.swarm.view().replan_pending(), 0);
        let mut full = f.swarm.state().clone();
        crate::policy::plan::replan(&mut full);
        for (i, (a, b)) in f
            .swarm
            .state()
            .packages
            .iter()
            .zip(&full.packages)
            .enumerate()
        {
            assert_eq!(a.cp_ms, b.cp_ms, "pkg {i} cp");
        }
        f.swarm.check_invariants_deep().expect("invariants");
        // The head of the chain ranks by the whole chain.
        let head = f.swarm.state().pkg(PkgId(0));
        assert_eq!(head.cp_ms, (n as u64 + 10) * head.est_ms);
    }

    /// One package added below a long chain walks a few ancestors, in
    /// proportion to itself, not a whole tick's slice: a small part of a
    /// big push holds the writer for a small time.
    #[test]
    fn a_small_enqueue_recomputes_in_proportion_to_its_size() {
        let mut f = Feed {
            swarm: Swarm::new(Config::default()).expect("defaults"),
            seq: 0,
            at: 1_000,
        };
        let n = 2 * PROPAGATION_BUDGET;
        let _ = f.input(chain(0, n));
        let before: Vec<u64> = f.swarm.state().packages.iter().map(|p| p.cp_ms).collect();
        let _ = f.input(chain(n, n + 1));
        let moved = f
            .swarm
            .state()
            .packages
            .iter()
            .zip(&before)
            .filter(|(p, cp)| p.cp_ms != **cp)
            .count();
        assert_eq!(
            moved, PROPAGATION_PER_PACKAGE,
            "the nearest ancestors moved; the rest waits for ticks"
        );
        assert!(!f.swarm.state().cp_pending.is_empty());
    }

    /// `extend` compares the new packages with the last one only, so the
    /// order must increase with the position; a state where it does not is
    /// refused as broken.
    #[test]
    fn enqueue_order_out_of_step_with_position_breaks_an_invariant() {
        let mut f = Feed {
            swarm: Swarm::new(Config::default()).expect("defaults"),
            seq: 0,
            at: 1_000,
        };
        let _ = f.input(chain(0, 3));
        f.swarm.check_invariants_deep().expect("in order");
        f.swarm.st.pkg_mut(PkgId(0)).order = 7;
        let broken = f.swarm.check_invariants_deep().expect_err("out of order");
        assert!(broken.detail.contains("enqueue order"), "{broken}");
    }

    #[test]
    fn depths_put_every_package_below_its_dependents() {
        let mut f = Feed {
            swarm: Swarm::new(Config::default()).expect("defaults"),
            seq: 0,
            at: 1_000,
        };
        let _ = f.input(chain(0, 50));
        let _ = f.input(chain(50, 60));
        let st = f.swarm.state();
        let depth = depths(st);
        for (i, p) in st.packages.iter().enumerate() {
            for d in p.eff_deps.iter() {
                assert!(depth[d.index()] < depth[i], "{i} deeper than {d:?}");
            }
        }
        assert_eq!(depth[59], 59);
    }
}
