//! Taps: copies of the frames that pass the workers, for `podtap sniff` (and later the
//! flight recorder), without slowing the workers.
//!
//! A [`TapHub`] holds the active subscriptions. Each worker owns a [`WorkerTap`] and asks
//! it once per batch, with one relaxed atomic load, whether anything is subscribed; only
//! then does it look at the frames of that batch. A matching frame is copied into the
//! subscription's bounded queue with `try_send`: when the queue is full (the client reads
//! too slowly) the frame is dropped and counted, and the worker goes on.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::capture::Frame;
use crate::filter::Filter;
use crate::packet::{self, Decoded, Defragmenter, defrag::DefragLimits};
use crate::time::Timestamp;

/// One copied frame on its way to a client.
#[derive(Debug)]
pub struct TapFrame {
    pub obs: u32,
    pub linktype: u16,
    pub ts: Timestamp,
    pub wire_len: u32,
    pub data: Box<[u8]>,
}

/// What a subscription wants, and its queue.
pub struct Subscription {
    /// Observation points (ifindexes) whose frames are wanted, sorted.
    obs: Vec<u32>,
    filter: Filter,
    /// Bytes kept per frame (at least 1).
    snaplen: usize,
    tx: crossbeam_channel::Sender<TapFrame>,
    /// Bytes queued now, and the bound.
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    /// Matching frames lost to a full queue.
    dropped: AtomicU64,
    /// Set when the client has gone: workers skip it until they drop it.
    closed: AtomicBool,
}

/// The receiving end of a subscription, held by the client's handler.
pub struct TapReceiver {
    sub: Arc<Subscription>,
    hub: Arc<TapHub>,
    rx: crossbeam_channel::Receiver<TapFrame>,
}

impl TapReceiver {
    pub fn recv_timeout(&self, t: std::time::Duration) -> Option<TapFrame> {
        let f = self.rx.recv_timeout(t).ok()?;
        self.sub
            .queued_bytes
            .fetch_sub(f.data.len(), Ordering::Relaxed);
        Some(f)
    }

    pub fn try_recv(&self) -> Option<TapFrame> {
        let f = self.rx.try_recv().ok()?;
        self.sub
            .queued_bytes
            .fetch_sub(f.data.len(), Ordering::Relaxed);
        Some(f)
    }

    /// Matching frames lost so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.sub.dropped.load(Ordering::Relaxed)
    }
}

impl Drop for TapReceiver {
    fn drop(&mut self) {
        self.sub.closed.store(true, Ordering::Relaxed);
        self.hub.remove(&self.sub);
        // Workers keep their copy of the list (and the sender) until the next change:
        // the frames still queued are freed now, not then.
        while self.rx.try_recv().is_ok() {}
    }
}

/// The subscriptions of one daemon, shared by its workers and the control server.
#[derive(Default)]
pub struct TapHub {
    /// Anything subscribed: the one load a worker does per batch.
    active: AtomicBool,
    /// Bumped on every change, so workers re-read `subs` only then.
    generation: AtomicU64,
    subs: Mutex<Vec<Arc<Subscription>>>,
}

/// The bounds of one subscription's queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueBounds {
    pub frames: usize,
    pub bytes: usize,
}

impl TapHub {
    pub fn new() -> Arc<TapHub> {
        Arc::new(TapHub::default())
    }

