//! The size limits and the shape of a store: the longest key and value, the largest batch,
//! the number of levels. Re-exported at the crate root.

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 64 << 10;
/// The longest value accepted, in bytes.
pub const MAX_VALUE_LEN: usize = 64 << 20;
/// The largest encoded [`WriteBatch`](crate::WriteBatch) accepted, in bytes.
pub const MAX_BATCH_BYTES: usize = 256 << 20;
/// Levels in the tree (level 0 plus six sorted levels).
pub const NUM_LEVELS: usize = 7;

const _: () = assert!(MAX_BATCH_BYTES < u32::MAX as usize);
