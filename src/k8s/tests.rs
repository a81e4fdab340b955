//! Snapshot building and resolution from hand-made inputs.

use super::*;
use crate::k8s::FlowPods;
use crate::k8s::model::ProcessInfo;
use crate::k8s::netns::{Discovery, Link, NsInfo, PortOwner};
use crate::k8s::static_map::StaticMap;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::net::IpAddr;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn ep(a: &str, port: u16) -> Endpoint {
    Endpoint { addr: ip(a), port }
}

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn pod(name: &str, ip: &str, owner: (&str, &str), labels: serde_json::Value) -> Arc<Pod> {
    obj(serde_json::json!({
        "metadata": {"name": name, "namespace": "shop", "uid": format!("uid-{name}"), "labels": labels,
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": owner.0, "name": owner.1, "uid": "o", "controller": true}]},
        "spec": {"nodeName": "node1", "containers": [{"name": "main"}]},
        "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "192.168.50.1",
            "containerStatuses": [{"name": "main", "containerID": format!("containerd://{}", "ab".repeat(32)),
               "image": "x", "imageID": "y", "ready": true, "restartCount": 0}]}
    }))
}

fn kube_objects() -> KubeObjects {
    KubeObjects {
        pods: vec![
            pod(
                "web-7d9f-abcde",
                "10.0.1.5",
                ("ReplicaSet", "web-7d9f"),
                serde_json::json!({"app": "web", "tier": "front"}),
            ),
            pod(
                "db-0",
                "10.0.1.6",
                ("StatefulSet", "db"),
                serde_json::json!({"app.kubernetes.io/name": "postgres"}),
            ),
            pod(
                "report-28000-xyz",
                "10.0.1.7",
                ("Job", "report-28000"),
                serde_json::json!({}),
            ),
            pod(
                "orphan-rs-pod",
                "10.0.1.8",
                ("ReplicaSet", "gone-rs"),
                serde_json::json!({}),
            ),
        ],
        services: vec![obj::<Service>(serde_json::json!({
            "metadata": {"name": "web", "namespace": "shop"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80}]}
        }))],
        endpoint_slices: vec![obj::<EndpointSlice>(serde_json::json!({
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.0.1.5"], "targetRef": {"kind": "Pod", "name": "web-7d9f-abcde", "namespace": "shop"}},
                {"addresses": ["10.0.2.9"], "nodeName": "node2", "targetRef": {"kind": "Pod", "name": "web-7d9f-remote", "namespace": "shop"}}
            ]
        }))],
        replica_sets: vec![obj::<ReplicaSet>(serde_json::json!({
            "metadata": {"name": "web-7d9f", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web", "uid": "d", "controller": true}]}
        }))],
        jobs: vec![obj::<Job>(serde_json::json!({
            "metadata": {"name": "report-28000", "namespace": "shop",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "CronJob", "name": "report", "uid": "c", "controller": true}]}
        }))],
    }
}

#[test]
fn owner_resolution_follows_replicasets_and_jobs() {
    let snap = snapshot::build(
        &Inputs {
            kube: Some(kube_objects()),
            node_name: Some("node1".into()),
            ..Default::default()
        },
        1,
    );
    let w = |name: &str| snap.pod_named(name).unwrap().workload.clone().unwrap();
    assert_eq!(
        (
            w("web-7d9f-abcde").kind.as_str(),
            w("web-7d9f-abcde").name.as_str()
        ),
        ("Deployment", "web")
    );
    assert_eq!(
        (w("db-0").kind.as_str(), w("db-0").name.as_str()),
        ("StatefulSet", "db")
    );
    assert_eq!(
        (
            w("report-28000-xyz").kind.as_str(),
            w("report-28000-xyz").name.as_str()
        ),
        ("CronJob", "report")
    );
    // An owner not seen (yet) is reported as what the pod says, not guessed.
    assert_eq!(w("orphan-rs-pod").kind, "ReplicaSet");
    let web = snap.pod_named("shop/web-7d9f-abcde").unwrap();
    assert_eq!(web.attr("k8s.deployment.name"), Some("web"));
    assert_eq!(web.attr("service.name"), Some("web"));
    assert_eq!(web.attr("k8s.service.name"), Some("web"));
    assert_eq!(web.attr("k8s.container.name"), Some("main"));
    assert_eq!(web.attr("k8s.pod.uid"), Some("uid-web-7d9f-abcde"));
    assert_eq!(web.container_ids, ["ab".repeat(32)]);
    // service.name prefers app.kubernetes.io/name.
    assert_eq!(
        snap.pod_named("db-0").unwrap().attr("service.name"),
        Some("postgres")
    );
    assert_eq!(
        snap.pod_named("db-0").unwrap().attr("k8s.statefulset.name"),
        Some("db")
    );
}

