//! The same package in several profiles (issue 17): a package is (profile, atom). Real profiles
//! overlap (every world pulls in zlib and glibc), so the same atom is queued once per profile,
//! each built by a drone that profile admits. Drone reports keep the v3 wire and name only the
//! atom: the core resolves it against the calling drone's leases, and never gives one drone two
//! leases of one atom.
//!
//! The property keeps its own record of what each drone last reported and what each profile
//! expects, and checks every assignment and every build against it.

mod common;

use common::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::*;

const T0: u64 = 1_700_000_000_000;

fn for_profile(profile: Option<&str>, a: &str, deps: &[&str]) -> PackageSpec {
    PackageSpec {
        profile: profile.map(str::to_owned),
        ..package_after(a, deps)
    }
}

fn set_profile(name: &str, cflags: Option<&str>) -> Control {
    Control::SetProfile {
        name: name.into(),
        env: Some(env(cflags)),
        from: None,
        world: None,
    }
}

/// A report that names only the atom, as a v3 drone sends it.
fn legacy(drone: &DroneName, package: &Atom) -> Report {
    Report {
        drone: drone.clone(),
        package: package.clone(),
        lease: None,
        epoch: None,
    }
}

fn rejection(out: &[Output]) -> Option<&RejectReason> {
    events(out).find_map(|e| match e {
        Event::InputRejected { reason } => Some(reason),
        _ => None,
    })
}

/// Two profiles whose environments one drone satisfies both of (`srv` expects nothing, so it
/// admits every drone), and zlib in both.
fn two_profiles_sharing_zlib() -> (Harness, Atom) {
    let mut h = Harness::new();
    h.control(
        T0,
        Control::ExpectEnv {
            env: Some(env(Some("-O2"))),
            from: None,
        },
    );
    h.control(T0, set_profile("srv", None));
    h.enqueue(
        T0,
        vec![
            for_profile(None, "=sys-libs/zlib-1.3", &[]),
            for_profile(None, "=app-misc/hello-1", &["=sys-libs/zlib-1.3"]),
            for_profile(Some("srv"), "=sys-libs/zlib-1.3", &[]),
            for_profile(Some("srv"), "=app-misc/tmux-3", &["=sys-libs/zlib-1.3"]),
        ],
    );
    (h, atom("=sys-libs/zlib-1.3"))
}

fn register_d0(h: &mut Harness, cflags: &str, cores: u32) {
    h.register(
        T0,
        DroneSpec {
            env: env(Some(cflags)),
            ..spec("d0", cores, 16)
        },
    );
}

#[test]
fn a_drone_both_profiles_admit_gets_one_lease_of_a_shared_atom_at_a_time() {
    let (mut h, zlib) = two_profiles_sharing_zlib();
    let d = drone("d0");
    register_d0(&mut h, "-O2", 8);
    let out = h.request(T0 + 1, &d, 2);
    let got = assigns(&out);
    assert_eq!(got.len(), 1, "one zlib, not both: {got:?}");
    let (_, first, lease) = got[0].clone();
    assert_eq!(first, zlib);
    // A report naming only the atom means the one the drone holds, whichever profile.
    let profile = h.view().lease(lease).and_then(|l| l.profile);
    let out = h.step(
        T0 + 2,
        Input::BuildFinished {
            report: legacy(&d, &zlib),
            outcome: Outcome::Success,
            duration_ms: None,
        },
    );
    assert!(rejection(&out).is_none(), "{out:?}");
    let name = profile.as_deref().unwrap_or("default");
    let built = h.view().package_in(&zlib, name).expect("queued");
    assert!(matches!(built.status, PackageStatus::Built { .. }));
    // The other profile's zlib is still to build, and its dependent waits for it.
    let other = if name == "default" { "srv" } else { "default" };
    let rest = h.view().package_in(&zlib, other).expect("queued");
    assert!(
        matches!(rest.status, PackageStatus::Queued { .. }),
        "{rest:?}"
    );
    let out = h.request(T0 + 3, &d, 2);
    let got: BTreeSet<Atom> = assigns(&out).into_iter().map(|(_, a, _)| a).collect();
    assert!(
        got.contains(&zlib),
        "the other profile's zlib next: {got:?}"
    );
}

