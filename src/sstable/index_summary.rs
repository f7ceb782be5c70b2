//! A compact search aid over a table's index block, built in memory when the table is first
//! searched; nothing of it is stored in the file.
//!
//! The index block has one entry per data block, keyed by the block's last internal key, and
//! a seek binary-searches it: a dozen probes into a block of a few hundred KiB, each a cache
//! miss. The summary holds, for each index entry in order, eight bytes of its user key as a
//! big-endian integer: the eight that follow the prefix every key of the table shares (the
//! common prefix of its smallest and largest user keys), zero-padded. Truncating and padding
//! keeps order (a ≤ b implies rank(a) ≤ rank(b)), so a binary search over these integers,
//! 8 bytes per data block and contiguous, narrows a seek to the entries whose rank equals the
//! target's, usually one, which are then compared in full.
//!
//! It also holds each entry's block handle (16 bytes per data block). When no entry shares
//! the target's rank, which is the common case, the ranks alone prove which entry is the
//! first at or after the target, and a point lookup goes straight to that data block without
//! touching the index block.
//!
//! The summary is built only when every index key has the table's prefix, the ranks do not
//! decrease and every handle decodes (a damaged index gets no summary and is searched the
//! ordinary way). It says which block to read, never what is in it: the block is checksummed
//! and searched by comparing real keys like any other.
#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;
use std::ops::Range;

use super::block::Block;
use super::format::BlockHandle;
use crate::cursor::Cursor;
use crate::key;
use crate::prefetch;

/// Ranks of a table's index entries (see the module documentation).
#[derive(Debug)]
pub struct IndexSummary {
    /// The prefix every key of the table shares.
    prefix: Box<[u8]>,
    /// One rank per index entry, in order.
    ranks: Box<[u64]>,
    /// Each index entry's block handle.
    handles: Box<[BlockHandle]>,
}

/// The rank of `user_key` given the table's prefix length: the eight bytes after it, padded.
#[allow(clippy::big_endian_bytes)] // big-endian integers order like the bytes; nothing is stored
fn rank(user_key: &[u8], skip: usize) -> u64 {
    let mut b = [0u8; 8];
    let rest = user_key.get(skip..).unwrap_or_default();
    let n = rest.len().min(8);
    if let (Some(dst), Some(src)) = (b.get_mut(..n), rest.get(..n)) {
        dst.copy_from_slice(src);
    }
    u64::from_be_bytes(b)
}

impl IndexSummary {
    /// Builds the summary of `index` for a table whose user keys lie between `smallest` and
    /// `largest`; `None` when an index key does not fit (damage) or the index is empty.
    pub fn build(index: &Block, smallest: &[u8], largest: &[u8]) -> Option<IndexSummary> {
        let common = smallest
            .iter()
            .zip(largest)
            .take_while(|(a, b)| a == b)
            .count();
        let prefix: Box<[u8]> = smallest.get(..common)?.into();
        // An index has a restart point at every entry: entry i is restart i.
        let n = index.num_restarts();
        let mut ranks = Vec::with_capacity(n);
        let mut handles = Vec::with_capacity(n);
        let mut last = 0u64;
        let mut c = index.cursor();
        c.seek_to_first();
        while c.valid() {
            let user = key::split(c.key())?.0;
            if !user.starts_with(&prefix) {
                return None;
            }
            let r = rank(user, common);
            if r < last || ranks.len() == n {
                return None;
            }
            last = r;
            ranks.push(r);
            handles.push(BlockHandle::decode(&c.value()).ok()?);
            c.next();
        }
        if ranks.len() != n || c.corruption().is_some() {
            return None;
        }
        Some(IndexSummary {
            prefix,
            ranks: ranks.into(),
            handles: handles.into(),
        })
    }

    /// Number of index entries summarized.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.ranks.len()
    }

    /// Bytes of memory the summary holds: 24 per data block, and the prefix.
    pub fn memory_bytes(&self) -> u64 {
        (self.ranks.len() * 8 + std::mem::size_of_val(&*self.handles) + self.prefix.len()) as u64
    }

    /// The index entry, and its block's handle, that is the first at or after every internal
    /// key with user key `user`, when the ranks alone prove which one it is (no entry has
    /// the same rank). `None` when they do not, or when every entry is below `user`.
    #[cfg(test)]
    fn block_for(&self, user: &[u8]) -> Option<(usize, BlockHandle)> {
        self.block_in(&self.narrow(user))
    }

    /// [`block_for`](Self::block_for) given what [`narrow`](Self::narrow) returned for the
    /// user key: the entry `equal` starts at, when `equal` is empty and inside the index.
    pub fn block_in(&self, equal: &Range<usize>) -> Option<(usize, BlockHandle)> {
        if !equal.is_empty() {
            return None;
        }
        self.handles.get(equal.start).map(|&h| (equal.start, h))
    }

    /// The index entries whose rank equals that of user key `user`, as `lo..hi`: every entry
    /// before `lo` is below an internal key with that user key and every entry from `hi` on
    /// is above it, so the first entry at or after it is in `lo..=hi`.
    pub fn narrow(&self, user: &[u8]) -> Range<usize> {
        let n = self.ranks.len();
        let skip = self.prefix.len();
        let head = user.get(..skip.min(user.len())).unwrap_or_default();
        match key::compare_bytes(head, &self.prefix) {
            // Shorter than the prefix and a prefix of it, or below it: before every key.
            Ordering::Less => return 0..0,
            Ordering::Greater => return n..n,
            Ordering::Equal => {}
        }
        let r = rank(user, skip);
        let lo = count_below(&self.ranks, r);
        let hi = lo
            + self
                .ranks
                .get(lo..)
                .unwrap_or_default()
                .partition_point(|&x| x == r);
        lo..hi
    }
}