#[test]
fn peers_are_pods_services_node_or_external() {
    let snap = snapshot::build(
        &Inputs {
            kube: Some(kube_objects()),
            node_name: Some("node1".into()),
            ..Default::default()
        },
        1,
    );
    let kind = |a: &str, port: u16| snap.peer(ip(a), port, true).kind();
    assert_eq!(kind("10.0.1.5", 80), Some("pod"));
    assert_eq!(kind("10.96.0.10", 80), Some("service"));
    assert_eq!(
        kind("10.96.0.10", 81),
        Some("service"),
        "ClusterIP on an unlisted port"
    );
    assert_eq!(kind("192.168.50.1", 22), Some("node"));
    assert_eq!(kind("8.8.8.8", 53), Some("external"));
    // A pod of another node, known from an EndpointSlice.
    let remote = snap.peer(ip("10.0.2.9"), 8080, true);
    let p = remote.pod().unwrap();
    assert_eq!(p.attr("k8s.pod.name"), Some("web-7d9f-remote"));
    assert_eq!(p.attr("k8s.node.name"), Some("node2"));
    assert_eq!(p.attr("k8s.service.name"), Some("web"));
    let Peer::Service(s) = snap.peer(ip("10.96.0.10"), 80, true) else {
        panic!()
    };
    assert_eq!(s.name, "web");
    // No sources at all: unknown, not external.
    let empty = snapshot::build(&Inputs::default(), 1);
    assert_eq!(empty.peer(ip("8.8.8.8"), 53, true).kind(), None);
}

fn veth(ifindex: u32, name: &str, link: u32, addrs: &[&str]) -> Link {
    Link {
        ifindex,
        name: name.into(),
        kind: Some("veth".into()),
        link: Some(link),
        link_netnsid: None,
        addrs: addrs.iter().map(|a| ip(a)).collect(),
    }
}

fn discovery() -> Discovery {
    let ns = |inode: u64, name: &str, host: (u32, &str), ipaddr: &str| NsInfo {
        inode,
        name: Some(name.into()),
        links: vec![veth(2, "eth0", host.0, &[ipaddr])],
        processes: vec![ProcessInfo {
            pid: inode as u32,
            comm: "nginx".into(),
            container_id: None,
        }],
        nsid: None,
        host_ifaces: vec![(host.0, host.1.into())],
        ..Default::default()
    };
    Discovery {
        host: NsInfo {
            inode: 1,
            links: vec![
                veth(11, "vethA", 2, &["192.168.50.1"]),
                veth(12, "vethB", 2, &[]),
            ],
            ..Default::default()
        },
        namespaces: vec![
            ns(100, "pod-a", (11, "vethA"), "10.0.1.5"),
            ns(200, "pod-b", (12, "vethB"), "10.0.9.9"),
        ],
        host_ports: vec![],
    }
}

#[test]
fn discovery_joins_kube_pods_by_ip_and_names_the_rest() {
    let snap = snapshot::build(
        &Inputs {
            kube: Some(kube_objects()),
            netns: Some(discovery()),
            node_name: Some("node1".into()),
            ..Default::default()
        },
        1,
    );
    // vethA leads to the namespace holding the web pod's address.
    let a = snap.obs(11).unwrap();
    assert_eq!(a.attr("k8s.pod.name"), Some("web-7d9f-abcde"));
    assert_eq!(a.attr("podtap.netns.name"), Some("pod-a"));
    assert_eq!(a.main_process.as_deref(), Some("nginx"));
    // vethB's namespace is no pod the API knows: named by its namespace.
    let b = snap.obs(12).unwrap();
    assert_eq!(b.name, None);
    assert_eq!(b.attr("podtap.netns.name"), Some("pod-b"));
    assert!(snap.obs(13).is_none());
    let f = snap.resolve(11, 6, ep("10.0.9.9", 40000), ep("10.0.1.5", 80));
    assert_eq!(f.observed_side(), Some("server"));
    assert_eq!(
        f.client.pod().unwrap().attr("podtap.netns.name"),
        Some("pod-b")
    );
}

