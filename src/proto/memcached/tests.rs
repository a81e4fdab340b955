use super::parser::{UDP_HEADER_LEN, opcode_quiet};
use super::*;
use crate::proto::AttrValue;
use crate::proto::Direction::{ToClient, ToServer};

/// Feeding any decoder a conversation in the ways the network delivers it: whole, one
/// byte at a time, split at every byte, with a gap in either direction, and picked up in
/// the middle. (Written for this decoder; shaped to move to `proto/testkit.rs`.)
pub(crate) mod kit {
    use crate::proto::{Direction, L7Parser, Transaction};
    use crate::time::Timestamp;

    /// What the flow layer hands a decoder.
    #[derive(Clone, Debug)]
    pub(crate) enum Item {
        Data(Direction, Vec<u8>),
        Gap(Direction, u32),
    }

    pub(crate) type Conversation = Vec<(Direction, Vec<u8>)>;

    /// Feed `items` (one timestamp step each), then close the connection.
    pub(crate) fn run<P: L7Parser>(p: &mut P, items: &[Item]) -> Vec<Transaction> {
        let mut out = Vec::new();
        let mut ts = Timestamp(1_000_000_000);
        for it in items {
            ts = Timestamp(ts.0 + 1_000);
            match it {
                Item::Data(d, b) => {
                    p.on_data(*d, b, ts, &mut out);
                }
                Item::Gap(d, n) => p.on_gap(*d, *n),
            }
        }
        p.on_close(Timestamp(ts.0 + 1_000), false, &mut out);
        out
    }

    pub(crate) fn whole(c: &Conversation) -> Vec<Item> {
        c.iter().map(|(d, b)| Item::Data(*d, b.clone())).collect()
    }

    pub(crate) fn bytewise(c: &Conversation) -> Vec<Item> {
        c.iter()
            .flat_map(|(d, b)| b.iter().map(|&x| Item::Data(*d, vec![x])))
            .collect()
    }

    /// Message `m` delivered in two chunks, cut at `at`.
    pub(crate) fn split(c: &Conversation, m: usize, at: usize) -> Vec<Item> {
        let mut v = Vec::new();
        for (i, (d, b)) in c.iter().enumerate() {
            if i == m && at > 0 && at < b.len() {
                v.push(Item::Data(*d, b[..at].to_vec()));
                v.push(Item::Data(*d, b[at..].to_vec()));
            } else {
                v.push(Item::Data(*d, b.clone()));
            }
        }
        v
    }

    /// Bytes `from..to` of message `m` lost (a gap in its direction).
    pub(crate) fn gap(c: &Conversation, m: usize, from: usize, to: usize) -> Vec<Item> {
        let mut v = Vec::new();
        for (i, (d, b)) in c.iter().enumerate() {
            if i != m {
                v.push(Item::Data(*d, b.clone()));
                continue;
            }
            if from > 0 {
                v.push(Item::Data(*d, b[..from].to_vec()));
            }
            v.push(Item::Gap(*d, (to - from) as u32));
            if to < b.len() {
                v.push(Item::Data(*d, b[to..].to_vec()));
            }
        }
        v
    }

    /// The capture starts at byte `off` of message `m`.
    pub(crate) fn from(c: &Conversation, m: usize, off: usize) -> Vec<Item> {
        let mut v = Vec::new();
        for (i, (d, b)) in c.iter().enumerate().skip(m) {
            let b = if i == m {
                &b[off.min(b.len())..]
            } else {
                &b[..]
            };
            if !b.is_empty() {
                v.push(Item::Data(*d, b.to_vec()));
            }
        }
        v
    }
}

use kit::{Conversation, Item};

/// One transaction in a line: operation, status, error, hits/misses, completeness.
fn summary(t: &Transaction) -> String {
    let int = |k: &str| match t.attr(k) {
        Some(AttrValue::Int(v)) => v.to_string(),
        _ => "-".into(),
    };
    let code = match t.attr("db.response.status_code") {
        Some(AttrValue::Str(s)) => s.to_string(),
        _ => "-".into(),
    };
    let reasons: Vec<_> = t.completeness.reasons().collect();
    let mut s = format!(
        "{} {} h{} m{}",
        t.operation,
        code,
        int("podtap.memcached.hits"),
        int("podtap.memcached.misses")
    );
    if let Some(e) = &t.error {
        s.push_str(&format!(" error={e}"));
    }
    if t.attr("podtap.memcached.noreply").is_some() {
        s.push_str(" noreply");
    }
    if !reasons.is_empty() {
        s.push_str(&format!(" [{}]", reasons.join(",")));
    }
    s
}

fn summaries(txs: &[Transaction]) -> Vec<String> {
    txs.iter().map(summary).collect()
}

fn ends_with(got: &[String], want: &[&str]) -> bool {
    got.len() >= want.len()
        && got[got.len() - want.len()..]
            .iter()
            .zip(want)
            .all(|(g, w)| g == w)
}

fn tcp() -> MemcachedParser {
    MemcachedParser::tcp()
}

fn conv(msgs: &[(Direction, &[u8])]) -> Conversation {
    msgs.iter().map(|(d, b)| (*d, b.to_vec())).collect()
}

/// Feed the conversation every way the kit knows; all must give `want`.
fn check_all_feeds(c: &Conversation, want: &[&str]) {
    let whole = summaries(&kit::run(&mut tcp(), &kit::whole(c)));
    assert_eq!(whole, want, "whole messages");
    let bytes = summaries(&kit::run(&mut tcp(), &kit::bytewise(c)));
    assert_eq!(bytes, want, "one byte at a time");
    for (m, (_, b)) in c.iter().enumerate() {
        for at in 1..b.len() {
            let got = summaries(&kit::run(&mut tcp(), &kit::split(c, m, at)));
            assert_eq!(got, want, "message {m} split at {at}");
        }
    }
}

/// Resynchronising, only a line naming a known command is taken for a request: an
/// unknown one right after a gap is skipped, and memcached's ERROR for it is reported on
/// its own (`no_request`). Exchange `first`, the first expected exact, is forgiven that.
fn forgive_unknown(got: &mut [String], want: &[&str], first: usize) {
    let after = want.len().saturating_sub(first);
    if after == 0 || !want[first].starts_with("unknown") || got.len() < after {
        return;
    }
    let i = got.len() - after;
    got[i] = got[i]
        .replace(" [gap,no_request]", "")
        .replace(" [no_request]", "");
}

/// Exchanges are request/reply pairs fed in turn; `want[k]` is exchange k's transaction.
/// A whole message lost in either direction costs only its exchange (reported
/// incomplete, or its reply on its own), and every later exchange pairs exactly; a
/// capture picked up at any exchange, or in the middle of one, pairs every later one.
fn check_gaps_and_midstream(c: &Conversation, want: &[&str]) {
    assert_eq!(c.len(), 2 * want.len());
    for m in 0..c.len() {
        let len = c[m].1.len();
        let mut got = summaries(&kit::run(&mut tcp(), &kit::gap(c, m, 0, len)));
        let k = m / 2;
        forgive_unknown(&mut got, want, k + 1);
        assert_eq!(
            &got[..k],
            &want[..k],
            "before a gap in message {m}: {got:?}"
        );
        assert_eq!(
            &got[got.len() - (want.len() - k - 1)..],
            &want[k + 1..],
            "after a gap in message {m}: {got:?}"
        );
        let lost = &got[k..got.len() - (want.len() - k - 1)];
        assert_eq!(lost.len(), 1, "message {m} lost: {got:?}");
        assert!(
            lost[0].contains("no_response") || lost[0].contains("no_request"),
            "message {m} lost: {lost:?}"
        );
        // Part of a message lost: its exchange may be damaged, later ones are exact.
        for (from, to) in [(1, len), (0, len / 2), (len / 2, len)] {
            if from >= to {
                continue;
            }
            let mut got = summaries(&kit::run(&mut tcp(), &kit::gap(c, m, from, to)));
            forgive_unknown(&mut got, want, k + 1);
            let after = &want[k + 1..];
            assert!(
                ends_with(&got, after),
                "bytes {from}..{to} of message {m} lost: {got:?}"
            );
        }
    }
    for m in 0..c.len() {
        for off in [0, 1, c[m].1.len() / 2] {
            let mut got = summaries(&kit::run(&mut tcp(), &kit::from(c, m, off)));
            let first = m.div_ceil(2) + (off > 0 && m % 2 == 0) as usize;
            forgive_unknown(&mut got, want, first);
            let after = &want[first..];
            assert!(
                ends_with(&got, after),
                "picked up at byte {off} of message {m}: {got:?}"
            );
        }
    }
}

