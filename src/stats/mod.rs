//! Statistics: per-worker RED (rate, errors, duration) and network metrics, recorded from
//! the records a worker produces into a store the worker owns (no locks, no shared
//! counters), handed to the exporter as a delta each tick.

pub mod histogram;
pub mod metrics;
pub mod store;
pub mod top;

pub use histogram::{Histogram, HistogramSpec};
pub use metrics::{Kind, Metric};
pub use store::{Attrs, SeriesKey, Store, Val, Value};

use compact_str::CompactString;
use std::sync::Arc;

use crate::capture::tpacket::IfaceCount;
use crate::events::{Counters, Event};
use crate::flow::{DirDelta, FlowRecord, transport_name};
use crate::k8s::PodMeta;
use crate::k8s::policy::Granularity;
use crate::proto::{AttrValue, Endpoint, Protocol, Transaction};

/// Which side of a call the observation point is on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Seen where the server is (its pod's veth, or an unknown point): SERVER spans,
    /// `*.server.*` metrics.
    Server,
    /// Seen where the client is: CLIENT spans, `*.client.*` metrics.
    Client,
}

/// The side a transaction was observed at: the client's when pod attribution says the
/// observation point (the veth it was captured on) is the client pod's, otherwise the
/// server's (its pod's veth, or a point attribution does not know).
pub fn observed_side(tx: &Transaction) -> Side {
    match tx.pods.as_ref().and_then(|p| p.observed_side()) {
        Some("client") => Side::Client,
        _ => Side::Server,
    }
}

/// Complete `tx.error` (`error.type`) once the side `tx` was observed at is known: the
/// one definition of a failed transaction, which the JSON lines, the summary table, spans
/// (status ERROR), span sampling and the RED metrics all read. Decoders set what fails
/// wherever it is seen (HTTP 5xx, gRPC status, resets...). An HTTP 4xx is the caller's
/// failure: the OpenTelemetry HTTP conventions make it an error on CLIENT spans and
/// `http.client.*` metrics only, never on the server's, so it is set here, for a
/// transaction observed at the client.
///
/// Inlined: every transaction comes through here, and nearly all of them are not HTTP or
/// carry their error already (one test each, where the call cost more).
#[inline(always)]
pub fn settle_error(tx: &mut Transaction) {
    if tx.error.is_none() && matches!(tx.protocol, Protocol::Http | Protocol::Http2) {
        settle_http_error(tx);
    }
}

#[inline(never)]
fn settle_http_error(tx: &mut Transaction) {
    use compact_str::ToCompactString;
    if let Some(code @ 400..=499) = tx.status
        && observed_side(tx) == Side::Client
    {
        // Three digits: inline, no allocation.
        tx.error = Some(code.to_compact_string());
    }
}

/// The pod at the observation point of `tx`, when attribution knows it.
pub fn local_pod(tx: &Transaction) -> Option<&crate::k8s::PodMeta> {
    let p = tx.pods.as_ref()?;
    let peer = match observed_side(tx) {
        Side::Client => &p.client,
        Side::Server => &p.server,
    };
    peer.pod().map(|m| &**m).or(p.obs.as_deref())
}

/// A worker's capture counters so far (totals; their growth is recorded).
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureTotals<'a> {
    pub packets: u64,
    pub bytes: u64,
    pub kernel_drops: u64,
    pub ring_full: u64,
    /// Frames and bytes per observation point (interface index).
    pub interfaces: &'a [IfaceCount],
}

/// The capture series of worker `worker`: packets, bytes, kernel drops, ring full (in
/// [`CaptureTotals`]' order). The exporter registers them at zero when the worker starts,
/// so an alert on drops has a series before the first drop.
pub fn worker_series(worker: usize) -> [(Metric, Attrs); 4] {
    let w = ("podtap.worker", Val::Int(worker as i64));
    let drop = |reason| {
        vec![
            (
                "podtap.drop.reason",
                Val::Str(CompactString::const_new(reason)),
            ),
            w.clone(),
        ]
    };
    [
        (Metric::CapturePackets, vec![w.clone()]),
        (Metric::CaptureBytes, vec![w.clone()]),
        (Metric::CaptureDrops, drop("kernel")),
        (Metric::CaptureDrops, drop("ring_full")),
    ]
}

const IFACE_KEY: &str = "network.interface.name";

/// The series of an attached interface: packets, bytes.
pub fn interface_series(name: &Arc<str>) -> [(Metric, Attrs); 2] {
    let attrs = vec![(IFACE_KEY, Val::Shared(name.clone()))];
    [
        (Metric::InterfacePackets, attrs.clone()),
        (Metric::InterfaceBytes, attrs),
    ]
}

