//! The cluster under test: node processes (this test binary run again on its ignored
//! `nemesis_node` test, settings in environment variables), each with its own data
//! directory and log, its client port, and the proxy that carries its Raft traffic.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::proxy::{self, Net};
use crate::node_process::{
    ENV_ADVERTISE, ENV_DIR, ENV_NAME, ENV_PEERS, ENV_PORT, ENV_REQUEST_TIMEOUT_MS, HeldPort,
};

/// The HTTP client of the harness.
pub type Http = Client<HttpConnector, Full<Bytes>>;

/// A fresh HTTP client.
pub fn http() -> Http {
    let mut c = HttpConnector::new();
    c.set_nodelay(true);
    c.set_connect_timeout(Some(Duration::from_millis(500)));
    Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(5))
        .build(c)
}

/// One request with a deadline: `None` if no answer arrived (an unknown outcome).
pub async fn call(
    http: &Http,
    method: Method,
    port: u16,
    path: &str,
    body: Option<&Value>,
    within: Duration,
) -> Option<(u16, Value)> {
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(format!("http://127.0.0.1:{port}{path}"));
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = req.body(Full::new(Bytes::from(body))).ok()?;
    let fut = async {
        let resp = http.request(req).await.ok()?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.ok()?.to_bytes();
        Some((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    };
    tokio::time::timeout(within, fut).await.ok().flatten()
}

/// One node.
#[derive(Debug)]
pub struct Node {
    /// Its name.
    pub name: String,
    /// Its client port, kept from other sockets while the node is down or restarting.
    held: HeldPort,
    /// Its proxy's port (its Raft address).
    pub proxy: u16,
    /// Its data directory.
    pub dir: PathBuf,
    log: PathBuf,
    peers: String,
    child: Option<Child>,
    /// Stopped with SIGSTOP.
    pub paused: bool,
}

impl Node {
    /// Its client port.
    pub fn port(&self) -> u16 {
        self.held.port()
    }

    /// Its Raft address.
    pub fn raft_addr(&self) -> String {
        format!("127.0.0.1:{}", self.proxy)
    }

    /// Whether its process runs.
    pub fn alive(&self) -> bool {
        self.child.is_some()
    }

    /// Whether it can answer (running and not paused).
    pub fn up(&self) -> bool {
        self.child.is_some() && !self.paused
    }
}

/// The nodes and their network.
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<Node>,
    /// The fault table.
    pub net: Arc<Net>,
}

fn signal(pid: u32, sig: rustix::process::Signal) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(pid, sig);
    }
}

impl Cluster {
    /// `n` nodes (not started) with data under `dir`, each behind a proxy.
    pub async fn new(dir: &Path, n: usize) -> Cluster {
        let net = Net::new(n);
        let held: Vec<HeldPort> = (0..n).map(|_| HeldPort::new()).collect();
        let mut proxies = Vec::new();
        for (i, port) in held.iter().enumerate() {
            proxies.push(proxy::start(Arc::clone(&net), i, port.port()).await);
        }
        let names: Vec<String> = (1..=n).map(|i| format!("node-{i}")).collect();
        let nodes = (0..n)
            .zip(held)
            .map(|(i, held)| {
                let peers: Vec<String> = (0..n)
                    .filter(|j| *j != i)
                    .map(|j| format!("{}:127.0.0.1:{}", names[j], proxies[j]))
                    .collect();
                Node {
                    name: names[i].clone(),
                    held,
                    proxy: proxies[i],
                    dir: dir.join(&names[i]),
                    log: dir.join(format!("{}.log", names[i])),
                    peers: peers.join(","),
                    child: None,
                    paused: false,
                }
            })
            .collect();
        Cluster { nodes, net }
    }

    /// Starts node `i`'s process.
    pub fn start(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if node.child.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .expect("node log");
        let child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--ignored", "--exact", "nemesis_node", "--nocapture"])
            .env(ENV_NAME, &node.name)
            .env(ENV_PORT, node.port().to_string())
            .env(ENV_DIR, &node.dir)
            .env(ENV_PEERS, &node.peers)
            .env(ENV_ADVERTISE, node.raft_addr())
            .env(ENV_REQUEST_TIMEOUT_MS, "5000")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start node");
        self.net.set_pid(i, Some(child.id()));
        node.child = Some(child);
        node.paused = false;
    }

    /// SIGKILL node `i` and reap it.
    pub fn kill(&mut self, i: usize) {
        self.net.set_pid(i, None);
        let node = &mut self.nodes[i];
        if let Some(mut c) = node.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        node.paused = false;
    }

    /// SIGSTOP node `i`.
    pub fn pause(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(c) = &node.child {
            signal(c.id(), rustix::process::Signal::STOP);
            node.paused = true;
        }
    }

    /// SIGCONT node `i`.
    pub fn resume(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(c) = &node.child {
            signal(c.id(), rustix::process::Signal::CONT);
        }
        node.paused = false;
    }

    /// The nodes whose process ended without being killed by the harness, each with the
    /// panic its log holds, or else the log's last line (a node that could not start, or one
    /// that crashed).
    pub fn exited_on_their_own(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        for node in &mut self.nodes {
            let Some(child) = &mut node.child else {
                continue;
            };
            if let Ok(Some(status)) = child.try_wait() {
                let log = std::fs::read_to_string(&node.log).unwrap_or_default();
                let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
                let said = match lines.iter().rposition(|l| l.contains("panicked at")) {
                    Some(at) => lines[at..(at + 2).min(lines.len())].join(" "),
                    None => lines.last().unwrap_or(&"(empty log)").to_string(),
                };
                out.push(format!(
                    "{} exited on its own ({status}): {said}",
                    node.name
                ));
            }
        }
        out
    }

    /// The node whose Raft address is `addr`.
    pub fn by_raft_addr(&self, addr: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.raft_addr() == addr)
    }

    /// The node that says it leads, if one answers within a second.
    pub async fn leader(&self, http: &Http) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate().filter(|(_, n)| n.up()) {
            let r = call(
                http,
                Method::GET,
                n.port(),
                "/raft/status",
                None,
                Duration::from_secs(1),
            )
            .await;
            if let Some((200, s)) = r
                && s["state"] == "leader"
            {
                return Some(i);
            }
        }
        None
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.resume(i);
            self.kill(i);
        }
    }
}
