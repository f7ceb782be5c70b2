//! Criterion micro-benchmarks of the public API, one operation at a time, on a store small
//! enough to stay in memory: where `examples/db_bench.rs` measures whole workloads on 1M
//! keys, these isolate the cost of one call from each layer (memtable, tables, batch, scan).
//!
//! `cargo bench --bench db` runs them; `cargo bench --bench db -- get` runs a subset.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark that fails should stop

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use strata::{Db, SyncMode, WriteBatch};

/// Keys in the prepared stores.
const KEYS: u64 = 100_000;

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k.copy_from_slice(format!("{i:016}").as_bytes());
    k
}

/// A key that is not stored but sorts among the stored ones: `key(i)` with its last digit
/// replaced by a letter, which falls between `key(i)` and `key(i + 10)`.
fn missing_key(i: u64) -> [u8; 16] {
    let mut k = key(i);
    k[15] = b'x';
    k
}

/// xorshift64*, enough to pick keys.
fn next(state: &mut u64) -> u64 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    state.wrapping_mul(0x2545_f491_4f6c_dd1d)
}

/// A store holding `KEYS` keys with 100-byte values, in tables (`flushed`) or in the memtable.
fn store(dir: &std::path::Path, flushed: bool) -> Db {
    let db = Db::builder(dir)
        .sync_mode(SyncMode::Buffered)
        .memtable_bytes(64 << 20)
        .open()
        .unwrap();
    let mut batch = WriteBatch::new();
    for i in 0..KEYS {
        batch.put(key(i), [b'v'; 100]);
        if batch.len() == 1000 {
            db.write(std::mem::take(&mut batch)).unwrap();
        }
    }
    db.write(batch).unwrap();
    if flushed {
        db.compact().unwrap();
    }
    db
}

fn writes(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    let mut g = c.benchmark_group("write");
    let mut rng = 7u64;
    g.bench_function("put_buffered", |b| {
        b.iter(|| db.put(key(next(&mut rng) % KEYS), [b'v'; 100]).unwrap())
    });
    g.throughput(Throughput::Elements(100));
    g.bench_function("batch_of_100_buffered", |b| {
        b.iter_batched(
            || {
                let mut batch = WriteBatch::new();
                for _ in 0..100 {
                    batch.put(key(next(&mut rng) % KEYS), [b'v'; 100]);
                }
                batch
            },
            |batch| db.write(batch).unwrap(),
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

fn reads(c: &mut Criterion) {
    for (name, flushed) in [("memtable", false), ("tables", true)] {
        let dir = tempfile::tempdir().unwrap();
        let db = store(dir.path(), flushed);
        let mut g = c.benchmark_group(format!("read_{name}"));
        let mut rng = 11u64;
        g.bench_function("get_hit", |b| {
            b.iter(|| black_box(db.get(key(next(&mut rng) % KEYS)).unwrap()))
        });
        g.bench_function("get_missing", |b| {
            b.iter(|| black_box(db.get(missing_key(next(&mut rng) % KEYS)).unwrap()))
        });
        g.throughput(Throughput::Elements(100));
        g.bench_function("seek_and_next_100", |b| {
            b.iter(|| {
                let from = key(next(&mut rng) % KEYS);
                for item in db.range(from..).take(100) {
                    black_box(item.unwrap());
                }
            })
        });
        g.bench_function("seek_and_next_100_lent", |b| {
            b.iter(|| {
                let mut range = db.range(key(next(&mut rng) % KEYS)..);
                for _ in 0..100 {
                    let Some(item) = range.next_ref() else { break };
                    black_box(item.unwrap());
                }
            })
        });
        g.finish();
    }
}

criterion_group!(benches, writes, reads);
criterion_main!(benches);
