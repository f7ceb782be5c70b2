//! A tour of strata, shown verbatim in the README: `cargo run --example basic [DATA_DIR]`.

use strata::{Db, Error, WriteBatch};

fn main() -> strata::Result<()> {
    let dir = std::env::args().nth(1).unwrap_or("data/basic".into());
    let db = Db::builder(&dir).history_versions(10).open()?;

    // Every write returns its version: a store-wide, strictly increasing number.
    let v1 = db.put("user:1", "Alice")?;
    db.put("user:2", "Bob")?;
    assert_eq!(db.get("user:1")?.as_deref(), Some(&b"Alice"[..]));

    // Ranges run both ways, over any range of keys: "a".."b", "a"..="b", "a".., ..="b", ..
    for item in db.prefix("user:").rev() {
        let (key, value) = item?;
        println!("{key:?} = {value:?}");
    }
    println!("{} keys in the store", db.range(..).count());
    // `next_ref` lends each entry until the next step: no copy, no reference count.
    let mut scan = db.range("user:".."user;");
    while let Some(entry) = scan.next_ref() {
        let (key, value) = entry?;
        println!("{} = {} bytes", String::from_utf8_lossy(key), value.len());
    }

    // A batch is applied entirely or not at all, also across crashes.
    let mut batch = WriteBatch::new();
    batch.put("user:3", "Carol").delete("user:2");
    let last = db.write(batch)?; // the version of its last write (None for an empty batch)
    println!("batch written, last version {last:?}");

    // A snapshot reads a fixed point in time; `get_at` reads as of a version.
    let snap = db.snapshot();
    let v2 = db.put("user:1", "Alicia")?;
    assert_eq!(snap.get("user:1")?.as_deref(), Some(&b"Alice"[..]));
    assert_eq!(db.get_at("user:1", v1)?.as_deref(), Some(&b"Alice"[..]));

    // The retained history of a key, newest first (a delete has no value).
    for version in db.versions("user:1") {
        let version = version?;
        println!("user:1 at {}: {:?}", version.seqno, version.value);
    }

    // Compare-and-set writes only if the key is still at the version read; a conflict says
    // which version it is at now, and nothing is written.
    match db.compare_and_set("user:1", Some(v1), "stale") {
        Ok(v) => println!("unexpected: written as version {v}"),
        Err(Error::Conflict(c)) => println!("conflict: user:1 is at version {:?}", c.current),
        Err(e) => return Err(e),
    }
    let v3 = db.compare_and_set("user:1", Some(v2), "Al")?;
    db.compare_and_delete("user:1", Some(v3))?;

    db.close()
}
