//! Sorted string tables: immutable files of internal entries.
//!
//! [`format`](mod@format) holds the byte layout, [`block_builder`] and [`block`] the data/index block
//! encoding, [`compression`] the block codecs, [`block_cache`] the bound and eviction of decompressed
//! blocks, [`table_blocks`] a table's decompressed blocks, [`filter`] the bloom filter, [`table_builder`] writes a table,
//! [`table_reader`] reads one and [`index_summary`] speeds up searches of its index.

pub mod block;
pub mod block_builder;
pub mod block_cache;
pub mod compression;
pub mod filter;
pub mod format;
pub mod index_summary;
pub mod table_blocks;
pub mod table_builder;
pub mod table_reader;
