//! A hash map for the analyses' small integer keys (class, runs and
//! decision ids), looked up once per pair of peers: the standard
//! library's SipHash, built to resist hash flooding by untrusted keys,
//! costs more than the rest of such a lookup. These keys are numbers the
//! analyses assign themselves, never input text, so a multiplicative hash
//! (the one rustc uses, `FxHasher`) is enough. Iteration order is never
//! output.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// A [`HashMap`] with [`FastHasher`].
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

/// Rotate, xor, multiply by a large odd constant, per machine word.
#[derive(Clone, Copy, Default)]
pub struct FastHasher {
    hash: u64,
}

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    fn add(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for chunk in &mut chunks {
            self.add(u64::from_le_bytes(chunk.try_into().expect("eight bytes")));
        }
        for &b in chunks.remainder() {
            self.add(u64::from(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }

    fn finish(&self) -> u64 {
        self.hash
    }
}

#[cfg(test)]
mod tests {
    use super::FastMap;

    #[test]
    fn keys_are_found_and_told_apart() {
        let mut map: FastMap<(u32, Option<u32>), usize> = FastMap::default();
        for a in 0..200u32 {
            for b in [None, Some(a), Some(a + 1)] {
                let n = map.len();
                map.insert((a, b), n);
            }
        }
        assert_eq!(map.len(), 600);
        assert_eq!(map[&(7, Some(8))], 7 * 3 + 2);
        assert!(!map.contains_key(&(7, Some(9))));
    }
}
