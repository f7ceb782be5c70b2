//! The write path: the queue of writers, group commit, backpressure, and switching memtables.
//!
//! Writers queue up ([`queue`]); the writer at the head becomes the *leader*, takes the
//! writes queued behind it as one commit group, appends them to the WAL as one record with
//! one fsync, inserts them into the memtable and publishes the new visible seqno (group
//! commit, as in LevelDB). Only the leader, holding the leader lock, touches the WAL and
//! switches memtables. Before committing, the leader makes room: it freezes a full memtable
//! (rolling the WAL over to a new segment) and applies backpressure ([`stall`]).
//!
//! Work on the WAL that need not hold up commits — making the next segment ready, cutting
//! the preallocated tails of sealed ones, deleting retired ones — happens off the leader
//! lock, on the flush thread ([`Writer::wal_chores`]) or after the WAL mutex is released.

mod queue;
mod stall;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::batch::{self, BatchView, WriteBatch};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::error::{CasConflict, Error, Result, catch_panic};
use crate::key::Kind;
use crate::lifecycle::Lifecycle;
use crate::manifest::Edit;
use crate::memtable::Memtable;
use crate::seqno::SeqNo;
use crate::state::LsmState;
use crate::stats::Counters;
use crate::view::View;
use crate::wal::segment::{self, RECORD_PREFIX_LEN, Spare, Wal, WalSegment};
use queue::{Pending, WriteQueue, take_group};

/// The write path's state, and what it reads and changes besides.
pub(crate) struct Writer {
    config: Config,
    dir: PathBuf,
    view: Arc<View>,
    life: Arc<Lifecycle>,
    catalog: Arc<Catalog>,
    counters: Arc<Counters>,
    queue: Mutex<WriteQueue>,
    queue_cv: Condvar,
    /// Held by whoever appends to the WAL or switches memtables.
    leader: Mutex<()>,
    /// Asks the next commit leader to freeze the memtable (set by a thread that must not
    /// wait for the leader lock).
    freeze_requested: AtomicBool,
    /// The WAL rolled over: the flush thread prepares the next segment and trims the old one.
    wal_chores: AtomicBool,
    wal: Mutex<Wal>,
}

impl Writer {
    /// The write path of the store in `dir`, appending to `wal`.
    pub(crate) fn new(
        config: Config,
        dir: &Path,
        view: Arc<View>,
        life: Arc<Lifecycle>,
        catalog: Arc<Catalog>,
        counters: Arc<Counters>,
        wal: Wal,
    ) -> Writer {
        Writer {
            config,
            dir: dir.to_path_buf(),
            view,
            life,
            catalog,
            counters,
            queue: Mutex::new(WriteQueue::default()),
            queue_cv: Condvar::new(),
            leader: Mutex::new(()),
            freeze_requested: AtomicBool::new(false),
            // The first segment has no spare yet.
            wal_chores: AtomicBool::new(true),
            wal: Mutex::new(wal),
        }
    }

