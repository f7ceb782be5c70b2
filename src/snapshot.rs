//! Point-in-time reads: the registry of live snapshots and the public [`Snapshot`] handle.
//!
//! A snapshot pins a seqno. While it lives, flushes and compactions keep, for every key, the
//! version it sees (see `retention.rs`); iterators register an internal snapshot the same way.
//! Registration and the compaction horizon are read under one lock, so a job never misses a
//! snapshot taken while it starts.

use std::collections::BTreeMap;
use std::ops::RangeBounds;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;

use crate::db::Core;
use crate::error::Result;
use crate::iter::{Range, Versions};
use crate::lookup::VersionedValue;
use crate::seqno::SeqNo;

/// Live snapshot seqnos with their reference counts.
#[derive(Debug, Default)]
pub(crate) struct SnapshotList {
    live: Mutex<BTreeMap<u64, usize>>,
}

impl SnapshotList {
    /// Registers a snapshot at the current value of `visible`.
    pub(crate) fn register(self: &Arc<Self>, visible: &AtomicU64) -> SnapshotGuard {
        let mut live = self.live.lock();
        let seq = visible.load(Ordering::Acquire);
        *live.entry(seq).or_insert(0) += 1;
        SnapshotGuard {
            list: Arc::clone(self),
            seq,
        }
    }

    /// The horizon (current value of `visible`) and every live snapshot, read atomically.
    pub(crate) fn horizon_and_live(&self, visible: &AtomicU64) -> (u64, Vec<u64>) {
        let live = self.live.lock();
        (
            visible.load(Ordering::Acquire),
            live.keys().copied().collect(),
        )
    }

    /// Number of live snapshots (including iterators).
    pub(crate) fn count(&self) -> usize {
        self.live.lock().values().sum()
    }
}

/// Keeps one snapshot registered until dropped.
#[derive(Debug)]
pub(crate) struct SnapshotGuard {
    list: Arc<SnapshotList>,
    seq: u64,
}

impl SnapshotGuard {
    pub(crate) fn seq(&self) -> u64 {
        self.seq
    }
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        let mut live = self.list.live.lock();
        if let Some(n) = live.get_mut(&self.seq) {
            *n -= 1;
            if *n == 0 {
                live.remove(&self.seq);
            }
        }
    }
}

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
    core: Arc<Core>,
    guard: Arc<SnapshotGuard>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("seqno", &self.guard.seq())
            .finish()
    }
}

impl Snapshot {
    pub(crate) fn new(core: Arc<Core>) -> Snapshot {
        let guard = Arc::new(core.snapshots.register(&core.visible));
        Snapshot { core, guard }
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
        self.core.get_at_seq(key.as_ref(), self.guard.seq())
    }

    /// Entries with keys in `range`, as of this snapshot; see [`Db::range`](crate::Db::range).
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Range {
        Range::new(
            self.core.current_state(),
            Arc::clone(&self.guard),
            crate::iter::owned_bounds(&range),
        )
    }

    /// Entries whose keys start with `prefix`, as of this snapshot.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range {
        Range::new(
            self.core.current_state(),
            Arc::clone(&self.guard),
            crate::iter::prefix_bounds(prefix.as_ref()),
        )
    }

    /// Every entry, as of this snapshot.
    pub fn iter(&self) -> Range {
        self.range::<&[u8], _>(..)
    }

    /// The retained versions of `key` at or below this snapshot, newest first.
    pub fn versions(&self, key: impl AsRef<[u8]>) -> Versions {
        Versions::new(
            self.core.current_state(),
            Arc::clone(&self.guard),
            key.as_ref(),
        )
    }
}
