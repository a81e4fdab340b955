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
    Setup {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        _nginx: nginx,
        server,
        client,
        bridge,
    }
}

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

#[test]
fn tpacket_reports_every_request_at_both_pods() {
    let s = setup();
    let regex = format!("{}.*", s.bridge.prefix);
    let mut d = Daemon::start(
        &s.dir,
        &["--mode", "tpacket", "-i", &regex, "--workers", "2"],
    );
    d.wait_log(
        &format!("interface={}", s.server.host_if),
        Duration::from_secs(5),
    );
    let (statuses, connects) = load(&s.client, &s.server.ip);
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
        let flows: Vec<_> = at(&records, "flow", pod.ifindex)
            .into_iter()
            .filter(|f| f["network.transport"] == "tcp")
            .collect();
        assert_eq!(flows.len(), connects, "TCP connections at the {name} pod");
        assert!(flows.iter().all(|f| f["podtap.flow.end_reason"] == "fin"));
    }
    assert_eq!(d.log_value("podtap stopped", "kernel_dropped"), Some(0));
    assert_eq!(d.log_value("podtap stopped", "records_dropped"), Some(0));
    assert_eq!(
        d.log_value("podtap stopped", "transactions"),
        Some(2 * statuses.len() as u64)
    );
}

#[test]
fn pods_created_while_running_are_captured_and_nothing_leaks() {
    let mut s = setup();
    let regex = format!("{}.*", s.bridge.prefix);
    let mut d = Daemon::start(&s.dir, &["--mode", "tpacket", "-i", &regex]);
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
    let out = sh(late
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
        .arg(format!("http://{}/index.html", s.server.ip)));
    assert_eq!(out, "200");
    // The pod goes away while podtap runs.
    let late_ifindex = late.ifindex;
    let late_ip = late.ip.clone();
    drop(late);
    d.wait_log("detached", Duration::from_secs(2));
    // The remaining pods still work and are still captured.
    let out = sh(s
        .client
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
        .arg(format!("http://{}/index.html", s.server.ip)));
    assert_eq!(out, "200");
    std::thread::sleep(Duration::from_millis(300));
    let records = d.stop();
    let late_txs = at(&records, "transaction", late_ifindex);
    assert_eq!(late_txs.len(), 1, "the late pod's request at its own veth");
    assert_eq!(late_txs[0]["client.address"], late_ip.as_str());
    let server_txs = at(&records, "transaction", s.server.ifindex);
    assert_eq!(server_txs.len(), 2, "both requests at the server's veth");
    let client_txs = at(&records, "transaction", s.client.ifindex);
    assert_eq!(client_txs.len(), 1);

    // Nothing left behind on the pods' interfaces: no qdiscs or filters, no XDP program,
    // no capture device.
    for pod in [&s.server, &s.client] {
        let qdisc = sh(Command::new("tc").args(["qdisc", "show", "dev", &pod.host_if]));
        assert!(!qdisc.contains("clsact"), "{qdisc}");
        let link = sh(Command::new("ip").args(["link", "show", "dev", &pod.host_if]));
        assert!(!link.contains("xdp"), "{link}");
    }
    let links = sh(Command::new("ip").args(["-br", "link"]));
    assert!(
        !links.contains("ptap"),
        "capture device left behind:\n{links}"
    );
}