/// The series of every event kind (`podtap.events`), registered at zero at start.
pub fn event_series() -> impl Iterator<Item = (Metric, Attrs)> {
    Event::all().map(|e| (Metric::Events, event_attrs(e)))
}

/// Count `n` more of event `e` into `store` (`podtap.events`), for counters kept outside
/// the workers (the writer's `output.write_failed`).
pub fn add_event(store: &mut Store, e: Event, n: u64) {
    store.add(Metric::Events, &event_attrs(e), n);
}

fn event_attrs(e: Event) -> Attrs {
    vec![("podtap.event", Val::Str(CompactString::const_new(e.name())))]
}

/// The statistics one worker records between ticks.
pub struct WorkerStats {
    store: Store,
    /// Event counts already reported (the worker's counters only grow).
    events_seen: [u64; Event::COUNT],
    /// Capture totals already reported: packets, bytes, kernel drops, ring full.
    capture_seen: [u64; 4],
    /// Frames and bytes already reported per interface.
    iface_seen: Vec<IfaceCount>,
    /// [`worker_series`] of this worker, built once.
    worker_series: Option<(usize, [(Metric, Attrs); 4])>,
    /// Attributes of the series being recorded, reused so recording allocates only for
    /// a new series.
    scratch: Attrs,
    /// A series' attributes at pod granularity (see [`Recorder`]), reused likewise.
    view: Attrs,
    pod_labels: PodLabelCache,
}

/// This worker's own copies of the pods' metric label strings. Cloning the pod
/// metadata's shared strings per transaction would bump reference counts that every
/// worker bumps too (a cache line bouncing between cores per label); these copies are
/// touched by this worker only. Keyed by the metadata's address, which the entry keeps
/// alive; bounded (cleared when full, then refilled as pods are seen).
#[derive(Default)]
struct PodLabelCache {
    by_pod: hashbrown::HashMap<usize, (Arc<PodMeta>, Labels)>,
}

