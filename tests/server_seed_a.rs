//! Seed A's HTTP API on the server: `/put`, `/batchput`, `/get`, `/range`, `/delete`,
//! `/raft/status`, with the exact bodies and status codes.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use serde_json::json;
use server_support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_get_delete() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;

    let r = s
        .post("/put", r#"{"key": "user:1", "value": "Alice"}"#)
        .await;
    assert_eq!((r.status, r.json), (200, json!({"status": "ok"})));
    let r = s.get("/get?key=user:1").await;
    assert_eq!(
        (r.status, r.json),
        (200, json!({"key": "user:1", "value": "Alice"}))
    );

    // overwrite, empty string values, keys that need escaping
    s.post("/put", r#"{"key": "user:1", "value": "Alicia"}"#)
        .await;
    s.post("/put", r#"{"key": "a b/c?d&e", "value": ""}"#).await;
    assert_eq!(s.get("/get?key=user:1").await.json["value"], "Alicia");
    let r = s.get("/get?key=a%20b%2Fc%3Fd%26e").await;
    assert_eq!(
        (r.status, r.json),
        (200, json!({"key": "a b/c?d&e", "value": ""}))
    );
    let r = s.get("/get?key=%E2%9C%93").await;
    assert_eq!((r.status, r.json), (404, json!({"error": "Key not found"})));

    let r = s.delete("/delete?key=user:1").await;
    assert_eq!((r.status, r.json), (200, json!({"status": "deleted"})));
    assert_eq!(s.get("/get?key=user:1").await.status, 404);
    // deleting a key that never existed is fine too
    let r = s.delete("/delete?key=never").await;
    assert_eq!((r.status, r.json), (200, json!({"status": "deleted"})));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batchput_is_one_atomic_batch() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let before = s.state.db().last_seqno();
    let r = s
        .post(
            "/batchput",
            r#"{"items": [{"key": "user:2", "value": "Bob"}, {"key": "user:3", "value": "Charlie"},
                          {"key": "user:2", "value": "Bobby"}]}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json),
        (200, json!({"status": "ok", "count": 3}))
    );
    assert_eq!(s.get("/get?key=user:2").await.json["value"], "Bobby");
    assert_eq!(s.get("/get?key=user:3").await.json["value"], "Charlie");
    // one batch: the three puts are consecutive writes, and the repeated key counted twice
    assert_eq!(s.state.db().last_seqno().get(), before.get() + 3);
    assert_eq!(s.get("/key/user:2").await.json["version"], 2);

    // a bad item rejects the whole batch: nothing of it is written
    let r = s
        .post(
            "/batchput",
            r#"{"items": [{"key": "user:4", "value": "Dan"}, {"key": "user:5", "value": 5}]}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(r.json["error"].as_str().unwrap().contains("items[1]"));
    assert_eq!(s.get("/get?key=user:4").await.status, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn range_bounds_and_limits() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let items: Vec<String> = (0..150)
        .map(|i| format!(r#"{{"key": "k{i:03}", "value": "v{i}"}}"#))
        .collect();
    s.post(
        "/batchput",
        &format!(r#"{{"items": [{}]}}"#, items.join(",")),
    )
    .await;
    s.post("/put", r#"{"key": "other", "value": "x"}"#).await;
    s.delete("/delete?key=k005").await;

    // start inclusive, end exclusive, deleted keys skipped
    let r = s.get("/range?start=k003&end=k008").await;
    assert_eq!(r.status, 200);
    let keys: Vec<&str> = r.json["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["k003", "k004", "k006", "k007"]);
    assert_eq!(r.json["count"], 4);
    assert_eq!(r.json["items"][0], json!({"key": "k003", "value": "v3"}));

    // default limit 100; explicit limits; no end = no upper bound
    let r = s.get("/range?start=k").await;
    assert_eq!(r.json["count"], 100);
    let r = s.get("/range?start=k140").await;
    let last = r.json["items"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["key"], "other");
    assert_eq!(s.get("/range?start=k&limit=7").await.json["count"], 7);
    let r = s.get("/range?start=k&limit=0").await;
    assert_eq!((r.status, r.json), (200, json!({"items": [], "count": 0})));
    // prefix scan in seed A's README style, and an empty start
    assert_eq!(
        s.get("/range?start=k&end=k~&limit=1000").await.json["count"],
        149
    );
    assert_eq!(s.get("/range?start=&limit=1000").await.json["count"], 150);
    // an end at or before the start is an empty range
    assert_eq!(s.get("/range?start=k9&end=k1").await.json["count"], 0);
    let r = s.get("/range?end=k1").await;
    assert_eq!(
        (r.status, r.json),
        (400, json!({"error": "Missing start key"}))
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raft_status_is_standalone() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let r = s.get("/raft/status").await;
    assert_eq!((r.status, r.json), (200, json!({"mode": "standalone"})));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_the_address_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    // every 127.x address is loopback: a server bound to all interfaces would report 0.0.0.0
    cfg.host = "127.0.0.2".into();
    cfg.port = 0;
    let listener = strata::server::bind(&cfg).await.unwrap();
    let addr = listener.local_addr().unwrap();
    assert_eq!(addr.ip().to_string(), "127.0.0.2");
    assert_ne!(addr.port(), 0);
    cfg.host = "localhost".into();
    let listener = strata::server::bind(&cfg).await.unwrap();
    assert!(listener.local_addr().unwrap().ip().is_loopback());
}
