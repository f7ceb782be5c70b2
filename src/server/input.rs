//! Request decoding: query strings, JSON bodies and keys, checked strictly so that bad input
//! is answered with a clear 4xx before anything touches the store.
//!
//! Query strings are percent-decoded to bytes and must be UTF-8 (no lossy replacement, so two
//! different raw keys can never land on one stored key). JSON bodies must be UTF-8 JSON; lone
//! surrogate escapes (`"\ud800"`) are rejected as invalid JSON.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::http::StatusCode;
use percent_encoding::percent_decode;
use serde_json::Value;

use super::config::ServerConfig;
use super::dedup::MAX_ID_LEN;
use super::error::{Api, ApiError};

/// A decoded query string.
#[derive(Debug, Default)]
pub(crate) struct Query {
    pairs: Vec<(String, String)>,
}

fn decode_component(s: &str) -> Option<String> {
    let plus = s.replace('+', " ");
    let bytes: Vec<u8> = percent_decode(plus.as_bytes()).collect();
    String::from_utf8(bytes).ok()
}

impl Query {
    /// Parses a raw query string (`a=1&b=%20`).
    pub(crate) fn parse(api: Api, raw: Option<&str>) -> Result<Query, ApiError> {
        let mut pairs = Vec::new();
        for part in raw.unwrap_or_default().split('&') {
            if part.is_empty() {
                continue;
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let (Some(k), Some(v)) = (decode_component(k), decode_component(v)) else {
                return Err(ApiError::bad_request(
                    api,
                    "query string is not valid UTF-8 after percent-decoding",
                ));
            };
            pairs.push((k, v));
        }
        Ok(Query { pairs })
    }

    /// True when the request asks for `consistency=stale` (a read of this node's state as it
    /// is); `linearizable`, the default, waits for a read point that sees every write
    /// acknowledged before the request.
    pub(crate) fn stale(&self, api: Api) -> Result<bool, ApiError> {
        match self.get("consistency") {
            None | Some("") | Some("linearizable") => Ok(false),
            Some("stale") => Ok(true),
            Some(other) => Err(ApiError::bad_request(
                api,
                format!("consistency must be linearizable or stale, got {other:?}"),
            )),
        }
    }

    /// The first value of parameter `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Seed B's boolean forms: `true/false/1/0/yes/no/on/off` (any case).
    pub(crate) fn bool(&self, api: Api, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Some(true)),
            "false" | "0" | "no" | "off" => Ok(Some(false)),
            _ => Err(ApiError::unprocessable(
                api,
                format!("query parameter {name} must be a boolean, got {v:?}"),
            )),
        }
    }

    /// An integer parameter; garbage is a 4xx with `status`.
    pub(crate) fn int(
        &self,
        api: Api,
        status: StatusCode,
        name: &str,
    ) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else {
            return Ok(None);
        };
        v.trim().parse::<i64>().map(Some).map_err(|_| {
            ApiError::new(
                api,
                status,
                format!("query parameter {name} must be an integer, got {v:?}"),
            )
        })
    }

    /// The idempotency identifiers, when both `client_id` and `request_id` are present and
    /// non-empty.
    pub(crate) fn ids(&self, api: Api) -> Result<Option<(String, String)>, ApiError> {
        let (Some(c), Some(r)) = (self.get("client_id"), self.get("request_id")) else {
            return Ok(None);
        };
        if c.is_empty() || r.is_empty() {
            return Ok(None);
        }
        check_id(api, "client_id", c)?;
        check_id(api, "request_id", r)?;
        Ok(Some((c.to_string(), r.to_string())))
    }
}

/// Checks the length of a client or request id.
pub(crate) fn check_id(api: Api, name: &str, v: &str) -> Result<(), ApiError> {
    if v.len() > MAX_ID_LEN {
        return Err(ApiError::bad_request(
            api,
            format!("{name} is longer than {MAX_ID_LEN} bytes"),
        ));
    }
    Ok(())
}

/// Checks a user key against the limits: non-empty and at most `max_key_bytes`.
pub(crate) fn check_key(api: Api, cfg: &ServerConfig, key: &str) -> Result<(), ApiError> {
    if key.is_empty() {
        return Err(ApiError::bad_request(api, "key must not be empty"));
    }
    if key.len() > cfg.max_key_bytes {
        return Err(ApiError::too_large(
            api,
            format!(
                "key of {} bytes exceeds the limit of {} bytes",
                key.len(),
                cfg.max_key_bytes
            ),
        ));
    }
    Ok(())
}

