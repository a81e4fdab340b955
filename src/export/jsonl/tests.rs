use std::net::IpAddr;
use std::sync::Arc;

use compact_str::CompactString;

use super::*;
use crate::export::Record;
use crate::flow::{DirCounters, EndReason, TcpDirStats, TcpRecord, TlsRecord};
use crate::k8s::{PodMeta, ServiceMeta};
use crate::packet::{TunnelId, TunnelKind};
use crate::proto::{Completeness, Endpoint, Protocol, TraceContext};

const S: u64 = 1_000_000_000;
/// 2024-02-29T23:59:59 UTC: records below cross into March 1st.
const T0: u64 = 1_709_251_199 * S;

fn ep(a: &str, port: u16) -> Endpoint {
    Endpoint {
        addr: a.parse::<IpAddr>().unwrap(),
        port,
    }
}

fn pod(name: &str, extra: &[(&str, AttrValue)]) -> Arc<PodMeta> {
    let mut attrs = vec![
        (
            CompactString::from("k8s.pod.name"),
            AttrValue::Str(name.into()),
        ),
        (
            CompactString::from("k8s.namespace.name"),
            AttrValue::Str("shop".into()),
        ),
    ];
    attrs.extend(
        extra
            .iter()
            .map(|(k, v)| (CompactString::from(*k), v.clone())),
    );
    Arc::new(PodMeta {
        name: Some(name.into()),
        attrs,
        ..Default::default()
    })
}

fn flow(tcp: bool) -> FlowRecord {
    FlowRecord {
        obs: 7,
        vlan: 0,
        tunnel: TunnelId::default(),
        ip_proto: if tcp { 6 } else { 17 },
        client: ep("10.0.0.1", 40000),
        server: ep("10.0.0.255", 80),
        first: crate::time::Timestamp(T0 + 5),
        last: crate::time::Timestamp(T0 + S + 999_999_999),
        dirs: [
            DirCounters {
                packets: 3,
                bytes: 300,
                payload_bytes: 100,
            },
            DirCounters {
                packets: u64::MAX,
                bytes: 0,
                payload_bytes: 9,
            },
        ],
        reason: EndReason::Fin,
        protocol: Protocol::Unknown,
        tcp: None,
        tls: None,
        pods: None,
        unreported: Default::default(),
    }
}

fn tcp_record(rtts: (Option<u64>, Option<u64>), resets: (u64, u64)) -> TcpRecord {
    TcpRecord {
        midstream: rtts.0.is_none(),
        server_rtt_ns: rtts.0,
        client_rtt_ns: rtts.1,
        srtt_ns: [Some(41_549), None],
        stats: [
            TcpDirStats {
                retransmits: 1,
                out_of_order: 2,
                resets: resets.0,
                zero_windows: 3,
                keepalives: 4,
            },
            TcpDirStats {
                retransmits: 10,
                out_of_order: 20,
                resets: resets.1,
                zero_windows: 30,
                keepalives: 40,
            },
        ],
        reassembled: [12_345, 678_901_234],
        gap_bytes: [0, 1460],
    }
}

fn transaction() -> Transaction {
    let mut t = Transaction::new(Protocol::Http, crate::time::Timestamp(T0 + 999_999_999));
    t.end = crate::time::Timestamp(T0 + S + 1);
    t.client = ep("192.168.100.200", 1);
    t.server = ep("8.8.8.8", 65535);
    t.obs = u32::MAX;
    t.operation = "GET".into();
    t.resource = "/api/\"items\"/{id}\\x".into();
    t.status = Some(200);
    t.req_bytes = 115;
    t.resp_bytes = 237;
    t.attrs = vec![
        ("http.request.method", AttrValue::Str("GET".into())),
        (
            "url.path",
            AttrValue::Str("/a\u{1}b\tc\u{7f}é/😀 long enough for words".into()),
        ),
        ("http.response.status_code", AttrValue::Int(200)),
        ("podtap.test.negative", AttrValue::Int(i64::MIN)),
        ("podtap.test.flag", AttrValue::Bool(false)),
        (
            "http.request.header.x-\"odd\"",
            AttrValue::Str("v\r\n".into()),
        ),
    ];
    t
}

