//! The exporter: one thread with its own tokio runtime that merges worker statistics,
//! builds spans, sends OTLP and serves Prometheus. The capture path never waits for it.
//!
//! ```text
//! worker ── WorkerExport ──▶ ArrayQueue<Store>     (stat deltas each tick; a full queue
//!                                                    keeps the delta for the next tick)
//!                       └──▶ ArrayQueue<SpanItem>  (sampled transactions; full → the
//!                                                    oldest is dropped and counted)
//! export thread: merge → cumulative + delta stores → OTLP metrics every interval, /metrics
//!                spans → bounded retry buffer (oldest dropped beyond the bound) → OTLP
//! ```
//!
//! Every sampled span ends up counted once: exported, rejected by the collector, or
//! dropped (queue full, buffer full, permanent error, shutdown deadline), so
//! `sampled = exported + rejected + dropped` holds exactly.

use compact_str::CompactString;
use crossbeam_queue::ArrayQueue;
use crossbeam_utils::CachePadded;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::{ExportConfig, Temporality};
use super::health::Health;
use super::otlp::client::{OtlpClient, SendError};
use super::otlp::{logs as otlp_logs, metrics as otlp_metrics, resource, spans};
use super::prometheus::SelfMetric;
use super::{ExportError, RecordSink};
use crate::capture::iface::Selector;
use crate::events::Counters;
use crate::flow::FlowRecord;
use crate::proto::Transaction;
use crate::stats::{Attrs, CaptureTotals, Metric, Store, WorkerStats};

/// Counters one worker owns (written by that worker only; padded so workers never share
/// a cache line).
#[derive(Default)]
struct WorkerSlot {
    sampled: AtomicU64,
    queue_dropped: AtomicU64,
    deltas_deferred: AtomicU64,
}

#[derive(Default)]
struct Counts {
    spans_exported: AtomicU64,
    spans_rejected: AtomicU64,
    spans_dropped_buffer: AtomicU64,
    spans_dropped_error: AtomicU64,
    spans_dropped_shutdown: AtomicU64,
    spans_buffered: AtomicU64,
    spans_buffered_max: AtomicU64,
    points_exported: AtomicU64,
    points_dropped: AtomicU64,
    trace_failures: AtomicU64,
    metric_failures: AtomicU64,
    log_failures: AtomicU64,
    logs_exported: AtomicU64,
    /// Log records lost: queue or retry buffer full, rejected, or left at shutdown.
    logs_dropped: AtomicU64,
}

struct Aggregates {
    /// Since start: Prometheus, and OTLP with cumulative temporality.
    cumulative: Store,
    /// Since the last successful OTLP metrics export (delta temporality).
    delta: Store,
    delta_start_ns: u64,
}

struct Shared {
    cfg: ExportConfig,
    spans: ArrayQueue<spans::SpanItem>,
    deltas: ArrayQueue<Store>,
    slots: Mutex<Vec<Arc<CachePadded<WorkerSlot>>>>,
    counts: Counts,
    aggregates: Mutex<Aggregates>,
    start_ns: u64,
    stop: AtomicBool,
    /// Set by `shutdown`: when the final flush gives up.
    deadline: Mutex<Option<Instant>>,
    notify: tokio::sync::Notify,
    health: Health,
    /// Interfaces being captured (ifindex, name): their series exist from attachment
    /// until detachment. Workers read it between batches, never locking.
    interfaces: arc_swap::ArcSwap<Vec<(u32, Arc<str>)>>,
    /// Anomaly events' log records, from the event engine to this thread.
    logs: ArrayQueue<LogRecord>,
    /// The aggregate anomaly detector, fed from the deltas (when anomalies are on).
    detector: Mutex<Option<crate::anomaly::aggregate::Detector>>,
    /// What `/alive` answers, once health probes run (see [`MetricsFeed::serve_alive`]).
    alive: Arc<std::sync::OnceLock<super::http_server::AliveFn>>,
}

/// Log records held while the collector is slow or down; beyond it the oldest are dropped.
const MAX_LOGS_BUFFERED: usize = 4096;

/// What the exporter did, for the end-of-run report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExportTotals {
    pub spans_sampled: u64,
    pub spans_exported: u64,
    pub spans_rejected: u64,
    pub spans_dropped: u64,
    pub spans_buffered_max: u64,
    pub points_exported: u64,
    pub points_dropped: u64,
}

impl std::fmt::Display for ExportTotals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "export: spans sampled={} exported={} rejected={} dropped={} buffered_max={}; \
             data points exported={} dropped={}",
            self.spans_sampled,
            self.spans_exported,
            self.spans_rejected,
            self.spans_dropped,
            self.spans_buffered_max,
            self.points_exported,
            self.points_dropped
        )
    }
}

/// The running exporter. `worker_handle(i)` gives each worker what it needs;
/// `shutdown` flushes with a deadline.
pub struct Exporter {
    shared: Arc<Shared>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// The address /metrics is served on, when enabled.
    pub prometheus_addr: Option<std::net::SocketAddr>,
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Exporter {
    /// Start the export thread for `cfg` (the OpenTelemetry environment variables
    /// applied on top). Binds the Prometheus address before returning, so a port in use
    /// is an error here.
    pub fn start(cfg: &ExportConfig, health: Health) -> Result<Exporter, ExportError> {
        let mut cfg = cfg.clone();
        cfg.apply_env(|k| std::env::var(k).ok())
            .map_err(|(key, message)| ExportError::Config { key, message })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ExportError::Runtime)?;
        let listener = if cfg.prometheus.listen.is_empty() {
            None
        } else {
            let addr: std::net::SocketAddr =
                cfg.prometheus
                    .listen
                    .parse()
                    .map_err(|_| ExportError::Config {
                        key: "export.prometheus.listen".into(),
                        message: "not an address".into(),
                    })?;
            let l = runtime
                .block_on(tokio::net::TcpListener::bind(addr))
                .map_err(|e| ExportError::Bind { addr, source: e })?;
            Some(l)
        };
        let prometheus_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let client = if cfg.otlp.enabled {
            let _guard = runtime.enter();
            Some(OtlpClient::new(&cfg.otlp)?)
        } else {
            None
        };
        let spec = cfg.metrics.spec();
        let max_series = cfg.metrics.max_series;
        let start_ns = now_ns();
        let shared = Arc::new(Shared {
            spans: ArrayQueue::new(cfg.spans.queue),
            deltas: ArrayQueue::new(cfg.metrics.queue),
            slots: Mutex::new(Vec::new()),
            counts: Counts::default(),
            aggregates: Mutex::new(Aggregates {
                cumulative: Store::new(spec.clone(), max_series),
                delta: Store::new(spec, max_series),
                delta_start_ns: start_ns,
            }),
            start_ns,
            stop: AtomicBool::new(false),
            deadline: Mutex::new(None),
            notify: tokio::sync::Notify::new(),
            health,
            interfaces: Default::default(),
            logs: ArrayQueue::new(MAX_LOGS_BUFFERED),
            detector: Mutex::new(None),
            alive: Default::default(),
            cfg,
        });
        // Every event kind has its series from the start, at zero: an alert on one sees a
        // series before the first occurrence.
        shared.register(crate::stats::event_series());
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("podtap-export".into())
            .spawn(move || runtime.block_on(run(s, client, listener)))
            .map_err(ExportError::Runtime)?;
        if let Some(a) = prometheus_addr {
            tracing::info!(%a, "serving /metrics, /healthz, /readyz");
        }
        Ok(Exporter {
            shared,
            thread: Some(thread),
            prometheus_addr,
        })
    }

