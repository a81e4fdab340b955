//! `[export]`: OTLP metrics and spans, Prometheus exposition, sampling and bounds.
//! Defaults are documented beside each field and in `config/podtap.toml`.
//!
//! The standard OpenTelemetry environment variables override the file (a DaemonSet sets
//! them per cluster): `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` (any of them also enables OTLP),
//! `OTEL_EXPORTER_OTLP_PROTOCOL`, `OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_COMPRESSION`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_SERVICE_NAME`,
//! `OTEL_RESOURCE_ATTRIBUTES`.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;

use crate::stats::HistogramSpec;
use crate::stats::histogram::DEFAULT_BOUNDS;

#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ExportConfig {
    /// `service.name` of the metrics, and of spans whose observed end is no known pod
    /// (a known pod's spans come under its own). Default "podtap".
    pub service_name: String,
    /// Extra resource attributes (`deployment.environment.name = "prod"`). Default none.
    pub resource_attributes: BTreeMap<String, String>,
    pub otlp: OtlpConfig,
    pub metrics: MetricsConfig,
    pub spans: SpansConfig,
    pub prometheus: PrometheusConfig,
}

impl Default for ExportConfig {
    fn default() -> Self {
        ExportConfig {
            service_name: "podtap".into(),
            resource_attributes: BTreeMap::new(),
            otlp: OtlpConfig::default(),
            metrics: MetricsConfig::default(),
            spans: SpansConfig::default(),
            prometheus: PrometheusConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
pub enum Protocol {
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "http/protobuf")]
    HttpProtobuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Gzip,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Temporality {
    Cumulative,
    Delta,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HistogramKind {
    Explicit,
    Exponential,
}

/// Where OTLP goes.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Send to an OpenTelemetry collector. Default false.
    pub enabled: bool,
    /// Collector base URL. Default "http://localhost:4317" (grpc) or
    /// "http://localhost:4318" (http/protobuf, which appends /v1/traces and /v1/metrics).
    pub endpoint: String,
    /// Full URL for spans / metrics, used as is. Default: derived from `endpoint`.
    pub traces_endpoint: String,
    pub metrics_endpoint: String,
    /// Full URL for logs (anomaly events), used as is. Default: derived from `endpoint`
    /// (`/v1/logs` for http/protobuf).
    pub logs_endpoint: String,
    /// "grpc" or "http/protobuf". Default "grpc".
    pub protocol: Protocol,
    /// Headers sent with every export (authentication). Default none.
    pub headers: BTreeMap<String, String>,
    /// "none" or "gzip". Default "none".
    pub compression: Compression,
    /// Deadline of one export request. Default 10000 ms.
    pub timeout_ms: u64,
    /// PEM CA bundle for https endpoints. Default "": the system's roots.
    pub tls_ca_file: String,
    /// Send spans. Default true.
    pub traces: bool,
    /// Send metrics. Default true.
    pub metrics: bool,
    /// Send anomaly events as log records. Default true.
    pub logs: bool,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        OtlpConfig {
            enabled: false,
            endpoint: String::new(),
            traces_endpoint: String::new(),
            metrics_endpoint: String::new(),
            logs_endpoint: String::new(),
            protocol: Protocol::Grpc,
            headers: BTreeMap::new(),
            compression: Compression::None,
            timeout_ms: 10_000,
            tls_ca_file: String::new(),
            traces: true,
            metrics: true,
            logs: true,
        }
    }
}

impl OtlpConfig {
    fn base(&self) -> String {
        if !self.endpoint.is_empty() {
            return self.endpoint.trim_end_matches('/').to_string();
        }
        match self.protocol {
            Protocol::Grpc => "http://localhost:4317".into(),
            Protocol::HttpProtobuf => "http://localhost:4318".into(),
        }
    }

    /// The URL spans are sent to.
    pub fn traces_url(&self) -> String {
        match (self.traces_endpoint.is_empty(), self.protocol) {
            (false, _) => self.traces_endpoint.clone(),
            (true, Protocol::Grpc) => self.base(),
            (true, Protocol::HttpProtobuf) => format!("{}/v1/traces", self.base()),
        }
    }

