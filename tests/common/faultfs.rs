//! An in-memory filesystem that knows what is durable, for power-loss and I/O-error tests.
//!
//! Every file keeps two images: what readers see now, and what the last `sync` made
//! durable, plus the writes made since. Every directory keeps the entries (creations,
//! renames, removals) made durable by the last `sync_dir`, plus the changes since. A power
//! cut ([`FaultFs::crash`]) builds the filesystem a machine would find on reboot: the durable
//! images, plus — depending on the [`Crash`] mode — nothing, a random part, or all but a torn
//! end of what was not yet durable; a process crash keeps everything, still not durable. A
//! cut can also be planned at the n-th operation ([`FaultFs::crash_at`]), whichever thread
//! performs it. Injected failures ([`FaultFs::fail`]) return EIO or ENOSPC from a chosen
//! operation; a failing append may leave part of its bytes behind, as a short write does.
//! Hard links share an inode; a directory rename is a change to the parent directory, made
//! durable by syncing the parent, as on a real filesystem.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{self, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use strata::{Bytes, FileLock, FileSystem, WritableFile};

/// A small deterministic generator (SplitMix64), so that every failure names a seed that
/// replays it.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent`/100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// What survives a power cut besides the durable state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Crash {
    /// Nothing that was not synced: every unsynced byte and every directory change not made
    /// durable by a directory sync is gone.
    DropUnsynced,
    /// A random part of the unsynced writes and directory changes survives, in any order
    /// (the page cache writes back whatever it likes), and one surviving write may be torn.
    KeepRandom,
    /// Everything reached the disk except the end of the very last write (a crash in the
    /// middle of a `write`).
    TearLastWrite,
    /// Not a power cut but a process crash: the operating system keeps every write, and
    /// what was not durable stays not durable (a later power cut can still lose it).
    Process,
}

/// The operations failures can be injected into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Append,
    Sync,
    Preallocate,
    TruncateFile,
    OpenRead,
    Map,
    Rename,
    Remove,
    List,
    FileSize,
    Truncate,
    SyncDir,
    Lock,
    CreateDir,
    Link,
}

impl Op {
    /// Operations that change what is on disk.
    pub const WRITES: &'static [Op] = &[
        Op::Create,
        Op::Append,
        Op::Sync,
        Op::Preallocate,
        Op::TruncateFile,
        Op::Rename,
        Op::Remove,
        Op::Truncate,
        Op::SyncDir,
    ];
}

/// The error an injected failure returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// EIO.
    Eio,
    /// ENOSPC.
    NoSpace,
}

impl Fault {
    fn error(self) -> io::Error {
        match self {
            Fault::Eio => io::Error::from_raw_os_error(5),
            Fault::NoSpace => io::Error::from_raw_os_error(28),
        }
    }
}

#[derive(Debug)]
struct FailPoint {
    ops: Vec<Op>,
    /// Path substring the operation must involve (empty = any).
    path: String,
    /// Matching operations to let through before failing.
    skip: u64,
    fault: Fault,
}

/// A change to a file's bytes not yet made durable.
#[derive(Debug, Clone)]
enum Change {
    Write { at: usize, data: Vec<u8> },
    SetLen(usize),
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Change>,
}

impl Inode {
    fn apply(buf: &mut Vec<u8>, change: &Change) {
        match change {
            Change::Write { at, data } => {
                if buf.len() < at + data.len() {
                    buf.resize(at + data.len(), 0);
                }
                buf[*at..at + data.len()].copy_from_slice(data);
            }
            Change::SetLen(n) => buf.resize(*n, 0),
        }
    }

    fn change(&mut self, c: Change) {
        Self::apply(&mut self.data, &c);
        self.pending.push(c);
    }

    fn sync(&mut self) {
        self.durable.clone_from(&self.data);
        self.pending.clear();
    }
}

/// A directory change not yet made durable: durable once its parent directory is synced.
#[derive(Debug, Clone)]
enum DirChange {
    Link(PathBuf, u64),
    Rename(PathBuf, PathBuf),
    Unlink(PathBuf),
    Mkdir(PathBuf),
    /// A directory renamed, with everything in it.
    RenameDir(PathBuf, PathBuf),
}

