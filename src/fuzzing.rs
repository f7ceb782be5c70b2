//! Entry points for the fuzz targets (`fuzz/`) and for the test that replays their corpus.
//!
//! Each function feeds arbitrary bytes to one decoder of on-disk data through the same code
//! the engine runs when it reads a file, and checks what must hold even for garbage: no
//! panic, no allocation beyond what the input justifies, and where the bytes do decode, a
//! round trip through the matching encoder gives the same value back. Some targets also
//! read the input as a recipe (a list of entries or hashes), build a valid structure from it
//! with the engine's writers and check that the reader returns exactly what was written.
//!
//! Not part of the public API; it is public only so that the fuzz workspace can link it.
#![allow(missing_docs)]
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::batch::{self, BatchView, WriteBatch};
use crate::config::Config;
use crate::cursor::Cursor;
use crate::fs::WritableFile;
use crate::hash::hash64;
use crate::key::{self, KIND_SEEK, Kind};
use crate::limits::NUM_LEVELS;
use crate::manifest::{Edit, ManifestState};
use crate::recovery::{MAX_WAL_RECORD, Replay};
use crate::seqno::{MAX_SEQNO, SeqNo};
use crate::sstable::block::Block;
use crate::sstable::block_builder::BlockBuilder;
use crate::sstable::block_cache::BlockCache;
use crate::sstable::compression::{self, Compression};
use crate::sstable::filter::{self, Filter};
use crate::sstable::format::{BlockHandle, BlockType, FOOTER_LEN, Footer, StoredBlock};
use crate::sstable::table_builder::{TableBuilder, TableOptions};
use crate::sstable::table_reader::Table;
use crate::wal::segment::{self, RECORD_PREFIX_LEN};

pub use crate::wal::format::{MANIFEST_MAGIC, WAL_MAGIC};

/// Cursor steps a target takes at most, so that a crafted index that names one block many
/// times cannot make a single run take quadratic time.
const MAX_STEPS: usize = 4096;

/// A fuzz target: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// Entries in internal-key order: (internal key, value).
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Every target by name, in the order the fuzz workspace lists them.
pub const TARGETS: &[(&str, Target)] = &[
    ("wal_record", wal_record),
    ("wal_segment", wal_segment),
    ("sst_block", sst_block),
    ("sst_table", sst_table),
    ("compressed_block", compressed_block),
    ("filter", filter),
    ("manifest_edit", manifest_edit),
    ("manifest", manifest),
];

/// One WAL record's payload: the synced-offset prefix and a batch, decoded and replayed
/// into a memtable the way recovery does.
pub fn wal_record(data: &[u8]) {
    let Some((_, batch)) = data.split_at_checked(RECORD_PREFIX_LEN) else {
        return;
    };
    let Ok(view) = BatchView::new(batch, RECORD_PREFIX_LEN as u64) else {
        return;
    };
    let decoded = view.ops();
    let mut replay = Replay::new(Config::default(), 0);
    let applied = replay.apply(1, RECORD_PREFIX_LEN as u64, batch);
    let Ok(ops) = decoded else {
        assert!(
            applied.is_err(),
            "replay accepted a batch that does not decode"
        );
        return;
    };
    // Re-encoding the decoded operations yields a batch that decodes to the same operations
    // (varints need not be minimal on disk, so the bytes themselves may differ).
    let mut b = WriteBatch::new();
    for op in &ops {
        match op.kind {
            Kind::Put => b.put(op.key, op.value),
            Kind::Delete => b.delete(op.key),
        };
    }
    assert!(
        b.take_invalid().is_none(),
        "decoded ops break the batch limits"
    );
    let mut again = Vec::new();
    batch::put_header(&mut again, view.first_seq, b.count());
    again.extend_from_slice(b.ops());
    let view2 = BatchView::new(&again, 0).map(|v| (v.first_seq, v.count));
    assert_eq!(view2.ok(), Some((view.first_seq, view.count)));
    let ops2 = BatchView::new(&again, 0).and_then(|v| v.ops());
    assert_eq!(ops2.ok().as_deref(), Some(&ops[..]));
}

