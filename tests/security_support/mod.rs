//! Helpers for the security tests: certificates made at test time (a CA, a server
//! certificate for 127.0.0.1 and localhost, client certificates from that CA and from a
//! foreign one), a token file with one token per role, a server on a free loopback port, and
//! an HTTPS client.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use strata::server::{self, AppState, ServerConfig};

/// A certificate authority that can sign more certificates.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
    /// Where its certificate's PEM is.
    pub cert: PathBuf,
}

impl Ca {
    /// A new CA named `name`, its certificate written to `dir/<name>-ca.pem`.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let cert = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&cert, issuer.pem()).unwrap();
        Ca { issuer, cert }
    }

    /// Signs a leaf certificate; writes `dir/<name>.pem` and `dir/<name>.key`.
    pub fn leaf(&self, dir: &Path, name: &str, server: bool) -> (PathBuf, PathBuf) {
        let sans = if server {
            vec!["localhost".to_string(), "127.0.0.1".to_string()]
        } else {
            vec![format!("{name}.clients.test")]
        };
        let mut params = CertificateParams::new(sans).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![if server {
            ExtendedKeyUsagePurpose::ServerAuth
        } else {
            ExtendedKeyUsagePurpose::ClientAuth
        }];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

impl Ca {
    /// Signs a cluster member's peer certificate (for 127.0.0.1 and localhost, usable as
    /// server and as client); writes `dir/<name>.pem` and `dir/<name>.key`, replacing them
    /// by rename so a reloading server never reads half a file.
    pub fn peer_leaf(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            dir.join(format!("{name}.pem")),
            dir.join(format!("{name}.key")),
        );
        for (path, text) in [(&k, key.serialize_pem()), (&c, cert.pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).unwrap();
            std::fs::rename(&tmp, path).unwrap();
        }
        (c, k)
    }
}

/// Hex SHA-256.
pub fn sha256_hex(token: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The tokens of [`write_auth_file`]: (name, role, token).
pub const TOKENS: [(&str, &str, &str); 4] = [
    ("reader", "read", "token-of-the-reader"),
    ("writer", "write", "token-of-the-writer"),
    ("writer2", "write", "token-of-another-writer"),
    ("admin", "admin", "token-of-the-admin"),
];

/// The token of `name` in [`TOKENS`].
pub fn token(name: &str) -> &'static str {
    TOKENS.iter().find(|t| t.0 == name).unwrap().2
}

/// Writes a token file holding [`TOKENS`] (with comments) to `dir/tokens`.
pub fn write_auth_file(dir: &Path) -> PathBuf {
    let mut text = String::from("# name role sha256\n\n");
    for (name, role, token) in TOKENS {
        text.push_str(&format!("{name} {role} {}  # {role}\n", sha256_hex(token)));
    }
    let path = dir.join("tokens");
    std::fs::write(&path, text).unwrap();
    path
}

/// The files of a secured test server.
pub struct Pki {
    pub ca: Ca,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub foreign_cert: PathBuf,
    pub foreign_key: PathBuf,
    pub auth_file: PathBuf,
}

impl Pki {
    pub fn new(dir: &Path) -> Pki {
        let ca = Ca::new(dir, "cluster");
        let (server_cert, server_key) = ca.leaf(dir, "server", true);
        let (client_cert, client_key) = ca.leaf(dir, "client", false);
        let foreign = Ca::new(dir, "foreign");
        let (foreign_cert, foreign_key) = foreign.leaf(dir, "intruder", false);
        Pki {
            ca,
            server_cert,
            server_key,
            client_cert,
            client_key,
            foreign_cert,
            foreign_key,
            auth_file: write_auth_file(dir),
        }
    }

    /// A test configuration over `dir/data` with TLS and tokens (and client certificates
    /// when `mutual`).
    pub fn config(&self, dir: &Path, mutual: bool) -> ServerConfig {
        let mut c = ServerConfig::default();
        c.data_dir = dir.join("data");
        c.node_id = "secure-node".into();
        c.security.tls_cert = Some(self.server_cert.clone());
        c.security.tls_key = Some(self.server_key.clone());
        c.security.auth_file = Some(self.auth_file.clone());
        if mutual {
            c.security.client_ca = Some(self.ca.cert.clone());
        }
        c
    }
}

/// Client TLS settings trusting `ca`, presenting `identity` (certificate, key) if given.
pub fn client_tls(ca: &Path, identity: Option<(&Path, &Path)>) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .map(Result::unwrap)
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
        None => b.with_no_client_auth(),
    }
}

/// An HTTPS (or HTTP) client.
pub type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client with the TLS settings `tls`, which also speaks plain HTTP to `http://` URLs.
pub fn client(tls: rustls::ClientConfig) -> Client {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector)
}

/// An answer: status, the `WWW-Authenticate` header, and the body parsed as JSON (null
/// when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub challenge: Option<String>,
    pub json: Value,
}

/// Sends one request with the bearer `token` (if any); `Err` with the client's error when no
/// HTTP answer came (a refused handshake).
pub async fn send(
    client: &Client,
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> Result<Answer, String> {
    let mut req = Request::builder().method(method).uri(url);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or("").to_string())))
        .unwrap();
    let call = async {
        let resp = client.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok(Answer {
            status,
            challenge,
            json,
        })
    };
    tokio::time::timeout(Duration::from_secs(10), call)
        .await
        .expect("an answer or an error in time")
}

/// A running server on 127.0.0.1 and a free port.
pub struct Running {
    /// `https://127.0.0.1:PORT` (or `http://` without TLS).
    pub base: String,
    pub addr: std::net::SocketAddr,
    pub state: AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Running {
    /// Opens the store and serves `config`.
    pub async fn start(config: ServerConfig) -> Running {
        config.validate().unwrap();
        let tls = config.security.tls_cert.is_some();
        let db = config.open_store().unwrap();
        let state = AppState::new(db, config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(listener, state.clone(), async move {
            let _ = rx.await;
        }));
        let scheme = if tls { "https" } else { "http" };
        Running {
            base: format!("{scheme}://{addr}"),
            addr,
            state,
            stop: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server and closes the store.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(15), task)
                .await
                .expect("the server stops in time")
                .unwrap()
                .unwrap();
        }
        let state = self.state.clone();
        tokio::task::spawn_blocking(move || state.close())
            .await
            .unwrap()
            .unwrap();
    }
}

/// The DER of the certificate the server at `addr` presents in a new TLS handshake.
pub async fn served_certificate(addr: std::net::SocketAddr, ca: &Path) -> Vec<u8> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_tls(ca, None)));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let (_, conn) = tls.get_ref();
    conn.peer_certificates().unwrap()[0].as_ref().to_vec()
}

/// The DER of the (first) certificate in a PEM file.
pub fn der_of(pem: &Path) -> Vec<u8> {
    CertificateDer::pem_file_iter(pem)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}
