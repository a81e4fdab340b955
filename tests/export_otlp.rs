//! OTLP export to a real collector (rotel on loopback): real nginx + curl traffic in
//! namespaces, some requests carrying a W3C traceparent, captured and replayed by podtap
//! exporting over gRPC and over HTTP/protobuf. What the collector logged must match what
//! the client did: one SERVER span per request, joined to the caller's trace, and a
//! duration histogram counting every request. Then a collector outage: podtap stays
//! within its span buffer, counts every dropped span exactly, and resumes.

mod common;
mod export_common;

use common::*;
use export_common::*;
use std::time::{Duration, Instant};

fn config(protocol: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[export.otlp]\nenabled = true\nprotocol = \"{protocol}\"\nendpoint = \"{endpoint}\"\n\
         [export.metrics]\ninterval_ms = 200\ntemporality = \"delta\"\n{extra}"
    )
}

#[test]
fn spans_and_metrics_reach_a_real_collector_over_grpc_and_http() {
    let t = http_traffic(9, 3);
    for (protocol, compression) in [("grpc", "none"), ("http/protobuf", "gzip")] {
        let (grpc, http) = (free_port(), free_port());
        let log = t.dir.path().join(format!("rotel-{grpc}.out"));
        let _rotel = rotel(grpc, http, &log, t.dir.path());
        let endpoint = if protocol == "grpc" {
            format!("http://127.0.0.1:{grpc}")
        } else {
            format!("http://127.0.0.1:{http}")
        };
        let extra = "[export.spans]\nmax_batch = 5\n";
        let cfg = config(protocol, &endpoint, extra).replace(
            "[export.otlp]\n",
            &format!("[export.otlp]\ncompression = \"{compression}\"\n"),
        );
        let out = podtap(t.dir.path(), &cfg, &t.pcap, &[])
            .output()
            .expect("podtap");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let totals = export_totals(&stderr);
        assert_eq!(totals["spans.sampled"], t.requests as u64, "{stderr}");
        assert_eq!(totals["spans.exported"], t.requests as u64, "{stderr}");
        assert_eq!(totals["spans.dropped"], 0);

        // rotel batches for 100 ms before logging.
        let deadline = Instant::now() + Duration::from_secs(10);
        let (spans, count) = loop {
            let (s, c) = collector_log(&log, "http.server.request.duration");
            if (s.len() >= t.requests && c >= t.requests as u64) || Instant::now() > deadline {
                break (s, c);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert_eq!(spans.len(), t.requests, "{protocol}: spans {spans:#?}");
        assert_eq!(count, t.requests as u64, "{protocol}: histogram count");
        assert!(
            spans.iter().all(|s| s.kind == "SPAN_KIND_SERVER"),
            "{spans:?}"
        );
        let mut names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names, ["GET /", "GET /fail", "GET /missing"], "{protocol}");
        for (trace, parent) in &t.traced {
            let joined: Vec<_> = spans.iter().filter(|s| &s.trace_id == trace).collect();
            assert_eq!(joined.len(), 1, "{protocol}: trace {trace} in {spans:#?}");
            assert_eq!(&joined[0].parent_id, parent, "{protocol}");
        }
        // The others are roots of their own traces.
        let roots = spans.iter().filter(|s| s.parent_id.is_empty()).count();
        assert_eq!(roots, t.requests - t.traced.len(), "{protocol}");

        // Histogram data points carry the semantic-convention attributes.
        let text = std::fs::read_to_string(&log).unwrap();
        for attr in [
            "http.request.method: Str(GET)",
            "http.route: Str(/fail)",
            "http.response.status_code: Int(500)",
            "error.type: Str(500)",
            "server.address: Str(10.200.0.1)",
            "server.port: Int(80)",
        ] {
            assert!(text.contains(attr), "{protocol}: {attr} not logged");
        }
    }
}

#[test]
fn collector_outage_is_bounded_counted_exactly_and_recovered_from() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // 100 connections x 20 requests = 2000 transactions, far more than the buffer holds.
    let pcap = dir.path().join("many.pcap");
    let st = std::process::Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("synth")
        .arg(&pcap)
        .args(["--tcp-flows", "100", "--requests", "20"])
        .output()
        .unwrap();
    assert!(st.status.success());
    const PRODUCED: u64 = 2000;
    const BOUND: u64 = 300;
    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let cfg = config(
        "grpc",
        &format!("http://127.0.0.1:{grpc}"),
        &format!(
            "[export.spans]\nmax_buffered = {BOUND}\nmax_batch = 100\nretry_initial_ms = 100\n\
             retry_max_ms = 400\n[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"
        ),
    );
    // The collector is down while podtap produces every span.
    let mut child = Proc(Some(
        podtap(dir.path(), &cfg, &pcap, &["--hold-secs", "6"])
            .spawn()
            .unwrap(),
    ));
    wait_listening(prom, "podtap /metrics");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, m) = http_get(prom, "/metrics");
        if m.contains("podtap_export_failures_total{signal=\"traces\"} ") {
            let failing = m
                .lines()
                .find(|l| l.starts_with("podtap_export_failures_total{signal=\"traces\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .unwrap_or(0);
            if failing >= 2 {
                break;
            }
        }
        assert!(Instant::now() < deadline, "exports never failed: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, body) = http_get(prom, "/readyz");
    assert_eq!(code, 503, "not ready while the collector is down: {body}");
    assert_eq!(http_get(prom, "/healthz").0, 200);

    // The collector comes back: podtap resumes and empties its buffer.
    let log = dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, dir.path());
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector_log(&log, "").0.len() < BOUND as usize && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (code, _) = http_get(prom, "/readyz");
    assert_eq!(code, 200, "ready again once exports succeed");
    let c = child.0.take().unwrap();
    let out = c.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let t = export_totals(&stderr);
    std::thread::sleep(Duration::from_millis(500));
    let received = collector_log(&log, "").0.len() as u64;
    assert_eq!(t["spans.sampled"], PRODUCED, "{stderr}");
    assert!(t["spans.buffered_max"] <= BOUND, "{stderr}");
    assert_eq!(t["spans.exported"], received, "{stderr}");
    assert_eq!(received, BOUND, "the buffered spans were delivered");
    assert_eq!(t["spans.dropped"], PRODUCED - BOUND, "{stderr}");
    assert_eq!(
        t["spans.exported"] + t["spans.dropped"] + t["spans.rejected"],
        PRODUCED
    );
}

#[test]
fn live_daemon_exports_spans_and_metrics_and_reports_ready() {
    require_root();
    let w = web(&[]);
    let (dir, server, client) = (&w.dir, &w.server, &w.client);
    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, dir.path());
    let cfg = dir.path().join("live.toml");
    std::fs::write(
        &cfg,
        config(
            "grpc",
            &format!("http://127.0.0.1:{grpc}"),
            &format!("[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"),
        ),
    )
    .unwrap();
    // Only the server pod's veth: each request is observed once, at the server.
    let mut d = daemon(dir.path(), &cfg, &server.host_if, 1);
    assert_eq!(http_get(prom, "/readyz").0, 200, "capturing and exporting");
    const PLAIN: usize = 8;
    curl_n(client, &server.ip, "/", PLAIN);
    let (trace, parent) = ("0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331");
    curl_traced(
        client,
        &format!("http://{}/missing", server.ip),
        trace,
        parent,
    );
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    let line = d.wait_log("export: spans", Duration::from_secs(5));
    let t = export_totals(&line[line.find("export: ").unwrap()..]);
    let n = PLAIN + 1;
    assert_eq!(t["spans.sampled"], n as u64, "{line}");
    assert_eq!(t["spans.exported"], n as u64, "{line}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let (spans, count) = loop {
        let (s, c) = collector_log(&log, "http.server.request.duration");
        if (s.len() >= n && c >= n as u64) || Instant::now() > deadline {
            break (s, c);
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(spans.len(), n, "{spans:#?}");
    assert_eq!(count, n as u64);
    let joined: Vec<_> = spans.iter().filter(|s| s.trace_id == trace).collect();
    assert_eq!(joined.len(), 1);
    assert_eq!(joined[0].parent_id, parent);
    assert_eq!(joined[0].name, "GET /missing");
}

/// Two "pods" on a bridge, nginx in the server pod serving `index.html` (and `extra`
/// files), and a temp dir for configs and logs. Fields drop in order: nginx first, the
/// directory it runs in last.
struct Web {
    _nginx: Proc,
    client: Pod,
    server: Pod,
    bridge: Bridge,
    dir: tempfile::TempDir,
}

fn web(extra: &[(&str, &str)]) -> Web {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), b"hello\n").unwrap();
    for (name, body) in extra {
        std::fs::write(root.join(name), body).unwrap();
    }
    let mut bridge = Bridge::new();
    let server = bridge.pod();
    let client = bridge.pod();
    let nginx = nginx(&server.ns, &server.ip, dir.path(), &root);
    Web {
        _nginx: nginx,
        client,
        server,
        bridge,
        dir,
    }
}

