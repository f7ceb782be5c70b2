//! A linearizability checker for recorded client histories of a key-value store whose keys
//! are versioned registers with a conditional put (seed B's `PUT /key/{key}` with
//! `"version"`), plus the cluster-wide checks that go with it.
//!
//! - [`history`]: operations as recorded by clients (invoke time, completion time, outcome:
//!   ok, fail or unknown) and a plain-text file format that can be re-checked.
//! - [`model`]: the sequential specification of one key.
//! - [`search`]: the Wing–Gong search with Lowe's memoisation of (linearized set, state),
//!   run on each key separately (linearizability is compositional over keys).
//! - [`checks`]: what a history alone cannot show: every replica's final contents and
//!   version histories identical, versions strictly increasing, a value written at most
//!   once (idempotent retries), and no acknowledged write lost.
//!
//! Outcomes: `ok` carries the answer and constrains the search; `fail` means the operation
//! certainly did not take effect and is left out; `unknown` (a timeout, a dropped
//! connection) may or may not have taken effect: it is given no completion time, so the
//! search may place it anywhere after its invocation, including after every other
//! operation, which is the same as never.

pub mod checks;
pub mod history;
pub mod model;
pub mod search;

pub use checks::{Anomaly, ReplicaKey, check_replicas, check_versions_and_writes};
pub use history::{History, Input, Op, Outcome, Output};
pub use model::State;
pub use search::{KeyVerdict, Verdict, check_history, check_key};

#[cfg(test)]
mod tests;
