//! `strata inspect wal|sst|manifest FILE`: every chunk, record or block of one file with its
//! offset and checksum (stored and computed), decoded into a human form — or JSON.
//!
//! Logs are shown twice: physically (the file header and every chunk of every 32 KiB block)
//! and logically (every record the log reader assembles, and what it holds: a WAL record's
//! `synced_to` and batch, a manifest record's edit). Tables are shown block by block.

use std::io::Write;
use std::path::Path;

use bytes::Bytes;
use serde_json::{Map, Value, json};

use super::{CliError, CliResult, InspectWhat, Style, exit, print_json, show};
use crate::batch::BatchView;
use crate::coding::get_u32;
use crate::cursor::Cursor;
use crate::key;
use crate::manifest::Edit;
use crate::sstable::block::Block;
use crate::sstable::compression::Compression;
use crate::sstable::format::{BlockHandle, BlockType, FOOTER_LEN, Footer, Properties, StoredBlock};
use crate::wal::format::{
    BLOCK_SIZE, CHUNK_HEADER_LEN, FILE_HEADER_LEN, FileHeader, MANIFEST_MAGIC, MANIFEST_VERSIONS,
    WAL_MAGIC, WAL_VERSIONS, chunk_crc,
};
use crate::wal::reader::{BadKind, LogEvent, LogReader, Opened};

/// Values longer than this are shortened in human output.
const SHOWN: usize = 64;

fn read(path: &Path) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::new(exit::FAILED, format!("{}: {e}", path.display())))
}

pub(crate) fn run(what: InspectWhat, style: Style, out: &mut dyn Write) -> CliResult {
    match what {
        InspectWhat::Wal { file, ops } => log(&read(&file)?, WAL_MAGIC, ops, style, out),
        InspectWhat::Manifest { file } => log(&read(&file)?, MANIFEST_MAGIC, true, style, out),
        InspectWhat::Sst { file, entries } => table(Bytes::from(read(&file)?), entries, style, out),
    }
}

fn short(b: &[u8], style: Style) -> String {
    if b.len() <= SHOWN {
        show(b, style)
    } else {
        format!(
            "{}… ({} bytes)",
            show(b.get(..SHOWN).unwrap_or_default(), style),
            b.len()
        )
    }
}

fn chunk_type(t: u8) -> &'static str {
    match t {
        1 => "FULL",
        2 => "FIRST",
        3 => "MIDDLE",
        4 => "LAST",
        0 => "ZERO",
        _ => "UNKNOWN",
    }
}

