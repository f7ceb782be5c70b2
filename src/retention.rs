//! Which versions a flush or compaction keeps: the history-retention rules in one place.
//!
//! Entries arrive in internal order (per key, newest first). For each key, an entry is kept
//! when any of these holds:
//!
//! 1. its seqno is above the *horizon* (the visible seqno when the job started), because a
//!    read that started since may still need it;
//! 2. it is among the newest `versions` versions of the key seen by this job;
//! 3. it is the newest version at or below some live snapshot (or the horizon), because that
//!    reader sees exactly it.
//!
//! At the bottom of the tree (nothing older below the output), a key whose newest version is
//! a tombstone at or below the horizon is dropped entirely — tombstone and history — unless a
//! snapshot older than the tombstone still sees an earlier version.

use crate::key::{Kind, Parsed};

/// The inputs to the rules, fixed when a job starts.
#[derive(Debug, Clone)]
pub(crate) struct Retention {
    /// Versions to keep per key.
    pub versions: usize,
    /// The visible seqno when the job started.
    pub horizon: u64,
    /// Seqnos of live snapshots and iterators, ascending.
    pub snapshots: Vec<u64>,
}

/// Applies [`Retention`] to a stream of entries.
#[derive(Debug)]
pub(crate) struct RetentionFilter {
    rules: Retention,
    /// Snapshot seqnos plus the horizon, ascending and deduplicated.
    boundaries: Vec<u64>,
    key: Vec<u8>,
    started: bool,
    rank: usize,
    prev_seq: u64,
    /// The current key is being dropped as a whole (bottom-level tombstone).
    dropping_key: bool,
    /// Entries dropped so far.
    pub dropped: u64,
}

impl RetentionFilter {
    pub(crate) fn new(rules: Retention) -> RetentionFilter {
        let mut boundaries = rules.snapshots.clone();
        boundaries.push(rules.horizon);
        boundaries.sort_unstable();
        boundaries.dedup();
        RetentionFilter {
            rules,
            boundaries,
            key: Vec::new(),
            started: false,
            rank: 0,
            prev_seq: u64::MAX,
            dropping_key: false,
            dropped: 0,
        }
    }

    /// True when some boundary `b` has `seq <= b < upper`: the entry is what a reader at `b`
    /// sees.
    fn seen_by_a_reader(&self, seq: u64, upper: u64) -> bool {
        let i = self.boundaries.partition_point(|&b| b < seq);
        self.boundaries.get(i).is_some_and(|&b| b < upper)
    }

    /// Decides one entry. `bottom` says nothing older than this job's inputs exists below for
    /// this key, so a tombstone may be dropped with everything under it.
    pub(crate) fn keep(&mut self, e: &Parsed<'_>, bottom: bool) -> bool {
        if !self.started || e.user_key != self.key.as_slice() {
            self.started = true;
            self.key.clear();
            self.key.extend_from_slice(e.user_key);
            self.rank = 0;
            self.prev_seq = u64::MAX;
            self.dropping_key = bottom
                && e.kind == Kind::Delete
                && e.seq <= self.rules.horizon
                && !self.rules.snapshots.iter().any(|&s| s < e.seq);
        }
        let keep = !self.dropping_key
            && (e.seq > self.rules.horizon
                || self.rank < self.rules.versions
                || self.seen_by_a_reader(e.seq, self.prev_seq));
        self.rank += 1;
        self.prev_seq = e.seq;
        if !keep {
            self.dropped += 1;
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(rules: Retention, entries: &[(&[u8], u64, Kind)], bottom: bool) -> Vec<u64> {
        let mut f = RetentionFilter::new(rules);
        entries
            .iter()
            .filter(|(k, s, kind)| {
                f.keep(
                    &Parsed {
                        user_key: k,
                        seq: *s,
                        kind: *kind,
                    },
                    bottom,
                )
            })
            .map(|(_, s, _)| *s)
            .collect()
    }

    const P: Kind = Kind::Put;
    const D: Kind = Kind::Delete;

    #[test]
    fn keeps_the_newest_n_versions() {
        let e: &[(&[u8], u64, Kind)] = &[
            (b"a", 9, P),
            (b"a", 7, P),
            (b"a", 5, D),
            (b"a", 2, P),
            (b"b", 8, P),
            (b"b", 1, P),
        ];
        let r = |n| Retention {
            versions: n,
            horizon: 100,
            snapshots: vec![],
        };
        assert_eq!(run(r(1), e, false), vec![9, 8]);
        assert_eq!(run(r(2), e, false), vec![9, 7, 8, 1]);
        assert_eq!(run(r(10), e, false), vec![9, 7, 5, 2, 8, 1]);
    }

    #[test]
    fn keeps_what_snapshots_and_recent_readers_see() {
        let e: &[(&[u8], u64, Kind)] = &[(b"a", 9, P), (b"a", 7, P), (b"a", 5, P), (b"a", 2, P)];
        // A snapshot at 6 sees version 5; one at 3 sees 2; one at 1 sees nothing.
        let r = Retention {
            versions: 1,
            horizon: 100,
            snapshots: vec![1, 3, 6],
        };
        assert_eq!(run(r, e, false), vec![9, 5, 2]);
        // Everything above the horizon stays, plus the newest at or below it.
        let r = Retention {
            versions: 1,
            horizon: 6,
            snapshots: vec![],
        };
        assert_eq!(run(r, e, false), vec![9, 7, 5]);
    }

    #[test]
    fn bottom_level_drops_deleted_keys_entirely() {
        let e: &[(&[u8], u64, Kind)] = &[(b"a", 9, D), (b"a", 7, P), (b"b", 8, P)];
        let r = |snaps: Vec<u64>, horizon| Retention {
            versions: 3,
            horizon,
            snapshots: snaps,
        };
        assert_eq!(run(r(vec![], 100), e, true), vec![8]);
        // Not at the bottom: the tombstone must stay to shadow older data below.
        assert_eq!(run(r(vec![], 100), e, false), vec![9, 7, 8]);
        // A snapshot from before the delete still sees version 7.
        assert_eq!(run(r(vec![8], 100), e, true), vec![9, 7, 8]);
        // A snapshot after the delete sees "absent" either way.
        assert_eq!(run(r(vec![10], 100), e, true), vec![8]);
        // A delete newer than the horizon is kept.
        assert_eq!(run(r(vec![], 8), e, true), vec![9, 7, 8]);
    }
}
