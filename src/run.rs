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

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::capture::iface::{self, Iface, LinkEvent, LinkWatcher, Selector};
use crate::capture::mirror::Mirror;
use crate::capture::tpacket::{FilterHandle, IfaceCount, IfaceFilter, TpacketSource};
use crate::capture::xdp::{Decap, XdpSource};
use crate::capture::{CaptureError, LiveSource};
use crate::config::{CaptureMode, Config};
use crate::control::IfaceStatus;
use crate::control::server::{DaemonState, Server as ControlServer};
use crate::control::tap::TapHub;
use crate::events::{Counters, Event};
use crate::export::jsonl::{self, JsonLines};
use crate::export::queue::{BatchReceiver, BatchSender, RecvError, record_queue};
use crate::export::summary::Summary;
use crate::export::{ChannelSink, ExportSink, Exporter};
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
    #[error(transparent)]
    Control(#[from] crate::control::ControlError),
}

pub struct RunOptions {
    pub output: OutputFormat,
    /// Overrides `capture.workers`.
    pub workers: Option<usize>,
    /// The config file, re-read on SIGHUP (attribution settings take effect; `None`: the
    /// embedded config).
    pub config_path: Option<std::path::PathBuf>,
    /// Where attribution publishes the monitoring policies' health checks of this
    /// node's pods (the health probes run them); None: nobody runs them.
    pub policy_checks: Option<tokio::sync::watch::Sender<Vec<crate::k8s::policy_watch::PodCheck>>>,
}

/// After a new interface appears, the namespace rescans that follow the immediate one
/// (a CNI addresses the pod after creating its veth).
const RESCANS_AFTER_LINK: [Duration; 3] = [
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// Frames a worker takes from its ring per batch.
const BATCH: usize = 256;
/// Records per batch sent to the writer.
pub const RECORD_BATCH: usize = 256;
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

/// Which engine captures interface `name` in `mode`, and why. `podtap check` prints the
/// same reasons.
pub fn choose_engine(cfg: &Config, name: &str) -> (Engine, String) {
    match cfg.capture.mode {
        CaptureMode::Tpacket => (Engine::Tpacket, "capture.mode = tpacket".into()),
        CaptureMode::Xdp => (Engine::Xdp, "capture.mode = xdp".into()),
        CaptureMode::Auto => match auto_pick(cfg, name) {
            ("xdp", why) => match crate::capture::xdp::probe(name) {
                Ok(_) => (Engine::Xdp, why.into()),
                Err(e) => (
                    Engine::Tpacket,
                    format!("AF_XDP cannot run here ({e}); TPACKET_V3 used"),
                ),
            },
            (_, why) => (Engine::Tpacket, why.into()),
        },
    }
}

/// `auto`'s first pick for `name`, before probing AF_XDP: by kind of interface, except
/// that a `capture.direct` interface is a dedicated copy port, so AF_XDP reads its queues.
fn auto_pick(cfg: &Config, name: &str) -> (&'static str, &'static str) {
    if is_direct(cfg, name) {
        return (
            "xdp",
            "capture.direct: a dedicated copy port, AF_XDP takes its frames",
        );
    }
    crate::check::auto_choice(crate::check::interface_kind(name))
}

/// How the frames of one interface reach a worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The TPACKET_V3 fanout group's interface filter lists it.
    Tpacket,
    /// Its traffic is mirrored to the capture device that AF_XDP workers read.
    Mirror,
    /// AF_XDP workers read its own queues (an already-mirrored NIC).
    Plain,
}

/// Is `name` a dedicated copy port (SPAN/TAP, the end of a mirror tunnel) whose queues
/// AF_XDP may bind directly? Only when the operator lists it in `capture.direct`: a bound
/// queue's frames go to podtap's sockets instead of the kernel, so binding an interface
/// that carries the node's own traffic would cut the node off the network. Every other
/// interface, physical NICs included, is read with TPACKET_V3 or mirrored as copies.
pub fn is_direct(cfg: &Config, name: &str) -> bool {
    cfg.capture
        .direct
        .iter()
        .any(|re| regex::Regex::new(&format!("^(?:{re})$")).is_ok_and(|r| r.is_match(name)))
}

