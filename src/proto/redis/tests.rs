use super::parser::{Kind, Limits, Out, ParseError, ReplyParser, RequestParser};
use super::*;
use crate::events::Counters;
use crate::proto::{AttrValue, Decoder, test_rng};
use Direction::{ToClient as S, ToServer as C};

/// Feeding a decoder a conversation in every way a capture can deliver it. Written for
/// Redis, kept free of it: it moves to `proto/testkit.rs` when the shared kit lands.
pub(crate) mod kit {
    use crate::proto::{Direction, L7Parser, Tally, Transaction};
    use crate::time::Timestamp;
    use std::ops::Range;

    /// What the sender of one message put on the wire, in order.
    pub type Conv = [(Direction, Vec<u8>)];

    /// How one message reaches the decoder.
    #[derive(Clone, Debug)]
    pub enum Piece {
        Data(Range<usize>),
        /// These bytes of the message are lost: `on_gap`.
        Gap(Range<usize>),
    }

    /// When message `i` is fed (messages are 1 µs apart).
    pub fn ts(i: usize) -> Timestamp {
        Timestamp(1_000 * (i as u64 + 1))
    }

    /// Feed message `i` as `pieces(i, bytes)` says, starting at message `from`, then close
    /// the connection.
    pub fn run<P: L7Parser>(
        p: &mut P,
        conv: &Conv,
        from: usize,
        pieces: impl FnMut(usize, &[u8]) -> Vec<Piece>,
    ) -> Vec<Transaction> {
        run_tallied(p, conv, from, pieces, None)
    }

    /// [`run`], with plain requests counted into `tally` when there is one.
    pub fn run_tallied<P: L7Parser>(
        p: &mut P,
        conv: &Conv,
        from: usize,
        mut pieces: impl FnMut(usize, &[u8]) -> Vec<Piece>,
        mut tally: Option<&mut Tally>,
    ) -> Vec<Transaction> {
        let mut out = Vec::new();
        for (i, (dir, bytes)) in conv.iter().enumerate().skip(from) {
            for piece in pieces(i, bytes) {
                match piece {
                    Piece::Data(r) => {
                        let b = &bytes[r];
                        match tally.as_deref_mut() {
                            Some(t) => p.on_data_tallied(*dir, b, ts(i), &mut out, t),
                            None => p.on_data(*dir, b, ts(i), &mut out),
                        };
                    }
                    Piece::Gap(r) => p.on_gap(*dir, r.len() as u32),
                }
            }
        }
        p.on_close(ts(conv.len() + 1), false, &mut out);
        out
    }

    pub fn whole(_: usize, b: &[u8]) -> Vec<Piece> {
        vec![Piece::Data(0..b.len())]
    }

    pub fn bytewise(_: usize, b: &[u8]) -> Vec<Piece> {
        (0..b.len()).map(|i| Piece::Data(i..i + 1)).collect()
    }

    /// Message `at` split at byte `k`, the others whole.
    pub fn split(at: usize, k: usize) -> impl FnMut(usize, &[u8]) -> Vec<Piece> {
        move |i, b| {
            if i == at {
                vec![Piece::Data(0..k), Piece::Data(k..b.len())]
            } else {
                whole(i, b)
            }
        }
    }

    /// The bytes `lost` of message `at` lost in a gap, the others whole.
    pub fn gap(at: usize, lost: Range<usize>) -> impl FnMut(usize, &[u8]) -> Vec<Piece> {
        move |i, b| {
            if i != at {
                return whole(i, b);
            }
            let mut v = Vec::new();
            if lost.start > 0 {
                v.push(Piece::Data(0..lost.start));
            }
            v.push(Piece::Gap(lost.clone()));
            if lost.end < b.len() {
                v.push(Piece::Data(lost.end..b.len()));
            }
            v
        }
    }

    /// Starting mid-stream: message `at` from byte `k` on (the messages before it unseen).
    pub fn from_byte(at: usize, k: usize) -> impl FnMut(usize, &[u8]) -> Vec<Piece> {
        move |i, b| {
            if i == at {
                vec![Piece::Data(k.min(b.len())..b.len())]
            } else {
                whole(i, b)
            }
        }
    }

    /// Every way of feeding `conv` that loses nothing must give what feeding it whole
    /// gives: `describe` of each transaction, in order.
    pub fn check_splits<P: L7Parser>(
        make: impl Fn() -> P,
        conv: &Conv,
        describe: impl Fn(&Transaction) -> String,
    ) -> Vec<String> {
        let list = |v: Vec<Transaction>| v.iter().map(&describe).collect::<Vec<_>>();
        let want = list(run(&mut make(), conv, 0, whole));
        assert_eq!(
            list(run(&mut make(), conv, 0, bytewise)),
            want,
            "fed one byte at a time"
        );
        for (at, (_, b)) in conv.iter().enumerate() {
            for k in 1..b.len() {
                assert_eq!(
                    list(run(&mut make(), conv, 0, split(at, k))),
                    want,
                    "message {at} split at byte {k}"
                );
            }
        }
        want
    }
}

use kit::Piece;

fn cmd(args: &[&[u8]]) -> Vec<u8> {
    let mut v = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        v.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        v.extend_from_slice(a);
        v.extend_from_slice(b"\r\n");
    }
    v
}

fn c(args: &[&str]) -> (Direction, Vec<u8>) {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    (C, cmd(&args))
}

fn s(raw: &str) -> (Direction, Vec<u8>) {
    (S, raw.as_bytes().to_vec())
}

fn attr_text(t: &Transaction, key: &str) -> String {
    match t.attr(key) {
        Some(AttrValue::Str(s)) => s.to_string(),
        Some(AttrValue::Int(i)) => i.to_string(),
        Some(AttrValue::Bool(b)) => b.to_string(),
        None => "-".into(),
    }
}

/// One line per transaction: what the tests compare.
fn describe(t: &Transaction) -> String {
    let reasons: Vec<_> = t.completeness.reasons().collect();
    let mut flags = String::new();
    for (key, name) in [
        ("podtap.redis.queued", " queued"),
        ("podtap.redis.no_reply", " no_reply"),
    ] {
        if t.attr(key).is_some() {
            flags.push_str(name);
        }
    }
    format!(
        "{} [{}] ns={} sum={} err={} code={} rows={}{}{}",
        t.operation,
        t.resource,
        attr_text(t, "db.namespace"),
        attr_text(t, "db.query.summary"),
        t.error.as_deref().unwrap_or("-"),
        attr_text(t, "db.response.status_code"),
        attr_text(t, "db.response.returned_rows"),
        flags,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(","))
        }
    )
}

fn feed(p: &mut RedisParser, conv: &kit::Conv) -> Vec<String> {
    kit::run(p, conv, 0, kit::whole)
        .iter()
        .map(describe)
        .collect()
}

