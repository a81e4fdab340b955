//! The per-queue worker: one thread, one capture queue, shared nothing. It decodes each
//! frame, finds its flow, runs TCP analysis and reassembly, feeds the application
//! decoder, and hands finished flows and transactions to its record sink.
//!
//! Replay and live capture run this same code; only the [`crate::capture::Source`] differs.

use crate::anomaly::tcp::Finding;
use crate::anomaly::{FlowThresholds, Hub, Kind, Signal, Subject};
use crate::capture::Frame;
use crate::config::Config;
use crate::events::{Counters, Event};
use crate::export::RecordSink;
use crate::flow::reassembly::{Chunk, ReassemblyBudget, StreamLimits};
use crate::flow::tcp::TcpLimits;
use crate::flow::{EndReason, Flow, FlowId, FlowKey, FlowProgress, FlowTable};
use crate::k8s::{Attributor, FlowPods};
use crate::packet::{self, Decoded, Defragmenter, IPPROTO_TCP, IPPROTO_UDP, L4, Packet, tcp_flags};
use crate::proto::DecoderFactory;
use crate::proto::Endpoint;
use crate::proto::detect::Transport;
use crate::proto::session::{DecoderHeap, L7Session};
use crate::proto::{Completeness, Direction, Tally, Transaction};
use crate::time::Timestamp;
use std::sync::Arc;

const NS_PER_SEC: u64 = 1_000_000_000;
/// How often (packet clock) expiry runs.
const TICK_NS: u64 = NS_PER_SEC;
/// Most flows expired per tick, so one tick never stalls the packet path for long.
const MAX_EXPIRE_PER_TICK: usize = 4096;

/// The numbers the worker needs, copied out of the config once.
#[derive(Clone, Copy, Debug)]
pub struct WorkerSettings {
    pub max_flows: usize,
    pub tcp_idle_ns: u64,
    pub tcp_linger_ns: u64,
    pub udp_idle_ns: u64,
    pub other_idle_ns: u64,
    pub tcp: TcpLimits,
    pub max_worker_reassembly: usize,
    pub max_worker_segments: usize,
    pub transaction_timeout_ns: u64,
    pub max_worker_heap_bytes: usize,
    pub vlan_in_key: bool,
    /// `flow.report_interval_secs` in ns; 0: flows report only when they end.
    pub report_ns: u64,
}

impl WorkerSettings {
    pub fn from_config(cfg: &Config) -> Self {
        let s = |secs: u64| secs.saturating_mul(NS_PER_SEC);
        WorkerSettings {
            max_flows: cfg.flow.max_flows,
            tcp_idle_ns: s(cfg.flow.tcp_idle_timeout_secs),
            tcp_linger_ns: s(cfg.flow.tcp_close_linger_secs),
            udp_idle_ns: s(cfg.flow.udp_idle_timeout_secs),
            other_idle_ns: s(cfg.flow.other_idle_timeout_secs),
            tcp: TcpLimits {
                stream: StreamLimits {
                    max_bytes: cfg.reassembly.max_flow_bytes,
                    max_segments: cfg.reassembly.max_flow_segments,
                },
                out_of_order_threshold_ns: cfg
                    .reassembly
                    .out_of_order_threshold_us
                    .saturating_mul(1000),
            },
            max_worker_reassembly: cfg.reassembly.max_worker_bytes,
            max_worker_segments: cfg.reassembly.max_worker_segments,
            transaction_timeout_ns: s(cfg.protocols.transaction_timeout_secs),
            max_worker_heap_bytes: cfg.protocols.max_worker_heap_bytes,
            vlan_in_key: cfg.flow.vlan_in_key,
            report_ns: s(cfg.flow.report_interval_secs),
        }
    }

    /// Shortest of the timeouts: nothing last seen more recently can have expired.
    fn min_timeout(&self) -> u64 {
        self.tcp_idle_ns
            .min(self.tcp_linger_ns)
            .min(self.udp_idle_ns)
            .min(self.other_idle_ns)
    }
}

/// Totals a worker reports when it stops.
#[derive(Clone, Debug, Default)]
pub struct WorkerTotals {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub transactions: u64,
    pub counters: Counters,
}

/// What a flow's decoders reported since it was last emitted.
struct Reported {
    txs: Vec<Transaction>,
    /// Plain requests counted without records (see `crate::proto::tally`); on when the
    /// sink wants no records and no flight recorder holds them back.
    tally: Tally,
}

