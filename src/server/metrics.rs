//! Prometheus metrics: requests by route, method and status, latency histograms by route, and
//! the store's own figures from [`Db::stats`](crate::Db::stats), read at every scrape.
//!
//! Each server has its own registry (no process-global recorder), so several servers in one
//! process keep their figures apart. Routes are labelled with their template
//! (`/key/{key}`), never with a raw key.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::Db;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

type LatencyFamily = Family<RouteLabels, Histogram, fn() -> Histogram>;

/// The metrics of one server.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: LatencyFamily,
}

fn latency_histogram() -> Histogram {
    // 25 µs .. ~0.8 s
    Histogram::new(exponential_buckets(25e-6, 2.0, 16))
}

impl Metrics {
    pub(crate) fn new(db: Db) -> Metrics {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let latency: LatencyFamily = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            latency.clone(),
        );
        registry.register_collector(Box::new(StoreCollector { db }));
        Metrics {
            registry,
            requests,
            latency,
        }
    }

    fn observe(&self, route: String, method: &Method, status: u16, elapsed: Duration) {
        let method = match *method {
            Method::GET => "GET",
            Method::PUT => "PUT",
            Method::POST => "POST",
            Method::DELETE => "DELETE",
            Method::HEAD => "HEAD",
            Method::PATCH => "PATCH",
            Method::OPTIONS => "OPTIONS",
            _ => "other",
        };
        self.latency
            .get_or_create(&RouteLabels {
                route: route.clone(),
            })
            .observe(elapsed.as_secs_f64());
        self.requests
            .get_or_create(&RequestLabels {
                route,
                method,
                status,
            })
            .inc();
    }

    /// The metrics in the OpenMetrics text format (reads the store's figures).
    pub(crate) fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Middleware that counts and times every request.
pub(crate) async fn track(State(state): State<Arc<Metrics>>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let method = req.method().clone();
    let start = Instant::now();
    let resp = next.run(req).await;
    state.observe(route, &method, resp.status().as_u16(), start.elapsed());
    resp
}

/// Reads the store's figures at scrape time.
#[derive(Debug)]
struct StoreCollector {
    db: Db,
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let c = ConstCounter::new(v);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, v: u64) -> std::fmt::Result {
    let g = ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX));
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

impl Collector for StoreCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let s = self.db.stats();
        let e = &mut e;
        gauge(
            e,
            "strata_last_seqno",
            "Highest sequence number visible",
            s.last_seqno.get(),
        )?;
        gauge(
            e,
            "strata_memtable_bytes",
            "Bytes in the mutable memtable",
            s.memtable_bytes,
        )?;
        gauge(
            e,
            "strata_immutable_memtables",
            "Frozen memtables waiting for their flush",
            s.immutable_memtables as u64,
        )?;
        gauge(
            e,
            "strata_wal_segments",
            "Live WAL segments",
            s.wal_segments as u64,
        )?;
        gauge(
            e,
            "strata_wal_bytes",
            "Bytes in live WAL segments",
            s.wal_bytes,
        )?;
        let tables: usize = s.levels.iter().map(|l| l.tables).sum();
        let table_bytes: u64 = s.levels.iter().map(|l| l.bytes).sum();
        gauge(e, "strata_tables", "Tables in all levels", tables as u64)?;
        gauge(
            e,
            "strata_table_bytes",
            "Bytes of tables in all levels",
            table_bytes,
        )?;
        gauge(
            e,
            "strata_live_snapshots",
            "Live snapshots and iterators",
            s.live_snapshots as u64,
        )?;
        counter(e, "strata_puts", "Puts applied", s.puts)?;
        counter(e, "strata_deletes", "Deletes applied", s.deletes)?;
        counter(e, "strata_batches", "Batches committed", s.batches)?;
        counter(
            e,
            "strata_write_groups",
            "Commit groups written to the WAL",
            s.write_groups,
        )?;
        counter(e, "strata_wal_syncs", "WAL fsyncs", s.wal_syncs)?;
        counter(
            e,
            "strata_wal_written_bytes",
            "Bytes appended to the WAL",
            s.wal_bytes_written,
        )?;
        counter(
            e,
            "strata_flushes",
            "Memtables flushed to tables",
            s.flushes,
        )?;
        counter(
            e,
            "strata_write_stalls",
            "Writes that waited for a flush",
            s.write_stalls,
        )?;
        counter(
            e,
            "strata_conflicts",
            "Failed write preconditions",
            s.conflicts,
        )?;
        gauge(
            e,
            "strata_pending_compaction_bytes",
            "Estimated bytes compaction must rewrite to bring every level under its target",
            s.pending_compaction_bytes,
        )?;
        counter(
            e,
            "strata_compactions",
            "Compactions run (moves included)",
            s.compactions,
        )?;
        counter(
            e,
            "strata_compaction_read_bytes",
            "Bytes read by compactions",
            s.compaction_bytes_read,
        )?;
        counter(
            e,
            "strata_compaction_written_bytes",
            "Bytes written by compactions",
            s.compaction_bytes_written,
        )?;
        let c = self.db.compaction_status();
        gauge(
            e,
            "strata_compaction_running",
            "1 while a compaction runs",
            u64::from(c.running),
        )?;
        let (input, output) = c.current.map_or((0, 0), |p| (p.bytes_in, p.bytes_out));
        gauge(
            e,
            "strata_compaction_current_input_bytes",
            "Bytes the running compaction reads (0 between compactions)",
            input,
        )?;
        gauge(
            e,
            "strata_compaction_current_output_bytes",
            "Bytes of the running compaction's finished output tables",
            output,
        )?;
        Ok(())
    }
}
