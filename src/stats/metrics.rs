//! The metrics podtap reports: names, units and descriptions.
//!
//! Names follow the OpenTelemetry semantic conventions v1.37.0 where one exists
//! (`http.server.request.duration`, `rpc.server.call.duration`, `db.client.operation.duration`,
//! `dns.lookup.duration`); network and podtap's own metrics live under `podtap.`.
//! Prometheus names are derived from these the way the OpenTelemetry→Prometheus
//! compatibility spec does (see [`prometheus_name`]).

/// Semantic-conventions version the names and attributes follow (also sent as the schema URL).
pub const SEMCONV_VERSION: &str = "1.37.0";
pub const SCHEMA_URL: &str = "https://opentelemetry.io/schemas/1.37.0";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A histogram of durations in seconds.
    Histogram,
    /// A monotonic sum.
    Counter,
    /// A last value (probe results): a newer value replaces the older one.
    Gauge,
}

pub struct MetricDef {
    pub name: &'static str,
    pub unit: &'static str,
    pub description: &'static str,
    pub kind: Kind,
}

macro_rules! metrics {
    ($( $variant:ident => $name:literal, $unit:literal, $kind:ident, $desc:literal; )*) => {
        /// One metric podtap reports.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Metric { $( $variant, )* }

        impl Metric {
            pub const ALL: &'static [Metric] = &[ $( Metric::$variant, )* ];
            pub const COUNT: usize = Metric::ALL.len();

            pub fn def(self) -> &'static MetricDef {
                const DEFS: &[MetricDef] = &[ $( MetricDef {
                    name: $name, unit: $unit, description: $desc, kind: Kind::$kind,
                }, )* ];
                &DEFS[self as usize]
            }
        }
    };
}

metrics! {
    HttpServerDuration => "http.server.request.duration", "s", Histogram, "Duration of HTTP server requests, observed on the wire";
    HttpClientDuration => "http.client.request.duration", "s", Histogram, "Duration of HTTP client requests, observed on the wire";
    RpcServerDuration => "rpc.server.call.duration", "s", Histogram, "Duration of RPC server calls, observed on the wire";
    RpcClientDuration => "rpc.client.call.duration", "s", Histogram, "Duration of RPC client calls, observed on the wire";
    DbClientDuration => "db.client.operation.duration", "s", Histogram, "Duration of database client operations, observed on the wire";
    DnsLookupDuration => "dns.lookup.duration", "s", Histogram, "Duration of DNS queries until their response, observed on the wire";
    TcpHandshake => "podtap.tcp.handshake.duration", "s", Histogram, "TCP handshake round-trip time (SYN to the client's ACK) at the observation point";
    TcpRtt => "podtap.tcp.rtt", "s", Histogram, "Smoothed RTT of each connection's data per sending direction: from the observation point to the receiver and back with its ACK";
    FlowIo => "podtap.flow.io", "By", Counter, "Bytes on the wire per flow edge and direction";
    FlowPackets => "podtap.flow.packets", "{packet}", Counter, "Packets per flow edge and direction";
    TcpRetransmissions => "podtap.tcp.retransmissions", "{segment}", Counter, "TCP segments retransmitted, per flow edge and sending direction";
    TcpResets => "podtap.tcp.resets", "{segment}", Counter, "TCP resets sent, per flow edge and sending direction";
    TcpZeroWindows => "podtap.tcp.zero_windows", "{event}", Counter, "Times a TCP receive window dropped to zero, per flow edge and advertising direction";
    TcpOpened => "podtap.tcp.connections.opened", "{connection}", Counter, "TCP connections whose handshake was seen";
    TcpClosed => "podtap.tcp.connections.closed", "{connection}", Counter, "TCP connections reported closed, by end reason";
    CapturePackets => "podtap.capture.packets", "{packet}", Counter, "Frames a worker's capture ring handed to podtap";
    CaptureBytes => "podtap.capture.bytes", "By", Counter, "Wire bytes of the frames a worker's capture ring handed to podtap";
    CaptureDrops => "podtap.capture.drops", "{packet}", Counter, "Packets lost before podtap saw them, per worker and reason (kernel: the socket's drop count; ring_full: frames the ring had no room for)";
    InterfacePackets => "podtap.interface.packets", "{packet}", Counter, "Frames captured per attached interface";
    InterfaceBytes => "podtap.interface.bytes", "By", Counter, "Wire bytes of the frames captured per attached interface";
    Events => "podtap.events", "{event}", Counter, "podtap drop and error events (capture drops, malformed input, bounds reached), by event";
    MessagingClientDuration => "messaging.client.operation.duration", "s", Histogram, "Duration of messaging client operations (produce, fetch, commit, ...), observed on the wire";
    MessagingSentMessages => "messaging.client.sent.messages", "{message}", Counter, "Messages producers sent to the broker, counted on the wire";
    Anomalies => "podtap.anomalies", "{event}", Counter, "Anomaly events emitted, by kind (podtap.anomaly.kind)";
    AnomaliesSuppressed => "podtap.anomalies.suppressed", "{event}", Counter, "Anomaly events not emitted, by kind and reason (rate_limited per pod and kind; queue_full, kind unknown)";
    MessagingConsumedMessages => "messaging.client.consumed.messages", "{message}", Counter, "Messages the broker delivered to consumers, counted on the wire";
    ProbeDuration => "podtap.probe.duration", "s", Histogram, "Duration of each health probe attempt (peers, API server, URLs, pods), failed ones included";
    ProbeErrors => "podtap.probe.errors", "{error}", Counter, "Failed health probe attempts, by target and error type";
    ProbeUp => "podtap.probe.up", "1", Gauge, "Whether a probe target is up (1) or down (0): down after its failure threshold of consecutive failures";
    ProbeConsecutiveFailures => "podtap.probe.consecutive_failures", "{failure}", Gauge, "Failed attempts of a probe target since its last success";
}

/// The Prometheus name of an OpenTelemetry metric: dots become underscores, the unit
/// becomes a suffix (`s` → `_seconds`, `By` → `_bytes`; `{annotations}` are dropped), and
/// counters end in `_total`.
pub fn prometheus_name(def: &MetricDef) -> String {
    let mut n = sanitize(def.name);
    let unit = match def.unit {
        "s" => "seconds",
        "By" => "bytes",
        "ms" => "milliseconds",
        _ => "",
    };
    if !unit.is_empty() && !n.ends_with(unit) {
        n.push('_');
        n.push_str(unit);
    }
    if def.kind == Kind::Counter {
        n.push_str("_total");
    }
    n
}

/// A Prometheus metric or label name: anything but `[a-zA-Z0-9_]` becomes `_`.
pub fn sanitize(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_names() {
        assert_eq!(
            prometheus_name(Metric::HttpServerDuration.def()),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            prometheus_name(Metric::FlowIo.def()),
            "podtap_flow_io_bytes_total"
        );
        assert_eq!(
            prometheus_name(Metric::TcpRetransmissions.def()),
            "podtap_tcp_retransmissions_total"
        );
        assert_eq!(sanitize("http.request.method"), "http_request_method");
    }

    #[test]
    fn names_are_unique() {
        let mut n: Vec<_> = Metric::ALL.iter().map(|m| m.def().name).collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), Metric::COUNT);
    }
}
