//! Block compression end to end: compressed and uncompressed tables (and a store written by
//! the previous table format) mixed in one store across reopens, the per-level choice, the
//! bound of the decompressed-block cache, and damage to compressed tables.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::faultfs::FaultFs;
use strata::{Compression, Db, Error, FileSystem, NUM_LEVELS, SyncMode};

/// The codec other than LZ4 this build can use (zstd with the feature, else LZ4 again).
fn other_codec() -> Compression {
    if cfg!(feature = "zstd") {
        Compression::Zstd
    } else {
        Compression::Lz4
    }
}

/// A value that compresses about 2:1, like the benchmarks' values.
fn value(i: u64) -> String {
    let noise: String = (0..25)
        .map(|j| {
            let x = (i * 31 + j * 7) ^ (i >> 3);
            char::from(b'a' + (x.wrapping_mul(2_654_435_761) >> 7) as u8 % 26)
        })
        .collect();
    format!("{noise}{}", "-".repeat(25))
}

fn level_blocks(db: &Db) -> Vec<(u64, u64)> {
    db.stats()
        .levels
        .iter()
        .map(|l| (l.data_blocks, l.compressed_blocks))
        .collect()
}

/// Every level's tables were written with the level's codec: no compressed block in an
/// uncompressed level, and in a compressed one every block but perhaps each table's last,
/// short one. Returns the levels that hold data.
fn check_levels(db: &Db) -> Vec<usize> {
    let stats = db.stats();
    let mut used = Vec::new();
    for (level, l) in stats.levels.iter().enumerate() {
        if l.data_blocks == 0 {
            continue;
        }
        used.push(level);
        if db.config().compression_for(level) == Compression::None {
            assert_eq!(l.compressed_blocks, 0, "level {level}: {l:?}");
        } else {
            assert!(
                l.compressed_blocks > 0 && l.compressed_blocks + l.tables as u64 >= l.data_blocks,
                "level {level}: {l:?}"
            );
        }
    }
    used
}

fn scan(db: &Db) -> BTreeMap<String, String> {
    common::contents(db, "scan")
}

#[test]
fn compressed_and_uncompressed_tables_mix_in_one_store_with_an_older_format() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    // A store written by format version 1 (no compression byte in its block trailers).
    let v1 = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/table-v1-store");
    common::copy_dir(&v1, &dir);
    let mut expected = BTreeMap::new();
    {
        let db = Db::open(&dir).unwrap();
        for i in 0..600u64 {
            let round = i % 2;
            let n = i / 2;
            let v = format!("v1-value-{round}-{n}-{}", "x".repeat((n % 40) as usize));
            expected.insert(format!("key{i:05}"), v);
        }
        expected.remove("key00004");
        assert_eq!(scan(&db), expected, "the version 1 tables read back");
        db.close().unwrap();
    }
    // Then tables of every kind on top: LZ4, the other codec, none.
    for (round, codec) in [Compression::Lz4, other_codec(), Compression::None]
        .into_iter()
        .enumerate()
    {
        let db = Db::builder(&dir)
            .compression(codec)
            .block_bytes(512)
            .sync_mode(SyncMode::Buffered)
            .open()
            .unwrap();
        for i in 0..400u64 {
            let key = format!("key{:05}", i * 3 + round as u64);
            let v = format!("{round}:{}", value(i));
            db.put(&key, &v).unwrap();
            expected.insert(key, v);
        }
        db.delete("key00010").unwrap();
        expected.remove("key00010");
        db.flush().unwrap();
        let l0 = db.stats().levels[0].clone();
        assert!(l0.compressed_blocks > 0 || codec == Compression::None);
        db.close().unwrap();
    }
    let db = Db::open(&dir).unwrap();
    assert_eq!(scan(&db), expected);
    let (blocks, compressed) = level_blocks(&db)[0];
    assert!(
        compressed > 0 && compressed < blocks,
        "{blocks} {compressed}"
    );
    // Gets, forward and backward ranges over the mix.
    for (k, v) in expected.iter().step_by(7) {
        assert_eq!(db.get(k).unwrap().as_deref(), Some(v.as_bytes()), "{k}");
    }
    assert_eq!(db.get("key00010").unwrap(), None);
    let lo = "key00100".to_string();
    let hi = "key00500".to_string();
    let want: Vec<(String, String)> = expected
        .range(lo.clone()..hi.clone())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(common::collect(db.range(lo.clone()..hi.clone())), want);
    let mut back = common::collect(db.range(lo..hi).rev());
    back.reverse();
    assert_eq!(back, want);
    assert!(db.verify().unwrap().is_healthy());
    // A full compaction rewrites everything into one level, with that level's codec (by
    // default none for level 1), and the result reads the same after a reopen.
    db.compact().unwrap();
    check_levels(&db);
    db.close().unwrap();
    let db = Db::open(&dir).unwrap();
    assert_eq!(scan(&db), expected);
    assert!(db.verify().unwrap().is_healthy());
    db.close().unwrap();
}

