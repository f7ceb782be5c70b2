//! The live tables, by level: level 0 holds flushed tables that may overlap (newest first);
//! levels 1 and up each hold sorted, non-overlapping tables, older data in deeper levels.
//!
//! A `TableSet` is immutable; changes build a new one, which readers pick up through the
//! LSM state (`state.rs`) while readers of the old one finish undisturbed.
//!
//! While a compaction that merges several sorted runs is writing, the set also carries its
//! [`Progress`]: the set as the compaction will leave it, with the outputs finished so far.
//! That set is complete for every key up to the last finished output's last key, so reads
//! of those keys use it and merge one run where the inputs are several. The manifest never
//! names it; it is dropped when the compaction installs its result or fails.
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
    /// The running compaction's finished part, if it shows one.
    progress: Option<Progress>,
}

/// The finished part of a running compaction.
#[derive(Debug)]
pub(crate) struct Progress {
    /// The highest user key the finished outputs account for: every version of every key
    /// at or below it has been written out or dropped.
    boundary: Vec<u8>,
    /// The set with the compaction's inputs taken out and its finished outputs put in
    /// (never itself with progress); exact for user keys up to `boundary`.
    tables: Arc<TableSet>,
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
            progress: None,
        }
    }

    /// A new set with `removed` (level, number) taken out and `added` put in; a running
    /// compaction's progress is carried over, with the same change made to it.
    pub(crate) fn apply(
        &self,
        added: &[(usize, Arc<Table>)],
        removed: &[(usize, u64)],
    ) -> TableSet {
        let mut next = self.changed(added, removed);
        next.progress = self.progress.as_ref().map(|p| Progress {
            boundary: p.boundary.clone(),
            tables: Arc::new(p.tables.changed(added, removed)),
        });
        next
    }

    /// This set, showing the finished part of the running compaction: its `inputs` replaced
    /// by the `outputs` finished so far, for user keys up to `boundary`.
    pub(crate) fn with_progress(
        &self,
        outputs: &[(usize, Arc<Table>)],
        inputs: &[(usize, u64)],
        boundary: &[u8],
    ) -> TableSet {
        let mut next = self.without_progress();
        next.progress = Some(Progress {
            boundary: boundary.to_vec(),
            tables: Arc::new(self.changed(outputs, inputs)),
        });
        next
    }

    /// This set without a running compaction's progress.
    pub(crate) fn without_progress(&self) -> TableSet {
        TableSet {
            levels: self.levels.clone(),
            l0_seeks: AtomicU64::new(0),
            progress: None,
        }
    }

    /// The highest user key the running compaction's finished part accounts for.
    pub(crate) fn progress_boundary(&self) -> Option<&[u8]> {
        self.progress.as_ref().map(|p| &p.boundary[..])
    }

    /// The set to read user key `key` from in place of this one (`None` stands for the
    /// smallest key): the running compaction's finished part, when it accounts for `key`.
    pub(crate) fn finished_part_for(&self, key: Option<&[u8]>) -> Option<&TableSet> {
        self.progress
            .as_ref()
            .filter(|p| key.is_none_or(|k| key::compare_bytes(k, &p.boundary).is_le()))
            .map(|p| &*p.tables)
    }

    /// `apply` without the progress.
    fn changed(&self, added: &[(usize, Arc<Table>)], removed: &[(usize, u64)]) -> TableSet {
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
        if let Some(finished) = self.finished_part_for(Some(user_key)) {
            return finished.get(user_key, hash, snap);
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fs::{FileSystem, StdFs};
    use crate::key::Kind;
    use crate::memtable::Memtable;
    use crate::seqno::SeqNo;
    use crate::sstable::compression::Compression;
    use crate::sstable::table_builder::{TableBuilder, TableOptions};
    use crate::state::LsmState;
    use crate::view::View;
    use bytes::Bytes;

    fn user(i: u32) -> Vec<u8> {
        format!("key{i:04}").into_bytes()
    }

    /// A table numbered `number` holding `user(i)` for every `i` in `keys`, each with one
    /// version of seqno `seq` and value `value`.
    fn table(
        dir: &std::path::Path,
        number: u64,
        keys: &[u32],
        seq: u64,
        value: &str,
    ) -> Arc<Table> {
        let fs: Arc<dyn FileSystem> = Arc::new(StdFs);
        let path = dir.join(crate::file_names::table(number));
        let opts = TableOptions {
            block_bytes: 256,
            restart_interval: 4,
            filter_bits_per_key: 10,
            compression: Compression::None,
        };
        let mut b = TableBuilder::new(fs.create(&path).unwrap(), opts);
        for &i in keys {
            let k = key::encode(&user(i), SeqNo::new(seq), Kind::Put as u8);
            b.add(&k, value.as_bytes()).unwrap();
        }
        b.finish().unwrap();
        Arc::new(Table::open(fs, &path, number).unwrap())
    }

    /// Every live entry of `set` from `start` on, read forward as `Db::range` does.
    fn scan(set: &TableSet, start: Option<u32>) -> Vec<(Bytes, Bytes)> {
        scan_below(set, start, None)
    }

    /// [`scan`] up to `end` (excluded), when given.
    fn scan_below(set: &TableSet, start: Option<u32>, end: Option<u32>) -> Vec<(Bytes, Bytes)> {
        let state = LsmState {
            mem: Arc::new(Memtable::new(1, 1 << 20)),
            imms: Vec::new(),
            tables: Arc::new(set.apply(&[], &[])),
        };
        let view = View::new(state, 100);
        let (guard, state) = view.pin();
        let lower = start.map_or(std::ops::Bound::Unbounded, |s| {
            std::ops::Bound::Included(user(s))
        });
        let upper = end.map_or(std::ops::Bound::Unbounded, |e| {
            std::ops::Bound::Excluded(user(e))
        });
        crate::iter::Range::new(state, guard, (lower, upper))
            .map(|r| r.unwrap())
            .collect()
    }

    fn value_of(set: &TableSet, i: u32) -> Option<Bytes> {
        let k = user(i);
        set.get(&k, crate::hash::hash64(&k), 100)
            .unwrap()
            .map(|h| h.value)
    }

    /// A compaction's finished part stands in for its inputs up to the boundary and no
    /// further; the outputs here hold other values than the inputs, to show which one a read
    /// took (a real compaction writes the inputs' values).
    #[test]
    fn reads_take_a_compactions_finished_part_up_to_its_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let evens: Vec<u32> = (0..100).step_by(2).collect();
        let odds: Vec<u32> = (1..100).step_by(2).collect();
        let old = table(dir.path(), 1, &evens, 1, "in");
        let new = table(dir.path(), 2, &odds, 2, "in");
        let below: Vec<u32> = (0..=49).collect();
        let out = table(dir.path(), 3, &below, 2, "out");
        let inputs = TableSet::from_levels(vec![vec![old, new]]);
        let set = inputs.with_progress(&[(1, out)], &[(0, 1), (0, 2)], &user(49));
        let expected = |from: u32| -> Vec<(Bytes, Bytes)> {
            (from..100)
                .map(|i| {
                    let v = if i <= 49 { "out" } else { "in" };
                    (Bytes::from(user(i)), Bytes::from(v))
                })
                .collect()
        };
        for start in [None, Some(0), Some(30), Some(49), Some(50), Some(77)] {
            let got = scan(&set, start);
            assert_eq!(got, expected(start.unwrap_or(0)), "from {start:?}");
        }
        assert_eq!(value_of(&set, 10).as_deref(), Some(&b"out"[..]));
        assert_eq!(value_of(&set, 49).as_deref(), Some(&b"out"[..]));
        assert_eq!(value_of(&set, 50).as_deref(), Some(&b"in"[..]));
        assert_eq!(value_of(&set, 99).as_deref(), Some(&b"in"[..]));

        // A flush during the compaction reaches both parts, newest first.
        let flushed = table(dir.path(), 4, &[10, 70], 3, "flushed");
        let set = set.apply(&[(0, flushed)], &[]);
        assert_eq!(value_of(&set, 10).as_deref(), Some(&b"flushed"[..]));
        assert_eq!(value_of(&set, 70).as_deref(), Some(&b"flushed"[..]));
        assert_eq!(value_of(&set, 11).as_deref(), Some(&b"out"[..]));
        let got = scan(&set, Some(9));
        assert_eq!(got.len(), 91);
        assert_eq!(&got[1].1[..], b"flushed");
        assert_eq!(&got[2].1[..], b"out");
        assert_eq!(&got[61].1[..], b"flushed");
        assert_eq!(&got[60].1[..], b"in");
        // A scan that ends past the boundary but before the next key the finished part
        // holds (the flushed 70) goes on over the inputs, and ends at its own bound.
        for (from, to) in [(40, 60), (49, 51), (20, 70), (45, 71)] {
            let got = scan_below(&set, Some(from), Some(to));
            let keys: Vec<Bytes> = got.iter().map(|(k, _)| k.clone()).collect();
            let want: Vec<Bytes> = (from..to).map(|i| Bytes::from(user(i))).collect();
            assert_eq!(keys, want, "from {from} to {to}");
        }

        // Without the progress every read goes to the inputs.
        let set = set.without_progress();
        assert!(set.progress_boundary().is_none());
        assert_eq!(value_of(&set, 11).as_deref(), Some(&b"in"[..]));
        assert!(scan(&set, Some(0)).iter().all(|(_, v)| &v[..] != b"out"));
    }
}
