use super::*;
use crate::proto::AttrValue;
use parser::*;

fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    v.push(ty);
    v.push(flags);
    v.extend_from_slice(&stream.to_be_bytes());
    v.extend_from_slice(payload);
    v
}

/// A literal header without indexing, new name (0x00), plain strings.
fn lit(name: &str, value: &str) -> Vec<u8> {
    let mut v = vec![0x00, name.len() as u8];
    v.extend_from_slice(name.as_bytes());
    v.push(value.len() as u8);
    v.extend_from_slice(value.as_bytes());
    v
}

/// A literal with incremental indexing and a Huffman-coded value, name from the static
/// table.
fn lit_indexed_huff(name_idx: u8, value: &str) -> Vec<u8> {
    let enc = huffman::encode(value.as_bytes());
    let mut v = vec![0x40 | name_idx, 0x80 | enc.len() as u8];
    v.extend_from_slice(&enc);
    v
}

fn settings_frame() -> Vec<u8> {
    frame(SETTINGS, 0, 0, &[0, 1, 0, 0, 0x10, 0, 0, 3, 0, 0, 0, 100])
}

type Chunk = (Direction, Vec<u8>);

/// Feed chunks whole, one byte at a time, and split at every position of each chunk;
/// every way must give the same transactions and the same counts.
fn run_all_ways(chunks: &[Chunk]) -> (Vec<Transaction>, HttpStats) {
    let run = |split: &dyn Fn(&[u8]) -> Vec<Vec<u8>>| {
        let mut p = Http2Parser::default();
        let mut out = Vec::new();
        for (i, (dir, bytes)) in chunks.iter().enumerate() {
            for piece in split(bytes) {
                // Each chunk of the test is one "segment": its time is its index.
                p.on_data(*dir, &piece, Timestamp(1000 * (i as u64 + 1)), &mut out);
            }
        }
        p.on_close(Timestamp(1_000_000), false, &mut out);
        (out, p.take_stats())
    };
    let whole = run(&|b| vec![b.to_vec()]);
    let bytes = run(&|b| b.iter().map(|c| vec![*c]).collect());
    assert_eq!(
        format!("{:?}", whole),
        format!("{:?}", bytes),
        "byte at a time"
    );
    let longest = chunks.iter().map(|c| c.1.len()).max().unwrap_or(0);
    for at in 1..longest {
        let split = run(&|b: &[u8]| {
            let k = at.min(b.len());
            vec![b[..k].to_vec(), b[k..].to_vec()]
        });
        assert_eq!(
            format!("{:?}", whole),
            format!("{:?}", split),
            "split at {at}"
        );
    }
    whole
}

fn s(tx: &Transaction, key: &str) -> Option<String> {
    match tx.attr(key) {
        Some(AttrValue::Str(v)) => Some(v.to_string()),
        Some(AttrValue::Int(v)) => Some(v.to_string()),
        Some(AttrValue::Bool(v)) => Some(v.to_string()),
        None => None,
    }
}

fn request_block(path: &str) -> Vec<u8> {
    // :method GET, :scheme http, :path (literal, name index 4), :authority (indexed name 1,
    // Huffman, added to the table).
    let mut b = vec![0x82, 0x86];
    b.extend_from_slice(&[0x04, path.len() as u8]);
    b.extend_from_slice(path.as_bytes());
    b.extend(lit_indexed_huff(1, "api.example:8080"));
    b
}

