//! The state-machine property test: every input plus `Advance { ms }`, against
//! a small reference model, with all twelve invariants of DESIGN §8 checked
//! after every step.
//!
//! - `check_invariants` covers 1, 2, 6, 7, 9, 11 and index consistency;
//! - `Monitor` covers 3, 4, 5, 6, 10, 11 from its own record of the inputs;
//! - this file adds, independently of the core's code: the model's drone and
//!   queue bookkeeping, work conservation (8) by brute force, dependencies (9)
//!   from the declared DAG, fencing (3) by comparing the whole queue before and
//!   after a stale report, snapshot/restore every step, and replay determinism
//!   (12) at the end of every case.

mod common;

use common::{live_lease_named, OwnReports};
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};
use std::collections::{BTreeMap, BTreeSet};
use swarm_core::*;

const DRONES: [&str; 5] = ["alpha", "beta", "gamma", "delta", "sweeper-1"];
const ATOMS: usize = 10;
const HOUR: u64 = 3_600_000;

fn drone(i: usize) -> DroneName {
    DroneName::new(DRONES[i]).expect("valid test name")
}

fn atom(i: usize) -> Atom {
    Atom::parse(&format!("dev-libs/p{i}-1.{i}")).expect("valid test atom")
}

#[derive(Clone, Debug)]
enum OutcomeGen {
    Success,
    Failed(FailureClass),
    Returned,
    UploadFailed,
    Undelivered,
    Masked,
}

#[derive(Clone, Debug)]
enum Step {
    Register {
        d: usize,
        machine: u8,
        cores: u32,
        ram_gb: u64,
        kind: DroneKind,
        portage: Option<u8>,
    },
    Heartbeat {
        d: usize,
        health: Option<DroneHealth>,
        report_leases: bool,
        start_first: bool,
        task: Option<usize>,
    },
    RequestWork {
        d: usize,
        free: u32,
    },
    Start {
        d: usize,
        k: usize,
    },
    Finish {
        d: usize,
        k: usize,
        outcome: OutcomeGen,
        legacy: bool,
    },
    Stale {
        d: usize,
        kind: u8,
        a: usize,
    },
    Probe {
        d: usize,
        status: ProbeStatus,
    },
    Enqueue {
        pkgs: Vec<(usize, Vec<usize>, i32)>,
        portage: Option<u8>,
    },
    Control(u8, usize, usize),
    Recovered,
    Tick,
    Advance {
        ms: u64,
    },
}

#[derive(Clone, Debug, Default)]
struct ModelDrone {
    machine: u8,
    cores: u32,
    ram_gb: u64,
    last_hb: u64,
    health: Option<DroneHealth>,
    paused: bool,
    drained: bool,
    portage: Option<String>,
}

/// What the inputs alone determine.
#[derive(Clone, Debug, Default)]
struct Model {
    now: u64,
    drones: BTreeMap<usize, ModelDrone>,
    paused: bool,
    expected_portage: Option<String>,
    /// Enqueued since the last `fresh`: these must all be in the queue.
    since_fresh: BTreeSet<usize>,
    /// Ever enqueued: the queue holds nothing else.
    ever: BTreeSet<usize>,
}

fn portage(v: u8) -> String {
    format!("2026-11-{:02} 00:00", 10 + v)
}

struct RefModel;

