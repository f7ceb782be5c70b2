//! The committer: one thread that applies every user write of the server, combining the
//! writes queued at the same moment into one atomic batch with one fsync.
//!
//! Each round takes the queued write jobs (up to a count and byte budget), plans them in
//! arrival order against the store overlaid with the plans before them, and commits all their
//! operations and idempotency records as one [`WriteBatch`]. Every key a plan read from the
//! store becomes a precondition of the batch, so the batch applies only if nothing else wrote
//! those keys since they were read; if something did (a write from outside the committer),
//! the round's jobs are retried one by one. A job is acknowledged only after its batch is
//! durable; a batch is all-or-nothing, also across crashes.
//!
//! Because one thread plans and commits, the server's writes never race each other, and a
//! loaded server turns many requests into one WAL record instead of waking a thread per
//! request.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use axum::http::StatusCode;

use super::dedup::{Dedup, Lookup, RecordId, now_ms};
use super::dedup_book::{self, Ledger};
use super::error::{Api, ApiError};
use super::ops::{Planner, View};
use super::queue::{Refused, WorkQueue};
use super::reply::{Outcome, Reply};
use super::value;
use crate::{Db, Error, SeqNo, WriteBatch};

/// Most jobs in one round.
const MAX_ROUND_JOBS: usize = 512;
/// A round stops taking jobs beyond this many request bytes (a single larger job still runs).
const MAX_ROUND_BYTES: usize = 4 << 20;
/// Attempts of a job retried on its own before it gives up.
const MAX_ATTEMPTS: usize = 64;

type ReplyTx = tokio::sync::oneshot::Sender<Result<Reply, ApiError>>;

/// One write waiting for the committer.
pub(crate) struct WriteJob {
    api: Api,
    ident: Option<RecordId>,
    size: usize,
    planner: Planner,
    reply: ReplyTx,
    /// The job is dropped, unplanned, if it is still queued then.
    deadline: Instant,
}

impl WriteJob {
    fn answer(self, r: Result<Reply, ApiError>) {
        let _ = self.reply.send(r);
    }

    /// Answers the job with a 503 if its deadline has passed; else gives it back.
    fn unless_expired(self, now: Instant) -> Option<WriteJob> {
        if now <= self.deadline {
            return Some(self);
        }
        let api = self.api;
        self.answer(Err(ApiError::busy(
            api,
            "the write waited too long for the committer; retry later",
        )));
        None
    }
}

/// What the committer is asked to do.
pub(crate) enum Job {
    /// A user write.
    Write(WriteJob),
    /// A sweep of expired idempotency records (`dedup_book.rs`).
    Sweep(tokio::sync::oneshot::Sender<crate::Result<usize>>),
}

/// The handle to the committer thread.
pub(crate) struct Writer {
    queue: Arc<WorkQueue<Job>>,
    thread: parking_lot::Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

impl Writer {
    /// Starts the committer over `db`, with room for `capacity` queued writes.
    pub(crate) fn start(db: Db, dedup: Arc<Dedup>, capacity: usize) -> std::io::Result<Writer> {
        let queue = Arc::new(WorkQueue::new(capacity));
        let q = Arc::clone(&queue);
        let thread = std::thread::Builder::new()
            .name("strata-http-commit".into())
            .spawn(move || run(&db, &dedup, &q))?;
        Ok(Writer {
            queue,
            thread: parking_lot::Mutex::new(Some(thread)),
        })
    }