#[test]
fn prior_knowledge_requests_and_responses() {
    let mut c1 = PREFACE.to_vec();
    c1.extend(settings_frame());
    let mut block = request_block("/users/42");
    block.extend(lit(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    ));
    block.extend(lit("user-agent", "curl/8"));
    c1.extend(frame(HEADERS, END_HEADERS | END_STREAM, 1, &block));
    // Second request reuses the :authority entry (62) from the dynamic table.
    let mut block3 = vec![0x82, 0x86, 0x04, 4];
    block3.extend_from_slice(b"/a/b");
    block3.push(0xbe);
    c1.extend(frame(HEADERS, END_HEADERS, 3, &block3));
    c1.extend(frame(DATA, END_STREAM, 3, b"hello"));
    let mut s1 = settings_frame();
    s1.extend(frame(SETTINGS, ACK, 0, &[]));
    s1.extend(frame(HEADERS, END_HEADERS, 3, &[0x8d])); // :status 404
    s1.extend(frame(DATA, 0, 3, b"not"));
    s1.extend(frame(DATA, END_STREAM | PADDED, 3, &[2, b'!', 0, 0]));
    let s2 = frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]); // 200, no body
    let (txs, stats) = run_all_ways(&[
        (Direction::ToServer, c1),
        (Direction::ToClient, s1),
        (Direction::ToClient, s2),
    ]);
    assert_eq!(stats, HttpStats::default());
    assert_eq!(txs.len(), 2);
    let t3 = &txs[0];
    assert_eq!(t3.protocol, Protocol::Http2);
    assert_eq!(
        (t3.operation.as_str(), t3.resource.as_str()),
        ("GET", "/a/b")
    );
    assert_eq!(t3.status, Some(404));
    assert!(t3.completeness.is_complete(), "{:?}", t3.completeness);
    assert_eq!(s(t3, "server.address").as_deref(), Some("api.example"));
    assert_eq!(s(t3, "http.request.body.size").as_deref(), Some("5"));
    assert_eq!(s(t3, "http.response.body.size").as_deref(), Some("4"));
    // The decoder does not know which end it sees: a 404 is left to `stats::settle_error`.
    assert_eq!(t3.error, None);
    assert_eq!(t3.req_bytes, (9 + block3.len() + 9 + 5) as u64);
    assert_eq!(t3.resp_bytes, (9 + 1 + 9 + 3 + 9 + 4) as u64);
    assert_eq!((t3.start, t3.end), (Timestamp(1000), Timestamp(2000)));
    let t1 = &txs[1];
    assert_eq!(t1.resource, "/users/{id}");
    assert_eq!(s(t1, "url.path").as_deref(), Some("/users/42"));
    assert_eq!(s(t1, "http.route").as_deref(), Some("/users/{id}"));
    assert_eq!(s(t1, "network.protocol.version").as_deref(), Some("2"));
    assert_eq!(s(t1, "user_agent.original").as_deref(), Some("curl/8"));
    assert_eq!(t1.trace.as_ref().map(|t| t.format), Some("traceparent"));
    assert_eq!((t1.status, t1.end), (Some(200), Timestamp(3000)));
}

fn grpc_request(stream: u32) -> Vec<u8> {
    let mut b = vec![0x83, 0x86];
    b.extend(lit(":path", "/helloworld.Greeter/SayHello"));
    b.extend(lit("content-type", "application/grpc"));
    let mut f = frame(HEADERS, END_HEADERS, stream, &b);
    f.extend(frame(DATA, END_STREAM, stream, &[0, 0, 0, 0, 2, 8, 1]));
    f
}

#[test]
fn grpc_status_from_trailers_and_trailers_only() {
    let mut c = PREFACE.to_vec();
    c.extend(grpc_request(1));
    c.extend(grpc_request(3));
    let mut resp_head = vec![0x88];
    resp_head.extend(lit("content-type", "application/grpc"));
    let mut srv = frame(HEADERS, END_HEADERS, 1, &resp_head);
    srv.extend(frame(DATA, 0, 1, &[0, 0, 0, 0, 0]));
    srv.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &lit("grpc-status", "0"),
    ));
    // Trailers-only: status and grpc-status in one block.
    let mut only = resp_head.clone();
    only.extend(lit("grpc-status", "5"));
    only.extend(lit("grpc-message", "no such greeting"));
    srv.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &only));
    let (txs, _) = run_all_ways(&[(Direction::ToServer, c), (Direction::ToClient, srv)]);
    assert_eq!(txs.len(), 2);
    for t in &txs {
        assert_eq!(t.protocol, Protocol::Grpc);
        assert_eq!(t.operation, "/helloworld.Greeter/SayHello");
        assert_eq!(t.resource, "/helloworld.Greeter/SayHello");
        assert_eq!(s(t, "rpc.system").as_deref(), Some("grpc"));
        assert_eq!(s(t, "rpc.service").as_deref(), Some("helloworld.Greeter"));
        assert_eq!(s(t, "rpc.method").as_deref(), Some("SayHello"));
        assert_eq!(s(t, "http.response.status_code").as_deref(), Some("200"));
        assert!(t.completeness.is_complete());
    }
    assert_eq!((txs[0].status, txs[0].error.as_deref()), (Some(0), None));
    assert_eq!(s(&txs[0], "rpc.grpc.status_code").as_deref(), Some("0"));
    assert_eq!(
        (txs[1].status, txs[1].error.as_deref()),
        (Some(5), Some("NOT_FOUND"))
    );
    assert_eq!(
        s(&txs[1], "podtap.grpc.message").as_deref(),
        Some("no such greeting")
    );
}

