//! Seed B's HTTP API on the server: versioned `/key/{key}`, history and versions, listings,
//! WAL segments, cluster status, compaction, plus `/health` and `/metrics`.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use serde_json::json;
use server_support::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_count_per_key_and_ids_are_sequence_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;

    let r = s
        .put("/key/config", r#"{"value": "initial-setting"}"#)
        .await;
    assert_eq!(r.status, 200);
    let id1 = r.json["id"].as_u64().unwrap();
    assert_eq!(
        r.json,
        json!({"status": "ok", "id": id1, "key": "config", "version": 1})
    );
    // other keys get their own version counters but share the id sequence
    let other = s.put("/key/other", r#"{"value": true}"#).await;
    assert_eq!(other.json["version"], 1);
    let r = s
        .put("/key/config", r#"{"value": "updated-setting"}"#)
        .await;
    assert_eq!(r.json["version"], 2);
    let id2 = r.json["id"].as_u64().unwrap();
    assert!(id2 > other.json["id"].as_u64().unwrap() && id1 < id2);
    assert_eq!(s.state.db().last_seqno().get(), id2);

    let r = s.get("/key/config").await;
    assert_eq!(
        (r.status, r.json),
        (
            200,
            json!({"key": "config", "value": "updated-setting", "version": 2})
        )
    );
    let r = s.get("/key/config?version=1").await;
    assert_eq!(
        r.json,
        json!({"key": "config", "value": "initial-setting", "version": 1})
    );
    let r = s.get("/key/config?version=3").await;
    assert_eq!(
        (r.status, r.json),
        (
            404,
            json!({"detail": "Key not found or version 3 not available: config"})
        )
    );
    let r = s.get("/key/config?version=0").await;
    assert_eq!(
        (r.status, r.json),
        (404, json!({"detail": "Key not found: config"}))
    );
    let r = s.get("/key/missing").await;
    assert_eq!(
        (r.status, r.json),
        (404, json!({"detail": "Key not found: missing"}))
    );

    let r = s.get("/key/config/history").await;
    assert_eq!(
        r.json,
        json!({"key": "config", "versions": [1, 2], "history": [
            {"version": 1, "value": "initial-setting"},
            {"version": 2, "value": "updated-setting"}]})
    );
    let r = s.get("/key/config/versions").await;
    assert_eq!(
        r.json,
        json!({"key": "config", "versions": [1, 2], "latest_version": 2})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_versions_conflict_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.put("/key/config", r#"{"value": "a"}"#).await;
    s.put("/key/config", r#"{"value": "b"}"#).await;
    let seq = s.state.db().last_seqno();

    for stale in [1, 2, -4] {
        let r = s
            .put(
                "/key/config",
                &format!(r#"{{"value": "c", "version": {stale}}}"#),
            )
            .await;
        let msg = format!("Version conflict: provided version {stale} is outdated");
        assert_eq!(
            (r.status, r.json),
            (
                409,
                json!({"detail": msg, "status": "error", "message": msg, "current_version": 2})
            )
        );
    }
    assert_eq!(s.state.db().last_seqno(), seq);
    assert_eq!(s.get("/key/config").await.json["value"], "b");

    // a newer version is accepted (the result is still current + 1); 0 means "no check"
    let r = s
        .put("/key/config", r#"{"value": "c", "version": 9}"#)
        .await;
    assert_eq!((r.status, r.json["version"].clone()), (200, json!(3)));
    let r = s
        .put("/key/config", r#"{"value": "d", "version": 0}"#)
        .await;
    assert_eq!(r.json["version"], 4);
    // a string of digits is taken as the number, as seed B does
    let r = s
        .put("/key/config", r#"{"value": "e", "version": "4"}"#)
        .await;
    assert_eq!(r.status, 409);
    // on a new key, a named version above 1 becomes the first version
    let r = s.put("/key/fresh", r#"{"value": 1, "version": 5}"#).await;
    assert_eq!(r.json["version"], 5);
    assert_eq!(
        s.put("/key/fresh", r#"{"value": 2}"#).await.json["version"],
        6
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_keep_their_json_type() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    for v in [
        json!("text"),
        json!(""),
        json!(42),
        json!(-1.5),
        json!(true),
        json!(null),
        json!([1, "two", {"three": 3}]),
        json!({"nested": {"list": [true, null]}, "s": "\u{1F600}"}),
    ] {
        let body = json!({"value": v}).to_string();
        assert_eq!(s.put("/key/v", &body).await.status, 200, "{body}");
        let r = s.get("/key/v").await;
        assert_eq!((r.status, &r.json["value"]), (200, &v));
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_ends_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    for v in ["a", "b", "c"] {
        s.put("/key/k", &format!(r#"{{"value": "{v}"}}"#)).await;
    }
    let r = s.delete("/key/k").await;
    assert_eq!(r.status, 200);
    let id = r.json["id"].as_u64().unwrap();
    assert_eq!(r.json, json!({"status": "ok", "id": id}));
    assert_eq!(s.state.db().last_seqno().get(), id);
    for path in [
        "/key/k",
        "/key/k/history",
        "/key/k/versions",
        "/key/k?version=1",
    ] {
        assert_eq!(s.get(path).await.status, 404, "{path}");
    }
    let r = s.delete("/key/k").await;
    assert_eq!(
        (r.status, r.json),
        (404, json!({"detail": "Key not found: k"}))
    );

    // a new life starts at version 1 and sees none of the old one
    let r = s.put("/key/k", r#"{"value": "new"}"#).await;
    assert_eq!(r.json["version"], 1);
    let r = s.get("/key/k/history").await;
    assert_eq!(
        r.json,
        json!({"key": "k", "versions": [1], "history": [{"version": 1, "value": "new"}]})
    );
    let r = s.get("/key/k?version=2").await;
    assert_eq!(r.status, 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_segments_and_cluster_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.max_segment_size = 64 << 10;
    let s = TestServer::start_with(cfg).await;
    for k in ["b", "a", "c/d", "e"] {
        s.put(
            &format!("/key/{}", k.replace('/', "%2F")),
            r#"{"value": 1}"#,
        )
        .await;
    }
    s.delete("/key/e").await;
    let r = s.get("/keys").await;
    assert_eq!(
        r.json,
        json!({"keys": ["a", "b", "c/d"], "count": 3, "next_start_after": null})
    );
    // %2F stays inside the key: it is not a path separator
    assert_eq!(s.get("/key/c%2Fd").await.json["key"], "c/d");

    let r = s.get("/segments").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["max_segment_size"], 64 << 10);
    let segs = r.json["segments"].as_array().unwrap();
    assert_eq!(r.json["total_segments"], segs.len());
    assert_eq!(segs.iter().filter(|g| g["is_active"] == true).count(), 1);
    assert!(
        segs.iter()
            .all(|g| g["path"].is_string() && g["size"].is_u64())
    );

    let r = s.get("/cluster_status").await;
    assert_eq!(
        r.json,
        json!({
            "leader": {"id": "test-node", "url": s.base, "status": "healthy"},
            "followers": {},
            "heartbeat_interval": 10
        })
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_endpoints_report_real_runs() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    for i in 0..20 {
        s.put("/key/k", &format!(r#"{{"value": {i}}}"#)).await;
    }
    s.state.db().flush().unwrap();
    for i in 0..20 {
        s.put(&format!("/key/k{i}"), r#"{"value": 1}"#).await;
    }
    let r = s.get("/compaction/status").await;
    assert_eq!(r.json["enabled"], true);
    assert_eq!(r.json["compaction_interval_seconds"], 3600);
    assert_eq!(r.json["min_compaction_interval_seconds"], 600);
    assert_eq!(r.json["last_compaction"], json!(null));
    assert_eq!(r.json["compaction_running"], false);
    assert_eq!(r.json["compaction_current"], json!(null));

    // the first run is not too recent; it reads the tables (the memtable is flushed first)
    let r = s.post("/compaction/run", "").await;
    assert_eq!(r.json["status"], "success");
    assert!(
        r.json["segments_compacted"].as_u64().unwrap() >= 2,
        "{}",
        r.json
    );
    assert!(r.json["entries_removed"].is_u64());
    // an unforced run right after is skipped, a forced one runs
    let r = s.post("/compaction/run?force=false", "").await;
    assert_eq!(
        r.json,
        json!({"status": "success", "segments_compacted": 0, "entries_removed": 0})
    );
    let r = s.post("/compaction/run?force=true", "").await;
    assert!(r.json["segments_compacted"].as_u64().unwrap() >= 1);

    let r = s.get("/compaction/status").await;
    let history = r.json["compaction_history"].as_array().unwrap();
    let manual: Vec<_> = history.iter().filter(|h| h["reason"] == "manual").collect();
    assert_eq!(manual.len(), 2);
    assert!(r.json["last_compaction"].is_string());
    assert_eq!(r.json["last_compaction"], manual[1]["timestamp"]);
    assert!(manual[0]["duration_seconds"].is_f64());
    // data is intact and the history endpoints still see every retained version
    assert_eq!(s.get("/key/k").await.json["value"], 19);
    assert_eq!(
        s.get("/key/k/versions").await.json["versions"]
            .as_array()
            .unwrap()
            .len(),
        20
    );

    let r = s
        .post("/compaction/configure?enabled=false&interval=10", "")
        .await;
    assert_eq!(
        r.json,
        json!({"status": "success", "changes": {"enabled": false, "interval": 60}})
    );
    let r = s.post("/compaction/configure", "").await;
    assert_eq!(r.json, json!({"status": "success", "changes": {}}));
    let r = s.get("/compaction/status").await;
    assert_eq!(r.json["enabled"], false);
    assert_eq!(r.json["compaction_interval_seconds"], 60);
    let st = s.state.db().compaction_status();
    assert!(!st.periodic.enabled);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    s.post("/put", r#"{"key": "a", "value": "1"}"#).await;
    s.get("/key/a").await;
    s.get("/key/zzz").await;
    let r = s.get("/health").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["status"], "ok");
    assert_eq!(r.json["node_id"], "test-node");
    assert_eq!(r.json["mode"], "standalone");
    assert_eq!(r.json["last_seqno"], 1);

    let (status, ctype, text) = s.text("/metrics").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("application/openmetrics-text"), "{ctype}");
    for line in [
        r#"http_requests_total{route="/put",method="POST",status="200"} 1"#,
        r#"http_requests_total{route="/key/{key}",method="GET",status="200"} 1"#,
        r#"http_requests_total{route="/key/{key}",method="GET",status="404"} 1"#,
        r#"http_request_duration_seconds_count{route="/key/{key}"} 2"#,
        "strata_puts_total 1",
        "strata_last_seqno 1",
        "strata_compactions_total 0",
        "strata_compaction_running 0",
        "strata_compaction_current_output_bytes 0",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(text.contains("strata_wal_syncs_total"));
    assert!(text.trim_end().ends_with("# EOF"));
    s.stop().await;
}
