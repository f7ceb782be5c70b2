//! The commands that work on a local store directory.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::progress::{Progress, human_bytes};
use super::{CliError, CliResult, Command, Style, arg_bytes, exit, json_bytes, print_json, show};
use crate::verify::{Finding, VerifyReport};
use crate::{Db, SeqNo, StdFs};

fn need_key(key: Option<String>, cmd: &str) -> Result<String, CliError> {
    key.ok_or_else(|| {
        CliError::new(
            exit::USAGE,
            format!("usage: strata {cmd} DIR KEY (or --endpoint URL {cmd} KEY)"),
        )
    })
}

/// Opens an existing store; a directory without one is an error, not a new store.
fn open(dir: &Path) -> Result<Db, CliError> {
    if !dir.join(crate::file_names::CURRENT).exists() {
        return Err(CliError::new(
            exit::FAILED,
            format!("{} holds no store (no CURRENT file)", dir.display()),
        ));
    }
    open_or_create(dir)
}

/// Opens the store in `dir` for one command. What the open replays from the WAL stays
/// there: flushing it would make a reading command rewrite the store, and the flush applies
/// the default history retention, so the versions `history` shows would go with it.
fn open_or_create(dir: &Path) -> Result<Db, CliError> {
    Ok(Db::builder(dir).flush_after_recovery(false).open()?)
}

