//! Every public call of `Db`, `WriteBatch` and `Snapshot`, including its error cases.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a failing test should panic

mod common;

use strata::{Config, Db, Error, MAX_KEY_LEN, MAX_VALUE_LEN, SeqNo, SyncMode, WriteBatch};

#[test]
fn put_get_delete_and_versions_of_each_write() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    assert_eq!(db.path(), dir.path());
    assert_eq!(db.last_seqno(), SeqNo::ZERO);
    assert_eq!(db.get("missing").unwrap(), None);
    assert!(!db.contains_key("missing").unwrap());

    let v1 = db.put("a", "1").unwrap();
    let v2 = db.put("b", "").unwrap(); // empty value is a value
    let v3 = db.put("", "empty key").unwrap(); // empty key is a key
    assert!(v1 < v2 && v2 < v3);
    assert_eq!(db.last_seqno(), v3);
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b""[..]));
    assert!(db.contains_key("b").unwrap());
    assert_eq!(db.get("").unwrap().as_deref(), Some(&b"empty key"[..]));

    let vv = db.get_versioned("a").unwrap().unwrap();
    assert_eq!((vv.version, &vv.value[..]), (v1, &b"1"[..]));

    let d = db.delete("a").unwrap();
    assert!(d > v3);
    assert_eq!(db.get("a").unwrap(), None);
    assert_eq!(db.get_versioned("a").unwrap(), None);
    // Deleting an absent key still writes a versioned tombstone.
    let d2 = db.delete("never").unwrap();
    assert!(d2 > d);
}

#[test]
fn write_batches_are_applied_in_order_with_consecutive_versions() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path()).history_versions(10).open().unwrap();
    let mut b = WriteBatch::new();
    b.put("x", "1").put("y", "2").delete("x").put("z", "3");
    assert_eq!(b.len(), 4);
    assert!(!b.is_empty());
    assert!(b.encoded_len() > 12);
    let last = db.write(b).unwrap().unwrap();
    assert_eq!(last, SeqNo::new(4));
    assert_eq!(db.get("x").unwrap(), None);
    let vs: Vec<_> = db.versions("x").map(|v| v.unwrap()).collect();
    assert_eq!(vs.len(), 2);
    assert_eq!((vs[0].seqno, vs[0].is_tombstone()), (SeqNo::new(3), true));
    assert_eq!(vs[1].seqno, SeqNo::new(1));
    assert_eq!(db.get_versioned("z").unwrap().unwrap().version, last);

    // Empty batches write nothing and have no version.
    assert_eq!(db.write(WriteBatch::new()).unwrap(), None);
    let mut cleared = WriteBatch::new();
    cleared.put("q", "q").clear();
    assert!(cleared.is_empty());
    assert_eq!(db.write(cleared).unwrap(), None);
    assert_eq!(db.get("q").unwrap(), None);
    assert_eq!(db.last_seqno(), last);
}

