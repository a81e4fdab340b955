//! Health probes end to end: two `podtap run` instances in two network namespaces joined
//! by a veth pair stand in for two nodes, each configured with the other as its static
//! neighbour; a Python HTTP server in the second namespace stands in for a pod checked
//! from the first "node" by ICMP echo, TCP connect and HTTP GET, plus two checks that
//! must fail (a closed port, a missing page). The neighbour discovery through the
//! Kubernetes API is tested in-process (`kubernetes_discovery_picks_the_ring_neighbours`),
//! against a small HTTP server on loopback that answers the API's own JSON shape.

mod common;

use common::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const PORT: u16 = 9464;
const POD_PORT: u16 = 8080;
/// An address on the veth's subnet that no namespace holds: echo requests go unanswered.
const NOBODY: &str = "10.200.0.9";

/// A node's config: the two nodes as static peers, fast probes.
fn node_config(node: &str, pods: &str) -> String {
    format!(
        r#"
[capture]
mode = "tpacket"
[attribution]
netns = false
[attribution.kubernetes]
node_name = "{node}"
[control]
enabled = false
[export.prometheus]
listen = "0.0.0.0:{PORT}"
[probes]
enabled = true
period_ms = 300
timeout_ms = 250
failure_threshold = 3
[probes.api_server]
direct = false
dns = false
[probes.peers]
discovery = "static"
max_neighbours = 2
nodes = [
  {{ node = "node-a", address = "{SERVER_IP}:{PORT}" }},
  {{ node = "node-b", address = "{CLIENT_IP}:{PORT}" }},
]
{pods}
"#
    )
}

struct Node {
    ns_name: String,
    ip: &'static str,
    iface: String,
    cfg: std::path::PathBuf,
    dir: tempfile::TempDir,
}

impl Node {
    fn new(ns: &Netns, ip: &'static str, iface: &str, node: &str, pods: &str) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let cfg = dir.path().join("podtap.toml");
        std::fs::write(&cfg, node_config(node, pods)).unwrap();
        Node {
            ns_name: ns.name.clone(),
            ip,
            iface: iface.to_string(),
            cfg,
            dir,
        }
    }

    fn start(&self) -> Daemon {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns_name, env!("CARGO_BIN_EXE_podtap")])
            .args(["--config", self.cfg.to_str().unwrap(), "run"])
            .args(["--output", "none", "--interface", &self.iface]);
        let d = Daemon::start_cmd(cmd, self.dir.path());
        d.wait_log("health probes started", Duration::from_secs(10));
        d
    }

    /// GET `path` from this node's server, from inside its namespace.
    fn get(&self, path: &str) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_name,
                "curl",
                "-s",
                "--max-time",
                "2",
            ])
            .arg(format!("http://{}:{PORT}{path}", self.ip))
            .output()
            .expect("curl is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn alive(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/alive")).unwrap_or(serde_json::Value::Null)
    }

    /// The value of the series `name{labels}` on /metrics, exactly that label set.
    fn metric(&self, series: &str) -> Option<f64> {
        let text = self.get("/metrics");
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }
}

/// The `/alive` entry of `target` in `list` (`neighbours` or `checks`).
fn entry<'a>(
    alive: &'a serde_json::Value,
    list: &str,
    target: &str,
    method: &str,
) -> Option<&'a serde_json::Value> {
    alive[list]
        .as_array()?
        .iter()
        .find(|e| e["target"] == target && e["method"] == method)
}

