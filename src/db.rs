//! The store: the public [`Db`] handle and the engine core behind it.
//!
//! Concurrency model:
//! - Readers take the current [`LsmState`] (an `Arc`, swapped atomically on every structural
//!   change) together with the visible seqno, then read without locks.
//! - Writers queue up; the writer at the head becomes the *leader*, takes the writes queued
//!   behind it as one commit group, appends them to the WAL as one record with one fsync,
//!   inserts them into the memtable and publishes the new visible seqno (group commit, as in
//!   LevelDB). Only the leader touches the WAL and switches memtables.
//! - A background thread flushes frozen memtables to level-0 tables; structural changes are
//!   recorded in the manifest before they are published.
//! - Any failed WAL write or fsync poisons the store: every later write fails until reopen.

use std::collections::{HashMap, VecDeque};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::batch::{self, BatchView, WriteBatch};
use crate::compaction::{
    CompactionReason, CompactionRun, CompactionState, CompactionStatus, PeriodicCompaction, picker,
};
use crate::config::{Config, DbBuilder, SyncMode};
use crate::error::{CasConflict, Error, PoisonCause, Result};
use crate::fs::{FileLock, FileSystem};
use crate::iter::{Range, Versions};
use crate::key::Kind;
use crate::manifest::{ManifestState, ManifestWriter};
use crate::memtable::Memtable;
use crate::snapshot::{Snapshot, SnapshotList};
use crate::state::LsmState;
use crate::stats::{Counters, LevelStats, RecoveryReport, Stats};
use crate::wal::segment::{RECORD_PREFIX_LEN, Wal, WalSegment};
use crate::{SeqNo, VersionedValue};

/// A commit group stops growing at this many bytes (LevelDB's figure).
const MAX_GROUP_BYTES: usize = 1 << 20;

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
        self.core.begin_shutdown();
        for t in self.workers.lock().drain(..) {
            let _ = t.join();
        }
        self.core.finish_shutdown()
    }
}

/// State shared by the handle, the background thread, snapshots and iterators.
pub(crate) struct Core {
    pub(crate) dir: PathBuf,
    pub(crate) config: Config,
    pub(crate) fs: Arc<dyn FileSystem>,
    lock: Mutex<Option<Box<dyn FileLock>>>,
    state: RwLock<Arc<LsmState>>,
    /// The highest seqno readers may see.
    pub(crate) visible: AtomicU64,
    pub(crate) snapshots: Arc<SnapshotList>,
    queue: Mutex<WriteQueue>,
    queue_cv: Condvar,
    /// Held by whoever appends to the WAL or switches memtables.
    leader: Mutex<()>,
    pub(crate) wal: Mutex<Wal>,
    pub(crate) versions: Mutex<VersionState>,
    pub(crate) next_file: AtomicU64,
    pub(crate) bg: Mutex<BgState>,
    /// Wakes the background thread.
    pub(crate) bg_cv: Condvar,
    /// Signals finished flushes to stalled writers and `flush()`.
    pub(crate) flush_cv: Condvar,
    poison: Mutex<Option<PoisonCause>>,
    poisoned: AtomicBool,
    closed: AtomicBool,
    /// Set when closing starts; long jobs check it and stop early.
    pub(crate) shutdown_flag: AtomicBool,
    pub(crate) compaction: CompactionState,
    pub(crate) counters: Counters,
    pub(crate) recovery: RecoveryReport,
}

/// The manifest and the table-set bookkeeping it mirrors.
pub(crate) struct VersionState {
    pub manifest: ManifestWriter,
    pub state: ManifestState,
}

#[derive(Debug, Default)]
pub(crate) struct BgState {
    pub shutdown: bool,
    pub error: Option<PoisonCause>,
}

/// How a write stall ended: the store failed or closed while the writer waited, or the
/// writer may go on.
fn stall_outcome(bg: &BgState) -> Result<()> {
    if let Some(e) = &bg.error {
        return Err(Error::Poisoned(e.clone()));
    }
    if bg.shutdown {
        return Err(Error::Closed);
    }
    Ok(())
}

#[derive(Default)]
struct WriteQueue {
    pending: VecDeque<Pending>,
    results: HashMap<u64, Result<SeqNo>>,
    leader_active: bool,
    next_ticket: u64,
}

struct Pending {
    ticket: u64,
    batch: WriteBatch,
    sync: bool,
}