impl ReferenceStateMachine for RefModel {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            now: 1_700_000_000_000,
            ..Model::default()
        })
        .boxed()
    }

    fn transitions(m: &Model) -> BoxedStrategy<Step> {
        let registered: Vec<usize> = m.drones.keys().copied().collect();
        let d: BoxedStrategy<usize> = if registered.is_empty() {
            (0..DRONES.len()).boxed()
        } else {
            prop_oneof![9 => proptest::sample::select(registered), 1 => 0..DRONES.len()].boxed()
        };
        let (register_w, enqueue_w) = (
            if m.drones.len() < 2 { 12 } else { 2 },
            if m.ever.is_empty() { 10 } else { 2 },
        );
        let kind = prop_oneof![
            Just(DroneKind::Lxc),
            Just(DroneKind::Qemu),
            Just(DroneKind::BareMetal)
        ];
        let health = prop_oneof![
            6 => Just(None),
            3 => Just(Some(DroneHealth::Healthy)),
            1 => Just(Some(DroneHealth::Degraded)),
            1 => Just(Some(DroneHealth::Critical)),
            1 => Just(Some(DroneHealth::Recovering)),
        ];
        let outcome = prop_oneof![
            6 => Just(OutcomeGen::Success),
            2 => Just(OutcomeGen::Failed(FailureClass::Build)),
            2 => Just(OutcomeGen::Failed(FailureClass::Infra)),
            1 => Just(OutcomeGen::Failed(FailureClass::Oom)),
            1 => Just(OutcomeGen::Returned),
            1 => Just(OutcomeGen::UploadFailed),
            1 => Just(OutcomeGen::Undelivered),
            1 => Just(OutcomeGen::Masked),
        ];
        let status = prop_oneof![
            3 => Just(ProbeStatus::Ok),
            2 => Just(ProbeStatus::Unreachable),
            2 => Just(ProbeStatus::Timeout),
            2 => Just(ProbeStatus::ServiceDown),
            1 => Just(ProbeStatus::Overloaded),
            1 => Just(ProbeStatus::DiskWarning),
            1 => Just(ProbeStatus::DiskCritical),
            1 => Just(ProbeStatus::MemoryCritical),
        ];
        let pkg = (0..ATOMS).prop_flat_map(|i| {
            (
                Just(i),
                proptest::collection::vec(0..i.max(1), 0..=(i.min(3))),
                -1..=2i32,
            )
                .prop_map(|(i, deps, prio)| {
                    (i, deps.into_iter().filter(|d| *d < i).collect(), prio)
                })
        });
        prop_oneof![
            register_w => (d.clone(), 0..3u8, 1..=32u32, 4..=64u64, kind, proptest::option::of(0..3u8))
                .prop_map(|(d, machine, cores, ram_gb, kind, portage)| Step::Register { d, machine, cores, ram_gb, kind, portage }),
            12 => (d.clone(), health, any::<bool>(), any::<bool>(), proptest::option::weighted(0.2, 0..ATOMS))
                .prop_map(|(d, health, report_leases, start_first, task)| Step::Heartbeat { d, health, report_leases, start_first, task }),
            8 => (d.clone(), 0..4u32).prop_map(|(d, free)| Step::RequestWork { d, free }),
            4 => (d.clone(), 0..3usize).prop_map(|(d, k)| Step::Start { d, k }),
            6 => (d.clone(), 0..3usize, outcome, any::<bool>()).prop_map(|(d, k, outcome, legacy)| Step::Finish { d, k, outcome, legacy }),
            2 => (d.clone(), 0..4u8, 0..ATOMS).prop_map(|(d, kind, a)| Step::Stale { d, kind, a }),
            3 => (d.clone(), status).prop_map(|(d, status)| Step::Probe { d, status }),
            enqueue_w => (proptest::collection::vec(pkg, 1..6), proptest::option::weighted(0.2, 0..3u8))
                .prop_map(|(pkgs, portage)| Step::Enqueue { pkgs, portage }),
            2 => (0..17u8, d.clone(), 0..ATOMS).prop_map(|(c, d, a)| Step::Control(c, d, a)),
            1 => Just(Step::Recovered),
            3 => Just(Step::Tick),
            6 => prop_oneof![
                12 => 1_000..30_000u64,
                3 => 30_000..200_000u64,
                1 => 200_000..1_200_000u64,
                1 => 1_200_000..(2 * HOUR),
            ].prop_map(|ms| Step::Advance { ms }),
        ]
        .boxed()
    }

    fn apply(mut m: Model, step: &Step) -> Model {
        match step {
            Step::Register {
                d,
                machine,
                cores,
                ram_gb,
                portage: p,
                ..
            } => {
                let md = m.drones.entry(*d).or_default();
                md.machine = *machine;
                md.cores = *cores;
                md.ram_gb = *ram_gb;
                md.last_hb = m.now;
                if let Some(p) = p {
                    md.portage = Some(portage(*p));
                }
            }
            Step::Heartbeat { d, health, .. } => {
                if let Some(md) = m.drones.get_mut(d) {
                    md.last_hb = m.now;
                    if health.is_some() {
                        md.health = *health;
                    }
                }
            }
            Step::Enqueue { pkgs, portage: p } => {
                for (i, _, _) in pkgs {
                    m.since_fresh.insert(*i);
                    m.ever.insert(*i);
                }
                if let Some(p) = p {
                    m.expected_portage = Some(portage(*p));
                }
            }
            Step::Control(c, d, _) => match c {
                0 => m.paused = true,
                1 => m.paused = false,
                2 | 3 => {
                    if let Some(md) = m.drones.get_mut(d) {
                        md.paused = *c == 2;
                    }
                }
                4 | 5 => {
                    if let Some(md) = m.drones.get_mut(d) {
                        md.drained = *c == 4;
                    }
                }
                12 => m.since_fresh.clear(),
                _ => {}
            },
            Step::Advance { ms } => m.now += ms,
            _ => {}
        }
        m
    }
}