#[test]
fn static_map_names_interfaces_cidrs_and_observation_points() {
    let map = StaticMap::parse(
        r#"
[[pod]]
name = "alpha"
namespace = "demo"
interfaces = ["vethA"]
labels = { app = "alpha" }
workload = { kind = "Deployment", name = "alpha" }
[[pod]]
name = "beta"
namespace = "demo"
netns = "pod-b"
[[pod]]
name = "legacy-db"
namespace = "ops"
cidrs = ["172.20.0.0/16"]
obs = [7]
[[pod]]
name = "legacy-db-primary"
namespace = "ops"
cidrs = ["172.20.1.1"]
[[service]]
name = "api"
namespace = "demo"
cluster_ips = ["10.96.5.5"]
ports = [443]
"#,
        Path::new("m.toml"),
    )
    .unwrap();
    let snap = snapshot::build(
        &Inputs {
            netns: Some(discovery()),
            static_map: Some(map),
            label_keys: vec!["app".into()],
            ..Default::default()
        },
        1,
    );
    let a = snap.obs(11).unwrap();
    assert_eq!(a.attr("k8s.pod.name"), Some("alpha"));
    assert_eq!(a.attr("k8s.pod.label.app"), Some("alpha"));
    assert_eq!(a.attr("k8s.deployment.name"), Some("alpha"));
    assert_eq!(a.attr("service.name"), Some("alpha"));
    assert_eq!(a.ips, [ip("10.0.1.5")], "discovery keeps the addresses");
    assert_eq!(snap.obs(12).unwrap().attr("k8s.pod.name"), Some("beta"));
    assert_eq!(snap.obs(7).unwrap().attr("k8s.pod.name"), Some("legacy-db"));
    // Longest prefix wins.
    let name = |a: &str| {
        snap.peer(ip(a), 5432, true)
            .pod()
            .and_then(|p| p.name.clone())
    };
    assert_eq!(name("172.20.1.1").as_deref(), Some("legacy-db-primary"));
    assert_eq!(name("172.20.9.1").as_deref(), Some("legacy-db"));
    assert_eq!(name("10.0.1.5").as_deref(), Some("alpha"));
    assert_eq!(
        snap.peer(ip("10.96.5.5"), 443, true).kind(),
        Some("service")
    );
    assert_eq!(
        snap.peer(ip("10.96.5.5"), 80, true).kind(),
        Some("external"),
        "only the listed port"
    );
}

