//! Every attribute key podtap emits is documented in docs/SCHEMA.md, docs/EXPORT.md or
//! the SCHEMA.md of the decoder that sets it (src/proto/<decoder>/).
//!
//! The keys are collected from what the real code emits for the whole capture corpus
//! (`../shared/pcaps`), replayed in-process with pod attribution (a static map naming
//! clients, servers, an observing pod and a Service) and header and query capture on:
//! the JSON lines, the span attributes and resources the OTLP span builder makes, and the
//! data point attributes and resources of the OTLP metrics built from the same records.
//! Keys no capture triggers are caught by also reading the literal keys the source hands
//! to the attribute setters.

mod common;

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use podtap::anomaly::engine::Event;
use podtap::anomaly::{EVIDENCE_KEYS, Hub};
use podtap::capture::Source;
use podtap::capture::pcap_file::PcapFileSource;
use podtap::capture::tpacket::IfaceCount;
use podtap::config::Config;
use podtap::export::config::Temporality;
use podtap::export::otlp::{metrics, spans};
use podtap::export::{Record, VecSink, jsonl};
use podtap::k8s::static_map::StaticMap;
use podtap::k8s::{Attribution, Inputs};
use podtap::stats::{CaptureTotals, HistogramSpec, WorkerStats, histogram};
use podtap::worker::Worker;
use regex::Regex;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

const MAP: &str = r#"
[[pod]]
name = "client-0"
namespace = "shop"
uid = "0b6d9c1e-client"
container = "app"
cidrs = ["192.168.0.0/16"]
obs = [0]
workload = { kind = "Deployment", name = "client" }
labels = { app = "client" }
service = "shop-client"

[[pod]]
name = "db-0"
namespace = "shop"
cidrs = ["10.0.0.0/8", "172.16.0.0/12"]
workload = { kind = "StatefulSet", name = "db" }
labels = { app = "db" }

[[pod]]
name = "host-agent"
namespace = "ops"
cidrs = ["8.8.4.4/32"]
host_network = true

[[service]]
name = "dns"
namespace = "kube-system"
cluster_ips = ["8.8.8.8"]
"#;

/// Keys emitted, each with one place it came from.
#[derive(Default)]
struct Keys(BTreeMap<String, String>);

impl Keys {
    fn add(&mut self, key: &str, from: impl FnOnce() -> String) {
        if !self.0.contains_key(key) {
            self.0.insert(key.to_string(), from());
        }
    }

    fn add_kvs(&mut self, kvs: &[KeyValue], what: &str) {
        for kv in kvs {
            self.add(&kv.key, || what.to_string());
        }
    }
}