/// The system under test plus what the test learns from its outputs.
struct Sut {
    swarm: Swarm,
    monitor: Monitor,
    log: Vec<(Envelope, Vec<Output>)>,
    seq: u64,
    now: u64,
    /// (drone, package) -> when it failed there, from BuildFailed events.
    failed: BTreeMap<(DroneName, Atom), u64>,
    /// Package -> MiB it needs, from OOM failures.
    ram_need: BTreeMap<Atom, u64>,
    /// Declared dependencies of each queued package, as it was queued.
    deps: BTreeMap<Atom, Vec<Atom>>,
    /// When each package was (re)queued and each lease issued, in steps.
    queued_step: BTreeMap<Atom, u64>,
    lease_step: BTreeMap<LeaseId, u64>,
    /// Ended leases, to send stale reports about.
    ended: Vec<(DroneName, Atom, LeaseId)>,
    /// The leases a drone's own finished report ended: the only ones a report may be
    /// answered about as a repeat.
    own: OwnReports,
}

impl Sut {
    fn send(&mut self, input: Input) -> Vec<Output> {
        self.seq += 1;
        let env = Envelope {
            seq: Seq(self.seq),
            at: Timestamp(self.now),
            input,
        };
        // The log format round-trips every input the model can produce.
        let line = serde_json::to_string(&env).expect("envelope serialises");
        let back: Envelope = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(back, env, "log line does not round-trip");
        let named = match &env.input {
            Input::BuildFinished { report, .. } => live_lease_named(self.swarm.view(), report),
            _ => None,
        };
        let out = self.swarm.handle(&env);
        if let Err(v) = self.swarm.check_invariants_deep() {
            panic!("after {:?}: {v}\noutputs: {out:?}", env.input);
        }
        if let Err(v) = self.monitor.check_step(&env, &out, &self.swarm) {
            panic!("after {:?}: {v}\noutputs: {out:?}", env.input);
        }
        self.learn(&out);
        let taken = matches!(
            self.swarm.verdict().and_then(|v| v.report),
            Some(Reported::Built | Reported::Accepted)
        );
        self.own.note(&env.input, named, taken, &out);
        self.log.push((env, out.clone()));
        out
    }

    fn learn(&mut self, out: &[Output]) {
        for o in out {
            match o {
                Output::Event(Event::BuildFailed {
                    drone,
                    package,
                    class,
                    lease,
                    ..
                }) => {
                    self.ended.push((drone.clone(), package.clone(), *lease));
                    self.failed
                        .insert((drone.clone(), package.clone()), self.now);
                    if *class == FailureClass::Oom {
                        let ram = self.swarm.view().drone(drone).map_or(0, |d| d.ram_mb);
                        let need = self.ram_need.entry(package.clone()).or_default();
                        *need = (*need).max(ram + 1);
                    }
                }
                Output::Event(Event::Unblocked { package, .. }) => {
                    self.failed.retain(|(_, p), _| p != package);
                }
                Output::Command(Command::Assign { lease, .. }) => {
                    self.lease_step.insert(*lease, self.seq);
                }
                Output::Event(Event::Reclaimed {
                    drone,
                    package,
                    lease,
                    ..
                })
                | Output::Event(Event::Built {
                    drone,
                    package,
                    lease,
                    ..
                }) => {
                    self.ended.push((drone.clone(), package.clone(), *lease));
                }
                _ => {}
            }
        }
    }

    fn lease_of(&self, d: &DroneName, k: usize) -> Option<LeaseView> {
        let leases = self.swarm.view().leases_of(d);
        let n = leases.len();
        (n > 0).then(|| leases[k % n].clone())
    }

