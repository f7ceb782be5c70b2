//! Reopening: after a clean close, after dropping the handle without closing, and a
//! 200,000-key write, reopen, read-all check.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use strata::{Db, SyncMode, WriteBatch};

#[test]
fn reopen_after_clean_close_keeps_data_and_versions() {
    let dir = tempfile::tempdir().unwrap();
    let (v_a, last) = {
        let db = Db::builder(dir.path()).history_versions(5).open().unwrap();
        let v_a = db.put("a", "1").unwrap();
        db.put("a", "2").unwrap();
        db.put("b", "x").unwrap();
        db.flush().unwrap();
        db.put("c", "mem").unwrap();
        db.delete("b").unwrap();
        let last = db.last_seqno();
        db.close().unwrap();
        (v_a, last)
    };
    let db = Db::builder(dir.path()).history_versions(5).open().unwrap();
    assert_eq!(db.last_seqno(), last, "the seqno counter continues");
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(db.get("b").unwrap(), None);
    assert_eq!(db.get("c").unwrap().as_deref(), Some(&b"mem"[..]));
    assert_eq!(db.get_at("a", v_a).unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.versions("a").count(), 2);
    let next = db.put("d", "after").unwrap();
    assert!(next > last);
    let rec = db.stats().recovery;
    assert_eq!(rec.writes_replayed, 2);
    assert!(rec.torn_tail.is_none());
}

#[test]
fn reopen_after_drop_without_close_in_both_sync_modes() {
    for mode in [SyncMode::Always, SyncMode::Buffered] {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = Db::builder(dir.path())
                .sync_mode(mode)
                .memtable_bytes(32 << 10)
                .open()
                .unwrap();
            for i in 0..2000 {
                db.put(common::k(i), format!("v{i}")).unwrap();
            }
            for i in (0..2000).step_by(10) {
                db.delete(common::k(i)).unwrap();
            }
            // No close: the handle is dropped with writes still in the memtable and WAL.
        }
        let db = Db::builder(dir.path()).sync_mode(mode).open().unwrap();
        for i in 0..2000 {
            let want = (i % 10 != 0).then(|| format!("v{i}"));
            let got = db
                .get(common::k(i))
                .unwrap()
                .map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(got, want, "{mode:?} key {i}");
        }
        assert_eq!(db.iter().count(), 1800);
    }
}

#[test]
fn many_reopens_accumulate_no_stale_files() {
    let dir = tempfile::tempdir().unwrap();
    for round in 0..8u64 {
        let db = Db::builder(dir.path())
            .memtable_bytes(8 << 10)
            .open()
            .unwrap();
        for i in 0..200 {
            db.put(common::k(round * 1000 + i), "v").unwrap();
        }
        if round % 2 == 0 {
            db.close().unwrap();
        }
    }
    // This open starts no background flush, so the files listed below hold still.
    let db = Db::builder(dir.path())
        .flush_after_recovery(false)
        .open()
        .unwrap();
    assert_eq!(db.iter().count(), 1600);
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let manifests = names.iter().filter(|n| n.starts_with("MANIFEST-")).count();
    assert_eq!(manifests, 1, "{names:?}");
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");
    let wal_files = names.iter().filter(|n| n.ends_with(".wal")).count();
    assert_eq!(wal_files, db.wal_segments().len(), "{names:?}");
    let tables = names.iter().filter(|n| n.ends_with(".sst")).count();
    assert_eq!(
        tables,
        db.stats().levels.iter().map(|l| l.tables).sum::<usize>()
    );
}

#[test]
fn two_hundred_thousand_keys_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let n = 200_000u64;
    let value = |i: u64| format!("value-{i}-{}", "x".repeat((i % 50) as usize));
    {
        let db = Db::builder(dir.path())
            .sync_mode(SyncMode::Buffered)
            .memtable_bytes(4 << 20)
            .open()
            .unwrap();
        let mut b = WriteBatch::new();
        for i in 0..n {
            // Scatter the keys so tables overlap.
            let key = common::k((i * 7919) % n);
            b.put(key, value((i * 7919) % n));
            if b.len() == 1000 {
                db.write(std::mem::take(&mut b)).unwrap();
            }
        }
        db.write(b).unwrap();
        assert!(db.stats().flushes >= 3);
        db.close().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    let mut count = 0u64;
    for (i, item) in db.iter().enumerate() {
        let (k, v) = item.unwrap();
        let i = i as u64;
        assert_eq!(&k[..], common::k(i).as_bytes());
        assert_eq!(&v[..], value(i).as_bytes());
        count += 1;
    }
    assert_eq!(count, n);
    for i in (0..n).step_by(997) {
        assert_eq!(
            db.get(common::k(i)).unwrap().as_deref(),
            Some(value(i).as_bytes())
        );
    }
}

#[test]
fn a_table_no_manifest_names_is_removed_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("kept", "v").unwrap();
    db.flush().unwrap();
    let live = db.stats().levels.iter().map(|l| l.tables).sum::<usize>();
    db.close().unwrap();
    assert_eq!(live, 1);
    // What a flush killed before its manifest edit leaves behind.
    let stale = dir.path().join("999999.sst");
    std::fs::write(&stale, b"half a table").unwrap();

    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.stats().recovery.stale_tables_removed, 1);
    assert!(!stale.exists());
    assert_eq!(db.get("kept").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.stats().recovery.stale_tables_removed, 0);
}

