//! The flight recorder: the recent frames of selected pods, kept in memory, written as
//! pcapng around an anomaly (or on `podtap record`), with links from the event, the
//! transactions and the spans to the file. See docs/RECORDER.md.
//!
//! ```text
//! worker: frame ──offer──▶ its ring for the pod (copy; a number while recording)
//!                            │ (between batches: frames of a running recording)
//! anomaly engine ──hook──▶ Recorder::trigger ──publish──▶ Hub ──▶ workers take it up
//!                                   ▲                         └─ chunks ─▶ recorder thread
//! podtap record ──control socket────┘                                      └─▶ file.pcapng
//! ```
//!
//! The workers own their rings; nothing reads them but the worker. A recording is
//! published through the [`Hub`] (an `ArcSwap`ed list and a generation counter the
//! workers load once per batch); each worker then hands over, as [`Chunk`]s, the frames it
//! holds from the window before the trigger, and later the frames it numbered during the
//! window after. The recorder thread writes the file when every worker is done (or a
//! grace period has passed): first the frames from before the trigger in time order, then
//! the numbered ones in number order, so that a number is a frame's place in the file.

pub mod ring;

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Acquire, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};

use crate::anomaly::Kind;
use crate::anomaly::engine::{Event, EventHook};
use crate::control::pcapng::PcapngWriter;
use crate::k8s::PodMeta;
use crate::k8s::selector::LabelSelector;
use crate::time::Timestamp;

const NS: u64 = 1_000_000_000;
/// How long after a recording's window the recorder waits for a worker that has not
/// handed over its part (a stopped or stuck worker) before writing what it has.
const GRACE: Duration = Duration::from_secs(3);
/// Chunks queued between the workers and the recorder thread.
const CHUNK_QUEUE: usize = 4096;
/// How long transaction records of recorded pods are held beyond `seconds`: the time from
/// a trigger's moment until every worker has taken it up and the recorder has numbered
/// the file's first part (about 100 ms each, more on a loaded node).
pub const HOLD_MARGIN: Duration = Duration::from_secs(2);

/// `[recorder]`: the flight recorder. Off by default.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecorderConfig {
    /// Keep the recent frames of the selected pods and write them around anomalies.
    /// Default false.
    pub enabled: bool,
    /// Pods to record by name: `namespace/name`, or `name` in any namespace (or the
    /// name of the pod's network namespace). Default: none.
    pub pods: Vec<String>,
    /// Pods to record by label selector (`app=web,tier in (a,b)`), besides `pods`.
    /// Default "": none.
    pub selector: String,
    /// Seconds before a trigger that a recording holds (as far as the pod's ring still
    /// has them). Default 30.
    pub seconds: u64,
    /// Seconds after a trigger that a recording goes on. Default 10.
    pub after_secs: u64,
    /// Bytes of frames kept per pod (its rings on all workers together; each worker's
    /// ring is this divided by the workers). Default 33554432 (32 MiB).
    pub pod_bytes: usize,
    /// Bytes of all rings together: `total_bytes / pod_bytes` pods are recorded at most;
    /// more selected pods are listed as not recorded (`podtap status`). A recording
    /// being written holds a copy of its frames on top, at most `pod_bytes` per pod in
    /// it. Default 268435456 (256 MiB).
    pub total_bytes: usize,
    /// Bytes kept of each frame. Default 65535.
    pub snaplen: u32,
    /// Where recordings are written (created mode 0750 when missing). Default
    /// "/var/lib/podtap/recordings".
    pub dir: String,
    /// Recordings kept in `dir`: beyond it the oldest `.pcapng` files there are removed
    /// (counted). Default 50.
    pub max_files: usize,
    /// Bytes of recordings kept in `dir` (the same rule). Default 1073741824 (1 GiB).
    pub max_dir_bytes: u64,
    /// Anomaly kinds that trigger a recording (`podtap.anomaly.kind` names). Default:
    /// every kind about pods (all but `capture_drops`).
    pub triggers: Vec<String>,
    /// Bytes of transaction records (JSON lines, spans) of recorded pods held back for
    /// `seconds` + 2 s before they are exported, so that a trigger can still name its file
    /// and frames in those that completed before it (all workers together; their
    /// statistics are not held). When full, the oldest leave early, unlinked, counted in
    /// `recorder.hold_full`. 0: nothing is held. Default 16777216 (16 MiB).
    pub hold_bytes: usize,
}

impl Default for RecorderConfig {
    fn default() -> Self {
        RecorderConfig {
            enabled: false,
            pods: Vec::new(),
            selector: String::new(),
            seconds: 30,
            after_secs: 10,
            pod_bytes: 32 << 20,
            total_bytes: 256 << 20,
            snaplen: 65535,
            dir: "/var/lib/podtap/recordings".into(),
            max_files: 50,
            max_dir_bytes: 1 << 30,
            triggers: Kind::ALL
                .iter()
                .filter(|k| **k != Kind::CaptureDrops)
                .map(|k| k.name().to_string())
                .collect(),
            hold_bytes: 16 << 20,
        }
    }
}

