//! The open-file limit: every connection is a file descriptor, so the server raises its soft
//! `RLIMIT_NOFILE` to the hard limit at start and sizes its connection cap to fit.

/// The process's open-file limits, before and after [`raise_open_file_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFileLimits {
    /// The soft limit found at start (`None` = unlimited).
    pub soft_before: Option<u64>,
    /// The soft limit now.
    pub soft: Option<u64>,
    /// The hard limit (`None` = unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft open-file limit to the hard limit and reports both. On platforms without
/// `RLIMIT_NOFILE`, or when the raise fails, the limits are reported unchanged.
#[cfg(unix)]
pub fn raise_open_file_limit() -> OpenFileLimits {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let mut soft = before.current;
    if before.current != before.maximum {
        let raised = Rlimit {
            current: before.maximum,
            maximum: before.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => soft = getrlimit(Resource::Nofile).current,
            Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
        }
    }
    OpenFileLimits {
        soft_before: before.current,
        soft,
        hard: before.maximum,
    }
}

/// Raises the soft open-file limit to the hard limit and reports both. On platforms without
/// `RLIMIT_NOFILE`, or when the raise fails, the limits are reported unchanged.
#[cfg(not(unix))]
pub fn raise_open_file_limit() -> OpenFileLimits {
    OpenFileLimits {
        soft_before: None,
        soft: None,
        hard: None,
    }
}

/// File descriptors kept for the store's files, the listener and the process itself.
const RESERVED_FDS: u64 = 256;

/// The connection cap that fits under `soft` open files: `wanted`, or less.
pub(crate) fn fitting_connections(wanted: usize, soft: Option<u64>) -> usize {
    match soft {
        None => wanted,
        Some(s) => {
            let room = usize::try_from(s.saturating_sub(RESERVED_FDS)).unwrap_or(usize::MAX);
            wanted.min(room.max(16))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit_and_bounds_connections() {
        let l = raise_open_file_limit();
        if let (Some(before), Some(now)) = (l.soft_before, l.soft) {
            assert!(now >= before);
        }
        assert_eq!(fitting_connections(8192, None), 8192);
        assert_eq!(fitting_connections(8192, Some(1024)), 768);
        assert_eq!(fitting_connections(100, Some(1 << 20)), 100);
        assert_eq!(fitting_connections(8192, Some(100)), 16);
    }
}
