//! Versioned operations on user keys, shared by both APIs: reading a key's current value and
//! its current life, and planning writes that keep seed B's per-key version right.
//!
//! A write is a [`Planner`]: it reads the keys it touches through a [`View`] (per-key version,
//! and the store sequence number behind it) and returns its operations and its answer. The
//! committer (`writer.rs`) commits the plan with a precondition that every key read still has
//! the sequence number it had (the library's compare-and-set), and plans again if not.

use std::cell::RefCell;
use std::collections::HashMap;

use super::error::{Api, ApiError};
use super::keyspace;
use super::reply::Outcome;
use super::value::{self, Envelope};
use crate::{Db, SeqNo};

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

/// What a planned write sees: the store, overlaid with the writes planned before it in the
/// same commit round. Every key read from the store is remembered with the sequence number it
/// had, and the round's batch requires the store to still hold exactly those versions.
pub(crate) struct View<'a> {
    db: &'a Db,
    api: Api,
    overlay: &'a HashMap<Vec<u8>, Option<u64>>,
    reads: RefCell<Vec<(Vec<u8>, Option<SeqNo>)>>,
}

impl<'a> View<'a> {
    pub(crate) fn new(db: &'a Db, api: Api, overlay: &'a HashMap<Vec<u8>, Option<u64>>) -> Self {
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
        let r = read_version(self.db, self.api, stored)?;
        self.reads
            .borrow_mut()
            .push((stored.to_vec(), r.map(|(seq, _)| seq)));
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
