//! The catalog of tables: the manifest that records which tables make up the store, the
//! table-set bookkeeping it mirrors, and the counter that numbers every file.
//!
//! Structural changes (a flush, a compaction) are logged here before they are published: a
//! job applies its [`Edit`] with [`Catalog::log_edit`] while it holds the catalog, then
//! publishes the new state, so the manifest always names every table a reader can see.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::file_names;
use crate::fs::FileSystem;
use crate::lifecycle::Lifecycle;
use crate::manifest::{Edit, ManifestState, ManifestWriter};

/// A manifest bigger than this is rewritten as a single snapshot edit.
const MANIFEST_REWRITE_BYTES: u64 = 4 << 20;

/// The manifest and the file-number counter.
#[derive(Debug)]
pub(crate) struct Catalog {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    next_file: AtomicU64,
    log: Mutex<ManifestLog>,
}

/// The live manifest and the table-set bookkeeping it mirrors.
#[derive(Debug)]
pub(crate) struct ManifestLog {
    /// The manifest being appended to.
    pub manifest: ManifestWriter,
    /// What it records, with every logged edit applied.
    pub state: ManifestState,
}

impl Catalog {
    /// The catalog of the store in `dir`, recovered as `manifest` recording `state`; file
    /// numbers continue at `next_file`.
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        dir: &Path,
        manifest: ManifestWriter,
        state: ManifestState,
        next_file: u64,
    ) -> Catalog {
        Catalog {
            fs,
            dir: dir.to_path_buf(),
            next_file: AtomicU64::new(next_file),
            log: Mutex::new(ManifestLog { manifest, state }),
        }
    }

    /// A fresh file number, never handed out before.
    pub(crate) fn allocate_file_number(&self) -> u64 {
        self.next_file.fetch_add(1, Ordering::AcqRel)
    }

    /// The next number [`Catalog::allocate_file_number`] will hand out.
    pub(crate) fn next_file(&self) -> u64 {
        self.next_file.load(Ordering::Acquire)
    }

    /// Holds the manifest: edits are logged, and their result published, one at a time.
    pub(crate) fn lock(&self) -> MutexGuard<'_, ManifestLog> {
        self.log.lock()
    }

    /// Records `edit` in the manifest held as `log` (rewriting the manifest when it has grown
    /// large). Refused once the store is closed or poisoned; a failed write poisons it.
    pub(crate) fn log_edit(
        &self,
        log: &mut ManifestLog,
        edit: &Edit,
        life: &Lifecycle,
    ) -> Result<()> {
        // A job that started before the store was poisoned must not log its edit: after a
        // failed manifest write the in-memory state may be ahead of the manifest.
        life.check_writable()?;
        log.state.apply(edit).map_err(|r| Error::Corruption {
            file: self.dir.join(file_names::manifest(log.manifest.number())),
            offset: 0,
            reason: format!("refused manifest edit: {r}"),
        })?;
        let written = self.write_edit(log, edit);
        if let Err(e) = &written {
            // The edit is applied in memory but maybe not on disk, and a torn record may end
            // the manifest: nothing more may be logged behind it.
            life.poison("manifest write", e);
        }
        written
    }

    fn write_edit(&self, log: &mut ManifestLog, edit: &Edit) -> Result<()> {
        if log.manifest.size() > MANIFEST_REWRITE_BYTES {
            let number = self.allocate_file_number();
            log.state.next_file = self.next_file();
            let fresh =
                ManifestWriter::create(Arc::clone(&self.fs), &self.dir, number, &log.state)?;
            let old = std::mem::replace(&mut log.manifest, fresh);
            let name = file_names::manifest(old.number());
            if let Err(e) = self.fs.remove_file(&self.dir.join(name)) {
                tracing::warn!(error = %e, "could not delete old manifest");
            }
            Ok(())
        } else {
            log.manifest.log(edit)
        }
    }
}
