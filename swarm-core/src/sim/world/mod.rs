//! The discrete-event world: virtual time, simulated agents, a network with
//! faults, a prober, operators, and the real `Swarm` in the middle.
//!
//! The world knows the ground truth (which drones are really alive, which
//! builds are really running) and the oracle compares it with what the swarm
//! decided: false reclaims, false escalations, duplicate builds.
//!
//! Split by concern: `fleet` (what each simulated drone does), `network` (how
//! inputs and commands travel, the control plane's outages), `faults` (which
//! faults happen and when, and the healing phase) and `oracle` (the ground
//! truth checked against the swarm's decisions).

mod drone;
mod faults;
mod fleet;
mod network;
mod oracle;
mod queue;
#[cfg(test)]
mod tests;

use super::packages::{self, TruePackage};
use super::report::{Report, Stats};
use super::rng::Rng;
use super::scenario::{Faults, Scenario};
use crate::agent::{AgentState, JobId};
use crate::atom::Atom;
use crate::config::Config;
use crate::health::HealthMonitor;
use crate::id::DroneName;
use crate::input::{Control, DroneSpec, Envelope, Input, Outcome};
use crate::invariants::Monitor;
use crate::output::Command;
use crate::swarm::Swarm;
use crate::time::{MINUTE_MS, SECOND_MS};
use std::collections::{BTreeMap, BTreeSet};

const POLL_MS: u64 = 10 * SECOND_MS;
const PROBE_MS: u64 = 60 * SECOND_MS;
const STALL_MS: u64 = 30 * MINUTE_MS;
const START_EPOCH_MS: u64 = 1_767_225_600_000; // 2026-01-01, so logs read like production

#[derive(Clone, Debug)]
enum Ev {
    Heartbeat(usize, u32),
    /// A request for work; `true` for the periodic one, which reschedules itself.
    Poll(usize, u32, bool),
    Start(usize, u32, JobId),
    Done(usize, u32, JobId),
    Report(usize, u32, Box<Input>, u32),
    Probe(usize),
    Tick,
    Kill(usize),
    /// A silent death that waits until the drone holds work (the incident: it died holding packages).
    KillHolding(usize, u32),
    Revive(usize),
    Hang(usize),
    Partition(usize, bool),
    CpDown(u64),
    CpUp,
    ClockJump(u64),
    Operator,
    /// Boxed: a control is rare and large, and every event is moved through the queue.
    Control(Box<Control>),
    Liveness,
}

/// What the world knows of one of a drone's builds (the agent knows its lease and atom).
#[derive(Clone, Debug)]
struct Build {
    pkg: usize,
    started: bool,
    outcome: Option<Outcome>,
}

#[derive(Clone, Debug)]
struct Agent {
    name: DroneName,
    spec: DroneSpec,
    speed_pct: u32,
    infra_fail_permille: u32,
    slots: u32,
    alive: bool,
    hung: bool,
    partitioned: bool,
    boot: u32,
    /// The real agent's decisions.
    model: AgentState,
    /// The builds the world runs for it, by the agent's job.
    builds: BTreeMap<JobId, Build>,
    mailbox: Vec<Command>,
    died_at: Option<u64>,
    /// Since when it has been alive and reachable.
    reachable_since: u64,
}

/// Why a run failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// Input sequence number of the failing step.
    pub seq: u64,
    /// What went wrong.
    pub reason: String,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct SimRun {
    /// The SLO report.
    pub report: Report,
    /// Every envelope the swarm handled, in order (empty if logging was off).
    pub log: Vec<Envelope>,
    /// The failure, if any: an invariant, the oracle, or liveness.
    pub failure: Option<SimFailure>,
    /// The swarm's final digest, for determinism checks.
    pub digest: u64,
}

/// How to run.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The seed that chooses everything.
    pub seed: u64,
    /// The policy under test.
    pub config: Config,
    /// Keep the envelope log (needed to write it on failure).
    pub keep_log: bool,
}

