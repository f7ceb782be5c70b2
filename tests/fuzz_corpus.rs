//! Fuzz corpus replay: every committed seed and every input that once crashed a fuzz target
//! runs through the same decoder entry points the fuzzers use, on a normal `cargo test`.
//!
//! The seeds are real files written by the engine, plus torn and bit-flipped copies; the
//! ignored test `write_seed_corpus` regenerates them.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use strata::fuzzing::{self, MANIFEST_MAGIC, TARGETS, WAL_MAGIC};
use strata::{Compression, Db, SyncMode, WriteBatch};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

#[test]
fn every_corpus_file_replays_through_its_target() {
    let mut total = 0;
    for (name, target) in TARGETS {
        let dir = fuzz_dir().join("seeds").join(name);
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        assert!(files.len() >= 3, "{name}: only {} seeds", files.len());
        for file in files {
            let data = std::fs::read(&file).unwrap();
            let run = std::panic::catch_unwind(|| target(&data));
            assert!(run.is_ok(), "{name} panicked on {}", file.display());
            total += 1;
        }
    }
    assert!(total >= 3 * TARGETS.len());
}

#[test]
fn every_target_has_a_fuzz_binary() {
    let manifest = std::fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    let listed: BTreeSet<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .filter_map(|l| l.strip_suffix('"'))
        .filter(|n| *n != "strata-fuzz")
        .collect();
    let targets: BTreeSet<&str> = TARGETS.iter().map(|(n, _)| *n).collect();
    assert_eq!(listed, targets);
    for name in targets {
        let src = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&src).unwrap();
        assert!(
            text.contains(&format!("strata::fuzzing::{name}(")),
            "{name}"
        );
    }
}

/// Writes a small store into `dir`: several WAL records (one spanning a block boundary), a
/// few flushed tables (their data blocks compressed with `compression`) and a manifest with
/// several edits.
fn write_store(dir: &Path, compression: Compression) {
    let db = Db::builder(dir)
        .compression(compression)
        .block_bytes(256)
        .history_versions(3)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    for round in 0..3u32 {
        for i in 0..40u32 {
            let key = format!("key{:04}", (i * 7 + round) % 50);
            if i % 9 == 4 {
                db.delete(&key).unwrap();
            } else {
                db.put(&key, format!("value-{round}-{i}")).unwrap();
            }
        }
        db.flush().unwrap();
    }
    let mut batch = WriteBatch::new();
    batch.put("big", vec![b'x'; 40 << 10]).delete("key0001");
    db.write(batch).unwrap();
    for i in 0..5u32 {
        let mut batch = WriteBatch::new();
        for j in 0..i {
            batch
                .put(format!("tail{i}-{j}"), "t")
                .delete(format!("gone{j}"));
        }
        batch.put(format!("tail{i}"), vec![b'v'; 1 << (2 * i)]);
        db.write(batch).unwrap();
    }
    db.close().unwrap();
}

fn files_with(dir: &Path, pred: impl Fn(&str) -> bool) -> Vec<Vec<u8>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| pred(n))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| std::fs::read(dir.join(n)).unwrap())
        .collect()
}

/// Torn and bit-flipped copies of `data`.
fn variants(data: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let mut out = vec![("torn", data[..data.len() / 2].to_vec())];
    if data.len() > 8 {
        out.push(("torn-tail", data[..data.len() - 3].to_vec()));
        for (tag, at) in [("flip-head", data.len() / 7), ("flip-tail", data.len() - 5)] {
            let mut v = data.to_vec();
            v[at] ^= 0x10;
            out.push((tag, v));
        }
    }
    out
}

