//! Range scans: every kind of bound, both directions, prefixes, and both ends consumed at
//! once, checked against a `BTreeMap` with data spread over memtable and tables.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use strata::Db;

fn model_range(
    m: &BTreeMap<Vec<u8>, Vec<u8>>,
    lo: Bound<Vec<u8>>,
    hi: Bound<Vec<u8>>,
) -> Vec<(Vec<u8>, Vec<u8>)> {
    if let (Included(a) | Excluded(a), Included(b) | Excluded(b)) = (&lo, &hi)
        && a > b
    {
        return Vec::new();
    }
    if let (Excluded(a), Excluded(b)) = (&lo, &hi)
        && a == b
    {
        return Vec::new();
    }
    m.range((lo, hi))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

fn db_range(db: &Db, lo: Bound<Vec<u8>>, hi: Bound<Vec<u8>>, rev: bool) -> Vec<(Vec<u8>, Vec<u8>)> {
    let it = db.range((lo, hi));
    let items: Vec<_> = if rev {
        it.rev().collect()
    } else {
        it.collect()
    };
    let mut out: Vec<_> = items
        .into_iter()
        .map(|r| {
            let (k, v) = r.unwrap();
            (k.to_vec(), v.to_vec())
        })
        .collect();
    if rev {
        out.reverse();
    }
    out
}

/// A store whose keys live partly in tables (two flushes) and partly in the memtable, with
/// overwrites and deletes in every layer.
fn layered() -> (tempfile::TempDir, Db, BTreeMap<Vec<u8>, Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let mut model = BTreeMap::new();
    let mut put = |db: &Db, k: Vec<u8>, v: Vec<u8>| {
        db.put(&k, &v).unwrap();
        model.insert(k, v);
    };
    for i in (0..200).step_by(2) {
        put(&db, format!("k{i:03}").into_bytes(), b"t1".to_vec());
    }
    db.flush().unwrap();
    for i in (1..200).step_by(3) {
        put(&db, format!("k{i:03}").into_bytes(), b"t2".to_vec());
    }
    db.flush().unwrap();
    for i in (0..200).step_by(5) {
        put(&db, format!("k{i:03}").into_bytes(), b"mem".to_vec());
    }
    put(&db, b"k\xff".to_vec(), b"ff".to_vec());
    put(&db, b"k\xff\xff".to_vec(), b"ffff".to_vec());
    put(&db, b"j".to_vec(), b"before".to_vec());
    for i in (0..200).step_by(7) {
        let k = format!("k{i:03}").into_bytes();
        db.delete(&k).unwrap();
        model.remove(&k);
    }
    (dir, db, model)
}

#[test]
fn every_bound_kind_matches_the_model_in_both_directions() {
    let (_dir, db, model) = layered();
    let points: Vec<Vec<u8>> = [
        "", "a", "j", "k", "k000", "k007", "k050", "k051", "k100", "k199", "k2", "z",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .chain([
        b"k\xff".to_vec(),
        b"k\xff\xff".to_vec(),
        b"k\xff\xff\xff".to_vec(),
    ])
    .collect();
    let mut bounds = vec![Unbounded];
    for p in &points {
        bounds.push(Included(p.clone()));
        bounds.push(Excluded(p.clone()));
    }
    let mut checked = 0;
    for lo in &bounds {
        for hi in &bounds {
            let want = model_range(&model, lo.clone(), hi.clone());
            for rev in [false, true] {
                let got = db_range(&db, lo.clone(), hi.clone(), rev);
                assert_eq!(got, want, "range ({lo:?}, {hi:?}) rev={rev}");
                checked += 1;
            }
        }
    }
    assert!(checked > 1000);
}

#[test]
fn prefixes_including_ff_bytes() {
    let (_dir, db, model) = layered();
    let prefixes: [&[u8]; 9] = [
        b"", b"k", b"k0", b"k05", b"k1", b"k19", b"k\xff", b"j", b"x",
    ];
    for p in prefixes {
        let want: Vec<_> = model
            .iter()
            .filter(|(k, _)| k.starts_with(p))
            .map(|(k, _)| k.clone())
            .collect();
        let got: Vec<_> = db.prefix(p).map(|r| r.unwrap().0.to_vec()).collect();
        assert_eq!(got, want, "prefix {p:?}");
        let mut back: Vec<_> = db.prefix(p).rev().map(|r| r.unwrap().0.to_vec()).collect();
        back.reverse();
        assert_eq!(back, want, "reverse prefix {p:?}");
    }
    let ff = db.prefix(b"k\xff").count();
    assert_eq!(ff, 2);
}

#[test]
fn both_ends_meet_without_overlap() {
    let (_dir, db, model) = layered();
    let keys: Vec<Vec<u8>> = model.keys().cloned().collect();
    for front_steps in [0usize, 1, 5, 30, keys.len() / 2, keys.len()] {
        let mut it = db.iter();
        let mut seen = Vec::new();
        for _ in 0..front_steps {
            match it.next() {
                Some(r) => seen.push(r.unwrap().0.to_vec()),
                None => break,
            }
        }
        let mut tail = Vec::new();
        while let Some(r) = it.next_back() {
            tail.push(r.unwrap().0.to_vec());
        }
        assert!(it.next().is_none());
        tail.reverse();
        seen.extend(tail);
        assert_eq!(seen, keys, "front steps {front_steps}");
    }
    // Alternating ends.
    let mut it = db.iter();
    let (mut front, mut back) = (Vec::new(), Vec::new());
    loop {
        match it.next() {
            Some(r) => front.push(r.unwrap().0.to_vec()),
            None => break,
        }
        match it.next_back() {
            Some(r) => back.push(r.unwrap().0.to_vec()),
            None => break,
        }
    }
    back.reverse();
    front.extend(back);
    assert_eq!(front, keys);
}

#[test]
fn iterators_read_a_snapshot_while_writes_continue() {
    let (_dir, db, model) = layered();
    let it = db.iter();
    let before = db.range("k000".."k100");
    for i in 0..300 {
        db.put(format!("k{i:03}"), "new").unwrap();
        db.delete(format!("j{i}")).unwrap();
    }
    db.flush().unwrap();
    let got: Vec<_> = it.map(|r| r.unwrap().0.to_vec()).collect();
    assert_eq!(got, model.keys().cloned().collect::<Vec<_>>());
    assert!(before.map(|r| r.unwrap().1).all(|v| &v[..] != b"new"));
    assert_eq!(db.range("k000".."k300").count(), 300);
}
