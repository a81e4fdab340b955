//! The event engine: drains the [`Hub`], rate-limits per pod and kind, and hands each
//! event to its sinks (JSON lines, the exporter's OTLP logs and counters). It runs on its
//! own thread (or is drained by hand in tests), never on the packet path.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::{AnomalyConfig, Hub, Kind, Signal, Subject};
use crate::export::jsonl::{Field, visit_pods};
use crate::flow::transport_name;
use crate::k8s::Peer;
use crate::proto::Direction;

/// An event as it leaves podtap: the finding, and how many like it the rate limit
/// suppressed since the last one that went out.
#[derive(Clone, Debug)]
pub struct Event {
    pub signal: Signal,
    pub suppressed_before: u64,
    /// The flight recording this event started or joined (`podtap.recording.file`).
    pub recording: Option<Arc<str>>,
}

impl Event {
    /// The event's attributes, in a fixed order: the one description the JSON line and the
    /// OTLP log record are both written from (`event.name`, the kind, the ends, the
    /// observation point, the side, the evidence under `podtap.anomaly.`, the subject,
    /// and pod attribution as the transactions carry it).
    pub fn visit(&self, mut f: impl FnMut(&str, &str, Field<'_>)) {
        let s = &self.signal;
        f("", "event.name", Field::Str(s.kind.event_name()));
        f("", "podtap.anomaly.kind", Field::Str(s.kind.name()));
        if s.ip_proto != 0 {
            f(
                "",
                "network.transport",
                Field::Str(transport_name(s.ip_proto)),
            );
            f("", "client.address", Field::Ip(s.client.addr));
            f("", "client.port", Field::Int(s.client.port as i64));
            f("", "server.address", Field::Ip(s.server.addr));
            f("", "server.port", Field::Int(s.server.port as i64));
        } else if s.server.port != 0 || !s.server.addr.is_unspecified() {
            // An endpoint's burst: the server alone.
            f("", "server.address", Field::Ip(s.server.addr));
            f("", "server.port", Field::Int(s.server.port as i64));
        }
        if s.obs != 0 {
            f("", "podtap.observation_point", Field::Int(s.obs as i64));
        }
        if let Some(side) = s.side {
            let name = match side {
                Direction::ToServer => "client",
                Direction::ToClient => "server",
            };
            f("", "podtap.anomaly.side", Field::Str(name));
        }
        for (k, v) in s.evidence.iter().filter(|(k, _)| !k.is_empty()) {
            f("podtap.anomaly.", k, Field::Int(*v as i64));
        }
        match &s.subject {
            Subject::Flow => {}
            Subject::Request {
                protocol,
                operation,
                resource,
            } => {
                f("", "podtap.protocol", Field::Str(protocol.as_str()));
                if !operation.is_empty() {
                    f("", "podtap.operation", Field::Str(operation));
                }
                if !resource.is_empty() {
                    f("", "podtap.resource", Field::Str(resource));
                }
            }
            Subject::Interface { name, reason } => {
                f("", "network.interface.name", Field::Str(name));
                f("", "podtap.drop.reason", Field::Str(reason));
            }
        }
        if self.suppressed_before > 0 {
            f(
                "",
                "podtap.anomaly.suppressed_before",
                Field::Int(self.suppressed_before as i64),
            );
        }
        if let Some(r) = &self.recording {
            f("", "podtap.recording.file", Field::Str(r));
        }
        if let Some(p) = &s.pods {
            visit_pods(p, f);
        }
    }

    /// A one-line human summary (the OTLP log body, the daemon's log).
    pub fn summary(&self) -> String {
        let s = &self.signal;
        let mut m = s.kind.help().to_string();
        if s.ip_proto != 0 {
            let name = |p: &Peer, a: IpAddr, port: u16| match p.pod() {
                Some(m) => format!(
                    "{}/{}:{port}",
                    m.namespace.as_deref().unwrap_or("-"),
                    m.name.as_deref().unwrap_or("-")
                ),
                None => format!("{a}:{port}"),
            };
            let (c, sv) = match &s.pods {
                Some(p) => (
                    name(&p.client, s.client.addr, s.client.port),
                    name(&p.server, s.server.addr, s.server.port),
                ),
                None => (
                    format!("{}:{}", s.client.addr, s.client.port),
                    format!("{}:{}", s.server.addr, s.server.port),
                ),
            };
            m.push_str(&format!(" ({c} -> {sv})"));
        }
        if let Subject::Interface { name, reason } = &s.subject {
            m.push_str(&format!(" ({name}, {reason})"));
        }
        m
    }

    /// The key the rate limit counts under: the pod the event is about (where it was
    /// observed, else the client's, else the server's), else the server's address.
    fn subject_key(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let s = &self.signal;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        let pod = s.pods.as_deref().and_then(|p| {
            p.obs
                .as_deref()
                .or(p.client.pod().map(|m| &**m))
                .or(p.server.pod().map(|m| &**m))
        });
        match (pod, &s.subject) {
            (_, Subject::Interface { name, .. }) => name.hash(&mut h),
            (Some(m), _) => (&m.namespace, &m.name).hash(&mut h),
            (None, _) => (s.server.addr, s.server.port).hash(&mut h),
        }
        h.finish()
    }
}

/// Sees each event before the sinks and may add to it (the flight recorder names the
/// file the event starts). Called on the engine's thread.
pub trait EventHook: Send {
    fn annotate(&mut self, e: &mut Event);
}

/// Where events go. Called on the engine's thread; may allocate and lock, never blocks
/// for long (a full output counts and drops).
pub trait EventSink: Send {
    fn event(&mut self, e: &Event);
    /// Events of `kind` (none: not known, the hub was full) that did not go out, and why
    /// (`rate_limited`, `queue_full`).
    fn suppressed(&mut self, _kind: Option<Kind>, _reason: &'static str, _n: u64) {}
    /// After each drain: hand over what was gathered.
    fn flush(&mut self) {}
}

/// Per-kind totals, readable from any thread (status, tests).
#[derive(Default)]
pub struct Totals {
    pub emitted: [AtomicU64; Kind::COUNT],
    pub suppressed: [AtomicU64; Kind::COUNT],
    /// Findings lost because the hub's queue was full.
    pub queue_full: AtomicU64,
    /// Times the rate table filled and was cleared.
    pub rate_table_full: AtomicU64,
}

impl Totals {
    pub fn emitted(&self, k: Kind) -> u64 {
        self.emitted[k as usize].load(Relaxed)
    }

