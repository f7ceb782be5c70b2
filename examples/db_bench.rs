//! db_bench-style workloads against strata (after LevelDB's `db_bench`).
//!
//! `cargo run --release --example db_bench -- [--num N] [--value-size B] [--benchmarks a,b,..]`
//!
//! Keys are 16 bytes, values 100 bytes by default. The fill workloads write with
//! `SyncMode::Buffered` (as db_bench's default, no fsync per write); `fillsync` and
//! `fillsync8` fsync every write (1 and 8 threads, group commit). Each line prints ops/s,
//! µs/op and the p50/p99 latency of single operations, then the shape of the tree: tables
//! per level, space amplification (bytes on disk over live key and value bytes), write
//! amplification (bytes written to disk over bytes accepted) and the longest write stall.
//!
//! `--values` picks how compressible the written values are, `--compression` and
//! `--block-cache-mib` the store's block compression and decompressed-block cache.
//!
//! Further workloads: `overwrite5x` (random overwrites, five times the key count), `compact`
//! (a full compaction), `readwhilewriting` (readers while one writer overwrites),
//! `flush`, `reopen`.
#![allow(clippy::expect_used)] // a benchmark aborts on the first failure

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use strata::{Compression, Db, SyncMode, WriteBatch};

#[derive(Parser, Debug)]
#[command(about = "db_bench-style workloads on strata")]
struct Args {
    /// Number of keys.
    #[arg(long, default_value_t = 1_000_000)]
    num: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Comma-separated workloads, run in order.
    #[arg(
        long,
        default_value = "fillseq,fillrandom,overwrite,readrandom,readmissing,seekrandom,reopen,fillbatch,fillsync,fillsync8"
    )]
    benchmarks: String,
    /// Directory for the stores (wiped first).
    #[arg(long, default_value = "data/db_bench")]
    dir: PathBuf,
    /// Operations for fillsync/fillsync8 (fsyncs are slow).
    #[arg(long, default_value_t = 20_000)]
    sync_ops: u64,
    /// Operations for read workloads (default: --num).
    #[arg(long)]
    reads: Option<u64>,
    /// Memtable size in MiB (default: the store's default).
    #[arg(long)]
    memtable_mib: Option<usize>,
    /// Entries read after each seek in `seekrandom`.
    #[arg(long, default_value_t = 100)]
    scan_len: usize,
    /// Store reopened by the `open` workload (a subdirectory of --dir).
    #[arg(long, default_value = "fillrandom")]
    store: String,
    /// Values written by fillseq, fillrandom and overwrite: `fixed` (one value of repeated
    /// letters, extremely compressible), `half` (half random letters, half one repeated
    /// byte: about 2:1, like db_bench's --compression_ratio=0.5) or `random` (random bytes).
    #[arg(long, default_value = "fixed")]
    values: String,
    /// Block compression of every level (`none`, `lz4`, `zstd`), or `default` (the
    /// store's per-level default: none for levels 0 and 1, LZ4 below).
    #[arg(long, default_value = "default")]
    compression: String,
    /// Decompressed-block cache in MiB (default: the store's default).
    #[arg(long)]
    block_cache_mib: Option<u64>,
    /// Data block size in bytes (default: the store's default).
    #[arg(long)]
    block_bytes: Option<usize>,
    /// Entries between restart points in data blocks (default: the store's default).
    #[arg(long)]
    restart_interval: Option<usize>,
    /// Level-0 tables that trigger their compaction (default: the store's default). A large
    /// value holds level 0 as a workload found it: `--benchmarks open,seekrandom
    /// --l0-compaction-trigger 1000 --seek-compaction-bytes 0` scans a filled store's level-0
    /// tables and level 1 as they are, with no compaction beside the scans.
    #[arg(long)]
    l0_compaction_trigger: Option<usize>,
    /// Read-triggered compaction charge per level-0 table and scan, in bytes; 0 turns it
    /// off (default: the store's default).
    #[arg(long)]
    seek_compaction_bytes: Option<u64>,
}

/// xorshift64*: a small deterministic generator, enough to pick keys.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn key(i: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    let s = format!("{i:016}");
    k.copy_from_slice(s.as_bytes());
    k
}

