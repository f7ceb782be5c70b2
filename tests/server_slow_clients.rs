//! Slow and idle clients cannot hold the server: a request head that trickles in, a body
//! that never finishes, an idle keep-alive connection and connections past the cap are all
//! dropped or refused in bounded time, and shutdown does not wait for a half-sent request.
//! Timeouts are set short so that each test takes well under a few seconds.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::time::{Duration, Instant};

use server_support::{TestServer, parse_answer, raw_exchange};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn quick(dir: &std::path::Path) -> strata::server::ServerConfig {
    let mut c = server_support::config(dir);
    c.header_read_timeout = Duration::from_millis(300);
    c.idle_timeout = Duration::from_millis(600);
    c.body_read_timeout = Duration::from_millis(300);
    c.shutdown_grace = Duration::from_millis(500);
    c
}

/// Reads until the server closes `s`; the time it took, or `None` if it stayed open past
/// `within`.
async fn closed_within(s: &mut TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut buf = [0u8; 1024];
    let read_to_close = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(within, read_to_close)
        .await
        .ok()
        .map(|()| start.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_slowly_is_dropped_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(quick(dir.path())).await;
    let mut slow = Vec::new();
    for _ in 0..50 {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        slow.push(c);
    }
    // each keeps sending a header line every 100 ms, which never completes the head
    let start = Instant::now();
    let mut dropped = 0;
    while start.elapsed() < Duration::from_secs(3) && dropped < slow.len() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        dropped = 0;
        for c in &mut slow {
            if c.write_all(b"X-Slow: 1\r\n").await.is_err() {
                dropped += 1;
                continue;
            }
            let mut b = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) =
                tokio::time::timeout(Duration::from_millis(1), c.read(&mut b)).await
            {
                dropped += 1;
            }
        }
        // the server keeps answering everyone else meanwhile
        assert_eq!(s.get("/health").await.status, 200);
    }
    assert_eq!(
        dropped,
        slow.len(),
        "slow clients still connected after 3 s"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "dropped before the timeout"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_is_closed_after_the_idle_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(quick(dir.path())).await;
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    // one full request on the connection, then silence
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert_eq!(parse_answer(&buf[..n]).unwrap().status, 200);
    let took = closed_within(&mut c, Duration::from_secs(3))
        .await
        .expect("the idle connection is closed");
    assert!(took >= Duration::from_millis(450), "closed after {took:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_finishes_gets_408_after_the_body_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start_with(quick(dir.path())).await;
    let start = Instant::now();
    let (bytes, closed) = raw_exchange(
        s.addr(),
        b"POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"key\":",
        Duration::from_secs(3),
    )
    .await;
    assert!(closed, "the connection is closed");
    let a = parse_answer(&bytes).expect("an answer");
    assert_eq!(a.status, 408);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("did not arrive")
    );
    assert!(start.elapsed() >= Duration::from_millis(250));
    assert_eq!(s.get("/get?key=k").await.status, 404, "nothing was written");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_cap_get_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(dir.path());
    cfg.max_connections = 4;
    cfg.idle_timeout = Duration::from_secs(5);
    let s = TestServer::start_with(cfg).await;
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut c = TcpStream::connect(s.addr()).await.unwrap();
        c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 4096];
        let n = c.read(&mut buf).await.unwrap();
        assert_eq!(parse_answer(&buf[..n]).unwrap().status, 200);
        held.push(c);
    }
    let (bytes, closed) = raw_exchange(
        s.addr(),
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(2),
    )
    .await;
    assert!(closed);
    let a = parse_answer(&bytes).expect("an answer");
    assert_eq!(a.status, 503);
    assert!(a.head.contains("retry-after: 1"));
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("too many connections")
    );
    // a freed slot is served again
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (bytes, _) = raw_exchange(
            s.addr(),
            b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        if parse_answer(&bytes).is_some_and(|a| a.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "the freed slot was not reused");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_a_half_sent_request_and_the_store_closes_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(dir.path());
    // long timeouts: only shutdown may end the half-sent request
    cfg.header_read_timeout = Duration::from_secs(60);
    cfg.idle_timeout = Duration::from_secs(60);
    cfg.shutdown_grace = Duration::from_secs(2);
    let mut s = TestServer::start_with(cfg).await;
    assert_eq!(
        s.put("/key/kept", r#"{"value": "durable"}"#).await.status,
        200
    );
    let mut half = TcpStream::connect(s.addr()).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(s.addr()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    assert!(
        s.shut_down_within(Duration::from_secs(5)).await,
        "the server did not stop"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "shutdown waited {:?}",
        start.elapsed()
    );
    assert!(
        closed_within(&mut half, Duration::from_secs(1))
            .await
            .is_some()
    );
    assert!(
        closed_within(&mut idle, Duration::from_secs(1))
            .await
            .is_some()
    );
    assert!(
        TcpStream::connect(s.addr()).await.is_err(),
        "still accepting"
    );
    let state = s.state.clone();
    tokio::task::spawn_blocking(move || state.close())
        .await
        .unwrap()
        .unwrap();
    // closed cleanly: the store reopens with the write
    let db = strata::Db::open(dir.path()).unwrap();
    assert!(
        db.get(b"ukept").unwrap().is_some(),
        "the acknowledged write survives"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_flight_at_shutdown_finishes_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(dir.path());
    cfg.shutdown_grace = Duration::from_secs(3);
    cfg.body_read_timeout = Duration::from_secs(10);
    let mut s = TestServer::start_with(cfg).await;
    // a request whose body is still arriving when shutdown starts
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    let body = br#"{"key": "late", "value": "v"}"#;
    c.write_all(
        format!(
            "POST /put HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    c.write_all(&body[..5]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let stopping = tokio::spawn(async move {
        let ok = s.shut_down_within(Duration::from_secs(6)).await;
        (ok, s)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    c.write_all(&body[5..]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    let a = parse_answer(&buf[..n]).expect("the request is answered");
    assert_eq!(a.status, 200);
    assert!(a.head.contains("connection: close"));
    let (ok, s) = stopping.await.unwrap();
    assert!(ok);
    assert!(s.state.db().get(b"ulate").unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_still_being_written_at_shutdown_is_sent_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = quick(dir.path());
    cfg.shutdown_grace = Duration::from_secs(3);
    cfg.idle_timeout = Duration::from_secs(10);
    let mut s = TestServer::start_with(cfg).await;
    let value = "v".repeat(200 << 10);
    let items: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"key": "big{i:02}", "value": "{value}"}}"#))
        .collect();
    let r = s
        .post(
            "/batchput",
            &format!(r#"{{"items": [{}]}}"#, items.join(",")),
        )
        .await;
    assert_eq!(r.status, 200);
    // ask for 4 MB and do not read: the answer stays stuck in the socket buffers
    let mut c = TcpStream::connect(s.addr()).await.unwrap();
    c.write_all(b"GET /range?start=big&limit=100 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopping = tokio::spawn(async move {
        let ok = s.shut_down_within(Duration::from_secs(6)).await;
        (ok, s)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut got))
        .await
        .expect("the answer arrives")
        .unwrap();
    drop(c);
    let a = parse_answer(&got).expect("a whole answer");
    assert_eq!(a.status, 200);
    assert_eq!(a.json()["count"], 20);
    let (ok, _s) = stopping.await.unwrap();
    assert!(ok);
}
