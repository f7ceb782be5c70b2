//! Simulated power loss: random workloads on the fault-injecting filesystem, cut at random
//! moments, then reopened. Every write acknowledged as durable must survive, nothing that was
//! never written may appear, the recovered state must be a prefix of the acknowledged
//! history (whole batches only), and the store must always open.
//!
//! `STRATA_POWER_CUT_ITERS=5000 cargo test --release --test power_loss` runs a long search;
//! `STRATA_POWER_CUT_SEED=<n>` replays one failing seed.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use common::faultfs::{Crash, FaultFs, Rng};
use strata::{Db, FileSystem, SyncMode, WriteBatch};

/// One acknowledged batch: its last seqno and its operations in order.
#[derive(Debug, Clone)]
struct Acked {
    last_seq: u64,
    ops: Vec<(String, Option<String>)>,
}

/// Everything written so far, and how much of it is known durable.
#[derive(Debug, Default)]
struct History {
    batches: Vec<Acked>,
    /// Batches acknowledged as durable (a prefix of `batches`).
    durable: usize,
}

impl History {
    /// The state after the batches with last seqno at or below `seq`.
    fn state_at(&self, seq: u64) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        for b in self.batches.iter().take_while(|b| b.last_seq <= seq) {
            for (k, v) in &b.ops {
                match v {
                    Some(v) => m.insert(k.clone(), v.clone()),
                    None => m.remove(k),
                };
            }
        }
        m
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().expect(name))
}

fn open(fs: &Arc<FaultFs>, dir: &Path, mode: SyncMode, versions: usize) -> strata::Result<Db> {
    Db::builder(dir)
        .filesystem(Arc::clone(fs) as Arc<dyn FileSystem>)
        .memtable_bytes(4096)
        .max_immutable_memtables(2)
        .wal_segment_bytes(4096)
        .block_bytes(256)
        .l0_limits(2, 6, 12)
        .level_sizes(16 << 10, 4, 8 << 10)
        .sync_mode(mode)
        .history_versions(versions)
        .open()
}

/// Checks the reopened store against the history and cuts the history back to what was
/// recovered (later seqnos are reused by new writes).
fn verify(db: &Db, history: &mut History, seed: u64, round: usize) {
    DURABLE_CHECKED.fetch_add(history.durable as u64, Relaxed);
    let recovered = db.last_seqno().get();
    let ctx = format!("seed {seed} round {round}: recovered seqno {recovered}");
    let durable_seq = history
        .batches
        .get(history.durable.wrapping_sub(1))
        .map_or(0, |b| b.last_seq);
    assert!(
        recovered >= durable_seq,
        "{ctx}: durable writes up to {durable_seq} lost"
    );
    let acked_seq = history.batches.last().map_or(0, |b| b.last_seq);
    assert!(
        recovered <= acked_seq.max(durable_seq),
        "{ctx}: beyond history"
    );
    assert!(
        recovered == 0 || history.batches.iter().any(|b| b.last_seq == recovered),
        "{ctx}: not on a batch boundary"
    );
    let expected = history.state_at(recovered);
    let got = common::contents(db, &ctx);
    assert_eq!(got, expected, "{ctx}: contents differ");
    let back: Vec<String> = db
        .iter()
        .rev()
        .map(|r| String::from_utf8(r.unwrap().0.to_vec()).unwrap())
        .collect();
    assert!(
        back.iter().rev().eq(expected.keys()),
        "{ctx}: reverse scan differs"
    );
    for (k, v) in &expected {
        assert_eq!(
            db.get(k).unwrap().as_deref(),
            Some(v.as_bytes()),
            "{ctx}: get {k}"
        );
    }
    history.batches.retain(|b| b.last_seq <= recovered);
    history.durable = history.batches.len();
}

/// Tallies of the sequential test, printed at its end.
static CUTS: AtomicU64 = AtomicU64::new(0);
static BATCHES: AtomicU64 = AtomicU64::new(0);
static DURABLE_CHECKED: AtomicU64 = AtomicU64::new(0);

