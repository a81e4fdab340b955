//! The human summary printed at the end of `podtap replay`: totals, flows by transport and
//! end reason, the busiest flows, transactions per endpoint with latency percentiles, and
//! every non-zero drop/error counter.

use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::events::Counters;
use crate::export::{Record, RecordSink};
use crate::flow::FlowRecord;
use crate::proto::{Endpoint as ProtoEndpoint, Protocol, Transaction};
use compact_str::CompactString;

#[derive(Default)]
struct Endpoint {
    count: u64,
    errors: u64,
    incomplete: u64,
    /// Microseconds, rounded: the table prints milliseconds to three decimals, and half
    /// the size of nanoseconds is half the memory a large capture's latencies take.
    durations: Vec<u32>,
}

impl Endpoint {
    fn add(&mut self, t: &Transaction) {
        self.count += 1;
        self.errors += t.error.is_some() as u64;
        self.incomplete += !t.completeness.is_complete() as u64;
        let us = t.duration_ns().saturating_add(500) / 1000;
        self.durations.push(us.min(u32::MAX as u64) as u32);
    }
}

/// Protocol, server, operation and resource.
type EndpointKey = (Protocol, ProtoEndpoint, CompactString, CompactString);

#[derive(Default)]
pub struct Summary {
    flows: u64,
    by_transport: BTreeMap<&'static str, (u64, u64)>,
    by_reason: BTreeMap<&'static str, u64>,
    retransmits: u64,
    resets: u64,
    top: Vec<FlowRecord>,
    /// Once `top` has been trimmed to [`TOP_FLOWS`]: the bytes of the smallest kept. A
    /// later flow of no more bytes can never be listed (equal sizes keep the order they
    /// came in), so it is not kept at all: most flows of a large capture are not.
    top_floor: Option<u64>,
    /// In order of first sight, found through `index` by their key: cloned inline strings,
    /// no formatting per transaction.
    endpoints: Vec<(EndpointKey, Endpoint)>,
    index: HashMap<EndpointKey, usize>,
    /// The endpoint of the last transaction: the next one is most often the same (a
    /// connection's requests come in a row), found without hashing the key.
    last: usize,
    transactions: u64,
}

const TOP_FLOWS: usize = 10;

impl Summary {
    pub fn add(&mut self, r: &Record) {
        match r {
            Record::Flow(f) => {
                if self.count_flow(f) {
                    self.keep_flow(FlowRecord::clone(f));
                }
            }
            Record::Transaction(t) => self.count_transaction(t),
        }
    }

