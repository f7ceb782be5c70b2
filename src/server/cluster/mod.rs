//! The server as a member of a Raft cluster (feature `replication`): how a node starts from
//! seed 000's options (`--node-id`, `--peers`), where its writes and linearizable reads go,
//! and the cluster's own routes.
//!
//! - Writes: both APIs' handlers hand their intent ([`crate::intent::Write`]) to the
//!   `proposer`, which batches them into Raft log entries; every replica's state
//!   machine plans them with the standalone server's planner (the `applier`).
//!   On a node that does not lead, a write is answered 503 `{"error":"not leader",
//!   "leader":"host:port"}` with `Retry-After`.
//! - Reads are linearizable by default on every node (`replication::read_index`);
//!   `?consistency=stale` reads local state at once.
//! - Routes (`routes`): `GET /raft/read_index` (for followers), `GET /cluster/members`,
//!   `POST /cluster/learners`, `POST /cluster/promote`, `POST /cluster/remove`, and the
//!   cluster views of `/raft/status` and `/cluster_status`.

pub(crate) mod applier;
pub(crate) mod join;
pub(crate) mod proposer;
pub(crate) mod routes;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::Db;
use crate::replication::identity::node_id;
use crate::replication::node::{NodeOptions, ReplicaNode, bootstrapper};
use crate::replication::replica::Replica;
use crate::replication::state_machine::DbOpener;
use crate::replication::transport::PeerTransport;
use crate::replication::types::Member;
use crate::server::ServerConfig;

use proposer::Proposer;

/// How a node joins a cluster.
#[derive(Debug, Clone, Default)]
pub struct ClusterConfig {
    /// The other members of a new cluster: `(name, host:port)`. Empty = standalone.
    pub peers: Vec<(String, String)>,
    /// `host:port` at which peers reach this node (default: the server's host and port).
    pub advertise: Option<String>,
    /// Leader heartbeat period.
    pub heartbeat: Duration,
    /// Election timeout range.
    pub election_timeout: (Duration, Duration),
    /// A snapshot is built after this many log entries.
    pub snapshot_every: u64,
    /// The base URL of a running cluster's node: join that cluster (as a learner, then a
    /// voter) instead of forming one with `peers`.
    pub join: Option<String>,
}

impl ClusterConfig {
    /// Parses seed 000's `--peers` list: `name:host:port` items separated by commas.
    pub fn parse_peers(list: &str) -> Result<Vec<(String, String)>, String> {
        let mut peers = Vec::new();
        for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let Some((name, addr)) = item.split_once(':') else {
                return Err(format!("peer {item:?} is not name:host:port"));
            };
            let port_ok = addr
                .rsplit_once(':')
                .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if name.is_empty() || !port_ok {
                return Err(format!("peer {item:?} is not name:host:port"));
            }
            if peers.iter().any(|(n, _): &(String, String)| n == name) {
                return Err(format!("peer {name} is listed twice"));
            }
            peers.push((name.to_string(), addr.to_string()));
        }
        Ok(peers)
    }

    /// Settings sized for a small, loaded machine: heartbeat 200 ms (in openraft 0.9 also
    /// the deadline of one AppendEntries), elections after 500–1000 ms of silence, a
    /// snapshot every 10,000 entries.
    pub fn new(peers: Vec<(String, String)>) -> ClusterConfig {
        ClusterConfig {
            peers,
            advertise: None,
            heartbeat: Duration::from_millis(200),
            election_timeout: (Duration::from_millis(500), Duration::from_millis(1000)),
            snapshot_every: 10_000,
            join: None,
        }
    }
}

/// A running cluster member.
#[derive(Debug)]
pub(crate) struct Cluster {
    pub(crate) replica: Arc<Replica>,
    pub(crate) proposer: Proposer,
    /// The leader's heartbeat period, in seconds.
    pub(crate) heartbeat_secs: f64,
}

impl Cluster {
    /// The state machine's store now (it changes when a snapshot is installed).
    pub(crate) fn db(&self) -> Db {
        self.replica.node().machine().db()
    }
}

