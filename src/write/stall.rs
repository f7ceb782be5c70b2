//! Backpressure: writes slow down as compaction falls behind and stop at its hard limits, and
//! they wait when frozen memtables pile up faster than the flush thread writes them out.

use std::time::{Duration, Instant};

use crate::compaction::picker;
use crate::config::Config;
use crate::error::Result;
use crate::lifecycle::Lifecycle;
use crate::state::LsmState;
use crate::stats::Counters;
use crate::sync_point::sync_point;
use crate::view::View;

/// How far compaction is behind: 0 below the slowdown thresholds, 1 at the stop thresholds,
/// in between proportionally.
pub(super) fn compaction_pressure(config: &Config, state: &LsmState) -> f64 {
    let c = config;
    let l0 = state.tables.level(0).len() as f64;
    let by_l0 = (l0 - c.l0_slowdown_tables as f64 + 1.0)
        / (c.l0_stop_tables as f64 - c.l0_slowdown_tables as f64 + 1.0);
    let pending = picker::pending_bytes(c, &state.tables) as f64;
    let slow = c.pending_compaction_slowdown_bytes as f64;
    let by_debt = (pending - slow) / (c.pending_compaction_stop_bytes as f64 - slow);
    by_l0.max(by_debt).max(0.0)
}

/// The delay a write takes at `pressure` (between 0 and 1): 0.5 ms at the first threshold,
/// growing to 10 ms next to the stop limit.
pub(super) fn slowdown(pressure: f64) -> Duration {
    Duration::from_micros(500 + (9500.0 * pressure) as u64)
}

/// Waits until compaction brings the tree back under the hard limits.
pub(super) fn stall_for_compaction(
    config: &Config,
    view: &View,
    life: &Lifecycle,
    counters: &Counters,
) -> Result<()> {
    sync_point!(life.sync_points, "write stall: waiting for compaction");
    let start = Instant::now();
    let mut signals = life.signals();
    while signals.error.is_none()
        && !signals.shutdown
        && compaction_pressure(config, &view.current()) >= 1.0
    {
        life.compacted.notify_all();
        life.compacted
            .wait_for(&mut signals, Duration::from_millis(50));
    }
    let outcome = signals.outcome();
    drop(signals);
    counters.note_stall(&counters.stops, &counters.stop_micros, start.elapsed());
    outcome
}

/// Waits until fewer than `max_immutable_memtables` frozen memtables wait for their flush.
pub(super) fn stall_for_flush(
    config: &Config,
    view: &View,
    life: &Lifecycle,
    counters: &Counters,
) -> Result<()> {
    let start = Instant::now();
    let mut signals = life.signals();
    while signals.error.is_none()
        && !signals.shutdown
        && view.current().imms.len() >= config.max_immutable_memtables
    {
        life.flush_wanted.notify_one();
        life.flushed
            .wait_for(&mut signals, Duration::from_millis(50));
    }
    let outcome = signals.outcome();
    drop(signals);
    counters.note_stall(&counters.stalls, &counters.stall_micros, start.elapsed());
    outcome
}
