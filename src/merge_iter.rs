//! Combining cursors: [`MergeCursor`] merges overlapping sources (memtables, level-0 tables,
//! levels) into one internal-key-ordered stream; [`LevelCursor`] walks the non-overlapping
//! tables of one level as if they were one table, opening each only when reached.
#![deny(clippy::indexing_slicing)]

use std::cmp::Ordering;
use std::sync::Arc;

use bytes::Bytes;

use crate::cursor::{BoxCursor, Cursor};
use crate::error::Result;
use crate::key;
use crate::sstable::table_reader::{Table, TableCursor};

/// Merges any number of cursors. Internal keys are unique across sources (every write has its
/// own seqno), so the merge never has to break ties.
pub(crate) struct MergeCursor {
    children: Vec<BoxCursor>,
    current: Option<usize>,
    forward: bool,
}

impl MergeCursor {
    pub(crate) fn new(children: Vec<BoxCursor>) -> MergeCursor {
        MergeCursor {
            children,
            current: None,
            forward: true,
        }
    }

    fn pick(&mut self, want: Ordering) {
        let mut best: Option<(usize, &BoxCursor)> = None;
        for (i, c) in self.children.iter().enumerate() {
            if !c.valid() {
                continue;
            }
            best = match best {
                Some((b, bc)) if key::compare(c.key(), bc.key()) != want => Some((b, bc)),
                _ => Some((i, c)),
            };
        }
        self.current = best.map(|(i, _)| i);
    }

    fn current_child(&self) -> Option<&BoxCursor> {
        self.current.and_then(|i| self.children.get(i))
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
        self.forward = forward;
    }
}

impl Cursor for MergeCursor {
    fn seek(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek(target);
        }
        self.forward = true;
        self.pick(Ordering::Less);
    }

    fn seek_to_first(&mut self) {
        for c in &mut self.children {
            c.seek_to_first();
        }
        self.forward = true;
        self.pick(Ordering::Less);
    }

    fn seek_for_prev(&mut self, target: &[u8]) {
        for c in &mut self.children {
            c.seek_for_prev(target);
        }
        self.forward = false;
        self.pick(Ordering::Greater);
    }

    fn seek_to_last(&mut self) {
        for c in &mut self.children {
            c.seek_to_last();
        }
        self.forward = false;
        self.pick(Ordering::Greater);
    }

    fn next(&mut self) {
        let Some(cur) = self.current else { return };
        if !self.forward {
            self.realign(cur, true);
        }
        if let Some(c) = self.children.get_mut(cur) {
            c.next();
        }
        self.pick(Ordering::Less);
    }

    fn prev(&mut self) {
        let Some(cur) = self.current else { return };
        if self.forward {
            self.realign(cur, false);
        }
        if let Some(c) = self.children.get_mut(cur) {
            c.prev();
        }
        self.pick(Ordering::Greater);
    }

    fn valid(&self) -> bool {
        self.current.is_some()
    }

    fn key(&self) -> &[u8] {
        self.current_child().map_or(&[][..], |c| c.key())
    }

    fn value(&self) -> Bytes {
        self.current_child().map(|c| c.value()).unwrap_or_default()
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
}

impl LevelCursor {
    pub(crate) fn new(tables: Arc<[Arc<Table>]>) -> LevelCursor {
        LevelCursor {
            tables,
            index: 0,
            cur: None,
        }
    }

    fn open(&mut self, i: usize) -> bool {
        match self.tables.get(i) {
            Some(t) => {
                self.index = i;
                self.cur = Some(t.cursor());
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

    fn status(&self) -> Result<()> {
        self.cur.as_ref().map_or(Ok(()), |c| c.status())
    }
}
