//! Choosing what to compact: level scores, input sets, trivial moves.
//!
//! Level 0 scores by table count against `l0_compaction_trigger`; level `i ≥ 1` scores by
//! bytes against its target (`level1_bytes × level_multiplier^(i-1)`); the last level has no
//! target. The highest score of at least 1 wins. Level 0 compacts all its tables (they
//! overlap each other) with the level-1 tables they overlap; a deeper level compacts one table,
//! chosen round-robin through the key space, with the tables of the next level it overlaps.
//! When nothing in the next level overlaps, the table is moved down without rewriting,
//! provided both levels are configured with the same compression (as RocksDB requires):
//! otherwise it is rewritten, so every table in a level has that level's codec.
//!
//! Below its trigger, level 0 is also compacted once scans have paid for it
//! ([`Config::seek_compaction_bytes`]): each scan that merged the level-0 tables is charged
//! that many bytes per table, against the bytes the compaction would read.

use std::sync::Arc;

use crate::config::Config;
use crate::key;
use crate::limits::NUM_LEVELS;
use crate::sstable::table_reader::Table;
use crate::table_set::TableSet;

/// A compaction to run.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    /// Input tables with their levels.
    pub inputs: Vec<(usize, Arc<Table>)>,
    /// Where the output goes.
    pub output_level: usize,
    /// Move the single input without rewriting it.
    pub trivial_move: bool,
}

impl Job {
    pub(crate) fn input_bytes(&self) -> u64 {
        self.inputs.iter().map(|(_, t)| t.file_size()).sum()
    }
}

/// Target size of `level` (≥ 1).
pub(crate) fn level_target(config: &Config, level: usize) -> u64 {
    let mut t = config.level1_bytes;
    for _ in 1..level {
        t = t.saturating_mul(config.level_multiplier);
    }
    t
}

/// The compaction score of every level.
pub(crate) fn scores(config: &Config, tables: &TableSet) -> Vec<f64> {
    (0..NUM_LEVELS)
        .map(|level| {
            if level == 0 {
                tables.level(0).len() as f64 / config.l0_compaction_trigger as f64
            } else if level + 1 == NUM_LEVELS {
                0.0
            } else {
                tables.level_bytes(level) as f64 / level_target(config, level) as f64
            }
        })
        .collect()
}

/// Bytes that must be compacted before every level is back under its target (an estimate,
/// as RocksDB computes it: each level's excess, plus level 0 when it is over its trigger).
pub(crate) fn pending_bytes(config: &Config, tables: &TableSet) -> u64 {
    let mut pending = 0;
    if tables.level(0).len() >= config.l0_compaction_trigger {
        pending += tables.level_bytes(0);
    }
    for level in 1..NUM_LEVELS - 1 {
        pending += tables
            .level_bytes(level)
            .saturating_sub(level_target(config, level));
    }
    pending
}

fn user_range(tables: &[Arc<Table>]) -> Option<(Vec<u8>, Vec<u8>)> {
    let smallest = tables.iter().map(|t| t.smallest_user_key()).min()?;
    let largest = tables.iter().map(|t| t.largest_user_key()).max()?;
    Some((smallest.to_vec(), largest.to_vec()))
}

/// Tables of `level` whose user-key range intersects `[lo, hi]` (`hi = None`: unbounded).
pub(crate) fn overlapping(
    tables: &TableSet,
    level: usize,
    lo: &[u8],
    hi: Option<&[u8]>,
) -> Vec<Arc<Table>> {
    tables
        .level(level)
        .iter()
        .filter(|t| hi.is_none_or(|h| t.smallest_user_key() <= h) && t.largest_user_key() >= lo)
        .cloned()
        .collect()
}

/// True when no table below `level` holds `user_key`.
pub(crate) fn nothing_below(tables: &TableSet, level: usize, user_key: &[u8]) -> bool {
    (level + 1..NUM_LEVELS).all(|l| {
        let lvl = tables.level(l);
        let i = lvl.partition_point(|t| t.largest_user_key() < user_key);
        lvl.get(i).is_none_or(|t| t.smallest_user_key() > user_key)
    })
}

