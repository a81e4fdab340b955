//! TCP analysis of one connection: handshake RTT split at the observation point,
//! retransmissions, out-of-order segments, resets, zero windows, and the two reassembled
//! byte streams.
//!
//! The handshake RTT is split the way a passive observer sees it: SYN → SYN-ACK is the
//! server side of the observation point (network to the server and the server's stack),
//! SYN-ACK → ACK the client side.

use super::reassembly::{Chunk, ReassemblyBudget, Stream, StreamLimits, seq_diff};
use crate::events::Counters;
use crate::packet::{TcpHeader, tcp_flags};
use crate::proto::Direction;
use crate::time::Timestamp;

/// Counters for one direction (segments sent by that side).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpDirStats {
    pub retransmits: u64,
    pub out_of_order: u64,
    pub resets: u64,
    /// Times the advertised window dropped to zero (transitions, not packets).
    pub zero_windows: u64,
    pub keepalives: u64,
}

#[derive(Default)]
struct DirState {
    /// One past the highest sequence number seen from this side.
    high: Option<u32>,
    /// When `high` last advanced with a jump ahead (a hole opened).
    hole_opened: Timestamp,
    window_zero: bool,
    syn: Option<(u32, Timestamp)>,
    fin: bool,
    /// The segment being timed for an RTT sample: its end sequence number and when it
    /// passed. One at a time, and never a retransmitted one (Karn's rule).
    timed: Option<(u32, Timestamp)>,
}

/// TCP state of one flow.
#[derive(Default)]
pub struct TcpConn {
    dirs: [DirState; 2],
    pub stats: [TcpDirStats; 2],
    pub streams: [Stream; 2],
    syn_ack_ts: Option<Timestamp>,
    /// Handshake RTT halves in nanoseconds, once the handshake was seen.
    pub server_rtt_ns: Option<u64>,
    pub client_rtt_ns: Option<u64>,
    /// Smoothed RTT of each side's data (RFC 6298 weights), by direction: from the
    /// observation point to the receiver and back with its ACK. Delayed ACKs are part of
    /// it, as for every passive measurement.
    pub srtt_ns: [Option<u64>; 2],
    /// The handshake was not seen: the connection was picked up midstream.
    pub midstream: bool,
    pub reset: bool,
}

/// Settings the analysis needs, copied out of the config once per worker.
#[derive(Clone, Copy, Debug)]
pub struct TcpLimits {
    /// Each direction's out-of-order buffer.
    pub stream: StreamLimits,
    pub out_of_order_threshold_ns: u64,
}

impl TcpConn {
    /// The first packet of the connection decides whether the handshake is seen.
    pub fn new(first: &TcpHeader) -> Self {
        TcpConn {
            midstream: !first.has(tcp_flags::SYN),
            ..Default::default()
        }
    }

    pub fn handshake_rtt_ns(&self) -> Option<u64> {
        Some(self.server_rtt_ns? + self.client_rtt_ns?)
    }

    /// Both sides sent FIN, or one sent RST.
    pub fn is_closed(&self) -> bool {
        self.reset || (self.dirs[0].fin && self.dirs[1].fin)
    }

    /// When the client's (first) SYN passed, if it was seen.
    pub fn client_syn_at(&self) -> Option<Timestamp> {
        self.dirs[Direction::ToServer.index()].syn.map(|(_, ts)| ts)
    }

    /// The server's SYN-ACK was seen.
    pub fn syn_acked(&self) -> bool {
        self.syn_ack_ts.is_some()
    }

    /// Sequence number of the client's SYN, when it was seen.
    pub fn client_isn(&self) -> Option<u32> {
        self.dirs[Direction::ToServer.index()]
            .syn
            .map(|(seq, _)| seq)
    }

    pub fn fin_seen(&self, dir: Direction) -> bool {
        self.dirs[dir.index()].fin
    }

