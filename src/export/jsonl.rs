//! JSON lines: one object per flow or transaction. Keys are OpenTelemetry attribute names
//! where one exists (`client.address`, `network.transport`, `http.request.method`, ...)
//! and podtap's own under `podtap.`; see docs/SCHEMA.md. Written by hand, in a fixed key
//! order, so lines are stable and diffable (golden tests depend on it).

use std::io::{self, Write};
use std::net::IpAddr;

use super::json::{
    push_escaped, push_escaped_between, push_hex, push_i64, push_ip, push_string, push_u64,
};
use crate::flow::FlowRecord;
use crate::k8s::{FlowPods, Peer};
use crate::proto::{AttrValue, Direction, Transaction};
use crate::time::{Rfc3339Cache, Timestamp};

/// `,"name":` for a key podtap defines, built at compile time: a key is one copy of a
/// constant. Only for names that need no escaping (checked in debug builds and by the
/// golden tests, which parse every line).
macro_rules! k {
    ($name:literal) => {
        concat!(",\"", $name, "\":")
    };
}

/// JSON lines for a writer thread: records are appended to one buffer, which the caller
/// hands to its output in large writes (`write_to` once `len()` reaches [`FLUSH_AT`], and
/// whenever it wants the lines out). Nothing is allocated per record once the buffer has
/// grown to its working size.
pub struct JsonLines {
    buf: Vec<u8>,
    clock: Rfc3339Cache,
    keys: CleanKeys,
}

/// Buffered bytes at which a writer should hand them to its output: large enough that
/// the write costs little per record, small enough to stay in the caches.
pub const FLUSH_AT: usize = 64 * 1024;

impl Default for JsonLines {
    fn default() -> Self {
        JsonLines {
            // Room for the last record that crosses `FLUSH_AT`.
            buf: Vec::with_capacity(FLUSH_AT + 16 * 1024),
            clock: Rfc3339Cache::default(),
            keys: CleanKeys::default(),
        }
    }
}

impl JsonLines {
    /// Appends `r` as one JSON line with its newline; false, with nothing written, for a
    /// flow record when flows are not wanted.
    pub fn push(&mut self, r: &super::Record, flows: bool) -> bool {
        match r {
            super::Record::Flow(f) if flows => write_flow(&mut self.obj(), f),
            super::Record::Flow(_) => return false,
            super::Record::Transaction(t) => write_transaction(&mut self.obj(), t),
            super::Record::Anomaly(e) => write_anomaly(&mut self.obj(), e),
        }
        self.buf.push(b'\n');
        true
    }

    fn obj(&mut self) -> Obj<'_> {
        Obj {
            out: &mut self.buf,
            clock: &mut self.clock,
            keys: &mut self.keys,
        }
    }

    /// Buffered bytes: whole lines.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Hands the buffered lines to `out` and empties the buffer (also when the write fails:
    /// a full disk or a closed pipe loses these lines, not the next ones). On failure the
    /// error comes back with the number of lines that did not get out whole.
    pub fn write_to(&mut self, out: &mut (impl Write + ?Sized)) -> Result<(), WriteFailed> {
        let mut pos = 0;
        let r = loop {
            if pos == self.buf.len() {
                break Ok(());
            }
            match out.write(&self.buf[pos..]) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        let r = r.map_err(|error| WriteFailed {
            // The line cut at `pos` ends in this range too: it did not get out whole.
            lines: memchr::memchr_iter(b'\n', &self.buf[pos..]).count() as u64,
            error,
        });
        self.buf.clear();
        // A record far larger than usual grew the buffer: give the memory back.
        if self.buf.capacity() > 16 * FLUSH_AT {
            self.buf.shrink_to(FLUSH_AT + 16 * 1024);
        }
        r
    }
}

/// Lines that could not be written, and why.
#[derive(Debug, thiserror::Error)]
#[error("{lines} records not written: {error}")]
pub struct WriteFailed {
    pub lines: u64,
    #[source]
    pub error: io::Error,
}