#[test]
fn each_level_is_written_with_its_own_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let mut levels = [other_codec(); NUM_LEVELS];
    levels[0] = Compression::None;
    levels[1] = Compression::Lz4;
    let db = Db::builder(tmp.path())
        .compression_per_level(levels)
        .block_bytes(1024)
        .l0_limits(2, 20, 40)
        .level_sizes(16 << 10, 2, 8 << 10)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    assert_eq!(db.config().compression, levels);
    let mut expected = BTreeMap::new();
    let mut put_round = |db: &Db, r: u64| {
        for i in 0..500u64 {
            let key = format!("key{:05}", (i * 7 + r) % 3000);
            let v = value(i + r);
            db.put(&key, &v).unwrap();
            expected.insert(key, v);
        }
        db.flush().unwrap();
    };
    // Two flushes reach the level-0 trigger: they are compacted into level 1.
    put_round(&db, 0);
    put_round(&db, 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while db.stats().levels[1].tables == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction into level 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Level 1 is over its small target: compaction pushes data on into level 2 and deeper.
    while db.stats().levels[2..].iter().all(|l| l.tables == 0) {
        assert!(
            std::time::Instant::now() < deadline,
            "no compaction below level 1"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    put_round(&db, 2);
    let used = check_levels(&db);
    assert!(
        used.contains(&0) && used.contains(&1) && used.len() >= 3,
        "{used:?}"
    );
    db.compact().unwrap();
    check_levels(&db);
    assert_eq!(scan(&db), expected);
    db.close().unwrap();
    // The same after a reopen.
    let db = Db::open(tmp.path()).unwrap();
    assert_eq!(scan(&db), expected);
    assert!(db.verify().unwrap().is_healthy());
    db.close().unwrap();
}

#[test]
fn a_table_moved_into_a_level_with_another_codec_is_rewritten_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    // The default codecs: levels 0 and 1 uncompressed, LZ4 below.
    let db = Db::builder(tmp.path())
        .block_bytes(1024)
        .l0_limits(1, 20, 40)
        .level_sizes(16 << 10, 2, 8 << 10)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    assert_eq!(db.config().compression_for(1), Compression::None);
    assert_eq!(db.config().compression_for(2), Compression::Lz4);
    let mut expected = BTreeMap::new();
    // Rounds of ascending, disjoint keys: nothing a table is compacted into overlaps it, so
    // each one could be moved down without rewriting.
    for r in 0..4u64 {
        for i in 0..500u64 {
            let key = format!("key{r}{i:04}");
            db.put(&key, value(i + r)).unwrap();
            expected.insert(key, value(i + r));
        }
        db.flush().unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let st = db.stats();
        let settled = st.levels[0].tables == 0 && st.levels.iter().all(|l| l.score < 1.0);
        if settled && st.levels[2..].iter().any(|l| l.tables > 0) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{:?}", st.levels);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let st = db.stats();
    // Level 0 to level 1 (same codec): moved, never written.
    assert_eq!(st.levels[1].bytes_written, 0, "{:?}", st.levels[1]);
    // Level 1 to level 2 (none to LZ4): rewritten, so level 2 holds LZ4 tables only.
    assert!(st.levels[2].bytes_written > 0, "{:?}", st.levels[2]);
    check_levels(&db);
    assert_eq!(scan(&db), expected);
    db.close().unwrap();
}

#[test]
fn the_block_cache_keeps_to_its_bound_and_saves_decompression() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = 24 << 10;
    let db = Db::builder(tmp.path())
        .compression(Compression::Lz4)
        .block_cache_bytes(cap)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    for i in 0..5000u64 {
        db.put(format!("key{i:05}"), value(i)).unwrap();
    }
    db.flush().unwrap();
    let stats = db.stats();
    let before = stats.block_cache;
    assert_eq!(before.capacity_bytes, cap);
    assert_eq!((before.hits, before.misses, before.blocks), (0, 0, 0));
    // Every open table with compressed blocks has one slot word per data block.
    let blocks: u64 = stats
        .levels
        .iter()
        .filter(|l| l.compressed_blocks > 0)
        .map(|l| l.data_blocks)
        .sum();
    assert!(blocks > 0);
    assert_eq!(before.slot_bytes, 8 * blocks, "{before:?}");
    // Reading everything (about 300 KiB of blocks) goes through far more than the cache
    // can hold: it stays within its bound all along.
    for round in 0..2 {
        for i in (0..5000u64).step_by(3) {
            assert_eq!(
                db.get(format!("key{i:05}")).unwrap().unwrap(),
                value(i).as_bytes()
            );
            if i % 300 == 0 {
                let s = db.stats().block_cache;
                assert!(s.bytes <= cap, "round {round}: {s:?}");
            }
        }
    }
    let after = db.stats().block_cache;
    assert!(after.misses > 50, "{after:?}");
    assert!(after.blocks > 0 && after.bytes <= cap, "{after:?}");
    // A hot key's block is decompressed once, then served from the cache.
    db.get("key04321").unwrap().unwrap();
    let warm = db.stats().block_cache;
    for _ in 0..100 {
        db.get("key04321").unwrap().unwrap();
    }
    let hot = db.stats().block_cache;
    assert_eq!(hot.misses, warm.misses);
    assert_eq!(hot.hits, warm.hits + 100);
    db.close().unwrap();

    // With the cache off every read of a compressed block decompresses it: no hits.
    let db = Db::builder(tmp.path())
        .compression(Compression::Lz4)
        .block_cache_bytes(0)
        .open()
        .unwrap();
    for _ in 0..10 {
        db.get("key04321").unwrap().unwrap();
    }
    let s = db.stats().block_cache;
    assert_eq!((s.hits, s.misses, s.bytes, s.blocks), (0, 10, 0, 0));
    db.close().unwrap();
}

/// Readers on several threads share a block cache far smaller than the blocks they read, so
/// blocks are cached and evicted all the time under them: every get, every scan (some held
/// open across many reads of other threads, reading by reference and by copy) sees exactly
/// what was written, and the cache never exceeds its bound.
#[test]
fn readers_racing_evictions_read_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let cap = 16 << 10;
    let db = Db::builder(tmp.path())
        .compression(Compression::Lz4)
        .block_bytes(512)
        .block_cache_bytes(cap)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    let n = 3000u64;
    for i in 0..n {
        db.put(format!("key{i:05}"), value(i)).unwrap();
        if i % 500 == 499 {
            db.flush().unwrap();
        }
    }
    db.flush().unwrap();
    let tables: usize = db.stats().levels.iter().map(|l| l.tables).sum();
    assert!(tables >= 2, "reads span several tables");
    std::thread::scope(|s| {
        for t in 0..4u64 {
            let db = &db;
            s.spawn(move || {
                let mut x = t * 7919 + 1;
                let mut step = move || {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x
                };
                // A scan held open for the whole loop, read a little at a time.
                let mut held = db.range("key00000"..);
                let mut held_next = 0u64;
                for round in 0..1500 {
                    let i = step() % n;
                    let got = db.get(format!("key{i:05}")).unwrap().unwrap();
                    assert_eq!(got, value(i).as_bytes(), "get of key {i}");
                    if round % 3 == 0 {
                        let start = step() % n;
                        let mut r = db.range(format!("key{start:05}")..);
                        for j in start..(start + 12).min(n) {
                            let (k, v) = r.next_ref().unwrap().unwrap();
                            assert_eq!(k, format!("key{j:05}").as_bytes());
                            assert_eq!(v, value(j).as_bytes(), "scan at key {j}");
                        }
                    }
                    if held_next < n && round % 2 == 0 {
                        let (k, v) = held.next().unwrap().unwrap();
                        assert_eq!(&k[..], format!("key{held_next:05}").as_bytes());
                        assert_eq!(&v[..], value(held_next).as_bytes());
                        held_next += 1;
                    }
                }
                assert!(db.stats().block_cache.bytes <= cap);
            });
        }
    });
    let s = db.stats().block_cache;
    assert!(s.bytes <= cap && s.hits > 0 && s.misses > 1000, "{s:?}");
    db.close().unwrap();
}

