//! Model test: random sequences of puts, deletes, batches, reads, ranges both ways (and
//! from both ends at once), prefixes, snapshots, version histories, reads as of a version,
//! compare-and-set, flushes, compactions and reopens, checked against an in-memory model
//! that keeps every version.
//!
//! Reads of the current state and of snapshots must match the model exactly. Histories may
//! lose versions only as `HistoryRetention` allows: the newest `versions` versions of a key
//! (counting tombstones, and except what a bottom-level compaction dropped together with a
//! tombstone that was the key's newest version) and every value a live snapshot sees always
//! remain.
//!
//! `STRATA_MODEL_CASES=2000 cargo test --release --test model` runs a long search.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use common::faultfs::FaultFs;
use proptest::prelude::*;
use strata::{Db, Error, FileSystem, SeqNo, Snapshot, WriteBatch};

/// One operation of a generated sequence. Keys and snapshots are chosen by index.
#[derive(Debug, Clone)]
enum Op {
    Put(u8, u16),
    Delete(u8),
    Batch(Vec<(u8, Option<u16>)>),
    Get(u8),
    Range(u8, u8, bool),
    /// A range consumed from both ends, the bits choosing the end of each step.
    RangeBothEnds(u8, u8, u32),
    Prefix(u8),
    Versions(u8),
    GetAt(u8, u8),
    Cas(u8, u8, Option<u16>),
    TakeSnapshot,
    DropSnapshot(u8),
    SnapshotGet(u8, u8),
    SnapshotRange(u8, u8, u8, bool),
    SnapshotVersions(u8, u8),
    Flush,
    Compact,
    CompactRange(u8, u8),
    Reopen,
}

const KEYS: &[&str] = &[
    "", "a", "aa", "ab", "b", "ba", "bb", "c", "ca", "d", "da", "db", "dd", "e",
];

fn key(i: u8) -> &'static str {
    KEYS[usize::from(i) % KEYS.len()]
}

/// A value whose size varies enough to fill small memtables; the number makes it unique.
fn value(n: u64, size: u16) -> String {
    format!("{n}:{}", "v".repeat(usize::from(size % 700)))
}

fn op() -> impl Strategy<Value = Op> {
    let k = || 0..KEYS.len() as u8;
    prop_oneof![
        8 => (k(), any::<u16>()).prop_map(|(k, v)| Op::Put(k, v)),
        3 => k().prop_map(Op::Delete),
        3 => prop::collection::vec((k(), prop::option::weighted(0.8, any::<u16>())), 0..6)
            .prop_map(Op::Batch),
        3 => k().prop_map(Op::Get),
        2 => (k(), k(), any::<bool>()).prop_map(|(a, b, r)| Op::Range(a, b, r)),
        1 => (k(), k(), any::<u32>()).prop_map(|(a, b, bits)| Op::RangeBothEnds(a, b, bits)),
        1 => k().prop_map(Op::Prefix),
        3 => k().prop_map(Op::Versions),
        3 => (k(), any::<u8>()).prop_map(|(k, v)| Op::GetAt(k, v)),
        3 => (k(), any::<u8>(), prop::option::of(any::<u16>()))
            .prop_map(|(k, e, v)| Op::Cas(k, e, v)),
        2 => Just(Op::TakeSnapshot),
        1 => any::<u8>().prop_map(Op::DropSnapshot),
        2 => (any::<u8>(), k()).prop_map(|(s, k)| Op::SnapshotGet(s, k)),
        1 => (any::<u8>(), k(), k(), any::<bool>())
            .prop_map(|(s, a, b, r)| Op::SnapshotRange(s, a, b, r)),
        2 => (any::<u8>(), k()).prop_map(|(s, k)| Op::SnapshotVersions(s, k)),
        1 => Just(Op::Flush),
        1 => Just(Op::Compact),
        1 => (k(), k()).prop_map(|(a, b)| Op::CompactRange(a, b)),
        1 => Just(Op::Reopen),
    ]
}

/// Every version ever written, per key, oldest first: (seqno, value or tombstone).
#[derive(Debug, Default)]
struct Model {
    keys: BTreeMap<String, Vec<(u64, Option<String>)>>,
    last_seq: u64,
}

impl Model {
    fn write(&mut self, seq: u64, k: &str, v: Option<String>) {
        assert!(
            seq > self.last_seq,
            "seqno {seq} not above {}",
            self.last_seq
        );
        self.last_seq = seq;
        self.keys.entry(k.to_string()).or_default().push((seq, v));
    }

    /// The version of `k` visible at `seq`.
    fn at(&self, k: &str, seq: u64) -> Option<&(u64, Option<String>)> {
        self.keys.get(k)?.iter().rev().find(|(s, _)| *s <= seq)
    }