fn text_conversation() -> (Conversation, Vec<&'static str>) {
    let c = conv(&[
        (ToServer, b"set test_key 0 0 5\r\nhello\r\n"),
        (ToClient, b"STORED\r\n"),
        (ToServer, b"get test_key\r\n"),
        (ToClient, b"VALUE test_key 0 5\r\nhello\r\nEND\r\n"),
        (ToServer, b"get x k1 k2 y\r\n"),
        (
            ToClient,
            b"VALUE k1 0 1\r\na\r\nVALUE k2 7 2 1234\r\nbb\r\nEND\r\n",
        ),
        (ToServer, b"delete key\r\n"),
        (ToClient, b"NOT_FOUND\r\n"),
        (ToServer, b"incr cnt 2\r\n"),
        (ToClient, b"7\r\n"),
        (ToServer, b"touch a 10\r\n"),
        (ToClient, b"TOUCHED\r\n"),
        (ToServer, b"gat 10 a b\r\n"),
        (ToClient, b"VALUE a 0 1\r\nx\r\nEND\r\n"),
        (ToServer, b"cas a 0 0 1 99\r\ny\r\n"),
        (ToClient, b"EXISTS\r\n"),
        (ToServer, b"stats\r\n"),
        (ToClient, b"STAT pid 1\r\nSTAT uptime 2\r\nEND\r\n"),
        (ToServer, b"version\r\n"),
        (ToClient, b"VERSION 1.6.18\r\n"),
        (ToServer, b"bogus\r\n"),
        (ToClient, b"ERROR\r\n"),
        (ToServer, b"incr a 1\r\n"),
        (
            ToClient,
            b"CLIENT_ERROR cannot increment or decrement non-numeric value\r\n",
        ),
        (ToServer, b"set big 0 0 3\r\nabc\r\n"),
        (ToClient, b"SERVER_ERROR out of memory storing object\r\n"),
        (ToServer, b"flush_all\r\n"),
        (ToClient, b"OK\r\n"),
        (ToServer, b"add test_key 0 0 1\r\nz\r\n"),
        (ToClient, b"NOT_STORED\r\n"),
    ]);
    let want = vec![
        "set - h- m-",
        "get - h1 m0",
        "get - h2 m2",
        "delete NOT_FOUND h0 m1",
        "incr - h1 m0",
        "touch - h1 m0",
        "gat - h1 m1",
        "cas EXISTS h1 m0",
        "stats - h- m-",
        "version - h- m-",
        "unknown ERROR h- m- error=ERROR",
        "incr CLIENT_ERROR h0 m0 error=CLIENT_ERROR",
        "set SERVER_ERROR h- m- error=SERVER_ERROR",
        "flush_all - h- m-",
        "add NOT_STORED h- m-",
    ];
    (c, want)
}

#[test]
fn text_commands_pair_in_order_with_hits_and_misses() {
    let (c, want) = text_conversation();
    check_all_feeds(&c, &want);
}

#[test]
fn text_gaps_and_midstream_starts_cost_only_their_exchange() {
    let (c, want) = text_conversation();
    check_gaps_and_midstream(&c, &want);
}

#[test]
fn text_attributes_sizes_and_counters() {
    let (c, _) = text_conversation();
    let mut p = tcp();
    let txs = kit::run(&mut p, &kit::whole(&c));
    let get = &txs[2];
    assert_eq!(get.protocol, Protocol::Memcached);
    assert_eq!(get.operation, "get");
    assert_eq!(get.resource, "", "keys are redacted by default");
    assert_eq!(
        get.attr("db.system.name"),
        Some(&AttrValue::Str("memcached".into()))
    );
    assert_eq!(
        get.attr("db.operation.name"),
        Some(&AttrValue::Str("get".into()))
    );
    assert_eq!(
        get.attr("db.query.summary"),
        Some(&AttrValue::Str("get".into()))
    );
    assert_eq!(
        get.attr("podtap.memcached.protocol"),
        Some(&AttrValue::Str("text".into()))
    );
    assert_eq!(get.attr("podtap.memcached.keys"), Some(&AttrValue::Int(4)));
    assert_eq!(get.req_bytes, b"get x k1 k2 y\r\n".len() as u64);
    assert_eq!(
        get.resp_bytes,
        b"VALUE k1 0 1\r\na\r\nVALUE k2 7 2 1234\r\nbb\r\nEND\r\n".len() as u64
    );
    assert_eq!(txs[0].req_bytes, 27);
    assert!(txs.iter().all(|t| t.end >= t.start));
    // No key anywhere.
    for t in &txs {
        for (k, v) in &t.attrs {
            if let AttrValue::Str(s) = v {
                assert!(
                    !s.contains("key") && !s.contains("k1"),
                    "{k} = {s} leaks a key"
                );
            }
        }
    }
    let st = p.take_stats();
    // get test_key (1 hit), get x k1 k2 y (2 hits, 2 misses); gat counts as a touch.
    assert_eq!((st.get_hits, st.get_misses), (3, 2));
    assert_eq!((st.malformed, st.no_request, st.line_too_long), (0, 0, 0));
    let mut c = crate::events::Counters::default();
    let at = crate::events::decoder_event_offset(crate::proto::DecoderKind::Memcached as usize);
    st.add_to(&mut DecoderCounters::new(&mut c, at));
    assert_eq!(c.get(Ev::of(MemcachedEvent::GetHits)), 3);
    assert_eq!(c.get(Ev::of(MemcachedEvent::GetMisses)), 2);
    assert_eq!(Ev::of(MemcachedEvent::GetHits).name(), "memcached.get_hits");
}

#[test]
fn unredacted_keys_give_the_prefix_as_resource_and_summary() {
    let cfg = MemcachedConfig {
        redact: false,
        ..MemcachedConfig::default()
    };
    let mut p = MemcachedParser::new(Transport::Tcp, &cfg);
    let c = conv(&[
        (ToServer, b"get user:42:profile other\r\n"),
        (ToClient, b"END\r\n"),
        (ToServer, b"gat 10 session:abc\r\n"),
        (ToClient, b"END\r\n"),
        // Meta key in base64 (`b` flag): "cart:7".
        (ToServer, b"mg Y2FydDo3 b v\r\n"),
        (ToClient, b"EN\r\n"),
        (ToServer, b"set nodelim 0 0 1\r\nx\r\n"),
        (ToClient, b"STORED\r\n"),
    ]);
    let txs = kit::run(&mut p, &kit::bytewise(&c));
    let got: Vec<_> = txs
        .iter()
        .map(|t| {
            let Some(AttrValue::Str(s)) = t.attr("db.query.summary") else {
                panic!("summary")
            };
            (t.resource.to_string(), s.to_string())
        })
        .collect();
    assert_eq!(
        got,
        [
            ("user".into(), "get user".into()),
            ("session".into(), "gat session".into()),
            ("cart".into(), "mg cart".into()),
            ("nodelim".into(), "set nodelim".into()),
        ]
    );
}

