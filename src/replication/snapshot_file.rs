//! The snapshot file: a state machine's contents at one applied log id, streamed to and from
//! disk in checksummed chunks so that neither building, sending nor installing a snapshot
//! holds it in memory.
//!
//! Byte layout (integers little-endian; `docs/format.md`, "Raft snapshot"):
//!
//! ```text
//! file   := header | chunk* | end_chunk
//! header := magic: [u8; 8] = "strataSN" | format: u32 (= 1) | meta_len: u32
//!           | meta: codec(SnapshotHeader), meta_len bytes
//!           | crc32: u32 (masked, over every header byte before it)
//! chunk  := kind: u8 | len: u32 | crc32: u32 (masked, over kind, len and payload) | payload
//! kind 1 := data; payload = record*, record := key_len: varint | key | value_len: varint | value
//! kind 2 := end; payload = records: u64 | keys: u64 (nothing may follow it)
//! ```
//!
//! Records come in key order; the records of one key are its retained versions since its
//! last delete, oldest first, so installing them in order rebuilds the same history. A data
//! chunk is cut after the record that takes it past 1 MiB; a reader refuses a chunk longer
//! than one such chunk can be, so a damaged length never makes it allocate more.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};

use serde::{Deserialize, Serialize};

use super::codec;
use super::error::ReplicationError;
use super::types::SnapshotMeta;
use crate::checksum::mask_crc;
use crate::coding::{Reader, put_len_prefixed, put_u32, put_u64};
use crate::{MAX_KEY_LEN, MAX_VALUE_LEN};

const MAGIC: [u8; 8] = *b"strataSN";
const FORMAT: u32 = 1;
const DATA: u8 = 1;
const END: u8 = 2;
const CHUNK_HEADER: usize = 9;
/// A data chunk is cut once it passes this many bytes.
const CHUNK_TARGET: usize = 1 << 20;
/// The longest chunk a reader accepts: a full chunk plus one largest record.
const MAX_CHUNK: usize = CHUNK_TARGET + MAX_KEY_LEN + MAX_VALUE_LEN + 32;
/// The longest header metadata a reader accepts.
const MAX_META: usize = 16 << 20;

/// One record of a snapshot: a key and one of its values.
pub(crate) type Record<'a> = (&'a [u8], &'a [u8]);

/// What a snapshot file says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// openraft's metadata: last applied log id, membership, snapshot id.
    pub meta: SnapshotMeta,
    /// The replicated id the next operation gets (see `Txn`).
    pub next_id: u64,
    /// The state machine's clock (largest leader timestamp applied).
    pub clock_ms: u64,
}

fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> ReplicationError {
    crate::Error::Corruption {
        file: path.to_path_buf(),
        offset,
        reason: reason.into(),
    }
    .into()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReplicationError + '_ {
    move |source| {
        crate::Error::Io {
            path: Some(path.to_path_buf()),
            source,
        }
        .into()
    }
}

/// Writes a snapshot file from a stream of records.
pub(crate) struct SnapshotWriter {
    path: PathBuf,
    out: BufWriter<File>,
    chunk: Vec<u8>,
    records: u64,
    keys: u64,
    last_key: Option<Vec<u8>>,
}

impl SnapshotWriter {
    /// Creates `path` (truncating it) and writes the header.
    pub(crate) fn create(path: &Path, header: &SnapshotHeader) -> Result<Self, ReplicationError> {
        let file = File::create(path).map_err(io(path))?;
        let mut out = BufWriter::with_capacity(256 << 10, file);
        let meta = codec::encode(header)?;
        let mut head = Vec::with_capacity(20 + meta.len());
        head.extend_from_slice(&MAGIC);
        put_u32(&mut head, FORMAT);
        put_u32(&mut head, meta.len() as u32);
        head.extend_from_slice(&meta);
        let crc = mask_crc(crc32fast::hash(&head));
        put_u32(&mut head, crc);
        out.write_all(&head).map_err(io(path))?;
        Ok(SnapshotWriter {
            path: path.to_path_buf(),
            out,
            chunk: Vec::with_capacity(CHUNK_TARGET + 1024),
            records: 0,
            keys: 0,
            last_key: None,
        })
    }

