//! The DNS wire format, zero-copy: [`Message`] is a view over one DNS message (the header
//! and its flags, the first question, the EDNS OPT pseudo-record, the SOA count of the
//! answer section); names are decoded on demand with [`read_name`], which follows
//! compression pointers only backwards, so a hostile message cannot make it loop.
//! Malformed input is a [`DnsError`] value, never a panic.

use compact_str::{CompactString, format_compact};

/// Length of the fixed DNS header.
pub const HEADER_LEN: usize = 12;
/// Longest name on the wire (RFC 1035 §2.3.4), length bytes and the root label included.
pub const MAX_NAME_WIRE: usize = 255;
/// Room for a decoded name: every byte of a 255-byte name escaped as `\DDD` still fits, so
/// decoding never truncates a name that is valid on the wire.
pub(crate) const NAME_TEXT_CAP: usize = 4 * MAX_NAME_WIRE + 4;
/// Compression pointers followed for one name at most. The backwards-only rule already
/// makes loops impossible; this caps the work on messages that chain many pointers (a
/// real name has at most 127 labels, so it never needs more).
pub(crate) const MAX_POINTERS: usize = 127;
/// Answered queries remembered per flow to recognise duplicate responses.
pub(crate) const RECENT_ANSWERS: usize = 16;

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
pub(crate) fn be16(b: &[u8], at: usize) -> Option<u16> {
    let s = b.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([s[0], s[1]]))
}

#[inline]
pub(crate) fn be32(b: &[u8], at: usize) -> Option<u32> {
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
pub(crate) enum Section {
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
pub(crate) const RCODES: [(u16, &str, &str); 20] = [
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

pub(crate) fn rcode_text(rcode: u16, lower: bool) -> CompactString {
    match RCODES.iter().find(|r| r.0 == rcode) {
        Some(r) => CompactString::const_new(if lower { r.2 } else { r.1 }),
        None if lower => format_compact!("rcode{rcode}"),
        None => format_compact!("RCODE{rcode}"),
    }
}

pub(crate) fn opcode_text(op: u8) -> CompactString {
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
