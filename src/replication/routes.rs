//! The receiving side of the Raft RPCs: an axum [`Router`] serving `POST /raft/append/{id}`,
//! `/raft/vote/{id}` and `/raft/snapshot/{id}`, for the node's HTTP server to mount.
//!
//! A request is decoded before openraft sees it: a body that does not decode is answered
//! `400`, a body over the limit `413`, a request for another node id `421 Misdirected
//! Request` (a peer with a stale address book must not drive this node's Raft). Errors are
//! JSON `{"error": ...}`; a decoded request gets `200` with the codec's bytes of openraft's
//! `Result`, so a Raft-level refusal travels back typed.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use parking_lot::Mutex;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::codec;
use super::network::{APPEND_PATH, CONTENT_TYPE, SNAPSHOT_PATH, VOTE_PATH};
use super::types::{NodeId, Raft};

#[derive(Clone)]
struct RpcState {
    raft: Raft,
    id: NodeId,
    contact: LeaderContact,
}

/// When this node last accepted an AppendEntries (a heartbeat or entries) from a leader:
/// a follower's view of its leader's health, which openraft's metrics do not give.
#[derive(Clone, Debug, Default)]
pub struct LeaderContact(Arc<Mutex<Option<Instant>>>);

impl LeaderContact {
    /// The time of the last accepted AppendEntries, if any.
    pub fn last(&self) -> Option<Instant> {
        *self.0.lock()
    }

    fn touch(&self) {
        *self.0.lock() = Some(Instant::now());
    }
}

/// The Raft RPC routes of node `id`, accepting bodies up to `max_body_bytes`.
pub fn router(raft: Raft, id: NodeId, max_body_bytes: usize, contact: LeaderContact) -> Router {
    Router::new()
        .route(&format!("{APPEND_PATH}/{{target}}"), post(append))
        .route(&format!("{VOTE_PATH}/{{target}}"), post(vote))
        .route(&format!("{SNAPSHOT_PATH}/{{target}}"), post(snapshot))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(RpcState { raft, id, contact })
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    let mut r = (status, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// A refused request: its status and message.
type Refusal = (StatusCode, String);

/// Checks the target and decodes the body.
fn accept<T: DeserializeOwned>(
    state: &RpcState,
    target: &str,
    body: Result<Bytes, BytesRejection>,
) -> Result<T, Refusal> {
    match target.parse::<NodeId>() {
        Ok(t) if t == state.id => {}
        Ok(t) => {
            return Err((
                StatusCode::MISDIRECTED_REQUEST,
                format!("this is node {}, not node {t}", state.id),
            ));
        }
        Err(_) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("target node id {target:?} is not a number"),
            ));
        }
    }
    let body = body.map_err(|e| (e.status(), e.body_text()))?;
    codec::decode(&body).map_err(|e| (StatusCode::BAD_REQUEST, format!("bad body: {e}")))
}

fn answer<T: Serialize>(value: &T) -> Response {
    match codec::encode(value) {
        Ok(bytes) => {
            let mut r = (StatusCode::OK, bytes).into_response();
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            r
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn append(
    State(state): State<RpcState>,
    Path(target): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&state, &target, body) {
        Ok(req) => {
            let r = state.raft.append_entries(req).await;
            if matches!(&r, Ok(resp) if resp.is_success()) {
                state.contact.touch();
            }
            answer(&r)
        }
        Err((status, message)) => error(status, message),
    }
}

async fn vote(
    State(state): State<RpcState>,
    Path(target): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&state, &target, body) {
        Ok(req) => answer(&state.raft.vote(req).await),
        Err((status, message)) => error(status, message),
    }
}

async fn snapshot(
    State(state): State<RpcState>,
    Path(target): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match accept(&state, &target, body) {
        Ok(req) => answer(&state.raft.install_snapshot(req).await),
        Err((status, message)) => error(status, message),
    }
}