/// Records that take every branch of the writer: flows with and without TCP, TLS,
/// tunnels, VLANs, IPv6, each kind of peer; transactions with and without a named server,
/// errors, incomplete reasons, trace context, typed attributes, pods; timestamps across
/// a second, a day and a leap day, and back to an earlier second.
fn records() -> Vec<Record> {
    let mut v = Vec::new();
    // UDP, IPv6, VLAN, tunnel, no TCP, no pods.
    let mut f = flow(false);
    f.client = ep("2001:db8::1", 5353);
    f.server = ep("::ffff:10.1.2.3", 53);
    f.vlan = 4094;
    f.tunnel = TunnelId {
        kind: TunnelKind::Vxlan,
        id: 16_777_215,
    };
    f.protocol = Protocol::Dns;
    f.reason = EndReason::Idle;
    v.push(Record::Flow(Box::new(f)));
    // TCP with both handshake halves, resets by both, TLS with an odd server name,
    // pods: a pod client observed at its own interface, a service server.
    let mut f = flow(true);
    f.tcp = Some(tcp_record((Some(17_000), Some(16_000)), (1, 2)));
    f.tls = Some(TlsRecord {
        server_name: Some("shop.\"example\"\\.com".into()),
        encrypted_bytes: [1, 2],
    });
    f.protocol = Protocol::Tls;
    let web = pod(
        "web-0",
        &[("k8s.pod.label.app", AttrValue::Str("we\"b".into()))],
    );
    f.pods = Some(Arc::new(FlowPods {
        obs: Some(web.clone()),
        client: Peer::Pod(web.clone()),
        server: Peer::Service(Arc::new(ServiceMeta {
            name: "cart".into(),
            namespace: "a-namespace-name-longer-than-24".into(),
        })),
        node_name: Some("node-1".into()),
        ..Default::default()
    }));
    v.push(Record::Flow(Box::new(f)));
    // TCP, midstream (server RTT only), resets by the client; node and external peers
    // seen at a third pod (tap).
    let mut f = flow(true);
    f.tcp = Some(tcp_record((Some(5), None), (3, 0)));
    f.reason = EndReason::Rst;
    f.pods = Some(Arc::new(FlowPods {
        obs: Some(pod("tap-pod", &[("k8s.pod.uid", AttrValue::Int(-7))])),
        client: Peer::Node,
        server: Peer::External,
        node_name: Some("node-\u{1}".into()),
        ..Default::default()
    }));
    v.push(Record::Flow(Box::new(f)));
    // TCP without RTTs, resets by the server, unknown peers.
    let mut f = flow(true);
    f.tcp = Some(tcp_record((None, None), (0, 1)));
    f.first = crate::time::Timestamp(0);
    f.last = crate::time::Timestamp(u64::MAX);
    f.pods = Some(Arc::new(FlowPods::default()));
    v.push(Record::Flow(Box::new(f)));
    // A transaction whose server is named by the decoder, with everything optional.
    let mut t = transaction();
    t.attrs
        .push(("server.address", AttrValue::Str("shop.example".into())));
    t.error = Some("5\"00".into());
    t.status = Some(-1);
    t.completeness =
        Completeness(Completeness::MIDSTREAM | Completeness::GAP | Completeness::TRUNCATED);
    t.trace = Some(Box::new(TraceContext {
        trace_id: [
            0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e,
            0x47, 0x36,
        ],
        parent_span_id: [0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7],
        sampled: Some(true),
        format: "traceparent",
        tracestate: None,
    }));
    let db = pod("db-0", &[]);
    t.pods = Some(Arc::new(FlowPods {
        obs: Some(db.clone()),
        client: Peer::External,
        server: Peer::Pod(db),
        ..Default::default()
    }));
    v.push(Record::Transaction(t));
    // Plain, then one back in the previous day (the cached second goes backwards).
    v.push(Record::Transaction(transaction()));
    let mut t = transaction();
    t.start = crate::time::Timestamp(T0 - 86_400 * S);
    t.end = crate::time::Timestamp(T0 + 2 * S);
    t.status = None;
    t.attrs.clear();
    t.operation = CompactString::default();
    t.completeness = Completeness(Completeness::NO_RESPONSE);
    v.push(Record::Transaction(t));
    v
}

fn written(flows: bool) -> String {
    let mut w = JsonLines::default();
    let mut n = 0;
    for r in &records() {
        n += w.push(r, flows) as usize;
    }
    assert_eq!(n, if flows { 7 } else { 3 });
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    assert!(w.is_empty());
    String::from_utf8(out).unwrap()
}

/// The lines the writer produced before it was rewritten for speed (`core::fmt`, one
/// `String` per line), for the records above: the output must not change.
const EXPECTED: &str = include_str!("../../../tests/fixtures/jsonl_writer.jsonl");

