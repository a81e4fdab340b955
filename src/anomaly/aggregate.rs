//! The aggregate kinds, found by the exporter from the statistics deltas the workers hand
//! it every second: DNS error bursts per client pod, HTTP/gRPC server-error bursts and
//! latency breaches per endpoint, capture drops per worker. The workers do nothing for
//! them beyond recording metrics, and one endpoint's requests spread over every worker
//! are counted together here.
//!
//! Burst windows slide a second at a time (`burst_window_secs`); a burst is reported once
//! while it lasts: it ends when the window holds fewer errors than the threshold.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use compact_str::CompactString;

use super::{AnomalyConfig, Hub, Kind, Signal, Subject, evidence};
use crate::k8s::{FlowPods, Peer, PodMeta};
use crate::proto::{AttrValue, Endpoint, Protocol};
use crate::stats::{Metric, SeriesKey, Store, Val, Value};
use crate::time::Timestamp;

/// One burst counter: errors per second over the last `burst_window_secs` (a ring, the
/// window slides a second at a time), their sum, and whether the burst was reported.
struct Burst {
    slots: Box<[u64]>,
    head: usize,
    count: u64,
    in_burst: bool,
    /// The pod's monitoring policy's threshold, if it sets one, as of snapshot
    /// generation `policy_generation` (0: not looked up yet).
    threshold: Option<u64>,
    policy_generation: u64,
}

impl Burst {
    fn new(window_secs: u64) -> Burst {
        Burst {
            slots: vec![0; window_secs.max(1) as usize].into_boxed_slice(),
            head: 0,
            count: 0,
            in_burst: false,
            threshold: None,
            policy_generation: 0,
        }
    }

    fn add(&mut self, n: u64) {
        self.slots[self.head] += n;
        self.count += n;
    }

    /// `secs` seconds passed: the oldest leave the window.
    fn advance(&mut self, secs: u64) {
        for _ in 0..secs.min(self.slots.len() as u64) {
            self.head = (self.head + 1) % self.slots.len();
            self.count -= self.slots[self.head];
            self.slots[self.head] = 0;
        }
    }
}

/// One endpoint's latency: seconds in a row its p99 was above the threshold.
#[derive(Default)]
struct Slow {
    total: u64,
    above: u64,
    streak: u64,
    reported: bool,
}

/// What an aggregate event names: the endpoint or pod, as far as the series says.
#[derive(Clone)]
struct Subject0 {
    protocol: Protocol,
    operation: CompactString,
    resource: CompactString,
    server: Endpoint,
    pods: Option<Arc<FlowPods>>,
}