    /// Analyse one segment from `dir` and feed its payload to that direction's stream.
    #[allow(clippy::too_many_arguments)]
    pub fn segment<F: FnMut(Direction, Chunk<'_>)>(
        &mut self,
        dir: Direction,
        h: &TcpHeader,
        payload: &[u8],
        payload_wire_len: u32,
        ts: Timestamp,
        limits: &TcpLimits,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        let d = dir.index();
        let syn = h.has(tcp_flags::SYN);
        let fin = h.has(tcp_flags::FIN);
        let rst = h.has(tcp_flags::RST);
        let ack = h.has(tcp_flags::ACK);

        if rst {
            self.stats[d].resets += 1;
            self.reset = true;
            return;
        }
        if syn {
            self.handshake(dir, h, ts);
        } else if dir == Direction::ToServer
            && ack
            && self.client_rtt_ns.is_none()
            && payload_wire_len == 0
        {
            // The client's ACK of the SYN-ACK completes the handshake.
            if let Some(sa) = self.syn_ack_ts {
                self.client_rtt_ns = Some(ts.since(sa));
            }
        }
        // Zero window: count transitions into it (pure window probes repeat it).
        let zero = h.window == 0 && !syn;
        if zero && !self.dirs[d].window_zero {
            self.stats[d].zero_windows += 1;
        }
        self.dirs[d].window_zero = zero;

        let data_seq = if syn { h.seq.wrapping_add(1) } else { h.seq };
        let (high_before, resent_before) = (self.dirs[d].high, self.stats[d].retransmits);
        self.classify(dir, data_seq, payload_wire_len, fin, ts, limits);
        if fin {
            self.dirs[d].fin = true;
        }
        if self.stats[d].retransmits != resent_before {
            // Karn: an ACK after a resend cannot tell which copy it answers.
            self.dirs[d].timed = None;
        } else if payload_wire_len > 0
            && self.dirs[d].timed.is_none()
            && high_before.is_some_and(|hb| seq_diff(data_seq, hb) >= 0)
        {
            self.dirs[d].timed = Some((data_seq.wrapping_add(payload_wire_len), ts));
        }

        // The other side's stream learns from this ACK which of its bytes were received.
        if ack {
            let o = dir.reverse();
            if let Some((end, sent)) = self.dirs[o.index()].timed
                && seq_diff(h.ack, end) >= 0
            {
                self.dirs[o.index()].timed = None;
                let r = ts.since(sent);
                let srtt = &mut self.srtt_ns[o.index()];
                *srtt = Some(srtt.map_or(r, |s| s - s / 8 + r / 8));
            }
            let mut f = |c: Chunk<'_>| deliver(o, c);
            self.streams[o.index()].acked(h.ack, budget, counters, &mut f);
        }
        if syn {
            self.streams[d].start_at(data_seq);
        }
        if payload_wire_len > 0 || fin {
            let mut f = |c: Chunk<'_>| deliver(dir, c);
            self.streams[d].segment(
                data_seq,
                payload,
                payload_wire_len,
                fin,
                limits.stream,
                budget,
                counters,
                &mut f,
            );
        }
    }

    fn handshake(&mut self, dir: Direction, h: &TcpHeader, ts: Timestamp) {
        let d = dir.index();
        if let Some((seq, _)) = self.dirs[d].syn {
            // A retransmitted SYN (or SYN-ACK): a resend like any other, and the one users
            // look for when connections take a second or three to open. It keeps the first
            // timestamp (the RTT of what got through).
            if seq == h.seq {
                self.stats[d].retransmits += 1;
            }
            return;
        }
        self.dirs[d].syn = Some((h.seq, ts));
        if h.has(tcp_flags::ACK) && dir == Direction::ToClient {
            self.syn_ack_ts = Some(ts);
            if let Some((_, syn_ts)) = self.dirs[Direction::ToServer.index()].syn {
                self.server_rtt_ns = Some(ts.since(syn_ts));
            }
        }
    }

    /// Retransmission, out-of-order or keep-alive, from sequence numbers alone.
    ///
    /// Inlined for the usual segment, the next in sequence or a bare ACK (what
    /// [`TcpConn::classify_all`] does with them, without its call).
    #[inline(always)]
    fn classify(
        &mut self,
        dir: Direction,
        seq: u32,
        len: u32,
        fin: bool,
        ts: Timestamp,
        limits: &TcpLimits,
    ) {
        let seg_len = len + fin as u32;
        let st = &mut self.dirs[dir.index()];
        if let Some(high) = st.high {
            if seg_len == 0 {
                return;
            }
            if seq == high {
                st.high = Some(seq.wrapping_add(seg_len));
                return;
            }
        }
        self.classify_all(dir, seq, len, fin, ts, limits);
    }