    pub fn suppressed(&self, k: Kind) -> u64 {
        self.suppressed[k as usize].load(Relaxed)
    }
}

/// Rate of one pod-and-kind pair: the minute it counts in, events let through in it,
/// events suppressed since the last one let through.
#[derive(Clone, Copy)]
struct Slot {
    minute: u64,
    passed: u32,
    suppressed: u64,
}

pub struct Engine {
    hub: Arc<Hub>,
    max_per_minute: u32,
    max_tracked: usize,
    rates: HashMap<(Kind, u64), Slot>,
    sinks: Vec<Box<dyn EventSink>>,
    hooks: Vec<Box<dyn EventHook>>,
    totals: Arc<Totals>,
    /// `hub.dropped` already reported to the sinks.
    queue_full_seen: u64,
    /// Log at most one line per kind per this many events (first, then every 100th).
    logged: [u64; Kind::COUNT],
}

impl Engine {
    pub fn new(cfg: &AnomalyConfig, hub: Arc<Hub>) -> Engine {
        Engine {
            hub,
            max_per_minute: cfg.max_per_minute,
            max_tracked: cfg.max_tracked,
            rates: HashMap::new(),
            sinks: Vec::new(),
            hooks: Vec::new(),
            totals: Arc::new(Totals::default()),
            queue_full_seen: 0,
            logged: [0; Kind::COUNT],
        }
    }

