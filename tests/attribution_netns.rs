//! Pod attribution without Kubernetes: "pod" namespaces made by the test, each with a veth
//! into a bridge in the root namespace (as a bridge CNI wires pods). Node-local discovery
//! must map each host veth to its namespace (name, address); a static map names them; and
//! the HTTP transactions between nginx in one pod and curl in the other must carry both
//! pods' names, through `podtap replay` (pcapng interface ids mapped to the veths) and
//! through the live daemon, whose label selector also decides which veths it captures and
//! is reloaded by SIGHUP.

mod common;

use common::*;
use podtap::k8s::{Attribution, Inputs, netns, static_map::StaticMap};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Requests curl makes in one invocation (one keep-alive connection).
const REQUESTS: usize = 5;

struct Setup {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    _nginx: Proc,
    server: Pod,
    client: Pod,
    bridge: Bridge,
}

/// The tests' pods share addresses (the bridge helper numbers them alike): one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn setup() -> (std::sync::MutexGuard<'static, ()>, Setup) {
    require_root();
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), b"hello\n").unwrap();
    let mut bridge = Bridge::new();
    let server = bridge.pod();
    let client = bridge.pod();
    let nginx = nginx(&server.ns, &server.ip, dir.path(), &root);
    let s = Setup {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        _nginx: nginx,
        server,
        client,
        bridge,
    };
    (guard, s)
}

/// A static map naming the server pod by its namespace and the client pod by its host
/// veth; only the server carries `app = web`.
fn static_map(s: &Setup) -> String {
    format!(
        r#"
[[pod]]
name = "web-0"
namespace = "shop"
netns = "{}"
labels = {{ app = "web" }}
workload = {{ kind = "Deployment", name = "web" }}

[[pod]]
name = "client-0"
namespace = "shop"
interfaces = ["{}"]
labels = {{ app = "client" }}
"#,
        s.server.ns.name, s.client.host_if
    )
}

fn write_config(s: &Setup, name: &str, extra: &str) -> PathBuf {
    let map = s.dir.join("pods.toml");
    std::fs::write(&map, static_map(s)).unwrap();
    let cfg = s.dir.join(name);
    std::fs::write(
        &cfg,
        format!(
            "[attribution]\nstatic_map = \"{}\"\nlabel_keys = [\"app\"]\n{extra}\n",
            map.display()
        ),
    )
    .unwrap();
    cfg
}

fn curl(s: &Setup) {
    let mut c = s.client.ns.cmd("curl");
    c.args(["-s", "--max-time", "10"]);
    for _ in 0..REQUESTS {
        c.args([
            "-o",
            "/dev/null",
            &format!("http://{}/index.html", s.server.ip),
        ]);
    }
    sh(&mut c);
}

fn http_at(all: &[serde_json::Value], obs: u64) -> Vec<&serde_json::Value> {
    records(all, "transaction")
        .into_iter()
        .filter(|t| t["podtap.protocol"] == "http" && t["podtap.observation_point"] == obs)
        .collect()
}

fn assert_named(t: &serde_json::Value, side: &str) {
    assert_eq!(t["client.k8s.pod.name"], "client-0", "{t}");
    assert_eq!(t["server.k8s.pod.name"], "web-0", "{t}");
    assert_eq!(t["server.k8s.namespace.name"], "shop", "{t}");
    assert_eq!(t["server.k8s.deployment.name"], "web", "{t}");
    assert_eq!(t["server.service.name"], "web", "{t}");
    assert_eq!(t["server.k8s.pod.label.app"], "web", "{t}");
    assert_eq!(t["client.k8s.pod.label.app"], "client", "{t}");
    assert_eq!(t["server.podtap.kind"], "pod", "{t}");
    assert_eq!(t["podtap.observation_point.side"], side, "{t}");
}

