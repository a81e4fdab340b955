//! HTTP/1 decoder tests on real request and response bytes. Every conversation is fed
//! whole, one byte at a time, and split at every position; all must agree.

use super::*;
use crate::proto::AttrValue;
use crate::proto::http_common::HttpConfig;

use Direction::{ToClient as C, ToServer as S};

/// Feed a conversation (direction, bytes) pieces of at most `chunk` bytes; close at the end.
fn run_with(
    conv: &[(Direction, &[u8])],
    chunk: usize,
    close: bool,
    settings: HttpSettings,
) -> Vec<Transaction> {
    let mut p = Http1Parser::new(Arc::new(settings));
    let mut out = Vec::new();
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        for piece in bytes.chunks(chunk.max(1)) {
            p.on_data(*dir, piece, Timestamp(1000 * (i as u64 + 1)), &mut out);
        }
    }
    if close {
        p.on_close(Timestamp(1_000_000), false, &mut out);
    }
    out
}

/// What a transaction looks like for comparisons (timestamps depend on chunking).
fn shape(t: &Transaction) -> String {
    format!(
        "{} {} {:?} {:?} req={} resp={} {:?} {:?}",
        t.operation,
        t.resource,
        t.status,
        t.error,
        t.req_bytes,
        t.resp_bytes,
        t.completeness.reasons().collect::<Vec<_>>(),
        t.trace.as_ref().map(|c| c.format)
    )
}

/// Run whole, byte by byte, and with every two-way split of each message; all must match.
fn run(conv: &[(Direction, &[u8])], close: bool) -> Vec<Transaction> {
    let whole = run_with(conv, usize::MAX, close, HttpSettings::default());
    let want: Vec<String> = whole.iter().map(shape).collect();
    let bytewise: Vec<String> = run_with(conv, 1, close, HttpSettings::default())
        .iter()
        .map(shape)
        .collect();
    assert_eq!(bytewise, want, "one byte at a time");
    for (k, (_, msg)) in conv.iter().enumerate() {
        for cut in 1..msg.len() {
            let mut p = Http1Parser::default();
            let mut out = Vec::new();
            for (i, (dir, bytes)) in conv.iter().enumerate() {
                let ts = Timestamp(1000 * (i as u64 + 1));
                if i == k {
                    p.on_data(*dir, &bytes[..cut], ts, &mut out);
                    p.on_data(*dir, &bytes[cut..], ts, &mut out);
                } else {
                    p.on_data(*dir, bytes, ts, &mut out);
                }
            }
            if close {
                p.on_close(Timestamp(1_000_000), false, &mut out);
            }
            let got: Vec<String> = out.iter().map(shape).collect();
            assert_eq!(got, want, "split message {k} at {cut}");
        }
    }
    whole
}

fn attr<'a>(t: &'a Transaction, k: &str) -> Option<&'a AttrValue> {
    t.attr(k)
}

const GET: &[u8] =
    b"GET /users/42?x=1 HTTP/1.1\r\nHost: api.example:8080\r\nUser-Agent: curl/8\r\n\r\n";
const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";

#[test]
fn header_tokens_are_found_in_lists_and_alone() {
    for (v, t, want) in [
        (&b"close"[..], "close", true),
        (b" Close ", "close", true),
        (b"keep-alive", "close", false),
        (b"closed", "close", false),
        (b"Keep-Alive, close", "close", true),
        (b"gzip ,chunked", "chunked", true),
        (b"chunked, gzip", "chunked", true),
        (b"gzip, deflate", "chunked", false),
        (b"", "close", false),
        (b",", "close", false),
        // Raw field values: the space after the colon and the line's CR are still there.
        (b" keep-alive\r", "close", false),
        (b" close\r", "close", true),
        (b"\tchunked \r", "chunked", true),
        (b" gzip, chunked\r", "chunked", true),
    ] {
        assert_eq!(
            header_has_token(v, t),
            want,
            "{:?} {t}",
            String::from_utf8_lossy(v)
        );
    }
}