    /// Runs a sweep of expired idempotency records on the committer.
    pub(crate) async fn sweep(&self, api: Api) -> Result<usize, ApiError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.queue.push(Job::Sweep(tx)).is_err() {
            return Err(ApiError::busy(api, "the committer is busy or stopping"));
        }
        match rx.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ApiError::store(api, &e)),
            Err(_) => Err(ApiError::internal(api, "the sweep was dropped")),
        }
    }

    /// Refuses new writes, lets the committer finish the queued ones and write the
    /// idempotency counters, and waits for it to end.
    pub(crate) fn stop(&self) {
        self.queue.close();
        let thread = self.thread.lock().take();
        if let Some(t) = thread
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }

    /// Queues a write and waits for its answer. `size` is the request's size in bytes (for
    /// the round budget); `ident` makes it idempotent; a write not started by `deadline` is
    /// answered 503 unapplied, and so is one that finds the queue full.
    pub(crate) async fn submit(
        &self,
        api: Api,
        ident: Option<RecordId>,
        size: usize,
        deadline: Instant,
        planner: Planner,
    ) -> Result<Reply, ApiError> {
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            api,
            ident,
            size,
            planner,
            reply,
            deadline,
        };
        match self.queue.push(Job::Write(job)) {
            Ok(()) => {}
            Err(Refused::Full(_)) => {
                return Err(ApiError::busy(
                    api,
                    "too many writes are waiting for the committer; retry later",
                ));
            }
            Err(Refused::Closed(_)) => {
                return Err(ApiError::new(
                    api,
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the server is stopping",
                ));
            }
        }
        match rx.await {
            Ok(r) => r,
            Err(_) => Err(ApiError::internal(api, "the write was dropped")),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Most expired idempotency records one sweep deletes.
const SWEEP_BATCH: usize = 10_000;

fn run(db: &Db, dedup: &Dedup, queue: &WorkQueue<Job>) {
    let mut carry: Option<Job> = None;
    loop {
        let first = match carry.take() {
            Some(j) => j,
            None => match queue.pop() {
                Some(j) => j,
                None => break,
            },
        };
        let first = match first {
            Job::Sweep(reply) => {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    dedup_book::sweep(db, dedup, now_ms(), SWEEP_BATCH)
                }));
                match r {
                    Ok(r) => {
                        let _ = reply.send(r);
                    }
                    Err(_) => tracing::error!("an idempotency record sweep panicked"),
                }
                continue;
            }
            Job::Write(w) => w,
        };
        let now = Instant::now();
        let Some(first) = first.unless_expired(now) else {
            continue;
        };
        let mut bytes = first.size;
        let mut jobs = vec![first];
        while jobs.len() < MAX_ROUND_JOBS && bytes < MAX_ROUND_BYTES {
            let Some(j) = queue.try_pop() else {
                break;
            };
            let j = match j {
                Job::Write(w) => w,
                sweep @ Job::Sweep(_) => {
                    carry = Some(sweep);
                    break;
                }
            };
            let Some(j) = j.unless_expired(now) else {
                continue;
            };
            if bytes + j.size > MAX_ROUND_BYTES {
                carry = Some(Job::Write(j));
                break;
            }
            bytes += j.size;
            jobs.push(j);
        }
        let round = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if let Err(conflicted) = try_round(db, dedup, jobs) {
                for job in conflicted {
                    alone(db, dedup, job);
                }
            }
        }));
        if round.is_err() {
            tracing::error!("a write round panicked; its requests were answered with errors");
        }
    }
    if let Err(e) = dedup_book::persist(db, dedup) {
        tracing::warn!(error = %e, "could not write the idempotency counters");
    }
}

/// Retries one job on its own until it commits or runs out of attempts.
fn alone(db: &Db, dedup: &Dedup, job: WriteJob) {
    let mut job = job;
    for _ in 0..MAX_ATTEMPTS {
        match try_round(db, dedup, vec![job]) {
            Ok(()) => return,
            Err(mut back) => match back.pop() {
                Some(j) => job = j,
                None => return,
            },
        }
    }
    let api = job.api;
    job.answer(Err(ApiError::new(
        api,
        StatusCode::CONFLICT,
        "the key kept changing under concurrent writes; retry the request",
    )));
}

struct Included {
    job: WriteJob,
    outcome: Outcome,
    /// Index in the batch of the job's last operation (its `id`), if it wrote any.
    id_op: Option<u64>,
}