/// Starts node `config.node_id` with data in `config.data_dir`; bootstraps a pristine
/// cluster when this node is the one that must. A node whose stored membership shares no
/// member with `--peers` refuses to start.
pub(crate) async fn start(
    config: &ServerConfig,
    cluster: &ClusterConfig,
    transport: PeerTransport,
) -> Result<Cluster, String> {
    if cluster.join.is_some()
        && (config.security.port_is_tls() || config.security.auth_file.is_some())
    {
        return Err(
            "--join speaks plain HTTP without a token, so it cannot join a cluster \
                    with TLS or tokens: start the node with the cluster's --peers and add it \
                    with `strata cluster add-learner` and `promote` (an admin token)"
                .into(),
        );
    }
    let name = config.node_id.clone();
    let addr = cluster
        .advertise
        .clone()
        .unwrap_or_else(|| format!("{}:{}", config.host, config.port));
    let mut opts = NodeOptions::new(&name, &config.data_dir, &addr);
    opts.heartbeat = cluster.heartbeat;
    opts.election_timeout = cluster.election_timeout;
    opts.snapshot_every = cluster.snapshot_every;
    opts.transport = transport;
    opts.opener = machine_opener(config);
    opts.applier = Arc::new(applier::ServerApplier::new(
        config.dedup_expiry.as_millis().min(u128::from(u64::MAX)) as u64,
    ));
    let node = ReplicaNode::start(opts).await.map_err(|e| {
        format!(
            "starting node {name} in {} failed: {e}",
            config.data_dir.display()
        )
    })?;
    let mut members: BTreeMap<u64, Member> = BTreeMap::new();
    members.insert(node.id(), node.member());
    for (peer, peer_addr) in &cluster.peers {
        if node_id(peer) == node.id() {
            return Err(format!("--peers names this node ({peer}) itself"));
        }
        members.insert(node_id(peer), Member::new(peer, peer_addr));
    }
    let replica = Replica::new(node, config.request_timeout.max(Duration::from_secs(1)));
    let stored = replica.members();
    if let Some(url) = &cluster.join {
        if stored.is_empty() {
            tracing::info!(via = %url, "joining a running cluster");
            tokio::spawn(join::join(url.clone(), name.clone(), addr.clone()));
        } else {
            tracing::info!(members = stored.len(), "already a member; --join ignored");
        }
    } else if stored.is_empty() {
        if bootstrapper(&members) == Some(replica.node().id()) {
            let done = replica
                .node()
                .bootstrap(members.clone())
                .await
                .map_err(|e| format!("initializing the cluster failed: {e}"))?;
            if done {
                tracing::info!(members = members.len(), "initialized a new cluster");
            }
        } else {
            tracing::info!("waiting for the cluster's first node to initialize it");
        }
    } else {
        let shared = stored
            .iter()
            .filter(|m| m.id != replica.node().id() && members.contains_key(&m.id))
            .count();
        if shared == 0 && members.len() > 1 {
            let known: Vec<String> = stored.iter().map(|m| m.member.to_string()).collect();
            return Err(format!(
                "this node belongs to a cluster of {} already, which shares no member with \
                 --peers; start it with the peers of that cluster (or a fresh --data-dir)",
                known.join(", ")
            ));
        }
        tracing::info!(members = stored.len(), "rejoining the cluster");
    }
    let replica = Arc::new(replica);
    let proposer = Proposer::start(Arc::clone(&replica), config.max_queued_writes);
    Ok(Cluster {
        replica,
        proposer,
        heartbeat_secs: cluster.heartbeat.as_secs_f64(),
    })
}

/// How a member opens its state machine's store: with the history this server promises
/// (seed B's `/history`) and its WAL segment size, and without an fsync per write (the Raft
/// log is the durable copy). With the store's default of one version per key, what a replica
/// showed would depend on when it last flushed, and replicas would differ.
fn machine_opener(config: &ServerConfig) -> DbOpener {
    let history = config.history_versions;
    let segment = config.max_segment_size;
    Arc::new(move |dir: &std::path::Path| {
        Db::builder(dir)
            .sync_mode(crate::SyncMode::Buffered)
            .history_versions(history)
            .wal_segment_bytes(segment)
            .open()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_store_keeps_the_configured_history_across_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServerConfig {
            history_versions: 3,
            ..ServerConfig::default()
        };
        let db = machine_opener(&config)(dir.path()).unwrap();
        for v in ["a", "b", "c", "d"] {
            db.put("k", v).unwrap();
        }
        db.flush().unwrap();
        db.compact().unwrap();
        let kept: Vec<_> = db
            .versions("k")
            .map(|v| v.unwrap().value.unwrap())
            .collect();
        assert_eq!(kept, ["d", "c", "b"]);
    }
}
