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
