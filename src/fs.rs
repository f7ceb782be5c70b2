//! The filesystem seam: every file operation the engine performs goes through [`FileSystem`].
//!
//! [`StdFs`] is the real implementation (the default). Tests substitute implementations that
//! inject faults or simulate power loss without touching the engine. The trait is small on
//! purpose: create-and-append, sync, sequential read, whole-file map, rename, remove, list,
//! truncate, directory sync, an exclusive lock, and a hard link (with a copying fallback)
//! for checkpoints.

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::Bytes;

/// A file being written sequentially.
pub trait WritableFile: Send + Debug {
    /// Appends `data` at the current end of the written region. When this returns, the bytes
    /// have been handed to the operating system (they survive a process crash, not a power
    /// loss).
    fn append(&mut self, data: &[u8]) -> io::Result<()>;

    /// Makes everything appended so far durable (`fdatasync`).
    fn sync(&mut self) -> io::Result<()>;

    /// Extends the file with zeros to `len` bytes without moving the append position, so that
    /// later syncs need not update the file size or allocate blocks. Implementations may
    /// ignore it. The real filesystem, once the space is allocated, appends inside it through
    /// a shared memory map: a copy instead of a system call per append.
    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        let _ = len;
        Ok(())
    }

    /// Cuts the file to `len` bytes (dropping any preallocated tail) and syncs it.
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

/// A held exclusive lock; dropping it releases the lock.
pub trait FileLock: Send + Sync + Debug {}

/// An immutable file's content as [`FileSystem::map_file`] returns it.
#[derive(Debug, Clone)]
pub struct MappedFile {
    bytes: Bytes,
    map: Option<crate::mmap::ReadOnlyMap>,
}

impl MappedFile {
    /// Content held in memory, not mapped: releasing pages does nothing.
    pub fn in_memory(bytes: Bytes) -> MappedFile {
        MappedFile { bytes, map: None }
    }

    /// The content.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Drops the pages wholly inside bytes `start..end` from the process's resident set, if
    /// the content is a memory map; it stays readable.
    pub(crate) fn release(&self, start: usize, end: usize) {
        if let Some(m) = &self.map {
            m.release(start, end);
        }
    }
}

/// Every file operation strata performs.
///
/// Paths are absolute or relative to the working directory, exactly as given to
/// [`Db::open`](crate::Db::open).
pub trait FileSystem: Send + Sync + Debug + 'static {
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Creates `path` (truncating an existing file) for sequential writing.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>>;
    /// Opens `path` for sequential reading from the start.
    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>>;
    /// The whole content of an immutable file; the real filesystem maps it into memory.
    fn map(&self, path: &Path) -> io::Result<Bytes>;
    /// [`map`](FileSystem::map), as a [`MappedFile`] that a sequential reader can ask to
    /// drop the pages it has read from the process's resident set. By default the bytes of
    /// `map`, for which that does nothing.
    fn map_file(&self, path: &Path) -> io::Result<MappedFile> {
        Ok(MappedFile::in_memory(self.map(path)?))
    }
    /// Atomically renames `from` to `to`, replacing `to`. `from` may be a directory, in
    /// which case `to` must not exist.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Size of the file in bytes.
    fn file_size(&self, path: &Path) -> io::Result<u64>;
    /// Cuts `path` to `len` bytes and syncs it.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `path`, creating it if needed. Fails with
    /// [`io::ErrorKind::WouldBlock`] when someone else holds it.
    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>>;

    /// Makes `to` (which must not exist) a hard link to the immutable file `from` where the
    /// filesystem allows, and a copy otherwise; returns `true` for a link, `false` for a
    /// copy. A copy is synced; either way the new directory entry becomes durable only with
    /// a [`sync_dir`](FileSystem::sync_dir) of its directory.
    ///
    /// The default implementation copies through [`open_read`](FileSystem::open_read) and
    /// [`create`](FileSystem::create).
    fn link(&self, from: &Path, to: &Path) -> io::Result<bool> {
        copy_file(self, from, to)?;
        Ok(false)
    }

    /// Removes the empty directory `dir` (used to clean up after a failed checkpoint or
    /// restore). The default implementation reports [`io::ErrorKind::Unsupported`].
    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        let _ = dir;
        Err(io::ErrorKind::Unsupported.into())
    }
}

