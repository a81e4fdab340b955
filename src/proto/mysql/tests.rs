use super::*;
use crate::proto::AttrValue;
use crate::proto::testkit::{self, Chunk};
use Direction::{ToClient as S, ToServer as C};

/// One packet: header (length, sequence id) and payload.
fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
    let n = payload.len() as u32;
    let mut v = n.to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(payload);
    v
}

/// Several packets, sequence ids from `seq`.
fn pkts(seq: u8, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut v = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        v.extend(pkt(seq.wrapping_add(i as u8), p));
    }
    v
}

fn greeting(version: &str, caps: u32) -> Vec<u8> {
    let mut p = vec![10];
    p.extend_from_slice(version.as_bytes());
    p.push(0);
    p.extend_from_slice(&7u32.to_le_bytes()); // thread id
    p.extend_from_slice(b"abcdefgh"); // auth data 1
    p.push(0);
    p.extend_from_slice(&(caps as u16).to_le_bytes());
    p.push(33); // charset
    p.extend_from_slice(&2u16.to_le_bytes()); // status
    p.extend_from_slice(&((caps >> 16) as u16).to_le_bytes());
    p.push(21);
    p.extend_from_slice(&[0; 10]);
    p.extend_from_slice(b"ijklmnopqrst\0");
    p.extend_from_slice(b"mysql_native_password\0");
    pkt(0, &p)
}

const SECRET: &str = "hunter2-s3cr3t";

