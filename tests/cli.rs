//! The `strata` binary against temporary stores: output and exit codes of the local
//! commands, dump then load, and verification of damage.
#![cfg(feature = "cli")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use strata::{Compression, Db, NUM_LEVELS, SyncMode};

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .expect("the strata binary runs")
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn stdout(o: &Output) -> String {
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn ok(args: &[&str]) -> String {
    let o = strata(args);
    assert_eq!(
        code(&o),
        0,
        "{args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    stdout(&o)
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn key_commands_print_values_and_versions_with_stable_exit_codes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let d = p(&dir);
    assert_eq!(ok(&["put", d, "user:1", "Alice"]), "1\n");
    assert_eq!(ok(&["put", d, "user:1", "Alicia"]), "2\n");
    assert_eq!(ok(&["put", d, "user:2", "Bob"]), "3\n");
    assert_eq!(ok(&["get", d, "user:1"]), "Alicia\n");
    assert_eq!(ok(&["get", d, "user:1", "--version", "1"]), "Alice\n");
    let absent = strata(&["get", d, "user:9"]);
    assert_eq!((code(&absent), stdout(&absent)), (1, String::new()));
    assert_eq!(ok(&["delete", d, "user:2"]), "4\n");
    assert_eq!(code(&strata(&["get", d, "user:2"])), 1);
    assert_eq!(ok(&["history", d, "user:2"]), "4\t(deleted)\n3\tBob\n");
    assert_eq!(ok(&["scan", d]), "user:1\tAlicia\n");
    let j: Value = serde_json::from_str(&ok(&["--json", "get", d, "user:1"])).unwrap();
    assert_eq!(
        j,
        serde_json::json!({"key": "user:1", "value": "Alicia", "version": 2})
    );
    // Binary keys and values through --hex; text output escapes them.
    assert_eq!(ok(&["--hex", "put", d, "00ff", "0a09"]), "5\n");
    assert_eq!(ok(&["--hex", "get", d, "00ff"]), "0a09\n");
    assert_eq!(
        ok(&["scan", d, "--limit", "1"]),
        "\\x00\\xff\t\\n\\t\n",
        "keys sort bytewise"
    );
    let j: Value =
        serde_json::from_str(ok(&["--json", "scan", d]).lines().next().unwrap()).unwrap();
    assert_eq!(j["key_b64"], "AP8=");
    assert_eq!(
        ok(&["scan", d, "--prefix", "user:", "--keys-only"]),
        "user:1\n"
    );
    assert_eq!(
        ok(&["scan", d, "--reverse", "--keys-only"]),
        "user:1\n\\x00\\xff\n"
    );

    // Usage errors.
    assert_eq!(code(&strata(&["get", d])), 2);
    assert_eq!(code(&strata(&["frobnicate"])), 2);
    assert_eq!(code(&strata(&["--hex", "get", d, "zz"])), 2);
    assert_eq!(code(&strata(&["--help"])), 0);
    // A directory without a store is not created by reads.
    let none = tmp.path().join("none");
    assert_eq!(code(&strata(&["get", p(&none), "k"])), 5);
    assert!(!none.exists());

    // While another process (here: this one) holds the store, commands refuse with 4.
    let db = Db::open(&dir).unwrap();
    let locked = strata(&["put", d, "k", "v"]);
    assert_eq!(code(&locked), 4);
    assert!(String::from_utf8_lossy(&locked.stderr).contains("another process"));
    assert_eq!(code(&strata(&["verify", d])), 4);
    drop(db);

    // stats, compact, checkpoint.
    let stats: Value = serde_json::from_str(&ok(&["--json", "stats", d])).unwrap();
    assert_eq!(stats["last_seqno"], 5);
    let c: Value = serde_json::from_str(&ok(&["--json", "compact", d])).unwrap();
    assert!(c["tables_out"].as_u64().unwrap() >= 1);
    let cp = tmp.path().join("cp");
    let j: Value = serde_json::from_str(&ok(&["--json", "checkpoint", d, p(&cp)])).unwrap();
    assert_eq!(j["seqno"], 5);
    assert_eq!(j["linked"], 1);
    assert_eq!(ok(&["get", p(&cp), "user:1"]), "Alicia\n");
    assert_eq!(
        code(&strata(&["checkpoint", d, p(&cp)])),
        5,
        "destination exists"
    );
}

#[test]
fn verify_and_inspect_report_every_file_and_flag_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Db::builder(&dir)
        .sync_mode(SyncMode::Always)
        .open()
        .unwrap();
    for i in 0..200 {
        db.put(format!("k{i:03}"), format!("value {i}")).unwrap();
    }
    db.flush().unwrap();
    db.put("late", "in the wal").unwrap();
    db.put("later", "also").unwrap();
    db.close().unwrap();
    let d = p(&dir);
    let out = ok(&["verify", d]);
    assert!(out.starts_with("healthy: "), "{out}");
    let j: Value = serde_json::from_str(&ok(&["--json", "verify", d])).unwrap();
    assert_eq!(j["healthy"], true);
    assert_eq!(j["tables"], 1);

    let find = |ext: &str| {
        std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|f| f.to_string_lossy().contains(ext))
            .max()
            .unwrap()
    };
    let table = find(".sst");
    let sst = ok(&["inspect", "sst", p(&table), "--entries"]);
    assert!(sst.contains("data       @0 "), "{sst}");
    assert!(sst.contains("k000 @1 put value 0"), "{sst}");
    assert!(sst.contains("properties: 200 entries"), "{sst}");
    let wal = ok(&["inspect", "wal", p(&find(".wal")), "--ops"]);
    assert!(wal.contains("put late = in the wal"), "{wal}");
    assert!(wal.contains("crc 0x"), "{wal}");
    let manifest = ok(&["inspect", "manifest", p(&find("MANIFEST-"))]);
    assert!(manifest.contains("add    L0"), "{manifest}");
    let j: Value = serde_json::from_str(&ok(&["--json", "inspect", "sst", p(&table)])).unwrap();
    assert_eq!(j["properties"]["entries"], 200);

    // A flipped bit in the table's first data block.
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[20] ^= 0x10;
    std::fs::write(&table, &bytes).unwrap();
    let bad = strata(&["verify", d]);
    assert_eq!(code(&bad), 3);
    let text = stdout(&bad);
    assert!(
        text.contains(&format!(
            "DAMAGE  {} at offset 0: data block checksum mismatch",
            table.display()
        )),
        "{text}"
    );
    assert_eq!(code(&strata(&["inspect", "sst", p(&table)])), 3);
}

