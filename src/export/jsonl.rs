//! JSON lines: one object per flow or transaction. Keys are OpenTelemetry attribute names
//! where one exists (`client.address`, `network.transport`, `http.request.method`, ...)
//! and podtap's own under `podtap.`; see docs/SCHEMA.md. Written by hand, in a fixed key
//! order, so lines are stable and diffable (golden tests depend on it).

use std::fmt::Write;

use crate::flow::FlowRecord;
use crate::k8s::{FlowPods, Peer};
use crate::proto::{AttrValue, Direction, Transaction};

/// Appends one JSON object to a string, key by key.
pub struct JsonObject<'a> {
    out: &'a mut String,
    first: bool,
}

impl<'a> JsonObject<'a> {
    pub fn new(out: &'a mut String) -> Self {
        out.push('{');
        JsonObject { out, first: true }
    }

    fn key(&mut self, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        string(self.out, k);
        self.out.push(':');
    }

    /// A key made of two parts (`client.` + `k8s.pod.name`), written without
    /// building the joined string.
    fn key2(&mut self, prefix: &str, k: &str) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        self.out.push('"');
        escape(self.out, prefix);
        escape(self.out, k);
        self.out.push_str("\":");
    }

    /// An attribute under a prefix.
    pub fn attr(&mut self, prefix: &str, k: &str, v: &AttrValue) -> &mut Self {
        self.key2(prefix, k);
        match v {
            AttrValue::Str(s) => string(self.out, s),
            AttrValue::Int(i) => {
                let _ = write!(self.out, "{i}");
            }
            AttrValue::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
        }
        self
    }

    /// A string under `prefix` + `k`, without making an [`AttrValue`] of it.
    pub fn attr_str(&mut self, prefix: &str, k: &str, v: &str) -> &mut Self {
        self.key2(prefix, k);
        string(self.out, v);
        self
    }

    pub fn str(&mut self, k: &str, v: &str) -> &mut Self {
        self.key(k);
        string(self.out, v);
        self
    }

    pub fn display(&mut self, k: &str, v: impl std::fmt::Display) -> &mut Self {
        self.key(k);
        self.out.push('"');
        let start = self.out.len();
        let _ = write!(self.out, "{v}");
        // Displayed values (addresses, timestamps) never need escaping; check anyway.
        if self.out[start..]
            .bytes()
            .any(|b| b == b'"' || b == b'\\' || b < 0x20)
        {
            let raw = self.out.split_off(start);
            self.out.pop();
            string(self.out, &raw);
        } else {
            self.out.push('"');
        }
        self
    }

    pub fn u64(&mut self, k: &str, v: u64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    pub fn i64(&mut self, k: &str, v: i64) -> &mut Self {
        self.key(k);
        let _ = write!(self.out, "{v}");
        self
    }

    pub fn bool(&mut self, k: &str, v: bool) -> &mut Self {
        self.key(k);
        self.out.push_str(if v { "true" } else { "false" });
        self
    }

    pub fn end(&mut self) {
        self.out.push('}');
    }
}

/// A JSON string literal with escapes.
pub fn string(out: &mut String, s: &str) {
    out.push('"');
    escape(out, s);
    out.push('"');
}

/// The inside of a JSON string literal.
fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// `r` as one JSON line with its newline in `line` (cleared first); false, with `line`
/// empty, for a flow record when flows are not wanted.
pub fn write_record(line: &mut String, r: &super::Record, flows: bool) -> bool {
    line.clear();
    match r {
        super::Record::Flow(f) if flows => write_flow(line, f),
        super::Record::Flow(_) => return false,
        super::Record::Transaction(t) => write_transaction(line, t),
    }
    line.push('\n');
    true
}