#[test]
fn selector_limits_capture_and_reporting() {
    let a = Attribution::with_inputs(Inputs {
        kube: Some(kube_objects()),
        netns: Some(discovery()),
        selector: toml::from_str(r#"match_labels = { app = "web" }"#).unwrap(),
        ..Default::default()
    });
    let snap = a.snapshot();
    assert!(snap.is_selected(11), "vethA: the web pod");
    assert!(!snap.is_selected(12), "vethB: no labels");
    assert!(
        !snap.is_selected(99),
        "unknown interfaces are left alone under a selector"
    );
    assert_eq!(snap.selected_obs(), [11]);
    let at = a.attributor();
    assert!(
        at.resolve(11, 6, ep("10.0.9.9", 1), ep("10.0.1.5", 80))
            .selected
    );
    assert!(
        !at.resolve(12, 6, ep("10.0.9.9", 1), ep("10.0.1.5", 80))
            .selected
    );
    // Reload without a selector: everything is selected, in a new generation.
    let g = at.generation();
    a.update(|i| i.selector = Default::default());
    assert_eq!(at.generation(), g + 1);
    assert!(a.snapshot().is_selected(12) && a.snapshot().is_selected(99));
}

use policy::testing::policy;

/// Valid policies replace the configured selector: the union of their selectors is
/// what is captured; their pods get the label keys and thresholds; an invalid policy
/// selects nothing and, alone, leaves the configured selector in charge.
#[test]
fn policies_decide_selection_labels_and_thresholds() {
    let a = Attribution::with_inputs(Inputs {
        kube: Some(kube_objects()),
        netns: Some(discovery()),
        node_name: Some("node1".into()),
        selector: toml::from_str(r#"match_labels = { app = "web" }"#).unwrap(),
        ..Default::default()
    });
    let set = |p: Vec<policy::Policy>| Some(Arc::new(policy::PolicySet::new(p)));
    let broken = || {
        policy(
            "broken",
            serde_json::json!({"selector": {"matchExpressions": [{"key": "app", "operator": "In"}]}}),
        )
    };
    a.update(|i| i.policies = set(vec![broken()]));
    let snap = a.snapshot();
    assert!(
        snap.is_selected(11),
        "only an invalid policy: the config's selector"
    );
    let st = policy_watch::node_statuses(i_policies(&a).as_ref(), &snap);
    assert_eq!(
        (st[0].ready, st[0].reason.as_str()),
        (false, "InvalidSelector")
    );

    a.update(|i| {
        i.policies = set(vec![
            broken(),
            policy(
                "db",
                serde_json::json!({"selector": {"matchLabels": {"app.kubernetes.io/name": "postgres"}},
                    "podLabels": ["app.kubernetes.io/name"], "anomalies": {"synTimeoutMs": 700}}),
            ),
        ])
    });
    let snap = a.snapshot();
    let db = snap.pod_named("shop/db-0").unwrap();
    assert!(db.selected && !snap.pod_named("shop/web-7d9f-abcde").unwrap().selected);
    assert_eq!(
        db.attr("k8s.pod.label.app.kubernetes.io/name"),
        Some("postgres")
    );
    let flow = a
        .attributor()
        .resolve(0, 6, ep("10.0.9.9", 1), ep("10.0.1.6", 5432));
    assert!(flow.selected);
    assert_eq!(flow.anomalies.unwrap().syn_timeout_ms, Some(700));
    let st = policy_watch::node_statuses(i_policies(&a).as_ref(), &snap);
    let db_st = st.iter().find(|s| s.name == "db").unwrap();
    assert_eq!((db_st.matched_pods, db_st.ready), (1, true));
    // Deleted: back to the configured selector.
    a.update(|i| i.policies = set(vec![]));
    let snap = a.snapshot();
    assert!(snap.pod_named("shop/web-7d9f-abcde").unwrap().selected);
    assert!(!snap.pod_named("shop/db-0").unwrap().selected);
    assert_eq!(
        snap.pod_named("shop/db-0")
            .unwrap()
            .attr("k8s.pod.label.app.kubernetes.io/name"),
        None
    );
}

fn i_policies(a: &Attribution) -> Arc<policy::PolicySet> {
    a.shared
        .state
        .lock()
        .unwrap()
        .inputs
        .policies
        .clone()
        .unwrap()
}

#[test]
fn flows_re_resolve_on_a_new_generation_and_keep_deleted_pods() {
    let a = Attribution::with_inputs(Inputs {
        kube: Some(kube_objects()),
        ..Default::default()
    });
    let at = a.attributor();
    let (c, s) = (ep("10.0.1.6", 40000), ep("10.0.1.5", 80));
    let mut slot = None;
    at.refresh(&mut slot, 0, 6, c, s);
    let first = slot.clone().unwrap();
    assert_eq!(
        first.server.pod().unwrap().attr("k8s.pod.name"),
        Some("web-7d9f-abcde")
    );
    // Same generation: the same resolution, not a new one.
    at.refresh(&mut slot, 0, 6, c, s);
    assert!(Arc::ptr_eq(&first, slot.as_ref().unwrap()));
    // The web pod goes away and a pod appears at 10.0.1.9: the flow to the deleted pod
    // keeps its name; a new flow to the new address finds the new pod.
    a.update(|i| {
        let k = i.kube.as_mut().unwrap();
        k.pods
            .retain(|p| p.metadata.name.as_deref() != Some("web-7d9f-abcde"));
        k.endpoint_slices.clear();
        k.pods.push(pod(
            "web-new",
            "10.0.1.9",
            ("ReplicaSet", "web-7d9f"),
            serde_json::json!({}),
        ));
    });
    at.refresh(&mut slot, 0, 6, c, s);
    let second = slot.clone().unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    assert_eq!(second.generation, 2);
    assert_eq!(
        second.server.pod().unwrap().attr("k8s.pod.name"),
        Some("web-7d9f-abcde")
    );
    assert_eq!(
        a.snapshot().peer(ip("10.0.1.5"), 80, true).kind(),
        Some("external")
    );
    let new = at.resolve(0, 6, c, ep("10.0.1.9", 80));
    assert_eq!(
        new.server.pod().unwrap().attr("k8s.pod.name"),
        Some("web-new")
    );
}

#[test]
fn host_network_pods_by_listening_port() {
    let mut k = kube_objects();
    let cid = "cd".repeat(32);
    k.pods.push(obj::<Pod>(serde_json::json!({
        "metadata": {"name": "node-exporter-x", "namespace": "mon",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "node-exporter", "uid": "d", "controller": true}]},
        "spec": {"nodeName": "node1", "hostNetwork": true, "containers": [{"name": "exp"}]},
        "status": {"phase": "Running", "podIP": "192.168.50.1", "hostIP": "192.168.50.1",
            "containerStatuses": [{"name": "exp", "containerID": format!("containerd://{cid}"),
               "image": "x", "imageID": "y", "ready": true, "restartCount": 0}]}
    })));
    let mut d = discovery();
    d.host_ports = vec![PortOwner {
        port: 9100,
        process: ProcessInfo {
            pid: 4242,
            comm: "node_exporter".into(),
            container_id: Some(cid.as_str().into()),
        },
    }];
    let snap = snapshot::build(
        &Inputs {
            kube: Some(k),
            netns: Some(d),
            ..Default::default()
        },
        1,
    );
    let p = snap.peer(ip("192.168.50.1"), 9100, true);
    assert_eq!(
        p.pod().unwrap().attr("k8s.daemonset.name"),
        Some("node-exporter")
    );
    assert_eq!(snap.peer(ip("192.168.50.1"), 22, true).kind(), Some("node"));
    // The process listening on the port is the server end's.
    let f = snap.resolve(0, 6, ep("10.0.1.6", 40000), ep("192.168.50.1", 9100));
    let p = f.process[1].as_ref().expect("the listener");
    assert_eq!((p.pid, p.comm.as_str()), (4242, "node_exporter"));
    assert!(f.process[0].is_none());
    assert_eq!(
        snap.peer(ip("192.168.50.1"), 9100, false).kind(),
        Some("node"),
        "a client port is not a listener"
    );
}

