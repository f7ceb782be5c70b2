//! The HTTP server (feature `server`): both documented APIs over one store.
//!
//! [`router`] builds the axum router for an [`AppState`]; [`serve`] runs it on a listener
//! until a shutdown future resolves; the `server` example is a thin command-line front.
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
//! | API | routes |
//! |---|---|
//! | seed A | `POST /put`, `POST /batchput`, `GET /get`, `GET /range`, `DELETE /delete`, `GET /raft/status` |
//! | seed B | `GET/PUT/DELETE /key/{key}`, `GET /key/{key}/history`, `GET /key/{key}/versions`, `GET /keys`, `GET /segments`, `GET /cluster_status`, `GET /deduplication_stats`, `GET /request_status`, `POST /compaction/run`, `GET /compaction/status`, `POST /compaction/configure` |
//! | both | `GET /health`, `GET /metrics` (Prometheus text) |
//! | admin | `GET /admin/backup` (a consistent backup archive, streamed; see `strata backup`) |
//!
//! Both APIs read and write the same keys: seed A's string values are seed B's JSON strings,
//! and seed B's per-key versions count writes from either side. No store call runs on the
//! async runtime: reads run on a small pool of reader threads, writes on one committer thread
//! that commits the writes queued at the same moment as one batch with one fsync (`writer`
//! module). Bad input gets a JSON 4xx and changes nothing.
//!
//! Inside the store, user keys and the server's idempotency records live in separate one-byte
//! namespaces (see the `keyspace` module), and each user value is wrapped in a small envelope
//! holding its per-key version and JSON type (the `value` module).

mod backup;
mod compaction;
mod config;
mod dedup;
mod error;
mod executor;
mod input;
mod keyspace;
mod metrics;
mod ops;
mod queue;
mod reply;
mod seed_a;
mod seed_b;
mod state;
mod value;
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

pub use config::ServerConfig;
pub use state::{AppState, Role};

use error::{Api, ApiError};
use reply::Reply;

/// The router serving every route over `state`.
pub fn router(state: AppState) -> Router {
    let metrics = Arc::clone(state.metrics());
    let body_limit = state.config().max_body_bytes;
    Router::new()
        // seed A
        .route("/put", post(seed_a::put))
        .route("/batchput", post(seed_a::batchput))
        .route("/get", get(seed_a::get))
        .route("/range", get(seed_a::range))
        .route("/delete", delete(seed_a::delete))
        .route("/raft/status", get(seed_a::raft_status))
        // seed B
        .route(
            "/key/{key}",
            get(seed_b::get_key)
                .put(seed_b::put_key)
                .delete(seed_b::delete_key),
        )
        .route("/key/{key}/history", get(seed_b::history))
        .route("/key/{key}/versions", get(seed_b::versions))
        .route("/keys", get(seed_b::keys))
        .route("/segments", get(seed_b::segments))
        .route("/cluster_status", get(seed_b::cluster_status))
        .route("/deduplication_stats", get(seed_b::deduplication_stats))
        .route("/request_status", get(seed_b::request_status))
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
        .layer(middleware::from_fn_with_state(metrics, metrics::track))
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

/// `GET /health`.
async fn health(State(state): State<AppState>) -> Reply {
    let mode = match state.role() {
        Role::Standalone => "standalone",
    };
    Reply::ok(&json!({
        "status": "ok",
        "node_id": state.config().node_id,
        "mode": mode,
        "last_seqno": state.db().last_seqno().get(),
        "uptime_seconds": state.uptime_secs(),
    }))
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

/// Most expired idempotency records one sweep deletes.
const SWEEP_BATCH: usize = 10_000;

/// Deletes expired idempotency records now and then, until `stop` turns true.
async fn sweep_loop(state: AppState, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every =
        (state.config().dedup_expiry / 4).clamp(Duration::from_millis(50), Duration::from_secs(60));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.changed() => return,
        }
        let swept = state
            .blocking(Api::Any, |s| {
                s.dedup()
                    .sweep(s.db(), dedup::now_ms(), SWEEP_BATCH)
                    .map_err(|e| ApiError::store(Api::Any, &e))
            })
            .await;
        match swept {
            Ok(0) => {}
            Ok(n) => tracing::debug!(records = n, "expired idempotency records deleted"),
            Err(e) => tracing::warn!(error = %e.message, "idempotency record sweep failed"),
        }
    }
}

/// Binds a listener to the configured `host` and `port` (a host name is resolved; the first
/// address that binds is used).
pub async fn bind(config: &ServerConfig) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind((config.host.as_str(), config.port)).await
}

/// Serves `state` on `listener` until `shutdown` resolves, then finishes the requests in
/// flight and returns. The store stays open: close it with [`AppState::close`].
pub async fn serve<F>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: F,
) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    use axum::serve::ListenerExt;
    if let Ok(addr) = listener.local_addr() {
        state.set_local_addr(addr);
        tracing::info!(%addr, node_id = %state.config().node_id, "serving");
    }
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let sweeper = tokio::spawn(sweep_loop(state.clone(), stop_rx));
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await;
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
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
