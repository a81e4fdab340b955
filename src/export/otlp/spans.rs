//! Transactions as OTLP spans, built directly as protobuf: explicit ids and packet
//! timestamps, which an SDK tracer cannot express.
//!
//! Ids and the sampling decision are made on the worker (cheap, no allocation); the span
//! itself is built on the export thread from the queued transaction.

use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, Status, span::SpanKind, status::StatusCode};

use crate::proto::{AttrValue, Transaction};
use crate::stats::{Side, observed_side};

/// A sampled transaction with the ids its span will carry.
#[derive(Clone, Debug)]
pub struct SpanItem {
    pub tx: Transaction,
    pub ids: SpanIds,
}

/// The ids a sampled transaction's span carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpanIds {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The parent when podtap itself decides it (the client's span of the same request);
    /// otherwise the caller's span from the request's trace context, if any.
    pub parent: Option<[u8; 8]>,
}

/// Ids derived from a request's identity ([`Transaction::origin`] and the client's
/// address), which every observation point of the request computes alike: the client's
/// and the server's podtap span of one request share a trace and know each other's span
/// id without talking to each other. The client address and port are used, not the
/// server's: a Service's DNAT changes the server address between the two points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkIds {
    pub trace_id: [u8; 16],
    pub client_span: [u8; 8],
    pub server_span: [u8; 8],
}

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn nonzero(v: u64) -> [u8; 8] {
    v.max(1).to_be_bytes()
}

pub fn link_ids(tx: &Transaction) -> Option<LinkIds> {
    let origin = tx.origin?;
    let addr = match tx.client.addr {
        std::net::IpAddr::V4(a) => u32::from(a) as u128,
        std::net::IpAddr::V6(a) => u128::from(a),
    };
    let mut h = mix(origin ^ 0x706f_6474_6170); // "podtap"
    h = mix(h ^ addr as u64);
    h = mix(h ^ (addr >> 64) as u64);
    h = mix(h ^ tx.client.port as u64);
    let mut trace_id = [0u8; 16];
    trace_id[..8].copy_from_slice(&mix(h ^ 1).to_be_bytes());
    trace_id[8..].copy_from_slice(&nonzero(mix(h ^ 2)));
    Some(LinkIds {
        trace_id,
        client_span: nonzero(mix(h ^ 3)),
        server_span: nonzero(mix(h ^ 4)),
    })
}

/// Fast per-worker id source (SplitMix64). Ids must be unique, not secret.
pub struct IdGen(u64);

impl IdGen {
    pub fn new(seed: u64) -> IdGen {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        IdGen(t ^ seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ std::process::id() as u64)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn span_id(&mut self) -> [u8; 8] {
        loop {
            let v = self.next();
            if v != 0 {
                return v.to_be_bytes();
            }
        }
    }

    pub fn trace_id(&mut self) -> [u8; 16] {
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&self.next().to_be_bytes());
        id[8..].copy_from_slice(&self.span_id());
        id
    }
}

/// Which transactions become spans.
#[derive(Clone, Copy, Debug)]
pub struct Sampler {
    /// Keep a trace when the low 56 bits of its id are below this (W3C trace ids carry
    /// their randomness there), so every observer of a trace decides alike.
    threshold: u64,
    keep_errors: bool,
    slow_ns: u64,
}

const RANDOM_BITS: u32 = 56;

impl Sampler {
    pub fn new(ratio: f64, keep_errors: bool, slow_ms: u64) -> Sampler {
        let full = 1u64 << RANDOM_BITS;
        let threshold = if ratio >= 1.0 {
            full
        } else {
            (ratio.max(0.0) * full as f64) as u64
        };
        Sampler {
            threshold,
            keep_errors,
            slow_ns: slow_ms.saturating_mul(1_000_000),
        }
    }

    pub fn keep(&self, tx: &Transaction, trace_id: &[u8; 16]) -> bool {
        if self.keep_errors && tx.error.is_some() {
            return true;
        }
        if self.slow_ns > 0 && tx.duration_ns() >= self.slow_ns {
            return true;
        }
        let low = u64::from_be_bytes(trace_id[8..].try_into().expect("8 bytes"));
        (low & ((1u64 << RANDOM_BITS) - 1)) < self.threshold
    }
}

/// The span name: `GET /users/{id}`, `QUERY A`… (low cardinality), as the protocol's
/// decoder names it (its telemetry mapping).
pub fn span_name(tx: &Transaction) -> String {
    match crate::proto::telemetry(tx.protocol) {
        Some(t) => (t.span_name)(tx),
        None => format!("{} {}", tx.protocol.as_str(), tx.operation)
            .trim_end()
            .to_string(),
    }
}

/// The service a transaction's span belongs to: the workload of the pod it was observed
/// at (each workload its own service in trace views), else the configured default.
pub fn service_of<'a>(tx: &'a Transaction, default: &'a str) -> &'a str {
    crate::stats::local_pod(tx)
        .and_then(|p| p.service_name.as_deref())
        .unwrap_or(default)
}

