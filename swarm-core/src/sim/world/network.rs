//! How inputs reach the control plane (or do not, while it is down) and how its
//! commands reach the drones: late, duplicated and partitioned delivery.

use super::{Ev, World, START_EPOCH_MS};
use crate::agent::{AgentInput, JobId, WorkOffer};
use crate::id::{LeaseId, Seq};
use crate::input::{Envelope, Input};
use crate::output::{Command, Output};
use crate::time::{Timestamp, SECOND_MS};

impl World {
    /// Delivers one input to the control plane; `None` if it is down.
    pub(super) fn cp(&mut self, input: Input) -> Option<Vec<Output>> {
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
            Some(self.swarm.check_invariants_deep_in_place())
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

    /// Commands reach an agent with its next reply; a partitioned agent gets them when it heals.
    pub(super) fn route(&mut self, c: Command) {
        let name = match &c {
            Command::Assign { drone, .. }
            | Command::Resend { drone, .. }
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

    /// A command reaches the agent as swarm's replies carry it: an assignment (or the lease it
    /// holds, told again) as a work reply, a revoke as an atom taken away (or, when the drone
    /// was given that atom again since, as the old lease found stale).
    pub(super) fn deliver(&mut self, i: usize, c: Command) {
        match c {
            Command::Assign { package, lease, .. } | Command::Resend { package, lease, .. } => {
                let offer = WorkOffer {
                    offered: vec![(Some(lease.0), package)],
                    ..WorkOffer::default()
                };
                self.feed(i, AgentInput::Work(offer));
            }
            Command::Revoke { lease, package, .. } => {
                let model = &self.agents[i].model;
                let atom = package.or_else(|| {
                    let l = lease?.0;
                    model
                        .jobs()
                        .values()
                        .find(|j| j.lease == Some(l))
                        .map(|j| j.atom.clone())
                });
                let Some(atom) = atom else {
                    return;
                };
                if let Some(old) = lease.filter(|l| self.given_again(i, &atom, *l)) {
                    self.stop_stale_lease(i, old.0);
                    return;
                }
                self.feed(i, AgentInput::Revoke(vec![atom.as_str().to_owned()]));
            }
            Command::Escalate { .. } | Command::SyncPortage { .. } => {}
        }
    }

    /// Whether drone `i` holds a live lease of `atom` other than `revoked`: it was given the atom
    /// again since. Then swarm's replies never name the atom (the core keeps such a revoke out of
    /// the ones it repeats, and answers a late report of the old lease as stale, which stops only
    /// the job that sent it), so a revoke of the old lease must not stop the new build.
    fn given_again(&self, i: usize, atom: &crate::atom::Atom, revoked: LeaseId) -> bool {
        self.swarm
            .view()
            .leases_of(&self.agents[i].name)
            .iter()
            .any(|l| l.package == *atom && l.lease != revoked)
    }

    /// Stops the job that still holds the revoked lease `old`, if any, as a stale reply does.
    fn stop_stale_lease(&mut self, i: usize, old: u64) {
        let jobs: Vec<JobId> = self.agents[i]
            .model
            .jobs()
            .iter()
            .filter(|(_, j)| j.lease == Some(old))
            .map(|(id, _)| *id)
            .collect();
        for job in jobs {
            let why = "stale: the server moved the package".to_owned();
            self.feed(i, AgentInput::Stale { job, why });
        }
    }

    pub(super) fn send_report(&mut self, i: usize, input: Input) {
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

    pub(super) fn on_report(&mut self, i: usize, boot: u32, input: Input, attempt: u32) {
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

    pub(super) fn flush_mailbox(&mut self, i: usize) {
        let mail = std::mem::take(&mut self.agents[i].mailbox);
        for c in mail {
            self.deliver(i, c);
        }
    }
}