#[test]
fn host_names_lose_their_port_and_brackets() {
    for (value, host) in [
        ("api.example", "api.example"),
        ("api.example:8080", "api.example"),
        ("10.0.0.1:65535", "10.0.0.1"),
        ("[::1]:8080", "::1"),
        ("[fe80::1]", "fe80::1"),
        ("localhost:", "localhost"),
        ("", ""),
    ] {
        assert_eq!(host_name(value), host, "{value}");
    }
}

#[test]
fn field_values_lose_their_optional_whitespace() {
    // Values with spaces, tabs and a bare LF around them; captured headers, the host, the
    // user agent, the trace header and the framing fields all see the trimmed value.
    let cfg = HttpConfig {
        capture_headers: vec!["X-Request-Id".into(), "Authorization".into()],
        ..Default::default()
    };
    let req: &[u8] = b"POST /a HTTP/1.1\r\nHost:\t api.example:80 \r\nUser-Agent:  ua/1\t\r\n\
        X-Request-Id:   r-1  \r\nAuthorization: Bearer x\r\n\
        traceparent:  00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01 \r\n\
        Content-Length: \t2 \nTransfer-Encoding:  identity \r\n\r\nok";
    let resp: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length:  1 \r\nConnection:   close\r\n\r\nx";
    let t = run_with(
        &[(S, req), (C, resp)],
        usize::MAX,
        false,
        HttpSettings::new(cfg).unwrap(),
    );
    assert_eq!(t.len(), 1);
    let s = |v: &str| Some(AttrValue::Str(v.into()));
    for (k, v) in [
        ("server.address", "api.example"),
        ("user_agent.original", "ua/1"),
        ("http.request.header.x-request-id", "r-1"),
        ("http.request.header.authorization", "[REDACTED]"),
    ] {
        assert_eq!(attr(&t[0], k).cloned(), s(v), "{k}");
    }
    assert_eq!(
        attr(&t[0], "http.request.body.size"),
        Some(&AttrValue::Int(2))
    );
    assert_eq!(
        attr(&t[0], "http.response.body.size"),
        Some(&AttrValue::Int(1))
    );
    assert_eq!(t[0].trace.as_ref().map(|c| c.format), Some("traceparent"));
    assert_eq!(
        (t[0].req_bytes, t[0].resp_bytes),
        (req.len() as u64, resp.len() as u64)
    );
}

#[test]
fn keep_alive_requests_pair_in_order() {
    let conv = [
        (S, GET),
        (C, OK),
        (S, b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n".as_slice()),
        (
            C,
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".as_slice(),
        ),
        (S, GET),
        (
            C,
            b"HTTP/1.1 500 Oops\r\nContent-Length: 3\r\n\r\nerr".as_slice(),
        ),
    ];
    let t = run(&conv, false);
    assert_eq!(t.len(), 3);
    assert_eq!(
        (t[0].operation.as_str(), t[0].resource.as_str(), t[0].status),
        ("GET", "/users/{id}", Some(200))
    );
    assert_eq!(t[0].req_bytes, GET.len() as u64);
    assert_eq!(t[0].resp_bytes, OK.len() as u64);
    assert_eq!(
        attr(&t[0], "server.address"),
        Some(&AttrValue::Str("api.example".into()))
    );
    assert_eq!(
        attr(&t[0], "url.path"),
        Some(&AttrValue::Str("/users/42".into()))
    );
    assert_eq!((t[0].start, t[0].end), (Timestamp(1000), Timestamp(2000)));
    assert_eq!((t[1].status, &t[1].error), (Some(404), &None));
    assert_eq!(
        (t[2].status, t[2].error.as_deref()),
        (Some(500), Some("500"))
    );
    assert!(t.iter().all(|t| t.completeness.is_complete()));
}

#[test]
fn pipelined_requests_match_responses_fifo() {
    let reqs = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\nHEAD /3 HTTP/1.1\r\nHost: h\r\n\r\n";
    let resps = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\naHTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nbbHTTP/1.1 200 OK\r\nContent-Length: 999\r\n\r\n";
    let t = run(&[(S, reqs), (C, resps)], false);
    let got: Vec<_> = t.iter().map(|t| (t.resource.as_str(), t.status)).collect();
    assert_eq!(
        got,
        [
            ("/{id}", Some(200)),
            ("/{id}", Some(201)),
            ("/{id}", Some(200))
        ],
        "HEAD response has no body"
    );
}

#[test]
fn chunked_with_extensions_and_trailers() {
    let resp = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: t\r\n\r\n";
    let t = run(&[(S, GET), (C, resp), (S, GET), (C, OK)], false);
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].resp_bytes, resp.len() as u64);
    assert_eq!(
        attr(&t[0], "http.response.body.size"),
        Some(&AttrValue::Int((resp.len() - 47) as i64))
    );
}

