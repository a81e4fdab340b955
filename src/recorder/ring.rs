//! The worker's side of the flight recorder: one preallocated ring per recordable pod,
//! frames copied in once, and the hand-off of a recording's frames to the recorder.
//!
//! The packet path ([`WorkerRecorder::offer`]) is a binary search of a short sorted
//! vector (the selected pods' interfaces, refreshed between batches when the hub's
//! generation moves) and a copy into the pod's ring: no allocation, no lock. While a
//! recording of the pod runs (seconds after an anomaly), each frame also takes a number
//! from the recording's counter (one relaxed atomic add), which is its place in the file.
//!
//! The transactions seen at a recorded pod's interface are held back (their statistics
//! are not): their records leave `seconds` + [`super::HOLD_MARGIN`] after they complete,
//! so that a trigger taken up meanwhile can name its file, and the frames in it, in those
//! that completed in its window before it. A frame range is final once the recorder has
//! numbered the file's first part ([`Recording::index`]): until then the transaction
//! keeps where its frames are (times before the trigger, numbers after it).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::{Chunk, Hub, Recording};
use crate::capture::Frame;
use crate::events::{Counters, Event};
use crate::export::RecordSink;
use crate::proto::heap::HeapSize;
use crate::proto::{AttrValue, Transaction};
use crate::time::Timestamp;

/// A frame recorded before the trigger (or after the window): no number yet.
const NO_SEQ: u32 = u32::MAX;

/// Bytes of frame data per descriptor: a ring of `n` bytes keeps `n / (96 + 40)`
/// descriptors (40 bytes each), so its bytes fill up with frames averaging 96 bytes or
/// more; smaller frames (ACKs are ~66) run out of descriptors first.
pub const BYTES_PER_DESCRIPTOR: usize = 96;

#[derive(Clone, Copy, Default, Debug)]
struct Meta {
    /// Virtual start of the frame's bytes (physical: `pos % data.len()`).
    pos: u64,
    ts: u64,
    caplen: u32,
    wire_len: u32,
    obs: u32,
    /// Number within the running recording, or [`NO_SEQ`].
    seq: u32,
    link: u16,
}

/// One pod's recent frames on one worker: frame bytes in a byte ring, descriptors in a
/// ring of their own (so that a time can be found by binary search). The oldest frames
/// give way to new ones.
pub struct Ring {
    data: Box<[u8]>,
    meta: Box<[Meta]>,
    /// Descriptor index of the oldest frame, and frames held.
    head: usize,
    len: usize,
    /// Virtual position of the next write.
    tail: u64,
    /// Frames ever pushed: absolute frame numbers stay valid across evictions.
    pushed: u64,
    /// Which pod the ring holds (the hub's slot epoch).
    epoch: u64,
    /// The recording this pod is part of now, with the frame number it started at.
    rec: Option<(Arc<Recording>, u64)>,
}