    #[inline(never)]
    fn classify_all(
        &mut self,
        dir: Direction,
        seq: u32,
        len: u32,
        fin: bool,
        ts: Timestamp,
        limits: &TcpLimits,
    ) {
        let d = dir.index();
        let seg_len = len + fin as u32;
        let st = &mut self.dirs[d];
        let Some(high) = st.high else {
            st.high = Some(seq.wrapping_add(seg_len));
            return;
        };
        if seg_len == 0 {
            return;
        }
        let end = seq.wrapping_add(seg_len);
        if seq_diff(seq, high) >= 0 {
            if seq_diff(seq, high) > 0 {
                st.hole_opened = ts;
            }
            st.high = Some(end);
            return;
        }
        // Starts below the highest byte seen.
        if len == 1 && seq_diff(high, seq) == 1 && !fin {
            // One byte just below the window edge: a keep-alive probe, not a retransmission.
            self.stats[d].keepalives += 1;
            return;
        }
        if seq_diff(end, high) > 0 {
            st.high = Some(end);
        }
        // Fills a hole that opened a moment ago: reordering on the path, not a resend.
        let threshold = self
            .server_rtt_ns
            .map_or(limits.out_of_order_threshold_ns, |rtt| {
                rtt.max(limits.out_of_order_threshold_ns)
            });
        let fresh = self.streams[d].is_new(seq, len);
        if fresh && ts.since(self.dirs[d].hole_opened) < threshold {
            self.stats[d].out_of_order += 1;
        } else {
            self.stats[d].retransmits += 1;
        }
    }

