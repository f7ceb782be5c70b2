//! Figures about a running store: [`Stats`] (a plain snapshot of counters and sizes) and the
//! atomic counters the engine bumps as it works.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::seqno::SeqNo;
use crate::sstable::block_cache::BlockCacheStats;

/// Sizes and counters of a store, as returned by [`Db::stats`](crate::Db::stats).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct Stats {
    /// The highest seqno visible to readers.
    pub last_seqno: SeqNo,
    /// Approximate bytes in the mutable memtable.
    pub memtable_bytes: u64,
    /// Frozen memtables waiting for their flush.
    pub immutable_memtables: usize,
    /// Approximate bytes in frozen memtables.
    pub immutable_memtable_bytes: u64,
    /// Per-level table figures, level 0 first.
    pub levels: Vec<LevelStats>,
    /// Live WAL segments.
    pub wal_segments: usize,
    /// Bytes in live WAL segments.
    pub wal_bytes: u64,
    /// Live snapshots and iterators.
    pub live_snapshots: usize,
    /// Key and value bytes accepted from callers.
    pub user_bytes_written: u64,
    /// Bytes appended to the WAL.
    pub wal_bytes_written: u64,
    /// Bytes written to tables by flushes.
    pub flush_bytes_written: u64,
    /// Puts applied.
    pub puts: u64,
    /// Deletes applied.
    pub deletes: u64,
    /// Batches committed (each `put`, `delete` and `write` is one).
    pub batches: u64,
    /// Commit groups (WAL records); `batches / write_groups` is the group-commit factor.
    pub write_groups: u64,
    /// WAL fsyncs.
    pub wal_syncs: u64,
    /// Memtables flushed to tables.
    pub flushes: u64,
    /// Times a writer waited for a flush because too many memtables were frozen.
    pub write_stalls: u64,
    /// Total time writers spent waiting for flushes, in microseconds.
    pub write_stall_micros: u64,
    /// Commit groups delayed because compaction fell behind (gradual backpressure).
    pub write_slowdowns: u64,
    /// Total delay from slowdowns, in microseconds.
    pub write_slowdown_micros: u64,
    /// Times writes stopped at a hard limit (level-0 tables or compaction debt).
    pub write_stops: u64,
    /// Total time writes were stopped, in microseconds.
    pub write_stop_micros: u64,
    /// The longest single stall, slowdown or stop, in microseconds.
    pub longest_stall_micros: u64,
    /// Estimated bytes compaction must rewrite to bring every level under its target.
    pub pending_compaction_bytes: u64,
    /// Compactions run (all kinds, moves included).
    pub compactions: u64,
    /// Bytes read by compactions.
    pub compaction_bytes_read: u64,
    /// Bytes written by compactions.
    pub compaction_bytes_written: u64,
    /// Bytes written to disk (WAL, flushes, compactions) per byte of keys and values
    /// accepted from callers.
    pub write_amplification: f64,
    /// Sources a point read may consult: memtables, level-0 tables and non-empty deeper levels.
    pub read_amplification: usize,
    /// Compare-and-set or precondition failures.
    pub conflicts: u64,
    /// What the last open recovered.
    pub recovery: RecoveryReport,
    /// The cache of decompressed blocks: its bound, size, hits and misses.
    pub block_cache: BlockCacheStats,
}

/// Figures for one level.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct LevelStats {
    /// Tables in the level.
    pub tables: usize,
    /// Bytes of table files.
    pub bytes: u64,
    /// Entries (versions and tombstones) in the level's tables.
    pub entries: u64,
    /// Data blocks in the level's tables.
    pub data_blocks: u64,
    /// Of which stored compressed (see [`Config::compression`](crate::Config::compression)).
    pub compressed_blocks: u64,
    /// Memory held by the index summaries of the level's tables: 24 bytes per data block
    /// (a rank and the block's handle) of each table searched since it was opened.
    pub index_summary_bytes: u64,
    /// The level's size target (level 0: none, 0).
    pub target_bytes: u64,
    /// Compaction score: at least 1 means compaction is due.
    pub score: f64,
    /// Bytes written into this level (flushes for level 0, compactions below).
    pub bytes_written: u64,
    /// Bytes read from this level by compactions.
    pub bytes_read: u64,
    /// Compactions that wrote into this level.
    pub compactions: u64,
}

/// What recovery did when the store was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// WAL segments read.
    pub segments_replayed: usize,
    /// WAL records (commit groups) replayed.
    pub records_replayed: u64,
    /// Writes replayed into the memtable.
    pub writes_replayed: u64,
    /// A damaged tail cut from the newest segment, if any.
    pub torn_tail: Option<TornTail>,
    /// Records that could not be recovered under a salvaging [`RecoveryMode`](crate::RecoveryMode).
    pub records_dropped: u64,
    /// Table files no manifest named, removed: the output of a flush or compaction that was
    /// interrupted before it was recorded, or the inputs of a recorded compaction whose
    /// deletion was interrupted. Harmless, but a sign the last process did not close.
    pub stale_tables_removed: usize,
    /// Where the manifest's torn last edit started, if it had one: an edit cut short by a
    /// crash, never acted on and ignored.
    pub manifest_torn_at: Option<u64>,
    /// Table files no manifest named, found next to a torn manifest edit and moved into the
    /// store's `lost/` directory instead of being deleted: recovery keeps what it cannot
    /// prove unreferenced. The store never reads them again; an operator may delete them.
    pub tables_set_aside: Vec<PathBuf>,
}

/// A torn or damaged tail cut off the newest WAL segment during recovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment file.
    pub segment: PathBuf,
    /// Offset where the damage starts (the segment was cut here).
    pub offset: u64,
    /// Bytes removed.
    pub bytes_dropped: u64,
    /// What was wrong.
    pub reason: String,
}

/// Per-level I/O counters.
#[derive(Debug, Default)]
pub(crate) struct LevelIo {
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
    pub compactions: AtomicU64,
}

/// Counters bumped by the engine.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub user_bytes: AtomicU64,
    pub wal_bytes: AtomicU64,
    pub flush_bytes: AtomicU64,
    pub puts: AtomicU64,
    pub deletes: AtomicU64,
    pub batches: AtomicU64,
    pub groups: AtomicU64,
    pub syncs: AtomicU64,
    pub flushes: AtomicU64,
    pub stalls: AtomicU64,
    pub stall_micros: AtomicU64,
    pub slowdowns: AtomicU64,
    pub slowdown_micros: AtomicU64,
    pub stops: AtomicU64,
    pub stop_micros: AtomicU64,
    pub longest_stall_micros: AtomicU64,
    pub conflicts: AtomicU64,
}

impl Counters {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// Counts one stall of `d` in `count`/`micros` and in the longest-stall figure.
    pub(crate) fn note_stall(&self, count: &AtomicU64, micros: &AtomicU64, d: std::time::Duration) {
        let us = d.as_micros() as u64;
        count.fetch_add(1, Ordering::Relaxed);
        micros.fetch_add(us, Ordering::Relaxed);
        self.longest_stall_micros.fetch_max(us, Ordering::Relaxed);
    }
}
