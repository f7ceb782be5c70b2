//! What a reader sees: the mutable memtable, the frozen memtables waiting for their flush,
//! and the table set. Immutable; every change publishes a new `LsmState`, so a reader holds a
//! consistent picture for as long as it likes by keeping an `Arc`.

use std::sync::Arc;

use crate::error::Result;
use crate::hash::hash64;
use crate::lookup::Hit;
use crate::memtable::Memtable;
use crate::merge_iter::{MergeCursor, Source};
use crate::table_set::TableSet;

/// One published picture of the tree.
#[derive(Debug, Clone)]
pub(crate) struct LsmState {
    /// The memtable receiving writes.
    pub mem: Arc<Memtable>,
    /// Frozen memtables, newest first.
    pub imms: Vec<Arc<Memtable>>,
    /// Tables.
    pub tables: Arc<TableSet>,
}

impl LsmState {
    /// The newest version of `key` at or below `snap`, searching newest data first.
    pub(crate) fn get(&self, key: &[u8], snap: u64) -> Result<Option<Hit>> {
        let hash = hash64(key);
        if let Some(hit) = self.mem.get(key, hash, snap) {
            return Ok(Some(hit));
        }
        for m in &self.imms {
            if let Some(hit) = m.get(key, hash, snap) {
                return Ok(Some(hit));
            }
        }
        self.tables.get(key, hash, snap)
    }

    /// A cursor merging every source.
    pub(crate) fn cursor(&self) -> MergeCursor {
        self.cursor_over(&self.tables)
    }

    /// A cursor for a forward scan from user key `start` (the first key if `None`). While a
    /// compaction shows its finished part and `start` lies within it, the cursor reads that
    /// part and the second value is `true`: it is exact only up to the tables'
    /// [`progress_boundary`](TableSet::progress_boundary), and the scan must move to [`cursor`](Self::cursor)
    /// past it.
    pub(crate) fn scan_cursor(&self, start: Option<&[u8]>) -> (MergeCursor, bool) {
        match self.tables.finished_part_for(start) {
            Some(finished) => (self.cursor_over(finished), true),
            None => (self.cursor(), false),
        }
    }

    fn cursor_over(&self, tables: &TableSet) -> MergeCursor {
        let mut children: Vec<Source> = Vec::with_capacity(2 + self.imms.len() + 8);
        children.push(self.mem.cursor().into());
        for m in &self.imms {
            children.push(m.cursor().into());
        }
        tables.add_cursors(&mut children);
        MergeCursor::new(children)
    }
}
