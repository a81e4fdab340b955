//! `podtap replay`: run capture files through the same workers live capture uses.
//!
//! N worker threads each read the memory-mapped file and keep their share of the frames
//! by symmetric flow hash (as PACKET_FANOUT_HASH splits live traffic), while a pager thread
//! maps the file ahead of them and drops it behind (`capture::file_pager`). Standard input
//! (`-`) and FIFOs are streamed instead, through a bounded buffer, by one worker. With JSON lines
//! output a writer thread prints the records and builds the summary; with table output
//! each worker summarises its own records and the summaries are merged.

use std::io::Write;
use std::path::PathBuf;

use crate::capture::file_pager::FilePager;
use crate::capture::pcap_file::PcapFileSource;
use crate::capture::{CaptureError, Source, SourceStats};
use crate::config::Config;
use crate::events::Counters;
use crate::export::jsonl::{self, JsonLines};
use crate::export::queue::record_queue;
use crate::export::summary::Summary;
use std::sync::atomic::Ordering::Relaxed;

use crate::export::{ChannelSink, ExportSink, Exporter, RecordSink};
use crate::worker::Worker;

/// What `replay` prints.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// JSON lines (one per flow and transaction) on stdout, or `output.file`; `replay`
    /// also prints a summary table on stderr at the end.
    Jsonl,
    /// Only the summary table, on stdout (`run`: every `output.table_interval_secs`).
    Table,
    /// No records written (`run` only): they leave through OTLP and Prometheus. What a
    /// service wants: JSON lines of every request of a node do not belong in its journal.
    None,
}

pub struct ReplayOptions {
    pub files: Vec<PathBuf>,
    pub workers: usize,
    pub output: OutputFormat,
    /// Keep the process (and the exporter's HTTP endpoints) alive this long after the
    /// files are done, e.g. for a Prometheus scrape. Used by `main`.
    pub hold_secs: u64,
    /// Frames per second offered to the workers together; 0: as fast as they go.
    pub pps: u64,
    /// Pod attribution (`attribution.replay`), shared by the workers.
    pub attributor: Option<crate::k8s::Attributor>,
}

/// Totals of a replay run.
#[derive(Debug, Default)]
pub struct ReplayTotals {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub transactions: u64,
    pub counters: Counters,
    pub source: SourceStats,
    pub records_dropped: u64,
    /// CPU time the worker threads spent (their own clocks: not the writer, not time the
    /// machine gave to others), so rates per core do not depend on what else runs.
    pub worker_cpu_ns: u64,
}

/// Frames handed to a worker per batch.
const BATCH: usize = 256;
/// Records per batch sent to the writer.
const RECORD_BATCH: usize = 256;