    /// The URL metrics are sent to.
    pub fn metrics_url(&self) -> String {
        match (self.metrics_endpoint.is_empty(), self.protocol) {
            (false, _) => self.metrics_endpoint.clone(),
            (true, Protocol::Grpc) => self.base(),
            (true, Protocol::HttpProtobuf) => format!("{}/v1/metrics", self.base()),
        }
    }

    /// The URL log records (anomaly events) are sent to.
    pub fn logs_url(&self) -> String {
        match (self.logs_endpoint.is_empty(), self.protocol) {
            (false, _) => self.logs_endpoint.clone(),
            (true, Protocol::Grpc) => self.base(),
            (true, Protocol::HttpProtobuf) => format!("{}/v1/logs", self.base()),
        }
    }
}

/// Metric aggregation.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// How often metrics are exported over OTLP (and worker deltas are merged at least
    /// this often). Default 10000 ms.
    pub interval_ms: u64,
    /// "cumulative" or "delta" (OTLP only; Prometheus is always cumulative).
    /// Default "cumulative".
    pub temporality: Temporality,
    /// "explicit" (bounds below) or "exponential" (base-2). Default "explicit".
    pub histogram: HistogramKind,
    /// Explicit bucket upper bounds in seconds, ascending. Default
    /// [`DEFAULT_BOUNDS`]: 0.00001 … 0.0025 (node-local calls take 5 µs to 2 ms, and the
    /// semantic conventions' list alone puts them all in its first bucket), then the
    /// semantic conventions' recommendation, 0.005 … 10.
    pub buckets: Vec<f64>,
    /// Exponential histograms start at this scale (-10..=20). Default 20.
    pub exponential_max_scale: i32,
    /// Exponential histograms keep at most this many buckets. Default 160.
    pub exponential_max_size: usize,
    /// Series per metric; more fold into `otel.metric.overflow=true`. Default 2000.
    pub max_series: usize,
    /// Worker deltas queued for the exporter; a worker whose delta does not fit keeps it
    /// and sends it with the next one (nothing is lost). Default 64.
    pub queue: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            interval_ms: 10_000,
            temporality: Temporality::Cumulative,
            histogram: HistogramKind::Explicit,
            buckets: DEFAULT_BOUNDS.to_vec(),
            exponential_max_scale: 20,
            exponential_max_size: 160,
            max_series: 2000,
            queue: 64,
        }
    }
}

impl MetricsConfig {
    pub fn spec(&self) -> HistogramSpec {
        match self.histogram {
            HistogramKind::Explicit => HistogramSpec::Explicit(Arc::from(&self.buckets[..])),
            HistogramKind::Exponential => HistogramSpec::Exponential {
                max_scale: self.exponential_max_scale,
                max_size: self.exponential_max_size,
            },
        }
    }
}

/// Spans: sampling and bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpansConfig {
    /// Build spans at all (with `otlp.traces`). Default true.
    pub enabled: bool,
    /// Head sampling: the fraction of traces kept, decided from the trace id so every
    /// podtap keeps or drops the same trace. Default 1.0.
    pub sample_ratio: f64,
    /// Always keep failed transactions (those with `error.type`). Default true.
    pub keep_errors: bool,
    /// Always keep transactions at least this slow; 0 turns it off. Default 0.
    pub keep_slower_than_ms: u64,
    /// Sampled transactions queued between the workers and the exporter; when full the
    /// oldest is dropped and counted. Default 8192.
    pub queue: usize,
    /// Spans the exporter holds while the collector is slow or down; beyond it the oldest
    /// are dropped and counted. Default 65536.
    pub max_buffered: usize,
    /// The same bound in encoded bytes. Default 67108864 (64 MiB).
    pub max_buffered_bytes: usize,
    /// Spans per export request. Default 512.
    pub max_batch: usize,
    /// First retry delay after a failed export; doubles up to `retry_max_ms`.
    /// Default 200 ms.
    pub retry_initial_ms: u64,
    /// Default 10000 ms.
    pub retry_max_ms: u64,
    /// A request seen at both its client's and its server's pod gives a CLIENT and a
    /// SERVER span in one trace, the client span the parent of the server span. Their ids
    /// derive from the connection's SYN and the request's index on it, so every podtap
    /// (one per node) names them alike. Default true.
    pub link_client_server: bool,
}

