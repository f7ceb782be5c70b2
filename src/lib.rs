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
//! // Compare-and-set on versions; a stale version is a conflict, and nothing is written.
//! match db.compare_and_set("user:1", Some(v1), "stale") {
//!     Err(strata::Error::Conflict(c)) => assert_eq!(c.current, Some(v2)),
//!     other => panic!("{other:?}"),
//! }
//! let v3 = db.compare_and_set("user:1", Some(v2), "Al")?;
//! db.compare_and_delete("user:1", Some(v3))?;
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
//!
//! A version precondition that does not hold is [`Error::Conflict`], whichever call set it
//! ([`Db::compare_and_set`], [`Db::compare_and_delete`] or
//! [`WriteBatch::expect_version`]); nothing is written then. After [`Db::close`], reads and
//! writes through any handle fail with [`Error::Closed`].

mod background;
pub mod backup;
mod batch;
mod catalog;
mod checkpoint;
mod checksum;
mod coding;
mod compaction;
mod config;
mod core;
mod cursor;
mod db;
mod error;
mod file_names;
mod flush;
mod fs;
#[doc(hidden)]
pub mod fuzzing;
mod hash;
pub mod ingest;
mod iter;
mod key;
mod lifecycle;
mod limits;
pub mod linearizability;
mod lookup;
mod manifest;
mod memtable;
mod merge_iter;
mod mmap;
mod prefetch;
mod recovery;
mod retention;
mod seqno;
mod snapshot;
mod sstable;
mod staging;
mod state;
mod stats;
mod sync_point;
mod table_set;
pub mod verify;
mod view;
mod wal;
mod write;

#[cfg(feature = "server")]
pub mod intent;
#[cfg(feature = "replication")]
pub mod replication;
#[cfg(feature = "server")]
pub mod server;

#[cfg(feature = "cli")]
pub mod cli;

pub use bytes::Bytes;

pub use batch::WriteBatch;
pub use checkpoint::Checkpoint;
pub use compaction::{CompactionProgress, CompactionReason, CompactionRun, CompactionStatus};
pub use config::{Config, HistoryRetention, PeriodicCompaction, RecoveryMode, SyncMode};
pub use db::{Db, DbBuilder};
pub use error::{CasConflict, Error, PoisonCause, Result};
pub use fs::{FileLock, FileSystem, MappedFile, StdFs, WritableFile};
pub use iter::{KeyRange, Range, Version, Versions};
pub use limits::{MAX_BATCH_BYTES, MAX_KEY_LEN, MAX_VALUE_LEN, NUM_LEVELS};
pub use lookup::VersionedValue;
pub use seqno::SeqNo;
pub use snapshot::Snapshot;
pub use sstable::block_cache::BlockCacheStats;
pub use sstable::compression::Compression;
pub use stats::{LevelStats, RecoveryReport, Stats, TornTail};
pub use verify::VerifyReport;
pub use wal::segment::WalSegment;