/// Shows a log file (WAL segment or manifest).
fn log(data: &[u8], magic: [u8; 8], detail: bool, style: Style, out: &mut dyn Write) -> CliResult {
    let wal = magic == WAL_MAGIC;
    let mut damaged = false;
    let mut doc = Map::new();
    // The file header.
    let head = data
        .get(..FILE_HEADER_LEN.min(data.len()))
        .unwrap_or_default();
    let stored_crc = get_u32(head, FILE_HEADER_LEN - 4);
    let versions = if wal { WAL_VERSIONS } else { MANIFEST_VERSIONS };
    let header = FileHeader::decode(head, magic, versions);
    match &header {
        Ok(h) => {
            if style.json {
                doc.insert(
                    "header".into(),
                    json!({"magic": String::from_utf8_lossy(&h.magic), "version": h.version, "file_number": h.file_number,
                           "prev_number": h.prev_number, "crc": stored_crc, "ok": true}),
                );
            } else {
                writeln!(
                    out,
                    "header   @0  magic {}  version {}  file {}  prev {}  crc {:#010x} ok",
                    String::from_utf8_lossy(&h.magic),
                    h.version,
                    h.file_number,
                    h.prev_number,
                    stored_crc.unwrap_or_default()
                )?;
            }
        }
        Err(e) => {
            damaged = true;
            if style.json {
                doc.insert("header".into(), json!({"ok": false, "reason": e.reason}));
            } else {
                writeln!(out, "header   @0  BAD: {}", e.reason)?;
            }
        }
    }
    // Chunks, block by block.
    let mut chunks = Vec::new();
    let mut block_start = 0usize;
    while block_start < data.len() {
        let block_end = (block_start + BLOCK_SIZE).min(data.len());
        let mut pos = if block_start == 0 {
            FILE_HEADER_LEN
        } else {
            block_start
        };
        while pos + CHUNK_HEADER_LEN <= block_end {
            let h = data.get(pos..pos + CHUNK_HEADER_LEN).unwrap_or_default();
            let crc = get_u32(h, 0).unwrap_or_default();
            let len = usize::from(u16::from_le_bytes([
                h.get(4).copied().unwrap_or(0),
                h.get(5).copied().unwrap_or(0),
            ]));
            let kind = h.get(6).copied().unwrap_or(0);
            if kind == 0 && len == 0 && crc == 0 {
                let zeros = data
                    .get(pos..block_end)
                    .unwrap_or_default()
                    .iter()
                    .all(|&b| b == 0);
                if style.json {
                    chunks.push(json!({"offset": pos, "type": "ZERO", "len": block_end - pos, "all_zero": zeros}));
                } else {
                    writeln!(
                        out,
                        "chunk    @{pos}  unwritten space to {block_end}{}",
                        if zeros { "" } else { " (not all zeros!)" }
                    )?;
                }
                break;
            }
            let payload = data.get(pos + CHUNK_HEADER_LEN..pos + CHUNK_HEADER_LEN + len);
            let (ok, computed) = match payload {
                Some(p) if pos + CHUNK_HEADER_LEN + len <= block_end => {
                    let c = chunk_crc(kind, p);
                    (c == crc, Some(c))
                }
                _ => (false, None),
            };
            damaged |= !ok;
            if style.json {
                chunks.push(json!({"offset": pos, "type": chunk_type(kind), "len": len,
                                   "crc": crc, "computed_crc": computed, "ok": ok}));
            } else {
                writeln!(
                    out,
                    "chunk    @{pos}  {:<6} len {len:>5}  crc {crc:#010x} {}",
                    chunk_type(kind),
                    match computed {
                        Some(_) if ok => "ok".to_string(),
                        Some(c) => format!("MISMATCH (computed {c:#010x})"),
                        None => "length runs past its block".to_string(),
                    }
                )?;
            }
            if computed.is_none() {
                break;
            }
            pos += CHUNK_HEADER_LEN + len;
        }
        block_start += BLOCK_SIZE;
    }
    // Records.
    let mut records = Vec::new();
    if header.is_ok()
        && let Ok(Ok(Opened::Reader(mut r))) = LogReader::open(data, magic, versions, usize::MAX)
    {
        while let Some(event) = r.next()? {
            match event {
                LogEvent::Record { offset, end, data } => {
                    let (text, value) = if wal {
                        wal_record(&data, offset, detail, style)
                    } else {
                        manifest_record(&data, offset, style)
                    };
                    if style.json {
                        let mut o = Map::new();
                        o.insert("offset".into(), offset.into());
                        o.insert("end".into(), end.into());
                        o.insert("len".into(), data.len().into());
                        if let Value::Object(m) = value {
                            o.extend(m);
                        }
                        records.push(Value::Object(o));
                    } else {
                        writeln!(
                            out,
                            "record   @{offset}..{end}  {} bytes  {text}",
                            data.len()
                        )?;
                    }
                }
                LogEvent::Bad {
                    offset,
                    len,
                    kind,
                    reason,
                } => {
                    let zeros = kind == BadKind::Unwritten;
                    if style.json {
                        records.push(json!({"offset": offset, "bad": true, "len": len, "zeros": zeros, "reason": reason}));
                    } else if zeros {
                        writeln!(out, "unused   @{offset}  {len} bytes of zeros")?;
                    } else {
                        damaged = true;
                        writeln!(out, "BAD      @{offset}  {len} bytes: {reason}")?;
                    }
                }
            }
        }
    }
    if style.json {
        doc.insert("size".into(), data.len().into());
        doc.insert("chunks".into(), Value::Array(chunks));
        doc.insert("records".into(), Value::Array(records));
        print_json(out, &Value::Object(doc))?;
    }
    Ok(if damaged { exit::DAMAGED } else { exit::OK })
}

