//! Smoke test: the write, flush, iterate and reopen paths end to end.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

use strata::{Db, WriteBatch};

#[test]
fn put_get_flush_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = Db::builder(dir.path())
            .memtable_bytes(64 << 10)
            .open()
            .unwrap();
        for i in 0..5000u32 {
            db.put(format!("key{i:06}"), format!("value{i}")).unwrap();
        }
        db.delete("key000010").unwrap();
        let mut b = WriteBatch::new();
        b.put("a", "1").put("b", "2");
        db.write(b).unwrap();
        assert_eq!(
            db.get("key000123").unwrap().as_deref(),
            Some(&b"value123"[..])
        );
        assert!(db.get("key000010").unwrap().is_none());
        db.flush().unwrap();
        let s = db.stats();
        println!("{s:#?}");
        assert!(s.levels[0].tables > 0);
        assert_eq!(db.range(..).count(), 5001);
        assert_eq!(db.range(..).rev().count(), 5001);
        db.close().unwrap();
    }
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(
        db.get("key004999").unwrap().as_deref(),
        Some(&b"value4999"[..])
    );
    assert!(db.get("key000010").unwrap().is_none());
    assert_eq!(db.iter().count(), 5001);
    let keys: Vec<_> = db.prefix("key00000").map(|r| r.unwrap().0).collect();
    assert_eq!(keys.len(), 10);
}
