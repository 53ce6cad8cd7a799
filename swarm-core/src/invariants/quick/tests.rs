//! The fast path never passes a state the full check fails: each invariant it proves is broken
//! on purpose in a state with live leases, and the check still reports what the full one does.

use super::holds;
use crate::config::Config;
use crate::id::{DroneName, LeaseId, Seq};
use crate::input::{DroneSpec, Enqueue, Envelope, Input, PackageSpec};
use crate::state::{Liveness, PkgId};
use crate::swarm::Swarm;
use crate::time::Timestamp;
use crate::Atom;

fn name(n: &str) -> DroneName {
    DroneName::new(n).expect("name")
}

/// Two drones; `d1` holds leases of `a` and `b`, `c` waits on `a`, nothing has started.
fn leased() -> Swarm {
    let mut s = Swarm::new(Config::default()).expect("default config");
    let atom = |a: &str| Atom::parse(a).expect("atom");
    let mut c = PackageSpec::new(atom("dev-libs/c-1"));
    c.deps = vec![atom("dev-libs/a-1")];
    let packages = vec![
        PackageSpec::new(atom("dev-libs/a-1")),
        PackageSpec::new(atom("dev-libs/b-1")),
        c,
    ];
    let mut seq = 0;
    let mut step = |s: &mut Swarm, input: Input| {
        seq += 1;
        let _ = s.handle(&Envelope {
            seq: Seq(seq),
            at: Timestamp(1_000 + seq),
            input,
        });
    };
    step(
        &mut s,
        Input::Enqueue(Enqueue {
            packages,
            ..Enqueue::default()
        }),
    );
    for d in ["d1", "d2"] {
        let spec = DroneSpec {
            name: name(d),
            cores: 16,
            ..DroneSpec::default()
        };
        step(&mut s, Input::Register(spec));
    }
    step(
        &mut s,
        Input::RequestWork {
            drone: name("d1"),
            free_slots: Some(2),
        },
    );
    assert_eq!(s.st.drones[&name("d1")].leases.len(), 2, "d1 got a and b");
    assert!(holds(&s), "a sound state passes the fast path");
    s.check_each_invariant().expect("and the full check");
    s
}

fn lease_ids(s: &Swarm) -> (LeaseId, LeaseId) {
    let mut ids = s.st.drones[&name("d1")].leases.iter().copied();
    (ids.next().expect("first"), ids.next().expect("second"))
}

type Breakage = fn(&mut Swarm);

/// Each way to break what the per-step check proves, by the invariant the full check reports.
const BREAKAGES: &[(&str, u8, Breakage)] = &[
    ("a lease off its drone's books", 2, |s| {
        let (l, _) = lease_ids(s);
        s.st.drones
            .get_mut(&name("d1"))
            .expect("d1")
            .leases
            .remove(&l);
    }),
    ("a lease no drone lists", 2, |s| {
        let (l, _) = lease_ids(s);
        let mut stray = s.st.leases[&l].clone();
        stray.id = LeaseId(999);
        s.st.leases.insert(stray.id, stray);
    }),
    ("a lease naming another drone", 2, |s| {
        let (l, _) = lease_ids(s);
        s.st.leases.get_mut(&l).expect("lease").drone = name("d2");
    }),
    ("a lease of an old epoch", 2, |s| {
        let (l, _) = lease_ids(s);
        let lease = s.st.leases.get_mut(&l).expect("lease");
        lease.epoch = crate::id::Epoch(lease.epoch.0 + 1);
    }),
    ("a lease its package does not hold", 2, |s| {
        let (l, m) = lease_ids(s);
        let pkg = s.st.leases[&m].pkg;
        s.st.leases.get_mut(&l).expect("lease").pkg = pkg;
    }),
    ("a lease of a package that is not there", 2, |s| {
        let (l, _) = lease_ids(s);
        s.st.leases.get_mut(&l).expect("lease").pkg = PkgId(99);
    }),
    ("a drone stored under another name", 2, |s| {
        let d = s.st.drones.remove(&name("d1")).expect("d1");
        s.st.drones.insert(name("d0"), d);
    }),
    ("a drone offline with leases", 6, |s| {
        let d = s.st.drones.get_mut(&name("d1")).expect("d1");
        d.enter(Liveness::Suspect).expect("online to suspect");
        d.enter(Liveness::Offline).expect("suspect to offline");
    }),
    ("a drone past its offline deadline", 6, |s| {
        s.st.now = Timestamp(u64::MAX / 2);
    }),
    ("more not-started leases than the prefetch", 7, |s| {
        s.st.config.max_prefetch = 1;
    }),
    ("a lease before its dependency is built", 9, |s| {
        let (l, _) = lease_ids(s);
        let pkg = s.st.leases[&l].pkg;
        let c = s.st.packages.len() - 1;
        s.st.pkg_mut(PkgId(c as u32)).lease_mark = 0;
        let p = s.st.pkg_mut(pkg);
        p.eff_deps = p
            .eff_deps
            .iter()
            .copied()
            .chain([PkgId(c as u32)])
            .collect();
    }),
    ("two leases of one atom (of two profiles)", 14, |s| {
        let (l, m) = lease_ids(s);
        let atom = s.st.leases[&m].package.clone();
        let pkg = s.st.leases[&l].pkg;
        s.st.pkg_mut(pkg).atom = atom.clone();
        s.st.leases.get_mut(&l).expect("lease").package = atom;
    }),
    ("a revoke repeated of an atom held", 15, |s| {
        let (l, _) = lease_ids(s);
        let atom = s.st.leases[&l].package.clone();
        let d = s.st.drones.get_mut(&name("d1")).expect("d1");
        d.revokes.add(&atom, None, Timestamp(0));
    }),
    ("a ladder climbed past its top", 10, |s| {
        s.st.drones.get_mut(&name("d2")).expect("d2").ladder.steps = 9;
    }),
    ("a restart storm", 11, |s| {
        let now = s.st.now;
        let storm = s.st.config.max_escalations_per_window as usize + 1;
        s.st.escalations.extend(std::iter::repeat_n(now, storm));
    }),
    ("a refused move", 16, |s| {
        s.transition(
            PkgId(2),
            crate::state::PackageState::Built { at: Timestamp(0) },
        );
    }),
];

#[test]
fn the_fast_path_passes_no_state_the_full_check_fails() {
    for (what, invariant, break_it) in BREAKAGES {
        let mut s = leased();
        break_it(&mut s);
        let full = s.check_each_invariant();
        assert_eq!(
            full.as_ref().map_err(|v| v.invariant),
            Err(*invariant),
            "{what}: {full:?}"
        );
        assert!(!holds(&s), "{what}: the fast path passed it");
        assert_eq!(s.check_invariants(), full, "{what}: reported as before");
    }
}
