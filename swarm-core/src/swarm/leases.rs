//! Leases: fencing stale reports, issuing, ending and reclaiming them.

use super::{reject, Out, Swarm};
use crate::atom::Atom;
use crate::id::{DroneName, LeaseId};
use crate::input::Report;
use crate::output::{Command, Event, Output, ReclaimReason, RejectReason, RevokeReason};
use crate::state::{EndedLease, Lease, Package, PackageState, PkgId};
use crate::time::Timestamp;
use crate::verdict::{Reported, Work};

impl Swarm {
    /// Matches a report to its live lease, or answers with `Revoke` + rejection.
    pub(super) fn fence(&mut self, r: &Report, out: &mut Out) -> Option<LeaseId> {
        let Some(d) = self.st.drones.get(&r.drone) else {
            let reason = RejectReason::UnknownDrone {
                drone: r.drone.clone(),
            };
            self.decided.reported(Reported::Rejected {
                reason: reason.clone(),
            });
            reject(out, reason);
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
                // The first word on it counts: a timer that fired first may have reclaimed it.
                let revoke = self.decided.first_revoke_of(&r.package);
                let holder = self.other_holder(r);
                self.decided.reported(Reported::Stale { revoke, holder });
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

    /// How its drone's own finished report ended the lease of its atom that `r` names, if one
    /// did: any report about that lease since comes too late to change anything (see
    /// `state::reported`; only a report naming its lease can be one).
    pub(super) fn ended_by_own_report(&self, r: &Report) -> Option<&EndedLease> {
        let d = self.st.drones.get(&r.drone)?;
        d.reported.ended(r.lease?).filter(|e| e.atom == r.package)
    }

    /// The drone's live lease of `atom`. A drone holds at most one per atom (the assignment
    /// policy sees to it), so a report naming only an atom resolves to the one package of it
    /// the drone is building, whichever profile that is for.
    pub(super) fn live_lease_of(&self, drone: &DroneName, atom: &Atom) -> Option<LeaseId> {
        let d = self.st.drones.get(drone)?;
        d.leases
            .iter()
            .find(|l| self.st.leases.get(l).is_some_and(|l| l.package == *atom))
            .copied()
    }

    /// Tells a drone to stop something that is not (or no longer) its own.
    pub(super) fn revoke_foreign(
        &mut self,
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
            ids.iter().min_by_key(|id| rank(self.st.pkg(*id).state()))
        });
        let state = pkg.map(|p| self.st.pkg(p).state());
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
        self.send_revoke(drone, lease, package, reason, out);
    }

    /// Tells a drone to stop, and keeps repeating it in the drone's replies until it has
    /// (see `state::RevokeBox`).
    pub(super) fn send_revoke(
        &mut self,
        drone: &DroneName,
        lease: Option<LeaseId>,
        package: Option<Atom>,
        reason: RevokeReason,
        out: &mut Out,
    ) {
        let now = self.st.now;
        // Not while it holds a live lease of the atom (a report of an older lease of it): repeating
        // the revoke would stop the build it was given since.
        let holds = package
            .as_ref()
            .is_some_and(|a| self.live_lease_of(drone, a).is_some());
        if let (Some(atom), Some(d), false) = (&package, self.st.drones.get_mut(drone), holds) {
            d.revokes.add(atom, lease, now);
        }
        if let Some(atom) = &package {
            self.decided.revoked(drone, atom, &reason);
        }
        out.push(Output::Command(Command::Revoke {
            drone: drone.clone(),
            lease,
            package,
            reason,
        }));
    }

    pub(super) fn mark_started(&mut self, lid: LeaseId, now: Timestamp, out: &mut Out) {
        if let Some(l) = self.st.leases.get_mut(&lid) {
            if l.started_at.is_none() {
                l.started_at = Some(now);
                // The lease's row, its package's (`started`) and its drone's (its leases).
                self.touched.lease(lid);
                self.touched.package(l.pkg);
                self.touched.drone(&l.drone);
                out.push(Output::Event(Event::Started {
                    drone: l.drone.clone(),
                    package: l.package.clone(),
                    lease: lid,
                }));
            }
        }
    }

    pub(super) fn issue_lease(&mut self, name: &DroneName, pkg: PkgId, out: &mut Out) {
        let Some(epoch) = self.st.drones.get(name).map(|d| d.epoch) else {
            return;
        };
        let lid = LeaseId(self.st.next_lease);
        self.st.next_lease += 1;
        self.touched.lease(lid);
        let p = self.st.pkg_mut(pkg);
        let sweep = match p.state() {
            PackageState::Blocked { reason, .. } => Some(reason.clone()),
            _ => None,
        };
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
            d.revokes.clear(&package);
        }
        self.transition(pkg, PackageState::Assigned { lease: lid });
        self.sync_drone(name);
        self.decided.given(name, || Work::Given {
            package: package.clone(),
            lease: lid,
            profile: profile.clone(),
            resent: false,
        });
        out.push(Output::Command(Command::Assign {
            drone: name.clone(),
            package,
            lease: lid,
            epoch,
            profile,
        }));
    }

    /// Removes a lease from the books; the caller decides the package's new state.
    pub(super) fn end_lease(&mut self, lid: LeaseId) -> Lease {
        let lease = self.st.leases.remove(&lid).unwrap_or_else(|| {
            unreachable!("end_lease is only called with a lease found live a moment ago")
        });
        self.touched.lease(lid);
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
        let back = match lease.sweep {
            Some(block) => PackageState::Blocked {
                reason: block,
                since: now,
                auto_unblock_at: None,
            },
            None => PackageState::Queued { retry_at: None },
        };
        self.transition(lease.pkg, back);
        if reason != ReclaimReason::Returned {
            self.send_revoke(
                &lease.drone,
                Some(lid),
                Some(lease.package.clone()),
                RevokeReason::Reclaimed { reason },
                out,
            );
        }
        self.decided.reclaimed(&lease.drone);
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
}
