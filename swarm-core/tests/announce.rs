//! `Input::Announce`: the core merges what a drone says into the spec it holds. A field left
//! out keeps its value, a present one replaces it; an announcement that repeats the spec
//! changes nothing a plain heartbeat would not; the same facts give the same state as the
//! `Register` + `Heartbeat` pair the server sent before (its merge, moved here, is the
//! oracle); and `Swarm::condense` (what the store logs) means exactly the same.

use proptest::prelude::*;
use std::collections::BTreeMap;
use swarm_core::{
    Announce, Atom, BuildEnv, Config, Control, DroneHealth, DroneKind, DroneName, DroneSpec,
    Enqueue, Envelope, Event, Heartbeat, Input, Output, PackageSpec, Seq, SpecFacts, Swarm,
    Timestamp,
};

fn name(s: &str) -> DroneName {
    DroneName::new(s).expect("test drone name")
}

fn env(cflags: &str) -> BuildEnv {
    let vars: BTreeMap<String, String> = [
        ("CFLAGS".to_owned(), cflags.to_owned()),
        ("CHOST".to_owned(), "x86_64-pc-linux-gnu".to_owned()),
    ]
    .into_iter()
    .collect();
    BuildEnv::new(vars).expect("test env")
}

fn spec(n: &str) -> DroneSpec {
    DroneSpec {
        name: name(n),
        machine_id: Some(format!("m-{n}")),
        cores: 8,
        ram_mb: 16_384,
        arch: Some("amd64".into()),
        kind: DroneKind::Lxc,
        version: Some("1".into()),
        env: env("-O2"),
        portage_snapshot: Some("snap-1".into()),
        ..DroneSpec::default()
    }
}

/// Feeds envelopes with increasing seq; `at` never goes backwards.
struct Run {
    swarm: Swarm,
    seq: u64,
    now: u64,
}

impl Run {
    /// Two drones holding work, six packages, an expected environment (so an environment
    /// change matters).
    fn new() -> Run {
        let mut run = Run {
            swarm: Swarm::new(Config::default()).expect("default config"),
            seq: 0,
            now: 1_000,
        };
        run.feed(Input::Register(spec("a")));
        run.feed(Input::Register(spec("b")));
        run.feed(Input::Control(Control::ExpectEnv {
            env: Some(env("-O2")),
            from: None,
        }));
        let packages = (0..6)
            .map(|i| PackageSpec::new(Atom::parse(&format!("dev-libs/p{i}")).expect("atom")))
            .collect();
        run.feed(Input::Enqueue(Enqueue {
            packages,
            ..Enqueue::default()
        }));
        for d in ["a", "b"] {
            run.feed(Input::RequestWork {
                drone: name(d),
                free_slots: Some(2),
            });
        }
        run
    }

