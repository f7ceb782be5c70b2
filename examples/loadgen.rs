//! Load generator for the strata HTTP server, modelled on seed A's benchmark: sequential and
//! concurrent writes, reads, batch writes and range queries through seed A's API, reporting
//! ops/s and p50/p99 latency beside seed A's published figures.
//!
//! ```sh
//! cargo run --release --features server --example server &
//! cargo run --release --features server --example loadgen -- --mode standalone --ops 20000 --concurrency 1,64
//! ```
//!
//! `--mode cluster` targets the nodes of `--cluster` and sends its load to the one whose
//! `/raft/status` says it leads; `--mode both` runs the standalone target, then the cluster.
//!
//! Against a secured server, `--cacert FILE` speaks HTTPS and trusts the servers that CA
//! signed, `--client-cert`/`--client-key` present a client certificate, and `--token-file FILE` (or the
//! `STRATA_TOKEN` environment variable) sends `Authorization: Bearer <token>`:
//!
//! ```sh
//! cargo run --release --features server --example loadgen -- --cacert ca.pem \
//!     --token-file writer.token --ops 20000 --concurrency 1,64
//! ```
//!
//! Two stress modes measure the server under hostile load instead: its memory (from
//! `/proc/<--server-pid>/status`) and `/health` latency while `--connections` clients hold
//! half-sent requests (`--mode held-connections`), or while `--bodies` clients upload bodies
//! of `--body-bytes` each at once (`--mode large-bodies`):
//!
//! ```sh
//! cargo run --release --features server --example loadgen -- --mode held-connections \
//!     --connections 2000 --server-pid $(pgrep -n server)
//! cargo run --release --features server --example loadgen -- --mode large-bodies \
//!     --bodies 32 --body-bytes 15728640 --server-pid $(pgrep -n server)
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a load generator may stop on a broken setup

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, HeaderValue};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A faster allocator than the system's for this allocation-heavy request path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A pooled HTTP/1.1 client (HTTPS too, with `--cacert`).
type Client = hyper_util::client::legacy::Client<HttpsConnector<HttpConnector>, Full<Bytes>>;
type Req = Request<Full<Bytes>>;

/// How requests reach the server: TLS settings and the `Authorization` header.
struct Access {
    tls: rustls::ClientConfig,
    https: bool,
    authorization: Option<HeaderValue>,
}

static ACCESS: OnceLock<Access> = OnceLock::new();

fn access() -> &'static Access {
    ACCESS.get().expect("access settings are made first")
}

fn scheme() -> &'static str {
    if access().https { "https" } else { "http" }
}

fn pem_certs(path: &PathBuf) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .unwrap_or_else(|e| panic!("cannot read certificates from {}: {e}", path.display()))
}

impl Access {
    fn from_args(args: &Args) -> Access {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        if let Some(ca) = &args.cacert {
            for c in pem_certs(ca) {
                roots.add(c).expect("a usable CA certificate");
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots);
        let tls = match (&args.client_cert, &args.client_key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(
                    pem_certs(cert),
                    PrivateKeyDer::from_pem_file(key).expect("a PEM private key"),
                )
                .expect("a usable client certificate"),
            _ => builder.with_no_client_auth(),
        };
        let token = match &args.token_file {
            Some(path) => Some(std::fs::read_to_string(path).expect("a readable token file")),
            None => std::env::var("STRATA_TOKEN").ok(),
        };
        let authorization = token
            .map(|t| t.lines().next().unwrap_or("").trim().to_string())
            .filter(|t| !t.is_empty())
            .map(|t| HeaderValue::from_str(&format!("Bearer {t}")).expect("a printable token"));
        Access {
            tls,
            https: args.cacert.is_some(),
            authorization,
        }
    }
}

fn client(idle_per_host: usize) -> Client {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(access().tls.clone())
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(idle_per_host)
        .build(connector)
}

fn with_auth(mut req: Req) -> Req {
    if let Some(a) = &access().authorization {
        req.headers_mut().insert(AUTHORIZATION, a.clone());
    }
    req
}

fn get(url: &str) -> Req {
    with_auth(
        Request::builder()
            .method(Method::GET)
            .uri(url)
            .body(Full::new(Bytes::new()))
            .expect("request"),
    )
}

fn post(url: &str, body: String) -> Req {
    with_auth(
        Request::builder()
            .method(Method::POST)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body)))
            .expect("request"),
    )
}

