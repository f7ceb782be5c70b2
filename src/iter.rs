//! User-facing iterators: [`Range`] (keys and their visible values, both directions) and
//! [`Versions`] (one key's history).
//!
//! Both own everything they read — the LSM state (memtables and tables stay alive) and a
//! snapshot registration (versions they see stay retained) — so they are `'static + Send`
//! and read a fixed point in time while writes continue.
#![deny(clippy::indexing_slicing)]

use std::ops::{
    Bound, Range as StdRange, RangeBounds, RangeFrom, RangeFull, RangeInclusive, RangeTo,
    RangeToInclusive,
};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::cursor::Cursor;
use crate::error::{Error, Result};
use crate::key::{self, KIND_SEEK, Kind};
use crate::merge_iter::MergeCursor;
use crate::seqno::SeqNo;
use crate::state::LsmState;
use crate::view::SnapshotGuard;

pub(crate) type Bounds = (Bound<Vec<u8>>, Bound<Vec<u8>>);

/// A range of keys, as [`Db::range`](crate::Db::range),
/// [`Snapshot::range`](crate::Snapshot::range) and
/// [`Db::compact_range`](crate::Db::compact_range) take it: any of Rust's range expressions
/// over keys — `a..b`, `a..=b`, `a..`, `..b`, `..=b` and `..` — or a pair of [`Bound`]s.
/// A key is anything that is `AsRef<[u8]>` (`&str`, `String`, `&[u8]`, `Vec<u8>`, byte
/// arrays...). Implemented for those types only.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use std::ops::Bound;
/// let db = strata::Db::open(dir.path())?;
/// db.put("a", "1")?;
/// db.put("b", "2")?;
/// assert_eq!(db.range(..).count(), 2);
/// assert_eq!(db.range("b"..).count(), 1);
/// assert_eq!(db.range((Bound::Excluded("a"), Bound::Unbounded)).count(), 1);
/// # Ok::<_, strata::Error>(())
/// ```
pub trait KeyRange: sealed::Sealed {}

mod sealed {
    use std::ops::Bound;

    /// Keeps [`KeyRange`](super::KeyRange) to the range types it is documented for.
    pub trait Sealed {
        /// The range as owned bounds.
        fn owned_bounds(&self) -> (Bound<Vec<u8>>, Bound<Vec<u8>>);
    }
}

/// Copies a `RangeBounds` over byte strings into owned bounds.
fn owned_bounds<K: AsRef<[u8]> + ?Sized, R: RangeBounds<K> + ?Sized>(range: &R) -> Bounds {
    let own = |b: Bound<&K>| match b {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (own(range.start_bound()), own(range.end_bound()))
}

impl KeyRange for RangeFull {}
impl sealed::Sealed for RangeFull {
    fn owned_bounds(&self) -> Bounds {
        (Bound::Unbounded, Bound::Unbounded)
    }
}

macro_rules! key_ranges {
    ($($range:ident),*) => {$(
        impl<K: AsRef<[u8]>> KeyRange for $range<K> {}
        impl<K: AsRef<[u8]>> sealed::Sealed for $range<K> {
            fn owned_bounds(&self) -> Bounds {
                owned_bounds::<K, _>(self)
            }
        }
    )*};
}

key_ranges!(
    StdRange,
    RangeInclusive,
    RangeFrom,
    RangeTo,
    RangeToInclusive
);

impl<K: AsRef<[u8]>> KeyRange for (Bound<K>, Bound<K>) {}
impl<K: AsRef<[u8]>> sealed::Sealed for (Bound<K>, Bound<K>) {
    fn owned_bounds(&self) -> Bounds {
        owned_bounds::<K, _>(self)
    }
}

/// The owned bounds of `range`.
pub(crate) fn key_bounds(range: &impl KeyRange) -> Bounds {
    sealed::Sealed::owned_bounds(range)
}

/// Bounds covering every key that starts with `prefix`.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> Bounds {
    let upper = key::prefix_successor(prefix).map_or(Bound::Unbounded, Bound::Excluded);
    (Bound::Included(prefix.to_vec()), upper)
}

fn corrupt_key() -> Error {
    Error::Corruption {
        file: Default::default(),
        offset: 0,
        reason: "malformed internal key".into(),
    }
}

