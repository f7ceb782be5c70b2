//! What a first program written against the README runs into: the common calls compile
//! without type hints, conflicts come back in one shape, an empty batch claims no version,
//! a closed store answers reads as it answers writes, and the README's tour is the example
//! program that `cargo run --example basic` runs.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use std::ops::Bound;

use strata::{CasConflict, Db, Error, SeqNo, WriteBatch};

fn conflict(r: strata::Result<SeqNo>) -> CasConflict {
    match r {
        Err(Error::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

#[test]
fn compare_and_delete_and_compare_and_set_need_no_type_hints() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let v1 = db.compare_and_set("k", None, "first").unwrap();
    let v2 = db.compare_and_set("k", Some(v1), b"second").unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"second"[..]));
    let c = conflict(db.compare_and_delete("k", Some(v1)));
    assert_eq!(c.current, Some(v2));
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"second"[..]));
    let v3 = db.compare_and_delete("k", Some(v2)).unwrap();
    assert!(v3 > v2);
    assert_eq!(db.get("k").unwrap(), None);
    // Absent again: `None` is the expected version of a missing key.
    db.compare_and_set("k", None, "again").unwrap();
}

#[test]
fn a_full_range_needs_no_type_annotation() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    for k in ["a", "b", "c"] {
        db.put(k, k).unwrap();
    }
    assert_eq!(db.range(..).count(), 3);
    assert_eq!(common::collect(db.range(..).rev())[0].0, "c");
    assert_eq!(db.range(.."b").count(), 1);
    assert_eq!(db.range(..="b").count(), 2);
    assert_eq!(db.range("b"..).count(), 2);
    assert_eq!(db.range(String::from("a")..String::from("c")).count(), 2);
    assert_eq!(db.range(b"b".to_vec()..=b"c".to_vec()).count(), 2);
    assert_eq!(
        db.range((Bound::Excluded("a"), Bound::Unbounded)).count(),
        2
    );
    assert_eq!(db.snapshot().range(..).count(), 3);
    db.compact_range(..).unwrap();
    assert_eq!(db.range(..).count(), 3);
}

#[test]
fn cas_and_batch_preconditions_report_a_conflict_the_same_way() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let v1 = db.put("k", "v").unwrap();
    let v2 = db.put("k", "w").unwrap();

    let from_cas = conflict(db.compare_and_set("k", Some(v1), "x"));
    let mut batch = WriteBatch::new();
    batch.expect_version("k", Some(v1)).put("k", "x");
    let from_batch = match db.write(batch) {
        Err(Error::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    };
    assert_eq!(from_cas, from_batch);
    assert_eq!(from_cas.expected, Some(v1));
    assert_eq!(from_cas.current, Some(v2));
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"w"[..]));
}

#[test]
fn an_empty_batch_reports_no_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let v = db.put("k", "v").unwrap();
    assert_eq!(db.write(WriteBatch::new()).unwrap(), None);
    let mut cleared = WriteBatch::new();
    cleared.put("q", "q").clear();
    assert_eq!(db.write(cleared).unwrap(), None);
    // A batch of preconditions only checks them, atomically, and writes nothing.
    let mut check = WriteBatch::new();
    check.expect_version("k", Some(v));
    assert_eq!(db.write(check).unwrap(), None);
    let mut stale = WriteBatch::new();
    stale.expect_version("k", None);
    assert!(matches!(db.write(stale), Err(Error::Conflict(_))));
    assert_eq!(db.last_seqno(), v);
    // A batch that writes reports its last write's version.
    let mut b = WriteBatch::new();
    b.put("a", "1").put("b", "2");
    assert_eq!(db.write(b).unwrap(), Some(SeqNo::new(v.get() + 2)));
}

#[test]
fn after_close_reads_through_any_handle_fail_like_writes_while_held_views_still_read() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let v = db.put("k", "v").unwrap();
    let other = db.clone();
    let snap = db.snapshot();
    let mut iter = db.iter();
    db.close().unwrap();

    let closed = |r: strata::Result<()>, what: &str| {
        assert!(matches!(r, Err(Error::Closed)), "{what}: {r:?}");
    };
    closed(other.put("k", "w").map(drop), "put");
    closed(other.get("k").map(drop), "get");
    closed(other.get_versioned("k").map(drop), "get_versioned");
    closed(other.get_at("k", v).map(drop), "get_at");
    closed(other.contains_key("k").map(drop), "contains_key");
    closed(other.range(..).next().unwrap().map(drop), "range");
    closed(other.iter().next_back().unwrap().map(drop), "iter");
    closed(other.prefix("k").next().unwrap().map(drop), "prefix");
    closed(other.versions("k").next().unwrap().map(drop), "versions");
    closed(
        other.snapshot().get("k").map(drop),
        "a snapshot taken after close",
    );
    assert!(
        other.range(..).nth(1).is_none(),
        "the error ends the iteration"
    );

    // Views taken before close keep reading what they pinned.
    assert_eq!(snap.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    assert_eq!(common::collect(snap.iter()).len(), 1);
    assert_eq!(iter.next().unwrap().unwrap().0, "k");
    // And the store reopens with everything.
    let reopened = Db::open(dir.path()).unwrap();
    assert_eq!(reopened.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn the_readme_tour_is_examples_basic_verbatim() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join("examples/basic.rs")).unwrap();
    let start = "<!-- examples/basic.rs, included verbatim -->\n```rust\n";
    let from = readme
        .find(start)
        .expect("README includes examples/basic.rs after its marker")
        + start.len();
    let len = readme[from..].find("```\n").expect("the code block ends");
    assert_eq!(
        &readme[from..from + len],
        example,
        "README's tour and examples/basic.rs differ"
    );
}