fn login(caps: u32, user: &str, db: Option<&str>) -> Vec<u8> {
    let caps = caps
        | if db.is_some() {
            CLIENT_CONNECT_WITH_DB
        } else {
            0
        };
    let mut p = caps.to_le_bytes().to_vec();
    p.extend_from_slice(&(1u32 << 24).to_le_bytes());
    p.push(33);
    p.extend_from_slice(&[0; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(SECRET.len() as u8);
    p.extend_from_slice(SECRET.as_bytes());
    if let Some(db) = db {
        p.extend_from_slice(db.as_bytes());
        p.push(0);
    }
    p.extend_from_slice(b"mysql_native_password\0");
    pkt(1, &p)
}

fn ok_payload(affected: u8, status: u16) -> Vec<u8> {
    let mut p = vec![0, affected, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

fn eof_payload(status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p
}

/// OK that ends a result set with DEPRECATE_EOF.
fn ok_end_payload(status: u16) -> Vec<u8> {
    let mut p = vec![0xfe, 0, 0];
    p.extend_from_slice(&status.to_le_bytes());
    p.extend_from_slice(&[0, 0]);
    p
}

fn err_payload(code: u16, state: &str, msg: &str) -> Vec<u8> {
    let mut p = vec![0xff];
    p.extend_from_slice(&code.to_le_bytes());
    p.push(b'#');
    p.extend_from_slice(state.as_bytes());
    p.extend_from_slice(msg.as_bytes());
    p
}

fn coldef(name: &str) -> Vec<u8> {
    let mut p = Vec::new();
    for s in ["def", "db", "t", "t", name, name] {
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    p.extend_from_slice(&[0x0c, 33, 0, 11, 0, 0, 0, 3, 0, 0, 0, 0, 0]);
    p
}

fn row(vals: &[&str]) -> Vec<u8> {
    let mut p = Vec::new();
    for v in vals {
        p.push(v.len() as u8);
        p.extend_from_slice(v.as_bytes());
    }
    p
}

fn cmd(c: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![c];
    p.extend_from_slice(body);
    pkt(0, &p)
}

/// A result set of `cols` columns and `rows` rows, sequence ids from 1, ending with
/// `status`; with or without DEPRECATE_EOF.
fn result_set(cols: usize, rows: usize, status: u16, deprecate: bool) -> Vec<u8> {
    pkts(1, &result_payloads(cols, rows, status, deprecate))
}

/// The packets' payloads of [`result_set`].
fn result_payloads(cols: usize, rows: usize, status: u16, deprecate: bool) -> Vec<Vec<u8>> {
    let mut v = vec![vec![cols as u8]];
    for i in 0..cols {
        v.push(coldef(&format!("c{i}")));
    }
    if !deprecate {
        v.push(eof_payload(0));
    }
    for r in 0..rows {
        let s = r.to_string();
        v.push(row(&vec![s.as_str(); cols]));
    }
    v.push(if deprecate {
        ok_end_payload(status)
    } else {
        eof_payload(status)
    });
    v
}

const BASE_CAPS: u32 = CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION | CLIENT_PLUGIN_AUTH;

fn decoder() -> MysqlParser {
    MysqlParser::new(&MysqlConfig::default())
}

fn attr<'a>(t: &'a Transaction, k: &str) -> Option<&'a AttrValue> {
    t.attr(k)
}

fn s(t: &Transaction, k: &str) -> String {
    match attr(t, k) {
        Some(AttrValue::Str(v)) => v.to_string(),
        Some(AttrValue::Int(i)) => i.to_string(),
        Some(AttrValue::Bool(b)) => b.to_string(),
        None => "-".into(),
    }
}

/// A whole session: handshake, queries, an error, a prepared statement, commands.
fn session(deprecate: bool) -> Vec<(Direction, Vec<u8>)> {
    let caps = BASE_CAPS | if deprecate { CLIENT_DEPRECATE_EOF } else { 0 };
    let server_caps = caps | CLIENT_CONNECT_WITH_DB | CLIENT_SSL;
    let stmt_end = |st| {
        if deprecate {
            ok_end_payload(st)
        } else {
            eof_payload(st)
        }
    };
    let mut prep = vec![{
        let mut p = vec![0];
        p.extend_from_slice(&9u32.to_le_bytes());
        p.extend_from_slice(&1u16.to_le_bytes()); // columns
        p.extend_from_slice(&1u16.to_le_bytes()); // params
        p.extend_from_slice(&[0, 0, 0]);
        p
    }];
    prep.push(coldef("?"));
    if !deprecate {
        prep.push(eof_payload(0));
    }
    prep.push(coldef("name"));
    if !deprecate {
        prep.push(eof_payload(0));
    }
    let mut exec = vec![9, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0];
    exec.extend_from_slice(&42u32.to_le_bytes());
    let mut exec_reply = vec![vec![1], coldef("name")];
    if !deprecate {
        exec_reply.push(eof_payload(0));
    }
    exec_reply.push(vec![0, 0, 3, b'b', b'o', b'b']);
    exec_reply.push(stmt_end(0));
    vec![
        (S, greeting("5.5.5-10.11.6-MariaDB-0+deb12u1", server_caps)),
        (C, login(caps, "app", Some("shop"))),
        (S, pkt(2, &ok_payload(0, 2))),
        (
            C,
            cmd(
                COM_QUERY,
                b"SELECT id, name FROM users WHERE pw = 'hunter2-s3cr3t'",
            ),
        ),
        (S, result_set(2, 3, 2, deprecate)),
        (
            C,
            cmd(COM_QUERY, b"INSERT INTO users VALUES (1, 'a'), (2, 'b')"),
        ),
        (S, pkt(1, &ok_payload(2, 2))),
        (C, cmd(COM_QUERY, b"SELEC oops")),
        (
            S,
            pkt(
                1,
                &err_payload(1064, "42000", "You have an error near 'hunter2-s3cr3t'"),
            ),
        ),
        (
            C,
            cmd(COM_STMT_PREPARE, b"SELECT name FROM users WHERE id = ?"),
        ),
        (S, pkts(1, &prep)),
        (C, cmd(COM_STMT_EXECUTE, &exec)),
        (S, pkts(1, &exec_reply)),
        (C, cmd(COM_STMT_CLOSE, &9u32.to_le_bytes())),
        (C, cmd(COM_INIT_DB, b"billing")),
        (S, pkt(1, &ok_payload(0, 2))),
        (C, cmd(COM_PING, b"")),
        (S, pkt(1, &ok_payload(0, 2))),
        // Multi-statement queries: a transaction per statement, each result (a CALL's
        // result sets with its final OK) to its own; after an error the rest never ran.
        (
            C,
            cmd(
                COM_QUERY,
                b"SELECT a FROM t1; UPDATE t2 SET x = 'hunter2-s3cr3t'; CALL p(); SELECT b FROM t3;",
            ),
        ),
        (S, {
            let more = 2 | SERVER_MORE_RESULTS_EXISTS;
            let mut v = result_payloads(1, 2, more, deprecate);
            v.push(ok_payload(3, more));
            v.extend(result_payloads(1, 1, more, deprecate));
            v.push(ok_payload(0, more));
            v.extend(result_payloads(1, 4, 2, deprecate));
            pkts(1, &v)
        }),
        (
            C,
            cmd(COM_QUERY, b"SELECT a FROM t1 ; SELEC oops; DELETE FROM t4"),
        ),
        (S, {
            let mut v = result_payloads(1, 1, 2 | SERVER_MORE_RESULTS_EXISTS, deprecate);
            v.push(err_payload(1064, "42000", "You have an error near 'oops'"));
            pkts(1, &v)
        }),
        (C, cmd(COM_QUERY, b"CALL p()")),
        (S, {
            // A result set, then the CALL's own OK.
            let mut v = result_set(1, 2, 2 | SERVER_MORE_RESULTS_EXISTS, deprecate);
            let n = 1 + 1 + usize::from(!deprecate) + 2 + 1;
            v.extend(pkt(1 + n as u8, &ok_payload(0, 2)));
            v
        }),
        (C, cmd(COM_QUIT, b"")),
    ]
}

fn chunks(conv: &[(Direction, Vec<u8>)]) -> Vec<Chunk<'_>> {
    conv.iter().map(|(d, b)| (*d, b.as_slice())).collect()
}

fn check_session(deprecate: bool) {
    let conv = session(deprecate);
    let txs = testkit::check_all(decoder, &chunks(&conv));
    let got: Vec<String> = txs
        .iter()
        .map(|t| {
            format!(
                "{} {} {} ns={} status={} rows={} affected={} results={} {:?}",
                t.protocol.as_str(),
                s(t, "podtap.mysql.command"),
                s(t, "db.query.summary"),
                s(t, "db.namespace"),
                s(t, "db.response.status_code"),
                s(t, "db.response.returned_rows"),
                s(t, "podtap.mysql.affected_rows"),
                s(t, "podtap.mysql.results"),
                t.completeness.reasons().collect::<Vec<_>>(),
            )
        })
        .collect();
    let want = [
        "mariadb COM_QUERY SELECT users ns=shop status=- rows=3 affected=- results=- []",
        "mariadb COM_QUERY INSERT users ns=shop status=- rows=- affected=2 results=- []",
        "mariadb COM_QUERY QUERY ns=shop status=1064 rows=- affected=- results=- []",
        "mariadb COM_STMT_PREPARE SELECT users ns=shop status=- rows=- affected=- results=- []",
        "mariadb COM_STMT_EXECUTE SELECT users ns=shop status=- rows=1 affected=- results=- []",
        "mariadb COM_STMT_CLOSE DEALLOCATE SELECT users ns=shop status=- rows=- affected=- results=- []",
        "mariadb COM_INIT_DB INIT_DB ns=billing status=- rows=- affected=- results=- []",
        "mariadb COM_PING PING ns=billing status=- rows=- affected=- results=- []",
        "mariadb COM_QUERY SELECT t1 ns=billing status=- rows=2 affected=- results=- []",
        "mariadb COM_QUERY UPDATE t2 ns=billing status=- rows=- affected=3 results=- []",
        "mariadb COM_QUERY CALL ns=billing status=- rows=1 affected=- results=2 []",
        "mariadb COM_QUERY SELECT t3 ns=billing status=- rows=4 affected=- results=- []",
        "mariadb COM_QUERY SELECT t1 ns=billing status=- rows=1 affected=- results=- []",
        "mariadb COM_QUERY QUERY ns=billing status=1064 rows=- affected=- results=- []",
        "mariadb COM_QUERY DELETE t4 ns=billing status=- rows=- affected=- results=- [\"no_response\"]",
        "mariadb COM_QUERY CALL ns=billing status=- rows=2 affected=- results=2 []",
        "mariadb COM_QUIT QUIT ns=billing status=- rows=- affected=- results=- []",
    ];
    assert_eq!(got, want);
    let err = &txs[2];
    assert_eq!(err.error.as_deref(), Some("1064"));
    assert_eq!(s(err, "podtap.mysql.sqlstate"), "42000");
    // No secret anywhere: not the password, not the literal, not the error message.
    for t in &txs {
        let all = format!("{t:?}");
        assert!(!all.contains("hunter2"), "{all}");
    }
}

#[test]
fn session_with_eof() {
    check_session(false);
}

#[test]
fn session_with_deprecate_eof() {
    check_session(true);
}

#[test]
fn stats_of_a_clean_session() {
    let conv = session(false);
    let mut p = decoder();
    testkit::feed_whole(&mut p, &chunks(&conv));
    // Only the statement the session's failed multi-statement query never ran.
    let want = MysqlStats {
        skipped: 1,
        ..MysqlStats::default()
    };
    assert_eq!(p.take_stats(), want);
    assert_eq!(p.statements(), 0, "closed statement forgotten");
}

#[test]
fn mysql_server_is_mysql() {
    let conv = vec![
        (S, greeting("8.0.36", BASE_CAPS)),
        (C, login(BASE_CAPS, "u", None)),
        (S, pkt(2, &ok_payload(0, 2))),
        (C, cmd(COM_PING, b"")),
        (S, pkt(1, &ok_payload(0, 2))),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].protocol, Protocol::Mysql);
    assert_eq!(s(&txs[0], "db.system.name"), "mysql");
    assert_eq!(s(&txs[0], "db.namespace"), "-");
}

#[test]
fn auth_switch_is_not_a_transaction_and_refused_login_is_one() {
    let mut switch = vec![0xfe];
    switch.extend_from_slice(b"caching_sha2_password\0");
    switch.extend_from_slice(&[1; 20]);
    let conv = vec![
        (S, greeting("8.0.36", BASE_CAPS)),
        (C, login(BASE_CAPS, "u", Some("db"))),
        (S, pkt(2, &switch)),
        (C, pkt(3, SECRET.as_bytes())),
        (S, pkt(4, &[0x01, 0x04])),
        (C, pkt(5, SECRET.as_bytes())),
        (
            S,
            pkt(6, &err_payload(1045, "28000", "Access denied for user 'u'")),
        ),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].operation, "CONNECT");
    assert_eq!(txs[0].error.as_deref(), Some("1045"));
    assert!(!format!("{txs:?}").contains("hunter2"));
    assert!(!format!("{txs:?}").contains("Access denied"));
}

