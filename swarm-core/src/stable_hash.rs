//! FNV-1a 64 over a value's derived `Hash`: std's `DefaultHasher` may change
//! between Rust releases, and swarm-core takes no dependency beyond serde and
//! thiserror. Used for the state digest and build-environment digests, which
//! must match across processes, restores and versions.

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

/// The stable hash of `value`.
pub(crate) fn stable_hash<T: Hash + ?Sized>(value: &T) -> u64 {
    let mut h = Fnv1a(0xcbf2_9ce4_8422_2325);
    value.hash(&mut h);
    h.finish()
}
