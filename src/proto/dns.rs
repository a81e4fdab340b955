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

/// Which framing the flow uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// One message per datagram.
    Udp,
    /// Messages preceded by a 2-byte length (RFC 1035 §4.2.2, RFC 7766).
    Tcp,
}

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
