//! Compaction: keeping disk use and read cost bounded.
//!
//! A background thread runs automatic compactions chosen by [`picker`] whenever a level
//! scores at least 1, and the optional periodic full compaction. [`Db::compact`],
//! [`Db::compact_range`] and [`Db::try_compact`] run compactions on demand. Only one
//! compaction runs at a time; flushes continue meanwhile (they only add level-0 tables, which
//! never conflict with a running job). [`job`] executes one compaction.
//!
//! [`Db::compact`]: crate::Db::compact
//! [`Db::compact_range`]: crate::Db::compact_range
//! [`Db::try_compact`]: crate::Db::try_compact

pub(crate) mod job;
pub(crate) mod picker;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::{Condvar, Mutex};

use crate::config::PeriodicCompaction;
use crate::db::Core;
use crate::error::{Error, Result, catch_panic};
use crate::limits::NUM_LEVELS;
use crate::sync_point::sync_point;
use picker::Job;

/// Runs kept in [`CompactionStatus::history`].
const HISTORY_LEN: usize = 64;

/// Why a compaction ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CompactionReason {
    /// Requested through [`Db::compact`](crate::Db::compact) and friends.
    Manual,
    /// The periodic full compaction.
    Periodic,
    /// A level exceeded its target.
    Automatic,
}

/// One finished compaction (for a range compaction, the sum of its steps).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionRun {
    /// When it started.
    pub started_at: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Why it ran.
    pub reason: CompactionReason,
    /// Tables read.
    pub tables_in: usize,
    /// Tables written (for a move, the tables moved).
    pub tables_out: usize,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
    /// Entries read.
    pub entries_in: u64,
    /// Entries dropped: versions past retention and deleted keys.
    pub entries_dropped: u64,
}

impl CompactionRun {
    fn empty(reason: CompactionReason) -> CompactionRun {
        CompactionRun {
            started_at: SystemTime::now(),
            duration: Duration::ZERO,
            reason,
            tables_in: 0,
            tables_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            entries_in: 0,
            entries_dropped: 0,
        }
    }

    fn absorb(&mut self, other: &CompactionRun) {
        self.tables_in += other.tables_in;
        self.tables_out += other.tables_out;
        self.bytes_in += other.bytes_in;
        self.bytes_out += other.bytes_out;
        self.entries_in += other.entries_in;
        self.entries_dropped += other.entries_dropped;
    }
}

/// What compaction is doing and has done, from [`Db::compaction_status`](crate::Db::compaction_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionStatus {
    /// A compaction is running now.
    pub running: bool,
    /// The periodic schedule.
    pub periodic: PeriodicCompaction,
    /// The last manual or periodic compaction.
    pub last_run: Option<CompactionRun>,
    /// Recent runs of every kind, oldest first (at most 64).
    pub history: Vec<CompactionRun>,
    /// The error that stopped background compaction, if any.
    pub error: Option<String>,
}

/// Per-level I/O counters.
#[derive(Debug, Default)]
pub(crate) struct LevelIo {
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
    pub compactions: AtomicU64,
}

/// Compaction bookkeeping kept by the core.
#[derive(Debug)]
pub(crate) struct CompactionState {
    /// Held while a job runs: one compaction at a time. Closing takes it too, so it waits
    /// for a running job (which stops early once the store is shutting down).
    pub lock: Mutex<()>,
    pub running: AtomicBool,
    pub inner: Mutex<StatusInner>,
    /// Wakes the compaction thread; also signalled after every compaction.
    pub cv: Condvar,
    pub levels: Vec<LevelIo>,
}

#[derive(Debug)]
pub(crate) struct StatusInner {
    pub periodic: PeriodicCompaction,
    pub last_run: Option<CompactionRun>,
    pub last_full_at: Option<Instant>,
    pub history: VecDeque<CompactionRun>,
    pub error: Option<String>,
    /// Round-robin pointer per level: the largest key compacted there last.
    pub cursor: Vec<Vec<u8>>,
    pub opened_at: Instant,
}