struct Report {
    name: &'static str,
    ops: u64,
    elapsed: Duration,
    lat_ns: Vec<u64>,
    note: String,
}

/// Nanoseconds the calling thread has spent on a core (`/proc/thread-self/schedstat`; Linux
/// only): unlike wall time, it does not grow while the thread waits for a busy core.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

impl Report {
    /// Prints the report; `cpu_ns` is the calling thread's time on a core during the
    /// workload, shown per operation next to the wall-clock figures.
    fn print(mut self, cpu_ns: Option<u64>) {
        self.lat_ns.sort_unstable();
        let pct = |p: f64| {
            if self.lat_ns.is_empty() {
                0.0
            } else {
                let i = ((self.lat_ns.len() as f64 - 1.0) * p).round() as usize;
                self.lat_ns[i] as f64 / 1000.0
            }
        };
        let secs = self.elapsed.as_secs_f64();
        let cpu = cpu_ns.map_or_else(String::new, |ns| {
            format!("cpu {:>7.3} µs/op  ", ns as f64 / 1e3 / self.ops as f64)
        });
        println!(
            "{:<12} : {:>10.3} µs/op {:>11.0} ops/s  p50 {:>8.2} µs  p99 {:>8.2} µs  {cpu}{}",
            self.name,
            secs * 1e6 / self.ops as f64,
            self.ops as f64 / secs,
            pct(0.50),
            pct(0.99),
            self.note
        );
    }
}

struct Bench {
    args: Args,
    value: Vec<u8>,
    db: Option<Db>,
    path: PathBuf,
}

impl Bench {
    fn fresh(&mut self, name: &str, sync: SyncMode) -> Db {
        if let Some(db) = self.db.take() {
            db.close().expect("close");
        }
        let path = self.args.dir.join(name);
        let _ = std::fs::remove_dir_all(&path);
        let db = open(&path, sync, &self.args);
        self.path = path;
        self.db = Some(db.clone());
        db
    }

    fn current(&mut self) -> Db {
        match &self.db {
            Some(db) => db.clone(),
            None => {
                eprintln!("no store yet; running fillrandom first");
                self.fill("fillrandom", true).print(None);
                self.current()
            }
        }
    }

    /// The value of the next put (see `--values`).
    fn value_for(&self, rng: &mut Rng) -> Vec<u8> {
        let random_len = match self.args.values.as_str() {
            "fixed" => return self.value.clone(),
            "half" => self.args.value_size / 2,
            "random" => self.args.value_size,
            other => panic!("unknown --values {other}"),
        };
        let mut v = vec![b'x'; self.args.value_size];
        for chunk in v[..random_len].chunks_mut(8) {
            let r = rng.next().to_le_bytes();
            for (b, r) in chunk.iter_mut().zip(r) {
                *b = if self.args.values == "half" {
                    b'a' + r % 26
                } else {
                    r
                };
            }
        }
        v
    }

    fn fill(&mut self, name: &'static str, random: bool) -> Report {
        let db = self.fresh(name, SyncMode::Buffered);
        let n = self.args.num;
        self.write_keys(&db, name, n, random, 1)
    }

    fn write_keys(&self, db: &Db, name: &'static str, n: u64, random: bool, seed: u64) -> Report {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ seed);
        let mut lat = Vec::with_capacity(n as usize);
        let start = Instant::now();
        for i in 0..n {
            let k = if random {
                rng.next() % self.args.num
            } else {
                i
            };
            let value = self.value_for(&mut rng);
            let t = Instant::now();
            db.put(key(k), value).expect("put");
            lat.push(t.elapsed().as_nanos() as u64);
        }
        Report {
            name,
            ops: n,
            elapsed: start.elapsed(),
            lat_ns: lat,
            note: String::new(),
        }
    }
}

/// Bytes of live keys and values (a full scan).
fn live_bytes(db: &Db) -> u64 {
    db.iter()
        .map(|r| r.map(|(k, v)| (k.len() + v.len()) as u64).expect("scan"))
        .sum()
}

/// Bytes the store's files occupy on disk (allocated blocks), plus the bytes its WAL holds:
/// WAL segments are preallocated to their size limit, which says nothing about the data.
fn disk_bytes(dir: &Path, wal_bytes: u64) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let files: u64 = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().contains(".wal"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.blocks() * 512)
                .sum()
        })
        .unwrap_or(0);
    files + wal_bytes
}

