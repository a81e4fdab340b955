//! The Kubernetes attribution source through the real kube-rs client.
//!
//! No Kubernetes API server can run on these machines (no container runtime, no etcd,
//! no network beyond loopback), so this test serves the API's own protocol from a small
//! HTTP server on loopback: list and watch of pods, services, endpointslices,
//! replicasets and jobs, with objects built from k8s-openapi types and serialised as
//! the API server does (`kind: PodList`, `metadata.resourceVersion`), watch streams of
//! chunked JSON lines (`{"type":"ADDED"|"MODIFIED"|"DELETED"|"BOOKMARK"|"ERROR",
//! "object":…}`), bookmarks when asked for (`allowWatchBookmarks`), the `spec.nodeName`
//! field selector on pods, and a `410 Gone` (`Status` with `reason: Expired`) that forces
//! the client to list again. podtap's watchers (kube-runtime `watcher` + reflector) run
//! unmodified against it; the test asserts what attribution resolves as pods come and go.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, Pod, PodIP, PodSpec, PodStatus, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use podtap::config::AttributionConfig;
use podtap::k8s::{Attribution, Peer, Snapshot};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const NODE: &str = "node1";

/// One resource collection of the fake API.
struct Collection {
    list_kind: &'static str,
    objects: BTreeMap<String, Value>,
    /// (resourceVersion, event type, object) of every change, for watches that resume.
    history: Vec<(u64, &'static str, Value)>,
    /// Watches resuming from before this resourceVersion get 410 Gone.
    compacted: u64,
}

struct Watch {
    path: String,
    node: Option<String>,
    tx: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct ApiState {
    rv: u64,
    collections: HashMap<&'static str, Collection>,
    watches: Vec<Watch>,
    /// Every request: (path, query).
    requests: Vec<(String, String)>,
}

const PODS: &str = "/api/v1/pods";
const SERVICES: &str = "/api/v1/services";
const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
const REPLICASETS: &str = "/apis/apps/v1/replicasets";
const JOBS: &str = "/apis/batch/v1/jobs";

fn key_of(obj: &Value) -> String {
    format!(
        "{}/{}",
        obj["metadata"]["namespace"].as_str().unwrap_or(""),
        obj["metadata"]["name"].as_str().unwrap_or("")
    )
}

fn on_node(obj: &Value, node: &Option<String>) -> bool {
    node.as_deref()
        .is_none_or(|n| obj["spec"]["nodeName"].as_str() == Some(n))
}

fn event_line(kind: &str, obj: &Value) -> Bytes {
    let mut s = serde_json::to_vec(&json!({"type": kind, "object": obj})).unwrap();
    s.push(b'\n');
    Bytes::from(s)
}

/// The API server stand-in: a tokio runtime serving HTTP/1.1 on a loopback port.
struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    port: u16,
    _rt: tokio::runtime::Runtime,
}

impl FakeApi {
    fn start() -> FakeApi {
        let mut st = ApiState {
            rv: 100,
            ..Default::default()
        };
        for (path, list_kind) in [
            (PODS, "PodList"),
            (SERVICES, "ServiceList"),
            (SLICES, "EndpointSliceList"),
            (REPLICASETS, "ReplicaSetList"),
            (JOBS, "JobList"),
        ] {
            st.collections.insert(
                path,
                Collection {
                    list_kind,
                    objects: BTreeMap::new(),
                    history: Vec::new(),
                    compacted: 0,
                },
            );
        }
        let state = Arc::new(Mutex::new(st));
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let port = listener.local_addr().unwrap().port();
        let st = state.clone();
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        FakeApi {
            state,
            port,
            _rt: rt,
        }
    }

    /// Create or replace an object: ADDED or MODIFIED to watchers.
    fn apply(&self, path: &'static str, obj: Value) {
        self.change(path, obj, false, true);
    }

    /// DELETED to watchers.
    fn delete(&self, path: &'static str, obj: Value) {
        self.change(path, obj, true, true);
    }

    /// Change the stored objects without telling any watch: only a new list sees it.
    fn change_silently(&self, path: &'static str, obj: Value, delete: bool) {
        self.change(path, obj, delete, false);
    }

    fn change(&self, path: &'static str, mut obj: Value, delete: bool, notify: bool) {
        let mut st = self.state.lock().unwrap();
        st.rv += 1;
        let rv = st.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let c = st.collections.get_mut(path).unwrap();
        let key = key_of(&obj);
        let kind = if delete {
            c.objects.remove(&key);
            "DELETED"
        } else if c.objects.insert(key, obj.clone()).is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        if !notify {
            // As if the change happened while nobody watched and its history is gone.
            c.compacted = rv;
            return;
        }
        c.history.push((rv, kind, obj.clone()));
        let line = event_line(kind, &obj);
        st.watches.retain(|w| {
            w.path != path || !on_node(&obj, &w.node) || w.tx.send(line.clone()).is_ok()
        });
    }

