//! Reads framed records back from a log file, reporting damage instead of failing.
//!
//! The reader yields [`LogEvent`]s: whole records with their file offsets, and bad regions
//! (checksum failures, impossible lengths, orphaned fragments, unwritten zeros, a torn end).
//! After a bad chunk it resynchronises at the next offset where a whole, checksummed chunk
//! starts, so the intact records behind any damage are still found: a caller can only tell a
//! torn tail from damaged durable data if it sees what follows the damage. Each bad region
//! says whether it could be an append cut short by a crash ([`BadKind`]); deciding whether
//! it is harmless is the caller's job (see `wal::segment` and `manifest`), because only the
//! caller knows which file is the newest and what was synced.
#![deny(clippy::indexing_slicing)]

use std::io::{self, Read};

use super::format::{
    BLOCK_SIZE, CHUNK_HEADER_LEN, FILE_HEADER_LEN, FIRST, FULL, FileHeader, LAST, MIDDLE, ZERO,
    chunk_crc,
};
use crate::checksum::mask_crc;
use crate::coding::get_u32;
use crate::error::Corrupt;

/// What a bad region looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadKind {
    /// Nothing but zeros: space that was never written (a preallocated tail, or pages a crash
    /// lost).
    Unwritten,
    /// A chunk or record that the end of the file cuts short, with nothing valid after it:
    /// what an append interrupted by a crash leaves.
    Truncated,
    /// Bytes that are there but fail a check: a checksum mismatch, an impossible length or
    /// type, a fragment without its neighbours. Only a preallocated file (the WAL) can hold
    /// a torn write that looks like this.
    Damaged,
}

/// What the reader found next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogEvent {
    /// A complete, checksummed record.
    Record {
        /// File offset of its first chunk header.
        offset: u64,
        /// File offset just past its last chunk.
        end: u64,
        /// The payload.
        data: Vec<u8>,
    },
    /// A region that held no valid record.
    Bad {
        /// File offset where the region starts.
        offset: u64,
        /// Bytes skipped.
        len: u64,
        /// What the region looks like.
        kind: BadKind,
        /// Why it was skipped.
        reason: String,
    },
}

/// Sequential reader over one log file.
pub struct LogReader<R> {
    src: R,
    block: Vec<u8>,
    /// Valid bytes in `block`.
    block_len: usize,
    /// Next unread byte in `block`.
    pos: usize,
    /// File offset of `block[0]`.
    block_start: u64,
    /// True once the source returned a short block.
    eof: bool,
    /// Largest logical record accepted; longer ones are reported bad.
    max_record: usize,
    header: FileHeader,
    /// Partial record being assembled: (offset of its first chunk, bytes).
    partial: Option<(u64, Vec<u8>)>,
    /// Set when a partial record grew past `max_record`; its remaining chunks are skipped.
    oversized_from: Option<u64>,
}

impl<R: Read> std::fmt::Debug for LogReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("block_start", &self.block_start)
            .field("pos", &self.pos)
            .finish_non_exhaustive()
    }
}

/// Outcome of opening a log file.
pub enum Opened<R> {
    /// A valid header; records follow.
    Reader(LogReader<R>),
    /// The file is shorter than a header, or its header is zeros or torn and nothing but
    /// zeros follows: it was created but its header never became durable (writers sync the
    /// header before the first record). Only acceptable for the newest file.
    Empty,
}

