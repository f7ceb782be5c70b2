//! A cache-line-blocked bloom filter over the user keys of one table.
//!
//! Byte layout (`docs/format.md`, "Filter block"):
//!
//! ```text
//! filter := line * num_lines | num_probes: u8 | num_lines: u32
//! line   := 64 bytes (512 bits)
//! ```
//!
//! A key's 64-bit hash picks one line (high 32 bits, by multiply-shift) and sets or tests
//! `num_probes` bits inside it (double hashing on the low 32 bits), so a lookup touches one
//! cache line. At 10 bits per key the false-positive rate is about 1%.
#![deny(clippy::indexing_slicing)]

use crate::coding::get_u32;
use crate::error::Corrupt;

const LINE_BYTES: usize = 64;
const LINE_BITS: u32 = 512;
const TAIL_LEN: usize = 5;
/// The most probes a filter may ask for.
const MAX_PROBES: u8 = 30;

fn probes(hash: u64, num_probes: u8) -> impl Iterator<Item = u32> {
    let mut h = hash as u32;
    let delta = h.rotate_left(15) | 1;
    (0..num_probes).map(move |_| {
        let bit = h % LINE_BITS;
        h = h.wrapping_add(delta);
        bit
    })
}

fn line_of(hash: u64, num_lines: u32) -> usize {
    (((hash >> 32) * u64::from(num_lines)) >> 32) as usize
}

/// Builds a filter from the hashes of a table's distinct user keys.
pub fn build(hashes: &[u64], bits_per_key: u32) -> Vec<u8> {
    let bits = (hashes.len() as u64 * u64::from(bits_per_key)).max(u64::from(LINE_BITS));
    let num_lines = bits.div_ceil(u64::from(LINE_BITS)).min(u64::from(u32::MAX)) as u32;
    let num_probes = ((f64::from(bits_per_key) * 0.69).round() as u8).clamp(1, MAX_PROBES);
    let mut out = vec![0u8; num_lines as usize * LINE_BYTES];
    for &h in hashes {
        let base = line_of(h, num_lines) * LINE_BYTES;
        for bit in probes(h, num_probes) {
            if let Some(b) = out.get_mut(base + (bit / 8) as usize) {
                *b |= 1 << (bit % 8);
            }
        }
    }
    out.push(num_probes);
    out.extend_from_slice(&num_lines.to_le_bytes());
    out
}

/// A parsed filter block.
#[derive(Debug, Clone)]
pub struct Filter {
    bits: bytes::Bytes,
    num_lines: u32,
    num_probes: u8,
}

impl Filter {
    /// Checks the shape of a filter block starting at file offset `base`.
    pub fn new(data: bytes::Bytes, base: u64) -> Result<Filter, Corrupt> {
        let len = data.len();
        let body = len
            .checked_sub(TAIL_LEN)
            .ok_or_else(|| Corrupt::new(base, "filter block too short"))?;
        let num_probes = data.get(body).copied().unwrap_or_default();
        let num_lines = get_u32(&data, body + 1).unwrap_or_default();
        if num_lines == 0 || num_probes == 0 || num_probes > MAX_PROBES {
            return Err(Corrupt::new(base + body as u64, "bad filter parameters"));
        }
        if body != num_lines as usize * LINE_BYTES {
            return Err(Corrupt::new(
                base,
                "filter size does not match its line count",
            ));
        }
        Ok(Filter {
            bits: data.slice(..body),
            num_lines,
            num_probes,
        })
    }

    /// False only if no key with this hash was added.
    pub fn may_contain(&self, hash: u64) -> bool {
        let base = line_of(hash, self.num_lines) * LINE_BYTES;
        let Some(line) = self.bits.get(base..base + LINE_BYTES) else {
            return true;
        };
        probes(hash, self.num_probes).all(|bit| {
            line.get((bit / 8) as usize)
                .is_some_and(|b| b & (1 << (bit % 8)) != 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::hash64;

    #[test]
    fn no_false_negatives_and_about_one_percent_false_positives() {
        let keys: Vec<Vec<u8>> = (0..20_000u32)
            .map(|i| format!("key{i}").into_bytes())
            .collect();
        let hashes: Vec<u64> = keys.iter().map(|k| hash64(k)).collect();
        let f = Filter::new(bytes::Bytes::from(build(&hashes, 10)), 0).unwrap();
        assert!(hashes.iter().all(|&h| f.may_contain(h)));
        let fp = (0..20_000u32)
            .filter(|i| f.may_contain(hash64(format!("other{i}").as_bytes())))
            .count();
        let rate = fp as f64 / 20_000.0;
        assert!(rate < 0.025, "false-positive rate {rate}");
    }

    #[test]
    fn hash_is_stable() {
        // The hash is part of the on-disk format: these values must never change.
        assert_eq!(hash64(b""), hash64(b""));
        assert_ne!(hash64(b"a"), hash64(b"b"));
        assert_ne!(hash64(b"abcdefgh"), hash64(b"abcdefgh\0"));
        let pinned = [hash64(b""), hash64(b"strata"), hash64(b"0123456789abcdef")];
        assert_eq!(pinned, PINNED);
    }

    const PINNED: [u64; 3] = [
        1_149_234_389_432_173_950,
        3_108_282_522_195_195_835,
        8_462_892_838_224_057_538,
    ];

    #[test]
    fn malformed_filters_are_rejected() {
        assert!(Filter::new(bytes::Bytes::from_static(&[1, 2]), 0).is_err());
        let mut f = build(&[1, 2, 3], 10);
        let n = f.len();
        f[n - 5] = 0; // zero probes
        assert!(Filter::new(bytes::Bytes::from(f), 0).is_err());
        let mut g = build(&[1, 2, 3], 10);
        g.remove(0);
        assert!(Filter::new(bytes::Bytes::from(g), 0).is_err());
    }
}
