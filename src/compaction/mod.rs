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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;

use crate::config::PeriodicCompaction;
use crate::error::{Error, Result, catch_panic};
use crate::limits::NUM_LEVELS;
use crate::stats::LevelIo;
pub(crate) use job::JobContext;
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
    /// Scans merged the level-0 tables often enough to pay for compacting them
    /// ([`Config::seek_compaction_bytes`](crate::Config::seek_compaction_bytes)).
    Reads,
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

/// How far the running compaction has got.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionProgress {
    /// When it started.
    pub started_at: SystemTime,
    /// Why it runs.
    pub reason: CompactionReason,
    /// The level it writes.
    pub output_level: usize,
    /// Tables it reads.
    pub tables_in: usize,
    /// Bytes it reads.
    pub bytes_in: u64,
    /// Output tables finished so far.
    pub tables_out: usize,
    /// Bytes of the output tables finished so far.
    pub bytes_out: u64,
    /// Whether reads take the keys the finished outputs hold from them already (a
    /// compaction of level 0, or of more than two levels, shows them).
    pub shown_to_reads: bool,
}

/// What compaction is doing and has done, from [`Db::compaction_status`](crate::Db::compaction_status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionStatus {
    /// A compaction is running now.
    pub running: bool,
    /// How far the running compaction has got (`None` between compactions; a move of a table
    /// to the next level, which rewrites nothing, shows none).
    pub current: Option<CompactionProgress>,
    /// The periodic schedule.
    pub periodic: PeriodicCompaction,
    /// The last manual or periodic compaction.
    pub last_run: Option<CompactionRun>,
    /// Recent runs of every kind, oldest first (at most 64).
    pub history: Vec<CompactionRun>,
    /// The error that stopped background compaction, if any.
    pub error: Option<String>,
}

/// Compaction bookkeeping kept by the core.
#[derive(Debug)]
pub(crate) struct CompactionState {
    /// Held while a job runs: one compaction at a time. Closing takes it too, so it waits
    /// for a running job (which stops early once the store is shutting down).
    pub lock: Mutex<()>,
    pub running: AtomicBool,
    /// The running job's progress, kept by the job.
    pub current: Mutex<Option<CompactionProgress>>,
    pub inner: Mutex<StatusInner>,
    /// Per-level I/O counters.
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
            current: Mutex::new(None),
            inner: Mutex::new(StatusInner {
                periodic,
                last_run: None,
                last_full_at: None,
                history: VecDeque::new(),
                error: None,
                cursor: vec![Vec::new(); NUM_LEVELS],
                opened_at: Instant::now(),
            }),
            levels: (0..NUM_LEVELS).map(|_| LevelIo::default()).collect(),
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

impl CompactionState {
    /// Runs `job` under the compaction lock (already held by the caller), recording it.
    fn run_recorded(
        &self,
        cx: &JobContext<'_>,
        job: Job,
        reason: CompactionReason,
        full: bool,
    ) -> Result<CompactionRun> {
        self.running.store(true, Ordering::Release);
        let last_key = job
            .inputs
            .iter()
            .filter(|(l, _)| *l + 1 == job.output_level)
            .map(|(_, t)| t.props().largest.clone())
            .max_by(|a, b| crate::key::compare(a, b));
        let level = job.output_level.saturating_sub(1);
        let result = catch_panic(|| cx.run(job, reason));
        let run = match result {
            Ok(run) => run,
            Err(e) => {
                self.finished();
                if !matches!(e, Error::Closed) {
                    // A failed manual compaction poisons the store as a background one does.
                    cx.life.poison("compaction", &e);
                }
                return Err(e);
            }
        };
        if reason == CompactionReason::Automatic
            && let Some(k) = last_key
            && let Some(c) = self.inner.lock().cursor.get_mut(level)
        {
            *c = k;
        }
        // Recorded before the job stops showing as running, so that a status read always
        // finds the run, whether as running or in the history.
        self.record(&run, full);
        self.finished();
        cx.life.notify_tree_changed();
        Ok(run)
    }