/// Everything recovery hands to [`Core::assemble`].
pub(crate) struct Recovered {
    pub dir: PathBuf,
    pub config: Config,
    pub lock: Box<dyn FileLock>,
    pub state: LsmState,
    pub last_seq: u64,
    pub wal: Wal,
    pub manifest: ManifestWriter,
    pub manifest_state: ManifestState,
    pub next_file: u64,
    pub report: RecoveryReport,
}

impl Core {
    pub(crate) fn assemble(r: Recovered) -> Core {
        let periodic = r.config.periodic_compaction;
        Core {
            dir: r.dir,
            fs: Arc::clone(&r.config.fs),
            config: r.config,
            lock: Mutex::new(Some(r.lock)),
            state: RwLock::new(Arc::new(r.state)),
            visible: AtomicU64::new(r.last_seq),
            snapshots: Arc::new(SnapshotList::default()),
            queue: Mutex::new(WriteQueue::default()),
            queue_cv: Condvar::new(),
            leader: Mutex::new(()),
            wal: Mutex::new(r.wal),
            versions: Mutex::new(VersionState {
                manifest: r.manifest,
                state: r.manifest_state,
            }),
            next_file: AtomicU64::new(r.next_file),
            bg: Mutex::new(BgState::default()),
            bg_cv: Condvar::new(),
            flush_cv: Condvar::new(),
            poison: Mutex::new(None),
            poisoned: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            shutdown_flag: AtomicBool::new(false),
            compaction: CompactionState::new(periodic),
            counters: Counters::default(),
            recovery: r.report,
        }
    }

    /// The current published state.
    pub(crate) fn current_state(&self) -> Arc<LsmState> {
        Arc::clone(&self.state.read())
    }

    /// Replaces the published state with `f(current)`.
    pub(crate) fn publish(&self, f: impl FnOnce(&LsmState) -> LsmState) {
        let mut s = self.state.write();
        let next = f(&s);
        *s = Arc::new(next);
    }

    /// The state and visible seqno, read together so that the state holds every write at or
    /// below the seqno.
    fn read_view(&self) -> (Arc<LsmState>, u64) {
        let s = self.state.read();
        (Arc::clone(&s), self.visible.load(Ordering::Acquire))
    }

