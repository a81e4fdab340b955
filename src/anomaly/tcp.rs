//! The flow kinds, found while the worker analyses a TCP connection: a few words of state
//! per flow, updated after each segment ([`TcpWatch::segment`]) and on the worker's tick
//! ([`TcpWatch::tick`], for what is found by time passing with no packet: a SYN nobody
//! answers). No allocation; a finding is reported once (per stall, per burst).

use super::{Evidence, FlowThresholds, Kind, evidence};
use crate::flow::TcpConn;
use crate::packet::{TcpHeader, tcp_flags};
use crate::proto::Direction;
use crate::time::Timestamp;

const REFUSED: u8 = 1;
const UNANSWERED: u8 = 2;
const SYN_RESENT: u8 = 4;

/// What the watch found: the kind, the side it is about, and the evidence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub side: Option<Direction>,
    pub evidence: Evidence,
}

/// Anomaly state of one TCP flow.
#[derive(Clone, Copy, Debug, Default)]
pub struct TcpWatch {
    /// Once-per-flow kinds already reported.
    done: u8,
    /// Since when each side has advertised a zero window (`ZERO`: it does not).
    zero_since: [Timestamp; 2],
    zero_reported: [bool; 2],
    /// The retransmission window: its start, retransmissions in it, and whether the burst
    /// it belongs to was reported.
    window_start: Timestamp,
    window_retx: u32,
    in_burst: bool,
    /// Retransmissions (both sides) already counted into windows.
    retx_seen: u64,
}

fn ms(ns: u64) -> u64 {
    ns / 1_000_000
}

impl TcpWatch {
    /// After `conn` analysed segment `h` from `dir` at `ts`.
    #[inline]
    pub fn segment(
        &mut self,
        conn: &TcpConn,
        dir: Direction,
        h: &TcpHeader,
        ts: Timestamp,
        t: &FlowThresholds,
    ) -> Option<Finding> {
        let syn_at = conn.client_syn_at();
        if h.has(tcp_flags::RST) {
            // A reset from the server before any SYN-ACK answers the SYN: refused.
            if dir == Direction::ToClient
                && !conn.syn_acked()
                && self.done & (REFUSED | UNANSWERED) == 0
                && let Some(at) = syn_at
            {
                self.done |= REFUSED;
                return Some(Finding {
                    kind: Kind::ConnectionRefused,
                    side: Some(Direction::ToClient),
                    evidence: evidence(&[
                        ("syn_retransmits", conn.stats[0].retransmits),
                        ("waited_ms", ms(ts.since(at))),
                    ]),
                });
            }
            return None;
        }
        if h.has(tcp_flags::SYN) {
            if dir == Direction::ToClient
                && h.has(tcp_flags::ACK)
                && self.done & SYN_RESENT == 0
                && conn.stats[0].retransmits > 0
                && let Some(at) = syn_at
            {
                // Before the handshake completes the client's only retransmissions are SYNs.
                self.done |= SYN_RESENT;
                return Some(Finding {
                    kind: Kind::SynRetransmitted,
                    side: Some(Direction::ToServer),
                    evidence: evidence(&[
                        ("syn_retransmits", conn.stats[0].retransmits),
                        ("open_ms", ms(ts.since(at))),
                    ]),
                });
            }
            if dir == Direction::ToServer {
                return self.unanswered(conn, ts, t);
            }
            return None;
        }
        if let Some(f) = self.zero_window(dir, h.window == 0, ts, t) {
            return Some(f);
        }
        self.retransmissions(conn, ts, t)
    }

    /// Time passed with no segment: a SYN still unanswered, a window still zero.
    pub fn tick(&mut self, conn: &TcpConn, now: Timestamp, t: &FlowThresholds) -> Option<Finding> {
        if conn.reset {
            return None;
        }
        if let Some(f) = self.unanswered(conn, now, t) {
            return Some(f);
        }
        for dir in [Direction::ToServer, Direction::ToClient] {
            let d = dir.index();
            if self.zero_since[d] != Timestamp::ZERO
                && let Some(f) = self.zero_window(dir, true, now, t)
            {
                return Some(f);
            }
        }
        None
    }

