//! Anomaly events, each provoked on purpose between two "pods" (network namespaces on a
//! bridge, named by a static pod map as Kubernetes would name them) while `podtap run`
//! captures the server pod's veth: a connection to a closed port, SYNs dropped by an
//! nftables rule (for good, and for the first second), a server resetting a request, random
//! loss from nftables `numgen`, a server that stops reading, nginx answering 500s, dnsmasq
//! answering NXDOMAIN. Each provocation gives exactly one event of its kind, naming both
//! pods and the tuple, as a JSON line and a count on /metrics; a real collector (rotel)
//! receives them as OTLP log records.

mod common;
mod export_common;

use common::*;
use export_common::*;
use serde_json::Value;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The provocations are timing-sensitive: one node at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Node {
    _bridge: Bridge,
    server: Pod,
    client: Pod,
    dir: tempfile::TempDir,
    prom: u16,
    _nginx: Proc,
}

fn node() -> Node {
    let big = vec![b'y'; 3 << 20];
    let ShopPods {
        bridge,
        server,
        client,
        dir,
        nginx,
    } = ShopPods::new(&[("index.html", b"hello\n"), ("big.bin", &big)]);
    Node {
        _bridge: bridge,
        server,
        client,
        prom: free_port(),
        dir,
        _nginx: nginx,
    }
}

impl Node {
    /// `podtap run` on the server pod's veth, with `extra` config lines.
    fn daemon(&self, extra: &str) -> Daemon {
        let cfg = self.dir.path().join("podtap.toml");
        std::fs::write(
            &cfg,
            format!(
                "[attribution]\nstatic_map = \"{}\"\n[control]\nenabled = false\n\
                 [export.prometheus]\nlisten = \"127.0.0.1:{}\"\n{extra}",
                self.dir.path().join("map.toml").display(),
                self.prom
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podtap"));
        cmd.args(["--config", cfg.to_str().unwrap(), "run"])
            .args(["--interface", &self.server.host_if]);
        let d = Daemon::start_cmd(cmd, self.dir.path());
        d.wait_log(
            &format!("interface={}", self.server.host_if),
            Duration::from_secs(10),
        );
        d
    }

    fn curl(&self, url: &str, max_secs: u32) -> String {
        self.client.ns.http_status(url, max_secs)
    }

    fn nft(&self, ns: &Netns, rules: &str) {
        let f = self.dir.path().join(format!("{}.nft", unique("r")));
        std::fs::write(&f, rules).unwrap();
        sh(ns.cmd("nft").arg("-f").arg(&f));
    }

    fn metrics(&self) -> String {
        http_get(self.prom, "/metrics").1
    }
}

/// The events of `kind` among `records`.
fn events<'a>(records: &'a [Value], kind: &str) -> Vec<&'a Value> {
    records
        .iter()
        .filter(|r| r["podtap.record"] == "event" && r["podtap.anomaly.kind"] == kind)
        .collect()
}

/// Wait (bounded) until the JSON output holds an event of `kind`.
fn wait_event(d: &Daemon, kind: &str, secs: u64) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let needle = format!("\"podtap.anomaly.kind\":\"{kind}\"");
    while Instant::now() < deadline {
        if std::fs::read_to_string(&d.out).is_ok_and(|t| t.contains(&needle)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One event of `kind` in all of `records`, between the two pods: returned for more checks.
fn one<'a>(records: &'a [Value], kind: &str, n: &Node) -> &'a Value {
    let all: Vec<_> = records
        .iter()
        .filter(|r| r["podtap.record"] == "event")
        .map(|r| r.to_string())
        .collect();
    let e = events(records, kind);
    assert_eq!(e.len(), 1, "{kind}: events {all:#?}");
    let e = e[0];
    assert_eq!(e["event.name"], format!("podtap.{kind}"), "{e}");
    assert_eq!(e["server.k8s.pod.name"], "web", "{e}");
    assert_eq!(e["server.k8s.namespace.name"], "shop", "{e}");
    if e.get("client.address").is_some() {
        assert_eq!(e["client.k8s.pod.name"], "buyer", "{e}");
        assert_eq!(e["client.address"], n.client.ip.as_str(), "{e}");
        assert_eq!(e["server.address"], n.server.ip.as_str(), "{e}");
        assert!(e["client.port"].as_u64().unwrap() > 1023, "{e}");
        assert_eq!(e["network.transport"], "tcp", "{e}");
        assert_eq!(
            e["podtap.observation_point"].as_u64(),
            Some(n.server.ifindex as u64),
            "{e}"
        );
    }
    e
}