impl<R: Read> LogReader<R> {
    /// Reads and checks the file header; `versions` are the format versions accepted.
    pub fn open(
        mut src: R,
        magic: [u8; 8],
        versions: &[u32],
        max_record: usize,
    ) -> io::Result<Result<Opened<R>, Corrupt>> {
        let mut block = vec![0u8; BLOCK_SIZE];
        let n = read_full(&mut src, &mut block)?;
        let Some(head) = block.get(..n.min(FILE_HEADER_LEN)) else {
            return Ok(Ok(Opened::Empty));
        };
        if n < FILE_HEADER_LEN {
            return Ok(Ok(Opened::Empty));
        }
        let header = match FileHeader::decode(head, magic, versions) {
            Ok(h) => h,
            Err(e) => {
                // A header that is zeros or torn is harmless only when no record follows it:
                // records are written after the header was synced, so data behind a bad
                // header means the header was damaged after the fact.
                let zero_head = head.iter().all(|&b| b == 0);
                let rest = block.get(FILE_HEADER_LEN..n).unwrap_or_default();
                let mut unwritten = rest.iter().all(|&b| b == 0);
                let mut more = n == BLOCK_SIZE;
                while unwritten && more {
                    let k = read_full(&mut src, &mut block)?;
                    unwritten = block.get(..k).unwrap_or_default().iter().all(|&b| b == 0);
                    more = k == BLOCK_SIZE;
                }
                return Ok(match (unwritten, zero_head) {
                    (true, _) => Ok(Opened::Empty),
                    (false, true) => Err(Corrupt::new(0, "file header lost before its records")),
                    (false, false) => Err(e),
                });
            }
        };
        Ok(Ok(Opened::Reader(LogReader {
            src,
            block,
            block_len: n,
            pos: FILE_HEADER_LEN,
            block_start: 0,
            eof: n < BLOCK_SIZE,
            max_record,
            header,
            partial: None,
            oversized_from: None,
        })))
    }

    /// The file header.
    pub fn header(&self) -> &FileHeader {
        &self.header
    }

    fn offset(&self) -> u64 {
        self.block_start + self.pos as u64
    }

    /// Moves to the next block (called only before the end of the file).
    fn next_block(&mut self) -> io::Result<()> {
        self.block_start += self.block_len as u64;
        let n = read_full(&mut self.src, &mut self.block)?;
        self.block_len = n;
        self.pos = 0;
        if n < BLOCK_SIZE {
            self.eof = true;
        }
        Ok(())
    }

    /// True when a whole chunk with a known type and a matching checksum starts at `at`.
    fn chunk_at(&self, at: usize) -> bool {
        let Some(header) = self.block.get(at..at + CHUNK_HEADER_LEN) else {
            return false;
        };
        let kind = header.get(6).copied().unwrap_or_default();
        if !(FULL..=LAST).contains(&kind) {
            return false;
        }
        let len = usize::from(u16::from_le_bytes([
            header.get(4).copied().unwrap_or_default(),
            header.get(5).copied().unwrap_or_default(),
        ]));
        let start = at + CHUNK_HEADER_LEN;
        match self.block.get(start..start + len) {
            Some(payload) if start + len <= self.block_len => {
                chunk_crc(kind, payload) == get_u32(header, 0).unwrap_or_default()
            }
            _ => false,
        }
    }

    /// Moves `pos` to the next offset where a valid chunk starts, reading on through later
    /// blocks; returns whether one was found before the end of the file. Clears `all_zero`
    /// if any byte passed over is not zero.
    fn resync(&mut self, all_zero: &mut bool) -> io::Result<bool> {
        loop {
            let mut p = self.pos;
            while p + CHUNK_HEADER_LEN <= self.block_len {
                if self.chunk_at(p) {
                    self.pos = p;
                    return Ok(true);
                }
                let rest = self.block.get(p..self.block_len).unwrap_or_default();
                if rest.first() == Some(&0) {
                    // Inside a run of zeros no chunk can start until its type byte (the
                    // header's last) reaches the first non-zero byte.
                    let run = rest.iter().position(|&b| b != 0).unwrap_or(rest.len());
                    p += run.saturating_sub(CHUNK_HEADER_LEN - 1).max(1);
                    continue;
                }
                *all_zero = false;
                p += 1;
            }
            let tail = self.block.get(p..self.block_len).unwrap_or_default();
            if tail.iter().any(|&b| b != 0) {
                *all_zero = false;
            }
            self.pos = self.block_len;
            if self.eof {
                return Ok(false);
            }
            self.next_block()?;
        }
    }

    /// Reports the region from the chunk at `chunk_offset` (or the partial record before it)
    /// up to the next valid chunk or the end of the file as bad. `cut_short` says the chunk
    /// ran past the end of the file with nothing proving its bytes complete.
    fn bad_region(
        &mut self,
        chunk_offset: u64,
        cut_short: bool,
        reason: impl Into<String>,
    ) -> io::Result<LogEvent> {
        let partial = self.partial.take();
        self.oversized_from = None;
        let start = partial.as_ref().map_or(chunk_offset, |(o, _)| *o);
        self.pos = (chunk_offset - self.block_start) as usize;
        let mut all_zero = self.block.get(self.pos).is_none_or(|&b| b == 0);
        self.pos += 1;
        let found = self.resync(&mut all_zero)?;
        let kind = match (found, all_zero, partial.is_some()) {
            (_, true, false) => BadKind::Unwritten,
            (false, true, true) => BadKind::Truncated,
            (false, false, _) if cut_short => BadKind::Truncated,
            _ => BadKind::Damaged,
        };
        Ok(LogEvent::Bad {
            offset: start,
            len: self.offset() - start,
            kind,
            reason: reason.into(),
        })
    }

