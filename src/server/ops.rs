//! Versioned operations on user keys, shared by both APIs: reading a key's current value and
//! its current life, and planning writes that keep seed B's per-key version right.
//!
//! A write arrives as its intent ([`Write`]); [`plan`] reads the keys it touches through a
//! [`View`] (per-key version, and the store sequence number behind it) and returns its
//! operations and its answer. The standalone committer (`writer.rs`) commits the plan with a
//! precondition that every key read still has the sequence number it had (the library's
//! compare-and-set), and plans again if not; a replica's state machine runs the same [`plan`]
//! inside `apply`, over its transaction ([`Source`]), so both keep seed B's versions alike.

use std::cell::RefCell;
use std::collections::HashMap;

use axum::http::StatusCode;
use serde_json::json;

use super::error::{Api, ApiError};
use super::keyspace;
use super::reply::Outcome;
use super::value::{self, Envelope};
use crate::intent::Write;
use crate::{Db, SeqNo};

/// Where a planned write reads: the store itself, or a replica's apply transaction.
pub(crate) trait Source {
    /// The current value of a stored key, with the store sequence number that wrote it when
    /// the source knows it (a precondition for the commit).
    fn read(&self, stored: &[u8]) -> crate::Result<Option<(Option<SeqNo>, bytes::Bytes)>>;
}

impl Source for Db {
    fn read(&self, stored: &[u8]) -> crate::Result<Option<(Option<SeqNo>, bytes::Bytes)>> {
        Ok(self
            .get_versioned(stored)?
            .map(|vv| (Some(vv.version), vv.value)))
    }
}

fn damaged(api: Api, e: impl std::fmt::Display) -> ApiError {
    ApiError::internal(api, e.to_string())
}

/// The current value of a stored user key.
pub(crate) fn read_current(db: &Db, api: Api, stored: &[u8]) -> Result<Option<Envelope>, ApiError> {
    let Some(value) = db.get(stored).map_err(|e| ApiError::store(api, &e))? else {
        return Ok(None);
    };
    value::decode(&value).map(Some).map_err(|e| damaged(api, e))
}

/// The key's current life, oldest first: its retained versions since its last delete.
pub(crate) fn current_life(db: &Db, api: Api, stored: &[u8]) -> Result<Vec<Envelope>, ApiError> {
    let mut life = Vec::new();
    for v in db.versions(stored) {
        let v = v.map_err(|e| ApiError::store(api, &e))?;
        let Some(bytes) = v.value else {
            break;
        };
        life.push(value::decode(&bytes).map_err(|e| damaged(api, e))?);
    }
    life.reverse();
    Ok(life)
}

/// What a planned write sees: the store, overlaid with the writes planned before it in the
/// same commit round. Every key read from the store is remembered with the sequence number it
/// had, and the round's batch requires the store to still hold exactly those versions.
pub(crate) struct View<'a> {
    db: &'a dyn Source,
    api: Api,
    overlay: &'a HashMap<Vec<u8>, Option<u64>>,
    reads: RefCell<Vec<(Vec<u8>, Option<SeqNo>)>>,
}

impl<'a> View<'a> {
    pub(crate) fn new(
        db: &'a dyn Source,
        api: Api,
        overlay: &'a HashMap<Vec<u8>, Option<u64>>,
    ) -> Self {
        View {
            db,
            api,
            overlay,
            reads: RefCell::new(Vec::new()),
        }
    }

    /// The per-key version of a stored user key (`None` = absent).
    pub(crate) fn version(&self, stored: &[u8]) -> Result<Option<u64>, ApiError> {
        if let Some(v) = self.overlay.get(stored) {
            return Ok(*v);
        }
        let r = match self.db.read(stored) {
            Err(e) => return Err(ApiError::store(self.api, &e)),
            Ok(None) => None,
            Ok(Some((seq, value))) => {
                let v = value::decode_version(&value).map_err(|e| damaged(self.api, e))?;
                Some((seq, v))
            }
        };
        self.reads
            .borrow_mut()
            .push((stored.to_vec(), r.and_then(|(seq, _)| seq)));
        Ok(r.map(|(_, v)| v))
    }

    /// The keys read from the store, with the sequence numbers they had.
    pub(crate) fn into_reads(self) -> Vec<(Vec<u8>, Option<SeqNo>)> {
        self.reads.into_inner()
    }
}