/// One flow as a JSON line (without the newline).
pub fn write_flow(out: &mut String, f: &FlowRecord) {
    let mut o = JsonObject::new(out);
    o.str("podtap.record", "flow")
        .str("network.type", f.network_type())
        .str("network.transport", f.transport())
        .display("client.address", f.client.addr)
        .u64("client.port", f.client.port as u64)
        .display("server.address", f.server.addr)
        .u64("server.port", f.server.port as u64)
        .u64("podtap.observation_point", f.obs as u64);
    if f.vlan != 0 {
        o.u64("podtap.vlan.id", f.vlan as u64);
    }
    if f.tunnel.kind != crate::packet::TunnelKind::None {
        o.str("podtap.tunnel.type", f.tunnel.kind.as_str())
            .u64("podtap.tunnel.id", f.tunnel.id as u64);
    }
    if f.protocol != crate::proto::Protocol::Unknown {
        o.str("podtap.protocol", f.protocol.as_str());
    }
    o.display("podtap.flow.start", f.first.rfc3339())
        .display("podtap.flow.end", f.last.rfc3339())
        .u64("podtap.flow.duration_ns", f.last.since(f.first))
        .str("podtap.flow.end_reason", f.reason.as_str());
    for (side, d) in [
        ("client", Direction::ToServer),
        ("server", Direction::ToClient),
    ] {
        let c = &f.dirs[d.index()];
        o.u64(&format!("podtap.flow.{side}.packets"), c.packets)
            .u64(&format!("podtap.flow.{side}.bytes"), c.bytes)
            .u64(
                &format!("podtap.flow.{side}.payload_bytes"),
                c.payload_bytes,
            );
    }
    if let Some(t) = &f.tcp {
        o.bool("podtap.flow.midstream", t.midstream);
        if let (Some(s), Some(c)) = (t.server_rtt_ns, t.client_rtt_ns) {
            o.u64("podtap.flow.handshake_rtt_ns", s + c)
                .u64("podtap.flow.server_rtt_ns", s)
                .u64("podtap.flow.client_rtt_ns", c);
        } else if let Some(s) = t.server_rtt_ns {
            o.u64("podtap.flow.server_rtt_ns", s);
        }
        for (side, srtt) in ["client", "server"].into_iter().zip(t.srtt_ns) {
            if let Some(v) = srtt {
                o.u64(&format!("podtap.flow.{side}.srtt_ns"), v);
            }
        }
        let sum = |g: fn(&crate::flow::TcpDirStats) -> u64| g(&t.stats[0]) + g(&t.stats[1]);
        o.u64("podtap.flow.retransmits", sum(|s| s.retransmits))
            .u64("podtap.flow.out_of_order", sum(|s| s.out_of_order))
            .u64("podtap.flow.resets", sum(|s| s.resets))
            .u64("podtap.flow.zero_windows", sum(|s| s.zero_windows));
        match (t.stats[0].resets > 0, t.stats[1].resets > 0) {
            (true, true) => o.str("podtap.flow.reset_by", "both"),
            (true, false) => o.str("podtap.flow.reset_by", "client"),
            (false, true) => o.str("podtap.flow.reset_by", "server"),
            _ => &mut o,
        };
        for (side, d) in [("client", 0usize), ("server", 1usize)] {
            let s = &t.stats[d];
            o.u64(&format!("podtap.flow.{side}.retransmits"), s.retransmits)
                .u64(&format!("podtap.flow.{side}.out_of_order"), s.out_of_order)
                .u64(&format!("podtap.flow.{side}.zero_windows"), s.zero_windows)
                .u64(
                    &format!("podtap.flow.{side}.reassembled_bytes"),
                    t.reassembled[d],
                )
                .u64(&format!("podtap.flow.{side}.gap_bytes"), t.gap_bytes[d]);
        }
    }
    if let Some(t) = &f.tls {
        if let Some(sni) = &t.server_name {
            o.str("tls.client.server_name", sni);
        }
        o.u64("podtap.tls.client.encrypted_bytes", t.encrypted_bytes[0])
            .u64("podtap.tls.server.encrypted_bytes", t.encrypted_bytes[1]);
    }
    if let Some(p) = &f.pods {
        write_pods(&mut o, p);
    }
    o.end();
}

