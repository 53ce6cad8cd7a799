//! A report sent again after its reply was lost (h49 F2): answered as the first one was, with
//! nothing changed and nothing sent, while a late report of work taken back, or a v3 report
//! naming no lease, stays stale. Every step runs the full invariant checks.

mod common;

use common::*;
use swarm_core::*;

const MIN: u64 = 60_000;

/// A finished report of `lease` with `outcome`, as a drone that knows its epoch sends it.
fn finished(drone: &DroneName, package: &Atom, lease: LeaseId, outcome: Outcome) -> Input {
    Input::BuildFinished {
        report: Report {
            epoch: Some(Epoch(1)),
            ..report(drone, package, lease)
        },
        outcome,
        duration_ms: None,
    }
}

/// How the core took the report the last step handled.
fn answer(swarm: &Swarm) -> Option<Reported> {
    swarm.verdict().and_then(|v| v.report)
}

fn returned() -> Outcome {
    Outcome::Returned {
        reason: "stopping".into(),
    }
}

fn lease_of(out: &[Output], package: &Atom) -> LeaseId {
    assigns(out)
        .into_iter()
        .find(|(_, p, _)| p == package)
        .map(|(_, _, l)| l)
        .unwrap_or_else(|| panic!("{package} was not assigned: {out:?}"))
}

/// A harness where d1 holds the lease of `=dev-libs/a-1`, the one package queued, and d2 is a
/// name not yet registered.
fn one_package_leased() -> (Harness, DroneName, DroneName, Atom, LeaseId) {
    let mut h = Harness::new();
    let (d1, d2) = (drone("d1"), drone("d2"));
    let a = atom("=dev-libs/a-1");
    h.register(1_000, spec("d1", 8, 16));
    h.enqueue(2_000, vec![package("=dev-libs/a-1")]);
    let la = lease_of(&h.request(3_000, &d1, 1), &a);
    (h, d1, d2, a, la)
}

#[test]
fn a_report_sent_again_after_a_lost_reply_is_answered_as_the_first_was() {
    let mut h = Harness::new();
    let d = drone("d1");
    let (a, b) = (atom("=dev-libs/a-1"), atom("=dev-libs/b-1"));
    h.register(1_000, spec("d1", 8, 16));
    h.enqueue(
        2_000,
        vec![package("=dev-libs/a-1"), package("=dev-libs/b-1")],
    );
    let out = h.request(3_000, &d, 2);
    let (la, lb) = (lease_of(&out, &a), lease_of(&out, &b));

    let out = h.step(4_000, finished(&d, &a, la, Outcome::Success));
    assert!(events(&out).any(|e| matches!(e, Event::Built { .. })));
    let built = answer(h.swarm());
    assert_eq!(built, Some(Reported::Built));

    // The same report again; and as the server sends it when the binary has been published
    // since (no upload under a lease that ended): both repeat the first, change nothing and send
    // nothing (no revoke, no rejection in the history).
    let digest = h.swarm().digest();
    for outcome in [
        Outcome::Success,
        Outcome::Undelivered {
            detail: "missing_binary".into(),
        },
    ] {
        // At the first report's time: the clock is in the digest.
        let out = h.step(4_000, finished(&d, &a, la, outcome));
        assert_eq!(out, [], "a repeat sends nothing");
        let v = h.swarm().verdict().expect("a verdict");
        assert_eq!(v.report, Some(Reported::Repeated { built: true }));
        assert!(v.revokes.is_empty(), "nothing to stop: {v:?}");
        assert_eq!(h.swarm().digest(), digest);
    }

    // A failure's repeat says what the failure's reply said: not built.
    h.step(
        6_000,
        finished(&d, &b, lb, failed(FailureClass::Build, "boom")),
    );
    let out = h.step(
        6_500,
        finished(&d, &b, lb, failed(FailureClass::Build, "boom")),
    );
    assert_eq!(out, []);
    let v = answer(h.swarm());
    assert_eq!(v, Some(Reported::Repeated { built: false }));

    // A restart from a snapshot answers as the running core did.
    let mut restored = Swarm::restore(h.swarm().state().clone()).expect("restores");
    let env = Envelope {
        seq: Seq(1_000),
        at: Timestamp(7_000),
        input: finished(&d, &a, la, Outcome::Success),
    };
    assert_eq!(restored.handle(&env), []);
    let v = answer(&restored);
    assert_eq!(v, Some(Reported::Repeated { built: true }));
}

