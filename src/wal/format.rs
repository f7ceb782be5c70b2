//! Log framing shared by the WAL segments and the manifest (`docs/format.md`, "Log files").
//!
//! A log file is a 32-byte file header followed by records framed in 32 KiB blocks. Block
//! boundaries are counted from the start of the file, so block 0 holds the header.
//!
//! ```text
//! file header (32 bytes):
//!   magic: [u8; 8] | format_version: u32 | file_number: u64 | prev_number: u64 | crc32: u32
//!   (crc32 covers the 28 bytes before it)
//!
//! chunk (7-byte header + payload, never crossing a block boundary):
//!   crc32: u32 (masked, over type byte + payload) | len: u16 | type: u8 | payload[len]
//! ```
//!
//! A logical record too long for the rest of a block is split into FIRST, MIDDLE.., LAST
//! chunks; one that fits is a single FULL chunk. When fewer than 7 bytes remain in a block
//! they are zero-filled and the next chunk starts at the next block. A chunk header of all
//! zeros (type 0) marks space that was never written: a preallocated tail or lost pages.
#![deny(clippy::indexing_slicing)]

use crate::checksum::mask_crc;
use crate::coding::{get_u32, get_u64, put_u32, put_u64};
use crate::error::Corrupt;

/// Size of a framing block.
pub const BLOCK_SIZE: usize = 32 * 1024;
/// Size of a chunk header.
pub const CHUNK_HEADER_LEN: usize = 7;
/// Size of the file header.
pub const FILE_HEADER_LEN: usize = 32;
/// The first log format version, still read for both kinds of log.
pub const FORMAT_V1: u32 = 1;
/// The WAL format version written today: version 1 plus the seal record that ends a segment
/// closed cleanly (`wal::segment`).
pub const WAL_FORMAT_VERSION: u32 = 2;
/// WAL versions this code reads.
pub const WAL_VERSIONS: &[u32] = &[FORMAT_V1, WAL_FORMAT_VERSION];
/// The manifest format version written today.
pub const MANIFEST_FORMAT_VERSION: u32 = FORMAT_V1;
/// Manifest versions this code reads.
pub const MANIFEST_VERSIONS: &[u32] = &[FORMAT_V1];

/// Magic of WAL segment files.
pub const WAL_MAGIC: [u8; 8] = *b"strataWL";
/// Magic of manifest files.
pub const MANIFEST_MAGIC: [u8; 8] = *b"strataMF";

/// Chunk types.
pub const ZERO: u8 = 0;
/// A whole record in one chunk.
pub const FULL: u8 = 1;
/// The first chunk of a split record.
pub const FIRST: u8 = 2;
/// An inner chunk of a split record.
pub const MIDDLE: u8 = 3;
/// The last chunk of a split record.
pub const LAST: u8 = 4;

/// The CRC of a chunk: over its type byte and payload, masked.
pub fn chunk_crc(kind: u8, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    h.update(payload);
    mask_crc(h.finalize())
}

/// The fixed header at the start of every log file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Which kind of log this is.
    pub magic: [u8; 8],
    /// The format version the file is written in.
    pub version: u32,
    /// The file's own number (it is also in the name; a mismatch is corruption).
    pub file_number: u64,
    /// WAL: the number of the segment written before this one (0 if none). Manifest: 0.
    pub prev_number: u64,
}

impl FileHeader {
    /// Encodes the header.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(FILE_HEADER_LEN);
        v.extend_from_slice(&self.magic);
        put_u32(&mut v, self.version);
        put_u64(&mut v, self.file_number);
        put_u64(&mut v, self.prev_number);
        let crc = mask_crc(crc32fast::hash(&v));
        put_u32(&mut v, crc);
        v
    }

    /// Decodes and checks a header against the expected magic and the versions accepted.
    pub fn decode(buf: &[u8], magic: [u8; 8], versions: &[u32]) -> Result<FileHeader, Corrupt> {
        let body = buf
            .get(..FILE_HEADER_LEN - 4)
            .ok_or_else(|| Corrupt::new(0, "file header truncated"))?;
        let stored = get_u32(buf, FILE_HEADER_LEN - 4).unwrap_or_default();
        if mask_crc(crc32fast::hash(body)) != stored {
            return Err(Corrupt::new(0, "file header checksum mismatch"));
        }
        if body.get(..8) != Some(&magic[..]) {
            return Err(Corrupt::new(0, "bad magic number"));
        }
        let version = get_u32(body, 8).unwrap_or_default();
        if !versions.contains(&version) {
            return Err(Corrupt::new(
                8,
                format!("unsupported log format version {version}"),
            ));
        }
        Ok(FileHeader {
            magic,
            version,
            file_number: get_u64(body, 12).unwrap_or_default(),
            prev_number: get_u64(body, 20).unwrap_or_default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_detects_damage() {
        let h = FileHeader {
            magic: WAL_MAGIC,
            version: WAL_FORMAT_VERSION,
            file_number: 7,
            prev_number: 3,
        };
        let bytes = h.encode();
        assert_eq!(bytes.len(), FILE_HEADER_LEN);
        assert_eq!(
            FileHeader::decode(&bytes, WAL_MAGIC, WAL_VERSIONS).unwrap(),
            h
        );
        assert!(FileHeader::decode(&bytes, MANIFEST_MAGIC, MANIFEST_VERSIONS).is_err());
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x10;
            assert!(
                FileHeader::decode(&bad, WAL_MAGIC, WAL_VERSIONS).is_err(),
                "flip at {i}"
            );
        }
        assert!(FileHeader::decode(&bytes[..10], WAL_MAGIC, WAL_VERSIONS).is_err());
    }
}