/// A value of podtap's own `/metrics` (0 when absent).
fn prom_value(body: &str, series: &str) -> u64 {
    body.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

fn spans_total(body: &str, outcome: &str) -> u64 {
    prom_value(
        body,
        &format!("podtap_export_spans_total{{outcome=\"{outcome}\"}}"),
    )
}

/// `n` GETs of `path` on one keep-alive curl connection from the client pod.
fn curl_n(client: &Pod, server_ip: &str, path: &str, n: usize) {
    let mut cmd = client.ns.cmd("curl");
    cmd.args(["-s", "--max-time", "30", "-w", "%{http_code}\n"]);
    for _ in 0..n {
        cmd.args(["-o", "/dev/null", &format!("http://{server_ip}{path}")]);
    }
    let out = sh(&mut cmd);
    assert_eq!(out.lines().filter(|l| *l == "200").count(), n, "{out}");
}

/// `podtap run` on TPACKET_V3 with `cfg`, capturing the interfaces matching `iface`.
fn daemon(dir: &std::path::Path, cfg: &std::path::Path, iface: &str, workers: usize) -> Daemon {
    let workers = workers.to_string();
    Daemon::start(
        dir,
        &[
            "--config",
            cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            iface,
            "--workers",
            &workers,
        ],
    )
}

/// One GET of `url` from the client pod carrying a W3C `traceparent` (sampled).
fn curl_traced(client: &Pod, url: &str, trace: &str, parent: &str) {
    sh(client.ns.cmd("curl").args([
        "-s",
        "--max-time",
        "30",
        "-o",
        "/dev/null",
        "-H",
        &format!("traceparent: 00-{trace}-{parent}-01"),
        url,
    ]));
}

/// The collector dies while `podtap run` captures live traffic (TPACKET_V3 on a pod's
/// veth, nginx answering curl and hey) and comes back later. podtap keeps capturing
/// without a kernel drop, holds at most `max_buffered` spans, drops the oldest beyond
/// that and counts each one, and resumes: what the collector logged is exactly what
/// podtap says it exported, including spans made after the restart.
#[test]
fn live_daemon_survives_a_collector_restart_mid_run() {
    require_root();
    const BEFORE: usize = 20; // collector up
    const DURING: usize = 600; // collector down: far more than the buffer holds
    const AFTER: usize = 20; // collector back
    const BOUND: usize = 100;
    let w = web(&[("after.html", "back\n")]);
    let (dir, server, client) = (&w.dir, &w.server, &w.client);
    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rotel.out");
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    let mut rotel1 = rotel(grpc, http, &log, &first);
    let cfg = dir.path().join("live.toml");
    std::fs::write(
        &cfg,
        config(
            "grpc",
            &format!("http://127.0.0.1:{grpc}"),
            &format!(
                "[export.spans]\nmax_buffered = {BOUND}\nmax_batch = 50\nretry_initial_ms = 100\n\
                 retry_max_ms = 400\n[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"
            ),
        ),
    )
    .unwrap();
    // Only the server pod's veth: each request is observed once.
    let mut d = daemon(dir.path(), &cfg, &server.host_if, 1);

    // 1. Collector up: everything arrives.
    curl_n(client, &server.ip, "/", BEFORE);
    wait_metrics(prom, "spans before the outage exported", |m| {
        spans_total(m, "exported") == BEFORE as u64
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while collector_log(&log, "").0.len() < BEFORE && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(collector_log(&log, "").0.len(), BEFORE);

    // 2. The collector dies (idle: no span batch in flight) while traffic goes on.
    if let Some(mut c) = rotel1.0.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
    let out = sh(client.ns.cmd("timeout").args([
        "60",
        "hey",
        "-n",
        &DURING.to_string(),
        "-c",
        "4",
        "-q",
        "50",
        "-t",
        "10",
        &format!("http://{}/", server.ip),
    ]));
    assert!(
        out.lines()
            .any(|l| l.trim() == format!("[200]\t{DURING} responses")),
        "hey: {out}"
    );
    // Every span of the outage is sampled; the buffer keeps the newest BOUND.
    let m = wait_metrics(prom, "outage spans sampled and dropped", |m| {
        spans_total(m, "sampled") == (BEFORE + DURING) as u64
            && spans_total(m, "dropped_buffer_full") == (DURING - BOUND) as u64
            && prom_value(m, "podtap_export_failures_total{signal=\"traces\"}") >= 2
    });
    assert_eq!(spans_total(&m, "exported"), BEFORE as u64, "{m}");
    assert_eq!(prom_value(&m, "podtap_export_spans_buffered"), BOUND as u64);
    assert_eq!(
        prom_value(&m, "podtap_export_spans_buffered_max"),
        BOUND as u64
    );
    assert_eq!(
        http_get(prom, "/readyz").0,
        503,
        "exports failing: not ready"
    );

    // 3. The collector comes back on the same port: the buffer drains, new spans flow.
    let second = dir.path().join("second");
    std::fs::create_dir_all(&second).unwrap();
    let _rotel2 = rotel(grpc, http, &log, &second);
    wait_metrics(prom, "buffered spans delivered after the restart", |m| {
        spans_total(m, "exported") == (BEFORE + BOUND) as u64
    });
    curl_n(client, &server.ip, "/after.html", AFTER);
    wait_metrics(prom, "spans after the restart exported", |m| {
        spans_total(m, "exported") == (BEFORE + BOUND + AFTER) as u64
    });
    assert_eq!(http_get(prom, "/readyz").0, 200, "ready again");
    d.stop();

    let line = d.wait_log("export: spans", Duration::from_secs(5));
    let t = export_totals(&line[line.find("export: ").unwrap()..]);
    let sampled = (BEFORE + DURING + AFTER) as u64;
    assert_eq!(t["spans.sampled"], sampled, "{line}");
    assert!(t["spans.buffered_max"] <= BOUND as u64, "{line}");
    assert_eq!(t["spans.dropped"], (DURING - BOUND) as u64, "{line}");
    assert_eq!(t["spans.rejected"], 0, "{line}");
    assert_eq!(
        t["spans.exported"] + t["spans.rejected"] + t["spans.dropped"],
        sampled,
        "{line}"
    );
    // Capture never suffered: every request was seen, none dropped by the kernel.
    assert_eq!(d.log_value("podtap stopped", "kernel_dropped"), Some(0));
    assert_eq!(d.log_value("podtap stopped", "transactions"), Some(sampled));
    // The collector logged exactly the exported spans, the new ones included.
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let s = collector_log(&log, "").0;
        if s.len() as u64 >= t["spans.exported"] || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::thread::sleep(Duration::from_millis(300));
    let spans = if collector_log(&log, "").0.len() != spans.len() {
        collector_log(&log, "").0
    } else {
        spans
    };
    assert_eq!(
        spans.len() as u64,
        t["spans.exported"],
        "collector vs podtap"
    );
    let after = spans.iter().filter(|s| s.name == "GET /after.html").count();
    assert_eq!(
        after, AFTER,
        "spans made after the restart reached the collector"
    );
}

/// A request seen at both ends: the daemon captures the client pod's and the server pod's
/// veths, a static map names both pods, and every request gives a CLIENT span (service
/// `shop-client`) and a SERVER span (service `web`) in one trace, the client span the
/// server span's parent. A request carrying a `traceparent` puts both in the caller's
/// trace, the client span a child of the caller's span.
#[test]
fn client_span_is_the_parent_of_the_server_span_when_both_pods_are_watched() {
    require_root();
    let w = web(&[]);
    let (dir, bridge, server, client) = (&w.dir, &w.bridge, &w.server, &w.client);
    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, dir.path());
    let map = dir.path().join("pods.toml");
    std::fs::write(
        &map,
        format!(
            "[[pod]]\nname = \"web-0\"\nnamespace = \"shop\"\nservice = \"web\"\n\
             interfaces = [\"{}\"]\n\n\
             [[pod]]\nname = \"client-0\"\nnamespace = \"shop\"\nservice = \"shop-client\"\n\
             interfaces = [\"{}\"]\n",
            server.host_if, client.host_if
        ),
    )
    .unwrap();
    let cfg = dir.path().join("linked.toml");
    std::fs::write(
        &cfg,
        config(
            "grpc",
            &format!("http://127.0.0.1:{grpc}"),
            &format!(
                "[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n\
                 [attribution]\nstatic_map = \"{}\"\n",
                map.display()
            ),
        ),
    )
    .unwrap();
    let ifaces = format!("{}.*", bridge.prefix);
    let mut d = daemon(dir.path(), &cfg, &ifaces, 2);
    d.wait_log(
        &format!("interface={}", client.host_if),
        Duration::from_secs(5),
    );
    d.wait_log(
        &format!("interface={}", server.host_if),
        Duration::from_secs(5),
    );
    // Five requests on one keep-alive connection, then one carrying a traceparent.
    const PLAIN: usize = 5;
    curl_n(client, &server.ip, "/", PLAIN);
    let (trace, caller) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
    curl_traced(
        client,
        &format!("http://{}/index.html", server.ip),
        trace,
        caller,
    );
    let n = PLAIN + 1;
    // The metrics carry both ends' pods, under the side's prefix: the server's histogram
    // counts every request between these two pods, and so does the client's.
    let pods = [
        "client_k8s_pod_name=\"client-0\"",
        "client_k8s_namespace_name=\"shop\"",
        "client_service_name=\"shop-client\"",
        "server_k8s_pod_name=\"web-0\"",
        "server_service_name=\"web\"",
    ];
    let body = wait_metrics(prom, "both ends' histograms", |b| {
        sum_series(b, "http_server_request_duration_seconds_count", &pods) >= n as u64
            && sum_series(b, "http_client_request_duration_seconds_count", &pods) >= n as u64
    });
    for h in [
        "http_server_request_duration_seconds_count",
        "http_client_request_duration_seconds_count",
    ] {
        assert_eq!(sum_series(&body, h, &pods), n as u64, "{h}:\n{body}");
        assert_eq!(
            sum_series(&body, h, &[]),
            n as u64,
            "every request is between the two pods"
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    // Connection metrics name the pods too (reported when the connections end). Other
    // flows of the pods (their IGMP reports, say) may come in other exports: look at
    // every podtap.flow.io block for the HTTP connections'.
    let log_text = || std::fs::read_to_string(&log).unwrap_or_default();
    let labels = [
        "client.k8s.pod.name: Str(client-0)",
        "server.k8s.pod.name: Str(web-0)",
    ];
    let named = |text: &str| {
        text.split("-> Name: ")
            .filter(|b| b.starts_with("podtap.flow.io"))
            .any(|b| labels.iter().all(|l| b.contains(l)))
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !named(&log_text()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        named(&log_text()),
        "flow io naming both pods in\n{}",
        log_text()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let (s, _) = collector_log(&log, "http.server.request.duration");
        if s.len() >= 2 * n || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(spans.len(), 2 * n, "{spans:#?}");
    let of_kind = |k: &str| -> Vec<&LoggedSpan> { spans.iter().filter(|s| s.kind == k).collect() };
    let (clients, servers) = (of_kind("SPAN_KIND_CLIENT"), of_kind("SPAN_KIND_SERVER"));
    assert_eq!((clients.len(), servers.len()), (n, n), "{spans:#?}");
    assert!(
        clients.iter().all(|s| s.service == "shop-client"),
        "{clients:#?}"
    );
    assert!(servers.iter().all(|s| s.service == "web"), "{servers:#?}");
    for s in &servers {
        let parents: Vec<_> = clients
            .iter()
            .filter(|c| c.span_id == s.parent_id)
            .collect();
        assert_eq!(
            parents.len(),
            1,
            "server span {s:?} has its client span as parent"
        );
        assert_eq!(parents[0].trace_id, s.trace_id);
        assert_eq!(parents[0].name, s.name);
    }
    let mut traces: Vec<_> = servers.iter().map(|s| s.trace_id.as_str()).collect();
    traces.sort();
    traces.dedup();
    assert_eq!(traces.len(), n, "one trace per request");
    let joined: Vec<_> = clients.iter().filter(|c| c.trace_id == trace).collect();
    assert_eq!(joined.len(), 1, "{clients:#?}");
    assert_eq!(
        joined[0].parent_id, caller,
        "the client span is the caller's child"
    );
    let roots = clients.iter().filter(|c| c.parent_id.is_empty()).count();
    assert_eq!(roots, PLAIN, "the other client spans start their traces");
}

/// A long-lived connection is in the metrics before it ends (`flow.report_interval_secs`),
/// and what it reported along the way plus what it reported at its end add up to exactly
/// its totals in the JSON flow line: nothing counted twice, nothing missed.
#[test]
fn open_connections_report_traffic_before_they_end_and_add_up_exactly() {
    require_root();
    let w = web(&[]);
    let (dir, server, client) = (&w.dir, &w.server, &w.client);
    let prom = free_port();
    let cfg = dir.path().join("progress.toml");
    std::fs::write(
        &cfg,
        format!(
            "[flow]\nreport_interval_secs = 1\ntcp_close_linger_secs = 1\n[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"
        ),
    )
    .unwrap();
    let mut d = daemon(dir.path(), &cfg, &server.host_if, 1);
    // Three requests, then the connection stays open (bounded: 30 s at most) until the
    // test has seen it in the metrics, then one last request closes it.
    let script = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], 80), timeout=30)
def get(close):
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + (b"Connection: close\r\n" if close else b"") + b"\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, body = buf.split(b"\r\n\r\n", 1)
    n = int([l for l in head.split(b"\r\n") if l.lower().startswith(b"content-length")][0].split(b":")[1])
    while len(body) < n:
        body += s.recv(4096)
for _ in range(3):
    get(False)
print("open", flush=True)
sys.stdin.readline()
get(True)
s.close()
"#;
    let mut py = Proc(Some(
        client
            .ns
            .cmd("python3")
            .args(["-c", script, &server.ip])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3"),
    ));
    let child = py.0.as_mut().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "open");
    let edge = [
        "server_port=\"80\"",
        "podtap_flow_direction=\"client_to_server\"",
    ];
    let body = wait_metrics(prom, "the open connection's bytes", |b| {
        sum_series(b, "podtap_flow_io_bytes_total", &edge) > 0
    });
    let early = sum_series(&body, "podtap_flow_io_bytes_total", &edge);
    assert_eq!(
        sum_series(&body, "podtap_tcp_connections_closed_total", &[]),
        0,
        "the connection is still open"
    );
    // Finish the connection.
    use std::io::Write;
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    assert!(child.wait().unwrap().success());
    // The closed flow is reported after its linger (1 s here): then the metrics hold its
    // remainder too.
    let body = wait_metrics(prom, "the connection's end", |b| {
        sum_series(b, "podtap_tcp_connections_closed_total", &[]) == 1
    });
    let reported = sum_series(&body, "podtap_flow_io_bytes_total", &edge);
    let records = d.stop();
    let flows: Vec<_> = records
        .iter()
        .filter(|r| r["podtap.record"] == "flow" && r["server.port"] == 80)
        .collect();
    assert_eq!(flows.len(), 1, "{flows:?}");
    let total = flows[0]["podtap.flow.client.bytes"].as_u64().unwrap();
    assert!(early > 0 && early < total, "early {early} of {total}");
    assert_eq!(
        reported, total,
        "progress reports + the end's remainder = the flow's bytes"
    );
}

/// One definition of a failed transaction, the OpenTelemetry HTTP one: a 4xx is an error
/// where the client is observed (CLIENT span, `http.client.*` metrics), not where the
/// server is. A real capture (packetbeat `http_minitwit.pcap`: a browser at 192.168.1.104
/// asks a proxy at .110, which asks a backend on 127.0.0.1:5000; `/favicon.ico` is a 404
/// on both hops) replayed with a static map that makes the capture point the browser's
/// pod: the browser's 404 is observed at the client, the proxy's at neither end (so at
/// the server). The JSON lines, the summary table, the spans and the metrics must all
/// call the first an error and the second not.
#[test]
fn a_4xx_is_an_error_at_the_client_only_alike_in_json_table_spans_and_metrics() {
    let pcap = pcaps_dir().join("packetbeat/http_minitwit.pcap");
    let dir = tempfile::tempdir().unwrap();
    let map = dir.path().join("pods.toml");
    std::fs::write(
        &map,
        "[[pod]]\nname = \"browser-0\"\nnamespace = \"shop\"\ncidrs = [\"192.168.1.104/32\"]\n\
         obs = [0]\n",
    )
    .unwrap();
    let attribution = format!(
        "[attribution]\nreplay = true\nnetns = false\nresync_secs = 0\nstatic_map = \"{}\"\n",
        map.display()
    );
    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, dir.path());
    let cfg = config(
        "grpc",
        &format!("http://127.0.0.1:{grpc}"),
        &format!("[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n{attribution}"),
    );
    let cfg_file = dir.path().join("podtap.toml");
    std::fs::write(&cfg_file, cfg).unwrap();
    let run = |output: &str, extra: &[&str]| {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_podtap"));
        c.arg("--config")
            .arg(&cfg_file)
            .arg("replay")
            .arg(&pcap)
            .args(["--output", output])
            .args(extra)
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };

    // JSON lines, with the exporter held up for a scrape.
    let mut child = Proc(Some(run("jsonl", &["--hold-secs", "3"]).spawn().unwrap()));
    wait_listening(prom, "podtap /metrics");
    let client_404 = ["http_response_status_code=\"404\"", "server_port=\"80\""];
    let server_404 = ["http_response_status_code=\"404\"", "server_port=\"5000\""];
    let body = wait_metrics(prom, "both 404s recorded", |b| {
        sum_series(b, "http_client_request_duration_seconds_count", &client_404) == 1
            && sum_series(b, "http_server_request_duration_seconds_count", &server_404) == 1
    });
    let client_err = sum_series(
        &body,
        "http_client_request_duration_seconds_count",
        &[client_404[0], client_404[1], "error_type=\"404\""],
    );
    assert_eq!(client_err, 1, "client-side 404 has error.type:\n{body}");
    let server_err = sum_series(
        &body,
        "http_server_request_duration_seconds_count",
        &["error_type="],
    );
    assert_eq!(server_err, 0, "no server-side error:\n{body}");
    let out = child.0.take().unwrap().wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let all: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let txs = records(&all, "transaction");
    assert_eq!(txs.len(), 6);
    assert!(
        all.iter()
            .all(|r| r.get("podtap.http.client_error").is_none()),
        "no private flag beside error.type"
    );
    let errors: Vec<_> = txs
        .iter()
        .filter(|t| t.get("error.type").is_some())
        .collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(errors[0]["error.type"], "404");
    assert_eq!(errors[0]["server.port"], 80);
    assert_eq!(errors[0]["podtap.observation_point.side"], "client");
    let proxied: Vec<_> = txs
        .iter()
        .filter(|t| t["podtap.status"] == 404 && t["server.port"] == 5000)
        .collect();
    assert_eq!(proxied.len(), 1);
    assert!(proxied[0].get("error.type").is_none(), "{:#?}", proxied[0]);

    // The table counts the same error, and only it.
    let out = run("table", &[]).output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = |server: &str| {
        table
            .lines()
            .find(|l| l.contains(server) && l.contains("GET /favicon.ico"))
            .unwrap_or_else(|| panic!("{server} row in {table}"))
            .split_whitespace()
            .skip(4)
            .take(2)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        row("192.168.1.110:80"),
        ["1", "1"],
        "count, errors:\n{table}"
    );
    assert_eq!(row("127.0.0.1:5000"), ["1", "0"], "count, errors:\n{table}");

    // The spans (exported by both runs): ERROR on the CLIENT span only.
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let s = collector_log(&log, "").0;
        if s.len() >= 12 || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(spans.len(), 12, "{spans:#?}");
    for s in &spans {
        let want = if s.kind == "SPAN_KIND_CLIENT" && s.name == "GET /favicon.ico" {
            "STATUS_CODE_ERROR"
        } else {
            "STATUS_CODE_UNSET"
        };
        assert_eq!(s.status, want, "{s:?}");
    }
    let kinds = |k: &str| spans.iter().filter(|s| s.kind == k).count();
    assert_eq!(
        (kinds("SPAN_KIND_CLIENT"), kinds("SPAN_KIND_SERVER")),
        (6, 6)
    );
}

/// Without Kubernetes or a static map (node-local discovery alone), spans come under one
/// resource per pod and process, the way instrumented services report themselves, and
/// metric series name both pods. nginx (:80) and Python's http.server (:8000) run in one
/// pod namespace: their SERVER spans come in two resources, each with the server pod's
/// `service.name` (its namespace's name), `podtap.netns.name`, node, and its own
/// `process.pid`/`process.executable.name`; the CLIENT spans under the client pod's
/// service; none under podtap's own.
#[test]
fn spans_come_in_one_resource_per_pod_and_process_without_kubernetes() {
    require_root();
    let w = web(&[]);
    let (dir, bridge, server, client) = (&w.dir, &w.bridge, &w.server, &w.client);
    let py = python_http(&server.ns, &server.ip, 8000, &dir.path().join("www"));
    let py_pid = py.0.as_ref().unwrap().id().to_string();
    let nginx_pids: Vec<String> = pids_named(&server.ns, "nginx")
        .iter()
        .map(|p| p.to_string())
        .collect();
    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, dir.path());
    let cfg = dir.path().join("netns.toml");
    std::fs::write(
        &cfg,
        config(
            "grpc",
            &format!("http://127.0.0.1:{grpc}"),
            &format!("[export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"),
        ),
    )
    .unwrap();
    let mut d = daemon(dir.path(), &cfg, &format!("{}.*", bridge.prefix), 2);
    for p in [server, client] {
        d.wait_log(&format!("interface={}", p.host_if), Duration::from_secs(5));
    }
    const N: usize = 3;
    curl_n(client, &server.ip, "/", N);
    curl_n(client, &format!("{}:8000", server.ip), "/", N);
    // Metric series carry both pods' service.name, though no source names the pods.
    let pods = [
        format!("server_service_name=\"{}\"", server.ns.name),
        format!("client_service_name=\"{}\"", client.ns.name),
    ];
    let pods: Vec<&str> = pods.iter().map(String::as_str).collect();
    let body = wait_metrics(prom, "both ends' histograms", |b| {
        sum_series(b, "http_server_request_duration_seconds_count", &pods) >= 2 * N as u64
            && sum_series(b, "http_client_request_duration_seconds_count", &pods) >= 2 * N as u64
    });
    for h in [
        "http_server_request_duration_seconds_count",
        "http_client_request_duration_seconds_count",
    ] {
        assert_eq!(sum_series(&body, h, &pods), 2 * N as u64, "{h}:\n{body}");
        assert_eq!(sum_series(&body, h, &[]), 2 * N as u64, "{h}:\n{body}");
    }
    std::thread::sleep(Duration::from_millis(500));
    d.stop();
    let deadline = Instant::now() + Duration::from_secs(10);
    let spans = loop {
        let (s, _) = collector_log(&log, "http.server.request.duration");
        if s.len() >= 4 * N || Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(spans.len(), 4 * N, "{spans:#?}");
    let node = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    for s in &spans {
        let (pod, side) = match s.kind.as_str() {
            "SPAN_KIND_SERVER" => (server, "server"),
            "SPAN_KIND_CLIENT" => (client, "client"),
            k => panic!("{k}: {s:#?}"),
        };
        assert_eq!(s.service, pod.ns.name, "{side} span's service: {s:#?}");
        assert_eq!(s.resource("podtap.netns.name"), Some(pod.ns.name.as_str()));
        assert_eq!(s.resource("k8s.node.name"), Some(node.trim()), "{s:#?}");
        assert_eq!(s.resource("telemetry.sdk.name"), Some("podtap"));
        assert_eq!(
            s.resource
                .iter()
                .filter(|(k, _)| k == "service.name")
                .count(),
            1
        );
        if side == "client" {
            // curl's short connections were open between two scans: no process, or curl.
            assert!(
                matches!(s.resource("process.executable.name"), None | Some("curl")),
                "{s:#?}"
            );
            continue;
        }
        let (name, pid_ok) = match s.attr("server.port") {
            Some("80") => (
                "nginx",
                s.resource("process.pid")
                    .is_some_and(|p| nginx_pids.iter().any(|n| n == p)),
            ),
            Some("8000") => ("python3", s.resource("process.pid") == Some(&py_pid)),
            p => panic!("server.port {p:?}: {s:#?}"),
        };
        assert_eq!(s.resource("process.executable.name"), Some(name), "{s:#?}");
        assert!(pid_ok, "{name}'s pid ({nginx_pids:?}, {py_pid}): {s:#?}");
    }
    let servers = spans.iter().filter(|s| s.kind == "SPAN_KIND_SERVER");
    let by_process: std::collections::BTreeSet<_> = servers
        .filter_map(|s| s.resource("process.executable.name"))
        .collect();
    assert_eq!(
        by_process.into_iter().collect::<Vec<_>>(),
        ["nginx", "python3"]
    );
}
