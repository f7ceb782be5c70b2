//! Damage on the medium, one bit at a time: every bit of every byte of a closed store's
//! newest WAL segment and of its manifest is flipped in turn, and each open must either fail
//! with `Error::Corruption` or hold exactly the acknowledged data — never silently less.
//!
//! Also: a manifest whose last edit is cut short (the only damage a crash can leave there)
//! opens, and the table files that edit named are moved aside, not deleted.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::faultfs::{Fault, FaultFs, Op};
use strata::{Db, Error, FileSystem};

const DIR: &str = "/db";

fn open(fs: &Arc<FaultFs>) -> strata::Result<Db> {
    Db::builder(DIR)
        .filesystem(Arc::clone(fs) as Arc<dyn FileSystem>)
        .block_bytes(256)
        .wal_segment_bytes(4096) // small preallocations keep 13,000 opens in memory cheap
        .open()
}

/// Everything the store holds, or the error a read met.
fn contents(db: &Db) -> strata::Result<BTreeMap<String, String>> {
    db.iter()
        .map(|r| {
            r.map(|(k, v)| {
                (
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                )
            })
        })
        .collect()
}

/// Flips every bit of `file` in turn (each in a fresh copy of `fs`) and opens the store.
/// Returns how many flips were reported as corruption and how many opened intact.
fn sweep(fs: &Arc<FaultFs>, file: &Path, expected: &BTreeMap<String, String>) -> (u64, u64) {
    let len = fs.read_file(file).expect("file to damage").len();
    let (mut reported, mut intact) = (0, 0);
    for at in 0..len {
        for bit in 0..8 {
            let copy = fs.fork();
            copy.flip(file, at, 1 << bit);
            let ctx = format!("bit {bit} of byte {at} of {}", file.display());
            let got = open(&copy).and_then(|db| {
                let got = contents(&db);
                db.close()?;
                got
            });
            match got {
                Ok(got) => {
                    assert_eq!(&got, expected, "{ctx}: opened without error but lost data");
                    intact += 1;
                }
                Err(Error::Corruption { .. }) => reported += 1,
                Err(e) => panic!("{ctx}: unexpected error {e}"),
            }
        }
    }
    eprintln!(
        "{}: {} flips, {reported} reported as corruption, {intact} harmless",
        file.display(),
        len * 8
    );
    (reported, intact)
}

fn only_file(fs: &FaultFs, suffix: &str) -> std::path::PathBuf {
    let mut files = fs.files_named(suffix);
    files.retain(|f| f.to_string_lossy().ends_with(suffix));
    assert_eq!(files.len(), 1, "{suffix}: {files:?}");
    files[0].clone()
}

#[test]
fn every_bit_of_the_newest_wal_segment() {
    let fs = FaultFs::new();
    let db = open(&fs).unwrap();
    let mut expected = BTreeMap::new();
    for i in 0..24 {
        let (k, v) = (common::k(i), format!("value-{i}"));
        db.put(&k, &v).unwrap(); // synced: acknowledged as durable
        expected.insert(k, v);
    }
    db.close().unwrap();
    let segment = only_file(&fs, ".wal");
    let (reported, _) = sweep(&fs, &segment, &expected);
    // Damage to any record is seen: the header, every record and the seal are checked.
    assert!(reported > 0);
}

#[test]
fn every_bit_of_the_manifest() {
    let fs = FaultFs::new();
    let db = open(&fs).unwrap();
    let mut expected = BTreeMap::new();
    let mut i = 0;
    // Edits that add tables (flushes), then one that replaces them (a compaction), then
    // more flushes: the data of each depends on every edit before it.
    for round in 0..6 {
        for _ in 0..5 {
            let (k, v) = (common::k(i), format!("value-{i}"));
            db.put(&k, &v).unwrap();
            expected.insert(k, v);
            i += 1;
        }
        db.flush().unwrap();
        if round == 3 {
            db.compact().unwrap();
        }
    }
    db.close().unwrap();
    let manifest = fs.files_named("MANIFEST").remove(0);
    let (reported, _) = sweep(&fs, &manifest, &expected);
    assert!(reported > 0);
}

#[test]
fn a_torn_last_manifest_edit_opens_and_its_tables_are_set_aside() {
    let fs = FaultFs::new();
    let db = open(&fs).unwrap();
    for i in 0..50 {
        db.put(common::k(i), "v").unwrap();
    }
    // The flush writes its table, then fails half-way through appending its edit: a torn
    // edit the store never acted on (the WAL still holds the writes).
    fs.fail(&[Op::Append], "MANIFEST", 0, Fault::Eio);
    assert!(db.flush().is_err());
    drop(db);
    let tables_before = fs.files_named(".sst");
    assert_eq!(tables_before.len(), 1, "the flush wrote its table");

    let db = open(&fs).unwrap();
    let report = db.stats().recovery;
    assert!(report.manifest_torn_at.is_some(), "{report:?}");
    assert_eq!(report.stale_tables_removed, 0);
    let name = tables_before[0].file_name().unwrap();
    let aside = Path::new(DIR).join("lost").join(name);
    assert_eq!(report.tables_set_aside, vec![aside.clone()]);
    assert!(
        fs.read_file(&aside).is_some(),
        "the table was moved, not deleted"
    );
    assert!(fs.read_file(&tables_before[0]).is_none());
    assert_eq!(
        contents(&db).unwrap().len(),
        50,
        "every write survives in the WAL"
    );
}
