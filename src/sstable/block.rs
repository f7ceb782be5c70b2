//! Reads a block written by [`super::block_builder`]: validation and a bidirectional cursor.
//!
//! [`Block::new`] checks the restart array before anything else touches the block; the
//! cursor bounds-checks every entry it decodes. Damage surfaces as a cursor error, never a
//! panic.
#![deny(clippy::indexing_slicing)]

use std::borrow::Borrow;
use std::cmp::Ordering;

use bytes::Bytes;

use crate::coding::{Reader, get_u32};
use crate::cursor::Cursor;
use crate::error::{Corrupt, Result};
use crate::key;
use crate::prefetch;

/// How far past the start of the entry being decoded a cursor asks for the next cache line.
const READ_AHEAD: usize = 128;

/// A validated block (contents only, trailer already checked and removed).
#[derive(Debug, Clone)]
pub struct Block {
    data: Bytes,
    restarts_offset: usize,
    num_restarts: usize,
    /// File offset of the block, for error reports.
    base: u64,
}

impl Block {
    /// Validates the restart array of `data`, which starts at file offset `base`.
    pub fn new(data: Bytes, base: u64) -> Result<Block, Corrupt> {
        let len = data.len();
        let (restarts_offset, n) =
            restart_array(&data).map_err(|reason| Corrupt::new(base, reason))?;
        if n == 0 {
            return Err(Corrupt::new(base, "block without restart points"));
        }
        let mut prev: Option<u32> = None;
        for i in 0..n {
            let r = get_u32(&data, restarts_offset + 4 * i).unwrap_or(u32::MAX);
            let bad_order = prev.is_some_and(|p| r <= p);
            let out_of_range = (r as usize) >= restarts_offset && !(restarts_offset == 0 && r == 0);
            if bad_order || out_of_range {
                return Err(Corrupt::new(base + len as u64 - 4, "bad restart offset"));
            }
            prev = Some(r);
        }
        Ok(Block {
            data,
            restarts_offset,
            num_restarts: n,
            base,
        })
    }

    /// The raw contents.
    #[cfg(test)]
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// A cursor over the block.
    pub fn cursor(&self) -> BlockCursor {
        BlockCursor::new(self.clone())
    }

    /// The file offset the block starts at.
    pub fn offset(&self) -> u64 {
        self.base
    }

    /// Bytes of contents.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// Number of restart points (for an index block, built with interval 1: its entries).
    pub fn num_restarts(&self) -> usize {
        self.num_restarts
    }

    /// The restart point that starts exactly at `offset`, if any.
    fn restart_at(&self, offset: usize) -> Option<usize> {
        let (mut lo, mut hi) = (0, self.num_restarts);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.restart(mid).cmp(&offset) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(mid),
            }
        }
        None
    }

    /// The key of restart entry `i`, read in place, when the entry has no shared prefix and
    /// one-byte lengths and lies inside the entries; `None` otherwise (the caller decodes it
    /// the checked way).
    fn restart_key(&self, i: usize) -> Option<&[u8]> {
        let off = self.restart(i);
        let src = self.data.get(off..self.restarts_offset)?;
        let &[shared, unshared, vlen] = src.first_chunk::<3>()?;
        if shared != 0 || (unshared | vlen) >= 0x80 {
            return None;
        }
        let kend = 3 + usize::from(unshared);
        if kend + usize::from(vlen) > src.len() {
            return None;
        }
        src.get(3..kend)
    }

    fn restart(&self, i: usize) -> usize {
        get_u32(&self.data, self.restarts_offset + 4 * i).unwrap_or_default() as usize
    }
}

/// Where the restart array of the block contents `data` starts, and how many restart
/// points it holds, as the count at the end of the block says; the offsets in it are not
/// checked.
fn restart_array(data: &[u8]) -> std::result::Result<(usize, usize), &'static str> {
    let len = data.len();
    let n = len
        .checked_sub(4)
        .and_then(|at| get_u32(data, at))
        .ok_or("block too short")? as usize;
    let start = n
        .checked_mul(4)
        .and_then(|a| len.checked_sub(4 + a))
        .ok_or("restart count exceeds block size")?;
    Ok((start, n))
}