#[test]
fn batch_preconditions_apply_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let va = db.put("a", "1").unwrap();
    let mut b = WriteBatch::new();
    b.expect_version("a", Some(va))
        .expect_version("b", None)
        .put("a", "2")
        .put("b", "2");
    let s = db.write(b).unwrap().unwrap();
    assert_eq!(db.get("b").unwrap().as_deref(), Some(&b"2"[..]));

    let mut stale = WriteBatch::new();
    stale
        .expect_version("a", Some(va))
        .put("a", "3")
        .put("c", "3");
    match db.write(stale) {
        Err(Error::Conflict(c)) => {
            assert_eq!(&c.key[..], b"a");
            assert_eq!(c.expected, Some(va));
            assert_eq!(c.current, Some(SeqNo::new(s.get() - 1)));
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    assert_eq!(db.get("a").unwrap().as_deref(), Some(&b"2"[..]));
    assert_eq!(
        db.get("c").unwrap(),
        None,
        "nothing of a failed batch is applied"
    );
    assert_eq!(db.stats().conflicts, 1);
}

#[test]
fn compare_and_set_creates_updates_deletes_and_reports_conflicts() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let conflict = |r: strata::Result<SeqNo>| match r {
        Err(Error::Conflict(c)) => c,
        other => panic!("expected a conflict, got {other:?}"),
    };
    let v1 = db.compare_and_set("k", None, "a").unwrap();
    let c = conflict(db.compare_and_set("k", None, "b"));
    assert_eq!((c.expected, c.current), (None, Some(v1)));
    assert!(c.to_string().contains("conflict"));
    let v2 = db.compare_and_set("k", Some(v1), "b").unwrap();
    assert_eq!(db.get("k").unwrap().as_deref(), Some(&b"b"[..]));
    // Conditional delete.
    let c = conflict(db.compare_and_delete("k", Some(v1)));
    assert_eq!(c.current, Some(v2));
    db.compare_and_delete("k", Some(v2)).unwrap();
    assert_eq!(db.get("k").unwrap(), None);
    // A deleted key counts as absent.
    db.compare_and_set("k", None, "c").unwrap();
}

#[test]
fn get_at_reads_as_of_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .history_versions(100)
        .open()
        .unwrap();
    let v1 = db.put("k", "one").unwrap();
    let other = db.put("other", "x").unwrap();
    let v2 = db.put("k", "two").unwrap();
    let v3 = db.delete("k").unwrap();
    assert_eq!(db.get_at("k", SeqNo::ZERO).unwrap(), None);
    assert_eq!(db.get_at("k", v1).unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(db.get_at("k", other).unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(db.get_at("k", v2).unwrap().as_deref(), Some(&b"two"[..]));
    assert_eq!(db.get_at("k", v3).unwrap(), None);
    assert_eq!(db.get_at("k", SeqNo::MAX).unwrap(), None);
    // History survives a flush to a table.
    db.flush().unwrap();
    assert_eq!(db.get_at("k", v2).unwrap().as_deref(), Some(&b"two"[..]));
    let seqnos: Vec<_> = db.versions("k").map(|v| v.unwrap().seqno).collect();
    assert_eq!(seqnos, [v3, v2, v1]);
}

#[test]
fn snapshots_expose_the_same_read_api() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .history_versions(100)
        .open()
        .unwrap();
    db.put("a", "1").unwrap();
    db.put("b", "1").unwrap();
    let snap = db.snapshot();
    let at = snap.seqno();
    assert_eq!(at, db.last_seqno());
    db.put("a", "2").unwrap();
    db.put("c", "2").unwrap();
    db.delete("b").unwrap();
    assert_eq!(snap.get("a").unwrap().as_deref(), Some(&b"1"[..]));
    assert_eq!(
        snap.get_versioned("b").unwrap().unwrap().value.as_ref(),
        b"1"
    );
    assert_eq!(snap.get("c").unwrap(), None);
    let all = common::collect(snap.iter());
    assert_eq!(all, [("a".into(), "1".into()), ("b".into(), "1".into())]);
    assert_eq!(common::collect(snap.range("b"..)).len(), 1);
    assert_eq!(common::collect(snap.prefix("a")).len(), 1);
    assert_eq!(snap.versions("a").count(), 1);
    assert_eq!(db.versions("a").count(), 2);
    assert_eq!(db.stats().live_snapshots, 1);
    let clone = snap.clone();
    drop(snap);
    assert_eq!(db.stats().live_snapshots, 1);
    drop(clone);
    assert_eq!(db.stats().live_snapshots, 0);
}

