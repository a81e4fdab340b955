//! No heap allocation per packet on the steady-state path. A counting global allocator
//! wraps the system one; a worker first sees every flow (new flows may allocate: slab
//! slots, decoder state), then processes many more packets of the same flows (in-order
//! data, pure ACKs, out-of-order segments whose buffers come from the reassembly pool,
//! UDP datagrams), and the allocation count of that second pass must be zero.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use etherparse::PacketBuilder;
use podtap::capture::Frame;
use podtap::config::Config;
use podtap::export::RecordSink;
use podtap::flow::FlowRecord;
use podtap::packet::LinkType;
use podtap::proto::Transaction;
use podtap::time::Timestamp;
use podtap::worker::Worker;

use std::sync::Arc;

use podtap::export::Record;
use podtap::export::jsonl::JsonLines;
use podtap::flow::{EndReason, TcpRecord};
use podtap::k8s::{FlowPods, Peer, PodMeta};
use podtap::proto::{AttrValue, Completeness, Endpoint, Protocol};

struct Counting;

// Per thread: the tests of this file run in parallel, each counting only its own.
thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    // (`try_with`: a thread's locals may be gone while it is being torn down.)
    if COUNTING.try_with(Cell::get).unwrap_or(false) {
        let _ = ALLOCS.try_with(|a| a.set(a.get() + 1));
    }
}

/// Allocations this thread makes while `f` runs.
fn allocations(f: impl FnOnce()) -> u64 {
    ALLOCS.with(|a| a.set(0));
    COUNTING.with(|c| c.set(true));
    f();
    COUNTING.with(|c| c.set(false));
    ALLOCS.with(Cell::get)
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(p, l, n) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Hand `frames` to `w` as Ethernet frames 1 µs apart, the clock `ts` carried over.
fn feed<S: RecordSink>(w: &mut Worker<S>, frames: &[Vec<u8>], ts: &mut u64) {
    for f in frames {
        *ts += 1000;
        w.process(&Frame {
            data: f,
            ts: Timestamp(*ts),
            wire_len: f.len() as u32,
            link: LinkType::Ethernet,
            obs: 1,
        });
    }
}

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
    let mut run = |w: &mut Worker<Discard>, frames: &[Vec<u8>]| feed(w, frames, &mut ts);
    // Warm-up: flows are created, pools and tables reach their working size.
    for r in 0..3 {
        run(&mut w, &round(flows, r));
    }
    // Build the frames of the measured rounds before counting starts.
    let measured: Vec<Vec<Vec<u8>>> = (3..23).map(|r| round(flows, r)).collect();
    let packets: usize = measured.iter().map(Vec::len).sum();
    let allocs = allocations(|| {
        for frames in &measured {
            run(&mut w, frames);
        }
    });
    assert_eq!(w.live_flows(), 2 * flows as usize);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while processing {packets} packets of known flows"
    );
}