/// Asks for the cache lines of the restart keys (up to eight, spread over the block) of the
/// stored, uncompressed block contents `data`, which a seek's binary search compares. Reads
/// only the restart array; a damaged one makes the hints useless, never a fault (the seek
/// checks the block).
pub fn ask_for_restart_keys(data: &[u8]) {
    const MOST: usize = 8;
    let Ok((array, n)) = restart_array(data) else {
        return;
    };
    let asked = n.min(MOST);
    let mut at = [0usize; MOST];
    for (i, a) in at.iter_mut().enumerate().take(asked) {
        let restart = (i as u64 * n as u64 / asked as u64) as usize;
        *a = get_u32(data, array + 4 * restart).unwrap_or_default() as usize;
    }
    prefetch::lines(data, at.get(..asked).unwrap_or_default());
}

/// A data block as a read hands it out: read in place from the table's map, decompressed
/// into memory of its own, or lent from the table's cached blocks.
#[derive(Debug)]
pub enum BlockRef {
    /// Stored uncompressed and read in place.
    Mapped(Block),
    /// Decompressed for this read alone.
    Decompressed(Block),
    /// Cached in the table's slots ([`TableBlocks`](super::table_blocks::TableBlocks)):
    /// valid while the reader's pin on them is held, so nothing may take a [`Bytes`] out
    /// of it (values are copied).
    Pinned(Block),
}

impl BlockRef {
    /// The block.
    pub fn block(&self) -> &Block {
        match self {
            BlockRef::Mapped(b) | BlockRef::Decompressed(b) | BlockRef::Pinned(b) => b,
        }
    }
}

impl Borrow<Block> for BlockRef {
    fn borrow(&self) -> &Block {
        self.block()
    }
}

/// A cursor over one block.
///
/// It holds its block by a reference-counted handle (`Block`, [`BlockRef`]) or borrows it
/// (`&Block`, for a search that ends before the block could go away: no reference count is
/// touched, which for a cached block would be one more cache miss per read).
#[derive(Debug)]
pub struct BlockCursor<B: Borrow<Block> = Block> {
    block: B,
    key: Vec<u8>,
    value: (usize, usize),
    /// Offset of the current entry; `restarts_offset` when invalid.
    current: usize,
    /// Offset of the entry after the current one.
    next: usize,
    err: Option<Corrupt>,
}

impl<B: Borrow<Block> + Send> BlockCursor<B> {
    /// A cursor over `block`, not positioned.
    pub fn new(block: B) -> BlockCursor<B> {
        BlockCursor::reusing(block, Vec::new())
    }

    /// [`new`](Self::new), keeping decoded keys in `buffer` (emptied first): a cursor that
    /// moves from block to block hands its buffer on rather than allocating one per block.
    pub fn reusing(block: B, mut buffer: Vec<u8>) -> BlockCursor<B> {
        buffer.clear();
        let end = block.borrow().restarts_offset;
        BlockCursor {
            block,
            key: buffer,
            value: (0, 0),
            current: end,
            next: end,
            err: None,
        }
    }

    /// What the cursor holds its block by.
    pub fn holder(&self) -> &B {
        &self.block
    }

    /// Gives up the cursor for its key buffer.
    pub fn into_buffer(self) -> Vec<u8> {
        self.key
    }

    fn invalidate(&mut self) {
        self.current = self.block.borrow().restarts_offset;
        self.next = self.block.borrow().restarts_offset;
    }

    fn fail(&mut self, e: Corrupt) {
        if self.err.is_none() {
            self.err = Some(e);
        }
        self.invalidate();
    }