impl Ring {
    pub fn new(bytes: usize) -> Ring {
        let bytes = bytes.max(4096);
        let n = (bytes / (BYTES_PER_DESCRIPTOR + std::mem::size_of::<Meta>())).max(16);
        let data = bytes
            .saturating_sub(n * std::mem::size_of::<Meta>())
            .max(2048);
        Ring {
            // Zeroed allocations: the pages are mapped as frames fill them.
            data: vec![0u8; data].into_boxed_slice(),
            meta: vec![Meta::default(); n].into_boxed_slice(),
            head: 0,
            len: 0,
            tail: 0,
            pushed: 0,
            epoch: 0,
            rec: None,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.len = 0;
    }

    #[inline]
    fn push(&mut self, f: &Frame<'_>, snaplen: usize, seq: u32) {
        let cap = self.data.len() as u64;
        let n = f.data.len().min(snaplen).min(self.data.len());
        let mut at = self.tail;
        // A frame is stored contiguously: the rest of the buffer is skipped when it does
        // not fit before the end.
        if at % cap + n as u64 > cap {
            at += cap - at % cap;
        }
        let end = at + n as u64;
        let mcap = self.meta.len();
        while self.len > 0 && (self.len == mcap || self.meta[self.head].pos + cap < end) {
            self.head = (self.head + 1) % mcap;
            self.len -= 1;
        }
        let p = (at % cap) as usize;
        self.data[p..p + n].copy_from_slice(&f.data[..n]);
        self.meta[(self.head + self.len) % mcap] = Meta {
            pos: at,
            ts: f.ts.as_nanos(),
            caplen: n as u32,
            wire_len: f.wire_len,
            obs: f.obs,
            seq,
            link: crate::control::tap::linktype_of(f.link),
        };
        self.len += 1;
        self.tail = end;
        self.pushed += 1;
    }

    /// The `i`th frame held, oldest first.
    fn get(&self, i: usize) -> (&Meta, &[u8]) {
        let m = &self.meta[(self.head + i) % self.meta.len()];
        let p = (m.pos % self.data.len() as u64) as usize;
        (m, &self.data[p..p + m.caplen as usize])
    }

    /// Absolute number of the oldest frame held.
    fn first_abs(&self) -> u64 {
        self.pushed - self.len as u64
    }

    /// Index of the first frame at or after `ts` (frames of one worker come in time order).
    fn lower_bound(&self, ts: u64) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if self.get(mid).0.ts < ts {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// Where the frames of `tx` (those at its interface from its start to its end) are in
    /// `rec`, which this ring took up at absolute frame `started`: the times of those
    /// handed over as the file's first part, and the numbers of those after.
    fn span(&self, tx: &Transaction, rec: &Recording, started: u64) -> Span {
        let from = self.lower_bound(tx.start.as_nanos());
        let to = self.lower_bound(tx.end.as_nanos().saturating_add(1));
        let first = self.first_abs();
        let mut span = Span::default();
        for i in from..to {
            let m = self.get(i).0;
            if m.obs != tx.obs {
                continue;
            }
            if first + i as u64 >= started {
                if m.seq != NO_SEQ {
                    span.post = Some(
                        span.post
                            .map_or((m.seq, m.seq), |(a, b)| (a.min(m.seq), b.max(m.seq))),
                    );
                }
            } else if rec.from.as_nanos() <= m.ts && m.ts <= rec.until.as_nanos() {
                span.pre = Some(span.pre.map_or((m.ts, m.ts), |(a, _)| (a, m.ts)));
            }
        }
        span
    }
}

/// Where a held transaction's frames are in a recording, before the file's first part is
/// numbered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    /// Earliest and latest time of its frames in the first part (before the trigger).
    pre: Option<(u64, u64)>,
    /// Lowest and highest number of its frames after the trigger.
    post: Option<(u32, u32)>,
}

/// A held transaction's recording.
enum Link {
    /// None (yet).
    None,
    /// It completed in the window of this recording: named once the numbering of the
    /// file's first part is final.
    Waiting(Arc<Recording>, Span),
    /// Named.
    Done,
}

/// A transaction whose record is held back.
struct Held {
    tx: Transaction,
    /// Packet-clock time (ns) it leaves at.
    release: u64,
    /// What it counts against the hold bound.
    bytes: usize,
    link: Link,
}

impl Held {
    /// Still waiting for a numbering that is not final yet.
    fn waiting(&self) -> bool {
        matches!(&self.link, Link::Waiting(r, _) if r.index().is_none())
    }

