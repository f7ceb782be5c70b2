//! Atomic write batches and their encoding, which is also the payload of a WAL record.
//!
//! Byte layout (`docs/format.md`, "Batch"):
//!
//! ```text
//! batch := first_seqno: u64 | count: u32 | op * count
//! op    := kind: u8 (0 = delete, 1 = put) | key_len: varint | key | [value_len: varint | value]
//! ```
//!
//! Op `i` of a batch gets sequence number `first_seqno + i`. A WAL record holds one batch
//! (the writes of one commit group, concatenated), so a batch is applied in full or not at all.
#![deny(clippy::indexing_slicing)]

use bytes::Bytes;

use crate::coding::{Reader, put_len_prefixed, put_u32, put_u64, varint_len};
use crate::error::{Corrupt, Error};
use crate::key::Kind;
use crate::limits::{MAX_BATCH_BYTES, MAX_KEY_LEN, MAX_VALUE_LEN};
use crate::seqno::{MAX_SEQNO, SeqNo};

/// Size of the batch header (first seqno and count).
pub const BATCH_HEADER_LEN: usize = 12;

/// A group of puts and deletes applied atomically by [`Db::write`](crate::Db::write).
///
/// After any crash, either every operation of a batch is visible or none is. Operations are
/// applied in order, each with its own sequence number, so a later put of the same key wins.
///
/// A batch may carry preconditions ([`WriteBatch::expect_version`]): the write then succeeds
/// only if every named key still has the expected version, checked atomically with the write.
///
/// Keys and values over the size limits are recorded as an error that
/// [`Db::write`](crate::Db::write) returns without applying anything.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let db = strata::Db::open(dir.path())?;
/// let mut batch = strata::WriteBatch::new();
/// batch.put("a", "1").put("b", "2").delete("c");
/// db.write(batch)?;
/// assert_eq!(db.get("b")?.as_deref(), Some(&b"2"[..]));
/// # Ok::<_, strata::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct WriteBatch {
    ops: Vec<u8>,
    count: u32,
    preconditions: Vec<(Bytes, Option<SeqNo>)>,
    invalid: Option<Error>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> WriteBatch {
        WriteBatch::default()
    }

    fn check(&mut self, key: &[u8], value: Option<&[u8]>) -> bool {
        if self.invalid.is_some() {
            return false;
        }
        if key.len() > MAX_KEY_LEN {
            self.invalid = Some(Error::KeyTooLarge {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
            return false;
        }
        if let Some(v) = value
            && v.len() > MAX_VALUE_LEN
        {
            self.invalid = Some(Error::ValueTooLarge {
                len: v.len(),
                max: MAX_VALUE_LEN,
            });
            return false;
        }
        let added = 1
            + varint_len(key.len() as u64)
            + key.len()
            + value.map_or(0, |v| varint_len(v.len() as u64) + v.len());
        if self.ops.len() + added + BATCH_HEADER_LEN > MAX_BATCH_BYTES {
            self.invalid = Some(Error::BatchTooLarge {
                len: self.ops.len() + added + BATCH_HEADER_LEN,
                max: MAX_BATCH_BYTES,
            });
            return false;
        }
        true
    }

    /// Adds a put of `value` under `key`.
    pub fn put(&mut self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> &mut Self {
        let (key, value) = (key.as_ref(), value.as_ref());
        if self.check(key, Some(value)) {
            // Kind byte, two varint lengths of at most 5 bytes, key and value: one growth.
            self.ops.reserve(11 + key.len() + value.len());
            self.ops.push(Kind::Put as u8);
            put_len_prefixed(&mut self.ops, key);
            put_len_prefixed(&mut self.ops, value);
            self.count += 1;
        }
        self
    }

    /// Adds a delete (a tombstone, which has a version of its own) of `key`.
    pub fn delete(&mut self, key: impl AsRef<[u8]>) -> &mut Self {
        let key = key.as_ref();
        if self.check(key, None) {
            self.ops.push(Kind::Delete as u8);
            put_len_prefixed(&mut self.ops, key);
            self.count += 1;
        }
        self
    }

    /// Makes the batch conditional: it applies only if `key`'s current version is `expected`
    /// (`None` = the key is absent or deleted). Otherwise [`Db::write`](crate::Db::write) fails
    /// with [`Error::Conflict`] and nothing is written.
    pub fn expect_version(&mut self, key: impl AsRef<[u8]>, expected: Option<SeqNo>) -> &mut Self {
        self.preconditions
            .push((Bytes::copy_from_slice(key.as_ref()), expected));
        self
    }

    /// Number of puts and deletes.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the batch has no puts or deletes.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        BATCH_HEADER_LEN + self.ops.len()
    }

    /// Removes every operation and precondition.
    pub fn clear(&mut self) {
        self.ops.clear();
        self.count = 0;
        self.preconditions.clear();
        self.invalid = None;
    }

    pub(crate) fn ops(&self) -> &[u8] {
        &self.ops
    }

    pub(crate) fn count(&self) -> u32 {
        self.count
    }

    pub(crate) fn preconditions(&self) -> &[(Bytes, Option<SeqNo>)] {
        &self.preconditions
    }

    pub(crate) fn take_invalid(&mut self) -> Option<Error> {
        self.invalid.take()
    }
}

/// Appends a batch header to `dst`.
pub fn put_header(dst: &mut Vec<u8>, first_seq: u64, count: u32) {
    put_u64(dst, first_seq);
    put_u32(dst, count);
}

/// One decoded operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op<'a> {
    /// Put or delete.
    pub kind: Kind,
    /// The key.
    pub key: &'a [u8],
    /// The value (empty for deletes).
    pub value: &'a [u8],
}