/// Sends `req`; true when it was answered with a 2xx and a complete body.
async fn send(client: &Client, req: Req) -> bool {
    let call = async {
        let resp = client.request(req).await.ok()?;
        let ok = resp.status().is_success();
        resp.into_body().collect().await.ok()?;
        Some(ok)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(30), call).await,
        Ok(Some(true))
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Standalone,
    Cluster,
    Both,
    /// Hold `--connections` half-sent requests; report server RSS and `/health` latency.
    HeldConnections,
    /// Upload `--bodies` bodies of `--body-bytes` at once; report server RSS and `/health`
    /// latency.
    LargeBodies,
}

#[derive(Debug, Parser)]
#[command(about = "HTTP load generator for the strata server")]
struct Args {
    /// Which target to load.
    #[arg(long, value_enum, default_value = "standalone")]
    mode: Mode,
    /// Operations per workload (writes, reads); batch and range workloads scale from it.
    #[arg(long, default_value_t = 1000)]
    ops: usize,
    /// Concurrent clients; a comma-separated list runs every workload once per figure.
    #[arg(long, value_delimiter = ',', default_values_t = [1usize, 64])]
    concurrency: Vec<usize>,
    /// Standalone server host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Standalone server port.
    #[arg(long, default_value_t = 9001)]
    port: u16,
    /// Cluster nodes (host:port, comma-separated).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "127.0.0.1:9001,127.0.0.1:9002,127.0.0.1:9003"
    )]
    cluster: Vec<String>,
    /// Value size in bytes (seed A's benchmark uses 100).
    #[arg(long, default_value_t = 100)]
    value_size: usize,
    /// Items per batch write.
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Connections held by `--mode held-connections`.
    #[arg(long, default_value_t = 2000)]
    connections: usize,
    /// Concurrent uploads of `--mode large-bodies`.
    #[arg(long, default_value_t = 32)]
    bodies: usize,
    /// Size of each upload of `--mode large-bodies`, in bytes.
    #[arg(long, default_value_t = 15 << 20)]
    body_bytes: usize,
    /// The server's process id, to read its memory from /proc (stress modes).
    #[arg(long)]
    server_pid: Option<u32>,
    /// `/health` requests timed during a stress mode.
    #[arg(long, default_value_t = 200)]
    health_probes: usize,
    /// Speak HTTPS to the load targets, trusting the server certificates this PEM CA signed
    /// (the stress modes stay on plain TCP).
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// PEM client certificate to present (with --client-key), for servers started with
    /// --client-ca.
    #[arg(long, requires = "client_key")]
    client_cert: Option<PathBuf>,
    /// PEM private key of --client-cert.
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// Send the bearer token in this file's first line (default: $STRATA_TOKEN, if set).
    #[arg(long)]
    token_file: Option<PathBuf>,
}

/// Seed A's published figures (1000 ops, Apple Silicon): standalone and 3-node Raft.
struct SeedFigures {
    writes: f64,
    reads: f64,
    batch_items: f64,
    write_p99_ms: f64,
    read_p99_ms: f64,
}

const SEED_A_STANDALONE: SeedFigures = SeedFigures {
    writes: 4089.0,
    reads: 4063.0,
    batch_items: 40167.0,
    write_p99_ms: 0.52,
    read_p99_ms: 0.30,
};

const SEED_A_CLUSTER: SeedFigures = SeedFigures {
    writes: 82.0,
    reads: 135.0,
    batch_items: 7048.0,
    write_p99_ms: 14.06,
    read_p99_ms: 1.55,
};

#[derive(Debug, Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
    /// CPU seconds this load generator used during the run (all its threads).
    cpu_secs: f64,
}

/// CPU seconds this process has used so far (user + system, from /proc; 0 elsewhere).
fn own_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at state (field 3);
    // utime and stime are fields 14 and 15, in clock ticks (100 per second on Linux).
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Report {
    name: &'static str,
    unit: &'static str,
    items: usize,
    elapsed: Duration,
    outcome: Outcome,
}

impl Report {
    fn rate(&self) -> f64 {
        self.items as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let l = &self.outcome.latencies;
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 * p).ceil() as usize).clamp(1, l.len()) - 1;
        l[i].as_secs_f64() * 1e3
    }
}

