//! Bearer-token authentication and role-scoped access to every route.
//!
//! The token file (`--auth-file`) holds one token per line, as `NAME ROLE SHA256HEX`: the
//! caller's name (ASCII letters, digits, `.`, `_`, `-`, `@`; at most 64 bytes), its role
//! (`read`, `write` or `admin`) and the lowercase or uppercase hex SHA-256 of the token, so
//! the file never holds a token itself. `#` starts a comment; blank lines are skipped.
//!
//! ```text
//! # name   role   sha256(token)
//! alice    admin  9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! reports  read   60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752
//! ```
//!
//! A request names its token in `Authorization: Bearer <token>`. The token's hash is compared
//! with every line's in constant time (no early exit), so the time taken tells nothing of how
//! close a guess came. A missing, malformed or unknown token is answered `401` with
//! `WWW-Authenticate: Bearer`; a known token whose role is too weak for the route `403`. Both
//! carry a JSON body in the shape of the route's API (`error.rs`) and change nothing: the
//! check runs before the body is read.
//!
//! Roles are ordered, each allowing what the one before allows:
//!
//! | role | routes |
//! |---|---|
//! | (none) | `GET /health` |
//! | `read` | `GET /get`, `/range`, `/raft/status`; `GET /key/{key}` with `/history` and `/versions`, `/keys`, `/cluster_status`, `/request_status`, `GET /cluster/members`; any unknown path |
//! | `write` | `POST /put`, `/batchput`, `DELETE /delete`; `PUT`/`DELETE /key/{key}` |
//! | `admin` | `/compaction/run`, `/compaction/status`, `/compaction/configure`, `/segments`, `/deduplication_stats`, `/metrics`, `/admin/backup`, membership changes (`POST /cluster/learners`, `/cluster/promote`, `/cluster/remove`) |
//!
//! An authenticated request carries its [`Identity`]; the idempotency records of the
//! versioned API are kept per identity ([`Caller::scope`]), so one caller can neither replay
//! nor read the answers recorded for another's `client_id`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::error::{Api, ApiError};
use super::security::Security;

/// How much a token may do; each level allows what the levels below it allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    /// Reads and status.
    Read,
    /// Reads and writes.
    Write,
    /// Everything, including compaction, backup and metrics.
    Admin,
}

impl Access {
    fn parse(s: &str) -> Option<Access> {
        match s {
            "read" => Some(Access::Read),
            "write" => Some(Access::Write),
            "admin" => Some(Access::Admin),
            _ => None,
        }
    }

    /// The role's name in the token file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
            Access::Admin => "admin",
        }
    }
}

/// Who made a request: the name and role of the token it presented.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Identity {
    pub name: Arc<str>,
    pub access: Access,
}

/// Longest caller name in the token file, in bytes.
const MAX_NAME_LEN: usize = 64;

#[derive(Debug)]
struct Entry {
    identity: Identity,
    hash: [u8; 32],
}

/// The tokens of a token file (their hashes).
#[derive(Debug)]
pub(crate) struct Tokens {
    entries: Vec<Entry>,
}

fn hex_digest(s: &str) -> Option<[u8; 32]> {
    let bytes = s.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        let hi = char::from(pair[0]).to_digit(16)?;
        let lo = char::from(pair[1]).to_digit(16)?;
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'))
}

