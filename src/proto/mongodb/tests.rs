//! MongoDB decoder tests: every conversation through testkit::check_all (whole, byte by
//! byte, split everywhere, gaps, mid-stream), then what the transactions say. Messages
//! are built here with a small BSON writer of the tests' own.

use super::parser::{CHECKSUM_PRESENT, Framer};
use super::*;
use crate::proto::AttrValue;
use crate::proto::testkit::{Chunk, check_all, feed_whole};

use Direction::{ToClient as S, ToServer as C};

/// A BSON value, as the tests write them.
enum V<'a> {
    Str(&'a str),
    I32(i32),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    Doc(Vec<u8>),
    Arr(Vec<Vec<u8>>),
    Bin(&'a [u8]),
    Oid,
    Regex(&'a str, &'a str),
}

/// A BSON document of `fields`.
fn doc(fields: &[(&str, V)]) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    for (k, v) in fields {
        let (ty, val): (u8, Vec<u8>) = match v {
            V::Str(s) => {
                let mut x = (s.len() as u32 + 1).to_le_bytes().to_vec();
                x.extend_from_slice(s.as_bytes());
                x.push(0);
                (2, x)
            }
            V::I32(n) => (0x10, n.to_le_bytes().to_vec()),
            V::I64(n) => (0x12, n.to_le_bytes().to_vec()),
            V::F64(n) => (1, n.to_le_bytes().to_vec()),
            V::Bool(n) => (8, vec![*n as u8]),
            V::Null => (0x0A, vec![]),
            V::Doc(d) => (3, d.clone()),
            V::Arr(items) => {
                let f: Vec<(String, V)> = items
                    .iter()
                    .enumerate()
                    .map(|(i, d)| (i.to_string(), V::Doc(d.clone())))
                    .collect();
                let refs: Vec<(&str, V)> = f
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str(),
                            match v {
                                V::Doc(d) => V::Doc(d.clone()),
                                _ => unreachable!(),
                            },
                        )
                    })
                    .collect();
                (4, doc(&refs))
            }
            V::Bin(d) => {
                let mut x = (d.len() as u32).to_le_bytes().to_vec();
                x.push(0);
                x.extend_from_slice(d);
                (5, x)
            }
            V::Oid => (7, vec![7; 12]),
            V::Regex(p, o) => {
                let mut x = p.as_bytes().to_vec();
                x.push(0);
                x.extend_from_slice(o.as_bytes());
                x.push(0);
                (0x0B, x)
            }
        };
        b.push(ty);
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(&val);
    }
    b.push(0);
    let n = b.len() as u32;
    b[..4].copy_from_slice(&n.to_le_bytes());
    b
}

fn message(req: u32, resp_to: u32, opcode: u32, body: &[u8]) -> Vec<u8> {
    let mut m = (16 + body.len() as u32).to_le_bytes().to_vec();
    m.extend_from_slice(&req.to_le_bytes());
    m.extend_from_slice(&resp_to.to_le_bytes());
    m.extend_from_slice(&opcode.to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// OP_MSG with a body section and document sequences (identifier, documents).
fn op_msg(req: u32, resp_to: u32, flags: u32, body: &[u8], seqs: &[(&str, &[Vec<u8>])]) -> Vec<u8> {
    let mut b = flags.to_le_bytes().to_vec();
    b.push(0);
    b.extend_from_slice(body);
    for (id, docs) in seqs {
        b.push(1);
        let mut s = Vec::new();
        s.extend_from_slice(id.as_bytes());
        s.push(0);
        for d in *docs {
            s.extend_from_slice(d);
        }
        b.extend_from_slice(&(s.len() as u32 + 4).to_le_bytes());
        b.extend_from_slice(&s);
    }
    if flags & CHECKSUM_PRESENT != 0 {
        b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
    }
    message(req, resp_to, OP_MSG, &b)
}

fn op_query(req: u32, ns: &str, query: &[u8]) -> Vec<u8> {
    let mut b = 0u32.to_le_bytes().to_vec();
    b.extend_from_slice(ns.as_bytes());
    b.push(0);
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&(-1i32).to_le_bytes());
    b.extend_from_slice(query);
    message(req, 0, OP_QUERY, &b)
}

fn op_reply(req: u32, resp_to: u32, flags: u32, docs: &[Vec<u8>]) -> Vec<u8> {
    let mut b = flags.to_le_bytes().to_vec();
    b.extend_from_slice(&0u64.to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&(docs.len() as u32).to_le_bytes());
    for d in docs {
        b.extend_from_slice(d);
    }
    message(req, resp_to, OP_REPLY, &b)
}

/// `m` (a whole message) as OP_COMPRESSED with compressor `id`.
fn compress(m: &[u8], id: u8) -> Vec<u8> {
    use std::io::Write;
    let body = &m[16..];
    let data = match id {
        0 => body.to_vec(),
        1 => snap::raw::Encoder::new().compress_vec(body).unwrap(),
        2 => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(body).unwrap();
            e.finish().unwrap()
        }
        3 => ruzstd::encoding::compress_to_vec(body, ruzstd::encoding::CompressionLevel::Fastest),
        _ => body.to_vec(),
    };
    let mut b = m[12..16].to_vec();
    b.extend_from_slice(&(body.len() as u32).to_le_bytes());
    b.push(id);
    b.extend_from_slice(&data);
    let req = u32::from_le_bytes(m[4..8].try_into().unwrap());
    let to = u32::from_le_bytes(m[8..12].try_into().unwrap());
    message(req, to, OP_COMPRESSED, &b)
}

