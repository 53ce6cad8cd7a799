//! The plan: which dependencies count, and each package's remaining critical path.
//!
//! Recomputed on `fresh`, restore and at most every `replan_interval` after
//! durations are learned; never per request. An enqueue extends the plan in
//! time proportional to the batch (`policy::extend`), falling back to a full
//! `replan` when an existing package was waiting for one of the new atoms.

use crate::state::{PkgId, SwarmState};
use std::collections::BTreeMap;

/// Recomputes `eff_deps`, `dependents`, `unbuilt` and `cp_ms` for every package.
///
/// Dependency cycles (common in Portage) are broken deterministically: a
/// depth-first walk in enqueue order drops every edge that closes a cycle, so a
/// cycle can never deadlock the queue.
pub(crate) fn replan(st: &mut SwarmState) {
    let by_atom = crate::index::Index::atoms_of(st);
    let n = st.packages.len();
    let declared: Vec<Vec<PkgId>> = st
        .packages
        .iter()
        .map(|p| declared_deps(st, p, &by_atom))
        .collect();
    let eff = break_cycles(&declared, &order_of(st));
    let mut dependents = vec![Vec::new(); n];
    for (i, ds) in eff.iter().enumerate() {
        for d in ds {
            dependents[d.index()].push(PkgId(i as u32));
        }
    }
    let estimates: Vec<u64> = {
        let mut learned: BTreeMap<&str, Option<u64>> = BTreeMap::new();
        let default = st.config.default_duration_ms;
        st.packages
            .iter()
            .map(|p| {
                let l = *learned
                    .entry(&p.key)
                    .or_insert_with(|| st.learned_ms(&p.key));
                l.or(p.hint_ms).unwrap_or(default)
            })
            .collect()
    };
    for (i, ((ds, dependents), est)) in eff.into_iter().zip(dependents).zip(estimates).enumerate() {
        let unbuilt = ds.iter().filter(|d| !st.pkg(**d).is_built()).count() as u32;
        let old = st.pkg(PkgId(i as u32));
        if *old.eff_deps == ds[..]
            && *old.dependents == dependents
            && old.unbuilt == unbuilt
            && old.est_ms == est
        {
            // Unchanged: a package a published copy shares stays shared.
            continue;
        }
        let p = st.pkg_mut(PkgId(i as u32));
        p.eff_deps = ds.into();
        p.dependents = dependents.into();
        p.unbuilt = unbuilt;
        p.est_ms = est;
    }
    st.relearned.clear();
    recompute_critical_paths(st);
}

/// Refreshes the estimates of packages whose duration was learned since the
/// last plan; says whether any changed (only then is the plan recomputed).
pub(crate) fn refresh_estimates(st: &mut SwarmState, by_key: &crate::index::ByKey) -> bool {
    let relearned = std::mem::take(&mut st.relearned);
    st.last_plan = st.now;
    let mut changed = false;
    for &id in relearned
        .iter()
        .filter_map(|k| by_key.get(k.as_str()))
        .flatten()
    {
        let p = st.pkg(id);
        let est = st.estimate_ms(p);
        if !p.is_built() && est != p.est_ms {
            st.pkg_mut(id).est_ms = est;
            changed = true;
        }
    }
    changed
}

/// Recomputes `cp_ms` with the durations learned so far; the dependency
/// structure is unchanged. This is what the periodic replan runs.
pub(crate) fn recompute_critical_paths(st: &mut SwarmState) {
    let n = st.packages.len();
    let eff: Vec<&[PkgId]> = st.packages.iter().map(|p| &p.eff_deps[..]).collect();
    let dependents: Vec<&[PkgId]> = st.packages.iter().map(|p| &p.dependents[..]).collect();
    let topo = topological(&eff, &dependents);
    let mut cp = vec![0u64; n];
    // Dependents come after their dependencies in `topo`; walk it backwards.
    for &p in topo.iter().rev() {
        let own = st.pkg(p).est_ms;
        let tail = dependents[p.index()]
            .iter()
            .filter(|q| !st.pkg(**q).is_built())
            .map(|q| cp[q.index()])
            .max()
            .unwrap_or(0);
        cp[p.index()] = own.saturating_add(tail);
    }
    for (i, cp) in cp.into_iter().enumerate() {
        let id = PkgId(i as u32);
        if st.pkg(id).cp_ms != cp {
            // Only what moved: a package a published copy shares stays shared.
            st.pkg_mut(id).cp_ms = cp;
        }
    }
    st.cp_pending.0.clear();
    st.last_plan = st.now;
}

