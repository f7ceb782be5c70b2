//! Named points in the engine where the crate's own tests stop or watch a thread at a chosen
//! moment, to force an interleaving deterministically (after RocksDB's sync points).
//!
//! `sync_point!(points, "name")` marks a point; outside `cfg(test)` it compiles to nothing.

#[cfg(test)]
use std::collections::HashMap;
#[cfg(test)]
use std::sync::Arc;

#[cfg(test)]
use parking_lot::Mutex;

/// A callback run by a thread that reaches a point.
#[cfg(test)]
type Callback = Arc<dyn Fn() + Send + Sync>;

/// The callbacks installed on one store's points.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct SyncPoints {
    callbacks: Mutex<HashMap<&'static str, Callback>>,
}

#[cfg(test)]
impl std::fmt::Debug for SyncPoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncPoints").finish_non_exhaustive()
    }
}

#[cfg(test)]
impl SyncPoints {
    /// Runs `f` in every thread that reaches point `name` from now on.
    pub(crate) fn set(&self, name: &'static str, f: impl Fn() + Send + Sync + 'static) {
        self.callbacks.lock().insert(name, Arc::new(f));
    }

    /// Called at point `name`.
    pub(crate) fn hit(&self, name: &'static str) {
        let f = self.callbacks.lock().get(name).cloned();
        if let Some(f) = f {
            f();
        }
    }
}

/// Marks a sync point; `$points` is a `SyncPoints`. Nothing outside the crate's tests.
macro_rules! sync_point {
    ($points:expr, $name:literal) => {
        #[cfg(test)]
        $points.hit($name);
    };
}
pub(crate) use sync_point;
