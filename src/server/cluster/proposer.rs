//! The cluster's committer: gathers the writes queued at the same moment into one Raft log
//! entry, so that the leader pays one log append and one fsync (and followers one each) for
//! the whole round, as the standalone committer pays one WAL fsync per round.
//!
//! Rounds are pipelined: while some rounds wait for their quorum, the next one gathers the
//! writes that arrived meanwhile (at most [`MAX_IN_FLIGHT`] rounds are proposed at once).
//! The queue is bounded: a full queue, or a write still queued at its deadline, is a 503
//! with `Retry-After`, unapplied.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{Semaphore, mpsc, oneshot};

use crate::intent::Write;
use crate::replication::replica::{Refusal, Replica};
use crate::replication::types::{Outcome, Request};
use crate::server::dedup::now_ms;
use crate::server::error::{Api, ApiError};
use crate::server::reply::Reply;

/// Most writes in one log entry.
const MAX_ROUND_WRITES: usize = 512;
/// A round stops taking writes beyond this many request bytes (an entry must replicate
/// within one AppendEntries deadline).
const MAX_ROUND_BYTES: usize = 1 << 20;
/// Rounds proposed and not yet answered, at most.
const MAX_IN_FLIGHT: usize = 8;

struct Pending {
    api: Api,
    write: Write,
    size: usize,
    deadline: Instant,
    reply: oneshot::Sender<Result<Reply, ApiError>>,
}

/// The handle to the proposer task.
#[derive(Debug, Clone)]
pub(crate) struct Proposer {
    tx: mpsc::Sender<Pending>,
}

impl Proposer {
    /// Starts the proposer over `replica`, with room for `capacity` queued writes.
    pub(crate) fn start(replica: Arc<Replica>, capacity: usize) -> Proposer {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        tokio::spawn(run(replica, rx));
        Proposer { tx }
    }

    /// Queues `write` and waits for its answer.
    pub(crate) async fn submit(
        &self,
        api: Api,
        write: Write,
        size: usize,
        deadline: Instant,
    ) -> Result<Reply, ApiError> {
        let (reply, rx) = oneshot::channel();
        let pending = Pending {
            api,
            write,
            size,
            deadline,
            reply,
        };
        if let Err(e) = self.tx.try_send(pending) {
            return Err(match e {
                mpsc::error::TrySendError::Full(_) => ApiError::busy(
                    api,
                    "too many writes are waiting for the cluster; retry later",
                ),
                mpsc::error::TrySendError::Closed(_) => ApiError::busy(api, "the node is stopping"),
            });
        }
        rx.await
            .unwrap_or_else(|_| Err(ApiError::internal(api, "the write was dropped")))
    }
}

async fn run(replica: Arc<Replica>, mut rx: mpsc::Receiver<Pending>) {
    let slots = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        // Wait for a free slot first, so writes keep gathering while every slot is busy.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let Some(first) = rx.recv().await else {
            return;
        };
        let now = Instant::now();
        let mut round = Vec::new();
        let mut bytes = 0;
        let mut next = Some(first);
        while let Some(p) = next.take() {
            if now > p.deadline {
                let api = p.api;
                let _ = p.reply.send(Err(ApiError::busy(
                    api,
                    "the write waited too long to be proposed; retry later",
                )));
            } else {
                bytes += p.size;
                round.push(p);
            }
            if round.len() >= MAX_ROUND_WRITES || bytes >= MAX_ROUND_BYTES {
                break;
            }
            next = rx.try_recv().ok();
        }
        if round.is_empty() {
            continue;
        }
        let replica = Arc::clone(&replica);
        tokio::spawn(async move {
            propose(&replica, round).await;
            drop(permit);
        });
    }
}

/// The `host:port` of a leader hint.
pub(crate) fn leader_addr(leader: Option<crate::replication::types::Member>) -> Option<String> {
    leader.map(|m| m.addr)
}

/// A refusal as the client sees it.
pub(crate) fn refusal_error(api: Api, r: Refusal) -> ApiError {
    match r {
        Refusal::NotLeader { leader } => ApiError::not_leader(api, leader_addr(leader)),
        Refusal::Invalid(m) => ApiError::bad_request(api, m),
        Refusal::Unavailable(m) => ApiError::busy(api, format!("the cluster is unavailable: {m}")),
    }
}

async fn propose(replica: &Replica, round: Vec<Pending>) {
    let mut writes = Vec::with_capacity(round.len());
    let mut waiters = Vec::with_capacity(round.len());
    for p in round {
        writes.push(p.write);
        waiters.push((p.api, p.reply));
    }
    let request = Request {
        leader_ms: now_ms(),
        writes,
    };
    match replica.propose(request).await {
        Ok(response) => {
            let mut outcomes = response.outcomes.into_iter();
            for (api, reply) in waiters {
                let answer = match outcomes.next() {
                    Some(Outcome::Reply { status, body }) => {
                        match axum::http::StatusCode::from_u16(status) {
                            Ok(status) => Ok(Reply { status, body }),
                            Err(_) => Err(ApiError::internal(api, "a bad status was applied")),
                        }
                    }
                    Some(other) => Err(ApiError::internal(
                        api,
                        format!("unexpected apply outcome {other:?}"),
                    )),
                    None => Err(ApiError::internal(api, "the write got no outcome")),
                };
                let _ = reply.send(answer);
            }
        }
        Err(r) => {
            for (api, reply) in waiters {
                let _ = reply.send(Err(refusal_error(api, r.clone())));
            }
        }
    }
}
