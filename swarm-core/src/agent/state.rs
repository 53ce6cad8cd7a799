//! [`AgentState`]: the jobs a drone holds, what the server last said, its health and its
//! shutdown phase, and every decision on them.

use super::leases::LeaseMemory;
use super::types::{
    AgentAction, AgentInput, AgentJob, BuildEnd, JobId, Listed, Phase, ReportWhat, RequestMark,
    ServerReply, Stop, WorkOffer,
};
use crate::atom::Atom;
use crate::health::{BuildTiming, HealthMonitor, HealthSample};
use crate::input::FailureClass;
use crate::time::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

/// One drone agent's state; [`AgentState::handle`] is the only way it changes.
#[derive(Clone, Debug)]
pub struct AgentState {
    slots: u32,
    poll_ms: u64,
    pub(super) jobs: BTreeMap<JobId, AgentJob>,
    next_job: JobId,
    /// Leases taken so far (by a new job or by adoption): each job's `given` and the
    /// [`RequestMark`] count them.
    pub(super) given: u64,
    pub(super) leases: LeaseMemory,
    registered: bool,
    beats: u64,
    epoch: Option<u64>,
    paused: bool,
    health: HealthMonitor,
    /// OOM kills and builder crashes since the last health sample; no new work while one waits
    /// to be assessed (it may make the drone Critical).
    oom_kills: u32,
    crashes: u32,
    /// OOM kills and crashes of builds whose report is on its way: counted once it is handed
    /// over, so a Critical drone's returns cannot overtake (and lose) the failure's report.
    ending: BTreeMap<JobId, (u32, u32)>,
    /// Jobs whose end the server is not told (revoked, or stopped unasked): once reported, their
    /// lease counts as held again if the server keeps listing it.
    silent: BTreeSet<JobId>,
    /// Leases of finished builds an earlier agent left in the spool, while they are delivered,
    /// with how many entries name each (two farms' entries may share a number: one set aside,
    /// one delivered): held like a job's (never handed back as orphans, never started again),
    /// reported started so no idle drone steals them, and counted against the slots so the
    /// spool cannot grow while it drains.
    pub(super) spooled: BTreeMap<u64, u32>,
    portage_timestamp: Option<String>,
    sync_wanted: Option<String>,
    /// No work until a heartbeat after this count has been answered (after a sync).
    work_after_beat: u64,
    phase: Phase,
    /// Not before this instant is work asked for again.
    next_ask: Timestamp,
    /// The farm the server last said it is; `None` until one said.
    pub(super) farm: Option<String>,
}

impl AgentState {
    /// A fresh agent with `slots` build slots that asks for work every `poll_ms` while it gets none.
    #[must_use]
    pub fn new(slots: u32, poll_ms: u64, health: HealthMonitor) -> Self {
        AgentState {
            slots,
            poll_ms,
            jobs: BTreeMap::new(),
            next_job: 0,
            given: 0,
            leases: LeaseMemory::default(),
            registered: false,
            beats: 0,
            epoch: None,
            paused: false,
            health,
            oom_kills: 0,
            crashes: 0,
            ending: BTreeMap::new(),
            silent: BTreeSet::new(),
            spooled: BTreeMap::new(),
            portage_timestamp: None,
            sync_wanted: None,
            work_after_beat: 0,
            phase: Phase::Running,
            farm: None,
            next_ask: Timestamp(0),
        }
    }