/// A forced removal drops a profile's queue and the profile in one input, or does nothing: a
/// build of it that has started refuses it whole (h31 F4: the queue went and the profile stayed).
#[test]
fn a_forced_profile_removal_waits_for_its_running_builds_and_changes_nothing_meanwhile() {
    let (mut h, zlib) = two_profiles_sharing_zlib();
    let d = drone("d0");
    register_d0(&mut h, "-O3", 4);
    let remove = Control::RemoveProfile {
        name: "srv".into(),
        force: true,
    };
    let srv_queue = |h: &Harness| {
        h.view()
            .queue()
            .filter(|p| p.profile.as_deref() == Some("srv"))
            .count()
    };
    let (_, a, lease) = assigns(&h.request(T0 + 1, &d, 1))
        .pop()
        .expect("srv's zlib");
    assert_eq!(a, zlib);
    h.started(T0 + 2, &d, &zlib, lease);
    let before = h.swarm().digest();
    let out = h.control(T0 + 2, remove.clone());
    assert_eq!(
        rejection(&out),
        Some(&RejectReason::ProfileBuilding {
            profile: "srv".into(),
            running: vec![zlib.clone()],
        }),
        "{out:?}"
    );
    assert_eq!(
        h.swarm().digest(),
        before,
        "a refused removal changed the state"
    );
    assert_eq!(srv_queue(&h), 2);
    // Built, and tmux leased but not started: the removal takes the lease back, drops tmux and
    // zlib, and the profile goes; the default profile's queue is untouched.
    h.finished(T0 + 3, &d, &zlib, lease, Outcome::Success);
    let (_, a, _) = assigns(&h.request(T0 + 4, &d, 1)).pop().expect("tmux");
    assert_eq!(a, atom("=app-misc/tmux-3"));
    let out = h.control(T0 + 5, remove);
    assert_eq!(rejection(&out), None, "{out:?}");
    assert!(
        events(&out).any(|e| matches!(e, Event::Reclaimed { .. })),
        "tmux's lease taken back: {out:?}"
    );
    assert_eq!(srv_queue(&h), 0);
    assert!(h.view().profile_env("srv").is_none(), "srv still a profile");
    assert_eq!(h.view().queue().count(), 2, "default's zlib and hello stay");
}

#[test]
fn a_dependency_resolves_within_the_packages_own_profile() {
    let (mut h, zlib) = two_profiles_sharing_zlib();
    let d = drone("d0");
    register_d0(&mut h, "-O3", 4);
    // Only srv admits -O3: its zlib is built; hello (default) still waits for default's zlib.
    let out = h.request(T0 + 1, &d, 1);
    let (_, a, lease) = assigns(&out).pop().expect("srv's zlib");
    assert_eq!(a, zlib);
    h.finished(T0 + 2, &d, &zlib, lease, Outcome::Success);
    let hello = atom("=app-misc/hello-1");
    assert_eq!(
        h.view().explain(&hello),
        "waiting: dependency =sys-libs/zlib-1.3 not built"
    );
    let out = h.request(T0 + 3, &d, 1);
    let (_, a, _) = assigns(&out).pop().expect("tmux, whose zlib is built");
    assert_eq!(a, atom("=app-misc/tmux-3"));
}

#[test]
fn an_operator_naming_an_atom_of_several_profiles_must_say_which() {
    let (mut h, zlib) = two_profiles_sharing_zlib();
    let out = h.control(
        T0 + 1,
        Control::Block {
            package: zlib.clone(),
            profile: None,
        },
    );
    match rejection(&out) {
        Some(RejectReason::AmbiguousPackage { profiles, .. }) => {
            assert_eq!(profiles, &["default".to_owned(), "srv".to_owned()]);
        }
        other => panic!("not refused as ambiguous: {other:?}"),
    }
    let out = h.control(
        T0 + 2,
        Control::Block {
            package: zlib.clone(),
            profile: Some("srv".into()),
        },
    );
    assert!(rejection(&out).is_none(), "{out:?}");
    // Explain without a profile asks which, and says where each profile's package is.
    assert_eq!(
        h.view().explain(&zlib),
        "=sys-libs/zlib-1.3 is queued in profiles default, srv: name one with --profile\n\
         default: waiting: no drone online\n\
         srv: blocked: blocked by operator"
    );
    let srv = h.view().package_in(&zlib, "srv").expect("queued");
    assert!(matches!(srv.status, PackageStatus::Blocked { .. }));
    let default = h.view().package_in(&zlib, "default").expect("queued");
    assert!(matches!(default.status, PackageStatus::Queued { .. }));
    // `default` names the default profile; an atom queued once needs no profile.
    let out = h.control(
        T0 + 3,
        Control::Unblock {
            package: Some(zlib.clone()),
            profile: Some("default".into()),
        },
    );
    assert!(
        matches!(rejection(&out), Some(RejectReason::IllegalControl { .. })),
        "the default one is not blocked: {out:?}"
    );
    let out = h.control(
        T0 + 4,
        Control::Block {
            package: atom("=app-misc/tmux-3"),
            profile: None,
        },
    );
    assert!(rejection(&out).is_none(), "{out:?}");
}

// ------------------------------------------------------------------ the property