fn ok() -> Vec<u8> {
    doc(&[("ok", V::F64(1.0))])
}

fn cursor_reply(batch: &str, n: usize) -> Vec<u8> {
    let docs: Vec<Vec<u8>> = (0..n)
        .map(|i| doc(&[("_id", V::Oid), ("i", V::I32(i as i32)), ("secret", V::Str("v4lue"))]))
        .collect();
    doc(&[
        (
            "cursor",
            V::Doc(doc(&[
                (batch, V::Arr(docs)),
                ("id", V::I64(0)),
                ("ns", V::Str("shop.items")),
            ])),
        ),
        ("ok", V::F64(1.0)),
    ])
}

fn find(coll: &str) -> Vec<u8> {
    doc(&[
        ("find", V::Str(coll)),
        ("filter", V::Doc(doc(&[("name", V::Str("s3cr3t")), ("re", V::Regex("^a", "i"))]))),
        ("lsid", V::Doc(doc(&[("id", V::Bin(&[1; 16]))]))),
        ("$db", V::Str("shop")),
    ])
}

fn parser() -> MongoParser {
    MongoParser::new(MongoConfig::default())
}

fn attr<'a>(t: &'a Transaction, k: &str) -> Option<&'a AttrValue> {
    t.attr(k)
}

fn s(t: &Transaction, k: &str) -> String {
    match t.attr(k) {
        Some(AttrValue::Str(v)) => v.to_string(),
        other => panic!("{k}: {other:?}"),
    }
}

fn int(t: &Transaction, k: &str) -> i64 {
    match t.attr(k) {
        Some(AttrValue::Int(v)) => *v,
        other => panic!("{k}: {other:?}"),
    }
}

fn no_secrets(txs: &[Transaction]) {
    let all = format!("{txs:?}");
    for secret in ["s3cr3t", "v4lue", "hunter2", "c2VjcmV0"] {
        assert!(!all.contains(secret), "{secret} leaked: {all}");
    }
}

#[test]
fn find_pairs_by_request_id_and_counts_rows() {
    let q = op_msg(7, 0, 0, &find("items"), &[]);
    let r = op_msg(100, 7, 0, &cursor_reply("firstBatch", 3), &[]);
    let conv: Vec<Chunk> = vec![(C, &q), (S, &r)];
    let txs = check_all(parser, &conv);
    assert_eq!(txs.len(), 1);
    let t = &txs[0];
    assert_eq!(t.operation, "find");
    assert_eq!(t.resource, "items");
    assert_eq!(s(t, "db.system.name"), "mongodb");
    assert_eq!(s(t, "db.operation.name"), "find");
    assert_eq!(s(t, "db.namespace"), "shop");
    assert_eq!(s(t, "db.collection.name"), "items");
    assert_eq!(s(t, "db.query.summary"), "find items");
    assert_eq!(int(t, "db.response.returned_rows"), 3);
    assert!(t.completeness.is_complete());
    assert_eq!(t.error, None);
    assert_eq!(t.req_bytes, q.len() as u64);
    assert_eq!(t.resp_bytes, r.len() as u64);
    no_secrets(&txs);
}

#[test]
fn get_more_next_batch_and_collection_field() {
    let q = op_msg(
        8,
        0,
        0,
        &doc(&[
            ("getMore", V::I64(12345)),
            ("collection", V::Str("items")),
            ("$db", V::Str("shop")),
        ]),
        &[],
    );
    let r = op_msg(101, 8, 0, &cursor_reply("nextBatch", 5), &[]);
    let txs = check_all(parser, &[(C, &q), (S, &r)]);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].operation, "getMore");
    assert_eq!(s(&txs[0], "db.collection.name"), "items");
    assert_eq!(int(&txs[0], "db.response.returned_rows"), 5);
}

#[test]
fn insert_document_sequence_and_write_errors() {
    let docs: Vec<Vec<u8>> = (0..4).map(|i| doc(&[("_id", V::I32(i)), ("pw", V::Str("hunter2"))])).collect();
    let q = op_msg(
        9,
        0,
        0,
        &doc(&[("insert", V::Str("users")), ("ordered", V::Bool(true)), ("$db", V::Str("app"))]),
        &[("documents", &docs)],
    );
    let werr = doc(&[("index", V::I32(1)), ("code", V::I32(11000)), ("errmsg", V::Str("dup key s3cr3t"))]);
    let r = op_msg(
        102,
        9,
        0,
        &doc(&[
            ("n", V::I32(1)),
            ("writeErrors", V::Arr(vec![werr.clone(), werr])),
            ("ok", V::F64(1.0)),
        ]),
        &[],
    );
    let txs = check_all(parser, &[(C, &q), (S, &r)]);
    assert_eq!(txs.len(), 1);
    let t = &txs[0];
    assert_eq!(t.operation, "insert");
    assert_eq!(s(t, "db.collection.name"), "users");
    assert_eq!(s(t, "db.namespace"), "app");
    assert_eq!(int(t, "podtap.mongodb.documents"), 4);
    assert_eq!(int(t, "podtap.mongodb.write_errors"), 2);
    assert_eq!(s(t, "db.response.status_code"), "11000");
    assert_eq!(t.error.as_deref(), Some("11000"));
    no_secrets(&txs);
}