impl DirChange {
    fn dir(&self) -> &Path {
        let p = match self {
            DirChange::Link(p, _)
            | DirChange::Rename(p, _)
            | DirChange::Unlink(p)
            | DirChange::Mkdir(p)
            | DirChange::RenameDir(p, _) => p,
        };
        p.parent().unwrap_or(Path::new(""))
    }

    fn apply(&self, entries: &mut BTreeMap<PathBuf, u64>, dirs: &mut BTreeSet<PathBuf>) {
        match self {
            DirChange::Mkdir(p) => {
                dirs.insert(p.clone());
            }
            DirChange::Link(p, ino) => {
                entries.insert(p.clone(), *ino);
            }
            DirChange::Rename(from, to) => {
                if let Some(ino) = entries.remove(from) {
                    entries.insert(to.clone(), ino);
                }
            }
            DirChange::Unlink(p) => {
                entries.remove(p);
            }
            DirChange::RenameDir(from, to) => {
                let moved: Vec<PathBuf> = entries
                    .keys()
                    .filter(|p| p.parent() == Some(from.as_path()))
                    .cloned()
                    .collect();
                for p in moved {
                    if let Some(ino) = entries.remove(&p) {
                        entries.insert(to.join(p.file_name().expect("name")), ino);
                    }
                }
                if dirs.remove(from) {
                    dirs.insert(to.clone());
                }
            }
        }
    }
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    /// Entries as seen now.
    entries: BTreeMap<PathBuf, u64>,
    /// Entries as of the last directory sync.
    durable_entries: BTreeMap<PathBuf, u64>,
    dir_pending: Vec<DirChange>,
    /// Directories as seen now.
    dirs: BTreeSet<PathBuf>,
    /// Directories whose creation a sync of their parent made durable.
    durable_dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    /// The inode of the most recent append, for [`Crash::TearLastWrite`].
    last_write: Option<u64>,
    fail: Option<FailPoint>,
    injected: u64,
    ops: u64,
    /// A planned power cut: at which operation, how, with which randomness.
    crash_at: Option<(u64, Crash, Rng)>,
    /// The disk as the planned power cut left it.
    crashed: Option<Box<State>>,
}

/// The fault-injecting filesystem. Cheap to share: `Arc<FaultFs>` is what the store gets.
#[derive(Debug, Default)]
pub struct FaultFs {
    state: Arc<Mutex<State>>,
}

impl FaultFs {
    pub fn new() -> Arc<FaultFs> {
        Arc::new(FaultFs::default())
    }

    /// Makes the `skip`-th next operation among `ops` whose path contains `path` fail with
    /// `fault` (once).
    pub fn fail(&self, ops: &[Op], path: &str, skip: u64, fault: Fault) {
        self.state.lock().fail = Some(FailPoint {
            ops: ops.to_vec(),
            path: path.to_string(),
            skip,
            fault,
        });
    }

    /// Removes a pending failure.
    pub fn disarm(&self) {
        self.state.lock().fail = None;
    }

    /// How many failures were injected so far.
    pub fn injected(&self) -> u64 {
        self.state.lock().injected
    }

    /// Operations performed so far.
    pub fn ops(&self) -> u64 {
        self.state.lock().ops
    }

    /// The filesystem found after a power cut now. The old one is left as it is (a store
    /// still running on it writes into the void).
    pub fn crash(&self, mode: Crash, rng: &mut Rng) -> Arc<FaultFs> {
        let image = self.state.lock().image(mode, rng);
        Arc::new(FaultFs {
            state: Arc::new(Mutex::new(image)),
        })
    }

    /// Arranges a power cut just before the operation that is `ops_from_now` operations
    /// away (counting every operation), whichever thread performs it. The filesystem keeps
    /// working; [`FaultFs::take_crashed`] hands out what the disk held at the cut.
    pub fn crash_at(&self, ops_from_now: u64, mode: Crash, rng: Rng) {
        let mut s = self.state.lock();
        s.crash_at = Some((s.ops + ops_from_now, mode, rng));
    }