    /// Work conservation (invariant 8), by brute force from the model and what
    /// the test learned; the scheduler's own code is not consulted.
    fn expected_work(&self, m: &Model, d: usize, free: u32) -> Option<Atom> {
        let name = drone(d);
        let md = m.drones.get(&d)?;
        let v = self.swarm.view();
        let dv = v.drone(&name)?;
        let stale_portage =
            matches!((&m.expected_portage, &md.portage), (Some(e), h) if h.as_ref() != Some(e));
        let healthy = matches!(md.health, None | Some(DroneHealth::Healthy));
        if free == 0
            || name.is_sweeper()
            || m.paused
            || md.paused
            || md.drained
            || !healthy
            || stale_portage
            || m.now - md.last_hb >= Config::default().heartbeat_grace_ms
            || dv.grounded_until.is_some()
            || dv.no_work.as_deref() == Some("held after upload failures")
        {
            return None;
        }
        let slots = (md.cores / 4).max(1) as usize;
        let held = dv.leases.len();
        let not_started = dv.leases.iter().filter(|l| l.started_at.is_none()).count();
        if held >= slots || not_started >= 2 {
            return None;
        }
        let queue: BTreeMap<Atom, PackageStatus> = v.queue().map(|p| (p.atom, p.status)).collect();
        let brake = v.brake();
        queue.iter().find_map(|(a, status)| {
            let ready = matches!(status, PackageStatus::Queued { retry_at: None });
            let deps_built = self.deps.get(a).into_iter().flatten().all(|dep| {
                !matches!(queue.get(dep), Some(s) if !matches!(s, PackageStatus::Built { .. }))
            });
            let failed_here = self
                .failed
                .get(&(name.clone(), a.clone()))
                .is_some_and(|t| m.now - t < Config::default().failure_memory_ms);
            let too_big = self
                .ram_need
                .get(a)
                .is_some_and(|need| *need > md.ram_gb * 1024);
            let held_by_brake = brake.engaged && brake.held.contains(a);
            (ready && deps_built && !failed_here && !too_big && !held_by_brake).then(|| a.clone())
        })
    }

    fn check_dependencies(&self) {
        let v = self.swarm.view();
        let queue: BTreeMap<Atom, PackageStatus> = v.queue().map(|p| (p.atom, p.status)).collect();
        for l in v.leases() {
            let issued = self.lease_step[&l.lease];
            for dep in self.deps.get(&l.package).into_iter().flatten() {
                let queued_before = self.queued_step.get(dep).is_some_and(|s| *s < issued);
                if let Some(status) = queue.get(dep) {
                    assert!(
                        !queued_before || matches!(status, PackageStatus::Built { .. }),
                        "invariant 9: {} leased while dependency {dep} is {status:?}",
                        l.package
                    );
                }
            }
        }
    }
}

struct SwarmTest;

impl StateMachineTest for SwarmTest {
    type SystemUnderTest = Sut;
    type Reference = RefModel;

    fn init_test(m: &Model) -> Sut {
        Sut {
            swarm: Swarm::new(Config::default()).expect("valid defaults"),
            monitor: Monitor::new(Config::default()),
            log: Vec::new(),
            seq: 0,
            now: m.now,
            failed: BTreeMap::new(),
            ram_need: BTreeMap::new(),
            deps: BTreeMap::new(),
            queued_step: BTreeMap::new(),
            lease_step: BTreeMap::new(),
            ended: Vec::new(),
            own: OwnReports::default(),
        }
    }

