//! Checkpoints: a consistent, openable copy of a live store as of one sequence number,
//! taken while writes continue.
//!
//! A checkpoint reads one published state of the store together with the seqno `S` it holds
//! every write up to (what a reader sees), then builds a new store directory:
//!
//! - every live table, hard-linked where the filesystem allows (tables are immutable) and
//!   copied otherwise; holding the state keeps a table's file alive until it is linked;
//! - the memtables' entries at or below `S` (the writes still only in the WAL), written as
//!   one level-0 table, so no WAL segment has to be cut at `S`;
//! - a new manifest naming those tables, with `last_seqno = S`, and `CURRENT`.
//!
//! The directory is built under a temporary sibling name, synced, and renamed into place
//! (see [`crate::staging`]): a crash leaves no partial checkpoint under the destination
//! name. Opening the checkpoint yields exactly the store as of `S`, history included, with
//! `last_seqno() == S`. Writers are never blocked: the only shared work is reading the
//! published state.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::cursor::Cursor;
use crate::error::{Corrupt, IoContext, Result};
use crate::file_names;
use crate::manifest::{ManifestState, ManifestWriter, TableMeta};
use crate::merge_iter::{MergeCursor, Source};
use crate::sstable::table_builder::TableBuilder;
use crate::sstable::table_reader::Table;
use crate::staging::Staging;
use crate::{Db, SeqNo, key};

/// What [`Db::checkpoint`](crate::Db::checkpoint) wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The checkpoint holds exactly the writes up to this seqno.
    pub seqno: SeqNo,
    /// Its directory.
    pub dir: PathBuf,
    /// Tables in the checkpoint (including the one holding the memtables' entries).
    pub tables: usize,
    /// Tables hard-linked from the live store.
    pub linked: usize,
    /// Tables copied (the filesystem could not link them).
    pub copied: usize,
    /// Memtable entries written to the checkpoint's newest table.
    pub memtable_entries: u64,
    /// Total size of the checkpoint's files.
    pub bytes: u64,
    /// Bytes written (copies, the memtable table and the manifest; links write nothing).
    pub bytes_written: u64,
    /// How long it took.
    pub duration: Duration,
}

/// Writes a checkpoint of `db` into `dest`, which must not exist.
pub(crate) fn create(db: &Db, dest: &Path) -> Result<Checkpoint> {
    let start = Instant::now();
    let fs = Arc::clone(&db.config().fs);
    let staging = Staging::begin(Arc::clone(&fs), dest)?;
    let (state, seq) = db.view();
    let mut out = Checkpoint {
        seqno: SeqNo::new(seq),
        dir: dest.to_path_buf(),
        tables: 0,
        linked: 0,
        copied: 0,
        memtable_entries: 0,
        bytes: 0,
        bytes_written: 0,
        duration: Duration::ZERO,
    };
    let mut manifest = ManifestState::new();
    let mut max_number = 0;
    for (level, tables) in manifest.levels.iter_mut().enumerate() {
        for t in state.tables.level(level) {
            let name = file_names::table(t.number());
            let to = staging.dir().join(&name);
            if fs.link(&db.path().join(&name), &to).at(&to)? {
                out.linked += 1;
            } else {
                out.copied += 1;
                out.bytes_written += t.file_size();
            }
            out.bytes += t.file_size();
            max_number = max_number.max(t.number());
            tables.insert(t.number(), TableMeta::of(t));
        }
    }

    // The writes still only in memtables, up to the checkpoint's seqno.
    let mut children: Vec<Source> = vec![state.mem.cursor().into()];
    for m in &state.imms {
        children.push(m.cursor().into());
    }
    let mut merged = MergeCursor::new(children);
    merged.seek_to_first();
    let number = max_number + 1;
    let path = staging.dir().join(file_names::table(number));
    let options = db.config().table_options(0);
    let mut builder: Option<TableBuilder> = None;
    while merged.valid() {
        let k = merged.key();
        let p = key::parse(k)
            .ok_or_else(|| Corrupt::new(0, "malformed key in a memtable").in_file(&path))?;
        if p.seq <= seq {
            let b = match &mut builder {
                Some(b) => b,
                None => builder.insert(TableBuilder::new(fs.create(&path).at(&path)?, options)),
            };
            b.add(k, &merged.value()).at(&path)?;
            out.memtable_entries += 1;
        }
        merged.next();
    }
    merged.status()?;
    if let Some(b) = builder {
        let (_, size) = b.finish().at(&path)?;
        let table = Table::open(Arc::clone(&fs), &path, number)?;
        if let Some(l0) = manifest.levels.first_mut() {
            l0.insert(number, TableMeta::of(&table));
        }
        out.bytes += size;
        out.bytes_written += size;
    }
    out.tables = manifest.levels.iter().map(|l| l.len()).sum();

    let manifest_number = max_number + 2;
    manifest.last_seq = seq;
    manifest.next_file = manifest_number + 1;
    manifest.log_number = manifest.next_file;
    let writer =
        ManifestWriter::create(Arc::clone(&fs), staging.dir(), manifest_number, &manifest)?;
    out.bytes += writer.size();
    out.bytes_written += writer.size();
    drop(writer);
    staging.publish()?;
    out.duration = start.elapsed();
    Ok(out)
}
