//! `podtap run`: the daemon. Live capture on the node's pod interfaces through the same
//! workers replay uses.
//!
//! Threads:
//! - one worker per capture queue, pinned to its CPU, shared nothing: it owns a ring
//!   (its share of the fanout group), a flow table and its counters, and never waits on
//!   anything but its ring;
//! - a writer that turns records into JSON lines (or a periodic table) on stdout;
//! - the control loop (the calling thread): watches links with rtnetlink, re-selects
//!   interfaces and swaps the rings' interface filters when pods come and go, logs
//!   capture statistics, and on SIGINT/SIGTERM stops the workers, which flush every open
//!   flow before the writer drains.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, bounded};

use crate::capture::iface::{self, Iface, LinkWatcher, Selector};
use crate::capture::tpacket::{FilterHandle, IfaceCount, IfaceFilter, TpacketSource};
use crate::capture::{CaptureError, Source};
use crate::config::{CaptureMode, Config};
use crate::events::{Counters, Event};
use crate::export::summary::Summary;
use crate::export::{ChannelSink, Record, jsonl};
use crate::replay::OutputFormat;
use crate::time::Timestamp;
use crate::worker::{Worker, WorkerTotals};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error("capture.interfaces: {0}")]
    Selector(#[from] regex::Error),
    #[error("cannot watch interfaces (rtnetlink): {0}")]
    LinkWatch(std::io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Attribution(#[from] crate::k8s::AttrError),
}

pub struct RunOptions {
    pub output: OutputFormat,
    /// Overrides `capture.workers`.
    pub workers: Option<usize>,
    /// The config file, re-read on SIGHUP (attribution settings take effect; `None`: the
    /// embedded config).
    pub config_path: Option<std::path::PathBuf>,
}

/// Frames a worker takes from its ring per batch.
const BATCH: usize = 256;
/// Records per batch sent to the writer.
const RECORD_BATCH: usize = 256;
/// How often an idle worker wakes to expire flows, flush records and publish counters.
const HOUSEKEEPING: Duration = Duration::from_millis(100);

/// Capture engine of one interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Tpacket,
    Xdp,
}

impl Engine {
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Tpacket => "tpacket",
            Engine::Xdp => "xdp",
        }
    }
}

/// Which engine captures `iface` in `mode`, and why. `podtap check` prints the same.
pub fn choose_engine(mode: CaptureMode, name: &str) -> (Engine, &'static str) {
    match mode {
        CaptureMode::Tpacket => (Engine::Tpacket, "capture.mode = tpacket"),
        CaptureMode::Xdp | CaptureMode::Auto => {
            match crate::check::auto_choice(crate::check::interface_kind(name)) {
                ("xdp", _) => (
                    Engine::Tpacket,
                    "AF_XDP engine not available in this build; TPACKET_V3 used",
                ),
                (_, reason) => (Engine::Tpacket, reason),
            }
        }
    }
}

/// Counters one worker publishes for the control loop (written between batches, never
/// per frame).
#[derive(Default)]
pub struct QueueStats {
    pub received: AtomicU64,
    pub kernel_dropped: AtomicU64,
    pub ring_full: AtomicU64,
    pub malformed: AtomicU64,
    pub filtered: AtomicU64,
    pub records_dropped: AtomicU64,
    /// Frames and bytes per interface; the worker updates it only when the lock is free.
    pub per_iface: Mutex<Vec<IfaceCount>>,
}

/// What a run did, for the caller and the exit log.
#[derive(Debug, Default)]
pub struct RunTotals {
    pub packets: u64,
    pub bytes: u64,
    pub flows: u64,
    pub transactions: u64,
    pub kernel_dropped: u64,
    pub ring_full: u64,
    pub records_dropped: u64,
    pub counters: Counters,
}

