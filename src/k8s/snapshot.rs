//! The immutable metadata snapshot workers resolve against, and how it is built from
//! the sources (Kubernetes objects, node-local discovery, the static map). Building runs
//! off the packet path; resolving a flow is a few hash lookups and `Arc` clones.

use compact_str::CompactString;
use hashbrown::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::cidr::CidrTable;
use super::model::{FlowPods, Peer, PodMeta, ProcessInfo, ServiceMeta, Workload};
use super::netns::Discovery;
use super::policy::{PodPolicy, PolicySet};
use super::selector::LabelSelector;
use super::sockets::ProcessTable;
use super::static_map::StaticMap;
use crate::proto::Endpoint;

/// The Kubernetes objects the watchers hold (this node's pods; cluster-wide Services,
/// EndpointSlices, ReplicaSets and Jobs).
#[derive(Clone, Debug, Default)]
pub struct KubeObjects {
    pub pods: Vec<Arc<Pod>>,
    pub services: Vec<Arc<Service>>,
    pub endpoint_slices: Vec<Arc<EndpointSlice>>,
    pub replica_sets: Vec<Arc<ReplicaSet>>,
    pub jobs: Vec<Arc<Job>>,
}

/// Everything a snapshot is built from.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    pub node_name: Option<String>,
    pub netns: Option<Discovery>,
    pub static_map: Option<StaticMap>,
    pub kube: Option<KubeObjects>,
    /// Pod label keys passed through as `k8s.pod.label.<key>`.
    pub label_keys: Vec<String>,
    pub selector: LabelSelector,
    /// The monitoring policies (`PodtapPolicy` objects) the watch holds. While one of
    /// them is valid, they decide which pods are selected, not `selector`.
    pub policies: Option<Arc<PolicySet>>,
    /// Replay: observation point `i` (pcapng interface `i`) was captured on the host
    /// interface (or `/var/run/netns` namespace) named `obs_interfaces[i]`. Empty: the
    /// observation point is an ifindex (live capture).
    pub obs_interfaces: Vec<String>,
}

/// One published state of the metadata. Never changes once built.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub generation: u64,
    pub node_name: Option<CompactString>,
    by_obs: HashMap<u32, Arc<PodMeta>>,
    by_ip: HashMap<IpAddr, Arc<PodMeta>>,
    /// hostNetwork pods by the TCP port they listen on, and the process listening.
    host_ports: HashMap<u16, (Arc<PodMeta>, Arc<ProcessInfo>)>,
    svc_by_ip_port: HashMap<(IpAddr, u16), Arc<ServiceMeta>>,
    svc_by_ip: HashMap<IpAddr, Arc<ServiceMeta>>,
    node_ips: HashSet<IpAddr>,
    cidrs: CidrTable<Arc<PodMeta>>,
    selector_active: bool,
    /// Any source contributed: without one every address is `Unknown`, not `External`.
    has_sources: bool,
    pods: Vec<Arc<PodMeta>>,
}

impl Snapshot {
    /// The pod behind an observation point.
    pub fn obs(&self, obs: u32) -> Option<&Arc<PodMeta>> {
        self.by_obs.get(&obs)
    }

    /// Capture (or mirror) on this interface? False only for interfaces of pods outside
    /// `attribution.selector`; interfaces of no known pod are captured unless a selector
    /// is configured.
    pub fn is_selected(&self, ifindex: u32) -> bool {
        match self.by_obs.get(&ifindex) {
            Some(p) => p.selected,
            None => !self.selector_active,
        }
    }

    /// The observation points (ifindexes) of selected pods.
    pub fn selected_obs(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .by_obs
            .iter()
            .filter(|(_, p)| p.selected)
            .map(|(&o, _)| o)
            .collect();
        v.sort_unstable();
        v
    }

    pub fn pods(&self) -> &[Arc<PodMeta>] {
        &self.pods
    }

    /// A pod by `namespace/name` (or by name alone), for tools and tests.
    pub fn pod_named(&self, name: &str) -> Option<&Arc<PodMeta>> {
        let (ns, n) = match name.split_once('/') {
            Some((ns, n)) => (Some(ns), n),
            None => (None, name),
        };
        self.pods.iter().find(|p| {
            p.name.as_deref() == Some(n) && ns.is_none_or(|ns| p.namespace.as_deref() == Some(ns))
        })
    }

