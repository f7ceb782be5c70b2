//! Verifying log files: the manifest (every edit decodes and applies) and the WAL segments
//! (framing and checksums, batch decoding, the segment chain and seqno continuity).
//!
//! A bad region is judged as recovery judges it: in the newest WAL segment, damage that no
//! later record proves durable (through its `synced_to`) is a torn tail — a note; anywhere
//! else it is damage. A damaged last manifest record is a torn write — a note; damage
//! before an intact record is damage.
#![deny(clippy::indexing_slicing)]

use std::io::Read;
use std::path::Path;

use super::{CheckedFile, FileKind, Recorder};
use crate::batch::BatchView;
use crate::manifest::{Edit, ManifestState};
use crate::recovery::MAX_WAL_RECORD;
use crate::wal::format::{MANIFEST_MAGIC, WAL_MAGIC};
use crate::wal::reader::{LogEvent, LogReader, Opened};
use crate::wal::segment::RECORD_PREFIX_LEN;

/// Largest manifest record read (as recovery).
const MAX_EDIT_BYTES: usize = 256 << 20;

/// Verifies manifest `number` at `path`; returns the state its edits add up to, if they do.
pub(crate) fn check_manifest(
    fs: &dyn crate::fs::FileSystem,
    path: &Path,
    number: u64,
    rec: &mut Recorder<'_>,
) -> Option<ManifestState> {
    let before = rec.report.damage.len();
    let mut summary = CheckedFile {
        file: path.to_path_buf(),
        kind: FileKind::Manifest,
        bytes: fs.file_size(path).unwrap_or(0),
        units: 0,
        entries: 0,
        damaged: false,
    };
    let kind = FileKind::Manifest;
    let src = match fs.open_read(path) {
        Ok(s) => s,
        Err(e) => {
            rec.damage(
                path,
                kind,
                None,
                format!("cannot read the live manifest: {e}"),
            );
            rec.checked(summary, before);
            return None;
        }
    };
    let mut reader = match LogReader::open(src, MANIFEST_MAGIC, MAX_EDIT_BYTES) {
        Ok(Ok(Opened::Reader(r))) => r,
        Ok(Ok(Opened::Empty)) => {
            rec.damage(path, kind, Some(0), "manifest is empty");
            rec.checked(summary, before);
            return None;
        }
        Ok(Err(e)) => {
            rec.damage(path, kind, Some(e.offset), e.reason);
            rec.checked(summary, before);
            return None;
        }
        Err(e) => {
            rec.damage(path, kind, None, format!("read failed: {e}"));
            rec.checked(summary, before);
            return None;
        }
    };
    if reader.header().file_number != number {
        rec.damage(
            path,
            kind,
            Some(12),
            format!(
                "header names manifest {}, the file name {number}",
                reader.header().file_number
            ),
        );
    }
    let mut state = ManifestState::new();
    let mut usable = true;
    let mut pending_bad: Option<(u64, String)> = None;
    loop {
        let event = match reader.next() {
            Ok(Some(e)) => e,
            Ok(None) => break,
            Err(e) => {
                rec.damage(path, kind, None, format!("read failed: {e}"));
                usable = false;
                break;
            }
        };
        match event {
            LogEvent::Record { offset, data, .. } => {
                if let Some((o, reason)) = pending_bad.take() {
                    rec.damage(
                        path,
                        kind,
                        Some(o),
                        format!("damaged record before intact ones: {reason}"),
                    );
                    usable = false;
                }
                summary.units += 1;
                match Edit::decode(&data, offset) {
                    Ok(edit) => {
                        summary.entries += (edit.added.len() + edit.removed.len()) as u64;
                        if let Err(reason) = state.apply(&edit) {
                            rec.damage(path, kind, Some(offset), reason);
                            usable = false;
                        }
                    }
                    Err(e) => {
                        rec.damage(path, kind, Some(e.offset), e.reason);
                        usable = false;
                    }
                }
            }
            LogEvent::Bad { offset, reason, .. } => {
                pending_bad.get_or_insert((offset, reason));
            }
        }
    }
    if let Some((o, reason)) = pending_bad {
        rec.note(
            path,
            kind,
            Some(o),
            format!("torn last record, ignored at open ({reason})"),
        );
    }
    if summary.units == 0 {
        rec.damage(path, kind, Some(0), "manifest holds no edit");
        usable = false;
    }
    rec.checked(summary, before);
    usable.then_some(state)
}

/// Checks WAL segments in order, carrying the segment chain and the seqno across them.
pub(crate) struct WalChain {
    /// Highest seqno seen; `None` until known.
    last_seq: Option<u64>,
    /// The previous segment's number.
    prev: Option<u64>,
}

/// A region of a segment that held no valid record.
struct Bad {
    offset: u64,
    len: u64,
    zeros: bool,
    reason: String,
    /// Valid records after it.
    records_after: u64,
    /// The highest `synced_to` of those records.
    synced_after: u64,
}

impl WalChain {
    /// A chain whose writes continue after `last_seq` (the manifest's; `None` = unknown).
    pub(crate) fn new(last_seq: Option<u64>) -> WalChain {
        WalChain {
            last_seq,
            prev: None,
        }
    }

