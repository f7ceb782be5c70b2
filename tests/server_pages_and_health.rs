//! `GET /keys` answers in pages (limit, prefix, start-after cursor); `/health` and
//! `/cluster_status` tell the truth about a poisoned store; no 5xx body names a filesystem
//! path.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod server_support;

use std::sync::Arc;

use common::faultfs::{Fault, FaultFs, Op};
use serde_json::{Value, json};
use server_support::TestServer;
use strata::{Db, FileSystem, SyncMode};

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_come_in_pages() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.default_keys_page = 10;
    cfg.max_keys_page = 20;
    let s = TestServer::start_with(cfg).await;
    let mut all: Vec<String> = (0..25).map(|i| format!("a{i:02}")).collect();
    all.extend((0..5).map(|i| format!("b{i}")));
    let items: Vec<Value> = all
        .iter()
        .map(|k| json!({"key": k, "value": "v"}))
        .collect();
    let r = s
        .post("/batchput", &json!({"items": items}).to_string())
        .await;
    assert_eq!(r.status, 200);

    // default page size, then follow the cursor to the end
    let mut seen = Vec::new();
    let mut path = "/keys".to_string();
    loop {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200);
        let page = strings(&r.json["keys"]);
        assert!(page.len() <= 10);
        assert_eq!(r.json["count"], page.len());
        seen.extend(page);
        match r.json["next_start_after"].as_str() {
            Some(next) => path = format!("/keys?start_after={next}"),
            None => break,
        }
    }
    assert_eq!(seen, all);

    // prefix and limit
    let r = s.get("/keys?prefix=a&limit=7").await;
    assert_eq!(strings(&r.json["keys"]), all[..7].to_vec());
    assert_eq!(r.json["next_start_after"], "a06");
    let r = s.get("/keys?prefix=a&start_after=a20&limit=7").await;
    assert_eq!(strings(&r.json["keys"]), all[21..25].to_vec());
    assert_eq!(r.json["next_start_after"], Value::Null);
    let r = s.get("/keys?prefix=b").await;
    assert_eq!(strings(&r.json["keys"]), all[25..].to_vec());
    // a limit above the maximum is capped
    let r = s.get("/keys?limit=1000").await;
    assert_eq!(r.json["count"], 20);
    // bad limits are a 422
    for bad in ["0", "-1", "abc"] {
        let r = s.get(&format!("/keys?limit={bad}")).await;
        assert_eq!(r.status, 422, "limit={bad}");
        assert!(r.json["detail"].is_string());
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poisoned_store_makes_health_and_cluster_status_503_and_no_5xx_names_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let fs = FaultFs::new();
    let db = Db::builder(&path)
        .filesystem(Arc::clone(&fs) as Arc<dyn FileSystem>)
        .sync_mode(SyncMode::Always)
        .open()
        .unwrap();
    let mut cfg = server_support::config(&path);
    cfg.compaction_enabled = false;
    let s = TestServer::start_on(db, cfg).await;
    assert_eq!(s.get("/health").await.status, 200);
    assert_eq!(s.put("/key/a", r#"{"value": 1}"#).await.status, 200);

    // the next WAL sync fails: the write fails and the store is poisoned
    fs.fail(&[Op::Sync], "", 0, Fault::Eio);
    let path_text = path.display().to_string();
    let failed = s.put("/key/b", r#"{"value": 2}"#).await;
    assert!(failed.status >= 500, "{}", failed.status);
    let later = s.post("/put", r#"{"key": "c", "value": "3"}"#).await;
    assert_eq!(later.status, 503);

    let health = s.get("/health").await;
    assert_eq!(health.status, 503);
    assert_eq!(health.json["status"], "unavailable");
    let reason = health.json["reason"].as_str().unwrap();
    assert!(reason.contains("poisoned"), "{reason}");
    assert!(reason.contains("I/O error"), "{reason}");

    let cluster = s.get("/cluster_status").await;
    assert_eq!(cluster.status, 503);
    assert_eq!(cluster.json["leader"]["status"], "unhealthy");
    assert_eq!(cluster.json["leader"]["reason"], reason);

    for a in [&failed, &later, &health, &cluster] {
        let text = String::from_utf8_lossy(&a.body);
        assert!(
            !text.contains(&path_text) && !text.contains("/tmp"),
            "a 5xx body names a path: {text}"
        );
    }
    // reads still work
    assert_eq!(s.get("/key/a").await.status, 200);
    s.stop_without_close().await;
}