    pub fn with_sink(mut self, s: Box<dyn EventSink>) -> Engine {
        self.sinks.push(s);
        self
    }

    pub fn with_hook(mut self, h: Box<dyn EventHook>) -> Engine {
        self.hooks.push(h);
        self
    }

    pub fn totals(&self) -> Arc<Totals> {
        self.totals.clone()
    }

    /// Handle everything queued; returns the events that went out.
    pub fn drain(&mut self) -> usize {
        let mut n = 0;
        while let Some(s) = self.hub.pop() {
            n += self.one(s) as usize;
        }
        let lost = self.hub.dropped.load(Relaxed);
        if lost > self.queue_full_seen {
            let d = lost - self.queue_full_seen;
            self.queue_full_seen = lost;
            self.totals.queue_full.fetch_add(d, Relaxed);
            tracing::warn!(lost = d, "anomaly findings lost: the queue was full");
            for s in &mut self.sinks {
                s.suppressed(None, "queue_full", d);
            }
        }
        for s in &mut self.sinks {
            s.flush();
        }
        n
    }

    /// Run until `done` says so, draining every 100 ms, then once more (so what the
    /// workers found while finishing goes out too).
    pub fn run(mut self, done: impl Fn() -> bool) {
        while !done() {
            self.drain();
            std::thread::sleep(Duration::from_millis(100));
        }
        self.drain();
    }

    /// The engine of a run or replay: events as JSON lines through `records` (when the
    /// output is JSON lines) and to `export` (OTLP logs, counters; the aggregate kinds).
    /// `None` when anomalies are off or nothing would receive the events.
    pub fn start(
        cfg: &AnomalyConfig,
        records: Option<crate::export::queue::BatchSender>,
        export: Option<&crate::export::Exporter>,
    ) -> Option<(Arc<Hub>, Engine)> {
        if !cfg.enabled || (records.is_none() && export.is_none()) {
            return None;
        }
        let hub = Hub::new(cfg.queue);
        let mut e = Engine::new(cfg, hub.clone());
        if let Some(tx) = records {
            e = e.with_sink(Box::new(RecordEvents::new(tx)));
        }
        if let Some(x) = export {
            e = e.with_sink(Box::new(x.anomalies(cfg, hub.clone())));
        }
        Some((hub, e))
    }

