//! Monitoring policies: the `PodtapPolicy` custom resource (`podtap.io/v1alpha1`, CRD in
//! `deploy/kubernetes/podtappolicy-crd.yaml`, docs/POLICIES.md).
//!
//! A policy selects pods of its own namespace by labels and says, for those pods: which
//! label keys to carry onto records and metrics (`podLabels`), which health checks to run
//! against each pod's address (`healthChecks`), which metric families to produce and at
//! which granularity (`metrics`), and anomaly thresholds that override `[anomalies]`
//! (`anomalies`).
//!
//! This module is pure: parsing and validating a policy object ([`Policy::from_object`]),
//! and combining the policies that match one pod into a [`PodPolicy`]
//! ([`PolicySet::for_pod`]). The snapshot builder calls it off the packet path; the
//! watch and the status patches are in [`super::policy_watch`].
//!
//! Combining, for a pod matched by several policies: the union of label keys, health
//! checks (one check per type/port/path; the shortest period and lowest failure
//! threshold when two policies name the same one) and metric families (`flow`
//! granularity wins over `pod`; a policy without `metrics` means every family). For
//! each anomaly threshold the most sensitive value wins: the lowest count, timeout or
//! stall time, and the longest retransmission window.

use compact_str::CompactString;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::selector::{LabelSelector, Requirement};
use crate::anomaly::FlowThresholds;
use crate::stats::Metric;

pub const GROUP: &str = "podtap.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "PodtapPolicy";
pub const PLURAL: &str = "podtappolicies";

/// Health checks one policy may name: each becomes a probe target per matched pod, and
/// `[probes] max_targets` bounds them all.
pub const MAX_CHECKS: usize = 8;
/// Label keys one policy may carry onto metrics: each is a label on every series of the
/// pod, so they multiply series.
pub const MAX_POD_LABELS: usize = 16;

/// The watched object. The spec stays JSON until [`Policy::from_object`] reads it: a
/// policy the API server accepted but podtap cannot read (an older podtap, a schema
/// bypassed) is reported in its status, and never fails the watch of the others.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
pub struct PodtapPolicy {
    #[serde(default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

impl kube::Resource for PodtapPolicy {
    type DynamicType = ();
    type Scope = kube::core::NamespaceResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        KIND.into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        GROUP.into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        VERSION.into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        PLURAL.into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// `spec`, as written (camelCase, as the CRD's schema).
/// Unknown fields are refused (`InvalidSpec`): the API server prunes what the CRD does
/// not declare, so one here is a CRD newer than this podtap, and a field silently
/// ignored would be a policy silently not applied.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct PolicySpec {
    selector: KubeSelector,
    pod_labels: Vec<String>,
    health_checks: Vec<CheckSpec>,
    metrics: Option<Vec<MetricSpec>>,
    anomalies: AnomalyOverrides,
}

/// A Kubernetes `LabelSelector` (`matchLabels`, `matchExpressions`).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct KubeSelector {
    match_labels: BTreeMap<String, String>,
    match_expressions: Vec<Requirement>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CheckSpec {
    #[serde(rename = "type")]
    kind: CheckKind,
    #[serde(default)]
    port: Option<u32>,
    #[serde(default)]
    path: Option<String>,
    #[serde(default)]
    period_seconds: Option<u64>,
    #[serde(default)]
    timeout_seconds: Option<u64>,
    #[serde(default)]
    failure_threshold: Option<u32>,
}

#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricSpec {
    family: Family,
    #[serde(default)]
    granularity: Granularity,
}

/// How a pod is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// ICMP echo to the pod's address.
    Ping,
    /// TCP connect to the pod's address and `port`.
    Tcp,
    /// HTTP GET of `http://<pod address>:<port><path>`; 2xx and 3xx succeed.
    Http,
}

