//! The discrete-event world: virtual time, simulated agents, a network with
//! faults, a prober, operators, and the real `Swarm` in the middle.
//!
//! The world knows the ground truth (which drones are really alive, which
//! builds are really running) and the oracle compares it with what the swarm
//! decided: false reclaims, false escalations, duplicate builds.

use super::packages::{self, TruePackage};
use super::report::{Report, Stats};
use super::rng::Rng;
use super::scenario::{Faults, Scenario};
use crate::atom::Atom;
use crate::config::Config;
use crate::health::DroneHealth;
use crate::id::{DroneName, LeaseId, Seq};
use crate::input::{
    Control, DroneSpec, Enqueue, Envelope, FailureClass, Heartbeat, Input, Outcome, PackageSpec,
    ProbeStatus, Report as LeaseReport,
};
use crate::invariants::Monitor;
use crate::output::{Command, EscalationAction, Event, Output, ReclaimReason, RejectReason};
use crate::swarm::Swarm;
use crate::time::{Timestamp, MINUTE_MS, SECOND_MS};
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
    Start(usize, u32, LeaseId),
    Done(usize, u32, LeaseId),
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
    Control(Control),
    Liveness,
}

#[derive(Clone, Debug)]
struct Job {
    pkg: usize,
    atom: Atom,
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
    jobs: BTreeMap<LeaseId, Job>,
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
    queue: BTreeMap<(u64, u64), Ev>,
    qseq: u64,
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
            agents.push(Agent {
                name,
                slots: opts.config.slots_for(spec.cores),
                spec,
                speed_pct: m.speed_pct.max(1),
                infra_fail_permille: m.infra_fail_permille,
                alive: true,
                hung: false,
                partitioned: false,
                boot: 0,
                jobs: BTreeMap::new(),
                mailbox: Vec::new(),
                died_at: None,
                reachable_since: 0,
            });
        }
        let mut faults = sc.faults.clone();
        if faults.random {
            randomize(&mut faults, &agents, &mut rng, sc.horizon_s);
        }
        for name in faults_drones(&faults) {
            let ok = DroneName::new(name.clone())
                .ok()
                .is_some_and(|n| by_name.contains_key(&n));
            if !ok {
                return Err(format!(
                    "a fault names drone {name:?}, which is not in the fleet"
                ));
            }
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
        Ok(World {
            rng,
            now: 0,
            clock_offset: 0,
            queue: BTreeMap::new(),
            qseq: 0,
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
            stale_queue: faults.stale_queue,
            asymmetry: faults.probe_asymmetry,
            faults,
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
        })
        .map(|mut w| {
            w.schedule_start(sc.horizon_s * SECOND_MS, sc.duration_hints);
            w
        })
    }

    fn at(&mut self, t: u64, ev: Ev) {
        self.qseq += 1;
        self.queue.insert((t, self.qseq), ev);
    }

    fn idx(&self, name: &str) -> usize {
        DroneName::new(name)
            .ok()
            .and_then(|n| self.by_name.get(&n).copied())
            .unwrap_or(0)
    }

    fn schedule_start(&mut self, horizon_ms: u64, hints: bool) {
        for i in 0..self.agents.len() {
            let t = self.rng.range(0, 5 * SECOND_MS);
            self.at(t, Ev::Revive(i));
            let p = self.rng.range(PROBE_MS, 2 * PROBE_MS);
            self.at(p, Ev::Probe(i));
        }
        let mut specs = Vec::with_capacity(self.pkgs.len());
        for p in &self.pkgs {
            let noise = self.rng.range(75, 126);
            specs.push(PackageSpec {
                atom: p.atom.clone(),
                deps: p.deps.iter().map(|d| self.pkgs[*d].atom.clone()).collect(),
                priority: 0,
                estimate_s: hints.then_some(p.duration_ms * noise / 100 / 1000),
                profile: None,
            });
        }
        self.at(
            6 * SECOND_MS,
            Ev::Report(
                usize::MAX,
                0,
                Box::new(Input::Enqueue(Enqueue {
                    packages: specs,
                    ..Enqueue::default()
                })),
                0,
            ),
        );
        self.at(SECOND_MS, Ev::Tick);
        let f = self.faults.clone();
        for a in &f.silent_death {
            let i = self.idx(&a.drone);
            self.at(a.at_s * SECOND_MS, Ev::KillHolding(i, 60));
        }
        for a in &f.hang {
            let i = self.idx(&a.drone);
            self.at(a.at_s * SECOND_MS, Ev::Hang(i));
        }
        for b in &f.power_blip {
            for d in &b.drones {
                let i = self.idx(d);
                self.at(b.at_s * SECOND_MS, Ev::Kill(i));
                self.at((b.at_s + b.down_s) * SECOND_MS, Ev::Revive(i));
            }
        }
        for p in &f.partition {
            let i = self.idx(&p.drone);
            self.at(p.at_s * SECOND_MS, Ev::Partition(i, true));
            self.at((p.at_s + p.for_s) * SECOND_MS, Ev::Partition(i, false));
        }
        self.runaway = f.runaway.as_deref().map(|n| self.idx(n));
        for &t in &f.cp_restarts {
            self.at(
                t * SECOND_MS,
                Ev::CpDown(f.cp_downtime_s.max(1) * SECOND_MS),
            );
        }
        for &(t, jump) in &f.clock_jumps {
            self.at(t * SECOND_MS, Ev::ClockJump(jump * SECOND_MS));
        }
        if f.operator_actions {
            let t = self.rng.range(30 * MINUTE_MS, 3 * 3600 * SECOND_MS);
            self.at(t, Ev::Operator);
        }
        self.at(horizon_ms.max(SECOND_MS), Ev::Liveness);
    }

    fn main_loop(&mut self) {
        while self.failure.is_none() {
            let Some(((t, _), ev)) = self.queue.pop_first() else {
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

    /// All work is settled: every package is built, blocked, or waits on a
    /// blocked dependency (a verdict for a human), and nothing is leased.
    fn done(&mut self) -> bool {
        if self.stats.enqueued_at == 0 || self.swarm.view().lease_count() > 0 {
            return false;
        }
        if self.built.len() + self.blocked.len() == self.pkgs.len() {
            return true;
        }
        // Before healing, blocked work may be the faults' doing: only the strict rule ends a run.
        if !self.healing || self.swarm.view().ready_count() > 0 {
            return false;
        }
        let key = (self.built.len(), self.blocked.len());
        if let Some((checked, settled)) = self.settled_checked {
            if checked == key {
                return settled;
            }
        }
        // Packages come after their dependencies only in generated worlds, so iterate to a fixpoint.
        let mut stuck: Vec<bool> = (0..self.pkgs.len())
            .map(|i| self.blocked.contains(&i))
            .collect();
        let mut changed = true;
        while changed {
            changed = false;
            for (i, p) in self.pkgs.iter().enumerate() {
                if !stuck[i] && !self.built.contains(&i) && p.deps.iter().any(|d| stuck[*d]) {
                    stuck[i] = true;
                    changed = true;
                }
            }
        }
        let settled = (0..self.pkgs.len()).all(|i| stuck[i] || self.built.contains(&i));
        self.settled_checked = Some((key, settled));
        settled
    }

    fn fail(&mut self, reason: String) {
        if self.failure.is_none() {
            self.failure = Some(SimFailure {
                seq: self.seq,
                reason,
            });
        }
    }

    /// Integrates busy slots and runnable demand up to `t`.
    fn sample(&mut self, t: u64) {
        let dt = t.saturating_sub(self.last_sample);
        self.last_sample = t;
        if dt == 0 || self.stats.enqueued_at == 0 {
            return;
        }
        // Counting the fleet is linear in drones; big fleets recount every 10 s of virtual time.
        if self.agents.len() <= 64 || t.saturating_sub(self.fleet_counted_at) >= 10 * SECOND_MS {
            let (mut busy, mut slots) = (0u64, 0u64);
            for a in &self.agents {
                if a.alive && !a.partitioned {
                    slots += u64::from(a.slots);
                    if !a.hung {
                        busy += a.jobs.values().filter(|j| j.started).count() as u64;
                    }
                }
            }
            self.fleet_count = (busy, slots);
            self.fleet_counted_at = t;
        }
        let (busy, slots) = self.fleet_count;
        let v = self.swarm.view();
        let demand = slots.min(u64::from(v.ready_count() + v.lease_count()));
        self.stats.busy_slot_ms += busy.min(demand) * dt;
        self.stats.demand_slot_ms += demand * dt;
    }

    // ------------------------------------------------------------------ the control plane

    /// Delivers one input to the control plane; `None` if it is down.
    fn cp(&mut self, input: Input) -> Option<Vec<Output>> {
        if self.cp_down_until.is_some() {
            return None;
        }
        self.seq += 1;
        let env = Envelope {
            seq: Seq(self.seq),
            at: Timestamp(START_EPOCH_MS + self.now + self.clock_offset),
            input,
        };
        let out = self.swarm.handle(&env);
        let check = if self.seq % (self.check_every * 500) == 0 {
            Some(self.swarm.check_invariants_deep())
        } else {
            (self.seq % self.check_every == 0).then(|| self.swarm.check_invariants())
        };
        if let Some(Err(v)) = check {
            self.stats.invariant_violations += 1;
            self.fail(v.to_string());
        }
        if let Err(v) = self.monitor.check_step(&env, &out, &self.swarm) {
            self.stats.invariant_violations += 1;
            self.fail(v.to_string());
        }
        if self.keep_log {
            self.log.push(env);
        }
        self.observe(&out);
        if let Some(next) = self.swarm.poll_timeout() {
            let t = next
                .0
                .saturating_sub(START_EPOCH_MS + self.clock_offset)
                .max(self.now + 1);
            if self.next_tick.is_none_or(|nt| t < nt) {
                self.next_tick = Some(t);
                self.at(t, Ev::Tick);
            }
        }
        Some(out)
    }

    fn observe(&mut self, out: &[Output]) {
        let now = self.now;
        for o in out {
            match o {
                Output::Command(c) => self.route(c.clone()),
                Output::Event(e) => match e {
                    Event::Built { package, .. } => {
                        if let Some(&i) = self.by_atom.get(package) {
                            self.built.insert(i);
                        }
                        self.stats.built += 1;
                    }
                    Event::BuildFailed { .. } => self.stats.failed += 1,
                    Event::Blocked { package, .. } => {
                        if let Some(&i) = self.by_atom.get(package) {
                            self.blocked.insert(i);
                        }
                    }
                    Event::Unblocked { package, .. } => {
                        if let Some(&i) = self.by_atom.get(package) {
                            self.blocked.remove(&i);
                        }
                    }
                    Event::Reclaimed { drone, reason, .. } => self.on_reclaimed(drone, *reason),
                    Event::Escalated { drone, action } => self.on_escalated(drone, *action),
                    Event::BrakeEngaged { reason, .. } => {
                        self.stats.brake_engagements += 1;
                        if self.stats.brake_reason.is_none() {
                            self.stats.brake_reason = Some(reason.clone());
                        }
                    }
                    Event::Grounded { drone, until, .. } => {
                        self.grounded.insert(drone.clone(), until.0);
                        self.note_grounded();
                    }
                    Event::Ungrounded { drone } => {
                        self.grounded.remove(drone);
                    }
                    Event::InputRejected {
                        reason: RejectReason::StaleReport { .. },
                    } => self.stats.stale_rejected += 1,
                    Event::Queued { added, .. } if *added > 0 && self.stats.enqueued_at == 0 => {
                        self.stats.enqueued_at = now;
                    }
                    _ => {}
                },
            }
        }
    }

    fn note_grounded(&mut self) {
        let now = START_EPOCH_MS + self.now + self.clock_offset;
        let grounded = self.grounded.values().filter(|u| **u > now).count() as u64;
        let active = u64::from(self.swarm.view().active_drones()).max(1);
        self.stats.grounded_max_pct = self.stats.grounded_max_pct.max(grounded * 100 / active);
    }

    fn on_reclaimed(&mut self, drone: &DroneName, reason: ReclaimReason) {
        *self
            .stats
            .reclaims_by_reason
            .entry(format!("{reason:?}"))
            .or_default() += 1;
        let Some(&i) = self.by_name.get(drone) else {
            return;
        };
        let a = &self.agents[i];
        let reachable = a.alive && !a.partitioned;
        if reachable && reason != ReclaimReason::Returned {
            self.stats.reclaims_online += 1;
        }
        // The control plane can only be blamed once it could have seen fresh heartbeats.
        let reachable = reachable && self.seen_for_a_grace(i);
        if reachable
            && matches!(
                reason,
                ReclaimReason::Offline | ReclaimReason::ConfirmedDead
            )
        {
            self.stats.false_reclaims += 1;
            self.fail(format!(
                "oracle: {drone}'s work was reclaimed ({reason:?}) while it was alive and reachable"
            ));
        }
        if let Some(died) = self.agents[i].died_at.take() {
            if !self.agents[i].alive {
                self.stats.death_to_reclaim_ms.push(self.now - died);
            }
        }
    }

    fn on_escalated(&mut self, drone: &DroneName, action: EscalationAction) {
        *self
            .stats
            .escalations_by_level
            .entry(format!("{action:?}"))
            .or_default() += 1;
        let Some(&i) = self.by_name.get(drone) else {
            return;
        };
        let (alive, hung, partitioned) = (
            self.agents[i].alive,
            self.agents[i].hung,
            self.agents[i].partitioned,
        );
        if alive && !hung && !partitioned && self.seen_for_a_grace(i) {
            self.stats.false_escalations += 1;
            self.fail(format!(
                "oracle: {drone} was escalated ({action:?}) while alive, reachable and working"
            ));
        }
        // The world's answer to the step: a reboot or a human brings a dead VM back;
        // a service restart cures a hang.
        let revive_in = match (action, alive) {
            (EscalationAction::Reboot, false) => Some(2 * MINUTE_MS),
            (EscalationAction::Manual, false) => Some(30 * MINUTE_MS),
            _ => None,
        };
        if let Some(dt) = revive_in {
            self.at(self.now + dt, Ev::Revive(i));
        }
        if hung
            && matches!(
                action,
                EscalationAction::RestartService | EscalationAction::HardRestart
            )
        {
            self.at(self.now + 30 * SECOND_MS, Ev::Revive(i));
        }
    }

    /// Commands reach an agent with its next reply; a partitioned agent gets them when it heals.
    fn route(&mut self, c: Command) {
        let name = match &c {
            Command::Assign { drone, .. }
            | Command::Revoke { drone, .. }
            | Command::Escalate { drone, .. }
            | Command::SyncPortage { drone, .. } => drone.clone(),
        };
        if matches!(c, Command::Assign { .. }) {
            self.stats.assigns += 1;
        }
        let Some(&i) = self.by_name.get(&name) else {
            return;
        };
        if !self.agents[i].alive {
            return;
        }
        if self.agents[i].partitioned {
            self.agents[i].mailbox.push(c);
            return;
        }
        self.deliver(i, c);
    }

    fn deliver(&mut self, i: usize, c: Command) {
        let boot = self.agents[i].boot;
        match c {
            Command::Assign { package, lease, .. } => {
                let Some(&pkg) = self.by_atom.get(&package) else {
                    return;
                };
                self.agents[i].jobs.insert(
                    lease,
                    Job {
                        pkg,
                        atom: package,
                        started: false,
                        outcome: None,
                    },
                );
                let t = self.now + self.rng.range(SECOND_MS, 3 * SECOND_MS);
                self.at(t, Ev::Start(i, boot, lease));
            }
            Command::Revoke { lease, package, .. } => {
                let lids: Vec<LeaseId> = match lease {
                    Some(l) => vec![l],
                    None => self.agents[i]
                        .jobs
                        .iter()
                        .filter(|(_, j)| Some(&j.atom) == package.as_ref())
                        .map(|(l, _)| *l)
                        .collect(),
                };
                for l in lids {
                    self.kill_job(i, l);
                }
            }
            Command::Escalate { .. } | Command::SyncPortage { .. } => {}
        }
    }

    /// Reachable for at least a heartbeat grace: long enough for the control
    /// plane to have heard from it.
    fn seen_for_a_grace(&self, i: usize) -> bool {
        self.now.saturating_sub(self.agents[i].reachable_since) >= self.heartbeat_grace_ms
    }

    fn kill_job(&mut self, i: usize, lease: LeaseId) {
        if let Some(job) = self.agents[i].jobs.remove(&lease) {
            if job.started {
                self.running[job.pkg] = self.running[job.pkg].saturating_sub(1);
            }
        }
    }

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
            Ev::Start(i, boot, lease) => self.on_start(i, boot, lease),
            Ev::Done(i, boot, lease) => self.on_done(i, boot, lease),
            Ev::Report(i, boot, input, attempt) => self.on_report(i, boot, *input, attempt),
            Ev::Probe(i) => self.on_probe(i),
            Ev::Kill(i) => self.kill(i),
            Ev::KillHolding(i, tries) => {
                if self.agents[i].jobs.is_empty() && tries > 0 {
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
                    let (boot, lids): (u32, Vec<LeaseId>) =
                        (a.boot, a.jobs.keys().copied().collect());
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
                self.cp(Input::Control(c));
            }
            Ev::Liveness => self.heal(),
        }
    }

    fn send_report(&mut self, i: usize, input: Input) {
        let boot = self.agents[i].boot;
        let late = self
            .rng
            .chance(u64::from(self.faults.late_reports_permille), 1000);
        let delay = if late {
            self.rng.range(5 * SECOND_MS, 120 * SECOND_MS)
        } else {
            self.rng.range(5, 50)
        };
        if self
            .rng
            .chance(u64::from(self.faults.duplicate_reports_permille), 1000)
        {
            let t = self.now + delay + self.rng.range(SECOND_MS, 60 * SECOND_MS);
            self.at(t, Ev::Report(i, boot, Box::new(input.clone()), 0));
        }
        self.at(self.now + delay, Ev::Report(i, boot, Box::new(input), 0));
    }

    fn on_report(&mut self, i: usize, boot: u32, input: Input, attempt: u32) {
        if i == usize::MAX {
            // The operator's enqueue.
            if self.cp(input.clone()).is_none() {
                self.at(
                    self.now + 10 * SECOND_MS,
                    Ev::Report(i, boot, Box::new(input), attempt + 1),
                );
            }
            return;
        }
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return; // the agent died with this report unsent
        }
        if a.partitioned || self.cp_down_until.is_some() {
            let backoff = ((5 * SECOND_MS) << attempt.min(4)) + self.rng.range(0, 2 * SECOND_MS);
            self.at(
                self.now + backoff,
                Ev::Report(i, boot, Box::new(input), attempt + 1),
            );
            return;
        }
        let finished = matches!(input, Input::BuildFinished { .. });
        self.cp(input);
        self.flush_mailbox(i);
        if finished {
            self.at(self.now + 1, Ev::Poll(i, boot, false));
        }
    }

    fn flush_mailbox(&mut self, i: usize) {
        let mail = std::mem::take(&mut self.agents[i].mailbox);
        for c in mail {
            self.deliver(i, c);
        }
    }

    fn on_heartbeat(&mut self, i: usize, boot: u32) {
        if !self.agents[i].alive || self.agents[i].boot != boot {
            return;
        }
        let jitter = self.rng.range(0, 2 * SECOND_MS);
        self.at(
            self.now + self.heartbeat_ms + jitter,
            Ev::Heartbeat(i, boot),
        );
        let a = &self.agents[i];
        if a.partitioned {
            return;
        }
        let hb = Heartbeat {
            drone: a.name.clone(),
            health: Some(DroneHealth::Healthy),
            mem_percent: Some(40),
            disk_percent: Some(50),
            leases: Some(a.jobs.keys().copied().collect()),
            started: a
                .jobs
                .iter()
                .filter(|(_, j)| j.started)
                .map(|(l, _)| *l)
                .collect(),
            ..Heartbeat::default()
        };
        if self.cp(Input::Heartbeat(hb)).is_some() {
            self.adopt_listed_leases(i);
        }
        self.flush_mailbox(i);
    }

    /// swarm's register/heartbeat reply lists the drone's leases; an agent that
    /// lost track of one (it restarted while the control plane was down) adopts
    /// and builds it instead of leaving it held forever.
    fn adopt_listed_leases(&mut self, i: usize) {
        let boot = self.agents[i].boot;
        let listed = self.swarm.view().leases_of(&self.agents[i].name);
        for l in listed {
            if self.agents[i].jobs.contains_key(&l.lease) {
                continue;
            }
            let Some(&pkg) = self.by_atom.get(&l.package) else {
                continue;
            };
            self.agents[i].jobs.insert(
                l.lease,
                Job {
                    pkg,
                    atom: l.package,
                    started: false,
                    outcome: None,
                },
            );
            let t = self.now + self.rng.range(SECOND_MS, 3 * SECOND_MS);
            self.at(t, Ev::Start(i, boot, l.lease));
        }
    }

    fn on_poll(&mut self, i: usize, boot: u32, periodic: bool) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        let free = a.slots.saturating_sub(a.jobs.len() as u32);
        if !a.partitioned && !a.hung && free > 0 {
            let name = a.name.clone();
            self.cp(Input::RequestWork {
                drone: name,
                free_slots: free,
            });
            self.flush_mailbox(i);
        }
        if periodic {
            let t = self.now + POLL_MS + self.rng.range(0, SECOND_MS);
            self.at(t, Ev::Poll(i, boot, true));
        }
    }

    fn on_start(&mut self, i: usize, boot: u32, lease: LeaseId) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        let Some(job) = a.jobs.get(&lease) else {
            return;
        };
        let (pkg, atom) = (job.pkg, job.atom.clone());
        let p = &self.pkgs[pkg];
        let full = p.duration_ms * 100 / u64::from(a.speed_pct);
        let (outcome, after) = if self.runaway == Some(i) {
            (
                Outcome::Failed {
                    class: FailureClass::Infra,
                    detail: "instant failure".into(),
                },
                2 * SECOND_MS,
            )
        } else if self.stale_queue {
            // What the real agent does with emerge's log: the shared classifier
            // gives the class (a slot conflict is a build failure) and the
            // cause the detail starts with.
            let (class, cause) =
                crate::failure::classify(crate::emerge_logs::SLOT_CONFLICT, FailureClass::Build);
            let detail = cause.map_or_else(
                || "emerge failed".to_owned(),
                |c| format!("{c}: emerge could not resolve {atom}"),
            );
            (Outcome::Failed { class, detail }, 5 * SECOND_MS)
        } else if let Some(dep) = p.deps.iter().find(|d| !self.built.contains(*d)) {
            // emerge cannot build against a dependency the binhost does not have yet.
            let detail = format!("dependency {} not yet built", self.pkgs[*dep].atom);
            (
                Outcome::Failed {
                    class: FailureClass::Build,
                    detail,
                },
                full / 10,
            )
        } else if p.ram_mb > a.spec.ram_mb {
            (
                Outcome::Failed {
                    class: FailureClass::Oom,
                    detail: "killed by the OOM killer".into(),
                },
                full * 2 / 5,
            )
        } else if self.rng.chance(u64::from(p.fail_permille), 1000) {
            (
                Outcome::Failed {
                    class: FailureClass::Build,
                    detail: "compile error".into(),
                },
                full / 2,
            )
        } else if self.rng.chance(u64::from(a.infra_fail_permille), 1000) {
            (
                Outcome::Failed {
                    class: FailureClass::Infra,
                    detail: "sandbox error".into(),
                },
                full / 3,
            )
        } else {
            let jitter = full / 20;
            (
                Outcome::Success,
                full - jitter + self.rng.range(0, 2 * jitter + 1),
            )
        };
        let hung = a.hung;
        let name = a.name.clone();
        if let Some(job) = self.agents[i].jobs.get_mut(&lease) {
            job.started = true;
            job.outcome = Some(outcome);
        }
        self.running[pkg] += 1;
        if self.running[pkg] > 1 {
            self.stats.duplicate_builds += 1;
        }
        let done_at = self.now + if hung { STALL_MS } else { after.max(1) };
        self.at(done_at, Ev::Done(i, boot, lease));
        let report = LeaseReport {
            drone: name,
            package: atom,
            lease: Some(lease),
            epoch: None,
        };
        self.send_report(i, Input::BuildStarted(report));
    }

    fn on_done(&mut self, i: usize, boot: u32, lease: LeaseId) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        let Some(job) = a.jobs.get(&lease) else {
            return;
        };
        let outcome = if a.hung {
            Outcome::Failed {
                class: FailureClass::Infra,
                detail: "stalled: no output for 30m".into(),
            }
        } else {
            job.outcome.clone().unwrap_or(Outcome::Success)
        };
        let report = LeaseReport {
            drone: a.name.clone(),
            package: job.atom.clone(),
            lease: Some(lease),
            epoch: None,
        };
        let took = self.pkgs[job.pkg].duration_ms * 100 / u64::from(a.speed_pct);
        self.kill_job(i, lease);
        self.send_report(
            i,
            Input::BuildFinished {
                report,
                outcome,
                duration_ms: Some(took),
            },
        );
    }

    fn on_probe(&mut self, i: usize) {
        self.at(self.now + PROBE_MS, Ev::Probe(i));
        let a = &self.agents[i];
        let status = if !a.alive {
            if self.rng.chance(1, 2) {
                ProbeStatus::Unreachable
            } else {
                ProbeStatus::Timeout
            }
        } else if a.partitioned || self.asymmetry {
            ProbeStatus::Timeout
        } else {
            ProbeStatus::Ok
        };
        let drone = a.name.clone();
        self.cp(Input::ProbeResult { drone, status });
    }

    fn kill(&mut self, i: usize) {
        if !self.agents[i].alive {
            return;
        }
        let lids: Vec<LeaseId> = self.agents[i].jobs.keys().copied().collect();
        for l in lids {
            self.kill_job(i, l);
        }
        let a = &mut self.agents[i];
        a.alive = false;
        a.hung = false;
        a.boot += 1;
        a.mailbox.clear();
        a.died_at = Some(self.now);
    }

    /// (Re)starts an agent: it registers, adopts the leases the server says it
    /// holds (swarm's register reply lists them) and starts its loops.
    fn revive(&mut self, i: usize) {
        let lids: Vec<LeaseId> = self.agents[i].jobs.keys().copied().collect();
        for l in lids {
            self.kill_job(i, l);
        }
        let a = &mut self.agents[i];
        a.alive = true;
        a.hung = false;
        a.boot += 1;
        a.died_at = None;
        a.reachable_since = self.now;
        let (boot, spec) = (a.boot, a.spec.clone());
        if self.cp(Input::Register(spec)).is_some() {
            self.adopt_listed_leases(i);
        }
        self.at(self.now + 1, Ev::Heartbeat(i, boot));
        self.at(self.now + 2, Ev::Poll(i, boot, true));
    }

    fn operator(&mut self) {
        let names: Vec<DroneName> = self.agents.iter().map(|a| a.name.clone()).collect();
        let d = names[self.rng.below(names.len())].clone();
        let (now, later) = match self.rng.range(0, 5) {
            0 => (Control::Pause, Some(Control::Resume)),
            1 => (
                Control::Drain { drone: d.clone() },
                Some(Control::Undrain { drone: d }),
            ),
            2 => (Control::Rebalance, None),
            3 => (Control::RetryFailures, None),
            _ => (
                Control::PauseDrone { drone: d.clone() },
                Some(Control::ResumeDrone { drone: d }),
            ),
        };
        self.cp(Input::Control(now));
        if let Some(c) = later {
            let t = self.now + self.rng.range(MINUTE_MS, 20 * MINUTE_MS);
            self.at(t, Ev::Control(c));
        }
        if !self.healing {
            let t = self.now + self.rng.range(30 * MINUTE_MS, 3 * 3600 * SECOND_MS);
            self.at(t, Ev::Operator);
        }
    }

    /// The liveness phase: faults off, drones healed, operators undo their
    /// actions; then all work must finish within the bound.
    fn heal(&mut self) {
        self.healing = true;
        self.stale_queue = false;
        self.asymmetry = false;
        self.runaway = None;
        self.faults.late_reports_permille = 0;
        self.faults.duplicate_reports_permille = 0;
        if self.cp_down_until.is_some() {
            self.cp_down_until = Some(self.now);
            self.on_event(Ev::CpUp);
        }
        // Scheduled faults that have not happened yet are cancelled.
        self.queue.retain(|_, e| {
            !matches!(
                e,
                Ev::Kill(_)
                    | Ev::KillHolding(..)
                    | Ev::Hang(_)
                    | Ev::CpDown(_)
                    | Ev::ClockJump(_)
                    | Ev::Operator
                    | Ev::Partition(_, true)
            )
        });
        for i in 0..self.agents.len() {
            if self.agents[i].partitioned {
                self.on_event(Ev::Partition(i, false));
            }
            if !self.agents[i].alive || self.agents[i].hung {
                self.revive(i);
            }
        }
        for c in [
            Control::Resume,
            Control::Unground { drone: None },
            Control::Reset,
            Control::ClearFailures,
            Control::RetryFailures,
        ] {
            self.cp(Input::Control(c));
        }
        for a in self.agents.clone() {
            self.cp(Input::Control(Control::Undrain {
                drone: a.name.clone(),
            }));
            self.cp(Input::Control(Control::ResumeDrone { drone: a.name }));
        }
        let bound = self.stats.liveness_bound_ms;
        self.liveness_deadline = Some(self.now + bound);
    }

    fn finish(mut self) -> SimRun {
        if let (None, Err(v)) = (&self.failure, self.swarm.check_invariants_deep()) {
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

fn faults_drones(f: &Faults) -> Vec<String> {
    let mut v: Vec<String> = f
        .silent_death
        .iter()
        .chain(&f.hang)
        .map(|a| a.drone.clone())
        .collect();
    v.extend(f.power_blip.iter().flat_map(|b| b.drones.clone()));
    v.extend(f.partition.iter().map(|p| p.drone.clone()));
    v.extend(f.runaway.clone());
    v
}

/// Swarm testing: the seed decides which faults are on, and where.
fn randomize(f: &mut Faults, agents: &[Agent], rng: &mut Rng, horizon_s: u64) {
    let name = |rng: &mut Rng| agents[rng.below(agents.len())].name.to_string();
    let when = |rng: &mut Rng| rng.range(600, horizon_s.max(1_200) - 300);
    if rng.chance(1, 3) {
        let (drone, at_s) = (name(rng), when(rng));
        f.silent_death.push(super::scenario::At { drone, at_s });
    }
    if rng.chance(1, 4) {
        let (drone, at_s) = (name(rng), when(rng));
        f.hang.push(super::scenario::At { drone, at_s });
    }
    if rng.chance(1, 4) {
        let n = 1 + rng.below(agents.len());
        let drones = (0..n)
            .map(|_| name(rng))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (at_s, down_s) = (when(rng), rng.range(60, 2_400));
        f.power_blip.push(super::scenario::Blip {
            drones,
            at_s,
            down_s,
        });
    }
    if rng.chance(1, 4) {
        let (drone, at_s, for_s) = (name(rng), when(rng), rng.range(30, 1_800));
        f.partition
            .push(super::scenario::Window { drone, at_s, for_s });
    }
    f.probe_asymmetry |= rng.chance(1, 5);
    if rng.chance(1, 3) {
        f.late_reports_permille = rng.range(1, 200) as u32;
        f.duplicate_reports_permille = rng.range(0, 100) as u32;
    }
    if rng.chance(1, 6) {
        f.runaway = Some(name(rng));
    }
    f.stale_queue |= rng.chance(1, 10);
    if rng.chance(1, 4) {
        f.cp_restarts.push(when(rng));
        f.cp_downtime_s = rng.range(5, 1_800);
    }
    f.operator_actions |= rng.chance(1, 3);
    if rng.chance(1, 6) {
        let (at_s, jump) = (when(rng), rng.range(60, 1_800));
        f.clock_jumps.push((at_s, jump));
    }
}
