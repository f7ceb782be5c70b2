//! Bookkeeping of the idempotency records (`dedup.rs`), kept so that no request scans them:
//! reference counts per client, per request id and per (client, request) pair, an expiry
//! index the sweep walks from where it stopped, and seed B's counters, all persisted in the
//! store and changed in the same atomic batch as the records they count.
//!
//! ```text
//! expiry entry  := 'e' | index_ms: u64 BE | record key   ->  created_ms: u64
//! client count  := 'c' | client                          ->  records: u64
//! request count := 'q' | request                         ->  records: u64
//! ids count     := 'i' | client_len: u16 | client | request_len: u16 | request
//!                                                        ->  set records: u32 | delete records: u32
//! counters      := 'm' | "dedup"                         ->  format: u8 (= 1) | live | clients
//!                  | requests | recorded | same_op | other_op | cleanups | swept_to_ms (u64 each)
//! ```
//!
//! Integers are little-endian except `index_ms`, big-endian so that the index sorts by time.
//! `index_ms` is the record's creation time, or the sweep's position if the clock went back,
//! so that every entry lies ahead of the sweep. The sweep reads the index from `swept_to_ms`
//! (past the deleted entries, which it never reads again) up to `now - expiry`; it deletes a
//! record only if the record is the one the entry was made for (same `created_ms`), and
//! always the entry.
//!
//! `live`, `clients` and `requests` count records held, including expired ones the next
//! sweep (at most a minute away) removes. `recorded` counts records written; `same_op`
//! (retries answered from a record) and `other_op` (the same ids used for another
//! operation) are counted as they happen and written with the next batch or sweep, so a
//! crash may lose the last few of those; `cleanups` counts sweeps that deleted records.
//! Only the committer thread writes these keys, so they need no preconditions.

use std::collections::HashMap;

use super::dedup::{Dedup, Op, Record, RecordId, id_prefix};
use super::keyspace::{CLIENTS, IDS, INDEX, META, RECORD, REQUESTS};
use crate::{Db, WriteBatch};

const META_KEY: &[u8] = &[META, b'd', b'e', b'd', b'u', b'p'];
const META_FORMAT: u8 = 1;
/// Records per batch when the bookkeeping is built from the records of an older store.
const REBUILD_BATCH: usize = 4096;

/// Seed B's counters and the sweep's position.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counters {
    pub live: u64,
    pub clients: u64,
    pub requests: u64,
    pub recorded: u64,
    pub same_op: u64,
    pub other_op: u64,
    pub cleanups: u64,
    pub swept_to_ms: u64,
}

impl Counters {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(65);
        out.push(META_FORMAT);
        for v in [
            self.live,
            self.clients,
            self.requests,
            self.recorded,
            self.same_op,
            self.other_op,
            self.cleanups,
            self.swept_to_ms,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Counters> {
        let (&format, rest) = bytes.split_first()?;
        if format != META_FORMAT || rest.len() != 64 {
            return None;
        }
        let mut v = rest
            .chunks_exact(8)
            .map(|c| c.try_into().map(u64::from_le_bytes).unwrap_or(0));
        let mut next = || v.next().unwrap_or(0);
        Some(Counters {
            live: next(),
            clients: next(),
            requests: next(),
            recorded: next(),
            same_op: next(),
            other_op: next(),
            cleanups: next(),
            swept_to_ms: next(),
        })
    }
}

fn tagged(tag: u8, s: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + s.len());
    k.push(tag);
    k.extend_from_slice(s.as_bytes());
    k
}

fn ids_key(client: &str, request: &str) -> Vec<u8> {
    let mut k = id_prefix(client, request);
    k[0] = IDS;
    k
}

#[allow(clippy::big_endian_bytes)] // big-endian times order like the bytes of the key
fn index_key(index_ms: u64, record_key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(9 + record_key.len());
    k.push(INDEX);
    k.extend_from_slice(&index_ms.to_be_bytes());
    k.extend_from_slice(record_key);
    k
}

/// The time of an expiry entry's key.
#[allow(clippy::big_endian_bytes)] // see `index_key`
fn index_ms(key: &[u8]) -> Option<u64> {
    key.get(1..9)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
}

fn read_u64(db: &Db, key: &[u8]) -> crate::Result<u64> {
    Ok(db
        .get(key)?
        .and_then(|v| v.as_ref().try_into().ok().map(u64::from_le_bytes))
        .unwrap_or(0))
}

fn read_ids(db: &Db, key: &[u8]) -> crate::Result<[u32; 2]> {
    let Some(v) = db.get(key)? else {
        return Ok([0, 0]);
    };
    let word = |i: usize| {
        v.get(i..i + 4)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u32::from_le_bytes)
    };
    Ok([word(0), word(4)])
}