/// Receive queues of an interface (sysfs `queues/rx-*`).
fn rx_queues(name: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{name}/queues"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

/// Counters one worker publishes for the control loop (written between batches, never
/// per frame).
#[derive(Default)]
pub struct QueueStats {
    /// `tpacket` or `xdp`.
    pub engine: &'static str,
    /// A worker runs this queue (TPACKET_V3 queues wait for their rings until some
    /// interface is routed to them).
    pub active: AtomicBool,
    pub received: AtomicU64,
    pub kernel_dropped: AtomicU64,
    pub ring_full: AtomicU64,
    pub malformed: AtomicU64,
    /// Frames timed by receive batch for want of their own stamp (AF_XDP).
    pub unstamped: AtomicU64,
    pub filtered: AtomicU64,
    pub records_dropped: AtomicU64,
    /// Flows the worker tracks now.
    pub open_flows: AtomicU64,
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
    export: Option<&Exporter>,
) -> Result<RunTotals, RunError> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).map_err(RunError::Signals)?;
    }
    let selector = Selector::new(&cfg.capture.interfaces, &cfg.capture.exclude)?;
    // The control socket first: a bad `control.group` stops the start before capture.
    let control = if cfg.control.enabled {
        let c = ControlServer::bind(&cfg.control)?;
        if c.is_none() {
            tracing::warn!(
                socket = %cfg.control.socket,
                "another podtap daemon answers on the control socket: this one serves none"
            );
        }
        c
    } else {
        None
    };
    let hub = TapHub::new();
    // Pod attribution; its label selector also decides which pod interfaces are captured.
    let attribution = if cfg.attribution.enabled {
        let mut ac = cfg.attribution.clone();
        // Live observation points are ifindexes, not pcapng interface numbers.
        ac.replay_interfaces.clear();
        Some(crate::k8s::Attribution::start(&ac)?)
    } else {
        None
    };
    if let (Some(a), Some(tx)) = (&attribution, &opts.policy_checks) {
        a.publish_checks(tx.clone());
    }
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
    let health = export.map(|e| e.health().clone());

    let online = std::thread::available_parallelism().map_or(1, |n| n.get());
    let n = match opts.workers.unwrap_or(cfg.capture.workers) {
        0 if !cfg.capture.cpus.is_empty() => cfg.capture.cpus.len(),
        0 => online,
        n => n,
    };

    // Decide each interface's engine, then open what the decisions need; where AF_XDP
    // cannot be opened, TPACKET_V3 takes the interface over and the reason is logged.
    let mut decisions: Vec<(Iface, Engine, String)> = selected
        .iter()
        .map(|i| {
            let (e, why) = choose_engine(cfg, &i.name);
            (i.clone(), e, why)
        })
        .collect();
    let wants_mirror = cfg.capture.mode == CaptureMode::Xdp
        || decisions
            .iter()
            .any(|(i, e, _)| *e == Engine::Xdp && !is_direct(cfg, &i.name));
    let mut mirror: Option<Mirror> = None;
    let mut xdp_sources: Vec<(String, XdpSource)> = Vec::new();
    if wants_mirror {
        match open_mirror(cfg, n as u32) {
            Ok((m, srcs)) => {
                mirror = Some(m);
                xdp_sources.extend(srcs);
            }
            Err(e) => {
                let why = format!("AF_XDP unavailable ({e}); TPACKET_V3 used");
                tracing::warn!("{why}");
                for d in decisions.iter_mut().filter(|d| !is_direct(cfg, &d.0.name)) {
                    if d.1 == Engine::Xdp {
                        d.1 = Engine::Tpacket;
                        d.2 = why.clone();
                    }
                }
            }
        }
    }
    let mut routes: HashMap<u32, Route> = HashMap::new();
    for (i, engine, why) in decisions.iter_mut() {
        let route = match (*engine, is_direct(cfg, &i.name)) {
            (Engine::Tpacket, _) => Route::Tpacket,
            (Engine::Xdp, false) => match mirror.as_mut().map(|m| m.attach(i.ifindex)) {
                Some(Ok(())) => Route::Mirror,
                Some(Err(e)) => {
                    *why = format!("mirror failed ({e}); TPACKET_V3 used");
                    Route::Tpacket
                }
                None => Route::Tpacket,
            },
            (Engine::Xdp, true) => match open_plain_checked(cfg, &i.name) {
                Ok(srcs) => {
                    xdp_sources.extend(srcs);
                    Route::Plain
                }
                Err(e) => {
                    *why = format!("AF_XDP unavailable ({e}); TPACKET_V3 used");
                    Route::Tpacket
                }
            },
        };
        if route == Route::Tpacket {
            *engine = Engine::Tpacket;
        }
        routes.insert(i.ifindex, route);
    }
    let filter = tpacket_filter(&selected, &routes);

    // One fanout group per process: its id only has to differ from other capturers'. A
    // single ring needs no group: the kernel would hash every frame (flow dissector) only
    // to pick the one socket there is.
    let group = (n > 1).then_some((std::process::id() & 0xffff) as u16);
    // The TPACKET_V3 rings (n * block_size * block_count bytes) are opened only when some
    // interface is routed to them: now, or from the control loop when the first one
    // appears (in xdp mode: a NIC that shows up later, a pod whose mirror fails; in auto
    // mode: any interface auto gives TPACKET_V3). In tpacket mode they are opened at
    // start even with no interface yet, so that a ring that cannot be opened stops the
    // start.
    let mut sources = Vec::new();
    if cfg.capture.mode == CaptureMode::Tpacket || filter != IfaceFilter::Nothing {
        sources = open_tpacket(cfg, &filter, n, group)?;
    }
    // Said only now that every socket an interface needs is open.
    for (i, engine, why) in &decisions {
        log_attach(i, *engine, why);
        if let Some(e) = export {
            e.interface_attached(i.ifindex, &i.name);
        }
    }
    let mut handles: Vec<FilterHandle> = sources.iter().map(|s| s.filter_handle()).collect();
    let queues = n + xdp_sources.len();
    let stats: Vec<Arc<QueueStats>> = (0..queues)
        .map(|i| {
            Arc::new(QueueStats {
                engine: if i < n { "tpacket" } else { "xdp" },
                ..Default::default()
            })
        })
        .collect();
    // The flight recorder: each worker's rings share `recorder.pod_bytes` per pod.
    let recorder = crate::recorder::Recorder::new(
        &cfg.recorder,
        queues,
        &crate::k8s::node_name(&cfg.attribution),
    );
    let recorder_hub = recorder.as_ref().map(|r| r.hub());
    let state = DaemonState {
        started: Instant::now(),
        node: crate::k8s::node_name(&cfg.attribution),
        queues: stats.clone(),
        interfaces: std::sync::Mutex::new(
            decisions
                .iter()
                .map(|(i, e, why)| iface_status(i, *e, why))
                .collect(),
        ),
        mirror: mirror.as_ref().map(|m| m.capture_device().to_string()),
        hub: hub.clone(),
        attributor: attributor.clone(),
        recorder: recorder.clone(),
    };
    let core_ids = core_affinity::get_core_ids().unwrap_or_default();
    let cpu_of = |i: usize| {
        let cpu = if cfg.capture.cpus.is_empty() {
            core_ids.get(i % core_ids.len().max(1)).copied()
        } else {
            let want = cfg.capture.cpus[i % cfg.capture.cpus.len()];
            core_ids.iter().copied().find(|c| c.id == want)
        };
        cfg.capture.pin.then_some(cpu).flatten()
    };

    let (tx, rx) = record_queue(cfg.output.queue_batches, RECORD_BATCH);
    let workers_stop = Arc::new(AtomicBool::new(false));
    // Anomaly events: found by the workers and the exporter, sent by the engine's thread.
    let anomalies = crate::anomaly::engine::Engine::start(
        &cfg.anomalies,
        (opts.output == OutputFormat::Jsonl).then(|| tx.clone()),
        export,
    );
    let anomalies = anomalies.map(|(h, e)| match &recorder {
        Some(r) => (
            h,
            e.with_hook(Box::new(crate::recorder::TriggerHook(r.clone()))),
        ),
        None => (h, e),
    });
    let anomaly_hub = anomalies.as_ref().map(|(h, _)| h.clone());
    if let (Some(e), Some(a)) = (export, &attributor) {
        e.anomaly_policies(a.clone());
    }
    let engine_stop = AtomicBool::new(false);
    let recorder_stop = AtomicBool::new(false);

    // With `--output none` the workers queue no records at all.
    let records = |tx: &crate::export::queue::BatchSender| {
        (opts.output != OutputFormat::None).then(|| ChannelSink::new(tx.clone(), false))
    };
    // Spans link a client pod's end only where its veth is captured.
    let captured = Arc::new(selector.clone());
    std::thread::scope(|s| {
        let feed = export.map(|e| e.metrics_feed());
        let writer = s.spawn(|| write_records(cfg, opts.output, rx, out, &stats, feed));
        let engine = anomalies.map(|(_, e)| {
            let stop = &engine_stop;
            std::thread::Builder::new()
                .name("podtap-anomaly".into())
                .spawn_scoped(s, move || e.run(|| stop.load(Ordering::Relaxed)))
                .expect("spawn anomaly engine")
        });
        let recorder_thread = recorder.as_ref().map(|r| {
            let (stop, attr) = (&recorder_stop, attributor.clone());
            std::thread::Builder::new()
                .name("podtap-recorder".into())
                .spawn_scoped(s, move || r.run(attr, || stop.load(Ordering::Relaxed)))
                .expect("spawn flight recorder")
        });
        if let Some(c) = &control {
            tracing::info!(socket = %c.path().display(), "control socket");
            let (state, stop) = (&state, &stop);
            std::thread::Builder::new()
                .name("podtap-control".into())
                .spawn_scoped(s, move || c.serve(state, export, stop))
                .expect("spawn control server");
        }
        let mut threads = Vec::with_capacity(queues);
        // How a capture thread makes its worker around `sink` (attribution, sniff taps,
        // anomaly findings and the flight recorder shared by all).
        let worker_of = |sink: ExportSink<ChannelSink>| {
            let (attr, tap, an) = (attributor.clone(), hub.clone(), anomaly_hub.clone());
            let rh = recorder_hub.clone();
            move || {
                Worker::new(cfg, sink)
                    .with_attributor(attr)
                    .with_tap(tap)
                    .with_anomalies(an, &cfg.anomalies)
                    .with_recorder(rh.as_ref())
            }
        };
        // TPACKET_V3 worker i (also when its ring is opened late, from the control loop).
        let spawn_tpacket = |i: usize, src: TpacketSource, tx: &BatchSender| {
            let sink = ExportSink::new(
                export.map(|e| e.worker_handle(i).captured(captured.clone())),
                records(tx),
            );
            let (qs, wstop, cpu) = (stats[i].clone(), workers_stop.clone(), cpu_of(i));
            qs.active.store(true, Ordering::Relaxed);
            std::thread::Builder::new()
                .name(format!("podtap-t{i}"))
                .spawn_scoped(s, {
                    let worker = worker_of(sink);
                    move || capture_loop(src, worker, cpu, &qs, &wstop)
                })
                .expect("spawn worker")
        };
        let tpacket_open = !sources.is_empty();
        for (i, src) in sources.into_iter().enumerate() {
            threads.push(spawn_tpacket(i, src, &tx));
        }
        for (j, (dev, src)) in xdp_sources.into_iter().enumerate() {
            let i = n + j;
            let sink = ExportSink::new(
                export.map(|e| e.worker_handle(i).captured(captured.clone())),
                records(&tx),
            );
            // XDP queue j shares a CPU with tpacket worker j: where both engines run,
            // each CPU still carries one busy ring.
            let (qs, wstop, cpu) = (stats[i].clone(), workers_stop.clone(), cpu_of(j));
            qs.active.store(true, Ordering::Relaxed);
            tracing::debug!(device = %dev, queue = src.queue(), "AF_XDP worker");
            threads.push(
                std::thread::Builder::new()
                    .name(format!("podtap-x{j}"))
                    .spawn_scoped(s, {
                        let worker = worker_of(sink);
                        move || capture_loop(src, worker, cpu, &qs, &wstop)
                    })
                    .expect("spawn worker"),
            );
        }
        // Kept for TPACKET_V3 workers started later; dropped once the workers are done, so
        // that the writer sees the end of the records.
        let mut tpacket_tx = (!tpacket_open).then(|| tx.clone());
        drop(tx);
        if let Some(h) = &health {
            h.set_capturing(selected.len());
        }
        tracing::info!(
            interfaces = selected.len(),
            tpacket_workers = if tpacket_open { n } else { 0 },
            xdp_workers = queues - n,
            mirror = mirror.as_ref().map(|m| m.capture_device().to_string()),
            "podtap: capturing"
        );

        let mut next_stats = Instant::now() + stats_interval(cfg);
        // Interfaces matched so far (before the pod selector), to see new ones; and the
        // namespace rescans still due after the last new one.
        let mut known: Vec<u32> = selector
            .select(&iface::list())
            .iter()
            .map(|i| i.ifindex)
            .collect();
        let mut rescans: Vec<Instant> = Vec::new();
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
                r => {
                    let listed = selector.select(&iface::list());
                    // A new interface is a new pod (or its veth): name it before its
                    // first flow, and again shortly after, since a CNI moves the peer
                    // into the pod's namespace and addresses it after creating the link.
                    // A change of a captured link whose pod the snapshot lacks, or knows
                    // without an address yet (the peer came up in its namespace), rescans
                    // too.
                    let unknown_changed = r.as_ref().is_ok_and(|events| {
                        let snap = attribution.as_ref().map(|a| a.snapshot());
                        events.iter().any(|e| {
                            let (LinkEvent::Added(i) | LinkEvent::Removed(i)) = e;
                            listed.contains(i)
                                && snap.as_ref().is_some_and(|s| {
                                    s.obs(i.ifindex).is_none_or(|p| p.ips.is_empty())
                                })
                        })
                    });
                    if let Some(a) = &attribution
                        && (unknown_changed || listed.iter().any(|i| !known.contains(&i.ifindex)))
                    {
                        a.rescan_netns();
                        let t = Instant::now();
                        rescans = RESCANS_AFTER_LINK.iter().map(|d| t + *d).collect();
                    }
                    known = listed.iter().map(|i| i.ifindex).collect();
                    let now = pods_selected(listed);
                    // The capture device deleted by someone else: nothing reaches the AF_XDP
                    // queues any more. The mirror's filters go (the pods' traffic is
                    // untouched either way) and its interfaces move to TPACKET_V3.
                    let mut rerouted = Vec::new();
                    if mirror.as_ref().is_some_and(|m| !m.device_present()) {
                        let m = mirror.take().expect("checked");
                        tracing::error!(
                            device = m.capture_device(),
                            "the mirror's capture device was removed by someone else: mirrored interfaces fall back to TPACKET_V3"
                        );
                        drop(m);
                        for (ifindex, r) in routes.iter_mut().filter(|(_, r)| **r == Route::Mirror)
                        {
                            *r = Route::Tpacket;
                            rerouted
                                .extend(selected.iter().filter(|i| i.ifindex == *ifindex).cloned());
                        }
                    }
                    if now != selected || !rerouted.is_empty() {
                        let attached = relink(
                            cfg,
                            &selected,
                            &now,
                            &mut routes,
                            mirror.as_mut(),
                            &handles,
                            export,
                        );
                        let mut st = state.interfaces.lock().unwrap_or_else(|e| e.into_inner());
                        st.retain(|s| now.iter().any(|i| i.ifindex == s.ifindex));
                        st.extend(attached);
                        drop(st);
                        // The first interface routed to TPACKET_V3 opens its rings.
                        let f = tpacket_filter(&now, &routes);
                        if let Some(ttx) = tpacket_tx.as_ref()
                            && f != IfaceFilter::Nothing
                        {
                            match open_tpacket(cfg, &f, n, group) {
                                Ok(srcs) => {
                                    handles.extend(srcs.iter().map(|s| s.filter_handle()));
                                    for (i, src) in srcs.into_iter().enumerate() {
                                        threads.push(spawn_tpacket(i, src, ttx));
                                    }
                                    tpacket_tx = None;
                                    tracing::info!(workers = n, "TPACKET_V3 rings opened");
                                }
                                Err(e) => tracing::error!(
                                    "cannot open the TPACKET_V3 rings, interfaces routed to them are not captured: {e}"
                                ),
                            }
                        }
                        selected = now;
                        if let Some(h) = &health {
                            h.set_capturing(selected.len());
                        }
                    }
                    // Said once the rings take them.
                    const REROUTED: &str = "the mirror's capture device was removed";
                    if !rerouted.is_empty() {
                        let mut st = state.interfaces.lock().unwrap_or_else(|e| e.into_inner());
                        for s in st
                            .iter_mut()
                            .filter(|s| rerouted.iter().any(|i| i.ifindex == s.ifindex))
                        {
                            s.engine = Engine::Tpacket.as_str().into();
                            s.reason = REROUTED.into();
                        }
                    }
                    for i in &rerouted {
                        log_attach(i, Engine::Tpacket, REROUTED);
                    }
                }
            }
            if let Some(a) = &attribution
                && rescans.first().is_some_and(|t| Instant::now() >= *t)
            {
                rescans.remove(0);
                a.rescan_netns();
            }
            if cfg.output.stats_interval_secs > 0 && Instant::now() >= next_stats {
                next_stats = Instant::now() + stats_interval(cfg);
                log_stats(&stats, &selected);
            }
        }
        tracing::info!("stopping: flushing open flows");
        if let Some(h) = &health {
            h.set_capturing(0);
        }
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
        drop(tpacket_tx);
        // The engine sends what the workers found while finishing, then lets the writer end.
        engine_stop.store(true, Ordering::Relaxed);
        if let Some(e) = engine {
            e.join().expect("anomaly engine panicked");
        }
        // The workers handed over what they had: recordings still running are written.
        recorder_stop.store(true, Ordering::Relaxed);
        if let Some(r) = recorder_thread {
            r.join().expect("flight recorder panicked");
        }
        for q in &stats {
            totals.kernel_dropped += q.kernel_dropped.load(Ordering::Relaxed);
            totals.ring_full += q.ring_full.load(Ordering::Relaxed);
        }
        let written = writer.join().expect("writer thread panicked");
        totals.counters.merge(&written);
        log_stats(&stats, &selected);
        // The mirror goes last: its filters and capture device are removed on drop.
        drop(mirror);
        Ok(totals)
    })
}

