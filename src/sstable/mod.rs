//! Sorted string tables: immutable files of internal entries.
//!
//! [`format`](mod@format) holds the byte layout, [`block_builder`] and [`block`] the data/index block
//! encoding, [`filter`] the bloom filter, [`table_builder`] writes a table and
//! [`table_reader`] reads one.

pub mod block;
pub mod block_builder;
pub mod filter;
pub mod format;
pub mod table_builder;
pub mod table_reader;
