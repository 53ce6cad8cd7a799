//! The brake engaged for a cause that is not a stale queue sets aside the drones that fail
//! with it and lets the others build everything (h22's finding 1: with 3 of 5 drones on full
//! disks, every package was held and the 2 healthy drones sat idle until an operator acted).

mod common;

use common::*;
use swarm_core::*;

const DISK_FULL: &str = "cannot write /var/tmp/portage: No space left on device";

/// Runs `rounds` rounds in which every drone asks for one package and finishes it: the
/// `broken` ones fail with `detail`, the others build. Returns every output.
fn run(
    h: &mut Harness,
    fleet: &[DroneName],
    broken: usize,
    detail: &str,
    rounds: u64,
) -> Vec<Output> {
    let mut all = Vec::new();
    let mut t = 1_000;
    for _ in 0..rounds {
        for (i, d) in fleet.iter().enumerate() {
            h.heartbeat(t, d);
            let Some((_, x, lease)) = assigns(&h.request(t, d, 1)).first().cloned() else {
                continue;
            };
            let outcome = if i < broken {
                failed(FailureClass::Infra, detail)
            } else {
                Outcome::Success
            };
            all.extend(h.finished(t + 500, d, &x, lease, outcome));
        }
        t += 1_000;
        all.extend(h.tick(t));
    }
    all
}

#[test]
fn drones_failing_with_a_shared_cause_are_set_aside_and_the_others_build_everything() {
    let mut h = Harness::new();
    let fleet: Vec<DroneName> = (0..5).map(|i| drone(&format!("d{i}"))).collect();
    for d in &fleet {
        h.register(0, spec(d.as_str(), 8, 16));
    }
    let n = 40;
    h.enqueue(
        1,
        (0..n)
            .map(|i| package(&format!("app-misc/good{i}-1")))
            .collect(),
    );
    let out = run(&mut h, &fleet, 3, DISK_FULL, 120);
    let engaged = events(&out)
        .find_map(|e| match e {
            Event::BrakeEngaged { reason, held } => Some((reason.clone(), *held)),
            _ => None,
        })
        .expect("the brake engages for the shared cause");
    assert!(engaged.0.contains("disk full"), "{engaged:?}");
    assert_eq!(engaged.1, 0, "no package is held: {engaged:?}");
    let built = events(&out)
        .filter(|e| matches!(e, Event::Built { .. }))
        .count();
    assert_eq!(built, n, "the healthy drones build every package");
    assert!(
        !events(&out).any(|e| matches!(e, Event::Grounded { .. } | Event::Blocked { .. })),
        "{}",
        h.describe(&out)
    );
    // The drones that failed with it get no work until the brake is released.
    let view = h.view();
    let fleet_view = view.drones();
    let set_aside: Vec<_> = fleet_view
        .iter()
        .filter(|d| d.no_work.as_deref().is_some_and(|w| w.contains("brake")))
        .map(|d| d.name.to_string())
        .collect();
    assert_eq!(set_aside, ["d0", "d1", "d2"]);
}

/// A stale queue is still the packages' fault: they are held, and no drone is set aside.
#[test]
fn a_stale_queue_still_holds_its_packages_and_sets_no_drone_aside() {
    let mut h = Harness::new();
    let fleet: Vec<DroneName> = (0..5).map(|i| drone(&format!("d{i}"))).collect();
    for d in &fleet {
        h.register(0, spec(d.as_str(), 8, 16));
    }
    h.enqueue(
        1,
        (0..10)
            .map(|i| package(&format!("app-misc/stale{i}-1")))
            .collect(),
    );
    let slot = "slot conflict on sys-apps/systemd-utils: emerge could not resolve";
    let out = run(&mut h, &fleet, 5, slot, 10);
    let held = events(&out)
        .find_map(|e| match e {
            Event::BrakeEngaged { held, .. } => Some(*held),
            _ => None,
        })
        .expect("engages");
    assert!(held >= 5, "held {held}");
    let view = h.view();
    assert!(view
        .drones()
        .iter()
        .all(|d| !d.no_work.as_deref().is_some_and(|w| w.contains("brake"))));
}
