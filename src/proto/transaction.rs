//! The `Transaction` record: one request paired with its response (or with a timeout,
//! reset or close), as produced by every application decoder.

use compact_str::CompactString;
use std::net::IpAddr;

use super::Protocol;
use crate::time::Timestamp;

/// An address and port as seen on the wire. Pod attribution adds names later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint {
            addr: IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED),
            port: 0,
        }
    }
}

/// Why a transaction is not a plain, fully observed request/response pair. A set of bits:
/// several reasons can apply at once. Users of other tools complain that such cases
/// silently turn into `unknown`; podtap keeps the reason on the record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Completeness(pub u16);

impl Completeness {
    pub const COMPLETE: Completeness = Completeness(0);
    /// The connection was picked up after it started (no handshake seen).
    pub const MIDSTREAM: u16 = 1 << 0;
    /// Bytes of this exchange are missing from the TCP stream.
    pub const GAP: u16 = 1 << 1;
    /// HTTP/2 header compression state unknown: headers could not be decoded.
    pub const HPACK_UNKNOWN: u16 = 1 << 2;
    /// The capture dropped packets on this queue while the exchange was open.
    pub const CAPTURE_DROPS: u16 = 1 << 3;
    /// No response arrived before the transaction timeout.
    pub const NO_RESPONSE: u16 = 1 << 4;
    /// The connection was reset while the exchange was open.
    pub const RESET: u16 = 1 << 5;
    /// The connection closed (FIN, idle expiry or shutdown) before the response.
    pub const CLOSED: u16 = 1 << 6;
    /// A response was seen without its request.
    pub const NO_REQUEST: u16 = 1 << 7;
    /// The decoder's bounded header buffer overflowed; some fields are missing.
    pub const TRUNCATED: u16 = 1 << 8;
    /// The worker's decoders reached their heap bound: this connection stopped being
    /// decoded with the exchange open.
    pub const MEMORY: u16 = 1 << 9;

    const NAMES: [(u16, &'static str); 10] = [
        (Self::MIDSTREAM, "midstream"),
        (Self::GAP, "gap"),
        (Self::HPACK_UNKNOWN, "hpack_unknown"),
        (Self::CAPTURE_DROPS, "capture_drops"),
        (Self::NO_RESPONSE, "no_response"),
        (Self::RESET, "reset"),
        (Self::CLOSED, "closed"),
        (Self::NO_REQUEST, "no_request"),
        (Self::TRUNCATED, "truncated"),
        (Self::MEMORY, "memory"),
    ];

    pub fn is_complete(self) -> bool {
        self.0 == 0
    }

    pub fn set(&mut self, bit: u16) {
        self.0 |= bit;
    }

    pub fn has(self, bit: u16) -> bool {
        self.0 & bit != 0
    }

    /// The reason names, in a fixed order (e.g. `["midstream", "gap"]`).
    pub fn reasons(self) -> impl Iterator<Item = &'static str> {
        Self::NAMES
            .into_iter()
            .filter(move |(b, _)| self.0 & b != 0)
            .map(|(_, n)| n)
    }
}

/// A distributed-trace context carried by the request (W3C traceparent, B3, Jaeger, sw8).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    pub sampled: Option<bool>,
    /// Which header it came from: `traceparent`, `b3`, `uber-trace-id`, `sw8`.
    pub format: &'static str,
    pub tracestate: Option<CompactString>,
}

/// A typed attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum AttrValue {
    Str(CompactString),
    Int(i64),
    Bool(bool),
}