/// One health check, as a policy names it (validated).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheck {
    pub kind: CheckKind,
    /// 0 for `ping`.
    pub port: u16,
    /// `http` only; empty otherwise.
    pub path: String,
    pub period_secs: u64,
    /// None: `[probes] timeout_ms`, capped at the period.
    pub timeout_secs: Option<u64>,
    pub failure_threshold: u32,
}

impl HealthCheck {
    fn same_target(&self, o: &HealthCheck) -> bool {
        (self.kind, self.port, &self.path) == (o.kind, o.port, &o.path)
    }

    /// `ping`, `tcp:8080`, `http:8080/healthz`: names the check in probe metrics.
    pub fn label(&self) -> String {
        match self.kind {
            CheckKind::Ping => "ping".into(),
            CheckKind::Tcp => format!("tcp:{}", self.port),
            CheckKind::Http => format!("http:{}{}", self.port, self.path),
        }
    }

    /// The probe's address for a pod at `ip`: an IP (`ping`), `ip:port` (`tcp`), a URL
    /// (`http`).
    pub fn address(&self, ip: IpAddr) -> String {
        let sock = std::net::SocketAddr::new(ip, self.port);
        match self.kind {
            CheckKind::Ping => ip.to_string(),
            CheckKind::Tcp => sock.to_string(),
            CheckKind::Http => format!("http://{sock}{}", self.path),
        }
    }
}

/// A metric family a policy can turn on or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    /// `http.server.request.duration`, `http.client.request.duration`.
    Http,
    /// `rpc.server.call.duration`, `rpc.client.call.duration`.
    Rpc,
    /// `db.client.operation.duration`.
    Db,
    /// `dns.lookup.duration`.
    Dns,
    /// `messaging.client.*`.
    Messaging,
    /// `podtap.tcp.*`: handshake, RTT, retransmissions, resets, zero windows, opened
    /// and closed connections.
    Tcp,
    /// `podtap.flow.io`, `podtap.flow.packets`.
    Flow,
}

impl Family {
    pub const ALL: [Family; 7] = [
        Family::Http,
        Family::Rpc,
        Family::Db,
        Family::Dns,
        Family::Messaging,
        Family::Tcp,
        Family::Flow,
    ];

    /// The family of a metric; None for node-level metrics (capture, events, anomalies,
    /// probes), which policies do not restrict.
    pub fn of(m: Metric) -> Option<Family> {
        use Metric::*;
        Some(match m {
            HttpServerDuration | HttpClientDuration => Family::Http,
            RpcServerDuration | RpcClientDuration => Family::Rpc,
            DbClientDuration => Family::Db,
            DnsLookupDuration => Family::Dns,
            MessagingClientDuration | MessagingSentMessages | MessagingConsumedMessages => {
                Family::Messaging
            }
            TcpHandshake | TcpRtt | TcpRetransmissions | TcpResets | TcpZeroWindows | TcpOpened
            | TcpClosed => Family::Tcp,
            FlowIo | FlowPackets => Family::Flow,
            _ => return None,
        })
    }
}

/// How much of a series' edge a metric keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Granularity {
    /// One series per pod: the observed pod's labels, without the peer's pod, addresses
    /// or ports.
    Pod,
    /// One series per call edge: both ends and the server's address and port (what
    /// podtap produces without policies).
    #[default]
    Flow,
}

/// Which families a pod's metrics keep, and at which granularity (None: not produced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Families([Option<Granularity>; 7]);

impl Families {
    pub fn get(&self, f: Family) -> Option<Granularity> {
        self.0[f as usize]
    }

    fn set(&mut self, f: Family, g: Granularity) {
        let slot = &mut self.0[f as usize];
        *slot = (*slot).max(Some(g));
    }

    fn union(&mut self, o: &Families) {
        for f in Family::ALL {
            if let Some(g) = o.get(f) {
                self.set(f, g);
            }
        }
    }
}