/// Copies `from` to a new file `to` through `fs` and syncs the copy.
pub(crate) fn copy_file<F: FileSystem + ?Sized>(fs: &F, from: &Path, to: &Path) -> io::Result<u64> {
    let mut src = fs.open_read(from)?;
    let mut dst = fs.create(to)?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        dst.append(buf.get(..n).unwrap_or_default())?;
        copied += n as u64;
    }
    dst.sync()?;
    Ok(copied)
}

/// The real filesystem.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdFile {
    file: File,
    /// Set once the file's space is allocated by [`WritableFile::preallocate`]: appends that
    /// fall inside it are copied into this shared map instead of costing a `write(2)` each
    /// (see `mmap`). The file's own cursor then stays put and `pos` is the append position.
    map: Option<crate::mmap::AppendMap>,
    pos: u64,
}

impl StdFile {
    fn new(file: File) -> StdFile {
        StdFile {
            file,
            map: None,
            pos: 0,
        }
    }

    /// Writes `data` at the append position with a system call, leaving the file's cursor.
    fn write_at_pos(&mut self, data: &[u8]) -> io::Result<()> {
        #[cfg(unix)]
        {
            std::os::unix::fs::FileExt::write_all_at(&self.file, data, self.pos)
        }
        #[cfg(not(unix))]
        {
            use std::io::Seek;
            self.file.seek(io::SeekFrom::Start(self.pos))?;
            self.file.write_all(data)
        }
    }

    /// Starts appending through a map of the first `len` bytes, which are allocated.
    #[cfg(target_os = "linux")]
    fn map_allocated(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        let Ok(len) = usize::try_from(len) else {
            return Ok(());
        };
        let pos = self.file.stream_position()?;
        match crate::mmap::AppendMap::new(&self.file, len) {
            Ok(map) => {
                self.pos = pos;
                self.map = Some(map);
            }
            // A filesystem that cannot map files: appends keep using `write(2)`.
            Err(e) => tracing::debug!(error = %e, "appending without a map"),
        }
        Ok(())
    }
}

impl WritableFile for StdFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let Some(map) = &mut self.map else {
            return self.file.write_all(data);
        };
        let copied = usize::try_from(self.pos).is_ok_and(|at| map.write_at(at, data));
        if !copied {
            // Past the allocated space (the last record of a full segment).
            self.write_at_pos(data)?;
        }
        self.pos += data.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn preallocate(&mut self, len: u64) -> io::Result<()> {
        if self.file.metadata()?.len() >= len {
            return Ok(());
        }
        // Allocate the blocks for real: extending with `set_len` makes a sparse file, and a
        // write into a hole then changes metadata that every `fdatasync` has to write too.
        #[cfg(target_os = "linux")]
        match rustix::fs::fallocate(&self.file, rustix::fs::FallocateFlags::empty(), 0, len) {
            Ok(()) => return self.map_allocated(len),
            // A filesystem without fallocate (tmpfs before 3.5, some network filesystems).
            Err(e) if e == rustix::io::Errno::OPNOTSUPP || e == rustix::io::Errno::NOSYS => {}
            Err(e) => return Err(e.into()),
        }
        self.file.set_len(len)
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        // The map goes first: no mapped page may lie past the end of the file.
        if self.map.take().is_some() {
            use std::io::Seek;
            self.file.seek(io::SeekFrom::Start(self.pos.min(len)))?;
        }
        self.file.set_len(len)?;
        self.file.sync_data()
    }
}

#[derive(Debug)]
struct StdLock {
    file: File,
}

impl FileLock for StdLock {}

impl Drop for StdLock {
    /// Unlocks before the descriptor closes: a process another thread is spawning holds a
    /// copy of the descriptor until its exec, and closing ours alone would leave the lock
    /// held until then.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl FileSystem for StdFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WritableFile>> {
        // Readable too: a shared writable map needs it.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(StdFile::new(file)))
    }

    fn open_read(&self, path: &Path) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(io::BufReader::with_capacity(
            256 * 1024,
            File::open(path)?,
        )))
    }

    fn map(&self, path: &Path) -> io::Result<Bytes> {
        crate::mmap::map_readonly(&File::open(path)?)
    }

    fn map_file(&self, path: &Path) -> io::Result<MappedFile> {
        let (bytes, map) = crate::mmap::map_file(&File::open(path)?)?;
        Ok(MappedFile { bytes, map })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            if let Ok(name) = entry?.file_name().into_string() {
                names.push(name);
            }
        }
        Ok(names)
    }

    fn file_size(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock(&self, path: &Path) -> io::Result<Box<dyn FileLock>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Box::new(StdLock { file })),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }

    fn remove_dir(&self, dir: &Path) -> io::Result<()> {
        fs::remove_dir(dir)
    }

    fn link(&self, from: &Path, to: &Path) -> io::Result<bool> {
        match fs::hard_link(from, to) {
            Ok(()) => Ok(true),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists
                ) =>
            {
                Err(e)
            }
            // Another filesystem, or one without hard links: copy.
            Err(_) => {
                copy_file(self, from, to)?;
                Ok(false)
            }
        }
    }
}

