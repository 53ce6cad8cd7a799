//! A stable digest of the whole state, for determinism checks and snapshot
//! verification. FNV-1a 64 over the derived `Hash` of the state: std's
//! `DefaultHasher` may change between Rust releases, and swarm-core takes no
//! dependency beyond serde and thiserror.

use crate::swarm::Swarm;
use std::hash::{Hash, Hasher};

struct Fnv1a(u64);

impl Hasher for Fnv1a {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

pub(crate) fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
    value.hash(&mut h);
    h.finish()
}

impl Swarm {
    /// A stable hash of the whole state: equal states, equal digests, across
    /// processes and restores.
    pub fn digest(&self) -> u64 {
        stable_hash(&self.st)
    }
}