/// A package's in-queue dependencies as ids, sorted and without repeats; none when the policy
/// ignores dependencies. Shared by the full plan and `extend`, so both read the same edges.
/// A dependency resolves within the package's own profile: the same atom queued for another
/// profile is another build, in another environment, for another binhost.
pub(crate) fn declared_deps(
    st: &SwarmState,
    p: &crate::state::Package,
    by_atom: &crate::index::ByAtom,
) -> Vec<PkgId> {
    if !st.config.dependency_aware {
        return Vec::new();
    }
    let profile = p.profile.0.as_deref();
    let mut ds: Vec<PkgId> = p
        .deps
        .iter()
        .filter_map(|a| crate::index::find_in(by_atom, st, profile, a))
        .collect();
    ds.sort();
    ds.dedup();
    ds
}

fn order_of(st: &SwarmState) -> Vec<PkgId> {
    let mut ids: Vec<PkgId> = (0..st.packages.len() as u32).map(PkgId).collect();
    ids.sort_by_key(|p| st.pkg(*p).order);
    ids
}

/// Iterative DFS; edges into a node still on the stack are dropped.
fn break_cycles(declared: &[Vec<PkgId>], order: &[PkgId]) -> Vec<Vec<PkgId>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        OnStack,
        Done,
    }
    let mut mark = vec![Mark::New; declared.len()];
    let mut eff = vec![Vec::new(); declared.len()];
    for &root in order {
        if mark[root.index()] != Mark::New {
            continue;
        }
        let mut stack = vec![(root, 0usize)];
        mark[root.index()] = Mark::OnStack;
        while let Some(top) = stack.last_mut() {
            let (node, next) = *top;
            if let Some(&dep) = declared[node.index()].get(next) {
                top.1 += 1;
                match mark[dep.index()] {
                    Mark::OnStack => {}
                    Mark::Done => eff[node.index()].push(dep),
                    Mark::New => {
                        eff[node.index()].push(dep);
                        mark[dep.index()] = Mark::OnStack;
                        stack.push((dep, 0));
                    }
                }
            } else {
                mark[node.index()] = Mark::Done;
                stack.pop();
            }
        }
    }
    eff
}

