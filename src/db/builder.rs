//! [`DbBuilder`]: sets a [`Config`] step by step and opens the store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Db;
use crate::config::{Config, PeriodicCompaction, RecoveryMode, SyncMode};
use crate::error::Result;
use crate::fs::FileSystem;
use crate::limits::NUM_LEVELS;
use crate::sstable::compression::Compression;

/// Builds a [`Config`] step by step and opens the store.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use strata::{Db, SyncMode};
/// let db = Db::builder(dir.path())
///     .memtable_bytes(8 << 20)
///     .sync_mode(SyncMode::Buffered)
///     .history_versions(10)
///     .open()?;
/// db.put("k", "v")?;
/// # Ok::<_, strata::Error>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct DbBuilder {
    path: PathBuf,
    config: Config,
}

impl DbBuilder {
    pub(crate) fn new(path: &Path) -> DbBuilder {
        DbBuilder {
            path: path.to_path_buf(),
            config: Config::default(),
        }
    }

    /// Replaces the whole configuration.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// See [`Config::memtable_bytes`].
    pub fn memtable_bytes(mut self, n: usize) -> Self {
        self.config.memtable_bytes = n;
        self
    }

    /// See [`Config::max_immutable_memtables`].
    pub fn max_immutable_memtables(mut self, n: usize) -> Self {
        self.config.max_immutable_memtables = n;
        self
    }

    /// See [`Config::wal_segment_bytes`].
    pub fn wal_segment_bytes(mut self, n: u64) -> Self {
        self.config.wal_segment_bytes = n;
        self
    }

    /// See [`Config::sync`].
    pub fn sync_mode(mut self, mode: SyncMode) -> Self {
        self.config.sync = mode;
        self
    }

    /// See [`Config::block_bytes`].
    pub fn block_bytes(mut self, n: usize) -> Self {
        self.config.block_bytes = n;
        self
    }

    /// See [`Config::block_restart_interval`].
    pub fn block_restart_interval(mut self, n: usize) -> Self {
        self.config.block_restart_interval = n;
        self
    }

    /// See [`Config::filter_bits_per_key`].
    pub fn filter_bits_per_key(mut self, n: u32) -> Self {
        self.config.filter_bits_per_key = n;
        self
    }

    /// Compression of every level's tables, level 0 first; see [`Config::compression`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use strata::{Compression, Db};
    /// // Level 0 stays uncompressed, levels 1 and 2 use LZ4, the rest too.
    /// let db = Db::builder(dir.path())
    ///     .compression_per_level([
    ///         Compression::None,
    ///         Compression::Lz4,
    ///         Compression::Lz4,
    ///         Compression::Lz4,
    ///         Compression::Lz4,
    ///         Compression::Lz4,
    ///         Compression::Lz4,
    ///     ])
    ///     .open()?;
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn compression_per_level(mut self, levels: [Compression; NUM_LEVELS]) -> Self {
        self.config.compression = levels;
        self
    }

    /// The same compression for every level; see [`Config::compression`].
    pub fn compression(mut self, c: Compression) -> Self {
        self.config.compression = [c; NUM_LEVELS];
        self
    }

    /// See [`Config::block_cache_bytes`].
    pub fn block_cache_bytes(mut self, n: u64) -> Self {
        self.config.block_cache_bytes = n;
        self
    }

    /// Keep the newest `n` versions of every key; see [`HistoryRetention`](crate::HistoryRetention).
    pub fn history_versions(mut self, n: usize) -> Self {
        self.config.history.versions = n;
        self
    }

    /// Level sizing: level 1 holds `level1_bytes`, each deeper level `multiplier` times more,
    /// and compaction cuts output tables at `target_table_bytes`.
    pub fn level_sizes(
        mut self,
        level1_bytes: u64,
        multiplier: u64,
        target_table_bytes: u64,
    ) -> Self {
        self.config.level1_bytes = level1_bytes;
        self.config.level_multiplier = multiplier;
        self.config.target_table_bytes = target_table_bytes;
        self
    }

    /// Level-0 limits: compaction trigger, slowdown and stop (see
    /// [`Config::l0_compaction_trigger`]).
    pub fn l0_limits(mut self, trigger: usize, slowdown: usize, stop: usize) -> Self {
        self.config.l0_compaction_trigger = trigger;
        self.config.l0_slowdown_tables = slowdown;
        self.config.l0_stop_tables = stop;
        self
    }

    /// See [`Config::max_wal_bytes`].
    pub fn max_wal_bytes(mut self, n: u64) -> Self {
        self.config.max_wal_bytes = n;
        self
    }

    /// See [`Config::seek_compaction_bytes`].
    pub fn seek_compaction_bytes(mut self, n: u64) -> Self {
        self.config.seek_compaction_bytes = n;
        self
    }

    /// See [`Config::flush_after_recovery`].
    pub fn flush_after_recovery(mut self, yes: bool) -> Self {
        self.config.flush_after_recovery = yes;
        self
    }

    /// See [`Config::flush_on_close`].
    pub fn flush_on_close(mut self, yes: bool) -> Self {
        self.config.flush_on_close = yes;
        self
    }

    /// See [`Config::periodic_compaction`].
    pub fn periodic_compaction(mut self, p: PeriodicCompaction) -> Self {
        self.config.periodic_compaction = p;
        self
    }

    /// See [`Config::recovery`].
    pub fn recovery_mode(mut self, mode: RecoveryMode) -> Self {
        self.config.recovery = mode;
        self
    }

    /// See [`Config::fs`].
    pub fn filesystem(mut self, fs: Arc<dyn FileSystem>) -> Self {
        self.config.fs = fs;
        self
    }

    /// Opens (or creates) the store.
    pub fn open(self) -> Result<Db> {
        Db::open_with(self.path, self.config)
    }
}
