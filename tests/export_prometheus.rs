//! Prometheus exposition scraped by a real Prometheus (Debian's `prometheus`, on
//! loopback with a temporary config and storage, scraping every second): the request
//! counts Prometheus stores equal the requests a real curl made to a real nginx.

mod common;
mod export_common;

use common::*;
use export_common::*;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Value of an instant query, if it has exactly one sample.
fn query(port: u16, q: &str) -> Option<f64> {
    let out = Command::new("curl")
        .args(["-s", "-m", "5", "-G"])
        .arg(format!("http://127.0.0.1:{port}/api/v1/query"))
        .args(["--data-urlencode", &format!("query={q}")])
        .output()
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).ok()?;
    let r = v["data"]["result"].as_array()?;
    if r.len() != 1 {
        return None;
    }
    r[0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_request_counts_equal_to_what_the_client_sent() {
    let t = http_traffic(10, 2);
    let (podtap_port, prom_port) = (free_port(), free_port());
    let dir = t.dir.path();
    let prom_cfg = dir.join("prometheus.yml");
    std::fs::write(
        &prom_cfg,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: podtap\n    static_configs:\n      - targets: ['127.0.0.1:{podtap_port}']\n"
        ),
    )
    .unwrap();
    let storage = dir.join("tsdb");
    let _prom = Proc(Some(
        Command::new("prometheus")
            .arg(format!("--config.file={}", prom_cfg.display()))
            .arg(format!("--storage.tsdb.path={}", storage.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus is installed (make deps-test)"),
    ));
    wait_listening(prom_port, "prometheus");

    let cfg = format!("[export.prometheus]\nlisten = \"127.0.0.1:{podtap_port}\"\n");
    let mut podtap = Proc(Some(
        podtap(dir, &cfg, &t.pcap, &["--hold-secs", "30"])
            .spawn()
            .unwrap(),
    ));
    wait_listening(podtap_port, "podtap /metrics");
    // A replay runs without transparent huge pages (switched off before its first
    // allocation); the kernel shows the process's setting in its status file.
    let pid = podtap.0.as_ref().unwrap().id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("THP_enabled:\t0"), "{status}");

    let n = t.requests as f64;
    let deadline = Instant::now() + Duration::from_secs(25);
    let count_q = "sum(http_server_request_duration_seconds_count{job=\"podtap\"})";
    let got = loop {
        let v = query(prom_port, count_q);
        if v == Some(n) || Instant::now() > deadline {
            break v;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(got, Some(n), "requests counted by Prometheus");
    // Per status: 10 plain requests cycle /, /missing, /fail; 2 traced ones hit /.
    let by = |route: &str, code: u16| {
        query(
            prom_port,
            &format!(
                "sum(http_server_request_duration_seconds_count{{http_route=\"{route}\",http_response_status_code=\"{code}\"}})"
            ),
        )
    };
    assert_eq!(by("/", 200), Some(6.0));
    assert_eq!(by("/missing", 404), Some(3.0));
    assert_eq!(by("/fail", 500), Some(3.0));
    // The +Inf bucket holds every request.
    assert_eq!(
        query(
            prom_port,
            "sum(http_server_request_duration_seconds_bucket{le=\"+Inf\"})"
        ),
        Some(n)
    );
    // Network series: every connection's handshake was seen (nginx closes keep-alive
    // after a 500, so curl reconnects: count the SYNs tshark sees).
    let syns = tshark_count(&t.pcap, "tcp.flags.syn == 1 && tcp.flags.ack == 0");
    assert!(syns >= 3);
    assert_eq!(
        query(prom_port, "sum(podtap_tcp_connections_opened_total)"),
        Some(syns as f64)
    );
    assert!(
        query(
            prom_port,
            "sum(podtap_flow_io_bytes_total{podtap_flow_direction=\"client_to_server\"})"
        )
        .is_some_and(|b| b > 0.0)
    );
    assert_eq!(
        query(prom_port, "up{job=\"podtap\"}"),
        Some(1.0),
        "the scrape itself is healthy"
    );
    let (code, _) = http_get(podtap_port, "/healthz");
    assert_eq!(code, 200);
    podtap.interrupt();
}

/// `name{labels} value` lines of a scrape, by series (`name{labels}`).
fn series(body: &str) -> std::collections::HashMap<String, f64> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// The capture health series exist from the exporter's start, at zero, so an alert on
/// drops has a series before the first drop: every event kind of `src/events.rs`, each
/// worker's packets, bytes, kernel drops and ring-full counts, and each interface's
/// packets and bytes from its attachment (gone at its detachment).
#[test]
fn capture_health_series_exist_at_zero_before_anything_happens() {
    use podtap::events::Event;
    use podtap::export::{Exporter, Health, config::ExportConfig};
    let mut cfg = ExportConfig::default();
    cfg.prometheus.listen = "127.0.0.1:0".into();
    let e = Exporter::start(&cfg, Health::new()).unwrap();
    let port = e.prometheus_addr.unwrap().port();
    let _workers = [e.worker_handle(0), e.worker_handle(1)];
    let s = series(&http_get(port, "/metrics").1);
    let zero = |k: &str| assert_eq!(s.get(k), Some(&0.0), "{k} in {s:#?}");
    for ev in Event::all() {
        zero(&format!(
            "podtap_events_total{{podtap_event=\"{}\"}}",
            ev.name()
        ));
    }
    for w in 0..2 {
        zero(&format!(
            "podtap_capture_packets_total{{podtap_worker=\"{w}\"}}"
        ));
        zero(&format!(
            "podtap_capture_bytes_total{{podtap_worker=\"{w}\"}}"
        ));
        for reason in ["kernel", "ring_full"] {
            zero(&format!(
                "podtap_capture_drops_total{{podtap_drop_reason=\"{reason}\",podtap_worker=\"{w}\"}}"
            ));
        }
    }
    let iface = |m: &str| format!("podtap_interface_{m}_total{{network_interface_name=\"veth7\"}}");
    assert!(!s.contains_key(&iface("packets")), "not attached yet");
    e.interface_attached(7, "veth7");
    let s = series(&http_get(port, "/metrics").1);
    for m in ["packets", "bytes"] {
        assert_eq!(s.get(&iface(m)), Some(&0.0), "{s:#?}");
    }
    e.interface_detached(7);
    let s = series(&http_get(port, "/metrics").1);
    assert!(!s.contains_key(&iface("packets")), "detached: {s:#?}");
    assert!(!s.contains_key(&iface("bytes")), "detached: {s:#?}");
}

/// The daemon wires it up: on a live pod veth, before any traffic the test makes, every
/// event kind, each worker's drops and the interface's series are there; ping traffic
/// then shows in the interface's and the workers' packet counts.
#[test]
fn live_daemon_has_capture_health_series_from_the_start() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut bridge = Bridge::new();
    let server = bridge.pod();
    let client = bridge.pod();
    let prom = free_port();
    let cfg = dir.path().join("podtap.toml");
    std::fs::write(
        &cfg,
        format!("[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"),
    )
    .unwrap();
    let mut d = Daemon::start(
        dir.path(),
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            &server.host_if,
            "--workers",
            "2",
        ],
    );
    d.wait_log(
        &format!("interface={}", server.host_if),
        Duration::from_secs(5),
    );
    let s = series(&http_get(prom, "/metrics").1);
    for ev in podtap::events::Event::all() {
        let k = format!("podtap_events_total{{podtap_event=\"{}\"}}", ev.name());
        assert!(s.contains_key(&k), "{k} in {s:#?}");
    }
    for w in 0..2 {
        for reason in ["kernel", "ring_full"] {
            let k = format!(
                "podtap_capture_drops_total{{podtap_drop_reason=\"{reason}\",podtap_worker=\"{w}\"}}"
            );
            assert_eq!(s.get(&k), Some(&0.0), "{k} in {s:#?}");
        }
        let k = format!("podtap_capture_packets_total{{podtap_worker=\"{w}\"}}");
        assert!(s.contains_key(&k), "{k} in {s:#?}");
    }
    let iface = format!(
        "podtap_interface_packets_total{{network_interface_name=\"{}\"}}",
        server.host_if
    );
    assert!(s.contains_key(&iface), "{iface} in {s:#?}");
    assert!(
        s.contains_key(&iface.replace("_packets_", "_bytes_")),
        "{s:#?}"
    );

    // Five echo requests and five replies cross the server's veth.
    sh(client
        .ns
        .cmd("ping")
        .args(["-c", "5", "-i", "0.2", "-W", "2", &server.ip]));
    let deadline = Instant::now() + Duration::from_secs(10);
    let s = loop {
        let s = series(&http_get(prom, "/metrics").1);
        if s.get(&iface).is_some_and(|v| *v >= 10.0) || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let on_iface = s[&iface];
    assert!(on_iface >= 10.0, "{iface}: {on_iface}");
    let by_workers: f64 = (0..2)
        .map(|w| s[&format!("podtap_capture_packets_total{{podtap_worker=\"{w}\"}}")])
        .sum();
    assert!(by_workers >= on_iface, "{by_workers} < {on_iface}");
    d.stop();
}
