//! The background threads: one flushes frozen memtables (and does the WAL work kept out of
//! the commit path), one runs compactions — automatic ones whenever a level scores at least
//! 1, and the optional periodic full compaction.
//!
//! A failure or a panic in either poisons the store; the thread then idles until the store
//! closes. Neither thread ever waits for the leader lock: a commit leader stalled on
//! backpressure holds it until these threads catch up.

use std::io;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::compaction::CompactionReason;
use crate::core::Core;
use crate::error::{Error, Result, catch_panic};
use crate::sync_point::sync_point;

/// Starts the flush and compaction threads of `core`.
pub(crate) fn start(core: &Arc<Core>) -> io::Result<Vec<JoinHandle<()>>> {
    let flush_core = Arc::clone(core);
    let flusher = std::thread::Builder::new()
        .name("strata-flush".into())
        .spawn(move || flush_loop(&flush_core))?;
    let compact_core = Arc::clone(core);
    let compactor = std::thread::Builder::new()
        .name("strata-compact".into())
        .spawn(move || compaction_loop(&compact_core))?;
    Ok(vec![flusher, compactor])
}

/// True when a frozen memtable waits for its flush.
fn has_flush_work(core: &Core) -> bool {
    !core.view.current().imms.is_empty()
}

/// The flush thread: WAL chores first (they keep the next roll cheap), then the oldest
/// frozen memtable.
fn flush_loop(core: &Core) {
    let life = &*core.life;
    loop {
        {
            let mut signals = life.signals();
            loop {
                if signals.shutdown {
                    return;
                }
                if signals.error.is_none() && (has_flush_work(core) || core.writer.has_wal_chores())
                {
                    break;
                }
                life.flush_wanted.wait(&mut signals);
            }
        }
        if core.writer.take_wal_chores()
            && let Err(e) = catch_panic(|| core.writer.wal_chores())
        {
            life.poison("WAL maintenance", &e);
        }
        if has_flush_work(core)
            && let Err(e) = catch_panic(|| core.flush_job().run().map(drop))
        {
            life.poison("flush", &e);
        }
        life.notify_tree_changed();
    }
}

/// The compaction thread: first the flush of what recovery replayed (when
/// [`Config::flush_after_recovery`](crate::Config::flush_after_recovery) asks for it), then
/// automatic compactions, then the periodic one.
fn compaction_loop(core: &Core) {
    let life = &*core.life;
    if core.config.flush_after_recovery
        && core.recovery.writes_replayed > 0
        && let Err(e) = catch_panic(|| core.writer.flush_all_without_waiting_for_writers())
        && !matches!(e, Error::Closed | Error::Poisoned(_))
    {
        life.poison("flush after recovery", &e);
    }
    loop {
        if life.shutting_down() {
            return;
        }
        if life.signals().error.is_none() {
            match catch_panic(|| compact_once(core)) {
                Ok(true) => continue,
                Ok(false) => {}
                Err(Error::Closed) => return,
                Err(e) => {
                    core.compaction.record_error(&e);
                    life.poison("compaction", &e);
                }
            }
        }
        let wait = core
            .compaction
            .periodic_due()
            .unwrap_or(Duration::from_secs(3600))
            .min(Duration::from_secs(1));
        let mut signals = life.signals();
        if signals.shutdown {
            return;
        }
        if core.compaction.periodic_due().is_some_and(|d| d.is_zero()) {
            continue;
        }
        life.compacted
            .wait_for(&mut signals, wait.max(Duration::from_millis(1)));
    }
}

