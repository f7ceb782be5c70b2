//! The strata HTTP server: both documented APIs over one store, standalone.
//!
//! Run with `cargo run --release --features server --example server -- --help`.
//! Data lives in `data/<node-id>` unless `--data-dir` says otherwise. SIGINT or SIGTERM stops
//! the server after the requests in flight and closes the store cleanly.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use strata::server::{self, AppState, ServerConfig};

/// A faster allocator than the system's for this allocation-heavy request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(about = "strata HTTP server (standalone)")]
struct Args {
    /// This node's name.
    #[arg(long, default_value = "standalone")]
    node_id: String,
    /// Port to listen on.
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Store directory [default: data/<node-id>].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Largest request body, in bytes.
    #[arg(long, default_value_t = 16 << 20)]
    max_body_bytes: usize,
    /// Longest key, in bytes.
    #[arg(long, default_value_t = 16 << 10)]
    max_key_bytes: usize,
    /// Largest value, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    max_value_bytes: usize,
    /// Size at which a WAL segment is sealed, in bytes.
    #[arg(long, env = "MAX_SEGMENT_SIZE", default_value_t = 16 << 20)]
    max_segment_size: u64,
    /// Seconds between periodic compactions.
    #[arg(long, env = "COMPACTION_INTERVAL", default_value_t = 3600)]
    compaction_interval: u64,
    /// Minimum seconds between two full compactions (periodic, or unforced manual runs).
    #[arg(long, env = "MIN_COMPACTION_INTERVAL", default_value_t = 600)]
    min_compaction_interval: u64,
    /// Seconds an idempotency record answers retries.
    #[arg(long, env = "DEDUP_EXPIRY", default_value_t = 3600)]
    dedup_expiry: u64,
    /// Versions kept per key (the reach of the history endpoints).
    #[arg(long, default_value_t = 100)]
    history_versions: usize,
    /// Threads that run store reads [default: the number of CPUs, at least 2].
    #[arg(long)]
    reader_threads: Option<usize>,
}

impl Args {
    fn config(self) -> ServerConfig {
        let mut c = ServerConfig::default();
        c.data_dir = self
            .data_dir
            .unwrap_or_else(|| PathBuf::from("data").join(&self.node_id));
        c.node_id = self.node_id;
        c.host = self.host;
        c.port = self.port;
        c.max_body_bytes = self.max_body_bytes;
        c.max_key_bytes = self.max_key_bytes;
        c.max_value_bytes = self.max_value_bytes;
        c.max_segment_size = self.max_segment_size;
        c.compaction_interval = Duration::from_secs(self.compaction_interval);
        c.min_compaction_interval = Duration::from_secs(self.min_compaction_interval);
        c.dedup_expiry = Duration::from_secs(self.dedup_expiry);
        c.history_versions = self.history_versions;
        if let Some(n) = self.reader_threads {
            c.reader_threads = n;
        }
        c
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = Args::parse().config();
    config.validate()?;
    let listener = server::bind(&config).await?;
    let data_dir = config.data_dir.clone();
    let db = tokio::task::spawn_blocking({
        let config = config.clone();
        move || config.open_store()
    })
    .await??;
    tracing::info!(data_dir = %data_dir.display(), last_seqno = %db.last_seqno(), "store open");
    let state = AppState::new(db, config)?;
    server::serve(listener, state.clone(), server::shutdown_signal()).await?;
    tokio::task::spawn_blocking(move || state.close()).await??;
    tracing::info!("store closed");
    Ok(())
}
