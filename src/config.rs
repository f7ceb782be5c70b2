//! Store configuration: [`Config`], the durability and recovery policies, and the periodic
//! compaction schedule. [`DbBuilder`](crate::DbBuilder) sets it step by step.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fs::{FileSystem, StdFs};
use crate::limits::NUM_LEVELS;
use crate::sstable::compression::Compression;
use crate::sstable::table_builder::TableOptions;

/// When a write is made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// Every write is fsynced before it is acknowledged (concurrent writers share one fsync).
    /// Survives process crashes, kernel panics and power loss.
    #[default]
    Always,
    /// Writes are handed to the operating system before they are acknowledged, and fsynced by
    /// [`Db::sync`](crate::Db::sync), [`Db::flush`](crate::Db::flush), [`Db::close`](crate::Db::close) and when a WAL segment is sealed. Survives a
    /// process crash; a power loss or kernel panic can lose writes since the last sync — but
    /// never a write before one that survived (recovery yields a prefix of the history).
    Buffered,
}

/// What recovery does with damaged WAL records (modelled on RocksDB's WAL recovery modes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecoveryMode {
    /// Any damage, even a torn tail of the newest segment, fails the open.
    AbsoluteConsistency,
    /// A torn or damaged tail of the newest segment (the write in flight during a crash) is
    /// cut off and reported; damage anywhere else fails the open with
    /// [`Error::Corruption`]. The default.
    #[default]
    TolerateCorruptedTail,
    /// Replay stops at the first damage anywhere; everything after it is dropped, so the
    /// store opens at the last consistent point in time.
    PointInTime,
    /// Every intact record is replayed and damaged ones are skipped. Salvages the most data
    /// but may leave holes in the history; for disaster recovery only.
    SkipAnyCorruptedRecords,
}

/// How much history compaction keeps.
///
/// The newest `versions` versions of every key are kept (a tombstone counts as a version),
/// plus, for every live [`Snapshot`](crate::Snapshot) and iterator, the version it sees.
/// Older versions may disappear at any flush or compaction. A key whose newest version is a
/// tombstone is removed entirely — tombstone and history — once compaction reaches the bottom
/// level and no snapshot needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryRetention {
    /// Versions kept per key (at least 1).
    pub versions: usize,
}

impl Default for HistoryRetention {
    fn default() -> Self {
        HistoryRetention { versions: 1 }
    }
}

