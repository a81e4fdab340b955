//! The Kubernetes attribution source through the real kube-rs client.
//!
//! No Kubernetes API server can run on these machines (no container runtime, no etcd,
//! no network beyond loopback), so this test serves the API's own protocol from a small
//! HTTP server on loopback (tests/common/kube_api.rs): list and watch of pods, services,
//! endpointslices, replicasets and jobs, with objects built from k8s-openapi types and
//! serialised as the API server does (`kind: PodList`, `metadata.resourceVersion`), watch
//! streams of chunked JSON lines (`{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR",
//! "object":…}`), bookmarks when asked for (`allowWatchBookmarks`), the `spec.nodeName`
//! field selector on pods, and a `410 Gone` (`Status` with `reason: Expired`) that forces
//! the client to list again. podtap's watchers (kube-runtime `watcher` + reflector) run
//! unmodified against it; the test asserts what attribution resolves as pods come and go.

#[path = "common/kube_api.rs"]
mod kube_api;

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube_api::*;
use podtap::config::AttributionConfig;
use podtap::k8s::{Attribution, Peer, Snapshot};
use serde_json::Value;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const NODE: &str = "node1";
// --- objects, built with k8s-openapi types --------------------------------------------

fn owner(api_version: &str, kind: &str, name: &str) -> Vec<OwnerReference> {
    vec![OwnerReference {
        api_version: api_version.into(),
        kind: kind.into(),
        name: name.into(),
        uid: format!("uid-{name}"),
        controller: Some(true),
        ..Default::default()
    }]
}

