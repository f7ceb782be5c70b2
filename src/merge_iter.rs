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
use crate::sstable::format::BlockHandle;
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

impl Source {
    /// The table a seek for `target` searches in this source, when it is a table or a level
    /// (a memtable has none).
    fn table_for_seek(&self, target: &[u8]) -> Option<&Table> {
        match self {
            Source::Mem(_) => None,
            Source::Table(c) => Some(c.table()),
            Source::Level(l) => l.tables.get(l.table_for_seek(target)).map(|t| &**t),
        }
    }
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
/// The children play a tournament (a tree of losers, as in an external merge sort): each
/// inner node of a complete binary tree over the children remembers the child that lost the
/// match played there, and the overall winner is the current entry (smallest key going
/// forward, largest going backward). A step moves the winner and replays only its path to
/// the root: one comparison per level, about log2(children) in all, where a binary heap
/// compares twice at each level it sifts through. Each child's current key is copied beside
/// the tree, so a match compares two buffers instead of asking both children for their keys
/// through their cursors.
pub(crate) struct MergeCursor {
    children: Vec<Source>,
    /// `tree[0]` is the winner (the current child); `tree[n]` for `1 <= n < children` holds
    /// the loser of the match at inner node `n`, whose two sides are nodes `2n` and `2n + 1`
    /// (a node `m >= children` is the leaf of child `m - children`).
    tree: Vec<usize>,
    /// Each child's position, side by side so a match reads one slot per child.
    slots: Vec<Slot>,
    /// How many children are on an entry. With one, a step has nobody to play against and
    /// neither copies its key nor replays.
    live_count: usize,
    forward: bool,
}

impl MergeCursor {
    pub(crate) fn new(children: Vec<Source>) -> MergeCursor {
        let n = children.len();
        MergeCursor {
            children,
            tree: vec![0; n.max(1)],
            slots: (0..n).map(|_| Slot::default()).collect(),
            live_count: 0,
            forward: true,
        }
    }

    /// Before a seek searches its sources one after another, asks each table it will search
    /// for the cache lines of the block the seek lands in: first every block's restart
    /// array, then, once those are on their way, every block's restart keys. The misses of
    /// the sources then overlap instead of following one another, which is most of a seek's
    /// cost over several sorted runs read cold. Nothing is read that the seek does not
    /// check again.
    fn ask_ahead(&self, target: &[u8]) {
        if self.children.len() < 2 {
            return;
        }
        let asked: Vec<(&Table, (usize, BlockHandle))> = self
            .children
            .iter()
            .filter_map(|c| c.table_for_seek(target))
            .filter_map(|t| Some((t, t.ask_for_seek(target)?)))
            .collect();
        for (t, h) in asked {
            t.ask_for_restart_keys(h);
        }
    }

    /// True when child `a` wins over child `b`: it is on an entry and `b` is not, or its
    /// key comes first in the current direction.
    #[inline]
    fn beats(&self, a: usize, b: usize) -> bool {
        let (Some(x), Some(y)) = (self.slots.get(a), self.slots.get(b)) else {
            return false;
        };
        if !(x.live && y.live) {
            return x.live;
        }
        let ord = key::compare(&x.key, &y.key);
        if self.forward {
            ord == Ordering::Less
        } else {
            ord == Ordering::Greater
        }
    }

    /// Copies child `i`'s position (on an entry or not, and its key) beside the tree.
    fn note(&mut self, i: usize) {
        let (Some(c), Some(slot)) = (self.children.get(i), self.slots.get_mut(i)) else {
            return;
        };
        let now = c.valid();
        if slot.live != now {
            slot.live = now;
            if now {
                self.live_count += 1;
            } else {
                self.live_count -= 1;
            }
        }
        if now {
            slot.key.clear();
            slot.key.extend_from_slice(c.key());
        }
    }

    /// Plays the matches below node `node`, storing each loser; returns the winner.
    fn play(&mut self, node: usize) -> usize {
        let n = self.children.len();
        if node >= n {
            return node - n;
        }
        let left = self.play(2 * node);
        let right = self.play(2 * node + 1);
        let (winner, loser) = if self.beats(right, left) {
            (right, left)
        } else {
            (left, right)
        };
        if let Some(slot) = self.tree.get_mut(node) {
            *slot = loser;
        }
        winner
    }

    /// Replays the matches on the path from child `winner`'s leaf to the root, after it
    /// moved.
    fn replay(&mut self, mut winner: usize) {
        let mut node = (winner + self.children.len()) / 2;
        while node > 0 {
            let loser = self.tree.get(node).copied().unwrap_or(winner);
            if self.beats(loser, winner)
                && let Some(slot) = self.tree.get_mut(node)
            {
                *slot = winner;
                winner = loser;
            }
            node /= 2;
        }
        if let Some(top) = self.tree.first_mut() {
            *top = winner;
        }
    }

    /// Notes every child's position and plays the whole tournament, in direction `forward`.
    fn rebuild(&mut self, forward: bool) {
        self.forward = forward;
        for i in 0..self.children.len() {
            self.note(i);
        }
        let winner = if self.children.len() > 1 {
            self.play(1)
        } else {
            0
        };
        if let Some(top) = self.tree.first_mut() {
            *top = winner;
        }
    }

