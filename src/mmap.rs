//! Memory maps: read-only maps of immutable files, and the shared writable map a WAL segment
//! is appended through. With the cache hints of `prefetch`, the only `unsafe` code in
//! strata.
//!
//! A table is mapped only after it was written in full under its final name, fsynced, and its
//! directory entry synced; recovery also checks its length against the manifest before
//! mapping. No code in strata writes, truncates or renames a table file afterwards; obsolete
//! tables are unlinked (or, at open, moved aside), which leaves existing mappings valid.
//! Every block read from a mapping is checksummed before it is trusted (see `sstable::block`).
//!
//! What a map cannot promise: bytes of a mapped file that cannot be read — an I/O error on
//! the device, or the file truncated by another process while mapped — raise `SIGBUS` in
//! the reading thread instead of returning an error, and end the process. Read errors that
//! `read(2)` would report therefore end the process when they hit a table; a store on a
//! failing disk should be copied off (`checkpoint`, backup) rather than served from. The
//! directory lock keeps other strata processes out; tools that edit files inside a live
//! store's directory are outside the supported contract, as for every embedded database
//! that maps its files (LMDB, redb with mmap, RocksDB with `allow_mmap_reads`).
//!
//! A WAL segment is written through an [`AppendMap`] only after its whole length was
//! allocated with `fallocate` (so a write fault never needs a block the filesystem cannot
//! give, which would raise `SIGBUS`), and only by its one writer. Bytes copied into the map
//! are in the page cache at once, as with `write(2)`: they survive a process crash, and
//! `fdatasync` on the file makes them durable like written ones. Readers of a segment use
//! `read(2)`, which sees the same page cache.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::Arc;

use bytes::Bytes;

/// Maps the whole of `file` read-only and hands it out as cheaply cloneable [`Bytes`].
///
/// The mapping stays alive as long as any `Bytes` sliced from it.
pub(crate) fn map_readonly(file: &File) -> io::Result<Bytes> {
    Ok(map_file(file)?.0)
}

/// [`map_readonly`], with a handle on the map that can drop its pages from the process's
/// resident set (`None` for an empty file, which is not mapped).
pub(crate) fn map_file(file: &File) -> io::Result<(Bytes, Option<ReadOnlyMap>)> {
    if file.metadata()?.len() == 0 {
        return Ok((Bytes::new(), None));
    }
    // SAFETY: the file is an immutable table (see the module comment): strata never modifies
    // it after it is mapped, and the directory lock keeps other strata processes out, so the
    // mapped bytes never change under the `&[u8]` views handed out. A foreign process writing
    // into the store's directory is outside the supported contract. If the device fails a
    // read of a mapped page, or a foreign process truncates the file, the kernel raises
    // SIGBUS: that ends the process; it cannot expose changed or uninitialised bytes.
    let map = Arc::new(unsafe { memmap2::Mmap::map(file)? });
    let bytes = Bytes::from_owner(Owner(Arc::clone(&map)));
    Ok((bytes, Some(ReadOnlyMap(map))))
}

/// Keeps a map alive for the [`Bytes`] made from it.
struct Owner(Arc<memmap2::Mmap>);

impl AsRef<[u8]> for Owner {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A read-only map of a whole immutable file, made by [`map_file`].
#[derive(Clone)]
pub(crate) struct ReadOnlyMap(Arc<memmap2::Mmap>);

impl std::fmt::Debug for ReadOnlyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadOnlyMap")
            .field("len", &self.0.len())
            .finish()
    }
}

/// What [`ReadOnlyMap::release`] rounds to: a multiple of every common page size (4, 16 and
/// 64 KiB), so the range it advises always starts on a page boundary.
const RELEASE_ALIGN: usize = 64 << 10;