impl Reported {
    /// Records alone (what the timeout sweep takes from a flow).
    fn records(txs: Vec<Transaction>) -> Self {
        Reported {
            txs,
            tally: Tally::default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.txs.is_empty() && self.tally.is_empty()
    }

    fn len(&self) -> usize {
        self.txs.len() + self.tally.len()
    }
}

/// Flow state and everything that feeds it: kept apart from the defragmenter so a decoded
/// packet (which may borrow the defragmenter's buffer) can be processed.
struct Tracker<S: RecordSink> {
    settings: WorkerSettings,
    table: FlowTable,
    budget: ReassemblyBudget,
    counters: Counters,
    /// What the decoders report: one place, so the packet path passes one pointer.
    out: Reported,
    expired: Vec<FlowId>,
    /// Open flows' traffic reports gathered by a sweep, handed to the sink after it.
    progress: Vec<FlowProgress>,
    decoders: DecoderFactory,
    /// Round-robin position of the transaction-timeout sweep over the flow table.
    sweep_cursor: usize,
    sink: S,
    flows: u64,
    transactions: u64,
    /// Pod attribution; resolved per flow, never per packet.
    attr: Option<Attributor>,
    /// Where anomaly findings go, and the thresholds (`None`: anomalies off).
    anomalies: Option<(Arc<Hub>, FlowThresholds)>,
    /// What the decoders hold outside their flow slots, against its bound.
    heap: DecoderHeap,
    /// The flight recorder's rings (`None`: recorder off).
    recorder: Option<crate::recorder::ring::WorkerRecorder>,
}

pub struct Worker<S: RecordSink> {
    defrag: Defragmenter,
    filter: crate::filter::Filter,
    tracker: Tracker<S>,
    clock: Timestamp,
    next_tick: Timestamp,
    packets: u64,
    bytes: u64,
    /// Copies of frames for `podtap sniff`; looked at only while something subscribes.
    tap: crate::control::tap::WorkerTap,
}

impl<S: RecordSink> Worker<S> {
    pub fn new(cfg: &Config, sink: S) -> Self {
        let settings = WorkerSettings::from_config(cfg);
        let tally = Tally::new(!sink.wants_records());
        Worker {
            defrag: Defragmenter::new(cfg.defrag.limits()),
            filter: cfg.capture.filter.clone(),
            tracker: Tracker {
                settings,
                table: FlowTable::new(settings.max_flows),
                budget: ReassemblyBudget::new(
                    settings.max_worker_reassembly,
                    settings.max_worker_segments,
                ),
                counters: Counters::default(),
                out: Reported {
                    txs: Vec::with_capacity(64),
                    tally,
                },
                expired: Vec::with_capacity(MAX_EXPIRE_PER_TICK),
                progress: Vec::new(),
                decoders: DecoderFactory::from_config(cfg).expect("config validated route rules"),
                sweep_cursor: 0,
                sink,
                flows: 0,
                transactions: 0,
                attr: None,
                anomalies: None,
                heap: DecoderHeap::new(settings.max_worker_heap_bytes),
                recorder: None,
            },
            clock: Timestamp::ZERO,
            next_tick: Timestamp::ZERO,
            packets: 0,
            bytes: 0,
            // A hub of its own that nobody subscribes to, unless the daemon gives one.
            tap: crate::control::tap::WorkerTap::new(crate::control::tap::TapHub::new()),
        }
    }

    /// Offer frames to the daemon's sniffs (see `crate::control::tap`).
    pub fn with_tap(mut self, hub: std::sync::Arc<crate::control::tap::TapHub>) -> Self {
        self.tap = crate::control::tap::WorkerTap::new(hub);
        self
    }

    /// Keep the recent frames of the flight recorder's pods (see `crate::recorder`).
    pub fn with_recorder(mut self, hub: Option<&Arc<crate::recorder::Hub>>) -> Self {
        self.tracker.recorder = hub.map(|h| crate::recorder::ring::WorkerRecorder::new(h.clone()));
        // The recorder keeps its pods' records.
        if self.tracker.recorder.is_some() {
            self.tracker.out.tally = Tally::new(false);
        }
        self
    }

    /// A frame while sniffs run or the flight recorder records: offered to them, then
    /// processed. Out of line, so the pipeline inlined here does not weigh on the loop
    /// without them.
    #[inline(never)]
    fn process_tapped(&mut self, f: &Frame<'_>, tapping: bool) {
        if tapping {
            self.tap.offer(f);
        }
        if let Some(r) = self.tracker.recorder.as_mut() {
            r.offer(f);
        }
        self.process(f);
    }

    /// Process one batch of up to `max` frames of `src`, calling `each` on every frame
    /// first. Whether any sniff wants frames is asked here once per batch (one relaxed
    /// atomic load), as is whether the flight recorder's selection or recordings changed,
    /// so with neither the per-frame path is exactly [`Worker::process`].
    #[inline]
    pub fn batch<Src: crate::capture::Source>(
        &mut self,
        src: &mut Src,
        max: usize,
        mut each: impl FnMut(&Frame<'_>),
    ) -> Result<Option<usize>, crate::capture::CaptureError> {
        let tapping = self.tap.active();
        if tapping {
            self.tap.refresh();
        }
        let recording = match self.tracker.recorder.as_mut() {
            Some(r) => {
                r.before_batch(self.clock, &mut self.tracker.sink);
                r.wants_frames()
            }
            None => false,
        };
        if tapping || recording {
            src.next_batch(max, |f| {
                each(f);
                self.process_tapped(f, tapping);
            })
        } else {
            src.next_batch(max, |f| {
                each(f);
                self.process(f);
            })
        }
    }

    /// Report anomaly findings to `hub` (see `crate::anomaly`), when `cfg` enables them.
    pub fn with_anomalies(
        mut self,
        hub: Option<Arc<Hub>>,
        cfg: &crate::anomaly::AnomalyConfig,
    ) -> Self {
        self.tracker.anomalies = hub
            .filter(|_| cfg.enabled)
            .map(|h| (h, FlowThresholds::from_config(cfg)));
        self
    }

    /// Attribute flows and transactions to pods with `attr` (see `crate::k8s`).
    pub fn with_attributor(mut self, attr: Option<Attributor>) -> Self {
        self.tracker.attr = attr;
        self
    }

    /// Flows currently tracked.
    pub fn live_flows(&self) -> usize {
        self.tracker.table.len()
    }

    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.tracker.sink
    }

