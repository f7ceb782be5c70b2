//! WAL recovery: torn tails are cut and reported, damage elsewhere is corruption unless a
//! salvaging recovery mode is chosen, and batches are all-or-nothing across crashes.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use strata::{Db, Error, RecoveryMode, SyncMode, WriteBatch};

/// Writes `n` keys (one record each) and returns the active segment's path and the file
/// offset after each record, by reading sizes as records are written.
fn write_records(dir: &Path, n: u64) -> (PathBuf, Vec<u64>) {
    let db = Db::builder(dir)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    let mut ends = Vec::new();
    for i in 0..n {
        db.put(common::k(i), format!("value-{i}")).unwrap();
        ends.push(db.wal_segments().last().unwrap().size);
    }
    let path = db.wal_segments().last().unwrap().path.clone();
    db.close().unwrap();
    (path, ends)
}

fn present(db: &Db, n: u64) -> Vec<bool> {
    (0..n)
        .map(|i| db.get(common::k(i)).unwrap().is_some())
        .collect()
}

#[test]
fn a_torn_tail_is_cut_and_reported_at_every_cut_point() {
    let n = 20;
    let base = tempfile::tempdir().unwrap();
    let (seg, ends) = write_records(&base.path().join("orig"), n);
    let full = std::fs::read(&seg).unwrap();
    // A segment closed cleanly ends with a seal: a chunk header and the 8-byte prefix.
    let last_end = *ends.last().unwrap() as usize;
    assert_eq!(full.len(), last_end + 7 + 8);
    let start_of_last = ends[ends.len() - 2] as usize;
    // A cut inside the seal tears nothing that was written.
    for cut in last_end + 1..full.len() {
        let dir = base.path().join(format!("seal{cut}"));
        common::copy_dir(&base.path().join("orig"), &dir);
        std::fs::write(dir.join(seg.file_name().unwrap()), &full[..cut]).unwrap();
        let db = Db::open(&dir).unwrap();
        assert!(present(&db, n).iter().all(|&x| x), "cut {cut} in the seal");
        assert_eq!(
            db.stats().recovery.torn_tail.unwrap().offset,
            last_end as u64
        );
    }
    for cut in start_of_last..last_end {
        let dir = base.path().join(format!("cut{cut}"));
        common::copy_dir(&base.path().join("orig"), &dir);
        let seg_copy = dir.join(seg.file_name().unwrap());
        std::fs::write(&seg_copy, &full[..cut]).unwrap();
        let db = Db::open(&dir).unwrap();
        let p = present(&db, n);
        assert!(
            p[..n as usize - 1].iter().all(|&x| x),
            "cut {cut}: earlier writes lost"
        );
        assert!(!p[n as usize - 1], "cut {cut}: torn write resurrected");
        match db.stats().recovery.torn_tail {
            // A cut on the record boundary leaves a clean log.
            None => assert_eq!(cut, start_of_last),
            Some(torn) => {
                assert_eq!(torn.offset, start_of_last as u64);
                assert_eq!(torn.bytes_dropped, (cut - start_of_last) as u64);
            }
        }
        // The store keeps working, and a second recovery is clean.
        db.put("after", "x").unwrap();
        drop(db);
        let db = Db::open(&dir).unwrap();
        assert!(db.stats().recovery.torn_tail.is_none());
        assert!(db.get("after").unwrap().is_some());
        assert_eq!(
            present(&db, n).iter().filter(|&&x| x).count(),
            n as usize - 1
        );
    }
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, _) = write_records(dir.path(), 10);
    let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
    f.write_all(&[0x5a; 100]).unwrap();
    drop(f);
    let db = Db::open(dir.path()).unwrap();
    assert!(present(&db, 10).iter().all(|&x| x));
    assert!(db.stats().recovery.torn_tail.is_some());
}

#[test]
fn absolute_consistency_refuses_even_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let (seg, ends) = write_records(dir.path(), 5);
    let len = ends[3] + 3;
    OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(len)
        .unwrap();
    let r = Db::builder(dir.path())
        .recovery_mode(RecoveryMode::AbsoluteConsistency)
        .open();
    assert!(matches!(r, Err(Error::Corruption { .. })), "{r:?}");
}

