//! A three-node cluster in one process, nodes on loopback ports, each with its own
//! directory: election, replication of writes, leader failover, a restarted node catching up
//! from a snapshot after the leader purged its log, and a restart of every node with the
//! data intact. Bounded: every wait has a deadline.
#![cfg(feature = "replication")]
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use strata::replication::apply::user_key;
use strata::replication::node::{NodeOptions, ReplicaNode, bootstrapper};
use strata::replication::types::{Member, NodeId, Outcome, Request, Value, Write};

const WAIT: Duration = Duration::from_secs(15);

struct Running {
    node: ReplicaNode,
    stop: tokio::sync::oneshot::Sender<()>,
    server: tokio::task::JoinHandle<()>,
}

fn options(name: &str, dir: &Path, addr: &str) -> NodeOptions {
    let mut o = NodeOptions::new(name, dir.join(name), addr);
    o.heartbeat = Duration::from_millis(50);
    o.election_timeout = (Duration::from_millis(300), Duration::from_millis(600));
    o.snapshot_every = 20;
    o.keep_logs = 2;
    o
}

async fn start(name: &str, dir: &Path, listener: tokio::net::TcpListener) -> Running {
    let addr = listener.local_addr().unwrap().to_string();
    let node = ReplicaNode::start(options(name, dir, &addr)).await.unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    let router = node.router();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running { node, stop, server }
}

async fn stop(r: Running) {
    let _ = r.stop.send(());
    r.node.shutdown().await.unwrap();
    tokio::time::timeout(WAIT, r.server).await.unwrap().unwrap();
}

