//! Each simulated drone runs the real agent's decisions ([`crate::agent::AgentState`], the state
//! machine `swarm drone` runs): this file feeds it what the simulated drone hears and carries out
//! what it decides, as `swarm drone`'s threads do over HTTP.

use super::{Build, Ev, World, START_EPOCH_MS};
use crate::agent::{
    AgentAction, AgentInput, BuildEnd, JobId, Listed, ReportWhat, RequestMark, ServerReply, Stop,
};
use crate::id::LeaseId;
use crate::input::{Input, Outcome, Report as LeaseReport};
use crate::time::{Timestamp, SECOND_MS};

/// How long a simulated agent waits before asking again after a request for work failed.
const WORK_RETRY_MS: u64 = 5 * SECOND_MS;

impl World {
    /// The drone's own clock (the control plane's may be off; the agent's never jumps).
    fn agent_now(&self) -> Timestamp {
        Timestamp(START_EPOCH_MS + self.now)
    }

    /// Feeds one fact to drone `i`'s agent and carries out what it decides.
    pub(super) fn feed(&mut self, i: usize, input: AgentInput) {
        let now = self.agent_now();
        let actions = self.agents[i].model.handle(input, now);
        let got = actions
            .iter()
            .any(|a| matches!(a, AgentAction::Start { .. }));
        for a in actions {
            self.act(i, a);
        }
        // As the real agent does: got one, so ask again at once while a slot is free.
        if got && self.agents[i].model.free_slots().is_some() {
            let boot = self.agents[i].boot;
            self.at(self.now + 1, Ev::Poll(i, boot, false));
        }
    }

    fn act(&mut self, i: usize, action: AgentAction) {
        let boot = self.agents[i].boot;
        match action {
            AgentAction::Start { job, atom, .. } => {
                let Some(&pkg) = self.by_atom.get(&atom) else {
                    return;
                };
                self.agents[i].builds.insert(
                    job,
                    Build {
                        pkg,
                        started: false,
                        outcome: None,
                    },
                );
                let t = self.now + self.rng.range(SECOND_MS, 3 * SECOND_MS);
                self.at(t, Ev::Start(i, boot, job));
            }
            AgentAction::Kill { job, stop } => {
                self.check_kill(i, job, &stop);
                self.stop_build(i, job);
                let ended = AgentInput::BuildEnded {
                    job,
                    end: BuildEnd::Stopped,
                };
                self.feed(i, ended);
            }
            AgentAction::Report {
                job,
                atom,
                lease,
                what,
            } => {
                if let ReportWhat::Returned(reason) = what {
                    self.report_finished(i, atom, lease, Outcome::Returned { reason }, None);
                }
                // `ReportWhat::Outcome` comes only from `on_done`, which sends it itself.
                self.feed(i, AgentInput::Reported(job));
            }
            AgentAction::ReturnLease { lease, package } => {
                if let Ok(atom) = crate::atom::Atom::parse(&package) {
                    let report = LeaseReport {
                        drone: self.agents[i].name.clone(),
                        package: atom,
                        lease: Some(LeaseId(lease)),
                        epoch: None,
                    };
                    let reason = "not running on this drone (the agent restarted)".to_owned();
                    self.send_report(
                        i,
                        Input::BuildFinished {
                            report,
                            outcome: Outcome::Returned { reason },
                            duration_ms: None,
                        },
                    );
                }
                self.feed(i, AgentInput::OrphanReturned(lease));
            }
            AgentAction::AskForWork { free_slots } => self.ask_for_work(i, free_slots),
            // Simulated drones beat on their cadence, never sync, and leave only when killed.
            AgentAction::Beat | AgentAction::Sync(_) | AgentAction::Exit => {}
        }
    }

    /// A request for work; the reply carries the leases assigned (routed as commands) and, as
    /// swarm's work reply does, every lease the drone holds.
    fn ask_for_work(&mut self, i: usize, free: u32) {
        let name = self.agents[i].name.clone();
        let asked = self.cp(Input::RequestWork {
            drone: name.clone(),
            free_slots: Some(free),
        });
        if asked.is_none() {
            self.feed(
                i,
                AgentInput::WorkFailed {
                    retry_ms: WORK_RETRY_MS,
                },
            );
            return;
        }
        self.flush_mailbox(i);
        let offered = self
            .swarm
            .view()
            .leases_of(&name)
            .into_iter()
            .map(|l| (Some(l.lease.0), l.package))
            .collect();
        self.feed(
            i,
            AgentInput::Work(crate::agent::WorkOffer {
                offered,
                ..crate::agent::WorkOffer::default()
            }),
        );
    }

    /// A heartbeat or registration was answered: the reply lists the leases the swarm says the
    /// drone holds, and the agent's main loop wakes up. `sent` is what the agent held when the
    /// request went out, as `swarm drone`'s heartbeat thread passes it.
    pub(super) fn answered(&mut self, i: usize, sent: RequestMark) {
        let leases = self
            .swarm
            .view()
            .leases_of(&self.agents[i].name)
            .into_iter()
            .map(|l| Listed {
                lease: l.lease.0,
                package: l.package.as_str().to_owned(),
            })
            .collect();
        self.feed(
            i,
            AgentInput::Registered(ServerReply {
                leases,
                sent: Some(sent),
                ..ServerReply::default()
            }),
        );
        self.feed(i, AgentInput::Tick);
    }

    /// A revoke never stops the build of a lease the control plane holds live on this drone: the
    /// agent would end it unreported, and the lease would sit on a heartbeating drone.
    fn check_kill(&mut self, i: usize, job: JobId, stop: &Stop) {
        if !matches!(stop, Stop::Revoked(_)) {
            return;
        }
        let a = &self.agents[i];
        let Some(lease) = a.model.job(job).and_then(|j| j.lease) else {
            return;
        };
        let live = self.swarm.view().lease(LeaseId(lease));
        if live.is_some_and(|l| l.drone == a.name) {
            let why = format!(
                "drone {} stopped the build of lease {lease}, live on it, on a revoke of an older lease",
                a.name
            );
            self.fail(why);
        }
    }

    /// A build stops (killed, or the drone died): the world no longer runs it.
    pub(super) fn stop_build(&mut self, i: usize, job: JobId) {
        if let Some(b) = self.agents[i].builds.remove(&job) {
            if b.started {
                self.running[b.pkg] = self.running[b.pkg].saturating_sub(1);
            }
        }
    }

    /// What a build's true outcome tells the agent.
    /// Sends what the agent reports of a finished (or returned) lease.
    pub(super) fn report_finished(
        &mut self,
        i: usize,
        atom: crate::atom::Atom,
        lease: Option<u64>,
        outcome: Outcome,
        duration_ms: Option<u64>,
    ) {
        let report = LeaseReport {
            drone: self.agents[i].name.clone(),
            package: atom,
            lease: lease.map(LeaseId),
            epoch: None,
        };
        self.send_report(
            i,
            Input::BuildFinished {
                report,
                outcome,
                duration_ms,
            },
        );
    }

    pub(super) fn build_end(outcome: &Outcome, took_ms: u64) -> BuildEnd {
        let took_s = took_ms / SECOND_MS;
        match outcome {
            Outcome::Failed { class, .. } => BuildEnd::Failed {
                class: *class,
                crash: false,
                took_s,
            },
            _ => BuildEnd::Built { took_s },
        }
    }
}
