//! Opening a store whose files are damaged or hostile: every outcome is an error or a store
//! that reads cleanly, never a panic.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::path::Path;

use strata::{Db, Error};

/// A store with tables on two flushes, a manifest with several edits and a live WAL.
fn build(dir: &Path) {
    let db = Db::builder(dir)
        .block_bytes(256)
        .history_versions(2)
        .open()
        .unwrap();
    for round in 0..2 {
        for i in 0..60 {
            db.put(common::k(i), format!("v{round}-{i}")).unwrap();
        }
        db.flush().unwrap();
    }
    for i in 0..20 {
        db.delete(common::k(i * 3)).unwrap();
    }
    db.close().unwrap();
}

/// Reads everything an open store holds; damage may surface as an error, never a panic.
fn read_all(db: &Db) {
    for item in db.iter() {
        if item.is_err() {
            break;
        }
    }
    for item in db.iter().rev() {
        if item.is_err() {
            break;
        }
    }
    for i in 0..60 {
        let _ = db.get(common::k(i));
        let _ = db.versions(common::k(i)).count();
    }
}

#[test]
fn flipped_bytes_in_any_file_never_panic() {
    let base = tempfile::tempdir().unwrap();
    let orig = base.path().join("orig");
    build(&orig);
    let mut names: Vec<String> = std::fs::read_dir(&orig)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != "LOCK")
        .collect();
    names.sort();
    let mut runs = 0;
    for name in &names {
        let len = std::fs::metadata(orig.join(name)).unwrap().len() as usize;
        // Positions spread over the file, including its first and last bytes.
        let step = (len / 12).max(1);
        let positions = (0..len).step_by(step).chain(len.checked_sub(1));
        for (i, at) in positions.enumerate() {
            let dir = base.path().join(format!("{name}-{i}"));
            common::copy_dir(&orig, &dir);
            let mut bytes = std::fs::read(dir.join(name)).unwrap();
            bytes[at] ^= 0x20;
            std::fs::write(dir.join(name), &bytes).unwrap();
            match Db::open(&dir) {
                Ok(db) => read_all(&db),
                Err(Error::Corruption { .. }) => {}
                Err(e) => panic!("{name} flipped at {at}: unexpected error {e}"),
            }
            std::fs::remove_dir_all(&dir).unwrap();
            runs += 1;
        }
    }
    assert!(runs > 40, "only {runs} damaged copies tried");
}

#[test]
fn a_file_number_beyond_the_counter_range_is_corruption() {
    let dir = tempfile::tempdir().unwrap();
    Db::open(dir.path()).unwrap().close().unwrap();
    // Recovery continues the file-number counter past every number it finds; this one
    // would overflow it.
    std::fs::write(dir.path().join(format!("{}.wal", u64::MAX)), b"").unwrap();
    let r = Db::open(dir.path());
    assert!(matches!(r, Err(Error::Corruption { .. })), "{r:?}");
}

#[test]
fn a_table_of_the_wrong_length_is_refused_at_open() {
    // A table's length is checked against its manifest entry and its footer before any read
    // goes through the map: a table cut short (or grown) is corruption at open, never a read
    // past the end of the mapping.
    let base = tempfile::tempdir().unwrap();
    let orig = base.path().join("orig");
    build(&orig);
    let table = std::fs::read_dir(&orig)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .unwrap();
    let bytes = std::fs::read(&table).unwrap();
    let name = table.file_name().unwrap();
    for (i, damaged) in [
        bytes[..bytes.len() - 1].to_vec(),
        bytes[..bytes.len() / 2].to_vec(),
        [&bytes[..], b"\0\0\0\0"].concat(),
    ]
    .into_iter()
    .enumerate()
    {
        let dir = base.path().join(format!("len{i}"));
        common::copy_dir(&orig, &dir);
        std::fs::write(dir.join(name), damaged).unwrap();
        let r = Db::open(&dir);
        assert!(
            matches!(r, Err(Error::Corruption { .. })),
            "case {i}: {r:?}"
        );
    }
}