    /// Adds one version of `key`; versions of a key come oldest first, keys in order.
    pub(crate) fn add(&mut self, key: &[u8], value: &[u8]) -> Result<(), ReplicationError> {
        if self.last_key.as_deref() != Some(key) {
            self.keys += 1;
            self.last_key = Some(key.to_vec());
        }
        put_len_prefixed(&mut self.chunk, key);
        put_len_prefixed(&mut self.chunk, value);
        self.records += 1;
        if self.chunk.len() >= CHUNK_TARGET {
            self.flush_chunk(DATA)?;
        }
        Ok(())
    }

    fn flush_chunk(&mut self, kind: u8) -> Result<(), ReplicationError> {
        let mut head = Vec::with_capacity(CHUNK_HEADER);
        head.push(kind);
        put_u32(&mut head, self.chunk.len() as u32);
        let mut h = crc32fast::Hasher::new();
        h.update(&head);
        h.update(&self.chunk);
        put_u32(&mut head, mask_crc(h.finalize()));
        self.out.write_all(&head).map_err(io(&self.path))?;
        self.out.write_all(&self.chunk).map_err(io(&self.path))?;
        self.chunk.clear();
        Ok(())
    }

    /// Writes the last data and the end chunk and fsyncs the file; returns the record count.
    pub(crate) fn finish(mut self) -> Result<u64, ReplicationError> {
        if !self.chunk.is_empty() {
            self.flush_chunk(DATA)?;
        }
        put_u64(&mut self.chunk, self.records);
        put_u64(&mut self.chunk, self.keys);
        self.flush_chunk(END)?;
        let file = self
            .out
            .into_inner()
            .map_err(|e| io(&self.path)(e.into_error()))?;
        file.sync_all().map_err(io(&self.path))?;
        Ok(self.records)
    }
}

/// Reads a snapshot file back, checking every checksum and the end chunk.
pub(crate) struct SnapshotReader {
    path: PathBuf,
    src: BufReader<File>,
    offset: u64,
    chunk: Vec<u8>,
    pos: usize,
    records: u64,
    keys: u64,
    last_key: Vec<u8>,
    done: bool,
}

