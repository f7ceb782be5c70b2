//! Linearizable reads on every node, without going through the log.
//!
//! The leader confirms it still leads with one quorum round (openraft's read index), and
//! every read that arrived before that round began shares it: reads queue for the *next*
//! round, one round runs at a time, so a burst of reads costs one round, not one each. A read
//! that arrived while a round was already running waits for the following one (a round that
//! began before the read arrived could miss a write acknowledged in between).
//!
//! A follower asks the leader for its read index (`GET /raft/read_index`, which runs the
//! leader's rounds above), waits until its own state machine has applied that far, and then
//! reads locally. Followers share rounds the same way, so a follower under a read burst sends
//! one request to the leader per round. The request goes over the node's
//! [`PeerTransport`] (mutual TLS when configured: a leader answers only members).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use parking_lot::Mutex;
use tokio::sync::watch;

use super::network::error_chain;
use super::transport::{PeerClient, PeerTransport};
use super::types::{Member, NodeId, Raft};

/// Route at which a leader hands out its read index.
pub const READ_INDEX_PATH: &str = "/raft/read_index";

/// Largest answer accepted from a leader's read-index route.
const MAX_ANSWER: usize = 4096;

/// How long an idle connection to the leader is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// Why a linearizable read cannot be served now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadRefusal {
    /// No leader is known, or the leader changed during the round: retry (after a leader hint
    /// if there is one).
    NoLeader {
        /// The leader as this node knows it.
        leader: Option<Member>,
    },
    /// The round failed (the leader could not reach a quorum, or did not answer in time).
    Unavailable(String),
}

type RoundResult = Option<Result<u64, ReadRefusal>>;

#[derive(Default)]
struct Rounds {
    /// A round is being run by a driver task.
    running: bool,
    /// The round the next arrivals join; it starts when the running one ends.
    next: Option<watch::Sender<RoundResult>>,
}

/// The read-index rounds of one node.
pub(crate) struct ReadIndex {
    raft: Raft,
    id: NodeId,
    rounds: Mutex<Rounds>,
    transport: PeerTransport,
    /// The client to the leader and the transport generation it was built at.
    client: Mutex<(u64, PeerClient<Empty<Bytes>>)>,
    timeout: Duration,
}

impl ReadIndex {
    pub(crate) fn new(
        raft: Raft,
        id: NodeId,
        transport: PeerTransport,
        timeout: Duration,
    ) -> Arc<ReadIndex> {
        let client = Mutex::new(transport.client(timeout, POOL_IDLE, 16));
        Arc::new(ReadIndex {
            raft,
            id,
            rounds: Mutex::new(Rounds::default()),
            transport,
            client,
            timeout,
        })
    }

    /// The client to the leader, rebuilt when the peer certificates were reloaded.
    fn client(&self) -> PeerClient<Empty<Bytes>> {
        let mut client = self.client.lock();
        if client.0 != self.transport.generation() {
            *client = self.transport.client(self.timeout, POOL_IDLE, 16);
        }
        client.1.clone()
    }

    /// Waits until this node's state machine reflects every write acknowledged before the
    /// call (a linearizable read point), sharing the round with concurrent callers.
    /// Returns the read index.
    pub(crate) async fn barrier(self: &Arc<Self>) -> Result<u64, ReadRefusal> {
        let mut rx = {
            let mut g = self.rounds.lock();
            let rx = match &g.next {
                Some(tx) => tx.subscribe(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    g.next = Some(tx);
                    rx
                }
            };
            if !g.running {
                g.running = true;
                let me = Arc::clone(self);
                tokio::spawn(async move { me.drive().await });
            }
            rx
        };
        let index = loop {
            if let Some(r) = rx.borrow_and_update().clone() {
                break r?;
            }
            if rx.changed().await.is_err() {
                return Err(ReadRefusal::Unavailable(
                    "the read round was dropped".into(),
                ));
            }
        };
        // The leader's index is applied on the leader already; a follower waits for it.
        let applied = self
            .raft
            .wait(Some(self.timeout))
            .applied_index_at_least(Some(index), "linearizable read")
            .await;
        applied.map(|_| index).map_err(|e| {
            ReadRefusal::Unavailable(format!("waiting to apply the read index {index}: {e}"))
        })
    }

