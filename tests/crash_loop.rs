//! Crash loop: a child process writes batches and reports each acknowledgement on its
//! stdout; the parent kills it with SIGKILL at a random moment (in the middle of writes,
//! flushes, background and manual compactions, and the open itself), reopens the store and
//! checks that every acknowledged batch is there and that the contents are exactly those of
//! a prefix of the batch sequence. It runs once with synced writes and once with buffered
//! ones: a process crash loses neither, as buffered writes are in the operating system's
//! hands when acknowledged (whether through `write(2)` or the WAL segment's map).
//!
//! `STRATA_CRASH_CYCLES=1000 cargo test --release --test crash_loop` runs a long loop;
//! `STRATA_CRASH_SEED=<n>` repeats a run's kill timings.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::faultfs::Rng;
use strata::{Db, SyncMode, WriteBatch};

/// Set in the child's environment: the store directory.
const CHILD_DIR: &str = "STRATA_CRASH_CHILD_DIR";
/// Set in the child's environment: `buffered` for buffered writes, else synced ones.
const CHILD_SYNC: &str = "STRATA_CRASH_CHILD_SYNC";
/// The key holding the number of batches written so far.
const NEXT: &str = "meta:next";
/// Pause between two batches of the child.
const PACE: Duration = Duration::from_micros(250);
/// A child that is never killed stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);

fn open(dir: &Path, mode: SyncMode) -> Db {
    // Small levels, so that background compactions run all the time.
    Db::builder(dir)
        .memtable_bytes(64 << 10)
        .wal_segment_bytes(32 << 10)
        .block_bytes(1024)
        .l0_limits(2, 8, 16)
        .level_sizes(256 << 10, 4, 64 << 10)
        .sync_mode(mode)
        .open()
        .unwrap()
}

/// The operations of batch `i`: a put whose value size varies, a delete every third
/// batch, and the batch counter.
fn batch_ops(i: u64) -> Vec<(String, Option<String>)> {
    let mut ops = vec![(
        format!("k{:03}", (i * 7919) % 400),
        Some(format!("v{i}-{}", "p".repeat((i % 13) as usize * 40))),
    )];
    if i.is_multiple_of(3) {
        ops.push((format!("k{:03}", (i * 31) % 400), None));
    }
    ops.push((NEXT.to_string(), Some((i + 1).to_string())));
    ops
}

/// Runs in the child process: writes batches until killed.
#[test]
#[ignore = "the child process of the crash loop; started by it"]
fn crash_loop_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let mode = match std::env::var(CHILD_SYNC).as_deref() {
        Ok("buffered") => SyncMode::Buffered,
        _ => SyncMode::Always,
    };
    let db = open(Path::new(&dir), mode);
    let mut next: u64 = db
        .get(NEXT)
        .unwrap()
        .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap());
    let mut out = std::io::stdout().lock();
    // The test harness may have printed the test's name without a line break.
    report(&mut out, &format!("\nopen {next}"));
    let started = Instant::now();
    while started.elapsed() < CHILD_LIFETIME {
        let mut batch = WriteBatch::new();
        for (k, v) in batch_ops(next) {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            };
        }
        db.write(batch).unwrap();
        report(&mut out, &format!("ack {next}"));
        next += 1;
        if next.is_multiple_of(150) {
            report(&mut out, "flushing");
            db.flush().unwrap();
            report(&mut out, "flushed");
        }
        if next.is_multiple_of(400) {
            report(&mut out, "compacting");
            db.compact().unwrap();
            report(&mut out, "compacted");
        }
        // Pace the writes so that a cycle writes a few hundred batches, even where fsync
        // costs nothing, and kills spread over writes, flushes and compactions.
        std::thread::sleep(PACE);
    }
}

