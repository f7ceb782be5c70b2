//! The Raft log store: entries, vote, committed pointer and purge marker, kept in a second
//! strata [`Db`] of their own (`<replica>/log`).
//!
//! # Why a second `Db`, not a dedicated segmented log
//!
//! Both candidates were built and timed on the development machine (an `#[ignore]` test in
//! `replication::measure`; run it with `cargo test --release --features replication --lib
//! replication::measure -- --ignored --nocapture`). Per append of one batch, fsync included:
//!
//! | batch | dedicated log file (WAL framing) | second `Db` |
//! |---|---|---|
//! | 1 entry × 120 B | 2.0 ms | 1.4 ms |
//! | 1 entry × 12 KB | 1.4 ms | 1.4 ms |
//! | 16 entries × 120 B | 1.5 ms | 2.4 ms |
//! | 64 entries × 1.2 KB | 3.9 ms | 3.3 ms |
//!
//! The cost is the fsync, the same one in both; the differences are within run-to-run noise.
//! With no measurable speed to win, the `Db` wins on what it already proves: atomic batches
//! (a purge and its marker, a truncation, an append are each one `WriteBatch`), checksummed
//! records, torn-tail handling and power-loss recovery, all covered by the engine's crash and
//! fault-injection tests. A dedicated log would need its own segment index, torn-tail rules
//! and purge bookkeeping, written and proven again. Its cost is write amplification: entries
//! still live when a memtable (24 MiB) fills are written a second time into a table; entries
//! purged before that die in the memtable (a put shadowed by its tombstone).
//!
//! # Layout and durability
//!
//! ```text
//! 'e' | index: u64 big-endian  -> codec(Entry)        (big-endian so keys sort by index)
//! 'v'                          -> codec(Vote)
//! 'p'                          -> codec(LogId)        last purged log id
//! 'c'                          -> codec(LogId)        last committed log id (a hint)
//! ```
//!
//! The `Db` runs with [`SyncMode::Buffered`] and this store calls [`Db::sync`] itself:
//! `append` writes all its entries as one batch and fsyncs once before reporting them
//! flushed (a leader pays one fsync per batch of entries, not per entry); `save_vote`,
//! `truncate` and `purge` fsync before returning; `purge` deletes the entries and records
//! the new marker in one batch. `save_committed` is not synced: a lost committed pointer only
//! means less is re-applied at restart. Every write goes through the one `Db`, in call order,
//! so vote and log writes are never reordered.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::{Arc, Weak};

use openraft::storage::{LogFlushed, RaftLogStorage};
use openraft::{LogState, RaftLogReader};

use super::codec;
use super::error::{ReplicationError, StorageResult, blocking};
use super::types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::{Db, SyncMode, WriteBatch};

const ENTRY: u8 = b'e';
const VOTE: &[u8] = b"v";
const PURGED: &[u8] = b"p";
const COMMITTED: &[u8] = b"c";

/// Most encoded entry bytes one `limited_get_log_entries` call returns (at least one entry),
/// which bounds the size of an AppendEntries request.
pub const MAX_READ_BYTES: usize = 4 << 20;

// Big-endian so that keys sort by index.
#[allow(clippy::big_endian_bytes)]
fn entry_key(index: u64) -> [u8; 9] {
    let mut k = [ENTRY; 9];
    k[1..].copy_from_slice(&index.to_be_bytes());
    k
}

#[allow(clippy::big_endian_bytes)]
fn index_of(key: &[u8]) -> Result<u64, crate::Error> {
    match key {
        [ENTRY, rest @ ..] if rest.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(rest);
            Ok(u64::from_be_bytes(b))
        }
        _ => Err(corrupt(format!("unexpected key {key:?} among log entries"))),
    }
}

fn corrupt(reason: String) -> crate::Error {
    crate::Error::Corruption {
        file: Default::default(),
        offset: 0,
        reason: format!("raft log: {reason}"),
    }
}

fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, ReplicationError> {
    let index = index_of(key)?;
    let entry: Entry = codec::decode(value)?;
    if entry.log_id.index != index {
        return Err(corrupt(format!(
            "entry stored under index {index} says index {}",
            entry.log_id.index
        ))
        .into());
    }
    Ok(entry)
}

fn get_decoded<T: serde::de::DeserializeOwned>(
    db: &Db,
    key: &[u8],
) -> Result<Option<T>, ReplicationError> {
    match db.get(key)? {
        Some(v) => Ok(Some(codec::decode(&v)?)),
        None => Ok(None),
    }
}

fn bounds<RB: RangeBounds<u64>>(range: &RB) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = match range.start_bound() {
        Bound::Included(&i) => Bound::Included(entry_key(i).to_vec()),
        Bound::Excluded(&i) => Bound::Excluded(entry_key(i).to_vec()),
        Bound::Unbounded => Bound::Included(vec![ENTRY]),
    };
    let upper = match range.end_bound() {
        Bound::Included(&i) => Bound::Included(entry_key(i).to_vec()),
        Bound::Excluded(&i) => Bound::Excluded(entry_key(i).to_vec()),
        Bound::Unbounded => Bound::Excluded(vec![ENTRY + 1]),
    };
    (lower, upper)
}

