//! DNS over UDP and TCP.
//!
//! Two layers, as in every podtap decoder:
//!
//! * [`Message`] is a zero-copy view over one DNS message: the header and its flags, the
//!   first question, the EDNS OPT pseudo-record (for the extended rcode) and the number of
//!   SOA records in the answer section (to see the end of a zone transfer). Names are
//!   decoded on demand with [`read_name`], which follows compression pointers only
//!   backwards, so a hostile message cannot make it loop. Malformed input is a
//!   [`DnsError`] value, never a panic.
//! * [`DnsParser`] is the per-flow state machine: it frames DNS-over-TCP messages (2-byte
//!   length prefix, split anywhere), pairs queries with responses and emits one
//!   [`Transaction`] per query.
//!
//! Pairing rules, chosen so that every query is reported exactly once:
//!
//! * Queries and responses are told apart by the QR bit, not by the direction, so a UDP
//!   flow whose initiator was guessed wrong still pairs correctly.
//! * A response matches the oldest pending query with the same id and the same question
//!   (qtype and case-insensitive qname); a response without a question matches on the id
//!   alone. Ids may repeat on a flow as long as the questions differ.
//! * A query that repeats a pending query's id and question is a retransmission: it is
//!   not a new transaction; the pending one counts it in `podtap.dns.retransmits` and its
//!   timeout restarts.
//! * A response matching a recently answered query (a duplicate answer to a retransmitted
//!   query, or a later message of a multi-message answer) is dropped and counted in
//!   [`DnsStats::duplicate_responses`]; any other response without a query is reported
//!   with [`Completeness::NO_REQUEST`].
//! * Zone transfers (AXFR over TCP) may span many response messages: the transaction stays
//!   open until the answer sections have carried the closing SOA (the second SOA record),
//!   or until the connection closes (then it is marked `closed`). IXFR and all other
//!   types end at their first response message.
//!
//! Over TCP, a gap inside a message costs only that message (the length prefix says where
//! the next one starts). After a gap past a message boundary, decoding resumes if the next
//! bytes look like a length-prefixed DNS header; otherwise that direction is given up.
//! Queries reported incomplete after a gap carry [`Completeness::GAP`].

use std::collections::VecDeque;

use compact_str::{CompactString, format_compact};
use serde::{Deserialize, Serialize};

use super::{Completeness, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{Counters, Event};
use crate::time::Timestamp;

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 §2.3.4), length bytes and the root label included.
pub const MAX_NAME_WIRE: usize = 255;
/// Room for a decoded name: every byte of a 255-byte name escaped as `\DDD` still fits, so
/// decoding never truncates a name that is valid on the wire.
const NAME_TEXT_CAP: usize = 4 * MAX_NAME_WIRE + 4;
/// Compression pointers followed for one name at most. The backwards-only rule already
/// makes loops impossible; this caps the work on messages that chain many pointers (a
/// real name has at most 127 labels, so it never needs more).
const MAX_POINTERS: usize = 127;
/// Answered queries remembered per flow to recognise duplicate responses.
const RECENT_ANSWERS: usize = 16;

pub const TYPE_SOA: u16 = 6;
pub const TYPE_OPT: u16 = 41;
pub const TYPE_IXFR: u16 = 251;
pub const TYPE_AXFR: u16 = 252;

/// Why a DNS message (or part of it) could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DnsError {
    /// The message ends before the structure it announces.
    Truncated,
    /// A label length byte with the reserved `01`/`10` top bits (RFC 6891 deprecated them).
    BadLabel,
    /// A name longer than 255 bytes on the wire.
    NameTooLong,
    /// A compression pointer that does not point strictly before the name segment it was
    /// found in (a loop or a forward reference), or too many pointers in one name.
    BadPointer,
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DnsError::Truncated => "truncated message",
            DnsError::BadLabel => "reserved label type",
            DnsError::NameTooLong => "name longer than 255 bytes",
            DnsError::BadPointer => "invalid compression pointer",
        })
    }
}

impl std::error::Error for DnsError {}

#[inline]
fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

#[inline]
fn be32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

/// The fixed 12-byte header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    pub id: u16,
    /// QR, opcode, AA, TC, RD, RA, Z, AD, CD and the 4-bit rcode, as on the wire.
    pub flags: u16,
    pub qdcount: u16,
    pub ancount: u16,
    pub nscount: u16,
    pub arcount: u16,
}

impl Header {
    pub fn parse(b: &[u8]) -> Result<Header, DnsError> {
        let f = |at| be16(b, at).ok_or(DnsError::Truncated);
        Ok(Header {
            id: f(0)?,
            flags: f(2)?,
            qdcount: f(4)?,
            ancount: f(6)?,
            nscount: f(8)?,
            arcount: f(10)?,
        })
    }

    /// QR: this is a response.
    pub fn is_response(&self) -> bool {
        self.flags & 0x8000 != 0
    }
    pub fn opcode(&self) -> u8 {
        ((self.flags >> 11) & 0x0f) as u8
    }
    /// AA: authoritative answer.
    pub fn aa(&self) -> bool {
        self.flags & 0x0400 != 0
    }
    /// TC: the response was truncated (the client should retry over TCP).
    pub fn tc(&self) -> bool {
        self.flags & 0x0200 != 0
    }
    /// RD: recursion desired.
    pub fn rd(&self) -> bool {
        self.flags & 0x0100 != 0
    }
    /// RA: recursion available.
    pub fn ra(&self) -> bool {
        self.flags & 0x0080 != 0
    }
    /// AD: authentic data (DNSSEC).
    pub fn ad(&self) -> bool {
        self.flags & 0x0020 != 0
    }
    /// CD: checking disabled (DNSSEC).
    pub fn cd(&self) -> bool {
        self.flags & 0x0010 != 0
    }
    /// The low 4 bits of the rcode; see [`Message::rcode`] for the EDNS-extended value.
    pub fn rcode(&self) -> u8 {
        (self.flags & 0x000f) as u8
    }
}

