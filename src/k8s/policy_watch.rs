//! The `PodtapPolicy` watch and the policies' status.
//!
//! A kube-rs watcher (list, then watch; 410 Gone re-lists, errors back off) feeds a
//! reflector store on the attribution thread's runtime; every change wakes the snapshot
//! builder, which reads the store, validates the objects into a
//! [`PolicySet`](super::policy::PolicySet) and builds the snapshot with it: what is
//! captured and how pods are labelled changes with the next snapshot, never on the
//! packet path.
//!
//! After each snapshot, this node's view of every policy (pods it matches here, whether
//! it is valid) goes to the status task, which writes the policy's entry for this node
//! in `status.nodes` by server-side apply, with field manager `podtap/<node>`: each node
//! owns its own entry of the list (a map keyed by `node`), so nodes never overwrite each
//! other's. An entry is written only when it changed, so the MODIFIED event a status
//! write causes does not write again.

use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use kube::{Api, Client};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use tokio::sync::{Notify, watch};

use super::policy::{CheckKind, PodtapPolicy, Policy, PolicySet};
use super::snapshot::Snapshot;

/// The watched policies.
#[derive(Clone)]
pub struct PolicyStore {
    store: Store<PodtapPolicy>,
}

impl PolicyStore {
    /// Every policy, validated (invalid ones included, to report them).
    pub fn policies(&self) -> PolicySet {
        PolicySet::new(
            self.store
                .state()
                .iter()
                .map(|o| Policy::from_object(o))
                .collect(),
        )
    }
}

/// Start the watch on the current tokio runtime. `changed` is notified on every change;
/// `synced` is incremented once the first list is in, or once the API says the
/// resource does not exist (CRD not installed: no policies, the configured selector
/// applies, and the watch keeps retrying so a CRD installed later is picked up).
pub fn start(client: Client, changed: Arc<Notify>, synced: Arc<AtomicU32>) -> PolicyStore {
    let (store, writer) = reflector::store();
    let api = Api::<PodtapPolicy>::all(client);
    super::kube::spawn_reflector(
        api,
        watcher::Config::default().any_semantic(),
        writer,
        "podtappolicies",
        &changed,
        &synced,
        Some(
            "the PodtapPolicy resource is not installed (deploy/kubernetes/podtappolicy-crd.yaml): \
             attribution.selector applies until it is",
        ),
    );
    PolicyStore { store }
}

/// One policy's status as this node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub namespace: String,
    pub name: String,
    pub generation: Option<i64>,
    /// Pods of this node the policy matches.
    pub matched_pods: u64,
    /// `Ready` condition: status, reason, message.
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

/// This node's status of every policy in `set`, counted in `snap` (pods of this node).
pub fn node_statuses(set: &PolicySet, snap: &Snapshot) -> Vec<NodeStatus> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    let node = snap.node_name.as_deref();
    for p in snap.pods() {
        // Pods known from the API on this node (remote endpoints carry no policy).
        if p.node.as_deref() != node {
            continue;
        }
        if let Some(pp) = &p.policy {
            for k in &pp.policies {
                *counts.entry(k.to_string()).or_default() += 1;
            }
        }
    }
    set.policies
        .iter()
        .map(|p| {
            let matched_pods = counts.get(&p.key()).copied().unwrap_or(0);
            let (ready, reason, message) = match &p.rules {
                Ok(_) => (
                    true,
                    "Applied".to_string(),
                    format!("applied to {matched_pods} pods on this node"),
                ),
                Err(e) => (false, e.reason.to_string(), e.message.clone()),
            };
            NodeStatus {
                namespace: p.namespace.to_string(),
                name: p.name.to_string(),
                generation: p.generation,
                matched_pods,
                ready,
                reason,
                message,
            }
        })
        .collect()
}

/// The field manager of `node`'s status entries.
pub fn field_manager(node: &str) -> String {
    // Field managers are at most 128 characters; node names at most 253.
    let mut m = format!("podtap/{node}");
    m.truncate(128);
    m
}

/// The server-side apply body that sets `node`'s entry of a policy's `status.nodes`.
pub fn apply_body(node: &str, s: &NodeStatus, transition: &str) -> serde_json::Value {
    let mut condition = serde_json::json!({
        "type": "Ready",
        "status": if s.ready { "True" } else { "False" },
        "reason": s.reason,
        "message": s.message,
        "lastTransitionTime": transition,
    });
    if let Some(g) = s.generation {
        condition["observedGeneration"] = g.into();
    }
    let mut entry = serde_json::json!({
        "node": node,
        "matchedPods": s.matched_pods,
        "conditions": [condition],
    });
    if let Some(g) = s.generation {
        entry["observedGeneration"] = g.into();
    }
    serde_json::json!({
        "apiVersion": format!("{}/{}", super::policy::GROUP, super::policy::VERSION),
        "kind": super::policy::KIND,
        "metadata": {"name": s.name, "namespace": s.namespace},
        "status": {"nodes": [entry]},
    })
}