    /// Decodes the entry at `off`, whose key shares a prefix with `self.key`.
    fn decode_at(&mut self, off: usize) -> bool {
        let end = self.block.borrow().restarts_offset;
        if off >= end {
            self.invalidate();
            return false;
        }
        let Some(src) = self.block.borrow().data.get(off..end) else {
            self.fail(Corrupt::new(
                self.block.borrow().base + off as u64,
                "entry offset out of range",
            ));
            return false;
        };
        // Entries are read one after another, and the CPU's own prefetcher starts late in a
        // block: asking for the line two ahead keeps the next entries arriving.
        prefetch::lines(src, &[READ_AHEAD]);
        // Fast path: the three lengths fit one byte each (short keys and values, as most
        // are) and everything lies inside the block; anything else takes the checked path,
        // which reports what is wrong.
        if let Some(&[shared, unshared, vlen]) = src.first_chunk::<3>()
            && (shared | unshared | vlen) < 0x80
            && usize::from(shared) <= self.key.len()
        {
            let (shared, unshared, vlen) = (
                usize::from(shared),
                usize::from(unshared),
                usize::from(vlen),
            );
            let kend = 3 + unshared;
            if let Some(delta) = src.get(3..kend)
                && kend + vlen <= src.len()
            {
                self.key.truncate(shared);
                self.key.extend_from_slice(delta);
                let vstart = off + kend;
                self.value = (vstart, vstart + vlen);
                self.current = off;
                self.next = vstart + vlen;
                return true;
            }
        }
        let mut r = Reader::new(src, self.block.borrow().base + off as u64);
        let decoded = (|| {
            let shared = r.varint32("shared length")? as usize;
            let unshared = r.varint32("key length")? as usize;
            let vlen = r.varint32("value length")? as usize;
            if shared > self.key.len() {
                return Err(r.corrupt("shared prefix longer than the previous key"));
            }
            let delta = r.bytes(unshared, "key")?;
            let vstart = off + r.position();
            r.bytes(vlen, "value")?;
            Ok((shared, delta, vstart, vlen))
        })();
        match decoded {
            Ok((shared, delta, vstart, vlen)) => {
                self.key.truncate(shared);
                self.key.extend_from_slice(delta);
                self.value = (vstart, vstart + vlen);
                self.current = off;
                self.next = off + r.position();
                true
            }
            Err(e) => {
                self.fail(e);
                false
            }
        }
    }

    fn seek_to_restart(&mut self, i: usize) -> bool {
        self.key.clear();
        let off = self.block.borrow().restart(i);
        self.decode_at(off)
    }

    /// Binary search: the last restart point whose key is below `target` (0 if none).
    fn restart_before(&mut self, target: &[u8]) -> usize {
        let (mut left, mut right) = (0usize, self.block.borrow().num_restarts - 1);
        while left < right {
            let mid = (left + right).div_ceil(2);
            // A restart entry holds its whole key: compare it in place when its header is
            // the common one-byte form, else decode it (which reports damage).
            let below = match self.block.borrow().restart_key(mid) {
                Some(k) => key::compare(k, target) == Ordering::Less,
                None => {
                    if !self.seek_to_restart(mid) {
                        return 0;
                    }
                    key::compare(&self.key, target) == Ordering::Less
                }
            };
            if below {
                left = mid;
            } else {
                right = mid - 1;
            }
        }
        left
    }
}

impl<B: Borrow<Block> + Send> BlockCursor<B> {
    /// Positions at the entry restart point `restart` starts (in an index block, which has
    /// a restart point at every entry, the entry of that ordinal).
    pub fn seek_to_restart_point(&mut self, restart: usize) {
        if self.err.is_none() {
            self.seek_to_restart(restart.min(self.block.borrow().num_restarts - 1));
        }
    }

    /// Positions at the first entry at or after `target`, scanning forward from restart
    /// point `restart` (the caller knows no entry before it is at or after `target`).
    pub fn seek_from(&mut self, restart: usize, target: &[u8]) {
        let start = restart.min(self.block.borrow().num_restarts - 1);
        if self.err.is_some() || !self.seek_to_restart(start) {
            return;
        }
        while key::compare(&self.key, target) == Ordering::Less {
            let next = self.next;
            if !self.decode_at(next) {
                return;
            }
        }
    }
}

impl<B: Borrow<Block> + Send> Cursor for BlockCursor<B> {
    fn seek(&mut self, target: &[u8]) {
        let start = self.restart_before(target);
        self.seek_from(start, target);
    }

    fn seek_to_first(&mut self) {
        self.seek_to_restart(0);
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        self.seek(target);
        if self.valid() {
            if key::compare(&self.key, target) == Ordering::Greater {
                self.prev();
            }
        } else if self.err.is_none() {
            self.seek_to_last();
        }
    }

    fn seek_to_last(&mut self) {
        if !self.seek_to_restart(self.block.borrow().num_restarts - 1) {
            return;
        }
        while self.next < self.block.borrow().restarts_offset {
            let next = self.next;
            if !self.decode_at(next) {
                return;
            }
        }
    }

    fn next(&mut self) {
        let next = self.next;
        self.decode_at(next);
    }