#[test]
fn every_emitted_attribute_key_is_documented() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let cfg = Config::parse(
        "[protocols.http]\ncapture_headers = [\"user-agent\", \"x-request-id\"]\nkeep_query = true\n",
        Path::new("test.toml"),
    )
    .unwrap();
    let map = StaticMap::parse(MAP, Path::new("pods.toml")).unwrap();
    let attribution = Attribution::with_inputs(Inputs {
        node_name: Some("node-1".into()),
        static_map: Some(map),
        label_keys: vec!["app".into()],
        ..Default::default()
    });
    let mut keys = Keys::default();
    let mut stats = WorkerStats::new(
        HistogramSpec::Explicit(Arc::from(histogram::DEFAULT_BOUNDS)),
        100_000,
    );
    let mut line: Vec<u8> = Vec::new();
    let mut transactions = 0;
    let mut anomalies = 0;
    for file in common::captures() {
        let name = file.strip_prefix(common::pcaps_dir()).unwrap().display();
        let mut src = PcapFileSource::open(&file).unwrap();
        let hub = Hub::new(100_000);
        let mut w = Worker::new(&cfg, VecSink::default())
            .with_attributor(Some(attribution.attributor()))
            .with_anomalies(Some(hub.clone()), &cfg.anomalies);
        while src.next_batch(256, |f| w.process(f)).unwrap().is_some() {}
        let (totals, mut sink) = w.finish();
        // The anomalies the corpus holds, as JSON lines and OTLP log records.
        while let Some(signal) = hub.pop() {
            let e = Event {
                signal,
                suppressed_before: 1,
                recording: Some("/var/lib/podtap/recordings/x.pcapng".into()),
            };
            anomalies += 1;
            keys.add_kvs(
                &podtap::export::otlp::logs::record(&e, 0).attributes,
                &format!("log record of {name}"),
            );
            sink.records.push(Record::Anomaly(Box::new(e)));
        }
        stats.events(&totals.counters);
        for r in &sink.records {
            let mut lines = jsonl::JsonLines::default();
            if lines.push(r, true) {
                lines.write_to(&mut line).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
                line.clear();
                for k in v.as_object().unwrap().keys() {
                    keys.add(k, || format!("JSON line of {name}"));
                }
            }
            match r {
                Record::Flow(f) => stats.flow(f),
                Record::Anomaly(_) => {}
                Record::Transaction(tx) => {
                    transactions += 1;
                    // Every attribute the decoder set is one its telemetry mapping
                    // declares: the mapping is the description spans, metrics and the
                    // schema are held against.
                    let mapping = podtap::proto::telemetry(tx.protocol);
                    for (k, _) in &tx.attrs {
                        assert!(
                            mapping.is_some_and(|t| t.declares(k)),
                            "{}: {k} is set by the decoder but not declared in its \
                             telemetry mapping ({name})",
                            tx.protocol.as_str()
                        );
                    }
                    stats.transaction(tx);
                    let span = spans::build_span(&spans::SpanItem {
                        tx: tx.clone(),
                        ids: spans::SpanIds {
                            trace_id: [1; 16],
                            span_id: [2; 8],
                            parent: None,
                        },
                    });
                    keys.add_kvs(&span.attributes, &format!("span of {name}"));
                    // The resource the span is sent under: its workload's.
                    let r = podtap::export::otlp::resource::resource_of(tx, "podtap");
                    for rs in podtap::export::otlp::resource::group(
                        vec![(r, span)],
                        "podtap",
                        &BTreeMap::new(),
                    ) {
                        keys.add_kvs(
                            &rs.resource.unwrap().attributes,
                            &format!("span resource of {name}"),
                        );
                    }
                }
            }
        }
    }
    assert!(transactions > 100, "{transactions} transactions");
    assert!(anomalies > 0, "the corpus holds no anomaly");
    for k in EVIDENCE_KEYS {
        keys.add(&format!("podtap.anomaly.{k}"), || "anomaly evidence".into());
    }
    let ifaces = [IfaceCount {
        ifindex: 4,
        frames: 1,
        bytes: 60,
    }];
    let capture = CaptureTotals {
        packets: 1,
        bytes: 60,
        kernel_drops: 1,
        ring_full: 1,
        interfaces: &ifaces,
    };
    stats.capture(0, &capture, &[(4, Arc::from("veth4"))]);
    let req = metrics::request(
        &stats.take_delta(),
        Temporality::Cumulative,
        0,
        1,
        "podtap",
        &BTreeMap::new(),
    );
    for rm in &req.resource_metrics {
        keys.add_kvs(&rm.resource.as_ref().unwrap().attributes, "metric resource");
        for m in rm.scope_metrics.iter().flat_map(|s| &s.metrics) {
            let what = format!("metric {}", m.name);
            match m.data.as_ref().unwrap() {
                Data::Sum(s) => s
                    .data_points
                    .iter()
                    .for_each(|p| keys.add_kvs(&p.attributes, &what)),
                Data::Histogram(h) => h
                    .data_points
                    .iter()
                    .for_each(|p| keys.add_kvs(&p.attributes, &what)),
                Data::ExponentialHistogram(h) => h
                    .data_points
                    .iter()
                    .for_each(|p| keys.add_kvs(&p.attributes, &what)),
                d => panic!("unexpected metric data {d:?}"),
            }
        }
    }
    keys.add_kvs(
        &podtap::export::otlp::resource::resource("shop-client", &BTreeMap::new()).attributes,
        "span resource",
    );
    // Sanity: the run exercised the parts of the vocabulary this test is about.
    for k in [
        "podtap.incomplete_reason",
        "client.k8s.pod.name",
        "podtap.observation_point.side",
        "network.peer.address",
        "podtap.event",
        "podtap.worker",
        "network.interface.name",
        "telemetry.sdk.name",
        "http.request.header.user-agent",
    ] {
        assert!(keys.0.contains_key(k), "{k} was never emitted");
    }
    for (k, from) in source_keys(&root.join("src")) {
        keys.add(&k, || from);
    }
    // Each decoder documents its own attributes in its folder.
    let mut doc_files = vec![root.join("docs/SCHEMA.md"), root.join("docs/EXPORT.md")];
    for e in std::fs::read_dir(root.join("src/proto")).unwrap().flatten() {
        let f = e.path().join("SCHEMA.md");
        if f.exists() {
            doc_files.push(f);
        }
    }
    assert!(
        doc_files.len() > 2 + 5,
        "decoder SCHEMA.md files: {doc_files:?}"
    );
    // What each decoder's telemetry mapping declares it sets.
    for p in podtap::proto::Protocol::ALL {
        let t = podtap::proto::telemetry(*p).expect("every protocol has a mapping");
        for a in t.all_attributes() {
            // `http.request.header.*`: documented as `http.request.header.<name>`.
            let k = a.replace('*', "x-name");
            keys.add(&k, || format!("{} telemetry mapping", p.as_str()));
        }
    }

    let docs = Docs::read(&doc_files);
    let missing: Vec<_> = keys
        .0
        .iter()
        .filter(|(k, _)| !docs.documents(k))
        .map(|(k, from)| format!("{k} ({from})"))
        .collect();
    assert!(
        missing.is_empty(),
        "attribute keys emitted but documented in neither docs/SCHEMA.md, docs/EXPORT.md nor \
         the decoders' src/proto/*/SCHEMA.md:\n  {}",
        missing.join("\n  ")
    );
}

