//! `podtap run` capturing live: "pod" namespaces on a bridge in the root namespace (as a
//! bridge CNI wires them), real nginx in one pod and real curl in another; podtap must
//! report exactly the requests curl made, at both pods' interfaces, with zero kernel
//! drops; pods created while it runs are picked up; nothing is left behind.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

/// 200 / 404 / 500 requests curl makes on one keep-alive connection, plus separate
/// single-request connections.
const OK: usize = 60;
const MISSING: usize = 20;
const FAILING: usize = 20;
const SINGLE: usize = 10;

struct Setup {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    _nginx: Proc,
    _redis: Proc,
    server: Pod,
    client: Pod,
    bridge: Bridge,
}

fn setup() -> Setup {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), vec![b'x'; 3000]).unwrap();
    let mut bridge = Bridge::new();
    let server = bridge.pod();
    let client = bridge.pod();
    let nginx = nginx(&server.ns, &server.ip, dir.path(), &root);
    let redis = redis(&server);
    Setup {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        _nginx: nginx,
        _redis: redis,
        server,
        client,
        bridge,
    }
}

/// redis-server in the server pod on port 6379; returns once it answers.
fn redis(server: &Pod) -> Proc {
    let child = server
        .ns
        .cmd("redis-server")
        .args([
            "--bind",
            &server.ip,
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--protected-mode", "no"])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server is installed (make deps-test)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !server
        .ns
        .cmd("redis-cli")
        .args(["-h", &server.ip, "PING"])
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
    {
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(Some(child))
}

/// PINGs sent by redis-cli on one connection.
const PINGS: usize = 100;

/// Make the requests; returns the status codes curl saw and the connections it opened
/// (nginx closes the connection after a 500, so that is not simply one per invocation).
fn load(client: &Pod, server_ip: &str) -> (Vec<u16>, usize) {
    let mut urls = Vec::new();
    for i in 0..OK + MISSING + FAILING {
        urls.push(match i % 5 {
            0 => format!("http://{server_ip}/missing/{i}"),
            1 => format!("http://{server_ip}/fail"),
            _ => format!("http://{server_ip}/index.html"),
        });
    }
    let mut statuses = Vec::new();
    let mut connects = 0;
    let mut run = |urls: &[String]| {
        let mut c = client.ns.cmd("curl");
        c.args([
            "-s",
            "--max-time",
            "20",
            "-w",
            "%{http_code} %{num_connects}\n",
        ]);
        // `-o` applies to one URL: one per URL keeps every body off stdout.
        for u in urls {
            c.args(["-o", "/dev/null", u]);
        }
        let out = sh(&mut c);
        for l in out.lines() {
            let (st, n) = l.split_once(' ').expect("status and connects");
            statuses.push(st.parse::<u16>().expect("status"));
            connects += n.parse::<usize>().expect("connects");
        }
    };
    run(&urls);
    for _ in 0..SINGLE {
        run(&[format!("http://{server_ip}/index.html")]);
    }
    (statuses, connects)
}

/// One GET of `/index.html` from `client`, which must answer 200.
fn get_index(client: &Pod, server_ip: &str) {
    let out = sh(client
        .ns
        .cmd("curl")
        .args([
            "-s",
            "--max-time",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
        ])
        .arg(format!("http://{server_ip}/index.html")));
    assert_eq!(out, "200");
}

fn count_statuses<'a>(it: impl Iterator<Item = &'a serde_json::Value>) -> BTreeMap<u64, usize> {
    let mut m = BTreeMap::new();
    for t in it {
        *m.entry(t["http.response.status_code"].as_u64().unwrap_or(0))
            .or_default() += 1;
    }
    m
}

fn at<'a>(
    records: &'a [serde_json::Value],
    kind: &str,
    ifindex: u32,
) -> Vec<&'a serde_json::Value> {
    records
        .iter()
        .filter(|r| r["podtap.record"] == kind && r["podtap.observation_point"] == ifindex)
        .collect()
}

fn flows_to(records: &[serde_json::Value], ifindex: u32, port: u16) -> Vec<&serde_json::Value> {
    at(records, "flow", ifindex)
        .into_iter()
        .filter(|f| f["network.transport"] == "tcp" && f["server.port"] == port)
        .collect()
}