#[test]
fn continue_then_final_response_and_post_body() {
    let req_head =
        b"POST /upload HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\nExpect: 100-continue\r\n\r\n";
    let t = run(
        &[
            (S, req_head),
            (C, b"HTTP/1.1 100 Continue\r\n\r\n"),
            (S, b"0123456789"),
            (C, b"HTTP/1.1 204 No Content\r\n\r\n"),
        ],
        false,
    );
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].status, Some(204));
    assert_eq!(t[0].req_bytes, req_head.len() as u64 + 10);
    assert_eq!(t[0].resp_bytes, 25 + 27);
    assert_eq!(
        attr(&t[0], "podtap.http.interim_status"),
        Some(&AttrValue::Int(100))
    );
}

#[test]
fn not_modified_and_http10_body_until_close() {
    let t = run(
        &[
            (S, GET),
            (
                C,
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
            ),
            (S, b"GET /old HTTP/1.0\r\n\r\n"),
            (C, b"HTTP/1.0 200 OK\r\n\r\nbody to the end"),
        ],
        true,
    );
    assert_eq!(t.len(), 2);
    assert_eq!(t[0].status, Some(304));
    assert_eq!(t[1].status, Some(200));
    assert!(
        t[1].completeness.is_complete(),
        "a body delimited by close completes at close"
    );
    assert_eq!(
        attr(&t[1], "http.response.body.size"),
        Some(&AttrValue::Int(15))
    );
}

#[test]
fn websocket_upgrade_stops_decoding() {
    let req = b"GET /ws HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    assert_eq!(
        p.on_data(S, req, Timestamp(1), &mut out),
        Progress::Continue
    );
    let r = p.on_data(
        C,
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x05hello",
        Timestamp(2),
        &mut out,
    );
    assert_eq!(r, Progress::Done);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].status, Some(101));
    assert_eq!(
        attr(&out[0], "podtap.http.upgrade"),
        Some(&AttrValue::Str("websocket".into()))
    );
}

#[test]
fn reset_with_pending_requests_and_response_without_request() {
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    p.on_data(C, OK, Timestamp(1), &mut out);
    assert!(out[0].completeness.has(Completeness::NO_REQUEST));
    p.on_data(S, GET, Timestamp(2), &mut out);
    p.on_close(Timestamp(9), true, &mut out);
    assert_eq!(out.len(), 2);
    assert!(
        out[1].completeness.has(Completeness::RESET)
            && out[1].completeness.has(Completeness::NO_RESPONSE)
    );
    assert_eq!(out[1].end, Timestamp(9));
}

