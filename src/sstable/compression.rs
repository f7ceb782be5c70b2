//! Block compression: the codecs a table's data blocks may be stored with, and the bounded
//! encoding of a compressed block (`docs/format.md`, "Compressed blocks").
//!
//! ```text
//! stored block (compression 0)    := contents
//! stored block (compression 1, 2) := raw_len: varint | payload
//!     1 = LZ4 block format (no frame), 2 = a zstd frame
//!     raw_len <= MAX_RAW_BLOCK_LEN and raw_len <= max(256 * payload_len, 64 KiB)
//! ```
//!
//! The two bounds on `raw_len` are what make decoding safe on untrusted bytes: a reader
//! allocates `raw_len` bytes before it decompresses, so a crafted length can never ask for
//! more than a small multiple of the bytes actually on disk. The writer keeps to the same
//! bounds (a block that would break them is stored another way), so every table it writes
//! reads back.
#![deny(clippy::indexing_slicing)]

use crate::coding::{Reader, put_varint};
use crate::error::Corrupt;

/// The largest uncompressed block that may be stored compressed (the largest configurable
/// block size). Bigger blocks, which only a single huge entry makes, are stored as they are.
pub const MAX_RAW_BLOCK_LEN: usize = 64 << 20;

/// How many times larger than its payload a compressed block may claim to be, at most
/// (LZ4 cannot expand beyond about 255×, so this bound only ever stops zstd or damage).
const MAX_EXPANSION: usize = 256;

/// Blocks up to this size may claim any ratio (an allocation this small is harmless).
const SMALL_RAW_LEN: usize = 64 << 10;

/// The zstd level used for [`Compression::Zstd`].
#[cfg(feature = "zstd")]
const ZSTD_LEVEL: i32 = 3;

/// How a table's data blocks are compressed; chosen per level in
/// [`Config::compression`](crate::Config::compression).
///
/// Compression is recorded in every block, so tables (and blocks) written with different
/// settings mix freely in one store, and changing the setting affects only tables written
/// after the change. A block that does not get smaller is stored uncompressed whatever the
/// setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Compression {
    /// Stored as is: read straight from the file's memory map, no copy.
    #[default]
    None,
    /// LZ4 (pure Rust, `lz4_flex`): fast to decompress, about 2× on text-like data.
    Lz4,
    /// zstd level 3: smaller than LZ4, slower to decompress. Needs the `zstd` feature;
    /// without it a configuration naming it is refused, and a table holding zstd blocks
    /// fails to read with a clear error.
    Zstd,
}

