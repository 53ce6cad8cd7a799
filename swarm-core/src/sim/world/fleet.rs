//! What each simulated drone does: heartbeats, polls, builds with their true
//! outcomes, reports, probes answered, deaths and restarts. What its agent decides is the real
//! agent's state machine (`drone.rs`).

use super::{Ev, World, POLL_MS, PROBE_MS, STALL_MS, START_EPOCH_MS};
use crate::agent::{AgentAction, AgentInput, AgentState, JobId, ReportWhat};
use crate::health::{DroneHealth, HealthMonitor, HealthSample};
use crate::id::LeaseId;
use crate::input::{
    Announce, FailureClass, Heartbeat, Input, Outcome, ProbeFigures, ProbeReach,
    Report as LeaseReport, SpecFacts,
};
use crate::time::{Timestamp, SECOND_MS};

impl World {
    pub(super) fn on_heartbeat(&mut self, i: usize, boot: u32) {
        if !self.agents[i].alive || self.agents[i].boot != boot {
            return;
        }
        let jitter = self.rng.range(0, 2 * SECOND_MS);
        self.at(
            self.now + self.heartbeat_ms + jitter,
            Ev::Heartbeat(i, boot),
        );
        if self.agents[i].partitioned {
            return;
        }
        // Each beat is the health monitor's sampling tick, as in `swarm drone`; the simulated
        // machine has no memory or disk pressure and passes its self check.
        let recovering = self.agents[i].model.health().state() == DroneHealth::Recovering;
        let sample = HealthSample {
            mem_percent: 40,
            disk_percent: 50,
            self_check_passed: recovering.then_some(true),
            ..HealthSample::default()
        };
        self.feed(i, AgentInput::Health(sample));
        let a = &self.agents[i];
        let (leases, started) = a.model.lease_lists();
        let sent = a.model.request_mark();
        let hb = Heartbeat {
            drone: a.name.clone(),
            health: Some(a.model.health().state()),
            mem_percent: Some(40),
            disk_percent: Some(50),
            leases: Some(leases.into_iter().map(LeaseId).collect()),
            started: started.into_iter().map(LeaseId).collect(),
            ..Heartbeat::default()
        };
        // As `swarm drone` does, every beat says what the machine is; the core merges it.
        let said = SpecFacts::from(&a.spec);
        if self
            .cp(Input::Announce(Announce { said, beat: hb }))
            .is_some()
        {
            self.flush_mailbox(i);
            self.answered(i, sent);
        } else {
            self.flush_mailbox(i);
        }
    }

    /// The agent's main loop wakes: it asks for work if it may (free slots, health, the poll).
    pub(super) fn on_poll(&mut self, i: usize, boot: u32, periodic: bool) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        if !a.partitioned && !a.hung {
            self.feed(i, AgentInput::Tick);
        }
        if periodic {
            let t = self.now + POLL_MS + self.rng.range(0, SECOND_MS);
            self.at(t, Ev::Poll(i, boot, true));
        }
    }

    pub(super) fn on_start(&mut self, i: usize, boot: u32, id: JobId) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        let (Some(build), Some(job)) = (a.builds.get(&id), a.model.job(id)) else {
            return;
        };
        if job.stop.is_some() || build.started {
            return;
        }
        let (pkg, atom, lease) = (build.pkg, job.atom.clone(), job.lease.map(LeaseId));
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
        if let Some(b) = self.agents[i].builds.get_mut(&id) {
            b.started = true;
            b.outcome = Some(outcome);
        }
        self.feed(i, AgentInput::BuildStarted(id));
        self.running[pkg] += 1;
        if self.running[pkg] > 1 {
            self.stats.duplicate_builds += 1;
        }
        let done_at = self.now + if hung { STALL_MS } else { after.max(1) };
        self.at(done_at, Ev::Done(i, boot, id));
        let report = LeaseReport {
            drone: name,
            package: atom,
            lease,
            epoch: None,
        };
        self.send_report(i, Input::BuildStarted(report));
    }

    pub(super) fn on_done(&mut self, i: usize, boot: u32, id: JobId) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        let Some(build) = a.builds.get(&id) else {
            return;
        };
        let outcome = if a.hung {
            Outcome::Failed {
                class: FailureClass::Infra,
                detail: "stalled: no output for 30m".into(),
            }
        } else {
            build.outcome.clone().unwrap_or(Outcome::Success)
        };
        let took = self.pkgs[build.pkg].duration_ms * 100 / u64::from(a.speed_pct);
        self.stop_build(i, id);
        // The agent decides what the report says (a revoked lease is never reported).
        let end = Self::build_end(&outcome, took);
        let now = Timestamp(START_EPOCH_MS + self.now);
        let actions = self.agents[i]
            .model
            .handle(AgentInput::BuildEnded { job: id, end }, now);
        for action in actions {
            if let AgentAction::Report {
                atom,
                lease,
                what: ReportWhat::Outcome,
                ..
            } = action
            {
                self.report_finished(i, atom, lease, outcome.clone(), Some(took));
            }
        }
        self.feed(i, AgentInput::Reported(id));
    }

    pub(super) fn on_probe(&mut self, i: usize) {
        self.at(self.now + PROBE_MS, Ev::Probe(i));
        let a = &self.agents[i];
        let reach = if !a.alive {
            if self.rng.chance(1, 2) {
                ProbeReach::Unreachable
            } else {
                ProbeReach::Timeout
            }
        } else if a.partitioned || self.asymmetry {
            ProbeReach::Timeout
        } else {
            ProbeReach::Reached
        };
        // What a real probe reports; the core judges it, as it does the prober's.
        let seen = reach == ProbeReach::Reached;
        self.cp(Input::ProbeFigures(ProbeFigures {
            drone: a.name.clone(),
            reach,
            service_up: seen.then_some(true),
            ..ProbeFigures::default()
        }));
    }

    pub(super) fn kill(&mut self, i: usize) {
        if !self.agents[i].alive {
            return;
        }
        self.forget_builds(i);
        let a = &mut self.agents[i];
        a.alive = false;
        a.hung = false;
        a.boot += 1;
        a.mailbox.clear();
        a.died_at = Some(self.now);
    }

    /// (Re)starts an agent: a fresh process registers; the reply lists the leases the server
    /// says it holds, and its first request for work gets them back (swarm's work reply lists
    /// every lease the drone holds), as with `swarm drone`.
    pub(super) fn revive(&mut self, i: usize) {
        self.forget_builds(i);
        let a = &mut self.agents[i];
        a.alive = true;
        a.hung = false;
        a.boot += 1;
        a.died_at = None;
        a.reachable_since = self.now;
        let boot = a.boot;
        let sent = a.model.request_mark();
        let announce = Announce {
            said: SpecFacts::from(&a.spec),
            beat: Heartbeat {
                drone: a.name.clone(),
                health: Some(a.model.health().state()),
                ..Heartbeat::default()
            },
        };
        if self.cp(Input::Announce(announce)).is_some() {
            self.answered(i, sent);
        }
        self.at(self.now + 1, Ev::Heartbeat(i, boot));
        self.at(self.now + 2, Ev::Poll(i, boot, true));
    }

    /// The agent process is gone: its builds stop and a new process starts from nothing.
    fn forget_builds(&mut self, i: usize) {
        let ids: Vec<JobId> = self.agents[i].builds.keys().copied().collect();
        for id in ids {
            self.stop_build(i, id);
        }
        let a = &mut self.agents[i];
        a.model = AgentState::new(a.slots, POLL_MS, HealthMonitor::default());
    }
}