/// A whole WAL segment file, scanned and replayed as recovery does, in both the default
/// and the salvaging mode.
pub fn wal_segment(data: &[u8]) {
    let path = Path::new("000007.wal");
    for salvage in [false, true] {
        let mut replay = Replay::new(Config::default(), 0);
        let mut spans = Vec::new();
        let scan = segment::scan_from(
            data,
            data.len() as u64,
            path,
            7,
            MAX_WAL_RECORD,
            salvage,
            |offset, batch| {
                spans.push((offset, batch.len()));
                replay.apply(7, offset, batch).map_err(|c| c.in_file(path))
            },
        );
        let Ok(scan) = scan else { continue };
        assert!(scan.valid_end <= scan.file_len);
        for (offset, len) in spans {
            assert!(
                offset + len as u64 <= scan.file_len,
                "record beyond the file"
            );
        }
        if let Ok(keep) = replay.classify(path, true, &scan) {
            assert!(keep <= scan.file_len);
        }
    }
}

/// A table block: raw bytes through the block reader, then a block built from the input
/// read as a list of entries, which must read back exactly.
pub fn sst_block(data: &[u8]) {
    if let Ok(block) = Block::new(Bytes::copy_from_slice(data), 0) {
        let mut c = block.cursor();
        let keys = walk(&mut c);
        for k in keys.iter().take(16) {
            c.seek(k);
            c.seek_for_prev(k);
        }
    }

    let (entries, interval) = recipe(data);
    let mut b = BlockBuilder::new(interval);
    for (k, v) in &entries {
        b.add(k, v);
    }
    let block = Block::new(Bytes::from(b.finish()), 0);
    let Ok(block) = block else {
        panic!("a built block does not open: {block:?}");
    };
    check_cursor(&mut block.cursor(), &entries);
}

/// A whole table: raw bytes opened, iterated both ways and probed with point lookups, then a
/// table built from the input read as a list of entries, which must read back exactly.
pub fn sst_table(data: &[u8]) {
    // A small cache, so that damaged tables also go through cached reads and evictions.
    let cache = Arc::new(BlockCache::new(8 << 10));
    if let Ok(table) = Table::from_bytes(Bytes::copy_from_slice(data), 9, Path::new("x.sst")) {
        let table = Arc::new(table.with_cache(Arc::clone(&cache)));
        let mut c = table.cursor();
        let keys = walk(&mut c);
        // A second pass reads the blocks the first one cached; it must see the same.
        assert_eq!(walk(&mut table.cursor()), keys);
        for k in keys.iter().take(16) {
            c.seek(k);
            c.seek_for_prev(k);
            if let Some(p) = key::parse(k) {
                if let Ok(Some(hit)) = table.get(p.user_key, hash64(p.user_key), MAX_SEQNO) {
                    assert!(hit.seq <= MAX_SEQNO);
                }
                let _ = table.get(p.user_key, hash64(p.user_key), p.seq);
            }
        }
        let _ = table.get(b"", hash64(b""), MAX_SEQNO);
    }

    let (entries, interval) = recipe(data);
    let file = MemFile::default();
    let codecs = [Compression::None, Compression::Lz4, Compression::Zstd];
    let codec = codecs
        .get(data.len() % codecs.len())
        .copied()
        .filter(|c| c.is_available())
        .unwrap_or(Compression::Lz4);
    let opts = TableOptions {
        block_bytes: 256 + 64 * interval,
        restart_interval: interval,
        filter_bits_per_key: data.len() as u32 % 20,
        compression: codec,
    };
    let mut builder = TableBuilder::new(Box::new(file.clone()), opts);
    for (k, v) in &entries {
        if let Err(e) = builder.add(k, v) {
            panic!("table builder refused a sorted entry: {e}");
        }
    }
    let size = match builder.finish() {
        Ok((_, size)) => size,
        Err(e) => panic!("table builder failed in memory: {e}"),
    };
    let bytes = Bytes::from(file.0.lock().clone());
    assert_eq!(bytes.len() as u64, size);
    let table = match Table::from_bytes(bytes, 9, Path::new("x.sst")) {
        Ok(t) => Arc::new(t.with_cache(cache)),
        Err(e) => panic!("a built table does not open: {e}"),
    };
    assert_eq!(table.props().entries, entries.len() as u64);
    check_cursor(&mut table.cursor(), &entries);
    // Every key finds its newest version; every older version is found as of its seqno.
    let mut newest: BTreeMap<&[u8], u64> = BTreeMap::new();
    for (k, v) in &entries {
        let Some(p) = key::parse(k) else { continue };
        let hit = table.get(p.user_key, hash64(p.user_key), p.seq);
        let Ok(Some(hit)) = hit else {
            panic!("lookup of a stored version failed: {hit:?}");
        };
        assert_eq!((hit.seq, hit.kind, &hit.value[..]), (p.seq, p.kind, &v[..]));
        let top = newest.entry(p.user_key).or_insert(p.seq);
        *top = (*top).max(p.seq);
    }
    for (user_key, seq) in newest {
        let hit = table.get(user_key, hash64(user_key), MAX_SEQNO);
        assert_eq!(hit.ok().flatten().map(|h| h.seq), Some(seq));
    }
}