/// A decoded batch: header fields and an iterator over its operations.
#[derive(Debug, Clone)]
pub struct BatchView<'a> {
    /// Sequence number of the first op.
    pub first_seq: u64,
    /// Number of ops the header announces.
    pub count: u32,
    ops: Reader<'a>,
}

impl<'a> BatchView<'a> {
    /// Decodes the header of `buf`; `base` is the file offset of `buf[0]` for error reports.
    pub fn new(buf: &'a [u8], base: u64) -> Result<BatchView<'a>, Corrupt> {
        let mut r = Reader::new(buf, base);
        let first_seq = r.u64("batch seqno")?;
        let count = r.u32("batch count")?;
        // Each op takes at least two bytes, so a count beyond that is impossible.
        if count as usize > r.remaining() / 2 + 1 {
            return Err(r.corrupt(format!("batch count {count} exceeds its bytes")));
        }
        // Seqnos start at 1 and must fit the 56 bits of an internal-key trailer.
        let last = first_seq.checked_add(u64::from(count).saturating_sub(1));
        if count > 0 && (first_seq == 0 || last.is_none_or(|l| l > MAX_SEQNO)) {
            return Err(Corrupt::new(
                base,
                format!("batch seqnos {first_seq}+{count} out of range"),
            ));
        }
        Ok(BatchView {
            first_seq,
            count,
            ops: r,
        })
    }

    /// Decodes every op, checking that exactly `count` ops fill the buffer.
    pub fn ops(&self) -> Result<Vec<Op<'a>>, Corrupt> {
        let mut r = self.ops.clone();
        let mut out = Vec::with_capacity(self.count as usize);
        for _ in 0..self.count {
            let kind =
                Kind::from_u8(r.u8("op kind")?).ok_or_else(|| r.corrupt("unknown op kind"))?;
            let key = r.len_prefixed(MAX_KEY_LEN, "key")?;
            let value = match kind {
                Kind::Put => r.len_prefixed(MAX_VALUE_LEN, "value")?,
                Kind::Delete => &[],
            };
            out.push(Op { kind, key, value });
        }
        if !r.is_empty() {
            return Err(r.corrupt("trailing bytes after the batch's ops"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(b: &WriteBatch, first: u64) -> Vec<u8> {
        let mut v = Vec::new();
        put_header(&mut v, first, b.count());
        v.extend_from_slice(b.ops());
        v
    }

    #[test]
    fn ops_round_trip_in_order() {
        let mut b = WriteBatch::new();
        b.put("k1", "v1")
            .delete("k2")
            .put("", "")
            .put("k1", vec![0u8; 1000]);
        assert_eq!(b.len(), 4);
        let buf = encode(&b, 42);
        assert_eq!(buf.len(), b.encoded_len());
        let view = BatchView::new(&buf, 0).unwrap();
        assert_eq!((view.first_seq, view.count), (42, 4));
        let ops = view.ops().unwrap();
        assert_eq!(
            ops[0],
            Op {
                kind: Kind::Put,
                key: b"k1",
                value: b"v1"
            }
        );
        assert_eq!(
            ops[1],
            Op {
                kind: Kind::Delete,
                key: b"k2",
                value: b""
            }
        );
        assert_eq!(ops[2].key, b"");
        assert_eq!(ops[3].value.len(), 1000);
    }

    #[test]
    fn oversized_keys_poison_the_batch_instead_of_panicking() {
        let mut b = WriteBatch::new();
        b.put(vec![0u8; MAX_KEY_LEN + 1], "v").put("ok", "v");
        assert!(matches!(b.take_invalid(), Some(Error::KeyTooLarge { .. })));
        assert!(b.is_empty());
    }

    #[test]
    fn corrupt_batches_are_rejected() {
        let mut b = WriteBatch::new();
        b.put("key", "value").delete("x");
        let buf = encode(&b, 1);
        for cut in 0..buf.len() {
            let ok = BatchView::new(&buf[..cut], 0).and_then(|v| v.ops()).is_ok();
            assert!(!ok, "truncation at {cut} accepted");
        }
        let mut bad = buf.clone();
        bad[12] = 7; // unknown kind
        assert!(BatchView::new(&bad, 0).unwrap().ops().is_err());
        let mut extra = buf.clone();
        extra.push(0);
        assert!(BatchView::new(&extra, 0).unwrap().ops().is_err());
        let mut huge = buf;
        huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(BatchView::new(&huge, 0).is_err());
    }

    #[test]
    fn seqnos_outside_the_valid_range_are_corruption() {
        let mut b = WriteBatch::new();
        b.put("a", "1").put("b", "2");
        // Seqno 0 is never written: a batch starting there would make replay compute
        // `first - 1` below zero.
        assert!(BatchView::new(&encode(&b, 0), 0).is_err());
        // The last op's seqno must fit the 56-bit trailer.
        assert!(BatchView::new(&encode(&b, MAX_SEQNO), 0).is_err());
        assert!(BatchView::new(&encode(&b, u64::MAX), 0).is_err());
        assert!(BatchView::new(&encode(&b, MAX_SEQNO - 1), 0).is_ok());
        assert!(BatchView::new(&encode(&b, 1), 0).is_ok());
    }
}