    /// Process one captured frame.
    ///
    /// Always inlined: a batch loop has two call sites (with and without sniffs, see
    /// [`Worker::batch`]), and with two the compiler stopped inlining it into the loop
    /// without, which then paid a call per frame (about 3 instructions per frame more,
    /// measured with cachegrind). The loop with sniffs calls it through
    /// [`Worker::process_tapped`], kept out of line.
    #[inline(always)]
    pub fn process(&mut self, f: &Frame<'_>) {
        self.packets += 1;
        self.bytes += f.wire_len as u64;
        if f.ts > self.clock {
            self.clock = f.ts;
            if self.clock >= self.next_tick {
                self.tick(self.clock);
            }
        }
        match packet::decode(f.data, f.link, f.ts, f.wire_len, &mut self.defrag) {
            Ok(Decoded::Packet(p)) if self.filter.matches(&p) => self.tracker.on_packet(&p, f.obs),
            Ok(Decoded::Packet(_)) => self.tracker.counters.bump(Event::Filtered),
            Ok(Decoded::FragmentHeld) => {}
            Err(e) => self.tracker.counters.bump(e),
        }
    }

    /// Live capture with no frames for a while: let the wall clock (`now`, the same clock
    /// as live frame timestamps) drive expiry, and push out batched records.
    pub fn idle(&mut self, now: Timestamp) {
        if now > self.clock {
            self.clock = now;
            if self.clock >= self.next_tick {
                self.tick(self.clock);
            }
        }
        self.tracker.sink.flush();
    }

    /// Frames and bytes seen, and the counters so far (read by the daemon between
    /// batches for its statistics).
    pub fn progress(&self) -> (u64, u64, &Counters) {
        (self.packets, self.bytes, &self.tracker.counters)
    }

    /// Periodic work on the packet clock: expire idle and closed flows and stale fragments.
    pub fn tick(&mut self, now: Timestamp) {
        self.next_tick = now.add_nanos(TICK_NS);
        self.defrag.expire(now);
        self.tracker.expire(now);
        self.tracker.sweep_l7_timeouts(now);
        let mut counters = self.tracker.counters.clone();
        counters.merge(&self.defrag.counters);
        self.tracker.sink.tick(&counters);
    }