/// Reads entries in `range`, stopping after `max_bytes` of encoded entries (at least one).
fn read_entries(
    db: &Db,
    range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    max_bytes: usize,
) -> Result<Vec<Entry>, ReplicationError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    for item in db.range(range) {
        let (k, v) = item?;
        bytes += v.len();
        out.push(decode_entry(&k, &v)?);
        if bytes >= max_bytes {
            break;
        }
    }
    Ok(out)
}

/// The durable Raft log of one replica.
#[derive(Debug)]
pub struct LogStore {
    db: Db,
    /// Shared with every reader: the store is released once no strong reference remains.
    token: Arc<()>,
}

/// A cheap, cloneable reader of the log, used by openraft's replication tasks.
#[derive(Debug, Clone)]
pub struct LogReader {
    db: Db,
    _token: Arc<()>,
}

impl LogStore {
    /// Opens (or creates) the log store in `dir`.
    pub fn open(dir: &Path) -> Result<LogStore, ReplicationError> {
        let db = Db::builder(dir).sync_mode(SyncMode::Buffered).open()?;
        Ok(LogStore {
            db,
            token: Arc::new(()),
        })
    }

    /// Turns dead once the store and every reader of it are dropped (the `Db` is then
    /// closed).
    pub fn liveness(&self) -> Weak<()> {
        Arc::downgrade(&self.token)
    }

    /// Syncs and closes the store.
    pub fn close(self) -> Result<(), ReplicationError> {
        Ok(self.db.close()?)
    }

    fn reader(&self) -> LogReader {
        LogReader {
            db: self.db.clone(),
            _token: Arc::clone(&self.token),
        }
    }

    /// Writes `batch` and fsyncs it.
    async fn write_synced(&self, batch: WriteBatch) -> Result<(), ReplicationError> {
        let db = self.db.clone();
        blocking(move || {
            db.write(batch)?;
            db.sync()?;
            Ok(())
        })
        .await
    }

    /// Keys of the entries present in `range`.
    async fn keys_in(
        &self,
        range: (Bound<Vec<u8>>, Bound<Vec<u8>>),
    ) -> Result<Vec<Vec<u8>>, ReplicationError> {
        let db = self.db.clone();
        blocking(move || {
            let mut keys = Vec::new();
            for item in db.range(range) {
                keys.push(item?.0.to_vec());
            }
            Ok(keys)
        })
        .await
    }
}

impl RaftLogReader<TypeConfig> for LogReader {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        let b = bounds(&range);
        blocking(move || read_entries(&db, b, usize::MAX))
            .await
            .read_logs()
    }

    async fn limited_get_log_entries(
        &mut self,
        start: u64,
        end: u64,
    ) -> Result<Vec<Entry>, StorageError> {
        let db = self.db.clone();
        let b = bounds(&(start..end));
        blocking(move || read_entries(&db, b, MAX_READ_BYTES))
            .await
            .read_logs()
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + std::fmt::Debug + Send>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, StorageError> {
        self.reader().try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogReader;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let db = self.db.clone();
        blocking(move || {
            let purged: Option<LogId> = get_decoded(&db, PURGED)?;
            let last = match db.range(bounds(&(..))).next_back() {
                Some(item) => {
                    let (k, v) = item?;
                    Some(decode_entry(&k, &v)?.log_id)
                }
                None => purged,
            };
            Ok(LogState {
                last_purged_log_id: purged,
                last_log_id: last,
            })
        })
        .await
        .read_logs()
    }

    async fn get_log_reader(&mut self) -> LogReader {
        self.reader()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), StorageError> {
        let mut b = WriteBatch::new();
        b.put(VOTE, codec::encode(vote).write_vote()?);
        self.write_synced(b).await.write_vote()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, StorageError> {
        let db = self.db.clone();
        blocking(move || get_decoded(&db, VOTE)).await.read_vote()
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        let Some(c) = committed else {
            return Ok(());
        };
        let db = self.db.clone();
        let value = codec::encode(&c).write_logs()?;
        blocking(move || Ok(db.put(COMMITTED, value).map(|_| ())?))
            .await
            .write_logs()
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        let db = self.db.clone();
        blocking(move || get_decoded(&db, COMMITTED))
            .await
            .read_logs()
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut b = WriteBatch::new();
        for e in entries {
            b.put(entry_key(e.log_id.index), codec::encode(&e).write_logs()?);
        }
        match self.write_synced(b).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(e).write_logs()
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let keys = self.keys_in(bounds(&(log_id.index..))).await.write_logs()?;
        if keys.is_empty() {
            return Ok(());
        }
        let mut b = WriteBatch::new();
        for k in keys {
            b.delete(k);
        }
        self.write_synced(b).await.write_logs()
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let keys = self
            .keys_in(bounds(&(..=log_id.index)))
            .await
            .write_logs()?;
        let mut b = WriteBatch::new();
        for k in keys {
            b.delete(k);
        }
        b.put(PURGED, codec::encode(&log_id).write_logs()?);
        self.write_synced(b).await.write_logs()
    }
}
