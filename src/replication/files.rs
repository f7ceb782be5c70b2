//! Small file helpers of the replication layer: atomic replacement and directory syncs.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::Error;

fn at(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: Some(path.to_path_buf()),
        source,
    }
}

/// Fsyncs the directory `dir` so that creations, renames and removals in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), Error> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(at(dir))
}

/// Replaces `dir/name` with `bytes`: writes `name.tmp`, fsyncs it, renames it over `name`
/// and fsyncs the directory.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp = dir.join(format!("{name}.tmp"));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(at(&tmp))?;
    f.write_all(bytes).map_err(at(&tmp))?;
    f.sync_all().map_err(at(&tmp))?;
    drop(f);
    let dst = dir.join(name);
    fs::rename(&tmp, &dst).map_err(at(&dst))?;
    sync_dir(dir)
}

/// Creates `dir` (and its parents) and fsyncs its parent so the new entry is durable.
pub(crate) fn create_dir(dir: &Path) -> Result<(), Error> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(dir).map_err(at(dir))?;
    match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => sync_dir(p),
        _ => Ok(()),
    }
}
