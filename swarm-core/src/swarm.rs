//! `Swarm`: the one state machine. `handle` matches the input once and calls a
//! private `on_<input>`; each asks `policy::*` for a decision and applies it.

use crate::atom::Atom;
use crate::config::{Config, ConfigError};
use crate::id::{DroneName, Epoch, LeaseId};
use crate::index::{Index, TimerKey};
use crate::input::{
    Control, DroneSpec, Enqueue, Envelope, FailureClass, Heartbeat, Input, Outcome, ProbeStatus,
    Report,
};
use crate::output::{
    BlockReason, Command, Event, Output, ReclaimReason, RejectReason, RevokeReason,
};
use crate::policy::{brake, breaker, escalate, extend, liveness, plan, retry, schedule};
use crate::portage::PortageSnapshot;
use crate::serving;
use crate::state::{Drone, Lease, Liveness, Package, PackageState, PkgId, SwarmState};
use crate::time::Timestamp;

/// The swarm's scheduling state machine. Pure: no clock, no IO, no threads.
///
/// Methods come in four kinds, as in quinn-proto's `Connection`: the constructor
/// (`new`, `restore`), the one mutator (`handle`), timers (`poll_timeout`), and
/// read-only getters (`view`, `digest`, `check_invariants`, `state`).
#[derive(Clone, Debug)]
pub struct Swarm {
    pub(crate) st: SwarmState,
    pub(crate) ix: Index,
}

