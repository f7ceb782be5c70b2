//! Mutual TLS between cluster members (feature `replication`): the peer certificate, key
//! and CA files (`--peer-cert`, `--peer-key`, `--peer-ca`), the server configurations the
//! port serves peers with, the client configuration this node's own peer clients use
//! (`replication::transport`), and the check that keeps the peer routes for peers.
//!
//! **Design: one port, told apart in the handshake.** A member keeps the single address
//! the cluster knows it by (its `--peers` entry and membership record); with peer TLS every
//! connection to it is TLS. A peer's client offers the ALPN name
//! [`PEER_ALPN`](crate::replication::transport::PEER_ALPN) and gets the peer configuration:
//! the node presents its peer certificate and requires a client certificate the peer CA
//! signed, or the handshake fails before any byte of HTTP. Every other connection gets the
//! client configuration (`--tls-cert`, or the peer certificate when the client port has no
//! certificate of its own, without a client certificate required). The peer routes (the
//! Raft RPCs and `GET /raft/read_index`) then refuse, with `403`, any request that did not
//! arrive on a peer handshake ([`require_peer`]): a client, however well authenticated,
//! cannot vote, append, install a snapshot or take a read index, and a node whose
//! certificate another CA signed never gets past the handshake. A second listener for peers
//! would need a second address per member, in `--peers` and in the membership log; the
//! handshake split keeps both as they are, and keeps the checks in two places (TLS layer and
//! route) that must both fail for a stranger to reach Raft.
//!
//! Peers verify each other as servers too: the peer CA is this node's only trust root for
//! peer connections, and a member's certificate must name the host of its address (an IP
//! address or DNS name in its subject alternative names). Certificates should carry both the
//! server and client extended key usages (or none).
//!
//! **Reload.** [`PeerTls::reload`] reads the three files again; when they load, new peer
//! handshakes (in and out) use them. Open connections keep theirs, so a reload does not
//! disturb the cluster; a reload that fails changes nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use parking_lot::RwLock;

use super::security::Security;
use super::tls::{HTTP1_ALPN, PeerVerified, read_certs, read_key, read_roots, server_config};
use crate::replication::transport::{PEER_ALPN, PeerTransport};

/// The PEM files of peer TLS.
#[derive(Debug, Clone)]
pub(crate) struct PeerFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

struct Configs {
    /// Peers' handshakes.
    peer: Arc<rustls::ServerConfig>,
    /// Clients' handshakes on a port with no client certificate of its own.
    clients: Arc<rustls::ServerConfig>,
    /// This node's peer clients.
    client: rustls::ClientConfig,
}

/// Peer TLS of one member: its files, the configurations in use, and the transport its
/// peer clients share.
pub(crate) struct PeerTls {
    files: PeerFiles,
    current: RwLock<(Arc<rustls::ServerConfig>, Arc<rustls::ServerConfig>)>,
    transport: PeerTransport,
}

impl std::fmt::Debug for PeerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTls")
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

fn build(files: &PeerFiles) -> Result<Configs, String> {
    let peer = server_config(
        &files.cert,
        &files.key,
        Some(("peer CA file", &files.ca)),
        PEER_ALPN,
    )?;
    let clients = server_config(&files.cert, &files.key, None, HTTP1_ALPN)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_root_certificates(read_roots("peer CA file", &files.ca)?)
        .with_client_auth_cert(
            read_certs("peer certificate file", &files.cert)?,
            read_key(&files.key)?,
        )
        .map_err(|e| {
            format!(
                "the peer certificate {} and key {} do not make a usable pair: {e}",
                files.cert.display(),
                files.key.display()
            )
        })?;
    Ok(Configs {
        peer: Arc::new(peer),
        clients: Arc::new(clients),
        client,
    })
}

impl PeerTls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub(crate) fn load(files: PeerFiles) -> Result<PeerTls, String> {
        let c = build(&files)?;
        Ok(PeerTls {
            files,
            current: RwLock::new((c.peer, c.clients)),
            transport: PeerTransport::tls(&c.client),
        })
    }

    /// Reads the files again; on success new handshakes, in and out, use them.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let c = build(&self.files)?;
        self.transport.set_tls(&c.client)?;
        *self.current.write() = (c.peer, c.clients);
        Ok(())
    }

    /// The configuration of peers' handshakes.
    pub(crate) fn peer_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().0)
    }

    /// The configuration of clients' handshakes when the port has no certificate of its own.
    pub(crate) fn clients_config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read().1)
    }

    /// The transport this node's peer clients use.
    pub(crate) fn transport(&self) -> &PeerTransport {
        &self.transport
    }

    /// Every file, for change detection.
    pub(crate) fn paths(&self) -> Vec<&Path> {
        vec![
            self.files.cert.as_path(),
            self.files.key.as_path(),
            self.files.ca.as_path(),
        ]
    }

    /// The certificate file (for logs).
    pub(crate) fn cert(&self) -> &Path {
        &self.files.cert
    }
}

/// Lets a request through to the peer routes only if it came on a peer handshake, when the
/// node has peer TLS; otherwise (a cluster without TLS, on loopback or `--insecure`) lets
/// every request through, as before.
pub(crate) async fn require_peer(
    State(security): State<Arc<Security>>,
    request: Request,
    next: Next,
) -> Response {
    if security.peer().is_none() || request.extensions().get::<PeerVerified>().is_some() {
        return next.run(request).await;
    }
    let message = "this route is for cluster members: connect with the peer certificate \
                   (signed by the cluster's peer CA) over the peer TLS handshake";
    let body = serde_json::json!({ "error": message, "detail": message }).to_string();
    let mut r = (StatusCode::FORBIDDEN, body).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