impl RecorderConfig {
    /// Checks serde cannot express; the key below `recorder` and a message.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        for (key, v) in [
            ("seconds", self.seconds),
            ("pod_bytes", self.pod_bytes as u64),
            ("total_bytes", self.total_bytes as u64),
            ("snaplen", self.snaplen as u64),
            ("max_files", self.max_files as u64),
            ("max_dir_bytes", self.max_dir_bytes),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if self.seconds > 3600 || self.after_secs > 3600 {
            return Err(("seconds", "seconds and after_secs: at most 3600".into()));
        }
        if self.pod_bytes > self.total_bytes {
            return Err(("pod_bytes", "must not exceed recorder.total_bytes".into()));
        }
        if self.snaplen < 64 {
            return Err(("snaplen", "must be at least 64".into()));
        }
        if self.dir.is_empty() {
            return Err(("dir", "must name a directory".into()));
        }
        for t in &self.triggers {
            if !Kind::ALL.iter().any(|k| k.name() == t) {
                return Err(("triggers", format!("no anomaly kind named {t:?}")));
            }
        }
        if !self.selector.is_empty() {
            crate::control::sniff::parse_selector(&self.selector).map_err(|e| ("selector", e))?;
        }
        Ok(())
    }

    /// Pods recorded at most at once.
    pub fn slots(&self) -> usize {
        (self.total_bytes / self.pod_bytes.max(1)).clamp(1, u16::MAX as usize)
    }

    /// Bytes the recorder can hold at most: the rings, copies for the recordings being
    /// written, and the transaction records held back.
    pub fn memory_bound(&self) -> u64 {
        if self.enabled {
            2 * (self.slots() * self.pod_bytes) as u64 + self.hold_bytes as u64
        } else {
            0
        }
    }
}

/// Which pod interfaces the workers record, and which pod each ring slot holds.
#[derive(Default)]
pub struct Selection {
    /// (ifindex, slot), sorted by ifindex.
    map: Vec<(u32, u16)>,
    /// Per slot: bumped when another pod takes the slot over.
    epochs: Vec<u64>,
}

/// What the workers share with the recorder: the selection and the running recordings,
/// each behind an `ArcSwap`, and a generation bumped after either changes.
pub struct Hub {
    generation: AtomicU64,
    selection: ArcSwap<Selection>,
    recordings: ArcSwap<Vec<Arc<Recording>>>,
    /// Workers registered (each took a number).
    workers: AtomicUsize,
    slots: usize,
    /// Bytes of one worker's ring for one pod.
    ring_bytes: usize,
    snaplen: usize,
    /// Bytes of transaction records one worker holds back (`hold_bytes / workers`), and
    /// for how long (`seconds` + [`HOLD_MARGIN`]).
    hold_bytes: usize,
    hold_ns: u64,
    tx: crossbeam_channel::Sender<Chunk>,
}

impl Hub {
    /// Hand a chunk to the recorder; false (the frames counted lost) when the
    /// recording's copy budget or the queue is full.
    fn send(&self, rec: &Recording, chunk: Chunk) -> bool {
        let n = chunk.frames.len() as u64;
        // What the copy holds: the frames' bytes, their descriptors, and the 8 bytes of
        // the first part's numbering (`pre_index`), so that the copies stay within
        // `pod_bytes` per pod all told, as `memory_bound` counts them.
        let per_frame = std::mem::size_of::<ChunkFrame>() + std::mem::size_of::<u64>();
        let bytes = chunk.data.len() as u64 + n * per_frame as u64;
        // Workers hand over at once: take the bytes only if they are all still there.
        let took = rec
            .budget
            .fetch_update(Relaxed, Relaxed, |left| left.checked_sub(bytes));
        if took.is_err() {
            rec.lost.fetch_add(n, Relaxed);
            return false;
        }
        if self.tx.try_send(chunk).is_err() {
            rec.lost.fetch_add(n, Relaxed);
            return false;
        }
        true
    }

    fn publish(&self) {
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::Release);
    }
}

/// One recording being made.
pub struct Recording {
    pub id: u64,
    /// Where the file is (to be) written.
    pub path: String,
    /// Ring slots (pods) it covers.
    pub slots: Vec<u16>,
    pub trigger: Timestamp,
    pub from: Timestamp,
    pub until: Timestamp,
    /// Workers expected to take part.
    pub workers: usize,
    /// Frames from before the trigger handed over (the file's first part).
    pub pre: AtomicU64,
    pub picked: AtomicUsize,
    pub done: AtomicUsize,
    /// Numbers given to frames after the trigger.
    pub next: AtomicU64,
    /// Frames lost: overwritten before hand-over, or over the copy budget.
    pub lost: AtomicU64,
    budget: AtomicU64,
    /// The timestamps of the file's first part (the frames from before the trigger), in
    /// file order: set by the recorder thread once every worker has handed its part over
    /// (or when the file is written), after which a frame's number in the file can be
    /// told from its time. Workers wait for it before naming frame ranges.
    index: OnceLock<Box<[u64]>>,
}

impl Recording {
    /// The first part's timestamps, once final.
    fn index(&self) -> Option<&[u64]> {
        self.index.get().map(|b| &**b)
    }
}

/// Frames a worker hands over for one recording.
pub struct Chunk {
    rec: u64,
    pre: bool,
    frames: Vec<ChunkFrame>,
    data: Vec<u8>,
}

#[derive(Clone, Copy, Debug)]
struct ChunkFrame {
    ts: u64,
    wire_len: u32,
    obs: u32,
    link: u16,
    seq: u32,
    off: usize,
    len: usize,
}

impl Chunk {
    fn new(rec: u64, pre: bool) -> Chunk {
        Chunk {
            rec,
            pre,
            frames: Vec::new(),
            data: Vec::new(),
        }
    }