/// One transaction as a JSON line (without the newline).
pub fn write_transaction(out: &mut String, t: &Transaction) {
    let mut o = JsonObject::new(out);
    // A decoder that names the server (HTTP Host, `:authority`) sets `server.address`, as
    // spans carry it; the wire address then moves to `podtap.server.ip` (one key, once).
    let named = t.attrs.iter().any(|(k, _)| *k == "server.address");
    o.str("podtap.record", "transaction")
        .str("podtap.protocol", t.protocol.as_str())
        .display("client.address", t.client.addr)
        .u64("client.port", t.client.port as u64)
        .display(
            if named {
                "podtap.server.ip"
            } else {
                "server.address"
            },
            t.server.addr,
        )
        .u64("server.port", t.server.port as u64)
        .u64("podtap.observation_point", t.obs as u64)
        .display("podtap.start", t.start.rfc3339())
        .display("podtap.end", t.end.rfc3339())
        .u64("podtap.duration_ns", t.duration_ns())
        .str("podtap.operation", &t.operation)
        .str("podtap.resource", &t.resource);
    if let Some(s) = t.status {
        o.i64("podtap.status", s);
    }
    if let Some(e) = &t.error {
        o.str("error.type", e);
    }
    o.u64("podtap.request.bytes", t.req_bytes)
        .u64("podtap.response.bytes", t.resp_bytes);
    o.bool("podtap.complete", t.completeness.is_complete());
    if !t.completeness.is_complete() {
        let reasons: Vec<&str> = t.completeness.reasons().collect();
        o.str("podtap.incomplete_reason", &reasons.join(","));
    }
    if let Some(tc) = &t.trace {
        o.str("podtap.trace.format", tc.format)
            .str("podtap.trace.id", &hex(&tc.trace_id))
            .str("podtap.trace.parent_span_id", &hex(&tc.parent_span_id));
    }
    for (k, v) in &t.attrs {
        match v {
            AttrValue::Str(s) => o.str(k, s),
            AttrValue::Int(i) => o.i64(k, *i),
            AttrValue::Bool(b) => o.bool(k, *b),
        };
    }
    if let Some(p) = &t.pods {
        write_pods(&mut o, p);
    }
    o.end();
}

/// Pod attribution: each end under its side's prefix (`client.k8s.pod.name`,
/// `server.k8s.service.name`, `client.podtap.kind`), and where the flow was observed.
fn write_pods(o: &mut JsonObject<'_>, p: &FlowPods) {
    for ((side, peer), process) in [("client.", &p.client), ("server.", &p.server)]
        .into_iter()
        .zip(&p.process)
    {
        if let Some(kind) = peer.kind() {
            o.attr(side, "podtap.kind", &AttrValue::Str(kind.into()));
        }
        match peer {
            Peer::Pod(m) => {
                for (k, v) in &m.attrs {
                    o.attr(side, k, v);
                }
                // The process holding the flow's socket at this end.
                if let Some(pr) = process {
                    o.attr(side, "process.pid", &AttrValue::Int(pr.pid as i64))
                        .attr_str(side, "process.executable.name", &pr.comm);
                    if let Some(c) = &pr.container_id {
                        o.attr_str(side, "container.id", c);
                    }
                }
            }
            Peer::Service(s) => {
                o.attr(side, "k8s.service.name", &AttrValue::Str(s.name.clone()))
                    .attr(
                        side,
                        "k8s.namespace.name",
                        &AttrValue::Str(s.namespace.clone()),
                    );
            }
            Peer::Node => {
                if let Some(n) = &p.node_name {
                    o.attr(side, "k8s.node.name", &AttrValue::Str(n.clone()));
                }
            }
            Peer::External | Peer::Unknown => {}
        }
    }
    o.str("podtap.observation_point.side", p.observation_side());
    if let (None, Some(m)) = (p.observed_side(), &p.obs) {
        for (k, v) in &m.attrs {
            o.attr("podtap.observation_point.", k, v);
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_strings() {
        let mut s = String::new();
        string(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn object_is_valid_json() {
        let mut s = String::new();
        JsonObject::new(&mut s)
            .str("a", "x")
            .u64("b", 3)
            .bool("c", true)
            .display("d", "q\"")
            .i64("e", -1)
            .end();
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["d"], "q\"");
        assert_eq!(v["e"], -1);
    }
}
