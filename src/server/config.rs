//! Server settings: identity, bind address, data directory, request limits and the store
//! options the server opens with.

use std::path::PathBuf;
use std::time::Duration;

use super::security::SecurityConfig;
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
    /// Most connections open at once; past it a new connection gets a 503 and is closed.
    /// Default 8,192 (lowered at start to fit the open-file limit).
    pub max_connections: usize,
    /// Longest time a client may take to send a request's line and headers, from its first
    /// byte. Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest time a request body may take to arrive. Default 30 s.
    pub body_read_timeout: Duration,
    /// Longest time a connection may sit with no request in flight and no bytes arriving.
    /// Default 60 s.
    pub idle_timeout: Duration,
    /// Longest time a request may wait for and use the store threads, once its body is read;
    /// past it the answer is 503 with `Retry-After`. Default 30 s.
    pub request_timeout: Duration,
    /// On shutdown, how long requests in flight may take to finish before every connection
    /// is closed. Default 10 s.
    pub shutdown_grace: Duration,
    /// Most bytes held at once by request bodies being read or handled; past it a request
    /// with a body gets a 503 with `Retry-After`. Default 64 MiB.
    pub max_inflight_body_bytes: usize,
    /// Most reads waiting for a reader thread; past it a read gets a 503 with `Retry-After`.
    /// Default 1,024.
    pub max_queued_reads: usize,
    /// Most writes waiting for the committer; past it a write gets a 503 with `Retry-After`.
    /// Default 1,024.
    pub max_queued_writes: usize,
    /// Keys per `/keys` page when the request names no `limit`. Default 1,000.
    pub default_keys_page: usize,
    /// Most keys per `/keys` page, whatever `limit` asks. Default 10,000.
    pub max_keys_page: usize,
    /// Largest request line plus headers, in bytes; past it the answer is 431. Default 128 KiB.
    pub max_header_bytes: usize,
    /// TLS, tokens and the loopback-only default (see [`SecurityConfig`]).
    pub security: SecurityConfig,
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
            max_connections: 8192,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(10),
            max_inflight_body_bytes: 64 << 20,
            max_queued_reads: 1024,
            max_queued_writes: 1024,
            default_keys_page: 1000,
            max_keys_page: 10_000,
            max_header_bytes: 128 << 10,
            security: SecurityConfig::default(),
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
        if self.max_connections == 0 {
            return Err("max connections must be at least 1".into());
        }
        for (name, d) in [
            ("header read timeout", self.header_read_timeout),
            ("body read timeout", self.body_read_timeout),
            ("idle timeout", self.idle_timeout),
            ("request timeout", self.request_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be positive"));
            }
        }
        if self.max_inflight_body_bytes < self.max_body_bytes {
            return Err("max in-flight body bytes must be at least max body bytes".into());
        }
        if self.max_queued_reads == 0 || self.max_queued_writes == 0 {
            return Err("queue bounds must be at least 1".into());
        }
        if !(1..=self.max_keys_page).contains(&self.default_keys_page) {
            return Err("the default keys page must be between 1 and the max keys page".into());
        }
        if !(8 << 10..=64 << 20).contains(&self.max_header_bytes) {
            return Err("max header bytes must be between 8 KiB and 64 MiB".into());
        }
        self.security.validate()?;
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