    /// True once a planned power cut happened.
    pub fn crashed(&self) -> bool {
        self.state.lock().crashed.is_some()
    }

    /// The filesystem found after the planned power cut, if it happened.
    pub fn take_crashed(&self) -> Option<Arc<FaultFs>> {
        let image = self.state.lock().crashed.take()?;
        Some(Arc::new(FaultFs {
            state: Arc::new(Mutex::new(*image)),
        }))
    }

    /// An identical, independent copy of this filesystem, pending changes included (what a
    /// process crash leaves).
    pub fn fork(&self) -> Arc<FaultFs> {
        let image = self.state.lock().image(Crash::Process, &mut Rng::new(0));
        Arc::new(FaultFs {
            state: Arc::new(Mutex::new(image)),
        })
    }

    /// The bytes of `path` as readers see them, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.state.lock();
        let ino = s.entries.get(path)?;
        Some(s.inodes[ino].data.clone())
    }

    /// Damage on the medium: XORs byte `at` of `path` with `mask`, in what readers see now
    /// and in the durable image.
    pub fn flip(&self, path: &Path, at: usize, mask: u8) {
        let mut s = self.state.lock();
        let ino = s.entries[path];
        let inode = s.inodes.get_mut(&ino).expect("inode");
        inode.data[at] ^= mask;
        if let Some(b) = inode.durable.get_mut(at) {
            *b ^= mask;
        }
    }

    /// Paths of the files whose names contain `part`, sorted.
    pub fn files_named(&self, part: &str) -> Vec<PathBuf> {
        let s = self.state.lock();
        s.entries
            .keys()
            .filter(|p| p.to_string_lossy().contains(part))
            .cloned()
            .collect()
    }

    /// The current content of every file (for debugging a failed seed).
    pub fn listing(&self) -> Vec<(PathBuf, usize, usize)> {
        let s = self.state.lock();
        s.entries
            .iter()
            .map(|(p, ino)| {
                (
                    p.clone(),
                    s.inodes[ino].data.len(),
                    s.inodes[ino].durable.len(),
                )
            })
            .collect()
    }
}

impl State {
    /// What a reboot after a power cut now would find.
    fn image(&self, mode: Crash, rng: &mut Rng) -> State {
        let s = self;
        if mode == Crash::Process {
            return State {
                inodes: s.inodes.clone(),
                next_ino: s.next_ino,
                entries: s.entries.clone(),
                durable_entries: s.durable_entries.clone(),
                dir_pending: s.dir_pending.clone(),
                dirs: s.dirs.clone(),
                durable_dirs: s.durable_dirs.clone(),
                ..State::default()
            };
        }
        let mut entries = s.durable_entries.clone();
        let mut dirs = s.durable_dirs.clone();
        // (`dirs` is rebuilt below without the unreachable ones.)
        for change in &s.dir_pending {
            let survives = match mode {
                Crash::DropUnsynced => false,
                Crash::KeepRandom => rng.chance(50),
                Crash::TearLastWrite | Crash::Process => true,
            };
            if survives {
                change.apply(&mut entries, &mut dirs);
            }
        }
        // Whatever sat in a directory whose own entry was lost is lost with it.
        let reachable = |p: &Path| {
            p.ancestors()
                .skip(1)
                .all(|a| a.parent().is_none() || dirs.contains(a))
        };
        let live: BTreeSet<PathBuf> = dirs.iter().filter(|d| reachable(d)).cloned().collect();
        entries.retain(|p, _| reachable(p));
        let dirs = live;
        let mut out = State {
            durable_dirs: dirs.clone(),
            dirs,
            next_ino: s.next_ino,
            ..State::default()
        };
        for (path, ino) in entries {
            let inode = &s.inodes[&ino];
            let mut data = inode.durable.clone();
            match mode {
                Crash::DropUnsynced | Crash::Process => {}
                Crash::KeepRandom => {
                    let torn = rng.below(inode.pending.len() as u64 + 1) as usize;
                    for (i, c) in inode.pending.iter().enumerate() {
                        if !rng.chance(50) {
                            continue;
                        }
                        match c {
                            Change::Write { at, data: bytes } if i == torn => {
                                let keep = rng.below(bytes.len() as u64 + 1) as usize;
                                Inode::apply(
                                    &mut data,
                                    &Change::Write {
                                        at: *at,
                                        data: bytes[..keep].to_vec(),
                                    },
                                );
                            }
                            other => Inode::apply(&mut data, other),
                        }
                    }
                }
                Crash::TearLastWrite => {
                    let (last, earlier) = match inode.pending.split_last() {
                        Some((last, earlier)) if s.last_write == Some(ino) => (Some(last), earlier),
                        _ => (None, &inode.pending[..]),
                    };
                    for c in earlier {
                        Inode::apply(&mut data, c);
                    }
                    match last {
                        // Only a prefix of the last write made it.
                        Some(Change::Write { at, data: bytes }) => {
                            let keep = rng.below(bytes.len() as u64 + 1) as usize;
                            let torn = Change::Write {
                                at: *at,
                                data: bytes[..keep].to_vec(),
                            };
                            Inode::apply(&mut data, &torn);
                        }
                        Some(other) => Inode::apply(&mut data, other),
                        None => {}
                    }
                }
            }
            let new_ino = out.inodes.len() as u64;
            out.inodes.insert(
                new_ino,
                Inode {
                    durable: data.clone(),
                    data,
                    pending: Vec::new(),
                },
            );
            out.entries.insert(path.clone(), new_ino);
            out.durable_entries.insert(path, new_ino);
        }
        out.next_ino = out.inodes.len() as u64;
        out
    }