const DIR: &str = "/db";

fn open_fault(fs: &Arc<FaultFs>) -> strata::Result<Db> {
    Db::builder(DIR)
        .filesystem(Arc::clone(fs) as Arc<dyn FileSystem>)
        .compression(Compression::Lz4)
        .block_bytes(256)
        .wal_segment_bytes(4096)
        .open()
}

#[test]
fn every_bit_of_a_compressed_table_is_checked() {
    let fs = FaultFs::new();
    let db = open_fault(&fs).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..40u64 {
        let (k, v) = (common::k(i), value(i));
        db.put(&k, &v).unwrap();
        expected.insert(k, v);
    }
    db.flush().unwrap();
    assert!(db.stats().levels[0].compressed_blocks > 3);
    db.close().unwrap();
    let tables = fs.files_named(".sst");
    assert_eq!(tables.len(), 1);
    let table = &tables[0];
    let len = fs.read_file(table).unwrap().len();
    let (mut reported, mut intact) = (0, 0);
    for at in 0..len {
        for bit in 0..8 {
            let copy = fs.fork();
            copy.flip(table, at, 1 << bit);
            let ctx = format!("bit {bit} of byte {at}");
            let got = open_fault(&copy).and_then(|db| {
                let got: strata::Result<BTreeMap<String, String>> = db
                    .iter()
                    .map(|r| {
                        r.map(|(k, v)| {
                            (
                                String::from_utf8_lossy(&k).into_owned(),
                                String::from_utf8_lossy(&v).into_owned(),
                            )
                        })
                    })
                    .collect();
                let verified = db.verify()?;
                db.close()?;
                let got = got?;
                assert!(
                    verified.is_healthy(),
                    "{ctx}: read fine but verify found damage"
                );
                Ok(got)
            });
            match got {
                Ok(got) => {
                    assert_eq!(got, expected, "{ctx}: read without error but wrong");
                    intact += 1;
                }
                Err(Error::Corruption { .. }) => reported += 1,
                Err(e) => panic!("{ctx}: unexpected error {e}"),
            }
        }
    }
    eprintln!("{} flips: {reported} reported, {intact} harmless", len * 8);
    // Every bit of the data blocks, their trailers and the metadata is covered by a
    // checksum: only flips in bytes nothing reads (none in a table) could pass.
    assert_eq!(intact, 0);
}
