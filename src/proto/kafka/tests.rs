use super::parser::{self, flexible_from};
use super::*;
use crate::proto::AttrValue;
use crate::proto::Direction::{ToClient, ToServer};
use crate::proto::testkit::{self, Chunk};

/// A Kafka message writer: the encodings of one API version (compact when flexible).
struct W {
    b: Vec<u8>,
    flex: bool,
}

impl W {
    fn new(api: i16, version: i16) -> W {
        W {
            b: Vec::new(),
            flex: flexible_from(api).is_some_and(|f| version >= f),
        }
    }
    fn i8(&mut self, v: i8) -> &mut Self {
        self.b.push(v as u8);
        self
    }
    fn i16(&mut self, v: i16) -> &mut Self {
        self.b.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(&mut self, v: i32) -> &mut Self {
        self.b.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(&mut self, v: i64) -> &mut Self {
        self.b.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn uuid(&mut self, v: [u8; 16]) -> &mut Self {
        self.b.extend_from_slice(&v);
        self
    }
    fn varint(&mut self, mut v: u32) -> &mut Self {
        while v >= 0x80 {
            self.b.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.b.push(v as u8);
        self
    }
    /// A length or count: compact (n + 1) when flexible.
    fn len(&mut self, n: Option<usize>, wide: bool) -> &mut Self {
        match (self.flex, n) {
            (true, None) => self.varint(0),
            (true, Some(n)) => self.varint(n as u32 + 1),
            (false, None) if wide => self.i32(-1),
            (false, None) => self.i16(-1),
            (false, Some(n)) if wide => self.i32(n as i32),
            (false, Some(n)) => self.i16(n as i16),
        }
    }
    fn str(&mut self, s: Option<&str>) -> &mut Self {
        self.len(s.map(str::len), false);
        if let Some(s) = s {
            self.b.extend_from_slice(s.as_bytes());
        }
        self
    }
    fn bytes(&mut self, d: Option<&[u8]>) -> &mut Self {
        self.len(d.map(<[u8]>::len), true);
        if let Some(d) = d {
            self.b.extend_from_slice(d);
        }
        self
    }
    fn arr(&mut self, n: usize) -> &mut Self {
        self.len(Some(n), true)
    }
    /// Tagged fields (none, or one of `n` bytes) at the end of a structure.
    fn tags(&mut self) -> &mut Self {
        if self.flex {
            self.varint(0);
        }
        self
    }
    fn tag(&mut self, n: usize) -> &mut Self {
        if self.flex {
            self.varint(1).varint(3).varint(n as u32);
            self.b.extend(std::iter::repeat_n(0xAB, n));
        }
        self
    }
}

fn framed(b: Vec<u8>) -> Vec<u8> {
    let mut v = (b.len() as i32).to_be_bytes().to_vec();
    v.extend(b);
    v
}

/// A request: header (v1, or v2 when flexible) then the body.
fn req(api: i16, v: i16, corr: i32, body: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut w = W::new(api, v);
    w.i16(api).i16(v).i32(corr);
    // The client id is a 2-byte-length string in every header version.
    w.b.extend_from_slice(&9i16.to_be_bytes());
    w.b.extend_from_slice(b"my-client");
    w.tags();
    body(&mut w);
    framed(w.b)
}

/// A response: header (v0, or v1 when flexible, ApiVersions excepted) then the body.
fn resp(api: i16, v: i16, corr: i32, body: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut w = W::new(api, v);
    w.i32(corr);
    if api != parser::API_VERSIONS {
        w.tags();
    }
    body(&mut w);
    framed(w.b)
}

/// A record batch (magic 2) of `n` records, with `payload` bytes of (compressed or not:
/// never read) records.
fn batch(base: i64, n: i32, control: bool, payload: usize) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&base.to_be_bytes());
    b.extend_from_slice(&(49 + payload as i32).to_be_bytes());
    b.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
    b.push(2); // magic
    b.extend_from_slice(&0u32.to_be_bytes()); // crc
    let attrs: i16 = if control { 0x20 } else { 0x01 }; // gzip: never decompressed
    b.extend_from_slice(&attrs.to_be_bytes());
    b.extend_from_slice(&(n - 1).to_be_bytes()); // last offset delta
    b.extend_from_slice(&[0; 8 + 8 + 8 + 2 + 4]); // timestamps, producer id/epoch, seq
    b.extend_from_slice(&n.to_be_bytes());
    b.extend(std::iter::repeat_n(0x5A, payload));
    b
}

fn shared() -> KafkaShared {
    KafkaShared::new(KafkaConfig::default())
}

fn attr<'a>(t: &'a Transaction, k: &str) -> Option<&'a AttrValue> {
    t.attr(k)
}

fn s(t: &Transaction, k: &str) -> String {
    match attr(t, k) {
        Some(AttrValue::Str(v)) => v.to_string(),
        Some(AttrValue::Int(v)) => v.to_string(),
        Some(AttrValue::Bool(v)) => v.to_string(),
        None => String::new(),
    }
}

/// `testkit::check_all`, each decoder with a worker of its own (the worker's topic ids
/// would otherwise carry over from one feed to the next).
fn check(conv: &[(Direction, Vec<u8>)]) -> Vec<Transaction> {
    let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
    testkit::check_all(|| KafkaParser::new(&shared()), &chunks)
}

fn produce(v: i16, corr: i32, acks: i16, topic: &str, parts: &[(i32, Vec<u8>)]) -> Vec<u8> {
    req(0, v, corr, |w| {
        if v >= 3 {
            w.str(None);
        }
        w.i16(acks)
            .i32(30_000)
            .arr(1)
            .str(Some(topic))
            .arr(parts.len());
        for (p, recs) in parts {
            w.i32(*p).bytes(Some(recs)).tags();
        }
        w.tags().tags();
    })
}

fn produce_resp(v: i16, corr: i32, topic: &str, parts: &[(i32, i16)]) -> Vec<u8> {
    resp(0, v, corr, |w| {
        w.arr(1).str(Some(topic)).arr(parts.len());
        for (p, e) in parts {
            w.i32(*p).i16(*e).i64(42);
            if v >= 2 {
                w.i64(-1);
            }
            if v >= 5 {
                w.i64(0);
            }
            if v >= 8 {
                w.arr(0).str(None);
            }
            w.tag(2);
        }
        w.tags();
        if v >= 1 {
            w.i32(0);
        }
        w.tags();
    })
}

