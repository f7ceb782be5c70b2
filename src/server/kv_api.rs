//! The JSON key-value API, implementing seed A's contract: `POST /put`, `POST /batchput`,
//! `GET /get`, `GET /range`, `DELETE /delete`, `GET /raft/status`. Errors answer
//! `{"error": ...}`.
//!
//! Values are strings. A key written through the versioned-key API with a non-string JSON
//! value reads back here as that value's compact JSON text. Every write keeps seed B's per-key version
//! counting, so both APIs see one history.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use serde_json::{Map, Value, json};

use super::error::{Api, ApiError};
use super::input::{Query, check_key, check_value_len, json_object};
use super::keyspace;
use super::ops::read_current;
use super::reply::Reply;
use super::state::AppState;
use super::value::{self};
use crate::intent::{self, Write};

const API: Api = Api::Kv;

/// A `{"key": str, "value": str}` object, checked.
fn key_value(
    state: &AppState,
    obj: &Map<String, Value>,
    what: &str,
) -> Result<(String, intent::Value, usize), ApiError> {
    let key = match obj.get("key") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                API,
                format!("Missing key or value{what}"),
            ));
        }
        Some(Value::String(k)) => k.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                API,
                format!("key must be a string{what}"),
            ));
        }
    };
    check_key(API, state.config(), &key).map_err(|mut e| {
        e.message.push_str(what);
        e
    })?;
    let value = match obj.get("value") {
        None | Some(Value::Null) => {
            return Err(ApiError::bad_request(
                API,
                format!("Missing key or value{what}"),
            ));
        }
        Some(Value::String(v)) => v.clone(),
        Some(_) => {
            return Err(ApiError::bad_request(
                API,
                format!("value must be a string{what}"),
            ));
        }
    };
    check_value_len(API, state.config(), value.len())?;
    let len = value.len();
    Ok((key, intent::Value::Text(value), len))
}

/// `POST /put` `{"key": "...", "value": "..."}` → `{"status":"ok"}`.
pub(crate) async fn put(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    let obj = json_object(API, body, state.config().max_body_bytes)?;
    let (key, value, len) = key_value(&state, &obj, "")?;
    let size = key.len() + 1 + len;
    state.write(None, size, Write::Put { key, value }).await
}

/// `POST /batchput` `{"items": [{"key", "value"}, ...]}` → `{"status":"ok","count":n}`; one
/// atomic batch. Any bad item rejects the whole request.
pub(crate) async fn batchput(
    State(state): State<AppState>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Reply, ApiError> {
    let obj = json_object(API, body, state.config().max_body_bytes)?;
    let items = match obj.get("items") {
        Some(Value::Array(items)) if !items.is_empty() => items,
        _ => return Err(ApiError::bad_request(API, "Missing items list")),
    };
    let mut parsed = Vec::with_capacity(items.len());
    let mut size = 0;
    for (i, item) in items.iter().enumerate() {
        let Value::Object(o) = item else {
            return Err(ApiError::bad_request(
                API,
                format!("items[{i}] must be an object"),
            ));
        };
        let (key, value, len) = key_value(&state, o, &format!(" (items[{i}])"))?;
        size += key.len() + len + 1;
        parsed.push((key, value));
    }
    state
        .write(None, size, Write::Batch { items: parsed })
        .await
}

fn required_key(state: &AppState, q: &Query) -> Result<String, ApiError> {
    let key = match q.get("key") {
        None | Some("") => return Err(ApiError::bad_request(API, "Missing key")),
        Some(k) => k.to_string(),
    };
    check_key(API, state.config(), &key)?;
    Ok(key)
}

/// `GET /get?key=K` → `{"key": K, "value": V}`.
pub(crate) async fn get(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let key = required_key(&state, &q)?;
    state
        .blocking(API, move |s| {
            match read_current(&s.db(), API, &keyspace::user_key(&key))? {
                None => Err(ApiError::not_found(API, "Key not found")),
                Some(c) => Ok(Reply::ok(&json!({"key": key, "value": c.value.to_text()}))),
            }
        })
        .await
}

/// `GET /range?start=S&end=E&limit=L`: keys in `[S, E)` (no upper bound without `E`), at most
/// `L` of them (default 100).
pub(crate) async fn range(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    state.read_barrier(API, q.stale(API)?).await?;
    let Some(start) = q.get("start").map(str::to_string) else {
        return Err(ApiError::bad_request(API, "Missing start key"));
    };
    let end = q.get("end").filter(|e| !e.is_empty()).map(str::to_string);
    let limit = match q.get("limit") {
        None | Some("") => 100,
        Some(l) => match l.trim().parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                return Err(ApiError::bad_request(
                    API,
                    format!("limit must be a non-negative integer, got {l:?}"),
                ));
            }
        },
    };
    let limit = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .min(state.config().max_range_items);
    state
        .blocking(API, move |s| {
            let mut items = Vec::new();
            if limit > 0 && end.as_deref().is_none_or(|e| start.as_str() < e) {
                let bounds = keyspace::user_bounds(&start, end.as_deref());
                for item in s.db().range(bounds).take(limit) {
                    let (k, v) = item.map_err(|e| ApiError::store(API, &e))?;
                    let key = keyspace::strip_user(&k)
                        .and_then(|k| std::str::from_utf8(k).ok())
                        .ok_or_else(|| ApiError::internal(API, "stored key is not UTF-8"))?;
                    let env =
                        value::decode(&v).map_err(|e| ApiError::internal(API, e.to_string()))?;
                    items.push(json!({"key": key, "value": env.value.to_text()}));
                }
            }
            let count = items.len();
            Ok(Reply::ok(&json!({"items": items, "count": count})))
        })
        .await
}

/// `DELETE /delete?key=K` → `{"status":"deleted"}`, also when the key did not exist.
pub(crate) async fn delete(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    let key = required_key(&state, &q)?;
    let size = key.len() + 1;
    state.write(None, size, Write::Delete { key }).await
}

/// `GET /raft/status`: `{"mode":"standalone"}` on a standalone node.
#[cfg_attr(not(feature = "replication"), allow(unused_variables))]
pub(crate) async fn raft_status(State(state): State<AppState>) -> Reply {
    #[cfg(feature = "replication")]
    if let Some(c) = state.cluster() {
        return Reply::ok(&super::cluster::routes::raft_status(&state, &c.replica));
    }
    Reply::ok(&json!({"mode": "standalone"}))
}
