//! Monitoring policies (`PodtapPolicy`, docs/POLICIES.md) through the real kube-rs
//! client.
//!
//! No Kubernetes API server can run on these machines, so the API is the stand-in of
//! tests/common/kube_api.rs: the API's own JSON shape for lists and watches of pods and
//! podtappolicies, and the status subresource (server-side apply writes are recorded and
//! merged into the object, and watchers see them as MODIFIED, as on a real server).
//!
//! - `policies_select_label_and_report_status`: attribution in process. Adding,
//!   changing and deleting a policy changes which pods are selected and how they are
//!   labelled with the one watch event each causes (no new list); each node's status
//!   entry carries the right count and the `Ready` condition, written by server-side
//!   apply under the node's field manager, once per change (the write's own MODIFIED
//!   event does not write again); a bad selector gets `Ready=False`, `InvalidSelector`,
//!   and the other policies go on applying.
//! - `without_the_crd_the_config_selector_applies_at_once`: a 404 for the policies
//!   does not hold up the start, and the config's selector applies.
//! - `a_policy_changes_what_podtap_run_captures_and_labels` (root): `podtap run` on two
//!   "pod" namespaces (nginx in one, curl in the other) known to the API as pods. The
//!   config's selector captures the client's veth; a policy for the server takes over
//!   (the server's veth is captured, the client's is not, transactions carry the
//!   policy's `podLabels`, on `/metrics` too), its health checks run against the server pod (ICMP echo and
//!   HTTP GET, reported on `/alive`), and deleting it brings the config's selector back
//!   and removes its checks. The test's bridge gets an address so the node reaches its
//!   pods, as a CNI's does; traffic stays on the bridge and the pods' veths.

mod common;
#[path = "common/kube_api.rs"]
mod kube_api;

use common::*;
use kube_api::*;
use podtap::config::AttributionConfig;
use podtap::k8s::{Attribution, Snapshot};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};

const NODE: &str = "node1";

fn pod(name: &str, ip: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": labels},
        "spec": {"nodeName": NODE, "containers": [{"name": "main"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.7.1"}
    })
}

fn policy(name: &str, generation: i64, spec: Value) -> Value {
    json!({
        "apiVersion": "podtap.io/v1alpha1", "kind": "PodtapPolicy",
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "generation": generation},
        "spec": spec
    })
}

fn config_text(kubeconfig: &Path, extra: &str) -> String {
    format!(
        "[attribution.kubernetes]\nenabled = true\nkubeconfig = \"{}\"\nnode_name = \"{NODE}\"\n\
         [attribution.selector]\nmatch_labels = {{ app = \"web\" }}\n{extra}",
        kubeconfig.display()
    )
}

fn config(kubeconfig: &Path) -> AttributionConfig {
    let text = format!(
        "[attribution]\nnetns = false\n{}",
        config_text(kubeconfig, "")
    );
    podtap::config::Config::parse(&text, Path::new("policies-test.toml"))
        .unwrap()
        .attribution
}

/// Wait until `cond` holds (watch events arrive asynchronously); panics after 15 s.
fn eventually<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn selected(s: &Snapshot, pod: &str) -> bool {
    s.pod_named(&format!("shop/{pod}"))
        .is_some_and(|p| p.selected)
}

fn label(s: &Snapshot, pod: &str, key: &str) -> Option<String> {
    s.pod_named(&format!("shop/{pod}"))?
        .attr(&format!("k8s.pod.label.{key}"))
        .map(String::from)
}

/// The last status write for policy `name`: its node entry.
fn last_entry(api: &FakeApi, name: &str) -> Option<Value> {
    let suffix = format!("/namespaces/shop/podtappolicies/{name}/status");
    let p = api
        .patches()
        .into_iter()
        .rev()
        .find(|p| p.path.ends_with(&suffix))?;
    assert_eq!(
        p.content_type, "application/apply-patch+yaml",
        "server-side apply"
    );
    assert!(
        p.query.contains("fieldManager=podtap%2Fnode1"),
        "{}",
        p.query
    );
    assert!(p.query.contains("force=true"), "{}", p.query);
    assert_eq!(p.body["kind"], "PodtapPolicy");
    let nodes = p.body["status"]["nodes"].as_array().unwrap();
    assert_eq!(
        nodes.len(),
        1,
        "a node writes its own entry only: {}",
        p.body
    );
    Some(nodes[0].clone())
}

