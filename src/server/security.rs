//! The server's security settings and their live state: TLS on the client port (`tls`), the
//! bearer tokens (`auth`), mutual TLS between cluster members (`peer_tls`), the rule that
//! keeps an unprotected server off the network, and reloading certificates and tokens
//! without a restart.
//!
//! - **Safe defaults.** With neither TLS nor tokens the server is meant for loopback only:
//!   listening on any other address (`0.0.0.0` included) without both TLS and an auth file
//!   refuses to start ([`SecurityConfig::check_exposure`]) unless `insecure` is set, and then
//!   a warning is logged at start and shown on `/health`. With peer TLS the port is TLS for
//!   clients too (with the peer certificate, when there is no `tls_cert`).
//! - **Reload.** On SIGHUP, and when any of the files changes (checked every
//!   `reload_check_every`, default 2 s), the certificate, key, client CA, peer and token
//!   files are read again.
//!   Each part that loads replaces the old one for new connections and requests; a part that
//!   fails to load is logged and the old one is kept, so a half-written file never takes the
//!   server down.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use parking_lot::RwLock;

use super::auth::Tokens;
use super::tls::{Acceptors, Tls, TlsFiles};

/// Security settings of one server. The default: no TLS, no tokens, loopback only.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SecurityConfig {
    /// PEM certificate chain served on the client port; with `tls_key`, turns TLS on.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// PEM certificates of the CA that must have signed every client's certificate; clients
    /// without such a certificate fail the handshake. Needs TLS.
    pub client_ca: Option<PathBuf>,
    /// Token file (`NAME ROLE SHA256HEX` lines); when set, every route but `/health` needs
    /// `Authorization: Bearer <token>` with a role strong enough.
    pub auth_file: Option<PathBuf>,
    /// PEM certificate chain this node presents to its cluster peers (feature
    /// `replication`); with `peer_key` and `peer_ca`, turns on mutual TLS between members.
    pub peer_cert: Option<PathBuf>,
    /// PEM private key of `peer_cert`.
    pub peer_key: Option<PathBuf>,
    /// PEM certificates of the cluster's CA: the only issuer of peer certificates this node
    /// believes, as client and as server.
    pub peer_ca: Option<PathBuf>,
    /// Allows listening on a non-loopback address without TLS and tokens (with a warning).
    pub insecure: bool,
    /// Longest time a TLS handshake may take, from the connection's accept. Default 10 s.
    pub tls_handshake_timeout: Duration,
    /// How often the files are checked for changes (a change reloads them); `None` reloads
    /// on SIGHUP only. Default 2 s.
    pub reload_check_every: Option<Duration>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        SecurityConfig {
            tls_cert: None,
            tls_key: None,
            client_ca: None,
            auth_file: None,
            peer_cert: None,
            peer_key: None,
            peer_ca: None,
            insecure: false,
            tls_handshake_timeout: Duration::from_secs(10),
            reload_check_every: Some(Duration::from_secs(2)),
        }
    }
}