    fn apply(mut s: Sut, m: &Model, step: Step) -> Sut {
        s.now = m.now;
        match step {
            Step::Register {
                d,
                machine,
                cores,
                ram_gb,
                kind,
                portage: p,
            } => {
                s.send(Input::Register(DroneSpec {
                    name: drone(d),
                    machine_id: Some(format!("machine-{d}-{machine}")),
                    cores,
                    ram_mb: ram_gb * 1024,
                    kind,
                    portage_snapshot: p.map(portage),
                    ..DroneSpec::default()
                }));
            }
            Step::Heartbeat {
                d,
                health,
                report_leases,
                start_first,
                task,
            } => {
                let name = drone(d);
                let held: Vec<LeaseId> = s
                    .swarm
                    .view()
                    .leases_of(&name)
                    .iter()
                    .map(|l| l.lease)
                    .collect();
                // A drone that reports leases sometimes also reports an ended one it still runs.
                let mut leases = held.clone();
                let ended = s
                    .ended
                    .iter()
                    .rev()
                    .find(|(dn, _, _)| *dn == name)
                    .map(|e| e.2);
                leases.extend(ended);
                let registered = s.swarm.view().drone(&name).is_some();
                let out = s.send(Input::Heartbeat(Heartbeat {
                    drone: name.clone(),
                    health,
                    leases: report_leases.then_some(leases),
                    started: if start_first {
                        held.into_iter().take(1).collect()
                    } else {
                        Vec::new()
                    },
                    current_task: task.map(atom),
                    ..Heartbeat::default()
                }));
                if let (true, true, Some(ended)) = (registered, report_leases, ended) {
                    let revoked = out.iter().any(|o| matches!(o,
                        Output::Command(Command::Revoke { drone, lease: Some(l), .. }) if *drone == name && *l == ended));
                    // A lease its own report ended is listed until the report's answer is
                    // heard (it may have been lost): no foreign work, nothing to stop.
                    let own = s.own.ended_by(&name, ended);
                    assert_eq!(
                        revoked, !own,
                        "a heartbeat still running ended lease {ended} (its own report's: {own}): {out:?}"
                    );
                }
            }
            Step::RequestWork { d, free } => {
                // Fire due timers first so the expectation is computed on the state the request sees.
                s.send(Input::Tick);
                let expected = s.expected_work(m, d, free);
                let out = s.send(Input::RequestWork {
                    drone: drone(d),
                    free_slots: Some(free),
                });
                let assigned = out.iter().any(|o| matches!(o, Output::Command(Command::Assign { drone: to, .. }) if *to == drone(d)));
                if let Some(a) = expected {
                    assert!(assigned, "invariant 8: {} asked with {free} free slots while {a} was ready for it; got {out:?}", drone(d));
                }
            }
            Step::Start { d, k } => {
                if let Some(l) = s.lease_of(&drone(d), k) {
                    s.send(Input::BuildStarted(Report {
                        drone: drone(d),
                        package: l.package,
                        lease: Some(l.lease),
                        epoch: None,
                    }));
                }
            }
            Step::Finish {
                d,
                k,
                outcome,
                legacy,
            } => {
                if let Some(l) = s.lease_of(&drone(d), k) {
                    let outcome = match outcome {
                        OutcomeGen::Success => Outcome::Success,
                        OutcomeGen::Failed(class) => Outcome::Failed {
                            class,
                            detail: "boom".into(),
                        },
                        OutcomeGen::Returned => Outcome::Returned {
                            reason: "shutdown".into(),
                        },
                        OutcomeGen::UploadFailed => Outcome::UploadFailed {
                            detail: String::new(),
                        },
                        OutcomeGen::Undelivered => Outcome::Undelivered {
                            detail: "missing_binary".into(),
                        },
                        OutcomeGen::Masked => Outcome::Masked,
                    };
                    let lease = (!legacy).then_some(l.lease);
                    let report = Report {
                        drone: drone(d),
                        package: l.package,
                        lease,
                        epoch: None,
                    };
                    s.send(Input::BuildFinished {
                        report,
                        outcome,
                        duration_ms: Some(42_000),
                    });
                }
            }
            Step::Stale { d, kind, a } => stale_report(&mut s, d, kind, a),
            Step::Probe { d, status } => {
                s.send(Input::ProbeResult {
                    drone: drone(d),
                    status,
                });
            }
            Step::Enqueue { pkgs, portage: p } => {
                let before: BTreeSet<Atom> = s.swarm.view().queue().map(|p| p.atom).collect();
                let specs: Vec<PackageSpec> = pkgs
                    .iter()
                    .map(|(i, deps, prio)| PackageSpec {
                        estimate_s: None,
                        atom: atom(*i),
                        deps: deps.iter().map(|d| atom(*d)).collect(),
                        priority: *prio,
                        profile: None,
                    })
                    .collect();
                s.send(Input::Enqueue(Enqueue {
                    packages: specs.clone(),
                    generation: None,
                    portage_snapshot: p.map(portage),
                }));
                for spec in specs {
                    // The first spec of an atom new to the queue is the one that counts.
                    if !before.contains(&spec.atom) && !s.queued_step.contains_key(&spec.atom) {
                        s.deps.insert(spec.atom.clone(), spec.deps);
                        s.queued_step.insert(spec.atom, s.seq);
                    }
                }
            }
            Step::Control(c, d, a) => {
                let action = control(c, d, a);
                let fresh = matches!(action, Control::Fresh);
                let clears = matches!(action, Control::ClearFailures);
                let history = matches!(action, Control::ClearHistory);
                let retried = match &action {
                    Control::Retry {
                        package,
                        profile: None,
                    } => Some(package.clone()),
                    _ => None,
                };
                let out = s.send(Input::Control(action));
                let applied = out.iter().any(|o| {
                    matches!(o, Output::Event(Event::ControlApplied { action, .. }) if action == "retry")
                });
                if let (Some(package), true) = (retried, applied) {
                    // A retry forgets which drones the package failed on.
                    s.failed.retain(|(_, p), _| *p != package);
                }
                if fresh {
                    let kept: BTreeSet<Atom> = s.swarm.view().queue().map(|p| p.atom).collect();
                    s.deps.retain(|a, _| kept.contains(a));
                    s.queued_step.retain(|a, _| kept.contains(a));
                }
                if clears {
                    s.failed.clear();
                }
                if history {
                    s.ram_need.clear();
                }
            }
            Step::Recovered => {
                s.send(Input::Recovered);
            }
            Step::Tick | Step::Advance { .. } => {
                s.send(Input::Tick);
            }
        }
        s
    }