#[test]
fn redact_false_exports_message_and_user() {
    let cfg = MysqlConfig {
        redact: false,
        ..MysqlConfig::default()
    };
    let conv = vec![
        (S, greeting("8.0.36", BASE_CAPS)),
        (C, login(BASE_CAPS, "app", None)),
        (S, pkt(2, &ok_payload(0, 2))),
        (C, cmd(COM_QUERY, b"SELECT 1")),
        (
            S,
            pkt(1, &err_payload(1146, "42S02", "Table 'x' doesn't exist")),
        ),
    ];
    let txs = testkit::check_all(|| MysqlParser::new(&cfg), &chunks(&conv));
    assert_eq!(
        s(&txs[0], "podtap.mysql.error_message"),
        "Table 'x' doesn't exist"
    );
    assert_eq!(s(&txs[0], "podtap.mysql.user"), "app");
}

#[test]
fn ssl_request_stops() {
    let mut p = (BASE_CAPS | CLIENT_SSL).to_le_bytes().to_vec();
    p.extend_from_slice(&[0; 28]);
    let conv = [
        (S, greeting("8.0.36", BASE_CAPS | CLIENT_SSL)),
        (C, pkt(1, &p)),
    ];
    let mut d = decoder();
    let mut out = Vec::new();
    assert_eq!(
        d.on_data(S, &conv[0].1, Timestamp::ZERO, &mut out),
        Progress::Continue
    );
    assert_eq!(
        d.on_data(C, &conv[1].1, Timestamp::ZERO, &mut out),
        Progress::Done
    );
    assert_eq!(d.take_stats().tls, 1);
    assert!(out.is_empty());
}