/// Run until SIGINT/SIGTERM, or until `stop` is set by the caller.
pub fn run(
    cfg: &Config,
    opts: &RunOptions,
    out: &mut (dyn Write + Send),
    stop: Arc<AtomicBool>,
) -> Result<RunTotals, RunError> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(RunError::Signals)?;
    }
    let selector = Selector::new(&cfg.capture.interfaces, &cfg.capture.exclude)?;
    // Pod attribution; its label selector also decides which pod interfaces are captured.
    let attribution = if cfg.attribution.enabled {
        let mut ac = cfg.attribution.clone();
        // Live observation points are ifindexes, not pcapng interface numbers.
        ac.replay_interfaces.clear();
        Some(crate::k8s::Attribution::start(&ac)?)
    } else {
        None
    };
    let attributor = attribution.as_ref().map(|a| a.attributor());
    let hup = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .map_err(RunError::Signals)?;
    let pods_selected = |ifs: Vec<Iface>| -> Vec<Iface> {
        match &attribution {
            Some(a) => {
                let snap = a.snapshot();
                ifs.into_iter()
                    .filter(|i| snap.is_selected(i.ifindex))
                    .collect()
            }
            None => ifs,
        }
    };
    let mut attr_generation = attributor.as_ref().map_or(0, |a| a.generation());
    // Subscribe before listing, so a link created in between is not missed.
    let mut watcher = LinkWatcher::new().map_err(RunError::LinkWatch)?;
    let mut selected = pods_selected(selector.select(&iface::list()));
    for i in &selected {
        log_attach(cfg.capture.mode, i);
    }
    let filter = iface_filter(&selected);

    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = match opts.workers.unwrap_or(cfg.capture.workers) {
        0 if !cfg.capture.cpus.is_empty() => cfg.capture.cpus.len(),
        0 => online,
        n => n,
    };
    // One fanout group per process: its id only has to differ from other capturers'.
    let group = (std::process::id() & 0xffff) as u16;
    let mut sources = Vec::with_capacity(n);
    for _ in 0..n {
        sources.push(TpacketSource::open(
            &cfg.capture.tpacket,
            &filter,
            Some(group),
        )?);
    }
    let handles: Vec<FilterHandle> = sources.iter().map(|s| s.filter_handle()).collect();
    let stats: Vec<Arc<QueueStats>> = (0..n).map(|_| Arc::new(QueueStats::default())).collect();
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();

    let (tx, rx) = bounded::<Vec<Record>>(cfg.output.queue_batches);
    let workers_stop = Arc::new(AtomicBool::new(false));

    std::thread::scope(|s| {
        let writer = s.spawn(|| write_records(cfg, opts.output, rx, out, &stats));
        let mut threads = Vec::with_capacity(n);
        for (i, src) in sources.into_iter().enumerate() {
            let cpu = if cfg.capture.cpus.is_empty() {
                core_ids.get(i % core_ids.len().max(1)).copied()
            } else {
                let want = cfg.capture.cpus[i % cfg.capture.cpus.len()];
                core_ids.iter().copied().find(|c| c.id == want)
            };
            let cpu = cfg.capture.pin.then_some(cpu).flatten();
            let sink = ChannelSink::new(tx.clone(), RECORD_BATCH, false);
            let qs = stats[i].clone();
            let wstop = workers_stop.clone();
            let attr = attributor.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("podtap-w{i}"))
                    .spawn_scoped(s, move || {
                        capture_loop(cfg, src, sink, attr, cpu, &qs, &wstop)
                    })
                    .expect("spawn worker"),
            );
        }
        drop(tx);
        tracing::info!(
            interfaces = selected.len(),
            workers = n,
            engine = "tpacket",
            "podtap: capturing"
        );

        let mut next_stats = Instant::now() + stats_interval(cfg);
        while !stop.load(Ordering::Relaxed) {
            if hup.swap(false, Ordering::Relaxed) {
                reload(opts, attribution.as_ref());
            }
            // New pod metadata (or a reloaded selector) can change which interfaces
            // are captured, as a link change can.
            let generation = attributor.as_ref().map_or(0, |a| a.generation());
            let metadata_changed = generation != attr_generation;
            attr_generation = generation;
            match watcher.poll(200) {
                Ok(events) if events.is_empty() && !metadata_changed => {}
                // Any link change: re-list (cheap) rather than trust the event stream,
                // which may have lost messages (ENOBUFS).
                Ok(_) | Err(_) => {
                    let now = pods_selected(selector.select(&iface::list()));
                    if now != selected {
                        for i in now.iter().filter(|i| !selected.contains(i)) {
                            log_attach(cfg.capture.mode, i);
                        }
                        for i in selected.iter().filter(|i| !now.contains(i)) {
                            tracing::info!(interface = %i.name, ifindex = i.ifindex, "detached");
                        }
                        let f = iface_filter(&now);
                        for h in &handles {
                            if let Err(e) = h.set(&f) {
                                tracing::error!("cannot update the capture filter: {e}");
                            }
                        }
                        selected = now;
                    }
                }
            }
            if cfg.output.stats_interval_secs > 0 && Instant::now() >= next_stats {
                next_stats = Instant::now() + stats_interval(cfg);
                log_stats(&stats, &selected);
            }
        }
        tracing::info!("stopping: flushing open flows");
        workers_stop.store(true, Ordering::Relaxed);
        let mut totals = RunTotals::default();
        for t in threads {
            let (wt, dropped) = t.join().expect("worker thread panicked");
            totals.packets += wt.packets;
            totals.bytes += wt.bytes;
            totals.flows += wt.flows;
            totals.transactions += wt.transactions;
            totals.counters.merge(&wt.counters);
            totals.records_dropped += dropped;
        }
        for q in &stats {
            totals.kernel_dropped += q.kernel_dropped.load(Ordering::Relaxed);
            totals.ring_full += q.ring_full.load(Ordering::Relaxed);
        }
        writer.join().expect("writer thread panicked");
        log_stats(&stats, &selected);
        Ok(totals)
    })
}

