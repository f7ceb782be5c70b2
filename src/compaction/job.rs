//! Running one compaction: merge the inputs, apply the retention rules, write output tables
//! cut at user-key boundaries, and install the result with one manifest edit.
//!
//! Outputs are written and fsynced under fresh file numbers and the directory is synced
//! before the edit is logged; inputs are marked obsolete and deleted when the last reader
//! lets go of them. A crash at any point leaves either the inputs or the outputs reachable,
//! and the unreachable files are removed at the next open.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use parking_lot::Mutex;

use super::picker::{Job, nothing_below};
use super::{CompactionProgress, CompactionReason, CompactionRun};
use crate::catalog::Catalog;
use crate::config::Config;
use crate::cursor::Cursor;
use crate::error::{Error, Result, catch_panic};
use crate::file_names;
use crate::fs::WritableFile;
use crate::key::{self, Kind};
use crate::lifecycle::Lifecycle;
use crate::limits::NUM_LEVELS;
use crate::manifest::{Edit, TableMeta};
use crate::merge_iter::{LevelCursor, MergeCursor, Source};
use crate::retention::RetentionFilter;
use crate::sstable::block_cache::BlockCache;
use crate::sstable::table_builder::TableBuilder;
use crate::sstable::table_reader::Table;
use crate::state::LsmState;
use crate::stats::LevelIo;
use crate::view::View;

/// Syncs the file in `slot` unless that was done already.
fn sync_once(slot: &Mutex<Option<Box<dyn WritableFile>>>) -> Result<()> {
    if let Some(mut file) = slot.lock().take() {
        file.sync()?;
    }
    Ok(())
}

/// Whether reads gain from seeing `job`'s finished outputs before it installs them: when it
/// merges level-0 tables or more than two levels, a key's finished part is one sorted run
/// where the inputs are several.
fn shows_progress(job: &Job) -> bool {
    let mut levels = job.inputs.iter().map(|(l, _)| *l).collect::<Vec<_>>();
    levels.sort_unstable();
    levels.dedup();
    levels.first() == Some(&0) || levels.len() > 2
}

/// An output table being written.
struct Output {
    number: u64,
    builder: TableBuilder,
}

/// What a compaction job reads and changes.
pub(crate) struct JobContext<'a> {
    pub config: &'a Config,
    pub dir: &'a Path,
    /// Where the inputs are, and where the result is published.
    pub view: &'a View,
    /// Numbers the outputs and records the result.
    pub catalog: &'a Catalog,
    pub life: &'a Lifecycle,
    /// Per-level I/O counters.
    pub levels: &'a [LevelIo],
    /// Where the outputs' decompressed blocks are kept.
    pub block_cache: &'a Arc<BlockCache>,
    /// The running job's progress, as `compaction_status` reports it (cleared by the caller
    /// once the run is recorded).
    pub current: &'a Mutex<Option<CompactionProgress>>,
}

