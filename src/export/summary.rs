//! The human summary: totals, flows by transport and end reason, the busiest flows,
//! calls per endpoint with latency percentiles, and every non-zero drop/error counter.
//! `podtap replay` prints it once for the whole capture, `podtap run --output table` once
//! per interval, for that interval alone.
//!
//! A call between two pods of the node is captured at both veths, so it arrives twice:
//! once seen at the client, once at the server. The table counts it once: every figure is
//! kept per observation side (the client's pod, or anything else: the server's pod or a
//! single tap) and the larger side is printed, and each endpoint shows the latency seen at
//! the server and at the client side by side.
//!
//! The latency percentiles are nearest ranks over a histogram per endpoint and side
//! ([`Latencies`]: exact while an endpoint has seen at most 128 transactions, and up to
//! 127 µs; within 0.8% above), so the table's memory does not
//! grow with the number of transactions a capture holds. Nor with the number of endpoints:
//! past `output.table_max_endpoints` rows, a new endpoint's transactions are counted in
//! one `(other endpoints)` row per protocol, and the table says how many.

use hashbrown::{DefaultHashBuilder, HashTable};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use crate::bytes::same_text;
use crate::events::Counters;
use crate::export::{Record, RecordSink};
use crate::flow::FlowRecord;
use crate::k8s::FlowPods;
use crate::proto::{Endpoint as ProtoEndpoint, Protocol, Tally, Transaction};
use crate::time::Timestamp;
use compact_str::CompactString;

/// Index of a record's observation side: 0 the server's (or a single tap), 1 the client's.
fn side_of_tx(t: &Transaction) -> usize {
    (crate::stats::observed_side(t) == crate::stats::Side::Client) as usize
}

/// [`side_of_tx`] of a flow's transactions, from the flow's pods.
fn side_of_pods(pods: Option<&FlowPods>) -> usize {
    pods.is_some_and(|p| p.observed_side() == Some("client")) as usize
}

fn side_of_flow(f: &FlowRecord) -> usize {
    side_of_pods(f.pods.as_deref())
}

/// A count kept per observation side, printed as the larger side: a call seen at both
/// ends is counted once, one seen at one end only is counted there.
#[derive(Clone, Copy, Default)]
struct PerSide([u64; 2]);

impl PerSide {
    fn once(&self) -> u64 {
        self.0[0].max(self.0[1])
    }
    fn merge(&mut self, o: PerSide) {
        self.0[0] += o.0[0];
        self.0[1] += o.0[1];
    }
}

#[derive(Default)]
struct View {
    count: u64,
    errors: u64,
    incomplete: u64,
    durations: Latencies,
}

/// Latencies in microseconds: the first [`Latencies::EXACT`] as they are, then a
/// log-linear histogram, exact up to 127 µs and with 64 buckets per power of two above,
/// so a percentile is within 0.8% of the true value (the table prints milliseconds to
/// three decimals). Memory stays under 14 KiB per endpoint and side however many
/// transactions a capture holds (a list of every duration grew by four bytes a
/// transaction), and an endpoint seen a few times (a DNS name) keeps a few values only.
#[derive(Clone, Debug, Default, PartialEq)]
struct Latencies {
    /// The values, while there are at most `EXACT` of them.
    exact: Vec<u32>,
    /// Counts per bucket, up to the highest bucket used (once past `EXACT` values).
    counts: Vec<u64>,
    n: u64,
}

impl Latencies {
    const SUB: u32 = 6;
    const EXACT: usize = 128;

    #[inline]
    fn bucket(us: u32) -> usize {
        let e = 31u32.saturating_sub(us.leading_zeros());
        if e < Self::SUB {
            return us as usize;
        }
        let m = (us >> (e - Self::SUB)) & ((1 << Self::SUB) - 1);
        ((e - Self::SUB + 1) << Self::SUB) as usize + m as usize
    }

    /// The middle of bucket `b` (its only value up to 127 µs).
    fn value(b: usize) -> u32 {
        let (hi, m) = ((b >> Self::SUB) as u32, (b & ((1 << Self::SUB) - 1)) as u32);
        if hi <= 1 {
            return b as u32;
        }
        let shift = hi - 1;
        (((1 << Self::SUB) + m) << shift) + ((1 << shift) >> 1)
    }

    /// Once an endpoint has its histogram (the usual case under load), a value is one
    /// bucket count: inlined, with the first values' list and a histogram that has to
    /// grow out of line.
    #[inline(always)]
    fn record(&mut self, us: u32) {
        self.n += 1;
        let b = Self::bucket(us);
        match self.counts.get_mut(b) {
            Some(c) => *c += 1,
            None => self.record_rest(us),
        }
    }

    /// `record` for each of `durations_ns` (nanoseconds, each as many times as its
    /// count: a tally's batch of equal durations). The loop keeps the histogram's
    /// place and the count in registers: through `record`, each value wrote `n` back and
    /// read the histogram's pointer again (a bucket count might have been either, as far
    /// as the compiler knew), a chain of stores and loads through one address.
    fn record_all(&mut self, durations_ns: &[(u64, u32)]) {
        let counts = &mut self.counts[..];
        let (mut done, mut n) = (0, 0);
        for &(ns, k) in durations_ns {
            match counts.get_mut(Self::bucket(micros(ns))) {
                Some(c) => *c += k as u64,
                None => break,
            }
            done += 1;
            n += k as u64;
        }
        self.n += n;
        for &(ns, k) in &durations_ns[done..] {
            for _ in 0..k {
                self.record(micros(ns));
            }
        }
    }

    /// `record`'s rare half: still keeping exact values, or a bucket past the histogram's
    /// end.
    #[inline(never)]
    fn record_rest(&mut self, us: u32) {
        if self.counts.is_empty() && self.exact.len() < Self::EXACT {
            self.exact.push(us);
            return;
        }
        for v in std::mem::take(&mut self.exact) {
            self.count(v);
        }
        self.count(us);
    }

    fn count(&mut self, us: u32) {
        let b = Self::bucket(us);
        if b >= self.counts.len() {
            self.counts.resize(b + 1, 0);
        }
        self.counts[b] += 1;
    }

    fn merge(&mut self, o: &Latencies) {
        let n = self.n + o.n;
        for &v in &o.exact {
            self.record(v);
        }
        if !o.counts.is_empty() {
            for v in std::mem::take(&mut self.exact) {
                self.count(v);
            }
            if o.counts.len() > self.counts.len() {
                self.counts.resize(o.counts.len(), 0);
            }
            for (mine, theirs) in self.counts.iter_mut().zip(&o.counts) {
                *mine += theirs;
            }
        }
        self.n = n;
    }

    fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Nearest-rank percentiles for quantiles `qs` (0 without values).
    fn percentiles<const N: usize>(&self, qs: [f64; N]) -> [u32; N] {
        if self.counts.is_empty() {
            let mut v = self.exact.clone();
            v.sort_unstable();
            return qs.map(|q| {
                let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len().max(1));
                v.get(rank - 1).copied().unwrap_or(0)
            });
        }
        qs.map(|q| {
            let rank = ((q * self.n as f64).ceil() as u64).clamp(1, self.n);
            let mut seen = 0;
            for (b, &c) in self.counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return Self::value(b);
                }
            }
            0
        })
    }
}

#[derive(Default)]
struct Endpoint {
    /// Seen at the server's side (or a single tap), at the client's.
    at: [View; 2],
}

impl Endpoint {
    // Inlined into both of `Summary::count_transaction`'s paths: left to itself the
    // compiler made it a call each (about 15 instructions a transaction more).
    #[inline(always)]
    fn add(&mut self, t: &Transaction) {
        let v = &mut self.at[side_of_tx(t)];
        v.count += 1;
        v.errors += t.error.is_some() as u64;
        v.incomplete += !t.completeness.is_complete() as u64;
        v.durations.record(micros(t.duration_ns()));
    }

    /// Requests counted without records (complete, no error), seen at `side`.
    fn add_tallied(&mut self, side: usize, durations_ns: &[(u64, u32)], requests: u64) {
        let v = &mut self.at[side];
        v.count += requests;
        v.durations.record_all(durations_ns);
    }

    fn once(&self, f: impl Fn(&View) -> u64) -> u64 {
        f(&self.at[0]).max(f(&self.at[1]))
    }
}

/// A duration in nanoseconds as the table keeps it: whole microseconds, rounded.
#[inline(always)]
fn micros(ns: u64) -> u32 {
    (ns.saturating_add(500) / 1000).min(u32::MAX as u64) as u32
}

/// Protocol, server, operation and resource.
type EndpointKey = (Protocol, ProtoEndpoint, CompactString, CompactString);

fn key_hash(s: &DefaultHashBuilder, p: Protocol, e: &ProtoEndpoint, op: &str, res: &str) -> u64 {
    let mut h = s.build_hasher();
    p.hash(&mut h);
    e.hash(&mut h);
    op.hash(&mut h);
    res.hash(&mut h);
    h.finish()
}

/// The operation of the row per protocol that counts the transactions of endpoints beyond
/// [`Summary::new`]'s bound.
const OTHER: &str = "(other endpoints)";

/// Shapes of tallied requests whose rows [`Summary`] remembers (see
/// [`Summary::count_tally`]).
const SHAPE_SLOTS: usize = 256;

/// Connections whose last two rows [`Summary`] remembers (by client port).
const FOLLOW_SLOTS: usize = 64;
/// No row: [`Summary`]'s `after` before it knows one.
const NO_ROW: u32 = u32::MAX;
/// A row number as a `follow` slot keeps it (rows past it are not predicted); also the
/// slot's "no row".
const ROW_MASK: u64 = (1 << 24) - 1;
/// Predictions by a connection's last two rows (a fixed table of 16 KiB: hashed pairs,
/// each prediction checked against the whole key, so a collision only costs a miss).
const PAIR_SLOTS: usize = 4096;

/// The `after` slot of a connection whose last two rows were `before` and `last`.
#[inline(always)]
fn pair_slot(before: u64, last: u64) -> usize {
    ((before << 6 ^ last) as usize) & (PAIR_SLOTS - 1)
}

/// The endpoint rows a summary keeps when not told (`output.table_max_endpoints`).
pub const DEFAULT_MAX_ENDPOINTS: usize = 1000;

/// At most the bytes one endpoint row takes: its entry and index slot, and per side the
/// exact values and the latency histogram at their largest (a bucket for every value up
/// to the largest microsecond count a transaction can have).
pub fn endpoint_max_bytes() -> u64 {
    // The entry and its index slot.
    let entry = std::mem::size_of::<(EndpointKey, Endpoint)>() + std::mem::size_of::<usize>() + 1;
    let side = Latencies::EXACT * 4 + (Latencies::bucket(u32::MAX) + 1) * 8;
    (entry + 2 * side) as u64
}

pub struct Summary {
    flows: PerSide,
    by_transport: BTreeMap<&'static str, (PerSide, PerSide)>,
    by_reason: BTreeMap<&'static str, PerSide>,
    retransmits: PerSide,
    resets: PerSide,
    top: Vec<FlowRecord>,
    /// Once `top` has been trimmed to [`TOP_FLOWS`]: the bytes of the smallest kept. A
    /// later flow of no more bytes can never be listed (equal sizes keep the order they
    /// came in), so it is not kept at all: most flows of a large capture are not.
    top_floor: Option<u64>,
    /// In order of first sight, found through `index` by their key: cloned inline strings,
    /// no formatting per transaction.
    endpoints: Vec<(EndpointKey, Endpoint)>,
    /// Positions in `endpoints`, hashed by key: a transaction's key is looked up from its
    /// borrowed strings, and cloned only when it is new.
    index: HashTable<usize>,
    hasher: DefaultHashBuilder,
    /// The row of the last transaction whose prediction missed: the next such one is
    /// often the same (queries from fresh ports, such as DNS ones), found without hashing
    /// the key.
    last: usize,
    /// By a connection's last two rows ([`pair_slot`]), the row its next transaction
    /// counted in the last time (`NO_ROW`: none yet). Clients repeat their sequences (a
    /// pgbench transaction's seven statements, a service's query after query, a client
    /// that inserts twice and reads twice): the prediction, checked against the whole
    /// key, spares the hashing of most transactions of interleaved connections. Two rows,
    /// not one: after one row alone, an insert, insert, find, find cycle is always
    /// mispredicted (measured: every MongoDB bench transaction missed).
    after: Box<[u32; PAIR_SLOTS]>,
    /// The last two rows of a few recent connections, by client port (the port in the top
    /// 16 bits, then the row before the last and the last, 24 bits each): where their
    /// next transaction's prediction starts. Clients that share a slot or a port only
    /// cost predictions: a predicted row counts a transaction only when its whole key is
    /// the transaction's. Boxed: the summary is moved whole (a replay sink's variant),
    /// the slots are not.
    follow: Box<[u64; FOLLOW_SLOTS]>,
    transactions: PerSide,
    /// The rows of recent tallied shapes (see [`crate::proto::tally`]), by shape number:
    /// the shape, its row, and whether that row is its protocol's `(other endpoints)`.
    /// Shape numbers are never reused, so a shape found is its row.
    shapes: Box<[(u64, u32, bool); SHAPE_SLOTS]>,
    /// Endpoint rows kept, the `(other endpoints)` rows aside: a capture or an interval
    /// with more distinct endpoints (servers x operations) would grow the table without
    /// bound, by up to [`endpoint_max_bytes`] a row.
    max_endpoints: usize,
    /// The `(other endpoints)` rows (one per protocol at most), and the transactions
    /// counted in them.
    others: usize,
    folded: u64,
    /// Transactions whose row was not the predicted one (tests read it).
    mispredicted: u64,
}

