//! What readers see: the published tree, the highest visible seqno, and the registry of live
//! snapshots.
//!
//! Readers take the current [`LsmState`] (an `Arc`, swapped on every structural change)
//! together with the visible seqno, then read without locks. A snapshot pins a seqno: while
//! it lives, flushes and compactions keep, for every key, the version it sees (see
//! `retention.rs`); iterators register an internal snapshot the same way. Registration and
//! the compaction horizon are read under one lock, so a job never misses a snapshot taken
//! while it starts.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::error::Result;
use crate::key::Kind;
use crate::lookup::VersionedValue;
use crate::memtable::Memtable;
use crate::retention::Retention;
use crate::seqno::SeqNo;
use crate::state::LsmState;

/// The published state of the tree and the seqno up to which it may be read.
#[derive(Debug)]
pub(crate) struct View {
    state: RwLock<Arc<LsmState>>,
    /// The highest seqno readers may see.
    visible: AtomicU64,
    snapshots: Arc<SnapshotList>,
}

impl View {
    /// A view of `state`, whose writes up to `last_seq` are visible.
    pub(crate) fn new(state: LsmState, last_seq: u64) -> View {
        View {
            state: RwLock::new(Arc::new(state)),
            visible: AtomicU64::new(last_seq),
            snapshots: Arc::new(SnapshotList::default()),
        }
    }

    /// The current published state.
    pub(crate) fn current(&self) -> Arc<LsmState> {
        Arc::clone(&self.state.read())
    }

    /// The mutable memtable of the current state.
    pub(crate) fn memtable(&self) -> Arc<Memtable> {
        Arc::clone(&self.state.read().mem)
    }

    /// Replaces the published state with `f(current)`.
    pub(crate) fn publish(&self, f: impl FnOnce(&LsmState) -> LsmState) {
        let mut s = self.state.write();
        let next = f(&s);
        *s = Arc::new(next);
    }

    /// The highest seqno readers may see.
    pub(crate) fn visible(&self) -> u64 {
        self.visible.load(Ordering::Acquire)
    }

    /// Makes every write up to `seq` visible. Only the commit leader calls this, after the
    /// writes are in the memtable.
    pub(crate) fn set_visible(&self, seq: u64) {
        self.visible.store(seq, Ordering::Release);
    }

    /// The state and visible seqno, read together so that the state holds every write at or
    /// below the seqno.
    pub(crate) fn read_view(&self) -> (Arc<LsmState>, u64) {
        let s = self.state.read();
        (Arc::clone(&s), self.visible.load(Ordering::Acquire))
    }

    /// The live value of `key` as of `snap`.
    pub(crate) fn get_at(&self, key: &[u8], snap: u64) -> Result<Option<VersionedValue>> {
        live(self.current().get(key, snap)?)
    }

    /// The live value of `key` now.
    pub(crate) fn get_latest(&self, key: &[u8]) -> Result<Option<VersionedValue>> {
        let (state, snap) = self.read_view();
        live(state.get(key, snap)?)
    }

    /// Registers a snapshot at the visible seqno.
    pub(crate) fn register_snapshot(&self) -> SnapshotGuard {
        self.snapshots.register(&self.visible)
    }

    /// A snapshot at the visible seqno and the current state, for an iterator.
    pub(crate) fn pin(&self) -> (Arc<SnapshotGuard>, Arc<LsmState>) {
        let guard = Arc::new(self.register_snapshot());
        (guard, self.current())
    }

    /// The retention rules as of now, keeping the newest `versions` of every key.
    pub(crate) fn retention(&self, versions: usize) -> Retention {
        let (horizon, snapshots) = self.snapshots.horizon_and_live(&self.visible);
        Retention {
            versions,
            horizon,
            snapshots,
        }
    }

    /// Number of live snapshots (including iterators).
    pub(crate) fn live_snapshots(&self) -> usize {
        self.snapshots.count()
    }
}

fn live(hit: Option<crate::lookup::Hit>) -> Result<Option<VersionedValue>> {
    Ok(match hit {
        Some(hit) if hit.kind == Kind::Put => Some(VersionedValue {
            version: SeqNo::new(hit.seq),
            value: hit.value,
        }),
        _ => None,
    })
}

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
