//! What the server asks of a running replica, in plain types: propose a round of writes,
//! wait for a linearizable read point, change and list the membership, and report the
//! node's Raft state. openraft's own types stay behind this facade.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Instant;

use openraft::error::{ClientWriteError, RaftError};
use openraft::{ChangeMembers, ServerState};

use super::identity::node_id;
use super::network::PeerStatus;
use super::node::ReplicaNode;
use super::read_index::{ReadIndex, ReadRefusal};
use super::types::{Member, NodeId, Request, Response};

/// How long adding a learner waits for it to catch up.
const LEARNER_CATCH_UP: std::time::Duration = std::time::Duration::from_secs(60);

/// Why a proposal or a membership change was not carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// This node does not lead; `leader` is the leader it knows of.
    NotLeader {
        /// The current leader, when known.
        leader: Option<Member>,
    },
    /// The request is wrong (unknown member, a change that would leave no voter, ...).
    Invalid(String),
    /// Raft could not carry it out now (shutting down, quorum lost, ...).
    Unavailable(String),
}

impl From<ReadRefusal> for Refusal {
    fn from(r: ReadRefusal) -> Refusal {
        match r {
            ReadRefusal::NoLeader { leader } => Refusal::NotLeader { leader },
            ReadRefusal::Unavailable(m) => Refusal::Unavailable(m),
        }
    }
}

fn refusal(e: RaftError<NodeId, ClientWriteError<NodeId, Member>>) -> Refusal {
    match e {
        RaftError::APIError(ClientWriteError::ForwardToLeader(f)) => Refusal::NotLeader {
            leader: f.leader_node,
        },
        RaftError::APIError(ClientWriteError::ChangeMembershipError(c)) => {
            Refusal::Invalid(c.to_string())
        }
        RaftError::Fatal(f) => Refusal::Unavailable(f.to_string()),
    }
}

/// A member as listed by [`Replica::members`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// The member.
    pub member: Member,
    /// Its Raft id.
    pub id: NodeId,
    /// True for a voter, false for a learner.
    pub voter: bool,
}

/// A snapshot of a node's Raft state.
#[derive(Debug, Clone)]
pub struct NodeStatus {
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: &'static str,
    /// The current term.
    pub term: u64,
    /// The leader this node knows of.
    pub leader: Option<Member>,
    /// The highest log index known committed (on the leader: held by a quorum; elsewhere:
    /// applied here).
    pub commit_index: u64,
    /// The last log index applied to the state machine.
    pub last_applied: u64,
    /// The last log index in the log.
    pub last_log_index: u64,
    /// Entries held in the log (after purging).
    pub log_length: u64,
    /// The log index covered by the last snapshot.
    pub snapshot_index: Option<u64>,
    /// Milliseconds since a quorum last acknowledged this leader.
    pub millis_since_quorum_ack: Option<u64>,
    /// On the leader: each follower's matched log index.
    pub matched: BTreeMap<NodeId, Option<u64>>,
    /// Every member.
    pub members: Vec<MemberInfo>,
    /// RPC status of every peer this node has contacted.
    pub peers: BTreeMap<NodeId, PeerStatus>,
}

/// A running replica, as the server uses it.
pub struct Replica {
    node: ReplicaNode,
    reads: Arc<ReadIndex>,
    started: Instant,
}

impl std::fmt::Debug for Replica {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("node", &self.node)
            .finish_non_exhaustive()
    }
}

impl Replica {
    /// Wraps a started node; `read_timeout` bounds one linearizable read round.
    pub fn new(node: ReplicaNode, read_timeout: std::time::Duration) -> Replica {
        let reads = ReadIndex::new(
            node.raft().clone(),
            node.id(),
            node.transport().clone(),
            read_timeout,
        );
        Replica {
            node,
            reads,
            started: Instant::now(),
        }
    }

    /// The node.
    pub fn node(&self) -> &ReplicaNode {
        &self.node
    }

    /// Seconds since the replica started.
    pub fn uptime_secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// True while this node is the leader.
    pub fn is_leader(&self) -> bool {
        self.node.raft().metrics().borrow().current_leader == Some(self.node.id())
    }

    /// The leader this node knows of.
    pub fn leader(&self) -> Option<Member> {
        let m = self.node.raft().metrics().borrow().clone();
        m.current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
    }

    /// Proposes one round of writes; returns once it is committed and applied here.
    pub async fn propose(&self, request: Request) -> Result<Response, Refusal> {
        self.node
            .raft()
            .client_write(request)
            .await
            .map(|r| r.data)
            .map_err(refusal)
    }

    /// Waits until a read here sees every write acknowledged before the call; returns the
    /// read index.
    pub async fn read_barrier(&self) -> Result<u64, Refusal> {
        Ok(self.reads.barrier().await?)
    }

    /// The leader's own read index (for a follower's request); refuses on a non-leader.
    pub async fn leader_read_index(&self) -> Result<u64, Refusal> {
        if !self.is_leader() {
            return Err(Refusal::NotLeader {
                leader: self.leader(),
            });
        }
        Ok(self.reads.barrier().await?)
    }

