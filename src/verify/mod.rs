//! Verification: reads every byte of a store's files, checks every checksum and the
//! table-set invariants, and reports precisely what is damaged. Never modifies anything.
//!
//! [`verify_dir`] checks a closed store directory: `CURRENT`, the manifest (every edit, and
//! the state they add up to), every table the manifest names (footer, every block's
//! checksum, key order, properties, filter, the manifest's entry), the levels (sorted,
//! no overlaps in levels ≥ 1), and every WAL segment recovery would replay (framing,
//! checksums, batch decoding, segment chain, seqno continuity). [`Db::verify`] checks an open
//! store: its live tables and levels, the manifest's records and the WAL written so far.
//!
//! Findings are either *damage* (recovery would refuse the store, or a read would fail) or
//! *notes*: harmless states that the next open resolves on its own, such as a torn tail of
//! the newest WAL segment or a table no manifest names.
//!
//! [`Db::verify`]: crate::Db::verify
#![deny(clippy::indexing_slicing)]

mod log;
mod table;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::file_names;
use crate::fs::{FileSystem, StdFs};
use crate::manifest::{ManifestState, TableMeta};

/// What kind of file a finding or summary concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FileKind {
    /// `CURRENT`, which names the live manifest.
    Current,
    /// A manifest (`MANIFEST-NNNNNN`).
    Manifest,
    /// A WAL segment (`NNNNNN.wal`).
    Wal,
    /// A table (`NNNNNN.sst`).
    Table,
    /// The directory as a whole (the table set, file presence).
    Directory,
    /// Anything else.
    Other,
}

impl FileKind {
    /// A short lower-case name ("manifest", "wal", ...).
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Current => "current",
            FileKind::Manifest => "manifest",
            FileKind::Wal => "wal",
            FileKind::Table => "table",
            FileKind::Directory => "directory",
            FileKind::Other => "other",
        }
    }
}

/// One thing verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The file concerned (the store directory for table-set findings).
    pub file: PathBuf,
    /// Its kind.
    pub kind: FileKind,
    /// Byte offset of the problem in the file, when it has one.
    pub offset: Option<u64>,
    /// What is wrong.
    pub reason: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.offset {
            Some(o) => write!(f, "{} at offset {o}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

/// What was read of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedFile {
    /// The file.
    pub file: PathBuf,
    /// Its kind.
    pub kind: FileKind,
    /// Bytes read.
    pub bytes: u64,
    /// Blocks (tables) or records (logs) checked.
    pub units: u64,
    /// Entries (tables) or writes (WAL segments) seen.
    pub entries: u64,
    /// True when damage was found in it.
    pub damaged: bool,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every file read, in the order read.
    pub files: Vec<CheckedFile>,
    /// Damage: recovery would refuse the store, or reads would fail.
    pub damage: Vec<Finding>,
    /// Harmless findings that the next open resolves (torn tails, leftover files).
    pub notes: Vec<Finding>,
    /// The highest seqno found in the manifest and the WAL.
    pub last_seqno: u64,
    /// Tables in the table set.
    pub tables: usize,
    /// Bytes read in all.
    pub bytes_read: u64,
}

impl VerifyReport {
    /// True when no damage was found.
    pub fn is_healthy(&self) -> bool {
        self.damage.is_empty()
    }
}

/// Progress of a verification: bytes checked so far and bytes to check in all.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// Collects findings while a verification runs.
pub(crate) struct Recorder<'a> {
    pub report: VerifyReport,
    done: u64,
    total: u64,
    progress: Progress<'a>,
}

