//! Writes an SSTable from entries in internal-key order (layout in [`super::format`]).
//!
//! Data blocks are cut at the configured size and compressed with the configured codec when
//! that makes them smaller; each gets an index entry keyed by its last internal key. The filter covers every distinct user key. Output is buffered and handed to
//! the file in large appends; [`TableBuilder::finish`] writes the footer and fsyncs.

use std::io;

use super::block_builder::BlockBuilder;
use super::compression::{self, Compression};
use super::filter;
use super::format::{
    BlockHandle, BlockType, Footer, Properties, TABLE_FORMAT_VERSION, TRAILER_LEN, block_crc,
};
use crate::fs::WritableFile;
use crate::hash::hash64;
use crate::key;

const WRITE_BUFFER: usize = 256 * 1024;

/// Options that shape a table.
#[derive(Debug, Clone, Copy)]
pub struct TableOptions {
    /// Target size of a data block.
    pub block_bytes: usize,
    /// Entries between restart points in data blocks.
    pub restart_interval: usize,
    /// Bloom filter bits per key.
    pub filter_bits_per_key: u32,
    /// How data blocks are compressed.
    pub compression: Compression,
}

/// Streams entries into a new table file.
#[derive(Debug)]
pub struct TableBuilder {
    file: Box<dyn WritableFile>,
    opts: TableOptions,
    offset: u64,
    out: Vec<u8>,
    data: BlockBuilder,
    /// Scratch space for a compressed block.
    compressed: Vec<u8>,
    index: BlockBuilder,
    hashes: Vec<u64>,
    last_user_key: Vec<u8>,
    props: Properties,
}

impl TableBuilder {
    /// A builder writing to a new, empty `file`.
    pub fn new(file: Box<dyn WritableFile>, opts: TableOptions) -> TableBuilder {
        TableBuilder {
            file,
            opts,
            offset: 0,
            out: Vec::with_capacity(WRITE_BUFFER + opts.block_bytes),
            data: BlockBuilder::new(opts.restart_interval),
            compressed: Vec::new(),
            index: BlockBuilder::new(1),
            hashes: Vec::new(),
            last_user_key: Vec::new(),
            props: Properties {
                min_seq: u64::MAX,
                ..Properties::default()
            },
        }
    }

    /// Adds an entry; `ikey` must sort after every key added before.
    pub fn add(&mut self, ikey: &[u8], value: &[u8]) -> io::Result<()> {
        let parsed = key::parse(ikey).ok_or_else(|| io::Error::other("malformed internal key"))?;
        debug_assert!(
            self.props.entries == 0 || key::compare(self.largest_so_far(), ikey).is_lt(),
            "table keys out of order"
        );
        if self.props.entries == 0 {
            self.props.smallest = ikey.to_vec();
        }
        if self.props.entries == 0
            || key::compare_bytes(parsed.user_key, &self.last_user_key).is_ne()
        {
            self.hashes.push(hash64(parsed.user_key));
            self.last_user_key.clear();
            self.last_user_key.extend_from_slice(parsed.user_key);
        }
        self.props.entries += 1;
        if parsed.kind == key::Kind::Delete {
            self.props.deletions += 1;
        }
        self.props.min_seq = self.props.min_seq.min(parsed.seq);
        self.props.max_seq = self.props.max_seq.max(parsed.seq);
        self.props.raw_key_bytes += parsed.user_key.len() as u64;
        self.props.raw_value_bytes += value.len() as u64;
        self.data.add(ikey, value);
        if self.data.estimated_size() >= self.opts.block_bytes {
            self.flush_data_block()?;
        }
        Ok(())
    }

    /// The largest key added: the open data block's last, else the last flushed one's
    /// (`props.largest` is brought up to date when a data block is flushed).
    fn largest_so_far(&self) -> &[u8] {
        if self.data.is_empty() {
            &self.props.largest
        } else {
            self.data.last_key()
        }
    }

    /// Bytes the file will have if finished now (approximately).
    pub fn estimated_size(&self) -> u64 {
        self.offset + self.data.estimated_size() as u64
    }

    fn flush_data_block(&mut self) -> io::Result<()> {
        if self.data.is_empty() {
            return Ok(());
        }
        // The block's last key is the table's largest so far and the block's index key.
        self.props.largest.clear();
        self.props.largest.extend_from_slice(self.data.last_key());
        let contents = self.data.finish();
        self.props.raw_data_bytes += contents.len() as u64;
        let mut compressed = std::mem::take(&mut self.compressed);
        let codec = compression::compress(&contents, self.opts.compression, &mut compressed);
        let handle = if codec == Compression::None {
            self.write_block(&contents, BlockType::Data, Compression::None)?
        } else {
            self.props.compressed_blocks += 1;
            self.write_block(&compressed, BlockType::Data, codec)?
        };
        self.compressed = compressed;
        let mut h = Vec::with_capacity(20);
        handle.encode_to(&mut h);
        self.index.add(&self.props.largest, &h);
        self.props.data_blocks += 1;
        Ok(())
    }

    fn write_block(
        &mut self,
        stored: &[u8],
        kind: BlockType,
        codec: Compression,
    ) -> io::Result<BlockHandle> {
        let handle = BlockHandle {
            offset: self.offset,
            size: stored.len() as u64,
        };
        let crc = block_crc(handle.offset, stored, kind as u8, Some(codec.code()));
        self.out.extend_from_slice(stored);
        self.out.push(kind as u8);
        self.out.push(codec.code());
        self.out.extend_from_slice(&crc.to_le_bytes());
        self.offset += stored.len() as u64 + TRAILER_LEN as u64;
        if self.out.len() >= WRITE_BUFFER {
            self.file.append(&self.out)?;
            self.out.clear();
        }
        Ok(handle)
    }

    /// Writes the remaining blocks and the footer, syncs the file and returns the table's
    /// properties and size.
    pub fn finish(self) -> io::Result<(Properties, u64)> {
        let (props, size, mut file) = self.finish_unsynced()?;
        file.sync()?;
        Ok((props, size))
    }

    /// [`finish`](Self::finish) without the sync: the file is handed back, written but not
    /// yet durable, for the caller to sync before anything refers to the table.
    pub fn finish_unsynced(mut self) -> io::Result<(Properties, u64, Box<dyn WritableFile>)> {
        self.flush_data_block()?;
        let filter = filter::build(&self.hashes, self.opts.filter_bits_per_key);
        let filter_handle = self.write_block(&filter, BlockType::Filter, Compression::None)?;
        if self.props.entries == 0 {
            self.props.min_seq = 0;
        }
        let props = self.props.encode();
        let props_handle = self.write_block(&props, BlockType::Properties, Compression::None)?;
        let index = self.index.finish();
        let index_handle = self.write_block(&index, BlockType::Index, Compression::None)?;
        let footer = Footer {
            index: index_handle,
            filter: filter_handle,
            props: props_handle,
            version: TABLE_FORMAT_VERSION,
        }
        .encode();
        self.out.extend_from_slice(&footer);
        self.offset += footer.len() as u64;
        self.file.append(&self.out)?;
        Ok((self.props, self.offset, self.file))
    }
}