impl Compression {
    /// The code stored in a block trailer.
    pub fn code(self) -> u8 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 1,
            Compression::Zstd => 2,
        }
    }

    /// The codec a stored code names, if any.
    pub fn from_code(code: u8) -> Option<Compression> {
        match code {
            0 => Some(Compression::None),
            1 => Some(Compression::Lz4),
            2 => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// A short lower-case name ("none", "lz4", "zstd").
    pub fn name(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }

    /// Whether this build can write and read the codec.
    pub fn is_available(self) -> bool {
        match self {
            Compression::None | Compression::Lz4 => true,
            Compression::Zstd => cfg!(feature = "zstd"),
        }
    }
}

impl std::fmt::Display for Compression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether a block claiming `raw_len` bytes may be decoded from a payload of `payload_len`.
fn within_bounds(raw_len: usize, payload_len: usize) -> bool {
    raw_len <= MAX_RAW_BLOCK_LEN
        && raw_len <= payload_len.saturating_mul(MAX_EXPANSION).max(SMALL_RAW_LEN)
}

/// Compresses `raw` with `codec` into `out` (cleared first) and returns the codec used: the
/// one asked for, LZ4 when zstd would break the expansion bound, or [`Compression::None`]
/// (and `out` left empty) when compression does not make the block smaller.
pub fn compress(raw: &[u8], codec: Compression, out: &mut Vec<u8>) -> Compression {
    out.clear();
    if codec == Compression::None || raw.len() > MAX_RAW_BLOCK_LEN {
        return Compression::None;
    }
    for c in [codec, Compression::Lz4] {
        out.clear();
        put_varint(out, raw.len() as u64);
        let header = out.len();
        if !encode_payload(raw, c, out) {
            continue;
        }
        let payload = out.len() - header;
        if out.len() < raw.len() && within_bounds(raw.len(), payload) {
            return c;
        }
        if out.len() >= raw.len() {
            break;
        }
    }
    out.clear();
    Compression::None
}

/// Appends `raw` compressed with `codec` to `out`; false if the codec cannot be used.
fn encode_payload(raw: &[u8], codec: Compression, out: &mut Vec<u8>) -> bool {
    match codec {
        Compression::None => false,
        Compression::Lz4 => {
            let start = out.len();
            out.resize(
                start + lz4_flex::block::get_maximum_output_size(raw.len()),
                0,
            );
            let written = out
                .get_mut(start..)
                .and_then(|dst| lz4_flex::block::compress_into(raw, dst).ok());
            match written {
                Some(n) => {
                    out.truncate(start + n);
                    true
                }
                None => {
                    out.truncate(start);
                    false
                }
            }
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => match zstd_compress(raw) {
            Ok(v) => {
                out.extend_from_slice(&v);
                true
            }
            Err(_) => false,
        },
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => false,
    }
}

/// Decodes a block stored with `codec` (not [`Compression::None`]) whose stored bytes start
/// at file offset `base`; returns the uncompressed contents. Never allocates more than the
/// bounds in the module documentation allow.
pub fn decompress(stored: &[u8], codec: Compression, base: u64) -> Result<Vec<u8>, Corrupt> {
    let mut r = Reader::new(stored, base);
    let raw_len = r.varint("uncompressed block length")?;
    let payload = stored.get(r.position()..).unwrap_or_default();
    let raw_len = usize::try_from(raw_len)
        .ok()
        .filter(|&n| within_bounds(n, payload.len()))
        .ok_or_else(|| {
            Corrupt::new(
                base,
                format!(
                    "compressed block claims {raw_len} bytes from a {}-byte payload",
                    payload.len()
                ),
            )
        })?;
    let bad = |what: String| Corrupt::new(base, format!("{} block: {what}", codec.name()));
    match codec {
        Compression::None => Err(bad("not a compressed block".into())),
        Compression::Lz4 => {
            let mut out = vec![0u8; raw_len];
            let n = lz4_flex::block::decompress_into(payload, &mut out)
                .map_err(|e| bad(format!("cannot decompress: {e}")))?;
            if n != raw_len {
                return Err(bad(format!(
                    "decompressed to {n} bytes, expected {raw_len}"
                )));
            }
            Ok(out)
        }
        #[cfg(feature = "zstd")]
        Compression::Zstd => {
            let mut out = vec![0u8; raw_len];
            let n = zstd_decompress(payload, &mut out)
                .map_err(|e| bad(format!("cannot decompress: {e}")))?;
            if n != raw_len {
                return Err(bad(format!(
                    "decompressed to {n} bytes, expected {raw_len}"
                )));
            }
            Ok(out)
        }
        #[cfg(not(feature = "zstd"))]
        Compression::Zstd => Err(bad(
            "this build cannot read zstd blocks (built without the `zstd` feature)".into(),
        )),
    }
}

#[cfg(feature = "zstd")]
thread_local! {
    /// Each thread keeps its zstd contexts, which are costly to set up for every block.
    static ZSTD_COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static ZSTD_DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

#[cfg(feature = "zstd")]
fn zstd_compress(raw: &[u8]) -> std::io::Result<Vec<u8>> {
    ZSTD_COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        let ctx = match c.as_mut() {
            Some(ctx) => ctx,
            None => c.insert(zstd::bulk::Compressor::new(ZSTD_LEVEL)?),
        };
        ctx.compress(raw)
    })
}

#[cfg(feature = "zstd")]
fn zstd_decompress(payload: &[u8], out: &mut [u8]) -> std::io::Result<usize> {
    ZSTD_DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let ctx = match d.as_mut() {
            Some(ctx) => ctx,
            None => d.insert(zstd::bulk::Decompressor::new()?),
        };
        ctx.decompress_to_buffer(payload, out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"abcdefgh"[(i * 7 / 3) % 8]).collect()
    }

    #[test]
    fn round_trips_and_falls_back_when_nothing_is_saved() {
        let mut out = Vec::new();
        for codec in [Compression::Lz4, Compression::Zstd] {
            if !codec.is_available() {
                continue;
            }
            let raw = sample(4096);
            assert_eq!(compress(&raw, codec, &mut out), codec);
            assert!(out.len() < raw.len() / 2);
            assert_eq!(decompress(&out, codec, 0).unwrap(), raw);
            // Incompressible bytes stay as they are.
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            let noise: Vec<u8> = (0..4096)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x >> 32) as u8
                })
                .collect();
            assert_eq!(compress(&noise, codec, &mut out), Compression::None);
            assert!(out.is_empty());
        }
        assert_eq!(
            compress(&sample(100), Compression::None, &mut out),
            Compression::None
        );
    }

    #[test]
    fn damaged_blocks_are_errors_never_panics() {
        let raw = sample(8192);
        let mut good = Vec::new();
        assert_eq!(
            compress(&raw, Compression::Lz4, &mut good),
            Compression::Lz4
        );
        for i in 0..good.len() {
            for bit in [0x01u8, 0x10, 0x80] {
                let mut bad = good.clone();
                bad[i] ^= bit;
                if let Ok(v) = decompress(&bad, Compression::Lz4, 0) {
                    assert_eq!(v.len(), raw.len());
                }
            }
        }
        for cut in 0..good.len() {
            let _ = decompress(&good[..cut], Compression::Lz4, 0);
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]
        /// The LZ4 decoder's bounds checks (not its safe-code mode) are what stand between
        /// a damaged payload and memory: any bytes decode to exactly the claimed length or
        /// fail, splices of a real block included.
        #[test]
        fn arbitrary_payloads_decode_to_the_claimed_length_or_fail(
            raw_len in 0usize..=2 * SMALL_RAW_LEN,
            junk in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            splice in 0usize..4096,
        ) {
            let mut real = Vec::new();
            proptest::prop_assert_eq!(compress(&sample(4096), Compression::Lz4, &mut real), Compression::Lz4);
            let real = &real[2..]; // past the 2-byte varint of 4096
            let spliced = [&real[..splice.min(real.len())], &junk[..]].concat();
            for payload in [&junk, &spliced] {
                let mut v = Vec::new();
                put_varint(&mut v, raw_len as u64);
                v.extend_from_slice(payload);
                if let Ok(out) = decompress(&v, Compression::Lz4, 0) {
                    proptest::prop_assert_eq!(out.len(), raw_len);
                }
            }
        }
    }

    #[test]
    fn a_huge_claimed_length_is_refused_before_allocating() {
        let mut v = Vec::new();
        put_varint(&mut v, 1 << 40);
        v.extend_from_slice(&[0; 16]);
        let e = decompress(&v, Compression::Lz4, 7).unwrap_err();
        assert!(e.reason.contains("claims"), "{e:?}");
        assert_eq!(e.offset, 7);
        let mut v = Vec::new();
        put_varint(&mut v, (SMALL_RAW_LEN + 1) as u64);
        v.extend_from_slice(&[0; 16]);
        assert!(decompress(&v, Compression::Lz4, 0).is_err());
        assert!(within_bounds(SMALL_RAW_LEN, 1));
        assert!(within_bounds(MAX_EXPANSION * 1000, 1000));
        assert!(!within_bounds(MAX_RAW_BLOCK_LEN + 1, MAX_RAW_BLOCK_LEN));
    }

    #[test]
    fn codes_round_trip() {
        for c in [Compression::None, Compression::Lz4, Compression::Zstd] {
            assert_eq!(Compression::from_code(c.code()), Some(c));
        }
        assert_eq!(Compression::from_code(3), None);
    }
}
