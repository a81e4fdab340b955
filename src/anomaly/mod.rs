//! Network anomaly events: a connection refused, a SYN nobody answers, a reset in the
//! middle of a request, a burst of retransmissions, a receiver that stopped reading, a
//! burst of DNS or HTTP errors, a latency breach, capture drops.
//!
//! Detection is split so the packet path never allocates or locks for it:
//! - **Flow kinds** are found by the worker as it analyses TCP ([`tcp::TcpWatch`], a few
//!   words per flow) and in the reset transactions it reports. A finding is a
//!   [`Signal`]: fixed fields, the flow's pods by reference count, pushed into the
//!   [`Hub`]'s preallocated queue (full: counted in `podtap.anomaly.queue_full`).
//! - **Aggregate kinds** (DNS and HTTP error bursts, latency breaches, capture drops) are
//!   found by the exporter from the statistics deltas it merges anyway
//!   ([`aggregate::Detector`]): no per-transaction work beyond what the metrics cost.
//! - The **engine** ([`engine::Engine`], its own thread) drains the hub, rate-limits per
//!   pod and kind (counting what it suppressed), and builds the event: a JSON line, an
//!   OpenTelemetry log record (`event.name` = `podtap.<kind>`) and a per-kind counter.
//!
//! Every event carries both ends (pods when attribution knows them), the 5-tuple or
//! the endpoint, the observation point and its evidence (counts, durations).

pub mod aggregate;
pub mod engine;
pub mod tcp;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use compact_str::CompactString;
use crossbeam_queue::ArrayQueue;
use serde::Deserialize;

use crate::k8s::FlowPods;
use crate::proto::{Direction, Endpoint, Protocol};
use crate::time::Timestamp;

macro_rules! kinds {
    ($( $variant:ident => $name:literal, $help:literal; )*) => {
        /// One kind of anomaly. `name()` is stable: `event.name` is `podtap.<name>` and the
        /// counters' `podtap.anomaly.kind` label is `<name>`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u8)]
        pub enum Kind { $( #[doc = $help] $variant, )* }

        impl Kind {
            pub const ALL: &'static [Kind] = &[ $( Kind::$variant, )* ];
            pub const COUNT: usize = Kind::ALL.len();

            pub fn name(self) -> &'static str {
                const N: &[&str] = &[ $( $name, )* ];
                N[self as usize]
            }

            pub fn event_name(self) -> &'static str {
                const N: &[&str] = &[ $( concat!("podtap.", $name), )* ];
                N[self as usize]
            }

            pub fn help(self) -> &'static str {
                const H: &[&str] = &[ $( $help, )* ];
                H[self as usize]
            }
        }
    };
}

kinds! {
    ConnectionRefused => "connection_refused", "A reset answered a SYN: nothing listens on the port (or a firewall rejects)";
    SynUnanswered => "syn_unanswered", "A SYN (and its retransmissions) got no answer within anomalies.syn_timeout_ms";
    SynRetransmitted => "syn_retransmitted", "A connection opened only after its SYN was retransmitted (a second or more lost)";
    ResetMidRequest => "reset_mid_request", "A connection was reset while a request on it waited for its response";
    RetransmitBurst => "retransmit_burst", "A flow retransmitted at least anomalies.retransmit_burst segments within anomalies.retransmit_window_ms";
    ZeroWindowStall => "zero_window_stall", "A receiver advertised a zero window for longer than anomalies.zero_window_stall_ms: it stopped reading";
    DnsErrorBurst => "dns_error_burst", "A pod's DNS queries got at least anomalies.dns_error_burst NXDOMAIN or SERVFAIL answers within anomalies.burst_window_secs";
    HttpErrorBurst => "http_error_burst", "An endpoint answered at least anomalies.http_error_burst HTTP 5xx (or gRPC server errors) within anomalies.burst_window_secs";
    LatencyBreach => "latency_breach", "An endpoint's p99 latency stayed above anomalies.latency_p99_ms for anomalies.latency_breach_secs";
    CaptureDrops => "capture_drops", "The kernel or the capture ring dropped packets on an interface";
}

