//! The Raft RPC routes refuse what they cannot trust before openraft sees it: garbage bodies
//! (400), bodies over the limit (413), requests for another node (421), non-numeric targets
//! (400). A refused request leaves the node's vote and term untouched.
#![cfg(feature = "replication")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use strata::replication::codec;
use strata::replication::node::{NodeOptions, ReplicaNode};

async fn post(addr: &str, path: &str, body: Vec<u8>) -> (u16, Vec<u8>) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let req = hyper::Request::post(format!("http://{addr}{path}"))
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .unwrap()
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes()
        .to_vec();
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rpc_requests_get_4xx_and_never_reach_raft() {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mut opts = NodeOptions::new("node-1", dir.path().join("n1"), addr.clone());
    opts.max_rpc_bytes = 64 << 10;
    let node = ReplicaNode::start(opts).await.unwrap();
    let router = node.router();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    let id = node.id();
    let before = node.raft().metrics().borrow().vote;

    // A well-formed vote request for this node, to vary from.
    let vote = openraft::raft::VoteRequest::new(openraft::Vote::new(7, 99), None);
    let good = codec::encode(&vote).unwrap();

    for path in ["append", "vote", "snapshot"] {
        let (status, body) = post(
            &addr,
            &format!("/raft/{path}/{id}"),
            b"\x01garbage".to_vec(),
        )
        .await;
        assert_eq!(status, 400, "{path}: {}", String::from_utf8_lossy(&body));
        let (status, _) = post(&addr, &format!("/raft/{path}/{id}"), Vec::new()).await;
        assert_eq!(status, 400, "{path}: empty body");
        let (status, _) = post(&addr, &format!("/raft/{path}/{}", id + 1), good.clone()).await;
        assert_eq!(status, 421, "{path}: another node's request");
        let (status, _) = post(&addr, &format!("/raft/{path}/node-1"), good.clone()).await;
        assert_eq!(status, 400, "{path}: non-numeric target");
        let (status, _) = post(&addr, &format!("/raft/{path}/{id}"), vec![1u8; 65 << 10]).await;
        assert_eq!(status, 413, "{path}: body over the limit");
    }
    // Truncations of a valid body are refused too.
    for cut in 0..good.len() {
        let (status, _) = post(&addr, &format!("/raft/vote/{id}"), good[..cut].to_vec()).await;
        assert_eq!(status, 400, "cut at {cut}");
    }
    assert_eq!(
        node.raft().metrics().borrow().vote,
        before,
        "no request reached raft"
    );

    // The intact request does reach it: the node grants the higher term's vote.
    let (status, body) = post(&addr, &format!("/raft/vote/{id}"), good).await;
    assert_eq!(status, 200);
    let answer: Result<openraft::raft::VoteResponse<u64>, openraft::error::RaftError<u64>> =
        codec::decode(&body).unwrap();
    assert!(answer.unwrap().vote_granted);

    let _ = stop.send(());
    node.shutdown().await.unwrap();
    server.await.unwrap();
}