fn fetch_req(v: i16, corr: i32, topic: Result<&str, [u8; 16]>, parts: &[i32]) -> Vec<u8> {
    req(1, v, corr, |w| {
        if v <= 14 {
            w.i32(-1);
        }
        w.i32(500).i32(1);
        if v >= 3 {
            w.i32(1 << 20);
        }
        if v >= 4 {
            w.i8(0);
        }
        if v >= 7 {
            w.i32(0).i32(-1);
        }
        w.arr(1);
        match topic {
            Ok(t) => w.str(Some(t)),
            Err(id) => w.uuid(id),
        };
        w.arr(parts.len());
        for p in parts {
            w.i32(*p);
            if v >= 9 {
                w.i32(0);
            }
            w.i64(0);
            if v >= 12 {
                w.i32(-1);
            }
            if v >= 5 {
                w.i64(0);
            }
            w.i32(1 << 20).tags();
        }
        w.tags();
        if v >= 7 {
            w.arr(0);
        }
        if v >= 11 {
            w.str(Some(""));
        }
        w.tags();
    })
}

fn fetch_resp(
    v: i16,
    corr: i32,
    topic: Result<&str, [u8; 16]>,
    parts: &[(i32, i16, Vec<u8>)],
) -> Vec<u8> {
    resp(1, v, corr, |w| {
        if v >= 1 {
            w.i32(0);
        }
        if v >= 7 {
            w.i16(0).i32(7);
        }
        w.arr(1);
        match topic {
            Ok(t) => w.str(Some(t)),
            Err(id) => w.uuid(id),
        };
        w.arr(parts.len());
        for (p, e, recs) in parts {
            w.i32(*p).i16(*e).i64(100);
            if v >= 4 {
                w.i64(100);
            }
            if v >= 5 {
                w.i64(0);
            }
            if v >= 4 {
                w.arr(1).i64(9).i64(3).tags();
            }
            if v >= 11 {
                w.i32(-1);
            }
            w.bytes(Some(recs)).tag(5);
        }
        w.tags().tags();
    })
}

fn metadata_resp(v: i16, corr: i32, topics: &[(&str, [u8; 16], i16)]) -> Vec<u8> {
    resp(3, v, corr, |w| {
        if v >= 3 {
            w.i32(0);
        }
        w.arr(1).i32(1).str(Some("broker-1")).i32(9092);
        if v >= 1 {
            w.str(None);
        }
        w.tags();
        if v >= 2 {
            w.str(Some("cluster"));
        }
        if v >= 1 {
            w.i32(1);
        }
        w.arr(topics.len());
        for (name, id, err) in topics {
            w.i16(*err).str(Some(name));
            if v >= 10 {
                w.uuid(*id);
            }
            if v >= 1 {
                w.i8(0);
            }
            w.arr(1).i16(0).i32(0).i32(1);
            if v >= 7 {
                w.i32(0);
            }
            w.arr(1).i32(1).arr(1).i32(1);
            if v >= 5 {
                w.arr(0);
            }
            w.tags();
            if v >= 8 {
                w.i32(0);
            }
            w.tags();
        }
        if (8..=10).contains(&v) {
            w.i32(0);
        }
        w.tags();
    })
}

fn metadata_req(v: i16, corr: i32) -> Vec<u8> {
    req(3, v, corr, |w| {
        w.len(None, true);
        if v >= 4 {
            w.i8(1);
        }
        if (8..=10).contains(&v) {
            w.i8(0);
        }
        if v >= 8 {
            w.i8(0);
        }
        w.tags();
    })
}

const ID: [u8; 16] = *b"\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00";

/// A direction's events from `msgs` fed to the field walk in chunks of `chunk` bytes, with
/// the names they captured; responses are taken as answering `api`. Partitions, errors,
/// acks and key types (handed out one by one) are summed per message and shown at its end.
fn parser_events(
    side: parser::Side,
    api: i16,
    msgs: &[(i16, Vec<u8>)],
    chunk: usize,
) -> Vec<String> {
    use parser::Ev;
    let mut p = parser::Parser::new(side, 1 << 20);
    let mut evs = Vec::new();
    let mut sum = parser::Fields::default();
    for (v, m) in msgs {
        for mut b in m.chunks(chunk.min(m.len())) {
            loop {
                let (n, ev) = p.next(b);
                b = &b[n..];
                let Some(ev) = ev else {
                    if b.is_empty() {
                        break;
                    }
                    continue;
                };
                let name = String::from_utf8_lossy(p.captured()).into_owned();
                match ev {
                    Ev::Response { .. } => p.expect(Some((api, *v))),
                    Ev::Partition(x) => sum.add(parser::Fields::partition(x)),
                    Ev::Error(x) => sum.add(parser::Fields::error(x)),
                    Ev::Acks(a) => sum.add(parser::Fields::acks(a)),
                    Ev::KeyType(k) => sum.add(parser::Fields::key_type(k)),
                    _ => {}
                }
                match ev {
                    Ev::Partition(_) | Ev::Error(_) | Ev::Acks(_) | Ev::KeyType(_) => {}
                    Ev::Name(_) => evs.push(format!("{ev:?} {name}")),
                    Ev::End { .. } => {
                        evs.push(format!("{:?}", std::mem::take(&mut sum)));
                        evs.push(format!("{ev:?}"));
                    }
                    _ => evs.push(format!("{ev:?}")),
                }
            }
        }
        evs.push(format!("records {} batches {}", p.records, p.batches));
    }
    evs
}

/// What a whole-message walk hands its sink, as [`parser_events`] shows the field walk's.
#[derive(Default)]
struct Shown(Vec<String>);

impl<'a> parser::Sink<'a> for Shown {
    fn name(&mut self, name: parser::Name, bytes: &'a [u8]) -> Result<(), parser::NotWalked> {
        let ev = parser::Ev::Name(name);
        self.0.push(format!("{ev:?} {}", String::from_utf8_lossy(bytes)));
        Ok(())
    }

    fn topic_id(&mut self, id: [u8; 16]) -> Result<(), parser::NotWalked> {
        self.0.push(format!("{:?}", parser::Ev::TopicId(id)));
        Ok(())
    }
}