#[test]
fn a_late_report_of_work_taken_back_is_still_stale() {
    let (mut h, d1, d2, a, la) = one_package_leased();
    // d1 goes quiet past the offline timeout: its lease is taken back, and d2 builds the package.
    h.register(4_000, spec("d2", 8, 16));
    let mut t = 4_000;
    let offline = h.config().offline_timeout_ms;
    while t < 3_000 + offline + 2 * MIN {
        t += 10_000;
        h.heartbeat(t, &d2);
        h.tick(t);
    }
    let l2 = lease_of(&h.request(t, &d2, 1), &a);
    h.step(t + 1, finished(&d2, &a, l2, Outcome::Success));

    // d1's report of the lease it lost is stale, as before: it ended by no report of d1's.
    let out = h.step(t + 2, finished(&d1, &a, la, Outcome::Success));
    assert!(
        events(&out).any(|e| matches!(
            e,
            Event::InputRejected {
                reason: RejectReason::StaleReport { .. }
            }
        )),
        "{out:?}"
    );
    let v = answer(h.swarm());
    assert!(matches!(v, Some(Reported::Stale { .. })), "{v:?}");
    // And d2's report, repeated under its lease but by d1, is no repeat of d1's.
    h.step(t + 3, finished(&d1, &a, l2, Outcome::Success));
    let v = answer(h.swarm());
    assert!(matches!(v, Some(Reported::Stale { .. })), "{v:?}");
}

#[test]
fn a_v3_report_which_names_no_lease_is_never_taken_for_a_repeat() {
    // The same drone reported the atom before under another lease (a build without its binary),
    // and the package was built elsewhere since: a v3 report of it, naming no lease, may be
    // about anything, so it is stale, as v3 answered it.
    let (mut h, d1, d2, a, la) = one_package_leased();
    let undelivered = Outcome::Undelivered {
        detail: "missing_binary".into(),
    };
    h.step(4_000, finished(&d1, &a, la, undelivered.clone()));
    // Its own lease named: a repeat.
    assert_eq!(h.step(4_000, finished(&d1, &a, la, undelivered)), []);
    let v = answer(h.swarm());
    assert_eq!(v, Some(Reported::Repeated { built: false }));
    h.register(5_000, spec("d2", 8, 16));
    let l2 = lease_of(&h.request(5_000, &d2, 1), &a);
    h.step(6_000, finished(&d2, &a, l2, Outcome::Success));
    let v3 = Input::BuildFinished {
        report: Report {
            drone: d1.clone(),
            package: a.clone(),
            lease: None,
            epoch: None,
        },
        outcome: Outcome::Success,
        duration_ms: None,
    };
    let out = h.step(7_000, v3);
    assert!(
        revokes(&out)
            .iter()
            .any(|(d, _, p)| *d == d1 && p.as_ref() == Some(&a)),
        "{out:?}"
    );
    let v = answer(h.swarm());
    assert_eq!(
        v,
        Some(Reported::Stale {
            revoke: RevokeReason::CompletedElsewhere,
            holder: None
        })
    );
}

