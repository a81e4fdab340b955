//! OTLP resources: who telemetry is about. Spans are reported the way an instrumented
//! service reports itself, under one resource per observed workload and process
//! (`service.name`, `k8s.*`, `process.*`); metrics, whose series name both ends, under
//! podtap's own resource.

use compact_str::CompactString;
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use std::collections::BTreeMap;

use super::spans::{kv_int, kv_str, scope, service_of};
use crate::proto::Transaction;
use crate::stats::metrics::SCHEMA_URL;

/// The resource a span is reported under: the workload at the observed end (its
/// `service.name`, pod, namespace, node, workload, network namespace) and the process
/// holding the flow's socket there, in a fixed order. An end no source knows gets the
/// configured service alone.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SpanResource(Vec<(&'static str, ResValue)>);

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum ResValue {
    Str(CompactString),
    Int(i64),
}

impl SpanResource {
    /// A resource with `service.name` alone (podtap's own, or an unknown workload's).
    pub fn service(name: &str) -> SpanResource {
        SpanResource(vec![("service.name", ResValue::Str(name.into()))])
    }

    /// An attribute's value as text, for tests and tools.
    pub fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| match v {
                ResValue::Str(s) => s.to_string(),
                ResValue::Int(i) => i.to_string(),
            })
    }

    fn str(&mut self, key: &'static str, v: &Option<CompactString>) {
        if let Some(v) = v {
            self.0.push((key, ResValue::Str(v.clone())));
        }
    }
}

/// At most this many workload resources in one export request; the spans of further
/// workloads go under the configured service's resource (their pod stays on the span).
pub const MAX_RESOURCES_PER_REQUEST: usize = 256;

/// The resource of `tx`'s span (see [`SpanResource`]); `default` is
/// `export.service_name`. Built on the export thread, once per span.
pub fn resource_of(tx: &Transaction, default: &str) -> SpanResource {
    let mut r = SpanResource::service(service_of(tx, default));
    if let Some(p) = crate::stats::local_pod(tx) {
        r.str("k8s.pod.name", &p.name);
        r.str("k8s.pod.uid", &p.uid);
        r.str("k8s.namespace.name", &p.namespace);
        r.str("k8s.node.name", &p.node);
        if let Some(w) = &p.workload
            && let Some(k) = w.attribute()
        {
            r.0.push((k, ResValue::Str(w.name.clone())));
        }
        r.str("k8s.container.name", &p.container);
        r.str("podtap.netns.name", &p.netns_name);
    }
    if let Some(pr) = tx.pods.as_ref().and_then(|p| p.observed_process()) {
        r.0.push(("process.pid", ResValue::Int(pr.pid as i64)));
        r.0.push(("process.executable.name", ResValue::Str(pr.comm.clone())));
        r.str("container.id", &pr.container_id);
    }
    r
}

/// podtap's own resource (metrics): `service.name` and what every resource carries.
pub fn resource(service: &str, extra: &BTreeMap<String, String>) -> Resource {
    to_proto(&SpanResource::service(service), extra)
}