impl Default for Summary {
    fn default() -> Self {
        Summary::new(DEFAULT_MAX_ENDPOINTS)
    }
}

const TOP_FLOWS: usize = 10;

/// What `podtap run` adds to an interval's table.
pub struct Interval {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Flows open at the end of the interval (flow-table entries of all workers).
    pub open_flows: u64,
}

impl Summary {
    /// A summary keeping at most `max_endpoints` endpoint rows (at least one), and one
    /// `(other endpoints)` row per protocol for the transactions of the endpoints after.
    pub fn new(max_endpoints: usize) -> Summary {
        Summary {
            flows: PerSide::default(),
            by_transport: BTreeMap::new(),
            by_reason: BTreeMap::new(),
            retransmits: PerSide::default(),
            resets: PerSide::default(),
            top: Vec::new(),
            top_floor: None,
            endpoints: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            last: 0,
            after: Box::new([NO_ROW; PAIR_SLOTS]),
            follow: Box::new([u64::MAX; FOLLOW_SLOTS]),
            transactions: PerSide::default(),
            shapes: Box::new([(0, 0, false); SHAPE_SLOTS]),
            max_endpoints: max_endpoints.max(1),
            others: 0,
            folded: 0,
            mispredicted: 0,
        }
    }

    pub fn add(&mut self, r: &Record) {
        match r {
            Record::Flow(f) => {
                if self.count_flow(f) {
                    self.keep_flow(FlowRecord::clone(f));
                }
            }
            Record::Transaction(t) => self.count_transaction(t),
            Record::Anomaly(_) => {}
        }
    }

    /// Count `f`. True if it may be among the top flows: then keep it with
    /// [`Summary::keep_flow`]; most flows of a large capture are not, and are never copied.
    fn count_flow(&mut self, f: &FlowRecord) -> bool {
        let side = side_of_flow(f);
        let bytes = f.dirs[0].bytes + f.dirs[1].bytes;
        self.flows.0[side] += 1;
        let e = self.by_transport.entry(f.transport()).or_default();
        e.0.0[side] += 1;
        e.1.0[side] += bytes;
        self.by_reason.entry(f.reason.as_str()).or_default().0[side] += 1;
        if let Some(t) = &f.tcp {
            self.retransmits.0[side] += t.stats[0].retransmits + t.stats[1].retransmits;
            self.resets.0[side] += t.stats[0].resets + t.stats[1].resets;
        }
        self.top_floor.is_none_or(|floor| bytes > floor)
    }

    fn keep_flow(&mut self, f: FlowRecord) {
        self.top.push(f);
        if self.top.len() > TOP_FLOWS * 4 {
            self.trim_top();
        }
    }

    fn count_transaction(&mut self, t: &Transaction) {
        self.transactions.0[side_of_tx(t)] += 1;
        let port = t.client.port;
        // The rows this client port's last two transactions counted in, and the row that
        // followed those two the last time: the prediction, checked against the whole key.
        let f = self.follow[port as usize % FOLLOW_SLOTS];
        // A port new to its slot starts as every new port does (no rows), not from the
        // rows of the port it displaces.
        let (before, last) = if (f >> 48) as u16 == port {
            (f >> 24 & ROW_MASK, f & ROW_MASK)
        } else {
            (ROW_MASK, ROW_MASK)
        };
        let slot = pair_slot(before, last);
        let predicted = self.after[slot] as usize;
        let i = match self.endpoints.get(predicted) {
            Some((k, _)) if Self::is(k, t) => predicted,
            _ => self.row_of(t, slot),
        };
        self.remember_last(port, last, i);
        if let Some((_, e)) = self.endpoints.get_mut(i) {
            e.add(t);
        }
    }

    /// Requests a decoder counted without records (see [`RecordSink::wants_records`]),
    /// of a flow to `server` with `pods`: each run's row is found once by its shape.
    fn count_tally(&mut self, t: &Tally, server: ProtoEndpoint, pods: Option<&FlowPods>) {
        let side = side_of_pods(pods);
        self.transactions.0[side] += t.len() as u64;
        for (run, durations) in t.runs() {
            let slot = (run.shape % SHAPE_SLOTS as u64) as usize;
            let (row, folded) = match self.shapes[slot] {
                (shape, row, folded) if shape == run.shape => (row as usize, folded),
                _ => {
                    let (row, folded) =
                        self.endpoint(run.protocol, server, &run.operation, &run.resource);
                    self.shapes[slot] = (run.shape, row as u32, folded);
                    (row, folded)
                }
            };
            let requests: u64 = durations.iter().map(|&(_, k)| k as u64).sum();
            if folded {
                self.folded += requests;
            }
            if let Some((_, e)) = self.endpoints.get_mut(row) {
                e.add_tallied(side, durations, requests);
            }
        }
    }

    /// Whether `k` is the key of `t`'s row.
    #[inline(always)]
    fn is(k: &EndpointKey, t: &Transaction) -> bool {
        (k.0, k.1) == (t.protocol, t.server)
            && same_text(k.2.as_bytes(), t.operation.as_bytes())
            && same_text(k.3.as_bytes(), t.resource.as_bytes())
    }

