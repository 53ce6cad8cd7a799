//! Every numeric field of an input has a bound: absurd values are clamped,
//! never allowed to overflow or pin a learned figure.

use swarm_core::time::MAX_DURATION_MS;
use swarm_core::*;

struct Run {
    swarm: Swarm,
    seq: u64,
    at: u64,
}

impl Run {
    fn new() -> Run {
        Run {
            swarm: Swarm::new(Config::default()).expect("defaults are valid"),
            seq: 0,
            at: 1_000,
        }
    }

    fn feed(&mut self, input: Input) -> Vec<Output> {
        self.seq += 1;
        self.at += 1_000;
        let out = self.swarm.handle(&Envelope {
            seq: Seq(self.seq),
            at: Timestamp(self.at),
            input,
        });
        self.swarm.check_invariants().expect("invariants");
        out
    }
}

fn drone() -> DroneName {
    DroneName::new("drone-alpha").expect("name")
}

/// Builds `atom` once on `drone()`, reporting `duration_ms`.
fn build_once(run: &mut Run, atom: &Atom, duration_ms: Option<u64>, outcome: Outcome) {
    run.feed(Input::Heartbeat(Heartbeat {
        drone: drone(),
        ..Heartbeat::default()
    }));
    run.feed(Input::Enqueue(Enqueue {
        packages: vec![PackageSpec::new(atom.clone())],
        ..Enqueue::default()
    }));
    let out = run.feed(Input::RequestWork {
        drone: drone(),
        free_slots: Some(1),
    });
    let lease = out
        .iter()
        .find_map(|o| match o {
            Output::Command(Command::Assign { lease, .. }) => Some(*lease),
            _ => None,
        })
        .unwrap_or_else(|| panic!("assigned: {out:?} {}", run.swarm.view().explain(atom)));
    run.feed(Input::BuildFinished {
        report: Report {
            drone: drone(),
            package: atom.clone(),
            lease: Some(lease),
            epoch: None,
        },
        outcome,
        duration_ms,
    });
}

#[test]
fn an_absurd_build_duration_is_clamped_and_does_not_pin_the_estimate() {
    let mut run = Run::new();
    run.feed(Input::Register(DroneSpec {
        name: drone(),
        cores: 8,
        ram_mb: 16_384,
        ..DroneSpec::default()
    }));
    let a1 = Atom::parse("dev-libs/a-1").expect("atom");
    build_once(&mut run, &a1, Some(u64::MAX), Outcome::Success);
    let learned = run.swarm.view().learned_durations();
    assert_eq!(learned.get("dev-libs/a"), Some(&MAX_DURATION_MS));
    // Honest reports pull the estimate back down; u64::MAX would have stuck.
    for v in 2..40 {
        let a = Atom::parse(&format!("dev-libs/a-{v}")).expect("atom");
        build_once(&mut run, &a, Some(60_000), Outcome::Success);
    }
    let learned = run.swarm.view().learned_durations()["dev-libs/a"];
    assert!(learned < 3_600_000, "estimate recovered to {learned} ms");
    // A hint is clamped the same way, and the critical path stays finite.
    let b = Atom::parse("dev-libs/b-1").expect("atom");
    let c = Atom::parse("dev-libs/c-1").expect("atom");
    run.feed(Input::Enqueue(Enqueue {
        packages: vec![
            PackageSpec {
                estimate_s: Some(u64::MAX),
                ..PackageSpec::new(b.clone())
            },
            PackageSpec {
                estimate_s: Some(u64::MAX),
                deps: vec![b.clone()],
                ..PackageSpec::new(c)
            },
        ],
        ..Enqueue::default()
    }));
    let view = run.swarm.view();
    let pb = view.package(&b).expect("b");
    assert_eq!(pb.estimate_ms, MAX_DURATION_MS);
    assert_eq!(pb.critical_path_ms, 2 * MAX_DURATION_MS);
}

#[test]
fn an_oom_on_a_drone_claiming_all_the_ram_in_the_world_does_not_overflow() {
    let mut run = Run::new();
    run.feed(Input::Register(DroneSpec {
        name: drone(),
        cores: u32::MAX,
        ram_mb: u64::MAX,
        ..DroneSpec::default()
    }));
    let a = Atom::parse("dev-libs/a-1").expect("atom");
    build_once(
        &mut run,
        &a,
        Some(u64::MAX),
        Outcome::Failed {
            class: FailureClass::Oom,
            detail: "killed".into(),
        },
    );
    assert!(run.swarm.view().package(&a).is_some());
}