fn kv(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

pub fn kv_str(key: &str, v: &str) -> KeyValue {
    kv(key, any_value::Value::StringValue(v.to_string()))
}

pub fn kv_int(key: &str, v: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(v))
}

pub fn kv_bool(key: &str, v: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(v))
}

pub fn build_span(item: &SpanItem) -> Span {
    let tx = &item.tx;
    let kind = match observed_side(tx) {
        Side::Server => SpanKind::Server,
        Side::Client => SpanKind::Client,
    };
    let mut attrs = Vec::with_capacity(tx.attrs.len() + 8);
    for (k, v) in &tx.attrs {
        attrs.push(match v {
            AttrValue::Str(s) => kv_str(k, s),
            AttrValue::Int(i) => kv_int(k, *i),
            AttrValue::Bool(b) => kv_bool(k, *b),
        });
    }
    // The decoder may name the server (HTTP Host); the wire always gives its address.
    let has = |k: &str| tx.attrs.iter().any(|(n, _)| *n == k);
    let (server_ip, client_ip) = (tx.server.addr.to_string(), tx.client.addr.to_string());
    if !has("server.address") {
        attrs.push(kv_str("server.address", &server_ip));
    }
    if !has("server.port") {
        attrs.push(kv_int("server.port", tx.server.port as i64));
    }
    if !has("client.address") {
        attrs.push(kv_str("client.address", &client_ip));
    }
    attrs.push(kv_int("client.port", tx.client.port as i64));
    // Seen from the server's side: the local end is the server, the peer the client.
    let (local, peer) = match kind {
        SpanKind::Client => ((&client_ip, tx.client.port), (&server_ip, tx.server.port)),
        _ => ((&server_ip, tx.server.port), (&client_ip, tx.client.port)),
    };
    attrs.push(kv_str("network.local.address", local.0));
    attrs.push(kv_int("network.local.port", local.1 as i64));
    attrs.push(kv_str("network.peer.address", peer.0));
    attrs.push(kv_int("network.peer.port", peer.1 as i64));
    attrs.push(kv_str("podtap.protocol", tx.protocol.as_str()));
    if let Some(p) = crate::stats::local_pod(tx) {
        for (k, v) in [
            ("k8s.pod.name", &p.name),
            ("k8s.namespace.name", &p.namespace),
            ("k8s.pod.uid", &p.uid),
            ("k8s.node.name", &p.node),
        ] {
            if let Some(v) = v {
                attrs.push(kv_str(k, v));
            }
        }
    }
    if let Some(e) = &tx.error {
        attrs.push(kv_str("error.type", e));
    }
    if !tx.completeness.is_complete() {
        let reasons: Vec<_> = tx.completeness.reasons().collect();
        attrs.push(kv_str("podtap.incomplete_reason", &reasons.join(",")));
    }
    let (parent, trace_state, flags) = match &tx.trace {
        Some(t) => (
            item.ids.parent.unwrap_or(t.parent_span_id).to_vec(),
            t.tracestate
                .as_ref()
                .map_or(String::new(), |s| s.to_string()),
            // W3C trace flags: sampled (podtap exports it, so it was sampled here).
            1,
        ),
        None => (
            item.ids.parent.map_or(Vec::new(), |p| p.to_vec()),
            String::new(),
            1,
        ),
    };
    let status = match &tx.error {
        Some(e) => Status {
            code: StatusCode::Error as i32,
            message: e.to_string(),
        },
        None => Status::default(),
    };
    Span {
        trace_id: item.ids.trace_id.to_vec(),
        span_id: item.ids.span_id.to_vec(),
        trace_state,
        parent_span_id: parent,
        flags,
        name: span_name(tx),
        kind: kind as i32,
        start_time_unix_nano: tx.start.as_nanos(),
        end_time_unix_nano: tx.end.as_nanos().max(tx.start.as_nanos()),
        attributes: attrs,
        status: Some(status),
        ..Default::default()
    }
}

