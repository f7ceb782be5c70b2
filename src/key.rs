//! Internal keys: a user key tagged with the sequence number and kind of the write.
//!
//! Byte layout (`docs/format.md`, "Internal key"):
//!
//! ```text
//! user_key bytes | trailer: u64 little-endian = seqno << 8 | kind
//! ```
//!
//! Ordering: user key ascending (bytewise), then trailer descending, so all versions of one
//! key are contiguous and the newest comes first. A lookup "as of seqno S" seeks to
//! `(key, S, KIND_SEEK)` and takes the first entry at or after it.
#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;

use bytes::Bytes;

use crate::seqno::SeqNo;

/// Size of the trailer appended to every user key.
pub const TRAILER_LEN: usize = 8;

/// What a write did to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Kind {
    /// A tombstone.
    Delete = 0,
    /// A value.
    Put = 1,
}

impl Kind {
    /// Decodes a kind byte; anything else is corruption.
    pub fn from_u8(b: u8) -> Option<Kind> {
        match b {
            0 => Some(Kind::Delete),
            1 => Some(Kind::Put),
            _ => None,
        }
    }
}

/// Kind byte used in seek targets: larger than every real kind, so a seek target sorts
/// before every entry with the same user key and seqno.
pub const KIND_SEEK: u8 = 0xff;

/// Packs a seqno and kind byte into a trailer.
pub fn trailer(seq: SeqNo, kind: u8) -> u64 {
    (seq.get() << 8) | u64::from(kind)
}

/// Appends the internal key for `(user_key, seq, kind)` to `dst`.
pub fn encode_into(dst: &mut Vec<u8>, user_key: &[u8], seq: SeqNo, kind: u8) {
    dst.reserve(user_key.len() + TRAILER_LEN);
    dst.extend_from_slice(user_key);
    dst.extend_from_slice(&trailer(seq, kind).to_le_bytes());
}

/// The internal key for `(user_key, seq, kind)`.
pub fn encode(user_key: &[u8], seq: SeqNo, kind: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(user_key.len() + TRAILER_LEN);
    encode_into(&mut v, user_key, seq, kind);
    v
}

/// Splits an internal key into user key and trailer. Keys shorter than the trailer have
/// no valid split; decoders reject them before they reach a comparator.
pub fn split(ikey: &[u8]) -> Option<(&[u8], u64)> {
    let cut = ikey.len().checked_sub(TRAILER_LEN)?;
    let (user, t) = ikey.split_at_checked(cut)?;
    Some((user, u64::from_le_bytes(t.try_into().ok()?)))
}

/// The user-key part (the whole slice if it is too short to carry a trailer).
pub fn user_key(ikey: &[u8]) -> &[u8] {
    split(ikey).map_or(ikey, |(u, _)| u)
}

/// A decoded internal key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parsed<'a> {
    /// The user key.
    pub user_key: &'a [u8],
    /// The write's sequence number.
    pub seq: u64,
    /// Put or delete.
    pub kind: Kind,
}

/// Decodes an internal key, rejecting short keys and unknown kinds.
pub fn parse(ikey: &[u8]) -> Option<Parsed<'_>> {
    let (user_key, t) = split(ikey)?;
    let kind = Kind::from_u8((t & 0xff) as u8)?;
    Some(Parsed {
        user_key,
        seq: t >> 8,
        kind,
    })
}

/// Compares two internal keys: user key ascending, then trailer descending.
#[inline]
pub fn compare(a: &[u8], b: &[u8]) -> Ordering {
    let (ua, ta) = split(a).unwrap_or((a, 0));
    let (ub, tb) = split(b).unwrap_or((b, 0));
    compare_bytes(ua, ub).then_with(|| tb.cmp(&ta))
}

/// Lexicographic byte order, as `<[u8]>::cmp`, but inline and eight bytes at a time: user
/// keys are short, and the call into the C library's `memcmp` costs more than the compare.
#[inline]
#[allow(clippy::big_endian_bytes)] // big-endian integers order like the bytes; nothing is stored
pub fn compare_bytes(a: &[u8], b: &[u8]) -> Ordering {
    let (mut x, mut y) = (a, b);
    while let (Some((cx, rx)), Some((cy, ry))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        if cx != cy {
            return u64::from_be_bytes(*cx).cmp(&u64::from_be_bytes(*cy));
        }
        (x, y) = (rx, ry);
    }
    for (p, q) in x.iter().zip(y) {
        if p != q {
            return p.cmp(q);
        }
    }
    x.len().cmp(&y.len())
}

/// Bytes of the user key kept inline in an [`InternalKey`].
const HEAD_LEN: usize = 16;

/// An owned internal key with the internal ordering; the memtable's key type.
///
/// The first 16 bytes of the user key (zero-padded), its length and the trailer are kept
/// inline, so that most comparisons during a skiplist search never touch the key's bytes
/// elsewhere in memory; only keys longer than 16 bytes with equal heads are compared in full.
#[derive(Debug, Clone)]
pub struct InternalKey {
    head: [u8; HEAD_LEN],
    user_len: usize,
    trailer: u64,
    bytes: Bytes,
}

