//! strata's 64-bit key hash. It is part of the file format (table filters store bits chosen by
//! it), so it never changes; memtable filters and lookups use the same hash, computed once
//! per lookup.

/// strata's 64-bit key hash (stable across versions: it is part of the file format).
pub fn hash64(data: &[u8]) -> u64 {
    const P1: u64 = 0x9e37_79b1_85eb_ca87;
    const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
    let mix = |h: u64, w: u64| -> u64 {
        (h ^ w.wrapping_mul(P1).rotate_left(31).wrapping_mul(P2))
            .rotate_left(27)
            .wrapping_mul(P1)
            .wrapping_add(P2)
    };
    let mut h = P2 ^ (data.len() as u64).wrapping_mul(P1);
    let mut chunks = data.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        h = mix(h, u64::from_le_bytes(w));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut w = [0u8; 8];
        for (d, s) in w.iter_mut().zip(rest) {
            *d = *s;
        }
        h = mix(h, u64::from_le_bytes(w));
    }
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}
