//! The memtable: a sorted, concurrent, in-memory map of internal keys to values.
//!
//! Built on `crossbeam_skiplist`'s lock-free skiplist, so readers and long-lived iterators
//! never block the writer. Every operation pins the epoch once and walks entries under that
//! one guard (no per-entry pinning or reference counting). Only the commit leader inserts. All versions of a key are kept (each write has
//! its own internal key); what survives a flush is decided by the retention rules.
//!
//! Each commit group is copied into a shared arena chunk (64 KiB, or the group's size if
//! larger) and the skiplist entries point into it, so inserting a write costs one skiplist
//! node and, every few hundred small writes, a new chunk. A chunk lives as long as any entry
//! or value handed out from it.
//!
//! A bloom filter over the user keys ([`KeyFilter`]) lets a point lookup of a key the
//! memtable does not hold skip the skiplist search, whose pointer chasing is the costliest
//! part of a read that misses. It is blocked: one key's bits lie in one 64-byte line, so a
//! probe costs one cache miss. Its size is fixed when the memtable is created, one bit per
//! eight bytes of memtable budget (about 25 bits per key with 100-byte values), and it is
//! not charged to the memtable's size.

use std::collections::VecDeque;
use std::ops::Bound;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use crossbeam_epoch as epoch;
use crossbeam_skiplist::base::SkipList;

use crate::batch::Op;
use crate::cursor::Cursor;
use crate::error::Result;
use crate::hash::hash64;
use crate::key::{self, InternalKey, KIND_SEEK, TRAILER_LEN};
use crate::lookup::Hit;
use crate::seqno::SeqNo;

/// A position in the memtable's map.
type MapEntry<'a, 'g> = crossbeam_skiplist::base::Entry<'a, 'g, InternalKey, Bytes>;

/// Bookkeeping bytes charged per entry on top of key and value (skiplist node, `Bytes`
/// handles).
const ENTRY_OVERHEAD: usize = 80;

/// One memtable.
#[derive(Debug)]
pub struct Memtable {
    map: SkipList<InternalKey, Bytes>,
    filter: KeyFilter,
    bytes: AtomicUsize,
    max_seq: AtomicU64,
    /// The WAL segment that holds this memtable's first write.
    first_segment: u64,
    /// Where the entries' bytes are copied; only the commit leader inserts, so the lock is
    /// never contended.
    arena: parking_lot::Mutex<BytesMut>,
}

/// Size of a fresh arena chunk.
const ARENA_CHUNK: usize = 64 << 10;

impl Memtable {
    /// An empty memtable whose writes start in WAL segment `first_segment`, sized for about
    /// `budget` bytes of entries (the size of its key filter depends on it).
    pub fn new(first_segment: u64, budget: usize) -> Memtable {
        Memtable {
            map: SkipList::new(epoch::default_collector().clone()),
            filter: KeyFilter::new(budget / 64),
            bytes: AtomicUsize::new(0),
            max_seq: AtomicU64::new(0),
            first_segment,
            arena: parking_lot::Mutex::new(BytesMut::new()),
        }
    }

    /// The WAL segment holding this memtable's first write.
    pub fn first_segment(&self) -> u64 {
        self.first_segment
    }

    /// Approximate memory use.
    pub fn approximate_bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Number of entries (versions).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing was inserted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The largest seqno inserted.
    pub fn max_seq(&self) -> u64 {
        self.max_seq.load(Ordering::Acquire)
    }

