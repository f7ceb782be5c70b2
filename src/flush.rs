//! Flushing: writing the oldest frozen memtable to a level-0 table.
//!
//! The table is written and fsynced under a fresh file number, the directory is synced, the
//! manifest records the new table and the new oldest-needed WAL segment, and only then is
//! the new state published and the WAL segments the memtable covered deleted. A crash at any
//! point leaves either the memtable's WAL segments or the table (or both) reachable.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::db::Core;
use crate::error::Result;
use crate::file_names;
use crate::key;
use crate::manifest::{Edit, TableMeta};
use crate::retention::RetentionFilter;
use crate::sstable::table_builder::{TableBuilder, TableOptions};
use crate::sstable::table_reader::Table;
use crate::state::LsmState;
use crate::stats::Counters;
use crate::wal::segment;

/// A manifest bigger than this is rewritten as a single snapshot edit.
const MANIFEST_REWRITE_BYTES: u64 = 4 << 20;

impl Core {
    pub(crate) fn table_options(&self) -> TableOptions {
        TableOptions {
            block_bytes: self.config.block_bytes,
            restart_interval: self.config.block_restart_interval,
            filter_bits_per_key: self.config.filter_bits_per_key,
        }
    }

    /// Flushes the oldest frozen memtable; false when there was none.
    pub(crate) fn flush_oldest(&self) -> Result<bool> {
        let state = self.view.current();
        let Some(imm) = state.imms.last().cloned() else {
            return Ok(false);
        };
        let number = self.allocate_file_number();
        let path = self.dir.join(file_names::table(number));
        let mut builder = TableBuilder::new(self.fs.create(&path)?, self.table_options());
        let mut filter = RetentionFilter::new(self.view.retention(self.config.history.versions));
        for (k, v) in imm.iter() {
            if let Some(p) = key::parse(&k)
                && filter.keep(&p, false)
            {
                builder.add(&k, &v)?;
            }
        }
        let (_, size) = builder.finish()?;
        self.fs.sync_dir(&self.dir)?;
        let table = Arc::new(Table::open(Arc::clone(&self.fs), &path, number)?);

        let mut versions = self.versions.lock();
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
            next_file: Some(self.next_file.load(Ordering::Acquire)),
            last_seq: Some(imm.max_seq()),
            log_number: Some(log_number),
            added: vec![(0, TableMeta::of(&table))],
            removed: Vec::new(),
        };
        self.log_edit(&mut versions, &edit)?;
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
        drop(versions);
        let retired = self.wal.lock().take_below(log_number);
        segment::remove_segments(&*self.fs, &self.dir, &retired)?;
        Counters::add(&self.counters.flushes, 1);
        if let Some(io) = self.compaction.levels.first() {
            io.bytes_written.fetch_add(size, Ordering::Relaxed);
        }
        Counters::add(&self.counters.flush_bytes, size);
        tracing::debug!(
            table = number,
            bytes = size,
            entries = table.props().entries,
            dropped = filter.dropped,
            "flushed memtable"
        );
        Ok(true)
    }

    /// Records `edit` in the manifest (rewriting the manifest when it has grown large).
    pub(crate) fn log_edit(
        &self,
        versions: &mut crate::db::VersionState,
        edit: &Edit,
    ) -> Result<()> {
        // A job that started before the store was poisoned must not log its edit: after a
        // failed manifest write the in-memory state may be ahead of the manifest.
        self.check_writable()?;
        versions
            .state
            .apply(edit)
            .map_err(|r| crate::error::Error::Corruption {
                file: self
                    .dir
                    .join(file_names::manifest(versions.manifest.number())),
                offset: 0,
                reason: format!("refused manifest edit: {r}"),
            })?;
        let written = self.write_edit(versions, edit);
        if let Err(e) = &written {
            // The edit is applied in memory but maybe not on disk, and a torn record may end
            // the manifest: nothing more may be logged behind it.
            self.poison("manifest write", e);
        }
        written
    }

    fn write_edit(&self, versions: &mut crate::db::VersionState, edit: &Edit) -> Result<()> {
        if versions.manifest.size() > MANIFEST_REWRITE_BYTES {
            let number = self.allocate_file_number();
            versions.state.next_file = self.next_file.load(Ordering::Acquire);
            let fresh = crate::manifest::ManifestWriter::create(
                Arc::clone(&self.fs),
                &self.dir,
                number,
                &versions.state,
            )?;
            let old = std::mem::replace(&mut versions.manifest, fresh);
            let name = file_names::manifest(old.number());
            if let Err(e) = self.fs.remove_file(&self.dir.join(name)) {
                tracing::warn!(error = %e, "could not delete old manifest");
            }
            Ok(())
        } else {
            versions.manifest.log(edit)
        }
    }
}
