//! Read-only memory maps of immutable files: the only `unsafe` code in strata.
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
