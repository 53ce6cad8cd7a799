//! One property per promise of DESIGN §3/§8, each checked after every step of
//! generated schedules (fleet sizes, timings, interleavings, failure patterns),
//! plus deterministic tests of the scheduling policy through the public API.
//!
//! Every step also goes through `common::Harness`, which asserts
//! `check_invariants()` and `Monitor::check_step` after it; the properties
//! below assert their promise from their own record of the inputs, not from the
//! core's bookkeeping.

mod common;

use common::*;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use swarm_core::*;

const SEC: u64 = 1_000;
const MIN: u64 = 60 * SEC;
const HOUR: u64 = 60 * MIN;
/// Start of every run: a realistic wall clock.
const T0: u64 = 1_700_000_000_000;

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        max_shrink_time: 30_000,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/promises.txt",
        ))),
        ..ProptestConfig::default()
    }
}

/// Limits that are not under test pushed out of the way, so the rule under
/// test is the only thing between a schedule and an escalation.
fn unlimited_escalation() -> Config {
    Config {
        max_escalations_per_window: 10_000,
        brake_min_drones: 10_000,
        ..Config::default()
    }
}

fn name_of(i: usize) -> DroneName {
    drone(&format!("d{i}"))
}

fn atom_of(i: usize) -> Atom {
    atom(&format!("dev-libs/p{i}-1.0"))
}

// ---------------------------------------------------------------------------
// Generators

/// One generated drone: machine, heartbeat clock, and when it falls silent.
#[derive(Clone, Debug)]
struct DroneGen {
    cores: u32,
    ram_gb: u64,
    kind: DroneKind,
    /// Heartbeat period, always under `heartbeat_grace`.
    period_ms: u64,
    /// First heartbeat this long after registering (mod the period).
    phase_ms: u64,
    /// Heartbeats carry the lease list (swarm agent) or not (v3 drone).
    reports_leases: bool,
    /// `(start after T0, length)`: no heartbeats then.
    silences: Vec<(u64, u64)>,
    /// Still sends requests and reports while silent (broken heartbeat path).
    partitioned: bool,
}

fn kind() -> impl Strategy<Value = DroneKind> {
    prop::sample::select(vec![
        DroneKind::Lxc,
        DroneKind::Qemu,
        DroneKind::BareMetal,
        DroneKind::Unknown,
    ])
}

fn silence() -> impl Strategy<Value = (u64, u64)> {
    (
        0..3 * HOUR,
        prop_oneof![1..5 * MIN, 5 * MIN..40 * MIN, 40 * MIN..2 * HOUR],
    )
}

fn drone_gen(cores: Vec<u32>, max_silences: usize) -> impl Strategy<Value = DroneGen> {
    (
        prop::sample::select(cores),
        prop::sample::select(vec![8u64, 16, 32, 64]),
        kind(),
        10 * SEC..89 * SEC,
        0..89 * SEC,
        any::<bool>(),
        prop::collection::vec(silence(), 0..=max_silences),
        any::<bool>(),
    )
        .prop_map(
            |(cores, ram_gb, kind, period_ms, phase_ms, reports_leases, silences, partitioned)| {
                DroneGen {
                    cores,
                    ram_gb,
                    kind,
                    period_ms,
                    phase_ms: phase_ms % period_ms,
                    reports_leases,
                    silences,
                    partitioned,
                }
            },
        )
}

fn fleet(
    n: std::ops::RangeInclusive<usize>,
    cores: Vec<u32>,
    max_silences: usize,
) -> impl Strategy<Value = Vec<DroneGen>> {
    prop::collection::vec(drone_gen(cores, max_silences), n)
}

/// `n` packages `dev-libs/p{i}-1.0`; each may depend on up to two earlier ones.
fn queue(
    n: std::ops::RangeInclusive<usize>,
    deps: bool,
) -> impl Strategy<Value = Vec<PackageSpec>> {
    prop::collection::vec(
        (
            -1i32..=1,
            prop::collection::vec(any::<prop::sample::Index>(), 0..=2),
        ),
        n,
    )
    .prop_map(move |specs| {
        specs
            .into_iter()
            .enumerate()
            .map(|(i, (priority, ds))| {
                let mut dep_ids: Vec<usize> = if deps && i > 0 {
                    ds.iter().map(|x| x.index(i)).collect()
                } else {
                    Vec::new()
                };
                dep_ids.sort_unstable();
                dep_ids.dedup();
                PackageSpec {
                    deps: dep_ids.into_iter().map(atom_of).collect(),
                    priority,
                    ..PackageSpec::new(atom_of(i))
                }
            })
            .collect()
    })
}

/// Time between operations: mostly seconds, sometimes minutes, now and then an hour.
fn dt() -> impl Strategy<Value = u64> {
    prop_oneof![6 => 0..30 * SEC, 3 => 30 * SEC..10 * MIN, 1 => 10 * MIN..HOUR]
}

fn short_dt() -> impl Strategy<Value = u64> {
    prop_oneof![4 => 0..20 * SEC, 1 => 20 * SEC..3 * MIN]
}

#[derive(Clone, Copy, Debug)]
enum Fin {
    Success,
    Failed(FailureClass),
    Returned,
    UploadFailed,
    /// Reported built, but the adapter found no binary under the lease.
    Undelivered,
    Masked,
    /// The stale-queue incident's failure: class Infra, "slot conflict".
    SlotConflict,
}

impl Fin {
    fn outcome(self) -> Outcome {
        match self {
            Fin::Success => Outcome::Success,
            Fin::Failed(class) => failed(class, "generated failure"),
            Fin::SlotConflict => failed(FailureClass::Infra, "slot conflict"),
            Fin::Returned => Outcome::Returned {
                reason: "shutdown".into(),
            },
            Fin::UploadFailed => Outcome::UploadFailed {
                detail: String::new(),
            },
            Fin::Undelivered => Outcome::Undelivered {
                detail: "missing_binary: nothing uploaded under this lease".into(),
            },
            Fin::Masked => Outcome::Masked,
        }
    }
}

fn class() -> impl Strategy<Value = FailureClass> {
    prop::sample::select(vec![
        FailureClass::Build,
        FailureClass::Infra,
        FailureClass::Oom,
    ])
}

fn any_fin() -> impl Strategy<Value = Fin> {
    prop_oneof![
        4 => Just(Fin::Success),
        3 => class().prop_map(Fin::Failed),
        1 => Just(Fin::Returned),
        1 => Just(Fin::UploadFailed),
        1 => Just(Fin::Masked),
    ]
}

fn any_status() -> impl Strategy<Value = ProbeStatus> {
    prop::sample::select(vec![
        ProbeStatus::Ok,
        ProbeStatus::Unreachable,
        ProbeStatus::Timeout,
        ProbeStatus::ServiceDown,
        ProbeStatus::Overloaded,
        ProbeStatus::DiskWarning,
        ProbeStatus::DiskCritical,
        ProbeStatus::MemoryCritical,
    ])
}

/// Probe results that are mostly failures, path failures half the time.
fn failing_status() -> impl Strategy<Value = ProbeStatus> {
    prop_oneof![
        6 => prop::sample::select(vec![ProbeStatus::Unreachable, ProbeStatus::Timeout]),
        5 => prop::sample::select(vec![
            ProbeStatus::ServiceDown,
            ProbeStatus::Overloaded,
            ProbeStatus::DiskCritical,
            ProbeStatus::MemoryCritical,
        ]),
        1 => Just(ProbeStatus::DiskWarning),
        1 => Just(ProbeStatus::Ok),
    ]
}

#[derive(Clone, Debug)]
enum Ctl {
    Rebalance,
    ReclaimPackage(usize),
    ReclaimDrone(usize),
    UnblockAll,
    Block(usize),
    Fresh,
    Reset,
    ResetEscalation(usize),
}

/// One thing the world does. Drone and lease indices are reduced modulo what exists.
#[derive(Clone, Debug)]
enum Op {
    Request {
        d: usize,
        slots: u32,
    },
    Start {
        d: usize,
        k: usize,
    },
    Finish {
        d: usize,
        k: usize,
        fin: Fin,
        legacy: bool,
    },
    Health {
        d: usize,
        health: DroneHealth,
    },
    Reregister {
        d: usize,
    },
    Probe {
        d: usize,
        status: ProbeStatus,
    },
    Control(Ctl),
    Recovered,
    Tick,
}

fn request() -> impl Strategy<Value = Op> {
    (0..64usize, 1..=4u32).prop_map(|(d, slots)| Op::Request { d, slots })
}

fn start() -> impl Strategy<Value = Op> {
    (0..64usize, 0..8usize).prop_map(|(d, k)| Op::Start { d, k })
}

