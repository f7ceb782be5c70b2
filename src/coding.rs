//! Little-endian fixed-width integers and LEB128 varints.
//!
//! Writers append to a `Vec<u8>`. Readers work through [`Reader`], a cursor over an
//! untrusted byte slice: every read is bounds-checked and returns [`Corrupt`] instead of
//! panicking, and length-prefixed slices are checked against the bytes that remain before
//! anything is allocated.
#![deny(clippy::indexing_slicing)]

use crate::error::Corrupt;

/// Appends `v` as 4 little-endian bytes.
pub fn put_u32(dst: &mut Vec<u8>, v: u32) {
    dst.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as 8 little-endian bytes.
pub fn put_u64(dst: &mut Vec<u8>, v: u64) {
    dst.extend_from_slice(&v.to_le_bytes());
}

/// Appends `v` as an unsigned LEB128 varint (1 to 10 bytes).
pub fn put_varint(dst: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        dst.push((v as u8) | 0x80);
        v >>= 7;
    }
    dst.push(v as u8);
}

/// Appends a varint length followed by the bytes.
pub fn put_len_prefixed(dst: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(dst, bytes.len() as u64);
    dst.extend_from_slice(bytes);
}

/// Number of bytes [`put_varint`] writes for `v`.
pub fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Reads a little-endian `u32` at `pos`, if the slice is long enough.
pub fn get_u32(src: &[u8], pos: usize) -> Option<u32> {
    let b = src.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Reads a little-endian `u64` at `pos`, if the slice is long enough.
pub fn get_u64(src: &[u8], pos: usize) -> Option<u64> {
    let b = src.get(pos..pos.checked_add(8)?)?;
    Some(u64::from_le_bytes(b.try_into().ok()?))
}

/// Decodes a varint at the start of `src`: `(value, bytes used)`.
///
/// Rejects truncated input and encodings longer than 10 bytes or overflowing 64 bits.
pub fn get_varint(src: &[u8]) -> Option<(u64, usize)> {
    let mut result: u64 = 0;
    for (i, &byte) in src.iter().enumerate().take(10) {
        let part = u64::from(byte & 0x7f);
        if i == 9 && byte > 1 {
            return None; // more than 64 bits
        }
        result |= part << (7 * i);
        if byte < 0x80 {
            return Some((result, i + 1));
        }
    }
    None
}

/// A bounds-checked cursor over untrusted bytes.
///
/// `base` is the file offset of `buf[0]`, so errors name the absolute position.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    base: u64,
}

impl<'a> Reader<'a> {
    /// A reader over `buf`, whose first byte sits at file offset `base`.
    pub fn new(buf: &'a [u8], base: u64) -> Self {
        Self { buf, pos: 0, base }
    }

    /// Bytes not yet consumed.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Current position relative to the start of `buf`.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// A corruption error at the current position.
    pub fn corrupt(&self, reason: impl Into<String>) -> Corrupt {
        Corrupt::new(self.base + self.pos as u64, reason)
    }

    /// Reads one byte.
    pub fn u8(&mut self, what: &str) -> Result<u8, Corrupt> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or_else(|| self.corrupt(format!("truncated {what}")))?;
        self.pos += 1;
        Ok(b)
    }

    /// Reads a little-endian `u32`.
    pub fn u32(&mut self, what: &str) -> Result<u32, Corrupt> {
        let v =
            get_u32(self.buf, self.pos).ok_or_else(|| self.corrupt(format!("truncated {what}")))?;
        self.pos += 4;
        Ok(v)
    }

    /// Reads a little-endian `u64`.
    pub fn u64(&mut self, what: &str) -> Result<u64, Corrupt> {
        let v =
            get_u64(self.buf, self.pos).ok_or_else(|| self.corrupt(format!("truncated {what}")))?;
        self.pos += 8;
        Ok(v)
    }

    /// Reads a varint.
    #[inline]
    pub fn varint(&mut self, what: &str) -> Result<u64, Corrupt> {
        // Lengths in blocks and batches are nearly always below 128: one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow(what)
    }

    #[cold]
    fn varint_slow(&mut self, what: &str) -> Result<u64, Corrupt> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let (v, n) =
            get_varint(rest).ok_or_else(|| self.corrupt(format!("bad varint in {what}")))?;
        self.pos += n;
        Ok(v)
    }

    /// Reads a varint that must fit in `u32`.
    #[inline]
    pub fn varint32(&mut self, what: &str) -> Result<u32, Corrupt> {
        let v = self.varint(what)?;
        u32::try_from(v).map_err(|_| self.corrupt(format!("{what} out of range")))
    }

    /// Reads exactly `n` bytes (checked against what remains, so no allocation is implied).
    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], Corrupt> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.corrupt(format!("{what} of {n} bytes runs past the end")))?;
        let s = self.buf.get(self.pos..end).unwrap_or_default();
        self.pos = end;
        Ok(s)
    }

    /// Reads a varint length, checks it against `max`, then reads that many bytes.
    pub fn len_prefixed(&mut self, max: usize, what: &str) -> Result<&'a [u8], Corrupt> {
        let n = self.varint(what)?;
        if n > max as u64 {
            return Err(self.corrupt(format!("{what} length {n} exceeds limit {max}")));
        }
        self.bytes(n as usize, what)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trips_at_every_width() {
        let mut values = vec![0u64, 1, 127, 128, 255, 300, 16_383, 16_384, u64::MAX];
        values.extend((0..64).map(|s| 1u64 << s));
        for v in values {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            assert_eq!(buf.len(), varint_len(v));
            assert_eq!(get_varint(&buf), Some((v, buf.len())));
        }
    }

    #[test]
    fn varint_rejects_truncation_and_overflow() {
        assert_eq!(get_varint(&[]), None);
        assert_eq!(get_varint(&[0x80]), None);
        assert_eq!(get_varint(&[0xff; 10]), None);
        // 10th byte may carry only the top bit of a u64.
        let mut over = vec![0xff; 9];
        over.push(0x02);
        assert_eq!(get_varint(&over), None);
    }

    #[test]
    fn reader_refuses_lengths_beyond_the_buffer() {
        let mut buf = Vec::new();
        put_varint(&mut buf, 1 << 40);
        buf.extend_from_slice(b"abc");
        let mut r = Reader::new(&buf, 100);
        let err = r.len_prefixed(usize::MAX, "key").unwrap_err();
        assert!(err.offset >= 100);
        let mut r = Reader::new(&buf, 0);
        assert!(r.len_prefixed(16, "key").is_err());
    }

    #[test]
    fn reader_reads_fixed_fields() {
        let mut buf = Vec::new();
        put_u32(&mut buf, 0xdead_beef);
        put_u64(&mut buf, 42);
        put_len_prefixed(&mut buf, b"hi");
        let mut r = Reader::new(&buf, 0);
        assert_eq!(r.u32("a").unwrap(), 0xdead_beef);
        assert_eq!(r.u64("b").unwrap(), 42);
        assert_eq!(r.len_prefixed(10, "c").unwrap(), b"hi");
        assert!(r.is_empty());
        assert!(r.u8("d").is_err());
    }
}
