//! Errors of the replication layer, and their mapping onto openraft's storage errors.

use openraft::{AnyError, StorageIOError};

use super::codec::CodecError;
use super::types::{LogId, StorageError};

/// Everything that can go wrong while opening or running a replica.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplicationError {
    /// The store (raft log or state machine) failed; includes I/O errors and corruption.
    #[error(transparent)]
    Store(#[from] crate::Error),
    /// Bytes from disk or from a peer did not decode.
    #[error(transparent)]
    Codec(#[from] CodecError),
    /// The data directory belongs to another node, or the cluster settings conflict with
    /// what the directory records.
    #[error("node identity: {0}")]
    Identity(String),
    /// openraft refused the configuration or failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

impl From<std::io::Error> for ReplicationError {
    fn from(e: std::io::Error) -> Self {
        ReplicationError::Store(e.into())
    }
}

/// Converts errors into openraft's storage error for a given failing operation.
// openraft's storage traits fix the error type, large as it is.
#[allow(clippy::result_large_err)]
pub(crate) trait StorageResult<T> {
    /// A failure reading the log.
    fn read_logs(self) -> Result<T, StorageError>;
    /// A failure writing the log.
    fn write_logs(self) -> Result<T, StorageError>;
    /// A failure reading the vote.
    fn read_vote(self) -> Result<T, StorageError>;
    /// A failure writing the vote.
    fn write_vote(self) -> Result<T, StorageError>;
    /// A failure applying the entry `log_id`.
    fn apply_at(self, log_id: LogId) -> Result<T, StorageError>;
    /// A failure reading a snapshot.
    fn read_snapshot(self) -> Result<T, StorageError>;
    /// A failure writing or installing a snapshot.
    fn write_snapshot(self) -> Result<T, StorageError>;
}

fn any(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

#[allow(clippy::result_large_err)]
impl<T, E: std::fmt::Display> StorageResult<T> for Result<T, E> {
    fn read_logs(self) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::read_logs(any(e)).into())
    }
    fn write_logs(self) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::write_logs(any(e)).into())
    }
    fn read_vote(self) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::read_vote(any(e)).into())
    }
    fn write_vote(self) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::write_vote(any(e)).into())
    }
    fn apply_at(self, log_id: LogId) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::apply(log_id, any(e)).into())
    }
    fn read_snapshot(self) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::read_snapshot(None, any(e)).into())
    }
    fn write_snapshot(self) -> Result<T, StorageError> {
        self.map_err(|e| StorageIOError::write_snapshot(None, any(e)).into())
    }
}

/// Runs blocking store work off the async runtime; a panicked task becomes an error.
pub(crate) async fn blocking<T, F>(f: F) -> Result<T, ReplicationError>
where
    F: FnOnce() -> Result<T, ReplicationError> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(ReplicationError::Raft(format!("blocking task failed: {e}"))),
    }
}