fn finish(fin: impl Strategy<Value = Fin>) -> impl Strategy<Value = Op> {
    (0..64usize, 0..8usize, fin, any::<bool>()).prop_map(|(d, k, fin, legacy)| Op::Finish {
        d,
        k,
        fin,
        legacy,
    })
}

// ---------------------------------------------------------------------------
// The driver

/// The check run after every step: (harness, at_ms, input, outputs).
type Check<'c> = dyn FnMut(&Harness, u64, &Input, &[Output]) + 'c;

fn no_check() -> impl FnMut(&Harness, u64, &Input, &[Output]) {
    |_: &Harness, _: u64, _: &Input, _: &[Output]| {}
}

/// A fleet of drone agents around a `Harness`: heartbeats on each drone's own
/// clock, and what each agent believes it holds (from the commands it got).
struct Run {
    h: Harness,
    gens: Vec<DroneGen>,
    names: Vec<DroneName>,
    index: BTreeMap<DroneName, usize>,
    next_beat: Vec<u64>,
    incarnation: Vec<u32>,
    /// Leases each agent holds, by what it was told.
    held: Vec<BTreeMap<LeaseId, Atom>>,
    started: BTreeSet<LeaseId>,
    /// Leases that ended: (holder, lease, package).
    ended: Vec<(usize, LeaseId, Atom)>,
    /// Those a finished report of their holder's ended.
    own: OwnReports,
    atoms: Vec<Atom>,
    now: u64,
}

impl Run {
    fn new(config: Config, gens: &[DroneGen], queue: &[PackageSpec], check: &mut Check<'_>) -> Run {
        let names: Vec<DroneName> = (0..gens.len()).map(name_of).collect();
        let mut run = Run {
            h: Harness::with_config(config),
            gens: gens.to_vec(),
            index: names.iter().cloned().zip(0..).collect(),
            next_beat: gens.iter().map(|g| T0 + g.phase_ms.max(1)).collect(),
            incarnation: vec![0; gens.len()],
            held: vec![BTreeMap::new(); gens.len()],
            started: BTreeSet::new(),
            ended: Vec::new(),
            own: OwnReports::default(),
            atoms: queue.iter().map(|p| p.atom.clone()).collect(),
            names,
            now: T0,
        };
        for i in 0..gens.len() {
            let spec = run.spec(i);
            run.step(T0, Input::Register(spec), check);
        }
        if !queue.is_empty() {
            run.step(
                T0,
                Input::Enqueue(Enqueue {
                    packages: queue.to_vec(),
                    ..Enqueue::default()
                }),
                check,
            );
        }
        run
    }

    fn spec(&self, i: usize) -> DroneSpec {
        let g = &self.gens[i];
        DroneSpec {
            name: self.names[i].clone(),
            machine_id: Some(format!("m{i}-{}", self.incarnation[i])),
            cores: g.cores,
            ram_mb: g.ram_gb * 1024,
            kind: g.kind,
            ..DroneSpec::default()
        }
    }

    fn n(&self) -> usize {
        self.names.len()
    }

    fn silent(&self, i: usize, at: u64) -> bool {
        self.gens[i]
            .silences
            .iter()
            .any(|(s, len)| at >= T0 + s && at < T0 + s + len)
    }

    /// The drone sends nothing at all now.
    fn mute(&self, i: usize) -> bool {
        self.silent(i, self.now) && !self.gens[i].partitioned
    }

    fn step(&mut self, at: u64, input: Input, check: &mut Check<'_>) -> Vec<Output> {
        self.now = self.now.max(at);
        // The live lease a finished report names, as the core resolves it.
        let named = match &input {
            Input::BuildFinished { report, .. } => live_lease_named(self.h.view(), report),
            _ => None,
        };
        let out = self.h.step(at, input.clone());
        let taken = matches!(
            self.h.swarm().verdict().and_then(|v| v.report),
            Some(Reported::Built | Reported::Accepted)
        );
        self.own.note(&input, named, taken, &out);
        self.track(&out);
        check(&self.h, at, &input, &out);
        out
    }

    fn track(&mut self, out: &[Output]) {
        for o in out {
            let (drone, lease, ends) = match o {
                Output::Command(Command::Assign {
                    drone,
                    package,
                    lease,
                    ..
                }) => {
                    if let Some(&i) = self.index.get(drone) {
                        self.held[i].insert(*lease, package.clone());
                    }
                    continue;
                }
                Output::Command(Command::Revoke {
                    drone,
                    lease: Some(lease),
                    ..
                })
                | Output::Event(
                    Event::Reclaimed { drone, lease, .. }
                    | Event::Built { drone, lease, .. }
                    | Event::BuildFailed { drone, lease, .. },
                ) => (drone, *lease, true),
                Output::Event(Event::Started { lease, .. }) => {
                    self.started.insert(*lease);
                    continue;
                }
                _ => continue,
            };
            let Some(&i) = self.index.get(drone) else {
                continue;
            };
            if ends {
                if let Some(package) = self.held[i].remove(&lease) {
                    self.ended.push((i, lease, package));
                }
            }
        }
    }

    /// Sends everything due up to `to` in time order: each drone's heartbeats,
    /// and a `Tick` whenever `poll_timeout()` falls due, as the adapter does.
    /// Then moves to `to`.
    fn advance(&mut self, to: u64, check: &mut Check<'_>) {
        let mut stuck = 0;
        loop {
            let beat = (0..self.n())
                .map(|i| (self.next_beat[i], i))
                .filter(|(at, _)| *at <= to)
                .min();
            let tick = self
                .h
                .swarm()
                .poll_timeout()
                .map(|t| t.as_ms().max(self.now))
                .filter(|at| *at <= to);
            match (beat, tick) {
                (None, None) => break,
                (Some((b, _)), Some(t)) if t < b => {}
                (None, Some(_)) => {}
                (Some((at, i)), _) => {
                    self.next_beat[i] = at + self.gens[i].period_ms;
                    if !self.silent(i, at) {
                        self.heartbeat(i, at, None, check);
                    }
                    continue;
                }
            }
            let at = tick.unwrap_or(self.now);
            stuck = if at == self.now { stuck + 1 } else { 0 };
            assert!(
                stuck < 4,
                "poll_timeout() stays at {at} after Ticks at that instant\n{}",
                self.h.describe(&[])
            );
            self.step(at, Input::Tick, check);
        }
        self.now = self.now.max(to);
    }

    fn heartbeat(
        &mut self,
        i: usize,
        at: u64,
        health: Option<DroneHealth>,
        check: &mut Check<'_>,
    ) -> Vec<Output> {
        let mut hb = Heartbeat {
            drone: self.names[i].clone(),
            health,
            ..Heartbeat::default()
        };
        if self.gens[i].reports_leases {
            hb.leases = Some(self.held[i].keys().copied().collect());
            hb.started = self.held[i]
                .keys()
                .filter(|l| self.started.contains(l))
                .copied()
                .collect();
        }
        self.step(at, Input::Heartbeat(hb), check)
    }

    fn request(&mut self, i: usize, slots: u32, check: &mut Check<'_>) -> Vec<Output> {
        let input = Input::RequestWork {
            drone: self.names[i].clone(),
            free_slots: Some(slots),
        };
        self.step(self.now, input, check)
    }

    /// A request that cannot lead to work stealing: a drone holding nothing
    /// does not ask while nothing is ready.
    fn request_no_steal(&mut self, i: usize, slots: u32, check: &mut Check<'_>) -> Vec<Output> {
        if self.held[i].is_empty() && self.h.view().ready().is_empty() {
            return Vec::new();
        }
        self.request(i, slots, check)
    }

    fn lease_of(&self, i: usize, k: usize) -> Option<(LeaseId, Atom)> {
        let held = &self.held[i];
        if held.is_empty() {
            return None;
        }
        held.iter()
            .nth(k % held.len())
            .map(|(l, a)| (*l, a.clone()))
    }

    fn start(&mut self, i: usize, k: usize, check: &mut Check<'_>) -> Vec<Output> {
        let Some((lease, package)) = self.lease_of(i, k) else {
            return Vec::new();
        };
        let r = report(&self.names[i], &package, lease);
        self.step(self.now, Input::BuildStarted(r), check)
    }

    fn finish(
        &mut self,
        i: usize,
        k: usize,
        fin: Fin,
        legacy: bool,
        check: &mut Check<'_>,
    ) -> Vec<Output> {
        let Some((lease, package)) = self.lease_of(i, k) else {
            return Vec::new();
        };
        let mut r = report(&self.names[i], &package, lease);
        if legacy {
            r.lease = None;
        }
        let input = Input::BuildFinished {
            report: r,
            outcome: fin.outcome(),
            duration_ms: None,
        };
        self.step(self.now, input, check)
    }