    /// Inserts `ops`, numbering them from `first_seq`.
    pub fn insert_ops(&self, first_seq: u64, ops: &[Op<'_>]) {
        let total: usize = ops
            .iter()
            .map(|op| op.key.len() + TRAILER_LEN + op.value.len())
            .sum();
        let buf = {
            let mut arena = self.arena.lock();
            if arena.capacity() - arena.len() < total {
                *arena = BytesMut::with_capacity(total.max(ARENA_CHUNK));
            }
            for (i, op) in ops.iter().enumerate() {
                let trailer = key::trailer(SeqNo::new(first_seq + i as u64), op.kind as u8);
                arena.extend_from_slice(op.key);
                arena.extend_from_slice(&trailer.to_le_bytes());
                arena.extend_from_slice(op.value);
            }
            arena.split().freeze()
        };
        // Filter bits go in before the entries, and both before the seqno that makes them
        // visible is published: a reader that can see a write also sees its bits.
        for op in ops {
            self.filter.insert(hash64(op.key));
        }
        let guard = &epoch::pin();
        let mut pos = 0;
        for op in ops {
            let klen = op.key.len() + TRAILER_LEN;
            let ikey = buf.slice(pos..pos + klen);
            let value = buf.slice(pos + klen..pos + klen + op.value.len());
            pos += klen + op.value.len();
            self.map
                .insert(InternalKey::new(ikey), value, guard)
                .release(guard);
        }
        let charged = total + ops.len() * ENTRY_OVERHEAD;
        self.bytes.fetch_add(charged, Ordering::Relaxed);
        if let Some(last) = (first_seq + ops.len() as u64).checked_sub(1) {
            self.max_seq.fetch_max(last, Ordering::AcqRel);
        }
    }

    /// The newest version of `user_key` with seqno at most `snap`; `hash` is
    /// [`hash64`] of `user_key`.
    pub fn get(&self, user_key: &[u8], hash: u64, snap: u64) -> Option<Hit> {
        if !self.filter.may_contain(hash) {
            return None;
        }
        let target = InternalKey::new(Bytes::from(key::encode(
            user_key,
            SeqNo::new(snap),
            KIND_SEEK,
        )));
        let guard = &epoch::pin();
        let entry = self.map.lower_bound(Bound::Included(&target), guard)?;
        let parsed = key::parse(entry.key().bytes())?;
        (parsed.user_key == user_key).then(|| Hit {
            seq: parsed.seq,
            kind: parsed.kind,
            value: entry.value().clone(),
        })
    }

    /// Every entry in internal order; used by flushes.
    pub fn iter(self: &Arc<Self>) -> impl Iterator<Item = (Bytes, Bytes)> + use<> {
        let mut c = self.cursor();
        c.seek_to_first();
        std::iter::from_fn(move || {
            let item = c.buf.front().cloned()?;
            c.next();
            Some(item)
        })
    }

    /// An owned cursor over this memtable.
    pub fn cursor(self: &Arc<Self>) -> MemCursor {
        MemCursor {
            mem: Arc::clone(self),
            buf: VecDeque::new(),
            forward: true,
            exhausted: true,
            chunk: FIRST_CHUNK,
        }
    }
}

/// Probes per key in the [`KeyFilter`].
const FILTER_PROBES: u32 = 6;

/// A blocked bloom filter over user-key hashes that readers query while the writer inserts.
///
/// Each key sets [`FILTER_PROBES`] bits inside one 512-bit block (eight words, one cache
/// line) chosen by the hash's high half; the bit positions come from 9-bit slices of a
/// second hash. Bits are only ever set, so a reader never misses a key whose insertion
/// happened before it (the caller orders that through the published seqno).
#[derive(Debug)]
struct KeyFilter {
    blocks: Box<[[AtomicU64; 8]]>,
}

impl KeyFilter {
    /// A filter of about `bytes` bytes (at least one block, a power of two of blocks).
    fn new(bytes: usize) -> KeyFilter {
        let n = (bytes / 64).clamp(1, 1 << 24).next_power_of_two();
        KeyFilter {
            blocks: (0..n).map(|_| Default::default()).collect(),
        }
    }

    /// The block of `hash` and its probes as (word, bit mask).
    fn locate(&self, hash: u64) -> (Option<&[AtomicU64; 8]>, impl Iterator<Item = (usize, u64)>) {
        let block = ((hash >> 32) as usize) & (self.blocks.len() - 1);
        let mut bits = hash.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let probes = (0..FILTER_PROBES).map(move |_| {
            let bit = (bits & 511) as usize;
            bits >>= 9;
            (bit / 64, 1u64 << (bit % 64))
        });
        (self.blocks.get(block), probes)
    }

    fn insert(&self, hash: u64) {
        let (Some(block), probes) = self.locate(hash) else {
            return;
        };
        for (word, mask) in probes {
            if let Some(w) = block.get(word) {
                w.fetch_or(mask, Ordering::Relaxed);
            }
        }
    }

    fn may_contain(&self, hash: u64) -> bool {
        let (Some(block), mut probes) = self.locate(hash) else {
            return true;
        };
        probes.all(|(word, mask)| {
            block
                .get(word)
                .is_none_or(|w| w.load(Ordering::Relaxed) & mask != 0)
        })
    }
}

/// Entries fetched by the first skiplist walk after a seek; each refill doubles it up to
/// [`MAX_CHUNK`], so short scans copy little and long scans re-seek rarely.
const FIRST_CHUNK: usize = 8;
const MAX_CHUNK: usize = 256;

/// An owned cursor over a memtable.
///
/// The skiplist's own iterators borrow the map, so this cursor copies a chunk of entries
/// (cheap `Bytes` handles) into a buffer and re-seeks past the last one when it runs dry.
#[derive(Debug)]
pub struct MemCursor {
    mem: Arc<Memtable>,
    /// `buf[0]` is the current entry.
    buf: VecDeque<(Bytes, Bytes)>,
    forward: bool,
    /// True when the map has nothing beyond the buffer in the current direction.
    exhausted: bool,
    /// Entries the next walk fetches.
    chunk: usize,
}

impl MemCursor {
    fn fill_forward(&mut self, from: Bound<&InternalKey>) {
        self.forward = true;
        let mem = Arc::clone(&self.mem);
        let guard = &epoch::pin();
        self.fill(mem.map.lower_bound(from, guard), |e| e.next());
    }