/// `n` TPACKET_V3 rings, joined in fanout `group`, listening to `filter`'s interfaces.
fn open_tpacket(
    cfg: &Config,
    filter: &IfaceFilter,
    n: usize,
    group: Option<u16>,
) -> Result<Vec<TpacketSource>, CaptureError> {
    (0..n)
        .map(|_| TpacketSource::open(&cfg.capture.tpacket, filter, group))
        .collect()
}

/// The capture device and one AF_XDP socket per queue on it.
fn open_mirror(cfg: &Config, queues: u32) -> Result<(Mirror, Vec<(String, XdpSource)>), String> {
    let mut m = Mirror::new(&cfg.capture.mirror, queues).map_err(|e| e.to_string())?;
    if !cfg.capture.xdp.frame_timestamps {
        m.set_stamping(false).map_err(|e| e.to_string())?;
    }
    let dev = m.capture_device().to_string();
    let mut v = Vec::with_capacity(queues as usize);
    for q in 0..queues {
        let src = XdpSource::open(&dev, q, &cfg.capture.xdp, Decap::Mirror(m.tags()))
            .map_err(|e| e.to_string())?;
        v.push((dev.clone(), src));
    }
    Ok((m, v))
}

/// [`open_plain`], after a loud warning when the copy port looks like it carries the
/// host's own traffic (`podtap check` fails on the same condition): the operator listed
/// it, so it is bound, but the log says what that costs.
fn open_plain_checked(cfg: &Config, name: &str) -> Result<Vec<(String, XdpSource)>, String> {
    let live = crate::check::live_use(name);
    if live.is_live() {
        tracing::warn!(
            iface = name,
            addresses = %live.addresses.join(" "),
            routes = live.routes,
            "capture.direct lists an interface with addresses or routes: AF_XDP takes ALL \
             its frames from the kernel, so the host loses that network while podtap runs"
        );
    }
    open_plain(cfg, name)
}

