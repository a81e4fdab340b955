//! One memory budget for what grows with traffic: `memory.max_bytes`. When it is set, the
//! bounds of the structures that grow with traffic are derived from it, per worker, for
//! every one the config file does not set itself:
//!
//! | share | structure | bound derived |
//! | --- | --- | --- |
//! | 5 % | the record queue between workers and the writer | `output.queue_batches` (batches of 256 records) |
//! | 5 % | the span buffer of the OTLP exporter | `export.spans.max_buffered_bytes` |
//! | 90 % / workers, of it 50 % | each worker's flow table with the flows' decoder state | `flow.max_flows` (`FLOW_BYTES` + a decoder, in bytes, per flow) |
//! | 90 % / workers, of it 30 % | each worker's TCP reassembly buffers | `reassembly.max_worker_bytes` (real memory: payload and 48 bytes a segment) |
//! | 90 % / workers, of it 20 % | what each worker's decoders hold outside the flow slots: pending requests, HPACK tables, statement maps, split messages | `protocols.max_worker_heap_bytes` (the decoders' allocations' capacities, what queued requests own as they are queued, HPACK entries at their RFC size; statement maps' strings estimated at 64 bytes an entry) |
//!
//! With the flight recorder on (`[recorder]`), its bound comes off the budget first:
//! its rings (`recorder.total_bytes` rounded down to whole pods, allocated at start), as
//! much again for the copies of the recordings being written, and the transaction records
//! it holds back (`recorder.hold_bytes`); the shares above divide the rest.
//!
//! Workers are `capture.workers` (0: one per online CPU). Not in the budget: the capture
//! rings and AF_XDP UMEM (`capture.tpacket`, `capture.xdp`: fixed, locked, allocated at
//! start and stated by `podtap check`). `podtap check` prints the resulting bounds
//! structure by structure, in bytes.

use serde::Deserialize;

use crate::config::Config;

/// `[memory]`: one budget for what grows with traffic.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct MemoryConfig {
    /// Bytes for the flow tables, reassembly buffers, record queue and span buffer
    /// together (see [`crate::memory`] for the shares). Bounds the config file sets
    /// itself are kept as written. Default 0: no budget, every bound as configured.
    pub max_bytes: u64,
}

/// Share of the budget for the record queue, and for the span buffer, in percent.
const QUEUE_PERCENT: u64 = 5;
const SPANS_PERCENT: u64 = 5;
/// Of a worker's share: the flow table, and the decoders' heap (the rest is reassembly),
/// in percent.
const FLOWS_PERCENT: u64 = 50;
const HEAP_PERCENT: u64 = 20;

/// The bounds derived from a budget.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    pub workers: usize,
    pub max_flows: usize,
    pub reassembly_bytes: usize,
    pub heap_bytes: usize,
    pub queue_batches: usize,
    pub spans_bytes: usize,
}

/// Bytes a tracked flow can hold in its table slot and decoder.
pub fn flow_bytes() -> u64 {
    (crate::flow::table::FLOW_BYTES + std::mem::size_of::<crate::proto::Decoder>()) as u64
}

/// Bytes a full batch of the record queue holds.
pub fn batch_bytes() -> u64 {
    (crate::run::RECORD_BATCH * std::mem::size_of::<crate::export::Record>()) as u64
}

