//! Seeded byte flips, truncations and splices of a corpus file: the stand-in
//! for cargo-fuzz that `cargo test` can afford, shared by every fuzz target's
//! corpus test.

/// A deterministic mutator (xorshift64), so a failing case replays.
pub(crate) struct Mutator {
    seed: u64,
}

impl Mutator {
    pub(crate) fn new(seed: u64) -> Mutator {
        Mutator { seed }
    }

    fn next(&mut self) -> u64 {
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        self.seed
    }

    /// `orig` with one to four mutations; `orig` must not be empty.
    pub(crate) fn mutate(&mut self, orig: &[u8]) -> Vec<u8> {
        let mut data = orig.to_vec();
        for _ in 0..(1 + self.next() % 4) {
            let at = (self.next() % data.len().max(1) as u64) as usize;
            match self.next() % 4 {
                0 => data[at] ^= 1 << (self.next() % 8),
                1 => data[at] = self.next() as u8,
                2 => data.truncate(at.max(1)),
                _ => {
                    let len = (self.next() % 64) as usize;
                    let from = (self.next() % orig.len() as u64) as usize;
                    let end = (from + len).min(orig.len());
                    let at = at.min(data.len());
                    data.splice(at..at, orig[from..end].to_vec());
                }
            }
            if data.is_empty() {
                break;
            }
        }
        data
    }
}
