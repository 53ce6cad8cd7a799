//! `Control::Retry`: one failed package made eligible now. A package waiting
//! out its retry backoff is handed to the next free drone (even the one it
//! failed on: its failures are forgotten), a blocked one is unblocked, and a
//! package with nothing to retry is refused without a change. Every step runs
//! the full invariant checks.

mod common;

use common::*;
use proptest::prelude::*;
use swarm_core::*;

const SEC: u64 = 1_000;

fn rejected(out: &[Output]) -> Option<&RejectReason> {
    events(out).find_map(|e| match e {
        Event::InputRejected { reason } => Some(reason),
        _ => None,
    })
}

fn applied(out: &[Output]) -> Option<&str> {
    events(out).find_map(|e| match e {
        Event::ControlApplied { action, summary } if action == "retry" => Some(summary.as_str()),
        _ => None,
    })
}

/// Drone `a` fails `x` once (`b` could build it): `x` waits out its backoff.
fn failed_once() -> (Harness, DroneName, Atom) {
    let mut h = Harness::new();
    let a = drone("a");
    let x = atom("dev-libs/x-1.0");
    h.register(0, spec("a", 8, 16));
    h.register(0, spec("b", 8, 16));
    h.enqueue(1, vec![package("dev-libs/x-1.0")]);
    let (_, _, lease) = assigns(&h.request(2, &a, 1))[0].clone();
    h.started(3, &a, &x, lease);
    h.finished(4, &a, &x, lease, failed(FailureClass::Build, "compile"));
    (h, a, x)
}

#[test]
fn a_package_in_backoff_is_built_now_on_the_drone_it_failed_on() {
    let (mut h, a, x) = failed_once();
    let p = h.view().package(&x).expect("queued");
    let Some(wait_until) = (match p.status {
        PackageStatus::Queued { retry_at } => retry_at,
        _ => None,
    }) else {
        panic!("not in backoff: {p:?}")
    };
    assert!(wait_until.as_ms() > 10 * SEC, "{p:?}");
    assert_eq!(p.attempts, 1);
    assert!(
        assigns(&h.request(5 * SEC, &a, 1)).is_empty(),
        "no retry before the backoff ends"
    );

    let out = h.control(
        6 * SEC,
        Control::Retry {
            package: x.clone(),
            profile: None,
        },
    );
    let summary = applied(&out).unwrap_or_else(|| panic!("{out:?}"));
    assert!(summary.contains("backoff left"), "{summary}");
    let p = h.view().package(&x).expect("queued");
    assert_eq!(p.status, PackageStatus::Queued { retry_at: None });
    assert_eq!(p.attempts, 0, "its failed attempts are forgotten");
    let got = assigns(&h.request(7 * SEC, &a, 1));
    assert_eq!(got.len(), 1, "built now, by the drone it failed on");
    assert!(7 * SEC < wait_until.as_ms());
}

#[test]
fn a_blocked_package_is_unblocked_with_its_failures_forgotten() {
    let (mut h, a, x) = failed_once();
    h.control(
        5 * SEC,
        Control::Block {
            package: x.clone(),
            profile: None,
        },
    );
    let out = h.control(
        6 * SEC,
        Control::Retry {
            package: x.clone(),
            profile: None,
        },
    );
    assert!(applied(&out).is_some(), "{out:?}");
    assert!(
        events(&out)
            .any(|e| matches!(e, Event::Unblocked { package, operator: true } if *package == x)),
        "{out:?}"
    );
    let p = h.view().package(&x).expect("queued");
    assert_eq!(
        (p.status, p.attempts),
        (PackageStatus::Queued { retry_at: None }, 0)
    );
    assert_eq!(assigns(&h.request(7 * SEC, &a, 1)).len(), 1);
}