    /// Copies up to one chunk of entries into the buffer, starting at `first` and stepping
    /// with `step`.
    fn fill<'m, 'g>(
        &mut self,
        first: Option<MapEntry<'m, 'g>>,
        step: fn(&MapEntry<'m, 'g>) -> Option<MapEntry<'m, 'g>>,
    ) {
        let chunk = self.next_chunk();
        let mut entry = first;
        while let Some(e) = entry {
            if self.buf.len() == chunk {
                self.exhausted = false;
                return;
            }
            self.buf
                .push_back((e.key().bytes().clone(), e.value().clone()));
            entry = step(&e);
        }
        self.exhausted = true;
    }

    fn next_chunk(&mut self) -> usize {
        let n = self.chunk;
        self.chunk = (n * 2).min(MAX_CHUNK);
        n
    }

    fn fill_backward(&mut self, from: Bound<&InternalKey>) {
        self.forward = false;
        let mem = Arc::clone(&self.mem);
        let guard = &epoch::pin();
        self.fill(mem.map.upper_bound(from, guard), |e| e.prev());
    }

    fn advance(&mut self, forward: bool) {
        if self.forward != forward {
            // Direction change: re-seek around the current key.
            let Some((k, _)) = self.buf.front().cloned() else {
                return;
            };
            self.buf.clear();
            let k = InternalKey::new(k);
            if forward {
                self.fill_forward(Bound::Excluded(&k));
            } else {
                self.fill_backward(Bound::Excluded(&k));
            }
            return;
        }
        let Some((last, _)) = self.buf.pop_front() else {
            return;
        };
        if self.buf.is_empty() && !self.exhausted {
            let last = InternalKey::new(last);
            if forward {
                self.fill_forward(Bound::Excluded(&last));
            } else {
                self.fill_backward(Bound::Excluded(&last));
            }
        }
    }
}

impl Cursor for MemCursor {
    fn seek(&mut self, target: &[u8]) {
        self.buf.clear();
        self.chunk = FIRST_CHUNK;
        let t = InternalKey::new(Bytes::copy_from_slice(target));
        self.fill_forward(Bound::Included(&t));
    }

    fn seek_to_first(&mut self) {
        self.buf.clear();
        self.chunk = FIRST_CHUNK;
        self.fill_forward(Bound::Unbounded);
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        self.buf.clear();
        self.chunk = FIRST_CHUNK;
        let t = InternalKey::new(Bytes::copy_from_slice(target));
        self.fill_backward(Bound::Included(&t));
    }

    fn seek_to_last(&mut self) {
        self.buf.clear();
        self.chunk = FIRST_CHUNK;
        self.fill_backward(Bound::Unbounded);
    }

    fn next(&mut self) {
        self.advance(true);
    }

    fn prev(&mut self) {
        self.advance(false);
    }

    fn valid(&self) -> bool {
        !self.buf.is_empty()
    }

    fn key(&self) -> &[u8] {
        self.buf.front().map_or(&[][..], |(k, _)| &k[..])
    }

    fn value(&self) -> Bytes {
        self.buf.front().map(|(_, v)| v.clone()).unwrap_or_default()
    }

    fn value_ref(&self) -> &[u8] {
        self.buf.front().map_or(&[][..], |(_, v)| &v[..])
    }

    fn status(&self) -> Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::Kind;

    fn op<'a>(kind: Kind, key: &'a [u8], value: &'a [u8]) -> Op<'a> {
        Op { kind, key, value }
    }

    #[test]
    fn get_sees_the_newest_version_at_or_below_the_snapshot() {
        let m = Memtable::new(1, 1 << 20);
        m.insert_ops(
            1,
            &[op(Kind::Put, b"k", b"v1"), op(Kind::Put, b"other", b"x")],
        );
        m.insert_ops(3, &[op(Kind::Delete, b"k", b"")]);
        m.insert_ops(4, &[op(Kind::Put, b"k", b"v4")]);
        assert_eq!(
            m.get(b"k", hash64(b"k"), 1).unwrap().value,
            Bytes::from_static(b"v1")
        );
        assert_eq!(m.get(b"k", hash64(b"k"), 2).unwrap().seq, 1);
        assert_eq!(m.get(b"k", hash64(b"k"), 3).unwrap().kind, Kind::Delete);
        assert_eq!(
            m.get(b"k", hash64(b"k"), 100).unwrap().value,
            Bytes::from_static(b"v4")
        );
        assert!(m.get(b"k", hash64(b"k"), 0).is_none());
        assert!(m.get(b"j", hash64(b"j"), 100).is_none());
        assert_eq!(m.max_seq(), 4);
        assert_eq!(m.len(), 4);
    }

