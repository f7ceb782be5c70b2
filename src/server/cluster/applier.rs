//! The server's writes inside a replica's `apply`: the same planning the standalone
//! committer runs ([`ops::plan`]), over the apply transaction instead of the store, with the
//! idempotency records kept in the replicated state.
//!
//! Everything here is deterministic: it reads only the transaction and the leader's clock
//! (`Txn::clock_ms`), so every replica writes the same bytes and answers the same reply.
//! In a cluster a write's `id` is the replicated operation counter (`Txn::put` returns it),
//! not the store's sequence number, so it reads the same on every node.
//!
//! An idempotency record stores the finished reply (its `id` already in the body), so a
//! retry answered after a failover, by another leader, is byte-for-byte the first answer.

use std::cell::RefCell;
use std::collections::HashMap;

use bytes::Bytes;

use crate::intent::Write;
use crate::replication::apply::{Applier, ApplyError, Txn};
use crate::replication::types::Outcome;
use crate::server::dedup::{Dedup, Op, RecordId};
use crate::server::ops::{self, Source, View};
use crate::{Error, SeqNo};

/// Applies both APIs' writes.
#[derive(Debug)]
pub(crate) struct ServerApplier {
    expiry_ms: u64,
}

impl ServerApplier {
    /// An applier whose idempotency records answer retries for `expiry_ms`.
    pub(crate) fn new(expiry_ms: u64) -> ServerApplier {
        ServerApplier { expiry_ms }
    }
}

/// The transaction as a planning source; remembers a store failure so that it is reported as
/// a failed apply, never turned into an answer.
struct TxnSource<'t, 'a> {
    txn: &'t Txn<'a>,
    failed: RefCell<Option<Error>>,
}

impl Source for TxnSource<'_, '_> {
    fn read(&self, stored: &[u8]) -> crate::Result<Option<(Option<SeqNo>, Bytes)>> {
        match self.txn.get(stored) {
            Ok(v) => Ok(v.map(|v| (None, v))),
            Err(ApplyError::Store(e)) => {
                let copy = Error::from(std::io::Error::other(e.to_string()));
                self.failed.borrow_mut().get_or_insert(e);
                Err(copy)
            }
            Err(ApplyError::Reserved(k)) => Err(Error::from(std::io::Error::other(format!(
                "read of reserved key {k:?}"
            )))),
        }
    }
}

/// The idempotency record a write names, if it names one.
fn record_id(write: &Write) -> Option<RecordId> {
    let (request, op, key) = match write {
        Write::PutVersioned { request, key, .. } => (request.as_ref()?, Op::Set, key),
        Write::DeleteKey { request, key } => (request.as_ref()?, Op::Delete, key),
        _ => return None,
    };
    Some(RecordId {
        client: request.client.clone(),
        request: request.request.clone(),
        op,
        key: key.clone(),
    })
}

impl Applier for ServerApplier {
    fn apply(&self, txn: &mut Txn<'_>, write: &Write) -> Result<Outcome, ApplyError> {
        let now = txn.clock_ms();
        let ident = record_id(write);
        let record_key = ident.as_ref().map(RecordId::stored_key);
        if let Some(key) = &record_key
            && let Some(bytes) = txn.get(key)?
            && let Some(reply) = Dedup::recorded_reply(&bytes, self.expiry_ms, now)
        {
            return Ok(Outcome::Reply {
                status: reply.status.as_u16(),
                body: reply.body,
            });
        }
        let api = ops::api_of(write);
        let overlay = HashMap::new();
        let planned = {
            let source = TxnSource {
                txn,
                failed: RefCell::new(None),
            };
            let plan = ops::plan(write, &View::new(&source, api, &overlay));
            if let Some(e) = source.failed.into_inner() {
                return Err(ApplyError::Store(e));
            }
            plan
        };
        let plan = match planned {
            Ok(p) => p,
            // A deterministic refusal (a damaged stored value): the same on every replica.
            Err(e) => {
                let reply = e.reply();
                return Ok(Outcome::Reply {
                    status: reply.status.as_u16(),
                    body: reply.body,
                });
            }
        };
        let mut last = None;
        for (k, v) in &plan.ops {
            last = Some(match v {
                Some(v) => txn.put(k, v)?,
                None => txn.delete(k)?,
            });
        }
        let reply = plan.outcome.render(last);
        if let Some(key) = record_key {
            txn.put(&key, &Dedup::record_reply(now, &reply))?;
        }
        Ok(Outcome::Reply {
            status: reply.status.as_u16(),
            body: reply.body,
        })
    }
}
