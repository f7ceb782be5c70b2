//! Combining cursors: [`MergeCursor`] merges overlapping sources (memtables, level-0 tables,
//! levels) into one internal-key-ordered stream; [`LevelCursor`] walks the non-overlapping
//! tables of one level as if they were one table, opening each only when reached; [`Source`]
//! is one input of a merge.
#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::cursor::Cursor;
use crate::error::Result;
use crate::key;
use crate::memtable::MemCursor;
use crate::sstable::table_reader::{Table, TableCursor};

/// One input of a merge. An enum rather than a boxed trait object: the merge asks its
/// inputs for their keys several times per entry, and a direct call can be inlined.
pub(crate) enum Source {
    /// A memtable, mutable or immutable.
    Mem(MemCursor),
    /// One table (level 0, or a compaction input).
    Table(TableCursor),
    /// The tables of one level past level 0.
    Level(LevelCursor),
}

impl From<MemCursor> for Source {
    fn from(c: MemCursor) -> Source {
        Source::Mem(c)
    }
}

impl From<TableCursor> for Source {
    fn from(c: TableCursor) -> Source {
        Source::Table(c)
    }
}

impl From<LevelCursor> for Source {
    fn from(c: LevelCursor) -> Source {
        Source::Level(c)
    }
}

/// Calls one method on whichever cursor a [`Source`] holds.
macro_rules! each {
    ($s:expr, $c:ident => $e:expr) => {
        match $s {
            Source::Mem($c) => $e,
            Source::Table($c) => $e,
            Source::Level($c) => $e,
        }
    };
}

impl Cursor for Source {
    fn seek(&mut self, target: &[u8]) {
        each!(self, c => c.seek(target))
    }

    fn seek_to_first(&mut self) {
        each!(self, c => c.seek_to_first())
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        each!(self, c => c.seek_for_prev(target))
    }

    fn seek_to_last(&mut self) {
        each!(self, c => c.seek_to_last())
    }

    #[inline]
    fn next(&mut self) {
        each!(self, c => c.next())
    }

    #[inline]
    fn prev(&mut self) {
        each!(self, c => c.prev())
    }

    #[inline]
    fn valid(&self) -> bool {
        each!(self, c => c.valid())
    }

    #[inline]
    fn key(&self) -> &[u8] {
        each!(self, c => c.key())
    }

    #[inline]
    fn value(&self) -> Bytes {
        each!(self, c => c.value())
    }

    #[inline]
    fn value_ref(&self) -> &[u8] {
        each!(self, c => c.value_ref())
    }

    fn status(&self) -> Result<()> {
        each!(self, c => c.status())
    }
}

/// Merges any number of cursors. Internal keys are unique across sources (every write has its
/// own seqno), so the merge never has to break ties.
///
/// The valid children are kept in a binary heap ordered by their current keys (smallest on
/// top going forward, largest going backward), so a step costs one move of one child and
/// about log2(children) key comparisons, not a comparison with every child.
pub(crate) struct MergeCursor {
    children: Vec<Source>,
    /// Indices of the valid children, heap-ordered; `heap[0]` is the current one.
    heap: Vec<usize>,
    forward: bool,
}

impl MergeCursor {
    pub(crate) fn new(children: Vec<Source>) -> MergeCursor {
        let heap = Vec::with_capacity(children.len());
        MergeCursor {
            children,
            heap,
            forward: true,
        }
    }

    /// True when child `a` belongs above child `b` in the heap.
    fn above(&self, a: usize, b: usize) -> bool {
        let (Some(ca), Some(cb)) = (self.children.get(a), self.children.get(b)) else {
            return false;
        };
        let ord = key::compare(ca.key(), cb.key());
        if self.forward {
            ord == Ordering::Less
        } else {
            ord == Ordering::Greater
        }
    }

    fn heap_at(&self, i: usize) -> usize {
        self.heap.get(i).copied().unwrap_or_default()
    }