    /// What an address is. `listening` says the address is the flow's server end, so a
    /// node address with `port` owned by a hostNetwork pod is that pod.
    pub fn peer(&self, ip: IpAddr, port: u16, listening: bool) -> Peer {
        if !self.has_sources {
            return Peer::Unknown;
        }
        if let Some(p) = self.by_ip.get(&ip) {
            return Peer::Pod(p.clone());
        }
        if self.node_ips.contains(&ip) || ip.is_loopback() {
            if listening && let Some((p, _)) = self.host_ports.get(&port) {
                return Peer::Pod(p.clone());
            }
            return Peer::Node;
        }
        if let Some(s) = self
            .svc_by_ip_port
            .get(&(ip, port))
            .or_else(|| self.svc_by_ip.get(&ip))
        {
            return Peer::Service(s.clone());
        }
        if let Some(p) = self.cidrs.lookup(ip) {
            return Peer::Pod(p.clone());
        }
        Peer::External
    }

    /// Attribute a flow: its observation point, both ends, and the processes holding
    /// its sockets there. `ip_proto` is the flow's IP protocol (6 TCP, 17 UDP).
    pub fn resolve(&self, obs: u32, ip_proto: u8, client: Endpoint, server: Endpoint) -> FlowPods {
        let obs = self.by_obs.get(&obs).cloned();
        // The pod behind the observation point owns its own addresses, even where
        // another namespace reuses them.
        let end = |e: Endpoint, listening: bool| match &obs {
            Some(o) if o.ips.contains(&e.addr) => Peer::Pod(o.clone()),
            _ => self.peer(e.addr, e.port, listening),
        };
        let (client_ep, server_ep) = (client, server);
        let client = end(client_ep, false);
        let server = end(server_ep, true);
        let process = [
            self.process(&client, ip_proto, client_ep, server_ep, false),
            self.process(&server, ip_proto, server_ep, client_ep, true),
        ];
        let policy = match &obs {
            Some(o) => o.policy.clone(),
            None => match (
                client.pod().and_then(|p| p.policy.as_ref()),
                server.pod().and_then(|p| p.policy.as_ref()),
            ) {
                (Some(a), Some(b)) if !Arc::ptr_eq(a, b) => Some(Arc::new(PodPolicy::union(a, b))),
                (a, b) => a.or(b).cloned(),
            },
        };
        let selected = if !self.selector_active {
            true
        } else if let Some(o) = &obs {
            o.selected
        } else {
            [&client, &server]
                .iter()
                .any(|p| p.pod().is_some_and(|p| p.selected))
        };
        FlowPods {
            generation: self.generation,
            obs,
            client,
            server,
            selected,
            node_name: self.node_name.clone(),
            process,
            anomalies: policy
                .as_ref()
                .map(|p| p.anomalies)
                .filter(|a| !a.is_empty()),
            policy,
        }
    }

    /// The process holding a flow's socket at the end `local` (of pod `peer`), talking
    /// to `remote`; `serving` says `local` is the server end.
    fn process(
        &self,
        peer: &Peer,
        ip_proto: u8,
        local: Endpoint,
        remote: Endpoint,
        serving: bool,
    ) -> Option<Arc<ProcessInfo>> {
        let pod = peer.pod()?;
        if pod.host_network {
            let (_, p) = self.host_ports.get(&local.port).filter(|_| serving)?;
            return Some(p.clone());
        }
        let t = pod.processes.as_ref()?;
        match serving {
            true => t.server(ip_proto, local, remote),
            false => t.client(ip_proto, local, remote),
        }
        .cloned()
    }
}