fn flip(path: &Path, offset: u64) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(offset)).unwrap();
    std::io::Read::read_exact(&mut f, &mut b).unwrap();
    f.seek(SeekFrom::Start(offset)).unwrap();
    f.write_all(&[b[0] ^ 0x40]).unwrap();
}

#[test]
fn damage_before_synced_records_is_corruption_by_default() {
    let dir = tempfile::tempdir().unwrap();
    // Synced writes: each record records that everything before it was durable.
    {
        let db = Db::open(dir.path()).unwrap();
        for i in 0..10 {
            db.put(common::k(i), format!("value-{i}")).unwrap();
        }
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .unwrap();
    flip(&seg, 60); // inside the first record
    match Db::open(dir.path()) {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, seg),
        other => panic!("expected corruption, got {other:?}"),
    }
    // Point-in-time recovery opens at the last consistent point: nothing after the damage.
    let db = Db::builder(dir.path())
        .recovery_mode(RecoveryMode::PointInTime)
        .open()
        .unwrap();
    assert_eq!(present(&db, 10), vec![false; 10]);
    assert!(db.stats().recovery.records_dropped > 0);
    db.put("new", "write").unwrap();
    drop(db);
    // The dropped records never come back, even under the default mode.
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(present(&db, 10), vec![false; 10]);
    assert!(db.get("new").unwrap().is_some());
}

#[test]
fn skip_mode_salvages_records_after_damage() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::open(dir.path()).unwrap();
        for i in 0..10 {
            db.put(common::k(i), "x".repeat(5000)).unwrap(); // several records per 32 KiB block
        }
        for i in 10..30 {
            db.put(common::k(i), "y".repeat(20_000)).unwrap(); // later blocks
        }
    }
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .max()
        .unwrap();
    flip(&seg, 100);
    assert!(Db::open(dir.path()).is_err());
    let db = Db::builder(dir.path())
        .recovery_mode(RecoveryMode::SkipAnyCorruptedRecords)
        .open()
        .unwrap();
    let p = present(&db, 30);
    assert!(!p[0], "the damaged record is gone");
    assert!(
        p[20..].iter().all(|&x| x),
        "records in later blocks are salvaged: {p:?}"
    );
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert!(present(&db, 30)[20..].iter().all(|&x| x));
}

#[test]
fn batches_are_all_or_nothing_at_every_cut_point() {
    let base = tempfile::tempdir().unwrap();
    let orig = base.path().join("orig");
    let (seg, before, after) = {
        let db = Db::builder(&orig)
            .sync_mode(SyncMode::Buffered)
            .open()
            .unwrap();
        db.put("first", "1").unwrap();
        let before = db.wal_segments().last().unwrap().size;
        // A batch spanning three 32 KiB blocks.
        let mut b = WriteBatch::new();
        for i in 0..300 {
            b.put(common::k(i), "z".repeat(300));
        }
        db.write(b).unwrap();
        let after = db.wal_segments().last().unwrap().size;
        let seg = db.wal_segments().last().unwrap().path.clone();
        db.close().unwrap();
        (seg, before, after)
    };
    assert!(after - before > 64 << 10);
    let full = std::fs::read(&seg).unwrap();
    let mut cuts: Vec<u64> = (before..after).step_by(977).collect();
    cuts.extend([before, before + 1, after - 1, after]);
    for cut in cuts {
        let dir = base.path().join(format!("cut{cut}"));
        common::copy_dir(&orig, &dir);
        std::fs::write(dir.join(seg.file_name().unwrap()), &full[..cut as usize]).unwrap();
        let db = Db::open(&dir).unwrap();
        assert!(db.get("first").unwrap().is_some());
        let n = (0..300)
            .filter(|&i| db.get(common::k(i)).unwrap().is_some())
            .count();
        if cut == after {
            assert_eq!(n, 300, "complete batch at cut {cut}");
        } else {
            assert_eq!(n, 0, "partial batch visible at cut {cut}");
        }
    }
}