#[test]
fn command_failure_gives_code_and_code_name() {
    let q = op_msg(
        10,
        0,
        0,
        &doc(&[("replSetGetStatus", V::I32(1)), ("$db", V::Str("admin"))]),
        &[],
    );
    let r = op_msg(
        103,
        10,
        0,
        &doc(&[
            ("ok", V::F64(0.0)),
            ("errmsg", V::Str("not running with --replSet")),
            ("code", V::I32(76)),
            ("codeName", V::Str("NoReplicationEnabled")),
        ]),
        &[],
    );
    let txs = check_all(parser, &[(C, &q), (S, &r)]);
    let t = &txs[0];
    assert_eq!(t.operation, "replSetGetStatus");
    assert_eq!(attr(t, "db.collection.name"), None);
    assert_eq!(s(t, "db.response.status_code"), "76");
    assert_eq!(t.error.as_deref(), Some("NoReplicationEnabled"));
}

#[test]
fn more_to_come_request_is_reported_at_once_and_does_not_shift_pairing() {
    let w = op_msg(
        11,
        0,
        MORE_TO_COME,
        &doc(&[("insert", V::Str("log")), ("$db", V::Str("app"))]),
        &[("documents", &[doc(&[("x", V::I32(1))])])],
    );
    let q = op_msg(12, 0, 0, &find("items"), &[]);
    let r = op_msg(104, 12, 0, &cursor_reply("firstBatch", 2), &[]);
    let txs = check_all(parser, &[(C, &w), (C, &q), (S, &r)]);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].operation, "insert");
    assert_eq!(attr(&txs[0], "podtap.mongodb.more_to_come"), Some(&AttrValue::Bool(true)));
    assert!(txs[0].completeness.is_complete());
    assert_eq!(txs[1].operation, "find");
    assert_eq!(int(&txs[1], "db.response.returned_rows"), 2);
    assert!(txs[1].completeness.is_complete());
}

#[test]
fn checksum_flag_is_skipped() {
    let q = op_msg(13, 0, CHECKSUM_PRESENT, &find("items"), &[("documents", &[ok()])]);
    let r = op_msg(105, 13, CHECKSUM_PRESENT, &cursor_reply("firstBatch", 1), &[]);
    let txs = check_all(parser, &[(C, &q), (S, &r)]);
    assert_eq!(txs.len(), 1);
    assert_eq!(int(&txs[0], "db.response.returned_rows"), 1);
    assert_eq!(attr(&txs[0], "podtap.mongodb.unread"), None);
}

#[test]
fn exhaust_replies_each_answer_the_one_before() {
    let q = op_msg(
        14,
        0,
        EXHAUST_ALLOWED,
        &doc(&[("hello", V::I32(1)), ("maxAwaitTimeMS", V::I32(10000)), ("$db", V::Str("admin"))]),
        &[],
    );
    let r1 = op_msg(200, 14, MORE_TO_COME, &doc(&[("isWritablePrimary", V::Bool(true)), ("ok", V::F64(1.0))]), &[]);
    let r2 = op_msg(201, 200, MORE_TO_COME, &ok(), &[]);
    let r3 = op_msg(202, 201, 0, &ok(), &[]);
    let txs = check_all(parser, &[(C, &q), (S, &r1), (S, &r2), (S, &r3)]);
    assert_eq!(txs.len(), 3);
    for (i, t) in txs.iter().enumerate() {
        assert_eq!(t.operation, "hello");
        assert_eq!(attr(t, "podtap.mongodb.handshake"), Some(&AttrValue::Bool(true)));
        assert!(t.completeness.is_complete(), "{i}");
        assert_eq!(attr(t, "podtap.mongodb.exhaust").is_some(), i > 0);
    }
    // Closed while the server streams: the announced reply is no lost request.
    let txs = feed_whole(&mut parser(), &[(C, &q), (S, &r1)]);
    assert_eq!(txs.len(), 1);
}