/// `[anomalies]`: which anomalies are detected and their thresholds. Defaults are chosen
/// for a production node: an event is something an operator would page on or look at,
/// not a statistic (those are the `podtap.tcp.*` metrics).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnomalyConfig {
    /// Detect anomalies and emit events. Default true.
    pub enabled: bool,
    /// A SYN unanswered this long is `syn_unanswered`. Default 5000: Linux resends a SYN
    /// after 1 s, then 1 or 2 s later (6.x: every second four times, then doubling), so an
    /// answer within a few resends is a slow open, reported as `syn_retransmitted`; none
    /// in 5 s is none.
    pub syn_timeout_ms: u64,
    /// Retransmitted segments on one flow within `retransmit_window_ms` that make a
    /// `retransmit_burst`. Default 20.
    pub retransmit_burst: u32,
    /// Default 5000.
    pub retransmit_window_ms: u64,
    /// A zero window held this long is a `zero_window_stall`. Default 2000.
    pub zero_window_stall_ms: u64,
    /// NXDOMAIN/SERVFAIL answers to one pod within `burst_window_secs` that make a
    /// `dns_error_burst`. Default 20.
    pub dns_error_burst: u64,
    /// HTTP 5xx / gRPC server errors of one endpoint within `burst_window_secs` that
    /// make an `http_error_burst`. Default 20.
    pub http_error_burst: u64,
    /// Window of the DNS and HTTP error bursts. Default 10.
    pub burst_window_secs: u64,
    /// p99 latency threshold of an endpoint; 0: no latency breach events. Default 1000.
    pub latency_p99_ms: u64,
    /// Seconds in a row the p99 must stay above the threshold. Default 30.
    pub latency_breach_secs: u64,
    /// Requests an endpoint needs in a second for its p99 to count. Default 10.
    pub latency_min_requests: u64,
    /// Events per pod and kind per minute; the rest are suppressed and counted
    /// (`podtap.anomalies.suppressed`), and the next event says how many. Default 10.
    pub max_per_minute: u32,
    /// Pod-and-kind pairs whose rate is tracked. When full, every rate is forgotten at
    /// once (logged, with how many times). The aggregate detector's tables (per endpoint and
    /// per pod) have the same bound. Default 16384 (about 1 MiB).
    pub max_tracked: usize,
    /// Findings queued between the workers and the event engine; beyond it they are
    /// dropped and counted. Default 4096.
    pub queue: usize,
}

impl Default for AnomalyConfig {
    fn default() -> Self {
        AnomalyConfig {
            enabled: true,
            syn_timeout_ms: 5000,
            retransmit_burst: 20,
            retransmit_window_ms: 5000,
            zero_window_stall_ms: 2000,
            dns_error_burst: 20,
            http_error_burst: 20,
            burst_window_secs: 10,
            latency_p99_ms: 1000,
            latency_breach_secs: 30,
            latency_min_requests: 10,
            max_per_minute: 10,
            max_tracked: 16384,
            queue: 4096,
        }
    }
}

impl AnomalyConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("anomalies.syn_timeout_ms", self.syn_timeout_ms),
            ("anomalies.retransmit_burst", self.retransmit_burst as u64),
            ("anomalies.retransmit_window_ms", self.retransmit_window_ms),
            ("anomalies.zero_window_stall_ms", self.zero_window_stall_ms),
            ("anomalies.dns_error_burst", self.dns_error_burst),
            ("anomalies.http_error_burst", self.http_error_burst),
            ("anomalies.burst_window_secs", self.burst_window_secs),
            ("anomalies.latency_breach_secs", self.latency_breach_secs),
            ("anomalies.max_per_minute", self.max_per_minute as u64),
            ("anomalies.max_tracked", self.max_tracked as u64),
            ("anomalies.queue", self.queue as u64),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        // A second's count per window second and key: keep the window a bounded ring.
        if self.burst_window_secs > 3600 {
            return Err(("anomalies.burst_window_secs", "at most 3600".into()));
        }
        Ok(())
    }
}

