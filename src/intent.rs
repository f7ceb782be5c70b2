//! A client's write as it asked for it (its intent), before anything is read or planned:
//! the unit the server's committer plans, and the command a Raft log entry carries. Planning
//! turns an intent into store operations against the store as it is when the write's turn
//! comes, on the standalone committer and inside a replica's `apply` alike, so both run the
//! same code and every replica computes the same versions.
//!
//! Values travel as text (JSON as its compact text), so that every replica stores
//! byte-identical data.

use serde::{Deserialize, Serialize};

/// A value as the client gave it: text (a JSON string, or seed A's plain string) or the
/// compact JSON text of any other JSON value. JSON travels as text so that every replica
/// stores byte-identical data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    /// A string.
    Text(String),
    /// The compact JSON text of a number, boolean, null, array or object.
    Json(String),
}

impl Value {
    /// The bytes the value is stored as (before any envelope).
    pub fn payload(&self) -> &[u8] {
        match self {
            Value::Text(s) | Value::Json(s) => s.as_bytes(),
        }
    }
}

/// Identifies a request for idempotency: a retried request with the same ids is answered
/// with the original outcome and applied once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestId {
    /// The client's id.
    pub client: String,
    /// The request's id, unique per client.
    pub request: String,
}

/// One client write, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// Seed A `POST /put`: store `value` under `key`.
    Put {
        /// The user key.
        key: String,
        /// The value.
        value: Value,
    },
    /// Seed A `POST /batchput`: every item, in order, atomically.
    Batch {
        /// `(key, value)` pairs; a repeated key is written once per occurrence.
        items: Vec<(String, Value)>,
    },
    /// Seed A `DELETE /delete`: remove `key` (also when it is absent).
    Delete {
        /// The user key.
        key: String,
    },
    /// Seed B `PUT /key/{key}`: store `value`; a named `version` must be newer than the
    /// key's current per-key version.
    PutVersioned {
        /// The user key.
        key: String,
        /// The value.
        value: Value,
        /// The version the client names, if any.
        version: Option<i64>,
        /// Idempotency ids, if the client sent them.
        request: Option<RequestId>,
    },
    /// Seed B `DELETE /key/{key}`: remove an existing key (not found otherwise).
    DeleteKey {
        /// The user key.
        key: String,
        /// Idempotency ids, if the client sent them.
        request: Option<RequestId>,
    },
}