/// Static keys known to need no escaping, by address and length: a `&'static str` never
/// changes or goes away, so one that scanned clean once is clean for the rest of the run.
/// Decoders use a few dozen keys; a slot taken by another key only costs a rescan.
struct CleanKeys([(usize, usize); 64]);

impl Default for CleanKeys {
    fn default() -> Self {
        // Address 0 is no string's: every slot starts empty.
        CleanKeys([(0, 0); 64])
    }
}

impl CleanKeys {
    #[inline(always)]
    fn slot(&self, k: &'static str) -> usize {
        // The top six bits of a multiplicative hash of the address.
        ((k.as_ptr() as usize as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 58) as usize
    }
}

/// One JSON object being appended, key by key. Every object starts with the
/// `podtap.record` key, so every later key is written with its leading comma.
struct Obj<'a> {
    out: &'a mut Vec<u8>,
    clock: &'a mut Rfc3339Cache,
    keys: &'a mut CleanKeys,
}

impl Obj<'_> {
    /// A key from [`k!`]: `,"name":`.
    #[inline(always)]
    fn key(&mut self, k: &'static str) {
        debug_assert!(
            k.starts_with(",\"")
                && k.ends_with("\":")
                && !k[2..k.len() - 2]
                    .bytes()
                    .any(|b| b < 0x20 || b == b'"' || b == b'\\'),
            "{k}"
        );
        self.out.extend_from_slice(k.as_bytes());
    }

    /// A key known only at run time (decoder attributes, pod labels), under a prefix.
    #[inline]
    fn dyn_key(&mut self, prefix: &str, k: &str) {
        if prefix.is_empty() {
            push_escaped_between(self.out, b",\"", k, b"\":");
        } else {
            push_escaped_between(self.out, b",\"", prefix, b"");
            push_escaped_between(self.out, b"", k, b"\":");
        }
    }

    /// A decoder's attribute key: a `&'static str`, scanned for escapes the first time it
    /// is seen (or after its slot was taken by another key), then copied as it is.
    #[inline]
    fn static_key(&mut self, k: &'static str) {
        let slot = self.keys.slot(k);
        if self.keys.0[slot] == (k.as_ptr() as usize, k.len()) {
            self.out.extend_from_slice(b",\"");
            self.out.extend_from_slice(k.as_bytes());
            self.out.extend_from_slice(b"\":");
        } else {
            let start = self.out.len();
            push_escaped_between(self.out, b",\"", k, b"\":");
            if self.out.len() - start == k.len() + 4 {
                self.keys.0[slot] = (k.as_ptr() as usize, k.len());
            }
        }
    }

    #[inline(always)]
    fn str(&mut self, k: &'static str, v: &str) -> &mut Self {
        self.key(k);
        push_string(self.out, v);
        self
    }

    #[inline(always)]
    fn u64(&mut self, k: &'static str, v: u64) -> &mut Self {
        self.key(k);
        push_u64(self.out, v);
        self
    }

    #[inline(always)]
    fn bool(&mut self, k: &'static str, v: bool) -> &mut Self {
        self.key(k);
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        self
    }

    #[inline(always)]
    fn ip(&mut self, k: &'static str, a: IpAddr) -> &mut Self {
        self.key(k);
        self.out.push(b'"');
        push_ip(self.out, a);
        self.out.push(b'"');
        self
    }

    #[inline(always)]
    fn time(&mut self, k: &'static str, t: Timestamp) -> &mut Self {
        self.key(k);
        let mut quoted = [b'"'; Rfc3339Cache::LEN + 2];
        quoted[1..=Rfc3339Cache::LEN].copy_from_slice(&self.clock.format(t));
        self.out.extend_from_slice(&quoted);
        self
    }

    /// An attribute: its key under a prefix, its value by type.
    fn attr(&mut self, prefix: &str, k: &str, v: &AttrValue) -> &mut Self {
        self.dyn_key(prefix, k);
        self.value(v)
    }

    /// A decoder's attribute (see [`Obj::static_key`]).
    fn static_attr(&mut self, k: &'static str, v: &AttrValue) -> &mut Self {
        self.static_key(k);
        self.value(v)
    }

    #[inline(always)]
    fn value(&mut self, v: &AttrValue) -> &mut Self {
        match v {
            AttrValue::Str(s) => push_string(self.out, s),
            AttrValue::Int(i) => push_i64(self.out, *i),
            AttrValue::Bool(b) => self
                .out
                .extend_from_slice(if *b { b"true" } else { b"false" }),
        }
        self
    }

    /// A string attribute under a prefix.
    fn attr_str(&mut self, prefix: &str, k: &str, v: &str) -> &mut Self {
        self.dyn_key(prefix, k);
        push_string(self.out, v);
        self
    }

    fn field(&mut self, prefix: &str, k: &str, v: Field<'_>) {
        match v {
            Field::Attr(v) => self.attr(prefix, k, v),
            Field::Str(v) => self.attr_str(prefix, k, v),
            Field::Int(i) => self.attr(prefix, k, &AttrValue::Int(i)),
            Field::Ip(a) => {
                self.dyn_key(prefix, k);
                self.out.push(b'"');
                push_ip(self.out, a);
                self.out.push(b'"');
                self
            }
        };
    }

    fn end(&mut self) {
        self.out.push(b'}');
    }
}

