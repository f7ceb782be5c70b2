//! The store's lifecycle under concurrency: closing while a user thread compacts, flushing
//! while writes keep freezing memtables, a panic in the middle of a commit or a flush, and a
//! slow WAL deletion next to commits. Each test stops a thread at a known file operation
//! (see `common::holdfs`) and checks what the rest of the store does meanwhile.
//!
//! Waits here are bounded: a test that would hang on a broken store fails after a timeout
//! instead (the timeouts detect hangs; they are not speed targets).
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::holdfs::{FsOp, HoldFs};
use strata::{Db, Error, SyncMode};

/// Long enough that only a hung store reaches it.
const HANG: Duration = Duration::from_secs(20);

fn open(fs: &Arc<HoldFs>, dir: &std::path::Path) -> strata::DbBuilder {
    Db::builder(dir).filesystem(Arc::clone(fs) as Arc<dyn strata::FileSystem>)
}

/// Runs `f` on a new thread; its result, or `None` if it has not finished within [`HANG`].
fn within<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(HANG).ok()
}

#[test]
fn close_waits_for_a_compaction_started_by_a_user_thread() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path()).open().unwrap();
    for round in 0..3 {
        for i in 0..300 {
            db.put(common::k(i), format!("v{round}")).unwrap();
        }
        db.flush().unwrap();
    }
    // Stop the compaction when it creates its first output table.
    fs.hold(FsOp::Create, ".sst", 0);
    let compactor = {
        let db = db.clone();
        thread::spawn(move || db.compact())
    };
    assert!(fs.wait_held(1, HANG), "the compaction never wrote a table");
    let closer = thread::spawn(move || db.close());
    // A close that does not wait gives the lock up at once, with the compaction mid-way.
    let unlocked_mid_job = fs.wait_unlocked(Duration::from_millis(500));
    fs.release();
    closer.join().unwrap().unwrap();
    let run = compactor.join().unwrap();
    assert!(
        !unlocked_mid_job,
        "close released the directory lock while a compaction was still writing"
    );
    assert_eq!(fs.writes_after_unlock(), Vec::<String>::new());
    assert!(
        matches!(run, Ok(_) | Err(Error::Closed)),
        "compaction ended with {run:?}"
    );

    let db = Db::open(dir.path()).unwrap();
    assert_eq!(
        db.stats().recovery.stale_tables_removed,
        0,
        "a cancelled compaction leaves its partial output behind"
    );
    let all = common::contents(&db, "after reopen");
    assert_eq!(all.len(), 300);
    assert!(all.values().all(|v| v == "v2"));
}

#[test]
fn flush_waits_for_the_memtables_frozen_at_the_call_not_for_later_ones() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path())
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(16 << 10)
        .max_immutable_memtables(4)
        .open()
        .unwrap();
    let frozen = |db: &Db| db.stats().immutable_memtables;
    let mut i = 0u64;
    let mut write_until = |db: &Db, n: usize| {
        while frozen(db) < n {
            db.put(common::k(i), [b'x'; 100]).unwrap();
            i += 1;
        }
        db.put(common::k(i), "in the mutable memtable").unwrap();
        i += 1;
    };
    // The flush thread stops at its first table: one frozen memtable waits.
    fs.hold(FsOp::Create, ".sst", 0);
    write_until(&db, 1);
    let flusher = {
        let db = db.clone();
        thread::spawn(move || db.flush())
    };
    // flush() freezes the mutable memtable: two wait now. Writes after the call freeze a
    // third, which flush() has no reason to wait for.
    while frozen(&db) < 2 {
        thread::yield_now();
    }
    write_until(&db, 3);
    fs.allow(2);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(flusher.join());
    });
    let returned = rx.recv_timeout(HANG).ok();
    let tables = db.stats().levels[0].tables;
    fs.release();
    let flushed = returned.expect("flush() waited for a memtable frozen after it was called");
    flushed.unwrap().unwrap();
    assert!(
        tables >= 2,
        "flush() returned before its memtables were in tables"
    );
}

#[test]
fn a_panic_inside_group_commit_poisons_the_store_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path()).open().unwrap();
    db.put("before", "1").unwrap();
    fs.panic_on(FsOp::Append, ".wal", 0);
    let leader = {
        let db = db.clone();
        thread::spawn(move || db.put("during", "2")).join()
    };
    let next = {
        let db = db.clone();
        within(move || db.put("after", "3"))
    };
    let Some(next) = next else {
        std::mem::forget(db);
        panic!("the write after a panicking commit hung");
    };
    assert!(
        matches!(leader, Ok(Err(Error::Poisoned(_)))),
        "the panicking commit returned {leader:?}"
    );
    assert!(
        matches!(next, Err(Error::Poisoned(_))),
        "the next write returned {next:?}"
    );
    let cause = db.poisoned().expect("the store is poisoned");
    assert_eq!(cause.operation(), "group commit");
    assert!(cause.to_string().contains("injected panic"), "{cause}");
    assert_eq!(db.get("before").unwrap().as_deref(), Some(&b"1"[..]));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get("before").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get("after").unwrap(), None);
    db.put("after", "3").unwrap();
}

