//! Helpers shared by the export tests: free loopback ports, a real OpenTelemetry
//! collector (rotel, from `pip install rotel`), HTTP traffic captured in namespaces, and
//! running podtap with an export config.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

pub fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The rotel-agent binary the `rotel` Python package ships.
pub fn rotel_bin() -> PathBuf {
    let out = Command::new("python3")
        .args([
            "-c",
            "import rotel, os; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output()
        .expect("python3");
    let p = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(
        p.exists(),
        "rotel-agent not found: `pip install rotel` (make deps-test)"
    );
    p
}

/// rotel on loopback with OTLP gRPC and HTTP receivers, logging every span, metric and log
/// record it receives (detailed debug log) to `out`, exporting nowhere.
pub fn rotel(grpc: u16, http: u16, out: &Path, dir: &Path) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(out)
        .expect("rotel log");
    let child = Command::new(rotel_bin())
        .arg("start")
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
        .args(["--debug-log", "traces", "--debug-log", "metrics"])
        .args(["--debug-log", "logs"])
        .args([
            "--debug-log-verbosity",
            "detailed",
            "--exporter",
            "blackhole",
        ])
        .args(["--batch-timeout", "100ms"])
        .arg("--pid-file")
        .arg(dir.join(format!("rotel-{grpc}.pid")))
        .arg("--log-file")
        .arg(dir.join(format!("rotel-{grpc}.log")))
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .expect("start rotel-agent");
    let p = Proc(Some(child));
    wait_listening(grpc, "rotel gRPC");
    wait_listening(http, "rotel HTTP");
    p
}

/// A span as rotel logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedSpan {
    pub trace_id: String,
    pub span_id: String,
    pub parent_id: String,
    pub name: String,
    pub kind: String,
    /// `STATUS_CODE_UNSET`, `STATUS_CODE_ERROR`...
    pub status: String,
    /// `service.name` of the resource the span came in.
    pub service: String,
    /// Every attribute of that resource, values as rotel prints them without the type
    /// (`Str(web)` is `web`, `Int(7)` is `7`).
    pub resource: Vec<(String, String)>,
    /// The span's own attributes, likewise.
    pub attrs: Vec<(String, String)>,
}

impl LoggedSpan {
    pub fn resource(&self, key: &str) -> Option<&str> {
        self.resource
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// `-> key: Str(value)` as (key, value).
fn logged_attr(line: &str) -> Option<(String, String)> {
    let (k, v) = line.strip_prefix("-> ")?.split_once(": ")?;
    let v = v
        .split_once('(')
        .map_or(v, |(_, rest)| rest.strip_suffix(')').unwrap_or(rest));
    Some((k.to_string(), v.to_string()))
}

/// Spans and `metric` histogram counts rotel logged so far.
pub fn collector_log(out: &Path, metric: &str) -> (Vec<LoggedSpan>, u64) {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut spans = Vec::new();
    let mut cur: Option<LoggedSpan> = None;
    let mut in_metric = false;
    let mut count = 0;
    let mut service = String::new();
    let mut resource: Vec<(String, String)> = Vec::new();
    // Between `ResourceSpans #` and `ScopeSpans #`: the resource's attributes.
    let mut in_resource = false;
    let field = |l: &str| l.split_once(':').map_or("", |x| x.1).trim().to_string();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with("Span #") {
            spans.extend(cur.take());
            cur = Some(LoggedSpan {
                trace_id: String::new(),
                span_id: String::new(),
                parent_id: String::new(),
                name: String::new(),
                kind: String::new(),
                status: String::new(),
                service: service.clone(),
                resource: resource.clone(),
                attrs: Vec::new(),
            });
        } else if t.starts_with("ResourceSpans #") || t.starts_with("ResourceMetrics #") {
            spans.extend(cur.take());
            service.clear();
            resource.clear();
            in_resource = true;
        } else if t.starts_with("ScopeSpans #") || t.starts_with("ScopeMetrics #") {
            in_resource = false;
        } else if in_resource && let Some(a) = logged_attr(t) {
            resource.push(a);
        }
        if !in_resource
            && let Some(s) = cur.as_mut()
            && let Some(a) = logged_attr(t)
        {
            s.attrs.push(a);
        }
        if let Some(v) = t.strip_prefix("-> service.name: ")
            && in_resource
        {
            // `Str(web)`
            service = v
                .trim_start_matches("Str(")
                .trim_end_matches(')')
                .to_string();
        }
        if let Some(s) = cur.as_mut() {
            if t.starts_with("Trace ID") {
                s.trace_id = field(t);
            } else if t.starts_with("ID ") || t.starts_with("ID:") {
                s.span_id = field(t);
            } else if t.starts_with("Parent ID") {
                s.parent_id = field(t);
            } else if t.starts_with("Name ") || t.starts_with("Name:") {
                s.name = field(t);
            } else if t.starts_with("Kind") {
                s.kind = field(t);
            } else if t.starts_with("Status code") {
                s.status = field(t);
            }
        }
        if t.starts_with("-> Name:") {
            in_metric = field(t.trim_start_matches("-> ")) == metric;
        } else if in_metric && t.starts_with("Count:") {
            count += field(t).parse::<u64>().unwrap_or(0);
        }
    }
    spans.extend(cur);
    (spans, count)
}

/// `GET path` on a loopback port: (status, body).
pub fn http_get(port: u16, path: &str) -> (u16, String) {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new());
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    );
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |x| x.1).to_string();
    (status, body)
}