/// Runs one seed: several rounds of random writes, each ended by a power cut at a random
/// filesystem operation — in the middle of a write, a flush, a compaction (background ones
/// run all the time with these small levels), a WAL roll or the open itself.
fn run_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = Path::new("/db");
    let mut fs = FaultFs::new();
    let mode = if rng.chance(50) {
        SyncMode::Always
    } else {
        SyncMode::Buffered
    };
    let versions = 1 + rng.below(3) as usize;
    let mut history = History::default();
    let mut n = 0u64;
    for round in 0..4 {
        let crash = match rng.below(4) {
            0 => Crash::DropUnsynced,
            1 => Crash::KeepRandom,
            2 => Crash::TearLastWrite,
            _ => Crash::Process,
        };
        let cut_rng = Rng::new(rng.next_u64());
        fs.crash_at(rng.below(1500), crash, cut_rng);
        let db = open(&fs, dir, mode, versions).unwrap_or_else(|e| {
            panic!(
                "seed {seed} round {round}: open failed: {e}; CURRENT: {:?}; files (path, \
                 size, durable size): {:?}",
                fs.map(&dir.join("CURRENT")),
                fs.listing()
            )
        });
        if !fs.crashed() {
            verify(&db, &mut history, seed, round);
        }
        let ops = 20 + rng.below(150);
        for _ in 0..ops {
            if fs.crashed() {
                break;
            }
            n += 1;
            let mut batch = WriteBatch::new();
            let mut ops = Vec::new();
            let size = if rng.chance(20) { 1 + rng.below(8) } else { 1 };
            for _ in 0..size {
                let key = format!("k{:03}", rng.below(60));
                if rng.chance(20) {
                    batch.delete(&key);
                    ops.push((key, None));
                } else {
                    // Values of varied size, so that memtables fill and tables get flushed.
                    let value = format!("{n}-{}", "x".repeat(rng.below(200) as usize));
                    batch.put(&key, &value);
                    ops.push((key, Some(value)));
                }
            }
            let last_seq = db.write(batch).unwrap().expect("the batch writes").get();
            BATCHES.fetch_add(1, Relaxed);
            // A batch whose write was under way at the cut may or may not survive; it stays
            // in the history as allowed, not as durable.
            let before_cut = !fs.crashed();
            history.batches.push(Acked { last_seq, ops });
            if mode == SyncMode::Always && before_cut {
                history.durable = history.batches.len();
            }
            let synced = match rng.below(100) {
                0..=2 => db.flush().map(|()| true).unwrap(),
                3..=5 => db.sync().map(|()| true).unwrap(),
                // A full compaction flushes the memtables first, so it also makes every
                // earlier write durable.
                6 => db.compact().map(|_| true).unwrap(),
                7 => {
                    let from = format!("k{:03}", rng.below(60));
                    db.compact_range(from.as_str()..).map(|_| true).unwrap()
                }
                _ => false,
            };
            if synced && !fs.crashed() {
                history.durable = history.batches.len();
            }
        }
        // A clean close makes every acknowledged write durable.
        let db = if !fs.crashed() && rng.chance(20) {
            db.close().unwrap();
            if !fs.crashed() {
                history.durable = history.batches.len();
            }
            None
        } else {
            Some(db)
        };
        // The cut happens now unless it already did; the old store keeps running on the old
        // filesystem until it is dropped, which changes nothing on the new one.
        let after = fs
            .take_crashed()
            .unwrap_or_else(|| fs.crash(crash, &mut rng));
        CUTS.fetch_add(1, Relaxed);
        drop(db);
        fs = after;
    }
    let db = open(&fs, dir, mode, versions).unwrap_or_else(|e| {
        panic!(
            "seed {seed} final open failed: {e}; files (path, size, durable size): {:?}",
            fs.listing()
        )
    });
    verify(&db, &mut history, seed, 4);
}