pub fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "podtap".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Endpoint, TraceContext};
    use crate::time::Timestamp;

    fn http(trace: Option<TraceContext>) -> Transaction {
        let mut tx = Transaction::new(
            crate::proto::Protocol::Http,
            Timestamp(1_700_000_000_000_000_000),
        );
        tx.end = Timestamp(1_700_000_000_025_000_000);
        tx.operation = "GET".into();
        tx.resource = "/users/{id}".into();
        tx.status = Some(200);
        tx.attr_str("http.request.method", "GET");
        tx.attr_str("http.route", "/users/{id}");
        tx.attr_int("http.response.status_code", 200);
        tx.server = Endpoint {
            addr: "10.0.0.2".parse().unwrap(),
            port: 80,
        };
        tx.trace = trace.map(Box::new);
        tx
    }

    fn tc(format: &'static str) -> TraceContext {
        TraceContext {
            trace_id: *b"\x4b\xf9\x2f\x35\x77\xb3\x4d\xa6\xa3\xce\x92\x9d\x0e\x0e\x47\x36",
            parent_span_id: *b"\x00\xf0\x67\xaa\x0b\xa9\x02\xb7",
            sampled: Some(true),
            format,
            tracestate: Some("congo=t61rcWkgMzE".into()),
        }
    }

    #[test]
    fn span_joins_the_callers_trace() {
        for format in ["traceparent", "b3"] {
            let t = tc(format);
            let mut ids = IdGen::new(1);
            let item = SpanItem {
                ids: SpanIds {
                    trace_id: t.trace_id,
                    span_id: ids.span_id(),
                    parent: None,
                },
                tx: http(Some(t.clone())),
            };
            let s = build_span(&item);
            assert_eq!(s.trace_id, t.trace_id.to_vec());
            assert_eq!(s.parent_span_id, t.parent_span_id.to_vec());
            assert_ne!(s.span_id, t.parent_span_id.to_vec());
            assert_eq!(s.span_id.len(), 8);
            assert_eq!(s.trace_state, "congo=t61rcWkgMzE");
            assert_eq!(s.kind, SpanKind::Server as i32);
            assert_eq!(s.name, "GET /users/{id}");
            assert_eq!(s.start_time_unix_nano, 1_700_000_000_000_000_000);
            assert_eq!(s.end_time_unix_nano, 1_700_000_000_025_000_000);
            let keys: Vec<_> = s.attributes.iter().map(|k| k.key.as_str()).collect();
            for k in [
                "http.request.method",
                "http.route",
                "http.response.status_code",
                "server.address",
                "server.port",
            ] {
                assert!(keys.contains(&k), "{k} missing from {keys:?}");
            }
        }
    }

    #[test]
    fn span_without_context_is_a_root_with_fresh_ids() {
        let mut ids = IdGen::new(7);
        let a = ids.trace_id();
        let b = ids.trace_id();
        assert_ne!(a, b);
        assert_ne!(a, [0; 16]);
        let s = build_span(&SpanItem {
            ids: SpanIds {
                trace_id: a,
                span_id: ids.span_id(),
                parent: None,
            },
            tx: http(None),
        });
        assert!(s.parent_span_id.is_empty());
        assert_eq!(s.trace_id, a.to_vec());
    }

    #[test]
    fn errors_set_status_and_names_follow_protocols() {
        let mut tx = http(None);
        tx.error = Some("503".into());
        let s = build_span(&SpanItem {
            ids: SpanIds {
                trace_id: [1; 16],
                span_id: [2; 8],
                parent: None,
            },
            tx,
        });
        assert_eq!(s.status.unwrap().code, StatusCode::Error as i32);
        let mut d = Transaction::new(crate::proto::Protocol::Dns, Timestamp(0));
        d.operation = "A".into();
        assert_eq!(span_name(&d), "QUERY A");
        let r = Transaction::new(crate::proto::Protocol::Tls, Timestamp(0));
        assert_eq!(span_name(&r), "TLS handshake");
        let mut h = http(None);
        h.resource = "".into();
        assert_eq!(span_name(&h), "GET");
    }

    #[test]
    fn sampling_is_deterministic_on_the_trace_id_and_keeps_errors_and_slow_calls() {
        let s = Sampler::new(0.1, true, 500);
        let mut ids = IdGen::new(3);
        let tx = http(None);
        let mut kept = 0;
        for _ in 0..20_000 {
            let id = ids.trace_id();
            let k = s.keep(&tx, &id);
            assert_eq!(k, s.keep(&tx, &id), "same id, same decision");
            kept += k as u32;
        }
        assert!((1700..2300).contains(&kept), "{kept} of 20000 at 10%");
        let none = Sampler::new(0.0, true, 500);
        assert!(!none.keep(&tx, &[0xff; 16]));
        let mut err = http(None);
        err.error = Some("500".into());
        assert!(none.keep(&err, &[0xff; 16]));
        let mut slow = http(None);
        slow.end = Timestamp(slow.start.as_nanos() + 600_000_000);
        assert!(none.keep(&slow, &[0xff; 16]));
        let all = Sampler::new(1.0, false, 0);
        assert!(all.keep(&tx, &[0xff; 16]));
    }

    #[test]
    fn link_ids_name_one_request_alike_at_both_ends_and_differ_between_requests() {
        let mut a = http(None);
        a.client = Endpoint {
            addr: "10.0.0.1".parse().unwrap(),
            port: 40000,
        };
        assert_eq!(link_ids(&a), None, "no SYN seen, no identity");
        a.origin = Some(0x1234_5678_0000_0000);
        // The server end saw the pod's address; the client end the Service's (DNAT).
        let mut b = a.clone();
        b.server.addr = "10.96.0.10".parse().unwrap();
        let (la, lb) = (link_ids(&a).unwrap(), link_ids(&b).unwrap());
        assert_eq!(la, lb);
        assert_ne!(la.client_span, la.server_span);
        let mut next = a.clone();
        next.origin = Some(0x1234_5678_0000_0001);
        let ln = link_ids(&next).unwrap();
        assert_ne!(ln.trace_id, la.trace_id);
        assert_ne!(ln.client_span, la.client_span);
        let mut other = a.clone();
        other.client.port = 40001;
        assert_ne!(link_ids(&other).unwrap().trace_id, la.trace_id);
    }
}
