//! Targeted cases for breaks that the generated schedules reach too rarely
//! (found by breaking the code on purpose and seeing no property fail).

mod common;

use common::*;
use swarm_core::*;

const MIN: u64 = 60_000;

/// Invariant 5: grounding reclaims not-started work only; a build that has
/// started on the grounded drone keeps running.
#[test]
fn grounding_keeps_the_started_build_of_the_grounded_drone() {
    let mut h = Harness::new();
    let d = drone("d0");
    h.register(0, spec("d0", 8, 16));
    let pkgs: Vec<PackageSpec> = (0..20)
        .map(|i| package(&format!("dev-libs/p{i}-1.0")))
        .collect();
    h.enqueue(1, pkgs);
    let out = h.request(2, &d, 1);
    let (_, long, long_lease) = assigns(&out)[0].clone();
    h.started(3, &d, &long, long_lease);
    let mut t = 10;
    let mut grounded = false;
    for _ in 0..20 {
        t += 1_000;
        h.heartbeat(t, &d);
        let out = h.request(t, &d, 1);
        let Some((_, pkg, lease)) = assigns(&out).first().cloned() else {
            continue;
        };
        h.started(t + 1, &d, &pkg, lease);
        let out = h.finished(
            t + 2,
            &d,
            &pkg,
            lease,
            failed(FailureClass::Infra, "sandbox"),
        );
        if events(&out).any(|e| matches!(e, Event::Grounded { .. })) {
            grounded = true;
            assert!(
                reclaims(&out).iter().all(|r| r.lease != long_lease),
                "grounding took the started build: {out:?}"
            );
            break;
        }
    }
    assert!(grounded, "eight infra failures must ground the drone");
    let held: Vec<LeaseId> = h.view().leases_of(&d).iter().map(|l| l.lease).collect();
    assert_eq!(
        held,
        vec![long_lease],
        "the started build stays with its drone"
    );
}

/// Promise (b) with the whole fleet silent at once: the brake never stops an
/// offline reclaim (a power cut of every drone must not strand work).
#[test]
fn a_fleet_wide_outage_still_reclaims_every_offline_drone() {
    let mut h = Harness::new();
    let names: Vec<DroneName> = (0..5).map(|i| drone(&format!("d{i}"))).collect();
    for (i, n) in names.iter().enumerate() {
        h.register(i as u64, spec(n.as_str(), 4, 16));
    }
    let pkgs: Vec<PackageSpec> = (0..5)
        .map(|i| package(&format!("dev-libs/p{i}-1.0")))
        .collect();
    h.enqueue(10, pkgs);
    for n in &names {
        assert_eq!(assigns(&h.request(20, n, 1)).len(), 1);
    }
    // Everyone goes silent; the adapter keeps ticking at poll_timeout.
    let mut t = 20;
    while t < 16 * MIN {
        t = h
            .swarm()
            .poll_timeout()
            .map_or(t + MIN, |p| p.as_ms().max(t + 1))
            .min(16 * MIN);
        h.tick(t);
    }
    for n in &names {
        assert!(
            h.view().leases_of(n).is_empty(),
            "{n} still holds work after 16 silent minutes"
        );
    }
    assert_eq!(h.view().counts().queued, 5);
}

/// Invariant 9: a dependency queued while its dependent is already building
/// holds back nothing already running, but a new dependent waits for it.
#[test]
fn a_dependent_queued_behind_an_assigned_dependency_waits() {
    let mut h = Harness::new();
    let (a, b) = (drone("a"), drone("b"));
    h.register(0, spec("a", 4, 16));
    h.register(0, spec("b", 4, 16));
    h.enqueue(1, vec![package("dev-libs/icu-74.2")]);
    let (_, icu, lease) = assigns(&h.request(2, &a, 1))[0].clone();
    h.enqueue(
        3,
        vec![package_after("dev-qt/qtbase-6.7.2", &["dev-libs/icu-74.2"])],
    );
    assert!(
        assigns(&h.request(4, &b, 1)).is_empty(),
        "qtbase must wait for icu"
    );
    assert!(h
        .view()
        .explain(&atom("dev-qt/qtbase-6.7.2"))
        .contains("dependency =dev-libs/icu-74.2 not built"));
    h.finished(5, &a, &icu, lease, Outcome::Success);
    let out = h.request(6, &b, 1);
    assert_eq!(assigns(&out)[0].1, atom("dev-qt/qtbase-6.7.2"));
}