    #[test]
    fn the_key_filter_holds_every_inserted_key_and_rejects_most_others() {
        let f = KeyFilter::new(64 << 10); // 1024 blocks
        let keys: Vec<u64> = (0..10_000u64).map(|i| hash64(&i.to_le_bytes())).collect();
        for &h in &keys {
            f.insert(h);
        }
        assert!(keys.iter().all(|&h| f.may_contain(h)));
        let false_positives = (10_000..110_000u64)
            .filter(|i| f.may_contain(hash64(&i.to_le_bytes())))
            .count();
        // 52 bits per key and six probes: well under 1% in theory; 2% leaves room.
        assert!(
            false_positives < 2_000,
            "{false_positives} false positives in 100000"
        );
        // The smallest filter (one block) still answers correctly for what it holds.
        let tiny = KeyFilter::new(0);
        tiny.insert(keys[0]);
        assert!(tiny.may_contain(keys[0]));
    }

    #[test]
    fn a_key_the_memtable_lacks_is_answered_by_the_filter_alone() {
        let m = Memtable::new(1, 1 << 20);
        for i in 0..1000u32 {
            m.insert_ops(u64::from(i) + 1, &[op(Kind::Put, &i.to_le_bytes(), b"v")]);
        }
        for i in 0..1000u32 {
            let k = i.to_le_bytes();
            assert_eq!(m.get(&k, hash64(&k), 5000).unwrap().seq, u64::from(i) + 1);
        }
        let rejected = (1000..11_000u32)
            .filter(|i| !m.filter.may_contain(hash64(&i.to_le_bytes())))
            .count();
        assert!(
            rejected > 9_900,
            "filter rejected only {rejected} of 10000 absent keys"
        );
        assert!((1000..2000u32).all(|i| {
            m.get(&i.to_le_bytes(), hash64(&i.to_le_bytes()), 5000)
                .is_none()
        }));
    }

    #[test]
    fn entries_keep_their_bytes_across_arena_chunks() {
        let m = Arc::new(Memtable::new(1, 1 << 20));
        // Small groups that fill several chunks, then one group larger than a chunk.
        let value = |i: u32| vec![(i % 251) as u8; 100 + (i % 7) as usize];
        for i in 0..2000u32 {
            let k = format!("k{i:05}");
            m.insert_ops(u64::from(i) + 1, &[op(Kind::Put, k.as_bytes(), &value(i))]);
        }
        let big = vec![7u8; ARENA_CHUNK + 10];
        m.insert_ops(
            5000,
            &[op(Kind::Put, b"big", &big), op(Kind::Put, b"z", b"1")],
        );
        for i in 0..2000u32 {
            let k = format!("k{i:05}");
            let hit = m.get(k.as_bytes(), hash64(k.as_bytes()), 9000).unwrap();
            assert_eq!((hit.seq, &hit.value[..]), (u64::from(i) + 1, &value(i)[..]));
        }
        assert_eq!(
            &m.get(b"big", hash64(b"big"), 9000).unwrap().value[..],
            &big[..]
        );
        assert_eq!(m.get(b"z", hash64(b"z"), 9000).unwrap().seq, 5001);
        assert_eq!(m.iter().count(), 2002);
    }

    #[test]
    fn cursor_walks_both_ways_across_chunks() {
        let m = Arc::new(Memtable::new(1, 1 << 20));
        let keys: Vec<Vec<u8>> = (0..300u32)
            .map(|i| format!("k{i:05}").into_bytes())
            .collect();
        for (i, k) in keys.iter().enumerate() {
            m.insert_ops(i as u64 + 1, &[op(Kind::Put, k, b"v")]);
        }
        let mut c = m.cursor();
        c.seek_to_first();
        let mut seen = Vec::new();
        while c.valid() {
            seen.push(key::user_key(c.key()).to_vec());
            c.next();
        }
        assert_eq!(seen, keys);
        c.seek_to_last();
        let mut back = Vec::new();
        while c.valid() {
            back.push(key::user_key(c.key()).to_vec());
            c.prev();
        }
        back.reverse();
        assert_eq!(back, keys);
        // Direction change mid-way.
        c.seek(&key::encode(b"k00100", SeqNo::MAX, KIND_SEEK));
        assert_eq!(key::user_key(c.key()), b"k00100");
        c.next();
        c.prev();
        assert_eq!(key::user_key(c.key()), b"k00100");
        c.prev();
        assert_eq!(key::user_key(c.key()), b"k00099");
    }
}