/// `spec.anomalies`: thresholds overriding `[anomalies]` for the policy's pods. The
/// flow kinds are applied where the pod's flows are analysed, the bursts where the
/// exporter counts the pod's (DNS: the client's; HTTP: the server's) errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct AnomalyOverrides {
    pub syn_timeout_ms: Option<u64>,
    pub retransmit_burst: Option<u32>,
    pub retransmit_window_ms: Option<u64>,
    pub zero_window_stall_ms: Option<u64>,
    pub dns_error_burst: Option<u64>,
    pub http_error_burst: Option<u64>,
}

impl AnomalyOverrides {
    pub fn is_empty(&self) -> bool {
        *self == AnomalyOverrides::default()
    }

    /// The most sensitive of both, field by field: lower counts and times, a longer
    /// retransmission window (more retransmissions fit in it).
    pub fn most_sensitive(&self, o: &AnomalyOverrides) -> AnomalyOverrides {
        fn pick<T: Ord + Copy>(a: Option<T>, b: Option<T>, f: fn(T, T) -> T) -> Option<T> {
            match (a, b) {
                (Some(a), Some(b)) => Some(f(a, b)),
                (a, b) => a.or(b),
            }
        }
        AnomalyOverrides {
            syn_timeout_ms: pick(self.syn_timeout_ms, o.syn_timeout_ms, u64::min),
            retransmit_burst: pick(self.retransmit_burst, o.retransmit_burst, u32::min),
            retransmit_window_ms: pick(self.retransmit_window_ms, o.retransmit_window_ms, u64::max),
            zero_window_stall_ms: pick(self.zero_window_stall_ms, o.zero_window_stall_ms, u64::min),
            dns_error_burst: pick(self.dns_error_burst, o.dns_error_burst, u64::min),
            http_error_burst: pick(self.http_error_burst, o.http_error_burst, u64::min),
        }
    }

    /// `base` (from `[anomalies]`) with these overrides.
    #[inline]
    pub fn apply(&self, base: &FlowThresholds) -> FlowThresholds {
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        FlowThresholds {
            syn_timeout_ns: self.syn_timeout_ms.map_or(base.syn_timeout_ns, ns),
            retransmit_burst: self.retransmit_burst.unwrap_or(base.retransmit_burst),
            retransmit_window_ns: self
                .retransmit_window_ms
                .map_or(base.retransmit_window_ns, ns),
            zero_window_stall_ns: self
                .zero_window_stall_ms
                .map_or(base.zero_window_stall_ns, ns),
        }
    }