impl Default for SpansConfig {
    fn default() -> Self {
        SpansConfig {
            enabled: true,
            sample_ratio: 1.0,
            keep_errors: true,
            keep_slower_than_ms: 0,
            queue: 8192,
            max_buffered: 65_536,
            max_buffered_bytes: 64 << 20,
            max_batch: 512,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            link_client_server: true,
        }
    }
}

/// Prometheus exposition and health endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Address serving /metrics, /healthz and /readyz, e.g. "127.0.0.1:9464" (the port
    /// OpenTelemetry assigns to Prometheus exporters) or "0.0.0.0:9464" for a cluster
    /// scrape. Default "": off.
    pub listen: String,
}

type KeyError = (String, String);

impl ExportConfig {
    /// Does any output need the exporter thread?
    pub fn active(&self) -> bool {
        self.otlp.enabled || !self.prometheus.listen.is_empty()
    }

    /// The port `/metrics` is served on, when it is.
    pub fn prometheus_port(&self) -> Option<u16> {
        let addr = self
            .prometheus
            .listen
            .parse::<std::net::SocketAddr>()
            .ok()?;
        Some(addr.port())
    }

    /// Checks serde cannot express; the error names the key.
    pub fn validate(&self) -> Result<(), KeyError> {
        let err = |k: &str, m: &str| Err((format!("export.{k}"), m.to_string()));
        let s = &self.spans;
        if !(0.0..=1.0).contains(&s.sample_ratio) {
            return err("spans.sample_ratio", "must be between 0 and 1");
        }
        for (k, v) in [
            ("spans.queue", s.queue),
            ("spans.max_buffered", s.max_buffered),
            ("spans.max_buffered_bytes", s.max_buffered_bytes),
            ("spans.max_batch", s.max_batch),
            ("metrics.max_series", self.metrics.max_series),
            ("metrics.queue", self.metrics.queue),
            ("metrics.interval_ms", self.metrics.interval_ms as usize),
            ("otlp.timeout_ms", self.otlp.timeout_ms as usize),
            ("spans.retry_initial_ms", s.retry_initial_ms as usize),
        ] {
            if v == 0 {
                return err(k, "must be at least 1");
            }
        }
        let m = &self.metrics;
        if m.buckets.is_empty()
            || m.buckets.windows(2).any(|w| w[0] >= w[1])
            || m.buckets.iter().any(|b| !b.is_finite())
        {
            return err(
                "metrics.buckets",
                "must be finite, non-empty and strictly ascending",
            );
        }
        if !(-10..=20).contains(&m.exponential_max_scale) {
            return err("metrics.exponential_max_scale", "must be in -10..=20");
        }
        if m.exponential_max_size < 2 {
            return err("metrics.exponential_max_size", "must be at least 2");
        }
        for (k, url) in [
            ("otlp.endpoint", &self.otlp.endpoint),
            ("otlp.traces_endpoint", &self.otlp.traces_endpoint),
            ("otlp.metrics_endpoint", &self.otlp.metrics_endpoint),
            ("otlp.logs_endpoint", &self.otlp.logs_endpoint),
        ] {
            if !url.is_empty() {
                check_url(url).map_err(|m| (format!("export.{k}"), m))?;
            }
        }
        if !self.prometheus.listen.is_empty()
            && self
                .prometheus
                .listen
                .parse::<std::net::SocketAddr>()
                .is_err()
        {
            return err(
                "prometheus.listen",
                "must be an address and port like 127.0.0.1:9464",
            );
        }
        for k in self.otlp.headers.keys() {
            if http::HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).is_err() {
                return err("otlp.headers", &format!("invalid header name {k:?}"));
            }
        }
        Ok(())
    }

    /// Apply the OpenTelemetry environment variables (`env` looks one up). Errors name
    /// the variable.
    pub fn apply_env(&mut self, env: impl Fn(&str) -> Option<String>) -> Result<(), KeyError> {
        let get = |k: &str| env(k).filter(|v| !v.trim().is_empty());
        let bad = |k: &str, m: String| Err((k.to_string(), m));
        for (var, field) in [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &mut self.otlp.endpoint),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &mut self.otlp.traces_endpoint,
            ),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                &mut self.otlp.metrics_endpoint,
            ),
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &mut self.otlp.logs_endpoint,
            ),
        ] {
            if let Some(v) = get(var) {
                check_url(&v).map_err(|m| (var.to_string(), m))?;
                *field = v.trim().to_string();
                self.otlp.enabled = true;
            }
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_PROTOCOL") {
            self.otlp.protocol = match v.trim() {
                "grpc" => Protocol::Grpc,
                "http/protobuf" => Protocol::HttpProtobuf,
                other => {
                    return bad(
                        "OTEL_EXPORTER_OTLP_PROTOCOL",
                        format!("{other:?}: expected grpc or http/protobuf"),
                    );
                }
            };
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_HEADERS") {
            let h = parse_pairs(&v).map_err(|m| ("OTEL_EXPORTER_OTLP_HEADERS".to_string(), m))?;
            self.otlp.headers.extend(h);
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_COMPRESSION") {
            self.otlp.compression = match v.trim() {
                "gzip" => Compression::Gzip,
                "none" => Compression::None,
                other => {
                    return bad(
                        "OTEL_EXPORTER_OTLP_COMPRESSION",
                        format!("{other:?}: expected gzip or none"),
                    );
                }
            };
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_TIMEOUT") {
            self.otlp.timeout_ms = match v.trim().parse() {
                Ok(ms) if ms > 0 => ms,
                _ => {
                    return bad(
                        "OTEL_EXPORTER_OTLP_TIMEOUT",
                        format!("{v:?}: expected milliseconds"),
                    );
                }
            };
        }
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            let attrs = parse_pairs(&v).map_err(|m| ("OTEL_RESOURCE_ATTRIBUTES".to_string(), m))?;
            for (k, v) in attrs {
                if k == "service.name" {
                    self.service_name = v;
                } else {
                    self.resource_attributes.insert(k, v);
                }
            }
        }
        // OTEL_SERVICE_NAME wins over service.name in OTEL_RESOURCE_ATTRIBUTES.
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            self.service_name = v.trim().to_string();
        }
        self.validate()
    }
}

