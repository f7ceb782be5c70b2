//! The `strata` binary against a test server: key commands over HTTP, leader hints and
//! unreachable endpoints, cluster status, and a backup of a live server restored to an
//! identical store.
#![cfg(all(feature = "cli", feature = "server"))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod server_support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use server_support::TestServer;

/// Runs the binary off the async workers (the server runs on them).
async fn strata(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&args)
            .output()
            .expect("the strata binary runs")
    })
    .await
    .unwrap()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn out(o: &Output) -> (i32, String) {
    (
        o.status.code().unwrap(),
        String::from_utf8(o.stdout.clone()).unwrap(),
    )
}

/// A server that answers every request with a 503 naming `leader`, a fixed number of times.
fn fake_follower(leader: String, answers: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(answers) {
            let mut s = stream.unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 4096];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let body = format!(r#"{{"error":"not leader","leader":"{leader}"}}"#);
            let _ = write!(
                s,
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_commands_go_through_the_server_and_follow_leader_hints() {
    let dir = tempfile::tempdir().unwrap();
    let s = TestServer::start(dir.path()).await;
    let e = format!("--endpoint={}", s.base);
    let run = |list: &[&str]| {
        let mut a = args(&[e.as_str()]);
        a.extend(args(list));
        strata(a)
    };
    assert_eq!(
        out(&run(&["put", "user:1", "Alice"]).await),
        (0, "version 1 (id 1)\n".into())
    );
    assert_eq!(
        out(&run(&["put", "user:1", "Alicia"]).await),
        (0, "version 2 (id 2)\n".into())
    );
    assert_eq!(
        out(&run(&["put", "cfg", r#"{"retries":3}"#, "--json-value"]).await).0,
        0
    );
    assert_eq!(out(&run(&["get", "user:1"]).await), (0, "Alicia\n".into()));
    assert_eq!(
        out(&run(&["get", "user:1", "--version", "1"]).await),
        (0, "Alice\n".into())
    );
    assert_eq!(
        out(&run(&["get", "cfg"]).await),
        (0, "{\"retries\":3}\n".into())
    );
    let (code, text) = out(&run(&["--json", "get", "cfg"]).await);
    assert_eq!(code, 0);
    let j: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(j["value"]["retries"], 3);
    assert_eq!(out(&run(&["get", "nope"]).await), (1, String::new()));
    assert_eq!(
        out(&run(&["history", "user:1"]).await),
        (0, "1\tAlice\n2\tAlicia\n".into())
    );
    assert_eq!(
        out(&run(&["range", "user:", "user:~"]).await),
        (0, "user:1\tAlicia\n".into())
    );
    // A stale precondition is refused (409 → 7) and changes nothing.
    let stale = run(&["put", "user:1", "x", "--expect-version", "1"]).await;
    assert_eq!(stale.status.code(), Some(7));
    assert!(String::from_utf8_lossy(&stale.stderr).contains("409"));
    assert_eq!(out(&run(&["get", "user:1"]).await).1, "Alicia\n");
    assert_eq!(out(&run(&["delete", "user:1"]).await).0, 0);
    assert_eq!(out(&run(&["delete", "user:1"]).await).0, 1);
    // Local-only commands refuse an endpoint.
    assert_eq!(out(&run(&["stats", "x"]).await).0, 2);

    // An unreachable endpoint is skipped; a follower's hint is followed to the leader. The
    // port stays bound, never listening, so connections to it are refused for the whole test.
    let unreachable = tokio::net::TcpSocket::new_v4().unwrap();
    unreachable.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let dead = format!("http://{}", unreachable.local_addr().unwrap());
    let leader = s.base.trim_start_matches("http://").to_string();
    let follower = fake_follower(leader, 1);
    let list = format!("--endpoint={dead},{follower}");
    let got = strata(args(&[&list, "get", "cfg"])).await;
    assert_eq!(out(&got), (0, "{\"retries\":3}\n".into()), "{got:?}");
    // No endpoint at all: 6.
    let none = strata(args(&[&format!("--endpoint={dead}"), "get", "cfg"])).await;
    assert_eq!(none.status.code(), Some(6));

    // Cluster status is real; membership needs the replication feature.
    let (code, text) = out(&run(&["cluster", "status"]).await);
    assert_eq!(code, 0);
    assert!(text.contains("test-node"), "{text}");
    let members = run(&["cluster", "members"]).await;
    assert_eq!(members.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&members.stderr).contains("not available yet"));
    s.stop().await;
}

fn dump_of(dir: &Path) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["dump", dir.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0));
    String::from_utf8(o.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_of_a_live_server_restores_to_an_identical_store() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let s = TestServer::start(&data).await;
    for i in 0..300 {
        let r = s
            .put(&format!("/key/k{i:03}"), &format!(r#"{{"value": "v{i}"}}"#))
            .await;
        assert_eq!(r.status, 200);
    }
    s.post("/compaction/run?force=true", "").await;
    for i in 0..100 {
        s.put(&format!("/key/k{i:03}"), r#"{"value": {"n": 2}}"#)
            .await;
    }
    s.delete("/key/k005").await;
    let e = format!("--endpoint={}", s.base);
    let backup = tmp.path().join("b.bak");
    let b = strata(args(&[&e, "--json", "backup", backup.to_str().unwrap()])).await;
    assert_eq!(b.status.code(), Some(0), "{b:?}");
    let info: Value = serde_json::from_slice(&b.stdout).unwrap();
    // The checkpoint next to the data directory is gone once streamed.
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("backup-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // Refused: an existing destination.
    let again = strata(args(&[&e, "backup", backup.to_str().unwrap()])).await;
    assert_eq!(again.status.code(), Some(5));
    s.stop().await;

    let restored = tmp.path().join("restored");
    let r = strata(args(&[
        "--json",
        "restore",
        backup.to_str().unwrap(),
        restored.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(r.status.code(), Some(0), "{r:?}");
    let summary: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(summary["seqno"], info["seqno"]);
    // Every version of every key, and the last seqno, are the same.
    let (a, b) = (dump_of(&data), dump_of(&restored));
    assert!(a.lines().count() > 300);
    assert_eq!(a, b);
    // A damaged archive is refused and creates nothing.
    let mut bytes = std::fs::read(&backup).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let bad = tmp.path().join("bad.bak");
    std::fs::write(&bad, &bytes).unwrap();
    let target = tmp.path().join("r2");
    let o = strata(args(&[
        "restore",
        bad.to_str().unwrap(),
        target.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(!target.exists());
    assert!(!tmp.path().join("r2.checkpoint-tmp").exists());
    // So is a truncated one.
    std::fs::write(&bad, &std::fs::read(&backup).unwrap()[..mid]).unwrap();
    let o = strata(args(&[
        "restore",
        bad.to_str().unwrap(),
        target.to_str().unwrap(),
    ]))
    .await;
    assert_eq!(o.status.code(), Some(3), "{o:?}");
    assert!(!target.exists());
}
