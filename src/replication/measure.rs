//! Append + fsync cost of the two log-store candidates.
#![allow(clippy::unwrap_used)]
// Log keys are big-endian so that they sort by index.
#![allow(clippy::big_endian_bytes)]

use std::time::Instant;

use crate::fs::{FileSystem, StdFs};
use crate::wal::format::{FileHeader, WAL_MAGIC};
use crate::wal::writer::LogWriter;
use crate::{Db, SyncMode, WriteBatch};

fn entries(n: usize, size: usize) -> Vec<Vec<u8>> {
    (0..n).map(|i| vec![(i % 251) as u8; size]).collect()
}

#[test]
#[ignore]
fn measure_log_candidates() {
    let rounds = 400;
    for (n, size) in [(1usize, 120usize), (1, 12_000), (16, 120), (64, 1_200)] {
        let ents = entries(n, size);
        // A: a dedicated log file with the WAL framing, preallocated, one fsync per batch.
        let dir = tempfile::tempdir().unwrap();
        let fs = StdFs;
        let path = dir.path().join("000001.log");
        let f = fs.create(&path).unwrap();
        let mut w = LogWriter::new(
            f,
            &FileHeader {
                magic: WAL_MAGIC,
                version: crate::wal::format::WAL_FORMAT_VERSION,
                file_number: 1,
                prev_number: 0,
            },
        )
        .unwrap();
        w.preallocate(64 << 20).unwrap();
        w.sync().unwrap();
        let t = Instant::now();
        let cpu0 = cpu();
        for r in 0..rounds {
            for (i, e) in ents.iter().enumerate() {
                let mut rec = ((r * n + i) as u64).to_le_bytes().to_vec();
                rec.extend_from_slice(e);
                w.add_record(&rec).unwrap();
            }
            w.sync().unwrap();
        }
        let a = t.elapsed() / rounds as u32;
        let a_cpu = (cpu() - cpu0) / rounds as f64;
        // B: a second strata Db, SyncMode::Always, one WriteBatch per append.
        let dir = tempfile::tempdir().unwrap();
        let db = Db::builder(dir.path())
            .sync_mode(SyncMode::Always)
            .open()
            .unwrap();
        let t = Instant::now();
        let cpu0 = cpu();
        for r in 0..rounds {
            let mut b = WriteBatch::new();
            for (i, e) in ents.iter().enumerate() {
                b.put(((r * n + i) as u64).to_be_bytes(), e);
            }
            db.write(b).unwrap();
        }
        db.flush().unwrap();
        let b = t.elapsed() / rounds as u32;
        let b_cpu = (cpu() - cpu0) / rounds as f64;
        println!(
            "batch of {n} x {size} B: log file {a:?} ({:.0} us cpu), second Db {b:?} ({:.0} us cpu, flush included)",
            a_cpu * 1e6,
            b_cpu * 1e6
        );
    }
}

/// Process CPU seconds (user + system) from /proc/self/stat.
fn cpu() -> f64 {
    let s = std::fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &s[s.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split(' ').collect();
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    ticks / 100.0
}