/// A masked package did not fail: `retry` (the Queue tab's "Retry now")
/// leaves it blocked, as `retry_failures` does, instead of handing it to a
/// drone that cannot build it. Before this check it was unblocked and
/// assigned (found by the breaker).
#[test]
fn a_masked_package_is_not_retried() {
    let mut h = Harness::new();
    let a = drone("a");
    let x = atom("dev-libs/x-1.0");
    h.register(0, spec("a", 8, 16));
    h.enqueue(1, vec![package("dev-libs/x-1.0")]);
    let (_, _, lease) = assigns(&h.request(2, &a, 1))[0].clone();
    h.started(3, &a, &x, lease);
    h.finished(4, &a, &x, lease, Outcome::Masked);
    let before = h.view().package(&x).expect("known").status;
    assert!(
        matches!(
            before,
            PackageStatus::Blocked {
                reason: BlockReason::Masked,
                ..
            }
        ),
        "{before:?}"
    );
    let out = h.control(
        5 * SEC,
        Control::Retry {
            package: x.clone(),
            profile: None,
        },
    );
    match rejected(&out) {
        Some(RejectReason::IllegalControl { detail }) => {
            assert!(detail.contains("masked"), "{detail}")
        }
        other => panic!("not refused: {other:?} {out:?}"),
    }
    assert_eq!(h.view().package(&x).expect("known").status, before);
    assert!(assigns(&h.request(6 * SEC, &a, 1)).is_empty());
    // retry_failures leaves it too; an explicit unblock is the way.
    h.control(7 * SEC, Control::RetryFailures);
    assert_eq!(h.view().package(&x).expect("known").status, before);
    h.control(
        8 * SEC,
        Control::Unblock {
            package: Some(x.clone()),
            profile: None,
        },
    );
    assert_eq!(assigns(&h.request(9 * SEC, &a, 1)).len(), 1);
}

