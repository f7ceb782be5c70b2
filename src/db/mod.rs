//! The public [`Db`] handle: opening, reading, writing and maintaining a store, and closing
//! it. The engine behind it is in `core.rs`.

mod builder;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use bytes::Bytes;
use parking_lot::Mutex;

pub use builder::DbBuilder;

use crate::batch::WriteBatch;
use crate::compaction::{CompactionReason, CompactionRun, CompactionStatus};
use crate::config::{Config, PeriodicCompaction, SyncMode};
use crate::core::Core;
use crate::error::{Error, PoisonCause, Result};
use crate::iter::{Bounds, KeyRange, Range, Versions, key_bounds, prefix_bounds};
use crate::lookup::VersionedValue;
use crate::seqno::SeqNo;
use crate::snapshot::Snapshot;
use crate::stats::Stats;
use crate::wal::segment::WalSegment;

/// Scans through level 0 between two wake-ups of the compaction thread.
const SEEKS_PER_WAKE: u64 = 256;

/// An embedded key-value store.
///
/// `Db` is a cheap handle (`Clone + Send + Sync`, an `Arc` inside): clone it into every
/// thread that needs it. The store closes when [`Db::close`] is called or the last handle is
/// dropped.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use strata::Db;
/// let db = Db::open(dir.path())?;
/// let v1 = db.put("user:1", "Alice")?;
/// assert_eq!(db.get("user:1")?.as_deref(), Some(&b"Alice"[..]));
/// let v2 = db.put("user:1", "Alicia")?;
/// assert!(v2 > v1); // every write gets a new, larger version
/// for item in db.prefix("user:") {
///     let (key, value) = item?;
///     println!("{:?} = {:?}", key, value);
/// }
/// db.close()?;
/// # Ok::<_, strata::Error>(())
/// ```
///
/// # Conflicts
///
/// Writes can carry version preconditions: [`Db::compare_and_set`] and
/// [`Db::compare_and_delete`] take the version the key must have, and a [`WriteBatch`] takes
/// any number with [`WriteBatch::expect_version`]. A precondition that does not hold fails
/// the call with [`Error::Conflict`] — one shape for all three — carrying the key's actual
/// version, and nothing is written; the usual answer is to read again and retry.
///
/// # Closing
///
/// After [`Db::close`], every read and write through any clone of the handle fails with
/// [`Error::Closed`] (iterators made then yield that error once). Snapshots and iterators
/// taken before keep reading what they pinned. Calls that describe the store —
/// [`Db::path`], [`Db::config`], [`Db::last_seqno`], [`Db::stats`], [`Db::poisoned`],
/// [`Db::compaction_status`], [`Db::wal_segments`] — keep answering.
#[derive(Clone)]
pub struct Db {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("path", &self.handle.core.dir)
            .finish_non_exhaustive()
    }
}

/// Owns the background threads; dropping the last `Db` closes the store.
struct Handle {
    core: Arc<Core>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(error = %e, "error while closing the store on drop");
        }
    }
}

impl Handle {
    fn close(&self) -> Result<()> {
        let flushed = self.flush_before_close();
        self.core.life.begin_shutdown();
        for t in self.workers.lock().drain(..) {
            let _ = t.join();
        }
        let closed = self.core.finish_shutdown();
        flushed.and(closed)
    }

    /// Writes the memtable to a table ([`Config::flush_on_close`]), unless the store is
    /// already closing or poisoned. A failure leaves the writes in the WAL.
    fn flush_before_close(&self) -> Result<()> {
        let core = &self.core;
        let life = &core.life;
        if !core.config.flush_on_close
            || life.shutting_down()
            || life.is_closed()
            || life.is_poisoned()
        {
            return Ok(());
        }
        match core.writer.flush_all() {
            Err(Error::Closed) => Ok(()),
            other => other,
        }
    }
}

