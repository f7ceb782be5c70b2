//! The cache of decompressed data blocks, shared by every table of a store: the bound on
//! their memory, and which table gives its blocks back when a new block needs room.
//!
//! Only blocks stored compressed are cached: an uncompressed block is read straight from the
//! table's memory map, which costs nothing to repeat. The blocks themselves live in their
//! table's slots ([`TableBlocks`]), found by the block's index ordinal; this module keeps
//! the total weight (contents plus a fixed overhead per block), which never exceeds the
//! configured capacity, and the list of tables that hold blocks. A block that needs room
//! frees it by giving up the block its table cached last, unless a read found it since (so a
//! block read once leaves first, as in a probation queue, and a scan does not sweep the
//! cache), then by a clock sweep: the hand goes from table to table, and within a table from
//! block to block ([`TableBlocks::evict`]), sparing once each block read since it last
//! passed. A table pinned by other readers is skipped. A block heavier than what the cache
//! can hold, or arriving when the room cannot be had, is simply not kept.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::Mutex;

use super::table_blocks::TableBlocks;

/// Bytes a block costs beyond its contents (its slot, the allocator's header).
const ENTRY_OVERHEAD: u64 = 32;

/// Figures of the block cache, as reported in [`Stats`](crate::Stats).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BlockCacheStats {
    /// The configured bound, in bytes ([`Config::block_cache_bytes`](crate::Config::block_cache_bytes)).
    pub capacity_bytes: u64,
    /// Bytes held now (block contents plus a fixed overhead per block); at most the bound.
    pub bytes: u64,
    /// Blocks held now.
    pub blocks: u64,
    /// Reads of a compressed block that found it already decompressed.
    pub hits: u64,
    /// Reads of a compressed block that had to decompress it.
    pub misses: u64,
    /// Bytes of the tables' slot arrays (one word per data block of every open table with
    /// compressed blocks), held whether or not the blocks are cached and not counted in the
    /// bound.
    pub slot_bytes: u64,
}

/// The tables that may hold blocks, and the clock hand over them.
#[derive(Debug, Default)]
struct Clock {
    tables: Vec<Weak<TableBlocks>>,
    hand: usize,
}

/// The bound and eviction policy of the decompressed blocks of a store.
#[derive(Debug)]
pub struct BlockCache {
    capacity: u64,
    bytes: AtomicU64,
    blocks: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    slot_bytes: AtomicU64,
    clock: Mutex<Clock>,
}

impl BlockCache {
    /// A cache holding at most `capacity` bytes; 0 keeps nothing.
    pub fn new(capacity: u64) -> BlockCache {
        BlockCache {
            capacity,
            bytes: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            slot_bytes: AtomicU64::new(0),
            clock: Mutex::new(Clock::default()),
        }
    }

    /// The weight of a block of `len` bytes of contents.
    pub fn weight(len: usize) -> u64 {
        len as u64 + ENTRY_OVERHEAD
    }

    /// Slots for a table of `data_blocks` blocks, or `None` when the cache keeps nothing.
    pub fn register(self: &Arc<Self>, data_blocks: usize) -> Option<Arc<TableBlocks>> {
        if self.capacity == 0 || data_blocks == 0 {
            return None;
        }
        let t = Arc::new(TableBlocks::new(data_blocks, Arc::clone(self)));
        self.slot_bytes.fetch_add(t.slot_bytes(), Ordering::Relaxed);
        let mut clock = self.clock.lock();
        clock.tables.retain(|w| w.strong_count() > 0);
        clock.tables.push(Arc::downgrade(&t));
        Some(t)
    }

