//! The HTTP server (feature `server`): both documented APIs over one store.
//!
//! [`router`] builds the axum router for an [`AppState`]; [`serve`] runs it on a listener
//! until a shutdown future resolves; the `server` example is a thin command-line front.
//!
//! Three layers, each ignorant of the one above it:
//!
//! - connections (`connections`, `conn_io`): the accept loop, the connection cap, header-read
//!   and idle timeouts, bounded graceful shutdown, JSON bodies for the HTTP stack's own error
//!   answers; it serves any router;
//! - request limits (`limits`): body size and the global body budget, the body timeout, the
//!   deadline by which a request's store work must start; applied to every route;
//! - routes (`kv_api`, `versioned_api`, `compaction`, health and metrics), whose store work
//!   runs on the bounded reader pool (`executor`) and the committer (`writer`).
//!
//! Security (`security`, with `tls` and `auth`) fits into the first two: TLS is the stream
//! under each connection, its handshake bounded and counted against the connection cap; the
//! bearer-token check runs in front of the request limits, so a refused request never has
//! its body read. Without TLS and tokens the server listens on loopback only (see
//! [`SecurityConfig`]). A cluster member with peer TLS (`peer_tls`) tells peers from clients
//! in the TLS handshake, and its peer routes answer only peers.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use strata::server::{self, AppState, ServerConfig};
//!
//! let config = ServerConfig::default();
//! let db = config.open_store()?;
//! let listener = server::bind(&config).await?;
//! let state = AppState::new(db, config)?;
//! server::serve(listener, state.clone(), server::shutdown_signal()).await?;
//! state.close()?;
//! # Ok(())
//! # }
//! ```
//!
//! Routes:
//!
//! | API (module) | routes |
//! |---|---|
//! | JSON key-value API, seed A's contract (`kv_api`) | `POST /put`, `POST /batchput`, `GET /get`, `GET /range`, `DELETE /delete`, `GET /raft/status` |
//! | versioned-key API, seed B's contract (`versioned_api`) | `GET/PUT/DELETE /key/{key}`, `GET /key/{key}/history`, `GET /key/{key}/versions`, `GET /keys`, `GET /segments`, `GET /cluster_status`, `GET /deduplication_stats`, `GET /request_status`, `POST /compaction/run`, `GET /compaction/status`, `POST /compaction/configure` |
//! | both | `GET /health`, `GET /metrics` (Prometheus text) |
//! | admin | `GET /admin/backup` (a consistent backup archive, streamed; see `strata backup`) |
//!
//! Both APIs read and write the same keys: seed A's string values are seed B's JSON strings,
//! and seed B's per-key versions count writes from either side. No store call runs on the
//! async runtime: reads run on a small pool of reader threads, writes on one committer thread
//! that commits the writes queued at the same moment as one batch with one fsync (`writer`
//! module); both queues are bounded and shed load with 503 and `Retry-After`. Bad input gets
//! a JSON 4xx and changes nothing.
//!
//! Inside the store, user keys and the server's idempotency records live in separate one-byte
//! namespaces (see the `keyspace` module), and each user value is wrapped in a small envelope
//! holding its per-key version and JSON type (the `value` module). The records' counters,
//! reference counts and expiry index are kept with them (`dedup_book`).

mod auth;
mod backup;
#[cfg(feature = "replication")]
pub mod cluster;
mod compaction;
mod config;
mod conn_io;
mod connections;
mod dedup;
mod dedup_book;
mod error;
mod executor;
mod fd_limit;
mod input;
mod keyspace;
mod kv_api;
mod limits;
mod metrics;
mod ops;
#[cfg(feature = "replication")]
mod peer_tls;
mod queue;
mod reply;
mod security;
mod startup;
mod state;
mod tls;
mod value;
mod versioned_api;
mod writer;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde_json::json;