    /// What worker `index` needs: statistics recording and span sampling, fed from its
    /// records (wrap its sink in [`ExportSink`]).
    pub fn worker_handle(&self, index: usize) -> WorkerExport {
        // The worker's capture series (packets, bytes, drops) exist from its start.
        self.shared.register(crate::stats::worker_series(index));
        let slot = Arc::new(CachePadded::new(WorkerSlot::default()));
        self.shared
            .slots
            .lock()
            .expect("slots lock")
            .push(slot.clone());
        let c = &self.shared.cfg;
        let spans_on = c.spans.enabled && c.otlp.enabled && c.otlp.traces;
        WorkerExport {
            shared: self.shared.clone(),
            slot,
            stats: WorkerStats::new(c.metrics.spec(), c.metrics.max_series),
            sampler: spans::Sampler::new(
                c.spans.sample_ratio,
                c.spans.keep_errors,
                c.spans.keep_slower_than_ms,
            ),
            ids: spans::IdGen::new(index as u64 + 1),
            spans_on,
            link: c.spans.link_client_server,
            captured: None,
            index,
        }
    }

    /// Capture started on interface `name` (`ifindex`): its packet and byte series exist
    /// from now on, at zero until frames arrive.
    pub fn interface_attached(&self, ifindex: u32, name: &str) {
        let name: Arc<str> = Arc::from(name);
        self.shared.interfaces.rcu(|v| {
            let mut v = Vec::clone(v);
            v.retain(|(i, _)| *i != ifindex);
            v.push((ifindex, name.clone()));
            v
        });
        self.shared.register(crate::stats::interface_series(&name));
    }

    /// Capture stopped on interface `ifindex`: its series are removed (a pod's veth does
    /// not come back; keeping them would pile up dead series as pods come and go).
    pub fn interface_detached(&self, ifindex: u32) {
        let mut gone = None;
        self.shared.interfaces.rcu(|v| {
            let mut v = Vec::clone(v);
            gone = v
                .iter()
                .position(|(i, _)| *i == ifindex)
                .map(|p| v.remove(p).1);
            v
        });
        let Some(name) = gone else { return };
        let mut a = self.shared.aggregates.lock().expect("aggregates lock");
        let keep = |k: &crate::stats::SeriesKey| !of_interface(k, |n| n == &*name);
        a.cumulative.retain(keep);
        a.delta.retain(keep);
    }

    pub fn totals(&self) -> ExportTotals {
        self.shared.totals()
    }

    /// Does it send anything (OTLP, or /metrics)? Otherwise it only keeps statistics
    /// (for `podtap top`, `control.top`).
    pub fn exports(&self) -> bool {
        self.shared.cfg.active()
    }

    /// Read the statistics since start (what /metrics shows), under the lock the export
    /// thread merges worker deltas with: `f` should be quick. Workers never take it.
    pub fn with_stats<R>(&self, f: impl FnOnce(&Store) -> R) -> R {
        let a = self.shared.aggregates.lock().expect("aggregates lock");
        f(&a.cumulative)
    }

    /// Anomaly events: the aggregate kinds are found from the deltas this exporter merges
    /// (their findings go to `hub`), and the returned sink turns each event into an OTLP
    /// log record and a count in `podtap.anomalies` (series at zero from now on).
    pub fn anomalies(
        &self,
        cfg: &crate::anomaly::AnomalyConfig,
        hub: Arc<crate::anomaly::Hub>,
    ) -> AnomalyExport {
        use crate::anomaly::Kind;
        let series = Kind::ALL.iter().flat_map(|k| {
            [
                (Metric::Anomalies, anomaly_attrs(Some(*k), None)),
                (
                    Metric::AnomaliesSuppressed,
                    anomaly_attrs(Some(*k), Some("rate_limited")),
                ),
            ]
        });
        self.shared.register(series.chain([(
            Metric::AnomaliesSuppressed,
            anomaly_attrs(None, Some("queue_full")),
        )]));
        *self.shared.detector.lock().expect("detector lock") =
            Some(crate::anomaly::aggregate::Detector::new(cfg, hub));
        let c = &self.shared.cfg;
        AnomalyExport {
            shared: self.shared.clone(),
            store: Store::new(c.metrics.spec(), c.metrics.max_series),
            logs: c.otlp.enabled && c.otlp.logs,
        }
    }

    /// Pods' monitoring policies set their burst thresholds (see
    /// `anomaly::aggregate::Detector::with_policies`); a no-op with anomalies off.
    pub fn anomaly_policies(&self, attr: crate::k8s::Attributor) {
        if let Some(d) = self.shared.detector.lock().expect("detector lock").as_mut() {
            d.with_policies(attr);
        }
    }

    /// A handle for series recorded off the packet path (health probes): they reach
    /// `/metrics` and OTLP like the workers' deltas.
    pub fn metrics_feed(&self) -> MetricsFeed {
        MetricsFeed {
            shared: self.shared.clone(),
        }
    }

    /// The health handle `/readyz` reports (the daemon sets how many interfaces capture).
    pub fn health(&self) -> &Health {
        &self.shared.health
    }