#[test]
fn timeout_and_pending_limit() {
    let cfg = crate::proto::http_common::HttpConfig {
        max_pending: 2,
        ..Default::default()
    };
    let mut p = Http1Parser::new(Arc::new(HttpSettings::new(cfg).unwrap()));
    let mut out = Vec::new();
    for i in 0..3 {
        p.on_data(S, GET, Timestamp(i), &mut out);
    }
    assert_eq!(
        out.len(),
        1,
        "the oldest is reported when the pending limit is hit"
    );
    assert_eq!(p.take_stats().pending_limit, 1);
    p.on_tick(Timestamp(1_000_000_000), 500_000_000, &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(out[2].error.as_deref(), Some("timeout"));
    assert_eq!(p.pending(), 0);
}

#[test]
fn gap_in_body_is_skipped_and_gap_in_headers_resyncs() {
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    p.on_data(S, GET, Timestamp(1), &mut out);
    p.on_data(
        C,
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nab",
        Timestamp(2),
        &mut out,
    );
    p.on_gap(C, 5);
    p.on_data(C, b"cde", Timestamp(3), &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.has(Completeness::GAP));
    assert_eq!(out[0].resp_bytes, 39 + 10);
    // A gap inside a request head: the rest is garbage until the next request line.
    p.on_data(S, b"GET /lost HTTP/1.1\r\nHo", Timestamp(4), &mut out);
    p.on_gap(S, 7);
    p.on_data(
        S,
        b"xx\r\n\r\nGET /next HTTP/1.1\r\nHost: h\r\n\r\n",
        Timestamp(5),
        &mut out,
    );
    p.on_data(C, OK, Timestamp(6), &mut out);
    p.on_data(C, OK, Timestamp(7), &mut out);
    let got: Vec<_> = out
        .iter()
        .map(|t| (t.resource.as_str(), t.completeness.has(Completeness::GAP)))
        .collect();
    assert_eq!(got[1..], [("/lost", true), ("/next", false)]);
}

#[test]
fn secrets_never_appear() {
    let req = b"GET /p?token=abc HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer s3cr3t\r\nCookie: sid=s3cr3t\r\n\r\n";
    let t = run(&[(S, req), (C, OK)], false);
    let dump = format!("{:?}", t[0]);
    assert!(
        !dump.contains("s3cr3t") && !dump.contains("token=abc"),
        "{dump}"
    );
}

#[test]
fn trace_context_from_headers() {
    let req = b"GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\r\n";
    let t = run(&[(S, req), (C, OK)], false);
    assert_eq!(t[0].trace.as_ref().map(|c| c.format), Some("traceparent"));
}

#[test]
fn oversized_head_is_truncated_and_counted() {
    let cfg = crate::proto::http_common::HttpConfig {
        max_header_bytes: 64,
        ..Default::default()
    };
    let long = format!(
        "GET / HTTP/1.1\r\nHost: h\r\nX-Long: {}\r\n\r\n",
        "a".repeat(200)
    );
    let conv = [
        (S, long.as_bytes()),
        (S, b"GET /users/42 HTTP/1.1\r\nHost: h\r\n\r\n".as_slice()),
        (C, OK),
    ];
    let t = run_with(&conv, 7, true, HttpSettings::new(cfg.clone()).unwrap());
    // The oversized request is reported with its method and path, marked truncated, and
    // answered by the first response; decoding resumes at the next request.
    assert_eq!(t.len(), 2);
    assert_eq!((t[0].operation.as_str(), t[0].resource.as_str()), ("GET", "/"));
    assert_eq!(t[0].status, Some(200));
    assert!(t[0].completeness.has(Completeness::TRUNCATED));
    assert_eq!(t[1].resource, "/users/{id}");
    assert!(t[1].completeness.has(Completeness::NO_RESPONSE));
    // The same however the bytes come: one per segment included.
    let settings = Arc::new(HttpSettings::new(cfg).unwrap());
    let conv: Vec<crate::proto::testkit::Chunk> = conv.to_vec();
    let all = crate::proto::testkit::check_all(|| Http1Parser::new(settings.clone()), &conv);
    assert_eq!(all.len(), 2);
}

/// The largest head allowed (16 KiB, 170 fields) decodes whole however it is cut, one
/// byte per segment included; a response head over the limit still answers its request.
#[test]
fn a_head_at_the_limit_decodes_when_dripped() {
    let mut head = String::from("POST /orders/7 HTTP/1.1\r\nHost: shop\r\n");
    for i in 0..170 {
        head.push_str(&format!("X-Field-{i:03}: {}\r\n", "v".repeat(78)));
    }
    head.push_str("Content-Length: 2\r\n\r\nok");
    assert!(head.len() > 15_000 && head.len() <= 16 * 1024, "{}", head.len());
    let big_response = format!(
        "HTTP/1.1 503 Busy\r\nX-Pad: {}\r\nContent-Length: 0\r\n\r\n",
        "p".repeat(20_000)
    );
    let conv = [
        (S, head.as_bytes()),
        (C, OK),
        (S, GET),
        (C, big_response.as_bytes()),
    ];
    let settings = Arc::new(HttpSettings::new(HttpConfig::default()).unwrap());
    let mut out = Vec::new();
    let mut p = Http1Parser::new(settings);
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        for b in bytes.chunks(1) {
            p.on_data(*dir, b, Timestamp(1 + i as u64), &mut out);
        }
    }
    p.on_close(Timestamp(10), false, &mut out);
    assert_eq!(out.len(), 2);
    assert_eq!((out[0].operation.as_str(), out[0].status), ("POST", Some(200)));
    assert!(out[0].completeness.is_complete(), "{:?}", out[0].completeness);
    assert_eq!(out[1].status, Some(503), "the oversized response's status");
    assert!(out[1].completeness.has(Completeness::TRUNCATED));
}