/// An iterator over the live entries of a key range, as of one seqno.
///
/// Yields `Result<(key, value)>` in ascending key order, or descending with
/// [`Iterator::rev`] / [`DoubleEndedIterator::next_back`]; both ends can be consumed and
/// they stop where they meet. An error (damaged table) is yielded once and ends iteration.
/// Values share the table or memtable memory they were read from; keys are copied, short
/// ones end to end into small shared chunks, so a key kept keeps at most 1 KiB alive.
/// [`Range::next_ref`] lends each entry instead, for scans that need no owned copy.
/// Created by [`Db::range`](crate::Db::range), [`Db::prefix`](crate::Db::prefix),
/// [`Db::iter`](crate::Db::iter) and their [`Snapshot`](crate::Snapshot) counterparts.
pub struct Range {
    state: Arc<LsmState>,
    guard: Arc<SnapshotGuard>,
    lower: Bound<Vec<u8>>,
    upper: Bound<Vec<u8>>,
    front: Option<MergeCursor>,
    back: Option<MergeCursor>,
    /// The last key each end returned; the ends stop where they meet.
    front_last: Option<Vec<u8>>,
    back_last: Option<Vec<u8>>,
    /// The front cursor still stands on the entry it returned last.
    front_on_entry: bool,
    /// The front cursor reads a running compaction's finished part (see
    /// [`LsmState::scan_cursor`]) and is replaced past that part's boundary.
    front_capped: bool,
    /// Where returned keys are copied to.
    keys: KeyArena,
    /// Key whose older versions are being skipped.
    scratch: Vec<u8>,
    done: bool,
    /// Yielded once when the iteration ends (an iterator made on a closed store).
    error: Option<Error>,
}

impl std::fmt::Debug for Range {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range")
            .field("seqno", &self.guard.seq())
            .field("lower", &self.lower)
            .field("upper", &self.upper)
            .finish_non_exhaustive()
    }
}

impl Range {
    pub(crate) fn new(state: Arc<LsmState>, guard: Arc<SnapshotGuard>, bounds: Bounds) -> Range {
        Range {
            state,
            guard,
            lower: bounds.0,
            upper: bounds.1,
            front: None,
            back: None,
            front_last: None,
            back_last: None,
            front_on_entry: false,
            front_capped: false,
            keys: KeyArena::default(),
            scratch: Vec::new(),
            done: false,
            error: None,
        }
    }

    /// An iterator that yields `e` and ends.
    pub(crate) fn failed(state: Arc<LsmState>, guard: Arc<SnapshotGuard>, e: Error) -> Range {
        let mut r = Range::new(state, guard, (Bound::Unbounded, Bound::Unbounded));
        r.done = true;
        r.error = Some(e);
        r
    }

    /// The seqno this iterator reads at.
    pub fn seqno(&self) -> SeqNo {
        SeqNo::new(self.guard.seq())
    }

    fn fail(&mut self, e: Error) -> Option<Result<(Bytes, Bytes)>> {
        self.done = true;
        Some(Err(e))
    }