    fn unanswered(
        &mut self,
        conn: &TcpConn,
        now: Timestamp,
        t: &FlowThresholds,
    ) -> Option<Finding> {
        let at = conn.client_syn_at()?;
        if conn.syn_acked()
            || self.done & (REFUSED | UNANSWERED) != 0
            || now.since(at) < t.syn_timeout_ns
        {
            return None;
        }
        self.done |= UNANSWERED;
        Some(Finding {
            kind: Kind::SynUnanswered,
            side: Some(Direction::ToServer),
            evidence: evidence(&[
                ("syn_retransmits", conn.stats[0].retransmits),
                ("waited_ms", ms(now.since(at))),
            ]),
        })
    }

    /// `dir` advertises a zero window (`zero`) or not, at `ts`.
    fn zero_window(
        &mut self,
        dir: Direction,
        zero: bool,
        ts: Timestamp,
        t: &FlowThresholds,
    ) -> Option<Finding> {
        let d = dir.index();
        if !zero {
            self.zero_since[d] = Timestamp::ZERO;
            return None;
        }
        if self.zero_since[d] == Timestamp::ZERO {
            // Packet time is never zero on a real capture; a zero timestamp only delays.
            self.zero_since[d] = ts;
            self.zero_reported[d] = false;
            return None;
        }
        let held = ts.since(self.zero_since[d]);
        if self.zero_reported[d] || held < t.zero_window_stall_ns {
            return None;
        }
        self.zero_reported[d] = true;
        Some(Finding {
            kind: Kind::ZeroWindowStall,
            // The side advertising the zero window: the receiver that stopped reading.
            side: Some(dir),
            evidence: evidence(&[("stalled_ms", ms(held))]),
        })
    }

