//! Opening a store: lock the directory, replay the manifest, open the tables, replay the WAL
//! segments newer than the last flush, and start a fresh WAL segment and manifest.
//!
//! The recovered state is always a prefix of the acknowledged writes: WAL records carry
//! consecutive seqnos, and a gap, a missing segment or damage before intact data is refused
//! (or, under a salvaging [`RecoveryMode`], dropped and reported). A damaged tail of the
//! newest segment — the write in flight during a crash — is cut off and reported.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::batch::BatchView;
use crate::config::{Config, RecoveryMode};
use crate::error::{Corrupt, Error, IoContext, Result};
use crate::file_names;
use crate::fs::FileLock;
use crate::manifest::{self, ManifestState, ManifestWriter};
use crate::memtable::Memtable;
use crate::sstable::block_cache::BlockCache;
use crate::sstable::table_reader::Table;
use crate::state::LsmState;
use crate::stats::{RecoveryReport, TornTail};
use crate::table_set::TableSet;
use crate::wal::segment::{self, Scan, Wal};

/// Largest WAL record recovery accepts: one maximal batch plus framing.
pub(crate) const MAX_WAL_RECORD: usize = crate::limits::MAX_BATCH_BYTES + 64;

/// Everything opening a store recovers, from which the engine is put together.
pub(crate) struct Recovered {
    pub dir: PathBuf,
    pub config: Config,
    pub lock: Box<dyn FileLock>,
    pub state: LsmState,
    pub last_seq: u64,
    pub wal: Wal,
    pub manifest: ManifestWriter,
    pub manifest_state: ManifestState,
    pub next_file: u64,
    pub report: RecoveryReport,
    /// The cache of decompressed blocks the open tables share.
    pub block_cache: Arc<BlockCache>,
}