    fn envelope(&self, input: Input) -> Envelope {
        Envelope {
            seq: Seq(self.seq),
            at: Timestamp(self.now),
            input,
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Output> {
        self.seq += 1;
        let env = self.envelope(input);
        let out = self.swarm.handle(&env);
        self.swarm.check_invariants().expect("invariants hold");
        out
    }
}

/// The spec the core holds for `drone`, read from the serialised state.
fn held(swarm: &Swarm, drone: &DroneName) -> Option<DroneSpec> {
    let state = serde_json::to_value(swarm.state()).expect("state serialises");
    let spec = state
        .get("drones")?
        .get(drone.as_str())?
        .get("spec")?
        .clone();
    Some(serde_json::from_value(spec).expect("spec deserialises"))
}

/// What the server sent before `Announce`: its own merge of the facts with the spec it held
/// (here: the core's), a `Register` when the machine changed, and the heartbeat, carrying the
/// environment only when it changed without a registration.
fn old_pair(old: Option<&DroneSpec>, a: &Announce) -> Vec<Input> {
    let (said, beat) = (&a.said, &a.beat);
    let cores = said.cores.or(old.map(|d| d.cores)).unwrap_or(1).max(1);
    let ram_mb = said.ram_mb.or(old.map(|d| d.ram_mb)).unwrap_or(0);
    let kind = said.kind.or(old.map(|d| d.kind)).unwrap_or_default();
    let version = said
        .version
        .clone()
        .or_else(|| old.and_then(|d| d.version.clone()));
    let old_env = old.map(|d| d.env.clone()).unwrap_or_default();
    let spec = DroneSpec {
        name: beat.drone.clone(),
        machine_id: said.machine_id.clone(),
        cores,
        ram_mb,
        arch: said
            .arch
            .clone()
            .or_else(|| old.and_then(|d| d.arch.clone())),
        labels: Vec::new(),
        kind,
        portage_snapshot: beat
            .portage_snapshot
            .clone()
            .or_else(|| old.and_then(|d| d.portage_snapshot.clone())),
        version,
        env: beat.env.clone().unwrap_or_else(|| old_env.clone()),
    };
    let changed = match old {
        None => true,
        Some(d) => {
            d.machine_id != spec.machine_id
                || d.cores != spec.cores
                || d.ram_mb != spec.ram_mb
                || d.kind != spec.kind
                || d.version != spec.version
                || d.arch != spec.arch
        }
    };
    let heartbeat = Heartbeat {
        env: beat.env.clone().filter(|e| !changed && *e != old_env),
        ..beat.clone()
    };
    let mut inputs = Vec::new();
    if changed {
        inputs.push(Input::Register(spec));
    }
    inputs.push(Input::Heartbeat(heartbeat));
    inputs
}

/// Handles `inputs` at one instant on a copy; the digest and every output.
fn outcome(run: &Run, inputs: Vec<Input>) -> (u64, Vec<Output>) {
    let mut swarm = run.swarm.clone();
    let mut out = Vec::new();
    for input in inputs {
        out.extend(swarm.handle(&run.envelope(input)));
    }
    (swarm.digest(), out)
}

fn opt<T: Clone + std::fmt::Debug + 'static>(
    values: Vec<T>,
) -> impl Strategy<Value = Option<T>> + Clone {
    proptest::option::of(proptest::sample::select(values))
}

fn text(values: &[&'static str]) -> impl Strategy<Value = Option<String>> + Clone {
    opt(values.to_vec()).prop_map(|o| o.map(str::to_owned))
}

/// Announcements from the two known drones and one new one. Zero counts and the `Unknown`
/// kind are left out (they say nothing; see `zero_counts_and_an_unknown_kind_say_nothing`):
/// the old server stored them in its cache, the core never did.
fn announce() -> impl Strategy<Value = Announce> {
    let said = (
        proptest::sample::select(vec!["m-a", "m-b", "m-x"]),
        opt(vec![4u32, 8, 16]),
        opt(vec![8_192u64, 16_384]),
        text(&["amd64", "arm64"]),
        opt(vec![DroneKind::Lxc, DroneKind::Qemu, DroneKind::BareMetal]),
        text(&["1", "2"]),
    )
        .prop_map(|(m, cores, ram_mb, arch, kind, version)| SpecFacts {
            machine_id: Some(m.to_owned()),
            cores,
            ram_mb,
            arch,
            kind,
            version,
        });
    let beat = (
        proptest::sample::select(vec!["a", "b", "c"]),
        opt(vec![
            DroneHealth::Healthy,
            DroneHealth::Degraded,
            DroneHealth::Critical,
        ]),
        opt(vec!["-O2", "-O3"]),
        text(&["snap-1", "snap-2"]),
        opt(vec![10u8, 95]),
    )
        .prop_map(|(d, health, cflags, snapshot, mem)| Heartbeat {
            drone: name(d),
            health,
            env: cflags.map(env),
            portage_snapshot: snapshot,
            mem_percent: mem,
            ..Heartbeat::default()
        });
    (said, beat).prop_map(|(said, beat)| Announce { said, beat })
}

fn check_merged(before: Option<&DroneSpec>, a: &Announce, after: &DroneSpec) {
    let Some(before) = before else {
        return;
    };
    let s = &a.said;
    assert_eq!(after.cores, s.cores.unwrap_or(before.cores), "cores");
    assert_eq!(after.ram_mb, s.ram_mb.unwrap_or(before.ram_mb), "ram_mb");
    assert_eq!(after.kind, s.kind.unwrap_or(before.kind), "kind");
    let or = |said: &Option<String>, was: &Option<String>| said.clone().or_else(|| was.clone());
    assert_eq!(after.version, or(&s.version, &before.version), "version");
    assert_eq!(after.arch, or(&s.arch, &before.arch), "arch");
    assert_eq!(
        after.machine_id,
        or(&s.machine_id, &before.machine_id),
        "machine_id"
    );
    assert_eq!(
        after.portage_snapshot,
        or(&a.beat.portage_snapshot, &before.portage_snapshot),
        "portage_snapshot"
    );
    let env = a.beat.env.clone().unwrap_or_else(|| before.env.clone());
    assert_eq!(after.env, env, "env");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn an_announcement_merges_like_the_old_register_and_heartbeat_pair(
        steps in proptest::collection::vec((announce(), 0u64..40_000), 1..24)
    ) {
        let mut run = Run::new();
        for (a, advance) in steps {
            run.now += advance;
            let before = held(&run.swarm, a.drone());
            let input = Input::Announce(a.clone());
            // The old pair, from the same facts.
            let (old_digest, old_out) = outcome(&run, old_pair(before.as_ref(), &a));
            // What the store logs means the same.
            let condensed = run.swarm.condense(input.clone());
            let (short_digest, short_out) = outcome(&run, vec![condensed]);
            let out = run.feed(input);
            let digest = run.swarm.digest();
            prop_assert_eq!(digest, old_digest, "state differs from the old pair's");
            prop_assert_eq!(&out, &old_out, "outputs differ from the old pair's");
            prop_assert_eq!(digest, short_digest, "the condensed input gives another state");
            prop_assert_eq!(&out, &short_out, "the condensed input gives other outputs");
            let after = held(&run.swarm, a.drone()).expect("an announced drone is known");
            check_merged(before.as_ref(), &a, &after);
        }
    }

    #[test]
    fn an_announcement_that_repeats_the_spec_is_just_a_heartbeat(
        steps in proptest::collection::vec((announce(), 0u64..40_000), 1..16)
    ) {
        let mut run = Run::new();
        for (a, advance) in steps {
            run.now += advance;
            let drone = a.drone().clone();
            if let Some(spec) = held(&run.swarm, &drone) {
                // Everything the drone could say, all of it what the core holds already.
                let same = Announce {
                    said: SpecFacts::from(&spec),
                    beat: Heartbeat {
                        env: Some(spec.env.clone()),
                        portage_snapshot: spec.portage_snapshot.clone(),
                        ..a.beat.clone()
                    },
                };
                let plain = Heartbeat {
                    env: None,
                    portage_snapshot: None,
                    ..a.beat.clone()
                };
                let (hb_digest, hb_out) = outcome(&run, vec![Input::Heartbeat(plain.clone())]);
                let (digest, out) = outcome(&run, vec![Input::Announce(same.clone())]);
                prop_assert_eq!(digest, hb_digest);
                prop_assert_eq!(out, hb_out);
                // And it logs no more than that heartbeat.
                let logged = serde_json::to_value(run.swarm.condense(Input::Announce(same)))
                    .expect("serialises");
                let heartbeat = serde_json::to_value(Input::Heartbeat(plain)).expect("serialises");
                let (Some(logged), Some(heartbeat)) = (logged.as_object(), heartbeat.as_object())
                else {
                    panic!("inputs serialise as objects");
                };
                for key in logged.keys() {
                    prop_assert!(
                        key == "type" || heartbeat.contains_key(key),
                        "the condensed announcement logs {:?}: {:?}", key, logged
                    );
                }
            }
            run.feed(Input::Announce(a));
        }
    }
}

fn bare(drone: &str, said: SpecFacts) -> Input {
    Input::Announce(Announce {
        said,
        beat: Heartbeat {
            drone: name(drone),
            ..Heartbeat::default()
        },
    })
}

#[test]
fn a_field_left_out_keeps_its_value_and_a_present_one_replaces_it() {
    let mut run = Run::new();
    let a = name("a");
    run.feed(bare("a", SpecFacts::default()));
    assert_eq!(
        held(&run.swarm, &a),
        Some(spec("a")),
        "nothing said, nothing changed"
    );
    run.feed(bare(
        "a",
        SpecFacts {
            cores: Some(16),
            arch: Some("arm64".into()),
            ..SpecFacts::default()
        },
    ));
    let want = DroneSpec {
        cores: 16,
        arch: Some("arm64".into()),
        ..spec("a")
    };
    assert_eq!(held(&run.swarm, &a), Some(want));
}

#[test]
fn zero_counts_and_an_unknown_kind_say_nothing() {
    let mut run = Run::new();
    let said = SpecFacts {
        cores: Some(0),
        ram_mb: Some(0),
        kind: Some(DroneKind::Unknown),
        ..SpecFacts::default()
    };
    run.feed(bare("a", said.clone()));
    assert_eq!(held(&run.swarm, &name("a")), Some(spec("a")));
    // A new drone that says so gets one core and unknown RAM.
    let out = run.feed(bare("c", said));
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Event(Event::Registered { drone, .. }) if drone.as_str() == "c")
        ),
        "{out:?}"
    );
    let c = held(&run.swarm, &name("c")).expect("c registered");
    assert_eq!((c.cores, c.ram_mb, c.kind), (1, 0, DroneKind::Unknown));
}