fn ready(entry: &Value) -> (String, String) {
    let c = &entry["conditions"][0];
    assert_eq!(c["type"], "Ready");
    (
        c["status"].as_str().unwrap().to_string(),
        c["reason"].as_str().unwrap().to_string(),
    )
}

#[test]
fn policies_select_label_and_report_status() {
    let api = FakeApi::start();
    api.apply(
        PODS,
        pod("web-1", "10.0.1.5", json!({"app": "web", "team": "front"})),
    );
    api.apply(
        PODS,
        pod("db-0", "10.0.1.6", json!({"app": "db", "team": "data"})),
    );
    api.apply(
        PODS,
        pod("db-1", "10.0.1.7", json!({"app": "db", "team": "data"})),
    );
    let dir = tempfile::tempdir().unwrap();
    let a = Attribution::start(&config(&api.kubeconfig(dir.path()))).expect("connects");
    assert!(a.wait_synced(Duration::from_secs(15)), "initial lists");
    eventually("the pods are known", || {
        a.snapshot().pod_named("shop/db-1").map(|_| ())
    });
    // No policy: the config's selector (app=web).
    let s = a.snapshot();
    assert!(selected(&s, "web-1") && !selected(&s, "db-0"));
    assert_eq!(label(&s, "db-0", "team"), None);
    let lists = api.requests(PODS, false).len() + api.requests(POLICIES, false).len();

    // ADDED: a policy for the databases replaces the config's selector.
    api.apply(
        POLICIES,
        policy(
            "db",
            1,
            json!({"selector": {"matchLabels": {"app": "db"}}, "podLabels": ["team"],
                   "anomalies": {"synTimeoutMs": 700}}),
        ),
    );
    eventually("the db policy applies", || {
        let s = a.snapshot();
        (selected(&s, "db-0") && selected(&s, "db-1") && !selected(&s, "web-1")).then_some(())
    });
    let s = a.snapshot();
    assert_eq!(label(&s, "db-0", "team").as_deref(), Some("data"));
    assert_eq!(label(&s, "web-1", "team"), None, "not the policy's pod");
    let flow = a.attributor().resolve(
        0,
        6,
        podtap::proto::Endpoint {
            addr: "10.0.9.9".parse().unwrap(),
            port: 40000,
        },
        podtap::proto::Endpoint {
            addr: "10.0.1.6".parse().unwrap(),
            port: 5432,
        },
    );
    assert!(flow.selected);
    assert_eq!(flow.anomalies.unwrap().syn_timeout_ms, Some(700));
    let e = eventually("db's status", || last_entry(&api, "db"));
    assert_eq!(
        (e["node"].as_str(), e["matchedPods"].as_u64()),
        (Some(NODE), Some(2))
    );
    assert_eq!(e["observedGeneration"], 1);
    assert_eq!(ready(&e), ("True".into(), "Applied".into()));
    // Merged into the object as the API server does, beside other nodes' entries.
    let stored = api.get(POLICIES, "shop/db").unwrap();
    assert_eq!(stored["status"]["nodes"][0]["matchedPods"], 2);

    // MODIFIED: the policy widens to the web pod too, and its count follows.
    api.apply(
        POLICIES,
        policy(
            "db",
            2,
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In", "values": ["db", "web"]}]},
                   "podLabels": ["team"]}),
        ),
    );
    eventually("the widened policy applies", || {
        let s = a.snapshot();
        (selected(&s, "web-1") && label(&s, "web-1", "team").as_deref() == Some("front"))
            .then_some(())
    });
    let e = eventually("db's status counts 3", || {
        last_entry(&api, "db").filter(|e| e["matchedPods"] == 3)
    });
    assert_eq!(e["observedGeneration"], 2);

    // A bad selector: Ready=False, InvalidSelector; the valid policy goes on applying.
    api.apply(
        POLICIES,
        policy(
            "broken",
            1,
            json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
        ),
    );
    let e = eventually("broken's status", || last_entry(&api, "broken"));
    assert_eq!(ready(&e), ("False".into(), "InvalidSelector".into()));
    let msg = e["conditions"][0]["message"].as_str().unwrap();
    assert!(msg.contains("matchExpressions[0].values"), "{msg}");
    assert_eq!(e["matchedPods"], 0);
    assert!(selected(&a.snapshot(), "db-0"));

    // Each change was one watch event: no list was needed.
    assert_eq!(
        api.requests(PODS, false).len() + api.requests(POLICIES, false).len(),
        lists,
        "no re-list"
    );
    // A status write is a MODIFIED event too: it must not write again.
    std::thread::sleep(Duration::from_millis(500));
    let writes = api.patches().len();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(api.patches().len(), writes, "status writes settle");
    assert_eq!(writes, 3, "one write per change: {:?}", api.patches());

    // DELETED: back to the config's selector, labels gone.
    api.delete(POLICIES, api.get(POLICIES, "shop/broken").unwrap());
    api.delete(POLICIES, api.get(POLICIES, "shop/db").unwrap());
    eventually("the config's selector is back", || {
        let s = a.snapshot();
        (selected(&s, "web-1") && !selected(&s, "db-0") && label(&s, "db-0", "team").is_none())
            .then_some(())
    });
}