/// `podtap.flow.{client,server}.*` keys, by direction (client first).
const FLOW_DIR_KEYS: [[&str; 3]; 2] = [
    [
        k!("podtap.flow.client.packets"),
        k!("podtap.flow.client.bytes"),
        k!("podtap.flow.client.payload_bytes"),
    ],
    [
        k!("podtap.flow.server.packets"),
        k!("podtap.flow.server.bytes"),
        k!("podtap.flow.server.payload_bytes"),
    ],
];
const FLOW_SRTT_KEYS: [&str; 2] = [
    k!("podtap.flow.client.srtt_ns"),
    k!("podtap.flow.server.srtt_ns"),
];
const FLOW_TCP_KEYS: [[&str; 5]; 2] = [
    [
        k!("podtap.flow.client.retransmits"),
        k!("podtap.flow.client.out_of_order"),
        k!("podtap.flow.client.zero_windows"),
        k!("podtap.flow.client.reassembled_bytes"),
        k!("podtap.flow.client.gap_bytes"),
    ],
    [
        k!("podtap.flow.server.retransmits"),
        k!("podtap.flow.server.out_of_order"),
        k!("podtap.flow.server.zero_windows"),
        k!("podtap.flow.server.reassembled_bytes"),
        k!("podtap.flow.server.gap_bytes"),
    ],
];