    /// The row of `t` when its connection's prediction missed (`slot`: where it was read
    /// in `after`): the row of the last such transaction again (clients on fresh ports,
    /// such as DNS queries, repeat an endpoint too), or found (or added) by its key.
    /// Learnt as the prediction of `slot`. Out of line: the predicted case stays small.
    #[inline(never)]
    fn row_of(&mut self, t: &Transaction, slot: usize) -> usize {
        self.mispredicted += 1;
        let i = match self.endpoints.get(self.last) {
            Some((k, _)) if Self::is(k, t) => self.last,
            _ => {
                let (i, folded) = self.endpoint(t.protocol, t.server, &t.operation, &t.resource);
                self.folded += folded as u64;
                i
            }
        };
        self.after[slot] = i as u32;
        self.last = i;
        i
    }

    /// Remember `row` as client `port`'s last, after `before`.
    #[inline(always)]
    fn remember_last(&mut self, port: u16, before: u64, row: usize) {
        let row = (row as u64).min(ROW_MASK);
        self.follow[port as usize % FOLLOW_SLOTS] = (port as u64) << 48 | before << 24 | row;
    }

    /// Index in `endpoints` of the key's entry, added if new; once `max_endpoints` rows
    /// are kept, a new key's transactions go to its protocol's `(other endpoints)` row
    /// (`true`: folded there).
    fn endpoint(
        &mut self,
        p: Protocol,
        server: ProtoEndpoint,
        op: &str,
        res: &str,
    ) -> (usize, bool) {
        if let Some(i) = self.find(p, server, op, res) {
            return (i, false);
        }
        // An `(other endpoints)` row merged from another summary: its transactions were
        // folded (and counted) there.
        if Self::is_other(server, op, res)
            || self.endpoints.len() - self.others < self.max_endpoints
        {
            return (self.insert(p, server, op, res), false);
        }
        let other = ProtoEndpoint::default();
        let i = match self.find(p, other, OTHER, "") {
            Some(i) => i,
            None => self.insert(p, other, OTHER, ""),
        };
        (i, true)
    }

    fn find(&self, p: Protocol, server: ProtoEndpoint, op: &str, res: &str) -> Option<usize> {
        let h = key_hash(&self.hasher, p, &server, op, res);
        let eps = &self.endpoints;
        let same = |&i: &usize| {
            let k = &eps[i].0;
            k.0 == p && k.1 == server && k.2 == op && k.3 == res
        };
        self.index.find(h, same).copied()
    }

    fn is_other(server: ProtoEndpoint, op: &str, res: &str) -> bool {
        op == OTHER && res.is_empty() && server == ProtoEndpoint::default()
    }

    fn insert(&mut self, p: Protocol, server: ProtoEndpoint, op: &str, res: &str) -> usize {
        if Self::is_other(server, op, res) {
            self.others += 1;
        }
        let h = key_hash(&self.hasher, p, &server, op, res);
        let next = self.endpoints.len();
        self.endpoints
            .push(((p, server, op.into(), res.into()), Endpoint::default()));
        let (eps, hasher) = (&self.endpoints, &self.hasher);
        self.index.insert_unique(h, next, |&i| {
            let k = &eps[i].0;
            key_hash(hasher, k.0, &k.1, &k.2, &k.3)
        });
        next
    }

    /// Add another summary's counts (one per replay worker) to this one.
    pub fn merge(&mut self, other: Summary) {
        self.flows.merge(other.flows);
        for (t, (n, b)) in other.by_transport {
            let e = self.by_transport.entry(t).or_default();
            e.0.merge(n);
            e.1.merge(b);
        }
        for (r, n) in other.by_reason {
            self.by_reason.entry(r).or_default().merge(n);
        }
        self.retransmits.merge(other.retransmits);
        self.resets.merge(other.resets);
        self.top.extend(other.top);
        self.trim_top();
        self.folded += other.folded;
        for (k, o) in other.endpoints {
            let (i, folded) = self.endpoint(k.0, k.1, &k.2, &k.3);
            if folded {
                self.folded += o.at[0].count + o.at[1].count;
            }
            let e = &mut self.endpoints[i].1;
            for (mine, theirs) in e.at.iter_mut().zip(o.at) {
                mine.count += theirs.count;
                mine.errors += theirs.errors;
                mine.incomplete += theirs.incomplete;
                mine.durations.merge(&theirs.durations);
            }
        }
        self.transactions.merge(other.transactions);
    }

    /// Keep the biggest flows, each connection once: one seen at both pods' veths arrives
    /// as two records, and the server's side (or the tap's) is the one listed.
    fn trim_top(&mut self) {
        self.top.sort_by_key(|f| {
            (
                std::cmp::Reverse(f.dirs[0].bytes + f.dirs[1].bytes),
                side_of_flow(f),
            )
        });
        let mut kept: Vec<FlowRecord> = Vec::with_capacity(TOP_FLOWS);
        for f in self.top.drain(..) {
            if kept.len() == TOP_FLOWS {
                break;
            }
            let same = |k: &FlowRecord| {
                (k.client, k.server, k.ip_proto) == (f.client, f.server, f.ip_proto)
                    && (k.vlan, k.tunnel) == (f.vlan, f.tunnel)
            };
            if !kept.iter().any(same) {
                kept.push(f);
            }
        }
        self.top = kept;
        if self.top.len() == TOP_FLOWS {
            self.top_floor = self.top.last().map(|f| f.dirs[0].bytes + f.dirs[1].bytes);
        }
    }

    /// Render the tables (`podtap replay`: the whole capture).
    pub fn render(&mut self, packets: u64, bytes: u64, counters: &Counters) -> String {
        let mut s = String::from("== podtap summary ==\n");
        self.render_body(&mut s, packets, bytes, None, counters);
        s
    }

    /// Render one interval of `podtap run --output table`: its own figures, headed by its
    /// start and end.
    pub fn render_interval(
        &mut self,
        iv: &Interval,
        packets: u64,
        bytes: u64,
        counters: &Counters,
    ) -> String {
        let mut s = format!(
            "== podtap {} .. {} ({:.1} s) ==\n",
            iv.from.rfc3339(),
            iv.to.rfc3339(),
            iv.to.since(iv.from) as f64 / 1e9
        );
        self.render_body(&mut s, packets, bytes, Some(iv.open_flows), counters);
        s
    }