    fn reregister(&mut self, i: usize, check: &mut Check<'_>) -> Vec<Output> {
        self.incarnation[i] += 1;
        let spec = self.spec(i);
        self.step(self.now, Input::Register(spec), check)
    }

    fn control(&mut self, ctl: &Ctl, check: &mut Check<'_>) -> Vec<Output> {
        let n = self.n();
        let atom = |k: usize| self.atoms.get(k % self.atoms.len().max(1)).cloned();
        let action = match ctl {
            Ctl::Rebalance => Control::Rebalance,
            Ctl::ReclaimPackage(k) => match atom(*k) {
                Some(package) => Control::Reclaim {
                    package: Some(package),
                    profile: None,
                    drone: None,
                },
                None => return Vec::new(),
            },
            Ctl::ReclaimDrone(d) => Control::Reclaim {
                package: None,
                profile: None,
                drone: Some(self.names[d % n].clone()),
            },
            Ctl::UnblockAll => Control::Unblock {
                package: None,
                profile: None,
            },
            Ctl::Block(k) => match atom(*k) {
                Some(package) => Control::Block {
                    package,
                    profile: None,
                },
                None => return Vec::new(),
            },
            Ctl::Fresh => Control::Fresh,
            Ctl::Reset => Control::Reset,
            Ctl::ResetEscalation(d) => Control::ResetEscalation {
                drone: self.names[d % n].clone(),
            },
        };
        self.step(self.now, Input::Control(action), check)
    }

    /// Applies one generated operation at the current time. Muted drones send nothing.
    fn apply(&mut self, op: &Op, steal: bool, check: &mut Check<'_>) -> Vec<Output> {
        let n = self.n();
        let from = |d: &usize| d % n;
        match op {
            Op::Request { d, slots } if !self.mute(from(d)) => {
                if steal {
                    self.request(from(d), *slots, check)
                } else {
                    self.request_no_steal(from(d), *slots, check)
                }
            }
            Op::Start { d, k } if !self.mute(from(d)) => self.start(from(d), *k, check),
            Op::Finish { d, k, fin, legacy } if !self.mute(from(d)) => {
                self.finish(from(d), *k, *fin, *legacy, check)
            }
            Op::Health { d, health } if !self.silent(from(d), self.now) => {
                self.heartbeat(from(d), self.now, Some(*health), check)
            }
            Op::Reregister { d } if !self.silent(from(d), self.now) => {
                self.reregister(from(d), check)
            }
            Op::Probe { d, status } => {
                let input = Input::ProbeResult {
                    drone: self.names[from(d)].clone(),
                    status: *status,
                };
                self.step(self.now, input, check)
            }
            Op::Control(ctl) => self.control(ctl, check),
            Op::Recovered => self.step(self.now, Input::Recovered, check),
            Op::Tick => self.step(self.now, Input::Tick, check),
            _ => Vec::new(),
        }
    }

    /// Every agent holds exactly what the core says it holds.
    fn assert_agents_agree(&self) {
        for (i, name) in self.names.iter().enumerate() {
            let core: BTreeSet<LeaseId> = self
                .h
                .view()
                .leases_of(name)
                .iter()
                .map(|l| l.lease)
                .collect();
            let agent: BTreeSet<LeaseId> = self.held[i].keys().copied().collect();
            assert_eq!(
                core, agent,
                "{name}'s leases changed without a command telling it"
            );
        }
    }
}

fn is_reclaim_or_revoke(o: &Output) -> bool {
    matches!(
        o,
        Output::Event(Event::Reclaimed { .. }) | Output::Command(Command::Revoke { .. })
    )
}

// ---------------------------------------------------------------------------
// (a) Online drones keep their not-started work.

fn op_a() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => request(),
        2 => start(),
        2 => finish(Just(Fin::Success)),
        2 => Just(Op::Tick),
    ]
}

// ---------------------------------------------------------------------------
// (b) Offline drones hold nothing.

fn op_b() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => request(),
        2 => start(),
        3 => finish(any_fin()),
        3 => Just(Op::Tick),
        2 => (0..64usize, any_status()).prop_map(|(d, status)| Op::Probe { d, status }),
        1 => (0..64usize).prop_map(|d| Op::Reregister { d }),
        1 => Just(Op::Recovered),
    ]
}

// ---------------------------------------------------------------------------
// (c), (d), (l) Probes.

fn op_probe() -> impl Strategy<Value = Op> {
    prop_oneof![
        10 => (0..64usize, failing_status()).prop_map(|(d, status)| Op::Probe { d, status }),
        2 => Just(Op::Tick),
        1 => (0..64usize).prop_map(|d| Op::Control(Ctl::ResetEscalation(d))),
        1 => Just(Op::Control(Ctl::Reset)),
    ]
}

/// Probes with heartbeats mostly fresh: drones are silent only now and then.
fn probe_fleet() -> impl Strategy<Value = Vec<DroneGen>> {
    fleet(1..=5, vec![4], 4)
}

// ---------------------------------------------------------------------------
// (e) Stale reports.

#[derive(Clone, Debug)]
enum Stale {
    /// A lease id that was never issued.
    UnknownLease { d: usize, a: usize, x: u64 },
    /// The live lease of another drone.
    OthersLease { d: usize, k: usize },
    /// A lease that has ended (finished, reclaimed, revoked).
    EndedLease { k: usize, same_holder: bool },
    /// The drone's live lease, but another epoch.
    WrongEpoch { k: usize, up: u64 },
    /// A lease-less (v3) report for a package the drone does not hold.
    Legacy { d: usize, a: usize },
}

fn stale() -> impl Strategy<Value = Stale> {
    prop_oneof![
        (0..64usize, 0..64usize, 0..1_000u64).prop_map(|(d, a, x)| Stale::UnknownLease { d, a, x }),
        (0..64usize, 0..64usize).prop_map(|(d, k)| Stale::OthersLease { d, k }),
        (0..64usize, any::<bool>())
            .prop_map(|(k, same_holder)| Stale::EndedLease { k, same_holder }),
        (0..64usize, 0..3u64).prop_map(|(k, up)| Stale::WrongEpoch { k, up }),
        (0..64usize, 0..64usize).prop_map(|(d, a)| Stale::Legacy { d, a }),
    ]
}

#[derive(Clone, Debug)]
enum OpE {
    Op(Op),
    Stale {
        kind: Stale,
        started: bool,
        fin: Fin,
    },
}

fn op_e() -> impl Strategy<Value = OpE> {
    prop_oneof![
        4 => request().prop_map(OpE::Op),
        2 => start().prop_map(OpE::Op),
        2 => finish(any_fin()).prop_map(OpE::Op),
        1 => (0..64usize).prop_map(|d| OpE::Op(Op::Reregister { d })),
        1 => Just(OpE::Op(Op::Tick)),
        5 => (stale(), any::<bool>(), any_fin()).prop_map(|(kind, started, fin)| OpE::Stale { kind, started, fin }),
    ]
}

/// The report a stale operation sends, if the run has what it needs.
fn stale_report(run: &Run, kind: &Stale) -> Option<Report> {
    let v = run.h.view();
    let n = run.n();
    let live = v.leases();
    match kind {
        Stale::UnknownLease { d, a, x } => {
            let drone = run.names[d % n].clone();
            let package = run.atoms.get(a % run.atoms.len().max(1))?.clone();
            Some(Report {
                drone,
                package,
                lease: Some(LeaseId(1_000_000 + x)),
                epoch: None,
            })
        }
        Stale::OthersLease { d, k } => {
            let drone = run.names[d % n].clone();
            let others: Vec<&LeaseView> = live.iter().filter(|l| l.drone != drone).collect();
            let l = others.get(k % others.len().max(1))?;
            let epoch = v.drone(&drone).map(|dv| dv.epoch);
            Some(Report {
                drone,
                package: l.package.clone(),
                lease: Some(l.lease),
                epoch,
            })
        }
        Stale::EndedLease { k, same_holder } => {
            let ended: Vec<&(usize, LeaseId, Atom)> = run
                .ended
                .iter()
                .filter(|(_, l, _)| v.lease(*l).is_none())
                .collect();
            let (holder, lease, package) = ended.get(k % ended.len().max(1))?;
            let drone = if *same_holder {
                run.names[*holder].clone()
            } else {
                run.names[(holder + 1) % n].clone()
            };
            Some(Report {
                drone,
                package: package.clone(),
                lease: Some(*lease),
                epoch: None,
            })
        }
        Stale::WrongEpoch { k, up } => {
            let l = live.get(k % live.len().max(1))?;
            let current = v.drone(&l.drone)?.epoch.0;
            let wrong = if *up == 0 && current > 1 {
                current - 1
            } else {
                current + 1 + up
            };
            Some(Report {
                drone: l.drone.clone(),
                package: l.package.clone(),
                lease: Some(l.lease),
                epoch: Some(Epoch(wrong)),
            })
        }
        Stale::Legacy { d, a } => {
            let drone = run.names[d % n].clone();
            let mine: BTreeSet<Atom> = v.leases_of(&drone).into_iter().map(|l| l.package).collect();
            let mut candidates: Vec<Atom> = run
                .atoms
                .iter()
                .filter(|a| !mine.contains(*a))
                .cloned()
                .collect();
            candidates.push(atom("dev-libs/ghost-1.0"));
            let package = candidates[a % candidates.len()].clone();
            Some(Report {
                drone,
                package,
                lease: None,
                epoch: None,
            })
        }
    }
}