/// One AF_XDP socket per receive queue of an already-mirrored NIC.
fn open_plain(cfg: &Config, name: &str) -> Result<Vec<(String, XdpSource)>, String> {
    (0..rx_queues(name))
        .map(|q| {
            XdpSource::open(name, q, &cfg.capture.xdp, Decap::Plain)
                .map(|s| (name.to_string(), s))
                .map_err(|e| e.to_string())
        })
        .collect()
}

/// Interfaces came or went: mirror or un-mirror them, and give the TPACKET_V3 rings the
/// new interface list. Workers keep running throughout. Returns the new interfaces, with
/// their engines, for `podtap status`.
fn relink(
    cfg: &Config,
    before: &[Iface],
    now: &[Iface],
    routes: &mut HashMap<u32, Route>,
    mut mirror: Option<&mut Mirror>,
    handles: &[FilterHandle],
    export: Option<&Exporter>,
) -> Vec<IfaceStatus> {
    // Said once the filter below takes the interfaces: a log line that says attached means
    // its frames are being captured.
    let mut attached = Vec::new();
    for i in now.iter().filter(|i| !before.contains(i)) {
        let (mut engine, mut why) = choose_engine(cfg, &i.name);
        let mut route = Route::Tpacket;
        if engine == Engine::Xdp {
            if is_direct(cfg, &i.name) {
                why = "AF_XDP queues are opened at start; TPACKET_V3 until restart".into();
            } else if let Some(m) = mirror.as_deref_mut() {
                match m.attach(i.ifindex) {
                    Ok(()) => route = Route::Mirror,
                    Err(e) => why = format!("mirror failed ({e}); TPACKET_V3 used"),
                }
            } else {
                why = "AF_XDP unavailable (no capture device); TPACKET_V3 used".into();
            }
        }
        if route == Route::Tpacket {
            engine = Engine::Tpacket;
        }
        routes.insert(i.ifindex, route);
        attached.push((i, engine, why));
    }
    for i in before.iter().filter(|i| !now.contains(i)) {
        if routes.remove(&i.ifindex) == Some(Route::Mirror)
            && let Some(m) = mirror.as_deref_mut()
            && let Err(e) = m.detach(i.ifindex)
        {
            tracing::warn!(interface = %i.name, "mirror detach: {e}");
        }
        tracing::info!(interface = %i.name, ifindex = i.ifindex, "detached");
        if let Some(e) = export {
            e.interface_detached(i.ifindex);
        }
    }
    let f = tpacket_filter(now, routes);
    for h in handles {
        if let Err(e) = h.set(&f) {
            tracing::error!("cannot update the capture filter: {e}");
        }
    }
    attached
        .into_iter()
        .map(|(i, engine, why)| {
            log_attach(i, engine, &why);
            if let Some(e) = export {
                e.interface_attached(i.ifindex, &i.name);
            }
            iface_status(i, engine, &why)
        })
        .collect()
}