async fn rebind(addr: &str) -> tokio::net::TcpListener {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if tokio::time::Instant::now() < deadline => {
                eprintln!("rebinding {addr}: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

/// Waits until one of `nodes` is leader and every one of them knows it; returns its index.
async fn leader_of(nodes: &[&Running]) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|r| r.node.raft().metrics().borrow().current_leader)
            .collect();
        if let Some(Some(l)) = leaders.first()
            && leaders.iter().all(|x| *x == Some(*l))
            && let Some(i) = nodes.iter().position(|r| r.node.id() == *l)
        {
            let m = nodes[i].node.raft().metrics().borrow().clone();
            if m.state.is_leader() {
                return i;
            }
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no agreed leader: {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn put(key: &str, value: &str) -> Write {
    Write::Put {
        key: key.into(),
        value: Value::Text(value.into()),
    }
}

/// Writes through the leader; returns the entry's log index.
async fn write(leader: &Running, writes: Vec<Write>) -> (u64, Vec<Outcome>) {
    let n = writes.len();
    let resp = tokio::time::timeout(
        WAIT,
        leader.node.raft().client_write(Request {
            leader_ms: 1_700_000_000_000,
            writes,
        }),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(resp.data.outcomes.len(), n);
    (resp.log_id.index, resp.data.outcomes)
}

async fn wait_applied(r: &Running, index: u64) {
    r.node
        .raft()
        .wait(Some(WAIT))
        .applied_index_at_least(Some(index), "replicated")
        .await
        .unwrap();
}

fn get(r: &Running, key: &str) -> Option<String> {
    r.node
        .machine()
        .db()
        .get(user_key(key))
        .unwrap()
        .map(|b| String::from_utf8(b.to_vec()).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_replicate_fail_over_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let names = ["node-1", "node-2", "node-3"];
    let mut listeners = Vec::new();
    for _ in &names {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let mut nodes = Vec::new();
    for (name, l) in names.iter().zip(listeners) {
        nodes.push(Some(start(name, dir.path(), l).await));
    }
    let members: BTreeMap<NodeId, Member> = nodes
        .iter()
        .map(|r| {
            let n = &r.as_ref().unwrap().node;
            (n.id(), n.member())
        })
        .collect();

    // Exactly one node bootstraps; a second call anywhere changes nothing.
    let first = bootstrapper(&members).unwrap();
    let boot = nodes
        .iter()
        .map(|r| r.as_ref().unwrap())
        .find(|r| r.node.id() == first)
        .unwrap();
    assert!(boot.node.bootstrap(members.clone()).await.unwrap());

    // Election.
    let all: Vec<&Running> = nodes.iter().map(|r| r.as_ref().unwrap()).collect();
    let li = leader_of(&all).await;
    assert!(!all[li].node.bootstrap(members.clone()).await.unwrap());

    // Replication: seed A put, batch and delete, applied identically everywhere.
    let (index, outcomes) = write(
        all[li],
        vec![
            put("a", "1"),
            Write::Batch {
                items: vec![
                    ("b".into(), Value::Text("2".into())),
                    ("c".into(), Value::Json("[3]".into())),
                ],
            },
            Write::Delete { key: "a".into() },
        ],
    )
    .await;
    let ids: Vec<u64> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Applied { id, .. } => *id,
            other => panic!("not applied: {other:?}"),
        })
        .collect();
    assert_eq!(ids, [0, 2, 3], "replicated ids count operations");
    for r in &all {
        wait_applied(r, index).await;
        assert_eq!(get(r, "a"), None);
        assert_eq!(get(r, "b").as_deref(), Some("2"));
        assert_eq!(get(r, "c").as_deref(), Some("[3]"));
        assert_eq!(r.node.machine().state().next_id, 4);
    }

    // Failover: stop the leader; the other two elect a new one and keep accepting writes.
    let old = li;
    let old_addr = addrs[old].clone();
    stop(nodes[old].take().unwrap()).await;
    let rest: Vec<&Running> = nodes.iter().flatten().collect();
    let li = leader_of(&rest).await;
    // Enough entries that the leader snapshots and purges past what the stopped node has.
    let mut last = 0;
    for i in 0..60 {
        last = write(rest[li], vec![put(&format!("k{i:02}"), &format!("v{i}"))])
            .await
            .0;
    }
    for r in &rest {
        wait_applied(r, last).await;
        assert_eq!(get(r, "k59").as_deref(), Some("v59"));
    }
    // Snapshots are built and the log purged in the background.
    rest[li]
        .node
        .raft()
        .wait(Some(WAIT))
        .metrics(
            |m| m.purged.is_some_and(|p| p.index > index),
            "the leader purged past the stopped node's log",
        )
        .await
        .unwrap();

    // The stopped node restarts from its directory and catches up from a snapshot.
    let revived = start(names[old], dir.path(), rebind(&old_addr).await).await;
    wait_applied(&revived, last).await;
    assert_eq!(get(&revived, "k00").as_deref(), Some("v0"));
    assert_eq!(get(&revived, "k59").as_deref(), Some("v59"));
    assert_eq!(get(&revived, "b").as_deref(), Some("2"));
    let current = std::fs::read_to_string(dir.path().join(names[old]).join("sm/CURRENT")).unwrap();
    assert_ne!(
        current, "db-000001\n",
        "caught up by installing a snapshot into a new generation"
    );
    assert_eq!(
        revived.node.machine().state().next_id,
        rest[0].node.machine().state().next_id
    );
    nodes[old] = Some(revived);

    // Restart every node: the data is intact and the cluster serves again.
    let mut stopped = Vec::new();
    for (i, r) in nodes.iter_mut().enumerate() {
        stopped.push((i, r.take().unwrap()));
    }
    for (_, r) in stopped {
        stop(r).await;
    }
    for (i, name) in names.iter().enumerate() {
        nodes[i] = Some(start(name, dir.path(), rebind(&addrs[i]).await).await);
    }
    let all: Vec<&Running> = nodes.iter().map(|r| r.as_ref().unwrap()).collect();
    let li = leader_of(&all).await;
    let (index, _) = write(all[li], vec![put("after", "restart")]).await;
    for r in &all {
        wait_applied(r, index).await;
        assert_eq!(get(r, "k59").as_deref(), Some("v59"));
        assert_eq!(get(r, "c").as_deref(), Some("[3]"));
        assert_eq!(get(r, "after").as_deref(), Some("restart"));
    }
    let ids: Vec<u64> = all
        .iter()
        .map(|r| r.node.machine().state().next_id)
        .collect();
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    for r in nodes.into_iter().flatten() {
        stop(r).await;
    }
}