    fn get(&self, k: &str, seq: u64) -> Option<String> {
        self.at(k, seq).and_then(|(_, v)| v.clone())
    }

    /// The current version of `k` (`None` when absent or deleted), as compare-and-set sees it.
    fn current_version(&self, k: &str) -> Option<u64> {
        self.at(k, self.last_seq)
            .and_then(|(s, v)| v.as_ref().map(|_| *s))
    }

    fn range(&self, lo: &str, hi: &str, seq: u64) -> Vec<(String, String)> {
        if lo >= hi {
            return Vec::new();
        }
        self.keys
            .range::<str, _>((Bound::Included(lo), Bound::Excluded(hi)))
            .filter_map(|(k, _)| Some((k.clone(), self.get(k, seq)?)))
            .collect()
    }
}

struct Harness {
    fs: Arc<FaultFs>,
    dir: &'static Path,
    versions: usize,
    db: Option<Db>,
    model: Model,
    snapshots: Vec<(Snapshot, u64)>,
    n: u64,
}

impl Harness {
    fn open(&mut self) {
        self.db = Some(
            Db::builder(self.dir)
                .filesystem(Arc::clone(&self.fs) as Arc<dyn FileSystem>)
                .memtable_bytes(4096)
                .wal_segment_bytes(4096)
                .block_bytes(256)
                .l0_limits(2, 8, 16)
                .level_sizes(8 << 10, 4, 4 << 10)
                .history_versions(self.versions)
                .open()
                .unwrap(),
        );
    }

    fn db(&self) -> &Db {
        self.db.as_ref().unwrap()
    }

    fn snapshot(&self, i: u8) -> Option<&(Snapshot, u64)> {
        if self.snapshots.is_empty() {
            return None;
        }
        self.snapshots.get(usize::from(i) % self.snapshots.len())
    }

    /// Checks a key's retained history, as listed by the store, against the model.
    /// `upto` is the seqno the listing is as of.
    fn check_history(&self, k: &str, listed: &[(u64, Option<String>)], upto: u64) {
        let all: Vec<&(u64, Option<String>)> = self
            .model
            .keys
            .get(k)
            .map(|v| v.iter().rev().filter(|(s, _)| *s <= upto).collect())
            .unwrap_or_default();
        // Newest first, each one a real version.
        for pair in listed.windows(2) {
            assert!(pair[0].0 > pair[1].0, "{k:?}: history out of order");
        }
        for item in listed {
            assert!(
                all.contains(&item),
                "{k:?}: listed version {item:?} was never written"
            );
        }
        for required in self.required(k, upto) {
            assert!(
                listed.contains(required),
                "{k:?}: retained version {required:?} missing from {listed:?}"
            );
        }
    }

    /// The versions of `k` at or below `upto` that retention must keep.
    fn required(&self, k: &str, upto: u64) -> Vec<&(u64, Option<String>)> {
        let Some(all) = self.model.keys.get(k) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        // The newest `versions` versions. While a tombstone was a key's newest version, a
        // compaction reaching the bottom level may have dropped the key entirely, so only
        // versions written after the last tombstone are sure to count.
        let last_delete = all.iter().rev().find(|(_, v)| v.is_none()).map(|(s, _)| *s);
        out.extend(
            all.iter()
                .rev()
                .take(self.versions)
                .filter(|(s, _)| last_delete.is_none_or(|d| *s > d)),
        );
        // What each live snapshot sees, if that is a value.
        for (_, seq) in &self.snapshots {
            if let Some(v) = self.model.at(k, *seq)
                && v.1.is_some()
            {
                out.push(v);
            }
        }
        out.retain(|(s, _)| *s <= upto);
        out
    }

