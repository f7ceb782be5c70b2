//! Fuzz target: one manifest edit, decoded, re-encoded and applied.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::manifest_edit(data));