/// `msgs` read by the whole-message walk ([`parser::frame`], [`parser::walk_request`],
/// [`parser::walk_response`]), shown as [`parser_events`] shows the field walk's; `None`
/// when a message is not framed or its walk fails.
fn whole_events(side: parser::Side, api: i16, msgs: &[(i16, Vec<u8>)]) -> Option<Vec<String>> {
    use parser::{Ev, Head};
    let mut shown = Shown::default();
    for (v, m) in msgs {
        let f = parser::frame(m, side, 1 << 20)?;
        let wire = f.wire as u64;
        let w = match f.head {
            Head::Request { api, version, corr } => {
                let ev = Ev::Request { api, version, corr, wire };
                shown.0.push(format!("{ev:?}"));
                parser::walk_request(f.body, api, version, &mut shown).ok()?
            }
            Head::Response { corr } => {
                shown.0.push(format!("{:?}", Ev::Response { corr, wire }));
                parser::walk_response(f.body, Some((api, *v)), &mut shown).ok()?
            }
        };
        shown.0.push(format!("{:?}", w.fields));
        shown.0.push(format!("{:?}", Ev::End { malformed: false }));
        shown.0.push(format!("records {} batches {}", w.records, w.batches));
    }
    Some(shown.0)
}

#[test]
fn a_message_whole_in_its_chunk_is_walked_in_one_go_as_the_field_walk_reads_it() {
    let recs = |n| batch(0, n, false, 30);
    // Up to v12: v13 names topics by id, which `produce` does not write.
    for v in 0..=12 {
        let reqs = [(v, produce(v, 7, 1, "orders", &[(0, recs(3)), (5, recs(2))]))];
        let resps = [(v, produce_resp(v, 7, "orders", &[(0, 0), (5, 6)]))];
        for (side, msgs) in [(parser::Side::Requests, &reqs), (parser::Side::Responses, &resps)] {
            let whole = whole_events(side, parser::PRODUCE, msgs).unwrap();
            let bytewise = parser_events(side, parser::PRODUCE, msgs, 1);
            assert_eq!(whole, bytewise, "Produce v{v} {side:?}");
            assert_eq!(parser_events(side, parser::PRODUCE, msgs, usize::MAX), bytewise);
            assert!(whole.iter().any(|e| e.contains("orders")), "{whole:?}");
        }
        assert!(whole_events(parser::Side::Requests, 0, &reqs).unwrap().iter().any(|e| e == "records 5 batches 2"));
    }
    // Record errors and an error message (v8+), a transactional id: passed over alike.
    for v in [8, 9, 11] {
        let rsp = resp(0, v, 7, |w| {
            w.arr(1).str(Some("orders")).arr(2);
            for (p, e) in [(0, 0), (3, 87)] {
                w.i32(p).i16(e).i64(42).i64(-1).i64(0);
                w.arr(2).i32(1).str(Some("bad record")).tags().i32(4).str(None).tags();
                w.str(Some("INVALID_RECORD")).tag(3);
            }
            w.tags().i32(0).tags();
        });
        let rq = req(0, v, 7, |w| {
            w.str(Some("txn-1")).i16(-1).i32(30_000).arr(1).str(Some("orders")).arr(1);
            w.i32(3).bytes(Some(&recs(4))).tags();
            w.tags().tags();
        });
        for (side, m) in [(parser::Side::Responses, rsp), (parser::Side::Requests, rq)] {
            let msgs = [(v, m)];
            let whole = whole_events(side, parser::PRODUCE, &msgs).unwrap();
            assert_eq!(whole, parser_events(side, parser::PRODUCE, &msgs, 1), "v{v} {side:?}");
            assert!(whole.iter().any(|e| e.contains("errors: 1, error: 87") || e.contains("acks: Some(-1)")), "{whole:?}");
        }
    }
    // Twenty partitions are summed alike.
    let parts: Vec<(i32, i16)> = (0..20).map(|p| (p, (p % 3 == 1) as i16 * 6)).collect();
    let many = [(3, produce_resp(3, 9, "t", &parts))];
    let whole = whole_events(parser::Side::Responses, parser::PRODUCE, &many).unwrap();
    assert_eq!(whole, parser_events(parser::Side::Responses, parser::PRODUCE, &many, 1));
    assert!(whole.iter().any(|e| e.contains("partitions: 20, partition: 0, errors: 7, error: 6")), "{whole:?}");
    // Topic ids: learned with their names (Metadata v10+), or the topics (Fetch v13+).
    let topics = [("orders", ID, 0), ("audit", [7; 16], 3)];
    for (api, v, msgs) in [
        (parser::METADATA, 12, vec![(12, metadata_resp(12, 9, &topics))]),
        (parser::FETCH, 13, vec![(13, fetch_resp(13, 9, Err(ID), &[(5, 0, batch(0, 2, false, 9))]))]),
    ] {
        let whole = whole_events(parser::Side::Responses, api, &msgs).unwrap();
        assert_eq!(whole, parser_events(parser::Side::Responses, api, &msgs, 1), "{api} v{v}");
        assert!(whole.iter().any(|e| e.starts_with("TopicId")), "{whole:?}");
    }
    // A message cut short fails the walk (the field walk then reads it and says so).
    let mut cut = produce(9, 7, 1, "orders", &[(0, recs(3))]);
    let n = cut.len();
    cut.truncate(n - 5);
    let len = (cut.len() - 4) as u32;
    cut[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(whole_events(parser::Side::Requests, 0, &[(9, cut)]), None);
    // So does a client id running past the message's end (in the header, before the body).
    let mut long_id = produce(9, 7, 1, "orders", &[(0, recs(3))]);
    long_id[12..14].copy_from_slice(&30000i16.to_be_bytes());
    assert_eq!(whole_events(parser::Side::Requests, 0, &[(9, long_id)]), None);
}

/// Produce and its response each read in one go by the decoder when whole in their chunk,
/// by the field walk when fed a byte at a time, with the same transactions.
#[test]
fn the_decoder_reads_whole_messages_in_one_go_and_split_ones_field_by_field() {
    let conv = [
        (ToServer, produce(9, 7, 1, "orders", &[(0, batch(0, 3, false, 30))])),
        (ToClient, produce_resp(9, 7, "orders", &[(0, 0)])),
    ];
    let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
    let mut whole = KafkaParser::new(&shared());
    let a = testkit::feed_whole(&mut whole, &chunks);
    let mut split = KafkaParser::new(&shared());
    let b = testkit::feed_bytewise(&mut split, &chunks);
    assert_eq!((whole.direct, split.direct), (2, 0));
    assert_eq!(a.iter().map(testkit::shape).collect::<Vec<_>>(), b.iter().map(testkit::shape).collect::<Vec<_>>());
    assert_eq!(s(&a[0], "messaging.batch.message_count"), "3");

    // A Metadata response naming more topic ids than one walk keeps aside is read by the
    // field walk, which learns every one of them all the same.
    let names: Vec<String> = (0..70).map(|i| format!("t{i}")).collect();
    let topics: Vec<(&str, [u8; 16], i16)> =
        names.iter().enumerate().map(|(i, n)| (n.as_str(), [i as u8 + 1; 16], 0)).collect();
    let conv = [
        (ToServer, metadata_req(12, 1)),
        (ToClient, metadata_resp(12, 1, &topics)),
        (ToServer, fetch_req(13, 2, Err([70; 16]), &[0])),
        (ToClient, fetch_resp(13, 2, Err([70; 16]), &[(0, 0, batch(0, 1, false, 4))])),
    ];
    let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
    let mut p = KafkaParser::new(&shared());
    let txs = testkit::feed_whole(&mut p, &chunks);
    assert_eq!(p.direct, 3, "the Metadata response is not read in one go");
    assert_eq!(p.conn_ids.len(), 70);
    assert_eq!(s(&txs[1], "messaging.destination.name"), "t69", "{:?}", txs[1].attrs);
    let shapes = |t: &[Transaction]| t.iter().map(testkit::shape).collect::<Vec<_>>();
    assert_eq!(shapes(&txs), shapes(&check(&conv)));
}

#[test]
fn produce_and_fetch_every_version_count_their_records() {
    for v in 0..=12 {
        let mut recs = batch(0, 3, false, 20);
        recs.extend(batch(3, 2, false, 7));
        // A transaction marker: no message.
        recs.extend(batch(5, 1, true, 4));
        let conv = vec![
            (
                ToServer,
                produce(
                    v,
                    7,
                    1,
                    "orders",
                    &[(0, recs.clone()), (1, batch(0, 4, false, 3))],
                ),
            ),
            (ToClient, produce_resp(v, 7, "orders", &[(0, 0), (1, 0)])),
        ];
        let txs = check(&conv);
        assert_eq!(txs.len(), 1, "v{v}");
        let t = &txs[0];
        assert_eq!(t.operation, "Produce");
        assert!(t.completeness.is_complete(), "v{v} {:?}", t.completeness);
        assert_eq!(s(t, "messaging.operation.name"), "send");
        assert_eq!(s(t, "messaging.destination.name"), "orders");
        assert_eq!(s(t, "messaging.batch.message_count"), "9", "v{v}");
        assert_eq!(s(t, "podtap.kafka.partitions"), "2");
        assert_eq!(s(t, "messaging.destination.partition.id"), "");
        assert_eq!(s(t, "messaging.client.id"), "my-client");
        assert_eq!(t.error, None);
    }
    for v in 0..=12 {
        // The last batch is cut by the end of the response (max_bytes): not counted.
        let mut recs = batch(0, 5, false, 30);
        recs.extend(&batch(5, 9, false, 30)[..40]);
        let conv = vec![
            (ToServer, fetch_req(v, 3, Ok("orders"), &[2])),
            (ToClient, fetch_resp(v, 3, Ok("orders"), &[(2, 0, recs)])),
        ];
        let txs = check(&conv);
        assert_eq!(txs.len(), 1, "v{v}");
        let t = &txs[0];
        assert_eq!(t.operation, "Fetch");
        assert!(t.completeness.is_complete(), "v{v} {:?}", t.completeness);
        assert_eq!(s(t, "messaging.operation.name"), "receive");
        assert_eq!(s(t, "messaging.destination.name"), "orders");
        assert_eq!(s(t, "messaging.destination.partition.id"), "2");
        assert_eq!(s(t, "messaging.batch.message_count"), "5", "v{v}");
    }
}

#[test]
fn partition_errors_become_error_type_by_name() {
    let conv = vec![
        (
            ToServer,
            produce(
                9,
                1,
                -1,
                "orders",
                &[(0, batch(0, 1, false, 1)), (7, batch(0, 1, false, 1))],
            ),
        ),
        (ToClient, produce_resp(9, 1, "orders", &[(0, 0), (7, 3)])),
        (ToServer, fetch_req(12, 2, Ok("orders"), &[0])),
        (
            ToClient,
            fetch_resp(12, 2, Ok("orders"), &[(0, 1, Vec::new())]),
        ),
    ];
    let txs = check(&conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].error.as_deref(), Some("UNKNOWN_TOPIC_OR_PARTITION"));
    assert_eq!(s(&txs[0], "podtap.kafka.error_code"), "3");
    assert_eq!(s(&txs[0], "podtap.kafka.errors"), "1");
    assert_eq!(txs[0].status, Some(3));
    assert_eq!(txs[1].error.as_deref(), Some("OFFSET_OUT_OF_RANGE"));
    assert_eq!(s(&txs[1], "messaging.batch.message_count"), "");
}

