//! The Raft type configuration and the data it carries: members, the replicated command
//! (the clients' intent, not precomputed results) and the answer `apply` gives for it.
//!
//! One log entry carries one [`Request`]: the client writes the server's committer gathered
//! into one round, so the leader pays one log append and one fsync for the whole round. The
//! state machine answers with one [`Response`] holding an [`Outcome`] per write.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::snapshot_file::SnapshotFile;
pub use crate::intent::{RequestId, Value, Write};

/// A node's numeric Raft id, derived from its name (see `identity`).
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft type configuration of strata's replicated store.
    pub TypeConfig:
        D = Request,
        R = Response,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = SnapshotFile,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A Raft log entry of this configuration.
pub type Entry = openraft::Entry<TypeConfig>;
/// A Raft log id (term, leader, index).
pub type LogId = openraft::LogId<NodeId>;
/// A Raft vote.
pub type Vote = openraft::Vote<NodeId>;
/// A membership configuration with the log id that stored it.
pub type StoredMembership = openraft::StoredMembership<NodeId, Member>;
/// Snapshot metadata.
pub type SnapshotMeta = openraft::SnapshotMeta<NodeId, Member>;
/// Errors of the storage traits.
pub type StorageError = openraft::StorageError<NodeId>;
/// The Raft handle of this configuration.
pub type Raft = openraft::Raft<TypeConfig>;

/// A cluster member as the membership configuration records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The node's name (`node-1`); its [`NodeId`] is derived from it.
    pub name: String,
    /// `host:port` where the node serves both its HTTP API and the Raft RPCs (`/raft/...`).
    pub addr: String,
}

impl Member {
    /// A member named `name` reachable at `addr`.
    pub fn new(name: impl Into<String>, addr: impl Into<String>) -> Member {
        Member {
            name: name.into(),
            addr: addr.into(),
        }
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.addr)
    }
}

/// The replicated command: the writes of one commit round and the leader's clock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// The leader's wall clock when it proposed the entry, in milliseconds since the Unix
    /// epoch. `apply` never reads a clock: anything time-based (idempotency record expiry)
    /// uses the largest leader timestamp applied so far, which every replica agrees on.
    pub leader_ms: u64,
    /// The writes, applied in order.
    pub writes: Vec<Write>,
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} writes at {} ms", self.writes.len(), self.leader_ms)
    }
}

/// What applying one write did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The write was applied.
    Applied {
        /// The replicated id of its last store operation: a counter advanced only by
        /// `apply`, one per operation, so it reads the same on every replica.
        id: u64,
        /// Operations written.
        count: u32,
        /// The key's per-key version after the write, where the write has one.
        version: Option<u64>,
    },
    /// Nothing written: the key does not exist.
    NotFound,
    /// Nothing written: the named version is not newer than the current one.
    Conflict {
        /// The key's current per-key version.
        current: u64,
    },
    /// A finished answer the applier rendered itself (the server's applier answers with the
    /// exact status and body the client gets, which idempotency records replay).
    Reply {
        /// The HTTP status.
        status: u16,
        /// The JSON body.
        body: Vec<u8>,
    },
    /// Nothing written: the state machine's applier does not handle this kind of write.
    Rejected {
        /// Why.
        reason: String,
    },
}

/// The answer to one log entry: an outcome per write of its [`Request`], none for blank and
/// membership entries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// One outcome per write, in order.
    pub outcomes: Vec<Outcome>,
}
