//! A secured three-node cluster in one process, each node a full server (client TLS, tokens,
//! mutual TLS between peers) on a free loopback port, with certificates made at test time:
//! it elects and replicates, clients with tokens read and write on every member, a node
//! whose peer certificate another CA signed can neither vote, append, install a snapshot
//! nor take a read index (the cluster keeps its term and leader while it campaigns), peer
//! certificates reload on file change without disturbing the cluster, and settings that
//! cannot work are refused at start. Every wait has a deadline.
#![cfg(feature = "replication")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Method;
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use security_support::{Ca, Client, Pki, client, client_tls, der_of, send, token};
use serde_json::{Value, json};
use strata::server::{self, AppState, ClusterConfig, ServerConfig};
use tokio::time::Instant;

const WAIT: Duration = Duration::from_secs(20);
const PEER_ALPN: &[u8] = b"strata-peer/1";

/// The files of a secured cluster: the client-side PKI and tokens, and a separate peer CA.
struct Files {
    dir: PathBuf,
    pki: Pki,
    peer_ca: Ca,
}

impl Files {
    fn new(dir: &Path) -> Files {
        Files {
            dir: dir.to_path_buf(),
            pki: Pki::new(dir),
            peer_ca: Ca::new(dir, "peers"),
        }
    }

    /// Settings of member `name` on `port`: client TLS and tokens, and peer TLS with a
    /// certificate `signer` signed (trusting the cluster's peer CA).
    fn config(&self, name: &str, port: u16, signer: &Ca) -> ServerConfig {
        let (cert, key) = signer.peer_leaf(&self.dir, &format!("peer-{name}"));
        let mut c = self.pki.config(&self.dir, false);
        c.node_id = name.to_string();
        c.host = "127.0.0.1".into();
        c.port = port;
        c.data_dir = self.dir.join(name);
        c.security.peer_cert = Some(cert);
        c.security.peer_key = Some(key);
        c.security.peer_ca = Some(self.peer_ca.cert.clone());
        c.security.reload_check_every = Some(Duration::from_millis(100));
        c
    }
}

/// A member served in this process.
struct Member {
    name: String,
    addr: String,
    state: AppState,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Member {
    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("the server stops in time")
            .unwrap()
            .unwrap();
        self.state.shutdown().await.unwrap();
    }
}

async fn listeners(n: usize) -> Vec<tokio::net::TcpListener> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    v
}

async fn serve_member(
    config: ServerConfig,
    listener: tokio::net::TcpListener,
    peers: Vec<(String, String)>,
    election: (u64, u64),
) -> Member {
    let mut cluster = ClusterConfig::new(peers);
    cluster.heartbeat = Duration::from_millis(50);
    cluster.election_timeout = (
        Duration::from_millis(election.0),
        Duration::from_millis(election.1),
    );
    let name = config.node_id.clone();
    let addr = listener.local_addr().unwrap().to_string();
    let state = AppState::start_cluster(config, &cluster).await.unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(server::serve(listener, state.clone(), async move {
        let _ = rx.await;
    }));
    Member {
        name,
        addr,
        state,
        stop,
        task,
    }
}

/// Starts members `names` with peer certificates the peer CA signed.
async fn start_cluster(files: &Files, names: &[&str]) -> Vec<Member> {
    let ls = listeners(names.len()).await;
    let addrs: Vec<String> = ls
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut members = Vec::new();
    for (i, l) in ls.into_iter().enumerate() {
        let peers = names
            .iter()
            .zip(&addrs)
            .filter(|(n, _)| **n != names[i])
            .map(|(n, a)| (n.to_string(), a.clone()))
            .collect();
        let port = l.local_addr().unwrap().port();
        let config = files.config(names[i], port, &files.peer_ca);
        members.push(serve_member(config, l, peers, (300, 600)).await);
    }
    members
}

