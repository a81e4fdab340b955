//! Application decoding against tshark on the third-party capture corpus
//! (`../shared/pcaps`, read in place): every HTTP/1 request, HTTP/2 header block, DNS
//! response and TLS ClientHello tshark finds is reported by podtap with the same method
//! and path, status, query name and rcode, and server name.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn all_captures() -> Vec<PathBuf> {
    common::captures()
}

type Bag = BTreeMap<String, i64>;

fn add(bag: &mut Bag, k: String) {
    *bag.entry(k).or_default() += 1;
}

fn tshark(file: &Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    tshark_as(file, &[], filter, fields)
}

/// tshark with `-d tcp.port==P,http2` for each of `h2_ports`.
fn tshark_as(file: &Path, h2_ports: &[u16], filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file);
    for p in h2_ports {
        cmd.args(["-d", &format!("tcp.port=={p},http2")]);
    }
    cmd.args(["-Y", filter, "-T", "fields"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark is installed (make deps-test)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('\t').map(str::to_string).collect())
        .collect()
}

fn podtap_transactions(file: &Path) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("replay")
        .arg(file)
        .output()
        .expect("run podtap");
    assert!(
        out.status.success(),
        "podtap replay {} failed",
        file.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["podtap.record"] == "transaction")
        .collect()
}

/// Path of a request target, as podtap reports `url.path` (absolute-form made origin-form,
/// query dropped).
fn path_of(uri: &str) -> String {
    let no_query = uri.split('?').next().unwrap_or("");
    match no_query.find("://") {
        Some(i) => no_query[i + 3..]
            .find('/')
            .map_or("/".into(), |j| no_query[i + 3 + j..].to_string()),
        None => no_query.to_string(),
    }
}

/// Differences from tshark that are modelling choices, not bugs.
const EXPECTED_DIFFERENCES: &[(&str, &str)] = &[
    // tshark decodes the DNS packet quoted inside an ICMPv6 error; that is not a transaction.
    ("libbeat-flowhash/icmp6.pcap", "dns"),
    // The same ClientHello sent twice on one connection (an evasion test): one handshake.
    ("tls-duplicate-hello/input.pcap", "tls"),
];

fn expected_difference(file: &Path, proto: &str) -> bool {
    let f = file.to_string_lossy();
    EXPECTED_DIFFERENCES
        .iter()
        .any(|(suffix, p)| f.ends_with(suffix) && *p == proto)
}

/// What tshark and podtap each report for one capture, per protocol.
#[derive(Default)]
struct Seen {
    http: (Bag, Bag),
    dns: (Bag, Bag),
    tls: (Bag, Bag),
    http2: (Bag, Bag),
}

/// HTTP/2 servers on ports tshark does not dissect as HTTP/2 by itself (no preface in the
/// capture, picked up midstream): decoded as HTTP/2 for the comparison.
const H2_PORTS: &[(&str, u16)] = &[
    ("deepflow/http/grpc-segmented.pcap", 20035),
    ("deepflow/http/grpc-server-stream.pcap", 9001),
    ("deepflow/http/grpc-service-name.pcap", 38888),
    ("deepflow/http/grpc-unary.pcap", 30035),
    ("deepflow/http/grpc-unknown.pcap", 7000),
    ("deepflow/http/h2c_ascii.pcap", 7070),
    ("deepflow/http/http2-multi.pcap", 3550),
    ("deepflow/http/httpv2-stream-id.pcap", 11800),
];

/// HTTP/2 header blocks tshark decodes: each method, path and status counted (a block
/// picked up midstream may have a method without its path). Header blocks inside TLS are
/// out of scope (podtap decodes cleartext HTTP/2).
fn what_tshark_sees_h2(file: &Path, s: &mut Seen) {
    let f = file.to_string_lossy();
    let ports: Vec<u16> = H2_PORTS
        .iter()
        .filter(|(suffix, _)| f.ends_with(suffix))
        .map(|(_, p)| *p)
        .collect();
    let fields = [
        "frame.protocols",
        "http2.headers.method",
        "http2.headers.path",
        "http2.headers.status",
    ];
    for r in tshark_as(file, &ports, "http2.header", &fields) {
        let f = |i: usize| r.get(i).map(String::as_str).unwrap_or("");
        if f(0).contains(":tls") {
            continue;
        }
        for m in f(1).split(',').filter(|v| !v.is_empty()) {
            add(&mut s.http2.0, format!("method {m}"));
        }
        for p in f(2).split(',').filter(|v| !v.is_empty()) {
            add(&mut s.http2.0, format!("path {}", path_of(p)));
        }
        for c in f(3).split(',').filter(|v| !v.is_empty()) {
            add(&mut s.http2.0, format!("status {c}"));
        }
    }
}

