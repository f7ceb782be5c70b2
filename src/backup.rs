//! Backup archives: a store directory (a checkpoint) as one checksummed stream, and the
//! restore that turns such a stream back into a store directory.
//!
//! Byte layout (`docs/format.md`, "Backup archive"), integers little-endian, every CRC
//! masked as in the log format:
//!
//! ```text
//! archive := header | entry* | end
//! header  := magic "strataBK" | format_version: u32 (1) | seqno: u64
//!            | crc32: u32                      (over the 20 bytes before)
//! entry   := name_len: u16 (1..=255) | name | size: u64
//!            | crc32: u32                      (over name_len, name and size)
//!            | data[size] | data_crc32: u32    (over data)
//! end     := name_len: u16 = 0 | files: u32 | bytes: u64
//!            | crc32: u32                      (over the 14 bytes before)
//! ```
//!
//! Names are plain store file names (`CURRENT`, `MANIFEST-N`, `N.sst`, `N.wal`); anything
//! else is refused on restore, as is a truncated stream (no `end`), so a restore never
//! writes outside its directory and never publishes a partial store.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checksum::mask_crc;
use crate::coding::{get_u32, get_u64};
use crate::error::{Corrupt, Error, IoContext, Result};
use crate::file_names;
use crate::fs::FileSystem;
use crate::staging::Staging;

/// Magic number at the start of an archive.
pub const ARCHIVE_MAGIC: [u8; 8] = *b"strataBK";
/// Current archive format version.
pub const ARCHIVE_VERSION: u32 = 1;
const HEADER_LEN: usize = 24;
const MAX_NAME_LEN: usize = 255;

/// What an archive held or a restore wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveSummary {
    /// The seqno the archived store holds every write up to.
    pub seqno: u64,
    /// Files.
    pub files: u32,
    /// Bytes of file data.
    pub bytes: u64,
}

/// True for the names a store directory's files have.
pub fn is_store_file(name: &str) -> bool {
    name == file_names::CURRENT
        || file_names::parse_manifest(name).is_some()
        || file_names::parse_table(name).is_some()
        || file_names::parse_wal(name).is_some()
}

fn crc(data: &[u8]) -> u32 {
    mask_crc(crc32fast::hash(data))
}

/// Writes the store directory `dir` (not open: a checkpoint) as an archive to `out`;
/// `progress(bytes_done, bytes_total)` is called as files are written.
pub fn write_archive(
    fs: &dyn FileSystem,
    dir: &Path,
    seqno: u64,
    out: &mut dyn Write,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<ArchiveSummary> {
    let mut names: Vec<String> = fs
        .list(dir)
        .at(dir)?
        .into_iter()
        .filter(|n| is_store_file(n))
        .collect();
    // Tables and segments first, then the manifest, CURRENT last.
    names.sort_by_key(|n| {
        (
            n == file_names::CURRENT,
            file_names::parse_manifest(n).is_some(),
            n.clone(),
        )
    });
    let sizes: Vec<u64> = names
        .iter()
        .map(|n| fs.file_size(&dir.join(n)).at(&dir.join(n)))
        .collect::<Result<_>>()?;
    let total: u64 = sizes.iter().sum();
    let mut header = Vec::with_capacity(HEADER_LEN);
    header.extend_from_slice(&ARCHIVE_MAGIC);
    header.extend_from_slice(&ARCHIVE_VERSION.to_le_bytes());
    header.extend_from_slice(&seqno.to_le_bytes());
    header.extend_from_slice(&crc(&header).to_le_bytes());
    out.write_all(&header)?;
    let mut summary = ArchiveSummary {
        seqno,
        files: 0,
        bytes: 0,
    };
    let mut buf = vec![0u8; 256 * 1024];
    for (name, &size) in names.iter().zip(&sizes) {
        let path = dir.join(name);
        let mut entry = Vec::with_capacity(2 + name.len() + 12);
        entry.extend_from_slice(&(name.len() as u16).to_le_bytes());
        entry.extend_from_slice(name.as_bytes());
        entry.extend_from_slice(&size.to_le_bytes());
        entry.extend_from_slice(&crc(&entry).to_le_bytes());
        out.write_all(&entry)?;
        let mut src = fs.open_read(&path).at(&path)?.take(size);
        let mut hasher = crc32fast::Hasher::new();
        let mut written = 0u64;
        loop {
            let n = match src.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at(&path),
            };
            let chunk = buf.get(..n).unwrap_or_default();
            hasher.update(chunk);
            out.write_all(chunk)?;
            written += n as u64;
            progress(summary.bytes + written, total);
        }
        if written != size {
            return Err(Corrupt::new(written, "file shrank while it was archived").in_file(&path));
        }
        out.write_all(&mask_crc(hasher.finalize()).to_le_bytes())?;
        summary.files += 1;
        summary.bytes += size;
    }
    let mut end = Vec::with_capacity(18);
    end.extend_from_slice(&0u16.to_le_bytes());
    end.extend_from_slice(&summary.files.to_le_bytes());
    end.extend_from_slice(&summary.bytes.to_le_bytes());
    end.extend_from_slice(&crc(&end).to_le_bytes());
    out.write_all(&end)?;
    out.flush()?;
    Ok(summary)
}