/// One planned write: its operations and its answer.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Stored keys to put (`Some`) or delete (`None`).
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The answer once the batch is committed.
    pub outcome: Outcome,
}

impl Plan {
    /// A plan that writes nothing and answers `outcome`.
    pub(crate) fn answer(outcome: Outcome) -> Plan {
        Plan {
            ops: Vec::new(),
            outcome,
        }
    }
}

/// Plans a write from what it reads; called again if the write has to be retried.
pub(crate) type Planner = Box<dyn FnMut(&View<'_>) -> Result<Plan, ApiError> + Send>;

/// The per-key version a write gives a key whose current version is `current`.
pub(crate) fn next_version(current: Option<u64>) -> u64 {
    current.map_or(1, |v| v.saturating_add(1))
}

/// Stored key and envelope of a put of `value` under user key `key` at `version`.
pub(crate) fn put_op(
    key: &str,
    version: u64,
    kind: u8,
    payload: &[u8],
) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        keyspace::user_key(key),
        Some(value::encode(version, kind, payload)),
    )
}

/// [`put_op`] of a value as a write's intent carries it.
fn put_intent(key: &str, version: u64, value: &crate::intent::Value) -> (Vec<u8>, Option<Vec<u8>>) {
    put_op(key, version, value::intent_kind(value), value.payload())
}

/// Plans `write` against what `view` shows: its operations and its answer. The one place
/// that decides what a write means, for the standalone committer and for every replica.
pub(crate) fn plan(write: &Write, view: &View<'_>) -> Result<Plan, ApiError> {
    match write {
        Write::Put { key, value } => {
            let version = next_version(view.version(&keyspace::user_key(key))?);
            Ok(Plan {
                ops: vec![put_intent(key, version, value)],
                outcome: Outcome::fixed(StatusCode::OK, json!({"status": "ok"})),
            })
        }
        Write::Batch { items } => {
            // Repeated keys in one batch: each put is one more version.
            let mut versions: HashMap<&str, u64> = HashMap::new();
            let mut ops = Vec::with_capacity(items.len());
            for (key, value) in items {
                let current = match versions.get(key.as_str()) {
                    Some(v) => Some(*v),
                    None => view.version(&keyspace::user_key(key))?,
                };
                let v = next_version(current);
                versions.insert(key, v);
                ops.push(put_intent(key, v, value));
            }
            let count = ops.len();
            Ok(Plan {
                ops,
                outcome: Outcome::fixed(StatusCode::OK, json!({"status": "ok", "count": count})),
            })
        }
        Write::Delete { key } => Ok(Plan {
            ops: vec![(keyspace::user_key(key), None)],
            outcome: Outcome::fixed(StatusCode::OK, json!({"status": "deleted"})),
        }),
        Write::PutVersioned {
            key,
            value,
            version: provided,
            ..
        } => {
            let current = view.version(&keyspace::user_key(key))?;
            let cur = current.unwrap_or(0);
            if let Some(p) = provided.filter(|p| *p != 0)
                && i128::from(p) <= i128::from(cur)
            {
                let e = ApiError::conflict(
                    format!("Version conflict: provided version {p} is outdated"),
                    cur,
                );
                return Ok(Plan::answer(Outcome::fixed(e.status, e.body())));
            }
            let version = match (current, provided) {
                (Some(_), _) => cur.saturating_add(1),
                (None, Some(p)) if *p > 1 => p.unsigned_abs(),
                (None, _) => 1,
            };
            Ok(Plan {
                ops: vec![put_intent(key, version, value)],
                outcome: Outcome::with_id(json!({
                    "status": "ok",
                    "id": 0,
                    "key": key,
                    "version": version,
                })),
            })
        }
        Write::DeleteKey { key, .. } => {
            let stored = keyspace::user_key(key);
            Ok(match view.version(&stored)? {
                None => {
                    let e = ApiError::not_found(Api::Versioned, format!("Key not found: {key}"));
                    Plan::answer(Outcome::fixed(e.status, e.body()))
                }
                Some(_) => Plan {
                    ops: vec![(stored, None)],
                    outcome: Outcome::with_id(json!({"status": "ok", "id": 0})),
                },
            })
        }
    }
}

/// The API whose error style answers `write`.
pub(crate) fn api_of(write: &Write) -> Api {
    match write {
        Write::Put { .. } | Write::Batch { .. } | Write::Delete { .. } => Api::Kv,
        Write::PutVersioned { .. } | Write::DeleteKey { .. } => Api::Versioned,
    }
}