/// Checks a value's stored size against the limit.
pub(crate) fn check_value_len(api: Api, cfg: &ServerConfig, len: usize) -> Result<(), ApiError> {
    if len > cfg.max_value_bytes {
        return Err(ApiError::too_large(
            api,
            format!(
                "value of {len} bytes exceeds the limit of {} bytes",
                cfg.max_value_bytes
            ),
        ));
    }
    Ok(())
}

/// The key from a `/key/{key}` path.
pub(crate) fn path_key(
    cfg: &ServerConfig,
    path: Result<axum::extract::Path<String>, PathRejection>,
) -> Result<String, ApiError> {
    let key = match path {
        Ok(axum::extract::Path(k)) => k,
        Err(e) => {
            return Err(ApiError::bad_request(
                Api::Versioned,
                format!("invalid key in path: {}", e.body_text()),
            ));
        }
    };
    check_key(Api::Versioned, cfg, &key)?;
    Ok(key)
}

/// Decodes a JSON request body that must be an object.
pub(crate) fn json_object(
    api: Api,
    body: Result<Bytes, BytesRejection>,
    max_body: usize,
) -> Result<serde_json::Map<String, Value>, ApiError> {
    let bytes = match body {
        Ok(b) => b,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Err(ApiError::too_large(
                api,
                format!("request body exceeds the limit of {max_body} bytes"),
            ));
        }
        Err(e) => {
            return Err(ApiError::bad_request(
                api,
                format!("could not read the request body: {}", e.body_text()),
            ));
        }
    };
    let value: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request(api, format!("Invalid JSON: {e}")))?;
    match value {
        Value::Object(m) => Ok(m),
        other => {
            let what = match other {
                Value::Null => "null",
                Value::Bool(_) => "a boolean",
                Value::Number(_) => "a number",
                Value::String(_) => "a string",
                Value::Array(_) => "an array",
                Value::Object(_) => "an object",
            };
            let status = match api {
                Api::Versioned => StatusCode::UNPROCESSABLE_ENTITY,
                _ => StatusCode::BAD_REQUEST,
            };
            Err(ApiError::new(
                api,
                status,
                format!("request body must be a JSON object, got {what}"),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_strictly() {
        let q = Query::parse(Api::Kv, Some("key=a%2Fb+c&limit=5&empty=&flag")).unwrap();
        assert_eq!(q.get("key"), Some("a/b c"));
        assert_eq!(q.get("empty"), Some(""));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(q.get("missing"), None);
        assert_eq!(
            q.int(Api::Kv, StatusCode::BAD_REQUEST, "limit").unwrap(),
            Some(5)
        );
        assert!(q.int(Api::Kv, StatusCode::BAD_REQUEST, "key").is_err());
        let e = Query::parse(Api::Kv, Some("key=%FF")).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        // an encoded surrogate is not UTF-8 either
        assert!(Query::parse(Api::Versioned, Some("key=%ED%A0%80")).is_err());
        let q = Query::parse(Api::Versioned, Some("force=yes&bad=maybe")).unwrap();
        assert_eq!(q.bool(Api::Versioned, "force").unwrap(), Some(true));
        assert_eq!(
            q.bool(Api::Versioned, "bad").unwrap_err().status,
            StatusCode::UNPROCESSABLE_ENTITY
        );
    }

    #[test]
    fn bodies_must_be_json_objects() {
        let ok = json_object(Api::Kv, Ok(Bytes::from_static(br#"{"a":1}"#)), 100).unwrap();
        assert_eq!(ok.get("a"), Some(&Value::from(1)));
        for bad in [&b"{"[..], b"", b"\xff", br#"{"k":"\ud800"}"#] {
            let e = json_object(Api::Kv, Ok(Bytes::copy_from_slice(bad)), 100).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let e = json_object(Api::Versioned, Ok(Bytes::from_static(b"[1]")), 100).unwrap_err();
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        let e = json_object(Api::Kv, Ok(Bytes::from_static(b"null")), 100).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }
}