    /// Positions the front cursor on the next entry to return and remembers its key in
    /// `front_last`. The cursor stays on that entry until the next step, so its value can be
    /// lent out; that step first moves past the entry and its key's older versions.
    /// `None` at the end; an error ends the iteration.
    fn advance_front(&mut self) -> Option<Result<()>> {
        let snap = self.guard.seq();
        if self.front.is_none() {
            let start = match &self.lower {
                Bound::Included(l) | Bound::Excluded(l) => Some(&l[..]),
                Bound::Unbounded => None,
            };
            let (mut c, capped) = self.state.scan_cursor(start);
            match start {
                Some(l) => c.seek(&key::encode(l, SeqNo::MAX, KIND_SEEK)),
                None => c.seek_to_first(),
            }
            self.front = Some(c);
            self.front_on_entry = false;
            self.front_capped = capped;
        }
        // The cursor is stepped where it lies: moving it out and back for every entry costs
        // more than the step itself.
        let Range {
            state,
            front,
            lower,
            upper,
            scratch,
            front_last,
            back_last,
            front_on_entry,
            front_capped,
            ..
        } = self;
        // Whose versions the loop passes over: the key returned last, while the cursor still
        // stands on it, or a key found deleted. Each entry is looked at once, its key read
        // through the cursor's layers once.
        let mut skip = Skip::None;
        if std::mem::take(front_on_entry) && front_last.is_some() {
            front.as_mut()?.next();
            skip = Skip::Last;
        }
        let out = 'scan: loop {
            let c = front.as_mut()?;
            let boundary = if *front_capped {
                state.tables.progress_boundary()
            } else {
                None
            };
            // The inner loop ends (with the boundary) only where a capped cursor has nothing
            // more to say: at its end or past its boundary.
            let b = loop {
                let Some(k) = c.entry_key() else {
                    if let Some(b) = boundary
                        && c.status().is_ok()
                    {
                        break b;
                    }
                    break 'scan c.status().err();
                };
                let Some(p) = key::parse(k) else {
                    break 'scan Some(corrupt_key());
                };
                let skipped = match skip {
                    Skip::None => None,
                    Skip::Last => front_last.as_deref(),
                    Skip::Scratch => Some(&scratch[..]),
                };
                if let Some(s) = skipped {
                    if key::compare_bytes(p.user_key, s).is_eq() {
                        c.next();
                        continue;
                    }
                    skip = Skip::None;
                }
                // Past the boundary, a capped cursor lacks the inputs' keys: whether the scan
                // goes on is for the whole tree to say, even at a key beyond the upper bound.
                if let Some(b) = boundary
                    && key::compare_bytes(p.user_key, b).is_gt()
                {
                    break b;
                }
                if beyond(upper, p.user_key) {
                    break 'scan None;
                }
                if p.seq > snap {
                    c.next();
                    continue;
                }
                // Once an entry was returned, every later key lies above it and so above
                // `lower`.
                if p.kind == Kind::Delete || (front_last.is_none() && before(lower, p.user_key)) {
                    // Not returned: skip this key's older versions.
                    scratch.clear();
                    scratch.extend_from_slice(p.user_key);
                    skip = Skip::Scratch;
                    c.next();
                    continue;
                }
                if back_last.as_deref().is_some_and(|b| p.user_key >= b) {
                    break 'scan None;
                }
                remember(front_last, p.user_key);
                *front_on_entry = true;
                return Some(Ok(()));
            };
            // Past what the compaction has finished: go on over the whole tree, from the
            // boundary key's versions on, which the capped cursor has read already.
            let mut whole = state.cursor();
            whole.seek(&key::encode(b, SeqNo::MAX, KIND_SEEK));
            scratch.clear();
            scratch.extend_from_slice(b);
            skip = Skip::Scratch;
            *front = Some(whole);
            *front_capped = false;
        };
        *front = None;
        self.done = true;
        out.map(Err)
    }

    fn step_forward(&mut self) -> Option<Result<(Bytes, Bytes)>> {
        if let Err(e) = self.advance_front()? {
            return Some(Err(e));
        }
        let Range {
            front,
            keys,
            front_on_entry,
            ..
        } = self;
        let c = front.as_mut()?;
        let user = keys.copy(key::user_key(c.key()));
        let value = c.value();
        // Nothing is lent: step past the key's versions now, while they are at hand.
        *front_on_entry = false;
        step_past(c, &user);
        Some(Ok((user, value)))
    }

    /// The next entry, as [`Iterator::next`] gives it, but lent rather than handed out:
    /// the key and value borrow the iterator and stay valid until its next call. A scan
    /// that looks at each entry and moves on pays no copy and no reference count for it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path())?;
    /// db.put("a", "1")?;
    /// db.put("b", "22")?;
    /// let mut range = db.range(..);
    /// let mut bytes = 0;
    /// while let Some(entry) = range.next_ref() {
    ///     let (key, value) = entry?;
    ///     bytes += key.len() + value.len();
    /// }
    /// assert_eq!(bytes, 5);
    /// # Ok::<_, strata::Error>(())
    /// ```
    #[inline]
    pub fn next_ref(&mut self) -> Option<Result<(&[u8], &[u8])>> {
        if self.done {
            return self.error.take().map(Err);
        }
        if let Err(e) = self.advance_front()? {
            return Some(Err(e));
        }
        let (k, v) = self.front.as_ref()?.entry()?;
        Some(Ok((key::user_key(k), v)))
    }

    fn step_backward(&mut self) -> Option<Result<(Bytes, Bytes)>> {
        let snap = self.guard.seq();
        if self.back.is_none() {
            let mut c = self.state.cursor();
            match &self.upper {
                Bound::Included(u) => c.seek_for_prev(&key::encode(u, SeqNo::ZERO, 0)),
                Bound::Excluded(u) => c.seek_for_prev(&key::encode(u, SeqNo::MAX, KIND_SEEK)),
                Bound::Unbounded => c.seek_to_last(),
            }
            self.back = Some(c);
        }
        let Range {
            back,
            lower,
            upper,
            keys,
            front_last,
            back_last,
            ..
        } = self;
        let c = back.as_mut()?;
        let out = loop {
            if !c.valid() {
                break c.status().err().map(Err::<(Bytes, Bytes), Error>);
            }
            let Some(p) = key::parse(c.key()) else {
                break Some(Err(corrupt_key()));
            };
            if before(lower, p.user_key) {
                break None;
            }
            let user = keys.copy(p.user_key);
            // Versions of one key arrive oldest first; the last one at or below the snapshot
            // is the visible one.
            let mut visible: Option<(Kind, Bytes)> = None;
            let mut bad = false;
            while c.valid() {
                let Some(p) = key::parse(c.key()) else {
                    bad = true;
                    break;
                };
                if p.user_key != &user[..] {
                    break;
                }
                if p.seq <= snap {
                    visible = Some((p.kind, c.value()));
                }
                c.prev();
            }
            if bad {
                break Some(Err(corrupt_key()));
            }
            let Some((Kind::Put, value)) = visible else {
                continue;
            };
            if beyond(upper, &user) {
                continue;
            }
            if front_last.as_deref().is_some_and(|f| &user[..] <= f) {
                break None;
            }
            remember(back_last, &user);
            return Some(Ok((user, value)));
        };
        *back = None;
        match out {
            Some(Err(e)) => self.fail(e),
            _ => {
                self.done = true;
                None
            }
        }
    }
}