/// `podtap_anomalies_total` of `kind` on /metrics.
fn counted(n: &Node, kind: &str) -> u64 {
    sum_series(
        &n.metrics(),
        "podtap_anomalies_total",
        &[&format!("podtap_anomaly_kind=\"{kind}\"")],
    )
}

#[test]
fn refused_connections_and_unanswered_or_resent_syns() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon("");
    let srv = &n.server.ip;
    // Nothing listens on 81: the server's stack answers the SYN with a reset.
    assert_eq!(n.curl(&format!("http://{srv}:81/"), 2), "000");
    wait_event(&d, "connection_refused", 5);
    assert_eq!(counted(&n, "connection_refused"), 1);
    // SYNs to 82 dropped for good (after the capture saw them): one event after 5 s,
    // though curl gave up at 2.
    n.nft(
        &n.server.ns,
        "table inet drop82 {\n chain in { type filter hook input priority 0; tcp dport 82 drop; }\n}\n",
    );
    assert_eq!(n.curl(&format!("http://{srv}:82/"), 2), "000");
    wait_event(&d, "syn_unanswered", 10);
    // SYNs to 80 dropped for the first 1.5 s: the second resend gets through.
    n.nft(
        &n.server.ns,
        "table inet slow80 {\n chain in { type filter hook input priority 0; tcp dport 80 tcp flags syn drop; }\n}\n",
    );
    let slow = std::thread::scope(|s| {
        let t = s.spawn(|| n.curl(&format!("http://{srv}/index.html"), 10));
        std::thread::sleep(Duration::from_millis(1500));
        sh(n.server
            .ns
            .cmd("nft")
            .args(["delete", "table", "inet", "slow80"]));
        t.join().unwrap()
    });
    assert_eq!(slow, "200");
    wait_event(&d, "syn_retransmitted", 5);
    let records = d.stop();

    let e = one(&records, "connection_refused", &n);
    assert_eq!(e["server.port"], 81);
    assert_eq!(e["podtap.anomaly.side"], "server");
    let e = one(&records, "syn_unanswered", &n);
    assert_eq!(e["server.port"], 82);
    assert!(
        e["podtap.anomaly.syn_retransmits"].as_u64().unwrap() >= 1,
        "{e}"
    );
    assert!(
        e["podtap.anomaly.waited_ms"].as_u64().unwrap() >= 5000,
        "{e}"
    );
    let e = one(&records, "syn_retransmitted", &n);
    assert_eq!(e["server.port"], 80);
    assert_eq!(e["podtap.anomaly.syn_retransmits"], 2, "{e}");
    assert_eq!(e["podtap.anomaly.side"], "client", "{e}");
    // Let through once the rule went, 1.5 s in (Linux 6 resends at 1 s and 2 s).
    let open = e["podtap.anomaly.open_ms"].as_u64().unwrap();
    assert!((1500..5000).contains(&open), "{e}");
    // Nothing else: the refused connection was not also unanswered, and so on.
    let kinds: Vec<_> = records
        .iter()
        .filter(|r| r["podtap.record"] == "event")
        .map(|r| r["podtap.anomaly.kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kinds.len(), 3, "{kinds:?}");
}

/// A server that reads the request, then resets the connection: the request's route is
/// in the event.
#[test]
fn a_reset_in_the_middle_of_a_request() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let script = format!(
        "import socket, struct, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.bind(('{}', 8080)); s.listen(); print('ready', flush=True)\n\
         c, _ = s.accept(); c.recv(4096); time.sleep(0.3)\n\
         c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0)); c.close()\n\
         time.sleep(5)\n",
        n.server.ip
    );
    let _srv = background(&n.server.ns, &script);
    let mut d = n.daemon("");
    let code = n.curl(&format!("http://{}:8080/orders/42", n.server.ip), 3);
    assert_eq!(code, "000", "curl saw the reset");
    wait_event(&d, "reset_mid_request", 8);
    let records = d.stop();
    let e = one(&records, "reset_mid_request", &n);
    assert_eq!(e["server.port"], 8080);
    assert_eq!(e["podtap.protocol"], "http", "{e}");
    assert_eq!(e["podtap.operation"], "GET", "{e}");
    // The route, as the metrics name it (ids folded).
    assert_eq!(e["podtap.resource"], "/orders/{id}", "{e}");
    assert_eq!(e["podtap.anomaly.requests"], 1, "{e}");
    assert_eq!(e["podtap.anomaly.side"], "server", "{e}");
}

