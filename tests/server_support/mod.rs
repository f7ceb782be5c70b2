//! Helpers for the HTTP server tests: an in-process server on a free loopback port and a
//! real HTTP client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use strata::server::{self, AppState, ServerConfig};

/// A pooled HTTP/1.1 client.
pub type Client = hyper_util::client::legacy::Client<HttpConnector, Full<Bytes>>;

/// Sends one request to `url`; returns status, content type and body.
pub async fn request(
    client: &Client,
    method: Method,
    url: &str,
    body: Option<Vec<u8>>,
) -> (u16, String, Vec<u8>) {
    let mut req = Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default())))
        .unwrap();
    let call = async {
        let resp = client.request(req).await.expect("the server answers");
        let status = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, ctype, body)
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("the server answers in time")
}

/// A running server and a client pointed at it.
pub struct TestServer {
    pub base: String,
    pub client: Client,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// An answer: status, raw body, and the body parsed as JSON.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
    pub json: Value,
}

/// The default test configuration over `dir`.
pub fn config(dir: &Path) -> ServerConfig {
    let mut c = ServerConfig::default();
    c.data_dir = dir.to_path_buf();
    c.node_id = "test-node".into();
    c
}

impl TestServer {
    /// Starts a server with the default test configuration over `dir`.
    pub async fn start(dir: &Path) -> TestServer {
        TestServer::start_with(config(dir)).await
    }

    /// Starts a server with `config` on 127.0.0.1 and a free port.
    pub async fn start_with(config: ServerConfig) -> TestServer {
        config.validate().unwrap();
        let db = tokio::task::spawn_blocking({
            let config = config.clone();
            move || config.open_store()
        })
        .await
        .unwrap()
        .unwrap();
        TestServer::start_on(db, config).await
    }

    /// Starts a server over an open store.
    pub async fn start_on(db: strata::Db, config: ServerConfig) -> TestServer {
        config.validate().unwrap();
        let state = AppState::new(db, config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        let client = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .build(HttpConnector::new());
        TestServer {
            base: format!("http://{addr}"),
            client,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.base.trim_start_matches("http://").parse().unwrap()
    }

    /// Signals shutdown and waits (at most `within`) for the server to return; true when
    /// it did. The store stays open.
    pub async fn shut_down_within(&mut self, within: Duration) -> bool {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        match self.task.take() {
            Some(task) => matches!(tokio::time::timeout(within, task).await, Ok(Ok(Ok(())))),
            None => true,
        }
    }

    /// Stops the server and closes the store, whatever the close returns (for a store a test
    /// broke on purpose).
    pub async fn stop_without_close(mut self) {
        assert!(self.shut_down_within(Duration::from_secs(10)).await);
        let state = self.state.clone();
        let _ = tokio::task::spawn_blocking(move || state.close()).await;
    }

    /// Stops the server (requests in flight finish) and closes the store.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("server stops in time")
                .unwrap()
                .unwrap();
        }
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.close())
            .await
            .unwrap()
            .unwrap();
    }

    /// Sends a request and returns the answer; every answer must be JSON.
    pub async fn send(&self, method: Method, path: &str, body: Option<Vec<u8>>) -> Answer {
        let url = format!("{}{path}", self.base);
        let (status, ctype, body) = request(&self.client, method, &url, body).await;
        let json = serde_json::from_slice(&body).unwrap_or_else(|e| {
            panic!(
                "{path}: body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&body)
            )
        });
        assert_eq!(ctype, "application/json", "{path}: content type");
        Answer { status, body, json }
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.send(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: &str) -> Answer {
        self.send(Method::POST, path, Some(body.as_bytes().to_vec()))
            .await
    }

    pub async fn put(&self, path: &str, body: &str) -> Answer {
        self.send(Method::PUT, path, Some(body.as_bytes().to_vec()))
            .await
    }

    pub async fn delete(&self, path: &str) -> Answer {
        self.send(Method::DELETE, path, None).await
    }

    /// The raw text of `GET path` (for non-JSON routes such as `/metrics`).
    pub async fn text(&self, path: &str) -> (u16, String, String) {
        let url = format!("{}{path}", self.base);
        let (status, ctype, body) = request(&self.client, Method::GET, &url, None).await;
        (status, ctype, String::from_utf8(body).unwrap())
    }
}

/// A raw answer read from a socket: status, lower-cased head, body.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawAnswer {
    /// The body as JSON (panics if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }
}

/// Parses one HTTP/1.1 answer from the bytes read off a connection.
pub fn parse_answer(bytes: &[u8]) -> Option<RawAnswer> {
    let end = bytes.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&bytes[..end]).to_ascii_lowercase();
    let status = head.get(9..12)?.parse().ok()?;
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map_or(0, |v| v.trim().parse().unwrap_or(0));
    let body = bytes.get(end + 4..end + 4 + len)?.to_vec();
    Some(RawAnswer { status, head, body })
}

/// Writes `bytes` on a new connection to `addr` (ignoring a write the server cuts short)
/// and reads until the server closes it or `within` passes. Returns what was read, and
/// whether the server closed the connection.
pub async fn raw_exchange(
    addr: std::net::SocketAddr,
    bytes: &[u8],
    within: Duration,
) -> (Vec<u8>, bool) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.split();
    let write = async {
        let _ = wr.write_all(bytes).await;
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return (out, true),
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    };
    let both = async {
        tokio::select! {
            r = read => r,
            () = write => unreachable!(),
        }
    };
    tokio::time::timeout(within, both).await.unwrap_or_default()
}
