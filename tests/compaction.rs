//! Compaction: space is reclaimed, retention keeps exactly what it promises, snapshots keep
//! their view, moves are trivial when nothing overlaps, and the controls (range, periodic,
//! try, status) behave as documented.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::holdfs::{FsOp, HoldFs};
use strata::{CompactionReason, Db, PeriodicCompaction, SyncMode};

/// Bytes the directory occupies on disk (allocated blocks), WAL segments aside: they are
/// preallocated to their size limit, and the bytes they hold are `Stats::wal_bytes`.
fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_name().to_string_lossy().contains(".wal"))
        .map(|e| e.metadata().unwrap().blocks() * 512)
        .sum()
}

fn tables_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|e| {
        let p = e.unwrap().path();
        p.extension().is_some_and(|x| x == "sst")
            && std::fs::read(&p)
                .unwrap()
                .windows(needle.len())
                .any(|w| w == needle)
    })
}

fn small_levels(dir: &Path) -> strata::DbBuilder {
    Db::builder(dir)
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(256 << 10)
        .level_sizes(1 << 20, 4, 256 << 10)
}

#[test]
fn overwrites_and_deletes_are_reclaimed_by_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_levels(dir.path()).open().unwrap();
    let keys = 4000u64;
    let mut live: BTreeMap<u64, Vec<u8>> = BTreeMap::new();
    let mut x = 7u64;
    for round in 0..12u64 {
        for _ in 0..keys {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let k = (x >> 20) % keys;
            if (x >> 8).is_multiple_of(5) {
                db.delete(common::k(k)).unwrap();
                live.remove(&k);
            } else {
                let v = format!("round{round:02}-{k:06}-{}", "v".repeat(90)).into_bytes();
                db.put(common::k(k), &v).unwrap();
                live.insert(k, v);
            }
        }
    }
    // Marks written only to keys that end up deleted: they must vanish from disk.
    let mut gone = Vec::new();
    for k in keys..keys + 200 {
        let mark = format!("MARK-{k:08}-deleted-value");
        db.put(common::k(k), &mark).unwrap();
        db.flush().unwrap();
        db.delete(common::k(k)).unwrap();
        gone.push(mark);
    }
    let before = db.stats();
    let run = db.compact().unwrap();
    let after = db.stats();
    assert_eq!(run.reason, CompactionReason::Manual);
    // No count of dropped entries is asserted for this run: background compactions run all
    // along and may have dropped the garbage first. What matters is that none is left, as
    // the checks below show (one entry per live key, no trace of the deleted marks).

    let live_bytes: u64 = live
        .iter()
        .map(|(k, v)| (common::k(*k).len() + v.len()) as u64)
        .sum();
    let on_disk = disk_bytes(dir.path()) + after.wal_bytes;
    let amp = on_disk as f64 / live_bytes as f64;
    println!(
        "live {live_bytes} B, on disk {on_disk} B, space amplification {amp:.3}; tables before {:?}",
        before.levels.iter().map(|l| l.tables).collect::<Vec<_>>()
    );
    assert!(
        amp <= 1.5,
        "space amplification {amp:.3} after a full compaction"
    );
    // Exactly one version per live key remains: deleted keys and old versions are gone.
    let entries: u64 = after.levels.iter().map(|l| l.entries).sum();
    assert_eq!(entries, live.len() as u64);
    for mark in &gone {
        assert!(
            !tables_contain(dir.path(), mark.as_bytes()),
            "{mark} still on disk"
        );
    }
    for k in keys..keys + 200 {
        assert_eq!(
            db.versions(common::k(k)).count(),
            0,
            "history of a deleted key"
        );
    }
    // And the data is right.
    let got: Vec<(String, String)> = common::collect(db.iter());
    let want: Vec<(String, String)> = live
        .iter()
        .map(|(k, v)| (common::k(*k), String::from_utf8(v.clone()).unwrap()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn retention_keeps_exactly_the_newest_n_and_what_snapshots_see() {
    let dir = tempfile::tempdir().unwrap();
    let n = 3;
    let db = small_levels(dir.path()).history_versions(n).open().unwrap();
    let mut written: BTreeMap<u64, Vec<(strata::SeqNo, Option<String>)>> = BTreeMap::new();
    let mut snapshots = Vec::new();
    for round in 0..8u64 {
        for k in 0..300u64 {
            let (seq, v) = if (k + round) % 7 == 0 {
                (db.delete(common::k(k)).unwrap(), None)
            } else {
                let v = format!("{k}-r{round}");
                (db.put(common::k(k), &v).unwrap(), Some(v))
            };
            written.entry(k).or_default().push((seq, v));
        }
        if round == 2 || round == 5 {
            snapshots.push((db.snapshot(), round));
        }
        db.flush().unwrap();
    }
    db.compact().unwrap();
    for (k, hist) in &written {
        let got: Vec<(strata::SeqNo, Option<String>)> = db
            .versions(common::k(*k))
            .map(|v| {
                let v = v.unwrap();
                (
                    v.seqno,
                    v.value.map(|b| String::from_utf8(b.to_vec()).unwrap()),
                )
            })
            .collect();
        let newest_deleted = hist.last().unwrap().1.is_none();
        // Promised: the newest n versions, plus the newest version each live snapshot sees.
        let mut want: Vec<(strata::SeqNo, Option<String>)> =
            hist.iter().rev().take(n).cloned().collect();
        for (snap, _) in &snapshots {
            if let Some(seen) = hist.iter().rev().find(|(s, _)| *s <= snap.seqno())
                && !want.contains(seen)
            {
                want.push(seen.clone());
            }
        }
        want.sort_by_key(|v| std::cmp::Reverse(v.0));
        for (seq, v) in &got {
            let at = db
                .get_at(common::k(*k), *seq)
                .unwrap()
                .map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(&at, v, "get_at({seq}) of key {k}");
        }
        if newest_deleted {
            // A deleted key's history may go entirely, but only down to what snapshots need.
            let needed: Vec<_> = snapshots
                .iter()
                .filter_map(|(s, _)| hist.iter().rev().find(|(q, _)| *q <= s.seqno()).cloned())
                .filter(|(_, v)| v.is_some())
                .collect();
            for item in &needed {
                assert!(
                    got.contains(item),
                    "key {k}: snapshot version {item:?} lost: {got:?}"
                );
            }
            assert!(
                got.len() <= want.len(),
                "key {k}: kept more than promised: {got:?}"
            );
        } else {
            assert_eq!(got, want, "key {k}");
        }
    }
    // The snapshots still read their view.
    for (snap, round) in &snapshots {
        for (k, hist) in &written {
            let want = hist
                .iter()
                .rev()
                .find(|(s, _)| *s <= snap.seqno())
                .and_then(|(_, v)| v.clone());
            let got = snap
                .get(common::k(*k))
                .unwrap()
                .map(|b| String::from_utf8(b.to_vec()).unwrap());
            assert_eq!(got, want, "snapshot of round {round}, key {k}");
        }
    }
    // Once the snapshots are gone, a compaction trims history to the newest n.
    drop(snapshots);
    db.compact().unwrap();
    for (k, hist) in &written {
        let got = db.versions(common::k(*k)).count();
        let want = if hist.last().unwrap().1.is_none() {
            0
        } else {
            n.min(hist.len())
        };
        assert_eq!(got, want, "key {k}");
    }
}

#[test]
fn a_snapshot_taken_before_compaction_reads_its_view_after() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_levels(dir.path()).open().unwrap();
    for i in 0..3000 {
        db.put(common::k(i), format!("old{i}")).unwrap();
    }
    let snap = db.snapshot();
    let iter = db.range(common::k(1000)..common::k(2000));
    for i in 0..3000 {
        if i % 2 == 0 {
            db.delete(common::k(i)).unwrap();
        } else {
            db.put(common::k(i), format!("new{i}")).unwrap();
        }
    }
    db.compact().unwrap();
    db.compact_range(common::k(0)..common::k(500)).unwrap();
    for i in (0..3000).step_by(7) {
        assert_eq!(
            snap.get(common::k(i)).unwrap().as_deref(),
            Some(format!("old{i}").as_bytes())
        );
    }
    assert_eq!(snap.iter().count(), 3000);
    let from_iter: Vec<_> = iter.map(|r| r.unwrap().1).collect();
    assert_eq!(from_iter.len(), 1000);
    assert!(from_iter.iter().all(|v| v.starts_with(b"old")));
    assert_eq!(db.iter().count(), 1500);
}

#[test]
fn obsolete_tables_live_exactly_as_long_as_their_readers() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .l0_limits(100, 200, 300)
        .open()
        .unwrap();
    for i in 0..1000 {
        db.put(common::k(i), "first").unwrap();
    }
    db.flush().unwrap();
    let tables = |d: &Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".sst"))
            .collect();
        v.sort();
        v
    };
    let old = tables(dir.path());
    assert_eq!(old.len(), 1);
    let mut reader = db.iter();
    assert!(reader.next().is_some());
    for i in 0..1000 {
        db.put(common::k(i), "second").unwrap();
    }
    db.compact().unwrap();
    let now = tables(dir.path());
    assert!(
        now.contains(&old[0]),
        "a table still read by an iterator was deleted"
    );
    // The iterator still reads its snapshot from the old table.
    assert!(
        reader
            .by_ref()
            .take(10)
            .all(|r| &r.unwrap().1[..] == b"first")
    );
    drop(reader);
    assert!(
        !tables(dir.path()).contains(&old[0]),
        "the old table outlived its last reader"
    );
    assert_eq!(
        db.get(common::k(5)).unwrap().as_deref(),
        Some(&b"second"[..])
    );
}