impl<'a> Recorder<'a> {
    fn new(total: u64, progress: Progress<'a>) -> Recorder<'a> {
        Recorder {
            report: VerifyReport::default(),
            done: 0,
            total,
            progress,
        }
    }

    pub(crate) fn damage(
        &mut self,
        file: &Path,
        kind: FileKind,
        offset: Option<u64>,
        reason: impl Into<String>,
    ) {
        self.report.damage.push(Finding {
            file: file.to_path_buf(),
            kind,
            offset,
            reason: reason.into(),
        });
    }

    pub(crate) fn note(
        &mut self,
        file: &Path,
        kind: FileKind,
        offset: Option<u64>,
        reason: impl Into<String>,
    ) {
        self.report.notes.push(Finding {
            file: file.to_path_buf(),
            kind,
            offset,
            reason: reason.into(),
        });
    }

    /// Records the summary of a checked file; `damage_before` is the damage count before it.
    pub(crate) fn checked(&mut self, mut file: CheckedFile, damage_before: usize) {
        file.damaged = self.report.damage.len() > damage_before;
        self.report.bytes_read += file.bytes;
        self.advance(file.bytes);
        self.report.files.push(file);
    }

    pub(crate) fn advance(&mut self, bytes: u64) {
        self.done += bytes;
        (self.progress)(self.done, self.total.max(self.done));
    }
}

/// Verifies the closed store in `dir` on the real filesystem.
///
/// Returns `Err` only when the directory cannot be verified at all: it cannot be listed, or
/// another process holds the store open ([`Error::Locked`]). Damage is reported in the
/// [`VerifyReport`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// let db = strata::Db::open(dir.path())?;
/// db.put("k", "v")?;
/// db.close()?;
/// let report = strata::verify::verify_dir(dir.path())?;
/// assert!(report.is_healthy(), "{:?}", report.damage);
/// # Ok::<_, strata::Error>(())
/// ```
pub fn verify_dir(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    verify_dir_with(&StdFs, dir.as_ref(), &mut |_, _| {})
}

/// [`verify_dir`] on any filesystem, calling `progress(done, total)` as bytes are checked.
pub fn verify_dir_with(
    fs: &dyn FileSystem,
    dir: &Path,
    progress: Progress<'_>,
) -> Result<VerifyReport> {
    let names = fs.list(dir).map_err(|source| Error::Io {
        path: Some(dir.to_path_buf()),
        source,
    })?;
    // Hold the lock if the store has one, so that no process opens it while it is read. A
    // store without a LOCK file is not given one: verification writes nothing.
    let _lock = if names.iter().any(|n| n == "LOCK") {
        Some(fs.lock(&dir.join("LOCK")).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked(dir.to_path_buf())
            } else {
                Error::Io {
                    path: Some(dir.join("LOCK")),
                    source: e,
                }
            }
        })?)
    } else {
        None
    };
    let total: u64 = names
        .iter()
        .filter(|n| n.as_str() != "LOCK")
        .filter_map(|n| fs.file_size(&dir.join(n)).ok())
        .sum();
    let mut rec = Recorder::new(total, progress);

    // CURRENT and the manifest it names.
    let current = dir.join(file_names::CURRENT);
    let mut state: Option<ManifestState> = None;
    let mut live_manifest = None;
    match read_current(fs, &current) {
        Ok(Some(number)) => {
            live_manifest = Some(number);
            let path = dir.join(file_names::manifest(number));
            state = log::check_manifest(fs, &path, number, &mut rec);
        }
        Ok(None) => {
            if names
                .iter()
                .any(|n| file_names::parse_wal(n).is_some() || file_names::parse_table(n).is_some())
            {
                rec.damage(
                    &current,
                    FileKind::Current,
                    None,
                    "CURRENT is missing but store files are present",
                );
            }
        }
        Err(reason) => rec.damage(&current, FileKind::Current, Some(0), reason),
    }

    // Tables: those the manifest names, with the set's invariants; others are leftovers.
    let named: BTreeSet<u64> = state
        .iter()
        .flat_map(|s| s.levels.iter().flat_map(|l| l.keys().copied()))
        .collect();
    if let Some(s) = &state {
        rec.report.last_seqno = s.last_seq;
        let mut levels: Vec<Vec<TableMeta>> = Vec::with_capacity(s.levels.len());
        for tables in &s.levels {
            let mut level = Vec::new();
            for meta in tables.values() {
                let path = dir.join(file_names::table(meta.number));
                if !names.contains(&file_names::table(meta.number)) {
                    rec.damage(
                        &path,
                        FileKind::Table,
                        None,
                        "table named by the manifest is missing",
                    );
                    continue;
                }
                table::check_table(fs, &path, Some(meta), &mut rec);
                if meta.max_seq > s.last_seq {
                    rec.damage(
                        &path,
                        FileKind::Table,
                        None,
                        format!(
                            "manifest entry holds seqno {} beyond the manifest's last seqno {}",
                            meta.max_seq, s.last_seq
                        ),
                    );
                }
                level.push(meta.clone());
            }
            levels.push(level);
        }
        rec.report.tables = levels.iter().map(Vec::len).sum();
        check_levels(dir, &levels, &mut rec);
    }
    for name in &names {
        let path = dir.join(name);
        if let Some(n) = file_names::parse_table(name) {
            if !named.contains(&n) && state.is_some() {
                rec.note(
                    &path,
                    FileKind::Table,
                    None,
                    "no manifest names this table (left by an interrupted flush or \
                     compaction); the next open removes it",
                );
                rec.advance(fs.file_size(&path).unwrap_or(0));
            } else if state.is_none() {
                // Without a manifest every table is checked on its own.
                table::check_table(fs, &path, None, &mut rec);
            }
        } else if let Some(n) = file_names::parse_manifest(name) {
            if Some(n) != live_manifest {
                rec.note(
                    &path,
                    FileKind::Manifest,
                    None,
                    "not the live manifest; the next open removes it",
                );
                rec.advance(fs.file_size(&path).unwrap_or(0));
            }
        } else if file_names::parse_wal(name).is_none()
            && !matches!(name.as_str(), "LOCK" | "CURRENT" | "CURRENT.tmp")
        {
            rec.note(&path, FileKind::Other, None, "unknown file");
        }
    }

    // WAL segments recovery would replay, oldest first.
    let log_number = state.as_ref().map_or(0, |s| s.log_number);
    let mut segments: Vec<u64> = names
        .iter()
        .filter_map(|n| file_names::parse_wal(n))
        .collect();
    segments.sort_unstable();
    let mut wal = log::WalChain::new(state.as_ref().map(|s| s.last_seq));
    let live: Vec<u64> = segments
        .iter()
        .copied()
        .filter(|&n| n >= log_number)
        .collect();
    for &n in segments.iter().filter(|&&n| n < log_number) {
        let path = dir.join(file_names::wal(n));
        rec.note(
            &path,
            FileKind::Wal,
            None,
            "older than the manifest's log number (already in tables); the next open removes it",
        );
        rec.advance(fs.file_size(&path).unwrap_or(0));
    }
    for (i, &n) in live.iter().enumerate() {
        let path = dir.join(file_names::wal(n));
        let newest = i + 1 == live.len();
        match fs.open_read(&path) {
            Ok(src) => {
                let len = fs.file_size(&path).unwrap_or(0);
                wal.check_segment(src, len, &path, n, newest, &mut rec);
            }
            Err(e) => rec.damage(&path, FileKind::Wal, None, format!("cannot read: {e}")),
        }
    }
    rec.report.last_seqno = rec.report.last_seqno.max(wal.last_seq());
    Ok(rec.report)
}

