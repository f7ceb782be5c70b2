//! Checkpoint and backup of a large store while a writer runs: time, size, and the writer's
//! throughput before and during each.
//!
//! ```sh
//! cargo run --release --example ops_bench -- --dir /tmp/ops_bench --keys 1000000
//! ```
//!
//! Fills `DIR/live` with `--keys` keys (16-byte keys, 100-byte values, as db_bench) if it is
//! empty, then runs one writer thread (buffered overwrites of those keys, in a scattered
//! order, so the store keeps its key count) for a baseline, during a
//! checkpoint, and during a backup (a checkpoint streamed as an archive to a file).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use strata::{Db, StdFs, SyncMode, WriteBatch};

#[derive(Parser)]
struct Args {
    /// Working directory (the store goes to DIR/live)
    #[arg(long, default_value = "data/ops_bench")]
    dir: PathBuf,
    /// Keys to fill the store with
    #[arg(long, default_value_t = 1_000_000)]
    keys: u64,
    /// Seconds of the baseline write phase
    #[arg(long, default_value_t = 3)]
    baseline_secs: u64,
}

fn value(i: u64) -> Vec<u8> {
    let mut v = format!("{i:020}").into_bytes();
    v.resize(100, b'x');
    v
}

fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

/// Runs `f` while a writer puts keys; returns f's result and the writer's ops/s meanwhile.
fn with_writer<T>(
    db: &Db,
    keys: u64,
    next: &Arc<AtomicU64>,
    f: impl FnOnce() -> T,
) -> (T, f64, Duration) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (db, stop, done, next) = (db.clone(), stop.clone(), done.clone(), next.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % keys.max(1);
                db.put(format!("{k:016}"), value(i)).unwrap();
                done.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let before = done.load(Ordering::Relaxed);
    let start = Instant::now();
    let out = f();
    let took = start.elapsed();
    let n = done.load(Ordering::Relaxed) - before;
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    (out, n as f64 / took.as_secs_f64(), took)
}

fn main() {
    let args = Args::parse();
    let live = args.dir.join("live");
    let db = Db::builder(&live)
        .sync_mode(SyncMode::Buffered)
        .open()
        .unwrap();
    if db.last_seqno().get() < args.keys {
        let start = Instant::now();
        let mut b = WriteBatch::new();
        for i in 0..args.keys {
            b.put(format!("{i:016}"), value(i));
            if b.len() == 1000 {
                db.write(std::mem::take(&mut b)).unwrap();
            }
        }
        db.write(b).unwrap();
        db.flush().unwrap();
        println!(
            "filled {} keys in {:.1} s",
            args.keys,
            start.elapsed().as_secs_f64()
        );
    }
    let s = db.stats();
    let table_bytes: u64 = s.levels.iter().map(|l| l.bytes).sum();
    println!(
        "store: {} keys, {} tables, {:.1} MiB of tables, memtable {:.1} MiB",
        s.levels.iter().map(|l| l.entries).sum::<u64>(),
        s.levels.iter().map(|l| l.tables).sum::<usize>(),
        table_bytes as f64 / 1048576.0,
        s.memtable_bytes as f64 / 1048576.0
    );
    let next = Arc::new(AtomicU64::new(0));
    let (_, base, _) = with_writer(&db, args.keys, &next, || {
        std::thread::sleep(Duration::from_secs(args.baseline_secs))
    });
    println!("writer alone: {base:.0} puts/s");

    for n in 0.. {
        let cp_dir = args.dir.join(format!("checkpoint-{n}"));
        let bak = args.dir.join(format!("backup-{n}.bak"));
        if cp_dir.exists() || bak.exists() {
            continue;
        }
        let (cp, rate, took) =
            with_writer(&db, args.keys, &next, || db.checkpoint(&cp_dir).unwrap());
        println!(
            "checkpoint: {:.3} s at seqno {}, {} tables ({} linked), {:.1} MiB in all, {:.1} MiB written ({} memtable entries); writer meanwhile {rate:.0} puts/s",
            took.as_secs_f64(),
            cp.seqno,
            cp.tables,
            cp.linked,
            cp.bytes as f64 / 1048576.0,
            cp.bytes_written as f64 / 1048576.0,
            cp.memtable_entries
        );
        let backup_cp = args.dir.join(format!("backup-checkpoint-{n}"));
        let ((summary, size), rate, took) = with_writer(&db, args.keys, &next, || {
            let cp = db.checkpoint(&backup_cp).unwrap();
            let file = std::fs::File::create(&bak).unwrap();
            let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
            let s = strata::backup::write_archive(
                &StdFs,
                &cp.dir,
                cp.seqno.get(),
                &mut w,
                &mut |_, _| {},
            )
            .unwrap();
            let file = w.into_inner().unwrap();
            file.sync_all().unwrap();
            (s, dir_size(&backup_cp))
        });
        println!(
            "backup: {:.3} s at seqno {}, {} files, archive {:.1} MiB (checkpoint {:.1} MiB); writer meanwhile {rate:.0} puts/s",
            took.as_secs_f64(),
            summary.seqno,
            summary.files,
            std::fs::metadata(&bak).unwrap().len() as f64 / 1048576.0,
            size as f64 / 1048576.0
        );
        break;
    }
    db.close().unwrap();
}