/// Build a snapshot. Precedence for names: Kubernetes, then the static map, then
/// discovery (which contributes namespaces, processes and host interfaces).
pub fn build(inputs: &Inputs, generation: u64) -> Snapshot {
    let mut b = Builder::default();
    // Valid policies replace the configured selector (docs/POLICIES.md).
    let policies = inputs.policies.as_deref().filter(|p| p.active());
    let mut snap = Snapshot {
        generation,
        node_name: inputs.node_name.as_deref().map(Into::into),
        selector_active: policies.is_some() || !inputs.selector.is_empty(),
        has_sources: inputs.netns.is_some() || inputs.static_map.is_some() || inputs.kube.is_some(),
        ..Default::default()
    };
    if let Some(k) = &inputs.kube {
        b.add_kube(k, &mut snap);
    }
    if let Some(d) = &inputs.netns {
        b.add_netns(d, &mut snap);
    }
    let mut cidr_targets = Vec::new();
    let mut obs_targets = Vec::new();
    if let Some(m) = &inputs.static_map {
        b.add_static(
            m,
            inputs.netns.as_ref(),
            &mut snap,
            &mut cidr_targets,
            &mut obs_targets,
        );
    }
    if let Some(d) = &inputs.netns {
        // hostNetwork pods by the ports their containers listen on.
        for o in &d.host_ports {
            let Some(cid) = &o.process.container_id else {
                continue;
            };
            if let Some(i) = b
                .drafts
                .iter()
                .position(|p| p.host_network && p.container_ids.iter().any(|c| c == cid))
            {
                b.host_ports.push((o.port, i, Arc::new(o.process.clone())));
            }
        }
    }
    // Freeze.
    let pods: Vec<Arc<PodMeta>> = b
        .drafts
        .into_iter()
        .map(|mut p| {
            let policy = policies.and_then(|set| set.for_pod(p.namespace.as_deref(), p.labels()));
            p.selected = match policies {
                Some(_) => policy.is_some(),
                None => inputs.selector.matches(p.labels()),
            };
            p.fill_service_name();
            match &policy {
                Some(pp) if !pp.label_keys.is_empty() => {
                    let mut keys = inputs.label_keys.clone();
                    keys.extend(
                        pp.label_keys
                            .iter()
                            .filter(|k| !inputs.label_keys.contains(k))
                            .cloned(),
                    );
                    p.compute_attrs(&keys);
                }
                _ => p.compute_attrs(&inputs.label_keys),
            }
            if let Some(pp) = &policy {
                p.policy_metric_labels = pp
                    .label_keys
                    .iter()
                    .filter_map(|k| {
                        let v = p.labels.iter().find(|(lk, _)| lk == k)?.1.as_str();
                        Some((super::policy::metric_label_keys(k)?, Arc::from(v)))
                    })
                    .collect();
            }
            p.policy = policy.map(Arc::new);
            Arc::new(p)
        })
        .collect();
    for (i, p) in pods.iter().enumerate() {
        if !p.host_network && !b.remote.contains(&i) {
            for ip in &p.ips {
                // An address claimed twice (namespaces on separate private networks)
                // goes to the one with a name.
                match snap.by_ip.entry(*ip) {
                    hashbrown::hash_map::Entry::Vacant(v) => {
                        v.insert(p.clone());
                    }
                    hashbrown::hash_map::Entry::Occupied(mut o) => {
                        if o.get().name.is_none() && p.name.is_some() {
                            o.insert(p.clone());
                        }
                    }
                }
            }
        }
        if inputs.obs_interfaces.is_empty() {
            for (ifindex, _) in &p.host_ifaces {
                snap.by_obs.entry(*ifindex).or_insert_with(|| p.clone());
            }
        }
    }
    // Pods seen only through EndpointSlices (other nodes) come after local ones.
    for &i in &b.remote {
        for ip in &pods[i].ips {
            snap.by_ip.entry(*ip).or_insert_with(|| pods[i].clone());
        }
    }
    for (i, name) in inputs.obs_interfaces.iter().enumerate() {
        let hit = pods.iter().find(|p| {
            p.host_ifaces.iter().any(|(_, n)| n == name) || p.netns_name.as_deref() == Some(name)
        });
        if let Some(p) = hit {
            snap.by_obs.insert(i as u32, p.clone());
        }
    }
    for (obs, i) in obs_targets {
        snap.by_obs.insert(obs, pods[i].clone());
    }
    for (c, i) in cidr_targets {
        snap.cidrs.insert(c, pods[i].clone());
    }
    for (port, i, process) in b.host_ports {
        snap.host_ports
            .entry(port)
            .or_insert_with(|| (pods[i].clone(), process));
    }
    snap.pods = pods;
    snap
}