    /// Every member, voters first.
    pub fn members(&self) -> Vec<MemberInfo> {
        let m = self.node.raft().metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: BTreeSet<NodeId> = membership.voter_ids().collect();
        let mut list: Vec<MemberInfo> = membership
            .nodes()
            .map(|(id, member)| MemberInfo {
                member: member.clone(),
                id: *id,
                voter: voters.contains(id),
            })
            .collect();
        list.sort_by(|a, b| (!a.voter, &a.member.name).cmp(&(!b.voter, &b.member.name)));
        list
    }

    fn voters(&self) -> BTreeSet<NodeId> {
        let m = self.node.raft().metrics().borrow().clone();
        m.membership_config.membership().voter_ids().collect()
    }

    /// Adds `name` at `addr` as a learner and waits until it has caught up.
    pub async fn add_learner(&self, name: &str, addr: &str) -> Result<(), Refusal> {
        let id = node_id(name);
        if let Some(existing) = self.members().into_iter().find(|m| m.id == id) {
            if existing.member.addr == addr {
                return Ok(());
            }
            return Err(Refusal::Invalid(format!(
                "{name} is a member already, at {}",
                existing.member.addr
            )));
        }
        // Blocking: the call returns once the learner has caught up, which an unreachable
        // node never does; the learner stays added either way.
        let added = self
            .node
            .raft()
            .add_learner(id, Member::new(name, addr), true);
        match tokio::time::timeout(LEARNER_CATCH_UP, added).await {
            Ok(r) => r.map(|_| ()).map_err(refusal),
            Err(_) => Err(Refusal::Unavailable(format!(
                "{name} was added as a learner but has not caught up within {}s; \
                 is it running at {addr}?",
                LEARNER_CATCH_UP.as_secs()
            ))),
        }
    }

    /// Makes learner `name` a voter.
    pub async fn promote(&self, name: &str) -> Result<(), Refusal> {
        let id = node_id(name);
        if !self.members().iter().any(|m| m.id == id) {
            return Err(Refusal::Invalid(format!(
                "{name} is not a member; add it as a learner first"
            )));
        }
        let mut voters = self.voters();
        if !voters.insert(id) {
            return Ok(());
        }
        self.node
            .raft()
            .change_membership(voters, false)
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    /// Removes member `name` (voter or learner) from the cluster.
    pub async fn remove(&self, name: &str) -> Result<(), Refusal> {
        let id = node_id(name);
        let members = self.members();
        let Some(target) = members.iter().find(|m| m.id == id) else {
            return Err(Refusal::Invalid(format!("{name} is not a member")));
        };
        let one = BTreeSet::from([id]);
        let change = if target.voter {
            if self.voters().len() <= 1 {
                return Err(Refusal::Invalid(
                    "removing the last voter would leave no cluster".into(),
                ));
            }
            // Not retained as a learner: the node leaves the cluster.
            ChangeMembers::RemoveVoters(one)
        } else {
            ChangeMembers::RemoveNodes(one)
        };
        self.node
            .raft()
            .change_membership(change, false)
            .await
            .map(|_| ())
            .map_err(refusal)
    }

    /// The node's Raft state now.
    pub fn status(&self) -> NodeStatus {
        let m = self.node.raft().metrics().borrow().clone();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        let last_applied = m.last_applied.map_or(0, |l| l.index);
        let last_log_index = m.last_log_index.unwrap_or(0);
        let first = m.purged.map_or(0, |p| p.index + 1);
        let matched: BTreeMap<NodeId, Option<u64>> = m
            .replication
            .as_ref()
            .map(|r| {
                r.iter()
                    .map(|(id, l)| (*id, l.as_ref().map(|l| l.index)))
                    .collect()
            })
            .unwrap_or_default();
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let commit_index = if m.state == ServerState::Leader && !voters.is_empty() {
            let mut indexes: Vec<u64> = voters
                .iter()
                .map(|v| {
                    if *v == m.id {
                        last_log_index
                    } else {
                        matched.get(v).copied().flatten().unwrap_or(0)
                    }
                })
                .collect();
            indexes.sort_unstable_by(|a, b| b.cmp(a));
            indexes[voters.len() / 2].max(last_applied)
        } else {
            last_applied
        };
        let leader = m
            .current_leader
            .and_then(|l| m.membership_config.membership().get_node(&l).cloned());
        NodeStatus {
            state,
            term: m.current_term,
            leader,
            commit_index,
            last_applied,
            last_log_index,
            log_length: (last_log_index + 1).saturating_sub(first),
            snapshot_index: m.snapshot.map(|s| s.index),
            millis_since_quorum_ack: m.millis_since_quorum_ack,
            matched,
            members: self.members(),
            peers: self.node.network().peer_status(),
        }
    }

    /// Stops Raft on this node without waiting for its storage to be released (for a
    /// caller that cannot own the replica).
    pub async fn stop_raft(&self) -> Result<(), super::error::ReplicationError> {
        self.node
            .raft()
            .shutdown()
            .await
            .map_err(|e| super::error::ReplicationError::Raft(format!("shutdown: {e}")))
    }

    /// Stops the node (see [`ReplicaNode::shutdown`]).
    pub async fn shutdown(self) -> Result<(), super::error::ReplicationError> {
        self.node.shutdown().await
    }
}