#[test]
fn power_cuts_lose_nothing_acknowledged() {
    if let Some(seed) = env_u64("STRATA_POWER_CUT_SEED") {
        run_seed(seed);
        return;
    }
    let iters = env_u64("STRATA_POWER_CUT_ITERS").unwrap_or(100);
    let base = env_u64("STRATA_POWER_CUT_BASE").unwrap_or(0x5eed_0000);
    for i in 0..iters {
        let seed = base + i;
        if std::panic::catch_unwind(|| run_seed(seed)).is_err() {
            panic!("power-cut seed {seed} failed; replay with STRATA_POWER_CUT_SEED={seed}");
        }
    }
    eprintln!(
        "power loss: {iters} seeds, {} power cuts, {} batches written, {} checks of a durable batch \
         after the cuts that followed it",
        CUTS.load(Relaxed),
        BATCHES.load(Relaxed),
        DURABLE_CHECKED.load(Relaxed)
    );
}

/// Several threads write synced batches through group commit while the power is cut at a
/// random operation. Every batch acknowledged before the cut must survive, and the store
/// must hold exactly the batches up to some seqno, whoever wrote them.
fn run_concurrent_seed(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = Path::new("/db");
    let fs = FaultFs::new();
    let db = open(&fs, dir, SyncMode::Always, 1).unwrap();
    fs.crash_at(
        50 + rng.below(800),
        [Crash::DropUnsynced, Crash::KeepRandom, Crash::TearLastWrite][rng.below(3) as usize],
        Rng::new(rng.next_u64()),
    );
    // (seqno, ops, acknowledged before the cut) of every batch written.
    let written = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let (db, fs, written) = (&db, &fs, &written);
            let mut rng = Rng::new(seed ^ ((t + 1) * 0x9e37));
            s.spawn(move || {
                for i in 0..60 {
                    let mut batch = WriteBatch::new();
                    let mut ops = Vec::new();
                    for j in 0..1 + rng.below(4) {
                        let key = format!("k{:03}", rng.below(40));
                        let value = format!("t{t}-{i}-{j}-{}", "z".repeat(rng.below(150) as usize));
                        batch.put(&key, &value);
                        ops.push((key, Some(value)));
                    }
                    let seq = db.write(batch).unwrap().expect("the batch writes").get();
                    let before_cut = !fs.crashed();
                    CONCURRENT_ACKED.fetch_add(u64::from(before_cut), Relaxed);
                    written.lock().unwrap().push((seq, ops, before_cut));
                }
            });
        }
    });
    let after = fs
        .take_crashed()
        .unwrap_or_else(|| fs.crash(Crash::DropUnsynced, &mut rng));
    drop(db);
    let mut written = written.into_inner().unwrap();
    written.sort_by_key(|(seq, _, _)| *seq);
    let history = History {
        batches: written
            .iter()
            .map(|(seq, ops, _)| Acked {
                last_seq: *seq,
                ops: ops.clone(),
            })
            .collect(),
        durable: 0,
    };
    let db = open(&after, dir, SyncMode::Always, 1)
        .unwrap_or_else(|e| panic!("seed {seed}: open after the cut failed: {e}"));
    let recovered = db.last_seqno().get();
    let acked = written
        .iter()
        .filter(|(_, _, before)| *before)
        .map(|(seq, _, _)| *seq)
        .max()
        .unwrap_or(0);
    assert!(
        recovered >= acked,
        "seed {seed}: recovered {recovered}, acknowledged {acked}"
    );
    assert!(
        recovered == 0 || written.iter().any(|(seq, _, _)| *seq == recovered),
        "seed {seed}: recovered seqno {recovered} is no batch boundary"
    );
    let got = common::contents(&db, &format!("seed {seed}"));
    assert_eq!(got, history.state_at(recovered), "seed {seed}: contents");
}

#[test]
fn power_cuts_under_group_commit_lose_nothing_acknowledged() {
    if let Some(seed) = env_u64("STRATA_POWER_CUT_SEED") {
        run_concurrent_seed(seed);
        return;
    }
    let iters = env_u64("STRATA_POWER_CUT_ITERS").map_or(20, |n| n / 5);
    for i in 0..iters {
        let seed = 0xc0c0_0000 + i;
        if std::panic::catch_unwind(|| run_concurrent_seed(seed)).is_err() {
            panic!(
                "concurrent power-cut seed {seed} failed; replay with STRATA_POWER_CUT_SEED={seed}"
            );
        }
    }
    eprintln!(
        "power loss under group commit: {iters} cuts, {} batches acknowledged before them, \
         all found",
        CONCURRENT_ACKED.load(Relaxed)
    );
}

