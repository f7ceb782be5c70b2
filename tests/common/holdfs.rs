//! The real filesystem with a hand on it: a test can hold chosen operations until it lets
//! them go, make one panic, and see what the store did after it gave up its directory lock.
//!
//! Holding an operation freezes exactly the thread that performs it, which is how the tests
//! stop a flush, a compaction or a WAL deletion at a known point and look at what the rest of
//! the store does meanwhile.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use strata::{Bytes, FileLock, FileSystem, StdFs, WritableFile};

/// The operations a rule can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsOp {
    Create,
    Append,
    Sync,
    Preallocate,
    TruncateFile,
    Rename,
    Remove,
    Truncate,
    SyncDir,
}

/// Which operations a rule applies to: the kind, and a file-name suffix (".sst", ".wal").
#[derive(Debug, Clone)]
struct Rule {
    op: FsOp,
    suffix: String,
    /// Matching operations still let through before the rule bites.
    let_through: u64,
    /// Only operations performed by the thread of this name, when set.
    thread: Option<String>,
}

impl Rule {
    fn matches(&self, op: FsOp, path: &Path) -> bool {
        self.op == op
            && path.to_string_lossy().ends_with(&self.suffix)
            && self
                .thread
                .as_deref()
                .is_none_or(|t| std::thread::current().name() == Some(t))
    }
}

#[derive(Debug, Default)]
struct State {
    hold: Option<Rule>,
    panic: Option<Rule>,
    /// Operations blocked by the hold right now.
    held: usize,
    /// Operations the hold has blocked so far.
    ever_held: u64,
    /// The store holds its directory lock.
    locked: bool,
    /// The lock was released at least once.
    unlocked: bool,
    /// Writes performed after the lock was released, as "op path".
    after_unlock: Vec<String>,
    /// Every operation, with the name of the thread that performed it, while recording.
    log: Option<Vec<(String, FsOp, PathBuf)>>,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    cv: Condvar,
}

impl Shared {
    /// Runs the rules for one operation: records it, panics or blocks as asked.
    fn gate(&self, op: FsOp, path: &Path) {
        let mut s = self.state.lock();
        if s.unlocked && !s.locked {
            s.after_unlock.push(format!("{op:?} {}", path.display()));
        }
        if let Some(log) = &mut s.log {
            let thread = std::thread::current().name().unwrap_or("").to_string();
            log.push((thread, op, path.to_path_buf()));
        }
        if let Some(rule) = &mut s.panic
            && rule.matches(op, path)
        {
            if rule.let_through > 0 {
                rule.let_through -= 1;
            } else {
                s.panic = None;
                drop(s);
                panic!("injected panic in {op:?} of {}", path.display());
            }
        }
        let mut blocked = false;
        loop {
            let bites = match &mut s.hold {
                Some(rule) if rule.matches(op, path) => {
                    if rule.let_through > 0 {
                        rule.let_through -= 1;
                        false
                    } else {
                        true
                    }
                }
                _ => false,
            };
            if !bites {
                break;
            }
            if !blocked {
                blocked = true;
                s.held += 1;
                s.ever_held += 1;
                self.cv.notify_all();
            }
            self.cv.wait(&mut s);
        }
        if blocked {
            s.held -= 1;
            self.cv.notify_all();
        }
    }
}

/// The wrapper. Share it as `Arc<HoldFs>`.
#[derive(Debug, Default)]
pub struct HoldFs {
    shared: Arc<Shared>,
}

impl HoldFs {
    pub fn new() -> Arc<HoldFs> {
        Arc::new(HoldFs::default())
    }

    /// Blocks every `op` on a file whose name ends in `suffix`, after letting `let_through`
    /// of them pass, until [`HoldFs::release`].
    pub fn hold(&self, op: FsOp, suffix: &str, let_through: u64) {
        self.shared.state.lock().hold = Some(Rule {
            op,
            suffix: suffix.to_string(),
            let_through,
            thread: None,
        });
    }

    /// Like [`HoldFs::hold`] with nothing let through, but only for operations performed by
    /// the thread named `thread` (the store names its flush and compaction threads).
    pub fn hold_in_thread(&self, op: FsOp, suffix: &str, thread: &str) {
        self.shared.state.lock().hold = Some(Rule {
            op,
            suffix: suffix.to_string(),
            let_through: 0,
            thread: Some(thread.to_string()),
        });
    }

