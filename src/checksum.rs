//! Checksums as stored on disk: CRC-32 (IEEE, computed by `crc32fast`), *masked* where it is
//! stored inside data that is itself checksummed (`docs/format.md`), as LevelDB does.

const MASK_DELTA: u32 = 0xa282_ead8;

/// Masks a CRC so that a CRC stored inside checksummed data does not weaken the outer one.
pub fn mask_crc(crc: u32) -> u32 {
    crc.rotate_right(15).wrapping_add(MASK_DELTA)
}