#[test]
fn a_table_with_nothing_below_is_moved_not_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path()).l0_limits(1, 8, 16).open().unwrap();
    for i in 0..100 {
        db.put(common::k(i), "v").unwrap();
    }
    db.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while db.stats().levels[0].tables > 0 {
        assert!(Instant::now() < deadline, "automatic compaction never ran");
        std::thread::sleep(Duration::from_millis(10));
    }
    let st = db.stats();
    assert_eq!(st.levels[1].tables, 1);
    assert_eq!(st.levels[1].bytes_written, 0, "a move writes nothing");
    let status = db.compaction_status();
    let run = status.history.last().unwrap();
    assert_eq!(run.reason, CompactionReason::Automatic);
    assert_eq!(
        (run.tables_in, run.tables_out, run.bytes_in),
        (1, 1, run.bytes_out)
    );
    assert_eq!(db.get(common::k(5)).unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn automatic_compaction_keeps_levels_near_their_targets() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_levels(dir.path()).open().unwrap();
    let mut x = 1u64;
    let mut last: BTreeMap<u64, u64> = BTreeMap::new();
    for i in 0..60_000u64 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let k = (x >> 16) % 20_000;
        db.put(common::k(k), format!("{i:08}{}", "x".repeat(92)))
            .unwrap();
        last.insert(k, i);
    }
    db.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let st = db.stats();
        if st.levels.iter().all(|l| l.score < 1.0) {
            assert!(st.compactions > 0);
            assert!(st.levels[2].tables > 0 || st.levels[1].tables > 0);
            assert!(st.write_amplification > 1.0);
            assert!(st.read_amplification <= 2 + st.levels[0].tables + 6);
            println!(
                "levels {:?}",
                st.levels
                    .iter()
                    .map(|l| (l.tables, l.bytes))
                    .collect::<Vec<_>>()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "levels never settled: {:?}",
            st.levels
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(db.iter().count(), last.len());
    for (k, i) in &last {
        let v = db.get(common::k(*k)).unwrap().unwrap();
        assert_eq!(&v[..8], format!("{i:08}").as_bytes(), "key {k}");
    }
}

#[test]
fn compact_range_touches_only_overlapping_tables() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .l0_limits(100, 200, 300)
        .open()
        .unwrap();
    for part in 0..4u64 {
        for i in 0..500 {
            db.put(common::k(part * 1000 + i), "v").unwrap();
        }
        db.flush().unwrap();
    }
    assert_eq!(db.stats().levels[0].tables, 4);
    let run = db.compact_range(common::k(1000)..common::k(1500)).unwrap();
    assert_eq!(
        run.tables_in, 1,
        "only the table holding the range: {run:?}"
    );
    let st = db.stats();
    assert_eq!((st.levels[0].tables, st.levels[1].tables), (3, 1));
    assert_eq!(db.iter().count(), 2000);
    let run = db.compact_range(..).unwrap();
    assert_eq!(run.tables_in, 4);
    assert_eq!(db.stats().levels[0].tables, 0);
    assert_eq!(db.iter().count(), 2000);
}

