//! The engine behind a [`Db`](crate::Db): its parts, put together once recovery is done and
//! taken apart when the store closes.
//!
//! - [`View`]: what readers see — the published tree, the visible seqno, live snapshots.
//! - [`Writer`]: the write path — commit queue, group commit, backpressure, the WAL.
//! - [`Catalog`]: the manifest and the file-number counter.
//! - [`Lifecycle`]: open, closing or poisoned, and the signals threads wait on.
//! - [`CompactionState`]: one compaction at a time, its schedule and history.
//!
//! Flushes and compactions see only the parts they use, through the contexts built by
//! [`Core::flush_job`] and [`Core::compaction_job`]; the threads that run them are in
//! `background.rs`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use parking_lot::Mutex;

use crate::catalog::Catalog;
use crate::compaction::{CompactionState, JobContext, picker};
use crate::config::Config;
use crate::error::Result;
use crate::flush::FlushJob;
use crate::fs::FileLock;
use crate::lifecycle::Lifecycle;
use crate::recovery::Recovered;
use crate::seqno::SeqNo;
use crate::sstable::block_cache::BlockCache;
use crate::sstable::format::Properties;
use crate::stats::{Counters, LevelIo, LevelStats, RecoveryReport, Stats};
use crate::view::View;
use crate::write::Writer;

/// The engine state shared by the handle, the background threads, snapshots and iterators.
pub(crate) struct Core {
    pub dir: PathBuf,
    pub config: Config,
    /// The directory lock, released when the store closes.
    lock: Mutex<Option<Box<dyn FileLock>>>,
    pub view: Arc<View>,
    pub life: Arc<Lifecycle>,
    pub catalog: Arc<Catalog>,
    pub writer: Writer,
    pub compaction: CompactionState,
    pub counters: Arc<Counters>,
    /// What opening the store found.
    pub recovery: RecoveryReport,
    /// The decompressed blocks every table shares.
    pub block_cache: Arc<BlockCache>,
}

impl Core {
    /// Puts the engine together from what recovery found.
    pub(crate) fn assemble(r: Recovered) -> Core {
        let view = Arc::new(View::new(r.state, r.last_seq));
        let life = Arc::new(Lifecycle::default());
        let catalog = Arc::new(Catalog::new(
            Arc::clone(&r.config.fs),
            &r.dir,
            r.manifest,
            r.manifest_state,
            r.next_file,
        ));
        let counters = Arc::new(Counters::default());
        let writer = Writer::new(
            r.config.clone(),
            &r.dir,
            Arc::clone(&view),
            Arc::clone(&life),
            Arc::clone(&catalog),
            Arc::clone(&counters),
            r.wal,
        );
        Core {
            compaction: CompactionState::new(r.config.periodic_compaction),
            dir: r.dir,
            config: r.config,
            lock: Mutex::new(Some(r.lock)),
            view,
            life,
            catalog,
            writer,
            counters,
            recovery: r.report,
            block_cache: r.block_cache,
        }
    }

