//! The manifest: a log of edits to the set of live tables.
//!
//! Files: `MANIFEST-NNNNNN` is a log file (framing of [`crate::wal::format`], magic
//! `strataMF`) whose records are [`Edit`]s; `CURRENT` names the live manifest in one line
//! (`MANIFEST-NNNNNN\n`). A new manifest starts with one edit describing the whole state;
//! `CURRENT` is switched by writing `CURRENT.tmp`, syncing it, renaming it over `CURRENT` and
//! syncing the directory. Every edit is synced before the change it describes is used.
//!
//! Edit byte layout (`docs/format.md`, "Manifest"), a sequence of tagged fields:
//!
//! ```text
//! 1 next_file_number: varint
//! 2 last_seqno: varint
//! 3 log_number: varint            (oldest WAL segment still needed)
//! 4 add_table: level: u8 | number | size | entries | min_seq | max_seq  (varints)
//!              | smallest: len-prefixed | largest: len-prefixed
//! 5 remove_table: level: u8 | number: varint
//! ```
//!
//! An unknown tag is corruption. The manifest is not preallocated and each edit is one append
//! followed by a sync, so a crash can only leave the last record cut short by the end of the
//! file (or followed by unwritten zeros): such a torn edit was never acted on and is ignored.
//! Any other damage — a complete record failing its checksum, a damaged length, damage
//! before an intact record — is corruption: that edit may have been synced and acted on.
#![deny(clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::coding::{Reader, put_len_prefixed, put_varint};
use crate::error::{Corrupt, Error, Result};
use crate::file_names;
use crate::fs::FileSystem;
use crate::limits::{MAX_KEY_LEN, NUM_LEVELS};
use crate::seqno::MAX_SEQNO;
use crate::wal::format::{FileHeader, MANIFEST_FORMAT_VERSION, MANIFEST_MAGIC, MANIFEST_VERSIONS};
use crate::wal::reader::{BadKind, LogEvent, LogReader, Opened};
use crate::wal::writer::LogWriter;

/// File numbers stay below this, so the counter can never overflow; larger numbers on disk
/// are corruption.
pub const MAX_FILE_NUMBER: u64 = 1 << 62;
const MAX_EDIT_BYTES: usize = 256 << 20;

/// What the manifest records about one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableMeta {
    /// File number.
    pub number: u64,
    /// File size.
    pub size: u64,
    /// Entries.
    pub entries: u64,
    /// Smallest seqno.
    pub min_seq: u64,
    /// Largest seqno.
    pub max_seq: u64,
    /// Smallest internal key.
    pub smallest: Vec<u8>,
    /// Largest internal key.
    pub largest: Vec<u8>,
}

impl TableMeta {
    /// The manifest's description of an open table.
    pub fn of(t: &crate::sstable::table_reader::Table) -> TableMeta {
        let p = t.props();
        TableMeta {
            number: t.number(),
            size: t.file_size(),
            entries: p.entries,
            min_seq: p.min_seq,
            max_seq: p.max_seq,
            smallest: p.smallest.clone(),
            largest: p.largest.clone(),
        }
    }
}

/// One change to the table set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Edit {
    /// New value of the file-number counter.
    pub next_file: Option<u64>,
    /// New highest seqno stored in tables.
    pub last_seq: Option<u64>,
    /// New oldest WAL segment still needed.
    pub log_number: Option<u64>,
    /// Tables added, with their level.
    pub added: Vec<(u8, TableMeta)>,
    /// Tables removed: (level, number).
    pub removed: Vec<(u8, u64)>,
}

const TAG_NEXT_FILE: u8 = 1;
const TAG_LAST_SEQ: u8 = 2;
const TAG_LOG_NUMBER: u8 = 3;
const TAG_ADD: u8 = 4;
const TAG_REMOVE: u8 = 5;