#[test]
fn range_compaction_never_leaves_older_level0_data_above_newer() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .l0_limits(100, 200, 300)
        .open()
        .unwrap();
    // Three level-0 tables: A = {a, b, c}, D = {m, n} (newer), B = {b .. z} (newest).
    for k in ["a", "b", "c"] {
        db.put(k, "A").unwrap();
    }
    db.flush().unwrap();
    for k in ["m", "n"] {
        db.put(k, "D").unwrap();
    }
    db.flush().unwrap();
    for k in ["b", "m", "n", "z"] {
        db.put(k, "B").unwrap();
    }
    db.flush().unwrap();
    assert_eq!(db.stats().levels[0].tables, 3);
    // Compacting just "a" pulls in A, then B (it overlaps A), then D (it overlaps B).
    db.compact_range("a"..="a").unwrap();
    for (k, want) in [
        ("a", "A"),
        ("b", "B"),
        ("c", "A"),
        ("m", "B"),
        ("n", "B"),
        ("z", "B"),
    ] {
        assert_eq!(
            db.get(k).unwrap().as_deref(),
            Some(want.as_bytes()),
            "key {k}"
        );
    }
    let scan: Vec<_> = common::collect(db.iter())
        .into_iter()
        .map(|(_, v)| v)
        .collect();
    assert_eq!(scan, ["A", "B", "A", "B", "B", "B"]);
}

