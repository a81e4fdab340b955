//! In-order TCP byte streams per direction, with bounded out-of-order buffering.
//!
//! In-order data is handed to the consumer straight from the packet (zero copy). Data
//! ahead of a hole is copied into buffers taken from a per-worker pool and released when
//! the hole fills. A gap is declared, and reported to the consumer with its size, when:
//! the buffered bytes exceed the per-flow or per-worker limit, the receiver acknowledges
//! bytes podtap never saw (they were lost before the capture point), the capture cut the
//! payload (snap length), or the flow closes with holes still open. Overlaps are trimmed:
//! the first copy of a byte wins.

use crate::events::{Counters, Event};

/// What a stream hands its consumer.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunk<'a> {
    Data(&'a [u8]),
    /// This many bytes are missing; the stream continues after them.
    Gap(u32),
}

/// Per-worker reassembly memory: the byte budget and a pool of reusable buffers, so that
/// buffering out-of-order data does not allocate once the pool is warm.
pub struct ReassemblyBudget {
    used: usize,
    max: usize,
    pool: Vec<Vec<u8>>,
}

impl ReassemblyBudget {
    pub fn new(max_worker_bytes: usize) -> Self {
        ReassemblyBudget {
            used: 0,
            max: max_worker_bytes,
            pool: Vec::new(),
        }
    }

    /// Bytes currently buffered by all streams of the worker.
    pub fn used(&self) -> usize {
        self.used
    }

    fn take(&mut self, data: &[u8]) -> Vec<u8> {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(data);
        self.used += data.len();
        v
    }

    fn give(&mut self, v: Vec<u8>) {
        self.used -= v.len();
        // Keep the pool bounded too: very large buffers are not worth keeping.
        if self.pool.len() < 4096 && v.capacity() <= 64 * 1024 {
            self.pool.push(v);
        }
    }
}

struct Segment {
    seq: u32,
    data: Vec<u8>,
}

/// One direction of a TCP connection.
#[derive(Default)]
pub struct Stream {
    /// Sequence number of the next byte to deliver; `None` until the first segment.
    next: Option<u32>,
    /// Out-of-order segments, sorted by sequence number, non-overlapping.
    ooo: Vec<Segment>,
    buffered: usize,
    /// FIN consumed: nothing more follows.
    pub finished: bool,
    /// Bytes delivered in order.
    pub delivered: u64,
    /// Bytes declared missing, and how many gaps.
    pub gap_bytes: u64,
    pub gaps: u32,
}

/// Sequence arithmetic modulo 2^32: the signed distance from `a` to `b`.
#[inline]
pub fn seq_diff(b: u32, a: u32) -> i32 {
    b.wrapping_sub(a) as i32
}

impl Stream {
    /// Start the stream at `seq` (after a SYN: ISN + 1).
    pub fn start_at(&mut self, seq: u32) {
        if self.next.is_none() {
            self.next = Some(seq);
        }
    }

    pub fn next_seq(&self) -> Option<u32> {
        self.next
    }

    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Would a segment at `seq` of `len` bytes add bytes not yet delivered or buffered?
    pub fn is_new(&self, seq: u32, len: u32) -> bool {
        let Some(next) = self.next else { return true };
        let end = seq.wrapping_add(len);
        if seq_diff(end, next) <= 0 {
            return false;
        }
        // Entirely inside buffered segments?
        !self.ooo.iter().any(|s| {
            seq_diff(seq, s.seq) >= 0 && seq_diff(end, s.seq.wrapping_add(s.data.len() as u32)) <= 0
        })
    }

