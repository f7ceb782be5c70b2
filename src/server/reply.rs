//! Finished replies: a status code and the exact JSON body bytes.
//!
//! A [`Reply`] is what an idempotency record stores and replays, so a retried request gets
//! byte-for-byte the answer the first one got. An [`Outcome`] is a reply whose `id` field (seed
//! B's store-wide sequence number) is only known once its write is committed.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// A status code and a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Reply {
    /// A reply with `value` serialized as its body.
    pub(crate) fn json(status: StatusCode, value: &Value) -> Reply {
        Reply {
            status,
            body: value.to_string().into_bytes(),
        }
    }

    /// 200 with `value`.
    pub(crate) fn ok(value: &Value) -> Reply {
        Reply::json(StatusCode::OK, value)
    }
}

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        let mut r = (self.status, self.body).into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    }
}

/// The planned answer to a write: a body that may still need the write's sequence number.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub status: StatusCode,
    pub body: Value,
    /// When true, the body's `id` field is set to the sequence number of the write.
    pub with_id: bool,
}

impl Outcome {
    /// An outcome that does not depend on the write's sequence number.
    pub(crate) fn fixed(status: StatusCode, body: Value) -> Outcome {
        Outcome {
            status,
            body,
            with_id: false,
        }
    }

    /// A 200 outcome whose `id` field is filled in with the write's sequence number.
    pub(crate) fn with_id(body: Value) -> Outcome {
        Outcome {
            status: StatusCode::OK,
            body,
            with_id: true,
        }
    }

    /// The finished reply, given the sequence number of the write (when `with_id`).
    pub(crate) fn render(mut self, id: Option<u64>) -> Reply {
        if self.with_id
            && let (Some(id), Some(obj)) = (id, self.body.as_object_mut())
        {
            obj.insert("id".into(), Value::from(id));
        }
        Reply::json(self.status, &self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_keep_their_place_in_the_body() {
        let o = Outcome::with_id(json!({"status": "ok", "id": 0, "key": "k", "version": 1}));
        let r = o.render(Some(42));
        assert_eq!(
            String::from_utf8(r.body).unwrap(),
            r#"{"status":"ok","id":42,"key":"k","version":1}"#
        );
        let f = Outcome::fixed(StatusCode::NOT_FOUND, json!({"detail": "x"})).render(Some(9));
        assert_eq!(f.body, br#"{"detail":"x"}"#.to_vec());
    }
}