    fn prev(&mut self) {
        let original = self.current;
        let mut i = self.block.borrow().num_restarts - 1;
        while self.block.borrow().restart(i) >= original {
            if i == 0 {
                self.invalidate();
                return;
            }
            i -= 1;
        }
        if !self.seek_to_restart(i) {
            return;
        }
        while self.next < original {
            let next = self.next;
            if !self.decode_at(next) {
                return;
            }
        }
        if self.next != original {
            let base = self.block.borrow().base + original as u64;
            self.fail(Corrupt::new(
                base,
                "entries do not chain to the current one",
            ));
        }
    }

    fn valid(&self) -> bool {
        self.current < self.block.borrow().restarts_offset
    }

    fn key(&self) -> &[u8] {
        &self.key
    }

    fn value(&self) -> Bytes {
        self.block.borrow().data.slice(self.value.0..self.value.1)
    }

    fn value_ref(&self) -> &[u8] {
        self.block
            .borrow()
            .data
            .get(self.value.0..self.value.1)
            .unwrap_or(&[])
    }

    fn status(&self) -> Result<()> {
        match &self.err {
            None => Ok(()),
            Some(e) => Err(crate::error::Error::Corruption {
                file: Default::default(),
                offset: e.offset,
                reason: e.reason.clone(),
            }),
        }
    }
}

impl<B: Borrow<Block> + Send> BlockCursor<B> {
    /// The ordinal of the current entry when it starts a restart point (every entry of an
    /// index block does): a stable number for the data block it names.
    pub fn ordinal(&self) -> Option<usize> {
        if self.valid() {
            self.block.borrow().restart_at(self.current)
        } else {
            None
        }
    }

    /// The decode error, if any, as a [`Corrupt`] (the table adds its file name).
    pub fn corruption(&self) -> Option<&Corrupt> {
        self.err.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::super::block_builder::BlockBuilder;
    use super::*;
    use crate::key::{KIND_SEEK, Kind, encode};
    use crate::seqno::SeqNo;

    fn build(n: usize, interval: usize) -> (Block, Vec<Vec<u8>>) {
        let mut b = BlockBuilder::new(interval);
        let mut keys = Vec::new();
        for i in 0..n {
            let k = encode(
                format!("key{i:04}").as_bytes(),
                SeqNo::new(i as u64 + 1),
                Kind::Put as u8,
            );
            b.add(&k, format!("value{i}").as_bytes());
            keys.push(k);
        }
        (Block::new(Bytes::from(b.finish()), 0).unwrap(), keys)
    }

    #[test]
    fn forward_backward_and_seek() {
        for interval in [1, 2, 16] {
            for n in [0, 1, 2, 17, 100] {
                let (block, keys) = build(n, interval);
                let mut c = block.cursor();
                let (got, back) = crate::cursor::keys_both_ways(&mut c);
                assert_eq!(got, keys, "forward n={n} interval={interval}");
                assert_eq!(back, keys, "backward n={n} interval={interval}");
                for (i, k) in keys.iter().enumerate() {
                    let user = key::user_key(k);
                    c.seek(&encode(user, SeqNo::MAX, KIND_SEEK));
                    assert_eq!(c.key(), &k[..]);
                    assert_eq!(&c.value()[..], format!("value{i}").as_bytes());
                    c.seek_for_prev(&encode(user, SeqNo::ZERO, 0));
                    assert_eq!(c.key(), &k[..]);
                }
                c.seek(&encode(b"zzz", SeqNo::MAX, KIND_SEEK));
                assert!(!c.valid());
                c.seek_for_prev(&encode(b"a", SeqNo::MAX, KIND_SEEK));
                assert!(!c.valid());
                assert!(c.status().is_ok());
            }
        }
    }

    #[test]
    fn damaged_blocks_fail_cleanly() {
        let (block, _) = build(50, 16);
        let raw = block.data().to_vec();
        for cut in 0..raw.len() {
            let _ = Block::new(Bytes::copy_from_slice(&raw[..cut]), 0);
        }
        for i in 0..raw.len() {
            for bit in [0x01u8, 0x80] {
                let mut bad = raw.clone();
                bad[i] ^= bit;
                if let Ok(b) = Block::new(Bytes::from(bad), 0) {
                    let mut c = b.cursor();
                    c.seek_to_first();
                    let mut steps = 0;
                    while c.valid() && steps < 1000 {
                        c.next();
                        steps += 1;
                    }
                    c.seek_to_last();
                    while c.valid() && steps < 2000 {
                        c.prev();
                        steps += 1;
                    }
                    c.seek(b"key0025\xff\xff\xff\xff\xff\xff\xff\xff");
                }
            }
        }
    }
}
