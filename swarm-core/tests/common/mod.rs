//! Shared helpers for swarm-core's integration tests.
//!
//! [`Harness`] drives a [`Swarm`] one envelope at a time: it stamps the sequence
//! number, and after every step asserts `check_invariants_deep()` (the state
//! invariants plus index consistency) and the history invariants of a
//! [`Monitor`], panicking with the recent envelopes when one breaks. The free functions build names, atoms and specs in one line and pick
//! the interesting outputs out of a step.
#![allow(dead_code)]

use std::collections::VecDeque;
use swarm_core::{
    Atom, Command, Config, Control, DroneKind, DroneName, DroneSpec, Enqueue, Envelope,
    EscalationAction, Event, FailureClass, Heartbeat, Input, LeaseId, Monitor, Outcome, Output,
    PackageSpec, ProbeStatus, ReclaimReason, Report, Seq, Swarm, Timestamp, View,
};

/// How many recent envelopes a failure message shows.
const TRAIL: usize = 16;

/// A `Swarm` plus a `Monitor`, checked after every step.
pub(crate) struct Harness {
    swarm: Swarm,
    monitor: Monitor,
    seq: u64,
    trail: VecDeque<Envelope>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A harness over the default config.
    pub(crate) fn new() -> Self {
        Harness::with_config(Config::default())
    }

    /// A harness over `config`, which must validate.
    pub(crate) fn with_config(config: Config) -> Self {
        let swarm = Swarm::new(config.clone()).expect("the test config is valid");
        Harness {
            swarm,
            monitor: Monitor::new(config),
            seq: 0,
            trail: VecDeque::new(),
        }
    }

    /// The swarm under test.
    pub(crate) fn swarm(&self) -> &Swarm {
        &self.swarm
    }

    /// Read-only queries.
    pub(crate) fn view(&self) -> View<'_> {
        self.swarm.view()
    }

    /// The policy in force.
    pub(crate) fn config(&self) -> &Config {
        self.swarm.config()
    }

    /// The core's now, in ms.
    pub(crate) fn now_ms(&self) -> u64 {
        self.swarm.view().now().as_ms()
    }

    /// Applies one input at `at_ms` with the next sequence number, checks every
    /// invariant (state, index and history), and returns the outputs.
    pub(crate) fn step(&mut self, at_ms: u64, input: Input) -> Vec<Output> {
        self.seq += 1;
        let env = Envelope {
            seq: Seq(self.seq),
            at: Timestamp(at_ms),
            input,
        };
        let outputs = self.swarm.handle(&env);
        if self.trail.len() == TRAIL {
            self.trail.pop_front();
        }
        self.trail.push_back(env.clone());
        if let Err(v) = self.swarm.check_invariants_deep() {
            panic!("{v}\n{}", self.describe(&outputs));
        }
        if let Err(v) = self.monitor.check_step(&env, &outputs, &self.swarm) {
            panic!("{v}\n{}", self.describe(&outputs));
        }
        outputs
    }

    /// The recent envelopes and the last outputs, for failure messages.
    pub(crate) fn describe(&self, outputs: &[Output]) -> String {
        let mut s = String::from("recent envelopes (oldest first):\n");
        for env in &self.trail {
            s.push_str(&format!(
                "  #{} @{}: {:?}\n",
                env.seq.0, env.at.0, env.input
            ));
        }
        s.push_str(&format!("outputs of the last: {outputs:?}"));
        s
    }

    /// `Register`.
    pub(crate) fn register(&mut self, at_ms: u64, spec: DroneSpec) -> Vec<Output> {
        self.step(at_ms, Input::Register(spec))
    }

    /// A bare heartbeat, as a v3 drone sends it.
    pub(crate) fn heartbeat(&mut self, at_ms: u64, drone: &DroneName) -> Vec<Output> {
        self.step(
            at_ms,
            Input::Heartbeat(Heartbeat {
                drone: drone.clone(),
                ..Heartbeat::default()
            }),
        )
    }

    /// `RequestWork`.
    pub(crate) fn request(
        &mut self,
        at_ms: u64,
        drone: &DroneName,
        free_slots: u32,
    ) -> Vec<Output> {
        self.step(
            at_ms,
            Input::RequestWork {
                drone: drone.clone(),
                free_slots: Some(free_slots),
            },
        )
    }

    /// `Enqueue` of `packages` in the current generation.
    pub(crate) fn enqueue(&mut self, at_ms: u64, packages: Vec<PackageSpec>) -> Vec<Output> {
        self.step(
            at_ms,
            Input::Enqueue(Enqueue {
                packages,
                ..Enqueue::default()
            }),
        )
    }

    /// `Tick`.
    pub(crate) fn tick(&mut self, at_ms: u64) -> Vec<Output> {
        self.step(at_ms, Input::Tick)
    }

    /// `BuildStarted` under `lease`.
    pub(crate) fn started(
        &mut self,
        at_ms: u64,
        drone: &DroneName,
        package: &Atom,
        lease: LeaseId,
    ) -> Vec<Output> {
        self.step(at_ms, Input::BuildStarted(report(drone, package, lease)))
    }

    /// `BuildFinished` under `lease`.
    pub(crate) fn finished(
        &mut self,
        at_ms: u64,
        drone: &DroneName,
        package: &Atom,
        lease: LeaseId,
        outcome: Outcome,
    ) -> Vec<Output> {
        self.step(
            at_ms,
            Input::BuildFinished {
                report: report(drone, package, lease),
                outcome,
                duration_ms: None,
            },
        )
    }

    /// `ProbeResult`.
    pub(crate) fn probe(
        &mut self,
        at_ms: u64,
        drone: &DroneName,
        status: ProbeStatus,
    ) -> Vec<Output> {
        self.step(
            at_ms,
            Input::ProbeResult {
                drone: drone.clone(),
                status,
            },
        )
    }

    /// `Control`.
    pub(crate) fn control(&mut self, at_ms: u64, action: Control) -> Vec<Output> {
        self.step(at_ms, Input::Control(action))
    }
}