fn slot(op: Op) -> usize {
    usize::from(op.code() - 1)
}

/// Whether the client and request ids of `id` have a record for another operation (a point
/// read).
pub(crate) fn has_other_op(db: &Db, id: &RecordId) -> crate::Result<bool> {
    let counts = read_ids(db, &ids_key(&id.client, &id.request))?;
    Ok(counts[1 - slot(id.op)] > 0)
}

/// The bookkeeping changes of one batch: records added and removed, reference counts read
/// through and changed. Applied to the batch by [`Ledger::finish`]; dropped (with nothing
/// changed) if the batch is not written.
pub(crate) struct Ledger<'a> {
    db: &'a Db,
    /// Expiry entries to write: key and the record's creation time.
    entries: Vec<(Vec<u8>, u64)>,
    counts: HashMap<Vec<u8>, u64>,
    ids: HashMap<Vec<u8>, [u32; 2]>,
    delta: Counters,
    removed: u64,
    lost_clients: u64,
    lost_requests: u64,
    touched: bool,
}

impl<'a> Ledger<'a> {
    pub(crate) fn new(db: &'a Db) -> Ledger<'a> {
        Ledger {
            db,
            entries: Vec::new(),
            counts: HashMap::new(),
            ids: HashMap::new(),
            delta: Counters::default(),
            removed: 0,
            lost_clients: 0,
            lost_requests: 0,
            touched: false,
        }
    }

    fn count(&mut self, key: Vec<u8>, up: bool) -> crate::Result<(u64, u64)> {
        let before = match self.counts.get(&key) {
            Some(n) => *n,
            None => read_u64(self.db, &key)?,
        };
        let after = if up {
            before.saturating_add(1)
        } else {
            before.saturating_sub(1)
        };
        self.counts.insert(key, after);
        Ok((before, after))
    }

    fn change(&mut self, id: &RecordId, up: bool) -> crate::Result<()> {
        let (b, a) = self.count(tagged(CLIENTS, &id.client), up)?;
        match (b, a) {
            (0, 1) => self.delta.clients += 1,
            (1, 0) => self.lost_clients += 1,
            _ => {}
        }
        let (b, a) = self.count(tagged(REQUESTS, &id.request), up)?;
        match (b, a) {
            (0, 1) => self.delta.requests += 1,
            (1, 0) => self.lost_requests += 1,
            _ => {}
        }
        let key = ids_key(&id.client, &id.request);
        let mut c = match self.ids.get(&key) {
            Some(c) => *c,
            None => read_ids(self.db, &key)?,
        };
        let s = slot(id.op);
        c[s] = if up {
            c[s].saturating_add(1)
        } else {
            c[s].saturating_sub(1)
        };
        self.ids.insert(key, c);
        Ok(())
    }

    /// A record for `id` is written at `created_ms` (key `record_key`); `replacing` when it
    /// overwrites a stored (expired or damaged) record of the same id, which stays counted.
    /// An error leaves the ledger unusable: its batch must not be written.
    pub(crate) fn record_added(
        &mut self,
        dedup: &Dedup,
        id: &RecordId,
        record_key: &[u8],
        created_ms: u64,
        replacing: bool,
    ) -> crate::Result<()> {
        self.touched = true;
        if !replacing {
            self.change(id, true)?;
            self.delta.live += 1;
        }
        self.delta.recorded += 1;
        let index_ms = created_ms.max(dedup.counters().swept_to_ms);
        self.entries
            .push((index_key(index_ms, record_key), created_ms));
        Ok(())
    }

    /// A stored record of `id` is deleted.
    fn record_removed(&mut self, id: Option<&RecordId>) -> crate::Result<()> {
        self.touched = true;
        self.removed += 1;
        if let Some(id) = id {
            self.change(id, false)?;
        }
        Ok(())
    }

    /// Whether the batch changes the bookkeeping (or the counters need writing anyway).
    pub(crate) fn needed(&self, dedup: &Dedup) -> bool {
        self.touched || dedup.dirty()
    }

    /// Adds the changed counts and the counters to `batch`; returns the operations added and
    /// the counters to install once the batch is written.
    pub(crate) fn finish(self, batch: &mut WriteBatch, dedup: &Dedup) -> (u64, Counters) {
        let mut ops = 0;
        for (k, created) in &self.entries {
            batch.put(k, created.to_le_bytes());
            ops += 1;
        }
        for (k, n) in &self.counts {
            if *n == 0 {
                batch.delete(k);
            } else {
                batch.put(k, n.to_le_bytes());
            }
            ops += 1;
        }
        for (k, c) in &self.ids {
            if *c == [0, 0] {
                batch.delete(k);
            } else {
                let mut v = c[0].to_le_bytes().to_vec();
                v.extend_from_slice(&c[1].to_le_bytes());
                batch.put(k, v);
            }
            ops += 1;
        }
        let mut c = dedup.counters();
        c.live = (c.live + self.delta.live).saturating_sub(self.removed);
        c.clients = (c.clients + self.delta.clients).saturating_sub(self.lost_clients);
        c.requests = (c.requests + self.delta.requests).saturating_sub(self.lost_requests);
        c.recorded += self.delta.recorded;
        if self.removed > 0 {
            c.cleanups += 1;
        }
        if self.delta.swept_to_ms > c.swept_to_ms {
            c.swept_to_ms = self.delta.swept_to_ms;
        }
        batch.put(META_KEY, c.encode());
        (ops + 1, c)
    }
}

/// Loads the counters; on a store written before the bookkeeping existed (records but no
/// counters), builds the counts and the expiry index from the records once.
pub(crate) fn load(db: &Db, dedup: &Dedup) -> crate::Result<()> {
    if let Some(v) = db.get(META_KEY)? {
        if let Some(c) = Counters::decode(&v) {
            dedup.set_counters(c, true);
            return Ok(());
        }
        tracing::warn!("idempotency counters unreadable; rebuilding them from the records");
    }
    let mut keys = Vec::new();
    let mut pending: Vec<(Vec<u8>, Option<RecordId>, u64)> = Vec::new();
    for item in db.prefix([RECORD]) {
        let (k, v) = item?;
        let created = Record::decode(&v).map_or(0, |r| r.created_ms);
        pending.push((k.to_vec(), RecordId::parse(&k), created));
        if pending.len() == REBUILD_BATCH {
            keys.push(std::mem::take(&mut pending));
        }
    }
    if !pending.is_empty() {
        keys.push(pending);
    }
    let mut written = 0;
    for chunk in keys {
        let mut batch = WriteBatch::new();
        let mut ledger = Ledger::new(db);
        for (key, id, created) in &chunk {
            ledger.touched = true;
            ledger.delta.live += 1;
            if let Some(id) = id {
                ledger.change(id, true)?;
            }
            batch.put(index_key(*created, key), created.to_le_bytes());
        }
        written += chunk.len();
        let (_, c) = ledger.finish(&mut batch, dedup);
        db.write(batch)?;
        dedup.set_counters(c, true);
    }
    if written > 0 {
        tracing::info!(records = written, "idempotency bookkeeping built");
    }
    Ok(())
}

/// Deletes up to `max` expired records, reading the expiry index from where the last sweep
/// stopped, and writes the counters if they changed. Returns how many records it deleted.
/// Runs on the committer thread.
pub(crate) fn sweep(db: &Db, dedup: &Dedup, now_ms: u64, max: usize) -> crate::Result<usize> {
    let from = dedup.counters().swept_to_ms;
    // entries made at `until` or before have expired
    let until = now_ms.saturating_sub(dedup.expiry_ms()).saturating_add(1);
    let mut batch = WriteBatch::new();
    let mut ledger = Ledger::new(db);
    let mut deleted = 0;
    let mut seen = 0;
    let mut reached = until.max(from);
    if from < until {
        let lower = index_key(from, &[]);
        let upper = index_key(until, &[]);
        for item in db.range(lower..upper) {
            let (k, v) = item?;
            if seen == max {
                // Stop at this entry's time: the next sweep starts here.
                reached = index_ms(&k).unwrap_or(from);
                break;
            }
            seen += 1;
            batch.delete(&k);
            let record_key = k.get(9..).unwrap_or_default();
            let made = v.as_ref().try_into().ok().map(u64::from_le_bytes);
            let Some(stored) = db.get(record_key)? else {
                continue;
            };
            match Record::decode(&stored) {
                // replaced by a newer record: only the entry goes
                Some(rec) if Some(rec.created_ms) != made => {}
                Some(rec) if !dedup.expired(rec.created_ms, now_ms) => {}
                _ => {
                    batch.delete(record_key);
                    ledger.record_removed(RecordId::parse(record_key).as_ref())?;
                    deleted += 1;
                }
            }
        }
    }
    if seen == 0 && !dedup.dirty() {
        return Ok(0);
    }
    ledger.delta.swept_to_ms = reached;
    let (_, c) = ledger.finish(&mut batch, dedup);
    db.write(batch)?;
    dedup.set_counters(c, true);
    Ok(deleted)
}

/// Writes the counters if they changed since they were last written.
pub(crate) fn persist(db: &Db, dedup: &Dedup) -> crate::Result<()> {
    if !dedup.dirty() {
        return Ok(());
    }
    let mut batch = WriteBatch::new();
    let (_, c) = Ledger::new(db).finish(&mut batch, dedup);
    db.write(batch)?;
    dedup.set_counters(c, true);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_round_trip_and_reject_other_layouts() {
        let c = Counters {
            live: 1,
            clients: 2,
            requests: 3,
            recorded: 4,
            same_op: 5,
            other_op: 6,
            cleanups: 7,
            swept_to_ms: 8,
        };
        let b = c.encode();
        assert_eq!(Counters::decode(&b), Some(c));
        for cut in 0..b.len() {
            assert_eq!(Counters::decode(&b[..cut]), None);
        }
        let mut other = b.clone();
        other[0] = 2;
        assert_eq!(Counters::decode(&other), None);
    }

    #[test]
    fn index_keys_sort_by_time() {
        assert!(index_key(255, b"rz") < index_key(256, b"ra"));
        assert!(index_key(1, b"") < index_key(1, b"r"));
    }

    #[test]
    fn the_sweep_resumes_where_it_stopped_and_keeps_the_counts_right() {
        use crate::server::reply::Outcome;
        use axum::http::StatusCode;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let d = Dedup::new(std::time::Duration::from_millis(1_000));
        let mut batch = WriteBatch::new();
        let mut ledger = Ledger::new(&db);
        let outcome = Outcome::fixed(StatusCode::OK, serde_json::json!({}));
        for i in 0..5u64 {
            let id = RecordId {
                client: format!("c{}", i % 2),
                request: "r".into(),
                op: Op::Set,
                key: format!("k{i}"),
            };
            batch.put(id.stored_key(), Dedup::record_value(100 + i, &outcome));
            ledger
                .record_added(&d, &id, &id.stored_key(), 100 + i, false)
                .unwrap();
        }
        let (_, c) = ledger.finish(&mut batch, &d);
        db.write(batch).unwrap();
        d.set_counters(c, true);
        assert_eq!((c.live, c.clients, c.requests, c.recorded), (5, 2, 1, 5));

        // two at a time: each sweep starts where the last stopped
        assert_eq!(sweep(&db, &d, 2_000, 2).unwrap(), 2);
        assert_eq!(d.counters().swept_to_ms, 102);
        assert_eq!(sweep(&db, &d, 2_000, 2).unwrap(), 2);
        assert_eq!(d.counters().swept_to_ms, 104);
        let c = d.counters();
        assert_eq!((c.live, c.clients, c.requests), (1, 1, 1));
        assert_eq!(sweep(&db, &d, 2_000, 2).unwrap(), 1);
        let c = d.counters();
        assert_eq!((c.live, c.clients, c.requests, c.cleanups), (0, 0, 0, 3));
        assert!(c.swept_to_ms > 104);
        assert!(db.prefix([INDEX]).next().is_none());
        assert!(db.prefix([RECORD]).next().is_none());
        // nothing left: a sweep writes nothing
        let seq = db.last_seqno();
        assert_eq!(sweep(&db, &d, 3_000, 2).unwrap(), 0);
        assert_eq!(db.last_seqno(), seq);
    }

    #[test]
    fn records_of_an_older_store_get_their_bookkeeping_at_load() {
        use crate::server::reply::Outcome;
        use axum::http::StatusCode;
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let outcome = Outcome::fixed(StatusCode::OK, serde_json::json!({}));
        for (client, request, op) in [
            ("a", "1", Op::Set),
            ("a", "1", Op::Delete),
            ("b", "2", Op::Set),
        ] {
            let id = RecordId {
                client: client.into(),
                request: request.into(),
                op,
                key: "k".into(),
            };
            db.put(id.stored_key(), Dedup::record_value(100, &outcome))
                .unwrap();
        }
        let d = Dedup::new(std::time::Duration::from_millis(1_000));
        load(&db, &d).unwrap();
        let c = d.counters();
        assert_eq!((c.live, c.clients, c.requests), (3, 2, 2));
        let other = RecordId {
            client: "b".into(),
            request: "2".into(),
            op: Op::Delete,
            key: "x".into(),
        };
        assert!(has_other_op(&db, &other).unwrap());
        // loaded again: read, not rebuilt
        let d2 = Dedup::new(std::time::Duration::from_millis(1_000));
        load(&db, &d2).unwrap();
        assert_eq!(d2.counters(), c);
        assert_eq!(sweep(&db, &d2, 5_000, 100).unwrap(), 3);
        assert_eq!(d2.counters().live, 0);
    }
}