fn read_exact_or_eof(src: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match src.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl SnapshotReader {
    /// Opens `path` and reads its header.
    pub(crate) fn open(path: &Path) -> Result<(SnapshotHeader, SnapshotReader), ReplicationError> {
        let file = File::open(path).map_err(io(path))?;
        let mut src = BufReader::with_capacity(256 << 10, file);
        let mut fixed = [0u8; 16];
        if read_exact_or_eof(&mut src, &mut fixed).map_err(io(path))? < fixed.len() {
            return Err(corrupt(path, 0, "snapshot header truncated"));
        }
        if fixed[..8] != MAGIC {
            return Err(corrupt(path, 0, "bad magic number in snapshot"));
        }
        let mut r = Reader::new(&fixed[8..], 8);
        let format = r
            .u32("format")
            .map_err(|e| corrupt(path, 8, e.to_string()))?;
        if format != FORMAT {
            return Err(corrupt(
                path,
                8,
                format!("unsupported snapshot format {format}"),
            ));
        }
        let meta_len = r
            .u32("meta length")
            .map_err(|e| corrupt(path, 12, e.to_string()))? as usize;
        if meta_len > MAX_META {
            return Err(corrupt(
                path,
                12,
                format!("snapshot metadata of {meta_len} bytes"),
            ));
        }
        let mut rest = vec![0u8; meta_len + 4];
        if read_exact_or_eof(&mut src, &mut rest).map_err(io(path))? < rest.len() {
            return Err(corrupt(path, 16, "snapshot header truncated"));
        }
        let (meta, crc) = rest.split_at(meta_len);
        let mut h = crc32fast::Hasher::new();
        h.update(&fixed);
        h.update(meta);
        if crc != mask_crc(h.finalize()).to_le_bytes() {
            return Err(corrupt(path, 0, "snapshot header checksum mismatch"));
        }
        let header: SnapshotHeader =
            codec::decode(meta).map_err(|e| corrupt(path, 16, e.to_string()))?;
        let reader = SnapshotReader {
            path: path.to_path_buf(),
            src,
            offset: (16 + meta_len + 4) as u64,
            chunk: Vec::new(),
            pos: 0,
            records: 0,
            keys: 0,
            last_key: Vec::new(),
            done: false,
        };
        Ok((header, reader))
    }

    /// Reads the next chunk into `self.chunk`; returns its kind.
    fn next_chunk(&mut self) -> Result<u8, ReplicationError> {
        let at = self.offset;
        let mut head = [0u8; CHUNK_HEADER];
        let n = read_exact_or_eof(&mut self.src, &mut head).map_err(io(&self.path))?;
        if n < CHUNK_HEADER {
            return Err(corrupt(
                &self.path,
                at,
                "snapshot ends without its end chunk",
            ));
        }
        let kind = head[0];
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let stored = u32::from_le_bytes([head[5], head[6], head[7], head[8]]);
        if len > MAX_CHUNK {
            return Err(corrupt(
                &self.path,
                at,
                format!("snapshot chunk of {len} bytes"),
            ));
        }
        self.chunk.clear();
        self.chunk.resize(len, 0);
        if read_exact_or_eof(&mut self.src, &mut self.chunk).map_err(io(&self.path))? < len {
            return Err(corrupt(&self.path, at, "snapshot chunk truncated"));
        }
        let mut h = crc32fast::Hasher::new();
        h.update(&head[..5]);
        h.update(&self.chunk);
        if mask_crc(h.finalize()) != stored {
            return Err(corrupt(&self.path, at, "snapshot chunk checksum mismatch"));
        }
        self.offset += (CHUNK_HEADER + len) as u64;
        self.pos = 0;
        Ok(kind)
    }

    /// The next record `(key, value)`, or `None` after the end chunk was checked.
    pub(crate) fn next_record(&mut self) -> Result<Option<Record<'_>>, ReplicationError> {
        while self.pos >= self.chunk.len() {
            if self.done {
                return Ok(None);
            }
            match self.next_chunk()? {
                DATA => {}
                END => {
                    self.finish_end()?;
                    return Ok(None);
                }
                k => {
                    return Err(corrupt(
                        &self.path,
                        self.offset,
                        format!("unknown chunk kind {k}"),
                    ));
                }
            }
        }
        let base = self.offset - self.chunk.len() as u64;
        let mut r = Reader::new(&self.chunk, base);
        r.bytes(self.pos, "consumed")
            .map_err(|e| corrupt(&self.path, base, e.to_string()))?;
        let key = r
            .len_prefixed(MAX_KEY_LEN, "key")
            .map_err(|e| corrupt(&self.path, base, e.to_string()))?;
        let value = r
            .len_prefixed(MAX_VALUE_LEN, "value")
            .map_err(|e| corrupt(&self.path, base, e.to_string()))?;
        self.pos = r.position();
        self.records += 1;
        if self.records == 1 || self.last_key != key {
            if self.records > 1 && key < self.last_key.as_slice() {
                return Err(corrupt(&self.path, base, "snapshot keys out of order"));
            }
            self.keys += 1;
            self.last_key.clear();
            self.last_key.extend_from_slice(key);
        }
        Ok(Some((key, value)))
    }

    fn finish_end(&mut self) -> Result<(), ReplicationError> {
        let at = self.offset;
        let mut r = Reader::new(&self.chunk, at);
        let records = r
            .u64("records")
            .map_err(|e| corrupt(&self.path, at, e.to_string()))?;
        let keys = r
            .u64("keys")
            .map_err(|e| corrupt(&self.path, at, e.to_string()))?;
        if !r.is_empty() {
            return Err(corrupt(&self.path, at, "end chunk too long"));
        }
        if (records, keys) != (self.records, self.keys) {
            return Err(corrupt(
                &self.path,
                at,
                format!(
                    "snapshot claims {records} records of {keys} keys, holds {} of {}",
                    self.records, self.keys
                ),
            ));
        }
        let mut probe = [0u8; 1];
        if read_exact_or_eof(&mut self.src, &mut probe).map_err(io(&self.path))? != 0 {
            return Err(corrupt(&self.path, at, "bytes after the end chunk"));
        }
        self.chunk.clear();
        self.pos = 0;
        self.done = true;
        Ok(())
    }
}

/// openraft's snapshot data handle: an open snapshot file and where it lives.
///
/// Sending reads it in chunks; receiving writes the chunks into a file of the receiver's
/// snapshot directory, which installing then moves into place without another copy.
#[derive(Debug)]
pub struct SnapshotFile {
    file: tokio::fs::File,
    path: PathBuf,
}