/// A drone name; panics on an invalid one.
pub(crate) fn drone(name: &str) -> DroneName {
    DroneName::new(name).expect("valid test drone name")
}

/// A normalised atom; panics on an invalid one.
pub(crate) fn atom(s: &str) -> Atom {
    Atom::parse(s).expect("valid test atom")
}

/// A drone spec with a machine id derived from the name.
pub(crate) fn spec(name: &str, cores: u32, ram_gb: u64) -> DroneSpec {
    DroneSpec {
        name: drone(name),
        machine_id: Some(format!("{name}-machine")),
        cores,
        ram_mb: ram_gb * 1024,
        kind: DroneKind::Qemu,
        ..DroneSpec::default()
    }
}

/// A package with no dependencies and normal priority.
pub(crate) fn package(s: &str) -> PackageSpec {
    PackageSpec::new(atom(s))
}

/// A package depending on `deps`.
pub(crate) fn package_after(s: &str, deps: &[&str]) -> PackageSpec {
    PackageSpec {
        deps: deps.iter().map(|d| atom(d)).collect(),
        ..package(s)
    }
}

/// A package with a priority (higher goes first).
pub(crate) fn package_prio(s: &str, priority: i32) -> PackageSpec {
    PackageSpec {
        priority,
        ..package(s)
    }
}

/// A report under a lease, without an epoch.
pub(crate) fn report(drone: &DroneName, package: &Atom, lease: LeaseId) -> Report {
    Report {
        drone: drone.clone(),
        package: package.clone(),
        lease: Some(lease),
        epoch: None,
    }
}

/// `Outcome::Failed`.
pub(crate) fn failed(class: FailureClass, detail: &str) -> Outcome {
    Outcome::Failed {
        class,
        detail: detail.to_owned(),
    }
}

/// The events among `outputs`.
pub(crate) fn events(outputs: &[Output]) -> impl Iterator<Item = &Event> {
    outputs.iter().filter_map(|o| match o {
        Output::Event(e) => Some(e),
        Output::Command(_) => None,
    })
}

/// The commands among `outputs`.
pub(crate) fn commands(outputs: &[Output]) -> impl Iterator<Item = &Command> {
    outputs.iter().filter_map(|o| match o {
        Output::Command(c) => Some(c),
        Output::Event(_) => None,
    })
}

/// Every `Assign`: (drone, package, lease).
pub(crate) fn assigns(outputs: &[Output]) -> Vec<(DroneName, Atom, LeaseId)> {
    commands(outputs)
        .filter_map(|c| match c {
            Command::Assign {
                drone,
                package,
                lease,
                ..
            } => Some((drone.clone(), package.clone(), *lease)),
            _ => None,
        })
        .collect()
}

/// Every `Revoke`: (drone, lease, package).
pub(crate) fn revokes(outputs: &[Output]) -> Vec<(DroneName, Option<LeaseId>, Option<Atom>)> {
    commands(outputs)
        .filter_map(|c| match c {
            Command::Revoke {
                drone,
                lease,
                package,
                ..
            } => Some((drone.clone(), *lease, package.clone())),
            _ => None,
        })
        .collect()
}

/// One `Reclaimed` event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reclaim {
    pub(crate) drone: DroneName,
    pub(crate) package: Atom,
    pub(crate) lease: LeaseId,
    pub(crate) reason: ReclaimReason,
    pub(crate) started: bool,
}

/// Every `Reclaimed` event.
pub(crate) fn reclaims(outputs: &[Output]) -> Vec<Reclaim> {
    events(outputs)
        .filter_map(|e| match e {
            Event::Reclaimed {
                drone,
                package,
                lease,
                reason,
                started,
            } => Some(Reclaim {
                drone: drone.clone(),
                package: package.clone(),
                lease: *lease,
                reason: *reason,
                started: *started,
            }),
            _ => None,
        })
        .collect()
}

/// Every `Escalate`: (drone, action).
pub(crate) fn escalations(outputs: &[Output]) -> Vec<(DroneName, EscalationAction)> {
    commands(outputs)
        .filter_map(|c| match c {
            Command::Escalate { drone, action } => Some((drone.clone(), *action)),
            _ => None,
        })
        .collect()
}

