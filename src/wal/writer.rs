//! Writes framed records to a log file (a WAL segment or a manifest).
//!
//! Owns the block framing described in [`super::format`]: it splits each logical record into
//! chunks, pads block tails and hands each record to the file in one `append` call.
#![deny(clippy::indexing_slicing)]

use std::io;

use super::format::{
    BLOCK_SIZE, CHUNK_HEADER_LEN, FILE_HEADER_LEN, FIRST, FULL, FileHeader, LAST, MIDDLE, chunk_crc,
};
use crate::fs::WritableFile;

/// Appends framed records to one log file.
#[derive(Debug)]
pub struct LogWriter {
    file: Box<dyn WritableFile>,
    /// Offset inside the current block.
    block_offset: usize,
    /// Bytes handed to the file so far (header included).
    offset: u64,
    /// Bytes known durable.
    synced: u64,
    scratch: Vec<u8>,
}

impl LogWriter {
    /// Writes `header` into a freshly created, empty `file` and returns the writer.
    pub fn new(mut file: Box<dyn WritableFile>, header: &FileHeader) -> io::Result<LogWriter> {
        file.append(&header.encode())?;
        Ok(LogWriter {
            file,
            block_offset: FILE_HEADER_LEN,
            offset: FILE_HEADER_LEN as u64,
            synced: 0,
            scratch: Vec::new(),
        })
    }

    /// Bytes written so far, header included: the logical length of the file.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes known to be durable.
    pub fn synced_offset(&self) -> u64 {
        self.synced
    }

    /// Frames `payload` as one logical record and appends it.
    pub fn add_record(&mut self, payload: &[u8]) -> io::Result<()> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let mut left = payload;
        let mut begin = true;
        let mut block_offset = self.block_offset;
        loop {
            let leftover = BLOCK_SIZE - block_offset;
            if leftover < CHUNK_HEADER_LEN {
                out.resize(out.len() + leftover, 0);
                block_offset = 0;
            }
            let avail = BLOCK_SIZE - block_offset - CHUNK_HEADER_LEN;
            let n = left.len().min(avail);
            let (frag, rest) = left.split_at(n);
            let end = rest.is_empty();
            let kind = match (begin, end) {
                (true, true) => FULL,
                (true, false) => FIRST,
                (false, true) => LAST,
                (false, false) => MIDDLE,
            };
            out.extend_from_slice(&chunk_crc(kind, frag).to_le_bytes());
            // `n` is below BLOCK_SIZE (32 KiB), so it fits the u16 length field.
            out.extend_from_slice(&(n as u16).to_le_bytes());
            out.push(kind);
            out.extend_from_slice(frag);
            block_offset += CHUNK_HEADER_LEN + n;
            left = rest;
            begin = false;
            if end {
                break;
            }
        }
        let result = self.file.append(&out);
        if result.is_ok() {
            self.block_offset = block_offset;
            self.offset += out.len() as u64;
        }
        self.scratch = out;
        result
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.synced < self.offset {
            self.file.sync()?;
            self.synced = self.offset;
        }
        Ok(())
    }

    /// Extends the file with zeros to `len` bytes so that later syncs need not change the
    /// file size; readers treat the zeros as unwritten space.
    pub fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.file.preallocate(len)?;
        self.file.sync()
    }

    /// Cuts any preallocated space, leaving exactly the written bytes, and syncs.
    pub fn finish(&mut self) -> io::Result<()> {
        self.file.truncate(self.offset)?;
        self.synced = self.offset;
        Ok(())
    }
}
