//! In-order TCP byte streams per direction, with bounded out-of-order buffering.
//!
//! In-order data is handed to the consumer straight from the packet (zero copy). Data
//! ahead of a hole is copied into buffers taken from a per-worker pool and released when
//! the hole fills. A gap is declared, and reported to the consumer with its size, when:
//! the buffered bytes exceed the per-flow or per-worker limit, the receiver acknowledges
//! bytes podtap never saw (they were lost before the capture point), the capture cut the
//! payload (snap length), or the flow closes with holes still open. Overlaps are trimmed:
//! the first copy of a byte wins.
//!
//! Nothing here is worse than linear in what a sender sends: held segments sit in a sorted
//! deque (found by binary search, drained from the front), a segment that continues the
//! one before it is appended to it rather than held on its own (a sender dripping one byte
//! per segment behind a hole holds one growing buffer, not a million), and both the bytes
//! (counted with what each held segment costs besides its payload) and the number of held
//! segments are bounded per flow and per worker.

use std::collections::VecDeque;

use crate::events::{Counters, Event};

/// Memory one held segment costs besides its buffer's capacity: its entry in the deque
/// and the allocator's header of its buffer. The limits count the real memory (capacity
/// plus this), so a flood of tiny segments cannot hold more than the limits say.
pub const SEGMENT_OVERHEAD: usize = std::mem::size_of::<Segment>() + 16;

/// Buffers kept for reuse are at most this large: a reused buffer holding a small segment
/// wastes at most this much (it is charged in full), and the pool stays small.
const POOL_BUFFER_MAX: usize = 4096;

/// What a held buffer costs.
fn cost_of(v: &[u8], capacity: usize) -> usize {
    capacity.max(v.len()) + SEGMENT_OVERHEAD
}

/// Bounds of one stream's out-of-order buffer.
#[derive(Clone, Copy, Debug)]
pub struct StreamLimits {
    /// Bytes held (buffer capacity plus [`SEGMENT_OVERHEAD`] per segment).
    pub max_bytes: usize,
    /// Segments held.
    pub max_segments: usize,
}

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
    /// Bytes held, overhead included.
    used: usize,
    max: usize,
    segments: usize,
    max_segments: usize,
    pool: Vec<Vec<u8>>,
}

impl ReassemblyBudget {
    pub fn new(max_worker_bytes: usize, max_worker_segments: usize) -> Self {
        ReassemblyBudget {
            used: 0,
            max: max_worker_bytes,
            segments: 0,
            max_segments: max_worker_segments,
            pool: Vec::new(),
        }
    }

    /// Bytes currently held by all streams of the worker, overhead included.
    pub fn used(&self) -> usize {
        self.used
    }

    /// Segments currently held by all streams of the worker.
    pub fn segments(&self) -> usize {
        self.segments
    }

    fn has_room(&self, cost: usize, new_segment: bool) -> bool {
        self.used + cost <= self.max && (!new_segment || self.segments < self.max_segments)
    }

    /// A buffer holding `data`, and what it costs (charged here).
    fn take(&mut self, data: &[u8]) -> (Vec<u8>, usize) {
        let mut v = self.pool.pop().unwrap_or_default();
        v.clear();
        v.extend_from_slice(data);
        let cost = cost_of(&v, v.capacity());
        self.used += cost;
        self.segments += 1;
        (v, cost)
    }

    fn give(&mut self, v: Vec<u8>) {
        self.used -= cost_of(&v, v.capacity());
        self.segments -= 1;
        // Keep the pool bounded too: large buffers are not worth keeping.
        if self.pool.len() < 4096 && v.capacity() <= POOL_BUFFER_MAX {
            self.pool.push(v);
        }
    }
}

struct Segment {
    seq: u32,
    data: Vec<u8>,
}

impl Segment {
    fn end(&self) -> u32 {
        self.seq.wrapping_add(self.data.len() as u32)
    }
}