const PROFILES: [Option<&str>; 3] = [None, Some("p"), Some("q")];

/// `None`: expects (or reports) nothing; otherwise one of two CFLAGS.
fn flavour() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![None, Some("-O2 -pipe"), Some("-O3 -pipe")])
}

#[derive(Clone, Debug)]
enum Op {
    /// Drone i reports this environment.
    Drift(usize, Option<&'static str>),
    /// Profile k expects this environment.
    Expect(usize, Option<&'static str>),
    /// Drone i asks for work.
    Ask(usize),
    /// Drone i starts its oldest not-started lease.
    Start(usize),
    /// Drone i finishes its oldest started lease, naming the lease or (v3) only the atom.
    Finish(usize, bool),
    /// Drone i returns its oldest lease, naming only the atom.
    Return(usize),
}

fn op(drones: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..drones, flavour()).prop_map(|(i, f)| Op::Drift(i, f)),
        1 => (0..PROFILES.len(), flavour()).prop_map(|(k, f)| Op::Expect(k, f)),
        5 => (0..drones).prop_map(Op::Ask),
        3 => (0..drones).prop_map(Op::Start),
        3 => (0..drones, any::<bool>()).prop_map(|(i, l)| Op::Finish(i, l)),
        1 => (0..drones).prop_map(Op::Return),
    ]
}

/// Which profiles each of 8 atoms is queued in (a bit per profile, at least one).
fn overlap() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(1u8..8, 8)
}

fn name(i: usize) -> DroneName {
    drone(&format!("d{i}"))
}

/// The test's own record of the world.
struct Record {
    reported: Vec<BuildEnv>,
    expected: Vec<BuildEnv>,
    /// Per drone: (lease, atom, profile index, started).
    leases: Vec<Vec<(LeaseId, Atom, usize, bool)>>,
    /// (profile index, atom) built, and by whom.
    built: BTreeMap<(usize, Atom), DroneName>,
}

fn profile_index(p: Option<&str>) -> usize {
    PROFILES
        .iter()
        .position(|x| *x == p)
        .expect("a test profile")
}

fn set_expected(h: &mut Harness, at: u64, k: usize, f: Option<&str>) -> Vec<Output> {
    match PROFILES[k] {
        None => h.control(
            at,
            Control::ExpectEnv {
                env: Some(env(f)),
                from: None,
            },
        ),
        Some(p) => h.control(at, set_profile(p, f)),
    }
}

/// Checks what one step did against the record, and brings the record up to date.
fn observe(h: &Harness, r: &mut Record, out: &[Output]) -> Result<(), TestCaseError> {
    for (d, atom, lease) in assigns(out) {
        let i: usize = d.as_str()[1..].parse().expect("d<i>");
        let profile = h.view().lease(lease).map(|l| l.profile);
        let k = profile_index(profile.flatten().as_deref());
        prop_assert!(
            r.expected[k].admits(&r.reported[i]),
            "{atom} of profile {k} assigned to {d}, which reports {:?} while it expects {:?}",
            r.reported[i],
            r.expected[k]
        );
        prop_assert!(
            !r.leases[i].iter().any(|l| l.1 == atom),
            "{d} got a second lease of {atom}"
        );
        r.leases[i].push((lease, atom, k, false));
    }
    for e in events(out) {
        match e {
            Event::Reclaimed { drone, lease, .. } => {
                let i: usize = drone.as_str()[1..].parse().expect("d<i>");
                r.leases[i].retain(|l| l.0 != *lease);
            }
            Event::Built {
                drone,
                package,
                lease,
                ..
            } => {
                let i: usize = drone.as_str()[1..].parse().expect("d<i>");
                let held = r.leases[i].iter().position(|l| l.0 == *lease);
                prop_assert!(
                    held.is_some(),
                    "{drone} built {package} under a lease it did not hold"
                );
                let (_, atom, k, _) = r.leases[i].remove(held.unwrap_or_default());
                prop_assert_eq!(&atom, package);
                prop_assert!(
                    r.built.insert((k, atom.clone()), drone.clone()).is_none(),
                    "{atom} of profile {k} built twice"
                );
            }
            Event::BuildFailed { drone, lease, .. } => {
                let i: usize = drone.as_str()[1..].parse().expect("d<i>");
                r.leases[i].retain(|l| l.0 != *lease);
            }
            _ => {}
        }
    }
    Ok(())
}