    fn push(&mut self, ts: u64, wire_len: u32, obs: u32, link: u16, seq: u32, d: &[u8]) {
        self.frames.push(ChunkFrame {
            ts,
            wire_len,
            obs,
            link,
            seq,
            off: self.data.len(),
            len: d.len(),
        });
        self.data.extend_from_slice(d);
    }
}

/// A recording as `podtap status` (and the control API) lists it.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct RecordingInfo {
    /// The file's path.
    pub file: String,
    /// The pods in it (`namespace/name`).
    pub pods: Vec<String>,
    /// The anomaly kind that triggered it, or `request` (`podtap record`).
    pub trigger: String,
    /// When it was triggered, and the window it covers (RFC 3339).
    pub time: String,
    pub from: String,
    pub until: String,
    /// `recording`, `written`, `removed` (by retention) or `failed: <why>`.
    pub state: String,
    pub frames: u64,
    pub bytes: u64,
    /// Frames of the window lost before they reached the file.
    pub lost: u64,
}

/// The recorder in `podtap status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RecorderStatus {
    pub dir: String,
    /// Pods recorded now (`namespace/name`).
    pub pods: Vec<String>,
    /// Selected pods without a ring (more than `total_bytes / pod_bytes`).
    pub unrecorded: Vec<String>,
    /// Bytes of one pod's ring on one worker, and workers.
    pub ring_bytes: u64,
    pub workers: usize,
    /// Recordings, oldest first (removed ones stay listed for a while).
    pub recordings: Vec<RecordingInfo>,
    /// Files removed by retention.
    pub removed: u64,
}

struct SlotPod {
    label: String,
    ifaces: Vec<(u32, String)>,
}

struct InFlight {
    rec: Arc<Recording>,
    chunks: Vec<Chunk>,
    /// Frames from before the trigger received (to know when all of them are).
    pre_frames: u64,
    /// Interfaces of the pods: ifindex, name, pod.
    ifaces: Vec<(u32, String, String)>,
    info: RecordingInfo,
}

#[derive(Default)]
struct State {
    slots: Vec<Option<SlotPod>>,
    epochs: Vec<u64>,
    next_epoch: u64,
    unrecorded: Vec<String>,
    next_id: u64,
    inflight: Vec<InFlight>,
    index: VecDeque<RecordingInfo>,
    removed: u64,
    attr_generation: Option<u64>,
}

/// The recorder's control side: selection, triggers, writing, retention, the index.
pub struct Recorder {
    cfg: RecorderConfig,
    hub: Arc<Hub>,
    rx: crossbeam_channel::Receiver<Chunk>,
    node: String,
    triggers: [bool; Kind::COUNT],
    selector: Option<LabelSelector>,
    state: Mutex<State>,
}

impl Recorder {
    /// The recorder of a daemon with `workers` capture workers (the rings' bytes per pod
    /// are divided among them). `None` when `[recorder]` is off.
    pub fn new(cfg: &RecorderConfig, workers: usize, node: &str) -> Option<Arc<Recorder>> {
        if !cfg.enabled {
            return None;
        }
        let (tx, rx) = crossbeam_channel::bounded(CHUNK_QUEUE);
        let slots = cfg.slots();
        let hub = Arc::new(Hub {
            generation: AtomicU64::new(0),
            selection: ArcSwap::from_pointee(Selection {
                map: Vec::new(),
                epochs: vec![0; slots],
            }),
            recordings: ArcSwap::from_pointee(Vec::new()),
            workers: AtomicUsize::new(0),
            slots,
            ring_bytes: cfg.pod_bytes / workers.max(1),
            snaplen: cfg.snaplen as usize,
            hold_bytes: cfg.hold_bytes / workers.max(1),
            hold_ns: cfg.seconds * NS + HOLD_MARGIN.as_nanos() as u64,
            tx,
        });
        let mut triggers = [false; Kind::COUNT];
        for k in Kind::ALL {
            triggers[*k as usize] = cfg.triggers.iter().any(|t| t == k.name());
        }
        let selector = (!cfg.selector.is_empty())
            .then(|| crate::control::sniff::parse_selector(&cfg.selector).ok())
            .flatten();
        let state = State {
            slots: (0..slots).map(|_| None).collect(),
            epochs: vec![0; slots],
            ..Default::default()
        };
        Some(Arc::new(Recorder {
            cfg: cfg.clone(),
            hub,
            rx,
            node: node.to_string(),
            triggers,
            selector,
            state: Mutex::new(state),
        }))
    }