    async fn drive(self: Arc<Self>) {
        loop {
            let tx = {
                let mut g = self.rounds.lock();
                match g.next.take() {
                    Some(tx) => tx,
                    None => {
                        g.running = false;
                        return;
                    }
                }
            };
            let r = self.round().await;
            let _ = tx.send(Some(r));
        }
    }

    /// One round: the leader's read index, obtained here or from the leader.
    async fn round(&self) -> Result<u64, ReadRefusal> {
        let mut metrics = self.raft.metrics().borrow().clone();
        let known = |m: &openraft::RaftMetrics<NodeId, Member>| {
            m.current_leader
                .and_then(|l| m.membership_config.membership().get_node(&l).cloned())
        };
        if known(&metrics).is_none() {
            // Right after an election, or on a node that has just joined, the leader is
            // known a moment later: wait for it rather than refuse at once.
            let waited = self
                .raft
                .wait(Some(self.timeout))
                .metrics(|m| known(m).is_some(), "a known leader")
                .await;
            if let Ok(m) = waited {
                metrics = m;
            }
        }
        if metrics.current_leader == Some(self.id) {
            return self.local_round().await;
        }
        let Some(member) = known(&metrics) else {
            return Err(ReadRefusal::NoLeader { leader: None });
        };
        match tokio::time::timeout(self.timeout, self.ask(&member)).await {
            Ok(r) => r,
            Err(_) => Err(ReadRefusal::Unavailable(format!(
                "the leader {member} did not give a read index in time"
            ))),
        }
    }

    /// The leader's own round: a quorum confirms its leadership; the answer is the index
    /// reads must see (already applied here when this returns).
    pub(crate) async fn local_round(&self) -> Result<u64, ReadRefusal> {
        match self.raft.ensure_linearizable().await {
            Ok(log_id) => Ok(log_id.map_or(0, |l| l.index)),
            Err(e) => {
                use openraft::error::{CheckIsLeaderError, RaftError};
                match e {
                    RaftError::APIError(CheckIsLeaderError::ForwardToLeader(f)) => {
                        Err(ReadRefusal::NoLeader {
                            leader: f.leader_node,
                        })
                    }
                    other => Err(ReadRefusal::Unavailable(other.to_string())),
                }
            }
        }
    }

    async fn ask(&self, leader: &Member) -> Result<u64, ReadRefusal> {
        let uri = format!(
            "{}://{}{READ_INDEX_PATH}",
            self.transport.scheme(),
            leader.addr
        );
        let req = hyper::Request::get(uri)
            .body(Empty::new())
            .map_err(|e| ReadRefusal::Unavailable(e.to_string()))?;
        let resp = self.client().request(req).await.map_err(|e| {
            ReadRefusal::Unavailable(format!(
                "asking {leader} for a read index: {}",
                error_chain(&e)
            ))
        })?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| ReadRefusal::Unavailable(format!("reading {leader}'s answer: {e}")))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        if status.is_success() {
            return text.trim().parse::<u64>().map_err(|_| {
                ReadRefusal::Unavailable(format!("{leader} answered a bad read index {text:?}"))
            });
        }
        if status == hyper::StatusCode::SERVICE_UNAVAILABLE {
            // Not (or no longer) the leader: retry where the metrics point next time.
            return Err(ReadRefusal::NoLeader {
                leader: Some(leader.clone()),
            });
        }
        Err(ReadRefusal::Unavailable(format!(
            "{leader} answered {status} for a read index: {text}"
        )))
    }
}