/// An API server without the CRD: the policy watch gets 404, counts as listed (no
/// policies) so the start is not held up, and the config's selector applies.
#[test]
fn without_the_crd_the_config_selector_applies_at_once() {
    let api = FakeApi::start();
    api.remove(POLICIES);
    api.apply(PODS, pod("web-1", "10.0.1.5", json!({"app": "web"})));
    api.apply(PODS, pod("db-0", "10.0.1.6", json!({"app": "db"})));
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let a = Attribution::start(&config(&api.kubeconfig(dir.path()))).expect("connects");
    assert!(a.wait_synced(Duration::from_secs(15)), "initial lists");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a missing CRD held the start for {:?}",
        started.elapsed()
    );
    eventually("the pods are known", || {
        a.snapshot().pod_named("shop/db-0").map(|_| ())
    });
    let s = a.snapshot();
    assert!(selected(&s, "web-1") && !selected(&s, "db-0"));
    assert!(
        !api.requests(POLICIES, false).is_empty(),
        "the policies were asked for"
    );
}

/// `podtap run` against the fake API: what it captures and how it labels follow a policy.
#[test]
fn a_policy_changes_what_podtap_run_captures_and_labels() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    for page in ["before", "during", "after", "healthz"] {
        std::fs::write(root.join(page), format!("{page}\n")).unwrap();
    }
    let mut bridge = Bridge::new();
    let server = bridge.pod();
    let client = bridge.pod();
    let _nginx = nginx(&server.ns, &server.ip, dir.path(), &root);
    let api = FakeApi::start();
    api.apply(
        PODS,
        pod(
            "web-0",
            &server.ip,
            json!({"app": "web", "team": "shop-front"}),
        ),
    );
    api.apply(PODS, pod("curl-0", &client.ip, json!({"app": "curl"})));
    // The node reaches its pods through the bridge (the host side of the pod network).
    let gateway = format!("{}.254", server.ip.rsplit_once('.').unwrap().0);
    sh(std::process::Command::new("ip").args([
        "addr",
        "add",
        &format!("{gateway}/24"),
        "dev",
        &bridge.name,
    ]));
    // /metrics and /alive on loopback, a port of this test process's own.
    let port = 20_000 + (std::process::id() % 20_000) as u16;
    let probes = format!(
        "[export.prometheus]\nlisten = \"127.0.0.1:{port}\"\n[probes]\nenabled = true\n\
         period_ms = 1000\ntimeout_ms = 500\n[probes.api_server]\ndirect = false\ndns = false\n\
         [probes.peers]\nenabled = false\n"
    );
    let cfg = dir.path().join("podtap.toml");
    std::fs::write(
        &cfg,
        config_text(&api.kubeconfig(dir.path()), &probes)
            .replace("app = \"web\"", "app = \"curl\""),
    )
    .unwrap();
    let alive = || -> Vec<Value> {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "2",
                &format!("http://127.0.0.1:{port}/alive"),
            ])
            .output()
            .expect("curl");
        serde_json::from_slice::<Value>(&out.stdout)
            .ok()
            .and_then(|v| v["checks"].as_array().cloned())
            .unwrap_or_default()
    };
    let regex = format!("{}.*", bridge.prefix);
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            &regex,
        ],
    );
    let attached = |ifname: &str| {
        let log = d.log.lock().unwrap();
        // The last attach/detach line of the interface decides.
        log.iter()
            .rev()
            .find(|l| {
                l.contains(&format!("interface={ifname} "))
                    && (l.contains("attached") || l.contains("detached"))
            })
            .is_some_and(|l| !l.contains("detached"))
    };
    let wait_attached = |ifname: &str, want: bool| {
        eventually(&format!("{ifname} attached = {want}"), || {
            (attached(ifname) == want).then_some(())
        })
    };
    let curl = |page: &str| {
        sh(client.ns.cmd("curl").args([
            "-s",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            &format!("http://{}/{page}", server.ip),
        ]));
    };
    // The config's selector: the client's veth.
    wait_attached(&client.host_if, true);
    assert!(!attached(&server.host_if));
    curl("before");

    // A policy for the web pod takes over capture and carries its label.
    api.apply(
        POLICIES,
        policy(
            "web",
            1,
            json!({"selector": {"matchLabels": {"app": "web"}}, "podLabels": ["team"],
                   "healthChecks": [
                       {"type": "ping", "periodSeconds": 1, "failureThreshold": 1},
                       {"type": "http", "port": 80, "path": "/healthz", "periodSeconds": 1, "failureThreshold": 1}
                   ]}),
        ),
    );
    wait_attached(&server.host_if, true);
    wait_attached(&client.host_if, false);
    curl("during");
    // The policy's podLabels are metric labels too.
    eventually("/metrics carries the policy's pod label", || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "2",
                &format!("http://127.0.0.1:{port}/metrics"),
            ])
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| {
                l.starts_with("http_server_request_duration_seconds_count{")
                    && l.contains("server_k8s_pod_label_team=\"shop-front\"")
            })
            .then_some(())
    });
    let e = eventually("web's status", || last_entry(&api, "web"));
    assert_eq!(e["matchedPods"], 1);
    let http_check = format!("http://{}:80/healthz", server.ip);
    for (target, method, address) in [
        ("shop/web-0".to_string(), "icmp", server.ip.clone()),
        ("shop/web-0:80/healthz".to_string(), "http", http_check),
    ] {
        let c = eventually(&format!("{target} is up on /alive"), || {
            alive()
                .into_iter()
                .find(|c| c["target"] == target && c["status"] == "up")
        });
        assert_eq!(
            (c["type"].as_str(), c["method"].as_str()),
            (Some("pod"), Some(method))
        );
        assert_eq!(c["address"], address);
    }

    // Deleted: the config's selector again.
    api.delete(POLICIES, api.get(POLICIES, "shop/web").unwrap());
    wait_attached(&client.host_if, true);
    wait_attached(&server.host_if, false);
    eventually("the policy's checks are gone", || {
        alive()
            .iter()
            .all(|c| !c["target"].as_str().unwrap_or("").starts_with("shop/web-0"))
            .then_some(())
    });
    curl("after");
    std::thread::sleep(Duration::from_millis(300));
    let all = d.stop();

    let http: Vec<&Value> = records(&all, "transaction")
        .into_iter()
        .filter(|t| t["podtap.protocol"] == "http")
        .collect();
    let at = |page: &str| -> Vec<&Value> {
        http.iter()
            .copied()
            .filter(|t| t["url.path"] == format!("/{page}"))
            .collect()
    };
    for (page, iface, side) in [
        ("before", client.ifindex, "client"),
        ("during", server.ifindex, "server"),
        ("after", client.ifindex, "client"),
    ] {
        let txs = at(page);
        assert_eq!(
            txs.len(),
            1,
            "/{page} seen once, at the {side}'s veth: {txs:?}"
        );
        let t = txs[0];
        assert_eq!(t["podtap.observation_point"], iface as u64, "{t}");
        assert_eq!(t["server.k8s.pod.name"], "web-0", "{t}");
        assert_eq!(t["client.k8s.pod.name"], "curl-0", "{t}");
        let team = &t["server.k8s.pod.label.team"];
        if page == "during" {
            assert_eq!(team, "shop-front", "the policy's podLabels: {t}");
        } else {
            assert!(team.is_null(), "no policy, no label: {t}");
        }
    }
}
