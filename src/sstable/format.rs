//! SSTable byte layout (`docs/format.md`, "Table"): block handles, block trailers, the
//! properties block and the footer.
//!
//! ```text
//! table  := data_block* filter_block properties_block index_block footer
//! block  := stored | trailer
//! trailer, version 2 (6 bytes) := block_type: u8 | compression: u8 | crc32: u32
//!     crc32 is masked and covers: the block's file offset (u64 LE), the stored bytes, the
//!     type byte, the compression byte. Binding the offset means a block copied to the
//!     wrong place fails its check. Only data blocks may be compressed (see
//!     `super::compression` for the stored form of a compressed block).
//! trailer, version 1 (5 bytes) := block_type: u8 | crc32: u32 (over offset, stored, type)
//!     Version 1 tables have no compression byte: every block is stored as is.
//! handle := offset: varint | size: varint          (size excludes the trailer)
//! footer (52 bytes) :=
//!     index_offset: u64 | index_size: u32 |
//!     filter_offset: u64 | filter_size: u32 |
//!     props_offset: u64 | props_size: u32 |
//!     format_version: u32 | crc32: u32 (masked, over the 40 bytes before it) | magic: u64
//! ```
#![deny(clippy::indexing_slicing)]

use bytes::Bytes;

use super::compression::{Compression, decompress};
use crate::checksum::mask_crc;
use crate::coding::{Reader, get_u32, get_u64, put_len_prefixed, put_u32, put_u64, put_varint};
use crate::error::Corrupt;

/// Table file magic number ("strataST" little-endian).
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"strataST");
/// Table format version written by this build: per-block compression.
pub const TABLE_FORMAT_VERSION: u32 = 2;
/// The oldest table format version this build reads (uncompressed blocks, 5-byte trailers).
pub const MIN_TABLE_FORMAT_VERSION: u32 = 1;
/// Size of the footer.
pub const FOOTER_LEN: usize = 52;
/// Size of a block trailer in the current format.
pub const TRAILER_LEN: usize = 6;

/// Size of a block trailer in tables of format `version`.
pub fn trailer_len(version: u32) -> usize {
    if version >= 2 { TRAILER_LEN } else { 5 }
}

/// Block types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BlockType {
    /// Sorted entries.
    Data = 1,
    /// Separator keys and data-block handles.
    Index = 2,
    /// The bloom filter.
    Filter = 3,
    /// Table properties.
    Properties = 4,
}

/// The checksum stored in a block trailer; `compression` is the trailer's compression byte
/// (`None` in version 1 tables, which have none).
pub fn block_crc(offset: u64, stored: &[u8], block_type: u8, compression: Option<u8>) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&offset.to_le_bytes());
    h.update(stored);
    h.update(&[block_type]);
    if let Some(c) = compression {
        h.update(&[c]);
    }
    mask_crc(h.finalize())
}

/// A block as found in the file: its stored bytes and its trailer, bounds checked but not
/// yet checksummed.
#[derive(Debug, Clone)]
pub struct StoredBlock {
    /// The stored bytes (compressed or not), without the trailer.
    pub stored: Bytes,
    /// The trailer's block type byte.
    pub block_type: u8,
    /// The trailer's compression byte (always 0 in version 1 tables).
    pub compression: u8,
    /// The checksum the trailer holds.
    pub stored_crc: u32,
    /// The block's file offset.
    pub offset: u64,
    /// The table's format version.
    pub version: u32,
}