fn wal_record(data: &[u8], offset: u64, ops: bool, style: Style) -> (String, Value) {
    let Some((prefix, batch)) = data.split_at_checked(8) else {
        return (
            "BAD: shorter than its prefix".into(),
            json!({"error": "short"}),
        );
    };
    let synced_to = u64::from_le_bytes(prefix.try_into().unwrap_or_default());
    if batch.is_empty() {
        return (
            format!("synced_to {synced_to}  seal (the segment was closed cleanly)"),
            json!({"synced_to": synced_to, "seal": true}),
        );
    }
    let view = BatchView::new(batch, offset + 8).and_then(|v| v.ops().map(|o| (v, o)));
    match view {
        Err(e) => (
            format!("synced_to {synced_to}  BAD batch: {e}"),
            json!({"synced_to": synced_to, "error": e.to_string()}),
        ),
        Ok((v, list)) => {
            let mut text = format!(
                "synced_to {synced_to}  batch seqnos {}..={}  {} ops",
                v.first_seq,
                v.first_seq + u64::from(v.count).saturating_sub(1),
                v.count
            );
            let mut jops = Vec::new();
            if ops {
                for (i, op) in list.iter().enumerate() {
                    let seq = v.first_seq + i as u64;
                    match op.kind {
                        key::Kind::Put => {
                            text.push_str(&format!(
                                "\n           {seq} put {} = {}",
                                short(op.key, style),
                                short(op.value, style)
                            ));
                        }
                        key::Kind::Delete => {
                            text.push_str(&format!(
                                "\n           {seq} delete {}",
                                short(op.key, style)
                            ));
                        }
                    }
                    let mut o = Map::new();
                    o.insert("seqno".into(), seq.into());
                    o.insert(
                        "op".into(),
                        if op.kind == key::Kind::Put {
                            "put"
                        } else {
                            "delete"
                        }
                        .into(),
                    );
                    super::json_bytes(&mut o, "key", op.key);
                    if op.kind == key::Kind::Put {
                        super::json_bytes(&mut o, "value", op.value);
                    }
                    jops.push(Value::Object(o));
                }
            }
            (
                text,
                json!({"synced_to": synced_to, "first_seqno": v.first_seq, "count": v.count, "ops": jops}),
            )
        }
    }
}

fn manifest_record(data: &[u8], offset: u64, style: Style) -> (String, Value) {
    let edit = match Edit::decode(data, offset) {
        Ok(e) => e,
        Err(e) => return (format!("BAD edit: {e}"), json!({"error": e.to_string()})),
    };
    let mut parts = Vec::new();
    if let Some(n) = edit.next_file {
        parts.push(format!("next_file {n}"));
    }
    if let Some(n) = edit.last_seq {
        parts.push(format!("last_seqno {n}"));
    }
    if let Some(n) = edit.log_number {
        parts.push(format!("log_number {n}"));
    }
    let mut text = parts.join("  ");
    for (level, number) in &edit.removed {
        text.push_str(&format!("\n           remove L{level} {number:06}.sst"));
    }
    let mut added = Vec::new();
    for (level, t) in &edit.added {
        text.push_str(&format!(
            "\n           add    L{level} {:06}.sst  {} bytes  {} entries  seqnos {}..={}  keys {} .. {}",
            t.number,
            t.size,
            t.entries,
            t.min_seq,
            t.max_seq,
            short(key::user_key(&t.smallest), style),
            short(key::user_key(&t.largest), style)
        ));
        added.push(
            json!({"level": level, "number": t.number, "size": t.size, "entries": t.entries,
                          "min_seqno": t.min_seq, "max_seqno": t.max_seq}),
        );
    }
    let removed: Vec<Value> = edit
        .removed
        .iter()
        .map(|(l, n)| json!({"level": l, "number": n}))
        .collect();
    (
        text,
        json!({"next_file": edit.next_file, "last_seqno": edit.last_seq, "log_number": edit.log_number,
               "added": added, "removed": removed}),
    )
}

/// The byte range of a block's contents, if it is representable.
fn span(h: BlockHandle) -> Option<(usize, usize)> {
    let a = usize::try_from(h.offset).ok()?;
    let b = usize::try_from(h.offset.checked_add(h.size)?).ok()?;
    Some((a, b))
}