/// Captured HTTP traffic: what the client did.
pub struct Traffic {
    pub dir: tempfile::TempDir,
    pub pcap: PathBuf,
    pub requests: usize,
    /// (trace id, parent span id) sent in `traceparent` headers, one request each.
    pub traced: Vec<(String, String)>,
}

/// nginx and curl in namespaces: `plain` requests on one keep-alive connection (paths
/// cycling through /, /missing, /fail), then one request per traceparent.
pub fn http_traffic(plain: usize, traced: usize) -> Traffic {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("www");
    std::fs::create_dir(&root).expect("www");
    std::fs::write(root.join("index.html"), b"hello\n").expect("index");
    let _nginx = nginx(&pair.server, SERVER_IP, dir.path(), &root);
    let pcap = dir.path().join("http.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);
    let paths = ["/", "/missing", "/fail"];
    let mut cmd = pair.client.cmd("curl");
    cmd.args(["-s", "--max-time", "30"]);
    for i in 0..plain {
        cmd.args([
            "-o",
            "/dev/null",
            &format!("http://{SERVER_IP}{}", paths[i % 3]),
        ]);
    }
    if plain > 0 {
        sh(&mut cmd);
    }
    let mut sent = Vec::new();
    for i in 0..traced {
        let trace = format!("4bf92f3577b34da6a3ce929d0e0e{:04x}", 0x4736 + i);
        let parent = format!("00f067aa0ba9{:04x}", 0x02b7 + i);
        sh(pair.client.cmd("curl").args([
            "-s",
            "--max-time",
            "30",
            "-o",
            "/dev/null",
            "-H",
            &format!("traceparent: 00-{trace}-{parent}-01"),
            &format!("http://{SERVER_IP}/"),
        ]));
        sent.push((trace, parent));
    }
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();
    Traffic {
        dir,
        pcap,
        requests: plain + traced,
        traced: sent,
    }
}

/// `podtap --config <cfg> replay <pcap> --output table [extra]`, config written to `dir`.
pub fn podtap(dir: &Path, config: &str, pcap: &Path, extra: &[&str]) -> Command {
    let cfg = dir.join(format!("podtap-{}.toml", unique("c")));
    std::fs::write(&cfg, config).expect("config");
    let mut c = Command::new(env!("CARGO_BIN_EXE_podtap"));
    c.arg("--config")
        .arg(cfg)
        .arg("replay")
        .arg(pcap)
        .args(["--output", "table"])
        .args(extra)
        // The test's own settings, not the environment's.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// The numbers of podtap's final `export: …` line.
pub fn export_totals(stderr: &str) -> std::collections::HashMap<String, u64> {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("export: "))
        .unwrap_or_else(|| panic!("no export line in {stderr}"));
    let mut m = std::collections::HashMap::new();
    let mut section = "";
    for tok in line.split([' ', ';']) {
        if tok == "spans" || tok == "points" {
            section = tok;
        }
        if let Some((k, v)) = tok.split_once('=') {
            m.insert(format!("{section}.{k}"), v.parse().expect("number"));
        }
    }
    m
}

/// The sum of the series of `metric` on podtap's `/metrics` whose labels include every
/// one of `labels`.
pub fn sum_series(body: &str, metric: &str, labels: &[&str]) -> u64 {
    body.lines()
        .filter(|l| l.starts_with(metric) && l[metric.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Poll podtap's /metrics until `done` holds; panics with the last body after 20 s.
pub fn wait_metrics(prom: u16, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, m) = http_get(prom, "/metrics");
        if done(&m) {
            return m;
        }
        assert!(Instant::now() < deadline, "{what}: {m}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
