//! The monitor's own record of heartbeats catches a core that keeps the leases of a silent drone.

use super::Monitor;
use crate::config::Config;
use crate::id::{DroneName, Seq};
use crate::input::{DroneSpec, Enqueue, Envelope, Input, PackageSpec};
use crate::swarm::Swarm;
use crate::time::Timestamp;
use crate::Atom;

#[test]
fn a_drone_silent_past_the_offline_timeout_that_still_holds_leases_is_caught() {
    let config = Config::default();
    let mut s = Swarm::new(config.clone()).expect("default config");
    let mut m = Monitor::new(config.clone());
    let d1 = DroneName::new("d1").expect("name");
    let inputs = [
        Input::Enqueue(Enqueue {
            packages: vec![PackageSpec::new(Atom::parse("dev-libs/a-1").expect("atom"))],
            ..Enqueue::default()
        }),
        Input::Register(DroneSpec {
            name: d1.clone(),
            ..DroneSpec::default()
        }),
        Input::RequestWork {
            drone: d1.clone(),
            free_slots: Some(1),
        },
    ];
    let env = |seq: u64, at: u64, input: Input| Envelope {
        seq: Seq(seq),
        at: Timestamp(at),
        input,
    };
    for (i, input) in inputs.into_iter().enumerate() {
        let e = env(i as u64 + 1, 1_000 + i as u64, input);
        let out = s.handle(&e);
        m.check_step(&e, &out, &s).expect("a sound start");
    }
    assert_eq!(s.view().leases_of(&d1).len(), 1, "d1 holds the package");
    // A core that never reclaims: the next step comes after the offline timeout, and the core
    // (never ticked) still lists d1's lease. The monitor watched every deadline (no failover
    // grace), so only its own heartbeat record can tell.
    m.due = None;
    let mut m2 = m.clone();
    // d1's last heartbeat is its registration, at 1_001: exactly the timeout old is silent.
    let late = 1_001 + config.offline_timeout_ms;
    let e = env(4, late, Input::Tick);
    let v = m.check_step(&e, &[], &s).expect_err("d1 is silent");
    assert_eq!(v.invariant, 6, "{v}");
    assert!(v.detail.starts_with("d1 silent for"), "{v}");
    // One millisecond less is not yet silent.
    let e = env(4, late - 1, Input::Tick);
    m2.check_step(&e, &[], &s)
        .expect("not yet past the timeout");
}