#[test]
fn legacy_query_command_and_find_with_op_reply() {
    let cmd = op_query(
        1,
        "admin.$cmd",
        &doc(&[
            ("isMaster", V::I32(1)),
            ("speculativeAuthenticate", V::Doc(doc(&[("saslStart", V::I32(1)), ("payload", V::Bin(b"c2VjcmV0"))]))),
        ]),
    );
    let cmd_r = op_reply(60, 1, 8, &[doc(&[("ismaster", V::Bool(true)), ("ok", V::F64(1.0))])]);
    let wrapped = op_query(
        2,
        "shop.$cmd",
        &doc(&[
            ("$query", V::Doc(doc(&[("count", V::Str("items")), ("query", V::Doc(ok()))]))),
            ("$readPreference", V::Doc(doc(&[("mode", V::Str("secondary"))]))),
        ]),
    );
    let wrapped_r = op_reply(61, 2, 8, &[doc(&[("n", V::I32(10)), ("ok", V::F64(1.0))])]);
    let q = op_query(3, "shop.items", &doc(&[("name", V::Str("s3cr3t"))]));
    let rows: Vec<Vec<u8>> = (0..3).map(|i| doc(&[("i", V::I32(i))])).collect();
    let q_r = op_reply(62, 3, 0, &rows);
    let fail = op_query(4, "shop.items", &doc(&[("$where", V::Str("s3cr3t"))]));
    let fail_r = op_reply(63, 4, QUERY_FAILURE, &[doc(&[("$err", V::Str("bad s3cr3t")), ("code", V::I32(2))])]);
    let txs = check_all(
        parser,
        &[(C, &cmd), (S, &cmd_r), (C, &wrapped), (S, &wrapped_r), (C, &q), (S, &q_r), (C, &fail), (S, &fail_r)],
    );
    assert_eq!(txs.len(), 4);
    assert_eq!(txs[0].operation, "isMaster");
    assert_eq!(s(&txs[0], "db.namespace"), "admin");
    assert_eq!(s(&txs[0], "podtap.mongodb.opcode"), "OP_QUERY");
    assert_eq!(attr(&txs[0], "podtap.mongodb.handshake"), Some(&AttrValue::Bool(true)));
    assert_eq!(attr(&txs[0], "db.response.returned_rows"), None);
    assert_eq!(txs[1].operation, "count");
    assert_eq!(s(&txs[1], "db.collection.name"), "items");
    assert_eq!(txs[2].operation, "find");
    assert_eq!(s(&txs[2], "db.collection.name"), "items");
    assert_eq!(s(&txs[2], "db.namespace"), "shop");
    assert_eq!(int(&txs[2], "db.response.returned_rows"), 3);
    assert_eq!(txs[3].error.as_deref(), Some("2"));
    assert_eq!(s(&txs[3], "db.response.status_code"), "2");
    no_secrets(&txs);
}

#[test]
fn legacy_get_more_and_writes() {
    let mut gm = 0u32.to_le_bytes().to_vec();
    gm.extend_from_slice(b"shop.items\0");
    gm.extend_from_slice(&0u32.to_le_bytes());
    gm.extend_from_slice(&42u64.to_le_bytes());
    let gm = message(5, 0, OP_GET_MORE, &gm);
    let gm_r = op_reply(64, 5, 0, &[ok(), ok()]);
    let mut ins = 0u32.to_le_bytes().to_vec();
    ins.extend_from_slice(b"shop.items\0");
    ins.extend_from_slice(&doc(&[("pw", V::Str("hunter2"))]));
    let ins = message(6, 0, OP_INSERT, &ins);
    let gone = op_reply(65, 7, CURSOR_NOT_FOUND, &[]);
    let mut gm2 = gm.clone();
    gm2[4] = 7;
    let conv: Vec<Chunk> = vec![(C, &gm), (S, &gm_r), (C, &ins), (C, &gm2), (S, &gone)];
    let txs = check_all(parser, &conv);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].operation, "getMore");
    assert_eq!(int(&txs[0], "db.response.returned_rows"), 2);
    assert_eq!(txs[1].error.as_deref(), Some("CursorNotFound"));
    let mut p = parser();
    feed_whole(&mut p, &conv);
    assert_eq!(p.take_stats().legacy_writes, 1);
    no_secrets(&txs);
}

#[test]
fn compressed_snappy_zlib_zstd_and_noop() {
    for id in 0..4u8 {
        let q = compress(&op_msg(20, 0, 0, &find("items"), &[]), id);
        let r = compress(&op_msg(300, 20, 0, &cursor_reply("firstBatch", 4), &[]), id);
        let txs = check_all(parser, &[(C, &q), (S, &r)]);
        assert_eq!(txs.len(), 1, "compressor {id}");
        let t = &txs[0];
        assert_eq!(t.operation, "find", "compressor {id}: {t:?}");
        assert_eq!(s(t, "db.collection.name"), "items");
        assert_eq!(int(t, "db.response.returned_rows"), 4);
        assert_eq!(s(t, "podtap.mongodb.compressor"), compressor_name(id));
        assert_eq!(t.req_bytes, q.len() as u64);
        let mut p = parser();
        feed_whole(&mut p, &[(C, &q), (S, &r)]);
        assert_eq!(p.take_stats().compressed, 2);
    }
}