/// SIGHUP: re-read the config file and apply its attribution settings (selector, label
/// keys, static map) without losing flows or watch state.
fn reload(opts: &RunOptions, attribution: Option<&crate::k8s::Attribution>) {
    let Some(a) = attribution else { return };
    match Config::load(opts.config_path.as_deref()) {
        Ok(new) => match a.reload(&new.attribution) {
            Ok(()) => tracing::info!("SIGHUP: attribution settings reloaded"),
            Err(e) => tracing::error!("SIGHUP: attribution not reloaded: {e}"),
        },
        Err(e) => tracing::error!("SIGHUP: config not reloaded: {e}"),
    }
}

fn stats_interval(cfg: &Config) -> Duration {
    Duration::from_secs(cfg.output.stats_interval_secs.max(1))
}

fn iface_filter(selected: &[Iface]) -> IfaceFilter {
    if selected.is_empty() {
        IfaceFilter::Nothing
    } else {
        IfaceFilter::Only(selected.iter().map(|i| i.ifindex).collect())
    }
}

fn log_attach(mode: CaptureMode, i: &Iface) {
    let (engine, reason) = choose_engine(mode, &i.name);
    tracing::info!(
        interface = %i.name,
        ifindex = i.ifindex,
        engine = engine.as_str(),
        reason,
        "attached"
    );
}

/// One worker: read its ring, process frames, and between batches do the housekeeping.
fn capture_loop(
    cfg: &Config,
    mut src: TpacketSource,
    sink: ChannelSink,
    attr: Option<crate::k8s::Attributor>,
    cpu: Option<core_affinity::CoreId>,
    qs: &QueueStats,
    stop: &AtomicBool,
) -> (WorkerTotals, u64) {
    if let Some(c) = cpu
        && !core_affinity::set_for_current(c)
    {
        tracing::warn!(cpu = c.id, "cannot pin worker to CPU");
    }
    let mut worker = Worker::new(cfg, sink).with_attributor(attr);
    let mut next_housekeeping = Instant::now();
    loop {
        let n = src
            .next_batch(BATCH, |f| worker.process(f))
            .unwrap_or(Some(0))
            .unwrap_or(0);
        let stopping = stop.load(Ordering::Relaxed);
        if n == 0
            && !stopping
            && let Err(e) = src.wait(HOUSEKEEPING.as_millis() as i32)
        {
            tracing::error!("capture poll failed: {e}");
            std::thread::sleep(HOUSEKEEPING);
        }
        let now = Instant::now();
        if now >= next_housekeeping || stopping {
            next_housekeeping = now + HOUSEKEEPING;
            worker.idle(Timestamp::now());
            src.refresh_kernel_stats();
            publish(&src, &mut worker, qs);
        }
        if stopping && n == 0 {
            break;
        }
    }
    let (totals, sink) = worker.finish();
    (totals, sink.dropped)
}

