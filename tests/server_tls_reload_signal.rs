//! The real signal path of a certificate reload: after the certificate and key files are
//! replaced, SIGHUP to the process makes new handshakes present the new certificate (file
//! polling is off, so only the signal can have done it). This file holds one test, so the
//! signal reaches no other test.
#![cfg(all(feature = "server", unix))]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;

use std::time::Duration;

use security_support::{Pki, Running, der_of, served_certificate};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_makes_new_connections_get_the_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let mut config = pki.config(dir.path(), false);
    config.security.reload_check_every = None;
    let server = Running::start(config).await;
    let first = der_of(&pki.server_cert);
    // once a handshake is answered, the accept loop (and so the signal handler) is running
    assert_eq!(served_certificate(server.addr, &pki.ca.cert).await, first);

    let staging = dir.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    let (cert, key) = pki.ca.leaf(&staging, "server", true);
    std::fs::rename(&key, &pki.server_key).unwrap();
    std::fs::rename(&cert, &pki.server_cert).unwrap();
    let second = der_of(&pki.server_cert);
    assert_ne!(first, second);
    // without the signal nothing changes
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(served_certificate(server.addr, &pki.ca.cert).await, first);

    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut served = Vec::new();
    for _ in 0..200 {
        served = served_certificate(server.addr, &pki.ca.cert).await;
        if served == second {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(served, second);
    // the server still serves requests
    let c = security_support::client(security_support::client_tls(&pki.ca.cert, None));
    let a = security_support::send(
        &c,
        hyper::Method::GET,
        &format!("{}/health", server.base),
        None,
        None,
    )
    .await
    .unwrap();
    assert_eq!(a.status, 200);
    server.stop().await;
}