/// A config naming a capture device of this test's own, so tests can run in parallel.
fn config(s: &Setup, extra: &str) -> String {
    let tag = &s.bridge.name[4..];
    let path = s.dir.join("podtap.toml");
    std::fs::write(
        &path,
        format!(
            "[capture.mirror]\ndevice = \"ptap{tag}\"\npeer = \"ptapc{tag}\"\nstate_dir = \"{}\"\n{extra}",
            s.dir.display()
        ),
    )
    .unwrap();
    path.display().to_string()
}

#[test]
fn tpacket_reports_every_request_at_both_pods() {
    every_request_at_both_pods("tpacket", "tpacket");
}

/// The same traffic through the mirror device and AF_XDP gives the same results.
#[test]
fn xdp_reports_every_request_at_both_pods() {
    every_request_at_both_pods("xdp", "xdp");
}

fn every_request_at_both_pods(mode: &str, engine: &str) {
    let s = setup();
    let regex = format!("{}.*", s.bridge.prefix);
    let cfg = config(&s, "");
    let mut d = Daemon::start(
        &s.dir,
        &[
            "--config",
            &cfg,
            "--mode",
            mode,
            "-i",
            &regex,
            "--workers",
            "2",
        ],
    );
    let attached = d.wait_log(
        &format!("interface={}", s.client.host_if),
        Duration::from_secs(5),
    );
    assert!(
        attached.contains(&format!("engine=\"{engine}\"")),
        "{attached}"
    );
    let (statuses, connects) = load(&s.client, &s.server.ip);
    let pongs = sh(s.client.ns.cmd("redis-cli").args([
        "-h",
        &s.server.ip,
        "-r",
        &PINGS.to_string(),
        "PING",
    ]));
    assert_eq!(pongs.lines().filter(|l| *l == "PONG").count(), PINGS);
    assert_eq!(statuses.len(), OK + MISSING + FAILING + SINGLE);
    let mut want: BTreeMap<u64, usize> = BTreeMap::new();
    for st in &statuses {
        *want.entry(*st as u64).or_default() += 1;
    }
    assert_eq!(want.get(&200), Some(&(OK + SINGLE)));
    assert!(connects > SINGLE, "{connects} connections");
    // Let the last frames leave the ring (retire timeout) before stopping.
    std::thread::sleep(Duration::from_millis(300));
    let records = d.stop();

    for (pod, name) in [(&s.server, "server"), (&s.client, "client")] {
        let txs = at(&records, "transaction", pod.ifindex);
        assert_eq!(
            txs.len(),
            statuses.len(),
            "transactions seen at the {name} pod's veth"
        );
        assert_eq!(count_statuses(txs.iter().copied()), want, "{name} statuses");
        assert!(txs.iter().all(|t| t["podtap.complete"] == true), "{name}");
        assert!(
            txs.iter()
                .all(|t| t["server.address"] == s.server.ip.as_str()
                    && t["client.address"] == s.client.ip.as_str())
        );
        let flows = flows_to(&records, pod.ifindex, 80);
        assert_eq!(flows.len(), connects, "TCP connections at the {name} pod");
        assert!(flows.iter().all(|f| f["podtap.flow.end_reason"] == "fin"));
        // Redis (no decoder yet): one connection, every byte of RESP each way
        // (`*1\r\n$4\r\nPING\r\n` is 14 bytes, `+PONG\r\n` 7).
        let redis: Vec<_> = flows_to(&records, pod.ifindex, 6379);
        assert_eq!(redis.len(), 1, "redis connections at the {name} pod");
        assert_eq!(redis[0]["podtap.flow.client.payload_bytes"], 14 * PINGS);
        assert_eq!(redis[0]["podtap.flow.server.payload_bytes"], 7 * PINGS);
        assert_eq!(redis[0]["podtap.flow.end_reason"], "fin");
    }
    assert_eq!(d.log_value("podtap stopped", "kernel_dropped"), Some(0));
    assert_eq!(d.log_value("podtap stopped", "records_dropped"), Some(0));
    assert_eq!(
        d.log_value("podtap stopped", "transactions"),
        Some(2 * statuses.len() as u64)
    );
    assert_nothing_left(&s);
}