impl SecurityConfig {
    /// Checks that the settings fit together (it reads no file).
    pub fn validate(&self) -> Result<(), String> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => return Err("a TLS certificate needs its key (--tls-key)".into()),
            (None, Some(_)) => {
                return Err("a TLS key needs its certificate (--tls-cert)".into());
            }
            _ => {}
        }
        if self.client_ca.is_some() && self.tls_cert.is_none() {
            return Err(
                "client certificate checks (--client-ca) need TLS (--tls-cert, --tls-key)".into(),
            );
        }
        let peer = [&self.peer_cert, &self.peer_key, &self.peer_ca];
        if peer.iter().any(|p| p.is_some()) && !peer.iter().all(|p| p.is_some()) {
            return Err("peer TLS needs all three of --peer-cert, --peer-key and --peer-ca".into());
        }
        if self.peer_tls_enabled() && !cfg!(feature = "replication") {
            return Err("peer TLS (--peer-cert) needs the replication feature".into());
        }
        if self.tls_handshake_timeout.is_zero() {
            return Err("the TLS handshake timeout must be positive".into());
        }
        if self.reload_check_every.is_some_and(|d| d.is_zero()) {
            return Err("the reload check interval must be positive".into());
        }
        Ok(())
    }

    /// True when TLS is configured on the client port.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert.is_some() && self.tls_key.is_some()
    }

    /// True when mutual TLS between cluster members is configured.
    pub fn peer_tls_enabled(&self) -> bool {
        self.peer_cert.is_some() && self.peer_key.is_some() && self.peer_ca.is_some()
    }

    /// True when the port speaks TLS (client TLS, or peer TLS, which makes every
    /// connection TLS).
    pub fn port_is_tls(&self) -> bool {
        self.tls_enabled() || self.peer_tls_enabled()
    }

    /// Whether the server may listen on `addr`: `Ok(None)` when it is loopback or protected
    /// by both TLS and tokens, `Ok(Some(warning))` when it is exposed but `insecure` allows
    /// it, and `Err` (a sentence saying what to do) otherwise.
    pub fn check_exposure(&self, addr: SocketAddr) -> Result<Option<String>, String> {
        let ip = addr.ip();
        let loopback = ip.is_loopback()
            || matches!(ip, std::net::IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
        let tls = self.port_is_tls();
        let auth = self.auth_file.is_some();
        if loopback || (tls && auth) {
            return Ok(None);
        }
        let missing = match (tls, auth) {
            (false, false) => "without TLS or authentication",
            (false, true) => "without TLS",
            _ => "without authentication",
        };
        if self.insecure {
            Ok(Some(format!(
                "INSECURE: listening on {addr} {missing} (--insecure): anyone who can reach \
                 this address can read{} the data",
                if auth { "" } else { " and change" }
            )))
        } else {
            Err(format!(
                "refusing to listen on {addr} {missing}: give --tls-cert and --tls-key and \
                 --auth-file, bind a loopback address (--host 127.0.0.1), or pass --insecure \
                 to accept the risk"
            ))
        }
    }

    #[cfg(feature = "replication")]
    fn peer_files(&self) -> Option<super::peer_tls::PeerFiles> {
        Some(super::peer_tls::PeerFiles {
            cert: self.peer_cert.clone()?,
            key: self.peer_key.clone()?,
            ca: self.peer_ca.clone()?,
        })
    }

    fn tls_files(&self) -> Option<TlsFiles> {
        Some(TlsFiles {
            cert: self.tls_cert.clone()?,
            key: self.tls_key.clone()?,
            client_ca: self.client_ca.clone(),
        })
    }
}

/// The loaded security state of a running server.
#[derive(Debug)]
pub(crate) struct Security {
    tls: Option<Tls>,
    #[cfg(feature = "replication")]
    peer: Option<super::peer_tls::PeerTls>,
    auth_file: Option<PathBuf>,
    tokens: Option<RwLock<Arc<Tokens>>>,
    handshake_timeout: Duration,
    check_every: Option<Duration>,
    warning: OnceLock<String>,
}

impl Security {
    /// Loads the files `config` names; an error names the file that failed.
    pub(crate) fn load(config: &SecurityConfig) -> Result<Security, String> {
        config.validate()?;
        let tls = config.tls_files().map(Tls::load).transpose()?;
        #[cfg(feature = "replication")]
        let peer = config
            .peer_files()
            .map(super::peer_tls::PeerTls::load)
            .transpose()?;
        let tokens = match &config.auth_file {
            Some(path) => {
                let t = Tokens::load(path)?;
                if t.len() == 0 {
                    tracing::warn!(file = %path.display(), "the auth file holds no token: every request but /health is refused");
                }
                Some(RwLock::new(Arc::new(t)))
            }
            None => None,
        };
        Ok(Security {
            tls,
            #[cfg(feature = "replication")]
            peer,
            auth_file: config.auth_file.clone(),
            tokens,
            handshake_timeout: config.tls_handshake_timeout,
            check_every: config.reload_check_every,
            warning: OnceLock::new(),
        })
    }

