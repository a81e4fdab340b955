//! HTTP/2 and gRPC end to end: real servers and clients in two network namespaces, the
//! traffic captured by tcpdump on the server's side and replayed through podtap. podtap
//! must report exactly what the clients did: one transaction per request or call, with
//! the statuses the clients saw.
//!
//! - nginx with a cleartext `http2` listener; nghttp sending twelve requests over one
//!   connection (some 404s, one 500) and `curl --http2-prior-knowledge` two more.
//! - a Python grpcio server and client (`tests/fixtures/grpc/`), unary and server
//!   streaming calls, several failing with non-OK gRPC statuses.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

fn bag<T: Ord>(items: impl IntoIterator<Item = T>) -> BTreeMap<T, usize> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i).or_default() += 1;
    }
    m
}

#[test]
fn nginx_h2c_prior_knowledge_requests_are_counted_exactly() {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("www");
    std::fs::create_dir(&root).expect("www");
    std::fs::write(root.join("index.html"), b"hello over h2c\n").expect("index");
    std::fs::write(root.join("big.bin"), vec![b'x'; 100_000]).expect("big");
    let _nginx = nginx_h2(&pair.server, SERVER_IP, dir.path(), &root);
    let pcap = dir.path().join("h2.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);

    // 12 requests over one connection: 6 found (one 100 kB), 5 missing, 1 failing. The
    // client is nghttp (nghttp2's reference client): curl 7.88 of Debian 12 fails to reuse
    // a prior-knowledge connection ("Error in the HTTP2 framing layer"), so curl sends two
    // more requests on connections of their own. nghttp merges identical URIs, hence the
    // query strings (podtap drops queries from `url.path`).
    let paths = [
        "/",
        "/missing/1",
        "/big.bin",
        "/?2",
        "/missing/2",
        "/fail",
        "/index.html",
        "/missing/3",
        "/?3",
        "/missing/4",
        "/index.html?2",
        "/missing/5",
    ];
    let urls: Vec<String> = paths
        .iter()
        .map(|p| format!("http://{SERVER_IP}{p}"))
        .collect();
    let stats = sh(pair
        .client
        .cmd("nghttp")
        .args(["-ns", "-t", "30"])
        .args(&urls));
    // Statistics lines: id, responseEnd, requestStart, process, code, size, path.
    let mut seen: Vec<(i64, String)> = stats
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() == 7 && f[0].parse::<u32>().is_ok())
        .map(|f| (f[4].parse().expect("status"), f[6].to_string()))
        .collect();
    assert_eq!(seen.len(), paths.len(), "{stats}");
    for p in ["/", "/missing/6"] {
        let code = sh(pair
            .client
            .cmd("curl")
            .args(["-s", "--http2-prior-knowledge", "--max-time", "30"])
            .args(["-w", "%{http_version} %{http_code}", "-o", "/dev/null"])
            .arg(format!("http://{SERVER_IP}{p}")));
        let (version, code) = code.split_once(' ').expect("version and status");
        assert_eq!(version, "2");
        seen.push((code.parse().expect("status"), p.to_string()));
    }
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();

    let all = replay(&[&pcap], &[]);
    let txs: Vec<_> = records(&all, "transaction")
        .into_iter()
        .filter(|t| t["server.port"] == 80)
        .collect();
    assert_eq!(txs.len(), seen.len(), "one transaction per request");
    assert!(txs.iter().all(|t| t["podtap.protocol"] == "http2"));
    assert!(
        txs.iter().all(|t| t["podtap.complete"] == true),
        "all complete: {txs:?}"
    );
    let want = bag(seen.iter().map(|(code, _)| *code));
    let got = bag(txs
        .iter()
        .map(|t| t["http.response.status_code"].as_i64().expect("status")));
    assert_eq!(got, want);
    assert_eq!(got.get(&404), Some(&6));
    assert_eq!(
        bag(txs
            .iter()
            .map(|t| t["url.path"].as_str().unwrap_or("").to_string())),
        bag(seen
            .iter()
            .map(|(_, p)| p.split('?').next().unwrap_or("").to_string()))
    );
    assert!(txs.iter().all(|t| t["http.request.method"] == "GET"));
    let errors: Vec<_> = txs.iter().filter(|t| t["error.type"] == "500").collect();
    assert_eq!(errors.len(), 1);
    let big = txs
        .iter()
        .find(|t| t["url.path"] == "/big.bin")
        .expect("big.bin");
    assert_eq!(big["http.response.body.size"], 100_000);
    // Routes are templated as for HTTP/1.
    assert_eq!(
        txs.iter()
            .filter(|t| t["http.route"] == "/missing/{id}")
            .count(),
        6
    );
    // nghttp's connection carried all 12 requests; curl made one connection each.
    let mut per_flow: Vec<usize> = records(&all, "flow")
        .into_iter()
        .filter(|f| f["server.port"] == 80)
        .map(|f| {
            assert_eq!(f["podtap.protocol"], "http2");
            txs.iter()
                .filter(|t| t["client.port"] == f["client.port"])
                .count()
        })
        .collect();
    per_flow.sort();
    assert_eq!(per_flow, [1, 1, paths.len()]);
}