#[test]
fn acks_zero_produce_gets_no_response_and_does_not_shift_the_pairs() {
    let conv = vec![
        (
            ToServer,
            produce(7, 10, 0, "logs", &[(0, batch(0, 2, false, 5))]),
        ),
        (
            ToServer,
            produce(7, 11, 0, "logs", &[(0, batch(2, 3, false, 5))]),
        ),
        (ToServer, metadata_req(7, 12)),
        (ToClient, metadata_resp(7, 12, &[("logs", ID, 0)])),
    ];
    let txs = check(&conv);
    assert_eq!(txs.len(), 3);
    for t in &txs[..2] {
        assert_eq!(t.operation, "Produce");
        assert!(t.completeness.is_complete());
        assert_eq!(s(t, "podtap.kafka.acks"), "0");
    }
    assert_eq!(s(&txs[1], "messaging.batch.message_count"), "3");
    assert_eq!(txs[2].operation, "Metadata");
    assert!(txs[2].completeness.is_complete());
    assert_eq!(s(&txs[2], "messaging.destination.name"), "logs");
}

#[test]
fn fetch_topic_ids_are_named_from_metadata_seen_on_the_wire() {
    let conv = vec![
        (ToServer, fetch_req(13, 1, Err(ID), &[0])),
        (
            ToClient,
            fetch_resp(13, 1, Err(ID), &[(0, 0, batch(0, 2, false, 3))]),
        ),
        (ToServer, metadata_req(12, 2)),
        (ToClient, metadata_resp(12, 2, &[("payments", ID, 0)])),
        (ToServer, fetch_req(15, 3, Err(ID), &[0])),
        (
            ToClient,
            fetch_resp(15, 3, Err(ID), &[(0, 0, batch(2, 4, false, 3))]),
        ),
    ];
    let txs = check(&conv);
    assert_eq!(txs.len(), 3);
    // Before the Metadata response: the id, and that it is not resolved.
    assert_eq!(s(&txs[0], "messaging.destination.name"), "");
    assert_eq!(
        s(&txs[0], "podtap.kafka.topic_id"),
        "11223344-5566-7788-99aa-bbccddeeff00"
    );
    assert_eq!(s(&txs[0], "podtap.kafka.topic_id_unresolved"), "true");
    assert_eq!(s(&txs[0], "messaging.batch.message_count"), "2");
    assert_eq!(s(&txs[2], "messaging.destination.name"), "payments");
    assert_eq!(s(&txs[2], "podtap.kafka.topic_id"), "");
    assert_eq!(s(&txs[2], "messaging.batch.message_count"), "4");
}