/// One entry of the question section. The name stays in the message; decode it with
/// [`read_name`] at `name_offset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Question {
    pub name_offset: usize,
    pub qtype: u16,
    pub qclass: u16,
}

/// The EDNS(0) OPT pseudo-record (RFC 6891).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edns {
    pub udp_payload_size: u16,
    /// The upper 8 bits of the 12-bit rcode.
    pub extended_rcode: u8,
    pub version: u8,
    /// DO: DNSSEC OK.
    pub dnssec_ok: bool,
}

/// A zero-copy view over one DNS message.
///
/// Only the header is required; the sections are walked once by [`Message::parse`] and the
/// first malformation found is kept in `error`, so a message cut by the capture snap length
/// still yields its header and question.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    buf: &'a [u8],
    pub header: Header,
    /// The first question, when there is one and it is well framed.
    pub question: Option<Question>,
    /// The OPT record of the additional section, when present and reachable.
    pub edns: Option<Edns>,
    /// SOA records in the answer section (a zone transfer ends with its second SOA).
    pub answer_soa: u16,
    /// The first malformation found after the header.
    pub error: Option<DnsError>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    Answer,
    Authority,
    Additional,
}

impl<'a> Message<'a> {
    /// Parse the header and walk the sections. Fails only when the header is incomplete.
    pub fn parse(buf: &'a [u8]) -> Result<Message<'a>, DnsError> {
        let header = Header::parse(buf)?;
        let mut m = Message {
            buf,
            header,
            question: None,
            edns: None,
            answer_soa: 0,
            error: None,
        };
        if let Err(e) = m.walk() {
            m.error = Some(e);
        }
        Ok(m)
    }

    /// The whole message.
    pub fn bytes(&self) -> &'a [u8] {
        self.buf
    }

    /// The full rcode: the header's 4 bits extended by the OPT record's upper 8 bits.
    pub fn rcode(&self) -> u16 {
        let ext = self.edns.map_or(0, |e| e.extended_rcode as u16);
        (ext << 4) | self.header.rcode() as u16
    }

    /// All questions, in order; stops after the first malformed one.
    pub fn questions(&self) -> Questions<'a> {
        Questions {
            buf: self.buf,
            pos: HEADER_LEN,
            left: self.header.qdcount,
        }
    }

    fn walk(&mut self) -> Result<(), DnsError> {
        let b = self.buf;
        let mut pos = HEADER_LEN;
        for i in 0..self.header.qdcount {
            let end = skip_name(b, pos)?;
            let q = Question {
                name_offset: pos,
                qtype: be16(b, end).ok_or(DnsError::Truncated)?,
                qclass: be16(b, end + 2).ok_or(DnsError::Truncated)?,
            };
            if i == 0 {
                self.question = Some(q);
            }
            pos = end + 4;
        }
        // Every record takes at least 11 bytes, so these loops end with the buffer even
        // when the counts are hostile.
        let sections = [
            (Section::Answer, self.header.ancount),
            (Section::Authority, self.header.nscount),
            (Section::Additional, self.header.arcount),
        ];
        for (section, count) in sections {
            for _ in 0..count {
                let end = skip_name(b, pos)?;
                let rtype = be16(b, end).ok_or(DnsError::Truncated)?;
                let class = be16(b, end + 2).ok_or(DnsError::Truncated)?;
                let ttl = be32(b, end + 4).ok_or(DnsError::Truncated)?;
                let rdlen = be16(b, end + 8).ok_or(DnsError::Truncated)? as usize;
                let next = end + 10 + rdlen;
                if next > b.len() {
                    return Err(DnsError::Truncated);
                }
                match (section, rtype) {
                    (Section::Answer, TYPE_SOA) => {
                        self.answer_soa = self.answer_soa.saturating_add(1)
                    }
                    (Section::Additional, TYPE_OPT) if self.edns.is_none() => {
                        self.edns = Some(Edns {
                            udp_payload_size: class,
                            extended_rcode: (ttl >> 24) as u8,
                            version: (ttl >> 16) as u8,
                            dnssec_ok: ttl & 0x8000 != 0,
                        })
                    }
                    _ => {}
                }
                pos = next;
            }
        }
        Ok(())
    }
}

/// Iterator over the question section (see [`Message::questions`]).
pub struct Questions<'a> {
    buf: &'a [u8],
    pos: usize,
    left: u16,
}

impl Iterator for Questions<'_> {
    type Item = Result<Question, DnsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let q = skip_name(self.buf, self.pos).and_then(|end| {
            Ok(Question {
                name_offset: self.pos,
                qtype: be16(self.buf, end).ok_or(DnsError::Truncated)?,
                qclass: be16(self.buf, end + 2).ok_or(DnsError::Truncated)?,
            })
            .map(|q| (q, end + 4))
        });
        match q {
            Ok((q, next)) => {
                self.pos = next;
                Some(Ok(q))
            }
            Err(e) => {
                self.left = 0;
                Some(Err(e))
            }
        }
    }
}

