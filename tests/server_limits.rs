//! Request limits under hostile or heavy load: an oversize `Content-Length` is refused before
//! its body is read, bodies in flight share one byte budget, a flood past the queue bounds
//! gets fast 503s with `Retry-After` while `/health` keeps answering, and errors the HTTP
//! stack answers itself (bad request line, raw non-ASCII target, huge URL) carry JSON.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use server_support::{TestServer, parse_answer, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversize_content_length_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let start = Instant::now();
    let (bytes, closed) = raw_exchange(
        s.addr(),
        b"POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nab",
        Duration::from_secs(5),
    )
    .await;
    assert!(closed, "the connection is closed");
    let a = parse_answer(&bytes).expect("an answer");
    assert_eq!(a.status, 413);
    assert!(a.head.contains("content-type: application/json"));
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("exceeds the limit")
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_past_the_global_budget_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.max_body_bytes = 32 << 10;
    cfg.max_inflight_body_bytes = 64 << 10;
    cfg.body_read_timeout = Duration::from_secs(10);
    let s = TestServer::start_with(cfg).await;
    // two uploads of the largest size hold the whole budget while their bodies trickle
    let value = "v".repeat((32 << 10) - 40);
    let body = format!(r#"{{"key": "big", "value": "{value}"}}"#);
    assert!(body.len() <= 32 << 10);
    let mut uploads = Vec::new();
    for _ in 0..2 {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        let head = format!(
            "POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).await.unwrap();
        c.write_all(&body.as_bytes()[..10]).await.unwrap();
        uploads.push(c);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let start = Instant::now();
    let r = s.post("/put", r#"{"key": "small", "value": "x"}"#).await;
    assert_eq!(r.status, 503, "{:?}", r.json);
    assert!(start.elapsed() < Duration::from_secs(1));
    // requests without a body are not held back
    assert_eq!(s.get("/health").await.status, 200);
    // the uploads finish and free the budget
    for c in &mut uploads {
        c.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(parse_answer(&buf[..n]).unwrap().status, 200);
    }
    let r = s.post("/put", r#"{"key": "small", "value": "x"}"#).await;
    assert_eq!(r.status, 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_answer_carries_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.max_body_bytes = 4 << 10;
    cfg.max_inflight_body_bytes = 4 << 10;
    cfg.body_read_timeout = Duration::from_secs(10);
    let s = TestServer::start_with(cfg).await;
    let mut hog = TcpStream::connect(s.addr()).await.unwrap();
    hog.write_all(b"POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 4000\r\n\r\n{")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (bytes, _) = raw_exchange(
        s.addr(),
        b"POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}",
        Duration::from_secs(2),
    )
    .await;
    let a = parse_answer(&bytes).expect("an answer");
    assert_eq!(a.status, 503);
    assert!(a.head.contains("retry-after: 1"), "{}", a.head);
    drop(hog);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protocol_errors_are_answered_with_json() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let huge_query = format!(
        "GET /get?key={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "k".repeat(1 << 20)
    );
    let huge_url = format!(
        "GET /get?key={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "k".repeat(8 << 20)
    );
    let many_headers = format!(
        "GET /health HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        (
            "raw 0xff in the path",
            b"GET /ke\xffy HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        ("malformed request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "bad header",
            b"GET /health HTTP/1.1\r\nHo st: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "1 MiB key in the query string",
            huge_query.into_bytes(),
            431,
        ),
        ("8 MiB URL", huge_url.into_bytes(), 431),
        ("too many headers", many_headers.into_bytes(), 431),
    ];
    for (what, bytes, status) in cases {
        let (read, closed) = raw_exchange(s.addr(), &bytes, Duration::from_secs(5)).await;
        assert!(closed, "{what}: connection left open");
        let a = parse_answer(&read)
            .unwrap_or_else(|| panic!("{what}: no answer: {:?}", String::from_utf8_lossy(&read)));
        assert_eq!(a.status, status, "{what}");
        assert!(a.head.contains("content-type: application/json"), "{what}");
        let v = a.json();
        assert!(
            v["error"].is_string() && v["detail"].is_string(),
            "{what}: {v}"
        );
    }
    assert_eq!(s.get("/health").await.status, 200);
    s.stop().await;
}

/// Fires `n` requests at once; returns (status, latency) of each, and every `/health`
/// status seen while they ran.
async fn flood(
    s: &TestServer,
    n: usize,
    make: impl Fn(usize) -> (Method, String, Option<Vec<u8>>),
) -> (Vec<(u16, bool, Duration)>, Vec<u16>) {
    let client = Arc::new(s.client.clone());
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let (method, path, body) = make(i);
        let url = format!("{}{path}", s.base);
        let client = Arc::clone(&client);
        tasks.push(tokio::spawn(async move {
            let mut req = hyper::Request::builder().method(method).uri(url);
            if body.is_some() {
                req = req.header("content-type", "application/json");
            }
            let req = req
                .body(http_body_util::Full::new(hyper::body::Bytes::from(
                    body.unwrap_or_default(),
                )))
                .unwrap();
            let t = Instant::now();
            let resp = client.request(req).await.unwrap();
            let retry = resp.headers().contains_key("retry-after");
            let status = resp.status().as_u16();
            let _ = http_body_util::BodyExt::collect(resp.into_body()).await;
            (status, retry, t.elapsed())
        }));
    }
    let mut health = Vec::new();
    while tasks.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        health.push(s.get("/health").await.status);
        assert!(t.elapsed() < Duration::from_secs(2), "/health was slow");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    (out, health)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_flood_past_the_queue_bound_gets_fast_503s_while_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.max_queued_writes = 2;
    let s = TestServer::start_with(cfg).await;
    let (answers, health) = flood(&s, 400, |i| {
        let body = format!(r#"{{"key": "flood{i}", "value": "{}"}}"#, "v".repeat(200));
        (Method::POST, "/put".into(), Some(body.into_bytes()))
    })
    .await;
    check_flood(&answers, &health);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_flood_past_the_queue_bound_gets_fast_503s_while_health_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.max_queued_reads = 2;
    cfg.reader_threads = 1;
    let s = TestServer::start_with(cfg).await;
    let items: Vec<String> = (0..2000)
        .map(|i| format!(r#"{{"key": "r{i:05}", "value": "{}"}}"#, "v".repeat(50)))
        .collect();
    let r = s
        .post(
            "/batchput",
            &format!(r#"{{"items": [{}]}}"#, items.join(",")),
        )
        .await;
    assert_eq!(r.status, 200);
    let (answers, health) = flood(&s, 400, |_| {
        (Method::GET, "/range?start=r&limit=2000".into(), None)
    })
    .await;
    check_flood(&answers, &health);
    s.stop().await;
}

fn check_flood(answers: &[(u16, bool, Duration)], health: &[u16]) {
    let shed: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert!(
        answers.iter().all(|a| a.0 == 200 || a.0 == 503),
        "statuses: {:?}",
        answers.iter().map(|a| a.0).collect::<Vec<_>>()
    );
    assert!(!shed.is_empty(), "no request was shed");
    assert!(answers.iter().any(|a| a.0 == 200), "nothing was served");
    assert!(shed.iter().all(|a| a.1), "a 503 without Retry-After");
    let slowest = shed.iter().map(|a| a.2).max().unwrap();
    assert!(slowest < Duration::from_secs(2), "a 503 took {slowest:?}");
    assert!(!health.is_empty() && health.iter().all(|h| *h == 200));
}