#[test]
fn topic_ids_learned_on_one_connection_serve_the_workers_others_bounded() {
    let sh = KafkaShared::new(KafkaConfig {
        topic_ids_per_worker: 2,
        topic_ids_per_connection: 1,
        ..KafkaConfig::default()
    });
    let mut bootstrap = KafkaParser::new(&sh);
    let mut leader = KafkaParser::new(&sh);
    let id = |i: u8| [i; 16];
    let conv_a = [
        (ToServer, metadata_req(12, 1)),
        (
            ToClient,
            metadata_resp(12, 1, &[("a", id(1), 0), ("b", id(2), 0), ("c", id(3), 0)]),
        ),
    ];
    let chunks: Vec<Chunk> = conv_a.iter().map(|(d, b)| (*d, &b[..])).collect();
    testkit::feed_whole(&mut bootstrap, &chunks);
    // The connection keeps 1, the worker 2: "a" was forgotten by both.
    assert_eq!(sh.topic_ids.lock().unwrap().len(), 2);
    assert_eq!(bootstrap.take_stats().topic_id_evicted, 3);
    let names: Vec<String> = [1u8, 2, 3]
        .iter()
        .map(|&i| {
            let conv = [
                (ToServer, fetch_req(13, 5, Err(id(i)), &[0])),
                (
                    ToClient,
                    fetch_resp(13, 5, Err(id(i)), &[(0, 0, Vec::new())]),
                ),
            ];
            let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
            let txs = testkit::feed_whole(&mut leader, &chunks);
            s(&txs[0], "messaging.destination.name")
        })
        .collect();
    assert_eq!(names, ["", "b", "c"]);
    assert_eq!(leader.take_stats().topic_id_unresolved, 2);
}

#[test]
fn group_apis_carry_the_consumer_group_and_their_errors() {
    let group_req = |api: i16, v: i16, corr: i32| {
        req(api, v, corr, |w| {
            w.str(Some("billing"))
                .i32(30_000)
                .str(Some("member-1"))
                .tags();
        })
    };
    let throttle_err = |api: i16, v: i16, corr: i32, e: i16| {
        resp(api, v, corr, |w| {
            w.i32(0).i16(e).tags();
        })
    };
    let conv = vec![
        // FindCoordinator v4: key type, then an array of keys.
        (
            ToServer,
            req(10, 4, 1, |w| {
                w.i8(0).arr(1).str(Some("billing")).tags();
            }),
        ),
        (
            ToClient,
            resp(10, 4, 1, |w| {
                w.i32(0)
                    .arr(1)
                    .str(Some("billing"))
                    .i32(1)
                    .str(Some("h"))
                    .i32(9092)
                    .i16(15)
                    .str(None)
                    .tags()
                    .tags();
            }),
        ),
        (ToServer, group_req(11, 7, 2)),
        (ToClient, throttle_err(11, 7, 2, 79)),
        (ToServer, group_req(14, 5, 3)),
        (ToClient, throttle_err(14, 5, 3, 0)),
        (ToServer, group_req(12, 4, 4)),
        (ToClient, throttle_err(12, 4, 4, 27)),
        (
            ToServer,
            req(8, 8, 5, |w| {
                w.str(Some("billing"))
                    .i32(1)
                    .str(Some("m"))
                    .str(None)
                    .arr(1)
                    .str(Some("orders"))
                    .arr(1)
                    .i32(0)
                    .i64(10)
                    .i32(-1)
                    .str(None)
                    .tags()
                    .tags()
                    .tags();
            }),
        ),
        (
            ToClient,
            resp(8, 8, 5, |w| {
                w.i32(0)
                    .arr(1)
                    .str(Some("orders"))
                    .arr(1)
                    .i32(0)
                    .i16(0)
                    .tags()
                    .tags()
                    .tags();
            }),
        ),
        // OffsetFetch v8: an array of groups.
        (
            ToServer,
            req(9, 8, 6, |w| {
                w.arr(1)
                    .str(Some("billing"))
                    .len(None, true)
                    .tags()
                    .i8(0)
                    .tags();
            }),
        ),
        (
            ToClient,
            resp(9, 8, 6, |w| {
                w.i32(0)
                    .arr(1)
                    .str(Some("billing"))
                    .arr(1)
                    .str(Some("orders"))
                    .arr(1)
                    .i32(0)
                    .i64(10)
                    .i32(-1)
                    .str(None)
                    .i16(0)
                    .tags()
                    .tags()
                    .i16(16)
                    .tags()
                    .tags();
            }),
        ),
        (ToServer, group_req(13, 4, 7)),
        (ToClient, throttle_err(13, 4, 7, 0)),
    ];
    let txs = check(&conv);
    let got: Vec<(String, String, String, Option<String>)> = txs
        .iter()
        .map(|t| {
            (
                t.operation.to_string(),
                s(t, "messaging.operation.name"),
                s(t, "messaging.consumer.group.name"),
                t.error.as_ref().map(|e| e.to_string()),
            )
        })
        .collect();
    let want = [
        (
            "FindCoordinator",
            "find_coordinator",
            "billing",
            Some("COORDINATOR_NOT_AVAILABLE"),
        ),
        (
            "JoinGroup",
            "join_group",
            "billing",
            Some("MEMBER_ID_REQUIRED"),
        ),
        ("SyncGroup", "sync_group", "billing", None),
        (
            "Heartbeat",
            "heartbeat",
            "billing",
            Some("REBALANCE_IN_PROGRESS"),
        ),
        ("OffsetCommit", "commit", "billing", None),
        (
            "OffsetFetch",
            "offset_fetch",
            "billing",
            Some("NOT_COORDINATOR"),
        ),
        ("LeaveGroup", "leave_group", "billing", None),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(a, b, c, d)| {
            (
                a.to_string(),
                b.to_string(),
                c.to_string(),
                d.map(String::from),
            )
        })
        .collect();
    assert_eq!(got, want);
    assert_eq!(s(&txs[4], "messaging.operation.type"), "settle");
    assert_eq!(s(&txs[4], "messaging.destination.name"), "orders");
}