#[test]
fn random_bytes_never_panic() {
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seeds: [&[u8]; 4] = [
        GET,
        OK,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc",
    ];
    for _ in 0..3000 {
        let mut p = Http1Parser::default();
        let mut out = Vec::new();
        for _ in 0..4 {
            let mut m = seeds[(next() % 4) as usize].to_vec();
            for _ in 0..(next() % 6) {
                let i = (next() as usize) % m.len();
                m[i] = next() as u8;
            }
            let dir = if next() % 2 == 0 { S } else { C };
            let cut = (next() as usize) % (m.len() + 1);
            p.on_data(dir, &m[..cut], Timestamp(1), &mut out);
            if next() % 5 == 0 {
                p.on_gap(dir, (next() % 100) as u32);
            }
            p.on_data(dir, &m[cut..], Timestamp(2), &mut out);
        }
        p.on_tick(Timestamp(u64::MAX / 2), 1, &mut out);
        p.on_close(Timestamp(3), next() % 2 == 0, &mut out);
        assert_eq!(p.pending(), 0);
    }
}

#[test]
fn connect_tunnel_carrying_http_is_decoded_and_tls_stops() {
    let connect = b"CONNECT example.com:80 HTTP/1.1\r\nHost: example.com:80\r\n\r\n";
    let established = b"HTTP/1.1 200 Connection established\r\n\r\n";
    let get = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n";
    let t = run(&[(S, connect), (C, established), (S, get), (C, OK)], false);
    let got: Vec<_> = t.iter().map(|t| (t.operation.as_str(), t.status)).collect();
    assert_eq!(got, [("CONNECT", Some(200)), ("GET", Some(200))]);
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    p.on_data(S, connect, Timestamp(1), &mut out);
    p.on_data(C, established, Timestamp(2), &mut out);
    let tls = [0x16, 3, 1, 0, 5];
    assert_eq!(p.on_data(S, &tls, Timestamp(3), &mut out), Progress::Done);
}

#[test]
fn content_length_values() {
    assert_eq!(parse_len(b"12"), Some(12));
    assert_eq!(parse_len(b" 0 "), Some(0));
    assert_eq!(parse_len(b"18446744073709551615"), Some(u64::MAX));
    for bad in [
        &b""[..],
        b"18446744073709551616",
        b"+1",
        b"-1",
        b"1 2",
        b"0x10",
        b"\xff",
    ] {
        assert_eq!(parse_len(bad), None, "{bad:?}");
    }
}

#[test]
fn a_whole_response_lost_in_a_gap_does_not_stall_the_connection() {
    // Keep-alive with bodies that end without a newline (as nginx serving a small file):
    // after the gap the next response starts the next segment and must be found there.
    const SMALL: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    for i in 0..5 {
        p.on_data(
            S,
            b"GET /s HTTP/1.1\r\nHost: h\r\n\r\n",
            Timestamp(i),
            &mut out,
        );
    }
    p.on_data(C, SMALL, Timestamp(10), &mut out);
    p.on_gap(C, SMALL.len() as u32);
    for i in 0..3 {
        p.on_data(C, SMALL, Timestamp(11 + i), &mut out);
    }
    // Four responses seen, four requests answered (in order: HTTP/1 cannot tell which
    // request the lost response belonged to); one request still waits.
    assert_eq!(out.iter().filter(|t| t.status == Some(200)).count(), 4);
    assert_eq!(p.pending(), 1);
}