/// A compressed block: the first byte picks the codec, the rest goes through the decoder as
/// stored bytes (a length-bounded, never-panicking decode), and whatever decodes is opened
/// as a block. Then the rest is compressed and must decompress to itself.
pub fn compressed_block(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let codec = match pick % 2 {
        0 => Compression::Lz4,
        _ => Compression::Zstd,
    };
    if let Ok(raw) = compression::decompress(rest, codec, 0) {
        assert!(raw.len() <= compression::MAX_RAW_BLOCK_LEN);
        assert!(raw.len() <= (rest.len() * 256).max(64 << 10));
        if let Ok(block) = Block::new(Bytes::from(raw), 0) {
            walk(&mut block.cursor());
        }
    }
    if !codec.is_available() {
        return;
    }
    let mut stored = Vec::new();
    let used = compression::compress(rest, codec, &mut stored);
    if used == Compression::None {
        assert!(stored.is_empty());
        return;
    }
    assert!(
        stored.len() < rest.len(),
        "a compressed block must be smaller"
    );
    match compression::decompress(&stored, used, 0) {
        Ok(back) => assert_eq!(back, rest, "round trip changed the block"),
        Err(e) => panic!("a compressed block does not decompress: {e}"),
    }
}

/// A filter block: raw bytes through the filter reader, then a filter built from the input
/// read as a list of hashes, which must contain every one of them.
pub fn filter(data: &[u8]) {
    if let Ok(f) = Filter::new(Bytes::copy_from_slice(data), 0) {
        for chunk in data.chunks(8).take(64) {
            let _ = f.may_contain(hash64(chunk));
        }
    }
    let Some((&bits, rest)) = data.split_first() else {
        return;
    };
    let hashes: Vec<u64> = rest.chunks(3).map(hash64).collect();
    let built = filter::build(&hashes, u32::from(bits % 65));
    let f = match Filter::new(Bytes::from(built), 0) {
        Ok(f) => f,
        Err(e) => panic!("a built filter does not open: {e}"),
    };
    for h in hashes {
        assert!(f.may_contain(h), "false negative");
    }
}

/// One manifest edit: decoded, re-encoded, and applied to an empty table set.
pub fn manifest_edit(data: &[u8]) {
    let Ok(edit) = Edit::decode(data, 0) else {
        return;
    };
    assert_eq!(Edit::decode(&edit.encode(), 0).as_ref(), Ok(&edit));
    let mut state = ManifestState::new();
    if state.apply(&edit).is_ok() {
        check_state(&state);
    }
}

/// A whole manifest file, replayed as recovery does.
pub fn manifest(data: &[u8]) {
    // The header must name the file; take the number it names so that inputs need not guess
    // it (the check itself is one comparison).
    let number = data
        .get(12..20)
        .and_then(|b| b.try_into().ok())
        .map_or(0, u64::from_le_bytes);
    if let Ok(replayed) = crate::manifest::replay(data, Path::new("MANIFEST-000005"), number) {
        check_state(&replayed.state);
    }
}