#[test]
fn sasl_is_reported_by_name_and_never_exports_its_payload() {
    let conv = vec![
        (
            ToServer,
            req(17, 1, 1, |w| {
                w.str(Some("PLAIN"));
            }),
        ),
        (
            ToClient,
            resp(17, 1, 1, |w| {
                w.i16(0).arr(1).str(Some("PLAIN"));
            }),
        ),
        (
            ToServer,
            req(36, 2, 2, |w| {
                w.bytes(Some(b"\0alice\0hunter2-secret")).tags();
            }),
        ),
        (
            ToClient,
            resp(36, 2, 2, |w| {
                w.i16(58)
                    .str(Some("Authentication failed: invalid credentials"))
                    .bytes(Some(b""))
                    .i64(0)
                    .tags();
            }),
        ),
    ];
    let txs = check(&conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].operation, "SaslHandshake");
    assert_eq!(txs[1].operation, "SaslAuthenticate");
    assert_eq!(txs[1].error.as_deref(), Some("SASL_AUTHENTICATION_FAILED"));
    for t in &txs {
        let all = format!("{:?}", t.attrs);
        assert!(
            !all.contains("hunter2") && !all.contains("alice") && !all.contains("credentials"),
            "{all}"
        );
    }
}

#[test]
fn api_versions_responses_use_header_v0_even_when_flexible() {
    let conv = vec![
        (
            ToServer,
            req(18, 3, 1, |w| {
                w.str(Some("librdkafka")).str(Some("2.0.2")).tags();
            }),
        ),
        (
            ToClient,
            resp(18, 3, 1, |w| {
                w.i16(35).arr(1).i16(0).i16(0).i16(9).tags().i32(0).tags();
            }),
        ),
    ];
    let txs = check(&conv);
    assert_eq!(txs[0].operation, "ApiVersions");
    assert_eq!(txs[0].error.as_deref(), Some("UNSUPPORTED_VERSION"));
}

#[test]
fn responses_pair_by_correlation_id_and_lost_ones_are_reported() {
    let sh = shared();
    let mut p = KafkaParser::new(&sh);
    let conv = [
        (ToServer, metadata_req(1, 100)),
        (ToServer, metadata_req(1, 101)),
        (ToServer, metadata_req(1, 102)),
        // The response to 100 never came (a broker answers in order), then 101's, then one
        // nobody asked for.
        (ToClient, metadata_resp(1, 101, &[])),
        (ToClient, metadata_resp(1, 555, &[])),
    ];
    let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
    let txs = testkit::feed_whole(&mut p, &chunks);
    let got: Vec<(String, Vec<&str>)> = txs
        .iter()
        .map(|t| (t.operation.to_string(), t.completeness.reasons().collect()))
        .collect();
    assert_eq!(
        got,
        [
            ("Metadata".to_string(), vec!["no_response"]),
            ("Metadata".to_string(), vec![]),
            ("unknown".to_string(), vec!["no_request"]),
            ("Metadata".to_string(), vec!["no_response", "closed"]),
        ]
    );
    let st = p.take_stats();
    assert_eq!((st.no_response, st.no_request), (1, 1));
}

#[test]
fn pending_requests_are_bounded_and_time_out() {
    let sh = KafkaShared::new(KafkaConfig {
        max_pending: 2,
        ..KafkaConfig::default()
    });
    let mut p = KafkaParser::new(&sh);
    let mut out = Vec::new();
    let t0 = Timestamp::from_secs_nanos(1000, 0);
    for corr in 0..3 {
        p.on_data(ToServer, &metadata_req(1, corr), t0, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.has(Completeness::NO_RESPONSE));
    p.on_tick(t0.add_nanos(31_000_000_000), 30_000_000_000, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].error.as_deref(), Some("timeout"));
    let st = p.take_stats();
    assert_eq!((st.pending_limit, st.timeouts), (1, 2));
}

#[test]
fn a_gap_in_record_data_costs_only_the_count_of_those_records() {
    let recs = batch(0, 3, false, 500);
    let msg = produce(9, 1, 1, "orders", &[(0, recs)]);
    let sh = shared();
    let mut p = KafkaParser::new(&sh);
    let mut out = Vec::new();
    let t = Timestamp::from_secs_nanos(1, 0);
    // Cut inside the record payload: the fields after it are still read.
    p.on_data(ToServer, &msg[..200], t, &mut out);
    p.on_gap(ToServer, 100);
    p.on_data(ToServer, &msg[300..], t, &mut out);
    p.on_data(
        ToClient,
        &produce_resp(9, 1, "orders", &[(0, 0)]),
        t,
        &mut out,
    );
    assert_eq!(out.len(), 1);
    assert_eq!(s(&out[0], "messaging.batch.message_count"), "3");
    assert!(out[0].completeness.has(Completeness::GAP));
    // A gap across messages: the next request is found again.
    p.on_data(ToServer, &msg[..50], t, &mut out);
    p.on_gap(ToServer, msg.len() as u32);
    p.on_data(ToServer, &metadata_req(1, 9), t, &mut out);
    p.on_data(ToClient, &metadata_resp(1, 9, &[]), t, &mut out);
    let last = out.last().unwrap();
    assert_eq!(last.operation, "Metadata");
    assert!(last.completeness.is_complete(), "{:?}", last.completeness);
}

