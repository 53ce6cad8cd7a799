//! What each input does: registration, heartbeats, requests for work, build reports,
//! probes, enqueues and operator controls.

use super::{reject, Out, Swarm};
use crate::atom::Atom;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::input::{Control, DroneSpec, Enqueue, Heartbeat, Outcome, ProbeStatus, Report};
use crate::output::{BlockReason, Command, Event, Output, ReclaimReason, RejectReason};
use crate::policy::{escalate, extend, schedule};
use crate::portage::PortageSnapshot;
use crate::serving;
use crate::state::{Drone, Liveness, PkgId};
use crate::verdict::{Reported, Work};

impl Swarm {
    pub(super) fn on_register(&mut self, spec: &DroneSpec, out: &mut Out) {
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

    pub(super) fn on_heartbeat(&mut self, hb: &Heartbeat, out: &mut Out) {
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
        // Work it no longer reports has been stopped: its revoke is done with.
        let still = |atom: &Atom, lease: Option<LeaseId>| {
            hb.current_task.as_ref() == Some(atom)
                || lease.is_some_and(|l| {
                    hb.leases.iter().flatten().any(|x| *x == l) || hb.started.contains(&l)
                })
        };
        let reports_work = hb.leases.is_some() || hb.reports_task || hb.current_task.is_some();
        d.revokes.settle(now, reports_work.then_some(&still as _));
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
        // One lookup of the drone's own leases serves every id the heartbeat lists. A lease its
        // own report ended is no foreign work: the drone lists it until it hears that report's
        // answer, which may have been lost and is on its way again (h51 F1).
        let Some(d) = self.st.drones.get(name) else {
            return;
        };
        let own_ended: Vec<&Atom> = hb
            .leases
            .iter()
            .flatten()
            .filter_map(|l| d.reported.ended(*l).map(|e| &e.atom))
            .collect();
        // The task it names is such a lease's atom: no foreign work either.
        let task_reported = hb
            .current_task
            .as_ref()
            .is_some_and(|a| own_ended.contains(&a));
        let foreign: Vec<LeaseId> = hb
            .leases
            .iter()
            .flatten()
            .filter(|l| !d.leases.contains(l) && d.reported.ended(**l).is_none())
            .copied()
            .collect();
        let starting: Vec<LeaseId> = hb
            .started
            .iter()
            .filter(|l| d.leases.contains(l))
            .filter(|l| self.st.is_not_started(**l))
            .copied()
            .collect();
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
                None if task_reported => {}
                None => self.revoke_foreign(name, None, Some(atom.clone()), out),
            }
        }
    }

    pub(super) fn on_request_work(
        &mut self,
        name: &DroneName,
        free_slots: Option<u32>,
        out: &mut Out,
    ) {
        let Some(d) = self.st.drones.get(name) else {
            return reject(
                out,
                RejectReason::UnknownDrone {
                    drone: name.clone(),
                },
            );
        };
        // A v3 drone builds one package at a time and polls until it reports it: what it
        // holds, it is told again (its oldest lease, should it hold several from before).
        if free_slots.is_none() {
            if let Some(lease) = d.leases.iter().next().and_then(|l| self.st.leases.get(l)) {
                let profile = self.st.pkg(lease.pkg).profile.0.clone();
                self.decided.given(name, || Work::Given {
                    package: lease.package.clone(),
                    lease: lease.id,
                    profile: profile.clone(),
                    resent: true,
                });
                out.push(Output::Command(Command::Resend {
                    drone: name.clone(),
                    package: lease.package.clone(),
                    lease: lease.id,
                    profile,
                }));
                return;
            }
        }
        let free_slots = free_slots.unwrap_or(1);
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
                self.decided.given(name, || Work::SyncPortage {
                    expected: expected.clone(),
                });
                out.push(Output::Command(Command::SyncPortage {
                    drone: name.clone(),
                    expected,
                }));
                return;
            }
            Err(_) => return,
        };
        let picks = schedule::pick(&self.st, &self.ix, d, n);
        // A drone the brake set aside gets one trial build (`brake::trial_due`), and steals none.
        let on_trial = self.st.brake.sets_aside(name);
        if picks.is_empty() {
            if on_trial {
                return;
            }
            if let Some(lid) = schedule::pick_steal(&self.st, d) {
                let Some(pkg) = self.st.leases.get(&lid).map(|l| l.pkg) else {
                    return;
                };
                self.reclaim(lid, ReclaimReason::Stolen, out);
                self.issue_lease(name, pkg, out);
            }
            return;
        }
        if on_trial {
            self.st.brake.trials.insert(name.clone(), self.st.now);
            self.sync_brake();
        }
        for pkg in picks {
            self.issue_lease(name, pkg, out);
        }
    }

    pub(super) fn on_build_started(&mut self, report: &Report, out: &mut Out) {
        // A start that arrives after the drone's own report ended the lease (a retry reordered
        // with it): the build is over, and fenced as stale it left a revoke of the atom repeated
        // while heartbeats list the lease, which dropped that report's retry (h52 F1).
        if let Some(built) = self.ended_by_own_report(report).map(|e| e.built) {
            self.decided.reported(Reported::Repeated { built });
            return;
        }
        if let Some(lid) = self.fence(report, out) {
            let now = self.st.now;
            self.mark_started(lid, now, out);
        }
    }

    pub(super) fn on_build_finished(
        &mut self,
        report: &Report,
        outcome: &Outcome,
        duration_ms: Option<u64>,
        out: &mut Out,
    ) {
        let repeat = self
            .ended_by_own_report(report)
            .filter(|e| e.repeated_by(outcome));
        if let Some(built) = repeat.map(|e| e.built) {
            self.decided.reported(Reported::Repeated { built });
            return;
        }
        let Some(lid) = self.fence(report, out) else {
            return;
        };
        if let Some(d) = self.st.drones.get_mut(&report.drone) {
            d.reported.add(lid, &report.package, outcome);
        }
        match outcome {
            Outcome::Success => self.on_success(lid, duration_ms, out),
            Outcome::Failed { class, detail } => self.on_failure(lid, *class, detail, out),
            Outcome::UploadFailed { detail } => {
                let said = match detail.as_str() {
                    "" => "upload failed".to_owned(),
                    d => format!("upload failed: {d}"),
                };
                self.on_undelivered(lid, &said, out)
            }
            Outcome::Undelivered { detail } => self.on_undelivered(lid, detail, out),
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
    pub(super) fn on_deregister(&mut self, name: &DroneName, out: &mut Out) {
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
            d.probe = Default::default();
            d.ladder = Default::default();
        }
        self.set_liveness(name, Liveness::Stopped);
        out.push(Output::Event(Event::Deregistered {
            drone: name.clone(),
        }));
    }

    pub(super) fn on_probe_result(&mut self, name: &DroneName, status: ProbeStatus, out: &mut Out) {
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

    pub(super) fn on_enqueue(&mut self, enqueue: &Enqueue, out: &mut Out) {
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
            let package = self.st.new_package(spec);
            let key = package.key.clone();
            self.st.packages.push(std::sync::Arc::new(package));
            self.st.next_order += 1;
            crate::index::add_atom(&mut self.ix.by_atom, &spec.atom, id);
            self.ix.by_key.entry(key).or_default().push(id);
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

    pub(super) fn grant_grace(&mut self) {
        self.st.grace_until = Some(self.st.now.plus(self.st.config.failover_grace_ms));
        let names: Vec<DroneName> = self.st.drones.keys().cloned().collect();
        for name in &names {
            self.sync_drone(name);
        }
    }

    pub(super) fn on_control(&mut self, action: &Control, out: &mut Out) {
        super::control::apply(self, action, out);
    }
}

/// A v3 re-registration carries only some fields: missing ones keep their value.
pub(super) fn merge_spec(old: &mut DroneSpec, new: &DroneSpec) {
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