pub(crate) fn run(cmd: Command, style: Style, out: &mut dyn Write) -> CliResult {
    match cmd {
        Command::Stats { dir } => stats(&dir, style, out),
        Command::Verify { dir } => verify(&dir, style, out),
        Command::Get {
            first,
            key,
            version,
        } => get(
            Path::new(&first),
            &need_key(key, "get")?,
            version,
            style,
            out,
        ),
        Command::Put {
            first,
            second,
            third,
            ..
        } => {
            let value = third
                .ok_or_else(|| CliError::new(exit::USAGE, "usage: strata put DIR KEY VALUE"))?;
            // The one command that creates a store where there is none.
            let db = open_or_create(Path::new(&first))?;
            let v = db.put(arg_bytes(&second, style)?, arg_bytes(&value, style)?)?;
            db.close()?;
            version_line(v, style, out)
        }
        Command::Delete { first, key } => {
            let key = need_key(key, "delete")?;
            let db = open(Path::new(&first))?;
            let v = db.delete(arg_bytes(&key, style)?)?;
            db.close()?;
            version_line(v, style, out)
        }
        Command::History { first, key } => {
            history(Path::new(&first), &need_key(key, "history")?, style, out)
        }
        Command::Scan {
            dir,
            prefix,
            start,
            end,
            limit,
            reverse,
            keys_only,
        } => {
            let db = open(&dir)?;
            let range = match prefix {
                Some(p) => db.prefix(arg_bytes(&p, style)?),
                None => {
                    use std::ops::Bound;
                    let lo = match start {
                        Some(s) => Bound::Included(arg_bytes(&s, style)?),
                        None => Bound::Unbounded,
                    };
                    let hi = match end {
                        Some(e) => Bound::Excluded(arg_bytes(&e, style)?),
                        None => Bound::Unbounded,
                    };
                    db.range((lo, hi))
                }
            };
            let items: Box<dyn Iterator<Item = crate::Result<(bytes::Bytes, bytes::Bytes)>>> =
                if reverse {
                    Box::new(range.rev())
                } else {
                    Box::new(range)
                };
            for item in items.take(limit.unwrap_or(usize::MAX)) {
                let (k, v) = item?;
                if style.json {
                    let mut o = Map::new();
                    json_bytes(&mut o, "key", &k);
                    if !keys_only {
                        json_bytes(&mut o, "value", &v);
                    }
                    print_json(out, &Value::Object(o))?;
                } else if keys_only {
                    writeln!(out, "{}", show(&k, style))?;
                } else {
                    writeln!(out, "{}\t{}", show(&k, style), show(&v, style))?;
                }
            }
            Ok(exit::OK)
        }
        Command::Compact { dir } => compact(&dir, style, out),
        Command::Checkpoint { dir, dest } => {
            let db = open(&dir)?;
            let cp = db.checkpoint(&dest)?;
            db.close()?;
            if style.json {
                print_json(
                    out,
                    &json!({
                        "seqno": cp.seqno.get(), "dir": cp.dir, "tables": cp.tables,
                        "linked": cp.linked, "copied": cp.copied,
                        "memtable_entries": cp.memtable_entries, "bytes": cp.bytes,
                        "bytes_written": cp.bytes_written,
                        "seconds": cp.duration.as_secs_f64(),
                    }),
                )?;
            } else {
                writeln!(
                    out,
                    "checkpoint of {} at seqno {} in {}: {} tables ({} linked, {} copied), {} in all, {} written, {:.2} s",
                    dir.display(),
                    cp.seqno,
                    cp.dir.display(),
                    cp.tables,
                    cp.linked,
                    cp.copied,
                    human_bytes(cp.bytes),
                    human_bytes(cp.bytes_written),
                    cp.duration.as_secs_f64()
                )?;
            }
            Ok(exit::OK)
        }
        Command::Dump { dir, output } => {
            let db = open(&dir)?;
            let mut progress = Progress::new("dump");
            let summary = match output {
                Some(path) => {
                    let file = create_new(&path)?;
                    let mut w = std::io::BufWriter::new(file);
                    let s = super::dump(&db, &mut w, &mut |n| progress.count(n, "versions"))?;
                    w.flush()?;
                    w.get_ref().sync_all()?;
                    s
                }
                None => super::dump(&db, out, &mut |n| progress.count(n, "versions"))?,
            };
            progress.finish();
            db.close()?;
            eprintln!(
                "dumped {} versions of {} keys at seqno {}",
                summary.versions, summary.keys, summary.seqno
            );
            Ok(exit::OK)
        }
        Command::Load { dir, input } => {
            let mut progress = Progress::new("load");
            let summary = match input {
                Some(path) => {
                    let file = std::fs::File::open(&path).map_err(|e| {
                        CliError::new(exit::FAILED, format!("{}: {e}", path.display()))
                    })?;
                    super::load(&dir, std::io::BufReader::new(file), &mut |n| {
                        progress.count(n, "versions")
                    })?
                }
                None => super::load(&dir, std::io::stdin().lock(), &mut |n| {
                    progress.count(n, "versions")
                })?,
            };
            progress.finish();
            if style.json {
                print_json(
                    out,
                    &json!({"dir": dir, "seqno": summary.seqno, "keys": summary.keys, "versions": summary.versions}),
                )?;
            } else {
                writeln!(
                    out,
                    "loaded {} versions of {} keys into {} (last seqno {})",
                    summary.versions,
                    summary.keys,
                    dir.display(),
                    summary.seqno
                )?;
            }
            Ok(exit::OK)
        }
        Command::Inspect { what } => super::inspect::run(what, style, out),
        Command::Restore { backup, dir } => restore(&backup, &dir, style, out),
        Command::Range { .. } | Command::Backup { .. } | Command::Cluster { .. } => {
            Err(CliError::new(
                exit::USAGE,
                "this command talks to a server: give --endpoint URL",
            ))
        }
    }
}

/// Creates `path`, which must not exist.
pub(crate) fn create_new(path: &Path) -> Result<std::fs::File, CliError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| CliError::new(exit::FAILED, format!("{}: {e}", path.display())))
}

fn version_line(v: SeqNo, style: Style, out: &mut dyn Write) -> CliResult {
    if style.json {
        print_json(out, &json!({ "version": v.get() }))?;
    } else {
        writeln!(out, "{v}")?;
    }
    Ok(exit::OK)
}

fn get(
    dir: &Path,
    key: &str,
    version: Option<u64>,
    style: Style,
    out: &mut dyn Write,
) -> CliResult {
    let db = open(dir)?;
    let key = arg_bytes(key, style)?;
    let found = match version {
        None => db.get_versioned(&key)?,
        Some(v) => {
            // The version in force at `v`: the newest retained write at or below it.
            let mut hit = None;
            for ver in db.versions(&key) {
                let ver = ver?;
                if ver.seqno.get() <= v {
                    hit = ver.value.map(|value| crate::VersionedValue {
                        version: ver.seqno,
                        value,
                    });
                    break;
                }
            }
            hit
        }
    };
    db.close()?;
    let Some(found) = found else {
        return Ok(exit::NOT_FOUND);
    };
    if style.json {
        let mut o = Map::new();
        json_bytes(&mut o, "key", &key);
        json_bytes(&mut o, "value", &found.value);
        o.insert("version".into(), found.version.get().into());
        print_json(out, &Value::Object(o))?;
    } else if style.hex {
        writeln!(out, "{}", show(&found.value, style))?;
    } else {
        out.write_all(&found.value)?;
        out.write_all(b"\n")?;
    }
    Ok(exit::OK)
}