    pub(crate) fn allocate_file_number(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::AcqRel)
    }

    pub(crate) fn get_at_seq(&self, key: &[u8], snap: u64) -> Result<Option<VersionedValue>> {
        let state = self.current_state();
        Ok(match state.get(key, snap)? {
            Some(hit) if hit.kind == Kind::Put => Some(VersionedValue {
                version: SeqNo::new(hit.seq),
                value: hit.value,
            }),
            _ => None,
        })
    }

    fn get_latest(&self, key: &[u8]) -> Result<Option<VersionedValue>> {
        let (state, snap) = self.read_view();
        Ok(match state.get(key, snap)? {
            Some(hit) if hit.kind == Kind::Put => Some(VersionedValue {
                version: SeqNo::new(hit.seq),
                value: hit.value,
            }),
            _ => None,
        })
    }

    // ---- failure handling ----

    /// Records a fatal I/O failure; every later write fails with [`Error::Poisoned`].
    pub(crate) fn poison(&self, what: &str, e: &Error) {
        let mut p = self.poison.lock();
        let cause = p
            .get_or_insert_with(|| {
                tracing::error!(error = %e, "{what} failed; the store rejects writes until reopened");
                PoisonCause::new(what, e)
            })
            .clone();
        self.poisoned.store(true, Ordering::Release);
        drop(p);
        self.bg.lock().error.get_or_insert(cause);
        self.flush_cv.notify_all();
    }

    /// Why the store rejects writes, if it does.
    pub(crate) fn poison_cause(&self) -> Option<PoisonCause> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison.lock().clone()
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(cause) = self.poison_cause() {
            return Err(Error::Poisoned(cause));
        }
        Ok(())
    }

    // ---- write path ----

    fn write(&self, mut batch: WriteBatch, sync: bool) -> Result<SeqNo> {
        self.check_writable()?;
        if let Some(e) = batch.take_invalid() {
            return Err(e);
        }
        if batch.is_empty() && batch.preconditions().is_empty() {
            return Ok(SeqNo::new(self.visible.load(Ordering::Acquire)));
        }
        let mut q = self.queue.lock();
        let ticket = q.next_ticket;
        q.next_ticket += 1;
        q.pending.push_back(Pending {
            ticket,
            batch,
            sync,
        });
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if !q.leader_active && q.pending.front().is_some_and(|p| p.ticket == ticket) {
                break;
            }
            self.queue_cv.wait(&mut q);
        }
        // This writer leads the next commit group.
        q.leader_active = true;
        let group = take_group(&mut q.pending);
        drop(q);
        let results = self.commit_group(group);
        let mut q = self.queue.lock();
        let mut mine = Err(Error::Closed);
        for (t, r) in results {
            if t == ticket {
                mine = r;
            } else {
                q.results.insert(t, r);
            }
        }
        q.leader_active = false;
        drop(q);
        self.queue_cv.notify_all();
        mine
    }

    fn commit_group(&self, mut group: Vec<Pending>) -> Vec<(u64, Result<SeqNo>)> {
        let fail_all = |group: &[Pending], e: &Error| -> Vec<(u64, Result<SeqNo>)> {
            group
                .iter()
                .map(|p| (p.ticket, Err(e.duplicate())))
                .collect()
        };
        let _leader = self.leader.lock();
        if let Err(e) = self.check_writable() {
            return fail_all(&group, &e);
        }
        if let Err(e) = self.make_room() {
            return fail_all(&group, &e);
        }
        let first_seq = self.visible.load(Ordering::Acquire) + 1;
        let mut record = Vec::with_capacity(
            RECORD_PREFIX_LEN
                + batch::BATCH_HEADER_LEN
                + group.iter().map(|p| p.batch.ops().len()).sum::<usize>(),
        );
        record.resize(RECORD_PREFIX_LEN, 0);
        batch::put_header(&mut record, first_seq, 0);
        let conditional = group.iter().any(|p| !p.batch.preconditions().is_empty());
        let mut written: HashMap<Vec<u8>, Option<SeqNo>> = HashMap::new();
        let mut results = Vec::with_capacity(group.len());
        let mut accepted = Vec::with_capacity(group.len());
        let mut next_seq = first_seq;
        let mut need_sync = false;
        let mut user_bytes = 0u64;
        for p in &mut group {
            if let Some(e) = p.batch.take_invalid() {
                results.push((p.ticket, Err(e)));
                continue;
            }
            if conditional {
                match self.check_preconditions(&p.batch, &written) {
                    Ok(None) => {}
                    Ok(Some(conflict)) => {
                        Counters::add(&self.counters.conflicts, 1);
                        results.push((p.ticket, Err(Error::Conflict(conflict))));
                        continue;
                    }
                    Err(e) => {
                        results.push((p.ticket, Err(e)));
                        continue;
                    }
                }
            }
            let n = u64::from(p.batch.count());
            if conditional && n > 0 {
                let mut rec = Vec::new();
                batch::put_header(&mut rec, next_seq, p.batch.count());
                rec.extend_from_slice(p.batch.ops());
                if let Ok(ops) = BatchView::new(&rec, 0).and_then(|v| v.ops()) {
                    for (i, op) in ops.iter().enumerate() {
                        let v = (op.kind == Kind::Put).then(|| SeqNo::new(next_seq + i as u64));
                        written.insert(op.key.to_vec(), v);
                    }
                }
            }
            record.extend_from_slice(p.batch.ops());
            user_bytes += p.batch.ops().len() as u64;
            need_sync |= p.sync;
            let last = SeqNo::new((next_seq + n).saturating_sub(1));
            next_seq += n;
            accepted.push(results.len());
            results.push((p.ticket, Ok(last)));
        }
        let count = next_seq - first_seq;
        if count == 0 {
            return results;
        }
        let Ok(count32) = u32::try_from(count) else {
            let e = Error::BatchTooLarge {
                len: count as usize,
                max: u32::MAX as usize,
            };
            return fail_all(&group, &e);
        };
        if let Some(c) = record.get_mut(RECORD_PREFIX_LEN + 8..RECORD_PREFIX_LEN + 12) {
            c.copy_from_slice(&count32.to_le_bytes());
        }
        let wal_result = {
            let mut wal = self.wal.lock();
            let rolled = if wal.needs_roll() {
                wal.roll(self.allocate_file_number())
            } else {
                Ok(())
            };
            rolled.and_then(|()| wal.append(&mut record, need_sync))
        };
        if let Err(e) = wal_result {
            let e = Error::from(e);
            self.poison("WAL write", &e);
            for &i in &accepted {
                if let Some(r) = results.get_mut(i) {
                    r.1 = Err(e.duplicate());
                }
            }
            return results;
        }
        let body = record.get(RECORD_PREFIX_LEN..).unwrap_or_default();
        match BatchView::new(body, 0).and_then(|v| v.ops()) {
            Ok(ops) => {
                let mem = Arc::clone(&self.state.read().mem);
                mem.insert_ops(first_seq, &ops);
                let (puts, dels) = ops.iter().fold((0, 0), |(p, d), op| match op.kind {
                    Kind::Put => (p + 1, d),
                    Kind::Delete => (p, d + 1),
                });
                Counters::add(&self.counters.puts, puts);
                Counters::add(&self.counters.deletes, dels);
            }
            Err(c) => {
                let e = Error::Corruption {
                    file: PathBuf::new(),
                    offset: c.offset,
                    reason: format!("commit group failed to decode: {}", c.reason),
                };
                self.poison("memtable insert", &e);
                return fail_all(&group, &e);
            }
        }
        self.visible.store(next_seq - 1, Ordering::Release);
        Counters::add(&self.counters.user_bytes, user_bytes);
        Counters::add(&self.counters.wal_bytes, record.len() as u64);
        Counters::add(&self.counters.batches, accepted.len() as u64);
        Counters::add(&self.counters.groups, 1);
        if need_sync {
            Counters::add(&self.counters.syncs, 1);
        }
        results
    }

    /// `None` when every precondition of `batch` holds.
    fn check_preconditions(
        &self,
        batch: &WriteBatch,
        written: &HashMap<Vec<u8>, Option<SeqNo>>,
    ) -> Result<Option<CasConflict>> {
        for (key, expected) in batch.preconditions() {
            let current = match written.get(&key[..]) {
                Some(v) => *v,
                None => self.get_latest(key)?.map(|v| v.version),
            };
            if current != *expected {
                return Ok(Some(CasConflict {
                    key: key.clone(),
                    expected: *expected,
                    current,
                }));
            }
        }
        Ok(None)
    }

    /// How far compaction is behind: 0 below the slowdown thresholds, 1 at the stop
    /// thresholds, in between proportionally.
    fn compaction_pressure(&self, state: &LsmState) -> f64 {
        let c = &self.config;
        let l0 = state.tables.level(0).len() as f64;
        let by_l0 = (l0 - c.l0_slowdown_tables as f64 + 1.0)
            / (c.l0_stop_tables as f64 - c.l0_slowdown_tables as f64 + 1.0);
        let pending = picker::pending_bytes(c, &state.tables) as f64;
        let slow = c.pending_compaction_slowdown_bytes as f64;
        let by_debt = (pending - slow) / (c.pending_compaction_stop_bytes as f64 - slow);
        by_l0.max(by_debt).max(0.0)
    }

    /// Makes sure the memtable has room, freezing it, and applies backpressure: writes are
    /// delayed more the further compaction falls behind, and stop only at the hard limits.
    /// Called with the leader lock held.
    fn make_room(&self) -> Result<()> {
        let mut slowed = false;
        loop {
            let state = self.current_state();
            let pressure = self.compaction_pressure(&state);
            if pressure >= 1.0 {
                self.stall_for_compaction()?;
                continue;
            }
            if pressure > 0.0 && !slowed {
                // 0.5 ms at the first threshold, growing to 10 ms next to the stop limit.
                let delay = Duration::from_micros(500 + (9500.0 * pressure) as u64);
                std::thread::sleep(delay);
                self.counters.note_stall(
                    &self.counters.slowdowns,
                    &self.counters.slowdown_micros,
                    delay,
                );
                slowed = true;
            }
            let wal_full =
                !state.mem.is_empty() && self.wal.lock().total_bytes() > self.config.max_wal_bytes;
            if state.mem.approximate_bytes() < self.config.memtable_bytes && !wal_full {
                return Ok(());
            }
            if state.imms.len() >= self.config.max_immutable_memtables {
                self.stall_for_flush()?;
                continue;
            }
            return self.freeze_memtable();
        }
    }

    /// Waits until compaction brings the tree back under the hard limits.
    fn stall_for_compaction(&self) -> Result<()> {
        let start = Instant::now();
        let mut bg = self.bg.lock();
        while bg.error.is_none()
            && !bg.shutdown
            && self.compaction_pressure(&self.current_state()) >= 1.0
        {
            self.compaction.cv.notify_all();
            self.compaction
                .cv
                .wait_for(&mut bg, Duration::from_millis(50));
        }
        let outcome = stall_outcome(&bg);
        drop(bg);
        self.counters.note_stall(
            &self.counters.stops,
            &self.counters.stop_micros,
            start.elapsed(),
        );
        outcome
    }

    fn stall_for_flush(&self) -> Result<()> {
        let start = Instant::now();
        let mut bg = self.bg.lock();
        while bg.error.is_none()
            && !bg.shutdown
            && self.current_state().imms.len() >= self.config.max_immutable_memtables
        {
            self.bg_cv.notify_one();
            self.flush_cv.wait_for(&mut bg, Duration::from_millis(50));
        }
        let outcome = stall_outcome(&bg);
        drop(bg);
        self.counters.note_stall(
            &self.counters.stalls,
            &self.counters.stall_micros,
            start.elapsed(),
        );
        outcome
    }

    /// Freezes the mutable memtable and starts a new one with a fresh WAL segment. Requires
    /// the leader lock.
    pub(crate) fn freeze_memtable(&self) -> Result<()> {
        let number = self.allocate_file_number();
        if let Err(e) = self.wal.lock().roll(number) {
            let e = Error::from(e);
            self.poison("WAL segment roll", &e);
            return Err(e);
        }
        let fresh = Arc::new(Memtable::new(number, self.config.memtable_bytes));
        self.publish(|cur| {
            let mut imms = Vec::with_capacity(cur.imms.len() + 1);
            imms.push(Arc::clone(&cur.mem));
            imms.extend(cur.imms.iter().cloned());
            LsmState {
                mem: fresh,
                imms,
                tables: Arc::clone(&cur.tables),
            }
        });
        let _bg = self.bg.lock();
        self.bg_cv.notify_one();
        Ok(())
    }

    /// Records in the manifest that no sealed WAL segment is needed any more and deletes them.
    /// Only valid when every frozen memtable is flushed and the mutable one started in the
    /// active segment.
    fn retire_wal_before_active(&self) -> Result<()> {
        let active = self.wal.lock().active_number();
        let mut versions = self.versions.lock();
        if versions.state.log_number < active {
            let edit = crate::manifest::Edit {
                log_number: Some(active),
                next_file: Some(self.next_file.load(Ordering::Acquire)),
                ..Default::default()
            };
            self.log_edit(&mut versions, &edit)?;
        }
        drop(versions);
        self.wal.lock().remove_below(active)?;
        Ok(())
    }

    /// Freezes the memtable (if it holds anything) and waits until every frozen memtable is
    /// in a table.
    pub(crate) fn flush_all(&self) -> Result<()> {
        self.check_writable()?;
        {
            let _leader = self.leader.lock();
            if !self.current_state().mem.is_empty() {
                self.freeze_memtable()?;
            }
        }
        let mut bg = self.bg.lock();
        loop {
            if let Some(e) = &bg.error {
                return Err(Error::Poisoned(e.clone()));
            }
            if self.current_state().imms.is_empty() {
                return Ok(());
            }
            if bg.shutdown {
                return Err(Error::Closed);
            }
            self.bg_cv.notify_one();
            self.flush_cv.wait_for(&mut bg, Duration::from_millis(50));
        }
    }

    fn sync_wal(&self) -> Result<()> {
        self.check_writable()?;
        let r = self.wal.lock().sync();
        if let Err(e) = r {
            let e = Error::from(e);
            self.poison("WAL sync", &e);
            return Err(e);
        }
        Counters::add(&self.counters.syncs, 1);
        Ok(())
    }

    // ---- lifecycle ----

    fn begin_shutdown(&self) {
        self.shutdown_flag.store(true, Ordering::Release);
        let mut bg = self.bg.lock();
        bg.shutdown = true;
        self.bg_cv.notify_all();
        self.flush_cv.notify_all();
        self.compaction.cv.notify_all();
    }

    fn finish_shutdown(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let _leader = self.leader.lock();
        let result = if self.poisoned.load(Ordering::Acquire) {
            Ok(())
        } else {
            self.wal.lock().finish().map_err(Error::from)
        };
        self.lock.lock().take();
        result
    }

    /// True when a frozen memtable waits for its flush.
    pub(crate) fn has_flush_work(&self) -> bool {
        !self.current_state().imms.is_empty()
    }

    fn background_loop(core: Arc<Core>) {
        loop {
            {
                let mut bg = core.bg.lock();
                loop {
                    if bg.shutdown {
                        return;
                    }
                    if bg.error.is_none() && core.has_flush_work() {
                        break;
                    }
                    core.bg_cv.wait(&mut bg);
                }
            }
            if let Err(e) = core.flush_oldest() {
                core.poison("flush", &e);
            }
            let _bg = core.bg.lock();
            core.flush_cv.notify_all();
            core.compaction.cv.notify_all();
        }
    }

    fn stats(&self) -> Stats {
        let state = self.current_state();
        let (wal_segments, wal_bytes) = {
            let wal = self.wal.lock();
            (wal.segments().len(), wal.total_bytes())
        };
        let c = &self.counters;
        let scores = picker::scores(&self.config, &state.tables);
        let levels: Vec<LevelStats> = (0..state.tables.num_levels())
            .map(|l| {
                let io = self.compaction.levels.get(l);
                let get = |f: fn(&crate::compaction::LevelIo) -> &AtomicU64| {
                    io.map_or(0, |io| Counters::get(f(io)))
                };
                LevelStats {
                    tables: state.tables.level(l).len(),
                    bytes: state.tables.level_bytes(l),
                    entries: state
                        .tables
                        .level(l)
                        .iter()
                        .map(|t| t.props().entries)
                        .sum(),
                    target_bytes: if l == 0 {
                        0
                    } else {
                        picker::level_target(&self.config, l)
                    },
                    score: scores.get(l).copied().unwrap_or(0.0),
                    bytes_written: get(|io| &io.bytes_written),
                    bytes_read: get(|io| &io.bytes_read),
                    compactions: get(|io| &io.compactions),
                }
            })
            .collect();
        let compaction_bytes_written: u64 = levels.iter().skip(1).map(|l| l.bytes_written).sum();
        let compaction_bytes_read: u64 = levels.iter().map(|l| l.bytes_read).sum();
        let user_bytes = Counters::get(&c.user_bytes);
        let disk_bytes =
            Counters::get(&c.wal_bytes) + Counters::get(&c.flush_bytes) + compaction_bytes_written;
        let read_amplification = 1
            + state.imms.len()
            + state.tables.level(0).len()
            + (1..state.tables.num_levels())
                .filter(|&l| !state.tables.level(l).is_empty())
                .count();
        Stats {
            last_seqno: SeqNo::new(self.visible.load(Ordering::Acquire)),
            memtable_bytes: state.mem.approximate_bytes() as u64,
            immutable_memtables: state.imms.len(),
            immutable_memtable_bytes: state
                .imms
                .iter()
                .map(|m| m.approximate_bytes() as u64)
                .sum(),
            levels,
            wal_segments,
            wal_bytes,
            live_snapshots: self.snapshots.count(),
            user_bytes_written: Counters::get(&c.user_bytes),
            wal_bytes_written: Counters::get(&c.wal_bytes),
            flush_bytes_written: Counters::get(&c.flush_bytes),
            puts: Counters::get(&c.puts),
            deletes: Counters::get(&c.deletes),
            batches: Counters::get(&c.batches),
            write_groups: Counters::get(&c.groups),
            wal_syncs: Counters::get(&c.syncs),
            flushes: Counters::get(&c.flushes),
            write_stalls: Counters::get(&c.stalls),
            write_stall_micros: Counters::get(&c.stall_micros),
            write_slowdowns: Counters::get(&c.slowdowns),
            write_slowdown_micros: Counters::get(&c.slowdown_micros),
            write_stops: Counters::get(&c.stops),
            write_stop_micros: Counters::get(&c.stop_micros),
            longest_stall_micros: Counters::get(&c.longest_stall_micros),
            pending_compaction_bytes: picker::pending_bytes(&self.config, &state.tables),
            compactions: self
                .compaction
                .levels
                .iter()
                .map(|io| Counters::get(&io.compactions))
                .sum(),
            compaction_bytes_read,
            compaction_bytes_written,
            write_amplification: if user_bytes == 0 {
                0.0
            } else {
                disk_bytes as f64 / user_bytes as f64
            },
            read_amplification,
            conflicts: Counters::get(&c.conflicts),
            recovery: self.recovery.clone(),
        }
    }
}