#[test]
fn try_compact_honours_the_minimum_interval_unless_forced() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .periodic_compaction(PeriodicCompaction {
            enabled: false,
            interval: Duration::from_secs(3600),
            min_interval: Duration::from_secs(3600),
        })
        .open()
        .unwrap();
    db.put("a", "1").unwrap();
    assert!(
        db.try_compact(false).unwrap().is_some(),
        "no full compaction yet"
    );
    assert!(
        db.try_compact(false).unwrap().is_none(),
        "within the minimum interval"
    );
    assert!(db.try_compact(true).unwrap().is_some(), "forced");
    let status = db.compaction_status();
    assert!(!status.running);
    assert_eq!(status.history.len(), 2);
    assert_eq!(status.last_run.unwrap().reason, CompactionReason::Manual);
    assert!(status.error.is_none());
}

#[test]
fn periodic_compaction_runs_on_schedule_and_can_be_switched_off() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for i in 0..100 {
        db.put(common::k(i), "v").unwrap();
    }
    let periodic = |n: &Db| {
        n.compaction_status()
            .history
            .iter()
            .filter(|r| r.reason == CompactionReason::Periodic)
            .count()
    };
    assert_eq!(periodic(&db), 0);
    db.set_periodic_compaction(PeriodicCompaction {
        enabled: true,
        interval: Duration::from_millis(100),
        min_interval: Duration::from_millis(50),
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while periodic(&db) < 2 {
        assert!(
            Instant::now() < deadline,
            "periodic compaction did not run twice"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        db.stats().levels[0].tables,
        0,
        "the periodic run flushed and compacted"
    );
    db.set_periodic_compaction(PeriodicCompaction {
        enabled: false,
        ..db.compaction_status().periodic
    });
    std::thread::sleep(Duration::from_millis(150));
    let settled = periodic(&db);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(periodic(&db), settled, "disabled schedule kept running");
    assert!(!db.compaction_status().periodic.enabled);
}

#[test]
fn the_wal_size_cap_forces_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(64 << 20)
        .wal_segment_bytes(16 << 10)
        .max_wal_bytes(64 << 10)
        .open()
        .unwrap();
    for i in 0..5000 {
        db.put(common::k(i), [b'w'; 100]).unwrap();
    }
    let st = db.stats();
    assert!(st.flushes > 0, "the cap should force flushes: {st:?}");
    assert!(
        st.wal_bytes <= (64 << 10) + (16 << 10) + 4096,
        "WAL holds {} bytes",
        st.wal_bytes
    );
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    assert!(db.stats().recovery.writes_replayed < 5000);
    assert_eq!(db.iter().count(), 5000);
}

#[test]
fn writes_slow_down_before_they_stop() {
    // Compactions wait at their first output table, so flushes alone fill level 0: past the
    // slowdown limit writes must be slowed, not yet stopped, however fast compaction is.
    let fs = HoldFs::new();
    fs.hold_in_thread(FsOp::Create, ".sst", "strata-compact");
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .filesystem(fs.clone())
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(8 << 10)
        .l0_limits(2, 3, 6)
        .open()
        .unwrap();
    let mut written = 0;
    while db.stats().write_slowdowns == 0 {
        assert!(written < 20_000, "no slowdown: {:?}", db.stats());
        db.put(common::k(written % 5000), [b's'; 64]).unwrap();
        written += 1;
    }
    let st = db.stats();
    assert!(
        (3..6).contains(&st.levels[0].tables),
        "slowed at {} level-0 tables",
        st.levels[0].tables
    );
    assert_eq!(st.write_stops, 0, "stopped before slowing down");
    assert!(st.longest_stall_micros > 0);
    fs.release();
    for i in written..20_000 {
        db.put(common::k(i % 5000), [b's'; 64]).unwrap();
    }
    assert!(
        db.stats().levels[0].tables < 6 + 2,
        "level 0 stayed near the stop limit"
    );
    assert_eq!(db.iter().count(), 5000);
}

#[test]
fn scans_through_level_0_pay_for_compacting_it() {
    for seek_bytes in [16 << 10, 0] {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::builder(dir.path())
            .seek_compaction_bytes(seek_bytes)
            .open()
            .unwrap();
        for i in 0..4000 {
            db.put(common::k(i), "old").unwrap();
        }
        db.compact().unwrap();
        // One level-0 table over the rest: well below the trigger of four tables.
        for i in (0..4000).step_by(2) {
            db.put(common::k(i), "new").unwrap();
        }
        db.flush().unwrap();
        let st = db.stats();
        assert_eq!(st.levels[0].tables, 1);
        let all_bytes: u64 = st.levels.iter().map(|l| l.bytes).sum();
        // Each scan pays 16 KiB per level-0 table; these scans pay for rewriting every table
        // (more than the compaction reads), and for the wake-up that tells the compactor.
        let scans = all_bytes.div_ceil(16 << 10).max(100) + 256;
        for s in 0..scans {
            let got: Vec<_> = db
                .range(common::k(s % 4000)..)
                .take(3)
                .map(|r| r.unwrap())
                .collect();
            assert!(!got.is_empty());
        }
        let reads_runs = || {
            db.compaction_status()
                .history
                .iter()
                .filter(|r| r.reason == CompactionReason::Reads)
                .count()
        };
        // The run is recorded just after its tables are installed: wait for the record.
        let deadline = Instant::now() + Duration::from_secs(if seek_bytes > 0 { 30 } else { 2 });
        while reads_runs() == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let reads_runs = reads_runs();
        if seek_bytes > 0 {
            assert_eq!(db.stats().levels[0].tables, 0, "scans never paid for it");
            assert_eq!(reads_runs, 1);
        } else {
            assert_eq!(
                db.stats().levels[0].tables,
                1,
                "compacted though turned off"
            );
            assert_eq!(reads_runs, 0);
        }
        for i in 0..4000 {
            let want: &[u8] = if i % 2 == 0 { b"new" } else { b"old" };
            assert_eq!(db.get(common::k(i)).unwrap().as_deref(), Some(want), "{i}");
        }
    }
}

#[test]
fn a_few_scans_do_not_compact_level_0() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for i in 0..100 {
        db.put(common::k(i), "v").unwrap();
    }
    db.flush().unwrap();
    // Tiny tables cost almost nothing to compact, but fewer than 100 scans never pay for it.
    for _ in 0..90 {
        assert_eq!(db.range(..).take(2).count(), 2);
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(db.stats().levels[0].tables, 1);
    assert!(db.compaction_status().history.is_empty());
}

/// Lets every held operation go when dropped.
struct ReleaseOnDrop(std::sync::Arc<HoldFs>);

impl Drop for ReleaseOnDrop {
    fn drop(&mut self) {
        self.0.release();
    }
}

/// Every live entry of `db` read forward from `from`, at most `n`.
fn entries_from(db: &Db, from: &str, n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    db.range(from..)
        .take(n)
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect()
}

/// Checks every way of reading `db` against `model`.
fn reads_match(db: &Db, model: &BTreeMap<Vec<u8>, Vec<u8>>, what: &str) {
    let all: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    assert_eq!(entries_from(db, "", usize::MAX), all, "{what}: full scan");
    for i in (0..4100).step_by(37) {
        let from = common::k(i);
        let want: Vec<_> = model
            .range(from.clone().into_bytes()..)
            .take(60)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            entries_from(db, &from, 60),
            want,
            "{what}: scan from {from}"
        );
    }
    let back: Vec<(Vec<u8>, Vec<u8>)> = db
        .iter()
        .rev()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    assert!(back.iter().eq(all.iter().rev()), "{what}: backward scan");
    for i in 0..4100 {
        let key = common::k(i);
        let got = db.get(&key).unwrap().map(|v| v.to_vec());
        assert_eq!(got.as_ref(), model.get(key.as_bytes()), "{what}: get {key}");
    }
}

