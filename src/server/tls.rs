//! TLS on the client port: the certificate files, the reloadable server configuration, the
//! handshake (bounded in time), and the plain-or-TLS byte stream under each connection.
//!
//! A cluster member with peer TLS (`peer_tls.rs`) serves two configurations on its one
//! port: the handshake reads the client's hello first, and one that offers the peers' ALPN
//! name gets the peer configuration (the peer certificate, and a client certificate signed
//! by the peer CA required), every other one the client configuration. A connection that
//! completed the peer handshake is marked [`PeerVerified`].
//!
//! - **Files.** The certificate chain and the private key are PEM files; with a client CA
//!   (also PEM, one or more certificates), every client must present a certificate that CA
//!   signed, or the handshake fails. Only TLS 1.2 and 1.3 are offered, with ring's
//!   cipher suites, and ALPN names `http/1.1`.
//! - **Reload.** [`Tls::reload`] reads the files again and, when they load, swaps the
//!   configuration new handshakes use; connections already open keep theirs. A reload that
//!   fails (a missing file, a key that does not match the certificate) changes nothing.
//! - **Handshake.** [`handshake`] runs after the connection took a slot under the connection
//!   cap, and must finish within the handshake timeout, so a client that opens a connection
//!   and stalls holds its slot for a bounded time. A client that speaks plain HTTP to the TLS
//!   port (its first byte is not a TLS handshake record) gets a plain-text `400` with a JSON
//!   body saying so, and the connection is closed.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::RwLock;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::{LazyConfigAcceptor, TlsAcceptor};

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The PEM files TLS is configured from.
#[derive(Debug, Clone)]
pub(crate) struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// Every file, for change detection.
    pub(crate) fn paths(&self) -> Vec<&Path> {
        let mut v = vec![self.cert.as_path(), self.key.as_path()];
        v.extend(self.client_ca.as_deref());
        v
    }
}

/// TLS for one listener: its files and the configuration new handshakes use.
pub(crate) struct Tls {
    files: TlsFiles,
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("files", &self.files).finish()
    }
}

impl Tls {
    /// Loads the files; an error names the file and what is wrong with it.
    pub(crate) fn load(files: TlsFiles) -> Result<Tls, String> {
        let config = build(&files)?;
        Ok(Tls {
            files,
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// Reads the files again; on success new handshakes use them, on failure nothing changes.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let config = build(&self.files)?;
        *self.current.write() = Arc::new(config);
        Ok(())
    }

    /// The files.
    pub(crate) fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// The configuration of a new connection.
    pub(crate) fn config(&self) -> Arc<rustls::ServerConfig> {
        Arc::clone(&self.current.read())
    }
}

/// The PEM certificates in `path` (at least one); `what` names the file in errors.
pub(crate) fn read_certs(what: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "the {what} {} holds no PEM certificate",
            path.display()
        ));
    }
    Ok(certs)
}

/// The trust roots of a CA file (PEM, one or more certificates).
pub(crate) fn read_roots(what: &str, path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(what, path)? {
        roots
            .add(cert)
            .map_err(|e| format!("the {what} {} is not usable: {e}", path.display()))?;
    }
    Ok(roots)
}

/// The PEM private key in `path`.
pub(crate) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))
}

/// A server configuration presenting `cert` (with `key`), requiring a client certificate
/// signed by the CA in `client_ca` when given, and offering `alpn`.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<(&str, &Path)>,
    alpn: &[u8],
) -> Result<rustls::ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let chain = read_certs("certificate file", cert)?;
    let private = read_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some((what, ca)) => {
            let roots = read_roots(what, ca)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("the {what} {} is not usable: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_single_cert(chain, private).map_err(|e| {
        format!(
            "the certificate {} and key {} do not make a usable pair: {e}",
            cert.display(),
            key.display()
        )
    })?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The ALPN name clients are offered.
pub(crate) const HTTP1_ALPN: &[u8] = b"http/1.1";

/// The rustls server configuration the files describe.
fn build(files: &TlsFiles) -> Result<rustls::ServerConfig, String> {
    server_config(
        &files.cert,
        &files.key,
        files.client_ca.as_deref().map(|ca| ("client CA file", ca)),
        HTTP1_ALPN,
    )
}

/// The configurations one handshake chooses from.
#[derive(Clone)]
pub(crate) struct Acceptors {
    /// For clients.
    pub client: Arc<rustls::ServerConfig>,
    /// For peers: the configuration, and the ALPN name by which a peer's hello asks for it.
    pub peer: Option<(Arc<rustls::ServerConfig>, &'static [u8])>,
}

/// Marks a request that arrived on a connection whose client completed the peer handshake:
/// it offered the peers' ALPN name and presented a certificate the peer CA signed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerVerified;

/// A connection's byte stream: plain TCP, or TLS over TCP.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP, after a completed handshake.
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// Why a TLS connection was not established.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The client spoke plain HTTP; it was told so.
    PlainHttp,
    /// The handshake did not finish within the timeout.
    TimedOut,
    /// The client left, or the handshake failed (an untrusted client certificate, no common
    /// protocol version or cipher suite).
    Failed(io::Error),
}

/// Runs the server side of the TLS handshake on `tcp`, within `timeout` in all (see the
/// module comment). The flag is true for a peer's connection ([`PeerVerified`]).
pub(crate) async fn handshake(
    acceptors: Acceptors,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<(Stream, bool), Refused> {
    let until = tokio::time::Instant::now() + timeout;
    let mut first = [0u8; 1];
    match tokio::time::timeout_at(until, tcp.peek(&mut first)).await {
        Err(_) => return Err(Refused::TimedOut),
        Ok(Err(e)) => return Err(Refused::Failed(e)),
        Ok(Ok(0)) => return Err(Refused::Failed(io::ErrorKind::UnexpectedEof.into())),
        Ok(Ok(_)) => {}
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        tell_plain_client(tcp, until).await;
        return Err(Refused::PlainHttp);
    }
    let accept = async {
        let Some((peer_config, peer_alpn)) = acceptors.peer else {
            let stream = TlsAcceptor::from(acceptors.client).accept(tcp).await?;
            return Ok((stream, false));
        };
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), tcp).await?;
        let peer = start
            .client_hello()
            .alpn()
            .is_some_and(|mut offered| offered.any(|p| p == peer_alpn));
        let config = if peer { peer_config } else { acceptors.client };
        Ok::<_, io::Error>((start.into_stream(config).await?, peer))
    };
    match tokio::time::timeout_at(until, accept).await {
        Err(_) => Err(Refused::TimedOut),
        Ok(Err(e)) => Err(Refused::Failed(e)),
        Ok(Ok((stream, peer))) => Ok((Stream::Tls(Box::new(stream)), peer)),
    }
}

/// Answers a plain-HTTP client on the TLS port with a `400` and closes the connection.
async fn tell_plain_client(mut tcp: TcpStream, until: tokio::time::Instant) {
    let message = "this port serves HTTPS: connect with TLS (https://)";
    let body = serde_json::json!({"error": message, "detail": message}).to_string();
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let until = until.min(tokio::time::Instant::now() + Duration::from_secs(1));
    if tokio::time::timeout_at(until, tcp.write_all(answer.as_bytes()))
        .await
        .is_ok()
        && tcp.shutdown().await.is_ok()
    {
        super::conn_io::linger(Stream::Plain(tcp), until).await;
    }
}
