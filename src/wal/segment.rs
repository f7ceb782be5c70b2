//! WAL segments: numbered log files that together hold every write not yet in a table.
//!
//! File name: `NNNNNN.wal` (the number is from the store-wide file-number counter, so
//! segment numbers increase but are not contiguous). Each segment is a log file
//! ([`super::format`]) whose header names the previous segment, so a missing segment is
//! detected. Each record is `synced_to: u64 | batch` (see [`crate::batch`]): `synced_to` is
//! the segment offset known durable when the record was written. On recovery, a damaged
//! region followed by a record whose `synced_to` lies beyond it was once durable, so it is
//! corruption, not a torn tail (the approach Pebble takes).
//!
//! A segment closed cleanly (on roll-over and on close) ends with a *seal*: a record of just
//! the `synced_to` prefix, written after everything before it was synced, and synced itself.
//! Damage anywhere before a seal is therefore always corruption, also in the last record.
//! Seals were added in WAL format version 2; version 1 segments are still read.
//!
//! Segments are preallocated to the segment limit (`fallocate` where the filesystem has it),
//! so an `fdatasync` need not update the file size; the unused tail reads as zeros and is cut
//! in the background after the segment is sealed, or at recovery.
//!
//! Rolling over to a new segment happens in the commit path, so the next segment is made
//! ready ahead of time by a background thread ([`Spare`]): created as `NNNNNN.wal.spare`,
//! header written, space preallocated and synced. A roll then only renames it into place and
//! syncs the directory. Recovery ignores spare files, and opening deletes them.
#![deny(clippy::indexing_slicing)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::format::{FileHeader, WAL_FORMAT_VERSION, WAL_MAGIC, WAL_VERSIONS};
use super::reader::{BadKind, LogEvent, LogReader, Opened};
use super::writer::LogWriter;
use crate::error::{Corrupt, Result};
use crate::file_names;
use crate::fs::FileSystem;

/// Bytes in front of each WAL record's batch.
pub const RECORD_PREFIX_LEN: usize = 8;

/// One WAL segment file, as reported by [`Db::wal_segments`](crate::Db::wal_segments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalSegment {
    /// The segment's number.
    pub number: u64,
    /// Its path.
    pub path: PathBuf,
    /// Bytes written to it (its logical size).
    pub size: u64,
    /// True for the segment currently receiving writes.
    pub active: bool,
}

/// The write side of the WAL: the active segment plus the sealed ones still needed.
#[derive(Debug)]
pub struct Wal {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    writer: LogWriter,
    active: u64,
    /// Where the active segment's records start: an offset still here at close means it
    /// received none.
    active_start: u64,
    sealed: Vec<(u64, u64)>,
    segment_bytes: u64,
    /// The next segment, made ready ahead of time.
    spare: Option<Spare>,
    /// Sealed segments whose preallocated tail is still to be cut: (number, length).
    untrimmed: Vec<(u64, u64)>,
}

/// A segment made ready ahead of use under its spare name: created, header written, space
/// preallocated, all synced. Its header names the segment that was active when it was made,
/// so it can only follow that one.
#[derive(Debug)]
pub struct Spare {
    number: u64,
    prev: u64,
    writer: LogWriter,
}

impl Spare {
    /// Prepares segment `number` to follow segment `prev`. Needs no lock: the file is not a
    /// segment until [`Wal::roll`] renames it.
    pub fn prepare(
        fs: &dyn FileSystem,
        dir: &Path,
        number: u64,
        prev: u64,
        segment_bytes: u64,
    ) -> io::Result<Spare> {
        let path = dir.join(file_names::wal_spare(number));
        let made = fs.create(&path).and_then(|file| {
            let mut writer = LogWriter::new(file, &segment_header(number, prev))?;
            writer.preallocate(segment_bytes)?;
            Ok(writer)
        });
        match made {
            Ok(writer) => Ok(Spare {
                number,
                prev,
                writer,
            }),
            Err(e) => {
                let _ = fs.remove_file(&path);
                Err(e)
            }
        }
    }

    /// Deletes an unused spare.
    pub fn discard(self, fs: &dyn FileSystem, dir: &Path) {
        let path = dir.join(file_names::wal_spare(self.number));
        drop(self.writer);
        if let Err(e) = fs.remove_file(&path) {
            tracing::warn!(path = %path.display(), error = %e, "could not delete an unused WAL segment");
        }
    }
}