/// Namespace, pod name, `service.name` (see `k8s::METRIC_LABELS`), and the pod's
/// monitoring policy's `podLabels` (keys by side, value).
struct Labels {
    base: [Option<Arc<str>>; 3],
    policy: Vec<([&'static str; 2], Arc<str>)>,
}

impl PodLabelCache {
    const MAX_PODS: usize = 4096;

    fn labels(&mut self, m: &Arc<PodMeta>) -> &Labels {
        let key = Arc::as_ptr(m) as usize;
        if !self.by_pod.contains_key(&key) && self.by_pod.len() >= Self::MAX_PODS {
            self.by_pod.clear();
        }
        &self
            .by_pod
            .entry(key)
            .or_insert_with(|| {
                let base = m.metric_labels.clone().map(|v| v.as_deref().map(Arc::from));
                let policy = m
                    .policy_metric_labels
                    .iter()
                    .map(|(k, v)| (*k, Arc::from(&**v)))
                    .collect();
                (m.clone(), Labels { base, policy })
            })
            .1
    }
}

impl WorkerStats {
    pub fn new(spec: HistogramSpec, max_series: usize) -> WorkerStats {
        WorkerStats {
            store: Store::new(spec, max_series),
            events_seen: [0; Event::COUNT],
            capture_seen: [0; 4],
            iface_seen: Vec::new(),
            worker_series: None,
            scratch: Attrs::with_capacity(8),
            view: Attrs::new(),
            pod_labels: PodLabelCache::default(),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Everything recorded since the last call.
    pub fn take_delta(&mut self) -> Store {
        self.store.take()
    }

    /// Put back a delta that could not be handed over (queue full): nothing is lost, the
    /// next tick sends both.
    pub fn restore(&mut self, delta: Store) {
        let newer = self.store.take();
        self.store = delta;
        self.store.merge(newer);
    }

    /// Fold the growth of the worker's event counters into the delta.
    pub fn events(&mut self, c: &Counters) {
        for (i, e) in Event::all().enumerate() {
            let now = c.get(e);
            let seen = &mut self.events_seen[i];
            if now > *seen {
                self.store.add(Metric::Events, &event_attrs(e), now - *seen);
                *seen = now;
            }
        }
    }

    /// Fold the growth of this worker's capture counters into the delta: frames and
    /// bytes, kernel drops and ring-full counts (`worker` is the worker's index), and
    /// frames and bytes per interface, for the interfaces `attached` names (the others'
    /// counts are remembered, not recorded). Called between batches, not per frame.
    pub fn capture(&mut self, worker: usize, t: &CaptureTotals<'_>, attached: &[(u32, Arc<str>)]) {
        let series = match &self.worker_series {
            Some((w, s)) if *w == worker => s,
            _ => &self.worker_series.insert((worker, worker_series(worker))).1,
        };
        let now = [t.packets, t.bytes, t.kernel_drops, t.ring_full];
        for (i, (metric, attrs)) in series.iter().enumerate() {
            let seen = &mut self.capture_seen[i];
            if now[i] > *seen {
                self.store.add(*metric, attrs, now[i] - *seen);
                *seen = now[i];
            }
        }
        let mut a = std::mem::take(&mut self.scratch);
        for c in t.interfaces {
            let i = match self.iface_seen.iter().position(|s| s.ifindex == c.ifindex) {
                Some(i) => i,
                None => {
                    self.iface_seen.push(IfaceCount {
                        ifindex: c.ifindex,
                        frames: 0,
                        bytes: 0,
                    });
                    self.iface_seen.len() - 1
                }
            };
            let seen = &mut self.iface_seen[i];
            let grown = [
                c.frames.saturating_sub(seen.frames),
                c.bytes.saturating_sub(seen.bytes),
            ];
            (seen.frames, seen.bytes) = (c.frames, c.bytes);
            let Some((_, name)) = attached.iter().find(|(i, _)| *i == c.ifindex) else {
                continue;
            };
            a.clear();
            a.push((IFACE_KEY, Val::Shared(name.clone())));
            for (metric, n) in [Metric::InterfacePackets, Metric::InterfaceBytes]
                .into_iter()
                .zip(grown)
            {
                if n > 0 {
                    self.store.add(metric, &a, n);
                }
            }
        }
        self.scratch = a;
    }

    /// A transaction's duration, into its protocol's histogram (which one, and with which
    /// attributes, its decoder's telemetry mapping says), seen from the side it was
    /// observed at.
    pub fn transaction(&mut self, tx: &Transaction) {
        use crate::proto::registry::MetricAttr;
        let Some(t) = crate::proto::telemetry(tx.protocol) else {
            return;
        };
        // TLS handshakes and the like are flows, not calls.
        let Some(metrics) = t.duration else { return };
        let metric = metrics[(observed_side(tx) == Side::Client) as usize];
        let pods = tx.pods.as_deref();
        if granularity(pods, metric).is_none() {
            return;
        }
        let secs = tx.duration_ns() as f64 / 1e9;
        let mut a = std::mem::take(&mut self.scratch);
        a.clear();
        let attr = |key: &str| match tx.attr(key) {
            Some(AttrValue::Str(v)) => Some(v.clone()),
            _ => None,
        };
        for m in t.metric_attrs {
            match *m {
                MetricAttr::Attr(k) => {
                    if let Some(v) = attr(k) {
                        a.push((k, Val::Str(v)));
                    }
                }
                MetricAttr::AttrOrOperation(k) => {
                    a.push((k, Val::Str(attr(k).unwrap_or_else(|| tx.operation.clone()))));
                }
                MetricAttr::Operation(k) => a.push((k, Val::Str(tx.operation.clone()))),
                MetricAttr::Resource(k) => {
                    if !tx.resource.is_empty() {
                        a.push((k, Val::Str(tx.resource.clone())));
                    }
                }
                MetricAttr::Status(k) => {
                    if let Some(s) = tx.status {
                        a.push((k, Val::Int(s)));
                    }
                }
                MetricAttr::Const(k, v) => a.push((k, Val::Str(CompactString::const_new(v)))),
                MetricAttr::ProtocolName(k) => {
                    a.push((k, Val::Str(CompactString::const_new(tx.protocol.as_str()))))
                }
                MetricAttr::Error => push_error(&mut a, tx),
                MetricAttr::Server => push_server(&mut a, &tx.server),
            }
        }
        push_pods(&mut a, pods, &mut self.pod_labels);
        let mut r = Recorder {
            store: &mut self.store,
            view: &mut self.view,
            pods,
        };
        r.observe(metric, &a, secs);
        // A count the decoder adds on the same series (messages sent or consumed).
        if let Some((m, n)) = crate::proto::counter(tx) {
            r.add(m, &a, n);
        }
        self.scratch = a;
    }

    /// Traffic of a flow edge: bytes, packets and retransmissions per sending direction
    /// (an open flow's progress, or what a finished flow had not reported yet).
    pub fn flow_traffic(
        &mut self,
        ip_proto: u8,
        client: &Endpoint,
        server: &Endpoint,
        pods: Option<&crate::k8s::FlowPods>,
        delta: &[DirDelta; 2],
    ) {
        let mut a = std::mem::take(&mut self.scratch);
        let mut r = Recorder {
            store: &mut self.store,
            view: &mut self.view,
            pods,
        };
        for (i, d) in delta.iter().enumerate() {
            edge_attrs(
                &mut a,
                &mut self.pod_labels,
                ip_proto,
                client,
                server,
                pods,
                Some(direction(i)),
            );
            if d.bytes > 0 {
                r.add(Metric::FlowIo, &a, d.bytes);
            }
            if d.packets > 0 {
                r.add(Metric::FlowPackets, &a, d.packets);
            }
            if d.retransmits > 0 {
                r.add(Metric::TcpRetransmissions, &a, d.retransmits);
            }
        }
        self.scratch = a;
    }

    pub fn flow(&mut self, f: &FlowRecord) {
        let pods = f.pods.as_deref();
        self.flow_traffic(f.ip_proto, &f.client, &f.server, pods, &f.unreported);
        let Some(t) = &f.tcp else { return };
        // One attribute vector, refilled per series: recording allocates only new series.
        let mut a = std::mem::take(&mut self.scratch);
        let cache = &mut self.pod_labels;
        let mut edge = |a: &mut Attrs, extra| {
            edge_attrs(a, cache, f.ip_proto, &f.client, &f.server, pods, extra)
        };
        let mut r = Recorder {
            store: &mut self.store,
            view: &mut self.view,
            pods,
        };
        if let (Some(s), Some(c)) = (t.server_rtt_ns, t.client_rtt_ns) {
            edge(&mut a, None);
            r.observe(Metric::TcpHandshake, &a, (s + c) as f64 / 1e9);
        }
        for (i, srtt) in t.srtt_ns.iter().enumerate() {
            if let Some(ns) = srtt {
                edge(&mut a, Some(direction(i)));
                r.observe(Metric::TcpRtt, &a, *ns as f64 / 1e9);
            }
        }
        for (i, st) in t.stats.iter().enumerate() {
            edge(&mut a, Some(direction(i)));
            if st.resets > 0 {
                r.add(Metric::TcpResets, &a, st.resets);
            }
            if st.zero_windows > 0 {
                r.add(Metric::TcpZeroWindows, &a, st.zero_windows);
            }
        }
        if !t.midstream {
            edge(&mut a, None);
            r.add(Metric::TcpOpened, &a, 1);
        }
        let reason = ("podtap.flow.end_reason", Val::Str(f.reason.as_str().into()));
        edge(&mut a, Some(reason));
        r.add(Metric::TcpClosed, &a, 1);
        self.scratch = a;
    }
}

/// What the monitoring policy of a flow's pods says about metric `m`: None, not
/// produced; else the granularity of its series. Without a policy: every metric, per
/// flow edge.
#[inline]
fn granularity(pods: Option<&crate::k8s::FlowPods>, m: Metric) -> Option<Granularity> {
    match pods.and_then(|p| p.policy.as_deref()) {
        Some(p) => p.granularity(m),
        None => Some(Granularity::Flow),
    }
}

/// Records a flow's series as its pods' monitoring policy says: a family the policy
/// leaves out is not recorded; at pod granularity, the series is the observed pod's,
/// without the addresses, ports and the peer (a copy of the attributes, made only
/// then).
struct Recorder<'a> {
    store: &'a mut Store,
    view: &'a mut Attrs,
    pods: Option<&'a crate::k8s::FlowPods>,
}

impl Recorder<'_> {
    /// `a` at pod granularity, into `view`.
    fn pod_view(&mut self, a: &Attrs) {
        let local = self.pods.and_then(|p| p.observed_side());
        self.view.clear();
        self.view.extend(
            a.iter()
                .filter(|(k, _)| {
                    !matches!(*k, "client.address" | "server.address" | "server.port")
                        && match local {
                            Some("client") => !k.starts_with("server."),
                            Some("server") => !k.starts_with("client."),
                            _ => true,
                        }
                })
                .cloned(),
        );
    }

    fn add(&mut self, m: Metric, a: &Attrs, n: u64) {
        match granularity(self.pods, m) {
            None => {}
            Some(Granularity::Flow) => self.store.add(m, a, n),
            Some(Granularity::Pod) => {
                self.pod_view(a);
                self.store.add(m, self.view, n);
            }
        }
    }

    fn observe(&mut self, m: Metric, a: &Attrs, v: f64) {
        match granularity(self.pods, m) {
            None => {}
            Some(Granularity::Flow) => self.store.observe(m, a, v),
            Some(Granularity::Pod) => {
                self.pod_view(a);
                self.store.observe(m, self.view, v);
            }
        }
    }
}

/// `podtap.flow.direction` of direction index `i` (sent by the client, by the server).
fn direction(i: usize) -> (&'static str, Val) {
    const DIRS: [&str; 2] = ["client_to_server", "server_to_client"];
    (
        "podtap.flow.direction",
        Val::Str(CompactString::const_new(DIRS[i])),
    )
}

/// The attributes of a flow edge, written into `a` (cleared first): both addresses, the
/// server port, the transport, both ends' pods, and one more (direction, end reason) if
/// given.
fn edge_attrs(
    a: &mut Attrs,
    cache: &mut PodLabelCache,
    ip_proto: u8,
    client: &Endpoint,
    server: &Endpoint,
    pods: Option<&crate::k8s::FlowPods>,
    extra: Option<(&'static str, Val)>,
) {
    a.clear();
    a.push(("client.address", Val::Ip(client.addr)));
    a.push(("server.address", Val::Ip(server.addr)));
    a.push(("server.port", Val::Int(server.port as i64)));
    a.push((
        "network.transport",
        Val::Str(CompactString::const_new(transport_name(ip_proto))),
    ));
    push_pods(a, pods, cache);
    // Every flow series says where it was seen, so one side sums to the traffic once.
    let side = pods.map_or("tap", |p| p.observation_side());
    a.push((
        "podtap.observation_point.side",
        Val::Str(CompactString::const_new(side)),
    ));
    if let Some(x) = extra {
        a.push(x);
    }
}

fn push_error(a: &mut Attrs, tx: &Transaction) {
    if let Some(e) = &tx.error {
        a.push(("error.type", Val::Str(e.clone())));
    }
}

/// Each end's pod (namespace, name, `service.name`), Service, or kind (`node`,
/// `external`), under the side's prefix as in the JSON lines. Pod values are shared
/// strings: recording copies pointers, it does not allocate.
fn push_pods(a: &mut Attrs, pods: Option<&crate::k8s::FlowPods>, cache: &mut PodLabelCache) {
    use crate::k8s::{METRIC_LABELS, Peer};
    const KIND: [&str; 2] = ["client.podtap.kind", "server.podtap.kind"];
    const SERVICE: [[&str; 2]; 2] = [
        ["client.k8s.namespace.name", "client.k8s.service.name"],
        ["server.k8s.namespace.name", "server.k8s.service.name"],
    ];
    let Some(p) = pods else { return };
    for (i, peer) in [&p.client, &p.server].into_iter().enumerate() {
        match peer {
            Peer::Pod(m) => {
                let labels = cache.labels(m);
                for (k, v) in METRIC_LABELS[i].iter().zip(&labels.base) {
                    if let Some(v) = v {
                        a.push((k, Val::Shared(v.clone())));
                    }
                }
                for (keys, v) in &labels.policy {
                    a.push((keys[i], Val::Shared(v.clone())));
                }
            }
            Peer::Service(svc) => {
                a.push((SERVICE[i][0], Val::Str(svc.namespace.clone())));
                a.push((SERVICE[i][1], Val::Str(svc.name.clone())));
            }
            Peer::Node | Peer::External => {
                let kind = peer.kind().unwrap_or_default();
                a.push((KIND[i], Val::Str(CompactString::const_new(kind))));
            }
            Peer::Unknown => {}
        }
    }
}

fn push_server(a: &mut Attrs, server: &Endpoint) {
    a.push(("server.address", Val::Ip(server.addr)));
    a.push(("server.port", Val::Int(server.port as i64)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;
    use std::sync::Arc;

    pub(super) fn stats() -> WorkerStats {
        WorkerStats::new(
            HistogramSpec::Explicit(Arc::from(histogram::DEFAULT_BOUNDS)),
            100,
        )
    }

    pub fn http_tx(method: &str, route: &str, status: i64, ms: u64) -> Transaction {
        let mut tx = Transaction::new(Protocol::Http, Timestamp(1_000_000_000));
        tx.end = Timestamp(1_000_000_000 + ms * 1_000_000);
        tx.operation = method.into();
        tx.resource = route.into();
        tx.status = Some(status);
        if status >= 500 {
            tx.error = Some(status.to_string().into());
        }
        tx.attr_str("http.request.method", method);
        tx.attr_str("http.route", route);
        tx.server = Endpoint {
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
        };
        tx
    }

    #[test]
    fn http_transactions_become_server_duration_series() {
        let mut s = stats();
        s.transaction(&http_tx("GET", "/users/{id}", 200, 30));
        s.transaction(&http_tx("GET", "/users/{id}", 200, 70));
        s.transaction(&http_tx("GET", "/users/{id}", 503, 1));
        let d = s.take_delta();
        assert!(s.store().is_empty());
        let series = d.sorted();
        assert_eq!(series.len(), 2);
        let (k, v) = series
            .iter()
            .find(|(k, _)| k.attrs.iter().all(|(n, _)| *n != "error.type"))
            .unwrap();
        assert_eq!(k.metric, Metric::HttpServerDuration);
        let Value::Histogram(h) = v else { panic!() };
        assert_eq!(h.count, 2);
        assert!((h.sum - 0.1).abs() < 1e-9);
        let names: Vec<_> = k.attrs.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "http.request.method",
                "http.route",
                "http.response.status_code",
                "network.protocol.name",
                "server.address",
                "server.port"
            ]
        );
    }

    #[test]
    fn each_protocol_records_into_its_decoders_metric() {
        let mut s = stats();
        let mut grpc = http_tx("POST", "/shop.Cart/Add", 0, 12);
        grpc.protocol = Protocol::Grpc;
        grpc.attr_str("rpc.service", "shop.Cart");
        grpc.attr_str("rpc.method", "Add");
        s.transaction(&grpc);
        // A TLS handshake is its flow's property: no duration metric.
        let mut tls = http_tx("GET", "", 0, 12);
        tls.protocol = Protocol::Tls;
        s.transaction(&tls);
        let d = s.take_delta();
        let series = d.sorted();
        assert_eq!(series.len(), 1);
        let (k, v) = series[0];
        assert_eq!(k.metric, Metric::RpcServerDuration);
        assert_eq!(v.count(), 1);
        let get = |n: &str| {
            k.attrs
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("rpc.system").as_deref(), Some("grpc"));
        assert_eq!(get("rpc.service").as_deref(), Some("shop.Cart"));
        assert_eq!(get("rpc.method").as_deref(), Some("Add"));
    }

    #[test]
    fn event_counters_report_growth_only() {
        let mut s = stats();
        let mut c = Counters::default();
        c.add(Event::MalformedTcp, 3);
        s.events(&c);
        c.add(Event::MalformedTcp, 2);
        s.events(&c);
        s.events(&c);
        let d = s.take_delta();
        let attrs = vec![("podtap.event", Val::Str("malformed.tcp".into()))];
        assert_eq!(d.get(Metric::Events, &attrs).unwrap().count(), 5);
    }

    #[test]
    fn restored_delta_is_not_lost() {
        let mut s = stats();
        s.transaction(&http_tx("GET", "/", 200, 1));
        let d = s.take_delta();
        s.transaction(&http_tx("GET", "/", 200, 1));
        s.restore(d);
        let total: u64 = s.take_delta().sorted().iter().map(|(_, v)| v.count()).sum();
        assert_eq!(total, 2);
    }
}

#[cfg(test)]
mod side_tests {
    use super::*;
    use crate::k8s::{FlowPods, Peer, PodMeta};
    use std::sync::Arc;

    fn pod(name: &str, service: &str) -> Arc<PodMeta> {
        Arc::new(PodMeta {
            name: Some(name.into()),
            service_name: Some(service.into()),
            ..Default::default()
        })
    }

    /// Captured on the client pod's veth: a CLIENT observation of the client's workload;
    /// on the server's: SERVER, the server's workload; without attribution: SERVER.
    #[test]
    fn the_observation_point_decides_the_side_and_the_service() {
        let (web, api) = (pod("web-1", "web"), pod("api-1", "api"));
        let mut tx = Transaction::default();
        assert_eq!(observed_side(&tx), Side::Server);
        assert!(local_pod(&tx).is_none());
        for (obs, side, svc) in [(&web, Side::Client, "web"), (&api, Side::Server, "api")] {
            tx.pods = Some(Arc::new(FlowPods {
                obs: Some(obs.clone()),
                client: Peer::Pod(web.clone()),
                server: Peer::Pod(api.clone()),
                selected: true,
                ..Default::default()
            }));
            assert_eq!(observed_side(&tx), side);
            assert_eq!(crate::export::otlp::spans::service_of(&tx, "podtap"), svc);
        }
    }

    /// A call between two pods of the node is seen at both veths: every flow series says
    /// which side it was seen at, so one side sums to the traffic once; a point that is
    /// neither end's pod (or no attribution) is a single `tap`.
    #[test]
    fn flow_series_carry_the_observation_side() {
        let (web, api) = (pod("web-1", "web"), pod("api-1", "api"));
        let ep = |a: &str, port| Endpoint {
            addr: a.parse().unwrap(),
            port,
        };
        let (c, srv) = (ep("10.0.0.1", 40000), ep("10.0.0.2", 80));
        let delta = [
            DirDelta {
                bytes: 100,
                packets: 2,
                ..Default::default()
            },
            DirDelta::default(),
        ];
        let mut s = super::tests::stats();
        let at = |obs: Option<&Arc<PodMeta>>| FlowPods {
            obs: obs.cloned(),
            client: Peer::Pod(web.clone()),
            server: Peer::Pod(api.clone()),
            selected: true,
            ..Default::default()
        };
        for p in [at(Some(&web)), at(Some(&api)), at(None)] {
            s.flow_traffic(6, &c, &srv, Some(&p), &delta);
        }
        s.flow_traffic(6, &c, &srv, None, &delta);
        let d = s.take_delta();
        let mut by_side = std::collections::BTreeMap::new();
        for (k, v) in d.sorted() {
            if k.metric != Metric::FlowIo {
                continue;
            }
            let side = k
                .attrs
                .iter()
                .find(|(n, _)| *n == "podtap.observation_point.side")
                .map(|(_, v)| format!("{v:?}"))
                .expect("side on every flow series");
            *by_side.entry(side).or_insert(0) += v.count();
        }
        let sides: Vec<_> = by_side.iter().map(|(s, n)| (s.as_str(), *n)).collect();
        assert_eq!(sides.len(), 3, "{sides:?}");
        assert!(sides.iter().any(|(s, n)| s.contains("client") && *n == 100));
        assert!(sides.iter().any(|(s, n)| s.contains("server") && *n == 100));
        assert!(sides.iter().any(|(s, n)| s.contains("tap") && *n == 200));
    }

    /// A monitoring policy decides which families a pod's metrics keep, at which
    /// granularity, and carries its `podLabels` onto them.
    #[test]
    fn a_policy_picks_families_granularity_and_labels() {
        use crate::k8s::policy::{PodtapPolicy, Policy, PolicySet};
        let set = PolicySet::new(vec![Policy::from_object(&PodtapPolicy {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                name: Some("web".into()),
                namespace: Some("shop".into()),
                ..Default::default()
            },
            spec: serde_json::json!({"podLabels": ["team"],
                "metrics": [{"family": "http", "granularity": "pod"}, {"family": "flow"}]}),
            status: None,
        })]);
        let policy = Arc::new(set.for_pod(Some("shop"), [("team", "a")]).unwrap());
        let mut api = PodMeta {
            name: Some("api-1".into()),
            namespace: Some("shop".into()),
            service_name: Some("api".into()),
            policy: Some(policy.clone()),
            policy_metric_labels: vec![(
                crate::k8s::policy::metric_label_keys("team").unwrap(),
                Arc::from("a"),
            )],
            ..Default::default()
        };
        api.compute_attrs(&[]);
        let (web, api) = (pod("web-1", "web"), Arc::new(api));
        let pods = Arc::new(FlowPods {
            obs: Some(api.clone()),
            client: Peer::Pod(web),
            server: Peer::Pod(api),
            selected: true,
            policy: Some(policy),
            ..Default::default()
        });
        let mut s = super::tests::stats();
        let mut tx = super::tests::http_tx("GET", "/", 200, 5);
        tx.pods = Some(pods.clone());
        s.transaction(&tx);
        let ep = |a: &str, port| Endpoint {
            addr: a.parse().unwrap(),
            port,
        };
        let delta = [
            DirDelta {
                bytes: 100,
                packets: 1,
                retransmits: 1,
            },
            DirDelta::default(),
        ];
        s.flow_traffic(
            6,
            &ep("10.0.0.1", 4000),
            &ep("10.0.0.2", 80),
            Some(&pods),
            &delta,
        );
        let d = s.take_delta();
        let metrics: Vec<Metric> = d.sorted().iter().map(|(k, _)| k.metric).collect();
        assert!(
            !metrics.contains(&Metric::TcpRetransmissions),
            "tcp is not a family of the policy: {metrics:?}"
        );
        let keys = |m: Metric| -> Vec<&str> {
            let (k, _) = d.sorted().into_iter().find(|(k, _)| k.metric == m).unwrap();
            k.attrs.iter().map(|(n, _)| *n).collect()
        };
        let http = keys(Metric::HttpServerDuration);
        assert!(
            http.contains(&"server.k8s.pod.name") && http.contains(&"server.k8s.pod.label.team")
        );
        assert!(
            !http
                .iter()
                .any(|k| k.starts_with("client.") || *k == "server.address"),
            "pod granularity: the observed pod only: {http:?}"
        );
        let io = keys(Metric::FlowIo);
        assert!(
            io.contains(&"client.address") && io.contains(&"server.address"),
            "flow granularity keeps the edge: {io:?}"
        );
    }

    /// An HTTP 4xx is an error (`error.type` = the code) where the client is observed
    /// only; a 5xx is one wherever it is seen, and other protocols keep their decoder's
    /// verdict.
    #[test]
    fn a_4xx_is_an_error_at_the_client_only() {
        let (web, api) = (pod("web-1", "web"), pod("api-1", "api"));
        let at = |obs: &Arc<PodMeta>, protocol, status: i64| {
            let mut tx = super::tests::http_tx("GET", "/", status, 1);
            tx.protocol = protocol;
            tx.pods = Some(Arc::new(FlowPods {
                obs: Some(obs.clone()),
                client: Peer::Pod(web.clone()),
                server: Peer::Pod(api.clone()),
                selected: true,
                ..Default::default()
            }));
            settle_error(&mut tx);
            tx.error.map(|e| e.to_string())
        };
        for p in [Protocol::Http, Protocol::Http2] {
            assert_eq!(at(&web, p, 404).as_deref(), Some("404"));
            assert_eq!(at(&web, p, 499).as_deref(), Some("499"));
            assert_eq!(at(&api, p, 404), None);
            assert_eq!(at(&web, p, 399), None);
            assert_eq!(at(&web, p, 200), None);
            assert_eq!(at(&api, p, 503).as_deref(), Some("503"));
            assert_eq!(at(&web, p, 503).as_deref(), Some("503"));
        }
        // gRPC's status is its own code (5 = NOT_FOUND), not an HTTP one.
        assert_eq!(at(&web, Protocol::Grpc, 404), None);
        let mut unattributed = super::tests::http_tx("GET", "/", 404, 1);
        settle_error(&mut unattributed);
        assert_eq!(
            unattributed.error, None,
            "no attribution: the server's side"
        );
    }

    /// Metrics name both ends' pods, from the worker's own copies of the label strings
    /// (never the metadata's shared ones, whose reference counts every worker would bump).
    #[test]
    fn transaction_series_carry_both_pods_from_worker_local_strings() {
        let mut web = (*pod("web-1", "web")).clone();
        let mut api = (*pod("api-1", "api")).clone();
        web.namespace = Some("shop".into());
        api.namespace = Some("shop".into());
        web.compute_attrs(&[]);
        api.compute_attrs(&[]);
        let (web, api) = (Arc::new(web), Arc::new(api));
        let mut s = WorkerStats::new(
            HistogramSpec::Explicit(Arc::from(histogram::DEFAULT_BOUNDS)),
            100,
        );
        let mut tx = super::tests::http_tx("GET", "/", 200, 5);
        tx.pods = Some(Arc::new(FlowPods {
            obs: Some(api.clone()),
            client: Peer::Pod(web.clone()),
            server: Peer::Pod(api.clone()),
            selected: true,
            ..Default::default()
        }));
        s.transaction(&tx);
        s.transaction(&tx);
        let d = s.take_delta();
        let series = d.sorted();
        assert_eq!(series.len(), 1);
        let (k, v) = series[0];
        assert_eq!(v.count(), 2);
        let get = |n: &str| {
            k.attrs
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, v)| v.clone())
        };
        for (key, want, shared) in [
            ("client.k8s.pod.name", "web-1", &web.metric_labels[1]),
            ("client.service.name", "web", &web.metric_labels[2]),
            ("server.k8s.pod.name", "api-1", &api.metric_labels[1]),
            ("server.k8s.namespace.name", "shop", &api.metric_labels[0]),
        ] {
            let Some(Val::Shared(v)) = get(key) else {
                panic!("{key} in {:?}", k.attrs)
            };
            assert_eq!(&*v, want);
            let shared = shared.as_ref().unwrap();
            assert!(!Arc::ptr_eq(&v, shared), "{key}: a worker-local copy");
        }
    }
}

