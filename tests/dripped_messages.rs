//! The largest message each decoder allows, sent one byte per TCP segment through a whole
//! worker (L2-L4, flow table, reassembly, detection, decoding), is decoded as if it came
//! whole: a 16 KB HTTP/1 head of 170 fields, a 60 KB HTTP/2 header block (HEADERS and
//! CONTINUATION frames), a 60 KB TLS ClientHello over four records, and a 65 KB DNS
//! response over TCP. Detection holds the first bytes however many segments they take,
//! and no decoder gives up on a message because it came in many pieces. (DNS over TCP
//! was not detected at all from a sender that writes fewer than 14 bytes first, e.g. the
//! length prefix alone: its probe said no instead of asking for more.)

use etherparse::PacketBuilder;
use podtap::capture::Frame;
use podtap::config::Config;
use podtap::export::RecordSink;
use podtap::flow::FlowRecord;
use podtap::packet::LinkType;
use podtap::proto::{AttrValue, Transaction};
use podtap::time::Timestamp;
use podtap::worker::Worker;

#[derive(Default)]
struct Collect {
    txs: Vec<Transaction>,
    flows: Vec<FlowRecord>,
}
impl RecordSink for Collect {
    fn flow(&mut self, f: FlowRecord) {
        self.flows.push(f);
    }
    fn transaction(&mut self, t: Transaction) {
        self.txs.push(t);
    }
}

/// A TCP connection to `port`: handshake, then each message one byte per segment, each
/// byte acknowledged by the other side, then FINs.
struct Conn {
    port: u16,
    c_seq: u32,
    s_seq: u32,
    frames: Vec<Vec<u8>>,
}

impl Conn {
    fn new(port: u16) -> Conn {
        let mut c = Conn {
            port,
            c_seq: 1000,
            s_seq: 9000,
            frames: Vec::new(),
        };
        c.push(true, &[], |b| b.syn());
        c.c_seq += 1;
        c.push(false, &[], |b| b.syn().ack(1001));
        c.s_seq += 1;
        c.push(true, &[], |b| b.ack(9001));
        c
    }

    fn push(
        &mut self,
        from_client: bool,
        payload: &[u8],
        flags: impl FnOnce(
            etherparse::PacketBuilderStep<etherparse::TcpHeader>,
        ) -> etherparse::PacketBuilderStep<etherparse::TcpHeader>,
    ) {
        let (c, s) = ([10, 9, 0, 2], [10, 9, 0, 1]);
        let (src, dst, sp, dp, seq) = if from_client {
            (c, s, 45000, self.port, self.c_seq)
        } else {
            (s, c, self.port, 45000, self.s_seq)
        };
        let b = PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .tcp(sp, dp, seq, 64000);
        let mut v = Vec::new();
        flags(b).write(&mut v, payload).unwrap();
        self.frames.push(v);
    }

    /// `msg` one byte per segment, each acknowledged.
    fn drip(&mut self, from_client: bool, msg: &[u8]) {
        for byte in msg {
            let ack = if from_client { self.s_seq } else { self.c_seq };
            self.push(from_client, &[*byte], |b| b.ack(ack));
            if from_client {
                self.c_seq += 1;
            } else {
                self.s_seq += 1;
            }
            let acked = if from_client { self.c_seq } else { self.s_seq };
            self.push(!from_client, &[], |b| b.ack(acked));
        }
    }

    fn close(&mut self) {
        let (c, s) = (self.c_seq, self.s_seq);
        self.push(true, &[], |b| b.fin().ack(s));
        self.c_seq += 1;
        self.push(false, &[], |b| b.fin().ack(c + 1));
        self.s_seq += 1;
        let s = self.s_seq;
        self.push(true, &[], |b| b.ack(s));
    }
}

