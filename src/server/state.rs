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
use super::ops::View;
use super::reply::Reply;
use super::security::Security;
use super::writer::Writer;
use crate::Db;
use crate::intent::Write;

/// How this node serves: alone, or as a member of a replicated cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Role {
    /// A single node that owns its store.
    Standalone,
    /// A member of a Raft cluster (feature `replication`).
    Member,
}

/// Where the node's data lives and its writes go.
#[derive(Debug)]
enum Store {
    /// A store of its own, written by the committer thread.
    Local { db: Db, writer: Writer },
    /// A replica's state machine, written through Raft.
    #[cfg(feature = "replication")]
    Cluster(super::cluster::Cluster),
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    config: ServerConfig,
    metrics: Arc<Metrics>,
    security: Arc<Security>,
    dedup: Arc<Dedup>,
    readers: Executor,
    started: Instant,
    local_addr: OnceLock<SocketAddr>,
}

impl AppState {
    /// State for a standalone server over `db`; starts the server's store threads (reader
    /// pool and write committer), which end when the last clone of the state is dropped.
    /// The TLS and token files the configuration names are read here; one that does not
    /// load is an `InvalidInput` error naming it, and so are peer TLS settings (they are for
    /// cluster members).
    pub fn new(db: Db, config: ServerConfig) -> std::io::Result<AppState> {
        if config.security.peer_tls_enabled() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "peer TLS (--peer-cert, --peer-key, --peer-ca) is for cluster members: give \
                 --peers, or use --tls-cert and --tls-key for a standalone server",
            ));
        }
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
                store: Store::Local {
                    writer: Writer::start(
                        db.clone(),
                        Arc::clone(&dedup),
                        config.max_queued_writes,
                    )?,
                    db,
                },
                dedup,
                config,
                started: Instant::now(),
                local_addr: OnceLock::new(),
            }),
        })
    }

    /// State for a member of a Raft cluster: starts (or restarts) the replica in
    /// `config.data_dir` and, for a pristine cluster, initializes it on the one node that
    /// must. Stop it with [`AppState::shutdown`]. With peer TLS in the security settings,
    /// peers are reached over mutual TLS; client TLS on a member needs peer TLS too.
    #[cfg(feature = "replication")]
    pub async fn start_cluster(
        config: ServerConfig,
        cluster: &super::cluster::ClusterConfig,
    ) -> Result<AppState, String> {
        if config.security.tls_enabled() && !config.security.peer_tls_enabled() {
            // Peers would speak plain HTTP to a TLS port and be cut off.
            return Err(
                "TLS on a cluster member's port needs TLS between peers too: give \
                 --peer-cert, --peer-key and --peer-ca"
                    .into(),
            );
        }
        let security = Security::load(&config.security)?;
        let transport = match security.peer() {
            Some(peer) => peer.transport().clone(),
            None => crate::replication::transport::PeerTransport::plain(),
        };
        let member = super::cluster::start(&config, cluster, transport).await?;
        let db = member.db();
        let dedup = Arc::new(Dedup::new(config.dedup_expiry));
        let readers = Executor::start(
            "strata-http-read",
            config.reader_threads,
            config.max_queued_reads,
        )
        .map_err(|e| format!("cannot start the reader threads: {e}"))?;
        Ok(AppState {
            inner: Arc::new(Inner {
                metrics: Arc::new(Metrics::new(db)),
                security: Arc::new(security),
                readers,
                store: Store::Cluster(member),
                dedup,
                config,
                started: Instant::now(),
                local_addr: OnceLock::new(),
            }),
        })
    }

    /// The store (in a cluster: the state machine's store as of now).
    pub fn db(&self) -> Db {
        match &self.inner.store {
            Store::Local { db, .. } => db.clone(),
            #[cfg(feature = "replication")]
            Store::Cluster(c) => c.db(),
        }
    }

    /// The cluster this node is a member of, if any.
    #[cfg(feature = "replication")]
    pub(crate) fn cluster(&self) -> Option<&super::cluster::Cluster> {
        match &self.inner.store {
            Store::Cluster(c) => Some(c),
            Store::Local { .. } => None,
        }
    }

    /// Waits until a read on this node sees every write acknowledged before the call (a
    /// linearizable read), unless the request asked for `consistency=stale`. A standalone
    /// node reads its own store, which is always linearizable.
    #[cfg_attr(not(feature = "replication"), allow(unused_variables))]
    pub(crate) async fn read_barrier(&self, api: Api, stale: bool) -> Result<(), ApiError> {
        match &self.inner.store {
            Store::Local { .. } => Ok(()),
            #[cfg(feature = "replication")]
            Store::Cluster(c) => {
                if stale {
                    return Ok(());
                }
                c.replica
                    .read_barrier()
                    .await
                    .map(|_| ())
                    .map_err(|e| super::cluster::proposer::refusal_error(api, e))
            }
        }
    }

    /// The settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The node's role.
    pub fn role(&self) -> Role {
        match &self.inner.store {
            Store::Local { .. } => Role::Standalone,
            #[cfg(feature = "replication")]
            Store::Cluster(_) => Role::Member,
        }
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
        let scheme = if self.inner.config.security.port_is_tls() {
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
        self.db()
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
        ident: Option<RecordId>,
        size: usize,
        write: Write,
    ) -> Result<Reply, ApiError> {
        let api = super::ops::api_of(&write);
        match &self.inner.store {
            Store::Local { writer, .. } => {
                let planner = move |view: &View<'_>| super::ops::plan(&write, view);
                writer
                    .submit(api, ident, size, self.deadline(), Box::new(planner))
                    .await
            }
            #[cfg(feature = "replication")]
            Store::Cluster(c) => {
                // The write carries its idempotency ids itself (`ident` is their local form).
                let _ = ident;
                if !c.replica.is_leader() {
                    return Err(ApiError::not_leader(
                        api,
                        super::cluster::proposer::leader_addr(c.replica.leader()),
                    ));
                }
                c.proposer.submit(api, write, size, self.deadline()).await
            }
        }
    }

    /// Deletes a batch of expired idempotency records (on the committer); returns how many.
    pub(crate) async fn sweep(&self) -> Result<usize, ApiError> {
        match &self.inner.store {
            Store::Local { writer, .. } => writer.sweep(Api::Any).await,
            // Records in a cluster expire by the leader's clock when read (see the applier).
            #[cfg(feature = "replication")]
            Store::Cluster(_) => Ok(0),
        }
    }

    /// Closes the store: stops the committer (after the writes queued before), which writes
    /// the idempotency counters, then syncs the WAL and releases the directory. Requests
    /// still running fail with a 503 afterwards.
    pub fn close(&self) -> crate::Result<()> {
        match &self.inner.store {
            Store::Local { db, writer } => {
                writer.stop();
                db.clone().close()
            }
            // A replica is stopped by `shutdown`.
            #[cfg(feature = "replication")]
            Store::Cluster(_) => Ok(()),
        }
    }

    /// Stops the node: closes a standalone store (see [`AppState::close`]), or stops a
    /// replica's Raft and releases its log and state machine.
    pub async fn shutdown(self) -> Result<(), String> {
        #[cfg(feature = "replication")]
        if let Store::Cluster(c) = &self.inner.store {
            let replica = std::sync::Arc::clone(&c.replica);
            drop(self);
            return match std::sync::Arc::try_unwrap(replica) {
                Ok(r) => r.shutdown().await.map_err(|e| e.to_string()),
                Err(r) => r.stop_raft().await.map_err(|e| e.to_string()),
            };
        }
        let state = self;
        tokio::task::spawn_blocking(move || state.close())
            .await
            .map_err(|e| format!("closing the store failed: {e}"))?
            .map_err(|e| format!("closing the store failed: {e}"))
    }
}
