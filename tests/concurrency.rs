//! Many threads at once: snapshot isolation under concurrent writers, compare-and-set races,
//! readers and writers mixed, with flushes happening underneath.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;

use strata::{Db, SyncMode, WriteBatch};

fn open(dir: &std::path::Path) -> Db {
    Db::builder(dir)
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(64 << 10)
        .open()
        .unwrap()
}

/// Writers keep 20 accounts summing to zero with atomic batches; every snapshot, iterator
/// and point read through a snapshot must see a zero sum.
#[test]
fn snapshots_never_see_half_a_batch() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let accounts = 20u64;
    let mut init = WriteBatch::new();
    for a in 0..accounts {
        init.put(common::k(a), 0i64.to_le_bytes());
    }
    db.write(init).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let db = db.clone();
            thread::spawn(move || {
                let mut x = t as u64 + 1;
                for _ in 0..1500 {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    let (from, to) = ((x >> 33) % accounts, (x >> 13) % accounts);
                    if from == to {
                        continue;
                    }
                    let snap = db.snapshot();
                    let read = |k| {
                        i64::from_le_bytes(
                            snap.get(common::k(k)).unwrap().unwrap()[..8]
                                .try_into()
                                .unwrap(),
                        )
                    };
                    let (a, b) = (read(from), read(to));
                    let mut batch = WriteBatch::new();
                    // Conditional on both balances, so concurrent transfers do not lose updates.
                    batch.expect_version(common::k(from), db_version(&snap, from));
                    batch.expect_version(common::k(to), db_version(&snap, to));
                    batch.put(common::k(from), (a - 7).to_le_bytes());
                    batch.put(common::k(to), (b + 7).to_le_bytes());
                    let _ = db.write(batch);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let db = db.clone();
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut checks = 0;
                while !stop.load(Ordering::Relaxed) {
                    let sum: i64 = db
                        .iter()
                        .map(|r| i64::from_le_bytes(r.unwrap().1[..8].try_into().unwrap()))
                        .sum();
                    assert_eq!(sum, 0, "an iterator saw a partial batch");
                    let snap = db.snapshot();
                    let sum: i64 = (0..accounts)
                        .map(|a| {
                            i64::from_le_bytes(
                                snap.get(common::k(a)).unwrap().unwrap()[..8]
                                    .try_into()
                                    .unwrap(),
                            )
                        })
                        .sum();
                    assert_eq!(sum, 0, "a snapshot saw a partial batch");
                    let back: i64 = db
                        .iter()
                        .rev()
                        .map(|r| i64::from_le_bytes(r.unwrap().1[..8].try_into().unwrap()))
                        .sum();
                    assert_eq!(back, 0);
                    checks += 1;
                }
                checks
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        assert!(r.join().unwrap() > 0);
    }
    let total: i64 = db
        .iter()
        .map(|r| i64::from_le_bytes(r.unwrap().1[..8].try_into().unwrap()))
        .sum();
    assert_eq!(total, 0);
    assert!(db.stats().batches > 100);
}

fn db_version(snap: &strata::Snapshot, k: u64) -> Option<strata::SeqNo> {
    snap.get_versioned(common::k(k)).unwrap().map(|v| v.version)
}

/// Threads increment one counter with compare-and-set; no increment is lost.
#[test]
fn compare_and_set_counter_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let threads = 4;
    let per = 300;
    let conflicts = Arc::new(AtomicU64::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|_| {
            let db = db.clone();
            let conflicts = Arc::clone(&conflicts);
            thread::spawn(move || {
                for _ in 0..per {
                    loop {
                        let cur = db.get_versioned("counter").unwrap();
                        let (n, ver) = match &cur {
                            Some(v) => (
                                u64::from_le_bytes(v.value[..].try_into().unwrap()),
                                Some(v.version),
                            ),
                            None => (0, None),
                        };
                        match db.compare_and_set("counter", ver, (n + 1).to_le_bytes()) {
                            Ok(_) => break,
                            Err(strata::Error::Conflict(_)) => {
                                conflicts.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(e) => panic!("CAS failed: {e}"),
                        }
                    }
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    let n = u64::from_le_bytes(db.get("counter").unwrap().unwrap()[..].try_into().unwrap());
    assert_eq!(n, threads * per);
    assert_eq!(db.stats().conflicts, conflicts.load(Ordering::Relaxed));
}

/// Eight writers and four readers at once, with flushes underneath: every read of a key sees
/// a value its writer wrote, never an older one than the writer already confirmed.
#[test]
fn many_writers_and_readers_with_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let db = open(dir.path());
    let writers = 8u64;
    let per = 2000u64;
    let progress: Arc<Vec<AtomicU64>> = Arc::new((0..writers).map(|_| AtomicU64::new(0)).collect());
    let done = Arc::new(AtomicBool::new(false));
    let ws: Vec<_> = (0..writers)
        .map(|w| {
            let db = db.clone();
            let progress = Arc::clone(&progress);
            thread::spawn(move || {
                for i in 1..=per {
                    db.put(format!("w{w}-latest"), i.to_le_bytes()).unwrap();
                    db.put(format!("w{w}-{i:05}"), [w as u8; 64]).unwrap();
                    progress[w as usize].store(i, Ordering::Release);
                }
            })
        })
        .collect();
    let rs: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            let progress = Arc::clone(&progress);
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(Ordering::Acquire) {
                    for w in 0..writers {
                        let confirmed = progress[w as usize].load(Ordering::Acquire);
                        let got = db
                            .get(format!("w{w}-latest"))
                            .unwrap()
                            .map_or(0, |v| u64::from_le_bytes(v[..].try_into().unwrap()));
                        assert!(
                            got >= confirmed,
                            "writer {w}: read {got} after {confirmed} was confirmed"
                        );
                        if confirmed > 0 {
                            assert!(db.get(format!("w{w}-{confirmed:05}")).unwrap().is_some());
                        }
                        reads += 1;
                    }
                    let n = db.prefix("w0-0").count() as u64;
                    assert!(n <= per);
                }
                reads
            })
        })
        .collect();
    for w in ws {
        w.join().unwrap();
    }
    done.store(true, Ordering::Release);
    for r in rs {
        assert!(r.join().unwrap() > 0);
    }
    let st = db.stats();
    assert!(st.flushes > 0, "the test should cross flushes: {st:?}");
    assert_eq!(db.iter().count() as u64, writers * (per + 1));
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.iter().count() as u64, writers * (per + 1));
}
