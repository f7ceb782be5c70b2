//! The write-ahead log: framing ([`format`](mod@format), [`writer`], [`reader`]) and segments
//! ([`segment`]). The manifest reuses the same framing.

pub mod format;
pub mod reader;
pub mod segment;
pub mod writer;