    pub fn hub(&self) -> Arc<Hub> {
        self.hub.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wants(&self, p: &PodMeta) -> bool {
        let name = p.name.as_deref();
        let ns = p.namespace.as_deref();
        self.cfg.pods.iter().any(|want| match want.split_once('/') {
            Some((wns, wn)) => ns == Some(wns) && name == Some(wn),
            None => name == Some(want.as_str()) || p.netns_name.as_deref() == Some(want),
        }) || self
            .selector
            .as_ref()
            .is_some_and(|s| s.matches(p.labels()))
    }

    /// Bring the selection up to date with pod metadata: a pod keeps its slot while it is
    /// selected; new pods take free slots.
    pub fn refresh(&self, snap: &crate::k8s::Snapshot, generation: u64) {
        let mut st = self.lock();
        if st.attr_generation == Some(generation) {
            return;
        }
        st.attr_generation = Some(generation);
        let wanted: Vec<SlotPod> = snap
            .pods()
            .iter()
            .filter(|p| !p.host_ifaces.is_empty() && self.wants(p))
            .map(|p| SlotPod {
                label: crate::control::server::pod_label(p),
                ifaces: p
                    .host_ifaces
                    .iter()
                    .map(|(i, n)| (*i, n.to_string()))
                    .collect(),
            })
            .collect();
        self.select(&mut st, wanted);
    }

    /// Give the `wanted` pods rings: those already recorded keep theirs, the others take
    /// free ones; publish the result when it changed.
    fn select(&self, st: &mut State, wanted: Vec<SlotPod>) {
        let mut changed = false;
        let State {
            slots,
            epochs,
            next_epoch,
            unrecorded,
            ..
        } = st;
        for s in slots.iter_mut() {
            if s.as_ref()
                .is_some_and(|sp| !wanted.iter().any(|w| w.label == sp.label))
            {
                *s = None;
                changed = true;
            }
        }
        unrecorded.clear();
        for w in wanted {
            if let Some(s) = slots.iter_mut().flatten().find(|s| s.label == w.label) {
                if s.ifaces != w.ifaces {
                    s.ifaces = w.ifaces;
                    changed = true;
                }
                continue;
            }
            match slots.iter().position(|s| s.is_none()) {
                Some(i) => {
                    *next_epoch += 1;
                    epochs[i] = *next_epoch;
                    tracing::info!(pod = %w.label, "flight recorder: recording pod");
                    slots[i] = Some(w);
                    changed = true;
                }
                None => unrecorded.push(w.label),
            }
        }
        if changed {
            let mut map: Vec<(u32, u16)> = slots
                .iter()
                .enumerate()
                .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
                .flat_map(|(i, s)| s.ifaces.iter().map(move |(ifx, _)| (*ifx, i as u16)))
                .collect();
            map.sort_unstable();
            map.dedup_by_key(|e| e.0);
            self.hub.selection.store(Arc::new(Selection {
                map,
                epochs: epochs.clone(),
            }));
            self.hub.publish();
            if !unrecorded.is_empty() {
                tracing::warn!(
                    pods = ?unrecorded,
                    "flight recorder: more pods selected than rings (recorder.total_bytes / recorder.pod_bytes); these are not recorded"
                );
            }
        }
    }

    /// Start a recording of the pods named (labels, `namespace/name`) or seen on the
    /// interfaces `obs`, triggered by `reason` at `ts`. A pod already being recorded
    /// joins that recording: its file is returned. `Err` when none of them is recorded.
    pub fn trigger(
        &self,
        pods: &[String],
        obs: &[u32],
        reason: &str,
        ts: Timestamp,
    ) -> Result<RecordingInfo, String> {
        let mut st = self.lock();
        let slots: Vec<u16> = st
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .filter(|(_, s)| {
                pods.contains(&s.label) || s.ifaces.iter().any(|(i, _)| obs.contains(i))
            })
            .map(|(i, _)| i as u16)
            .collect();
        if slots.is_empty() {
            return Err(
                "not a pod the flight recorder records (recorder.pods, recorder.selector)".into(),
            );
        }
        // Within the window of a recording of one of the pods: the trigger's moment is
        // in that file. After it (the file may still be being written), a new recording
        // starts; the workers end their part of the previous one when they take it up.
        if let Some(f) = st
            .inflight
            .iter()
            .find(|f| ts <= f.rec.until && f.rec.slots.iter().any(|s| slots.contains(s)))
        {
            return Ok(f.info.clone());
        }
        st.next_id += 1;
        let id = st.next_id;
        let pod_labels: Vec<String> = slots
            .iter()
            .filter_map(|&i| st.slots[i as usize].as_ref().map(|s| s.label.clone()))
            .collect();
        let ifaces: Vec<(u32, String, String)> = slots
            .iter()
            .filter_map(|&i| st.slots[i as usize].as_ref())
            .flat_map(|s| {
                s.ifaces
                    .iter()
                    .map(|(i, n)| (*i, n.clone(), s.label.clone()))
            })
            .collect();
        let mut name = format!(
            "{}{}-{}-{}",
            sanitize(&pod_labels[0].replace('/', "_")),
            if pod_labels.len() > 1 {
                format!("+{}", pod_labels.len() - 1)
            } else {
                String::new()
            },
            sanitize(reason),
            file_time(ts)
        );
        let dir = Path::new(&self.cfg.dir);
        if dir.join(format!("{name}.pcapng")).exists() {
            name.push_str(&format!("-{id}"));
        }
        let path = dir.join(format!("{name}.pcapng")).display().to_string();
        let from = Timestamp(ts.as_nanos().saturating_sub(self.cfg.seconds * NS));
        let until = ts.add_nanos(self.cfg.after_secs * NS);
        let rec = Arc::new(Recording {
            id,
            path: path.clone(),
            slots: slots.clone(),
            trigger: ts,
            from,
            until,
            workers: self.hub.workers.load(Acquire),
            pre: AtomicU64::new(0),
            picked: AtomicUsize::new(0),
            done: AtomicUsize::new(0),
            next: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            budget: AtomicU64::new((self.cfg.pod_bytes * slots.len()) as u64),
            index: OnceLock::new(),
        });
        let info = RecordingInfo {
            file: path,
            pods: pod_labels,
            trigger: reason.to_string(),
            time: ts.rfc3339().to_string(),
            from: from.rfc3339().to_string(),
            until: until.rfc3339().to_string(),
            state: "recording".into(),
            ..Default::default()
        };
        tracing::info!(file = %info.file, trigger = reason, pods = ?info.pods, "flight recorder: recording");
        st.inflight.push(InFlight {
            rec: rec.clone(),
            chunks: Vec::new(),
            pre_frames: 0,
            ifaces,
            info: info.clone(),
        });
        let mut list: Vec<Arc<Recording>> = (**self.hub.recordings.load()).clone();
        list.push(rec);
        self.hub.recordings.store(Arc::new(list));
        self.hub.publish();
        Ok(info)
    }

    /// `podtap record`: the pods of a pod name or selector.
    pub fn trigger_request(
        &self,
        req: &crate::control::RecordRequest,
        snap: Option<&crate::k8s::Snapshot>,
    ) -> Result<RecordingInfo, String> {
        let sniff = crate::control::SniffRequest {
            pod: req.pod.clone(),
            namespace: req.namespace.clone(),
            selector: req.selector.clone(),
            ..Default::default()
        };
        let (_, ifaces) =
            crate::control::sniff::resolve(&sniff, snap, &crate::capture::iface::list())?;
        let obs: Vec<u32> = ifaces.iter().map(|i| i.ifindex).collect();
        self.trigger(&[], &obs, "request", Timestamp::now())
    }

    /// The recorder thread: selection refresh, chunks, writing and retention, until
    /// `done`; then what is in flight is written.
    pub fn run(&self, attributor: Option<crate::k8s::Attributor>, done: impl Fn() -> bool) {
        if let Err(e) = create_dir(&self.cfg.dir) {
            tracing::error!(dir = %self.cfg.dir, "flight recorder: cannot create the directory: {e}");
        }
        if attributor.is_none() {
            tracing::warn!("flight recorder: pod attribution is off, no pod can be recorded");
        }
        loop {
            let stopping = done();
            if let Some(a) = &attributor {
                self.refresh(&a.snapshot(), a.generation());
            }
            // What is queued now, not more: a steady stream of chunks must not hold up
            // writing the recordings that are due.
            let wait = Duration::from_millis(if stopping { 0 } else { 100 });
            if let Ok(c) = self.rx.recv_timeout(wait) {
                self.take(c);
                for c in self.rx.try_iter().take(CHUNK_QUEUE) {
                    self.take(c);
                }
            }
            self.number();
            self.write_due(stopping);
            if stopping {
                break;
            }
        }
    }

    fn take(&self, c: Chunk) {
        let mut st = self.lock();
        if let Some(f) = st.inflight.iter_mut().find(|f| f.rec.id == c.rec) {
            if c.pre {
                f.pre_frames += c.frames.len() as u64;
            }
            f.chunks.push(c);
        }
    }

    /// Publish the first part's timestamps of the recordings whose first part is
    /// complete: every worker took the trigger up and all it handed over has arrived
    /// (the count is final once they all took it up: each adds to it before saying so).
    fn number(&self) {
        let st = self.lock();
        for f in &st.inflight {
            if f.rec.index.get().is_none()
                && f.rec.picked.load(Acquire) >= f.rec.workers
                && f.pre_frames >= f.rec.pre.load(Relaxed)
            {
                let _ = f.rec.index.set(pre_index(&f.chunks));
            }
        }
    }

    /// Write the recordings every worker has finished (or whose grace period passed;
    /// all of them when `all`).
    fn write_due(&self, all: bool) {
        let now = Timestamp::now();
        let due: Vec<InFlight> = {
            let mut st = self.lock();
            let (due, keep) = std::mem::take(&mut st.inflight).into_iter().partition(|f| {
                all || f.rec.done.load(Acquire) >= f.rec.workers
                    || now > f.rec.until.add_nanos(GRACE.as_nanos() as u64)
            });
            st.inflight = keep;
            due
        };
        if due.is_empty() {
            return;
        }
        // Workers taking up recordings that are no longer listed do nothing: list first.
        let ids: Vec<u64> = due.iter().map(|f| f.rec.id).collect();
        let list: Vec<Arc<Recording>> = self
            .hub
            .recordings
            .load()
            .iter()
            .filter(|r| !ids.contains(&r.id))
            .cloned()
            .collect();
        self.hub.recordings.store(Arc::new(list));
        self.hub.publish();
        for f in due {
            // The file's first part is what arrived: frame ranges are given from it even
            // when a worker never took the trigger up.
            if f.rec.index.get().is_none() {
                let _ = f.rec.index.set(pre_index(&f.chunks));
            }
            let mut info = f.info.clone();
            info.lost = f.rec.lost.load(Relaxed);
            match self.write(&f) {
                Ok((frames, bytes)) => {
                    info.frames = frames;
                    info.bytes = bytes;
                    info.state = "written".into();
                    tracing::info!(file = %info.file, frames, bytes, lost = info.lost, "flight recorder: written");
                }
                Err(e) => {
                    info.state = format!("failed: {e}");
                    tracing::error!(file = %info.file, "flight recorder: cannot write: {e}");
                }
            }
            let mut st = self.lock();
            st.index.push_back(info);
            let keep = self.cfg.max_files + 64;
            while st.index.len() > keep {
                st.index.pop_front();
            }
            drop(st);
            self.retention();
        }
    }

    /// The file of a finished recording: frames from before the trigger in time order,
    /// then the numbered frames in number order. Returns frames and bytes written.
    fn write(&self, f: &InFlight) -> std::io::Result<(u64, u64)> {
        let mut pre: Vec<(&ChunkFrame, &[u8])> = Vec::new();
        let mut post: Vec<(&ChunkFrame, &[u8])> = Vec::new();
        for c in &f.chunks {
            let v = if c.pre { &mut pre } else { &mut post };
            v.extend(
                c.frames
                    .iter()
                    .map(|fr| (fr, &c.data[fr.off..fr.off + fr.len])),
            );
        }
        pre.sort_by_key(|(fr, _)| fr.ts);
        post.sort_by_key(|(fr, _)| fr.seq);
        let path = PathBuf::from(&f.rec.path);
        let tmp = path.with_extension("pcapng.part");
        // Frames carry payloads: readable by root (and the directory's group) only.
        let file = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::File::options()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o640)
                .open(&tmp)?
        };
        let comment = format!(
            "podtap flight recording of {} on node {}; trigger: {} at {}; window {} to {}",
            f.info.pods.join(", "),
            self.node,
            f.info.trigger,
            f.info.time,
            f.info.from,
            f.info.until
        );
        let mut w = PcapngWriter::new(file, &comment);
        let mut ids: Vec<((u32, u16), u32)> = Vec::new();
        let mut frames = 0;
        for (fr, d) in pre.iter().chain(&post) {
            let id = match ids.iter().find(|(k, _)| *k == (fr.obs, fr.link)) {
                Some((_, id)) => *id,
                None => {
                    let (name, desc) = match f.ifaces.iter().find(|i| i.0 == fr.obs) {
                        Some((i, n, p)) => (
                            n.clone(),
                            format!("pod {p}, host interface {n} (ifindex {i})"),
                        ),
                        None => (
                            format!("ifindex {}", fr.obs),
                            format!("host interface (ifindex {})", fr.obs),
                        ),
                    };
                    let id = w.interface(fr.link, self.cfg.snaplen, &name, &desc);
                    ids.push(((fr.obs, fr.link), id));
                    id
                }
            };
            w.packet(id, fr.ts, fr.wire_len, d)?;
            frames += 1;
        }
        w.flush()?;
        let bytes = w.size();
        drop(w);
        std::fs::rename(&tmp, &path)?;
        Ok((frames, bytes))
    }

    /// Remove the oldest recordings in the directory beyond `max_files` or
    /// `max_dir_bytes` (never the newest).
    fn retention(&self) {
        let Ok(dir) = std::fs::read_dir(&self.cfg.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf, u64)> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pcapng"))
            .filter_map(|e| {
                let m = e.metadata().ok().filter(|m| m.is_file())?;
                Some((m.modified().ok()?, e.path(), m.len()))
            })
            .collect();
        files.sort();
        let mut total: u64 = files.iter().map(|f| f.2).sum();
        let mut count = files.len();
        let mut removed = Vec::new();
        for (_, p, len) in &files {
            if count <= 1 || (count <= self.cfg.max_files && total <= self.cfg.max_dir_bytes) {
                break;
            }
            match std::fs::remove_file(p) {
                Ok(()) => {
                    tracing::info!(file = %p.display(), "flight recorder: removed (retention)");
                    removed.push(p.display().to_string());
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), "flight recorder: cannot remove: {e}")
                }
            }
            count -= 1;
            total -= len;
        }
        if removed.is_empty() {
            return;
        }
        let mut st = self.lock();
        st.removed += removed.len() as u64;
        for i in st.index.iter_mut().filter(|i| removed.contains(&i.file)) {
            i.state = "removed".into();
        }
    }

    pub fn status(&self) -> RecorderStatus {
        let st = self.lock();
        let mut recordings: Vec<RecordingInfo> = st.index.iter().cloned().collect();
        recordings.extend(st.inflight.iter().map(|f| {
            let mut i = f.info.clone();
            i.lost = f.rec.lost.load(Relaxed);
            i
        }));
        RecorderStatus {
            dir: self.cfg.dir.clone(),
            pods: st.slots.iter().flatten().map(|s| s.label.clone()).collect(),
            unrecorded: st.unrecorded.clone(),
            ring_bytes: self.hub.ring_bytes as u64,
            workers: self.hub.workers.load(Relaxed),
            recordings,
            removed: st.removed,
        }
    }
}