/// Plans and commits `jobs` as one batch. Returns the jobs to retry if a precondition failed.
fn try_round(db: &Db, dedup: &Dedup, jobs: Vec<WriteJob>) -> Result<(), Vec<WriteJob>> {
    let now = now_ms();
    let mut overlay: HashMap<Vec<u8>, Option<u64>> = HashMap::new();
    let mut expects: Vec<(Vec<u8>, Option<SeqNo>)> = Vec::new();
    let mut expected: HashSet<Vec<u8>> = HashSet::new();
    let mut batch = WriteBatch::new();
    let mut n_ops: u64 = 0;
    let mut included: Vec<Included> = Vec::new();
    let mut duplicates: Vec<(WriteJob, usize)> = Vec::new();
    let mut round_records: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut ledger = Ledger::new(db);
    let mut failed: Option<(Error, WriteJob)> = None;

    for mut job in jobs {
        if failed.is_some() {
            duplicates.push((job, usize::MAX));
            continue;
        }
        let mut record = None;
        if let Some(id) = &job.ident {
            let key = id.stored_key();
            if let Some(&i) = round_records.get(&key) {
                // The same request twice in one round: answer both with the first's reply.
                duplicates.push((job, i));
                continue;
            }
            match dedup.lookup(db, id, now) {
                Err(e) => {
                    let api = job.api;
                    job.answer(Err(ApiError::store(api, &e)));
                    continue;
                }
                Ok(Lookup::Hit(reply)) => {
                    job.answer(Ok(reply));
                    continue;
                }
                Ok(Lookup::Miss { record_seq, .. }) => {
                    record = Some((key, record_seq));
                }
            }
        }
        let view = View::new(db, job.api, &overlay);
        let plan = match (job.planner)(&view) {
            Ok(p) => p,
            Err(e) => {
                job.answer(Err(e));
                continue;
            }
        };
        if let (Some(id), Some((key, record_seq))) = (&job.ident, &record)
            && let Err(e) = ledger.record_added(dedup, id, key, now, record_seq.is_some())
        {
            // The bookkeeping could not be read: the whole round fails.
            failed = Some((e, job));
            continue;
        }
        for (k, seq) in view.into_reads() {
            if expected.insert(k.clone()) {
                expects.push((k, seq));
            }
        }
        let mut id_op = None;
        for (k, v) in &plan.ops {
            match v {
                Some(v) => {
                    batch.put(k, v);
                    overlay.insert(k.clone(), value::decode_version(v).ok());
                }
                None => {
                    batch.delete(k);
                    overlay.insert(k.clone(), None);
                }
            }
            id_op = Some(n_ops);
            n_ops += 1;
        }
        if let Some((key, record_seq)) = record {
            // The record follows the job's last operation, so its sequence number minus one
            // is the job's `id` on replay.
            batch.put(&key, Dedup::record_value(now, &plan.outcome));
            n_ops += 1;
            if expected.insert(key.clone()) {
                expects.push((key.clone(), record_seq));
            }
            round_records.insert(key, included.len());
        }
        included.push(Included {
            job,
            outcome: plan.outcome,
            id_op,
        });
    }

    if let Some((e, job)) = failed {
        let answer = |job: WriteJob| {
            let api = job.api;
            job.answer(Err(ApiError::store(api, &e)));
        };
        answer(job);
        included.into_iter().for_each(|i| answer(i.job));
        duplicates.into_iter().for_each(|(j, _)| answer(j));
        return Ok(());
    }
    if n_ops == 0 {
        for inc in included {
            inc.job.answer(Ok(inc.outcome.render(None)));
        }
        return Ok(());
    }
    let mut counters = None;
    if ledger.needed(dedup) {
        let (ops, c) = ledger.finish(&mut batch, dedup);
        n_ops += ops;
        counters = Some(c);
    }
    for (k, seq) in &expects {
        batch.expect_version(k, *seq);
    }
    match db.write(batch) {
        Ok(last) => {
            if let Some(c) = counters {
                dedup.set_counters(c, true);
            }
            // `n_ops > 0`, so the batch wrote and `last` is its last write's version.
            let first = (last.map_or(0, |l| l.get()) + 1).saturating_sub(n_ops);
            let replies: Vec<Reply> = included
                .iter()
                .map(|inc| inc.outcome.clone().render(inc.id_op.map(|i| first + i)))
                .collect();
            for (job, i) in duplicates {
                dedup.count_duplicate();
                if let Some(r) = replies.get(i) {
                    job.answer(Ok(r.clone()));
                }
            }
            for (inc, reply) in included.into_iter().zip(replies) {
                inc.job.answer(Ok(reply));
            }
            Ok(())
        }
        Err(Error::Conflict(_)) => {
            let mut back: Vec<WriteJob> = included.into_iter().map(|i| i.job).collect();
            back.extend(duplicates.into_iter().map(|(j, _)| j));
            Err(back)
        }
        Err(e) => {
            for inc in included {
                let api = inc.job.api;
                inc.job.answer(Err(ApiError::store(api, &e)));
            }
            for (job, _) in duplicates {
                let api = job.api;
                job.answer(Err(ApiError::store(api, &e)));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use serde_json::json;

    use super::*;
    use crate::server::keyspace;
    use crate::server::ops::{Plan, next_version, put_op};
    use crate::server::value;

    fn planner_for(key: &'static str, calls: Arc<AtomicUsize>, outside: Option<Db>) -> Planner {
        Box::new(move |view: &View<'_>| {
            let stored = keyspace::user_key(key);
            let current = view.version(&stored)?;
            if calls.fetch_add(1, Ordering::SeqCst) == 0
                && let Some(db) = &outside
            {
                // Another writer gets in between this plan's read and its commit.
                let (k, v) = put_op(key, 7, 0, b"outside");
                db.put(&k, v.unwrap_or_default()).ok();
            }
            let version = next_version(current);
            Ok(Plan {
                ops: vec![put_op(key, version, 0, b"mine")],
                outcome: Outcome::fixed(StatusCode::OK, json!({"version": version})),
            })
        })
    }

    #[tokio::test]
    async fn a_write_that_loses_a_race_is_planned_again() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let writer = Writer::start(
            db.clone(),
            Arc::new(Dedup::new(Duration::from_secs(60))),
            16,
        )
        .unwrap();
        let calls = Arc::new(AtomicUsize::new(0));
        let planner = planner_for("k", Arc::clone(&calls), Some(db.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        let reply = writer
            .submit(Api::Versioned, None, 10, deadline, planner)
            .await
            .unwrap();
        assert_eq!(reply.body, br#"{"version":8}"#.to_vec());
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        let stored = db.get(keyspace::user_key("k")).unwrap().unwrap();
        let env = value::decode(&stored).unwrap();
        assert_eq!(
            (env.version, env.value),
            (8, value::StoredValue::Text("mine".into()))
        );
    }

    #[tokio::test]
    async fn writes_queued_together_share_one_batch() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let dedup = Arc::new(Dedup::new(Duration::from_secs(60)));
        let queue = WorkQueue::new(16);
        let (mut replies, calls) = (Vec::new(), Arc::new(AtomicUsize::new(0)));
        for _ in 0..5 {
            let (reply, rx) = tokio::sync::oneshot::channel();
            let job = WriteJob {
                api: Api::Versioned,
                ident: None,
                size: 10,
                planner: planner_for("same", Arc::clone(&calls), None),
                reply,
                deadline: Instant::now() + Duration::from_secs(10),
            };
            assert!(queue.push(Job::Write(job)).is_ok());
            replies.push(rx);
        }
        queue.close();
        run(&db, &dedup, &queue);
        for (i, rx) in replies.into_iter().enumerate() {
            let body = rx.await.unwrap().unwrap().body;
            assert_eq!(body, format!(r#"{{"version":{}}}"#, i + 1).into_bytes());
        }
        // one commit group for the five writes
        let stats = db.stats();
        assert_eq!((stats.puts, stats.batches), (5, 1));
    }

    #[tokio::test]
    async fn a_write_still_queued_at_its_deadline_is_answered_503_unapplied() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path()).unwrap();
        let dedup = Arc::new(Dedup::new(Duration::from_secs(60)));
        let queue = WorkQueue::new(16);
        let calls = Arc::new(AtomicUsize::new(0));
        let (reply, rx) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            api: Api::Versioned,
            ident: None,
            size: 10,
            planner: planner_for("late", Arc::clone(&calls), None),
            reply,
            deadline: Instant::now(),
        };
        assert!(queue.push(Job::Write(job)).is_ok());
        std::thread::sleep(Duration::from_millis(5));
        queue.close();
        run(&db, &dedup, &queue);
        let e = rx.await.unwrap().unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.retry_after, Some(1));
        assert_eq!(calls.load(Ordering::SeqCst), 0, "never planned");
        assert!(db.get(keyspace::user_key("late")).unwrap().is_none());
    }
}
