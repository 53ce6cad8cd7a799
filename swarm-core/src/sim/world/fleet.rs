//! What each simulated drone does: heartbeats, polls, builds with their true
//! outcomes, reports, probes answered, deaths and restarts.

use super::{Ev, Job, World, POLL_MS, PROBE_MS, STALL_MS};
use crate::health::DroneHealth;
use crate::id::LeaseId;
use crate::input::{FailureClass, Heartbeat, Input, Outcome, ProbeStatus, Report as LeaseReport};
use crate::time::SECOND_MS;

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
    pub(super) fn adopt_listed_leases(&mut self, i: usize) {
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

    pub(super) fn on_poll(&mut self, i: usize, boot: u32, periodic: bool) {
        let a = &self.agents[i];
        if !a.alive || a.boot != boot {
            return;
        }
        let free = a.slots.saturating_sub(a.jobs.len() as u32);
        if !a.partitioned && !a.hung && free > 0 {
            let name = a.name.clone();
            self.cp(Input::RequestWork {
                drone: name,
                free_slots: Some(free),
            });
            self.flush_mailbox(i);
        }
        if periodic {
            let t = self.now + POLL_MS + self.rng.range(0, SECOND_MS);
            self.at(t, Ev::Poll(i, boot, true));
        }
    }

    pub(super) fn on_start(&mut self, i: usize, boot: u32, lease: LeaseId) {
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

    pub(super) fn on_done(&mut self, i: usize, boot: u32, lease: LeaseId) {
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

    pub(super) fn on_probe(&mut self, i: usize) {
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

    pub(super) fn kill(&mut self, i: usize) {
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
    pub(super) fn revive(&mut self, i: usize) {
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

    pub(super) fn kill_job(&mut self, i: usize, lease: LeaseId) {
        if let Some(job) = self.agents[i].jobs.remove(&lease) {
            if job.started {
                self.running[job.pkg] = self.running[job.pkg].saturating_sub(1);
            }
        }
    }
}
