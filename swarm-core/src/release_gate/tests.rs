//! Tests of the parent module.

use super::*;
use crate::{Config, Enqueue, Envelope, Generation, Input, PackageSpec, Seq, Swarm, Timestamp};

fn swarm_with(world: &[(&str, &[&str])], snapshot: Option<&str>) -> Swarm {
    let mut s = Swarm::new(Config::default()).expect("config");
    let packages = world
        .iter()
        .map(|(a, deps)| PackageSpec {
            deps: deps.iter().map(|d| Atom::parse(d).expect("dep")).collect(),
            ..PackageSpec::new(Atom::parse(a).expect("atom"))
        })
        .collect();
    let _ = s.handle(&Envelope {
        seq: Seq(1),
        at: Timestamp(1_000),
        input: Input::Enqueue(Enqueue {
            packages,
            generation: Some(Generation(1)),
            portage_snapshot: snapshot.map(str::to_string),
        }),
    });
    s
}

fn release(cpvs: &[(&str, Option<&str>)]) -> BTreeMap<String, EntryFacts> {
    cpvs.iter()
        .map(|(c, snap)| {
            (
                c.to_string(),
                EntryFacts {
                    portage_snapshot: snap.map(str::to_string),
                    built_by: Some("drone-a".into()),
                    env: None,
                },
            )
        })
        .collect()
}

#[test]
fn passes_a_complete_release_and_lists_every_missing_package() {
    let s = swarm_with(
        &[
            ("=dev-libs/a-1", &[]),
            ("=app-misc/b-2", &["=dev-libs/a-1"]),
            ("app-misc/c", &[]),
        ],
        None,
    );
    let full = release(&[
        ("dev-libs/a-1", None),
        ("app-misc/b-2", None),
        ("app-misc/c-9", None),
    ]);
    let facts = GateFacts {
        release: &full,
        published: None,
        max_drop_permille: 100,
    };
    let v = check_publish(s.view(), &facts);
    assert!(v.passed(), "{v:?}");
    assert!(v.notes.iter().any(|n| n.contains("no Portage snapshot")));

    let partial = release(&[("app-misc/b-2", None), ("dev-libs/a-2", None)]);
    let facts = GateFacts {
        release: &partial,
        published: None,
        max_drop_permille: 100,
    };
    let v = check_publish(s.view(), &facts);
    let text: Vec<String> = v.reasons.iter().map(ToString::to_string).collect();
    assert!(
        text.iter()
            .any(|t| t.starts_with("=dev-libs/a-1 is in the current generation")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|t| t.starts_with("app-misc/c is in")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|t| t.contains("=app-misc/b-2 needs =dev-libs/a-1")),
        "{text:?}"
    );
    assert_eq!(v.reasons.len(), 3, "{text:?}");
}

#[test]
fn refuses_packages_built_against_another_snapshot() {
    let s = swarm_with(
        &[("=dev-libs/a-1", &[]), ("=dev-libs/b-1", &[])],
        Some("2026-12-01"),
    );
    let r = release(&[("dev-libs/a-1", Some("2026-11-01")), ("dev-libs/b-1", None)]);
    let v = check_publish(
        s.view(),
        &GateFacts {
            release: &r,
            published: None,
            max_drop_permille: 100,
        },
    );
    assert_eq!(v.reasons.len(), 1, "{v:?}");
    assert!(
        matches!(&v.reasons[0], GateReason::Snapshot { package, .. } if package == "dev-libs/a-1")
    );
    assert!(v.notes.iter().any(|n| n.contains("dev-libs/b-1")), "{v:?}");
}

#[test]
fn refuses_dropping_more_than_the_configured_share() {
    let s = swarm_with(&[], None);
    let r = release(&[("dev-libs/a-1", None)]);
    let published: BTreeSet<String> = [
        "dev-libs/a-1",
        "dev-libs/b-1",
        "dev-libs/c-1",
        "dev-libs/d-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let at = |permille| {
        check_publish(
            s.view(),
            &GateFacts {
                release: &r,
                published: Some(&published),
                max_drop_permille: permille,
            },
        )
    };
    assert!(matches!(
        at(500).reasons.as_slice(),
        [GateReason::Drops {
            dropped: 3,
            published: 4,
            ..
        }]
    ));
    assert!(at(750).passed(), "3 of 4 is exactly 75 %");
}

