//! The whole-queue checks that only `check_invariants_deep` makes (the per-step check stays
//! linear in the leases and drones): each is shown to catch a state broken on purpose. And an
//! illegal state change the core attempts is refused and reported by the per-step check.

use crate::config::Config;
use crate::id::{LeaseId, Seq};
use crate::input::{DroneSpec, Enqueue, Envelope, Input, PackageSpec};
use crate::state::{Liveness, PackageState, PkgId};
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
        .enter(PackageState::Assigned { lease: LeaseId(77) })
        .expect("queued to assigned is legal");
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

/// The refused move `check_invariants` reports, which must say `what`.
fn refusal(s: &Swarm, what: &str) -> crate::violation::Violation {
    let v = s.check_invariants().expect_err("the refusal is reported");
    assert_eq!((v.invariant, v.detail.as_str()), (16, what), "{v}");
    v
}

#[test]
fn an_illegal_package_move_is_refused_and_reported_until_the_end() {
    let mut s = queued();
    let before = s.digest();
    s.transition(
        PkgId(0),
        PackageState::Built {
            at: Timestamp(2_000),
        },
    );
    assert!(s.st.pkg(PkgId(0)).is_queued(), "the package stays queued");
    assert_eq!(s.digest(), before, "nothing moved");
    let v = refusal(
        &s,
        "package =dev-libs/a-1: illegal transition from Queued to Built",
    );
    let tick = Envelope {
        seq: Seq(2),
        at: Timestamp(3_000),
        input: Input::Tick,
    };
    let _ = s.handle(&tick);
    assert_eq!(
        s.check_invariants(),
        Err(v),
        "a later step still reports it"
    );
}

#[test]
fn an_illegal_drone_move_is_refused_and_reported() {
    let mut s = queued();
    let name = crate::id::DroneName::new("d1").expect("name");
    let _ = s.handle(&Envelope {
        seq: Seq(2),
        at: Timestamp(2_000),
        input: Input::Register(DroneSpec {
            name: name.clone(),
            ..DroneSpec::default()
        }),
    });
    s.check_invariants().expect("a registered drone is fine");
    assert!(
        !s.set_liveness(&name, Liveness::Offline),
        "online skips suspicion"
    );
    assert_eq!(s.st.drones[&name].liveness(), Liveness::Online);
    let v = refusal(&s, "drone d1: illegal transition from Online to Offline");
    assert!(
        s.set_liveness(&name, Liveness::Suspect),
        "a legal move still moves"
    );
    assert_eq!(
        s.check_invariants(),
        Err(v),
        "the first refusal stays reported"
    );
}

/// Every way above to break an index, and one of the ready set.
fn drifted() -> Vec<(&'static str, Swarm)> {
    let mut stray = queued();
    let never = Atom::parse("dev-libs/never-queued-1").expect("atom");
    crate::index::add_atom(&mut stray.ix.by_atom, &never, PkgId(1));
    let mut unready = queued();
    let first = *unready
        .ix
        .ready
        .first()
        .expect("a fresh queue has ready work");
    unready.ix.ready.remove(&first);
    let mut unleased = queued();
    unleased
        .st
        .pkg_mut(PkgId(0))
        .enter(PackageState::Assigned { lease: LeaseId(77) })
        .expect("queued to assigned is legal");
    vec![
        ("a stray atom", stray),
        ("a ready package out of the ready set", unready),
        ("an assigned package without a lease", unleased),
    ]
}

#[test]
fn the_deep_check_in_place_reports_what_the_copying_one_does_and_keeps_reporting_it() {
    for (what, mut s) in drifted() {
        let copying = s.check_invariants_deep();
        assert!(copying.is_err(), "{what}: the copying check catches it");
        assert_eq!(s.check_invariants_deep_in_place(), copying, "{what}");
        // The live index is put back, not the rebuilt one: a drift is never repaired by
        // looking at it, so the next check (and the simulator's digest) still sees it.
        assert_eq!(s.check_invariants_deep_in_place(), copying, "{what}, again");
        assert_eq!(s.check_invariants_deep(), copying, "{what}, copying again");
    }
}

#[test]
fn the_deep_check_in_place_leaves_a_sound_swarm_as_it_found_it() {
    let mut s = queued();
    let (digest, touched) = (s.digest(), s.touched.clone());
    s.check_invariants_deep_in_place()
        .expect("a fresh queue keeps every invariant");
    assert_eq!(s.digest(), digest);
    assert_eq!(s.touched, touched, "what the last input touched, not all");
}