    /// Deliver what is still buffered (connection over) and free the buffers.
    pub fn flush<F: FnMut(Direction, Chunk<'_>)>(
        &mut self,
        budget: &mut ReassemblyBudget,
        counters: &mut Counters,
        deliver: &mut F,
    ) {
        for dir in [Direction::ToServer, Direction::ToClient] {
            let mut f = |c: Chunk<'_>| deliver(dir, c);
            self.streams[dir.index()].flush(budget, counters, &mut f);
            self.streams[dir.index()].release(budget);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::tcp_flags::*;

    struct Harness {
        conn: TcpConn,
        budget: ReassemblyBudget,
        counters: Counters,
        data: [Vec<u8>; 2],
    }

    impl Harness {
        fn new(first_flags: u8) -> Self {
            let h = TcpHeader {
                flags: first_flags,
                ..Default::default()
            };
            Harness {
                conn: TcpConn::new(&h),
                budget: ReassemblyBudget::new(1 << 20, 1 << 16),
                counters: Counters::default(),
                data: [Vec::new(), Vec::new()],
            }
        }

        fn seg(
            &mut self,
            dir: Direction,
            flags: u8,
            seq: u32,
            ack: u32,
            payload: &[u8],
            ts_us: u64,
        ) {
            let h = TcpHeader {
                src_port: 1,
                dst_port: 2,
                seq,
                ack,
                flags,
                window: 1000,
            };
            let limits = TcpLimits {
                stream: StreamLimits {
                    max_bytes: 1 << 16,
                    max_segments: 1024,
                },
                out_of_order_threshold_ns: 3_000_000,
            };
            let data = &mut self.data;
            let mut f = |d: Direction, c: Chunk<'_>| match c {
                Chunk::Data(b) => data[d.index()].extend_from_slice(b),
                Chunk::Gap(n) => data[d.index()].extend(std::iter::repeat_n(b'?', n as usize)),
            };
            self.conn.segment(
                dir,
                &h,
                payload,
                payload.len() as u32,
                Timestamp(ts_us * 1000),
                &limits,
                &mut self.budget,
                &mut self.counters,
                &mut f,
            );
        }
    }

    use Direction::{ToClient as C, ToServer as S};

    #[test]
    fn data_rtt_is_smoothed_per_direction_and_skips_retransmissions() {
        let mut h = Harness::new(SYN);
        h.seg(S, SYN, 100, 0, b"", 0);
        h.seg(C, SYN | ACK, 500, 101, b"", 100);
        h.seg(S, ACK, 101, 501, b"", 200);
        // Client data acknowledged 400 us later: the first sample is the SRTT.
        h.seg(S, ACK | PSH, 101, 501, b"aaaa", 1000);
        h.seg(C, ACK, 501, 105, b"", 1400);
        assert_eq!(h.conn.srtt_ns, [Some(400_000), None]);
        // A second sample of 1200 us: 7/8 of 400 + 1/8 of 1200 = 500 us.
        h.seg(S, ACK | PSH, 105, 501, b"bbbb", 2000);
        h.seg(C, ACK, 501, 109, b"", 3200);
        assert_eq!(h.conn.srtt_ns[0], Some(500_000));
        // Sent, resent, then acknowledged: no sample (which copy was answered?).
        h.seg(S, ACK | PSH, 109, 501, b"cccc", 4000);
        h.seg(S, ACK | PSH, 109, 501, b"cccc", 9000);
        h.seg(C, ACK, 501, 113, b"", 9100);
        assert_eq!(h.conn.srtt_ns[0], Some(500_000));
        assert_eq!(h.conn.stats[0].retransmits, 1);
        // The server's data is timed apart, against the client's ACKs.
        h.seg(C, ACK | PSH, 501, 113, b"reply", 9200);
        h.seg(S, ACK, 113, 506, b"", 9250);
        assert_eq!(h.conn.srtt_ns, [Some(500_000), Some(50_000)]);
    }

    #[test]
    fn retransmitted_syn_and_syn_ack_are_retransmissions() {
        let mut h = Harness::new(SYN);
        h.seg(S, SYN, 100, 0, b"", 0);
        h.seg(S, SYN, 100, 0, b"", 1_000_000);
        h.seg(C, SYN | ACK, 500, 101, b"", 1_000_100);
        h.seg(C, SYN | ACK, 500, 101, b"", 2_000_100);
        h.seg(S, ACK, 101, 501, b"", 2_000_200);
        h.seg(S, ACK | PSH, 101, 501, b"aaaa", 2_000_300);
        assert_eq!(h.conn.stats[0].retransmits, 1);
        assert_eq!(h.conn.stats[1].retransmits, 1);
        assert_eq!(h.conn.stats[0].out_of_order, 0);
    }

    #[test]
    fn handshake_rtt_is_split() {
        let mut h = Harness::new(SYN);
        h.seg(S, SYN, 100, 0, b"", 0);
        h.seg(C, SYN | ACK, 500, 101, b"", 300);
        h.seg(S, ACK, 101, 501, b"", 1000);
        h.seg(S, ACK | PSH, 101, 501, b"hello", 1100);
        h.seg(C, ACK | PSH, 501, 106, b"world", 1500);
        assert_eq!(h.conn.server_rtt_ns, Some(300_000));
        assert_eq!(h.conn.client_rtt_ns, Some(700_000));
        assert!(!h.conn.midstream);
        assert_eq!(h.data, [b"hello".to_vec(), b"world".to_vec()]);
        assert_eq!(h.conn.stats, [TcpDirStats::default(); 2]);
    }

    #[test]
    fn retransmission_and_out_of_order() {
        let mut h = Harness::new(ACK);
        h.seg(S, ACK, 0, 0, b"aaaa", 0);
        h.seg(S, ACK, 0, 0, b"aaaa", 300_000); // same bytes 300 ms later: retransmission
        h.seg(S, ACK, 8, 0, b"cccc", 300_100); // hole at 4..8
        h.seg(S, ACK, 4, 0, b"bbbb", 300_200); // fills it 100 us later: out of order
        h.seg(S, ACK, 16, 0, b"eeee", 300_300); // hole at 12..16
        h.seg(S, ACK, 12, 0, b"dddd", 500_000); // fills it 200 ms later: retransmission
        assert!(h.conn.midstream);
        assert_eq!(h.conn.stats[0].retransmits, 2);
        assert_eq!(h.conn.stats[0].out_of_order, 1);
        assert_eq!(h.data[0], b"aaaabbbbccccddddeeee");
    }

    #[test]
    fn resets_zero_windows_and_fin() {
        let mut h = Harness::new(ACK);
        let zero = |h: &mut Harness, w: u16| {
            let hd = TcpHeader {
                flags: ACK,
                window: w,
                ..Default::default()
            };
            let limits = TcpLimits {
                stream: StreamLimits {
                    max_bytes: 100,
                    max_segments: 1024,
                },
                out_of_order_threshold_ns: 1,
            };
            h.conn.segment(
                C,
                &hd,
                b"",
                0,
                Timestamp(1),
                &limits,
                &mut h.budget,
                &mut h.counters,
                &mut |_, _| {},
            );
        };
        zero(&mut h, 0);
        zero(&mut h, 0);
        zero(&mut h, 10);
        zero(&mut h, 0);
        assert_eq!(h.conn.stats[1].zero_windows, 2);
        h.seg(S, FIN | ACK, 0, 0, b"", 5);
        h.seg(C, FIN | ACK, 0, 1, b"", 6);
        assert!(h.conn.is_closed());
        h.seg(C, RST, 1, 0, b"", 7);
        assert_eq!(h.conn.stats[1].resets, 1);
    }

    #[test]
    fn keepalive_is_not_a_retransmission() {
        let mut h = Harness::new(ACK);
        h.seg(S, ACK, 0, 0, b"abcd", 0);
        h.seg(S, ACK, 3, 0, b"d", 10_000_000);
        assert_eq!(h.conn.stats[0].keepalives, 1);
        assert_eq!(h.conn.stats[0].retransmits, 0);
    }
}
