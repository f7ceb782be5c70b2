//! Fuzz target: a whole table, opened, iterated and probed; and one built from the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::sst_table(data));
