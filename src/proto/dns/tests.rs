use super::*;
use crate::proto::AttrValue;

fn hex(s: &str) -> Vec<u8> {
    let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    s.chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

fn s(tx: &Transaction, k: &str) -> String {
    match tx.attr(k) {
        Some(AttrValue::Str(v)) => v.to_string(),
        other => panic!("{k}: {other:?}"),
    }
}

fn i(tx: &Transaction, k: &str) -> i64 {
    match tx.attr(k) {
        Some(AttrValue::Int(v)) => *v,
        other => panic!("{k}: {other:?}"),
    }
}

fn b(tx: &Transaction, k: &str) -> bool {
    match tx.attr(k) {
        Some(AttrValue::Bool(v)) => *v,
        other => panic!("{k}: {other:?}"),
    }
}

const T0: Timestamp = Timestamp(1_000_000_000);
const T1: Timestamp = Timestamp(1_002_000_000);

// tcpdump tests/dns_udp.pcap: www.tcpdump.org A, with EDNS; the answer uses pointers.
const A_QUERY: &str = "593401200001000000000001037777770774637064756d70036f72670000010001000029100000000000000c000a000842f5d00996f90b13";
const A_RESP: &str = "593485000001000200020005037777770774637064756d70036f72670000010001c00c000100010000003c0004c08b2e42c00c000100010000003c0004c6c75868c0100002000100015180001203736e7308636f6f7065726978036e657400c01000020001000151800012036e69630973616e64656c6d616e02636100c06b000100010000012c0004d157f912c06b001c00010000012c00102607f0b0000f000000000000babef00dc04d0001000100001c200004616b850fc04d001c000100001c20001026003c0300000000f03c91fffe96e8ef0000291000000000000000";
// suricata-verify dns-udp-double-request-response: A then AAAA for www.google.com.
const DBL_Q1: &str = "0001010000010000000000000377777706676f6f676c6503636f6d0000010001";
const DBL_Q2: &str = "0002010000010000000000000377777706676f6f676c6503636f6d00001c0001";
const DBL_R1: &str = "0001818000010008000000000377777706676f6f676c6503636f6d0000010001c00c0001000100000108000418f40438c00c0001000100000108000418f40439c00c0001000100000108000418f40434c00c0001000100000108000418f40435c00c0001000100000108000418f40436c00c0001000100000108000418f4043bc00c0001000100000108000418f40437c00c0001000100000108000418f4043a";
const DBL_R2: &str = "0002818000010001000000000377777706676f6f676c6503636f6d00001c0001c00c001c00010000012a00102607f8b0400a08090000000000002004";
// packetbeat dns_mx.pcap: elastic.co MX, 5 MX + 4 NS records, names compressed.
const MX_QUERY: &str = "d9fc0100000100000000000007656c617374696302636f00000f0001";
const MX_RESP: &str = "d9fc8180000100050004000007656c617374696302636f00000f0001c00c000f00010000011400160001056173706d78016c06676f6f676c6503636f6d00c00c000f0001000001140009000a04616c7433c02ac00c000f0001000001140009000a04616c7434c02ac00c000f0001000001140009000504616c7431c02ac00c000f0001000001140009000504616c7432c02ac00c000200010002a2e80017076e732d3131383309617773646e732d3139036f726700c00c000200010002a2e80019076e732d3230303709617773646e732d353802636f02756b00c00c000200010002a2e80012056e732d363609617773646e732d3038c039c00c000200010002a2e80016066e732d38333509617773646e732d3430036e657400";
// suricata-verify dns-udp-eve-txt: google.com TXT.
const TXT_QUERY: &str =
    "6e530120000100000000000106676f6f676c6503636f6d00001000010000291000000000000000";
const TXT_RESP: &str = "6e538180000100010000000106676f6f676c6503636f6d0000100001c00c0010000100000c91002423763d7370663120696e636c7564653a5f7370662e676f6f676c652e636f6d207e616c6c0000291000000000000000";
// packetbeat dns_not_found.pcap: nothing.elastic.co A → NXDOMAIN with an SOA.
const NX_QUERY: &str = "02a901000001000000000000076e6f7468696e6707656c617374696302636f0000010001";
const NX_RESP: &str = "02a981830001000000010000076e6f7468696e6707656c617374696302636f0000010001c01400060001000003460049076e732d3131383309617773646e732d3139036f72670011617773646e732d686f73746d617374657206616d617a6f6e03636f6d000000000100001c20000003840012750000015180";
// packetbeat dns_udp_edns_ds.pcap: ietf.org DS with DO bit; OPT is the last record.
const DS_QUERY: &str = "0b8d010000010000000000010469657466036f726700002b00010000291000000080000000";
const DS_RESP: &str = "0b8d81a000010003000000010469657466036f726700002b0001c00c002b0001000001230024b212050267fcd7e0b9e0366309f3b6f7476dff931d5226edc5348cd80fd82a081dfcf6eec00c002b0001000001230018b2120501d0fdf996d1af2ccdbdc942b02cb02d379629e20bc00c002e0001000001230097002b0702000151805113cd0450f80f74a33e036f7267000b34731d7fdb30dbbe61c61ea3504927558817a33dbfa94cde8fb5544286f8a2f35291223b465530c5aba539e1dbbcb1d8acc4568db5aa57c2ba8f4a71302c6974a6e66f77d3867f813f747dc1b6b6c5e5b72ae482e7bd195cec460048f85a30c30a24537eeced81d4d0d47fef1b112729b4d20b3d3f7b87a5d137a71b17c6530000290fa0000080000000";
// suricata-verify dns-udp-unsolicited-response: a query, a response with another id,
// then the real response.
const DBX_QUERY: &str =
    "99ab0100000100000000000009636c69656e742d63660764726f70626f7803636f6d0000010001";
const DBX_OTHER: &str = "99418180000100010000000009636c69656e742d63660764726f70626f7803636f6d0000010001c00c000100010000002f000434557015";
const DBX_RESP: &str = "99ab8180000100010000000009636c69656e742d63660764726f70626f7803636f6d0000010001c00c000100010000002f000434557015";
// deepflow dns-tcp-multi.pcap: two length-prefixed queries (A, AAAA) in one segment,
// then the two responses in separate segments.
const TCP_QUERIES: &str = "0044e831010000010000000000000764657461696c731864656570666c6f772d656270662d697374696f2d64656d6f0373766307636c7573746572056c6f63616c000001000100445939010000010000000000000764657461696c731864656570666c6f772d656270662d697374696f2d64656d6f0373766307636c7573746572056c6f63616c00001c0001";
const TCP_RESP1: &str = "0086e831850000010001000000000764657461696c731864656570666c6f772d656270662d697374696f2d64656d6f0373766307636c7573746572056c6f63616c00000100010764657461696c731864656570666c6f772d656270662d697374696f2d64656d6f0373766307636c7573746572056c6f63616c00000100010000000c0004c0a83b16";
const TCP_RESP2: &str = "00a15939850000010000000100000764657461696c731864656570666c6f772d656270662d697374696f2d64656d6f0373766307636c7573746572056c6f63616c00001c000107636c7573746572056c6f63616c00000600010000000c0044026e7303646e7307636c7573746572056c6f63616c000a686f73746d617374657207636c7573746572056c6f63616c0067e60f0b00001c2000000708000151800000001e";
// packetbeat dns_tcp_axfr.pcap: AXFR of etas.com (the query has 2 trailing bytes
// inside its length), answered by one message SOA, NS, A, SOA.
const AXFR_QUERY: &str = "001c000000000001000000000000046574617303636f6d0000fc00014d53";
const AXFR_RESP: &str = "00c3000080800001000400000000046574617303636f6d0000fc0001c00c0006000100000e10002f0d747261696e696e673230303370000a686f73746d617374657200000000030000003c000002580001518000000e10c00c0002000100000e10000f0d747261696e696e673230303370000777656c636f6d65c00c0001000100000e10000401010101c00c0006000100000e10002f0d747261696e696e673230303370000a686f73746d617374657200000000030000003c000002580001518000000e10";

fn udp_exchange(msgs: &[(&str, Timestamp)]) -> (DnsParser, Vec<Transaction>) {
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    for (m, ts) in msgs {
        let bytes = hex(m);
        let dir = if bytes.get(2).is_some_and(|f| f & 0x80 != 0) {
            Direction::ToClient
        } else {
            Direction::ToServer
        };
        assert_eq!(p.on_data(dir, &bytes, *ts, &mut out), Progress::Continue);
    }
    (p, out)
}

#[test]
fn header_and_message_view() {
    let q = hex(A_QUERY);
    let m = Message::parse(&q).unwrap();
    assert_eq!(m.header.id, 0x5934);
    assert!(!m.header.is_response() && m.header.rd() && m.header.ad());
    assert_eq!(m.header.opcode(), 0);
    assert_eq!(m.question.map(|q| (q.qtype, q.qclass)), Some((1, 1)));
    let edns = m.edns.unwrap();
    assert_eq!(edns.udp_payload_size, 4096);
    assert_eq!(
        (edns.extended_rcode, edns.version, edns.dnssec_ok),
        (0, 0, false)
    );
    assert_eq!(m.error, None);

    let r = hex(A_RESP);
    let m = Message::parse(&r).unwrap();
    assert!(m.header.is_response() && m.header.aa() && m.header.rd());
    assert!(!m.header.ra() && !m.header.tc());
    assert_eq!(
        (m.header.ancount, m.header.nscount, m.header.arcount),
        (2, 2, 5)
    );
    assert_eq!(m.rcode(), 0);
    assert_eq!(m.error, None);
    assert!(m.edns.is_some());
    let mut name = Name::default();
    let end = read_name(&r, m.question.unwrap().name_offset, &mut name).unwrap();
    assert_eq!(name.as_str(), "www.tcpdump.org");
    assert_eq!(name.label_count(), 3);
    // The first answer's owner is a pointer back to the question.
    assert_eq!(read_name(&r, end + 4, &mut name), Ok(end + 6));
    assert_eq!(name.as_str(), "www.tcpdump.org");
    assert_eq!(m.questions().count(), 1);

    assert_eq!(Header::parse(&r[..11]), Err(DnsError::Truncated));
    assert!(Message::parse(&r[..11]).is_err());
    // Cut inside the answers: header and question survive, the damage is reported.
    let m = Message::parse(&r[..60]).unwrap();
    assert_eq!(m.error, Some(DnsError::Truncated));
    assert!(m.question.is_some() && m.edns.is_none());
}

#[test]
fn compressed_names_in_mx_answers() {
    let r = hex(MX_RESP);
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.error, None);
    assert_eq!((m.header.ancount, m.header.nscount), (5, 4));
    // First MX: owner c00c at 28, rdata (preference, exchange) at 40.
    let mut name = Name::default();
    assert_eq!(read_name(&r, 28, &mut name), Ok(30));
    assert_eq!(name.as_str(), "elastic.co");
    assert_eq!(be16(&r, 40), Some(1));
    read_name(&r, 42, &mut name).unwrap();
    assert_eq!(name.as_str(), "aspmx.l.google.com");
    // Second MX exchange "alt3" + pointer into the first one's "l.google.com".
    read_name(&r, 42 + 20 + 14, &mut name).unwrap();
    assert_eq!(name.as_str(), "alt3.aspmx.l.google.com");
}