    /// Restores the heap order below position `i`.
    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let (l, r) = (2 * i + 1, 2 * i + 2);
            let mut top = i;
            if l < n && self.above(self.heap_at(l), self.heap_at(top)) {
                top = l;
            }
            if r < n && self.above(self.heap_at(r), self.heap_at(top)) {
                top = r;
            }
            if top == i {
                return;
            }
            self.heap.swap(i, top);
            i = top;
        }
    }

    /// Rebuilds the heap from every valid child, in direction `forward`.
    fn rebuild(&mut self, forward: bool) {
        self.forward = forward;
        self.heap.clear();
        for (i, c) in self.children.iter().enumerate() {
            if c.valid() {
                self.heap.push(i);
            }
        }
        for i in (0..self.heap.len() / 2).rev() {
            self.sift_down(i);
        }
    }

    fn current_child(&self) -> Option<&Source> {
        self.heap.first().and_then(|&i| self.children.get(i))
    }

    /// Moves every child other than the current one to the entry that follows (or, going
    /// backwards, precedes) the current key, after a change of direction.
    fn realign(&mut self, cur: usize, forward: bool) {
        let Some(k) = self.children.get(cur).map(|c| c.key().to_vec()) else {
            return;
        };
        for (i, c) in self.children.iter_mut().enumerate() {
            if i == cur {
                continue;
            }
            if forward {
                c.seek(&k);
                if c.valid() && key::compare(c.key(), &k) == Ordering::Equal {
                    c.next();
                }
            } else {
                c.seek_for_prev(&k);
                if c.valid() && key::compare(c.key(), &k) == Ordering::Equal {
                    c.prev();
                }
            }
        }
    }

    /// Moves the current child one step in direction `forward` and restores the heap.
    fn step(&mut self, forward: bool) {
        let Some(&cur) = self.heap.first() else {
            return;
        };
        if self.forward != forward {
            self.realign(cur, forward);
            if let Some(c) = self.children.get_mut(cur) {
                if forward {
                    c.next();
                } else {
                    c.prev();
                }
            }
            self.rebuild(forward);
            return;
        }
        let still_valid = match self.children.get_mut(cur) {
            Some(c) => {
                if forward {
                    c.next();
                } else {
                    c.prev();
                }
                c.valid()
            }
            None => false,
        };
        if !still_valid {
            self.heap.swap_remove(0);
        }
        self.sift_down(0);
    }
}

impl Cursor for MergeCursor {
    fn seek(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek(target);
        }
        self.rebuild(true);
    }

    fn seek_to_first(&mut self) {
        for c in &mut self.children {
            c.seek_to_first();
        }
        self.rebuild(true);
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek_for_prev(target);
        }
        self.rebuild(false);
    }

    fn seek_to_last(&mut self) {
        for c in &mut self.children {
            c.seek_to_last();
        }
        self.rebuild(false);
    }

    fn next(&mut self) {
        self.step(true);
    }

    fn prev(&mut self) {
        self.step(false);
    }

    fn valid(&self) -> bool {
        !self.heap.is_empty()
    }

    fn key(&self) -> &[u8] {
        self.current_child().map_or(&[][..], |c| c.key())
    }

    fn value(&self) -> Bytes {
        self.current_child().map(|c| c.value()).unwrap_or_default()
    }

    fn value_ref(&self) -> &[u8] {
        self.current_child().map_or(&[][..], |c| c.value_ref())
    }

    fn status(&self) -> Result<()> {
        for c in &self.children {
            c.status()?;
        }
        Ok(())
    }
}

/// Walks a level's tables, which are sorted and do not overlap.
pub(crate) struct LevelCursor {
    tables: Arc<[Arc<Table>]>,
    index: usize,
    cur: Option<TableCursor>,
    /// Whether tables are opened with [`Table::sequential_cursor`].
    sequential: bool,
}

impl LevelCursor {
    pub(crate) fn new(tables: Arc<[Arc<Table>]>) -> LevelCursor {
        LevelCursor {
            tables,
            index: 0,
            cur: None,
            sequential: false,
        }
    }

    /// A cursor for one forward pass over the level (a compaction's input), which releases
    /// the pages of the tables it has read (see [`Table::sequential_cursor`]).
    pub(crate) fn sequential(tables: Arc<[Arc<Table>]>) -> LevelCursor {
        LevelCursor {
            sequential: true,
            ..LevelCursor::new(tables)
        }
    }

    fn open(&mut self, i: usize) -> bool {
        match self.tables.get(i) {
            Some(t) => {
                self.index = i;
                self.cur = Some(if self.sequential {
                    t.sequential_cursor()
                } else {
                    t.cursor()
                });
                true
            }
            None => {
                self.cur = None;
                false
            }
        }
    }

