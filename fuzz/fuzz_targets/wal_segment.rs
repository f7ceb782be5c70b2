//! Fuzz target: a whole WAL segment file, scanned and replayed as recovery does.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::wal_segment(data));