pub fn run(
    cfg: &Config,
    opts: &ReplayOptions,
    out: &mut dyn Write,
    table: &mut dyn Write,
    export: Option<&Exporter>,
) -> Result<ReplayTotals, CaptureError> {
    let mut totals = ReplayTotals::default();
    let mut summary = Summary::new(cfg.output.table_max_endpoints);
    // The file holds the interfaces `attribution.replay_interfaces` names (pcapng ids).
    let names: Vec<String> = cfg
        .attribution
        .replay_interfaces
        .iter()
        .map(|n| regex::escape(n))
        .collect();
    let captured = std::sync::Arc::new(
        crate::capture::iface::Selector::new(&names, &[]).expect("escaped names are regexes"),
    );
    for file in &opts.files {
        let first = PcapFileSource::open(file)?;
        // A mapped file is read whole by each of N workers, each keeping its share, with a
        // pager ahead of them; a stream (standard input, a FIFO) can be read only once, by
        // one worker.
        let mut pager = None;
        let mut sources = Vec::new();
        match first.mapping() {
            Some(map) => {
                let n = opts.workers.max(1);
                let (p, progress) = FilePager::new(map, n);
                pager = Some(p);
                for (i, progress) in progress.into_iter().enumerate() {
                    sources.push(
                        first
                            .share()?
                            .with_fanout(i as u32, n as u32)
                            .with_progress(progress),
                    );
                }
            }
            None => {
                if opts.workers > 1 {
                    tracing::debug!(
                        file = %file.display(),
                        workers = opts.workers,
                        "a stream is read by one worker"
                    );
                }
                sources.push(first);
            }
        }
        let n = sources.len();
        let (tx, rx) = record_queue(cfg.output.queue_batches, RECORD_BATCH);
        let flows_wanted = cfg.output.flows;
        let anomalies = crate::anomaly::engine::Engine::start(
            &cfg.anomalies,
            (opts.output == OutputFormat::Jsonl).then(|| tx.clone()),
            export,
        );
        let anomaly_hub = anomalies.as_ref().map(|(h, _)| h.clone());
        // Workers still running: the engine stops (and drops its sender) after the last.
        let live = std::sync::atomic::AtomicUsize::new(n);
        let per_file = std::thread::scope(|s| -> Result<ReplayTotals, CaptureError> {
            let mut handles = Vec::with_capacity(n);
            // Maps the file ahead of the workers and drops it behind them; it returns when
            // the last worker's source is dropped (see `capture::file_pager`).
            if let Some(pager) = pager {
                std::thread::Builder::new()
                    .name("podtap-pager".into())
                    .spawn_scoped(s, move || pager.run())
                    .expect("spawn replay pager");
            }
            if let Some((_, e)) = anomalies {
                let live = &live;
                std::thread::Builder::new()
                    .name("podtap-anomaly".into())
                    .spawn_scoped(s, move || e.run(|| live.load(Relaxed) == 0))
                    .expect("spawn anomaly engine");
            }
            for (i, src) in sources.into_iter().enumerate() {
                let records = match opts.output {
                    OutputFormat::Jsonl => ReplaySink::Writer(ChannelSink::new(tx.clone(), true)),
                    OutputFormat::Table | OutputFormat::None => {
                        ReplaySink::Summary(Summary::new(cfg.output.table_max_endpoints))
                    }
                };
                let sink = ExportSink::new(
                    export.map(|e| e.worker_handle(i).captured(captured.clone())),
                    Some(records),
                );
                let attr = opts.attributor.clone();
                let pps = opts.pps as f64 / n as f64;
                let (an, live) = (anomaly_hub.clone(), &live);
                handles.push(
                    std::thread::Builder::new()
                        .name(format!("podtap-r{i}"))
                        .spawn_scoped(s, move || {
                            // Counted out when the worker ends, also by a panic: the anomaly
                            // engine (which holds a sender of the writer's queue) stops when
                            // no worker is left, and the writer below with it, so a panic
                            // ends the replay with its message instead of hanging it.
                            let _out = CountedOut(live);
                            run_worker(cfg, src, sink, attr, an, pps)
                        })
                        .expect("spawn replay worker"),
                );
            }
            drop(tx);
            // The writer runs here while the workers run in their threads (with table
            // output no worker holds a sender, and it returns at once).
            let mut lines = JsonLines::default();
            let jsonl = opts.output == OutputFormat::Jsonl;
            while let Some(batch) = rx.recv() {
                for r in &batch {
                    summary.add(r);
                    if jsonl && lines.push(r, flows_wanted) && lines.len() >= jsonl::FLUSH_AT {
                        // A closed stdout (e.g. `| head`) ends the output, not the run.
                        let _ = lines.write_to(out);
                    }
                }
                rx.give_back(batch);
            }
            let _ = lines.write_to(out);
            let mut t = ReplayTotals::default();
            for h in handles {
                let w = h.join().expect("worker thread panicked")?;
                if let Some(ws) = w.summary {
                    summary.merge(ws);
                }
                t.worker_cpu_ns += w.cpu_ns;
                t.packets += w.totals.packets;
                t.bytes += w.totals.bytes;
                t.flows += w.totals.flows;
                t.transactions += w.totals.transactions;
                t.counters.merge(&w.totals.counters);
                t.source.received += w.source.received;
                t.source.malformed += w.source.malformed;
                t.records_dropped += w.dropped;
            }
            Ok(t)
        })?;
        totals.packets += per_file.packets;
        totals.bytes += per_file.bytes;
        totals.flows += per_file.flows;
        totals.transactions += per_file.transactions;
        totals.counters.merge(&per_file.counters);
        totals.source.received += per_file.source.received;
        totals.source.malformed += per_file.source.malformed;
        totals.records_dropped += per_file.records_dropped;
        totals.worker_cpu_ns += per_file.worker_cpu_ns;
    }
    let _ = out.flush();
    if totals.source.malformed > 0 {
        totals.counters.add(
            crate::events::Event::CaptureTruncated,
            totals.source.malformed,
        );
    }
    let _ = table.write_all(
        summary
            .render(totals.packets, totals.bytes, &totals.counters)
            .as_bytes(),
    );
    let cpu = totals.worker_cpu_ns.max(1) as f64 / 1e9;
    let _ = writeln!(
        table,
        "\nworker cpu {cpu:.3} s: {:.0} packets/s, {:.0} transactions/s per core",
        totals.packets as f64 / cpu,
        totals.transactions as f64 / cpu
    );
    Ok(totals)
}

