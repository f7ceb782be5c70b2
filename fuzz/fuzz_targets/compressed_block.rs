//! Fuzz target: a compressed block's stored bytes through the bounded decoder; and a block
//! compressed from the input, which must decompress to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::compressed_block(data));