/// The SHA-256 of `token`.
pub(crate) fn token_hash(token: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, token);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl Tokens {
    /// Parses a token file's text; an error names the line and what is wrong with it.
    pub(crate) fn parse(text: &str) -> Result<Tokens, String> {
        let mut entries: Vec<Entry> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [name, role, hash] = fields[..] else {
                return Err(format!(
                    "line {line_no}: expected NAME ROLE SHA256HEX, found {} fields",
                    fields.len()
                ));
            };
            if !valid_name(name) {
                return Err(format!(
                    "line {line_no}: name {name:?} must be 1 to {MAX_NAME_LEN} ASCII letters, \
                     digits, '.', '_', '-' or '@'"
                ));
            }
            let access = Access::parse(role).ok_or_else(|| {
                format!("line {line_no}: role {role:?} must be read, write or admin")
            })?;
            let hash = hex_digest(hash).ok_or_else(|| {
                format!("line {line_no}: the token hash must be 64 hex digits (SHA-256)")
            })?;
            if entries.iter().any(|e| e.hash == hash) {
                return Err(format!(
                    "line {line_no}: the same token hash appears on an earlier line"
                ));
            }
            if entries.iter().any(|e| *e.identity.name == *name) {
                return Err(format!("line {line_no}: the name {name:?} appears twice"));
            }
            entries.push(Entry {
                identity: Identity {
                    name: name.into(),
                    access,
                },
                hash,
            });
        }
        Ok(Tokens { entries })
    }

    /// Reads and parses the token file at `path`.
    pub(crate) fn load(path: &std::path::Path) -> Result<Tokens, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the auth file {}: {e}", path.display()))?;
        Tokens::parse(&text).map_err(|e| format!("the auth file {}: {e}", path.display()))
    }

    /// How many tokens the file holds.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The identity whose token is `token`. Every entry is compared, in constant time.
    pub(crate) fn identify(&self, token: &[u8]) -> Option<Identity> {
        let hash = token_hash(token);
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&hash)) {
                found = Some(&e.identity);
            }
        }
        found.cloned()
    }
}

/// The role a route needs (`None`: open to anyone) and the API whose error shape it answers
/// in. Unknown paths need `read`, so only a caller with a token learns that they are unknown.
pub(crate) fn rule(method: &Method, path: &str) -> (Option<Access>, Api) {
    use Access::{Admin, Read, Write};
    match path {
        "/health" => (None, Api::Any),
        "/get" | "/range" | "/raft/status" => (Some(Read), Api::Kv),
        "/put" | "/batchput" | "/delete" => (Some(Write), Api::Kv),
        "/keys" | "/cluster_status" | "/request_status" => (Some(Read), Api::Versioned),
        "/segments"
        | "/deduplication_stats"
        | "/compaction/run"
        | "/compaction/status"
        | "/compaction/configure" => (Some(Admin), Api::Versioned),
        "/metrics" | "/admin/backup" => (Some(Admin), Api::Any),
        // Membership: listing is a read, changes are admin's.
        "/cluster/members" => (Some(Read), Api::Kv),
        p if p.starts_with("/cluster/") => (Some(Admin), Api::Kv),
        p if p.starts_with("/key/") => {
            let access = if *method == Method::GET || *method == Method::HEAD {
                Read
            } else {
                Write
            };
            (Some(access), Api::Versioned)
        }
        _ => (Some(Read), Api::Any),
    }
}

