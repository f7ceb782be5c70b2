//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod faultfs;
pub mod holdfs;

use std::io;
use std::path::Path;
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use strata::{Bytes, FileLock, FileSystem, StdFs, WritableFile};

/// A filesystem that can hold back the creation of table files, which freezes the flush
/// thread so that frozen memtables can be observed.
#[derive(Debug, Default)]
pub struct GateFs {
    closed: Mutex<bool>,
    cv: Condvar,
}

impl GateFs {
    pub fn new() -> Arc<GateFs> {
        Arc::new(GateFs::default())
    }

    /// Blocks table creation until [`GateFs::open_gate`].
    pub fn close_gate(&self) {
        *self.closed.lock() = true;
    }

    pub fn open_gate(&self) {
        *self.closed.lock() = false;
        self.cv.notify_all();
    }
}

impl FileSystem for GateFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        if path.extension().is_some_and(|e| e == "sst") {
            let mut closed = self.closed.lock();
            while *closed {
                self.cv.wait(&mut closed);
            }
        }
        StdFs.create(path)
    }
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        StdFs.open_read(path)
    }
    fn map(&self, path: &Path) -> io::Result<Bytes> {
        StdFs.map(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        StdFs.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        StdFs.remove_file(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }
    fn file_size(&self, path: &Path) -> io::Result<u64> {
        StdFs.file_size(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        StdFs.truncate(path, len)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        StdFs.lock(path)
    }
}

/// `key000042`-style keys that sort numerically.
pub fn k(i: u64) -> String {
    format!("key{i:06}")
}

/// Collects a range iterator into (key, value) string pairs.
pub fn collect(it: impl Iterator<Item = strata::Result<(Bytes, Bytes)>>) -> Vec<(String, String)> {
    it.map(|r| {
        let (k, v) = r.expect("iteration failed");
        (
            String::from_utf8(k.to_vec()).expect("utf8 key"),
            String::from_utf8(v.to_vec()).expect("utf8 value"),
        )
    })
    .collect()
}

/// Everything a store holds, as strings; a failed scan panics with `ctx`.
pub fn contents(db: &strata::Db, ctx: &str) -> std::collections::BTreeMap<String, String> {
    db.iter()
        .map(|r| {
            let (k, v) = r.unwrap_or_else(|e| panic!("{ctx}: scan failed: {e}"));
            (
                String::from_utf8(k.to_vec()).expect("utf8 key"),
                String::from_utf8(v.to_vec()).expect("utf8 value"),
            )
        })
        .collect()
}

/// Copies a store's files (not its lock file) into `to`, which is created.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}