#[test]
fn size_limits_are_enforced_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let big_key = vec![b'k'; MAX_KEY_LEN + 1];
    assert!(matches!(
        db.put(&big_key, "v"),
        Err(Error::KeyTooLarge { .. })
    ));
    let err = db.put("k", vec![0u8; MAX_VALUE_LEN + 1]).unwrap_err();
    assert!(matches!(err, Error::ValueTooLarge { .. }));
    assert!(err.to_string().contains("exceeds"));
    assert!(matches!(
        db.delete(&big_key),
        Err(Error::KeyTooLarge { .. })
    ));
    let mut b = WriteBatch::new();
    b.put("ok", "v").put(&big_key, "v");
    assert!(matches!(db.write(b), Err(Error::KeyTooLarge { .. })));
    assert_eq!(
        db.get("ok").unwrap(),
        None,
        "an invalid batch writes nothing"
    );
    // The largest key is accepted.
    db.put(vec![b'k'; MAX_KEY_LEN], "v").unwrap();
}

#[test]
fn an_io_error_at_open_names_the_path_it_concerns() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-directory");
    std::fs::write(&file, b"x").unwrap();
    let err = Db::open(&file).unwrap_err();
    let Error::Io { path, source } = &err else {
        panic!("expected an I/O error, got {err:?}");
    };
    assert_eq!(path.as_deref(), Some(file.as_path()));
    assert_eq!(source.kind(), std::io::ErrorKind::NotADirectory, "{source}");
    assert!(err.to_string().contains("not-a-directory"), "{err}");
}

#[test]
fn second_open_of_a_directory_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    match Db::open(dir.path()) {
        Err(Error::Locked(p)) => assert_eq!(p, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    db.close().unwrap();
    let again = Db::open(dir.path()).unwrap();
    drop(again);
    Db::open(dir.path()).unwrap();
}

#[test]
fn close_stops_writes_on_every_handle_but_reads_of_held_views_continue() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    db.put("k", "v").unwrap();
    let other = db.clone();
    let snap = db.snapshot();
    db.close().unwrap();
    assert!(matches!(other.put("k", "w"), Err(Error::Closed)));
    assert!(matches!(other.flush(), Err(Error::Closed)));
    assert_eq!(snap.get("k").unwrap().as_deref(), Some(&b"v"[..]));
    // The lock is released at close even though handles remain.
    let reopened = Db::open(dir.path()).unwrap();
    assert_eq!(reopened.get("k").unwrap().as_deref(), Some(&b"v"[..]));
}

#[test]
fn flush_sync_stats_and_wal_segments() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .sync_mode(SyncMode::Buffered)
        .wal_segment_bytes(8 << 10)
        .open()
        .unwrap();
    for i in 0..500 {
        db.put(common::k(i), [b'v'; 100]).unwrap();
    }
    db.sync().unwrap();
    let segs = db.wal_segments();
    assert!(segs.len() > 3, "segments roll at 8 KiB: {segs:?}");
    assert_eq!(segs.iter().filter(|s| s.active).count(), 1);
    assert!(segs.last().unwrap().active);
    assert!(segs.windows(2).all(|w| w[0].number < w[1].number));
    for s in &segs {
        assert!(s.path.exists());
        if !s.active {
            assert_eq!(std::fs::metadata(&s.path).unwrap().len(), s.size);
        }
    }
    let st = db.stats();
    assert_eq!(st.puts, 500);
    assert_eq!(st.wal_segments, segs.len());
    assert!(st.memtable_bytes > 50_000);
    assert!(st.user_bytes_written >= 500 * 100);

    db.flush().unwrap();
    let st = db.stats();
    assert_eq!(st.flushes, 1);
    assert_eq!(st.levels[0].tables, 1);
    assert!(st.levels[0].bytes > 50_000);
    assert_eq!(st.memtable_bytes, 0);
    // Segments holding flushed data are deleted.
    let after = db.wal_segments();
    assert_eq!(after.len(), 1);
    for s in &segs {
        assert!(!s.path.exists(), "{} should be gone", s.path.display());
    }
    assert_eq!(st.levels[0].index_summary_bytes, 0, "no table searched yet");
    assert_eq!(
        db.get(common::k(7)).unwrap().as_deref(),
        Some(&[b'v'; 100][..])
    );
    // The first search of the table built its index summary: 24 bytes per data block.
    let st = db.stats();
    let blocks = st.levels[0].data_blocks;
    assert!(blocks > 10);
    let summary = st.levels[0].index_summary_bytes;
    assert!(
        summary >= 24 * blocks && summary < 24 * blocks + 64,
        "{summary} bytes for {blocks} blocks"
    );
}