/// Poll `cond` every 100 ms for up to `secs`; panics with `what` and the last state.
fn wait_for(secs: u64, what: &str, mut cond: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        match cond() {
            Ok(()) => return,
            Err(state) if Instant::now() > deadline => panic!("{what}: {state}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn peer_series(metric: &str, node: &str) -> String {
    format!(
        "{metric}{{podtap_probe_target_type=\"peer\",podtap_probe_target=\"{node}\",podtap_probe_method=\"http\"}}"
    )
}

fn neighbour_status(n: &Node, peer: &str) -> Result<(), String> {
    let a = n.alive();
    match entry(&a, "neighbours", peer, "http") {
        Some(e) if e["status"] == "up" => Ok(()),
        _ => Err(a.to_string()),
    }
}

#[test]
fn two_nodes_probe_each_other_and_pods() {
    require_root();
    let pair = Pair::new();
    let www = tempfile::tempdir().unwrap();
    std::fs::write(www.path().join("index.html"), "pod\n").unwrap();
    let _pod = python_http(&pair.client, CLIENT_IP, POD_PORT, www.path());
    let pods = format!(
        r#"
[[probes.pods]]
name = "web"
method = "icmp"
address = "{CLIENT_IP}"
[[probes.pods]]
name = "web"
method = "tcp"
address = "{CLIENT_IP}:{POD_PORT}"
[[probes.pods]]
name = "web"
method = "http"
address = "http://{CLIENT_IP}:{POD_PORT}/"
[[probes.pods]]
name = "closed"
method = "tcp"
address = "{CLIENT_IP}:{closed}"
failure_threshold = 2
[[probes.pods]]
name = "nobody"
method = "icmp"
address = "{NOBODY}"
failure_threshold = 2
[[probes.pods]]
name = "missing"
method = "http"
address = "http://{CLIENT_IP}:{POD_PORT}/missing"
failure_threshold = 2
"#,
        closed = POD_PORT + 1
    );
    let a = Node::new(&pair.server, SERVER_IP, &pair.server_if, "node-a", &pods);
    let b = Node::new(&pair.client, CLIENT_IP, &pair.client_if, "node-b", "");
    let _da = a.start();
    let mut db = b.start();

    // Both see the other up; each has exactly one neighbour (itself is never one).
    wait_for(15, "node-a sees node-b up", || {
        neighbour_status(&a, "node-b")
    });
    wait_for(15, "node-b sees node-a up", || {
        neighbour_status(&b, "node-a")
    });
    // The series reach /metrics within a second (the probes hand them over each second).
    for (n, other) in [(&a, "node-b"), (&b, "node-a")] {
        let alive = n.alive();
        assert_eq!(alive["neighbours"].as_array().unwrap().len(), 1, "{alive}");
        wait_for(5, "the peer's series", || {
            let up = n.metric(&peer_series("podtap_probe_up", other));
            let cf = n.metric(&peer_series("podtap_probe_consecutive_failures", other));
            let count = n.metric(&peer_series("podtap_probe_duration_seconds_count", other));
            if up == Some(1.0) && cf == Some(0.0) && count > Some(0.0) {
                Ok(())
            } else {
                Err(n.get("/metrics"))
            }
        });
    }
    assert_eq!(a.get("/alwayshappy"), "ok\n");

    // The pod checks: up by ICMP, TCP and HTTP; the closed port and the missing page are
    // down, counted with their error type.
    let pod = |metric: &str, target: &str, method: &str, extra: &str| {
        format!(
            "{metric}{{podtap_probe_target_type=\"pod\",podtap_probe_target=\"{target}\",podtap_probe_method=\"{method}\"{extra}}}"
        )
    };
    wait_for(15, "the pod checks settle", || {
        let alive = a.alive();
        let ok = ["icmp", "tcp", "http"]
            .iter()
            .all(|m| entry(&alive, "checks", "web", m).is_some_and(|e| e["status"] == "up"))
            && entry(&alive, "checks", "closed", "tcp").is_some_and(|e| e["status"] == "down")
            && entry(&alive, "checks", "nobody", "icmp").is_some_and(|e| e["status"] == "down")
            && entry(&alive, "checks", "missing", "http").is_some_and(|e| e["status"] == "down");
        if ok { Ok(()) } else { Err(alive.to_string()) }
    });
    wait_for(5, "the pod checks' series", || {
        let metrics = a.get("/metrics");
        let ok = ["icmp", "tcp", "http"]
            .iter()
            .all(|m| a.metric(&pod("podtap_probe_up", "web", m, "")) == Some(1.0))
            && a.metric(&pod("podtap_probe_up", "closed", "tcp", "")) == Some(0.0)
            && a.metric(&pod("podtap_probe_up", "missing", "http", "")) == Some(0.0);
        if ok { Ok(()) } else { Err(metrics) }
    });
    let metrics = a.get("/metrics");
    for m in ["icmp", "tcp", "http"] {
        assert!(
            !metrics.contains(&format!(
                "podtap_probe_target=\"web\",podtap_probe_method=\"{m}\",type="
            )),
            "web/{m} never failed: {metrics}"
        );
    }
    assert!(
        a.metric(&pod(
            "podtap_probe_errors_total",
            "closed",
            "tcp",
            ",type=\"refused\""
        )) >= Some(2.0),
        "{metrics}"
    );
    assert!(
        a.metric(&pod(
            "podtap_probe_consecutive_failures",
            "closed",
            "tcp",
            ""
        )) >= Some(2.0)
    );
    assert!(
        a.metric(&pod(
            "podtap_probe_errors_total",
            "nobody",
            "icmp",
            ",type=\"timeout\""
        )) >= Some(2.0),
        "{metrics}"
    );
    assert!(
        a.metric(&pod(
            "podtap_probe_errors_total",
            "missing",
            "http",
            ",type=\"http_status\""
        )) >= Some(2.0),
        "{metrics}"
    );
    let alive = a.alive();
    let closed = entry(&alive, "checks", "closed", "tcp").unwrap();
    assert_eq!(closed["last_error"]["type"], "refused", "{alive}");
    assert_eq!(alive["healthy"], false, "two checks are down: {alive}");

    // node-b stops: node-a counts refused connections and, after three, reports it down.
    let refused = peer_series("podtap_probe_errors_total", "node-b")
        .replace("\"http\"}", "\"http\",type=\"refused\"}");
    let before = a.metric(&refused).unwrap_or(0.0);
    db.stop_raw();
    wait_for(15, "node-a sees node-b down", || {
        let alive = a.alive();
        match entry(&alive, "neighbours", "node-b", "http") {
            Some(e) if e["status"] == "down" && e["consecutive_failures"].as_u64() >= Some(3) => {
                Ok(())
            }
            _ => Err(alive.to_string()),
        }
    });
    wait_for(5, "the refused counter and the gauges follow", || {
        let errors = a.metric(&refused).unwrap_or(0.0);
        let up = a.metric(&peer_series("podtap_probe_up", "node-b"));
        let cf = a.metric(&peer_series("podtap_probe_consecutive_failures", "node-b"));
        if errors >= before + 3.0 && up == Some(0.0) && cf >= Some(3.0) {
            Ok(())
        } else {
            Err(format!(
                "errors {before} -> {errors}, up {up:?}, consecutive {cf:?}"
            ))
        }
    });

    // node-b is back: up again on both sides.
    let _db2 = b.start();
    wait_for(15, "node-a sees node-b up again", || {
        neighbour_status(&a, "node-b")
    });
    wait_for(15, "node-b sees node-a up again", || {
        neighbour_status(&b, "node-a")
    });
    wait_for(5, "the gauges follow", || {
        let up = a.metric(&peer_series("podtap_probe_up", "node-b"));
        let cf = a.metric(&peer_series("podtap_probe_consecutive_failures", "node-b"));
        if up == Some(1.0) && cf == Some(0.0) {
            Ok(())
        } else {
            Err(format!("{up:?} {cf:?}"))
        }
    });
}

/// The API server stand-in: `GET /api/v1/namespaces/podtap/pods` answers a `PodList`
/// (the API's JSON shape, as kube-rs parses it) of `pods`, `GET /livez` answers
/// `livez_status`; every other path, and a peer's `/alwayshappy`, answers 200. Each
/// request's path and query is kept.
#[derive(Default)]
struct FakeApi {
    pods: Vec<serde_json::Value>,
    livez_status: u16,
    requests: Vec<String>,
}

type Shared = std::sync::Arc<std::sync::Mutex<FakeApi>>;

fn pod(name: &str, node: &str, ip: Option<&str>, deleting: bool) -> serde_json::Value {
    let mut p = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "podtap",
            "labels": {"app.kubernetes.io/name": "podtap"},
            "resourceVersion": "7",
        },
        "spec": {"nodeName": node, "hostNetwork": true, "containers": [{"name": "podtap"}]},
        "status": {"phase": "Running"},
    });
    if let Some(ip) = ip {
        p["status"]["podIP"] = ip.into();
    }
    if deleting {
        p["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z".into();
    }
    p
}

