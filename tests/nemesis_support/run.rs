//! One history: start a cluster, run clients against it while the nemesis injects faults,
//! heal, settle unknown writes, read every key's final value, wait until every replica has
//! applied the same log, then check the history and the replicas. A failed run keeps its
//! directory: the seed, the schedule, the history file (re-checkable) and every node's data
//! directory and log.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use parking_lot::Mutex;
use strata::linearizability::{self, Anomaly, History, Input, Op, Outcome, Output, ReplicaKey};

use super::cluster::{Cluster, Http, call, http};
use super::faults;
use super::rng::Rng;
use super::workload::{self, Clock, Mix, Record, Targets};

/// How one history is run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The seed of the schedule and the clients' choices.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// Operations per client (at most).
    pub ops_per_client: usize,
    /// How long clients and the nemesis run (at most).
    pub duration: Duration,
    /// Keys.
    pub keys: usize,
    /// Whether the nemesis runs.
    pub faults: bool,
    /// Reads with `?consistency=stale` (negative control).
    pub stale_reads: bool,
    /// Where run directories go.
    pub base: PathBuf,
}

/// What one history showed.
#[derive(Debug)]
pub struct Report {
    /// The seed.
    pub seed: u64,
    /// Operations recorded (final reads included).
    pub ops: usize,
    /// Operations by outcome: ok, fail, unknown.
    pub outcomes: (usize, usize, usize),
    /// Faults injected by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Leader kill -> first write acknowledged after it, per kill.
    pub failovers: Vec<Duration>,
    /// Keys whose history is not linearizable, or undecided, with the detail.
    pub nonlinearizable: Vec<String>,
    /// Other anomalies.
    pub anomalies: Vec<String>,
    /// Problems of the harness itself (the cluster did not heal, ...).
    pub harness: Vec<String>,
    /// The kept run directory, on failure.
    pub kept: Option<PathBuf>,
}

impl Report {
    /// Whether the history passed every check.
    pub fn passed(&self) -> bool {
        self.nonlinearizable.is_empty() && self.anomalies.is_empty() && self.harness.is_empty()
    }

    /// A one-line summary.
    pub fn summary(&self) -> String {
        format!(
            "seed {}: {} ops (ok {}, fail {}, unknown {}), faults {:?}, non-linearizable keys {}, anomalies {}, harness problems {}{}",
            self.seed,
            self.ops,
            self.outcomes.0,
            self.outcomes.1,
            self.outcomes.2,
            self.faults,
            self.nonlinearizable.len(),
            self.anomalies.len(),
            self.harness.len(),
            self.kept
                .as_ref()
                .map(|p| format!(", kept in {}", p.display()))
                .unwrap_or_default()
        )
    }
}

/// The step budget of one key's search.
pub const MAX_STEPS: u64 = 20_000_000;

/// Checks a history with the replicas' final contents; returns (non-linearizable keys,
/// other anomalies).
pub fn check(
    history: &History,
    replicas: &BTreeMap<String, BTreeMap<String, ReplicaKey>>,
) -> (Vec<String>, Vec<String>) {
    let verdict = linearizability::check_history(history, MAX_STEPS);
    let bad = verdict
        .failures()
        .into_iter()
        .map(|(k, v)| format!("{k}: {v:?}"))
        .collect();
    let mut anomalies: Vec<Anomaly> = linearizability::check_replicas(replicas);
    for (node, contents) in replicas {
        anomalies.extend(linearizability::check_versions_and_writes(
            history, node, contents,
        ));
    }
    (bad, anomalies.iter().map(ToString::to_string).collect())
}

