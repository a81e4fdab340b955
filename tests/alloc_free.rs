//! No heap allocation per packet on the steady-state path. A counting global allocator
//! wraps the system one; a worker first sees every flow (new flows may allocate: slab
//! slots, decoder state), then processes many more packets of the same flows (in-order
//! data, pure ACKs, out-of-order segments whose buffers come from the reassembly pool,
//! UDP datagrams), and the allocation count of that second pass must be zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use etherparse::PacketBuilder;
use podtap::capture::Frame;
use podtap::config::Config;
use podtap::export::RecordSink;
use podtap::flow::FlowRecord;
use podtap::packet::LinkType;
use podtap::proto::Transaction;
use podtap::time::Timestamp;
use podtap::worker::Worker;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Discards records: output is not the packet path.
struct Discard;
impl RecordSink for Discard {
    fn flow(&mut self, _: FlowRecord) {}
    fn transaction(&mut self, _: Transaction) {}
}

fn tcp(client: u8, from_client: bool, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (c, s) = ([10, 0, 0, client], [10, 0, 1, 1]);
    let (src, dst, sp, dp) = if from_client {
        (c, s, 40000, 9000)
    } else {
        (s, c, 9000, 40000)
    };
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src, dst, 64)
        .tcp(sp, dp, seq, 64000)
        .ack(ack)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn udp(client: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 2, client], [10, 0, 3, 1], 64)
        .udp(5000, 7000)
        .write(&mut v, payload)
        .unwrap();
    v
}

/// One round of traffic for every flow: `round` advances the sequence numbers.
fn round(flows: u8, r: u32) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let payload = [b'z'; 100];
    for f in 0..flows {
        let c = 1000 + r * 300;
        let s = 5000 + r * 100;
        frames.push(tcp(f, true, c, s, &payload));
        // The next two client segments arrive swapped: one is buffered out of order.
        frames.push(tcp(f, true, c + 200, s, &payload));
        frames.push(tcp(f, true, c + 100, s, &payload));
        frames.push(tcp(f, false, s, c + 300, &payload));
        frames.push(tcp(f, true, c + 300, s + 100, b""));
        frames.push(udp(f, &payload));
    }
    frames
}

#[test]
fn steady_state_packets_do_not_allocate() {
    let mut w = Worker::new(&Config::default(), Discard);
    let flows = 50;
    let mut ts = 1_000_000_000u64;
    let mut run = |w: &mut Worker<Discard>, frames: &[Vec<u8>]| {
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
    };
    // Warm-up: flows are created, pools and tables reach their working size.
    for r in 0..3 {
        run(&mut w, &round(flows, r));
    }
    // Build the frames of the measured rounds before counting starts.
    let measured: Vec<Vec<Vec<u8>>> = (3..23).map(|r| round(flows, r)).collect();
    let packets: usize = measured.iter().map(Vec::len).sum();
    COUNTING.store(true, Ordering::SeqCst);
    for frames in &measured {
        run(&mut w, frames);
    }
    COUNTING.store(false, Ordering::SeqCst);
    let allocs = ALLOCS.load(Ordering::SeqCst);
    assert_eq!(w.live_flows(), 2 * flows as usize);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while processing {packets} packets of known flows"
    );
}