/// The grpcio server in `ns`, listening on `ip:port`; returns once it says it is ready.
fn grpc_server(ns: &Netns, addr: &str) -> Proc {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc/server.py");
    let mut child = ns
        .cmd("python3")
        .arg(script)
        .arg(addr)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 with grpcio is installed (make deps-test)");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ready") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(20))
        .expect("gRPC server did not start (is grpcio installed? make deps-test)");
    Proc(Some(child))
}

#[test]
fn grpc_calls_and_statuses_are_counted_exactly() {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let addr = format!("{SERVER_IP}:50051");
    let _server = grpc_server(&pair.server, &addr);
    let pcap = dir.path().join("grpc.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);

    // 16 calls: 9 OK unary, 2 server-streaming, 4 failing with chosen statuses and one
    // to a method the server does not have (UNIMPLEMENTED).
    let mut plan: Vec<String> = (0..9).map(|i| format!("Say=hello{i}")).collect();
    plan.extend(["Count=3", "Count=40"].map(String::from));
    plan.extend(
        [
            "Say=status:5",
            "Say=status:3",
            "Say=status:5",
            "Say=status:13",
        ]
        .map(String::from),
    );
    plan.push("Missing=x".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/grpc/client.py");
    let out = sh(pair
        .client
        .cmd("python3")
        .arg(script)
        .arg(&addr)
        .args(&plan));
    let calls: Vec<(String, i64)> = out
        .lines()
        .map(|l| {
            let (p, c) = l.split_once(' ').expect("path and code");
            (p.to_string(), c.parse().expect("code"))
        })
        .collect();
    assert_eq!(calls.len(), plan.len(), "{out}");
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();

    let all = replay(&[&pcap], &[]);
    let txs: Vec<_> = records(&all, "transaction")
        .into_iter()
        .filter(|t| t["server.port"] == 50051)
        .collect();
    assert_eq!(txs.len(), calls.len(), "one transaction per call: {txs:#?}");
    assert!(txs.iter().all(|t| t["podtap.protocol"] == "grpc"));
    assert!(
        txs.iter().all(|t| t["podtap.complete"] == true),
        "all complete: {txs:#?}"
    );
    let want = bag(calls.iter().cloned());
    let got = bag(txs.iter().map(|t| {
        (
            t["podtap.resource"].as_str().unwrap_or("").to_string(),
            t["rpc.grpc.status_code"].as_i64().expect("grpc status"),
        )
    }));
    assert_eq!(got, want);
    assert_eq!(
        txs.iter()
            .filter(|t| t["error.type"] == "NOT_FOUND")
            .count(),
        2
    );
    assert_eq!(
        txs.iter()
            .filter(|t| t["error.type"] == "UNIMPLEMENTED")
            .count(),
        1
    );
    assert_eq!(
        txs.iter().filter(|t| t.get("error.type").is_none()).count(),
        11
    );
    for t in &txs {
        assert_eq!(t["rpc.system"], "grpc");
        assert_eq!(t["podtap.status"], t["rpc.grpc.status_code"]);
        assert_eq!(t["http.response.status_code"], 200);
    }
    assert_eq!(
        txs.iter()
            .filter(|t| t["rpc.service"] == "podtap.test.Echo")
            .count(),
        txs.len()
    );
    // The streaming call with 40 replies carried 40 length-prefixed messages.
    let count40 = txs
        .iter()
        .filter(|t| t["rpc.method"] == "Count")
        .map(|t| t["http.response.body.size"].as_i64().unwrap_or(0))
        .max();
    assert!(count40.unwrap_or(0) >= 40 * 6, "{count40:?}");
    let flows: Vec<_> = records(&all, "flow")
        .into_iter()
        .filter(|f| f["server.port"] == 50051)
        .collect();
    assert_eq!(flows.len(), 1, "one connection");
    assert_eq!(flows[0]["podtap.protocol"], "grpc");
}