    fn check_invariants(s: &Sut, m: &Model) {
        let v = s.swarm.view();
        let names: BTreeSet<DroneName> = v.drones().into_iter().map(|d| d.name).collect();
        let expected: BTreeSet<DroneName> = m.drones.keys().map(|d| drone(*d)).collect();
        assert_eq!(names, expected, "registered drones differ from the model");
        for (d, md) in &m.drones {
            let dv = v.drone(&drone(*d)).expect("registered");
            assert_eq!(
                (dv.paused, dv.drained),
                (md.paused, md.drained),
                "operator flags of {}",
                dv.name
            );
        }
        assert_eq!(v.paused(), m.paused);
        let queue: BTreeSet<Atom> = v.queue().map(|p| p.atom).collect();
        for i in &m.since_fresh {
            assert!(
                queue.contains(&atom(*i)),
                "{} was queued but is missing",
                atom(*i)
            );
        }
        for a in &queue {
            assert!(
                m.ever.iter().any(|i| atom(*i) == *a),
                "{a} appeared without being queued"
            );
        }
        let c = v.counts();
        assert_eq!(
            c.queued + c.assigned + c.built + c.blocked,
            c.total,
            "conservation (1)"
        );
        s.check_dependencies();
        // Snapshot and restore give the same digest.
        let json = serde_json::to_string(s.swarm.state()).expect("state serialises");
        let state: SwarmState = serde_json::from_str(&json).expect("state deserialises");
        let restored = Swarm::restore(state).expect("snapshot restores");
        assert_eq!(
            restored.digest(),
            s.swarm.digest(),
            "restore changed the digest"
        );
    }

    fn teardown(s: Sut) {
        if std::env::var("SWARM_MODEL_STATS").is_ok() {
            let mut kinds: BTreeMap<String, u32> = BTreeMap::new();
            for (_, out) in &s.log {
                for o in out {
                    let k = serde_json::to_value(o).ok().and_then(|v| {
                        let b = &v["body"];
                        b.get("event")
                            .or(b.get("command"))
                            .and_then(|x| x.as_str())
                            .map(str::to_owned)
                    });
                    *kinds.entry(k.unwrap_or_default()).or_default() += 1;
                }
            }
            eprintln!(
                "STATS {}",
                serde_json::to_string(&kinds).unwrap_or_default()
            );
        }
        // 12. Determinism: replaying the log gives the same outputs and digest.
        let mut replay = Swarm::new(Config::default()).expect("valid defaults");
        for (env, out) in &s.log {
            assert_eq!(
                &replay.handle(env),
                out,
                "replay diverged at seq {}",
                env.seq
            );
        }
        assert_eq!(replay.digest(), s.swarm.digest(), "replay digest differs");
        // A restored swarm continues exactly like the original.
        let mut restored = Swarm::restore(s.swarm.state().clone()).expect("restores");
        let mut original = s.swarm;
        let env = Envelope {
            seq: Seq(s.seq + 1),
            at: Timestamp(s.now + 3 * HOUR),
            input: Input::Tick,
        };
        assert_eq!(
            restored.handle(&env),
            original.handle(&env),
            "restored swarm diverged"
        );
        assert_eq!(restored.digest(), original.digest());
    }
}