/// Takes one from the count of running workers when dropped.
struct CountedOut<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for CountedOut<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

/// Where a replay worker's records go.
enum ReplaySink {
    /// `--output jsonl`: to the writer thread, which prints them and builds the summary.
    Writer(ChannelSink),
    /// `--output table`: into the worker's own summary, merged with the others' at the end.
    Summary(Summary),
}

// A match per call, on a value that never changes during a run: static dispatch.
impl RecordSink for ReplaySink {
    fn flow(&mut self, rec: crate::flow::FlowRecord) {
        match self {
            ReplaySink::Writer(c) => c.flow(rec),
            ReplaySink::Summary(s) => s.flow(rec),
        }
    }

    fn transaction(&mut self, tx: crate::proto::Transaction) {
        match self {
            ReplaySink::Writer(c) => c.transaction(tx),
            ReplaySink::Summary(s) => s.transaction(tx),
        }
    }

    fn transactions(&mut self, txs: &mut Vec<crate::proto::Transaction>) {
        match self {
            ReplaySink::Writer(c) => c.transactions(txs),
            ReplaySink::Summary(s) => s.transactions(txs),
        }
    }

    fn wants_records(&self) -> bool {
        match self {
            ReplaySink::Writer(c) => c.wants_records(),
            ReplaySink::Summary(s) => s.wants_records(),
        }
    }

    fn tally(
        &mut self,
        tally: &crate::proto::Tally,
        server: &crate::proto::Endpoint,
        pods: Option<&std::sync::Arc<crate::k8s::FlowPods>>,
    ) {
        match self {
            ReplaySink::Writer(c) => c.tally(tally, server, pods),
            ReplaySink::Summary(s) => s.tally(tally, server, pods),
        }
    }

    fn flush(&mut self) {
        if let ReplaySink::Writer(c) = self {
            c.flush();
        }
    }
}

/// What a replay worker leaves when its share of a file is done.
struct WorkerDone {
    totals: crate::worker::WorkerTotals,
    source: SourceStats,
    /// Records the writer's queue refused (JSON lines output).
    dropped: u64,
    /// The worker's own summary (table output).
    summary: Option<Summary>,
    /// The worker thread's CPU time.
    cpu_ns: u64,
}

fn run_worker(
    cfg: &Config,
    mut src: PcapFileSource,
    sink: ExportSink<ReplaySink>,
    attr: Option<crate::k8s::Attributor>,
    anomalies: Option<std::sync::Arc<crate::anomaly::Hub>>,
    pps: f64,
) -> Result<WorkerDone, CaptureError> {
    let cpu_start = thread_cpu_ns();
    let mut worker = Worker::new(cfg, sink)
        .with_attributor(attr)
        .with_anomalies(anomalies, &cfg.anomalies);
    let start = std::time::Instant::now();
    let mut offered = 0u64;
    while let Some(n) = worker.batch(&mut src, BATCH, |_| {})? {
        // The worker's packets and bytes, as live capture reports them (a file has no
        // kernel drops; its interfaces are not attached ones).
        let (packets, bytes, _) = worker.progress();
        worker.sink_mut().capture(&crate::stats::CaptureTotals {
            packets,
            bytes,
            ..Default::default()
        });
        if pps > 0.0 {
            // Hold back until the wall clock reaches this batch's place in the schedule; a
            // worker that cannot keep up just falls behind it (the measured rate shows it).
            offered += n as u64;
            let due = start + std::time::Duration::from_secs_f64(offered as f64 / pps);
            if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                std::thread::sleep(wait);
            }
        }
    }
    let (totals, sink) = worker.finish();
    // A writer's sink is dropped here, with its sender: the writer's loop ends when the
    // last sender is gone, before it joins the workers.
    let (dropped, summary) = match sink.into_inner() {
        Some(ReplaySink::Writer(c)) => (c.dropped, None),
        Some(ReplaySink::Summary(s)) => (0, Some(s)),
        None => (0, None),
    };
    let cpu_ns = thread_cpu_ns().saturating_sub(cpu_start);
    Ok(WorkerDone {
        totals,
        source: src.stats(),
        dropped,
        summary,
        cpu_ns,
    })
}