/// A decoded domain name in presentation form, held in a fixed buffer (no allocation).
///
/// Labels are joined with `.`, without the trailing root dot; the root itself is empty
/// (see [`Name::is_root`]). Bytes are escaped as the OpenTelemetry `dns.question.name`
/// convention asks: `\DDD` below 32 and above 126, `\t` `\r` `\n`, `\\` and `\"`, and a
/// dot inside a label as `\.` so that label boundaries stay unambiguous.
pub struct Name {
    text: [u8; NAME_TEXT_CAP],
    len: usize,
    labels: u8,
}

impl Default for Name {
    fn default() -> Self {
        Name {
            text: [0; NAME_TEXT_CAP],
            len: 0,
            labels: 0,
        }
    }
}

impl std::fmt::Debug for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Name({:?})", self.as_str())
    }
}

impl Name {
    /// The escaped text; only printable ASCII, so it is always valid UTF-8.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(self.text.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }

    pub fn is_root(&self) -> bool {
        self.labels == 0
    }

    pub fn label_count(&self) -> u8 {
        self.labels
    }

    fn clear(&mut self) {
        self.len = 0;
        self.labels = 0;
    }

    #[inline]
    fn push(&mut self, b: u8) -> Result<(), DnsError> {
        // Cannot fail for a name within 255 wire bytes (the buffer holds the worst case);
        // checked anyway so that a logic error is an error, not a panic.
        let slot = self.text.get_mut(self.len).ok_or(DnsError::NameTooLong)?;
        *slot = b;
        self.len += 1;
        Ok(())
    }

    fn push_label_byte(&mut self, b: u8) -> Result<(), DnsError> {
        let (first, second) = match b {
            b'.' => (b'\\', b'.'),
            b'\\' => (b'\\', b'\\'),
            b'"' => (b'\\', b'"'),
            b'\t' => (b'\\', b't'),
            b'\r' => (b'\\', b'r'),
            b'\n' => (b'\\', b'n'),
            0x20..=0x7e => return self.push(b),
            _ => {
                self.push(b'\\')?;
                self.push(b'0' + b / 100)?;
                self.push(b'0' + (b / 10) % 10)?;
                return self.push(b'0' + b % 10);
            }
        };
        self.push(first)?;
        self.push(second)
    }
}

/// Decode the name at `offset` of `msg` into `out`, following compression pointers.
/// Returns the offset just past the name where it sits (after its first pointer).
///
/// Loop protection: a pointer must land strictly before the start of the segment it was
/// read from (the name itself, or the previous pointer's target). Targets therefore
/// decrease strictly and the walk ends; every single-pass compressor produces such
/// pointers, since it can only refer to names already written.
pub fn read_name(msg: &[u8], offset: usize, out: &mut Name) -> Result<usize, DnsError> {
    out.clear();
    let mut pos = offset;
    let mut floor = offset;
    let mut end = None;
    let mut wire = 1; // the root label
    let mut pointers = 0;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(end.unwrap_or(pos + 1)),
            0x00 => {
                let label = msg.get(pos + 1..pos + 1 + len).ok_or(DnsError::Truncated)?;
                wire += 1 + len;
                if wire > MAX_NAME_WIRE {
                    return Err(DnsError::NameTooLong);
                }
                if out.labels > 0 {
                    out.push(b'.')?;
                }
                for &b in label {
                    out.push_label_byte(b)?;
                }
                out.labels += 1;
                pos += 1 + len;
            }
            0xc0 => {
                let lo = *msg.get(pos + 1).ok_or(DnsError::Truncated)? as usize;
                let target = ((len & 0x3f) << 8) | lo;
                pointers += 1;
                if target >= floor || pointers > MAX_POINTERS {
                    return Err(DnsError::BadPointer);
                }
                end.get_or_insert(pos + 2);
                floor = target;
                pos = target;
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// The offset just past the name at `offset`, without following pointers (all a walk
/// over the records needs). Checks label types and the 255-byte limit of the inline part.
pub fn skip_name(msg: &[u8], offset: usize) -> Result<usize, DnsError> {
    let mut pos = offset;
    loop {
        let len = *msg.get(pos).ok_or(DnsError::Truncated)? as usize;
        match len & 0xc0 {
            0x00 if len == 0 => return Ok(pos + 1),
            0x00 => {
                pos += 1 + len;
                if pos - offset >= MAX_NAME_WIRE {
                    return Err(DnsError::NameTooLong);
                }
            }
            0xc0 => {
                if pos + 2 > msg.len() {
                    return Err(DnsError::Truncated);
                }
                return Ok(pos + 2);
            }
            _ => return Err(DnsError::BadLabel),
        }
    }
}

/// The mnemonic of a record type, for the common and the registered ones.
pub fn type_name(t: u16) -> Option<&'static str> {
    Some(match t {
        1 => "A",
        2 => "NS",
        3 => "MD",
        4 => "MF",
        5 => "CNAME",
        6 => "SOA",
        7 => "MB",
        8 => "MG",
        9 => "MR",
        10 => "NULL",
        11 => "WKS",
        12 => "PTR",
        13 => "HINFO",
        14 => "MINFO",
        15 => "MX",
        16 => "TXT",
        17 => "RP",
        18 => "AFSDB",
        24 => "SIG",
        25 => "KEY",
        28 => "AAAA",
        29 => "LOC",
        33 => "SRV",
        35 => "NAPTR",
        36 => "KX",
        37 => "CERT",
        39 => "DNAME",
        41 => "OPT",
        42 => "APL",
        43 => "DS",
        44 => "SSHFP",
        45 => "IPSECKEY",
        46 => "RRSIG",
        47 => "NSEC",
        48 => "DNSKEY",
        49 => "DHCID",
        50 => "NSEC3",
        51 => "NSEC3PARAM",
        52 => "TLSA",
        53 => "SMIMEA",
        55 => "HIP",
        59 => "CDS",
        60 => "CDNSKEY",
        61 => "OPENPGPKEY",
        62 => "CSYNC",
        63 => "ZONEMD",
        64 => "SVCB",
        65 => "HTTPS",
        99 => "SPF",
        249 => "TKEY",
        250 => "TSIG",
        251 => "IXFR",
        252 => "AXFR",
        253 => "MAILB",
        254 => "MAILA",
        255 => "ANY",
        256 => "URI",
        257 => "CAA",
        _ => return None,
    })
}

/// The type mnemonic, or `TYPE<n>` (RFC 3597) for the others.
pub fn type_text(t: u16) -> CompactString {
    match type_name(t) {
        Some(n) => CompactString::const_new(n),
        None => format_compact!("TYPE{t}"),
    }
}

/// (code, upper-case name, lower-case name) of the IANA DNS rcodes.
const RCODES: [(u16, &str, &str); 20] = [
    (0, "NOERROR", "noerror"),
    (1, "FORMERR", "formerr"),
    (2, "SERVFAIL", "servfail"),
    (3, "NXDOMAIN", "nxdomain"),
    (4, "NOTIMP", "notimp"),
    (5, "REFUSED", "refused"),
    (6, "YXDOMAIN", "yxdomain"),
    (7, "YXRRSET", "yxrrset"),
    (8, "NXRRSET", "nxrrset"),
    (9, "NOTAUTH", "notauth"),
    (10, "NOTZONE", "notzone"),
    (11, "DSOTYPENI", "dsotypeni"),
    (16, "BADVERS", "badvers"),
    (17, "BADKEY", "badkey"),
    (18, "BADTIME", "badtime"),
    (19, "BADMODE", "badmode"),
    (20, "BADNAME", "badname"),
    (21, "BADALG", "badalg"),
    (22, "BADTRUNC", "badtrunc"),
    (23, "BADCOOKIE", "badcookie"),
];

/// The upper-case rcode name (`NXDOMAIN`), used as `error.type`.
pub fn rcode_name(rcode: u16) -> Option<&'static str> {
    RCODES.iter().find(|r| r.0 == rcode).map(|r| r.1)
}