/// Up to three named numbers: what an event rests on (`syn_retransmits`, `waited_ms`).
pub type Evidence = [(&'static str, u64); 3];

/// Every evidence name a detector uses (`podtap.anomaly.<name>`): the list docs/SCHEMA.md
/// documents and `tests/schema_docs.rs` checks.
pub const EVIDENCE_KEYS: &[&str] = &[
    "syn_retransmits",
    "waited_ms",
    "open_ms",
    "requests",
    "request_age_ms",
    "retransmits",
    "window_ms",
    "flow_retransmits",
    "stalled_ms",
    "errors",
    "window_secs",
    "breach_secs",
    "slow_requests",
    "dropped",
];

/// An evidence array from fewer pairs (the rest unnamed, not written).
pub fn evidence(pairs: &[(&'static str, u64)]) -> Evidence {
    let mut e = [("", 0); 3];
    for (slot, p) in e.iter_mut().zip(pairs) {
        debug_assert!(
            EVIDENCE_KEYS.contains(&p.0),
            "undocumented evidence {}",
            p.0
        );
        *slot = *p;
    }
    e
}

/// What an event is about beyond its ends.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum Subject {
    #[default]
    Flow,
    /// The request a reset cut off (`reset_mid_request`), or the endpoint of a burst or
    /// breach: protocol, operation and route/resource.
    Request {
        protocol: Protocol,
        operation: CompactString,
        resource: CompactString,
    },
    /// The interface of `capture_drops`, with the reason (`kernel`, `ring_full`).
    Interface {
        name: CompactString,
        reason: &'static str,
    },
}

/// One finding, as the detectors hand it to the engine.
#[derive(Clone, Debug)]
pub struct Signal {
    pub kind: Kind,
    /// When the anomaly was seen (packet time).
    pub ts: Timestamp,
    pub obs: u32,
    pub ip_proto: u8,
    pub client: Endpoint,
    pub server: Endpoint,
    pub pods: Option<Arc<FlowPods>>,
    /// The side the anomaly is about, when one is (the receiver that stalled, the sender
    /// of the retransmissions).
    pub side: Option<Direction>,
    pub evidence: Evidence,
    pub subject: Subject,
}

impl Signal {
    /// A finding about one flow.
    #[allow(clippy::too_many_arguments)]
    pub fn flow(
        kind: Kind,
        ts: Timestamp,
        obs: u32,
        ip_proto: u8,
        client: Endpoint,
        server: Endpoint,
        pods: Option<Arc<FlowPods>>,
        evidence: Evidence,
    ) -> Signal {
        Signal {
            kind,
            ts,
            obs,
            ip_proto,
            client,
            server,
            pods,
            side: None,
            evidence,
            subject: Subject::Flow,
        }
    }
}

/// Where detectors hand findings to the engine: a bounded lock-free queue, allocated
/// once. Shared by every worker and the exporter.
pub struct Hub {
    queue: ArrayQueue<Signal>,
    /// Findings lost because the queue was full.
    pub dropped: AtomicU64,
}

impl Hub {
    pub fn new(capacity: usize) -> Arc<Hub> {
        Arc::new(Hub {
            queue: ArrayQueue::new(capacity.max(1)),
            dropped: AtomicU64::new(0),
        })
    }

    /// Queue a finding; a full queue drops it (counted): detection never waits.
    pub fn push(&self, s: Signal) {
        if self.queue.push(s).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }

    pub fn pop(&self) -> Option<Signal> {
        self.queue.pop()
    }
}

/// The thresholds the worker needs, in nanoseconds, copied out of the config once.
#[derive(Clone, Copy, Debug)]
pub struct FlowThresholds {
    pub syn_timeout_ns: u64,
    pub retransmit_burst: u32,
    pub retransmit_window_ns: u64,
    pub zero_window_stall_ns: u64,
}

impl FlowThresholds {
    pub fn from_config(c: &AnomalyConfig) -> FlowThresholds {
        let ns = |ms: u64| ms.saturating_mul(1_000_000);
        FlowThresholds {
            syn_timeout_ns: ns(c.syn_timeout_ms),
            retransmit_burst: c.retransmit_burst,
            retransmit_window_ns: ns(c.retransmit_window_ms),
            zero_window_stall_ns: ns(c.zero_window_stall_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique_and_prefixed() {
        let mut n: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
        n.sort();
        n.dedup();
        assert_eq!(n.len(), Kind::COUNT);
        assert_eq!(
            Kind::ConnectionRefused.event_name(),
            "podtap.connection_refused"
        );
    }

    #[test]
    fn a_full_hub_counts_what_it_drops() {
        let hub = Hub::new(2);
        let s = || {
            let e = Endpoint {
                addr: "10.0.0.1".parse().unwrap(),
                port: 1,
            };
            Signal::flow(
                Kind::ConnectionRefused,
                Timestamp(0),
                0,
                6,
                e,
                e,
                None,
                evidence(&[]),
            )
        };
        for _ in 0..5 {
            hub.push(s());
        }
        assert_eq!(hub.dropped.load(Relaxed), 3);
        assert!(hub.pop().is_some() && hub.pop().is_some() && hub.pop().is_none());
    }

    #[test]
    fn zero_thresholds_are_refused_with_their_key() {
        let c = AnomalyConfig {
            retransmit_burst: 0,
            ..Default::default()
        };
        assert_eq!(c.validate().unwrap_err().0, "anomalies.retransmit_burst");
    }
}