/// Verifies an open store: the tables and levels readers use now, the live manifest's
/// records and the WAL written so far. Writes continue meanwhile; the active WAL segment
/// is read up to the size it had when verification started.
pub(crate) fn verify_open(db: &crate::Db, progress: Progress<'_>) -> Result<VerifyReport> {
    let fs = Arc::clone(&db.config().fs);
    let dir = db.path().to_path_buf();
    let (state, seq) = db.view();
    let segments = db.wal_segments();
    let tables: Vec<Vec<TableMeta>> = (0..state.tables.num_levels())
        .map(|l| {
            state
                .tables
                .level(l)
                .iter()
                .map(|t| TableMeta::of(t))
                .collect()
        })
        .collect();
    let total = tables.iter().flatten().map(|t| t.size).sum::<u64>()
        + segments.iter().map(|s| s.size).sum::<u64>();
    let mut rec = Recorder::new(total, progress);
    rec.report.last_seqno = seq;
    for t in tables.iter().flatten() {
        let path = dir.join(file_names::table(t.number));
        table::check_table(&*fs, &path, Some(t), &mut rec);
    }
    rec.report.tables = tables.iter().map(Vec::len).sum();
    check_levels(&dir, &tables, &mut rec);
    // The manifest may be replaced while it is read; try again on a vanished file.
    for attempt in 0..3 {
        match read_current(&*fs, &dir.join(file_names::CURRENT)) {
            Ok(Some(number)) => {
                let path = dir.join(file_names::manifest(number));
                if fs.file_size(&path).is_err() && attempt < 2 {
                    continue;
                }
                log::check_manifest(&*fs, &path, number, &mut rec);
                break;
            }
            Ok(None) => {
                rec.damage(
                    &dir.join(file_names::CURRENT),
                    FileKind::Current,
                    None,
                    "CURRENT is missing",
                );
                break;
            }
            Err(reason) => {
                rec.damage(
                    &dir.join(file_names::CURRENT),
                    FileKind::Current,
                    Some(0),
                    reason,
                );
                break;
            }
        }
    }
    // Seqno continuity is checked within what is read, from the first record on.
    let mut wal = log::WalChain::new(None);
    for s in &segments {
        match fs.open_read(&s.path) {
            Ok(src) => wal.check_segment(
                src.take(s.size),
                s.size,
                &s.path,
                s.number,
                s.active,
                &mut rec,
            ),
            // A sealed segment retired by a flush since the listing.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !s.active => wal.reset(),
            Err(e) => rec.damage(&s.path, FileKind::Wal, None, format!("cannot read: {e}")),
        }
    }
    Ok(rec.report)
}