/// Opens the store in `dir`. The flag asks the caller to flush the recovered memtables at
/// once, because recovery dropped damaged records that must not resurface later.
pub(crate) fn open(dir: &Path, config: Config) -> Result<(Recovered, bool)> {
    let fs = Arc::clone(&config.fs);
    crate::fs::create_dir_durable(&*fs, dir).at(dir)?;
    let lock_path = dir.join(file_names::LOCK);
    let lock = fs.lock(&lock_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            Error::Locked(dir.to_path_buf())
        } else {
            Error::Io {
                path: Some(lock_path.clone()),
                source: e,
            }
        }
    })?;
    let names = fs.list(dir).at(dir)?;
    let (mut mstate, manifest_torn_at, existing) = match manifest::recover(&*fs, dir)? {
        Some((r, _)) => (r.state, r.torn_tail.map(|(offset, _)| offset), true),
        None => (ManifestState::new(), None, false),
    };
    if !existing
        && names
            .iter()
            .any(|n| file_names::parse_wal(n).is_some() || file_names::parse_table(n).is_some())
    {
        return Err(
            Corrupt::new(0, "store files present but CURRENT is missing")
                .in_file(dir.join(file_names::CURRENT)),
        );
    }

    // Tables named by the manifest.
    let block_cache = Arc::new(BlockCache::new(config.block_cache_bytes));
    let mut levels: Vec<Vec<Arc<Table>>> = vec![Vec::new(); mstate.levels.len()];
    for (level, tables) in mstate.levels.iter().enumerate() {
        for meta in tables.values() {
            let path = dir.join(file_names::table(meta.number));
            let table = Table::open(Arc::clone(&fs), &path, meta.number)
                .map_err(|e| match e {
                    Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                        Corrupt::new(0, "table named by the manifest is missing").in_file(&path)
                    }
                    other => other,
                })?
                .with_cache(Arc::clone(&block_cache));
            if table.file_size() != meta.size || table.props().largest != meta.largest {
                return Err(
                    Corrupt::new(0, "table does not match its manifest entry").in_file(&path)
                );
            }
            if let Some(l) = levels.get_mut(level) {
                l.push(Arc::new(table));
            }
        }
    }

    let max_seen = names
        .iter()
        .filter_map(|n| {
            file_names::parse_wal(n)
                .or_else(|| file_names::parse_table(n))
                .or_else(|| file_names::parse_manifest(n))
        })
        .max()
        .unwrap_or(0);
    if max_seen > manifest::MAX_FILE_NUMBER {
        return Err(Corrupt::new(0, format!("file number {max_seen} out of range")).in_file(dir));
    }
    let mut next_file = mstate.next_file.max(max_seen + 1);

    // WAL replay.
    let segments: Vec<u64> = names
        .iter()
        .filter_map(|n| file_names::parse_wal(n))
        .filter(|&n| n >= mstate.log_number)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut replay = Replay::new(config.clone(), mstate.last_seq);
    let mut sealed = Vec::new();
    let mut last_segment = 0;
    for (i, &number) in segments.iter().enumerate() {
        let newest = i + 1 == segments.len();
        let path = dir.join(file_names::wal(number));
        if replay.stopped {
            // Point-in-time recovery stopped earlier: this segment is not replayed. It stays in
            // the sealed list so the flush that follows open deletes it.
            replay.report.records_dropped += 1;
            sealed.push((number, fs.file_size(&path)?));
            last_segment = number;
            continue;
        }
        let salvage = config.recovery == RecoveryMode::SkipAnyCorruptedRecords;
        let scan = segment::scan(
            &*fs,
            &path,
            number,
            MAX_WAL_RECORD,
            salvage,
            |offset, batch| {
                replay
                    .apply(number, offset, batch)
                    .map_err(|c| c.in_file(&path))
            },
        )?;
        replay.report.segments_replayed += 1;
        if let (Some(prev), true) = (scan.prev_number, i > 0)
            && Some(&prev) != segments.get(i - 1)
        {
            let e = Corrupt::new(
                20,
                format!(
                    "segment follows {prev}, but the previous live segment is {}",
                    segments.get(i - 1).copied().unwrap_or(0)
                ),
            );
            if salvage {
                tracing::warn!(file = %path.display(), "{e}");
            } else {
                return Err(e.in_file(&path));
            }
        }
        let keep_len = replay.classify(&path, newest, &scan)?;
        // Cut what is not kept, and sync what is: after a process crash the replayed records
        // may have reached only the operating system, and writes acknowledged from now on
        // must not outlive them in a later power cut.
        fs.truncate(&path, keep_len)?;
        sealed.push((number, keep_len));
        last_segment = number;
    }
    let rewrite = replay.dropped_data;
    if replay.mem.is_none() && replay.frozen.is_empty() && !rewrite {
        // Every write the segments hold is in a table already (or they hold none): the new
        // manifest stops naming them, and the clean-up below removes them, so that opening
        // and closing a store again and again leaves no trail of empty segments.
        mstate.log_number = mstate.log_number.max(next_file);
        sealed.clear();
    }

    // A fresh manifest describing everything, written before the new WAL segment so that a
    // crash in between never leaves a segment without a manifest; then the new segment.
    let wal_number = next_file;
    let manifest_number = next_file + 1;
    next_file += 2;
    mstate.next_file = next_file;
    let writer = ManifestWriter::create(Arc::clone(&fs), dir, manifest_number, &mstate)?;
    writer.remove_others(&names)?;
    let wal = Wal::create(
        Arc::clone(&fs),
        dir,
        wal_number,
        last_segment,
        config.wal_segment_bytes,
        sealed,
    )?;
    let mut imms = std::mem::take(&mut replay.frozen);
    let mem = match replay.mem.take() {
        Some(m) => Arc::new(m),
        None => Arc::new(Memtable::new(wal_number, config.memtable_bytes)),
    };
    imms.reverse(); // newest first

    // Clean-up of files nobody needs. A table no manifest names is provably unreferenced
    // only when the manifest was read to a clean end; next to a torn last edit it is set
    // aside instead, so that a misjudged tail can never cost data.
    let live_tables: BTreeSet<u64> = mstate
        .levels
        .iter()
        .flat_map(|l| l.keys().copied())
        .collect();
    let mut removed_any = false;
    let mut stale_tables = 0;
    let mut set_aside = Vec::new();
    for name in &names {
        let stale_table = file_names::parse_table(name).is_some_and(|n| !live_tables.contains(&n));
        let stale_wal = file_names::parse_wal(name).is_some_and(|n| n < mstate.log_number);
        // A `CURRENT.tmp` left by an interrupted switch is gone already: pointing `CURRENT`
        // at the new manifest above wrote and renamed that name.
        if stale_table && manifest_torn_at.is_some() {
            let lost = dir.join(file_names::LOST);
            fs.create_dir_all(&lost).at(&lost)?; // made durable by the sync of `dir` below
            let to = lost.join(name);
            fs.rename(&dir.join(name), &to).at(&to)?;
            set_aside.push(to);
        } else if stale_table || stale_wal {
            fs.remove_file(&dir.join(name))?;
            removed_any = true;
            stale_tables += usize::from(stale_table);
        }
    }
    replay.report.stale_tables_removed = stale_tables;
    replay.report.manifest_torn_at = manifest_torn_at;
    if stale_tables > 0 {
        tracing::info!(
            tables = stale_tables,
            "removed table files no manifest names (an interrupted flush or compaction)"
        );
    }
    if !set_aside.is_empty() {
        let lost = dir.join(file_names::LOST);
        fs.sync_dir(&lost).at(&lost)?;
        tracing::warn!(
            tables = set_aside.len(),
            dir = %lost.display(),
            "the manifest ended in a torn edit; moved the table files it does not name aside"
        );
    }
    if removed_any || !set_aside.is_empty() {
        fs.sync_dir(dir)?;
    }
    replay.report.tables_set_aside = set_aside;

    if let Some(t) = &replay.report.torn_tail {
        tracing::warn!(
            segment = %t.segment.display(),
            offset = t.offset,
            bytes = t.bytes_dropped,
            reason = t.reason.as_str(),
            "cut a torn tail off the newest WAL segment"
        );
    }
    let state = LsmState {
        mem,
        imms,
        tables: Arc::new(TableSet::from_levels(levels)),
    };
    let recovered = Recovered {
        dir: dir.to_path_buf(),
        config,
        lock,
        state,
        last_seq: replay.last_seq,
        wal,
        manifest: writer,
        manifest_state: mstate,
        next_file,
        report: replay.report,
        block_cache,
    };
    Ok((recovered, rewrite))
}