    /// Peer TLS, when configured.
    #[cfg(feature = "replication")]
    pub(crate) fn peer(&self) -> Option<&super::peer_tls::PeerTls> {
        self.peer.as_ref()
    }

    /// The configurations a new connection's handshake chooses from; `None` on a plain
    /// port.
    pub(crate) fn acceptors(&self) -> Option<Acceptors> {
        #[cfg(feature = "replication")]
        if let Some(peer) = &self.peer {
            let client = match &self.tls {
                Some(tls) => tls.config(),
                None => peer.clients_config(),
            };
            return Some(Acceptors {
                client,
                peer: Some((peer.peer_config(), crate::replication::transport::PEER_ALPN)),
            });
        }
        self.tls.as_ref().map(|tls| Acceptors {
            client: tls.config(),
            peer: None,
        })
    }

    /// True when the port speaks TLS.
    pub(crate) fn tls_port(&self) -> bool {
        #[cfg(feature = "replication")]
        if self.peer.is_some() {
            return true;
        }
        self.tls.is_some()
    }

    /// The longest a TLS handshake may take.
    pub(crate) fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    /// The tokens, when the server checks them.
    pub(crate) fn tokens(&self) -> Option<Arc<Tokens>> {
        self.tokens.as_ref().map(|t| Arc::clone(&t.read()))
    }

    /// Records the warning of an exposed, unprotected server (shown on `/health`).
    pub(crate) fn set_warning(&self, warning: String) {
        let _ = self.warning.set(warning);
    }

    /// The warning of an exposed, unprotected server, if it is one.
    pub(crate) fn warning(&self) -> Option<&str> {
        self.warning.get().map(String::as_str)
    }