#[test]
fn garbage_never_panics_and_is_counted() {
    let mut rng = crate::proto::test_rng(0x4b61666b61);
    let sh = shared();
    for round in 0..300 {
        let mut p = KafkaParser::new(&sh);
        let mut out = Vec::new();
        let t = Timestamp::from_secs_nanos(1, 0);
        // Real messages with bytes flipped, and plain noise.
        let mut b = produce(9, round, 1, "orders", &[(0, batch(0, 2, false, 10))]);
        b.extend(fetch_resp(
            13,
            round,
            Err(ID),
            &[(0, 0, batch(0, 2, false, 10))],
        ));
        for _ in 0..(rng() % 8) {
            let i = (rng() as usize) % b.len();
            b[i] = rng() as u8;
        }
        if round % 3 == 0 {
            b = (0..200).map(|_| rng() as u8).collect();
        }
        for c in b.chunks(1 + (rng() as usize) % 40) {
            let dir = if rng().is_multiple_of(2) {
                ToServer
            } else {
                ToClient
            };
            p.on_data(dir, c, t, &mut out);
        }
        p.on_close(t, false, &mut out);
    }
}

#[test]
fn probe_knows_requests_and_only_hints_responses() {
    let r = metadata_req(9, 1);
    assert_eq!(probe(&r, ToServer, false), Confidence::Likely);
    assert_eq!(probe(&r[..6], ToServer, false), Confidence::NeedMore);
    assert_eq!(probe(b"GET / HTTP/1.1\r\n", ToServer, true), Confidence::No);
    assert_eq!(
        probe(
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            ToServer,
            true
        ),
        Confidence::No
    );
    let resp = metadata_resp(1, 1, &[]);
    assert_eq!(probe(&resp, ToClient, false), Confidence::No);
    assert_eq!(probe(&resp, ToClient, true), Confidence::Port);
}

#[test]
fn every_kafka_capture_of_the_corpus_decodes_the_same_however_cut() {
    let Some(dir) = testkit::pcaps() else { return };
    let mut files: Vec<_> = std::fs::read_dir(dir.join("deepflow/kafka"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for f in files {
        let rel = f.strip_prefix(&dir).unwrap().to_string_lossy().into_owned();
        let segs = testkit::read(&rel).unwrap();
        // The broker's port: the one of the first request-looking segment's destination.
        let Some(port) = segs
            .iter()
            .find(|s| probe(&s.payload, ToServer, false) == Confidence::Likely)
            .map(|s| s.dst.1)
        else {
            continue;
        };
        let feed = testkit::tcp(&segs, port);
        let conv: Vec<(Direction, Vec<u8>)> = feed
            .into_iter()
            .filter_map(|f| match f {
                testkit::Feed::Data(d, b, _) => Some((d, b)),
                testkit::Feed::Gap(..) => None,
            })
            .collect();
        let txs = check(&conv);
        assert!(!txs.is_empty(), "{rel}");
    }
}

#[test]
fn a_capture_that_saw_the_broker_first_swaps_the_roles() {
    // The flow took the broker for the client: its response came first in the capture.
    let hb = |w: &mut W| {
        w.str(Some("billing"))
            .i32(3)
            .str(Some("member-1"))
            .str(None)
            .tags();
    };
    let conv = vec![
        (
            ToServer,
            resp(12, 4, 77, |w| {
                w.i32(0).i16(0).tags();
            }),
        ),
        (ToClient, req(12, 4, 77, hb)),
        (ToClient, req(12, 4, 78, hb)),
        (
            ToServer,
            resp(12, 4, 78, |w| {
                w.i32(0).i16(27).tags();
            }),
        ),
    ];
    let txs = check(&conv);
    let got: Vec<(String, Vec<&str>, Option<&str>)> = txs
        .iter()
        .map(|t| {
            let r = t.completeness.reasons().collect();
            (t.operation.to_string(), r, t.error.as_deref())
        })
        .collect();
    // The first response preceded its request: it pairs with nothing, and the request
    // is passed over by the next response. The second pair is whole.
    assert_eq!(
        got,
        [
            ("unknown".to_string(), vec!["no_request"], None),
            ("Heartbeat".to_string(), vec!["no_response"], None),
            (
                "Heartbeat".to_string(),
                vec![],
                Some("REBALANCE_IN_PROGRESS")
            ),
        ]
    );
}

#[test]
fn a_response_to_acks_zero_is_dropped_not_reported_unpaired() {
    // Apache Kafka never answers acks=0; tansu does.
    let conv = vec![
        (
            ToServer,
            produce(9, 4, 0, "logs", &[(0, batch(0, 2, false, 5))]),
        ),
        (ToClient, produce_resp(9, 4, "logs", &[(0, 0)])),
        (ToServer, metadata_req(9, 5)),
        (ToClient, metadata_resp(9, 5, &[])),
    ];
    let txs = check(&conv);
    let ops: Vec<&str> = txs.iter().map(|t| t.operation.as_str()).collect();
    assert_eq!(ops, ["Produce", "Metadata"]);
    assert!(txs.iter().all(|t| t.completeness.is_complete()));
}

/// The telemetry mapping: Kafka calls become `messaging.client.operation.duration` series,
/// and the same series count the messages sent (Produce) and consumed (Fetch).
#[test]
fn calls_become_messaging_series_with_message_counters() {
    use crate::stats::{HistogramSpec, Metric, Value, WorkerStats, histogram};
    let conv = vec![
        (
            ToServer,
            produce(9, 1, 1, "orders", &[(0, batch(0, 3, false, 5))]),
        ),
        (ToClient, produce_resp(9, 1, "orders", &[(0, 0)])),
        (ToServer, fetch_req(12, 2, Ok("orders"), &[0])),
        (
            ToClient,
            fetch_resp(12, 2, Ok("orders"), &[(0, 0, batch(0, 3, false, 5))]),
        ),
        (
            ToServer,
            produce(9, 3, 1, "orders", &[(0, batch(3, 2, false, 5))]),
        ),
        (ToClient, produce_resp(9, 3, "orders", &[(0, 0)])),
    ];
    let txs = check(&conv);
    let mut s = WorkerStats::new(
        HistogramSpec::Explicit(std::sync::Arc::from(histogram::DEFAULT_BOUNDS)),
        100,
    );
    for tx in &txs {
        s.transaction(tx);
    }
    let d = s.take_delta();
    let mut got: Vec<(Metric, String, String)> = Vec::new();
    for (k, v) in d.sorted() {
        let get = |n: &str| {
            k.attrs
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, v)| v.to_string())
                .unwrap_or_default()
        };
        assert_eq!(get("messaging.system"), "kafka");
        assert_eq!(get("messaging.destination.name"), "orders");
        let n = match v {
            Value::Counter(c) => c.to_string(),
            Value::Histogram(_) => format!("{} calls", v.count()),
            Value::Gauge(g) => g.to_string(),
        };
        got.push((k.metric, get("messaging.operation.name"), n));
    }
    got.sort();
    assert_eq!(
        got,
        [
            (
                Metric::MessagingClientDuration,
                "receive".into(),
                "1 calls".into()
            ),
            (
                Metric::MessagingClientDuration,
                "send".into(),
                "2 calls".into()
            ),
            (Metric::MessagingSentMessages, "send".into(), "5".into()),
            (
                Metric::MessagingConsumedMessages,
                "receive".into(),
                "3".into()
            ),
        ]
    );
}