fn publish(src: &TpacketSource, worker: &mut Worker<ChannelSink>, qs: &QueueStats) {
    let st = src.stats();
    let (_, _, c) = worker.progress();
    let filtered = c.get(Event::Filtered);
    let malformed = st.malformed
        + c.nonzero()
            .filter(|(e, _)| e.is_malformed())
            .map(|(_, n)| n)
            .sum::<u64>();
    qs.received.store(st.received, Ordering::Relaxed);
    qs.kernel_dropped.store(st.dropped, Ordering::Relaxed);
    qs.ring_full.store(src.freeze_count, Ordering::Relaxed);
    qs.malformed.store(malformed, Ordering::Relaxed);
    qs.filtered.store(filtered, Ordering::Relaxed);
    qs.records_dropped
        .store(worker.sink_mut().dropped, Ordering::Relaxed);
    if let Ok(mut v) = qs.per_iface.try_lock() {
        v.clear();
        v.extend_from_slice(src.per_iface());
    }
}

fn log_stats(stats: &[Arc<QueueStats>], selected: &[Iface]) {
    for (i, q) in stats.iter().enumerate() {
        tracing::info!(
            queue = i,
            received = q.received.load(Ordering::Relaxed),
            kernel_dropped = q.kernel_dropped.load(Ordering::Relaxed),
            ring_full = q.ring_full.load(Ordering::Relaxed),
            filtered = q.filtered.load(Ordering::Relaxed),
            malformed = q.malformed.load(Ordering::Relaxed),
            records_dropped = q.records_dropped.load(Ordering::Relaxed),
            "queue stats"
        );
    }
    let mut per: Vec<IfaceCount> = Vec::new();
    for q in stats {
        if let Ok(v) = q.per_iface.lock() {
            for c in v.iter() {
                match per.iter_mut().find(|p| p.ifindex == c.ifindex) {
                    Some(p) => {
                        p.frames += c.frames;
                        p.bytes += c.bytes;
                    }
                    None => per.push(*c),
                }
            }
        }
    }
    for c in per {
        let name = selected
            .iter()
            .find(|i| i.ifindex == c.ifindex)
            .map_or("(gone)", |i| i.name.as_str());
        tracing::info!(
            interface = name,
            ifindex = c.ifindex,
            frames = c.frames,
            bytes = c.bytes,
            "interface stats"
        );
    }
}

/// The writer thread: JSON lines as records arrive, or a table every interval.
fn write_records(
    cfg: &Config,
    format: OutputFormat,
    rx: Receiver<Vec<Record>>,
    out: &mut (dyn Write + Send),
    stats: &[Arc<QueueStats>],
) {
    let mut summary = Summary::default();
    let mut line = String::with_capacity(1024);
    let interval = Duration::from_secs(cfg.output.table_interval_secs.max(1));
    let mut next_table = Instant::now() + interval;
    let render = |summary: &mut Summary, out: &mut (dyn Write + Send)| {
        let (mut packets, mut bytes) = (0, 0);
        for q in stats {
            packets += q.received.load(Ordering::Relaxed);
            if let Ok(v) = q.per_iface.lock() {
                bytes += v.iter().map(|c| c.bytes).sum::<u64>();
            }
        }
        let table = summary.render(packets, bytes, &Counters::default());
        let _ = out.write_all(table.as_bytes());
        let _ = out.flush();
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(batch) => {
                for r in &batch {
                    summary.add(r);
                    if format == OutputFormat::Jsonl {
                        line.clear();
                        match r {
                            Record::Flow(f) if cfg.output.flows => jsonl::write_flow(&mut line, f),
                            Record::Flow(_) => continue,
                            Record::Transaction(t) => jsonl::write_transaction(&mut line, t),
                        }
                        line.push('\n');
                        let _ = out.write_all(line.as_bytes());
                    }
                }
                if format == OutputFormat::Jsonl && rx.is_empty() {
                    let _ = out.flush();
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
        if format == OutputFormat::Table && Instant::now() >= next_table {
            next_table = Instant::now() + interval;
            render(&mut summary, out);
        }
    }
    if format == OutputFormat::Table {
        render(&mut summary, out);
    }
    let _ = out.flush();
}
