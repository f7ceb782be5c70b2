//! Error mapping: every failure a handler can meet becomes an [`ApiError`], answered as JSON in
//! the shape of the API the route belongs to.
//!
//! - The JSON key-value API (seed A's contract) answers `{"error": message}`.
//! - The versioned-key API (seed B's contract) answers `{"detail": message}`; a version
//!   conflict (409) also carries seed B's documented fields `status`, `message` and
//!   `current_version`.
//! - Unknown paths, wrong methods and the limits in front of every route belong to neither
//!   API and carry both `error` and `detail`.
//!
//! Store failures map to 413 (size limits), 503 (store closed or poisoned) or 500 (anything
//! else). The full error, with the file it concerns, is logged; the answer's body names the
//! kind of failure but never a filesystem path ([`public_error`]). Answers to load shedding
//! (503) carry `Retry-After`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::reply::Reply;

/// Which API's error shape a route uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    /// The JSON key-value API (seed A's contract): `{"error": ...}`.
    Kv,
    /// The versioned-key API (seed B's contract): `{"detail": ...}`.
    Versioned,
    /// Neither (unknown routes): both fields.
    Any,
}

/// A failed request.
#[derive(Debug, Clone)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub api: Api,
    /// For seed B's 409: the key's current per-key version.
    pub current_version: Option<u64>,
    /// Seconds for a `Retry-After` header.
    pub retry_after: Option<u32>,
    /// Close the connection after answering (the request body was not read).
    pub close: bool,
    /// Set on a cluster node's "not leader" answer: the leader's `host:port`, if known.
    pub leader: Option<Option<String>>,
}

impl ApiError {
    pub(crate) fn new(api: Api, status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            api,
            current_version: None,
            retry_after: None,
            close: false,
            leader: None,
        }
    }

    /// A 503 asking the client to retry in a second: the server sheds load.
    pub(crate) fn busy(api: Api, message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(api, StatusCode::SERVICE_UNAVAILABLE, message);
        e.retry_after = Some(1);
        e
    }

    /// This error, answered with `Connection: close`.
    /// A cluster node that does not lead: 503 `{"error": "not leader", "leader": "host:port"}`
    /// (`leader` null while unknown) with `Retry-After`, in both APIs.
    #[cfg(feature = "replication")]
    pub(crate) fn not_leader(api: Api, leader: Option<String>) -> ApiError {
        let mut e = ApiError::busy(api, "not leader");
        e.leader = Some(leader);
        e
    }

    pub(crate) fn closing(mut self) -> ApiError {
        self.close = true;
        self
    }

    pub(crate) fn bad_request(api: Api, message: impl Into<String>) -> ApiError {
        ApiError::new(api, StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn unprocessable(api: Api, message: impl Into<String>) -> ApiError {
        ApiError::new(api, StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub(crate) fn not_found(api: Api, message: impl Into<String>) -> ApiError {
        ApiError::new(api, StatusCode::NOT_FOUND, message)
    }

    pub(crate) fn too_large(api: Api, message: impl Into<String>) -> ApiError {
        ApiError::new(api, StatusCode::PAYLOAD_TOO_LARGE, message)
    }

    pub(crate) fn internal(api: Api, message: impl Into<String>) -> ApiError {
        let message = message.into();
        tracing::error!(%message, "internal server error");
        ApiError::new(api, StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// Seed B's version conflict.
    pub(crate) fn conflict(message: impl Into<String>, current_version: u64) -> ApiError {
        ApiError {
            status: StatusCode::CONFLICT,
            message: message.into(),
            api: Api::Versioned,
            current_version: Some(current_version),
            retry_after: None,
            close: false,
            leader: None,
        }
    }

    /// Maps a store error; the answer names no filesystem path (the log does).
    pub(crate) fn store(api: Api, e: &crate::Error) -> ApiError {
        use crate::Error;
        match e {
            Error::KeyTooLarge { .. }
            | Error::ValueTooLarge { .. }
            | Error::BatchTooLarge { .. } => ApiError::too_large(api, e.to_string()),
            Error::Closed | Error::Poisoned(_) => {
                tracing::warn!(error = %e, "store unavailable");
                ApiError::new(api, StatusCode::SERVICE_UNAVAILABLE, public_error(e))
            }
            _ => {
                tracing::error!(error = %e, "store error");
                ApiError::new(api, StatusCode::INTERNAL_SERVER_ERROR, public_error(e))
            }
        }
    }

    /// The JSON body.
    pub(crate) fn body(&self) -> Value {
        let mut m = Map::new();
        match self.api {
            Api::Kv => {
                m.insert("error".into(), json!(self.message));
            }
            Api::Versioned => {
                m.insert("detail".into(), json!(self.message));
                if let Some(v) = self.current_version {
                    m.insert("status".into(), json!("error"));
                    m.insert("message".into(), json!(self.message));
                    m.insert("current_version".into(), json!(v));
                }
            }
            Api::Any => {
                m.insert("error".into(), json!(self.message));
                m.insert("detail".into(), json!(self.message));
            }
        }
        if let Some(leader) = &self.leader {
            m.insert("error".into(), json!("not leader"));
            m.insert("leader".into(), json!(leader));
        }
        Value::Object(m)
    }

    /// The error as a finished reply.
    pub(crate) fn reply(&self) -> Reply {
        Reply::json(self.status, &self.body())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = self.reply().into_response();
        if let Some(secs) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.close {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

/// A store error described for a client: what failed, without any filesystem path.
pub(crate) fn public_error(e: &crate::Error) -> String {
    use crate::Error;
    match e {
        Error::Io { source, .. } => match source.raw_os_error() {
            Some(code) => format!("I/O error: {}", std::io::Error::from_raw_os_error(code)),
            None => format!("I/O error: {}", source.kind()),
        },
        Error::Corruption { .. } => "corruption detected in a store file".into(),
        Error::Locked(_) => "the store directory is locked by another process".into(),
        Error::Poisoned(cause) => format!(
            "the store is poisoned by an earlier failure ({} failed: {}); restart the server \
             to recover",
            cause.operation(),
            public_error(cause.error())
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_follow_the_api() {
        let a = ApiError::bad_request(Api::Kv, "Missing key");
        assert_eq!(a.body(), json!({"error": "Missing key"}));
        let b = ApiError::not_found(Api::Versioned, "Key not found: k");
        assert_eq!(b.body(), json!({"detail": "Key not found: k"}));
        let c = ApiError::conflict("Version conflict: provided version 1 is outdated", 2);
        assert_eq!(c.status, StatusCode::CONFLICT);
        assert_eq!(
            c.body(),
            json!({
                "detail": "Version conflict: provided version 1 is outdated",
                "status": "error",
                "message": "Version conflict: provided version 1 is outdated",
                "current_version": 2
            })
        );
        let any = ApiError::not_found(Api::Any, "Not found");
        assert_eq!(
            any.body(),
            json!({"error": "Not found", "detail": "Not found"})
        );
    }

    #[test]
    fn store_errors_map_to_statuses() {
        let e = crate::Error::ValueTooLarge { len: 2, max: 1 };
        assert_eq!(
            ApiError::store(Api::Kv, &e).status,
            StatusCode::PAYLOAD_TOO_LARGE
        );
        let e = crate::Error::Closed;
        assert_eq!(
            ApiError::store(Api::Versioned, &e).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
}
