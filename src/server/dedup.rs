//! Idempotent receiver: durable records of answered writes, keyed by client, request,
//! operation and key, so that a retried request is answered from the record instead of being
//! applied again.
//!
//! A record is written in the same atomic batch as the write it protects (with a precondition
//! that no live record exists yet), so it survives restarts and two concurrent copies of one
//! request cannot both apply. Records live in the store's `r` namespace (`keyspace.rs`):
//!
//! ```text
//! record key   := 'r' | client_len: u16 | client | request_len: u16 | request | op: u8 | user key
//! op           := 1 = SET (PUT /key/{key}), 2 = DELETE (DELETE /key/{key})
//! record value := format: u8 (= 1) | created_ms: u64 | status: u16 | flags: u8 | body
//! flags bit 0  := the body's `id` field is the record's own sequence number minus one
//!                 (the write it protects is the op just before it in the batch)
//! ```
//!
//! Integers are little-endian; `created_ms` is wall-clock milliseconds since the Unix epoch;
//! `body` is the JSON reply. A record older than the expiry (default one hour) counts as
//! absent: a new request with the same identifiers is applied and replaces it, and a periodic
//! sweep deletes expired records. Reads (GET) are never recorded: they apply nothing, and a
//! retried read is answered with the current value.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::keyspace::RECORD;
use super::reply::{Outcome, Reply};
use crate::{Db, Error, SeqNo, WriteBatch};

/// Longest accepted `client_id` or `request_id`, in bytes.
pub(crate) const MAX_ID_LEN: usize = 256;

const FORMAT: u8 = 1;
const VALUE_HEADER_LEN: usize = 12;
const FLAG_ID: u8 = 1;

/// Which write a record protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// PUT /key/{key}.
    Set,
    /// DELETE /key/{key}.
    Delete,
}

impl Op {
    fn code(self) -> u8 {
        match self {
            Op::Set => 1,
            Op::Delete => 2,
        }
    }

    fn from_code(c: u8) -> Option<Op> {
        match c {
            1 => Some(Op::Set),
            2 => Some(Op::Delete),
            _ => None,
        }
    }

    /// Seed B's name of the operation.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Op::Set => "SET",
            Op::Delete => "DELETE",
        }
    }

    /// Parses `SET`/`DELETE` (any case), also in seed B's `OperationType.SET` spelling.
    /// `Ok(None)` for `GET`, which is never recorded.
    pub(crate) fn parse(s: &str) -> Result<Option<Op>, ()> {
        let s = s.strip_prefix("OperationType.").unwrap_or(s);
        match s.to_ascii_uppercase().as_str() {
            "SET" | "PUT" => Ok(Some(Op::Set)),
            "DELETE" => Ok(Some(Op::Delete)),
            "GET" => Ok(None),
            _ => Err(()),
        }
    }
}

/// Identifies one request: client, request, operation and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RecordId {
    pub client: String,
    pub request: String,
    pub op: Op,
    pub key: String,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    // Callers bound ids to MAX_ID_LEN, far below u16::MAX.
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The key prefix shared by every record of one (client, request) pair.
fn id_prefix(client: &str, request: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + client.len() + request.len());
    k.push(RECORD);
    put_str(&mut k, client);
    put_str(&mut k, request);
    k
}

impl RecordId {
    /// The stored key of this record.
    pub(crate) fn stored_key(&self) -> Vec<u8> {
        let mut k = id_prefix(&self.client, &self.request);
        k.push(self.op.code());
        k.extend_from_slice(self.key.as_bytes());
        k
    }

    /// Decodes a stored record key (bytes from disk: `None` when malformed).
    fn parse(stored: &[u8]) -> Option<RecordId> {
        fn take_str<'a>(b: &mut &'a [u8]) -> Option<&'a str> {
            let (len, rest) = b.split_at_checked(2)?;
            let len = u16::from_le_bytes(len.try_into().ok()?) as usize;
            let (s, rest) = rest.split_at_checked(len)?;
            *b = rest;
            std::str::from_utf8(s).ok()
        }
        let (&tag, mut rest) = stored.split_first()?;
        if tag != RECORD {
            return None;
        }
        let client = take_str(&mut rest)?.to_string();
        let request = take_str(&mut rest)?.to_string();
        let (&op, key) = rest.split_first()?;
        Some(RecordId {
            client,
            request,
            op: Op::from_code(op)?,
            key: std::str::from_utf8(key).ok()?.to_string(),
        })
    }
}