/// SIGHUP: re-read the config file and apply its attribution settings (selector, label
/// keys, static map) without losing flows or watch state. A file that does not load
/// changes nothing: the running settings stay and the error (file, key) is logged.
fn reload(opts: &RunOptions, attribution: Option<&crate::k8s::Attribution>) {
    let Some(path) = opts.config_path.as_deref() else {
        tracing::info!("SIGHUP: running on the embedded config, nothing to reload");
        return;
    };
    match Config::load(Some(path)) {
        Err(e) => tracing::error!("SIGHUP: config not reloaded, the running one stays: {e}"),
        Ok(new) => match attribution {
            Some(a) => match a.reload(&new.attribution) {
                Ok(()) => tracing::info!("SIGHUP: attribution settings reloaded"),
                Err(e) => tracing::error!(
                    "SIGHUP: attribution not reloaded, the running settings stay: {e}"
                ),
            },
            None => tracing::info!(
                "SIGHUP: {} is valid; only attribution settings apply on SIGHUP, and attribution is off",
                path.display()
            ),
        },
    }
}

fn stats_interval(cfg: &Config) -> Duration {
    Duration::from_secs(cfg.output.stats_interval_secs.max(1))
}

/// The TPACKET_V3 rings' filter: the selected interfaces routed to them.
fn tpacket_filter(selected: &[Iface], routes: &HashMap<u32, Route>) -> IfaceFilter {
    let ifs: Vec<u32> = selected
        .iter()
        .filter(|i| routes.get(&i.ifindex).is_none_or(|r| *r == Route::Tpacket))
        .map(|i| i.ifindex)
        .collect();
    if ifs.is_empty() {
        IfaceFilter::Nothing
    } else {
        IfaceFilter::Only(ifs)
    }
}