/// A snapshot that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// The snapshot's config no longer validates.
    #[error("snapshot config is invalid: {0}")]
    Config(#[from] ConfigError),
    /// The snapshot's state breaks an invariant: it was corrupted or written by a buggy version.
    #[error("snapshot state is inconsistent: {0}")]
    Inconsistent(#[from] crate::invariants::Violation),
}

type Out = Vec<Output>;

impl Swarm {
    /// A new, empty swarm. The config is validated first.
    pub fn new(config: Config) -> Result<Swarm, ConfigError> {
        config.validate()?;
        Ok(Swarm {
            st: SwarmState::new(config),
            ix: Index::default(),
        })
    }

    /// Rebuilds a swarm from a snapshot; the result has the same `digest`.
    pub fn restore(state: SwarmState) -> Result<Swarm, RestoreError> {
        state.config.validate()?;
        let mut swarm = Swarm {
            st: state,
            ix: Index::default(),
        };
        swarm.rebuild_index();
        swarm.check_invariants_deep()?;
        Ok(swarm)
    }

    /// The serialisable state, for snapshots.
    pub fn state(&self) -> &SwarmState {
        &self.st
    }

    /// The policy in force.
    pub fn config(&self) -> &Config {
        &self.st.config
    }

    /// Applies one input and returns everything it caused. Total: bad input
    /// becomes `Event::InputRejected`, never a panic.
    #[must_use = "outputs carry commands the adapter must perform"]
    pub fn handle(&mut self, env: &Envelope) -> Vec<Output> {
        let mut out = Vec::new();
        // A control plane that was not running (restart) or whose clock jumped
        // missed its own deadlines by more than a heartbeat grace: it cannot
        // judge drones by heartbeat age, so grace comes before any timer fires.
        // An adapter that ticks at `poll_timeout()` never misses one.
        let unwatched = self
            .poll_timeout()
            .is_some_and(|due| env.at.since(due) > self.st.config.heartbeat_grace_ms);
        self.st.now = self.st.now.max(env.at);
        if matches!(env.input, Input::Recovered) || unwatched {
            self.grant_grace();
        }
        self.fire_due_timers(&mut out);
        match &env.input {
            Input::Register(spec) => self.on_register(spec, &mut out),
            Input::Heartbeat(hb) => self.on_heartbeat(hb, &mut out),
            Input::RequestWork { drone, free_slots } => {
                self.on_request_work(drone, *free_slots, &mut out)
            }
            Input::BuildStarted(report) => self.on_build_started(report, &mut out),
            Input::BuildFinished {
                report,
                outcome,
                duration_ms,
            } => self.on_build_finished(report, outcome, *duration_ms, &mut out),
            Input::Deregister { drone } => self.on_deregister(drone, &mut out),
            Input::ProbeResult { drone, status } => self.on_probe_result(drone, *status, &mut out),
            Input::Enqueue(enqueue) => self.on_enqueue(enqueue, &mut out),
            Input::Control(action) => self.on_control(action, &mut out),
            Input::Release(note) => out.push(Output::Event(Event::Release {
                action: note.action.clone(),
                release: note.release.clone(),
                detail: note.detail.clone(),
            })),
            Input::Recovered => {}
            Input::Tick => {}
        }
        out
    }

    /// The next instant at which something is due; send `Tick` then (or earlier).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.ix.next_timer()
    }

    // ------------------------------------------------------------------ inputs

    fn on_register(&mut self, spec: &DroneSpec, out: &mut Out) {
        let name = spec.name.clone();
        let now = self.st.now;
        let Some(d) = self.st.drones.get_mut(&name) else {
            self.st
                .drones
                .insert(name.clone(), Drone::new(spec.clone(), now));
            out.push(Output::Event(Event::Registered {
                drone: name.clone(),
                epoch: Epoch(1),
            }));
            self.touch(&name, out);
            return;
        };
        let new_incarnation = matches!(
            (&d.spec.machine_id, &spec.machine_id),
            (Some(old), Some(new)) if old != new
        );
        let env_before = d.spec.env.clone();
        merge_spec(&mut d.spec, spec);
        if new_incarnation {
            d.epoch = Epoch(d.epoch.0 + 1);
            let epoch = d.epoch;
            self.reclaim_all(&name, ReclaimReason::Reregistered, out);
            out.push(Output::Event(Event::Registered {
                drone: name.clone(),
                epoch,
            }));
        }
        if self.st.drones[&name].spec.env != env_before {
            let before = serving::matches(&self.st.expected_env, &self.st.profiles, &env_before);
            self.env_changed(&name, &before, out);
        }
        self.touch(&name, out);
    }

    fn on_heartbeat(&mut self, hb: &Heartbeat, out: &mut Out) {
        let name = &hb.drone;
        let now = self.st.now;
        let Some(d) = self.st.drones.get_mut(name) else {
            return reject(
                out,
                RejectReason::UnknownDrone {
                    drone: name.clone(),
                },
            );
        };
        if let Some(h) = hb.health {
            d.health = h;
        }
        d.mem_percent = hb.mem_percent.or(d.mem_percent);
        d.disk_percent = hb.disk_percent.or(d.disk_percent);
        d.load_centi = hb.load_centi.or(d.load_centi);
        if hb.portage_snapshot.is_some() {
            d.spec.portage_snapshot.clone_from(&hb.portage_snapshot);
        }
        let matched_before = match &hb.env {
            Some(env) if d.spec.env != *env => {
                let before =
                    serving::matches(&self.st.expected_env, &self.st.profiles, &d.spec.env);
                d.spec.env = env.clone();
                Some(before)
            }
            _ => None,
        };
        let critical = d.health.returns_work();
        if let Some(before) = matched_before {
            self.env_changed(name, &before, out);
        }
        self.touch(name, out);
        if critical {
            self.reclaim_all(name, ReclaimReason::Critical, out);
        }
        // One lookup of the drone's own leases serves every id the heartbeat lists.
        let (foreign, starting): (Vec<LeaseId>, Vec<LeaseId>) = match self.st.drones.get(name) {
            Some(d) => (
                hb.leases
                    .iter()
                    .flatten()
                    .filter(|l| !d.leases.contains(l))
                    .copied()
                    .collect(),
                hb.started
                    .iter()
                    .filter(|l| d.leases.contains(l))
                    .filter(|l| self.st.is_not_started(**l))
                    .copied()
                    .collect(),
            ),
            None => return,
        };
        for lid in foreign {
            let package = self.st.leases.get(&lid).map(|l| l.package.clone());
            self.revoke_foreign(name, Some(lid), package, out);
        }
        for lid in starting {
            self.mark_started(lid, now, out);
        }
        if let Some(atom) = &hb.current_task {
            match self.live_lease_of(name, atom) {
                Some(lid) => self.mark_started(lid, now, out),
                None => self.revoke_foreign(name, None, Some(atom.clone()), out),
            }
        }
    }

    fn on_request_work(&mut self, name: &DroneName, free_slots: u32, out: &mut Out) {
        let Some(d) = self.st.drones.get(name) else {
            return reject(
                out,
                RejectReason::UnknownDrone {
                    drone: name.clone(),
                },
            );
        };
        let n = match schedule::capacity(&self.st, d, free_slots) {
            Ok(n) => n,
            Err(schedule::NoWork::SyncPortage(expected)) => {
                let at = self.st.now;
                if let Some(d) = self.st.drones.get_mut(name) {
                    d.sync_asked = crate::portage::LastSyncAsk(Some(crate::portage::SyncAsked {
                        expected: expected.clone(),
                        at,
                    }));
                }
                out.push(Output::Command(Command::SyncPortage {
                    drone: name.clone(),
                    expected,
                }));
                return;
            }
            Err(_) => return,
        };
        let picks = schedule::pick(&self.st, &self.ix, d, n);
        if picks.is_empty() {
            if let Some(lid) = schedule::pick_steal(&self.st, d) {
                let Some(pkg) = self.st.leases.get(&lid).map(|l| l.pkg) else {
                    return;
                };
                self.reclaim(lid, ReclaimReason::Stolen, out);
                self.issue_lease(name, pkg, out);
            }
            return;
        }
        for pkg in picks {
            self.issue_lease(name, pkg, out);
        }
    }

    fn on_build_started(&mut self, report: &Report, out: &mut Out) {
        if let Some(lid) = self.fence(report, out) {
            let now = self.st.now;
            self.mark_started(lid, now, out);
        }
    }

    fn on_build_finished(
        &mut self,
        report: &Report,
        outcome: &Outcome,
        duration_ms: Option<u64>,
        out: &mut Out,
    ) {
        let Some(lid) = self.fence(report, out) else {
            return;
        };
        match outcome {
            Outcome::Success => self.on_success(lid, duration_ms, out),
            Outcome::Failed { class, detail } => self.on_failure(lid, *class, detail, out),
            Outcome::UploadFailed => {
                let now = self.st.now;
                if let Some(d) = self.st.drones.get_mut(&report.drone) {
                    d.upload_failures.push_back(now);
                    let window = self.st.config.upload_failure_window_ms;
                    while d
                        .upload_failures
                        .front()
                        .is_some_and(|t| now.since(*t) >= window)
                    {
                        d.upload_failures.pop_front();
                    }
                }
                self.on_failure(lid, FailureClass::Infra, "upload failed", out);
                self.maybe_upload_hold(&report.drone, out);
            }
            Outcome::Returned { .. } => {
                let pkg = self.st.leases.get(&lid).map(|l| l.pkg);
                self.reclaim(lid, ReclaimReason::Returned, out);
                if let Some(pkg) = pkg {
                    self.st.pkg_mut(pkg).avoid = Some(report.drone.clone());
                    self.sync_pkg(pkg);
                }
            }
            Outcome::Masked => {
                let lease = self.end_lease(lid);
                self.block(lease.pkg, BlockReason::Masked, out);
            }
        }
    }

    /// A clean stop: whatever the drone still holds goes back to the queue
    /// as its own return (no penalty, no revoke), and it waits, Stopped, for
    /// its next registration. No heartbeat deadline, no probe escalation.
    fn on_deregister(&mut self, name: &DroneName, out: &mut Out) {
        if !self.st.drones.contains_key(name) {
            return reject(
                out,
                RejectReason::UnknownDrone {
                    drone: name.clone(),
                },
            );
        }
        self.reclaim_all(name, ReclaimReason::Returned, out);
        if let Some(d) = self.st.drones.get_mut(name) {
            d.liveness = Liveness::Stopped;
            d.check_at = None;
            d.probe = Default::default();
            d.ladder = Default::default();
        }
        self.sync_drone(name);
        out.push(Output::Event(Event::Deregistered {
            drone: name.clone(),
        }));
    }

    fn on_probe_result(&mut self, name: &DroneName, status: ProbeStatus, out: &mut Out) {
        let now = self.st.now;
        let grace = self.st.config.heartbeat_grace_ms;
        let Some(d) = self.st.drones.get_mut(name) else {
            return reject(
                out,
                RejectReason::UnknownDrone {
                    drone: name.clone(),
                },
            );
        };
        let fresh = d.heartbeat_fresh(now, grace);
        match status {
            ProbeStatus::Ok => {
                d.probe = Default::default();
                d.ladder = Default::default();
            }
            ProbeStatus::DiskWarning => {
                d.probe.down = 0;
                d.probe.confirmed_at = None;
            }
            _ => {
                if !(status.is_path_failure() && fresh) {
                    d.probe.failures += 1;
                    d.probe.first_at.get_or_insert(now);
                }
                if status.says_down() && !fresh {
                    d.probe.down += 1;
                    if d.probe.down >= 2 && d.probe.confirmed_at.is_none() {
                        d.probe.confirmed_at = Some(now);
                    }
                } else {
                    d.probe.down = 0;
                    d.probe.confirmed_at = None;
                }
            }
        }
        self.sync_drone(name);
        let Some(d) = self.st.drones.get(name) else {
            return;
        };
        let Some(action) = escalate::next_step(&self.st, d, status) else {
            return;
        };
        if !self.disrupt(name, "escalation", out) {
            return;
        }
        if let Some(d) = self.st.drones.get_mut(name) {
            d.ladder.steps += 1;
            d.ladder.last_at = Some(now);
        }
        let window = self.st.config.escalation_window_ms;
        self.st.escalations.push_back(now);
        while self
            .st
            .escalations
            .front()
            .is_some_and(|t| now.since(*t) >= window)
        {
            self.st.escalations.pop_front();
        }
        out.push(Output::Command(Command::Escalate {
            drone: name.clone(),
            action,
        }));
        out.push(Output::Event(Event::Escalated {
            drone: name.clone(),
            action,
        }));
    }

    fn on_enqueue(&mut self, enqueue: &Enqueue, out: &mut Out) {
        // The snapshot is checked before anything changes: a push that names
        // no snapshot Portage could have written is refused whole.
        let snapshot = match enqueue
            .portage_snapshot
            .as_deref()
            .map(PortageSnapshot::parse)
        {
            None => None,
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                let reason = RejectReason::BadSnapshot {
                    given: enqueue.portage_snapshot.clone().unwrap_or_default(),
                    detail: e.to_string(),
                };
                return reject(out, reason);
            }
        };
        let profiles = &self.st.profiles.0;
        if let Some(profile) = enqueue
            .packages
            .iter()
            .filter_map(|p| p.profile.as_ref())
            .find(|name| !profiles.contains_key(*name))
        {
            let profile = profile.clone();
            return reject(out, RejectReason::UnknownProfile { profile });
        }
        // A package is (profile, atom): the same atom for another profile is another package,
        // built in that profile's environment; for the same profile it is already queued.
        if let Some(g) = enqueue.generation {
            if g.0 < self.st.generation {
                let reason = RejectReason::StaleGeneration {
                    given: g.0,
                    current: self.st.generation,
                };
                return reject(out, reason);
            }
            self.st.generation = g.0;
        }
        let (mut added, mut already) = (0u32, 0u32);
        let first_new = self.st.packages.len();
        // An existing package waiting for one of the new atoms changes its
        // dependencies: only a full replan handles that.
        let extends = !enqueue.packages.iter().any(|s| {
            self.ix.declared.contains(&s.atom)
                && self.pkg_in(s.profile.as_deref(), &s.atom).is_none()
        });
        for spec in &enqueue.packages {
            if self.pkg_in(spec.profile.as_deref(), &spec.atom).is_some() {
                already += 1;
                continue;
            }
            self.ix.declared.extend(spec.deps.iter().cloned());
            let id = PkgId(self.st.packages.len() as u32);
            self.st.packages.push(self.st.new_package(spec));
            self.st.next_order += 1;
            crate::index::add_atom(&mut self.ix.by_atom, &spec.atom, id);
            self.ix
                .by_key
                .entry(spec.atom.key().to_owned())
                .or_default()
                .push(id);
            added += 1;
        }
        if let Some(snapshot) = &snapshot {
            self.st.expected_portage = Some(snapshot.as_str().to_owned());
        }
        if added > 0 {
            let changed = if extends {
                extend::extend(
                    &mut self.st,
                    &self.ix.by_atom,
                    &self.ix.by_key,
                    &mut self.ix.depth,
                    first_new,
                )
            } else {
                None
            };
            match changed {
                Some(ids) => {
                    for id in ids {
                        self.sync_rank(id);
                    }
                    self.sync_replan();
                }
                None => self.replan(),
            }
        }
        out.push(Output::Event(Event::Queued { added, already }));
    }

    fn grant_grace(&mut self) {
        self.st.grace_until = Some(self.st.now.plus(self.st.config.failover_grace_ms));
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        for name in &names {
            self.sync_drone(name);
        }
    }

    fn on_control(&mut self, action: &Control, out: &mut Out) {
        crate::control::apply(self, action, out);
    }

    // ------------------------------------------------------------------ timers

    fn fire_due_timers(&mut self, out: &mut Out) {
        while let Some(key) = self.ix.pop_due(self.st.now) {
            self.on_timer(key, out);
        }
    }

    fn on_timer(&mut self, key: TimerKey, out: &mut Out) {
        match key {
            TimerKey::Liveness(name) => self.on_liveness_check(&name, out),
            TimerKey::ConfirmedDead(name) => {
                if self.disrupt(&name, "reclaim", out) {
                    self.reclaim_all(&name, ReclaimReason::ConfirmedDead, out);
                }
                self.sync_drone(&name);
            }
            TimerKey::Unground(name) => {
                if let Some(d) = self.st.drones.get_mut(&name) {
                    d.grounded_until = None;
                    d.consecutive_failures = 0;
                    out.push(Output::Event(Event::Ungrounded {
                        drone: name.clone(),
                    }));
                }
                self.sync_drone(&name);
            }
            TimerKey::Retry(pkg) => {
                if let Some(p) = self.st.packages.get_mut(pkg.index()) {
                    if p.is_queued() {
                        p.state = PackageState::Queued { retry_at: None };
                    }
                }
                self.sync_pkg(pkg);
            }
            TimerKey::AutoUnblock(pkg) => self.unblock(pkg, false, out),
            TimerKey::Brake => {
                if self.st.brake.engaged
                    && self.st.brake.cause.is_none()
                    && brake::may_release(&self.st)
                {
                    self.release_brake(false, out);
                }
                self.sync_brake();
            }
            TimerKey::Replan => {
                let relearned_due = !self.st.relearned.is_empty()
                    && self.st.now >= self.st.last_plan.plus(self.st.config.replan_interval_ms);
                if relearned_due && plan::refresh_estimates(&mut self.st, &self.ix.by_key) {
                    plan::recompute_critical_paths(&mut self.st);
                    self.resync_all_packages();
                }
                if !self.st.cp_pending.is_empty() {
                    let moved = extend::propagate(
                        &mut self.st,
                        &self.ix.depth,
                        [],
                        extend::PROPAGATION_BUDGET,
                    );
                    for id in moved {
                        self.sync_rank(id);
                    }
                }
                self.sync_replan();
            }
        }
    }

    /// A drone's liveness deadline came up. Heartbeats do not move the timer
    /// (that would cost two index updates per heartbeat); the check re-reads
    /// the last heartbeat and either judges the drone or looks again later.
    fn on_liveness_check(&mut self, name: &DroneName, out: &mut Out) {
        let now = self.st.now;
        let (suspect, offline) = match self.st.drones.get(name) {
            Some(d) => (
                liveness::suspect_at(&self.st, d).is_some_and(|t| t <= now),
                liveness::offline_at(&self.st, d).is_some_and(|t| t <= now),
            ),
            None => return,
        };
        if suspect {
            if let Some(d) = self.st.drones.get_mut(name) {
                d.liveness = Liveness::Suspect;
            }
            out.push(Output::Event(Event::WentSuspect {
                drone: name.clone(),
            }));
        }
        if offline {
            if let Some(d) = self.st.drones.get_mut(name) {
                d.liveness = Liveness::Offline;
            }
            out.push(Output::Event(Event::WentOffline {
                drone: name.clone(),
            }));
            self.reclaim_all(name, ReclaimReason::Offline, out);
        }
        let next = self
            .st
            .drones
            .get(name)
            .and_then(|d| liveness::next_check(&self.st, d));
        if let Some(d) = self.st.drones.get_mut(name) {
            d.check_at = next;
        }
        self.sync_drone(name);
    }

    // ------------------------------------------------------------------ leases

    /// Matches a report to its live lease, or answers with `Revoke` + rejection.
    fn fence(&mut self, r: &Report, out: &mut Out) -> Option<LeaseId> {
        let Some(d) = self.st.drones.get(&r.drone) else {
            reject(
                out,
                RejectReason::UnknownDrone {
                    drone: r.drone.clone(),
                },
            );
            return None;
        };
        let epoch_ok = r.epoch.is_none_or(|e| e == d.epoch);
        let lid = match r.lease {
            Some(lid) => Some(lid).filter(|l| {
                self.st
                    .leases
                    .get(l)
                    .is_some_and(|l| l.drone == r.drone && l.package == r.package)
            }),
            None => self.live_lease_of(&r.drone, &r.package),
        };
        match lid {
            Some(lid) if epoch_ok => Some(lid),
            _ => {
                self.revoke_foreign(&r.drone, r.lease, Some(r.package.clone()), out);
                let reason = RejectReason::StaleReport {
                    drone: r.drone.clone(),
                    package: r.package.clone(),
                    lease: r.lease,
                };
                reject(out, reason);
                None
            }
        }
    }

    /// The drone's live lease of `atom`. A drone holds at most one per atom (the assignment
    /// policy sees to it), so a report naming only an atom resolves to the one package of it
    /// the drone is building, whichever profile that is for.
    fn live_lease_of(&self, drone: &DroneName, atom: &Atom) -> Option<LeaseId> {
        let d = self.st.drones.get(drone)?;
        d.leases
            .iter()
            .find(|l| self.st.leases.get(l).is_some_and(|l| l.package == *atom))
            .copied()
    }

    /// Tells a drone to stop something that is not (or no longer) its own.
    fn revoke_foreign(
        &self,
        drone: &DroneName,
        lease: Option<LeaseId>,
        package: Option<Atom>,
        out: &mut Out,
    ) {
        // The package the drone meant: the lease's, else of the atom's packages (one per
        // profile) the one assigned elsewhere, else one built, else any.
        let of_lease = lease
            .and_then(|l| self.st.leases.get(&l))
            .filter(|l| Some(&l.package) == package.as_ref())
            .map(|l| l.pkg);
        let rank = |st: &PackageState| match st {
            PackageState::Assigned { .. } => 0,
            PackageState::Built { .. } => 1,
            _ => 2,
        };
        let pkg = of_lease.or_else(|| {
            let ids = package.as_ref().and_then(|a| self.ix.by_atom.get(a))?;
            ids.iter().min_by_key(|id| rank(&self.st.pkg(*id).state))
        });
        let state = pkg.map(|p| &self.st.pkg(p).state);
        let reason = match state {
            Some(PackageState::Assigned { lease }) => match self.st.leases.get(lease) {
                Some(l) if &l.drone != drone => RevokeReason::ReassignedTo {
                    drone: l.drone.clone(),
                },
                _ => RevokeReason::Unknown,
            },
            Some(PackageState::Built { .. }) => RevokeReason::CompletedElsewhere,
            _ => RevokeReason::Unknown,
        };
        out.push(Output::Command(Command::Revoke {
            drone: drone.clone(),
            lease,
            package,
            reason,
        }));
    }

    fn mark_started(&mut self, lid: LeaseId, now: Timestamp, out: &mut Out) {
        if let Some(l) = self.st.leases.get_mut(&lid) {
            if l.started_at.is_none() {
                l.started_at = Some(now);
                out.push(Output::Event(Event::Started {
                    drone: l.drone.clone(),
                    package: l.package.clone(),
                    lease: lid,
                }));
            }
        }
    }

    fn issue_lease(&mut self, name: &DroneName, pkg: PkgId, out: &mut Out) {
        let Some(epoch) = self.st.drones.get(name).map(|d| d.epoch) else {
            return;
        };
        let lid = LeaseId(self.st.next_lease);
        self.st.next_lease += 1;
        let p = self.st.pkg_mut(pkg);
        let sweep = match &p.state {
            PackageState::Blocked { reason, .. } => Some(reason.clone()),
            _ => None,
        };
        p.state = PackageState::Assigned { lease: lid };
        let package = p.atom.clone();
        let profile = p.profile.0.clone();
        self.st.leases.insert(
            lid,
            Lease {
                id: lid,
                drone: name.clone(),
                epoch,
                pkg,
                package: package.clone(),
                issued_at: self.st.now,
                started_at: None,
                sweep,
            },
        );
        if let Some(d) = self.st.drones.get_mut(name) {
            d.leases.insert(lid);
        }
        self.sync_pkg(pkg);
        self.sync_drone(name);
        out.push(Output::Command(Command::Assign {
            drone: name.clone(),
            package,
            lease: lid,
            epoch,
            profile,
        }));
    }

    /// Removes a lease from the books; the caller decides the package's new state.
    fn end_lease(&mut self, lid: LeaseId) -> Lease {
        let lease = self.st.leases.remove(&lid).unwrap_or_else(|| {
            unreachable!("end_lease is only called with a lease found live a moment ago")
        });
        if let Some(d) = self.st.drones.get_mut(&lease.drone) {
            d.leases.remove(&lid);
        }
        let name = lease.drone.clone();
        self.sync_drone(&name);
        lease
    }

    /// Takes a lease back and requeues its package without penalty.
    pub(crate) fn reclaim(&mut self, lid: LeaseId, reason: ReclaimReason, out: &mut Out) {
        if !self.st.leases.contains_key(&lid) {
            return;
        }
        let lease = self.end_lease(lid);
        let now = self.st.now;
        let p = self.st.pkg_mut(lease.pkg);
        p.state = match lease.sweep {
            Some(block) => PackageState::Blocked {
                reason: block,
                since: now,
                auto_unblock_at: None,
            },
            None => PackageState::Queued { retry_at: None },
        };
        self.sync_pkg(lease.pkg);
        if reason != ReclaimReason::Returned {
            out.push(Output::Command(Command::Revoke {
                drone: lease.drone.clone(),
                lease: Some(lid),
                package: Some(lease.package.clone()),
                reason: RevokeReason::Reclaimed { reason },
            }));
        }
        out.push(Output::Event(Event::Reclaimed {
            drone: lease.drone,
            package: lease.package,
            lease: lid,
            reason,
            started: lease.started_at.is_some(),
        }));
    }

    pub(crate) fn reclaim_all(&mut self, name: &DroneName, reason: ReclaimReason, out: &mut Out) {
        let lids: Vec<LeaseId> = self
            .st
            .drones
            .get(name)
            .map(|d| d.leases.iter().copied().collect())
            .unwrap_or_default();
        for lid in lids {
            self.reclaim(lid, reason, out);
        }
    }

    /// Reclaims a drone's not-started leases (grounding, rebalance, fresh).
    pub(crate) fn reclaim_not_started(
        &mut self,
        name: &DroneName,
        reason: ReclaimReason,
        out: &mut Out,
    ) {
        self.reclaim_not_started_where(name, reason, |_| true, out);
    }

    /// [`Swarm::reclaim_not_started`] of the leases whose package `which` picks.
    pub(crate) fn reclaim_not_started_where(
        &mut self,
        name: &DroneName,
        reason: ReclaimReason,
        which: impl Fn(&Package) -> bool,
        out: &mut Out,
    ) {
        let lids: Vec<LeaseId> = self
            .st
            .drones
            .get(name)
            .map(|d| {
                d.leases
                    .iter()
                    .filter(|l| {
                        self.st.is_not_started(**l)
                            && self
                                .st
                                .leases
                                .get(l)
                                .is_some_and(|x| which(self.st.pkg(x.pkg)))
                    })
                    .copied()
                    .collect()
            })
            .unwrap_or_default();
        for lid in lids {
            self.reclaim(lid, reason, out);
        }
    }

    // ------------------------------------------------------------------ outcomes

    fn on_success(&mut self, lid: LeaseId, duration_ms: Option<u64>, out: &mut Out) {
        let now = self.st.now;
        let lease = self.end_lease(lid);
        let took = duration_ms
            .unwrap_or_else(|| now.since(lease.started_at.unwrap_or(lease.issued_at)))
            .min(crate::time::MAX_DURATION_MS);
        let key = lease.package.key().to_owned();
        let learned = self.st.learned.entry(key).or_default();
        learned.duration_ms = Some(match learned.duration_ms {
            Some(old) => (old.saturating_mul(3).saturating_add(took)) / 4,
            None => took,
        });
        self.st.relearned.insert(lease.package.key().to_owned());
        let mut env = None;
        if let Some(d) = self.st.drones.get_mut(&lease.drone) {
            d.consecutive_failures = 0;
            d.groundings = 0;
            d.builds_ok += 1;
            env = d.spec.env.digest();
        }
        let p = self.st.pkg_mut(lease.pkg);
        p.state = PackageState::Built { at: now };
        p.avoid = None;
        let dependents = p.dependents.clone();
        self.sync_pkg(lease.pkg);
        for q in dependents {
            let q_pkg = self.st.pkg_mut(q);
            q_pkg.unbuilt = q_pkg.unbuilt.saturating_sub(1);
            self.sync_pkg(q);
        }
        self.sync_replan();
        out.push(Output::Event(Event::Built {
            drone: lease.drone,
            package: lease.package,
            lease: lid,
            duration_ms: took,
            env,
        }));
    }

    fn on_failure(&mut self, lid: LeaseId, class: FailureClass, detail: &str, out: &mut Out) {
        let now = self.st.now;
        let lease = self.end_lease(lid);
        let drone_ram = self
            .st
            .drones
            .get(&lease.drone)
            .map_or(0, |d| d.spec.ram_mb);
        if class == FailureClass::Oom && drone_ram > 0 {
            let learned = self
                .st
                .learned
                .entry(lease.package.key().to_owned())
                .or_default();
            learned.ram_mb = learned.ram_mb.max(drone_ram.saturating_add(1));
        }
        let p = self.st.pkg_mut(lease.pkg);
        p.attempts += 1;
        p.failed_on.insert(lease.drone.clone(), now);
        if class == FailureClass::Build {
            p.build_failed_on.insert(lease.drone.clone());
        }
        p.last_error = Some(detail.to_owned());
        let attempt = p.attempts;
        let window = self.st.config.brake_window_ms;
        let failures = &mut self.st.brake.failures;
        failures.push_back((
            now,
            lease.drone.clone(),
            lease.package.clone(),
            detail.to_owned(),
        ));
        while failures.front().is_some_and(|f| now.since(f.0) >= window) {
            failures.pop_front();
        }
        self.brake_on_common_cause(&lease.package, detail, out);
        let counts_against_drone = class != FailureClass::Build;
        if let Some(d) = self.st.drones.get_mut(&lease.drone) {
            d.builds_failed += 1;
            if counts_against_drone {
                d.consecutive_failures += 1;
            }
        }
        let decision = match &lease.sweep {
            Some(reason) => retry::AfterFailure::Block(reason.clone()),
            None => retry::after_failure(&self.st, self.st.pkg(lease.pkg), class),
        };
        let retry_at = match decision {
            retry::AfterFailure::Retry { at } => Some(at),
            retry::AfterFailure::Block(_) => None,
        };
        out.push(Output::Event(Event::BuildFailed {
            drone: lease.drone.clone(),
            package: lease.package.clone(),
            lease: lid,
            class,
            attempt,
            retry_at,
            detail: detail.to_owned(),
        }));
        match decision {
            retry::AfterFailure::Retry { at } => {
                self.st.pkg_mut(lease.pkg).state = PackageState::Queued { retry_at: Some(at) };
                self.sync_pkg(lease.pkg);
            }
            retry::AfterFailure::Block(reason) => self.block(lease.pkg, reason, out),
        }
        let trips = self
            .st
            .drones
            .get(&lease.drone)
            .is_some_and(|d| breaker::trips(&self.st, d));
        if counts_against_drone && trips {
            self.ground(&lease.drone, out);
        }
    }

    fn ground(&mut self, name: &DroneName, out: &mut Out) {
        if !self.disrupt(name, "grounding", out) {
            return;
        }
        let Some(d) = self.st.drones.get(name) else {
            return;
        };
        let until = breaker::grounded_until(&self.st, d);
        let failures = d.consecutive_failures;
        if let Some(d) = self.st.drones.get_mut(name) {
            d.groundings += 1;
            d.grounded_until = Some(until);
            d.consecutive_failures = 0;
        }
        self.reclaim_not_started(name, ReclaimReason::Grounded, out);
        self.sync_drone(name);
        out.push(Output::Event(Event::Grounded {
            drone: name.clone(),
            until,
            failures,
        }));
    }

    fn maybe_upload_hold(&mut self, name: &DroneName, out: &mut Out) {
        let Some(d) = self.st.drones.get(name) else {
            return;
        };
        if let Some(until) = breaker::upload_hold_until(&self.st, d) {
            if let Some(d) = self.st.drones.get_mut(name) {
                d.upload_hold_until = Some(until);
                d.upload_failures.clear();
            }
            out.push(Output::Event(Event::UploadHold {
                drone: name.clone(),
                until,
            }));
        }
    }

    pub(crate) fn block(&mut self, pkg: PkgId, reason: BlockReason, out: &mut Out) {
        let auto_unblock_at = retry::auto_unblock_at(&self.st, self.st.pkg(pkg), &reason);
        let now = self.st.now;
        let p = self.st.pkg_mut(pkg);
        p.state = PackageState::Blocked {
            reason: reason.clone(),
            since: now,
            auto_unblock_at,
        };
        let package = p.atom.clone();
        self.sync_pkg(pkg);
        out.push(Output::Event(Event::Blocked { package, reason }));
    }

    pub(crate) fn unblock(&mut self, pkg: PkgId, operator: bool, out: &mut Out) {
        let p = self.st.pkg_mut(pkg);
        if !matches!(p.state, PackageState::Blocked { .. }) {
            return;
        }
        if !operator {
            p.auto_unblocks += 1;
        }
        p.forget_failures();
        p.state = PackageState::Queued { retry_at: None };
        let package = p.atom.clone();
        self.sync_pkg(pkg);
        out.push(Output::Event(Event::Unblocked { package, operator }));
    }

    // ------------------------------------------------------------------ brake

    /// Asks the brake whether `name` may be disrupted; records the (would-be)
    /// disruption and engages the brake when it is one too many.
    fn disrupt(&mut self, name: &DroneName, what: &str, out: &mut Out) -> bool {
        let verdict = brake::assess(&self.st, name, what);
        let now = self.st.now;
        let window = self.st.config.brake_window_ms;
        self.st
            .brake
            .disrupted
            .retain(|_, at| now.since(*at) < window);
        self.st.brake.disrupted.insert(name.clone(), now);
        let allowed = match verdict {
            brake::Verdict::Allow => true,
            brake::Verdict::Hold { engage: None } => false,
            brake::Verdict::Hold {
                engage: Some((reason, held)),
            } => {
                self.engage_brake(reason, held, None, out);
                false
            }
        };
        self.sync_brake();
        allowed
    }

    /// Engages the brake when one failure cause hits many packages on most of
    /// the fleet; while it is engaged for a cause, a package failing with that
    /// cause is held too.
    fn brake_on_common_cause(&mut self, atom: &Atom, detail: &str, out: &mut Out) {
        if !self.st.config.brake_enabled {
            return;
        }
        if self.st.brake.engaged {
            let same = self.st.brake.cause.as_ref().is_some_and(|c| {
                crate::failure::diagnose(detail).is_some_and(|d| d.to_string() == *c)
            });
            // The brake holds an atom in every profile: the cause is not the environment.
            if same && self.st.brake.held.insert(atom.clone()) {
                for pkg in self.ids_of(atom) {
                    let p = self.st.pkg_mut(pkg);
                    p.failed_on.clear();
                    p.build_failed_on.clear();
                    self.sync_pkg(pkg);
                }
            }
            return;
        }
        let Some((cause, reason, held)) = brake::common_cause(&self.st) else {
            return;
        };
        self.engage_brake(reason, held, Some(cause.to_string()), out);
        self.sync_brake();
    }

    /// Engages the brake: holds `held`, forgives the failures it explains.
    fn engage_brake(
        &mut self,
        reason: String,
        held: std::collections::BTreeSet<Atom>,
        cause: Option<String>,
        out: &mut Out,
    ) {
        self.st.brake.engaged = true;
        self.st.brake.reason = reason.clone();
        self.st.brake.cause = cause;
        let count = held.len() as u32;
        self.st.brake.held = held;
        self.forgive_brake_failures();
        self.resync_held_and_drones();
        out.push(Output::Event(Event::BrakeEngaged {
            reason,
            held: count,
        }));
    }

    /// The brake has judged that the fault is not in the drones: their failure
    /// streaks, and the held packages' failure memory, would otherwise ground
    /// drones and starve packages once it releases.
    fn forgive_brake_failures(&mut self) {
        let held = self.held_by_brake();
        // Attempts stay counted: `max_attempts` is a promise about real builds.
        for pkg in held {
            let p = self.st.pkg_mut(pkg);
            p.failed_on.clear();
            p.build_failed_on.clear();
        }
        let now = self.st.now;
        for d in self.st.drones.values_mut() {
            if !d.is_grounded(now) {
                d.consecutive_failures = 0;
            }
        }
    }

    pub(crate) fn release_brake(&mut self, operator: bool, out: &mut Out) {
        if !self.st.brake.engaged {
            return;
        }
        self.st.brake.engaged = false;
        self.st.brake.reason.clear();
        self.st.brake.cause = None;
        self.resync_held_and_drones();
        self.st.brake.held.clear();
        self.sync_brake();
        out.push(Output::Event(Event::BrakeReleased { operator }));
    }

    fn held_by_brake(&self) -> Vec<PkgId> {
        let held = self.st.brake.held.iter();
        held.flat_map(|a| self.ids_of(a)).collect()
    }

    fn resync_held_and_drones(&mut self) {
        let held = self.held_by_brake();
        for pkg in held {
            self.sync_pkg(pkg);
        }
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        for name in &names {
            self.sync_drone(name);
        }
    }

    // ------------------------------------------------------------------ index upkeep

    /// A sign of life. An online drone's timers stay where they are (the
    /// liveness check re-reads `last_heartbeat`); a returning drone is resynced.
    fn touch(&mut self, name: &DroneName, out: &mut Out) {
        let now = self.st.now;
        let grace = self.st.config.heartbeat_grace_ms;
        let Some(d) = self.st.drones.get_mut(name) else {
            return;
        };
        d.last_heartbeat = now;
        if d.liveness == Liveness::Online && d.check_at.is_some() {
            return;
        }
        if d.liveness != Liveness::Online {
            d.liveness = Liveness::Online;
            d.probe = Default::default();
            d.ladder = Default::default();
            out.push(Output::Event(Event::CameBack {
                drone: name.clone(),
            }));
        }
        d.check_at = Some(now.plus(grace));
        self.sync_drone(name);
    }

    /// Sets a deadline, never in the past: a deadline behind `now` would look
    /// like one the adapter missed (see the failover rule in `handle`).
    fn set_timer(&mut self, key: TimerKey, at: Option<Timestamp>) {
        let now = self.st.now;
        self.ix.set_timer(key, at.map(|t| t.max(now)));
    }

    pub(crate) fn sync_pkg(&mut self, pkg: PkgId) {
        let p = self.st.pkg(pkg);
        let ready = schedule::is_ready(&self.st, p).then(|| schedule::ready_key(&self.st, pkg, p));
        let sweep = schedule::is_sweepable(p).then(|| schedule::ready_key(&self.st, pkg, p));
        let retry_at = p.retry_at();
        let auto = match p.state {
            PackageState::Blocked {
                auto_unblock_at, ..
            } => auto_unblock_at,
            _ => None,
        };
        Index::set_member(&mut self.ix.ready, &mut self.ix.ready_key, pkg, ready);
        Index::set_member(&mut self.ix.sweepable, &mut self.ix.sweep_key, pkg, sweep);
        self.set_timer(TimerKey::Retry(pkg), retry_at);
        self.set_timer(TimerKey::AutoUnblock(pkg), auto);
    }

    /// After a package's plan moved (or it was just queued): only a package
    /// in the ready or sweep set has a key that depends on it, and its
    /// timers do not; the rest of a long ancestry costs no index lookup.
    fn sync_rank(&mut self, pkg: PkgId) {
        let p = self.st.pkg(pkg);
        if schedule::is_ready(&self.st, p) || schedule::is_sweepable(p) {
            self.sync_pkg(pkg);
        }
    }

    pub(crate) fn sync_drone(&mut self, name: &DroneName) {
        let (check, dead, unground) = match self.st.drones.get(name) {
            Some(d) => (
                d.check_at,
                liveness::confirmed_dead_at(&self.st, d),
                d.grounded_until,
            ),
            None => (None, None, None),
        };
        self.set_timer(TimerKey::Liveness(name.clone()), check);
        self.set_timer(TimerKey::ConfirmedDead(name.clone()), dead);
        self.set_timer(TimerKey::Unground(name.clone()), unground);
    }

    fn sync_brake(&mut self) {
        let at = self
            .st
            .brake
            .engaged
            .then(|| {
                let window = self.st.config.brake_window_ms;
                let now = self.st.now;
                let expiries = self.st.brake.disrupted.values().map(|at| at.plus(window));
                let grounded_ends = self.st.drones.values().filter_map(|d| d.grounded_until);
                let next = expiries.chain(grounded_ends).filter(|t| *t > now).min();
                // A brake engaged for a common cause stays until the operator acts.
                match (next, &self.st.brake.cause) {
                    (Some(t), _) => Some(t),
                    (None, None) => Some(now),
                    (None, Some(_)) => None,
                }
            })
            .flatten();
        self.set_timer(TimerKey::Brake, at);
    }

    fn sync_replan(&mut self) {
        let dirty = !self.st.relearned.is_empty();
        let relearn = dirty.then(|| self.st.last_plan.plus(self.st.config.replan_interval_ms));
        // Critical paths an enqueue left to finish: a slice per tick, the
        // next one `PROPAGATION_PAUSE_MS` on, so one `Tick` never drains it
        // all and a busy writer's other inputs come first.
        let pending = (!self.st.cp_pending.is_empty())
            .then(|| self.st.now.plus(extend::PROPAGATION_PAUSE_MS));
        let at = match (relearn, pending) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.set_timer(TimerKey::Replan, at);
    }

    /// Recomputes the plan and re-sorts the ready set.
    pub(crate) fn replan(&mut self) {
        plan::replan(&mut self.st);
        self.ix.depth = extend::depths(&self.st);
        self.resync_all_packages();
    }

    fn resync_all_packages(&mut self) {
        for i in 0..self.st.packages.len() {
            self.sync_pkg(PkgId(i as u32));
        }
        self.sync_replan();
    }

    /// Derives every index entry from the state (restore, `fresh`).
    pub(crate) fn rebuild_index(&mut self) {
        self.ix = Index {
            by_atom: Index::atoms_of(&self.st),
            by_key: Index::keys_of(&self.st),
            declared: Index::declared_of(&self.st),
            depth: extend::depths(&self.st),
            ..Index::default()
        };
        for i in 0..self.st.packages.len() {
            self.sync_pkg(PkgId(i as u32));
        }
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        for name in &names {
            self.sync_drone(name);
        }
        self.sync_brake();
        self.sync_replan();
    }

    /// After a drone's environment or a profile's expected one changed: says so for each profile
    /// the drone stopped or started matching (`before`: what matched before), and returns its
    /// not-started work of the profiles it no longer matches (a started build finishes; a release
    /// checks what it was built with).
    pub(crate) fn env_changed(
        &mut self,
        name: &DroneName,
        before: &serving::Matches,
        out: &mut Out,
    ) {
        let Some(d) = self.st.drones.get(name) else {
            return;
        };
        let events = serving::match_events(
            &self.st.expected_env,
            &self.st.profiles,
            name,
            &d.spec.env,
            before,
        );
        out.extend(events.into_iter().map(Output::Event));
        // Work of every profile it no longer matches goes back (the default profile's included).
        self.return_unmatched(name, out);
    }

    /// Returns a drone's not-started leases whose package's profile does not admit the drone's
    /// environment (it drifted, or the profile changed); a started build finishes. How many.
    pub(crate) fn return_unmatched(&mut self, name: &DroneName, out: &mut Out) -> usize {
        let Some(d) = self.st.drones.get(name) else {
            return 0;
        };
        let lids: Vec<LeaseId> = d
            .leases
            .iter()
            .filter(|l| self.st.is_not_started(**l))
            .filter(|l| {
                let p = self.st.pkg(self.st.leases[*l].pkg);
                !self
                    .st
                    .expected_env_of(&p.profile)
                    .is_some_and(|e| e.admits(&d.spec.env))
            })
            .copied()
            .collect();
        for lid in &lids {
            self.reclaim(*lid, ReclaimReason::EnvDrift, out);
        }
        lids.len()
    }

    /// [`Swarm::return_unmatched`] for every drone (a profile changed).
    pub(crate) fn return_unmatched_everywhere(&mut self, out: &mut Out) -> usize {
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        names.iter().map(|n| self.return_unmatched(n, out)).sum()
    }

    /// The package of `atom` queued for `profile` (`None`: the default profile).
    pub(crate) fn pkg_in(&self, profile: Option<&str>, atom: &Atom) -> Option<PkgId> {
        crate::index::find_in(&self.ix.by_atom, &self.st, profile, atom)
    }

    /// Every package of `atom`, one per profile it is queued for, in enqueue order.
    pub(crate) fn ids_of(&self, atom: &Atom) -> Vec<PkgId> {
        self.ix
            .by_atom
            .get(atom)
            .map(|ids| ids.iter().collect())
            .unwrap_or_default()
    }

    /// The package an operator names: `profile` given (`default` is the default profile), the
    /// atom's package in it; none given, the atom's only package, refused when it is queued in
    /// several profiles (the operator must say which).
    pub(crate) fn resolve(
        &self,
        atom: &Atom,
        profile: Option<&str>,
    ) -> Result<PkgId, RejectReason> {
        let unknown = || RejectReason::UnknownPackage {
            package: atom.clone(),
        };
        if let Some(name) = profile {
            let tag = (name != crate::profile::DEFAULT_PROFILE).then_some(name);
            return self.pkg_in(tag, atom).ok_or_else(unknown);
        }
        match self.ix.by_atom.get(atom) {
            None => Err(unknown()),
            Some(crate::index::AtomIds::One(id)) => Ok(*id),
            Some(ids) => Err(RejectReason::AmbiguousPackage {
                package: atom.clone(),
                profiles: ids
                    .iter()
                    .map(|id| self.st.pkg(id).profile.name().to_owned())
                    .collect(),
            }),
        }
    }
}

pub(crate) fn reject(out: &mut Out, reason: RejectReason) {
    out.push(Output::Event(Event::InputRejected { reason }));
}

/// A v3 re-registration carries only some fields: missing ones keep their value.
fn merge_spec(old: &mut DroneSpec, new: &DroneSpec) {
    if new.machine_id.is_some() {
        old.machine_id.clone_from(&new.machine_id);
    }
    if new.cores > 0 {
        old.cores = new.cores;
    }
    if new.ram_mb > 0 {
        old.ram_mb = new.ram_mb;
    }
    if new.arch.is_some() {
        old.arch.clone_from(&new.arch);
    }
    if !new.labels.is_empty() {
        old.labels.clone_from(&new.labels);
    }
    if new.kind != crate::input::DroneKind::Unknown {
        old.kind = new.kind;
    }
    if new.portage_snapshot.is_some() {
        old.portage_snapshot.clone_from(&new.portage_snapshot);
    }
    if new.version.is_some() {
        old.version.clone_from(&new.version);
    }
    if !new.env.is_empty() {
        old.env.clone_from(&new.env);
    }
}
