//! The core never attempts a state change its diagrams do not draw (`state/package.rs`,
//! `state/drone.rs`): after every step of the fuzzer's generator (random bytes and its
//! committed corpus) and of every simulator scenario, `check_invariants` reports no refused
//! move (invariant 16). A refused move leaves the state as it was, so without this check a
//! bug in a transition would show only as a stuck package or drone, steps later.

mod common;

use proptest::prelude::*;
use swarm_core::sim;
use swarm_core::*;

/// Invariant 16 of DESIGN §8: a refused (illegal) transition.
const TRANSITIONS: u8 = 16;

/// Replays `envelopes` into a fresh swarm; panics at the first step after which an illegal
/// transition was refused.
fn assert_no_illegal_transition(envelopes: &[Envelope], what: &str) {
    let mut swarm = Swarm::new(Config::default()).expect("defaults are valid");
    for (step, env) in envelopes.iter().enumerate() {
        let _ = swarm.handle(env);
        if let Err(v) = swarm.check_invariants() {
            let input = format!("{:?}", env.input);
            let input = input.get(..300).unwrap_or(&input);
            assert_ne!(
                v.invariant, TRANSITIONS,
                "{what}, step {step} ({input}): {v}"
            );
        }
    }
}

fn replay_bytes(data: &[u8]) {
    for run in fuzzing::trace_bytes(data) {
        let envelopes: Vec<Envelope> = run.into_iter().map(|(env, _)| env).collect();
        assert_no_illegal_transition(&envelopes, "fuzz input");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn no_step_of_the_fuzz_generator_attempts_an_illegal_transition(
        data in proptest::collection::vec(any::<u8>(), 0..3_000)
    ) {
        replay_bytes(&data);
    }
}

#[test]
fn no_step_of_the_fuzz_corpus_attempts_an_illegal_transition() {
    for data in common::handle_corpus() {
        replay_bytes(&data);
    }
}

#[test]
fn no_step_of_a_simulated_scenario_attempts_an_illegal_transition() {
    // All but big-farm, whose millions of steps add scale, not kinds of move.
    for name in sim::BUILTIN.into_iter().filter(|n| *n != "big-farm") {
        assert_no_illegal_transition(&common::sim_log(name), name);
    }
}

/// The package edge no generator reaches: an operator blocks a package a sweeper is retrying.
/// Reclaiming the sweep lease puts it back to Blocked (its old reason), and the operator's block
/// then replaces the reason (Blocked -> Blocked), so no sweeper takes it again.
#[test]
fn an_operator_block_of_a_package_a_sweeper_retries_reblocks_it() {
    use common::*;
    let mut h = Harness::new();
    let (a, sweeper) = (drone("drone-a"), drone("sweeper-1"));
    let pkg = atom("dev-libs/icu-74.2");
    h.enqueue(0, vec![package("dev-libs/icu-74.2")]);
    let t = 1_000;
    h.register(t, spec("drone-a", 8, 16));
    let (_, _, lease) = assigns(&h.request(t, &a, 1)).pop().expect("work");
    h.finished(t, &a, &pkg, lease, failed(FailureClass::Build, "error"));
    let reason = |h: &Harness| match h.view().package(&pkg).map(|p| p.status) {
        Some(PackageStatus::Blocked { reason, .. }) => Some(reason),
        _ => None,
    };
    assert_eq!(
        reason(&h),
        Some(BlockReason::NoEligibleDrone),
        "its only drone failed it"
    );
    h.register(t, spec(sweeper.as_str(), 8, 16));
    let sweeps = assigns(&h.request(t, &sweeper, 1));
    assert_eq!(sweeps.len(), 1, "the sweeper retries the blocked package");
    let out = h.control(
        t,
        Control::Block {
            package: pkg.clone(),
            profile: None,
        },
    );
    assert_eq!(reclaims(&out).len(), 1, "the sweep lease is taken back");
    assert_eq!(reason(&h), Some(BlockReason::Operator));
    assert!(
        assigns(&h.request(t, &sweeper, 1)).is_empty(),
        "blocked by hand: no sweeper takes it"
    );
}

/// The drone edges no generator reaches: a goodbye said twice (Stopped -> Stopped) and a
/// drone that comes back after it (Stopped -> Online).
#[test]
fn a_drone_that_says_goodbye_twice_and_comes_back_moves_along_the_diagram() {
    use common::*;
    let mut h = Harness::new();
    let d = drone("drone-a");
    h.register(0, spec("drone-a", 8, 16));
    for at in [1_000, 2_000] {
        h.step(at, Input::Deregister { drone: d.clone() });
        assert_eq!(
            h.view().drone(&d).map(|v| v.status),
            Some(DroneStatus::Stopped)
        );
    }
    h.heartbeat(3_000, &d);
    assert_eq!(
        h.view().drone(&d).map(|v| v.status),
        Some(DroneStatus::Online)
    );
}
