//! The stored value envelope: every user value the server writes carries its per-key
//! version and its JSON type.
//!
//! Byte layout (integers little-endian):
//!
//! ```text
//! envelope := format: u8 (= 1) | kind: u8 | version: u64 | payload
//! kind 0 = text: payload is UTF-8 text, a JSON string (what seed A's `/put` writes)
//! kind 1 = json: payload is the compact JSON text of any other JSON value
//!                (number, boolean, null, array or object)
//! ```
//!
//! `version` is seed B's per-key version: 1 when the key is created, one more on every write,
//! starting again at 1 after a delete. It lives with the value, so the core write path stays
//! blind to it; the server keeps it right by writing with a compare-and-set on the store-wide
//! sequence number it read (`ops.rs`).
//!
//! Seed A shows values as strings: a text value as its text, any other JSON value as its
//! compact JSON text (`42`, `{"a":1}`, `null`).

use serde_json::Value;

const FORMAT: u8 = 1;
const KIND_TEXT: u8 = 0;
const KIND_JSON: u8 = 1;
const HEADER_LEN: usize = 10;

/// A user value: text or any other JSON value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StoredValue {
    /// A string.
    Text(String),
    /// Any JSON value that is not a string.
    Json(Value),
}

impl StoredValue {
    /// Classifies a JSON value.
    pub(crate) fn from_json(v: Value) -> StoredValue {
        match v {
            Value::String(s) => StoredValue::Text(s),
            other => StoredValue::Json(other),
        }
    }

    /// The value as JSON (seed B's view).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            StoredValue::Text(s) => Value::String(s.clone()),
            StoredValue::Json(v) => v.clone(),
        }
    }

    /// The value as a string (seed A's view).
    pub(crate) fn to_text(&self) -> String {
        match self {
            StoredValue::Text(s) => s.clone(),
            StoredValue::Json(v) => v.to_string(),
        }
    }
}

/// A decoded envelope.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Envelope {
    /// Seed B's per-key version.
    pub version: u64,
    /// The value.
    pub value: StoredValue,
}

/// The payload bytes of `value` (whose length the value limit applies to).
pub(crate) fn payload(value: &StoredValue) -> (u8, Vec<u8>) {
    match value {
        StoredValue::Text(s) => (KIND_TEXT, s.as_bytes().to_vec()),
        StoredValue::Json(v) => (KIND_JSON, v.to_string().into_bytes()),
    }
}

/// The value as a write's intent carries it.
pub(crate) fn to_intent(value: StoredValue) -> crate::intent::Value {
    match value {
        StoredValue::Text(s) => crate::intent::Value::Text(s),
        StoredValue::Json(v) => crate::intent::Value::Json(v.to_string()),
    }
}

/// The envelope kind of a value an intent carries (its payload is [`crate::intent::Value::payload`]).
pub(crate) fn intent_kind(value: &crate::intent::Value) -> u8 {
    match value {
        crate::intent::Value::Text(_) => KIND_TEXT,
        crate::intent::Value::Json(_) => KIND_JSON,
    }
}

/// Encodes an envelope from a payload made by [`payload`].
pub(crate) fn encode(version: u64, kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.push(FORMAT);
    out.push(kind);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Why stored bytes are not an envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BadEnvelope(pub &'static str);

impl std::fmt::Display for BadEnvelope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "stored value is not a valid envelope: {}", self.0)
    }
}

/// Reads only the version of an envelope.
pub(crate) fn decode_version(bytes: &[u8]) -> Result<u64, BadEnvelope> {
    let (version, _, _) = split(bytes)?;
    Ok(version)
}

fn split(bytes: &[u8]) -> Result<(u64, u8, &[u8]), BadEnvelope> {
    let (header, payload) = bytes
        .split_at_checked(HEADER_LEN)
        .ok_or(BadEnvelope("too short"))?;
    let [format, kind, v @ ..] = header else {
        return Err(BadEnvelope("too short"));
    };
    if *format != FORMAT {
        return Err(BadEnvelope("unknown format"));
    }
    let v: [u8; 8] = v.try_into().map_err(|_| BadEnvelope("too short"))?;
    Ok((u64::from_le_bytes(v), *kind, payload))
}

/// Decodes an envelope (bytes from disk: every failure is an error, never a panic).
pub(crate) fn decode(bytes: &[u8]) -> Result<Envelope, BadEnvelope> {
    let (version, kind, payload) = split(bytes)?;
    let value = match kind {
        KIND_TEXT => StoredValue::Text(
            String::from_utf8(payload.to_vec()).map_err(|_| BadEnvelope("text is not UTF-8"))?,
        ),
        KIND_JSON => StoredValue::Json(
            serde_json::from_slice(payload).map_err(|_| BadEnvelope("JSON payload is invalid"))?,
        ),
        _ => return Err(BadEnvelope("unknown kind")),
    };
    Ok(Envelope { version, value })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(version: u64, v: StoredValue) {
        let (kind, p) = payload(&v);
        let bytes = encode(version, kind, &p);
        assert_eq!(decode_version(&bytes), Ok(version));
        assert_eq!(decode(&bytes), Ok(Envelope { version, value: v }));
    }

    #[test]
    fn values_round_trip_with_their_type() {
        round_trip(1, StoredValue::Text("Alice".into()));
        round_trip(7, StoredValue::Text(String::new()));
        round_trip(u64::MAX, StoredValue::Json(json!(42)));
        round_trip(2, StoredValue::Json(json!({"a": [1, true, null]})));
        round_trip(3, StoredValue::Json(json!(null)));
    }

    #[test]
    fn text_and_json_views() {
        assert_eq!(
            StoredValue::from_json(json!("x")),
            StoredValue::Text("x".into())
        );
        let n = StoredValue::from_json(json!({"a": 1}));
        assert_eq!(n.to_text(), r#"{"a":1}"#);
        assert_eq!(n.to_json(), json!({"a": 1}));
        assert_eq!(StoredValue::Text("s".into()).to_json(), json!("s"));
    }

    #[test]
    fn damaged_bytes_are_errors() {
        let good = encode(5, KIND_TEXT, b"hi");
        for cut in 0..HEADER_LEN {
            assert!(decode(&good[..cut]).is_err(), "cut at {cut}");
        }
        let mut bad = good.clone();
        bad[0] = 9;
        assert!(decode(&bad).is_err());
        let mut bad = good.clone();
        bad[1] = 7;
        assert!(decode(&bad).is_err());
        assert!(decode(&encode(1, KIND_TEXT, &[0xff, 0xfe])).is_err());
        assert!(decode(&encode(1, KIND_JSON, b"{nope")).is_err());
    }
}