fn pod(name: &str, node: &str, ip: &str, owners: Vec<OwnerReference>, app: &str) -> Value {
    let p = Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            uid: Some(format!("uid-{name}")),
            labels: Some([("app".to_string(), app.to_string())].into()),
            owner_references: Some(owners),
            ..Default::default()
        },
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            containers: vec![Container {
                name: "main".into(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        status: Some(PodStatus {
            phase: Some("Running".into()),
            pod_ip: Some(ip.into()),
            pod_ips: Some(vec![PodIP { ip: ip.into() }]),
            host_ip: Some("192.168.7.1".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                container_id: Some(format!("containerd://{}", "ef".repeat(32))),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    serde_json::to_value(p).unwrap()
}

fn replica_set(name: &str, deployment: &str) -> Value {
    serde_json::to_value(ReplicaSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            owner_references: Some(owner("apps/v1", "Deployment", deployment)),
            ..Default::default()
        },
        ..Default::default()
    })
    .unwrap()
}

fn service(name: &str, cluster_ip: &str, port: i32) -> Value {
    serde_json::to_value(Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some("shop".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ports: Some(vec![ServicePort {
                port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    })
    .unwrap()
}

fn slice(service: &str, endpoints: &[(&str, &str, &str)]) -> Value {
    serde_json::to_value(EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-x1")),
            namespace: Some("shop".into()),
            labels: Some(
                [(
                    "kubernetes.io/service-name".to_string(),
                    service.to_string(),
                )]
                .into(),
            ),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            endpoints
                .iter()
                .map(|(ip, pod, node)| Endpoint {
                    addresses: vec![ip.to_string()],
                    node_name: Some(node.to_string()),
                    target_ref: Some(ObjectReference {
                        kind: Some("Pod".into()),
                        name: Some(pod.to_string()),
                        namespace: Some("shop".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: None,
    })
    .unwrap()
}

// --- the test ------------------------------------------------------------------------

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn pod_name(snap: &Snapshot, addr: &str) -> Option<String> {
    snap.peer(ip(addr), 80, true)
        .pod()
        .and_then(|p| p.name.as_ref().map(|n| n.to_string()))
}

/// Wait until the published snapshot satisfies `cond` (watch events arrive
/// asynchronously); panics after 15 s with `what`.
fn eventually(a: &Attribution, what: &str, cond: impl Fn(&Snapshot) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond(&a.snapshot()) {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn config(kubeconfig: &std::path::Path, selector: &str) -> AttributionConfig {
    let text = format!(
        "[attribution]\nnetns = false\nlabel_keys = [\"app\"]\n[attribution.kubernetes]\nenabled = true\n\
         kubeconfig = \"{}\"\nnode_name = \"{NODE}\"\n[attribution.selector]\n{selector}\n",
        kubeconfig.display()
    );
    podtap::config::Config::parse(&text, std::path::Path::new("kube-test.toml"))
        .unwrap()
        .attribution
}

#[test]
fn pods_come_and_go_through_list_watch_bookmarks_and_410() {
    let api = FakeApi::start();
    api.apply(REPLICASETS, replica_set("web-7d9f", "web"));
    api.apply(
        PODS,
        pod(
            "web-7d9f-a",
            NODE,
            "10.0.1.5",
            owner("apps/v1", "ReplicaSet", "web-7d9f"),
            "web",
        ),
    );
    api.apply(
        PODS,
        pod(
            "elsewhere",
            "node2",
            "10.0.2.2",
            owner("apps/v1", "ReplicaSet", "web-7d9f"),
            "web",
        ),
    );
    api.apply(SERVICES, service("web", "10.96.0.10", 80));
    api.apply(
        SLICES,
        slice(
            "web",
            &[
                ("10.0.1.5", "web-7d9f-a", NODE),
                ("10.0.3.3", "web-7d9f-r", "node3"),
            ],
        ),
    );

    let dir = tempfile::tempdir().unwrap();
    let a = Attribution::start(&config(
        &api.kubeconfig(dir.path()),
        "match_labels = { app = \"web\" }",
    ))
    .expect("connects to the fixture API");
    assert!(a.wait_synced(Duration::from_secs(15)), "initial lists");
    eventually(&a, "the web pod is known", |s| {
        pod_name(s, "10.0.1.5").is_some()
    });

    // Pods are listed and watched for this node only.
    let pod_lists = api.requests(PODS, false);
    assert!(!pod_lists.is_empty());
    assert!(
        pod_lists
            .iter()
            .all(|q| q.contains("fieldSelector=spec.nodeName%3Dnode1")),
        "{pod_lists:?}"
    );
    let pod_watches = api.requests(PODS, true);
    assert!(
        pod_watches
            .iter()
            .all(|q| q.contains("allowWatchBookmarks=true")),
        "{pod_watches:?}"
    );

    let snap = a.snapshot();
    let web = snap.peer(ip("10.0.1.5"), 80, true);
    let web = web.pod().expect("a pod");
    assert_eq!(web.attr("k8s.pod.name"), Some("web-7d9f-a"));
    assert_eq!(web.attr("k8s.namespace.name"), Some("shop"));
    assert_eq!(web.attr("k8s.pod.uid"), Some("uid-web-7d9f-a"));
    assert_eq!(web.attr("k8s.node.name"), Some(NODE));
    assert_eq!(
        web.attr("k8s.deployment.name"),
        Some("web"),
        "ReplicaSet → Deployment"
    );
    assert_eq!(web.attr("k8s.container.name"), Some("main"));
    assert_eq!(web.attr("k8s.pod.label.app"), Some("web"));
    assert_eq!(web.attr("k8s.service.name"), Some("web"));
    assert!(web.selected);
    // The other node's pod is not watched here.
    assert_eq!(pod_name(&snap, "10.0.2.2"), None);
    // A Service's ClusterIP, and a pod on another node known as its endpoint.
    let Peer::Service(svc) = snap.peer(ip("10.96.0.10"), 80, true) else {
        panic!("ClusterIP resolves to the Service")
    };
    assert_eq!((svc.name.as_str(), svc.namespace.as_str()), ("web", "shop"));
    assert_eq!(pod_name(&snap, "10.0.3.3").as_deref(), Some("web-7d9f-r"));

    // ADDED: a StatefulSet pod appears.
    api.apply(
        PODS,
        pod(
            "db-0",
            NODE,
            "10.0.1.6",
            owner("apps/v1", "StatefulSet", "db"),
            "db",
        ),
    );
    eventually(&a, "db-0 is added", |s| {
        pod_name(s, "10.0.1.6").as_deref() == Some("db-0")
    });
    let db = a
        .snapshot()
        .peer(ip("10.0.1.6"), 5432, true)
        .pod()
        .unwrap()
        .clone();
    assert_eq!(db.attr("k8s.statefulset.name"), Some("db"));
    assert!(!db.selected, "outside the selector app=web");

    // MODIFIED: the ReplicaSet's owner shows up later: the pod's workload follows.
    api.apply(
        PODS,
        pod(
            "late-rs-pod",
            NODE,
            "10.0.1.9",
            owner("apps/v1", "ReplicaSet", "api-55c"),
            "api",
        ),
    );
    eventually(&a, "late-rs-pod is added", |s| {
        pod_name(s, "10.0.1.9").is_some()
    });
    assert_eq!(
        a.snapshot()
            .peer(ip("10.0.1.9"), 80, true)
            .pod()
            .unwrap()
            .attr("k8s.replicaset.name"),
        Some("api-55c")
    );
    api.apply(REPLICASETS, replica_set("api-55c", "api"));
    eventually(&a, "the late ReplicaSet resolves to its Deployment", |s| {
        s.peer(ip("10.0.1.9"), 80, true)
            .pod()
            .and_then(|p| p.attr("k8s.deployment.name").map(String::from))
            == Some("api".into())
    });

    // DELETED: the web pod goes (its EndpointSlice is updated as the control plane does).
    let before = a.snapshot().generation;
    api.apply(SLICES, slice("web", &[("10.0.3.3", "web-7d9f-r", "node3")]));
    api.delete(
        PODS,
        pod(
            "web-7d9f-a",
            NODE,
            "10.0.1.5",
            owner("apps/v1", "ReplicaSet", "web-7d9f"),
            "web",
        ),
    );
    eventually(&a, "web-7d9f-a is deleted", |s| {
        pod_name(s, "10.0.1.5").is_none()
    });
    assert!(a.snapshot().generation > before);
    assert_eq!(
        a.snapshot().peer(ip("10.0.1.5"), 80, true).kind(),
        Some("external")
    );

    // BOOKMARK: the next watch resumes from the bookmark's resourceVersion, which is
    // newer than any pod event (other collections moved the version on).
    api.apply(SERVICES, service("api", "10.96.0.20", 8080));
    eventually(&a, "the api Service is known", |s| {
        s.peer(ip("10.96.0.20"), 8080, true).kind() == Some("service")
    });
    let bookmark = api.bookmark(PODS);
    std::thread::sleep(Duration::from_millis(200));
    api.close_watches(PODS);
    let deadline = Instant::now() + Duration::from_secs(15);
    let want = format!("resourceVersion={bookmark}");
    while !api.requests(PODS, true).iter().any(|q| q.contains(&want)) {
        assert!(
            Instant::now() < deadline,
            "no watch resumed from the bookmark: {:?}",
            api.requests(PODS, true)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // 410 Gone: changes made while history was compacted are seen only by a new list.
    let lists_before = api.requests(PODS, false).len();
    api.change_silently(PODS, pod("db-0", NODE, "10.0.1.6", vec![], "db"), true);
    api.change_silently(
        PODS,
        pod(
            "cache-0",
            NODE,
            "10.0.1.7",
            owner("apps/v1", "StatefulSet", "cache"),
            "cache",
        ),
        false,
    );
    api.expire(PODS);
    eventually(&a, "the re-list drops db-0 and finds cache-0", |s| {
        pod_name(s, "10.0.1.6").is_none() && pod_name(s, "10.0.1.7").as_deref() == Some("cache-0")
    });
    assert!(
        api.requests(PODS, false).len() > lists_before,
        "410 Gone made the client list again"
    );

    // SIGHUP-style reload: a new selector applies at once, without a new list.
    let lists = api.requests(PODS, false).len();
    let generation = a.snapshot().generation;
    a.reload(&config(
        &api.kubeconfig(dir.path()),
        "match_labels = { app = \"cache\" }",
    ))
    .unwrap();
    let snap = a.snapshot();
    assert!(snap.generation > generation);
    let cache = snap.peer(ip("10.0.1.7"), 6379, true).pod().unwrap().clone();
    assert!(cache.selected);
    assert!(!snap.peer(ip("10.0.1.9"), 80, true).pod().unwrap().selected);
    assert_eq!(
        api.requests(PODS, false).len(),
        lists,
        "reload keeps the watch state"
    );
}

#[test]
fn unreachable_api_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("kubeconfig");
    std::fs::write(&bad, "this: is: not: a kubeconfig").unwrap();
    let err = Attribution::start(&config(&bad, ""))
        .err()
        .expect("bad kubeconfig")
        .to_string();
    assert!(err.contains(&bad.display().to_string()), "{err}");
}
