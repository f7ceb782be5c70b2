//! How a node's peer clients (the Raft RPCs in [`network`](super::network), the read-index
//! requests in [`read_index`](super::read_index)) reach other members: plain HTTP, or HTTPS
//! with mutual TLS.
//!
//! - **Plain.** `http://`; for a cluster on loopback or a trusted network only.
//! - **Mutual TLS.** `https://`, with a rustls client configuration the server builds from
//!   the peer certificate, key and CA files: the peer CA is the only trust root (a member
//!   whose certificate another CA signed is not believed), and the node presents its own
//!   peer certificate, which the receiving member checks against the same CA. Every
//!   handshake offers the ALPN protocol [`PEER_ALPN`], by which the receiving port tells a
//!   peer's connection from a client's (the two may be served different certificates).
//! - **Reload.** [`PeerTransport::set_tls`] swaps the configuration and bumps a generation
//!   number; the clients notice the new generation at their next request and build a fresh
//!   connection pool, so new connections use the new certificate, while requests already
//!   running finish on the old pool. No member is disconnected by a reload.

use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use parking_lot::RwLock;

/// The ALPN protocol name a peer's TLS handshake offers.
pub const PEER_ALPN: &[u8] = b"strata-peer/1";

/// A pooled HTTP/1.1 client to peers (HTTPS when the transport has TLS).
pub type PeerClient<B> = Client<HttpsConnector<HttpConnector>, B>;

/// How connections to peers are made; cheap to clone (clones share the TLS setting).
#[derive(Clone, Default)]
pub struct PeerTransport {
    tls: Option<Arc<RwLock<Current>>>,
}

struct Current {
    generation: u64,
    config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for PeerTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerTransport")
            .field("tls", &self.tls.is_some())
            .field("generation", &self.generation())
            .finish()
    }
}

/// Sets the peer ALPN name on `config` (whatever it offered before).
fn with_peer_alpn(config: &rustls::ClientConfig) -> Arc<rustls::ClientConfig> {
    let mut config = config.clone();
    config.alpn_protocols = vec![PEER_ALPN.to_vec()];
    Arc::new(config)
}

impl PeerTransport {
    /// Plain HTTP to every peer.
    pub fn plain() -> PeerTransport {
        PeerTransport { tls: None }
    }

    /// HTTPS to every peer with `config` (its ALPN list is replaced by [`PEER_ALPN`]).
    pub fn tls(config: &rustls::ClientConfig) -> PeerTransport {
        PeerTransport {
            tls: Some(Arc::new(RwLock::new(Current {
                generation: 0,
                config: with_peer_alpn(config),
            }))),
        }
    }

    /// Replaces the TLS configuration of new connections (see the module comment). A plain
    /// transport stays plain: the error says so and nothing changes.
    pub fn set_tls(&self, config: &rustls::ClientConfig) -> Result<(), String> {
        let Some(tls) = &self.tls else {
            return Err("peer connections are plain HTTP; TLS cannot be added by a reload".into());
        };
        let config = with_peer_alpn(config);
        let mut current = tls.write();
        current.generation += 1;
        current.config = config;
        Ok(())
    }

    /// True when peers are reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// `https` or `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// Bumped by every [`set_tls`](Self::set_tls); a client built at an older generation
    /// should be replaced.
    pub fn generation(&self) -> u64 {
        self.tls.as_ref().map_or(0, |t| t.read().generation)
    }

    /// A new pooled client with the current setting, and the generation it was built at.
    /// Connects within `connect_timeout`; keeps up to `max_idle` idle connections for
    /// `idle` each.
    pub fn client<B>(
        &self,
        connect_timeout: Duration,
        idle: Duration,
        max_idle: usize,
    ) -> (u64, PeerClient<B>)
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
    {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(30)));
        let (generation, connector) = match &self.tls {
            Some(tls) => {
                http.enforce_http(false);
                let current = tls.read();
                let mut connector = HttpsConnector::from((http, Arc::clone(&current.config)));
                connector.enforce_https();
                (current.generation, connector)
            }
            None => (0, HttpsConnector::from((http, plain_config()))),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(idle)
            .pool_max_idle_per_host(max_idle)
            .build(connector);
        (generation, client)
    }
}

/// The TLS configuration of a plain transport's connector, which only ever sees `http://`
/// addresses: it trusts nothing.
fn plain_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: std::sync::OnceLock<Arc<rustls::ClientConfig>> = std::sync::OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map(|b| {
                b.with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth()
            });
        match config {
            Ok(c) => Arc::new(c),
            // ring's provider supports the default versions; this branch is not taken.
            Err(_) => Arc::new(
                rustls::ClientConfig::builder()
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth(),
            ),
        }
    }))
}