/// `/raft/status` of `m` as the reader.
async fn status(c: &Client, m: &Member) -> Option<Value> {
    let a = send(
        c,
        Method::GET,
        &m.url("/raft/status"),
        Some(token("reader")),
        None,
    )
    .await
    .ok()?;
    (a.status == 200).then_some(a.json)
}

/// Waits until every member names the same leader; returns its index and the term.
async fn agreed_leader(c: &Client, members: &[Member]) -> (usize, u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let mut seen = Vec::new();
        for m in members {
            seen.push(status(c, m).await);
        }
        if let Some(Some(first)) = seen.first()
            && let Some(leader) = first["leader_id"].as_str()
            && seen.iter().all(|s| {
                s.as_ref()
                    .is_some_and(|s| s["leader_id"] == json!(leader) && s["term"] == first["term"])
            })
            && let Some(i) = members.iter().position(|m| m.name == leader)
        {
            return (i, first["term"].as_u64().unwrap());
        }
        assert!(Instant::now() < deadline, "no agreed leader: {seen:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn put(c: &Client, leader: &Member, key: &str, value: &str) {
    let body = json!({"key": key, "value": value}).to_string();
    let a = send(
        c,
        Method::POST,
        &leader.url("/put"),
        Some(token("writer")),
        Some(&body),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json);
}

/// A linearizable read of `key` on `m` (a follower asks the leader for its read index over
/// the peer connection).
async fn get(c: &Client, m: &Member, key: &str) -> (u16, Value) {
    let a = send(
        c,
        Method::GET,
        &m.url(&format!("/get?key={key}")),
        Some(token("reader")),
        None,
    )
    .await
    .unwrap();
    (a.status, a.json)
}

/// A client making the peer handshake: the peer ALPN name, trusting `ca`, presenting
/// `identity` if given.
fn peer_client(ca: &Path, identity: Option<(&Path, &Path)>) -> Client {
    let mut tls = client_tls(ca, identity);
    tls.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = HttpsConnector::from((http, Arc::new(tls)));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// Sends `body` to `url`; the status, or `Err` when no HTTP answer came.
async fn raw(c: &Client, method: Method, url: &str, body: &[u8]) -> Result<u16, String> {
    let req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .body(Full::new(Bytes::from(body.to_vec())))
        .unwrap();
    let call = async {
        let resp = c.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let _ = resp.into_body().collect().await;
        Ok(status)
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("an answer or an error in time")
}

/// The certificate a peer handshake with `m` is served.
async fn served_peer_certificate(m: &Member, ca: &Path, identity: (&Path, &Path)) -> Vec<u8> {
    let mut tls = client_tls(ca, Some(identity));
    tls.alpn_protocols = vec![PEER_ALPN.to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(tls));
    let tcp = tokio::net::TcpStream::connect(&m.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0]
        .as_ref()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_with_peer_tls_elects_replicates_and_serves_clients_with_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let members = start_cluster(&files, &["n1", "n2", "n3"]).await;
    let c = client(client_tls(&files.pki.ca.cert, None));
    let (l, term) = agreed_leader(&c, &members).await;
    assert!(term >= 1);
    for i in 0..5 {
        put(&c, &members[l], &format!("k{i}"), &format!("v{i}")).await;
    }
    for m in &members {
        for i in 0..5 {
            let (status, body) = get(&c, m, &format!("k{i}")).await;
            assert_eq!(status, 200, "{} k{i}: {body:?}", m.name);
            assert_eq!(body["value"], json!(format!("v{i}")));
        }
    }
    // The client port of a member is as secured as a standalone server's.
    let follower = &members[(l + 1) % 3];
    let a = send(&c, Method::GET, &follower.url("/get?key=k0"), None, None)
        .await
        .unwrap();
    assert_eq!(a.status, 401, "{:?}", a.json);
    let body = json!({"key": "k9", "value": "x"}).to_string();
    let a = send(
        &c,
        Method::POST,
        &members[l].url("/put"),
        Some(token("reader")),
        Some(&body),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 403, "{:?}", a.json);
    let plain = client(client_tls(&files.pki.ca.cert, None));
    let http_url = format!("http://{}/health", follower.addr);
    let a = send(&plain, Method::GET, &http_url, None, None)
        .await
        .unwrap();
    assert_eq!(
        a.status, 400,
        "plain HTTP to a member's TLS port: {:?}",
        a.json
    );
    // The leader heard from both followers over mutual TLS.
    let a = send(
        &c,
        Method::GET,
        &members[l].url("/cluster_status"),
        Some(token("reader")),
        None,
    )
    .await
    .unwrap();
    let followers = a.json["followers"].as_object().unwrap();
    assert_eq!(followers.len(), 2, "{:?}", a.json);
    for (name, f) in followers {
        assert_eq!(f["status"], json!("healthy"), "{name}: {f:?}");
        assert!(f["url"].as_str().unwrap().starts_with("https://"), "{f:?}");
    }
    for m in members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_foreign_certificate_cannot_vote_append_or_read() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let members = start_cluster(&files, &["n1", "n2", "n3"]).await;
    let c = client(client_tls(&files.pki.ca.cert, None));
    let (l, term) = agreed_leader(&c, &members).await;
    put(&c, &members[l], "before", "1").await;

    // A certificate from another CA fails the peer handshake: no route is reached.
    let foreign_ca = Ca::new(dir.path(), "foreign-peers");
    let (fc, fk) = foreign_ca.peer_leaf(dir.path(), "intruder");
    let intruder = peer_client(&files.peer_ca.cert, Some((&fc, &fk)));
    let anonymous = peer_client(&files.peer_ca.cert, None);
    let (gc, gk) = files.peer_ca.peer_leaf(dir.path(), "genuine");
    let genuine = peer_client(&files.peer_ca.cert, Some((&gc, &gk)));
    let admin_client = client(client_tls(&files.pki.ca.cert, None));
    for m in &members {
        let id = strata::replication::identity::node_id(&m.name);
        for rpc in ["append", "vote", "snapshot"] {
            let url = m.url(&format!("/raft/{rpc}/{id}"));
            let r = raw(&intruder, Method::POST, &url, b"\x00\x01").await;
            assert!(r.is_err(), "{rpc} with a foreign certificate: {r:?}");
            let r = raw(&anonymous, Method::POST, &url, b"\x00\x01").await;
            assert!(r.is_err(), "{rpc} without a certificate: {r:?}");
            // A client (even an admin) on the client handshake is refused by the route.
            let a = send(
                &admin_client,
                Method::POST,
                &url,
                Some(token("admin")),
                Some("x"),
            )
            .await
            .unwrap();
            assert_eq!(a.status, 403, "{rpc} from a client: {:?}", a.json);
            // A genuine peer reaches the RPC (which refuses the garbage body itself).
            assert_eq!(
                raw(&genuine, Method::POST, &url, b"\x00\x01").await,
                Ok(400)
            );
        }
        let url = m.url("/raft/read_index");
        assert!(raw(&intruder, Method::GET, &url, b"").await.is_err());
        let a = send(&admin_client, Method::GET, &url, Some(token("admin")), None)
            .await
            .unwrap();
        assert_eq!(a.status, 403, "read index from a client: {:?}", a.json);
    }
    let leader_url = members[l].url("/raft/read_index");
    assert_eq!(raw(&genuine, Method::GET, &leader_url, b"").await, Ok(200));

    // A whole node with a foreign peer certificate (trusting the cluster's CA) that thinks
    // it belongs to the cluster: it sorts first, so it initializes a cluster of itself and
    // the three members and campaigns, term after term.
    let listener = listeners(1).await.pop().unwrap();
    let port = listener.local_addr().unwrap().port();
    let rogue_config = files.config("a-rogue", port, &foreign_ca);
    let peers = members
        .iter()
        .map(|m| (m.name.clone(), m.addr.clone()))
        .collect();
    let rogue = serve_member(rogue_config, listener, peers, (100, 200)).await;
    let deadline = Instant::now() + WAIT;
    let rogue_term = loop {
        let s = status(&c, &rogue).await.unwrap();
        let t = s["term"].as_u64().unwrap_or(0);
        assert_ne!(s["state"], json!("leader"), "{s:?}");
        if t >= term + 5 {
            break t;
        }
        assert!(
            Instant::now() < deadline,
            "the rogue never campaigned: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // Its votes never arrived: same term, same leader, writes still commit. (Raft itself
    // would also deny votes from a node whose log is this far behind; what keeps it out is
    // the refused handshake pinned above.)
    let (l2, term2) = agreed_leader(&c, &members).await;
    assert_eq!(
        (l2, term2),
        (l, term),
        "the rogue reached term {rogue_term}"
    );
    put(&c, &members[l], "after", "2").await;
    for m in &members {
        assert_eq!(get(&c, m, "after").await.0, 200);
        let s = status(&c, m).await.unwrap();
        assert_eq!(s["members"], json!(3), "{s:?}");
    }
    let s = status(&c, &rogue).await.unwrap();
    assert_ne!(s["state"], json!("leader"), "{s:?}");
    rogue.stop().await;
    for m in members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_certificates_reload_on_file_change_without_disturbing_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    let members = start_cluster(&files, &["n1", "n2", "n3"]).await;
    let c = client(client_tls(&files.pki.ca.cert, None));
    let (l, term) = agreed_leader(&c, &members).await;
    put(&c, &members[l], "one", "1").await;
    let (gc, gk) = files.peer_ca.peer_leaf(dir.path(), "checker");
    // Every member gets a new peer certificate and key, written over the old files.
    let mut renewed = Vec::new();
    for m in &members {
        let (cert, _) = files
            .peer_ca
            .peer_leaf(dir.path(), &format!("peer-{}", m.name));
        renewed.push(der_of(&cert));
    }
    let deadline = Instant::now() + WAIT;
    for (m, want) in members.iter().zip(&renewed) {
        while served_peer_certificate(m, &files.peer_ca.cert, (&gc, &gk)).await != *want {
            assert!(
                Instant::now() < deadline,
                "{} kept its old certificate",
                m.name
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    // New connections between members use the new certificates; nothing was dropped.
    put(&c, &members[l], "two", "2").await;
    for m in &members {
        assert_eq!(get(&c, m, "two").await.0, 200, "{}", m.name);
    }
    assert_eq!(agreed_leader(&c, &members).await, (l, term));
    // A bad file (a key that does not match the certificate) changes nothing.
    let follower = &members[(l + 1) % 3];
    let key = dir.path().join(format!("peer-{}.key", follower.name));
    std::fs::copy(&gk, &key).unwrap();
    let err = follower.state.reload_security().unwrap_err();
    assert!(err.contains("usable pair"), "{err}");
    put(&c, &members[l], "three", "3").await;
    assert_eq!(get(&c, follower, "three").await.0, 200);
    for m in members {
        m.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let files = Files::new(dir.path());
    // Client TLS on a member without peer TLS would cut its peers off.
    let mut c = files.config("n1", 1, &files.peer_ca);
    c.security.peer_cert = None;
    c.security.peer_key = None;
    c.security.peer_ca = None;
    let cluster = ClusterConfig::new(vec![("n2".into(), "127.0.0.1:2".into())]);
    let err = AppState::start_cluster(c, &cluster).await.unwrap_err();
    assert!(err.contains("--peer-cert"), "{err}");
    // Peer TLS is for cluster members.
    let c = files.config("alone", 1, &files.peer_ca);
    let db = c.open_store().unwrap();
    let err = AppState::new(db.clone(), c).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("--peers"), "{err}");
    db.close().unwrap();
    // Two of the three peer files are not enough.
    let mut c = files.config("n1", 1, &files.peer_ca);
    c.security.peer_ca = None;
    assert!(c.validate().unwrap_err().contains("--peer-ca"));
}