#[test]
fn a_new_machine_id_is_a_new_incarnation_that_loses_its_leases() {
    let mut run = Run::new();
    let a = name("a");
    let held_before = run.swarm.view().drone(&a).expect("a").leases.len();
    assert!(held_before > 0, "a holds work");
    let out = run.feed(bare(
        "a",
        SpecFacts {
            machine_id: Some("m-new".into()),
            ..SpecFacts::default()
        },
    ));
    let view = run.swarm.view().drone(&a).expect("a");
    assert_eq!(view.epoch.0, 2, "{out:?}");
    assert!(view.leases.is_empty(), "{out:?}");
}

#[test]
fn an_unchanged_announcement_logs_none_of_the_spec() {
    let run = Run::new();
    let s = spec("a");
    let full = Input::Announce(Announce {
        said: SpecFacts::from(&s),
        beat: Heartbeat {
            drone: s.name.clone(),
            env: Some(s.env.clone()),
            portage_snapshot: s.portage_snapshot.clone(),
            ..Heartbeat::default()
        },
    });
    let logged = serde_json::to_string(&run.swarm.condense(full)).expect("serialises");
    assert_eq!(logged, r#"{"type":"announce","drone":"a"}"#);
    // A new drone's is logged whole: there is nothing to leave out.
    let new = bare("c", SpecFacts::from(&spec("c")));
    assert_eq!(run.swarm.condense(new.clone()), new);
}