#[test]
fn compression_loops_and_bad_names_are_errors() {
    let mut name = Name::default();
    // Question name that points at itself.
    let mut m = hex("abcd01000001000000000000c00c00010001");
    assert_eq!(read_name(&m, 12, &mut name), Err(DnsError::BadPointer));
    // A label then a pointer back to that label: a two-step loop.
    m = hex("abcd0100000100000000000001610c0c00010001");
    m[14] = 0xc0;
    m[15] = 0x0c;
    assert_eq!(read_name(&m, 12, &mut name), Err(DnsError::BadPointer));
    // Forward pointer.
    let m = hex("abcd01000001000000000000c01000010001");
    assert_eq!(read_name(&m, 12, &mut name), Err(DnsError::BadPointer));
    // Pointers that keep going backwards are fine, until they loop through a
    // segment already read: 20 → 12 → 20 is refused at the second hop.
    let m = hex("abcd0100000100000000000001620000000000000161c00c");
    assert_eq!(read_name(&m, 20, &mut name), Ok(24));
    assert_eq!(name.as_str(), "a.b");
    let m = hex("abcd010000010000000000000162c0140000000000000161c00c");
    assert_eq!(read_name(&m, 22, &mut name), Err(DnsError::BadPointer));
    // Reserved label types, truncation, a name over 255 bytes.
    let m = hex("abcd010000010000000000004000");
    assert_eq!(read_name(&m, 12, &mut name), Err(DnsError::BadLabel));
    assert_eq!(skip_name(&m, 12), Err(DnsError::BadLabel));
    let m = hex("abcd0100000100000000000003616263");
    assert_eq!(read_name(&m, 12, &mut name), Err(DnsError::Truncated));
    let mut long = hex("abcd01000001000000000000");
    for _ in 0..5 {
        long.push(63);
        long.extend_from_slice(&[b'x'; 63]);
    }
    long.push(0);
    assert_eq!(read_name(&long, 12, &mut name), Err(DnsError::NameTooLong));
    assert_eq!(skip_name(&long, 12), Err(DnsError::NameTooLong));

    // A response whose question loops: counted, reported without a name, no panic.
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    let r = hex("abcd81800001000000000000c00c00010001");
    p.on_data(Direction::ToClient, &r, T0, &mut out);
    assert_eq!(p.stats().parse_errors, 1);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].resource, "");
}

