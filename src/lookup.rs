//! What a point lookup finds: inside the engine a [`Hit`] (the newest visible version, put or
//! tombstone), and for callers a [`VersionedValue`].

use bytes::Bytes;

use crate::key::Kind;
use crate::seqno::SeqNo;

/// A found version: its seqno, kind and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// The write's sequence number.
    pub seq: u64,
    /// Put or delete.
    pub kind: Kind,
    /// The value (empty for deletes).
    pub value: Bytes,
}

/// A value together with its version, as returned by
/// [`Db::get_versioned`](crate::Db::get_versioned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionedValue {
    /// The seqno of the write that stored the value.
    pub version: SeqNo,
    /// The value.
    pub value: Bytes,
}