fn value_of(size: usize, seed: usize) -> String {
    let alphabet = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..size)
        .map(|i| alphabet[(seed.wrapping_mul(31).wrapping_add(i * 7)) % alphabet.len()] as char)
        .collect()
}

/// Runs `per_worker` requests on each of `workers` tasks; `make(worker, i)` builds request i.
async fn run<F>(client: &Client, workers: usize, per_worker: usize, make: F) -> (Duration, Outcome)
where
    F: Fn(usize, usize) -> Req + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let cpu_before = own_cpu_secs();
    let start = Instant::now();
    let mut tasks = Vec::with_capacity(workers);
    for w in 0..workers {
        let client = client.clone();
        let make = Arc::clone(&make);
        tasks.push(tokio::spawn(async move {
            let mut out = Outcome {
                latencies: Vec::with_capacity(per_worker),
                errors: 0,
                cpu_secs: 0.0,
            };
            for i in 0..per_worker {
                let req = make(w, i);
                let t = Instant::now();
                let ok = send(&client, req).await;
                out.latencies.push(t.elapsed());
                if !ok {
                    out.errors += 1;
                }
            }
            out
        }));
    }
    let mut all = Outcome::default();
    for t in tasks {
        match t.await {
            Ok(o) => {
                all.latencies.extend(o.latencies);
                all.errors += o.errors;
            }
            Err(_) => all.errors += per_worker,
        }
    }
    let elapsed = start.elapsed();
    all.cpu_secs = own_cpu_secs() - cpu_before;
    all.latencies.sort_unstable();
    (elapsed, all)
}