#[test]
fn escapes_unusual_label_bytes() {
    let m = hex("abcd01000001000000000000" /* header */);
    let mut m = m;
    m.extend_from_slice(&[
        7, b'a', b'.', b'\\', b'"', 0x09, 0xff, b' ', 3, b'C', b'o', b'M', 0,
    ]);
    let mut name = Name::default();
    read_name(&m, 12, &mut name).unwrap();
    assert_eq!(name.as_str(), "a\\.\\\\\\\"\\t\\255 .CoM");
    // Root.
    let m = hex("abcd0100000100000000000000");
    read_name(&m, 12, &mut name).unwrap();
    assert!(name.is_root() && name.as_str().is_empty());
}

#[test]
fn udp_a_query_and_response() {
    let (p, out) = udp_exchange(&[(A_QUERY, T0), (A_RESP, T1)]);
    assert_eq!(out.len(), 1);
    let tx = &out[0];
    assert_eq!(tx.protocol, Protocol::Dns);
    assert_eq!((tx.start, tx.end), (T0, T1));
    assert_eq!(tx.duration_ns(), 2_000_000);
    assert_eq!(tx.operation, "A");
    assert_eq!(tx.resource, "www.tcpdump.org");
    assert_eq!((tx.status, tx.error.as_deref()), (Some(0), None));
    assert_eq!(tx.req_bytes, hex(A_QUERY).len() as u64);
    assert_eq!(tx.resp_bytes, hex(A_RESP).len() as u64);
    assert!(tx.completeness.is_complete());
    assert_eq!(s(tx, "dns.question.name"), "www.tcpdump.org");
    assert_eq!(s(tx, "dns.question.type"), "A");
    assert_eq!(s(tx, "dns.response_code"), "noerror");
    assert_eq!(i(tx, "podtap.dns.answer_count"), 2);
    assert_eq!(i(tx, "podtap.dns.id"), 0x5934);
    assert!(!b(tx, "podtap.dns.truncated"));
    assert!(tx.attr("podtap.dns.retransmits").is_none());
    assert_eq!(p.pending(), 0);
    assert_eq!(*p.stats(), DnsStats::default());
}

#[test]
fn a_and_aaaa_outstanding_together() {
    let (_, out) = udp_exchange(&[(DBL_Q1, T0), (DBL_Q2, T0), (DBL_R1, T1), (DBL_R2, T1)]);
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].operation.as_str(), out[1].operation.as_str()),
        ("A", "AAAA")
    );
    assert_eq!(i(&out[0], "podtap.dns.answer_count"), 8);
    assert_eq!(i(&out[1], "podtap.dns.answer_count"), 1);
    assert!(
        out.iter()
            .all(|t| t.resource == "www.google.com" && t.completeness.is_complete())
    );
    // Responses in the other order pair just as well.
    let (_, out) = udp_exchange(&[(DBL_Q1, T0), (DBL_Q2, T0), (DBL_R2, T1), (DBL_R1, T1)]);
    assert_eq!(
        (out[0].operation.as_str(), out[1].operation.as_str()),
        ("AAAA", "A")
    );
}

#[test]
fn mx_txt_and_ds_with_edns() {
    let (_, out) = udp_exchange(&[(MX_QUERY, T0), (MX_RESP, T1)]);
    assert_eq!(
        (out[0].operation.as_str(), out[0].resource.as_str()),
        ("MX", "elastic.co")
    );
    assert_eq!(i(&out[0], "podtap.dns.answer_count"), 5);
    let (_, out) = udp_exchange(&[(TXT_QUERY, T0), (TXT_RESP, T1)]);
    assert_eq!(
        (out[0].operation.as_str(), out[0].resource.as_str()),
        ("TXT", "google.com")
    );
    assert_eq!(i(&out[0], "podtap.dns.answer_count"), 1);
    let (_, out) = udp_exchange(&[(DS_QUERY, T0), (DS_RESP, T1)]);
    assert_eq!(
        (out[0].operation.as_str(), out[0].resource.as_str()),
        ("DS", "ietf.org")
    );
    assert_eq!(out[0].status, Some(0));
    let r = hex(DS_RESP);
    let m = Message::parse(&r).unwrap();
    let e = m.edns.unwrap();
    assert_eq!((e.udp_payload_size, e.dnssec_ok), (4000, true));
    assert!(m.header.ad());
}