    /// A BOOKMARK at the current resourceVersion to the watches of `path`.
    fn bookmark(&self, path: &'static str) -> u64 {
        let mut st = self.state.lock().unwrap();
        let rv = st.rv;
        let (api_version, kind) = api_kind(path);
        let line = event_line(
            "BOOKMARK",
            &json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": rv.to_string()}}),
        );
        st.watches
            .retain(|w| w.path != path || w.tx.send(line.clone()).is_ok());
        rv
    }

    /// End the watches of `path` as the server's watch timeout does.
    fn close_watches(&self, path: &'static str) {
        self.state
            .lock()
            .unwrap()
            .watches
            .retain(|w| w.path != path);
    }

    /// Compact `path`'s history: open watches get a 410 Gone ERROR event and end, and
    /// resuming from any older resourceVersion is refused the same way.
    fn expire(&self, path: &'static str) {
        let mut st = self.state.lock().unwrap();
        let rv = st.rv;
        st.collections.get_mut(path).unwrap().compacted = rv + 1;
        let line = event_line("ERROR", &gone());
        for w in st.watches.iter().filter(|w| w.path == path) {
            let _ = w.tx.send(line.clone());
        }
        st.watches.retain(|w| w.path != path);
    }

    fn requests(&self, path: &str, watch: bool) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, q)| p == path && q.contains("watch=true") == watch)
            .map(|(_, q)| q.clone())
            .collect()
    }

    fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let p = dir.join("kubeconfig");
        std::fs::write(
            &p,
            format!(
                "apiVersion: v1
kind: Config
clusters:
- name: fixture
  cluster:
    server: http://127.0.0.1:{}
contexts:
- name: fixture
  context:
    cluster: fixture
    user: fixture
current-context: fixture
users:
- name: fixture
  user: {{}}
",
                self.port
            ),
        )
        .unwrap();
        p
    }
}

fn api_kind(path: &str) -> (&'static str, &'static str) {
    match path {
        PODS => ("v1", "Pod"),
        SERVICES => ("v1", "Service"),
        SLICES => ("discovery.k8s.io/v1", "EndpointSlice"),
        REPLICASETS => ("apps/v1", "ReplicaSet"),
        _ => ("batch/v1", "Job"),
    }
}

fn gone() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": "too old resource version", "reason": "Expired", "code": 410})
}

fn query_param<'a>(q: &'a str, key: &str) -> Option<&'a str> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

type Body = BoxBody<Bytes, Infallible>;

async fn handle(
    state: Arc<Mutex<ApiState>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let mut st = state.lock().unwrap();
    st.requests.push((path.clone(), query.clone()));
    let node = query_param(&query, "fieldSelector")
        .map(|f| f.replace("%3D", "="))
        .and_then(|f| f.strip_prefix("spec.nodeName=").map(String::from));
    let rv_now = st.rv;
    let Some(c) = st.collections.get(path.as_str()) else {
        let body = Full::new(Bytes::from(
            serde_json::to_vec(&json!({"kind": "Status", "code": 404, "reason": "NotFound"}))
                .unwrap(),
        ));
        return Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(body.boxed())
            .unwrap());
    };
    if query_param(&query, "watch") != Some("true") {
        let items: Vec<&Value> = c.objects.values().filter(|o| on_node(o, &node)).collect();
        let list = json!({"apiVersion": api_kind(&path).0, "kind": c.list_kind,
                          "metadata": {"resourceVersion": rv_now.to_string()}, "items": items});
        let body = Full::new(Bytes::from(serde_json::to_vec(&list).unwrap()));
        return Ok(Response::builder()
            .header("content-type", "application/json")
            .body(body.boxed())
            .unwrap());
    }
    let from: u64 = query_param(&query, "resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = mpsc::unbounded_channel::<Bytes>();
    if from < c.compacted {
        let _ = tx.send(event_line("ERROR", &gone()));
    } else {
        for (rv, kind, obj) in &c.history {
            if *rv > from && on_node(obj, &node) {
                let _ = tx.send(event_line(kind, obj));
            }
        }
        let path_key = path.clone();
        st.watches.push(Watch {
            path: path_key,
            node,
            tx,
        });
    }
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    Ok(Response::builder()
        .header("content-type", "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap())
}

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