    /// The highest seqno seen.
    pub(crate) fn last_seq(&self) -> u64 {
        self.last_seq.unwrap_or(0)
    }

    /// Forgets the chain (a segment in between could not be read).
    pub(crate) fn reset(&mut self) {
        self.prev = None;
        self.last_seq = None;
    }

    /// Verifies segment `number` read from `src` (`len` bytes).
    pub(crate) fn check_segment(
        &mut self,
        src: impl Read,
        len: u64,
        path: &Path,
        number: u64,
        newest: bool,
        rec: &mut Recorder<'_>,
    ) {
        let before = rec.report.damage.len();
        let kind = FileKind::Wal;
        let mut summary = CheckedFile {
            file: path.to_path_buf(),
            kind,
            bytes: len,
            units: 0,
            entries: 0,
            damaged: false,
        };
        let mut reader = match LogReader::open(src, WAL_MAGIC, MAX_WAL_RECORD) {
            Ok(Ok(Opened::Reader(r))) => r,
            Ok(Ok(Opened::Empty)) => {
                if len > 0 {
                    rec.note(
                        path,
                        kind,
                        Some(0),
                        "header never written (the segment holds nothing)",
                    );
                }
                rec.checked(summary, before);
                self.prev = Some(number);
                return;
            }
            Ok(Err(e)) => {
                rec.damage(path, kind, Some(e.offset), e.reason);
                rec.checked(summary, before);
                self.reset();
                return;
            }
            Err(e) => {
                rec.damage(path, kind, None, format!("read failed: {e}"));
                rec.checked(summary, before);
                self.reset();
                return;
            }
        };
        let header = *reader.header();
        if header.file_number != number {
            rec.damage(
                path,
                kind,
                Some(12),
                format!(
                    "header names segment {}, the file name {number}",
                    header.file_number
                ),
            );
        }
        if let Some(p) = self.prev
            && header.prev_number != p
        {
            rec.damage(
                path,
                kind,
                Some(20),
                format!(
                    "segment follows {}, but the previous live segment is {p}",
                    header.prev_number
                ),
            );
        }
        self.prev = Some(number);
        let mut bad: Vec<Bad> = Vec::new();
        loop {
            let event = match reader.next() {
                Ok(Some(e)) => e,
                Ok(None) => break,
                Err(e) => {
                    rec.damage(path, kind, None, format!("read failed: {e}"));
                    break;
                }
            };
            match event {
                LogEvent::Record { offset, data, .. } => {
                    summary.units += 1;
                    let Some((prefix, batch)) = data.split_at_checked(RECORD_PREFIX_LEN) else {
                        rec.damage(path, kind, Some(offset), "record shorter than its prefix");
                        continue;
                    };
                    let synced_to = u64::from_le_bytes(prefix.try_into().unwrap_or_default());
                    for b in &mut bad {
                        b.records_after += 1;
                        b.synced_after = b.synced_after.max(synced_to);
                    }
                    let base = offset + RECORD_PREFIX_LEN as u64;
                    match BatchView::new(batch, base).and_then(|v| v.ops().map(|o| (v, o.len()))) {
                        Ok((view, n)) => {
                            summary.entries += n as u64;
                            self.follow(view.first_seq, u64::from(view.count), path, base, rec);
                        }
                        Err(e) => rec.damage(path, kind, Some(e.offset), e.reason),
                    }
                }
                LogEvent::Bad {
                    offset,
                    len,
                    zeros,
                    reason,
                } => {
                    bad.push(Bad {
                        offset,
                        len,
                        zeros,
                        reason,
                        records_after: 0,
                        synced_after: 0,
                    });
                }
            }
        }
        // Unwritten space after the last record is the normal end of a pre-sized segment.
        let clean = bad.iter().all(|b| b.zeros) && bad.first().is_none_or(|b| b.records_after == 0);
        if !clean {
            for b in &bad {
                if b.zeros && b.records_after == 0 {
                    continue;
                }
                let proven = b.synced_after > b.offset;
                if newest && !proven {
                    rec.note(
                        path,
                        kind,
                        Some(b.offset),
                        format!(
                            "torn tail of the newest segment ({} bytes: {}); the next open cuts it",
                            b.len, b.reason
                        ),
                    );
                } else {
                    let why = if proven {
                        "; a later record proves these bytes were once durable"
                    } else {
                        ""
                    };
                    rec.damage(path, kind, Some(b.offset), format!("{}{why}", b.reason));
                }
            }
        }
        rec.checked(summary, before);
    }

    /// Checks that a batch of `count` writes from `first` continues the seqno sequence.
    fn follow(&mut self, first: u64, count: u64, path: &Path, offset: u64, rec: &mut Recorder<'_>) {
        if count == 0 {
            return;
        }
        let last = first + count - 1;
        match self.last_seq {
            Some(l) if last <= l => {} // already in a table (or replayed before)
            Some(l) if first > l + 1 => {
                rec.damage(
                    path,
                    FileKind::Wal,
                    Some(offset),
                    format!("writes {} to {} are missing", l + 1, first - 1),
                );
                self.last_seq = Some(last);
            }
            _ => self.last_seq = Some(last),
        }
    }
}
