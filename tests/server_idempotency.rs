//! Idempotent receiver: retried requests with `client_id` and `request_id` are answered from
//! durable records (same status and body) and applied once, also across a restart;
//! records expire; `/deduplication_stats` and `/request_status` report them.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::json;
use server_support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_are_answered_from_the_record_and_applied_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let ids = "client_id=client1&request_id=req123";

    let first = s
        .put(&format!("/key/testkey?{ids}"), r#"{"value": "testvalue"}"#)
        .await;
    assert_eq!(first.status, 200);
    assert_eq!(first.json["version"], 1);
    let seq = s.state.db().last_seqno();
    let again = s
        .put(&format!("/key/testkey?{ids}"), r#"{"value": "testvalue"}"#)
        .await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(s.state.db().last_seqno(), seq, "nothing was written");
    assert_eq!(s.get("/key/testkey").await.json["version"], 1);

    // the same ids with another operation are a new request
    let del = s.delete(&format!("/key/testkey?{ids}")).await;
    assert_eq!(del.status, 200);
    assert_eq!(s.get("/key/testkey").await.status, 404);
    // ... and with another key too (the record is keyed by the key as well)
    let other = s
        .put(&format!("/key/otherkey?{ids}"), r#"{"value": "x"}"#)
        .await;
    assert_eq!(
        (other.status, &other.json["key"]),
        (200, &json!("otherkey"))
    );

    let r = s.get("/deduplication_stats").await;
    assert_eq!(
        r.json,
        json!({
            "service_name": "test-node",
            "current_cache_size": 3,
            "unique_request_ids": 1,
            "total_client_count": 1,
            "total_requests_cached": 3,
            "total_duplicates_detected": 1,
            "same_operation_duplicates": 1,
            "different_operation_duplicates": 2,
            "total_cache_cleanups": 0
        })
    );

    let r = s
        .get("/request_status?client_id=client1&request_id=req123&operation=SET&key=testkey")
        .await;
    assert_eq!(
        r.json,
        json!({"processed": true, "operation": "SET", "key": "testkey", "status_code": 200,
               "result": first.json})
    );
    let r = s
        .get("/request_status?client_id=client1&request_id=req123&operation=OperationType.DELETE")
        .await;
    assert_eq!(r.json["result"], del.json);
    let r = s
        .get("/request_status?client_id=client1&request_id=nope")
        .await;
    assert_eq!(r.json, json!({"processed": false}));
    let r = s.get("/request_status?client_id=client1").await;
    assert_eq!(r.status, 422);
    let r = s
        .get("/request_status?client_id=c&request_id=r&operation=JUMP")
        .await;
    assert_eq!(r.status, 422);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_requests_replay_their_status() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    // a delete of a missing key: 404, recorded
    let d = s.delete("/key/k?client_id=c&request_id=d1").await;
    assert_eq!(d.status, 404);
    s.put("/key/k", r#"{"value": 1}"#).await;
    let again = s.delete("/key/k?client_id=c&request_id=d1").await;
    assert_eq!((again.status, &again.body), (404, &d.body));
    assert_eq!(
        s.get("/key/k").await.status,
        200,
        "the replay deleted nothing"
    );

    // a conflict: 409, recorded, and replayed as 409 even after the conflict is gone
    s.put("/key/k", r#"{"value": 2}"#).await;
    let c = s
        .put(
            "/key/k?client_id=c&request_id=p1",
            r#"{"value": 3, "version": 1}"#,
        )
        .await;
    assert_eq!(c.status, 409);
    assert_eq!(c.json["current_version"], 2);
    s.delete("/key/k").await;
    let again = s
        .put(
            "/key/k?client_id=c&request_id=p1",
            r#"{"value": 3, "version": 1}"#,
        )
        .await;
    assert_eq!((again.status, &again.body), (409, &c.body));
    assert_eq!(s.get("/key/k").await.status, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let put = s
        .put(
            "/key/acct?client_id=app&request_id=r-1",
            r#"{"value": {"balance": 10}}"#,
        )
        .await;
    let del = s.delete("/key/gone?client_id=app&request_id=r-2").await;
    assert_eq!((put.status, del.status), (200, 404));
    s.stop().await;

    // a new server over the reopened store
    let s = TestServer::start(dir.path()).await;
    let seq = s.state.db().last_seqno();
    let replay = s
        .put(
            "/key/acct?client_id=app&request_id=r-1",
            r#"{"value": {"balance": 10}}"#,
        )
        .await;
    assert_eq!((replay.status, &replay.body), (200, &put.body));
    let replay = s.delete("/key/gone?client_id=app&request_id=r-2").await;
    assert_eq!((replay.status, &replay.body), (404, &del.body));
    assert_eq!(s.state.db().last_seqno(), seq, "applied once");
    let r = s.get("/key/acct").await;
    assert_eq!(
        r.json,
        json!({"key": "acct", "value": {"balance": 10}, "version": 1})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_copies_of_one_request_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let client = s.client.clone();
        let url = format!("{}/key/hot?client_id=c&request_id=same", s.base);
        tasks.push(tokio::spawn(async move {
            let body = Some(br#"{"value": "once"}"#.to_vec());
            let (status, _, body) = server_support::request(&client, Method::PUT, &url, body).await;
            (status, body)
        }));
    }
    let mut bodies = Vec::new();
    for t in tasks {
        bodies.push(t.await.unwrap());
    }
    assert!(bodies.iter().all(|b| *b == bodies[0] && b.0 == 200));
    assert_eq!(s.get("/key/hot").await.json["version"], 1);
    let r = s.get("/deduplication_stats").await;
    assert_eq!(r.json["same_operation_duplicates"], 15);
    assert_eq!(r.json["total_requests_cached"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_expire_and_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.dedup_expiry = Duration::from_millis(300);
    let s = TestServer::start_with(cfg).await;
    let ids = "client_id=c&request_id=r";
    s.put(&format!("/key/k?{ids}"), r#"{"value": 1}"#).await;
    assert_eq!(
        s.put(&format!("/key/k?{ids}"), r#"{"value": 1}"#)
            .await
            .json["version"],
        1
    );
    tokio::time::sleep(Duration::from_millis(350)).await;
    // expired: the same request is applied again
    let r = s.put(&format!("/key/k?{ids}"), r#"{"value": 1}"#).await;
    assert_eq!(r.json["version"], 2);

    // the sweep deletes expired records from the store
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let st = s.get("/deduplication_stats").await.json;
        let records = s.state.db().prefix([b'r']).count();
        if st["total_cache_cleanups"].as_u64().unwrap() >= 1 && records == 0 {
            assert_eq!(st["current_cache_size"], 0);
            break;
        }
        assert!(Instant::now() < deadline, "records were not swept: {st}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(s.get("/key/k").await.json["version"], 2);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deduplication_stats_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let ids = "client_id=c1&request_id=r1";
    for _ in 0..3 {
        assert_eq!(
            s.put(&format!("/key/a?{ids}"), r#"{"value": 1}"#)
                .await
                .status,
            200
        );
    }
    assert_eq!(s.delete(&format!("/key/a?{ids}")).await.status, 200);
    assert_eq!(
        s.put("/key/b?client_id=c2&request_id=r1", r#"{"value": 2}"#)
            .await
            .status,
        200
    );
    let before = s.get("/deduplication_stats").await.json;
    assert_eq!(
        before,
        json!({
            "service_name": "test-node",
            "current_cache_size": 3,
            "unique_request_ids": 1,
            "total_client_count": 2,
            "total_requests_cached": 3,
            "total_duplicates_detected": 2,
            "same_operation_duplicates": 2,
            "different_operation_duplicates": 1,
            "total_cache_cleanups": 0
        })
    );
    s.stop().await;
    let s = TestServer::start(dir.path()).await;
    assert_eq!(s.get("/deduplication_stats").await.json, before);
    // and a retry after the restart is still answered from its record
    s.put(&format!("/key/a?{ids}"), r#"{"value": 1}"#).await;
    let after = s.get("/deduplication_stats").await.json;
    assert_eq!(after["same_operation_duplicates"], 3);
    assert_eq!(after["current_cache_size"], 3);
    s.stop().await;
}