#[derive(Default)]
struct Builder {
    drafts: Vec<PodMeta>,
    /// Indexes of drafts known only from EndpointSlices (pods on other nodes).
    remote: Vec<usize>,
    host_ports: Vec<(u16, usize, Arc<ProcessInfo>)>,
}

impl Builder {
    /// A local (not EndpointSlice-only) pod with this address.
    fn by_ip(&self, ip: IpAddr) -> Option<usize> {
        self.drafts
            .iter()
            .enumerate()
            .position(|(i, p)| !p.host_network && p.ips.contains(&ip) && !self.remote.contains(&i))
    }

    fn add_kube(&mut self, k: &KubeObjects, snap: &mut Snapshot) {
        let rs: HashMap<(&str, &str), &ReplicaSet> = k
            .replica_sets
            .iter()
            .filter_map(|r| {
                Some((
                    (
                        r.metadata.namespace.as_deref()?,
                        r.metadata.name.as_deref()?,
                    ),
                    &**r,
                ))
            })
            .collect();
        let jobs: HashMap<(&str, &str), &Job> = k
            .jobs
            .iter()
            .filter_map(|j| {
                Some((
                    (
                        j.metadata.namespace.as_deref()?,
                        j.metadata.name.as_deref()?,
                    ),
                    &**j,
                ))
            })
            .collect();
        for pod in &k.pods {
            let status = pod.status.as_ref();
            // A finished pod's address is handed to new pods: it no longer names one.
            if matches!(
                status.and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            ) {
                continue;
            }
            let Some(d) = pod_draft(pod, &rs, &jobs) else {
                continue;
            };
            if d.host_network {
                snap.node_ips.extend(d.ips.iter().copied());
            }
            if let Some(h) = status
                .and_then(|s| s.host_ip.as_deref())
                .and_then(|h| h.parse().ok())
            {
                snap.node_ips.insert(h);
            }
            self.drafts.push(d);
        }
        let local = self.drafts.len();
        for slice in &k.endpoint_slices {
            let Some(ns) = slice.metadata.namespace.as_deref() else {
                continue;
            };
            let Some(svc) = slice
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("kubernetes.io/service-name"))
            else {
                continue;
            };
            for ep in slice.endpoints.iter().flatten() {
                let target = ep
                    .target_ref
                    .as_ref()
                    .filter(|t| t.kind.as_deref() == Some("Pod"))
                    .and_then(|t| t.name.as_deref());
                let ips: Vec<IpAddr> = ep.addresses.iter().filter_map(|a| a.parse().ok()).collect();
                let hit = self.drafts[..local].iter_mut().find(|p| match target {
                    Some(n) => p.name.as_deref() == Some(n) && p.namespace.as_deref() == Some(ns),
                    None => ips.iter().any(|ip| p.ips.contains(ip)),
                });
                if let Some(p) = hit {
                    p.k8s_service.get_or_insert_with(|| svc.as_str().into());
                    continue;
                }
                if ips.is_empty()
                    || self.drafts[local..]
                        .iter()
                        .any(|p| ips.iter().any(|ip| p.ips.contains(ip)))
                {
                    continue;
                }
                self.remote.push(self.drafts.len());
                self.drafts.push(PodMeta {
                    name: target.map(Into::into),
                    namespace: Some(ns.into()),
                    node: ep.node_name.as_deref().map(Into::into),
                    k8s_service: Some(svc.as_str().into()),
                    ips,
                    ..Default::default()
                });
            }
        }
        for s in &k.services {
            let (Some(name), Some(ns), Some(spec)) = (
                s.metadata.name.as_deref(),
                s.metadata.namespace.as_deref(),
                s.spec.as_ref(),
            ) else {
                continue;
            };
            let meta = Arc::new(ServiceMeta {
                name: name.into(),
                namespace: ns.into(),
            });
            let ips = spec
                .cluster_ips
                .iter()
                .flatten()
                .chain(spec.cluster_ip.iter())
                .filter_map(|ip| ip.parse::<IpAddr>().ok());
            for ip in ips {
                snap.svc_by_ip.entry(ip).or_insert_with(|| meta.clone());
                for p in spec.ports.iter().flatten() {
                    snap.svc_by_ip_port
                        .entry((ip, p.port as u16))
                        .or_insert_with(|| meta.clone());
                }
            }
        }
    }

    fn add_netns(&mut self, d: &Discovery, snap: &mut Snapshot) {
        snap.node_ips.extend(d.host.ips());
        for ns in &d.namespaces {
            let ips: Vec<IpAddr> = ns.ips().collect();
            // Join a pod the API knows by address; two namespaces with one address
            // (private networks, tests) stay two entries.
            let hit = ips
                .iter()
                .find_map(|ip| self.by_ip(*ip))
                .filter(|&i| self.drafts[i].netns_inode.is_none());
            let p = match hit {
                Some(i) => &mut self.drafts[i],
                None => {
                    // A namespace without addresses, name or veth is nobody's network.
                    if ips.is_empty() && ns.name.is_none() && ns.host_ifaces.is_empty() {
                        continue;
                    }
                    self.drafts.push(PodMeta {
                        ips: ips.clone(),
                        node: snap.node_name.clone(),
                        ..Default::default()
                    });
                    self.drafts.last_mut().expect("just pushed")
                }
            };
            p.netns_inode = Some(ns.inode);
            p.netns_name = ns.name.as_deref().map(Into::into);
            p.main_process = ns
                .processes
                .iter()
                .find(|p| p.comm != "pause")
                .map(|p| p.comm.clone());
            p.processes = Some(Arc::new(ProcessTable::new(&ns.sockets)));
            for pr in &ns.processes {
                if let Some(c) = &pr.container_id
                    && !p.container_ids.contains(c)
                {
                    p.container_ids.push(c.clone());
                }
            }
            for (i, n) in &ns.host_ifaces {
                p.host_ifaces.push((*i, n.as_str().into()));
            }
        }
    }

    fn add_static(
        &mut self,
        m: &StaticMap,
        d: Option<&Discovery>,
        snap: &mut Snapshot,
        cidr_targets: &mut Vec<(super::cidr::Cidr, usize)>,
        obs_targets: &mut Vec<(u32, usize)>,
    ) {
        for sp in &m.pod {
            let mut targets: Vec<usize> = Vec::new();
            for (i, p) in self.drafts.iter().enumerate() {
                let by_netns = sp.netns.is_some() && p.netns_name.as_deref() == sp.netns.as_deref();
                let by_iface = p.host_ifaces.iter().any(|(_, n)| sp.matches_iface(n));
                let by_cidr = p
                    .ips
                    .iter()
                    .any(|ip| sp.cidrs.iter().any(|c| c.contains(*ip)));
                if by_netns || by_iface || by_cidr {
                    targets.push(i);
                }
            }
            // Host interfaces the entry names that lead to no known namespace.
            let mut loose: Vec<(u32, CompactString)> = Vec::new();
            if let Some(d) = d {
                for l in &d.host.links {
                    let known = targets.iter().any(|&i| {
                        self.drafts[i]
                            .host_ifaces
                            .iter()
                            .any(|(x, _)| *x == l.ifindex)
                    });
                    if sp.matches_iface(&l.name) && !known {
                        loose.push((l.ifindex, l.name.as_str().into()));
                    }
                }
            }
            if targets.is_empty() || !loose.is_empty() {
                self.drafts.push(PodMeta {
                    host_ifaces: loose,
                    node: snap.node_name.clone(),
                    ..Default::default()
                });
                targets.push(self.drafts.len() - 1);
            }
            for &i in &targets {
                let p = &mut self.drafts[i];
                let set = |f: &mut Option<CompactString>, v: &Option<String>| {
                    if let Some(v) = v {
                        *f = Some(v.as_str().into());
                    }
                };
                set(&mut p.name, &sp.name);
                set(&mut p.namespace, &sp.namespace);
                set(&mut p.uid, &sp.uid);
                set(&mut p.node, &sp.node);
                set(&mut p.container, &sp.container);
                set(&mut p.service_name, &sp.service);
                if let Some(w) = &sp.workload {
                    p.workload = Some(Workload {
                        kind: w.kind.as_str().into(),
                        name: w.name.as_str().into(),
                    });
                    if sp.service.is_none() && p.service_name.is_none() {
                        p.service_name = Some(w.name.as_str().into());
                    }
                }
                for (k, v) in &sp.labels {
                    p.labels.retain(|(x, _)| x != k);
                    p.labels.push((k.as_str().into(), v.as_str().into()));
                }
                p.host_network |= sp.host_network;
            }
            let first = targets[0];
            for &o in &sp.obs {
                obs_targets.push((o, first));
            }
            for c in &sp.cidrs {
                cidr_targets.push((*c, first));
            }
        }
        for s in &m.service {
            let meta = Arc::new(ServiceMeta {
                name: s.name.as_str().into(),
                namespace: s.namespace.as_str().into(),
            });
            for ip in &s.cluster_ips {
                if s.ports.is_empty() {
                    snap.svc_by_ip.entry(*ip).or_insert_with(|| meta.clone());
                }
                for &port in &s.ports {
                    snap.svc_by_ip_port
                        .entry((*ip, port))
                        .or_insert_with(|| meta.clone());
                }
            }
        }
    }
}