/// Which key's remaining versions [`Range::advance_front`] passes over.
#[derive(Clone, Copy)]
enum Skip {
    None,
    /// The key returned last (`front_last`).
    Last,
    /// A key found deleted or below the lower bound (`scratch`).
    Scratch,
}

/// Moves `c` off its entry, whose user key is `user`, and past that key's older versions.
#[inline]
fn step_past(c: &mut MergeCursor, user: &[u8]) {
    c.next();
    while c
        .entry_key()
        .is_some_and(|k| key::compare_bytes(key::user_key(k), user).is_eq())
    {
        c.next();
    }
}

/// True when `k` lies below the lower bound `lower`.
fn before(lower: &Bound<Vec<u8>>, k: &[u8]) -> bool {
    match lower {
        Bound::Included(l) => key::compare_bytes(k, l).is_lt(),
        Bound::Excluded(l) => key::compare_bytes(k, l).is_le(),
        Bound::Unbounded => false,
    }
}

/// True when `k` lies above the upper bound `upper`.
fn beyond(upper: &Bound<Vec<u8>>, k: &[u8]) -> bool {
    match upper {
        Bound::Included(u) => key::compare_bytes(k, u).is_gt(),
        Bound::Excluded(u) => key::compare_bytes(k, u).is_ge(),
        Bound::Unbounded => false,
    }
}

/// Stores `key` in `slot`, reusing its allocation.
fn remember(slot: &mut Option<Vec<u8>>, key: &[u8]) {
    match slot {
        Some(v) => {
            v.clear();
            v.extend_from_slice(key);
        }
        None => *slot = Some(key.to_vec()),
    }
}

/// Copies keys handed out by a [`Range`] into shared chunks, so that returning a key costs
/// a copy and a reference count rather than an allocation of its own. A key held by the
/// caller keeps at most one chunk alive.
#[derive(Default)]
struct KeyArena {
    chunk: BytesMut,
}

impl KeyArena {
    /// Bytes per chunk: small, so a key kept long after the iteration pins little memory.
    const CHUNK: usize = 1024;

    fn copy(&mut self, key: &[u8]) -> Bytes {
        if key.len() > Self::CHUNK / 4 {
            return Bytes::copy_from_slice(key);
        }
        if self.chunk.capacity() - self.chunk.len() < key.len() {
            self.chunk = BytesMut::with_capacity(Self::CHUNK);
        }
        self.chunk.extend_from_slice(key);
        self.chunk.split().freeze()
    }
}

