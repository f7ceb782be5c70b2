//! Fuzz target: a bloom filter block, read raw and built from the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::filter(data));