impl Edit {
    /// Encodes the edit.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        for (tag, value) in [
            (TAG_NEXT_FILE, self.next_file),
            (TAG_LAST_SEQ, self.last_seq),
            (TAG_LOG_NUMBER, self.log_number),
        ] {
            if let Some(x) = value {
                v.push(tag);
                put_varint(&mut v, x);
            }
        }
        for (level, number) in &self.removed {
            v.push(TAG_REMOVE);
            v.push(*level);
            put_varint(&mut v, *number);
        }
        for (level, t) in &self.added {
            v.push(TAG_ADD);
            v.push(*level);
            for x in [t.number, t.size, t.entries, t.min_seq, t.max_seq] {
                put_varint(&mut v, x);
            }
            put_len_prefixed(&mut v, &t.smallest);
            put_len_prefixed(&mut v, &t.largest);
        }
        v
    }

    /// Decodes an edit whose bytes start at file offset `base`.
    pub fn decode(src: &[u8], base: u64) -> Result<Edit, Corrupt> {
        let mut r = Reader::new(src, base);
        let mut e = Edit::default();
        let level = |r: &mut Reader<'_>| -> Result<u8, Corrupt> {
            let l = r.u8("level")?;
            if usize::from(l) >= NUM_LEVELS {
                return Err(r.corrupt(format!("level {l} out of range")));
            }
            Ok(l)
        };
        let file_number = |r: &mut Reader<'_>, what: &str| -> Result<u64, Corrupt> {
            let n = r.varint(what)?;
            if n > MAX_FILE_NUMBER {
                return Err(r.corrupt(format!("{what} {n} out of range")));
            }
            Ok(n)
        };
        let seqno = |r: &mut Reader<'_>, what: &str| -> Result<u64, Corrupt> {
            let s = r.varint(what)?;
            if s > MAX_SEQNO {
                return Err(r.corrupt(format!("{what} {s} out of range")));
            }
            Ok(s)
        };
        while !r.is_empty() {
            match r.u8("edit tag")? {
                TAG_NEXT_FILE => e.next_file = Some(file_number(&mut r, "next file number")?),
                TAG_LAST_SEQ => e.last_seq = Some(seqno(&mut r, "last seqno")?),
                TAG_LOG_NUMBER => e.log_number = Some(file_number(&mut r, "log number")?),
                TAG_REMOVE => {
                    let l = level(&mut r)?;
                    e.removed.push((l, file_number(&mut r, "table number")?));
                }
                TAG_ADD => {
                    let l = level(&mut r)?;
                    let mut t = TableMeta {
                        number: file_number(&mut r, "table number")?,
                        size: r.varint("table size")?,
                        entries: r.varint("entries")?,
                        min_seq: seqno(&mut r, "min seqno")?,
                        max_seq: seqno(&mut r, "max seqno")?,
                        smallest: Vec::new(),
                        largest: Vec::new(),
                    };
                    if t.min_seq > t.max_seq {
                        return Err(r.corrupt("table seqno range is inverted"));
                    }
                    let limit = MAX_KEY_LEN + crate::key::TRAILER_LEN;
                    t.smallest = r.len_prefixed(limit, "smallest key")?.to_vec();
                    t.largest = r.len_prefixed(limit, "largest key")?.to_vec();
                    e.added.push((l, t));
                }
                other => return Err(r.corrupt(format!("unknown manifest tag {other}"))),
            }
        }
        Ok(e)
    }
}

/// The table set and counters, as recorded by the manifest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ManifestState {
    /// Tables per level, keyed by file number.
    pub levels: Vec<BTreeMap<u64, TableMeta>>,
    /// The file-number counter.
    pub next_file: u64,
    /// Highest seqno in tables.
    pub last_seq: u64,
    /// Oldest WAL segment still needed.
    pub log_number: u64,
}

impl ManifestState {
    /// An empty store's state.
    pub fn new() -> ManifestState {
        ManifestState {
            levels: vec![BTreeMap::new(); NUM_LEVELS],
            next_file: 1,
            last_seq: 0,
            log_number: 0,
        }
    }

    /// Applies `edit`, refusing impossible ones (removing an unknown table, adding a
    /// duplicate, counters going backwards).
    pub fn apply(&mut self, edit: &Edit) -> Result<(), String> {
        for &(level, number) in &edit.removed {
            let lvl = self
                .levels
                .get_mut(usize::from(level))
                .ok_or("level out of range")?;
            if lvl.remove(&number).is_none() {
                return Err(format!(
                    "edit removes unknown table {number} from level {level}"
                ));
            }
        }
        for (level, t) in &edit.added {
            if self.levels.iter().any(|l| l.contains_key(&t.number)) {
                return Err(format!("edit adds table {} twice", t.number));
            }
            self.levels
                .get_mut(usize::from(*level))
                .ok_or("level out of range")?
                .insert(t.number, t.clone());
        }
        if let Some(n) = edit.next_file {
            self.next_file = self.next_file.max(n);
        }
        if let Some(s) = edit.last_seq {
            self.last_seq = self.last_seq.max(s);
        }
        if let Some(l) = edit.log_number {
            self.log_number = self.log_number.max(l);
        }
        Ok(())
    }