impl Iterator for Range {
    type Item = Result<(Bytes, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return self.error.take().map(Err);
        }
        self.step_forward()
    }
}

impl DoubleEndedIterator for Range {
    fn next_back(&mut self) -> Option<Self::Item> {
        if self.done {
            return self.error.take().map(Err);
        }
        self.step_backward()
    }
}

/// One version of a key: its seqno and value (`None` for a tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The seqno of the write (the version).
    pub seqno: SeqNo,
    /// The value written, or `None` if the write was a delete.
    pub value: Option<Bytes>,
}

impl Version {
    /// True when this version is a delete.
    pub fn is_tombstone(&self) -> bool {
        self.value.is_none()
    }
}

/// The retained versions of one key, newest first, as of one seqno.
///
/// Which versions are retained is set by [`HistoryRetention`](crate::HistoryRetention).
/// Created by [`Db::versions`](crate::Db::versions) and
/// [`Snapshot::versions`](crate::Snapshot::versions).
pub struct Versions {
    cursor: Option<MergeCursor>,
    state: Arc<LsmState>,
    guard: Arc<SnapshotGuard>,
    key: Vec<u8>,
    done: bool,
    /// Yielded once when the iteration ends (an iterator made on a closed store).
    error: Option<Error>,
}

impl std::fmt::Debug for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versions")
            .field("key", &self.key)
            .field("seqno", &self.guard.seq())
            .finish_non_exhaustive()
    }
}

impl Versions {
    pub(crate) fn new(state: Arc<LsmState>, guard: Arc<SnapshotGuard>, key: &[u8]) -> Versions {
        Versions {
            cursor: None,
            state,
            guard,
            key: key.to_vec(),
            done: false,
            error: None,
        }
    }

    /// An iterator that yields `e` and ends.
    pub(crate) fn failed(state: Arc<LsmState>, guard: Arc<SnapshotGuard>, e: Error) -> Versions {
        let mut v = Versions::new(state, guard, &[]);
        v.done = true;
        v.error = Some(e);
        v
    }
}

impl Iterator for Versions {
    type Item = Result<Version>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return self.error.take().map(Err);
        }
        let c = self.cursor.get_or_insert_with(|| {
            let mut c = self.state.cursor();
            c.seek(&key::encode(
                &self.key,
                SeqNo::new(self.guard.seq()),
                KIND_SEEK,
            ));
            c
        });
        if !c.valid() {
            self.done = true;
            return c.status().err().map(Err);
        }
        let Some(p) = key::parse(c.key()) else {
            self.done = true;
            return Some(Err(corrupt_key()));
        };
        if p.user_key != self.key.as_slice() {
            self.done = true;
            return None;
        }
        let v = Version {
            seqno: SeqNo::new(p.seq),
            value: (p.kind == Kind::Put).then(|| c.value()),
        };
        c.next();
        Some(Ok(v))
    }
}

#[cfg(test)]
mod tests {
    use super::KeyArena;

    /// Every key handed out keeps its own bytes while later keys are copied after it, in
    /// the same chunk and across chunks, short and long alike.
    #[test]
    fn arena_keys_are_independent_copies() {
        let mut arena = KeyArena::default();
        let keys: Vec<Vec<u8>> = (0..2_000u32)
            .map(|i| {
                let len = match i % 7 {
                    0 => 0,
                    1 => KeyArena::CHUNK / 4 + 1,
                    2 => KeyArena::CHUNK,
                    _ => (i % 40) as usize,
                };
                (0..len).map(|j| (i as usize * 31 + j) as u8).collect()
            })
            .collect();
        let held: Vec<_> = keys.iter().map(|k| arena.copy(k)).collect();
        for (k, h) in keys.iter().zip(&held) {
            assert_eq!(&h[..], &k[..]);
        }
        // Short keys are laid end to end in shared chunks, which separate allocations,
        // each with its allocator header, never are.
        let adjacent = held
            .windows(2)
            .filter(|w| !w[0].is_empty() && w[0].as_ptr().wrapping_add(w[0].len()) == w[1].as_ptr())
            .count();
        assert!(
            adjacent > 1_000,
            "{adjacent} keys follow the one before them"
        );
    }
}