#[test]
fn nxdomain_and_servfail_are_errors() {
    let (_, out) = udp_exchange(&[(NX_QUERY, T0), (NX_RESP, T1)]);
    let tx = &out[0];
    assert_eq!(tx.resource, "nothing.elastic.co");
    assert_eq!(
        (tx.status, tx.error.as_deref()),
        (Some(3), Some("NXDOMAIN"))
    );
    assert_eq!(s(tx, "dns.response_code"), "nxdomain");
    assert_eq!(i(tx, "podtap.dns.answer_count"), 0);
    assert!(tx.completeness.is_complete());

    // The same response with rcode 2.
    let mut r = hex(NX_RESP);
    r[3] = (r[3] & 0xf0) | 2;
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &hex(NX_QUERY), T0, &mut out);
    p.on_data(Direction::ToClient, &r, T1, &mut out);
    assert_eq!(
        (out[0].status, out[0].error.as_deref()),
        (Some(2), Some("SERVFAIL"))
    );
    assert_eq!(s(&out[0], "dns.response_code"), "servfail");
    for (code, name) in [
        (1, "FORMERR"),
        (4, "NOTIMP"),
        (5, "REFUSED"),
        (15, "RCODE15"),
    ] {
        r[3] = (r[3] & 0xf0) | code;
        p.on_data(Direction::ToServer, &hex(NX_QUERY), T0, &mut out);
        p.on_data(Direction::ToClient, &r, T1, &mut out);
        assert_eq!(out.last().unwrap().error.as_deref(), Some(name));
    }
}

#[test]
fn extended_rcode_from_opt() {
    // BADVERS = 16: header rcode 0, OPT TTL's top byte 1. The OPT record ends the
    // message: TTL starts 6 bytes before the end.
    let mut r = hex(DS_RESP);
    let n = r.len();
    r[n - 6] = 1;
    let m = Message::parse(&r).unwrap();
    assert_eq!(m.header.rcode(), 0);
    assert_eq!(m.rcode(), 16);
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &hex(DS_QUERY), T0, &mut out);
    p.on_data(Direction::ToClient, &r, T1, &mut out);
    assert_eq!(
        (out[0].status, out[0].error.as_deref()),
        (Some(16), Some("BADVERS"))
    );
    assert_eq!(s(&out[0], "dns.response_code"), "badvers");
    // Header rcode 3 with extended 1 → 19 (BADMODE).
    r[3] |= 3;
    assert_eq!(Message::parse(&r).unwrap().rcode(), 19);
}

#[test]
fn truncated_response_is_complete_but_flagged() {
    let mut r = hex(A_RESP);
    r[2] |= 0x02; // TC
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &hex(A_QUERY), T0, &mut out);
    p.on_data(Direction::ToClient, &r, T1, &mut out);
    assert_eq!(out.len(), 1);
    assert!(out[0].completeness.is_complete());
    assert!(b(&out[0], "podtap.dns.truncated"));
    assert_eq!(out[0].error, None);
}

#[test]
fn id_mismatch_and_unsolicited_response() {
    let (p, out) = udp_exchange(&[(DBX_QUERY, T0), (DBX_OTHER, T1), (DBX_RESP, T1)]);
    assert_eq!(out.len(), 2);
    let stray = &out[0];
    assert_eq!(stray.completeness.0, Completeness::NO_REQUEST);
    assert_eq!(i(stray, "podtap.dns.id"), 0x9941);
    assert_eq!((stray.start, stray.end), (T1, T1));
    assert_eq!(stray.resource, "client-cf.dropbox.com");
    assert_eq!(stray.req_bytes, 0);
    let tx = &out[1];
    assert!(tx.completeness.is_complete());
    assert_eq!(i(tx, "podtap.dns.id"), 0x99ab);
    assert_eq!(p.stats().unsolicited, 1);

    // Same id, other question: not a match either.
    let mut other = hex(DBX_RESP);
    other[12 + 1] = b'X'; // "Client-cf" → "Xlient-cf"
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &hex(DBX_QUERY), T0, &mut out);
    p.on_data(Direction::ToClient, &other, T1, &mut out);
    assert_eq!(out[0].completeness.0, Completeness::NO_REQUEST);
    assert_eq!(p.pending(), 1);
    // Case differences (0x20 randomisation) still match.
    let mut upper = hex(DBX_RESP);
    upper[12 + 1] = b'C';
    p.on_data(Direction::ToClient, &upper, T1, &mut out);
    assert!(out[1].completeness.is_complete());
    assert_eq!(s(&out[1], "dns.question.name"), "client-cf.dropbox.com");
}

#[test]
fn timeout_close_and_reset() {
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &hex(DBL_Q1), T0, &mut out);
    p.on_data(Direction::ToServer, &hex(DBL_Q2), T1, &mut out);
    p.on_tick(T0.add_nanos(1_500_000), 2_000_000, &mut out);
    assert!(out.is_empty());
    p.on_tick(T0.add_nanos(2_500_000), 2_000_000, &mut out);
    assert_eq!(out.len(), 1);
    let tx = &out[0];
    assert_eq!(tx.operation, "A");
    assert_eq!(tx.completeness.0, Completeness::NO_RESPONSE);
    assert_eq!(tx.error.as_deref(), Some("timeout"));
    assert_eq!((tx.status, tx.end), (None, T0.add_nanos(2_500_000)));
    assert!(tx.attr("dns.response_code").is_none());
    assert_eq!(p.stats().timeouts, 1);
    let mut counters = Counters::default();
    p.take_stats().add_to(&mut counters);
    assert_eq!(counters.get(Event::TransactionTimeout), 1);
    assert_eq!(*p.stats(), DnsStats::default());

    p.on_close(T1.add_nanos(9), false, &mut out);
    assert_eq!(out[1].operation, "AAAA");
    assert_eq!(
        out[1].completeness.0,
        Completeness::NO_RESPONSE | Completeness::CLOSED
    );
    assert_eq!(out[1].end, T1.add_nanos(9));
    assert_eq!(p.pending(), 0);

    p.on_data(Direction::ToServer, &hex(DBL_Q1), T0, &mut out);
    p.on_close(T1, true, &mut out);
    assert_eq!(
        out[2].completeness.0,
        Completeness::NO_RESPONSE | Completeness::RESET
    );
}