    /// The child the merge is on, if any.
    fn current(&self) -> Option<usize> {
        let top = self.tree.first().copied()?;
        self.slots.get(top).is_some_and(|s| s.live).then_some(top)
    }

    fn current_child(&self) -> Option<&Source> {
        self.current().and_then(|i| self.children.get(i))
    }

    /// The current entry's internal key, or `None` when the merge is on no entry: `valid`
    /// and `key` in one look.
    #[inline]
    pub(crate) fn entry_key(&self) -> Option<&[u8]> {
        self.current_child().map(|c| c.key())
    }

    /// The current entry's internal key and value, or `None` when the merge is on no entry.
    #[inline]
    pub(crate) fn entry(&self) -> Option<(&[u8], &[u8])> {
        self.current_child().map(|c| (c.key(), c.value_ref()))
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

    /// Moves the current child one step in direction `forward` and replays its matches.
    fn step(&mut self, forward: bool) {
        let Some(cur) = self.current() else {
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
        let Some(c) = self.children.get_mut(cur) else {
            return;
        };
        if forward {
            c.next();
        } else {
            c.prev();
        }
        if self.live_count == 1 && c.valid() {
            // Alone on an entry, it stays the winner; no match reads its key until a
            // rebuild brings another child back, and a rebuild copies every key afresh.
            return;
        }
        self.note(cur);
        self.replay(cur);
    }
}

impl Cursor for MergeCursor {
    fn seek(&mut self, target: &[u8]) {
        self.ask_ahead(target);
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
        self.current().is_some()
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

/// One child's position in a [`MergeCursor`].
#[derive(Default)]
struct Slot {
    /// Whether the child is on an entry.
    live: bool,
    /// The child's current key, up to date while it is on an entry (except the winner's
    /// while it is the only one: see `MergeCursor::step`).
    key: Vec<u8>,
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
    /// The position of the first table whose largest key is at or after `target`: the one a
    /// seek searches (the level's length when there is none).
    fn table_for_seek(&self, target: &[u8]) -> usize {
        self.tables
            .partition_point(|t| key::compare(&t.props().largest, target) == Ordering::Less)
    }

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
        let i = self.table_for_seek(target);
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
            if c.valid() {
                return;
            }
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

    /// Memtable sources holding `keys[i]` (user key, seqno) each, and every internal key
    /// in order.
    fn sources(keys: &[Vec<(String, u64)>]) -> (Vec<Source>, Vec<Vec<u8>>) {
        let mut all = Vec::new();
        let mut children: Vec<Source> = Vec::new();
        for src in keys {
            let m = Arc::new(Memtable::new(1, 1 << 20));
            for (user, seq) in src {
                let op = Op {
                    kind: Kind::Put,
                    key: user.as_bytes(),
                    value: b"v",
                };
                m.insert_ops(*seq, &[op]);
                all.push(key::encode(
                    user.as_bytes(),
                    crate::seqno::SeqNo::new(*seq),
                    1,
                ));
            }
            children.push(m.cursor().into());
        }
        all.sort_by(|a, b| key::compare(a, b));
        (children, all)
    }

    /// From no source to nine (so trees of every shape, not only powers of two), with empty
    /// sources, sources that run out early and several versions of one key in different
    /// sources: the merge yields every entry in order forward and backward, and a seek to
    /// any entry followed by steps either way lands where the sorted list says.
    #[test]
    fn merge_of_any_number_of_sources_is_the_sorted_union() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for n in 0..10usize {
            let mut keys: Vec<Vec<(String, u64)>> = vec![Vec::new(); n];
            let mut seq = 0;
            for i in 0..120u64 {
                if n == 0 {
                    break;
                }
                // Source 0 stays empty when there are several; the last one stops early.
                let src = (next() % n as u64) as usize;
                if (n > 1 && src == 0) || (n > 2 && src == n - 1 && i > 40) {
                    continue;
                }
                let user = format!("k{:03}", i / 2);
                seq += 1;
                if let Some(k) = keys.get_mut(src) {
                    k.push((user, seq));
                }
            }
            let (children, all) = sources(&keys);
            let mut c = MergeCursor::new(children);
            let (fwd, back) = crate::cursor::keys_both_ways(&mut c);
            assert_eq!(fwd, all, "{n} sources, forward");
            assert_eq!(back, all, "{n} sources, backward");
            for (at, k) in all.iter().enumerate() {
                c.seek(k);
                assert_eq!(c.key(), &k[..], "{n} sources, seek {at}");
                c.next();
                match all.get(at + 1) {
                    Some(after) => assert_eq!(c.key(), &after[..], "{n} sources, next after {at}"),
                    None => assert!(!c.valid()),
                }
                c.seek(k);
                c.prev();
                match at.checked_sub(1).and_then(|b| all.get(b)) {
                    Some(before) => assert_eq!(c.key(), &before[..], "{n} sources, prev of {at}"),
                    None => assert!(!c.valid()),
                }
            }
            c.seek(b"zzz");
            assert!(!c.valid(), "{n} sources, seek past the end");
        }
    }

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
        let (fwd, back) = crate::cursor::keys_both_ways(&mut c);
        assert_eq!(fwd, all);
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