    /// One edit that recreates this whole state.
    pub fn snapshot_edit(&self) -> Edit {
        let mut e = Edit {
            next_file: Some(self.next_file),
            last_seq: Some(self.last_seq),
            log_number: Some(self.log_number),
            ..Edit::default()
        };
        for (level, tables) in self.levels.iter().enumerate() {
            for t in tables.values() {
                e.added.push((level as u8, t.clone()));
            }
        }
        e
    }
}

/// The live manifest file.
#[derive(Debug)]
pub struct ManifestWriter {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    number: u64,
    writer: LogWriter,
}

impl ManifestWriter {
    /// Writes a new manifest `number` holding `state`, syncs it and points `CURRENT` at it.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        number: u64,
        state: &ManifestState,
    ) -> Result<ManifestWriter> {
        let path = dir.join(file_names::manifest(number));
        let file = fs.create(&path)?;
        let header = FileHeader {
            magic: MANIFEST_MAGIC,
            version: MANIFEST_FORMAT_VERSION,
            file_number: number,
            prev_number: 0,
        };
        let mut writer = LogWriter::new(file, &header)?;
        writer.add_record(&state.snapshot_edit().encode())?;
        writer.sync()?;
        // The manifest's directory entry must be durable before CURRENT names it.
        fs.sync_dir(dir)?;
        set_current(&*fs, dir, number)?;
        Ok(ManifestWriter {
            fs,
            dir: dir.to_path_buf(),
            number,
            writer,
        })
    }

    /// Appends `edit` and makes it durable.
    pub fn log(&mut self, edit: &Edit) -> Result<()> {
        self.writer.add_record(&edit.encode())?;
        self.writer.sync()?;
        Ok(())
    }

    /// This manifest's file number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// Bytes written.
    pub fn size(&self) -> u64 {
        self.writer.offset()
    }

    /// Deletes manifest files other than this one.
    pub fn remove_others(&self, names: &[String]) -> Result<()> {
        for name in names {
            if let Some(n) = file_names::parse_manifest(name)
                && n != self.number
            {
                self.fs.remove_file(&self.dir.join(name))?;
            }
        }
        Ok(())
    }
}

fn set_current(fs: &dyn FileSystem, dir: &Path, number: u64) -> Result<()> {
    let tmp = dir.join(file_names::CURRENT_TMP);
    let mut f = fs.create(&tmp)?;
    f.append(format!("{}\n", file_names::manifest(number)).as_bytes())?;
    f.sync()?;
    drop(f);
    fs.rename(&tmp, &dir.join(file_names::CURRENT))?;
    fs.sync_dir(dir)?;
    Ok(())
}

/// A manifest as recovery found it.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// The state its intact edits describe.
    pub state: ManifestState,
    /// Where a torn last edit starts, and why it is bad; `None` when the file ends cleanly.
    /// A torn edit was never acted on, but the table files it named may be on disk.
    pub torn_tail: Option<(u64, String)>,
}

