//! The crate's error type.
//!
//! One `#[non_exhaustive]` enum for every fallible call. Decoders of on-disk bytes never
//! panic: they return [`Corrupt`], a small internal error carrying a reason and a byte
//! offset, which the layer that knows the file name turns into [`Error::Corruption`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::seqno::SeqNo;

/// `Result` with [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O error, with the file or directory it concerns when known.
    #[error("I/O error{}: {source}", at_path(path.as_deref()))]
    Io {
        /// The file or directory the failed operation was about, when known.
        path: Option<PathBuf>,
        /// The operating system's error.
        source: std::io::Error,
    },

    /// Bytes read from disk failed a checksum or structural check.
    #[error("corruption in {} at offset {offset}: {reason}", file.display())]
    Corruption {
        /// The file that holds the bad bytes.
        file: PathBuf,
        /// Byte offset of the first bad byte, as far as it is known.
        offset: u64,
        /// What was wrong.
        reason: String,
    },

    /// A previous write or fsync failed, so the store no longer knows what reached the disk.
    ///
    /// Every later write fails with this error (reads keep working). The documented recovery
    /// is to drop the [`Db`](crate::Db) and open it again: recovery replays exactly what is
    /// durable. Retrying an fsync after it failed is not safe on Linux ("fsyncgate").
    /// [`Db::poisoned`](crate::Db::poisoned) returns the same cause.
    #[error("the store is poisoned by an earlier failure ({0}); reopen it to recover")]
    Poisoned(#[source] PoisonCause),

    /// Another process (or another `Db` in this process) holds the directory's lock.
    #[error("database directory {} is locked by another process", .0.display())]
    Locked(PathBuf),

    /// A key longer than [`MAX_KEY_LEN`](crate::MAX_KEY_LEN).
    #[error("key of {len} bytes exceeds the maximum of {max} bytes")]
    KeyTooLarge {
        /// Length of the rejected key.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A value longer than [`MAX_VALUE_LEN`](crate::MAX_VALUE_LEN).
    #[error("value of {len} bytes exceeds the maximum of {max} bytes")]
    ValueTooLarge {
        /// Length of the rejected value.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A write batch whose encoding exceeds [`MAX_BATCH_BYTES`](crate::MAX_BATCH_BYTES).
    #[error("write batch of {len} bytes exceeds the maximum of {max} bytes")]
    BatchTooLarge {
        /// Encoded size of the rejected batch.
        len: usize,
        /// The limit.
        max: usize,
    },

    /// A version precondition did not hold — set by
    /// [`Db::compare_and_set`](crate::Db::compare_and_set),
    /// [`Db::compare_and_delete`](crate::Db::compare_and_delete) or
    /// [`WriteBatch::expect_version`](crate::WriteBatch::expect_version) — so nothing was
    /// written. The conflict names the key, the version expected and the key's actual one.
    #[error("{0}")]
    Conflict(CasConflict),

    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),

    /// The store was closed: every read and write through a [`Db`](crate::Db) handle fails
    /// with this once [`Db::close`](crate::Db::close) has been called.
    #[error("the store is closed")]
    Closed,

    /// A panic inside the engine, or inside a [`FileSystem`](crate::FileSystem) it called,
    /// interrupted an operation. The store is poisoned afterwards, as after a failed write.
    #[error("panic: {0}")]
    Panic(String),
}

impl From<std::io::Error> for Error {
    fn from(source: std::io::Error) -> Self {
        Error::Io { path: None, source }
    }
}

fn at_path(path: Option<&Path>) -> String {
    path.map(|p| format!(" on {}", p.display()))
        .unwrap_or_default()
}

/// Attaches the path an I/O operation concerned to its error.
pub(crate) trait IoContext<T> {
    /// `Error::Io` naming `path`.
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: Some(path.to_path_buf()),
            source,
        })
    }
}

/// Runs `f`, turning a panic inside it into [`Error::Panic`], so that a panic in a commit or
/// a background job can poison the store instead of leaving its locks and flags behind.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".to_string());
            Err(Error::Panic(message))
        }
    }
}

