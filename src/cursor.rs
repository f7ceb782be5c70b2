//! The positioned-cursor interface shared by every sorted source of internal entries:
//! memtables, table blocks, whole tables, levels and the merge of all of them.
//!
//! A cursor is either positioned on an entry (`valid()`) or not. Keys are encoded internal
//! keys (see [`crate::key`]) in internal order. A cursor that hits an error becomes invalid
//! and reports the error from `status()`.

use bytes::Bytes;

use crate::error::Result;

/// A bidirectional cursor over internal entries.
pub(crate) trait Cursor: Send {
    /// Positions at the first entry whose key is at or after `target`.
    fn seek(&mut self, target: &[u8]);
    /// Positions at the first entry.
    fn seek_to_first(&mut self);
    /// Positions at the last entry whose key is at or before `target`.
    fn seek_for_prev(&mut self, target: &[u8]);
    /// Positions at the last entry.
    fn seek_to_last(&mut self);
    /// Moves to the next entry. Requires `valid()`.
    fn next(&mut self);
    /// Moves to the previous entry. Requires `valid()`.
    fn prev(&mut self);
    /// True when positioned on an entry.
    fn valid(&self) -> bool;
    /// The current entry's internal key. Requires `valid()`.
    fn key(&self) -> &[u8];
    /// The current entry's value. Requires `valid()`.
    fn value(&self) -> Bytes;
    /// The current entry's value, borrowed until the cursor moves: no reference count.
    /// Requires `valid()`.
    fn value_ref(&self) -> &[u8];
    /// The first error met, if any.
    fn status(&self) -> Result<()>;
}

/// Every key of a cursor walked from its first entry forward, and from its last entry
/// backward (returned in forward order, so the two can be compared with each other and with
/// the expected list).
#[cfg(test)]
pub(crate) fn keys_both_ways(c: &mut impl Cursor) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    c.seek_to_first();
    let mut forward = Vec::new();
    while c.valid() {
        forward.push(c.key().to_vec());
        c.next();
    }
    c.seek_to_last();
    let mut backward = Vec::new();
    while c.valid() {
        backward.push(c.key().to_vec());
        c.prev();
    }
    backward.reverse();
    (forward, backward)
}