// ---------------------------------------------------------------------------
// (f) Exclusivity under chaos.

fn op_f() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => request(),
        3 => start(),
        4 => finish(any_fin()),
        1 => (0..64usize, prop::sample::select(vec![DroneHealth::Critical, DroneHealth::Healthy, DroneHealth::Degraded]))
            .prop_map(|(d, health)| Op::Health { d, health }),
        1 => (0..64usize).prop_map(|d| Op::Reregister { d }),
        2 => Just(Op::Tick),
        1 => prop_oneof![
            Just(Ctl::Rebalance),
            (0..64usize).prop_map(Ctl::ReclaimPackage),
            (0..64usize).prop_map(Ctl::ReclaimDrone),
            Just(Ctl::UnblockAll),
            (0..64usize).prop_map(Ctl::Block),
            Just(Ctl::Fresh),
        ].prop_map(Op::Control),
        1 => Just(Op::Recovered),
    ]
}

/// Live leases name each package at most once, and agree with the queue.
fn assert_exclusive(h: &Harness, input: &Input) {
    let v = h.view();
    let leases = v.leases();
    let mut seen: BTreeMap<&Atom, LeaseId> = BTreeMap::new();
    for l in &leases {
        if let Some(other) = seen.insert(&l.package, l.lease) {
            panic!(
                "{} has two live leases, {other} and {} (after {input:?})",
                l.package, l.lease
            );
        }
    }
    let assigned: BTreeMap<Atom, LeaseId> = v
        .queue()
        .filter_map(|p| match p.status {
            PackageStatus::Assigned { lease, .. } => Some((p.atom, lease)),
            _ => None,
        })
        .collect();
    let live: BTreeMap<Atom, LeaseId> = leases
        .iter()
        .map(|l| (l.package.clone(), l.lease))
        .collect();
    assert_eq!(assigned, live, "queue and leases disagree after {input:?}");
}

// ---------------------------------------------------------------------------
// (g) Work stealing.

fn op_g() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => request(),
        3 => start(),
        2 => finish(Just(Fin::Success)),
        1 => Just(Op::Tick),
    ]
}

// ---------------------------------------------------------------------------
// (h), (k) Builds that fail on their own schedule.

/// A drone's build that will end at `at` with `fin`.
struct Pending {
    drone: usize,
    package: Atom,
    at: u64,
    fin: Fin,
}

/// Builds that end on their own schedule: each assignment takes the next
/// `(duration, outcome)` of `plan`, cyclically.
struct Builds<'p> {
    pending: BTreeMap<LeaseId, Pending>,
    plan: &'p [(u64, Fin)],
    k: usize,
}

impl<'p> Builds<'p> {
    fn new(plan: &'p [(u64, Fin)]) -> Self {
        Builds {
            pending: BTreeMap::new(),
            plan,
            k: 0,
        }
    }

    /// Reports every build due by now, in time order, if the drone still holds it.
    fn report_due(&mut self, run: &mut Run, check: &mut Check<'_>) {
        let mut due: Vec<(u64, LeaseId)> = self
            .pending
            .iter()
            .filter(|(_, p)| p.at <= run.now)
            .map(|(l, p)| (p.at, *l))
            .collect();
        due.sort_unstable();
        for (_, lease) in due {
            let Some(p) = self.pending.remove(&lease) else {
                continue;
            };
            if !run.held[p.drone].contains_key(&lease) {
                continue;
            }
            let input = Input::BuildFinished {
                report: report(&run.names[p.drone], &p.package, lease),
                outcome: p.fin.outcome(),
                duration_ms: None,
            };
            run.step(run.now, input, check);
        }
    }

    /// Drone `d` reports what is due, then asks for as much work as it has slots.
    fn ask(&mut self, run: &mut Run, d: usize, check: &mut Check<'_>) {
        self.report_due(run, check);
        let slots = run.h.config().slots_for(run.gens[d].cores);
        let out = run.request(d, slots, check);
        for (_, package, lease) in assigns(&out) {
            let (took, fin) = self.plan[self.k % self.plan.len()];
            self.k += 1;
            self.pending.insert(
                lease,
                Pending {
                    drone: d,
                    package,
                    at: run.now + took,
                    fin,
                },
            );
        }
    }
}

/// The most drones that may be grounded at once: the brake's ratio share, but
/// never fewer than its minimum.
fn grounding_bound(c: &Config, n: usize) -> usize {
    let share = n * c.brake_ratio_percent as usize / 100;
    share.max(c.brake_min_drones as usize)
}

struct StaleQueue {
    brake_reasons: Vec<String>,
    max_grounded: usize,
}

/// Runs the stale-queue incident: every build fails with class Infra, "slot
/// conflict", and the number of grounded drones is checked after every step.
/// Continues after the generated requests until the brake has engaged (or 6
/// hours pass).
fn run_stale_queue(
    fleet: &[DroneGen],
    packages: usize,
    requests: &[(u64, usize)],
    durations: &[u64],
) -> StaleQueue {
    let c = Config::default();
    let n = fleet.len();
    let bound = grounding_bound(&c, n);
    let queue: Vec<PackageSpec> = (0..packages)
        .map(|i| PackageSpec::new(atom_of(i)))
        .collect();
    let reasons = RefCell::new(Vec::new());
    let max_grounded = Cell::new(0);
    let mut check = |h: &Harness, _at: u64, input: &Input, out: &[Output]| {
        let grounded: Vec<DroneName> = h
            .view()
            .drones()
            .into_iter()
            .filter(|d| d.grounded_until.is_some())
            .map(|d| d.name)
            .collect();
        max_grounded.set(max_grounded.get().max(grounded.len()));
        assert!(
            grounded.len() <= bound,
            "{} of {n} drones grounded at once ({grounded:?}), more than {bound}, after {input:?}\n{}",
            grounded.len(),
            h.describe(out)
        );
        for e in events(out) {
            if let Event::BrakeEngaged { reason, .. } = e {
                reasons.borrow_mut().push(reason.clone());
            }
        }
    };
    let plan: Vec<(u64, Fin)> = durations.iter().map(|d| (*d, Fin::SlotConflict)).collect();
    let mut builds = Builds::new(&plan);
    let mut run = Run::new(c, fleet, &queue, &mut check);
    for (dt, d) in requests {
        let at = run.now + dt;
        run.advance(at, &mut check);
        builds.ask(&mut run, d % n, &mut check);
    }
    let end = run.now + 6 * HOUR;
    let mut d = 0;
    while reasons.borrow().is_empty() && run.now < end {
        let at = run.now + 10 * SEC;
        run.advance(at, &mut check);
        builds.ask(&mut run, d % n, &mut check);
        d += 1;
    }
    drop(run);
    StaleQueue {
        brake_reasons: reasons.into_inner(),
        max_grounded: max_grounded.get(),
    }
}

// ---------------------------------------------------------------------------
// The properties.