#[test]
fn retransmitted_query_and_duplicate_response() {
    let (p, out) = udp_exchange(&[
        (DBX_QUERY, T0),
        (DBX_QUERY, T0.add_nanos(1_000_000)),
        (DBX_RESP, T1),
        (DBX_RESP, T1.add_nanos(10)),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start, out[0].end), (T0, T1));
    assert_eq!(i(&out[0], "podtap.dns.retransmits"), 1);
    assert_eq!(p.stats().retransmits, 1);
    assert_eq!(p.stats().duplicate_responses, 1);
    assert_eq!(p.stats().unsolicited, 0);
    // A retransmission restarts the timeout.
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &hex(DBX_QUERY), T0, &mut out);
    p.on_data(
        Direction::ToServer,
        &hex(DBX_QUERY),
        T0.add_nanos(900),
        &mut out,
    );
    p.on_tick(T0.add_nanos(1500), 1000, &mut out);
    assert!(out.is_empty());
}

#[test]
fn pending_limit_reports_the_oldest() {
    let cfg = DnsConfig {
        max_pending: 2,
        ..Default::default()
    };
    let mut p = DnsParser::new(Transport::Udp, &cfg);
    let mut out = Vec::new();
    for (q, ts) in [(DBL_Q1, T0), (DBL_Q2, T0), (DBX_QUERY, T1)] {
        p.on_data(Direction::ToServer, &hex(q), ts, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].operation, "A");
    assert_eq!(out[0].completeness.0, Completeness::NO_RESPONSE);
    assert_eq!(out[0].end, T1);
    assert_eq!(p.stats().pending_overflow, 1);
    assert_eq!(p.pending(), 2);
    let mut c = Counters::default();
    p.stats().add_to(&mut c);
    assert_eq!(c.get(Event::PendingLimit), 1);
}

fn tcp_run(chunks: &[(Direction, Vec<u8>, Timestamp)]) -> (DnsParser, Vec<Transaction>) {
    let mut p = DnsParser::tcp();
    let mut out = Vec::new();
    for (dir, bytes, ts) in chunks {
        assert_eq!(p.on_data(*dir, bytes, *ts, &mut out), Progress::Continue);
    }
    (p, out)
}

fn summary(out: &[Transaction]) -> Vec<String> {
    out.iter()
        .map(|t| {
            format!(
                "{} {} {:?} {:?} {}..{} {}/{} {:?} {:?}",
                t.operation,
                t.resource,
                t.status,
                t.error,
                t.start.0,
                t.end.0,
                t.req_bytes,
                t.resp_bytes,
                t.completeness,
                t.attrs
            )
        })
        .collect()
}

#[test]
fn tcp_two_queries_in_one_segment() {
    let (c, s) = (Direction::ToServer, Direction::ToClient);
    let chunks = vec![
        (c, hex(TCP_QUERIES), T0),
        (s, hex(TCP_RESP1), T1),
        (s, hex(TCP_RESP2), T1.add_nanos(5)),
    ];
    let (p, out) = tcp_run(&chunks);
    assert_eq!(out.len(), 2);
    let name = "details.deepflow-ebpf-istio-demo.svc.cluster.local";
    assert_eq!(
        (out[0].operation.as_str(), out[0].resource.as_str()),
        ("A", name)
    );
    assert_eq!(
        (out[1].operation.as_str(), out[1].resource.as_str()),
        ("AAAA", name)
    );
    assert_eq!(out[0].req_bytes, 0x44 + 2);
    assert_eq!(out[0].resp_bytes, 0x86 + 2);
    assert_eq!(out[1].end, T1.add_nanos(5));
    assert_eq!(i(&out[1], "podtap.dns.answer_count"), 0);
    assert_eq!(*p.stats(), DnsStats::default());

    // The same bytes split one byte at a time: identical transactions.
    let split: Vec<_> = chunks
        .iter()
        .flat_map(|(dir, bytes, ts)| bytes.iter().map(move |b| (*dir, vec![*b], *ts)))
        .collect();
    let (p2, out2) = tcp_run(&split);
    assert_eq!(summary(&out), summary(&out2));
    assert_eq!(*p2.stats(), DnsStats::default());

    // Every split point of the pair of queries gives the same result.
    let q = hex(TCP_QUERIES);
    for cut in 0..=q.len() {
        let chunks = vec![
            (c, q[..cut].to_vec(), T0),
            (c, q[cut..].to_vec(), T0),
            (s, hex(TCP_RESP1), T1),
            (s, hex(TCP_RESP2), T1.add_nanos(5)),
        ];
        assert_eq!(summary(&tcp_run(&chunks).1), summary(&out), "cut at {cut}");
    }
}

#[test]
fn tcp_query_start_is_first_byte_and_end_is_last_byte() {
    let q = hex(TCP_QUERIES);
    let r = hex(TCP_RESP1);
    let (c, s) = (Direction::ToServer, Direction::ToClient);
    let (_, out) = tcp_run(&[
        (c, q[..1].to_vec(), Timestamp(10)),
        (c, q[1..].to_vec(), Timestamp(20)),
        (s, r[..50].to_vec(), Timestamp(30)),
        (s, r[50..].to_vec(), Timestamp(40)),
    ]);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].start, out[0].end), (Timestamp(10), Timestamp(40)));
}

