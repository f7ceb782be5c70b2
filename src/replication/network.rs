//! The client side of the Raft RPCs: one pooled keep-alive HTTP/1.1 client per peer.
//!
//! openraft asks the [`Network`] factory for a connection to a peer often (per replication
//! stream, per vote, per linearizable read); [`Network::new_client`] never connects, it
//! hands out a clone of that peer's pooled client, so RPCs reuse idle connections instead of
//! opening one each. Connections are plain HTTP or mutual TLS as the node's
//! [`PeerTransport`] says; a reload of its certificates replaces the pools (requests already
//! running finish on the old one). Bodies are the codec's postcard bytes; every request names its target
//! node in the path (`/raft/{rpc}/{target}`), and the receiver refuses a request meant for
//! another node.
//!
//! Errors map onto openraft's: a refused or failed connect is `Unreachable` (openraft backs
//! off), a deadline is `Timeout`, other transport failures and bad answers are `Network`,
//! and the peer's own Raft error is `RemoteError`. Every RPC outcome is recorded per peer
//! ([`PeerStatus`]): openraft 0.9's metrics have no per-follower contact times.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use openraft::RPCTypes;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Timeout, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec;
use super::transport::{PeerClient, PeerTransport};
use super::types::{Member, NodeId, TypeConfig};

/// Path of the AppendEntries RPC (followed by `/{target}`).
pub const APPEND_PATH: &str = "/raft/append";
/// Path of the Vote RPC (followed by `/{target}`).
pub const VOTE_PATH: &str = "/raft/vote";
/// Path of the InstallSnapshot RPC (followed by `/{target}`).
pub const SNAPSHOT_PATH: &str = "/raft/snapshot";
/// Content type of RPC bodies.
pub const CONTENT_TYPE: &str = "application/x-strata-raft";
/// Largest RPC answer a client reads.
const MAX_RESPONSE_BYTES: usize = 1 << 20;
/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

type HttpClient = PeerClient<Full<Bytes>>;

/// What a node knows about its last RPCs to one peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's address.
    pub addr: String,
    /// When an RPC to the peer last succeeded (the peer answered, even with a Raft error).
    pub last_ok: Option<Instant>,
    /// When an RPC to the peer last failed, and why.
    pub last_error: Option<(Instant, String)>,
    /// RPCs failed since the last success.
    pub failures: u64,
}

struct Peer {
    addr: String,
    /// The transport generation the client was built at.
    generation: u64,
    client: HttpClient,
}

struct Inner {
    id: NodeId,
    peers: Mutex<HashMap<NodeId, Peer>>,
    status: Mutex<BTreeMap<NodeId, PeerStatus>>,
    connect_timeout: Duration,
    transport: PeerTransport,
}

/// openraft's network factory: the pooled clients of every peer, and their status.
#[derive(Clone)]
pub struct Network {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("id", &self.inner.id)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// The network of node `id`; connects to a peer within `connect_timeout`, over
    /// `transport`.
    pub fn new(id: NodeId, connect_timeout: Duration, transport: PeerTransport) -> Network {
        Network {
            inner: Arc::new(Inner {
                id,
                peers: Mutex::new(HashMap::new()),
                status: Mutex::new(BTreeMap::new()),
                connect_timeout,
                transport,
            }),
        }
    }

    /// The RPC status of every peer contacted so far.
    pub fn peer_status(&self) -> BTreeMap<NodeId, PeerStatus> {
        self.inner.status.lock().clone()
    }