    /// Reads every file again; each part that loads is swapped in. The error lists the parts
    /// that failed (they keep their old contents).
    pub(crate) fn reload(&self) -> Result<(), String> {
        let mut failures = Vec::new();
        if let Some(tls) = &self.tls {
            match tls.reload() {
                Ok(()) => {
                    tracing::info!(cert = %tls.files().cert.display(), "TLS certificate reloaded")
                }
                Err(e) => failures.push(e),
            }
        }
        #[cfg(feature = "replication")]
        if let Some(peer) = &self.peer {
            match peer.reload() {
                Ok(()) => {
                    tracing::info!(cert = %peer.cert().display(), "peer TLS certificate reloaded")
                }
                Err(e) => failures.push(e),
            }
        }
        if let (Some(path), Some(tokens)) = (&self.auth_file, &self.tokens) {
            match Tokens::load(path) {
                Ok(t) => {
                    tracing::info!(file = %path.display(), tokens = t.len(), "auth file reloaded");
                    *tokens.write() = Arc::new(t);
                }
                Err(e) => failures.push(e),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(failures.join("; "))
        }
    }

    fn files(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self
            .tls
            .as_ref()
            .map(|t| t.files().paths())
            .unwrap_or_default();
        #[cfg(feature = "replication")]
        if let Some(peer) = &self.peer {
            v.extend(peer.paths());
        }
        v.extend(self.auth_file.as_deref());
        v
    }

    /// Modification times (and sizes) of the files, to notice a change.
    fn stamps(&self) -> Vec<Option<(SystemTime, u64)>> {
        self.files()
            .into_iter()
            .map(|p| {
                let m = std::fs::metadata(p).ok()?;
                Some((m.modified().ok()?, m.len()))
            })
            .collect()
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Reloads the security files on SIGHUP and when one of them changes, until `stop` turns
/// true. Does nothing for a server with no TLS and no tokens.
/// The SIGHUP handler is installed before this returns (inside a runtime), so a signal sent
/// once the server answers is never the default action, which ends the process.
pub(crate) fn reload_loop(
    security: Arc<Security>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let watched = !security.files().is_empty();
    #[cfg(unix)]
    let hangup = if watched {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
    } else {
        None
    };
    #[cfg(not(unix))]
    let hangup: Option<()> = None;
    async move {
        if watched {
            watch_files(security, stop, hangup).await;
        }
    }
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

async fn watch_files(
    security: Arc<Security>,
    mut stop: tokio::sync::watch::Receiver<bool>,
    #[allow(unused_mut)] mut hangup: Hangup,
) {
    let mut seen = security.stamps();
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hup = {
            let _ = &hangup;
            std::future::pending::<()>()
        };
        let why = tokio::select! {
            _ = stop.changed() => return,
            () = hup => "SIGHUP",
            () = sleep_or_never(security.check_every) => {
                if security.stamps() == seen {
                    continue;
                }
                "a file changed"
            }
        };
        // Stamps taken before reading: a file that changes during the reload is read again
        // at the next check.
        seen = security.stamps();
        let s = Arc::clone(&security);
        let result = tokio::task::spawn_blocking(move || s.reload()).await;
        match result {
            Ok(Ok(())) => tracing::info!(why, "security files reloaded"),
            Ok(Err(e)) => {
                tracing::error!(why, error = %e, "reloading security files failed; the old ones stay in use")
            }
            Err(e) => tracing::error!(why, error = %e, "reloading security files failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_must_fit_together() {
        let ok = SecurityConfig::default();
        assert!(ok.validate().is_ok());
        let c = SecurityConfig {
            tls_cert: Some("c.pem".into()),
            ..SecurityConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("--tls-key"));
        let c = SecurityConfig {
            client_ca: Some("ca.pem".into()),
            ..SecurityConfig::default()
        };
        assert!(c.validate().unwrap_err().contains("--client-ca"));
    }

    #[tokio::test]
    async fn an_insecure_server_says_so_on_health() {
        let dir = tempfile::tempdir().unwrap();
        let config = super::super::ServerConfig {
            data_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let state = super::super::AppState::new(config.open_store().unwrap(), config).unwrap();
        let body = |r: super::super::Reply| -> serde_json::Value {
            serde_json::from_slice(&r.body).unwrap()
        };
        let quiet = body(super::super::health(axum::extract::State(state.clone())).await);
        assert_eq!(quiet.get("insecure"), None);
        let any: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        let warning = SecurityConfig {
            insecure: true,
            ..SecurityConfig::default()
        }
        .check_exposure(any)
        .unwrap()
        .unwrap();
        state.security().set_warning(warning.clone());
        let loud = body(super::super::health(axum::extract::State(state.clone())).await);
        assert_eq!(loud["insecure"], serde_json::json!(true));
        assert_eq!(loud["warning"], serde_json::json!(warning));
        assert_eq!(loud["status"], serde_json::json!("ok"));
        state.close().unwrap();
    }

    #[test]
    fn only_loopback_is_open_without_tls_and_tokens() {
        let loopback: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        let v6: SocketAddr = "[::1]:9001".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9001".parse().unwrap();
        let plain = SecurityConfig::default();
        assert_eq!(plain.check_exposure(loopback), Ok(None));
        assert_eq!(plain.check_exposure(v6), Ok(None));
        assert!(
            plain
                .check_exposure(any)
                .unwrap_err()
                .contains("--insecure")
        );
        let tls_only = SecurityConfig {
            tls_cert: Some("c".into()),
            tls_key: Some("k".into()),
            ..SecurityConfig::default()
        };
        assert!(
            tls_only
                .check_exposure(any)
                .unwrap_err()
                .contains("without authentication")
        );
        let both = SecurityConfig {
            auth_file: Some("a".into()),
            ..tls_only
        };
        assert_eq!(both.check_exposure(any), Ok(None));
        let insecure = SecurityConfig {
            insecure: true,
            ..SecurityConfig::default()
        };
        assert!(
            insecure
                .check_exposure(any)
                .unwrap()
                .unwrap()
                .contains("INSECURE")
        );
        assert_eq!(insecure.check_exposure(loopback), Ok(None));
    }
}