    /// Report every open flow (end of file or shutdown) and return the totals.
    pub fn finish(mut self) -> (WorkerTotals, S) {
        let now = self.clock;
        let t = &mut self.tracker;
        // Report in first-seen order so output is the same on every run.
        let mut ids = t.table.ids();
        ids.sort_by_key(|&id| {
            let f = t.table.get_mut(id);
            (f.first, f.key.a_port(), f.key.b_port())
        });
        for id in ids {
            let flow = t.table.remove(id);
            // A connection that already closed reports how it closed, even mid-linger.
            let reason = match flow.tcp.as_ref() {
                Some(c) if c.reset => EndReason::Rst,
                Some(c) if c.is_closed() => EndReason::Fin,
                _ => t.reason_at(&flow, now).unwrap_or(EndReason::Shutdown),
            };
            t.finish(flow, reason);
        }
        // Running recordings get this worker's frames; the held records leave.
        if let Some(r) = t.recorder.as_mut() {
            r.finish(&mut t.sink);
        }
        let mut counters = t.counters.clone();
        counters.merge(&self.defrag.counters);
        t.sink.finish(&counters);
        t.sink.flush();
        let totals = WorkerTotals {
            packets: self.packets,
            bytes: self.bytes,
            flows: t.flows,
            transactions: t.transactions,
            counters,
        };
        (totals, self.tracker.sink)
    }
}

impl<S: RecordSink> Tracker<S> {
    fn on_packet(&mut self, p: &Packet<'_>, obs: u32) {
        let (key, forward) = FlowKey::of(p, obs, self.settings.vlan_in_key);
        let id = match self.table.lookup(&key) {
            Some(id) if self.reopens(id, p) => {
                // The same ports open a new connection: report the old one first.
                let old = self.table.remove(id);
                let reason = if old.tcp.as_ref().is_some_and(|t| t.reset) {
                    EndReason::Rst
                } else {
                    EndReason::Fin
                };
                self.finish(old, reason);
                self.create(key, p, forward)
            }
            Some(id) => id,
            None => self.create(key, p, forward),
        };
        self.table.touch(id);
        // Only the TCP limits: copying all the settings costs a dozen moves per packet.
        let limits = self.settings.tcp;
        let flow = self.table.get_mut(id);
        let dir = flow.direction(forward);
        flow.last = p.ts;
        let c = &mut flow.dirs[dir.index()];
        c.packets += 1;
        c.bytes += p.wire_len as u64;
        c.payload_bytes += p.payload_wire_len as u64;

        let Flow {
            tcp,
            l7,
            watch,
            pods,
            ..
        } = flow;
        let (out, decoders, heap) = (&mut self.out, &self.decoders, &mut self.heap);
        let ts = p.ts;
        let mut feed =
            |dir: Direction, chunk: Chunk<'_>| feed_l7(l7, dir, chunk, ts, decoders, out, heap);
        let mut found = None;
        match (p.l4, tcp.as_mut()) {
            (L4::Tcp(h), Some(conn)) => {
                conn.segment(
                    dir,
                    &h,
                    p.payload,
                    p.payload_wire_len,
                    ts,
                    &limits,
                    &mut self.budget,
                    &mut self.counters,
                    &mut feed,
                );
                if let Some((_, th)) = &self.anomalies {
                    found = watch.segment(conn, dir, &h, ts, &thresholds(th, pods));
                }
            }
            (L4::Udp { .. }, _) if !p.payload.is_empty() => feed(dir, Chunk::Data(p.payload)),
            _ => {}
        }
        if let (Some(f), Some((hub, _))) = (found, &self.anomalies) {
            report(hub, &self.attr, self.table.get_mut(id), f, ts);
        }
        if !self.out.is_empty() {
            let ends = ends(&self.attr, self.table.get_mut(id), self.out.len());
            emit(
                &mut self.out,
                ends,
                &mut self.sink,
                &mut self.transactions,
                &mut self.counters,
                self.recorder.as_mut(),
            );
        }
    }

    /// Does `p` start a new connection on the tuple of a closed TCP flow?
    fn reopens(&mut self, id: FlowId, p: &Packet<'_>) -> bool {
        let L4::Tcp(h) = p.l4 else { return false };
        h.has(tcp_flags::SYN)
            && !h.has(tcp_flags::ACK)
            && self
                .table
                .get_mut(id)
                .tcp
                .as_ref()
                // The same ISN again is the old SYN retransmitted (or the capture
                // repeated), not a new connection: tshark draws the same line.
                .is_some_and(|t| t.is_closed() && t.client_isn() != Some(h.seq))
    }

    fn create(&mut self, key: FlowKey, p: &Packet<'_>, forward: bool) -> FlowId {
        if self.table.is_full()
            && let Some(lru) = self.table.lru()
        {
            let victim = self.table.remove(lru);
            self.counters.bump(Event::FlowEvicted);
            self.finish(victim, EndReason::Evicted);
        }
        let mut flow = Flow::new(key, p, forward);
        let mut transport = match p.ip_proto {
            IPPROTO_TCP => Some(Transport::Tcp),
            IPPROTO_UDP => Some(Transport::Udp),
            _ => None,
        };
        if let Some(a) = &self.attr {
            let pods = a.resolve(key.obs(), key.proto(), flow.client(), flow.server());
            // Traffic of pods outside the selector is not reported: skip decoding it.
            if !pods.selected {
                transport = None;
            }
            flow.pods = Some(pods);
        }
        if let Some(t) = transport {
            flow.l7 = Some(L7Session::new(t, flow.server().port));
        }
        self.table.insert(flow)
    }

    /// Why `flow` should be reported at `now`, if it should.
    fn reason_at(&self, flow: &Flow, now: Timestamp) -> Option<EndReason> {
        let idle = now.since(flow.last);
        let s = &self.settings;
        match (flow.key.proto(), flow.tcp.as_ref()) {
            (_, Some(t)) if t.is_closed() => (idle >= s.tcp_linger_ns).then_some(if t.reset {
                EndReason::Rst
            } else {
                EndReason::Fin
            }),
            (_, Some(_)) => (idle >= s.tcp_idle_ns).then_some(EndReason::Idle),
            (IPPROTO_UDP, None) => (idle >= s.udp_idle_ns).then_some(EndReason::Idle),
            _ => (idle >= s.other_idle_ns).then_some(EndReason::Idle),
        }
    }

    fn expire(&mut self, now: Timestamp) {
        let horizon = Timestamp(now.as_nanos().saturating_sub(self.settings.min_timeout()));
        let mut ids = std::mem::take(&mut self.expired);
        ids.clear();
        self.table.collect_expired(
            horizon,
            MAX_EXPIRE_PER_TICK,
            |f| self.reason_at(f, now).is_some(),
            &mut ids,
        );
        for &id in &ids {
            let flow = self.table.remove(id);
            let reason = self.reason_at(&flow, now).unwrap_or(EndReason::Idle);
            self.finish(flow, reason);
        }
        self.expired = ids;
    }