#[test]
fn axfr_single_message_and_split_transfer() {
    let (c, s) = (Direction::ToServer, Direction::ToClient);
    let (p, out) = tcp_run(&[(c, hex(AXFR_QUERY), T0), (s, hex(AXFR_RESP), T1)]);
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].operation.as_str(), out[0].resource.as_str()),
        ("AXFR", "etas.com")
    );
    assert_eq!(i(&out[0], "podtap.dns.answer_count"), 4);
    assert!(out[0].completeness.is_complete());
    assert_eq!(p.pending(), 0);

    // The same transfer in two messages: SOA NS | A SOA (the second without question).
    let full = hex(AXFR_RESP);
    let body = &full[2..];
    let m = Message::parse(body).unwrap();
    // Record boundaries: question ends at 26; records follow.
    let mut offs = vec![26usize];
    let mut pos = 26;
    for _ in 0..4 {
        let end = skip_name(body, pos).unwrap();
        pos = end + 10 + be16(body, end + 8).unwrap() as usize;
        offs.push(pos);
    }
    assert_eq!(m.answer_soa, 2);
    let frame = |hdr: [u8; 12], parts: &[&[u8]]| {
        let mut v = Vec::new();
        let len: usize = 12 + parts.iter().map(|p| p.len()).sum::<usize>();
        v.extend_from_slice(&(len as u16).to_be_bytes());
        v.extend_from_slice(&hdr);
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    };
    let mut h1: [u8; 12] = body[..12].try_into().unwrap();
    h1[7] = 2; // ancount 2
    let first = frame(h1, &[&body[12..offs[2]]]);
    let mut h2 = h1;
    h2[5] = 0; // qdcount 0: the later messages need not repeat the question
    // Owner names point at offset 12 (the question) which the second message lacks,
    // so give it uncompressed owners.
    let mut recs = Vec::new();
    for k in 2..4 {
        recs.extend_from_slice(&hex("046574617303636f6d00"));
        let owner_end = skip_name(body, offs[k]).unwrap();
        recs.extend_from_slice(&body[owner_end..offs[k + 1]]);
    }
    let second = frame(h2, &[&recs]);
    let mut p = DnsParser::tcp();
    let mut out = Vec::new();
    p.on_data(c, &hex(AXFR_QUERY), T0, &mut out);
    p.on_data(s, &first, T1, &mut out);
    assert!(out.is_empty());
    assert_eq!(p.pending(), 1);
    p.on_data(s, &second, T1.add_nanos(7), &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].end, T1.add_nanos(7));
    assert_eq!(i(&out[0], "podtap.dns.answer_count"), 4);
    assert_eq!(i(&out[0], "podtap.dns.response_messages"), 2);
    assert_eq!(out[0].resp_bytes, (first.len() + second.len()) as u64);
    assert!(out[0].completeness.is_complete());
    assert_eq!(p.stats().parse_errors, 0);

    // Cut off after the first message: reported at close, ending at that message.
    let mut p = DnsParser::tcp();
    let mut out = Vec::new();
    p.on_data(c, &hex(AXFR_QUERY), T0, &mut out);
    p.on_data(s, &first, T1, &mut out);
    p.on_close(T1.add_nanos(100), false, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].end, T1);
    assert_eq!(out[0].completeness.0, Completeness::CLOSED);
    assert_eq!(out[0].status, Some(0));
}

#[test]
fn tcp_gaps_and_oversized_messages() {
    let (c, s) = (Direction::ToServer, Direction::ToClient);
    let q = hex(TCP_QUERIES);
    let r1 = hex(TCP_RESP1);
    let r2 = hex(TCP_RESP2);

    // A gap inside the first response's body: that message is lost, framing is kept.
    let mut p = DnsParser::tcp();
    let mut out = Vec::new();
    p.on_data(c, &q, T0, &mut out);
    p.on_data(s, &r1[..40], T1, &mut out);
    p.on_gap(s, 20);
    p.on_data(s, &r1[60..], T1, &mut out);
    p.on_data(s, &r2, T1, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].operation, "AAAA");
    p.on_close(T1, false, &mut out);
    assert_eq!(out[1].operation, "A");
    assert!(out[1].completeness.has(Completeness::GAP));
    assert!(out[1].completeness.has(Completeness::NO_RESPONSE));

    // A gap swallowing a whole message: resumes at the next plausible message.
    let mut p = DnsParser::tcp();
    let mut out = Vec::new();
    p.on_data(c, &q, T0, &mut out);
    p.on_gap(s, r1.len() as u32);
    p.on_data(s, &r2, T1, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].operation, "AAAA");
    assert_eq!(p.stats().parse_errors, 0);

    // A gap followed by bytes that are not a message start: that direction is given
    // up, the other one goes on; both lost → Done.
    let mut p = DnsParser::tcp();
    let mut out = Vec::new();
    p.on_data(c, &q, T0, &mut out);
    p.on_gap(s, 5);
    assert_eq!(p.on_data(s, &r1[3..], T1, &mut out), Progress::Continue);
    assert_eq!(p.stats().parse_errors, 1);
    p.on_data(s, &r2, T1, &mut out);
    assert!(out.is_empty());
    p.on_gap(c, 3);
    assert_eq!(p.on_data(c, &[0xff; 40], T1, &mut out), Progress::Done);

    // Messages over the limit are skipped by length; the next one is read.
    let cfg = DnsConfig {
        max_tcp_message: 150,
        ..Default::default()
    };
    let mut p = DnsParser::new(Transport::Tcp, &cfg);
    let mut out = Vec::new();
    p.on_data(c, &q, T0, &mut out);
    p.on_data(s, &r2, T1, &mut out); // 0xa1 = 161 bytes: over the limit
    p.on_data(s, &r1, T1, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].operation, "A");
    assert_eq!(p.stats().buffer_limit, 1);
    let mut counters = Counters::default();
    p.stats().add_to(&mut counters);
    assert_eq!(counters.get(Event::L7BufferLimit), 1);
}

#[test]
fn config_defaults_and_unknown_fields() {
    let cfg: DnsConfig = toml::from_str("max_pending = 8").unwrap();
    assert_eq!(cfg.max_pending, 8);
    assert_eq!(cfg.max_tcp_message, 65535);
    assert!(toml::from_str::<DnsConfig>("max_pendin = 8").is_err());
    assert_eq!(
        toml::from_str::<DnsConfig>("").unwrap(),
        DnsConfig::default()
    );
}

#[test]
fn type_and_rcode_names() {
    for (t, n) in [
        (1, "A"),
        (28, "AAAA"),
        (5, "CNAME"),
        (15, "MX"),
        (16, "TXT"),
    ] {
        assert_eq!(type_text(t), n);
    }
    for (t, n) in [
        (2, "NS"),
        (12, "PTR"),
        (33, "SRV"),
        (6, "SOA"),
        (255, "ANY"),
    ] {
        assert_eq!(type_text(t), n);
    }
    for (t, n) in [(252, "AXFR"), (43, "DS"), (65, "HTTPS"), (64, "SVCB")] {
        assert_eq!(type_text(t), n);
    }
    assert_eq!(type_text(65280), "TYPE65280");
    assert_eq!(rcode_name(3), Some("NXDOMAIN"));
    assert_eq!(rcode_name(12), None);
    assert_eq!(rcode_text(12, true), "rcode12");
    // NOTIFY and UPDATE are named by opcode.
    let mut q = hex(DBL_Q1);
    q[2] = (q[2] & 0x87) | (4 << 3);
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    p.on_data(Direction::ToServer, &q, T0, &mut out);
    p.on_close(T1, false, &mut out);
    assert_eq!(out[0].operation, "NOTIFY");
    assert_eq!(s(&out[0], "podtap.dns.opcode"), "NOTIFY");
}