async fn bench(args: &Args, base: &str, workers: usize, run_id: u64) -> Vec<Report> {
    let client = client(workers.max(1));
    let per_worker = (args.ops / workers).max(1);
    let total = per_worker * workers;
    let mut reports = Vec::new();

    // Writes.
    let (url, size) = (format!("{base}/put"), args.value_size);
    let (elapsed, outcome) = run(&client, workers, per_worker, move |w, i| {
        let body = format!(
            r#"{{"key":"bench:{run_id}:{w}:{i:08}","value":"{}"}}"#,
            value_of(size, i)
        );
        post(&url, body)
    })
    .await;
    reports.push(Report {
        name: "writes",
        unit: "ops/s",
        items: total,
        elapsed,
        outcome,
    });

    // Reads of the keys just written.
    let url = format!("{base}/get");
    let (elapsed, outcome) = run(&client, workers, per_worker, move |w, i| {
        get(&format!("{url}?key=bench:{run_id}:{w}:{i:08}"))
    })
    .await;
    reports.push(Report {
        name: "reads",
        unit: "ops/s",
        items: total,
        elapsed,
        outcome,
    });

    // Batch writes: seed A's benchmark sends 10 batches of 100 per 1000 ops.
    let batches_per_worker = (args.ops / args.batch_size / workers).max(1);
    let (url, bs) = (format!("{base}/batchput"), args.batch_size);
    let (elapsed, outcome) = run(&client, workers, batches_per_worker, move |w, b| {
        let items: Vec<String> = (0..bs)
            .map(|i| {
                format!(
                    r#"{{"key":"batch:{run_id}:{w}:{b}:{i:04}","value":"{}"}}"#,
                    value_of(size, i)
                )
            })
            .collect();
        post(&url, format!(r#"{{"items":[{}]}}"#, items.join(",")))
    })
    .await;
    reports.push(Report {
        name: "batch writes",
        unit: "items/s",
        items: batches_per_worker * workers * args.batch_size,
        elapsed,
        outcome,
    });

    // Range queries over 100 keys (seed A: 10 queries per run, limit 100).
    let items: Vec<String> = (0..100)
        .map(|i| {
            format!(
                r#"{{"key":"range:{i:04}","value":"{}"}}"#,
                value_of(size, i)
            )
        })
        .collect();
    let body = format!(r#"{{"items":[{}]}}"#, items.join(","));
    assert!(
        send(&client, post(&format!("{base}/batchput"), body)).await,
        "loading the range keys failed"
    );
    let queries_per_worker = (args.ops / 100 / workers).max(10);
    let url = format!("{base}/range?start=range:&end=range:~&limit=100");
    let (elapsed, outcome) = run(&client, workers, queries_per_worker, move |_, _| get(&url)).await;
    reports.push(Report {
        name: "range queries",
        unit: "queries/s",
        items: queries_per_worker * workers,
        elapsed,
        outcome,
    });
    reports
}

fn print(title: &str, workers: usize, reports: &[Report], seed: &SeedFigures) {
    println!("\n{title}, {workers} concurrent client(s)");
    println!(
        "{:<14} {:>9} {:>12} {:>10} {:>9} {:>9} {:>7} {:>8}   seed A",
        "workload", "items", "rate", "unit", "p50 ms", "p99 ms", "errors", "lg CPU"
    );
    for r in reports {
        let seed_col = match r.name {
            "writes" => format!("{:.0} ops/s, p99 {:.2} ms", seed.writes, seed.write_p99_ms),
            "reads" => format!("{:.0} ops/s, p99 {:.2} ms", seed.reads, seed.read_p99_ms),
            "batch writes" => format!("{:.0} items/s", seed.batch_items),
            _ => "-".to_string(),
        };
        println!(
            "{:<14} {:>9} {:>12.0} {:>10} {:>9.3} {:>9.3} {:>7} {:>7.0}%   {}",
            r.name,
            r.items,
            r.rate(),
            r.unit,
            r.percentile_ms(0.50),
            r.percentile_ms(0.99),
            r.outcome.errors,
            100.0 * r.outcome.cpu_secs / r.elapsed.as_secs_f64().max(1e-9),
            seed_col
        );
    }
}

/// Whether a server answers `GET /health` at `base` within two seconds.
async fn reachable(base: &str) -> bool {
    let req = get(&format!("{base}/health"));
    let client = client(1);
    matches!(
        tokio::time::timeout(Duration::from_secs(2), client.request(req)).await,
        Ok(Ok(resp)) if resp.status().is_success()
    )
}

/// The cluster node that reports itself leader, if any.
async fn find_leader(nodes: &[String]) -> Option<String> {
    let client = client(1);
    for n in nodes {
        let req = get(&format!("{}://{n}/raft/status", scheme()));
        let call = async {
            let resp = client.request(req).await.ok()?;
            resp.into_body().collect().await.ok().map(|b| b.to_bytes())
        };
        if let Ok(Some(body)) = tokio::time::timeout(Duration::from_secs(2), call).await
            && String::from_utf8_lossy(&body).contains(r#""state":"leader""#)
        {
            return Some(format!("{}://{n}", scheme()));
        }
    }
    None
}

/// The server's resident and peak resident memory in KiB, from /proc.
fn server_memory(pid: Option<u32>) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Times `probes` sequential `GET /health` on a fresh client: (p50, p99, max) in ms and the
/// failures (no 200 within 5 s).
async fn probe_health(base: &str, probes: usize) -> (f64, f64, f64, usize) {
    let client = client(1);
    let mut lat = Vec::with_capacity(probes);
    let mut failed = 0;
    for _ in 0..probes {
        let t = Instant::now();
        let req = get(&format!("{base}/health"));
        let call = async {
            let resp = client.request(req).await.ok()?;
            let ok = resp.status().is_success();
            resp.into_body().collect().await.ok()?;
            Some(ok)
        };
        if !matches!(
            tokio::time::timeout(Duration::from_secs(5), call).await,
            Ok(Some(true))
        ) {
            failed += 1;
        }
        lat.push(t.elapsed().as_secs_f64() * 1e3);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    lat.sort_by(f64::total_cmp);
    let at = |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1];
    (at(0.5), at(0.99), at(1.0), failed)
}

fn print_memory(what: &str, pid: Option<u32>) {
    match server_memory(pid) {
        Some((rss, hwm)) => println!(
            "{what}: server RSS {:.1} MiB, peak {:.1} MiB",
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        ),
        None => println!("{what}: server memory unknown (give --server-pid)"),
    }
}

/// `--mode held-connections`: clients that send half a request head and wait.
async fn held_connections(args: &Args, base: &str, addr: &str) {
    use tokio::io::AsyncWriteExt;
    print_memory("before", args.server_pid);
    let mut held = Vec::with_capacity(args.connections);
    let mut refused = 0;
    for _ in 0..args.connections {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(mut s) => {
                if s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
                    .await
                    .is_ok()
                {
                    held.push(s);
                } else {
                    refused += 1;
                }
            }
            Err(_) => refused += 1,
        }
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (p50, p99, max, failed) = probe_health(base, args.health_probes).await;
    println!(
        "{} connections held ({} failed to connect); /health p50 {p50:.3} ms, p99 {p99:.3} ms, \
         max {max:.3} ms, {failed} of {} probes failed",
        held.len(),
        refused,
        args.health_probes
    );
    print_memory("while held", args.server_pid);
}

/// `--mode large-bodies`: clients that upload large bodies at once.
async fn large_bodies(args: &Args, base: &str, addr: &str) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    print_memory("before", args.server_pid);
    let value = "x".repeat(args.body_bytes.saturating_sub(40));
    let body = Arc::new(format!(r#"{{"key":"large","value":"{value}"}}"#).into_bytes());
    let mut tasks = Vec::new();
    for _ in 0..args.bodies {
        let (body, addr) = (Arc::clone(&body), addr.to_string());
        tasks.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.ok()?;
            let head = format!(
                "POST /put HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let (mut rd, mut wr) = s.split();
            let send = async {
                let _ = wr.write_all(head.as_bytes()).await;
                let _ = wr.write_all(&body).await;
                std::future::pending::<()>().await;
            };
            let recv = async {
                let mut answer = Vec::new();
                let _ = rd.read_to_end(&mut answer).await;
                answer
            };
            let answer = tokio::select! {
                a = recv => a,
                () = send => unreachable!(),
            };
            let status = String::from_utf8_lossy(answer.get(9..12)?).to_string();
            Some(status)
        }));
    }
    let (p50, p99, max, failed) = probe_health(base, args.health_probes).await;
    let mut statuses: std::collections::BTreeMap<String, usize> = Default::default();
    for t in tasks {
        let s = t.await.ok().flatten().unwrap_or_else(|| "none".into());
        *statuses.entry(s).or_default() += 1;
    }
    println!(
        "{} uploads of {} bytes: answers {statuses:?}; /health during them p50 {p50:.3} ms, \
         p99 {p99:.3} ms, max {max:.3} ms, {failed} of {} probes failed",
        args.bodies,
        body.len(),
        args.health_probes
    );
    print_memory("after", args.server_pid);
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args = Args::parse();
    let _ = ACCESS.set(Access::from_args(&args));
    if matches!(args.mode, Mode::HeldConnections | Mode::LargeBodies) {
        strata::server::raise_open_file_limit();
        let addr = format!("{}:{}", args.host, args.port);
        let base = format!("{}://{addr}", scheme());
        if !reachable(&base).await {
            eprintln!("no server answers at {base}/health; start one first");
            std::process::exit(1);
        }
        match args.mode {
            Mode::HeldConnections => held_connections(&args, &base, &addr).await,
            _ => large_bodies(&args, &base, &addr).await,
        }
        return;
    }
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut targets: Vec<(&str, String, &SeedFigures)> = Vec::new();
    if matches!(args.mode, Mode::Standalone | Mode::Both) {
        targets.push((
            "standalone",
            format!("{}://{}:{}", scheme(), args.host, args.port),
            &SEED_A_STANDALONE,
        ));
    }
    if matches!(args.mode, Mode::Cluster | Mode::Both) {
        match find_leader(&args.cluster).await {
            Some(leader) => targets.push(("cluster (leader)", leader, &SEED_A_CLUSTER)),
            None => eprintln!(
                "cluster: no node of {} reports itself leader; skipped",
                args.cluster.join(",")
            ),
        }
    }
    let mut unreachable = false;
    for (title, base, seed) in targets {
        if !reachable(&base).await {
            eprintln!(
                "{title}: no server answers at {base}/health; start one first \
                 (cargo run --release --features server --example server)"
            );
            unreachable = true;
            continue;
        }
        for (n, &workers) in args.concurrency.iter().enumerate() {
            let workers = workers.max(1);
            let reports = bench(&args, &base, workers, run_id * 100 + n as u64).await;
            print(&format!("{title} {base}"), workers, &reports, seed);
        }
    }
    if unreachable {
        std::process::exit(1);
    }
}
