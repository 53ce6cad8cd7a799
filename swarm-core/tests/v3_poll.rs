//! The v3 poll rule (issue 10: it lived in the server's writer, where no property reached it).
//! A v3 drone never says its free slots: it builds one package at a time and polls until it
//! reports it. So a poll from a drone holding a lease is answered with that lease again
//! (`Command::Resend`), never a second lease; a poll from a drone holding none gets at most
//! one new lease. Checked after every step of random polls, reports, heartbeats and time,
//! with the full invariant checks and the history monitor of the harness.

mod common;

use common::*;
use proptest::prelude::*;
use swarm_core::*;

const SEC: u64 = 1_000;

#[derive(Clone, Debug)]
enum Step {
    Poll(usize),
    Finish(usize, u8),
    Heartbeat(usize),
    Wait(u64),
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..4usize).prop_map(Step::Poll),
        3 => (0..4usize, 0..4u8).prop_map(|(d, o)| Step::Finish(d, o)),
        2 => (0..4usize).prop_map(Step::Heartbeat),
        1 => (SEC..5 * 60 * SEC).prop_map(Step::Wait),
    ]
}

fn outcome(o: u8) -> Outcome {
    match o {
        0 => Outcome::Success,
        1 => failed(FailureClass::Build, "compile error"),
        2 => Outcome::Undelivered {
            detail: "missing_binary".into(),
        },
        _ => Outcome::Returned {
            reason: "shutdown".into(),
        },
    }
}

fn poll(h: &mut Harness, t: u64, d: &DroneName) -> Vec<Output> {
    h.step(
        t,
        Input::RequestWork {
            drone: d.clone(),
            free_slots: None,
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn a_v3_poll_gets_what_the_drone_holds_or_at_most_one_new_lease(
        drones in 1..=4usize,
        packages in 1..=12usize,
        steps in prop::collection::vec(step(), 1..=120),
    ) {
        let mut h = Harness::new();
        let names: Vec<DroneName> = (0..drones).map(|i| drone(&format!("v3-{i}"))).collect();
        for n in &names {
            h.register(0, spec(n.as_str(), 8, 16));
        }
        h.enqueue(1, (0..packages).map(|i| package(&format!("=dev-libs/p{i}-1.0"))).collect());
        let mut t = 2;
        for s in steps {
            t += 10;
            match s {
                Step::Poll(i) => {
                    let d = &names[i % drones];
                    let held = h.view().leases_of(d);
                    let out = poll(&mut h, t, d);
                    let resent: Vec<(Atom, LeaseId)> = commands(&out)
                        .filter_map(|c| match c {
                            Command::Resend { drone, package, lease, .. } if drone == d => {
                                Some((package.clone(), *lease))
                            }
                            _ => None,
                        })
                        .collect();
                    let new = assigns(&out);
                    match held.first() {
                        Some(l) => {
                            prop_assert_eq!(resent, vec![(l.package.clone(), l.lease)]);
                            prop_assert!(new.is_empty(), "a second lease for {}: {:?}", d, new);
                        }
                        None => {
                            prop_assert!(resent.is_empty(), "resent what it does not hold: {:?}", resent);
                            prop_assert!(new.len() <= 1, "{} new leases for one v3 poll", new.len());
                        }
                    }
                    prop_assert!(h.view().leases_of(d).len() <= 1);
                }
                Step::Finish(i, o) => {
                    let d = &names[i % drones];
                    if let Some(l) = h.view().leases_of(d).first().cloned() {
                        h.finished(t, d, &l.package, l.lease, outcome(o));
                    }
                }
                Step::Heartbeat(i) => {
                    h.heartbeat(t, &names[i % drones]);
                }
                Step::Wait(dt) => {
                    t += dt;
                    h.tick(t);
                }
            }
        }
    }
}

/// The rule as one story, and that it is the core's: the same drone asking with its free
/// slots (an enrolled agent) gets a second lease.
#[test]
fn a_v3_drone_polling_while_it_holds_a_lease_is_told_that_lease_again() {
    let mut h = Harness::new();
    let d = drone("v3");
    h.register(0, spec("v3", 8, 16));
    h.enqueue(
        1,
        vec![package("=dev-libs/a-1.0"), package("=dev-libs/b-1.0")],
    );
    let first = assigns(&poll(&mut h, 2, &d));
    assert_eq!(first.len(), 1, "one new lease for a poll holding nothing");
    let (_, held, lease) = first[0].clone();
    let again = poll(&mut h, 3, &d);
    assert!(assigns(&again).is_empty(), "{again:?}");
    assert!(
        commands(&again).any(|c| matches!(
            c,
            Command::Resend { package, lease: l, .. } if *package == held && *l == lease
        )),
        "{again:?}"
    );
    assert_eq!(assigns(&h.request(4, &d, 1)).len(), 1);
}