fn segment_header(number: u64, prev: u64) -> FileHeader {
    FileHeader {
        magic: WAL_MAGIC,
        version: WAL_FORMAT_VERSION,
        file_number: number,
        prev_number: prev,
    }
}

impl Wal {
    /// Creates segment `number` (whose predecessor is `prev`) and makes it durable.
    /// `sealed` lists older segments still on disk, with their sizes.
    pub fn create(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        number: u64,
        prev: u64,
        segment_bytes: u64,
        sealed: Vec<(u64, u64)>,
    ) -> io::Result<Wal> {
        let writer = Self::new_segment(&*fs, dir, number, prev, segment_bytes)?;
        // Spares left by an earlier run are not segments; they only take space.
        for name in fs.list(dir)? {
            if file_names::is_wal_spare(&name) {
                fs.remove_file(&dir.join(name))?;
            }
        }
        Ok(Wal {
            fs,
            dir: dir.to_path_buf(),
            active_start: writer.offset(),
            writer,
            active: number,
            sealed,
            segment_bytes,
            spare: None,
            untrimmed: Vec::new(),
        })
    }

    fn new_segment(
        fs: &dyn FileSystem,
        dir: &Path,
        number: u64,
        prev: u64,
        segment_bytes: u64,
    ) -> io::Result<LogWriter> {
        let file = fs.create(&dir.join(file_names::wal(number)))?;
        let mut writer = LogWriter::new(file, &segment_header(number, prev))?;
        writer.preallocate(segment_bytes)?;
        fs.sync_dir(dir)?;
        Ok(writer)
    }

    /// Appends one record. `record` starts with [`RECORD_PREFIX_LEN`] reserved bytes, which
    /// this fills with the synced offset. With `sync`, the record is durable on return.
    pub fn append(&mut self, record: &mut [u8], sync: bool) -> io::Result<()> {
        if let Some(prefix) = record.get_mut(..RECORD_PREFIX_LEN) {
            prefix.copy_from_slice(&self.writer.synced_offset().to_le_bytes());
        }
        self.writer.add_record(record)?;
        if sync {
            self.writer.sync()?;
        }
        Ok(())
    }

    /// Makes everything appended durable.
    pub fn sync(&mut self) -> io::Result<()> {
        self.writer.sync()
    }

    /// True once the active segment has reached the size limit.
    pub fn needs_roll(&self) -> bool {
        self.writer.offset() >= self.segment_bytes
    }

    /// The active segment's number while no spare is ready: a spare made now must follow it.
    pub fn wants_spare(&self) -> Option<u64> {
        self.spare.is_none().then_some(self.active)
    }

    /// Keeps `spare` for the next roll if it follows the active segment; otherwise hands it
    /// back to be discarded (a roll overtook it).
    pub fn offer_spare(&mut self, spare: Spare) -> Option<Spare> {
        if self.spare.is_none() && spare.prev == self.active {
            self.spare = Some(spare);
            None
        } else {
            Some(spare)
        }
    }

    /// Seals the active segment and starts the next one: the spare when one is ready (a
    /// rename and a directory sync), otherwise a new segment numbered `fresh()`. Returns the
    /// new segment's number. The sealed segment is synced, if it is not already, but keeps
    /// its preallocated tail until [`Wal::take_untrimmed`] hands it out to be cut.
    pub fn roll(&mut self, fresh: impl FnOnce() -> u64) -> io::Result<u64> {
        // Every record of the old segment is durable before any of the new one can be; the
        // seal says so.
        self.seal()?;
        let (number, writer) = match self.spare.take() {
            Some(spare) => {
                let path = self.dir.join(file_names::wal(spare.number));
                self.fs
                    .rename(&self.dir.join(file_names::wal_spare(spare.number)), &path)?;
                self.fs.sync_dir(&self.dir)?;
                (spare.number, spare.writer)
            }
            None => {
                let number = fresh();
                let writer = Self::new_segment(
                    &*self.fs,
                    &self.dir,
                    number,
                    self.active,
                    self.segment_bytes,
                )?;
                (number, writer)
            }
        };
        self.active_start = writer.offset();
        let old = std::mem::replace(&mut self.writer, writer);
        self.sealed.push((self.active, old.offset()));
        self.untrimmed.push((self.active, old.offset()));
        self.active = number;
        Ok(number)
    }