    fn render_body(
        &mut self,
        s: &mut String,
        packets: u64,
        bytes: u64,
        open_flows: Option<u64>,
        counters: &Counters,
    ) {
        self.trim_top();
        let open = open_flows.map_or(String::new(), |n| format!("  open flows {n}"));
        let _ = writeln!(
            s,
            "packets {packets}  bytes {bytes}  flows {}{open}  transactions {}",
            self.flows.once(),
            self.transactions.once()
        );
        let _ = writeln!(
            s,
            "tcp retransmits {}  resets {}",
            self.retransmits.once(),
            self.resets.once()
        );
        let _ = writeln!(s, "\n{:<10} {:>10} {:>14}", "transport", "flows", "bytes");
        for (t, (n, b)) in &self.by_transport {
            let _ = writeln!(s, "{t:<10} {:>10} {:>14}", n.once(), b.once());
        }
        let _ = writeln!(s, "\n{:<10} {:>10}", "end", "flows");
        for (r, n) in &self.by_reason {
            let _ = writeln!(s, "{r:<10} {:>10}", n.once());
        }
        if !self.top.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<46} {:<5} {:>12} {:>12} {:>7}",
                "top flows (client -> server)", "proto", "bytes c->s", "bytes s->c", "retrans"
            );
            for f in &self.top {
                let name = format!(
                    "{}:{} -> {}:{}",
                    f.client.addr, f.client.port, f.server.addr, f.server.port
                );
                let rt = f
                    .tcp
                    .as_ref()
                    .map_or(0, |t| t.stats[0].retransmits + t.stats[1].retransmits);
                // The application protocol where one was decoded, else the transport.
                let proto = match f.protocol {
                    Protocol::Unknown => f.transport(),
                    p => p.as_str(),
                };
                let _ = writeln!(
                    s,
                    "{name:<46} {proto:<5} {:>12} {:>12} {rt:>7}",
                    f.dirs[0].bytes, f.dirs[1].bytes
                );
            }
        }
        if !self.endpoints.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<10} {:<24} {:<36} {:>7} {:>6} {:>6} {:>10} {:>10} {:>10} {:>10}",
                "protocol",
                "server",
                "operation",
                "count",
                "errors",
                "incomp",
                "srv p50 ms",
                "srv p99 ms",
                "cli p50 ms",
                "cli p99 ms"
            );
            let mut rows: Vec<_> = self.endpoints.iter_mut().map(|(k, e)| (&*k, e)).collect();
            rows.sort_by(|a, b| {
                b.1.once(|v| v.count)
                    .cmp(&a.1.once(|v| v.count))
                    .then_with(|| {
                        (a.0.2.as_str(), a.0.3.as_str()).cmp(&(b.0.2.as_str(), b.0.3.as_str()))
                    })
            });
            for ((proto, server, op, res), e) in rows.into_iter().take(50) {
                let (count, errors, incomplete) = (
                    e.once(|v| v.count),
                    e.once(|v| v.errors),
                    e.once(|v| v.incomplete),
                );
                let [srv, cli] = e.at.each_mut().map(|v| {
                    if v.durations.is_empty() {
                        return ["-".to_string(), "-".to_string()];
                    }
                    v.durations
                        .percentiles([0.50, 0.99])
                        .map(|p| format!("{:.3}", p as f64 / 1e3))
                });
                let proto = proto.as_str();
                let server = if op == OTHER {
                    "*".to_string()
                } else {
                    format!("{}:{}", server.addr, server.port)
                };
                let op: String = format!("{op} {res}").chars().take(36).collect();
                let _ = writeln!(
                    s,
                    "{proto:<10} {server:<24} {op:<36} {count:>7} {errors:>6} {incomplete:>6} {:>10} {:>10} {:>10} {:>10}",
                    srv[0], srv[1], cli[0], cli[1]
                );
            }
            if self.folded > 0 {
                let _ = writeln!(
                    s,
                    "{} transactions of endpoints after the first {} are in the {OTHER} rows \
                     (output.table_max_endpoints)",
                    self.folded, self.max_endpoints
                );
            }
        }
        let nonzero: Vec<_> = counters.nonzero().collect();
        if !nonzero.is_empty() {
            let _ = writeln!(s, "\n{:<32} {:>10}  meaning", "event", "count");
            for (e, n) in nonzero {
                let _ = writeln!(s, "{:<32} {n:>10}  {}", e.name(), e.help());
            }
        }
    }
}

/// A replay worker summarising its own records (`--output table`): nothing else needs them.
/// Handing each transaction to a writer thread only to count it there cost more than
/// counting it here: a copy into the batch, and the allocator's and the caches' traffic of
/// freeing on one CPU what another built (7% of the wall time on small HTTP transactions).
impl RecordSink for Summary {
    fn flow(&mut self, rec: FlowRecord) {
        if self.count_flow(&rec) {
            self.keep_flow(rec);
        }
    }

    fn transaction(&mut self, tx: Transaction) {
        self.count_transaction(&tx);
    }

    fn transactions(&mut self, txs: &mut Vec<Transaction>) {
        for tx in txs.iter() {
            self.count_transaction(tx);
        }
        txs.clear();
    }

    /// A table counts: plain requests need no records.
    fn wants_records(&self) -> bool {
        false
    }

