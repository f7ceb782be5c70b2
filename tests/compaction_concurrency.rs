//! Compactions racing with everything else: writers, snapshot readers, long-lived iterators
//! and manual and automatic compactions run at once and are checked against a model of every
//! acknowledged write; and a store dropped in the middle of a compaction loses nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use strata::{Db, SeqNo, SyncMode};

/// Every acknowledged write: seqno → (key, value or tombstone).
type Log = BTreeMap<SeqNo, (u64, Option<String>)>;

/// The value of `key` as of `at`, according to the log.
fn model_get(log: &Log, key: u64, at: SeqNo) -> Option<String> {
    log.range(..=at)
        .rev()
        .find(|(_, (k, _))| *k == key)
        .and_then(|(_, (_, v))| v.clone())
}

struct Observation {
    at: SeqNo,
    point: Vec<(u64, Option<String>)>,
    scan: Option<Vec<(u64, String)>>,
}

fn key_num(k: &[u8]) -> u64 {
    std::str::from_utf8(&k[3..]).unwrap().parse().unwrap()
}

#[test]
fn writers_readers_iterators_and_compactions_agree_with_the_model() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(32 << 10)
        .level_sizes(128 << 10, 4, 32 << 10)
        .history_versions(2)
        .open()
        .unwrap();
    let keys = 600u64;
    let writers = 3u64;
    // `done`: the writers finished; `stopped`: the compactor finished too.
    let done = Arc::new(AtomicBool::new(false));
    let stopped = Arc::new(AtomicBool::new(false));

    let writer_threads: Vec<_> = (0..writers)
        .map(|t| {
            let db = db.clone();
            thread::spawn(move || {
                let mut log = Log::new();
                let mut x = t * 7919 + 1;
                for i in 0..2500u64 {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    let key = ((x >> 24) % (keys / writers)) * writers + t;
                    if (x >> 10) % 6 == 0 {
                        let s = db.delete(common::k(key)).unwrap();
                        log.insert(s, (key, None));
                    } else {
                        let v = format!("w{t}-{i}-{}", "p".repeat(((x >> 40) % 60) as usize));
                        let s = db.put(common::k(key), &v).unwrap();
                        log.insert(s, (key, Some(v)));
                    }
                }
                log
            })
        })
        .collect();

    let compactor = {
        let db = db.clone();
        let done = Arc::clone(&done);
        let stopped = Arc::clone(&stopped);
        thread::spawn(move || {
            let mut runs = 0;
            let mut i = 0u64;
            // At least four rounds, however fast the writers are.
            while !(done.load(Ordering::Acquire) && runs >= 4) {
                if i.is_multiple_of(3) {
                    db.compact().unwrap();
                } else {
                    let lo = (i * 37) % keys;
                    db.compact_range(common::k(lo)..common::k(lo + 100))
                        .unwrap();
                }
                runs += 1;
                i += 1;
                thread::sleep(Duration::from_millis(5));
            }
            stopped.store(true, Ordering::Release);
            runs
        })
    };

    let readers: Vec<_> = (0..2u64)
        .map(|r| {
            let db = db.clone();
            let stopped = Arc::clone(&stopped);
            thread::spawn(move || {
                let mut seen = Vec::new();
                let mut x = r + 99;
                while !stopped.load(Ordering::Acquire) && seen.len() < 150 {
                    let snap = db.snapshot();
                    // An iterator opened now and read after a pause, across compactions.
                    let iter = snap.iter();
                    let mut point = Vec::new();
                    for _ in 0..20 {
                        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                        let key = (x >> 20) % keys;
                        let v = snap
                            .get(common::k(key))
                            .unwrap()
                            .map(|b| String::from_utf8(b.to_vec()).unwrap());
                        // The version the snapshot sees is retained in its history.
                        if v.is_some() {
                            let vs: Vec<_> =
                                snap.versions(common::k(key)).map(|v| v.unwrap()).collect();
                            assert!(
                                vs.first().is_some_and(|f| f.value.is_some()),
                                "snapshot history lost its version"
                            );
                        }
                        point.push((key, v));
                    }
                    thread::sleep(Duration::from_millis(2));
                    let scan = (seen.len() % 5 == 0).then(|| {
                        iter.map(|r| {
                            let (k, v) = r.unwrap();
                            (key_num(&k), String::from_utf8(v.to_vec()).unwrap())
                        })
                        .collect()
                    });
                    seen.push(Observation {
                        at: snap.seqno(),
                        point,
                        scan,
                    });
                }
                seen
            })
        })
        .collect();

    let mut log = Log::new();
    for w in writer_threads {
        log.extend(w.join().unwrap());
    }
    done.store(true, Ordering::Release);
    let runs = compactor.join().unwrap();
    assert!(runs >= 4);
    let mut checked = 0;
    for r in readers {
        for obs in r.join().unwrap() {
            for (key, got) in &obs.point {
                assert_eq!(
                    *got,
                    model_get(&log, *key, obs.at),
                    "key {key} at {}",
                    obs.at
                );
                checked += 1;
            }
            if let Some(scan) = obs.scan {
                let want: Vec<(u64, String)> = (0..keys)
                    .filter_map(|k| model_get(&log, k, obs.at).map(|v| (k, v)))
                    .collect();
                assert_eq!(scan, want, "scan at {}", obs.at);
            }
        }
    }
    assert!(checked > 100);
    // Final state, before and after a reopen.
    let last = *log.keys().next_back().unwrap();
    let want: Vec<(u64, String)> = (0..keys)
        .filter_map(|k| model_get(&log, k, last).map(|v| (k, v)))
        .collect();
    let got = |db: &Db| -> Vec<(u64, String)> {
        db.iter()
            .map(|r| {
                let (k, v) = r.unwrap();
                (key_num(&k), String::from_utf8(v.to_vec()).unwrap())
            })
            .collect()
    };
    assert_eq!(got(&db), want);
    assert!(db.compaction_status().error.is_none());
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(got(&db), want);
}