impl ReadOnlyMap {
    /// Drops the pages that lie wholly inside bytes `start..end` of the map from this
    /// process's resident set. They stay readable: the next touch maps them again from the
    /// page cache. A sequential reader calls this behind itself (a compaction reading its
    /// inputs), so what it has read does not count against the process's memory.
    pub(crate) fn release(&self, start: usize, end: usize) {
        let end = end.min(self.0.len()) / RELEASE_ALIGN * RELEASE_ALIGN;
        let start = start.div_ceil(RELEASE_ALIGN) * RELEASE_ALIGN;
        if start >= end {
            return;
        }
        #[cfg(unix)]
        {
            // SAFETY: `start..end` lies inside the map. The map is shared and read-only, of a
            // file nobody writes while it is mapped (see the module comment), so discarding
            // its page table entries loses nothing: a later read of these bytes, from any
            // thread holding a view of them, faults the same file pages back in. The advice
            // is only a hint; its failure changes nothing and is ignored.
            let _ = unsafe {
                self.0.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
    }
}

/// How far an [`AppendMap`]'s writer gets ahead of the pages it last dropped from the
/// process's resident set.
const APPEND_RELEASE_STEP: usize = 1 << 20;

/// How many bytes of the map an [`AppendMap`] makes writable at a time, ahead of its
/// writer.
const APPEND_POPULATE_STEP: usize = 256 << 10;

/// A shared, writable map of the first `len` bytes of a file whose space is allocated in
/// full, written front to back by one writer (a WAL segment; see the module comment).
pub(crate) struct AppendMap {
    map: memmap2::MmapMut,
    /// Bytes below this were dropped from the resident set.
    released: usize,
    /// Bytes below this were made present and writable ahead of the writer.
    populated: usize,
}

impl std::fmt::Debug for AppendMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppendMap")
            .field("len", &self.map.len())
            .field("released", &self.released)
            .field("populated", &self.populated)
            .finish()
    }
}

impl AppendMap {
    /// Maps bytes `0..len` of `file`, which must be open for reading and writing, hold at
    /// least `len` bytes, all allocated (`fallocate`), and have no other writer.
    pub(crate) fn new(file: &File, len: usize) -> io::Result<AppendMap> {
        // SAFETY: the caller allocated `len` bytes of the file, so a write fault inside the
        // map finds its block; it is this process's only writer (directory lock) and the
        // map is dropped before the file is truncated. Other threads never see the map's
        // memory: it is written only through `write_at` (holding `&mut self`) and read by
        // the kernel. Should the device fail under a fault anyway, the kernel raises SIGBUS
        // and the process ends; it cannot expose changed or uninitialised bytes.
        let map = unsafe { memmap2::MmapOptions::new().len(len).map_mut(file)? };
        Ok(AppendMap {
            map,
            released: 0,
            populated: 0,
        })
    }

    /// Copies `data` to byte `at` of the file if it lies wholly inside the map; returns
    /// whether it did. Pages left behind `at` are dropped from the resident set now and
    /// then (they stay in the page cache, dirty until written back).
    pub(crate) fn write_at(&mut self, at: usize, data: &[u8]) -> bool {
        let Some(end) = at.checked_add(data.len()).filter(|&e| e <= self.map.len()) else {
            return false;
        };
        if end > self.populated {
            self.populate_through(end);
        }
        let Some(dst) = self.map.get_mut(at..end) else {
            return false;
        };
        dst.copy_from_slice(data);
        if at >= self.released + APPEND_RELEASE_STEP {
            self.release_below(at);
        }
        true
    }

    /// Makes the pages from where the last call stopped to a step past `end` present and
    /// writable in one call, so that the copies into them take no page fault each (a fault
    /// on a file page costs microseconds: the filesystem is asked to make it writable).
    /// Where the kernel cannot (before Linux 5.14), the copies fault the pages in as before.
    fn populate_through(&mut self, end: usize) {
        let from = self.populated;
        // Aligned like the released ranges, so that `from` starts a page on every page size.
        let to = end
            .saturating_add(APPEND_POPULATE_STEP)
            .div_ceil(RELEASE_ALIGN)
            .saturating_mul(RELEASE_ALIGN)
            .min(self.map.len());
        #[cfg(target_os = "linux")]
        if to > from {
            // Only a hint: on failure the copies fault the pages in themselves.
            let _ = self
                .map
                .advise_range(memmap2::Advice::PopulateWrite, from, to - from);
        }
        self.populated = to;
    }

    fn release_below(&mut self, at: usize) {
        let end = at / RELEASE_ALIGN * RELEASE_ALIGN;
        let start = self.released;
        if end <= start {
            return;
        }
        #[cfg(unix)]
        {
            // SAFETY: `start..end` lies inside the map, below every byte still to be written.
            // The map is shared: discarding its page table entries passes their dirty state
            // to the page cache, so nothing written is lost, and a later touch would fault
            // the same file pages back in. The advice is a hint; its failure is ignored.
            let _ = unsafe {
                self.map.unchecked_advise_range(
                    memmap2::UncheckedAdvice::DontNeed,
                    start,
                    end - start,
                )
            };
        }
        self.released = end;
    }
}

/// Resident bytes of this process's maps of `path` (from `/proc/self/smaps`).
#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)] // a test helper: a failure should panic
pub(crate) fn resident_bytes_of(path: &std::path::Path) -> usize {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let name = path.to_str().unwrap();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            inside = line.ends_with(name);
        } else if inside && first == "Rss:" {
            kib += line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap();
        }
    }
    kib * 1024
}