    fn tally(&mut self, t: &Tally, server: &ProtoEndpoint, pods: Option<&Arc<FlowPods>>) {
        self.count_tally(t, *server, pods.map(|p| &**p));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Timestamp;

    fn tx(server_port: u16, path: &str, duration_us: u64, error: bool) -> Transaction {
        let mut t = Transaction::new(Protocol::Http, Timestamp::from_secs_nanos(1, 0));
        t.end = t.start.add_nanos(duration_us * 1000 + 400);
        t.server.port = server_port;
        t.operation = "GET".into();
        t.resource = path.into();
        t.error = error.then(|| "500".into());
        t
    }

    fn mixed() -> Vec<Transaction> {
        // Runs of one endpoint and alternations, so that the last-endpoint shortcut both
        // hits and misses.
        (0..300u64)
            .map(|i| {
                let (port, path) = match i % 7 {
                    0..=3 => (80, "/a"),
                    4 => (80, "/b"),
                    5 => (8080, "/a"),
                    _ => (80, "/c"),
                };
                tx(port, path, i * 37 % 1000, i % 11 == 0)
            })
            .collect()
    }

    /// Per endpoint, sorted: key, count, errors and every duration.
    fn rows(s: &Summary) -> Vec<(EndpointKey, u64, u64, Latencies)> {
        let mut v: Vec<_> = s
            .endpoints
            .iter()
            .map(|(k, e)| {
                let mut d = e.at[0].durations.clone();
                d.merge(&e.at[1].durations);
                d.exact.sort_unstable();
                (k.clone(), e.once(|v| v.count), e.once(|v| v.errors), d)
            })
            .collect();
        v.sort_by(|a, b| (a.0.1.port, &a.0.3).cmp(&(b.0.1.port, &b.0.3)));
        v
    }

    #[test]
    fn transactions_are_counted_per_endpoint_whatever_their_order() {
        let txs = mixed();
        let mut one = Summary::default();
        for t in &txs {
            one.add(&Record::Transaction(t.clone()));
        }
        let r = rows(&one);
        assert_eq!(r.len(), 4);
        let count = |port: u16, path: &str| {
            txs.iter()
                .filter(|t| t.server.port == port && t.resource == path)
                .count() as u64
        };
        for (k, n, errors, d) in &r {
            assert_eq!(*n, count(k.1.port, &k.3), "{k:?}");
            assert_eq!(d.n, *n);
            let want_errors = txs
                .iter()
                .filter(|t| (t.server.port, &t.resource) == (k.1.port, &k.3) && t.error.is_some())
                .count() as u64;
            assert_eq!(*errors, want_errors, "{k:?}");
        }
        assert_eq!(one.transactions.once(), 300);
        // Microseconds, rounded: 37 us and 400 ns is 37 us.
        assert!(r[0].3.counts[Latencies::bucket(37)] > 0);
    }

    /// Interleaved connections, each repeating a sequence of rows (the predicted case),
    /// with clients whose ports share a prediction slot or are the same port of another
    /// address, and one connection in random order: every transaction is counted in its
    /// own row, as a plain count per key says, and nothing more is folded than the bound
    /// asks.
    #[test]
    fn predicted_rows_count_exactly_what_their_keys_say() {
        let seq = ["/begin", "/a", "/b", "/a", "/c", "/end"];
        let mut txs = Vec::new();
        let mut r = crate::test_rng::rng(0x9e37_79b9);
        for round in 0..40 {
            // Ports 1000 and 1064 share a slot; 1000 also comes from a second address.
            for (client, a) in [(1000, 1), (1064, 1), (1000, 2), (2000, 1), (3000, 1)] {
                let mut t = tx(80, "", 10, false);
                t.client = ProtoEndpoint {
                    addr: std::net::Ipv4Addr::new(10, 0, 0, a).into(),
                    port: client,
                };
                t.resource = if client == 3000 {
                    seq[r(seq.len() as u64) as usize].into()
                } else {
                    seq[(round + client as usize) % seq.len()].into()
                };
                txs.push(t);
            }
        }
        for bound in [1000, 3] {
            let mut s = Summary::new(bound);
            for t in &txs {
                s.count_transaction(t);
            }
            let mut want: std::collections::HashMap<&str, u64> = Default::default();
            for t in &txs {
                *want.entry(t.resource.as_str()).or_default() += 1;
            }
            let kept: Vec<_> = s.endpoints.iter().filter(|(k, _)| k.2 != OTHER).collect();
            assert_eq!(kept.len(), bound.min(seq.len() - 1), "bound {bound}");
            for (k, e) in &kept {
                assert_eq!(
                    e.once(|v| v.count),
                    want[k.3.as_str()],
                    "{k:?}, bound {bound}"
                );
            }
            let folded: u64 = want
                .iter()
                .filter(|(r, _)| !kept.iter().any(|(k, _)| k.3 == **r))
                .map(|(_, n)| n)
                .sum();
            assert_eq!(s.folded, folded, "bound {bound}");
            assert_eq!(
                row_count(&s, Protocol::Http, OTHER),
                folded,
                "bound {bound}"
            );
            assert_eq!(s.transactions.once(), txs.len() as u64);
        }
    }

    /// Interleaved connections that each repeat insert, insert, find, find (what the
    /// MongoDB bench's clients do): after a first round each transaction's row is the
    /// predicted one. A prediction by the last row alone misses every one of them.
    #[test]
    fn a_two_and_two_cycle_is_predicted_once_learnt() {
        let mut s = Summary::new(1000);
        let cycle = ["insert", "insert", "find", "find"];
        let mut learnt = 0;
        for round in 0..50 {
            for op in cycle {
                for client in [40000u16, 40001, 40002, 40003] {
                    let mut t = tx(27017, "", 10, false);
                    t.client.port = client;
                    t.operation = op.into();
                    t.resource = format!("items{}", client - 40000).as_str().into();
                    s.count_transaction(&t);
                }
            }
            if round == 1 {
                learnt = s.mispredicted;
            }
        }
        assert!(learnt > 0);
        assert_eq!(
            s.mispredicted, learnt,
            "mispredicted after the first rounds"
        );
        for c in 0..4 {
            for op in ["insert", "find"] {
                let n = s
                    .endpoints
                    .iter()
                    .find(|(k, _)| k.2 == op && k.3 == format!("items{c}").as_str())
                    .map(|(_, e)| e.once(|v| v.count));
                assert_eq!(n, Some(100), "{op} items{c}");
            }
        }
    }

    fn flow(port: u16, bytes: u64) -> FlowRecord {
        let ep = |port| ProtoEndpoint {
            addr: std::net::Ipv4Addr::LOCALHOST.into(),
            port,
        };
        FlowRecord {
            obs: 0,
            vlan: 0,
            tunnel: Default::default(),
            ip_proto: 6,
            client: ep(port),
            server: ep(80),
            first: Timestamp::default(),
            last: Timestamp::default(),
            dirs: [
                crate::flow::DirCounters {
                    bytes,
                    ..Default::default()
                },
                Default::default(),
            ],
            reason: crate::flow::EndReason::Fin,
            protocol: Protocol::Unknown,
            tcp: None,
            tls: None,
            pods: None,
            unreported: Default::default(),
        }
    }

    #[test]
    fn top_flows_are_the_biggest_first_come_first_listed() {
        // Sizes with many ties, in scrambled order; the client port names each flow.
        let flows: Vec<FlowRecord> = (0..500u16)
            .map(|i| flow(i, u64::from(i) * 7 % 61))
            .collect();
        let mut want: Vec<&FlowRecord> = flows.iter().collect();
        want.sort_by_key(|f| std::cmp::Reverse(f.dirs[0].bytes));
        let want: Vec<u16> = want[..TOP_FLOWS].iter().map(|f| f.client.port).collect();
        let listed = |s: &mut Summary| {
            s.trim_top();
            s.top.iter().map(|f| f.client.port).collect::<Vec<_>>()
        };
        let mut one = Summary::default();
        for f in &flows {
            one.add(&Record::Flow(Box::new(f.clone())));
        }
        assert_eq!(listed(&mut one), want);
        assert_eq!(one.flows.once(), 500);
        // Split between two workers' summaries (by value, as their sinks get them), merged
        // in worker order: the first worker's flows come first among equals.
        let (mut a, mut b) = (Summary::default(), Summary::default());
        for f in &flows[..200] {
            RecordSink::flow(&mut a, f.clone());
        }
        for f in &flows[200..] {
            RecordSink::flow(&mut b, f.clone());
        }
        a.merge(b);
        assert_eq!(listed(&mut a), want);
        assert_eq!(a.flows.once(), 500);
        let bytes: u64 = flows.iter().map(|f| f.dirs[0].bytes).sum();
        let (n, b) = a.by_transport["tcp"];
        assert_eq!((n.once(), b.once()), (500, bytes));
    }

    #[test]
    fn merged_worker_summaries_equal_one_summary_of_everything() {
        let txs = mixed();
        let mut one = Summary::default();
        let (mut a, mut b) = (Summary::default(), Summary::default());
        for (i, t) in txs.iter().enumerate() {
            one.add(&Record::Transaction(t.clone()));
            // As a worker's sink: by the batch, split unevenly.
            let w = if i % 3 == 0 { &mut a } else { &mut b };
            w.transactions(&mut vec![t.clone()]);
        }
        a.merge(b);
        assert_eq!(rows(&a), rows(&one));
        assert_eq!(a.transactions.0, one.transactions.0);
        let c = Counters::default();
        assert_eq!(a.render(1, 2, &c), one.render(1, 2, &c));
    }

    /// Pods `web` (client) and `api` (server) on one node: every call and connection is
    /// captured at both veths. The table lists each call and each flow once, with the
    /// latency seen at each side, the application protocol of the flow, and a 404 as an
    /// error only where the client saw it.
    #[test]
    fn a_call_seen_at_both_pods_is_one_row_with_both_sides_latency() {
        use crate::k8s::{FlowPods, Peer, PodMeta};
        use std::sync::Arc;
        let web = Arc::new(PodMeta {
            name: Some("web-1".into()),
            ..Default::default()
        });
        let api = Arc::new(PodMeta {
            name: Some("api-1".into()),
            ..Default::default()
        });
        let at = |obs: &Arc<PodMeta>| {
            Some(Arc::new(FlowPods {
                obs: Some(obs.clone()),
                client: Peer::Pod(web.clone()),
                server: Peer::Pod(api.clone()),
                selected: true,
                ..Default::default()
            }))
        };
        let mut s = Summary::default();
        for i in 0..10u64 {
            // The server answers in 1 ms; the client sees 1 ms plus 200 us of network.
            let mut srv = tx(80, "/a", 1000 + i, false);
            srv.pods = at(&api);
            let mut cli = tx(80, "/a", 1200 + i, false);
            cli.pods = at(&web);
            if i == 0 {
                srv.status = Some(404);
                cli.status = Some(404);
                cli.error = Some("404".into());
            }
            s.add(&Record::Transaction(srv));
            s.add(&Record::Transaction(cli));
        }
        for obs in [&api, &web] {
            let mut f = flow(40000, 5000);
            f.protocol = Protocol::Http;
            f.pods = at(obs);
            s.add(&Record::Flow(Box::new(f)));
        }
        let table = s.render(0, 0, &Counters::default());
        assert!(table.contains("flows 1  transactions 10"), "{table}");
        let row: Vec<&str> = table
            .lines()
            .find(|l| l.contains("GET /a"))
            .unwrap()
            .split_whitespace()
            .collect();
        // protocol server GET /a count errors incomp srv-p50 srv-p99 cli-p50 cli-p99
        assert_eq!(
            row[4..],
            ["10", "1", "0", "1.004", "1.009", "1.204", "1.209"]
        );
        let top: Vec<&str> = table.lines().filter(|l| l.contains(" -> ")).collect();
        assert_eq!(top.len(), 2, "heading and one flow: {table}");
        assert!(top[1].contains(" http "), "{}", top[1]);
    }

    #[test]
    fn an_interval_table_is_headed_by_its_times_and_shows_open_flows() {
        let mut s = Summary::default();
        s.add(&Record::Transaction(tx(80, "/a", 10, false)));
        let iv = Interval {
            from: Timestamp::from_secs_nanos(1_700_000_000, 0),
            to: Timestamp::from_secs_nanos(1_700_000_010, 0),
            open_flows: 3,
        };
        let t = s.render_interval(&iv, 5, 500, &Counters::default());
        assert!(t.starts_with("== podtap 2023-11-14T22:13:20"), "{t}");
        assert!(t.lines().next().unwrap().ends_with("(10.0 s) =="), "{t}");
        assert!(
            t.contains("packets 5  bytes 500  flows 0  open flows 3  transactions 1"),
            "{t}"
        );
    }

    fn latencies(values: impl IntoIterator<Item = u32>) -> Latencies {
        let mut l = Latencies::default();
        for v in values {
            l.record(v);
        }
        l
    }

    #[test]
    fn recording_many_at_once_is_recording_each() {
        // Nanoseconds with how many times each: the first values kept exact, then a
        // histogram, then values past its end (the loop's way out), then more within it.
        let ns: Vec<(u64, u32)> = (0..300u64)
            .map(|i| (i * 997 % 50_000, 1 + (i % 3) as u32))
            .chain([
                (10_000_000_000, 2),
                (3_000, 1),
                (7_000_000, 5),
                (0, 1),
                (u64::MAX, 1),
            ])
            .chain((0..300u64).map(|i| (i * 7_919 % 9_000_000, 1 + (i % 2) as u32)))
            .collect();
        let each = ns
            .iter()
            .flat_map(|&(v, k)| std::iter::repeat_n(micros(v), k as usize));
        let each = latencies(each);
        for cut in [0, 1, 42, 43, 100, 300, 303, ns.len()] {
            let mut all = Latencies::default();
            all.record_all(&ns[..cut]);
            all.record_all(&ns[cut..]);
            assert_eq!(all, each, "cut at {cut}");
        }
    }

    #[test]
    fn percentiles_are_nearest_ranks_exact_below_128_us() {
        let l = latencies((1..=100).rev());
        assert_eq!(l.percentiles([0.5, 0.9, 0.99]), [50, 90, 99]);
        assert_eq!(l.percentiles([0.99, 0.5]), [99, 50]);
        assert_eq!(latencies([7]).percentiles([0.5, 0.9]), [7, 7]);
        assert_eq!(Latencies::default().percentiles([0.9]), [0]);
        // Against a full sort, on values with repeats in scrambled order.
        let v: Vec<u32> = (0..1001u32).map(|i| i * 7919 % 113).collect();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let qs: [f64; 6] = [0.01, 0.5, 0.5, 0.9, 0.99, 1.0];
        let want = qs.map(|q| sorted[((q * 1001.0).ceil() as usize).clamp(1, 1001) - 1]);
        assert_eq!(latencies(v).percentiles(qs), want);
    }

    #[test]
    fn larger_latencies_are_within_a_percent_and_memory_is_bounded() {
        // Every value lands in a bucket whose middle is within 0.8% of it.
        for us in (0..32).flat_map(|e| [1u32 << e, (1 << e) + 1, (3u32 << e) / 2, u32::MAX >> e]) {
            let got = latencies([us]).percentiles([0.5])[0];
            let err = (got as f64 - us as f64).abs() / us as f64;
            assert!(err <= 0.008, "{us} µs read back as {got}");
        }
        // The nearest rank of a million spread values, against a full sort.
        let v: Vec<u32> = (0..1_000_000u32)
            .map(|i| i.wrapping_mul(2_654_435_761) % 5_000_000)
            .collect();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let l = latencies(v);
        for (q, got) in [0.5, 0.99].into_iter().zip(l.percentiles([0.5, 0.99])) {
            let want = sorted[(q * 1e6) as usize - 1] as f64;
            assert!(
                (got as f64 - want).abs() / want <= 0.008,
                "p{q}: {got} vs {want}"
            );
        }
        // The largest value a u32 holds needs the last bucket: the bound on the counts.
        let max = latencies(std::iter::repeat_n(u32::MAX, Latencies::EXACT + 1));
        assert_eq!(max.counts.len(), Latencies::bucket(u32::MAX) + 1);
        assert!(max.counts.len() * 8 < 14 << 10);
        assert!(max.exact.capacity() == 0);
        // A few values are kept as they are: exact percentiles, little memory.
        let few = latencies([1009, 1001, 1005]);
        assert_eq!(few.percentiles([0.5, 1.0]), [1005, 1009]);
        assert!(few.counts.is_empty());
        // Merging a few into a histogram, and a histogram into a few, counts them all.
        let mut a = latencies(0..200);
        a.merge(&latencies([5000, 6000]));
        let mut b = latencies([5000, 6000]);
        b.merge(&latencies(0..200));
        assert_eq!((a.n, b.n), (202, 202));
        assert_eq!(a.percentiles([0.5, 1.0]), b.percentiles([0.5, 1.0]));
    }

    /// Transactions counted in `s`'s rows of `p` whose operation is `op`.
    fn row_count(s: &Summary, p: Protocol, op: &str) -> u64 {
        s.endpoints
            .iter()
            .filter(|(k, _)| k.0 == p && k.2 == op)
            .map(|(_, e)| e.at[0].count + e.at[1].count)
            .sum()
    }

    #[test]
    fn tallied_requests_make_the_table_their_records_make() {
        // Runs of shapes over endpoints beyond the bound (three rows kept): each request
        // counted by a record in one summary and tallied in the other.
        let shapes: Vec<(u16, &str, u64)> = (0..6)
            .map(|i| {
                (
                    8000 + i / 2,
                    ["/a", "/b"][i as usize % 2],
                    crate::proto::tally::new_shape(),
                )
            })
            .collect();
        let (mut by_record, mut by_tally) = (Summary::new(3), Summary::new(3));
        let mut tally = Tally::new(true);
        for round in 0..40u64 {
            let (port, path, shape) = shapes[(round * 7 % 6) as usize];
            let server = ProtoEndpoint {
                port,
                ..Default::default()
            };
            // Up to five requests a round, some of equal durations (one tally entry).
            for k in 0..(round % 5 + 1) {
                let t = tx(port, path, round * 37 + k / 2, false);
                by_record.count_transaction(&t);
                tally.count(
                    Protocol::Http,
                    shape,
                    &t.operation,
                    &t.resource,
                    t.duration_ns(),
                );
            }
            by_tally.count_tally(&tally, server, None);
            tally.clear();
        }
        assert!(by_record.folded > 0);
        assert_eq!(by_tally.folded, by_record.folded);
        let c = Counters::default();
        assert_eq!(by_tally.render(0, 0, &c), by_record.render(0, 0, &c));
    }

    #[test]
    fn endpoints_beyond_the_bound_are_counted_in_one_other_row_per_protocol() {
        let fill = |s: &mut Summary, ports: std::ops::Range<u16>| {
            for port in ports {
                for _ in 0..2 {
                    s.count_transaction(&tx(port, "/a", 100, false));
                }
            }
            let mut dns = tx(53, "x", 10, false);
            dns.protocol = Protocol::Dns;
            s.count_transaction(&dns);
        };
        let mut s = Summary::new(3);
        fill(&mut s, 8000..8010);
        // Three rows kept, and one (other endpoints) row each for HTTP and DNS.
        assert_eq!(s.endpoints.len(), 5);
        assert_eq!(s.folded, 15);
        assert_eq!(row_count(&s, Protocol::Http, OTHER), 14);
        assert_eq!(row_count(&s, Protocol::Dns, OTHER), 1);
        assert_eq!(s.transactions.once(), 21);
        let out = s.render(0, 0, &Counters::default());
        assert!(out.contains("(other endpoints)"), "{out}");
        assert!(
            out.contains("15 transactions of endpoints after the first 3"),
            "{out}"
        );
        // Merged (replay's workers), the bound holds and nothing is lost.
        let mut other = Summary::new(3);
        fill(&mut other, 9000..9004);
        s.merge(other);
        assert_eq!(s.endpoints.len(), 5);
        // The other's own folded 3 (one HTTP, its DNS), and its three kept rows (6).
        assert_eq!(s.folded, 15 + 3 + 6);
        assert_eq!(row_count(&s, Protocol::Http, OTHER), 14 + 2 + 6);
        assert_eq!(s.transactions.once(), 21 + 9);
        // Merged into an empty summary (replay's total), the folded ones count once.
        let mut total = Summary::new(3);
        total.merge(s);
        assert_eq!(total.folded, 24);
        assert_eq!(row_count(&total, Protocol::Http, OTHER), 22);
        assert_eq!(total.endpoints.len(), 5);
        assert!(endpoint_max_bytes() > 2 * 13 * 1024 && endpoint_max_bytes() < 32 * 1024);
    }
}