    /// Name the recording (and the frames, once numbered) in the transaction.
    fn name(&mut self) {
        let (rec, span) = match std::mem::replace(&mut self.link, Link::Done) {
            Link::Waiting(rec, span) => (rec, span),
            other => {
                self.link = other;
                return;
            }
        };
        self.tx.attrs.push((
            "podtap.recording.file",
            AttrValue::Str(rec.path.as_str().into()),
        ));
        if let Some((lo, hi)) = rec.index().and_then(|ix| frames(ix, span)) {
            self.tx.attrs.push((
                "podtap.recording.frames",
                AttrValue::Str(format!("{lo}-{hi}").as_str().into()),
            ));
        }
    }
}

/// The first and last frame number (Wireshark's, from 1) in a file whose first part has
/// the timestamps `index` of the frames of `span`: in the first part, every frame from
/// the earliest time to the latest (frames of the same time on other workers included);
/// after it, the frames' own numbers.
fn frames(index: &[u64], span: Span) -> Option<(u64, u64)> {
    let mut range: Option<(u64, u64)> = None;
    let mut add = |lo: u64, hi: u64| {
        if lo <= hi {
            range = Some(range.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    };
    if let Some((a, b)) = span.pre {
        add(
            index.partition_point(|&t| t < a) as u64 + 1,
            index.partition_point(|&t| t <= b) as u64,
        );
    }
    if let Some((a, b)) = span.post {
        let base = index.len() as u64 + 1;
        add(base + a as u64, base + b as u64);
    }
    range
}

/// Did `tx` complete within `rec`'s window?
fn in_window(tx: &Transaction, rec: &Recording) -> bool {
    rec.from <= tx.end && tx.end <= rec.until
}

/// A recording this worker has taken up: the frames it still has to hand over, per pod
/// ring (slot, next absolute frame number).
struct Active {
    rec: Arc<Recording>,
    cursors: Vec<(u16, u64)>,
}

/// One worker's rings and its view of the recorder hub.
pub struct WorkerRecorder {
    hub: Arc<Hub>,
    /// This worker's number among those the hub knows: a recording counts on the
    /// workers registered when it started.
    id: usize,
    generation: u64,
    /// Interfaces of recorded pods and their ring, sorted by interface.
    map: Vec<(u32, u16)>,
    rings: Vec<Ring>,
    active: Vec<Active>,
    /// Recordings already taken up (or not for this worker): ids, bounded by the hub's
    /// list.
    seen: Vec<u64>,
    /// Transactions of recorded pods whose records are held back, oldest first, and the
    /// bytes they count.
    held: VecDeque<Held>,
    held_bytes: usize,
    /// Recordings some held transactions wait for the numbering of.
    waiting: Vec<Arc<Recording>>,
    /// Released transactions on their way to the sink (reused).
    out: Vec<Transaction>,
}

impl WorkerRecorder {
    pub fn new(hub: Arc<Hub>) -> WorkerRecorder {
        let id = hub.workers.fetch_add(1, Relaxed);
        let rings = (0..hub.slots).map(|_| Ring::new(hub.ring_bytes)).collect();
        WorkerRecorder {
            hub,
            id,
            generation: u64::MAX,
            map: Vec::new(),
            rings,
            active: Vec::new(),
            seen: Vec::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            waiting: Vec::new(),
            out: Vec::new(),
        }
    }

    /// Does this worker record anything (a recordable pod's interface is known)?
    #[inline]
    pub fn wants_frames(&self) -> bool {
        !self.map.is_empty()
    }

    /// Before a batch: pick up a changed selection and new recordings (one atomic load
    /// when nothing changed), hand over what running recordings gathered, name the
    /// recordings in held transactions whose numbering became final, and pass on the
    /// held records that are due. `clock` is the worker's packet clock.
    pub fn before_batch<S: RecordSink>(&mut self, clock: Timestamp, sink: &mut S) {
        let g = self.hub.generation.load(Acquire);
        if g != self.generation {
            self.generation = g;
            self.refresh();
        }
        if !self.active.is_empty() {
            self.ship(clock, false);
        }
        if !self.waiting.is_empty() {
            self.resolve();
        }
        if !self.held.is_empty() {
            self.release(clock.as_nanos(), sink);
        }
    }

    /// Name the recordings in the held transactions waiting for a numbering now final.
    fn resolve(&mut self) {
        if self.waiting.iter().all(|r| r.index().is_none()) {
            return;
        }
        for h in self.held.iter_mut() {
            if matches!(&h.link, Link::Waiting(r, _) if r.index().is_some()) {
                h.name();
            }
        }
        self.waiting.retain(|r| r.index().is_none());
    }

    /// Pass on the held records due at `now` (all with `u64::MAX`), oldest first. One
    /// still waiting for its recording's numbering holds up the rest, for at most the
    /// time the recorder takes to write the file (the numbering is final then).
    fn release<S: RecordSink>(&mut self, now: u64, sink: &mut S) {
        while let Some(h) = self.held.front() {
            if h.release > now || (now != u64::MAX && h.waiting()) {
                break;
            }
            let mut h = self.held.pop_front().expect("a front");
            self.held_bytes -= h.bytes;
            h.name();
            self.out.push(h.tx);
        }
        if !self.out.is_empty() {
            sink.held(&mut self.out);
        }
    }

    /// Hold back the records of the transactions of `txs` seen at a recorded pod's
    /// interface: their statistics are taken now (`sink.observe`), their records leave
    /// later ([`WorkerRecorder::before_batch`]). Those completing within the window of
    /// a recording this worker takes part in are linked to it. The others stay in `txs`.
    /// When the hold is full, the oldest leave early (counted: `recorder.hold_full`).
    pub fn hold<S: RecordSink>(
        &mut self,
        txs: &mut Vec<Transaction>,
        sink: &mut S,
        counters: &mut Counters,
    ) {
        let limit = self.hub.hold_bytes;
        if limit == 0 {
            return;
        }
        let release_ns = self.hub.hold_ns;
        let Self {
            map,
            rings,
            held,
            held_bytes,
            waiting,
            out,
            ..
        } = self;
        let slot = |obs: u32| {
            map.binary_search_by_key(&obs, |e| e.0)
                .ok()
                .map(|i| map[i].1 as usize)
        };
        for tx in txs.extract_if(.., |tx| slot(tx.obs).is_some()) {
            sink.observe(std::slice::from_ref(&tx));
            let ring = &rings[slot(tx.obs).expect("extracted by its slot")];
            let link = match &ring.rec {
                Some((rec, started)) if in_window(&tx, rec) => {
                    if rec.index().is_none() && !waiting.iter().any(|r| r.id == rec.id) {
                        waiting.push(rec.clone());
                    }
                    Link::Waiting(rec.clone(), ring.span(&tx, rec, *started))
                }
                _ => Link::None,
            };
            let mut h = Held {
                release: tx.end.as_nanos().saturating_add(release_ns),
                bytes: std::mem::size_of::<Held>() + tx.heap_size(),
                tx,
                link,
            };
            if !h.waiting() {
                h.name();
            }
            // Room for it: the oldest leave early.
            while *held_bytes + h.bytes > limit
                && let Some(mut old) = held.pop_front()
            {
                *held_bytes -= old.bytes;
                counters.bump(Event::RecorderHoldFull);
                old.name();
                out.push(old.tx);
            }
            if h.bytes > limit {
                counters.bump(Event::RecorderHoldFull);
                h.name();
                out.push(h.tx);
                continue;
            }
            *held_bytes += h.bytes;
            held.push_back(h);
        }
        if !out.is_empty() {
            sink.held(out);
        }
    }

    fn refresh(&mut self) {
        let sel = self.hub.selection.load();
        self.map.clear();
        self.map.extend_from_slice(&sel.map);
        for (ring, &epoch) in self.rings.iter_mut().zip(&sel.epochs) {
            if ring.epoch != epoch {
                // Another pod took the slot: its frames are not the new pod's.
                ring.clear();
                ring.epoch = epoch;
            }
        }
        let recs = self.hub.recordings.load();
        self.seen.retain(|id| recs.iter().any(|r| r.id == *id));
        for rec in recs.iter() {
            if self.seen.contains(&rec.id) {
                continue;
            }
            self.seen.push(rec.id);
            if self.id < rec.workers {
                self.take_up(rec.clone());
            }
        }
    }

    /// Start taking part in `rec`: hand over the frames held of its pods within its
    /// window (the part before the trigger), then number the frames that follow. Held
    /// transactions of its pods that completed in its window are linked to it.
    fn take_up(&mut self, rec: Arc<Recording>) {
        // A pod's ring numbers frames for one recording at a time: a new one of the pod
        // comes after the previous one's window, which this worker then ends.
        let prev: Vec<u64> = rec
            .slots
            .iter()
            .filter_map(|&s| self.rings.get(s as usize)?.rec.as_ref().map(|r| r.0.id))
            .collect();
        if !prev.is_empty() {
            let (hub, rings) = (&self.hub, &mut self.rings);
            self.active.retain_mut(|a| {
                let over = prev.contains(&a.rec.id);
                if over {
                    ship_one(hub, rings, a, true);
                }
                !over
            });
        }
        let mut linked = false;
        for h in self.held.iter_mut() {
            if !matches!(h.link, Link::None) || !in_window(&h.tx, &rec) {
                continue;
            }
            let Ok(i) = self.map.binary_search_by_key(&h.tx.obs, |e| e.0) else {
                continue;
            };
            let slot = self.map[i].1;
            if !rec.slots.contains(&slot) {
                continue;
            }
            let ring = &self.rings[slot as usize];
            // Everything the ring holds now goes into the first part.
            h.link = Link::Waiting(rec.clone(), ring.span(&h.tx, &rec, ring.pushed));
            linked = true;
        }
        if linked {
            self.waiting.push(rec.clone());
        }
        let mut chunk = Chunk::new(rec.id, true);
        let mut cursors = Vec::with_capacity(rec.slots.len());
        for &slot in &rec.slots {
            let Some(ring) = self.rings.get_mut(slot as usize) else {
                continue;
            };
            for i in ring.lower_bound(rec.from.as_nanos())..ring.len {
                let (m, d) = ring.get(i);
                if m.ts <= rec.until.as_nanos() {
                    chunk.push(m.ts, m.wire_len, m.obs, m.link, NO_SEQ, d);
                }
            }
            ring.rec = Some((rec.clone(), ring.pushed));
            cursors.push((slot, ring.pushed));
        }
        // Counted only when handed over: the count is where the numbered frames start.
        let n = chunk.frames.len() as u64;
        if self.hub.send(&rec, chunk) {
            rec.pre.fetch_add(n, Relaxed);
        }
        rec.picked.fetch_add(1, Release);
        self.active.push(Active { rec, cursors });
    }

    /// Hand over the numbered frames gathered since the last time; recordings whose
    /// window has passed (or all, when `finishing`) end here.
    fn ship(&mut self, clock: Timestamp, finishing: bool) {
        let (hub, rings) = (&self.hub, &mut self.rings);
        self.active
            .retain_mut(|a| !ship_one(hub, rings, a, finishing || clock > a.rec.until));
    }

    /// The worker stops: running recordings get what it has, and the held records leave
    /// (linked when their recording's numbering becomes final within a second: the
    /// recorder thread still runs, and every worker has handed over its first part).
    pub fn finish<S: RecordSink>(&mut self, sink: &mut S) {
        self.ship(Timestamp::ZERO, true);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(1);
        while self
            .waiting
            .iter()
            .any(|r| r.index().is_none() && r.picked.load(Acquire) >= r.workers)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.resolve();
        self.release(u64::MAX, sink);
    }

    /// Keep a copy of `f` when its interface is a recorded pod's.
    #[inline]
    pub fn offer(&mut self, f: &Frame<'_>) {
        let Ok(i) = self.map.binary_search_by_key(&f.obs, |e| e.0) else {
            return;
        };
        let ring = &mut self.rings[self.map[i].1 as usize];
        let seq = match &ring.rec {
            Some((r, _)) if f.ts <= r.until => r.next.fetch_add(1, Relaxed) as u32,
            _ => NO_SEQ,
        };
        ring.push(f, self.hub.snaplen, seq);
    }
}

/// Hand over the numbered frames of `a` gathered since the last time; with `over`, this
/// worker's part in it ends (its rings no longer number frames for it). Returns `over`.
fn ship_one(hub: &Hub, rings: &mut [Ring], a: &mut Active, over: bool) -> bool {
    let mut chunk = Chunk::new(a.rec.id, false);
    for (slot, cursor) in &mut a.cursors {
        let ring = &rings[*slot as usize];
        let first = ring.first_abs();
        if *cursor < first {
            // Overwritten before it could be handed over.
            a.rec.lost.fetch_add(first - *cursor, Relaxed);
            *cursor = first;
        }
        for abs in *cursor..ring.pushed {
            let (m, d) = ring.get((abs - first) as usize);
            if m.seq != NO_SEQ {
                chunk.push(m.ts, m.wire_len, m.obs, m.link, m.seq, d);
            }
        }
        *cursor = ring.pushed;
    }
    if !chunk.frames.is_empty() {
        hub.send(&a.rec, chunk);
    }
    if over {
        for (slot, _) in &a.cursors {
            rings[*slot as usize].rec = None;
        }
        a.rec.done.fetch_add(1, Release);
    }
    over
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::LinkType;

    fn frame(data: &[u8], ts: u64) -> Frame<'_> {
        Frame {
            data,
            ts: Timestamp(ts),
            wire_len: data.len() as u32,
            link: LinkType::Ethernet,
            obs: 7,
        }
    }

    #[test]
    fn the_ring_keeps_the_newest_frames_whole() {
        let mut r = Ring::new(4096);
        let cap = r.data.len();
        for i in 0..200u64 {
            let d = vec![i as u8; 50 + (i as usize % 90)];
            r.push(&frame(&d, i), usize::MAX, NO_SEQ);
        }
        assert_eq!(r.pushed, 200);
        let held: usize = (0..r.len).map(|i| r.get(i).1.len()).sum();
        assert!(held <= cap && held > cap / 2, "{held} of {cap}");
        // Oldest first, newest last, each frame's bytes its own.
        for i in 0..r.len {
            let (m, d) = r.get(i);
            assert!(d.iter().all(|&b| b == m.ts as u8));
            assert_eq!(d.len(), 50 + (m.ts as usize % 90));
        }
        assert_eq!(r.get(r.len - 1).0.ts, 199);
        assert_eq!(r.first_abs() + r.len as u64, 200);
        let i = r.lower_bound(190);
        assert_eq!(r.get(i).0.ts, 190);
        // Snaplen cuts, the wire length stays.
        r.push(&frame(&[1; 100], 300), 10, 5);
        let (m, d) = r.get(r.len - 1);
        assert_eq!((d.len(), m.wire_len, m.seq), (10, 100, 5));
    }
    /// The hold is bounded in bytes: beyond it the oldest records leave early, in order,
    /// counted; at the end every record has left, none lost.
    #[test]
    fn a_full_hold_lets_the_oldest_leave_early_and_counts_them() {
        let tx = |ms: u64| {
            let mut t = Transaction::new(crate::proto::Protocol::Http, Timestamp(ms * 1_000_000));
            t.obs = 7;
            t
        };
        let one = std::mem::size_of::<Held>() + tx(0).heap_size();
        let dir = tempfile::tempdir().unwrap();
        let cfg = super::super::RecorderConfig {
            enabled: true,
            dir: dir.path().display().to_string(),
            hold_bytes: 3 * one,
            ..Default::default()
        };
        let r = super::super::Recorder::new(&cfg, 1, "n1").unwrap();
        let mut w = WorkerRecorder::new(r.hub());
        {
            let mut st = r.lock();
            let web = super::super::SlotPod {
                label: "shop/web".into(),
                ifaces: vec![(7, "veth7".into())],
            };
            r.select(&mut st, vec![web]);
        }
        let mut sink = crate::export::VecSink::default();
        let mut counters = Counters::default();
        w.before_batch(Timestamp::ZERO, &mut sink);
        let mut txs: Vec<Transaction> = (0..5).map(tx).collect();
        w.hold(&mut txs, &mut sink, &mut counters);
        let starts = |sink: &crate::export::VecSink| -> Vec<u64> {
            sink.records
                .iter()
                .filter_map(|r| match r {
                    crate::export::Record::Transaction(t) => Some(t.start.as_nanos() / 1_000_000),
                    _ => None,
                })
                .collect()
        };
        assert_eq!(starts(&sink), [0, 1]);
        assert_eq!(counters.get(Event::RecorderHoldFull), 2);
        assert_eq!(w.held_bytes, 3 * one);
        w.finish(&mut sink);
        assert_eq!(starts(&sink), [0, 1, 2, 3, 4]);
        assert_eq!(w.held_bytes, 0);
    }
}