/// A decoded record value.
#[derive(Debug, Clone, PartialEq)]
struct Record {
    created_ms: u64,
    status: StatusCode,
    with_id: bool,
    body: Value,
}

impl Record {
    fn encode(created_ms: u64, outcome: &Outcome) -> Vec<u8> {
        let body = outcome.body.to_string();
        let mut out = Vec::with_capacity(VALUE_HEADER_LEN + body.len());
        out.push(FORMAT);
        out.extend_from_slice(&created_ms.to_le_bytes());
        out.extend_from_slice(&outcome.status.as_u16().to_le_bytes());
        out.push(if outcome.with_id { FLAG_ID } else { 0 });
        out.extend_from_slice(body.as_bytes());
        out
    }

    /// Decodes a record value (bytes from disk: `None` when malformed).
    fn decode(bytes: &[u8]) -> Option<Record> {
        let (header, body) = bytes.split_at_checked(VALUE_HEADER_LEN)?;
        let [format, rest @ ..] = header else {
            return None;
        };
        if *format != FORMAT {
            return None;
        }
        let (created, rest) = rest.split_at_checked(8)?;
        let (status, flags) = rest.split_at_checked(2)?;
        let status = StatusCode::from_u16(u16::from_le_bytes(status.try_into().ok()?)).ok()?;
        Some(Record {
            created_ms: u64::from_le_bytes(created.try_into().ok()?),
            status,
            with_id: flags.first()? & FLAG_ID != 0,
            body: serde_json::from_slice(body).ok()?,
        })
    }

    /// The recorded reply; `seq` is the record's own sequence number.
    fn replay(self, seq: SeqNo) -> Reply {
        Outcome {
            status: self.status,
            body: self.body,
            with_id: self.with_id,
        }
        .render(seq.get().checked_sub(1))
    }
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// A live record: answer with it.
    Hit(Reply),
    /// No live record. `record_seq` is the version of the stored (expired or damaged) record
    /// the new one replaces, `None` when there is none; `other_op` is true when the same
    /// client and request ids have a live record for another operation.
    Miss {
        record_seq: Option<SeqNo>,
        other_op: bool,
    },
}

/// Wall-clock milliseconds since the Unix epoch.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The idempotency records of one server: expiry and the counters seed B reports.
#[derive(Debug)]
pub(crate) struct Dedup {
    expiry_ms: u64,
    cached: AtomicU64,
    same_op: AtomicU64,
    other_op: AtomicU64,
    cleanups: AtomicU64,
}

impl Dedup {
    pub(crate) fn new(expiry: Duration) -> Dedup {
        Dedup {
            expiry_ms: expiry.as_millis().min(u128::from(u64::MAX)) as u64,
            cached: AtomicU64::new(0),
            same_op: AtomicU64::new(0),
            other_op: AtomicU64::new(0),
            cleanups: AtomicU64::new(0),
        }
    }

    fn expired(&self, created_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(created_ms) >= self.expiry_ms
    }

    /// Looks up the record of `id`.
    pub(crate) fn lookup(&self, db: &Db, id: &RecordId, now_ms: u64) -> crate::Result<Lookup> {
        let key = id.stored_key();
        let mut record_seq = None;
        if let Some(vv) = db.get_versioned(&key)? {
            if let Some(rec) = Record::decode(&vv.value)
                && !self.expired(rec.created_ms, now_ms)
            {
                self.same_op.fetch_add(1, Ordering::Relaxed);
                return Ok(Lookup::Hit(rec.replay(vv.version)));
            }
            record_seq = Some(vv.version);
        }
        let mut other_op = false;
        for item in db.prefix(id_prefix(&id.client, &id.request)) {
            let (k, v) = item?;
            if let (Some(other), Some(rec)) = (RecordId::parse(&k), Record::decode(&v))
                && other.op != id.op
                && !self.expired(rec.created_ms, now_ms)
            {
                other_op = true;
                break;
            }
        }
        Ok(Lookup::Miss {
            record_seq,
            other_op,
        })
    }