fn rcode_text(rcode: u16, lower: bool) -> CompactString {
    match RCODES.iter().find(|r| r.0 == rcode) {
        Some(r) => CompactString::const_new(if lower { r.2 } else { r.1 }),
        None if lower => format_compact!("rcode{rcode}"),
        None => format_compact!("RCODE{rcode}"),
    }
}

fn opcode_text(op: u8) -> CompactString {
    match op {
        0 => CompactString::const_new("QUERY"),
        1 => CompactString::const_new("IQUERY"),
        2 => CompactString::const_new("STATUS"),
        4 => CompactString::const_new("NOTIFY"),
        5 => CompactString::const_new("UPDATE"),
        6 => CompactString::const_new("DSO"),
        _ => format_compact!("OPCODE{op}"),
    }
}

/// DNS decoder settings (`[dns]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Queries awaiting a response on one flow. When full, the oldest is reported with
    /// `no_response` and counted as `l7.pending_limit`. Default 256.
    pub max_pending: usize,
    /// Largest DNS-over-TCP message buffered, in bytes. Larger messages are skipped by
    /// their length prefix (framing is kept) and counted as `l7.buffer_limit`. The prefix
    /// is 16 bits, so the default, 65535 (64 KiB), buffers every message.
    pub max_tcp_message: usize,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            max_pending: 256,
            max_tcp_message: 65535,
        }
    }
}

/// Which framing the flow uses: one message per UDP datagram, or messages preceded by a
/// 2-byte length over TCP (RFC 1035 §4.2.2, RFC 7766).
pub use super::detect::Transport;

/// What went wrong or was notable on one flow. `take_stats` hands out the counts since the
/// last call; [`DnsStats::add_to`] folds them into the worker's event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DnsStats {
    /// Messages that are not valid DNS (short header, malformed sections) and TCP streams
    /// whose framing was lost. → `l7.parse_error`
    pub parse_errors: u64,
    /// TCP messages larger than `max_tcp_message`, skipped. → `l7.buffer_limit`
    pub buffer_limit: u64,
    /// Pending queries reported early because `max_pending` was reached. → `l7.pending_limit`
    pub pending_overflow: u64,
    /// Queries reported by `on_tick` without a response. → `l7.transaction_timeout`
    pub timeouts: u64,
    /// Retransmitted queries folded into their pending transaction (informational).
    pub retransmits: u64,
    /// Responses to an already answered query, dropped (informational).
    pub duplicate_responses: u64,
    /// Responses without a query, reported with `no_request` (informational).
    pub unsolicited: u64,
}

impl DnsStats {
    /// Add the counts that have an [`Event`] to the worker's counters.
    pub fn add_to(&self, c: &mut Counters) {
        for (e, n) in [
            (Event::L7ParseError, self.parse_errors),
            (Event::L7BufferLimit, self.buffer_limit),
            (Event::PendingLimit, self.pending_overflow),
            (Event::TransactionTimeout, self.timeouts),
        ] {
            if n > 0 {
                c.add(e, n);
            }
        }
    }
}

/// What the flow knows about a query's question.
struct QInfo {
    qtype: Option<u16>,
    /// As queried (case kept), escaped.
    name: CompactString,
    /// Lower-cased: the transaction's resource.
    resource: CompactString,
    hash: u64,
}