/// The oracle: a request and its response of every version of every API kafka-python's
/// protocol classes (generated from Apache Kafka's own JSON message schemas) encode, each
/// field set to a recognisable value (`oracle/generate.py`). Every one is framed, paired
/// and named, never found malformed; where the decoder walks the message, the topic,
/// partition, error, consumer group and record count the schema put in are reported.
#[test]
fn every_version_of_every_api_as_kafkas_own_schemas_encode_it() {
    let unhex = |s: &str| -> Vec<u8> {
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    };
    let mut walked = 0;
    // Cases whose error, group, topic and partition, record count were checked.
    let mut checked = [0; 4];
    let cases = include_str!("oracle/cases.jsonl");
    for line in cases.lines() {
        let c: serde_json::Value = serde_json::from_str(line).unwrap();
        let api = c["api"].as_i64().unwrap() as i16;
        let v = c["version"].as_i64().unwrap() as i16;
        let what = format!("{} v{v}", c["name"].as_str().unwrap());
        // The flexible versions as the schemas say.
        assert_eq!(
            flexible_from(api).is_some_and(|f| v >= f),
            c["flexible"].as_bool().unwrap(),
            "{what}: flexible"
        );
        let conv = [
            (ToServer, unhex(c["request"].as_str().unwrap())),
            (ToClient, unhex(c["response"].as_str().unwrap())),
        ];
        let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, &b[..])).collect();
        let txs = testkit::feed_whole(&mut KafkaParser::new(&shared()), &chunks);
        let bytewise = testkit::feed_bytewise(&mut KafkaParser::new(&shared()), &chunks);
        assert_eq!(
            txs.iter().map(testkit::shape).collect::<Vec<_>>(),
            bytewise.iter().map(testkit::shape).collect::<Vec<_>>(),
            "{what}: one byte at a time"
        );
        assert_eq!(txs.len(), 1, "{what}: {txs:#?}");
        let t = &txs[0];
        assert_eq!(Some(t.operation.as_str()), api_name(api), "{what}");
        assert!(t.completeness.is_complete(), "{what}: {:?}", t.completeness);
        assert_eq!(s(t, "messaging.client.id"), "oracle", "{what}");
        let req_walked = parser::schema(api, v, parser::Side::Requests).is_some();
        let resp_walked = parser::schema(api, v, parser::Side::Responses).is_some();
        walked += usize::from(req_walked || resp_walked);
        let has = |side: &str, k: &str| c[side].get(k).is_some();
        if resp_walked && has("response_has", "error") {
            assert_eq!(
                t.error.as_deref(),
                Some("UNKNOWN_TOPIC_OR_PARTITION"),
                "{what}"
            );
            checked[0] += 1;
        }
        if req_walked && has("request_has", "group") {
            assert_eq!(s(t, "messaging.consumer.group.name"), "billing", "{what}");
            checked[1] += 1;
        }
        let topical = matches!(api, 0 | 1 | 2 | 8);
        if topical && (req_walked || resp_walked) {
            let named = s(t, "messaging.destination.name") == "orders"
                || s(t, "podtap.kafka.topic_id") == "11223344-5566-7788-99aa-bbccddeeff00";
            assert!(named, "{what}: {:?}", t.attrs);
            assert_eq!(s(t, "messaging.destination.partition.id"), "5", "{what}");
            checked[2] += 1;
        }
        if matches!(api, 0 | 1) && (req_walked || resp_walked) {
            assert_eq!(s(t, "messaging.batch.message_count"), "3", "{what}");
            checked[3] += 1;
        }
        let all = format!("{:?}", t.attrs);
        assert!(!all.contains("hunter2"), "{what}: {all}");
    }
    assert!(walked > 150, "{walked} cases walked");
    assert_eq!(checked, [170, 71, 56, 33], "{walked} walked");
}

#[test]
fn partition_ids_read_as_their_numbers_from_the_table_and_beyond() {
    for p in [0, 1, 9, 10, 15, 16, 99, 123_456, -1, i32::MAX, i32::MIN] {
        assert_eq!(super::partition_text(p), p.to_string(), "{p}");
    }
}

#[test]
fn the_whole_walks_layout_agrees_with_the_schema_tables() {
    for api in -2..100 {
        for v in -2..25 {
            for side in [parser::Side::Requests, parser::Side::Responses] {
                let tables = parser::schema(api, v, side).map(|f| (f, flexible_from(api).is_some_and(|f| v >= f)));
                let layout = parser::layout(api, v, side);
                assert_eq!(tables.map(|(f, x)| (f.as_ptr(), x)), layout.map(|(f, x)| (f.as_ptr(), x)), "{api} v{v} {side:?}");
            }
        }
    }
}