    /// Offer a segment: `data` as captured, `wire_len` its length on the wire (larger when
    /// the snap length cut it), `fin` whether it carries FIN.
    #[allow(clippy::too_many_arguments)]
    pub fn segment<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        data: &[u8],
        wire_len: u32,
        fin: bool,
        max_flow_bytes: usize,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        let next = *self.next.get_or_insert(seq);
        let off = seq_diff(seq, next);
        if off <= 0 {
            self.in_order(seq, data, wire_len, deliver);
            self.drain_if_buffered(budget, deliver);
        } else if data.len() as u32 != wire_len {
            // A snap-cut segment ahead of a hole: the hole and the cut tail are lost anyway.
            self.gap(off as u32, counters, deliver);
            self.in_order(seq, data, wire_len, deliver);
            self.drain_if_buffered(budget, deliver);
        } else if !data.is_empty() {
            self.buffer(seq, data, max_flow_bytes, budget, counters, deliver);
        }
        if fin {
            let fin_seq = seq.wrapping_add(wire_len);
            if self.next == Some(fin_seq) {
                self.next = Some(fin_seq.wrapping_add(1));
                self.finished = true;
            }
        }
    }

    /// The peer acknowledged everything before `ack`: bytes before it that podtap never saw
    /// will never come (they were lost before the capture point).
    // Inlined: nearly every ACK acknowledges just what was seen, a check that costs less
    // than a call.
    #[inline(always)]
    pub fn acked<F: FnMut(Chunk<'_>)>(
        &mut self,
        ack: u32,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        let Some(next) = self.next else { return };
        if seq_diff(ack, next) > 0 {
            self.acked_ahead(ack, next, budget, counters, deliver);
        }
    }

    /// [`acked`](Self::acked) of an ACK beyond the bytes seen.
    fn acked_ahead<F: FnMut(Chunk<'_>)>(
        &mut self,
        ack: u32,
        next: u32,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        let ahead = seq_diff(ack, next);
        // A FIN takes one sequence number that is not data: an ACK of FIN+1 is no gap.
        if self.ooo.is_empty() && ahead == 1 && !self.finished {
            return;
        }
        // Only declare up to the first buffered segment (or the ack).
        let limit = match self.ooo.first() {
            Some(s) => seq_diff(s.seq, next).min(ahead),
            None => ahead,
        };
        if limit > 0 && limit < (1 << 30) {
            self.gap(limit as u32, counters, deliver);
            self.drain(budget, deliver);
        }
    }

    /// The connection is over: deliver what is buffered, declaring the holes between.
    pub fn flush<F: FnMut(Chunk<'_>)>(
        &mut self,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        while let Some(first) = self.ooo.first() {
            let next = self.next.unwrap_or(first.seq);
            let hole = seq_diff(first.seq, next);
            if hole > 0 {
                self.gap(hole as u32, counters, deliver);
            }
            self.drain(budget, deliver);
        }
    }

    /// Release buffers without delivering (eviction or shutdown after flush).
    pub fn release(&mut self, budget: &mut ReassemblyBudget) {
        for s in self.ooo.drain(..) {
            budget.give(s.data);
        }
        self.buffered = 0;
    }

    fn gap<F: FnMut(Chunk<'_>)>(&mut self, n: u32, counters: &mut Counters, deliver: &mut F) {
        if n == 0 {
            return;
        }
        if let Some(next) = self.next.as_mut() {
            *next = next.wrapping_add(n);
        }
        self.gap_bytes += n as u64;
        self.gaps += 1;
        counters.bump(Event::ReassemblyGap);
        deliver(Chunk::Gap(n));
    }

    /// Deliver a segment that starts at or before `next`, trimming what was delivered.
    fn in_order<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        data: &[u8],
        wire_len: u32,
        deliver: &mut F,
    ) {
        let next = self.next.unwrap_or(seq);
        let skip = seq_diff(next, seq).max(0) as u32;
        if skip < data.len() as u32 {
            let fresh = &data[skip as usize..];
            self.next = Some(next.wrapping_add(fresh.len() as u32));
            self.delivered += fresh.len() as u64;
            deliver(Chunk::Data(fresh));
        }
        // Bytes on the wire beyond what was captured: declared missing right away.
        let wire_end = seq.wrapping_add(wire_len);
        let after = self.next.unwrap_or(seq);
        let missing = seq_diff(wire_end, after);
        if wire_len as usize > data.len() && missing > 0 {
            self.next = Some(wire_end);
            self.gap_bytes += missing as u64;
            self.gaps += 1;
            deliver(Chunk::Gap(missing as u32));
        }
    }

    /// [`drain`](Self::drain) where the check for nothing buffered (nearly every segment)
    /// costs no call.
    #[inline(always)]
    fn drain_if_buffered<F: FnMut(Chunk<'_>)>(
        &mut self,
        budget: &mut ReassemblyBudget,
        deliver: &mut F,
    ) {
        if !self.ooo.is_empty() {
            self.drain(budget, deliver);
        }
    }

    /// Deliver buffered segments that are now contiguous.
    fn drain<F: FnMut(Chunk<'_>)>(&mut self, budget: &mut ReassemblyBudget, deliver: &mut F) {
        while let Some(first) = self.ooo.first() {
            let next = self.next.unwrap_or(first.seq);
            if seq_diff(first.seq, next) > 0 {
                break;
            }
            let s = self.ooo.remove(0);
            self.buffered -= s.data.len();
            let len = s.data.len() as u32;
            self.in_order(s.seq, &s.data, len, deliver);
            budget.give(s.data);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn buffer<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        data: &[u8],
        max_flow_bytes: usize,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        // Trim against buffered segments: keep only bytes not held yet (first copy wins).
        let mut start = seq;
        let mut rest = data;
        let mut i = 0;
        while i < self.ooo.len() && !rest.is_empty() {
            let s_start = self.ooo[i].seq;
            let s_end = s_start.wrapping_add(self.ooo[i].data.len() as u32);
            let end = start.wrapping_add(rest.len() as u32);
            if seq_diff(end, s_start) <= 0 {
                break; // entirely before segment i
            }
            if seq_diff(start, s_end) >= 0 {
                i += 1; // entirely after segment i
                continue;
            }
            if seq_diff(start, s_start) < 0 {
                // Insert the part before segment i, continue with the remainder.
                let head = seq_diff(s_start, start) as usize;
                if !self.insert(
                    i,
                    start,
                    &rest[..head],
                    max_flow_bytes,
                    budget,
                    counters,
                    deliver,
                ) {
                    return;
                }
                i += 1;
            }
            // Skip the overlap with segment i.
            let overlap_end = seq_diff(s_end, start).max(0) as usize;
            let skip = overlap_end.min(rest.len());
            start = start.wrapping_add(skip as u32);
            rest = &rest[skip..];
            i += 1;
        }
        if !rest.is_empty() {
            let pos = self
                .ooo
                .iter()
                .position(|s| seq_diff(s.seq, start) > 0)
                .unwrap_or(self.ooo.len());
            self.insert(pos, start, rest, max_flow_bytes, budget, counters, deliver);
        }
    }

    /// Insert one non-overlapping piece at `pos`, or declare a gap when over the limits.
    #[allow(clippy::too_many_arguments)]
    fn insert<F: FnMut(Chunk<'_>)>(
        &mut self,
        pos: usize,
        seq: u32,
        data: &[u8],
        max_flow_bytes: usize,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) -> bool {
        let over_flow = self.buffered + data.len() > max_flow_bytes;
        let over_worker = budget.used + data.len() > budget.max;
        if over_flow || over_worker {
            counters.bump(if over_flow {
                Event::ReassemblyFlowLimit
            } else {
                Event::ReassemblyWorkerLimit
            });
            // Give up on the oldest hole: skip to the first buffered byte (or to this
            // segment), deliver what becomes contiguous, then retry this piece.
            let next = self.next.unwrap_or(seq);
            let target = self.ooo.first().map_or(seq, |s| s.seq);
            let hole = seq_diff(target, next);
            if hole > 0 {
                self.gap(hole as u32, counters, deliver);
            }
            self.drain(budget, deliver);
            let next = self.next.unwrap_or(seq);
            if seq_diff(seq, next) <= 0 {
                self.in_order(seq, data, data.len() as u32, deliver);
                self.drain(budget, deliver);
                return false;
            }
            if self.buffered + data.len() > max_flow_bytes || budget.used + data.len() > budget.max
            {
                // Still no room: this piece is lost too.
                let hole = seq_diff(seq, next) as u32;
                self.gap(hole, counters, deliver);
                self.in_order(seq, data, data.len() as u32, deliver);
                self.drain(budget, deliver);
                return false;
            }
            let pos = self
                .ooo
                .iter()
                .position(|s| seq_diff(s.seq, seq) > 0)
                .unwrap_or(self.ooo.len());
            return self.insert(pos, seq, data, max_flow_bytes, budget, counters, deliver);
        }
        let buf = budget.take(data);
        self.buffered += data.len();
        self.ooo.insert(pos, Segment { seq, data: buf });
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects everything a stream delivers: bytes, with `?` for each missing byte.
    struct Rx {
        out: Vec<u8>,
    }

    fn run(
        stream: &mut Stream,
        segs: &[(u32, &[u8])],
        limit: usize,
        budget: &mut ReassemblyBudget,
    ) -> Vec<u8> {
        let mut rx = Rx { out: Vec::new() };
        let mut c = Counters::default();
        let mut f = |ch: Chunk<'_>| match ch {
            Chunk::Data(d) => rx.out.extend_from_slice(d),
            Chunk::Gap(n) => rx.out.extend(std::iter::repeat_n(b'?', n as usize)),
        };
        for &(seq, d) in segs {
            stream.segment(seq, d, d.len() as u32, false, limit, budget, &mut c, &mut f);
        }
        stream.flush(budget, &mut c, &mut f);
        rx.out
    }

    #[test]
    fn in_order_and_reordered_give_the_same_stream() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut s = Stream::default();
        s.start_at(100);
        let out = run(
            &mut s,
            &[(100, b"abc"), (106, b"ghi"), (103, b"def")],
            1000,
            &mut b,
        );
        assert_eq!(out, b"abcdefghi");
        assert_eq!((s.delivered, s.gap_bytes), (9, 0));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn overlaps_and_duplicates_are_trimmed() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut s = Stream::default();
        s.start_at(0);
        let out = run(
            &mut s,
            &[
                (0, b"ab"),
                (0, b"ab"),
                (5, b"fgh"),
                (4, b"efgXY"),
                (1, b"bcd"),
            ],
            1000,
            &mut b,
        );
        // "X" loses to the "h" already held at the same position: the first copy wins.
        assert_eq!(out, b"abcdefghY");
        assert_eq!(s.delivered, 9);
    }

    #[test]
    fn wraps_around_sequence_space() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut s = Stream::default();
        s.start_at(u32::MAX - 1);
        let out = run(
            &mut s,
            &[(0, b"cd"), (u32::MAX - 1, b"ab"), (2, b"e")],
            1000,
            &mut b,
        );
        assert_eq!(out, b"abcde");
    }

    #[test]
    fn flow_limit_declares_gap() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut s = Stream::default();
        s.start_at(0);
        // Hole at 0..2, then 3 segments of 4 bytes with a limit of 8 buffered bytes.
        let out = run(
            &mut s,
            &[(2, b"cdef"), (6, b"ghij"), (10, b"klmn")],
            8,
            &mut b,
        );
        assert_eq!(out, b"??cdefghijklmn");
        assert_eq!((s.gap_bytes, s.gaps), (2, 1));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn worker_limit_declares_gap() {
        let mut b = ReassemblyBudget::new(4);
        let mut s = Stream::default();
        s.start_at(0);
        let out = run(&mut s, &[(1, b"bcde"), (5, b"f")], 1000, &mut b);
        assert_eq!(out, b"?bcdef");
    }

    #[test]
    fn ack_beyond_seen_data_is_a_gap() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut c = Counters::default();
        let mut s = Stream::default();
        let mut got = Vec::new();
        let mut f = |ch: Chunk<'_>| got.push(format!("{ch:?}"));
        s.segment(10, b"abc", 3, false, 100, &mut b, &mut c, &mut f);
        s.acked(13, &mut b, &mut c, &mut f); // everything seen: no gap
        s.acked(20, &mut b, &mut c, &mut f); // 7 bytes the capture never saw
        s.segment(20, b"x", 1, false, 100, &mut b, &mut c, &mut f);
        assert_eq!(got, ["Data([97, 98, 99])", "Gap(7)", "Data([120])"]);
        assert_eq!(c.get(Event::ReassemblyGap), 1);
    }

    #[test]
    fn snap_cut_tail_is_a_gap() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut c = Counters::default();
        let mut s = Stream::default();
        let mut got = Vec::new();
        let mut f = |ch: Chunk<'_>| got.push(format!("{ch:?}"));
        s.segment(0, b"ab", 5, false, 100, &mut b, &mut c, &mut f);
        s.segment(5, b"f", 1, false, 100, &mut b, &mut c, &mut f);
        assert_eq!(got, ["Data([97, 98])", "Gap(3)", "Data([102])"]);
    }

    #[test]
    fn fin_consumes_one_sequence_number() {
        let mut b = ReassemblyBudget::new(1 << 20);
        let mut c = Counters::default();
        let mut s = Stream::default();
        let mut gaps = 0;
        let mut f = |ch: Chunk<'_>| gaps += matches!(ch, Chunk::Gap(_)) as u32;
        s.segment(0, b"ab", 2, true, 100, &mut b, &mut c, &mut f);
        s.acked(3, &mut b, &mut c, &mut f);
        assert!(s.finished);
        assert_eq!(gaps, 0);
    }
}