static CONCURRENT_ACKED: AtomicU64 = AtomicU64::new(0);

// ---- the fault-injecting filesystem itself ----

#[test]
fn fault_fs_drops_unsynced_bytes_and_directory_entries() {
    let fs = FaultFs::new();
    let dir = Path::new("/d");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let mut rng = Rng::new(1);
    let mut a = fs.create(&dir.join("a")).unwrap();
    a.append(b"durable").unwrap();
    a.sync().unwrap();
    fs.sync_dir(dir).unwrap();
    a.append(b"-lost").unwrap();
    let mut b = fs.create(&dir.join("b")).unwrap();
    b.append(b"synced file, unsynced entry").unwrap();
    b.sync().unwrap();
    assert_eq!(&fs.map(&dir.join("a")).unwrap()[..], b"durable-lost");
    let after = fs.crash(Crash::DropUnsynced, &mut rng);
    assert_eq!(&after.map(&dir.join("a")).unwrap()[..], b"durable");
    assert!(after.map(&dir.join("b")).is_err(), "entry was never synced");
    // A rename is durable only after the directory sync.
    fs.rename(&dir.join("a"), &dir.join("c")).unwrap();
    let after = fs.crash(Crash::DropUnsynced, &mut rng);
    assert!(after.map(&dir.join("a")).is_ok() && after.map(&dir.join("c")).is_err());
    fs.sync_dir(dir).unwrap();
    let after = fs.crash(Crash::DropUnsynced, &mut rng);
    assert!(after.map(&dir.join("a")).is_err() && after.map(&dir.join("c")).is_ok());
    assert_eq!(after.list(dir).unwrap().len(), 2);
}

#[test]
fn fault_fs_loses_a_directory_whose_parent_was_not_synced() {
    let fs = FaultFs::new();
    let dir = Path::new("/p/d");
    fs.create_dir_all(dir).unwrap();
    let mut f = fs.create(&dir.join("f")).unwrap();
    f.append(b"x").unwrap();
    f.sync().unwrap();
    fs.sync_dir(dir).unwrap();
    let mut rng = Rng::new(1);
    let after = fs.crash(Crash::DropUnsynced, &mut rng);
    assert!(after.list(dir).is_err() && after.map(&dir.join("f")).is_err());
    fs.sync_dir(Path::new("/")).unwrap();
    let after = fs.crash(Crash::DropUnsynced, &mut rng);
    assert!(after.list(Path::new("/p")).is_ok() && after.list(dir).is_err());
    fs.sync_dir(Path::new("/p")).unwrap();
    let after = fs.crash(Crash::DropUnsynced, &mut rng);
    assert_eq!(&after.map(&dir.join("f")).unwrap()[..], b"x");
}