fn iface_status(i: &Iface, engine: Engine, reason: &str) -> IfaceStatus {
    IfaceStatus {
        name: i.name.clone(),
        ifindex: i.ifindex,
        engine: engine.as_str().into(),
        reason: reason.into(),
        ..Default::default()
    }
}

fn log_attach(i: &Iface, engine: Engine, reason: &str) {
    tracing::info!(
        interface = %i.name,
        ifindex = i.ifindex,
        engine = engine.as_str(),
        reason,
        "attached"
    );
}

/// One worker: read its ring, process frames, and between batches do the housekeeping.
fn capture_loop<L: LiveSource>(
    mut src: L,
    worker: impl FnOnce() -> Worker<ExportSink<ChannelSink>>,
    cpu: Option<core_affinity::CoreId>,
    qs: &QueueStats,
    stop: &AtomicBool,
) -> (WorkerTotals, u64) {
    if let Some(c) = cpu
        && !core_affinity::set_for_current(c)
    {
        tracing::warn!(cpu = c.id, "cannot pin worker to CPU");
    }
    // Built once pinned, so that its tables are allocated from the worker's CPU.
    let mut worker = worker();
    let mut next_housekeeping = Instant::now();
    // Frames and bytes per observation point (a few per node: a short vector).
    let mut per_iface: Vec<IfaceCount> = Vec::with_capacity(256);
    loop {
        let n = worker
            .batch(&mut src, BATCH, |f| {
                count_iface(&mut per_iface, f.obs, f.wire_len)
            })
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
            publish(&src, &mut worker, &per_iface, qs);
        }
        if stopping && n == 0 {
            break;
        }
    }
    let (totals, sink) = worker.finish();
    (totals, sink.inner().map_or(0, |s| s.dropped))
}