impl JobContext<'_> {
    /// Runs `job` and installs its result.
    pub(crate) fn run(&self, job: Job, reason: CompactionReason) -> Result<CompactionRun> {
        let started_at = SystemTime::now();
        let start = Instant::now();
        let tables_in = job.inputs.len();
        let bytes_in = job.input_bytes();
        let entries_in: u64 = job.inputs.iter().map(|(_, t)| t.props().entries).sum();
        let (outputs, dropped) = if job.trivial_move {
            self.install_move(&job)?;
            (Vec::new(), 0)
        } else {
            *self.current.lock() = Some(CompactionProgress {
                started_at,
                reason,
                output_level: job.output_level,
                tables_in,
                bytes_in,
                tables_out: 0,
                bytes_out: 0,
                shown_to_reads: shows_progress(&job),
            });
            let mut created = Vec::new();
            let (outputs, dropped) = match self.merge_inputs(&job, &mut created) {
                Ok(merged) => merged,
                Err(e) => {
                    self.hide_progress();
                    self.remove_unlogged(&created);
                    return Err(e);
                }
            };
            if let Err(e) = self.install(&job, &outputs) {
                self.hide_progress();
                // Refused before the manifest was touched (the store closed or failed): the
                // outputs belong to nobody. After a failed manifest write they may be named
                // on disk, so they stay; the next open removes them if nothing names them.
                if matches!(e, Error::Closed | Error::Poisoned(_)) {
                    drop(outputs);
                    self.remove_unlogged(&created);
                }
                return Err(e);
            }
            (outputs, dropped)
        };
        let tables_out = if job.trivial_move {
            tables_in
        } else {
            outputs.len()
        };
        let bytes_out = if job.trivial_move {
            bytes_in
        } else {
            outputs.iter().map(|t| t.file_size()).sum()
        };
        self.record_level_io(&job, bytes_out);
        let run = CompactionRun {
            started_at,
            duration: start.elapsed(),
            reason,
            tables_in,
            tables_out,
            bytes_in,
            bytes_out,
            entries_in,
            entries_dropped: dropped,
        };
        tracing::debug!(
            ?reason,
            tables_in,
            tables_out,
            bytes_in,
            bytes_out,
            dropped,
            level = job.output_level,
            "compaction finished"
        );
        Ok(run)
    }

    fn record_level_io(&self, job: &Job, bytes_out: u64) {
        for (level, t) in &job.inputs {
            if let Some(io) = self.levels.get(*level) {
                io.bytes_read.fetch_add(t.file_size(), Ordering::Relaxed);
            }
        }
        if let Some(io) = self.levels.get(job.output_level) {
            if !job.trivial_move {
                io.bytes_written.fetch_add(bytes_out, Ordering::Relaxed);
            }
            io.compactions.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Deletes output tables of a job that stopped before logging them.
    fn remove_unlogged(&self, numbers: &[u64]) {
        for &n in numbers {
            let path = self.dir.join(file_names::table(n));
            if let Err(e) = self.config.fs.remove_file(&path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(path = %path.display(), error = %e, "could not delete an unused compaction output");
            }
        }
    }

    /// Merges the inputs into new tables at the output level; `created` collects the number
    /// of every table file created, finished or not.
    ///
    /// Each finished output is synced on a thread of its own while the merge goes on writing
    /// the next one, so waiting for the device overlaps the merge. Every output is synced,
    /// and the directory after them, before this returns: before the manifest names any.
    fn merge_inputs(&self, job: &Job, created: &mut Vec<u64>) -> Result<(Vec<Arc<Table>>, u64)> {
        std::thread::scope(|scope| {
            let mut syncing = Vec::new();
            let mut finish = |out: Output| -> Result<Arc<Table>> {
                let (_, _, file) = out.builder.finish_unsynced()?;
                let file = Arc::new(Mutex::new(Some(file)));
                let on_thread = Arc::clone(&file);
                match std::thread::Builder::new()
                    .name("strata-sync".into())
                    .spawn_scoped(scope, move || catch_panic(|| sync_once(&on_thread)))
                {
                    Ok(s) => syncing.push(s),
                    // No thread to be had: sync here instead.
                    Err(_) => sync_once(&file)?,
                }
                self.open_output(out.number)
            };
            let merged = self.merge_into(job, created, &mut finish);
            let mut synced = Ok(());
            for s in syncing {
                let r = s
                    .join()
                    .unwrap_or_else(|_| Err(Error::Panic("syncing a compaction output".into())));
                synced = synced.and(r);
            }
            let merged = merged?;
            synced?;
            self.config.fs.sync_dir(self.dir)?;
            Ok(merged)
        })
    }

    /// The merge of [`merge_inputs`](Self::merge_inputs); `finish` completes each output.
    fn merge_into(
        &self,
        job: &Job,
        created: &mut Vec<u64>,
        finish: &mut dyn FnMut(Output) -> Result<Arc<Table>>,
    ) -> Result<(Vec<Arc<Table>>, u64)> {
        let tables_now = Arc::clone(&self.view.current().tables);
        let mut children: Vec<Source> = Vec::new();
        let mut by_level: Vec<Vec<Arc<Table>>> = vec![Vec::new(); NUM_LEVELS];
        for (level, t) in &job.inputs {
            if *level == 0 {
                children.push(t.sequential_cursor().into());
            } else if let Some(l) = by_level.get_mut(*level) {
                l.push(Arc::clone(t));
            }
        }
        for mut l in by_level.into_iter().filter(|l| !l.is_empty()) {
            l.sort_by(|a, b| key::compare(&a.props().smallest, &b.props().smallest));
            children.push(LevelCursor::sequential(Arc::from(l)).into());
        }
        let mut merged = MergeCursor::new(children);
        let mut filter = RetentionFilter::new(self.view.retention(self.config.history.versions));
        let target = self.config.target_table_bytes;
        let mut outputs: Vec<Arc<Table>> = Vec::new();
        let mut current: Option<Output> = None;
        let mut last_user_key: Vec<u8> = Vec::new();
        let mut steps = 0u64;
        let show = shows_progress(job);
        merged.seek_to_first();
        while merged.valid() {
            steps += 1;
            if steps.is_multiple_of(4096) && self.life.shutting_down() {
                return Err(Error::Closed);
            }
            let ikey = merged.key();
            let parsed = key::parse(ikey).ok_or_else(|| Error::Corruption {
                file: Default::default(),
                offset: 0,
                reason: "malformed internal key in compaction input".into(),
            })?;
            let new_key = key::compare_bytes(parsed.user_key, &last_user_key).is_ne();
            if new_key {
                // Cut only between user keys, so each key's versions stay in one table.
                if current
                    .as_ref()
                    .is_some_and(|o| o.builder.estimated_size() >= target)
                    && let Some(out) = current.take()
                {
                    outputs.push(finish(out)?);
                    self.count_output(&outputs);
                    if show {
                        self.show_progress(job, &outputs, &last_user_key);
                    }
                }
                last_user_key.clear();
                last_user_key.extend_from_slice(parsed.user_key);
            }
            let bottom = parsed.kind == Kind::Delete
                && nothing_below(&tables_now, job.output_level, parsed.user_key);
            if filter.keep(&parsed, bottom) {
                if current.is_none() {
                    let number = self.catalog.allocate_file_number();
                    created.push(number);
                    let path = self.dir.join(file_names::table(number));
                    current = Some(Output {
                        number,
                        builder: TableBuilder::new(
                            self.config.fs.create(&path)?,
                            self.config.table_options(job.output_level),
                        ),
                    });
                }
                if let Some(out) = &mut current {
                    out.builder.add(ikey, merged.value_ref())?;
                }
            }
            merged.next();
        }
        merged.status()?;
        if let Some(out) = current.take() {
            outputs.push(finish(out)?);
            self.count_output(&outputs);
        }
        Ok((outputs, filter.dropped))
    }

    /// Opens the output table `number`, written in full (its sync may still be running).
    fn open_output(&self, number: u64) -> Result<Arc<Table>> {
        let path = self.dir.join(file_names::table(number));
        Ok(Arc::new(
            Table::open(Arc::clone(&self.config.fs), &path, number)?
                .with_cache(Arc::clone(self.block_cache)),
        ))
    }

    /// Reports the `outputs` finished so far.
    fn count_output(&self, outputs: &[Arc<Table>]) {
        if let Some(p) = self.current.lock().as_mut() {
            p.tables_out = outputs.len();
            p.bytes_out = outputs.iter().map(|t| t.file_size()).sum();
        }
    }

    /// Lets reads of user keys up to `boundary` (the last one merged) use the `outputs`
    /// finished so far in place of the inputs (see
    /// [`TableSet::with_progress`](crate::table_set::TableSet::with_progress)).
    fn show_progress(&self, job: &Job, outputs: &[Arc<Table>], boundary: &[u8]) {
        let added: Vec<(usize, Arc<Table>)> = outputs
            .iter()
            .map(|t| (job.output_level, Arc::clone(t)))
            .collect();
        let removed: Vec<(usize, u64)> = job.inputs.iter().map(|(l, t)| (*l, t.number())).collect();
        self.view.publish(|cur| LsmState {
            mem: Arc::clone(&cur.mem),
            imms: cur.imms.clone(),
            tables: Arc::new(cur.tables.with_progress(&added, &removed, boundary)),
        });
    }

    /// Takes the job's progress out of the published state (it stopped short).
    fn hide_progress(&self) {
        self.view.publish(|cur| LsmState {
            mem: Arc::clone(&cur.mem),
            imms: cur.imms.clone(),
            tables: Arc::new(cur.tables.without_progress()),
        });
    }

    /// Replaces the inputs with `outputs` in the manifest and the published state.
    fn install(&self, job: &Job, outputs: &[Arc<Table>]) -> Result<()> {
        let mut log = self.catalog.lock();
        let edit = Edit {
            next_file: Some(self.catalog.next_file()),
            removed: job
                .inputs
                .iter()
                .map(|(l, t)| (*l as u8, t.number()))
                .collect(),
            added: outputs
                .iter()
                .map(|t| (job.output_level as u8, TableMeta::of(t)))
                .collect(),
            ..Edit::default()
        };
        self.catalog.log_edit(&mut log, &edit, self.life)?;
        let removed: Vec<(usize, u64)> = job.inputs.iter().map(|(l, t)| (*l, t.number())).collect();
        let added: Vec<(usize, Arc<Table>)> = outputs
            .iter()
            .map(|t| (job.output_level, Arc::clone(t)))
            .collect();
        self.view.publish(|cur| LsmState {
            mem: Arc::clone(&cur.mem),
            imms: cur.imms.clone(),
            tables: Arc::new(cur.tables.without_progress().apply(&added, &removed)),
        });
        drop(log);
        for (_, t) in &job.inputs {
            t.mark_obsolete();
        }
        Ok(())
    }

    /// Moves a single table down a level: a manifest edit, no rewrite.
    fn install_move(&self, job: &Job) -> Result<()> {
        let Some((level, table)) = job.inputs.first() else {
            return Ok(());
        };
        let mut log = self.catalog.lock();
        let edit = Edit {
            removed: vec![(*level as u8, table.number())],
            added: vec![(job.output_level as u8, TableMeta::of(table))],
            ..Edit::default()
        };
        self.catalog.log_edit(&mut log, &edit, self.life)?;
        let (level, table, to) = (*level, Arc::clone(table), job.output_level);
        self.view.publish(|cur| LsmState {
            mem: Arc::clone(&cur.mem),
            imms: cur.imms.clone(),
            tables: Arc::new(
                cur.tables
                    .apply(&[(to, Arc::clone(&table))], &[(level, table.number())]),
            ),
        });
        Ok(())
    }
}
