//! The versioned-key API, implementing seed B's contract: versioned values under
//! `/key/{key}`, listings, WAL segments, cluster status and the idempotency endpoints. Errors
//! answer `{"detail": ...}`.
//!
//! - `version` is per key: 1 on creation, one more on every write, 1 again after a delete.
//!   A PUT naming a `version` must name one newer than the current version, else 409. On a
//!   new key, a named version above 1 becomes the first version (seed B's rule).
//! - `id` is the store-wide sequence number of the write.
//! - A delete ends a key's history: history, versions and `?version=N` only see the key's
//!   current life, since its last delete.
//! - With `client_id` and `request_id`, PUT and DELETE are idempotent (`dedup.rs`). With
//!   tokens, the records are kept per caller (`auth.rs`): `client_id` is scoped by the
//!   caller's name, for writes and for `/request_status` alike.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::auth::Caller;
use super::dedup::{Op, RecordId, now_ms};
use super::error::{Api, ApiError};
use super::input::{Query, check_id, check_value_len, json_object, path_key};
use super::keyspace;
use super::ops::{current_life, read_current};
use super::reply::Reply;
use super::state::AppState;
use super::value::{self, StoredValue};
use crate::intent::Write;

const API: Api = Api::Versioned;

fn not_found(key: &str) -> ApiError {
    ApiError::not_found(API, format!("Key not found: {key}"))
}

fn ident(q: &Query, caller: &Caller, op: Op, key: &str) -> Result<Option<RecordId>, ApiError> {
    Ok(q.ids(API)?.map(|(client, request)| RecordId {
        client: caller.scope(&client),
        request,
        op,
        key: key.to_string(),
    }))
}

/// `GET /key/{key}[?version=N]` → `{"key","value","version"}`.
pub(crate) async fn get_key(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let key = path_key(state.config(), path)?;
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let version = q.int(API, StatusCode::UNPROCESSABLE_ENTITY, "version")?;
    state
        .blocking(API, move |s| {
            let stored = keyspace::user_key(&key);
            let env = match version {
                None => read_current(&s.db(), API, &stored)?,
                Some(0) => return Err(not_found(&key)),
                Some(n) => current_life(&s.db(), API, &stored)?
                    .into_iter()
                    .find(|e| i128::from(e.version) == i128::from(n)),
            };
            match env {
                Some(e) => Ok(Reply::ok(&json!({
                    "key": key,
                    "value": e.value.to_json(),
                    "version": e.version,
                }))),
                None => match version {
                    Some(n) => Err(ApiError::not_found(
                        API,
                        format!("Key not found or version {n} not available: {key}"),
                    )),
                    None => Err(not_found(&key)),
                },
            }
        })
        .await
}

/// The optional `version` of a PUT body: an integer (or a string of one, as seed B coerces).
fn body_version(v: Option<&Value>) -> Result<Option<i64>, ApiError> {
    let bad = || ApiError::unprocessable(API, "version must be an integer");
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(bad),
        Some(Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad()),
        Some(_) => Err(bad()),
    }
}

/// `PUT /key/{key}` `{"value": any JSON, "version"?: int}` →
/// `{"status":"ok","id","key","version"}`; 409 when `version` is not newer than the current.
pub(crate) async fn put_key(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    let key = path_key(state.config(), path)?;
    let q = Query::parse(API, raw.as_deref())?;
    let mut obj = json_object(API, body, state.config().max_body_bytes)?;
    let Some(value) = obj.remove("value") else {
        return Err(ApiError::unprocessable(
            API,
            "field required: value (body must be {\"value\": ...})",
        ));
    };
    let provided = body_version(obj.get("version"))?;
    let stored_value = StoredValue::from_json(value);
    let (_, payload) = value::payload(&stored_value);
    check_value_len(API, state.config(), payload.len())?;
    let ident = ident(&q, &caller, Op::Set, &key)?;
    let size = key.len() + 1 + payload.len();
    let request = ident.as_ref().map(RecordId::request_id);
    let write = Write::PutVersioned {
        key,
        value: value::to_intent(stored_value),
        version: provided,
        request,
    };
    state.write(ident, size, write).await
}

