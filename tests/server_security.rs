//! The secured server, end to end with certificates made at test time: TLS round trips,
//! plain HTTP and foreign client certificates refused, a stalled handshake dropped, every
//! route needing exactly its role (401 and 403 with JSON bodies), refused requests changing
//! nothing, idempotency records kept per caller, certificate and token reloads, the refusal
//! to bind a non-loopback address unprotected, and the command-line client over TLS.
#![cfg(feature = "server")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::time::Duration;

use hyper::Method;
use security_support::{Answer, Pki, Running, client, client_tls, send, token};
use serde_json::json;
use strata::server::{self, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Who sends a request in the role table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Who {
    Nobody,
    WrongToken,
    Reader,
    Writer,
    Admin,
}

impl Who {
    fn token(self) -> Option<&'static str> {
        match self {
            Who::Nobody => None,
            Who::WrongToken => Some("not-a-token-anyone-has"),
            Who::Reader => Some(token("reader")),
            Who::Writer => Some(token("writer")),
            Who::Admin => Some(token("admin")),
        }
    }
}

/// Every route: method, path, body, the weakest caller allowed (`Nobody`: open), and the
/// error field of its API (`error`, `detail`, or both).
fn routes() -> Vec<(
    Method,
    &'static str,
    Option<&'static str>,
    Who,
    &'static str,
)> {
    use Who::{Admin, Nobody, Reader, Writer};
    let put = Some(r#"{"key":"t","value":"v"}"#);
    let batch = Some(r#"{"items":[{"key":"t","value":"v"}]}"#);
    let value = Some(r#"{"value":"v"}"#);
    vec![
        (Method::GET, "/health", None, Nobody, "both"),
        (Method::POST, "/put", put, Writer, "error"),
        (Method::POST, "/batchput", batch, Writer, "error"),
        (Method::GET, "/get?key=t", None, Reader, "error"),
        (Method::GET, "/range?start=a&end=z", None, Reader, "error"),
        (Method::DELETE, "/delete?key=gone", None, Writer, "error"),
        (Method::GET, "/raft/status", None, Reader, "error"),
        (Method::GET, "/key/t", None, Reader, "detail"),
        (Method::PUT, "/key/t", value, Writer, "detail"),
        (Method::DELETE, "/key/gone", None, Writer, "detail"),
        (Method::GET, "/key/t/history", None, Reader, "detail"),
        (Method::GET, "/key/t/versions", None, Reader, "detail"),
        (Method::GET, "/keys", None, Reader, "detail"),
        (Method::GET, "/cluster_status", None, Reader, "detail"),
        (
            Method::GET,
            "/request_status?client_id=c&request_id=r",
            None,
            Reader,
            "detail",
        ),
        (Method::GET, "/segments", None, Admin, "detail"),
        (Method::GET, "/deduplication_stats", None, Admin, "detail"),
        (Method::POST, "/compaction/run", None, Admin, "detail"),
        (Method::GET, "/compaction/status", None, Admin, "detail"),
        (
            Method::POST,
            "/compaction/configure?enabled=true",
            None,
            Admin,
            "detail",
        ),
        (Method::GET, "/metrics", None, Admin, "both"),
        (Method::GET, "/admin/backup", None, Admin, "both"),
        (Method::GET, "/no/such/route", None, Reader, "both"),
    ]
}

fn assert_error_shape(a: &Answer, field: &str, what: &str) {
    let has = |f: &str| a.json.get(f).and_then(|v| v.as_str()).is_some();
    match field {
        "both" => assert!(has("error") && has("detail"), "{what}: {:?}", a.json),
        "error" => assert!(has("error") && !has("detail"), "{what}: {:?}", a.json),
        _ => assert!(has("detail") && !has("error"), "{what}: {:?}", a.json),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_needs_exactly_its_role_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Running::start(pki.config(dir.path(), false)).await;
    let c = client(client_tls(&pki.ca.cert, None));
    for (method, path, body, need, field) in routes() {
        for who in [
            Who::Nobody,
            Who::WrongToken,
            Who::Reader,
            Who::Writer,
            Who::Admin,
        ] {
            let url = format!("{}{path}", server.base);
            let a = send(&c, method.clone(), &url, who.token(), body)
                .await
                .unwrap();
            let what = format!("{method} {path} as {who:?}");
            if need == Who::Nobody || (who >= Who::Reader && who >= need) {
                assert!(
                    a.status != 401 && a.status != 403,
                    "{what}: {} {:?}",
                    a.status,
                    a.json
                );
            } else if who < Who::Reader {
                assert_eq!(a.status, 401, "{what}: {:?}", a.json);
                let challenge = a.challenge.as_deref().unwrap_or_default();
                assert!(challenge.starts_with("Bearer"), "{what}: {challenge:?}");
                assert_eq!(
                    challenge.contains("invalid_token"),
                    who == Who::WrongToken,
                    "{what}: {challenge:?}"
                );
                assert_error_shape(&a, field, &what);
            } else {
                assert_eq!(a.status, 403, "{what}: {:?}", a.json);
                assert!(a.challenge.is_none(), "{what}");
                assert_error_shape(&a, field, &what);
            }
        }
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_requests_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Running::start(pki.config(dir.path(), false)).await;
    let c = client(client_tls(&pki.ca.cert, None));
    let admin = Some(token("admin"));
    let put = format!("{}/key/kept", server.base);
    let a = send(
        &c,
        Method::PUT,
        &put,
        admin,
        Some(r#"{"value":"original"}"#),
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    let before = server.state.db().last_seqno();
    for who in [Who::Nobody, Who::WrongToken, Who::Reader] {
        for (method, path, body) in [
            (Method::PUT, "/key/kept", Some(r#"{"value":"changed"}"#)),
            (Method::DELETE, "/key/kept", None),
            (
                Method::POST,
                "/put",
                Some(r#"{"key":"kept","value":"changed"}"#),
            ),
            (
                Method::POST,
                "/batchput",
                Some(r#"{"items":[{"key":"kept","value":"changed"}]}"#),
            ),
            (Method::DELETE, "/delete?key=kept", None),
            (Method::POST, "/compaction/run?force=true", None),
            (Method::POST, "/compaction/configure?enabled=false", None),
        ] {
            let url = format!("{}{path}", server.base);
            let a = send(&c, method.clone(), &url, who.token(), body)
                .await
                .unwrap();
            assert!(
                a.status == 401 || a.status == 403,
                "{method} {path} as {who:?}: {}",
                a.status
            );
        }
    }
    assert_eq!(server.state.db().last_seqno(), before);
    let a = send(&c, Method::GET, &put, Some(token("reader")), None)
        .await
        .unwrap();
    assert_eq!(
        (a.status, &a.json["value"], &a.json["version"]),
        (200, &json!("original"), &json!(1))
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_records_belong_to_their_caller() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Running::start(pki.config(dir.path(), false)).await;
    let c = client(client_tls(&pki.ca.cert, None));
    let (one, two) = (Some(token("writer")), Some(token("writer2")));
    let url = format!("{}/key/shared?client_id=c1&request_id=r1", server.base);

    let first = send(&c, Method::PUT, &url, one, Some(r#"{"value":"one"}"#))
        .await
        .unwrap();
    assert_eq!((first.status, &first.json["version"]), (200, &json!(1)));
    // the same ids from another caller: a new request, applied, not the first caller's answer
    let other = send(&c, Method::PUT, &url, two, Some(r#"{"value":"two"}"#))
        .await
        .unwrap();
    assert_eq!((other.status, &other.json["version"]), (200, &json!(2)));
    assert_ne!(other.json["id"], first.json["id"]);
    // each caller's retry replays its own answer
    let retry_one = send(&c, Method::PUT, &url, one, Some(r#"{"value":"one"}"#))
        .await
        .unwrap();
    assert_eq!(retry_one.json, first.json);
    let retry_two = send(&c, Method::PUT, &url, two, Some(r#"{"value":"two"}"#))
        .await
        .unwrap();
    assert_eq!(retry_two.json, other.json);
    // request_status shows a caller its own record only
    let status_url = format!(
        "{}/request_status?client_id=c1&request_id=r1&operation=SET&key=shared",
        server.base
    );
    let s1 = send(&c, Method::GET, &status_url, one, None).await.unwrap();
    assert_eq!(s1.json["processed"], json!(true), "{:?}", s1.json);
    assert_eq!(s1.json["result"], first.json);
    let s2 = send(&c, Method::GET, &status_url, two, None).await.unwrap();
    assert_eq!(s2.json["result"], other.json);
    let s3 = send(&c, Method::GET, &status_url, Some(token("reader")), None)
        .await
        .unwrap();
    assert_eq!(s3.json, json!({"processed": false}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_on_the_tls_port_is_told_to_use_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Running::start(pki.config(dir.path(), false)).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 "), "{text}");
    assert!(text.contains("connect with TLS"), "{text}");
    // a plain client of the same port gets that answer, never a route's
    let c = client(client_tls(&pki.ca.cert, None));
    let url = format!("http://{}/key/x", server.addr);
    let a = send(&c, Method::GET, &url, Some(token("admin")), None)
        .await
        .unwrap();
    assert_eq!(a.status, 400);
    // the TLS port still serves TLS
    let a = send(
        &c,
        Method::GET,
        &format!("{}/health", server.base),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_from_another_ca_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Running::start(pki.config(dir.path(), true)).await;
    let url = format!("{}/key/x", server.base);
    let body = Some(r#"{"value":"v"}"#);
    let writer = Some(token("writer"));

    let good = client(client_tls(
        &pki.ca.cert,
        Some((&pki.client_cert, &pki.client_key)),
    ));
    let a = send(&good, Method::PUT, &url, writer, body).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json);
    let seqno = server.state.db().last_seqno();

    let foreign = client(client_tls(
        &pki.ca.cert,
        Some((&pki.foreign_cert, &pki.foreign_key)),
    ));
    let e = send(&foreign, Method::PUT, &url, writer, body)
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    let none = client(client_tls(&pki.ca.cert, None));
    send(&none, Method::PUT, &url, writer, body)
        .await
        .unwrap_err();
    assert_eq!(server.state.db().last_seqno(), seqno);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_handshake_gives_its_slot_back() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut config = pki.config(dir.path(), false);
    config.max_connections = 1;
    config.security.tls_handshake_timeout = Duration::from_millis(300);
    let server = Running::start(config).await;
    // the only slot: a connection that starts a TLS record and stops
    let mut stalled = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(&[0x16, 0x03, 0x01]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("the server drops the stalled handshake")
        .unwrap_or(0);
    assert_eq!(n, 0);
    let c = client(client_tls(&pki.ca.cert, None));
    let a = send(
        &c,
        Method::GET,
        &format!("{}/health", server.base),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_and_tokens_reload_when_their_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut config = pki.config(dir.path(), false);
    config.security.reload_check_every = Some(Duration::from_millis(50));
    let server = Running::start(config).await;
    let first = security_support::der_of(&pki.server_cert);
    assert_eq!(
        security_support::served_certificate(server.addr, &pki.ca.cert).await,
        first
    );

    // a new certificate and key under the same names
    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let (cert, key) = pki.ca.leaf(&staging, "server", true);
    std::fs::rename(&key, &pki.server_key).unwrap();
    std::fs::rename(&cert, &pki.server_cert).unwrap();
    let second = security_support::der_of(&pki.server_cert);
    assert_ne!(first, second);
    let mut served = Vec::new();
    for _ in 0..200 {
        served = security_support::served_certificate(server.addr, &pki.ca.cert).await;
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(served, second);

    // a broken key file is refused; the served certificate stays
    std::fs::write(&pki.server_key, "not a key").unwrap();
    assert!(
        server
            .state
            .reload_security()
            .unwrap_err()
            .contains("key file")
    );
    assert_eq!(
        security_support::served_certificate(server.addr, &pki.ca.cert).await,
        second
    );

    // a token added to the file works after a reload; one removed no longer does
    let c = client(client_tls(&pki.ca.cert, None));
    let url = format!("{}/keys", server.base);
    std::fs::write(
        &pki.auth_file,
        format!(
            "newcomer read {}\n",
            security_support::sha256_hex("fresh-token")
        ),
    )
    .unwrap();
    let _ = server.state.reload_security(); // the key file is still broken
    let a = send(&c, Method::GET, &url, Some("fresh-token"), None)
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.json);
    let a = send(&c, Method::GET, &url, Some(token("reader")), None)
        .await
        .unwrap();
    assert_eq!(a.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn a_non_loopback_address_needs_tls_and_tokens_or_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::default();
    config.data_dir = dir.path().join("data");
    config.host = "0.0.0.0".into();
    config.port = 0;
    let e = server::bind(&config).await.unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    let m = server::bind_error_message("0.0.0.0:0", &e);
    assert!(m.contains("refusing to listen on 0.0.0.0:0"), "{m}");
    assert!(m.contains("--insecure"), "{m}");
    // TLS alone is not enough
    let pki = Pki::new(dir.path());
    config.security.tls_cert = Some(pki.server_cert.clone());
    config.security.tls_key = Some(pki.server_key.clone());
    let e = server::bind(&config).await.unwrap_err();
    assert!(e.to_string().contains("without authentication"), "{e}");
    // the loopback default needs nothing
    let mut config = ServerConfig::default();
    config.port = 0;
    assert!(server::bind(&config).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_file_that_does_not_load_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut config = pki.config(dir.path(), false);
    std::fs::write(dir.path().join("bad-tokens"), "alice superuser 00\n").unwrap();
    config.security.auth_file = Some(dir.path().join("bad-tokens"));
    let db = config.open_store().unwrap();
    let e = strata::server::AppState::new(db.clone(), config).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("line 1: role \"superuser\""), "{e}");
    db.close().unwrap();
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_client_speaks_tls_with_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = Running::start(pki.config(dir.path(), true)).await;
    let token_file = dir.path().join("writer.token");
    std::fs::write(&token_file, format!("{}\n", token("writer"))).unwrap();
    let base = server.base.clone();
    let strata = |args: Vec<String>| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .env_remove("STRATA_TOKEN")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let path = |p: &std::path::Path| p.display().to_string();
    let common = vec![
        "--endpoint".to_string(),
        base.clone(),
        "--cacert".into(),
        path(&pki.ca.cert),
        "--client-cert".into(),
        path(&pki.client_cert),
        "--client-key".into(),
        path(&pki.client_key),
    ];
    let with = |extra: &[&str]| {
        let mut v = common.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        v
    };
    let tf = path(&token_file);
    let (code, _, err) = tokio::task::spawn_blocking({
        let a = with(&["--token-file", &tf, "put", "cli-key", "cli-value"]);
        move || strata(a)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    let (code, out, err) = tokio::task::spawn_blocking({
        let a = with(&["--token-file", &tf, "get", "cli-key"]);
        move || strata(a)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cli-value"), "{out}");
    // no token: refused by the server (exit 7)
    let (code, _, err) = tokio::task::spawn_blocking({
        let a = with(&["get", "cli-key"]);
        move || strata(a)
    })
    .await
    .unwrap();
    assert_eq!(code, Some(7), "{err}");
    server.stop().await;
}
