//! The cache of decompressed data blocks, shared by every table of a store.
//!
//! Only blocks stored compressed are cached: an uncompressed block is read straight from the
//! table's memory map, which costs nothing to repeat. Entries are keyed by a number unique
//! to each opened table in this process (never reused, so a deleted table's blocks cannot be
//! mistaken for another's) and the block's file offset, and weighed by their size; the
//! total weight never exceeds the configured capacity (a block heavier than what the cache
//! can hold is simply not kept).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use quick_cache::Weighter;
use quick_cache::sync::Cache;

use super::block::Block;

/// Bytes an entry costs beyond its block contents (key, handle, bookkeeping).
const ENTRY_OVERHEAD: u64 = 96;

/// Process-wide source of table ids.
static NEXT_TABLE_ID: AtomicU64 = AtomicU64::new(1);

/// A number no other table opened by this process has or will have.
pub fn next_table_id() -> u64 {
    NEXT_TABLE_ID.fetch_add(1, Ordering::Relaxed)
}

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
}

#[derive(Debug, Clone, Copy)]
struct BlockWeight;

impl Weighter<(u64, u64), Arc<Block>> for BlockWeight {
    fn weight(&self, _key: &(u64, u64), block: &Arc<Block>) -> u64 {
        block.size() as u64 + ENTRY_OVERHEAD
    }
}

/// A bounded, concurrent cache of decompressed blocks.
pub struct BlockCache {
    cache: Option<Cache<(u64, u64), Arc<Block>, BlockWeight>>,
    capacity: u64,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl std::fmt::Debug for BlockCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCache")
            .field("stats", &self.stats())
            .finish()
    }
}

impl BlockCache {
    /// A cache holding at most `capacity` bytes; 0 keeps nothing.
    pub fn new(capacity: u64) -> BlockCache {
        let cache = (capacity > 0).then(|| {
            let items = usize::try_from(capacity / 4096)
                .unwrap_or(usize::MAX)
                .max(16);
            Cache::with_weighter(items, capacity, BlockWeight)
        });
        BlockCache {
            cache,
            capacity,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The decompressed block at `offset` of table `table_id`, if cached (counted as a hit
    /// or a miss).
    pub fn get(&self, table_id: u64, offset: u64) -> Option<Arc<Block>> {
        let found = self.cache.as_ref().and_then(|c| c.get(&(table_id, offset)));
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Keeps a decompressed block.
    pub fn insert(&self, table_id: u64, offset: u64, block: Arc<Block>) {
        if let Some(c) = &self.cache {
            c.insert((table_id, offset), block);
        }
    }

    /// Current figures.
    pub fn stats(&self) -> BlockCacheStats {
        BlockCacheStats {
            capacity_bytes: self.capacity,
            bytes: self.cache.as_ref().map_or(0, |c| c.weight()),
            blocks: self.cache.as_ref().map_or(0, |c| c.len() as u64),
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn block(size: usize) -> Arc<Block> {
        let mut b = super::super::block_builder::BlockBuilder::new(16);
        let mut i = 0u64;
        while b.estimated_size() < size {
            let k = crate::key::encode(
                format!("k{i:08}").as_bytes(),
                crate::seqno::SeqNo::new(i + 1),
                1,
            );
            b.add(&k, &[7; 50]);
            i += 1;
        }
        Arc::new(Block::new(Bytes::from(b.finish()), 0).unwrap())
    }

    #[test]
    fn holds_no_more_than_its_capacity() {
        let cache = BlockCache::new(64 << 10);
        let b = block(4096);
        for i in 0..1000 {
            cache.insert(1, i * 4096, b.clone());
            let s = cache.stats();
            assert!(s.bytes <= 64 << 10, "{s:?}");
        }
        let s = cache.stats();
        assert!(s.blocks > 0 && s.blocks < 16, "{s:?}");
        // Blocks too big for the cache are not kept at all.
        cache.insert(2, 0, block(200 << 10));
        assert!(cache.stats().bytes <= 64 << 10);
    }

    #[test]
    fn counts_hits_and_misses() {
        let cache = BlockCache::new(1 << 20);
        assert!(cache.get(1, 0).is_none());
        cache.insert(1, 0, block(1000));
        assert!(cache.get(1, 0).is_some());
        assert!(cache.get(2, 0).is_none());
        let s = cache.stats();
        assert_eq!((s.hits, s.misses, s.blocks), (1, 2, 1));
        let none = BlockCache::new(0);
        none.insert(1, 0, block(100));
        assert!(none.get(1, 0).is_none());
        assert_eq!(none.stats().bytes, 0);
    }

    #[test]
    fn table_ids_are_unique() {
        let a = next_table_id();
        let b = next_table_id();
        assert_ne!(a, b);
    }
}
