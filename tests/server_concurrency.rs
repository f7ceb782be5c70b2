//! Concurrent writes through the server: per-key versions stay exact when many clients write
//! one key at once, and version preconditions let exactly one of several racing writers win.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::collections::BTreeSet;

use hyper::Method;
use serde_json::Value;
use server_support::TestServer;

async fn put_many(
    s: &TestServer,
    tasks: usize,
    per_task: usize,
    path: &str,
    body: &str,
) -> Vec<(u16, Value)> {
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let client = s.client.clone();
        let url = format!("{}{path}", s.base);
        let body = body.to_string();
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            for _ in 0..per_task {
                let (status, _, b) = server_support::request(
                    &client,
                    Method::PUT,
                    &url,
                    Some(body.clone().into_bytes()),
                )
                .await;
                out.push((status, serde_json::from_slice::<Value>(&b).unwrap()));
            }
            out
        }));
    }
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.await.unwrap());
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_writers_to_one_key_get_distinct_versions() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let answers = put_many(&s, 32, 5, "/key/counter", r#"{"value": "x"}"#).await;
    assert!(answers.iter().all(|(st, _)| *st == 200));
    let versions: BTreeSet<u64> = answers
        .iter()
        .map(|(_, j)| j["version"].as_u64().unwrap())
        .collect();
    let ids: BTreeSet<u64> = answers
        .iter()
        .map(|(_, j)| j["id"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, (1..=160).collect::<BTreeSet<u64>>());
    assert_eq!(ids.len(), 160);
    // the version order follows the write order
    let mut by_id: Vec<(u64, u64)> = answers
        .iter()
        .map(|(_, j)| (j["id"].as_u64().unwrap(), j["version"].as_u64().unwrap()))
        .collect();
    by_id.sort_unstable();
    assert!(by_id.windows(2).all(|w| w[0].1 < w[1].1));
    let r = s.get("/key/counter/versions").await;
    assert_eq!(r.json["latest_version"], 160);
    // at least the newest 100 versions (the server's default history), contiguous
    let listed: Vec<u64> = r.json["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert!(listed.len() >= 100);
    assert!(listed.windows(2).all(|w| w[0] + 1 == w[1]));
    assert_eq!(listed.last(), Some(&160));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_of_many_conditional_creates_wins() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let answers = put_many(&s, 24, 1, "/key/lock", r#"{"value": "mine", "version": 1}"#).await;
    let won = answers.iter().filter(|(st, _)| *st == 200).count();
    let lost: Vec<_> = answers.iter().filter(|(st, _)| *st == 409).collect();
    assert_eq!((won, lost.len()), (1, 23));
    assert!(lost.iter().all(|(_, j)| j["current_version"] == 1));
    assert_eq!(s.get("/key/lock").await.json["version"], 1);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_many_keys_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let mut handles = Vec::new();
    for t in 0..16 {
        let client = s.client.clone();
        let base = s.base.clone();
        handles.push(tokio::spawn(async move {
            for i in 0..20 {
                let body = format!(r#"{{"key": "t{t:02}-{i:02}", "value": "{t}-{i}"}}"#);
                let (status, _, _) = server_support::request(
                    &client,
                    Method::POST,
                    &format!("{base}/put"),
                    Some(body.into_bytes()),
                )
                .await;
                assert_eq!(status, 200);
            }
        }));
    }
    for h in handles {
        h.await.unwrap();
    }
    let r = s.get("/range?start=t&limit=1000").await;
    assert_eq!(r.json["count"], 320);
    assert_eq!(r.json["items"][21]["value"], "1-1");
    let stats = s.state.db().stats();
    assert_eq!(stats.puts, 320);
    s.stop().await;
}