/// The record payloads of a log file (a WAL segment or a manifest), in order: seed
/// material for the record and edit targets.
pub fn log_records(file: &[u8], magic: [u8; 8]) -> Vec<Vec<u8>> {
    use crate::wal::format::{MANIFEST_VERSIONS, WAL_VERSIONS};
    use crate::wal::reader::{LogEvent, LogReader, Opened};
    let mut out = Vec::new();
    let versions = if magic == crate::wal::format::WAL_MAGIC {
        WAL_VERSIONS
    } else {
        MANIFEST_VERSIONS
    };
    if let Ok(Ok(Opened::Reader(mut r))) = LogReader::open(file, magic, versions, MAX_WAL_RECORD) {
        while let Ok(Some(event)) = r.next() {
            if let LogEvent::Record { data, .. } = event {
                out.push(data);
            }
        }
    }
    out
}

/// The contents of a table's blocks (decompressed): every data block, then the filter,
/// properties and index blocks. Empty when the table does not open.
pub fn table_blocks(file: &[u8]) -> Vec<Vec<u8>> {
    stored_blocks(file)
        .into_iter()
        .filter_map(|b| {
            let kind = b.block_type;
            let kinds = [
                BlockType::Data,
                BlockType::Index,
                BlockType::Filter,
                BlockType::Properties,
            ];
            let kind = kinds.into_iter().find(|k| *k as u8 == kind)?;
            b.contents(kind, true).ok().map(|c| c.to_vec())
        })
        .collect()
}

/// Inputs for [`compressed_block`]: every compressed data block of a table, as a codec byte
/// followed by the stored bytes.
pub fn compressed_block_inputs(file: &[u8]) -> Vec<Vec<u8>> {
    stored_blocks(file)
        .into_iter()
        .filter_map(|b| {
            let pick = match b.codec().ok()? {
                Compression::Lz4 => 0u8,
                Compression::Zstd => 1,
                _ => return None,
            };
            let mut v = vec![pick];
            v.extend_from_slice(&b.stored);
            Some(v)
        })
        .collect()
}

/// Every block of a table as stored: data blocks in index order, then the filter,
/// properties and index blocks.
fn stored_blocks(file: &[u8]) -> Vec<StoredBlock> {
    let data = Bytes::copy_from_slice(file);
    let Some(footer_at) = file.len().checked_sub(FOOTER_LEN) else {
        return Vec::new();
    };
    let Some(footer) = file
        .get(footer_at..)
        .and_then(|b| Footer::decode(b, file.len() as u64).ok())
    else {
        return Vec::new();
    };
    let locate =
        |h: BlockHandle| StoredBlock::locate(&data, footer_at as u64, h, footer.version).ok();
    let mut out = Vec::new();
    if let Some(index) = locate(footer.index)
        && let Ok(block) = Block::new(index.stored, footer.index.offset)
    {
        let mut c = block.cursor();
        c.seek_to_first();
        while c.valid() {
            if let Some(b) = BlockHandle::decode(&c.value()).ok().and_then(locate) {
                out.push(b);
            }
            c.next();
        }
    }
    out.extend(
        [footer.filter, footer.props, footer.index]
            .into_iter()
            .filter_map(locate),
    );
    out
}

/// A replayed table set survives the round trip through the snapshot edit that starts
/// every new manifest.
fn check_state(state: &ManifestState) {
    assert_eq!(state.levels.len(), NUM_LEVELS);
    assert!(state.last_seq <= MAX_SEQNO);
    assert!(state.next_file <= crate::manifest::MAX_FILE_NUMBER);
    assert!(state.log_number <= crate::manifest::MAX_FILE_NUMBER);
    let snap = state.snapshot_edit().encode();
    let edit = Edit::decode(&snap, 0);
    let Ok(edit) = edit else {
        panic!("snapshot edit does not decode: {edit:?}");
    };
    let mut again = ManifestState::new();
    assert_eq!(again.apply(&edit), Ok(()));
    assert_eq!(&again, state);
}