    fn run(&mut self, op: &Op) {
        match op {
            Op::Put(k, v) => {
                self.n += 1;
                let val = value(self.n, *v);
                let seq = self.db().put(key(*k), &val).unwrap().get();
                self.model.write(seq, key(*k), Some(val));
            }
            Op::Delete(k) => {
                let seq = self.db().delete(key(*k)).unwrap().get();
                self.model.write(seq, key(*k), None);
            }
            Op::Batch(ops) => {
                let mut batch = WriteBatch::new();
                let mut vals = Vec::new();
                for (k, v) in ops {
                    self.n += 1;
                    let val = v.map(|v| value(self.n, v));
                    match &val {
                        Some(val) => batch.put(key(*k), val),
                        None => batch.delete(key(*k)),
                    };
                    vals.push((key(*k), val));
                }
                let written = self.db().write(batch).unwrap();
                assert_eq!(
                    written.is_none(),
                    vals.is_empty(),
                    "a batch has a version exactly when it writes"
                );
                if let Some(last) = written {
                    let first = (last.get() + 1).saturating_sub(vals.len() as u64);
                    for (i, (k, v)) in vals.into_iter().enumerate() {
                        self.model.write(first + i as u64, k, v);
                    }
                }
            }
            Op::Get(k) => {
                let got = self.db().get(key(*k)).unwrap();
                let want = self.model.get(key(*k), self.model.last_seq);
                assert_eq!(got.as_deref(), want.as_deref().map(str::as_bytes), "get");
                let versioned = self.db().get_versioned(key(*k)).unwrap();
                assert_eq!(
                    versioned.map(|v| v.version.get()),
                    self.model.current_version(key(*k)),
                    "get_versioned {:?}",
                    key(*k)
                );
            }
            Op::Range(a, b, rev) => {
                let (lo, hi) = (key(*a), key(*b));
                let want = self.model.range(lo, hi, self.model.last_seq);
                let it = self.db().range(lo..hi);
                check_range(it, want, *rev, "range");
            }
            Op::RangeBothEnds(a, b, bits) => {
                let (lo, hi) = (key(*a), key(*b));
                let want = self.model.range(lo, hi, self.model.last_seq);
                let mut it = self.db().range(lo..hi);
                let (mut front, mut back) = (Vec::new(), Vec::new());
                for step in 0.. {
                    let item = if bits >> (step % 32) & 1 == 0 {
                        // The front end lends every other entry instead of handing it out.
                        if bits >> ((step + 16) % 32) & 1 == 0 {
                            it.next().map(|r| (r, &mut front))
                        } else {
                            it.next_ref()
                                .map(|r| r.map(|(k, v)| (k.to_vec().into(), v.to_vec().into())))
                                .map(|r| (r, &mut front))
                        }
                    } else {
                        it.next_back().map(|r| (r, &mut back))
                    };
                    let Some((r, side)) = item else { break };
                    let (k, v) = r.unwrap();
                    side.push((
                        String::from_utf8(k.to_vec()).unwrap(),
                        String::from_utf8(v.to_vec()).unwrap(),
                    ));
                }
                // Both ends stop where they meet: together they yield each entry once.
                assert!(
                    it.next().is_none() && it.next_back().is_none(),
                    "not exhausted"
                );
                back.reverse();
                front.extend(back);
                assert_eq!(front, want, "range from both ends");
            }
            Op::Prefix(k) => {
                let p = key(*k);
                let want: Vec<(String, String)> = self
                    .model
                    .range("", "\u{10ffff}", self.model.last_seq)
                    .into_iter()
                    .filter(|(k, _)| k.starts_with(p))
                    .collect();
                check_range(self.db().prefix(p), want, false, "prefix");
            }
            Op::Versions(k) => {
                let listed = versions(self.db().versions(key(*k)));
                self.check_history(key(*k), &listed, self.model.last_seq);
            }
            Op::GetAt(k, back) => {
                let k = key(*k);
                let at = self.model.last_seq.saturating_sub(u64::from(*back % 32));
                let listed = versions(self.db().versions(k));
                let got = self.db().get_at(k, SeqNo::new(at)).unwrap();
                let got = got.map(|b| String::from_utf8(b.to_vec()).unwrap());
                match self.model.at(k, at) {
                    // The version visible at `at` is retained: it is what must be read.
                    Some(v) if self.required(k, self.model.last_seq).contains(&v) => {
                        assert_eq!(got, v.1, "get_at {k:?} {at}");
                    }
                    // Otherwise the newest retained version at or below `at`, or nothing.
                    _ => {
                        let older: Vec<Option<String>> = listed
                            .iter()
                            .filter(|(s, _)| *s <= at)
                            .map(|(_, v)| v.clone())
                            .collect();
                        assert!(
                            got.is_none() || older.contains(&got),
                            "get_at {k:?} {at}: {got:?} is no retained version"
                        );
                    }
                }
            }
            Op::Cas(k, pick, v) => {
                let k = key(*k);
                let current = self.model.current_version(k);
                let expected = match pick % 4 {
                    0 | 1 => current,
                    2 => None,
                    _ => Some(SeqNo::new(u64::from(*pick) + 1)).map(|s| s.get()),
                };
                self.n += 1;
                let new = v.map(|v| value(self.n, v));
                let result = match &new {
                    Some(v) => self.db().compare_and_set(k, expected.map(SeqNo::new), v),
                    None => self.db().compare_and_delete(k, expected.map(SeqNo::new)),
                };
                match result {
                    Ok(seq) => {
                        assert_eq!(expected, current, "CAS {k:?} succeeded on a stale version");
                        self.model.write(seq.get(), k, new);
                    }
                    Err(Error::Conflict(conflict)) => {
                        assert_ne!(expected, current, "CAS {k:?} refused the current version");
                        assert_eq!(conflict.current.map(|s| s.get()), current, "conflict");
                    }
                    Err(e) => panic!("CAS {k:?} failed: {e}"),
                }
            }
            Op::TakeSnapshot => {
                if self.snapshots.len() < 4 {
                    let snap = self.db().snapshot();
                    let seq = snap.seqno().get();
                    assert_eq!(seq, self.model.last_seq, "snapshot seqno");
                    self.snapshots.push((snap, seq));
                }
            }
            Op::DropSnapshot(i) => {
                if !self.snapshots.is_empty() {
                    let i = usize::from(*i) % self.snapshots.len();
                    self.snapshots.remove(i);
                }
            }
            Op::SnapshotGet(i, k) => {
                if let Some((snap, seq)) = self.snapshot(*i) {
                    let got = snap.get(key(*k)).unwrap();
                    let want = self.model.get(key(*k), *seq);
                    assert_eq!(
                        got.as_deref(),
                        want.as_deref().map(str::as_bytes),
                        "snapshot get"
                    );
                }
            }
            Op::SnapshotRange(i, a, b, rev) => {
                if let Some((snap, seq)) = self.snapshot(*i) {
                    let (lo, hi) = (key(*a), key(*b));
                    let want = self.model.range(lo, hi, *seq);
                    check_range(snap.range(lo..hi), want, *rev, "snapshot range");
                }
            }
            Op::SnapshotVersions(i, k) => {
                if let Some((snap, seq)) = self.snapshot(*i) {
                    let listed = versions(snap.versions(key(*k)));
                    self.check_history(key(*k), &listed, *seq);
                }
            }
            Op::Flush => self.db().flush().unwrap(),
            Op::Compact => {
                self.db().compact().unwrap();
            }
            Op::CompactRange(a, b) => {
                let (lo, hi) = (key(*a), key(*b));
                self.db().compact_range(lo..=hi).unwrap();
            }
            Op::Reopen => {
                self.snapshots.clear();
                self.db.take().unwrap().close().unwrap();
                self.open();
                assert_eq!(self.db().last_seqno().get(), self.model.last_seq, "reopen");
            }
        }
    }

