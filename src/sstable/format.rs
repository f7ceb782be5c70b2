//! SSTable byte layout (`docs/format.md`, "SSTable"): block handles, block trailers, the
//! properties block and the footer.
//!
//! ```text
//! table  := data_block* filter_block properties_block index_block footer
//! block  := contents | trailer
//! trailer (5 bytes) := block_type: u8 | crc32: u32
//!     crc32 is masked and covers: the block's file offset (u64 LE), the contents, the type
//!     byte. Binding the offset means a block copied to the wrong place fails its check.
//! handle := offset: varint | size: varint          (size excludes the trailer)
//! footer (52 bytes) :=
//!     index_offset: u64 | index_size: u32 |
//!     filter_offset: u64 | filter_size: u32 |
//!     props_offset: u64 | props_size: u32 |
//!     format_version: u32 | crc32: u32 (masked, over the 40 bytes before it) | magic: u64
//! ```
#![deny(clippy::indexing_slicing)]

use crate::checksum::mask_crc;
use crate::coding::{Reader, get_u32, get_u64, put_len_prefixed, put_u32, put_u64, put_varint};
use crate::error::Corrupt;

/// Table file magic number ("strataST" little-endian).
pub const TABLE_MAGIC: u64 = u64::from_le_bytes(*b"strataST");
/// Current table format version.
pub const TABLE_FORMAT_VERSION: u32 = 1;
/// Size of the footer.
pub const FOOTER_LEN: usize = 52;
/// Size of a block trailer.
pub const TRAILER_LEN: usize = 5;

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

/// The checksum stored in a block trailer.
pub fn block_crc(offset: u64, contents: &[u8], block_type: u8) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&offset.to_le_bytes());
    h.update(contents);
    h.update(&[block_type]);
    mask_crc(h.finalize())
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
        put_u32(&mut v, TABLE_FORMAT_VERSION);
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
        if version != TABLE_FORMAT_VERSION {
            return Err(Corrupt::new(
                base + 36,
                format!("unsupported table format version {version}"),
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
        v
    }

    /// Decodes a properties block whose contents start at file offset `base`.
    pub fn decode(src: &[u8], base: u64) -> Result<Properties, Corrupt> {
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
        if !r.is_empty() {
            return Err(r.corrupt("trailing bytes in properties"));
        }
        if p.min_seq > p.max_seq || p.deletions > p.entries {
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
            smallest: b"a\0\0\0\0\0\0\0\0".to_vec(),
            largest: b"z\0\0\0\0\0\0\0\0".to_vec(),
        };
        assert_eq!(Properties::decode(&p.encode(), 0).unwrap(), p);
        let mut bad = p.encode();
        bad.push(1);
        assert!(Properties::decode(&bad, 0).is_err());
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
