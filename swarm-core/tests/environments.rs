//! Build environments (issue 17): a package goes only to a drone whose reported environment the
//! expected one admits, with drones drifting and the expectation changing at random times.
//!
//! The property keeps its own record of what each drone last reported and what the operator
//! last expected, and checks every assignment against that record, not the core's.

mod common;

use common::*;
use proptest::prelude::*;
use swarm_core::*;

const T0: u64 = 1_700_000_000_000;

/// `None`: reports nothing (a v3 drone); otherwise one of two CFLAGS.
fn flavour() -> impl Strategy<Value = Option<&'static str>> {
    prop::sample::select(vec![None, Some("-O2 -pipe"), Some("-O3 -pipe")])
}

#[derive(Clone, Debug)]
enum Op {
    /// Drone i reports this environment in a heartbeat.
    Drift(usize, Option<&'static str>),
    /// The operator expects this environment (`None`: nothing).
    Expect(Option<&'static str>),
    /// The operator expects what drone i reports.
    ExpectFrom(usize),
    /// Drone i asks for work.
    Ask(usize),
    /// Drone i starts its oldest lease.
    Start(usize),
    /// Drone i finishes its oldest started lease.
    Finish(usize),
    /// The operator sets profile `p`'s environment (`None`: nothing, any drone matches).
    Profile(Option<&'static str>),
}

fn op(drones: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..drones, flavour()).prop_map(|(i, f)| Op::Drift(i, f)),
        1 => flavour().prop_map(Op::Expect),
        1 => (0..drones).prop_map(Op::ExpectFrom),
        4 => (0..drones).prop_map(Op::Ask),
        2 => (0..drones).prop_map(Op::Start),
        2 => (0..drones).prop_map(Op::Finish),
    ]
}

/// [`op`] plus changes to profile `p`.
fn op_with_profiles(drones: usize) -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => op(drones),
        1 => flavour().prop_map(Op::Profile),
    ]
}

