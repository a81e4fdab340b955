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

mod parser;
#[cfg(test)]
mod tests;

pub use parser::*;


use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::registry::{MetricAttr, Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{Counters, Event};
use crate::time::Timestamp;

/// DNS decoder settings (`[protocols.dns]`).
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

impl crate::proto::heap::HeapSize for Pending {
    /// The strings that did not fit inline.
    fn heap_size(&self) -> usize {
        crate::proto::heap::str_heap(&self.name) + crate::proto::heap::str_heap(&self.resource)
    }
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
    pending: crate::proto::heap::TrackedDeque<Pending>,
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
            pending: crate::proto::heap::TrackedDeque::new(),
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
        let found = self.pending.iter().position(|p| p.matches_response(id, &q));
        if let Some(i) = found {
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
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::vec_bytes;
        self.pending.heap_bytes() + self.framers.iter().map(|f| vec_bytes(&f.buf)).sum::<usize>()
    }

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
        for p in self.pending.drain() {
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

impl ProtocolDecoder for DnsParser {
    type Config = DnsConfig;
    type Shared = DnsConfig;
    const PORTS: &'static [u16] = &[53, 5353, 5053];
    const TRANSPORTS: &'static [Transport] = &[Transport::Udp, Transport::Tcp];
    type Events = crate::events::NoEvents;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        super::registry::nonzero(&[("max_pending", cfg.max_pending as u64), ("max_tcp_message", cfg.max_tcp_message as u64)])
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(cfg.dns.settings.clone())
    }

    /// A plausible header: on a DNS port enough (over TCP after the length prefix);
    /// elsewhere only a query from the client whose question parses exactly.
    fn probe(p: &Probe<'_>) -> Confidence {
        let b = p.bytes;
        match p.transport {
            Transport::Udp => {
                // (strict_dns_query reads the header: only after looks_like_dns.)
                if looks_like_dns(b)
                    && (p.hinted || (p.dir == Direction::ToServer && strict_dns_query(b)))
                {
                    Confidence::Likely
                } else {
                    Confidence::No
                }
            }
            Transport::Tcp => {
                if !p.hinted {
                    return Confidence::No;
                }
                // The length prefix and the header: a sender dripping bytes shows them a
                // few at a time.
                if b.len() < 14 {
                    let len_ok = b.len() < 2 || u16::from_be_bytes([b[0], b[1]]) >= 12;
                    return if len_ok {
                        Confidence::NeedMore
                    } else {
                        Confidence::No
                    };
                }
                let len = u16::from_be_bytes([b[0], b[1]]) as usize;
                if len >= 12 && looks_like_dns(&b[2..]) {
                    Confidence::Likely
                } else {
                    Confidence::No
                }
            }
        }
    }

    fn new(shared: &Self::Shared, transport: Transport) -> Self {
        DnsParser::new(transport, shared)
    }

    fn protocol(&self) -> Protocol {
        Protocol::Dns
    }

    fn drain_stats(&mut self, c: &mut crate::events::DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c.core())
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &DNS_TELEMETRY
    }
}

/// How DNS queries become metrics and spans.
static DNS_TELEMETRY: Telemetry = Telemetry {
    duration: Some([
        crate::stats::Metric::DnsLookupDuration,
        crate::stats::Metric::DnsLookupDuration,
    ]),
    metric_attrs: &[
        MetricAttr::Attr("dns.question.name"),
        MetricAttr::Attr("dns.question.type"),
        MetricAttr::Error,
        MetricAttr::Server,
    ],
    span_name: dns_span_name,
    attributes: &[
        "dns.question.name",
        "dns.question.type",
        "dns.response_code",
        "podtap.dns.id",
        "podtap.dns.opcode",
        "podtap.dns.answer_count",
        "podtap.dns.response_messages",
        "podtap.dns.retransmits",
        "podtap.dns.truncated",
    ],
    base: None,
};

/// Standard queries are named by type (`QUERY A`); other opcodes by opcode.
fn dns_span_name(tx: &Transaction) -> String {
    if tx.attr("podtap.dns.opcode").is_some() {
        tx.operation.to_string()
    } else {
        format!("QUERY {}", tx.operation)
    }
}

/// A DNS header that is plausible: opcode 0-5, counts small, a question present.
fn looks_like_dns(b: &[u8]) -> bool {
    if b.len() < 12 {
        return false;
    }
    let opcode = (b[2] >> 3) & 0x0f;
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let ns = u16::from_be_bytes([b[8], b[9]]);
    let ar = u16::from_be_bytes([b[10], b[11]]);
    opcode <= 5 && (1..=4).contains(&qd) && an < 512 && ns < 512 && ar < 512
}

/// Off the DNS ports, only accept a query whose question section parses exactly.
fn strict_dns_query(b: &[u8]) -> bool {
    if b.len() < 12 {
        return false;
    }
    if b[2] & 0x80 != 0 || u16::from_be_bytes([b[6], b[7]]) != 0 {
        return false;
    }
    let mut i = 12;
    while let Some(&len) = b.get(i) {
        if len == 0 {
            return b.len() >= i + 5;
        }
        if len > 63 {
            return false;
        }
        i += 1 + len as usize;
    }
    false
}