/// One direction of a TCP connection.
#[derive(Default)]
pub struct Stream {
    /// Sequence number of the next byte to deliver; `None` until the first segment.
    next: Option<u32>,
    /// Out-of-order segments, sorted by sequence number, non-overlapping.
    ooo: VecDeque<Segment>,
    /// Bytes held in `ooo`, overhead included.
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
        // Entirely inside a buffered segment? Only the first one ending after `seq` can
        // hold it (they are sorted and do not overlap).
        let i = self.first_ending_after(seq);
        !self
            .ooo
            .get(i)
            .is_some_and(|s| seq_diff(seq, s.seq) >= 0 && seq_diff(end, s.end()) <= 0)
    }

    /// Index of the first held segment that ends after `seq` (binary search).
    fn first_ending_after(&self, seq: u32) -> usize {
        self.ooo.partition_point(|s| seq_diff(s.end(), seq) <= 0)
    }

    /// Index of the first held segment that starts after `seq` (binary search).
    fn first_starting_after(&self, seq: u32) -> usize {
        self.ooo.partition_point(|s| seq_diff(s.seq, seq) <= 0)
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
        limits: StreamLimits,
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
            self.buffer(seq, data, limits, budget, counters, deliver);
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
        let limit = match self.ooo.front() {
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
        while let Some(first) = self.ooo.front() {
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
        while let Some(s) = self.ooo.pop_front() {
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
    /// Inlined: nearly every segment comes here, and the call was a layer of the packet
    /// path's cost of its own (measured with cachegrind).
    #[inline(always)]
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
        while let Some(first) = self.ooo.front() {
            let next = self.next.unwrap_or(first.seq);
            if seq_diff(first.seq, next) > 0 {
                break;
            }
            let Some(s) = self.ooo.pop_front() else { break };
            self.buffered -= cost_of(&s.data, s.data.capacity());
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
        limits: StreamLimits,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        // Trim against buffered segments: keep only bytes not held yet (first copy wins).
        // Segments ending before `seq` cannot overlap: start after them.
        let mut start = seq;
        let mut rest = data;
        let mut i = self.first_ending_after(seq);
        while i < self.ooo.len() && !rest.is_empty() {
            let s_start = self.ooo[i].seq;
            let s_end = self.ooo[i].end();
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
                if !self.insert(i, start, &rest[..head], limits, budget, counters, deliver) {
                    // The limits forced a gap and delivered what became contiguous: the
                    // rest of this segment is offered afresh against the new state.
                    let tail = start.wrapping_add(head as u32);
                    self.offer(tail, &rest[head..], limits, budget, counters, deliver);
                    return;
                }
                // The piece was appended to segment i-1 or held as a segment before
                // segment i: find segment i again.
                i = self.first_ending_after(s_start);
            }
            // Skip the overlap with segment i.
            let overlap_end = seq_diff(s_end, start).max(0) as usize;
            let skip = overlap_end.min(rest.len());
            start = start.wrapping_add(skip as u32);
            rest = &rest[skip..];
            i += 1;
        }
        if !rest.is_empty() {
            let pos = self.first_starting_after(start);
            self.insert(pos, start, rest, limits, budget, counters, deliver);
        }
    }

    /// Bytes at `seq` after the stream's state changed under them: delivered if they are
    /// now in order (trimmed of what was delivered), else held.
    #[allow(clippy::too_many_arguments)]
    fn offer<F: FnMut(Chunk<'_>)>(
        &mut self,
        seq: u32,
        data: &[u8],
        limits: StreamLimits,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        if data.is_empty() {
            return;
        }
        let next = self.next.unwrap_or(seq);
        if seq_diff(seq, next) <= 0 {
            self.in_order(seq, data, data.len() as u32, deliver);
            self.drain(budget, deliver);
        } else {
            self.buffer(seq, data, limits, budget, counters, deliver);
        }
    }

    /// Whether the flow's bounds leave room for `cost` more bytes (and a new segment).
    fn has_room(&self, cost: usize, new_segment: bool, limits: StreamLimits) -> bool {
        self.buffered + cost <= limits.max_bytes
            && (!new_segment || self.ooo.len() < limits.max_segments)
    }

    /// Insert one non-overlapping piece at `pos` (appended to the segment before when it
    /// continues it), or declare a gap when over the limits.
    #[allow(clippy::too_many_arguments)]
    fn insert<F: FnMut(Chunk<'_>)>(
        &mut self,
        pos: usize,
        seq: u32,
        data: &[u8],
        limits: StreamLimits,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) -> bool {
        // A piece that continues the segment before it grows that segment: no new entry,
        // no new overhead. A sender dripping bytes behind a hole holds one buffer.
        let append = pos > 0 && self.ooo[pos - 1].end() == seq;
        // What holding the piece costs: a new segment's buffer, or what the segment's
        // buffer grows by (doubling, so that dripped bytes are copied O(1) times each).
        let grow_to = if append {
            let held = &self.ooo[pos - 1].data;
            let need = held.len() + data.len();
            (need > held.capacity()).then(|| need.max(held.capacity() * 2))
        } else {
            None
        };
        let cost = match (append, grow_to) {
            (true, Some(cap)) => cap - self.ooo[pos - 1].data.capacity(),
            (true, None) => 0,
            (false, _) => data.len() + SEGMENT_OVERHEAD,
        };
        let over_flow = !self.has_room(cost, !append, limits);
        let over_worker = !budget.has_room(cost, !append);
        if over_flow || over_worker {
            counters.bump(if over_flow {
                Event::ReassemblyFlowLimit
            } else {
                Event::ReassemblyWorkerLimit
            });
            // Give up on the oldest hole: skip to the first buffered byte (or to this
            // segment), deliver what becomes contiguous, then retry this piece.
            let next = self.next.unwrap_or(seq);
            let target = self.ooo.front().map_or(seq, |s| s.seq);
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
            let cost = data.len() + SEGMENT_OVERHEAD;
            if !self.has_room(cost, true, limits) || !budget.has_room(cost, true) {
                // Still no room: this piece is lost too.
                let hole = seq_diff(seq, next) as u32;
                self.gap(hole, counters, deliver);
                self.in_order(seq, data, data.len() as u32, deliver);
                self.drain(budget, deliver);
                return false;
            }
            let pos = self.first_starting_after(seq);
            return self.insert(pos, seq, data, limits, budget, counters, deliver);
        }
        if append {
            // Charge what the buffer really grew by (its capacity may double).
            let held = &mut self.ooo[pos - 1].data;
            let before = held.capacity();
            if let Some(cap) = grow_to {
                held.reserve_exact(cap - held.len());
            }
            held.extend_from_slice(data);
            let grown = held.capacity() - before;
            budget.used += grown;
            self.buffered += grown;
        } else {
            let (buf, cost) = budget.take(data);
            self.buffered += cost;
            self.ooo.insert(pos, Segment { seq, data: buf });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: StreamLimits = StreamLimits {
        max_bytes: 1 << 16,
        max_segments: 1024,
    };

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
        // `limit` payload bytes in one held segment.
        let limits = StreamLimits {
            max_bytes: limit + SEGMENT_OVERHEAD,
            max_segments: 1024,
        };
        for &(seq, d) in segs {
            stream.segment(
                seq,
                d,
                d.len() as u32,
                false,
                limits,
                budget,
                &mut c,
                &mut f,
            );
        }
        stream.flush(budget, &mut c, &mut f);
        rx.out
    }

    #[test]
    fn in_order_and_reordered_give_the_same_stream() {
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
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
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
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
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
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
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
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
        let mut b = ReassemblyBudget::new(4, 1 << 16);
        let mut s = Stream::default();
        s.start_at(0);
        let out = run(&mut s, &[(1, b"bcde"), (5, b"f")], 1000, &mut b);
        assert_eq!(out, b"?bcdef");
    }

    #[test]
    fn ack_beyond_seen_data_is_a_gap() {
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
        let mut c = Counters::default();
        let mut s = Stream::default();
        let mut got = Vec::new();
        let mut f = |ch: Chunk<'_>| got.push(format!("{ch:?}"));
        s.segment(10, b"abc", 3, false, LIM, &mut b, &mut c, &mut f);
        s.acked(13, &mut b, &mut c, &mut f); // everything seen: no gap
        s.acked(20, &mut b, &mut c, &mut f); // 7 bytes the capture never saw
        s.segment(20, b"x", 1, false, LIM, &mut b, &mut c, &mut f);
        assert_eq!(got, ["Data([97, 98, 99])", "Gap(7)", "Data([120])"]);
        assert_eq!(c.get(Event::ReassemblyGap), 1);
    }

    #[test]
    fn snap_cut_tail_is_a_gap() {
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
        let mut c = Counters::default();
        let mut s = Stream::default();
        let mut got = Vec::new();
        let mut f = |ch: Chunk<'_>| got.push(format!("{ch:?}"));
        s.segment(0, b"ab", 5, false, LIM, &mut b, &mut c, &mut f);
        s.segment(5, b"f", 1, false, LIM, &mut b, &mut c, &mut f);
        assert_eq!(got, ["Data([97, 98])", "Gap(3)", "Data([102])"]);
    }

    #[test]
    fn fin_consumes_one_sequence_number() {
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
        let mut c = Counters::default();
        let mut s = Stream::default();
        let mut gaps = 0;
        let mut f = |ch: Chunk<'_>| gaps += matches!(ch, Chunk::Gap(_)) as u32;
        s.segment(0, b"ab", 2, true, LIM, &mut b, &mut c, &mut f);
        s.acked(3, &mut b, &mut c, &mut f);
        assert!(s.finished);
        assert_eq!(gaps, 0);
    }

    /// Any segmentation, duplication and reordering of a stream gives back the stream:
    /// whole with room to hold it, or with its lost bytes reported as gaps of the right
    /// size (`?`) when the limits are tight. The memory held returns to zero.
    #[test]
    fn any_segmentation_and_order_gives_the_stream_or_its_gaps() {
        for seed in 1..200u64 {
            let mut r = crate::test_rng::rng(seed);
            let len = 1 + r(3000) as usize;
            let data: Vec<u8> = (0..len).map(|_| b'a' + r(26) as u8).collect();
            // Random pieces covering the stream, some repeated, some overlapping.
            let mut pieces = Vec::new();
            let mut at = 0;
            while at < len {
                let n = (1 + r(200) as usize).min(len - at);
                pieces.push((at, n));
                if r(5) == 0 {
                    let back = r(at as u64 + 1) as usize;
                    pieces.push((back, (n + r(50) as usize).min(len - back)));
                }
                at += n;
            }
            // Shuffle within a window (a network reorders locally), sometimes fully.
            let window = if r(4) == 0 {
                pieces.len()
            } else {
                1 + r(8) as usize
            };
            for i in 0..pieces.len() {
                let j = (i + r(window as u64) as usize).min(pieces.len() - 1);
                pieces.swap(i, j);
            }
            let isn = r(u32::MAX as u64) as u32;
            let segs: Vec<(u32, &[u8])> = pieces
                .iter()
                .map(|&(o, n)| (isn.wrapping_add(o as u32), &data[o..o + n]))
                .collect();
            for (limit, worker) in [(1 << 20, 1 << 20), (300, 1 << 20), (1 << 20, 200)] {
                let mut b = ReassemblyBudget::new(worker, 1 << 16);
                let mut s = Stream::default();
                s.start_at(isn);
                let out = run(&mut s, &segs, limit, &mut b);
                assert_eq!(out.len(), len, "seed {seed} limit {limit}/{worker}");
                if limit == 1 << 20 && worker == 1 << 20 {
                    assert_eq!(out, data, "seed {seed}");
                }
                for (i, (&o, &d)) in out.iter().zip(&data).enumerate() {
                    assert!(o == d || o == b'?', "seed {seed} byte {i}: {o} for {d}");
                }
                assert_eq!(
                    s.gap_bytes as usize,
                    out.iter().filter(|&&o| o == b'?').count()
                );
                assert_eq!((b.used(), b.segments()), (0, 0), "seed {seed}");
            }
        }
    }

    #[test]
    fn dripped_bytes_are_held_in_one_buffer_and_counted_in_memory() {
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
        let mut c = Counters::default();
        let mut s = Stream::default();
        s.start_at(0);
        let mut out = Vec::new();
        let mut f = |ch: Chunk<'_>| {
            if let Chunk::Data(d) = ch {
                out.extend_from_slice(d)
            }
        };
        for i in 1..10_000u32 {
            s.segment(i, b"z", 1, false, LIM, &mut b, &mut c, &mut f);
        }
        // One segment, charged its buffer's capacity (doubling: under 2x the bytes).
        assert_eq!(b.segments(), 1);
        assert!(b.used() >= 9_999 + SEGMENT_OVERHEAD && b.used() < 2 * 10_000 + SEGMENT_OVERHEAD);
        assert_eq!(s.buffered(), b.used());
        s.segment(0, b"z", 1, false, LIM, &mut b, &mut c, &mut f);
        assert_eq!(out.len(), 10_000);
        assert_eq!((b.used(), b.segments()), (0, 0));
    }

    #[test]
    fn separate_holes_are_bounded_by_the_segment_limits() {
        let flow = StreamLimits {
            max_bytes: 1 << 20,
            max_segments: 10,
        };
        let mut b = ReassemblyBudget::new(1 << 20, 1 << 16);
        let mut c = Counters::default();
        let mut s = Stream::default();
        s.start_at(0);
        let mut f = |_: Chunk<'_>| {};
        // Every other byte: each one a segment of its own.
        for i in 0..100u32 {
            s.segment(2 * i + 1, b"z", 1, false, flow, &mut b, &mut c, &mut f);
            assert!(b.segments() <= 10);
        }
        assert!(c.get(Event::ReassemblyFlowLimit) >= 90);
        // The worker's limit, with two streams.
        let mut b = ReassemblyBudget::new(1 << 20, 15);
        let (mut s1, mut s2) = (Stream::default(), Stream::default());
        s1.start_at(0);
        s2.start_at(0);
        for i in 0..100u32 {
            s1.segment(2 * i + 1, b"z", 1, false, flow, &mut b, &mut c, &mut f);
            s2.segment(2 * i + 1, b"z", 1, false, flow, &mut b, &mut c, &mut f);
            assert!(b.segments() <= 15);
        }
        assert!(c.get(Event::ReassemblyWorkerLimit) > 0);
        s1.release(&mut b);
        s2.release(&mut b);
        assert_eq!((b.used(), b.segments()), (0, 0));
    }

    proptest::proptest! {
        /// Any segmentation, duplication, overlap and reordering of a stream, under any
        /// flow and worker limits: the bytes delivered are the stream's, each lost byte
        /// reported in a gap of the right size, and the memory held returns to zero.
        #[test]
        fn any_segmentation_yields_the_stream_or_its_gaps(
            data in proptest::collection::vec(b'a'..=b'z', 1..1500),
            cuts in proptest::collection::vec(1usize..300, 1..40),
            dups in proptest::collection::vec((0usize..1500, 1usize..200), 0..8),
            order in proptest::collection::vec(0usize..64, 0..64),
            isn in 0u32..,
            limit in 1usize..4096,
            worker in 1usize..8192,
        ) {
            // Pieces covering the stream, then duplicates and overlaps anywhere.
            let len = data.len();
            let mut pieces = Vec::new();
            let (mut at, mut c) = (0, 0);
            while at < len {
                let n = cuts[c % cuts.len()].min(len - at);
                pieces.push((at, n));
                at += n;
                c += 1;
            }
            for &(o, n) in &dups {
                let o = o % len;
                pieces.push((o, n.min(len - o)));
            }
            // Reorder: each step swaps a piece with one a little ahead.
            for (i, &j) in order.iter().enumerate() {
                let (i, j) = (i % pieces.len(), (i + j) % pieces.len());
                pieces.swap(i, j);
            }
            let segs: Vec<(u32, &[u8])> = pieces
                .iter()
                .map(|&(o, n)| (isn.wrapping_add(o as u32), &data[o..o + n]))
                .collect();
            let mut b = ReassemblyBudget::new(worker, 1 << 16);
            let mut s = Stream::default();
            s.start_at(isn);
            let out = run(&mut s, &segs, limit, &mut b);
            proptest::prop_assert_eq!(out.len(), len);
            for (&o, &d) in out.iter().zip(&data) {
                proptest::prop_assert!(o == d || o == b'?');
            }
            let lost = out.iter().filter(|&&o| o == b'?').count();
            proptest::prop_assert_eq!(s.gap_bytes as usize, lost);
            proptest::prop_assert_eq!((b.used(), b.segments()), (0, 0));
        }
    }
}