/// The anomaly engine's hook: an event of a trigger kind about a recorded pod starts (or
/// joins) a recording, and the event names its file (`podtap.recording.file`).
pub struct TriggerHook(pub Arc<Recorder>);

impl EventHook for TriggerHook {
    fn annotate(&mut self, e: &mut Event) {
        let s = &e.signal;
        if !self.0.triggers[s.kind as usize] {
            return;
        }
        let mut pods = Vec::new();
        if let Some(p) = &s.pods {
            let metas = [p.obs.as_ref(), p.client.pod(), p.server.pod()];
            for m in metas.into_iter().flatten() {
                pods.push(crate::control::server::pod_label(m));
            }
        }
        let obs: Vec<u32> = (s.obs != 0).then_some(s.obs).into_iter().collect();
        if let Ok(info) = self.0.trigger(&pods, &obs, s.kind.name(), s.ts) {
            e.recording = Some(info.file.into());
        }
    }
}

fn create_dir(dir: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if !Path::new(dir).exists() {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o750))?;
    }
    Ok(())
}

/// The timestamps of the frames from before the trigger, in the order the file holds them.
fn pre_index(chunks: &[Chunk]) -> Box<[u64]> {
    let mut ts: Vec<u64> = chunks
        .iter()
        .filter(|c| c.pre)
        .flat_map(|c| c.frames.iter().map(|f| f.ts))
        .collect();
    ts.sort_unstable();
    ts.into_boxed_slice()
}