pub(crate) struct World {
    rng: Rng,
    now: u64,
    clock_offset: u64,
    queue: queue::Queue<Ev>,
    next_tick: Option<u64>,
    swarm: Swarm,
    monitor: Monitor,
    seq: u64,
    log: Vec<Envelope>,
    keep_log: bool,
    check_every: u64,
    heartbeat_ms: u64,
    heartbeat_grace_ms: u64,
    agents: Vec<Agent>,
    by_name: BTreeMap<DroneName, usize>,
    pkgs: Vec<TruePackage>,
    by_atom: BTreeMap<Atom, usize>,
    running: Vec<u32>,
    cp_down_until: Option<u64>,
    faults: Faults,
    runaway: Option<usize>,
    stale_queue: bool,
    asymmetry: bool,
    healing: bool,
    liveness_deadline: Option<u64>,
    built: BTreeSet<usize>,
    blocked: BTreeSet<usize>,
    grounded: BTreeMap<DroneName, u64>,
    pub(crate) stats: Stats,
    failure: Option<SimFailure>,
    last_sample: u64,
    fleet_count: (u64, u64),
    fleet_counted_at: u64,
    /// (built, blocked) counts at the last full settledness check.
    settled_checked: Option<((usize, usize), bool)>,
}

/// Runs a scenario to completion.
pub fn run(scenario: &Scenario, opts: &SimOptions) -> Result<SimRun, String> {
    let mut w = World::new(scenario, opts)?;
    w.main_loop();
    Ok(w.finish())
}

impl World {
    fn new(sc: &Scenario, opts: &SimOptions) -> Result<World, String> {
        let mut rng = Rng::new(opts.seed);
        let swarm = Swarm::new(opts.config.clone()).map_err(|e| format!("config: {e}"))?;
        let pkgs = packages::build(&sc.packages, &mut rng)?;
        let fleet = sc.fleet();
        if fleet.is_empty() {
            return Err("the scenario has no drones".into());
        }
        let mut agents = Vec::new();
        let mut by_name = BTreeMap::new();
        for (i, m) in fleet.iter().enumerate() {
            let name = DroneName::new(m.name.clone()).map_err(|e| format!("drone {i}: {e}"))?;
            if by_name.insert(name.clone(), i).is_some() {
                return Err(format!("drone {name} is listed twice"));
            }
            let spec = DroneSpec {
                name: name.clone(),
                machine_id: Some(format!("{:032x}", i + 1)),
                cores: m.cores.max(1),
                ram_mb: m.ram_gb * 1024,
                kind: m.kind,
                version: Some("swarm-sim".into()),
                ..DroneSpec::default()
            };
            let slots = opts.config.slots_for(spec.cores);
            agents.push(Agent {
                name,
                slots,
                spec,
                speed_pct: m.speed_pct.max(1),
                infra_fail_permille: m.infra_fail_permille,
                alive: true,
                hung: false,
                partitioned: false,
                boot: 0,
                model: AgentState::new(slots, POLL_MS, HealthMonitor::default()),
                builds: BTreeMap::new(),
                mailbox: Vec::new(),
                died_at: None,
                reachable_since: 0,
            });
        }
        let by_atom = pkgs
            .iter()
            .enumerate()
            .map(|(i, p)| (p.atom.clone(), i))
            .collect();
        let mut stats = Stats::new(
            &pkgs,
            &agents
                .iter()
                .map(|a| (a.slots, a.speed_pct))
                .collect::<Vec<_>>(),
        );
        stats.scenario = sc.name.clone();
        stats.seed = opts.seed;
        let mut w = World {
            rng,
            now: 0,
            clock_offset: 0,
            queue: queue::Queue::new(),
            next_tick: None,
            swarm,
            monitor: Monitor::new(opts.config.clone()),
            seq: 0,
            log: Vec::new(),
            keep_log: opts.keep_log,
            check_every: sc.check_every.max(1),
            heartbeat_ms: sc.heartbeat_s.max(1) * SECOND_MS,
            heartbeat_grace_ms: opts.config.heartbeat_grace_ms,
            running: vec![0; pkgs.len()],
            agents,
            by_name,
            pkgs,
            by_atom,
            cp_down_until: None,
            runaway: None,
            stale_queue: false,
            asymmetry: false,
            faults: sc.faults.clone(),
            healing: false,
            liveness_deadline: None,
            built: BTreeSet::new(),
            blocked: BTreeSet::new(),
            grounded: BTreeMap::new(),
            stats,
            failure: None,
            last_sample: 0,
            fleet_count: (0, 0),
            fleet_counted_at: 0,
            settled_checked: None,
        };
        // The seed's faults are drawn before anything else uses the generator, as before the split.
        w.plan_faults(sc.horizon_s)?;
        w.schedule_start(sc.horizon_s * SECOND_MS, sc.duration_hints);
        Ok(w)
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.queue.push(t, ev);
    }

    fn idx(&self, name: &str) -> usize {
        DroneName::new(name)
            .ok()
            .and_then(|n| self.by_name.get(&n).copied())
            .unwrap_or(0)
    }