/// A pod's metadata from its API object.
fn pod_draft(
    pod: &Pod,
    rs: &HashMap<(&str, &str), &ReplicaSet>,
    jobs: &HashMap<(&str, &str), &Job>,
) -> Option<PodMeta> {
    let m = &pod.metadata;
    let name = m.name.as_deref()?;
    let ns = m.namespace.as_deref().unwrap_or("default");
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if let Some(ip) = status
        .and_then(|s| s.pod_ip.as_deref())
        .and_then(|s| s.parse().ok())
        && !ips.contains(&ip)
    {
        ips.push(ip);
    }
    let labels: Vec<(CompactString, CompactString)> = m
        .labels
        .iter()
        .flatten()
        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
        .collect();
    let workload = resolve_owner(ns, m.owner_references.as_deref().unwrap_or(&[]), rs, jobs);
    let service_name = labels
        .iter()
        .find(|(k, _)| k == "app.kubernetes.io/name")
        .map(|(_, v)| v.clone())
        .or_else(|| workload.as_ref().map(|w| w.name.clone()));
    let containers = spec.map(|s| s.containers.as_slice()).unwrap_or(&[]);
    let container_ids = status
        .and_then(|s| s.container_statuses.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|c| c.container_id.as_deref())
        .map(|id| id.rsplit_once("://").map_or(id, |(_, id)| id).into())
        .collect();
    Some(PodMeta {
        name: Some(name.into()),
        namespace: Some(ns.into()),
        uid: m.uid.as_deref().map(Into::into),
        node: spec.and_then(|s| s.node_name.as_deref()).map(Into::into),
        workload,
        container: (containers.len() == 1).then(|| containers[0].name.as_str().into()),
        service_name,
        labels,
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        container_ids,
        ..Default::default()
    })
}

