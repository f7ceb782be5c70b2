//! Checks beyond linearizability, on the replicas' final contents once the cluster has
//! healed and every replica has applied the same log:
//!
//! - every replica holds the same keys with the same version histories;
//! - in each replica, a key's versions strictly increase;
//! - a value is written at most once per key (every write in a history carries a unique
//!   value, so a value seen twice is a write applied twice, e.g. a retried idempotent
//!   request);
//! - a version acknowledged to a client holds that client's value wherever it is still in
//!   the key's history;
//! - no acknowledged write is lost: a write that no other write could follow must be the
//!   final value.

use std::collections::BTreeMap;
use std::fmt;

use super::history::{History, Input, Op, Outcome, Output};

/// One key's history on one replica, oldest first: `(version, value)`.
pub type ReplicaKey = Vec<(u64, String)>;

/// A violation found by the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Anomaly {
    /// Two replicas disagree about a key (`None`: the replica lacks it).
    ReplicasDiffer {
        /// The key.
        key: String,
        /// The first replica and what it holds.
        a: (String, Option<ReplicaKey>),
        /// The other replica and what it holds.
        b: (String, Option<ReplicaKey>),
    },
    /// A replica's versions of a key do not strictly increase.
    VersionsNotIncreasing {
        /// The replica.
        node: String,
        /// The key.
        key: String,
        /// Its history there.
        history: ReplicaKey,
    },
    /// A value appears twice in a key's history: one write applied twice.
    AppliedTwice {
        /// The replica.
        node: String,
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// An acknowledged version holds another value on a replica.
    VersionMismatch {
        /// The replica.
        node: String,
        /// The key.
        key: String,
        /// The version.
        version: u64,
        /// The value the client was told was written.
        acked: String,
        /// The value the replica holds.
        found: String,
    },
    /// An acknowledged write that nothing could have overwritten is not the final value.
    LostWrite {
        /// The key.
        key: String,
        /// The acknowledged write.
        write: Box<Op>,
        /// The final value and version (`None`: absent).
        found: Option<(u64, String)>,
    },
}

impl fmt::Display for Anomaly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Anomaly::ReplicasDiffer { key, a, b } => write!(
                f,
                "replicas differ on {key}: {} has {:?}, {} has {:?}",
                a.0, a.1, b.0, b.1
            ),
            Anomaly::VersionsNotIncreasing { node, key, history } => {
                write!(f, "{node}: versions of {key} not increasing: {history:?}")
            }
            Anomaly::AppliedTwice { node, key, value } => {
                write!(f, "{node}: value {value} written twice to {key}")
            }
            Anomaly::VersionMismatch {
                node,
                key,
                version,
                acked,
                found,
            } => write!(
                f,
                "{node}: {key} version {version} holds {found}, acknowledged as {acked}"
            ),
            Anomaly::LostWrite { key, write, found } => {
                write!(
                    f,
                    "acknowledged write lost on {key}: [{write}], final {found:?}"
                )
            }
        }
    }
}

/// Compares the replicas' final contents (`node -> key -> history`) and checks each one's
/// versions and values.
pub fn check_replicas(replicas: &BTreeMap<String, BTreeMap<String, ReplicaKey>>) -> Vec<Anomaly> {
    let mut out = Vec::new();
    let mut nodes = replicas.iter();
    if let Some((first, reference)) = nodes.next() {
        for (node, keys) in nodes {
            let all: std::collections::BTreeSet<&String> =
                reference.keys().chain(keys.keys()).collect();
            for key in all {
                let (a, b) = (reference.get(key), keys.get(key));
                if a != b {
                    out.push(Anomaly::ReplicasDiffer {
                        key: key.clone(),
                        a: (first.clone(), a.cloned()),
                        b: (node.clone(), b.cloned()),
                    });
                }
            }
        }
    }
    for (node, keys) in replicas {
        for (key, history) in keys {
            if history.windows(2).any(|w| w[0].0 >= w[1].0) {
                out.push(Anomaly::VersionsNotIncreasing {
                    node: node.clone(),
                    key: key.clone(),
                    history: history.clone(),
                });
            }
            let mut seen = std::collections::BTreeSet::new();
            for (_, value) in history {
                if !seen.insert(value) {
                    out.push(Anomaly::AppliedTwice {
                        node: node.clone(),
                        key: key.clone(),
                        value: value.clone(),
                    });
                }
            }
        }
    }
    out
}

fn mutates(op: &Op) -> bool {
    !matches!(op.input, Input::Get)
        && !matches!(
            op.outcome,
            Outcome::Fail | Outcome::Ok(Output::Conflict) | Outcome::Ok(Output::NotFound)
        )
}

/// Could `later` take effect after `op`? Unless it completed before `op` was invoked.
fn may_follow(later: &Op, op: &Op) -> bool {
    match (&later.outcome, later.complete) {
        (Outcome::Ok(_), Some(done)) => done >= op.invoke,
        _ => true,
    }
}

/// Checks acknowledged writes of `history` against one replica's final contents
/// (`key -> history`): acknowledged versions hold their values, and a write that no other
/// write or delete could follow is the key's final value.
pub fn check_versions_and_writes(
    history: &History,
    node: &str,
    contents: &BTreeMap<String, ReplicaKey>,
) -> Vec<Anomaly> {
    let mut by_key: BTreeMap<&str, Vec<&Op>> = BTreeMap::new();
    for op in history.ops.iter().filter(|o| mutates(o)) {
        by_key.entry(&op.key).or_default().push(op);
    }
    let mut out = Vec::new();
    for (key, writes) in by_key {
        let stored = contents.get(key);
        for w in &writes {
            let (Input::Put { value, .. }, Outcome::Ok(Output::Written { version })) =
                (&w.input, &w.outcome)
            else {
                continue;
            };
            let followers: Vec<&&Op> = writes
                .iter()
                .filter(|o| !std::ptr::eq(**o, *w) && may_follow(o, w))
                .collect();
            let deleted_after = followers.iter().any(|o| matches!(o.input, Input::Delete));
            if !deleted_after
                && let Some((_, found)) = stored.into_iter().flatten().find(|(v, _)| v == version)
                && found != value
            {
                out.push(Anomaly::VersionMismatch {
                    node: node.to_string(),
                    key: key.to_string(),
                    version: *version,
                    acked: value.clone(),
                    found: found.clone(),
                });
            }
            if followers.is_empty() {
                let last = stored.and_then(|h| h.last()).cloned();
                if last.as_ref() != Some(&(*version, value.clone())) {
                    out.push(Anomaly::LostWrite {
                        key: key.to_string(),
                        write: Box::new((*w).clone()),
                        found: last,
                    });
                }
            }
        }
    }
    out
}