/// Runs one automatic or periodic compaction if one is due; true if it ran.
fn compact_once(core: &Core) -> Result<bool> {
    let cx = core.compaction_job();
    if core.compaction.compact_automatic(&cx)? {
        return Ok(true);
    }
    if core.compaction.periodic_due().is_some_and(|d| d.is_zero()) {
        sync_point!(
            core.life.sync_points,
            "periodic compaction: before its flush"
        );
        core.writer.flush_all_without_waiting_for_writers()?;
        core.compaction
            .compact_all_tables(&cx, CompactionReason::Periodic)?;
        return Ok(true);
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::mpsc;

    use parking_lot::Mutex;

    use super::*;
    use crate::config::{PeriodicCompaction, SyncMode};
    use crate::db::Db;

    /// Long enough that only a hung store reaches it.
    const HANG: Duration = Duration::from_secs(20);

    #[test]
    fn periodic_compaction_never_waits_on_a_stalled_writer() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::builder(dir.path())
            .sync_mode(SyncMode::Buffered)
            .l0_limits(2, 2, 3)
            .open()
            .unwrap();
        let points = &db.core().life.sync_points;
        // Stop the compaction thread once, where it has chosen the periodic compaction.
        let (at_periodic, reached_periodic) = mpsc::channel();
        let (resume, resumed) = mpsc::channel::<()>();
        let resumed = Mutex::new(resumed);
        let first = AtomicBool::new(true);
        points.set("periodic compaction: before its flush", move || {
            if first.swap(false, Ordering::AcqRel) {
                let _ = at_periodic.send(());
                let _ = resumed.lock().recv();
            }
        });
        let (stalling, stalled) = mpsc::channel();
        let stalling = Mutex::new(stalling);
        points.set("write stall: waiting for compaction", move || {
            let _ = stalling.lock().send(());
        });
        db.set_periodic_compaction(PeriodicCompaction {
            enabled: true,
            interval: Duration::from_millis(1),
            min_interval: Duration::ZERO,
        });
        reached_periodic
            .recv_timeout(HANG)
            .expect("the periodic compaction never started");
        // Level 0 reaches the stop limit, and the next writer stalls as commit leader.
        for round in 0..3 {
            db.put("k", format!("{round}")).unwrap();
            db.flush().unwrap();
        }
        let (done, finished) = mpsc::channel();
        let writer = db.clone();
        std::thread::spawn(move || {
            let _ = done.send(writer.put("k", "stalled"));
        });
        stalled
            .recv_timeout(HANG)
            .expect("the writer did not stall");
        resume.send(()).unwrap();
        let Ok(result) = finished.recv_timeout(HANG) else {
            std::mem::forget(db);
            panic!(
                "deadlock: the compaction thread waits for the stalled writer, which waits for it"
            );
        };
        result.unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"stalled"[..]));
    }

    #[test]
    fn freezing_what_an_open_replayed_keeps_the_segment_the_open_started() {
        let dir = tempfile::tempdir().unwrap();
        let open = || {
            Db::builder(dir.path())
                .flush_after_recovery(false)
                .open()
                .unwrap()
        };
        let db = open();
        db.put("k", "v").unwrap();
        db.close().unwrap();
        let wal_files = || {
            let names = crate::fs::FileSystem::list(&crate::fs::StdFs, dir.path()).unwrap();
            names
                .iter()
                .filter(|n| crate::file_names::parse_wal(n).is_some())
                .count()
        };
        let before = wal_files();

        // The flush after recovery starts with this freeze. The segment the open started has
        // received nothing, so the freeze must not seal it and start another: a flush cut
        // off there by close would leave the sealed, empty segment behind at every open.
        let db = open();
        let active = |db: &Db| db.wal_segments().iter().find(|s| s.active).unwrap().number;
        let started = active(&db);
        db.core().writer.freeze_memtable().unwrap();
        assert_eq!(active(&db), started, "the freeze started a new segment");
        db.put("k2", "v2").unwrap();
        db.close().unwrap();

        // Whether or not the flush finished before close, the store reads back whole and
        // holds no more segments than it started with plus the one that received `k2`.
        assert!(wal_files() <= before + 1, "{} segments", wal_files());
        let db = open();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        assert_eq!(db.get("k2").unwrap().as_deref(), Some(&b"v2"[..]));
    }
}