/// A query awaiting its response (or the rest of a zone transfer).
struct Pending {
    id: u16,
    opcode: u8,
    qtype: Option<u16>,
    hash: u64,
    name: CompactString,
    resource: CompactString,
    start: Timestamp,
    /// Last query retransmission or response message: timeouts count from here.
    last: Timestamp,
    req_bytes: u64,
    retransmits: u32,
    /// Response messages seen (more than one only for zone transfers).
    responses: u32,
    resp_bytes: u64,
    rcode: u16,
    answers: u64,
    truncated: bool,
    xfr_soa: u32,
}

impl Pending {
    fn matches_response(&self, id: u16, q: &QInfo) -> bool {
        self.id == id
            && (self.qtype.is_none()
                || q.qtype.is_none()
                || (self.qtype == q.qtype && self.hash == q.hash))
    }

    fn to_transaction(&self, end: Timestamp, completeness: u16) -> Transaction {
        let mut tx = Transaction::new(Protocol::Dns, self.start);
        tx.end = end;
        tx.operation = match (self.opcode, self.qtype) {
            (0, Some(t)) => type_text(t),
            (op, _) => opcode_text(op),
        };
        tx.resource = self.resource.clone();
        tx.req_bytes = self.req_bytes;
        tx.completeness = Completeness(completeness);
        tx.attr_str("dns.question.name", self.name.clone());
        if let Some(t) = self.qtype {
            tx.attr_str("dns.question.type", type_text(t));
        }
        tx.attr_int("podtap.dns.id", self.id as i64);
        if self.opcode != 0 {
            tx.attr_str("podtap.dns.opcode", opcode_text(self.opcode));
        }
        if self.retransmits > 0 {
            tx.attr_int("podtap.dns.retransmits", self.retransmits as i64);
        }
        if self.responses > 0 {
            tx.resp_bytes = self.resp_bytes;
            tx.status = Some(self.rcode as i64);
            if self.rcode != 0 {
                tx.error = Some(rcode_text(self.rcode, false));
            }
            tx.attr_str("dns.response_code", rcode_text(self.rcode, true));
            tx.attr_int(
                "podtap.dns.answer_count",
                self.answers.min(i64::MAX as u64) as i64,
            );
            tx.attr_bool("podtap.dns.truncated", self.truncated);
            if self.responses > 1 {
                tx.attr_int("podtap.dns.response_messages", self.responses as i64);
            }
        }
        tx
    }
}

#[derive(Clone, Copy, Default)]
struct Answered {
    valid: bool,
    id: u16,
    qtype: Option<u16>,
    hash: u64,
}

/// DNS-over-TCP framing state of one direction.
#[derive(Default)]
struct Framer {
    prefix: [u8; 2],
    prefix_len: u8,
    /// Length of the message being read; 0 while reading the prefix.
    msg_len: usize,
    /// The message so far, when it spans `on_data` calls (capacity kept for reuse).
    buf: Vec<u8>,
    /// Bytes still to discard (an oversized or damaged message).
    skip: usize,
    /// Time of the chunk holding the message's first byte.
    first_ts: Timestamp,
    /// A gap ended at an unknown place: the next bytes must look like the start of a
    /// message for framing to resume.
    resync: bool,
    /// Framing lost to a gap: the direction is ignored from then on.
    lost: bool,
}

/// Whether `data` plausibly starts with a length-prefixed DNS message: a sane length, at
/// most one question, a defined opcode and the reserved Z bit clear. Used only to resume
/// after a gap, where a wrong guess would misparse everything that follows.
fn plausible_start(data: &[u8], max_len: usize) -> bool {
    let (Some(len), Ok(h)) = (
        be16(data, 0),
        Header::parse(data.get(2..).unwrap_or_default()),
    ) else {
        return false;
    };
    (HEADER_LEN..=max_len).contains(&(len as usize))
        && h.qdcount <= 1
        && matches!(h.opcode(), 0 | 1 | 2 | 4 | 5 | 6)
        && h.flags & 0x0040 == 0
}

/// The DNS state machine of one flow. See the module documentation for the pairing rules.
///
/// Transactions: `operation` is the qtype mnemonic (`A`, `AAAA`, `TYPE65280`; the opcode
/// name for opcodes other than QUERY, e.g. `UPDATE`), `resource` the lower-cased qname
/// (`.` for the root), `status` the full rcode and `error` its upper-case name when it is
/// not NOERROR. Attributes: `dns.question.name` (as queried), `dns.question.type`,
/// `dns.response_code` (lower-case name), `podtap.dns.id`, `podtap.dns.answer_count`,
/// `podtap.dns.truncated` (TC bit; such a response is complete but flagged),
/// `podtap.dns.retransmits` (only when non-zero), `podtap.dns.opcode` (only when not
/// QUERY), `podtap.dns.response_messages` (zone transfers in several messages).
pub struct DnsParser {
    transport: Transport,
    max_pending: usize,
    max_tcp_message: usize,
    pending: VecDeque<Pending>,
    recent: [Answered; RECENT_ANSWERS],
    recent_next: usize,
    framers: [Framer; 2],
    /// A gap hit a TCP stream: transactions reported incomplete afterwards say so.
    gap: bool,
    stats: DnsStats,
}

impl DnsParser {
    /// A UDP flow with the default settings: each `on_data` call is one datagram.
    pub fn udp() -> Self {
        Self::new(Transport::Udp, &DnsConfig::default())
    }

    /// A TCP connection with the default settings: length-prefixed messages, split anywhere.
    pub fn tcp() -> Self {
        Self::new(Transport::Tcp, &DnsConfig::default())
    }