    /// Counts an operation, takes a planned power-cut image, and decides whether the
    /// operation fails.
    fn check(&mut self, op: Op, path: &Path) -> io::Result<()> {
        self.ops += 1;
        if let Some((at, mode, mut rng)) = self.crash_at.take() {
            if self.ops >= at {
                self.crashed = Some(Box::new(self.image(mode, &mut rng)));
            } else {
                self.crash_at = Some((at, mode, rng));
            }
        }
        let Some(fp) = &mut self.fail else {
            return Ok(());
        };
        if !fp.ops.contains(&op) || !path.to_string_lossy().contains(fp.path.as_str()) {
            return Ok(());
        }
        if fp.skip > 0 {
            fp.skip -= 1;
            return Ok(());
        }
        let fault = fp.fault;
        self.fail = None;
        self.injected += 1;
        Err(fault.error())
    }

    fn inode_of(&self, path: &Path) -> io::Result<u64> {
        self.entries
            .get(path)
            .copied()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }
}

#[derive(Debug)]
struct File {
    state: Arc<Mutex<State>>,
    ino: u64,
    path: PathBuf,
    pos: usize,
}

impl WritableFile for File {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut s = self.state.lock();
        if let Err(e) = s.check(Op::Append, &self.path) {
            // A short write: part of the bytes may have landed before the failure.
            let part = data.len() / 2;
            let inode = s.inodes.get_mut(&self.ino).expect("inode");
            inode.change(Change::Write {
                at: self.pos,
                data: data[..part].to_vec(),
            });
            return Err(e);
        }
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        inode.change(Change::Write {
            at: self.pos,
            data: data.to_vec(),
        });
        self.pos += data.len();
        s.last_write = Some(self.ino);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Sync, &self.path)?;
        s.inodes.get_mut(&self.ino).expect("inode").sync();
        Ok(())
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Preallocate, &self.path)?;
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        if inode.data.len() < len as usize {
            inode.change(Change::SetLen(len as usize));
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::TruncateFile, &self.path)?;
        let inode = s.inodes.get_mut(&self.ino).expect("inode");
        inode.change(Change::SetLen(len as usize));
        inode.sync();
        Ok(())
    }
}

#[derive(Debug)]
struct Lock {
    state: Arc<Mutex<State>>,
    path: PathBuf,
}

impl FileLock for Lock {}

impl Drop for Lock {
    fn drop(&mut self) {
        self.state.lock().locks.remove(&self.path);
    }
}