    fn validate(&self) -> Result<(), String> {
        let all = [
            ("synTimeoutMs", self.syn_timeout_ms),
            ("retransmitBurst", self.retransmit_burst.map(u64::from)),
            ("retransmitWindowMs", self.retransmit_window_ms),
            ("zeroWindowStallMs", self.zero_window_stall_ms),
            ("dnsErrorBurst", self.dns_error_burst),
            ("httpErrorBurst", self.http_error_burst),
        ];
        for (k, v) in all {
            if v == Some(0) {
                return Err(format!("anomalies.{k} must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Why a policy is not applied: the `reason` of its `Ready=False` condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// `InvalidSelector` or `InvalidSpec`.
    pub reason: &'static str,
    pub message: String,
}

/// What a valid policy says.
#[derive(Clone, Debug, Default)]
pub struct Rules {
    pub selector: LabelSelector,
    pub label_keys: Vec<String>,
    pub checks: Vec<HealthCheck>,
    /// None: every family, at flow granularity.
    pub families: Option<Families>,
    pub anomalies: AnomalyOverrides,
}

/// One policy object, read and validated.
#[derive(Clone, Debug)]
pub struct Policy {
    pub namespace: CompactString,
    pub name: CompactString,
    pub generation: Option<i64>,
    pub rules: Result<Rules, Invalid>,
}

impl Policy {
    /// Read a watched object. Never fails: what is wrong with it is in `rules`.
    pub fn from_object(obj: &PodtapPolicy) -> Policy {
        let m = &obj.metadata;
        Policy {
            namespace: m.namespace.as_deref().unwrap_or("default").into(),
            name: m.name.as_deref().unwrap_or("").into(),
            generation: m.generation,
            rules: rules(&obj.spec),
        }
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn is_valid(&self) -> bool {
        self.rules.is_ok()
    }

    /// Does it apply to a pod of `namespace` with `labels`? (Invalid policies apply to
    /// nothing.)
    pub fn matches<'a, I>(&self, namespace: Option<&str>, labels: I) -> bool
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        match &self.rules {
            Ok(r) => namespace == Some(self.namespace.as_str()) && r.selector.matches(labels),
            Err(_) => false,
        }
    }
}

fn invalid(reason: &'static str, message: String) -> Invalid {
    Invalid { reason, message }
}

/// Validate a spec into rules.
fn rules(spec: &serde_json::Value) -> Result<Rules, Invalid> {
    let spec = if spec.is_null() {
        &serde_json::Value::Object(Default::default())
    } else {
        spec
    };
    let parsed: PolicySpec = serde_path_to_error::deserialize(spec).map_err(|e| {
        let path = e.path().to_string();
        let reason = if path.starts_with("selector") {
            "InvalidSelector"
        } else {
            "InvalidSpec"
        };
        invalid(reason, format!("spec.{path}: {}", e.inner()))
    })?;
    let selector = selector(&parsed.selector)
        .map_err(|m| invalid("InvalidSelector", format!("spec.selector.{m}")))?;
    let spec_err = |m: String| invalid("InvalidSpec", format!("spec.{m}"));
    if parsed.pod_labels.len() > MAX_POD_LABELS {
        return Err(spec_err(format!(
            "podLabels: at most {MAX_POD_LABELS} keys"
        )));
    }
    for (i, k) in parsed.pod_labels.iter().enumerate() {
        label_key(k).map_err(|m| spec_err(format!("podLabels[{i}]: {m}")))?;
    }
    let mut label_keys = parsed.pod_labels.clone();
    label_keys.sort();
    label_keys.dedup();
    if parsed.health_checks.len() > MAX_CHECKS {
        return Err(spec_err(format!("healthChecks: at most {MAX_CHECKS}")));
    }
    let mut checks: Vec<HealthCheck> = Vec::new();
    for (i, c) in parsed.health_checks.iter().enumerate() {
        let c = check(c).map_err(|m| spec_err(format!("healthChecks[{i}].{m}")))?;
        add_check(&mut checks, c);
    }
    let families = parsed.metrics.as_ref().map(|list| {
        let mut f = Families::default();
        for m in list {
            f.set(m.family, m.granularity);
        }
        f
    });
    parsed.anomalies.validate().map_err(spec_err)?;
    Ok(Rules {
        selector,
        label_keys,
        checks,
        families,
        anomalies: parsed.anomalies,
    })
}

fn selector(s: &KubeSelector) -> Result<LabelSelector, String> {
    for (k, v) in &s.match_labels {
        label_key(k).map_err(|m| format!("matchLabels[{k:?}]: {m}"))?;
        label_value(v).map_err(|m| format!("matchLabels[{k:?}]: {m}"))?;
    }
    for (i, r) in s.match_expressions.iter().enumerate() {
        label_key(&r.key).map_err(|m| format!("matchExpressions[{i}].key: {m}"))?;
        for v in &r.values {
            label_value(v).map_err(|m| format!("matchExpressions[{i}].values: {m}"))?;
        }
    }
    let sel = LabelSelector {
        match_labels: s.match_labels.clone(),
        match_expressions: s.match_expressions.clone(),
    };
    sel.validate().map_err(|(k, m)| {
        // The config's snake_case path, as the CRD spells it.
        format!(
            "{}: {m}",
            k.replace("match_expressions", "matchExpressions")
        )
    })?;
    Ok(sel)
}

/// A label name segment: at most 63 characters, alphanumerics with `-`, `_`, `.`
/// inside.
fn name_segment(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// A label key: `[prefix/]name`, the prefix a DNS subdomain (Kubernetes' rule).
fn label_key(k: &str) -> Result<(), String> {
    let (prefix, name) = match k.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, k),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        p.len() <= 253
            && p.split('.').all(|l| {
                let b = l.as_bytes();
                !b.is_empty()
                    && b.len() <= 63
                    && b[0].is_ascii_alphanumeric()
                    && b[b.len() - 1].is_ascii_alphanumeric()
                    && b.iter()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            })
    });
    if !prefix_ok || !name_segment(name) {
        return Err(format!("{k:?} is not a valid label key"));
    }
    Ok(())
}

fn label_value(v: &str) -> Result<(), String> {
    if v.is_empty() || name_segment(v) {
        Ok(())
    } else {
        Err(format!("{v:?} is not a valid label value"))
    }
}

fn check(c: &CheckSpec) -> Result<HealthCheck, String> {
    let port = match (c.kind, c.port) {
        (CheckKind::Ping, _) => 0,
        (_, Some(p @ 1..=65535)) => p as u16,
        (_, Some(p)) => return Err(format!("port: {p} is not a port")),
        (_, None) => return Err("port: tcp and http checks need one".into()),
    };
    let path = match c.kind {
        CheckKind::Http => {
            let p = c.path.clone().unwrap_or_else(|| "/".into());
            if !p.starts_with('/') || p.chars().any(|ch| ch.is_whitespace() || ch.is_control()) {
                return Err(format!("path: {p:?} is not an absolute path"));
            }
            p
        }
        _ => String::new(),
    };
    let period_secs = c.period_seconds.unwrap_or(10);
    let failure_threshold = c.failure_threshold.unwrap_or(3);
    if period_secs == 0 {
        return Err("periodSeconds: must be at least 1".into());
    }
    if c.timeout_seconds == Some(0) {
        return Err("timeoutSeconds: must be at least 1".into());
    }
    if failure_threshold == 0 {
        return Err("failureThreshold: must be at least 1".into());
    }
    Ok(HealthCheck {
        kind: c.kind,
        port,
        path,
        period_secs,
        timeout_secs: c.timeout_seconds,
        failure_threshold,
    })
}

/// Add `c`, or merge it into the check of the same target: the shorter period, the
/// lower threshold and timeout.
fn add_check(checks: &mut Vec<HealthCheck>, c: HealthCheck) {
    match checks.iter_mut().find(|x| x.same_target(&c)) {
        Some(x) => {
            x.period_secs = x.period_secs.min(c.period_secs);
            x.failure_threshold = x.failure_threshold.min(c.failure_threshold);
            x.timeout_secs = match (x.timeout_secs, c.timeout_secs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        None => checks.push(c),
    }
}

/// What every policy matching one pod says, combined.
#[derive(Clone, Debug, Default)]
pub struct PodPolicy {
    /// `namespace/name` of the matching policies, sorted.
    pub policies: Vec<CompactString>,
    /// Label keys carried onto records and metrics, sorted.
    pub label_keys: Vec<String>,
    pub checks: Vec<HealthCheck>,
    /// None: every family at flow granularity.
    pub families: Option<Families>,
    pub anomalies: AnomalyOverrides,
}

impl PodPolicy {
    fn add(&mut self, p: &Policy, r: &Rules) {
        let first = self.policies.is_empty();
        self.policies.push(p.key().into());
        for k in &r.label_keys {
            if !self.label_keys.contains(k) {
                self.label_keys.push(k.clone());
            }
        }
        self.label_keys.sort();
        for c in &r.checks {
            add_check(&mut self.checks, c.clone());
        }
        self.families = match (first, self.families, r.families) {
            (true, _, f) => f,
            // A policy without `metrics` asks for every family.
            (false, None, _) | (false, _, None) => None,
            (false, Some(mut a), Some(b)) => {
                a.union(&b);
                Some(a)
            }
        };
        self.anomalies = self.anomalies.most_sensitive(&r.anomalies);
    }

    /// Both ends' policies, for a flow seen at neither end's interface.
    pub fn union(a: &PodPolicy, b: &PodPolicy) -> PodPolicy {
        let mut u = a.clone();
        for n in &b.policies {
            if !u.policies.contains(n) {
                u.policies.push(n.clone());
            }
        }
        u.policies.sort();
        for k in &b.label_keys {
            if !u.label_keys.contains(k) {
                u.label_keys.push(k.clone());
            }
        }
        u.label_keys.sort();
        for c in &b.checks {
            add_check(&mut u.checks, c.clone());
        }
        u.families = match (a.families, b.families) {
            (Some(mut x), Some(y)) => {
                x.union(&y);
                Some(x)
            }
            _ => None,
        };
        u.anomalies = a.anomalies.most_sensitive(&b.anomalies);
        u
    }

    /// The granularity of metric `m`'s series for this pod: None drops them.
    pub fn granularity(&self, m: Metric) -> Option<Granularity> {
        match (Family::of(m), &self.families) {
            (Some(f), Some(fs)) => fs.get(f),
            _ => Some(Granularity::Flow),
        }
    }
}

/// Distinct label keys that can become metric labels, over the process's life: metric
/// attribute names are static strings, so each key's two names are made once and kept.
/// Policies are written by people, so few keys ever appear; the bound keeps a stream of
/// generated keys from growing memory (keys beyond it are not carried onto metrics,
/// logged once).
pub const MAX_METRIC_LABEL_KEYS: usize = 256;

/// The metric label names of pod label `key` on the client and the server side
/// (`client.k8s.pod.label.<key>`, `server.k8s.pod.label.<key>`); None beyond
/// [`MAX_METRIC_LABEL_KEYS`].
pub fn metric_label_keys(key: &str) -> Option<[&'static str; 2]> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    static KEYS: Mutex<BTreeMap<String, [&'static str; 2]>> = Mutex::new(BTreeMap::new());
    static WARNED: AtomicBool = AtomicBool::new(false);
    let mut keys = KEYS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = keys.get(key) {
        return Some(*k);
    }
    if keys.len() >= MAX_METRIC_LABEL_KEYS {
        if !WARNED.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                key,
                "more than {MAX_METRIC_LABEL_KEYS} policy podLabels keys: further keys are not carried onto metrics"
            );
        }
        return None;
    }
    let leak = |side: &str| -> &'static str {
        Box::leak(format!("{side}.k8s.pod.label.{key}").into_boxed_str())
    };
    let names = [leak("client"), leak("server")];
    keys.insert(key.to_string(), names);
    Some(names)
}

/// Every policy the watch holds, valid or not, sorted by `namespace/name`.
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    pub policies: Vec<Arc<Policy>>,
}