    /// Sealed segments whose preallocated tail is still to be cut, as (path, length), for
    /// [`trim_segments`].
    pub fn take_untrimmed(&mut self) -> Vec<(PathBuf, u64)> {
        self.untrimmed
            .drain(..)
            .map(|(n, len)| (self.dir.join(file_names::wal(n)), len))
            .collect()
    }

    /// The active segment's number.
    pub fn active_number(&self) -> u64 {
        self.active
    }

    /// True while the active segment has received no record.
    pub fn active_is_empty(&self) -> bool {
        self.writer.offset() == self.active_start
    }

    /// Forgets the sealed segments numbered below `number` and returns their paths, to be
    /// deleted with [`remove_segments`] after the caller lets go of the WAL: commits need it,
    /// and must not wait for an unlink and a directory sync.
    pub fn take_below(&mut self, number: u64) -> Vec<PathBuf> {
        let keep = self.sealed.partition_point(|&(n, _)| n < number);
        self.sealed
            .drain(..keep)
            .map(|(n, _)| self.dir.join(file_names::wal(n)))
            .collect()
    }

    /// Every live segment, oldest first.
    pub fn segments(&self) -> Vec<WalSegment> {
        let mut out: Vec<WalSegment> = self
            .sealed
            .iter()
            .map(|&(number, size)| WalSegment {
                number,
                path: self.dir.join(file_names::wal(number)),
                size,
                active: false,
            })
            .collect();
        out.push(WalSegment {
            number: self.active,
            path: self.dir.join(file_names::wal(self.active)),
            size: self.writer.offset(),
            active: true,
        });
        out
    }

    /// Total logical bytes in live segments.
    pub fn total_bytes(&self) -> u64 {
        self.sealed.iter().map(|&(_, s)| s).sum::<u64>() + self.writer.offset()
    }

    /// Seals, syncs and trims the active segment, trims sealed ones and deletes the spare;
    /// used on close. An active segment that received no record holds nothing and no other
    /// segment names it, so it is deleted instead: a store opened and closed for reads again
    /// and again, with writes waiting in older segments, leaves no trail of empty segments.
    /// Should the deletion not survive a crash, the segment is found again as the newest,
    /// empty and intact.
    pub fn finish(&mut self) -> io::Result<()> {
        if let Some(spare) = self.spare.take() {
            spare.discard(&*self.fs, &self.dir);
        }
        let untrimmed = self.take_untrimmed();
        trim_segments(&*self.fs, &untrimmed)?;
        if self.active_is_empty() {
            return remove_segments(
                &*self.fs,
                &self.dir,
                &[self.dir.join(file_names::wal(self.active))],
            );
        }
        self.seal()?;
        self.writer.finish()
    }

    /// Makes everything written durable, then appends the seal record (whose `synced_to` is
    /// its own offset) and syncs it. The first sync must come first: a seal that reached the
    /// disk before the records it vouches for would make a torn tail look like damaged
    /// durable data.
    fn seal(&mut self) -> io::Result<()> {
        self.writer.sync()?;
        self.writer
            .add_record(&self.writer.synced_offset().to_le_bytes())?;
        self.writer.sync()
    }
}

