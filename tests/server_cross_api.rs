//! Both APIs over one store: values written through one read back through the other, per-key
//! versions count writes from either side, and server records never show as user keys.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use serde_json::json;
use server_support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writes_read_through_b_and_back() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;

    s.post("/put", r#"{"key": "user:1", "value": "Alice"}"#)
        .await;
    let r = s.get("/key/user:1").await;
    assert_eq!(
        r.json,
        json!({"key": "user:1", "value": "Alice", "version": 1})
    );
    // seed B's write is version 2 and seed A sees it; seed A's next write is version 3
    let r = s.put("/key/user:1", r#"{"value": "Alicia"}"#).await;
    assert_eq!(r.json["version"], 2);
    assert_eq!(s.get("/get?key=user:1").await.json["value"], "Alicia");
    s.post("/put", r#"{"key": "user:1", "value": "Al"}"#).await;
    let r = s.get("/key/user:1/history").await;
    assert_eq!(r.json["versions"], json!([1, 2, 3]));
    assert_eq!(r.json["history"][2], json!({"version": 3, "value": "Al"}));

    // batch writes count too
    s.post(
        "/batchput",
        r#"{"items": [{"key": "user:1", "value": "x"}, {"key": "user:2", "value": "y"}]}"#,
    )
    .await;
    assert_eq!(s.get("/key/user:1").await.json["version"], 4);
    assert_eq!(s.get("/key/user:2").await.json["version"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn b_values_read_through_a_as_strings() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.put("/key/n", r#"{"value": 42}"#).await;
    s.put("/key/o", r#"{"value": {"a": [1, true]}}"#).await;
    s.put("/key/s", r#"{"value": "plain"}"#).await;
    s.put("/key/z", r#"{"value": null}"#).await;
    assert_eq!(s.get("/get?key=n").await.json["value"], "42");
    assert_eq!(s.get("/get?key=o").await.json["value"], r#"{"a":[1,true]}"#);
    assert_eq!(s.get("/get?key=s").await.json["value"], "plain");
    assert_eq!(s.get("/get?key=z").await.json["value"], "null");
    let r = s.get("/range?start=").await;
    assert_eq!(
        r.json,
        json!({"items": [
            {"key": "n", "value": "42"},
            {"key": "o", "value": r#"{"a":[1,true]}"#},
            {"key": "s", "value": "plain"},
            {"key": "z", "value": "null"}], "count": 4})
    );
    // a seed A overwrite of a JSON value is a string from then on
    s.post("/put", r#"{"key": "n", "value": "43"}"#).await;
    let r = s.get("/key/n").await;
    assert_eq!(r.json, json!({"key": "n", "value": "43", "version": 2}));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletes_from_either_side_end_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.put("/key/k", r#"{"value": "v1"}"#).await;
    s.put("/key/k", r#"{"value": "v2"}"#).await;
    s.delete("/delete?key=k").await;
    assert_eq!(s.get("/key/k").await.status, 404);
    assert_eq!(s.get("/key/k/history").await.status, 404);
    s.post("/put", r#"{"key": "k", "value": "again"}"#).await;
    assert_eq!(s.get("/key/k").await.json["version"], 1);
    s.delete("/key/k").await;
    assert_eq!(s.get("/get?key=k").await.status, 404);
    assert_eq!(s.get("/range?start=").await.json["count"], 0);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_records_stay_out_of_listings() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.put("/key/a?client_id=c&request_id=1", r#"{"value": 1}"#)
        .await;
    s.delete("/key/a?client_id=c&request_id=2").await;
    s.put("/key/b?client_id=c&request_id=3", r#"{"value": 2}"#)
        .await;
    // the records exist in the store...
    assert!(s.state.db().iter().count() > 1);
    // ...but no listing shows them
    assert_eq!(
        s.get("/keys").await.json,
        json!({"keys": ["b"], "count": 1, "next_start_after": null})
    );
    let r = s.get("/range?start=&limit=1000").await;
    assert_eq!(
        r.json,
        json!({"items": [{"key": "b", "value": "2"}], "count": 1})
    );
    assert_eq!(s.get("/key/b/history").await.json["versions"], json!([1]));
    s.stop().await;
}
