//! The store-wide sequence number that versions every write.

use std::fmt;

/// The largest sequence number: 56 bits, the rest of an internal key's trailer holds the kind.
pub const MAX_SEQNO: u64 = (1 << 56) - 1;

/// A store-wide, strictly increasing write sequence number.
///
/// Every put and delete receives the next `SeqNo`; that number is the *version* of the value it
/// wrote. Reads "as of" a `SeqNo` see exactly the writes numbered at or below it, which is what
/// [`Snapshot`](crate::Snapshot), [`Db::get_at`](crate::Db::get_at) and
/// [`Db::compare_and_set`](crate::Db::compare_and_set) are built on.
///
/// Sequence numbers have 56 bits; `SeqNo::ZERO` means "before the first write".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SeqNo(u64);

impl SeqNo {
    /// The sequence number before any write.
    pub const ZERO: SeqNo = SeqNo(0);
    /// The largest sequence number a write can receive.
    pub const MAX: SeqNo = SeqNo(MAX_SEQNO);

    /// Wraps a raw number, saturating at [`SeqNo::MAX`].
    pub const fn new(v: u64) -> SeqNo {
        if v > MAX_SEQNO {
            SeqNo(MAX_SEQNO)
        } else {
            SeqNo(v)
        }
    }

    /// The raw number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for SeqNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl From<SeqNo> for u64 {
    fn from(s: SeqNo) -> u64 {
        s.0
    }
}