/// `DELETE /key/{key}` → `{"status":"ok","id"}`; 404 when the key does not exist.
pub(crate) async fn delete_key(
    State(state): State<AppState>,
    caller: Caller,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let key = path_key(state.config(), path)?;
    let q = Query::parse(API, raw.as_deref())?;
    let ident = ident(&q, &caller, Op::Delete, &key)?;
    let size = key.len() + 1;
    let request = ident.as_ref().map(RecordId::request_id);
    state
        .write(ident, size, Write::DeleteKey { key, request })
        .await
}

/// The per-key versions of the key's current life, oldest first, with their values.
async fn life(
    state: &AppState,
    path: Result<Path<String>, PathRejection>,
) -> Result<(String, Vec<value::Envelope>), ApiError> {
    let key = path_key(state.config(), path)?;
    state
        .blocking(API, move |s| {
            let life = current_life(&s.db(), API, &keyspace::user_key(&key))?;
            if life.is_empty() {
                return Err(not_found(&key));
            }
            Ok((key, life))
        })
        .await
}

/// `GET /key/{key}/history` → `{"key","versions":[..],"history":[{"version","value"}]}`.
pub(crate) async fn history(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let (key, life) = life(&state, path).await?;
    let versions: Vec<u64> = life.iter().map(|e| e.version).collect();
    let history: Vec<Value> = life
        .iter()
        .map(|e| json!({"version": e.version, "value": e.value.to_json()}))
        .collect();
    Ok(Reply::ok(
        &json!({"key": key, "versions": versions, "history": history}),
    ))
}

/// `GET /key/{key}/versions` → `{"key","versions":[..],"latest_version"}`.
pub(crate) async fn versions(
    State(state): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let (key, life) = life(&state, path).await?;
    let versions: Vec<u64> = life.iter().map(|e| e.version).collect();
    let latest = versions.last().copied();
    Ok(Reply::ok(
        &json!({"key": key, "versions": versions, "latest_version": latest}),
    ))
}

/// `GET /keys[?limit=N][&prefix=P][&start_after=K]` →
/// `{"keys":[..],"count","next_start_after"}`: one page of keys in key order. `limit`
/// defaults to `default_keys_page` and is capped at `max_keys_page`; `next_start_after` is
/// the `start_after` of the next page, or `null` on the last page.
pub(crate) async fn keys(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let limit = match q.int(API, StatusCode::UNPROCESSABLE_ENTITY, "limit")? {
        None => state.config().default_keys_page,
        Some(n) if n >= 1 => usize::try_from(n)
            .unwrap_or(usize::MAX)
            .min(state.config().max_keys_page),
        Some(n) => {
            return Err(ApiError::unprocessable(
                API,
                format!("limit must be at least 1, got {n}"),
            ));
        }
    };
    let prefix = q.get("prefix").unwrap_or_default().to_string();
    let after = q.get("start_after").map(str::to_string);
    state
        .blocking(API, move |s| {
            let bounds = keyspace::page_bounds(&prefix, after.as_deref());
            let mut keys = Vec::with_capacity(limit.min(1024));
            let mut more = false;
            for item in s.db().range(bounds) {
                let (k, _) = item.map_err(|e| ApiError::store(API, &e))?;
                let key = keyspace::strip_user(&k)
                    .and_then(|k| std::str::from_utf8(k).ok())
                    .ok_or_else(|| ApiError::internal(API, "stored key is not UTF-8"))?;
                if keys.len() == limit {
                    more = true;
                    break;
                }
                keys.push(key.to_string());
            }
            let next = if more { keys.last().cloned() } else { None };
            let count = keys.len();
            Ok(Reply::ok(
                &json!({"keys": keys, "count": count, "next_start_after": next}),
            ))
        })
        .await
}

