//! What attribution knows about a pod, a Service and a flow's two ends. Built off the
//! packet path (in the snapshot builder) and shared by `Arc`; a flow holds one small
//! [`FlowPods`] behind an `Arc`, so records clone a pointer, not strings.

use compact_str::CompactString;
use std::net::IpAddr;
use std::sync::Arc;

use super::policy::{AnomalyOverrides, PodPolicy};
use super::sockets::ProcessTable;
use crate::proto::AttrValue;

/// The controller a pod belongs to, after following owners (ReplicaSet → Deployment,
/// Job → CronJob).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `ReplicaSet`, `Job`, `CronJob`, or
    /// whatever kind a static map names.
    pub kind: CompactString,
    pub name: CompactString,
}

impl Workload {
    /// The OpenTelemetry attribute for this kind (`k8s.deployment.name`, ...).
    pub fn attribute(&self) -> Option<&'static str> {
        Some(match self.kind.as_str() {
            "Deployment" => "k8s.deployment.name",
            "StatefulSet" => "k8s.statefulset.name",
            "DaemonSet" => "k8s.daemonset.name",
            "ReplicaSet" => "k8s.replicaset.name",
            "Job" => "k8s.job.name",
            "CronJob" => "k8s.cronjob.name",
            _ => return None,
        })
    }
}

/// A process found in a pod's network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    pub pid: u32,
    pub comm: CompactString,
    /// From the cgroup path, when it names a container (64 hex digits).
    pub container_id: Option<CompactString>,
}