fn history(dir: &Path, key: &str, style: Style, out: &mut dyn Write) -> CliResult {
    let db = open(dir)?;
    let key = arg_bytes(key, style)?;
    let mut n = 0;
    for v in db.versions(&key) {
        let v = v?;
        n += 1;
        if style.json {
            let mut o = Map::new();
            o.insert("version".into(), v.seqno.get().into());
            match &v.value {
                Some(val) => json_bytes(&mut o, "value", val),
                None => {
                    o.insert("deleted".into(), true.into());
                }
            }
            print_json(out, &Value::Object(o))?;
        } else {
            match &v.value {
                Some(val) => writeln!(out, "{}\t{}", v.seqno, show(val, style))?,
                None => writeln!(out, "{}\t(deleted)", v.seqno)?,
            }
        }
    }
    db.close()?;
    Ok(if n == 0 { exit::NOT_FOUND } else { exit::OK })
}

fn stats(dir: &Path, style: Style, out: &mut dyn Write) -> CliResult {
    let db = open(dir)?;
    let s = db.stats();
    let segments = db.wal_segments();
    db.close()?;
    if style.json {
        let levels: Vec<Value> = s
            .levels
            .iter()
            .enumerate()
            .map(|(i, l)| json!({"level": i, "tables": l.tables, "bytes": l.bytes, "entries": l.entries}))
            .collect();
        print_json(
            out,
            &json!({
                "dir": dir,
                "last_seqno": s.last_seqno.get(),
                "levels": levels,
                "tables": s.levels.iter().map(|l| l.tables).sum::<usize>(),
                "table_bytes": s.levels.iter().map(|l| l.bytes).sum::<u64>(),
                "entries": s.levels.iter().map(|l| l.entries).sum::<u64>(),
                "memtable_bytes": s.memtable_bytes,
                "wal_segments": segments.len(),
                "wal_bytes": s.wal_bytes,
                "pending_compaction_bytes": s.pending_compaction_bytes,
                "recovery": {
                    "segments_replayed": s.recovery.segments_replayed,
                    "writes_replayed": s.recovery.writes_replayed,
                    "torn_tail": s.recovery.torn_tail.as_ref().map(|t| json!({
                        "segment": t.segment, "offset": t.offset, "bytes_dropped": t.bytes_dropped, "reason": t.reason,
                    })),
                    "stale_tables_removed": s.recovery.stale_tables_removed,
                },
            }),
        )?;
        return Ok(exit::OK);
    }
    writeln!(out, "store          {}", dir.display())?;
    writeln!(out, "last seqno     {}", s.last_seqno)?;
    writeln!(out, "level  tables        bytes      entries")?;
    for (i, l) in s.levels.iter().enumerate() {
        if l.tables > 0 {
            writeln!(
                out,
                "{i:>5}  {:>6}  {:>11}  {:>11}",
                l.tables,
                human_bytes(l.bytes),
                l.entries
            )?;
        }
    }
    writeln!(
        out,
        "memtable       {} (replayed from the WAL at open: {} writes)",
        human_bytes(s.memtable_bytes),
        s.recovery.writes_replayed
    )?;
    writeln!(
        out,
        "wal            {} segments, {}",
        segments.len(),
        human_bytes(s.wal_bytes)
    )?;
    if let Some(t) = &s.recovery.torn_tail {
        writeln!(
            out,
            "torn tail cut  {} bytes of {} at offset {}",
            t.bytes_dropped,
            t.segment.display(),
            t.offset
        )?;
    }
    if s.recovery.stale_tables_removed > 0 {
        writeln!(
            out,
            "stale tables   {} removed at open",
            s.recovery.stale_tables_removed
        )?;
    }
    Ok(exit::OK)
}

fn finding_json(f: &Finding) -> Value {
    json!({"file": f.file, "kind": f.kind.name(), "offset": f.offset, "reason": f.reason})
}

