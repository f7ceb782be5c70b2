//! Point-in-time reads: the public [`Snapshot`] handle. The registry of live snapshots is part
//! of the [`View`].

use std::sync::Arc;

use bytes::Bytes;

use crate::error::{Error, Result};
use crate::iter::{KeyRange, Range, Versions, key_bounds, prefix_bounds};
use crate::lookup::VersionedValue;
use crate::seqno::SeqNo;
use crate::view::{SnapshotGuard, View};

/// A consistent, read-only view of the store as of one [`SeqNo`].
///
/// Reads through a snapshot see exactly the writes numbered at or below
/// [`Snapshot::seqno`], however many writes, flushes and compactions happen meanwhile. A live
/// snapshot keeps the versions it sees from being compacted away, so drop it when done.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let db = strata::Db::open(dir.path())?;
/// db.put("k", "old")?;
/// let snap = db.snapshot();
/// db.put("k", "new")?;
/// assert_eq!(snap.get("k")?.as_deref(), Some(&b"old"[..]));
/// assert_eq!(db.get("k")?.as_deref(), Some(&b"new"[..]));
/// # Ok::<_, strata::Error>(())
/// ```
#[derive(Clone)]
pub struct Snapshot {
    view: Arc<View>,
    guard: Arc<SnapshotGuard>,
    /// Taken from a closed store: every read fails with [`Error::Closed`].
    closed: bool,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seqno", &self.guard.seq())
            .finish()
    }
}

impl Snapshot {
    /// A snapshot at `view`'s visible seqno; with `closed`, one whose reads fail with
    /// [`Error::Closed`].
    pub(crate) fn new(view: Arc<View>, closed: bool) -> Snapshot {
        let guard = Arc::new(view.register_snapshot());
        Snapshot {
            view,
            guard,
            closed,
        }
    }

    fn range_over(&self, bounds: crate::iter::Bounds) -> Range {
        let (state, guard) = (self.view.current(), Arc::clone(&self.guard));
        if self.closed {
            Range::failed(state, guard, Error::Closed)
        } else {
            Range::new(state, guard, bounds)
        }
    }

    /// The seqno this snapshot reads at.
    pub fn seqno(&self) -> SeqNo {
        SeqNo::new(self.guard.seq())
    }

    /// The value of `key` as of this snapshot.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.get_versioned(key)?.map(|v| v.value))
    }

    /// The value of `key` and its version, as of this snapshot.
    pub fn get_versioned(&self, key: impl AsRef<[u8]>) -> Result<Option<VersionedValue>> {
        if self.closed {
            return Err(Error::Closed);
        }
        self.view.get_at(key.as_ref(), self.guard.seq())
    }

    /// Entries with keys in `range`, as of this snapshot; see [`Db::range`](crate::Db::range).
    pub fn range(&self, range: impl KeyRange) -> Range {
        self.range_over(key_bounds(&range))
    }

    /// Entries whose keys start with `prefix`, as of this snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range {
        self.range_over(prefix_bounds(prefix.as_ref()))
    }

    /// Every entry, as of this snapshot.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    /// The retained versions of `key` at or below this snapshot, newest first.
    pub fn versions(&self, key: impl AsRef<[u8]>) -> Versions {
        let (state, guard) = (self.view.current(), Arc::clone(&self.guard));
        if self.closed {
            Versions::failed(state, guard, Error::Closed)
        } else {
            Versions::new(state, guard, key.as_ref())
        }
    }
}