impl PolicySet {
    pub fn new(mut policies: Vec<Policy>) -> PolicySet {
        policies.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        PolicySet {
            policies: policies.into_iter().map(Arc::new).collect(),
        }
    }

    /// Any valid policy: then the policies' selectors, not `attribution.selector`,
    /// decide what is captured.
    pub fn active(&self) -> bool {
        self.policies.iter().any(|p| p.is_valid())
    }

    /// The combined policy of a pod of `namespace` with `labels`; None when none
    /// matches.
    pub fn for_pod<'a, I>(&self, namespace: Option<&str>, labels: I) -> Option<PodPolicy>
    where
        I: IntoIterator<Item = (&'a str, &'a str)> + Clone,
    {
        let mut out: Option<PodPolicy> = None;
        for p in &self.policies {
            if let Ok(r) = &p.rules
                && p.matches(namespace, labels.clone())
            {
                out.get_or_insert_with(PodPolicy::default).add(p, r);
            }
        }
        out
    }
}

/// Policies and pods for unit tests across the crate (attribution, the worker's and the
/// exporter's anomaly thresholds).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Policy `name` in namespace `shop` with `spec`, generation 1.
    pub fn policy(name: &str, spec: serde_json::Value) -> Policy {
        Policy::from_object(&PodtapPolicy {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("shop".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec,
            status: None,
        })
    }

    /// A running pod `shop/name` on node `n` with label `app` and address `ip`.
    pub fn pod(name: &str, app: &str, ip: &str) -> std::sync::Arc<k8s_openapi::api::core::v1::Pod> {
        std::sync::Arc::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "shop", "labels": {"app": app}},
                "spec": {"nodeName": "n", "containers": [{"name": "c"}]},
                "status": {"phase": "Running", "podIP": ip}
            }))
            .unwrap(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::policy;
    use super::*;
    use serde_json::json;

    #[test]
    fn a_full_spec_is_read() {
        let p = policy(
            "web",
            json!({
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "tier", "operator": "In", "values": ["front"]}]},
                "podLabels": ["team", "app", "team"],
                "healthChecks": [
                    {"type": "ping"},
                    {"type": "http", "port": 8080, "path": "/healthz", "periodSeconds": 5, "failureThreshold": 2},
                    {"type": "tcp", "port": 5432}
                ],
                "metrics": [{"family": "http", "granularity": "pod"}, {"family": "tcp"}],
                "anomalies": {"synTimeoutMs": 1000, "httpErrorBurst": 5}
            }),
        );
        let r = p.rules.as_ref().unwrap();
        assert_eq!(r.label_keys, ["app", "team"]);
        assert_eq!(r.checks.len(), 3);
        assert_eq!(r.checks[1].label(), "http:8080/healthz");
        assert_eq!(
            r.checks[1].address("10.0.0.5".parse().unwrap()),
            "http://10.0.0.5:8080/healthz"
        );
        assert_eq!(
            r.checks[2].address("fd00::5".parse().unwrap()),
            "[fd00::5]:5432"
        );
        let f = r.families.unwrap();
        assert_eq!(f.get(Family::Http), Some(Granularity::Pod));
        assert_eq!(f.get(Family::Tcp), Some(Granularity::Flow));
        assert_eq!(f.get(Family::Dns), None);
        assert!(p.matches(Some("shop"), [("app", "web"), ("tier", "front")]));
        assert!(!p.matches(Some("other"), [("app", "web"), ("tier", "front")]));
        assert!(!p.matches(Some("shop"), [("app", "web")]));
    }

    #[test]
    fn bad_selectors_and_specs_are_named_never_fatal() {
        let cases = [
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
                "InvalidSelector",
                "matchExpressions[0].values",
            ),
            (
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Maybe"}]}}),
                "InvalidSelector",
                "spec.selector.matchExpressions[0].operator",
            ),
            (
                json!({"selector": {"matchLabels": {"bad key!": "x"}}}),
                "InvalidSelector",
                "not a valid label key",
            ),
            (
                json!({"selector": {"matchLabels": {"app": "-x"}}}),
                "InvalidSelector",
                "not a valid label value",
            ),
            (
                json!({"selector": "app=web"}),
                "InvalidSelector",
                "spec.selector",
            ),
            (
                json!({"healthChecks": [{"type": "tcp"}]}),
                "InvalidSpec",
                "healthChecks[0].port",
            ),
            (
                json!({"healthChecks": [{"type": "arp"}]}),
                "InvalidSpec",
                "healthChecks[0].type",
            ),
            (
                json!({"anomalies": {"retransmitBurst": 0}}),
                "InvalidSpec",
                "retransmitBurst",
            ),
            (json!({"podLabels": ["a b"]}), "InvalidSpec", "podLabels[0]"),
        ];
        for (spec, reason, says) in cases {
            let p = policy("bad", spec.clone());
            let e = p.rules.as_ref().unwrap_err();
            assert_eq!(e.reason, reason, "{spec}: {e:?}");
            assert!(e.message.contains(says), "{spec}: {}", e.message);
            assert!(!p.matches(Some("shop"), [("app", "web")]));
        }
        // Keys with a DNS prefix are fine; an empty spec selects every pod of its namespace.
        let p = policy(
            "ok",
            json!({"selector": {"matchLabels": {"app.kubernetes.io/name": "web"}}}),
        );
        assert!(p.is_valid(), "{:?}", p.rules);
        assert!(policy("all", json!(null)).matches(Some("shop"), std::iter::empty()));
    }

    #[test]
    fn matching_policies_combine_into_their_union() {
        let set = PolicySet::new(vec![
            policy(
                "a",
                json!({"selector": {"matchLabels": {"app": "web"}}, "podLabels": ["team"],
                       "healthChecks": [{"type": "tcp", "port": 80, "periodSeconds": 10}],
                       "metrics": [{"family": "http", "granularity": "pod"}],
                       "anomalies": {"synTimeoutMs": 3000, "retransmitWindowMs": 1000, "retransmitBurst": 10}}),
            ),
            policy(
                "b",
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Exists"}]},
                       "podLabels": ["app"],
                       "healthChecks": [{"type": "tcp", "port": 80, "periodSeconds": 2, "failureThreshold": 5}, {"type": "ping"}],
                       "metrics": [{"family": "http", "granularity": "flow"}, {"family": "dns", "granularity": "pod"}],
                       "anomalies": {"synTimeoutMs": 1000, "retransmitWindowMs": 4000}}),
            ),
            policy("c", json!({"selector": {"matchLabels": {"app": "db"}}})),
            policy(
                "broken",
                json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
            ),
        ]);
        assert!(set.active());
        let web = set.for_pod(Some("shop"), [("app", "web")]).unwrap();
        assert_eq!(web.policies, ["shop/a", "shop/b"]);
        assert_eq!(web.label_keys, ["app", "team"]);
        assert_eq!(web.checks.len(), 2);
        let tcp = &web.checks[0];
        assert_eq!((tcp.period_secs, tcp.failure_threshold), (2, 3));
        let f = web.families.unwrap();
        assert_eq!(f.get(Family::Http), Some(Granularity::Flow), "flow wins");
        assert_eq!(f.get(Family::Dns), Some(Granularity::Pod));
        assert_eq!(f.get(Family::Tcp), None);
        assert_eq!(web.granularity(Metric::TcpRtt), None);
        assert_eq!(
            web.granularity(Metric::CaptureDrops),
            Some(Granularity::Flow)
        );
        let a = web.anomalies;
        assert_eq!(a.syn_timeout_ms, Some(1000));
        assert_eq!(a.retransmit_window_ms, Some(4000));
        assert_eq!(a.retransmit_burst, Some(10));
        let base = FlowThresholds::from_config(&Default::default());
        let th = a.apply(&base);
        assert_eq!(th.syn_timeout_ns, 1_000_000_000);
        assert_eq!(th.zero_window_stall_ns, base.zero_window_stall_ns);
        // `c` says nothing about metrics: the db pod keeps every family.
        let db = set.for_pod(Some("shop"), [("app", "db")]).unwrap();
        assert_eq!(db.families, None);
        assert_eq!(db.granularity(Metric::TcpRtt), Some(Granularity::Flow));
        assert!(set.for_pod(Some("shop"), [("x", "y")]).is_none());
        assert!(set.for_pod(Some("other"), [("app", "web")]).is_none());
        // Only invalid policies: the config's selector stays in charge.
        let only_broken = PolicySet::new(vec![policy(
            "broken",
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
        )]);
        assert!(!only_broken.active());
    }
}