#[test]
fn fuzz_never_panics() {
    let seeds: Vec<Vec<u8>> = [
        A_QUERY, A_RESP, MX_RESP, TXT_RESP, NX_RESP, DS_RESP, DBL_R1, DBX_RESP,
    ]
    .iter()
    .map(|h| hex(h))
    .collect();
    let tcp_seeds: Vec<Vec<u8>> = [TCP_QUERIES, TCP_RESP1, TCP_RESP2, AXFR_QUERY, AXFR_RESP]
        .iter()
        .map(|h| hex(h))
        .collect();
    let mut rng = crate::proto::testkit::Rng(0x9e37_79b9_7f4a_7c15);
    let mut name = Name::default();
    let mut out = Vec::new();
    let mut udp = DnsParser::udp();
    let mut tcp = DnsParser::tcp();
    for round in 0..20_000u64 {
        // Mutate a real message: flip, overwrite with pointer-like bytes, cut, extend.
        let mut m = if round % 5 == 0 {
            (0..rng.below(80)).map(|_| rng.next() as u8).collect()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        for _ in 0..1 + rng.below(6) {
            if m.is_empty() {
                break;
            }
            let at = rng.below(m.len());
            match rng.below(5) {
                0 => m[at] ^= 1 << rng.below(8),
                1 => m[at] = 0xc0 | (rng.next() as u8 & 0x3f),
                2 => m[at] = rng.next() as u8,
                3 => m.truncate(at),
                _ => m.insert(at, rng.next() as u8),
            }
        }
        let ts = Timestamp(round * 1000);
        let dir = if round % 2 == 0 {
            Direction::ToServer
        } else {
            Direction::ToClient
        };
        udp.on_data(dir, &m, ts, &mut out);
        if let Ok(msg) = Message::parse(&m) {
            let _ = msg.rcode();
            for q in msg.questions().flatten() {
                let _ = read_name(&m, q.name_offset, &mut name);
            }
        }
        for _ in 0..4 {
            let _ = read_name(&m, rng.below(m.len() + 2), &mut name);
            let _ = skip_name(&m, rng.below(m.len() + 2));
        }
        // TCP: mutated streams cut at random points, with random gaps.
        let mut stream = tcp_seeds[rng.below(tcp_seeds.len())].clone();
        if !stream.is_empty() && round % 3 == 0 {
            let at = rng.below(stream.len());
            stream[at] = rng.next() as u8;
        }
        let mut rest = &stream[..];
        while !rest.is_empty() {
            let n = 1 + rng.below(rest.len());
            tcp.on_data(dir, &rest[..n], ts, &mut out);
            rest = &rest[n..];
            if rng.below(50) == 0 {
                tcp.on_gap(dir, rng.below(300) as u32);
            }
        }
        if round % 97 == 0 {
            udp.on_tick(ts, 5000, &mut out);
            tcp.on_close(ts, round % 2 == 0, &mut out);
            tcp = DnsParser::tcp();
        }
        out.clear();
    }
    assert!(udp.pending() <= 256);
}

/// Compares what podtap reports for captures of the shared corpus with what tshark
/// shows for them (`tshark -r F -T fields -e dns.id -e dns.qry.name -e dns.flags.rcode`).
#[test]
fn shared_captures() {
    use crate::proto::testkit::{self as fixture, Feed};
    if fixture::pcaps().is_none() {
        return;
    }
    type Udp<'a> = (&'a str, &'a [(&'a str, &'a str, i64, u16)]);
    let udp_cases: &[Udp] = &[
        (
            "packetbeat/dns_google_com.pcap",
            &[("A", "google.com", 0, 0x4807)],
        ),
        (
            "packetbeat/dns_not_found.pcap",
            &[("A", "nothing.elastic.co", 3, 0x02a9)],
        ),
        (
            "packetbeat/dns_txt.pcap",
            &[("TXT", "elastic.co", 0, 0x17bb)],
        ),
        ("packetbeat/dns_mx.pcap", &[("MX", "elastic.co", 0, 0xd9fc)]),
        (
            "packetbeat/dns_udp_edns_ds.pcap",
            &[("DS", "ietf.org", 0, 0x0b8d)],
        ),
        (
            "packetbeat/dns_additional.pcap",
            &[("A", "heise.de", 0, 0xce69)],
        ),
        (
            "tcpdump/dns_udp.pcap",
            &[("A", "www.tcpdump.org", 0, 0x5934)],
        ),
        (
            "deepflow/dns/a-and-ns.pcap",
            &[
                ("A", "aa.bb.cc.ddd.eee.fff.zqytest.com", 0, 0x3199),
                ("AAAA", "aa.bb.cc.ddd.eee.fff.zqytest.com", 0, 0x1cf4),
            ],
        ),
        (
            "suricata-verify/dns/dns-udp-double-request-response/dns-udp-double-request-response.pcap",
            &[
                ("A", "www.google.com", 0, 1),
                ("AAAA", "www.google.com", 0, 2),
            ],
        ),
        (
            "suricata-verify/dns/dns-udp-eve-txt/input.pcap",
            &[
                ("TXT", "google.com", 0, 0x6e53),
                ("A", "textsecure-service-ca.whispersystems.org", 0, 0x99cc),
            ],
        ),
    ];
    for (file, want) in udp_cases {
        let segs = fixture::read(file).unwrap_or_else(|| panic!("{file}"));
        let mut p = DnsParser::udp();
        let mut out = Vec::new();
        for (dir, bytes, ts) in fixture::udp(&segs, 53) {
            p.on_data(dir, &bytes, ts, &mut out);
        }
        p.on_close(Timestamp(u64::MAX), false, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|t| {
                (
                    t.operation.as_str(),
                    t.resource.as_str(),
                    t.status.unwrap_or(-1),
                    i(t, "podtap.dns.id") as u16,
                )
            })
            .collect();
        assert_eq!(&got, want, "{file}");
        assert!(out.iter().all(|t| t.completeness.is_complete()), "{file}");
        assert_eq!(p.stats().parse_errors, 0, "{file}");
    }

    // The EDNS0 capture holds only the response: unsolicited, 33 answers to ANY.
    let segs = fixture::read("packetbeat/decoder-testdata/udp_edns0_resp.pcap").unwrap();
    let mut p = DnsParser::udp();
    let mut out = Vec::new();
    for (dir, bytes, ts) in fixture::udp(&segs, 53) {
        p.on_data(dir, &bytes, ts, &mut out);
    }
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].operation.as_str(), out[0].resource.as_str()),
        ("ANY", "peacecorps.gov")
    );
    assert_eq!(out[0].completeness.0, Completeness::NO_REQUEST);
    assert_eq!(i(&out[0], "podtap.dns.answer_count"), 33);

    type Tcp<'a> = (&'a str, &'a [(&'a str, &'a str, i64, u16, u16)]);
    let tcp_cases: &[Tcp] = &[
        (
            "tcpdump/dns_tcp.pcap",
            &[("A", "www.tcpdump.org", 0, 0x4319, 0)],
        ),
        (
            "suricata-verify/dns/dns-tcp-www-google-com/dns.pcap",
            &[("A", "www.google.com", 0, 0x5f78, 0)],
        ),
        (
            "packetbeat/dns_tcp_axfr.pcap",
            &[("AXFR", "etas.com", 0, 0, 0)],
        ),
        (
            "deepflow/dns/dns-tcp-multi.pcap",
            &[
                (
                    "A",
                    "details.deepflow-ebpf-istio-demo.svc.cluster.local",
                    0,
                    0xe831,
                    0,
                ),
                (
                    "AAAA",
                    "details.deepflow-ebpf-istio-demo.svc.cluster.local",
                    0,
                    0x5939,
                    0,
                ),
            ],
        ),
        // Picked up without the TCP handshake; three queries on one connection.
        (
            "deepflow/dns/nxdomain.pcap",
            &[
                ("AAAA", "prod-fcdt-e02.int.frontnode.net", 3, 0x680c, 0),
                (
                    "A",
                    "dockerauth-ee-vpc.cn-shenzhen.aliyuncs.com",
                    0,
                    0xe822,
                    0,
                ),
                (
                    "AAAA",
                    "registry.yingmi-inc.com.monitor.svc.cluster.local",
                    3,
                    0x7054,
                    0,
                ),
            ],
        ),
        (
            "deepflow/dns/not-handled-qtype.pcap",
            &[(
                "SRV",
                "_port0._tcp.deepflow-byconity-server.deepflow.svc.cluster.local",
                0,
                0xc290,
                0,
            )],
        ),
        // The client's second query (id 1) is missing from the capture: its response
        // is reported without a request (the gap is only known later, when the
        // client's next bytes arrive), and the stream resumes for id 2.
        (
            "suricata-verify/dns-tcp-ts-gap/input.pcap",
            &[
                ("A", "www.google.com", 0, 0, 0),
                ("A", "www.google.com", 0, 1, Completeness::NO_REQUEST),
                ("A", "www.google.com", 0, 2, 0),
            ],
        ),
    ];
    for (file, want) in tcp_cases {
        let segs = fixture::read(file).unwrap_or_else(|| panic!("{file}"));
        let mut p = DnsParser::tcp();
        let mut out = Vec::new();
        for f in fixture::tcp(&segs, 53) {
            match f {
                Feed::Data(dir, bytes, ts) => {
                    p.on_data(dir, &bytes, ts, &mut out);
                }
                Feed::Gap(dir, n) => p.on_gap(dir, n),
            }
        }
        p.on_close(Timestamp(u64::MAX), false, &mut out);
        let got: Vec<_> = out
            .iter()
            .map(|t| {
                (
                    t.operation.as_str(),
                    t.resource.as_str(),
                    t.status.unwrap_or(-1),
                    i(t, "podtap.dns.id") as u16,
                    t.completeness.0,
                )
            })
            .collect();
        assert_eq!(&got, want, "{file}");
    }
}