/// Keep this node's status entries in step with `statuses`: write those that changed
/// since they were last written (a failed write is tried again at the next change or
/// after a back-off). Runs until the sender is dropped.
pub async fn report(client: Client, node: String, mut statuses: watch::Receiver<Vec<NodeStatus>>) {
    // (namespace, name) → what was written, and the time its Ready condition last
    // changed.
    let mut written: HashMap<(String, String), (NodeStatus, String)> = HashMap::new();
    let params = PatchParams::apply(&field_manager(&node)).force();
    let mut failures: u64 = 0;
    loop {
        let want = statuses.borrow_and_update().clone();
        let mut failed = false;
        for s in &want {
            let key = (s.namespace.clone(), s.name.clone());
            let transition = match written.get(&key) {
                Some((old, _)) if old == s => continue,
                Some((old, t)) if (old.ready, &old.reason) == (s.ready, &s.reason) => t.clone(),
                _ => now_rfc3339(),
            };
            let api: Api<PodtapPolicy> = Api::namespaced(client.clone(), &s.namespace);
            let body = apply_body(&node, s, &transition);
            match api
                .patch_status(&s.name, &params, &Patch::Apply(&body))
                .await
            {
                Ok(_) => {
                    written.insert(key, (s.clone(), transition));
                }
                // Deleted meanwhile: nothing to report.
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => {
                    failed = true;
                    failures += 1;
                    if failures.is_power_of_two() {
                        tracing::warn!(
                            policy = %format!("{}/{}", s.namespace, s.name),
                            failures,
                            "cannot write the policy's status: {e}"
                        );
                    }
                }
            }
        }
        // Forget deleted policies (a policy re-created with the name is written anew).
        written.retain(|(ns, n), _| want.iter().any(|s| &s.namespace == ns && &s.name == n));
        if failed {
            tokio::select! {
                r = statuses.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
            }
        } else if statuses.changed().await.is_err() {
            return;
        }
    }
}

fn now_rfc3339() -> String {
    // Whole seconds, as the API server writes condition times.
    let secs = crate::time::Timestamp::now().as_nanos() / 1_000_000_000;
    let t = crate::time::Timestamp::from_secs_nanos(secs, 0)
        .rfc3339()
        .to_string();
    t.replace(".000000000Z", "Z")
}

/// One health check of one pod, as the policies ask for it: what the health probes run
/// (`crate::probes`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PodCheck {
    /// `<namespace>/<pod>`, then `:<port>` (tcp) or `:<port><path>` (http): names the
    /// target in probe metrics and `/alive`.
    pub name: String,
    pub kind: CheckKind,
    /// An IP (`ping`), `ip:port` (`tcp`), a URL (`http`).
    pub address: String,
    pub period_secs: u64,
    pub timeout_secs: Option<u64>,
    pub failure_threshold: u32,
}

/// The health checks of this node's pods that policies match, sorted by name.
pub fn pod_checks(snap: &Snapshot) -> Vec<PodCheck> {
    let node = snap.node_name.as_deref();
    let mut out = Vec::new();
    for p in snap.pods() {
        let (Some(policy), true) = (&p.policy, p.node.as_deref() == node) else {
            continue;
        };
        let (Some(ns), Some(name)) = (&p.namespace, &p.name) else {
            continue;
        };
        // The pod's IPv4 address when it has one (ICMP echo and HTTP alike).
        let Some(ip) = p.ips.iter().find(|ip| ip.is_ipv4()).or(p.ips.first()) else {
            continue;
        };
        for c in &policy.checks {
            let suffix = match c.kind {
                CheckKind::Ping => String::new(),
                CheckKind::Tcp => format!(":{}", c.port),
                CheckKind::Http => format!(":{}{}", c.port, c.path),
            };
            out.push(PodCheck {
                name: format!("{ns}/{name}{suffix}"),
                kind: c.kind,
                address: c.address(*ip),
                period_secs: c.period_secs,
                timeout_secs: c.timeout_secs,
                failure_threshold: c.failure_threshold,
            });
        }
    }
    out.sort_by(|a, b| (&a.name, a.kind).cmp(&(&b.name, b.kind)));
    out
}