/// Deletes the segment files `paths` (from [`Wal::take_below`]) and syncs `dir`.
pub fn remove_segments(fs: &dyn FileSystem, dir: &Path, paths: &[PathBuf]) -> io::Result<()> {
    for path in paths {
        match fs.remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if !paths.is_empty() {
        fs.sync_dir(dir)?;
    }
    Ok(())
}

/// Cuts sealed segments (from [`Wal::take_untrimmed`]) to their written length. A segment
/// deleted meanwhile is skipped.
pub fn trim_segments(fs: &dyn FileSystem, segments: &[(PathBuf, u64)]) -> io::Result<()> {
    for (path, len) in segments {
        match fs.truncate(path, *len) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A region of a segment that held no valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRegion {
    /// Where it starts.
    pub offset: u64,
    /// Why it is bad.
    pub reason: String,
    /// True when it is unwritten (zero) space.
    pub zeros: bool,
}

/// What scanning one segment found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// The header's previous-segment number; `None` for a segment that was never made durable.
    pub prev_number: Option<u64>,
    /// End of the last record handed to the callback (the length to truncate to).
    pub valid_end: u64,
    /// The first bad region after which records stopped being applied.
    pub first_bad: Option<BadRegion>,
    /// True when a record after `first_bad` proves the bad bytes were once durable.
    pub bad_was_synced: bool,
    /// Valid records seen after `first_bad` (applied only in salvage mode).
    pub records_after_bad: u64,
    /// True when the segment ends with a seal record (it was closed cleanly).
    pub sealed: bool,
    /// Physical file length.
    pub file_len: u64,
}

impl Scan {
    /// True when everything after `valid_end` is unwritten space or nothing at all.
    pub fn clean(&self) -> bool {
        match &self.first_bad {
            None => true,
            Some(b) => b.zeros && self.records_after_bad == 0,
        }
    }
}

/// Reads segment `number` at `path`, handing each record's batch bytes (and its offset) to
/// `apply`. After the first bad region, records are handed over only if `salvage` is set;
/// otherwise they are only inspected to tell a torn tail from corruption.
pub fn scan(
    fs: &dyn FileSystem,
    path: &Path,
    number: u64,
    max_record: usize,
    salvage: bool,
    apply: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<Scan> {
    let file_len = fs.file_size(path)?;
    let src = fs.open_read(path)?;
    scan_from(src, file_len, path, number, max_record, salvage, apply)
}

/// [`scan`] over an already opened source of `file_len` bytes; `path` names it in errors.
pub fn scan_from(
    src: impl io::Read,
    file_len: u64,
    path: &Path,
    number: u64,
    max_record: usize,
    salvage: bool,
    mut apply: impl FnMut(u64, &[u8]) -> Result<()>,
) -> Result<Scan> {
    let mut out = Scan {
        file_len,
        ..Scan::default()
    };
    let mut reader = match LogReader::open(src, WAL_MAGIC, WAL_VERSIONS, max_record)? {
        Ok(Opened::Reader(r)) => r,
        Ok(Opened::Empty) => {
            out.first_bad = (file_len > 0).then(|| BadRegion {
                offset: 0,
                reason: "segment header never written".into(),
                zeros: true,
            });
            return Ok(out);
        }
        Err(e) => return Err(e.in_file(path)),
    };
    if reader.header().file_number != number {
        return Err(Corrupt::new(
            12,
            format!(
                "segment header names file {}, expected {number}",
                reader.header().file_number
            ),
        )
        .in_file(path));
    }
    out.prev_number = Some(reader.header().prev_number);
    let seals = reader.header().version >= WAL_FORMAT_VERSION;
    out.valid_end = super::format::FILE_HEADER_LEN as u64;
    while let Some(event) = reader.next()? {
        match event {
            LogEvent::Record { offset, end, data } => {
                let Some((prefix, batch)) = data.split_at_checked(RECORD_PREFIX_LEN) else {
                    return Err(
                        Corrupt::new(offset, "WAL record shorter than its prefix").in_file(path)
                    );
                };
                let synced_to = u64::from_le_bytes(prefix.try_into().unwrap_or_default());
                if out.sealed {
                    return Err(
                        Corrupt::new(offset, "WAL record after the segment's seal").in_file(path)
                    );
                }
                if seals && batch.is_empty() {
                    // The seal: everything before `synced_to` (its own offset) was durable.
                    out.sealed = true;
                }
                if let Some(bad) = &out.first_bad {
                    out.records_after_bad += 1;
                    if synced_to > bad.offset {
                        out.bad_was_synced = true;
                    }
                    if !salvage {
                        continue;
                    }
                }
                if !out.sealed {
                    apply(offset + RECORD_PREFIX_LEN as u64, batch)?;
                }
                if out.first_bad.is_none() {
                    out.valid_end = end;
                }
            }
            LogEvent::Bad {
                offset,
                kind,
                reason,
                ..
            } => {
                let zeros = kind == BadKind::Unwritten;
                if out.first_bad.is_none() {
                    out.first_bad = Some(BadRegion {
                        offset,
                        reason,
                        zeros,
                    });
                } else if !zeros && let Some(first) = &mut out.first_bad {
                    first.zeros = false;
                }
            }
        }
    }
    Ok(out)
}
