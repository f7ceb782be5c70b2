//! strata: an embeddable, versioned key-value store on a log-structured merge tree.
//!
//! Every write gets a store-wide, strictly increasing sequence number ([`SeqNo`]), and that
//! number is the *version* of the value it wrote. History, reads as of a version, snapshots
//! and compare-and-set all follow from it.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use strata::{Db, WriteBatch};
//!
//! let db = Db::builder(dir.path()).history_versions(10).open()?;
//!
//! // Point writes and reads.
//! let v1 = db.put("user:1", "Alice")?;
//! db.put("user:2", "Bob")?;
//! assert_eq!(db.get("user:1")?.as_deref(), Some(&b"Alice"[..]));
//!
//! // Ranges, forwards and backwards.
//! let keys: Vec<_> = db.prefix("user:").map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
//! assert_eq!(keys, ["user:1", "user:2"]);
//! let last = db.prefix("user:").next_back().transpose()?.map(|(k, _)| k);
//! assert_eq!(last.as_deref(), Some(&b"user:2"[..]));
//!
//! // Atomic batches.
//! let mut batch = WriteBatch::new();
//! batch.put("user:3", "Carol").delete("user:2");
//! db.write(batch)?;
//!
//! // Snapshots see a fixed point in time.
//! let snap = db.snapshot();
//! let v2 = db.put("user:1", "Alicia")?;
//! assert_eq!(snap.get("user:1")?.as_deref(), Some(&b"Alice"[..]));
//!
//! // History and reads as of a version.
//! let history: Vec<_> = db.versions("user:1").map(|v| v.map(|v| v.seqno)).collect::<Result<_, _>>()?;
//! assert_eq!(history, [v2, v1]);
//! assert_eq!(db.get_at("user:1", v1)?.as_deref(), Some(&b"Alice"[..]));
//!
//! // Compare-and-set on versions.
//! let conflict = db.compare_and_set("user:1", Some(v1), Some("stale"))?.unwrap_err();
//! assert_eq!(conflict.current, Some(v2));
//! db.compare_and_set("user:1", Some(v2), Some("Al"))?.expect("current version");
//!
//! db.close()?;
//! # Ok::<_, strata::Error>(())
//! ```
//!
//! # Durability
//!
//! With the default [`SyncMode::Always`], a write is in the WAL and fsynced before `put`,
//! `delete` or `write` returns; concurrent writers share one fsync. With
//! [`SyncMode::Buffered`] writes reach the operating system before returning and are fsynced
//! by [`Db::sync`]. Either way, recovery after a crash yields a prefix of the acknowledged
//! writes, and batches are all-or-nothing. See `docs/format.md` for every on-disk layout.
//!
//! # Errors
//!
//! Damaged bytes on disk are reported as [`Error::Corruption`], never as a panic. If a WAL
//! write or fsync fails, the store is *poisoned*: every later write fails with
//! [`Error::Poisoned`] and the way back is to reopen it (recovery replays exactly what is
//! durable).

mod batch;
mod coding;
mod compaction;
mod config;
mod cursor;
mod db;
mod error;
mod flush;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod iter;
mod key;
mod manifest;
mod memtable;
mod merge_iter;
mod mmap;
mod recovery;
mod retention;
mod seqno;
mod snapshot;
mod sstable;
mod state;
mod stats;
mod table_set;
mod wal;

#[cfg(feature = "replication")]
pub mod replication;
#[cfg(feature = "server")]
pub mod server;

pub use bytes::Bytes;

pub use batch::WriteBatch;
pub use compaction::{CompactionReason, CompactionRun, CompactionStatus, PeriodicCompaction};
pub use config::{Config, DbBuilder, HistoryRetention, RecoveryMode, SyncMode};
pub use db::Db;
pub use error::{CasConflict, Error, PoisonCause, Result};
pub use fs::{FileLock, FileSystem, StdFs, WritableFile};
pub use iter::{Range, Version, VersionedValue, Versions};
pub use seqno::SeqNo;
pub use snapshot::Snapshot;
pub use stats::{LevelStats, RecoveryReport, Stats, TornTail};
pub use wal::segment::WalSegment;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// The longest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 << 20;
/// The largest encoded [`WriteBatch`] accepted, in bytes.
pub const MAX_BATCH_BYTES: usize = 256 << 20;
/// Levels in the tree (level 0 plus six sorted levels).
pub const NUM_LEVELS: usize = 7;

const _: () = assert!(MAX_BATCH_BYTES < u32::MAX as usize);
