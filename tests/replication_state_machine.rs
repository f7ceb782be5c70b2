//! The replicated state machine: apply is deterministic (identical replicas), its record
//! moves with its data across restarts, snapshots carry data, history and counters, and a
//! machine found behind its current snapshot at open installs it.
#![cfg(feature = "replication")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::path::Path;
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId, RaftSnapshotBuilder};
use strata::replication::apply::{PlainApplier, user_key};
use strata::replication::state_machine::{DbOpener, StateMachine, default_opener};
use strata::replication::types::{Entry, Outcome, Request, Response, Value, Write};
use strata::{Db, SyncMode};

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, writes: Vec<Write>) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(Request {
            leader_ms: 1_000 + index,
            writes,
        }),
    }
}

fn put(k: &str, v: &str) -> Write {
    Write::Put {
        key: k.into(),
        value: Value::Text(v.into()),
    }
}

fn history_opener() -> DbOpener {
    Arc::new(|p: &Path| {
        Db::builder(p)
            .sync_mode(SyncMode::Buffered)
            .history_versions(5)
            .open()
    })
}

fn open(dir: &Path, opener: DbOpener) -> StateMachine {
    StateMachine::open(dir, opener, Arc::new(PlainApplier)).unwrap()
}

fn workload() -> Vec<Entry> {
    let mut out = vec![Entry {
        log_id: log_id(1),
        payload: EntryPayload::Blank,
    }];
    for i in 2..40u64 {
        let k = format!("k{}", i % 7);
        let w = match i % 5 {
            0 => Write::Delete { key: k },
            1 => Write::Batch {
                items: vec![
                    (k.clone(), Value::Json(format!("{i}"))),
                    ("z".into(), Value::Text("z".into())),
                ],
            },
            _ => put(&k, &format!("v{i}")),
        };
        out.push(entry(i, vec![w, put("last", &i.to_string())]));
    }
    out
}

/// A key and its retained history, oldest first.
type KeyLife = (Vec<u8>, Vec<Option<Vec<u8>>>);

/// Every key with its retained history, as bytes.
fn contents(db: &Db) -> Vec<KeyLife> {
    let mut out = Vec::new();
    for item in db.range(&[1u8][..]..) {
        let (k, _) = item.unwrap();
        let mut life: Vec<Option<Vec<u8>>> = Vec::new();
        for v in db.versions(&k) {
            let v = v.unwrap();
            match v.value {
                Some(b) => life.push(Some(b.to_vec())),
                None => break,
            }
        }
        life.reverse();
        out.push((k.to_vec(), life));
    }
    out
}

#[tokio::test]
async fn replicas_applying_the_same_entries_are_identical() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(a_dir.path(), history_opener());
    let mut b = open(b_dir.path(), history_opener());
    let ra = a.apply(workload()).await.unwrap();
    // The other replica gets the same entries in several calls.
    let mut rb: Vec<Response> = Vec::new();
    for chunk in workload().chunks(7) {
        rb.extend(b.apply(chunk.to_vec()).await.unwrap());
    }
    assert_eq!(ra, rb);
    assert_eq!(ra.len(), 39);
    assert_eq!(ra[0], Response::default(), "a blank entry answers nothing");
    let Outcome::Applied { id, count, .. } = &ra[1].outcomes[1] else {
        panic!("{:?}", ra[1])
    };
    assert_eq!((*id, *count), (1, 1));
    assert_eq!(contents(&a.reader().db()), contents(&b.reader().db()));
    assert_eq!(a.reader().state(), b.reader().state());
    let state = a.reader().state();
    assert_eq!(state.last_applied, Some(log_id(39)));
    assert_eq!(state.clock_ms, 1_039);
}

#[tokio::test]
async fn the_applied_record_moves_with_the_data_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut sm = open(dir.path(), default_opener());
        sm.apply(workload()).await.unwrap();
        // Dropped: the next open recovers the machine from its own store.
    }
    let mut sm = open(dir.path(), default_opener());
    let (applied, _) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(39)));
    let db = sm.reader().db();
    assert_eq!(
        db.get(user_key("last")).unwrap().as_deref(),
        Some(&b"39"[..])
    );
    // Applying the next entry continues the replicated ids where they were.
    let next = sm.reader().state().next_id;
    let r = sm
        .apply(vec![entry(40, vec![put("x", "y")])])
        .await
        .unwrap();
    assert_eq!(
        r[0].outcomes[0],
        Outcome::Applied {
            id: next,
            count: 1,
            version: None
        }
    );
}

#[tokio::test]
async fn a_snapshot_carries_data_history_and_counters_to_another_replica() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(a_dir.path(), history_opener());
    a.apply(workload()).await.unwrap();
    let mut builder = a.get_snapshot_builder().await;
    // Writes after the builder was taken are not in the snapshot.
    a.apply(vec![entry(40, vec![put("late", "x")])])
        .await
        .unwrap();
    let snap = builder.build_snapshot().await.unwrap();
    assert_eq!(snap.meta.last_log_id, Some(log_id(39)));
    let current = a.get_current_snapshot().await.unwrap().unwrap();
    assert_eq!(current.meta, snap.meta);

    let mut b = open(b_dir.path(), history_opener());
    b.apply(vec![entry(1, vec![put("stale", "gone")])])
        .await
        .unwrap();
    let mut recv = b.begin_receiving_snapshot().await.unwrap();
    let mut src = tokio::fs::File::open(current.snapshot.path())
        .await
        .unwrap();
    tokio::io::copy(&mut src, &mut *recv).await.unwrap();
    b.install_snapshot(&snap.meta, recv).await.unwrap();

    let reference = {
        let dir = tempfile::tempdir().unwrap();
        let mut r = open(dir.path(), history_opener());
        r.apply(workload()).await.unwrap();
        (contents(&r.reader().db()), r.reader().state())
    };
    assert_eq!(contents(&b.reader().db()), reference.0);
    assert_eq!(b.reader().state(), reference.1);
    assert_eq!(b.reader().db().get(user_key("stale")).unwrap(), None);
    assert_eq!(
        b.get_current_snapshot().await.unwrap().unwrap().meta,
        snap.meta
    );
    drop(b);
    // After a restart the installed machine is still there.
    let b = open(b_dir.path(), history_opener());
    assert_eq!(contents(&b.reader().db()), reference.0);
}

#[tokio::test]
async fn a_machine_behind_its_snapshot_installs_it_at_open() {
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = open(a_dir.path(), default_opener());
    a.apply(workload()).await.unwrap();
    let snap = a
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .unwrap();
    let path = snap.snapshot.path().to_path_buf();
    drop(open(b_dir.path(), default_opener()));
    // A crash after the snapshot file was published but before the machine switched.
    std::fs::copy(
        &path,
        b_dir
            .path()
            .join("snapshots")
            .join(path.file_name().unwrap()),
    )
    .unwrap();
    let mut b = open(b_dir.path(), default_opener());
    let (applied, membership) = b.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(39)));
    assert_eq!(membership, snap.meta.last_membership);
    assert_eq!(contents(&b.reader().db()), contents(&a.reader().db()));
}