    /// Counts a lookup that found a live record of another operation.
    pub(crate) fn count_other_op(&self) {
        self.other_op.fetch_add(1, Ordering::Relaxed);
    }

    /// The stored value of a record answering `outcome`, made at `now_ms`.
    pub(crate) fn record_value(now_ms: u64, outcome: &Outcome) -> Vec<u8> {
        Record::encode(now_ms, outcome)
    }

    /// Counts a retried request answered from a record.
    pub(crate) fn count_duplicate(&self) {
        self.same_op.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a record written.
    pub(crate) fn count_recorded(&self) {
        self.cached.fetch_add(1, Ordering::Relaxed);
    }

    /// The newest live record for `client`/`request`, optionally narrowed to one operation
    /// and key: the identifiers and the recorded reply.
    pub(crate) fn status(
        &self,
        db: &Db,
        client: &str,
        request: &str,
        op: Option<Op>,
        key: Option<&str>,
        now_ms: u64,
    ) -> crate::Result<Option<(RecordId, Reply)>> {
        let mut best: Option<(u64, RecordId, Reply)> = None;
        for item in db.prefix(id_prefix(client, request)) {
            let (k, _) = item?;
            let Some(id) = RecordId::parse(&k) else {
                continue;
            };
            if op.is_some_and(|o| o != id.op) || key.is_some_and(|k| k != id.key) {
                continue;
            }
            // Read with its version: a replay needs the record's sequence number.
            let Some(vv) = db.get_versioned(&k)? else {
                continue;
            };
            let Some(rec) = Record::decode(&vv.value) else {
                continue;
            };
            if self.expired(rec.created_ms, now_ms)
                || best.as_ref().is_some_and(|b| b.0 >= rec.created_ms)
            {
                continue;
            }
            best = Some((rec.created_ms, id, rec.replay(vv.version)));
        }
        Ok(best.map(|(_, id, reply)| (id, reply)))
    }

    /// Seed B's `/deduplication_stats` fields.
    pub(crate) fn stats(&self, db: &Db, service_name: &str, now_ms: u64) -> crate::Result<Value> {
        let mut live = 0u64;
        let mut requests = HashSet::new();
        let mut clients = HashSet::new();
        for item in db.prefix([RECORD]) {
            let (k, v) = item?;
            let (Some(id), Some(rec)) = (RecordId::parse(&k), Record::decode(&v)) else {
                continue;
            };
            if self.expired(rec.created_ms, now_ms) {
                continue;
            }
            live += 1;
            requests.insert(id.request);
            clients.insert(id.client);
        }
        let hits = self.same_op.load(Ordering::Relaxed);
        Ok(json!({
            "service_name": service_name,
            "current_cache_size": live,
            "unique_request_ids": requests.len(),
            "total_client_count": clients.len(),
            "total_requests_cached": self.cached.load(Ordering::Relaxed),
            "total_duplicates_detected": hits,
            "same_operation_duplicates": hits,
            "different_operation_duplicates": self.other_op.load(Ordering::Relaxed),
            "total_cache_cleanups": self.cleanups.load(Ordering::Relaxed),
        }))
    }

    /// Deletes up to `max` expired records; returns how many it deleted.
    pub(crate) fn sweep(&self, db: &Db, now_ms: u64, max: usize) -> crate::Result<usize> {
        let mut batch = WriteBatch::new();
        let mut n = 0;
        for item in db.prefix([RECORD]) {
            if n >= max {
                break;
            }
            let (k, v) = item?;
            if Record::decode(&v).is_some_and(|r| !self.expired(r.created_ms, now_ms)) {
                continue;
            }
            // Delete exactly the version that was seen expired (or damaged); a record replaced
            // meanwhile makes the batch conflict, and the next sweep tries again.
            let Some(vv) = db.get_versioned(&k)? else {
                continue;
            };
            if Record::decode(&vv.value).is_some_and(|r| !self.expired(r.created_ms, now_ms)) {
                continue;
            }
            batch.expect_version(&k, Some(vv.version));
            batch.delete(&k);
            n += 1;
        }
        if n == 0 {
            return Ok(0);
        }
        match db.write(batch) {
            Ok(_) => {
                self.cleanups.fetch_add(1, Ordering::Relaxed);
                Ok(n)
            }
            Err(Error::Conflict(_)) => Ok(0),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(client: &str, request: &str, op: Op, key: &str) -> RecordId {
        RecordId {
            client: client.into(),
            request: request.into(),
            op,
            key: key.into(),
        }
    }

    #[test]
    fn record_keys_round_trip_and_group_by_ids() {
        let a = id("c1", "r1", Op::Set, "k/ey");
        let k = a.stored_key();
        assert_eq!(RecordId::parse(&k), Some(a.clone()));
        assert!(k.starts_with(&id_prefix("c1", "r1")));
        // length prefixes keep ("c1", "r1x") apart from ("c1r", "1x")
        assert_ne!(id_prefix("c1", "r1x"), id_prefix("c1r", "1x"));
        for cut in 0..k.len() - 5 {
            assert_eq!(RecordId::parse(&k[..cut]), None, "cut at {cut}");
        }
        assert_eq!(Op::parse("OperationType.SET"), Ok(Some(Op::Set)));
        assert_eq!(Op::parse("delete"), Ok(Some(Op::Delete)));
        assert_eq!(Op::parse("GET"), Ok(None));
        assert!(Op::parse("JUMP").is_err());
    }

    #[test]
    fn record_values_round_trip_and_replay_the_id() {
        let o = Outcome::with_id(json!({"status": "ok", "id": 0, "key": "k", "version": 3}));
        let bytes = Record::encode(1234, &o);
        let rec = Record::decode(&bytes).unwrap();
        assert_eq!(rec.created_ms, 1234);
        assert_eq!(rec.status, StatusCode::OK);
        let reply = rec.replay(SeqNo::new(11));
        assert_eq!(
            reply.body,
            br#"{"status":"ok","id":10,"key":"k","version":3}"#.to_vec()
        );
        for cut in 0..VALUE_HEADER_LEN {
            assert_eq!(Record::decode(&bytes[..cut]), None);
        }
        let mut bad = bytes.clone();
        bad[0] = 2;
        assert_eq!(Record::decode(&bad), None);
    }

    #[test]
    fn lookups_hit_live_records_and_ignore_expired_ones() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let d = Dedup::new(Duration::from_secs(10));
        let a = id("c", "r", Op::Set, "k");
        let Lookup::Miss {
            record_seq: None,
            other_op: false,
        } = d.lookup(&db, &a, 0).unwrap()
        else {
            panic!("empty store has no record")
        };
        let mut b = WriteBatch::new();
        b.put("uk", "v");
        let o = Outcome::with_id(json!({"id": 0}));
        b.expect_version(a.stored_key(), None);
        b.put(a.stored_key(), Dedup::record_value(1_000, &o));
        let seq = db.write(b).unwrap().unwrap();
        match d.lookup(&db, &a, 5_000).unwrap() {
            Lookup::Hit(r) => assert_eq!(
                r.body,
                format!(r#"{{"id":{}}}"#, seq.get() - 1).into_bytes()
            ),
            other => panic!("expected a hit, got {other:?}"),
        }
        let del = id("c", "r", Op::Delete, "k");
        let Lookup::Miss { other_op: true, .. } = d.lookup(&db, &del, 5_000).unwrap() else {
            panic!("the SET record is another operation")
        };
        // expired: a miss that names the stale record's version
        let Lookup::Miss {
            record_seq: Some(s),
            ..
        } = d.lookup(&db, &a, 11_000).unwrap()
        else {
            panic!("expired records are misses")
        };
        assert_eq!(s, seq);
        assert!(
            d.status(&db, "c", "r", None, None, 5_000)
                .unwrap()
                .is_some()
        );
        assert!(
            d.status(&db, "c", "r", Some(Op::Delete), None, 5_000)
                .unwrap()
                .is_none()
        );
        assert_eq!(d.sweep(&db, 5_000, 100).unwrap(), 0);
        assert_eq!(d.sweep(&db, 11_000, 100).unwrap(), 1);
        assert!(db.prefix([RECORD]).next().is_none());
        assert_eq!(db.get("uk").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
