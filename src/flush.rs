//! Flushing: writing the oldest frozen memtable to a level-0 table.
//!
//! The table is written and fsynced under a fresh file number, the directory is synced, the
//! manifest records the new table and the new oldest-needed WAL segment, and only then are
//! the WAL segments the memtable covered deleted and the new state published. A crash at any
//! point leaves either the memtable's WAL segments or the table (or both) reachable.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::Result;
use crate::file_names;
use crate::key;
use crate::lifecycle::Lifecycle;
use crate::manifest::{Edit, TableMeta};
use crate::retention::RetentionFilter;
use crate::sstable::block_cache::BlockCache;
use crate::sstable::table_builder::TableBuilder;
use crate::sstable::table_reader::Table;
use crate::state::LsmState;
use crate::stats::{Counters, LevelIo};
use crate::view::View;
use crate::write::Writer;

/// What a flush reads and changes.
pub(crate) struct FlushJob<'a> {
    pub config: &'a Config,
    pub dir: &'a Path,
    /// Where the frozen memtables are, and where the new table is published.
    pub view: &'a View,
    /// Numbers the table and records it.
    pub catalog: &'a Catalog,
    pub life: &'a Lifecycle,
    /// Holds the WAL segments the flush retires.
    pub writer: &'a Writer,
    pub counters: &'a Counters,
    /// Per-level I/O counters (a flush writes to level 0).
    pub levels: &'a [LevelIo],
    /// Where the new table's decompressed blocks are kept.
    pub block_cache: &'a Arc<BlockCache>,
}

impl FlushJob<'_> {
    /// Flushes the oldest frozen memtable; false when there was none.
    pub(crate) fn run(&self) -> Result<bool> {
        let state = self.view.current();
        let Some(imm) = state.imms.last().cloned() else {
            return Ok(false);
        };
        let fs = &self.config.fs;
        let number = self.catalog.allocate_file_number();
        let path = self.dir.join(file_names::table(number));
        let mut builder = TableBuilder::new(fs.create(&path)?, self.config.table_options(0));
        let mut filter = RetentionFilter::new(self.view.retention(self.config.history.versions));
        for (k, v) in imm.iter() {
            if let Some(p) = key::parse(&k)
                && filter.keep(&p, false)
            {
                builder.add(&k, &v)?;
            }
        }
        let (_, size) = builder.finish()?;
        fs.sync_dir(self.dir)?;
        let table = Arc::new(
            Table::open(Arc::clone(fs), &path, number)?.with_cache(Arc::clone(self.block_cache)),
        );

        let mut log = self.catalog.lock();
        // The memtable frozen right after this one holds the oldest write still only in the WAL.
        let now = self.view.current();
        let pos = now.imms.iter().position(|m| Arc::ptr_eq(m, &imm));
        let log_number = match pos {
            Some(i) if i > 0 => now
                .imms
                .get(i - 1)
                .map_or(now.mem.first_segment(), |m| m.first_segment()),
            _ => now.mem.first_segment(),
        };
        let edit = Edit {
            next_file: Some(self.catalog.next_file()),
            last_seq: Some(imm.max_seq()),
            log_number: Some(log_number),
            added: vec![(0, TableMeta::of(&table))],
            removed: Vec::new(),
        };
        self.catalog.log_edit(&mut log, &edit, self.life)?;
        // Everything a finished flush promises (its WAL segments gone, its counters counted)
        // is done before the new state is published: a `Db::flush` caller returns once it
        // sees the memtable gone from the published state. (Taking the WAL's mutex under the
        // catalog's is the one order both are ever taken in.)
        self.writer.remove_segments_below(log_number)?;
        Counters::add(&self.counters.flushes, 1);
        if let Some(io) = self.levels.first() {
            io.bytes_written.fetch_add(size, Ordering::Relaxed);
        }
        Counters::add(&self.counters.flush_bytes, size);
        self.view.publish(|cur| LsmState {
            mem: Arc::clone(&cur.mem),
            imms: cur
                .imms
                .iter()
                .filter(|m| !Arc::ptr_eq(m, &imm))
                .cloned()
                .collect(),
            tables: Arc::new(cur.tables.apply(&[(0, Arc::clone(&table))], &[])),
        });
        drop(log);
        tracing::debug!(
            table = number,
            bytes = size,
            entries = table.props().entries,
            dropped = filter.dropped,
            "flushed memtable"
        );
        Ok(true)
    }
}