/// One request and its outcome. Decoders fill everything but `client`/`server`, which the
/// worker sets from the flow.
#[derive(Clone, Debug, Default)]
pub struct Transaction {
    /// First request byte seen.
    pub start: Timestamp,
    /// Last response byte seen (or the time the transaction was given up on).
    pub end: Timestamp,
    pub protocol: Protocol,
    /// Method or command: `GET`, `QUERY`, `SELECT`, `SET`, `Produce`...
    pub operation: CompactString,
    /// What was operated on, cardinality-bounded: route template, qname, table, topic.
    pub resource: CompactString,
    /// Protocol status: HTTP status, DNS rcode, grpc-status, SQL error code...
    pub status: Option<i64>,
    /// `error.type` when the transaction failed (e.g. `500`, `NXDOMAIN`, `timeout`).
    pub error: Option<CompactString>,
    /// Request and response sizes in bytes as they crossed the wire (headers + bodies).
    pub req_bytes: u64,
    pub resp_bytes: u64,
    pub client: Endpoint,
    pub server: Endpoint,
    /// Observation point of the flow (interface index or mirror tag), as on its flow.
    pub obs: u32,
    /// Pod attribution of the flow (shared with its flow record).
    pub pods: Option<std::sync::Arc<crate::k8s::FlowPods>>,
    /// Boxed: most requests carry none, and every move of a transaction copies this field.
    pub trace: Option<Box<TraceContext>>,
    /// Which request of which connection this is, the same at every observation point:
    /// the client's initial sequence number (high 32 bits) and the transaction's index on
    /// the connection (low 32 bits). Only for TCP connections whose SYN was seen; it lets
    /// the client's and the server's observations of one request name each other's spans.
    pub origin: Option<u64>,
    pub completeness: Completeness,
    /// Further semantic-convention attributes (`url.path`, `dns.question.name`, ...).
    pub attrs: Vec<(&'static str, AttrValue)>,
}

impl Transaction {
    // Inlined so that a transaction can be built where it is kept; a decoder adding one
    // to its output does that with [`Transaction::push_new`].
    #[inline]
    pub fn new(protocol: Protocol, start: Timestamp) -> Self {
        // Decoders add about ten attributes: size once instead of growing four times.
        // Every field named: `..Default::default()` would build an empty `Vec` for `attrs`
        // and drop it again, on every transaction.
        Transaction {
            protocol,
            start,
            end: start,
            operation: CompactString::default(),
            resource: CompactString::default(),
            status: None,
            error: None,
            req_bytes: 0,
            resp_bytes: 0,
            client: Endpoint::default(),
            server: Endpoint::default(),
            obs: 0,
            pods: None,
            trace: None,
            origin: None,
            completeness: Completeness::default(),
            attrs: Vec::with_capacity(12),
        }
    }

    /// A new transaction added to `out`, built where it is kept.
    /// `out.push(Transaction::new(..))` builds it on the stack and copies it into `out` (a
    /// call to `memcpy` of the whole struct per transaction, measured with callgrind);
    /// writing it into `out`'s spare room lets the compiler fill it in place.
    #[inline(always)]
    pub fn push_new(
        out: &mut Vec<Transaction>,
        protocol: Protocol,
        start: Timestamp,
    ) -> &mut Transaction {
        let len = out.len();
        out.reserve(1);
        out.spare_capacity_mut()[0].write(Transaction::new(protocol, start));
        // SAFETY: `reserve` made room for the element at `len`, and it was just written.
        unsafe { out.set_len(len + 1) };
        &mut out[len]
    }

    pub fn duration_ns(&self) -> u64 {
        self.end.since(self.start)
    }

    #[inline]
    pub fn attr_str(&mut self, key: &'static str, v: impl Into<CompactString>) {
        self.attrs.push((key, AttrValue::Str(v.into())));
    }

    #[inline]
    pub fn attr_int(&mut self, key: &'static str, v: i64) {
        self.attrs.push((key, AttrValue::Int(v)));
    }

    #[inline]
    pub fn attr_bool(&mut self, key: &'static str, v: bool) {
        self.attrs.push((key, AttrValue::Bool(v)));
    }

    pub fn attr(&self, key: &str) -> Option<&AttrValue> {
        self.attrs.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushed transactions land after those already there, as built.
    #[test]
    fn transactions_are_pushed_in_order_as_built() {
        let mut out = vec![Transaction::new(Protocol::Http, Timestamp(1))];
        let t = Transaction::push_new(&mut out, Protocol::Redis, Timestamp(2));
        assert_eq!(
            (t.protocol, t.start, t.end),
            (Protocol::Redis, Timestamp(2), Timestamp(2))
        );
        assert!(t.attrs.is_empty());
        t.attr_int("e", 5);
        Transaction::push_new(&mut out, Protocol::Kafka, Timestamp(3));
        let order: Vec<_> = out.iter().map(|t| (t.protocol, t.start)).collect();
        assert_eq!(
            order,
            [
                (Protocol::Http, Timestamp(1)),
                (Protocol::Redis, Timestamp(2)),
                (Protocol::Kafka, Timestamp(3))
            ]
        );
        assert_eq!(out[1].attr("e"), Some(&AttrValue::Int(5)));
    }
}
