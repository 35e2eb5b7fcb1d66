//! Bloom filter over trace ids, so by-id lookups skip blocks that cannot hold the trace.
use super::super::{
    codec::{Dec, DecodeError, Enc},
    ids::TraceId,
};

/// A bloom filter with `k` probes over `bits`.
#[derive(Debug, Clone, PartialEq)]
pub struct Bloom {
    k: u32,
    bits: Vec<u64>,
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hashes(id: &TraceId) -> (u64, u64) {
    let mut a = [0u8; 8];
    let mut b = [0u8; 8];
    a.copy_from_slice(&id[..8]);
    b.copy_from_slice(&id[8..]);
    let h1 = mix(u64::from_le_bytes(a) ^ mix(u64::from_le_bytes(b)));
    let h2 = mix(h1 ^ 0x9e37_79b9_7f4a_7c15) | 1;
    (h1, h2)
}

/// A bloom key for a string (two independent 64-bit hashes).
pub fn str_key(s: &str) -> TraceId {
    use std::hash::Hasher;
    let mut a = super::super::hash::FastHasher::default();
    a.write(s.as_bytes());
    let mut b = super::super::hash::FastHasher::default();
    b.write_u64(0x5bd1_e995);
    b.write(s.as_bytes());
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&a.finish().to_le_bytes());
    k[8..].copy_from_slice(&b.finish().to_le_bytes());
    k
}

impl Bloom {
    /// Sized for `n` ids at a ~1% false-positive rate.
    pub fn new(n: usize) -> Self {
        let nbits = ((n.max(1) as f64) * 9.6).ceil() as u64;
        let words = nbits.div_ceil(64).max(1) as usize;
        Self {
            k: 7,
            bits: vec![0; words],
        }
    }

    fn nbits(&self) -> u64 {
        self.bits.len() as u64 * 64
    }

    pub fn insert(&mut self, id: &TraceId) {
        let (h1, h2) = hashes(id);
        let m = self.nbits();
        for i in 0..u64::from(self.k) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            self.bits[(bit / 64) as usize] |= 1 << (bit % 64);
        }
    }

    pub fn may_contain(&self, id: &TraceId) -> bool {
        let (h1, h2) = hashes(id);
        let m = self.nbits();
        (0..u64::from(self.k)).all(|i| {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % m;
            self.bits[(bit / 64) as usize] & (1 << (bit % 64)) != 0
        })
    }

    pub fn encode(&self, e: &mut Enc) {
        e.varint(u64::from(self.k));
        e.varint(self.bits.len() as u64);
        for w in &self.bits {
            e.u64_le(*w);
        }
    }

    pub fn decode(d: &mut Dec) -> Result<Self, DecodeError> {
        let k = d.varint_u32()?;
        let n = d.len()?;
        if n == 0 || k == 0 || k > 32 {
            return Err(DecodeError(d.pos));
        }
        let mut bits = Vec::with_capacity(n);
        for _ in 0..n {
            bits.push(d.u64_le()?);
        }
        Ok(Self { k, bits })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let ids: Vec<TraceId> = (0..10_000u32)
            .map(|i| {
                let mut id = [0u8; 16];
                id[12..].copy_from_slice(&i.to_be_bytes());
                id
            })
            .collect();
        let mut b = Bloom::new(ids.len());
        ids.iter().for_each(|i| b.insert(i));
        assert!(ids.iter().all(|i| b.may_contain(i)));
        let fp = (100_000u32..110_000)
            .filter(|i| {
                let mut id = [0u8; 16];
                id[12..].copy_from_slice(&i.to_be_bytes());
                b.may_contain(&id)
            })
            .count();
        assert!(fp < 300, "false positives: {fp}");
        let mut e = Enc::default();
        b.encode(&mut e);
        assert_eq!(Bloom::decode(&mut Dec::new(&e.buf)).unwrap(), b);
        assert!(Bloom::decode(&mut Dec::new(&[7, 0])).is_err());
    }
}