    fn retransmissions(
        &mut self,
        conn: &TcpConn,
        ts: Timestamp,
        t: &FlowThresholds,
    ) -> Option<Finding> {
        let total = conn.stats[0].retransmits + conn.stats[1].retransmits;
        let delta = total - self.retx_seen;
        if delta == 0 {
            return None;
        }
        self.retx_seen = total;
        // SYN retransmissions are the SYN kinds' evidence, not a burst.
        if !conn.syn_acked() && !conn.midstream {
            return None;
        }
        let since = ts.since(self.window_start);
        if since >= t.retransmit_window_ns {
            // A burst ends with a window below the threshold, or a quiet window.
            if self.window_retx < t.retransmit_burst || since >= 2 * t.retransmit_window_ns {
                self.in_burst = false;
            }
            self.window_start = ts;
            self.window_retx = 0;
        }
        self.window_retx = self.window_retx.saturating_add(delta as u32);
        if self.in_burst || self.window_retx < t.retransmit_burst {
            return None;
        }
        self.in_burst = true;
        let sender = if conn.stats[1].retransmits > conn.stats[0].retransmits {
            Direction::ToClient
        } else {
            Direction::ToServer
        };
        Some(Finding {
            kind: Kind::RetransmitBurst,
            side: Some(sender),
            evidence: evidence(&[
                ("retransmits", self.window_retx as u64),
                ("window_ms", ms(ts.since(self.window_start))),
                ("flow_retransmits", total),
            ]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Counters;
    use crate::flow::reassembly::{ReassemblyBudget, StreamLimits};
    use crate::flow::tcp::TcpLimits;
    use crate::packet::tcp_flags::*;

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;

    struct H {
        conn: Option<TcpConn>,
        watch: TcpWatch,
        found: Vec<(Kind, u64)>,
        t: FlowThresholds,
    }

    impl H {
        fn new() -> H {
            H {
                conn: None,
                watch: TcpWatch::default(),
                found: Vec::new(),
                t: FlowThresholds::from_config(&super::super::AnomalyConfig::default()),
            }
        }

        /// One segment at `ms` milliseconds. One argument per header field the tests vary:
        /// clearer at the call sites than a builder for a test helper.
        #[allow(clippy::too_many_arguments)]
        fn seg(
            &mut self,
            dir: Direction,
            flags: u8,
            seq: u32,
            ack: u32,
            len: u32,
            win: u16,
            ms: u64,
        ) {
            let h = TcpHeader {
                src_port: 0,
                dst_port: 0,
                seq,
                ack,
                flags,
                window: win,
            };
            let ts = Timestamp((ms + 1) * 1_000_000);
            let conn = self.conn.get_or_insert_with(|| TcpConn::new(&h));
            let limits = TcpLimits {
                stream: StreamLimits {
                    max_bytes: 1 << 20,
                    max_segments: 1024,
                },
                out_of_order_threshold_ns: 3_000_000,
            };
            let payload = vec![b'x'; len as usize];
            conn.segment(
                dir,
                &h,
                &payload,
                len,
                ts,
                &limits,
                &mut ReassemblyBudget::new(1 << 24, 1 << 16),
                &mut Counters::default(),
                &mut |_, _| {},
            );
            if let Some(f) = self.watch.segment(conn, dir, &h, ts, &self.t) {
                self.found.push((f.kind, f.evidence[0].1));
            }
        }

        fn tick(&mut self, ms: u64) {
            let ts = Timestamp((ms + 1) * 1_000_000);
            if let Some(f) = self.watch.tick(self.conn.as_ref().unwrap(), ts, &self.t) {
                self.found.push((f.kind, f.evidence[0].1));
            }
        }

        fn handshake(&mut self) {
            self.seg(C, SYN, 100, 0, 0, 1000, 0);
            self.seg(S, SYN | ACK, 500, 101, 0, 1000, 1);
            self.seg(C, ACK, 101, 501, 0, 1000, 2);
        }
    }

    #[test]
    fn a_reset_answering_the_syn_is_a_refused_connection_once() {
        let mut h = H::new();
        h.seg(C, SYN, 100, 0, 0, 1000, 0);
        h.seg(S, RST | ACK, 0, 101, 0, 0, 1);
        h.tick(10_000);
        assert_eq!(h.found, [(Kind::ConnectionRefused, 0)]);
    }

    #[test]
    fn unanswered_syns_are_one_event_after_the_timeout() {
        let mut h = H::new();
        h.seg(C, SYN, 100, 0, 0, 1000, 0);
        h.seg(C, SYN, 100, 0, 0, 1000, 1000);
        h.tick(2000);
        assert!(h.found.is_empty());
        h.seg(C, SYN, 100, 0, 0, 1000, 3000);
        h.tick(4000);
        assert!(
            h.found.is_empty(),
            "a SYN answered now would be a slow open"
        );
        // The client gave up: the tick finds it.
        h.tick(6000);
        h.tick(8000);
        assert_eq!(h.found, [(Kind::SynUnanswered, 2)]);
    }

    #[test]
    fn a_late_syn_ack_is_a_retransmitted_syn_not_an_unanswered_one() {
        let mut h = H::new();
        h.seg(C, SYN, 100, 0, 0, 1000, 0);
        h.seg(C, SYN, 100, 0, 0, 1000, 1000);
        h.seg(S, SYN | ACK, 500, 101, 0, 1000, 1001);
        h.tick(10_000);
        assert_eq!(h.found, [(Kind::SynRetransmitted, 1)]);
        // A normal open: nothing.
        let mut h = H::new();
        h.handshake();
        h.tick(10_000);
        assert!(h.found.is_empty());
    }

    #[test]
    fn a_zero_window_held_past_the_threshold_is_one_stall_per_stall() {
        let mut h = H::new();
        h.handshake();
        h.seg(S, ACK, 501, 101, 0, 0, 100); // server stops reading
        h.seg(S, ACK, 501, 101, 0, 0, 1000);
        assert!(h.found.is_empty());
        h.seg(S, ACK, 501, 101, 0, 0, 2200);
        h.seg(S, ACK, 501, 101, 0, 0, 5000);
        assert_eq!(h.found, [(Kind::ZeroWindowStall, 2100)]);
        // It reads again, then stalls again: a second event, found on the tick alone.
        h.seg(S, ACK, 501, 101, 0, 1000, 6000);
        h.seg(S, ACK, 501, 101, 0, 0, 7000);
        h.tick(9500);
        assert_eq!(h.found.len(), 2);
    }

    #[test]
    fn a_retransmission_burst_is_reported_once_while_it_lasts() {
        let mut h = H::new();
        h.handshake();
        let mut seq = 101;
        for i in 0..200u64 {
            h.seg(C, ACK, seq, 501, 100, 1000, 10 + i * 10);
            // Every segment sent twice, 300 ms apart: a retransmission each.
            h.seg(C, ACK, seq, 501, 100, 1000, 310 + i * 10);
            seq += 100;
        }
        assert_eq!(h.found, [(Kind::RetransmitBurst, 20)]);
        // A few retransmissions: no burst.
        let mut h = H::new();
        h.handshake();
        for i in 0..5u32 {
            h.seg(C, ACK, 101 + i * 100, 501, 100, 1000, 10);
            h.seg(C, ACK, 101 + i * 100, 501, 100, 1000, 400);
        }
        assert!(h.found.is_empty());
    }
}