proptest! {
    #![proptest_config(config(64))]

    /// (a) DESIGN §3 "Work of an online drone is never reclaimed for age".
    #[test]
    fn an_online_drone_keeps_its_not_started_work_however_long_time_runs(
        fleet in fleet(1..=6, vec![2, 4, 8, 12, 16], 0),
        queue in queue(1..=30, true),
        ops in prop::collection::vec((dt(), op_a()), 10..=60),
        idle_hours in 1..=4u64,
    ) {
        let mut check = |h: &Harness, _: u64, input: &Input, out: &[Output]| {
            let bad: Vec<&Output> = out.iter().filter(|o| is_reclaim_or_revoke(o)).collect();
            assert!(bad.is_empty(), "an online drone lost work: {bad:?} on {input:?}\n{}", h.describe(out));
        };
        let mut run = Run::new(Config::default(), &fleet, &queue, &mut check);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, false, &mut check);
            run.assert_agents_agree();
        }
        // And then nothing but heartbeats and Ticks for hours.
        let end = run.now + idle_hours * HOUR;
        while run.now < end {
            let at = run.now + 7 * MIN;
            run.advance(at, &mut check);
            run.step(at, Input::Tick, &mut check);
            run.assert_agents_agree();
        }
    }

    /// (b) DESIGN §8.6.
    #[test]
    fn a_drone_silent_past_the_offline_timeout_holds_no_lease_after_the_next_tick(
        fleet in fleet(1..=8, vec![2, 4, 8, 16], 3),
        queue in queue(1..=20, true),
        ops in prop::collection::vec((dt(), op_b()), 20..=120),
    ) {
        let c = Config::default();
        let mut last: BTreeMap<DroneName, u64> = BTreeMap::new();
        let (mut now, mut grace_until) = (0u64, 0u64);
        let mut check = |h: &Harness, at: u64, input: &Input, out: &[Output]| {
            now = now.max(at);
            match input {
                Input::Heartbeat(hb) => { last.insert(hb.drone.clone(), now); }
                Input::Register(s) => { last.insert(s.name.clone(), now); }
                Input::Recovered => grace_until = now + c.failover_grace_ms,
                _ => {}
            }
            if now < grace_until {
                return;
            }
            for (d, hb) in &last {
                if now - hb >= c.offline_timeout_ms {
                    let held = h.view().leases_of(d);
                    assert!(held.is_empty(), "{d} silent for {}ms still holds {held:?}\n{}", now - hb, h.describe(out));
                }
            }
        };
        let mut run = Run::new(c.clone(), &fleet, &queue, &mut check);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, true, &mut check);
            run.step(at, Input::Tick, &mut check);
        }
    }

    /// (c) DESIGN §3 "unreachable/timeout while the heartbeat is fresh never escalate".
    #[test]
    fn a_path_failure_probe_with_a_fresh_heartbeat_never_escalates(
        fleet in probe_fleet(),
        ops in prop::collection::vec((short_dt(), op_probe()), 20..=200),
    ) {
        let c = unlimited_escalation();
        let mut last: BTreeMap<DroneName, u64> = BTreeMap::new();
        let mut now = 0u64;
        let mut check = |h: &Harness, at: u64, input: &Input, out: &[Output]| {
            now = now.max(at);
            match input {
                Input::Heartbeat(hb) => { last.insert(hb.drone.clone(), now); }
                Input::Register(s) => { last.insert(s.name.clone(), now); }
                Input::ProbeResult { drone, status } if status.is_path_failure() => {
                    let fresh = last.get(drone).is_some_and(|t| now - t < c.heartbeat_grace_ms);
                    let esc = escalations(out);
                    assert!(!fresh || esc.is_empty(), "{drone} escalated {esc:?} on {status:?} with a fresh heartbeat\n{}", h.describe(out));
                }
                _ => {}
            }
        };
        let mut run = Run::new(c.clone(), &fleet, &[], &mut check);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, true, &mut check);
        }
    }

    /// (d) DESIGN §3 "Escalation needs 3 probe failures spanning 180 s" and the ladder.
    #[test]
    fn escalation_waits_for_three_failures_over_three_minutes_and_climbs_the_ladder_without_repeating(
        fleet in fleet(1..=5, vec![4], 6),
        ops in prop::collection::vec((short_dt(), op_probe()), 20..=250),
    ) {
        let c = unlimited_escalation();
        let kinds: BTreeMap<DroneName, DroneKind> =
            fleet.iter().enumerate().map(|(i, g)| (name_of(i), g.kind)).collect();
        #[derive(Default)]
        struct Model { last_hb: u64, count: u32, first: u64, rung: usize, last_step: Option<(EscalationAction, u64)> }
        let mut m: BTreeMap<DroneName, Model> = BTreeMap::new();
        let mut now = 0u64;
        let mut check = |h: &Harness, at: u64, input: &Input, out: &[Output]| {
            now = now.max(at);
            match input {
                Input::Heartbeat(hb) => m.entry(hb.drone.clone()).or_default().last_hb = now,
                Input::Register(s) => m.entry(s.name.clone()).or_default().last_hb = now,
                Input::ProbeResult { drone, status } => {
                    let d = m.entry(drone.clone()).or_default();
                    let fresh = now - d.last_hb < c.heartbeat_grace_ms;
                    if *status == ProbeStatus::Ok {
                        d.count = 0;
                        d.rung = 0;
                        d.last_step = None;
                    } else if status.is_failure() && !(status.is_path_failure() && fresh) {
                        if d.count == 0 { d.first = now; }
                        d.count += 1;
                    }
                }
                Input::Control(Control::Reset) => {
                    for d in m.values_mut() { d.count = 0; d.rung = 0; d.last_step = None; }
                }
                Input::Control(Control::ResetEscalation { drone }) => {
                    let d = m.entry(drone.clone()).or_default();
                    d.count = 0; d.rung = 0; d.last_step = None;
                }
                _ => {}
            }
            for o in out {
                match o {
                    // A drone that comes back starts its ladder again.
                    Output::Event(Event::CameBack { drone }) => {
                        let d = m.entry(drone.clone()).or_default();
                        d.rung = 0;
                        d.last_step = None;
                    }
                    Output::Command(Command::Escalate { drone, action }) => {
                        let Input::ProbeResult { drone: probed, .. } = input else {
                            panic!("{drone} escalated on {input:?}");
                        };
                        assert_eq!(drone, probed, "escalated a drone that was not probed");
                        let d = m.entry(drone.clone()).or_default();
                        assert!(d.count >= 3 && now - d.first >= 180 * SEC,
                            "{drone} escalated ({action:?}) after {} counted failures over {}ms\n{}",
                            d.count, now - d.first, h.describe(out));
                        let kind = kinds[drone];
                        let ladder: &[EscalationAction] = match kind {
                            DroneKind::Lxc | DroneKind::Qemu => &[
                                EscalationAction::RestartService, EscalationAction::HardRestart,
                                EscalationAction::Reboot, EscalationAction::Manual],
                            DroneKind::BareMetal | DroneKind::Unknown => &[
                                EscalationAction::RestartService, EscalationAction::HardRestart,
                                EscalationAction::Manual],
                        };
                        assert!(!(matches!(kind, DroneKind::BareMetal | DroneKind::Unknown)
                            && *action == EscalationAction::Reboot), "{kind:?} drone {drone} rebooted");
                        assert_eq!(Some(action), ladder.get(d.rung),
                            "{drone} ({kind:?}) ladder went {:?} -> {action:?}\n{}", d.last_step, h.describe(out));
                        if let Some((prev, t)) = d.last_step {
                            let cooldown = match prev {
                                EscalationAction::RestartService => c.escalation_cooldowns_ms[0],
                                EscalationAction::HardRestart => c.escalation_cooldowns_ms[1],
                                _ => c.escalation_cooldowns_ms[2],
                            };
                            assert!(now - t >= cooldown, "{drone} {action:?} {}ms after {prev:?}", now - t);
                        }
                        d.rung += 1;
                        d.last_step = Some((*action, now));
                    }
                    _ => {}
                }
            }
        };
        let mut run = Run::new(c.clone(), &fleet, &[], &mut check);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, true, &mut check);
        }
    }

    /// (e) DESIGN §8.3 Fencing.
    #[test]
    fn a_stale_or_foreign_report_changes_nothing_and_is_revoked(
        fleet in fleet(2..=5, vec![4, 8, 16], 2),
        queue in queue(2..=12, false),
        ops in prop::collection::vec((short_dt(), op_e()), 10..=120),
    ) {
        let mut none = no_check();
        let mut run = Run::new(Config::default(), &fleet, &queue, &mut none);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut none);
            match op {
                OpE::Op(op) => { run.apply(op, true, &mut none); }
                OpE::Stale { kind, started, fin } => {
                    // Fire due deadlines first, so the report alone is judged.
                    run.step(at, Input::Tick, &mut none);
                    let Some(r) = stale_report(&run, kind) else { continue };
                    let v = run.h.view();
                    let (queue_before, leases_before, drones_before) =
                        (v.queue().collect::<Vec<_>>(), v.leases(), v.drones());
                    let digest_before = run.h.swarm().digest();
                    let input = if *started {
                        Input::BuildStarted(r.clone())
                    } else {
                        Input::BuildFinished { report: r.clone(), outcome: fin.outcome(), duration_ms: None }
                    };
                    // The report that ended its drone's lease, of the same atom and kind, sent
                    // again (its reply lost), and a start of that lease after it, must be
                    // answered as a repeat; any other is stale.
                    let repeat = if *started {
                        run.own.is_started_after(run.h.view(), &r)
                    } else {
                        run.own.is_repeat(run.h.view(), &r, &fin.outcome())
                    };
                    let out = run.step(at, input.clone(), &mut none);
                    let v = run.h.view();
                    prop_assert_eq!(&v.queue().collect::<Vec<_>>(), &queue_before, "{:?} changed the queue", input);
                    prop_assert_eq!(&v.leases(), &leases_before, "{:?} changed the leases", input);
                    prop_assert_eq!(&v.drones(), &drones_before, "{:?} changed the drones", input);
                    prop_assert_eq!(run.h.swarm().digest(), digest_before, "{:?} changed the state", input);
                    let answered = run.h.swarm().verdict().and_then(|v| v.report);
                    let repeated = matches!(answered, Some(Reported::Repeated { .. }));
                    prop_assert_eq!(repeated, repeat, "{:?} answered {:?}", input, answered);
                    if repeated {
                        prop_assert!(out.is_empty(), "a repeat sent {:?}", out);
                        continue;
                    }
                    let revoked = revokes(&out).into_iter().any(|(d, l, p)| d == r.drone && p.as_ref() == Some(&r.package) && l == r.lease);
                    prop_assert!(revoked, "{:?} was not answered with a Revoke: {:?}", input, out);
                }
            }
        }
    }

    /// (f) DESIGN §8.2 Exclusivity.
    #[test]
    fn a_package_never_has_two_live_leases(
        fleet in fleet(2..=8, vec![1, 4, 8, 16], 2),
        queue in queue(1..=15, true),
        ops in prop::collection::vec((short_dt(), op_f()), 20..=200),
    ) {
        let mut check = |h: &Harness, _: u64, input: &Input, _: &[Output]| assert_exclusive(h, input);
        let mut run = Run::new(Config::default(), &fleet, &queue, &mut check);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, true, &mut check);
        }
    }

    /// (g) DESIGN §3 "Work stealing".
    #[test]
    fn work_stealing_takes_only_not_started_work_and_leaves_the_donor_a_lease(
        fleet in fleet(2..=6, vec![4, 8, 12, 16], 0),
        queue in queue(1..=10, true),
        ops in prop::collection::vec((short_dt(), op_g()), 10..=150),
    ) {
        let mut started: BTreeSet<LeaseId> = BTreeSet::new();
        let mut check = |h: &Harness, _: u64, input: &Input, out: &[Output]| {
            for o in out {
                if let Output::Event(Event::Started { lease, .. }) = o {
                    started.insert(*lease);
                }
            }
            for r in reclaims(out).into_iter().filter(|r| r.reason == ReclaimReason::Stolen) {
                assert!(!r.started && !started.contains(&r.lease),
                    "started lease {} stolen from {}\n{}", r.lease, r.drone, h.describe(out));
                let left = h.view().leases_of(&r.drone).len();
                assert!(left >= 1, "{} was left with no lease after a steal on {input:?}\n{}", r.drone, h.describe(out));
                let Input::RequestWork { drone: thief, .. } = input else {
                    panic!("stolen outside a request: {input:?}");
                };
                assert!(assigns(out).iter().any(|(d, p, _)| d == thief && *p == r.package),
                    "stolen work not given to the thief {thief}");
            }
        };
        let mut run = Run::new(Config::default(), &fleet, &queue, &mut check);
        for (dt, op) in &ops {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, true, &mut check);
        }
    }

    /// (h) The stale-queue incident: 5 drones, every build fails with "slot conflict".
    #[test]
    fn the_stale_queue_incident_grounds_at_most_two_of_five_drones_and_the_brake_names_the_cause(
        fleet in fleet(5..=5, vec![4, 8, 16], 0),
        packages in 10..=60usize,
        requests in prop::collection::vec((0..20 * SEC, 0..5usize), 50..=300),
        durations in prop::collection::vec(2 * SEC..4 * MIN, 1..=20),
    ) {
        let r = run_stale_queue(&fleet, packages, &requests, &durations);
        prop_assert!(r.max_grounded <= 2);
        prop_assert!(!r.brake_reasons.is_empty(), "the brake never engaged");
        for reason in &r.brake_reasons {
            prop_assert!(reason.contains("slot conflict"), "brake reason does not name the cause: {}", reason);
        }
    }

    /// (h) The same, for fleets of 3 to 12 drones.
    #[test]
    fn a_stale_queue_never_grounds_more_than_the_brake_ratio_share_of_any_fleet(
        fleet in fleet(3..=12, vec![4, 8, 16], 0),
        packages_per_drone in 4..=12usize,
        requests in prop::collection::vec((0..15 * SEC, 0..12usize), 50..=400),
        durations in prop::collection::vec(2 * SEC..4 * MIN, 1..=20),
    ) {
        let n = fleet.len();
        let r = run_stale_queue(&fleet, packages_per_drone * n, &requests, &durations);
        prop_assert!(r.max_grounded <= grounding_bound(&Config::default(), n));
        prop_assert!(!r.brake_reasons.is_empty(), "the brake never engaged");
        for reason in &r.brake_reasons {
            prop_assert!(reason.contains("slot conflict"), "brake reason does not name the cause: {}", reason);
        }
    }

    /// (i) DESIGN §3 "a restart of the control plane reclaims nothing".
    #[test]
    fn recovered_then_the_usual_heartbeats_reclaim_nothing(
        fleet in fleet(1..=6, vec![2, 4, 8, 16], 0),
        queue in queue(1..=20, true),
        before in prop::collection::vec((short_dt(), op_a()), 5..=40),
        outage in prop_oneof![0..10 * MIN, 10 * MIN..20 * MIN, 20 * MIN..=HOUR],
        after in prop::collection::vec((short_dt(), op_a()), 10..=60),
    ) {
        let mut check = |h: &Harness, _: u64, input: &Input, out: &[Output]| {
            let bad: Vec<&Output> = out.iter().filter(|o| is_reclaim_or_revoke(o)).collect();
            assert!(bad.is_empty(), "reclaimed around a control-plane restart: {bad:?} on {input:?}\n{}", h.describe(out));
        };
        let mut run = Run::new(Config::default(), &fleet, &queue, &mut check);
        for (dt, op) in &before {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, false, &mut check);
        }
        // The control plane is down: every heartbeat in the outage is lost.
        let restart = run.now + outage;
        for i in 0..run.n() {
            while run.next_beat[i] < restart {
                run.next_beat[i] += run.gens[i].period_ms;
            }
        }
        run.step(restart, Input::Recovered, &mut check);
        for (dt, op) in &after {
            let at = run.now + dt;
            run.advance(at, &mut check);
            run.apply(op, false, &mut check);
        }
        let end = restart + 30 * MIN;
        while run.now < end {
            let at = run.now + 2 * MIN;
            run.advance(at, &mut check);
            run.step(at, Input::Tick, &mut check);
        }
    }

    /// (j) DESIGN §3 "a drone that failed the first N packages still gets the N+1th".
    #[test]
    fn a_drone_that_failed_the_first_n_ready_packages_still_gets_the_next_one(
        n in 1..=50usize,
        extra in 1..=10usize,
        others in prop::collection::vec(prop::sample::select(vec![0u64, 32, 64]), 1..=4),
        priorities in prop::collection::vec(-2i32..=2, 61),
        classes in prop::collection::vec(prop_oneof![8 => Just(FailureClass::Build), 1 => Just(FailureClass::Infra), 1 => Just(FailureClass::Oom)], 50),
        gaps in prop::collection::vec(SEC..90 * SEC, 50),
    ) {
        let mut h = Harness::new();
        let x = drone("x");
        let mut t = T0;
        h.register(t, spec("x", 4, 16));
        let other_names: Vec<DroneName> = (0..others.len()).map(|i| drone(&format!("o{i}"))).collect();
        for (i, ram) in others.iter().enumerate() {
            h.register(t, spec(&format!("o{i}"), 4, *ram));
        }
        let queue: Vec<PackageSpec> = (0..n + extra)
            .map(|i| PackageSpec { priority: priorities[i], ..PackageSpec::new(atom_of(i)) })
            .collect();
        h.enqueue(t, queue);
        let mut failed_here: BTreeSet<Atom> = BTreeSet::new();
        let mut drone_faults = 0;
        let ask = |h: &mut Harness, t: u64, failed_here: &BTreeSet<Atom>| -> (Atom, LeaseId) {
            let ready = h.view().ready();
            let expected = ready.iter().find(|a| !failed_here.contains(*a)).cloned();
            let out = h.request(t, &x, 1);
            let got = assigns(&out);
            match (expected, got.as_slice()) {
                (Some(e), [(d, a, l)]) if *d == x && *a == e => (a.clone(), *l),
                (e, _) => panic!("after failing {} packages, x expected {e:?}, got {got:?} (ready: {ready:?})", failed_here.len()),
            }
        };
        for i in 0..n {
            t += gaps[i];
            h.heartbeat(t, &x);
            for o in &other_names {
                h.heartbeat(t, o);
            }
            let (a, lease) = ask(&mut h, t, &failed_here);
            // Infra/OOM failures count against the drone; stay under the breaker.
            let class = if classes[i] != FailureClass::Build && drone_faults < 7 {
                drone_faults += 1;
                classes[i]
            } else {
                FailureClass::Build
            };
            h.finished(t, &x, &a, lease, failed(class, "nope"));
            failed_here.insert(a);
        }
        // Every failed package is ready again, ahead of the rest.
        t += 3 * MIN;
        h.tick(t);
        h.heartbeat(t, &x);
        for o in &other_names {
            h.heartbeat(t, o);
        }
        let ready = h.view().ready();
        prop_assert!(ready.first().is_some_and(|a| failed_here.contains(a)),
            "a failed package should head the ready set: {:?}", ready);
        let (a, _) = ask(&mut h, t, &failed_here);
        prop_assert!(!failed_here.contains(&a));
    }
}

