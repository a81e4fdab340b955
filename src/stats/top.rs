//! `podtap top`'s view of the statistics: the busiest pods, call edges (client → server,
//! protocol) and endpoints, read from the exporter's cumulative store.
//!
//! Nothing here runs on a worker: the control server reads the store (under the
//! exporter's lock, as a Prometheus scrape does), folds its series into [`Totals`], and
//! computes rates from the difference to an earlier [`Totals`] kept in a [`History`].
//! The workers record exactly what they record for the metrics.
//!
//! A call between two pods of the node is seen at both pods' veths: the client's
//! observation and the server's land in different series (`http.client.*` and
//! `http.server.*`, flow series by `podtap.observation_point.side`). Each row keeps its
//! sides apart and reports the side that saw the most, so a call counts once.

use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::histogram::quantile_since;
use super::store::OVERFLOW_KEY;
use super::{Histogram, Metric, Store, Val, Value};

/// Longest rate window a client may ask for (s); the history holds about this much.
pub const MAX_WINDOW_SECS: u64 = 10;
/// Rate window when a request names none (s).
pub const DEFAULT_WINDOW_SECS: u64 = 5;

/// Where a series was observed: at the server's pod, at the client's, or elsewhere (a
/// point that is neither end's pod, or a metric that does not say).
const SIDES: usize = 3;
const SERVER: usize = 0;
const CLIENT: usize = 1;
const OTHER: usize = 2;

/// One end of a call, as the series name it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Peer {
    pub kind: PeerKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The pod's (or Service's) name; a pod found by node-local discovery only is named
    /// by its `service.name` (its network namespace's name). An unknown server: its address.
    pub name: String,
}

#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PeerKind {
    Pod,
    Service,
    Node,
    External,
    /// A server attribution does not know: named by its address.
    Address,
    #[default]
    Unknown,
}

impl Peer {
    /// How a person reads it: `namespace/name`, `svc namespace/name`, `node`, an address.
    pub fn label(&self) -> String {
        let named = match &self.namespace {
            Some(ns) => format!("{ns}/{}", self.name),
            None => self.name.clone(),
        };
        match self.kind {
            PeerKind::Pod | PeerKind::Address => named,
            PeerKind::Service => format!("svc {named}"),
            PeerKind::Node => "node".into(),
            PeerKind::External => "external".into(),
            PeerKind::Unknown => "?".into(),
        }
    }

    /// The peer on side `prefix` (`client` or `server`) of a series, from the attributes
    /// `stats::push_pods` writes; an unknown server is named by `server.address`.
    fn of(attrs: &[(&'static str, Val)], client: bool) -> Peer {
        const KEYS: [[&str; 6]; 2] = [
            [
                "server.k8s.namespace.name",
                "server.k8s.pod.name",
                "server.service.name",
                "server.k8s.service.name",
                "server.podtap.kind",
                "server.address",
            ],
            [
                "client.k8s.namespace.name",
                "client.k8s.pod.name",
                "client.service.name",
                "client.k8s.service.name",
                "client.podtap.kind",
                "",
            ],
        ];
        let [ns, pod, service, k8s_service, kind, address] = KEYS[client as usize];
        let get = |key: &str| {
            attrs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        };
        let namespace = get(ns);
        if let Some(name) = get(pod).or_else(|| get(service)) {
            return Peer {
                kind: PeerKind::Pod,
                namespace,
                name,
            };
        }
        if let Some(name) = get(k8s_service) {
            return Peer {
                kind: PeerKind::Service,
                namespace,
                name,
            };
        }
        let kind = match get(kind).as_deref() {
            Some("node") => PeerKind::Node,
            Some("external") => PeerKind::External,
            _ => match get(address) {
                Some(a) if !address.is_empty() => {
                    return Peer {
                        kind: PeerKind::Address,
                        namespace: None,
                        name: a,
                    };
                }
                _ => PeerKind::Unknown,
            },
        };
        Peer {
            kind,
            namespace: None,
            name: String::new(),
        }
    }
}

/// Calls of one kind, counted since the exporter started.
#[derive(Clone, Debug, Default)]
struct Calls {
    requests: u64,
    errors: u64,
    latency: Option<Histogram>,
}

impl Calls {
    fn add(&mut self, o: &Calls) {
        self.requests += o.requests;
        self.errors += o.errors;
        match (&mut self.latency, &o.latency) {
            (Some(a), Some(b)) => a.merge(b),
            (None, Some(b)) => self.latency = Some(b.clone()),
            _ => {}
        }
    }
}

/// Flow traffic of one edge, counted since the exporter started.
#[derive(Clone, Copy, Debug, Default)]
struct Flows {
    bytes: u64,
    retransmits: u64,
    resets: u64,
}

impl Flows {
    fn add(&mut self, o: &Flows) {
        self.bytes += o.bytes;
        self.retransmits += o.retransmits;
        self.resets += o.resets;
    }
}

/// What a transaction series is about: its ends, the server port, the protocol and the
/// operation (`GET /users/{id}`, `shop.Cart/Add`, `SET`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct CallKey {
    client: Peer,
    server: Peer,
    port: u16,
    protocol: String,
    operation: String,
}

/// What a flow series is about: its ends, the server port, the transport.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct FlowKey {
    client: Peer,
    server: Peer,
    port: u16,
    transport: String,
}