#[test]
fn discovery_maps_host_veths_to_namespaces_and_the_static_map_names_them() {
    let (_serial, s) = setup();
    let d = netns::discover(false).expect("discovery");
    for pod in [&s.server, &s.client] {
        let ns = d
            .by_host_ifindex(pod.ifindex)
            .unwrap_or_else(|| panic!("{} leads to no namespace", pod.host_if));
        assert_eq!(ns.name.as_deref(), Some(pod.ns.name.as_str()));
        let ips: Vec<String> = ns.ips().map(|i| i.to_string()).collect();
        assert_eq!(ips, std::slice::from_ref(&pod.ip));
        assert_eq!(ns.host_ifaces, [(pod.ifindex, pod.host_if.clone())]);
        // The other pod's veth does not lead here.
        let other = if std::ptr::eq(pod, &s.server) {
            &s.client
        } else {
            &s.server
        };
        assert!(!ns.host_ifaces.iter().any(|(i, _)| *i == other.ifindex));
    }
    // nginx runs in the server's namespace.
    let server_ns = d.by_name(&s.server.ns.name).unwrap();
    assert!(
        server_ns.processes.iter().any(|p| p.comm == "nginx"),
        "{:?}",
        server_ns.processes
    );
    // The bridge is no namespace's veth.
    let bridge_ifindex = d
        .host
        .links
        .iter()
        .find(|l| l.name == s.bridge.name)
        .unwrap()
        .ifindex;
    assert!(d.by_host_ifindex(bridge_ifindex).is_none());

    let map = StaticMap::parse(&static_map(&s), Path::new("pods.toml")).unwrap();
    let a = Attribution::with_inputs(Inputs {
        netns: Some(d),
        static_map: Some(map),
        ..Default::default()
    });
    let snap = a.snapshot();
    let server = snap.obs(s.server.ifindex).expect("server veth");
    assert_eq!(server.attr("k8s.pod.name"), Some("web-0"));
    assert_eq!(
        server.attr("podtap.netns.name"),
        Some(s.server.ns.name.as_str())
    );
    assert_eq!(
        server.ips,
        [s.server.ip.parse::<std::net::IpAddr>().unwrap()]
    );
    let client = snap.obs(s.client.ifindex).expect("client veth");
    assert_eq!(client.attr("k8s.pod.name"), Some("client-0"));
    let peer = snap.peer(s.client.ip.parse().unwrap(), 40000, false);
    assert_eq!(peer.pod().unwrap().attr("k8s.pod.name"), Some("client-0"));
}