impl StoredBlock {
    /// Locates the block `h` names in a table of format `version` whose blocks end by
    /// `limit` (the footer's offset); fails if the block or its trailer leave that range.
    pub fn locate(
        data: &Bytes,
        limit: u64,
        h: BlockHandle,
        version: u32,
    ) -> Result<StoredBlock, Corrupt> {
        let tlen = trailer_len(version);
        let end = h
            .offset
            .checked_add(h.size)
            .and_then(|e| e.checked_add(tlen as u64))
            .filter(|&e| e <= limit && e <= data.len() as u64)
            .ok_or_else(|| Corrupt::new(h.offset, "block handle out of range"))?;
        let body_end = (end - tlen as u64) as usize;
        let trailer = data.get(body_end..end as usize).unwrap_or_default();
        let (compression, crc_at) = if version >= 2 {
            (trailer.get(1).copied().unwrap_or_default(), 2)
        } else {
            (0, 1)
        };
        Ok(StoredBlock {
            stored: data.slice(h.offset as usize..body_end),
            block_type: trailer.first().copied().unwrap_or_default(),
            compression,
            stored_crc: get_u32(trailer, crc_at).unwrap_or_default(),
            offset: h.offset,
            version,
        })
    }

    /// The checksum of the stored bytes and trailer as they are now.
    pub fn computed_crc(&self) -> u32 {
        let compression = (self.version >= 2).then_some(self.compression);
        block_crc(self.offset, &self.stored, self.block_type, compression)
    }

    /// Whether the stored checksum matches.
    pub fn checksum_ok(&self) -> bool {
        self.computed_crc() == self.stored_crc
    }

    /// The codec the compression byte names (an error for an unknown byte).
    pub fn codec(&self) -> Result<Compression, Corrupt> {
        Compression::from_code(self.compression).ok_or_else(|| {
            Corrupt::new(
                self.offset + self.stored.len() as u64 + 1,
                format!("unknown block compression {}", self.compression),
            )
        })
    }

    /// Checks the type and (with `verify`) the checksum, then returns the block's contents:
    /// the stored bytes themselves when uncompressed (no copy), else decompressed. Only
    /// data blocks may be compressed.
    pub fn contents(&self, kind: BlockType, verify: bool) -> Result<Bytes, Corrupt> {
        self.check(kind, verify)?;
        match self.codec()? {
            Compression::None => Ok(self.stored.clone()),
            _ if kind != BlockType::Data => Err(Corrupt::new(
                self.offset,
                format!("compressed block of type {}", kind as u8),
            )),
            codec => decompress(&self.stored, codec, self.offset).map(Bytes::from),
        }
    }

    /// Checks the trailer's type and (with `verify`) the checksum.
    pub fn check(&self, kind: BlockType, verify: bool) -> Result<(), Corrupt> {
        if self.block_type != kind as u8 {
            return Err(Corrupt::new(
                self.offset + self.stored.len() as u64,
                format!(
                    "expected block type {}, found {}",
                    kind as u8, self.block_type
                ),
            ));
        }
        if verify && !self.checksum_ok() {
            return Err(Corrupt::new(self.offset, "block checksum mismatch"));
        }
        Ok(())
    }
}

/// Where a block lives in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BlockHandle {
    /// Offset of the block's first byte.
    pub offset: u64,
    /// Size of the contents, excluding the trailer.
    pub size: u64,
}

impl BlockHandle {
    /// Appends the varint encoding.
    pub fn encode_to(&self, dst: &mut Vec<u8>) {
        put_varint(dst, self.offset);
        put_varint(dst, self.size);
    }

    /// Decodes a handle that must fill `src` exactly.
    pub fn decode(src: &[u8]) -> Result<BlockHandle, Corrupt> {
        let mut r = Reader::new(src, 0);
        let h = BlockHandle {
            offset: r.varint("block offset")?,
            size: r.varint("block size")?,
        };
        if !r.is_empty() {
            return Err(r.corrupt("trailing bytes after block handle"));
        }
        Ok(h)
    }
}

/// The fixed-size footer at the end of every table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footer {
    /// The index block.
    pub index: BlockHandle,
    /// The filter block.
    pub filter: BlockHandle,
    /// The properties block.
    pub props: BlockHandle,
    /// The table's format version.
    pub version: u32,
}