    pub fn new(transport: Transport, cfg: &DnsConfig) -> Self {
        DnsParser {
            transport,
            max_pending: cfg.max_pending.max(1),
            max_tcp_message: cfg.max_tcp_message.clamp(HEADER_LEN, 65535),
            pending: VecDeque::new(),
            recent: [Answered::default(); RECENT_ANSWERS],
            recent_next: 0,
            framers: Default::default(),
            gap: false,
            stats: DnsStats::default(),
        }
    }

    pub fn transport(&self) -> Transport {
        self.transport
    }

    /// Queries awaiting a response.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> &DnsStats {
        &self.stats
    }

    /// The counts since the last call, resetting them (for folding into worker counters).
    pub fn take_stats(&mut self) -> DnsStats {
        std::mem::take(&mut self.stats)
    }

    /// One whole message: `first_ts` is when its first byte was seen, `last_ts` its last.
    fn on_message(
        &mut self,
        msg: &[u8],
        wire_len: u64,
        first_ts: Timestamp,
        last_ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let m = match Message::parse(msg) {
            Ok(m) => m,
            Err(_) => {
                self.stats.parse_errors += 1;
                return;
            }
        };
        if m.error.is_some() {
            // Still used: the header and question usually decoded before the damage.
            self.stats.parse_errors += 1;
        }
        let q = match self.question_info(&m) {
            Some(q) => q,
            None => {
                self.stats.parse_errors += 1;
                QInfo {
                    qtype: None,
                    name: CompactString::default(),
                    resource: CompactString::default(),
                    hash: 0,
                }
            }
        };
        if m.header.is_response() {
            self.on_response(&m, q, wire_len, last_ts, out);
        } else {
            self.on_query(&m, q, wire_len, first_ts, out);
        }
    }

    /// Decode the first question; `None` when there is a question that does not decode.
    fn question_info(&self, m: &Message) -> Option<QInfo> {
        let Some(question) = m.question else {
            // No question at all (qdcount 0, e.g. later messages of a zone transfer), or
            // a malformed one that `Message` already flagged.
            return (m.header.qdcount == 0 || m.error.is_some()).then(|| QInfo {
                qtype: None,
                name: CompactString::default(),
                resource: CompactString::default(),
                hash: 0,
            });
        };
        let mut name = Name::default();
        read_name(m.bytes(), question.name_offset, &mut name).ok()?;
        let text = if name.is_root() { "." } else { name.as_str() };
        let raw = CompactString::from(text);
        let mut resource = raw.clone();
        resource.as_mut_str().make_ascii_lowercase();
        // FNV-1a over the lower-cased name: compares questions without keeping two
        // strings per remembered answer.
        let hash = resource.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        });
        Some(QInfo {
            qtype: Some(question.qtype),
            name: raw,
            resource,
            hash,
        })
    }

    fn on_query(
        &mut self,
        m: &Message,
        q: QInfo,
        wire_len: u64,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let id = m.header.id;
        if let Some(p) = self
            .pending
            .iter_mut()
            .find(|p| p.id == id && p.qtype == q.qtype && p.hash == q.hash && p.responses == 0)
        {
            p.retransmits += 1;
            p.last = ts;
            self.stats.retransmits += 1;
            return;
        }
        if self.pending.len() >= self.max_pending
            && let Some(old) = self.pending.pop_front()
        {
            self.stats.pending_overflow += 1;
            out.push(old.to_transaction(ts, Completeness::NO_RESPONSE));
        }
        self.pending.push_back(Pending {
            id,
            opcode: m.header.opcode(),
            qtype: q.qtype,
            hash: q.hash,
            name: q.name,
            resource: q.resource,
            start: ts,
            last: ts,
            req_bytes: wire_len,
            retransmits: 0,
            responses: 0,
            resp_bytes: 0,
            rcode: 0,
            answers: 0,
            truncated: false,
            xfr_soa: 0,
        });
    }

    fn on_response(
        &mut self,
        m: &Message,
        q: QInfo,
        wire_len: u64,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let id = m.header.id;
        let rcode = m.rcode();
        if let Some(i) = self.pending.iter().position(|p| p.matches_response(id, &q)) {
            let tcp = self.transport == Transport::Tcp;
            let Some(p) = self.pending.get_mut(i) else {
                return;
            };
            p.responses += 1;
            p.resp_bytes += wire_len;
            p.answers += m.header.ancount as u64;
            p.truncated |= m.header.tc();
            p.last = ts;
            // A zone transfer reports the first error rcode it meets.
            if p.rcode == 0 {
                p.rcode = rcode;
            }
            let xfr_continues = tcp && p.qtype == Some(TYPE_AXFR) && rcode == 0 && {
                p.xfr_soa += m.answer_soa as u32;
                m.header.ancount > 0 && p.xfr_soa < 2
            };
            if xfr_continues {
                return;
            }
            if let Some(p) = self.pending.remove(i) {
                self.remember(&p);
                out.push(p.to_transaction(ts, Completeness::COMPLETE.0));
            }
            return;
        }
        if self.recent.iter().any(|r| {
            r.valid && r.id == id && (q.qtype.is_none() || (r.qtype == q.qtype && r.hash == q.hash))
        }) {
            self.stats.duplicate_responses += 1;
            return;
        }
        self.stats.unsolicited += 1;
        let p = Pending {
            id,
            opcode: m.header.opcode(),
            qtype: q.qtype,
            hash: q.hash,
            name: q.name,
            resource: q.resource,
            start: ts,
            last: ts,
            req_bytes: 0,
            retransmits: 0,
            responses: 1,
            resp_bytes: wire_len,
            rcode,
            answers: m.header.ancount as u64,
            truncated: m.header.tc(),
            xfr_soa: 0,
        };
        let gap = if self.gap { Completeness::GAP } else { 0 };
        out.push(p.to_transaction(ts, Completeness::NO_REQUEST | gap));
    }

    fn remember(&mut self, p: &Pending) {
        if let Some(slot) = self.recent.get_mut(self.recent_next) {
            *slot = Answered {
                valid: true,
                id: p.id,
                qtype: p.qtype,
                hash: p.hash,
            };
        }
        self.recent_next = (self.recent_next + 1) % RECENT_ANSWERS;
    }

    fn on_tcp_data(
        &mut self,
        dir: Direction,
        mut data: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        while !data.is_empty() {
            let f = &mut self.framers[d];
            if f.lost {
                return;
            }
            if f.resync {
                f.resync = false;
                if !plausible_start(data, self.max_tcp_message) {
                    f.lost = true;
                    f.buf = Vec::new();
                    self.stats.parse_errors += 1;
                    return;
                }
            }
            if f.skip > 0 {
                let n = f.skip.min(data.len());
                f.skip -= n;
                data = &data[n..];
                continue;
            }
            if f.msg_len == 0 {
                if f.prefix_len == 0 {
                    f.first_ts = ts;
                }
                let at = f.prefix_len as usize;
                let n = (2 - at).min(data.len());
                f.prefix[at..at + n].copy_from_slice(&data[..n]);
                f.prefix_len += n as u8;
                data = &data[n..];
                if f.prefix_len < 2 {
                    continue;
                }
                f.prefix_len = 0;
                let len = u16::from_be_bytes(f.prefix) as usize;
                if len < HEADER_LEN {
                    // Not a DNS message (an empty one is allowed by nothing but harmless).
                    if len > 0 {
                        self.stats.parse_errors += 1;
                    }
                    f.skip = len;
                } else if len > self.max_tcp_message {
                    self.stats.buffer_limit += 1;
                    f.skip = len;
                } else {
                    f.msg_len = len;
                    f.buf.clear();
                }
                continue;
            }
            let need = f.msg_len - f.buf.len();
            let wire = f.msg_len as u64 + 2;
            let first_ts = f.first_ts;
            if f.buf.is_empty() && data.len() >= need {
                // Fast path: the whole message is in this chunk, parse it in place.
                f.msg_len = 0;
                let (msg, rest) = data.split_at(need);
                data = rest;
                self.on_message(msg, wire, first_ts, ts, out);
                continue;
            }
            if f.buf.is_empty() {
                // Bounded by `max_tcp_message`; grown once per message, not per segment.
                f.buf.reserve(f.msg_len);
            }
            let n = need.min(data.len());
            f.buf.extend_from_slice(&data[..n]);
            data = &data[n..];
            if f.buf.len() == f.msg_len {
                f.msg_len = 0;
                // Taken out for the call, put back after so its capacity is reused.
                let buf = std::mem::take(&mut f.buf);
                self.on_message(&buf, wire, first_ts, ts, out);
                let f = &mut self.framers[d];
                f.buf = buf;
                f.buf.clear();
            }
        }
    }
}

