//! The nemesis: on a seeded random schedule, one fault at a time, each held for a while and
//! then healed: SIGKILL and restart (leader, follower, or two nodes), SIGSTOP past the
//! election timeout (leader or follower), network partitions through the proxies (isolate
//! the leader, isolate any node, split the leader into a minority, one-way loss, black
//! holes), delayed links, and a membership change (remove a follower, then add it back as a
//! learner and promote it).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use hyper::Method;
use serde_json::{Value, json};

use super::cluster::{Cluster, Http, call};
use super::proxy::Link;
use super::rng::Rng;
use super::workload::Clock;

/// The kinds of fault, as named in reports.
pub const KINDS: [&str; 12] = [
    "kill-leader",
    "kill-follower",
    "kill-two",
    "pause-leader",
    "pause-follower",
    "isolate-leader",
    "isolate-node",
    "split-leader-minority",
    "one-way-loss",
    "blackhole-leader",
    "delay",
    "membership",
];

/// What the nemesis did.
#[derive(Debug, Default)]
pub struct Log {
    /// One line per fault: when (ms since start), what, to whom, outcome.
    pub lines: Vec<String>,
    /// Faults injected per kind.
    pub counts: BTreeMap<&'static str, u64>,
    /// When a leader was killed (clock ns).
    pub leader_kills: Vec<u64>,
}

/// Sends a membership change to the leader, following hints; the answer's status.
async fn member_call(cluster: &Cluster, http: &Http, path: &str, body: &Value) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Some(l) = cluster.leader(http).await {
            let port = cluster.nodes[l].port();
            let r = call(
                http,
                Method::POST,
                port,
                path,
                Some(body),
                Duration::from_secs(15),
            )
            .await;
            match r {
                Some((200, _)) => return Some(200),
                Some((s, _)) if s != 503 => return Some(s),
                _ => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    None
}

/// Makes every node a voter again (after a membership fault that did not finish).
pub async fn restore_members(cluster: &Cluster, http: &Http) -> Result<(), String> {
    for n in &cluster.nodes {
        let add = json!({"node_id": n.name, "addr": n.raft_addr()});
        let a = member_call(cluster, http, "/cluster/learners", &add).await;
        let p = member_call(
            cluster,
            http,
            "/cluster/promote",
            &json!({"node_id": n.name}),
        )
        .await;
        if a != Some(200) || p != Some(200) {
            return Err(format!("restoring {} as a voter: {a:?} {p:?}", n.name));
        }
    }
    Ok(())
}

/// Sets every link between a node in `side` and a node outside it, both ways, to `link`.
fn cut_off(cluster: &Cluster, side: &[usize], link: Link) {
    let n = cluster.nodes.len();
    for a in 0..n {
        for b in (0..n).filter(|b| side.contains(&a) != side.contains(b)) {
            cluster.net.set(a, b, link);
        }
    }
}

/// Runs faults until `until`.
pub async fn run(
    cluster: &mut Cluster,
    http: &Http,
    rng: &mut Rng,
    clock: Clock,
    until: Instant,
) -> Log {
    let mut log = Log::default();
    let n = cluster.nodes.len();
    while Instant::now() + Duration::from_secs(2) < until {
        tokio::time::sleep(rng.millis(300, 1200)).await;
        let kind = KINDS[rng.below(KINDS.len())];
        let t = clock.now() / 1_000_000;
        let leader = cluster.leader(http).await;
        let lead = leader.unwrap_or_else(|| rng.below(n));
        let follower = (lead + 1 + rng.below(n - 1)) % n;
        let hold = rng.millis(400, 2500);
        let what = match kind {
            "kill-leader" | "kill-follower" => {
                let victim = if kind == "kill-leader" {
                    lead
                } else {
                    follower
                };
                if kind == "kill-leader" && leader.is_some() {
                    log.leader_kills.push(clock.now());
                }
                cluster.kill(victim);
                tokio::time::sleep(hold).await;
                cluster.start(victim);
                format!("{} down {hold:?}", cluster.nodes[victim].name)
            }
            "kill-two" => {
                let (a, b) = (lead, follower);
                cluster.kill(a);
                cluster.kill(b);
                tokio::time::sleep(hold).await;
                cluster.start(a);
                tokio::time::sleep(rng.millis(0, 500)).await;
                cluster.start(b);
                format!(
                    "{} and {} down {hold:?}",
                    cluster.nodes[a].name, cluster.nodes[b].name
                )
            }
            "pause-leader" | "pause-follower" => {
                let victim = if kind == "pause-leader" {
                    lead
                } else {
                    follower
                };
                let hold = rng.millis(1200, 3000);
                cluster.pause(victim);
                tokio::time::sleep(hold).await;
                cluster.resume(victim);
                format!("{} stopped {hold:?}", cluster.nodes[victim].name)
            }
            "isolate-leader" | "isolate-node" | "blackhole-leader" => {
                let victim = if kind == "isolate-node" {
                    rng.below(n)
                } else {
                    lead
                };
                let link = if kind == "blackhole-leader" {
                    Link::Blackhole
                } else {
                    Link::Drop
                };
                cut_off(cluster, &[victim], link);
                let hold = rng.millis(1000, 3000);
                tokio::time::sleep(hold).await;
                cluster.net.heal();
                format!("{} cut off {hold:?}", cluster.nodes[victim].name)
            }
            "split-leader-minority" => {
                // The leader and (n - 1) / 2 - 1 followers on one side, the majority on the
                // other: with 3 nodes the leader alone, with 5 the leader and one follower.
                let mut minority = vec![lead];
                while minority.len() < (n - 1) / 2 {
                    let c = rng.below(n);
                    if !minority.contains(&c) {
                        minority.push(c);
                    }
                }
                cut_off(cluster, &minority, Link::Drop);
                let hold = rng.millis(1000, 3000);
                tokio::time::sleep(hold).await;
                cluster.net.heal();
                let names: Vec<&str> = minority
                    .iter()
                    .map(|i| cluster.nodes[*i].name.as_str())
                    .collect();
                format!("{names:?} split from the rest {hold:?}")
            }
            "one-way-loss" => {
                let from = rng.below(n);
                for j in (0..n).filter(|j| *j != from) {
                    cluster.net.set(from, j, Link::Blackhole);
                }
                tokio::time::sleep(hold).await;
                cluster.net.heal();
                format!(
                    "everything {} sends lost {hold:?}",
                    cluster.nodes[from].name
                )
            }
            "delay" => {
                let d = rng.millis(20, 200);
                for a in 0..n {
                    for b in (0..n).filter(|b| *b != a) {
                        cluster.net.set(a, b, Link::Delay(d));
                    }
                }
                tokio::time::sleep(hold).await;
                cluster.net.heal();
                format!("every link delayed {d:?} for {hold:?}")
            }
            _ => {
                // membership: remove a follower, then add it back and promote it.
                let name = cluster.nodes[follower].name.clone();
                let addr = cluster.nodes[follower].raft_addr();
                let r =
                    member_call(cluster, http, "/cluster/remove", &json!({"node_id": name})).await;
                tokio::time::sleep(rng.millis(300, 1500)).await;
                let a = member_call(
                    cluster,
                    http,
                    "/cluster/learners",
                    &json!({"node_id": name, "addr": addr}),
                )
                .await;
                let p =
                    member_call(cluster, http, "/cluster/promote", &json!({"node_id": name})).await;
                format!("{name} removed {r:?}, re-added {a:?}, promoted {p:?}")
            }
        };
        *log.counts.entry(kind).or_default() += 1;
        log.lines.push(format!("{t:>7} ms {kind}: {what}"));
    }
    log
}
