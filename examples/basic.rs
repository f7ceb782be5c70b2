//! A tour of strata: open, put, get, range (both directions), batch, snapshot, versions, CAS.
//!
//! Run with `cargo run --example basic [DATA_DIR]` (default `data/basic`).

use strata::{Db, WriteBatch};

fn show(label: &str, v: Option<strata::Bytes>) {
    println!(
        "{label:<28} {:?}",
        v.map(|b| String::from_utf8_lossy(&b).into_owned())
    );
}

fn main() -> strata::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/basic".into());
    let db = Db::builder(&dir).history_versions(8).open()?;
    println!("opened {dir} at seqno {}", db.last_seqno());

    let v1 = db.put("fruit:apple", "red")?;
    db.put("fruit:banana", "yellow")?;
    db.put("fruit:cherry", "dark red")?;
    db.put("veg:carrot", "orange")?;
    show("get fruit:apple", db.get("fruit:apple")?);

    println!("prefix fruit:, forwards:");
    for item in db.prefix("fruit:") {
        let (k, v) = item?;
        println!(
            "  {} = {}",
            String::from_utf8_lossy(&k),
            String::from_utf8_lossy(&v)
        );
    }
    println!("range [fruit:b, veg:~), backwards:");
    for item in db.range("fruit:b".."veg:~").rev() {
        let (k, _) = item?;
        println!("  {}", String::from_utf8_lossy(&k));
    }

    let mut batch = WriteBatch::new();
    batch.put("fruit:date", "brown").delete("veg:carrot");
    let last = db.write(batch)?;
    println!("batch committed at seqno {last}");

    let snap = db.snapshot();
    let v2 = db.put("fruit:apple", "green")?;
    show("snapshot get fruit:apple", snap.get("fruit:apple")?);
    show("latest get fruit:apple", db.get("fruit:apple")?);
    show(
        &format!("get_at({v1}) fruit:apple"),
        db.get_at("fruit:apple", v1)?,
    );

    println!("history of fruit:apple (newest first):");
    for v in db.versions("fruit:apple") {
        let v = v?;
        println!(
            "  seqno {:>4}: {:?}",
            v.seqno,
            v.value.map(|b| String::from_utf8_lossy(&b).into_owned())
        );
    }

    match db.compare_and_set("fruit:apple", Some(v1), Some("stale write"))? {
        Ok(s) => println!("unexpected CAS success at {s}"),
        Err(c) => println!(
            "CAS with stale version {v1} refused: current is {:?}",
            c.current
        ),
    }
    let v3 = db.compare_and_set("fruit:apple", Some(v2), Some("golden"))?;
    println!("CAS with current version {v2}: {v3:?}");

    let stats = db.stats();
    println!(
        "stats: seqno {}, memtable {} B, {} WAL segment(s), {} table(s)",
        stats.last_seqno,
        stats.memtable_bytes,
        stats.wal_segments,
        stats.levels.iter().map(|l| l.tables).sum::<usize>()
    );
    db.close()
}