    /// Let decoders report requests whose response is overdue. Walks a bounded slice of
    /// the table per tick, round-robin, so the cost per tick stays small.
    fn sweep_l7_timeouts(&mut self, now: Timestamp) {
        let timeout = self.settings.transaction_timeout_ns;
        let (txs, counters, attr) = (&mut self.out.txs, &mut self.counters, &self.attr);
        let (anomalies, heap) = (&self.anomalies, &mut self.heap);
        let mut pending = Vec::new();
        // Open flows' traffic for the metrics, at most every `report_ns` per flow. The
        // buffer is the tracker's, reused: a tick allocates nothing once it has grown.
        let report_ns = if self.sink.wants_progress() {
            self.settings.report_ns
        } else {
            0
        };
        let progress = &mut self.progress;
        self.sweep_cursor = self
            .table
            .sweep(self.sweep_cursor, MAX_EXPIRE_PER_TICK, |flow| {
                // What time alone reveals: a SYN still unanswered, a window still shut.
                if let Some((hub, th)) = anomalies
                    && let Some(conn) = flow.tcp.as_ref()
                    && let Some(f) = flow.watch.tick(conn, now, &thresholds(th, &flow.pods))
                {
                    report(hub, attr, flow, f, now);
                }
                if report_ns > 0
                    && now.since(flow.reported_at) >= report_ns
                    && let Some(delta) = flow.take_progress(now)
                {
                    let (client, server, _, pods, _) = ends(attr, flow, 0);
                    progress.push(FlowProgress {
                        ip_proto: flow.key.proto(),
                        client,
                        server,
                        pods,
                        delta,
                    });
                }
                if let Some(s) = flow.l7.as_mut() {
                    s.tick(now, timeout, txs);
                    s.account(heap, now, txs);
                    s.drain_stats(counters);
                    if !txs.is_empty() {
                        let ends = ends(attr, flow, txs.len());
                        pending.push((ends, Reported::records(std::mem::take(txs))));
                    }
                }
            });
        for (ends, mut batch) in pending {
            emit(
                &mut batch,
                ends,
                &mut self.sink,
                &mut self.transactions,
                &mut self.counters,
                self.recorder.as_mut(),
            );
        }
        self.counters.add(Event::MemoryShed, self.heap.take_shed());
        for p in self.progress.drain(..) {
            self.sink.flow_progress(&p);
        }
    }

