//! A replica's lifecycle: open its identity, log store and state machine, start openraft
//! with timeouts sized for this project's machines, bootstrap a pristine cluster, and stop.
//!
//! A node directory holds:
//!
//! ```text
//! NODE        the node's identity (see `identity`)
//! log/        the Raft log store (a strata Db; see `log_store`)
//! sm/         the state machine's generations (see `state_machine`)
//! snapshots/  snapshot files (see `snapshots`)
//! ```
//!
//! The node's HTTP server mounts [`ReplicaNode::router`] next to its own routes; peers reach
//! the Raft RPCs at the member's `addr`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use openraft::error::{InitializeError, RaftError};
use openraft::{Config, SnapshotPolicy};

use super::apply::{Applier, PlainApplier};
use super::error::ReplicationError;
use super::files::create_dir;
use super::identity::Identity;
use super::log_store::LogStore;
use super::network::Network;
use super::routes::LeaderContact;
use super::state_machine::{DbOpener, MachineReader, StateMachine, default_opener};
use super::transport::PeerTransport;
use super::types::{Member, NodeId, Raft};

/// Most log entries one AppendEntries carries. An entry is one proposer round (at most
/// 1 MiB of writes), so one RPC carries at most a few MiB.
const MAX_PAYLOAD_ENTRIES: u64 = 8;

/// How a replica is set up.
#[derive(Clone)]
pub struct NodeOptions {
    /// The node's name; its Raft id is derived from it.
    pub name: String,
    /// The node's data directory.
    pub dir: PathBuf,
    /// `host:port` at which peers and clients reach this node.
    pub addr: String,
    /// Leader heartbeat period; also openraft's deadline for one AppendEntries RPC.
    pub heartbeat: Duration,
    /// A follower that hears no leader for a random time in `election_timeout` (lower,
    /// upper) starts an election.
    pub election_timeout: (Duration, Duration),
    /// A snapshot is built after this many log entries since the last one.
    pub snapshot_every: u64,
    /// Entries kept in the log behind a snapshot, for followers slightly behind.
    pub keep_logs: u64,
    /// Largest Raft RPC body accepted.
    pub max_rpc_bytes: usize,
    /// Opens the state machine's store.
    pub opener: DbOpener,
    /// What writes mean.
    pub applier: Arc<dyn Applier>,
    /// How peers are reached (plain HTTP unless set).
    pub transport: PeerTransport,
}

impl std::fmt::Debug for NodeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeOptions")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl NodeOptions {
    /// Defaults for node `name` with data in `dir`, reachable at `addr`: heartbeat 200 ms
    /// (also the deadline of one AppendEntries in openraft 0.9), elections after 500–1000 ms
    /// of silence (a failover within 2 s), a snapshot every
    /// 10,000 entries keeping 1,000 behind it, RPC bodies up to 64 MiB, the default store
    /// opener, [`PlainApplier`] and plain HTTP to peers.
    pub fn new(name: impl Into<String>, dir: impl Into<PathBuf>, addr: impl Into<String>) -> Self {
        NodeOptions {
            name: name.into(),
            dir: dir.into(),
            addr: addr.into(),
            heartbeat: Duration::from_millis(200),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_every: 10_000,
            keep_logs: 1_000,
            max_rpc_bytes: 64 << 20,
            opener: default_opener(),
            applier: Arc::new(PlainApplier),
            transport: PeerTransport::plain(),
        }
    }

    fn raft_config(&self) -> Result<Config, ReplicationError> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let config = Config {
            cluster_name: "strata".into(),
            heartbeat_interval: ms(self.heartbeat),
            election_timeout_min: ms(self.election_timeout.0),
            election_timeout_max: ms(self.election_timeout.1),
            install_snapshot_timeout: 60_000,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            max_in_snapshot_log_to_keep: self.keep_logs,
            purge_batch_size: (self.snapshot_every / 4).clamp(1, 256),
            snapshot_max_chunk_size: 4 << 20,
            replication_lag_threshold: self.snapshot_every.saturating_mul(2),
            // openraft 0.9 gives one AppendEntries the heartbeat period as its deadline: keep
            // each one small enough (a few proposer rounds) to make it on a loaded machine.
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| ReplicationError::Raft(format!("bad raft settings: {e}")))
    }
}

/// A running replica.
pub struct ReplicaNode {
    identity: Identity,
    addr: String,
    raft: Raft,
    machine: MachineReader,
    network: Network,
    transport: PeerTransport,
    log: Weak<()>,
    max_rpc_bytes: usize,
    contact: LeaderContact,
}

