//! A stable digest of the whole state, for determinism checks and snapshot
//! verification (the hash itself is in `stable_hash.rs`).

use crate::stable_hash::stable_hash;
use crate::swarm::Swarm;

impl Swarm {
    /// A stable hash of the whole state: equal states, equal digests, across
    /// processes and restores.
    pub fn digest(&self) -> u64 {
        stable_hash(&self.st)
    }
}
