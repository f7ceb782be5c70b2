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

use bytes::Bytes;

/// Maps the whole of `file` read-only and hands it out as cheaply cloneable [`Bytes`].
///
/// The mapping stays alive as long as any `Bytes` sliced from it.
pub(crate) fn map_readonly(file: &File) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: the file is an immutable table (see the module comment): strata never modifies
    // it after it is mapped, and the directory lock keeps other strata processes out, so the
    // mapped bytes never change under the `&[u8]` views handed out. A foreign process writing
    // into the store's directory is outside the supported contract. If the device fails a
    // read of a mapped page, or a foreign process truncates the file, the kernel raises
    // SIGBUS: that ends the process; it cannot expose changed or uninitialised bytes.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}