    /// The next event, or `None` at the end of the file.
    pub fn next(&mut self) -> io::Result<Option<LogEvent>> {
        loop {
            let left = self.block_len.saturating_sub(self.pos);
            if left < CHUNK_HEADER_LEN {
                if !self.eof {
                    // Zero padding at the end of a full block: move on.
                    self.next_block()?;
                    continue;
                }
                // The end of the file.
                let tail_start = self.offset();
                let tail = self.block.get(self.pos..self.block_len).unwrap_or_default();
                let zeros = tail.iter().all(|&b| b == 0);
                self.pos = self.block_len;
                if let Some((offset, _)) = self.partial.take() {
                    return Ok(Some(LogEvent::Bad {
                        offset,
                        len: self.offset() - offset,
                        kind: BadKind::Truncated,
                        reason: "record truncated at end of file".into(),
                    }));
                }
                if left == 0 {
                    return Ok(None);
                }
                return Ok(Some(LogEvent::Bad {
                    offset: tail_start,
                    len: left as u64,
                    kind: if zeros {
                        BadKind::Unwritten
                    } else {
                        BadKind::Truncated
                    },
                    reason: "chunk header truncated at end of file".into(),
                }));
            }
            let chunk_offset = self.offset();
            let Some(header) = self.block.get(self.pos..self.pos + CHUNK_HEADER_LEN) else {
                return self
                    .bad_region(chunk_offset, false, "chunk header out of range")
                    .map(Some);
            };
            let stored_crc = get_u32(header, 0).unwrap_or_default();
            let len = usize::from(u16::from_le_bytes([
                header.get(4).copied().unwrap_or_default(),
                header.get(5).copied().unwrap_or_default(),
            ]));
            let kind = header.get(6).copied().unwrap_or_default();
            if kind == ZERO && len == 0 && stored_crc == 0 {
                return self
                    .bad_region(chunk_offset, false, "unwritten (zero) space")
                    .map(Some);
            }
            let data_start = self.pos + CHUNK_HEADER_LEN;
            let Some(payload) = self
                .block
                .get(data_start..data_start + len)
                .filter(|_| data_start + len <= self.block_len)
            else {
                let present = self
                    .block
                    .get(data_start..self.block_len)
                    .unwrap_or_default();
                let event = if !self.eof {
                    self.bad_region(chunk_offset, false, "chunk length runs past its block")
                } else if prefix_matches(kind, present, stored_crc) {
                    // The bytes are all there, under a damaged length: not a cut-short append.
                    self.bad_region(chunk_offset, false, "chunk length damaged")
                } else {
                    self.bad_region(chunk_offset, true, "chunk truncated at end of file")
                };
                return event.map(Some);
            };
            if chunk_crc(kind, payload) != stored_crc {
                return self
                    .bad_region(chunk_offset, false, "chunk checksum mismatch")
                    .map(Some);
            }
            self.pos = data_start + len;
            let end = self.offset();
            match kind {
                FULL => {
                    let data = payload.to_vec();
                    self.oversized_from = None;
                    if let Some((o, partial)) = self.partial.take() {
                        // Hand back the orphan first; the FULL record comes on the next call.
                        self.pos = (chunk_offset - self.block_start) as usize;
                        return Ok(Some(LogEvent::Bad {
                            offset: o,
                            len: partial.len() as u64,
                            kind: BadKind::Damaged,
                            reason: "record start without an end".into(),
                        }));
                    }
                    if data.len() > self.max_record {
                        return Ok(Some(LogEvent::Bad {
                            offset: chunk_offset,
                            len: end - chunk_offset,
                            kind: BadKind::Damaged,
                            reason: "record exceeds the size limit".into(),
                        }));
                    }
                    return Ok(Some(LogEvent::Record {
                        offset: chunk_offset,
                        end,
                        data,
                    }));
                }
                FIRST => {
                    self.oversized_from = None;
                    let previous = self.partial.replace((chunk_offset, payload.to_vec()));
                    if let Some((o, partial)) = previous {
                        return Ok(Some(LogEvent::Bad {
                            offset: o,
                            len: partial.len() as u64,
                            kind: BadKind::Damaged,
                            reason: "record start without an end".into(),
                        }));
                    }
                }
                MIDDLE | LAST => {
                    if let Some(start) = self.oversized_from {
                        if kind == LAST {
                            self.oversized_from = None;
                            return Ok(Some(LogEvent::Bad {
                                offset: start,
                                len: end - start,
                                kind: BadKind::Damaged,
                                reason: "record exceeds the size limit".into(),
                            }));
                        }
                        continue;
                    }
                    let Some((start, mut data)) = self.partial.take() else {
                        return Ok(Some(LogEvent::Bad {
                            offset: chunk_offset,
                            len: end - chunk_offset,
                            kind: BadKind::Damaged,
                            reason: "record continuation without a start".into(),
                        }));
                    };
                    if data.len() + payload.len() > self.max_record {
                        self.oversized_from = Some(start);
                        if kind == LAST {
                            self.oversized_from = None;
                            return Ok(Some(LogEvent::Bad {
                                offset: start,
                                len: end - start,
                                kind: BadKind::Damaged,
                                reason: "record exceeds the size limit".into(),
                            }));
                        }
                        continue;
                    }
                    data.extend_from_slice(payload);
                    if kind == LAST {
                        return Ok(Some(LogEvent::Record {
                            offset: start,
                            end,
                            data,
                        }));
                    }
                    self.partial = Some((start, data));
                }
                _ => {
                    return self
                        .bad_region(chunk_offset, false, format!("unknown chunk type {kind}"))
                        .map(Some);
                }
            }
        }
    }
}