    fn one(&mut self, signal: Signal) -> bool {
        let kind = signal.kind;
        let mut e = Event {
            signal,
            suppressed_before: 0,
            recording: None,
        };
        let key = (kind, e.subject_key());
        let minute = e.signal.ts.as_nanos() / 60_000_000_000;
        if !self.rates.contains_key(&key) && self.rates.len() >= self.max_tracked {
            // Forgetting every rate at once keeps the table bounded and each insert O(1)
            // amortised; the price is that a flood may pass `max_per_minute` once.
            self.rates.clear();
            let n = self.totals.rate_table_full.fetch_add(1, Relaxed) + 1;
            tracing::warn!(
                max_tracked = self.max_tracked,
                times = n,
                "anomaly rate table full: every pod's rate forgotten (anomalies.max_tracked)"
            );
        }
        let slot = self.rates.entry(key).or_insert(Slot {
            minute,
            passed: 0,
            suppressed: 0,
        });
        if slot.minute != minute {
            slot.minute = minute;
            slot.passed = 0;
        }
        if slot.passed >= self.max_per_minute {
            slot.suppressed += 1;
            self.totals.suppressed[kind as usize].fetch_add(1, Relaxed);
            for s in &mut self.sinks {
                s.suppressed(Some(kind), "rate_limited", 1);
            }
            return false;
        }
        slot.passed += 1;
        e.suppressed_before = std::mem::take(&mut slot.suppressed);
        self.totals.emitted[kind as usize].fetch_add(1, Relaxed);
        let seen = &mut self.logged[kind as usize];
        if seen.is_multiple_of(100) {
            tracing::warn!(event = kind.event_name(), "{}", e.summary());
        }
        *seen += 1;
        for h in &mut self.hooks {
            h.annotate(&mut e);
        }
        for s in &mut self.sinks {
            s.event(&e);
        }
        true
    }
}

/// JSON lines: each event as a record through the writer's queue (a batch of one: events
/// are rare). A full queue drops the line, counted.
pub struct RecordEvents {
    tx: crate::export::queue::BatchSender,
    pub dropped: Arc<AtomicU64>,
}

impl RecordEvents {
    pub fn new(tx: crate::export::queue::BatchSender) -> RecordEvents {
        RecordEvents {
            tx,
            dropped: Arc::default(),
        }
    }
}

impl EventSink for RecordEvents {
    fn event(&mut self, e: &Event) {
        let mut batch = self.tx.empty_batch();
        batch.push(crate::export::Record::Anomaly(Box::new(e.clone())));
        if self.tx.try_send(batch).is_err() {
            self.dropped.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anomaly::evidence;
    use crate::proto::Endpoint;
    use crate::time::Timestamp;
    use std::sync::Mutex;

    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<Event>>>, Arc<Mutex<u64>>);

    impl EventSink for Collect {
        fn event(&mut self, e: &Event) {
            self.0.lock().unwrap().push(e.clone());
        }
        fn suppressed(&mut self, _: Option<Kind>, _: &'static str, n: u64) {
            *self.1.lock().unwrap() += n;
        }
    }

    fn signal(kind: Kind, server_port: u16, secs: u64) -> Signal {
        let e = |port| Endpoint {
            addr: "10.0.0.1".parse().unwrap(),
            port,
        };
        Signal::flow(
            kind,
            Timestamp(secs * 1_000_000_000),
            3,
            6,
            e(40000),
            e(server_port),
            None,
            evidence(&[("syn_retransmits", 2)]),
        )
    }

    #[test]
    fn the_rate_limit_is_per_subject_and_kind_and_counts_what_it_suppressed() {
        let hub = Hub::new(64);
        let out = Collect::default();
        let cfg = AnomalyConfig {
            max_per_minute: 2,
            ..Default::default()
        };
        let mut engine = Engine::new(&cfg, hub.clone()).with_sink(Box::new(out.clone()));
        for _ in 0..5 {
            hub.push(signal(Kind::ConnectionRefused, 80, 1));
        }
        hub.push(signal(Kind::ConnectionRefused, 81, 1));
        hub.push(signal(Kind::SynUnanswered, 80, 1));
        assert_eq!(engine.drain(), 4);
        assert_eq!(*out.1.lock().unwrap(), 3);
        assert_eq!(engine.totals().suppressed(Kind::ConnectionRefused), 3);
        // The next minute: the first event says how many were held back.
        hub.push(signal(Kind::ConnectionRefused, 80, 61));
        assert_eq!(engine.drain(), 1);
        let last = out.0.lock().unwrap().last().unwrap().clone();
        assert_eq!(last.suppressed_before, 3);
    }

    #[test]
    fn fields_name_the_kind_ends_and_evidence() {
        let e = Event {
            signal: signal(Kind::ConnectionRefused, 80, 1),
            suppressed_before: 0,
            recording: None,
        };
        let mut keys = Vec::new();
        e.visit(|p, k, v| {
            let v = match v {
                Field::Str(s) => s.to_string(),
                Field::Int(i) => i.to_string(),
                Field::Ip(a) => a.to_string(),
                Field::Attr(a) => format!("{a:?}"),
            };
            keys.push(format!("{p}{k}={v}"));
        });
        assert_eq!(
            keys,
            [
                "event.name=podtap.connection_refused",
                "podtap.anomaly.kind=connection_refused",
                "network.transport=tcp",
                "client.address=10.0.0.1",
                "client.port=40000",
                "server.address=10.0.0.1",
                "server.port=80",
                "podtap.observation_point=3",
                "podtap.anomaly.syn_retransmits=2",
            ]
        );
    }
}