/// Store settings. Build one with [`Db::builder`](crate::Db::builder) or start from `Config::default()`.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Config {
    /// Memtable size at which it is frozen and flushed to a table. Default 24 MiB.
    ///
    /// Memtables are most of a store's memory: the active one and up to
    /// [`Config::max_immutable_memtables`] frozen ones waiting for their flush, so the
    /// defaults hold at most 48 MiB of writes in memory (plus allocator slack).
    pub memtable_bytes: usize,
    /// Frozen memtables allowed to wait for their flush before writes stall. Default 1, as
    /// in LevelDB and RocksDB: a flush writes faster than the commit path fills a memtable,
    /// so a second waiting memtable buys memory, not throughput.
    pub max_immutable_memtables: usize,
    /// Size at which the active WAL segment is sealed and a new one started. Default 16 MiB.
    /// The active segment and the next one (made ready ahead of use) are allocated on disk at
    /// this size, so an open store holds twice this much disk space for its WAL.
    pub wal_segment_bytes: u64,
    /// Durability of writes. Default [`SyncMode::Always`].
    pub sync: SyncMode,
    /// Target size of table data blocks. Default 4 KiB.
    pub block_bytes: usize,
    /// Entries between restart points in data blocks. Default 16.
    pub block_restart_interval: usize,
    /// Bloom filter bits per key (about 1% false positives at 10). Default 10.
    pub filter_bits_per_key: u32,
    /// How the data blocks of tables written into each level are compressed, level 0 first.
    /// Default: none for levels 0 and 1, [`Compression::Lz4`] for levels 2 and deeper.
    ///
    /// The top levels are small, rewritten soon and read the most, so they stay
    /// uncompressed and are read in place from the memory map; the deeper levels hold
    /// about nine tenths of the data and are rewritten least often, so that is where
    /// compression saves space for the least work. Flushes write level 0; a compaction
    /// writes its output level (a table moved down a level keeps how it was written).
    pub compression: [Compression; NUM_LEVELS],
    /// Bytes of decompressed data blocks kept in memory, shared by all tables, so hot reads
    /// of compressed blocks do not decompress them again; 0 disables the cache.
    /// Uncompressed blocks are never cached: they are read in place. Default 32 MiB.
    pub block_cache_bytes: u64,
    /// History kept per key. Default: the newest version only.
    pub history: HistoryRetention,
    /// What to do with damaged WAL records on open.
    pub recovery: RecoveryMode,
    /// Level-0 tables that trigger a compaction into level 1. Default 4.
    pub l0_compaction_trigger: usize,
    /// Level-0 tables at which writes start to be slowed down. Default 12.
    pub l0_slowdown_tables: usize,
    /// Level-0 tables at which writes stop until compaction catches up. Default 24.
    pub l0_stop_tables: usize,
    /// Read-triggered compaction of level 0 (after LevelDB's seek compaction): every scan
    /// that has to merge level-0 tables is charged this many bytes of compaction work per
    /// level-0 table, and once the charges reach the bytes a compaction of level 0 into
    /// level 1 would read, that compaction runs even below `l0_compaction_trigger`. A store
    /// that is scanned more than it is written then serves its scans from fewer sorted runs.
    /// Default 16 KiB; 0 turns it off.
    pub seek_compaction_bytes: u64,
    /// Target size of level 1; each deeper level is `level_multiplier` times larger.
    /// Default 256 MiB, as RocksDB's `max_bytes_for_level_base`: a store of up to about that
    /// size keeps its tables in levels 0 and 1, so once level 0 is compacted a scan merges
    /// one sorted run of tables (plus the memtables), and fills do not spend time
    /// compressing into level 2. Level 1 is uncompressed by default: a smaller target
    /// makes such a store smaller on disk and slower to read.
    pub level1_bytes: u64,
    /// Size ratio between adjacent levels. Default 10.
    pub level_multiplier: u64,
    /// Size at which compaction output is cut into a new table. Default 16 MiB.
    pub target_table_bytes: u64,
    /// Estimated compaction debt at which writes start to be slowed down. Default 1 GiB.
    pub pending_compaction_slowdown_bytes: u64,
    /// Estimated compaction debt at which writes stop. Default 4 GiB.
    pub pending_compaction_stop_bytes: u64,
    /// Total WAL size that forces the memtable to be flushed, which bounds recovery time.
    /// Default 128 MiB.
    pub max_wal_bytes: u64,
    /// Write what the WAL replay put in the memtable to a table right after opening, in the
    /// background (as LevelDB and RocksDB flush recovered memtables), so reads soon merge
    /// tables only and the replayed WAL segments can go. Opening does not wait for it.
    /// Default true.
    pub flush_after_recovery: bool,
    /// Write the memtable to a table when the store is closed (or its last handle is
    /// dropped), so a closed store holds no WAL: it takes less space when its tables are
    /// compressed, and the next open replays nothing. Closing then takes one flush longer
    /// (at most `memtable_bytes` of writes), and the flush applies [`Config::history`] as
    /// configured for this open. A store that is not closed (a crash) recovers from its WAL
    /// either way. Default false: closing is quick and the WAL is replayed on the next open.
    pub flush_on_close: bool,
    /// The periodic full compaction (disabled by default); changeable at runtime with
    /// [`Db::set_periodic_compaction`](crate::Db::set_periodic_compaction).
    pub periodic_compaction: PeriodicCompaction,
    /// The filesystem used for every file operation.
    pub fs: Arc<dyn FileSystem>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            memtable_bytes: 24 << 20,
            max_immutable_memtables: 1,
            wal_segment_bytes: 16 << 20,
            sync: SyncMode::Always,
            block_bytes: 4096,
            block_restart_interval: 16,
            filter_bits_per_key: 10,
            compression: DEFAULT_COMPRESSION,
            block_cache_bytes: 32 << 20,
            history: HistoryRetention::default(),
            recovery: RecoveryMode::default(),
            l0_compaction_trigger: 4,
            l0_slowdown_tables: 12,
            l0_stop_tables: 24,
            seek_compaction_bytes: 16 << 10,
            level1_bytes: 256 << 20,
            level_multiplier: 10,
            target_table_bytes: 16 << 20,
            pending_compaction_slowdown_bytes: 1 << 30,
            pending_compaction_stop_bytes: 4 << 30,
            max_wal_bytes: 128 << 20,
            flush_after_recovery: true,
            flush_on_close: false,
            periodic_compaction: PeriodicCompaction::default(),
            fs: Arc::new(StdFs),
        }
    }
}