#[cfg(test)]
mod capture_tests {
    use super::*;

    /// Capture counters are totals: each call records their growth, per worker and per
    /// attached interface; an interface not attached is not recorded.
    #[test]
    fn capture_totals_are_recorded_as_growth() {
        let mut s = WorkerStats::new(
            HistogramSpec::Explicit(Arc::from(histogram::DEFAULT_BOUNDS)),
            100,
        );
        let attached: Vec<(u32, Arc<str>)> = vec![(5, Arc::from("veth5"))];
        let ifaces = |f5, f6| {
            [
                IfaceCount {
                    ifindex: 5,
                    frames: f5,
                    bytes: f5 * 100,
                },
                IfaceCount {
                    ifindex: 6,
                    frames: f6,
                    bytes: f6 * 100,
                },
            ]
        };
        for (packets, kernel, f5, f6) in [(10, 0, 4, 6), (25, 3, 9, 16), (25, 3, 9, 16)] {
            let i = ifaces(f5, f6);
            let t = CaptureTotals {
                packets,
                bytes: packets * 100,
                kernel_drops: kernel,
                ring_full: 0,
                interfaces: &i,
            };
            s.capture(1, &t, &attached);
        }
        let d = s.take_delta();
        let [packets, bytes, kernel, ring] = worker_series(1);
        assert_eq!(d.get(packets.0, &packets.1).unwrap().count(), 25);
        assert_eq!(d.get(bytes.0, &bytes.1).unwrap().count(), 2500);
        assert_eq!(d.get(kernel.0, &kernel.1).unwrap().count(), 3);
        assert!(d.get(ring.0, &ring.1).is_none(), "nothing grew");
        let [ip, ib] = interface_series(&attached[0].1);
        assert_eq!(d.get(ip.0, &ip.1).unwrap().count(), 9);
        assert_eq!(d.get(ib.0, &ib.1).unwrap().count(), 900);
        assert_eq!(d.len(), 5, "ifindex 6 is not attached: not recorded");
    }
}
