//! Overwrites and deletes are seen correctly whichever layer holds each version: the mutable
//! memtable, a frozen memtable waiting for its flush, and several tables.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::GateFs;
use strata::Db;

fn check(db: &Db, model: &BTreeMap<String, Option<String>>, when: &str) {
    for (k, v) in model {
        let got = db
            .get(k)
            .unwrap()
            .map(|b| String::from_utf8(b.to_vec()).unwrap());
        assert_eq!(&got, v, "{when}: key {k}");
    }
    let live: Vec<_> = model
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k.clone(), v.clone())))
        .collect();
    assert_eq!(common::collect(db.iter()), live, "{when}: forward scan");
    let mut back = common::collect(db.iter().rev());
    back.reverse();
    assert_eq!(back, live, "{when}: reverse scan");
}

#[test]
fn versions_in_every_layer_resolve_to_the_newest() {
    let dir = tempfile::tempdir().unwrap();
    let gate = GateFs::new();
    let db = Db::builder(dir.path())
        .filesystem(Arc::clone(&gate) as Arc<dyn strata::FileSystem>)
                .memtable_bytes(16 << 10)
        .max_immutable_memtables(4)
        .l0_limits(1000, 1000, 1001) // keep every flushed table in level 0
        .open()
        .unwrap();
    let mut model: BTreeMap<String, Option<String>> = BTreeMap::new();
    let write =
        |model: &mut BTreeMap<String, Option<String>>, db: &Db, i: u64, tag: &str, delete: bool| {
            let key = common::k(i);
            if delete {
                db.delete(&key).unwrap();
                model.insert(key, None);
            } else {
                let v = format!("{tag}-{i}");
                db.put(&key, &v).unwrap();
                model.insert(key, Some(v));
            }
        };

    // Round 1 and 2 go to tables.
    for i in 0..300 {
        write(&mut model, &db, i, "t1", false);
    }
    db.flush().unwrap();
    for i in (0..300).step_by(3) {
        write(&mut model, &db, i, "t2", i % 2 == 0);
    }
    db.flush().unwrap();
    assert!(db.stats().levels[0].tables >= 2);
    check(&db, &model, "two tables");

    // Round 3 fills a memtable that stays frozen: table creation is held back.
    gate.close_gate();
    for i in (1..300).step_by(4) {
        write(&mut model, &db, i, "imm", i % 3 == 0);
    }
    let filler_start = 10_000;
    let mut i = filler_start;
    while db.stats().immutable_memtables == 0 {
        write(&mut model, &db, i, "fill", false);
        i += 1;
        assert!(i < filler_start + 100_000, "memtable never froze");
    }
    // Round 4 lands in the new mutable memtable, overwriting all layers.
    for i in (2..300).step_by(5) {
        write(&mut model, &db, i, "mem", i % 4 == 0);
    }
    let st = db.stats();
    assert!(
        st.immutable_memtables >= 1 && st.memtable_bytes > 0,
        "{st:?}"
    );
    check(&db, &model, "memtable + frozen memtable + tables");

    gate.open_gate();
    db.flush().unwrap();
    let st = db.stats();
    assert_eq!(st.immutable_memtables, 0);
    assert!(st.levels[0].tables >= 4);
    check(&db, &model, "all in tables");
    db.compact().unwrap();
    let st = db.stats();
    assert_eq!(st.levels[0].tables, 0);
    assert!(st.levels[1].tables >= 1);
    check(&db, &model, "after a full compaction");
    drop(db);
    let db = Db::open(dir.path()).unwrap();
    check(&db, &model, "after reopen");
}
