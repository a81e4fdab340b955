//! The worker's side of the flight recorder: one preallocated ring per recordable pod,
//! frames copied in once, and the hand-off of a recording's frames to the recorder.
//!
//! The packet path ([`WorkerRecorder::offer`]) is a binary search of a short sorted
//! vector (the selected pods' interfaces, refreshed between batches when the hub's
//! generation moves) and a copy into the pod's ring: no allocation, no lock. While a
//! recording of the pod runs (seconds after an anomaly), each frame also takes a number
//! from the recording's counter (one relaxed atomic add), which is its place in the file.

use std::sync::Arc;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use super::{Chunk, Hub, Recording};
use crate::capture::Frame;
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
        }
    }

    /// Does this worker record anything (a recordable pod's interface is known)?
    #[inline]
    pub fn wants_frames(&self) -> bool {
        !self.map.is_empty()
    }

    /// Is a recording running here (transactions may be linked to it)?
    #[inline]
    pub fn linking(&self) -> bool {
        !self.active.is_empty()
    }

    /// Before a batch: pick up a changed selection and new recordings (one atomic load
    /// when nothing changed), and hand over what running recordings gathered. `clock` is
    /// the worker's packet clock.
    pub fn before_batch(&mut self, clock: Timestamp) {
        let g = self.hub.generation.load(Acquire);
        if g != self.generation {
            self.generation = g;
            self.refresh();
        }
        if !self.active.is_empty() {
            self.ship(clock, false);
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
    /// window (the part before the trigger), then number the frames that follow.
    fn take_up(&mut self, rec: Arc<Recording>) {
        let mut chunk = Chunk::new(rec.id, true);
        let mut cursors = Vec::with_capacity(rec.slots.len());
        for &slot in &rec.slots {
            let Some(ring) = self.rings.get_mut(slot as usize) else {
                continue;
            };
            if ring.rec.is_some() {
                // The recorder gives a pod one recording at a time.
                continue;
            }
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
        self.active.retain_mut(|a| {
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
            let over = finishing || clock > a.rec.until;
            if over {
                for (slot, _) in &a.cursors {
                    rings[*slot as usize].rec = None;
                }
                a.rec.done.fetch_add(1, Release);
            }
            !over
        });
    }

    /// The worker stops: running recordings get what it has.
    pub fn finish(&mut self) {
        self.ship(Timestamp::ZERO, true);
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

    /// Name the recording (and the frames in it) of a transaction of a recorded pod
    /// that completes while this worker takes part in the recording, within its window.
    pub fn link(&self, tx: &mut Transaction) {
        let Ok(i) = self.map.binary_search_by_key(&tx.obs, |e| e.0) else {
            return;
        };
        let ring = &self.rings[self.map[i].1 as usize];
        let Some((rec, started)) = &ring.rec else {
            return;
        };
        if tx.end > rec.until || tx.end < rec.from {
            return;
        }
        tx.attrs.push((
            "podtap.recording.file",
            AttrValue::Str(rec.path.as_str().into()),
        ));
        // The frame numbers are final only once every worker has counted its frames from
        // before the trigger (the first part of the file).
        if rec.picked.load(Acquire) < rec.workers {
            return;
        }
        let first_post = started.saturating_sub(ring.first_abs()) as usize;
        let from = ring.lower_bound(tx.start.as_nanos()).max(first_post);
        let to = ring.lower_bound(tx.end.as_nanos().saturating_add(1));
        let mut seqs = (from..to)
            .map(|i| ring.get(i).0.seq)
            .filter(|&s| s != NO_SEQ);
        let Some(lo) = seqs.next() else {
            return;
        };
        let hi = seqs.next_back().unwrap_or(lo);
        let base = rec.pre.load(Relaxed) + 1;
        tx.attrs.push((
            "podtap.recording.frames",
            AttrValue::Str(
                format!("{}-{}", base + lo as u64, base + hi as u64)
                    .as_str()
                    .into(),
            ),
        ));
    }
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
}
