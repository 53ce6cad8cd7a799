//! What a build's outcome does to its package and its drone: built, retried, blocked,
//! grounded.

use super::{Out, Swarm};
use crate::id::{DroneName, LeaseId};
use crate::input::FailureClass;
use crate::output::{BlockReason, Event, Output, ReclaimReason};
use crate::policy::{breaker, retry};
use crate::state::{PackageState, PkgId};
use crate::verdict::Reported;

impl Swarm {
    pub(super) fn on_success(&mut self, lid: LeaseId, duration_ms: Option<u64>, out: &mut Out) {
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
        p.avoid = None;
        let undelivering = std::mem::take(&mut p.undelivered_by.0);
        let dependents = p.dependents.clone();
        self.transition(lease.pkg, PackageState::Built { at: now });
        for &q in dependents.iter() {
            let q_pkg = self.st.pkg_mut(q);
            q_pkg.unbuilt = q_pkg.unbuilt.saturating_sub(1);
            self.sync_pkg(q);
        }
        self.sync_replan();
        self.brake_trial_passed(&lease.drone, out);
        self.decided.reported(Reported::Built);
        out.push(Output::Event(Event::Built {
            drone: lease.drone.clone(),
            package: lease.package,
            lease: lid,
            duration_ms: took,
            env,
        }));
        // This package was deliverable: the drones whose builds of it did not deliver
        // failed on their side.
        let window = self.st.config.upload_failure_window_ms;
        for (other, at) in undelivering {
            if other != lease.drone && now.since(at) < window {
                self.upload_strike(&other, out);
            }
        }
    }

    pub(super) fn on_failure(
        &mut self,
        lid: LeaseId,
        class: FailureClass,
        detail: &str,
        out: &mut Out,
    ) {
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
        let explained = self.brake_explains(&lease.drone, detail);
        let p = self.st.pkg_mut(lease.pkg);
        if !explained {
            p.attempts += 1;
        }
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
        if self.st.brake.engaged {
            // When a brake for a cause may release follows its last failure with it.
            self.sync_brake();
        }
        self.brake_on_common_cause(&lease.drone, &lease.package, detail, out);
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
                self.transition(lease.pkg, PackageState::Queued { retry_at: Some(at) });
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

    /// A build whose binary never arrived: the drone says it failed to upload, or the adapter
    /// found nothing valid under the lease. The package is not at fault (it built), so it uses
    /// no attempt and no 24 h drone avoidance: it goes back to the queue at once, preferring
    /// another drone, and blocks only after `max_attempts` such builds. The drone is not
    /// grounded for it either (a full staging disk would ground the whole fleet). Nor is it
    /// counted against the drone yet: a package the server refuses from every drone (too big,
    /// not valid, another slot than the queue says) would hold them all in turn while the
    /// package went back to the head of the queue. This failure counts toward the drone's
    /// upload hold when another drone delivers the package (`on_success`), or when the same
    /// drone fails it again and no other drone has.
    pub(super) fn on_undelivered(&mut self, lid: LeaseId, detail: &str, out: &mut Out) {
        let now = self.st.now;
        let lease = self.end_lease(lid);
        let max = self.st.config.max_attempts;
        let p = self.st.pkg_mut(lease.pkg);
        p.undelivered.0 = p.undelivered.0.saturating_add(1);
        // Again on the same drone, and on no other: nothing says the package is at fault,
        // and a fast broken drone that takes its packages back would otherwise use up their
        // builds alone, never held (h24).
        let again_only_here =
            p.undelivered_by.0.len() == 1 && p.undelivered_by.0.contains_key(&lease.drone);
        p.undelivered_by.0.insert(lease.drone.clone(), now);
        p.avoid = Some(lease.drone.clone());
        p.last_error = Some(detail.to_owned());
        let (times, attempt) = (p.undelivered.0, p.attempts);
        out.push(Output::Event(Event::BuildFailed {
            drone: lease.drone.clone(),
            package: lease.package.clone(),
            lease: lid,
            class: FailureClass::Infra,
            attempt,
            retry_at: None,
            detail: detail.to_owned(),
        }));
        match lease.sweep {
            Some(reason) => self.block(lease.pkg, reason, out),
            None if times >= max => {
                self.block(lease.pkg, BlockReason::Undeliverable { times }, out)
            }
            None => self.transition(lease.pkg, PackageState::Queued { retry_at: None }),
        }
        if again_only_here {
            self.upload_strike(&lease.drone, out);
        }
    }

    /// Counts an undelivered build against `name`, now that another drone delivered its
    /// package, and holds the drone at the limit.
    fn upload_strike(&mut self, name: &DroneName, out: &mut Out) {
        let now = self.st.now;
        let window = self.st.config.upload_failure_window_ms;
        let Some(d) = self.st.drones.get_mut(name) else {
            return;
        };
        d.upload_failures.push_back(now);
        while d
            .upload_failures
            .front()
            .is_some_and(|t| now.since(*t) >= window)
        {
            d.upload_failures.pop_front();
        }
        self.maybe_upload_hold(name, out);
    }

    pub(super) fn ground(&mut self, name: &DroneName, out: &mut Out) {
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

    pub(super) fn maybe_upload_hold(&mut self, name: &DroneName, out: &mut Out) {
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
        let package = self.st.pkg(pkg).atom.clone();
        let blocked = PackageState::Blocked {
            reason: reason.clone(),
            since: now,
            auto_unblock_at,
        };
        self.transition(pkg, blocked);
        out.push(Output::Event(Event::Blocked { package, reason }));
    }

    pub(crate) fn unblock(&mut self, pkg: PkgId, operator: bool, out: &mut Out) {
        let p = self.st.pkg_mut(pkg);
        if !matches!(*p.state(), PackageState::Blocked { .. }) {
            return;
        }
        if !operator {
            p.auto_unblocks += 1;
        }
        p.forget_failures();
        let package = p.atom.clone();
        self.transition(pkg, PackageState::Queued { retry_at: None });
        out.push(Output::Event(Event::Unblocked { package, operator }));
    }
}