    /// Stop: merge what the workers sent, export the remaining spans and the last metrics
    /// within `deadline`, count whatever could not be sent as dropped.
    pub fn shutdown(mut self, deadline: Duration) -> ExportTotals {
        self.stop(deadline);
        self.shared.totals()
    }

    fn stop(&mut self, deadline: Duration) {
        let Some(t) = self.thread.take() else { return };
        *self.shared.deadline().lock().expect("deadline lock") = Some(Instant::now() + deadline);
        self.shared.stop.store(true, Relaxed);
        self.shared.notify.notify_one();
        if t.join().is_err() {
            tracing::error!("export thread panicked");
        }
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(1));
    }
}

impl Shared {
    fn deadline(&self) -> &Mutex<Option<Instant>> {
        &self.deadline
    }

    /// Create `series` at zero where they do not exist yet (Prometheus and OTLP alike).
    fn register(&self, series: impl IntoIterator<Item = (Metric, Attrs)>) {
        let delta = self.cfg.metrics.temporality == Temporality::Delta;
        let mut a = self.aggregates.lock().expect("aggregates lock");
        for (metric, attrs) in series {
            a.cumulative.add(metric, &attrs, 0);
            if delta {
                a.delta.add(metric, &attrs, 0);
            }
        }
    }

    fn worker_sum(&self, f: impl Fn(&WorkerSlot) -> u64) -> u64 {
        self.slots
            .lock()
            .expect("slots lock")
            .iter()
            .map(|s| f(s))
            .sum()
    }

    fn totals(&self) -> ExportTotals {
        let c = &self.counts;
        ExportTotals {
            spans_sampled: self.worker_sum(|s| s.sampled.load(Relaxed)),
            spans_exported: c.spans_exported.load(Relaxed),
            spans_rejected: c.spans_rejected.load(Relaxed),
            spans_dropped: self.worker_sum(|s| s.queue_dropped.load(Relaxed))
                + c.spans_dropped_buffer.load(Relaxed)
                + c.spans_dropped_error.load(Relaxed)
                + c.spans_dropped_shutdown.load(Relaxed),
            spans_buffered_max: c.spans_buffered_max.load(Relaxed),
            points_exported: c.points_exported.load(Relaxed),
            points_dropped: c.points_dropped.load(Relaxed),
        }
    }

    fn self_metrics(&self) -> Vec<SelfMetric> {
        let c = &self.counts;
        let l = |k: &'static str, v: &str| vec![(k, v.to_string())];
        vec![
            SelfMetric {
                name: "podtap_export_spans_total",
                help: "Sampled spans by outcome (sampled = exported + rejected + all dropped)",
                gauge: false,
                series: vec![
                    (
                        l("outcome", "sampled"),
                        self.worker_sum(|s| s.sampled.load(Relaxed)),
                    ),
                    (l("outcome", "exported"), c.spans_exported.load(Relaxed)),
                    (l("outcome", "rejected"), c.spans_rejected.load(Relaxed)),
                    (
                        l("outcome", "dropped_queue_full"),
                        self.worker_sum(|s| s.queue_dropped.load(Relaxed)),
                    ),
                    (
                        l("outcome", "dropped_buffer_full"),
                        c.spans_dropped_buffer.load(Relaxed),
                    ),
                    (
                        l("outcome", "dropped_export_error"),
                        c.spans_dropped_error.load(Relaxed),
                    ),
                    (
                        l("outcome", "dropped_shutdown"),
                        c.spans_dropped_shutdown.load(Relaxed),
                    ),
                ],
            },
            SelfMetric {
                name: "podtap_export_spans_buffered",
                help: "Spans held for export now",
                gauge: true,
                series: vec![(vec![], c.spans_buffered.load(Relaxed))],
            },
            SelfMetric {
                name: "podtap_export_spans_buffered_max",
                help: "Most spans held for export at once",
                gauge: true,
                series: vec![(vec![], c.spans_buffered_max.load(Relaxed))],
            },
            SelfMetric {
                name: "podtap_export_data_points_total",
                help: "OTLP metric data points by outcome",
                gauge: false,
                series: vec![
                    (l("outcome", "exported"), c.points_exported.load(Relaxed)),
                    (l("outcome", "dropped"), c.points_dropped.load(Relaxed)),
                ],
            },
            SelfMetric {
                name: "podtap_export_failures_total",
                help: "Failed OTLP export requests by signal",
                gauge: false,
                series: vec![
                    (l("signal", "traces"), c.trace_failures.load(Relaxed)),
                    (l("signal", "metrics"), c.metric_failures.load(Relaxed)),
                    (l("signal", "logs"), c.log_failures.load(Relaxed)),
                ],
            },
            SelfMetric {
                name: "podtap_export_logs_total",
                help: "OTLP log records (anomaly events) by outcome",
                gauge: false,
                series: vec![
                    (l("outcome", "exported"), c.logs_exported.load(Relaxed)),
                    (l("outcome", "dropped"), c.logs_dropped.load(Relaxed)),
                ],
            },
            SelfMetric {
                name: "podtap_stats_deltas_deferred_total",
                help: "Worker statistics deltas kept for the next tick because the queue was full",
                gauge: false,
                series: vec![(vec![], self.worker_sum(|s| s.deltas_deferred.load(Relaxed)))],
            },
            SelfMetric {
                name: "podtap_metric_series_overflow_total",
                help: "Values folded into otel.metric.overflow series (max_series reached)",
                gauge: false,
                series: vec![(
                    vec![],
                    self.aggregates
                        .lock()
                        .expect("aggregates lock")
                        .cumulative
                        .overflowed,
                )],
            },
        ]
    }

    fn render_prometheus(&self) -> String {
        let own = self.self_metrics();
        let a = self.aggregates.lock().expect("aggregates lock");
        super::prometheus::render(&a.cumulative, &own)
    }
}

/// Logs at most once per interval per kind, with how many were suppressed.
struct RateLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLog {
    fn new() -> RateLog {
        RateLog {
            last: None,
            suppressed: 0,
        }
    }