    /// Count `f`. True if it may be among the top flows: then keep it with
    /// [`Summary::keep_flow`]; most flows of a large capture are not, and are never copied.
    fn count_flow(&mut self, f: &FlowRecord) -> bool {
        let bytes = f.dirs[0].bytes + f.dirs[1].bytes;
        self.flows += 1;
        let e = self.by_transport.entry(f.transport()).or_default();
        e.0 += 1;
        e.1 += bytes;
        *self.by_reason.entry(f.reason.as_str()).or_default() += 1;
        if let Some(t) = &f.tcp {
            self.retransmits += t.stats[0].retransmits + t.stats[1].retransmits;
            self.resets += t.stats[0].resets + t.stats[1].resets;
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
        self.transactions += 1;
        if let Some((k, e)) = self.endpoints.get_mut(self.last)
            && (k.0, k.1) == (t.protocol, t.server)
            && (&k.2, &k.3) == (&t.operation, &t.resource)
        {
            e.add(t);
            return;
        }
        let key = (
            t.protocol,
            t.server,
            t.operation.clone(),
            t.resource.clone(),
        );
        self.last = self.endpoint(key);
        self.endpoints[self.last].1.add(t);
    }

    /// Index in `endpoints` of `key`'s entry, added if new.
    fn endpoint(&mut self, key: EndpointKey) -> usize {
        let next = self.endpoints.len();
        match self.index.entry(key) {
            hashbrown::hash_map::Entry::Occupied(o) => *o.get(),
            hashbrown::hash_map::Entry::Vacant(v) => {
                self.endpoints.push((v.key().clone(), Endpoint::default()));
                v.insert(next);
                next
            }
        }
    }

    /// Add another summary's counts (one per replay worker) to this one.
    pub fn merge(&mut self, other: Summary) {
        self.flows += other.flows;
        for (t, (n, b)) in other.by_transport {
            let e = self.by_transport.entry(t).or_default();
            e.0 += n;
            e.1 += b;
        }
        for (r, n) in other.by_reason {
            *self.by_reason.entry(r).or_default() += n;
        }
        self.retransmits += other.retransmits;
        self.resets += other.resets;
        self.top.extend(other.top);
        self.trim_top();
        for (k, o) in other.endpoints {
            let i = self.endpoint(k);
            let e = &mut self.endpoints[i].1;
            e.count += o.count;
            e.errors += o.errors;
            e.incomplete += o.incomplete;
            e.durations.extend(o.durations);
        }
        self.transactions += other.transactions;
    }

    fn trim_top(&mut self) {
        self.top
            .sort_by_key(|f| std::cmp::Reverse(f.dirs[0].bytes + f.dirs[1].bytes));
        self.top.truncate(TOP_FLOWS);
        if self.top.len() == TOP_FLOWS {
            self.top_floor = self.top.last().map(|f| f.dirs[0].bytes + f.dirs[1].bytes);
        }
    }

    /// Render the tables.
    pub fn render(&mut self, packets: u64, bytes: u64, counters: &Counters) -> String {
        self.trim_top();
        let mut s = String::new();
        let _ = writeln!(s, "== podtap summary ==");
        let _ = writeln!(
            s,
            "packets {packets}  bytes {bytes}  flows {}  transactions {}",
            self.flows, self.transactions
        );
        let _ = writeln!(
            s,
            "tcp retransmits {}  resets {}",
            self.retransmits, self.resets
        );
        let _ = writeln!(s, "\n{:<10} {:>10} {:>14}", "transport", "flows", "bytes");
        for (t, (n, b)) in &self.by_transport {
            let _ = writeln!(s, "{t:<10} {n:>10} {b:>14}");
        }
        let _ = writeln!(s, "\n{:<10} {:>10}", "end", "flows");
        for (r, n) in &self.by_reason {
            let _ = writeln!(s, "{r:<10} {n:>10}");
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
                let _ = writeln!(
                    s,
                    "{name:<46} {:<5} {:>12} {:>12} {rt:>7}",
                    f.transport(),
                    f.dirs[0].bytes,
                    f.dirs[1].bytes
                );
            }
        }
        if !self.endpoints.is_empty() {
            let _ = writeln!(
                s,
                "\n{:<10} {:<24} {:<36} {:>7} {:>6} {:>6} {:>10} {:>10} {:>10}",
                "protocol",
                "server",
                "operation",
                "count",
                "errors",
                "incomp",
                "p50 ms",
                "p90 ms",
                "p99 ms"
            );
            let mut rows: Vec<_> = self.endpoints.iter_mut().map(|(k, e)| (&*k, e)).collect();
            rows.sort_by(|a, b| {
                b.1.count.cmp(&a.1.count).then_with(|| {
                    (a.0.2.as_str(), a.0.3.as_str()).cmp(&(b.0.2.as_str(), b.0.3.as_str()))
                })
            });
            for ((proto, server, op, res), e) in rows.into_iter().take(50) {
                let [p50, p90, p99] = percentiles(&mut e.durations, [0.50, 0.90, 0.99]);
                let p = |v: u32| v as f64 / 1e3;
                let proto = proto.as_str();
                let server = format!("{}:{}", server.addr, server.port);
                let op: String = format!("{op} {res}").chars().take(36).collect();
                let _ = writeln!(
                    s,
                    "{proto:<10} {server:<24} {op:<36} {:>7} {:>6} {:>6} {:>10.3} {:>10.3} {:>10.3}",
                    e.count,
                    e.errors,
                    e.incomplete,
                    p(p50),
                    p(p90),
                    p(p99)
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
        s
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
}

/// Nearest-rank percentiles of `values` for ascending quantiles `qs` (0 for no values).
/// Each rank is selected in the part after the previous one instead of sorting everything:
/// the summary is printed when a replay ends, and a full sort of a large capture's
/// latencies took milliseconds of that.
fn percentiles<const N: usize>(values: &mut [u32], qs: [f64; N]) -> [u32; N] {
    let n = values.len();
    let mut from = 0;
    qs.map(|q| {
        if n == 0 {
            return 0;
        }
        let rank = ((q * n as f64).ceil() as usize).clamp(1, n) - 1;
        if rank < from {
            // Quantiles not ascending: this rank was placed by an earlier selection's
            // partition only as far as being below it; select again in the whole.
            from = 0;
        }
        let (_, v, _) = values[from..].select_nth_unstable(rank - from);
        from = rank;
        *v
    })
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
    fn rows(s: &Summary) -> Vec<(EndpointKey, u64, u64, Vec<u32>)> {
        let mut v: Vec<_> = s
            .endpoints
            .iter()
            .map(|(k, e)| {
                let mut d = e.durations.clone();
                d.sort_unstable();
                (k.clone(), e.count, e.errors, d)
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
            assert_eq!(d.len() as u64, *n);
            let want_errors = txs
                .iter()
                .filter(|t| (t.server.port, &t.resource) == (k.1.port, &k.3) && t.error.is_some())
                .count() as u64;
            assert_eq!(*errors, want_errors, "{k:?}");
        }
        assert_eq!(one.transactions, 300);
        // Microseconds, rounded: 37 us and 400 ns is 37 us.
        assert!(r[0].3.contains(&37));
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
        assert_eq!(one.flows, 500);
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
        assert_eq!(a.flows, 500);
        let bytes: u64 = flows.iter().map(|f| f.dirs[0].bytes).sum();
        assert_eq!(a.by_transport["tcp"], (500, bytes));
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
        assert_eq!(a.transactions, one.transactions);
        let c = Counters::default();
        assert_eq!(a.render(1, 2, &c), one.render(1, 2, &c));
    }

    #[test]
    fn percentiles_are_nearest_ranks() {
        let mut v: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut v, [0.5, 0.9, 0.99]), [50, 90, 99]);
        assert_eq!(percentiles(&mut v, [0.99, 0.5]), [99, 50]);
        assert_eq!(percentiles(&mut [7], [0.5, 0.9]), [7, 7]);
        assert_eq!(percentiles(&mut [], [0.9]), [0]);
        // Against a full sort, on values with repeats in scrambled order.
        let mut v: Vec<u32> = (0..1001u32).map(|i| i * 7919 % 113).collect();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let qs: [f64; 6] = [0.01, 0.5, 0.5, 0.9, 0.99, 1.0];
        let want = qs.map(|q| sorted[((q * 1001.0).ceil() as usize).clamp(1, 1001) - 1]);
        assert_eq!(percentiles(&mut v, qs), want);
    }
}