/// The store folded into per-call and per-flow-edge counters, each side apart.
#[derive(Clone, Debug, Default)]
pub struct Totals {
    calls: HashMap<CallKey, [Calls; SIDES]>,
    flows: HashMap<FlowKey, [Flows; SIDES]>,
    /// Values the store folded into `otel.metric.overflow` series (unattributable).
    overflowed: u64,
}

/// The side a transaction metric was observed at, `None` for other metrics. Database,
/// DNS and messaging durations have one metric for both sides: [`OTHER`].
fn call_side(m: Metric) -> Option<usize> {
    use Metric::*;
    match m {
        HttpServerDuration | RpcServerDuration => Some(SERVER),
        HttpClientDuration | RpcClientDuration => Some(CLIENT),
        DbClientDuration | DnsLookupDuration | MessagingClientDuration => Some(OTHER),
        _ => None,
    }
}

fn get<'a>(attrs: &'a [(&'static str, Val)], key: &str) -> Option<&'a Val> {
    attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn port_of(attrs: &[(&'static str, Val)]) -> u16 {
    match get(attrs, "server.port") {
        Some(Val::Int(p)) => u16::try_from(*p).unwrap_or(0),
        _ => 0,
    }
}

/// The protocol of a transaction series: the system its decoder names (`grpc`, `redis`,
/// `kafka`), else what the metric is about.
fn protocol_of(metric: Metric, attrs: &[(&'static str, Val)]) -> String {
    ["rpc.system", "db.system.name", "messaging.system"]
        .iter()
        .find_map(|k| get(attrs, k))
        .map(|v| v.to_string())
        .unwrap_or_else(|| {
            match metric {
                Metric::DnsLookupDuration => "dns",
                _ => "http",
            }
            .into()
        })
}

/// The operation of a transaction series, from the attributes its protocol keys by.
fn operation_of(attrs: &[(&'static str, Val)]) -> String {
    let s = |k| get(attrs, k).map(|v| v.to_string());
    if let (Some(svc), Some(m)) = (s("rpc.service"), s("rpc.method")) {
        return format!("{svc}/{m}");
    }
    let parts: Vec<String> = [
        "http.request.method",
        "http.route",
        "db.operation.name",
        "dns.question.type",
        "dns.question.name",
        "messaging.operation.name",
        "messaging.destination.name",
    ]
    .iter()
    .filter_map(|k| s(k))
    .collect();
    parts.join(" ")
}

impl Totals {
    /// Fold the store's series: transaction durations into calls, flow bytes,
    /// retransmissions and resets into flow edges. Other series are not read.
    pub fn from_store(store: &Store) -> Totals {
        let mut t = Totals {
            overflowed: store.overflowed,
            ..Totals::default()
        };
        for (k, v) in store.iter() {
            let a = &k.attrs[..];
            if a.len() == 1 && a[0].0 == OVERFLOW_KEY {
                continue;
            }
            if let Some(side) = call_side(k.metric) {
                let Value::Histogram(h) = v else { continue };
                let key = CallKey {
                    client: Peer::of(a, true),
                    server: Peer::of(a, false),
                    port: port_of(a),
                    protocol: protocol_of(k.metric, a),
                    operation: operation_of(a),
                };
                let failed = get(a, "error.type").is_some();
                t.calls.entry(key).or_default()[side].add(&Calls {
                    requests: h.count,
                    errors: if failed { h.count } else { 0 },
                    latency: Some(h.clone()),
                });
                continue;
            }
            let field = match k.metric {
                Metric::FlowIo => 0,
                Metric::TcpRetransmissions => 1,
                Metric::TcpResets => 2,
                _ => continue,
            };
            let side = match get(a, "podtap.observation_point.side") {
                Some(v) if v.to_string() == "server" => SERVER,
                Some(v) if v.to_string() == "client" => CLIENT,
                _ => OTHER,
            };
            let key = FlowKey {
                client: Peer::of(a, true),
                server: Peer::of(a, false),
                port: port_of(a),
                transport: get(a, "network.transport").map_or_else(String::new, |v| v.to_string()),
            };
            let f = &mut t.flows.entry(key).or_default()[side];
            let n = v.count();
            match field {
                0 => f.bytes += n,
                1 => f.retransmits += n,
                _ => f.resets += n,
            }
        }
        t
    }
}

/// Earlier [`Totals`], about a second apart, for rates over a window.
#[derive(Default)]
pub struct History {
    samples: VecDeque<(Instant, Totals)>,
}

impl History {
    /// Keep `t` (taken at `at`) unless the last sample is under a second old; forget
    /// samples older than the longest window, but always keep the newest.
    pub fn push(&mut self, at: Instant, t: &Totals) {
        if self
            .samples
            .back()
            .is_some_and(|(last, _)| at.duration_since(*last) < Duration::from_secs(1))
        {
            return;
        }
        self.samples.push_back((at, t.clone()));
        let keep = Duration::from_secs(MAX_WINDOW_SECS + 2);
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(s, _)| at.duration_since(*s) > keep)
        {
            self.samples.pop_front();
        }
    }

    /// The sample to take rates from at `now` for a `window`: the newest at least that
    /// old, else the oldest if it is at least half a second old. With it, its age.
    pub fn base(&self, now: Instant, window: Duration) -> Option<(&Totals, Duration)> {
        fn aged(now: Instant, (s, t): &(Instant, Totals)) -> (&Totals, Duration) {
            (t, now.saturating_duration_since(*s))
        }
        let aged = |x| aged(now, x);
        self.samples
            .iter()
            .rev()
            .map(aged)
            .find(|(_, age)| *age >= window)
            .or_else(|| {
                self.samples
                    .front()
                    .map(aged)
                    .filter(|(_, age)| *age >= Duration::from_millis(500))
            })
    }
}

/// What a `top` request asks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopQuery {
    /// Rows per table (capped by `control.max_top_rows`).
    pub limit: usize,
    /// Rates over about this many seconds (1..=MAX_WINDOW_SECS).
    pub window_secs: u64,
    pub sort: SortKey,
    /// Only rows with an end in this Kubernetes namespace.
    pub namespace: Option<String>,
    /// Only rows with an end whose name contains this.
    pub pod: Option<String>,
    /// Only calls of this protocol (`http`, `grpc`, `redis`, ...; `tcp`/`udp` for flows
    /// no decoder claimed).
    pub protocol: Option<String>,
}

impl Default for TopQuery {
    fn default() -> Self {
        TopQuery {
            limit: 20,
            window_secs: DEFAULT_WINDOW_SECS,
            sort: SortKey::Rate,
            namespace: None,
            pod: None,
            protocol: None,
        }
    }
}

/// The column rows are sorted by: highest first, the name ascending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortKey {
    #[default]
    Rate,
    Errors,
    P50,
    P99,
    Bytes,
    Retransmits,
    Resets,
    Name,
}

impl SortKey {
    pub const ALL: [SortKey; 8] = [
        SortKey::Rate,
        SortKey::Errors,
        SortKey::P50,
        SortKey::P99,
        SortKey::Bytes,
        SortKey::Retransmits,
        SortKey::Resets,
        SortKey::Name,
    ];

    pub fn name(self) -> &'static str {
        match self {
            SortKey::Rate => "rate",
            SortKey::Errors => "errors",
            SortKey::P50 => "p50",
            SortKey::P99 => "p99",
            SortKey::Bytes => "bytes",
            SortKey::Retransmits => "retransmits",
            SortKey::Resets => "resets",
            SortKey::Name => "name",
        }
    }

    pub fn parse(s: &str) -> Option<SortKey> {
        SortKey::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// The columns every row has. Rates are over the snapshot's window; with no window yet
/// (a daemon's first `top` request) they are 0 and the ratio and latencies are over
/// everything since the start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RowStats {
    pub requests_per_sec: f64,
    /// Failed calls over all calls (0..=1).
    pub error_ratio: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    pub bytes_per_sec: f64,
    pub retransmits_per_sec: f64,
    pub resets_per_sec: f64,
    /// Since the daemon started.
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
    pub retransmits: u64,
    pub resets: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PodRow {
    pub pod: Peer,
    /// Calls it made (as a client) per second; `stats` are the calls it served.
    pub requests_out_per_sec: f64,
    pub requests_out: u64,
    #[serde(flatten)]
    pub stats: RowStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EdgeRow {
    pub client: Peer,
    pub server: Peer,
    pub port: u16,
    /// The decoded protocol, or the transport (`tcp`, `udp`) when no decoder claimed it.
    pub protocol: String,
    #[serde(flatten)]
    pub stats: RowStats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EndpointRow {
    pub server: Peer,
    pub port: u16,
    pub protocol: String,
    /// `GET /users/{id}`, `shop.Cart/Add`, `SET`, `A example.com`.
    pub operation: String,
    #[serde(flatten)]
    pub stats: RowStats,
}

/// One `top` answer: each table sorted and cut to the limit, with how many rows it had.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TopSnapshot {
    pub node: String,
    pub uptime_secs: u64,
    /// The window the rates are over (s); 0: no earlier sample yet.
    pub window_secs: f64,
    pub query: TopQuery,
    pub pods: Vec<PodRow>,
    pub pods_total: usize,
    pub edges: Vec<EdgeRow>,
    pub edges_total: usize,
    pub endpoints: Vec<EndpointRow>,
    pub endpoints_total: usize,
    /// Values folded into `otel.metric.overflow` series (export.metrics.max_series
    /// reached): traffic no row shows.
    pub series_overflowed: u64,
}

/// One row's counters now and at the base instant, its sides folded into one.
#[derive(Clone, Debug, Default)]
struct Row {
    now: Calls,
    base: Calls,
    flows_now: Flows,
    flows_base: Flows,
}

impl Row {
    fn add(&mut self, o: &Row) {
        self.now.add(&o.now);
        self.base.add(&o.base);
        self.add_flows(o);
    }

    fn add_flows(&mut self, o: &Row) {
        self.flows_now.add(&o.flows_now);
        self.flows_base.add(&o.flows_base);
    }

    /// The calls of the side that saw the most in the window (then in all): a call seen
    /// at both pods counts once.
    fn from_calls(now: &[Calls; SIDES], base: Option<&[Calls; SIDES]>) -> Row {
        let empty = Calls::default();
        let base_of = |i: usize| base.map_or(&empty, |b| &b[i]);
        let i = (0..SIDES)
            .max_by_key(|&i| {
                let n = now[i].requests;
                (n.saturating_sub(base_of(i).requests), n)
            })
            .unwrap_or(SERVER);
        Row {
            now: now[i].clone(),
            base: base_of(i).clone(),
            ..Row::default()
        }
    }

    /// Each flow counter from the side that counted the most: a retransmission can be
    /// seen at one pod's veth and not at the other's.
    fn set_flows(&mut self, now: &[Flows; SIDES], base: Option<&[Flows; SIDES]>) {
        let base_of = |i: usize| base.map_or(Flows::default(), |b| b[i]);
        let pick = |f: fn(&Flows) -> u64| {
            let i = (0..SIDES).max_by_key(|&i| f(&now[i])).unwrap_or(SERVER);
            (f(&now[i]), f(&base_of(i)))
        };
        (self.flows_now.bytes, self.flows_base.bytes) = pick(|f| f.bytes);
        (self.flows_now.retransmits, self.flows_base.retransmits) = pick(|f| f.retransmits);
        (self.flows_now.resets, self.flows_base.resets) = pick(|f| f.resets);
    }

    /// The columns, over a window of `secs` (0: none yet, see [`RowStats`]).
    fn stats(&self, secs: f64) -> RowStats {
        let win = secs > 0.0;
        let per_sec = |now: u64, base: u64| {
            if win {
                now.saturating_sub(base) as f64 / secs
            } else {
                0.0
            }
        };
        let (requests, errors) = if win {
            (
                self.now.requests.saturating_sub(self.base.requests),
                self.now.errors.saturating_sub(self.base.errors),
            )
        } else {
            (self.now.requests, self.now.errors)
        };
        let base = self.base.latency.as_ref().filter(|_| win);
        let q = |q| {
            self.now
                .latency
                .as_ref()
                .and_then(|h| quantile_since(h, base, q))
                .map(|s| s * 1e3)
        };
        let (f, fb) = (&self.flows_now, &self.flows_base);
        RowStats {
            requests_per_sec: per_sec(self.now.requests, self.base.requests),
            error_ratio: if requests == 0 {
                0.0
            } else {
                errors as f64 / requests as f64
            },
            p50_ms: q(0.5),
            p99_ms: q(0.99),
            bytes_per_sec: per_sec(f.bytes, fb.bytes),
            retransmits_per_sec: per_sec(f.retransmits, fb.retransmits),
            resets_per_sec: per_sec(f.resets, fb.resets),
            requests: self.now.requests,
            errors: self.now.errors,
            bytes: f.bytes,
            retransmits: f.retransmits,
            resets: f.resets,
        }
    }
}

/// Sum `calls` per side into groups keyed by `group`, now and at the base instant.
fn group_calls<K: std::hash::Hash + Eq>(
    now: &Totals,
    base: Option<&Totals>,
    keep: impl Fn(&CallKey) -> bool,
    group: impl Fn(&CallKey) -> K,
) -> HashMap<K, Row> {
    type Sides = ([Calls; SIDES], [Calls; SIDES]);
    let mut sums: HashMap<K, Sides> = HashMap::new();
    for (k, sides) in now.calls.iter().filter(|(k, _)| keep(k)) {
        let s = sums.entry(group(k)).or_default();
        for (sum, side) in s.0.iter_mut().zip(sides) {
            sum.add(side);
        }
        if let Some(b) = base.and_then(|b| b.calls.get(k)) {
            for (sum, side) in s.1.iter_mut().zip(b) {
                sum.add(side);
            }
        }
    }
    sums.into_iter()
        .map(|(k, (n, b))| (k, Row::from_calls(&n, base.map(|_| &b))))
        .collect()
}

/// Does a row with these ends and protocol pass the query's filters?
fn wanted(q: &TopQuery, ends: &[&Peer], protocol: Option<&str>) -> bool {
    let ns_ok = q
        .namespace
        .as_deref()
        .is_none_or(|ns| ends.iter().any(|p| p.namespace.as_deref() == Some(ns)));
    let pod_ok = q
        .pod
        .as_deref()
        .is_none_or(|n| ends.iter().any(|p| p.label().contains(n)));
    let proto_ok = match (q.protocol.as_deref(), protocol) {
        (None, _) => true,
        (Some(want), Some(p)) => want.eq_ignore_ascii_case(p),
        (Some(_), None) => true,
    };
    ns_ok && pod_ok && proto_ok
}

/// The value a row is sorted by (highest first). Without a window yet, the totals.
fn sort_value(s: &RowStats, key: SortKey, win: bool, extra_rate: f64) -> f64 {
    let pick = |rate: f64, total: u64| if win { rate } else { total as f64 };
    match key {
        SortKey::Rate => pick(s.requests_per_sec + extra_rate, s.requests),
        SortKey::Errors => s.error_ratio,
        SortKey::P50 => s.p50_ms.unwrap_or(-1.0),
        SortKey::P99 => s.p99_ms.unwrap_or(-1.0),
        SortKey::Bytes => pick(s.bytes_per_sec, s.bytes),
        SortKey::Retransmits => pick(s.retransmits_per_sec, s.retransmits),
        SortKey::Resets => pick(s.resets_per_sec, s.resets),
        SortKey::Name => 0.0,
    }
}

/// Sort `rows` by the query's key (then by name), keep `limit`; the count before.
fn sort_cut<T>(
    rows: &mut Vec<T>,
    key: SortKey,
    limit: usize,
    value: impl Fn(&T) -> (f64, String),
) -> usize {
    let mut keyed: Vec<(f64, String, T)> = rows
        .drain(..)
        .map(|r| {
            let (v, name) = value(&r);
            (if key == SortKey::Name { 0.0 } else { v }, name, r)
        })
        .collect();
    keyed.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let total = keyed.len();
    rows.extend(keyed.into_iter().take(limit).map(|(_, _, r)| r));
    total
}

/// The three tables at `now`, with rates since `base` (`window_secs` earlier), filtered,
/// sorted and cut to `q.limit` rows as `q` asks. `node` and `uptime_secs` are the caller's.
pub fn snapshot(
    now: &Totals,
    base: Option<&Totals>,
    window_secs: f64,
    q: &TopQuery,
) -> TopSnapshot {
    let limit = q.limit;
    let secs = if base.is_some() { window_secs } else { 0.0 };
    let win = secs > 0.0;
    // Edges: calls by (client, server, port, protocol) ...
    type EdgeKey = (Peer, Peer, u16, String);
    let mut edges: HashMap<EdgeKey, Row> = group_calls(
        now,
        base,
        |_| true,
        |k| {
            (
                k.client.clone(),
                k.server.clone(),
                k.port,
                k.protocol.clone(),
            )
        },
    );
    // ... with the flow traffic between the same ends and port: on the edge with the
    // most calls (two protocols on one port share one connection's bytes), or as an
    // edge of its own, named by its transport, when no decoder claimed the traffic. That
    // edge is indexed once: flows and edges are both bounded by the series count, and a
    // scan of the edges per flow would cost their product.
    let mut busiest: HashMap<(&Peer, &Peer, u16), (&String, u64)> = HashMap::new();
    for ((c, s, p, proto), r) in &edges {
        let e = busiest.entry((c, s, *p)).or_insert((proto, r.now.requests));
        if r.now.requests > e.1 {
            *e = (proto, r.now.requests);
        }
    }
    let mut joined: Vec<(EdgeKey, Row)> = Vec::with_capacity(now.flows.len());
    for (k, sides) in &now.flows {
        let mut r = Row::default();
        r.set_flows(sides, base.and_then(|b| b.flows.get(k)));
        let protocol = busiest
            .get(&(&k.client, &k.server, k.port))
            .map_or(&k.transport, |(p, _)| *p);
        let key = (k.client.clone(), k.server.clone(), k.port, protocol.clone());
        joined.push((key, r));
    }
    for (key, r) in joined {
        edges.entry(key).or_default().add_flows(&r);
    }
    let edges: Vec<(EdgeKey, Row)> = edges
        .into_iter()
        .filter(|((c, s, _, p), _)| wanted(q, &[c, s], Some(p)))
        .collect();
    // Pods: what they served and sent, from the edges shown.
    let mut pods: HashMap<&Peer, (Row, Calls, Calls)> = HashMap::new();
    for ((client, server, _, _), r) in &edges {
        if server.kind == PeerKind::Pod {
            pods.entry(server).or_default().0.add(r);
        }
        if client.kind == PeerKind::Pod {
            let p = pods.entry(client).or_default();
            p.1.add(&r.now);
            p.2.add(&r.base);
            if client != server {
                p.0.add_flows(r);
            }
        }
    }
    let mut pod_rows: Vec<PodRow> = pods
        .into_iter()
        .filter(|(p, _)| wanted(q, &[p], None))
        .map(|(p, (served, out_now, out_base))| PodRow {
            pod: p.clone(),
            requests_out_per_sec: if win {
                out_now.requests.saturating_sub(out_base.requests) as f64 / secs
            } else {
                0.0
            },
            requests_out: out_now.requests,
            stats: served.stats(secs),
        })
        .collect();
    let pods_total = sort_cut(&mut pod_rows, q.sort, limit, |r| {
        let v = sort_value(&r.stats, q.sort, win, r.requests_out_per_sec);
        (v, r.pod.label())
    });
    let mut edge_rows: Vec<EdgeRow> = edges
        .into_iter()
        .map(|((client, server, port, protocol), r)| EdgeRow {
            stats: r.stats(secs),
            client,
            server,
            port,
            protocol,
        })
        .collect();
    let edges_total = sort_cut(&mut edge_rows, q.sort, limit, |r| {
        let name = format!("{} {} {}", r.client.label(), r.server.label(), r.port);
        (sort_value(&r.stats, q.sort, win, 0.0), name)
    });
    // Endpoints: calls by (server, port, protocol, operation), of the clients shown.
    let endpoints = group_calls(
        now,
        base,
        |k| wanted(q, &[&k.client, &k.server], Some(&k.protocol)),
        |k| {
            (
                k.server.clone(),
                k.port,
                k.protocol.clone(),
                k.operation.clone(),
            )
        },
    );
    let mut endpoint_rows: Vec<EndpointRow> = endpoints
        .into_iter()
        .map(|((server, port, protocol, operation), r)| EndpointRow {
            stats: r.stats(secs),
            server,
            port,
            protocol,
            operation,
        })
        .collect();
    let endpoints_total = sort_cut(&mut endpoint_rows, q.sort, limit, |r| {
        let name = format!("{} {} {}", r.server.label(), r.port, r.operation);
        (sort_value(&r.stats, q.sort, win, 0.0), name)
    });
    TopSnapshot {
        node: String::new(),
        uptime_secs: 0,
        window_secs: secs,
        query: q.clone(),
        pods: pod_rows,
        pods_total,
        edges: edge_rows,
        edges_total,
        endpoints: endpoint_rows,
        endpoints_total,
        series_overflowed: now.overflowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::DirDelta;
    use crate::k8s::{FlowPods, PodMeta};
    use crate::proto::Endpoint;
    use std::sync::Arc;

    fn pod(name: &str, ns: &str) -> Arc<PodMeta> {
        let mut p = PodMeta {
            name: Some(name.into()),
            namespace: Some(ns.into()),
            ..Default::default()
        };
        p.compute_attrs(&[]);
        Arc::new(p)
    }

    fn pods(obs: &Arc<PodMeta>, c: &Arc<PodMeta>, s: &Arc<PodMeta>) -> Arc<FlowPods> {
        Arc::new(FlowPods {
            obs: Some(obs.clone()),
            client: crate::k8s::Peer::Pod(c.clone()),
            server: crate::k8s::Peer::Pod(s.clone()),
            selected: true,
            ..Default::default()
        })
    }

    /// zeta (batch) calls web (shop) 10 times, alpha (shop) twice with one 503; every
    /// call and every byte is seen at both pods' veths.
    fn traffic() -> Store {
        let (web, alpha, zeta) = (
            pod("web", "shop"),
            pod("alpha", "shop"),
            pod("zeta", "batch"),
        );
        let mut s = super::super::tests::stats();
        let ep = |a: &str, port| Endpoint {
            addr: a.parse().unwrap(),
            port,
        };
        for (client, n, failed, cip) in [(&zeta, 10, 0, "10.0.0.3"), (&alpha, 2, 1, "10.0.0.2")] {
            for obs in [client, &web] {
                for i in 0..n {
                    let status = if i < failed { 503 } else { 200 };
                    let mut tx = super::super::tests::http_tx("GET", "/", status, 2);
                    tx.pods = Some(pods(obs, client, &web));
                    s.transaction(&tx);
                }
                let delta = [
                    DirDelta {
                        bytes: 100 * n,
                        packets: n,
                        ..Default::default()
                    },
                    DirDelta {
                        bytes: 1000 * n,
                        packets: n,
                        ..Default::default()
                    },
                ];
                let p = pods(obs, client, &web);
                s.flow_traffic(6, &ep(cip, 40000), &ep("10.0.0.2", 80), Some(&p), &delta);
            }
        }
        s.take_delta()
    }

    #[test]
    fn calls_seen_at_both_pods_count_once_with_their_flow_bytes() {
        let now = Totals::from_store(&traffic());
        let base = Totals::default();
        let snap = snapshot(&now, Some(&base), 2.0, &TopQuery::default());
        assert_eq!(snap.edges_total, 2, "{:#?}", snap.edges);
        let e = &snap.edges[0];
        assert_eq!(
            (
                e.client.label(),
                e.server.label(),
                e.port,
                e.protocol.as_str()
            ),
            ("batch/zeta".into(), "shop/web".into(), 80, "http")
        );
        assert_eq!((e.stats.requests, e.stats.requests_per_sec), (10, 5.0));
        assert_eq!(e.stats.bytes, 11_000);
        assert_eq!(e.stats.bytes_per_sec, 5_500.0);
        let p50 = e.stats.p50_ms.unwrap();
        assert!((1.0..=2.5).contains(&p50), "{p50}");
        let a = &snap.edges[1];
        assert_eq!((a.client.name.as_str(), a.stats.requests), ("alpha", 2));
        assert_eq!(a.stats.error_ratio, 0.5);
        // Pods: web served all 12 calls; each client made its own.
        let web = snap.pods.iter().find(|p| p.pod.name == "web").unwrap();
        assert_eq!((web.stats.requests, web.requests_out), (12, 0));
        assert_eq!(web.stats.bytes, 11_000 + 2_200);
        let zeta = snap.pods.iter().find(|p| p.pod.name == "zeta").unwrap();
        assert_eq!((zeta.stats.requests, zeta.requests_out), (0, 10));
        assert_eq!(zeta.requests_out_per_sec, 5.0);
        // Endpoints: one route of web, both clients' calls.
        assert_eq!(snap.endpoints_total, 1);
        let ep = &snap.endpoints[0];
        assert_eq!((ep.operation.as_str(), ep.stats.requests), ("GET /", 12));
    }

    #[test]
    fn filters_sorting_and_the_limit() {
        let now = Totals::from_store(&traffic());
        let q = |f: &dyn Fn(&mut TopQuery)| {
            let mut q = TopQuery::default();
            f(&mut q);
            snapshot(&now, Some(&Totals::default()), 1.0, &q)
        };
        // By name: the labels, namespace first (batch/zeta before shop/alpha).
        let by_name = q(&|q| q.sort = SortKey::Name);
        assert_eq!(by_name.edges[0].client.name, "zeta");
        assert_eq!(by_name.pods[0].pod.label(), "batch/zeta");
        let errors = q(&|q| q.sort = SortKey::Errors);
        assert_eq!(errors.edges[0].client.name, "alpha");
        let batch = q(&|q| q.namespace = Some("batch".into()));
        assert_eq!(batch.edges.len(), 1);
        assert_eq!(batch.edges[0].client.name, "zeta");
        let names: Vec<_> = batch.pods.iter().map(|p| p.pod.name.as_str()).collect();
        assert_eq!(names, ["zeta"], "web is in shop");
        assert_eq!(batch.endpoints[0].stats.requests, 10, "zeta's calls only");
        let alpha = q(&|q| q.pod = Some("alph".into()));
        assert_eq!(alpha.edges.len(), 1);
        assert!(q(&|q| q.protocol = Some("redis".into())).edges.is_empty());
        assert_eq!(q(&|q| q.protocol = Some("HTTP".into())).edges.len(), 2);
        let one = q(&|q| q.limit = 1);
        assert_eq!((one.edges.len(), one.edges_total), (1, 2));
    }

    #[test]
    fn without_an_earlier_sample_there_are_no_rates_but_totals() {
        let now = Totals::from_store(&traffic());
        let snap = snapshot(&now, None, 3.0, &TopQuery::default());
        assert_eq!(snap.window_secs, 0.0);
        let e = &snap.edges[0];
        assert_eq!((e.stats.requests, e.stats.requests_per_sec), (10, 0.0));
        assert!(e.stats.p99_ms.is_some(), "latency over everything so far");
    }

    #[test]
    fn history_keeps_samples_a_second_apart_and_finds_the_window() {
        let mut h = History::default();
        let t0 = Instant::now();
        let t = Totals::default();
        assert!(h.base(t0, Duration::from_secs(5)).is_none());
        for ms in [0, 400, 1000, 2000, 3000, 30_000] {
            h.push(t0 + Duration::from_millis(ms), &t);
        }
        // 400 ms after the first: not kept; at 30 s the old ones are forgotten.
        assert_eq!(h.samples.len(), 1);
        let mut h = History::default();
        for s in 0..8 {
            h.push(t0 + Duration::from_secs(s), &t);
        }
        let now = t0 + Duration::from_millis(7_200);
        let (_, age) = h.base(now, Duration::from_secs(5)).unwrap();
        assert_eq!(age, Duration::from_millis(5_200));
        let (_, age) = h.base(now, Duration::from_secs(10)).unwrap();
        assert_eq!(
            age,
            Duration::from_millis(7_200),
            "the oldest when none is as old"
        );
    }
}
