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
//! With tokens, `client` is the caller's name, `:`, and the `client_id` (`auth.rs`).
//! Integers are little-endian; `created_ms` is wall-clock milliseconds since the Unix epoch;
//! `body` is the JSON reply. A record older than the expiry (default one hour) counts as
//! absent: a new request with the same identifiers is applied and replaces it, and a periodic
//! sweep deletes expired records. Reads (GET) are never recorded: they apply nothing, and a
//! retried read is answered with the current value.
//!
//! Every lookup is a point read: the record itself, and the per-ids operation counts that
//! tell whether the same ids were used for another operation. The counters seed B reports,
//! the expiry index and the sweep live in `dedup_book.rs`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use parking_lot::Mutex;

use axum::http::StatusCode;
use serde_json::{Value, json};

use super::dedup_book::{self, Counters};
use super::keyspace::RECORD;
use super::reply::{Outcome, Reply};
use crate::{Db, SeqNo};

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
    pub(crate) fn code(self) -> u8 {
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
pub(crate) fn id_prefix(client: &str, request: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(5 + client.len() + request.len());
    k.push(RECORD);
    put_str(&mut k, client);
    put_str(&mut k, request);
    k
}

impl RecordId {
    /// The (client, request) pair a replicated write carries.
    pub(crate) fn request_id(&self) -> crate::intent::RequestId {
        crate::intent::RequestId {
            client: self.client.clone(),
            request: self.request.clone(),
        }
    }

    /// The stored key of this record.
    pub(crate) fn stored_key(&self) -> Vec<u8> {
        let mut k = id_prefix(&self.client, &self.request);
        k.push(self.op.code());
        k.extend_from_slice(self.key.as_bytes());
        k
    }

    /// Decodes a stored record key (bytes from disk: `None` when malformed).
    pub(crate) fn parse(stored: &[u8]) -> Option<RecordId> {
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
pub(crate) struct Record {
    pub(crate) created_ms: u64,
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
    pub(crate) fn decode(bytes: &[u8]) -> Option<Record> {
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
    /// the new one replaces, `None` when there is none. (A record of the same ids for
    /// another operation is counted by the lookup.)
    Miss { record_seq: Option<SeqNo> },
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
    /// The counters now, and as last written to the store.
    counters: Mutex<(Counters, Counters)>,
}

impl Dedup {
    pub(crate) fn new(expiry: Duration) -> Dedup {
        Dedup {
            expiry_ms: expiry.as_millis().min(u128::from(u64::MAX)) as u64,
            counters: Mutex::new((Counters::default(), Counters::default())),
        }
    }

    /// Milliseconds a record answers retries.
    pub(crate) fn expiry_ms(&self) -> u64 {
        self.expiry_ms
    }

    pub(crate) fn expired(&self, created_ms: u64, now_ms: u64) -> bool {
        now_ms.saturating_sub(created_ms) >= self.expiry_ms
    }

    /// The counters now.
    pub(crate) fn counters(&self) -> Counters {
        self.counters.lock().0
    }

    /// Sets the counters, as loaded from or written to the store.
    pub(crate) fn set_counters(&self, c: Counters, persisted: bool) {
        let mut g = self.counters.lock();
        g.0 = c;
        if persisted {
            g.1 = c;
        }
    }

    /// True when the counters changed since they were last written.
    pub(crate) fn dirty(&self) -> bool {
        let g = self.counters.lock();
        g.0 != g.1
    }

    fn bump(&self, f: impl FnOnce(&mut Counters)) {
        f(&mut self.counters.lock().0);
    }

    /// Looks up the record of `id` with point reads: the record, and the operation counts of
    /// its client and request ids.
    pub(crate) fn lookup(&self, db: &Db, id: &RecordId, now_ms: u64) -> crate::Result<Lookup> {
        let key = id.stored_key();
        let mut record_seq = None;
        if let Some(vv) = db.get_versioned(&key)? {
            if let Some(rec) = Record::decode(&vv.value)
                && !self.expired(rec.created_ms, now_ms)
            {
                self.bump(|c| c.same_op += 1);
                return Ok(Lookup::Hit(rec.replay(vv.version)));
            }
            record_seq = Some(vv.version);
        }
        let other_op = dedup_book::has_other_op(db, id)?;
        if other_op {
            self.bump(|c| c.other_op += 1);
        }
        Ok(Lookup::Miss { record_seq })
    }

    /// The stored value of a record answering `outcome`, made at `now_ms`.
    pub(crate) fn record_value(now_ms: u64, outcome: &Outcome) -> Vec<u8> {
        Record::encode(now_ms, outcome)
    }

    /// The reply a stored record holds, if it is well formed and not older than `expiry_ms`
    /// at `now_ms` (records a replica writes hold finished replies: see
    /// [`Dedup::record_reply`]).
    #[cfg(feature = "replication")]
    pub(crate) fn recorded_reply(bytes: &[u8], expiry_ms: u64, now_ms: u64) -> Option<Reply> {
        let rec = Record::decode(bytes)?;
        if now_ms.saturating_sub(rec.created_ms) >= expiry_ms {
            return None;
        }
        Some(Reply::json(rec.status, &rec.body))
    }

    /// The stored value of a record holding a finished `reply`, made at `now_ms`.
    #[cfg(feature = "replication")]
    pub(crate) fn record_reply(now_ms: u64, reply: &Reply) -> Vec<u8> {
        let body = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        Record::encode(now_ms, &Outcome::fixed(reply.status, body))
    }

    /// Counts a retried request answered from a record.
    pub(crate) fn count_duplicate(&self) {
        self.bump(|c| c.same_op += 1);
    }

    /// The newest live record for `client`/`request`, optionally narrowed to one operation
    /// and key: the identifiers and the recorded reply. With both an operation and a key
    /// this is a point read; else it reads the records of these ids only.
    pub(crate) fn status(
        &self,
        db: &Db,
        client: &str,
        request: &str,
        op: Option<Op>,
        key: Option<&str>,
        now_ms: u64,
    ) -> crate::Result<Option<(RecordId, Reply)>> {
        let read = |id: RecordId| -> crate::Result<Option<(u64, RecordId, Reply)>> {
            // Read with its version: a replay needs the record's sequence number.
            let Some(vv) = db.get_versioned(id.stored_key())? else {
                return Ok(None);
            };
            Ok(Record::decode(&vv.value)
                .filter(|rec| !self.expired(rec.created_ms, now_ms))
                .map(|rec| (rec.created_ms, id, rec.replay(vv.version))))
        };
        if let (Some(op), Some(key)) = (op, key) {
            let id = RecordId {
                client: client.to_string(),
                request: request.to_string(),
                op,
                key: key.to_string(),
            };
            return Ok(read(id)?.map(|(_, id, reply)| (id, reply)));
        }
        let mut best: Option<(u64, RecordId, Reply)> = None;
        for item in db.prefix(id_prefix(client, request)) {
            let (k, _) = item?;
            let Some(id) = RecordId::parse(&k) else {
                continue;
            };
            if op.is_some_and(|o| o != id.op) || key.is_some_and(|k| k != id.key) {
                continue;
            }
            if let Some(found) = read(id)?
                && best.as_ref().is_none_or(|b| b.0 < found.0)
            {
                best = Some(found);
            }
        }
        Ok(best.map(|(_, id, reply)| (id, reply)))
    }

    /// Seed B's `/deduplication_stats` fields, from the counters (no scan).
    pub(crate) fn stats(&self, service_name: &str) -> Value {
        let c = self.counters();
        json!({
            "service_name": service_name,
            "current_cache_size": c.live,
            "unique_request_ids": c.requests,
            "total_client_count": c.clients,
            "total_requests_cached": c.recorded,
            "total_duplicates_detected": c.same_op,
            "same_operation_duplicates": c.same_op,
            "different_operation_duplicates": c.other_op,
            "total_cache_cleanups": c.cleanups,
        })
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
        use crate::WriteBatch;
        use crate::server::dedup_book::{self, Ledger};
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let d = Dedup::new(Duration::from_secs(10));
        let a = id("c", "r", Op::Set, "k");
        let Lookup::Miss { record_seq: None } = d.lookup(&db, &a, 0).unwrap() else {
            panic!("empty store has no record")
        };
        // the record and its bookkeeping, written as the committer writes them
        let mut b = WriteBatch::new();
        b.put("uk", "v");
        let o = Outcome::with_id(json!({"id": 0}));
        b.expect_version(a.stored_key(), None);
        b.put(a.stored_key(), Dedup::record_value(1_000, &o));
        let mut ledger = Ledger::new(&db);
        ledger
            .record_added(&d, &a, &a.stored_key(), 1_000, false)
            .unwrap();
        let (_, c) = ledger.finish(&mut b, &d);
        db.write(b).unwrap();
        d.set_counters(c, true);
        let seq = db.get_versioned(a.stored_key()).unwrap().unwrap().version;
        match d.lookup(&db, &a, 5_000).unwrap() {
            Lookup::Hit(r) => assert_eq!(
                r.body,
                format!(r#"{{"id":{}}}"#, seq.get() - 1).into_bytes()
            ),
            other => panic!("expected a hit, got {other:?}"),
        }
        assert_eq!(d.counters().same_op, 1);
        // the same ids for another operation: a miss, counted by a point read
        let del = id("c", "r", Op::Delete, "other key");
        let Lookup::Miss { record_seq: None } = d.lookup(&db, &del, 5_000).unwrap() else {
            panic!("no DELETE record")
        };
        assert_eq!(d.counters().other_op, 1);
        let st = d.stats("n");
        assert_eq!(
            (
                &st["current_cache_size"],
                &st["unique_request_ids"],
                &st["total_client_count"]
            ),
            (&json!(1), &json!(1), &json!(1))
        );
        // expired: a miss that names the stale record's version
        let Lookup::Miss {
            record_seq: Some(s),
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
            d.status(&db, "c", "r", Some(Op::Set), Some("k"), 5_000)
                .unwrap()
                .is_some()
        );
        assert!(
            d.status(&db, "c", "r", Some(Op::Delete), None, 5_000)
                .unwrap()
                .is_none()
        );
        assert_eq!(dedup_book::sweep(&db, &d, 5_000, 100).unwrap(), 0);
        assert_eq!(dedup_book::sweep(&db, &d, 11_000, 100).unwrap(), 1);
        assert!(db.prefix([RECORD]).next().is_none());
        let c = d.counters();
        assert_eq!((c.live, c.clients, c.requests, c.cleanups), (0, 0, 0, 1));
        // the bookkeeping keys are gone too, but for the counters
        assert!(db.prefix(b"c").next().is_none() && db.prefix(b"q").next().is_none());
        assert!(db.prefix(b"i").next().is_none());
        assert_eq!(db.get("uk").unwrap().as_deref(), Some(&b"v"[..]));
    }
}