impl Footer {
    /// Encodes the footer.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FOOTER_LEN);
        for h in [self.index, self.filter, self.props] {
            put_u64(&mut v, h.offset);
            // Block sizes are bounded well below 4 GiB by the builder.
            put_u32(&mut v, h.size as u32);
        }
        put_u32(&mut v, self.version);
        let crc = mask_crc(crc32fast::hash(&v));
        put_u32(&mut v, crc);
        put_u64(&mut v, TABLE_MAGIC);
        v
    }

    /// Decodes the footer from the last [`FOOTER_LEN`] bytes of a table of `file_len` bytes.
    pub fn decode(buf: &[u8], file_len: u64) -> Result<Footer, Corrupt> {
        let base = file_len.saturating_sub(FOOTER_LEN as u64);
        if buf.len() != FOOTER_LEN {
            return Err(Corrupt::new(base, "file too short for a table footer"));
        }
        if get_u64(buf, 44) != Some(TABLE_MAGIC) {
            return Err(Corrupt::new(base + 44, "bad table magic number"));
        }
        let body = buf.get(..40).unwrap_or_default();
        if get_u32(buf, 40).map(|c| c == mask_crc(crc32fast::hash(body))) != Some(true) {
            return Err(Corrupt::new(base + 40, "footer checksum mismatch"));
        }
        let version = get_u32(buf, 36).unwrap_or_default();
        if !(MIN_TABLE_FORMAT_VERSION..=TABLE_FORMAT_VERSION).contains(&version) {
            return Err(Corrupt::new(
                base + 36,
                format!(
                    "unsupported table format version {version} (this build reads \
                     {MIN_TABLE_FORMAT_VERSION} to {TABLE_FORMAT_VERSION})"
                ),
            ));
        }
        let handle = |at: usize| BlockHandle {
            offset: get_u64(buf, at).unwrap_or_default(),
            size: u64::from(get_u32(buf, at + 8).unwrap_or_default()),
        };
        Ok(Footer {
            index: handle(0),
            filter: handle(12),
            props: handle(24),
            version,
        })
    }
}

/// Summary figures of a table, stored in its properties block.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// Entries (versions) in the table.
    pub entries: u64,
    /// Of which tombstones.
    pub deletions: u64,
    /// Smallest seqno.
    pub min_seq: u64,
    /// Largest seqno.
    pub max_seq: u64,
    /// Sum of user-key lengths.
    pub raw_key_bytes: u64,
    /// Sum of value lengths.
    pub raw_value_bytes: u64,
    /// Data blocks.
    pub data_blocks: u64,
    /// Of which stored compressed (version 2; 0 in version 1 tables).
    pub compressed_blocks: u64,
    /// Bytes of data-block contents before compression (version 2; in version 1 tables,
    /// where nothing is compressed, 0).
    pub raw_data_bytes: u64,
    /// Smallest internal key.
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
}

