//! Which faults happen, to whom and when (a scenario's list, or the seed's
//! draw), the operator's random actions, and the healing phase after which all
//! work must finish.

use super::{Agent, Ev, World, PROBE_MS};
use crate::id::DroneName;
use crate::input::{Control, Enqueue, Input, PackageSpec};
use crate::sim::rng::Rng;
use crate::sim::scenario::{At, Blip, Faults, Window};
use crate::time::{MINUTE_MS, SECOND_MS};
use std::collections::BTreeSet;

impl World {
    /// Draws the seed's faults (when the scenario asks for random ones) and
    /// checks that every fault names a drone of the fleet.
    pub(super) fn plan_faults(&mut self, horizon_s: u64) -> Result<(), String> {
        if self.faults.random {
            randomize(&mut self.faults, &self.agents, &mut self.rng, horizon_s);
        }
        for name in faults_drones(&self.faults) {
            let ok = DroneName::new(name.clone())
                .ok()
                .is_some_and(|n| self.by_name.contains_key(&n));
            if !ok {
                return Err(format!(
                    "a fault names drone {name:?}, which is not in the fleet"
                ));
            }
        }
        self.stale_queue = self.faults.stale_queue;
        self.asymmetry = self.faults.probe_asymmetry;
        Ok(())
    }

    pub(super) fn schedule_start(&mut self, horizon_ms: u64, hints: bool) {
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

    pub(super) fn operator(&mut self) {
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
            self.at(t, Ev::Control(Box::new(c)));
        }
        if !self.healing {
            let t = self.now + self.rng.range(30 * MINUTE_MS, 3 * 3600 * SECOND_MS);
            self.at(t, Ev::Operator);
        }
    }

    /// The liveness phase: faults off, drones healed, operators undo their
    /// actions; then all work must finish within the bound.
    pub(super) fn heal(&mut self) {
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
        self.queue.retain(|e| {
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
        f.silent_death.push(At { drone, at_s });
    }
    if rng.chance(1, 4) {
        let (drone, at_s) = (name(rng), when(rng));
        f.hang.push(At { drone, at_s });
    }
    if rng.chance(1, 4) {
        let n = 1 + rng.below(agents.len());
        let drones = (0..n)
            .map(|_| name(rng))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let (at_s, down_s) = (when(rng), rng.range(60, 2_400));
        f.power_blip.push(Blip {
            drones,
            at_s,
            down_s,
        });
    }
    if rng.chance(1, 4) {
        let (drone, at_s, for_s) = (name(rng), when(rng), rng.range(30, 1_800));
        f.partition.push(Window { drone, at_s, for_s });
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