proptest! {
    #![proptest_config(config(48))]

    /// (k) DESIGN §3 "at most max_attempts".
    #[test]
    fn a_package_is_attempted_at_most_max_attempts_times_before_it_is_blocked(
        fleet in fleet(3..=10, vec![4, 8, 16], 0),
        packages in 3..=20usize,
        max_attempts in 2..=6u32,
        requests in prop::collection::vec((prop_oneof![4 => 0..30 * SEC, 1 => 30 * SEC..10 * MIN], 0..10usize), 50..=300),
        builds in prop::collection::vec((SEC..10 * MIN, prop_oneof![
            1 => Just(Fin::Success),
            3 => class().prop_map(Fin::Failed),
            1 => Just(Fin::UploadFailed),
            1 => Just(Fin::Undelivered),
        ]), 1..=30),
    ) {
        let c = Config { max_attempts, ..Config::default() };
        // Attempts, and builds whose binary never arrived: the package is not at fault for
        // those, so they use no attempt, and have a bound of their own (the same number).
        let mut tries: BTreeMap<Atom, u32> = BTreeMap::new();
        let mut undelivered: BTreeMap<Atom, u32> = BTreeMap::new();
        let mut check = |h: &Harness, _: u64, input: &Input, out: &[Output]| {
            let undelivering = matches!(input, Input::BuildFinished {
                outcome: Outcome::UploadFailed { .. } | Outcome::Undelivered { .. }, ..
            });
            for e in events(out) {
                match e {
                    Event::Unblocked { package, .. } => {
                        tries.insert(package.clone(), 0);
                        undelivered.insert(package.clone(), 0);
                    }
                    Event::Reclaimed { package, .. } => {
                        let t = tries.entry(package.clone()).or_default();
                        *t = t.saturating_sub(1);
                    }
                    Event::BuildFailed { package, attempt, .. } if undelivering => {
                        let t = tries.entry(package.clone()).or_default();
                        *t = t.saturating_sub(1);
                        assert_eq!(*attempt, *t, "{package}: an undelivered build used an attempt");
                        let u = undelivered.entry(package.clone()).or_default();
                        *u += 1;
                        assert!(*u <= max_attempts, "{package} rebuilt {u} times for nothing, limit {max_attempts}");
                    }
                    Event::Blocked { package, reason: BlockReason::Undeliverable { times } } => {
                        let u = undelivered.get(package).copied().unwrap_or(0);
                        assert!(*times == max_attempts && u == max_attempts,
                            "{package} blocked as undeliverable after {times}, {u} seen, limit {max_attempts}");
                    }
                    Event::Blocked { package, reason: BlockReason::AttemptsExhausted { attempts } } => {
                        let t = tries.get(package).copied().unwrap_or(0);
                        assert!(*attempts == max_attempts && t == max_attempts,
                            "{package} blocked after {attempts} attempts, {t} assigned, limit {max_attempts}");
                    }
                    _ => {}
                }
            }
            for (_, package, _) in assigns(out) {
                let t = tries.entry(package.clone()).or_default();
                *t += 1;
                assert!(*t <= max_attempts, "{package} assigned for attempt {t} > {max_attempts} on {input:?}\n{}", h.describe(out));
            }
        };
        let queue: Vec<PackageSpec> = (0..packages).map(|i| PackageSpec::new(atom_of(i))).collect();
        let mut run = Run::new(c, &fleet, &queue, &mut check);
        let n = run.n();
        let mut b = Builds::new(&builds);
        for (dt, d) in &requests {
            let at = run.now + dt;
            run.advance(at, &mut check);
            b.ask(&mut run, d % n, &mut check);
        }
    }

    /// (l) DESIGN §8.11 No restart storm.
    #[test]
    fn fleet_wide_escalations_per_window_never_exceed_the_limit(
        fleet in fleet(3..=20, vec![4], 3),
        max_per_window in 1..=4u32,
        window in MIN..=20 * MIN,
        brake_min_drones in prop::sample::select(vec![2u32, 1_000]),
        bursts in prop::collection::vec((0..2 * MIN, prop::collection::vec((0..20usize, failing_status()), 1..=20)), 10..=120),
    ) {
        let c = Config {
            max_escalations_per_window: max_per_window,
            escalation_window_ms: window,
            brake_min_drones,
            ..Config::default()
        };
        let mut recent: VecDeque<u64> = VecDeque::new();
        let mut now = 0u64;
        let mut check = |h: &Harness, at: u64, _: &Input, out: &[Output]| {
            now = now.max(at);
            for _ in escalations(out) {
                recent.push_back(now);
            }
            while recent.front().is_some_and(|t| now - t >= window) {
                recent.pop_front();
            }
            assert!(recent.len() as u32 <= max_per_window,
                "{} escalations within {window}ms, limit {max_per_window}\n{}", recent.len(), h.describe(out));
        };
        let mut run = Run::new(c, &fleet, &[], &mut check);
        let n = run.n();
        for (dt, burst) in &bursts {
            let at = run.now + dt;
            run.advance(at, &mut check);
            for (d, status) in burst {
                run.apply(&Op::Probe { d: d % n, status: *status }, true, &mut check);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Scheduling policy, deterministically.

fn assigned(out: &[Output]) -> Vec<Atom> {
    assigns(out).into_iter().map(|(_, a, _)| a).collect()
}

#[test]
fn the_head_of_a_long_chain_goes_before_an_independent_short_package_of_equal_priority() {
    let mut h = Harness::new();
    h.register(T0, spec("solo", 4, 16));
    h.enqueue(
        T0,
        vec![
            package("app-misc/short-1.0"),
            package("dev-libs/a-1.0"),
            package_after("dev-libs/b-1.0", &["dev-libs/a-1.0"]),
            package_after("dev-libs/c-1.0", &["dev-libs/b-1.0"]),
        ],
    );
    assert_eq!(
        h.view().ready(),
        vec![atom("dev-libs/a-1.0"), atom("app-misc/short-1.0")]
    );
    let out = h.request(T0 + SEC, &drone("solo"), 1);
    assert_eq!(assigned(&out), vec![atom("dev-libs/a-1.0")]);
}

#[test]
fn priority_beats_the_critical_path() {
    let mut h = Harness::new();
    h.register(T0, spec("solo", 4, 16));
    h.enqueue(
        T0,
        vec![
            package("dev-libs/a-1.0"),
            package_after("dev-libs/b-1.0", &["dev-libs/a-1.0"]),
            package_after("dev-libs/c-1.0", &["dev-libs/b-1.0"]),
            package_prio("app-misc/urgent-1.0", 1),
        ],
    );
    let out = h.request(T0 + SEC, &drone("solo"), 1);
    assert_eq!(assigned(&out), vec![atom("app-misc/urgent-1.0")]);
}

#[test]
fn nothing_is_assigned_before_its_dependencies_are_built() {
    let mut h = Harness::new();
    let names = ["big-a", "big-b", "big-c"];
    for n in names {
        h.register(T0, spec(n, 16, 64));
    }
    h.enqueue(
        T0,
        vec![
            package("dev-libs/icu"),
            package_after("dev-libs/libxml2-2.12", &["dev-libs/icu"]),
            package_after(
                "dev-lang/php-8.3",
                &["dev-libs/libxml2-2.12", "dev-libs/icu"],
            ),
        ],
    );
    let mut t = T0 + SEC;
    let out = h.request(t, &drone("big-a"), 4);
    let first = assigns(&out);
    assert_eq!(
        first.iter().map(|(_, a, _)| a.clone()).collect::<Vec<_>>(),
        vec![atom("dev-libs/icu")]
    );
    for n in &names[1..] {
        let out = h.request(t, &drone(n), 4);
        assert!(
            assigns(&out).is_empty(),
            "{n} got work before icu was built: {out:?}"
        );
    }
    assert_eq!(
        h.view().explain(&atom("dev-libs/libxml2-2.12")),
        "waiting: dependency dev-libs/icu not built"
    );
    assert_eq!(
        h.view().explain(&atom("dev-lang/php-8.3")),
        "waiting: dependency dev-libs/icu not built (and 1 more)"
    );
    t += 80 * SEC;
    for n in names {
        h.heartbeat(t, &drone(n));
    }
    let (_, icu, lease) = first[0].clone();
    h.finished(t, &drone("big-a"), &icu, lease, Outcome::Success);
    let out = h.request(t, &drone("big-b"), 4);
    assert_eq!(assigned(&out), vec![atom("dev-libs/libxml2-2.12")]);
    assert_eq!(
        h.view().explain(&atom("dev-lang/php-8.3")),
        "waiting: dependency =dev-libs/libxml2-2.12 not built"
    );
    let out = h.request(t, &drone("big-c"), 4);
    assert!(
        assigns(&out).is_empty(),
        "php assigned before libxml2: {out:?}"
    );
}

#[test]
fn a_package_that_ran_out_of_memory_goes_only_to_a_drone_with_more_ram() {
    let mut h = Harness::new();
    let (small, small2, big) = (drone("small"), drone("small2"), drone("big"));
    h.register(T0, spec("small", 8, 16));
    h.register(T0, spec("small2", 8, 16));
    h.register(T0, spec("big", 8, 64));
    let qt = atom("dev-qt/qtwebengine-6.7.2");
    h.enqueue(
        T0,
        vec![
            package_prio("dev-qt/qtwebengine-6.7.2", 5),
            package("app-misc/tiny-1.0"),
        ],
    );
    let out = h.request(T0 + SEC, &small, 1);
    let [(_, a, lease)] = &assigns(&out)[..] else {
        panic!("small got no work: {out:?}")
    };
    let lease = *lease;
    assert_eq!(a, &qt);
    let t = T0 + MIN;
    for d in [&small, &small2, &big] {
        h.heartbeat(t, d);
    }
    h.finished(t, &small, &qt, lease, failed(FailureClass::Oom, "killed"));
    // Past the retry backoff, the package is ready again and heads the queue.
    let t = t + 2 * MIN;
    h.tick(t);
    for d in [&small, &small2, &big] {
        h.heartbeat(t, d);
    }
    assert_eq!(h.view().ready().first(), Some(&qt));
    let out = h.request(t, &small2, 1);
    assert_eq!(
        assigned(&out),
        vec![atom("app-misc/tiny-1.0")],
        "a 16 GB drone that never failed it must not get it either"
    );
    let out = h.request(t, &small, 1);
    assert!(assigns(&out).is_empty(), "{out:?}");
    let out = h.request(t, &big, 1);
    assert_eq!(assigned(&out), vec![qt]);
}

#[test]
fn explain_names_the_missing_ram_when_no_big_drone_is_online() {
    let mut h = Harness::new();
    let (small, big) = (drone("small"), drone("big"));
    h.register(T0, spec("small", 8, 16));
    h.register(T0, spec("big", 8, 64));
    let qt = atom("dev-qt/qtwebengine-6.7.2");
    h.enqueue(T0, vec![package("dev-qt/qtwebengine-6.7.2")]);
    let out = h.request(T0 + SEC, &small, 1);
    let [(_, _, lease)] = assigns(&out)[..] else {
        panic!("small got no work: {out:?}")
    };
    h.finished(
        T0 + MIN,
        &small,
        &qt,
        lease,
        failed(FailureClass::Oom, "killed"),
    );
    // `big` never heartbeats again: offline after 15 minutes. `small` stays.
    let mut t = T0 + MIN;
    while t < T0 + 20 * MIN {
        t += MIN;
        h.heartbeat(t, &small);
        h.tick(t);
    }
    assert_eq!(
        h.view().drone(&big).map(|d| d.status),
        Some(DroneStatus::Offline)
    );
    assert_eq!(
        h.view().explain(&qt),
        "waiting: no drone with ≥ 17 GB RAM online"
    );
}

fn sync_to(d: &DroneName, expected: &str) -> Vec<Output> {
    vec![Output::Command(Command::SyncPortage {
        drone: d.clone(),
        expected: expected.into(),
    })]
}

fn snapshot_beat(h: &mut Harness, at: u64, d: &DroneName, snapshot: &str) {
    h.step(
        at,
        Input::Heartbeat(Heartbeat {
            drone: d.clone(),
            portage_snapshot: Some(snapshot.into()),
            ..Heartbeat::default()
        }),
    );
}

#[test]
fn a_drone_on_another_portage_snapshot_is_told_to_sync_instead_of_given_work() {
    let mut h = Harness::new();
    let (older, newer, unknown) = (drone("older"), drone("newer"), drone("unknown"));
    for (name, snap) in [
        ("older", Some("20240501")),
        ("newer", Some("20240701")),
        ("unknown", None),
    ] {
        h.register(
            T0,
            DroneSpec {
                portage_snapshot: snap.map(str::to_string),
                ..spec(name, 8, 32)
            },
        );
    }
    h.step(
        T0,
        Input::Enqueue(Enqueue {
            packages: vec![package("dev-libs/a-1.0")],
            // timestamp.chk's own text: stored normalised.
            portage_snapshot: Some("Sat, 01 Jun 2024 00:00:59 +0000".into()),
            ..Enqueue::default()
        }),
    );
    let want = "2024-06-01 00:00";
    for d in [&older, &newer, &unknown] {
        assert_eq!(h.request(T0 + SEC, d, 2), sync_to(d, want), "{d}");
    }
    // The drone that synced to the snapshot (reported in v3's form) gets work.
    snapshot_beat(&mut h, T0 + 2 * SEC, &older, "2024-06-01 00:00");
    let out = h.request(T0 + 3 * SEC, &older, 2);
    assert_eq!(assigned(&out), vec![atom("dev-libs/a-1.0")]);
}

#[test]
fn a_drone_whose_sync_misses_the_snapshot_is_not_sent_into_a_sync_loop() {
    let mut h = Harness::new();
    let d = drone("ahead");
    h.register(
        T0,
        DroneSpec {
            portage_snapshot: Some("2024-07-01 00:00".into()),
            ..spec("ahead", 8, 32)
        },
    );
    h.step(
        T0,
        Input::Enqueue(Enqueue {
            packages: vec![package("dev-libs/a-1.0")],
            portage_snapshot: Some("2024-06-01 00:00".into()),
            ..Enqueue::default()
        }),
    );
    assert_eq!(h.request(T0, &d, 1), sync_to(&d, "2024-06-01 00:00"));
    // Its mirror is ahead: the sync lands on the same newer tree. Asking
    // again and again gets nothing, not another sync, until the retry interval.
    snapshot_beat(&mut h, T0 + 30 * SEC, &d, "Mon, 01 Jul 2024 00:00:00 +0000");
    let mut t = T0 + 31 * SEC;
    while t < T0 + SYNC_RETRY_MS {
        snapshot_beat(&mut h, t, &d, "2024-07-01 00:00");
        assert_eq!(h.request(t, &d, 1), vec![], "at +{} ms", t - T0);
        assert_eq!(
            h.view().drone(&d).and_then(|v| v.no_work),
            Some("waiting for its Portage sync".into())
        );
        t += 30 * SEC;
    }
    snapshot_beat(&mut h, T0 + SYNC_RETRY_MS, &d, "2024-07-01 00:00");
    assert_eq!(
        h.request(T0 + SYNC_RETRY_MS, &d, 1),
        sync_to(&d, "2024-06-01 00:00")
    );
}

#[test]
fn an_enqueue_naming_no_portage_snapshot_is_refused_whole() {
    let mut h = Harness::new();
    let out = h.step(
        T0,
        Input::Enqueue(Enqueue {
            packages: vec![package("dev-libs/a-1.0")],
            portage_snapshot: Some("latest".into()),
            ..Enqueue::default()
        }),
    );
    assert!(
        matches!(&out[..], [Output::Event(Event::InputRejected { reason: RejectReason::BadSnapshot { given, .. } })] if given == "latest"),
        "{out:?}"
    );
    assert_eq!(h.view().counts().total, 0);
    assert_eq!(h.view().expected_portage(), None);
}