impl L7Parser for DnsParser {
    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        match self.transport {
            Transport::Udp => {
                self.on_message(bytes, bytes.len() as u64, ts, ts, out);
                Progress::Continue
            }
            Transport::Tcp => {
                self.on_tcp_data(dir, bytes, ts, out);
                if self.framers.iter().all(|f| f.lost) {
                    Progress::Done
                } else {
                    Progress::Continue
                }
            }
        }
    }

    /// A gap inside a message's body costs that message only: the length prefix says
    /// where the next one starts. A gap that reaches past a message boundary leaves the
    /// framing unknown: it resumes if the bytes after the gap look like the start of a
    /// message (gaps usually end on a segment boundary, where messages usually start);
    /// otherwise that direction is given up (counted as a parse error) and the other goes on.
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if self.transport != Transport::Tcp || missing == 0 {
            return;
        }
        self.gap = true;
        let f = &mut self.framers[dir.index()];
        if f.lost {
            return;
        }
        let missing = missing as usize;
        let in_body = f.msg_len - f.buf.len();
        if f.skip > 0 && missing <= f.skip {
            f.skip -= missing;
        } else if f.skip == 0 && f.msg_len > 0 && missing <= in_body {
            // The damaged message is dropped; the rest of it is skipped.
            f.skip = in_body - missing;
            f.msg_len = 0;
            f.buf.clear();
        } else {
            f.skip = 0;
            f.msg_len = 0;
            f.prefix_len = 0;
            f.buf.clear();
            f.resync = true;
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        let gap = if self.gap { Completeness::GAP } else { 0 };
        for p in self.pending.drain(..) {
            // A zone transfer cut short ends at its last message; anything else never got
            // an answer.
            let tx = if p.responses > 0 {
                p.to_transaction(p.last, why | gap)
            } else {
                p.to_transaction(ts, Completeness::NO_RESPONSE | why | gap)
            };
            out.push(tx);
        }
        for f in &mut self.framers {
            *f = Framer::default();
        }
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        let gap = if self.gap { Completeness::GAP } else { 0 };
        let stats = &mut self.stats;
        self.pending.retain(|p| {
            if now.since(p.last) < timeout_ns {
                return true;
            }
            stats.timeouts += 1;
            let mut tx = p.to_transaction(now, Completeness::NO_RESPONSE | gap);
            tx.error = Some(CompactString::const_new("timeout"));
            out.push(tx);
            false
        });
    }
}

