//! A replica's snapshot directory: which snapshot file is current, where new ones are built
//! and received, and how one becomes current.
//!
//! ```text
//! snapshots/snap-NNNNNNNNNNNNNNNNNNNN.snap   a complete snapshot (the newest is current)
//! snapshots/build-N.tmp, recv-N.tmp          being built or received; never referenced
//! ```
//!
//! A snapshot is written (or received) into a `.tmp` file, fsynced, renamed to its `snap-`
//! name and the directory fsynced: a `snap-` file is always complete. Only the current one
//! is kept; older ones and leftover `.tmp` files are deleted (a reader that still has an
//! older one open keeps reading it). Numbers come from one counter, so a later snapshot
//! always has a larger number.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use super::apply::RESERVED;
use super::error::ReplicationError;
use super::files::{create_dir, sync_dir};
use super::snapshot_file::{SnapshotHeader, SnapshotReader, SnapshotWriter};

const PREFIX: &str = "snap-";
const SUFFIX: &str = ".snap";

/// A complete snapshot on disk.
#[derive(Debug, Clone)]
pub(crate) struct Current {
    /// Its header (metadata and state-machine counters).
    pub header: SnapshotHeader,
    /// Its file.
    pub path: PathBuf,
    number: u64,
}

/// The snapshot directory of one replica.
#[derive(Debug)]
pub(crate) struct SnapshotStore {
    dir: PathBuf,
    counter: AtomicU64,
    current: Mutex<Option<Current>>,
}

fn number_of(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
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

impl SnapshotStore {
    /// Opens `dir` (creating it): finds the current snapshot and checks its header, deletes
    /// leftover temporary files and older snapshots.
    pub(crate) fn open(dir: &Path) -> Result<SnapshotStore, ReplicationError> {
        create_dir(dir)?;
        let mut snaps = Vec::new();
        let mut removed = false;
        for entry in std::fs::read_dir(dir).map_err(io(dir))? {
            let entry = entry.map_err(io(dir))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if let Some(n) = number_of(&name) {
                snaps.push((n, entry.path()));
            } else if name.ends_with(".tmp")
                && (name.starts_with("build-") || name.starts_with("recv-"))
            {
                std::fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                removed = true;
            }
        }
        snaps.sort();
        let current = match snaps.pop() {
            Some((number, path)) => {
                let (header, _) = SnapshotReader::open(&path)?;
                Some(Current {
                    header,
                    path,
                    number,
                })
            }
            None => None,
        };
        for (_, old) in snaps {
            std::fs::remove_file(&old).map_err(io(&old))?;
            removed = true;
        }
        if removed {
            sync_dir(dir)?;
        }
        let next = current.as_ref().map_or(1, |c| c.number + 1);
        Ok(SnapshotStore {
            dir: dir.to_path_buf(),
            counter: AtomicU64::new(next),
            current: Mutex::new(current),
        })
    }

    /// The current snapshot, if any.
    pub(crate) fn current(&self) -> Option<Current> {
        self.current.lock().clone()
    }

    /// A fresh temporary path for a snapshot being built (`build`) or received (`recv`).
    pub(crate) fn temp_path(&self, kind: &str) -> PathBuf {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        self.dir.join(format!("{kind}-{n}.tmp"))
    }

    /// True when `path` is a receiving file of this directory.
    pub(crate) fn is_receiving(&self, path: &Path) -> bool {
        path.parent() == Some(self.dir.as_path())
            && path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("recv-") && n.ends_with(".tmp"))
    }

    /// Makes the complete, fsynced file `tmp` a snapshot; it becomes current unless a
    /// snapshot of a later log id already is. Older snapshots are deleted. Returns the
    /// snapshot and the file opened for reading (it stays readable even if a newer snapshot
    /// replaced it meanwhile).
    pub(crate) fn publish(
        &self,
        tmp: &Path,
        header: SnapshotHeader,
    ) -> Result<(Current, std::fs::File), ReplicationError> {
        let number = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.join(format!("{PREFIX}{number:020}{SUFFIX}"));
        std::fs::rename(tmp, &path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        let file = std::fs::File::open(&path).map_err(io(&path))?;
        let new = Current {
            header,
            path,
            number,
        };
        let obsolete = {
            let mut cur = self.current.lock();
            let newer = cur
                .as_ref()
                .is_none_or(|c| c.header.meta.last_log_id <= new.header.meta.last_log_id);
            if newer {
                cur.replace(new.clone())
            } else {
                Some(new.clone())
            }
        };
        if let Some(old) = obsolete {
            std::fs::remove_file(&old.path).map_err(io(&old.path))?;
            sync_dir(&self.dir)?;
        }
        Ok((new, file))
    }

    /// Writes the contents of `view` with `header` into a new temporary file and fsyncs it;
    /// returns the file. Keys in the state machine's reserved namespace are left out (the
    /// header carries that state).
    pub(crate) fn write_view(
        &self,
        view: &crate::Snapshot,
        header: &SnapshotHeader,
    ) -> Result<PathBuf, ReplicationError> {
        let tmp = self.temp_path("build");
        let mut w = SnapshotWriter::create(&tmp, header)?;
        let mut life = Vec::new();
        for item in view.range(&[RESERVED + 1][..]..) {
            let (key, _) = item?;
            life.clear();
            for v in view.versions(&key) {
                match v?.value {
                    Some(value) => life.push(value),
                    None => break,
                }
            }
            for value in life.iter().rev() {
                w.add(&key, value)?;
            }
        }
        w.finish()?;
        Ok(tmp)
    }
}