/// A store with small tables and compaction of level 0 left to the test.
fn small_tables(dir: &Path) -> strata::DbBuilder {
    Db::builder(dir)
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(64 << 10)
        .level_sizes(1 << 20, 10, 8 << 10)
        .l0_limits(100, 200, 300)
}

/// Writes keys 0..4000 and compacts them into one sorted run; returns the model.
fn one_sorted_run(db: &Db) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    for i in 0..4000 {
        let v = format!("base {i}").into_bytes();
        db.put(common::k(i), &v).unwrap();
        model.insert(common::k(i).into_bytes(), v);
    }
    db.compact().unwrap();
    model
}

/// Three level-0 tables over it of newer versions (their values marked with `tag`) and
/// deletes of keys below `upto`.
fn newer_level_0(db: &Db, model: &mut BTreeMap<Vec<u8>, Vec<u8>>, upto: u64, tag: u64) {
    for round in 0..3u64 {
        for i in (round..upto).step_by(7) {
            let key = common::k(i);
            if i % 3 == 0 {
                db.delete(&key).unwrap();
                model.remove(key.as_bytes());
            } else {
                let v = format!("{tag} round {round} {i}").into_bytes();
                db.put(&key, &v).unwrap();
                model.insert(key.into_bytes(), v);
            }
        }
        db.flush().unwrap();
    }
    assert_eq!(db.stats().levels[0].tables, 3);
}

