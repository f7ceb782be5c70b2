//! Versioned operations on user keys, shared by both APIs: reading a key's current value and
//! its current life, and writing with seed B's per-key version kept right.
//!
//! A write reads the keys it touches (value, per-key version, store sequence number), plans
//! its batch and answer from what it read, and commits the batch with a precondition that
//! every key still has the sequence number it read (the library's compare-and-set). If another
//! writer got in between, the batch is rejected whole and the write starts again from the read,
//! a bounded number of times. An idempotency record, when the request carries one, is part of
//! the same batch.

use axum::http::StatusCode;

use super::dedup::{Dedup, Lookup, RecordId, now_ms};
use super::error::{Api, ApiError};
use super::keyspace;
use super::reply::{Outcome, Reply};
use super::state::AppState;
use super::value::{self, Envelope};
use crate::{Db, Error, SeqNo, WriteBatch};

/// Attempts before a write that keeps losing races gives up.
const MAX_ATTEMPTS: usize = 64;

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

/// The per-key version and sequence number of a stored user key (without decoding the value).
pub(crate) fn read_version(
    db: &Db,
    api: Api,
    stored: &[u8],
) -> Result<Option<(SeqNo, u64)>, ApiError> {
    let Some(vv) = db
        .get_versioned(stored)
        .map_err(|e| ApiError::store(api, &e))?
    else {
        return Ok(None);
    };
    let v = value::decode_version(&vv.value).map_err(|e| damaged(api, e))?;
    Ok(Some((vv.version, v)))
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

/// One planned write: the versions it relies on, its operations and its answer.
#[derive(Debug)]
pub(crate) struct Plan {
    /// Stored keys and the sequence numbers they must still have (`None` = absent).
    pub expect: Vec<(Vec<u8>, Option<SeqNo>)>,
    /// Stored keys to put (`Some`) or delete (`None`).
    pub ops: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// The answer once the batch is committed.
    pub outcome: Outcome,
}

impl Plan {
    /// A plan that writes nothing and answers `outcome`.
    pub(crate) fn answer(outcome: Outcome) -> Plan {
        Plan {
            expect: Vec::new(),
            ops: Vec::new(),
            outcome,
        }
    }
}

/// Runs a versioned write: `plan` is called with the store (again after every lost race) and
/// the resulting batch is committed atomically with the idempotency record of `ident`, if any.
pub(crate) fn write(
    state: &AppState,
    api: Api,
    ident: Option<&RecordId>,
    mut plan: impl FnMut(&Db) -> Result<Plan, ApiError>,
) -> Result<Reply, ApiError> {
    let db = state.db();
    let dedup: &Dedup = state.dedup();
    for attempt in 0..MAX_ATTEMPTS {
        let now = now_ms();
        let mut record_seq = None;
        if let Some(id) = ident {
            match dedup
                .lookup(db, id, now)
                .map_err(|e| ApiError::store(api, &e))?
            {
                Lookup::Hit(reply) => return Ok(reply),
                Lookup::Miss {
                    record_seq: seq,
                    other_op,
                } => {
                    if other_op && attempt == 0 {
                        dedup.count_other_op();
                    }
                    record_seq = seq;
                }
            }
        }
        let p = plan(db)?;
        if p.ops.is_empty() && ident.is_none() {
            return Ok(p.outcome.render(None));
        }
        let mut batch = WriteBatch::new();
        for (k, seq) in &p.expect {
            batch.expect_version(k, *seq);
        }
        for (k, v) in &p.ops {
            match v {
                Some(v) => batch.put(k, v),
                None => batch.delete(k),
            };
        }
        if let Some(id) = ident {
            Dedup::add_record(&mut batch, id, record_seq, &p.outcome, now);
        }
        match db.write(batch) {
            Ok(last) => {
                if ident.is_some() {
                    dedup.count_recorded();
                }
                // With a record, the write it protects is the op just before it.
                let id = if ident.is_some() {
                    last.get().checked_sub(1)
                } else {
                    Some(last.get())
                };
                return Ok(p.outcome.render(id));
            }
            Err(Error::Conflict(_)) => continue,
            Err(e) => return Err(ApiError::store(api, &e)),
        }
    }
    Err(ApiError::new(
        api,
        StatusCode::CONFLICT,
        "the key kept changing under concurrent writes; retry the request",
    ))
}

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