    /// Applies one fact at `now`; returns what to do.
    pub fn handle(&mut self, input: AgentInput, now: Timestamp) -> Vec<AgentAction> {
        let mut out = Vec::new();
        match input {
            AgentInput::Tick => self.tick(now, &mut out),
            AgentInput::Registered(reply) => self.registered(&reply, &mut out),
            AgentInput::Forgotten => self.registered = false,
            AgentInput::Revoke(atoms) => {
                self.revoke_atoms(&atoms, "revoked by the control plane", None, &mut out);
            }
            AgentInput::Work(offer) => self.work(offer, now, &mut out),
            AgentInput::WorkFailed { retry_ms } => self.next_ask = now.plus(retry_ms),
            AgentInput::BuildStarted(id) => {
                if let Some(j) = self.jobs.get_mut(&id) {
                    j.started = true;
                }
            }
            AgentInput::Stale { job, why } => self.stop_job(job, Stop::Revoked(why), &mut out),
            AgentInput::BuildEnded { job, end } => self.build_ended(job, end, &mut out),
            AgentInput::NotRecorded(id) => {
                if self.jobs.contains_key(&id) {
                    self.silent.insert(id);
                }
            }
            AgentInput::Reported(id) => {
                if let Some((oom, crash)) = self.ending.remove(&id) {
                    self.oom_kills += oom;
                    self.crashes += crash;
                }
                let mut silent = self.silent.remove(&id);
                if let Some(job) = self.jobs.remove(&id) {
                    // Nor is the lease's farm told of a finished build whose delivery a
                    // revoke abandoned.
                    silent |= matches!(job.stop, Some(Stop::Revoked(_)));
                    // Another farm's lease number is nothing to remember here: this farm's
                    // own lease of that number is still to be built (the memory starts anew
                    // when that farm answers again).
                    if let Some(l) = job.lease.filter(|_| self.here(&job)) {
                        if silent {
                            self.leases.end_unsaid(l);
                        } else {
                            self.leases.end(l);
                        }
                    }
                    // The server hears at once that the lease and the slot are free.
                    out.push(AgentAction::Beat);
                }
            }
            AgentInput::OrphanReturned(lease) => self.leases.end(lease),
            AgentInput::Spooled(lease) => {
                self.leases.known(lease);
                *self.spooled.entry(lease).or_insert(0) += 1;
            }
            AgentInput::Unspooled(lease) => {
                if self.unspool(lease) {
                    // Unsaid: the report spoke for the entry's package, and a
                    // server that goes on listing the number holds it for
                    // something else (an entry of another farm that did not
                    // say so): it is handed back, never started here.
                    self.leases.end_unsaid(lease);
                    out.push(AgentAction::Beat);
                }
            }
            AgentInput::SpooledElsewhere(lease) => {
                if self.unspool(lease) {
                    out.push(AgentAction::Beat);
                }
            }
            AgentInput::Health(sample) => self.assess(sample, &mut out),
            AgentInput::Synced(ts) => {
                if ts.is_some() {
                    self.portage_timestamp = ts;
                }
                self.sync_wanted = None;
                // Ask for work only after the server has heard the new timestamp.
                self.work_after_beat = self.beats;
                out.push(AgentAction::Beat);
            }
            AgentInput::Signal(on_stop) => self.phase = self.phase.on_signal(on_stop),
        }
        out
    }

    /// The main loop's turn: leave, return, hand back orphans, sync, ask.
    fn tick(&mut self, now: Timestamp, out: &mut Vec<AgentAction>) {
        if self.phase.may_exit(self.jobs.len() + self.spooled.len()) {
            out.push(AgentAction::Exit);
            return;
        }
        if self.phase.returns_work() {
            self.return_all("drone shutting down", out);
        } else if self.health.state().returns_work() {
            self.return_all("drone health is critical", out);
        }
        // Leases the server lists that nothing here runs go back (also while stopping, so none
        // waits for this drone to time out).
        for (lease, package) in self.orphans() {
            out.push(AgentAction::ReturnLease { lease, package });
        }
        if let Some(expected) = &self.sync_wanted {
            if self.jobs.is_empty() && self.phase.takes_work() {
                out.push(AgentAction::Sync(expected.clone()));
            }
            return;
        }
        if now >= self.next_ask {
            if let Some(free_slots) = self.free_slots() {
                self.next_ask = now.plus(self.poll_ms);
                out.push(AgentAction::AskForWork { free_slots });
            }
        }
    }

    fn registered(&mut self, reply: &ServerReply, out: &mut Vec<AgentAction>) {
        self.heard_farm(reply.farm.as_ref());
        self.registered = true;
        self.beats += 1;
        if reply.epoch.is_some() {
            self.epoch = reply.epoch;
        }
        self.paused = reply.paused;
        self.revoke_atoms(
            &reply.revoke,
            "revoked by the control plane",
            reply.sent,
            out,
        );
        if let Some((package, reason)) = &reply.stop_work {
            let why = format!("stop_work: {reason}");
            self.revoke_atoms(std::slice::from_ref(package), &why, reply.sent, out);
        }
        self.note_listed(&reply.leases);
    }

    fn work(&mut self, offer: WorkOffer, now: Timestamp, out: &mut Vec<AgentAction>) {
        self.heard_farm(offer.farm.as_ref());
        self.revoke_atoms(&offer.revoke, "revoked by the control plane", None, out);
        if let Some(expected) = offer.sync {
            self.sync_wanted = Some(expected);
            self.next_ask = now.plus(self.poll_ms);
            return;
        }
        let mut got = false;
        for (lease, atom) in offer.offered {
            if self.jobs.len() >= self.slot_count() {
                break;
            }
            if let Some(job) = self.add_job(atom.clone(), lease) {
                out.push(AgentAction::Start { job, atom, lease });
                got = true;
            }
        }
        if got {
            // One more package at once while a slot is free; the server hears of it now.
            self.next_ask = now;
            out.push(AgentAction::Beat);
        } else {
            self.next_ask = now.plus(self.poll_ms);
        }
    }