#[test]
fn reopening_a_store_whose_writes_are_in_tables_leaves_one_wal_segment() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("k", "v").unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let wal_files = || wal_files_in(dir.path());
    for _ in 0..5 {
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.wal_segments().len(), 1);
        db.close().unwrap();
    }
    // Every write is in a table and the last open wrote nothing: no segment is left.
    assert_eq!(wal_files(), 0, "empty segments pile up across reopens");
    // Writes only in the WAL keep their segment until they are flushed.
    let db = Db::open(dir.path()).unwrap();
    db.put("k2", "v2").unwrap();
    db.close().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get("k2").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(db.wal_segments().len(), 2);
    db.close().unwrap();
}

#[test]
fn opening_and_closing_at_once_with_replayed_writes_leaves_no_trail_of_segments() {
    // With the default flush after recovery, each open starts flushing what it replayed; a
    // close right after can cut that flush off at any point.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .flush_after_recovery(false)
        .open()
        .unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let before = wal_files_in(dir.path());
    for _ in 0..8 {
        let db = Db::open(dir.path()).unwrap();
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        db.close().unwrap();
        assert!(
            wal_files_in(dir.path()) <= before,
            "{} WAL segments after an open and a close, {before} before",
            wal_files_in(dir.path())
        );
    }
}

#[test]
fn reopening_a_store_with_unflushed_writes_leaves_no_trail_of_empty_segments() {
    let dir = tempfile::tempdir().unwrap();
    let wal_files = || wal_files_in(dir.path());
    // Opens that leave replayed writes in the WAL, whose segments this test follows.
    let keep_wal = |d: &std::path::Path| Db::builder(d).flush_after_recovery(false).open().unwrap();
    let db = keep_wal(dir.path());
    db.put("k", "v").unwrap();
    db.close().unwrap();
    let after_write = wal_files();
    // Opening for reads only: the segment each open starts receives nothing.
    for _ in 0..5 {
        let db = keep_wal(dir.path());
        assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
        db.close().unwrap();
        assert_eq!(
            wal_files(),
            after_write,
            "an empty segment outlived its close"
        );
    }
    // A segment that did receive writes is kept, and later segments follow it.
    let db = keep_wal(dir.path());
    db.put("k2", "v2").unwrap();
    db.close().unwrap();
    assert_eq!(wal_files(), after_write + 1);
    for _ in 0..3 {
        let db = keep_wal(dir.path());
        db.close().unwrap();
    }
    let db = keep_wal(dir.path());
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(db.get("k2").unwrap().as_deref(), Some(&b"v2"[..]));
    assert_eq!(db.stats().recovery.segments_replayed, after_write + 1);
    db.put("k3", "v3").unwrap();
    db.flush().unwrap();
    db.close().unwrap();
    let db = keep_wal(dir.path());
    assert_eq!(db.iter().count(), 3);
    db.close().unwrap();
}

#[test]
fn flush_on_close_leaves_no_wal_and_the_next_open_replays_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let open = |flush: bool| {
        Db::builder(dir.path())
            .flush_on_close(flush)
            .open()
            .unwrap()
    };
    let db = open(true);
    for i in 0..1000 {
        db.put(format!("k{i:04}"), format!("v{i}")).unwrap();
    }
    db.delete("k0007").unwrap();
    let last = db.last_seqno();
    db.close().unwrap();
    assert_eq!(wal_files_in(dir.path()), 0, "the closed store kept a WAL");
    let db = open(true);
    let rec = db.stats().recovery;
    assert_eq!((rec.segments_replayed, rec.writes_replayed), (0, 0));
    assert_eq!(db.last_seqno(), last);
    assert_eq!(db.get("k0999").unwrap().as_deref(), Some(&b"v999"[..]));
    assert_eq!(db.get("k0007").unwrap(), None);
    assert_eq!(db.iter().count(), 999);
    // Dropping the last handle closes the store the same way.
    db.put("dropped", "1").unwrap();
    drop(db);
    assert_eq!(wal_files_in(dir.path()), 0);
    // By default the writes stay in the WAL and the next open replays them.
    let db = open(false);
    assert_eq!(db.stats().recovery.writes_replayed, 0);
    db.put("kept", "in the wal").unwrap();
    db.close().unwrap();
    assert_eq!(wal_files_in(dir.path()), 1);
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.stats().recovery.writes_replayed, 1);
    assert_eq!(db.get("dropped").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(db.get("kept").unwrap().as_deref(), Some(&b"in the wal"[..]));
    db.close().unwrap();
}

/// WAL segment files in `dir`.
fn wal_files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".wal")
        })
        .count()
}

#[test]
fn writes_replayed_at_open_are_flushed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for i in 0..500 {
        db.put(common::k(i), "v").unwrap();
    }
    db.close().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.stats().recovery.writes_replayed, 500);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while db.stats().levels[0].tables == 0 {
        assert!(std::time::Instant::now() < deadline, "never flushed");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(db.iter().count(), 500);
    db.close().unwrap();
    // Those writes are in a table now: the next open replays nothing.
    let db = Db::builder(dir.path())
        .flush_after_recovery(false)
        .open()
        .unwrap();
    assert_eq!(db.stats().recovery.writes_replayed, 0);
    db.put("x", "1").unwrap();
    db.close().unwrap();
    // Turned off, the replayed write stays in the memtable.
    let db = Db::builder(dir.path())
        .flush_after_recovery(false)
        .open()
        .unwrap();
    assert_eq!(db.stats().recovery.writes_replayed, 1);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(db.stats().levels[0].tables, 1);
    assert_eq!(db.get("x").unwrap().as_deref(), Some(&b"1"[..]));
    db.close().unwrap();
}