async fn wait_leader(cluster: &Cluster, http: &Http, within: Duration) -> Option<usize> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(l) = cluster.leader(http).await {
            return Some(l);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// Waits until every node has applied the same index; `Err` with the figures if not.
async fn converge(cluster: &Cluster, http: &Http, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    let mut last = Vec::new();
    while Instant::now() < deadline {
        last.clear();
        for n in &cluster.nodes {
            let r = call(
                http,
                Method::GET,
                n.port(),
                "/raft/status",
                None,
                Duration::from_secs(2),
            )
            .await;
            last.push(r.and_then(|(_, s)| s["last_applied"].as_u64()));
        }
        if last.iter().all(Option::is_some) && last.windows(2).all(|w| w[0] == w[1]) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Err(format!("replicas did not converge: last applied {last:?}"))
}

async fn contents(
    cluster: &Cluster,
    http: &Http,
    keys: usize,
) -> Result<BTreeMap<String, BTreeMap<String, ReplicaKey>>, String> {
    let mut all = BTreeMap::new();
    for n in &cluster.nodes {
        let mut mine = BTreeMap::new();
        for k in 0..keys {
            let key = format!("k{k}");
            let path = format!("/key/{key}/history?consistency=stale");
            match call(
                http,
                Method::GET,
                n.port(),
                &path,
                None,
                Duration::from_secs(5),
            )
            .await
            {
                Some((200, v)) => {
                    let h: ReplicaKey = v["history"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e["version"].as_u64().unwrap_or(0),
                                e["value"].as_str().unwrap_or("?").to_string(),
                            )
                        })
                        .collect();
                    mine.insert(key, h);
                }
                Some((404, _)) => {}
                other => return Err(format!("{}: history of {key}: {other:?}", n.name)),
            }
        }
        all.insert(n.name.clone(), mine);
    }
    Ok(all)
}

fn failovers(history: &History, kills: &[u64]) -> Vec<Duration> {
    kills
        .iter()
        .filter_map(|&t| {
            history
                .ops
                .iter()
                .filter(|o| o.input != Input::Get && o.invoke >= t)
                .filter(|o| matches!(o.outcome, Outcome::Ok(_)))
                .filter_map(|o| o.complete)
                .min()
                .map(|c| Duration::from_nanos(c - t))
        })
        .collect()
}