#[cfg(feature = "replication")]
pub use cluster::ClusterConfig;
pub use config::ServerConfig;
pub use fd_limit::{OpenFileLimits, raise_open_file_limit};
pub use security::SecurityConfig;
pub use startup::{bind_error_message, open_error_message};
pub use state::{AppState, Role};

use error::{Api, ApiError};
use reply::Reply;

/// The router serving every route over `state`, behind the token check (`auth` module), the
/// request limits (`limits` module) and the metrics.
pub fn router(state: AppState) -> Router {
    let metrics = Arc::clone(state.metrics());
    let limits = Arc::new(limits::Limits::new(state.config()));
    let security = Arc::clone(state.security());
    #[cfg(feature = "replication")]
    let security_for_peers = Arc::clone(&security);
    #[cfg(feature = "replication")]
    let (peer_routes, member_routes) = (
        cluster::routes::peer_router(&state),
        cluster::routes::member_router(&state),
    );
    let routes = routes(state);
    #[cfg(feature = "replication")]
    let routes = routes.merge(member_routes);
    let routes = routes
        .layer(middleware::from_fn_with_state(limits, limits::apply))
        .layer(middleware::from_fn_with_state(security, auth::check))
        .layer(middleware::from_fn_with_state(metrics, metrics::track));
    // Peer traffic (Raft RPCs and followers' read-index requests) has its own body limit
    // and checks, outside the client limits and tokens; with peer TLS, only a connection
    // that completed the peer handshake reaches it (`peer_tls`).
    #[cfg(feature = "replication")]
    let routes = routes.merge(peer_routes.layer(middleware::from_fn_with_state(
        Arc::clone(&security_for_peers),
        peer_tls::require_peer,
    )));
    routes
}

/// Every route of both APIs.
fn routes(state: AppState) -> Router {
    let body_limit = state.config().max_body_bytes;
    Router::new()
        // the JSON key-value API (seed A's contract)
        .route("/put", post(kv_api::put))
        .route("/batchput", post(kv_api::batchput))
        .route("/get", get(kv_api::get))
        .route("/range", get(kv_api::range))
        .route("/delete", delete(kv_api::delete))
        .route("/raft/status", get(kv_api::raft_status))
        // the versioned-key API (seed B's contract)
        .route(
            "/key/{key}",
            get(versioned_api::get_key)
                .put(versioned_api::put_key)
                .delete(versioned_api::delete_key),
        )
        .route("/key/{key}/history", get(versioned_api::history))
        .route("/key/{key}/versions", get(versioned_api::versions))
        .route("/keys", get(versioned_api::keys))
        .route("/segments", get(versioned_api::segments))
        .route("/cluster_status", get(versioned_api::cluster_status))
        .route("/deduplication_stats", get(versioned_api::deduplication_stats))
        .route("/request_status", get(versioned_api::request_status))
        .route("/compaction/run", post(compaction::run))
        .route("/compaction/status", get(compaction::status))
        .route("/compaction/configure", post(compaction::configure))
        // both
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        // admin
        .route("/admin/backup", get(backup::backup))
        .fallback(unknown_path)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

async fn unknown_path() -> ApiError {
    ApiError::not_found(Api::Any, "Not found")
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        Api::Any,
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
    )
}

