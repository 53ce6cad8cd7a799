//! `Swarm::touched` names every package, drone and lease whose row changed: after every step
//! of the fuzzer's generator (random bytes and its committed corpus) and of simulator runs,
//! each row that differs from before the step is in the touched set (or the set says
//! `everything`). A read model that syncs only touched rows (the store's read tables) is then
//! exactly as current as one that compares every row.

mod common;

use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::*;

/// A package's row: its view without the figures derived from other rows or the plan
/// (critical path, estimate, unbuilt dependencies), which `Touched` does not cover.
type PackageRow = (PackageStatus, i32, u32, u64, Option<String>);
/// A drone's row: its view without what depends on the whole swarm (why it gets no work,
/// the profiles it serves and how its environment differs from theirs).
type DroneRow = DroneView;

#[derive(PartialEq)]
struct Rows {
    packages: BTreeMap<(Atom, Option<String>), PackageRow>,
    drones: BTreeMap<DroneName, DroneRow>,
    leases: BTreeMap<LeaseId, LeaseView>,
}

fn rows(swarm: &Swarm) -> Rows {
    let view = swarm.view();
    Rows {
        packages: view
            .queue()
            .map(|p| {
                let key = (p.atom.clone(), p.profile.clone());
                (
                    key,
                    (p.status, p.priority, p.attempts, p.generation, p.last_error),
                )
            })
            .collect(),
        drones: view
            .drones()
            .into_iter()
            .map(|mut d| {
                d.no_work = None;
                d.serves.clear();
                d.env_differences.clear();
                d.closest_profile = None;
                (d.name.clone(), d)
            })
            .collect(),
        leases: view.leases().into_iter().map(|l| (l.lease, l)).collect(),
    }
}

/// Keys whose value differs between `a` and `b`, or that only one has.
fn changed<K: Ord + Clone, V: PartialEq>(a: &BTreeMap<K, V>, b: &BTreeMap<K, V>) -> Vec<K> {
    let keys: BTreeSet<&K> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Handles `env` and asserts that the touched set covers every row that changed.
fn assert_touched_covers_changes(swarm: &mut Swarm, env: &Envelope, step: usize) {
    let before = rows(swarm);
    let _ = swarm.handle(env);
    let touched = swarm.touched();
    if touched.everything() {
        return;
    }
    let after = rows(swarm);
    let pkgs: BTreeSet<(Atom, Option<String>)> = swarm
        .view()
        .touched_packages()
        .map(|p| (p.atom, p.profile))
        .collect();
    let drones: BTreeSet<&DroneName> = touched.drones().collect();
    let leases: BTreeSet<LeaseId> = touched.leases().collect();
    let input = format!("{:?}", env.input);
    let input = input.get(..300).unwrap_or(&input);
    let at = format!("step {step}, {input}");
    assert_covered(
        "package",
        &before.packages,
        &after.packages,
        |k| pkgs.contains(k),
        &at,
    );
    assert_covered(
        "drone",
        &before.drones,
        &after.drones,
        |k| drones.contains(k),
        &at,
    );
    assert_covered(
        "lease",
        &before.leases,
        &after.leases,
        |k| leases.contains(k),
        &at,
    );
}

/// Every key whose row changed between `before` and `after` is `touched`.
fn assert_covered<K: Ord + Clone + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    what: &str,
    before: &BTreeMap<K, V>,
    after: &BTreeMap<K, V>,
    touched: impl Fn(&K) -> bool,
    at: &str,
) {
    for key in changed(before, after) {
        assert!(
            touched(&key),
            "{at}: {what} {key:?} changed without being touched:\n  {:?}\n  {:?}",
            before.get(&key),
            after.get(&key)
        );
    }
}

fn replay_checked(envelopes: &[Envelope]) {
    let mut swarm = Swarm::new(Config::default()).expect("defaults are valid");
    for (step, env) in envelopes.iter().enumerate() {
        assert_touched_covers_changes(&mut swarm, env, step);
    }
}

fn replay_bytes(data: &[u8]) {
    for run in fuzzing::trace_bytes(data) {
        let envelopes: Vec<Envelope> = run.into_iter().map(|(env, _)| env).collect();
        replay_checked(&envelopes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn every_row_a_step_changes_is_touched(data in proptest::collection::vec(any::<u8>(), 0..3_000)) {
        replay_bytes(&data);
    }
}

#[test]
fn every_row_the_fuzz_corpus_changes_is_touched() {
    for data in common::handle_corpus() {
        replay_bytes(&data);
    }
}

const SIM_STEPS: usize = 3_000;

#[test]
fn every_row_a_simulated_run_changes_is_touched() {
    for name in ["chaos", "silent-death", "stale-queue", "probe-asymmetry"] {
        let log = common::sim_log(name);
        // Every step compares every row: the first steps of a run, where most happens per
        // row (registrations, the enqueue, the first assignments and faults), keep it quick.
        replay_checked(&log[..log.len().min(SIM_STEPS)]);
    }
}