#[test]
fn decompression_is_bounded_and_bad_data_counted() {
    let q = compress(&op_msg(21, 0, 0, &find("items"), &[]), 1);
    let r = op_msg(301, 21, 0, &cursor_reply("firstBatch", 1), &[]);
    let mut p = MongoParser::new(MongoConfig {
        max_decompressed_bytes: 32,
        ..MongoConfig::default()
    });
    let txs = feed_whole(&mut p, &[(C, &q), (S, &r)]);
    assert_eq!(txs.len(), 1, "paired by the header alone");
    assert_eq!(txs[0].operation, "");
    assert_eq!(attr(&txs[0], "podtap.mongodb.unread"), Some(&AttrValue::Bool(true)));
    assert_eq!(int(&txs[0], "db.response.returned_rows"), 1);
    assert_eq!(p.take_stats().decompress_limit, 1);
    // Damaged data and an unknown compressor.
    let mut bad = compress(&op_msg(22, 0, 0, &find("items"), &[]), 2);
    let n = bad.len();
    bad[n - 6] ^= 0xff;
    let mut unknown = compress(&op_msg(23, 0, 0, &find("items"), &[]), 0);
    unknown[24] = 9;
    let mut p = parser();
    let txs = feed_whole(&mut p, &[(C, &bad), (C, &unknown)]);
    assert_eq!(txs.len(), 2);
    assert_eq!(p.take_stats().decompress_failed, 2);
}

#[test]
fn authentication_is_named_never_exported() {
    let start = op_msg(
        30,
        0,
        0,
        &doc(&[
            ("saslStart", V::I32(1)),
            ("mechanism", V::Str("SCRAM-SHA-256")),
            ("payload", V::Bin(b"c2VjcmV0")),
            ("$db", V::Str("admin")),
        ]),
        &[],
    );
    let start_r = op_msg(
        400,
        30,
        0,
        &doc(&[("conversationId", V::I32(1)), ("payload", V::Bin(b"c2VjcmV0")), ("ok", V::F64(1.0))]),
        &[],
    );
    let cont = op_msg(
        31,
        0,
        0,
        &doc(&[("saslContinue", V::Str("s3cr3t")), ("payload", V::Bin(b"c2VjcmV0")), ("$db", V::Str("admin"))]),
        &[],
    );
    let cont_r = op_msg(401, 31, 0, &ok(), &[]);
    let user = op_msg(
        32,
        0,
        0,
        &doc(&[("createUser", V::Str("s3cr3t")), ("pwd", V::Str("hunter2")), ("$db", V::Str("admin"))]),
        &[],
    );
    let user_r = op_msg(402, 32, 0, &ok(), &[]);
    let txs = check_all(parser, &[(C, &start), (S, &start_r), (C, &cont), (S, &cont_r), (C, &user), (S, &user_r)]);
    assert_eq!(
        txs.iter().map(|t| t.operation.as_str()).collect::<Vec<_>>(),
        ["saslStart", "saslContinue", "createUser"]
    );
    for t in &txs {
        assert_eq!(attr(t, "db.collection.name"), None);
    }
    no_secrets(&txs);
}

#[test]
fn reply_without_request_and_unanswered_requests() {
    let r = op_msg(500, 99, 0, &ok(), &[]);
    let txs = feed_whole(&mut parser(), &[(S, &r)]);
    assert_eq!(txs.len(), 1);
    assert!(txs[0].completeness.has(Completeness::NO_REQUEST));
    // Request 40's reply never came; 41's did.
    let a = op_msg(40, 0, 0, &find("a"), &[]);
    let b = op_msg(41, 0, 0, &find("b"), &[]);
    let rb = op_msg(501, 41, 0, &cursor_reply("firstBatch", 0), &[]);
    let mut p = parser();
    let txs = feed_whole(&mut p, &[(C, &a), (C, &b), (S, &rb)]);
    assert_eq!(txs.len(), 2);
    assert_eq!(txs[0].resource, "a");
    assert!(txs[0].completeness.has(Completeness::NO_RESPONSE));
    assert_eq!(txs[1].resource, "b");
    assert_eq!(int(&txs[1], "db.response.returned_rows"), 0);
    assert_eq!(p.take_stats().unanswered, 1);
}

#[test]
fn pending_is_bounded_and_close_reports_the_rest() {
    let mut p = MongoParser::new(MongoConfig {
        max_pending: 2,
        ..MongoConfig::default()
    });
    let msgs: Vec<Vec<u8>> = (0..5).map(|i| op_msg(i, 0, 0, &find("x"), &[])).collect();
    let conv: Vec<Chunk> = msgs.iter().map(|m| (C, &m[..])).collect();
    let txs = feed_whole(&mut p, &conv);
    assert_eq!(txs.len(), 5);
    assert!(txs.iter().all(|t| t.completeness.has(Completeness::NO_RESPONSE)));
    assert_eq!(p.take_stats().pending_limit, 3);
}

#[test]
fn unknown_opcode_is_skipped_by_length() {
    let junk = message(50, 0, 2269, &[1, 2, 3, 4, 5, 6]);
    let q = op_msg(51, 0, 0, &find("items"), &[]);
    let r = op_msg(600, 51, 0, &cursor_reply("firstBatch", 1), &[]);
    let txs = check_all(parser, &[(C, &junk), (C, &q), (S, &r)]);
    assert_eq!(txs.len(), 1);
    let mut p = parser();
    feed_whole(&mut p, &[(C, &junk), (C, &q), (S, &r)]);
    assert_eq!(p.take_stats().unknown_opcode, 1);
}