/// A file-name-safe form: letters, digits, `.`, `_` and `-` kept, the rest `_`.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// `20261206T101500.123Z` from a timestamp.
fn file_time(ts: Timestamp) -> String {
    let r = ts.rfc3339().to_string();
    // 2026-12-06T10:15:00.123456789Z
    let (date, time) = r.split_once('T').unwrap_or((&r, ""));
    format!(
        "{}T{}Z",
        date.replace('-', ""),
        time.get(..12).unwrap_or(time).replace(':', "")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_safe_and_say_when() {
        assert_eq!(sanitize("shop_web/x y"), "shop_web_x_y");
        assert_eq!(
            file_time(Timestamp(1_796_559_300_123_456_789)),
            "20261206T121500.123Z"
        );
    }

    /// A frame of `len` bytes on interface `obs` at `ms` milliseconds.
    fn frame(data: &[u8], obs: u32, ms: u64) -> crate::capture::Frame<'_> {
        crate::capture::Frame {
            data,
            ts: Timestamp(ms * 1_000_000),
            wire_len: data.len() as u32 + 100,
            link: crate::packet::LinkType::Ethernet,
            obs,
        }
    }

    /// A transaction seen at `obs` from `start` to `end` (ms).
    fn tx(obs: u32, start: u64, end: u64) -> crate::proto::Transaction {
        let mut t = crate::proto::Transaction::new(
            crate::proto::Protocol::Http,
            Timestamp(start * 1_000_000),
        );
        t.end = Timestamp(end * 1_000_000);
        t.obs = obs;
        t
    }

    /// Attribute `k` (a string) of the transactions the sink got, by start (ms).
    fn attrs(sink: &crate::export::VecSink, k: &str) -> Vec<(u64, Option<String>)> {
        sink.records
            .iter()
            .filter_map(|r| match r {
                crate::export::Record::Transaction(t) => Some(t),
                _ => None,
            })
            .map(|t| {
                let v = t.attrs.iter().find(|(n, _)| *n == k).map(|(_, v)| match v {
                    crate::proto::AttrValue::Str(s) => s.to_string(),
                    v => panic!("{v:?}"),
                });
                (t.start.as_nanos() / 1_000_000, v)
            })
            .collect()
    }

    /// The recorder thread's part: take the chunks handed over, number the first parts.
    fn recorder_step(r: &Recorder) {
        while let Ok(c) = r.rx.try_recv() {
            r.take(c);
        }
        r.number();
    }

    /// A recorder of one worker recording pod shop/web on interface 7.
    fn one_worker(dir: &Path, hold_bytes: usize) -> (Arc<Recorder>, ring::WorkerRecorder) {
        let cfg = RecorderConfig {
            enabled: true,
            seconds: 3,
            after_secs: 1,
            pod_bytes: 1 << 20,
            total_bytes: 2 << 20,
            dir: dir.display().to_string(),
            hold_bytes,
            ..Default::default()
        };
        let r = Recorder::new(&cfg, 1, "n1").unwrap();
        let w = ring::WorkerRecorder::new(r.hub());
        {
            let mut st = r.lock();
            let web = SlotPod {
                label: "shop/web".into(),
                ifaces: vec![(7, "veth7".into())],
            };
            r.select(&mut st, vec![web]);
        }
        (r, w)
    }

    /// One worker, one recorded pod on interface 7: the frames before the trigger come
    /// first in the file, in time order, then the numbered ones. A transaction that
    /// completed before the trigger, held back, and one after it name the file and the
    /// frames that hold them; one of another interface is not held; the statistics see
    /// every transaction at once.
    #[test]
    fn a_recording_holds_the_window_and_links_by_frame_number() {
        let dir = tempfile::tempdir().unwrap();
        let (r, mut w) = one_worker(dir.path(), 1 << 20);
        let mut sink = crate::export::VecSink::default();
        let mut counters = crate::events::Counters::default();
        w.before_batch(Timestamp::ZERO, &mut sink);
        assert!(w.wants_frames());
        // 1 s to 5 s: the window starts at 2.5 s (3 s before the trigger).
        for s in 1..=5u64 {
            w.offer(&frame(&[s as u8; 60], 7, s * 1000));
            w.offer(&frame(&[0xee; 60], 8, s * 1000));
        }
        // Completed before the trigger: held; another interface's is not.
        let mut txs = vec![tx(7, 4000, 5000), tx(8, 4000, 5000)];
        w.hold(&mut txs, &mut sink, &mut counters);
        assert_eq!(txs.len(), 1, "the other interface's transaction goes on");
        assert!(sink.records.is_empty());
        let trig = Timestamp(5_500_000_000);
        let info = r
            .trigger(&["shop/web".into()], &[], "http_error_burst", trig)
            .unwrap();
        assert!(
            info.file
                .ends_with("shop_web-http_error_burst-19700101T000005.500Z.pcapng")
        );
        // A second trigger within the window joins it.
        assert_eq!(
            r.trigger(&[], &[7], "request", trig).unwrap().file,
            info.file
        );
        assert!(r.trigger(&[], &[8], "request", trig).is_err());
        w.before_batch(trig, &mut sink);
        w.offer(&frame(&[6; 60], 7, 6000));
        w.offer(&frame(&[7; 60], 7, 6200));
        // Completed after the trigger, before the first part is numbered.
        let mut txs = vec![tx(7, 6000, 6200)];
        w.hold(&mut txs, &mut sink, &mut counters);
        assert!(txs.is_empty());
        recorder_step(&r);
        // Past the window: after it, this worker is done. Nothing is due yet (a held
        // record leaves 3 s + 2 s after it completed).
        w.offer(&frame(&[8; 60], 7, 7000));
        w.before_batch(Timestamp(7_000_000_000), &mut sink);
        assert!(sink.records.is_empty());
        // The one that completed at 5 s leaves at 10 s.
        w.before_batch(Timestamp(10_000_000_000), &mut sink);
        assert_eq!(sink.records.len(), 1);
        w.finish(&mut sink);
        assert_eq!(
            attrs(&sink, "podtap.recording.file"),
            [
                (4000, Some(info.file.clone())),
                (6000, Some(info.file.clone()))
            ]
        );
        // Three frames from 3 s to 5 s first (the one at 4 s and the one at 5 s hold the
        // first transaction), then the two after the trigger.
        assert_eq!(
            attrs(&sink, "podtap.recording.frames"),
            [(4000, Some("2-3".into())), (6000, Some("4-5".into()))]
        );
        recorder_step(&r);
        r.write_due(false);
        let st = r.status();
        let last = st.recordings.last().unwrap();
        assert_eq!(
            (last.state.as_str(), last.frames, last.lost),
            ("written", 5, 0)
        );
        let mut src =
            crate::capture::pcap_file::PcapFileSource::open(Path::new(&info.file)).unwrap();
        let mut got = Vec::new();
        use crate::capture::Source;
        while src
            .next_batch(16, |f| {
                got.push((f.ts.as_nanos() / 1_000_000, f.data[0], f.wire_len))
            })
            .unwrap()
            .is_some()
        {}
        assert_eq!(
            got,
            [3000, 4000, 5000, 6000, 6200]
                .iter()
                .zip([3u8, 4, 5, 6, 7])
                .map(|(&t, b)| (t, b, 160))
                .collect::<Vec<_>>()
        );
    }

    /// A trigger after a recording's window, while its file is not written yet, starts a
    /// recording of its own: the worker ends its part in the first when it takes the
    /// second up, and both files are written.
    #[test]
    fn a_trigger_after_the_window_starts_a_new_recording() {
        let dir = tempfile::tempdir().unwrap();
        let (r, mut w) = one_worker(dir.path(), 1 << 20);
        let mut sink = crate::export::VecSink::default();
        w.before_batch(Timestamp::ZERO, &mut sink);
        for s in 1..=5u64 {
            w.offer(&frame(&[s as u8; 60], 7, s * 1000));
        }
        let first = r
            .trigger(&[], &[7], "request", Timestamp(5_000_000_000))
            .unwrap();
        w.before_batch(Timestamp(5_000_000_000), &mut sink);
        w.offer(&frame(&[6; 60], 7, 5500));
        // After the first window (until 6 s), before this worker passed it.
        let second = r
            .trigger(&[], &[7], "request", Timestamp(6_500_000_000))
            .unwrap();
        assert_ne!(first.file, second.file);
        w.before_batch(Timestamp(5_600_000_000), &mut sink);
        w.offer(&frame(&[7; 60], 7, 6600));
        w.before_batch(Timestamp(8_000_000_000), &mut sink);
        recorder_step(&r);
        r.write_due(false);
        let st = r.status();
        let frames = |f: &str| {
            let i = st.recordings.iter().find(|i| i.file == f).unwrap();
            assert_eq!(i.state, "written", "{i:?}");
            i.frames
        };
        // 2 s to 5 s and 5.5 s; then 3.5 s to 5.5 s and 6.6 s.
        assert_eq!((frames(&first.file), frames(&second.file)), (5, 4));
    }

    #[test]
    fn retention_removes_the_oldest_files_and_counts_them() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = RecorderConfig {
            enabled: true,
            max_files: 2,
            dir: dir.path().display().to_string(),
            ..Default::default()
        };
        let r = Recorder::new(&cfg, 1, "n1").unwrap();
        for i in 0..4 {
            let p = dir.path().join(format!("f{i}.pcapng"));
            std::fs::write(&p, b"x").unwrap();
            let t = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1000 + i);
            std::fs::File::options()
                .write(true)
                .open(&p)
                .unwrap()
                .set_modified(t)
                .unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();
        r.retention();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["f2.pcapng", "f3.pcapng", "notes.txt"]);
        assert_eq!(r.status().removed, 2);
    }

    #[test]
    fn the_config_checks_its_bounds() {
        let c = RecorderConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(c.slots(), 8);
        let bad = RecorderConfig {
            triggers: vec!["nope".into()],
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "triggers");
        let bad = RecorderConfig {
            pod_bytes: 1 << 30,
            ..Default::default()
        };
        assert_eq!(bad.validate().unwrap_err().0, "pod_bytes");
    }
}
