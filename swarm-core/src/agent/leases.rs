//! What the agent remembers about leases it no longer holds or never held: the ones it finished
//! with (so a late listing is neither adopted, started again nor taken for an orphan), and the
//! unknown ones the server keeps listing (orphans once listed often enough). A lease it ended
//! without a word to the server (revoked, or stopped unasked) is never started again, but counts
//! as unknown while listed: had the revoke been meant for an older lease of the package, the server
//! would hold it on this drone, started and never reclaimed, until the drone went offline.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many ended leases are remembered.
const REMEMBERED_ENDS: usize = 512;

/// A server listing of an unknown lease this many times in a row makes it an orphan.
const ORPHAN_AFTER_LISTINGS: u32 = 2;

/// Ended leases, most recent last (and which of them ended unsaid), and unknown listed ones with
/// their listings in a row.
#[derive(Clone, Debug, Default)]
pub(super) struct LeaseMemory {
    ended: VecDeque<u64>,
    unsaid: BTreeSet<u64>,
    listed_unknown: BTreeMap<u64, (String, u32)>,
}

impl LeaseMemory {
    /// Whether the agent finished with `lease`.
    pub(super) fn ended(&self, lease: u64) -> bool {
        self.ended.contains(&lease)
    }

    /// Whether the agent ended `lease` without telling the server.
    pub(super) fn unsaid(&self, lease: u64) -> bool {
        self.unsaid.contains(&lease)
    }

    /// Remembers `lease` as finished with, the server told (or the lease handed back); it is no
    /// longer a candidate orphan.
    pub(super) fn end(&mut self, lease: u64) {
        self.listed_unknown.remove(&lease);
        self.unsaid.remove(&lease);
        if !self.ended.contains(&lease) {
            self.ended.push_back(lease);
            while self.ended.len() > REMEMBERED_ENDS {
                if let Some(old) = self.ended.pop_front() {
                    self.unsaid.remove(&old);
                }
            }
        }
    }

    /// Remembers `lease` as finished with, the server not told: a listing still counts.
    pub(super) fn end_unsaid(&mut self, lease: u64) {
        // `end` keeps `lease`: it trims the oldest ends, and `lease` is the newest.
        self.end(lease);
        self.unsaid.insert(lease);
    }

    /// A job took `lease`: it is known now.
    pub(super) fn known(&mut self, lease: u64) {
        self.listed_unknown.remove(&lease);
    }

    /// Counts one more listing of each unknown lease and forgets those no longer listed.
    pub(super) fn listed(&mut self, unknown: &[(u64, String)], seen: &BTreeSet<u64>) {
        for (lease, package) in unknown {
            let entry = self
                .listed_unknown
                .entry(*lease)
                .or_insert((package.clone(), 0));
            entry.1 += 1;
        }
        self.listed_unknown.retain(|lease, _| seen.contains(lease));
    }

    /// Unknown leases listed often enough to be handed back, with their package.
    pub(super) fn orphans(&self) -> impl Iterator<Item = (u64, &str)> {
        self.listed_unknown
            .iter()
            .filter(|(_, (_, n))| *n >= ORPHAN_AFTER_LISTINGS)
            .map(|(l, (p, _))| (*l, p.as_str()))
    }
}