/// Reads `CURRENT` and replays the manifest it names. `None` when there is no `CURRENT`
/// (a new store).
pub fn recover(fs: &dyn FileSystem, dir: &Path) -> Result<Option<(Replayed, u64)>> {
    let current_path = dir.join(file_names::CURRENT);
    let mut src = match fs.open_read(&current_path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut text = Vec::new();
    src.by_ref().take(256).read_to_end(&mut text)?;
    let name = std::str::from_utf8(&text)
        .ok()
        .and_then(|s| s.strip_suffix('\n'))
        .filter(|s| file_names::parse_manifest(s).is_some())
        .ok_or_else(|| {
            Corrupt::new(0, "CURRENT does not name a manifest").in_file(&current_path)
        })?;
    let number = file_names::parse_manifest(name).unwrap_or_default();
    let path = dir.join(name);
    let state = replay(fs.open_read(&path)?, &path, number)?;
    Ok(Some((state, number)))
}

/// Replays the manifest file `number` read from `src` (`path` names it in errors).
pub fn replay(src: impl Read, path: &Path, number: u64) -> Result<Replayed> {
    let mut reader = match LogReader::open(src, MANIFEST_MAGIC, MANIFEST_VERSIONS, MAX_EDIT_BYTES)?
    {
        Ok(Opened::Reader(r)) => r,
        Ok(Opened::Empty) => return Err(Corrupt::new(0, "manifest is empty").in_file(path)),
        Err(e) => return Err(e.in_file(path)),
    };
    if reader.header().file_number != number {
        return Err(Corrupt::new(12, "manifest header names another file").in_file(path));
    }
    let mut state = ManifestState::new();
    let mut records = 0u64;
    let mut torn: Option<(u64, String)> = None;
    while let Some(event) = reader.next()? {
        match event {
            LogEvent::Record { offset, data, .. } => {
                if let Some((o, reason)) = torn {
                    return Err(Error::Corruption {
                        file: path.to_path_buf(),
                        offset: o,
                        reason: format!("damaged manifest record before intact ones: {reason}"),
                    });
                }
                let edit = Edit::decode(&data, offset).map_err(|e| e.in_file(path))?;
                state
                    .apply(&edit)
                    .map_err(|r| Corrupt::new(offset, r).in_file(path))?;
                records += 1;
            }
            LogEvent::Bad {
                offset,
                kind,
                reason,
                ..
            } => {
                if kind == BadKind::Damaged {
                    return Err(Error::Corruption {
                        file: path.to_path_buf(),
                        offset,
                        reason: format!("damaged manifest record: {reason}"),
                    });
                }
                torn.get_or_insert((offset, reason));
            }
        }
    }
    if records == 0 {
        return Err(Corrupt::new(0, "manifest holds no edit").in_file(path));
    }
    if let Some((offset, reason)) = &torn {
        tracing::warn!(file = %path.display(), offset, %reason, "ignored torn manifest tail");
    }
    Ok(Replayed {
        state,
        torn_tail: torn,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(n: u64) -> TableMeta {
        TableMeta {
            number: n,
            size: 1000 + n,
            entries: 10,
            min_seq: 1,
            max_seq: 9,
            smallest: b"a\x01\0\0\0\0\0\0\0".to_vec(),
            largest: b"z\x01\0\0\0\0\0\0\0".to_vec(),
        }
    }

    #[test]
    fn edits_round_trip() {
        let e = Edit {
            next_file: Some(9),
            last_seq: Some(1234),
            log_number: Some(7),
            added: vec![(0, meta(5)), (3, meta(6))],
            removed: vec![(1, 2)],
        };
        assert_eq!(Edit::decode(&e.encode(), 0).unwrap(), e);
        assert_eq!(Edit::decode(&[], 0).unwrap(), Edit::default());
    }

    #[test]
    fn bad_edits_are_rejected() {
        let e = Edit {
            added: vec![(0, meta(5))],
            ..Edit::default()
        };
        let bytes = e.encode();
        for cut in 1..bytes.len() {
            assert!(Edit::decode(&bytes[..cut], 0).is_err(), "cut {cut}");
        }
        assert!(Edit::decode(&[99], 0).is_err());
        assert!(Edit::decode(&[TAG_REMOVE, NUM_LEVELS as u8, 1], 0).is_err());
    }

    #[test]
    fn counters_that_could_overflow_are_rejected() {
        let decode = |e: Edit| Edit::decode(&e.encode(), 0);
        // Recovery adds to the seqno and file counters; values near u64::MAX would overflow.
        let last_seq = |s| Edit {
            last_seq: Some(s),
            ..Edit::default()
        };
        assert!(decode(last_seq(MAX_SEQNO)).is_ok());
        assert!(decode(last_seq(MAX_SEQNO + 1)).is_err());
        assert!(decode(last_seq(u64::MAX)).is_err());
        let next_file = |n| Edit {
            next_file: Some(n),
            ..Edit::default()
        };
        assert!(decode(next_file(MAX_FILE_NUMBER)).is_ok());
        assert!(decode(next_file(u64::MAX)).is_err());
        let log_number = Edit {
            log_number: Some(u64::MAX),
            ..Edit::default()
        };
        assert!(decode(log_number).is_err());
        let table = |f: fn(&mut TableMeta)| {
            let mut t = meta(5);
            f(&mut t);
            Edit {
                added: vec![(0, t)],
                ..Edit::default()
            }
        };
        assert!(decode(table(|_| {})).is_ok());
        assert!(decode(table(|t| t.number = u64::MAX)).is_err());
        assert!(decode(table(|t| t.max_seq = u64::MAX)).is_err());
        assert!(decode(table(|t| t.min_seq = t.max_seq + 1)).is_err());
    }

    #[test]
    fn state_applies_edits_and_refuses_impossible_ones() {
        let mut s = ManifestState::new();
        let add = Edit {
            added: vec![(0, meta(5))],
            next_file: Some(6),
            ..Edit::default()
        };
        s.apply(&add).unwrap();
        assert!(s.apply(&add).is_err(), "duplicate add");
        let rm = Edit {
            removed: vec![(0, 5)],
            ..Edit::default()
        };
        s.apply(&rm).unwrap();
        assert!(s.apply(&rm).is_err(), "double remove");
        assert_eq!(s.next_file, 6);
        let mut again = ManifestState::new();
        again.apply(&s.snapshot_edit()).unwrap();
        assert_eq!(again, s);
    }
}
