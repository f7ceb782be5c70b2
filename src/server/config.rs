//! Server settings: identity, bind address, data directory, request limits and the store
//! options the server opens with.

use std::path::PathBuf;
use std::time::Duration;

use crate::{Db, MAX_KEY_LEN, PeriodicCompaction, SyncMode};

/// Settings of one server. `ServerConfig::default()` gives the documented defaults.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// This node's name. Default `standalone`.
    pub node_id: String,
    /// Address to bind. Default `127.0.0.1`.
    pub host: String,
    /// Port to bind. Default 9001.
    pub port: u16,
    /// The store's directory. Default `data/<node_id>`.
    pub data_dir: PathBuf,
    /// Largest request body accepted, in bytes. Default 16 MiB.
    pub max_body_bytes: usize,
    /// Longest key accepted, in bytes. Default 16 KiB (at most 60 KiB).
    pub max_key_bytes: usize,
    /// Largest value accepted (its text, or its JSON text), in bytes. Default 8 MiB.
    pub max_value_bytes: usize,
    /// Size at which a WAL segment is sealed (seed B's `MAX_SEGMENT_SIZE`). Default 16 MiB.
    pub max_segment_size: u64,
    /// Whether the periodic full compaction runs. Default true.
    pub compaction_enabled: bool,
    /// Time between periodic compactions (seed B's `COMPACTION_INTERVAL`). Default 1 hour.
    pub compaction_interval: Duration,
    /// Minimum time between two full compactions (periodic, or unforced
    /// `/compaction/run`). Default 10 minutes.
    pub min_compaction_interval: Duration,
    /// How long an idempotency record answers retries. Default 1 hour.
    pub dedup_expiry: Duration,
    /// Versions kept per key, which bounds seed B's history. Default 100.
    pub history_versions: usize,
    /// Durability of writes. Default [`SyncMode::Always`]: a write is acknowledged only
    /// after its fsync.
    pub sync: SyncMode,
    /// Most items one `/range` answer carries, whatever `limit` asks. Default 100,000.
    pub max_range_items: usize,
    /// Threads that run the server's store reads. Default: the number of CPUs, at least 2.
    pub reader_threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node_id: "standalone".into(),
            host: "127.0.0.1".into(),
            port: 9001,
            data_dir: PathBuf::from("data").join("standalone"),
            max_body_bytes: 16 << 20,
            max_key_bytes: 16 << 10,
            max_value_bytes: 8 << 20,
            max_segment_size: 16 << 20,
            compaction_enabled: true,
            compaction_interval: Duration::from_secs(3600),
            min_compaction_interval: Duration::from_secs(600),
            dedup_expiry: Duration::from_secs(3600),
            history_versions: 100,
            sync: SyncMode::Always,
            max_range_items: 100_000,
            reader_threads: std::thread::available_parallelism()
                .map_or(2, |n| n.get().clamp(2, 64)),
        }
    }
}

/// Keys are stored behind a namespace byte, and idempotency records add the client and
/// request ids (at most 256 bytes each) and a few bytes more.
const MAX_KEY_LIMIT: usize = MAX_KEY_LEN - 4096;

impl ServerConfig {
    /// Checks every setting's range.
    pub fn validate(&self) -> Result<(), String> {
        if self.node_id.is_empty() {
            return Err("node id must not be empty".into());
        }
        if !(1..=MAX_KEY_LIMIT).contains(&self.max_key_bytes) {
            return Err(format!(
                "max key bytes must be between 1 and {MAX_KEY_LIMIT}"
            ));
        }
        if !(1..=crate::MAX_VALUE_LEN).contains(&self.max_value_bytes) {
            return Err(format!(
                "max value bytes must be between 1 and {}",
                crate::MAX_VALUE_LEN
            ));
        }
        if self.max_body_bytes < 1024 {
            return Err("max body bytes must be at least 1024".into());
        }
        if self.max_segment_size < 4096 {
            return Err("max segment size must be at least 4096 bytes".into());
        }
        if self.history_versions == 0 {
            return Err("history versions must be at least 1".into());
        }
        if self.compaction_interval.is_zero() {
            return Err("compaction interval must be positive".into());
        }
        if self.dedup_expiry.is_zero() {
            return Err("dedup expiry must be positive".into());
        }
        if !(1..=256).contains(&self.reader_threads) {
            return Err("reader threads must be between 1 and 256".into());
        }
        if self.max_range_items == 0 {
            return Err("max range items must be at least 1".into());
        }
        Ok(())
    }

    /// Opens (or creates) the store at `data_dir` with this configuration's store options.
    pub fn open_store(&self) -> crate::Result<Db> {
        Db::builder(&self.data_dir)
            .history_versions(self.history_versions)
            .wal_segment_bytes(self.max_segment_size)
            .sync_mode(self.sync)
            .periodic_compaction(PeriodicCompaction {
                enabled: self.compaction_enabled,
                interval: self.compaction_interval,
                min_interval: self.min_compaction_interval,
            })
            .open()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_limits_are_checked() {
        let c = ServerConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!((c.host.as_str(), c.port), ("127.0.0.1", 9001));
        let bad = ServerConfig {
            max_key_bytes: MAX_KEY_LEN,
            ..ServerConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = ServerConfig {
            history_versions: 0,
            ..ServerConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