impl InternalKey {
    /// Wraps an encoded internal key (at least [`TRAILER_LEN`] bytes; shorter input is treated
    /// as a user key with a zero trailer, which keeps the ordering total).
    pub fn new(bytes: Bytes) -> InternalKey {
        let (user, trailer) = split(&bytes).unwrap_or((&bytes[..], 0));
        let mut head = [0u8; HEAD_LEN];
        for (h, u) in head.iter_mut().zip(user) {
            *h = *u;
        }
        InternalKey {
            head,
            user_len: user.len(),
            trailer,
            bytes,
        }
    }

    /// The encoded internal key.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    fn user_key(&self) -> &[u8] {
        self.bytes.get(..self.user_len).unwrap_or_default()
    }
}

impl PartialEq for InternalKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for InternalKey {}

impl Ord for InternalKey {
    #[allow(clippy::big_endian_bytes)] // big-endian integers order like the bytes
    fn cmp(&self, other: &Self) -> Ordering {
        // Zero padding keeps the head order consistent with the order of the full keys
        // wherever the heads differ.
        // (Compared as big-endian integers: the same order as the bytes, without a call.)
        let (a, b) = (
            u128::from_be_bytes(self.head),
            u128::from_be_bytes(other.head),
        );
        let user = a.cmp(&b).then_with(|| {
            if self.user_len <= HEAD_LEN && other.user_len <= HEAD_LEN {
                self.user_len.cmp(&other.user_len)
            } else {
                compare_bytes(self.user_key(), other.user_key())
            }
        });
        user.then_with(|| other.trailer.cmp(&self.trailer))
    }
}

impl PartialOrd for InternalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// when no such string exists (the prefix is empty or all `0xff`).
pub fn prefix_successor(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut v = prefix.to_vec();
    while let Some(last) = v.pop() {
        if last != 0xff {
            v.push(last + 1);
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ik(k: &[u8], s: u64, kind: Kind) -> Vec<u8> {
        encode(k, SeqNo::new(s), kind as u8)
    }

    proptest::proptest! {
        #[test]
        fn compare_bytes_is_the_byte_order(
            a in proptest::collection::vec(0u8..4, 0..40),
            b in proptest::collection::vec(0u8..4, 0..40),
        ) {
            proptest::prop_assert_eq!(compare_bytes(&a, &b), a.cmp(&b));
            let pa = [&a[..], &b[..]].concat();
            proptest::prop_assert_eq!(compare_bytes(&pa, &a), pa.cmp(&a));
        }
    }

    #[test]
    fn newer_versions_sort_first_within_a_key() {
        assert_eq!(
            compare(&ik(b"a", 5, Kind::Put), &ik(b"a", 3, Kind::Put)),
            Ordering::Less
        );
        assert_eq!(
            compare(&ik(b"a", 1, Kind::Put), &ik(b"b", 9, Kind::Put)),
            Ordering::Less
        );
        // A prefix user key sorts before its extension regardless of the trailer bytes.
        assert_eq!(
            compare(&ik(b"a", 0, Kind::Put), &ik(b"ab", 9, Kind::Put)),
            Ordering::Less
        );
        let seek = encode(b"a", SeqNo::new(5), KIND_SEEK);
        assert_eq!(compare(&seek, &ik(b"a", 5, Kind::Put)), Ordering::Less);
        assert_eq!(compare(&seek, &ik(b"a", 6, Kind::Put)), Ordering::Greater);
    }

    #[test]
    fn parse_round_trips_and_rejects_garbage() {
        let k = ik(b"key", 77, Kind::Delete);
        let p = parse(&k).unwrap();
        assert_eq!((p.user_key, p.seq, p.kind), (&b"key"[..], 77, Kind::Delete));
        assert!(parse(b"short").is_none());
        let mut bad = k.clone();
        let n = bad.len();
        bad[n - 8] = 9; // unknown kind
        assert!(parse(&bad).is_none());
    }

    #[test]
    fn inline_heads_order_like_full_keys() {
        let users: Vec<&[u8]> = vec![
            b"",
            b"\0",
            b"a",
            b"a\0",
            b"a\0\0",
            b"ab",
            b"abcdefghijklmnop",
            b"abcdefghijklmnop\0",
            b"abcdefghijklmnopq",
            b"abcdefghijklmnopr",
            b"abcdefghijklmnoq",
            b"b",
            b"\xff\xff",
        ];
        let mut keys = Vec::new();
        for u in &users {
            for s in [1u64, 5, 9] {
                keys.push(ik(u, s, Kind::Put));
            }
        }
        for a in &keys {
            for b in &keys {
                let want = compare(a, b);
                let got = InternalKey::new(Bytes::copy_from_slice(a))
                    .cmp(&InternalKey::new(Bytes::copy_from_slice(b)));
                assert_eq!(got, want, "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn prefix_successor_handles_ff_bytes() {
        assert_eq!(prefix_successor(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_successor(b"a\xff"), Some(b"b".to_vec()));
        assert_eq!(prefix_successor(b"\xff\xff"), None);
        assert_eq!(prefix_successor(b""), None);
    }
}
