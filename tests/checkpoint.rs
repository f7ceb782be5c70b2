//! `Db::checkpoint`: under concurrent writes, flushes and compactions a checkpoint opens and
//! holds exactly the writes up to its seqno; a power cut at any point of a checkpoint leaves
//! no partial store under the destination name.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::faultfs::{Crash, FaultFs, Rng};
use strata::{Db, FileSystem, SeqNo, SyncMode};

/// Every write a test made: (version, key, value or None for a delete).
type Log = Vec<(u64, String, Option<String>)>;

/// The live contents as of `seq` according to `log`.
fn model_at(log: &Log, seq: u64) -> BTreeMap<String, String> {
    let mut latest: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    for (v, k, val) in log {
        if *v <= seq && latest.get(k).is_none_or(|(w, _)| w < v) {
            latest.insert(k.clone(), (*v, val.clone()));
        }
    }
    latest
        .into_iter()
        .filter_map(|(k, (_, v))| v.map(|v| (k, v)))
        .collect()
}

#[test]
fn a_checkpoint_under_concurrent_writes_holds_exactly_its_seqno() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path().join("live"))
        .memtable_bytes(32 << 10)
        .sync_mode(SyncMode::Buffered)
        .history_versions(4)
        .l0_limits(2, 8, 16)
        .open()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3u64)
        .map(|w| {
            let db = db.clone();
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut log: Log = Vec::new();
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) || i < 2000 {
                    let key = common::k((i * 7 + w * 13) % 997);
                    if i % 11 == 5 {
                        let v = db.delete(&key).unwrap();
                        log.push((v.get(), key, None));
                    } else {
                        let val = format!("w{w}-{i}");
                        let v = db.put(&key, &val).unwrap();
                        log.push((v.get(), key, Some(val)));
                    }
                    i += 1;
                }
                log
            })
        })
        .collect();
    let mut checkpoints = Vec::new();
    for n in 0..4 {
        std::thread::sleep(std::time::Duration::from_millis(60));
        let dest = dir.path().join(format!("cp{n}"));
        let cp = db.checkpoint(&dest).unwrap();
        assert_eq!(cp.dir, dest);
        checkpoints.push(cp);
    }
    stop.store(true, Ordering::Relaxed);
    let log: Log = writers
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    assert!(
        db.stats().flushes > 0,
        "the test should flush while checkpointing"
    );
    assert!(checkpoints.iter().any(|c| c.tables > 1 && c.linked > 0));
    assert!(checkpoints.iter().any(|c| c.memtable_entries > 0));
    for cp in &checkpoints {
        let report = strata::verify::verify_dir(&cp.dir).unwrap();
        assert!(report.is_healthy(), "{:#?}", report.damage);
        let copy = Db::open(&cp.dir).unwrap();
        assert_eq!(copy.last_seqno(), cp.seqno);
        let expected = model_at(&log, cp.seqno.get());
        assert_eq!(
            common::contents(&copy, "checkpoint"),
            expected,
            "checkpoint at {}",
            cp.seqno
        );
        // History: every retained version is a real write at or below the seqno.
        for (v, k, val) in log.iter().filter(|(v, ..)| *v <= cp.seqno.get()).take(300) {
            for ver in copy.versions(k) {
                let ver = ver.unwrap();
                assert!(ver.seqno <= cp.seqno);
                if ver.seqno.get() == *v {
                    let got = ver.value.map(|b| String::from_utf8(b.to_vec()).unwrap());
                    assert_eq!(&got, val, "{k} at {v}");
                }
            }
        }
        // The copy is a store of its own: it takes writes after the checkpoint's seqno.
        let next = copy.put("after", "x").unwrap();
        assert_eq!(next, SeqNo::new(cp.seqno.get() + 1));
        copy.close().unwrap();
    }
    db.close().unwrap();
}

#[test]
fn a_checkpoint_needs_a_new_destination_and_outlives_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let db = Db::open(&live).unwrap();
    for i in 0..500 {
        db.put(common::k(i), "v").unwrap();
    }
    db.flush().unwrap();
    db.put("memtable", "only").unwrap();
    let dest = dir.path().join("cp");
    std::fs::create_dir(&dest).unwrap();
    assert!(db.checkpoint(&dest).is_err(), "an existing destination");
    std::fs::remove_dir(&dest).unwrap();
    // A leftover of an interrupted attempt is emptied and reused.
    let staging = dir.path().join("cp.checkpoint-tmp");
    std::fs::create_dir(&staging).unwrap();
    std::fs::write(staging.join("000099.sst"), b"junk").unwrap();
    let cp = db.checkpoint(&dest).unwrap();
    assert!(!staging.exists());
    assert_eq!((cp.linked, cp.copied), (1, 0), "{cp:?}");
    db.close().unwrap();
    std::fs::remove_dir_all(&live).unwrap();
    let copy = Db::open(&dest).unwrap();
    assert_eq!(copy.get("memtable").unwrap().as_deref(), Some(&b"only"[..]));
    assert_eq!(common::contents(&copy, "copy").len(), 501);
}