/// Random loss (nftables `numgen` in the client pod drops a tenth of the full-size
/// segments it receives) on one download: one burst, sent by the server.
#[test]
fn random_loss_is_one_retransmission_burst() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon("");
    n.nft(
        &n.client.ns,
        "table inet loss {\n chain in { type filter hook input priority 0; \
         tcp sport 80 meta length > 1000 numgen random mod 10 < 1 drop; }\n}\n",
    );
    assert_eq!(
        n.curl(&format!("http://{}/big.bin", n.server.ip), 30),
        "200"
    );
    wait_event(&d, "retransmit_burst", 8);
    let records = d.stop();
    let e = one(&records, "retransmit_burst", &n);
    assert_eq!(e["server.port"], 80);
    assert_eq!(e["podtap.anomaly.side"], "server", "{e}");
    assert!(
        e["podtap.anomaly.retransmits"].as_u64().unwrap() >= 20,
        "{e}"
    );
    // The flow record counts at least as many.
    let flow = records
        .iter()
        .find(|r| r["podtap.record"] == "flow" && r["server.port"] == 80)
        .expect("the download's flow");
    assert!(
        flow["podtap.flow.retransmits"].as_u64() >= e["podtap.anomaly.retransmits"].as_u64(),
        "{flow}"
    );
}

/// A server that accepts and never reads, a client that keeps sending: the server's
/// window closes and stays shut.
#[test]
fn a_server_that_stops_reading_is_a_zero_window_stall() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let server = format!(
        "import socket, time\n\
         s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
         s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)\n\
         s.bind(('{}', 9000)); s.listen(); print('ready', flush=True)\n\
         c, _ = s.accept(); time.sleep(12)\n",
        n.server.ip
    );
    let _srv = background(&n.server.ns, &server);
    let mut d = n.daemon("");
    let client = format!(
        "import socket\n\
         c = socket.create_connection(('{}', 9000)); c.settimeout(6)\n\
         try:\n    c.sendall(b'x' * (16 << 20))\n\
         except OSError:\n    pass\n",
        n.server.ip
    );
    sh(n.client.ns.cmd("python3").args(["-c", &client]));
    wait_event(&d, "zero_window_stall", 5);
    let records = d.stop();
    let e = one(&records, "zero_window_stall", &n);
    assert_eq!(e["server.port"], 9000);
    assert_eq!(
        e["podtap.anomaly.side"], "server",
        "the server stopped reading: {e}"
    );
    assert!(
        e["podtap.anomaly.stalled_ms"].as_u64().unwrap() >= 2000,
        "{e}"
    );
}

/// nginx answering 500 to 30 requests, dnsmasq answering NXDOMAIN to 30 queries: one
/// burst each, found from the metrics, per endpoint and per asking pod.
#[test]
fn bursts_of_server_errors_and_of_nxdomain() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let pid = n.dir.path().join("dnsmasq.pid");
    let _dns = Proc(Some(
        n.server
            .ns
            .cmd("dnsmasq")
            .args([
                "--no-daemon",
                "--no-resolv",
                "--no-hosts",
                "--bind-interfaces",
            ])
            .arg(format!("--listen-address={}", n.server.ip))
            .args(["--local=/test/", "--address=/ok.test/10.9.9.9", "--port=53"])
            .arg(format!("--pid-file={}", pid.display()))
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq"),
    ));
    std::thread::sleep(Duration::from_millis(300));
    let mut d = n.daemon("");
    for _ in 0..30 {
        assert_eq!(n.curl(&format!("http://{}/fail", n.server.ip), 2), "500");
    }
    for i in 0..30 {
        let out = sh(n.client.ns.cmd("dig").args([
            &format!("@{}", n.server.ip),
            "+tries=1",
            "+time=1",
            &format!("nope{i}.test"),
        ]));
        assert!(out.contains("NXDOMAIN"), "{out}");
    }
    // A few good answers change nothing.
    for _ in 0..5 {
        assert_eq!(n.curl(&format!("http://{}/", n.server.ip), 2), "200");
    }
    wait_event(&d, "http_error_burst", 8);
    wait_event(&d, "dns_error_burst", 8);
    assert_eq!(counted(&n, "http_error_burst"), 1);
    assert_eq!(counted(&n, "dns_error_burst"), 1);
    let records = d.stop();
    let e = one(&records, "http_error_burst", &n);
    assert_eq!(e["podtap.resource"], "/fail", "{e}");
    assert_eq!(e["server.port"], 80, "{e}");
    assert!(e["podtap.anomaly.errors"].as_u64().unwrap() >= 20, "{e}");
    let dns = events(&records, "dns_error_burst");
    assert_eq!(dns.len(), 1, "{dns:?}");
    assert_eq!(dns[0]["client.k8s.pod.name"], "buyer", "{}", dns[0]);
    assert_eq!(dns[0]["server.port"], 53, "{}", dns[0]);
    assert!(dns[0]["podtap.anomaly.errors"].as_u64().unwrap() >= 20);
}

