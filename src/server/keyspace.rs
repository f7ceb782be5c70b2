//! Key namespaces: how the server lays out its keys inside the store.
//!
//! The server shares one store between user data and its own records, so every stored key
//! starts with a one-byte namespace tag:
//!
//! ```text
//! stored key := namespace: u8 | rest
//! namespace 'u' (0x75): user data; rest = the user's key (UTF-8)
//! namespace 'r' (0x72): idempotency records; rest = see `dedup.rs`
//! namespaces 'e', 'c', 'q', 'i', 'm': the records' expiry index, reference counts and
//!   counters; see `dedup_book.rs`
//! ```
//!
//! Listings (`/range`, `/keys`) and history only ever read the `u` namespace, so server
//! records never show up as user keys. A one-byte prefix keeps the byte order of user keys,
//! so ranges over user keys are ranges over stored keys.

use std::ops::Bound;

/// Namespace tag of user keys.
pub(crate) const USER: u8 = b'u';
/// Namespace tag of idempotency records.
pub(crate) const RECORD: u8 = b'r';
/// Namespace tag of the idempotency records' expiry index.
pub(crate) const INDEX: u8 = b'e';
/// Namespace tag of the record counts per client id.
pub(crate) const CLIENTS: u8 = b'c';
/// Namespace tag of the record counts per request id.
pub(crate) const REQUESTS: u8 = b'q';
/// Namespace tag of the record counts per (client, request) pair and operation.
pub(crate) const IDS: u8 = b'i';
/// Namespace tag of the server's counters.
pub(crate) const META: u8 = b'm';

/// The stored key of user key `key`.
pub(crate) fn user_key(key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + key.len());
    k.push(USER);
    k.extend_from_slice(key.as_bytes());
    k
}

/// The user key inside a stored key of the user namespace, if it is one.
pub(crate) fn strip_user(stored: &[u8]) -> Option<&[u8]> {
    match stored.split_first() {
        Some((&USER, rest)) => Some(rest),
        _ => None,
    }
}

/// Stored-key bounds for user keys in `[start, end)`; `end = None` means no upper bound
/// (the end of the user namespace).
pub(crate) fn user_bounds(start: &str, end: Option<&str>) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let lower = Bound::Included(user_key(start));
    let upper = match end {
        Some(e) => Bound::Excluded(user_key(e)),
        None => Bound::Excluded(vec![USER + 1]),
    };
    (lower, upper)
}

/// Stored-key bounds for one page of user keys that start with `prefix`, after `start_after`
/// (exclusive) when given.
pub(crate) fn page_bounds(
    prefix: &str,
    start_after: Option<&str>,
) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let from = user_key(prefix);
    let lower = match start_after.map(user_key) {
        Some(after) if after >= from => Bound::Excluded(after),
        _ => Bound::Included(from.clone()),
    };
    // The first stored key past every key with the prefix: the prefix with its last byte
    // below 0xff raised by one (0xff bytes cannot end a UTF-8 prefix, but are handled).
    let mut upper = from;
    while let Some(last) = upper.pop() {
        if last < 0xff {
            upper.push(last + 1);
            return (lower, Bound::Excluded(upper));
        }
    }
    (lower, Bound::Excluded(vec![USER + 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_keys_keep_their_order_and_stay_apart_from_records() {
        let (a, b) = (user_key("a"), user_key("b"));
        assert!(a < b);
        assert_eq!(strip_user(&a), Some(&b"a"[..]));
        assert_eq!(strip_user(&[RECORD, b'x']), None);
        assert_eq!(strip_user(&user_key("")), Some(&b""[..]));
        let (lo, hi) = user_bounds("", None);
        assert_eq!(lo, Bound::Included(vec![USER]));
        // every user key, however long, sorts below the upper bound
        let Bound::Excluded(hi) = hi else {
            panic!("open upper bound")
        };
        assert!(user_key("\u{10FFFF}\u{10FFFF}").as_slice() < hi.as_slice());
        assert!([RECORD].as_slice() < [USER].as_slice());
    }

    #[test]
    fn page_bounds_cover_the_prefix_after_the_cursor() {
        let (lo, hi) = page_bounds("ab", None);
        assert_eq!(lo, Bound::Included(user_key("ab")));
        assert_eq!(hi, Bound::Excluded(user_key("ac")));
        let (lo, _) = page_bounds("ab", Some("abc"));
        assert_eq!(lo, Bound::Excluded(user_key("abc")));
        // a cursor before the prefix starts at the prefix
        let (lo, _) = page_bounds("ab", Some("a"));
        assert_eq!(lo, Bound::Included(user_key("ab")));
        // no prefix: the whole user namespace
        let (lo, hi) = page_bounds("", None);
        assert_eq!(lo, Bound::Included(vec![USER]));
        assert_eq!(hi, Bound::Excluded(vec![USER + 1]));
    }
}