#[test]
fn midstream_pickup_infers_eof_mode() {
    for deprecate in [false, true] {
        let conv = vec![
            (C, cmd(COM_QUERY, b"SELECT a FROM t")),
            (S, result_set(1, 4, 2, deprecate)),
            (C, cmd(COM_QUERY, b"SELECT a, b FROM t")),
            (S, result_set(2, 0, 2, deprecate)),
        ];
        let txs = testkit::check_all(decoder, &chunks(&conv));
        assert_eq!(txs.len(), 2);
        assert_eq!(s(&txs[0], "db.response.returned_rows"), "4");
        assert_eq!(s(&txs[1], "db.response.returned_rows"), "0");
        assert!(txs[0].completeness.has(Completeness::MIDSTREAM));
        assert!(!txs[1].completeness.has(Completeness::NO_RESPONSE));
    }
}

#[test]
fn sequence_mismatch_is_counted() {
    let conv = vec![
        (C, cmd(COM_PING, b"")),
        (S, pkt(5, &ok_payload(0, 2))),
        (C, cmd(COM_PING, b"")),
        (S, pkt(1, &ok_payload(0, 2))),
    ];
    let mut p = decoder();
    let txs = testkit::feed_whole(&mut p, &chunks(&conv));
    assert_eq!(txs.len(), 2);
    assert_eq!(p.take_stats().seq_mismatch, 1);
}