/// Runs one history.
pub async fn run(plan: &Plan) -> Report {
    let dir = plan
        .base
        .join(format!("seed-{}-{}", plan.seed, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("run directory");
    let http = http();
    let mut cluster = Cluster::new(&dir, plan.nodes).await;
    for i in 0..plan.nodes {
        cluster.start(i);
    }
    let mut harness = Vec::new();
    if wait_leader(&cluster, &http, Duration::from_secs(60))
        .await
        .is_none()
    {
        harness.push("no leader at start".to_string());
    }
    let clock = Clock(Instant::now());
    let targets = Arc::new(Targets {
        ports: cluster.nodes.iter().map(|n| n.port()).collect(),
        by_raft_addr: cluster
            .nodes
            .iter()
            .map(|n| (n.raft_addr(), n.port()))
            .collect(),
    });
    let mix = Mix {
        keys: plan.keys,
        stale_reads: plan.stale_reads,
        write_budget: Duration::from_secs(6),
        request_timeout: Duration::from_millis(1500),
    };
    let record = Arc::new(Mutex::new(Record::default()));
    let until = Instant::now() + plan.duration;
    let clients: Vec<_> = (0..plan.clients)
        .map(|c| {
            tokio::spawn(workload::client(
                c as u32 + 1,
                plan.seed,
                plan.ops_per_client,
                until,
                mix.clone(),
                Arc::clone(&targets),
                clock,
                Arc::clone(&record),
            ))
        })
        .collect();
    let mut rng = Rng::new(plan.seed);
    let log = if plan.faults {
        faults::run(&mut cluster, &http, &mut rng, clock, until).await
    } else {
        faults::Log::default()
    };
    for c in clients {
        let _ = c.await;
    }

    // Heal, settle, read, compare.
    cluster.net.heal();
    for i in 0..plan.nodes {
        cluster.resume(i);
        cluster.start(i);
    }
    if wait_leader(&cluster, &http, Duration::from_secs(60))
        .await
        .is_none()
    {
        harness.push("no leader after healing".to_string());
    }
    if let Err(e) = faults::restore_members(&cluster, &http).await {
        harness.push(e);
    }
    let mut record = std::mem::take(&mut *record.lock());
    for (at, method, path, body) in std::mem::take(&mut record.unknown) {
        let input = record.history.ops[at].input.clone();
        let r = workload::send_write(
            &http,
            &targets,
            &mut rng,
            &input,
            (&method, &path, body.as_ref()),
            Duration::from_secs(20),
            Duration::from_secs(3),
            true,
        )
        .await;
        if let Ok(out) = r {
            let op = &mut record.history.ops[at];
            op.outcome = Outcome::Ok(out);
            op.complete = Some(clock.now());
        }
    }
    for k in 0..plan.keys {
        let key = format!("k{k}");
        // A node that rejoins with a higher term can depose the leader right after the
        // heal; a read refused with "not leader" had no effect, so it is sent again (to
        // the next node) until one answers.
        let mut invoke = clock.now();
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut attempt = k;
        let r = loop {
            let port = targets.ports[attempt % targets.ports.len()];
            let r = call(
                &http,
                Method::GET,
                port,
                &format!("/key/{key}"),
                None,
                Duration::from_secs(5),
            )
            .await;
            match r {
                Some((503, _)) if Instant::now() < deadline => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    invoke = clock.now();
                }
                other => break other,
            }
        };
        let outcome = match r {
            Some((200, v)) => Outcome::Ok(Output::Value {
                value: v["value"].as_str().unwrap_or("?").to_string(),
                version: v["version"].as_u64().unwrap_or(0),
            }),
            Some((404, _)) => Outcome::Ok(Output::Absent),
            other => {
                harness.push(format!("final read of {key}: {other:?}"));
                Outcome::Unknown
            }
        };
        record.history.push(Op {
            client: 0,
            invoke,
            complete: Some(clock.now()),
            key,
            input: Input::Get,
            outcome,
        });
    }
    if let Err(e) = converge(&cluster, &http, Duration::from_secs(30)).await {
        harness.push(e);
    }
    let replicas = match contents(&cluster, &http, plan.keys).await {
        Ok(r) => r,
        Err(e) => {
            harness.push(e);
            BTreeMap::new()
        }
    };
    harness.extend(cluster.exited_on_their_own());
    drop(cluster);

    // The file is what is checked, so a kept history re-checks the same.
    let text = record.history.to_text();
    let history = History::parse(&text).expect("the history file reads back");
    let (nonlinearizable, anomalies) = check(&history, &replicas);
    let h = &history.ops;
    let count = |f: fn(&Outcome) -> bool| h.iter().filter(|o| f(&o.outcome)).count();
    let mut report = Report {
        seed: plan.seed,
        ops: h.len(),
        outcomes: (
            count(|o| matches!(o, Outcome::Ok(_))),
            count(|o| *o == Outcome::Fail),
            count(|o| *o == Outcome::Unknown),
        ),
        faults: log.counts.clone(),
        failovers: failovers(&history, &log.leader_kills),
        nonlinearizable,
        anomalies,
        harness,
        kept: None,
    };
    if report.passed() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        keep(&dir, plan, &text, &log, &replicas, &report);
        report.kept = Some(dir);
    }
    report
}

fn keep(
    dir: &Path,
    plan: &Plan,
    history: &str,
    log: &faults::Log,
    replicas: &BTreeMap<String, BTreeMap<String, ReplicaKey>>,
    report: &Report,
) {
    let _ = std::fs::write(dir.join("history.txt"), history);
    let mut s = format!("{plan:?}\n\nschedule:\n");
    for l in &log.lines {
        let _ = writeln!(s, "{l}");
    }
    let _ = std::fs::write(dir.join("schedule.txt"), s);
    let mut r = format!("{}\n\n", report.summary());
    for l in report
        .nonlinearizable
        .iter()
        .chain(&report.anomalies)
        .chain(&report.harness)
    {
        let _ = writeln!(r, "{l}");
    }
    let _ = writeln!(r, "\nreplicas:\n{replicas:#?}");
    let _ = std::fs::write(dir.join("report.txt"), r);
}