/// Test helper shared by the decoders' capture tests: reads a capture of the shared corpus
/// and hands out UDP datagrams or the in-order bytes of a TCP connection.
#[cfg(test)]
pub(crate) mod fixture {
    use std::net::IpAddr;

    use crate::packet::{self, Decoded, Defragmenter, L4, LinkType, TcpHeader, tcp_flags};
    use crate::proto::Direction;
    use crate::time::Timestamp;

    /// The shared capture corpus, beside the repository (`PODTAP_PCAPS` overrides it, for
    /// checkouts that live elsewhere); tests skip when it is absent.
    pub(crate) fn pcaps() -> Option<std::path::PathBuf> {
        let dir = std::env::var_os("PODTAP_PCAPS")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps").into());
        if dir.is_dir() {
            Some(dir)
        } else {
            eprintln!("skipping: capture corpus {} not found", dir.display());
            None
        }
    }

    pub(crate) struct Seg {
        pub ts: Timestamp,
        pub src: (IpAddr, u16),
        pub dst: (IpAddr, u16),
        pub tcp: Option<TcpHeader>,
        pub payload: Vec<u8>,
    }

    /// Every TCP and UDP packet of `rel` (relative to the corpus); `None` when absent.
    pub(crate) fn read(rel: &str) -> Option<Vec<Seg>> {
        let file = std::fs::File::open(pcaps()?.join(rel)).ok()?;
        let mut r = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
        let link = LinkType::from_pcap(u32::from(r.header().datalink)).expect("link type");
        let mut defrag = Defragmenter::default();
        let mut out = Vec::new();
        while let Some(p) = r.next_packet() {
            let p = p.expect("pcap record");
            let ts = Timestamp::from_secs_nanos(p.timestamp.as_secs(), p.timestamp.subsec_nanos());
            let Ok(Decoded::Packet(pkt)) =
                packet::decode(&p.data, link, ts, p.orig_len, &mut defrag)
            else {
                continue;
            };
            let (sp, dp) = pkt.ports();
            let tcp = match pkt.l4 {
                L4::Tcp(t) => Some(t),
                L4::Udp { .. } => None,
                _ => continue,
            };
            out.push(Seg {
                ts,
                src: (pkt.src, sp),
                dst: (pkt.dst, dp),
                tcp,
                payload: pkt.payload.to_vec(),
            });
        }
        Some(out)
    }

    /// UDP datagrams to or from `port`, with their direction (towards `port` = ToServer).
    pub(crate) fn udp(segs: &[Seg], port: u16) -> Vec<(Direction, Vec<u8>, Timestamp)> {
        segs.iter()
            .filter(|s| s.tcp.is_none())
            .filter_map(|s| {
                let dir = if s.dst.1 == port {
                    Direction::ToServer
                } else if s.src.1 == port {
                    Direction::ToClient
                } else {
                    return None;
                };
                Some((dir, s.payload.clone(), s.ts))
            })
            .collect()
    }

    /// xorshift64*: deterministic pseudo-random bytes for the robustness tests.
    pub(crate) struct Rng(pub u64);
    impl Rng {
        pub(crate) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(crate) fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    pub(crate) enum Feed {
        Data(Direction, Vec<u8>, Timestamp),
        Gap(Direction, u32),
    }

    /// The in-order bytes of the first TCP connection to `port`: retransmitted bytes are
    /// trimmed, holes become gaps (enough for clean captures; not a reassembler).
    pub(crate) fn tcp(segs: &[Seg], port: u16) -> Vec<Feed> {
        let mut next: [Option<u32>; 2] = [None, None];
        let mut client = None;
        let mut out = Vec::new();
        for s in segs {
            let Some(t) = s.tcp else { continue };
            let dir = if s.dst.1 == port {
                Direction::ToServer
            } else if s.src.1 == port {
                Direction::ToClient
            } else {
                continue;
            };
            let c = if dir == Direction::ToServer {
                s.src
            } else {
                s.dst
            };
            if *client.get_or_insert(c) != c {
                continue;
            }
            let d = dir.index();
            if t.has(tcp_flags::SYN) {
                next[d] = Some(t.seq.wrapping_add(1));
                continue;
            }
            if s.payload.is_empty() {
                continue;
            }
            let mut data = &s.payload[..];
            let mut seq = t.seq;
            let expected = *next[d].get_or_insert(seq);
            let delta = seq.wrapping_sub(expected) as i32;
            if delta < 0 {
                let dup = delta.unsigned_abs() as usize;
                if dup >= data.len() {
                    continue;
                }
                data = &data[dup..];
                seq = expected;
            } else if delta > 0 {
                out.push(Feed::Gap(dir, delta as u32));
            }
            next[d] = Some(seq.wrapping_add(data.len() as u32));
            out.push(Feed::Data(dir, data.to_vec(), s.ts));
        }
        out
    }
}

#[cfg(test)]
mod tests {
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
    const NX_QUERY: &str =
        "02a901000001000000000000076e6f7468696e6707656c617374696302636f0000010001";
    const NX_RESP: &str = "02a981830001000000010000076e6f7468696e6707656c617374696302636f0000010001c01400060001000003460049076e732d3131383309617773646e732d3139036f72670011617773646e732d686f73746d617374657206616d617a6f6e03636f6d000000000100001c20000003840012750000015180";
    // packetbeat dns_udp_edns_ds.pcap: ietf.org DS with DO bit; OPT is the last record.
    const DS_QUERY: &str =
        "0b8d010000010000000000010469657466036f726700002b00010000291000000080000000";
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
        let mut rng = super::fixture::Rng(0x9e37_79b9_7f4a_7c15);
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
        use super::fixture::{self, Feed};
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
}