/// Creates `dir` and any missing parents, making each creation durable: a new directory is
/// an entry of its parent, so the parent is synced, outermost first. Without this a power
/// cut can take a whole new store, acknowledged writes included.
pub(crate) fn create_dir_durable(fs: &dyn FileSystem, dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    for d in dir.ancestors() {
        if d.as_os_str().is_empty() || d.parent().is_none() {
            break;
        }
        match fs.list(d) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(d),
            Err(e) => return Err(e),
        }
    }
    fs.create_dir_all(dir)?;
    for d in missing.iter().rev() {
        let parent = d
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs.sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn preallocation_allocates_blocks_instead_of_making_a_sparse_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let mut f = StdFs.create(&path).unwrap();
        f.append(b"header").unwrap();
        f.preallocate(1 << 20).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 1 << 20);
        assert!(
            meta.blocks() * 512 >= 1 << 20,
            "a sparse file: {} blocks allocated",
            meta.blocks()
        );
        f.append(b" and more").unwrap();
        f.sync().unwrap();
        let data = fs::read(&path).unwrap();
        assert_eq!(&data[..15], b"header and more");
        assert!(data[15..].iter().all(|&b| b == 0));
    }

    /// Appends into the preallocated space go through a map: they land exactly where
    /// `write(2)` would have put them, other readers see them before any sync, the ones past
    /// the space are written after them, the pages behind the writer leave the resident set,
    /// and truncating keeps exactly the appended bytes.
    #[test]
    fn appends_after_preallocation_read_back_exactly_through_other_handles() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        let mut f = StdFs.create(&path).unwrap();
        let mut expected = b"header".to_vec();
        f.append(&expected).unwrap();
        let space = 4 << 20;
        f.preallocate(space).unwrap();
        let mut i = 0u32;
        while (expected.len() as u64) < space + 10_000 {
            let record: Vec<u8> = (0..(i % 3000) + 1).map(|j| (i + j) as u8 | 1).collect();
            f.append(&record).unwrap();
            expected.extend_from_slice(&record);
            i += 1;
            if i == 200 {
                // Readers see mapped appends at once, before any sync.
                let data = fs::read(&path).unwrap();
                assert_eq!(&data[..expected.len()], &expected[..]);
                assert!(data[expected.len()..].iter().all(|&b| b == 0));
            }
        }
        assert!(
            crate::mmap::resident_bytes_of(&path) <= 2 << 20,
            "{} bytes of the map resident",
            crate::mmap::resident_bytes_of(&path)
        );
        // Past the preallocated space: the file grows.
        let data = fs::read(&path).unwrap();
        assert_eq!(data, expected);
        f.truncate(expected.len() as u64 - 5).unwrap();
        expected.truncate(expected.len() - 5);
        f.append(b"tail").unwrap();
        expected.extend_from_slice(b"tail");
        f.sync().unwrap();
        drop(f);
        assert_eq!(fs::read(&path).unwrap(), expected);
    }

    /// A process spawned by another thread holds a copy of every open descriptor from its
    /// fork to its exec. Dropping the lock must release it even then, or the same process
    /// reopening its store in that window is told the store is locked.
    #[test]
    fn a_dropped_lock_is_released_while_other_threads_spawn_processes() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let stop = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                let exe = std::env::current_exe().unwrap();
                for _ in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let _ = std::process::Command::new(&exe)
                        .arg("--list")
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            });
            let mut refused = 0;
            for _ in 0..20_000 {
                match StdFs.lock(&path) {
                    Ok(lock) => drop(lock),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => refused += 1,
                    Err(e) => panic!("{e}"),
                }
            }
            stop.store(true, Ordering::Relaxed);
            assert_eq!(
                refused, 0,
                "a lock dropped by its only holder was still held"
            );
        });
    }
}