    /// Marks the running job as ended.
    fn finished(&self) {
        *self.current.lock() = None;
        self.running.store(false, Ordering::Release);
    }

    /// Merges every table into one sorted run. Memtables are not flushed here.
    pub(crate) fn compact_all_tables(
        &self,
        cx: &JobContext<'_>,
        reason: CompactionReason,
    ) -> Result<CompactionRun> {
        let _job = self.lock.lock();
        if cx.life.shutting_down() {
            return Err(Error::Closed);
        }
        match picker::full_job(&cx.view.current().tables) {
            Some(job) => self.run_recorded(cx, job, reason, true),
            None => {
                let run = CompactionRun::empty(reason);
                self.record(&run, true);
                Ok(run)
            }
        }
    }

    /// Pushes every table overlapping `span` down, level by level, to the deepest level.
    pub(crate) fn compact_span(
        &self,
        cx: &JobContext<'_>,
        span: &KeySpan,
    ) -> Result<CompactionRun> {
        let _job = self.lock.lock();
        if cx.life.shutting_down() {
            return Err(Error::Closed);
        }
        let mut total = CompactionRun::empty(CompactionReason::Manual);
        let start = Instant::now();
        for level in 0..NUM_LEVELS - 1 {
            let tables = std::sync::Arc::clone(&cx.view.current().tables);
            let deepest = (0..NUM_LEVELS)
                .rev()
                .find(|&l| !tables.level(l).is_empty())
                .unwrap_or(0);
            if level >= deepest.max(1) {
                break;
            }
            if let Some(job) =
                picker::range_job(cx.config, &tables, level, &span.0, span.1.as_deref())
            {
                let run = self.run_recorded(cx, job, CompactionReason::Manual, false)?;
                total.absorb(&run);
            }
        }
        total.duration = start.elapsed();
        Ok(total)
    }

    /// Runs the most urgent automatic compaction, if a level needs one or scans paid for
    /// one; true if it ran.
    pub(crate) fn compact_automatic(&self, cx: &JobContext<'_>) -> Result<bool> {
        let pick = || {
            let inner = self.inner.lock();
            let tables = &cx.view.current().tables;
            picker::pick(cx.config, tables, &inner.cursor)
                .map(|job| (job, CompactionReason::Automatic))
                .or_else(|| {
                    picker::pick_for_reads(cx.config, tables)
                        .map(|job| (job, CompactionReason::Reads))
                })
        };
        if pick().is_none() {
            return Ok(false);
        }
        let _job = self.lock.lock();
        if cx.life.shutting_down() {
            return Err(Error::Closed);
        }
        // Re-pick under the lock: a manual compaction may have changed the tables.
        match pick() {
            Some((job, reason)) => {
                self.run_recorded(cx, job, reason, false)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Whether an unforced full compaction may run now (seed B's minimum interval).
    pub(crate) fn full_compaction_allowed(&self) -> bool {
        let inner = self.inner.lock();
        inner
            .last_full_at
            .is_none_or(|t| t.elapsed() >= inner.periodic.min_interval)
    }

    /// How long until the periodic compaction is due; `None` when it is switched off.
    pub(crate) fn periodic_due(&self) -> Option<Duration> {
        let inner = self.inner.lock();
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

    /// Records the error that stopped background compaction.
    pub(crate) fn record_error(&self, e: &Error) {
        self.inner.lock().error = Some(e.to_string());
    }

    /// Whether a compaction runs, the schedule, and recent runs.
    pub(crate) fn status(&self) -> CompactionStatus {
        let inner = self.inner.lock();
        CompactionStatus {
            running: self.running.load(Ordering::Acquire),
            current: self.current.lock().clone(),
            periodic: inner.periodic,
            last_run: inner.last_run.clone(),
            history: inner.history.iter().cloned().collect(),
            error: inner.error.clone(),
        }
    }

    /// Changes the periodic schedule.
    pub(crate) fn set_periodic(&self, p: PeriodicCompaction) {
        self.inner.lock().periodic = p;
    }
}