/// Prints a verification report; the exit code says whether it found damage.
pub(crate) fn print_report(report: &VerifyReport, style: Style, out: &mut dyn Write) -> CliResult {
    if style.json {
        let files: Vec<Value> = report
            .files
            .iter()
            .map(|f| {
                json!({"file": f.file, "kind": f.kind.name(), "bytes": f.bytes, "units": f.units,
                       "entries": f.entries, "damaged": f.damaged})
            })
            .collect();
        print_json(
            out,
            &json!({
                "healthy": report.is_healthy(),
                "damage": report.damage.iter().map(finding_json).collect::<Vec<_>>(),
                "notes": report.notes.iter().map(finding_json).collect::<Vec<_>>(),
                "files": files,
                "tables": report.tables,
                "last_seqno": report.last_seqno,
                "bytes_read": report.bytes_read,
            }),
        )?;
    } else {
        for d in &report.damage {
            writeln!(out, "DAMAGE  {d}")?;
        }
        for n in &report.notes {
            writeln!(out, "note    {n}")?;
        }
        writeln!(
            out,
            "{}: {} files, {} tables, {} read, last seqno {}; {} damaged, {} notes",
            if report.is_healthy() {
                "healthy"
            } else {
                "DAMAGED"
            },
            report.files.len(),
            report.tables,
            human_bytes(report.bytes_read),
            report.last_seqno,
            report.damage.len(),
            report.notes.len()
        )?;
    }
    Ok(if report.is_healthy() {
        exit::OK
    } else {
        exit::DAMAGED
    })
}

fn verify(dir: &Path, style: Style, out: &mut dyn Write) -> CliResult {
    if !dir.is_dir() {
        return Err(CliError::new(
            exit::FAILED,
            format!("{} is not a directory", dir.display()),
        ));
    }
    let mut progress = Progress::new("verify");
    let report = crate::verify::verify_dir_with(&StdFs, dir, &mut |d, t| progress.bytes(d, t))?;
    progress.finish();
    print_report(&report, style, out)
}

fn compact(dir: &Path, style: Style, out: &mut dyn Write) -> CliResult {
    let db = open(dir)?;
    let worker = {
        let db = db.clone();
        std::thread::spawn(move || db.compact())
    };
    let mut progress = Progress::new("compact");
    while !worker.is_finished() {
        progress.tick();
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    progress.finish();
    let run = worker
        .join()
        .map_err(|_| CliError::new(exit::FAILED, "compaction thread panicked"))??;
    db.close()?;
    if style.json {
        print_json(
            out,
            &json!({
                "tables_in": run.tables_in, "tables_out": run.tables_out,
                "bytes_in": run.bytes_in, "bytes_out": run.bytes_out,
                "entries_in": run.entries_in, "entries_dropped": run.entries_dropped,
                "seconds": run.duration.as_secs_f64(),
            }),
        )?;
    } else {
        writeln!(
            out,
            "compacted {} tables ({}) into {} ({}), dropped {} of {} entries in {:.2} s",
            run.tables_in,
            human_bytes(run.bytes_in),
            run.tables_out,
            human_bytes(run.bytes_out),
            run.entries_dropped,
            run.entries_in,
            run.duration.as_secs_f64()
        )?;
    }
    Ok(exit::OK)
}

fn restore(backup: &Path, dir: &PathBuf, style: Style, out: &mut dyn Write) -> CliResult {
    let file = std::fs::File::open(backup)
        .map_err(|e| CliError::new(exit::FAILED, format!("{}: {e}", backup.display())))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut src = std::io::BufReader::with_capacity(1 << 20, file);
    let mut progress = Progress::new("restore");
    let summary = crate::backup::restore(std::sync::Arc::new(StdFs), &mut src, dir, &mut |n| {
        progress.bytes(n, total)
    })?;
    progress.finish();
    if style.json {
        print_json(
            out,
            &json!({"dir": dir, "seqno": summary.seqno, "files": summary.files, "bytes": summary.bytes}),
        )?;
    } else {
        writeln!(
            out,
            "restored {} files ({}) into {}: a store at seqno {}",
            summary.files,
            human_bytes(summary.bytes),
            dir.display(),
            summary.seqno
        )?;
    }
    Ok(exit::OK)
}