#[test]
fn a_response_lost_in_a_gap_leaves_its_request_unanswered_not_the_pairs_after_it_one_off() {
    // One request at a time, as nearly every client sends them. The response to /b is lost
    // whole: the client still read it (it sent /c next), the capture did not.
    let req = |path: &str| format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n");
    let resp = |code: u16| format!("HTTP/1.1 {code} OK\r\nContent-Length: 2\r\n\r\nok");
    for chunk in [usize::MAX, 1] {
        let mut p = Http1Parser::default();
        let mut out = Vec::new();
        let mut feed = |p: &mut Http1Parser, dir, msg: String, t: u64| {
            for piece in msg.as_bytes().chunks(chunk.min(msg.len())) {
                p.on_data(dir, piece, Timestamp(t), &mut out);
            }
        };
        feed(&mut p, S, req("/a"), 1);
        feed(&mut p, C, resp(200), 2);
        feed(&mut p, S, req("/b"), 3);
        p.on_gap(C, resp(201).len() as u32);
        feed(&mut p, S, req("/c"), 5);
        feed(&mut p, C, resp(202), 6);
        feed(&mut p, S, req("/d"), 7);
        feed(&mut p, C, resp(203), 8);
        let got: Vec<_> = out
            .iter()
            .map(|t| {
                let why: Vec<_> = t.completeness.reasons().collect();
                (t.resource.as_str(), t.status, why, t.end.0)
            })
            .collect();
        assert_eq!(
            got,
            [
                ("/a", Some(200), vec![], 2),
                // Ended at the latest when the next request was sent.
                ("/b", None, vec!["gap", "no_response"], 5),
                // Its response is whole, and which request it answers is certain.
                ("/c", Some(202), vec![], 6),
                ("/d", Some(203), vec![], 8),
            ],
            "chunk {chunk}"
        );
        assert_eq!(p.take_stats().responses_lost, 1);
        assert_eq!(p.pending(), 0);
    }
}

#[test]
fn a_pipelining_client_keeps_in_order_pairing_across_a_lost_response() {
    // Once a client was seen pipelining, waiting requests are no evidence of a lost
    // response: after a gap the responses still pair in order (HTTP/1 cannot tell which
    // request a lost response belonged to), and nothing is counted as lost.
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    let two = b"GET /1 HTTP/1.1\r\nHost: h\r\n\r\nGET /2 HTTP/1.1\r\nHost: h\r\n\r\n";
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
    p.on_data(S, two, Timestamp(1), &mut out);
    p.on_data(C, ok, Timestamp(2), &mut out);
    p.on_data(C, ok, Timestamp(3), &mut out);
    p.on_data(S, two, Timestamp(4), &mut out);
    p.on_gap(C, ok.len() as u32);
    p.on_data(C, ok, Timestamp(5), &mut out);
    assert_eq!(out.len(), 3);
    assert_eq!(p.take_stats().responses_lost, 0);
    assert_eq!(p.pending(), 1);
}