/// Two servers in one pod namespace (nginx on :80, python on :8000) and a client pod
/// with one process: each flow names the process holding its socket at each end, not the
/// namespace's first process; a client connection no scan saw names none.
/// Without Kubernetes, each pod's `service.name` is its namespace's name.
#[test]
fn flows_name_the_process_holding_their_socket() {
    use crate::k8s::sockets::SocketOwner;
    let p = |pid: u32, comm: &str| ProcessInfo {
        pid,
        comm: comm.into(),
        container_id: None,
    };
    let (pause, nginx, python, curl) = (
        p(5, "pause"),
        p(10, "nginx"),
        p(20, "python3"),
        p(30, "curl"),
    );
    let listen = |port: u16, ipaddr: &str, pr: &ProcessInfo| SocketOwner {
        proto: 6,
        local: (ip(ipaddr), port),
        remote: None,
        process: pr.clone(),
    };
    let mut d = discovery();
    d.namespaces[0].processes = vec![pause.clone(), nginx.clone(), p(11, "nginx"), python.clone()];
    d.namespaces[0].sockets = vec![
        listen(80, "0.0.0.0", &nginx),
        listen(8000, "10.0.1.5", &python),
    ];
    d.namespaces[1].processes = vec![curl.clone()];
    // curl's connection to the python server was open when the namespace was scanned.
    d.namespaces[1].sockets = vec![SocketOwner {
        proto: 6,
        local: (ip("10.0.9.9"), 40001),
        remote: Some((ip("10.0.1.5"), 8000)),
        process: curl.clone(),
    }];
    let a = Attribution::with_inputs(Inputs {
        netns: Some(d),
        ..Default::default()
    });
    let snap = a.snapshot();
    let pid = |f: &FlowPods, i: usize| f.process[i].as_ref().map(|p| (p.pid, p.comm.to_string()));
    let f = snap.resolve(11, 6, ep("10.0.9.9", 40000), ep("10.0.1.5", 80));
    assert_eq!(pid(&f, 1), Some((10, "nginx".into())));
    assert_eq!(
        pid(&f, 0),
        None,
        "a connection no scan saw: not even the pod's only process is guessed"
    );
    assert_eq!(
        f.observed_process().map(|p| p.pid),
        Some(10),
        "seen at the server's veth"
    );
    let f = snap.resolve(12, 6, ep("10.0.9.9", 40001), ep("10.0.1.5", 8000));
    assert_eq!(pid(&f, 1), Some((20, "python3".into())));
    assert_eq!(pid(&f, 0), Some((30, "curl".into())), "by its connection");
    assert_eq!(
        f.observed_process().map(|p| p.pid),
        Some(30),
        "seen at the client's veth"
    );
    assert_eq!(
        pid(
            &snap.resolve(11, 6, ep("10.0.9.9", 1), ep("10.0.1.5", 9000)),
            1
        ),
        None
    );
    assert_eq!(
        pid(
            &snap.resolve(11, 17, ep("10.0.9.9", 1), ep("10.0.1.5", 80)),
            1
        ),
        None,
        "UDP"
    );
    // The server pod as a client: three processes, none known to hold the socket.
    let f = snap.resolve(11, 6, ep("10.0.1.5", 41000), ep("10.0.9.9", 5432));
    assert_eq!(pid(&f, 0), None);
    // service.name from the namespace's name, in the attributes and the metric labels.
    let server = snap.obs(11).unwrap();
    assert_eq!(server.attr("service.name"), Some("pod-a"));
    assert_eq!(server.metric_labels[2].as_deref(), Some("pod-a"));
    assert_eq!(
        server.attr("process.pid"),
        None,
        "processes are per flow, not per pod"
    );
    // A namespace without a name: its first process (not the sandbox) names it.
    let mut d = discovery();
    d.namespaces[0].name = None;
    d.namespaces[0].processes = vec![pause, python];
    let snap = snapshot::build(
        &Inputs {
            netns: Some(d),
            ..Default::default()
        },
        1,
    );
    assert_eq!(snap.obs(11).unwrap().attr("service.name"), Some("python3"));
}