/// `GET /segments`: the live WAL segments.
pub(crate) async fn segments(State(state): State<AppState>) -> Result<Reply, ApiError> {
    state
        .blocking(API, |s| {
            let segs = s.db().wal_segments();
            let list: Vec<Value> = segs
                .iter()
                .map(|g| {
                    json!({
                        "path": g.path.display().to_string(),
                        "size": g.size,
                        "is_active": g.active,
                    })
                })
                .collect();
            Ok(Reply::ok(&json!({
                "segments": list,
                "total_segments": segs.len(),
                "max_segment_size": s.db().config().wal_segment_bytes,
            })))
        })
        .await
}

/// Seed B's heartbeat interval, reported by `/cluster_status`. A standalone node sends no
/// heartbeats; the figure is kept for clients that read it.
const HEARTBEAT_INTERVAL_SECS: u64 = 10;

/// `GET /cluster_status`: this node as the leader, with no followers: `healthy`, or 503 with
/// status `unhealthy` and the reason when the store is poisoned.
pub(crate) async fn cluster_status(State(state): State<AppState>) -> Reply {
    #[cfg(feature = "replication")]
    if let Some(c) = state.cluster() {
        let heartbeat = c.heartbeat_secs;
        return Reply::ok(&super::cluster::routes::cluster_status(
            &state, &c.replica, heartbeat,
        ));
    }
    let mut body = json!({
        "leader": {
            "id": state.config().node_id,
            "url": state.url(),
            "status": "healthy",
        },
        "followers": {},
        "heartbeat_interval": HEARTBEAT_INTERVAL_SECS,
    });
    match state.unavailable_reason() {
        None => Reply::ok(&body),
        Some(reason) => {
            body["leader"]["status"] = json!("unhealthy");
            body["leader"]["reason"] = json!(reason);
            body["detail"] = json!(reason);
            Reply::json(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

/// `GET /deduplication_stats`.
/// The figures come from counters kept with the records (`dedup_book.rs`): no scan.
pub(crate) async fn deduplication_stats(State(state): State<AppState>) -> Reply {
    Reply::ok(&state.dedup().stats(&state.config().node_id))
}

/// `GET /request_status?client_id=&request_id=[&operation=][&key=]` →
/// `{"processed":true,"operation","key","status_code","result":<recorded body>}` or
/// `{"processed":false}`.
pub(crate) async fn request_status(
    State(state): State<AppState>,
    caller: Caller,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let (Some(client), Some(request)) = (q.get("client_id"), q.get("request_id")) else {
        return Err(ApiError::unprocessable(
            API,
            "query parameters client_id and request_id are required",
        ));
    };
    check_id(API, "client_id", client)?;
    check_id(API, "request_id", request)?;
    let op = match q.get("operation") {
        None | Some("") => None,
        Some(o) => match Op::parse(o) {
            Ok(Some(op)) => Some(op),
            // reads are never recorded
            Ok(None) => return Ok(Reply::ok(&json!({"processed": false}))),
            Err(()) => {
                return Err(ApiError::unprocessable(
                    API,
                    format!("operation must be GET, SET or DELETE, got {o:?}"),
                ));
            }
        },
    };
    let (client, request) = (caller.scope(client), request.to_string());
    let key = q.get("key").map(str::to_string);
    state
        .blocking(API, move |s| {
            let found = s
                .dedup()
                .status(&s.db(), &client, &request, op, key.as_deref(), now_ms())
                .map_err(|e| ApiError::store(API, &e))?;
            Ok(Reply::ok(&match found {
                None => json!({"processed": false}),
                Some((id, reply)) => {
                    let result: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
                    json!({
                        "processed": true,
                        "operation": id.op.name(),
                        "key": id.key,
                        "status_code": reply.status.as_u16(),
                        "result": result,
                    })
                }
            }))
        })
        .await
}