#[test]
fn a_new_store_survives_a_power_cut_right_after_its_first_synced_write() {
    // Creating the store's directory is durable only once its parent directory is synced;
    // without that, a power cut could take the whole store, acknowledged writes and all.
    let fs = FaultFs::new();
    let dir = Path::new("/stores/new");
    let db = open(&fs, dir, SyncMode::Always, 1).unwrap();
    db.put("k", "v").unwrap();
    let after = fs.crash(Crash::DropUnsynced, &mut Rng::new(7));
    drop(db);
    let db = open(&after, dir, SyncMode::Always, 1).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn fault_fs_tears_the_last_write_and_keeps_random_parts() {
    let fs = FaultFs::new();
    let dir = Path::new("/d");
    fs.create_dir_all(dir).unwrap();
    fs.sync_dir(Path::new("/")).unwrap();
    let mut f = fs.create(&dir.join("f")).unwrap();
    f.append(b"0123").unwrap();
    f.sync().unwrap();
    fs.sync_dir(dir).unwrap();
    f.append(b"4567").unwrap();
    f.append(b"89abcdef").unwrap();
    let mut seen_torn = false;
    let mut seen_partial = false;
    for seed in 0..50 {
        let mut rng = Rng::new(seed);
        let torn = fs.crash(Crash::TearLastWrite, &mut rng);
        let t = torn.map(&dir.join("f")).unwrap();
        assert!(t.starts_with(b"01234567") && b"0123456789abcdef".starts_with(&t));
        seen_torn |= t.len() > 8 && t.len() < 16;
        let random = fs.crash(Crash::KeepRandom, &mut rng);
        let r = random.map(&dir.join("f")).unwrap();
        assert!(r.starts_with(b"0123"));
        seen_partial |= r.len() > 4 && r.len() < 16;
    }
    assert!(seen_torn && seen_partial);
}

#[test]
fn a_current_tmp_left_by_a_crash_does_not_fail_the_next_open() {
    // A crash between writing CURRENT.tmp and renaming it over CURRENT leaves the temporary
    // file behind; the next open must still succeed, with everything intact.
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("k", "v").unwrap();
    db.close().unwrap();
    std::fs::write(dir.path().join("CURRENT.tmp"), b"MANIFEST-0000").unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    db.close().unwrap();
    assert!(!dir.path().join("CURRENT.tmp").exists());
}

#[test]
fn every_cut_during_open_leaves_a_store_that_opens() {
    // Open rewrites the manifest, switches CURRENT, starts a WAL segment and deletes stale
    // files. A power cut at any of those operations, keeping any subset of the directory
    // changes not yet synced, must leave a store that opens with every write intact.
    let dir = Path::new("/db");
    let base = FaultFs::new();
    let db = open(&base, dir, SyncMode::Always, 1).unwrap();
    for i in 0..50 {
        db.put(format!("k{i:03}"), format!("v{i}")).unwrap();
    }
    db.flush().unwrap();
    db.put("tail", "t").unwrap();
    drop(db);
    let mut rng = Rng::new(7);
    // A copy starts counting operations at zero.
    let probe = base.crash(Crash::Process, &mut rng);
    drop(open(&probe, dir, SyncMode::Always, 1).unwrap());
    let open_ops = probe.ops();
    let mut cuts = 0;
    for at in 0..open_ops {
        for seed in 0..6 {
            let fs = base.crash(Crash::Process, &mut rng);
            let mode = [Crash::KeepRandom, Crash::DropUnsynced][seed % 2];
            fs.crash_at(at, mode, Rng::new(seed as u64));
            drop(open(&fs, dir, SyncMode::Always, 1).unwrap());
            let Some(after) = fs.take_crashed() else {
                continue;
            };
            cuts += 1;
            let db = open(&after, dir, SyncMode::Always, 1).unwrap_or_else(|e| {
                panic!("cut at operation {at} of open (seed {seed}): reopen failed: {e}")
            });
            assert_eq!(db.get("k049").unwrap().as_deref(), Some(&b"v49"[..]));
            assert_eq!(db.get("tail").unwrap().as_deref(), Some(&b"t"[..]));
        }
    }
    assert!(cuts > 20, "only {cuts} cuts");
}

#[test]
fn writes_recovered_after_a_process_crash_are_durable_before_new_ones() {
    // A buffered write that reached the operating system but not the disk is replayed by
    // the open after a process crash. Writes acknowledged after that open must not outlive
    // it: a power cut later may not leave a hole where the replayed write was.
    let dir = Path::new("/db");
    let fs = FaultFs::new();
    let db = open(&fs, dir, SyncMode::Buffered, 1).unwrap();
    // Longer than the pre-sized segment, so that no unwritten tail is cut (and synced) on
    // recovery.
    db.put("replayed", "r".repeat(6000)).unwrap();
    let mut rng = Rng::new(3);
    let fs = fs.crash(Crash::Process, &mut rng);
    drop(db);
    let db = open(&fs, dir, SyncMode::Always, 1).unwrap();
    assert!(db.get("replayed").unwrap().is_some());
    db.put("acknowledged", "a").unwrap();
    let fs = fs.crash(Crash::DropUnsynced, &mut rng);
    drop(db);
    let db = open(&fs, dir, SyncMode::Always, 1)
        .unwrap_or_else(|e| panic!("reopen after the power cut failed: {e}"));
    assert_eq!(db.get("acknowledged").unwrap().as_deref(), Some(&b"a"[..]));
    assert!(db.get("replayed").unwrap().is_some());
}
