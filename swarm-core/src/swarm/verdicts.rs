//! [`Swarm::verdict`]: the recorded decisions of the last input (`crate::verdict::Decided`)
//! with the drone's standing right after it.

use super::Swarm;
use crate::id::{DroneName, Epoch};
use crate::input::Report;
use crate::policy::schedule;
use crate::state::PackageState;
use crate::verdict::{Asked, Reported, Verdict, Work};

impl Swarm {
    /// What the core decided for the drone whose request the last [`Swarm::handle`] took, for
    /// the reply to it (see [`Verdict`]); `None` when that input was no drone's request.
    #[must_use]
    pub fn verdict(&self) -> Option<Verdict> {
        let decided = &self.decided;
        let name = decided.drone.as_ref()?;
        let view = self.view();
        let drone = self.st.drones.get(name);
        let revokes = {
            let mut all: Vec<_> = Vec::new();
            let pending = drone
                .into_iter()
                .flat_map(|d| d.revokes.pending(self.st.now));
            for a in decided.revoked.iter().map(|r| &r.package).chain(pending) {
                if !all.contains(a) {
                    all.push(a.clone());
                }
            }
            all
        };
        let work = match decided.asked {
            Asked::Work => Some(decided.work.clone().unwrap_or_else(|| {
                Work::Nothing {
                    reason: drone
                        .and_then(|d| schedule::capacity(&self.st, d, u32::MAX).err())
                        .filter(|w| *w != schedule::NoWork::Full)
                        .map_or_else(|| "nothing ready".to_string(), |w| w.to_string()),
                }
            })),
            _ => None,
        };
        let report = (decided.asked == Asked::Report)
            .then(|| decided.report.clone().unwrap_or(Reported::Accepted));
        Some(Verdict {
            drone: name.clone(),
            known: drone.is_some(),
            epoch: drone.map_or(Epoch(0), |d| d.epoch),
            paused: self.st.paused || drone.is_some_and(|d| d.paused),
            leases: view.leases_of(name),
            work,
            report,
            revoked: decided.revoked.clone(),
            revokes,
            current_task: decided.current_task.clone(),
            returned: decided.returned,
        })
    }

    /// Who holds what a refused report was about, if not its sender: the lease's holder, or for
    /// a report naming no lease, another drone the atom is assigned to (one package per
    /// profile: none if the sender holds one of them).
    pub(super) fn other_holder(&self, report: &Report) -> Option<DroneName> {
        let holder = match report.lease {
            Some(l) => self.st.leases.get(&l).map(|l| l.drone.clone()),
            None => {
                let ids = self.ix.by_atom.get(&report.package);
                let holders: Vec<&DroneName> = ids
                    .into_iter()
                    .flat_map(|ids| ids.iter())
                    .filter_map(|id| match self.st.pkg(id).state() {
                        PackageState::Assigned { lease } => {
                            self.st.leases.get(lease).map(|l| &l.drone)
                        }
                        _ => None,
                    })
                    .collect();
                if holders.contains(&&report.drone) {
                    None
                } else {
                    holders.first().map(|d| (*d).clone())
                }
            }
        };
        holder.filter(|h| *h != report.drone)
    }
}
