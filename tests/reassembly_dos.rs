//! Hostile segment patterns cost linear time and bounded memory (issue 27).
//!
//! One flow drips 200,000 one-byte segments behind a one-byte hole, another sends
//! thousands of one-byte segments each behind a hole of its own (every other byte), and
//! a crowd of ordinary HTTP connections runs beside them. Each hostile flow must cost
//! about what the same bytes cost in order (the sorted-Vec reassembly this replaced took
//! 75-97 s of one worker for the first pattern), the held memory must stay within the
//! configured limits, and every ordinary transaction must still be reported.

use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use podtap::capture::Frame;
use podtap::config::Config;
use podtap::events::Event;
use podtap::export::{Record, VecSink};
use podtap::packet::LinkType;
use podtap::proto::Protocol;
use podtap::time::Timestamp;
use podtap::worker::Worker;

const DRIP: u32 = 200_000;

/// A client-to-server TCP frame (handshake flags or data with ACK).
fn frame(c_port: u16, seq: u32, ack: Option<u32>, syn: bool, payload: &[u8]) -> Vec<u8> {
    frame_dir(true, c_port, seq, ack, syn, payload)
}

fn frame_dir(
    from_client: bool,
    c_port: u16,
    seq: u32,
    ack: Option<u32>,
    syn: bool,
    payload: &[u8],
) -> Vec<u8> {
    let (c, s) = ([10, 9, 0, 1], [10, 9, 0, 2]);
    let (src, dst, sp, dp) = if from_client {
        (c, s, c_port, 80)
    } else {
        (s, c, 80, c_port)
    };
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 64_000);
    if syn {
        b = b.syn();
    }
    if let Some(a) = ack {
        b = b.ack(a);
    }
    let mut out = Vec::new();
    b.write(&mut out, payload).unwrap();
    out
}

/// The handshake of a connection whose client data starts at sequence 1001.
fn handshake(c_port: u16, out: &mut Vec<Vec<u8>>) {
    out.push(frame_dir(true, c_port, 1000, None, true, b""));
    out.push(frame_dir(false, c_port, 5000, Some(1001), true, b""));
    out.push(frame_dir(true, c_port, 1001, Some(5001), false, b""));
}

/// 200,000 one-byte segments of a request body, behind a one-byte hole (the first
/// byte comes last), or in order.
fn drip(c_port: u16, hole: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    handshake(c_port, &mut out);
    let first = frame(c_port, 1001, Some(5001), false, b"x");
    if !hole {
        out.push(first.clone());
    }
    for i in 1..DRIP {
        out.push(frame(c_port, 1001 + i, Some(5001), false, b"x"));
    }
    if hole {
        out.push(first);
    }
    out
}

/// 50,000 one-byte segments, each behind a hole of its own (every other byte), or all
/// bytes in order.
fn comb(c_port: u16, holes: bool) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    handshake(c_port, &mut out);
    for i in 0..100_000u32 {
        if !holes || i % 2 == 1 {
            out.push(frame(c_port, 1001 + i, Some(5001), false, b"y"));
        }
    }
    out
}

/// Ordinary keep-alive HTTP connections: 100 of 10 requests each.
fn http(out: &mut Vec<Vec<u8>>) {
    for k in 0..100u16 {
        let port = 20_000 + k;
        handshake(port, out);
        let (mut cs, mut ss) = (1001u32, 5001u32);
        for r in 0..10 {
            let req = format!("GET /items/{r} HTTP/1.1\r\nHost: shop\r\n\r\n");
            let resp = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
            out.push(frame_dir(true, port, cs, Some(ss), false, req.as_bytes()));
            cs += req.len() as u32;
            out.push(frame_dir(false, port, ss, Some(cs), false, resp.as_bytes()));
            ss += resp.len() as u32;
        }
    }
}

struct Run {
    took: Duration,
    records: Vec<Record>,
    counters: podtap::events::Counters,
}

fn run(frames: &[Vec<u8>]) -> Run {
    let cfg = Config::default();
    let mut w = Worker::new(&cfg, VecSink::default());
    let mut ts = 1_000_000_000u64;
    let start = Instant::now();
    for f in frames {
        ts += 1000;
        w.process(&Frame {
            data: f,
            ts: Timestamp(ts),
            wire_len: f.len() as u32,
            link: LinkType::Ethernet,
            obs: 1,
        });
    }
    let took = start.elapsed();
    let (totals, sink) = w.finish();
    Run {
        took,
        records: sink.records,
        counters: totals.counters,
    }
}

/// The client's delivered bytes and gap bytes of the flow from `port`.
fn client_stream(r: &Run, port: u16) -> (u64, u64) {
    r.records
        .iter()
        .find_map(|rec| match rec {
            Record::Flow(f) if f.client.port == port => {
                let t = f.tcp.as_ref().unwrap();
                Some((f.dirs[0].payload_bytes, t.gap_bytes[0]))
            }
            _ => None,
        })
        .unwrap_or_else(|| panic!("no flow record from port {port}"))
}

#[test]
fn dripped_segments_behind_a_hole_cost_what_in_order_ones_do() {
    // Warm up (page faults, the allocator) so the two timings compare like with like.
    run(&drip(40_000, false));
    let in_order = run(&drip(40_001, false));
    let mut frames = drip(40_002, true);
    http(&mut frames);
    let hostile = run(&frames);
    eprintln!(
        "200k one-byte segments: in order {:?}, behind a hole {:?}",
        in_order.took, hostile.took
    );
    // The quadratic version took over 1000x longer; linear costs about the same.
    assert!(
        hostile.took < in_order.took * 4 + Duration::from_millis(500),
        "behind a hole {:?} vs in order {:?}",
        hostile.took,
        in_order.took
    );
    // The dripped bytes are held in one growing buffer until it reaches the flow's
    // 256 KiB: then the one-byte hole is declared lost and everything after it delivered.
    assert_eq!(client_stream(&in_order, 40_001).1, 0);
    let (_, gap) = client_stream(&hostile, 40_002);
    assert_eq!(gap, 1, "only the hole itself is lost");
    assert!(hostile.counters.get(Event::ReassemblyFlowLimit) >= 1);
    // The ordinary connections beside it: every request reported, complete.
    let http: Vec<_> = hostile
        .records
        .iter()
        .filter_map(|r| match r {
            Record::Transaction(t) if t.protocol == Protocol::Http => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(http.len(), 1000);
    assert!(http.iter().all(|t| t.completeness.is_complete()));
}

#[test]
fn many_holes_are_bounded_by_the_segment_limit() {
    run(&comb(41_000, false));
    let in_order = run(&comb(41_001, false));
    let hostile = run(&comb(41_002, true));
    eprintln!(
        "100k bytes, every other one missing: in order {:?}, combed {:?}",
        in_order.took, hostile.took
    );
    assert!(
        hostile.took < in_order.took * 4 + Duration::from_millis(500),
        "combed {:?} vs in order {:?}",
        hostile.took,
        in_order.took
    );
    // 50,000 holes: the flow holds at most `max_flow_segments` (1024) segments; each
    // time it is full the oldest hole is given up. Every byte sent is delivered, every
    // missing one reported as a gap.
    let (delivered, gap) = client_stream(&hostile, 41_002);
    assert_eq!(delivered, 50_000);
    assert_eq!(gap, 50_000);
    assert!(hostile.counters.get(Event::ReassemblyFlowLimit) >= 40);
}