    fn build_ended(&mut self, id: JobId, end: BuildEnd, out: &mut Vec<AgentAction>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.ended {
            return;
        }
        job.ended = true;
        let what = match (&job.stop, end) {
            // A revoked lease is never reported, however its build ended.
            (Some(Stop::Revoked(why)), _) => ReportWhat::Nothing(Some(why.clone())),
            (Some(Stop::Return(reason)), BuildEnd::Stopped) => ReportWhat::Returned(reason.clone()),
            (None, BuildEnd::Stopped) => ReportWhat::Nothing(None),
            (
                _,
                BuildEnd::Failed {
                    class,
                    crash,
                    took_s,
                },
            ) => {
                let oom = class == FailureClass::Oom;
                self.ending.insert(id, (u32::from(oom), u32::from(crash)));
                if !oom && !crash {
                    // A build that ran to its end proves the builder works.
                    self.health.record_build(timing(took_s));
                }
                ReportWhat::Outcome
            }
            (_, BuildEnd::Built { took_s }) => {
                self.health.record_build(timing(took_s));
                ReportWhat::Outcome
            }
        };
        if matches!(what, ReportWhat::Nothing(_)) {
            self.silent.insert(id);
        }
        let job = &self.jobs[&id];
        out.push(AgentAction::Report {
            job: id,
            atom: job.atom.clone(),
            lease: job.lease,
            what,
        });
        out.push(AgentAction::Beat);
    }

    fn assess(&mut self, mut sample: HealthSample, out: &mut Vec<AgentAction>) {
        sample.oom_kills = std::mem::take(&mut self.oom_kills);
        sample.crashes = std::mem::take(&mut self.crashes);
        if self.health.assess(&sample).returns_work() {
            self.return_all("drone health is critical", out);
        }
    }

    /// Adds a job for a lease the server gave; `None` if the agent already has it, has finished
    /// with it, or already builds that package (then the running build adopts the newer lease:
    /// one build per package). A build of it that has ended builds nothing: its report may wait
    /// for an answer (up to the reply timeout, a lost reply), while the new lease is built.
    fn add_job(&mut self, atom: Atom, lease: Option<u64>) -> Option<JobId> {
        if let Some(l) = lease {
            if self.has_lease(l) || self.leases.ended(l) {
                return None;
            }
            self.leases.known(l);
            if self
                .jobs
                .values()
                .any(|j| j.atom == atom && j.stop.is_none() && !j.ended)
            {
                self.adopt(&[Listed {
                    lease: l,
                    package: atom.as_str().to_string(),
                }]);
                return None;
            }
        } else if self.jobs.values().any(|j| j.atom == atom) {
            return None;
        }
        let id = self.next_job;
        self.next_job += 1;
        self.jobs.insert(
            id,
            AgentJob {
                atom,
                lease,
                started: false,
                stop: None,
                ended: false,
                given: self.given,
                farm: self.farm.clone(),
            },
        );
        self.given += 1;
        Some(id)
    }