/// One tshark pass over the file: HTTP/1 requests and final responses, DNS responses and
/// TLS ClientHellos, with the protocol stack of each frame to exclude embedded packets.
fn what_tshark_sees(file: &Path, s: &mut Seen) {
    let fields = [
        "frame.protocols",
        "http.request.method",
        "http.request.uri",
        "http.response.code",
        "dns.flags.response",
        "dns.qry.name",
        "dns.flags.rcode",
        "tls.handshake.type",
        "tls.handshake.extensions_server_name",
    ];
    let filter =
        "http.request || http.response || dns.flags.response == 1 || tls.handshake.type == 1";
    for r in tshark(file, filter, &fields) {
        let f = |i: usize| r.get(i).map(String::as_str).unwrap_or("");
        let protos = f(0);
        if protos.contains(":icmp") || protos.contains("http2") {
            continue; // a quoted packet inside an ICMP error, or DNS over HTTP/2
        }
        if !f(1).is_empty() {
            add(&mut s.http.0, format!("{} {}", f(1), path_of(f(2))));
        }
        // Interim 1xx responses are part of their request's transaction; 101 ends it.
        for code in f(3).split(',').filter(|c| !c.is_empty()) {
            if let Ok(c) = code.parse::<u16>()
                && (!(100..200).contains(&c) || c == 101)
            {
                add(&mut s.http.0, format!("status {c}"));
            }
        }
        if f(4).split(',').any(|v| v == "1" || v == "True") && !f(6).is_empty() {
            let name = f(5).split(',').next().unwrap_or("").to_lowercase();
            add(
                &mut s.dns.0,
                format!(
                    "{} rcode {}",
                    name.trim_end_matches('.'),
                    f(6).split(',').next().unwrap_or("")
                ),
            );
        }
        for (i, kind) in f(7).split(',').enumerate() {
            if kind == "1" && i == 0 {
                add(&mut s.tls.0, f(8).to_string());
            }
        }
    }
}

fn what_podtap_sees(file: &Path, s: &mut Seen) {
    for t in podtap_transactions(file) {
        match t["podtap.protocol"].as_str() {
            Some("http") => {
                if let (Some(m), Some(p)) =
                    (t["http.request.method"].as_str(), t["url.path"].as_str())
                {
                    add(&mut s.http.1, format!("{m} {p}"));
                }
                if let Some(c) = t["http.response.status_code"].as_i64() {
                    add(&mut s.http.1, format!("status {c}"));
                }
            }
            Some("dns") => {
                if let Some(rc) = t["podtap.status"].as_i64() {
                    add(
                        &mut s.dns.1,
                        format!("{} rcode {rc}", t["podtap.resource"].as_str().unwrap_or("")),
                    );
                }
            }
            Some("http2" | "grpc") => {
                if let Some(m) = t["http.request.method"].as_str() {
                    add(&mut s.http2.1, format!("method {m}"));
                }
                if let Some(p) = t["url.path"].as_str() {
                    add(&mut s.http2.1, format!("path {p}"));
                }
                if let Some(c) = t["http.response.status_code"].as_i64() {
                    add(&mut s.http2.1, format!("status {c}"));
                }
            }
            Some("tls") => add(
                &mut s.tls.1,
                t["podtap.resource"].as_str().unwrap_or("").to_string(),
            ),
            _ => {}
        }
    }
}

/// Everything tshark finds must be reported by podtap. podtap may report more (responses
/// after a gap, servers on ports tshark does not dissect): those are listed, not failed.
#[test]
fn podtap_reports_everything_tshark_sees_in_the_corpus() {
    let files = all_captures();
    let results = common::for_each_file(&files, |f| {
        let mut s = Seen::default();
        what_tshark_sees(f, &mut s);
        what_tshark_sees_h2(f, &mut s);
        what_podtap_sees(f, &mut s);
        (f.to_path_buf(), s)
    });
    let mut failures = Vec::new();
    let mut checked = BTreeMap::<&str, usize>::new();
    let mut extra = 0;
    for (file, s) in &results {
        for (proto, (want, got)) in [
            ("http", &s.http),
            ("dns", &s.dns),
            ("tls", &s.tls),
            ("http2", &s.http2),
        ] {
            if want.is_empty() {
                continue;
            }
            *checked.entry(proto).or_default() += 1;
            let missing: Vec<_> = want
                .iter()
                .filter(|(k, n)| got.get(*k).copied().unwrap_or(0) < **n)
                .map(|(k, n)| format!("{k} x{}", n - got.get(k).copied().unwrap_or(0)))
                .collect();
            extra += got
                .iter()
                .filter(|(k, n)| want.get(*k).copied().unwrap_or(0) < **n)
                .count();
            if !missing.is_empty() && !expected_difference(file, proto) {
                failures.push(format!(
                    "{} [{proto}] missing from podtap: {missing:?}",
                    file.display()
                ));
            }
        }
    }
    eprintln!(
        "captures checked per protocol: {checked:?}; kinds podtap reports beyond tshark: {extra}"
    );
    assert!(
        checked.get("http").copied().unwrap_or(0) >= 25,
        "HTTP captures found: {checked:?}"
    );
    assert!(
        checked.get("dns").copied().unwrap_or(0) >= 15,
        "DNS captures found: {checked:?}"
    );
    assert!(
        checked.get("tls").copied().unwrap_or(0) >= 8,
        "TLS captures found: {checked:?}"
    );
    assert!(
        checked.get("http2").copied().unwrap_or(0) >= 12,
        "HTTP/2 captures found: {checked:?}"
    );
    assert!(
        failures.is_empty(),
        "podtap misses what tshark sees:\n{}",
        failures.join("\n")
    );
}