/// Records of every kind the JSON lines writer handles on a busy node: HTTP transactions
/// with attributes, trace context and pods, and finished TCP and UDP (IPv6) flows.
fn records() -> Vec<Record> {
    let pod = Arc::new(PodMeta {
        attrs: vec![
            ("k8s.pod.name".into(), AttrValue::Str("web-0".into())),
            ("k8s.namespace.name".into(), AttrValue::Str("shop".into())),
            ("k8s.pod.label.app".into(), AttrValue::Str("web".into())),
        ],
        ..Default::default()
    });
    let pods = Arc::new(FlowPods {
        obs: Some(pod.clone()),
        client: Peer::External,
        server: Peer::Pod(pod),
        ..Default::default()
    });
    let mut v = Vec::new();
    for i in 0..50u64 {
        let mut t = Transaction::new(
            Protocol::Http,
            Timestamp(1_795_405_963_000_000_000 + i * 7_000_000),
        );
        t.end = Timestamp(t.start.0 + 228_000);
        t.client = Endpoint {
            addr: [10, 77, 0, 2].into(),
            port: 34368,
        };
        t.server = Endpoint {
            addr: [10, 77, 0, 1].into(),
            port: 80,
        };
        t.operation = "GET".into();
        t.resource = "/api/items/{id}".into();
        t.status = Some(200);
        t.attrs.push((
            "url.path",
            AttrValue::Str(format!("/api/items/{i}?q=\"x\"").into()),
        ));
        t.attrs
            .push(("http.response.status_code", AttrValue::Int(200)));
        t.attrs.push((
            "user_agent.original",
            AttrValue::Str("Mozilla/5.0 (X11; Linux x86_64) a longer user agent".into()),
        ));
        if i % 3 == 0 {
            t.trace = Some(Box::default());
            t.completeness = Completeness(Completeness::GAP | Completeness::RESET);
        }
        if i % 2 == 0 {
            t.pods = Some(pods.clone());
        }
        v.push(Record::Transaction(t));
    }
    let flow = |tcp: bool, v6: bool| FlowRecord {
        obs: 1,
        vlan: 0,
        tunnel: Default::default(),
        ip_proto: if tcp { 6 } else { 17 },
        client: Endpoint {
            addr: if v6 {
                "2001:db8::1".parse().unwrap()
            } else {
                [10, 0, 0, 1].into()
            },
            port: 40000,
        },
        server: Endpoint {
            addr: if v6 {
                "2001:db8::2".parse().unwrap()
            } else {
                [10, 0, 0, 2].into()
            },
            port: 53,
        },
        first: Timestamp(1_795_405_963_000_000_000),
        last: Timestamp(1_795_405_964_500_000_000),
        dirs: Default::default(),
        reason: EndReason::Fin,
        protocol: Protocol::Http,
        tcp: tcp.then(|| TcpRecord {
            midstream: false,
            server_rtt_ns: Some(17_000),
            client_rtt_ns: Some(16_000),
            srtt_ns: [Some(40_000), Some(50_000)],
            stats: Default::default(),
            reassembled: [100, 200],
            gap_bytes: [0, 0],
        }),
        tls: None,
        pods: Some(pods.clone()),
        unreported: Default::default(),
    };
    v.push(Record::Flow(Box::new(flow(true, false))));
    v.push(Record::Flow(Box::new(flow(false, true))));
    v
}

#[test]
fn json_lines_do_not_allocate_once_warm() {
    let recs = records();
    let mut w = JsonLines::default();
    let mut out = std::io::sink();
    // Warm-up: one pass (the buffer is sized up front; nothing should grow).
    for r in &recs {
        w.push(r, true);
    }
    w.write_to(&mut out).unwrap();
    let mut lines = 0;
    let allocs = allocations(|| {
        for _ in 0..200 {
            for r in &recs {
                lines += w.push(r, true) as usize;
                if w.len() >= podtap::export::jsonl::FLUSH_AT {
                    w.write_to(&mut out).unwrap();
                }
            }
        }
        w.write_to(&mut out).unwrap();
    });
    assert_eq!(lines, 200 * recs.len());
    assert_eq!(allocs, 0, "{allocs} allocations writing {lines} JSON lines");
}

/// A frame of a Redis connection (server port 6379).
fn redis_tcp(client: u8, from_client: bool, seq: u32, ack: u32, payload: &[u8]) -> Vec<u8> {
    let (c, s) = ([10, 0, 4, client], [10, 0, 5, 1]);
    let (src, dst, sp, dp) = if from_client {
        (c, s, 41000, 6379)
    } else {
        (s, c, 6379, 41000)
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

/// The Redis decoder reads messages without allocating: subscribers receiving published
/// messages (arrays of bulk strings, split across segments), which are counted, not
/// paired, so no transaction (whose attributes are allocated) is built.
#[test]
fn redis_messages_do_not_allocate() {
    let mut w = Worker::new(&Config::default(), Discard);
    let flows = 20u8;
    let sub = b"*2\r\n$9\r\nSUBSCRIBE\r\n$7\r\nnews:eu\r\n";
    let confirm = b"*3\r\n$9\r\nsubscribe\r\n$7\r\nnews:eu\r\n:1\r\n";
    let mut msg = b"*3\r\n$7\r\nmessage\r\n$7\r\nnews:eu\r\n$300\r\n".to_vec();
    msg.extend_from_slice(&[b'x'; 300]);
    msg.extend_from_slice(b"\r\n");
    // Three messages per round, cut at odd places.
    let stream = msg.repeat(3);
    let cuts = [0, 17, 200, 371, stream.len()];
    let c0 = 1000u32;
    let s0 = 5000u32;
    let round = |r: u32| -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let base = s0 + confirm.len() as u32 + r * stream.len() as u32;
        for f in 0..flows {
            for pair in cuts.windows(2) {
                frames.push(redis_tcp(
                    f,
                    false,
                    base + pair[0] as u32,
                    c0 + sub.len() as u32,
                    &stream[pair[0]..pair[1]],
                ));
            }
            frames.push(redis_tcp(
                f,
                true,
                c0 + sub.len() as u32,
                base + stream.len() as u32,
                b"",
            ));
        }
        frames
    };
    let mut ts = 1_000_000_000u64;
    let mut run = |w: &mut Worker<Discard>, frames: &[Vec<u8>]| feed(w, frames, &mut ts);
    let mut hello = Vec::new();
    for f in 0..flows {
        hello.push(redis_tcp(f, true, c0, s0, sub));
        hello.push(redis_tcp(f, false, s0, c0 + sub.len() as u32, confirm));
    }
    run(&mut w, &hello);
    for r in 0..3 {
        run(&mut w, &round(r));
    }
    let measured: Vec<Vec<Vec<u8>>> = (3..23).map(round).collect();
    let packets: usize = measured.iter().map(Vec::len).sum();
    let allocs = allocations(|| {
        for frames in &measured {
            run(&mut w, frames);
        }
    });
    assert_eq!(w.live_flows(), flows as usize);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while processing {packets} packets of Redis messages"
    );
    // They were decoded: every message counted.
    let (totals, _) = w.finish();
    assert_eq!(
        totals
            .counters
            .get(podtap::events::Event::named("redis.push_messages").unwrap()),
        flows as u64 * 3 * 23
    );
}