#[test]
fn malformed_bodies_keep_the_framing() {
    // A document length beyond the message, then an unknown BSON type.
    let mut bad = op_msg(60, 0, 0, &find("items"), &[]);
    bad[21] = 0xff;
    let mut bad_type = op_msg(61, 0, 0, &find("items"), &[]);
    bad_type[25] = 0x42;
    let q = op_msg(62, 0, 0, &find("items"), &[]);
    let r60 = op_msg(700, 60, 0, &ok(), &[]);
    let r61 = op_msg(701, 61, 0, &ok(), &[]);
    let r62 = op_msg(702, 62, 0, &ok(), &[]);
    let conv: Vec<Chunk> = vec![(C, &bad), (S, &r60), (C, &bad_type), (S, &r61), (C, &q), (S, &r62)];
    let txs = check_all(parser, &conv);
    assert_eq!(txs.len(), 3);
    assert!(txs.iter().all(|t| t.completeness.is_complete()));
    assert_eq!(txs[2].operation, "find");
    let mut p = parser();
    feed_whole(&mut p, &conv);
    assert_eq!(p.take_stats().malformed_body, 2);
}

#[test]
fn garbage_resynchronises_at_the_next_header() {
    let q = op_msg(70, 0, 0, &find("items"), &[]);
    let r = op_msg(800, 70, 0, &ok(), &[]);
    let mut garbage = vec![0xffu8; 40];
    garbage.extend_from_slice(&q);
    let mut p = parser();
    let txs = feed_whole(&mut p, &[(C, &garbage), (S, &r)]);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].operation, "find");
    assert!(p.take_stats().malformed >= 1);
}

#[test]
fn gap_inside_a_message_costs_that_message() {
    let big = cursor_reply("firstBatch", 50);
    let q = op_msg(80, 0, 0, &find("items"), &[]);
    let r = op_msg(900, 80, 0, &big, &[]);
    let q2 = op_msg(81, 0, 0, &find("other"), &[]);
    let r2 = op_msg(901, 81, 0, &cursor_reply("firstBatch", 1), &[]);
    let mut p = parser();
    let mut out = Vec::new();
    let ts = Timestamp::from_secs_nanos(1, 0);
    p.on_data(C, &q, ts, &mut out);
    p.on_data(S, &r[..100], ts, &mut out);
    p.on_gap(S, 200);
    p.on_data(S, &r[300..], ts, &mut out);
    p.on_data(C, &q2, ts, &mut out);
    p.on_data(S, &r2, ts, &mut out);
    assert_eq!(out.len(), 2);
    assert!(out[0].completeness.has(Completeness::GAP));
    assert_eq!(attr(&out[0], "podtap.mongodb.unread"), Some(&AttrValue::Bool(true)));
    assert_eq!(int(&out[1], "db.response.returned_rows"), 1);
}

#[test]
fn deep_and_odd_documents_never_panic() {
    // Nesting far beyond anything the walker follows, every BSON type, random damage.
    let mut d = doc(&[("x", V::I32(1))]);
    for _ in 0..200 {
        d = doc(&[("d", V::Doc(d))]);
    }
    let body = doc(&[
        ("find", V::Str("items")),
        ("deep", V::Doc(d)),
        ("n", V::Null),
        ("t", V::Bool(false)),
        ("l", V::I64(-1)),
        ("r", V::Regex("a.*b", "")),
        ("$db", V::Str("shop")),
    ]);
    let q = op_msg(90, 0, 0, &body, &[]);
    let txs = check_all(parser, &[(C, &q)]);
    assert_eq!(s(&txs[0], "db.namespace"), "shop");
    let mut rng = crate::proto::testkit::Rng(0x5eed);
    let reply = op_msg(91, 90, 0, &cursor_reply("firstBatch", 20), &[]);
    for round in 0..4000 {
        let mut m = if round % 2 == 0 { q.clone() } else { reply.clone() };
        for _ in 0..1 + rng.below(4) {
            let i = rng.below(m.len());
            m[i] = rng.next() as u8;
        }
        let cut = rng.below(m.len());
        let mut p = parser();
        let mut out = Vec::new();
        let ts = Timestamp::from_secs_nanos(1, 0);
        p.on_data(C, &m[..cut], ts, &mut out);
        p.on_data(C, &m[cut..], ts, &mut out);
        p.on_data(S, &m, ts, &mut out);
        p.on_close(ts, false, &mut out);
    }
}

#[test]
fn framer_reads_long_strings_cut() {
    let long = "c".repeat(1000);
    let q = op_msg(91, 0, 0, &doc(&[("find", V::Str(&long)), ("$db", V::Str("shop"))]), &[]);
    let mut f = Framer::new(parser::Limits {
        max_message: 1 << 20,
        max_decompressed: 1 << 20,
    });
    let mut got = Vec::new();
    f.feed(&q, &mut |ev| {
        if let parser::Ev::Msg(_, facts) = ev {
            got.push((facts.collection.as_str().len(), facts.collection.cut, facts.db.as_str().to_string()));
        }
    });
    assert_eq!(got, [(256, true, "shop".to_string())]);
}