/// The shared test kit: two DNS-over-TCP queries and their answers (length-prefixed),
/// whole, byte by byte, split everywhere, with a gap in each chunk and picked up after
/// each chunk.
#[test]
fn testkit_feeds_every_way() {
    fn framed(m: Vec<u8>) -> Vec<u8> {
        let mut v = (m.len() as u16).to_be_bytes().to_vec();
        v.extend(m);
        v
    }
    fn query(id: u16, name: &[u8]) -> Vec<u8> {
        let mut m = id.to_be_bytes().to_vec();
        m.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in name.split(|&c| c == b'.') {
            m.push(label.len() as u8);
            m.extend_from_slice(label);
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m
    }
    fn answer(id: u16, name: &[u8], rcode: u8) -> Vec<u8> {
        let mut m = query(id, name);
        m[2] = 0x81;
        m[3] = 0x80 | rcode;
        if rcode == 0 {
            m[7] = 1;
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7]);
        }
        m
    }
    let (q1, a1) = (
        framed(query(7, b"api.shop")),
        framed(answer(7, b"api.shop", 0)),
    );
    let (q2, a2) = (
        framed(query(8, b"nope.shop")),
        framed(answer(8, b"nope.shop", 3)),
    );
    let conv: Vec<crate::proto::testkit::Chunk> = vec![
        (Direction::ToServer, &q1[..]),
        (Direction::ToClient, &a1[..]),
        (Direction::ToServer, &q2[..]),
        (Direction::ToClient, &a2[..]),
    ];
    let out = crate::proto::testkit::check_all(
        || DnsParser::new(Transport::Tcp, &DnsConfig::default()),
        &conv,
    );
    let got: Vec<_> = out
        .iter()
        .map(|t| {
            (
                s(t, "dns.question.name"),
                t.error.as_ref().map(|e| e.to_string()),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("api.shop".to_string(), None),
            ("nope.shop".to_string(), Some("NXDOMAIN".to_string())),
        ]
    );
}