impl std::fmt::Debug for ReplicaNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaNode")
            .field("name", &self.identity.name)
            .field("id", &self.identity.id)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl ReplicaNode {
    /// Opens the node's directory and starts its Raft. A restarted node resumes from what
    /// its directory holds; it never initializes a cluster by itself.
    pub async fn start(opts: NodeOptions) -> Result<ReplicaNode, ReplicationError> {
        let config = Arc::new(opts.raft_config()?);
        let (identity, log, sm) = {
            let opts = opts.clone();
            super::error::blocking(move || {
                create_dir(&opts.dir)?;
                let identity = Identity::load_or_create(&opts.dir, &opts.name)?;
                let log = LogStore::open(&opts.dir.join("log"))?;
                let sm = StateMachine::open(&opts.dir, opts.opener, opts.applier)?;
                Ok((identity, log, sm))
            })
            .await?
        };
        let machine = sm.reader();
        let log_alive = log.liveness();
        let network = Network::new(
            identity.id,
            opts.heartbeat.max(Duration::from_millis(200)),
            opts.transport.clone(),
        );
        let raft = Raft::new(identity.id, config, network.clone(), log, sm)
            .await
            .map_err(|e| ReplicationError::Raft(e.to_string()))?;
        Ok(ReplicaNode {
            identity,
            addr: opts.addr,
            raft,
            machine,
            network,
            transport: opts.transport,
            log: log_alive,
            max_rpc_bytes: opts.max_rpc_bytes,
            contact: LeaderContact::default(),
        })
    }

    /// The node's Raft id.
    pub fn id(&self) -> NodeId {
        self.identity.id
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.identity.name
    }

    /// This node as a cluster member.
    pub fn member(&self) -> Member {
        Member::new(self.identity.name.clone(), self.addr.clone())
    }

    /// The Raft handle.
    pub fn raft(&self) -> &Raft {
        &self.raft
    }

    /// The state machine's reader handle.
    pub fn machine(&self) -> &MachineReader {
        &self.machine
    }

    /// The network layer (per-peer RPC status).
    pub fn network(&self) -> &Network {
        &self.network
    }

    /// How this node reaches its peers.
    pub fn transport(&self) -> &PeerTransport {
        &self.transport
    }

    /// When this node last accepted entries or a heartbeat from a leader.
    pub fn leader_contact(&self) -> Option<Instant> {
        self.contact.last()
    }

    /// The Raft RPC routes, to be mounted on the node's HTTP server.
    pub fn router(&self) -> axum::Router {
        super::routes::router(
            self.raft.clone(),
            self.identity.id,
            self.max_rpc_bytes,
            self.contact.clone(),
        )
    }

    /// Initializes a pristine cluster with `members` (this node must be one). Returns
    /// `false`, changing nothing, if this node is already part of a cluster. Exactly one
    /// node of a new cluster should call it (see [`bootstrapper`]); two nodes initializing
    /// with different member lists would form two clusters.
    pub async fn bootstrap(
        &self,
        members: BTreeMap<NodeId, Member>,
    ) -> Result<bool, ReplicationError> {
        if !members.contains_key(&self.identity.id) {
            return Err(ReplicationError::Identity(format!(
                "node {} is not among the members it would initialize",
                self.identity.name
            )));
        }
        match self.raft.initialize(members).await {
            Ok(()) => Ok(true),
            Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(false),
            Err(e) => Err(ReplicationError::Raft(e.to_string())),
        }
    }

    /// Stops Raft and waits (up to 10 s) until the log store and the state machine are
    /// released, so the directory can be opened again.
    pub async fn shutdown(self) -> Result<(), ReplicationError> {
        self.raft
            .shutdown()
            .await
            .map_err(|e| ReplicationError::Raft(format!("shutdown: {e}")))?;
        let ReplicaNode {
            raft, machine, log, ..
        } = self;
        drop(raft);
        let deadline = Instant::now() + Duration::from_secs(10);
        while (log.strong_count() > 0 || !machine.is_sole_owner()) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if log.strong_count() > 0 || !machine.is_sole_owner() {
            return Err(ReplicationError::Raft(
                "the log store or state machine is still in use after shutdown".into(),
            ));
        }
        Ok(())
    }
}

/// The member that initializes a new cluster: the one whose name sorts first. Every node
/// computes the same answer from the same member list.
pub fn bootstrapper(members: &BTreeMap<NodeId, Member>) -> Option<NodeId> {
    members
        .iter()
        .min_by(|a, b| a.1.name.cmp(&b.1.name))
        .map(|(id, _)| *id)
}
