//! The one serde encoding of the replication layer: postcard 1.x, behind [`encode`] and
//! [`decode`].
//!
//! Raft log entries, votes, RPC bodies and snapshot metadata all go through here, so a change
//! of encoding touches this file only. Every stored or transmitted value is prefixed with a
//! one-byte format version ([`FORMAT`]) so that a later layout can be told apart:
//!
//! ```text
//! encoded := format: u8 (= 1) | postcard(value)
//! ```
//!
//! Decoding untrusted bytes never panics: a wrong format byte, truncated or trailing bytes
//! and any postcard error come back as [`CodecError`]. postcard reads lengths as varints and
//! serde caps what it preallocates for a sequence, so a hostile length field cannot make the
//! decoder allocate much more than the input it was given.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The format version written in front of every encoded value.
pub const FORMAT: u8 = 1;

/// Why bytes could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The value could not be serialized.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The bytes are not a value of the expected type.
    #[error("cannot decode: {0}")]
    Decode(String),
}

/// Encodes `value` with its format byte.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
    let out = vec![FORMAT];
    postcard::to_extend(value, out).map_err(|e| CodecError::Encode(e.to_string()))
}

/// Decodes a value made by [`encode`]; every byte must be used.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let Some((&format, body)) = bytes.split_first() else {
        return Err(CodecError::Decode("empty input".into()));
    };
    if format != FORMAT {
        return Err(CodecError::Decode(format!("unknown format {format}")));
    }
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| CodecError::Decode(e.to_string()))?;
    if !rest.is_empty() {
        return Err(CodecError::Decode(format!(
            "{} trailing bytes after the value",
            rest.len()
        )));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        a: u64,
        b: String,
        c: Vec<Vec<u8>>,
        d: Option<i64>,
    }

    #[test]
    fn values_round_trip_and_damage_is_an_error() {
        let s = Sample {
            a: 300,
            b: "héllo".into(),
            c: vec![vec![1, 2, 3], vec![]],
            d: Some(-5),
        };
        let bytes = encode(&s).unwrap();
        assert_eq!(bytes[0], FORMAT);
        assert_eq!(decode::<Sample>(&bytes).unwrap(), s);
        for cut in 0..bytes.len() {
            assert!(decode::<Sample>(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(decode::<Sample>(&long).is_err());
        let mut other = bytes.clone();
        other[0] = 2;
        assert!(decode::<Sample>(&other).is_err());
    }

    #[test]
    fn a_huge_length_field_fails_without_allocating_it() {
        // format, a = 1, then a string length of 2^62 with no bytes behind it
        let mut bytes = vec![FORMAT, 1];
        bytes.extend_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40]);
        assert!(decode::<Sample>(&bytes).is_err());
        let mut seq = vec![FORMAT, 1, 0];
        seq.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode::<Sample>(&seq).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode::<Sample>(&bytes);
        }
    }
}