    /// Lets `n` more matching operations through, held ones or later ones; holds the rest.
    pub fn allow(&self, n: u64) {
        if let Some(rule) = &mut self.shared.state.lock().hold {
            rule.let_through += n;
        }
        self.shared.cv.notify_all();
    }

    /// Lets every held operation go and stops holding.
    pub fn release(&self) {
        self.shared.state.lock().hold = None;
        self.shared.cv.notify_all();
    }

    /// Waits until at least `n` operations have been held so far; false on timeout.
    pub fn wait_held(&self, n: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.state.lock();
        while s.ever_held < n {
            if self.shared.cv.wait_until(&mut s, deadline).timed_out() {
                return s.ever_held >= n;
            }
        }
        true
    }

    /// Operations blocked right now.
    pub fn held(&self) -> usize {
        self.shared.state.lock().held
    }

    /// Makes the `let_through + 1`-th `op` on a file ending in `suffix` panic (once).
    pub fn panic_on(&self, op: FsOp, suffix: &str, let_through: u64) {
        self.shared.state.lock().panic = Some(Rule {
            op,
            suffix: suffix.to_string(),
            let_through,
            thread: None,
        });
    }

    /// Waits until the store releases its directory lock; false on timeout.
    pub fn wait_unlocked(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.shared.state.lock();
        while !s.unlocked || s.locked {
            if self.shared.cv.wait_until(&mut s, deadline).timed_out() {
                return s.unlocked && !s.locked;
            }
        }
        true
    }

    /// Writes the store made after it released its directory lock.
    pub fn writes_after_unlock(&self) -> Vec<String> {
        self.shared.state.lock().after_unlock.clone()
    }

    /// Starts recording every operation with the thread that performed it.
    pub fn record(&self) {
        self.shared.state.lock().log = Some(Vec::new());
    }

    /// The operations recorded so far, as (thread name, op, path).
    pub fn recorded(&self) -> Vec<(String, FsOp, PathBuf)> {
        self.shared.state.lock().log.clone().unwrap_or_default()
    }
}

#[derive(Debug)]
struct HoldFile {
    inner: Box<dyn WritableFile>,
    path: PathBuf,
    shared: Arc<Shared>,
}

impl WritableFile for HoldFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        self.shared.gate(FsOp::Append, &self.path);
        self.inner.append(data)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.shared.gate(FsOp::Sync, &self.path);
        self.inner.sync()
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        self.shared.gate(FsOp::Preallocate, &self.path);
        self.inner.preallocate(len)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.shared.gate(FsOp::TruncateFile, &self.path);
        self.inner.truncate(len)
    }
}

#[derive(Debug)]
struct HoldLock {
    _inner: Box<dyn FileLock>,
    shared: Arc<Shared>,
}

impl FileLock for HoldLock {}

impl Drop for HoldLock {
    fn drop(&mut self) {
        let mut s = self.shared.state.lock();
        s.locked = false;
        s.unlocked = true;
        self.shared.cv.notify_all();
    }
}

impl FileSystem for HoldFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        StdFs.create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        self.shared.gate(FsOp::Create, path);
        Ok(Box::new(HoldFile {
            inner: StdFs.create(path)?,
            path: path.to_path_buf(),
            shared: Arc::clone(&self.shared),
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn io::Read + Send>> {
        StdFs.open_read(path)
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        StdFs.map(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.shared.gate(FsOp::Rename, to);
        StdFs.rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.shared.gate(FsOp::Remove, path);
        StdFs.remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        StdFs.list(dir)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        StdFs.file_size(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.shared.gate(FsOp::Truncate, path);
        StdFs.truncate(path, len)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.shared.gate(FsOp::SyncDir, dir);
        StdFs.sync_dir(dir)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let inner = StdFs.lock(path)?;
        let mut s = self.shared.state.lock();
        s.locked = true;
        Ok(Box::new(HoldLock {
            _inner: inner,
            shared: Arc::clone(&self.shared),
        }))
    }
}
