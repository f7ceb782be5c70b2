//! The real signal path: SIGTERM to the process ends `serve` (through
//! `server::shutdown_signal`) within the shutdown grace although a client holds a
//! half-sent request, and the store then closes cleanly. This file holds one test, so the
//! signal reaches no other test.
#![cfg(all(feature = "server", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::time::{Duration, Instant};

use strata::server::{self, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_a_half_sent_request_stops_the_server_within_the_grace() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = server_support::config(dir.path());
    cfg.header_read_timeout = Duration::from_secs(60);
    cfg.idle_timeout = Duration::from_secs(60);
    cfg.shutdown_grace = Duration::from_secs(2);
    let db = cfg.open_store().unwrap();
    db.put(b"ukept", b"x").unwrap();
    let state = AppState::new(db, cfg).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(server::serve(
        listener,
        state.clone(),
        server::shutdown_signal(),
    ));

    // once a request is answered, the accept loop (and so the signal handler) is running
    let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
    c.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = c.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut half = tokio::net::TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let start = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    tokio::time::timeout(Duration::from_secs(4), serving)
        .await
        .expect("serve returned within the grace")
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );
    tokio::task::spawn_blocking(move || state.close())
        .await
        .unwrap()
        .unwrap();
    let db = strata::Db::open(dir.path()).unwrap();
    assert!(db.get(b"ukept").unwrap().is_some());
}