    fn main_loop(&mut self) {
        while self.failure.is_none() {
            let Some((t, ev)) = self.queue.pop() else {
                break;
            };
            self.sample(t);
            self.now = t;
            self.on_event(ev);
            if self.done() {
                self.stats.makespan_ms = self.now.saturating_sub(self.stats.enqueued_at);
                return;
            }
            if let Some(deadline) = self.liveness_deadline {
                if self.now > deadline {
                    let c = self.swarm.view().counts();
                    self.fail(format!(
                        "liveness: work unfinished {}s after healing (built {}, blocked {}, total {}, leases {})",
                        (self.now - deadline) / 1000 + self.stats.liveness_bound_ms / 1000,
                        c.built,
                        c.blocked,
                        c.total,
                        self.swarm.view().lease_count()
                    ));
                }
            }
        }
    }

    // ------------------------------------------------------------------ the control plane

    // ------------------------------------------------------------------ events

    fn on_event(&mut self, ev: Ev) {
        match ev {
            Ev::Tick => {
                if self.next_tick.is_some_and(|t| t <= self.now) {
                    self.next_tick = None;
                }
                self.cp(Input::Tick);
                let safety = self.now + 30 * SECOND_MS;
                if self.next_tick.is_none_or(|t| t > safety) {
                    self.next_tick = Some(safety);
                    self.at(safety, Ev::Tick);
                }
            }
            Ev::Heartbeat(i, boot) => self.on_heartbeat(i, boot),
            Ev::Poll(i, boot, periodic) => self.on_poll(i, boot, periodic),
            Ev::Start(i, boot, job) => self.on_start(i, boot, job),
            Ev::Done(i, boot, job) => self.on_done(i, boot, job),
            Ev::Report(i, boot, input, attempt) => self.on_report(i, boot, *input, attempt),
            Ev::Probe(i) => self.on_probe(i),
            Ev::Kill(i) => self.kill(i),
            Ev::KillHolding(i, tries) => {
                if self.agents[i].model.jobs().is_empty() && tries > 0 {
                    self.at(self.now + MINUTE_MS, Ev::KillHolding(i, tries - 1));
                } else {
                    self.kill(i);
                }
            }
            Ev::Revive(i) => self.revive(i),
            Ev::Hang(i) => {
                let a = &mut self.agents[i];
                if a.alive {
                    a.hung = true;
                    let (boot, lids): (u32, Vec<JobId>) =
                        (a.boot, a.builds.keys().copied().collect());
                    for l in lids {
                        self.at(self.now + STALL_MS, Ev::Done(i, boot, l));
                    }
                }
            }
            Ev::Partition(i, on) => {
                self.agents[i].partitioned = on;
                if !on {
                    self.agents[i].reachable_since = self.now;
                    let mail = std::mem::take(&mut self.agents[i].mailbox);
                    for c in mail {
                        self.deliver(i, c);
                    }
                }
            }
            Ev::CpDown(down) => {
                if self.cp_down_until.is_none() {
                    self.cp_down_until = Some(self.now + down);
                    self.at(self.now + down, Ev::CpUp);
                }
            }
            Ev::CpUp => {
                if self.cp_down_until.take().is_some() {
                    match Swarm::restore(self.swarm.state().clone()) {
                        Ok(s) => self.swarm = s,
                        Err(e) => self.fail(format!("restore after restart failed: {e}")),
                    }
                    self.cp(Input::Recovered);
                }
            }
            Ev::ClockJump(ms) => self.clock_offset += ms,
            Ev::Operator => self.operator(),
            Ev::Control(c) => {
                self.cp(Input::Control(*c));
            }
            Ev::Liveness => self.heal(),
        }
    }

    fn finish(mut self) -> SimRun {
        if let (None, Err(v)) = (&self.failure, self.swarm.check_invariants_deep_in_place()) {
            let reason = v.to_string();
            self.stats.invariant_violations += 1;
            self.fail(reason);
        }
        if self.failure.is_none() && !self.done() {
            self.fail("the run ended with work unfinished".into());
        }
        let c = self.swarm.view().counts();
        self.stats.blocked = u64::from(c.blocked);
        if self.stats.makespan_ms == 0 {
            self.stats.makespan_ms = self.now.saturating_sub(self.stats.enqueued_at);
        }
        SimRun {
            report: self.stats.report(),
            log: self.log,
            failure: self.failure,
            digest: self.swarm.digest(),
        }
    }
}