#[test]
fn inspect_shows_each_blocks_compression() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut levels = [Compression::None; NUM_LEVELS];
    levels[0] = Compression::Lz4;
    let db = Db::builder(&dir)
        .compression_per_level(levels)
        .open()
        .unwrap();
    for i in 0..300 {
        db.put(format!("k{i:03}"), format!("value {i} {}", "ab".repeat(20)))
            .unwrap();
    }
    db.flush().unwrap();
    db.close().unwrap();
    let table = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.to_string_lossy().ends_with(".sst"))
        .unwrap();
    let j: Value = serde_json::from_str(&ok(&["--json", "inspect", "sst", p(&table)])).unwrap();
    assert_eq!(j["format_version"], 2);
    let blocks = j["blocks"].as_array().unwrap();
    let data: Vec<&Value> = blocks.iter().filter(|b| b["type"] == "data").collect();
    assert!(data.len() > 2);
    for b in &data[..data.len() - 1] {
        assert_eq!(b["compression"], "lz4", "{b}");
        assert!(b["raw_size"].as_u64().unwrap() > 2 * b["size"].as_u64().unwrap());
        assert_eq!(b["ok"], true);
    }
    for b in blocks.iter().filter(|b| b["type"] != "data") {
        assert_eq!(b["compression"], "none", "{b}");
    }
    assert_eq!(
        j["properties"]["compressed_blocks"].as_u64().unwrap() + 1,
        data.len() as u64 + u64::from(data.last().unwrap()["compression"] == "lz4")
    );
    let text = ok(&["inspect", "sst", p(&table), "--entries"]);
    assert!(text.contains(" lz4 ("), "{text}");
    assert!(text.contains("k299 @300 put value 299"), "{text}");
    assert!(ok(&["verify", p(&dir)]).starts_with("healthy: "));
    // A flipped bit in a compressed block is damage to both.
    let mut bytes = std::fs::read(&table).unwrap();
    bytes[30] ^= 0x01;
    std::fs::write(&table, &bytes).unwrap();
    assert_eq!(code(&strata(&["inspect", "sst", p(&table)])), 3);
    assert_eq!(code(&strata(&["verify", p(&dir)])), 3);
}