#[test]
fn continuation_padding_and_priority() {
    let block = request_block("/split/here");
    let (a, b) = block.split_at(3);
    let mut payload = vec![4]; // pad length
    payload.extend_from_slice(&[0x80, 0, 0, 1, 16]); // priority: exclusive, dep 1, weight
    payload.extend_from_slice(a);
    payload.extend_from_slice(&[0; 4]);
    let mut c = PREFACE.to_vec();
    c.extend(frame(
        HEADERS,
        PADDED | PRIORITY_FLAG | END_STREAM,
        5,
        &payload,
    ));
    let (b1, b2) = b.split_at(4);
    c.extend(frame(CONTINUATION, 0, 5, b1));
    c.extend(frame(CONTINUATION, END_HEADERS, 5, b2));
    c.extend(frame(PRIORITY, 0, 5, &[0, 0, 0, 0, 1]));
    c.extend(frame(WINDOW_UPDATE, 0, 0, &[0, 1, 0, 0]));
    c.extend(frame(PING, 0, 0, &[0; 8]));
    let srv = frame(HEADERS, END_HEADERS | END_STREAM, 5, &[0x89]); // 204
    let (txs, stats) = run_all_ways(&[(Direction::ToServer, c), (Direction::ToClient, srv)]);
    assert_eq!(stats, HttpStats::default());
    assert_eq!(txs.len(), 1);
    assert_eq!(s(&txs[0], "url.path").as_deref(), Some("/split/here"));
    assert_eq!(txs[0].status, Some(204));
    assert_eq!(
        txs[0].req_bytes,
        (9 + payload.len() + 9 + b1.len() + 9 + b2.len()) as u64
    );
}

#[test]
fn rst_stream_and_goaway_fail_their_streams() {
    let mut c = PREFACE.to_vec();
    for id in [1, 3, 5] {
        c.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            id,
            &request_block("/x"),
        ));
    }
    let mut srv = frame(RST_STREAM, 0, 1, &[0, 0, 0, 8]);
    srv.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 3, 0, 0, 0, 0]));
    srv.extend(frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x88]));
    let (txs, _) = run_all_ways(&[(Direction::ToServer, c), (Direction::ToClient, srv)]);
    let by_id: Vec<_> = txs
        .iter()
        .map(|t| {
            (
                t.error.as_deref(),
                s(t, "podtap.http2.error_code"),
                t.status,
            )
        })
        .collect();
    assert_eq!(
        by_id,
        [
            (Some("rst_stream"), Some("CANCEL".into()), None),
            (Some("goaway"), Some("NO_ERROR".into()), None),
            (None, None, Some(200)),
        ]
    );
    assert!(txs[0].completeness.has(Completeness::RESET));
    assert!(txs[1].completeness.has(Completeness::NO_RESPONSE));
}

#[test]
fn midstream_keeps_static_fields_and_marks_hpack_unknown() {
    // No preface: the client's block references dynamic entries 62 and 63 never seen.
    let c = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        41,
        &[0x83, 0x86, 0xbe, 0xbf],
    );
    let srv = frame(HEADERS, END_HEADERS | END_STREAM, 41, &[0x88, 0xc0]);
    let (txs, stats) = run_all_ways(&[(Direction::ToServer, c), (Direction::ToClient, srv)]);
    assert_eq!(stats, HttpStats::default());
    assert_eq!(txs.len(), 1);
    let t = &txs[0];
    assert_eq!(t.operation, "POST");
    assert_eq!(
        s(t, "url.path"),
        None,
        "the path was a dynamic entry: not guessed"
    );
    assert_eq!(t.status, Some(200));
    assert!(t.completeness.has(Completeness::HPACK_UNKNOWN));
    assert_eq!(
        t.completeness.reasons().collect::<Vec<_>>(),
        ["hpack_unknown"]
    );
}

#[test]
fn midstream_direction_waits_for_a_frame_boundary() {
    // The server's first chunk is the tail of a DATA frame: dropped, not malformed; the
    // next chunk starts a frame and the response is read.
    // (Sync is tried at segment starts, so this is fed as the segments it would be.)
    let mut p = Http2Parser::default();
    let mut txs = Vec::new();
    let c = frame(HEADERS, END_HEADERS, 7, &[0x82, 0x86, 0x84]);
    let garbage = b"\xff\xfe tail of something";
    p.on_data(Direction::ToClient, garbage, Timestamp(1000), &mut txs);
    p.on_data(Direction::ToServer, &c, Timestamp(2000), &mut txs);
    let resp = frame(HEADERS, END_HEADERS | END_STREAM, 7, &[0x8e]);
    p.on_data(Direction::ToClient, &resp, Timestamp(3000), &mut txs);
    assert_eq!(p.take_stats(), HttpStats::default());
    assert_eq!(txs.len(), 1);
    assert_eq!(
        (txs[0].status, txs[0].error.as_deref()),
        (Some(500), Some("500"))
    );
    assert!(txs[0].completeness.is_complete());
}