fn lines(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// A little of everything a RESP2 client does.
fn basic() -> Vec<(Direction, Vec<u8>)> {
    vec![
        c(&["SET", "user:1234", "hello"]),
        s("+OK\r\n"),
        c(&["GET", "user:1234"]),
        s("$5\r\nhello\r\n"),
        c(&["GET", "nokey"]),
        s("$-1\r\n"),
        c(&["INCR", "user:1234"]),
        s("-ERR value is not an integer or out of range\r\n"),
        c(&["LPUSH", "user:1234", "x"]),
        s("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n"),
        c(&["MGET", "a:1", "b:2", "c"]),
        s("*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n3\r\n"),
        c(&["client", "setname", "app"]),
        s("+OK\r\n"),
        c(&["CONFIG", "GET", "maxmemory"]),
        s("*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n"),
        c(&["OBJECT", "ENCODING", "session:9"]),
        s("$6\r\nembstr\r\n"),
        c(&["NOSUCH", "x:1"]),
        s("-ERR unknown command 'NOSUCH', with args beginning with: 'x:1' \r\n"),
        c(&["SCAN", "0", "MATCH", "k:*"]),
        s("*2\r\n$1\r\n0\r\n*3\r\n$3\r\nk:1\r\n$3\r\nk:2\r\n$3\r\nk:3\r\n"),
        c(&[
            "GET",
            "a-very-long-key-without-any-delimiter-in-its-first-bytes:1",
        ]),
        s("$-1\r\n"),
        c(&["HSET", "h:1", "f", "v"]),
        s(":1\r\n"),
        c(&["GET", "moved:1"]),
        s("-MOVED 3999 127.0.0.1:6381\r\n"),
        c(&["GET", "ask:1"]),
        s("-ASK 3999 127.0.0.1:6381\r\n"),
    ]
}

fn basic_want() -> Vec<String> {
    lines(&[
        "SET [user] ns=0 sum=SET user err=- code=- rows=-",
        "GET [user] ns=0 sum=GET user err=- code=- rows=-",
        "GET [] ns=0 sum=GET err=- code=- rows=-",
        "INCR [user] ns=0 sum=INCR user err=ERR code=ERR rows=-",
        "LPUSH [user] ns=0 sum=LPUSH user err=WRONGTYPE code=WRONGTYPE rows=-",
        "MGET [a] ns=0 sum=MGET a err=- code=- rows=3",
        "CLIENT SETNAME [] ns=0 sum=CLIENT SETNAME err=- code=- rows=-",
        "CONFIG GET [] ns=0 sum=CONFIG GET err=- code=- rows=2",
        "OBJECT ENCODING [session] ns=0 sum=OBJECT ENCODING session err=- code=- rows=-",
        "_OTHER [] ns=0 sum=_OTHER err=ERR code=ERR rows=-",
        "SCAN [] ns=0 sum=SCAN err=- code=- rows=3",
        "GET [] ns=0 sum=GET err=- code=- rows=-",
        "HSET [h] ns=0 sum=HSET h err=- code=- rows=-",
        "GET [moved] ns=0 sum=GET moved err=MOVED code=MOVED rows=-",
        "GET [ask] ns=0 sum=GET ask err=ASK code=ASK rows=-",
    ])
}

#[test]
fn commands_pair_with_replies_in_every_split() {
    let got = kit::check_splits(RedisParser::default, &basic(), describe);
    assert_eq!(got, basic_want());
}

#[test]
fn transactions_carry_the_semantic_convention_attributes() {
    let mut p = RedisParser::default();
    let out = kit::run(&mut p, &basic()[..4], 0, kit::whole);
    let t = &out[1];
    assert_eq!(t.protocol, Protocol::Redis);
    assert_eq!(attr_text(t, "db.system.name"), "redis");
    assert_eq!(attr_text(t, "db.operation.name"), "GET");
    assert_eq!(attr_text(t, "db.query.summary"), "GET user");
    assert!(t.attr("db.query.text").is_none(), "redacted by default");
    assert_eq!((t.start, t.end), (kit::ts(2), kit::ts(3)));
    assert_eq!(t.req_bytes, basic()[2].1.len() as u64);
    assert_eq!(t.resp_bytes, 11);
    assert!(t.completeness.is_complete());
    assert_eq!(t.status, None);
    // No byte of a key or value anywhere.
    for t in &out {
        for (_, v) in &t.attrs {
            if let AttrValue::Str(s) = v {
                assert!(!s.contains("1234") && !s.contains("hello"), "{s}");
            }
        }
    }
    assert_eq!(p.take_stats(), RedisStats::default());
}

#[test]
fn pipelined_commands_pair_in_order_however_the_bytes_are_cut() {
    // The client sends all commands before any reply (one chunk each way), the way
    // redis-benchmark -P does.
    let conv = basic();
    let reqs: Vec<u8> = conv
        .iter()
        .filter(|m| m.0 == C)
        .flat_map(|m| m.1.clone())
        .collect();
    let reps: Vec<u8> = conv
        .iter()
        .filter(|m| m.0 == S)
        .flat_map(|m| m.1.clone())
        .collect();
    let piped = vec![(C, reqs), (S, reps)];
    let want: Vec<String> = basic_want()
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>();
    // Pipelined, every command starts (and ends) with the first chunk: only the
    // timestamps differ, which `describe` leaves out.
    let got = kit::check_splits(RedisParser::default, &piped, describe);
    assert_eq!(got, want);
    // Random cuts of both streams.
    let mut rng = test_rng(7);
    for _ in 0..200 {
        let got: Vec<String> = kit::run(&mut RedisParser::default(), &piped, 0, |_, b| {
            random_pieces(&mut rng, b.len())
        })
        .iter()
        .map(describe)
        .collect();
        assert_eq!(got, want);
    }
}

fn random_pieces(rng: &mut impl FnMut() -> u64, len: usize) -> Vec<Piece> {
    let mut v = Vec::new();
    let mut at = 0;
    while at < len {
        let n = 1 + (rng() % 40) as usize;
        let end = (at + n).min(len);
        v.push(Piece::Data(at..end));
        at = end;
    }
    v
}

#[test]
fn select_changes_the_namespace_once_answered_ok() {
    let conv = vec![
        c(&["SELECT", "3"]),
        s("+OK\r\n"),
        c(&["GET", "k:1"]),
        s("$-1\r\n"),
        c(&["SELECT", "99"]),
        s("-ERR DB index is out of range\r\n"),
        c(&["GET", "k:1"]),
        s("$-1\r\n"),
        // SELECT inside MULTI takes effect at EXEC.
        c(&["MULTI"]),
        s("+OK\r\n"),
        c(&["SELECT", "5"]),
        s("+QUEUED\r\n"),
        c(&["GET", "k:2"]),
        s("+QUEUED\r\n"),
        c(&["EXEC"]),
        s("*2\r\n+OK\r\n$-1\r\n"),
        c(&["GET", "k:3"]),
        s("$-1\r\n"),
        c(&["RESET"]),
        s("+RESET\r\n"),
        c(&["PING"]),
        s("+PONG\r\n"),
    ];
    let got = kit::check_splits(RedisParser::default, &conv, describe);
    assert_eq!(
        got,
        lines(&[
            "SELECT [] ns=0 sum=SELECT err=- code=- rows=-",
            "GET [k] ns=3 sum=GET k err=- code=- rows=-",
            "SELECT [] ns=3 sum=SELECT err=ERR code=ERR rows=-",
            "GET [k] ns=3 sum=GET k err=- code=- rows=-",
            "MULTI [] ns=3 sum=MULTI err=- code=- rows=-",
            "SELECT [] ns=3 sum=SELECT err=- code=- rows=- queued",
            "GET [k] ns=3 sum=GET k err=- code=- rows=- queued",
            "EXEC [] ns=3 sum=EXEC err=- code=- rows=-",
            "GET [k] ns=5 sum=GET k err=- code=- rows=-",
            "RESET [] ns=5 sum=RESET err=- code=- rows=-",
            "PING [] ns=0 sum=PING err=- code=- rows=-",
        ])
    );
}

#[test]
fn multi_exec_is_one_transaction_per_command_and_one_for_exec() {
    let conv = vec![
        c(&["MULTI"]),
        s("+OK\r\n"),
        c(&["SET", "a:1", "1"]),
        s("+QUEUED\r\n"),
        c(&["INCR", "a:1"]),
        s("+QUEUED\r\n"),
        c(&["LPUSH", "a:1", "x"]),
        s("+QUEUED\r\n"),
        c(&["EXEC"]),
        s(
            "*3\r\n+OK\r\n:2\r\n-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        ),
        // A syntax error while queueing aborts the EXEC.
        c(&["MULTI"]),
        s("+OK\r\n"),
        c(&["SET", "a:1"]),
        s("-ERR wrong number of arguments for 'set' command\r\n"),
        c(&["EXEC"]),
        s("-EXECABORT Transaction discarded because of previous errors.\r\n"),
        c(&["MULTI"]),
        s("+OK\r\n"),
        c(&["DISCARD"]),
        s("+OK\r\n"),
    ];
    let got = kit::check_splits(RedisParser::default, &conv, describe);
    assert_eq!(
        got,
        lines(&[
            "MULTI [] ns=0 sum=MULTI err=- code=- rows=-",
            "SET [a] ns=0 sum=SET a err=- code=- rows=- queued",
            "INCR [a] ns=0 sum=INCR a err=- code=- rows=- queued",
            "LPUSH [a] ns=0 sum=LPUSH a err=- code=- rows=- queued",
            "EXEC [] ns=0 sum=EXEC err=- code=- rows=-",
            "MULTI [] ns=0 sum=MULTI err=- code=- rows=-",
            "SET [a] ns=0 sum=SET a err=ERR code=ERR rows=-",
            "EXEC [] ns=0 sum=EXEC err=EXECABORT code=EXECABORT rows=-",
            "MULTI [] ns=0 sum=MULTI err=- code=- rows=-",
            "DISCARD [] ns=0 sum=DISCARD err=- code=- rows=-",
        ])
    );
}

/// RESP2 pub/sub: SUBSCRIBE of three channels, messages, PING in subscribed mode, an
/// unsubscribe from everything.
fn pubsub_resp2() -> Vec<(Direction, Vec<u8>)> {
    vec![
        c(&["SUBSCRIBE", "news:eu", "news:us", "sport"]),
        s("*3\r\n$9\r\nsubscribe\r\n$7\r\nnews:eu\r\n:1\r\n"),
        s(
            "*3\r\n$9\r\nsubscribe\r\n$7\r\nnews:us\r\n:2\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:3\r\n",
        ),
        s("*3\r\n$7\r\nmessage\r\n$7\r\nnews:eu\r\n$5\r\nhello\r\n"),
        c(&["PSUBSCRIBE", "a.*"]),
        s("*3\r\n$10\r\npsubscribe\r\n$3\r\na.*\r\n:4\r\n"),
        s("*4\r\n$8\r\npmessage\r\n$3\r\na.*\r\n$3\r\na.b\r\n$2\r\nhi\r\n"),
        c(&["PING"]),
        s("*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
        s("*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$1\r\n1\r\n"),
        c(&["UNSUBSCRIBE"]),
        s("*3\r\n$11\r\nunsubscribe\r\n$7\r\nnews:eu\r\n:3\r\n"),
        s("*3\r\n$11\r\nunsubscribe\r\n$7\r\nnews:us\r\n:2\r\n"),
        s("*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:1\r\n"),
        c(&["PUNSUBSCRIBE", "a.*"]),
        s("*3\r\n$12\r\npunsubscribe\r\n$3\r\na.*\r\n:0\r\n"),
        // Out of subscribed mode, an array that looks like a message is a reply.
        c(&["LRANGE", "l:1", "0", "-1"]),
        s("*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"),
    ]
}

#[test]
fn pubsub_messages_are_counted_not_paired() {
    let got = kit::check_splits(RedisParser::default, &pubsub_resp2(), describe);
    assert_eq!(
        got,
        lines(&[
            "SUBSCRIBE [news] ns=0 sum=SUBSCRIBE news err=- code=- rows=-",
            "PSUBSCRIBE [] ns=0 sum=PSUBSCRIBE err=- code=- rows=-",
            "PING [] ns=0 sum=PING err=- code=- rows=2",
            "UNSUBSCRIBE [] ns=0 sum=UNSUBSCRIBE err=- code=- rows=-",
            "PUNSUBSCRIBE [] ns=0 sum=PUNSUBSCRIBE err=- code=- rows=-",
            "LRANGE [l] ns=0 sum=LRANGE l err=- code=- rows=3",
        ])
    );
    let mut p = RedisParser::default();
    feed(&mut p, &pubsub_resp2());
    assert_eq!(p.take_stats().push_messages, 3);
}

#[test]
fn resp3_pushes_and_every_type_pair_as_replies() {
    let conv = vec![
        c(&["HELLO", "3"]),
        s("%2\r\n+server\r\n+redis\r\n+proto\r\n:3\r\n"),
        c(&["SUBSCRIBE", "ch"]),
        s(">3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"),
        // A push between a command and its reply.
        c(&["GET", "k:1"]),
        s(">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n$1\r\nv\r\n"),
        c(&["UNSUBSCRIBE", "ch"]),
        s(">3\r\n$11\r\nunsubscribe\r\n$2\r\nch\r\n:0\r\n"),
        c(&["CLIENT", "TRACKING", "on"]),
        s("+OK\r\n"),
        c(&["GET", "k:2"]),
        s(">2\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nk:2\r\n_\r\n"),
        c(&["SISMEMBER", "s:1", "a"]),
        s("#t\r\n"),
        c(&["ZSCORE", "z:1", "a"]),
        s(",3.14\r\n"),
        c(&["SMEMBERS", "s:1"]),
        s("~2\r\n$1\r\na\r\n$1\r\nb\r\n"),
        c(&["HGETALL", "h:1"]),
        s("%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n"),
        c(&["DEBUG", "PROTOCOL", "bignum"]),
        s("(3492890328409238509324850943850943825024385\r\n"),
        c(&["DEBUG", "PROTOCOL", "verbatim"]),
        s("=15\r\ntxt:Some string\r\n"),
        c(&["FCALL", "f", "0"]),
        s("!21\r\nSYNTAX invalid syntax\r\n"),
        // An attribute before the reply, and one inside it.
        c(&["GET", "k:3"]),
        s("|1\r\n+key-popularity\r\n%1\r\n$3\r\nk:3\r\n,0.19\r\n$1\r\nv\r\n"),
        c(&["LRANGE", "l:1", "0", "-1"]),
        s("*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\na\r\n$1\r\nb\r\n"),
        // Streamed string and streamed aggregates.
        c(&["GET", "k:4"]),
        s("$?\r\n;4\r\nHell\r\n;5\r\no wor\r\n;1\r\nd\r\n;0\r\n"),
        c(&["LRANGE", "l:2", "0", "-1"]),
        s("*?\r\n:1\r\n*?\r\n:2\r\n.\r\n$1\r\nx\r\n.\r\n"),
        c(&["HGETALL", "h:2"]),
        s("%?\r\n+a\r\n:1\r\n+b\r\n:2\r\n.\r\n"),
        c(&["SMEMBERS", "s:2"]),
        s("~?\r\n.\r\n"),
    ];
    let got = kit::check_splits(RedisParser::default, &conv, describe);
    assert_eq!(
        got,
        lines(&[
            "HELLO [] ns=0 sum=HELLO err=- code=- rows=2",
            "SUBSCRIBE [] ns=0 sum=SUBSCRIBE err=- code=- rows=-",
            "GET [k] ns=0 sum=GET k err=- code=- rows=-",
            "UNSUBSCRIBE [] ns=0 sum=UNSUBSCRIBE err=- code=- rows=-",
            "CLIENT TRACKING [] ns=0 sum=CLIENT TRACKING err=- code=- rows=-",
            "GET [k] ns=0 sum=GET k err=- code=- rows=-",
            "SISMEMBER [s] ns=0 sum=SISMEMBER s err=- code=- rows=-",
            "ZSCORE [z] ns=0 sum=ZSCORE z err=- code=- rows=-",
            "SMEMBERS [s] ns=0 sum=SMEMBERS s err=- code=- rows=2",
            "HGETALL [h] ns=0 sum=HGETALL h err=- code=- rows=2",
            "DEBUG [] ns=0 sum=DEBUG err=- code=- rows=-",
            "DEBUG [] ns=0 sum=DEBUG err=- code=- rows=-",
            "FCALL [] ns=0 sum=FCALL err=SYNTAX code=SYNTAX rows=-",
            "GET [k] ns=0 sum=GET k err=- code=- rows=-",
            "LRANGE [l] ns=0 sum=LRANGE l err=- code=- rows=2",
            "GET [k] ns=0 sum=GET k err=- code=- rows=-",
            "LRANGE [l] ns=0 sum=LRANGE l err=- code=- rows=3",
            "HGETALL [h] ns=0 sum=HGETALL h err=- code=- rows=2",
            "SMEMBERS [s] ns=0 sum=SMEMBERS s err=- code=- rows=0",
        ])
    );
    let mut p = RedisParser::default();
    feed(&mut p, &conv);
    let st = p.take_stats();
    assert_eq!(st.push_messages, 2, "the message and the invalidation");
    assert_eq!(st.malformed + st.too_deep + st.bulk_too_large, 0);
}

#[test]
fn client_reply_off_and_skip_silence_replies() {
    let conv = vec![
        c(&["SET", "a:1", "1"]),
        s("+OK\r\n"),
        c(&["CLIENT", "REPLY", "OFF"]),
        c(&["SET", "a:2", "2"]),
        c(&["INCR", "a:3"]),
        c(&["CLIENT", "REPLY", "ON"]),
        s("+OK\r\n"),
        c(&["CLIENT", "REPLY", "SKIP"]),
        c(&["SET", "a:4", "4"]),
        c(&["GET", "a:4"]),
        s("$1\r\n4\r\n"),
    ];
    let got = kit::check_splits(RedisParser::default, &conv, describe);
    assert_eq!(
        got,
        lines(&[
            "SET [a] ns=0 sum=SET a err=- code=- rows=-",
            "CLIENT REPLY [] ns=0 sum=CLIENT REPLY err=- code=- rows=- no_reply",
            "SET [a] ns=0 sum=SET a err=- code=- rows=- no_reply",
            "INCR [a] ns=0 sum=INCR a err=- code=- rows=- no_reply",
            "CLIENT REPLY [] ns=0 sum=CLIENT REPLY err=- code=- rows=-",
            "CLIENT REPLY [] ns=0 sum=CLIENT REPLY err=- code=- rows=- no_reply",
            "SET [a] ns=0 sum=SET a err=- code=- rows=- no_reply",
            "GET [a] ns=0 sum=GET a err=- code=- rows=-",
        ])
    );
}

#[test]
fn inline_commands_are_commands() {
    // As telnet and `tcpdump/resp_2_inline.pcap` send them: bare LF too, blank lines.
    let conv = vec![
        (C, b"set test 1\r\n".to_vec()),
        s("+OK\r\n"),
        (C, b"incr test\r\nget test\nPING\r\n\r\n\n".to_vec()),
        s(":2\r\n$1\r\n2\r\n+PONG\r\n"),
        (C, b"  client   setname  x\r\n".to_vec()),
        s("+OK\r\n"),
    ];
    let got = kit::check_splits(RedisParser::default, &conv, describe);
    assert_eq!(
        got,
        lines(&[
            "SET [] ns=0 sum=SET err=- code=- rows=-",
            "INCR [] ns=0 sum=INCR err=- code=- rows=-",
            "GET [] ns=0 sum=GET err=- code=- rows=-",
            "PING [] ns=0 sum=PING err=- code=- rows=-",
            "CLIENT SETNAME [] ns=0 sum=CLIENT SETNAME err=- code=- rows=-",
        ])
    );
}

#[test]
fn key_prefix_delimiter_and_length_are_configurable() {
    let cfg = |delim: &str, max: usize| {
        Arc::new(RedisConfig {
            key_prefix_delimiter: delim.into(),
            max_key_prefix: max,
            ..RedisConfig::default()
        })
    };
    let conv = vec![
        c(&["GET", "tenant/42/user:7"]),
        s("$-1\r\n"),
        c(&["GET", "abcdefgh:1"]),
        s("$-1\r\n"),
    ];
    let run = |cfg| feed(&mut RedisParser::new(cfg), &conv);
    assert_eq!(
        run(cfg("/", 32))[0],
        "GET [tenant] ns=0 sum=GET tenant err=- code=- rows=-"
    );
    assert_eq!(
        run(cfg(":", 32))[0],
        "GET [tenant/42/user] ns=0 sum=GET tenant/42/user err=- code=- rows=-"
    );
    // A delimiter beyond max_key_prefix: no prefix at all, never a cut key.
    assert_eq!(
        run(cfg(":", 4))[1],
        "GET [] ns=0 sum=GET err=- code=- rows=-"
    );
    assert_eq!(
        run(cfg(":", 8))[1],
        "GET [abcdefgh] ns=0 sum=GET abcdefgh err=- code=- rows=-"
    );
    assert_eq!(
        run(cfg("", 32))[0],
        "GET [] ns=0 sum=GET err=- code=- rows=-"
    );
    assert!(
        RedisConfig {
            max_key_prefix: 65,
            ..RedisConfig::default()
        }
        .validate()
        .is_err()
    );
    assert!(RedisConfig::default().validate().is_ok());
}

#[test]
fn redact_false_keeps_the_command_text_but_never_passwords() {
    let cfg = Arc::new(RedisConfig {
        redact: false,
        ..RedisConfig::default()
    });
    let conv = vec![
        c(&["SET", "user:1", "va\r\nl"]),
        s("+OK\r\n"),
        c(&["AUTH", "admin", "s3cret"]),
        s("+OK\r\n"),
        (C, b"get user:1\r\n".to_vec()),
        s("$-1\r\n"),
    ];
    let out = kit::run(&mut RedisParser::new(cfg), &conv, 0, kit::bytewise);
    let text: Vec<_> = out.iter().map(|t| attr_text(t, "db.query.text")).collect();
    assert_eq!(text, ["SET user:1 va\\x0d\\x0al", "AUTH ?", "get user:1"]);
}

#[test]
fn replies_of_reported_commands_do_not_shift_the_pairs() {
    // Three commands, the first two time out before their replies come.
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    let reqs = [
        cmd(&[b"BLPOP", b"q:1", b"0"]),
        cmd(&[b"GET", b"a:1"]),
        cmd(&[b"GET", b"b:1"]),
    ];
    p.on_data(C, &reqs[1], Timestamp(1_000), &mut out);
    p.on_data(C, &reqs[2], Timestamp(2_000), &mut out);
    p.on_tick(Timestamp(10_000_000_000), 1_000_000_000, &mut out);
    assert_eq!(out.len(), 2);
    assert!(out.iter().all(|t| t.error.as_deref() == Some("timeout")));
    assert_eq!(p.take_stats().timeouts, 2);
    p.on_data(
        S,
        b"$1\r\nx\r\n$-1\r\n",
        Timestamp(11_000_000_000),
        &mut out,
    );
    assert_eq!(
        out.len(),
        2,
        "late replies are their commands', not new ones"
    );
    p.on_data(
        C,
        &cmd(&[b"GET", b"c:1"]),
        Timestamp(12_000_000_000),
        &mut out,
    );
    p.on_data(S, b"$1\r\ny\r\n", Timestamp(12_000_000_100), &mut out);
    assert_eq!(
        describe(&out[2]),
        "GET [c] ns=0 sum=GET c err=- code=- rows=-"
    );
    // A blocking command waits as long as it likes (and those behind it with it).
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    p.on_data(C, &reqs[0], Timestamp(1_000), &mut out);
    p.on_data(C, &reqs[1], Timestamp(2_000), &mut out);
    p.on_tick(Timestamp(100_000_000_000), 1_000_000_000, &mut out);
    assert!(out.is_empty());
    // Beyond max_pending, the oldest is reported; its reply is still its own.
    let cfg = Arc::new(RedisConfig {
        max_pending: 2,
        ..RedisConfig::default()
    });
    let mut p = RedisParser::new(cfg);
    let mut out = Vec::new();
    for r in &reqs[1..] {
        p.on_data(C, r, Timestamp(1_000), &mut out);
    }
    p.on_data(C, &cmd(&[b"GET", b"c:1"]), Timestamp(1_000), &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.has(Completeness::NO_RESPONSE));
    p.on_data(S, b"$-1\r\n:1\r\n$1\r\nz\r\n", Timestamp(2_000), &mut out);
    let got: Vec<_> = out.iter().map(describe).collect();
    assert_eq!(
        got,
        lines(&[
            "GET [a] ns=0 sum=GET a err=- code=- rows=- (no_response)",
            "GET [b] ns=0 sum=GET b err=- code=- rows=-",
            "GET [c] ns=0 sum=GET c err=- code=- rows=-",
        ])
    );
    assert_eq!(p.take_stats().pending_limit, 1);
}

#[test]
fn a_large_value_is_skipped_without_buffering() {
    let value = vec![b'v'; 5 << 20];
    let conv = vec![
        (C, cmd(&[b"SET", b"blob:1", &value])),
        s("+OK\r\n"),
        c(&["GET", "blob:1"]),
        (
            S,
            [
                format!("${}\r\n", value.len()).into_bytes(),
                value.clone(),
                b"\r\n".to_vec(),
            ]
            .concat(),
        ),
    ];
    let mut p = RedisParser::default();
    let out = kit::run(&mut p, &conv, 0, |_, b| random_pieces_large(b.len()));
    let got: Vec<_> = out.iter().map(describe).collect();
    assert_eq!(
        got,
        lines(&[
            "SET [blob] ns=0 sum=SET blob err=- code=- rows=-",
            "GET [blob] ns=0 sum=GET blob err=- code=- rows=-",
        ])
    );
    assert_eq!(out[0].req_bytes, conv[0].1.len() as u64);
    assert_eq!(out[1].resp_bytes, conv[3].1.len() as u64);
    // Nothing of the value was kept: the parsers hold no buffer that could.
    assert!(std::mem::size_of::<RedisParser>() < 2048);
}

#[test]
fn a_waiting_command_stays_small() {
    // Every command is written into the queue and read back out at its reply: at 104
    // bytes (two strings of its own) that was a fifth of a pipelined worker's time.
    assert!(std::mem::size_of::<Pending>() <= 40, "{}", std::mem::size_of::<Pending>());
}

#[test]
fn a_reply_cut_by_the_close_reports_what_was_seen() {
    // As in deepflow/redis/redis.pcap: the capture ends before the value's last CRLF.
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    p.on_data(C, &cmd(&[b"GET", b"a:1"]), Timestamp(1), &mut out);
    p.on_data(S, b"$10\r\n0123", Timestamp(2), &mut out);
    p.on_data(S, b"456789", Timestamp(3), &mut out);
    p.on_close(Timestamp(9), false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(
        describe(&out[0]),
        "GET [a] ns=0 sum=GET a err=- code=- rows=- (closed,truncated)"
    );
    assert_eq!((out[0].end, out[0].resp_bytes), (Timestamp(3), 15));
}

fn random_pieces_large(len: usize) -> Vec<Piece> {
    (0..len)
        .step_by(1448)
        .map(|at| Piece::Data(at..(at + 1448).min(len)))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Gaps and mid-stream starts

/// Commands that change no connection state: any subset of them pairs the same.
fn stateless() -> Vec<(Direction, Vec<u8>)> {
    let mut v = Vec::new();
    for i in 0..8 {
        let key = format!("k{i}:{i}");
        v.push(c(&["SET", &key, "some value"]));
        v.push(s("+OK\r\n"));
        v.push(c(&["GET", &key]));
        v.push(s("$10\r\nsome value\r\n"));
        v.push(c(&["LRANGE", &key, "0", "-1"]));
        v.push(s("*2\r\n$1\r\na\r\n$1\r\nb\r\n"));
    }
    v
}

fn stateless_want() -> Vec<String> {
    let mut v = Vec::new();
    for i in 0..8 {
        v.push(format!("SET [k{i}] ns=0 sum=SET k{i} err=- code=- rows=-"));
        v.push(format!("GET [k{i}] ns=0 sum=GET k{i} err=- code=- rows=-"));
        v.push(format!(
            "LRANGE [k{i}] ns=0 sum=LRANGE k{i} err=- code=- rows=2"
        ));
    }
    v
}

#[test]
fn stateless_conversation_survives_every_split() {
    assert_eq!(
        kit::check_splits(RedisParser::default, &stateless(), describe),
        stateless_want()
    );
}

#[test]
fn a_gap_costs_only_the_pair_it_hits() {
    let conv = stateless();
    let want = stateless_want();
    for (at, (dir, b)) in conv.iter().enumerate() {
        for lost in [
            0..b.len(),
            0..1,
            b.len() / 2..b.len(),
            1..b.len() - 1,
            4..b.len(),
        ] {
            if lost.is_empty() || lost.end > b.len() {
                continue;
            }
            let mut p = RedisParser::default();
            let out = kit::run(&mut p, &conv, 0, kit::gap(at, lost.clone()));
            let got: Vec<String> = out.iter().map(describe).collect();
            let pair = at / 2;
            let ctx = format!("{dir:?} message {at} bytes {lost:?} lost: {got:#?}");
            // Every pair before the damaged one, and every pair after the next one,
            // is reported exactly.
            assert_eq!(got[..pair], want[..pair], "{ctx}");
            let tail = want.len().saturating_sub(pair + 2);
            assert!(got.len() >= tail + pair, "{ctx}");
            assert_eq!(got[got.len() - tail..], want[want.len() - tail..], "{ctx}");
            // Whatever the gap hit is marked so, never passed off as complete and wrong.
            for t in &out[pair..out.len() - tail] {
                let line = describe(t);
                assert!(
                    want.contains(&line) || !t.completeness.is_complete(),
                    "{ctx}: {line}"
                );
            }
        }
    }
}

#[test]
fn a_gap_inside_a_value_keeps_the_framing() {
    let conv = stateless();
    // SET's value and GET's reply value lose 4 bytes each.
    for at in [0, 3] {
        let b = &conv[at].1;
        let v = memchr::memmem::find(b, b"some value").unwrap();
        let got: Vec<String> = kit::run(
            &mut RedisParser::default(),
            &conv,
            0,
            kit::gap(at, v + 2..v + 6),
        )
        .iter()
        .map(describe)
        .collect();
        let mut want = stateless_want();
        want[at / 2].push_str(" (gap)");
        assert_eq!(got, want, "message {at}");
    }
}

#[test]
fn pipelined_replies_lost_in_a_gap_are_reported() {
    // A client that does not pipeline: the replies of the commands before the last one
    // waiting were lost, whole.
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    p.on_data(C, &cmd(&[b"GET", b"a:1"]), Timestamp(1), &mut out);
    p.on_data(S, b"$-1\r\n", Timestamp(2), &mut out);
    p.on_data(C, &cmd(&[b"GET", b"b:1"]), Timestamp(3), &mut out);
    p.on_gap(S, 5);
    p.on_data(C, &cmd(&[b"GET", b"c:1"]), Timestamp(5), &mut out);
    p.on_data(S, b"$1\r\nx\r\n", Timestamp(6), &mut out);
    let got: Vec<_> = out.iter().map(describe).collect();
    assert_eq!(
        got,
        lines(&[
            "GET [a] ns=0 sum=GET a err=- code=- rows=-",
            "GET [b] ns=0 sum=GET b err=- code=- rows=- (gap,no_response)",
            "GET [c] ns=0 sum=GET c err=- code=- rows=- (gap)",
        ])
    );
    assert_eq!(p.take_stats().replies_lost, 1);
}

#[test]
fn a_mid_stream_start_reports_what_follows() {
    let conv = stateless();
    let want = stateless_want();
    // At a message boundary: exactly the pairs from there on (a reply first: without
    // its command).
    for from in (0..conv.len()).step_by(2) {
        let got: Vec<String> = kit::run(&mut RedisParser::default(), &conv, from, kit::whole)
            .iter()
            .map(describe)
            .collect();
        assert_eq!(got, want[from / 2..], "from message {from}");
    }
    let got: Vec<String> = kit::run(&mut RedisParser::default(), &conv, 1, kit::whole)
        .iter()
        .map(describe)
        .collect();
    assert_eq!(got[0], " [] ns=0 sum= err=- code=- rows=- (no_request)");
    assert_eq!(got[1..], want[1..]);
    // Inside a message: the pairs after the next one exactly, and no panic.
    for from in 0..conv.len() {
        for k in 1..conv[from].1.len() {
            let mut p = RedisParser::default();
            let out = kit::run(&mut p, &conv, 0, |i, b| {
                if i < from {
                    vec![]
                } else {
                    kit::from_byte(from, k)(i, b)
                }
            });
            let got: Vec<String> = out.iter().map(describe).collect();
            let tail = want.len().saturating_sub(from / 2 + 2);
            assert!(got.len() >= tail, "from {from}:{k}");
            assert_eq!(
                got[got.len() - tail..],
                want[want.len() - tail..],
                "from {from}:{k}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Random conversations

/// A random command with the reply a server could give, and the line it is described by.
fn random_exchange(rng: &mut impl FnMut() -> u64) -> (Vec<u8>, Vec<u8>, String) {
    let prefixes = ["user", "session", "a", "cache-v2"];
    let key = if rng().is_multiple_of(4) {
        format!("plainkey{}", rng() % 100)
    } else {
        format!("{}:{}", prefixes[(rng() % 4) as usize], rng() % 1000)
    };
    let prefix = key.split_once(':').map_or("", |(p, _)| p).to_string();
    // Values that look like RESP, with CRLFs and binary bytes inside.
    let value: Vec<u8> = match rng() % 4 {
        0 => b"*3\r\n$3\r\nSET\r\n+OK\r\n".to_vec(),
        1 => (0..rng() % 300).map(|_| rng() as u8).collect(),
        2 => b"\r\n-ERR x\r\n:1\r\n".to_vec(),
        _ => b"plain".to_vec(),
    };
    let (op, req): (&str, Vec<u8>) = match rng() % 5 {
        0 => ("SET", cmd(&[b"SET", key.as_bytes(), &value])),
        1 => ("GET", cmd(&[b"get", key.as_bytes()])),
        2 => ("LRANGE", cmd(&[b"LRANGE", key.as_bytes(), b"0", b"-1"])),
        3 => ("HSET", cmd(&[b"HSET", key.as_bytes(), b"f", &value])),
        _ => ("ECHO", cmd(&[b"ECHO", &value])),
    };
    let prefix = if op == "ECHO" { String::new() } else { prefix };
    let (rep, err, rows) = random_reply(rng, &value);
    let sum = if prefix.is_empty() {
        op.to_string()
    } else {
        format!("{op} {prefix}")
    };
    let line = format!(
        "{op} [{prefix}] ns=0 sum={sum} err={e} code={e} rows={rows}",
        e = err.as_deref().unwrap_or("-"),
        rows = rows.map_or("-".to_string(), |r| r.to_string())
    );
    (req, rep, line)
}

/// A random reply of any RESP3 type: its bytes, error code and row count.
fn random_reply(
    rng: &mut impl FnMut() -> u64,
    value: &[u8],
) -> (Vec<u8>, Option<String>, Option<u64>) {
    let mut out = Vec::new();
    if rng().is_multiple_of(8) {
        out.extend_from_slice(b"|1\r\n+meta\r\n");
        random_value(rng, value, 2, &mut out);
    }
    match rng() % 6 {
        0 => {
            out.extend_from_slice(b"-WRONGTYPE Operation against a key\r\n");
            (out, Some("WRONGTYPE".into()), None)
        }
        1 => {
            out.extend_from_slice(b"!11\r\nERR blob\r\nx\r\n");
            (out, Some("ERR".into()), None)
        }
        2 => {
            let n = rng() % 5;
            out.extend_from_slice(format!("*{n}\r\n").as_bytes());
            for _ in 0..n {
                random_value(rng, value, 3, &mut out);
            }
            (out, None, Some(n))
        }
        3 => {
            let n = rng() % 4;
            out.extend_from_slice(b"*?\r\n");
            for _ in 0..n {
                random_value(rng, value, 3, &mut out);
            }
            out.extend_from_slice(b".\r\n");
            (out, None, Some(n))
        }
        _ => {
            let err = random_scalar(rng, value, &mut out);
            (out, err, None)
        }
    }
}

fn random_value(rng: &mut impl FnMut() -> u64, value: &[u8], depth: u32, out: &mut Vec<u8>) {
    if depth == 0 || !rng().is_multiple_of(3) {
        random_scalar(rng, value, out);
        return;
    }
    let n = rng() % 4;
    match rng() % 4 {
        0 => out.extend_from_slice(format!("*{n}\r\n").as_bytes()),
        1 => out.extend_from_slice(format!("~{n}\r\n").as_bytes()),
        2 => {
            out.extend_from_slice(format!("%{n}\r\n").as_bytes());
            for _ in 0..n {
                random_value(rng, value, depth - 1, out);
            }
        }
        _ => out.extend_from_slice(format!(">{n}\r\n").as_bytes()),
    }
    for _ in 0..n {
        random_value(rng, value, depth - 1, out);
    }
}

/// Returns the error code when the scalar is an error.
fn random_scalar(rng: &mut impl FnMut() -> u64, value: &[u8], out: &mut Vec<u8>) -> Option<String> {
    let s: Vec<u8> = match rng() % 12 {
        0 => b"+OK\r\n".to_vec(),
        1 => format!(":{}\r\n", rng() as i64).into_bytes(),
        2 => [
            format!("${}\r\n", value.len()).into_bytes(),
            value.to_vec(),
            b"\r\n".to_vec(),
        ]
        .concat(),
        3 => b"$-1\r\n".to_vec(),
        4 => b"_\r\n".to_vec(),
        5 => b"#f\r\n".to_vec(),
        6 => b",-1.5e10\r\n".to_vec(),
        7 => b"(-123456789012345678901234567890\r\n".to_vec(),
        8 => [
            format!("={}\r\ntxt:", value.len() + 4).into_bytes(),
            value.to_vec(),
            b"\r\n".to_vec(),
        ]
        .concat(),
        9 => b"*-1\r\n".to_vec(),
        10 => {
            let mut v = b"$?\r\n".to_vec();
            for chunk in value.chunks(7) {
                v.extend_from_slice(format!(";{}\r\n", chunk.len()).as_bytes());
                v.extend_from_slice(chunk);
                v.extend_from_slice(b"\r\n");
            }
            v.extend_from_slice(b";0\r\n");
            v
        }
        _ => {
            out.extend_from_slice(b"-ERR nested\r\n");
            return Some("ERR".into());
        }
    };
    out.extend_from_slice(&s);
    None
}

#[test]
fn random_conversations_pair_exactly_however_fed() {
    for seed in 1..=40u64 {
        let mut rng = test_rng(seed * 7919);
        let n = 1 + (rng() % 30) as usize;
        let exchanges: Vec<_> = (0..n).map(|_| random_exchange(&mut rng)).collect();
        let want: Vec<String> = exchanges.iter().map(|e| e.2.clone()).collect();
        // One command at a time, and pipelined in random batches.
        let mut serial = Vec::new();
        for (req, rep, _) in &exchanges {
            serial.push((C, req.clone()));
            serial.push((S, rep.clone()));
        }
        let mut piped = Vec::new();
        let mut i = 0;
        while i < n {
            let k = 1 + (rng() % 8) as usize;
            let batch = &exchanges[i..(i + k).min(n)];
            piped.push((C, batch.iter().flat_map(|e| e.0.clone()).collect()));
            piped.push((S, batch.iter().flat_map(|e| e.1.clone()).collect()));
            i += k;
        }
        for conv in [&serial, &piped] {
            let mut p = RedisParser::default();
            let got: Vec<String> =
                kit::run(&mut p, conv, 0, |_, b| random_pieces(&mut rng, b.len()))
                    .iter()
                    .map(describe)
                    .collect();
            assert_eq!(got, want, "seed {seed}");
            let st = p.take_stats();
            assert_eq!(
                st.malformed + st.too_deep + st.bulk_too_large,
                0,
                "seed {seed}"
            );
        }
        kit::check_splits(
            RedisParser::default,
            &serial[..serial.len().min(6)],
            describe,
        );
    }
}

#[test]
fn random_bytes_never_panic_and_stay_bounded() {
    let mut rng = test_rng(99);
    for round in 0..300 {
        let mut p = RedisParser::default();
        let mut out = Vec::new();
        for i in 0..40u64 {
            let len = (rng() % 200) as usize;
            // Garbage mixed with RESP-looking bytes.
            let b: Vec<u8> = (0..len)
                .map(|_| {
                    let r = rng();
                    const RESPISH: &[u8] = b"*$+-:\r\n0123456789?.;|%~>_#,(=!";
                    if r.is_multiple_of(3) {
                        RESPISH[(r >> 8) as usize % RESPISH.len()]
                    } else {
                        r as u8
                    }
                })
                .collect();
            let dir = if rng().is_multiple_of(2) { C } else { S };
            p.on_data(dir, &b, Timestamp(i), &mut out);
            if rng().is_multiple_of(10) {
                p.on_gap(dir, (rng() % 1000) as u32);
            }
            p.on_tick(Timestamp(i * 1_000_000_000), 5_000_000_000, &mut out);
        }
        assert!(
            p.pending() <= RedisConfig::default().max_pending,
            "round {round}"
        );
        assert!(p.rep_stack_capacity() <= 64, "round {round}");
        p.on_close(Timestamp(u64::MAX / 2), true, &mut out);
    }
}

// ---------------------------------------------------------------------------------------
// Hostile input

#[test]
fn a_2_gib_bulk_length_is_counted_not_allocated() {
    // From the client: redis-server answers with an error (and closes); the command is
    // reported cut short, with that error.
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    p.on_data(
        C,
        b"*2\r\n$3\r\nGET\r\n$2147483648\r\n",
        Timestamp(1),
        &mut out,
    );
    p.on_data(
        S,
        b"-ERR Protocol error: invalid bulk length\r\n",
        Timestamp(2),
        &mut out,
    );
    // A new connection would follow; the stream goes on with the next plausible message.
    p.on_data(C, &cmd(&[b"GET", b"b:1"]), Timestamp(3), &mut out);
    p.on_data(S, b"$-1\r\n", Timestamp(4), &mut out);
    let st = p.take_stats();
    assert_eq!((st.bulk_too_large, st.malformed), (1, 0));
    let got: Vec<_> = out.iter().map(describe).collect();
    assert_eq!(
        got,
        lines(&[
            "GET [] ns=0 sum=GET err=ERR code=ERR rows=- (truncated)",
            "GET [b] ns=0 sum=GET b err=- code=- rows=-",
        ])
    );
    // From the server: the command is reported without its reply.
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    p.on_data(C, &cmd(&[b"GET", b"a:1"]), Timestamp(1), &mut out);
    p.on_data(S, b"$2147483648\r\nxxxxxxxx", Timestamp(2), &mut out);
    p.on_data(C, &cmd(&[b"GET", b"b:1"]), Timestamp(3), &mut out);
    p.on_data(S, b"\r\n$-1\r\n", Timestamp(4), &mut out);
    let st = p.take_stats();
    assert_eq!((st.bulk_too_large, st.malformed), (1, 0));
    let got: Vec<_> = out.iter().map(describe).collect();
    assert_eq!(
        got,
        lines(&[
            "GET [a] ns=0 sum=GET a err=- code=- rows=- (no_response,truncated)",
            "GET [b] ns=0 sum=GET b err=- code=- rows=-",
        ])
    );
    // A configured smaller limit applies.
    let mut p = RedisParser::new(Arc::new(RedisConfig {
        max_bulk_bytes: 1000,
        ..RedisConfig::default()
    }));
    let mut out = Vec::new();
    p.on_data(
        C,
        &cmd(&[b"SET", b"k", &[b'x'; 1001]]),
        Timestamp(1),
        &mut out,
    );
    assert_eq!(p.take_stats().bulk_too_large, 1);
}

#[test]
fn a_million_nested_arrays_are_counted_in_linear_time() {
    let deep = b"*1\r\n".repeat(1_000_000);
    for dir in [C, S] {
        let mut p = RedisParser::default();
        let mut out = Vec::new();
        p.on_data(C, &cmd(&[b"GET", b"a:1"]), Timestamp(1), &mut out);
        p.on_data(S, b"$-1\r\n", Timestamp(2), &mut out);
        let started = std::time::Instant::now();
        for chunk in deep.chunks(1448) {
            p.on_data(dir, chunk, Timestamp(3), &mut out);
        }
        // Debug builds walk a few MB/s at worst; quadratic behaviour would take hours.
        assert!(started.elapsed().as_secs() < 20, "{dir:?}");
        let st = p.take_stats();
        match dir {
            // A command holds no nesting at all: the second `*` is malformed.
            C => assert_eq!((st.malformed, st.too_deep), (1, 0)),
            S => assert_eq!((st.malformed, st.too_deep), (0, 1)),
        }
        assert!(p.rep_stack_capacity() <= 64);
        assert_eq!(p.pending(), 0);
    }
}

#[test]
fn garbage_is_counted_once_per_loss_of_sync() {
    let mut p = RedisParser::default();
    let mut out = Vec::new();
    p.on_data(C, &cmd(&[b"GET", b"a:1"]), Timestamp(1), &mut out);
    p.on_data(S, b"$-1\r\n", Timestamp(2), &mut out);
    // Not RESP from the server, twice over.
    p.on_data(S, b"?? not resp\r\nstill not\r\n", Timestamp(4), &mut out);
    // A client line longer than redis-server reads inline (64 KiB).
    let junk: Vec<u8> = (0..70_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    p.on_data(C, &junk, Timestamp(5), &mut out);
    let st = p.take_stats();
    assert_eq!((st.malformed, st.too_deep, st.bulk_too_large), (2, 0, 0));
    // Back in sync at the next command and reply.
    p.on_data(C, b"\r\n", Timestamp(5), &mut out);
    p.on_data(C, &cmd(&[b"GET", b"b:1"]), Timestamp(5), &mut out);
    p.on_data(S, b"$-1\r\n", Timestamp(6), &mut out);
    assert_eq!(
        out.iter().map(describe).collect::<Vec<_>>(),
        lines(&[
            "GET [a] ns=0 sum=GET a err=- code=- rows=-",
            "GET [b] ns=0 sum=GET b err=- code=- rows=-",
        ])
    );
}

#[test]
fn events_are_named_and_counted() {
    let st = RedisStats {
        malformed: 1,
        too_deep: 2,
        bulk_too_large: 3,
        push_messages: 4,
        pending_limit: 5,
        timeouts: 6,
        replies_lost: 7,
    };
    let mut c = Counters::default();
    let mut d = Decoder::Redis(RedisParser::default());
    if let Decoder::Redis(p) = &mut d {
        p.stats = st;
    }
    d.drain_stats(&mut c);
    let got: Vec<_> = c.nonzero().map(|(e, n)| (e.name(), n)).collect();
    for want in [
        ("redis.malformed", 1),
        ("redis.too_deep", 2),
        ("redis.bulk_too_large", 3),
        ("redis.push_messages", 4),
        ("l7.pending_limit", 5),
        ("l7.transaction_timeout", 6),
        ("l7.response_lost", 7),
    ] {
        assert!(got.contains(&want), "{want:?} in {got:?}");
    }
}

// ---------------------------------------------------------------------------------------
// The parsers alone

fn parse_reply(b: &[u8]) -> (super::parser::Reply, usize) {
    let mut p = ReplyParser::new(Limits::default());
    let step = p.next(b);
    assert_eq!(step.out, Out::Message, "{:?}", String::from_utf8_lossy(b));
    (p.reply.clone(), step.used)
}

#[test]
fn every_resp3_type_parses() {
    let cases: &[(&[u8], Kind, u64, &str, &str)] = &[
        (b"+OK\r\n", Kind::SimpleString, 0, "OK", ""),
        (b"-ERR bad\r\n", Kind::Error, 0, "ERR bad", ""),
        (b":-42\r\n", Kind::Integer, 0, "", ""),
        (b"$3\r\nabc\r\n", Kind::BulkString, 0, "", ""),
        (b"$0\r\n\r\n", Kind::BulkString, 0, "", ""),
        (b"$-1\r\n", Kind::Null, 0, "", ""),
        (b"*-1\r\n", Kind::Null, 0, "", ""),
        (b"_\r\n", Kind::Null, 0, "", ""),
        (b"#t\r\n", Kind::Bool, 0, "", ""),
        (b",inf\r\n", Kind::Double, 0, "", ""),
        (b"(-12345678901234567890123\r\n", Kind::BigNumber, 0, "", ""),
        (
            b"!9\r\nERR x\r\nyz\r\n",
            Kind::BlobError,
            0,
            "ERR x\r\nyz",
            "",
        ),
        (b"=7\r\ntxt:abc\r\n", Kind::Verbatim, 0, "", ""),
        (
            b"*2\r\n$7\r\nmessage\r\n:1\r\n",
            Kind::Array,
            2,
            "",
            "message",
        ),
        (b"*0\r\n", Kind::Array, 0, "", ""),
        (b"%1\r\n+a\r\n*1\r\n:1\r\n", Kind::Map, 1, "", "a"),
        (b"~3\r\n:1\r\n:2\r\n:3\r\n", Kind::Set, 3, "", ""),
        (b">2\r\n+pong\r\n$0\r\n\r\n", Kind::Push, 2, "", "pong"),
        (
            b"|1\r\n+a\r\n+b\r\n+OK\r\n",
            Kind::SimpleString,
            0,
            "OK",
            "",
        ),
        (b"$?\r\n;2\r\nab\r\n;0\r\n", Kind::BulkString, 0, "", ""),
        (b"*?\r\n:1\r\n:2\r\n.\r\n", Kind::Array, 2, "", ""),
        (b"%?\r\n+a\r\n:1\r\n.\r\n", Kind::Map, 1, "", "a"),
        (b"~?\r\n.\r\n", Kind::Set, 0, "", ""),
    ];
    for &(b, kind, len, text, first) in cases {
        let mut with_next = b.to_vec();
        with_next.extend_from_slice(b"+NEXT\r\n");
        let (r, used) = parse_reply(&with_next);
        let ctx = String::from_utf8_lossy(b);
        assert_eq!(used, b.len(), "{ctx}");
        assert_eq!(r.kind, kind, "{ctx}");
        assert_eq!(r.len, len, "{ctx}");
        assert_eq!(r.text.bytes(), text.as_bytes(), "{ctx}");
        assert_eq!(r.first.bytes(), first.as_bytes(), "{ctx}");
        assert_eq!(r.bytes, b.len() as u64, "{ctx}");
        // Fed a byte at a time, the same.
        let mut p = ReplyParser::new(Limits::default());
        let mut done = 0;
        for (i, c) in b.iter().enumerate() {
            let step = p.next(std::slice::from_ref(c));
            if step.out == Out::Message {
                done = i + 1;
            }
        }
        assert_eq!(done, b.len(), "{ctx}");
        assert_eq!((p.reply.kind, p.reply.len), (kind, len), "{ctx}");
    }
    let (r, _) = parse_reply(b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:7\r\n");
    assert_eq!(r.last_int, Some(7));
    let (r, _) = parse_reply(b"*2\r\n$1\r\n0\r\n*3\r\n:1\r\n:2\r\n:3\r\n");
    assert_eq!(r.second_len, Some(3));
    assert!(parse_reply(b"|1\r\n+a\r\n+b\r\n:1\r\n").0.attribute);
}

#[test]
fn malformed_replies_are_errors() {
    for b in [
        &b"?\r\n"[..],
        b"$abc\r\n",
        b"$-2\r\n",
        b"*1\r\n$3\r\nabcd\r\n",
        b"#x\r\n",
        b":\r\n",
        b"_x\r\n",
        b"$3\nabc\r\n",
        b"$007\r\n",
        b"|-1\r\n",
    ] {
        let mut p = ReplyParser::new(Limits::default());
        // In sync first: errors found while looking for sync are not reported.
        assert_eq!(p.next(b"+OK\r\n").out, Out::Message);
        let mut outs = Vec::new();
        let mut rest = b;
        while !rest.is_empty() {
            let step = p.next(rest);
            outs.push(step.out);
            rest = &rest[step.used..];
        }
        assert!(
            outs.contains(&Out::Error(ParseError::Malformed)),
            "{:?}: {outs:?}",
            String::from_utf8_lossy(b)
        );
    }
}

#[test]
fn commands_keep_their_first_arguments() {
    let mut p = RequestParser::new(Limits::default(), 0);
    let long = vec![b'k'; 100];
    let b = cmd(&[b"SET", &long, b"v"]);
    let step = p.next(&b);
    assert_eq!((step.out, step.used), (Out::Message, b.len()));
    assert_eq!(p.cmd.argc, 3);
    assert_eq!(p.cmd.args[0].bytes(), b"SET");
    assert_eq!(p.cmd.args[1].bytes().len(), super::parser::ARG_CAP);
    assert_eq!(p.cmd.args[1].total(), 100);
    assert!(!p.cmd.args[1].is_whole());
    assert_eq!(p.cmd.args[2].bytes(), b"v");
    // redis-server ignores an empty or negative multibulk; so does the parser.
    let step = p.next(b"*0\r\n*-1\r\n");
    assert_eq!(step.out, Out::More);
    let step = p.next(b"PING\r\n");
    assert_eq!(step.out, Out::Message);
    assert!(p.cmd.inline);
}

#[test]
fn probe_tells_redis_from_other_protocols() {
    use Confidence::*;
    let set = cmd(&[b"SET", b"k", b"v"]);
    assert_eq!(probe(&set, C, false), Certain);
    assert_eq!(probe(&cmd(&[b"FOO", b"k"]), C, false), Likely);
    assert_eq!(probe(b"*3\r\n$3\r\nSE", C, false), NeedMore);
    assert_eq!(probe(b"*3\r", C, false), NeedMore);
    assert_eq!(probe(&set[..32.min(set.len())], C, false), Certain);
    // Inline commands and replies only on a Redis port.
    assert_eq!(probe(b"PING\r\n", C, true), Port);
    assert_eq!(probe(b"PING\r\n", C, false), No);
    assert_eq!(probe(b"+OK\r\n", S, true), Port);
    assert_eq!(probe(b"+OK\r\n", S, false), No);
    assert_eq!(probe(b"-ERR unknown\r\n", S, true), Port);
    assert_eq!(probe(b"$5\r\nhello\r\n", S, true), Port);
    assert_eq!(probe(b"*2\r\n$3\r\nfoo\r\n", S, false), No);
    // Not Redis, on any port.
    for (b, dir) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], C),
        (b"HTTP/1.1 200 OK\r\n", S),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", C),
        (
            b"\x00\x1d\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00",
            C,
        ),
        (b"\x00\x00\x00\x08\x04\xd2\x16\x2f", C),
        (b"\x00\x00\x00\x54\x00\x03\x00\x00user\x00postgres\x00", C),
        (b"\x4a\x00\x00\x00\x0a5.7.30-log\x00", S),
        (b"\x80\x00\x00\x03\x00\x00\x00\x00\x00\x00\x00\x03", C),
        (b"SSH-2.0-OpenSSH_9.2\r\n", C),
        (b"hullo world\r\n", C),
        (b"\x00\x00\x00\x00", S),
        (b"* OK IMAP4rev1 ready\r\n", S),
    ] {
        for hinted in [false, true] {
            assert_eq!(
                probe(b, dir, hinted),
                No,
                "{:?} hinted={hinted}",
                String::from_utf8_lossy(b)
            );
        }
    }
    // memcached's text protocol reads like inline commands: only the port tells.
    assert_eq!(probe(b"get foo\r\n", C, false), No);
    assert_eq!(probe(b"get foo\r\n", C, true), Port);
    assert_eq!(probe(b"stats\r\n", C, true), No);
    // redis-server skips blank lines before an inline command.
    assert_eq!(probe(b"\r\n\r\nPING\r\n", C, true), Port);
    assert_eq!(probe(b"\r\n", C, true), NeedMore);
    assert!(is_command(b"get") && is_command(b"CLIENT|SETNAME") && is_command(b"json.get"));
    assert!(!is_command(b"hi") && !is_command(b"$0"));
    assert_eq!(probe(b"VALUE foo 0 3\r\nbar\r\nEND\r\n", S, false), No);
}

/// The shared test kit: a pipelined SET and GET, a failing command and a RESP3 map reply,
/// whole, byte by byte, split everywhere, with a gap in each chunk and picked up after
/// each chunk.
#[test]
fn testkit_feeds_every_way() {
    use crate::proto::testkit::{Chunk, check_all};
    let conv: [Chunk; 6] = [
        (
            Direction::ToServer,
            b"*3\r\n$3\r\nSET\r\n$6\r\nuser:1\r\n$5\r\nhello\r\n*2\r\n$3\r\nGET\r\n$6\r\nuser:1\r\n",
        ),
        (Direction::ToClient, b"+OK\r\n$5\r\nhello\r\n"),
        (Direction::ToServer, b"*2\r\n$4\r\nINCR\r\n$6\r\nuser:1\r\n"),
        (
            Direction::ToClient,
            b"-ERR value is not an integer or out of range\r\n",
        ),
        (Direction::ToServer, b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n"),
        (Direction::ToClient, b"%1\r\n+server\r\n+redis\r\n"),
    ];
    let out = check_all(
        || RedisParser::new(std::sync::Arc::new(RedisConfig::default())),
        &conv,
    );
    let got: Vec<_> = out
        .iter()
        .map(|t| (t.operation.to_string(), t.error.as_ref().map(|e| e.to_string())))
        .collect();
    assert_eq!(
        got,
        [
            ("SET".to_string(), None),
            ("GET".to_string(), None),
            ("INCR".to_string(), Some("ERR".to_string())),
            ("HELLO".to_string(), None),
        ]
    );
}

/// A command that repeats the last plain one (its first bytes, its key's prefix) and a
/// scalar reply that simply answers the oldest command are read in place, without the
/// parsers; everything else goes through them. Fed whole, the conversation takes the
/// shortcuts where it can; fed byte by byte, split anywhere or with gaps, it never does:
/// the transactions must be the same.
#[test]
fn repeated_commands_and_plain_replies_read_in_place_report_as_the_parsers_do() {
    let conv = vec![
        c(&["SET", "user:1", "a"]),
        c(&["SET", "user:2", "b"]),
        s("+OK\r\n+OK\r\n"),
        // The same name with another prefix, another argument count, another case; a key
        // without a prefix (not remembered: its next may have one).
        c(&["SET", "order:1", "c"]),
        c(&["SET", "order:2", "d", "EX", "10"]),
        c(&["set", "order:3", "e"]),
        c(&["SET", "order", "f"]),
        c(&["SET", "order", "g"]),
        s("+OK\r\n+OK\r\n+OK\r\n+OK\r\n+OK\r\n"),
        // An error among plain replies.
        c(&["GET", "user:1"]),
        c(&["GET", "user:2"]),
        c(&["GET", "user:3"]),
        s("$1\r\na\r\n-WRONGTYPE Operation against a key\r\n$-1\r\n"),
        // A SELECT that selects nothing, then one that does: never taken for plain.
        c(&["SELECT", "x"]),
        s("-ERR value is not an integer or out of range\r\n"),
        c(&["SELECT", "3"]),
        s("+OK\r\n"),
        c(&["GET", "user:4"]),
        s("$-1\r\n"),
        // Queued commands: +QUEUED is not a plain reply.
        c(&["MULTI"]),
        s("+OK\r\n"),
        c(&["INCR", "n:1"]),
        c(&["INCR", "n:2"]),
        s("+QUEUED\r\n+QUEUED\r\n"),
        c(&["EXEC"]),
        s("*2\r\n:1\r\n:1\r\n"),
        // A key that is not the first argument; a command without a key.
        c(&["BITOP", "AND", "d:1", "s:1"]),
        c(&["BITOP", "AND", "d:2", "s:2"]),
        s(":0\r\n:0\r\n"),
        c(&["PING"]),
        c(&["PING"]),
        s("+PONG\r\n+PONG\r\n"),
    ];
    let got = kit::check_splits(RedisParser::default, &conv, describe);
    assert_eq!(
        got,
        lines(&[
            "SET [user] ns=0 sum=SET user err=- code=- rows=-",
            "SET [user] ns=0 sum=SET user err=- code=- rows=-",
            "SET [order] ns=0 sum=SET order err=- code=- rows=-",
            "SET [order] ns=0 sum=SET order err=- code=- rows=-",
            "SET [order] ns=0 sum=SET order err=- code=- rows=-",
            "SET [] ns=0 sum=SET err=- code=- rows=-",
            "SET [] ns=0 sum=SET err=- code=- rows=-",
            "GET [user] ns=0 sum=GET user err=- code=- rows=-",
            "GET [user] ns=0 sum=GET user err=WRONGTYPE code=WRONGTYPE rows=-",
            "GET [user] ns=0 sum=GET user err=- code=- rows=-",
            "SELECT [] ns=0 sum=SELECT err=ERR code=ERR rows=-",
            "SELECT [] ns=0 sum=SELECT err=- code=- rows=-",
            "GET [user] ns=3 sum=GET user err=- code=- rows=-",
            "MULTI [] ns=3 sum=MULTI err=- code=- rows=-",
            "INCR [n] ns=3 sum=INCR n err=- code=- rows=- queued",
            "INCR [n] ns=3 sum=INCR n err=- code=- rows=- queued",
            "EXEC [] ns=3 sum=EXEC err=- code=- rows=-",
            "BITOP [d] ns=3 sum=BITOP d err=- code=- rows=-",
            "BITOP [d] ns=3 sum=BITOP d err=- code=- rows=-",
            "PING [] ns=3 sum=PING err=- code=- rows=-",
            "PING [] ns=3 sum=PING err=- code=- rows=-",
        ])
    );
    // Fed whole: the second SET user, GET user:2 and :3, INCR n:2 and PING in place, and
    // every plain reply (two and five +OK, $1, two $-1, two :0, two +PONG).
    let mut p = RedisParser::default();
    kit::run(&mut p, &conv, 0, kit::whole);
    assert_eq!(p.in_place, [5, 14]);
    // Byte by byte: never.
    let mut p = RedisParser::default();
    kit::run(&mut p, &conv, 0, kit::bytewise);
    assert_eq!(p.in_place, [0, 0]);
}

/// Counted without records (a sink that only counts), plainly answered commands are
/// tallied, everything else is still a record, and together they are what the records
/// alone say: the same commands, rows and durations, however the bytes arrive.
#[test]
fn plain_commands_are_tallied_and_the_rest_are_records() {
    let conv = vec![
        c(&["SET", "user:1", "a"]),
        c(&["SET", "user:2", "b"]),
        c(&["GET", "user:1"]),
        s("+OK\r\n+OK\r\n$1\r\na\r\n"),
        c(&["GET", "user:1"]),
        c(&["GET", "user:2"]),
        c(&["LPUSH", "user:1", "x"]),
        s("$1\r\na\r\n$1\r\nb\r\n-WRONGTYPE Operation against a key\r\n"),
        c(&["SELECT", "3"]),
        s("+OK\r\n"),
        c(&["GET", "cart:9"]),
        c(&["GET", "cart:9"]),
        s("$-1\r\n$-1\r\n"),
        c(&["MULTI"]),
        c(&["INCR", "n:1"]),
        c(&["EXEC"]),
        s("+OK\r\n+QUEUED\r\n*1\r\n:1\r\n"),
        c(&["HGETALL", "h:1"]),
        s("*2\r\n$1\r\nf\r\n$1\r\nv\r\n"),
    ];
    // (operation, resource, duration, error, complete) of each command.
    type Row = (String, String, u64, Option<String>, bool);
    let row = |t: &Transaction| -> Row {
        let (op, res) = (t.operation.to_string(), t.resource.to_string());
        (op, res, t.duration_ns(), t.error.as_ref().map(|e| e.to_string()), t.completeness.is_complete())
    };
    let sorted = |mut v: Vec<Row>| {
        v.sort();
        v
    };
    let want = sorted(kit::run(&mut RedisParser::default(), &conv, 0, kit::whole).iter().map(row).collect());
    assert_eq!(want.len(), 13);
    type Pieces = Box<dyn FnMut(usize, &[u8]) -> Vec<Piece>>;
    let feeds: Vec<(&str, Pieces)> = vec![
        ("whole", Box::new(kit::whole)),
        ("bytewise", Box::new(kit::bytewise)),
        ("split", Box::new(kit::split(3, 7))),
    ];
    for (how, pieces) in feeds {
        let mut tally = Tally::new(true);
        let records = kit::run_tallied(&mut RedisParser::default(), &conv, 0, pieces, Some(&mut tally));
        // Errors, and the commands that change the connection (SELECT, MULTI, EXEC),
        // are records.
        assert!(records.iter().any(|t| t.error.as_deref() == Some("WRONGTYPE")), "{how}");
        assert!(records.iter().any(|t| t.operation == "EXEC"), "{how}");
        let ops: Vec<_> = records.iter().map(|t| t.operation.as_str()).collect();
        assert_eq!(ops, ["LPUSH", "SELECT", "MULTI", "INCR", "EXEC"], "{how}");
        assert_eq!(tally.len(), 8, "{how}: {tally:?}");
        let mut got: Vec<Row> = records.iter().map(row).collect();
        for (run, durations) in tally.runs() {
            assert_eq!(run.protocol, Protocol::Redis);
            for &(d, k) in durations {
                for _ in 0..k {
                    got.push((run.operation.to_string(), run.resource.to_string(), d, None, true));
                }
            }
        }
        assert_eq!(sorted(got), want, "{how}");
    }
    // A tally that is off (a sink reads records) is never counted into.
    let mut off = Tally::default();
    let records = kit::run_tallied(
        &mut RedisParser::default(),
        &conv,
        0,
        kit::whole,
        Some(&mut off),
    );
    assert!(off.is_empty());
    assert_eq!(sorted(records.iter().map(row).collect()), want);
    // A gap in the replies: what follows it is read by the parser, not counted plainly.
    let mut tally = Tally::new(true);
    let records = kit::run_tallied(&mut RedisParser::default(), &conv, 0, kit::gap(7, 0..4), Some(&mut tally));
    assert!(records.iter().any(|t| !t.completeness.is_complete()));
    assert!(tally.runs().all(|(r, _)| r.shape != 0));
}

/// A connection alternating two commands keeps two tally shapes, and a key without a
/// prefix is counted as well (by its command alone).
#[test]
fn alternating_commands_keep_their_two_shapes() {
    let mut conv = Vec::new();
    for i in 0..6 {
        conv.push(c(&["GET", &format!("user:{i}")]));
        conv.push(s("$-1\r\n"));
        conv.push(c(&["SET", &format!("user:{i}"), "v"]));
        conv.push(s("+OK\r\n"));
    }
    conv.push(c(&["GET", "plainkey"]));
    conv.push(s("$-1\r\n"));
    let mut tally = Tally::new(true);
    let records = kit::run_tallied(
        &mut RedisParser::default(),
        &conv,
        0,
        kit::whole,
        Some(&mut tally),
    );
    assert!(records.is_empty(), "{records:?}");
    let runs: Vec<_> = tally
        .runs()
        .map(|(r, d)| (r.shape, r.operation.to_string(), r.resource.to_string(), d.len()))
        .collect();
    assert_eq!(runs.len(), 13);
    let (get, set) = (runs[0].0, runs[1].0);
    assert_ne!(get, set);
    for (i, r) in runs[..12].iter().enumerate() {
        let want = if i % 2 == 0 { (get, "GET") } else { (set, "SET") };
        assert_eq!((r.0, r.1.as_str(), r.2.as_str(), r.3), (want.0, want.1, "user", 1));
    }
    assert_eq!((runs[12].1.as_str(), runs[12].2.as_str()), ("GET", ""));
    assert!(runs[12].0 != get && runs[12].0 != set);
}