    /// Every key's full read and history against the model.
    fn check_all(&self) {
        let want = self.model.range("", "\u{10ffff}", self.model.last_seq);
        check_range(self.db().iter(), want.clone(), false, "final scan");
        check_range(self.db().iter(), want, true, "final reverse scan");
        for k in KEYS {
            let listed = versions(self.db().versions(k));
            self.check_history(k, &listed, self.model.last_seq);
        }
    }
}

fn versions(it: strata::Versions) -> Vec<(u64, Option<String>)> {
    it.map(|v| {
        let v = v.unwrap();
        let value = v.value.map(|b| String::from_utf8(b.to_vec()).unwrap());
        (v.seqno.get(), value)
    })
    .collect()
}

fn check_range(it: strata::Range, mut want: Vec<(String, String)>, rev: bool, what: &str) {
    let got: Vec<(String, String)> = if rev {
        want.reverse();
        it.rev()
            .map(|r| {
                let (k, v) = r.unwrap();
                (
                    String::from_utf8(k.to_vec()).unwrap(),
                    String::from_utf8(v.to_vec()).unwrap(),
                )
            })
            .collect()
    } else {
        // Entries taken in turns by `next` and `next_ref`, which share the position.
        let mut it = it;
        let mut got = Vec::new();
        loop {
            let entry = if got.len() % 2 == 0 {
                it.next().map(|r| {
                    let (k, v) = r.unwrap();
                    (k.to_vec(), v.to_vec())
                })
            } else {
                it.next_ref().map(|r| {
                    let (k, v) = r.unwrap();
                    (k.to_vec(), v.to_vec())
                })
            };
            let Some((k, v)) = entry else { break };
            got.push((String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()));
        }
        assert!(
            it.next_ref().is_none() && it.next().is_none(),
            "{what}: not exhausted"
        );
        got
    };
    assert_eq!(got, want, "{what}");
}

fn cases() -> u32 {
    std::env::var("STRATA_MODEL_CASES").map_or(128, |v| v.parse().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_store_behaves_like_the_model(
        versions in 1usize..4,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let mut h = Harness {
            fs: FaultFs::new(),
            dir: Path::new("/db"),
            versions,
            db: None,
            model: Model::default(),
            snapshots: Vec::new(),
            n: 0,
        };
        h.open();
        for op in &ops {
            h.run(op);
        }
        h.check_all();
    }
}
