//! The cluster's HTTP routes on every node: the Raft RPCs (`/raft/append|vote|snapshot`),
//! the read index followers ask the leader for, membership, and the cluster views of
//! `/raft/status` and `/cluster_status`.
//!
//! Membership (the shapes the `strata cluster` commands use):
//!
//! | route | body | answer |
//! |---|---|---|
//! | `GET /cluster/members` | | `{"members":[{"id","addr","role"}]}` |
//! | `POST /cluster/learners` | `{"node_id","addr"}` | the members after the change |
//! | `POST /cluster/promote` | `{"node_id"}` | the members after the change |
//! | `POST /cluster/remove` | `{"node_id"}` | the members after the change |
//!
//! Changes run on the leader; elsewhere they are answered 503 "not leader" with the hint.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use super::proposer::{leader_addr, refusal_error};
use crate::replication::read_index::READ_INDEX_PATH;
use crate::replication::replica::Replica;
use crate::server::error::{Api, ApiError};
use crate::server::input::json_object;
use crate::server::reply::Reply;
use crate::server::state::AppState;

const API: Api = Api::Kv;

/// The routes peers call: the Raft RPCs and the read index (served outside the client
/// limits and tokens; they check what they accept themselves).
pub(crate) fn peer_router(state: &AppState) -> Router {
    let Some(cluster) = state.cluster() else {
        return Router::new();
    };
    Router::new()
        .route(READ_INDEX_PATH, get(read_index))
        .with_state(state.clone())
        .merge(cluster.replica.node().router())
}

/// The membership routes clients and operators call (under the client limits and tokens).
pub(crate) fn member_router(state: &AppState) -> Router {
    if state.cluster().is_none() {
        return Router::new();
    }
    Router::new()
        .route("/cluster/members", get(members))
        .route("/cluster/learners", post(add_learner))
        .route("/cluster/promote", post(promote))
        .route("/cluster/remove", post(remove))
        .with_state(state.clone())
}

fn replica(state: &AppState) -> Result<&Replica, ApiError> {
    state
        .cluster()
        .map(|c| &*c.replica)
        .ok_or_else(|| ApiError::not_found(API, "this node is not in a cluster"))
}

async fn read_index(State(state): State<AppState>) -> Result<Response, ApiError> {
    let r = replica(&state)?;
    let index = r
        .leader_read_index()
        .await
        .map_err(|e| refusal_error(API, e))?;
    Ok((StatusCode::OK, index.to_string()).into_response())
}

fn members_body(r: &Replica) -> Value {
    let list: Vec<Value> = r
        .members()
        .into_iter()
        .map(|m| {
            json!({
                "id": m.member.name,
                "raft_id": m.id,
                "addr": m.member.addr,
                "role": if m.voter { "voter" } else { "learner" },
            })
        })
        .collect();
    json!({
        "members": list,
        "leader": r.leader().map(|l| l.name),
    })
}

async fn members(State(state): State<AppState>) -> Result<Reply, ApiError> {
    Ok(Reply::ok(&members_body(replica(&state)?)))
}

fn field(obj: &serde_json::Map<String, Value>, name: &str) -> Result<String, ApiError> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => Ok(s.clone()),
        _ => Err(ApiError::bad_request(
            API,
            format!("field {name} must be a non-empty string"),
        )),
    }
}

async fn add_learner(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    let obj = json_object(API, body, state.config().max_body_bytes)?;
    let (name, addr) = (field(&obj, "node_id")?, field(&obj, "addr")?);
    let r = replica(&state)?;
    r.add_learner(&name, &addr)
        .await
        .map_err(|e| refusal_error(API, e))?;
    Ok(Reply::ok(&members_body(r)))
}

/// Which change `POST /cluster/promote` and `/cluster/remove` make.
#[derive(Clone, Copy)]
enum Change {
    Promote,
    Remove,
}

async fn change(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
    what: Change,
) -> Result<Reply, ApiError> {
    let obj = json_object(API, body, state.config().max_body_bytes)?;
    let name = field(&obj, "node_id")?;
    let r = replica(state)?;
    let done = match what {
        Change::Promote => r.promote(&name).await,
        Change::Remove => r.remove(&name).await,
    };
    done.map_err(|e| refusal_error(API, e))?;
    Ok(Reply::ok(&members_body(r)))
}

async fn promote(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    change(&state, body, Change::Promote).await
}

async fn remove(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    change(&state, body, Change::Remove).await
}

/// Seed 000's `/raft/status` fields from the node's Raft state.
pub(crate) fn raft_status(state: &AppState, r: &Replica) -> Value {
    let s = r.status();
    json!({
        "node_id": state.config().node_id,
        "state": s.state,
        "term": s.term,
        "leader_id": s.leader.as_ref().map(|l| l.name.clone()),
        "leader": leader_addr(s.leader.clone()),
        "commit_index": s.commit_index,
        "last_applied": s.last_applied,
        "log_length": s.log_length,
        "last_log_index": s.last_log_index,
        "snapshot_index": s.snapshot_index,
        "members": r.members().len(),
    })
}

/// The scheme members are reached at (every member of a cluster is set up alike).
fn scheme(state: &AppState) -> &'static str {
    if state.config().security.port_is_tls() {
        "https"
    } else {
        "http"
    }
}

/// Seed 003's `/cluster_status` from the node's Raft state: the leader, and each follower
/// with the time since this node last heard from it (recorded by the network layer).
pub(crate) fn cluster_status(state: &AppState, r: &Replica, heartbeat_secs: f64) -> Value {
    let s = r.status();
    let now = std::time::Instant::now();
    let mut followers = serde_json::Map::new();
    let leader_name = s.leader.as_ref().map(|l| l.name.clone());
    let leading = s.state == "leader";
    let limit = 5.0 * heartbeat_secs.max(0.1);
    for m in &s.members {
        if Some(&m.member.name) == leader_name.as_ref() {
            continue;
        }
        // The leader knows when each follower last answered it; a follower knows only
        // itself (when its leader last reached it).
        let (since, last_error) = if leading {
            let peer = s.peers.get(&m.id);
            (
                peer.and_then(|p| p.last_ok)
                    .map(|t| now.duration_since(t).as_secs_f64()),
                peer.and_then(|p| p.last_error.as_ref().map(|(_, e)| e.clone())),
            )
        } else if m.member.name == state.config().node_id {
            (
                r.node()
                    .leader_contact()
                    .map(|t| now.duration_since(t).as_secs_f64()),
                None,
            )
        } else {
            continue;
        };
        let healthy = since.is_some_and(|secs| secs < limit);
        followers.insert(
            m.member.name.clone(),
            json!({
                "url": format!("{}://{}", scheme(state), m.member.addr),
                "role": if m.voter { "voter" } else { "learner" },
                "status": if healthy { "healthy" } else { "unhealthy" },
                "last_heartbeat_seconds_ago": since,
                "matched_index": s.matched.get(&m.id).copied().flatten(),
                "last_error": last_error,
            }),
        );
    }
    json!({
        "leader": {
            "id": leader_name,
            "url": s.leader.as_ref().map(|l| format!("{}://{}", scheme(state), l.addr)),
            "status": if s.leader.is_some() { "healthy" } else { "unknown" },
        },
        "this_node": state.config().node_id,
        "state": s.state,
        "term": s.term,
        "followers": followers,
        "heartbeat_interval": heartbeat_secs,
        "millis_since_quorum_ack": s.millis_since_quorum_ack,
    })
}