/// No qdiscs, filters or XDP programs on the pods' veths, no capture device.
fn assert_nothing_left(s: &Setup) {
    for pod in [&s.server, &s.client] {
        let qdisc = sh(Command::new("tc").args(["qdisc", "show", "dev", &pod.host_if]));
        assert!(!qdisc.contains("clsact"), "{qdisc}");
        let filters =
            sh(Command::new("tc").args(["filter", "show", "dev", &pod.host_if, "ingress"]));
        assert!(filters.trim().is_empty(), "{filters}");
        let link = sh(Command::new("ip").args(["link", "show", "dev", &pod.host_if]));
        assert!(!link.contains("xdp"), "{link}");
    }
    let links = sh(Command::new("ip").args(["-br", "link"]));
    let dev = format!("ptap{}", &s.bridge.name[4..]);
    assert!(
        !links.contains(&dev),
        "capture device left behind:\n{links}"
    );
}

/// AF_XDP asked for where it cannot run (zero-copy on veths, which have no zero-copy
/// mode): TPACKET_V3 takes the interfaces over, says why, and captures everything.
#[test]
fn forced_fallback_to_tpacket_says_why() {
    let s = setup();
    let regex = format!("{}.*", s.bridge.prefix);
    let cfg = config(&s, "[capture.xdp]\nzero_copy = \"on\"\n");
    let mut d = Daemon::start(&s.dir, &["--config", &cfg, "--mode", "xdp", "-i", &regex]);
    let attached = d.wait_log(
        &format!("interface={}", s.server.host_if),
        Duration::from_secs(5),
    );
    assert!(attached.contains("engine=\"tpacket\""), "{attached}");
    assert!(attached.contains("AF_XDP unavailable"), "{attached}");
    get_index(&s.client, &s.server.ip);
    std::thread::sleep(Duration::from_millis(300));
    let records = d.stop();
    assert_eq!(at(&records, "transaction", s.server.ifindex).len(), 1);
    assert_eq!(at(&records, "transaction", s.client.ifindex).len(), 1);
    assert_nothing_left(&s);
}

#[test]
fn pods_created_while_running_are_captured_and_nothing_leaks() {
    let mut s = setup();
    let regex = format!("{}.*", s.bridge.prefix);
    // In xdp mode pods are mirrored: churn exercises attach and detach of the mirror.
    let cfg = config(&s, "");
    let mut d = Daemon::start(&s.dir, &["--config", &cfg, "--mode", "xdp", "-i", &regex]);
    // A pod that appears after the start.
    let created = Instant::now();
    let late = s.bridge.pod();
    d.wait_log(
        &format!("interface={}", late.host_if),
        Duration::from_secs(2),
    );
    assert!(
        created.elapsed() < Duration::from_secs(2),
        "attached {:?} after the veth appeared",
        created.elapsed()
    );
    get_index(&late, &s.server.ip);
    // The pod goes away while podtap runs.
    let late_ifindex = late.ifindex;
    let late_ip = late.ip.clone();
    drop(late);
    d.wait_log("detached", Duration::from_secs(2));
    // The remaining pods still work and are still captured.
    get_index(&s.client, &s.server.ip);
    std::thread::sleep(Duration::from_millis(300));
    let records = d.stop();
    let late_txs = at(&records, "transaction", late_ifindex);
    assert_eq!(late_txs.len(), 1, "the late pod's request at its own veth");
    assert_eq!(late_txs[0]["client.address"], late_ip.as_str());
    let server_txs = at(&records, "transaction", s.server.ifindex);
    assert_eq!(server_txs.len(), 2, "both requests at the server's veth");
    let client_txs = at(&records, "transaction", s.client.ifindex);
    assert_eq!(client_txs.len(), 1);

    assert_nothing_left(&s);
}

