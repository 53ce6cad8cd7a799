//! What one [`Swarm::handle`](crate::Swarm::handle) changed: the packages, drones and leases
//! whose rows (as [`View`](crate::View) shows them) may differ from before the input.
//!
//! A read model that mirrors those rows (the store's read tables, a cache) re-reads exactly
//! these instead of guessing from the input's and outputs' fields or tracking deadlines of
//! its own: a deadline that lapses fires inside `handle`, so what it changes is recorded like
//! any other change. The record is filled where the core changes an entity (a package's
//! `transition`, a drone's or lease's upkeep), so it may name more than changed, never less
//! (`tests/touched.rs` holds the core to that after every step of its generators).
//!
//! Not covered: figures derived from other rows or from the whole swarm (a package's
//! critical path, estimate and unbuilt dependencies; a drone's `no_work`, `serves` and
//! environment differences): they move with plans and profiles, not with the entity.

use crate::id::{DroneName, LeaseId};
use crate::input::Control;
use crate::state::PkgId;
use std::collections::BTreeSet;

/// The entities the last input changed. `everything` stands for all of them (an operator
/// action that reaches the whole queue, a rebuilt index): then the sets are left empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Touched {
    pub(crate) packages: BTreeSet<PkgId>,
    drones: BTreeSet<DroneName>,
    leases: BTreeSet<LeaseId>,
    everything: bool,
}

impl Touched {
    /// Whether the last input may have changed any row: re-read them all.
    pub fn everything(&self) -> bool {
        self.everything
    }

    /// The drones whose row may have changed (added, changed or removed).
    pub fn drones(&self) -> impl Iterator<Item = &DroneName> + '_ {
        self.drones.iter()
    }

    /// The leases that may have been issued, changed or ended.
    pub fn leases(&self) -> impl Iterator<Item = LeaseId> + '_ {
        self.leases.iter().copied()
    }

    /// How many packages may have changed (see [`View::touched_packages`](crate::View)).
    pub fn package_count(&self) -> usize {
        self.packages.len()
    }

    /// What an operator action reaches beyond the upkeep hooks: the drone it names, nothing
    /// (a swarm-wide pause changes no row), or, for actions over the whole queue or fleet
    /// (reset, profiles, clearing failures), everything.
    pub(crate) fn control(&mut self, action: &Control) {
        match action {
            Control::PauseDrone { drone }
            | Control::ResumeDrone { drone }
            | Control::Drain { drone }
            | Control::Undrain { drone }
            | Control::ResetEscalation { drone }
            | Control::RemoveDrone { drone }
            | Control::Unground { drone: Some(drone) } => self.drone(drone),
            // Packages and leases they change go through `transition` and the lease hooks.
            Control::Pause
            | Control::Resume
            | Control::Block { .. }
            | Control::Unblock {
                package: Some(_), ..
            }
            | Control::Retry { .. }
            | Control::Reclaim { .. }
            | Control::Rebalance
            | Control::ReleaseBrake => {}
            _ => self.all(),
        }
    }

    pub(crate) fn clear(&mut self) {
        self.packages.clear();
        self.drones.clear();
        self.leases.clear();
        self.everything = false;
    }

    pub(crate) fn all(&mut self) {
        self.clear();
        self.everything = true;
    }

    pub(crate) fn package(&mut self, id: PkgId) {
        if !self.everything {
            self.packages.insert(id);
        }
    }

    pub(crate) fn drone(&mut self, name: &DroneName) {
        // Checked first: most calls name a drone already recorded, and need no clone.
        if !self.everything && !self.drones.contains(name) {
            self.drones.insert(name.clone());
        }
    }

    pub(crate) fn lease(&mut self, id: LeaseId) {
        if !self.everything {
            self.leases.insert(id);
        }
    }
}