#[test]
fn noreply_commands_are_reported_at_once_and_do_not_shift_pairs() {
    let c = conv(&[
        (
            ToServer,
            b"set a 0 0 1 noreply\r\nx\r\nincr a 1 noreply\r\ndelete b noreply\r\nget a\r\n",
        ),
        (ToClient, b"VALUE a 0 1\r\n2\r\nEND\r\n"),
        (
            ToServer,
            b"touch a 5 noreply\r\nflush_all 0 noreply\r\nversion\r\n",
        ),
        (ToClient, b"VERSION 1.6.18\r\n"),
        (ToServer, b"quit\r\n"),
    ]);
    check_all_feeds(
        &c,
        &[
            "set - h- m- noreply",
            "incr - h- m- noreply",
            "delete - h- m- noreply",
            "get - h1 m0",
            "touch - h- m- noreply",
            "flush_all - h- m- noreply",
            "version - h- m-",
            "quit - h- m- noreply",
        ],
    );
}

#[test]
fn pipelined_text_commands_pair_in_order() {
    let c = conv(&[
        (
            ToServer,
            b"get a\r\nget b c\r\nset d 0 0 2\r\nxy\r\ndelete a\r\nstats slabs\r\n",
        ),
        (
            ToClient,
            b"VALUE a 0 1\r\n1\r\nEND\r\nVALUE c 0 1\r\n3\r\nEND\r\nSTORED\r\nDELETED\r\nSTAT 1:chunk_size 96\r\nSTAT active_slabs 1\r\nEND\r\n",
        ),
    ]);
    check_all_feeds(
        &c,
        &[
            "get - h1 m0",
            "get - h1 m1",
            "set - h- m-",
            "delete - h1 m0",
            "stats - h- m-",
        ],
    );
}

fn meta_conversation() -> Conversation {
    conv(&[
        (ToServer, b"ms foo 3 T0 O1\r\nbar\r\n"),
        (ToClient, b"HD O1\r\n"),
        (ToServer, b"mg foo v O2\r\n"),
        (ToClient, b"VA 3 O2\r\nbar\r\n"),
        (
            ToServer,
            b"mg a q v O3\r\nmg foo q v O4\r\nmd nope q O5\r\nms x 1 q\r\ny\r\nma n q\r\nmn\r\n",
        ),
        (ToClient, b"VA 3 O4\r\nbar\r\nNF O5\r\nMN\r\n"),
        // Without opaques: the NF is md's, not the quiet ms's before it.
        (ToServer, b"ms y 1 q\r\nz\r\nmd nope q\r\nmn\r\n"),
        (ToClient, b"NF\r\nMN\r\n"),
        (ToServer, b"mg a\r\nmd foo\r\nma nope\r\nme foo\r\nmn\r\n"),
        (
            ToClient,
            b"EN\r\nHD\r\nNF\r\nME foo exp=-1 la=2 cas=3 fetch=yes cls=1 size=63\r\nMN\r\n",
        ),
        (ToServer, b"mg " as &[u8]),
    ])
}

#[test]
fn meta_commands_quiet_mode_and_opaque_tokens() {
    let mut c = meta_conversation();
    c.pop();
    check_all_feeds(
        &c,
        &[
            "ms - h- m-",
            "mg - h1 m0",
            // mg a q: no reply before O4's: a quiet miss.
            "mg - h0 m1 noreply",
            "mg - h1 m0 noreply",
            "md NF h0 m1 noreply",
            // ms x q and ma n q: passed over in silence, settled by MN as successes.
            "ms - h- m- noreply",
            "ma - h1 m0 noreply",
            "mn - h- m-",
            "ms - h- m- noreply",
            "md NF h0 m1 noreply",
            "mn - h- m-",
            "mg EN h0 m1",
            "md - h1 m0",
            "ma NF h0 m1",
            "me - h- m-",
            "mn - h- m-",
        ],
    );
    let txs = kit::run(&mut tcp(), &kit::whole(&c));
    assert!(
        txs.iter()
            .all(|t| t.attr("podtap.memcached.protocol") == Some(&AttrValue::Str("meta".into())))
    );
}

#[test]
fn meta_replies_matched_by_opaque_out_of_order_position() {
    // O tokens tie each reply to its command even when a quiet command's reply (the hit
    // of O7) comes before the reply of an earlier non-quiet one is lost in a gap.
    let c = conv(&[
        (ToServer, b"mg k1 v O6\r\nmg k2 v q O7\r\nmn\r\n"),
        (ToClient, b"VA 1 O6\r\na\r\nVA 1 O7\r\nb\r\nMN\r\n"),
    ]);
    let mut items = kit::whole(&c);
    // The first reply is lost whole.
    items[1] = Item::Gap(ToClient, 13);
    items.push(Item::Data(ToClient, b"VA 1 O7\r\nb\r\nMN\r\n".to_vec()));
    let got = summaries(&kit::run(&mut tcp(), &items));
    assert_eq!(
        got,
        [
            "mg - h- m- [gap,no_response]",
            "mg - h1 m0 noreply",
            "mn - h- m-"
        ]
    );
}

/// A binary request (magic 0x80).
fn breq(op: u8, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    bin(REQUEST_MAGIC, op, 0, key, extras, value, opaque)
}

/// A binary response (magic 0x81).
fn bresp(op: u8, status: u16, key: &[u8], extras: &[u8], value: &[u8], opaque: u32) -> Vec<u8> {
    bin(RESPONSE_MAGIC, op, status, key, extras, value, opaque)
}