    fn client_for(&self, target: NodeId, node: &Member) -> HttpClient {
        let transport = &self.inner.transport;
        let mut peers = self.inner.peers.lock();
        match peers.get(&target) {
            Some(p) if p.addr == node.addr && p.generation == transport.generation() => {
                p.client.clone()
            }
            _ => {
                // New peer, its address changed, or the certificates were reloaded: a fresh
                // pool.
                let (generation, client) =
                    transport.client(self.inner.connect_timeout, POOL_IDLE, 8);
                peers.insert(
                    target,
                    Peer {
                        addr: node.addr.clone(),
                        generation,
                        client: client.clone(),
                    },
                );
                client
            }
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, node: &Member) -> Connection {
        Connection {
            client: self.client_for(target, node),
            net: self.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// A handle on one peer's pooled client (cheap; it holds no connection of its own).
pub struct Connection {
    client: HttpClient,
    net: Network,
    target: NodeId,
    node: Member,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.target)
            .field("addr", &self.node.addr)
            .finish_non_exhaustive()
    }
}

/// A transport failure, before it is typed for a particular RPC.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("{0}")]
    Other(String),
}

impl Connection {
    fn record(&self, result: Result<(), &Failure>) {
        let mut status = self.net.inner.status.lock();
        let s = status.entry(self.target).or_default();
        s.addr = self.node.addr.clone();
        match result {
            Ok(()) => {
                s.last_ok = Some(Instant::now());
                s.failures = 0;
            }
            Err(e) => {
                s.last_error = Some((Instant::now(), e.to_string()));
                s.failures += 1;
            }
        }
    }

    /// Posts `req` to `path/{target}` and decodes the answer as `T`.
    async fn call<Req: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
        ttl: Duration,
    ) -> Result<T, Failure> {
        let result = tokio::time::timeout(ttl, self.exchange(path, req)).await;
        let result = match result {
            Ok(r) => r,
            Err(_) => Err(Failure::Timeout(ttl)),
        };
        self.record(result.as_ref().map(|_| ()));
        result
    }

    async fn exchange<Req: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<T, Failure> {
        let body = codec::encode(req).map_err(|e| Failure::Other(e.to_string()))?;
        let scheme = self.net.inner.transport.scheme();
        let uri = format!("{scheme}://{}{}/{}", self.node.addr, path, self.target);
        let request = hyper::Request::post(uri)
            .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| Failure::Other(format!("bad request: {e}")))?;
        let response = self.client.request(request).await.map_err(|e| {
            if e.is_connect() {
                Failure::Connect {
                    addr: self.node.addr.clone(),
                    reason: error_chain(&e),
                }
            } else {
                Failure::Other(format!("{}: {}", self.node.addr, error_chain(&e)))
            }
        })?;
        let status = response.status();
        let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| Failure::Other(format!("reading the answer: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let text = String::from_utf8_lossy(&bytes);
            return Err(Failure::Other(format!(
                "{} answered {status}: {}",
                self.node.addr,
                text.chars().take(200).collect::<String>()
            )));
        }
        codec::decode(&bytes).map_err(|e| Failure::Other(format!("bad answer: {e}")))
    }

    fn rpc_error<E: std::error::Error>(
        &self,
        action: RPCTypes,
        f: Failure,
    ) -> RPCError<NodeId, Member, E> {
        match f {
            Failure::Connect { .. } => RPCError::Unreachable(Unreachable::new(&f)),
            Failure::Timeout(timeout) => RPCError::Timeout(Timeout {
                action,
                id: self.net.inner.id,
                target: self.target,
                timeout,
            }),
            Failure::Other(_) => RPCError::Network(NetworkError::new(&f)),
        }
    }

    fn remote<E: std::error::Error>(&self, e: E) -> RPCError<NodeId, Member, E> {
        RPCError::RemoteError(RemoteError::new_with_node(
            self.target,
            self.node.clone(),
            e,
        ))
    }
}

/// An error and its sources, joined: the client's own message hides the cause (a refused
/// connection, an untrusted certificate).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

type RpcResult<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, Member, RaftError<NodeId, E>>>;

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        let answer: Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>> = self
            .call(APPEND_PATH, &rpc, option.hard_ttl())
            .await
            .map_err(|f| self.rpc_error(RPCTypes::AppendEntries, f))?;
        answer.map_err(|e| self.remote(e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        let answer: Result<
            InstallSnapshotResponse<NodeId>,
            RaftError<NodeId, InstallSnapshotError>,
        > = self
            .call(SNAPSHOT_PATH, &rpc, option.hard_ttl())
            .await
            .map_err(|f| self.rpc_error(RPCTypes::InstallSnapshot, f))?;
        answer.map_err(|e| self.remote(e))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let answer: Result<VoteResponse<NodeId>, RaftError<NodeId>> = self
            .call(VOTE_PATH, &rpc, option.hard_ttl())
            .await
            .map_err(|f| self.rpc_error(RPCTypes::Vote, f))?;
        answer.map_err(|e| self.remote(e))
    }
}