/// CPU time of the calling thread so far, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; the clock id is a constant Linux has.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::{self, SynthOptions};

    /// A synthetic capture of `tcp_flows` connections of `requests` requests each and
    /// `udp_flows` UDP flows, in `dir`; with its frame count.
    fn capture(
        dir: &tempfile::TempDir,
        tcp_flows: u32,
        udp_flows: u32,
        requests: u32,
    ) -> (PathBuf, u64) {
        let file = dir.path().join("synth.pcap");
        let o = SynthOptions {
            tcp_flows,
            udp_flows,
            requests,
            payload: 0,
            protocol: synth::SynthProtocol::Http,
        };
        let frames = synth::write(std::fs::File::create(&file).unwrap(), &o).unwrap();
        (file, frames)
    }

    /// Replay `file` with two workers: totals, stdout and the table.
    fn replay(file: &std::path::Path, output: OutputFormat) -> (ReplayTotals, String, String) {
        let opts = ReplayOptions {
            files: vec![file.to_path_buf()],
            workers: 2,
            output,
            hold_secs: 0,
            pps: 0,
            attributor: None,
        };
        let (mut out, mut table) = (Vec::new(), Vec::new());
        let t = run(&Config::default(), &opts, &mut out, &mut table, None).unwrap();
        let text = |b| String::from_utf8(b).unwrap();
        (t, text(out), text(table))
    }

    #[test]
    fn table_ends_with_worker_cpu_time_and_per_core_rates() {
        let dir = tempfile::tempdir().unwrap();
        let (file, frames) = capture(&dir, 20, 0, 5);
        let (t, _, table) = replay(&file, OutputFormat::Table);
        assert_eq!(t.packets, frames);
        assert!(t.worker_cpu_ns > 0);
        let last = table.lines().last().unwrap();
        assert!(
            last.starts_with("worker cpu ") && last.ends_with(" transactions/s per core"),
            "{last}"
        );
        // 20 connections of 5 requests each: the per-core transaction rate is 100 over the
        // workers' CPU time, as printed.
        let rate: f64 = last.split(' ').nth_back(3).unwrap().parse().unwrap();
        let want = 100.0 / (t.worker_cpu_ns as f64 / 1e9);
        assert!((rate - want).abs() <= 1.0, "{rate} vs {want}");
    }

    #[test]
    fn workers_summaries_equal_the_writers_summary() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = capture(&dir, 30, 10, 7);
        // Table output: each worker summarises its records. JSON lines: the writer thread
        // summarises everything it prints. The same table either way.
        let table = |output| {
            let (t, out, table) = replay(&file, output);
            assert_eq!(t.transactions, 30 * 7);
            (table, out.lines().count())
        };
        let ((by_workers, none), (by_writer, printed)) =
            (table(OutputFormat::Table), table(OutputFormat::Jsonl));
        assert_eq!((none, printed), (0, 30 * 7 + 40));
        // Flows of equal size may be listed in another order (the writer gets the workers'
        // batches interleaved); the CPU time differs from run to run.
        let lines = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| !l.contains(" -> ") && !l.starts_with("worker cpu"))
                .map(String::from)
                .collect()
        };
        assert_eq!(lines(&by_workers), lines(&by_writer));
        assert!(by_workers.contains("transactions 210"), "{by_workers}");
        // The heading of the top flows and the ten biggest of the 40.
        assert_eq!(by_workers.matches(" -> ").count(), 1 + 10);
    }

    #[test]
    fn synthetic_redis_pipelines_are_every_command_paired() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("redis.pcap");
        let o = SynthOptions {
            tcp_flows: 6,
            udp_flows: 0,
            requests: 4,
            payload: 0,
            protocol: synth::SynthProtocol::Redis,
        };
        synth::write(std::fs::File::create(&file).unwrap(), &o).unwrap();
        let (t, _, table) = replay(&file, OutputFormat::Table);
        // 6 connections of 4 pipelines of 16 commands, half SETs and half GETs.
        assert_eq!(t.transactions, 6 * 4 * 16);
        for op in ["SET key", "GET key"] {
            let row = table
                .lines()
                .find(|l| l.starts_with("redis") && l.contains(op))
                .unwrap_or_else(|| panic!("{op}: {table}"));
            assert_eq!(row.split_whitespace().nth(4), Some("192"), "{row}");
        }
    }
}