/// A flow keeps the process it was resolved with when a newer snapshot no longer has its
/// connection's socket.
#[test]
fn a_flow_keeps_its_process_across_snapshots() {
    let mut d = discovery();
    d.namespaces[1].processes.push(ProcessInfo {
        pid: 201,
        comm: "sidecar".into(),
        container_id: None,
    });
    let (c, s) = (ep("10.0.9.9", 40000), ep("10.0.1.5", 80));
    d.namespaces[1].sockets = vec![crate::k8s::sockets::SocketOwner {
        proto: 6,
        local: (c.addr, c.port),
        remote: Some((s.addr, s.port)),
        process: d.namespaces[1].processes[0].clone(),
    }];
    let a = Attribution::with_inputs(Inputs {
        netns: Some(d),
        ..Default::default()
    });
    let at = a.attributor();
    let mut slot = None;
    at.refresh(&mut slot, 12, 6, c, s);
    assert_eq!(
        slot.as_ref().unwrap().process[0].as_ref().map(|p| p.pid),
        Some(200)
    );
    a.update(|i| i.netns.as_mut().unwrap().namespaces[1].sockets.clear());
    at.refresh(&mut slot, 12, 6, c, s);
    assert_eq!(slot.as_ref().unwrap().generation, 2);
    assert_eq!(
        slot.as_ref().unwrap().process[0].as_ref().map(|p| p.pid),
        Some(200)
    );
    // A new flow from another port of that pod: two processes, neither known.
    let other = at.resolve(12, 6, ep("10.0.9.9", 40001), s);
    assert!(other.process[0].is_none());
}