    /// Subscriptions active now.
    pub fn active_count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Subscription>>> {
        self.subs.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Subscribe to the frames of `obs` that pass `filter`, cut to `snaplen` (0: whole).
    pub fn subscribe(
        self: &Arc<Self>,
        mut obs: Vec<u32>,
        filter: Filter,
        snaplen: u32,
        bounds: QueueBounds,
    ) -> TapReceiver {
        obs.sort_unstable();
        obs.dedup();
        let (tx, rx) = crossbeam_channel::bounded(bounds.frames.max(1));
        let sub = Arc::new(Subscription {
            obs,
            filter,
            snaplen: if snaplen == 0 {
                usize::MAX
            } else {
                snaplen as usize
            },
            tx,
            queued_bytes: AtomicUsize::new(0),
            max_bytes: bounds.bytes.max(1),
            dropped: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let mut subs = self.lock();
        subs.push(sub.clone());
        self.generation.fetch_add(1, Ordering::Release);
        self.active.store(true, Ordering::Release);
        TapReceiver {
            sub,
            hub: self.clone(),
            rx,
        }
    }

    fn remove(&self, sub: &Arc<Subscription>) {
        let mut subs = self.lock();
        subs.retain(|s| !Arc::ptr_eq(s, sub));
        self.generation.fetch_add(1, Ordering::Release);
        self.active.store(!subs.is_empty(), Ordering::Release);
    }
}

/// A worker's view of the hub: its own copy of the subscription list (re-read when the
/// hub's generation moves) and a defragmenter of its own for filters.
pub struct WorkerTap {
    hub: Arc<TapHub>,
    generation: u64,
    subs: Vec<Arc<Subscription>>,
    /// Decoding for filters needs one; it holds nothing (see [`matches`]).
    defrag: Defragmenter,
}

impl WorkerTap {
    pub fn new(hub: Arc<TapHub>) -> WorkerTap {
        WorkerTap {
            hub,
            generation: 0,
            subs: Vec::new(),
            defrag: Defragmenter::new(NO_DEFRAG),
        }
    }

    /// Is anything subscribed? One relaxed load: the workers ask once per batch, not per
    /// frame. A subscription that starts mid-batch sees frames from the next batch on.
    #[inline(always)]
    pub fn active(&self) -> bool {
        self.hub.active.load(Ordering::Relaxed)
    }

    /// Before a batch in which [`WorkerTap::active`] said yes: pick up changed
    /// subscriptions.
    pub fn refresh(&mut self) {
        let g = self.hub.generation.load(Ordering::Acquire);
        if g != self.generation {
            self.subs.clone_from(&self.hub.lock());
            self.generation = g;
        }
    }

    /// Offer one frame to the subscriptions.
    pub fn offer(&mut self, f: &Frame<'_>) {
        let WorkerTap { subs, defrag, .. } = self;
        // The last filter evaluated and its verdict: sniffs of one pod usually share it.
        let mut last: Option<(&Filter, bool)> = None;
        for s in subs.iter() {
            if s.obs.binary_search(&f.obs).is_err() || s.closed.load(Ordering::Relaxed) {
                continue;
            }
            if !s.filter.is_match_all() {
                let ok = match last {
                    Some((lf, ok)) if *lf == s.filter => ok,
                    _ => matches(&s.filter, defrag, f),
                };
                last = Some((&s.filter, ok));
                if !ok {
                    continue;
                }
            }
            let keep = f.data.len().min(s.snaplen);
            if s.queued_bytes.load(Ordering::Relaxed) + keep > s.max_bytes {
                s.dropped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let frame = TapFrame {
                obs: f.obs,
                linktype: linktype_of(f.link),
                ts: f.ts,
                wire_len: f.wire_len,
                data: f.data[..keep].into(),
            };
            s.queued_bytes.fetch_add(keep, Ordering::Relaxed);
            if s.tx.try_send(frame).is_err() {
                s.queued_bytes.fetch_sub(keep, Ordering::Relaxed);
                s.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// The filters decode each frame on its own: IP fragments are not reassembled (a
/// non-first fragment has no ports), so a filtered sniff holds whole datagrams only.
pub(crate) const NO_DEFRAG: DefragLimits = DefragLimits {
    max_datagrams: 0,
    max_datagram_bytes: 0,
    timeout_ns: 0,
};

/// Does frame `f` pass `filter`? Frames that do not decode to a packet do not.
pub fn matches(filter: &Filter, defrag: &mut Defragmenter, f: &Frame<'_>) -> bool {
    if filter.is_match_all() {
        return true;
    }
    match packet::decode(f.data, f.link, f.ts, f.wire_len, defrag) {
        Ok(Decoded::Packet(p)) => filter.matches(&p),
        _ => false,
    }
}

/// The pcap link-type number of a frame's link layer.
pub fn linktype_of(l: crate::packet::LinkType) -> u16 {
    use crate::packet::LinkType::*;
    match l {
        Ethernet => 1,
        LinuxSll => 113,
        LinuxSll2 => 276,
        RawIp => 101,
        Ipv4 => 228,
        Ipv6 => 229,
        Null => 0,
        Loop => 108,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::LinkType;
    use std::time::Duration;

    fn frame(obs: u32, data: &[u8]) -> Frame<'_> {
        Frame {
            data,
            ts: Timestamp(5),
            wire_len: data.len() as u32,
            link: LinkType::Ethernet,
            obs,
        }
    }

    /// An Ethernet/IPv4/UDP frame from port `sport` to 53.
    fn udp(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00]);
        let mut ip = vec![
            0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&53u16.to_be_bytes());
        ip.extend_from_slice(&[0, 8, 0, 0]);
        f.extend_from_slice(&ip);
        f
    }

    #[test]
    fn idle_hub_is_inactive_and_subscriptions_come_and_go() {
        let hub = TapHub::new();
        let mut w = WorkerTap::new(hub.clone());
        assert!(!w.active());
        let bounds = QueueBounds {
            frames: 2,
            bytes: 1 << 20,
        };
        let rx = hub.subscribe(vec![3], Filter::parse("udp port 1000").unwrap(), 0, bounds);
        assert!(w.active());
        w.refresh();
        let (a, b) = (udp(1000), udp(2000));
        w.offer(&frame(3, &a));
        w.offer(&frame(3, &b)); // filtered out
        w.offer(&frame(4, &a)); // another interface
        let got = rx.recv_timeout(Duration::from_millis(10)).unwrap();
        assert_eq!((got.obs, &got.data[..]), (3, &a[..]));
        assert!(rx.try_recv().is_none());
        // A full queue drops and counts; the worker never waits.
        for _ in 0..5 {
            w.offer(&frame(3, &a));
        }
        assert_eq!(rx.dropped(), 3);
        assert_eq!(hub.active_count(), 1);
        drop(rx);
        assert!(!w.active());
        assert_eq!(hub.active_count(), 0);
    }

    #[test]
    fn snaplen_and_byte_bound() {
        let hub = TapHub::new();
        let mut w = WorkerTap::new(hub.clone());
        let bounds = QueueBounds {
            frames: 100,
            bytes: 50,
        };
        let rx = hub.subscribe(vec![1], Filter::default(), 20, bounds);
        w.refresh();
        let a = udp(1);
        for _ in 0..3 {
            w.offer(&frame(1, &a));
        }
        // 20 bytes each, 50 allowed: two queued, one dropped.
        assert_eq!(rx.dropped(), 1);
        let f = rx.try_recv().unwrap();
        assert_eq!((f.data.len(), f.wire_len), (20, a.len() as u32));
    }
}