fn name(i: usize) -> DroneName {
    drone(&format!("d{i}"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn nothing_is_ever_assigned_to_a_drone_whose_environment_is_not_the_expected_one(
        start in prop::collection::vec(flavour(), 3),
        ops in prop::collection::vec(op(3), 1..120),
    ) {
        let mut h = Harness::new();
        let mut now = T0;
        let mut reported: Vec<BuildEnv> = Vec::new();
        for (i, f) in start.iter().enumerate() {
            let spec = DroneSpec { env: env(*f), ..spec(&format!("d{i}"), 8, 16) };
            h.register(now, spec);
            reported.push(env(*f));
        }
        h.enqueue(now, (0..40).map(|i| package(&format!("=dev-libs/p{i}-1.0"))).collect());
        let mut expected = BuildEnv::default();
        let mut leases: Vec<Vec<(LeaseId, Atom, bool)>> = vec![Vec::new(); 3];
        for op in ops {
            now += 1_000;
            let ready_before = h.view().ready_count();
            let out = match op {
                Op::Drift(i, f) => {
                    reported[i] = env(f);
                    h.step(now, Input::Heartbeat(Heartbeat {
                        drone: name(i),
                        env: Some(env(f)),
                        ..Heartbeat::default()
                    }))
                }
                Op::Expect(f) => {
                    expected = env(f);
                    h.control(now, Control::ExpectEnv { env: Some(env(f)), from: None })
                }
                Op::ExpectFrom(i) => {
                    if !reported[i].is_empty() {
                        expected = reported[i].clone();
                    }
                    h.control(now, Control::ExpectEnv { env: None, from: Some(name(i)) })
                }
                Op::Ask(i) => {
                    h.heartbeat(now, &name(i));
                    h.request(now, &name(i), 2)
                }
                Op::Start(i) => match leases[i].iter_mut().find(|l| !l.2) {
                    Some(l) => {
                        l.2 = true;
                        let (lease, atom) = (l.0, l.1.clone());
                        h.started(now, &name(i), &atom, lease)
                    }
                    None => Vec::new(),
                },
                Op::Finish(i) => match leases[i].iter().position(|l| l.2) {
                    Some(k) => {
                        let (lease, atom, _) = leases[i].remove(k);
                        h.finished(now, &name(i), &atom, lease, Outcome::Success)
                    }
                    None => Vec::new(),
                },
                Op::Profile(_) => Vec::new(),
            };
            for (d, atom, lease) in assigns(&out) {
                let i: usize = d.as_str()[1..].parse().expect("d<i>");
                prop_assert!(
                    expected.admits(&reported[i]),
                    "{atom} assigned to {d}, which reports {:?} while {:?} is expected",
                    reported[i],
                    expected
                );
                leases[i].push((lease, atom, false));
            }
            // Work taken back (drift, expectation) is no longer the drone's.
            for e in events(&out) {
                if let Event::Reclaimed { drone, lease, started, .. } = e {
                    prop_assert!(!started, "a started build was taken for an environment change");
                    let i: usize = drone.as_str()[1..].parse().expect("d<i>");
                    leases[i].retain(|l| l.0 != *lease);
                }
            }
            // The rule does not starve the fleet: a matching, idle drone that asks while
            // something is ready gets work.
            if let Op::Ask(i) = op {
                if expected.admits(&reported[i]) && leases[i].is_empty() && ready_before > 0 {
                    prop_assert!(!assigns(&out).is_empty(), "d{} matches and asked, but got nothing", i);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Two profiles share the fleet: the default one (`expect_env`) and `p`. Every assignment
    /// goes to a drone whose last report the package's own profile admits, whatever drifts and
    /// whatever the operator changes, and a matching idle drone that asks gets work.
    #[test]
    fn a_package_goes_only_to_a_drone_its_profile_admits(
        start in prop::collection::vec(flavour(), 3),
        first in flavour(),
        ops in prop::collection::vec(op_with_profiles(3), 1..120),
    ) {
        let mut h = Harness::new();
        let mut now = T0;
        let mut reported: Vec<BuildEnv> = Vec::new();
        for (i, f) in start.iter().enumerate() {
            h.register(now, DroneSpec { env: env(*f), ..spec(&format!("d{i}"), 8, 16) });
            reported.push(env(*f));
        }
        let set = |name: &str, f: Option<&str>| Control::SetProfile {
            name: name.into(),
            env: Some(env(f)),
            from: None,
            world: None,
        };
        h.control(now, set("p", first));
        let mut profile_env = env(first);
        let mut default_env = BuildEnv::default();
        let mut packages: Vec<PackageSpec> = Vec::new();
        for i in 0..20 {
            packages.push(package(&format!("=dev-libs/d{i}-1.0")));
            packages.push(PackageSpec {
                profile: Some("p".into()),
                ..package(&format!("=dev-libs/p{i}-1.0"))
            });
        }
        h.enqueue(now, packages);
        let of_p = |atom: &Atom| atom.as_str().starts_with("=dev-libs/p");
        let mut leases: Vec<Vec<(LeaseId, Atom, bool)>> = vec![Vec::new(); 3];
        for op in ops {
            now += 1_000;
            let ready_before = h.view().ready_count();
            let out = match op {
                Op::Drift(i, f) => {
                    reported[i] = env(f);
                    h.step(now, Input::Heartbeat(Heartbeat {
                        drone: name(i),
                        env: Some(env(f)),
                        ..Heartbeat::default()
                    }))
                }
                Op::Expect(f) => {
                    default_env = env(f);
                    h.control(now, Control::ExpectEnv { env: Some(env(f)), from: None })
                }
                Op::ExpectFrom(i) => {
                    if !reported[i].is_empty() {
                        default_env = reported[i].clone();
                    }
                    h.control(now, Control::ExpectEnv { env: None, from: Some(name(i)) })
                }
                Op::Profile(f) => {
                    profile_env = env(f);
                    h.control(now, set("p", f))
                }
                Op::Ask(i) => {
                    h.heartbeat(now, &name(i));
                    h.request(now, &name(i), 2)
                }
                Op::Start(i) => match leases[i].iter_mut().find(|l| !l.2) {
                    Some(l) => {
                        l.2 = true;
                        let (lease, atom) = (l.0, l.1.clone());
                        h.started(now, &name(i), &atom, lease)
                    }
                    None => Vec::new(),
                },
                Op::Finish(i) => match leases[i].iter().position(|l| l.2) {
                    Some(k) => {
                        let (lease, atom, _) = leases[i].remove(k);
                        h.finished(now, &name(i), &atom, lease, Outcome::Success)
                    }
                    None => Vec::new(),
                },
            };
            for (d, atom, lease) in assigns(&out) {
                let i: usize = d.as_str()[1..].parse().expect("d<i>");
                let wanted = if of_p(&atom) { &profile_env } else { &default_env };
                prop_assert!(
                    wanted.admits(&reported[i]),
                    "{atom} assigned to {d}, which reports {:?} while its profile expects {:?}",
                    reported[i],
                    wanted
                );
                leases[i].push((lease, atom, false));
            }
            for e in events(&out) {
                if let Event::Reclaimed { drone, lease, started, .. } = e {
                    prop_assert!(!started, "a started build was taken for an environment change");
                    let i: usize = drone.as_str()[1..].parse().expect("d<i>");
                    leases[i].retain(|l| l.0 != *lease);
                }
            }
            // Held work a profile no longer admits went back: none is left not started.
            for (i, held) in leases.iter().enumerate() {
                for (_, atom, started) in held {
                    let wanted = if of_p(atom) { &profile_env } else { &default_env };
                    prop_assert!(
                        *started || wanted.admits(&reported[i]),
                        "d{i} still holds not-started {atom} its profile does not admit"
                    );
                }
            }
            if let Op::Ask(i) = op {
                let matches_some = default_env.admits(&reported[i]) || profile_env.admits(&reported[i]);
                let ready_for_it = h.view().queue().any(|p| {
                    matches!(p.status, PackageStatus::Queued { retry_at: None })
                        && (if of_p(&p.atom) { &profile_env } else { &default_env }).admits(&reported[i])
                });
                if matches_some && leases[i].is_empty() && ready_before > 0 && ready_for_it {
                    prop_assert!(!assigns(&out).is_empty(), "d{} matches and asked, but got nothing", i);
                }
            }
        }
    }
}

#[test]
fn explain_names_the_profile_no_drone_matches_and_how_the_drone_differs() {
    let mut h = Harness::new();
    let t = T0;
    h.register(
        t,
        DroneSpec {
            env: env(Some("-O3 -pipe")),
            ..spec("tarn", 8, 16)
        },
    );
    h.control(
        t,
        Control::SetProfile {
            name: "desktop-amd64".into(),
            env: Some(env(Some("-O2 -pipe"))),
            from: None,
            world: None,
        },
    );
    let out = h.enqueue(
        t,
        vec![PackageSpec {
            profile: Some("nope".into()),
            ..package("=dev-libs/x-1.0")
        }],
    );
    assert!(
        events(&out).any(|e| matches!(e, Event::InputRejected { reason: RejectReason::UnknownProfile { profile } } if profile == "nope")),
        "an unknown profile is refused"
    );
    h.enqueue(
        t,
        vec![PackageSpec {
            profile: Some("desktop-amd64".into()),
            ..package("=dev-libs/a-1.0")
        }],
    );
    h.heartbeat(t + 1_000, &drone("tarn"));
    assert!(assigns(&h.request(t + 1_000, &drone("tarn"), 2)).is_empty());
    assert_eq!(
        h.view().explain(&atom("=dev-libs/a-1.0")),
        "no drone matches profile desktop-amd64: tarn differs in CFLAGS (-O3 -pipe vs -O2 -pipe)"
    );
    // The profile changes to what tarn has: it builds the package.
    h.control(
        t + 2_000,
        Control::SetProfile {
            name: "desktop-amd64".into(),
            env: None,
            from: Some(drone("tarn")),
            world: None,
        },
    );
    assert_eq!(assigns(&h.request(t + 3_000, &drone("tarn"), 2)).len(), 1);
}

#[test]
fn a_drone_that_drifts_returns_its_not_started_work_keeps_its_started_build_and_explains() {
    let mut h = Harness::new();
    let t = T0;
    let d = drone("tarn");
    h.register(
        t,
        DroneSpec {
            env: env(Some("-O2 -pipe")),
            ..spec("tarn", 8, 16)
        },
    );
    h.control(
        t,
        Control::ExpectEnv {
            env: None,
            from: Some(d.clone()),
        },
    );
    h.enqueue(
        t,
        vec![package("=dev-libs/a-1.0"), package("=dev-libs/b-1.0")],
    );
    let got = assigns(&h.request(t + 1_000, &d, 2));
    assert_eq!(got.len(), 2, "a matching drone gets work");
    let (_, first, lease) = got[0].clone();
    h.started(t + 2_000, &d, &first, lease);
    let out = h.step(
        t + 3_000,
        Input::Heartbeat(Heartbeat {
            drone: d.clone(),
            env: Some(env(Some("-O3 -pipe"))),
            ..Heartbeat::default()
        }),
    );
    let drift = events(&out)
        .find_map(|e| match e {
            Event::EnvChanged {
                matches,
                differences,
                ..
            } => Some((*matches, differences.clone())),
            _ => None,
        })
        .expect("an env_changed event");
    assert_eq!(
        drift,
        (
            false,
            "environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)".to_owned()
        )
    );
    let reclaimed: Vec<bool> = events(&out)
        .filter_map(|e| match e {
            Event::Reclaimed { started, .. } => Some(*started),
            _ => None,
        })
        .collect();
    assert_eq!(
        reclaimed,
        vec![false],
        "only the not-started lease goes back"
    );
    assert!(assigns(&h.request(t + 4_000, &d, 2)).is_empty());
    let view = h.view();
    let tarn = view
        .drones()
        .into_iter()
        .find(|v| v.name == d)
        .expect("tarn in the view");
    assert_eq!(
        tarn.no_work.as_deref(),
        Some("environment differs in CFLAGS (-O3 -pipe vs -O2 -pipe)")
    );
}

/// An environment of these variables.
fn vars(pairs: &[(&str, &str)]) -> BuildEnv {
    BuildEnv::new(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    )
    .expect("a valid environment")
}

#[test]
fn a_drone_no_profile_admits_hears_how_it_differs_from_the_profile_it_comes_closest_to() {
    let mut h = Harness::new();
    let t = T0;
    let d = drone("tarn");
    h.control(
        t,
        Control::ExpectEnv {
            env: Some(vars(&[("CFLAGS", "-O2"), ("LDFLAGS", "-Wl,-O1")])),
            from: None,
        },
    );
    h.control(
        t,
        Control::SetProfile {
            name: "fast".into(),
            env: Some(vars(&[("CFLAGS", "-O3"), ("LDFLAGS", "-Wl,-O1")])),
            from: None,
            world: None,
        },
    );
    let no_work = |h: &Harness| {
        h.view()
            .drone(&drone("tarn"))
            .and_then(|v| v.no_work)
            .unwrap_or_default()
    };
    // One value off fast, two off the default profile: fast's difference is the one to fix.
    h.register(
        t,
        DroneSpec {
            env: vars(&[("CFLAGS", "-O3"), ("LDFLAGS", "-Wl,--as-needed")]),
            ..spec("tarn", 8, 16)
        },
    );
    h.heartbeat(t + 1_000, &d);
    assert_eq!(
        no_work(&h),
        "closest profile fast: environment differs in LDFLAGS (-Wl,--as-needed vs -Wl,-O1)"
    );
    // One off each: the default profile's words, as before profiles.
    h.step(
        t + 2_000,
        Input::Heartbeat(Heartbeat {
            drone: d.clone(),
            env: Some(vars(&[("CFLAGS", "-Os"), ("LDFLAGS", "-Wl,-O1")])),
            ..Heartbeat::default()
        }),
    );
    assert_eq!(no_work(&h), "environment differs in CFLAGS (-Os vs -O2)");
}

fn for_profile(profile: &str, a: &str) -> PackageSpec {
    PackageSpec {
        profile: Some(profile.into()),
        ..package(a)
    }
}

fn set_profile(name: &str, cflags: &str, world: Option<Vec<String>>) -> Control {
    Control::SetProfile {
        name: name.into(),
        env: Some(env(Some(cflags))),
        from: None,
        world,
    }
}

#[test]
fn fresh_for_one_profile_drops_only_its_packages_and_keeps_its_started_build() {
    let mut h = Harness::new();
    let t = T0;
    let d = drone("tarn");
    h.register(
        t,
        DroneSpec {
            env: env(Some("-O2")),
            ..spec("tarn", 8, 16)
        },
    );
    h.control(t, set_profile("desk", "-O2", None));
    h.enqueue(
        t,
        vec![
            for_profile("desk", "=dev-libs/a-1.0"),
            for_profile("desk", "=dev-libs/b-1.0"),
        ],
    );
    let got = assigns(&h.request(t + 1_000, &d, 2));
    assert_eq!(got.len(), 2, "{got:?}");
    h.enqueue(t + 1_500, vec![package("=dev-libs/base-1.0")]);
    let (_, started, lease) = got
        .iter()
        .find(|(_, a, _)| a.as_str() == "=dev-libs/a-1.0")
        .cloned()
        .expect("a assigned");
    h.started(t + 2_000, &d, &started, lease);
    let generation = h.view().generation();
    let out = h.control(
        t + 3_000,
        Control::FreshProfile {
            profile: "desk".into(),
        },
    );
    let summary = events(&out)
        .find_map(|e| match e {
            Event::ControlApplied { summary, .. } => Some(summary.clone()),
            _ => None,
        })
        .expect("applied");
    assert_eq!(
        summary,
        "profile desk: revoked 1 not-started leases, dropped 1 packages, kept 1 building"
    );
    let left: Vec<String> = h
        .view()
        .queue()
        .map(|p| p.atom.as_str().to_owned())
        .collect();
    assert_eq!(
        left,
        ["=dev-libs/a-1.0", "=dev-libs/base-1.0"],
        "the default profile's package stays, b goes, a is being built"
    );
    assert_eq!(h.view().generation(), generation, "no new generation");
    let out = h.control(
        t + 4_000,
        Control::FreshProfile {
            profile: "nope".into(),
        },
    );
    assert!(events(&out).any(|e| matches!(e, Event::InputRejected { .. })));
}

#[test]
fn an_atom_queued_for_two_profiles_is_two_packages_and_for_one_profile_twice_is_one() {
    let mut h = Harness::new();
    let t = T0;
    h.control(t, set_profile("desk", "-O2", None));
    h.control(t, set_profile("srv", "-O3", None));
    h.enqueue(t, vec![for_profile("desk", "=dev-libs/a-1.0")]);
    let out = h.enqueue(
        t,
        vec![
            for_profile("srv", "=dev-libs/new-1.0"),
            for_profile("srv", "=dev-libs/a-1.0"),
            package("=dev-libs/a-1.0"),
            for_profile("desk", "=dev-libs/a-1.0"),
        ],
    );
    assert!(
        events(&out).any(|e| matches!(
            e,
            Event::Queued {
                added: 3,
                already: 1
            }
        )),
        "{out:?}"
    );
    let a = atom("=dev-libs/a-1.0");
    assert_eq!(
        h.view().queued_profiles(&a),
        vec![Some("desk"), Some("srv"), None]
    );
    assert_eq!(h.view().queue().count(), 4);
}

#[test]
fn a_profile_keeps_its_world_set_until_changed_and_refuses_a_bad_one() {
    let mut h = Harness::new();
    let t = T0;
    let world = vec!["app-misc/hello".to_owned(), "@desktop".to_owned()];
    h.control(t, set_profile("desk", "-O2", Some(world.clone())));
    h.control(t, set_profile("desk", "-O3", None));
    let desk = |h: &Harness| {
        h.view()
            .profiles()
            .into_iter()
            .find(|p| p.name == "desk")
            .expect("desk")
    };
    assert_eq!(desk(&h).world, world, "None keeps the world set");
    let out = h.control(
        t,
        set_profile("desk", "-O3", Some(vec!["not an atom".into()])),
    );
    assert!(events(&out).any(|e| matches!(e, Event::InputRejected { .. })));
    assert_eq!(desk(&h).world, world, "a refused change changes nothing");
    h.control(t, set_profile("desk", "-O3", Some(vec![])));
    assert!(desk(&h).world.is_empty(), "an empty list clears it");
}
