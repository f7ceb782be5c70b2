//! Read-only memory maps of immutable files: the only `unsafe` code in strata.
//!
//! Tables are mapped only after they were written in full, fsynced and renamed into place,
//! and no code in strata ever writes, truncates or renames a table file afterwards; obsolete
//! tables are unlinked, which leaves existing mappings valid. Another process modifying the
//! file would break the mapping, which is why the directory is locked while a store is open.
//! Every block read from a mapping is checksummed before it is trusted (see `sstable::block`).
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
    // it after it is mapped, and the directory lock keeps other strata processes out. A
    // foreign process writing into the store's directory is outside the supported contract,
    // as it is for every embedded database.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}