fn fill(db: &Db, n: u64) -> BTreeMap<u64, String> {
    let mut model = BTreeMap::new();
    let mut x = 3u64;
    for i in 0..n {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let k = (x >> 20) % (n / 2);
        let v = format!("{i}-{}", "z".repeat(80));
        db.put(common::k(k), &v).unwrap();
        model.insert(k, v);
    }
    model
}

fn verify(dir: &std::path::Path, model: &BTreeMap<u64, String>) {
    // No automatic compaction may start, so that files on disk can be compared with the
    // table set exactly.
    let db = Db::builder(dir)
        .l0_limits(1000, 1000, 1001)
        .level_sizes(1 << 40, 10, 1 << 30)
        .open()
        .unwrap();
    let got: Vec<(String, String)> = common::collect(db.iter());
    let want: Vec<(String, String)> = model
        .iter()
        .map(|(k, v)| (common::k(*k), v.clone()))
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "data differs after reopen");
    // No file is left behind by the interrupted compaction.
    let tables = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "sst")
        })
        .count();
    assert_eq!(
        tables,
        db.stats().levels.iter().map(|l| l.tables).sum::<usize>()
    );
}

fn wait_until_running(db: &Db) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if db.compaction_status().running {
            return true;
        }
        thread::sleep(Duration::from_micros(200));
    }
    false
}

#[test]
fn closing_during_a_manual_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let db = Db::builder(dir.path())
            .sync_mode(SyncMode::Buffered)
            .memtable_bytes(256 << 10)
            .l0_limits(1000, 1000, 1001)
            .open()
            .unwrap();
        let model = fill(&db, 60_000);
        db.flush().unwrap();
        let worker = {
            let db = db.clone();
            thread::spawn(move || db.compact())
        };
        assert!(wait_until_running(&db), "the compaction never started");
        db.close().unwrap();
        let result = worker.join().unwrap();
        // Either the compaction finished first or it was stopped by the close.
        assert!(
            matches!(result, Ok(_) | Err(strata::Error::Closed)),
            "{result:?}"
        );
        model
    };
    verify(dir.path(), &model);
}

#[test]
fn dropping_the_store_during_background_compaction_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let model = {
        let db = Db::builder(dir.path())
            .sync_mode(SyncMode::Buffered)
            .memtable_bytes(64 << 10)
            .level_sizes(256 << 10, 4, 64 << 10)
            .open()
            .unwrap();
        let model = fill(&db, 40_000);
        let caught = wait_until_running(&db);
        drop(db);
        if !caught {
            eprintln!("compaction finished before the drop; the reopen check still runs");
        }
        model
    };
    verify(dir.path(), &model);
}
