//! The human summary printed at the end of `podtap replay`: totals, flows by transport and
//! end reason, the busiest flows, transactions per endpoint with latency percentiles, and
//! every non-zero drop/error counter.

use hashbrown::HashMap;
use std::collections::BTreeMap;
use std::fmt::Write;

use crate::events::Counters;
use crate::export::Record;
use crate::flow::FlowRecord;
use crate::proto::{Endpoint as ProtoEndpoint, Protocol};
use compact_str::CompactString;

#[derive(Default)]
struct Endpoint {
    count: u64,
    errors: u64,
    incomplete: u64,
    durations: Vec<u64>,
}

#[derive(Default)]
pub struct Summary {
    flows: u64,
    by_transport: BTreeMap<&'static str, (u64, u64)>,
    by_reason: BTreeMap<&'static str, u64>,
    retransmits: u64,
    resets: u64,
    top: Vec<FlowRecord>,
    /// Keyed by protocol, server, operation and resource: cloned inline strings, no
    /// formatting per transaction.
    endpoints: HashMap<(Protocol, ProtoEndpoint, CompactString, CompactString), Endpoint>,
    transactions: u64,
}

const TOP_FLOWS: usize = 10;

impl Summary {
    pub fn add(&mut self, r: &Record) {
        match r {
            Record::Flow(f) => {
                self.flows += 1;
                let e = self.by_transport.entry(f.transport()).or_default();
                e.0 += 1;
                e.1 += f.dirs[0].bytes + f.dirs[1].bytes;
                *self.by_reason.entry(f.reason.as_str()).or_default() += 1;
                if let Some(t) = &f.tcp {
                    self.retransmits += t.stats[0].retransmits + t.stats[1].retransmits;
                    self.resets += t.stats[0].resets + t.stats[1].resets;
                }
                self.top.push(FlowRecord::clone(f));
                if self.top.len() > TOP_FLOWS * 4 {
                    self.trim_top();
                }
            }
            Record::Transaction(t) => {
                self.transactions += 1;
                let key = (
                    t.protocol,
                    t.server,
                    t.operation.clone(),
                    t.resource.clone(),
                );
                let e = self.endpoints.entry(key).or_default();
                e.count += 1;
                e.errors += t.error.is_some() as u64;
                e.incomplete += !t.completeness.is_complete() as u64;
                e.durations.push(t.duration_ns());
            }
        }
    }

    fn trim_top(&mut self) {
        self.top
            .sort_by_key(|f| std::cmp::Reverse(f.dirs[0].bytes + f.dirs[1].bytes));
        self.top.truncate(TOP_FLOWS);
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
            let mut rows: Vec<_> = self.endpoints.iter_mut().collect();
            rows.sort_by(|a, b| {
                b.1.count.cmp(&a.1.count).then_with(|| {
                    (a.0.2.as_str(), a.0.3.as_str()).cmp(&(b.0.2.as_str(), b.0.3.as_str()))
                })
            });
            for ((proto, server, op, res), e) in rows.into_iter().take(50) {
                let [p50, p90, p99] = percentiles(&mut e.durations, [0.50, 0.90, 0.99]);
                let p = |v: u64| v as f64 / 1e6;
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

/// Nearest-rank percentiles of `values` for ascending quantiles `qs` (0 for no values).
/// Each rank is selected in the part after the previous one instead of sorting everything:
/// the summary is printed when a replay ends, and a full sort of a large capture's
/// latencies took milliseconds of that.
fn percentiles<const N: usize>(values: &mut [u64], qs: [f64; N]) -> [u64; N] {
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
    use super::percentiles;

    #[test]
    fn percentiles_are_nearest_ranks() {
        let mut v: Vec<u64> = (1..=100).rev().collect();
        assert_eq!(percentiles(&mut v, [0.5, 0.9, 0.99]), [50, 90, 99]);
        assert_eq!(percentiles(&mut v, [0.99, 0.5]), [99, 50]);
        assert_eq!(percentiles(&mut [7], [0.5, 0.9]), [7, 7]);
        assert_eq!(percentiles(&mut [], [0.9]), [0]);
        // Against a full sort, on values with repeats in scrambled order.
        let mut v: Vec<u64> = (0..1001u64).map(|i| i * 7919 % 113).collect();
        let mut sorted = v.clone();
        sorted.sort_unstable();
        let qs: [f64; 6] = [0.01, 0.5, 0.5, 0.9, 0.99, 1.0];
        let want = qs.map(|q| sorted[((q * 1001.0).ceil() as usize).clamp(1, 1001) - 1]);
        assert_eq!(percentiles(&mut v, qs), want);
    }
}