/// Walks a cursor forward and backward (bounded) and returns the keys seen going forward.
fn walk(c: &mut dyn Cursor) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    c.seek_to_first();
    while c.valid() && keys.len() < MAX_STEPS {
        keys.push(c.key().to_vec());
        let _ = c.value();
        c.next();
    }
    let _ = c.status();
    c.seek_to_last();
    let mut steps = 0;
    while c.valid() && steps < MAX_STEPS {
        c.prev();
        steps += 1;
    }
    let _ = c.status();
    keys
}

/// Checks that a cursor over a structure built from `entries` returns exactly them, both
/// ways, and that seeks land where they must.
fn check_cursor(c: &mut dyn Cursor, entries: &[(Vec<u8>, Vec<u8>)]) {
    let mut fwd = Vec::new();
    c.seek_to_first();
    while c.valid() {
        fwd.push((c.key().to_vec(), c.value().to_vec()));
        c.next();
    }
    assert!(c.status().is_ok());
    assert!(fwd == entries, "forward scan differs from what was written");
    let mut back = Vec::new();
    c.seek_to_last();
    while c.valid() {
        back.push((c.key().to_vec(), c.value().to_vec()));
        c.prev();
    }
    assert!(c.status().is_ok());
    back.reverse();
    assert!(
        back == entries,
        "backward scan differs from what was written"
    );
    for (i, (k, _)) in entries.iter().enumerate() {
        c.seek(k);
        assert!(c.valid() && c.key() == &k[..], "seek misses entry {i}");
        c.seek_for_prev(k);
        assert!(
            c.valid() && c.key() == &k[..],
            "seek_for_prev misses entry {i}"
        );
        if let Some(p) = key::parse(k) {
            // A seek target sorts before every version of its key at the same seqno.
            c.seek(&key::encode(p.user_key, SeqNo::new(p.seq), KIND_SEEK));
            assert!(
                c.valid() && c.key() == &k[..],
                "version seek misses entry {i}"
            );
        }
    }
}

/// Reads `data` as a list of entries: each is a key-length byte (0..16), the key, a
/// value-length byte (0..64) and the value; kinds and seqnos come from the length bytes.
/// Returns them sorted in internal order without duplicates, and a restart interval.
fn recipe(data: &[u8]) -> (Entries, usize) {
    let mut entries: Entries = Vec::new();
    let mut rest = data;
    let mut seq = 1u64;
    while let Some((&kl, r)) = rest.split_first() {
        let (user, r) = r.split_at(usize::from(kl % 16).min(r.len()));
        let (vl, r) = r.split_first().map_or((0, r), |(&b, r)| (b, r));
        let (value, r) = r.split_at(usize::from(vl % 64).min(r.len()));
        let kind = if kl & 0x80 == 0 {
            Kind::Put
        } else {
            Kind::Delete
        };
        seq += u64::from(vl >> 6) * 1000 + 1;
        let ikey = key::encode(user, SeqNo::new(seq), kind as u8);
        let value = if kind == Kind::Put { value } else { &[] };
        entries.push((ikey, value.to_vec()));
        rest = r;
    }
    // Seqnos only grow, so no two entries share an internal key.
    entries.sort_by(|a, b| key::compare(&a.0, &b.0));
    let interval = data.first().map_or(1, |&b| usize::from(b % 16) + 1);
    (entries, interval)
}

/// An in-memory file for the table builder.
#[derive(Debug, Clone, Default)]
struct MemFile(Arc<parking_lot::Mutex<Vec<u8>>>);

impl WritableFile for MemFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.0.lock().extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.0.lock().truncate(len as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_target_survives_empty_and_tiny_inputs() {
        for (name, target) in TARGETS {
            for input in [&[][..], &[0], &[0xff; 7], &[1; 64]] {
                target(input);
            }
            assert!(!name.is_empty());
        }
    }
}
