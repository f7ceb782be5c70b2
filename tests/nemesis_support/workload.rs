//! Clients: each runs one operation at a time against whichever node it picks, following
//! not-leader hints, and records it (invoke and completion on one monotonic clock, outcome
//! ok / fail / unknown). Every write carries `client_id`/`request_id`; a write without a
//! definite answer is retried with the same ids, and one still unknown at the end of the
//! run is retried again once the cluster has healed.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use parking_lot::Mutex;
use serde_json::{Value, json};
use strata::linearizability::{History, Input, Op, Outcome, Output};

use super::cluster::{Http, call};
use super::rng::Rng;

/// Nanoseconds since the run began, on a monotonic clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// Now.
    pub fn now(&self) -> u64 {
        self.0.elapsed().as_nanos() as u64
    }
}

/// What the clients know of the cluster: client ports, and Raft address -> client port
/// (to follow leader hints).
#[derive(Debug, Clone)]
pub struct Targets {
    /// Every node's client port.
    pub ports: Vec<u16>,
    /// Raft address -> client port.
    pub by_raft_addr: HashMap<String, u16>,
}

/// The recorded history and the writes still unknown.
#[derive(Debug, Default)]
pub struct Record {
    /// The history.
    pub history: History,
    /// Unknown writes: (index in the history, method, path, body).
    pub unknown: Vec<(usize, Method, String, Option<Value>)>,
}

/// Client settings.
#[derive(Debug, Clone)]
pub struct Mix {
    /// Keys `k0..`.
    pub keys: usize,
    /// Read with `?consistency=stale` (a negative control: must fail the checker).
    pub stale_reads: bool,
    /// How long one write is retried before it is left unknown.
    pub write_budget: Duration,
    /// Deadline of one request.
    pub request_timeout: Duration,
}

/// A definite answer to a write, if `status`/`body` are one.
fn write_output(input: &Input, status: u16, body: &Value) -> Option<Output> {
    let replayed_error = status == 200 && body["status"] == "error";
    match input {
        Input::Put { .. } => match status {
            409 => Some(Output::Conflict),
            200 if replayed_error => Some(Output::Conflict),
            200 => body["version"]
                .as_u64()
                .map(|version| Output::Written { version }),
            _ => None,
        },
        Input::Delete => match status {
            404 => Some(Output::NotFound),
            200 if replayed_error => Some(Output::NotFound),
            200 => Some(Output::Deleted),
            _ => None,
        },
        Input::Get => None,
    }
}

/// Sends a write until it gets a definite answer or `budget` runs out, following hints.
/// Returns the answer, or `Err(true)` if it may have been applied, `Err(false)` if every
/// node refused it before proposing.
#[allow(clippy::too_many_arguments)]
pub async fn send_write(
    http: &Http,
    targets: &Targets,
    rng: &mut Rng,
    input: &Input,
    (method, path, body): (&Method, &str, Option<&Value>),
    budget: Duration,
    timeout: Duration,
    mut uncertain: bool,
) -> Result<Output, bool> {
    let deadline = Instant::now() + budget;
    let mut hint: Option<u16> = None;
    while Instant::now() < deadline {
        let port = hint
            .take()
            .unwrap_or_else(|| targets.ports[rng.below(targets.ports.len())]);
        match call(http, method.clone(), port, path, body, timeout).await {
            Some((status, v)) => {
                if let Some(out) = write_output(input, status, &v) {
                    return Ok(out);
                }
                if status == 503 && v["error"] == "not leader" {
                    hint = v["leader"]
                        .as_str()
                        .and_then(|a| targets.by_raft_addr.get(a).copied());
                    if hint.is_none() {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    continue;
                }
                uncertain = true;
            }
            None => uncertain = true,
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    Err(uncertain)
}

/// One client: `ops` operations or until `until`, whichever comes first.
#[allow(clippy::too_many_arguments)]
pub async fn client(
    id: u32,
    seed: u64,
    ops: usize,
    until: Instant,
    mix: Mix,
    targets: Arc<Targets>,
    clock: Clock,
    record: Arc<Mutex<Record>>,
) {
    let http = super::cluster::http();
    let mut rng = Rng::new(seed ^ (u64::from(id) << 32) ^ 0x5eed);
    let mut seen: HashMap<String, u64> = HashMap::new();
    for n in 0..ops {
        if Instant::now() >= until {
            break;
        }
        let key = format!("k{}", rng.below(mix.keys));
        let ids = format!("client_id=s{seed}c{id}&request_id=r{n}");
        let value = format!("c{id}.{n}");
        let roll = rng.below(100);
        let (input, method, path, body) = if roll < 45 {
            let q = if mix.stale_reads {
                "?consistency=stale"
            } else {
                ""
            };
            (Input::Get, Method::GET, format!("/key/{key}{q}"), None)
        } else if roll < 70 {
            let input = Input::Put {
                value: value.clone(),
                min_version: None,
            };
            (
                input,
                Method::PUT,
                format!("/key/{key}?{ids}"),
                Some(json!({"value": value})),
            )
        } else if roll < 90 {
            let m = seen.get(&key).copied().unwrap_or(0) + 1;
            let input = Input::Put {
                value: value.clone(),
                min_version: Some(m),
            };
            let body = json!({"value": value, "version": m});
            (input, Method::PUT, format!("/key/{key}?{ids}"), Some(body))
        } else {
            (
                Input::Delete,
                Method::DELETE,
                format!("/key/{key}?{ids}"),
                None,
            )
        };
        let invoke = clock.now();
        let (outcome, complete) = if input == Input::Get {
            let port = targets.ports[rng.below(targets.ports.len())];
            let r = call(
                &http,
                method.clone(),
                port,
                &path,
                None,
                mix.request_timeout,
            )
            .await;
            let out = match r {
                Some((200, v)) => match (v["value"].as_str(), v["version"].as_u64()) {
                    (Some(value), Some(version)) => {
                        seen.insert(key.clone(), version);
                        Outcome::Ok(Output::Value {
                            value: value.to_string(),
                            version,
                        })
                    }
                    _ => Outcome::Unknown,
                },
                Some((404, _)) => Outcome::Ok(Output::Absent),
                Some(_) => Outcome::Fail,
                None => Outcome::Unknown,
            };
            (out, clock.now())
        } else {
            let r = send_write(
                &http,
                &targets,
                &mut rng,
                &input,
                (&method, &path, body.as_ref()),
                mix.write_budget,
                mix.request_timeout,
                false,
            )
            .await;
            match r {
                Ok(out) => {
                    if let Output::Written { version } = out {
                        seen.insert(key.clone(), version);
                    }
                    (Outcome::Ok(out), clock.now())
                }
                Err(true) => (Outcome::Unknown, clock.now()),
                Err(false) => (Outcome::Fail, clock.now()),
            }
        };
        let unknown_write = outcome == Outcome::Unknown && input != Input::Get;
        let mut rec = record.lock();
        rec.history.push(Op {
            client: id,
            invoke,
            complete: Some(complete),
            key,
            input,
            outcome,
        });
        if unknown_write {
            let at = rec.history.ops.len() - 1;
            rec.unknown.push((at, method, path, body));
        }
    }
}
