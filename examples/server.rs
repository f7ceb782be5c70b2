//! The strata HTTP server: both documented APIs over one store, standalone or (with
//! `--peers`, feature `replication`) as a member of a Raft cluster.
//!
//! Run with `cargo run --release --features server --example server -- --help`.
//! Data lives in `data/<node-id>` unless `--data-dir` says otherwise. SIGINT or SIGTERM stops
//! accepting, gives the requests in flight `--shutdown-grace` seconds, closes every
//! connection and closes the store cleanly. A start-up failure is printed as one sentence
//! naming what failed, with exit status 1.
//!
//! Without `--tls-cert`/`--tls-key` and `--auth-file` the server only listens on a loopback
//! address; `--host 0.0.0.0` needs both (or `--insecure`, which warns). A cluster member
//! with `--peer-cert`, `--peer-key` and `--peer-ca` speaks mutual TLS with its peers (and
//! TLS on its port to everyone); client TLS on a member needs them. SIGHUP reloads the
//! certificate, key, client CA, peer and token files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
#[cfg(feature = "replication")]
use strata::server::ClusterConfig;
use strata::server::{self, AppState, ServerConfig};

/// A build without the `replication` feature serves standalone only.
#[cfg(not(feature = "replication"))]
#[derive(Debug)]
struct ClusterConfig;

/// A faster allocator than the system's for this allocation-heavy request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines (coloured only on a terminal).
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Parser)]
#[command(
    about = "strata HTTP server (standalone, or a Raft cluster member with --peers)",
    version,
    after_help = "Environment:\n  RUST_LOG  log filter, default \"info\" (e.g. RUST_LOG=debug, \
                  RUST_LOG=strata=debug,info)\n\nLogs go to standard error, coloured only when \
                  it is a terminal."
)]
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
    /// Most connections served at once (lowered to fit the open-file limit).
    #[arg(long, default_value_t = 8192)]
    max_connections: usize,
    /// Seconds a client may take to send a request's line and headers.
    #[arg(long, default_value_t = 10.0)]
    header_read_timeout: f64,
    /// Seconds a request body may take to arrive.
    #[arg(long, default_value_t = 30.0)]
    body_read_timeout: f64,
    /// Seconds a connection may stay idle between requests.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// Seconds a request may wait for the store threads before a 503.
    #[arg(long, default_value_t = 30.0)]
    request_timeout: f64,
    /// Seconds requests in flight get to finish on shutdown.
    #[arg(long, default_value_t = 10.0)]
    shutdown_grace: f64,
    /// Most bytes held at once by request bodies, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_inflight_body_bytes: usize,
    /// Most reads waiting for a reader thread.
    #[arg(long, default_value_t = 1024)]
    max_queued_reads: usize,
    /// Most writes waiting for the committer.
    #[arg(long, default_value_t = 1024)]
    max_queued_writes: usize,
    /// Log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The other members of a Raft cluster, `name:host:port` separated by commas (seed 000's
    /// form: "node-2:localhost:9002,node-3:localhost:9003"). Empty: a standalone server.
    #[arg(long, default_value = "")]
    peers: String,
    /// Join the running cluster that this node's base URL belongs to (as a learner, then a
    /// voter), instead of forming one with --peers.
    #[arg(long)]
    join: Option<String>,
    /// Raft heartbeat period in milliseconds (cluster only).
    #[arg(long, default_value_t = 200)]
    heartbeat_ms: u64,
    /// Election timeout range in milliseconds, "MIN-MAX" (cluster only).
    #[arg(long, default_value = "500-1000")]
    election_timeout_ms: String,
    /// PEM certificate chain: serve HTTPS (needs --tls-key).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: every client must present a certificate this CA signed.
    #[arg(long, requires = "tls_cert")]
    client_ca: Option<PathBuf>,
    /// Seconds a TLS handshake may take.
    #[arg(long, default_value_t = 10.0)]
    tls_handshake_timeout: f64,
    /// Token file, lines `NAME ROLE SHA256HEX` (role read, write or admin): every route but
    /// /health then needs `Authorization: Bearer <token>`.
    #[arg(long)]
    auth_file: Option<PathBuf>,
    /// PEM certificate chain this member presents to its peers (cluster only; needs
    /// --peer-key and --peer-ca): mutual TLS between members.
    #[arg(long, requires_all = ["peer_key", "peer_ca"])]
    peer_cert: Option<PathBuf>,
    /// PEM private key of --peer-cert.
    #[arg(long, requires_all = ["peer_cert", "peer_ca"])]
    peer_key: Option<PathBuf>,
    /// PEM certificates of the cluster's CA: peers must present a certificate it signed.
    #[arg(long, requires_all = ["peer_cert", "peer_key"])]
    peer_ca: Option<PathBuf>,
    /// Allow a non-loopback --host without TLS and --auth-file (logged, and shown on /health).
    #[arg(long)]
    insecure: bool,
}