fn run(conn: &Conn) -> Collect {
    let mut w = Worker::new(&Config::default(), Collect::default());
    for (i, f) in conn.frames.iter().enumerate() {
        w.process(&Frame {
            data: f,
            ts: Timestamp(1_000_000_000 + i as u64 * 1000),
            wire_len: f.len() as u32,
            link: LinkType::Ethernet,
            obs: 1,
        });
    }
    let (totals, sink) = w.finish();
    assert_eq!(
        totals.counters.nonzero().count(),
        0,
        "nothing dropped or malformed: {:?}",
        totals
            .counters
            .nonzero()
            .map(|(e, n)| (e.name(), n))
            .collect::<Vec<_>>()
    );
    sink
}

fn attr(t: &Transaction, k: &str) -> String {
    match t.attr(k) {
        Some(AttrValue::Str(s)) => s.to_string(),
        Some(AttrValue::Int(i)) => i.to_string(),
        Some(v) => format!("{v:?}"),
        None => "-".into(),
    }
}

#[test]
fn http1_head_of_170_fields_in_16_kb() {
    let mut head = b"GET /big HTTP/1.1\r\nHost: a\r\n".to_vec();
    for i in 0..170 {
        head.extend_from_slice(format!("X-Field-{i:03}: {}\r\n", "v".repeat(75)).as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    assert!(
        head.len() > 15_000 && head.len() <= 16_384,
        "{}",
        head.len()
    );
    let mut c = Conn::new(80);
    c.drip(true, &head);
    c.drip(false, b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    c.close();
    let r = run(&c);
    assert_eq!(r.txs.len(), 1);
    let t = &r.txs[0];
    assert_eq!(attr(t, "url.path"), "/big");
    assert_eq!(attr(t, "http.response.status_code"), "200");
    assert!(t.completeness.is_complete(), "{t:?}");
}

/// HPACK integer with an `n`-bit prefix, the prefix's other bits `first`.
fn hpack_int(first: u8, n: u32, mut v: usize, out: &mut Vec<u8>) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(first | v as u8);
        return;
    }
    out.push(first | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

/// A literal header field without indexing, new name.
fn hpack_lit(name: &str, value: &[u8], out: &mut Vec<u8>) {
    out.push(0);
    hpack_int(0, 7, name.len(), out);
    out.extend_from_slice(name.as_bytes());
    hpack_int(0, 7, value.len(), out);
    out.extend_from_slice(value);
}

fn h2_frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.extend_from_slice(&[ty, flags]);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

#[test]
fn http2_header_block_of_60_kb_over_continuations() {
    let mut block = Vec::new();
    // :method GET (2), :scheme http (6), :path, :authority.
    block.extend_from_slice(&[0x82, 0x86]);
    hpack_lit(":path", b"/h2big", &mut block);
    hpack_lit(":authority", b"a", &mut block);
    hpack_lit("x-big", &vec![b'b'; 60_000], &mut block);
    assert!(block.len() > 60_000 && block.len() < 65_536);
    let mut client = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    client.extend(h2_frame(4, 0, 0, &[]));
    let pieces: Vec<&[u8]> = block.chunks(16_384).collect();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let (ty, flags) = if i == 0 { (1, 0x1) } else { (9, 0) };
        client.extend(h2_frame(ty, flags | if last { 0x4 } else { 0 }, 1, p));
    }
    let mut server = h2_frame(4, 0, 0, &[]);
    server.extend(h2_frame(4, 1, 0, &[]));
    // :status 200, END_STREAM | END_HEADERS.
    server.extend(h2_frame(1, 0x5, 1, &[0x88]));
    let mut c = Conn::new(80);
    c.drip(true, &client);
    c.drip(false, &server);
    c.close();
    let r = run(&c);
    assert_eq!(r.txs.len(), 1, "{:?}", r.txs);
    let t = &r.txs[0];
    assert_eq!(attr(t, "url.path"), "/h2big");
    assert_eq!(attr(t, "http.response.status_code"), "200");
    assert!(t.completeness.is_complete(), "{t:?}");
}

#[test]
fn tls_client_hello_of_60_kb_over_four_records() {
    let sni = b"drip.example";
    let mut ext = Vec::new();
    // server_name
    let mut sn = vec![0];
    sn.extend_from_slice(&(sni.len() as u16).to_be_bytes());
    sn.extend_from_slice(sni);
    let mut list = (sn.len() as u16).to_be_bytes().to_vec();
    list.extend(sn);
    ext.extend_from_slice(&0u16.to_be_bytes());
    ext.extend_from_slice(&(list.len() as u16).to_be_bytes());
    ext.extend(list);
    // padding (21) to make the hello ~60 KB
    let pad = 60_000;
    ext.extend_from_slice(&21u16.to_be_bytes());
    ext.extend_from_slice(&(pad as u16).to_be_bytes());
    ext.extend(std::iter::repeat_n(0u8, pad));
    let mut body = vec![3, 3];
    body.extend_from_slice(&[7; 32]); // random
    body.push(0); // session id
    body.extend_from_slice(&[0, 2, 0x13, 0x01]); // cipher suites
    body.extend_from_slice(&[1, 0]); // compression
    body.extend_from_slice(&(ext.len() as u16).to_be_bytes());
    body.extend(ext);
    let mut hs = vec![1];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    let mut client = Vec::new();
    let records: Vec<&[u8]> = hs.chunks(16_384).collect();
    assert_eq!(records.len(), 4);
    for r in records {
        client.extend_from_slice(&[22, 3, 1]);
        client.extend_from_slice(&(r.len() as u16).to_be_bytes());
        client.extend_from_slice(r);
    }
    // ServerHello.
    let mut sh = vec![3, 3];
    sh.extend_from_slice(&[9; 32]);
    sh.push(0);
    sh.extend_from_slice(&[0x13, 0x01, 0]);
    sh.extend_from_slice(&[0, 0]);
    let mut shs = vec![2];
    shs.extend_from_slice(&(sh.len() as u32).to_be_bytes()[1..]);
    shs.extend(sh);
    let mut server = vec![22, 3, 3];
    server.extend_from_slice(&(shs.len() as u16).to_be_bytes());
    server.extend(shs);
    let mut c = Conn::new(443);
    c.drip(true, &client);
    c.drip(false, &server);
    c.close();
    let r = run(&c);
    let tls: Vec<_> = r.flows.iter().filter_map(|f| f.tls.as_ref()).collect();
    assert_eq!(tls.len(), 1, "{:?}", r.flows);
    assert_eq!(tls[0].server_name.as_deref(), Some("drip.example"));
}

#[test]
fn dns_response_of_65_kb_over_tcp() {
    let name = |out: &mut Vec<u8>| {
        for l in ["big", "example"] {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
    };
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    name(&mut q);
    q.extend_from_slice(&[0, 16, 0, 1]); // TXT IN
    // The answer: TXT records of 255-byte strings up to ~65 KB.
    let mut a = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0];
    name(&mut a);
    a.extend_from_slice(&[0, 16, 0, 1]);
    let mut answers = 0u16;
    while a.len() + 12 + 256 < 65_535 {
        a.extend_from_slice(&[0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 60, 1, 0]);
        a.push(255);
        a.extend(std::iter::repeat_n(b't', 255));
        answers += 1;
    }
    a[6..8].copy_from_slice(&answers.to_be_bytes());
    assert!(a.len() > 65_000);
    let framed = |m: &[u8]| {
        let mut v = (m.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(m);
        v
    };
    let mut c = Conn::new(53);
    c.drip(true, &framed(&q));
    c.drip(false, &framed(&a));
    c.close();
    let r = run(&c);
    assert_eq!(r.txs.len(), 1, "{:?}", r.txs);
    let t = &r.txs[0];
    assert_eq!(attr(t, "dns.question.name"), "big.example");
    assert_eq!(attr(t, "dns.response_code"), "noerror");
    assert!(t.completeness.is_complete(), "{t:?}");
}
