//! Profiles and build environments: what a drift returns, and which package of which
//! profile an atom names.

use super::{Out, Swarm};
use crate::atom::Atom;
use crate::id::{DroneName, LeaseId};
use crate::output::{Output, ReclaimReason, RejectReason};
use crate::serving;
use crate::state::PkgId;

impl Swarm {
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
    ) -> Result<PkgId, Box<RejectReason>> {
        let unknown = || {
            Box::new(RejectReason::UnknownPackage {
                package: atom.clone(),
            })
        };
        if let Some(name) = profile {
            let tag = (name != crate::profile::DEFAULT_PROFILE).then_some(name);
            return self.pkg_in(tag, atom).ok_or_else(unknown);
        }
        match self.ix.by_atom.get(atom) {
            None => Err(unknown()),
            Some(crate::index::AtomIds::One(id)) => Ok(*id),
            Some(ids) => Err(Box::new(RejectReason::AmbiguousPackage {
                package: atom.clone(),
                profiles: ids
                    .iter()
                    .map(|id| self.st.pkg(id).profile.name().to_owned())
                    .collect(),
            })),
        }
    }
}