#[test]
fn dump_then_load_round_trips_binary_keys_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    let db = Db::builder(&src)
        .history_versions(10)
        .memtable_bytes(16 << 10)
        .open()
        .unwrap();
    let keys: Vec<Vec<u8>> = vec![
        b"plain".to_vec(),
        vec![0x00],
        vec![0xff, 0xfe, 0x00, 0x80],
        "ключ\n\t\"quoted\"".as_bytes().to_vec(),
        vec![b'k'; 300],
    ];
    for round in 0..5u8 {
        for (i, k) in keys.iter().enumerate() {
            if (round + i as u8) % 4 == 3 {
                db.delete(k).unwrap();
            } else {
                db.put(k, [round, 0xff, i as u8, b'\n']).unwrap();
            }
        }
        for j in 0..200u32 {
            db.put(format!("bulk{j:04}"), format!("r{round}-{j}"))
                .unwrap();
        }
        if round == 2 {
            db.flush().unwrap();
        }
    }
    let seq = db.last_seqno();
    db.close().unwrap();
    let dump = tmp.path().join("dump.jsonl");
    ok(&["dump", p(&src), "-o", p(&dump)]);
    let text = std::fs::read_to_string(&dump).unwrap();
    assert!(text.starts_with(&format!(
        "{{\"format\":\"strata-dump\",\"version\":1,\"seqno\":{seq}}}\n"
    )));
    assert!(
        text.contains("\"key_b64\":\"//4AgA==\""),
        "binary key as base64"
    );
    assert!(text.trim_end().ends_with("}"));
    let dst = tmp.path().join("dst");
    let loaded: Value =
        serde_json::from_str(&ok(&["--json", "load", p(&dst), "-i", p(&dump)])).unwrap();
    assert_eq!(loaded["seqno"], seq.get());

    // The loaded store holds the same versions, with the same numbers.
    let a = Db::builder(&src).history_versions(10).open().unwrap();
    let b = Db::builder(&dst).history_versions(10).open().unwrap();
    assert_eq!(b.last_seqno(), seq);
    let mut longest = 0;
    for k in keys.iter().map(|k| k.as_slice()).chain([&b"bulk0007"[..]]) {
        let va: Vec<_> = a.versions(k).map(|v| v.unwrap()).collect();
        let vb: Vec<_> = b.versions(k).map(|v| v.unwrap()).collect();
        assert!(!va.is_empty(), "{k:?}");
        assert_eq!(va, vb, "{k:?}");
        longest = longest.max(va.len());
    }
    assert!(longest >= 4, "the test should keep history");
    let all_a: Vec<_> = a.iter().map(|r| r.unwrap()).collect();
    let all_b: Vec<_> = b.iter().map(|r| r.unwrap()).collect();
    assert_eq!(all_a, all_b);
    drop((a, b));
    // A second dump of the loaded store is the same text.
    let again = ok(&["dump", p(&dst)]);
    assert_eq!(again, text);
    assert!(strata::verify::verify_dir(&dst).unwrap().is_healthy());

    // A truncated dump builds nothing.
    let cut = tmp.path().join("cut.jsonl");
    let half: String = text.lines().take(40).map(|l| format!("{l}\n")).collect();
    std::fs::write(&cut, half).unwrap();
    let dst2 = tmp.path().join("dst2");
    let o = strata(&["load", p(&dst2), "-i", p(&cut)]);
    assert_eq!(code(&o), 5);
    assert!(String::from_utf8_lossy(&o.stderr).contains("truncated"));
    assert!(!dst2.exists());
    // Loading into an existing directory is refused.
    assert_eq!(code(&strata(&["load", p(&dst), "-i", p(&dump)])), 5);
}

#[test]
fn reading_commands_leave_the_store_as_it_was() {
    // Each command opens the store and replays its WAL. A reading command must not turn
    // that replay into a table: the flush would apply the default retention and drop the
    // older versions `history` shows.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let d = p(&dir);
    assert_eq!(ok(&["put", d, "k", "one"]), "1\n");
    assert_eq!(ok(&["put", d, "k", "two"]), "2\n");
    let tables = || {
        std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".sst")
            })
            .count()
    };
    assert_eq!(tables(), 0);
    for _ in 0..5 {
        assert_eq!(ok(&["get", d, "k"]), "two\n");
        assert_eq!(ok(&["scan", d]), "k\ttwo\n");
    }
    // A checkpoint syncs its copy, time enough for anything the open started to finish.
    let copy = tmp.path().join("copy");
    ok(&["checkpoint", d, p(&copy)]);
    ok(&["stats", d]);
    assert_eq!(ok(&["history", d, "k"]), "2\ttwo\n1\tone\n");
    assert_eq!(tables(), 0, "a reading command wrote a table");
}