    /// The flow is over: drain reassembly into the decoder, close the decoder, report.
    fn finish(&mut self, mut flow: Flow, reason: EndReason) {
        let ts = flow.last;
        let Flow { tcp, l7, .. } = &mut flow;
        let (out, decoders, heap) = (&mut self.out, &self.decoders, &mut self.heap);
        if let Some(conn) = tcp.as_mut() {
            let mut feed =
                |dir: Direction, chunk: Chunk<'_>| feed_l7(l7, dir, chunk, ts, decoders, out, heap);
            conn.flush(&mut self.budget, &mut self.counters, &mut feed);
        }
        if let Some(s) = l7.as_mut() {
            s.close(ts, reason == EndReason::Rst, &mut out.txs);
            s.release(&mut self.heap);
            s.drain_stats(&mut self.counters);
        }
        self.counters.add(Event::MemoryShed, self.heap.take_shed());
        if let Some((hub, th)) = &self.anomalies {
            if let Some(conn) = flow.tcp.as_ref()
                && let Some(f) = flow.watch.tick(conn, ts, &thresholds(th, &flow.pods))
            {
                report(hub, &self.attr, &mut flow, f, ts);
            }
            reset_mid_request(hub, &self.attr, &mut flow, &self.out.txs);
        }
        if let Some(t) = flow.tcp.as_ref() {
            // Packets from one side only, though that side acknowledges the other: the
            // other direction went to another worker (or another capture point).
            if (flow.dirs[0].packets == 0) != (flow.dirs[1].packets == 0) && t.midstream {
                self.counters.bump(Event::FlowSplit);
            }
        }
        let ends = ends(&self.attr, &mut flow, self.out.len());
        let selected = ends.3.as_ref().is_none_or(|p| p.selected);
        emit(
            &mut self.out,
            ends,
            &mut self.sink,
            &mut self.transactions,
            &mut self.counters,
            self.recorder.as_mut(),
        );
        if !selected {
            self.counters.bump(Event::AttributionUnselected);
            return;
        }
        self.flows += 1;
        self.sink.flow(flow.record(reason));
    }
}

/// The flow thresholds for a flow: `[anomalies]`, with the overrides of the monitoring
/// policy of the flow's pods (a copy; a flow without one reads nothing more).
#[inline]
fn thresholds(base: &FlowThresholds, pods: &Option<Arc<FlowPods>>) -> FlowThresholds {
    match pods.as_deref().and_then(|p| p.anomalies.as_ref()) {
        Some(o) => o.apply(base),
        None => *base,
    }
}

/// Hand a finding about `flow` to the anomaly engine (flows outside the selector are not
/// reported, like their records).
fn report(hub: &Hub, attr: &Option<Attributor>, flow: &mut Flow, f: Finding, ts: Timestamp) {
    if let Some(s) = signal(attr, flow, f, ts) {
        hub.push(s);
    }
}

/// The signal of finding `f` about `flow`; none for a flow of pods outside the selector.
fn signal(attr: &Option<Attributor>, flow: &mut Flow, f: Finding, ts: Timestamp) -> Option<Signal> {
    let (client, server, obs, pods, _) = ends(attr, flow, 0);
    if pods.as_ref().is_some_and(|p| !p.selected) {
        return None;
    }
    let mut s = Signal::flow(
        f.kind,
        ts,
        obs,
        flow.key.proto(),
        client,
        server,
        pods,
        f.evidence,
    );
    s.side = f.side;
    Some(s)
}

/// A connection reset while requests on it waited for their responses: one finding for
/// the flow, naming the first such request and how many there were.
fn reset_mid_request(hub: &Hub, attr: &Option<Attributor>, flow: &mut Flow, txs: &[Transaction]) {
    let mut cut = txs
        .iter()
        .filter(|t| t.completeness.has(Completeness::RESET));
    let Some(first) = cut.next() else { return };
    let n = 1 + cut.count() as u64;
    let waited = first.end.since(first.start) / 1_000_000;
    let resets = flow
        .tcp
        .as_ref()
        .map_or([0, 0], |t| [t.stats[0].resets, t.stats[1].resets]);
    let side = match resets {
        [0, s] if s > 0 => Some(Direction::ToClient),
        [c, 0] if c > 0 => Some(Direction::ToServer),
        _ => None,
    };
    let f = Finding {
        kind: Kind::ResetMidRequest,
        side,
        evidence: crate::anomaly::evidence(&[("requests", n), ("request_age_ms", waited)]),
    };
    let Some(mut s) = signal(attr, flow, f, first.end) else {
        return;
    };
    s.subject = Subject::Request {
        protocol: first.protocol,
        operation: first.operation.clone(),
        resource: first.resource.clone(),
    };
    hub.push(s);
}

/// Hand one piece of a stream to the flow's application layer, and account for what its
/// decoder holds afterwards. Always inlined: the per-segment closures that call it stay
/// in the packet loop (a call per segment otherwise, measured with cachegrind).
#[inline(always)]
fn feed_l7(
    l7: &mut Option<L7Session>,
    dir: Direction,
    chunk: Chunk<'_>,
    ts: Timestamp,
    decoders: &DecoderFactory,
    out: &mut Reported,
    heap: &mut DecoderHeap,
) {
    let Some(s) = l7.as_mut() else { return };
    match chunk {
        Chunk::Data(b) => s.data_tallied(dir, b, ts, decoders, &mut out.txs, &mut out.tally),
        Chunk::Gap(n) => s.gap(dir, n),
    }
    s.account(heap, ts, &mut out.txs);
}

/// A flow's ends as its records carry them: client, server, observation point, pods, and
/// the origin of the first of the transactions being reported (see
/// [`Transaction::origin`]).
type Ends = (Endpoint, Endpoint, u32, Option<Arc<FlowPods>>, Option<u64>);

/// The flow's ends for reporting its next `n` transactions, with its attribution brought
/// up to date (a pointer comparison unless the metadata snapshot changed since the flow
/// last reported).
#[inline(always)]
fn ends(attr: &Option<Attributor>, flow: &mut Flow, n: usize) -> Ends {
    let (client, server, obs) = (flow.client(), flow.server(), flow.key.obs());
    if let Some(a) = attr {
        a.refresh(&mut flow.pods, obs, flow.key.proto(), client, server);
    }
    let isn = flow.tcp.as_ref().and_then(|t| t.client_isn());
    let origin = isn.map(|isn| (isn as u64) << 32 | flow.transactions as u64);
    flow.transactions = flow.transactions.wrapping_add(n as u32);
    (client, server, obs, flow.pods.clone(), origin)
}

/// Hand what a flow's decoders reported to the sink, leaving `out` empty: the requests
/// counted without records first (nothing reads their order against the records), then
/// the records.
fn emit<S: RecordSink>(
    out: &mut Reported,
    (client, server, obs, pods, origin): Ends,
    sink: &mut S,
    count: &mut u64,
    counters: &mut Counters,
    recorder: Option<&mut crate::recorder::ring::WorkerRecorder>,
) {
    let Reported { txs, tally } = out;
    if pods.as_ref().is_some_and(|p| !p.selected) {
        counters.add(
            Event::AttributionUnselected,
            (txs.len() + tally.len()) as u64,
        );
        txs.clear();
        tally.clear();
        return;
    }
    if !tally.is_empty() {
        *count += tally.len() as u64;
        sink.tally(tally, &server, pods.as_ref());
        tally.clear();
    }
    // Completed in place and handed over together: every move of a transaction copies it.
    for (i, tx) in txs.iter_mut().enumerate() {
        tx.client = client;
        tx.server = server;
        tx.obs = obs;
        tx.pods = pods.clone();
        crate::stats::settle_error(tx);
        // The index stays in the low half: connection identity and index never mix.
        tx.origin = origin.map(|o| o & !0xffff_ffff | (o as u32).wrapping_add(i as u32) as u64);
    }
    *count += txs.len() as u64;
    // The flight recorder holds its pods' records back (statistics taken now).
    if let Some(r) = recorder.filter(|r| r.wants_frames()) {
        r.hold(txs, sink, counters);
    }
    sink.transactions(txs);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::{Record, VecSink};
    use crate::flow::FlowRecord;
    use crate::packet::LinkType;
    use etherparse::PacketBuilder;

    // One argument per header field the tests vary: clearer at the call sites than a
    // builder for a test helper.
    #[allow(clippy::too_many_arguments)]
    fn tcp(
        src: [u8; 4],
        dst: [u8; 4],
        sp: u16,
        dp: u16,
        seq: u32,
        ack: Option<u32>,
        flags: &str,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 1000);
        for f in flags.chars() {
            b = match f {
                'S' => b.syn(),
                'F' => b.fin(),
                'R' => b.rst(),
                'P' => b.psh(),
                _ => b,
            };
        }
        if let Some(a) = ack {
            b = b.ack(a);
        }
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    fn feed(w: &mut Worker<VecSink>, frame: &[u8], ts_ms: u64) {
        let f = Frame {
            data: frame,
            ts: Timestamp(ts_ms * 1_000_000),
            wire_len: frame.len() as u32,
            link: LinkType::Ethernet,
            obs: 1,
        };
        w.process(&f);
    }

    fn flows(sink: &VecSink) -> Vec<&FlowRecord> {
        sink.records
            .iter()
            .filter_map(|r| {
                if let Record::Flow(f) = r {
                    Some(&**f)
                } else {
                    None
                }
            })
            .collect()
    }

    const C: [u8; 4] = [10, 0, 0, 1];
    const S: [u8; 4] = [10, 0, 0, 2];

    /// A full connection: handshake, one exchange, FIN/FIN/ACK.
    fn connection(w: &mut Worker<VecSink>, port: u16, t0: u64) {
        // Each connection gets its own initial sequence number, as real stacks pick them.
        let isn = 100 + t0 as u32 * 1000;
        feed(w, &tcp(C, S, port, 80, isn, None, "S", b""), t0);
        feed(
            w,
            &tcp(S, C, 80, port, 900, Some(isn + 1), "S", b""),
            t0 + 1,
        );
        feed(w, &tcp(C, S, port, 80, isn + 1, Some(901), "", b""), t0 + 2);
        feed(
            w,
            &tcp(C, S, port, 80, isn + 1, Some(901), "P", b"ping"),
            t0 + 3,
        );
        feed(
            w,
            &tcp(S, C, 80, port, 901, Some(isn + 5), "P", b"pong!"),
            t0 + 4,
        );
        feed(
            w,
            &tcp(C, S, port, 80, isn + 5, Some(906), "F", b""),
            t0 + 5,
        );
        feed(
            w,
            &tcp(S, C, 80, port, 906, Some(isn + 6), "F", b""),
            t0 + 6,
        );
        feed(w, &tcp(C, S, port, 80, isn + 6, Some(907), "", b""), t0 + 7);
    }

    /// A pod's monitoring policy lowers `syn_timeout_ms` for its flows only: a SYN to
    /// the policy's pod is unanswered after 0.5 s, one to another pod is not yet.
    #[test]
    fn a_pods_policy_sets_its_flows_anomaly_thresholds() {
        use crate::k8s::policy::PolicySet;
        use crate::k8s::policy::testing::{pod, policy};
        let db = policy(
            "db",
            serde_json::json!({"selector": {"matchLabels": {"app": "db"}},
                               "anomalies": {"synTimeoutMs": 500}}),
        );
        let other = policy(
            "web",
            serde_json::json!({"selector": {"matchLabels": {"app": "web"}}}),
        );
        let attribution = crate::k8s::Attribution::with_inputs(crate::k8s::Inputs {
            kube: Some(crate::k8s::KubeObjects {
                pods: vec![
                    pod("db-0", "db", "10.0.0.2"),
                    pod("web-0", "web", "10.0.0.3"),
                ],
                ..Default::default()
            }),
            policies: Some(Arc::new(PolicySet::new(vec![db, other]))),
            ..Default::default()
        });
        let hub = Hub::new(8);
        let mut w = Worker::new(&Config::default(), VecSink::default())
            .with_attributor(Some(attribution.attributor()))
            .with_anomalies(Some(hub.clone()), &Default::default());
        feed(&mut w, &tcp(C, S, 40000, 5432, 1, None, "S", b""), 0);
        feed(
            &mut w,
            &tcp(C, [10, 0, 0, 3], 40001, 80, 1, None, "S", b""),
            0,
        );
        w.idle(Timestamp(1_500_000_000));
        let s = hub
            .pop()
            .expect("the db pod's SYN is unanswered after 0.5 s");
        assert_eq!(s.kind, Kind::SynUnanswered);
        assert_eq!(s.server.port, 5432);
        assert!(hub.pop().is_none(), "web-0 keeps the default 5 s");
    }

    #[test]
    fn connection_is_one_flow_with_both_directions() {
        let mut w = Worker::new(&Config::default(), VecSink::default());
        connection(&mut w, 40000, 0);
        let (totals, sink) = w.finish();
        let f = flows(&sink);
        assert_eq!(f.len(), 1);
        let f = f[0];
        assert_eq!(f.client.port, 40000);
        assert_eq!(f.server.port, 80);
        assert_eq!((f.dirs[0].packets, f.dirs[1].packets), (5, 3));
        assert_eq!((f.dirs[0].payload_bytes, f.dirs[1].payload_bytes), (4, 5));
        assert_eq!(f.reason, EndReason::Fin);
        let t = f.tcp.unwrap();
        assert_eq!(
            (t.server_rtt_ns, t.client_rtt_ns),
            (Some(1_000_000), Some(1_000_000))
        );
        assert_eq!(t.reassembled, [4, 5]);
        assert_eq!(totals.packets, 8);
    }

    #[test]
    fn closed_flow_expires_after_linger_and_port_reuse_starts_a_new_flow() {
        let mut w = Worker::new(&Config::default(), VecSink::default());
        connection(&mut w, 40000, 0);
        // Same ports again 100 ms later: a new connection, the old one reported first.
        connection(&mut w, 40000, 100);
        assert_eq!(flows(w.sink_mut()).len(), 1);
        // 10 s of packet clock later (another flow's packet), the second one has lingered out.
        feed(
            &mut w,
            &tcp([10, 9, 9, 9], S, 1234, 80, 1, None, "S", b""),
            10_000,
        );
        assert_eq!(flows(w.sink_mut()).len(), 2);
        assert!(
            flows(w.sink_mut())
                .iter()
                .all(|f| f.reason == EndReason::Fin)
        );
    }

    #[test]
    fn reset_and_idle_expiry() {
        let mut cfg = Config::default();
        cfg.flow.udp_idle_timeout_secs = 2;
        let mut w = Worker::new(&cfg, VecSink::default());
        feed(&mut w, &tcp(C, S, 40001, 80, 1, Some(1), "P", b"x"), 0);
        feed(&mut w, &tcp(S, C, 80, 40001, 1, None, "R", b""), 1);
        let mut udp = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(C, S, 64)
            .udp(5000, 53)
            .write(&mut udp, b"q")
            .unwrap();
        feed(&mut w, &udp, 2);
        feed(
            &mut w,
            &tcp([10, 9, 9, 9], S, 1234, 80, 1, None, "S", b""),
            7_000,
        );
        let got: Vec<_> = flows(w.sink_mut())
            .iter()
            .map(|f| (f.transport(), f.reason))
            .collect();
        assert!(got.contains(&("tcp", EndReason::Rst)), "{got:?}");
        assert!(got.contains(&("udp", EndReason::Idle)), "{got:?}");
        let rst = flows(w.sink_mut())
            .into_iter()
            .find(|f| f.reason == EndReason::Rst)
            .unwrap();
        assert!(rst.tcp.unwrap().midstream);
        assert_eq!(
            rst.tcp.unwrap().stats[1].resets,
            1,
            "the server sent the reset"
        );
    }

    #[test]
    fn full_table_evicts_the_least_recently_seen_flow() {
        let mut cfg = Config::default();
        cfg.flow.max_flows = 2;
        let mut w = Worker::new(&cfg, VecSink::default());
        for (i, port) in [1000u16, 1001, 1000, 1002].into_iter().enumerate() {
            feed(
                &mut w,
                &tcp(C, S, port, 80, 1, Some(1), "P", b"x"),
                i as u64,
            );
        }
        // 1001 was least recently seen when 1002 arrived.
        let evicted: Vec<_> = flows(w.sink_mut())
            .iter()
            .map(|f| (f.client.port, f.reason))
            .collect();
        assert_eq!(evicted, [(1001, EndReason::Evicted)]);
        assert_eq!(w.live_flows(), 2);
        let (totals, _) = w.finish();
        assert_eq!(totals.counters.get(Event::FlowEvicted), 1);
    }

    #[test]
    fn malformed_frames_are_counted_and_skipped() {
        let mut w = Worker::new(&Config::default(), VecSink::default());
        let good = tcp(C, S, 40000, 80, 1, Some(1), "P", b"hello");
        feed(&mut w, &good[..20], 0);
        feed(&mut w, &good[..40], 1);
        feed(&mut w, &good, 2);
        let (totals, sink) = w.finish();
        assert_eq!(totals.counters.get(Event::MalformedIpv4), 1);
        assert_eq!(totals.counters.get(Event::MalformedTcp), 1);
        assert_eq!(flows(&sink).len(), 1);
    }
}
