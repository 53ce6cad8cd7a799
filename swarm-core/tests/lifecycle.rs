//! A drone's life outside the heartbeat: a clean stop (the agent's SIGTERM)
//! and an operator retiring it. Every step runs the full invariant checks.

mod common;

use common::*;
use swarm_core::*;

const MIN: u64 = 60_000;

fn status(h: &Harness, d: &DroneName) -> Option<DroneStatus> {
    h.view().drone(d).map(|v| v.status)
}

#[test]
fn a_drone_that_stops_cleanly_is_stopped_never_suspect_offline_or_escalated() {
    let mut h = Harness::new();
    let d = drone("d0");
    let mut s = spec("d0", 8, 16);
    s.kind = DroneKind::Qemu;
    h.register(0, s);
    h.enqueue(1, vec![package("dev-libs/a-1.0")]);
    let (_, pkg, lease) = assigns(&h.request(2, &d, 1))[0].clone();
    h.started(3, &d, &pkg, lease);

    let out = h.step(10, Input::Deregister { drone: d.clone() });
    assert!(
        events(&out).any(|e| matches!(e, Event::Deregistered { drone } if *drone == d)),
        "{out:?}"
    );
    let back = reclaims(&out);
    assert_eq!(back.len(), 1, "what it still held goes back: {out:?}");
    assert_eq!(back[0].reason, ReclaimReason::Returned);
    assert!(
        revokes(&out).is_empty(),
        "a stopped drone is not told to stop"
    );
    assert_eq!(status(&h, &d), Some(DroneStatus::Stopped));
    assert!(h.view().leases_of(&d).is_empty());

    // Two hours of silence and failing probes: still Stopped, nothing climbs.
    let mut t = 10;
    while t < 120 * MIN {
        t += MIN;
        let mut out = h.tick(t);
        out.extend(h.probe(t, &d, ProbeStatus::Unreachable));
        for e in events(&out) {
            assert!(
                !matches!(
                    e,
                    Event::WentSuspect { .. } | Event::WentOffline { .. } | Event::Escalated { .. }
                ),
                "a stopped drone was judged: {e:?}"
            );
        }
        assert!(escalations(&out).is_empty());
    }
    assert_eq!(status(&h, &d), Some(DroneStatus::Stopped));

    // Its agent starts again: online, and it gets work.
    let out = h.heartbeat(t + 1, &d);
    assert!(
        events(&out).any(|e| matches!(e, Event::CameBack { .. })),
        "{out:?}"
    );
    assert_eq!(status(&h, &d), Some(DroneStatus::Online));
    assert_eq!(assigns(&h.request(t + 2, &d, 1)).len(), 1);
}

#[test]
fn a_stopped_drone_gets_no_work_and_does_not_count_as_eligible() {
    let mut h = Harness::new();
    let (a, b) = (drone("a"), drone("b"));
    h.register(0, spec("a", 8, 16));
    h.register(0, spec("b", 8, 16));
    h.step(1, Input::Deregister { drone: b.clone() });
    h.enqueue(2, vec![package("dev-libs/x-1.0")]);
    assert!(assigns(&h.request(3, &b, 1)).is_empty(), "stopped: no work");
    assert_eq!(assigns(&h.request(4, &a, 1)).len(), 1);
}

#[test]
fn an_unknown_drone_cannot_deregister() {
    let mut h = Harness::new();
    let out = h.step(
        1,
        Input::Deregister {
            drone: drone("ghost"),
        },
    );
    assert!(
        events(&out).any(|e| matches!(
            e,
            Event::InputRejected {
                reason: RejectReason::UnknownDrone { .. }
            }
        )),
        "{out:?}"
    );
}

#[test]
fn removing_a_drone_requeues_its_work_and_takes_it_out_of_the_fleet() {
    let mut h = Harness::new();
    let (a, b) = (drone("a"), drone("b"));
    h.register(0, spec("a", 8, 16));
    h.register(0, spec("b", 8, 16));
    h.enqueue(1, vec![package("dev-libs/x-1.0")]);
    let (_, pkg, lease) = assigns(&h.request(2, &a, 1))[0].clone();
    h.started(3, &a, &pkg, lease);

    let out = h.control(10, Control::RemoveDrone { drone: a.clone() });
    assert!(events(&out).any(|e| matches!(e, Event::Removed { drone } if *drone == a)));
    assert_eq!(reclaims(&out).len(), 1, "{out:?}");
    assert!(
        h.view().drone(&a).is_none(),
        "retired drones leave the fleet"
    );
    assert_eq!(h.view().drones().len(), 1);
    assert_eq!(
        assigns(&h.request(11, &b, 1)).len(),
        1,
        "its work is built elsewhere"
    );

    // No timer of the retired drone fires later.
    let out = h.tick(60 * MIN);
    assert!(events(&out).all(|e| !matches!(e, Event::WentSuspect { drone } if *drone == a)));

    let out = h.control(61 * MIN, Control::RemoveDrone { drone: a.clone() });
    assert!(
        events(&out).any(|e| matches!(e, Event::InputRejected { .. })),
        "{out:?}"
    );
    // Registering again brings it back.
    h.register(62 * MIN, spec("a", 8, 16));
    assert_eq!(status(&h, &a), Some(DroneStatus::Online));
}