/// The manifest number `CURRENT` names; `None` when there is no `CURRENT`.
fn read_current(fs: &dyn FileSystem, path: &Path) -> Result<Option<u64>, String> {
    let mut src = match fs.open_read(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read: {e}")),
    };
    let mut text = Vec::new();
    src.by_ref()
        .take(256)
        .read_to_end(&mut text)
        .map_err(|e| format!("cannot read: {e}"))?;
    std::str::from_utf8(&text)
        .ok()
        .and_then(|s| s.strip_suffix('\n'))
        .and_then(file_names::parse_manifest)
        .map(Some)
        .ok_or_else(|| "CURRENT does not name a manifest".to_string())
}

/// Levels ≥ 1 must be sorted runs: ordered by smallest key, no two tables overlapping.
fn check_levels(dir: &Path, levels: &[Vec<TableMeta>], rec: &mut Recorder<'_>) {
    for (level, tables) in levels.iter().enumerate().skip(1) {
        let mut sorted: Vec<&TableMeta> = tables.iter().collect();
        sorted.sort_by(|a, b| crate::key::compare(&a.smallest, &b.smallest));
        for pair in sorted.windows(2) {
            let [a, b] = pair else { continue };
            let a_max = crate::key::user_key(&a.largest);
            let b_min = crate::key::user_key(&b.smallest);
            if crate::key::compare_bytes(a_max, b_min).is_ge() {
                rec.damage(
                    dir,
                    FileKind::Directory,
                    None,
                    format!(
                        "tables {} and {} overlap in level {level}",
                        file_names::table(a.number),
                        file_names::table(b.number)
                    ),
                );
            }
        }
        for t in tables {
            if crate::key::compare(&t.smallest, &t.largest).is_gt() {
                rec.damage(
                    &dir.join(file_names::table(t.number)),
                    FileKind::Table,
                    None,
                    format!(
                        "manifest entry in level {level} has its smallest key above its largest"
                    ),
                );
            }
        }
    }
}