#[test]
fn reads_during_a_compaction_see_the_same_data_through_its_finished_outputs() {
    // A full compaction of level 0 over level 1 is held before its second output table, so
    // its first one is finished and readers may take keys up to its last one from it.
    let fs = HoldFs::new();
    let dir = tempfile::tempdir().unwrap();
    let db = small_tables(dir.path())
        .filesystem(fs.clone())
        .open()
        .unwrap();
    let mut model = one_sorted_run(&db);
    // A snapshot of the state before the newer versions.
    let before = db.snapshot();
    let old_model = model.clone();
    newer_level_0(&db, &mut model, 4000, 0);

    fs.hold_in_thread(FsOp::Create, ".sst", "compacting");
    fs.allow(1);
    std::thread::scope(|s| {
        let job = std::thread::Builder::new()
            .name("compacting".into())
            .spawn_scoped(s, || db.compact().unwrap())
            .unwrap();
        // A failed check lets the compaction go, so that the scope can end.
        let _release = ReleaseOnDrop(fs.clone());
        assert!(
            fs.wait_held(1, Duration::from_secs(30)),
            "compaction never held"
        );
        let st = db.compaction_status();
        let current = st
            .current
            .expect("a running compaction reports its progress");
        assert!(st.running);
        assert_eq!(current.tables_out, 1, "{current:?}");
        assert!(
            current.bytes_out > 0 && current.bytes_out < current.bytes_in,
            "{current:?}"
        );
        assert!(current.tables_in >= 4, "{current:?}");
        assert!(current.shown_to_reads);
        assert_eq!(current.reason, CompactionReason::Manual);
        reads_match(&db, &model, "held");
        let snap: Vec<_> = before.range(..).map(|r| r.unwrap()).collect();
        assert_eq!(snap.len(), old_model.len(), "snapshot while held");
        assert!(
            snap.iter()
                .zip(&old_model)
                .all(|((k, v), (mk, mv))| &k[..] == mk && &v[..] == mv)
        );
        // Writes while the compaction waits land above it.
        for i in (0..4100).step_by(11) {
            let v = format!("during {i}").into_bytes();
            db.put(common::k(i), &v).unwrap();
            model.insert(common::k(i).into_bytes(), v);
        }
        db.flush().unwrap();
        reads_match(&db, &model, "held, after more writes");
        fs.release();
        job.join().unwrap();
    });
    assert_eq!(db.stats().levels[0].tables, 1, "the flush made while held");
    assert_eq!(db.compaction_status().current, None);
    reads_match(&db, &model, "after");
    drop(before);
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    reads_match(&db, &model, "reopened");
}

