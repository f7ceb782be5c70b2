//! Start-up failures told as plain sentences that name what failed: the address that could
//! not be bound, the directory that could not be used, the process holding a locked store.

use std::io::ErrorKind;
use std::path::Path;

use crate::Error;

/// Why listening on `addr` (`host:port`) failed, as a sentence.
pub fn bind_error_message(addr: &str, e: &std::io::Error) -> String {
    match e.kind() {
        ErrorKind::AddrInUse => format!(
            "cannot listen on {addr}: the address is already in use (is another server \
             running there? choose another --port)"
        ),
        ErrorKind::PermissionDenied => {
            format!("cannot listen on {addr}: permission denied (ports below 1024 need privileges)")
        }
        ErrorKind::AddrNotAvailable => {
            format!("cannot listen on {addr}: the address does not belong to this machine")
        }
        _ => format!("cannot listen on {addr}: {e}"),
    }
}

/// Why opening the store in `dir` failed, as a sentence.
pub fn open_error_message(dir: &Path, e: &Error) -> String {
    let d = dir.display();
    match e {
        Error::Locked(_) => {
            let holder = lock_holder(&dir.join("LOCK"))
                .map(|h| format!(" (held by {h})"))
                .unwrap_or_default();
            format!(
                "cannot open the store in {d}: another process holds its lock{holder}; stop \
                 it or choose another --data-dir"
            )
        }
        Error::Io { path, source } => {
            let at = path.as_deref().unwrap_or(dir);
            let at = at.display();
            match source.kind() {
                ErrorKind::PermissionDenied => {
                    format!("cannot open the store in {d}: permission denied on {at}")
                }
                ErrorKind::NotADirectory => format!(
                    "cannot open the store in {d}: {at} is not a directory (or a part of its \
                     path is a file)"
                ),
                ErrorKind::AlreadyExists if path.as_deref() == Some(dir) => {
                    format!("cannot open the store in {d}: {d} exists and is not a directory")
                }
                ErrorKind::NotFound => {
                    format!("cannot open the store in {d}: {at} does not exist")
                }
                ErrorKind::StorageFull => {
                    format!("cannot open the store in {d}: no space left on the device")
                }
                ErrorKind::ReadOnlyFilesystem => {
                    format!("cannot open the store in {d}: the filesystem is read-only")
                }
                _ => format!("cannot open the store in {d}: {source} (on {at})"),
            }
        }
        Error::Corruption { .. } => format!(
            "cannot open the store in {d}: it is damaged ({e}); see the recovery modes in \
             the documentation"
        ),
        _ => format!("cannot open the store in {d}: {e}"),
    }
}

/// The process holding the lock on `lock_file`, from `/proc/locks` (Linux; `None`
/// elsewhere or when it cannot be told).
fn lock_holder(lock_file: &Path) -> Option<String> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(lock_file).ok()?.ino();
        let locks = std::fs::read_to_string("/proc/locks").ok()?;
        // "1: FLOCK  ADVISORY  WRITE 4242 08:01:1234567 0 EOF"
        let pid = locks.lines().find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (pid, id) = (fields.get(4)?, fields.get(5)?);
            let inode: u64 = id.rsplit(':').next()?.parse().ok()?;
            (inode == ino).then(|| pid.to_string())
        })?;
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .map(|n| n.trim().to_string())
            .unwrap_or_default();
        Some(if name.is_empty() {
            format!("process {pid}")
        } else {
            format!("process {pid}, {name}")
        })
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = lock_file;
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_errors_name_the_address() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap().to_string();
        let e = std::net::TcpListener::bind(&addr).unwrap_err();
        let m = bind_error_message(&addr, &e);
        assert!(
            m.starts_with(&format!(
                "cannot listen on {addr}: the address is already in use"
            )),
            "{m}"
        );
    }

    #[test]
    fn open_errors_name_the_directory_and_the_lock_holder() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("s");
        let db = crate::Db::open(&store).unwrap();
        let e = crate::Db::open(&store).unwrap_err();
        let m = open_error_message(&store, &e);
        assert!(m.contains(&store.display().to_string()), "{m}");
        assert!(m.contains("another process holds its lock"), "{m}");
        #[cfg(target_os = "linux")]
        assert!(
            m.contains(&format!("process {}", std::process::id())),
            "{m}"
        );
        drop(db);

        // a file where the directory should be
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let e = crate::Db::open(file.join("store")).unwrap_err();
        let m = open_error_message(&file.join("store"), &e);
        assert!(m.contains("is not a directory"), "{m}");
        assert!(!m.contains("Io {"), "{m}");
    }
}