#[test]
fn a_panic_in_the_flush_thread_poisons_the_store_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path()).open().unwrap();
    db.put("k", "v").unwrap();
    fs.panic_on(FsOp::Create, ".sst", 0);
    let flushed = {
        let db = db.clone();
        within(move || db.flush())
    };
    let Some(flushed) = flushed else {
        std::mem::forget(db);
        panic!("flush() hung after the flush thread panicked");
    };
    assert!(
        matches!(flushed, Err(Error::Poisoned(_))),
        "flush() returned {flushed:?}"
    );
    assert_eq!(db.poisoned().unwrap().operation(), "flush");
    assert!(matches!(db.put("k", "w"), Err(Error::Poisoned(_))));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn a_panic_in_a_compaction_poisons_the_store_and_clears_its_running_flag() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path()).open().unwrap();
    for round in 0..2 {
        db.put("k", format!("{round}")).unwrap();
        db.flush().unwrap();
    }
    fs.panic_on(FsOp::Create, ".sst", 0);
    let run = {
        let db = db.clone();
        thread::spawn(move || db.compact()).join()
    };
    assert!(
        matches!(run, Ok(Err(Error::Panic(_)))),
        "the compaction returned {run:?}"
    );
    assert_eq!(db.poisoned().unwrap().operation(), "compaction");
    assert!(!db.compaction_status().running);
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"1"[..]));
}

#[test]
fn a_slow_wal_deletion_does_not_block_commits() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path()).open().unwrap();
    for i in 0..100 {
        db.put(common::k(i), "v").unwrap();
    }
    // The flush after freezing deletes the WAL segment the memtable lived in: hold that.
    fs.hold(FsOp::Remove, ".wal", 0);
    let flusher = {
        let db = db.clone();
        thread::spawn(move || db.flush())
    };
    assert!(
        fs.wait_held(1, HANG),
        "the flush never deleted a WAL segment"
    );
    let put = {
        let db = db.clone();
        within(move || db.put("next", "write"))
    };
    fs.release();
    flusher.join().unwrap().unwrap();
    let put = put.expect("a commit waited for a WAL segment deletion");
    put.unwrap();
    assert_eq!(db.get("next").unwrap().as_deref(), Some(&b"write"[..]));
}

#[test]
fn a_wal_roll_in_the_commit_path_creates_no_file_and_syncs_at_most_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let fs = HoldFs::new();
    let db = open(&fs, dir.path())
        .wal_segment_bytes(8 << 10)
        .open()
        .unwrap();
    // The next segment is made ready in the background (in milliseconds; allow 20 s).
    let spare_ready = (0..2000).any(|_| {
        let ready = std::fs::read_dir(dir.path()).unwrap().any(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal.spare")
        });
        if !ready {
            thread::sleep(Duration::from_millis(10));
        }
        ready
    });
    fs.record();
    let first = db.wal_segments().last().unwrap().number;
    let writer = {
        let db = db.clone();
        thread::Builder::new()
            .name("writer".into())
            .spawn(move || {
                let mut i = 0;
                while db.wal_segments().last().unwrap().number == first {
                    db.put(common::k(i), [b'v'; 100]).unwrap();
                    i += 1;
                }
            })
            .unwrap()
    };
    writer.join().unwrap();
    let ops: Vec<FsOp> = fs
        .recorded()
        .into_iter()
        .filter(|(thread, _, _)| thread == "writer")
        .map(|(_, op, _)| op)
        .collect();
    let in_commit_path = |op: FsOp| ops.iter().filter(|&&o| o == op).count();
    for op in [
        FsOp::Create,
        FsOp::Preallocate,
        FsOp::TruncateFile,
        FsOp::Truncate,
    ] {
        assert_eq!(in_commit_path(op), 0, "{op:?} in the commit path: {ops:?}");
    }
    assert!(in_commit_path(FsOp::SyncDir) <= 1, "{ops:?}");
    assert!(spare_ready, "no segment was made ready ahead of the roll");
    let all = common::contents(&db, "after the roll");
    assert!(all.len() > 10);
    drop(db);
    assert_eq!(
        common::contents(&Db::open(dir.path()).unwrap(), "reopened"),
        all
    );
}