/// The workload behind a pod's controller reference: ReplicaSet → Deployment,
/// Job → CronJob; other kinds as they are. A ReplicaSet not (yet) seen stays a
/// ReplicaSet rather than guessing a Deployment from its name.
pub fn resolve_owner(
    ns: &str,
    owners: &[OwnerReference],
    rs: &HashMap<(&str, &str), &ReplicaSet>,
    jobs: &HashMap<(&str, &str), &Job>,
) -> Option<Workload> {
    let o = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    let parent = |refs: Option<&Vec<OwnerReference>>, want: &str| {
        refs.into_iter()
            .flatten()
            .find(|p| p.kind == want && p.controller != Some(false))
            .map(|p| Workload {
                kind: want.into(),
                name: p.name.as_str().into(),
            })
    };
    let up = match o.kind.as_str() {
        "ReplicaSet" => rs
            .get(&(ns, o.name.as_str()))
            .and_then(|r| parent(r.metadata.owner_references.as_ref(), "Deployment")),
        "Job" => jobs
            .get(&(ns, o.name.as_str()))
            .and_then(|j| parent(j.metadata.owner_references.as_ref(), "CronJob")),
        _ => None,
    };
    Some(up.unwrap_or_else(|| Workload {
        kind: o.kind.as_str().into(),
        name: o.name.as_str().into(),
    }))
}
