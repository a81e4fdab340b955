//! Criterion benchmarks of the per-packet path, with throughput in packets and bytes:
//! L2-L4 decode alone, and the whole worker (decode, flow table, TCP analysis and
//! reassembly, L7 detection and HTTP/1 decoding) over a synthetic capture held in memory.
//! Side-by-side comparisons with tcpdump and tshark live in perf/replay_bench.sh.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

use podtap::capture::pcap_file::PcapFileSource;
use podtap::capture::{Frame, Source};
use podtap::config::Config;
use podtap::export::RecordSink;
use podtap::flow::FlowRecord;
use podtap::k8s::{Attribution, Attributor, Inputs, static_map::StaticMap};
use podtap::packet::{Defragmenter, LinkType, decode};
use podtap::proto::Transaction;
use podtap::synth::{self, SynthOptions};
use podtap::time::Timestamp;
use podtap::worker::Worker;

struct Discard;
impl RecordSink for Discard {
    fn flow(&mut self, _: FlowRecord) {}
    fn transaction(&mut self, _: Transaction) {}
}

/// Frames of a synthetic capture: (bytes, timestamp).
fn frames(opts: &SynthOptions) -> Vec<(Vec<u8>, Timestamp)> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bench.pcap");
    synth::write(std::fs::File::create(&path).expect("create"), opts).expect("synth");
    let mut src = PcapFileSource::open(&path).expect("open");
    let mut out = Vec::new();
    while src
        .next_batch(1024, |f| out.push((f.data.to_vec(), f.ts)))
        .expect("read")
        .is_some()
    {}
    out
}

fn bench(c: &mut Criterion) {
    let small = frames(&SynthOptions {
        tcp_flows: 2000,
        udp_flows: 2000,
        requests: 10,
        payload: 64,
        protocol: podtap::synth::SynthProtocol::Http,
    });
    let http = frames(&SynthOptions {
        tcp_flows: 500,
        udp_flows: 0,
        requests: 40,
        payload: 0,
        protocol: podtap::synth::SynthProtocol::Http,
    });
    for (name, set) in [("small64", &small), ("http", &http)] {
        let bytes: u64 = set.iter().map(|(f, _)| f.len() as u64).sum();
        let mut g = c.benchmark_group(name);
        g.sample_size(10);
        g.throughput(Throughput::Elements(set.len() as u64));
        g.bench_function("decode packets", |b| {
            let mut d = Defragmenter::default();
            b.iter(|| {
                for (f, ts) in set.iter() {
                    let _ = black_box(
                        decode(f, LinkType::Ethernet, *ts, f.len() as u32, &mut d).is_ok(),
                    );
                }
            })
        });
        // The whole capture through one worker (attributed or not).
        let run = |attr: Option<Attributor>| {
            let mut w = Worker::new(&Config::default(), Discard).with_attributor(attr);
            for (f, ts) in set.iter() {
                w.process(&Frame {
                    data: f,
                    ts: *ts,
                    wire_len: f.len() as u32,
                    link: LinkType::Ethernet,
                    obs: 0,
                });
            }
            black_box(w.finish());
        };
        g.bench_function("worker packets", |b| b.iter(|| run(None)));
        // The same capture with pod attribution on: each flow's ends resolved once (client
        // and server pods by CIDR, the observation point by number) and shared with every
        // record; the difference to "worker packets" is the whole cost of attribution.
        let attribution = attribution();
        g.bench_function("worker packets, attribution on", |b| {
            b.iter(|| run(Some(attribution.attributor())))
        });
        g.throughput(Throughput::Bytes(bytes));
        g.bench_function("worker bytes", |b| {
            b.iter(|| {
                let mut w = Worker::new(&Config::default(), Discard);
                for (f, ts) in set.iter() {
                    w.process(&Frame {
                        data: f,
                        ts: *ts,
                        wire_len: f.len() as u32,
                        link: LinkType::Ethernet,
                        obs: 0,
                    });
                }
                black_box(w.finish());
            })
        });
        g.finish();
    }
}

/// Pods for the synthetic capture's clients (10.1/16, 10.3/16) and servers (10.2/16,
/// 10.4/16), with the server pod behind observation point 0.
fn attribution() -> Attribution {
    let map = StaticMap::parse(
        r#"
[[pod]]
name = "clients"
namespace = "bench"
cidrs = ["10.1.0.0/16", "10.3.0.0/16"]
workload = { kind = "Deployment", name = "load" }
[[pod]]
name = "servers"
namespace = "bench"
cidrs = ["10.2.0.0/16", "10.4.0.0/16"]
obs = [0]
labels = { app = "web" }
"#,
        std::path::Path::new("bench.toml"),
    )
    .expect("static map");
    Attribution::with_inputs(Inputs {
        static_map: Some(map),
        label_keys: vec!["app".into()],
        ..Default::default()
    })
}

criterion_group!(benches, bench);
criterion_main!(benches);