fn check_url(url: &str) -> Result<(), String> {
    let u: http::Uri = url
        .trim()
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match (u.scheme_str(), u.host()) {
        (Some("http" | "https"), Some(_)) => Ok(()),
        _ => Err(format!("{url:?}: expected http://host:port or https://…")),
    }
}

/// `key1=value1,key2=value2` with percent-encoded values (the W3C Baggage form the
/// OpenTelemetry variables use).
pub fn parse_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("{item:?}: expected key=value"));
        };
        let k = k.trim();
        if k.is_empty() {
            return Err(format!("{item:?}: empty key"));
        }
        out.push((k.to_string(), percent_decode(v.trim())?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?}: bad percent escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?}: not UTF-8 after decoding"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    #[test]
    fn env_vars_override_and_enable() {
        let mut c = ExportConfig::default();
        c.apply_env(env(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "api-key=secret%20value, x-tenant=a",
            ),
            ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=fromattrs,k8s.cluster.name=prod",
            ),
            ("OTEL_SERVICE_NAME", "node-agent"),
        ]))
        .unwrap();
        assert!(c.otlp.enabled);
        assert_eq!(c.otlp.traces_url(), "http://collector:4318/v1/traces");
        assert_eq!(c.otlp.metrics_url(), "http://collector:4318/v1/metrics");
        assert_eq!(c.otlp.headers["api-key"], "secret value");
        assert_eq!(c.otlp.headers["x-tenant"], "a");
        assert_eq!(c.otlp.compression, Compression::Gzip);
        assert_eq!(c.service_name, "node-agent");
        assert_eq!(c.resource_attributes["k8s.cluster.name"], "prod");
    }

    #[test]
    fn signal_endpoints_are_used_as_is() {
        let mut c = ExportConfig::default();
        c.apply_env(env(&[(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://t:4317",
        )]))
        .unwrap();
        assert_eq!(c.otlp.traces_url(), "http://t:4317");
        assert_eq!(c.otlp.metrics_url(), "http://localhost:4317");
    }

    #[test]
    fn bad_env_values_name_the_variable() {
        let mut c = ExportConfig::default();
        let e = c
            .apply_env(env(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "thrift")]))
            .unwrap_err();
        assert_eq!(e.0, "OTEL_EXPORTER_OTLP_PROTOCOL");
        let e = c
            .apply_env(env(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]))
            .unwrap_err();
        assert_eq!(e.0, "OTEL_EXPORTER_OTLP_HEADERS");
        let e = c
            .apply_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "collector:4317")]))
            .unwrap_err();
        assert_eq!(e.0, "OTEL_EXPORTER_OTLP_ENDPOINT");
    }

    #[test]
    fn validation_names_the_key() {
        let mut c = ExportConfig::default();
        c.spans.sample_ratio = 1.5;
        assert_eq!(c.validate().unwrap_err().0, "export.spans.sample_ratio");
        let mut c = ExportConfig::default();
        c.metrics.buckets = vec![1.0, 0.5];
        assert_eq!(c.validate().unwrap_err().0, "export.metrics.buckets");
        let mut c = ExportConfig::default();
        c.prometheus.listen = "localhost".into();
        assert_eq!(c.validate().unwrap_err().0, "export.prometheus.listen");
    }

    /// Prometheus' `histogram_quantile`: linear interpolation inside the bucket where the
    /// rank falls, the first bucket starting at 0.
    fn histogram_quantile(q: f64, cumulative: &[(f64, u64)]) -> f64 {
        let total = cumulative.last().unwrap().1 as f64;
        let rank = q * total;
        let mut prev = (0.0, 0u64);
        for &(le, n) in cumulative {
            if n as f64 >= rank {
                let inside = (rank - prev.1 as f64) / (n - prev.1) as f64;
                return prev.0 + (le - prev.0) * inside;
            }
            prev = (le, n);
        }
        unreachable!()
    }

    /// Node-local calls (5 µs to 2 ms) must not all fall in one bucket: by default (the
    /// struct's and the shipped config file's alike) a 10 µs call lands in a bucket whose
    /// upper bound is at most 25 µs, and a median over calls around 10 µs reads below
    /// 0.1 ms.
    #[test]
    fn default_buckets_resolve_sub_millisecond_latency() {
        let shipped = crate::config::Config::load(None).unwrap().export.metrics;
        for m in [MetricsConfig::default(), shipped] {
            let mut h = m.spec().new_histogram();
            h.record(10e-6);
            let cumulative = h.cumulative_buckets();
            let (le, _) = cumulative.iter().find(|(_, n)| *n == 1).unwrap();
            assert!(*le <= 25e-6, "10 µs lands under le={le}");

            let mut h = m.spec().new_histogram();
            for us in [6, 8, 9, 10, 10, 10, 11, 12, 14] {
                h.record(us as f64 * 1e-6);
            }
            let p50 = histogram_quantile(0.5, &h.cumulative_buckets());
            assert!(p50 < 1e-4, "median of ~10 µs calls estimated as {p50} s");
            // Slower calls keep the semantic conventions' bounds.
            for le in [0.005, 0.1, 1.0, 10.0] {
                assert!(m.buckets.contains(&le), "{le} in {:?}", m.buckets);
            }
        }
    }
}
