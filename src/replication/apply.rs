//! The boundary between the state machine and the logic that turns a client's write into
//! store operations.
//!
//! The state machine owns the order of writes, the atomic batch, the replicated id counter
//! and the clock; an [`Applier`] owns what a write means. It reads through a [`Txn`] (the
//! store, overlaid with what earlier writes of the same apply call wrote), adds puts and
//! deletes to it, and answers with an [`Outcome`]. An applier must be deterministic: given
//! the same store contents and the same [`Write`], it makes the same operations and the same
//! answer on every replica. It must not read a clock or a random source; the leader's
//! timestamp is in [`Txn::clock_ms`].
//!
//! [`PlainApplier`] is the applier of seed A's plain operations. Seed B's versioned writes
//! and idempotency records keep one implementation shared with the standalone server: that
//! logic moves below this module and implements [`Applier`] for both.

use std::collections::HashMap;

use bytes::Bytes;

use super::types::{Outcome, Write};
use crate::{Db, Error, WriteBatch};

/// First byte of the keys the state machine keeps for itself; an applier cannot write them.
pub const RESERVED: u8 = 0x00;

/// Namespace of user keys written by [`PlainApplier`] (the server's user namespace).
pub const USER: u8 = b'u';

/// A write transaction of one apply call: reads see the store plus the writes made so far.
pub struct Txn<'a> {
    db: &'a Db,
    overlay: HashMap<Vec<u8>, Option<Vec<u8>>>,
    batch: WriteBatch,
    ops: u64,
    next_id: u64,
    clock_ms: u64,
    log_index: u64,
}

impl std::fmt::Debug for Txn<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Txn")
            .field("ops", &self.ops)
            .field("next_id", &self.next_id)
            .field("log_index", &self.log_index)
            .finish_non_exhaustive()
    }
}

/// Why a write could not be applied at all (as opposed to an [`Outcome`] refusing it).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Reading the store failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// The applier tried to write a key of the state machine's own namespace.
    #[error("key {0:?} is in the state machine's reserved namespace")]
    Reserved(Vec<u8>),
}

impl<'a> Txn<'a> {
    /// A transaction over `db` whose first operation gets replicated id `next_id`.
    pub(crate) fn new(db: &'a Db, next_id: u64, clock_ms: u64) -> Txn<'a> {
        Txn {
            db,
            overlay: HashMap::new(),
            batch: WriteBatch::new(),
            ops: 0,
            next_id,
            clock_ms,
            log_index: 0,
        }
    }

    /// The current value of `key`: the latest write of this transaction, else the store's.
    pub fn get(&self, key: &[u8]) -> Result<Option<Bytes>, ApplyError> {
        if let Some(v) = self.overlay.get(key) {
            return Ok(v.as_ref().map(|v| Bytes::copy_from_slice(v)));
        }
        Ok(self.db.get(key)?)
    }

    fn check(key: &[u8]) -> Result<(), ApplyError> {
        if key.first() == Some(&RESERVED) {
            return Err(ApplyError::Reserved(key.to_vec()));
        }
        Ok(())
    }

    /// Puts `value` under `key`; returns the operation's replicated id.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<u64, ApplyError> {
        Self::check(key)?;
        self.batch.put(key, value);
        self.overlay.insert(key.to_vec(), Some(value.to_vec()));
        Ok(self.advance())
    }

    /// Deletes `key`; returns the operation's replicated id.
    pub fn delete(&mut self, key: &[u8]) -> Result<u64, ApplyError> {
        Self::check(key)?;
        self.batch.delete(key);
        self.overlay.insert(key.to_vec(), None);
        Ok(self.advance())
    }

    fn advance(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.ops += 1;
        id
    }

    /// The state machine's clock: the largest leader timestamp applied so far, in
    /// milliseconds since the Unix epoch. The same on every replica.
    pub fn clock_ms(&self) -> u64 {
        self.clock_ms
    }

    /// The Raft log index of the entry being applied.
    pub fn log_index(&self) -> u64 {
        self.log_index
    }

    pub(crate) fn begin_entry(&mut self, log_index: u64, leader_ms: u64) {
        self.log_index = log_index;
        self.clock_ms = self.clock_ms.max(leader_ms);
    }

    /// Encoded size of the operations so far.
    pub(crate) fn batch_bytes(&self) -> usize {
        self.batch.encoded_len()
    }

    /// The id the next operation gets.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Adds the state machine's own record (bypassing the namespace check) and hands over the
    /// batch, starting a new one.
    pub(crate) fn take_batch(&mut self, meta_key: &[u8], meta: &[u8]) -> WriteBatch {
        let mut b = std::mem::take(&mut self.batch);
        b.put(meta_key, meta);
        self.overlay.clear();
        b
    }

    /// Operations added since the transaction began or its batch was last taken.
    pub(crate) fn pending(&self) -> bool {
        !self.batch.is_empty()
    }
}

/// Turns one client write into store operations and an answer, deterministically.
pub trait Applier: Send + Sync + 'static {
    /// Applies `write` within `txn`. Store failures are errors; refusals (not found, version
    /// conflict, unsupported) are outcomes and must write nothing.
    fn apply(&self, txn: &mut Txn<'_>, write: &Write) -> Result<Outcome, ApplyError>;
}

/// The stored key of user key `key` under [`PlainApplier`].
pub fn user_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(USER);
    k.extend_from_slice(key.as_bytes());
    k
}

/// Seed A's plain writes: `Put`, `Batch` and `Delete` store and remove the value's payload
/// under [`user_key`]. Seed B's writes are refused with [`Outcome::Rejected`] (nothing
/// written): their versioning needs the applier shared with the standalone server.
#[derive(Debug, Default, Clone, Copy)]
pub struct PlainApplier;

fn applied(id: u64, count: u32) -> Outcome {
    Outcome::Applied {
        id,
        count,
        version: None,
    }
}

impl Applier for PlainApplier {
    fn apply(&self, txn: &mut Txn<'_>, write: &Write) -> Result<Outcome, ApplyError> {
        match write {
            Write::Put { key, value } => {
                let id = txn.put(&user_key(key), value.payload())?;
                Ok(applied(id, 1))
            }
            Write::Batch { items } => {
                let mut last = None;
                for (key, value) in items {
                    last = Some(txn.put(&user_key(key), value.payload())?);
                }
                match last {
                    Some(id) => Ok(applied(id, items.len().min(u32::MAX as usize) as u32)),
                    None => Ok(Outcome::Rejected {
                        reason: "empty batch".into(),
                    }),
                }
            }
            Write::Delete { key } => {
                let id = txn.delete(&user_key(key))?;
                Ok(applied(id, 1))
            }
            Write::PutVersioned { .. } | Write::DeleteKey { .. } => Ok(Outcome::Rejected {
                reason: "versioned writes need the versioning applier".into(),
            }),
        }
    }
}