/// A resource's own attributes, then those every resource carries: the SDK, the node's
/// host name, and `export.resource_attributes` (where the resource does not set the key
/// itself).
fn to_proto(r: &SpanResource, extra: &BTreeMap<String, String>) -> Resource {
    let mut attributes: Vec<KeyValue> =
        r.0.iter()
            .map(|(k, v)| match v {
                ResValue::Str(s) => kv_str(k, s),
                ResValue::Int(i) => kv_int(k, *i),
            })
            .collect();
    attributes.extend([
        kv_str("telemetry.sdk.name", "podtap"),
        kv_str("telemetry.sdk.language", "rust"),
        kv_str("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ]);
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        attributes.push(kv_str("host.name", h.trim()));
    }
    for (k, v) in extra {
        if r.0.iter().all(|(own, _)| own != k) {
            attributes.push(kv_str(k, v));
        }
    }
    Resource {
        attributes,
        ..Default::default()
    }
}

/// Group spans into one `ResourceSpans` per resource, at most
/// [`MAX_RESOURCES_PER_REQUEST`] workloads' (plus `default`'s, the configured service,
/// which takes the spans of any further workload).
pub fn group(
    spans: Vec<(SpanResource, Span)>,
    default: &str,
    extra: &BTreeMap<String, String>,
) -> Vec<ResourceSpans> {
    let mut by_resource: BTreeMap<SpanResource, Vec<Span>> = BTreeMap::new();
    let fallback = SpanResource::service(default);
    for (r, s) in spans {
        let full = by_resource.len()
            >= MAX_RESOURCES_PER_REQUEST + usize::from(by_resource.contains_key(&fallback));
        let r = if full && !by_resource.contains_key(&r) {
            fallback.clone()
        } else {
            r
        };
        by_resource.entry(r).or_default().push(s);
    }
    by_resource
        .into_iter()
        .map(|(r, spans)| ResourceSpans {
            resource: Some(to_proto(&r, extra)),
            scope_spans: vec![ScopeSpans {
                scope: Some(scope()),
                spans,
                schema_url: SCHEMA_URL.into(),
            }],
            schema_url: SCHEMA_URL.into(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::k8s::model::ProcessInfo;
    use crate::k8s::{FlowPods, Peer, PodMeta, Workload};
    use crate::proto::Protocol;
    use crate::time::Timestamp;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use std::sync::Arc;

    fn pod(netns: &str, name: Option<&str>) -> Arc<PodMeta> {
        let mut p = PodMeta {
            name: name.map(Into::into),
            namespace: name.map(|_| "shop".into()),
            node: Some("node-1".into()),
            workload: name.map(|n| Workload {
                kind: "Deployment".into(),
                name: n.split('-').next().unwrap().into(),
            }),
            netns_name: Some(netns.into()),
            ..Default::default()
        };
        p.fill_service_name();
        p.compute_attrs(&[]);
        Arc::new(p)
    }

    fn process(pid: u32, comm: &str) -> Option<Arc<ProcessInfo>> {
        Some(Arc::new(ProcessInfo {
            pid,
            comm: comm.into(),
            container_id: None,
        }))
    }

    /// A transaction between `client` and `server` seen at `obs`, with the processes
    /// holding its sockets.
    fn tx(
        client: &Arc<PodMeta>,
        server: &Arc<PodMeta>,
        obs: &Arc<PodMeta>,
        process: [Option<Arc<ProcessInfo>>; 2],
    ) -> Transaction {
        let mut t = Transaction::new(Protocol::Http, Timestamp(1));
        t.pods = Some(Arc::new(FlowPods {
            obs: Some(obs.clone()),
            client: Peer::Pod(client.clone()),
            server: Peer::Pod(server.clone()),
            selected: true,
            process,
            ..Default::default()
        }));
        t
    }

    fn attrs(r: &ResourceSpans) -> BTreeMap<String, String> {
        r.resource
            .as_ref()
            .unwrap()
            .attributes
            .iter()
            .map(|kv| {
                let v = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                    Some(Value::StringValue(s)) => s.clone(),
                    Some(Value::IntValue(i)) => i.to_string(),
                    other => format!("{other:?}"),
                };
                (kv.key.clone(), v)
            })
            .collect()
    }

    /// Spans from two pods (one known to Kubernetes or a static map, one found by
    /// node-local discovery alone) come in their own resources: a SERVER span under the
    /// server's workload and process, a CLIENT span under the client's; an unknown end
    /// under the configured service.
    #[test]
    fn spans_are_grouped_by_workload_and_process() {
        let web = pod("cni-web", Some("web-0"));
        let client = pod("ptp-client", None);
        let (nginx, python, curl) = (
            process(10, "nginx"),
            process(20, "python3"),
            process(30, "curl"),
        );
        let at_server = tx(&client, &web, &web, [curl.clone(), nginx.clone()]);
        let at_server_py = tx(&client, &web, &web, [curl.clone(), python.clone()]);
        let at_client = tx(&client, &web, &client, [curl.clone(), nginx.clone()]);
        let unknown = Transaction::new(Protocol::Http, Timestamp(1));
        let spans: Vec<_> = [&at_server, &at_server, &at_server_py, &at_client, &unknown]
            .into_iter()
            .map(|t| (resource_of(t, "podtap"), Span::default()))
            .collect();
        let extra = BTreeMap::from([
            ("k8s.cluster.name".to_string(), "prod".to_string()),
            ("service.name".to_string(), "ignored".to_string()),
        ]);
        let groups = group(spans, "podtap", &extra);
        assert_eq!(groups.len(), 4, "{groups:#?}");
        let find = |svc: &str, pid: Option<&str>| {
            groups
                .iter()
                .find(|g| {
                    let a = attrs(g);
                    a["service.name"] == svc && a.get("process.pid").map(String::as_str) == pid
                })
                .unwrap_or_else(|| panic!("{svc} {pid:?} in {groups:#?}"))
        };
        let g = find("web", Some("10"));
        assert_eq!(g.scope_spans[0].spans.len(), 2);
        let a = attrs(g);
        for (k, v) in [
            ("k8s.pod.name", "web-0"),
            ("k8s.namespace.name", "shop"),
            ("k8s.node.name", "node-1"),
            ("k8s.deployment.name", "web"),
            ("podtap.netns.name", "cni-web"),
            ("process.executable.name", "nginx"),
            ("k8s.cluster.name", "prod"),
            ("telemetry.sdk.name", "podtap"),
        ] {
            assert_eq!(a.get(k).map(String::as_str), Some(v), "{k} in {a:?}");
        }
        let a = attrs(find("web", Some("20")));
        assert_eq!(a["process.executable.name"], "python3");
        // Without Kubernetes: service.name is the network namespace's name.
        let a = attrs(find("ptp-client", Some("30")));
        assert_eq!(a["process.executable.name"], "curl");
        assert_eq!(a["podtap.netns.name"], "ptp-client");
        assert!(!a.contains_key("k8s.pod.name"), "{a:?}");
        let a = attrs(find("podtap", None));
        assert!(!a.keys().any(|k| k.starts_with("k8s.pod")), "{a:?}");
        // service.name once per resource, the workload's, not the configured one.
        for g in &groups {
            let n = g
                .resource
                .as_ref()
                .unwrap()
                .attributes
                .iter()
                .filter(|kv| kv.key == "service.name")
                .count();
            assert_eq!(n, 1);
        }
    }

    #[test]
    fn resources_per_request_are_bounded() {
        let spans: Vec<_> = (0..MAX_RESOURCES_PER_REQUEST + 50)
            .map(|i| (SpanResource::service(&format!("svc-{i}")), Span::default()))
            .collect();
        let groups = group(spans, "podtap", &BTreeMap::new());
        assert_eq!(groups.len(), MAX_RESOURCES_PER_REQUEST + 1);
        let rest = groups
            .iter()
            .find(|g| attrs(g)["service.name"] == "podtap")
            .expect("the configured service takes the rest");
        assert_eq!(rest.scope_spans[0].spans.len(), 50);
        let total: usize = groups.iter().map(|g| g.scope_spans[0].spans.len()).sum();
        assert_eq!(total, MAX_RESOURCES_PER_REQUEST + 50, "no span lost");
    }
}