#[test]
fn nothing_to_retry_is_refused_and_changes_nothing() {
    let mut h = Harness::new();
    let a = drone("a");
    h.register(0, spec("a", 8, 16));
    h.enqueue(
        1,
        vec![package("dev-libs/x-1.0"), package("dev-libs/never-1.0")],
    );
    let x = atom("dev-libs/x-1.0");
    let never = atom("dev-libs/never-1.0");
    let out = h.control(
        2,
        Control::Retry {
            package: never.clone(),
            profile: None,
        },
    );
    match rejected(&out) {
        Some(RejectReason::IllegalControl { detail }) => {
            assert!(detail.contains("has not failed"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    let unknown = atom("dev-libs/absent-1");
    let out = h.control(
        3,
        Control::Retry {
            package: unknown,
            profile: None,
        },
    );
    assert!(
        matches!(rejected(&out), Some(RejectReason::UnknownPackage { .. })),
        "{out:?}"
    );
    // Assigned, then built: refused, the lease untouched.
    let leases = assigns(&h.request(4, &a, 2));
    let (_, _, lease) = leases.iter().find(|l| l.1 == x).cloned().expect("x");
    let out = h.control(
        5,
        Control::Retry {
            package: x.clone(),
            profile: None,
        },
    );
    match rejected(&out) {
        Some(RejectReason::IllegalControl { detail }) => {
            assert!(detail.contains("assigned"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    assert!(h.view().lease(lease).is_some(), "the lease stays");
    h.started(6, &a, &x, lease);
    h.finished(7, &a, &x, lease, Outcome::Success);
    let out = h.control(
        8,
        Control::Retry {
            package: x.clone(),
            profile: None,
        },
    );
    match rejected(&out) {
        Some(RejectReason::IllegalControl { detail }) => {
            assert!(detail.contains("already built"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever the build failures (how many, on which drones, blocked by
    /// the core or by hand or not at all), a retry leaves the package queued with no
    /// backoff and no attempts, and the next request of ANY drone (also one
    /// it failed on) gets it.
    #[test]
    fn after_a_retry_any_drone_gets_the_package(
        fails in prop::collection::vec(0usize..3, 1..6),
        block in any::<bool>(),
        asker in 0usize..3,
    ) {
        let names = ["a", "b", "c"];
        let mut h = Harness::new();
        for n in names {
            h.register(0, spec(n, 8, 16));
        }
        let x = atom("dev-libs/x-1.0");
        h.enqueue(1, vec![package("dev-libs/x-1.0")]);
        let mut t = 2;
        for d in fails {
            // Each failure is on a drone that can take it now (a retry lifts the wait).
            if h.view().package(&x).map(|p| p.status) != Some(PackageStatus::Queued { retry_at: None }) {
                let out = h.control(t, Control::Retry { package: x.clone(), profile: None });
                prop_assert!(applied(&out).is_some(), "{out:?}");
                t += 1;
            }
            let d = drone(names[d]);
            let got = assigns(&h.request(t, &d, 1));
            prop_assert_eq!(got.len(), 1, "{:?}", h.view().package(&x));
            let lease = got[0].2;
            h.started(t + 1, &d, &x, lease);
            h.finished(t + 2, &d, &x, lease, failed(FailureClass::Build, "compile"));
            t += 3;
        }
        if block && !matches!(h.view().package(&x).map(|p| p.status), Some(PackageStatus::Blocked { .. })) {
            h.control(t, Control::Block { package: x.clone(), profile: None });
            t += 1;
        }
        let out = h.control(t, Control::Retry { package: x.clone(), profile: None });
        prop_assert!(applied(&out).is_some(), "{out:?}");
        let p = h.view().package(&x).expect("queued");
        prop_assert_eq!((p.status, p.attempts), (PackageStatus::Queued { retry_at: None }, 0));
        let got = assigns(&h.request(t + 1, &drone(names[asker]), 1));
        prop_assert_eq!(got.len(), 1);
    }
}

/// The missing-binary rule (issue 10: it lived in the server, where a missing upload used up the
/// package's attempts and its 24 h avoidance of the drone). A build whose binary never arrived is
/// not the package's fault: no attempt, no backoff, no avoidance window. It goes straight back
/// to the queue (the same drone is only a last choice); the drone gets an upload hold at the
/// limit, never a grounding.
#[test]
fn a_build_whose_binary_never_arrived_costs_the_package_no_attempt() {
    let undelivered = || Outcome::Undelivered {
        detail: "missing_binary: nothing under this lease".into(),
    };
    let mut h = Harness::new();
    let a = drone("a");
    let b = drone("b");
    let x = atom("dev-libs/x-1.0");
    h.register(0, spec("a", 8, 16));
    h.register(0, spec("b", 8, 16));
    h.enqueue(1, vec![package("dev-libs/x-1.0")]);
    let (_, _, lease) = assigns(&h.request(2, &a, 1))[0].clone();
    h.finished(3, &a, &x, lease, undelivered());
    let (_, _, lease) = assigns(&h.request(5, &b, 1))[0].clone();
    h.finished(
        6,
        &b,
        &x,
        lease,
        Outcome::Returned {
            reason: "test".into(),
        },
    );

    // Only `a` asks from now on: it gets the package again at once, each time.
    let limit = Config::default().upload_failure_limit;
    let mut t = 10;
    let mut outs = Vec::new();
    for n in 2..=limit {
        let got = assigns(&h.request(t, &a, 1));
        assert_eq!(got.len(), 1, "build {n}: no backoff, no avoidance window");
        let (_, _, lease) = got[0].clone();
        outs.extend(h.finished(t + 1, &a, &x, lease, undelivered()));
        let p = h.view().package(&x).expect("queued");
        assert_eq!(p.attempts, 0, "build {n}: an attempt was used");
        assert_eq!(p.status, PackageStatus::Queued { retry_at: None });
        t += 10;
    }
    // Its repeats on `a` alone count against `a` (two, under the limit); no grounding.
    assert!(
        !events(&outs).any(|e| matches!(e, Event::UploadHold { .. } | Event::Grounded { .. })),
        "{outs:?}"
    );
}

/// Whose fault an undelivered build was shows when another drone delivers the package: a
/// drone whose builds of three packages never arrived, each then delivered by another drone,
/// is held (its uploads fail on its side); it is never grounded for it.
#[test]
fn a_drone_whose_packages_other_drones_deliver_is_held_after_the_limit() {
    let undelivered = || Outcome::UploadFailed {
        detail: "cannot read spooled artifact: input/output error".into(),
    };
    let (mut h, a, b, names) = two_drones_and_a_limit_of_packages();
    let mut t = 10;
    let mut outs = Vec::new();
    for _ in 0..names.len() {
        let (_, x, lease) = assigns(&h.request(t, &a, 1))[0].clone();
        outs.extend(h.finished(t + 1, &a, &x, lease, undelivered()));
        assert!(
            !events(&outs).any(|e| matches!(e, Event::UploadHold { .. })),
            "not yet: nothing says whose fault it is {outs:?}"
        );
        let (_, got, lease) = assigns(&h.request(t + 2, &b, 1))[0].clone();
        assert_eq!(got, x, "another drone takes it at once");
        outs = h.finished(t + 3, &b, &x, lease, Outcome::Success);
        t += 10;
    }
    assert!(upload_held(&outs, &a), "{outs:?}");
    assert!(
        !events(&outs).any(|e| matches!(e, Event::Grounded { .. })),
        "{outs:?}"
    );
    assert!(assigns(&h.request(t, &a, 1)).is_empty(), "held: no work");
}

/// A package the server refuses from every drone (too big, not valid, another slot than the
/// queue says) holds none of them (h22's finding 2: three such packages held a three-drone
/// fleet for 30 minutes at a time, and the good packages behind them waited); it is blocked
/// after `max_attempts` builds, and the fleet builds the rest meanwhile.
#[test]
fn packages_no_drone_can_deliver_hold_no_drone_and_the_rest_is_built() {
    let refused = || Outcome::UploadFailed {
        detail: "HTTP 422: not a valid binary package".into(),
    };
    let mut h = Harness::new();
    let fleet: Vec<DroneName> = ["a", "b", "c"].iter().map(|n| drone(n)).collect();
    for d in &fleet {
        h.register(0, spec(d.as_str(), 8, 16));
    }
    let mut specs: Vec<PackageSpec> = (0..3)
        .map(|i| {
            let mut p = package(&format!("dev-libs/bad{i}-1.0"));
            p.priority = 10;
            p
        })
        .collect();
    specs.extend((0..6).map(|i| package(&format!("dev-libs/good{i}-1.0"))));
    h.enqueue(1, specs);
    let mut t = 10;
    let mut built = 0;
    let mut all = Vec::new();
    for _ in 0..40 {
        for d in &fleet {
            let Some((_, x, lease)) = assigns(&h.request(t, d, 1)).first().cloned() else {
                continue;
            };
            let outcome = if x.as_str().contains("bad") {
                refused()
            } else {
                built += 1;
                Outcome::Success
            };
            all.extend(h.finished(t + 1, d, &x, lease, outcome));
            t += 10;
        }
    }
    assert!(
        !events(&all).any(|e| matches!(e, Event::UploadHold { .. } | Event::Grounded { .. })),
        "{all:?}"
    );
    assert_eq!(built, 6, "every good package is built");
    let blocked = events(&all)
        .filter(|e| {
            matches!(
                e,
                Event::Blocked {
                    reason: BlockReason::Undeliverable { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(
        blocked, 3,
        "each bad package is blocked, after max_attempts builds"
    );
}

/// ... and its own bound: `max_attempts` builds for nothing block it, as `Undeliverable`.
#[test]
fn a_package_whose_binary_never_arrives_blocks_after_max_attempts_builds() {
    let mut h = Harness::new();
    let x = atom("dev-libs/x-1.0");
    let names: Vec<DroneName> = (0..8).map(|i| drone(&format!("d{i}"))).collect();
    for n in &names {
        h.register(0, spec(n.as_str(), 8, 16));
    }
    h.enqueue(1, vec![package("dev-libs/x-1.0")]);
    let max = Config::default().max_attempts;
    let mut last = Vec::new();
    for (i, n) in names.iter().take(max as usize).enumerate() {
        let t = 10 + 10 * i as u64;
        let (_, _, lease) = assigns(&h.request(t, n, 1))[0].clone();
        last = h.finished(
            t + 1,
            n,
            &x,
            lease,
            Outcome::UploadFailed {
                detail: String::new(),
            },
        );
    }
    assert!(
        events(&last).any(|e| matches!(
            e,
            Event::Blocked { reason: BlockReason::Undeliverable { times }, .. } if *times == max
        )),
        "{last:?}"
    );
    let p = h.view().package(&x).expect("known");
    assert_eq!(p.attempts, 0);
}

/// A fast broken drone whose uploads all fail, while the healthy drones are busy: it takes
/// its packages back (the others being busy) and would use up their builds alone. A package
/// failed again on the same drone, and on no other, counts against that drone, so it is held
/// before any package is blocked (h24: 10 of 12 packages blocked in 5 s, the drone never
/// held).
#[test]
fn a_broken_drone_that_takes_its_packages_back_is_held_before_it_blocks_them() {
    let refused = || Outcome::UploadFailed {
        detail: "HTTP 422: not a valid binary package".into(),
    };
    let mut h = Harness::new();
    let broken = drone("broken");
    h.register(0, spec("broken", 8, 16));
    h.register(0, spec("busy", 8, 16));
    h.enqueue(
        1,
        (0..4)
            .map(|i| package(&format!("dev-libs/p{i}-1.0")))
            .collect(),
    );
    let mut all = Vec::new();
    let mut t = 10;
    for _ in 0..30 {
        let Some((_, x, lease)) = assigns(&h.request(t, &broken, 1)).first().cloned() else {
            break;
        };
        all.extend(h.finished(t + 1, &broken, &x, lease, refused()));
        t += 10;
    }
    assert!(upload_held(&all, &broken), "{all:?}");
    assert!(
        !events(&all).any(|e| matches!(e, Event::Blocked { .. })),
        "no package is blocked by one drone: {all:?}"
    );
}

/// An unblock forgets a package's failures but not which drones did not deliver it: a
/// delivery after it still counts against them (h24: the strikes were lost at every unblock).
#[test]
fn a_delivery_after_an_unblock_still_counts_against_the_drones_that_did_not_deliver() {
    let (mut h, a, b, names) = two_drones_and_a_limit_of_packages();
    let mut t = 10;
    let mut outs = Vec::new();
    for n in &names {
        let x = atom(n);
        let (_, got, lease) = assigns(&h.request(t, &a, 1))[0].clone();
        assert_eq!(got, x);
        h.finished(
            t + 1,
            &a,
            &x,
            lease,
            Outcome::UploadFailed {
                detail: String::new(),
            },
        );
        h.control(
            t + 2,
            Control::Block {
                package: x.clone(),
                profile: None,
            },
        );
        h.control(
            t + 2,
            Control::Unblock {
                package: Some(x.clone()),
                profile: None,
            },
        );
        let (_, got, lease) = assigns(&h.request(t + 3, &b, 1))[0].clone();
        assert_eq!(got, x);
        outs = h.finished(t + 4, &b, &x, lease, Outcome::Success);
        t += 10;
    }
    assert!(upload_held(&outs, &a), "{outs:?}");
}

/// Whether `outs` put `d` on an upload hold.
fn upload_held(outs: &[Output], d: &DroneName) -> bool {
    events(outs).any(|e| matches!(e, Event::UploadHold { drone, .. } if drone == d))
}

/// Drones `a` and `b`, and as many queued packages as the upload-failure limit.
fn two_drones_and_a_limit_of_packages() -> (Harness, DroneName, DroneName, Vec<String>) {
    let mut h = Harness::new();
    h.register(0, spec("a", 8, 16));
    h.register(0, spec("b", 8, 16));
    let limit = Config::default().upload_failure_limit;
    let names: Vec<String> = (0..limit).map(|i| format!("dev-libs/p{i}-1.0")).collect();
    h.enqueue(1, names.iter().map(|n| package(n)).collect());
    (h, drone("a"), drone("b"), names)
}