impl Db {
    /// Opens the store at `path` with the default [`Config`], creating it if needed.
    ///
    /// Fails with [`Error::Locked`] if another process (or another open `Db` in this process)
    /// holds the directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Db> {
        Db::open_with(path, Config::default())
    }

    /// Opens the store at `path` with `config`.
    pub fn open_with(path: impl AsRef<Path>, config: Config) -> Result<Db> {
        config.validate()?;
        let (recovered, rewrite) = crate::recovery::open(path.as_ref(), config)?;
        let core = Arc::new(Core::assemble(recovered));
        if rewrite {
            // Recovery dropped damaged records: persist what was recovered in a table now, so
            // the dropped records can never reappear in a later recovery.
            let _leader = core.writer.lead();
            if !core.view.current().mem.is_empty() {
                core.writer.freeze_memtable()?;
            }
            while core.flush_job().run()? {}
            core.writer.retire_sealed_segments()?;
        }
        let workers = crate::background::start(&core)?;
        Ok(Db {
            handle: Arc::new(Handle {
                core,
                workers: Mutex::new(workers),
            }),
        })
    }

    /// A builder to set options before opening the store at `path`.
    pub fn builder(path: impl AsRef<Path>) -> DbBuilder {
        DbBuilder::new(path.as_ref())
    }

    pub(crate) fn core(&self) -> &Arc<Core> {
        &self.handle.core
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.core().dir
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &Config {
        &self.core().config
    }

    // ---- reads ----

    /// The current value of `key`, or `None` if it is absent or deleted.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Bytes>> {
        Ok(self.get_versioned(key)?.map(|v| v.value))
    }

    /// The current value of `key` together with its version.
    pub fn get_versioned(&self, key: impl AsRef<[u8]>) -> Result<Option<VersionedValue>> {
        self.check_open()?;
        self.core().view.get_latest(key.as_ref())
    }

    /// The value `key` had as of `version`: the newest write at or below that seqno.
    ///
    /// Only retained history can be read this way (see
    /// [`HistoryRetention`](crate::HistoryRetention)); older versions read as whatever older
    /// retained version remains, or `None`. Hold a [`Snapshot`] to pin a view exactly.
    pub fn get_at(&self, key: impl AsRef<[u8]>, version: SeqNo) -> Result<Option<Bytes>> {
        self.check_open()?;
        let snap = version.get().min(self.core().view.visible());
        Ok(self
            .core()
            .view
            .get_at(key.as_ref(), snap)?
            .map(|v| v.value))
    }

    /// True when `key` has a live value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get_versioned(key)?.is_some())
    }

    /// Live entries with keys in `range`, in key order (reverse it with `.rev()`).
    ///
    /// The iterator reads a consistent snapshot taken now; writes made while it runs are not
    /// seen.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path())?;
    /// for k in ["a", "b", "c", "d"] {
    ///     db.put(k, k)?;
    /// }
    /// let keys: Vec<_> = db.range("b".."d").map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(keys, ["b", "c"]);
    /// let last = db.range(..).next_back().transpose()?;
    /// assert_eq!(last.map(|(k, _)| k).as_deref(), Some(&b"d"[..]));
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn range(&self, range: impl KeyRange) -> Range {
        self.range_over(key_bounds(&range))
    }

    /// Live entries whose keys start with `prefix`.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range {
        self.range_over(prefix_bounds(prefix.as_ref()))
    }

    /// Every live entry.
    pub fn iter(&self) -> Range {
        self.range(..)
    }

    fn range_over(&self, bounds: Bounds) -> Range {
        let (guard, state) = self.core().view.pin();
        // Scans pay toward compacting the level-0 tables they merge; the compaction thread
        // is told now and then (it also looks once a second).
        let seeks = state.tables.charge_seek();
        if seeks > 0 && seeks % SEEKS_PER_WAKE == 0 && self.core().config.seek_compaction_bytes > 0
        {
            self.core().life.wake_compactor();
        }
        match self.check_open() {
            Ok(()) => Range::new(state, guard, bounds),
            Err(e) => Range::failed(state, guard, e),
        }
    }

    /// The retained versions of `key`, newest first, tombstones included.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::builder(dir.path()).history_versions(10).open()?;
    /// let v1 = db.put("k", "a")?;
    /// let v2 = db.delete("k")?;
    /// let v3 = db.put("k", "b")?;
    /// let seqnos: Vec<_> = db.versions("k").map(|v| v.map(|v| v.seqno)).collect::<Result<_, _>>()?;
    /// assert_eq!(seqnos, [v3, v2, v1]);
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn versions(&self, key: impl AsRef<[u8]>) -> Versions {
        let (guard, state) = self.core().view.pin();
        match self.check_open() {
            Ok(()) => Versions::new(state, guard, key.as_ref()),
            Err(e) => Versions::failed(state, guard, e),
        }
    }

    /// A point-in-time view of the whole store. One taken after [`Db::close`] fails every
    /// read with [`Error::Closed`].
    pub fn snapshot(&self) -> Snapshot {
        let core = self.core();
        Snapshot::new(Arc::clone(&core.view), core.life.is_closed())
    }

    /// Reads, like writes, fail once the store is closed.
    fn check_open(&self) -> Result<()> {
        if self.core().life.is_closed() {
            return Err(Error::Closed);
        }
        Ok(())
    }

    /// The highest seqno readers can see: the version of the latest acknowledged write.
    pub fn last_seqno(&self) -> SeqNo {
        SeqNo::new(self.core().view.visible())
    }

    // ---- writes ----

    /// Stores `value` under `key`; returns the write's version.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.commit(b)
    }

    /// Deletes `key` (writes a tombstone, even if the key is absent); returns its version.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.commit(b)
    }

    /// Applies `batch` atomically; returns the version of its last write (op `i` of the
    /// batch has version `returned - len + 1 + i`), or `None` when the batch has no put or
    /// delete: nothing was written (a batch of preconditions only checks them, atomically).
    ///
    /// Fails with [`Error::Conflict`] if a precondition set with
    /// [`WriteBatch::expect_version`] does not hold; nothing is written then (see
    /// [conflicts](#conflicts)).
    pub fn write(&self, batch: WriteBatch) -> Result<Option<SeqNo>> {
        let writes = !batch.is_empty();
        let last = self.commit(batch)?;
        Ok(writes.then_some(last))
    }

    fn commit(&self, batch: WriteBatch) -> Result<SeqNo> {
        let sync = self.core().config.sync == SyncMode::Always;
        self.core().writer.write(batch, sync)
    }

    /// Writes `value` under `key` only if the key's current version is `expected` (`None`:
    /// the key is absent or deleted); returns the new version.
    ///
    /// Fails with [`Error::Conflict`], carrying the key's actual version, when it is not
    /// `expected`; nothing is written then (see [conflicts](#conflicts)).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use strata::Error;
    /// let db = strata::Db::open(dir.path())?;
    /// let v1 = db.compare_and_set("k", None, "first")?;
    /// match db.compare_and_set("k", None, "again") {
    ///     Err(Error::Conflict(c)) => assert_eq!(c.current, Some(v1)),
    ///     other => panic!("{other:?}"),
    /// }
    /// let v2 = db.compare_and_set("k", Some(v1), "second")?;
    /// db.compare_and_delete("k", Some(v2))?;
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn compare_and_set(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<SeqNo>,
        value: impl AsRef<[u8]>,
    ) -> Result<SeqNo> {
        let key = key.as_ref();
        let mut b = WriteBatch::new();
        b.expect_version(key, expected).put(key, value);
        self.commit(b)
    }

    /// Deletes `key` only if its current version is `expected` (`None`: the key is absent or
    /// deleted, and a tombstone is written anyway); returns the tombstone's version.
    ///
    /// Fails with [`Error::Conflict`] like [`Db::compare_and_set`].
    pub fn compare_and_delete(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<SeqNo>,
    ) -> Result<SeqNo> {
        let key = key.as_ref();
        let mut b = WriteBatch::new();
        b.expect_version(key, expected).delete(key);
        self.commit(b)
    }

    // ---- maintenance ----

    /// Writes the memtable to a table and waits until every frozen memtable is flushed. Also
    /// makes every earlier write durable.
    pub fn flush(&self) -> Result<()> {
        self.core().writer.flush_all()?;
        self.core().writer.sync()
    }

    /// Makes every acknowledged write durable (needed only with [`SyncMode::Buffered`]).
    pub fn sync(&self) -> Result<()> {
        self.core().writer.sync()
    }

    /// Syncs the WAL (first writing the memtable to a table if [`Config::flush_on_close`] is
    /// set), stops background work and releases the directory lock. Reads and
    /// writes through other handles fail with [`Error::Closed`] afterwards (see
    /// [closing](#closing)).
    ///
    /// A compaction running on another thread ([`Db::compact`] and friends) is cancelled, and
    /// `close` returns only once it has stopped: nothing writes to the directory after the
    /// lock is released. The cancelled call returns [`Error::Closed`].
    pub fn close(self) -> Result<()> {
        self.handle.close()
    }

    /// Why the store rejects writes, or `None` while it accepts them.
    ///
    /// A failed WAL write or fsync, flush, manifest write or compaction, or a panic in any of
    /// them (reported as [`Error::Panic`]), *poisons* the store:
    /// every later write fails with [`Error::Poisoned`] carrying this same cause, while reads
    /// keep working. Reopening the store recovers it. A health check should report this.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path())?;
    /// assert!(db.poisoned().is_none());
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn poisoned(&self) -> Option<PoisonCause> {
        self.core().life.poison_cause()
    }

    /// Sizes and counters.
    pub fn stats(&self) -> Stats {
        self.core().stats()
    }

    /// Compacts the whole store now: flushes the memtable, then merges every table into one
    /// sorted run, dropping versions past retention and deleted keys (see
    /// [`HistoryRetention`](crate::HistoryRetention)). Waits for a running compaction first.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path())?;
    /// for i in 0..100 {
    ///     db.put(format!("k{i}"), "v")?;
    ///     db.delete(format!("k{i}"))?;
    /// }
    /// let run = db.compact()?;
    /// assert_eq!(run.tables_out, 0); // every key was deleted: nothing is left
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn compact(&self) -> Result<CompactionRun> {
        let core = self.core();
        core.writer.flush_all()?;
        core.compaction
            .compact_all_tables(&core.compaction_job(), CompactionReason::Manual)
    }

    /// Compacts the tables holding keys in `range`, pushing them down to the deepest level.
    pub fn compact_range(&self, range: impl KeyRange) -> Result<CompactionRun> {
        use std::ops::Bound;
        let (lo, hi) = key_bounds(&range);
        let lo = match lo {
            Bound::Included(k) | Bound::Excluded(k) => k,
            Bound::Unbounded => Vec::new(),
        };
        let hi = match hi {
            Bound::Included(k) | Bound::Excluded(k) => Some(k),
            Bound::Unbounded => None,
        };
        let core = self.core();
        core.writer.flush_all()?;
        core.compaction
            .compact_span(&core.compaction_job(), &(lo, hi))
    }

    /// A full compaction unless one is running, or — without `force` — the last full
    /// compaction finished less than the periodic schedule's `min_interval` ago; `Ok(None)`
    /// when skipped.
    pub fn try_compact(&self, force: bool) -> Result<Option<CompactionRun>> {
        let core = self.core();
        if core.compaction.running.load(Ordering::Acquire) {
            return Ok(None);
        }
        if !force && !core.compaction.full_compaction_allowed() {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Whether a compaction runs, the periodic schedule, and recent runs.
    pub fn compaction_status(&self) -> CompactionStatus {
        self.core().compaction.status()
    }

    /// Changes the periodic full-compaction schedule.
    pub fn set_periodic_compaction(&self, schedule: PeriodicCompaction) {
        let core = self.core();
        core.compaction.set_periodic(schedule);
        core.life.wake_compactor();
    }

    /// The live WAL segments, oldest first.
    pub fn wal_segments(&self) -> Vec<WalSegment> {
        self.core().writer.wal_segments()
    }

    /// Reads every live table, the manifest and the WAL written so far, checking every
    /// checksum and the table-set invariants, while writes continue (see
    /// [`crate::verify`]). Changes nothing.
    pub fn verify(&self) -> Result<crate::VerifyReport> {
        crate::verify::verify_open(self, &mut |_, _| {})
    }

    /// Writes a consistent copy of the store as of now into `dest` (which must not exist),
    /// while writes continue: tables are hard-linked where the filesystem allows, the writes
    /// still in memtables go to one new table, and the directory appears atomically (see
    /// [`Checkpoint`](crate::Checkpoint)). Open it like any store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path().join("live"))?;
    /// let v = db.put("k", "v")?;
    /// let cp = db.checkpoint(dir.path().join("copy"))?;
    /// assert_eq!(cp.seqno, v);
    /// db.put("k", "newer")?;
    /// let copy = strata::Db::open(dir.path().join("copy"))?;
    /// assert_eq!(copy.get("k")?.as_deref(), Some(&b"v"[..]));
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn checkpoint(&self, dest: impl AsRef<Path>) -> Result<crate::Checkpoint> {
        crate::checkpoint::create(self, dest.as_ref())
    }

    /// The published state and the seqno it holds every write up to, read together.
    pub(crate) fn view(&self) -> (Arc<crate::state::LsmState>, u64) {
        self.core().view.read_view()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync + 'static>() {}
    assert_send_sync::<Db>();
    assert_send_sync::<Snapshot>();
    const fn assert_send<T: Send + 'static>() {}
    assert_send::<Range>();
    assert_send::<Versions>();
};