/// dumpcap on several interfaces: one pcapng, interface ids in argument order.
fn dumpcap(ifaces: &[&str], file: &Path) -> Proc {
    let mut c = Command::new("dumpcap");
    for i in ifaces {
        c.args(["-i", i]);
    }
    let mut child = c
        .args(["-q", "-w"])
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dumpcap is installed (tshark)");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Capturing on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("dumpcap did not start capturing");
    // "Capturing on" can come before every interface's socket is open (and under load
    // well before): wait until the kernel lists a running packet socket on each.
    let ifindexes: Vec<String> = ifaces
        .iter()
        .map(|i| {
            std::fs::read_to_string(format!("/sys/class/net/{i}/ifindex"))
                .expect("ifindex")
                .trim()
                .to_string()
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        // sk RefCnt Type Proto Iface R Rmem User Inode
        let table = std::fs::read_to_string("/proc/net/packet").unwrap_or_default();
        let running = |ifindex: &String| {
            table.lines().skip(1).any(|l| {
                let f: Vec<_> = l.split_whitespace().collect();
                f.len() > 5 && f[4] == ifindex && f[5] == "1"
            })
        };
        if ifindexes.iter().all(running) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dumpcap sockets on {ifaces:?}:\n{table}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The ring is set up right after the socket is bound.
    std::thread::sleep(Duration::from_millis(500));
    Proc(Some(child))
}

#[test]
fn replayed_transactions_carry_both_pods() {
    let (_serial, s) = setup();
    // dumpcap opens its output after giving up privileges it does not need, so the
    // (root-only) temp dir must be open to it.
    use std::os::unix::fs::PermissionsExt;
    let capdir = s.dir.join("cap");
    std::fs::create_dir(&capdir).unwrap();
    std::fs::set_permissions(&capdir, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::set_permissions(&s.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let pcap = capdir.join("pods.pcapng");
    let mut cap = dumpcap(&[&s.server.host_if, &s.client.host_if], &pcap);
    curl(&s);
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();
    let cfg = write_config(
        &s,
        "replay.toml",
        &format!(
            "replay = true\nresync_secs = 0\nreplay_interfaces = [\"{}\", \"{}\"]",
            s.server.host_if, s.client.host_if
        ),
    );
    let all = replay(&[&pcap], &["--config", cfg.to_str().unwrap()]);
    // Interface 0 is the server's veth, 1 the client's: each saw every request.
    for (obs, side) in [(0, "server"), (1, "client")] {
        let txs = http_at(&all, obs);
        assert_eq!(txs.len(), REQUESTS, "at observation point {obs}");
        for t in txs {
            assert_named(t, side);
            assert_eq!(t["http.response.status_code"], 200);
        }
    }
    let flows: Vec<_> = records(&all, "flow")
        .into_iter()
        .filter(|f| f["server.port"] == 80)
        .collect();
    assert_eq!(flows.len(), 2, "one connection, seen at two veths");
    for f in flows {
        assert_eq!(f["client.k8s.pod.name"], "client-0", "{f}");
        assert_eq!(f["server.k8s.pod.name"], "web-0", "{f}");
    }
    // Without attribution.replay the same file has no pod names.
    let plain = replay(&[&pcap], &[]);
    assert!(
        plain.iter().all(|r| r.get("server.k8s.pod.name").is_none()),
        "no attribution unless asked for"
    );
}

#[test]
fn live_daemon_names_pods_and_its_selector_reloads_on_sighup() {
    let (_serial, s) = setup();
    // Only app=web is selected: the client's veth is not captured at first.
    let cfg = write_config(
        &s,
        "live.toml",
        "[attribution.selector]\nmatch_labels = { app = \"web\" }",
    );
    let regex = format!("{}.*", s.bridge.prefix);
    let mut d = Daemon::start(
        &s.dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            &regex,
        ],
    );
    let attached = |d: &Daemon, ifname: &str| {
        d.log
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("attached") && l.contains(&format!("interface={ifname} ")))
    };
    assert!(attached(&d, &s.server.host_if), "server veth captured");
    assert!(
        !attached(&d, &s.client.host_if),
        "client veth left alone by the selector"
    );
    curl(&s);

    // Select every pod: SIGHUP applies it without a restart.
    std::fs::write(
        &cfg,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("match_labels = { app = \"web\" }", "match_labels = {}"),
    )
    .unwrap();
    let pid = d.proc.0.as_ref().unwrap().id() as i32;
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    d.wait_log("attribution settings reloaded", Duration::from_secs(10));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !attached(&d, &s.client.host_if) {
        assert!(
            Instant::now() < deadline,
            "client veth never attached after SIGHUP"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    curl(&s);
    std::thread::sleep(Duration::from_millis(300));
    let all = d.stop();

    let at_server = http_at(&all, s.server.ifindex as u64);
    assert_eq!(
        at_server.len(),
        2 * REQUESTS,
        "both rounds at the server's veth"
    );
    for t in &at_server {
        assert_named(t, "server");
    }
    let at_client = http_at(&all, s.client.ifindex as u64);
    assert_eq!(
        at_client.len(),
        REQUESTS,
        "only the round after the reload at the client's veth"
    );
    for t in &at_client {
        assert_named(t, "client");
    }
}

/// A pod created while the daemon runs is named from its first request, at both ends'
/// veths, by node-local discovery alone (no static map, the periodic rescan far away):
/// the link event that attaches its veth also rescans the namespaces.
#[test]
fn a_pod_created_while_running_is_named_from_its_first_packet() {
    let (_serial, mut s) = setup();
    let cfg = s.dir.join("rescan.toml");
    // The periodic rescan would take 60 s: only the link event can name the pod in time.
    std::fs::write(&cfg, "[attribution]\nresync_secs = 60\n").unwrap();
    let regex = format!("{}.*", s.bridge.prefix);
    let mut d = Daemon::start(
        &s.dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            &regex,
        ],
    );
    let late = s.bridge.pod();
    d.wait_log(
        &format!("interface={} ", late.host_if),
        Duration::from_secs(5),
    );
    // At once: every request of the new pod must already carry it.
    let mut c = late.ns.cmd("curl");
    c.args(["-s", "--max-time", "10"]);
    for _ in 0..REQUESTS {
        c.args([
            "-o",
            "/dev/null",
            &format!("http://{}/index.html", s.server.ip),
        ]);
    }
    sh(&mut c);
    std::thread::sleep(Duration::from_millis(300));
    let all = d.stop();
    for (obs, side) in [(late.ifindex, "client"), (s.server.ifindex, "server")] {
        let seen: Vec<_> = http_at(&all, obs as u64)
            .into_iter()
            .filter(|t| t["client.address"] == late.ip.as_str())
            .collect();
        assert_eq!(seen.len(), REQUESTS, "requests at the {side}'s veth");
        for t in seen {
            assert_eq!(t["client.podtap.kind"], "pod", "{side}: {t}");
            assert_eq!(
                t["client.podtap.netns.name"],
                late.ns.name.as_str(),
                "{side}: {t}"
            );
            assert_eq!(
                t["server.podtap.netns.name"],
                s.server.ns.name.as_str(),
                "{t}"
            );
        }
    }
}

/// Two servers in one pod namespace, nginx on :80 and Python's http.server on :8000 (the
/// namespace's first process is nginx), and a client pod with a bystander process: every
/// transaction names the process that holds its socket, at both veths. The server end is
/// found by its listening socket; a client connection open across a namespace rescan by
/// its own socket; a short curl in a namespace of two processes is named by none, or by
/// curl if a rescan saw it, never by the bystander.
#[test]
fn each_transaction_names_the_process_serving_its_port() {
    let (_serial, s) = setup();
    let py = python_http(&s.server.ns, &s.server.ip, 8000, &s.dir.join("www"));
    let py_pid = py.0.as_ref().unwrap().id();
    let nginx_pids = pids_named(&s.server.ns, "nginx");
    assert!(!nginx_pids.is_empty());
    let _bystander = Proc(Some(
        s.client.ns.cmd("sleep").arg("600").spawn().expect("sleep"),
    ));
    let cfg = s.dir.join("procs.toml");
    // Rescans every second: the long connection below is seen by one.
    std::fs::write(&cfg, "[attribution]\nresync_secs = 1\n").unwrap();
    let regex = format!("{}.*", s.bridge.prefix);
    let mut d = Daemon::start(
        &s.dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            &regex,
        ],
    );
    for p in [&s.server, &s.client] {
        d.wait_log(&format!("interface={} ", p.host_if), Duration::from_secs(5));
    }
    curl(&s);
    let mut c = s.client.ns.cmd("curl");
    c.args(["-s", "--max-time", "10"]);
    for _ in 0..REQUESTS {
        c.args([
            "-o",
            "/dev/null",
            &format!("http://{}:8000/index.html", s.server.ip),
        ]);
    }
    sh(&mut c);
    // A client that connects, waits past a rescan, then asks; it keeps its socket a
    // moment after the answer, so the snapshot the transaction is reported against has
    // seen it open.
    let script = format!(
        "import socket, time\n\
         s = socket.create_connection(('{}', 80))\n\
         time.sleep(3)\n\
         s.sendall(b'GET /index.html HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n')\n\
         data = b''\n\
         while True:\n    d = s.recv(65536)\n    if not d: break\n    data += d\n\
         print(data.split(b'\\r\\n')[0].decode(), flush=True)\n\
         time.sleep(1)\n",
        s.server.ip
    );
    let long = s
        .client
        .ns
        .cmd("python3")
        .args(["-c", &script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let long_pid = long.id();
    let out = long.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "HTTP/1.1 200 OK"
    );
    std::thread::sleep(Duration::from_millis(300));
    let all = d.stop();

    for (obs, side) in [(s.server.ifindex, "server"), (s.client.ifindex, "client")] {
        let txs = http_at(&all, obs as u64);
        assert_eq!(txs.len(), 2 * REQUESTS + 1, "at the {side}'s veth");
        for t in txs {
            let pid = t["server.process.pid"].as_u64().map(|p| p as u32);
            let port = t["server.port"].as_u64().unwrap();
            let (name, pid_ok) = match port {
                80 => ("nginx", pid.is_some_and(|p| nginx_pids.contains(&p))),
                8000 => ("python3", pid == Some(py_pid)),
                p => panic!("port {p}: {t}"),
            };
            assert_eq!(t["server.process.executable.name"], name, "{side}: {t}");
            assert!(
                pid_ok,
                "{side}: pid of {name} ({nginx_pids:?}, {py_pid}): {t}"
            );
            if t["client.process.pid"] == long_pid {
                assert_eq!(t["client.process.executable.name"], "python3", "{t}");
                assert_eq!(port, 80, "{t}");
            } else {
                assert_ne!(t["client.process.executable.name"], "sleep", "{side}: {t}");
                if t.get("client.process.pid").is_some() {
                    assert_eq!(t["client.process.executable.name"], "curl", "{side}: {t}");
                }
            }
        }
        let named_long = http_at(&all, obs as u64)
            .into_iter()
            .filter(|t| t["client.process.pid"] == long_pid)
            .count();
        assert_eq!(
            named_long, 1,
            "the long connection names its client at the {side}'s veth"
        );
    }
}