/// Replay bookkeeping.
pub(crate) struct Replay {
    config: Config,
    /// Highest seqno recovered so far.
    last_seq: u64,
    mem: Option<Memtable>,
    frozen: Vec<Arc<Memtable>>,
    report: RecoveryReport,
    /// Point-in-time recovery hit damage: nothing after it is replayed.
    stopped: bool,
    /// Records were dropped; the recovered state must be persisted before new writes.
    dropped_data: bool,
}

impl Replay {
    pub(crate) fn new(config: Config, last_seq: u64) -> Replay {
        Replay {
            config,
            last_seq,
            mem: None,
            frozen: Vec::new(),
            report: RecoveryReport::default(),
            stopped: false,
            dropped_data: false,
        }
    }

    /// Applies one WAL record from segment `segment`.
    pub(crate) fn apply(&mut self, segment: u64, offset: u64, batch: &[u8]) -> Result<(), Corrupt> {
        if self.stopped {
            self.report.records_dropped += 1;
            return Ok(());
        }
        let view = BatchView::new(batch, offset)?;
        let ops = view.ops()?;
        let first = view.first_seq;
        let count = u64::from(view.count);
        self.report.records_replayed += 1;
        if count == 0 || first + count - 1 <= self.last_seq {
            return Ok(()); // already in a table
        }
        if first > self.last_seq + 1 {
            let msg = format!("writes {} to {} are missing", self.last_seq + 1, first - 1);
            match self.config.recovery {
                RecoveryMode::SkipAnyCorruptedRecords => {
                    tracing::warn!(offset, "{msg}; salvaging later records");
                    self.dropped_data = true;
                }
                RecoveryMode::PointInTime => {
                    tracing::warn!(offset, "{msg}; recovery stops here");
                    self.report.records_dropped += 1;
                    self.dropped_data = true;
                    self.stopped = true;
                    return Ok(());
                }
                _ => return Err(Corrupt::new(offset, msg)),
            }
        }
        let skip = self.last_seq.saturating_sub(first - 1).min(count) as usize;
        let fresh = ops.get(skip..).unwrap_or_default();
        let budget = self.config.memtable_bytes;
        let mem = self
            .mem
            .get_or_insert_with(|| Memtable::new(segment, budget));
        mem.insert_ops(first + skip as u64, fresh);
        self.report.writes_replayed += fresh.len() as u64;
        self.last_seq = first + count - 1;
        if mem.approximate_bytes() >= self.config.memtable_bytes
            && let Some(full) = self.mem.take()
        {
            self.frozen.push(Arc::new(full));
        }
        Ok(())
    }

    /// Decides what a segment's damage means under the recovery mode; returns the length the
    /// segment keeps.
    pub(crate) fn classify(&mut self, path: &Path, newest: bool, scan: &Scan) -> Result<u64> {
        if scan.clean() {
            // Cut any unwritten (preallocated) tail; a segment whose header never reached the
            // disk keeps nothing.
            return Ok(if scan.prev_number.is_some() {
                scan.valid_end
            } else {
                0
            });
        }
        let Some(bad) = &scan.first_bad else {
            return Ok(scan.file_len);
        };
        let corrupt = || Error::Corruption {
            file: path.to_path_buf(),
            offset: bad.offset,
            reason: bad.reason.clone(),
        };
        let torn = TornTail {
            segment: path.to_path_buf(),
            offset: scan.valid_end,
            bytes_dropped: scan.file_len.saturating_sub(scan.valid_end),
            reason: bad.reason.clone(),
        };
        match self.config.recovery {
            RecoveryMode::AbsoluteConsistency => Err(corrupt()),
            RecoveryMode::TolerateCorruptedTail => {
                if newest && !scan.bad_was_synced {
                    self.report.torn_tail = Some(torn);
                    Ok(scan.valid_end)
                } else {
                    Err(corrupt())
                }
            }
            RecoveryMode::PointInTime => {
                if newest && !scan.bad_was_synced {
                    self.report.torn_tail = Some(torn);
                } else {
                    tracing::warn!(file = %path.display(), offset = bad.offset, "point-in-time recovery stops at damage");
                    self.report.records_dropped += scan.records_after_bad;
                    self.dropped_data = true;
                    self.stopped = true;
                }
                Ok(scan.valid_end)
            }
            RecoveryMode::SkipAnyCorruptedRecords => {
                tracing::warn!(file = %path.display(), offset = bad.offset, reason = bad.reason.as_str(), "skipped damaged WAL records");
                self.report.records_dropped += 1;
                self.dropped_data = true;
                Ok(scan.file_len)
            }
        }
    }
}
