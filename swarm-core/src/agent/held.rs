//! What the agent holds, as each reply sees it: the leases of its jobs and of
//! spooled builds, which of them a server of the farm that answered may hear
//! of, and what a listing of leases means (adopted by a running build, held,
//! or counted towards handing it back).

use super::leases::LeaseMemory;
use super::state::{normalise, AgentState};
use super::types::{AgentJob, Listed};
use std::collections::BTreeSet;

impl AgentState {
    /// Adopts and counts the leases a reply lists.
    pub(super) fn note_listed(&mut self, listed: &[Listed]) {
        let seen: BTreeSet<u64> = listed.iter().map(|l| l.lease).collect();
        let rest = self.adopt(listed);
        self.leases.listed(&rest, &seen);
    }

    /// Gives each listed lease the agent does not know to a job running the same package under
    /// an older (or no) lease; returns the leases no job took (with those it ended without a
    /// word to the server, which the server still counts as held).
    pub(super) fn adopt(&mut self, listed: &[Listed]) -> Vec<(u64, String)> {
        let mut rest = Vec::new();
        for l in listed {
            if self.has_lease(l.lease) {
                continue;
            }
            if self.leases.ended(l.lease) {
                if self.leases.unsaid(l.lease) {
                    rest.push((l.lease, l.package.clone()));
                }
                continue;
            }
            let atom = normalise(&l.package);
            let farm = self.farm.clone();
            let adopter = self.jobs.values_mut().find(|j| {
                j.atom.as_str() == atom
                    && same_farm(j.farm.as_deref(), farm.as_deref())
                    && j.stop.is_none()
                    && !j.ended
                    && j.lease.is_none_or(|x| x < l.lease)
            });
            match adopter {
                Some(job) => {
                    job.given = self.given;
                    self.given += 1;
                    if let Some(old) = job.lease.replace(l.lease) {
                        self.leases.end(old);
                    }
                }
                None => rest.push((l.lease, l.package.clone())),
            }
        }
        rest
    }

    /// Whether a job or a spooled build holds `lease`.
    #[must_use]
    pub fn has_lease(&self, lease: u64) -> bool {
        self.spooled.contains_key(&lease)
            || self
                .jobs
                .values()
                .any(|j| j.lease == Some(lease) && self.here(j))
    }

    /// Whether a job's lease is of the farm the server last said it is (or either is unknown):
    /// only that farm's replies speak of it.
    pub(super) fn here(&self, job: &AgentJob) -> bool {
        same_farm(job.farm.as_deref(), self.farm.as_deref())
    }

    /// The farm the server last said it is; `None` until one said.
    #[must_use]
    pub fn farm(&self) -> Option<&str> {
        self.farm.as_deref()
    }

    /// Notes the farm a reply names. Another farm than the last one replaced it at the same
    /// address: the lease numbers remembered are the old farm's and mean nothing to this one.
    pub(super) fn heard_farm(&mut self, farm: Option<&String>) {
        let Some(farm) = farm else {
            return;
        };
        if self.farm.as_ref().is_some_and(|known| known != farm) {
            self.leases = LeaseMemory::default();
        }
        self.farm = Some(farm.clone());
    }

    /// Leases of spooled builds being delivered.
    #[must_use]
    pub fn spooled(&self) -> BTreeSet<u64> {
        self.spooled.keys().copied().collect()
    }

    /// One entry of `lease` is done with; true when none is left.
    pub(super) fn unspool(&mut self, lease: u64) -> bool {
        match self.spooled.get_mut(&lease) {
            Some(n) if *n > 1 => {
                *n -= 1;
                false
            }
            Some(_) => {
                self.spooled.remove(&lease);
                true
            }
            None => false,
        }
    }

    /// Leases the server keeps listing that no job runs, with their package.
    #[must_use]
    pub fn orphans(&self) -> Vec<(u64, String)> {
        self.leases
            .orphans()
            .filter(|(l, _)| !self.has_lease(*l))
            .map(|(l, p)| (l, p.to_string()))
            .collect()
    }

    /// Leases held and leases started, for the heartbeat. A spooled build's lease is listed as
    /// started only: should the server have moved it on, a lease listed as held that is not the
    /// drone's makes the server revoke its package here, which would stop a new build of it.
    /// Jobs of another farm than the server's are not listed: their numbers are not its leases.
    #[must_use]
    pub fn lease_lists(&self) -> (Vec<u64>, Vec<u64>) {
        let here = || self.jobs.values().filter(|j| self.here(j));
        let held: BTreeSet<u64> = here().filter_map(|j| j.lease).collect();
        let started: BTreeSet<u64> = here()
            .filter(|j| j.started)
            .filter_map(|j| j.lease)
            .chain(self.spooled.keys().copied())
            .collect();
        (held.into_iter().collect(), started.into_iter().collect())
    }
}
/// Whether two farms are one, as far as anyone said: an unknown farm is no other farm.
fn same_farm(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}