#[test]
fn payload_over_16_mib_is_one_message() {
    // A COM_QUERY of 0xffffff + 10 bytes: two packets (sequence 0 and 1); the reply's
    // first packet has sequence 2.
    let mut text = b"INSERT INTO blobs VALUES ('".to_vec();
    text.resize(MAX_PACKET as usize + 10 - 3, b'x');
    text.extend_from_slice(b"')");
    let mut payload = vec![COM_QUERY];
    payload.extend_from_slice(&text);
    assert_eq!(payload.len(), MAX_PACKET as usize + 10);
    let mut wire = pkt(0, &payload[..MAX_PACKET as usize]);
    wire.extend(pkt(1, &payload[MAX_PACKET as usize..]));
    let reply = pkt(2, &ok_payload(1, 2));
    for cuts in [
        vec![],
        vec![3],
        vec![5, 17, 4096],
        vec![MAX_PACKET as usize + 2],
    ] {
        let mut p = decoder();
        let mut out = Vec::new();
        let mut at = 0;
        for c in cuts.iter().copied().chain([wire.len()]) {
            p.on_data(C, &wire[at..c], Timestamp::ZERO, &mut out);
            at = c;
        }
        p.on_data(S, &reply, Timestamp::ZERO, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].req_bytes, wire.len() as u64);
        assert_eq!(s(&out[0], "podtap.mysql.affected_rows"), "1");
        assert_eq!(s(&out[0], "db.operation.name"), "INSERT");
        assert_eq!(p.take_stats(), MysqlStats::default());
    }
    // A gap inside the long payload costs nothing.
    let mut p = decoder();
    let mut out = Vec::new();
    p.on_data(C, &wire[..8192], Timestamp::ZERO, &mut out);
    p.on_gap(C, 1 << 20);
    p.on_data(C, &wire[8192 + (1 << 20)..], Timestamp::ZERO, &mut out);
    p.on_data(S, &reply, Timestamp::ZERO, &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.has(Completeness::GAP));
}

#[test]
fn local_infile() {
    let mut req = vec![0xfb];
    req.extend_from_slice(b"/tmp/x.csv");
    let conv = vec![
        (
            C,
            cmd(
                COM_QUERY,
                b"LOAD DATA LOCAL INFILE '/tmp/x.csv' INTO TABLE t",
            ),
        ),
        (S, pkt(1, &req)),
        (C, pkt(2, b"1,2\n3,4\n")),
        (C, pkt(3, b"")),
        (S, pkt(4, &ok_payload(2, 2))),
    ];
    let mut p = decoder();
    let txs = testkit::feed_whole(&mut p, &chunks(&conv));
    assert_eq!(txs.len(), 1);
    assert_eq!(s(&txs[0], "podtap.mysql.affected_rows"), "2");
    assert_eq!(p.take_stats(), MysqlStats::default());
}