#[test]
fn refuses_packages_built_in_another_environment_and_says_what_differs() {
    let env = |cflags: &str| {
        crate::BuildEnv::new(
            [
                ("CFLAGS".to_string(), cflags.to_string()),
                ("GCC".to_string(), "sys-devel/gcc-14.2.1".to_string()),
            ]
            .into(),
        )
        .expect("env")
    };
    let mut s = swarm_with(&[("=dev-libs/a-1", &[]), ("=dev-libs/b-1", &[])], None);
    let mut r = release(&[("dev-libs/a-1", None), ("dev-libs/b-1", None)]);
    let judge = |s: &Swarm, r: &BTreeMap<String, EntryFacts>| {
        check_publish(
            s.view(),
            &GateFacts {
                release: r,
                published: None,
                max_drop_permille: 100,
            },
        )
    };
    r.get_mut("dev-libs/a-1").expect("a").env = Some(env("-O3"));
    assert!(judge(&s, &r).passed(), "nothing expected: nothing compared");
    let _ = s.handle(&Envelope {
        seq: Seq(2),
        at: Timestamp(2_000),
        input: Input::Control(crate::Control::ExpectEnv {
            env: Some(env("-O2")),
            from: None,
        }),
    });
    let v = judge(&s, &r);
    assert_eq!(v.reasons.len(), 1, "{v:?}");
    assert_eq!(
        v.reasons[0].to_string(),
        "dev-libs/a-1 was built on drone-a in another environment: \
         environment differs in CFLAGS (-O3 vs -O2)"
    );
    assert!(v.notes.iter().any(|n| n.contains("dev-libs/b-1")), "{v:?}");
    r.get_mut("dev-libs/a-1").expect("a").env = Some(env("-O2"));
    assert!(judge(&s, &r).passed(), "{:?}", judge(&s, &r));
}

#[test]
fn a_profiles_release_takes_only_builds_its_environment_admits() {
    use crate::input::Control;
    let env = |cflags: &str| {
        let vars = [("CFLAGS".to_string(), cflags.to_string())]
            .into_iter()
            .collect();
        BuildEnv::new(vars).expect("env")
    };
    let mut s = Swarm::new(Config::default()).expect("config");
    let _ = s.handle(&Envelope {
        seq: Seq(1),
        at: Timestamp(1_000),
        input: Input::Control(Control::SetProfile {
            name: "lean".into(),
            env: Some(env("-O2")),
            from: None,
            world: None,
        }),
    });
    let lean_pkg = PackageSpec {
        profile: Some("lean".into()),
        ..PackageSpec::new(Atom::parse("=dev-libs/lean-1.0").expect("atom"))
    };
    let _ = s.handle(&Envelope {
        seq: Seq(2),
        at: Timestamp(2_000),
        input: Input::Enqueue(Enqueue {
            packages: vec![lean_pkg],
            ..Enqueue::default()
        }),
    });
    let view = s.view();
    let atom = Atom::parse("=dev-libs/lean-1.0").expect("atom");
    assert_eq!(
        not_in_release_of(view, "lean", Some(&atom), Some(&env("-O2"))),
        None
    );
    let other = not_in_release_of(view, "lean", Some(&atom), Some(&env("-O3")));
    assert!(
        other
            .as_deref()
            .is_some_and(|w| w.contains("does not admit") && w.contains("CFLAGS")),
        "{other:?}"
    );
    let unknown = not_in_release_of(view, "lean", Some(&atom), None);
    assert!(
        unknown
            .as_deref()
            .is_some_and(|w| w.contains("no build environment")),
        "{unknown:?}"
    );
    // The default profile's release leaves out what is queued for a named one.
    let default = not_in_release_of(view, DEFAULT_PROFILE, Some(&atom), Some(&env("-O2")));
    assert!(
        default
            .as_deref()
            .is_some_and(|w| w.contains("queued for profile lean")),
        "{default:?}"
    );
    let free = Atom::parse("=dev-libs/other-1.0").expect("atom");
    assert_eq!(
        not_in_release_of(view, DEFAULT_PROFILE, Some(&free), None),
        None
    );
}
