//! Verifying one table: the footer, every block's bounds, type and checksum, the blocks'
//! placement (data blocks, filter, properties and index tile the file in that order), every
//! entry's key and order, the filter (it must admit every key), the properties (they must
//! match the entries), and the manifest's entry (it must match the file).
#![deny(clippy::indexing_slicing)]

use std::path::Path;

use bytes::Bytes;

use super::{CheckedFile, FileKind, Recorder};
use crate::cursor::Cursor;
use crate::error::Corrupt;
use crate::fs::FileSystem;
use crate::hash::hash64;
use crate::key;
use crate::manifest::TableMeta;
use crate::sstable::block::Block;
use crate::sstable::filter::Filter;
use crate::sstable::format::{
    BlockHandle, BlockType, FOOTER_LEN, Footer, Properties, StoredBlock, trailer_len,
};
use crate::sstable::table_reader::Table;

/// Checks a block's bounds, trailer type, compression byte and checksum; returns its
/// contents, decompressed when it is stored compressed.
pub(crate) fn read_block(
    data: &Bytes,
    limit: u64,
    h: BlockHandle,
    kind: BlockType,
    version: u32,
) -> Result<Bytes, Corrupt> {
    let b = StoredBlock::locate(data, limit, h, version)?;
    let body_end = h.offset + b.stored.len() as u64;
    if b.block_type != kind as u8 {
        return Err(Corrupt::new(
            body_end,
            format!(
                "expected a {} block (type {}), found type {}",
                block_name(kind),
                kind as u8,
                b.block_type
            ),
        ));
    }
    let actual = b.computed_crc();
    if actual != b.stored_crc {
        return Err(Corrupt::new(
            h.offset,
            format!(
                "{} block checksum mismatch (stored {:#010x}, computed {actual:#010x})",
                block_name(kind),
                b.stored_crc
            ),
        ));
    }
    b.contents(kind, false)
}

/// The name of a block type.
pub(crate) fn block_name(kind: BlockType) -> &'static str {
    match kind {
        BlockType::Data => "data",
        BlockType::Index => "index",
        BlockType::Filter => "filter",
        BlockType::Properties => "properties",
    }
}

/// What the entries of a table add up to.
#[derive(Default)]
struct Tally {
    entries: u64,
    deletions: u64,
    min_seq: u64,
    max_seq: u64,
    smallest: Vec<u8>,
    largest: Vec<u8>,
    blocks: u64,
    /// Data blocks stored compressed.
    compressed: u64,
    /// Bytes of data-block contents, decompressed.
    raw_bytes: u64,
}

/// Verifies the table at `path` (against its manifest entry, when there is one).
pub(crate) fn check_table(
    fs: &dyn FileSystem,
    path: &Path,
    meta: Option<&TableMeta>,
    rec: &mut Recorder<'_>,
) {
    let before = rec.report.damage.len();
    let mut summary = CheckedFile {
        file: path.to_path_buf(),
        kind: FileKind::Table,
        bytes: 0,
        units: 0,
        entries: 0,
        damaged: false,
    };
    let data = match fs.map(path) {
        Ok(d) => d,
        Err(e) => {
            rec.damage(path, FileKind::Table, None, format!("cannot read: {e}"));
            rec.checked(summary, before);
            return;
        }
    };
    summary.bytes = data.len() as u64;
    let mut damage = |offset: Option<u64>, reason: String| {
        rec.damage(path, FileKind::Table, offset, reason);
    };
    if let Some(m) = meta
        && m.size != data.len() as u64
    {
        damage(
            None,
            format!("file is {} bytes, the manifest says {}", data.len(), m.size),
        );
    }
    let tally = walk(&data, &mut damage);
    if let Some(t) = &tally {
        summary.units = t.blocks;
        summary.entries = t.entries;
        if let Some(m) = meta {
            let mismatch = [
                ("entries", m.entries != t.entries),
                ("smallest key", m.smallest != t.smallest),
                ("largest key", m.largest != t.largest),
                ("min seqno", m.entries > 0 && m.min_seq != t.min_seq),
                ("max seqno", m.entries > 0 && m.max_seq != t.max_seq),
            ];
            for (what, differs) in mismatch {
                if differs {
                    damage(None, format!("{what} differs from the manifest's entry"));
                }
            }
        }
    }
    // The engine's own open must agree.
    if rec.report.damage.len() == before
        && let Err(e) = Table::from_bytes(data, 0, path)
    {
        rec.damage(path, FileKind::Table, Some(e.offset), e.reason);
    }
    rec.checked(summary, before);
}

