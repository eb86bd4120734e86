//! The mutator: stacked byte-level edits of a corpus entry, driven by one
//! seeded RNG so that a run is reproducible from its seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Values that sit on the edges of size and count checks, little-endian at
/// 1, 2, 4 and 8 bytes.
const INTERESTING: [u64; 16] = [
    0,
    1,
    2,
    0x7f,
    0x80,
    0xff,
    0x100,
    0x7fff,
    0xffff,
    0x1_0000,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    i64::MAX as u64,
    u64::MAX,
];

pub struct Mutator {
    rng: StdRng,
    max_len: usize,
}

impl Mutator {
    pub fn new(seed: u64, max_len: usize) -> Self {
        Self { rng: StdRng::seed_from_u64(seed), max_len }
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { self.rng.random_range(0..n) }
    }

    /// A new input: `base` with 1 to 8 edits; `other` is a second corpus
    /// entry to splice from, `dictionary` tokens of the format.
    pub fn mutate(&mut self, base: &[u8], other: &[u8], dictionary: &[&[u8]]) -> Vec<u8> {
        let mut data = base.to_vec();
        let edits = 1 + self.below(8);
        for _ in 0..edits {
            self.edit(&mut data, other, dictionary);
        }
        data.truncate(self.max_len);
        data
    }

    fn edit(&mut self, data: &mut Vec<u8>, other: &[u8], dictionary: &[&[u8]]) {
        let len = data.len();
        match self.below(10) {
            0 if len > 0 => {
                let at = self.below(len);
                data[at] ^= 1 << self.below(8);
            }
            1 if len > 0 => {
                let at = self.below(len);
                data[at] = self.rng.random();
            }
            2 => {
                let at = self.below(len + 1);
                let n = 1 + self.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| self.rng.random()).collect();
                data.splice(at..at, bytes);
            }
            3 if len > 0 => {
                let at = self.below(len);
                let n = 1 + self.below((len - at).min(64));
                data.drain(at..at + n);
            }
            4 if len > 0 => {
                // Duplicate a range: repeated structures (array items, keys).
                let at = self.below(len);
                let n = 1 + self.below((len - at).min(256));
                let copy = data[at..at + n].to_vec();
                let to = self.below(len + 1);
                data.splice(to..to, copy);
            }
            5 if !other.is_empty() => {
                // Splice: the head of this input, the tail of another.
                let cut = self.below(len + 1);
                let from = self.below(other.len());
                data.truncate(cut);
                data.extend_from_slice(&other[from..]);
            }
            6 | 7 if len > 0 => {
                let value = INTERESTING[self.below(INTERESTING.len())];
                let width = [1, 2, 4, 8][self.below(4)];
                let at = self.below(len);
                let bytes = value.to_le_bytes();
                let n = width.min(len - at);
                data[at..at + n].copy_from_slice(&bytes[..n]);
            }
            8 if len >= 4 => {
                // Small arithmetic on a u32: off-by-one counts and lengths.
                let at = self.below(len - 3);
                let mut word = [0u8; 4];
                word.copy_from_slice(&data[at..at + 4]);
                let delta = self.below(33) as i64 - 16;
                let value = (u32::from_le_bytes(word) as i64 + delta) as u32;
                data[at..at + 4].copy_from_slice(&value.to_le_bytes());
            }
            _ if !dictionary.is_empty() => {
                let token = dictionary[self.below(dictionary.len())];
                let at = self.below(len + 1);
                if self.below(2) == 0 || at + token.len() > len {
                    data.splice(at..at, token.iter().copied());
                } else {
                    data[at..at + token.len()].copy_from_slice(token);
                }
            }
            _ => {
                let at = self.below(len + 1);
                data.insert(at, self.rng.random());
            }
        }
    }
}