fn bin(
    magic: u8,
    op: u8,
    status: u16,
    key: &[u8],
    extras: &[u8],
    value: &[u8],
    opaque: u32,
) -> Vec<u8> {
    let body = extras.len() + key.len() + value.len();
    let mut v = vec![magic, op];
    v.extend_from_slice(&(key.len() as u16).to_be_bytes());
    v.push(extras.len() as u8);
    v.push(0);
    v.extend_from_slice(&status.to_be_bytes());
    v.extend_from_slice(&(body as u32).to_be_bytes());
    v.extend_from_slice(&opaque.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(extras);
    v.extend_from_slice(key);
    v.extend_from_slice(value);
    v
}

fn cat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

const SET_EXTRAS: [u8; 8] = [0; 8];
const INCR_EXTRAS: [u8; 20] = [0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

fn binary_conversation() -> (Conversation, Vec<&'static str>) {
    let c = vec![
        (ToServer, breq(0x01, b"k1", &SET_EXTRAS, b"abc", 1)),
        (ToClient, bresp(0x01, 0, b"", b"", b"", 1)),
        (
            ToServer,
            cat(&[
                breq(0x0d, b"x", b"", b"", 2),
                breq(0x0d, b"k1", b"", b"", 3),
                breq(0x0d, b"y", b"", b"", 4),
                breq(0x0a, b"", b"", b"", 5),
            ]),
        ),
        (
            ToClient,
            cat(&[
                bresp(0x0d, 0, b"k1", &[0, 0, 0, 0], b"abc", 3),
                bresp(0x0a, 0, b"", b"", b"", 5),
            ]),
        ),
        (ToServer, breq(0x00, b"nope", b"", b"", 6)),
        (ToClient, bresp(0x00, 1, b"", b"", b"Not found", 6)),
        (ToServer, breq(0x05, b"k1", &INCR_EXTRAS, b"", 7)),
        (
            ToClient,
            bresp(
                0x05,
                6,
                b"",
                b"",
                b"Non-numeric server-side value for incr or decr",
                7,
            ),
        ),
        (ToServer, breq(0x10, b"", b"", b"", 8)),
        (
            ToClient,
            cat(&[
                bresp(0x10, 0, b"pid", b"", b"1", 8),
                bresp(0x10, 0, b"uptime", b"", b"20", 8),
                bresp(0x10, 0, b"", b"", b"", 8),
            ]),
        ),
        (
            ToServer,
            cat(&[
                breq(0x12, b"k1", &SET_EXTRAS, b"z", 9),
                breq(0x11, b"k2", &SET_EXTRAS, b"z", 10),
                breq(0x14, b"k2", b"", b"", 11),
                breq(0x0a, b"", b"", b"", 12),
            ]),
        ),
        (
            ToClient,
            cat(&[
                bresp(0x12, 2, b"", b"", b"Data exists for key.", 9),
                bresp(0x0a, 0, b"", b"", b"", 12),
            ]),
        ),
        (ToServer, breq(0x07, b"", b"", b"", 13)),
        (ToClient, bresp(0x07, 0, b"", b"", b"", 13)),
    ];
    let want = vec![
        "SET - h- m-",
        "GETKQ - h0 m1 noreply",
        "GETKQ - h1 m0 noreply",
        "GETKQ - h0 m1 noreply",
        "NOOP - h- m-",
        "GET KEY_ENOENT h0 m1",
        "INCREMENT DELTA_BADVAL h0 m0 error=DELTA_BADVAL",
        "STAT - h- m-",
        "ADDQ KEY_EEXISTS h- m- noreply",
        "SETQ - h- m- noreply",
        "DELETEQ - h1 m0 noreply",
        "NOOP - h- m-",
        "QUIT - h- m-",
    ];
    (c, want)
}

#[test]
fn binary_commands_pair_by_opaque_and_settle_quiet_ones() {
    let (c, want) = binary_conversation();
    check_all_feeds(&c, &want);
    let mut p = tcp();
    let txs = kit::run(&mut p, &kit::whole(&c));
    assert_eq!(txs[5].status, Some(1), "binary status kept");
    assert_eq!(txs[5].error, None, "a miss is not an error");
    assert_eq!(txs[6].status, Some(6));
    assert_eq!(txs[7].resp_bytes, 3 * 24 + 4 + 8);
    assert!(
        txs.iter()
            .all(|t| t.attr("podtap.memcached.protocol") == Some(&AttrValue::Str("binary".into())))
    );
    let st = p.take_stats();
    assert_eq!((st.get_hits, st.get_misses), (1, 3));
}

#[test]
fn binary_with_the_same_opaque_everywhere_pairs_in_order() {
    // Some clients leave the opaque at 0: the opcode still tells replies apart.
    let c = vec![
        (
            ToServer,
            cat(&[
                breq(0x09, b"a", b"", b"", 0),
                breq(0x09, b"b", b"", b"", 0),
                breq(0x00, b"c", b"", b"", 0),
            ]),
        ),
        (
            ToClient,
            cat(&[
                bresp(0x09, 0, b"", &[0; 4], b"B", 0),
                bresp(0x00, 1, b"", b"", b"", 0),
            ]),
        ),
    ];
    // GETQ a and b: the first GETQ reply is taken by the first GETQ (the opcode matches,
    // the opaque cannot tell): a hit for a; b settled as a miss by GET's reply.
    check_all_feeds(
        &c,
        &[
            "GETQ - h1 m0 noreply",
            "GETQ - h0 m1 noreply",
            "GET KEY_ENOENT h0 m1",
        ],
    );
}

#[test]
fn binary_gaps_and_midstream_starts_cost_only_their_exchange() {
    let c = vec![
        (ToServer, breq(0x01, b"k1", &SET_EXTRAS, b"abc", 1)),
        (ToClient, bresp(0x01, 0, b"", b"", b"", 1)),
        (ToServer, breq(0x00, b"k1", b"", b"", 2)),
        (ToClient, bresp(0x00, 0, b"", &[0; 4], b"abc", 2)),
        (ToServer, breq(0x04, b"k1", b"", b"", 3)),
        (ToClient, bresp(0x04, 0, b"", b"", b"", 3)),
        (ToServer, breq(0x0b, b"", b"", b"", 4)),
        (ToClient, bresp(0x0b, 0, b"", b"", b"1.6.18", 4)),
    ];
    let want = [
        "SET - h- m-",
        "GET - h1 m0",
        "DELETE - h1 m0",
        "VERSION - h- m-",
    ];
    check_all_feeds(&c, &want);
    check_gaps_and_midstream(&c, &want);
}

#[test]
fn meta_gaps_and_midstream_starts_cost_only_their_exchange() {
    let c = conv(&[
        (ToServer, b"ms foo 3 T0\r\nbar\r\n"),
        (ToClient, b"HD\r\n"),
        (ToServer, b"mg foo v\r\n"),
        (ToClient, b"VA 3\r\nbar\r\n"),
        (ToServer, b"md foo\r\n"),
        (ToClient, b"HD\r\n"),
        (ToServer, b"mn\r\n"),
        (ToClient, b"MN\r\n"),
    ]);
    let want = ["ms - h- m-", "mg - h1 m0", "md - h1 m0", "mn - h- m-"];
    check_all_feeds(&c, &want);
    check_gaps_and_midstream(&c, &want);
}

#[test]
fn a_gap_inside_a_value_costs_only_that_value() {
    let c = conv(&[
        (ToServer, b"set a 0 0 10\r\n0123456789\r\nget a b\r\n"),
        (ToClient, b"STORED\r\nVALUE a 0 10\r\n0123456789\r\nEND\r\n"),
        (ToServer, b"get b\r\n"),
        (ToClient, b"END\r\n"),
    ]);
    // Three bytes of each value lost.
    let mut items = kit::gap(&c, 0, 16, 19);
    let items2 = kit::gap(&c, 1, 24, 27);
    items.splice(3..4, items2[1..4].iter().cloned());
    let got = summaries(&kit::run(&mut tcp(), &items));
    assert_eq!(
        got,
        ["set - h- m- [gap]", "get - h1 m1 [gap]", "get - h0 m1"],
        "{items:?}"
    );
}

#[test]
fn lost_replies_of_a_client_that_does_not_pipeline_are_reported_not_shifted() {
    // Two exchanges whose replies are lost in one gap, then a third answered.
    let c = conv(&[
        (ToServer, b"set a 0 0 1\r\nx\r\n"),
        (ToClient, b"STORED\r\n"),
        (ToServer, b"set b 0 0 1\r\ny\r\n"),
        (ToClient, b"STORED\r\n"),
        (ToServer, b"get a\r\n"),
        (ToClient, b"VALUE a 0 1\r\nx\r\nEND\r\n"),
    ]);
    let items = vec![
        Item::Data(ToServer, c[0].1.clone()),
        Item::Gap(ToClient, 8),
        Item::Data(ToServer, c[2].1.clone()),
        Item::Gap(ToClient, 8),
        Item::Data(ToServer, c[4].1.clone()),
        Item::Data(ToClient, c[5].1.clone()),
    ];
    let got = summaries(&kit::run(&mut tcp(), &items));
    assert_eq!(
        got,
        [
            "set - h- m- [gap,no_response]",
            "set - h- m- [gap,no_response]",
            "get - h1 m0"
        ]
    );
}

#[test]
fn udp_text_and_binary_pair_by_request_id() {
    let hdr = |id: u16, seq: u16, total: u16| {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(&seq.to_be_bytes());
        v.extend_from_slice(&total.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v
    };
    let dg = |h: Vec<u8>, p: &[u8]| cat(&[h, p.to_vec()]);
    let mut p = MemcachedParser::udp();
    let mut out = Vec::new();
    let t = |n: u64| Timestamp(1_000_000 * n);
    // Two gets in flight; memcached answers a text get with one datagram per part.
    p.on_data(
        ToServer,
        &dg(hdr(5, 0, 1), b"get a nope\r\n"),
        t(1),
        &mut out,
    );
    p.on_data(ToServer, &dg(hdr(6, 0, 1), b"get big\r\n"), t(2), &mut out);
    p.on_data(
        ToClient,
        &dg(hdr(5, 0, 1), b"VALUE a 0 1\r\nx\r\n"),
        t(3),
        &mut out,
    );
    // A 30-byte value over three datagrams, interleaved with request 5's END.
    let big = b"VALUE big 0 30\r\n012345678901234567890123456789\r\nEND\r\n";
    p.on_data(ToClient, &dg(hdr(6, 0, 3), &big[..20]), t(4), &mut out);
    p.on_data(ToClient, &dg(hdr(6, 1, 3), &big[20..40]), t(5), &mut out);
    p.on_data(ToClient, &dg(hdr(6, 2, 3), &big[40..]), t(6), &mut out);
    p.on_data(ToClient, &dg(hdr(5, 0, 1), b"END\r\n"), t(7), &mut out);
    // Quiet binary sets never answered; a noreply text set.
    p.on_data(
        ToServer,
        &dg(hdr(7, 0, 1), &breq(0x11, b"k", &SET_EXTRAS, b"v", 0)),
        t(8),
        &mut out,
    );
    p.on_data(
        ToServer,
        &dg(hdr(8, 0, 1), b"set k3 0 0 2 noreply\r\nab\r\n"),
        t(9),
        &mut out,
    );
    // memcached acknowledges a quiet binary command over UDP with a bare frame header.
    p.on_data(
        ToServer,
        &dg(hdr(11, 0, 1), &breq(0x11, b"q", &SET_EXTRAS, b"v", 0)),
        t(9),
        &mut out,
    );
    p.on_data(ToClient, &hdr(11, 0, 0), t(9), &mut out);
    // A reply whose middle datagram is lost.
    p.on_data(ToServer, &dg(hdr(9, 0, 1), b"get big\r\n"), t(10), &mut out);
    p.on_data(ToClient, &dg(hdr(9, 0, 3), &big[..20]), t(11), &mut out);
    p.on_data(ToClient, &dg(hdr(9, 2, 3), &big[40..]), t(12), &mut out);
    // A binary get over UDP.
    p.on_data(
        ToServer,
        &dg(hdr(10, 0, 1), &breq(0x0c, b"a", b"", b"", 99)),
        t(13),
        &mut out,
    );
    p.on_data(
        ToClient,
        &dg(hdr(10, 0, 1), &bresp(0x0c, 0, b"a", &[0; 4], b"x", 99)),
        t(14),
        &mut out,
    );
    p.on_close(t(20), false, &mut out);
    assert_eq!(
        summaries(&out),
        [
            "get - h1 m0",
            "get - h1 m1",
            "set - h- m- noreply",
            "SETQ - h- m- noreply",
            "get - h0 m1 [gap]",
            "GETK - h1 m0",
            "SETQ - h- m- noreply",
        ]
    );
    assert_eq!(out[1].start, t(1));
    assert_eq!(out[1].end, t(7));
    // Bytes on the wire: the 8-byte frame header of each datagram included.
    assert_eq!(out[1].req_bytes, 8 + 12);
    assert_eq!(out[1].resp_bytes, 8 + 16 + 8 + 5);
    assert_eq!(out[3].resp_bytes, 8);
    assert_eq!(p.take_stats().malformed, 0);
}

#[test]
fn udp_corpus_captures_report_every_datagram() {
    // packetbeat's UDP captures hold only quiet or noreply requests (their reserved field
    // is not zero); packetbeat reports one transaction per request.
    use crate::proto::testkit as fixture;
    for (file, want) in [
        (
            "memcache_text_udp_single_store.pcap",
            vec!["set - h- m- noreply"],
        ),
        (
            "memcache_text_udp_multi_store.pcap",
            vec!["set - h- m- noreply"; 3],
        ),
        (
            "memcache_text_udp_delete.pcap",
            vec!["set - h- m- noreply", "delete - h- m- noreply"],
        ),
        (
            "memcache_text_udp_counter_ops.pcap",
            vec![
                "set - h- m- noreply",
                "incr - h- m- noreply",
                "decr - h- m- noreply",
            ],
        ),
        (
            "memcache_bin_udp_single_store.pcap",
            vec!["SETQ - h- m- noreply"],
        ),
        (
            "memcache_bin_udp_multi_store.pcap",
            vec!["SETQ - h- m- noreply"; 3],
        ),
        (
            "memcache_bin_udp_delete.pcap",
            vec!["SETQ - h- m- noreply", "DELETEQ - h1 m0 noreply"],
        ),
        (
            "memcache_bin_udp_counter_ops.pcap",
            vec![
                "SETQ - h- m- noreply",
                "INCREMENTQ - h1 m0 noreply",
                "DECREMENTQ - h1 m0 noreply",
            ],
        ),
    ] {
        let Some(segs) = fixture::read(&format!("packetbeat/memcache/{file}")) else {
            return;
        };
        let mut p = MemcachedParser::udp();
        let mut out = Vec::new();
        for (dir, bytes, ts) in fixture::udp(&segs, 11211) {
            assert!(probe(&bytes, dir, Transport::Udp, false) >= Confidence::Likely);
            p.on_data(dir, &bytes, ts, &mut out);
        }
        p.on_close(Timestamp(u64::MAX / 2), false, &mut out);
        assert_eq!(summaries(&out), want, "{file}");
        assert_eq!(p.take_stats(), MemcachedStats::default(), "{file}");
    }
}

#[test]
fn tcp_corpus_captures_match_packetbeat_and_deepflow() {
    use crate::proto::testkit as fixture;
    let set = "set - h- m-";
    for (file, want) in [
        // packetbeat's tests: `set, inc, dec, get, _ = objs` and the like; `quit` is a
        // transaction there too (it has no reply).
        (
            "packetbeat/memcache/memcache_text_tcp_single_load_store.pcap",
            vec![set, "get - h1 m0", "quit - h- m- noreply"],
        ),
        (
            "packetbeat/memcache/memcache_text_tcp_multi_store_load.pcap",
            vec![set, set, set, "get - h3 m2", "quit - h- m- noreply"],
        ),
        (
            "packetbeat/memcache/memcache_text_tcp_counter_ops.pcap",
            vec![
                set,
                "incr - h1 m0",
                "decr - h1 m0",
                "get - h1 m0",
                "quit - h- m- noreply",
            ],
        ),
        (
            "packetbeat/memcache/memcache_text_tcp_delete.pcap",
            vec![set, "delete - h1 m0", "get - h0 m1", "quit - h- m- noreply"],
        ),
        (
            "packetbeat/memcache/memcache_text_tcp_stats.pcap",
            vec![set, "get - h1 m0", "stats - h- m-", "quit - h- m- noreply"],
        ),
        (
            "packetbeat/memcache/memcache_bin_tcp_single_load_store.pcap",
            vec!["SET - h- m-", "GETK - h1 m0", "QUIT - h- m-"],
        ),
        (
            "packetbeat/memcache/memcache_bin_tcp_multi_store_load.pcap",
            vec![
                "SET - h- m-",
                "SET - h- m-",
                "SET - h- m-",
                "GETKQ - h0 m1 noreply",
                "GETKQ - h1 m0 noreply",
                "GETKQ - h1 m0 noreply",
                "GETKQ - h1 m0 noreply",
                "GETKQ - h0 m1 noreply",
                "NOOP - h- m-",
                "QUIT - h- m-",
            ],
        ),
        (
            "packetbeat/memcache/memcache_bin_tcp_counter_ops.pcap",
            vec![
                "SET - h- m-",
                "INCREMENT - h1 m0",
                "DECREMENT - h1 m0",
                "GETK - h1 m0",
                "QUIT - h- m-",
            ],
        ),
        (
            "packetbeat/memcache/memcache_bin_tcp_delete.pcap",
            vec![
                "SET - h- m-",
                "DELETE - h1 m0",
                "GETK KEY_ENOENT h0 m1",
                "QUIT - h- m-",
            ],
        ),
        (
            "packetbeat/memcache/memcache_bin_tcp_stats.pcap",
            vec![
                "SET - h- m-",
                "GETK - h1 m0",
                "STAT - h- m-",
                "QUIT - h- m-",
            ],
        ),
        // deepflow's test reports the set and the get (it does not decode `quit`).
        (
            "deepflow/memcached/memcached.pcap",
            vec![set, "get - h1 m0", "quit - h- m- noreply"],
        ),
    ] {
        let Some(segs) = fixture::read(file) else {
            return;
        };
        let mut items = Vec::new();
        for f in fixture::tcp(&segs, 11211) {
            items.push(match f {
                fixture::Feed::Data(d, b, _) => Item::Data(d, b),
                fixture::Feed::Gap(d, n) => Item::Gap(d, n),
            });
        }
        let mut p = tcp();
        let got = summaries(&kit::run(&mut p, &items));
        assert_eq!(got, want, "{file}");
        assert_eq!(p.take_stats().malformed, 0, "{file}");
    }
}

#[test]
fn hostile_lengths_are_counted_and_never_skipped_or_allocated() {
    let mut p = tcp();
    let mut out = Vec::new();
    let ts = Timestamp(1);
    // A length past memcached's own limit: the line is refused (no data block), as
    // memcached refuses it; the next line is a command again.
    p.on_data(ToServer, b"set a 0 0 4294967295\r\nget a\r\n", ts, &mut out);
    // A length memcached would read but past `max_value_bytes`: counted, not skipped.
    p.on_data(ToServer, b"set b 0 0 2000000000\r\nget b\r\n", ts, &mut out);
    p.on_data(
        ToClient,
        b"CLIENT_ERROR bad command line format\r\nEND\r\nSERVER_ERROR object too large for cache\r\nEND\r\n",
        ts,
        &mut out,
    );
    // A reply announcing 2^40 bytes: counted; the stream resynchronises at `END`.
    p.on_data(ToServer, b"get c\r\nget d\r\n", ts, &mut out);
    p.on_data(
        ToClient,
        b"VALUE c 0 1099511627776\r\nxyz\r\nEND\r\nEND\r\n",
        ts,
        &mut out,
    );
    // A binary header announcing 4 GiB.
    let mut huge = breq(0x01, b"k", &SET_EXTRAS, b"", 1);
    huge[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
    p.on_data(ToServer, &huge, ts, &mut out);
    p.on_close(Timestamp(2), false, &mut out);
    assert_eq!(
        summaries(&out),
        [
            "set CLIENT_ERROR h- m- error=CLIENT_ERROR",
            "get - h0 m1",
            "set SERVER_ERROR h- m- error=SERVER_ERROR [truncated]",
            "get - h0 m1",
            "get - h1 m0 [truncated]",
            "get - h0 m1",
            "SET - h- m- [no_response,closed,truncated]",
        ]
    );
    let st = p.take_stats();
    assert_eq!(st.value_too_large, 3);
}

#[test]
fn endless_lines_and_garbage_are_counted_in_linear_time_and_bounded_memory() {
    let mut p = tcp();
    let mut out = Vec::new();
    let ts = Timestamp(1);
    p.on_data(ToServer, b"version\r\n", ts, &mut out);
    p.on_data(ToClient, b"VERSION 1.6.18\r\n", ts, &mut out);
    // 16 MiB of a line that never ends, in 64 KiB chunks.
    let chunk = vec![b'x'; 64 * 1024];
    p.on_data(ToServer, b"set ", ts, &mut out);
    p.on_data(ToClient, b"STAT ", ts, &mut out);
    for _ in 0..256 {
        p.on_data(ToServer, &chunk, ts, &mut out);
        p.on_data(ToClient, &chunk, ts, &mut out);
    }
    p.on_data(ToServer, b"\r\nget a\r\n", ts, &mut out);
    p.on_data(ToClient, b"\r\nEND\r\n", ts, &mut out);
    assert_eq!(summaries(&out), ["version - h- m-", "get - h0 m1"]);
    let st = p.take_stats();
    assert_eq!(st.line_too_long, 2, "one long line each way");
    assert_eq!(st.malformed, 0);
    // A retrieval line may be as long as it likes: a million keys, counted as they go.
    let mut p = tcp();
    let mut out = Vec::new();
    p.on_data(ToServer, b"get", ts, &mut out);
    let keys = b" k".repeat(1000);
    for _ in 0..1000 {
        p.on_data(ToServer, &keys, ts, &mut out);
    }
    p.on_data(ToServer, b"\r\n", ts, &mut out);
    p.on_data(ToClient, b"VALUE k 0 1\r\nx\r\nEND\r\n", ts, &mut out);
    assert_eq!(summaries(&out), ["get - h1 m999999"]);
    assert_eq!(
        out[0].attr("podtap.memcached.keys"),
        Some(&AttrValue::Int(1_000_000))
    );
    // The parser holds no growing buffer: its size is fixed.
    assert!(std::mem::size_of::<MemcachedParser>() < 1024);
}

#[test]
fn random_garbage_and_random_gaps_never_panic_and_stay_bounded() {
    let mut rng = crate::proto::test_rng(0x5eed_cafe);
    let (text, _) = text_conversation();
    let (binary, _) = binary_conversation();
    let meta = meta_conversation();
    let cfg = MemcachedConfig {
        max_pending: 16,
        ..MemcachedConfig::default()
    };
    for round in 0..300 {
        let base = match round % 3 {
            0 => &text,
            1 => &binary,
            _ => &meta,
        };
        let mut p = MemcachedParser::new(Transport::Tcp, &cfg);
        let mut out = Vec::new();
        let mut ts = 1;
        for _ in 0..40 {
            let (d, mut b) = base[(rng() % base.len() as u64) as usize].clone();
            match rng() % 6 {
                0 => b.iter_mut().for_each(|x| *x = rng() as u8),
                1 => {
                    let i = (rng() % b.len().max(1) as u64) as usize;
                    b.truncate(i);
                }
                2 => {
                    let i = (rng() % b.len().max(1) as u64) as usize;
                    if let Some(x) = b.get_mut(i) {
                        *x = rng() as u8;
                    }
                }
                3 => {
                    p.on_gap(d, (rng() % 5000) as u32);
                }
                _ => {}
            }
            let mut rest = &b[..];
            while !rest.is_empty() {
                let n = 1 + (rng() % rest.len() as u64) as usize;
                ts += 1;
                p.on_data(d, &rest[..n], Timestamp(ts), &mut out);
                rest = &rest[n..];
            }
            assert!(p.pending() <= 16);
            if rng().is_multiple_of(8) {
                p.on_tick(Timestamp(ts + 10_000), 5_000, &mut out);
            }
        }
        p.on_close(Timestamp(ts + 1), true, &mut out);
        assert_eq!(p.pending(), 0);
        let _ = p.take_stats();
        for t in &out {
            assert!(t.end >= t.start);
        }
    }
    // Random bytes from the first byte on, both directions, UDP too.
    for _ in 0..300 {
        let mut p = MemcachedParser::tcp();
        let mut u = MemcachedParser::udp();
        let mut out = Vec::new();
        for i in 0..20 {
            let n = (rng() % 300) as usize;
            let mut b: Vec<u8> = (0..n).map(|_| rng() as u8).collect();
            if i % 3 == 0 && !b.is_empty() {
                b[0] = if rng().is_multiple_of(2) {
                    REQUEST_MAGIC
                } else {
                    RESPONSE_MAGIC
                };
            }
            let d = if rng().is_multiple_of(2) {
                ToServer
            } else {
                ToClient
            };
            p.on_data(d, &b, Timestamp(i), &mut out);
            u.on_data(d, &b, Timestamp(i), &mut out);
        }
        p.on_close(Timestamp(100), false, &mut out);
        u.on_close(Timestamp(100), false, &mut out);
    }
}

#[test]
fn pending_limit_reports_the_oldest() {
    let cfg = MemcachedConfig {
        max_pending: 2,
        ..MemcachedConfig::default()
    };
    let mut p = MemcachedParser::new(Transport::Tcp, &cfg);
    let mut out = Vec::new();
    p.on_data(
        ToServer,
        b"get a\r\nmg b q\r\nget c\r\nget d\r\n",
        Timestamp(1),
        &mut out,
    );
    assert_eq!(
        summaries(&out),
        ["get - h- m- [no_response]", "mg - h0 m1 noreply"]
    );
    assert_eq!(p.take_stats().pending_limit, 2);
}

#[test]
fn timeouts_report_unanswered_commands_and_settle_quiet_ones() {
    let mut p = tcp();
    let mut out = Vec::new();
    p.on_data(
        ToServer,
        b"get a\r\nmg b q v\r\n",
        Timestamp(1_000),
        &mut out,
    );
    p.on_tick(Timestamp(2_000), 5_000, &mut out);
    assert!(out.is_empty());
    p.on_tick(Timestamp(10_000), 5_000, &mut out);
    assert_eq!(
        summaries(&out),
        [
            "get - h- m- error=timeout [no_response]",
            "mg - h0 m1 noreply"
        ]
    );
    assert_eq!(p.take_stats().timeouts, 1);
}

#[test]
fn a_connection_opening_with_an_unknown_command_pairs_its_error() {
    // pymemcache reconnects after an error, so a connection may start with any line.
    let c = conv(&[
        (ToServer, b"bogus\r\n"),
        (ToClient, b"ERROR\r\n"),
        (ToServer, b"get a\r\n"),
        (ToClient, b"END\r\n"),
    ]);
    check_all_feeds(&c, &["unknown ERROR h- m- error=ERROR", "get - h0 m1"]);
    assert_eq!(
        probe(b"bogus\r\n", ToServer, Transport::Tcp, true),
        Confidence::Port
    );
    assert_eq!(
        probe(b"bogus\r\n", ToServer, Transport::Tcp, false),
        Confidence::No
    );
}

#[test]
fn unsolicited_replies_are_reported_with_no_request() {
    let mut p = tcp();
    let mut out = Vec::new();
    p.on_data(ToClient, b"STORED\r\n", Timestamp(1), &mut out);
    p.on_data(ToServer, b"get a\r\n", Timestamp(2), &mut out);
    p.on_data(
        ToClient,
        b"VALUE a 0 1\r\nx\r\nEND\r\nVALUE b 0 1\r\ny\r\nEND\r\n",
        Timestamp(3),
        &mut out,
    );
    assert_eq!(
        summaries(&out),
        [
            "unknown - h- m- [no_request]",
            "get - h1 m0",
            "get - h1 m0 [no_request]"
        ],
    );
    assert_eq!(p.take_stats().no_request, 2);
}

#[test]
fn watch_stops_decoding_the_log_stream() {
    let mut p = tcp();
    let mut out = Vec::new();
    p.on_data(ToServer, b"watch fetchers\r\n", Timestamp(1), &mut out);
    let progress = p.on_data(
        ToClient,
        b"OK\r\nts=1.2 gid=3 type=item_get key=a status=not_found\r\n",
        Timestamp(2),
        &mut out,
    );
    assert_eq!(progress, Progress::Done);
    assert_eq!(summaries(&out), ["watch - h- m-"]);
}

#[test]
fn quiet_opcodes_and_names() {
    assert!(opcode_quiet(0x0d) && opcode_quiet(0x11) && !opcode_quiet(0x0c));
    assert_eq!(Command::Binary(0x0d).name(), Some("GETKQ"));
    assert_eq!(operation(Command::Binary(0x47)), "0x47");
    assert_eq!(Command::from_word(b"gats"), Command::Gats);
    assert_eq!(Command::from_word(b"GET"), Command::Unknown);
    assert_eq!(UDP_HEADER_LEN, 8);
}

#[test]
fn probe_recognises_memcached_in_every_form() {
    let likely = |b: &[u8], d, hint| probe(b, d, Transport::Tcp, hint);
    use Confidence::*;
    for line in [
        &b"set k 0 0 5\r\nhello\r\n"[..],
        b"set k 0 0 5\r\n",
        b"get a b\r\n",
        b"gets k\r\n",
        b"gat 10 k\r\n",
        b"mg k v\r\n",
        b"ms k 2 T0\r\nxx\r\n",
        b"mn\r\n",
        b"delete k\r\n",
        b"incr k 1\r\n",
        b"stats\r\n",
        b"version\r\n",
        b"cas k 0 0 1 5\r\n",
    ] {
        assert_eq!(likely(line, ToServer, false), Likely, "{line:?}");
    }
    // Lines that Redis also accepts inline need the port.
    for line in [&b"get k\r\n"[..], b"touch k 10\r\n", b"quit\r\n"] {
        assert_eq!(likely(line, ToServer, false), No, "{line:?}");
        assert_eq!(likely(line, ToServer, true), Likely, "{line:?}");
    }
    // Replies only with the port.
    for line in [
        &b"VALUE k 0 1\r\nx\r\nEND\r\n"[..],
        b"END\r\n",
        b"STORED\r\n",
        b"HD\r\n",
        b"VA 2 O1\r\nxy\r\n",
        b"EN\r\n",
        b"SERVER_ERROR out of memory\r\n",
    ] {
        assert_eq!(likely(line, ToClient, false), No, "{line:?}");
        assert_eq!(likely(line, ToClient, true), Likely, "{line:?}");
    }
    // Short: wait for more.
    assert_eq!(likely(b"ge", ToServer, false), NeedMore);
    assert_eq!(likely(b"set user:session", ToServer, false), NeedMore);
    assert_eq!(likely(b"set user:session", ToServer, true), Likely);
    // Binary: magic, opcode and the lengths it takes.
    let get = breq(0x00, b"key", b"", b"", 1);
    assert_eq!(likely(&get, ToServer, false), Certain);
    assert_eq!(likely(&get[..10], ToServer, false), NeedMore);
    assert_eq!(
        likely(&bresp(0x00, 1, b"", b"", b"Not found", 1), ToClient, false),
        Certain
    );
    assert_eq!(
        likely(&get, ToClient, false),
        No,
        "a request from the server"
    );
    let mut bad = get.clone();
    bad[4] = 8; // GET takes no extras
    assert_eq!(likely(&bad, ToServer, false), No);
    // UDP: the frame header first.
    let mut u = vec![0, 1, 0, 0, 0, 1, 0, 0];
    u.extend_from_slice(b"get k\r\n");
    assert_eq!(probe(&u, ToServer, Transport::Udp, false), Likely);
    let mut u = vec![0, 1, 0, 0, 0, 1, 0, 0];
    u.extend_from_slice(&get);
    assert_eq!(probe(&u, ToServer, Transport::Udp, false), Certain);
}

#[test]
fn probe_refuses_other_protocols() {
    use Confidence::*;
    let tcp = |b: &[u8], d, hint| probe(b, d, Transport::Tcp, hint);
    for (b, d) in [
        (&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], ToServer),
        (b"HTTP/1.1 200 OK\r\n", ToClient),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", ToServer),
        (b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n", ToServer),
        (b"+OK\r\n", ToClient),
        (b"$5\r\nhello\r\n", ToClient),
        (b":1\r\n", ToClient),
        (b"-ERR unknown command\r\n", ToClient),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", ToServer),
        (b"\x16\x03\x03\x00\x5d\x02\x00\x00\x59\x03\x03", ToClient),
        // SSLv2-compatible ClientHello: starts with 0x80.
        (
            b"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10\x01\x00\x80\x03\x00\x80\x02\x00\x80\x04\x00\x80\x00\x00",
            ToServer,
        ),
        // Strict Thrift binary message header: 0x80 0x01.
        (
            b"\x80\x01\x00\x01\x00\x00\x00\x04ping\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
            ToServer,
        ),
        (b"\x00\x1c\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00", ToServer),
        (b"SSH-2.0-OpenSSH_9.2\r\n", ToServer),
        (b"get\r\n", ToServer),
        (b"set k 0 0\r\n", ToServer),
        (b"set k x 0 5\r\n", ToServer),
        (b"get k\x01\r\n", ToServer),
        (b"hello world\r\n", ToServer),
    ] {
        for hint in [false, true] {
            let c = tcp(b, d, hint);
            assert!(c <= NeedMore || (hint && c == Port), "{b:?} hint={hint}: {c:?}");
            assert!(c < Likely, "{b:?} hint={hint}: {c:?}");
        }
    }
    // DNS over UDP is not a memcached frame.
    let dns = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03www\x07example\x03com\x00\x00\x01\x00\x01";
    assert_eq!(probe(dns, ToServer, Transport::Udp, false), No);
    let resp = b"\x12\x34\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00";
    assert_eq!(probe(resp, ToClient, Transport::Udp, false), No);
}

#[test]
fn probe_takes_no_flow_of_the_corpus_but_memcached() {
    // The first payload of each direction of every TCP and UDP flow in the shared corpus:
    // only memcached flows may be claimed. (Memcached flows are claimed: their port.)
    use crate::proto::testkit as fixture;
    let Some(dir) = fixture::pcaps() else {
        return;
    };
    let mut files = Vec::new();
    let mut stack = vec![dir.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("corpus dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "pcap") {
                files.push(p);
            }
        }
    }
    assert!(files.len() > 100, "corpus");
    let mut claimed_memcached = 0;
    for f in &files {
        let rel = f.strip_prefix(&dir).expect("under corpus");
        let is_mc = rel.to_string_lossy().contains("memcache");
        let Some(segs) = std::panic::catch_unwind(|| fixture::read(&rel.to_string_lossy()))
            .ok()
            .flatten()
        else {
            continue;
        };
        let mut seen = std::collections::HashSet::new();
        for s in &segs {
            if s.payload.is_empty() || !seen.insert((s.src, s.dst)) {
                continue;
            }
            let transport = if s.tcp.is_some() {
                Transport::Tcp
            } else {
                Transport::Udp
            };
            // The lower port is the server's, as the flow layer would guess.
            let dir = if s.dst.1 <= s.src.1 {
                ToServer
            } else {
                ToClient
            };
            let server_port = s.src.1.min(s.dst.1);
            let look = &s.payload[..s.payload.len().min(64)];
            let c = probe(look, dir, transport, server_port == 11211);
            if is_mc {
                claimed_memcached += (c >= Confidence::Likely) as usize;
            } else {
                assert!(
                    c < Confidence::Likely,
                    "{} {:?}->{:?} {look:?}: {c:?}",
                    rel.display(),
                    s.src,
                    s.dst
                );
            }
        }
    }
    assert!(
        claimed_memcached >= 19,
        "memcached flows: {claimed_memcached}"
    );
}

#[test]
fn lines_and_headers_memcached_does_not_send_are_malformed_and_skipped() {
    let mut p = tcp();
    let mut out = Vec::new();
    p.on_data(ToServer, b"get a\r\nget b\r\n", Timestamp(1), &mut out);
    p.on_data(
        ToClient,
        b"VALUE a 0 1\r\nx\r\nEND\r\nGARBAGE here\r\nEND\r\n",
        Timestamp(2),
        &mut out,
    );
    assert_eq!(summaries(&out), ["get - h1 m0", "get - h0 m1"]);
    assert_eq!(p.take_stats().malformed, 1);
    // A binary stream whose next message is not a header.
    let mut p = tcp();
    let mut out = Vec::new();
    let reqs = cat(&[breq(0x00, b"a", b"", b"", 1), breq(0x00, b"b", b"", b"", 2)]);
    p.on_data(ToServer, &reqs, Timestamp(1), &mut out);
    let resps = cat(&[
        bresp(0x00, 0, b"", &[0; 4], b"x", 1),
        b"junk!".to_vec(),
        bresp(0x00, 1, b"", b"", b"", 2),
    ]);
    p.on_data(ToClient, &resps, Timestamp(2), &mut out);
    assert_eq!(summaries(&out), ["GET - h1 m0", "GET KEY_ENOENT h0 m1"]);
    assert_eq!(p.take_stats().malformed, 1);
}

/// The shared test kit: a text set, a multi-get with one hit and one miss and a meta get,
/// whole, byte by byte, split everywhere, with a gap in each chunk and picked up after
/// each chunk.
#[test]
fn testkit_feeds_every_way() {
    use crate::proto::testkit::{Chunk, check_all};
    let conv: [Chunk; 6] = [
        (Direction::ToServer, b"set user:1 0 0 5\r\nhello\r\n"),
        (Direction::ToClient, b"STORED\r\n"),
        (Direction::ToServer, b"get user:1 user:2\r\n"),
        (Direction::ToClient, b"VALUE user:1 0 5\r\nhello\r\nEND\r\n"),
        (Direction::ToServer, b"mg user:1 v\r\n"),
        (Direction::ToClient, b"VA 5\r\nhello\r\n"),
    ];
    let out = check_all(MemcachedParser::tcp, &conv);
    let ops: Vec<_> = out.iter().map(|t| t.operation.to_string()).collect();
    assert_eq!(ops, ["set", "get", "mg"]);
    let hits = |t: &Transaction| match t.attr("podtap.memcached.hits") {
        Some(crate::proto::AttrValue::Int(n)) => *n,
        _ => -1,
    };
    assert_eq!(hits(&out[1]), 1);
}

/// The telemetry mapping: memcached commands become `db.client.operation.duration` series
/// named by `db.system.name` and the command, with the error where the server refused.
#[test]
fn commands_become_db_duration_series() {
    use crate::stats::{HistogramSpec, Metric, WorkerStats, histogram};
    let mut p = MemcachedParser::tcp();
    let mut txs = Vec::new();
    let t = |ms: u64| Timestamp(1_000_000_000 + ms * 1_000_000);
    p.on_data(Direction::ToServer, b"get a b\r\n", t(0), &mut txs);
    p.on_data(Direction::ToClient, b"END\r\n", t(2), &mut txs);
    p.on_data(Direction::ToServer, b"incr a x\r\n", t(3), &mut txs);
    p.on_data(
        Direction::ToClient,
        b"CLIENT_ERROR invalid numeric delta argument\r\n",
        t(4),
        &mut txs,
    );
    let mut s = WorkerStats::new(
        HistogramSpec::Explicit(std::sync::Arc::from(histogram::DEFAULT_BOUNDS)),
        100,
    );
    for tx in &txs {
        s.transaction(tx);
    }
    let d = s.take_delta();
    let series = d.sorted();
    assert_eq!(series.len(), 2);
    for (k, v) in series {
        assert_eq!(k.metric, Metric::DbClientDuration);
        assert_eq!(v.count(), 1);
        let get = |n: &str| {
            k.attrs
                .iter()
                .find(|(a, _)| *a == n)
                .map(|(_, v)| v.to_string())
        };
        assert_eq!(get("db.system.name").as_deref(), Some("memcached"));
        match get("db.operation.name").as_deref() {
            Some("get") => assert_eq!(get("error.type"), None),
            Some("incr") => assert_eq!(get("error.type").as_deref(), Some("CLIENT_ERROR")),
            other => panic!("{other:?}"),
        }
    }
}
