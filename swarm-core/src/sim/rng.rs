//! The simulator's one source of randomness: ChaCha8, seeded, named so its
//! output never changes under us. Probabilities are integer ratios.

use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A seeded PRNG with integer helpers.
#[derive(Clone, Debug)]
pub(crate) struct Rng(ChaCha8Rng);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(ChaCha8Rng::seed_from_u64(seed))
    }

    /// Uniform in `lo..hi` (`lo` if the range is empty).
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        lo + self.0.next_u64() % (hi - lo)
    }

    /// True with probability `num / den`.
    pub(crate) fn chance(&mut self, num: u64, den: u64) -> bool {
        num > 0 && self.range(0, den) < num
    }

    /// Uniform index below `n` (0 if `n` is 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        self.range(0, n as u64) as usize
    }
}