impl FileSystem for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::CreateDir, dir)?;
        // Parents first; the root always exists. Each creation is durable only once its
        // parent directory is synced.
        let mut missing: Vec<&Path> = dir
            .ancestors()
            .filter(|a| a.parent().is_some() && !s.dirs.contains(*a))
            .collect();
        missing.reverse();
        for d in missing {
            s.dirs.insert(d.to_path_buf());
            s.dir_pending.push(DirChange::Mkdir(d.to_path_buf()));
        }
        Ok(())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        let mut s = self.state.lock();
        s.check(Op::Create, path)?;
        let ino = match s.entries.get(path) {
            Some(&ino) => {
                s.inodes
                    .get_mut(&ino)
                    .expect("inode")
                    .change(Change::SetLen(0));
                ino
            }
            None => {
                let ino = s.next_ino;
                s.next_ino += 1;
                s.inodes.insert(ino, Inode::default());
                s.entries.insert(path.to_path_buf(), ino);
                s.dir_pending.push(DirChange::Link(path.to_path_buf(), ino));
                ino
            }
        };
        Ok(Box::new(File {
            state: Arc::clone(&self.state),
            ino,
            path: path.to_path_buf(),
            pos: 0,
        }))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        let mut s = self.state.lock();
        s.check(Op::OpenRead, path)?;
        let ino = s.inode_of(path)?;
        Ok(Box::new(Cursor::new(s.inodes[&ino].data.clone())))
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        let mut s = self.state.lock();
        s.check(Op::Map, path)?;
        let ino = s.inode_of(path)?;
        Ok(Bytes::from(s.inodes[&ino].data.clone()))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Rename, from)?;
        if s.dirs.contains(from) {
            if s.dirs.contains(to) || s.entries.contains_key(to) {
                return Err(io::ErrorKind::AlreadyExists.into());
            }
            let change = DirChange::RenameDir(from.to_path_buf(), to.to_path_buf());
            let State { entries, dirs, .. } = &mut *s;
            change.apply(entries, dirs);
            s.dir_pending.push(change);
            return Ok(());
        }
        let ino = s.inode_of(from)?;
        s.entries.remove(from);
        s.entries.insert(to.to_path_buf(), ino);
        s.dir_pending
            .push(DirChange::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Remove, path)?;
        s.inode_of(path)?;
        s.entries.remove(path);
        s.dir_pending.push(DirChange::Unlink(path.to_path_buf()));
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut s = self.state.lock();
        s.check(Op::List, dir)?;
        if !s.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        Ok(s.entries
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_string))
            .collect())
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        let mut s = self.state.lock();
        s.check(Op::FileSize, path)?;
        let ino = s.inode_of(path)?;
        Ok(s.inodes[&ino].data.len() as u64)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Truncate, path)?;
        let ino = s.inode_of(path)?;
        let inode = s.inodes.get_mut(&ino).expect("inode");
        inode.change(Change::SetLen(len as usize));
        inode.sync();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::SyncDir, dir)?;
        let pending = std::mem::take(&mut s.dir_pending);
        let mut rest = Vec::new();
        for change in pending {
            if change.dir() == dir {
                let State {
                    durable_entries,
                    durable_dirs,
                    ..
                } = &mut *s;
                change.apply(durable_entries, durable_dirs);
            } else {
                rest.push(change);
            }
        }
        s.dir_pending = rest;
        Ok(())
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.state.lock();
        s.check(Op::Remove, dir)?;
        if s.entries.keys().any(|p| p.parent() == Some(dir)) {
            return Err(io::Error::other("directory not empty"));
        }
        if !s.dirs.remove(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        s.durable_dirs.remove(dir);
        Ok(())
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<bool> {
        let mut s = self.state.lock();
        s.check(Op::Link, to)?;
        let ino = s.inode_of(from)?;
        if s.entries.contains_key(to) {
            return Err(io::ErrorKind::AlreadyExists.into());
        }
        s.entries.insert(to.to_path_buf(), ino);
        s.dir_pending.push(DirChange::Link(to.to_path_buf(), ino));
        Ok(true)
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let mut s = self.state.lock();
        s.check(Op::Lock, path)?;
        if !s.locks.insert(path.to_path_buf()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(Lock {
            state: Arc::clone(&self.state),
            path: path.to_path_buf(),
        }))
    }
}