/// Builds the job that compacts `inputs` (all from `level`) into `level + 1`.
fn job_for(
    config: &Config,
    tables: &TableSet,
    level: usize,
    inputs: Vec<Arc<Table>>,
) -> Option<Job> {
    let (lo, hi) = user_range(&inputs)?;
    let next = overlapping(tables, level + 1, &lo, Some(&hi));
    let same_codec = config.compression_for(level) == config.compression_for(level + 1);
    let trivial_move = next.is_empty() && inputs.len() == 1 && same_codec;
    let mut all: Vec<(usize, Arc<Table>)> = inputs.into_iter().map(|t| (level, t)).collect();
    all.extend(next.into_iter().map(|t| (level + 1, t)));
    Some(Job {
        inputs: all,
        output_level: level + 1,
        trivial_move,
    })
}

/// Scans through level 0 before a read-triggered compaction, however small the tables (as
/// LevelDB allows every file at least 100 seeks).
const MIN_SEEKS: u64 = 100;

/// The compaction of level 0 that scans have paid for, if they have (see the module
/// comment).
pub(crate) fn pick_for_reads(config: &Config, tables: &TableSet) -> Option<Job> {
    let l0 = tables.level(0);
    if config.seek_compaction_bytes == 0 || l0.is_empty() {
        return None;
    }
    let job = job_for(config, tables, 0, l0.to_vec())?;
    let charged = tables
        .l0_seeks()
        .saturating_mul(l0.len() as u64)
        .saturating_mul(config.seek_compaction_bytes);
    (tables.l0_seeks() >= MIN_SEEKS && charged >= job.input_bytes()).then_some(job)
}

/// The most urgent automatic compaction, if any level scores at least 1. `cursor[level]` is
/// the largest key compacted last time at that level (round-robin pointer).
pub(crate) fn pick(config: &Config, tables: &TableSet, cursor: &[Vec<u8>]) -> Option<Job> {
    let s = scores(config, tables);
    let (level, score) = s
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(l, s)| (l, *s))?;
    if score < 1.0 {
        return None;
    }
    if level == 0 {
        return job_for(config, tables, 0, tables.level(0).to_vec());
    }
    let lvl = tables.level(level);
    let after = cursor.get(level).map_or(&[][..], |c| c.as_slice());
    let table = lvl
        .iter()
        .find(|t| key::compare(&t.props().largest, after).is_gt() || after.is_empty())
        .or_else(|| lvl.first())?;
    job_for(config, tables, level, vec![Arc::clone(table)])
}

/// Jobs that push every table overlapping `[lo, hi]` down one level, from level 0 to the
/// level above the deepest non-empty one. Computed one level at a time by the caller.
pub(crate) fn range_job(
    config: &Config,
    tables: &TableSet,
    level: usize,
    lo: &[u8],
    hi: Option<&[u8]>,
) -> Option<Job> {
    let inputs = overlapping(tables, level, lo, hi);
    if inputs.is_empty() {
        return None;
    }
    // Level-0 tables overlap each other: widen the choice until no other level-0 table
    // overlaps it, or an older table left behind would shadow newer data moved below.
    let inputs = if level == 0 {
        let mut chosen = inputs;
        loop {
            let (lo, hi) = user_range(&chosen)?;
            let wider = overlapping(tables, 0, &lo, Some(&hi));
            if wider.len() == chosen.len() {
                break chosen;
            }
            chosen = wider;
        }
    } else {
        inputs
    };
    job_for(config, tables, level, inputs)
}

/// One job merging every table into a single sorted run at the deepest non-empty level
/// (level 1 at least).
pub(crate) fn full_job(tables: &TableSet) -> Option<Job> {
    let inputs: Vec<(usize, Arc<Table>)> = (0..NUM_LEVELS)
        .flat_map(|l| tables.level(l).iter().map(move |t| (l, Arc::clone(t))))
        .collect();
    if inputs.is_empty() {
        return None;
    }
    let output_level = inputs.iter().map(|(l, _)| *l).max().unwrap_or(1).max(1);
    Some(Job {
        inputs,
        output_level,
        trivial_move: false,
    })
}