/// Pops the leader's batch and the queued batches that can share its WAL record.
fn take_group(pending: &mut VecDeque<Pending>) -> Vec<Pending> {
    let mut group = Vec::new();
    let Some(first) = pending.pop_front() else {
        return group;
    };
    let first_size = first.batch.encoded_len();
    let limit = if first_size <= 128 << 10 {
        first_size + (128 << 10)
    } else {
        MAX_GROUP_BYTES
    };
    let leader_sync = first.sync;
    let mut size = first_size;
    group.push(first);
    while let Some(next) = pending.front() {
        // A non-syncing leader must not acknowledge a syncing write without an fsync.
        if next.sync && !leader_sync {
            break;
        }
        let n = next.batch.encoded_len();
        if size + n > limit {
            break;
        }
        size += n;
        if let Some(p) = pending.pop_front() {
            group.push(p);
        }
    }
    group
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
        let (core, rewrite) = crate::recovery::open(path.as_ref(), config)?;
        let core = Arc::new(core);
        if rewrite {
            // Recovery dropped damaged records: persist what was recovered in a table now, so
            // the dropped records can never reappear in a later recovery.
            let _leader = core.leader.lock();
            if !core.current_state().mem.is_empty() {
                core.freeze_memtable()?;
            }
            while core.flush_oldest()? {}
            core.retire_wal_before_active()?;
        }
        let flush_core = Arc::clone(&core);
        let flusher = std::thread::Builder::new()
            .name("strata-flush".into())
            .spawn(move || Core::background_loop(flush_core))?;
        let compact_core = Arc::clone(&core);
        let compactor = std::thread::Builder::new()
            .name("strata-compact".into())
            .spawn(move || Core::compaction_loop(compact_core))?;
        Ok(Db {
            handle: Arc::new(Handle {
                core,
                workers: Mutex::new(vec![flusher, compactor]),
            }),
        })
    }

    /// A builder to set options before opening the store at `path`.
    pub fn builder(path: impl AsRef<Path>) -> DbBuilder {
        DbBuilder::new(path.as_ref())
    }

    fn core(&self) -> &Arc<Core> {
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
        Ok(self.core().get_latest(key.as_ref())?.map(|v| v.value))
    }

    /// The current value of `key` together with its version.
    pub fn get_versioned(&self, key: impl AsRef<[u8]>) -> Result<Option<VersionedValue>> {
        self.core().get_latest(key.as_ref())
    }

    /// The value `key` had as of `version`: the newest write at or below that seqno.
    ///
    /// Only retained history can be read this way (see
    /// [`HistoryRetention`](crate::HistoryRetention)); older versions read as whatever older
    /// retained version remains, or `None`. Hold a [`Snapshot`] to pin a view exactly.
    pub fn get_at(&self, key: impl AsRef<[u8]>, version: SeqNo) -> Result<Option<Bytes>> {
        let snap = version
            .get()
            .min(self.core().visible.load(Ordering::Acquire));
        Ok(self.core().get_at_seq(key.as_ref(), snap)?.map(|v| v.value))
    }

    /// True when `key` has a live value.
    pub fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.core().get_latest(key.as_ref())?.is_some())
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
    /// let last = db.range::<&str, _>(..).next_back().transpose()?;
    /// assert_eq!(last.map(|(k, _)| k).as_deref(), Some(&b"d"[..]));
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn range<K: AsRef<[u8]>, R: RangeBounds<K>>(&self, range: R) -> Range {
        let (guard, state) = self.pinned();
        Range::new(state, guard, crate::iter::owned_bounds(&range))
    }

    /// Live entries whose keys start with `prefix`.
    pub fn prefix(&self, prefix: impl AsRef<[u8]>) -> Range {
        let (guard, state) = self.pinned();
        Range::new(state, guard, crate::iter::prefix_bounds(prefix.as_ref()))
    }

    /// Every live entry.
    pub fn iter(&self) -> Range {
        self.range::<&[u8], _>(..)
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
        let (guard, state) = self.pinned();
        Versions::new(state, guard, key.as_ref())
    }

    fn pinned(&self) -> (Arc<crate::snapshot::SnapshotGuard>, Arc<LsmState>) {
        let core = self.core();
        let guard = Arc::new(core.snapshots.register(&core.visible));
        (guard, core.current_state())
    }

    /// A point-in-time view of the whole store.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(Arc::clone(self.core()))
    }

    /// The highest seqno readers can see: the version of the latest acknowledged write.
    pub fn last_seqno(&self) -> SeqNo {
        SeqNo::new(self.core().visible.load(Ordering::Acquire))
    }

    // ---- writes ----

    /// Stores `value` under `key`; returns the write's version.
    pub fn put(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.put(key, value);
        self.write(b)
    }

    /// Deletes `key` (writes a tombstone, even if the key is absent); returns its version.
    pub fn delete(&self, key: impl AsRef<[u8]>) -> Result<SeqNo> {
        let mut b = WriteBatch::new();
        b.delete(key);
        self.write(b)
    }

    /// Applies `batch` atomically; returns the version of its last write (op `i` of the
    /// batch has version `returned - len + 1 + i`). An empty batch returns the current seqno.
    ///
    /// Fails with [`Error::Conflict`] if a precondition set with
    /// [`WriteBatch::expect_version`] does not hold; nothing is written then.
    pub fn write(&self, batch: WriteBatch) -> Result<SeqNo> {
        let sync = self.core().config.sync == SyncMode::Always;
        self.core().write(batch, sync)
    }

    /// Writes `new` under `key` (a delete when `None`) only if the key's current version is
    /// `expected` (`None` = absent or deleted).
    ///
    /// The outer `Result` reports I/O failures; the inner one the outcome: `Ok(version)` of
    /// the new write, or `Err(conflict)` carrying the key's actual version.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let db = strata::Db::open(dir.path())?;
    /// let v1 = db.compare_and_set("k", None, Some("first"))?.expect("absent key");
    /// let conflict = db.compare_and_set("k", None, Some("again"))?.unwrap_err();
    /// assert_eq!(conflict.current, Some(v1));
    /// db.compare_and_set("k", Some(v1), Some("second"))?.expect("version matches");
    /// # Ok::<_, strata::Error>(())
    /// ```
    pub fn compare_and_set(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<SeqNo>,
        new: Option<impl AsRef<[u8]>>,
    ) -> Result<Result<SeqNo, CasConflict>> {
        let key = key.as_ref();
        let mut b = WriteBatch::new();
        b.expect_version(key, expected);
        match new {
            Some(v) => b.put(key, v),
            None => b.delete(key),
        };
        match self.write(b) {
            Ok(s) => Ok(Ok(s)),
            Err(Error::Conflict(c)) => Ok(Err(c)),
            Err(e) => Err(e),
        }
    }

    // ---- maintenance ----

    /// Writes the memtable to a table and waits until every frozen memtable is flushed. Also
    /// makes every earlier write durable.
    pub fn flush(&self) -> Result<()> {
        self.core().flush_all()?;
        self.core().sync_wal()
    }

    /// Makes every acknowledged write durable (needed only with [`SyncMode::Buffered`]).
    pub fn sync(&self) -> Result<()> {
        self.core().sync_wal()
    }

    /// Syncs the WAL, stops background work and releases the directory lock. Other handles
    /// to the store fail with [`Error::Closed`] on writes afterwards.
    pub fn close(self) -> Result<()> {
        self.handle.close()
    }

    /// Why the store rejects writes, or `None` while it accepts them.
    ///
    /// A failed WAL write or fsync, flush, manifest write or compaction *poisons* the store:
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
        self.core().poison_cause()
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
        self.core().flush_all()?;
        self.core().compact_all_tables(CompactionReason::Manual)
    }

    /// Compacts the tables holding keys in `range`, pushing them down to the deepest level.
    pub fn compact_range<K: AsRef<[u8]>, R: RangeBounds<K>>(
        &self,
        range: R,
    ) -> Result<CompactionRun> {
        use std::ops::Bound;
        let lo = match range.start_bound() {
            Bound::Included(k) | Bound::Excluded(k) => k.as_ref().to_vec(),
            Bound::Unbounded => Vec::new(),
        };
        let hi = match range.end_bound() {
            Bound::Included(k) | Bound::Excluded(k) => Some(k.as_ref().to_vec()),
            Bound::Unbounded => None,
        };
        self.core().flush_all()?;
        self.core().compact_span(&(lo, hi))
    }

    /// A full compaction unless one is running, or — without `force` — the last full
    /// compaction finished less than the periodic schedule's `min_interval` ago; `Ok(None)`
    /// when skipped.
    pub fn try_compact(&self, force: bool) -> Result<Option<CompactionRun>> {
        let core = self.core();
        if core.compaction.running.load(Ordering::Acquire) {
            return Ok(None);
        }
        if !force && !core.full_compaction_allowed() {
            return Ok(None);
        }
        self.compact().map(Some)
    }

    /// Whether a compaction runs, the periodic schedule, and recent runs.
    pub fn compaction_status(&self) -> CompactionStatus {
        self.core().compaction_status()
    }

    /// Changes the periodic full-compaction schedule.
    pub fn set_periodic_compaction(&self, schedule: PeriodicCompaction) {
        self.core().set_periodic(schedule);
    }

    /// The live WAL segments, oldest first.
    pub fn wal_segments(&self) -> Vec<WalSegment> {
        self.core().wal.lock().segments()
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
    pub(crate) fn view(&self) -> (Arc<LsmState>, u64) {
        self.core().read_view()
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