/// Reads exactly `buf.len()` bytes or reports a truncated archive at `offset`.
fn read_exact(src: &mut dyn Read, buf: &mut [u8], offset: u64, what: &str) -> Result<(), Corrupt> {
    src.read_exact(buf).map_err(|e| {
        Corrupt::new(
            offset,
            if e.kind() == io::ErrorKind::UnexpectedEof {
                format!("archive truncated in the {what}")
            } else {
                format!("read failed in the {what}: {e}")
            },
        )
    })
}

/// Reads an archive from `src` and writes its files into the new store directory `dest`
/// (which must not exist), checking every checksum. The directory is built under a
/// temporary name, verified with [`crate::verify`], and renamed into place only if the
/// archive was whole and the store is healthy.
pub fn restore(
    fs: Arc<dyn FileSystem>,
    src: &mut dyn Read,
    dest: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveSummary> {
    // The header is checked before anything is created.
    let (seqno, mut src) = read_header(src)?;
    let staging = Staging::begin(Arc::clone(&fs), dest)?;
    let summary = read_entries(&mut src, seqno, Some((&*fs, staging.dir())), progress)?;
    let report = crate::verify::verify_dir_with(&*fs, staging.dir(), &mut |_, _| {})?;
    if let Some(d) = report.damage.first() {
        return Err(Error::Corruption {
            file: d.file.clone(),
            offset: d.offset.unwrap_or(0),
            reason: format!("restored store is damaged: {}", d.reason),
        });
    }
    staging.publish()?;
    Ok(summary)
}

/// Reads a whole archive from `src`, checking its structure and every checksum, without
/// writing anything.
pub fn check_archive(src: &mut dyn Read, progress: &mut dyn FnMut(u64)) -> Result<ArchiveSummary> {
    let (seqno, mut src) = read_header(src)?;
    read_entries(&mut src, seqno, None, progress)
}

fn archive_name() -> PathBuf {
    PathBuf::from("<archive>")
}

/// Reads and checks the header; returns the seqno and the rest of the stream.
fn read_header(src: &mut dyn Read) -> Result<(u64, &mut dyn Read)> {
    let bad = |c: Corrupt| c.in_file(archive_name());
    let mut header = [0u8; HEADER_LEN];
    read_exact(src, &mut header, 0, "header").map_err(bad)?;
    if header.get(..8) != Some(&ARCHIVE_MAGIC[..]) {
        return Err(bad(Corrupt::new(0, "not a strata backup archive")));
    }
    if get_u32(&header, 20) != Some(crc(header.get(..20).unwrap_or_default())) {
        return Err(bad(Corrupt::new(20, "archive header checksum mismatch")));
    }
    let version = get_u32(&header, 8).unwrap_or_default();
    if version != ARCHIVE_VERSION {
        return Err(bad(Corrupt::new(
            8,
            format!("unsupported archive version {version}"),
        )));
    }
    Ok((get_u64(&header, 12).unwrap_or_default(), src))
}

/// Reads the entries and the end record after the header; writes each file into `dest`'s
/// directory when given.
fn read_entries(
    src: &mut dyn Read,
    seqno: u64,
    dest: Option<(&dyn FileSystem, &Path)>,
    progress: &mut dyn FnMut(u64),
) -> Result<ArchiveSummary> {
    let archive = archive_name();
    let bad = |c: Corrupt| c.in_file(&archive);
    let mut offset = HEADER_LEN as u64;
    let mut summary = ArchiveSummary {
        seqno,
        files: 0,
        bytes: 0,
    };
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let mut len_bytes = [0u8; 2];
        read_exact(src, &mut len_bytes, offset, "entry header").map_err(bad)?;
        let name_len = usize::from(u16::from_le_bytes(len_bytes));
        if name_len == 0 {
            let mut rest = [0u8; 16];
            read_exact(src, &mut rest, offset, "end record").map_err(bad)?;
            let mut end = len_bytes.to_vec();
            end.extend_from_slice(rest.get(..12).unwrap_or_default());
            if get_u32(&rest, 12) != Some(crc(&end)) {
                return Err(bad(Corrupt::new(offset, "end record checksum mismatch")));
            }
            let files = get_u32(&rest, 0).unwrap_or_default();
            let bytes = get_u64(&rest, 4).unwrap_or_default();
            if (files, bytes) != (summary.files, summary.bytes) {
                return Err(bad(Corrupt::new(
                    offset,
                    format!(
                        "end record counts {files} files and {bytes} bytes, the archive held {} and {}",
                        summary.files, summary.bytes
                    ),
                )));
            }
            break;
        }
        if name_len > MAX_NAME_LEN {
            return Err(bad(Corrupt::new(offset, "file name too long")));
        }
        let mut rest = vec![0u8; name_len + 12];
        read_exact(src, &mut rest, offset + 2, "entry header").map_err(bad)?;
        let mut entry = len_bytes.to_vec();
        entry.extend_from_slice(rest.get(..name_len + 8).unwrap_or_default());
        if get_u32(&rest, name_len + 8) != Some(crc(&entry)) {
            return Err(bad(Corrupt::new(offset, "entry header checksum mismatch")));
        }
        let name = std::str::from_utf8(rest.get(..name_len).unwrap_or_default())
            .ok()
            .filter(|n| is_store_file(n))
            .ok_or_else(|| bad(Corrupt::new(offset + 2, "entry names no store file")))?
            .to_string();
        let size = get_u64(&rest, name_len).unwrap_or_default();
        offset += (2 + name_len + 12) as u64;
        let mut file = match dest {
            Some((fs, dir)) => {
                let path = dir.join(&name);
                Some((fs.create(&path).at(&path)?, path))
            }
            None => None,
        };
        let mut hasher = crc32fast::Hasher::new();
        let mut left = size;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            let chunk = buf.get_mut(..want).unwrap_or_default();
            read_exact(src, chunk, offset, "file data").map_err(bad)?;
            hasher.update(chunk);
            if let Some((f, path)) = &mut file {
                f.append(chunk).at(path)?;
            }
            left -= want as u64;
            offset += want as u64;
            progress(summary.bytes + (size - left));
        }
        let mut stored = [0u8; 4];
        read_exact(src, &mut stored, offset, "file checksum").map_err(bad)?;
        if u32::from_le_bytes(stored) != mask_crc(hasher.finalize()) {
            return Err(bad(Corrupt::new(
                offset,
                format!("data checksum mismatch in {name}"),
            )));
        }
        offset += 4;
        if let Some((mut f, path)) = file {
            f.sync().at(&path)?;
        }
        summary.files += 1;
        summary.bytes += size;
    }
    Ok(summary)
}