#[test]
fn a_heartbeat_that_still_lists_a_lease_its_report_ended_is_not_told_to_stop_it() {
    // h51 F1: between a lost reply and the report sent again, the agent's heartbeat still lists
    // the lease (its report's answer not heard). It was answered with a revoke and `stop_work`
    // ("work already completed elsewhere"), which ended the agent's retry and dropped the spool
    // entry.
    let (mut h, d1, _, a, la) = one_package_leased();
    h.step(4_000, finished(&d1, &a, la, Outcome::Success));
    let beat = Input::Heartbeat(Heartbeat {
        drone: d1.clone(),
        leases: Some(vec![la]),
        started: vec![la],
        current_task: Some(a.clone()),
        ..Heartbeat::default()
    });
    let out = h.step(5_000, beat);
    assert!(revokes(&out).is_empty(), "{out:?}");
    let v = h.swarm().verdict().expect("a verdict");
    assert!(v.revokes.is_empty() && v.stop_work().is_none(), "{v:?}");
    h.step(5_500, finished(&d1, &a, la, Outcome::Success));
    let v = answer(h.swarm());
    assert_eq!(v, Some(Reported::Repeated { built: true }));
    // A lease it never held is still foreign.
    let beat = Input::Heartbeat(Heartbeat {
        drone: d1.clone(),
        leases: Some(vec![LeaseId(la.0 + 100)]),
        ..Heartbeat::default()
    });
    let out = h.step(6_000, beat);
    assert!(
        revokes(&out)
            .iter()
            .any(|(d, l, _)| *d == d1 && *l == Some(LeaseId(la.0 + 100))),
        "{out:?}"
    );
}

#[test]
fn a_repeat_is_the_same_lease_atom_and_kind_of_report_whatever_the_epoch() {
    let (mut h, d1, _, a, la) = one_package_leased();
    let returned = returned();
    h.step(4_000, finished(&d1, &a, la, returned.clone()));
    // A success after the return is late, not a repeat: the build is not counted.
    let out = h.step(4_100, finished(&d1, &a, la, Outcome::Success));
    assert!(!revokes(&out).is_empty(), "{out:?}");
    let v = answer(h.swarm());
    assert!(matches!(v, Some(Reported::Stale { .. })), "{v:?}");
    // Another atom under the lease: stale too.
    let b = atom("=dev-libs/b-1");
    h.step(4_200, finished(&d1, &b, la, returned.clone()));
    let v = answer(h.swarm());
    assert!(matches!(v, Some(Reported::Stale { .. })), "{v:?}");
    // The drone comes back as a new machine (a new epoch); its old agent's return, sent again
    // with the old epoch, is still the one recorded.
    let mut new_machine = spec("d1", 8, 16);
    new_machine.machine_id = Some("d1-rebuilt".into());
    h.register(5_000, new_machine);
    assert_eq!(h.view().drone(&d1).map(|d| d.epoch), Some(Epoch(2)));
    assert_eq!(h.step(5_100, finished(&d1, &a, la, returned)), []);
    let v = answer(h.swarm());
    assert_eq!(v, Some(Reported::Repeated { built: false }));
}

#[test]
fn a_start_that_arrives_after_the_drones_own_report_changes_nothing_and_stops_nothing() {
    // h52 F1: a start call retried and reordered behind the report. Fenced as stale, it left a
    // revoke of the atom that heartbeats listing the lease kept repeating, which made the agent
    // drop that report's retry.
    let (mut h, d1, _, a, la) = one_package_leased();
    let returned = returned();
    h.step(4_000, finished(&d1, &a, la, returned));
    let start = Input::BuildStarted(Report {
        epoch: Some(Epoch(1)),
        ..report(&d1, &a, la)
    });
    assert_eq!(h.step(4_100, start), []);
    let v = h.swarm().verdict().expect("a verdict");
    assert_eq!(v.report, Some(Reported::Repeated { built: false }));
    let beat = Input::Heartbeat(Heartbeat {
        drone: d1.clone(),
        leases: Some(vec![la]),
        started: vec![la],
        ..Heartbeat::default()
    });
    h.step(4_200, beat);
    let v = h.swarm().verdict().expect("a verdict");
    assert!(v.revokes.is_empty(), "{v:?}");
    // A start of a lease it never held is stale, as ever.
    let other = Input::BuildStarted(report(&d1, &a, LeaseId(la.0 + 100)));
    let out = h.step(4_300, other);
    assert!(!revokes(&out).is_empty(), "{out:?}");
}
