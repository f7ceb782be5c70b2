//! Whether the store may still write — open, closing, closed or poisoned — and the signals
//! the background threads, stalled writers and `flush()` wait on.
//!
//! A failure that leaves the store unsure of what reached the disk (a failed WAL write or
//! fsync, flush, manifest write or compaction, or a panic in one of them) *poisons* it: every
//! later write fails with the same [`PoisonCause`] until the store is reopened, while reads
//! keep working.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::error::{Error, PoisonCause, Result};

/// The store's state and its wake-up signals.
#[derive(Debug, Default)]
pub(crate) struct Lifecycle {
    poison: Mutex<Option<PoisonCause>>,
    poisoned: AtomicBool,
    closed: AtomicBool,
    /// Set when closing starts; long jobs check it and stop early.
    shutting_down: AtomicBool,
    /// What waiters check under the lock the condition variables below pair with.
    signals: Mutex<Signals>,
    /// Wakes the flush thread.
    pub flush_wanted: Condvar,
    /// Signals a finished flush (or a failure) to stalled writers and `flush()`.
    pub flushed: Condvar,
    /// Wakes the compaction thread; signalled after every compaction.
    pub compacted: Condvar,
    /// Where the crate's tests stop threads at chosen points.
    #[cfg(test)]
    pub sync_points: crate::sync_point::SyncPoints,
}

/// The state a waiter checks when it wakes.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// The store is closing.
    pub shutdown: bool,
    /// The store is poisoned.
    pub error: Option<PoisonCause>,
}

impl Signals {
    /// How a wait ended: the store failed or closed meanwhile, or the waiter may go on.
    pub(crate) fn outcome(&self) -> Result<()> {
        if let Some(e) = &self.error {
            return Err(Error::Poisoned(e.clone()));
        }
        if self.shutdown {
            return Err(Error::Closed);
        }
        Ok(())
    }
}

impl Lifecycle {
    /// Fails with [`Error::Closed`] or [`Error::Poisoned`] once the store may not write.
    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(cause) = self.poison_cause() {
            return Err(Error::Poisoned(cause));
        }
        Ok(())
    }

    /// Records a fatal failure of `what`; every later write fails with [`Error::Poisoned`].
    /// The first cause sticks.
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
        self.signals.lock().error.get_or_insert(cause);
        self.flushed.notify_all();
    }

    /// Why the store rejects writes, if it does.
    pub(crate) fn poison_cause(&self) -> Option<PoisonCause> {
        if !self.poisoned.load(Ordering::Acquire) {
            return None;
        }
        self.poison.lock().clone()
    }

    /// True once the store is closed.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// True once the store is poisoned.
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::Acquire)
    }

    /// True once closing has started.
    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Starts closing: long jobs stop at their next check, and every waiter wakes.
    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Release);
        let mut s = self.signals.lock();
        s.shutdown = true;
        self.flush_wanted.notify_all();
        self.flushed.notify_all();
        self.compacted.notify_all();
    }

    /// Marks the store closed: writes fail from now on. False if it already was.
    pub(crate) fn mark_closed(&self) -> bool {
        !self.closed.swap(true, Ordering::AcqRel)
    }

    /// The lock the condition variables pair with.
    pub(crate) fn signals(&self) -> MutexGuard<'_, Signals> {
        self.signals.lock()
    }

    /// Wakes the flush thread.
    pub(crate) fn wake_flusher(&self) {
        let _s = self.signals.lock();
        self.flush_wanted.notify_one();
    }

    /// Wakes the compaction thread.
    pub(crate) fn wake_compactor(&self) {
        let _s = self.signals.lock();
        self.compacted.notify_all();
    }

    /// Tells the compaction thread and every waiter that a flush or compaction changed the
    /// tree.
    pub(crate) fn notify_tree_changed(&self) {
        let _s = self.signals.lock();
        self.compacted.notify_all();
        self.flushed.notify_all();
    }
}
