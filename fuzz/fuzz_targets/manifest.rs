//! Fuzz target: a whole manifest file, replayed as recovery does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::manifest(data));
