//! A directory built under a temporary sibling name and published atomically: checkpoints,
//! restores and loads all create a whole store directory this way.
//!
//! The files are written into `<dest>.checkpoint-tmp` (a name reserved for this: a leftover
//! from an interrupted attempt is emptied and reused), each made durable, then the
//! directory is synced, renamed to `dest`, and the parent directory is synced. A crash at
//! any point leaves either no `dest` or a complete one. A build that fails (or is dropped
//! unpublished) removes what it wrote.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, IoContext, Result};
use crate::fs::FileSystem;

/// Suffix of the temporary sibling directory.
pub(crate) const STAGING_SUFFIX: &str = ".checkpoint-tmp";

/// True when `path` names an existing file or directory.
pub(crate) fn exists(fs: &dyn FileSystem, path: &Path) -> bool {
    fs.list(path).is_ok() || fs.file_size(path).is_ok()
}

/// A directory being built for `dest`.
#[derive(Debug)]
pub(crate) struct Staging {
    fs: Arc<dyn FileSystem>,
    dir: PathBuf,
    dest: PathBuf,
    parent: PathBuf,
    published: bool,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.published {
            return;
        }
        // Best effort: whatever is left is emptied by the next attempt for this destination.
        if let Ok(names) = self.fs.list(&self.dir) {
            for n in names {
                let _ = self.fs.remove_file(&self.dir.join(n));
            }
        }
        let _ = self.fs.remove_dir(&self.dir);
    }
}

impl Staging {
    /// Starts building `dest`, which must not exist.
    pub(crate) fn begin(fs: Arc<dyn FileSystem>, dest: &Path) -> Result<Staging> {
        let name = dest.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            Error::InvalidConfig(format!("{} names no directory", dest.display()))
        })?;
        if exists(&*fs, dest) {
            return Err(Error::Io {
                path: Some(dest.to_path_buf()),
                source: io::Error::new(io::ErrorKind::AlreadyExists, "destination exists"),
            });
        }
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs.create_dir_all(&parent).at(&parent)?;
        let dir = parent.join(format!("{name}{STAGING_SUFFIX}"));
        match fs.list(&dir) {
            Ok(leftovers) => {
                // An interrupted attempt's files: nothing refers to them.
                for n in leftovers {
                    fs.remove_file(&dir.join(&n)).at(&dir.join(&n))?;
                }
                fs.sync_dir(&dir).at(&dir)?;
            }
            Err(_) => fs.create_dir_all(&dir).at(&dir)?,
        }
        Ok(Staging {
            fs,
            dir,
            dest: dest.to_path_buf(),
            parent,
            published: false,
        })
    }

    /// The directory being built.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Makes the directory's entries durable, renames it to `dest` and syncs the parent.
    pub(crate) fn publish(mut self) -> Result<PathBuf> {
        self.fs.sync_dir(&self.dir).at(&self.dir)?;
        self.fs.rename(&self.dir, &self.dest).at(&self.dest)?;
        self.published = true;
        self.fs.sync_dir(&self.parent).at(&self.parent)?;
        Ok(self.dest.clone())
    }
}