/// True when some prefix of `bytes` carries the checksum `stored`: a chunk whose length
/// field was damaged, not one the end of the file cut short.
fn prefix_matches(kind: u8, bytes: &[u8], stored: u32) -> bool {
    let mut h = crc32fast::Hasher::new();
    h.update(&[kind]);
    for chunk in std::iter::once(&[][..]).chain(bytes.chunks(1)) {
        h.update(chunk);
        if mask_crc(h.clone().finalize()) == stored {
            return true;
        }
    }
    false
}

/// Reads until `buf` is full or the source ends; returns the bytes read.
fn read_full<R: Read>(src: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        let Some(rest) = buf.get_mut(n..) else { break };
        match src.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::super::format::{FileHeader, WAL_FORMAT_VERSION, WAL_MAGIC, WAL_VERSIONS};
    use super::super::writer::LogWriter;
    use super::*;
    use crate::fs::WritableFile;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Clone, Default)]
    struct MemFile(Arc<Mutex<Vec<u8>>>);

    impl WritableFile for MemFile {
        fn append(&mut self, data: &[u8]) -> io::Result<()> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(())
        }
        fn sync(&mut self) -> io::Result<()> {
            Ok(())
        }
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.0.lock().unwrap().truncate(len as usize);
            Ok(())
        }
    }

    fn write_log(records: &[Vec<u8>]) -> (Vec<u8>, Vec<(u64, u64)>) {
        let file = MemFile::default();
        let header = FileHeader {
            magic: WAL_MAGIC,
            version: WAL_FORMAT_VERSION,
            file_number: 1,
            prev_number: 0,
        };
        let mut w = LogWriter::new(Box::new(file.clone()), &header).unwrap();
        let mut spans = Vec::new();
        for r in records {
            let start = w.offset();
            w.add_record(r).unwrap();
            spans.push((start, w.offset()));
        }
        let bytes = file.0.lock().unwrap().clone();
        (bytes, spans)
    }

    fn read_all(bytes: &[u8]) -> Vec<LogEvent> {
        let Opened::Reader(mut r) = LogReader::open(bytes, WAL_MAGIC, WAL_VERSIONS, 1 << 24)
            .unwrap()
            .unwrap()
        else {
            panic!("expected a reader");
        };
        let mut out = Vec::new();
        while let Some(e) = r.next().unwrap() {
            out.push(e);
        }
        out
    }

    fn records(events: &[LogEvent]) -> Vec<Vec<u8>> {
        events
            .iter()
            .filter_map(|e| match e {
                LogEvent::Record { data, .. } => Some(data.clone()),
                LogEvent::Bad { .. } => None,
            })
            .collect()
    }

    #[test]
    fn records_of_every_size_round_trip() {
        let sizes = [
            0usize,
            1,
            100,
            BLOCK_SIZE - 39,
            BLOCK_SIZE - 7,
            BLOCK_SIZE,
            3 * BLOCK_SIZE + 5,
            10,
        ];
        let recs: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let (bytes, spans) = write_log(&recs);
        let events = read_all(&bytes);
        assert_eq!(records(&events), recs);
        for (e, span) in events.iter().zip(&spans) {
            let LogEvent::Record { offset, end, .. } = e else {
                panic!()
            };
            assert_eq!((*offset, *end), *span);
        }
    }

    #[test]
    fn block_tail_shorter_than_a_header_is_padded() {
        // Leave exactly 6 bytes in block 0, forcing padding.
        let first = vec![7u8; BLOCK_SIZE - FILE_HEADER_LEN - CHUNK_HEADER_LEN - 6];
        let recs = vec![first, b"next".to_vec()];
        let (bytes, spans) = write_log(&recs);
        assert_eq!(spans[1].0, (BLOCK_SIZE - 6) as u64);
        assert_eq!(records(&read_all(&bytes)), recs);
    }

    #[test]
    fn torn_tail_is_reported_after_the_good_records() {
        let recs: Vec<Vec<u8>> = (0..5).map(|i| vec![i as u8; 5000]).collect();
        let (bytes, spans) = write_log(&recs);
        let cut = spans[4].0 as usize + 100;
        let events = read_all(&bytes[..cut]);
        assert_eq!(records(&events), recs[..4].to_vec());
        let LogEvent::Bad { offset, .. } = events.last().unwrap() else {
            panic!()
        };
        assert_eq!(*offset, spans[4].0);
    }

    #[test]
    fn a_flipped_byte_loses_only_its_record() {
        let recs: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 3000]).collect();
        let (mut bytes, spans) = write_log(&recs);
        let victim = spans[3].0 as usize + 10;
        bytes[victim] ^= 0xff;
        let events = read_all(&bytes);
        let got = records(&events);
        assert!(!got.contains(&recs[3]));
        // Every other record survives, including its neighbours in the same block.
        assert_eq!(got.len(), 39);
        assert!(got.contains(&recs[4]) && got.contains(&recs[39]));
        assert!(events.iter().any(|e| matches!(
            e,
            LogEvent::Bad {
                kind: BadKind::Damaged,
                ..
            }
        )));
    }

    #[test]
    fn a_damaged_length_does_not_hide_the_records_behind_it() {
        // Many small records in one block: a damaged length must not cost the rest of the
        // block, or the records proving the damage was once durable would never be seen.
        let recs: Vec<Vec<u8>> = (0..40).map(|i| vec![i as u8; 30]).collect();
        let (bytes, spans) = write_log(&recs);
        for bit in 0..16 {
            let mut bad = bytes.clone();
            bad[spans[3].0 as usize + 4 + bit / 8] ^= 1 << (bit % 8);
            let events = read_all(&bad);
            let mut expected = recs.clone();
            expected.remove(3);
            assert_eq!(records(&events), expected, "length bit {bit}");
            assert!(events.iter().any(|e| matches!(
                e,
                LogEvent::Bad { offset, kind: BadKind::Damaged, .. } if *offset == spans[3].0
            )));
        }
    }

    #[test]
    fn a_hole_of_zeros_inside_a_block_is_unwritten_and_records_after_it_are_found() {
        let recs: Vec<Vec<u8>> = (0..10).map(|i| vec![i as u8 + 1; 100]).collect();
        let (mut bytes, spans) = write_log(&recs);
        let (from, to) = (spans[2].0 as usize, spans[5].0 as usize);
        bytes[from..to].fill(0);
        let events = read_all(&bytes);
        assert_eq!(records(&events).len(), 7);
        assert!(events.contains(&LogEvent::Bad {
            offset: from as u64,
            len: (to - from) as u64,
            kind: BadKind::Unwritten,
            reason: "unwritten (zero) space".into(),
        }));
    }

    #[test]
    fn the_end_of_the_file_tells_a_cut_short_chunk_from_a_damaged_length() {
        let recs: Vec<Vec<u8>> = (0..4).map(|i| vec![i as u8 + 1; 200]).collect();
        let (bytes, spans) = write_log(&recs);
        let last = spans[3].0 as usize;
        // Cut short by the end of the file: what a crash during the append leaves.
        for cut in [last + 3, last + 7, last + 100, bytes.len() - 1] {
            let events = read_all(&bytes[..cut]);
            assert_eq!(records(&events).len(), 3);
            assert!(
                matches!(
                    events.last(),
                    Some(LogEvent::Bad {
                        kind: BadKind::Truncated,
                        ..
                    })
                ),
                "cut at {cut}: {:?}",
                events.last()
            );
        }
        // Every byte there, but the length claims more: damage, not a torn append.
        let mut longer = bytes.clone();
        longer[last + 5] ^= 0x01;
        let events = read_all(&longer);
        assert_eq!(records(&events).len(), 3);
        assert!(matches!(
            events.last(),
            Some(LogEvent::Bad {
                kind: BadKind::Damaged,
                ..
            })
        ));
    }

    #[test]
    fn zeros_after_the_data_read_as_unwritten_space() {
        let recs = vec![b"a".to_vec(), b"b".to_vec()];
        let (mut bytes, _) = write_log(&recs);
        bytes.resize(BLOCK_SIZE * 2 + 100, 0);
        let events = read_all(&bytes);
        assert_eq!(records(&events), recs);
        assert!(events.iter().skip(2).all(|e| matches!(
            e,
            LogEvent::Bad {
                kind: BadKind::Unwritten,
                ..
            }
        )));
    }

    #[test]
    fn oversized_records_are_refused_without_allocating_them() {
        let recs = vec![vec![1u8; 100_000], b"small".to_vec()];
        let (bytes, _) = write_log(&recs);
        let Opened::Reader(mut r) = LogReader::open(&bytes[..], WAL_MAGIC, WAL_VERSIONS, 50_000)
            .unwrap()
            .unwrap()
        else {
            panic!()
        };
        let mut events = Vec::new();
        while let Some(e) = r.next().unwrap() {
            events.push(e);
        }
        assert!(matches!(events[0], LogEvent::Bad { .. }));
        assert_eq!(records(&events), vec![b"small".to_vec()]);
    }

    #[test]
    fn short_or_zero_header_means_empty() {
        assert!(matches!(
            LogReader::open(&[0u8; 10][..], WAL_MAGIC, WAL_VERSIONS, 10)
                .unwrap()
                .unwrap(),
            Opened::Empty
        ));
        assert!(matches!(
            LogReader::open(&[0u8; 64][..], WAL_MAGIC, WAL_VERSIONS, 10)
                .unwrap()
                .unwrap(),
            Opened::Empty
        ));
        let mut bad = [0u8; 64];
        bad[3] = 1;
        bad[40] = 1;
        assert!(
            LogReader::open(&bad[..], WAL_MAGIC, WAL_VERSIONS, 10)
                .unwrap()
                .is_err()
        );
    }

    fn opens_empty(bytes: &[u8]) -> bool {
        matches!(
            LogReader::open(bytes, WAL_MAGIC, WAL_VERSIONS, 1 << 20).unwrap(),
            Ok(Opened::Empty)
        )
    }

    #[test]
    fn a_torn_header_with_nothing_behind_it_means_empty() {
        let (full, _) = write_log(&[b"record".to_vec()]);
        // A pre-sized file whose header write was torn: a header prefix, then zeros.
        for keep in 1..FILE_HEADER_LEN {
            let mut torn = full[..keep].to_vec();
            torn.resize(3 * BLOCK_SIZE, 0);
            assert!(opens_empty(&torn), "header torn after {keep} bytes");
        }
        // Records behind a damaged or lost header: the header was damaged later.
        let mut damaged = full.clone();
        damaged[5] ^= 1;
        assert!(!opens_empty(&damaged));
        let mut lost = full.clone();
        lost[..FILE_HEADER_LEN].fill(0);
        assert!(!opens_empty(&lost));
        // ... also when the data starts only in a later block.
        let mut far = vec![0u8; 2 * BLOCK_SIZE + 10];
        far[2 * BLOCK_SIZE + 3] = 9;
        assert!(!opens_empty(&far));
        far[2 * BLOCK_SIZE + 3] = 0;
        assert!(opens_empty(&far));
    }
}