/// Sends one line to the parent at once: it must have it before a kill can land.
fn report(out: &mut impl Write, line: &str) {
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// The expected contents after a number of batches, advanced incrementally.
#[derive(Default)]
struct Model {
    batches: u64,
    state: BTreeMap<String, String>,
}

impl Model {
    fn advance_to(&mut self, n: u64) {
        while self.batches < n {
            for (k, v) in batch_ops(self.batches) {
                match v {
                    Some(v) => self.state.insert(k, v),
                    None => self.state.remove(&k),
                };
            }
            self.batches += 1;
        }
    }
}

/// What one child reported before it died.
struct Cycle {
    opened: bool,
    last_ack: Option<u64>,
    /// The child was inside a manual compaction when it was killed.
    in_compaction: bool,
    /// The child was inside a manual flush when it was killed.
    in_flush: bool,
}

fn run_child(exe: &Path, dir: &Path, mode: SyncMode, rng: &mut Rng, stderr_log: &Path) -> Cycle {
    let mut child = Command::new(exe)
        .args(["crash_loop_child", "--exact", "--ignored", "--nocapture"])
        .args(["--test-threads", "1"])
        .env(CHILD_DIR, dir)
        .env(
            CHILD_SYNC,
            if mode == SyncMode::Buffered {
                "buffered"
            } else {
                "synced"
            },
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(stderr_log).unwrap())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let mut cycle = Cycle {
        opened: false,
        last_ack: None,
        in_compaction: false,
        in_flush: false,
    };
    let note = |cycle: &mut Cycle, line: &str| {
        if line.starts_with("open ") {
            cycle.opened = true;
        } else if let Some(n) = line.strip_prefix("ack ") {
            cycle.last_ack = Some(n.parse().unwrap());
        }
        cycle.in_compaction = match line {
            "compacting" => true,
            "compacted" => false,
            _ => cycle.in_compaction,
        };
        cycle.in_flush = match line {
            "flushing" => true,
            "flushed" => false,
            _ => cycle.in_flush,
        };
    };
    // Kill during start-up and open, after a random number of acknowledged batches, or
    // after a random time of writing; the data written per cycle stays small either way.
    let deadline = Instant::now() + Duration::from_secs(20);
    match rng.below(10) {
        0 => std::thread::sleep(Duration::from_millis(rng.below(40))),
        // Aim at a manual flush or compaction: kill a moment after the child announces one.
        1 | 2 => {
            let aim = if rng.chance(50) {
                "flushing"
            } else {
                "compacting"
            };
            loop {
                let wait = deadline.saturating_duration_since(Instant::now());
                let Ok(line) = rx.recv_timeout(wait) else {
                    break;
                };
                note(&mut cycle, &line);
                if line == aim {
                    break;
                }
            }
            std::thread::sleep(Duration::from_micros(rng.below(2000)));
        }
        3..=5 => {
            let target = rng.below(400);
            let mut acks = 0;
            while acks <= target {
                let wait = deadline.saturating_duration_since(Instant::now());
                let Ok(line) = rx.recv_timeout(wait) else {
                    break;
                };
                acks += u64::from(line.starts_with("ack "));
                note(&mut cycle, &line);
            }
        }
        _ => {
            while !cycle.opened {
                let wait = deadline.saturating_duration_since(Instant::now());
                let Ok(line) = rx.recv_timeout(wait) else {
                    break;
                };
                note(&mut cycle, &line);
            }
            std::thread::sleep(Duration::from_millis(rng.below(100)));
        }
    }
    // SIGKILL, sent to the child this test started and to nothing else.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        note(&mut cycle, &line);
    }
    assert_eq!(
        status.signal(),
        Some(9),
        "the child ended by itself ({status}): {}",
        std::fs::read_to_string(stderr_log).unwrap_or_default()
    );
    cycle
}

#[test]
fn kill_9_loses_no_acknowledged_write() {
    crash_loop(SyncMode::Always);
}

#[test]
fn kill_9_loses_no_acknowledged_buffered_write() {
    crash_loop(SyncMode::Buffered);
}

fn crash_loop(mode: SyncMode) {
    let cycles: u64 = std::env::var("STRATA_CRASH_CYCLES").map_or(20, |v| v.parse().unwrap());
    let seed: u64 = std::env::var("STRATA_CRASH_SEED").map_or_else(
        |_| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        },
        |v| v.parse().unwrap(),
    );
    let mut rng = Rng::new(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir: PathBuf = tmp.path().join("db");
    let stderr_log = tmp.path().join("child-stderr.log");
    let exe = std::env::current_exe().unwrap();
    let mut model = Model::default();
    let mut acked_total = 0;
    let mut killed_compacting = 0;
    let mut killed_flushing = 0;
    let mut killed_mid_table_write = 0;
    for cycle in 0..cycles {
        let report = run_child(&exe, &dir, mode, &mut rng, &stderr_log);
        killed_compacting += u64::from(report.in_compaction);
        killed_flushing += u64::from(report.in_flush);
        let ctx = format!("{mode:?} seed {seed} cycle {cycle}");
        if !report.opened && !dir.join("CURRENT").exists() {
            continue; // killed before the store was ever created
        }
        let db = open(&dir, mode);
        killed_mid_table_write += u64::from(db.stats().recovery.stale_tables_removed > 0);
        let n: u64 = db
            .get(NEXT)
            .unwrap()
            .map_or(0, |v| std::str::from_utf8(&v).unwrap().parse().unwrap());
        let known = report.last_ack.map_or(model.batches, |a| a + 1);
        // At most one batch past the last acknowledgement can have reached the disk: the
        // one being written (or whose acknowledgement was not yet printed) at the kill.
        assert!(
            n >= known && n <= known + 1,
            "{ctx}: {n} batches recovered, {known} acknowledged"
        );
        acked_total += report.last_ack.map_or(0, |a| a + 1 - model.batches);
        model.advance_to(n);
        let got = common::contents(&db, &ctx);
        assert!(
            got == model.state,
            "{ctx}: contents differ from {n} batches"
        );
        db.close().unwrap();
    }
    eprintln!(
        "crash loop ({mode:?}) seed {seed}: {cycles} kills, {acked_total} batches acknowledged, \
         kills inside {killed_flushing} manual flushes and {killed_compacting} manual compactions, \
         {killed_mid_table_write} reopens that found tables of an interrupted flush or compaction"
    );
    assert!(
        acked_total > cycles,
        "seed {seed}: only {acked_total} batches acknowledged in {cycles} cycles"
    );
}
