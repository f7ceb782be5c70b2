//! The state every handler shares: the store, the settings, metrics and idempotency counters,
//! and the node's role.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use super::config::ServerConfig;
use super::dedup::{Dedup, RecordId};
use super::error::{Api, ApiError};
use super::executor::{Executor, RunError};
use super::limits;
use super::metrics::Metrics;
use super::ops::{Plan, View};
use super::reply::Reply;
use super::security::Security;
use super::writer::Writer;
use crate::Db;

/// How this node serves: alone, or (in a later version) as a member of a replicated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A single node that owns its store.
    Standalone,
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: Db,
    config: ServerConfig,
    role: Role,
    metrics: Arc<Metrics>,
    security: Arc<Security>,
    dedup: Arc<Dedup>,
    readers: Executor,
    writer: Writer,
    started: Instant,
    local_addr: OnceLock<SocketAddr>,
}

impl AppState {
    /// State for a standalone server over `db`; starts the server's store threads (reader
    /// pool and write committer), which end when the last clone of the state is dropped.
    /// The TLS and token files the configuration names are read here; one that does not
    /// load is an `InvalidInput` error naming it.
    pub fn new(db: Db, config: ServerConfig) -> std::io::Result<AppState> {
        let security = Security::load(&config.security)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
        let dedup = Arc::new(Dedup::new(config.dedup_expiry));
        super::dedup_book::load(&db, &dedup).map_err(|e| {
            std::io::Error::other(format!("loading the idempotency counters failed: {e}"))
        })?;
        Ok(AppState {
            inner: Arc::new(Inner {
                metrics: Arc::new(Metrics::new(db.clone())),
                security: Arc::new(security),
                readers: Executor::start(
                    "strata-http-read",
                    config.reader_threads,
                    config.max_queued_reads,
                )?,
                writer: Writer::start(db.clone(), Arc::clone(&dedup), config.max_queued_writes)?,
                dedup,
                db,
                config,
                role: Role::Standalone,
                started: Instant::now(),
                local_addr: OnceLock::new(),
            }),
        })
    }

    /// The store.
    pub fn db(&self) -> &Db {
        &self.inner.db
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        self.inner.role
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    pub(crate) fn security(&self) -> &Arc<Security> {
        &self.inner.security
    }

    /// Reads the TLS and token files again (as SIGHUP does); each that loads is used by new
    /// connections and requests. The error names the files that failed; they keep their old
    /// contents.
    pub fn reload_security(&self) -> Result<(), String> {
        self.inner.security.reload()
    }

    pub(crate) fn dedup(&self) -> &Dedup {
        &self.inner.dedup
    }

    /// Records the address the server listens on (set once, by `serve`).
    pub(crate) fn set_local_addr(&self, addr: SocketAddr) {
        let _ = self.inner.local_addr.set(addr);
    }

    /// This node's base URL: the address it listens on, or the configured one.
    pub(crate) fn url(&self) -> String {
        let scheme = if self.inner.config.security.tls_enabled() {
            "https"
        } else {
            "http"
        };
        match self.inner.local_addr.get() {
            Some(a) => format!("{scheme}://{a}"),
            None => format!(
                "{scheme}://{}:{}",
                self.inner.config.host, self.inner.config.port
            ),
        }
    }

    /// Why the node cannot serve writes now (the store is poisoned), said without filesystem
    /// paths; `None` while it can.
    pub fn unavailable_reason(&self) -> Option<String> {
        self.inner
            .db
            .poisoned()
            .map(|cause| super::error::public_error(&crate::Error::Poisoned(cause)))
    }

    /// Seconds since the state was made.
    pub(crate) fn uptime_secs(&self) -> f64 {
        self.inner.started.elapsed().as_secs_f64()
    }

    /// The deadline by which the current request's store work must start.
    fn deadline(&self) -> Instant {
        limits::deadline(self.inner.config.request_timeout)
    }

    /// Runs blocking store reads on the reader threads, never on the async workers. A full
    /// read queue, or a read still queued at the request's deadline, is a 503.
    pub(crate) async fn blocking<T: Send + 'static>(
        &self,
        api: Api,
        f: impl FnOnce(&AppState) -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let state = self.clone();
        match self
            .inner
            .readers
            .run(self.deadline(), move || f(&state))
            .await
        {
            Ok(r) => r,
            Err(RunError::Busy) => Err(ApiError::busy(
                api,
                "too many reads are waiting for the store; retry later",
            )),
            Err(RunError::Expired) => Err(ApiError::busy(
                api,
                "the read waited too long for a store thread; retry later",
            )),
            Err(RunError::Failed) => Err(ApiError::internal(
                api,
                "the request failed on a store thread",
            )),
        }
    }

    /// Runs a write through the committer. `size` is the request's size in bytes; `ident`
    /// makes the write idempotent.
    pub(crate) async fn write(
        &self,
        api: Api,
        ident: Option<RecordId>,
        size: usize,
        planner: impl FnMut(&View<'_>) -> Result<Plan, ApiError> + Send + 'static,
    ) -> Result<Reply, ApiError> {
        self.inner
            .writer
            .submit(api, ident, size, self.deadline(), Box::new(planner))
            .await
    }

    /// Deletes a batch of expired idempotency records (on the committer); returns how many.
    pub(crate) async fn sweep(&self) -> Result<usize, ApiError> {
        self.inner.writer.sweep(Api::Any).await
    }

    /// Closes the store: stops the committer (after the writes queued before), which writes
    /// the idempotency counters, then syncs the WAL and releases the directory. Requests
    /// still running fail with a 503 afterwards.
    pub fn close(&self) -> crate::Result<()> {
        self.inner.writer.stop();
        self.inner.db.clone().close()
    }
}