    /// What a flush works with.
    pub(crate) fn flush_job(&self) -> FlushJob<'_> {
        FlushJob {
            config: &self.config,
            dir: &self.dir,
            view: &self.view,
            catalog: &self.catalog,
            life: &self.life,
            writer: &self.writer,
            counters: &self.counters,
            levels: &self.compaction.levels,
            block_cache: &self.block_cache,
        }
    }

    /// What a compaction works with.
    pub(crate) fn compaction_job(&self) -> JobContext<'_> {
        JobContext {
            config: &self.config,
            dir: &self.dir,
            view: &self.view,
            catalog: &self.catalog,
            life: &self.life,
            levels: &self.compaction.levels,
            block_cache: &self.block_cache,
            current: &self.compaction.current,
        }
    }

    /// Finishes closing once the background threads have stopped: waits for a compaction
    /// started from another thread, syncs and trims the WAL, and releases the directory.
    pub(crate) fn finish_shutdown(&self) -> Result<()> {
        if !self.life.mark_closed() {
            return Ok(());
        }
        // A compaction started from a user thread may still be writing tables: it sees the
        // shutdown flag and stops at its next check, and the directory lock is released only
        // after it has.
        let _job = self.compaction.lock.lock();
        let result = self.writer.close();
        self.lock.lock().take();
        result
    }

    /// Sizes and counters.
    pub(crate) fn stats(&self) -> Stats {
        let state = self.view.current();
        let (wal_segments, wal_bytes) = self.writer.wal_size();
        let c = &self.counters;
        let scores = picker::scores(&self.config, &state.tables);
        let levels: Vec<LevelStats> = (0..state.tables.num_levels())
            .map(|l| {
                let io = self.compaction.levels.get(l);
                let get = |f: fn(&LevelIo) -> &AtomicU64| io.map_or(0, |io| Counters::get(f(io)));
                let sum = |f: fn(&Properties) -> u64| -> u64 {
                    state.tables.level(l).iter().map(|t| f(t.props())).sum()
                };
                LevelStats {
                    tables: state.tables.level(l).len(),
                    bytes: state.tables.level_bytes(l),
                    entries: sum(|p| p.entries),
                    data_blocks: sum(|p| p.data_blocks),
                    compressed_blocks: sum(|p| p.compressed_blocks),
                    index_summary_bytes: state
                        .tables
                        .level(l)
                        .iter()
                        .map(|t| t.index_summary_bytes())
                        .sum(),
                    target_bytes: if l == 0 {
                        0
                    } else {
                        picker::level_target(&self.config, l)
                    },
                    score: scores.get(l).copied().unwrap_or(0.0),
                    bytes_written: get(|io| &io.bytes_written),
                    bytes_read: get(|io| &io.bytes_read),
                    compactions: get(|io| &io.compactions),
                }
            })
            .collect();
        let compaction_bytes_written: u64 = levels.iter().skip(1).map(|l| l.bytes_written).sum();
        let compaction_bytes_read: u64 = levels.iter().map(|l| l.bytes_read).sum();
        let user_bytes = Counters::get(&c.user_bytes);
        let disk_bytes =
            Counters::get(&c.wal_bytes) + Counters::get(&c.flush_bytes) + compaction_bytes_written;
        let read_amplification = 1
            + state.imms.len()
            + state.tables.level(0).len()
            + (1..state.tables.num_levels())
                .filter(|&l| !state.tables.level(l).is_empty())
                .count();
        Stats {
            last_seqno: SeqNo::new(self.view.visible()),
            memtable_bytes: state.mem.approximate_bytes() as u64,
            immutable_memtables: state.imms.len(),
            immutable_memtable_bytes: state
                .imms
                .iter()
                .map(|m| m.approximate_bytes() as u64)
                .sum(),
            levels,
            wal_segments,
            wal_bytes,
            live_snapshots: self.view.live_snapshots(),
            user_bytes_written: Counters::get(&c.user_bytes),
            wal_bytes_written: Counters::get(&c.wal_bytes),
            flush_bytes_written: Counters::get(&c.flush_bytes),
            puts: Counters::get(&c.puts),
            deletes: Counters::get(&c.deletes),
            batches: Counters::get(&c.batches),
            write_groups: Counters::get(&c.groups),
            wal_syncs: Counters::get(&c.syncs),
            flushes: Counters::get(&c.flushes),
            write_stalls: Counters::get(&c.stalls),
            write_stall_micros: Counters::get(&c.stall_micros),
            write_slowdowns: Counters::get(&c.slowdowns),
            write_slowdown_micros: Counters::get(&c.slowdown_micros),
            write_stops: Counters::get(&c.stops),
            write_stop_micros: Counters::get(&c.stop_micros),
            longest_stall_micros: Counters::get(&c.longest_stall_micros),
            pending_compaction_bytes: picker::pending_bytes(&self.config, &state.tables),
            compactions: self
                .compaction
                .levels
                .iter()
                .map(|io| Counters::get(&io.compactions))
                .sum(),
            compaction_bytes_read,
            compaction_bytes_written,
            write_amplification: if user_bytes == 0 {
                0.0
            } else {
                disk_bytes as f64 / user_bytes as f64
            },
            read_amplification,
            conflicts: Counters::get(&c.conflicts),
            block_cache: self.block_cache.stats(),
            recovery: self.recovery.clone(),
        }
    }
}