    fn warn(&mut self, what: &str, err: &dyn std::fmt::Display) {
        let now = Instant::now();
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(10))
        {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(suppressed = self.suppressed, "{what}: {err}");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// Spans built and waiting for the collector, bounded in count and bytes.
struct SpanBuffer {
    spans: VecDeque<(resource::SpanResource, Span, usize)>,
    bytes: usize,
}

impl SpanBuffer {
    fn push(
        &mut self,
        resource: resource::SpanResource,
        span: Span,
        max: usize,
        max_bytes: usize,
    ) -> u64 {
        let size = span.encoded_len();
        self.bytes += size;
        self.spans.push_back((resource, span, size));
        let mut dropped = 0;
        while self.spans.len() > max || (self.bytes > max_bytes && self.spans.len() > 1) {
            let (_, _, sz) = self.spans.pop_front().expect("non-empty");
            self.bytes -= sz;
            dropped += 1;
        }
        dropped
    }

    fn take(&mut self, n: usize) -> Vec<(resource::SpanResource, Span, usize)> {
        let n = n.min(self.spans.len());
        let batch: Vec<_> = self.spans.drain(..n).collect();
        self.bytes -= batch.iter().map(|b| b.2).sum::<usize>();
        batch
    }

    /// Put a batch that failed back in front, oldest first.
    fn put_back(&mut self, batch: Vec<(resource::SpanResource, Span, usize)>) {
        for item in batch.into_iter().rev() {
            self.bytes += item.2;
            self.spans.push_front(item);
        }
    }
}

async fn run(
    shared: Arc<Shared>,
    mut client: Option<OtlpClient>,
    listener: Option<tokio::net::TcpListener>,
) {
    if let Some(l) = listener {
        tokio::spawn(super::http_server::serve(l, shared_render(&shared)));
    }
    let cfg = &shared.cfg;
    let traces_on = cfg.otlp.enabled && cfg.otlp.traces && cfg.spans.enabled;
    let metrics_on = cfg.otlp.enabled && cfg.otlp.metrics;
    let logs_on = cfg.otlp.enabled && cfg.otlp.logs;
    let interval = Duration::from_millis(cfg.metrics.interval_ms);
    let mut next_metrics = Instant::now() + interval;
    let mut buf = SpanBuffer {
        spans: VecDeque::new(),
        bytes: 0,
    };
    let retry_initial = Duration::from_millis(cfg.spans.retry_initial_ms);
    let retry_max = Duration::from_millis(cfg.spans.retry_max_ms.max(cfg.spans.retry_initial_ms));
    let mut retry_delay = retry_initial;
    let mut retry_at = Instant::now();
    let mut metrics_retry_at = Instant::now();
    let mut metrics_retry_delay = retry_initial;
    let mut logs: VecDeque<LogRecord> = VecDeque::new();
    let mut logs_retry_at = Instant::now();
    let mut logs_retry_delay = retry_initial;
    let mut log_log = RateLog::new();
    let mut trace_log = RateLog::new();
    let mut metric_log = RateLog::new();
    let default_service = CompactString::from(cfg.service_name.as_str());
    // When stopping, metrics go out once more (with the workers' last deltas), not on
    // every pass of the flush loop: repeating a cumulative export of every series per
    // pass would starve the span flush of its deadline.
    let mut final_metrics_done = false;
    loop {
        let stopping = shared.stop.load(Relaxed);
        ingest(&shared, &mut buf, &default_service);
        let deadline = *shared.deadline().lock().expect("deadline lock");
        let past_deadline = stopping && deadline.is_some_and(|d| Instant::now() >= d);
        // Spans: send while there are some and the collector is not in backoff.
        let mut sent_any = false;
        if let Some(c) = client.as_mut().filter(|_| traces_on)
            && !buf.spans.is_empty()
            && Instant::now() >= retry_at
            && !past_deadline
        {
            let batch = buf.take(cfg.spans.max_batch);
            let n = batch.len() as u64;
            let req = ExportTraceServiceRequest {
                resource_spans: resource::group(
                    batch
                        .iter()
                        .map(|(r, sp, _)| (r.clone(), sp.clone()))
                        .collect(),
                    &cfg.service_name,
                    &cfg.resource_attributes,
                ),
            };
            match bounded(deadline, stopping, c.traces(req)).await {
                Ok(rejected) => {
                    shared
                        .counts
                        .spans_exported
                        .fetch_add(n - rejected.min(n), Relaxed);
                    shared
                        .counts
                        .spans_rejected
                        .fetch_add(rejected.min(n), Relaxed);
                    retry_delay = retry_initial;
                    shared.health.set_exporter_failing(false);
                    sent_any = true;
                }
                Err(SendError::Permanent(m)) => {
                    shared.counts.spans_dropped_error.fetch_add(n, Relaxed);
                    shared.counts.trace_failures.fetch_add(1, Relaxed);
                    trace_log.warn("span export rejected, batch dropped", &m);
                }
                Err(e) => {
                    shared.counts.trace_failures.fetch_add(1, Relaxed);
                    shared.health.set_exporter_failing(true);
                    trace_log.warn("span export failed", &e);
                    buf.put_back(batch);
                    retry_at = Instant::now() + retry_delay;
                    retry_delay = (retry_delay * 2).min(retry_max);
                }
            }
            set_buffered(&shared, buf.spans.len());
        }
        // Log records (anomaly events): whenever there are some.
        while let Some(r) = shared.logs.pop() {
            if logs.len() >= MAX_LOGS_BUFFERED {
                logs.pop_front();
                shared.counts.logs_dropped.fetch_add(1, Relaxed);
            }
            logs.push_back(r);
        }
        if let Some(c) = client.as_mut().filter(|_| logs_on)
            && !logs.is_empty()
            && Instant::now() >= logs_retry_at
            && !past_deadline
        {
            let n = logs.len().min(512);
            let batch: Vec<LogRecord> = logs.drain(..n).collect();
            let req =
                otlp_logs::request(batch.clone(), &cfg.service_name, &cfg.resource_attributes);
            match bounded(deadline, stopping, c.logs(req)).await {
                Ok(rejected) => {
                    let r = rejected.min(n as u64);
                    shared.counts.logs_exported.fetch_add(n as u64 - r, Relaxed);
                    shared.counts.logs_dropped.fetch_add(r, Relaxed);
                    logs_retry_delay = retry_initial;
                }
                Err(SendError::Permanent(m)) => {
                    shared.counts.logs_dropped.fetch_add(n as u64, Relaxed);
                    shared.counts.log_failures.fetch_add(1, Relaxed);
                    log_log.warn("log export rejected, batch dropped", &m);
                }
                Err(e) => {
                    shared.counts.log_failures.fetch_add(1, Relaxed);
                    log_log.warn("log export failed", &e);
                    for r in batch.into_iter().rev() {
                        logs.push_front(r);
                    }
                    logs_retry_at = Instant::now() + logs_retry_delay;
                    logs_retry_delay = (logs_retry_delay * 2).min(retry_max);
                }
            }
        } else if !logs_on {
            logs.clear();
        }
        // Metrics: every interval, and once more when stopping.
        let metrics_due = Instant::now() >= next_metrics || (stopping && !final_metrics_done);
        if metrics_on
            && metrics_due
            && Instant::now() >= metrics_retry_at
            && !past_deadline
            && let Some(c) = client.as_mut()
        {
            next_metrics = Instant::now() + interval;
            let now = now_ns();
            let (req, is_delta) = {
                let a = shared.aggregates.lock().expect("aggregates lock");
                match cfg.metrics.temporality {
                    Temporality::Cumulative => (
                        (!a.cumulative.is_empty()).then(|| {
                            otlp_metrics::request(
                                &a.cumulative,
                                Temporality::Cumulative,
                                shared.start_ns,
                                now,
                                &cfg.service_name,
                                &cfg.resource_attributes,
                            )
                        }),
                        false,
                    ),
                    Temporality::Delta => (
                        (!a.delta.is_empty()).then(|| {
                            otlp_metrics::request(
                                &a.delta,
                                Temporality::Delta,
                                a.delta_start_ns,
                                now,
                                &cfg.service_name,
                                &cfg.resource_attributes,
                            )
                        }),
                        true,
                    ),
                }
            };
            // Nothing to send counts as sent; a retryable failure leaves it due.
            final_metrics_done |= stopping && req.is_none();
            if let Some(req) = req {
                let points = otlp_metrics::data_points(&req);
                match bounded(deadline, stopping, c.metrics(req)).await {
                    Ok(rejected) => {
                        shared
                            .counts
                            .points_exported
                            .fetch_add(points - rejected.min(points), Relaxed);
                        shared
                            .counts
                            .points_dropped
                            .fetch_add(rejected.min(points), Relaxed);
                        if is_delta {
                            let mut a = shared.aggregates.lock().expect("aggregates lock");
                            a.delta = a.delta.empty_like();
                            a.delta_start_ns = now;
                        }
                        metrics_retry_delay = retry_initial;
                        final_metrics_done |= stopping;
                    }
                    Err(e) => {
                        shared.counts.metric_failures.fetch_add(1, Relaxed);
                        metric_log.warn("metric export failed", &e);
                        // Delta points stay in the delta store and go with the next
                        // export; cumulative ones are in every export anyway. Only a
                        // rejected delta is lost.
                        if let SendError::Permanent(_) = e {
                            final_metrics_done |= stopping;
                            shared.counts.points_dropped.fetch_add(points, Relaxed);
                            if is_delta {
                                let mut a = shared.aggregates.lock().expect("aggregates lock");
                                a.delta = a.delta.empty_like();
                                a.delta_start_ns = now;
                            }
                        } else {
                            metrics_retry_at = Instant::now() + metrics_retry_delay;
                            metrics_retry_delay = (metrics_retry_delay * 2).min(retry_max);
                        }
                    }
                }
            }
        }
        if stopping {
            let spans_done = !traces_on || client.is_none() || buf.spans.is_empty();
            let queues_empty = shared.spans.is_empty() && shared.deltas.is_empty();
            let metrics_done = !metrics_on || client.is_none() || final_metrics_done;
            let logs_done = !logs_on || client.is_none() || logs.is_empty();
            if (spans_done && queues_empty && metrics_done && logs_done) || past_deadline {
                break;
            }
            if !sent_any {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            continue;
        }
        if sent_any && !buf.spans.is_empty() {
            continue;
        }
        tokio::select! {
            _ = shared.notify.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    // Whatever is left could not be sent before the deadline.
    ingest(&shared, &mut buf, &default_service);
    let mut left = buf.spans.len() as u64;
    while shared.spans.pop().is_some() {
        left += 1;
    }
    shared
        .counts
        .spans_dropped_shutdown
        .fetch_add(left, Relaxed);
    set_buffered(&shared, 0);
    let mut logs_left = logs.len() as u64;
    while shared.logs.pop().is_some() {
        logs_left += 1;
    }
    shared.counts.logs_dropped.fetch_add(logs_left, Relaxed);
}

/// `podtap.anomaly.kind` (none for findings lost before their kind was read) and the
/// suppression reason.
fn anomaly_attrs(kind: Option<crate::anomaly::Kind>, reason: Option<&'static str>) -> Attrs {
    let mut a = Attrs::new();
    if let Some(k) = kind {
        a.push((
            "podtap.anomaly.kind",
            crate::stats::Val::Str(CompactString::const_new(k.name())),
        ));
    }
    if let Some(r) = reason {
        a.push((
            "podtap.anomaly.reason",
            crate::stats::Val::Str(CompactString::const_new(r)),
        ));
    }
    a
}

/// The exporter's side of the anomaly events (an [`EventSink`] of the event engine):
/// each event becomes a count in `podtap.anomalies` and, with OTLP logs on, a log record
/// queued for this exporter's thread (full: dropped, counted).
///
/// [`EventSink`]: crate::anomaly::engine::EventSink
pub struct AnomalyExport {
    shared: Arc<Shared>,
    store: Store,
    logs: bool,
}

impl crate::anomaly::engine::EventSink for AnomalyExport {
    fn event(&mut self, e: &crate::anomaly::engine::Event) {
        self.store.add(
            Metric::Anomalies,
            &anomaly_attrs(Some(e.signal.kind), None),
            1,
        );
        if self.logs
            && self
                .shared
                .logs
                .push(otlp_logs::record(e, now_ns()))
                .is_err()
        {
            self.shared.counts.logs_dropped.fetch_add(1, Relaxed);
        }
    }

    fn suppressed(&mut self, kind: Option<crate::anomaly::Kind>, reason: &'static str, n: u64) {
        self.store.add(
            Metric::AnomaliesSuppressed,
            &anomaly_attrs(kind, Some(reason)),
            n,
        );
    }

    fn flush(&mut self) {
        if self.store.is_empty() {
            return;
        }
        // A full delta queue keeps the counts here for the next flush.
        if let Err(d) = self.shared.deltas.push(self.store.take()) {
            self.store.merge(d);
        }
        self.shared.notify.notify_one();
    }
}

/// A send, cut short by the shutdown deadline when stopping.
async fn bounded<T>(
    deadline: Option<Instant>,
    stopping: bool,
    f: impl std::future::Future<Output = Result<T, SendError>>,
) -> Result<T, SendError> {
    match deadline.filter(|_| stopping) {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            tokio::time::timeout(left, f)
                .await
                .unwrap_or_else(|_| Err(SendError::Retryable("shutdown deadline".into())))
        }
        None => f.await,
    }
}

fn set_buffered(shared: &Shared, n: usize) {
    shared.counts.spans_buffered.store(n as u64, Relaxed);
    shared
        .counts
        .spans_buffered_max
        .fetch_max(n as u64, Relaxed);
}

/// Merge worker deltas; build spans from queued transactions into the bounded buffer.
fn ingest(shared: &Shared, buf: &mut SpanBuffer, default_service: &CompactString) {
    let mut a = shared.aggregates.lock().expect("aggregates lock");
    merge_deltas(shared, &mut a);
    drop(a);
    if let Some(det) = shared.detector.lock().expect("detector lock").as_mut() {
        det.tick(Instant::now());
    }
    let s = &shared.cfg.spans;
    while let Some(item) = shared.spans.pop() {
        let resource = resource::resource_of(&item.tx, default_service);
        let span = spans::build_span(&item);
        let dropped = buf.push(resource, span, s.max_buffered, s.max_buffered_bytes);
        if dropped > 0 {
            shared
                .counts
                .spans_dropped_buffer
                .fetch_add(dropped, Relaxed);
        }
    }
    set_buffered(shared, buf.spans.len());
}

/// Merge the deltas queued so far into `a` (the caller holds the aggregates lock), feeding
/// the anomaly detector on the way.
fn merge_deltas(shared: &Shared, a: &mut Aggregates) {
    if shared.deltas.is_empty() {
        return;
    }
    let attached = shared.interfaces.load();
    let mut det = shared.detector.lock().expect("detector lock");
    while let Some(mut d) = shared.deltas.pop() {
        if let Some(det) = det.as_mut() {
            det.observe(&d);
            det.drops(&d);
        }
        // A worker may have counted frames of an interface just detached: its series
        // is gone and stays gone.
        d.retain(|k| !of_interface(k, |n| attached.iter().all(|(_, a)| **a != *n)));
        if shared.cfg.metrics.temporality == Temporality::Delta {
            a.delta.merge(d.clone());
        }
        a.cumulative.merge(d);
    }
}

/// Is `k` a per-interface series whose interface name `pred` accepts?
fn of_interface(k: &crate::stats::SeriesKey, pred: impl Fn(&str) -> bool) -> bool {
    matches!(k.metric, Metric::InterfacePackets | Metric::InterfaceBytes)
        && k.attrs.iter().any(|(key, v)| {
            *key == "network.interface.name" && matches!(v, crate::stats::Val::Shared(n) if pred(n))
        })
}

fn shared_render(shared: &Arc<Shared>) -> super::http_server::Endpoints {
    let s = shared.clone();
    let h = shared.health.clone();
    super::http_server::Endpoints {
        metrics: Arc::new(move || s.render_prometheus()),
        health: h,
        alive: shared.alive.clone(),
    }
}

/// Series recorded outside the workers (the health probes' thread): deltas go through
/// the workers' queue, series are registered and removed as targets come and go.
#[derive(Clone)]
pub struct MetricsFeed {
    shared: Arc<Shared>,
}

impl MetricsFeed {
    /// An empty store with the exporter's histogram and series bounds.
    pub fn new_store(&self) -> Store {
        let c = &self.shared.cfg.metrics;
        Store::new(c.spec(), c.max_series)
    }

    /// Create `series` at zero where they do not exist yet.
    pub fn register(&self, series: impl IntoIterator<Item = (Metric, Attrs)>) {
        self.shared.register(series);
    }

    /// Hand what `delta` holds over, leaving it empty; when the queue is full it keeps
    /// everything (send it again later) and this returns false.
    pub fn push(&self, delta: &mut Store) -> bool {
        if delta.is_empty() {
            return true;
        }
        let empty = delta.empty_like();
        match self.shared.deltas.push(std::mem::replace(delta, empty)) {
            Ok(()) => {
                self.shared.notify.notify_one();
                true
            }
            Err(back) => {
                *delta = back;
                false
            }
        }
    }

    /// Remove the series `gone` accepts (a target no longer probed).
    pub fn forget(&self, gone: impl Fn(&crate::stats::SeriesKey) -> bool) {
        let mut a = self.shared.aggregates.lock().expect("aggregates lock");
        // Deltas handed over but not merged yet would bring the series back: merge them
        // first, under the same lock.
        merge_deltas(&self.shared, &mut a);
        a.cumulative.retain(|k| !gone(k));
        a.delta.retain(|k| !gone(k));
    }

    /// Answer `/alive` with what `f` renders (the first caller wins).
    pub fn serve_alive(&self, f: super::http_server::AliveFn) {
        let _ = self.shared.alive.set(f);
    }
}

/// What one worker needs from the exporter. Owned by the worker; nothing here locks.
pub struct WorkerExport {
    shared: Arc<Shared>,
    slot: Arc<CachePadded<WorkerSlot>>,
    stats: WorkerStats,
    sampler: spans::Sampler,
    ids: spans::IdGen,
    spans_on: bool,
    /// `spans.link_client_server`.
    link: bool,
    /// The interfaces this podtap captures: a client pod of this node is seen at its own
    /// end only when one of its veths is among them.
    captured: Option<Arc<Selector>>,
    /// The worker's index (`podtap.worker`).
    index: usize,
}

/// The ids of `tx`'s span, or `None` when it is not sampled.
///
/// A request seen at both ends (the client pod's interface and the server pod's) gives two
/// spans, CLIENT and SERVER. With `link` on, both take their ids from the request's
/// identity ([`spans::link_ids`]), so they share a trace and the server span's parent is
/// the client span, with no state shared between the observations (they may be on
/// different workers or nodes). The server span names that parent only when the client's
/// end is seen: a pod of this node whose veth is among the `captured` interfaces, or a pod
/// of another node (whose podtap sees it); otherwise it keeps the caller's context, or
/// none. Observations at neither end (a physical interface, a mirror) keep
/// random span ids, so they never collide with the ends' spans.
fn span_ids(
    tx: &Transaction,
    link: bool,
    captured: Option<&Selector>,
    ids: &mut spans::IdGen,
    sampler: &spans::Sampler,
) -> Option<spans::SpanIds> {
    let linked = if link { spans::link_ids(tx) } else { None };
    let trace_id = match (&tx.trace, &linked) {
        (Some(t), _) => t.trace_id,
        (None, Some(l)) => l.trace_id,
        (None, None) => ids.trace_id(),
    };
    if !sampler.keep(tx, &trace_id) {
        return None;
    }
    let pods = tx.pods.as_deref();
    let side = pods.and_then(|p| p.observed_side());
    let (span_id, parent) = match (linked, side) {
        (Some(l), Some("client")) => (l.client_span, None),
        (Some(l), Some("server")) => {
            let seen = pods.is_some_and(|p| client_end_seen(p, captured));
            (l.server_span, seen.then_some(l.client_span))
        }
        _ => (ids.span_id(), None),
    };
    Some(spans::SpanIds {
        trace_id,
        span_id,
        parent,
    })
}

/// Is the client end of a flow observed by a podtap (this one or another node's)?
fn client_end_seen(p: &crate::k8s::FlowPods, captured: Option<&Selector>) -> bool {
    let Some(c) = p.client.pod() else {
        return false;
    };
    if !c.selected || c.host_network {
        return false;
    }
    if c.host_ifaces.is_empty() {
        // A pod of another node: that node's podtap captures it.
        return c.node.is_some() && c.node != p.node_name;
    }
    captured.is_some_and(|s| c.host_ifaces.iter().any(|(_, name)| s.matches(name)))
}

impl WorkerExport {
    /// Record a transaction's statistics; if it is sampled, return its span's ids (the
    /// caller then calls [`WorkerExport::queue_span`]).
    pub fn observe(&mut self, tx: &Transaction) -> Option<spans::SpanIds> {
        self.stats.transaction(tx);
        self.sample(tx)
    }

    /// The ids of `tx`'s span, or `None` when it is not sampled (statistics not taken).
    fn sample(&mut self, tx: &Transaction) -> Option<spans::SpanIds> {
        if !self.spans_on {
            return None;
        }
        let captured = self.captured.as_deref();
        span_ids(tx, self.link, captured, &mut self.ids, &self.sampler)
    }

    /// The interfaces captured (capture.interfaces and exclude as run uses them; in
    /// replay, the interfaces the capture file holds). Without it no client pod of this
    /// node counts as seen at its end.
    pub fn captured(mut self, interfaces: Arc<Selector>) -> Self {
        self.captured = Some(interfaces);
        self
    }

    /// Queue a sampled transaction for the exporter; a full queue drops its oldest entry.
    pub fn queue_span(&mut self, tx: Transaction, ids: spans::SpanIds) {
        self.slot.sampled.fetch_add(1, Relaxed);
        let item = spans::SpanItem { tx, ids };
        if self.shared.spans.force_push(item).is_some() {
            self.slot.queue_dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn flow(&mut self, f: &FlowRecord) {
        self.stats.flow(f);
    }

    /// The worker's capture counters so far, reported as deltas (between batches).
    pub fn capture(&mut self, t: &CaptureTotals<'_>) {
        let attached = self.shared.interfaces.load();
        self.stats.capture(self.index, t, &attached);
    }

    /// Each tick: fold in the worker's event counters and hand the delta over. A full
    /// queue leaves the delta with the worker for the next tick.
    pub fn tick(&mut self, counters: &Counters) {
        self.stats.events(counters);
        let d = self.stats.take_delta();
        if d.is_empty() {
            return;
        }
        if let Err(d) = self.shared.deltas.push(d) {
            self.stats.restore(d);
            self.slot.deltas_deferred.fetch_add(1, Relaxed);
        } else {
            self.shared.notify.notify_one();
        }
    }

    /// The worker is done: hand over the last delta, waiting (briefly) for room.
    pub fn finish(&mut self, counters: &Counters) {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            self.tick(counters);
            if self.stats.store().is_empty() || Instant::now() >= until {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// A [`RecordSink`] that records statistics and samples spans, then passes every record
/// on to `inner` (JSON lines, summary), or keeps nothing when there is no inner sink.
pub struct ExportSink<S: RecordSink> {
    export: Option<WorkerExport>,
    inner: Option<S>,
}

impl<S: RecordSink> ExportSink<S> {
    pub fn new(export: Option<WorkerExport>, inner: Option<S>) -> Self {
        ExportSink { export, inner }
    }

    pub fn inner(&self) -> Option<&S> {
        self.inner.as_ref()
    }

    pub fn into_inner(self) -> Option<S> {
        self.inner
    }

    /// Report the worker's capture counters (cheap; call between batches).
    pub fn capture(&mut self, t: &CaptureTotals<'_>) {
        if let Some(e) = self.export.as_mut() {
            e.capture(t);
        }
    }
}

impl<S: RecordSink> RecordSink for ExportSink<S> {
    fn flow(&mut self, rec: FlowRecord) {
        if let Some(e) = self.export.as_mut() {
            e.flow(&rec);
        }
        if let Some(i) = self.inner.as_mut() {
            i.flow(rec);
        }
    }

    fn flow_progress(&mut self, p: &crate::flow::FlowProgress) {
        if let Some(e) = self.export.as_mut() {
            e.stats.flow_traffic(
                p.ip_proto,
                &p.client,
                &p.server,
                p.pods.as_deref(),
                &p.delta,
            );
        }
    }

    fn wants_progress(&self) -> bool {
        self.export.is_some()
    }

    fn transaction(&mut self, tx: Transaction) {
        let ids = self.export.as_mut().and_then(|e| e.observe(&tx));
        match (ids, self.inner.as_mut()) {
            (Some(ids), Some(inner)) => {
                self.export
                    .as_mut()
                    .expect("ids come from export")
                    .queue_span(tx.clone(), ids);
                inner.transaction(tx);
            }
            (Some(ids), None) => self
                .export
                .as_mut()
                .expect("ids come from export")
                .queue_span(tx, ids),
            (None, Some(inner)) => inner.transaction(tx),
            (None, None) => {}
        }
    }

    fn transactions(&mut self, txs: &mut Vec<Transaction>) {
        let Some(inner) = self.inner.as_mut() else {
            // Spans are all that is kept: each transaction moves on by itself.
            for tx in txs.drain(..) {
                self.transaction(tx);
            }
            return;
        };
        if let Some(e) = self.export.as_mut() {
            for tx in txs.iter() {
                if let Some(ids) = e.observe(tx) {
                    e.queue_span(tx.clone(), ids);
                }
            }
        }
        inner.transactions(txs);
    }

    /// Statistics and spans read every record: only a sink without export may go
    /// without them.
    fn wants_records(&self) -> bool {
        self.export.is_some() || self.inner.as_ref().is_none_or(|i| i.wants_records())
    }

    fn tally(
        &mut self,
        tally: &crate::proto::Tally,
        server: &crate::proto::Endpoint,
        pods: Option<&Arc<crate::k8s::FlowPods>>,
    ) {
        if let Some(i) = self.inner.as_mut() {
            i.tally(tally, server, pods);
        }
    }

    fn observe(&mut self, txs: &[Transaction]) {
        if let Some(e) = self.export.as_mut() {
            for tx in txs {
                e.stats.transaction(tx);
            }
        }
    }

    fn held(&mut self, txs: &mut Vec<Transaction>) {
        match (self.export.as_mut(), self.inner.as_mut()) {
            (Some(e), Some(inner)) => {
                for tx in txs.iter() {
                    if let Some(ids) = e.sample(tx) {
                        e.queue_span(tx.clone(), ids);
                    }
                }
                inner.held(txs);
            }
            (Some(e), None) => {
                for tx in txs.drain(..) {
                    if let Some(ids) = e.sample(&tx) {
                        e.queue_span(tx, ids);
                    }
                }
            }
            (None, Some(inner)) => inner.held(txs),
            (None, None) => txs.clear(),
        }
    }

    fn tick(&mut self, counters: &Counters) {
        if let Some(e) = self.export.as_mut() {
            e.tick(counters);
        }
        if let Some(i) = self.inner.as_mut() {
            i.tick(counters);
        }
    }

    fn finish(&mut self, counters: &Counters) {
        if let Some(e) = self.export.as_mut() {
            e.finish(counters);
        }
        if let Some(i) = self.inner.as_mut() {
            i.finish(counters);
        }
    }

    fn flush(&mut self) {
        if let Some(i) = self.inner.as_mut() {
            i.flush();
        }
    }
}

#[cfg(test)]
mod link_tests {
    use super::*;
    use crate::k8s::{FlowPods, Peer, PodMeta};

    fn pod(node: &str, ifaces: &[&str]) -> Arc<PodMeta> {
        Arc::new(PodMeta {
            node: Some(node.into()),
            host_ifaces: ifaces
                .iter()
                .enumerate()
                .map(|(i, n)| (i as u32 + 10, (*n).into()))
                .collect(),
            selected: true,
            ..Default::default()
        })
    }

    fn flow(client: Arc<PodMeta>) -> FlowPods {
        FlowPods {
            client: Peer::Pod(client),
            node_name: Some("node-a".into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_client_end_is_seen_where_its_veth_is_captured_or_on_another_node() {
        let veths = Selector::new(&["veth.*".into()], &[]).unwrap();
        let local = flow(pod("node-a", &["veth1"]));
        assert!(client_end_seen(&local, Some(&veths)));
        assert!(
            !client_end_seen(&local, None),
            "nothing known to be captured"
        );
        let uncaptured = flow(pod("node-a", &["cali1"]));
        assert!(!client_end_seen(&uncaptured, Some(&veths)));
        assert!(client_end_seen(&flow(pod("node-b", &[])), Some(&veths)));
        let mut outside = (*pod("node-a", &["veth1"])).clone();
        outside.selected = false;
        assert!(!client_end_seen(&flow(Arc::new(outside)), Some(&veths)));
        let mut host = (*pod("node-b", &[])).clone();
        host.host_network = true;
        assert!(!client_end_seen(&flow(Arc::new(host)), Some(&veths)));
        let external = FlowPods {
            client: Peer::External,
            ..Default::default()
        };
        assert!(!client_end_seen(&external, Some(&veths)));
    }
}

#[cfg(test)]
mod series_tests {
    use super::*;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    /// OTLP carries the zero series too: the metrics request built from the exporter's
    /// store right after start names every event kind, each worker's capture counters and
    /// each attached interface, all at 0.
    #[test]
    fn otlp_metrics_carry_the_zero_capture_series_from_the_start() {
        let e = Exporter::start(&ExportConfig::default(), Health::new()).unwrap();
        let _w = e.worker_handle(3);
        e.interface_attached(12, "vethA");
        let req = {
            let a = e.shared.aggregates.lock().unwrap();
            otlp_metrics::request(
                &a.cumulative,
                Temporality::Cumulative,
                0,
                1,
                "podtap",
                &Default::default(),
            )
        };
        let mut points: Vec<(String, Vec<String>, i64)> = Vec::new();
        for m in req.resource_metrics[0].scope_metrics[0].metrics.iter() {
            let Some(Data::Sum(s)) = &m.data else {
                continue;
            };
            for p in &s.data_points {
                let attrs = p
                    .attributes
                    .iter()
                    .map(|kv| format!("{}={:?}", kv.key, kv.value.as_ref().unwrap().value))
                    .collect();
                let v = match p.value {
                    Some(
                        opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i),
                    ) => i,
                    _ => -1,
                };
                points.push((m.name.clone(), attrs, v));
            }
        }
        assert!(points.iter().all(|p| p.2 == 0), "{points:#?}");
        let count = |name: &str| points.iter().filter(|p| p.0 == name).count();
        assert_eq!(count("podtap.events"), crate::events::Event::COUNT);
        assert_eq!(count("podtap.capture.packets"), 1);
        assert_eq!(count("podtap.capture.bytes"), 1);
        assert_eq!(count("podtap.capture.drops"), 2);
        assert_eq!(count("podtap.interface.packets"), 1);
        assert_eq!(count("podtap.interface.bytes"), 1);
        let drops: Vec<_> = points
            .iter()
            .filter(|p| p.0 == "podtap.capture.drops")
            .map(|p| p.1.join(","))
            .collect();
        assert!(
            drops
                .iter()
                .all(|d| d.contains("podtap.worker=Some(IntValue(3))")),
            "{drops:?}"
        );
    }
}