/// A build environment with these CFLAGS (and a CHOST); `None`: an empty one (a drone that
/// reports nothing, or a profile that expects nothing).
pub(crate) fn env(cflags: Option<&str>) -> swarm_core::BuildEnv {
    let vars: std::collections::BTreeMap<String, String> = cflags
        .map(|c| {
            [
                ("CFLAGS".to_owned(), c.to_owned()),
                ("CHOST".to_owned(), "x86_64-pc-linux-gnu".to_owned()),
            ]
            .into()
        })
        .unwrap_or_default();
    swarm_core::BuildEnv::new(vars).expect("a valid environment")
}

/// The committed fuzz corpus of `handle` (`fuzz/corpus/handle`), file by file in name order.
pub(crate) fn handle_corpus() -> Vec<Vec<u8>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/handle");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .expect("the committed corpus")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no corpus in {dir}");
    files
        .iter()
        .map(|f| std::fs::read(f).expect("readable corpus file"))
        .collect()
}

/// The envelopes of a built-in simulator scenario's run with seed 1 and the default config.
pub(crate) fn sim_log(scenario: &str) -> Vec<Envelope> {
    let scenario = swarm_core::sim::Scenario::builtin(scenario).expect("built-in");
    let opts = swarm_core::sim::SimOptions {
        seed: 1,
        config: Config::default(),
        keep_log: true,
    };
    swarm_core::sim::run(&scenario, &opts)
        .expect("valid scenario")
        .log
}

/// The live lease `report` names as `view` shows it: the lease it carries, whoever holds it, or
/// (a v3 report) its drone's lease of the atom: the lease the core fences it to, before the step.
pub(crate) fn live_lease_named(view: View<'_>, report: &Report) -> Option<LeaseId> {
    match report.lease {
        Some(l) => view.lease(l).map(|l| l.lease),
        None => view
            .leases_of(&report.drone)
            .into_iter()
            .find(|l| l.package == report.package)
            .map(|l| l.lease),
    }
}

/// The kind of a finished report, as the core tells a repeat (`state::reported`): a success sent
/// again arrives as undelivered (its binary was taken since), so the two are one kind.
fn report_kind(outcome: &Outcome) -> u8 {
    match outcome {
        Outcome::Success | Outcome::Undelivered { .. } => 0,
        Outcome::Failed { .. } => 1,
        Outcome::UploadFailed { .. } => 2,
        Outcome::Returned { .. } => 3,
        Outcome::Masked => 4,
    }
}

/// The oracle of repeats: the leases each drone's own finished reports ended, latest last, with
/// the atom and the kind of report; the core remembers the last 32 of them per drone.
#[derive(Default)]
pub(crate) struct OwnReports(std::collections::BTreeMap<DroneName, VecDeque<(LeaseId, Atom, u8)>>);

impl OwnReports {
    /// Notes a step: `named` is the live lease its finished report named before the step
    /// ([`live_lease_named`]), `taken` whether the core took the report (built or accepted).
    pub(crate) fn note(
        &mut self,
        input: &Input,
        named: Option<LeaseId>,
        taken: bool,
        out: &[Output],
    ) {
        if let (
            Input::BuildFinished {
                report, outcome, ..
            },
            Some(lease),
            true,
        ) = (input, named, taken)
        {
            let mine = self.0.entry(report.drone.clone()).or_default();
            mine.push_back((lease, report.package.clone(), report_kind(outcome)));
            while mine.len() > 32 {
                mine.pop_front();
            }
        }
        // A drone removed is forgotten whole; registered again, it starts afresh.
        for o in out {
            if let Output::Event(Event::Removed { drone }) = o {
                self.0.remove(drone);
            }
        }
    }

    /// Whether `drone`'s own report ended `lease`, among the last it is remembered for: a
    /// heartbeat still listing it is not told to stop it.
    pub(crate) fn ended_by(&self, drone: &DroneName, lease: LeaseId) -> bool {
        self.0
            .get(drone)
            .is_some_and(|mine| mine.iter().any(|(l, _, _)| *l == lease))
    }

    /// The kind of the report of its own that ended the lease `report` names, as `view` shows
    /// the state before it, if one did: the lease is no longer live, and that report was of the
    /// same atom.
    fn ended_kind(&self, view: View<'_>, report: &Report) -> Option<u8> {
        let lease = report.lease.filter(|l| view.lease(*l).is_none())?;
        view.drone(&report.drone)?;
        self.0
            .get(&report.drone)?
            .iter()
            .find(|(l, a, _)| *l == lease && *a == report.package)
            .map(|(_, _, k)| *k)
    }

    /// Whether a start report must be answered as a repeat: it comes too late, whatever the
    /// report that ended its lease said.
    pub(crate) fn is_started_after(&self, view: View<'_>, report: &Report) -> bool {
        self.ended_kind(view, report).is_some()
    }

    /// Whether a finished report of `outcome` must be answered as a repeat: the report of its
    /// own that ended the lease was of the same kind.
    pub(crate) fn is_repeat(&self, view: View<'_>, report: &Report, outcome: &Outcome) -> bool {
        self.ended_kind(view, report) == Some(report_kind(outcome))
    }
}