/// One flow as a JSON object (without the newline).
fn write_flow(o: &mut Obj<'_>, f: &FlowRecord) {
    o.out.extend_from_slice(br#"{"podtap.record":"flow""#);
    o.str(k!("network.type"), f.network_type())
        .str(k!("network.transport"), f.transport())
        .ip(k!("client.address"), f.client.addr)
        .u64(k!("client.port"), f.client.port as u64)
        .ip(k!("server.address"), f.server.addr)
        .u64(k!("server.port"), f.server.port as u64)
        .u64(k!("podtap.observation_point"), f.obs as u64);
    if f.vlan != 0 {
        o.u64(k!("podtap.vlan.id"), f.vlan as u64);
    }
    if f.tunnel.kind != crate::packet::TunnelKind::None {
        o.str(k!("podtap.tunnel.type"), f.tunnel.kind.as_str())
            .u64(k!("podtap.tunnel.id"), f.tunnel.id as u64);
    }
    if f.protocol != crate::proto::Protocol::Unknown {
        o.str(k!("podtap.protocol"), f.protocol.as_str());
    }
    o.time(k!("podtap.flow.start"), f.first)
        .time(k!("podtap.flow.end"), f.last)
        .u64(k!("podtap.flow.duration_ns"), f.last.since(f.first))
        .str(k!("podtap.flow.end_reason"), f.reason.as_str());
    for (keys, d) in FLOW_DIR_KEYS
        .iter()
        .zip([Direction::ToServer, Direction::ToClient])
    {
        let c = &f.dirs[d.index()];
        o.u64(keys[0], c.packets)
            .u64(keys[1], c.bytes)
            .u64(keys[2], c.payload_bytes);
    }
    if let Some(t) = &f.tcp {
        o.bool(k!("podtap.flow.midstream"), t.midstream);
        if let (Some(s), Some(c)) = (t.server_rtt_ns, t.client_rtt_ns) {
            o.u64(k!("podtap.flow.handshake_rtt_ns"), s + c)
                .u64(k!("podtap.flow.server_rtt_ns"), s)
                .u64(k!("podtap.flow.client_rtt_ns"), c);
        } else if let Some(s) = t.server_rtt_ns {
            o.u64(k!("podtap.flow.server_rtt_ns"), s);
        }
        for (key, srtt) in FLOW_SRTT_KEYS.into_iter().zip(t.srtt_ns) {
            if let Some(v) = srtt {
                o.u64(key, v);
            }
        }
        let sum = |g: fn(&crate::flow::TcpDirStats) -> u64| g(&t.stats[0]) + g(&t.stats[1]);
        o.u64(k!("podtap.flow.retransmits"), sum(|s| s.retransmits))
            .u64(k!("podtap.flow.out_of_order"), sum(|s| s.out_of_order))
            .u64(k!("podtap.flow.resets"), sum(|s| s.resets))
            .u64(k!("podtap.flow.zero_windows"), sum(|s| s.zero_windows));
        match (t.stats[0].resets > 0, t.stats[1].resets > 0) {
            (true, true) => o.str(k!("podtap.flow.reset_by"), "both"),
            (true, false) => o.str(k!("podtap.flow.reset_by"), "client"),
            (false, true) => o.str(k!("podtap.flow.reset_by"), "server"),
            _ => o,
        };
        for (d, keys) in FLOW_TCP_KEYS.iter().enumerate() {
            let s = &t.stats[d];
            o.u64(keys[0], s.retransmits)
                .u64(keys[1], s.out_of_order)
                .u64(keys[2], s.zero_windows)
                .u64(keys[3], t.reassembled[d])
                .u64(keys[4], t.gap_bytes[d]);
        }
    }
    if let Some(t) = &f.tls {
        if let Some(sni) = &t.server_name {
            o.str(k!("tls.client.server_name"), sni);
        }
        o.u64(
            k!("podtap.tls.client.encrypted_bytes"),
            t.encrypted_bytes[0],
        )
        .u64(
            k!("podtap.tls.server.encrypted_bytes"),
            t.encrypted_bytes[1],
        );
    }
    if let Some(p) = &f.pods {
        write_pods(o, p);
    }
    o.end();
}

/// One anomaly event as a JSON object (without the newline): its time, then the fields
/// its OTLP log record carries as attributes ([`crate::anomaly::engine::Event::visit`]).
fn write_anomaly(o: &mut Obj<'_>, e: &crate::anomaly::engine::Event) {
    o.out.extend_from_slice(br#"{"podtap.record":"event""#);
    o.time(k!("podtap.time"), e.signal.ts);
    e.visit(|prefix, k, v| o.field(prefix, k, v));
    o.end();
}

/// One transaction as a JSON object (without the newline).
fn write_transaction(o: &mut Obj<'_>, t: &Transaction) {
    o.out
        .extend_from_slice(br#"{"podtap.record":"transaction""#);
    // A decoder that names the server (HTTP Host, `:authority`) sets `server.address`, as
    // spans carry it; the wire address then moves to `podtap.server.ip` (one key, once).
    let named = t.attrs.iter().any(|(k, _)| *k == "server.address");
    o.str(k!("podtap.protocol"), t.protocol.as_str())
        .ip(k!("client.address"), t.client.addr)
        .u64(k!("client.port"), t.client.port as u64)
        .ip(
            if named {
                k!("podtap.server.ip")
            } else {
                k!("server.address")
            },
            t.server.addr,
        )
        .u64(k!("server.port"), t.server.port as u64)
        .u64(k!("podtap.observation_point"), t.obs as u64)
        .time(k!("podtap.start"), t.start)
        .time(k!("podtap.end"), t.end)
        .u64(k!("podtap.duration_ns"), t.duration_ns())
        .str(k!("podtap.operation"), &t.operation)
        .str(k!("podtap.resource"), &t.resource);
    if let Some(s) = t.status {
        o.key(k!("podtap.status"));
        push_i64(o.out, s);
    }
    if let Some(e) = &t.error {
        o.str(k!("error.type"), e);
    }
    o.u64(k!("podtap.request.bytes"), t.req_bytes)
        .u64(k!("podtap.response.bytes"), t.resp_bytes);
    o.bool(k!("podtap.complete"), t.completeness.is_complete());
    if !t.completeness.is_complete() {
        o.key(k!("podtap.incomplete_reason"));
        o.out.push(b'"');
        for (i, r) in t.completeness.reasons().enumerate() {
            if i > 0 {
                o.out.push(b',');
            }
            push_escaped(o.out, r);
        }
        o.out.push(b'"');
    }
    if let Some(tc) = &t.trace {
        o.str(k!("podtap.trace.format"), tc.format);
        o.key(k!("podtap.trace.id"));
        o.out.push(b'"');
        push_hex(o.out, &tc.trace_id);
        o.out.push(b'"');
        o.key(k!("podtap.trace.parent_span_id"));
        o.out.push(b'"');
        push_hex(o.out, &tc.parent_span_id);
        o.out.push(b'"');
    }
    for (k, v) in &t.attrs {
        o.static_attr(k, v);
    }
    if let Some(p) = &t.pods {
        write_pods(o, p);
    }
    o.end();
}

/// One attribute value, as [`visit_pods`] (and the anomaly events) hand them out to the
/// JSON lines and the OTLP log records alike.
pub enum Field<'a> {
    Attr(&'a AttrValue),
    Str(&'a str),
    Int(i64),
    Ip(IpAddr),
}

/// Pod attribution as (prefix, key, value): each end under its side's prefix
/// (`client.k8s.pod.name`, `server.k8s.service.name`, `client.podtap.kind`), and where the
/// flow was observed. The one mapping the JSON lines and the OTLP log records share.
pub fn visit_pods(p: &FlowPods, mut f: impl FnMut(&str, &str, Field<'_>)) {
    for ((side, peer), process) in [("client.", &p.client), ("server.", &p.server)]
        .into_iter()
        .zip(&p.process)
    {
        if let Some(kind) = peer.kind() {
            f(side, "podtap.kind", Field::Str(kind));
        }
        match peer {
            Peer::Pod(m) => {
                for (k, v) in &m.attrs {
                    f(side, k, Field::Attr(v));
                }
                // The process holding the flow's socket at this end.
                if let Some(pr) = process {
                    f(
                        side,
                        "process.pid",
                        Field::Attr(&AttrValue::Int(pr.pid as i64)),
                    );
                    f(side, "process.executable.name", Field::Str(&pr.comm));
                    if let Some(c) = &pr.container_id {
                        f(side, "container.id", Field::Str(c));
                    }
                }
            }
            Peer::Service(s) => {
                f(side, "k8s.service.name", Field::Str(&s.name));
                f(side, "k8s.namespace.name", Field::Str(&s.namespace));
            }
            Peer::Node => {
                if let Some(n) = &p.node_name {
                    f(side, "k8s.node.name", Field::Str(n));
                }
            }
            Peer::External | Peer::Unknown => {}
        }
    }
    f(
        "",
        "podtap.observation_point.side",
        Field::Str(p.observation_side()),
    );
    if let (None, Some(m)) = (p.observed_side(), &p.obs) {
        for (k, v) in &m.attrs {
            f("podtap.observation_point.", k, Field::Attr(v));
        }
    }
}

/// Pod attribution into a JSON object (see [`visit_pods`]).
fn write_pods(o: &mut Obj<'_>, p: &FlowPods) {
    visit_pods(p, |prefix, k, v| o.field(prefix, k, v));
}

#[cfg(test)]
mod tests;