impl SnapshotFile {
    /// Wraps an open file at `path`.
    pub(crate) fn new(file: tokio::fs::File, path: PathBuf) -> SnapshotFile {
        SnapshotFile { file, path }
    }

    /// Where the file lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn into_parts(self) -> (tokio::fs::File, PathBuf) {
        (self.file, self.path)
    }
}

impl tokio::io::AsyncRead for SnapshotFile {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for SnapshotFile {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.file).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

impl tokio::io::AsyncSeek for SnapshotFile {
    fn start_seek(mut self: Pin<&mut Self>, position: std::io::SeekFrom) -> std::io::Result<()> {
        Pin::new(&mut self.file).start_seek(position)
    }

    fn poll_complete(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<u64>> {
        Pin::new(&mut self.file).poll_complete(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::types::{Member, StoredMembership};

    fn header() -> SnapshotHeader {
        let membership = openraft::Membership::new(
            vec![[1u64, 2].into_iter().collect()],
            [
                (1u64, Member::new("a", "x:1")),
                (2, Member::new("b", "x:2")),
            ]
            .into_iter()
            .collect::<std::collections::BTreeMap<_, _>>(),
        );
        SnapshotHeader {
            meta: SnapshotMeta {
                last_log_id: Some(openraft::LogId::new(
                    openraft::CommittedLeaderId::new(3, 1),
                    42,
                )),
                last_membership: StoredMembership::new(None, membership),
                snapshot_id: "42-1".into(),
            },
            next_id: 7,
            clock_ms: 1234,
        }
    }

    fn write(path: &Path, records: &[(&[u8], &[u8])]) {
        let mut w = SnapshotWriter::create(path, &header()).unwrap();
        for (k, v) in records {
            w.add(k, v).unwrap();
        }
        assert_eq!(w.finish().unwrap(), records.len() as u64);
    }

    type Records = Vec<(Vec<u8>, Vec<u8>)>;

    fn read_all(path: &Path) -> Result<(SnapshotHeader, Records), ReplicationError> {
        let (h, mut r) = SnapshotReader::open(path)?;
        let mut out = Vec::new();
        while let Some((k, v)) = r.next_record()? {
            out.push((k.to_vec(), v.to_vec()));
        }
        Ok((h, out))
    }

    #[test]
    fn records_round_trip_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let big = vec![7u8; 300 << 10];
        let mut recs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for i in 0..20u32 {
            let k = format!("k{i:03}").into_bytes();
            recs.push((k.clone(), big.clone()));
            recs.push((k, i.to_le_bytes().to_vec()));
        }
        recs.push((b"z".to_vec(), Vec::new()));
        let refs: Vec<(&[u8], &[u8])> = recs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        write(&path, &refs);
        let (h, got) = read_all(&path).unwrap();
        assert_eq!(h, header());
        assert_eq!(got, recs);
        let empty = dir.path().join("e");
        write(&empty, &[]);
        assert_eq!(read_all(&empty).unwrap().1, Vec::new());
    }

    #[test]
    fn every_truncation_and_bit_flip_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, &[(b"a", b"1"), (b"a", b"2"), (b"b", b"3")]);
        let good = std::fs::read(&path).unwrap();
        let bad = dir.path().join("bad");
        for cut in 0..good.len() {
            std::fs::write(&bad, &good[..cut]).unwrap();
            assert!(read_all(&bad).is_err(), "cut at {cut}");
        }
        for i in 0..good.len() {
            let mut b = good.clone();
            b[i] ^= 0x04;
            std::fs::write(&bad, &b).unwrap();
            assert!(read_all(&bad).is_err(), "flip at {i}");
        }
        let mut long = good.clone();
        long.push(0);
        std::fs::write(&bad, &long).unwrap();
        assert!(read_all(&bad).is_err());
    }

    #[test]
    fn a_huge_chunk_length_is_refused_before_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        write(&path, &[]);
        let mut b = std::fs::read(&path).unwrap();
        // the end chunk starts 25 bytes before the end of the file
        let at = b.len() - 25;
        b[at + 1..at + 5].copy_from_slice(&u32::MAX.to_le_bytes());
        std::fs::write(&path, &b).unwrap();
        let err = read_all(&path).err().unwrap();
        assert!(err.to_string().contains("chunk of"), "{err}");
    }
}