/// A closed store with tables in two levels plus writes only in the WAL, its contents and
/// its last seqno.
fn base_store() -> (Arc<FaultFs>, BTreeMap<String, String>, SeqNo) {
    let fs = FaultFs::new();
    let db = open_on(&fs, Path::new("/s/live"));
    for i in 0..400 {
        db.put(common::k(i), format!("a{i}")).unwrap();
    }
    db.flush().unwrap();
    db.compact().unwrap();
    for i in 0..150 {
        db.put(common::k(i * 3), format!("b{i}")).unwrap();
    }
    db.flush().unwrap();
    for i in 0..40 {
        db.put(common::k(i * 5), format!("c{i}")).unwrap();
    }
    db.delete(common::k(1)).unwrap();
    let expected = common::contents(&db, "live");
    let seq = db.last_seqno();
    db.close().unwrap();
    (fs, expected, seq)
}

/// Waits for the work a fresh open starts in the background (making the next WAL segment
/// ready) to finish, so that counting a checkpoint's filesystem operations counts its own.
fn settle(fs: &FaultFs) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let spare = fs
            .listing()
            .iter()
            .any(|(p, _, _)| p.to_string_lossy().ends_with(".wal.spare"));
        let ops = fs.ops();
        std::thread::sleep(std::time::Duration::from_millis(20));
        if spare && fs.ops() == ops {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "background work never settled"
        );
    }
}

fn open_on(fs: &Arc<FaultFs>, dir: &Path) -> Db {
    try_open_on(fs, dir).unwrap()
}

fn try_open_on(fs: &Arc<FaultFs>, dir: &Path) -> strata::Result<Db> {
    Db::builder(dir)
        .filesystem(Arc::clone(fs) as Arc<dyn FileSystem>)
        .memtable_bytes(16 << 10)
        .open()
}

#[test]
fn a_power_cut_during_a_checkpoint_leaves_no_partial_store() {
    let live = Path::new("/s/live");
    let dest = Path::new("/s/cp");
    let staging = Path::new("/s/cp.checkpoint-tmp");
    let (base, expected, seq) = base_store();
    let mut rng = Rng::new(1);
    // How many filesystem operations a whole checkpoint takes.
    let fs = base.crash(Crash::Process, &mut rng);
    let db = open_on(&fs, live);
    settle(&fs);
    let before = fs.ops();
    db.checkpoint(dest).unwrap();
    let total = fs.ops() - before;
    drop(db);
    assert!(total > 10, "{total}");

    let mut complete = 0;
    for cut in 0..=total + 1 {
        for mode in [Crash::DropUnsynced, Crash::KeepRandom] {
            let fs = base.crash(Crash::Process, &mut rng);
            let db = open_on(&fs, live);
            settle(&fs);
            fs.crash_at(cut, mode, Rng::new(cut * 31 + 7));
            let result = db.checkpoint(dest);
            let crashed = fs.take_crashed();
            let finished = crashed.is_none();
            // A cut after the checkpoint returned: it must have been made durable.
            let image = crashed.unwrap_or_else(|| fs.crash(Crash::DropUnsynced, &mut rng));
            drop(db);
            let ctx = format!("cut at {cut}/{total} ({mode:?})");
            if finished {
                result.unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert!(
                    image.list(dest).is_ok(),
                    "{ctx}: a finished checkpoint was lost"
                );
            }
            if image.list(dest).is_ok() {
                // The destination exists only complete.
                let copy = try_open_on(&image, dest).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                assert_eq!(copy.last_seqno(), seq, "{ctx}");
                assert_eq!(common::contents(&copy, &ctx), expected, "{ctx}");
                complete += 1;
            }
            // A staging leftover either fails to open or is the complete checkpoint (the
            // instant between its last file and its rename); never a partial store.
            if let Ok(names) = image.list(staging)
                && !names.is_empty()
            {
                match try_open_on(&image, staging) {
                    Err(e) => assert!(e.is_corruption(), "{ctx}: {e}"),
                    Ok(copy) => {
                        assert_eq!(copy.last_seqno(), seq, "{ctx}: staging opened");
                        assert_eq!(common::contents(&copy, &ctx), expected, "{ctx}");
                    }
                }
            }
        }
    }
    assert!(complete >= 2, "{complete} cuts kept the checkpoint");
}