#[test]
fn every_branch_writes_the_same_bytes_as_before() {
    let got = written(true);
    for (i, (g, e)) in got.lines().zip(EXPECTED.lines()).enumerate() {
        assert_eq!(g, e, "line {i}");
    }
    assert_eq!(got, EXPECTED);
}

/// The keys of a JSON object in the order written, duplicates included.
struct Keys(Vec<String>);

impl<'de> serde::Deserialize<'de> for Keys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                let mut keys = Vec::new();
                while let Some((k, _)) = m.next_entry::<String, serde::de::IgnoredAny>()? {
                    keys.push(k);
                }
                Ok(Keys(keys))
            }
        }
        d.deserialize_map(V)
    }
}

#[test]
fn lines_are_json_objects_with_unique_keys() {
    for line in written(true).lines() {
        let Keys(keys) = serde_json::from_str(line).unwrap();
        assert_eq!(keys[0], "podtap.record");
        let unique: std::collections::HashSet<&String> = keys.iter().collect();
        assert_eq!(unique.len(), keys.len(), "{line}");
    }
}

#[test]
fn flows_left_out_write_nothing() {
    let got = written(false);
    let want: Vec<&str> = EXPECTED
        .lines()
        .filter(|l| !l.contains("\"podtap.record\":\"flow\""))
        .collect();
    assert_eq!(got.lines().collect::<Vec<_>>(), want);
}

#[test]
fn lines_accumulate_until_written_out() {
    let recs = records();
    let mut w = JsonLines::default();
    let mut out = Vec::new();
    let mut lines = 0;
    while lines < 2000 {
        for r in &recs {
            assert!(w.push(r, true));
            lines += 1;
            if w.len() >= FLUSH_AT {
                let before = out.len();
                w.write_to(&mut out).unwrap();
                assert!(out.len() - before >= FLUSH_AT);
                assert!(out.ends_with(b"\n"));
            }
        }
    }
    assert!(!w.is_empty());
    w.write_to(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert_eq!(text.lines().count(), lines);
    assert_eq!(text, EXPECTED.repeat(lines / recs.len()));
}

#[test]
fn a_failed_write_drops_those_lines_only() {
    struct Closed;
    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let recs = records();
    let mut w = JsonLines::default();
    w.push(&recs[5], true);
    assert!(w.write_to(&mut Closed).is_err());
    assert!(w.is_empty());
    w.push(&recs[6], true);
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        EXPECTED.lines().nth(6).unwrap().to_owned() + "\n"
    );
}

#[test]
fn decoder_keys_are_escaped_every_time_whatever_shares_their_slot() {
    // More keys than the clean-key table has slots, every third one needing escapes:
    // slots are shared and overwritten, and a key is copied unscanned only after it was
    // found clean.
    let keys: Vec<&'static str> = (0..200)
        .map(|i| {
            let k = if i % 3 == 0 {
                format!("x.\"{i}\"\\\n")
            } else {
                format!("podtap.test.key_{i}")
            };
            &*Box::leak(k.into_boxed_str())
        })
        .collect();
    // All of them (slots overwritten before a key comes again), and a few (each key
    // finds its own slot again).
    for keys in [&keys[..], &keys[..4]] {
        let mut t = transaction();
        t.attrs = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, AttrValue::Int(i as i64)))
            .collect();
        let r = Record::Transaction(t);
        let mut w = JsonLines::default();
        for _ in 0..3 {
            w.push(&r, true);
        }
        let mut out = Vec::new();
        w.write_to(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0], lines[1]);
        assert_eq!(lines[0], lines[2]);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(v[*k], i as i64, "{k:?}");
        }
        let Keys(written) = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(&written[written.len() - keys.len()..], keys);
    }
}

#[test]
fn a_write_failing_half_way_counts_the_lines_not_out_whole() {
    /// Takes `room` bytes, a few at a time, then the disk is full.
    struct Full {
        room: usize,
        got: Vec<u8>,
    }
    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            let n = b.len().min(self.room).min(7);
            self.room -= n;
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let recs = records();
    let mut w = JsonLines::default();
    for r in &recs {
        w.push(r, true);
    }
    let all = w.len();
    let mut out = Full {
        room: all / 2,
        got: Vec::new(),
    };
    let e = w.write_to(&mut out).unwrap_err();
    assert_eq!(e.error.raw_os_error(), Some(libc::ENOSPC));
    let whole = out.got.iter().filter(|&&b| b == b'\n').count() as u64;
    assert!(whole > 0 && e.lines > 0);
    assert_eq!(
        whole + e.lines,
        recs.len() as u64,
        "each line out whole or counted"
    );
    assert!(w.is_empty());
}
