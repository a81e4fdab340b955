//! PostgreSQL decoder tests: every conversation through testkit::check_all (whole, byte by
//! byte, split everywhere, gaps, mid-stream), then what the transactions say.

use super::*;
use crate::proto::AttrValue;
use crate::proto::testkit::{Chunk, check_all};

use Direction::{ToClient as S, ToServer as C};

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
    v.extend_from_slice(body);
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

fn startup(params: &[(&str, &str)]) -> Vec<u8> {
    let mut body = PROTOCOL_3_BYTES.to_vec();
    for (k, v) in params {
        body.extend_from_slice(k.as_bytes());
        body.push(0);
        body.extend_from_slice(v.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut v = (body.len() as u32 + 4).to_be_bytes().to_vec();
    v.extend_from_slice(&body);
    v
}

const PROTOCOL_3_BYTES: [u8; 4] = [0, 3, 0, 0];

fn q(text: &str) -> Vec<u8> {
    let mut b = text.as_bytes().to_vec();
    b.push(0);
    msg(b'Q', &b)
}

fn cc(tag: &str) -> Vec<u8> {
    let mut b = tag.as_bytes().to_vec();
    b.push(0);
    msg(b'C', &b)
}

fn z() -> Vec<u8> {
    msg(b'Z', b"I")
}

fn row() -> Vec<u8> {
    msg(b'D', b"\0\x01\0\0\0\x011")
}

fn rowdesc() -> Vec<u8> {
    msg(
        b'T',
        b"\0\x01a\0\0\0\0\0\0\x01\0\0\0\x17\0\x04\xff\xff\xff\xff\0\0",
    )
}

fn err(code: &str, text: &str) -> Vec<u8> {
    let mut b = Vec::new();
    for (t, v) in [(b'S', "ERROR"), (b'V', "ERROR"), (b'C', code), (b'M', text)] {
        b.push(t);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b.push(0);
    msg(b'E', &b)
}

fn parse(name: &str, text: &str) -> Vec<u8> {
    let mut b = name.as_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(text.as_bytes());
    b.extend_from_slice(b"\0\0\0");
    msg(b'P', &b)
}

fn bind(portal: &str, stmt: &str, secret: &str) -> Vec<u8> {
    let mut b = portal.as_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(stmt.as_bytes());
    b.push(0);
    b.extend_from_slice(b"\0\0\0\x01");
    b.extend_from_slice(&(secret.len() as u32).to_be_bytes());
    b.extend_from_slice(secret.as_bytes());
    b.extend_from_slice(b"\0\0");
    msg(b'B', &b)
}

fn exec(portal: &str) -> Vec<u8> {
    let mut b = portal.as_bytes().to_vec();
    b.extend_from_slice(b"\0\0\0\0\0");
    msg(b'E', &b)
}

fn sync() -> Vec<u8> {
    msg(b'S', b"")
}

fn make() -> PgParser {
    PgParser::new(&PgConfig::default())
}

fn s(t: &Transaction, k: &str) -> Option<String> {
    match t.attr(k) {
        Some(AttrValue::Str(s)) => Some(s.to_string()),
        Some(AttrValue::Int(i)) => Some(i.to_string()),
        Some(AttrValue::Bool(b)) => Some(b.to_string()),
        None => None,
    }
}

fn auth_ok() -> Vec<u8> {
    cat(&[
        msg(b'R', &[0, 0, 0, 0]),
        msg(b'S', b"server_version\x0015.0\0"),
        msg(b'K', &[0, 0, 0, 1, 0, 0, 0, 2]),
        z(),
    ])
}

#[test]
fn startup_and_simple_queries() {
    let st = startup(&[("user", "alice"), ("database", "shop")]);
    let md5 = msg(b'R', &[0, 0, 0, 5, 1, 2, 3, 4]);
    let pw = msg(b'p', b"md5secretsecret\0");
    let q1 = q("SELECT * FROM users WHERE name = 'hunter2'");
    let r1 = cat(&[rowdesc(), row(), row(), cc("SELECT 2"), z()]);
    let q2 = q("INSERT INTO orders VALUES (1)");
    let r2 = cat(&[cc("INSERT 0 1"), z()]);
    let ok = auth_ok();
    let conv: Vec<Chunk> = vec![
        (C, &st),
        (S, &md5),
        (C, &pw),
        (S, &ok),
        (C, &q1),
        (S, &r1),
        (C, &q2),
        (S, &r2),
    ];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    let t = &txs[0];
    assert!(t.completeness.is_complete(), "{:?}", t.completeness);
    assert_eq!(t.operation, "SELECT");
    assert_eq!(s(t, "db.namespace").as_deref(), Some("shop"));
    assert_eq!(s(t, "db.query.summary").as_deref(), Some("SELECT users"));
    assert_eq!(s(t, "db.collection.name").as_deref(), Some("users"));
    assert_eq!(s(t, "db.response.returned_rows").as_deref(), Some("2"));
    assert_eq!(
        s(&txs[1], "db.query.summary").as_deref(),
        Some("INSERT orders")
    );
    assert_eq!(
        s(&txs[1], "db.response.returned_rows").as_deref(),
        Some("1")
    );
    for t in &txs {
        let all = format!("{t:?}");
        assert!(!all.contains("hunter2") && !all.contains("secret"), "{all}");
    }
}

#[test]
fn multi_statement_query_reports_each_and_skips_after_error() {
    let q1 = q("BEGIN; UPDATE t SET a = 1; SELECT 1/0; COMMIT");
    let r1 = cat(&[
        cc("BEGIN"),
        cc("UPDATE 3"),
        rowdesc(),
        err("22012", "division by zero"),
        msg(b'Z', b"E"),
    ]);
    let conv: Vec<Chunk> = vec![(C, &q1), (S, &r1)];
    let txs = check_all(make, &conv);
    let got: Vec<_> = txs
        .iter()
        .map(|t| {
            (
                t.operation.to_string(),
                t.error.as_deref().map(str::to_string),
                t.completeness.is_complete(),
                s(t, "podtap.postgresql.skipped"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("BEGIN".into(), None, false, None),
            ("UPDATE".into(), None, false, None),
            ("SELECT".into(), Some("22012".into()), false, None),
            ("COMMIT".into(), None, false, Some("true".into())),
        ]
    );
    // Mid-stream (no startup): marked so, otherwise the same.
    assert!(
        txs[..3]
            .iter()
            .all(|t| t.completeness.0 == Completeness::MIDSTREAM)
    );
    assert_eq!(
        s(&txs[2], "db.response.status_code").as_deref(),
        Some("22012")
    );
    assert!(!format!("{txs:?}").contains("division"));
}

#[test]
fn extended_protocol_pipelined_with_error_skips_to_sync() {
    let st = startup(&[("user", "bob")]);
    // Named statement prepared, then three executions pipelined before one Sync; the
    // second fails, the third is skipped; then another batch pairs normally.
    let c1 = cat(&[
        parse("s1", "UPDATE acc SET bal = bal + $1 WHERE id = $2"),
        sync(),
    ]);
    let r1 = cat(&[msg(b'1', b""), z()]);
    let c2 = cat(&[
        bind("", "s1", "111"),
        exec(""),
        bind("", "s1", "222"),
        exec(""),
        bind("", "s1", "333"),
        exec(""),
        sync(),
    ]);
    let r2 = cat(&[
        msg(b'2', b""),
        cc("UPDATE 1"),
        msg(b'2', b""),
        err("23505", "duplicate key 222"),
        msg(b'Z', b"I"),
    ]);
    let c3 = cat(&[
        parse("", "SELECT * FROM acc WHERE id = $1"),
        bind("", "", "42"),
        msg(b'D', b"P\0"),
        exec(""),
        sync(),
    ]);
    let r3 = cat(&[
        msg(b'1', b""),
        msg(b'2', b""),
        rowdesc(),
        row(),
        cc("SELECT 1"),
        z(),
    ]);
    let ok = auth_ok();
    let conv: Vec<Chunk> = vec![
        (C, &st),
        (S, &ok),
        (C, &c1),
        (S, &r1),
        (C, &c2),
        (S, &r2),
        (C, &c3),
        (S, &r3),
    ];
    let txs = check_all(make, &conv);
    let got: Vec<_> = txs
        .iter()
        .map(|t| {
            (
                s(t, "db.query.summary").unwrap_or_default(),
                t.error.as_deref().map(str::to_string),
                t.completeness.reasons().collect::<Vec<_>>().join(","),
                s(t, "db.response.returned_rows"),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("UPDATE acc".into(), None, "".into(), Some("1".into())),
            ("UPDATE acc".into(), Some("23505".into()), "".into(), None),
            ("UPDATE acc".into(), None, "no_response".into(), None),
            ("SELECT acc".into(), None, "".into(), Some("1".into())),
        ]
    );
    assert_eq!(
        s(&txs[2], "podtap.postgresql.skipped").as_deref(),
        Some("true")
    );
    assert_eq!(s(&txs[0], "db.namespace").as_deref(), Some("bob"));
    assert!(!format!("{txs:?}").contains("222"));
}

#[test]
fn parse_error_goes_to_its_execute() {
    let c = cat(&[parse("", "SELEC 1"), bind("", "", ""), exec(""), sync()]);
    let r = cat(&[err("42601", "syntax error at or near SELEC"), z()]);
    let c2 = cat(&[parse("", "SELECT 2"), sync()]);
    let r2 = cat(&[err("42601", "x"), z()]);
    let conv: Vec<Chunk> = vec![(C, &c), (S, &r), (C, &c2), (S, &r2)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].error.as_deref(), Some("42601"));
    assert_eq!(s(&txs[1], "db.query.summary").as_deref(), Some("SELECT"));
    assert_eq!(txs[1].error.as_deref(), Some("42601"));
}

#[test]
fn copy_in_and_out_are_one_transaction_each() {
    let c1 = q("COPY items FROM STDIN");
    let r1 = msg(b'G', b"\0\0\0");
    let c2 = cat(&[
        msg(b'd', b"1\tsecretvalue\n"),
        msg(b'd', b"2\tb\n"),
        msg(b'c', b""),
    ]);
    let r2 = cat(&[cc("COPY 2"), z()]);
    let c3 = q("COPY items TO STDOUT");
    let r3 = cat(&[
        msg(b'H', b"\0\0\0"),
        msg(b'd', b"1\ta\n"),
        msg(b'c', b""),
        cc("COPY 1"),
        z(),
    ]);
    let conv: Vec<Chunk> = vec![(C, &c1), (S, &r1), (C, &c2), (S, &r2), (C, &c3), (S, &r3)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(
        s(&txs[0], "db.query.summary").as_deref(),
        Some("COPY items")
    );
    assert_eq!(
        s(&txs[0], "db.response.returned_rows").as_deref(),
        Some("2")
    );
    assert_eq!(
        s(&txs[0], "podtap.postgresql.copy_bytes").as_deref(),
        Some("18")
    );
    assert_eq!(
        s(&txs[1], "podtap.postgresql.copy_bytes").as_deref(),
        Some("4")
    );
    assert!(!format!("{txs:?}").contains("secretvalue"));
}

#[test]
fn notices_and_notifications_are_not_replies() {
    let c1 = q("LISTEN ch");
    let r1 = cat(&[cc("LISTEN"), z()]);
    let c2 = q("SELECT 1");
    let r2 = cat(&[
        msg(b'A', b"\0\0\0\x07ch\0payload\0"),
        msg(b'N', b"SNOTICE\0C00000\0Mhi\0\0"),
        rowdesc(),
        row(),
        msg(b'S', b"TimeZone\0UTC\0"),
        cc("SELECT 1"),
        z(),
    ]);
    let conv: Vec<Chunk> = vec![(C, &c1), (S, &r1), (C, &c2), (S, &r2)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    assert!(txs.iter().all(|t| t.error.is_none()));
    let mut p = make();
    crate::proto::testkit::feed_whole(&mut p, &conv);
    assert_eq!(p.stats().async_messages, 3);
}

#[test]
fn ssl_accepted_stops_refused_continues() {
    let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut p = make();
    let mut out = Vec::new();
    let ts = Timestamp(1);
    assert_eq!(p.on_data(C, &ssl, ts, &mut out), Progress::Continue);
    assert_eq!(p.on_data(S, b"S", ts, &mut out), Progress::Redetect);
    assert_eq!(p.stats().encrypted, 1);

    let st = startup(&[("user", "u"), ("database", "d")]);
    let c1 = q("SELECT 1");
    let r1 = cat(&[rowdesc(), row(), cc("SELECT 1"), z()]);
    let ok = auth_ok();
    let conv: Vec<Chunk> = vec![(C, &ssl), (S, b"N"), (C, &st), (S, &ok), (C, &c1), (S, &r1)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 1);
    assert!(txs[0].completeness.is_complete());
    assert_eq!(s(&txs[0], "db.namespace").as_deref(), Some("d"));
}

#[test]
fn cancel_request_and_replication() {
    let mut cancel = vec![0, 0, 0, 16, 0x04, 0xd2, 0x16, 0x2e];
    cancel.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2]);
    let mut p = make();
    crate::proto::testkit::feed_whole(&mut p, &[(C, &cancel)]);
    assert_eq!(p.stats().cancel_requests, 1);
    assert_eq!(probe(&cancel, C, false), Confidence::Certain);

    let st = startup(&[("user", "rep"), ("replication", "true")]);
    let c1 = q("IDENTIFY_SYSTEM");
    let r1 = cat(&[rowdesc(), row(), cc("IDENTIFY_SYSTEM"), z()]);
    let c2 = q("START_REPLICATION 0/0");
    let r2 = cat(&[msg(b'W', b"\0\0\0"), msg(b'd', b"wwal data")]);
    let ok = auth_ok();
    let conv: Vec<Chunk> = vec![(C, &st), (S, &ok), (C, &c1), (S, &r1), (C, &c2), (S, &r2)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].operation, "IDENTIFY_SYSTEM");
    assert!(
        txs.iter()
            .all(|t| s(t, "podtap.postgresql.replication").as_deref() == Some("physical"))
    );
}

#[test]
fn replies_without_requests_and_gaps() {
    // Picked up with a reply under way: the reply is reported, no_request.
    let r = cat(&[row(), cc("SELECT 4"), z()]);
    let c = q("DELETE FROM t");
    let r2 = cat(&[cc("DELETE 2"), z()]);
    let conv: Vec<Chunk> = vec![(S, &r), (C, &c), (S, &r2)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    assert!(txs[0].completeness.has(Completeness::NO_REQUEST));
    assert_eq!(txs[0].operation, "SELECT");
    assert_eq!(txs[1].operation, "DELETE");
    assert!(!txs[1].completeness.has(Completeness::NO_REQUEST));
}

#[test]
fn query_text_is_opt_in_and_normalized() {
    let c = q("SELECT * FROM users WHERE pw = 'hunter2' AND id = 7");
    let r = cat(&[cc("SELECT 0"), z()]);
    let conv: Vec<Chunk> = vec![(C, &c), (S, &r)];
    let txs = check_all(make, &conv);
    assert_eq!(s(&txs[0], "db.query.text"), None);
    let cfg = PgConfig {
        query_text: true,
        ..PgConfig::default()
    };
    let txs = check_all(|| PgParser::new(&cfg), &conv);
    assert_eq!(
        s(&txs[0], "db.query.text").as_deref(),
        Some("SELECT * FROM users WHERE pw = ? AND id = ?")
    );
}

#[test]
fn statement_map_is_bounded() {
    let cfg = PgConfig {
        max_statements: 2,
        ..PgConfig::default()
    };
    let mut c = Vec::new();
    for i in 0..4 {
        c.extend(parse(&format!("s{i}"), "SELECT 1 FROM t"));
    }
    c.extend(sync());
    let mut p = PgParser::new(&cfg);
    crate::proto::testkit::feed_whole(&mut p, &[(C, &c)]);
    assert_eq!(p.stats().statement_limit, 2);
    assert!(p.c.statements.len() <= 2);
}

#[test]
fn probe_recognises_startup_and_mid_stream() {
    let st = startup(&[("user", "u")]);
    assert_eq!(probe(&st, C, false), Confidence::Certain);
    assert_eq!(probe(&st[..3], C, false), Confidence::NeedMore);
    assert_eq!(probe(&q("select 1"), C, false), Confidence::Likely);
    assert_eq!(
        probe(&q("GET / HTTP/1.1 and so on"), C, false),
        Confidence::No
    );
    let server = cat(&[rowdesc(), row(), cc("SELECT 1"), z()]);
    assert_eq!(probe(&server, S, false), Confidence::Likely);
    assert_eq!(probe(&z(), S, true), Confidence::Port);
    assert_eq!(probe(b"GET / HTTP/1.1\r\n", C, true), Confidence::No);
    assert_eq!(probe(b"HTTP/1.1 200 OK\r\n", S, true), Confidence::No);
    let ext = cat(&[bind("", "s1", "1"), exec(""), sync()]);
    assert_eq!(probe(&ext, C, false), Confidence::Likely);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = crate::proto::test_rng(0x9e37_79b9);
    let pieces: Vec<Vec<u8>> = vec![
        q("SELECT 1"),
        cc("SELECT 1"),
        z(),
        row(),
        err("42P01", "x"),
        parse("a", "SELECT $1"),
        bind("", "a", "x"),
        exec(""),
        sync(),
        msg(b'G', b"\0\0\0"),
        msg(b'd', b"abc"),
        msg(b'W', b"\0\0\0"),
        startup(&[("user", "u")]),
        vec![0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
        b"S".to_vec(),
        b"N".to_vec(),
        vec![0xff, 0, 0, 0, 0],
    ];
    for _ in 0..2000 {
        let mut p = make();
        let mut out = Vec::new();
        for i in 0..(rng() % 20) {
            let dir = if rng().is_multiple_of(2) { C } else { S };
            let mut b = pieces[(rng() % pieces.len() as u64) as usize].clone();
            if rng().is_multiple_of(4) && !b.is_empty() {
                let k = (rng() % b.len() as u64) as usize;
                b[k] = rng() as u8;
            }
            if rng().is_multiple_of(8) {
                p.on_gap(dir, (rng() % 10) as u32);
            }
            p.on_data(dir, &b, Timestamp(i), &mut out);
        }
        p.on_tick(Timestamp(u64::MAX / 2), 1, &mut out);
        p.on_close(Timestamp(u64::MAX / 2), false, &mut out);
        assert_eq!(p.pending(), 0);
    }
}

#[test]
fn session_hands_an_accepted_ssl_request_to_tls_and_keeps_a_refused_one() {
    use crate::proto::session::L7Session;
    use crate::proto::{DecoderFactory, detect::Transport};
    let f = DecoderFactory::default();
    let ssl = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let mut out = Vec::new();
    // Refused: the startup and the queries follow in clear, decoded as PostgreSQL.
    let mut s = L7Session::new(Transport::Tcp, 15432);
    s.data(C, &ssl, Timestamp(1), &f, &mut out);
    s.data(S, b"N", Timestamp(2), &f, &mut out);
    s.data(C, &startup(&[("user", "u")]), Timestamp(3), &f, &mut out);
    s.data(S, &auth_ok(), Timestamp(4), &f, &mut out);
    s.data(C, &q("SELECT 1"), Timestamp(5), &f, &mut out);
    s.data(S, &cat(&[cc("SELECT 1"), z()]), Timestamp(6), &f, &mut out);
    assert_eq!(s.protocol(), Protocol::Postgresql);
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.is_complete());
    // Accepted: counted, and the TLS handshake after it is detected as such.
    let mut s = L7Session::new(Transport::Tcp, 5432);
    s.data(C, &ssl, Timestamp(1), &f, &mut out);
    s.data(S, b"S", Timestamp(2), &f, &mut out);
    s.data(
        C,
        &[0x16, 3, 1, 0, 40, 1, 0, 0, 36],
        Timestamp(3),
        &f,
        &mut out,
    );
    assert_eq!(s.protocol(), Protocol::Tls);
    let mut c = crate::events::Counters::default();
    s.drain_stats(&mut c);
    assert!(
        c.nonzero()
            .any(|(e, n)| e.name() == "postgresql.encrypted" && n == 1),
        "the accepted SSLRequest is counted after the hand-over"
    );
}

#[test]
fn named_portal_suspended_then_resumed() {
    // JDBC with a fetch size: a named portal executed twice, the first time suspended.
    let c1 = cat(&[
        parse("", "SELECT * FROM big"),
        bind("C_1", "", ""),
        exec("C_1"),
        sync(),
    ]);
    let r1 = cat(&[
        msg(b'1', b""),
        msg(b'2', b""),
        row(),
        row(),
        msg(b's', b""),
        z(),
    ]);
    let c2 = cat(&[exec("C_1"), sync()]);
    let r2 = cat(&[row(), cc("SELECT 3"), z()]);
    let conv: Vec<Chunk> = vec![(C, &c1), (S, &r1), (C, &c2), (S, &r2)];
    let txs = check_all(make, &conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(
        s(&txs[0], "podtap.postgresql.suspended").as_deref(),
        Some("true")
    );
    assert_eq!(
        s(&txs[0], "db.response.returned_rows").as_deref(),
        Some("2")
    );
    assert_eq!(
        s(&txs[1], "db.query.summary").as_deref(),
        Some("SELECT big")
    );
    assert_eq!(
        s(&txs[1], "db.response.returned_rows").as_deref(),
        Some("3")
    );
}

#[test]
fn a_gap_inside_a_long_row_costs_only_its_bytes() {
    let big_row = msg(b'D', &[b'x'; 3000]);
    let c1 = q("SELECT * FROM blobs");
    let r1 = cat(&[rowdesc(), big_row[..1000].to_vec()]);
    let r1b = big_row[2000..].to_vec();
    let r1c = cat(&[cc("SELECT 1"), z()]);
    let mut p = make();
    let mut out = Vec::new();
    p.on_data(C, &c1, Timestamp(1), &mut out);
    p.on_data(S, &r1, Timestamp(2), &mut out);
    p.on_gap(S, 1000);
    p.on_data(S, &r1b, Timestamp(3), &mut out);
    p.on_data(S, &r1c, Timestamp(4), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].operation, "SELECT");
    assert_eq!(
        s(&out[0], "db.response.returned_rows").as_deref(),
        Some("1")
    );
    assert_eq!(
        out[0].completeness.0,
        Completeness::GAP | Completeness::MIDSTREAM
    );
    assert_eq!(p.stats().malformed, 0);
}
