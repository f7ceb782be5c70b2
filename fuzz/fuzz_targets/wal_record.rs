//! Fuzz target: one WAL record payload (synced offset + batch), decoded and replayed into a memtable.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| strata::fuzzing::wal_record(data));