fn count_iface(v: &mut Vec<IfaceCount>, ifindex: u32, len: u32) {
    if let Some(c) = v.iter_mut().find(|c| c.ifindex == ifindex) {
        c.frames += 1;
        c.bytes += len as u64;
    } else if v.len() < v.capacity() {
        v.push(IfaceCount {
            ifindex,
            frames: 1,
            bytes: len as u64,
        });
    }
}

fn publish<L: LiveSource>(
    src: &L,
    worker: &mut Worker<ExportSink<ChannelSink>>,
    per_iface: &[IfaceCount],
    qs: &QueueStats,
) {
    let st = src.stats();
    let (packets, bytes, c) = worker.progress();
    let filtered = c.get(Event::Filtered);
    let malformed = st.malformed
        + c.nonzero()
            .filter(|(e, _)| e.is_malformed())
            .map(|(_, n)| n)
            .sum::<u64>();
    qs.received.store(st.received, Ordering::Relaxed);
    qs.kernel_dropped.store(st.dropped, Ordering::Relaxed);
    qs.ring_full.store(src.ring_full(), Ordering::Relaxed);
    qs.malformed.store(malformed, Ordering::Relaxed);
    qs.unstamped.store(st.unstamped, Ordering::Relaxed);
    qs.filtered.store(filtered, Ordering::Relaxed);
    qs.open_flows
        .store(worker.live_flows() as u64, Ordering::Relaxed);
    let sink = worker.sink_mut();
    sink.capture(&crate::stats::CaptureTotals {
        packets,
        bytes,
        kernel_drops: st.dropped,
        ring_full: src.ring_full(),
        interfaces: per_iface,
    });
    qs.records_dropped
        .store(sink.inner().map_or(0, |s| s.dropped), Ordering::Relaxed);
    if let Ok(mut v) = qs.per_iface.try_lock() {
        v.clear();
        v.extend_from_slice(per_iface);
    }
}

/// Frames and bytes per interface, all queues together.
pub(crate) fn iface_totals(stats: &[Arc<QueueStats>]) -> Vec<IfaceCount> {
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
    per
}