/// Keeps the last transaction (moved in: keeping it does not allocate) and counts them.
#[derive(Default)]
struct Keep {
    last: Option<Transaction>,
    count: u64,
}
impl RecordSink for Keep {
    fn flow(&mut self, _: FlowRecord) {}
    fn transaction(&mut self, t: Transaction) {
        self.count += 1;
        self.last = Some(t);
    }
}

/// Client and server of one TCP connection to `port`, their sequence numbers followed.
struct Conn {
    client: u8,
    port: u16,
    c_seq: u32,
    s_seq: u32,
}

impl Conn {
    fn frame(&mut self, from_client: bool, payload: &[u8]) -> Vec<u8> {
        let (c, s) = ([10, 0, 6, self.client], [10, 0, 7, 1]);
        let (src, dst, sp, dp) = if from_client {
            (c, s, 42000, self.port)
        } else {
            (s, c, self.port, 42000)
        };
        let (seq, ack) = if from_client {
            (self.c_seq, self.s_seq)
        } else {
            (self.s_seq, self.c_seq)
        };
        if from_client {
            self.c_seq += payload.len() as u32;
        } else {
            self.s_seq += payload.len() as u32;
        }
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 64000)
            .ack(ack)
            .write(&mut v, payload)
            .unwrap();
        v
    }
}

/// Allocations per statement of a SQL decoder in the steady state (statement maps warm),
/// against what the exported record itself needs (a copy of one of the records made).
/// `setup` gives a connection's first frames, `statement` one statement's round trip.
fn sql_allocations_per_statement(
    port: u16,
    setup: impl Fn(&mut Conn) -> Vec<Vec<u8>>,
    statement: impl Fn(&mut Conn, u32) -> Vec<Vec<u8>>,
) -> (f64, u64, u64, Transaction) {
    let mut w = Worker::new(&Config::default(), Keep::default());
    let flows = 10u8;
    let mut conns: Vec<Conn> = (0..flows)
        .map(|client| Conn {
            client,
            port,
            c_seq: 1000,
            s_seq: 5000,
        })
        .collect();
    let mut ts = 1_000_000_000u64;
    let mut run = |w: &mut Worker<Keep>, frames: &[Vec<u8>]| feed(w, frames, &mut ts);
    let mut warm = Vec::new();
    for c in &mut conns {
        warm.extend(setup(c));
        for i in 0..5 {
            warm.extend(statement(c, i));
        }
    }
    run(&mut w, &warm);
    let rounds = 50u32;
    let mut measured = Vec::new();
    for i in 0..rounds {
        for c in &mut conns {
            measured.extend(statement(c, i));
        }
    }
    let before = w.sink_mut().count;
    let allocs = allocations(|| run(&mut w, &measured));
    let statements = w.sink_mut().count - before;
    let last = w.sink_mut().last.clone().expect("a transaction");
    let record = allocations(|| drop(std::hint::black_box(last.clone())));
    eprintln!("{allocs} allocations for {statements} statements; a record copy: {record}");
    (allocs as f64 / statements as f64, statements, record, last)
}

