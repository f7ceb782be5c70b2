//! How the remote commands reach a secured server: the CA that signed its certificate
//! (`--cacert`), an optional client certificate (`--client-cert`, `--client-key`) and the bearer token
//! (`--token-file`, or the `STRATA_TOKEN` environment variable), made into the HTTP agent's
//! TLS settings and the `Authorization` header.
//!
//! A token is never taken from the command line itself, where other users of the machine
//! could read it in the process list.

use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::{CliError, exit};

/// The connection options of the remote commands.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// PEM CA certificates to trust for `https://` endpoints (default: the public web roots).
    pub cacert: Option<PathBuf>,
    /// PEM client certificate chain, for servers that check client certificates.
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert`.
    pub key: Option<PathBuf>,
    /// The bearer token sent with every request.
    pub token: Option<String>,
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| {
        CliError::new(
            exit::USAGE,
            format!("cannot read the {what} {}: {e}", path.display()),
        )
    })
}

fn bad(what: &str, path: &Path, why: impl std::fmt::Display) -> CliError {
    CliError::new(
        exit::USAGE,
        format!("the {what} {} is not usable: {why}", path.display()),
    )
}

fn certificates(what: &str, path: &Path) -> Result<Vec<Certificate<'static>>, CliError> {
    let pem = read(what, path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let PemItem::Certificate(c) = item.map_err(|e| bad(what, path, e))? {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(bad(what, path, "it holds no PEM certificate"));
    }
    Ok(certs)
}

/// Reads a token file: its first non-empty line, trimmed.
pub fn read_token_file(path: &Path) -> Result<String, CliError> {
    let text = String::from_utf8(read("token file", path)?)
        .map_err(|_| bad("token file", path, "it is not UTF-8"))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .ok_or_else(|| bad("token file", path, "it is empty"))
}

impl Access {
    /// The TLS settings of the HTTP agent.
    pub(crate) fn tls_config(&self) -> Result<TlsConfig, CliError> {
        let mut b = TlsConfig::builder();
        if let Some(ca) = &self.cacert {
            b = b.root_certs(RootCerts::new_with_certs(&certificates(
                "CA certificate file",
                ca,
            )?));
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = certificates("client certificate file", cert)?;
                let pem = read("client key file", key)?;
                let key_der =
                    PrivateKey::from_pem(&pem).map_err(|e| bad("client key file", key, e))?;
                b = b.client_cert(Some(ClientCert::new_with_certs(&chain, key_der)));
            }
            (None, None) => {}
            _ => {
                return Err(CliError::new(
                    exit::USAGE,
                    "a client certificate needs both --client-cert and --client-key",
                ));
            }
        }
        Ok(b.build())
    }

    /// The `Authorization` header's value, when a token is set.
    pub(crate) fn authorization(&self) -> Option<String> {
        self.token.as_ref().map(|t| format!("Bearer {t}"))
    }
}