#[test]
fn malformed_frames_stop_decoding_and_report_pending() {
    let mut p = Http2Parser::default();
    let mut out = Vec::new();
    let mut c = PREFACE.to_vec();
    c.extend(frame(HEADERS, END_HEADERS, 1, &request_block("/")));
    assert_eq!(
        p.on_data(Direction::ToServer, &c, Timestamp(1), &mut out),
        Progress::Continue
    );
    // PING of the wrong length (after a valid frame: the direction is in sync).
    let mut bad = settings_frame();
    bad.extend(frame(PING, 0, 0, &[0; 5]));
    assert_eq!(
        p.on_data(Direction::ToClient, &bad, Timestamp(2), &mut out),
        Progress::Done
    );
    assert_eq!(p.take_stats().parse_errors, 1);
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.has(Completeness::TRUNCATED));
    // CONTINUATION without a block.
    let mut p = Http2Parser::default();
    let mut c = PREFACE.to_vec();
    c.extend(frame(CONTINUATION, END_HEADERS, 1, &[0x82]));
    assert_eq!(
        p.on_data(Direction::ToServer, &c, Timestamp(1), &mut out),
        Progress::Done
    );
}

#[test]
fn oversized_frames_and_too_many_streams_are_bounded_and_counted() {
    let cfg = Http2Config {
        max_streams: 2,
        ..Http2Config::default()
    };
    let mut p = Http2Parser::new(Arc::new(HttpSettings::default()), cfg);
    let mut out = Vec::new();
    let mut c = PREFACE.to_vec();
    for id in [1, 3, 5] {
        c.extend(frame(HEADERS, END_HEADERS, id, &request_block("/")));
    }
    // A 70 000-byte SETTINGS-sized unknown frame is skipped without buffering; a 70 000
    // byte HEADERS frame beyond max_frame_bytes is skipped and counted.
    c.extend(frame(0x42, 0, 0, &vec![0u8; 70_000]));
    c.extend(frame(HEADERS, END_HEADERS, 7, &vec![0x82u8; 70_000]));
    p.on_data(Direction::ToServer, &c, Timestamp(1), &mut out);
    let st = p.take_stats();
    assert_eq!((st.pending_limit, st.buffer_limit), (1, 1));
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.has(Completeness::NO_RESPONSE));
    assert_eq!(p.pending(), 2);
    assert!(p.sides[0].buf.capacity() < 70_000);
}

#[test]
fn random_input_never_panics() {
    let mut next = crate::proto::test_rng(0x2545_f491_4f6c_dd1d);
    let mut base = PREFACE.to_vec();
    base.extend(grpc_request(1));
    base.extend(frame(HEADERS, END_HEADERS, 3, &request_block("/a")));
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 6 {
            let i = (next() as usize) % b.len();
            b[i] ^= 1 << (next() % 8);
        }
        let mut p = Http2Parser::default();
        let mut out = Vec::new();
        let cut = (next() as usize) % b.len();
        p.on_data(Direction::ToServer, &b[..cut], Timestamp(1), &mut out);
        p.on_data(Direction::ToServer, &b[cut..], Timestamp(2), &mut out);
        p.on_data(Direction::ToClient, &b[24..], Timestamp(3), &mut out);
        p.on_close(Timestamp(4), true, &mut out);
    }
}

/// The shared test kit: two prior-knowledge requests and their responses, whole, byte by
/// byte, split everywhere, with a gap in each chunk and picked up after each chunk.
#[test]
fn testkit_feeds_every_way() {
    let mut c1 = PREFACE.to_vec();
    c1.extend(settings_frame());
    c1.extend(frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        1,
        &request_block("/users/42"),
    ));
    let s1 = frame(HEADERS, END_HEADERS | END_STREAM, 1, &[0x88]);
    let c2 = frame(
        HEADERS,
        END_HEADERS | END_STREAM,
        3,
        &request_block("/orders"),
    );
    let s2 = frame(HEADERS, END_HEADERS | END_STREAM, 3, &[0x8d]);
    let conv: Vec<crate::proto::testkit::Chunk> = vec![
        (Direction::ToServer, &c1[..]),
        (Direction::ToClient, &s1[..]),
        (Direction::ToServer, &c2[..]),
        (Direction::ToClient, &s2[..]),
    ];
    let out = crate::proto::testkit::check_all(Http2Parser::default, &conv);
    let got: Vec<_> = out
        .iter()
        .map(|t| (t.resource.to_string(), t.status))
        .collect();
    assert_eq!(
        got,
        [
            ("/users/{id}".to_string(), Some(200)),
            ("/orders".to_string(), Some(404))
        ]
    );
}