/// Why a store stopped accepting writes: the operation that failed and the error it got.
///
/// Cheap to clone; [`std::error::Error::source`] returns the original error.
#[derive(Debug, Clone)]
pub struct PoisonCause {
    operation: Arc<str>,
    error: Arc<Error>,
}

impl PoisonCause {
    pub(crate) fn new(operation: &str, error: &Error) -> PoisonCause {
        PoisonCause {
            operation: operation.into(),
            error: Arc::new(error.duplicate()),
        }
    }

    /// What the store was doing when it failed ("WAL write", "flush", "compaction", ...).
    pub fn operation(&self) -> &str {
        &self.operation
    }

    /// The error that poisoned the store.
    pub fn error(&self) -> &Error {
        &self.error
    }
}

impl std::fmt::Display for PoisonCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.operation, self.error)
    }
}

impl std::error::Error for PoisonCause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.error)
    }
}

/// The outcome of a failed compare-and-set: the key's version did not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CasConflict {
    /// The key whose version did not match.
    pub key: bytes::Bytes,
    /// The version the caller expected (`None` = "absent").
    pub expected: Option<SeqNo>,
    /// The key's current version (`None` = absent or deleted).
    pub current: Option<SeqNo>,
}

impl std::fmt::Display for CasConflict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: Option<SeqNo>| v.map_or_else(|| "absent".to_string(), |s| s.to_string());
        write!(
            f,
            "version conflict: expected {}, current {}",
            show(self.expected),
            show(self.current)
        )
    }
}

impl std::error::Error for CasConflict {}

/// A structural or checksum failure found while decoding bytes from disk.
///
/// Decoders return this; callers attach the file name with [`Corrupt::in_file`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Corrupt {
    /// Offset of the bad bytes relative to the start of the file, when known.
    pub offset: u64,
    /// What was wrong.
    pub reason: String,
}

impl Corrupt {
    /// A corruption at `offset` for `reason`.
    pub fn new(offset: u64, reason: impl Into<String>) -> Self {
        Self {
            offset,
            reason: reason.into(),
        }
    }

    /// Turns this into an [`Error::Corruption`] naming `file`.
    pub fn in_file(self, file: impl Into<PathBuf>) -> Error {
        Error::Corruption {
            file: file.into(),
            offset: self.offset,
            reason: self.reason,
        }
    }
}

impl std::fmt::Display for Corrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at offset {}: {}", self.offset, self.reason)
    }
}

impl std::error::Error for Corrupt {}

impl Error {
    /// True for [`Error::Corruption`].
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }

    /// A cheap copy for error paths that must report one failure to many waiters.
    ///
    /// `io::Error` is not `Clone`; the copy keeps its OS error code, or else its kind and
    /// message.
    pub(crate) fn duplicate(&self) -> Error {
        match self {
            Error::Io { path, source } => Error::Io {
                path: path.clone(),
                source: match source.raw_os_error() {
                    Some(code) => std::io::Error::from_raw_os_error(code),
                    None => std::io::Error::new(source.kind(), source.to_string()),
                },
            },
            Error::Corruption {
                file,
                offset,
                reason,
            } => Error::Corruption {
                file: file.clone(),
                offset: *offset,
                reason: reason.clone(),
            },
            Error::Poisoned(s) => Error::Poisoned(s.clone()),
            Error::Locked(p) => Error::Locked(p.clone()),
            Error::KeyTooLarge { len, max } => Error::KeyTooLarge {
                len: *len,
                max: *max,
            },
            Error::ValueTooLarge { len, max } => Error::ValueTooLarge {
                len: *len,
                max: *max,
            },
            Error::BatchTooLarge { len, max } => Error::BatchTooLarge {
                len: *len,
                max: *max,
            },
            Error::Conflict(c) => Error::Conflict(c.clone()),
            Error::InvalidConfig(s) => Error::InvalidConfig(s.clone()),
            Error::Closed => Error::Closed,
            Error::Panic(m) => Error::Panic(m.clone()),
        }
    }
}
