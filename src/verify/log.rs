//! Verifying log files: the manifest (every edit decodes and applies) and the WAL segments
//! (framing and checksums, batch decoding, the segment chain and seqno continuity).
//!
//! A bad region is judged as recovery judges it (WAL segments go through the very scan
//! recovery runs): in the newest WAL segment, damage that no later record or seal proves
//! durable is a torn tail — a note; anywhere else it is damage. In the manifest, a last
//! record cut short by the end of the file (or followed by zeros) is a torn write — a note;
//! a damaged record anywhere, or damage before an intact record, is damage.
#![deny(clippy::indexing_slicing)]

use std::io::Read;
use std::path::Path;

use super::{CheckedFile, FileKind, Recorder};
use crate::batch::BatchView;
use crate::error::Error;
use crate::manifest::{Edit, ManifestState};
use crate::recovery::MAX_WAL_RECORD;
use crate::wal::format::{MANIFEST_MAGIC, MANIFEST_VERSIONS};
use crate::wal::reader::{BadKind, LogEvent, LogReader, Opened};
use crate::wal::segment;

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
    let mut reader = match LogReader::open(src, MANIFEST_MAGIC, MANIFEST_VERSIONS, MAX_EDIT_BYTES) {
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
            LogEvent::Bad {
                offset,
                kind: BadKind::Damaged,
                reason,
                ..
            } => {
                // A complete record failing its checks may have been synced and acted on.
                rec.damage(
                    path,
                    kind,
                    Some(offset),
                    format!("damaged record: {reason}"),
                );
                usable = false;
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
        // The same scan recovery runs, so damage is judged exactly as the next open would.
        let chain_prev = self.prev;
        let mut follow = |offset: u64, batch: &[u8]| -> crate::Result<()> {
            summary.units += 1;
            match BatchView::new(batch, offset).and_then(|v| v.ops().map(|o| (v, o.len()))) {
                Ok((view, n)) => {
                    summary.entries += n as u64;
                    self.follow(view.first_seq, u64::from(view.count), path, offset, rec);
                }
                Err(e) => rec.damage(path, kind, Some(e.offset), e.reason),
            }
            Ok(())
        };
        let scanned =
            segment::scan_from(src, len, path, number, MAX_WAL_RECORD, false, &mut follow);
        let scan = match scanned {
            Ok(scan) => scan,
            Err(Error::Corruption { offset, reason, .. }) => {
                rec.damage(path, kind, Some(offset), reason);
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
        self.prev = Some(number);
        let Some(prev_number) = scan.prev_number else {
            if len > 0 {
                rec.note(
                    path,
                    kind,
                    Some(0),
                    "header never written (the segment holds nothing)",
                );
            }
            rec.checked(summary, before);
            return;
        };
        if let Some(p) = chain_prev
            && prev_number != p
        {
            rec.damage(
                path,
                kind,
                Some(20),
                format!("segment follows {prev_number}, but the previous live segment is {p}"),
            );
        }
        if !scan.clean()
            && let Some(bad) = &scan.first_bad
        {
            let dropped = scan.file_len.saturating_sub(scan.valid_end);
            if newest && !scan.bad_was_synced {
                rec.note(
                    path,
                    kind,
                    Some(bad.offset),
                    format!(
                        "torn tail of the newest segment ({dropped} bytes: {}); the next open cuts it",
                        bad.reason
                    ),
                );
            } else {
                let why = if scan.bad_was_synced {
                    "; a later record proves these bytes were once durable"
                } else {
                    ""
                };
                rec.damage(path, kind, Some(bad.offset), format!("{}{why}", bad.reason));
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
