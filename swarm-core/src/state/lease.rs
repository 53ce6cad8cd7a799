//! Leases: the right to build one package, fenced by id and epoch.

use super::PkgId;
use crate::atom::Atom;
use crate::id::{DroneName, Epoch, LeaseId};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// A live lease. It ends with a finish, a return or a reclaim; a report naming
/// an ended lease is stale.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct Lease {
    pub(crate) id: LeaseId,
    pub(crate) drone: DroneName,
    pub(crate) epoch: Epoch,
    pub(crate) pkg: PkgId,
    pub(crate) package: Atom,
    pub(crate) issued_at: Timestamp,
    pub(crate) started_at: Option<Timestamp>,
    /// Issued to a sweeper for a blocked package: anything but success sends it
    /// back to Blocked with this reason.
    pub(crate) sweep: Option<crate::output::BlockReason>,
}