#[test]
fn response_cut_by_a_gap_in_a_chunked_body_is_still_reported() {
    // Two pipelined requests; the first response's chunked body is cut by a gap, so its end
    // is never seen; the second response follows. Both transactions come out: the first
    // marked with the gap, ended at the last byte seen, not silently replaced.
    let mut p = Http1Parser::default();
    let mut out = Vec::new();
    p.on_data(
        S,
        b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n",
        Timestamp(1),
        &mut out,
    );
    p.on_data(
        S,
        b"GET /b HTTP/1.1\r\nHost: h\r\n\r\n",
        Timestamp(2),
        &mut out,
    );
    p.on_data(
        C,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
        Timestamp(3),
        &mut out,
    );
    p.on_gap(C, 40);
    p.on_data(
        C,
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
        Timestamp(5),
        &mut out,
    );
    let got: Vec<_> = out
        .iter()
        .map(|t| {
            (
                t.resource.as_str(),
                t.status,
                t.completeness.has(Completeness::GAP),
            )
        })
        .collect();
    assert_eq!(got, [("/a", Some(200), true), ("/b", Some(404), false)]);
    assert_eq!((out[0].end, out[1].end), (Timestamp(3), Timestamp(5)));
    // The first response's bytes as far as they were seen.
    assert_eq!(out[0].resp_bytes, 53);
    assert_eq!(p.pending(), 0);
}

#[test]
fn resync_matches_a_byte_by_byte_search() {
    // The search as the grammar says it: every byte, in order. A last line that could
    // still become a start line is carried.
    fn slow(b: &[u8], dir: Direction, line_start: &mut bool, carry: &mut Vec<u8>) -> Option<usize> {
        let starts: Vec<&[u8]> = match dir {
            Direction::ToServer => METHODS.to_vec(),
            Direction::ToClient => vec![b"HTTP/1."],
        };
        let mut last_line = line_start.then_some(0);
        for i in 0..b.len() {
            if *line_start && starts.iter().any(|m| b[i..].starts_with(m)) {
                return Some(i);
            }
            *line_start = b[i] == b'\n';
            if *line_start {
                last_line = Some(i + 1);
            }
        }
        if let Some(s) = last_line {
            let tail = &b[s..];
            if !tail.is_empty()
                && starts
                    .iter()
                    .any(|m| m.len() > tail.len() && m.starts_with(tail))
            {
                carry.extend_from_slice(tail);
            }
        }
        None
    }
    let pieces: [&[u8]; 7] = [
        b"\n",
        b"HTTP/1.1 200",
        b"GET / ",
        b"xx",
        b"\r\n",
        b"HTTP/",
        b"ok",
    ];
    let mut next = crate::proto::test_rng(0x2545_f491_4f6c_dd1d);
    for _ in 0..3000 {
        let mut b = Vec::new();
        for _ in 0..next() % 12 {
            b.extend_from_slice(pieces[(next() % 7) as usize]);
        }
        for dir in [S, C] {
            let start = next().is_multiple_of(2);
            let (mut a, mut z) = (start, start);
            let (mut ca, mut cz) = (Vec::new(), Vec::new());
            let got = resync(&b, dir, &mut a, &mut ca);
            let want = slow(&b, dir, &mut z, &mut cz);
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(&b));
            if want.is_none() {
                assert_eq!(a, z, "{:?}", String::from_utf8_lossy(&b));
            }
            assert_eq!(ca, cz, "carry of {:?}", String::from_utf8_lossy(&b));
        }
    }
}

/// The shared test kit: two requests on one connection, whole, byte by byte, split
/// everywhere, with a gap in each chunk and picked up after each chunk.
#[test]
fn testkit_feeds_every_way() {
    let conv: [crate::proto::testkit::Chunk; 4] = [
        (
            S,
            b"GET /users/42 HTTP/1.1\r\nHost: api\r\nUser-Agent: curl/8\r\n\r\n",
        ),
        (C, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
        (
            S,
            b"POST /orders HTTP/1.1\r\nHost: api\r\nContent-Length: 3\r\n\r\nabc",
        ),
        (C, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
    ];
    let settings = Arc::new(HttpSettings::new(HttpConfig::default()).unwrap());
    let out = crate::proto::testkit::check_all(|| Http1Parser::new(settings.clone()), &conv);
    let got: Vec<_> = out
        .iter()
        .map(|t| (t.operation.to_string(), t.resource.to_string(), t.status))
        .collect();
    assert_eq!(
        got,
        [
            ("GET".to_string(), "/users/{id}".to_string(), Some(200)),
            ("POST".to_string(), "/orders".to_string(), Some(404)),
        ]
    );
}