fn zlib(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A compressed packet holding `inner` (stored when `compress` is false).
fn cpkt(seq: u8, inner: &[u8], compress: bool) -> Vec<u8> {
    let (body, ulen) = if compress {
        (zlib(inner), inner.len() as u32)
    } else {
        (inner.to_vec(), 0)
    };
    let mut v = (body.len() as u32).to_le_bytes()[..3].to_vec();
    v.push(seq);
    v.extend_from_slice(&ulen.to_le_bytes()[..3]);
    v.extend(body);
    v
}

#[test]
fn compressed_protocol() {
    let caps = BASE_CAPS | CLIENT_COMPRESS;
    let big = result_set(3, 200, 2, false);
    // The reply split over two compressed packets, cut inside an ordinary packet.
    let cut = big.len() / 2 + 3;
    let mut reply = cpkt(1, &big[..cut], true);
    reply.extend(cpkt(2, &big[cut..], true));
    let conv = vec![
        (S, greeting("8.0.36", caps)),
        (C, login(caps, "u", Some("db"))),
        (S, pkt(2, &ok_payload(0, 2))),
        (C, cpkt(0, &cmd(COM_QUERY, b"SELECT a, b, c FROM t"), false)),
        (S, reply),
        (C, cpkt(0, &cmd(COM_PING, b""), true)),
        (S, cpkt(1, &pkt(1, &ok_payload(0, 2)), false)),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs.len(), 2, "{txs:?}");
    assert_eq!(s(&txs[0], "db.response.returned_rows"), "200");
    assert_eq!(txs[1].operation, "PING");
    // Picked up after the handshake: found compressed from the first command.
    let txs = testkit::feed_midstream(&mut decoder(), &chunks(&conv), 3);
    assert_eq!(txs.len(), 2, "{txs:?}");
    assert_eq!(s(&txs[0], "db.response.returned_rows"), "200");
}

#[test]
fn zlib_that_does_not_inflate_stops() {
    let caps = BASE_CAPS | CLIENT_COMPRESS;
    let mut bad = cpkt(0, &cmd(COM_QUERY, b"SELECT 1"), true);
    let n = bad.len();
    bad[n - 6..].fill(0x55);
    let conv = vec![
        (S, greeting("8.0.36", caps)),
        (C, login(caps, "u", None)),
        (S, pkt(2, &ok_payload(0, 2))),
        (C, bad),
    ];
    let mut p = decoder();
    let txs = testkit::feed_whole(&mut p, &chunks(&conv));
    assert!(txs.is_empty());
    assert_eq!(p.take_stats().compression_unsupported, 1);
}

#[test]
fn statement_map_is_bounded() {
    let cfg = MysqlConfig {
        max_statements: 2,
        ..MysqlConfig::default()
    };
    let mut p = MysqlParser::new(&cfg);
    let mut out = Vec::new();
    for id in 1u32..=4 {
        p.on_data(
            C,
            &cmd(COM_STMT_PREPARE, b"SELECT 1"),
            Timestamp::ZERO,
            &mut out,
        );
        let mut ok = vec![0];
        ok.extend_from_slice(&id.to_le_bytes());
        ok.extend_from_slice(&[0; 7]);
        p.on_data(S, &pkt(1, &ok), Timestamp::ZERO, &mut out);
    }
    assert_eq!(p.statements(), 2);
    let mut exec = 4u32.to_le_bytes().to_vec();
    exec.extend_from_slice(&[0, 1, 0, 0, 0]);
    p.on_data(C, &cmd(COM_STMT_EXECUTE, &exec), Timestamp::ZERO, &mut out);
    p.on_data(S, &pkt(1, &ok_payload(0, 2)), Timestamp::ZERO, &mut out);
    assert_eq!(out.last().unwrap().operation, "EXECUTE");
    let st = p.take_stats();
    assert_eq!((st.statements_dropped, st.unknown_statement), (2, 1));
}

#[test]
fn query_attributes_are_skipped() {
    let caps = BASE_CAPS | CLIENT_QUERY_ATTRIBUTES;
    let mut q = vec![COM_QUERY, 1, 1, 0, 1, 0x08, 0, 2, b'i', b'd'];
    q.extend_from_slice(&7u64.to_le_bytes());
    q.extend_from_slice(b"UPDATE t SET a = 1");
    let conv = vec![
        (S, greeting("8.0.36", caps)),
        (C, login(caps, "u", None)),
        (S, pkt(2, &ok_payload(0, 2))),
        (C, pkt(0, &q)),
        (S, pkt(1, &ok_payload(1, 2))),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs[0].operation, "UPDATE");
}

#[test]
fn unanswered_commands_at_close() {
    let conv = vec![(C, cmd(COM_QUERY, b"SELECT SLEEP(100)"))];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs.len(), 1);
    assert!(txs[0].completeness.has(Completeness::NO_RESPONSE));
}