/// `GET /health`: 200 `{"status":"ok",...}`, or 503 `{"status":"unavailable","reason",...}`
/// when the store is poisoned and refuses writes. A server exposed without TLS or tokens
/// (allowed by `insecure`) adds `"insecure": true` and a `warning`.
async fn health(State(state): State<AppState>) -> Reply {
    let mode = match state.role() {
        Role::Standalone => "standalone",
        Role::Member => "cluster",
    };
    let mut body = json!({
        "status": "ok",
        "node_id": state.config().node_id,
        "mode": mode,
        "last_seqno": state.db().last_seqno().get(),
        "uptime_seconds": state.uptime_secs(),
    });
    if let Some(warning) = state.security().warning() {
        body["insecure"] = json!(true);
        body["warning"] = json!(warning);
    }
    match state.unavailable_reason() {
        None => Reply::ok(&body),
        Some(reason) => {
            body["status"] = json!("unavailable");
            body["reason"] = json!(reason);
            body["error"] = json!(reason);
            body["detail"] = json!(reason);
            Reply::json(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

/// `GET /metrics`.
async fn metrics_text(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .blocking(Api::Any, |s| {
            s.metrics()
                .render()
                .map_err(|e| ApiError::internal(Api::Any, format!("metrics encoding: {e}")))
        })
        .await?;
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(r)
}

/// Deletes expired idempotency records now and then (on the committer, see `dedup_book`),
/// until `stop` turns true.
async fn sweep_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every =
        (state.config().dedup_expiry / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        match state.sweep().await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(records = n, "expired idempotency records deleted"),
            Err(e) => tracing::warn!(error = %e.message, "idempotency record sweep failed"),
        }
    }
}

/// Binds a listener to the configured `host` and `port` (a host name is resolved; the first
/// address that binds is used). An address the security settings do not allow (a
/// non-loopback address without TLS and tokens, see [`SecurityConfig::check_exposure`]) is
/// an `InvalidInput` error, before anything is bound.
pub async fn bind(config: &ServerConfig) -> std::io::Result<tokio::net::TcpListener> {
    let target = (config.host.as_str(), config.port);
    for addr in tokio::net::lookup_host(target).await? {
        if let Err(refusal) = config.security.check_exposure(addr) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                refusal,
            ));
        }
    }
    tokio::net::TcpListener::bind(target).await
}

/// Serves `state` on `listener` until `shutdown` resolves; then stops accepting, gives the
/// requests in flight up to `shutdown_grace` to finish, closes every connection and returns.
/// The store stays open: close it with [`AppState::close`].
///
/// At start the soft open-file limit is raised to the hard limit (both are logged), and the
/// connection cap is lowered if it would not fit. A listener on a non-loopback address
/// without TLS and tokens is refused (an `InvalidInput` error) unless the security settings
/// say `insecure` ([`SecurityConfig::check_exposure`]). While serving, SIGHUP or a changed
/// file reloads the certificates and tokens.
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    let security = Arc::clone(state.security());
    let addr = listener.local_addr()?;
    match state.config().security.check_exposure(addr) {
        Ok(None) => {}
        Ok(Some(warning)) => {
            tracing::warn!("{warning}");
            security.set_warning(warning);
        }
        Err(refusal) => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                refusal,
            ));
        }
    }
    let files = raise_open_file_limit();
    let show = |l: Option<u64>| l.map_or_else(|| "unlimited".to_string(), |n| n.to_string());
    tracing::info!(
        soft_before = %show(files.soft_before),
        soft = %show(files.soft),
        hard = %show(files.hard),
        "open-file limit"
    );
    let config = state.config();
    let max_connections = fd_limit::fitting_connections(config.max_connections, files.soft);
    if max_connections < config.max_connections {
        tracing::warn!(
            wanted = config.max_connections,
            max_connections,
            "connection cap lowered to fit the open-file limit"
        );
    }
    let limits = connections::ConnLimits {
        max_connections,
        header_read_timeout: config.header_read_timeout,
        idle_timeout: config.idle_timeout,
        shutdown_grace: config.shutdown_grace,
        max_header_bytes: config.max_header_bytes,
    };
    state.set_local_addr(addr);
    tracing::info!(
        %addr,
        node_id = %config.node_id,
        max_connections,
        tls = security.tls_port(),
        peer_tls = config.security.peer_tls_enabled(),
        client_certificates = config.security.client_ca.is_some(),
        tokens = security.tokens().is_some(),
        "serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(sweep_loop(state.clone(), stop_rx.clone()));
    let reloader = tokio::spawn(security::reload_loop(Arc::clone(&security), stop_rx));
    let result = connections::run(listener, router(state), limits, security, shutdown).await;
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    let _ = reloader.await;
    result
}

/// Resolves on SIGINT (Ctrl-C) or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