/// `podtap check` under a config: which interfaces `run` would capture, what AF_XDP can
/// do on each, and the engine auto mode picks with its reason. A pod veth gets TPACKET_V3
/// (AF_XDP on a veth is copy-mode only), a `capture.direct` veth AF_XDP, and an
/// interface outside `capture.interfaces` is not captured.
#[test]
fn check_reports_each_interfaces_engine_under_the_config() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::new();
    let (plain, direct) = (bridge.pod(), bridge.pod());
    let cfg = dir.path().join("check.toml");
    std::fs::write(
        &cfg,
        format!(
            "[capture]\nmode = \"auto\"\ninterfaces = [\"{}.*\"]\ndirect = [\"{}\"]\n",
            bridge.prefix, direct.host_if
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(["--config", cfg.to_str().unwrap(), "check"])
        .output()
        .expect("podtap check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |name: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no row for {name} in\n{text}"));
        line.split_whitespace().map(str::to_string).collect()
    };
    // interface ifindex kind up captured xdp engine binds reason...
    let p = row(&plain.host_if);
    assert_eq!(p[1], plain.ifindex.to_string());
    assert_eq!((p[2].as_str(), p[4].as_str()), ("veth", "yes"), "{text}");
    assert!(["native", "generic"].contains(&p[5].as_str()), "{text}");
    assert_eq!(p[6], "tpacket", "{text}");
    assert_eq!(p[7], "copies", "{text}");
    assert!(p[8..].join(" ").contains("copy-mode"), "{text}");
    let d = row(&direct.host_if);
    assert_eq!((d[4].as_str(), d[6].as_str()), ("yes", "xdp"), "{text}");
    assert_eq!(d[7..9].join(" "), "TAKES ALL", "{text}");
    assert!(d[9..].join(" ").contains("capture.direct"), "{text}");
    let b = row(&bridge.name);
    assert_eq!((b[2].as_str(), b[4].as_str()), ("bridge", "no"), "{text}");
}

/// `podtap check` predicts the engine `run` uses: with a setting under which AF_XDP
/// cannot bind (zero-copy required on veths, which have no zero-copy mode), check tries
/// the bind on a scratch device, fails with the cause and shows TPACKET_V3 for the pod
/// veths; `run` under the same config attaches them with TPACKET_V3 too. Under a config
/// where the bind works, check shows `xdp`, and so does run.
#[test]
fn check_predicts_the_engine_run_uses() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::new();
    let pod = bridge.pod();
    let id = std::process::id() % 100_000;
    for (zero_copy, engine) in [("on", "tpacket"), ("auto", "xdp")] {
        let cfg = dir.path().join(format!("zc-{zero_copy}.toml"));
        std::fs::write(
            &cfg,
            format!(
                "[capture]\nmode = \"xdp\"\ninterfaces = [\"{}.*\"]\n\
                 [capture.xdp]\nzero_copy = \"{zero_copy}\"\nframe_count = 4096\n\
                 fill_ring = 4096\nrx_ring = 4096\n\
                 [capture.mirror]\ndevice = \"ptm{id}\"\npeer = \"ptm{id}c\"\n",
                bridge.prefix
            ),
        )
        .unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_podtap"))
            .args(["--config", cfg.to_str().unwrap(), "check"])
            .output()
            .expect("podtap check");
        let text = String::from_utf8_lossy(&out.stdout);
        let bind = text
            .lines()
            .find(|l| l.contains("AF_XDP bind"))
            .unwrap_or_else(|| panic!("{text}"));
        assert_eq!(bind.starts_with("[FAIL]"), engine == "tpacket", "{text}");
        let row: Vec<&str> = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&pod.host_if))
            .unwrap_or_else(|| panic!("{text}"))
            .split_whitespace()
            .collect();
        assert_eq!(row[6], engine, "check, zero_copy={zero_copy}:\n{text}");

        let mut d = Daemon::start(
            dir.path(),
            &["--config", cfg.to_str().unwrap(), "--workers", "1"],
        );
        let line = d.wait_log(
            &format!("interface={} ", pod.host_if),
            std::time::Duration::from_secs(5),
        );
        assert!(
            line.contains(&format!("engine=\"{engine}\""))
                || line.contains(&format!("engine={engine}")),
            "run, zero_copy={zero_copy}: {line}"
        );
        d.stop();
    }
}