/// PostgreSQL, extended protocol with a named prepared statement (as pgbench -M prepared):
/// Bind, Execute, Sync; BindComplete, a row, CommandComplete, ReadyForQuery.
#[test]
fn postgresql_statements_allocate_only_their_record() {
    fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![tag];
        v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        v.extend_from_slice(body);
        v
    }
    let setup = |c: &mut Conn| {
        let mut startup = Vec::new();
        let body = b"\0\x03\0\0user\0app\0database\0shop\0\0";
        startup.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        startup.extend_from_slice(body);
        let mut ready = msg(b'R', &[0, 0, 0, 0]);
        ready.extend(msg(b'Z', b"I"));
        let mut parse = msg(
            b'P',
            b"P0_1\0SELECT abalance FROM pgbench_accounts WHERE aid = $1\0\0\0",
        );
        parse.extend(msg(b'S', b""));
        let mut parsed = msg(b'1', b"");
        parsed.extend(msg(b'Z', b"I"));
        vec![
            c.frame(true, &startup),
            c.frame(false, &ready),
            c.frame(true, &parse),
            c.frame(false, &parsed),
        ]
    };
    let statement = |c: &mut Conn, i: u32| {
        let mut req = msg(
            b'B',
            &[
                b"\0P0_1\0\0\0\0\x01\0\0\0\x04".as_slice(),
                &i.to_be_bytes(),
                b"\0\0",
            ]
            .concat(),
        );
        req.extend(msg(b'E', b"\0\0\0\0\0"));
        req.extend(msg(b'S', b""));
        let mut resp = msg(b'2', b"");
        resp.extend(msg(b'D', b"\0\x01\0\0\0\x044242"));
        resp.extend(msg(b'C', b"SELECT 1\0"));
        resp.extend(msg(b'Z', b"I"));
        vec![c.frame(true, &req), c.frame(false, &resp)]
    };
    let (per, statements, record, last) = sql_allocations_per_statement(5432, setup, statement);
    assert_eq!(statements, 500, "every statement reported");
    assert_eq!(
        last.attr("db.query.summary"),
        Some(&AttrValue::Str("SELECT pgbench_accounts".into())),
        "decoded: {last:?}"
    );
    assert!(
        per <= record as f64,
        "{per} allocations per statement; its record needs {record}"
    );
}

/// MySQL: COM_QUERY answered by a one-row result set (as mysqlslap's key reads).
#[test]
fn mysql_statements_allocate_only_their_record() {
    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_le_bytes()[..3].to_vec();
        v.push(seq);
        v.extend_from_slice(payload);
        v
    }
    let setup = |_: &mut Conn| Vec::new();
    let statement = |c: &mut Conn, i: u32| {
        let q = format!("SELECT intcol1, charcol1 FROM t1 WHERE id = '{i}'");
        let req = pkt(0, &[&[3u8][..], q.as_bytes()].concat());
        let coldef = |name: &str| {
            let mut p = Vec::new();
            for s in ["def", "mysqlslap", "t1", "t1", name, name] {
                p.push(s.len() as u8);
                p.extend_from_slice(s.as_bytes());
            }
            p.extend_from_slice(&[0x0c, 33, 0, 11, 0, 0, 0, 3, 0, 0, 0, 0, 0]);
            p
        };
        let eof = [0xfe, 0, 0, 2, 0];
        let mut resp = pkt(1, &[2]);
        resp.extend(pkt(2, &coldef("intcol1")));
        resp.extend(pkt(3, &coldef("charcol1")));
        resp.extend(pkt(4, &eof));
        resp.extend(pkt(5, b"\x0512345\x03abc"));
        resp.extend(pkt(6, &eof));
        vec![c.frame(true, &req), c.frame(false, &resp)]
    };
    let (per, statements, record, last) = sql_allocations_per_statement(3306, setup, statement);
    assert_eq!(statements, 500, "every statement reported");
    assert_eq!(
        last.attr("db.query.summary"),
        Some(&AttrValue::Str("SELECT t1".into())),
        "decoded: {last:?}"
    );
    assert!(
        per <= record as f64,
        "{per} allocations per statement; its record needs {record}"
    );
}