/// How many of the ascending `ranks` are below `r`: a binary search that, while it compares,
/// asks for the cache lines of both probes the next step may make, so the misses of a cold
/// summary's deep probes overlap instead of following one another.
fn count_below(ranks: &[u64], r: u64) -> usize {
    let mut base = 0usize;
    let mut size = ranks.len();
    if size == 0 {
        return 0;
    }
    // Invariant: every rank before `base` is below `r`, and the answer is in
    // `base..=base + size`; `ranks[base]` is not yet compared.
    while size > 1 {
        let half = size / 2;
        let next = (size - half) / 2;
        prefetch::lines(ranks, &[base + next, base + half + next]);
        if ranks.get(base + half).is_some_and(|&x| x < r) {
            base += half;
        }
        size -= half;
    }
    base + usize::from(ranks.get(base).is_some_and(|&x| x < r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::key::KIND_SEEK;
    use crate::seqno::SeqNo;
    use crate::sstable::block_builder::BlockBuilder;

    fn handle(i: usize) -> BlockHandle {
        BlockHandle {
            offset: i as u64 * 100,
            size: 90,
        }
    }

    fn index_of(users: &[&[u8]]) -> Block {
        let mut b = BlockBuilder::new(1);
        for (i, u) in users.iter().enumerate() {
            let mut h = Vec::new();
            handle(i).encode_to(&mut h);
            b.add(&key::encode(u, SeqNo::new(i as u64 + 1), 1), &h);
        }
        Block::new(bytes::Bytes::from(b.finish()), 0).unwrap()
    }

    /// The first entry at or after `target` by a plain scan: what narrowing must bracket.
    fn first_at_or_after(users: &[&[u8]], target: &[u8]) -> usize {
        users
            .iter()
            .enumerate()
            .position(|(i, u)| {
                key::compare(&key::encode(u, SeqNo::new(i as u64 + 1), 1), target).is_ge()
            })
            .unwrap_or(users.len())
    }

    #[test]
    fn narrowing_brackets_the_first_entry_at_or_after_any_target() {
        let users: Vec<&[u8]> = vec![
            b"user000010",
            b"user000020",
            b"user00002000000000005",
            b"user00002000000000009",
            b"user000031",
            b"user0000311",
            b"user000040",
        ];
        let index = index_of(&users);
        let s = IndexSummary::build(&index, b"user000001", b"user000040").unwrap();
        assert_eq!(s.len(), users.len());
        let targets: Vec<&[u8]> = vec![
            b"",
            b"a",
            b"user",
            b"user00000",
            b"user000010",
            b"user000015",
            b"user00002000000000005",
            b"user00002000000000007",
            b"user000031",
            b"user0000310",
            b"user000040",
            b"user000041",
            b"v",
        ];
        for t in targets {
            let target = key::encode(t, SeqNo::MAX, KIND_SEEK);
            let want = first_at_or_after(&users, &target);
            let std::ops::Range { start: lo, end: hi } = s.narrow(t);
            assert!(lo <= want && want <= hi, "{t:?}: {lo}..={hi}, want {want}");
            // Entries before lo are below the target, entries from hi on are above it.
            assert!(users.iter().take(lo).all(|u| *u < t));
            assert!(users.iter().skip(hi).all(|u| *u > t));
            // A block named outright is exactly the one a plain search finds.
            match s.block_for(t) {
                Some((i, h)) => {
                    assert_eq!((i, h), (want, handle(want)), "{t:?}");
                    assert_eq!(lo, hi, "{t:?}");
                }
                None => assert!(lo < hi || want == users.len(), "{t:?}: {lo}..{hi}"),
            }
        }
        // Most of these targets rank apart from every entry.
        let named = [b"a" as &[u8], b"user000015", b"user0000310", b"user000041"]
            .iter()
            .filter(|t| s.block_for(t).is_some())
            .count();
        assert_eq!(named, 3, "all but the one past the last entry");
    }

    #[test]
    fn an_undecodable_handle_gets_no_summary() {
        let mut b = BlockBuilder::new(1);
        b.add(&key::encode(b"abc1", SeqNo::new(1), 1), b"\xff");
        let index = Block::new(bytes::Bytes::from(b.finish()), 0).unwrap();
        assert!(IndexSummary::build(&index, b"abc0", b"abc9").is_none());
    }

    #[test]
    fn an_index_key_outside_the_tables_prefix_gets_no_summary() {
        let index = index_of(&[b"abc1", b"abd2"]);
        assert!(IndexSummary::build(&index, b"abc0", b"abc9").is_none());
        let ordered = index_of(&[b"abc1", b"abc2"]);
        assert!(IndexSummary::build(&ordered, b"abc0", b"abc9").is_some());
        let backwards = index_of(&[b"abc2", b"abc1"]);
        assert!(IndexSummary::build(&backwards, b"abc0", b"abc9").is_none());
    }

    #[test]
    fn counting_the_ranks_below_agrees_with_a_plain_search() {
        // Every length up to 70, ranks with runs of equal values, and every target from
        // below the first rank to above the last.
        for len in 0..70u64 {
            let ranks: Vec<u64> = (0..len).map(|i| 10 + (i / 3) * 2).collect();
            for r in 0..=12 + len {
                assert_eq!(
                    count_below(&ranks, r),
                    ranks.partition_point(|&x| x < r),
                    "{len} ranks, target {r}"
                );
            }
        }
    }
}