impl Properties {
    /// Encodes the properties block contents.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for x in [
            self.entries,
            self.deletions,
            self.min_seq,
            self.max_seq,
            self.raw_key_bytes,
            self.raw_value_bytes,
            self.data_blocks,
        ] {
            put_varint(&mut v, x);
        }
        put_len_prefixed(&mut v, &self.smallest);
        put_len_prefixed(&mut v, &self.largest);
        put_varint(&mut v, self.compressed_blocks);
        put_varint(&mut v, self.raw_data_bytes);
        v
    }

    /// Encodes the properties block contents of a version 1 table (for compatibility tests).
    #[cfg(test)]
    pub fn encode_v1(&self) -> Vec<u8> {
        let mut v = self.encode();
        let mut tail = Vec::new();
        put_varint(&mut tail, self.compressed_blocks);
        put_varint(&mut tail, self.raw_data_bytes);
        v.truncate(v.len() - tail.len());
        v
    }

    /// Decodes the properties block of a table of format `version`, whose contents start at
    /// file offset `base`.
    pub fn decode(src: &[u8], base: u64, version: u32) -> Result<Properties, Corrupt> {
        let mut r = Reader::new(src, base);
        let mut p = Properties {
            entries: r.varint("entries")?,
            deletions: r.varint("deletions")?,
            min_seq: r.varint("min seqno")?,
            max_seq: r.varint("max seqno")?,
            raw_key_bytes: r.varint("raw key bytes")?,
            raw_value_bytes: r.varint("raw value bytes")?,
            data_blocks: r.varint("data blocks")?,
            ..Properties::default()
        };
        let limit = crate::limits::MAX_KEY_LEN + crate::key::TRAILER_LEN;
        p.smallest = r.len_prefixed(limit, "smallest key")?.to_vec();
        p.largest = r.len_prefixed(limit, "largest key")?.to_vec();
        if version >= 2 {
            p.compressed_blocks = r.varint("compressed blocks")?;
            p.raw_data_bytes = r.varint("raw data bytes")?;
        }
        if !r.is_empty() {
            return Err(r.corrupt("trailing bytes in properties"));
        }
        if p.min_seq > p.max_seq || p.deletions > p.entries || p.compressed_blocks > p.data_blocks {
            return Err(Corrupt::new(base, "inconsistent table properties"));
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn footer_round_trips_and_rejects_damage() {
        let f = Footer {
            index: BlockHandle {
                offset: 1000,
                size: 200,
            },
            filter: BlockHandle {
                offset: 10,
                size: 900,
            },
            props: BlockHandle {
                offset: 915,
                size: 80,
            },
            version: TABLE_FORMAT_VERSION,
        };
        let b = f.encode();
        assert_eq!(b.len(), FOOTER_LEN);
        assert_eq!(Footer::decode(&b, 5000).unwrap(), f);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(Footer::decode(&bad, 5000).is_err(), "flip at {i}");
        }
        assert!(Footer::decode(&b[1..], 5000).is_err());
        for version in [0, TABLE_FORMAT_VERSION + 1] {
            let e = Footer::decode(&Footer { version, ..f }.encode(), 5000).unwrap_err();
            assert!(
                e.reason.contains("unsupported table format version"),
                "{e:?}"
            );
        }
        let old = Footer { version: 1, ..f };
        assert_eq!(Footer::decode(&old.encode(), 5000).unwrap(), old);
    }

    #[test]
    fn properties_round_trip() {
        let p = Properties {
            entries: 10,
            deletions: 2,
            min_seq: 5,
            max_seq: 99,
            raw_key_bytes: 100,
            raw_value_bytes: 1000,
            data_blocks: 3,
            compressed_blocks: 2,
            raw_data_bytes: 9000,
            smallest: b"a\0\0\0\0\0\0\0\0".to_vec(),
            largest: b"z\0\0\0\0\0\0\0\0".to_vec(),
        };
        assert_eq!(Properties::decode(&p.encode(), 0, 2).unwrap(), p);
        let mut bad = p.encode();
        bad.push(1);
        assert!(Properties::decode(&bad, 0, 2).is_err());
        // Version 1 properties end after the key range.
        let v1 = Properties::decode(&p.encode_v1(), 0, 1).unwrap();
        assert_eq!((v1.compressed_blocks, v1.raw_data_bytes), (0, 0));
        assert!(Properties::decode(&p.encode(), 0, 1).is_err());
        let mut more = p.clone();
        more.compressed_blocks = 4;
        assert!(Properties::decode(&more.encode(), 0, 2).is_err());
    }

    #[test]
    fn handles_reject_trailing_bytes() {
        let mut v = Vec::new();
        BlockHandle { offset: 1, size: 2 }.encode_to(&mut v);
        assert_eq!(
            BlockHandle::decode(&v).unwrap(),
            BlockHandle { offset: 1, size: 2 }
        );
        v.push(0);
        assert!(BlockHandle::decode(&v).is_err());
    }
}