    /// Counts a read that found its block cached.
    pub fn hit(&self) {
        self.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a read that decompressed its block.
    pub fn miss(&self) {
        self.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes `weight` bytes of the bound for a new block, evicting other tables' blocks when
    /// needed; false when the room cannot be had.
    /// `own` is the table the block is for, pinned by the caller alone.
    pub(super) fn reserve(&self, weight: u64, own: &TableBlocks) -> bool {
        if weight > self.capacity {
            return false;
        }
        let mut swept = false;
        loop {
            let held = self.bytes.load(Ordering::Relaxed);
            if held + weight <= self.capacity {
                if self
                    .bytes
                    .compare_exchange_weak(
                        held,
                        held + weight,
                        Ordering::Relaxed,
                        Ordering::Relaxed,
                    )
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if swept || !self.make_room(weight, own) {
                return false;
            }
            swept = true;
        }
    }

    /// Gives back the weight of `blocks` blocks (or of a reservation, with 0 blocks).
    pub(super) fn release(&self, weight: u64, blocks: u64) {
        self.bytes.fetch_sub(weight, Ordering::Relaxed);
        self.blocks.fetch_sub(blocks, Ordering::Relaxed);
    }

    /// Forgets the slot array of a table that is gone.
    pub(super) fn slots_dropped(&self, bytes: u64) {
        self.slot_bytes.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Counts blocks that took a reservation.
    pub(super) fn added(&self, blocks: u64) {
        self.blocks.fetch_add(blocks, Ordering::Relaxed);
    }

    /// Sweeps the clock until `weight` more bytes fit, at most twice round the tables;
    /// false when they still do not, or when another reader is sweeping (it frees room for
    /// both, and this block is not worth the wait).
    fn make_room(&self, weight: u64, own: &TableBlocks) -> bool {
        let Some(mut clock) = self.clock.try_lock() else {
            return false;
        };
        // The block the table cached last, unless read since, goes first.
        own.evict_probation();
        clock.tables.retain(|w| w.strong_count() > 0);
        let n = clock.tables.len();
        for _ in 0..2 * n {
            let held = self.bytes.load(Ordering::Relaxed);
            if held + weight <= self.capacity {
                return true;
            }
            let hand = clock.hand % n;
            if let Some(t) = clock.tables.get(hand).and_then(Weak::upgrade)
                && t.bytes() > 0
            {
                let need = held + weight - self.capacity;
                if t.evict(need, std::ptr::eq(&*t, own)) >= need {
                    continue;
                }
            }
            clock.hand = hand + 1;
        }
        self.bytes.load(Ordering::Relaxed) + weight <= self.capacity
    }

    /// Current figures.
    pub fn stats(&self) -> BlockCacheStats {
        BlockCacheStats {
            capacity_bytes: self.capacity,
            bytes: self.bytes.load(Ordering::Relaxed),
            blocks: self.blocks.load(Ordering::Relaxed),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            slot_bytes: self.slot_bytes.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)]
mod tests {
    use super::*;

    /// Caches block `ordinal` of `t` (pinning around it); whether it was kept.
    fn put(t: &TableBlocks, ordinal: usize, len: usize) -> bool {
        assert!(t.pin());
        // SAFETY: pinned; the bytes are dropped before the unpin.
        let kept = unsafe {
            t.insert(ordinal, vec![ordinal as u8; len]);
            t.get(ordinal).is_some()
        };
        // SAFETY: nothing read under the pin is held.
        unsafe { t.unpin() };
        kept
    }

    #[test]
    fn holds_no_more_than_its_capacity() {
        let cache = Arc::new(BlockCache::new(64 << 10));
        let tables: Vec<_> = (0..8).map(|_| cache.register(64).unwrap()).collect();
        for round in 0..4 {
            for (i, t) in tables.iter().enumerate() {
                for o in 0..64 {
                    put(t, o, 4000 + i + round);
                    let s = cache.stats();
                    assert!(s.bytes <= 64 << 10, "{s:?}");
                }
            }
        }
        let s = cache.stats();
        assert!(s.blocks > 0 && s.blocks < 17, "{s:?}");
        let held: u64 = tables.iter().map(|t| t.bytes()).sum();
        assert_eq!(held, s.bytes, "the tables hold what the cache counts");
        // Blocks too big for the cache, or for a slot, are not kept at all.
        let t = cache.register(1).unwrap();
        assert!(!put(&t, 0, 200 << 10));
        let big = Arc::new(BlockCache::new(1 << 20));
        let t = big.register(1).unwrap();
        assert!(!put(&t, 0, 100 << 10));
        assert_eq!(big.stats().bytes, 0);
    }

    #[test]
    fn a_block_that_needs_room_evicts_another_table_unless_it_is_pinned() {
        let cache = Arc::new(BlockCache::new(10_000));
        let a = cache.register(4).unwrap();
        let b = cache.register(4).unwrap();
        assert!(put(&a, 0, 4000) && put(&a, 1, 4000));
        // Pinned, `a` keeps its blocks and `b`'s block finds no room.
        assert!(a.pin());
        assert!(!put(&b, 0, 4000));
        assert_eq!(a.bytes(), 2 * BlockCache::weight(4000));
        // SAFETY: nothing read under the pin is held.
        unsafe { a.unpin() };
        // Unpinned, `a` gives back a block (both were read: the first pass of the hand
        // spares them).
        assert!(put(&b, 0, 4000));
        assert_eq!(a.bytes(), BlockCache::weight(4000));
        assert_eq!(cache.stats().blocks, 2);
        // A table pinned by its only reader makes room in itself.
        assert!(put(&b, 1, 4000));
        assert!(put(&b, 2, 4000));
        assert_eq!(a.bytes(), 0);
        assert!(cache.stats().bytes <= 10_000);
    }

    /// Caches block `ordinal` of `t` without reading it afterwards.
    fn cache_unread(t: &TableBlocks, ordinal: usize, len: usize) {
        assert!(t.pin());
        // SAFETY: pinned; the bytes are dropped before the unpin.
        drop(unsafe { t.insert(ordinal, vec![1; len]) });
        // SAFETY: nothing read under the pin is held.
        unsafe { t.unpin() };
    }

    /// Whether block `ordinal` of `t` is cached, without marking it read.
    fn cached(t: &TableBlocks, ordinal: usize) -> bool {
        t.try_pin().unwrap().get(ordinal).is_some()
    }

    #[test]
    fn the_block_cached_last_goes_first_unless_it_was_read() {
        let cache = Arc::new(BlockCache::new(2 * BlockCache::weight(1000)));
        let t = cache.register(4).unwrap();
        cache_unread(&t, 1, 1000);
        cache_unread(&t, 3, 1000);
        // The sweep would take block 1 first; the one cached last, never read, goes instead.
        cache_unread(&t, 2, 1000);
        assert!(cached(&t, 1) && cached(&t, 2) && !cached(&t, 3));
        // Read, the last one stays, and the sweep makes the room.
        assert!(t.pin());
        // SAFETY: pinned; the bytes are dropped at once.
        assert!(unsafe { t.get(2) }.is_some());
        // SAFETY: nothing read under the pin is held.
        unsafe { t.unpin() };
        cache_unread(&t, 3, 1000);
        assert!(cached(&t, 2) && cached(&t, 3) && !cached(&t, 1));
        assert!(cache.stats().bytes <= 2 * BlockCache::weight(1000));
    }

    #[test]
    fn counts_the_slot_arrays_of_open_tables() {
        let cache = Arc::new(BlockCache::new(1 << 20));
        let a = cache.register(100).unwrap();
        let b = cache.register(28).unwrap();
        assert_eq!(cache.stats().slot_bytes, 128 * 8);
        drop(a);
        assert_eq!(cache.stats().slot_bytes, 28 * 8);
        drop(b);
        assert_eq!(cache.stats().slot_bytes, 0);
    }

    #[test]
    fn a_cache_of_nothing_registers_no_table() {
        let cache = Arc::new(BlockCache::new(0));
        assert!(cache.register(10).is_none());
        assert_eq!(cache.stats(), BlockCacheStats::default());
    }
}
