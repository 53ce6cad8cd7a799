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
    let n = 40;
    let (mut h, fleet) = five_drones_and(0..n, "app-misc/good");
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
    assert_eq!(built, n as usize, "the healthy drones build every package");
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
    let (mut h, fleet) = five_drones_and(0..10, "app-misc/stale");
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

/// A healthy drone with one failure of the same cause after the brake engaged is not set
/// aside (h24: it was, until an operator acted); and once the operator releases the brake,
/// one more such failure does not engage it again for the old ones.
#[test]
fn one_transient_failure_sets_no_healthy_drone_aside_and_a_release_starts_over() {
    let (mut h, fleet) = five_drones_and(0..40, "app-misc/good");
    let fetch = "fetch failed: Couldn't download 'x.tar.xz'";
    let out = run(&mut h, &fleet, 3, fetch, 4);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })));
    // d4 fails once with the same cause, then builds on.
    let t = 6_000;
    let (_, x, lease) = assigns(&h.request(t, &fleet[4], 1))[0].clone();
    h.finished(
        t + 1,
        &fleet[4],
        &x,
        lease,
        failed(FailureClass::Infra, fetch),
    );
    let got = assigns(&h.request(t + 2, &fleet[4], 1));
    assert_eq!(got.len(), 1, "d4 still takes work: {}", h.describe(&[]));
    let (_, x, lease) = got[0].clone();
    h.finished(t + 3, &fleet[4], &x, lease, Outcome::Success);
    // Released by the operator once fixed: one new failure does not engage it again.
    let out = h.control(t + 4, Control::ReleaseBrake);
    assert!(events(&out).any(|e| matches!(e, Event::BrakeReleased { .. })));
    let (_, x, lease) = assigns(&h.request(t + 5, &fleet[0], 1))[0].clone();
    let out = h.finished(
        t + 6,
        &fleet[0],
        &x,
        lease,
        failed(FailureClass::Infra, fetch),
    );
    assert!(
        !events(&out).any(|e| matches!(e, Event::BrakeEngaged { .. })),
        "{}",
        h.describe(&out)
    );
    let view = h.view();
    assert!(view.drones().iter().all(|d| d.no_work.is_none()));
}

/// Five registered drones, `d0`..`d4`, and packages `<prefix>{i}-1` queued for `range`.
fn five_drones_and(range: std::ops::Range<u32>, prefix: &str) -> (Harness, Vec<DroneName>) {
    let mut h = Harness::new();
    let fleet: Vec<DroneName> = (0..5).map(|i| drone(&format!("d{i}"))).collect();
    for d in &fleet {
        h.register(0, spec(d.as_str(), 8, 16));
    }
    h.enqueue(
        1,
        range.map(|i| package(&format!("{prefix}{i}-1"))).collect(),
    );
    (h, fleet)
}