#[test]
fn scans_and_gets_racing_a_compaction_through_its_outputs_read_the_same_data() {
    // Small output tables, so the compaction shows a new finished part every few hundred
    // keys while readers scan and look up across the moving boundary. Newer versions of the
    // lower half of the keys sit in level 0 over a deeper level holding every key: past the
    // boundary, the finished part alone would show that level's older values.
    let dir = tempfile::tempdir().unwrap();
    let db = small_tables(dir.path()).open().unwrap();
    let mut model = one_sorted_run(&db);
    let mut checked = 0u64;
    let mut x = 7u64;
    // A few rounds, for more reads to cross a boundary while it moves.
    for tag in 1..=4 {
        newer_level_0(&db, &mut model, 2000, tag);
        std::thread::scope(|s| {
            let job = s.spawn(|| db.compact_range(common::k(0)..common::k(2000)).unwrap());
            let deadline = Instant::now() + Duration::from_secs(60);
            while !job.is_finished() && Instant::now() < deadline {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let from = common::k(x % 2100);
                let want: Vec<_> = model
                    .range(from.clone().into_bytes()..)
                    .take(40)
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                assert_eq!(entries_from(&db, &from, 40), want, "scan from {from}");
                // A bounded scan: past the boundary the finished part's next key may lie past
                // the bound too (the deeper level's keys the compaction does not cover), and
                // the inputs' keys in between must still be read.
                let to = common::k(x % 2100 + 60);
                let want: Vec<_> = model
                    .range(from.clone().into_bytes()..to.clone().into_bytes())
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                let got: Vec<_> = db
                    .range(from.as_str()..to.as_str())
                    .map(|r| {
                        let (k, v) = r.unwrap();
                        (k.to_vec(), v.to_vec())
                    })
                    .collect();
                assert_eq!(got, want, "scan from {from} to {to}");
                let got = db.get(&from).unwrap().map(|v| v.to_vec());
                assert_eq!(got.as_ref(), model.get(from.as_bytes()), "get {from}");
                checked += 1;
            }
            job.join().unwrap();
        });
        assert_eq!(db.stats().levels[0].tables, 0);
    }
    assert!(checked > 0, "no read raced the compaction");
    reads_match(&db, &model, "after");
}

#[test]
fn a_running_compaction_is_in_the_status_until_its_run_is_recorded() {
    // Whoever reads the status finds each compaction either running or in the history:
    // never in neither.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(32 << 10)
        .level_sizes(64 << 10, 4, 8 << 10)
        .l0_limits(2, 8, 12)
        .open()
        .unwrap();
    let mut seen = 0;
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            for i in 0..30_000u64 {
                db.put(common::k(i % 7000), [b'c'; 64]).unwrap();
            }
        });
        let mut watching: Option<std::time::SystemTime> = None;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !writer.is_finished() && Instant::now() < deadline {
            let st = db.compaction_status();
            if st.current.is_some() {
                assert!(st.running, "progress without a running compaction");
            }
            let now = st.current.as_ref().map(|c| c.started_at);
            if let Some(started) = watching
                && now != Some(started)
            {
                assert!(
                    st.history.iter().any(|r| r.started_at == started),
                    "a compaction left the status unrecorded"
                );
                seen += 1;
            }
            watching = now;
        }
        writer.join().unwrap();
    });
    assert!(seen > 0, "no compaction was watched to its end");
}