    /// Commits `batch` (with an fsync when `sync`) and returns the version of its last write.
    pub(crate) fn write(&self, mut batch: WriteBatch, sync: bool) -> Result<SeqNo> {
        self.life.check_writable()?;
        if let Some(e) = batch.take_invalid() {
            return Err(e);
        }
        if batch.is_empty() && batch.preconditions().is_empty() {
            return Ok(SeqNo::new(self.view.visible()));
        }
        let mut q = self.queue.lock();
        let ticket = q.push(batch, sync);
        loop {
            if let Some(r) = q.results.remove(&ticket) {
                return r;
            }
            if q.leads(ticket) {
                break;
            }
            self.queue_cv.wait(&mut q);
        }
        // This writer leads the next commit group.
        q.leader_active = true;
        let mut group = take_group(&mut q.pending);
        drop(q);
        // A panic must not leave `leader_active` set (every later writer would wait for a
        // leader that is gone): it poisons the store and fails the whole group.
        let results = match catch_panic(|| Ok(self.commit_group(&mut group))) {
            Ok(results) => results,
            Err(e) => {
                self.life.poison("group commit", &e);
                let e = self.life.poison_cause().map_or(e, Error::Poisoned);
                group
                    .iter()
                    .map(|p| (p.ticket, Err(e.duplicate())))
                    .collect()
            }
        };
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

    fn commit_group(&self, group: &mut [Pending]) -> Vec<(u64, Result<SeqNo>)> {
        let fail_all = |group: &[Pending], e: &Error| -> Vec<(u64, Result<SeqNo>)> {
            group
                .iter()
                .map(|p| (p.ticket, Err(e.duplicate())))
                .collect()
        };
        let _leader = self.leader.lock();
        if let Err(e) = self.life.check_writable() {
            return fail_all(group, &e);
        }
        if let Err(e) = self.make_room() {
            return fail_all(group, &e);
        }
        let first_seq = self.view.visible() + 1;
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
        for p in group.iter_mut() {
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
            return fail_all(group, &e);
        };
        if let Some(c) = record.get_mut(RECORD_PREFIX_LEN + 8..RECORD_PREFIX_LEN + 12) {
            c.copy_from_slice(&count32.to_le_bytes());
        }
        let mut rolled = false;
        let wal_result = {
            let mut wal = self.wal.lock();
            let roll = if wal.needs_roll() {
                rolled = true;
                wal.roll(|| self.catalog.allocate_file_number()).map(drop)
            } else {
                Ok(())
            };
            roll.and_then(|()| wal.append(&mut record, need_sync))
        };
        if rolled {
            self.wal_chores.store(true, Ordering::Release);
            self.life.wake_flusher();
        }
        if let Err(e) = wal_result {
            let e = Error::from(e);
            self.life.poison("WAL write", &e);
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
                let mem = self.view.memtable();
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
                self.life.poison("memtable insert", &e);
                return fail_all(group, &e);
            }
        }
        self.view.set_visible(next_seq - 1);
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
                None => self.view.get_latest(key)?.map(|v| v.version),
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

    /// Makes sure the memtable has room, freezing it, and applies backpressure: writes are
    /// delayed more the further compaction falls behind, and stop only at the hard limits.
    /// Called with the leader lock held.
    fn make_room(&self) -> Result<()> {
        let (config, view, life, counters) =
            (&self.config, &*self.view, &*self.life, &*self.counters);
        let mut slowed = false;
        loop {
            let state = view.current();
            let pressure = stall::compaction_pressure(config, &state);
            if pressure >= 1.0 {
                stall::stall_for_compaction(config, view, life, counters)?;
                continue;
            }
            if pressure > 0.0 && !slowed {
                let delay = stall::slowdown(pressure);
                std::thread::sleep(delay);
                counters.note_stall(&counters.slowdowns, &counters.slowdown_micros, delay);
                slowed = true;
            }
            let wal_full =
                !state.mem.is_empty() && self.wal.lock().total_bytes() > config.max_wal_bytes;
            let requested = self.freeze_requested.load(Ordering::Acquire) && !state.mem.is_empty();
            if state.mem.approximate_bytes() < config.memtable_bytes && !wal_full && !requested {
                return Ok(());
            }
            if state.imms.len() >= config.max_immutable_memtables {
                stall::stall_for_flush(config, view, life, counters)?;
                continue;
            }
            return self.freeze_memtable();
        }
    }

    /// Takes the leader lock: no commit runs and no memtable is switched while it is held.
    pub(crate) fn lead(&self) -> MutexGuard<'_, ()> {
        self.leader.lock()
    }

    /// Freezes the mutable memtable and starts a new one with a fresh WAL segment. Requires
    /// the leader lock.
    pub(crate) fn freeze_memtable(&self) -> Result<()> {
        self.freeze_requested.store(false, Ordering::Release);
        let rolled = {
            let mut wal = self.wal.lock();
            if wal.active_is_empty() {
                // The segment holds no write of the memtable being frozen (what an open
                // replayed lies in older ones), so the fresh memtable can start in it; a new
                // segment would leave this one behind, sealed and empty, should close cut
                // the flush off.
                Ok(wal.active_number())
            } else {
                wal.roll(|| self.catalog.allocate_file_number())
            }
        };
        let number = match rolled {
            Ok(number) => number,
            Err(e) => {
                let e = Error::from(e);
                self.life.poison("WAL segment roll", &e);
                return Err(e);
            }
        };
        self.wal_chores.store(true, Ordering::Release);
        let fresh = Arc::new(Memtable::new(number, self.config.memtable_bytes));
        self.view.publish(|cur| {
            let mut imms = Vec::with_capacity(cur.imms.len() + 1);
            imms.push(Arc::clone(&cur.mem));
            imms.extend(cur.imms.iter().cloned());
            LsmState {
                mem: fresh,
                imms,
                tables: Arc::clone(&cur.tables),
            }
        });
        self.life.wake_flusher();
        Ok(())
    }

    /// Freezes the memtable (if it holds anything) and waits until it and every memtable
    /// frozen before it are in tables. Memtables frozen after the call are not waited for, so
    /// this ends under any write load.
    pub(crate) fn flush_all(&self) -> Result<()> {
        let frozen = {
            let _leader = self.leader.lock();
            // Checked under the leader lock: closing takes it too, so no segment is created
            // after the store released its directory.
            self.life.check_writable()?;
            if !self.view.current().mem.is_empty() {
                self.freeze_memtable()?;
            }
            self.view.current().imms.clone()
        };
        self.wait_flushed(&frozen)
    }