fn act(h: &mut Harness, r: &mut Record, now: u64, op: &Op) -> Vec<Output> {
    match *op {
        Op::Drift(i, f) => {
            r.reported[i] = env(f);
            h.step(
                now,
                Input::Heartbeat(Heartbeat {
                    drone: name(i),
                    env: Some(env(f)),
                    ..Heartbeat::default()
                }),
            )
        }
        Op::Expect(k, f) => {
            r.expected[k] = env(f);
            set_expected(h, now, k, f)
        }
        Op::Ask(i) => {
            h.heartbeat(now, &name(i));
            h.request(now, &name(i), 2)
        }
        Op::Start(i) => match r.leases[i].iter_mut().find(|l| !l.3) {
            Some(l) => {
                l.3 = true;
                let (lease, atom) = (l.0, l.1.clone());
                h.started(now, &name(i), &atom, lease)
            }
            None => Vec::new(),
        },
        Op::Finish(i, with_lease) => match r.leases[i].iter().find(|l| l.3) {
            Some(l) => {
                let report = if with_lease {
                    report(&name(i), &l.1, l.0)
                } else {
                    legacy(&name(i), &l.1)
                };
                h.step(
                    now,
                    Input::BuildFinished {
                        report,
                        outcome: Outcome::Success,
                        duration_ms: None,
                    },
                )
            }
            None => Vec::new(),
        },
        Op::Return(i) => match r.leases[i].first() {
            Some(l) => {
                let report = legacy(&name(i), &l.1);
                h.step(
                    now,
                    Input::BuildFinished {
                        report,
                        outcome: Outcome::Returned {
                            reason: "shutdown".into(),
                        },
                        duration_ms: None,
                    },
                )
            }
            None => Vec::new(),
        },
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Three profiles whose world sets overlap at random, three drones drifting at random, the
    /// profiles' expectations changing: after every step no assignment goes to a drone its
    /// package's profile does not admit, no drone holds two leases of one atom (the harness
    /// checks invariants 13 and 14 too), a report naming only the atom finishes the drone's own
    /// package; and once each profile has a matching drone, every (profile, atom) is built,
    /// once, by a drone that profile admits.
    #[test]
    fn every_profile_gets_its_own_build_of_a_shared_atom_from_a_drone_it_admits(
        queued_in in overlap(),
        start in prop::collection::vec(flavour(), 3),
        expect in prop::collection::vec(flavour(), 3),
        ops in prop::collection::vec(op(3), 1..150),
    ) {
        let mut h = Harness::new();
        let mut now = T0;
        let mut r = Record {
            reported: start.iter().map(|f| env(*f)).collect(),
            expected: expect.iter().map(|f| env(*f)).collect(),
            leases: vec![Vec::new(); 3],
            built: BTreeMap::new(),
        };
        for (k, f) in expect.iter().enumerate() {
            set_expected(&mut h, now, k, *f);
        }
        for (i, f) in start.iter().enumerate() {
            h.register(now, DroneSpec { env: env(*f), ..spec(&format!("d{i}"), 8, 16) });
        }
        let mut packages = Vec::new();
        let mut wanted = BTreeSet::new();
        for (n, bits) in queued_in.iter().enumerate() {
            let a = format!("=dev-libs/a{n}-1");
            let dep = format!("=dev-libs/a{}-1", n.saturating_sub(1));
            let deps: Vec<&str> = if n > 0 { vec![dep.as_str()] } else { Vec::new() };
            for (k, p) in PROFILES.iter().enumerate() {
                if bits & (1 << k) != 0 {
                    packages.push(for_profile(*p, &a, &deps));
                    wanted.insert((k, atom(&a)));
                }
            }
        }
        h.enqueue(now, packages);
        for op in &ops {
            now += 1_000;
            let out = act(&mut h, &mut r, now, op);
            observe(&h, &mut r, &out)?;
        }
        // Liveness: drone k reports what profile k expects (something, when it expects
        // nothing), and the fleet works until nothing is left.
        for k in 0..3 {
            let f = if r.expected[k].is_empty() { Some("-O2 -pipe") } else { None };
            let report = match f {
                Some(f) => env(Some(f)),
                None => r.expected[k].clone(),
            };
            now += 1_000;
            r.reported[k] = report.clone();
            let out = h.step(now, Input::Heartbeat(Heartbeat {
                drone: name(k),
                env: Some(report),
                ..Heartbeat::default()
            }));
            observe(&h, &mut r, &out)?;
        }
        for _round in 0..60 {
            if r.built.len() == wanted.len() {
                break;
            }
            for i in 0..3 {
                for op in [Op::Ask(i), Op::Start(i), Op::Start(i), Op::Finish(i, true), Op::Finish(i, false)] {
                    now += 1_000;
                    let out = act(&mut h, &mut r, now, &op);
                    observe(&h, &mut r, &out)?;
                }
            }
        }
        let built: BTreeSet<(usize, Atom)> = r.built.keys().cloned().collect();
        prop_assert_eq!(&built, &wanted, "not every (profile, atom) was built");
    }
}
