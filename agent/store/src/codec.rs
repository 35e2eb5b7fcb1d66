//! Tiny binary codec for the store's own files: varints, zigzag, length-prefixed bytes.

/// Appends primitive values to a byte buffer.
#[derive(Debug, Default)]
pub struct Enc {
    pub buf: Vec<u8>,
}

impl Enc {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }

    pub fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    pub fn zigzag(&mut self, v: i64) {
        self.varint(((v << 1) ^ (v >> 63)) as u64);
    }

    pub fn u64_le(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_le_bytes());
    }

    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }
}

/// Error for any malformed or truncated input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed data at byte {0}")]
pub struct DecodeError(pub usize);

/// Reads primitive values from a byte slice.
#[derive(Debug)]
pub struct Dec<'a> {
    pub buf: &'a [u8],
    pub pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    fn err(&self) -> DecodeError {
        DecodeError(self.pos)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        let b = *self.buf.get(self.pos).ok_or_else(|| self.err())?;
        self.pos += 1;
        Ok(b)
    }

    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err())
    }

    pub fn varint_u32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.varint()?).map_err(|_| self.err())
    }

    /// A varint used as an element count: every element the store encodes takes at least one
    /// byte, so a count above the remaining input is corrupt (and must not size an allocation).
    pub fn len(&mut self) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        let rest = (self.buf.len() - self.pos.min(self.buf.len())) as u64;
        if v > rest {
            return Err(self.err());
        }
        Ok(v as usize)
    }

    pub fn zigzag(&mut self) -> Result<i64, DecodeError> {
        let v = self.varint()?;
        Ok(((v >> 1) as i64) ^ -((v & 1) as i64))
    }

    pub fn u64_le(&mut self) -> Result<u64, DecodeError> {
        let b = self.raw(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    pub fn raw(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or_else(|| self.err())?;
        let s = self.buf.get(self.pos..end).ok_or_else(|| self.err())?;
        self.pos = end;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.raw(N)?);
        Ok(a)
    }

    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| self.err())?;
        self.raw(n)
    }

    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let p = self.pos;
        std::str::from_utf8(self.bytes()?).map_err(|_| DecodeError(p))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case::zero(0)]
    #[case::one_byte(127)]
    #[case::two_bytes(128)]
    #[case::max(u64::MAX)]
    fn varint_roundtrip(#[case] v: u64) {
        let mut e = Enc::default();
        e.varint(v);
        assert_eq!(Dec::new(&e.buf).varint(), Ok(v));
    }

    #[rstest]
    #[case::zero(0)]
    #[case::neg(-1)]
    #[case::min(i64::MIN)]
    #[case::max(i64::MAX)]
    fn zigzag_roundtrip(#[case] v: i64) {
        let mut e = Enc::default();
        e.zigzag(v);
        assert_eq!(Dec::new(&e.buf).zigzag(), Ok(v));
    }

    #[rstest]
    #[case::empty(&[][..])]
    #[case::unterminated(&[0x80, 0x80][..])]
    #[case::too_long(&[0xff; 11][..])]
    fn varint_garbage(#[case] input: &[u8]) {
        assert!(Dec::new(input).varint().is_err());
    }

    #[rstest]
    #[case::truncated_bytes(&[5, 1, 2][..])]
    #[case::huge_len(&[0xff, 0xff, 0xff, 0xff, 0x0f][..])]
    fn bytes_truncated(#[case] input: &[u8]) {
        assert!(Dec::new(input).bytes().is_err());
    }

    #[test]
    fn strings_and_raw() {
        let mut e = Enc::default();
        e.bytes(b"hello");
        e.u64_le(42);
        let mut d = Dec::new(&e.buf);
        assert_eq!(d.str(), Ok("hello"));
        assert_eq!(d.u64_le(), Ok(42));
        assert!(d.is_empty());
    }
}