/// Literal keys handed to the attribute setters in the library's (non-test) source:
/// transaction attributes, span and metric attributes, the JSON writer's keys.
fn source_keys(src: &Path) -> BTreeMap<String, String> {
    let calls = Regex::new(
        r#"(?:attr_(?:str|int|bool)|kv_(?:str|int|bool)|\.(?:str|u64|i64|bool|display))\(\s*"([a-z][a-z0-9_.-]*)""#,
    )
    .unwrap();
    let tuples = Regex::new(r#"\(\s*"([a-z][a-z0-9_]*\.[a-z0-9_.]+)",\s*Val::"#).unwrap();
    let mut out = BTreeMap::new();
    let mut files = Vec::new();
    walk(src, &mut files);
    for f in files {
        if f.file_name().is_some_and(|n| n == "tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Unit tests sit at the end of a file, after `#[cfg(test)]`.
        let code = text.split("#[cfg(test)]").next().unwrap();
        let rel = f.strip_prefix(src.parent().unwrap()).unwrap().display();
        for re in [&calls, &tuples] {
            for c in re.captures_iter(code) {
                out.entry(c[1].to_string())
                    .or_insert_with(|| format!("literal in {rel}"));
            }
        }
    }
    out
}

fn walk(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The keys the docs name, in backticks: exact names, `{client,server}` alternatives,
/// `<key>` / `{side}` / `*` placeholders; the pod attribution section's keys also under
/// the `client.`, `server.` and `podtap.observation_point.` prefixes.
struct Docs {
    keys: Vec<Regex>,
    pod_keys: Vec<Regex>,
}

impl Docs {
    fn read(files: &[std::path::PathBuf]) -> Docs {
        let mut keys = Vec::new();
        let mut pod_keys = Vec::new();
        for f in files {
            let text = std::fs::read_to_string(f).unwrap();
            let mut in_pods = false;
            for line in text.lines() {
                if line.starts_with("## ") {
                    in_pods = line.starts_with("## Pod attribution");
                }
                for t in tokens(line) {
                    let Some(re) = pattern(&t) else { continue };
                    if in_pods {
                        pod_keys.push(re.clone());
                    }
                    keys.push(re);
                }
            }
        }
        Docs { keys, pod_keys }
    }

    fn documents(&self, key: &str) -> bool {
        if self.keys.iter().any(|r| r.is_match(key)) {
            return true;
        }
        ["client.", "server.", "podtap.observation_point."]
            .iter()
            .filter_map(|p| key.strip_prefix(p))
            .any(|rest| self.pod_keys.iter().any(|r| r.is_match(rest)))
    }
}

/// The words inside backticks on `line`, split at separators outside braces.
fn tokens(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, span) in line.split('`').enumerate() {
        if i % 2 == 0 {
            continue;
        }
        let (mut depth, mut cur) = (0, String::new());
        for c in span.chars() {
            match c {
                '{' | '<' => depth += 1,
                '}' | '>' => depth -= 1,
                _ => {}
            }
            if depth == 0 && (c.is_whitespace() || ",=():;\"…".contains(c)) {
                out.extend((!cur.is_empty()).then(|| std::mem::take(&mut cur)));
            } else {
                cur.push(c);
            }
        }
        out.extend((!cur.is_empty()).then_some(cur));
    }
    out
}

/// An anchored regex for a documented key; none for a word that is no key (or only a
/// placeholder, which would match anything).
fn pattern(token: &str) -> Option<Regex> {
    let literal = Regex::new(r"\{[^}]*\}|<[^>]*>|\*")
        .unwrap()
        .replace_all(token, "");
    let key_like = Regex::new(r"^[a-z0-9_.-]*[a-z][a-z0-9_.-]*$").unwrap();
    if !key_like.is_match(&literal) || !literal.contains(|c: char| c.is_ascii_lowercase()) {
        return None;
    }
    let mut re = String::from("^");
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '{' | '<' => {
                let close = if c == '{' { '}' } else { '>' };
                let inner: String = chars.by_ref().take_while(|&x| x != close).collect();
                if c == '{' && inner.contains(',') {
                    let alts: Vec<_> = inner.split(',').map(|a| regex::escape(a.trim())).collect();
                    re.push_str(&format!("(?:{})", alts.join("|")));
                } else {
                    re.push_str("[^ ]+");
                }
            }
            '*' => re.push_str("[^ ]+"),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Some(Regex::new(&re).unwrap())
}