    /// [`Writer::flush_all`] for the compaction thread, which must never wait on the write
    /// path: a commit leader stalled for compaction holds the leader lock until compaction
    /// catches up. When a leader is busy, the freeze is left to it (at its next commit) and
    /// only the memtables already frozen are waited for.
    pub(crate) fn flush_all_without_waiting_for_writers(&self) -> Result<()> {
        let frozen = match self.leader.try_lock() {
            Some(_leader) => {
                self.life.check_writable()?;
                if !self.view.current().mem.is_empty() {
                    self.freeze_memtable()?;
                }
                self.view.current().imms.clone()
            }
            None => {
                self.freeze_requested.store(true, Ordering::Release);
                self.view.current().imms.clone()
            }
        };
        self.wait_flushed(&frozen)
    }

    /// Waits until none of `frozen` waits for its flush any more.
    fn wait_flushed(&self, frozen: &[Arc<Memtable>]) -> Result<()> {
        let life = &*self.life;
        let mut signals = life.signals();
        loop {
            if let Some(e) = &signals.error {
                return Err(Error::Poisoned(e.clone()));
            }
            let pending = self.view.current();
            if !pending
                .imms
                .iter()
                .any(|m| frozen.iter().any(|f| Arc::ptr_eq(m, f)))
            {
                return Ok(());
            }
            if signals.shutdown {
                return Err(Error::Closed);
            }
            life.flush_wanted.notify_one();
            life.flushed
                .wait_for(&mut signals, Duration::from_millis(50));
        }
    }

    /// Makes every acknowledged write durable.
    pub(crate) fn sync(&self) -> Result<()> {
        self.life.check_writable()?;
        let r = self.wal.lock().sync();
        if let Err(e) = r {
            let e = Error::from(e);
            self.life.poison("WAL sync", &e);
            return Err(e);
        }
        Counters::add(&self.counters.syncs, 1);
        Ok(())
    }

    /// Records in the manifest that no sealed WAL segment is needed any more and deletes them.
    /// Only valid when every frozen memtable is flushed and the mutable one started in the
    /// active segment.
    pub(crate) fn retire_sealed_segments(&self) -> Result<()> {
        let active = self.wal.lock().active_number();
        let mut log = self.catalog.lock();
        if log.state.log_number < active {
            let edit = Edit {
                log_number: Some(active),
                next_file: Some(self.catalog.next_file()),
                ..Default::default()
            };
            self.catalog.log_edit(&mut log, &edit, &self.life)?;
        }
        drop(log);
        self.remove_segments_below(active)
    }

    /// Deletes the sealed segments numbered below `number`, without holding up commits:
    /// they are taken off the WAL under its mutex, and deleted after it is released.
    pub(crate) fn remove_segments_below(&self, number: u64) -> Result<()> {
        let retired = self.wal.lock().take_below(number);
        segment::remove_segments(&*self.config.fs, &self.dir, &retired)?;
        Ok(())
    }

    /// True when the flush thread has [`Writer::wal_chores`] to do; clears the request.
    pub(crate) fn take_wal_chores(&self) -> bool {
        self.wal_chores.swap(false, Ordering::AcqRel)
    }

    /// True when [`Writer::wal_chores`] are requested.
    pub(crate) fn has_wal_chores(&self) -> bool {
        self.wal_chores.load(Ordering::Acquire)
    }

    /// WAL work kept out of the commit path: make the next segment ready for the next roll,
    /// and cut the preallocated tails of sealed segments.
    pub(crate) fn wal_chores(&self) -> Result<()> {
        let fs = &*self.config.fs;
        let wanted = self.wal.lock().wants_spare();
        if let Some(prev) = wanted {
            let number = self.catalog.allocate_file_number();
            let spare = Spare::prepare(fs, &self.dir, number, prev, self.config.wal_segment_bytes)?;
            let unused = self.wal.lock().offer_spare(spare);
            if let Some(unused) = unused {
                unused.discard(fs, &self.dir);
            }
        }
        let untrimmed = self.wal.lock().take_untrimmed();
        segment::trim_segments(fs, &untrimmed)?;
        Ok(())
    }

    /// The live WAL segments, oldest first.
    pub(crate) fn wal_segments(&self) -> Vec<WalSegment> {
        self.wal.lock().segments()
    }

    /// Live WAL segments and the bytes they hold.
    pub(crate) fn wal_size(&self) -> (usize, u64) {
        let wal = self.wal.lock();
        (wal.segments().len(), wal.total_bytes())
    }

    /// Waits for the commit in progress and syncs and trims the WAL, unless the store is
    /// poisoned (then nothing more is written).
    pub(crate) fn close(&self) -> Result<()> {
        let _leader = self.leader.lock();
        if self.life.is_poisoned() {
            return Ok(());
        }
        self.wal.lock().finish().map_err(Error::from)
    }
}