/// One pod (or pod-like network namespace, or static map entry).
#[derive(Clone, Debug, Default)]
pub struct PodMeta {
    pub name: Option<CompactString>,
    pub namespace: Option<CompactString>,
    pub uid: Option<CompactString>,
    pub node: Option<CompactString>,
    pub workload: Option<Workload>,
    /// `k8s.container.name`, when the pod has one container (or the static map says).
    pub container: Option<CompactString>,
    /// `service.name`: label `app.kubernetes.io/name`, else the workload's name.
    pub service_name: Option<CompactString>,
    /// A Kubernetes Service whose endpoints include this pod.
    pub k8s_service: Option<CompactString>,
    pub labels: Vec<(CompactString, CompactString)>,
    pub ips: Vec<IpAddr>,
    pub host_network: bool,
    /// Network namespace: inode and `/var/run/netns` name, when discovered on this node.
    pub netns_inode: Option<u64>,
    pub netns_name: Option<CompactString>,
    /// The name of the namespace's first process (lowest pid, the pod sandbox's `pause`
    /// not counted): names the pod's service when nothing else does. Which process a
    /// flow belongs to is in `processes`.
    pub main_process: Option<CompactString>,
    /// The namespace's sockets and the processes holding them, when discovered: looked
    /// up once per flow (see [`FlowPods::process`]).
    pub processes: Option<Arc<ProcessTable>>,
    /// Container ids of the pod (from the API or from cgroups): joins hostNetwork port
    /// owners to pods.
    pub container_ids: Vec<CompactString>,
    /// Host-side interfaces (veth) leading into the pod: index and name.
    pub host_ifaces: Vec<(u32, CompactString)>,
    /// Within `attribution.selector` (always true without a selector), or, while
    /// monitoring policies exist, matched by one.
    pub selected: bool,
    /// The monitoring policies matching this pod, combined (see [`super::policy`]).
    pub policy: Option<Arc<PodPolicy>>,
    /// Output attributes without the side prefix (`k8s.pod.name`, ...), computed once.
    pub attrs: Vec<(CompactString, AttrValue)>,
    /// Metric label values, computed once and shared by every series that names this
    /// pod: namespace, pod name, `service.name` (see [`METRIC_LABELS`]).
    pub metric_labels: [Option<Arc<str>>; 3],
    /// The monitoring policy's `podLabels` the pod has, as metric labels: the keys on
    /// the client and the server side (`client.k8s.pod.label.<key>`, ...) and the value.
    pub policy_metric_labels: Vec<([&'static str; 2], Arc<str>)>,
}

/// The metric labels of a flow's ends, by side: what [`PodMeta::metric_labels`] holds.
pub const METRIC_LABELS: [[&str; 3]; 2] = [
    [
        "client.k8s.namespace.name",
        "client.k8s.pod.name",
        "client.service.name",
    ],
    [
        "server.k8s.namespace.name",
        "server.k8s.pod.name",
        "server.service.name",
    ],
];

impl PodMeta {
    pub fn labels(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        self.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// `service.name` when no source named it: the pod's `app.kubernetes.io/name` label,
    /// its workload's name, its `app` label, its network namespace's name, or its first
    /// process's name, the first of these known. Pods found by node-local discovery alone
    /// are then told apart in metrics and traces too.
    pub fn fill_service_name(&mut self) {
        if self.service_name.is_some() {
            return;
        }
        let label = |key: &str| {
            self.labels
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        self.service_name = label("app.kubernetes.io/name")
            .or_else(|| self.workload.as_ref().map(|w| w.name.clone()))
            .or_else(|| label("app"))
            .or_else(|| self.netns_name.clone())
            .or_else(|| self.main_process.clone());
    }

    /// Compute `attrs` from the fields; `label_keys` are passed through as
    /// `k8s.pod.label.<key>`.
    pub fn compute_attrs(&mut self, label_keys: &[String]) {
        let mut a: Vec<(CompactString, AttrValue)> = Vec::with_capacity(12);
        let mut s = |k: &str, v: &Option<CompactString>| {
            if let Some(v) = v {
                a.push((k.into(), AttrValue::Str(v.clone())));
            }
        };
        s("k8s.pod.name", &self.name);
        s("k8s.namespace.name", &self.namespace);
        s("k8s.pod.uid", &self.uid);
        s("k8s.node.name", &self.node);
        if let Some(w) = &self.workload
            && let Some(k) = w.attribute()
        {
            s(k, &Some(w.name.clone()));
        }
        s("k8s.container.name", &self.container);
        s("service.name", &self.service_name);
        s("k8s.service.name", &self.k8s_service);
        s("podtap.netns.name", &self.netns_name);
        for key in label_keys {
            if let Some((_, v)) = self.labels.iter().find(|(k, _)| k == key) {
                a.push((
                    format!("k8s.pod.label.{key}").into(),
                    AttrValue::Str(v.clone()),
                ));
            }
        }
        if self.host_network {
            a.push(("podtap.host_network".into(), AttrValue::Bool(true)));
        }
        self.attrs = a;
        let shared = |v: &Option<CompactString>| v.as_deref().map(Arc::from);
        self.metric_labels = [
            shared(&self.namespace),
            shared(&self.name),
            shared(&self.service_name),
        ];
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.iter().find_map(|(k, v)| match v {
            AttrValue::Str(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }
}

/// A Kubernetes Service, reached through its ClusterIP.
#[derive(Clone, Debug, Default)]
pub struct ServiceMeta {
    pub name: CompactString,
    pub namespace: CompactString,
}

/// What one end of a flow is.
#[derive(Clone, Debug, Default)]
pub enum Peer {
    /// Attribution has no data for this address (no source knows the node's networks).
    #[default]
    Unknown,
    Pod(Arc<PodMeta>),
    /// A Service ClusterIP (the packet was captured before the DNAT to an endpoint).
    Service(Arc<ServiceMeta>),
    /// An address of this node (host processes, hostNetwork pods not matched by port).
    Node,
    /// An address no source knows: outside the cluster, or a pod on another node that
    /// is no Service's endpoint.
    External,
}

impl Peer {
    /// `pod`, `service`, `node`, `external`, or `None` when unknown.
    pub fn kind(&self) -> Option<&'static str> {
        Some(match self {
            Peer::Unknown => return None,
            Peer::Pod(_) => "pod",
            Peer::Service(_) => "service",
            Peer::Node => "node",
            Peer::External => "external",
        })
    }

    pub fn pod(&self) -> Option<&Arc<PodMeta>> {
        match self {
            Peer::Pod(p) => Some(p),
            _ => None,
        }
    }

    fn strength(&self) -> u8 {
        match self {
            Peer::Unknown | Peer::External => 0,
            Peer::Node => 1,
            Peer::Service(_) | Peer::Pod(_) => 2,
        }
    }
}

/// The attribution of one flow (and of every transaction on it), resolved once per flow
/// and again only when the metadata snapshot changes.
#[derive(Clone, Debug, Default)]
pub struct FlowPods {
    /// Snapshot generation this was resolved against.
    pub generation: u64,
    /// The pod whose interface the flow was captured on.
    pub obs: Option<Arc<PodMeta>>,
    pub client: Peer,
    pub server: Peer,
    /// Report this flow: false when it belongs only to pods outside the selector.
    pub selected: bool,
    /// The node's name, for `k8s.node.name` on node peers.
    pub node_name: Option<CompactString>,
    /// The process holding the flow's socket at each end (client, server), when the end
    /// is a pod whose sockets discovery has seen (see [`super::sockets`]).
    pub process: [Option<Arc<ProcessInfo>>; 2],
    /// The monitoring policy that applies to the flow: the observed pod's, or, seen at
    /// neither end's interface, both ends' combined. None without policies.
    pub policy: Option<Arc<PodPolicy>>,
    /// `policy`'s anomaly thresholds, inline: the worker reads them per segment.
    pub anomalies: Option<AnomalyOverrides>,
}

impl FlowPods {
    /// Keep what `old` knew about an end that the newer resolution no longer knows
    /// (a pod deleted while its last connections drain keeps its name).
    pub fn keep_known(&mut self, old: &FlowPods) {
        if old.client.strength() > self.client.strength() {
            self.client = old.client.clone();
        }
        if old.server.strength() > self.server.strength() {
            self.server = old.server.clone();
        }
        if self.obs.is_none() {
            self.obs = old.obs.clone();
        }
        // A connection's socket is not in a newer scan once it closes: keep its process.
        for (new, old) in self.process.iter_mut().zip(&old.process) {
            if new.is_none() {
                *new = old.clone();
            }
        }
    }

    /// `client` or `server` when the observation point is that end's pod.
    /// `podtap.observation_point.side` of flows and transactions: `client` or `server`
    /// when the observation point is that end's pod, else `tap` (one point between the
    /// ends, such as a node interface). A call between two pods of the node is seen at
    /// both veths: summing one side counts it once.
    pub fn observation_side(&self) -> &'static str {
        self.observed_side().unwrap_or("tap")
    }

    /// The process at the end the flow was observed at: the client's where the
    /// observation point is the client's pod, else the server's (as spans and metrics
    /// pick their side).
    pub fn observed_process(&self) -> Option<&Arc<ProcessInfo>> {
        let i = usize::from(self.observed_side() != Some("client"));
        self.process[i].as_ref()
    }

    pub fn observed_side(&self) -> Option<&'static str> {
        let obs = self.obs.as_ref()?;
        let same = |p: &Peer| p.pod().is_some_and(|p| Arc::ptr_eq(p, obs));
        if same(&self.client) {
            Some("client")
        } else if same(&self.server) {
            Some("server")
        } else {
            None
        }
    }
}