/// The rate limit: 12 refused connections from one pod within a minute give
/// `max_per_minute` events; the rest are counted as suppressed.
#[test]
fn the_rate_limit_counts_what_it_suppresses() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon("[anomalies]\nmax_per_minute = 4\n");
    for _ in 0..12 {
        assert_eq!(n.curl(&format!("http://{}:81/", n.server.ip), 2), "000");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let suppressed = |m: &str| {
        sum_series(
            m,
            "podtap_anomalies_suppressed_total",
            &["podtap_anomaly_kind=\"connection_refused\""],
        )
    };
    while suppressed(&n.metrics()) < 8 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let m = n.metrics();
    assert_eq!(suppressed(&m), 8, "{m}");
    assert_eq!(counted(&n, "connection_refused"), 4);
    let records = d.stop();
    assert_eq!(events(&records, "connection_refused").len(), 4);
}

/// The events reach a real collector as OTLP log records, with `event.name` and the
/// JSON line's attributes.
#[test]
fn events_reach_a_real_collector_as_log_records() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let (grpc, http) = (free_port(), free_port());
    let log = n.dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, n.dir.path());
    let mut d = n.daemon(&format!(
        "[export.otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:{grpc}\"\n"
    ));
    assert_eq!(n.curl(&format!("http://{}:81/", n.server.ip), 2), "000");
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let t = std::fs::read_to_string(&log).unwrap_or_default();
        if t.contains("podtap.connection_refused") || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    d.stop();
    assert!(text.contains("podtap.connection_refused"), "{text}");
    for want in [
        "server.k8s.pod.name: Str(web)",
        "client.k8s.pod.name: Str(buyer)",
        "server.port: Int(81)",
        "podtap.anomaly.kind: Str(connection_refused)",
        "SeverityText: WARN",
    ] {
        assert!(text.contains(want), "{want} missing in:\n{text}");
    }
}

/// A Python script in `ns`, run in the background until the returned process is dropped;
/// returns once it prints `ready`.
fn background(ns: &Netns, script: &str) -> Proc {
    use std::io::BufRead;
    let mut child = ns
        .cmd("python3")
        .args(["-u", "-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    Proc(Some(child))
}

/// An endpoint answering every request in 300 ms, asked 4 at a time for 6 s: its p99 stays
/// above a 200 ms threshold for the 3 s the test configures, one breach.
#[test]
fn a_slow_endpoint_is_one_latency_breach() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let server = format!(
        "import http.server, time\n\
         class H(http.server.BaseHTTPRequestHandler):\n    \
             def do_GET(self):\n        \
                 time.sleep(0.3); self.send_response(200)\n        \
                 self.send_header('Content-Length', '2'); self.end_headers(); self.wfile.write(b'ok')\n    \
             def log_message(self, *a):\n        pass\n\
         s = http.server.ThreadingHTTPServer(('{}', 8081), H); print('ready', flush=True)\n\
         s.serve_forever()\n",
        n.server.ip
    );
    let _srv = background(&n.server.ns, &server);
    let mut d = n.daemon(
        "[anomalies]\nlatency_p99_ms = 200\nlatency_breach_secs = 3\nlatency_min_requests = 2\n",
    );
    sh(n.client
        .ns
        .cmd("hey")
        .args(["-z", "6s", "-c", "4", "-disable-keepalive"])
        .arg(format!("http://{}:8081/slow", n.server.ip)));
    wait_event(&d, "latency_breach", 5);
    assert_eq!(counted(&n, "latency_breach"), 1);
    let records = d.stop();
    let e = one(&records, "latency_breach", &n);
    assert_eq!(e["server.port"], 8081, "{e}");
    assert_eq!(e["podtap.resource"], "/slow", "{e}");
    assert!(
        e["podtap.anomaly.breach_secs"].as_u64().unwrap() >= 3,
        "{e}"
    );
    let (slow, all) = (
        e["podtap.anomaly.slow_requests"].as_u64().unwrap(),
        e["podtap.anomaly.requests"].as_u64().unwrap(),
    );
    assert!(slow * 100 > all && all >= 2, "{e}");
}
