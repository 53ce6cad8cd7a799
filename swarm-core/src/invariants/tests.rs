//! The whole-queue checks that only `check_invariants_deep` makes (the per-step check stays
//! linear in the leases and drones): each is shown to catch a state broken on purpose.

use crate::config::Config;
use crate::id::{LeaseId, Seq};
use crate::input::{Enqueue, Envelope, Input, PackageSpec};
use crate::state::{PackageState, PkgId};
use crate::swarm::Swarm;
use crate::time::Timestamp;
use crate::Atom;

fn queued() -> Swarm {
    let mut s = Swarm::new(Config::default()).expect("default config");
    let packages = ["dev-libs/a-1", "dev-libs/b-1"]
        .iter()
        .map(|a| PackageSpec::new(Atom::parse(a).expect("atom")))
        .collect();
    let out = s.handle(&Envelope {
        seq: Seq(1),
        at: Timestamp(1_000),
        input: Input::Enqueue(Enqueue {
            packages,
            ..Enqueue::default()
        }),
    });
    assert!(!out.is_empty(), "an enqueue says what it queued");
    s.check_invariants_deep()
        .expect("a fresh queue keeps every invariant");
    s
}

#[test]
fn an_assigned_package_without_a_live_lease_is_caught_by_the_deep_check_only() {
    let mut s = queued();
    s.st.pkg_mut(PkgId(0))
        .enter(PackageState::Assigned { lease: LeaseId(77) });
    assert!(
        s.check_invariants().is_ok(),
        "the per-step check walks no queue"
    );
    let v = s
        .check_invariants_deep()
        .expect_err("the deep check walks it");
    assert_eq!(v.invariant, 1, "{v}");
    assert!(v.detail.contains("lease 77"), "{v}");
}

#[test]
fn a_stray_entry_in_the_atom_index_is_caught_by_the_deep_check() {
    let mut s = queued();
    let stray = Atom::parse("dev-libs/never-queued-1").expect("atom");
    crate::index::add_atom(&mut s.ix.by_atom, &stray, PkgId(1));
    assert!(
        s.check_invariants().is_ok(),
        "the per-step check walks no queue"
    );
    let v = s
        .check_invariants_deep()
        .expect_err("the atom index names a package twice");
    assert_eq!(v.invariant, 1, "{v}");
}
