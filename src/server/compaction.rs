//! Seed B's compaction endpoints, mapped to the store's compaction controls:
//! `POST /compaction/run?force=`, `GET /compaction/status`,
//! `POST /compaction/configure?enabled=&interval=`.
//!
//! - `run` is [`Db::try_compact`](crate::Db::try_compact): a full compaction, skipped (zero
//!   figures) while one runs or, without `force`, within the minimum interval of the last.
//!   `segments_compacted` is the number of tables the compaction read and `entries_removed`
//!   the entries it dropped (versions past retention and deleted keys).
//! - `status` reports the periodic schedule and the store's recent runs (every kind; each
//!   with its `reason`), newest last. Timestamps are UTC, ISO-8601 with microseconds.
//! - `configure` changes the periodic schedule; an interval under 60 s becomes 60 s (seed B's
//!   rule), and the answer echoes the values applied.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};

use super::error::{Api, ApiError};
use super::input::Query;
use super::reply::Reply;
use super::state::AppState;
use crate::{CompactionReason, CompactionRun};

const API: Api = Api::Versioned;

/// Runs shown by `/compaction/status` (seed B keeps ten).
const HISTORY_SHOWN: usize = 10;
/// Shortest periodic interval `configure` applies, in seconds.
const MIN_INTERVAL_SECS: u64 = 60;

/// `2023-08-25T14:30:45.123456` (UTC) for a point in time.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let secs = d.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (proleptic Gregorian calendar).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_micros()
    )
}

fn reason(r: CompactionReason) -> &'static str {
    match r {
        CompactionReason::Manual => "manual",
        CompactionReason::Periodic => "periodic",
        CompactionReason::Automatic => "automatic",
        CompactionReason::Reads => "reads",
    }
}

fn run_json(run: &CompactionRun) -> Value {
    json!({
        "timestamp": iso8601(run.started_at),
        "duration_seconds": run.duration.as_secs_f64(),
        "segments_compacted": run.tables_in,
        "entries_removed": run.entries_dropped,
        "reason": reason(run.reason),
    })
}

/// `POST /compaction/run?force=` → `{"status":"success","segments_compacted","entries_removed"}`.
pub(crate) async fn run(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    let force = q.bool(API, "force")?.unwrap_or(false);
    let db = state.db().clone();
    // A compaction can take long: give it a thread of its own rather than a reader's.
    let result = tokio::task::spawn_blocking(move || db.try_compact(force))
        .await
        .map_err(|e| ApiError::internal(API, format!("compaction task failed: {e}")))?;
    match result {
        Ok(run) => {
            let (tables, dropped) = run.map_or((0, 0), |r| (r.tables_in as u64, r.entries_dropped));
            Ok(Reply::ok(&json!({
                "status": "success",
                "segments_compacted": tables,
                "entries_removed": dropped,
            })))
        }
        Err(e) => {
            let mut err = ApiError::store(API, &e);
            err.message = format!("Compaction error: {e}");
            Err(err)
        }
    }
}

/// `GET /compaction/status`.
pub(crate) async fn status(State(state): State<AppState>) -> Result<Reply, ApiError> {
    state
        .blocking(API, |s| {
            let st = s.db().compaction_status();
            let skip = st.history.len().saturating_sub(HISTORY_SHOWN);
            let history: Vec<Value> = st.history.iter().skip(skip).map(run_json).collect();
            Ok(Reply::ok(&json!({
                "enabled": st.periodic.enabled,
                "compaction_interval_seconds": st.periodic.interval.as_secs(),
                "min_compaction_interval_seconds": st.periodic.min_interval.as_secs(),
                "last_compaction": st.last_run.as_ref().map(|r| iso8601(r.started_at)),
                "compaction_running": st.running,
                "compaction_current": st.current.as_ref().map(|c| json!({
                    "started": iso8601(c.started_at),
                    "reason": reason(c.reason),
                    "output_level": c.output_level,
                    "tables_in": c.tables_in,
                    "bytes_in": c.bytes_in,
                    "tables_out": c.tables_out,
                    "bytes_out": c.bytes_out,
                    "shown_to_reads": c.shown_to_reads,
                })),
                "compaction_history": history,
                "error": st.error,
            })))
        })
        .await
}

/// `POST /compaction/configure?enabled=&interval=` → `{"status":"success","changes":{..}}`.
pub(crate) async fn configure(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> Result<Reply, ApiError> {
    let q = Query::parse(API, raw.as_deref())?;
    let enabled = q.bool(API, "enabled")?;
    let interval = match q.int(API, StatusCode::UNPROCESSABLE_ENTITY, "interval")? {
        None => None,
        Some(i) if i < 0 => {
            return Err(ApiError::unprocessable(
                API,
                format!("interval must be a non-negative number of seconds, got {i}"),
            ));
        }
        Some(i) => Some(i.unsigned_abs().max(MIN_INTERVAL_SECS)),
    };
    state
        .blocking(API, move |s| {
            let mut periodic = s.db().compaction_status().periodic;
            let mut changes = Map::new();
            if let Some(e) = enabled {
                periodic.enabled = e;
                changes.insert("enabled".into(), json!(e));
            }
            if let Some(i) = interval {
                periodic.interval = Duration::from_secs(i);
                changes.insert("interval".into(), json!(i));
            }
            if !changes.is_empty() {
                s.db().set_periodic_compaction(periodic);
            }
            Ok(Reply::ok(&json!({"status": "success", "changes": changes})))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_iso8601_utc() {
        assert_eq!(iso8601(UNIX_EPOCH), "1970-01-01T00:00:00.000000");
        let t = UNIX_EPOCH + Duration::from_micros(1_692_973_845_123_456);
        assert_eq!(iso8601(t), "2023-08-25T14:30:45.123456");
        // a leap day
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400);
        assert_eq!(iso8601(t), "2000-02-29T00:00:00.000000");
    }
}
