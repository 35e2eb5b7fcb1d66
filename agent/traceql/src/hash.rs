//! A small fast hasher for in-memory maps keyed by ids, symbols and strings (not DoS-hardened:
//! keys are the store's own data): the store's maps and row-group blooms, and the series and
//! values of TraceQL metrics.
use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// Multiply-rotate hasher in the style of rustc's FxHash.
#[derive(Default, Clone, Copy)]
pub struct FastHasher(u64);

const K: u64 = 0xf135_7aea_2e62_a9c5;

impl FastHasher {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(26) ^ w).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn finish(&self) -> u64 {
        self.0.rotate_left(20)
    }

    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut a = [0u8; 8];
            a.copy_from_slice(c);
            self.add(u64::from_le_bytes(a));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut a = [0u8; 8];
            a[..rest.len()].copy_from_slice(rest);
            self.add(u64::from_le_bytes(a) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

/// A `HashMap` with the fast hasher.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_works_with_strings_and_ids() {
        let mut m: FastMap<Box<str>, u32> = FastMap::default();
        m.insert("a".into(), 1);
        m.insert("abcdefghij".into(), 2);
        assert_eq!(m.get("a"), Some(&1));
        assert_eq!(m.get("abcdefghij"), Some(&2));
        assert_eq!(m.get(""), None);
        let mut ids: FastMap<[u8; 16], u8> = FastMap::default();
        for i in 0..=255u8 {
            ids.insert([i; 16], i);
        }
        assert_eq!(ids.len(), 256);
        assert_eq!(ids[&[7; 16]], 7);
    }
}