/// The worker count the budget is divided by.
pub fn workers(cfg: &Config) -> usize {
    match cfg.capture.workers {
        0 if !cfg.capture.cpus.is_empty() => cfg.capture.cpus.len(),
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

/// What `budget` gives each structure with `workers` workers.
pub fn derive(budget: u64, workers: usize) -> Derived {
    // In u128: a budget near u64::MAX times a percentage must not overflow (found by the
    // config fuzz target); each share then saturates at usize::MAX.
    let pct = |v: u128, p: u64| v * p as u128 / 100;
    let size = |v: u128| usize::try_from(v.max(1)).unwrap_or(usize::MAX);
    let budget = budget as u128;
    let per_worker = pct(budget, 100 - QUEUE_PERCENT - SPANS_PERCENT) / workers.max(1) as u128;
    Derived {
        workers,
        max_flows: size(pct(per_worker, FLOWS_PERCENT) / flow_bytes() as u128),
        reassembly_bytes: size(pct(per_worker, 100 - FLOWS_PERCENT - HEAP_PERCENT)),
        heap_bytes: size(pct(per_worker, HEAP_PERCENT)),
        queue_batches: size(pct(budget, QUEUE_PERCENT) / batch_bytes() as u128),
        spans_bytes: size(pct(budget, SPANS_PERCENT)),
    }
}

/// Set every bound the budget derives and `is_set` (the config file's own keys) does not
/// name. Nothing changes without a budget.
pub fn apply(cfg: &mut Config, is_set: impl Fn(&str, &str) -> bool) {
    if cfg.memory.max_bytes == 0 {
        return;
    }
    let budget = cfg
        .memory
        .max_bytes
        .saturating_sub(cfg.recorder.memory_bound())
        .max(1);
    let d = derive(budget, workers(cfg));
    if !is_set("flow", "max_flows") {
        cfg.flow.max_flows = d.max_flows;
    }
    if !is_set("reassembly", "max_worker_bytes") {
        cfg.reassembly.max_worker_bytes = d.reassembly_bytes;
    }
    if !is_set("protocols", "max_worker_heap_bytes") {
        cfg.protocols.max_worker_heap_bytes = d.heap_bytes;
    }
    if !is_set("output", "queue_batches") {
        cfg.output.queue_batches = d.queue_batches;
    }
    let spans_set = |k| {
        // `[export.spans]` is a table inside `[export]`.
        is_set("export", &format!("spans.{k}"))
    };
    if !spans_set("max_buffered_bytes") {
        cfg.export.spans.max_buffered_bytes = d.spans_bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn a_budget_sets_the_bounds_the_file_does_not() {
        let cfg = Config::parse(
            "[memory]\nmax_bytes = 268435456\n[capture]\nworkers = 2\n[reassembly]\nmax_worker_bytes = 1000000\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let d = derive(256 << 20, 2);
        assert_eq!(cfg.flow.max_flows, d.max_flows);
        assert_eq!(cfg.output.queue_batches, d.queue_batches);
        assert_eq!(cfg.export.spans.max_buffered_bytes, d.spans_bytes);
        assert_eq!(cfg.protocols.max_worker_heap_bytes, d.heap_bytes);
        assert_eq!(
            cfg.reassembly.max_worker_bytes, 1_000_000,
            "set in the file: kept"
        );
        // The shares add up to the budget.
        let used = d.max_flows as u64 * flow_bytes() * 2
            + d.reassembly_bytes as u64 * 2
            + d.heap_bytes as u64 * 2
            + d.queue_batches as u64 * batch_bytes()
            + d.spans_bytes as u64;
        assert!(used <= 256 << 20 && used > 250 << 20, "{used}");
    }

    /// Found by the config fuzz target: a budget of 10^19 bytes overflowed the shares.
    #[test]
    fn a_huge_budget_does_not_overflow() {
        let d = derive(u64::MAX, 1);
        assert!(d.max_flows > 0 && d.spans_bytes > 0);
        let cfg = Config::parse(
            "[memory]\nmax_bytes = 10000000000000000000\n",
            Path::new("t.toml"),
        );
        assert!(cfg.is_ok());
    }

    #[test]
    fn no_budget_changes_nothing() {
        let cfg = Config::parse("[capture]\nworkers = 2\n", Path::new("t.toml")).unwrap();
        let d = Config::default();
        assert_eq!(cfg.flow.max_flows, d.flow.max_flows);
        assert_eq!(
            cfg.reassembly.max_worker_bytes,
            d.reassembly.max_worker_bytes
        );
        assert_eq!(cfg.output.queue_batches, d.output.queue_batches);
    }
}
