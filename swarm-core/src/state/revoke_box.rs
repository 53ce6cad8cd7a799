//! Revokes a drone has not yet been seen to obey.
//!
//! A revoke goes out with the reply that caused it, but a drone may miss that reply (a timeout, a
//! restart) or, as a v3 drone, only learn of it when it next calls. So each revoke is repeated in
//! every heartbeat and poll reply to its drone until one of these says it is done with:
//! - a heartbeat that reports the drone's work no longer lists it (the drone stopped it);
//! - the drone is given the same atom again;
//! - [`REVOKE_REPEAT_MS`] passed, for a drone that never says what it works on.
//!
//! It is core state, so it survives a restart and replays from the log like everything else.

use crate::atom::Atom;
use crate::id::LeaseId;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How long a revoke is repeated to a drone that never reports what it builds (a v3 drone without
/// `current_task`): an hour covers any restart or partition an operator would not notice.
pub const REVOKE_REPEAT_MS: u64 = 3_600_000;

/// At most this many revokes are remembered per drone; the oldest goes first. A drone is given one
/// lease per free slot, so only a drone that keeps reporting foreign work reaches it.
const MAX_PENDING: usize = 256;

/// Whether the drone still reports (atom, lease) as its work.
pub(crate) type StillReported<'a> = dyn Fn(&Atom, Option<LeaseId>) -> bool + 'a;

/// One revoke waiting to be obeyed.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub(crate) struct PendingRevoke {
    /// The lease revoked, when there was one.
    pub(crate) lease: Option<LeaseId>,
    /// When it was first sent.
    pub(crate) since: Timestamp,
}

/// A drone's revokes by atom.
///
/// It is delivery bookkeeping: it never changes an output or a scheduling decision, only what a
/// reply repeats. So it stays out of the digest, which covers what decides: a stale report (which
/// records a revoke) still leaves the digest unchanged as promise 3's test demands, golden logs
/// replay to the same digests, and snapshots written before it existed keep verifying. Invariant
/// 15 checks it after every step instead.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct RevokeBox(pub(crate) BTreeMap<Atom, PendingRevoke>);

impl std::hash::Hash for RevokeBox {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl RevokeBox {
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records a revoke; a repeat of one already pending keeps its first time.
    pub(crate) fn add(&mut self, atom: &Atom, lease: Option<LeaseId>, now: Timestamp) {
        self.0
            .entry(atom.clone())
            .and_modify(|p| p.lease = lease)
            .or_insert(PendingRevoke { lease, since: now });
        while self.0.len() > MAX_PENDING {
            let oldest = self
                .0
                .iter()
                .min_by_key(|(a, p)| (p.since, (*a).clone()))
                .map(|(a, _)| a.clone());
            match oldest {
                Some(a) => self.0.remove(&a),
                None => break,
            };
        }
    }

    /// The drone was given `atom` again: an old revoke of it must not stop the new build.
    pub(crate) fn clear(&mut self, atom: &Atom) {
        self.0.remove(atom);
    }

    /// Forgets what has run its time and, when the drone said what it works on (`still` is
    /// `Some`), what it no longer reports.
    pub(crate) fn settle(&mut self, now: Timestamp, still: Option<&StillReported<'_>>) {
        self.0.retain(|atom, p| {
            now.since(p.since) < REVOKE_REPEAT_MS && still.is_none_or(|s| s(atom, p.lease))
        });
    }

    /// The atoms to repeat at `now`, in order.
    pub(crate) fn pending(&self, now: Timestamp) -> impl Iterator<Item = &Atom> + '_ {
        self.0
            .iter()
            .filter(move |(_, p)| now.since(p.since) < REVOKE_REPEAT_MS)
            .map(|(a, _)| a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn atom(s: &str) -> Atom {
        Atom::parse(s).expect("atom")
    }

    #[test]
    fn a_revoke_is_repeated_until_the_drone_stops_reporting_it_or_its_time_runs_out() {
        let mut b = RevokeBox::default();
        let (a, c) = (atom("=dev-libs/a-1"), atom("=dev-libs/c-1"));
        b.add(&a, Some(LeaseId(7)), Timestamp(1_000));
        b.add(&c, None, Timestamp(2_000));
        // A heartbeat that says nothing about its work keeps both.
        b.settle(Timestamp(3_000), None);
        assert_eq!(b.pending(Timestamp(3_000)).count(), 2);
        // One that still lists lease 7 but not c: c was stopped.
        let still = |x: &Atom, l: Option<LeaseId>| *x == a && l == Some(LeaseId(7));
        b.settle(Timestamp(4_000), Some(&still));
        assert_eq!(b.pending(Timestamp(4_000)).collect::<Vec<_>>(), vec![&a]);
        // An hour after it was first sent, it is no longer repeated, and then forgotten.
        let late = Timestamp(1_000 + REVOKE_REPEAT_MS);
        assert_eq!(b.pending(late).count(), 0);
        b.settle(late, None);
        assert!(b.is_empty());
    }

    #[test]
    fn a_new_assignment_of_the_atom_clears_its_revoke_and_the_box_is_bounded() {
        let mut b = RevokeBox::default();
        let a = atom("=dev-libs/a-1");
        b.add(&a, None, Timestamp(5));
        b.add(&a, Some(LeaseId(3)), Timestamp(9));
        assert_eq!(b.0[&a].since, Timestamp(5), "a repeat keeps its first time");
        b.clear(&a);
        assert!(b.is_empty());
        for i in 0..(MAX_PENDING as u64 + 10) {
            b.add(&atom(&format!("=dev-libs/p{i}-1")), None, Timestamp(i));
        }
        assert_eq!(b.0.len(), MAX_PENDING);
        assert!(
            !b.0.contains_key(&atom("=dev-libs/p0-1")),
            "the oldest goes first"
        );
    }
}