fn block_name(kind: BlockType) -> &'static str {
    match kind {
        BlockType::Data => "data",
        BlockType::Index => "index",
        BlockType::Filter => "filter",
        BlockType::Properties => "properties",
    }
}

/// One block's trailer check.
#[derive(Clone, Copy)]
struct Check {
    block_type: u8,
    compression: u8,
    stored_crc: u32,
    computed_crc: u32,
    ok: bool,
}

fn trailer(
    data: &Bytes,
    limit: u64,
    h: BlockHandle,
    kind: BlockType,
    version: u32,
) -> Option<Check> {
    let b = StoredBlock::locate(data, limit, h, version).ok()?;
    let computed_crc = b.computed_crc();
    Some(Check {
        block_type: b.block_type,
        compression: b.compression,
        stored_crc: b.stored_crc,
        computed_crc,
        ok: b.block_type == kind as u8 && b.stored_crc == computed_crc,
    })
}

/// The name of a compression byte.
fn compression_name(code: u8) -> String {
    Compression::from_code(code).map_or_else(|| format!("compression {code}?"), |c| c.name().into())
}

/// Shows a table.
fn table(data: Bytes, entries: bool, style: Style, out: &mut dyn Write) -> CliResult {
    let len = data.len() as u64;
    let Some(footer_at) = data.len().checked_sub(FOOTER_LEN) else {
        return Err(CliError::new(exit::DAMAGED, "file too short to be a table"));
    };
    let footer = Footer::decode(data.get(footer_at..).unwrap_or_default(), len)
        .map_err(|e| CliError::new(exit::DAMAGED, format!("footer: {e}")))?;
    let mut damaged = false;
    let mut blocks = Vec::new();
    let limit = footer_at as u64;
    let version = footer.version;
    // The contents of a block whose trailer checks out (decompressed), or why not.
    let contents = |h: BlockHandle, kind: BlockType| {
        StoredBlock::locate(&data, limit, h, version).and_then(|b| b.contents(kind, true))
    };
    let mut line = |out: &mut dyn Write,
                    h: BlockHandle,
                    kind: BlockType,
                    extra: String|
     -> Result<Option<Bytes>, CliError> {
        let check = trailer(&data, limit, h, kind, version);
        let decoded = contents(h, kind);
        let ok = check.is_some_and(|c| c.ok) && decoded.is_ok();
        let compression = check.map(|c| compression_name(c.compression));
        let raw_size = decoded.as_ref().ok().map(|b| b.len());
        if style.json {
            blocks.push(json!({"type": block_name(kind), "offset": h.offset, "size": h.size,
                               "compression": compression, "raw_size": raw_size,
                               "crc": check.map(|c| c.stored_crc), "computed_crc": check.map(|c| c.computed_crc),
                               "ok": ok, "error": decoded.as_ref().err().map(|e| e.reason.clone()), "detail": extra}));
        } else {
            let status = match (check, &decoded) {
                (Some(c), Ok(_)) if c.ok => format!("crc {:#010x} ok", c.stored_crc),
                (Some(c), _) if !c.ok => format!(
                    "type {} crc {:#010x} MISMATCH (computed {:#010x})",
                    c.block_type, c.stored_crc, c.computed_crc
                ),
                (Some(_), Err(e)) => format!("DAMAGED: {}", e.reason),
                _ => "OUT OF RANGE".into(),
            };
            let codec = match (compression.as_deref(), raw_size) {
                (Some("none"), _) | (None, _) => String::new(),
                (Some(c), Some(raw)) => format!(" {c} ({raw} raw)"),
                (Some(c), None) => format!(" {c}"),
            };
            writeln!(
                out,
                "{:<10} @{:<9} {:>6} bytes{codec}  {status}  {extra}",
                block_name(kind),
                h.offset,
                h.size
            )?;
        }
        Ok(decoded.ok())
    };
    // Data blocks, through the index.
    let index = span(footer.index)
        .and_then(|(a, b)| data.get(a..b))
        .map(|b| Block::new(Bytes::copy_from_slice(b), footer.index.offset));
    let mut n_blocks = 0;
    match index {
        Some(Ok(index)) => {
            let mut ic = index.cursor();
            ic.seek_to_first();
            while ic.valid() {
                let Ok(h) = BlockHandle::decode(&ic.value()) else {
                    damaged = true;
                    break;
                };
                n_blocks += 1;
                let parsed = contents(h, BlockType::Data).and_then(|b| Block::new(b, h.offset));
                let mut summary = String::new();
                let mut list = Vec::new();
                if let Ok(b) = &parsed {
                    let mut c = b.cursor();
                    c.seek_to_first();
                    let mut count = 0;
                    let mut first = None;
                    let mut last = Vec::new();
                    while c.valid() {
                        count += 1;
                        if first.is_none() {
                            first = Some(c.key().to_vec());
                        }
                        last = c.key().to_vec();
                        if entries {
                            list.push((c.key().to_vec(), c.value()));
                        }
                        c.next();
                    }
                    let k = |ik: &[u8]| match key::parse(ik) {
                        Some(p) => format!("{}@{}", short(p.user_key, style), p.seq),
                        None => "?".into(),
                    };
                    summary = format!(
                        "{count} entries  {} .. {}",
                        first.as_deref().map(k).unwrap_or_default(),
                        k(&last)
                    );
                    if c.corruption().is_some() {
                        damaged = true;
                        summary.push_str("  (entries damaged)");
                    }
                }
                let ok = line(out, h, BlockType::Data, summary)?;
                damaged |= ok.is_none() || parsed.is_err();
                if entries && !style.json {
                    for (ik, v) in list {
                        match key::parse(&ik) {
                            Some(p) if p.kind == key::Kind::Put => writeln!(
                                out,
                                "             {} @{} put {}",
                                short(p.user_key, style),
                                p.seq,
                                short(&v, style)
                            )?,
                            Some(p) => writeln!(
                                out,
                                "             {} @{} delete",
                                short(p.user_key, style),
                                p.seq
                            )?,
                            None => writeln!(out, "             (malformed key)")?,
                        }
                    }
                }
                ic.next();
            }
        }
        _ => damaged = true,
    }
    let filter_ok = line(out, footer.filter, BlockType::Filter, String::new())?;
    damaged |= filter_ok.is_none();
    let props = line(out, footer.props, BlockType::Properties, String::new())?;
    let props = props.and_then(|b| Properties::decode(&b, footer.props.offset, version).ok());
    damaged |= props.is_none();
    let index_ok = line(
        out,
        footer.index,
        BlockType::Index,
        format!("{n_blocks} data blocks"),
    )?;
    damaged |= index_ok.is_none();
    if style.json {
        let p = props.as_ref().map(|p| {
            json!({"entries": p.entries, "deletions": p.deletions, "min_seqno": p.min_seq, "max_seqno": p.max_seq,
                   "raw_key_bytes": p.raw_key_bytes, "raw_value_bytes": p.raw_value_bytes, "data_blocks": p.data_blocks,
                   "compressed_blocks": p.compressed_blocks, "raw_data_bytes": p.raw_data_bytes})
        });
        print_json(
            out,
            &json!({"size": len, "footer_offset": footer_at, "format_version": version, "blocks": blocks, "properties": p, "damaged": damaged}),
        )?;
    } else {
        writeln!(
            out,
            "footer     @{footer_at:<9} {FOOTER_LEN:>6} bytes  magic strataST  version {version}  ok"
        )?;
        if let Some(p) = &props {
            writeln!(
                out,
                "properties: {} entries ({} deletions), seqnos {}..={}, {} key bytes, {} value bytes, {} data blocks ({} compressed, {} bytes uncompressed)",
                p.entries,
                p.deletions,
                p.min_seq,
                p.max_seq,
                p.raw_key_bytes,
                p.raw_value_bytes,
                p.data_blocks,
                p.compressed_blocks,
                p.raw_data_bytes
            )?;
            let k = |ik: &[u8]| match key::parse(ik) {
                Some(pk) => format!("{}@{}", short(pk.user_key, style), pk.seq),
                None => "?".into(),
            };
            writeln!(out, "key range:  {} .. {}", k(&p.smallest), k(&p.largest))?;
        }
    }
    Ok(if damaged { exit::DAMAGED } else { exit::OK })
}