fn control(c: u8, d: usize, a: usize) -> Control {
    let (drone, package) = (drone(d), atom(a));
    match c {
        0 => Control::Pause,
        1 => Control::Resume,
        2 => Control::PauseDrone { drone },
        3 => Control::ResumeDrone { drone },
        4 => Control::Drain { drone },
        5 => Control::Undrain { drone },
        6 => Control::Unblock {
            package: (a % 2 == 0).then_some(package),
            profile: None,
        },
        7 => Control::Block {
            package,
            profile: None,
        },
        8 => Control::Unground {
            drone: (a % 2 == 0).then_some(drone),
        },
        9 => Control::Reset,
        10 => Control::Rebalance,
        11 => Control::ClearFailures,
        12 => Control::Fresh,
        13 => Control::ResetEscalation { drone },
        14 => Control::Reclaim {
            package: Some(package),
            profile: None,
            drone: None,
        },
        16 => Control::Retry {
            package,
            profile: None,
        },
        _ => [
            Control::RetryFailures,
            Control::ReleaseBrake,
            Control::ClearHistory,
        ][a % 3]
            .clone(),
    }
}

/// Sends a report that cannot be the reporter's live lease, and checks it changed nothing.
fn stale_report(s: &mut Sut, d: usize, kind: u8, a: usize) {
    let name = drone(d);
    if s.swarm.view().drone(&name).is_none() {
        return;
    }
    s.send(Input::Tick); // timers due now fire first, so "before" is what the report sees
    let v = s.swarm.view();
    let report = match kind {
        // A lease id that was never issued.
        0 => Report {
            drone: name.clone(),
            package: atom(a),
            lease: Some(LeaseId(1_000_000 + a as u64)),
            epoch: None,
        },
        // Another drone's live lease.
        1 => match v.leases().into_iter().find(|l| l.drone != name) {
            Some(l) => Report {
                drone: name.clone(),
                package: l.package,
                lease: Some(l.lease),
                epoch: None,
            },
            None => return,
        },
        // An ended lease of this drone.
        2 => match s
            .ended
            .iter()
            .rev()
            .find(|(dn, _, l)| *dn == name && v.lease(*l).is_none())
        {
            Some((_, p, l)) => Report {
                drone: name.clone(),
                package: p.clone(),
                lease: Some(*l),
                epoch: None,
            },
            None => return,
        },
        // Its own live lease, from a wrong epoch.
        _ => match v.leases_of(&name).first() {
            Some(l) => {
                let epoch = v.drone(&name).map(|d| Epoch(d.epoch.0 + 1));
                Report {
                    drone: name.clone(),
                    package: l.package.clone(),
                    lease: Some(l.lease),
                    epoch,
                }
            }
            None => return,
        },
    };
    let queue_before: Vec<PackageView> = v.queue().collect();
    let leases_before = v.leases();
    let finished = a % 2 == 0;
    let input = if finished {
        Input::BuildFinished {
            report: report.clone(),
            outcome: Outcome::Success,
            duration_ms: None,
        }
    } else {
        Input::BuildStarted(report.clone())
    };
    let repeat = if finished {
        s.own.is_repeat(s.swarm.view(), &report, &Outcome::Success)
    } else {
        s.own.is_started_after(s.swarm.view(), &report)
    };
    let out = s.send(input);
    let v = s.swarm.view();
    assert_eq!(
        v.queue().collect::<Vec<_>>(),
        queue_before,
        "invariant 3: stale {report:?} changed the queue"
    );
    assert_eq!(
        v.leases(),
        leases_before,
        "invariant 3: stale {report:?} changed the leases"
    );
    // A finished success of a lease its own success ended is a repeat (its reply was lost), and
    // a start of a lease its own report ended comes too late: either must be answered as a
    // repeat and send nothing. Any other is stale, and the drone is told to stop.
    let answered = s.swarm.verdict().and_then(|v| v.report);
    let repeated = matches!(answered, Some(Reported::Repeated { .. }));
    assert_eq!(repeated, repeat, "{report:?} answered {answered:?}");
    if repeated {
        assert_eq!(out, [], "a repeat sends nothing");
        return;
    }
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Command(Command::Revoke { drone, .. }) if *drone == name)),
        "invariant 3: stale {report:?} got no revoke: {out:?}"
    );
}

prop_state_machine! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(256),
        max_shrink_iters: 4096,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct("proptest-regressions/model.txt"),
        )),
        .. ProptestConfig::default()
    })]

    #[test]
    fn every_invariant_holds_after_every_step(sequential 1..160 => SwarmTest);
}