#[test]
fn probe_recognises_greeting_and_queries() {
    let g = greeting("5.5.5-10.11.6-MariaDB", BASE_CAPS);
    assert_eq!(probe(&g, S, false), Confidence::Certain);
    assert_eq!(probe(&g[..3], S, false), Confidence::NeedMore);
    let q = cmd(COM_QUERY, b"SELECT * FROM t");
    assert_eq!(probe(&q, C, false), Confidence::Certain);
    assert_eq!(probe(&q[..8], C, false), Confidence::Likely);
    assert_eq!(probe(b"GET / HTTP/1.1\r\n", C, false), Confidence::No);
    assert_eq!(probe(b"*1\r\n$4\r\nPING\r\n", C, false), Confidence::No);
    assert_eq!(probe(&cmd(COM_PING, b""), C, false), Confidence::No);
    assert_eq!(probe(&cmd(COM_PING, b""), C, true), Confidence::Port);
    let c = cpkt(0, &cmd(COM_QUERY, b"SELECT 1"), false);
    assert_eq!(probe(&c, C, false), Confidence::Likely);
    let c = cpkt(0, &cmd(COM_QUERY, b"SELECT 1"), true);
    assert_eq!(probe(&c, C, false), Confidence::Likely);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = testkit::Rng(0x5eed);
    for _ in 0..2000 {
        let n = rng.below(200);
        let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let mut p = decoder();
        let mut out = Vec::new();
        let dir = if rng.below(2) == 0 { C } else { S };
        p.on_data(dir, &bytes, Timestamp::ZERO, &mut out);
        p.on_data(dir.reverse(), &bytes, Timestamp::ZERO, &mut out);
        p.on_close(Timestamp::ZERO, false, &mut out);
        let _ = probe(&bytes, dir, true);
    }
}

