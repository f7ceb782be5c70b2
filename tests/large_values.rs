//! Values of a mebibyte and more: through the memtable, a flush, iteration and a reopen.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use strata::{Db, SyncMode};

fn value(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 131 + j * 7 % 251) as u8).collect()
}

#[test]
fn one_mebibyte_values_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let mib = 1 << 20;
    {
        let db = Db::builder(dir.path())
            .sync_mode(SyncMode::Buffered)
            .memtable_bytes(3 << 20)
            .open()
            .unwrap();
        for i in 0..12 {
            db.put(format!("big{i:02}"), value(i, mib + i)).unwrap();
            db.put(format!("small{i:02}"), "s").unwrap();
        }
        for i in 0..12 {
            assert_eq!(
                db.get(format!("big{i:02}")).unwrap().unwrap().len(),
                mib + i
            );
        }
        assert!(db.stats().flushes >= 2, "values should cross flushes");
        db.put("huge", value(99, 20 * mib)).unwrap();
        db.close().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    for i in 0..12 {
        let v = db.get(format!("big{i:02}")).unwrap().unwrap();
        assert_eq!(&v[..], &value(i, mib + i)[..], "value {i}");
    }
    assert_eq!(db.get("huge").unwrap().unwrap().len(), 20 * mib);
    let sizes: Vec<usize> = db.prefix("big").map(|r| r.unwrap().1.len()).collect();
    assert_eq!(sizes, (0..12).map(|i| mib + i).collect::<Vec<_>>());
    db.flush().unwrap();
    assert_eq!(
        &db.get("huge").unwrap().unwrap()[..],
        &value(99, 20 * mib)[..]
    );
}