impl CompactionState {
    pub(crate) fn new(periodic: PeriodicCompaction) -> CompactionState {
        CompactionState {
            lock: Mutex::new(()),
            running: AtomicBool::new(false),
            inner: Mutex::new(StatusInner {
                periodic,
                last_run: None,
                last_full_at: None,
                history: VecDeque::new(),
                error: None,
                cursor: vec![Vec::new(); NUM_LEVELS],
                opened_at: Instant::now(),
            }),
            cv: Condvar::new(),
            levels: (0..NUM_LEVELS).map(|_| LevelIo::default()).collect(),
        }
    }

    pub(crate) fn record_level_io(&self, job: &Job, bytes_out: u64) {
        for (level, t) in &job.inputs {
            if let Some(io) = self.levels.get(*level) {
                io.bytes_read.fetch_add(t.file_size(), Ordering::Relaxed);
            }
        }
        if let Some(io) = self.levels.get(job.output_level) {
            if !job.trivial_move {
                io.bytes_written.fetch_add(bytes_out, Ordering::Relaxed);
            }
            io.compactions.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn record(&self, run: &CompactionRun, full: bool) {
        let mut inner = self.inner.lock();
        if inner.history.len() == HISTORY_LEN {
            inner.history.pop_front();
        }
        inner.history.push_back(run.clone());
        if run.reason != CompactionReason::Automatic {
            inner.last_run = Some(run.clone());
        }
        if full {
            inner.last_full_at = Some(Instant::now());
        }
    }
}

/// Lower and upper user-key bounds of a range compaction (`None` = unbounded).
pub(crate) type KeySpan = (Vec<u8>, Option<Vec<u8>>);

impl Core {
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutdown_flag.load(Ordering::Acquire)
    }

    /// Runs `job` under the compaction lock (already held by the caller), recording it.
    fn run_recorded(
        &self,
        job: Job,
        reason: CompactionReason,
        full: bool,
    ) -> Result<CompactionRun> {
        self.compaction.running.store(true, Ordering::Release);
        let last_key = job
            .inputs
            .iter()
            .filter(|(l, _)| *l + 1 == job.output_level)
            .map(|(_, t)| t.props().largest.clone())
            .max_by(|a, b| crate::key::compare(a, b));
        let level = job.output_level.saturating_sub(1);
        let result = catch_panic(|| self.run_job(job, reason));
        self.compaction.running.store(false, Ordering::Release);
        let run = match result {
            Ok(run) => run,
            Err(Error::Closed) => return Err(Error::Closed),
            Err(e) => {
                // A failed manual compaction poisons the store as a background one does.
                self.poison("compaction", &e);
                return Err(e);
            }
        };
        if reason == CompactionReason::Automatic
            && let Some(k) = last_key
            && let Some(c) = self.compaction.inner.lock().cursor.get_mut(level)
        {
            *c = k;
        }
        self.compaction.record(&run, full);
        let _bg = self.bg.lock();
        self.compaction.cv.notify_all();
        self.flush_cv.notify_all();
        Ok(run)
    }

    /// Merges every table into one sorted run. Memtables are not flushed here.
    pub(crate) fn compact_all_tables(&self, reason: CompactionReason) -> Result<CompactionRun> {
        let _job = self.compaction.lock.lock();
        if self.shutting_down() {
            return Err(Error::Closed);
        }
        match picker::full_job(&self.view.current().tables) {
            Some(job) => self.run_recorded(job, reason, true),
            None => {
                let run = CompactionRun::empty(reason);
                self.compaction.record(&run, true);
                Ok(run)
            }
        }
    }

    /// Pushes every table overlapping `span` down, level by level, to the deepest level.
    pub(crate) fn compact_span(&self, span: &KeySpan) -> Result<CompactionRun> {
        let _job = self.compaction.lock.lock();
        if self.shutting_down() {
            return Err(Error::Closed);
        }
        let mut total = CompactionRun::empty(CompactionReason::Manual);
        let start = Instant::now();
        for level in 0..NUM_LEVELS - 1 {
            let tables = std::sync::Arc::clone(&self.view.current().tables);
            let deepest = (0..NUM_LEVELS)
                .rev()
                .find(|&l| !tables.level(l).is_empty())
                .unwrap_or(0);
            if level >= deepest.max(1) {
                break;
            }
            if let Some(job) = picker::range_job(&tables, level, &span.0, span.1.as_deref()) {
                let run = self.run_recorded(job, CompactionReason::Manual, false)?;
                total.absorb(&run);
            }
        }
        total.duration = start.elapsed();
        Ok(total)
    }

    /// Whether an unforced full compaction may run now (seed B's minimum interval).
    pub(crate) fn full_compaction_allowed(&self) -> bool {
        let inner = self.compaction.inner.lock();
        inner
            .last_full_at
            .is_none_or(|t| t.elapsed() >= inner.periodic.min_interval)
    }

    fn periodic_due(&self) -> Option<Duration> {
        let inner = self.compaction.inner.lock();
        if !inner.periodic.enabled {
            return None;
        }
        let since = inner.last_full_at.unwrap_or(inner.opened_at);
        let due_in = inner.periodic.interval.saturating_sub(since.elapsed());
        let min_wait = inner.last_full_at.map_or(Duration::ZERO, |t| {
            inner.periodic.min_interval.saturating_sub(t.elapsed())
        });
        Some(due_in.max(min_wait))
    }

    /// The compaction thread: automatic compactions first, then the periodic one.
    pub(crate) fn compaction_loop(core: std::sync::Arc<Core>) {
        loop {
            if core.shutting_down() {
                return;
            }
            if core.bg.lock().error.is_none() {
                match catch_panic(|| core.compact_once()) {
                    Ok(true) => continue,
                    Ok(false) => {}
                    Err(Error::Closed) => return,
                    Err(e) => {
                        core.compaction.inner.lock().error = Some(e.to_string());
                        core.poison("compaction", &e);
                    }
                }
            }
            let wait = core
                .periodic_due()
                .unwrap_or(Duration::from_secs(3600))
                .min(Duration::from_secs(1));
            let mut bg = core.bg.lock();
            if bg.shutdown {
                return;
            }
            if core.periodic_due().is_some_and(|d| d.is_zero()) {
                continue;
            }
            core.compaction
                .cv
                .wait_for(&mut bg, wait.max(Duration::from_millis(1)));
        }
    }

    /// Runs one automatic or periodic compaction if one is due; true if it ran.
    fn compact_once(&self) -> Result<bool> {
        let due = {
            let inner = self.compaction.inner.lock();
            picker::pick(&self.config, &self.view.current().tables, &inner.cursor).is_some()
        };
        if due {
            let _job = self.compaction.lock.lock();
            if self.shutting_down() {
                return Err(Error::Closed);
            }
            // Re-pick under the lock: a manual compaction may have changed the tables.
            let job = {
                let inner = self.compaction.inner.lock();
                picker::pick(&self.config, &self.view.current().tables, &inner.cursor)
            };
            if let Some(job) = job {
                self.run_recorded(job, CompactionReason::Automatic, false)?;
                return Ok(true);
            }
            return Ok(false);
        }
        if self.periodic_due().is_some_and(|d| d.is_zero()) {
            sync_point!(self.sync_points, "periodic compaction: before its flush");
            self.flush_all_without_waiting_for_writers()?;
            self.compact_all_tables(CompactionReason::Periodic)?;
            return Ok(true);
        }
        Ok(false)
    }

    pub(crate) fn compaction_status(&self) -> CompactionStatus {
        let inner = self.compaction.inner.lock();
        CompactionStatus {
            running: self.compaction.running.load(Ordering::Acquire),
            periodic: inner.periodic,
            last_run: inner.last_run.clone(),
            history: inner.history.iter().cloned().collect(),
            error: inner.error.clone(),
        }
    }

    pub(crate) fn set_periodic(&self, p: PeriodicCompaction) {
        self.compaction.inner.lock().periodic = p;
        let _bg = self.bg.lock();
        self.compaction.cv.notify_all();
    }
}