fn open(path: &Path, sync: SyncMode, args: &Args) -> Db {
    let mut b = Db::builder(path).sync_mode(sync);
    if let Some(mib) = args.memtable_mib {
        b = b.memtable_bytes(mib << 20);
    }
    match args.compression.as_str() {
        "default" => {}
        "none" => b = b.compression(Compression::None),
        "lz4" => b = b.compression(Compression::Lz4),
        "zstd" => b = b.compression(Compression::Zstd),
        other => panic!("unknown --compression {other}"),
    }
    if let Some(mib) = args.block_cache_mib {
        b = b.block_cache_bytes(mib << 20);
    }
    if let Some(bytes) = args.block_bytes {
        b = b.block_bytes(bytes);
    }
    if let Some(n) = args.restart_interval {
        b = b.block_restart_interval(n);
    }
    if let Some(n) = args.l0_compaction_trigger {
        let slowdown = n.max(12);
        b = b.l0_limits(n, slowdown, slowdown * 2);
    }
    if let Some(bytes) = args.seek_compaction_bytes {
        b = b.seek_compaction_bytes(bytes);
    }
    b.open().expect("open")
}

fn main() {
    let args = Args::parse();
    let value: Vec<u8> = (0..args.value_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    std::fs::create_dir_all(&args.dir).expect("create bench dir");
    println!(
        "strata db_bench: {} keys, 16-byte keys, {}-byte values, memtable {} MiB",
        args.num,
        args.value_size,
        args.memtable_mib
            .unwrap_or(strata::Config::default().memtable_bytes >> 20)
    );
    let names: Vec<String> = args
        .benchmarks
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let mut b = Bench {
        args,
        value,
        db: None,
        path: PathBuf::new(),
    };
    for name in names {
        let cpu_start = thread_cpu_ns();
        let since = std::time::SystemTime::now();
        let report = match name.as_str() {
            "fillseq" => b.fill("fillseq", false),
            "fillrandom" => b.fill("fillrandom", true),
            "overwrite" => {
                let db = b.current();
                let n = b.args.num;
                b.write_keys(&db, "overwrite", n, true, 7)
            }
            "overwrite5x" => {
                let db = b.current();
                let n = b.args.num * 5;
                b.write_keys(&db, "overwrite5x", n, true, 11)
            }
            "compact" => {
                let db = b.current();
                let start = Instant::now();
                let run = db.compact().expect("compact");
                let elapsed = start.elapsed();
                Report {
                    name: "compact",
                    ops: 1,
                    elapsed,
                    lat_ns: vec![elapsed.as_nanos() as u64],
                    note: format!(
                        "({} tables in, {} out, {:.1} MiB read, {:.1} MiB written, {} entries dropped)",
                        run.tables_in,
                        run.tables_out,
                        run.bytes_in as f64 / (1 << 20) as f64,
                        run.bytes_out as f64 / (1 << 20) as f64,
                        run.entries_dropped
                    ),
                }
            }
            "readwhilewriting" => {
                let db = b.current();
                let n = b.args.reads.unwrap_or(b.args.num);
                let readers = 2u64;
                let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
                let writer = {
                    let db = db.clone();
                    let stop = Arc::clone(&stop);
                    let value = b.value.clone();
                    let num = b.args.num;
                    std::thread::spawn(move || {
                        let mut rng = Rng(77);
                        let mut writes = 0u64;
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            db.put(key(rng.next() % num), &value).expect("put");
                            writes += 1;
                        }
                        writes
                    })
                };
                let start = Instant::now();
                let handles: Vec<_> = (0..readers)
                    .map(|t| {
                        let db = db.clone();
                        let num = b.args.num;
                        std::thread::spawn(move || {
                            let mut rng = Rng(500 + t);
                            let mut lat = Vec::new();
                            for _ in 0..n / readers {
                                let tt = Instant::now();
                                db.get(key(rng.next() % num)).expect("get");
                                lat.push(tt.elapsed().as_nanos() as u64);
                            }
                            lat
                        })
                    })
                    .collect();
                let lat: Vec<u64> = handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("join"))
                    .collect();
                let elapsed = start.elapsed();
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                let writes = writer.join().expect("join");
                Report {
                    name: "readwhilewriting",
                    ops: lat.len() as u64,
                    elapsed,
                    lat_ns: lat,
                    note: format!(
                        "({readers} readers; 1 writer did {:.0} writes/s meanwhile)",
                        writes as f64 / elapsed.as_secs_f64()
                    ),
                }
            }
            "readrandom" | "readmissing" => {
                let db = b.current();
                let missing = name == "readmissing";
                let n = b.args.reads.unwrap_or(b.args.num);
                let mut rng = Rng(42);
                let mut found = 0u64;
                let mut lat = Vec::with_capacity(n as usize);
                let start = Instant::now();
                for _ in 0..n {
                    let i = rng.next() % b.args.num;
                    let t = Instant::now();
                    let hit = if missing {
                        let mut k = key(i).to_vec();
                        k.push(b'.');
                        db.get(&k).expect("get")
                    } else {
                        db.get(key(i)).expect("get")
                    };
                    lat.push(t.elapsed().as_nanos() as u64);
                    found += u64::from(hit.is_some());
                }
                Report {
                    name: if missing { "readmissing" } else { "readrandom" },
                    ops: n,
                    elapsed: start.elapsed(),
                    lat_ns: lat,
                    note: format!("({found} of {n} found)"),
                }
            }
            "seekrandom" => {
                let db = b.current();
                let n = (b.args.reads.unwrap_or(b.args.num) / 10).max(1);
                let mut rng = Rng(43);
                let mut lat = Vec::with_capacity(n as usize);
                let mut entries = 0u64;
                let start = Instant::now();
                for _ in 0..n {
                    let i = rng.next() % b.args.num;
                    let t = Instant::now();
                    // Entries are lent, as LevelDB's iterator lends them.
                    let mut range = db.range(key(i)..);
                    for _ in 0..b.args.scan_len {
                        let Some(item) = range.next_ref() else { break };
                        std::hint::black_box(item.expect("scan"));
                        entries += 1;
                    }
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                Report {
                    name: "seekrandom",
                    ops: n,
                    elapsed: start.elapsed(),
                    lat_ns: lat,
                    note: format!("(seek + {} nexts; {entries} entries read)", b.args.scan_len),
                }
            }
            "fillbatch" => {
                let db = b.fresh("fillbatch", SyncMode::Buffered);
                let n = b.args.num;
                let mut rng = Rng(5);
                let mut lat = Vec::new();
                let start = Instant::now();
                let mut i = 0;
                while i < n {
                    let mut batch = WriteBatch::new();
                    for _ in 0..100.min(n - i) {
                        batch.put(key(rng.next() % b.args.num), &b.value);
                    }
                    i += batch.len() as u64;
                    let t = Instant::now();
                    db.write(batch).expect("write");
                    lat.push(t.elapsed().as_nanos() as u64);
                }
                Report {
                    name: "fillbatch",
                    ops: n,
                    elapsed: start.elapsed(),
                    lat_ns: lat,
                    note: "(items/s; batches of 100, latency per batch)".into(),
                }
            }
            "fillsync" => {
                let db = b.fresh("fillsync", SyncMode::Always);
                let n = b.args.sync_ops;
                let mut r = b.write_keys(&db, "fillsync", n, true, 3);
                r.note = "(fsync per write, 1 thread)".into();
                r
            }
            "fillsync8" => {
                let db = b.fresh("fillsync8", SyncMode::Always);
                let n = b.args.sync_ops;
                let threads = 8;
                let value = Arc::new(b.value.clone());
                let start = Instant::now();
                let handles: Vec<_> = (0..threads)
                    .map(|t| {
                        let db = db.clone();
                        let value = Arc::clone(&value);
                        let num = b.args.num;
                        std::thread::spawn(move || {
                            let mut rng = Rng(100 + t);
                            let mut lat = Vec::new();
                            for _ in 0..n / threads {
                                let tt = Instant::now();
                                db.put(key(rng.next() % num), &*value).expect("put");
                                lat.push(tt.elapsed().as_nanos() as u64);
                            }
                            lat
                        })
                    })
                    .collect();
                let lat: Vec<u64> = handles
                    .into_iter()
                    .flat_map(|h| h.join().expect("join"))
                    .collect();
                let s = db.stats();
                Report {
                    name: "fillsync8",
                    ops: lat.len() as u64,
                    elapsed: start.elapsed(),
                    lat_ns: lat,
                    note: format!(
                        "(fsync per commit group, 8 threads; {:.1} writes per group)",
                        s.batches as f64 / s.write_groups.max(1) as f64
                    ),
                }
            }
            "open" => {
                // Reopen the store a previous run left in `<dir>/<store>`, without wiping it.
                if let Some(db) = b.db.take() {
                    db.close().expect("close");
                }
                let path = b.args.dir.join(&b.args.store);
                let start = Instant::now();
                let db = open(&path, SyncMode::Buffered, &b.args);
                let elapsed = start.elapsed();
                b.path = path;
                b.db = Some(db);
                Report {
                    name: "open",
                    ops: 1,
                    elapsed,
                    lat_ns: vec![elapsed.as_nanos() as u64],
                    note: "(existing store)".into(),
                }
            }
            "flush" => {
                let db = b.current();
                let start = Instant::now();
                db.flush().expect("flush");
                let elapsed = start.elapsed();
                Report {
                    name: "flush",
                    ops: 1,
                    elapsed,
                    lat_ns: vec![elapsed.as_nanos() as u64],
                    note: "(memtable written to a table)".into(),
                }
            }
            "reopen" => {
                let db = b.current();
                let path = b.path.clone();
                db.close().expect("close");
                b.db = None;
                let start = Instant::now();
                let db = open(&path, SyncMode::Buffered, &b.args);
                let elapsed = start.elapsed();
                let rec = db.stats().recovery;
                b.db = Some(db);
                Report {
                    name: "reopen",
                    ops: 1,
                    elapsed,
                    lat_ns: vec![elapsed.as_nanos() as u64],
                    note: format!(
                        "({} WAL writes replayed from {} segment(s))",
                        rec.writes_replayed, rec.segments_replayed
                    ),
                }
            }
            other => {
                eprintln!("unknown benchmark {other}");
                continue;
            }
        };
        let cpu = thread_cpu_ns()
            .zip(cpu_start)
            .map(|(end, start)| end.saturating_sub(start));
        report.print(cpu);
        if let Some(db) = &b.db {
            let s = db.stats();
            let tables: Vec<String> = s.levels.iter().map(|l| l.tables.to_string()).collect();
            let live = live_bytes(db);
            let disk = disk_bytes(&b.path, s.wal_bytes);
            println!(
                "{:<12}   tables [{}], {:.1} MiB on disk, space amp {:.2}, write amp {:.2}, read amp {}, {} WAL seg, stalls {} / slowdowns {} / stops {}, longest {:.1} ms",
                "",
                tables.join(" "),
                disk as f64 / (1 << 20) as f64,
                disk as f64 / live.max(1) as f64,
                s.write_amplification,
                s.read_amplification,
                s.wal_segments,
                s.write_stalls,
                s.write_slowdowns,
                s.write_stops,
                s.longest_stall_micros as f64 / 1000.0
            );
            let compressed: Vec<String> = s
                .levels
                .iter()
                .map(|l| format!("{}/{}", l.compressed_blocks, l.data_blocks))
                .collect();
            let c = s.block_cache;
            println!(
                "{:<12}   compressed blocks per level [{}], block cache {:.1} of {:.0} MiB, {} hits / {} misses",
                "",
                compressed.join(" "),
                c.bytes as f64 / (1 << 20) as f64,
                c.capacity_bytes as f64 / (1 << 20) as f64,
                c.hits,
                c.misses
            );
            for run in db.compaction_status().history {
                if run.started_at + run.duration >= since {
                    println!(
                        "{:<12}   compaction ({:?}): {} tables in, {} out, {:.1} MiB read in {:.0} ms (finished in this run)",
                        "",
                        run.reason,
                        run.tables_in,
                        run.tables_out,
                        run.bytes_in as f64 / (1 << 20) as f64,
                        run.duration.as_secs_f64() * 1e3
                    );
                }
            }
        }
    }
    if let Some(db) = b.db.take() {
        db.close().expect("close");
    }
}