/// Reads every block; reports damage through `damage`. `None` when the table's structure is
/// too damaged to count its entries.
fn walk(data: &Bytes, damage: &mut dyn FnMut(Option<u64>, String)) -> Option<Tally> {
    let len = data.len() as u64;
    let Some(footer_at) = data.len().checked_sub(FOOTER_LEN) else {
        damage(Some(0), "file too short to be a table".into());
        return None;
    };
    let footer = match Footer::decode(data.get(footer_at..).unwrap_or_default(), len) {
        Ok(f) => f,
        Err(e) => {
            damage(Some(e.offset), e.reason);
            return None;
        }
    };
    let limit = footer_at as u64;
    let meta_block = |h: BlockHandle, t: BlockType, damage: &mut dyn FnMut(Option<u64>, String)| {
        read_block(data, limit, h, t, footer.version)
            .map_err(|e| damage(Some(e.offset), e.reason))
            .ok()
    };
    let filter = meta_block(footer.filter, BlockType::Filter, damage).and_then(|b| {
        Filter::new(b, footer.filter.offset)
            .map_err(|e| damage(Some(e.offset), e.reason))
            .ok()
    });
    let props = meta_block(footer.props, BlockType::Properties, damage).and_then(|b| {
        Properties::decode(&b, footer.props.offset, footer.version)
            .map_err(|e| damage(Some(e.offset), e.reason))
            .ok()
    });
    let index = meta_block(footer.index, BlockType::Index, damage).and_then(|b| {
        Block::new(b, footer.index.offset)
            .map_err(|e| damage(Some(e.offset), e.reason))
            .ok()
    });
    // Placement: filter, properties and index follow the data blocks, then the footer.
    let tlen = trailer_len(footer.version) as u64;
    let end_of = |h: BlockHandle| h.offset + h.size + tlen;
    if footer.props.offset != end_of(footer.filter)
        || footer.index.offset != end_of(footer.props)
        || end_of(footer.index) != limit
    {
        damage(
            Some(limit),
            "filter, properties and index blocks are not laid out back to back before the footer"
                .into(),
        );
    }
    let index = index?;
    let mut t = Tally {
        min_seq: u64::MAX,
        ..Tally::default()
    };
    let mut expected_offset = 0u64;
    let mut prev_key: Vec<u8> = Vec::new();
    let mut prev_user: Option<Vec<u8>> = None;
    let mut structure_ok = true;
    let mut ic = index.cursor();
    ic.seek_to_first();
    while ic.valid() {
        let sep = ic.key().to_vec();
        let h = match BlockHandle::decode(&ic.value()) {
            Ok(h) => h,
            Err(e) => {
                damage(
                    Some(footer.index.offset),
                    format!("index entry: {}", e.reason),
                );
                structure_ok = false;
                ic.next();
                continue;
            }
        };
        t.blocks += 1;
        if h.offset != expected_offset {
            damage(
                Some(h.offset),
                format!(
                    "data block starts at {}, expected {expected_offset}",
                    h.offset
                ),
            );
        }
        expected_offset = end_of(h);
        if StoredBlock::locate(data, limit, h, footer.version).is_ok_and(|b| b.compression != 0) {
            t.compressed += 1;
        }
        let block =
            match read_block(data, limit, h, BlockType::Data, footer.version).and_then(|b| {
                t.raw_bytes += b.len() as u64;
                Block::new(b, h.offset)
            }) {
                Ok(b) => b,
                Err(e) => {
                    damage(Some(e.offset), e.reason);
                    structure_ok = false;
                    ic.next();
                    continue;
                }
            };
        let mut c = block.cursor();
        c.seek_to_first();
        let mut last_in_block: Option<Vec<u8>> = None;
        while c.valid() {
            let k = c.key();
            let Some(p) = key::parse(k) else {
                damage(Some(h.offset), "malformed internal key".into());
                structure_ok = false;
                break;
            };
            if t.entries > 0 && key::compare(&prev_key, k).is_ge() {
                damage(Some(h.offset), "keys out of order".into());
                structure_ok = false;
            }
            if prev_user.as_deref() != Some(p.user_key) {
                if let Some(f) = &filter
                    && !f.may_contain(hash64(p.user_key))
                {
                    damage(
                        Some(footer.filter.offset),
                        "the filter does not admit a key the table holds".into(),
                    );
                }
                prev_user = Some(p.user_key.to_vec());
            }
            if t.entries == 0 {
                t.smallest = k.to_vec();
            }
            t.entries += 1;
            t.deletions += u64::from(p.kind == key::Kind::Delete);
            t.min_seq = t.min_seq.min(p.seq);
            t.max_seq = t.max_seq.max(p.seq);
            prev_key.clear();
            prev_key.extend_from_slice(k);
            last_in_block = Some(k.to_vec());
            c.next();
        }
        if let Some(e) = c.corruption() {
            damage(Some(e.offset), e.reason.clone());
            structure_ok = false;
        }
        match last_in_block {
            Some(last) if last != sep => {
                damage(
                    Some(h.offset),
                    "index key differs from the data block's last key".into(),
                );
            }
            None => {
                damage(Some(h.offset), "empty data block".into());
            }
            _ => {}
        }
        ic.next();
    }
    if let Some(e) = ic.corruption() {
        damage(Some(e.offset), e.reason.clone());
        structure_ok = false;
    }
    if expected_offset != footer.filter.offset {
        damage(
            Some(expected_offset),
            format!(
                "data blocks end at {expected_offset}, the filter block starts at {}",
                footer.filter.offset
            ),
        );
    }
    t.largest = prev_key;
    if t.entries == 0 {
        t.min_seq = 0;
    }
    if let Some(p) = &props
        && structure_ok
    {
        let checks = [
            ("entries", p.entries == t.entries),
            ("deletions", p.deletions == t.deletions),
            ("data blocks", p.data_blocks == t.blocks),
            (
                "compressed blocks",
                footer.version < 2 || p.compressed_blocks == t.compressed,
            ),
            (
                "raw data bytes",
                footer.version < 2 || p.raw_data_bytes == t.raw_bytes,
            ),
            ("smallest key", p.smallest == t.smallest),
            ("largest key", p.largest == t.largest),
            (
                "seqno range",
                t.entries == 0 || (p.min_seq, p.max_seq) == (t.min_seq, t.max_seq),
            ),
        ];
        for (what, ok) in checks {
            if !ok {
                damage(
                    Some(footer.props.offset),
                    format!("properties: {what} differ from the entries"),
                );
            }
        }
    }
    structure_ok.then_some(t)
}