fn log_stats(stats: &[Arc<QueueStats>], selected: &[Iface]) {
    for (i, q) in stats.iter().enumerate() {
        if !q.active.load(Ordering::Relaxed) {
            continue;
        }
        tracing::info!(
            queue = i,
            engine = q.engine,
            received = q.received.load(Ordering::Relaxed),
            kernel_dropped = q.kernel_dropped.load(Ordering::Relaxed),
            ring_full = q.ring_full.load(Ordering::Relaxed),
            filtered = q.filtered.load(Ordering::Relaxed),
            malformed = q.malformed.load(Ordering::Relaxed),
            unstamped = q.unstamped.load(Ordering::Relaxed),
            records_dropped = q.records_dropped.load(Ordering::Relaxed),
            "queue stats"
        );
    }
    for c in iface_totals(stats) {
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
    rx: BatchReceiver,
    out: &mut (dyn Write + Send),
    stats: &[Arc<QueueStats>],
    feed: Option<crate::export::exporter::MetricsFeed>,
) -> Counters {
    let mut summary = Summary::new(cfg.output.table_max_endpoints);
    let mut lines = JsonLines::default();
    let mut sink = Output::default();
    // Lines lost to write failures reach /metrics and OTLP as `podtap.events`
    // {output.write_failed} too: a full disk must show where the alerts look.
    let mut failed = ExportedCount::new(feed, Event::OutputWriteFailed);
    let jsonl = format == OutputFormat::Jsonl;
    let interval = Duration::from_secs(cfg.output.table_interval_secs.max(1));
    let mut next_table = Instant::now() + interval;
    // Each table covers its interval alone: the capture totals at its start are kept to
    // print what the interval added.
    let mut from = Timestamp::now();
    let mut at_start = (0u64, 0u64);
    let mut render = |summary: &mut Summary, out: &mut (dyn Write + Send)| {
        let (mut packets, mut bytes, mut open_flows) = (0, 0, 0);
        for q in stats {
            packets += q.received.load(Ordering::Relaxed);
            open_flows += q.open_flows.load(Ordering::Relaxed);
            if let Ok(v) = q.per_iface.lock() {
                bytes += v.iter().map(|c| c.bytes).sum::<u64>();
            }
        }
        let to = Timestamp::now();
        let iv = crate::export::summary::Interval {
            from,
            to,
            open_flows,
        };
        let table = summary.render_interval(
            &iv,
            packets.saturating_sub(at_start.0),
            bytes.saturating_sub(at_start.1),
            &Counters::default(),
        );
        let _ = out.write_all(table.as_bytes());
        let _ = out.flush();
        *summary = Summary::new(cfg.output.table_max_endpoints);
        (from, at_start) = (to, (packets, bytes));
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(batch) => {
                for r in &batch {
                    summary.add(r);
                    if jsonl && lines.push(r, cfg.output.flows) && lines.len() >= jsonl::FLUSH_AT {
                        sink.write(&mut lines, out, false);
                    }
                }
                rx.give_back(batch);
                // Caught up: what is buffered goes out now, so a quiet node's records are
                // not held back waiting for more.
                if jsonl && rx.is_empty() {
                    sink.write(&mut lines, out, true);
                }
            }
            Err(RecvError::Timeout) => {}
            Err(RecvError::Disconnected) => break,
        }
        failed.update(sink.counters.get(Event::OutputWriteFailed));
        if format == OutputFormat::Table && Instant::now() >= next_table {
            next_table = Instant::now() + interval;
            render(&mut summary, out);
        }
    }
    if format == OutputFormat::Table {
        render(&mut summary, out);
    }
    sink.write(&mut lines, out, true);
    failed.update(sink.counters.get(Event::OutputWriteFailed));
    sink.counters
}

/// One counter kept outside the workers, handed to the exporter as it grows.
struct ExportedCount {
    feed: Option<(crate::export::exporter::MetricsFeed, crate::stats::Store)>,
    event: Event,
    reported: u64,
}

impl ExportedCount {
    fn new(feed: Option<crate::export::exporter::MetricsFeed>, event: Event) -> Self {
        ExportedCount {
            feed: feed.map(|f| {
                let s = f.new_store();
                (f, s)
            }),
            event,
            reported: 0,
        }
    }

    /// The counter is `now`: hand the growth over (a full queue keeps it for next time).
    fn update(&mut self, now: u64) {
        let Some((feed, delta)) = self.feed.as_mut() else {
            return;
        };
        if now > self.reported {
            crate::stats::add_event(delta, self.event, now - self.reported);
            self.reported = now;
        }
        feed.push(delta);
    }
}

/// The writer's side of the output: lines that cannot be written (a full disk, a closed
/// pipe) are counted (`output.write_failed`), the error logged when it starts and when it
/// ends, and writing goes on with the next lines: a disk with room again gets them.
#[derive(Default)]
struct Output {
    counters: Counters,
    failing: bool,
}

impl Output {
    fn write(&mut self, lines: &mut JsonLines, out: &mut (dyn Write + Send), flush: bool) {
        let r = lines.write_to(out).and_then(|()| {
            if flush {
                out.flush()
                    .map_err(|error| jsonl::WriteFailed { lines: 0, error })
            } else {
                Ok(())
            }
        });
        match r {
            Ok(()) if self.failing => {
                self.failing = false;
                tracing::info!(
                    lost = self.counters.get(Event::OutputWriteFailed),
                    "output writable again"
                );
            }
            Ok(()) => {}
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    tracing::error!("cannot write the output: {}", e.error);
                }
                self.counters.add(Event::OutputWriteFailed, e.lines);
            }
        }
    }
}