/// The default of [`Config::compression`].
const DEFAULT_COMPRESSION: [Compression; NUM_LEVELS] = {
    let mut c = [Compression::Lz4; NUM_LEVELS];
    c[0] = Compression::None;
    c[1] = Compression::None;
    c
};

impl Config {
    /// How tables written into `level` are laid out.
    pub(crate) fn table_options(&self, level: usize) -> TableOptions {
        TableOptions {
            block_bytes: self.block_bytes,
            restart_interval: self.block_restart_interval,
            filter_bits_per_key: self.filter_bits_per_key,
            compression: self.compression_for(level),
        }
    }

    /// The compression of tables written into `level` (the deepest level's for any deeper).
    pub fn compression_for(&self, level: usize) -> Compression {
        self.compression
            .get(level.min(NUM_LEVELS - 1))
            .copied()
            .unwrap_or_default()
    }

    /// Checks every setting's range.
    pub fn validate(&self) -> Result<()> {
        let bad = |s: &str| Err(Error::InvalidConfig(s.to_string()));
        if self.memtable_bytes < 4096 {
            return bad("memtable_bytes must be at least 4096");
        }
        if self.max_immutable_memtables == 0 {
            return bad("max_immutable_memtables must be at least 1");
        }
        if self.wal_segment_bytes < 4096 {
            return bad("wal_segment_bytes must be at least 4096");
        }
        if !(256..=(64 << 20)).contains(&self.block_bytes) {
            return bad("block_bytes must be between 256 bytes and 64 MiB");
        }
        if !(1..=1024).contains(&self.block_restart_interval) {
            return bad("block_restart_interval must be between 1 and 1024");
        }
        if self.filter_bits_per_key > 64 {
            return bad("filter_bits_per_key must be at most 64");
        }
        if let Some(c) = self.compression.iter().find(|c| !c.is_available()) {
            return Err(Error::InvalidConfig(format!(
                "compression {c} is not available in this build (enable the `{c}` feature)"
            )));
        }
        if self.history.versions == 0 {
            return bad("history.versions must be at least 1");
        }
        if self.l0_compaction_trigger == 0
            || self.l0_slowdown_tables < self.l0_compaction_trigger
            || self.l0_stop_tables <= self.l0_slowdown_tables
        {
            return bad("need 0 < l0_compaction_trigger <= l0_slowdown_tables < l0_stop_tables");
        }
        if self.level1_bytes < 4096 || self.level_multiplier < 2 || self.target_table_bytes < 4096 {
            return bad(
                "level1_bytes and target_table_bytes must be at least 4096, level_multiplier at least 2",
            );
        }
        if self.pending_compaction_stop_bytes <= self.pending_compaction_slowdown_bytes {
            return bad(
                "pending_compaction_stop_bytes must exceed pending_compaction_slowdown_bytes",
            );
        }
        if self.max_wal_bytes < self.wal_segment_bytes {
            return bad("max_wal_bytes must be at least wal_segment_bytes");
        }
        if self.periodic_compaction.enabled && self.periodic_compaction.interval.is_zero() {
            return bad("periodic_compaction.interval must be positive");
        }
        Ok(())
    }
}

/// The schedule of the periodic full compaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeriodicCompaction {
    /// Whether it runs at all.
    pub enabled: bool,
    /// Time between runs.
    pub interval: Duration,
    /// Minimum time between two full compactions: a periodic run, or an unforced
    /// [`Db::try_compact`](crate::Db::try_compact), waits at least this long after the last.
    pub min_interval: Duration,
}

impl Default for PeriodicCompaction {
    fn default() -> Self {
        PeriodicCompaction {
            enabled: false,
            interval: Duration::from_secs(3600),
            min_interval: Duration::from_secs(600),
        }
    }
}