pub struct Detector {
    hub: Arc<Hub>,
    dns_burst: u64,
    http_burst: u64,
    window_secs: u64,
    latency_s: f64,
    breach_secs: u64,
    min_requests: u64,
    max_keys: usize,
    second_start: Instant,
    dns: HashMap<Vec<(&'static str, Val)>, (Burst, Subject0)>,
    http: HashMap<Vec<(&'static str, Val)>, (Burst, Subject0)>,
    slow: HashMap<Vec<(&'static str, Val)>, (Slow, Subject0)>,
    /// Keys forgotten because a table was full.
    pub forgotten: u64,
    /// Where pods' monitoring policies are found (their burst thresholds).
    policies: Option<crate::k8s::Attributor>,
}

/// Attributes that tell one call's outcome, not its endpoint.
const OUTCOME: &[&str] = &[
    "error.type",
    "http.response.status_code",
    "rpc.grpc.status_code",
    "dns.question.name",
    "dns.question.type",
];

fn text(v: &Val) -> CompactString {
    match v {
        Val::Str(s) => s.clone(),
        other => CompactString::from(other.to_string()),
    }
}

impl Detector {
    pub fn new(cfg: &AnomalyConfig, hub: Arc<Hub>) -> Detector {
        let now = Instant::now();
        Detector {
            hub,
            dns_burst: cfg.dns_error_burst,
            http_burst: cfg.http_error_burst,
            window_secs: cfg.burst_window_secs,
            latency_s: cfg.latency_p99_ms as f64 / 1000.0,
            breach_secs: cfg.latency_breach_secs,
            min_requests: cfg.latency_min_requests,
            max_keys: cfg.max_tracked,
            second_start: now,
            dns: HashMap::new(),
            http: HashMap::new(),
            slow: HashMap::new(),
            forgotten: 0,
            policies: None,
        }
    }

    /// Let pods' monitoring policies set their burst thresholds: DNS bursts the client
    /// pod's `dnsErrorBurst`, HTTP bursts the server pod's `httpErrorBurst`.
    pub fn with_policies(&mut self, attr: crate::k8s::Attributor) {
        self.policies = Some(attr);
    }

    /// Look up the policy thresholds of the bursts whose pods' snapshot is older than
    /// the current one (once per key and snapshot, not per pass).
    fn policy_thresholds(&mut self) {
        let Some(a) = &self.policies else { return };
        let generation = a.generation();
        let mut snap = None;
        for (table, dns) in [(&mut self.dns, true), (&mut self.http, false)] {
            for (b, subj) in table.values_mut() {
                if b.policy_generation == generation {
                    continue;
                }
                let snap = snap.get_or_insert_with(|| a.snapshot());
                b.policy_generation = generation;
                b.threshold = subj.pods.as_ref().and_then(|p| {
                    let m = if dns { &p.client } else { &p.server }.pod()?;
                    let key = format!("{}/{}", m.namespace.as_deref()?, m.name.as_deref()?);
                    let o = &snap.pod_named(&key)?.policy.as_ref()?.anomalies;
                    if dns {
                        o.dns_error_burst
                    } else {
                        o.http_error_burst
                    }
                });
            }
        }
    }

    /// Count what one worker delta holds.
    pub fn observe(&mut self, d: &Store) {
        for (k, v) in d.iter() {
            let Value::Histogram(h) = v else { continue };
            match k.metric {
                Metric::DnsLookupDuration => {
                    let bad = k.attrs.iter().any(|(n, v)| {
                        *n == "error.type"
                            && matches!(v, Val::Str(s) if s == "NXDOMAIN" || s == "SERVFAIL")
                    });
                    if bad {
                        let (key, subj) = self.subject(k, true);
                        let w = self.window_secs;
                        let e = bounded(&mut self.dns, self.max_keys, &mut self.forgotten);
                        e.entry(key)
                            .or_insert_with(|| (Burst::new(w), subj))
                            .0
                            .add(h.count);
                    }
                }
                Metric::HttpServerDuration
                | Metric::HttpClientDuration
                | Metric::RpcServerDuration
                | Metric::RpcClientDuration => {
                    let rpc = matches!(
                        k.metric,
                        Metric::RpcServerDuration | Metric::RpcClientDuration
                    );
                    let (key, subj) = self.subject(k, false);
                    if server_error(k, rpc) {
                        let w = self.window_secs;
                        let e = bounded(&mut self.http, self.max_keys, &mut self.forgotten);
                        e.entry(key.clone())
                            .or_insert_with(|| (Burst::new(w), subj.clone()))
                            .0
                            .add(h.count);
                    }
                    if self.latency_s > 0.0 {
                        let above = count_above(h, self.latency_s);
                        let e = bounded(&mut self.slow, self.max_keys, &mut self.forgotten);
                        let s = &mut e.entry(key).or_insert_with(|| (Slow::default(), subj)).0;
                        s.total += h.count;
                        s.above += above;
                    }
                }
                _ => {}
            }
        }
    }

    /// Capture drops reported in a delta: one finding per interface and reason that grew.
    pub fn drops(&mut self, d: &Store) {
        for (k, v) in d.iter() {
            let (Metric::CaptureDrops, Value::Counter(n)) = (k.metric, v) else {
                continue;
            };
            if *n == 0 {
                continue;
            }
            let get = |name: &str| k.attrs.iter().find(|(a, _)| *a == name).map(|(_, v)| v);
            let reason = match get("podtap.drop.reason") {
                Some(Val::Str(r)) if r == "kernel" => "kernel",
                _ => "ring_full",
            };
            let worker = get("podtap.worker").map(text).unwrap_or_default();
            let mut s = aggregate_signal(Kind::CaptureDrops, None);
            s.subject = Subject::Interface {
                name: CompactString::from(format!("worker {worker}")),
                reason,
            };
            s.evidence = evidence(&[("dropped", *n)]);
            self.hub.push(s);
        }
    }

    /// Once per pass of the exporter: close seconds (sliding the burst windows), report
    /// what crossed a threshold.
    pub fn tick(&mut self, now: Instant) {
        self.policy_thresholds();
        let secs = now.duration_since(self.second_start).as_secs();
        if secs >= 1 {
            self.second_start += std::time::Duration::from_secs(secs);
            self.latency_second();
            for (table, threshold) in [
                (&mut self.dns, self.dns_burst),
                (&mut self.http, self.http_burst),
            ] {
                table.retain(|_, (b, _)| {
                    b.advance(secs);
                    // A burst ends when the window holds fewer errors than the threshold.
                    b.in_burst &= b.count >= b.threshold.unwrap_or(threshold);
                    // A quiet key is forgotten: the tables hold what is active.
                    b.count > 0 || b.in_burst
                });
            }
        }
        // Bursts are checked on every pass: one is reported as soon as it crosses.
        for (table, kind, threshold) in [
            (&mut self.dns, Kind::DnsErrorBurst, self.dns_burst),
            (&mut self.http, Kind::HttpErrorBurst, self.http_burst),
        ] {
            for (b, subj) in table.values_mut() {
                if b.count >= b.threshold.unwrap_or(threshold) && !b.in_burst {
                    b.in_burst = true;
                    let mut s = aggregate_signal(kind, Some(subj));
                    s.evidence =
                        evidence(&[("errors", b.count), ("window_secs", self.window_secs)]);
                    self.hub.push(s);
                }
            }
        }
    }

    /// One second of latency: extend or break each endpoint's streak.
    fn latency_second(&mut self) {
        for (s, subj) in self.slow.values_mut() {
            // p99 above the threshold: more than 1% of the second's requests were slower.
            let breached = s.total >= self.min_requests && s.above * 100 > s.total;
            if breached {
                s.streak += 1;
                if s.streak >= self.breach_secs && !s.reported {
                    s.reported = true;
                    let mut sig = aggregate_signal(Kind::LatencyBreach, Some(subj));
                    sig.evidence = evidence(&[
                        ("breach_secs", s.streak),
                        ("slow_requests", s.above),
                        ("requests", s.total),
                    ]);
                    self.hub.push(sig);
                }
            } else {
                s.streak = 0;
                s.reported = false;
            }
            s.total = 0;
            s.above = 0;
        }
        self.slow.retain(|_, (s, _)| s.streak > 0);
    }

    /// The key (endpoint or pod attributes) and the subject of series `k`.
    fn subject(&self, k: &SeriesKey, per_client: bool) -> (Vec<(&'static str, Val)>, Subject0) {
        // The protocol whose telemetry mapping records this metric (the first, for a
        // metric several share: HTTP/1 and HTTP/2 are both `http.server.request.duration`).
        let protocol = Protocol::ALL
            .iter()
            .copied()
            .find(|p| {
                crate::proto::telemetry(*p)
                    .and_then(|t| t.duration)
                    .is_some_and(|m| m.contains(&k.metric))
            })
            .unwrap_or(Protocol::Unknown);
        let key: Vec<_> = k
            .attrs
            .iter()
            .filter(|(n, _)| !OUTCOME.contains(n))
            .filter(|(n, _)| !per_client || !n.starts_with("server.k8s"))
            .cloned()
            .collect();
        let get = |name: &str| k.attrs.iter().find(|(a, _)| *a == name).map(|(_, v)| v);
        let server = Endpoint {
            addr: match get("server.address") {
                Some(Val::Ip(a)) => *a,
                _ => std::net::IpAddr::from([0, 0, 0, 0]),
            },
            port: match get("server.port") {
                Some(Val::Int(p)) => *p as u16,
                _ => 0,
            },
        };
        let operation = ["http.request.method", "rpc.method"]
            .iter()
            .find_map(|n| get(n))
            .map(text)
            .unwrap_or_default();
        let resource = ["http.route", "rpc.service"]
            .iter()
            .find_map(|n| get(n))
            .map(text)
            .unwrap_or_default();
        let pod = |side: usize| {
            let [ns, name, _] = crate::k8s::METRIC_LABELS[side];
            let (ns, name) = (get(ns).map(text), get(name).map(text));
            name.map(|n| {
                let mut m = PodMeta {
                    name: Some(n.clone()),
                    namespace: ns.clone(),
                    ..Default::default()
                };
                m.attrs.push(("k8s.pod.name".into(), AttrValue::Str(n)));
                if let Some(ns) = ns {
                    m.attrs
                        .push(("k8s.namespace.name".into(), AttrValue::Str(ns)));
                }
                Peer::Pod(Arc::new(m))
            })
        };
        let (client, server_pod) = (pod(0), pod(1));
        let pods = (client.is_some() || server_pod.is_some()).then(|| {
            Arc::new(FlowPods {
                generation: 0,
                obs: None,
                client: client.unwrap_or_default(),
                server: if per_client {
                    Peer::Unknown
                } else {
                    server_pod.unwrap_or_default()
                },
                selected: true,
                ..Default::default()
            })
        });
        (
            key,
            Subject0 {
                protocol,
                operation,
                resource,
                server,
                pods,
            },
        )
    }
}

/// `table`, cleared first when it is full (counted): the tables stay bounded.
fn bounded<'a, K, V>(
    table: &'a mut HashMap<K, V>,
    max: usize,
    forgotten: &mut u64,
) -> &'a mut HashMap<K, V> {
    if table.len() >= max {
        *forgotten += table.len() as u64;
        tracing::warn!(
            keys = table.len(),
            total = *forgotten,
            "anomaly detector table full: its bursts and streaks forgotten (anomalies.max_tracked)"
        );
        table.clear();
    }
    table
}

/// Is series `k` a server error: an HTTP 5xx, or a gRPC status the server is to blame for?
fn server_error(k: &SeriesKey, rpc: bool) -> bool {
    k.attrs.iter().any(|(n, v)| match (*n, v) {
        ("http.response.status_code", Val::Int(c)) => (500..=599).contains(c),
        // gRPC: UNKNOWN, DEADLINE_EXCEEDED, UNIMPLEMENTED, INTERNAL, UNAVAILABLE, DATA_LOSS.
        ("rpc.grpc.status_code", Val::Int(c)) if rpc => matches!(c, 2 | 4 | 12 | 13 | 14 | 15),
        _ => false,
    })
}

/// Observations in `h` above `threshold` seconds, counted from the first bucket bound at
/// or above it (so never more than there were).
fn count_above(h: &crate::stats::Histogram, threshold: f64) -> u64 {
    if h.max <= threshold {
        return 0;
    }
    // Explicit buckets (the default) are read in place: this runs per series per delta.
    if let crate::stats::histogram::Buckets::Explicit { bounds, counts } = &h.buckets {
        return match bounds.iter().position(|b| *b >= threshold) {
            Some(i) => counts[i + 1..].iter().sum(),
            None => 0,
        };
    }
    let below = h
        .cumulative_buckets()
        .into_iter()
        .find(|(bound, _)| *bound >= threshold)
        .map_or(h.count, |(_, c)| c);
    h.count - below.min(h.count)
}

fn aggregate_signal(kind: Kind, subj: Option<&Subject0>) -> Signal {
    let zero = Endpoint {
        addr: std::net::IpAddr::from([0, 0, 0, 0]),
        port: 0,
    };
    let mut s = Signal {
        kind,
        ts: Timestamp::now(),
        obs: 0,
        ip_proto: 0,
        client: zero,
        server: zero,
        pods: None,
        side: None,
        evidence: evidence(&[]),
        subject: Subject::Flow,
    };
    if let Some(x) = subj {
        s.server = x.server;
        s.pods = x.pods.clone();
        s.subject = Subject::Request {
            protocol: x.protocol,
            operation: x.operation.clone(),
            resource: x.resource.clone(),
        };
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{HistogramSpec, histogram};

    fn store() -> Store {
        Store::new(
            HistogramSpec::Explicit(Arc::from(histogram::DEFAULT_BOUNDS)),
            1000,
        )
    }

    fn http(d: &mut Store, status: i64, secs: f64, n: usize) {
        let a = vec![
            ("http.request.method", Val::Str("GET".into())),
            ("http.route", Val::Str("/fail".into())),
            ("http.response.status_code", Val::Int(status)),
            ("server.address", Val::Ip("10.0.0.2".parse().unwrap())),
            ("server.port", Val::Int(80)),
        ];
        for _ in 0..n {
            d.observe(Metric::HttpServerDuration, &a, secs);
        }
    }

    #[test]
    fn a_5xx_burst_is_one_event_while_it_lasts() {
        let hub = Hub::new(16);
        let cfg = AnomalyConfig::default();
        let mut det = Detector::new(&cfg, hub.clone());
        let t0 = Instant::now();
        for i in 0..5u64 {
            let mut d = store();
            http(&mut d, 500, 0.001, 10);
            http(&mut d, 200, 0.001, 100);
            det.observe(&d);
            det.tick(t0 + std::time::Duration::from_secs(i * 3));
        }
        let s = hub.pop().expect("one burst");
        assert_eq!(s.kind, Kind::HttpErrorBurst);
        assert_eq!(s.evidence[0], ("errors", 20));
        assert!(
            matches!(&s.subject, Subject::Request { resource, .. } if resource == "/fail"),
            "{:?}",
            s.subject
        );
        assert!(hub.pop().is_none(), "one event per burst");
        // 15 errors, then 15 more 6 s later: one burst in a sliding 10 s window.
        let mut det = Detector::new(&cfg, hub.clone());
        for (i, at) in [0u64, 6].into_iter().enumerate() {
            let mut d = store();
            http(&mut d, 503, 0.001, 15);
            det.observe(&d);
            det.tick(t0 + std::time::Duration::from_secs(at));
            assert_eq!(hub.pop().is_some(), i == 1);
        }
        // 15, then 15 eleven seconds later: the first left the window.
        let mut det = Detector::new(&cfg, hub.clone());
        for at in [0u64, 11] {
            let mut d = store();
            http(&mut d, 503, 0.001, 15);
            det.tick(t0 + std::time::Duration::from_secs(at));
            det.observe(&d);
            det.tick(t0 + std::time::Duration::from_secs(at));
        }
        assert!(hub.pop().is_none());
    }

    /// The server pod's monitoring policy lowers its HTTP burst threshold; another
    /// pod keeps `[anomalies]`'s.
    #[test]
    fn a_pods_policy_sets_its_burst_threshold() {
        use crate::k8s::policy::PolicySet;
        use crate::k8s::policy::testing::{pod, policy};
        let api = policy(
            "api",
            serde_json::json!({"selector": {"matchLabels": {"app": "api"}},
                               "anomalies": {"httpErrorBurst": 5}}),
        );
        let attribution = crate::k8s::Attribution::with_inputs(crate::k8s::Inputs {
            kube: Some(crate::k8s::KubeObjects {
                pods: vec![
                    pod("api-0", "api", "10.0.0.2"),
                    pod("web-0", "web", "10.0.0.3"),
                ],
                ..Default::default()
            }),
            policies: Some(Arc::new(PolicySet::new(vec![api]))),
            ..Default::default()
        });
        let hub = Hub::new(16);
        let mut det = Detector::new(&AnomalyConfig::default(), hub.clone());
        det.with_policies(attribution.attributor());
        let t0 = Instant::now();
        for server in ["api-0", "web-0"] {
            let mut d = store();
            let a = vec![
                ("http.response.status_code", Val::Int(500)),
                ("server.k8s.namespace.name", Val::Str("shop".into())),
                ("server.k8s.pod.name", Val::Str(server.into())),
            ];
            for _ in 0..6 {
                d.observe(Metric::HttpServerDuration, &a, 0.001);
            }
            det.observe(&d);
        }
        det.tick(t0);
        let s = hub.pop().expect("the api pod's burst");
        let server = s.pods.as_ref().unwrap().server.pod().unwrap().name.clone();
        assert_eq!(server.as_deref(), Some("api-0"));
        assert_eq!(s.evidence[0], ("errors", 6));
        assert!(
            hub.pop().is_none(),
            "web-0 keeps the default threshold of 20"
        );
    }

    #[test]
    fn capture_drops_are_one_finding_per_worker_and_reason_that_grew() {
        let hub = Hub::new(16);
        let mut det = Detector::new(&AnomalyConfig::default(), hub.clone());
        let mut d = store();
        for (w, reason, n) in [(0, "kernel", 7), (1, "ring_full", 0), (1, "kernel", 2)] {
            let a = vec![
                ("podtap.drop.reason", Val::Str(reason.into())),
                ("podtap.worker", Val::Int(w)),
            ];
            d.add(Metric::CaptureDrops, &a, n);
        }
        det.drops(&d);
        let mut got: Vec<_> = std::iter::from_fn(|| hub.pop())
            .map(|s| match s.subject {
                Subject::Interface { name, reason } => (name.to_string(), reason, s.evidence[0].1),
                other => panic!("{other:?}"),
            })
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("worker 0".to_string(), "kernel", 7),
                ("worker 1".to_string(), "kernel", 2)
            ]
        );
    }

    #[test]
    fn a_p99_above_the_threshold_for_n_seconds_is_a_latency_breach() {
        let hub = Hub::new(16);
        let cfg = AnomalyConfig {
            latency_p99_ms: 100,
            latency_breach_secs: 3,
            ..Default::default()
        };
        let mut det = Detector::new(&cfg, hub.clone());
        let t0 = Instant::now();
        for i in 1..=6u64 {
            let mut d = store();
            http(&mut d, 200, 0.5, 5);
            http(&mut d, 200, 0.01, 95);
            det.observe(&d);
            det.tick(t0 + std::time::Duration::from_millis(i * 1001));
        }
        let s = hub.pop().expect("a breach");
        assert_eq!(s.kind, Kind::LatencyBreach);
        assert_eq!(s.evidence[0], ("breach_secs", 3));
        assert!(hub.pop().is_none());
        // Fast traffic: nothing.
        let mut det = Detector::new(&cfg, hub.clone());
        for i in 1..=6u64 {
            let mut d = store();
            http(&mut d, 200, 0.01, 100);
            det.observe(&d);
            det.tick(t0 + std::time::Duration::from_millis(i * 1001));
        }
        assert!(hub.pop().is_none());
    }
}
