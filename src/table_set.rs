//! The live tables, by level: level 0 holds flushed tables that may overlap (newest first);
//! levels 1 and up each hold sorted, non-overlapping tables, older data in deeper levels.
//!
//! A `TableSet` is immutable; changes build a new one, which readers pick up through the
//! LSM state (`state.rs`) while readers of the old one finish undisturbed.
#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};

use crate::error::Result;
use crate::key;
use crate::limits::NUM_LEVELS;
use crate::lookup::Hit;
use crate::merge_iter::{LevelCursor, Source};
use crate::sstable::table_reader::Table;

/// Tables per level.
#[derive(Debug)]
pub(crate) struct TableSet {
    levels: Vec<Arc<[Arc<Table>]>>,
    /// Scans that had to seek through level 0 of this set (see
    /// [`Config::seek_compaction_bytes`](crate::Config::seek_compaction_bytes)).
    l0_seeks: AtomicU64,
}

impl TableSet {
    /// Builds a set from tables per level, putting each level in its canonical order.
    pub(crate) fn from_levels(mut levels: Vec<Vec<Arc<Table>>>) -> TableSet {
        levels.resize_with(NUM_LEVELS, Vec::new);
        for (i, l) in levels.iter_mut().enumerate() {
            if i == 0 {
                l.sort_by_key(|t| std::cmp::Reverse(t.props().max_seq));
            } else {
                l.sort_by(|a, b| key::compare(&a.props().smallest, &b.props().smallest));
            }
        }
        TableSet {
            levels: levels.into_iter().map(Arc::from).collect(),
            l0_seeks: AtomicU64::new(0),
        }
    }

    /// A new set with `removed` (level, number) taken out and `added` put in.
    pub(crate) fn apply(
        &self,
        added: &[(usize, Arc<Table>)],
        removed: &[(usize, u64)],
    ) -> TableSet {
        let mut levels: Vec<Vec<Arc<Table>>> = self.levels.iter().map(|l| l.to_vec()).collect();
        for &(level, number) in removed {
            if let Some(l) = levels.get_mut(level) {
                l.retain(|t| t.number() != number);
            }
        }
        for (level, t) in added {
            if let Some(l) = levels.get_mut(*level) {
                l.push(Arc::clone(t));
            }
        }
        TableSet::from_levels(levels)
    }

    /// Counts a scan that seeks through this set; returns the count of such scans that had
    /// level-0 tables to merge, or 0 when level 0 is empty.
    pub(crate) fn charge_seek(&self) -> u64 {
        if self.level(0).is_empty() {
            return 0;
        }
        self.l0_seeks.fetch_add(1, AtomicOrdering::Relaxed) + 1
    }

    /// Scans counted by [`charge_seek`](Self::charge_seek) that merged level-0 tables.
    pub(crate) fn l0_seeks(&self) -> u64 {
        self.l0_seeks.load(AtomicOrdering::Relaxed)
    }

    /// The tables of `level`.
    pub(crate) fn level(&self, level: usize) -> &[Arc<Table>] {
        self.levels.get(level).map_or(&[], |l| l)
    }

    /// The newest version of `user_key` at or below `snap`; `hash` is
    /// [`hash64`](crate::hash::hash64) of `user_key`.
    pub(crate) fn get(&self, user_key: &[u8], hash: u64, snap: u64) -> Result<Option<Hit>> {
        for t in self.level(0) {
            if let Some(hit) = t.get(user_key, hash, snap)? {
                return Ok(Some(hit));
            }
        }
        for level in self.levels.iter().skip(1) {
            let i = level.partition_point(|t| t.largest_user_key().cmp(user_key) == Ordering::Less);
            if let Some(t) = level.get(i)
                && t.smallest_user_key() <= user_key
                && let Some(hit) = t.get(user_key, hash, snap)?
            {
                return Ok(Some(hit));
            }
        }
        Ok(None)
    }

    /// Adds one cursor per level-0 table and one per deeper non-empty level.
    pub(crate) fn add_cursors(&self, out: &mut Vec<Source>) {
        for t in self.level(0) {
            out.push(t.cursor().into());
        }
        for level in self.levels.iter().skip(1) {
            if !level.is_empty() {
                out.push(LevelCursor::new(Arc::clone(level)).into());
            }
        }
    }

    /// Total file bytes in `level`.
    pub(crate) fn level_bytes(&self, level: usize) -> u64 {
        self.level(level).iter().map(|t| t.file_size()).sum()
    }

    /// Number of levels (including empty ones).
    pub(crate) fn num_levels(&self) -> usize {
        self.levels.len()
    }
}
