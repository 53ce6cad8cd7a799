//! Freezes the state digest. Snapshots store it, and a store verifies each
//! snapshot against it on open, so a change to how the state hashes (a
//! field's type, say) would refuse every snapshot written before it.

mod common;

use common::*;
use swarm_core::*;

#[test]
fn the_digest_of_a_known_state_is_unchanged() {
    let mut h = Harness::new();
    h.register(1_000, spec("d1", 4, 8));
    let packages = (0..5)
        .map(|i| PackageSpec {
            deps: if i == 0 {
                vec![]
            } else {
                vec![atom(&format!("dev-libs/p{}-1", i - 1))]
            },
            ..PackageSpec::new(atom(&format!("dev-libs/p{i}-1")))
        })
        .collect();
    h.step(
        2_000,
        Input::Enqueue(Enqueue {
            packages,
            ..Enqueue::default()
        }),
    );
    h.request(3_000, &drone("d1"), 2);
    assert_eq!(format!("{:016x}", h.swarm().digest()), "df0d18300ec5ca11");
}