/// The token in an `Authorization: Bearer <token>` header.
fn bearer(req: &Request) -> Option<&[u8]> {
    let value = req.headers().get(header::AUTHORIZATION)?.as_bytes();
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

/// True when the request has a body the refusal leaves unread: the connection is closed
/// after the answer.
fn has_body(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0")
}

fn unauthorized(api: Api, message: &str, invalid: bool, close: bool) -> Response {
    let mut e = ApiError::new(api, StatusCode::UNAUTHORIZED, message);
    if close {
        e = e.closing();
    }
    let mut r = e.into_response();
    let challenge = if invalid {
        "Bearer realm=\"strata\", error=\"invalid_token\""
    } else {
        "Bearer realm=\"strata\""
    };
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

/// The middleware: checks the token against the route's rule (see the module comment) and
/// hands the caller's [`Identity`] to the handler.
pub(crate) async fn check(
    State(security): State<Arc<Security>>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(tokens) = security.tokens() else {
        return next.run(req).await;
    };
    let (need, api) = rule(req.method(), req.uri().path());
    let Some(need) = need else {
        return next.run(req).await;
    };
    let close = has_body(&req);
    let Some(token) = bearer(&req) else {
        return unauthorized(
            api,
            "authentication required: send Authorization: Bearer <token>",
            false,
            close,
        );
    };
    let Some(identity) = tokens.identify(token) else {
        return unauthorized(api, "invalid token", true, close);
    };
    if identity.access < need {
        let mut e = ApiError::new(
            api,
            StatusCode::FORBIDDEN,
            format!(
                "forbidden: {} has role {}, this request needs role {}",
                identity.name,
                identity.access.name(),
                need.name()
            ),
        );
        if close {
            e = e.closing();
        }
        return e.into_response();
    }
    req.extensions_mut().insert(identity);
    next.run(req).await
}

/// The authenticated caller of a request, if the server checks tokens.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Option<Identity>);

impl Caller {
    /// The `client_id` under which idempotency records are kept: the caller's own, inside
    /// the caller's name (`name:client_id`; names hold no `:`), so that two callers never
    /// share records. Without authentication, `client` as given.
    pub(crate) fn scope(&self, client: &str) -> String {
        match &self.0 {
            Some(id) => format!("{}:{client}", id.name),
            None => client.to_string(),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Caller, Infallible> {
        Ok(Caller(parts.extensions.get::<Identity>().cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8; 32]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn token_files_parse_and_identify_by_hash() {
        let text = format!(
            "# comment\n\nalice admin {}  # trailing comment\nbob read {}\n",
            hex(&token_hash(b"secret-a")),
            hex(&token_hash(b"secret-b")).to_uppercase()
        );
        let t = Tokens::parse(&text).unwrap();
        assert_eq!(t.len(), 2);
        let a = t.identify(b"secret-a").unwrap();
        assert_eq!((&*a.name, a.access), ("alice", Access::Admin));
        let b = t.identify(b"secret-b").unwrap();
        assert_eq!((&*b.name, b.access), ("bob", Access::Read));
        assert_eq!(t.identify(b"secret-c"), None);
        assert_eq!(t.identify(b""), None);
    }

    #[test]
    fn bad_token_files_name_the_line() {
        let h = hex(&token_hash(b"x"));
        for (text, want) in [
            (
                "alice admin\n".to_string(),
                "line 1: expected NAME ROLE SHA256HEX",
            ),
            (format!("\nalice root {h}"), "line 2: role \"root\""),
            (format!("al:ice read {h}"), "line 1: name \"al:ice\""),
            (
                "alice read abc".to_string(),
                "line 1: the token hash must be 64 hex",
            ),
            (
                format!("a read {h}\nb write {h}"),
                "line 2: the same token hash",
            ),
            (
                format!("a read {h}\na write {}", hex(&token_hash(b"y"))),
                "line 2: the name \"a\" appears twice",
            ),
        ] {
            let e = Tokens::parse(&text).unwrap_err();
            assert!(e.starts_with(want), "{e} / {want}");
        }
    }

    #[test]
    fn roles_are_ordered_and_routes_need_their_role() {
        assert!(Access::Read < Access::Write && Access::Write < Access::Admin);
        let get = Method::GET;
        assert_eq!(rule(&get, "/health").0, None);
        assert_eq!(rule(&get, "/key/a/history").0, Some(Access::Read));
        assert_eq!(rule(&Method::PUT, "/key/a").0, Some(Access::Write));
        assert_eq!(rule(&Method::DELETE, "/key/a").0, Some(Access::Write));
        assert_eq!(rule(&get, "/metrics").0, Some(Access::Admin));
        assert_eq!(rule(&get, "/no/such/route").0, Some(Access::Read));
        assert_eq!(rule(&get, "/get").1, Api::Kv);
        assert_eq!(rule(&get, "/keys").1, Api::Versioned);
    }

    #[test]
    fn scoped_client_ids_never_collide_across_callers() {
        let c = |n: &str| {
            Caller(Some(Identity {
                name: n.into(),
                access: Access::Write,
            }))
        };
        // the name ends at the first ':', which no name holds
        assert!(!valid_name("a:b"));
        assert_ne!(c("a").scope("b:c"), c("b").scope("c"));
        assert_ne!(c("a").scope("x"), c("b").scope("x"));
        assert_eq!(c("a").scope("x"), "a:x");
        assert_eq!(Caller(None).scope("x"), "x");
    }
}