#[test]
fn probe_recognises_headers() {
    let q = op_msg(1, 0, 0, &find("items"), &[]);
    let r = op_msg(2, 1, 0, &ok(), &[]);
    let max = MongoConfig::default().max_message_bytes;
    assert_eq!(probe(&q, C, false, max), Confidence::Likely);
    assert_eq!(probe(&r, S, false, max), Confidence::Likely);
    assert_eq!(probe(&q[..10], C, false, max), Confidence::NeedMore);
    assert_eq!(probe(&r, C, false, max), Confidence::No, "a reply from the client");
    assert_eq!(probe(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", C, true, max), Confidence::No);
    let legacy = op_query(1, "admin.$cmd", &doc(&[("isMaster", V::I32(1))]));
    assert_eq!(probe(&legacy, C, false, max), Confidence::Likely);
    let z = compress(&q, 1);
    assert_eq!(probe(&z, C, false, max), Confidence::Likely);
    let reply = op_reply(60, 1, 8, &[ok()]);
    assert_eq!(probe(&reply, S, false, max), Confidence::Likely);
}

#[test]
fn config_section_parses_and_validates() {
    let cfg: MongoConfig = toml::from_str("max_pending = 3").unwrap();
    assert_eq!(cfg.max_pending, 3);
    assert!(MongoParser::validate(&MongoConfig {
        max_decompressed_bytes: 0,
        ..MongoConfig::default()
    })
    .is_err());
    assert!(toml::from_str::<MongoConfig>("bogus = 1").is_err());
}

#[test]
fn long_message_of_an_unknown_opcode_loses_the_framing() {
    // Bytes that are no header but read as one with a plausible length are not skipped
    // blindly: the direction resynchronises on the next real header.
    let junk = message(50, 0, 4242, &vec![0u8; 20_000]);
    let q = op_msg(51, 0, 0, &find("items"), &[]);
    let mut p = parser();
    let txs = feed_whole(&mut p, &[(C, &junk), (C, &q)]);
    assert_eq!(txs.len(), 1);
    assert_eq!(txs[0].operation, "find");
    let st = p.take_stats();
    assert_eq!((st.malformed, st.unknown_opcode), (1, 0));
}

#[test]
fn large_compressed_messages_do_not_keep_their_buffers() {
    let big = cursor_reply("firstBatch", 2000);
    let q = op_msg(52, 0, 0, &find("items"), &[]);
    let r = compress(&op_msg(53, 52, 0, &big, &[]), 2);
    let mut p = parser();
    let mut out = Vec::new();
    let ts = Timestamp::from_secs_nanos(1, 0);
    p.on_data(C, &q, ts, &mut out);
    // Split: the compressed bytes are gathered, then freed.
    p.on_data(S, &r[..r.len() / 2], ts, &mut out);
    p.on_data(S, &r[r.len() / 2..], ts, &mut out);
    assert_eq!(int(&out[0], "db.response.returned_rows"), 2000);
    assert!(p.framers[1].buffered() <= 64 << 10);
}

#[test]
fn a_request_split_over_chunks_starts_at_its_first_byte() {
    let q = op_msg(95, 0, 0, &find("items"), &[]);
    let r = op_msg(96, 95, 0, &ok(), &[]);
    let mut p = parser();
    let mut out = Vec::new();
    let t0 = Timestamp::from_secs_nanos(10, 0);
    p.on_data(C, &q[..20], t0, &mut out);
    p.on_data(C, &q[20..], t0.add_nanos(5_000), &mut out);
    p.on_data(S, &r, t0.add_nanos(9_000), &mut out);
    assert_eq!(out[0].start, t0);
    assert_eq!(out[0].duration_ns(), 9_000);
}

#[test]
fn whole_body_walk_says_what_the_state_machine_says() {
    // `Walker::whole_msg` reads a body whole in one chunk; where it accepts one, its
    // facts must be the state machine's, on good bodies and on damaged ones alike (where
    // it refuses, the state machine reads the body: nothing to compare).
    let docs: Vec<Vec<u8>> = (0..3).map(|i| doc(&[("_id", V::I32(i)), ("pw", V::Str("x"))])).collect();
    let werr = doc(&[("index", V::I32(0)), ("code", V::I32(11000))]);
    let bodies: Vec<Vec<u8>> = vec![
        op_msg(1, 0, 0, &find("items"), &[]),
        op_msg(2, 1, 0, &cursor_reply("firstBatch", 4), &[]),
        op_msg(3, 1, 0, &cursor_reply("nextBatch", 0), &[]),
        op_msg(4, 0, 0, &doc(&[("insert", V::Str("u")), ("$db", V::Str("app"))]), &[("documents", &docs)]),
        op_msg(
            5,
            4,
            0,
            &doc(&[
                ("n", V::I32(0)),
                ("writeErrors", V::Arr(vec![werr.clone(), werr])),
                ("ok", V::F64(1.0)),
            ]),
            &[],
        ),
        op_msg(
            6,
            0,
            0,
            &doc(&[("ok", V::F64(0.0)), ("code", V::I64(13)), ("codeName", V::Str("Unauthorized"))]),
            &[],
        ),
        op_msg(7, 0, CHECKSUM_PRESENT, &find("c"), &[]),
    ]
    .into_iter()
    .map(|m| m[16..].to_vec())
    .collect();
    let facts = |w: &parser::Walker| format!("{:?}", w.facts);
    let mut rng = crate::proto::testkit::Rng(0xb0d1);
    let (mut accepted, mut refused) = (0, 0);
    for round in 0..20_000 {
        let mut b = bodies[round % bodies.len()].clone();
        // A fifth of the rounds read the body as built; the rest damage a few bytes.
        if round % 5 != 0 {
            for _ in 0..1 + rng.below(3) {
                let i = rng.below(b.len());
                b[i] = match rng.below(3) {
                    0 => 0,
                    1 => b[i].wrapping_add(1),
                    _ => rng.next() as u8,
                };
            }
        }
        let mut stream = parser::Walker::default();
        stream.start(parser::OP_MSG, b.len() as u32);
        stream.feed(&b);
        let mut whole = parser::Walker::default();
        if whole.whole_msg(&b) {
            accepted += 1;
            assert_eq!(facts(&whole), facts(&stream), "round {round}: {b:?}");
        } else {
            refused += 1;
            if round % 5 == 0 {
                panic!("a good body was refused: {b:?}");
            }
        }
    }
    // Both paths were exercised: damage that leaves a body well formed (a changed value),
    // and damage that does not.
    assert!(accepted > 8_000 && refused > 2_000, "{accepted} accepted, {refused} refused");
}

#[test]
fn name_end_finds_the_first_nul() {
    // Every length up to past the word-at-a-time part, a NUL anywhere or nowhere, and
    // bytes that fool a careless zero-byte test (0x80, 0x01 after a zero, 0xff).
    let mut rng = crate::proto::testkit::Rng(0x2e40);
    for round in 0..20_000 {
        let len = rng.below(40);
        let b: Vec<u8> = (0..len)
            .map(|_| match rng.below(6) {
                0 => 0,
                1 => 0x80,
                2 => 0x01,
                3 => 0xff,
                _ => b'a' + rng.below(26) as u8,
            })
            .collect();
        let want = b.iter().position(|&c| c == 0);
        assert_eq!(parser::name_end(&b), want, "round {round}: {b:?}");
    }
}

#[test]
fn short_copies_agree_with_copy_from_slice() {
    // Every length through the word-at-a-time cases and past them, into a buffer whose
    // old bytes must all be overwritten.
    let mut rng = crate::proto::testkit::Rng(0x5a3e);
    for round in 0..20_000 {
        let len = rng.below(40);
        let a: Vec<u8> = (0..len).map(|_| rng.below(256) as u8).collect();
        let mut dst = vec![0xAAu8; len];
        parser::copy_short(&mut dst, &a);
        assert_eq!(dst, a, "round {round}: copy of {a:?}");
    }
}

#[test]
fn repeated_commands_keep_their_own_names() {
    // A connection's last two commands lend their strings to a like one: a command that
    // differs in its name, collection or database alone must not take them.
    let cmd = |name: &str, coll: &str, db: &str| doc(&[(name, V::Str(coll)), ("$db", V::Str(db))]);
    let reqs = [
        cmd("find", "a", "shop"),
        cmd("find", "b", "shop"),
        cmd("find", "a", "shop"),
        cmd("insert", "a", "shop"),
        cmd("find", "a", "other"),
        cmd("ping", "a", "shop"),
        cmd("find", "a", "shop"),
        cmd("ping", "b", "shop"),
    ];
    let mut conv = Vec::new();
    for (i, q) in reqs.iter().enumerate() {
        let id = 10 + i as u32;
        conv.push((C, op_msg(id, 0, 0, q, &[])));
        conv.push((S, op_msg(500 + id, id, 0, &ok(), &[])));
    }
    let chunks: Vec<Chunk> = conv.iter().map(|(d, b)| (*d, b.as_slice())).collect();
    let txs = check_all(parser, &chunks);
    let got: Vec<(String, String, String)> = txs
        .iter()
        .map(|t| {
            let coll = match t.attr("db.collection.name") {
                Some(AttrValue::Str(c)) => c.to_string(),
                _ => "-".into(),
            };
            (s(t, "db.query.summary"), coll, s(t, "db.namespace"))
        })
        .collect();
    let want = [
        ("find a", "a", "shop"),
        ("find b", "b", "shop"),
        ("find a", "a", "shop"),
        ("insert a", "a", "shop"),
        ("find a", "a", "other"),
        // ping names no collection: its string value is not exported.
        ("ping", "-", "shop"),
        ("find a", "a", "shop"),
        ("ping", "-", "shop"),
    ];
    let want: Vec<(String, String, String)> =
        want.iter().map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())).collect();
    assert_eq!(got, want);
}