/// Serve `state` on `addr` (loopback) from a runtime of its own; returns the bound port.
fn serve(rt: &tokio::runtime::Runtime, addr: &str, state: Shared) -> u16 {
    use http_body_util::Full;
    let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let st = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let mut s = st.lock().unwrap();
                    let path = req.uri().path().to_string();
                    s.requests
                        .push(format!("{path}?{}", req.uri().query().unwrap_or("")));
                    let (status, body) = match path.as_str() {
                        "/api/v1/namespaces/podtap/pods" => (
                            200,
                            serde_json::json!({
                                "apiVersion": "v1",
                                "kind": "PodList",
                                "metadata": {"resourceVersion": "7"},
                                "items": s.pods,
                            })
                            .to_string(),
                        ),
                        "/livez" => (s.livez_status, "ok".to_string()),
                        _ => (200, "ok\n".to_string()),
                    };
                    let resp = hyper::Response::builder()
                        .status(status)
                        .header("content-type", "application/json")
                        .body(Full::new(bytes::Bytes::from(body)))
                        .unwrap();
                    async move { Ok::<_, std::convert::Infallible>(resp) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    port
}

/// GET `url` on loopback.
fn get(url: &str) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "2", url])
        .output()
        .expect("curl is installed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn series(metric: &str, ty: &str, target: &str, method: &str) -> String {
    format!(
        "{metric}{{podtap_probe_target_type=\"{ty}\",podtap_probe_target=\"{target}\",podtap_probe_method=\"{method}\"}}"
    )
}

fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Node `n2` among the instances the API lists (`n1`..`n4`, one not yet given an
/// address, one terminating) probes the next two on the ring, `n3` (answering) and `n4`
/// (nothing listening: refused); when `n3`'s pod goes, `n4` and `n1` are its neighbours
/// and `n3`'s series are removed. The API server is probed directly and through a name
/// (`localhost`) resolved by the system resolver; when `/livez` fails it is counted
/// `http_status` and reported down.
#[test]
fn kubernetes_discovery_picks_the_ring_neighbours() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let state: Shared = Default::default();
    {
        let mut s = state.lock().unwrap();
        s.livez_status = 200;
        s.pods = vec![
            pod("podtap-1", "n1", Some("127.0.0.5"), false),
            pod("podtap-2", "n2", Some("127.0.0.2"), false),
            pod("podtap-3", "n3", Some("127.0.0.3"), false),
            pod("podtap-4", "n4", Some("127.0.0.4"), false),
            pod("podtap-new", "n2b", None, false),
            pod("podtap-old", "n2a", Some("127.0.0.6"), true),
        ];
    }
    let api_port = serve(&rt, "127.0.0.1:0", state.clone());
    // n3's instance; n4's and n1's addresses have nothing listening on that port.
    let peer_port = serve(&rt, "127.0.0.3:0", state.clone());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{api_port}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n\
             users:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let text = format!(
        r#"
[export.prometheus]
listen = "127.0.0.1:0"
[probes]
enabled = true
period_ms = 200
timeout_ms = 150
failure_threshold = 2
[probes.api_server]
dns_name = "localhost"
[probes.peers]
max_neighbours = 2
resync_secs = 1
port = {peer_port}
"#
    );
    let cfg = podtap::config::Config::parse(&text, Path::new("probes.toml")).unwrap();
    let exporter =
        podtap::export::Exporter::start(&cfg.export, podtap::export::Health::new()).unwrap();
    let base = format!("http://{}", exporter.prometheus_addr.unwrap());
    let ctx = podtap::probes::ProbeContext {
        node: "n2".into(),
        kubeconfig: Some(kubeconfig.clone()),
        own_port: peer_port,
        policy_checks: None,
    };
    let probes = podtap::probes::Probes::start(&cfg.probes, ctx, exporter.metrics_feed()).unwrap();

    let neighbours = |alive: &serde_json::Value| -> Vec<(String, String)> {
        alive["neighbours"]
            .as_array()
            .map(|v| {
                v.iter()
                    .map(|e| {
                        (
                            e["target"].as_str().unwrap_or("").to_string(),
                            e["status"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let status = |alive: &serde_json::Value, ty: &str| {
        alive["checks"]
            .as_array()
            .and_then(|v| v.iter().find(|e| e["type"] == ty))
            .map(|e| e["status"].as_str().unwrap_or("").to_string())
    };
    let alive = || serde_json::from_str(&get(&format!("{base}/alive"))).unwrap_or_default();
    wait_for(15, "n3 up, n4 down, the API server up both ways", || {
        let a: serde_json::Value = alive();
        let want = [
            ("n3".to_string(), "up".to_string()),
            ("n4".into(), "down".into()),
        ];
        if neighbours(&a) == want
            && status(&a, "api_server").as_deref() == Some("up")
            && status(&a, "api_server_dns").as_deref() == Some("up")
            && status(&a, "peer_discovery").as_deref() == Some("up")
        {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    let listed = state.lock().unwrap().requests.clone();
    assert!(
        listed
            .iter()
            .any(|r| r.starts_with("/api/v1/namespaces/podtap/pods?")
                && r.contains("labelSelector=app.kubernetes.io%2Fname%3Dpodtap")),
        "{listed:?}"
    );
    wait_for(5, "the series on /metrics", || {
        let m = get(&format!("{base}/metrics"));
        let refused = series("podtap_probe_errors_total", "peer", "n4", "http")
            .replace("\"http\"}", "\"http\",type=\"refused\"}");
        let ok = value(&m, &series("podtap_probe_up", "peer", "n3", "http")) == Some(1.0)
            && value(&m, &series("podtap_probe_up", "peer", "n4", "http")) == Some(0.0)
            && value(&m, &refused) >= Some(2.0)
            && value(
                &m,
                &series("podtap_probe_up", "api_server", "kubernetes", "http"),
            ) == Some(1.0)
            && value(
                &m,
                &series("podtap_probe_up", "api_server_dns", "localhost", "http"),
            ) == Some(1.0)
            && value(
                &m,
                &series("podtap_probe_up", "peer_discovery", "kubernetes", "list"),
            ) == Some(1.0);
        if ok { Ok(()) } else { Err(m) }
    });

    // n3's pod is gone: the ring moves on to n4 and n1, n3's series go.
    state
        .lock()
        .unwrap()
        .pods
        .retain(|p| p["spec"]["nodeName"] != "n3");
    wait_for(10, "n4 and n1 are the neighbours", || {
        let a: serde_json::Value = alive();
        let names: Vec<String> = neighbours(&a).into_iter().map(|(n, _)| n).collect();
        if names == ["n1", "n4"] {
            Ok(())
        } else {
            Err(a.to_string())
        }
    });
    wait_for(5, "n3's series are removed", || {
        let m = get(&format!("{base}/metrics"));
        if m.contains("podtap_probe_target=\"n3\"") {
            Err(m)
        } else {
            Ok(())
        }
    });

    // The API server fails its health check: counted as http_status, down after two.
    state.lock().unwrap().livez_status = 500;
    wait_for(10, "the API server is down", || {
        let a: serde_json::Value = alive();
        let m = get(&format!("{base}/metrics"));
        let errors = series(
            "podtap_probe_errors_total",
            "api_server",
            "kubernetes",
            "http",
        )
        .replace("\"http\"}", "\"http\",type=\"http_status\"}");
        if status(&a, "api_server").as_deref() == Some("down") && value(&m, &errors) >= Some(2.0) {
            Ok(())
        } else {
            Err(format!("{a}\n{m}"))
        }
    });
    drop(probes);
    exporter.shutdown(Duration::from_secs(1));
}

/// `api_server.dns_server`: the API server's name is resolved by dnsmasq on loopback
/// (answering 127.0.0.1, where the API stand-in listens) and the check is up; with
/// dnsmasq stopped the name no longer resolves, counted as `dns`, and it goes down.
#[test]
fn api_server_through_a_configured_dns_server() {
    require_root();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let state: Shared = Default::default();
    state.lock().unwrap().livez_status = 200;
    let api_port = serve(&rt, "127.0.0.1:0", state.clone());
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{api_port}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\ncurrent-context: fake\n\
             users:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .unwrap();
    let dns_port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut dnsmasq = Proc(Some(
        Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
                "--listen-address=127.0.0.1",
                &format!("--port={dns_port}"),
                &format!("--pid-file={}/dnsmasq.pid", dir.path().display()),
                "--address=/kubernetes.default.svc.cluster.local/127.0.0.1",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("dnsmasq is installed (make deps-test)"),
    ));
    let text = format!(
        r#"
[export.prometheus]
listen = "127.0.0.1:0"
[probes]
enabled = true
period_ms = 200
timeout_ms = 150
failure_threshold = 2
[probes.api_server]
direct = false
dns_server = "127.0.0.1:{dns_port}"
[probes.peers]
enabled = false
"#
    );
    let cfg = podtap::config::Config::parse(&text, Path::new("probes.toml")).unwrap();
    let exporter =
        podtap::export::Exporter::start(&cfg.export, podtap::export::Health::new()).unwrap();
    let base = format!("http://{}", exporter.prometheus_addr.unwrap());
    let ctx = podtap::probes::ProbeContext {
        node: "n1".into(),
        kubeconfig: Some(kubeconfig),
        own_port: 0,
        policy_checks: None,
    };
    let probes = podtap::probes::Probes::start(&cfg.probes, ctx, exporter.metrics_feed()).unwrap();
    let name = "kubernetes.default.svc.cluster.local";
    let check = || {
        let a: serde_json::Value =
            serde_json::from_str(&get(&format!("{base}/alive"))).unwrap_or_default();
        a["checks"]
            .as_array()
            .and_then(|v| v.iter().find(|e| e["type"] == "api_server_dns"))
            .cloned()
            .unwrap_or_default()
    };
    wait_for(15, "the API server is up by its name", || {
        let c = check();
        if c["status"] == "up" && c["target"] == name {
            Ok(())
        } else {
            Err(c.to_string())
        }
    });
    assert!(
        state
            .lock()
            .unwrap()
            .requests
            .iter()
            .any(|r| r.starts_with("/livez")),
        "the request reached the API stand-in"
    );
    dnsmasq.interrupt();
    let errors = format!(
        "podtap_probe_errors_total{{podtap_probe_target_type=\"api_server_dns\",podtap_probe_target=\"{name}\",podtap_probe_method=\"http\",type=\"dns\"}}"
    );
    wait_for(10, "the name no longer resolves", || {
        let c = check();
        let m = get(&format!("{base}/metrics"));
        if c["status"] == "down"
            && c["last_error"]["type"] == "dns"
            && value(&m, &errors) >= Some(2.0)
        {
            Ok(())
        } else {
            Err(format!("{c}\n{m}"))
        }
    });
    drop(probes);
    exporter.shutdown(Duration::from_secs(1));
}