    fn failed(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.status().is_err())
    }

    fn skip_forward(&mut self) {
        while !self.failed() && self.cur.as_ref().is_some_and(|c| !c.valid()) {
            if !self.open(self.index + 1) {
                return;
            }
            if let Some(c) = &mut self.cur {
                c.seek_to_first();
            }
        }
    }

    fn skip_backward(&mut self) {
        while !self.failed() && self.cur.as_ref().is_some_and(|c| !c.valid()) {
            if self.index == 0 {
                self.cur = None;
                return;
            }
            self.open(self.index - 1);
            if let Some(c) = &mut self.cur {
                c.seek_to_last();
            }
        }
    }
}

impl Cursor for LevelCursor {
    fn seek(&mut self, target: &[u8]) {
        let i = self
            .tables
            .partition_point(|t| key::compare(&t.props().largest, target) == Ordering::Less);
        if self.open(i)
            && let Some(c) = &mut self.cur
        {
            c.seek(target);
        }
        self.skip_forward();
    }

    fn seek_to_first(&mut self) {
        if self.open(0)
            && let Some(c) = &mut self.cur
        {
            c.seek_to_first();
        }
        self.skip_forward();
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        let n = self
            .tables
            .partition_point(|t| key::compare(&t.props().smallest, target) != Ordering::Greater);
        if n == 0 {
            self.cur = None;
            return;
        }
        if self.open(n - 1)
            && let Some(c) = &mut self.cur
        {
            c.seek_for_prev(target);
        }
        self.skip_backward();
    }

    fn seek_to_last(&mut self) {
        let n = self.tables.len();
        if n == 0 {
            self.cur = None;
            return;
        }
        if self.open(n - 1)
            && let Some(c) = &mut self.cur
        {
            c.seek_to_last();
        }
        self.skip_backward();
    }

    fn next(&mut self) {
        if let Some(c) = &mut self.cur {
            c.next();
        }
        self.skip_forward();
    }

    fn prev(&mut self) {
        if let Some(c) = &mut self.cur {
            c.prev();
        }
        self.skip_backward();
    }

    fn valid(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| c.valid())
    }

    fn key(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[][..], |c| c.key())
    }

    fn value(&self) -> Bytes {
        self.cur.as_ref().map(|c| c.value()).unwrap_or_default()
    }

    fn value_ref(&self) -> &[u8] {
        self.cur.as_ref().map_or(&[][..], |c| c.value_ref())
    }

    fn status(&self) -> Result<()> {
        self.cur.as_ref().map_or(Ok(()), |c| c.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::Op;
    use crate::key::Kind;
    use crate::memtable::Memtable;

    /// Three sources with interleaved keys; the merge walks them in order both ways and
    /// across changes of direction at every position.
    #[test]
    fn merge_follows_every_source_in_both_directions() {
        let mut all = Vec::new();
        let mut children: Vec<Source> = Vec::new();
        for src in 0..3u64 {
            let m = Arc::new(Memtable::new(1, 1 << 20));
            for i in 0..60u64 {
                if (i * 7 + src) % 3 != 0 && src != 2 {
                    continue;
                }
                let seq = src * 1000 + i + 1;
                let user = format!("k{i:03}");
                let op = Op {
                    kind: Kind::Put,
                    key: user.as_bytes(),
                    value: b"v",
                };
                m.insert_ops(seq, &[op]);
                all.push(key::encode(
                    user.as_bytes(),
                    crate::seqno::SeqNo::new(seq),
                    1,
                ));
            }
            children.push(m.cursor().into());
        }
        all.sort_by(|a, b| key::compare(a, b));
        let mut c = MergeCursor::new(children);
        c.seek_to_first();
        let mut fwd = Vec::new();
        while c.valid() {
            fwd.push(c.key().to_vec());
            c.next();
        }
        assert_eq!(fwd, all);
        c.seek_to_last();
        let mut back = Vec::new();
        while c.valid() {
            back.push(c.key().to_vec());
            c.prev();
        }
        back.reverse();
        assert_eq!(back, all);
        for at in 1..all.len() - 1 {
            c.seek(&all[at]);
            assert_eq!(c.key(), &all[at][..]);
            c.prev();
            assert_eq!(c.key(), &all[at - 1][..], "prev after seek to {at}");
            c.next();
            c.next();
            assert_eq!(c.key(), &all[at + 1][..], "next after prev at {at}");
            c.prev();
            assert_eq!(c.key(), &all[at][..]);
        }
    }
}