/// Regenerates `fuzz/seeds/`: `cargo test --test fuzz_corpus -- --ignored`.
#[test]
#[ignore = "rewrites the committed seed corpus"]
fn write_seed_corpus() {
    let tmp = tempfile::tempdir().unwrap();
    write_store(tmp.path(), Compression::None);
    let mut packed_tables = Vec::new();
    for codec in [Compression::Lz4, Compression::Zstd] {
        if codec != Compression::Lz4 && cfg!(not(feature = "zstd")) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        write_store(dir.path(), codec);
        let tables = files_with(dir.path(), |n| n.ends_with(".sst"));
        packed_tables.push((codec, tables));
    }
    let wals = files_with(tmp.path(), |n| n.ends_with(".wal"));
    let tables = files_with(tmp.path(), |n| n.ends_with(".sst"));
    let manifests = files_with(tmp.path(), |n| n.starts_with("MANIFEST-"));
    let wal = wals.iter().max_by_key(|w| w.len()).unwrap();
    let records = fuzzing::log_records(wal, WAL_MAGIC);
    // A live segment is pre-sized: its written part is followed by unwritten zeros.
    let mut wal = wal.clone();
    wal.resize(wal.len() + 64, 0);
    let wal = &wal[..];
    let manifest = &manifests[0];
    let blocks: Vec<Vec<u8>> = tables
        .iter()
        .flat_map(|t| fuzzing::table_blocks(t))
        .collect();

    let mut seeds: Vec<(&str, String, Vec<u8>)> = Vec::new();
    let mut add = |target: &'static str, name: String, data: &[u8], mutate: bool| {
        if mutate {
            for (tag, v) in variants(data) {
                seeds.push((target, format!("{name}-{tag}"), v));
            }
        }
        seeds.push((target, name, data.to_vec()));
    };
    add("wal_segment", "segment".into(), wal, true);
    for (i, r) in records.iter().filter(|r| r.len() < 4096).enumerate() {
        add("wal_record", format!("record{i}"), r, i == 0);
    }
    for (i, t) in tables.iter().enumerate() {
        add("sst_table", format!("table{i}"), t, i == 0);
    }
    for (codec, tables) in &packed_tables {
        for (i, t) in tables.iter().enumerate().take(2) {
            add("sst_table", format!("table-{codec}{i}"), t, i == 0);
        }
        let inputs: Vec<Vec<u8>> = tables
            .iter()
            .flat_map(|t| fuzzing::compressed_block_inputs(t))
            .collect();
        assert!(!inputs.is_empty(), "{codec}: no compressed blocks");
        for (i, b) in inputs.iter().take(4).enumerate() {
            add("compressed_block", format!("{codec}{i}"), b, i == 0);
        }
    }
    let filters = blocks.iter().filter(|b| is_filter(b));
    for (i, b) in filters.take(3).enumerate() {
        add("filter", format!("filter{i}"), b, i == 0);
    }
    for (i, b) in blocks.iter().filter(|b| !is_filter(b)).take(8).enumerate() {
        add("sst_block", format!("block{i}"), b, i == 0);
    }
    add("manifest", "manifest".into(), manifest, true);
    for (i, e) in fuzzing::log_records(manifest, MANIFEST_MAGIC)
        .iter()
        .enumerate()
    {
        add("manifest_edit", format!("edit{i}"), e, i == 0);
    }
    for (target, _) in TARGETS {
        let dir = fuzz_dir().join("seeds").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            // Inputs that once crashed a target and files of older formats stay; generated
            // seeds are rewritten.
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if !name.starts_with("crash-") && !name.contains("v1") {
                std::fs::remove_file(p).unwrap();
            }
        }
    }
    for (target, name, data) in seeds {
        std::fs::write(fuzz_dir().join("seeds").join(target).join(name), data).unwrap();
    }
}

/// A filter block ends with `num_probes: u8 | num_lines: u32` and holds 64 bytes a line.
fn is_filter(b: &[u8]) -> bool {
    b.len() >= 5
        && b[b.len() - 5] <= 30
        && u32::from_le_bytes(b[b.len() - 4..].try_into().unwrap()) as usize * 64 == b.len() - 5
}
