//! Leases a drone ended by its own report.
//!
//! A drone that sent a build's report and lost the reply (a timeout, a restart, a proxy that
//! dropped the connection) sends the same report again under the same lease. By then the lease
//! has ended, so the report no longer matches a live lease; fencing alone would call it stale,
//! log a rejection, send a revoke and tell the drone the work was "completed elsewhere" when it
//! was completed, and recorded, right there. The core keeps the last leases each drone ended
//! this way, so such a report is answered as a repeat instead: nothing changes and nothing is
//! sent, and the reply says what the first one said.
//!
//! Only a report that names its lease can be a repeat. A v3 report names only the atom, and the
//! same drone may have reported that atom before under a lease that has nothing to do with this
//! report (a failure, then the package built elsewhere): it stays stale, as v3 answered it.
//!
//! Like the revoke box it is reply bookkeeping: it decides only whether a report that changes
//! nothing is answered as a repeat or as stale, never a package's or drone's state. So it stays
//! out of the digest (snapshots written before it existed keep verifying, golden logs replay to
//! the same digests), while snapshots carry it, so a restart answers as the running server would.
//! Invariant 17 checks it in the deep check.

use crate::atom::Atom;
use crate::id::LeaseId;
use crate::input::Outcome;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// At most this many leases are remembered per drone; the oldest goes first. An agent re-sends a
/// report within seconds of losing the reply, and its spool sends in order, so a drone would have
/// to report this many other builds in between for its repeat to be called stale again.
pub(crate) const MAX_REMEMBERED: usize = 32;

/// What a finished report said, as far as telling its repeat goes. A report is sent again
/// byte for byte, but the server re-reads the binary a success names: once the lease has ended,
/// no upload under it is found, so a success sent again reaches the core as `Undelivered`, and
/// the two are one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ReportKind {
    Built,
    Failed,
    UploadFailed,
    Returned,
    Masked,
}

impl ReportKind {
    pub(crate) fn of(outcome: &Outcome) -> ReportKind {
        match outcome {
            Outcome::Success | Outcome::Undelivered { .. } => ReportKind::Built,
            Outcome::Failed { .. } => ReportKind::Failed,
            Outcome::UploadFailed { .. } => ReportKind::UploadFailed,
            Outcome::Returned { .. } => ReportKind::Returned,
            Outcome::Masked => ReportKind::Masked,
        }
    }
}

/// One lease a drone's report ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EndedLease {
    pub(crate) lease: LeaseId,
    pub(crate) atom: Atom,
    pub(crate) kind: ReportKind,
    /// Whether that report built the package (what the reply's `accepted` said).
    pub(crate) built: bool,
}

impl EndedLease {
    /// Whether a finished report saying `outcome` says what the one that ended it said. A
    /// report of another kind (a success after a return) is no repeat: it is late, and stale.
    pub(crate) fn repeated_by(&self, outcome: &Outcome) -> bool {
        self.kind == ReportKind::of(outcome)
    }
}

/// A drone's leases ended by its own reports, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct ReportedLeases(pub(crate) VecDeque<EndedLease>);

impl std::hash::Hash for ReportedLeases {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl ReportedLeases {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Remembers that the drone's report ended `lease`.
    pub(crate) fn add(&mut self, lease: LeaseId, atom: &Atom, outcome: &Outcome) {
        self.0.push_back(EndedLease {
            lease,
            atom: atom.clone(),
            kind: ReportKind::of(outcome),
            built: matches!(outcome, Outcome::Success),
        });
        while self.0.len() > MAX_REMEMBERED {
            self.0.pop_front();
        }
    }

    /// How the drone's report ended `lease`, if one did (lease ids are never issued twice, so
    /// it is one entry at most).
    pub(crate) fn ended(&self, lease: LeaseId) -> Option<&EndedLease> {
        self.0.iter().find(|e| e.lease == lease)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::FailureClass;

    fn atom(s: &str) -> Atom {
        Atom::parse(s).expect("atom")
    }

    fn failed() -> Outcome {
        Outcome::Failed {
            class: FailureClass::Build,
            detail: "boom".into(),
        }
    }

    #[test]
    fn a_report_repeats_the_lease_it_names_only_as_the_same_kind_of_report() {
        let mut r = ReportedLeases::default();
        let (a, b) = (atom("=dev-libs/a-1"), atom("=dev-libs/b-1"));
        r.add(LeaseId(3), &a, &Outcome::Success);
        r.add(LeaseId(5), &b, &failed());
        let built = |l: u64, o: &Outcome| {
            r.ended(LeaseId(l))
                .filter(|e| e.repeated_by(o))
                .map(|e| (e.atom.clone(), e.built))
        };
        assert_eq!(built(3, &Outcome::Success), Some((a.clone(), true)));
        // A success sent again reaches the core as undelivered: its binary was taken since.
        let undelivered = Outcome::Undelivered {
            detail: "missing_binary".into(),
        };
        assert_eq!(built(3, &undelivered), Some((a, true)));
        assert_eq!(built(5, &failed()), Some((b, false)));
        // A lease never ended here, or another kind of report: no repeat.
        assert_eq!(built(4, &Outcome::Success), None);
        assert_eq!(built(5, &Outcome::Success), None);
        let returned = Outcome::Returned {
            reason: String::new(),
        };
        assert_eq!(built(3, &returned), None);
    }

    #[test]
    fn only_the_latest_leases_are_remembered() {
        let mut r = ReportedLeases::default();
        for i in 0..(MAX_REMEMBERED as u64 + 5) {
            r.add(
                LeaseId(i),
                &atom(&format!("=dev-libs/p{i}-1")),
                &Outcome::Success,
            );
        }
        assert_eq!(r.0.len(), MAX_REMEMBERED);
        assert!(r.ended(LeaseId(4)).is_none());
        assert!(r.ended(LeaseId(5)).is_some());
    }
}