    /// Marks every job building one of `atoms` to be killed without a report: every job that held
    /// its lease when the agent sent the request the revoke answers (`sent`), never one given
    /// (or adopting a lease) since.
    fn revoke_atoms(
        &mut self,
        atoms: &[String],
        why: &str,
        sent: Option<RequestMark>,
        out: &mut Vec<AgentAction>,
    ) {
        if atoms.is_empty() {
            return;
        }
        let wanted: Vec<String> = atoms.iter().map(|a| normalise(a)).collect();
        let ids: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| sent.is_none_or(|m| m.covers(j)))
            .filter(|(_, j)| self.here(j))
            .filter(|(_, j)| wanted.iter().any(|a| a == j.atom.as_str()))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            self.stop_job(id, Stop::Revoked(why.to_string()), out);
        }
    }

    /// Marks every job to be killed and handed back.
    fn return_all(&mut self, why: &str, out: &mut Vec<AgentAction>) {
        let ids: Vec<JobId> = self.jobs.keys().copied().collect();
        for id in ids {
            self.stop_job(id, Stop::Return(why.to_string()), out);
        }
    }

    /// Stops one job unless it is stopping already; a job whose build ended is not killed, but
    /// a revoke still keeps its report from being sent.
    fn stop_job(&mut self, id: JobId, stop: Stop, out: &mut Vec<AgentAction>) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.stop.is_some() || (job.ended && matches!(stop, Stop::Return(_))) {
            return;
        }
        job.stop = Some(stop.clone());
        if !job.ended {
            out.push(AgentAction::Kill { job: id, stop });
        }
    }

    /// What the agent holds now, for a request about to be sent: its reply carries it back in
    /// [`ServerReply::sent`], so the reply's revokes spare the jobs taken meanwhile.
    #[must_use]
    pub fn request_mark(&self) -> RequestMark {
        RequestMark(self.given)
    }

    fn slot_count(&self) -> usize {
        usize::try_from(self.slots).unwrap_or(usize::MAX)
    }

    /// Free slots if the agent may ask for work now (the clock aside), else `None`.
    #[must_use]
    pub fn free_slots(&self) -> Option<u32> {
        let held = self
            .jobs
            .len()
            .saturating_add(self.spooled.values().map(|n| *n as usize).sum());
        let free = self
            .slots
            .saturating_sub(u32::try_from(held).unwrap_or(u32::MAX));
        let may = self.phase.takes_work()
            && self.registered
            && !self.paused
            && self.health.state().takes_work()
            && self.oom_kills == 0
            && self.crashes == 0
            && self.sync_wanted.is_none()
            && self.beats > self.work_after_beat
            && free > 0;
        may.then_some(free)
    }

    /// The atom being built, for v3's `current_task`.
    #[must_use]
    pub fn current_task(&self) -> Option<String> {
        self.jobs
            .values()
            .find(|j| j.started && !j.ended && j.stop.is_none() && self.here(j))
            .map(|j| j.atom.as_str().to_string())
    }

    /// The jobs held.
    #[must_use]
    pub fn jobs(&self) -> &BTreeMap<JobId, AgentJob> {
        &self.jobs
    }

    /// One job.
    #[must_use]
    pub fn job(&self, id: JobId) -> Option<&AgentJob> {
        self.jobs.get(&id)
    }

    /// Whether a job's build must not run on: the job is gone, a stop was set, or the agent
    /// leaves at once (a third signal kills every build, and no tick may have set their stops
    /// in between: such a build was reported as a crash, h46).
    #[must_use]
    pub fn stop_asked(&self, id: JobId) -> bool {
        self.phase == Phase::Exit || self.jobs.get(&id).is_none_or(|j| j.stop.is_some())
    }

    /// Whether a registration has been answered since the agent started (or was forgotten).
    #[must_use]
    pub fn is_registered(&self) -> bool {
        self.registered
    }

    /// Heartbeats answered so far.
    #[must_use]
    pub fn beats(&self) -> u64 {
        self.beats
    }

    /// The control plane's epoch, as last heard.
    #[must_use]
    pub fn epoch(&self) -> Option<u64> {
        self.epoch
    }

    /// The server paused all work.
    #[must_use]
    pub fn paused(&self) -> bool {
        self.paused
    }

    /// The health monitor.
    #[must_use]
    pub fn health(&self) -> &HealthMonitor {
        &self.health
    }

    /// OOM kills and crashes not yet assessed.
    #[must_use]
    pub fn pending_events(&self) -> (u32, u32) {
        (self.oom_kills, self.crashes)
    }

    /// The Portage timestamp the agent last read.
    #[must_use]
    pub fn portage_timestamp(&self) -> Option<&str> {
        self.portage_timestamp.as_deref()
    }

    /// Sets the Portage timestamp read at start.
    pub fn set_portage_timestamp(&mut self, ts: Option<String>) {
        self.portage_timestamp = ts;
    }

    /// The timestamp the server asked a sync to, until one ran.
    #[must_use]
    pub fn sync_wanted(&self) -> Option<&str> {
        self.sync_wanted.as_deref()
    }

    /// The shutdown phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// When work may be asked for next.
    #[must_use]
    pub fn next_ask(&self) -> Timestamp {
        self.next_ask
    }
}

fn timing(took_s: u64) -> BuildTiming {
    // The server sends no estimate, so slow builds are never judged here.
    BuildTiming {
        took_s,
        estimate_s: 0,
    }
}

/// An atom as the core writes it, so a revoke matches whatever form it came in.
pub(super) fn normalise(atom: &str) -> String {
    Atom::parse(atom).map_or_else(|_| atom.trim().to_string(), |a| a.as_str().to_string())
}
