//! A stand-in for the Kubernetes API server, for tests that run podtap's kube-rs
//! watchers (through the real client library) where no API server can run (no
//! container runtime, no etcd, no network beyond loopback).
//!
//! It serves the API's own protocol from a small HTTP server on loopback: list and watch
//! of pods, services, endpointslices, replicasets, jobs and podtappolicies, with objects
//! serialised as the API server does (`kind: PodList`, `metadata.resourceVersion`),
//! watch streams of chunked JSON lines (`{"type":"ADDED"|"MODIFIED"|"DELETED"|
//! "BOOKMARK"|"ERROR","object":…}`), bookmarks when asked for (`allowWatchBookmarks`),
//! the `spec.nodeName` field selector on pods, a `410 Gone` (`Status` with `reason:
//! Expired`) that forces the client to list again, and the status subresource of
//! podtappolicies: a server-side apply `PATCH …/status` is recorded, merged into the
//! object as the API server merges a list-map keyed by `node` (`status.nodes`), and
//! sent to watchers as MODIFIED, as a real status write is.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use hyper::{Request, Response, StatusCode};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

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
    /// Every status write: its path, query, content type and body.
    patches: Vec<StatusPatch>,
}

/// One status write the API received.
#[derive(Clone, Debug)]
pub struct StatusPatch {
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

pub const PODS: &str = "/api/v1/pods";
pub const SERVICES: &str = "/api/v1/services";
pub const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
pub const REPLICASETS: &str = "/apis/apps/v1/replicasets";
pub const JOBS: &str = "/apis/batch/v1/jobs";
pub const POLICIES: &str = "/apis/podtap.io/v1alpha1/podtappolicies";
const POLICIES_NS: &str = "/apis/podtap.io/v1alpha1/namespaces/";

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

impl ApiState {
    fn change(&mut self, path: &str, mut obj: Value, delete: bool, notify: bool) {
        self.rv += 1;
        let rv = self.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let c = self.collections.get_mut(path).unwrap();
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
        self.watches.retain(|w| {
            w.path != path || !on_node(&obj, &w.node) || w.tx.send(line.clone()).is_ok()
        });
    }
}

/// The API server stand-in: a tokio runtime serving HTTP/1.1 on a loopback port.
pub struct FakeApi {
    state: Arc<Mutex<ApiState>>,
    pub port: u16,
    _rt: tokio::runtime::Runtime,
}

impl FakeApi {
    pub fn start() -> FakeApi {
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
            (POLICIES, "PodtapPolicyList"),
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
    pub fn apply(&self, path: &'static str, obj: Value) {
        self.change(path, obj, false, true);
    }

    /// DELETED to watchers.
    pub fn delete(&self, path: &'static str, obj: Value) {
        self.change(path, obj, true, true);
    }

    /// Change the stored objects without telling any watch: only a new list sees it.
    pub fn change_silently(&self, path: &'static str, obj: Value, delete: bool) {
        self.change(path, obj, delete, false);
    }

    fn change(&self, path: &'static str, obj: Value, delete: bool, notify: bool) {
        self.state.lock().unwrap().change(path, obj, delete, notify);
    }
    /// A BOOKMARK at the current resourceVersion to the watches of `path`.
    pub fn bookmark(&self, path: &'static str) -> u64 {
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
    pub fn close_watches(&self, path: &'static str) {
        self.state
            .lock()
            .unwrap()
            .watches
            .retain(|w| w.path != path);
    }

    /// Compact `path`'s history: open watches get a 410 Gone ERROR event and end, and
    /// resuming from any older resourceVersion is refused the same way.
    pub fn expire(&self, path: &'static str) {
        let mut st = self.state.lock().unwrap();
        let rv = st.rv;
        st.collections.get_mut(path).unwrap().compacted = rv + 1;
        let line = event_line("ERROR", &gone());
        for w in st.watches.iter().filter(|w| w.path == path) {
            let _ = w.tx.send(line.clone());
        }
        st.watches.retain(|w| w.path != path);
    }

    pub fn requests(&self, path: &str, watch: bool) -> Vec<String> {
        self.state
            .lock()
            .unwrap()
            .requests
            .iter()
            .filter(|(p, q)| p == path && q.contains("watch=true") == watch)
            .map(|(_, q)| q.clone())
            .collect()
    }

    /// Serve `path` no more (404), as an API server without a resource's CRD.
    pub fn remove(&self, path: &str) {
        self.state.lock().unwrap().collections.remove(path);
    }

    /// The status writes received so far.
    pub fn patches(&self) -> Vec<StatusPatch> {
        self.state.lock().unwrap().patches.clone()
    }

    /// The stored object `namespace/name` of `path`.
    pub fn get(&self, path: &str, key: &str) -> Option<Value> {
        self.state.lock().unwrap().collections[path]
            .objects
            .get(key)
            .cloned()
    }

    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
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

pub fn api_kind(path: &str) -> (&'static str, &'static str) {
    match path {
        PODS => ("v1", "Pod"),
        SERVICES => ("v1", "Service"),
        SLICES => ("discovery.k8s.io/v1", "EndpointSlice"),
        REPLICASETS => ("apps/v1", "ReplicaSet"),
        POLICIES => ("podtap.io/v1alpha1", "PodtapPolicy"),
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
    if req.method() == hyper::Method::PATCH {
        return Ok(patch_status(&state, req, path, query).await);
    }
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

fn json_response(code: StatusCode, v: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(serde_json::to_vec(v).unwrap())).boxed())
        .unwrap()
}

/// `PATCH /apis/podtap.io/v1alpha1/namespaces/<ns>/podtappolicies/<name>/status`: record
/// it; merge the applied `status.nodes` entries into the object by `node` (other nodes'
/// entries stay, as server-side apply keeps other managers' list-map entries); bump the
/// resourceVersion (not the generation) and tell the watchers; answer the object.
async fn patch_status(
    state: &Arc<Mutex<ApiState>>,
    req: Request<hyper::body::Incoming>,
    path: String,
    query: String,
) -> Response<Body> {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let body: Value = body
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null);
    let mut st = state.lock().unwrap();
    st.requests.push((path.clone(), query.clone()));
    st.patches.push(StatusPatch {
        path: path.clone(),
        query,
        content_type,
        body: body.clone(),
    });
    let parts: Vec<&str> = path
        .strip_prefix(POLICIES_NS)
        .unwrap_or("")
        .split('/')
        .collect();
    let [ns, "podtappolicies", name, "status"] = parts[..] else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "code": 404}),
        );
    };
    let key = format!("{ns}/{name}");
    let Some(mut obj) = st.collections[POLICIES].objects.get(&key).cloned() else {
        return json_response(
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404,
                    "reason": "NotFound", "message": format!("podtappolicies {name:?} not found")}),
        );
    };
    let mut nodes: Vec<Value> = obj["status"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for e in body["status"]["nodes"].as_array().into_iter().flatten() {
        nodes.retain(|n| n["node"] != e["node"]);
        nodes.push(e.clone());
    }
    obj["status"] = json!({"nodes": nodes});
    st.change(POLICIES, obj, false, true);
    let stored = st.collections[POLICIES].objects[&key].clone();
    json_response(StatusCode::OK, &stored)
}