/// `secs` as a duration; a negative or non-finite figure becomes zero, which validation
/// rejects with a clear message.
fn seconds(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

impl Args {
    /// The cluster settings, or `None` for a standalone server.
    #[cfg(not(feature = "replication"))]
    fn cluster(&self) -> Result<Option<ClusterConfig>, String> {
        if self.peers.trim().is_empty() && self.join.is_none() {
            return Ok(None);
        }
        Err(
            "--peers and --join need the replication feature: run with --features replication"
                .into(),
        )
    }

    /// The cluster settings, or `None` for a standalone server.
    #[cfg(feature = "replication")]
    fn cluster(&self) -> Result<Option<ClusterConfig>, String> {
        let peers = ClusterConfig::parse_peers(&self.peers)?;
        if peers.is_empty() && self.join.is_none() {
            return Ok(None);
        }
        let mut c = ClusterConfig::new(peers);
        c.join = self.join.clone();
        c.heartbeat = Duration::from_millis(self.heartbeat_ms.max(10));
        let bad = || {
            format!(
                "--election-timeout-ms {:?} is not MIN-MAX",
                self.election_timeout_ms
            )
        };
        let (lo, hi) = self.election_timeout_ms.split_once('-').ok_or_else(bad)?;
        let (lo, hi): (u64, u64) = (
            lo.trim().parse().map_err(|_| bad())?,
            hi.trim().parse().map_err(|_| bad())?,
        );
        if lo >= hi || lo <= self.heartbeat_ms {
            return Err(format!(
                "the election timeout range {lo}-{hi} ms must be increasing and above the heartbeat"
            ));
        }
        c.election_timeout = (Duration::from_millis(lo), Duration::from_millis(hi));
        Ok(Some(c))
    }

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
        c.max_connections = self.max_connections;
        c.header_read_timeout = seconds(self.header_read_timeout);
        c.body_read_timeout = seconds(self.body_read_timeout);
        c.idle_timeout = seconds(self.idle_timeout);
        c.request_timeout = seconds(self.request_timeout);
        c.shutdown_grace = seconds(self.shutdown_grace);
        c.max_inflight_body_bytes = self.max_inflight_body_bytes;
        c.max_queued_reads = self.max_queued_reads;
        c.max_queued_writes = self.max_queued_writes;
        c.security.tls_cert = self.tls_cert;
        c.security.tls_key = self.tls_key;
        c.security.client_ca = self.client_ca;
        c.security.tls_handshake_timeout = seconds(self.tls_handshake_timeout);
        c.security.auth_file = self.auth_file;
        c.security.peer_cert = self.peer_cert;
        c.security.peer_key = self.peer_key;
        c.security.peer_ca = self.peer_ca;
        c.security.insecure = self.insecure;
        c
    }
}

fn init_logs(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => logs.json().init(),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let format = args.log_format;
    init_logs(format);
    let cluster = match args.cluster() {
        Ok(c) => c,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    match run(args.config(), cluster).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            match format {
                LogFormat::Json => tracing::error!("{message}"),
                LogFormat::Text => eprintln!("error: {message}"),
            }
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServerConfig, cluster: Option<ClusterConfig>) -> Result<(), String> {
    config
        .validate()
        .map_err(|e| format!("invalid configuration: {e}"))?;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = server::bind(&config)
        .await
        .map_err(|e| server::bind_error_message(&addr, &e))?;
    #[cfg(feature = "replication")]
    if let Some(cluster) = cluster {
        let node = config.node_id.clone();
        let state = AppState::start_cluster(config, &cluster).await?;
        tracing::info!(node = %node, peers = cluster.peers.len(), "cluster member started");
        server::serve(listener, state.clone(), server::shutdown_signal())
            .await
            .map_err(|e| format!("serving on {addr} failed: {e}"))?;
        state.shutdown().await?;
        tracing::info!("node stopped");
        return Ok(());
    }
    #[cfg(not(feature = "replication"))]
    let _ = cluster;
    let data_dir = config.data_dir.clone();
    let db = tokio::task::spawn_blocking({
        let config = config.clone();
        move || config.open_store()
    })
    .await
    .map_err(|e| format!("opening the store failed: {e}"))?
    .map_err(|e| server::open_error_message(&data_dir, &e))?;
    tracing::info!(data_dir = %data_dir.display(), last_seqno = %db.last_seqno(), "store open");
    let state = AppState::new(db, config).map_err(|e| format!("cannot start the server: {e}"))?;
    server::serve(listener, state.clone(), server::shutdown_signal())
        .await
        .map_err(|e| format!("serving on {addr} failed: {e}"))?;
    tokio::task::spawn_blocking(move || state.close())
        .await
        .map_err(|e| format!("closing the store failed: {e}"))?
        .map_err(|e| format!("closing the store in {} failed: {e}", data_dir.display()))?;
    tracing::info!("store closed");
    Ok(())
}