#[test]
fn invalid_configurations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Config::default();
    c.block_bytes = 10;
    assert!(matches!(
        Db::open_with(dir.path(), c),
        Err(Error::InvalidConfig(_))
    ));
    let r = Db::builder(dir.path()).history_versions(0).open();
    assert!(matches!(r, Err(Error::InvalidConfig(_))));
    let r = Db::builder(dir.path()).memtable_bytes(1).open();
    assert!(matches!(r, Err(Error::InvalidConfig(_))));
}

/// Exit code of the child process when its open failed with `Error::Locked`.
const LOCKED_EXIT: i32 = 42;

#[test]
fn second_process_gets_locked() {
    if let Ok(dir) = std::env::var("STRATA_LOCK_PROBE_DIR") {
        // Child side: try to open the directory the parent holds.
        let code = match Db::open(&dir) {
            Err(Error::Locked(_)) => LOCKED_EXIT,
            Ok(_) => 0,
            Err(_) => 1,
        };
        std::process::exit(code);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(dir.path()).unwrap();
    let probe = |dir: &std::path::Path| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "second_process_gets_locked", "--test-threads=1"])
            .env("STRATA_LOCK_PROBE_DIR", dir)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(
        probe(dir.path()),
        Some(LOCKED_EXIT),
        "a second process opened a held store"
    );
    db.close().unwrap();
    assert_eq!(probe(dir.path()), Some(0), "the lock outlived close");
}

#[test]
fn a_lending_scan_sees_what_the_owning_scan_sees_across_memtable_tables_and_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::builder(dir.path())
        .history_versions(4)
        .compression(strata::Compression::Lz4)
        .open()
        .unwrap();
    // Three versions of every key, one per flushed table, the newest of some keys still in
    // the memtable and some keys deleted: each key's older versions must be stepped over.
    for round in 0..3 {
        for i in 0..300u32 {
            db.put(format!("k{i:04}"), format!("v{round}-{i}")).unwrap();
        }
        db.flush().unwrap();
    }
    let snap = db.snapshot();
    for i in (0..300u32).step_by(3) {
        db.put(format!("k{i:04}"), format!("new-{i}")).unwrap();
    }
    for i in (0..300u32).step_by(7) {
        db.delete(format!("k{i:04}")).unwrap();
    }

    let lent = |mut range: strata::Range| {
        let mut out = Vec::new();
        while let Some(entry) = range.next_ref() {
            let (k, v) = entry.unwrap();
            out.push((k.to_vec(), v.to_vec()));
        }
        out
    };
    let owned = |range: strata::Range| {
        range
            .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap())
            .collect::<Vec<_>>()
    };

    let now = lent(db.range("k0010".."k0200"));
    assert_eq!(now, owned(db.range("k0010".."k0200")));
    let expected: Vec<_> = (10..200u32)
        .filter(|i| i % 7 != 0)
        .map(|i| {
            let v = if i % 3 == 0 {
                format!("new-{i}")
            } else {
                format!("v2-{i}")
            };
            (format!("k{i:04}").into_bytes(), v.into_bytes())
        })
        .collect();
    assert_eq!(now, expected);

    let then = lent(snap.range(..));
    assert_eq!(then.len(), 300);
    assert!(then.iter().all(|(_, v)| v.starts_with(b"v2-")));
    assert_eq!(then, owned(snap.range(..)));
}
