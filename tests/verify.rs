//! `verify`: a healthy store has no damage; a flipped bit in a WAL segment, the manifest or a
//! table is found and named with its file and offset; verification changes nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use strata::verify::{FileKind, verify_dir};
use strata::{Db, SyncMode};

/// A closed store with tables in two levels, a manifest of several edits, and a WAL
/// segment holding writes not yet flushed.
fn build(dir: &Path) {
    let db = Db::builder(dir)
        .sync_mode(SyncMode::Always)
        .history_versions(3)
        .open()
        .unwrap();
    for round in 0..3u32 {
        for i in 0..300u64 {
            db.put(common::k(i), format!("v{round}-{i}")).unwrap();
        }
        db.flush().unwrap();
    }
    db.compact().unwrap();
    for i in 0..200u64 {
        db.put(common::k(i * 7), format!("late-{i}")).unwrap();
    }
    db.delete(common::k(3)).unwrap();
    db.close().unwrap();
}

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_healthy_store_has_no_damage_and_is_not_modified() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let before = snapshot(dir.path());
    let report = verify_dir(dir.path()).unwrap();
    assert!(report.is_healthy(), "{:#?}", report.damage);
    assert!(report.notes.is_empty(), "{:#?}", report.notes);
    assert_eq!(
        snapshot(dir.path()),
        before,
        "verification changed the store"
    );
    let kinds: Vec<FileKind> = report.files.iter().map(|f| f.kind).collect();
    for k in [FileKind::Manifest, FileKind::Table, FileKind::Wal] {
        assert!(kinds.contains(&k), "{k:?} not read: {kinds:?}");
    }
    let table_entries: u64 = report
        .files
        .iter()
        .filter(|f| f.kind == FileKind::Table)
        .map(|f| f.entries)
        .sum();
    assert!(table_entries >= 300, "{table_entries}");
    assert!(report.last_seqno >= 1101, "{}", report.last_seqno);

    // The open store's own verification agrees, while it runs.
    let db = Db::open(dir.path()).unwrap();
    db.put("x", "y").unwrap();
    let live = db.verify().unwrap();
    assert!(live.is_healthy(), "{:#?}", live.damage);
    assert!(live.tables > 0);
}

/// Flips one bit at `offset` of the file `pick` chooses and checks that verification
/// reports damage in that file, at an offset no later than the flip's block.
fn finds_flip(pick: impl Fn(&Path) -> (PathBuf, u64), kind: FileKind) {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let (file, offset) = pick(dir.path());
    flip(&file, offset);
    let report = verify_dir(dir.path()).unwrap();
    assert!(
        !report.is_healthy(),
        "flip at {offset} of {file:?} not found"
    );
    let hit = report
        .damage
        .iter()
        .find(|d| d.file == file)
        .unwrap_or_else(|| panic!("damage not in {file:?}: {:#?}", report.damage));
    assert_eq!(hit.kind, kind);
    assert!(hit.offset.is_some(), "{hit}");
    let summary = report.files.iter().find(|f| f.file == file).unwrap();
    assert!(summary.damaged);
    // The engine agrees that the store is damaged.
    match Db::open(dir.path()) {
        Err(e) => assert!(e.is_corruption(), "{e}"),
        Ok(db) => {
            let scan: Result<Vec<_>, _> = db.iter().collect();
            assert!(scan.is_err(), "store opened and read without error");
        }
    }
}

#[test]
fn a_flipped_bit_in_a_wal_segment_is_found() {
    finds_flip(
        |dir| {
            let wal = files(dir, ".wal").pop().unwrap();
            // Inside the first record's batch (header 32, chunk header 7, synced_to 8).
            (wal, 32 + 7 + 8 + 14)
        },
        FileKind::Wal,
    );
}

#[test]
fn a_flipped_bit_in_the_manifest_is_found() {
    finds_flip(
        |dir| {
            let m = files(dir, "")
                .into_iter()
                .find(|p| {
                    p.file_name()
                        .unwrap()
                        .to_string_lossy()
                        .starts_with("MANIFEST-")
                })
                .unwrap();
            // Inside the first edit (the whole state), followed by later edits.
            (m, 32 + 7 + 3)
        },
        FileKind::Manifest,
    );
}

#[test]
fn a_flipped_bit_in_a_table_is_found() {
    finds_flip(
        |dir| {
            let t = files(dir, ".sst").pop().unwrap();
            (t, 100)
        },
        FileKind::Table,
    );
}

#[test]
fn a_flipped_bit_anywhere_in_a_table_is_found() {
    // Every region of a table: data, filter, properties, index and footer.
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let table = files(dir.path(), ".sst").pop().unwrap();
    let len = std::fs::metadata(&table).unwrap().len();
    let clean = std::fs::read(&table).unwrap();
    let step = (len / 97).max(1);
    let mut offset = 0;
    while offset < len {
        flip(&table, offset);
        let report = verify_dir(dir.path()).unwrap();
        assert!(
            report.damage.iter().any(|d| d.file == table),
            "flip at {offset} of {len} not found"
        );
        std::fs::write(&table, &clean).unwrap();
        offset += step;
    }
    // The footer's last byte too.
    flip(&table, len - 1);
    assert!(!verify_dir(dir.path()).unwrap().is_healthy());
}

#[test]
fn a_missing_table_and_a_locked_store_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    build(dir.path());
    let db = Db::open(dir.path()).unwrap();
    assert!(matches!(
        verify_dir(dir.path()),
        Err(strata::Error::Locked(_))
    ));
    db.close().unwrap();
    let table = files(dir.path(), ".sst").pop().unwrap();
    std::fs::remove_file(&table).unwrap();
    let report = verify_dir(dir.path()).unwrap();
    assert!(
        report
            .damage
            .iter()
            .any(|d| d.file == table && d.reason.contains("missing")),
        "{:#?}",
        report.damage
    );
}