/// Kahn's algorithm: dependencies before dependents, ties by id.
fn topological<E: AsRef<[PkgId]>, D: AsRef<[PkgId]>>(eff: &[E], dependents: &[D]) -> Vec<PkgId> {
    let mut indegree: Vec<usize> = eff.iter().map(|e| e.as_ref().len()).collect();
    let mut queue: std::collections::VecDeque<PkgId> = (0..eff.len() as u32)
        .map(PkgId)
        .filter(|p| indegree[p.index()] == 0)
        .collect();
    let mut out = Vec::with_capacity(eff.len());
    while let Some(p) = queue.pop_front() {
        out.push(p);
        for q in dependents[p.index()].as_ref() {
            indegree[q.index()] -= 1;
            if indegree[q.index()] == 0 {
                queue.push_back(*q);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[u32]) -> Vec<PkgId> {
        v.iter().map(|i| PkgId(*i)).collect()
    }

    #[test]
    fn cycles_lose_exactly_their_closing_edge() {
        // 0 -> 1 -> 2 -> 0 (a cycle), 3 -> 0
        let declared = vec![ids(&[1]), ids(&[2]), ids(&[0]), ids(&[0])];
        let eff = break_cycles(&declared, &ids(&[0, 1, 2, 3]));
        assert_eq!(eff, vec![ids(&[1]), ids(&[2]), ids(&[]), ids(&[0])]);
        let mut dependents = vec![Vec::new(); 4];
        for (i, ds) in eff.iter().enumerate() {
            for d in ds {
                dependents[d.index()].push(PkgId(i as u32));
            }
        }
        assert_eq!(
            topological(&eff, &dependents).len(),
            4,
            "acyclic after breaking"
        );
    }

    /// After every enqueue, the extended plan equals a full replan for every
    /// package that is not built, and the structure equals it everywhere.
    #[test]
    fn an_extended_plan_equals_a_full_replan() {
        use crate::*;
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rnd = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..20u64 {
            let mut swarm = Swarm::new(Config::default()).expect("defaults");
            let mut seq = 0;
            let mut at = 1_000;
            let mut feed = |swarm: &mut Swarm, input: Input| {
                seq += 1;
                at += 1_000;
                let env = Envelope {
                    seq: Seq(seq),
                    at: Timestamp(at),
                    input,
                };
                swarm.handle(&env)
            };
            let drone = DroneName::new("d").expect("name");
            let _ = feed(
                &mut swarm,
                Input::Register(DroneSpec {
                    name: drone.clone(),
                    cores: 64,
                    ..DroneSpec::default()
                }),
            );
            let atom = |i: u64| {
                Atom::parse(&format!("dev-libs/p{}-{}", i % 40, 1 + i / 40)).expect("atom")
            };
            for _ in 0..12 {
                let k = 1 + rnd(6);
                let packages = (0..k)
                    .map(|_| {
                        let deps = (0..rnd(4)).map(|_| atom(rnd(120))).collect();
                        PackageSpec {
                            deps,
                            estimate_s: (rnd(3) == 0).then(|| rnd(1_000)),
                            ..PackageSpec::new(atom(rnd(120)))
                        }
                    })
                    .collect();
                let out = feed(
                    &mut swarm,
                    Input::Enqueue(Enqueue {
                        packages,
                        ..Enqueue::default()
                    }),
                );
                // An enqueue that adds nothing plans nothing, either way.
                let added = out
                    .iter()
                    .any(|o| matches!(o, Output::Event(Event::Queued { added, .. }) if *added > 0));
                let mut full = swarm.state().clone();
                replan(&mut full);
                for (i, (a, b)) in swarm
                    .state()
                    .packages
                    .iter()
                    .zip(&full.packages)
                    .enumerate()
                    .filter(|_| added)
                {
                    assert_eq!(a.eff_deps, b.eff_deps, "round {round} pkg {i} eff");
                    assert_eq!(
                        a.dependents, b.dependents,
                        "round {round} pkg {i} dependents"
                    );
                    assert_eq!(a.unbuilt, b.unbuilt, "round {round} pkg {i} unbuilt");
                    if !a.is_built() {
                        assert_eq!(a.est_ms, b.est_ms, "round {round} pkg {i} est");
                        assert_eq!(a.cp_ms, b.cp_ms, "round {round} pkg {i} cp");
                    }
                }
                // Build some of what is ready, so durations are learned.
                let out = feed(
                    &mut swarm,
                    Input::RequestWork {
                        drone: drone.clone(),
                        free_slots: Some(2),
                    },
                );
                for o in out {
                    if let Output::Command(Command::Assign { package, lease, .. }) = o {
                        let _ = feed(
                            &mut swarm,
                            Input::BuildFinished {
                                report: Report {
                                    drone: drone.clone(),
                                    package,
                                    lease: Some(lease),
                                    epoch: None,
                                },
                                outcome: Outcome::Success,
                                duration_ms: Some(rnd(900_000)),
                            },
                        );
                    }
                }
                swarm.check_invariants().expect("invariants");
            }
        }
    }

    #[test]
    fn a_long_chain_does_not_overflow_the_stack() {
        let n = 200_000u32;
        let declared: Vec<Vec<PkgId>> = (0..n)
            .map(|i| if i + 1 < n { ids(&[i + 1]) } else { vec![] })
            .collect();
        let order: Vec<PkgId> = (0..n).map(PkgId).collect();
        let eff = break_cycles(&declared, &order);
        assert_eq!(eff.iter().map(Vec::len).sum::<usize>(), n as usize - 1);
    }
}