#[test]
fn query_text_is_opt_in_and_literal_free() {
    let conv = vec![
        (
            C,
            cmd(
                COM_QUERY,
                b"SELECT id FROM users WHERE pw = 'hunter2-s3cr3t' AND n = 42",
            ),
        ),
        (S, pkt(1, &ok_payload(0, 2))),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert!(txs[0].attr("db.query.text").is_none());
    let cfg = MysqlConfig {
        query_text: true,
        ..MysqlConfig::default()
    };
    let txs = testkit::check_all(|| MysqlParser::new(&cfg), &chunks(&conv));
    let text = s(&txs[0], "db.query.text");
    assert!(
        text.starts_with("SELECT id FROM users WHERE pw = ?"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !text.contains("42"), "{text}");
    assert_eq!(s(&txs[0], "db.collection.name"), "users");
}

#[test]
fn use_changes_the_namespace() {
    let conv = vec![
        (C, cmd(COM_QUERY, b"USE `shop`")),
        (S, pkt(1, &ok_payload(0, 2))),
        (C, cmd(COM_PING, b"")),
        (S, pkt(1, &ok_payload(0, 2))),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(s(&txs[1], "db.namespace"), "shop");
}

#[test]
fn a_lost_reply_does_not_shift_the_pairs() {
    let conv = vec![
        (C, cmd(COM_QUERY, b"SELECT a FROM t")),
        (S, result_set(1, 3, 2, false)),
        (C, cmd(COM_QUERY, b"SELECT b FROM u")),
        (S, result_set(1, 2, 2, false)),
    ];
    let mut p = decoder();
    let txs = testkit::feed_with_gap(&mut p, &chunks(&conv), 1);
    assert_eq!(txs.len(), 2);
    assert!(txs[0].completeness.has(Completeness::GAP));
    assert!(txs[0].completeness.has(Completeness::NO_RESPONSE));
    assert_eq!(s(&txs[1], "db.query.summary"), "SELECT u");
    assert_eq!(s(&txs[1], "db.response.returned_rows"), "2");
    assert_eq!(txs[1].completeness.0, Completeness::MIDSTREAM);
    assert_eq!(p.take_stats().responses_lost, 1);
    // A lost command: its reply is counted, the next pair is whole.
    let mut p = decoder();
    let txs = testkit::feed_with_gap(&mut p, &chunks(&conv), 0);
    assert_eq!(txs.len(), 1);
    assert_eq!(s(&txs[0], "db.query.summary"), "SELECT u");
    assert_eq!(s(&txs[0], "db.response.returned_rows"), "2");
    assert_eq!(p.take_stats().no_request, 1);
}

#[test]
fn cursor_fetch() {
    // EXECUTE with a read-only cursor: column definitions only; FETCH brings the rows.
    let mut exec = 1u32.to_le_bytes().to_vec();
    exec.extend_from_slice(&[1, 1, 0, 0, 0]);
    let mut fetch = 1u32.to_le_bytes().to_vec();
    fetch.extend_from_slice(&10u32.to_le_bytes());
    let conv = vec![
        (C, cmd(COM_STMT_EXECUTE, &exec)),
        (S, pkts(1, &[vec![1], coldef("a"), eof_payload(0x41)])),
        (C, cmd(COM_STMT_FETCH, &fetch)),
        (
            S,
            pkts(
                1,
                &[vec![0, 0, 1, b'x'], vec![0, 0, 1, b'y'], eof_payload(0x80)],
            ),
        ),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[1].operation, "FETCH");
    assert_eq!(s(&txs[1], "db.response.returned_rows"), "2");
}

#[test]
fn documented_config_is_the_default() {
    let cfg = crate::config::Config::load(None).unwrap();
    assert_eq!(cfg.protocols.mysql.settings, MysqlConfig::default());
    assert!(cfg.protocols.mysql.enabled);
    assert!(MysqlParser::validate(&MysqlConfig::default()).is_ok());
    let small = MysqlConfig {
        max_statement_bytes: 8,
        ..MysqlConfig::default()
    };
    assert!(MysqlParser::validate(&small).is_err());
    let zero = MysqlConfig {
        max_pending: 0,
        ..MysqlConfig::default()
    };
    assert!(
        MysqlParser::validate(&zero)
            .unwrap_err()
            .contains("max_pending")
    );
}

#[test]
fn change_user_resets_the_session() {
    let mut cu = vec![COM_CHANGE_USER];
    cu.extend_from_slice(b"other\0");
    cu.push(SECRET.len() as u8);
    cu.extend_from_slice(SECRET.as_bytes());
    cu.extend_from_slice(b"newdb\0");
    let mut prep_ok = vec![0];
    prep_ok.extend_from_slice(&3u32.to_le_bytes());
    prep_ok.extend_from_slice(&[0; 7]);
    let mut switch = vec![0xfe];
    switch.extend_from_slice(b"mysql_native_password\0");
    switch.extend_from_slice(&[7; 20]);
    let conv = vec![
        (S, greeting("8.0.36", BASE_CAPS | CLIENT_CONNECT_WITH_DB)),
        (C, login(BASE_CAPS, "u", Some("db"))),
        (S, pkt(2, &ok_payload(0, 2))),
        (C, cmd(COM_STMT_PREPARE, b"DELETE FROM t")),
        (S, pkt(1, &prep_ok)),
        (C, pkt(0, &cu)),
        (S, pkt(1, &switch)),
        (C, pkt(2, SECRET.as_bytes())),
        (S, pkt(3, &ok_payload(0, 2))),
        (C, cmd(COM_PING, b"")),
        (S, pkt(1, &ok_payload(0, 2))),
    ];
    let mut p = decoder();
    let txs = testkit::check_all(decoder, &chunks(&conv));
    testkit::feed_whole(&mut p, &chunks(&conv));
    assert_eq!(txs.len(), 3);
    assert_eq!(txs[1].operation, "CHANGE_USER");
    assert_eq!(s(&txs[2], "db.namespace"), "newdb");
    assert_eq!(p.statements(), 0);
    assert!(!format!("{txs:?}").contains("hunter2"));
    assert_eq!(p.take_stats(), MysqlStats::default());
}

#[test]
fn midstream_prepare_without_parameters_learns_deprecate_eof() {
    let mut ok = vec![0];
    ok.extend_from_slice(&5u32.to_le_bytes());
    ok.extend_from_slice(&1u16.to_le_bytes());
    ok.extend_from_slice(&[0, 0, 0, 0, 0]);
    let conv = vec![
        (C, cmd(COM_STMT_PREPARE, b"SELECT a FROM t")),
        (S, pkts(1, &[ok, coldef("a")])),
        (C, cmd(COM_PING, b"")),
        (S, pkt(1, &ok_payload(0, 2))),
    ];
    let txs = testkit::check_all(decoder, &chunks(&conv));
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].operation, "PREPARE");
    assert_eq!(txs[1].operation, "PING");
    assert!(
        txs.iter()
            .all(|t| !t.completeness.has(Completeness::NO_RESPONSE))
    );
}
