//! Memcached (`db.system.name = memcached`): the text protocol, the meta commands and the
//! binary protocol, over TCP and over UDP (8-byte frame header).
//!
//! Two layers, as in every podtap decoder: [`parser`] turns each direction's bytes into
//! typed messages (split anywhere, values skipped by length, never buffered), and
//! [`MemcachedParser`] pairs commands with replies into [`Transaction`]s.
//!
//! Pairing rules:
//!
//! * memcached answers the commands of a connection in order. Text commands are paired in
//!   order; a multi-key `get` is one transaction whose `VALUE` lines, up to `END`, are its
//!   hits (the keys not returned are its misses); `stats` collects its `STAT` lines up to
//!   `END`.
//! * `noreply` commands (and `quit`, binary QUITQ) get no reply at all: each is reported
//!   at once, complete, with `podtap.memcached.noreply`, and never waits for a reply, so
//!   the pairs after it do not shift.
//! * Quiet commands (meta `q` flag, binary quiet opcodes GETQ, GETKQ, SETQ, ...) are
//!   answered only when something is worth saying: a hit for a get, an error or a
//!   non-success for the others. A quiet command stays pending until a reply shows the
//!   server went past it: its own reply (matched by opaque, or by kind), or the reply of a
//!   later command (typically the `mn`/NOOP that ends a pipeline). Settled so, a quiet get
//!   is a miss and any other quiet command a success. At close or timeout a quiet command
//!   is settled the same way (no news is good news), never reported as unanswered.
//! * Replies carrying an opaque (binary, always; meta, with the `O` flag) are matched to
//!   the pending command with the same opaque (and, binary, the same opcode); commands
//!   before it that expected a reply and got none are reported `no_response`.
//! * UDP: each request datagram carries a request id; replies (possibly spread over
//!   several datagrams, sequence numbered) pair only with requests of the same id.
//! * A reply without a request (lost in a gap) is reported with `no_request`.
//!
//! After a gap the stream resynchronises (see [`parser`]). A gap inside a value costs
//! nothing but the value. Requests lost in a client-side gap are answered all the same:
//! the first request after such a gap accepts only a reply of its kind, and a reply of
//! another kind is reported on its own (`no_request`) instead of shifting the pairs after
//! it. Replies lost in a server-side gap: a client seen pipelining is matched in order,
//! skipping commands the reply cannot answer; one that is not gets the reply paired with
//! its last command, the ones before it reported `no_response`.
//!
//! Transactions: `operation` (and `db.operation.name`) is the command as sent for text
//! and meta (`get`, `set`, `mg`, `ms`, `unknown` for a line memcached does not know) and
//! the opcode name of the binary protocol specification for binary (`GET`, `GETKQ`,
//! `SETQ`, `NOOP`, `0x47` for an unknown opcode): the case tells the families apart.
//! `resource` is empty unless `redact = false` (then the first key's prefix). Attributes:
//! `db.system.name`, `db.operation.name`, `db.query.summary`, `db.response.status_code`,
//! `podtap.memcached.protocol`, `podtap.memcached.hits`, `podtap.memcached.misses`,
//! `podtap.memcached.keys`, `podtap.memcached.noreply` (see docs/SCHEMA.md).

pub mod parser;


use compact_str::{CompactString, format_compact};
use serde::{Deserialize, Serialize};

use self::parser::{
    BinHeader, REQUEST_MAGIC, RESPONSE_MAGIC, TEXT_WORD_MAX, UDP_HEADER_LEN, UdpHeader,
    distinctive, is_word_prefix, status_is_outcome, status_name,
};
pub use self::parser::{
    Class, Command, Event, Opaque, ParseError, Parser, Proto, Reply, ReplyKind, Request, Side,
};
use super::detect::Transport;
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{DecoderCounters, Event as Ev, decoder_events};
use crate::time::Timestamp;

/// `[memcached]`: settings of the memcached decoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MemcachedConfig {
    /// Commands awaiting a reply on one connection (quiet commands included: a binary
    /// multi-get of N keys is N GETKQ then a NOOP). When full, the oldest is reported
    /// (`no_response`, or settled if quiet) and counted as `l7.pending_limit`.
    /// Default 1024.
    pub max_pending: usize,
    /// Longest value believed, in bytes. Values are never buffered, only skipped by their
    /// length; a longer length is taken for damage (memcached refuses items over its `-I`
    /// limit: 1 MiB by default, 1 GiB at most): its command or reply is reported marked
    /// `truncated`, counted as `memcached.value_too_large`, and the direction
    /// resynchronises at the next message instead of skipping that many bytes.
    /// Default 134217728 (128 MiB).
    pub max_value_bytes: u64,
    /// Keep keys out of everything podtap reports. Default true: `db.query.summary` is the
    /// command alone and `podtap.resource` is empty. With false (for debugging; keys often
    /// hold user ids, session tokens or e-mail addresses, so this is dangerous) the first
    /// key's prefix up to `key_delimiter` (the whole key when there is none) becomes
    /// `podtap.resource` and follows the command in `db.query.summary` (`get user`).
    pub redact: bool,
    /// Where a key's prefix ends, for `redact = false`. Default `:`.
    pub key_delimiter: char,
}

impl Default for MemcachedConfig {
    fn default() -> Self {
        MemcachedConfig {
            max_pending: 1024,
            max_value_bytes: 128 << 20,
            redact: true,
            key_delimiter: ':',
        }
    }
}

decoder_events! {
    /// memcached's own events (`memcached.*` counters).
    pub enum MemcachedEvent {
        Malformed => "memcached.malformed", warn, "memcached reply line, binary header, reply data block or UDP frame that does not parse: the direction resynchronises";
        LineTooLong => "memcached.line_too_long", warn, "memcached text line over 8 KiB (retrieval commands excepted): skipped, the direction resynchronises";
        ValueTooLarge => "memcached.value_too_large", warn, "memcached value longer than memcached.max_value_bytes: its transaction is marked truncated and the direction resynchronises";
        NoRequest => "memcached.no_request", warn, "memcached reply without a request (lost in a gap): reported with no_request";
        GetHits => "memcached.get_hits", debug, "keys found by memcached retrieval commands (get, gets, mg, binary GET family), as memcached's get_hits";
        GetMisses => "memcached.get_misses", debug, "keys not found by memcached retrieval commands, as memcached's get_misses";
    }
}

/// What went wrong or was notable on one connection since the last `take_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemcachedStats {
    /// Lines, headers or data blocks that do not parse. → `memcached.malformed`
    pub malformed: u64,
    /// Text lines over 8 KiB (retrieval commands excepted). → `memcached.line_too_long`
    pub line_too_long: u64,
    /// Values longer than `max_value_bytes`. → `memcached.value_too_large`
    pub value_too_large: u64,
    /// Replies without a request. → `memcached.no_request`
    pub no_request: u64,
    /// Keys found and not found by retrieval commands. → `memcached.get_hits`,
    /// `memcached.get_misses`
    pub get_hits: u64,
    pub get_misses: u64,
    /// → `l7.pending_limit`
    pub pending_limit: u64,
    /// → `l7.transaction_timeout`
    pub timeouts: u64,
}

impl MemcachedStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut DecoderCounters<'_, MemcachedEvent>) {
        use MemcachedEvent::*;
        c.add_own(Malformed, self.malformed);
        c.add_own(LineTooLong, self.line_too_long);
        c.add_own(ValueTooLarge, self.value_too_large);
        c.add_own(NoRequest, self.no_request);
        c.add_own(GetHits, self.get_hits);
        c.add_own(GetMisses, self.get_misses);
        c.add(Ev::PendingLimit, self.pending_limit);
        c.add(Ev::TransactionTimeout, self.timeouts);
    }
}

/// A command awaiting its reply (or the rest of it).
struct Pending {
    command: Command,
    quiet: bool,
    noreply: bool,
    opaque: Opaque,
    /// UDP request id; `None` on TCP.
    udp_id: Option<u16>,
    keys: u32,
    hits: u32,
    misses: u32,
    /// Reply messages applied (a `get` has one per hit, then `END`).
    replies: u32,
    /// Settled without a reply (a quiet command the server went past).
    settled: bool,
    start: Timestamp,
    /// Last request or reply byte: timeouts count from here.
    last: Timestamp,
    req_bytes: u64,
    resp_bytes: u64,
    completeness: u16,
    /// The reply word that decided the outcome, when it is not a plain success.
    status_word: Option<ReplyKind>,
    bin_status: Option<u16>,
    /// The first request after a client-side gap: requests before it may have been lost.
    after_gap: bool,
    /// The first key's prefix, only with `redact = false`.
    resource: CompactString,
}

impl crate::proto::heap::HeapSize for Pending {
    /// A pending command owns no strings (its key is summarised when it is read).
    fn heap_size(&self) -> usize {
        0
    }
}

impl Pending {
    fn new(command: Command, start: Timestamp, udp_id: Option<u16>) -> Pending {
        Pending {
            command,
            quiet: false,
            noreply: false,
            opaque: Opaque::default(),
            udp_id,
            keys: 0,
            hits: 0,
            misses: 0,
            replies: 0,
            settled: false,
            start,
            last: start,
            req_bytes: 0,
            resp_bytes: 0,
            completeness: 0,
            status_word: None,
            bin_status: None,
            after_gap: false,
            resource: CompactString::default(),
        }
    }

    /// A quiet command the server went past without a word: a get missed, anything else
    /// succeeded (a delete found its key, an incr its number).
    fn settle(&mut self) {
        self.settled = true;
        match self.command.class() {
            Class::Get | Class::Gat => self.misses = self.keys.max(1),
            Class::Delete | Class::Arith | Class::Touch => self.hits = 1,
            _ => {}
        }
    }

    /// Fold one reply in; true when it completes the command.
    fn apply(&mut self, r: &Reply, ts: Timestamp) -> bool {
        self.replies += 1;
        self.resp_bytes += r.wire_len;
        self.last = ts;
        if r.gap {
            self.completeness |= Completeness::GAP;
        }
        if r.too_large {
            self.completeness |= Completeness::TRUNCATED;
        }
        let class = self.command.class();
        if r.kind == ReplyKind::Binary {
            self.bin_status = Some(r.status);
            if class == Class::BinStat {
                return r.empty || r.status != 0;
            }
            if matches!(
                class,
                Class::Get | Class::Gat | Class::Delete | Class::Arith | Class::Touch
            ) {
                match r.status {
                    0 => self.hits += 1,
                    1 => self.misses += 1,
                    _ => {}
                }
            }
            return true;
        }
        if r.kind.is_error() {
            self.status_word = Some(r.kind);
            return true;
        }
        let text = self.command.proto() == Proto::Text;
        match class {
            Class::Get | Class::Gat if text => {
                return match r.kind {
                    ReplyKind::Value => {
                        self.hits += 1;
                        false
                    }
                    ReplyKind::End => {
                        self.misses = self.keys.saturating_sub(self.hits);
                        true
                    }
                    other => {
                        self.status_word = Some(other);
                        true
                    }
                };
            }
            Class::Listing => {
                if matches!(
                    r.kind,
                    ReplyKind::Stat | ReplyKind::Item | ReplyKind::Other | ReplyKind::Number
                ) {
                    return false;
                }
            }
            _ => {}
        }
        use ReplyKind as K;
        match (class, r.kind) {
            (Class::Get | Class::Gat, K::Va | K::Hd)
            | (Class::Delete, K::Deleted | K::Hd)
            | (Class::Arith, K::Number | K::Hd | K::Va)
            | (Class::Touch, K::Touched)
            | (Class::Cas, K::Stored | K::Exists) => self.hits += 1,
            (Class::Get | Class::Gat, K::En)
            | (Class::Delete | Class::Arith | Class::Touch | Class::Cas, K::NotFound | K::Nf) => {
                self.misses += 1
            }
            _ => {}
        }
        if matches!(
            r.kind,
            K::NotStored | K::Exists | K::NotFound | K::En | K::Nf | K::Ns | K::Ex | K::Status
        ) {
            self.status_word = Some(r.kind);
        }
        true
    }
}

/// Whether `r` can be the reply of the command `p` (any error can).
fn compatible(p: &Pending, r: &Reply) -> bool {
    use ReplyKind as K;
    if r.kind.is_error() || r.kind == K::Other {
        return true;
    }
    match p.command {
        Command::Binary(op) => r.kind == K::Binary && r.opcode == op,
        Command::Mg => matches!(r.kind, K::Va | K::Hd | K::En),
        Command::Ms => matches!(r.kind, K::Hd | K::Ns | K::Ex | K::Nf),
        Command::Md => matches!(r.kind, K::Hd | K::Nf | K::Ex),
        Command::Ma => matches!(r.kind, K::Hd | K::Va | K::Nf | K::Ns | K::Ex),
        Command::Mn => r.kind == K::Mn,
        Command::Me => matches!(r.kind, K::Me | K::En),
        c => {
            if r.kind.proto() != Proto::Text {
                return false;
            }
            match c.class() {
                Class::Get | Class::Gat => matches!(r.kind, K::Value | K::End),
                Class::Store => {
                    matches!(r.kind, K::Stored | K::NotStored | K::Exists | K::NotFound)
                }
                Class::Cas => matches!(r.kind, K::Stored | K::Exists | K::NotFound),
                Class::Delete => matches!(r.kind, K::Deleted | K::NotFound),
                Class::Arith => matches!(r.kind, K::Number | K::NotFound),
                Class::Touch => matches!(r.kind, K::Touched | K::NotFound),
                Class::Listing => matches!(
                    r.kind,
                    K::Stat | K::Item | K::End | K::Ok | K::Reset | K::Status | K::Number
                ),
                Class::Version => r.kind == K::Version,
                Class::Quit => false,
                _ => true,
            }
        }
    }
}

/// Whether a reply can come from the quiet command `p`: its own opcode (binary), or a
/// reply its quiet mode does not suppress (meta: `EN` for mg, `HD` for the others). An
/// ms answers `NF` only in rare modes, where an md after it answers `NF` for every key it
/// misses: without an opaque to tell, `NF` is left to the md.
fn could_answer_quiet(p: &Pending, r: &Reply) -> bool {
    if !compatible(p, r) {
        return false;
    }
    !matches!(
        (p.command, r.kind),
        (Command::Mg, ReplyKind::En)
            | (Command::Ms | Command::Md | Command::Ma, ReplyKind::Hd)
            | (Command::Ms, ReplyKind::Nf)
    )
}

/// The command a reply without a request most likely answered (for its operation name).
fn command_of_reply(r: &Reply) -> Command {
    match r.kind {
        ReplyKind::Binary => Command::Binary(r.opcode),
        ReplyKind::Value | ReplyKind::End => Command::Get,
        ReplyKind::Stat => Command::Stats,
        ReplyKind::Va | ReplyKind::En => Command::Mg,
        ReplyKind::Mn => Command::Mn,
        ReplyKind::Me => Command::Me,
        _ => Command::Unknown,
    }
}

fn operation(c: Command) -> CompactString {
    match (c.name(), c) {
        (Some(n), _) => CompactString::const_new(n),
        (None, Command::Binary(op)) => format_compact!("0x{op:02x}"),
        (None, _) => CompactString::const_new("unknown"),
    }
}

/// The decoder's settings, as the state machine uses them.
struct Settings {
    max_pending: usize,
    redact: bool,
    delimiter: char,
}

/// Build the transaction of a finished command.
fn finish(
    s: &Settings,
    stats: &mut MemcachedStats,
    p: Pending,
    end: Timestamp,
    extra: u16,
) -> Transaction {
    let mut tx = Transaction::new(Protocol::Memcached, p.start);
    tx.end = end.max(p.start);
    let op = operation(p.command);
    tx.req_bytes = p.req_bytes;
    tx.resp_bytes = p.resp_bytes;
    tx.completeness = Completeness(p.completeness | extra);
    let class = p.command.class();
    let outcome = p.replies > 0 || p.settled;
    if class == Class::Get && outcome {
        stats.get_hits += p.hits as u64;
        stats.get_misses += p.misses as u64;
    }
    let mut status_code = None;
    if let Some(st) = p.bin_status {
        tx.status = Some(st as i64);
        if st != 0 {
            let name = match status_name(st) {
                Some(n) => CompactString::const_new(n),
                None => format_compact!("0x{st:04x}"),
            };
            if !status_is_outcome(st) {
                tx.error = Some(name.clone());
            }
            status_code = Some(name);
        }
    } else if let Some(w) = p.status_word {
        let word = CompactString::const_new(w.word());
        if w.is_error() {
            tx.error = Some(word.clone());
        }
        status_code = Some(word);
    }
    tx.attr_str("db.system.name", CompactString::const_new("memcached"));
    tx.attr_str("db.operation.name", op.clone());
    if s.redact || p.resource.is_empty() {
        tx.attr_str("db.query.summary", op.clone());
    } else {
        tx.attr_str("db.query.summary", format_compact!("{op} {}", p.resource));
    }
    if let Some(code) = status_code {
        tx.attr_str("db.response.status_code", code);
    }
    tx.attr_str("podtap.memcached.protocol", p.command.proto().as_str());
    let lookup = matches!(
        class,
        Class::Get | Class::Gat | Class::Delete | Class::Arith | Class::Touch | Class::Cas
    );
    if lookup && outcome && p.command != Command::Unknown {
        tx.attr_int("podtap.memcached.hits", p.hits as i64);
        tx.attr_int("podtap.memcached.misses", p.misses as i64);
    }
    if matches!(class, Class::Get | Class::Gat) {
        tx.attr_int("podtap.memcached.keys", p.keys as i64);
    }
    if p.noreply || p.quiet {
        tx.attr_bool("podtap.memcached.noreply", true);
    }
    tx.operation = op;
    tx.resource = p.resource;
    tx
}

/// The memcached state machine of one connection (TCP) or flow (UDP). See the module
/// documentation for the pairing rules.
pub struct MemcachedParser {
    transport: Transport,
    settings: Settings,
    /// Client side, server side.
    parsers: [Parser; 2],
    /// Time of the chunk holding the first byte of each direction's current message.
    msg_start: [Timestamp; 2],
    pending: crate::proto::heap::TrackedDeque<Pending>,
    /// UDP: the request id of the datagram being read, per direction; and the reply
    /// datagram expected next (request id, sequence number).
    udp_id: [Option<u16>; 2],
    udp_next: Option<(u16, u16)>,
    /// UDP: the frame header of the datagram being read is not counted yet (it goes to
    /// the first message read from it).
    udp_frame: [bool; 2],
    /// A client-side gap lost the framing: the next request may follow lost ones.
    req_gap: bool,
    /// A server-side gap lost the framing: replies may have been lost before the next.
    resp_gap: bool,
    /// Some gap hit this connection.
    gap_seen: bool,
    /// A reply was seen with more than one command waiting (no gap before it).
    pipelined: bool,
    /// `watch` was answered: the server now streams log lines, not replies.
    watching: bool,
    last_ts: Timestamp,
    stats: MemcachedStats,
}

impl MemcachedParser {
    pub fn new(transport: Transport, cfg: &MemcachedConfig) -> Self {
        let keep_key = !cfg.redact;
        let max_value = cfg.max_value_bytes;
        MemcachedParser {
            transport,
            settings: Settings {
                max_pending: cfg.max_pending.max(1),
                redact: cfg.redact,
                delimiter: cfg.key_delimiter,
            },
            parsers: [
                Parser::new(Side::Requests, max_value, keep_key),
                Parser::new(Side::Replies, max_value, false),
            ],
            msg_start: [Timestamp::ZERO; 2],
            pending: crate::proto::heap::TrackedDeque::new(),
            udp_id: [None; 2],
            udp_next: None,
            udp_frame: [false; 2],
            req_gap: false,
            resp_gap: false,
            gap_seen: false,
            pipelined: false,
            watching: false,
            last_ts: Timestamp::ZERO,
            stats: MemcachedStats::default(),
        }
    }

    pub fn tcp() -> Self {
        Self::new(Transport::Tcp, &MemcachedConfig::default())
    }

    pub fn udp() -> Self {
        Self::new(Transport::Udp, &MemcachedConfig::default())
    }

    /// Commands awaiting a reply.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    pub fn stats(&self) -> &MemcachedStats {
        &self.stats
    }

    /// The counts since the last call, resetting them (for folding into worker counters).
    pub fn take_stats(&mut self) -> MemcachedStats {
        std::mem::take(&mut self.stats)
    }

    fn feed(
        &mut self,
        dir: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        while !bytes.is_empty() && !self.watching {
            if self.parsers[d].between_messages() {
                self.msg_start[d] = ts;
            }
            let (n, ev) = self.parsers[d].next(bytes);
            bytes = &bytes[n..];
            match ev {
                Some(Event::Request(r)) => self.on_request(r, ts, out),
                Some(Event::Reply(r)) => self.on_reply(r, ts, out),
                Some(Event::Error(e)) => match e {
                    ParseError::LineTooLong => self.stats.line_too_long += 1,
                    ParseError::BadLine | ParseError::BadHeader => self.stats.malformed += 1,
                },
                None if n == 0 => break,
                None => {}
            }
        }
    }

    fn on_request(&mut self, r: Request, ts: Timestamp, out: &mut Vec<Transaction>) {
        let mut p = Pending::new(r.command, self.msg_start[0], self.udp_id[0]);
        p.quiet = r.quiet;
        p.noreply = r.noreply;
        p.opaque = r.opaque;
        p.keys = r.keys;
        p.last = ts;
        p.req_bytes = r.wire_len;
        if std::mem::take(&mut self.udp_frame[0]) {
            p.req_bytes += UDP_HEADER_LEN as u64;
        }
        p.after_gap = std::mem::take(&mut self.req_gap);
        if r.gap {
            p.completeness |= Completeness::GAP;
        }
        if r.too_large {
            self.stats.value_too_large += 1;
            p.completeness |= Completeness::TRUNCATED;
        }
        if !self.settings.redact
            && let Some(key) = self.parsers[0].key()
            && !key.is_empty()
        {
            let key = String::from_utf8_lossy(key);
            let prefix = key
                .split(self.settings.delimiter)
                .next()
                .unwrap_or_default();
            p.resource = CompactString::from(prefix);
        }
        if r.noreply {
            out.push(finish(&self.settings, &mut self.stats, p, ts, 0));
            return;
        }
        if self.pending.len() >= self.settings.max_pending
            && let Some(mut old) = self.pending.pop_front()
        {
            self.stats.pending_limit += 1;
            let why = if old.quiet && old.replies == 0 {
                old.settle();
                0
            } else {
                Completeness::NO_RESPONSE
            };
            out.push(finish(&self.settings, &mut self.stats, old, ts, why));
        }
        self.pending.push_back(p);
    }

    fn on_reply(&mut self, mut r: Reply, ts: Timestamp, out: &mut Vec<Transaction>) {
        let udp = self.udp_id[1];
        if std::mem::take(&mut self.udp_frame[1]) {
            r.wire_len += UDP_HEADER_LEN as u64;
        }
        if r.tentative {
            // A number read while resynchronising: an incr/decr reply only if one waits.
            let wanted = self.pending.iter().any(|p| {
                p.udp_id == udp
                    && p.replies == 0
                    && matches!(p.command, Command::Incr | Command::Decr)
            });
            if !wanted {
                return;
            }
            self.parsers[1].confirm_sync();
        }
        if r.too_large {
            self.stats.value_too_large += 1;
        }
        let gap = if self.gap_seen { Completeness::GAP } else { 0 };
        // 1. By opaque (and opcode, binary).
        let mut target = None;
        if r.opaque.is_some() {
            target = self.pending.iter().position(|p| {
                p.udp_id == udp
                    && p.opaque == r.opaque
                    && (r.kind != ReplyKind::Binary || p.command == Command::Binary(r.opcode))
            });
            if let Some(i) = target {
                target = Some(self.settle_before(i, udp, ts, gap, out));
            }
        }
        // 2. In order.
        if target.is_none() {
            target = self.in_order(&r, udp, ts, gap, out);
        }
        if r.kind == ReplyKind::Other
            && target.is_none_or(|i| self.pending[i].command.class() != Class::Listing)
        {
            // A line memcached does not send, outside a listing: not a reply to pair.
            self.stats.malformed += 1;
            self.parsers[1].lose_sync();
            return;
        }
        let Some(i) = target else {
            self.orphan(r, udp, ts, gap, out);
            return;
        };
        let Some(p) = self.pending.get_mut(i) else {
            return;
        };
        let done = p.apply(&r, ts);
        if p.command == Command::Watch && r.kind == ReplyKind::Ok {
            self.watching = true;
        }
        if done && let Some(p) = self.pending.remove(i) {
            out.push(finish(&self.settings, &mut self.stats, p, ts, 0));
        }
    }

    /// Commands of this UDP request id (all, on TCP) before index `i` are done: quiet ones
    /// were passed over in silence, the others lost their reply. Returns the new index.
    fn settle_before(
        &mut self,
        i: usize,
        udp: Option<u16>,
        ts: Timestamp,
        gap: u16,
        out: &mut Vec<Transaction>,
    ) -> usize {
        let (mut j, mut i) = (0, i);
        while j < i {
            if self.pending[j].udp_id != udp {
                j += 1;
                continue;
            }
            let Some(p) = self.pending.remove(j) else {
                break;
            };
            i -= 1;
            self.settle_or_lose(p, ts, gap, out);
        }
        i
    }

    fn settle_or_lose(
        &mut self,
        mut p: Pending,
        ts: Timestamp,
        gap: u16,
        out: &mut Vec<Transaction>,
    ) {
        let why = if p.quiet && p.replies == 0 {
            p.settle();
            0
        } else if p.replies == 0 {
            Completeness::NO_RESPONSE | gap
        } else {
            gap
        };
        let end = if p.replies > 0 { p.last } else { ts };
        out.push(finish(&self.settings, &mut self.stats, p, end, why));
    }

    /// The pending command a reply without a matching opaque answers, in order.
    fn in_order(
        &mut self,
        r: &Reply,
        udp: Option<u16>,
        ts: Timestamp,
        gap: u16,
        out: &mut Vec<Transaction>,
    ) -> Option<usize> {
        let resp_gap = std::mem::take(&mut self.resp_gap);
        // Commands waiting for a reply (not quiet, nothing received yet).
        let first = self.pending.iter().position(|p| p.udp_id == udp)?;
        let head_answering = self.pending[first].replies > 0;
        // Only whether more than one waits matters: counting stops there, so a long
        // pipeline costs no walk over all of it per reply.
        let waiting = self
            .pending
            .iter()
            .filter(|p| p.udp_id == udp && !p.quiet && p.replies == 0)
            .take(2)
            .count();
        if !head_answering && waiting > 1 {
            if !resp_gap {
                self.pipelined = true;
            } else if !self.pipelined {
                // One command at a time, yet several wait: the replies of all but the last
                // were lost in the gap.
                let last = self
                    .pending
                    .iter()
                    .rposition(|p| p.udp_id == udp && !p.quiet && p.replies == 0)?;
                let i = self.settle_before(last, udp, ts, Completeness::GAP, out);
                return Some(i);
            }
        }
        let mut j = first;
        while j < self.pending.len() {
            let p = &self.pending[j];
            if p.udp_id != udp {
                j += 1;
                continue;
            }
            if p.replies > 0 {
                if compatible(p, r) {
                    return Some(j);
                }
                // Not a line of the answer under way: its end was lost (in a gap).
                if let Some(p) = self.pending.remove(j) {
                    self.settle_or_lose(p, ts, Completeness::GAP, out);
                }
                continue;
            }
            if p.quiet && !could_answer_quiet(p, r) {
                if let Some(p) = self.pending.remove(j) {
                    self.settle_or_lose(p, ts, gap, out);
                }
                continue;
            }
            if p.after_gap && !compatible(p, r) {
                // The reply of a request lost in the client-side gap.
                return None;
            }
            if resp_gap && !compatible(p, r) {
                // Its reply was lost in the server-side gap.
                if let Some(p) = self.pending.remove(j) {
                    self.settle_or_lose(p, ts, Completeness::GAP, out);
                }
                continue;
            }
            return Some(j);
        }
        None
    }

    /// A reply no pending command takes: reported on its own, with `no_request`. One that
    /// starts a multi-line answer (`VALUE`, `STAT`) stays pending for the lines after it.
    fn orphan(
        &mut self,
        r: Reply,
        udp: Option<u16>,
        ts: Timestamp,
        gap: u16,
        out: &mut Vec<Transaction>,
    ) {
        self.stats.no_request += 1;
        let mut p = Pending::new(command_of_reply(&r), ts, udp);
        p.opaque = r.opaque;
        p.completeness = Completeness::NO_REQUEST | gap;
        if p.apply(&r, ts) {
            out.push(finish(&self.settings, &mut self.stats, p, ts, 0));
        } else {
            self.pending.push_front(p);
        }
    }

    fn on_udp(&mut self, dir: Direction, bytes: &[u8], ts: Timestamp, out: &mut Vec<Transaction>) {
        let Some((h, payload)) = UdpHeader::parse(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        let d = dir.index();
        self.udp_id[d] = Some(h.request_id);
        self.udp_frame[d] = true;
        match dir {
            Direction::ToServer => {
                // Each request datagram stands alone.
                self.parsers[d].reset();
                self.feed(dir, payload, ts, out);
                if !self.parsers[d].between_messages() {
                    self.stats.malformed += 1;
                    self.parsers[d].reset();
                }
            }
            Direction::ToClient if payload.is_empty() => {
                // The server is done with the request and has nothing to say: its quiet
                // commands succeeded (or missed).
                let mut i = 0;
                while i < self.pending.len() {
                    let p = &self.pending[i];
                    if p.udp_id != Some(h.request_id) || !p.quiet || p.replies > 0 {
                        i += 1;
                        continue;
                    }
                    if let Some(mut p) = self.pending.remove(i) {
                        p.settle();
                        p.resp_bytes += UDP_HEADER_LEN as u64;
                        out.push(finish(&self.settings, &mut self.stats, p, ts, 0));
                    }
                }
                self.udp_frame[d] = false;
            }
            Direction::ToClient => {
                let continues = self.udp_next == Some((h.request_id, h.seq));
                if !continues {
                    if h.seq == 0 {
                        // A new reply (or a new datagram of the same one: memcached sends
                        // each part of a text reply in its own datagram numbered 0 of 1).
                        if !self.parsers[d].between_messages() {
                            self.stats.malformed += 1;
                        }
                        self.parsers[d].reset();
                    } else {
                        // Datagrams of this reply were lost (or reordered).
                        self.gap_seen = true;
                        self.resp_gap = true;
                        self.parsers[d].lose_sync();
                        for p in self.pending.iter_mut() {
                            if p.udp_id == Some(h.request_id) {
                                p.completeness |= Completeness::GAP;
                            }
                        }
                    }
                }
                self.udp_next = Some((h.request_id, h.seq.wrapping_add(1)));
                self.feed(dir, payload, ts, out);
            }
        }
    }
}

impl L7Parser for MemcachedParser {
    fn heap_bytes(&self) -> usize {
        self.pending.heap_bytes()
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        self.last_ts = ts;
        match self.transport {
            Transport::Tcp => self.feed(dir, bytes, ts, out),
            Transport::Udp => self.on_udp(dir, bytes, ts, out),
        }
        if self.watching {
            Progress::Done
        } else {
            Progress::Continue
        }
    }

    /// A gap inside a value costs that value only; any other leaves the framing unknown,
    /// and the direction resynchronises on the bytes after it (see the module docs for
    /// how the pairs after it are kept).
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if self.transport != Transport::Tcp || missing == 0 {
            return;
        }
        self.gap_seen = true;
        let d = dir.index();
        if self.parsers[d].gap(missing as u64) {
            return;
        }
        match dir {
            Direction::ToServer => self.req_gap = true,
            Direction::ToClient => {
                self.resp_gap = true;
                if let Some(p) = self.pending.iter_mut().find(|p| p.replies > 0) {
                    p.completeness |= Completeness::GAP;
                }
            }
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        let gap = if self.gap_seen { Completeness::GAP } else { 0 };
        while let Some(mut p) = self.pending.pop_front() {
            let tx = if p.quiet && p.replies == 0 {
                p.settle();
                let end = p.last;
                finish(&self.settings, &mut self.stats, p, end, 0)
            } else if p.replies > 0 {
                let end = p.last;
                finish(&self.settings, &mut self.stats, p, end, why | gap)
            } else {
                finish(
                    &self.settings,
                    &mut self.stats,
                    p,
                    ts,
                    Completeness::NO_RESPONSE | why | gap,
                )
            };
            out.push(tx);
        }
        for p in &mut self.parsers {
            p.reset();
        }
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        let gap = if self.gap_seen { Completeness::GAP } else { 0 };
        let mut i = 0;
        while i < self.pending.len() {
            if now.since(self.pending[i].last) < timeout_ns {
                i += 1;
                continue;
            }
            let Some(mut p) = self.pending.remove(i) else {
                break;
            };
            let tx = if p.quiet && p.replies == 0 {
                p.settle();
                let end = p.last;
                finish(&self.settings, &mut self.stats, p, end, 0)
            } else {
                self.stats.timeouts += 1;
                let mut tx = finish(
                    &self.settings,
                    &mut self.stats,
                    p,
                    now,
                    Completeness::NO_RESPONSE | gap,
                );
                tx.error = Some(CompactString::const_new("timeout"));
                tx
            };
            out.push(tx);
        }
    }
}

/// How sure the first bytes of a flow (either direction) are memcached. Binary: a header
/// with the direction's magic (0x80 from the client, 0x81 from the server), an opcode of
/// the protocol, and the extras and key lengths that opcode takes: `Certain`. Text: a
/// command line that parses strictly (known command, arguments of the right count and
/// form, no control characters): `Likely`; a single-key `get`, `touch` and `quit` are
/// also Redis inline commands, so over TCP they need `port_hinted`. On the memcached port,
/// a line of one lower-case word or a known command with bad arguments (memcached answers
/// both with an error): `Port`. Replies (`VALUE`,
/// `END`, `STORED`, `HD`, `VA`, `EN`, ...) only with `port_hinted`. UDP: the 8-byte frame
/// header first (a request is datagram 0 of 1).
pub fn probe(bytes: &[u8], dir: Direction, transport: Transport, port_hinted: bool) -> Confidence {
    let (payload, udp) = match transport {
        Transport::Tcp => (bytes, false),
        Transport::Udp => match UdpHeader::parse(bytes) {
            Some((h, p)) if h.seq == 0 && (dir == Direction::ToClient || h.total == 1) => (p, true),
            Some(_) if port_hinted => return Confidence::Port,
            _ => return Confidence::No,
        },
    };
    let need_more = if udp {
        Confidence::No
    } else {
        Confidence::NeedMore
    };
    let side = match dir {
        Direction::ToServer => Side::Requests,
        Direction::ToClient => Side::Replies,
    };
    let Some(&first) = payload.first() else {
        return need_more;
    };
    if first == REQUEST_MAGIC || first == RESPONSE_MAGIC {
        let ours = (first == REQUEST_MAGIC) == (side == Side::Requests);
        if !ours {
            return Confidence::No;
        }
        return match BinHeader::parse(payload) {
            Some(h) if h.strict(side) => Confidence::Certain,
            Some(_) => Confidence::No,
            None if plausible_header_start(payload, side) => need_more,
            None => Confidence::No,
        };
    }
    let mut p = Parser::new(side, u64::MAX, false);
    let (_, ev) = p.next(payload);
    let text_ok = |ev: &Event| match ev {
        Event::Request(r) => {
            let known = r.command != Command::Unknown && r.valid && !r.ctl;
            if known && (distinctive(r) || port_hinted || udp) {
                Confidence::Likely
            } else if port_hinted && !r.ctl {
                // A command memcached would answer with an error (an unknown word, bad
                // arguments): nothing against it on the memcached port.
                Confidence::Port
            } else {
                Confidence::No
            }
        }
        Event::Reply(r) if port_hinted && !r.ctl && r.kind.proto() != Proto::Binary => {
            match r.kind {
                ReplyKind::Other | ReplyKind::Number => Confidence::No,
                _ => Confidence::Likely,
            }
        }
        _ => Confidence::No,
    };
    if let Some(ev) = ev {
        return text_ok(&ev);
    }
    match p.progress() {
        parser::Partial::Message(ev) => text_ok(ev),
        // A line cut short by the end of the bytes.
        parser::Partial::FirstWord(w, ctl) => {
            if !ctl && w.len() <= TEXT_WORD_MAX && is_word_prefix(w, side) {
                need_more
            } else {
                Confidence::No
            }
        }
        parser::Partial::Words {
            command,
            reply,
            ctl,
        } => {
            let known = match side {
                Side::Requests => command != Command::Unknown,
                Side::Replies => !matches!(reply, ReplyKind::Other | ReplyKind::Number),
            };
            match (known && !ctl, port_hinted) {
                (false, _) => Confidence::No,
                (true, true) => Confidence::Likely,
                (true, false) if side == Side::Replies => Confidence::No,
                (true, false) => need_more,
            }
        }
        _ => Confidence::No,
    }
}

/// The first bytes of a binary header, as far as they go, could be memcached's.
fn plausible_header_start(b: &[u8], side: Side) -> bool {
    let magic = match side {
        Side::Requests => REQUEST_MAGIC,
        Side::Replies => RESPONSE_MAGIC,
    };
    b.first() == Some(&magic)
        && b.get(1).is_none_or(|&op| parser::opcode_name(op).is_some())
        && (b.len() < 4 || u16::from_be_bytes([b[2], b[3]]) as usize <= parser::KEY_MAX)
        && b.get(4).is_none_or(|&e| e <= 20)
        && b.get(5).is_none_or(|&t| t == 0)
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for MemcachedParser {
    type Config = MemcachedConfig;
    type Shared = MemcachedConfig;
    const PORTS: &'static [u16] = &[11211];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp, Transport::Udp];
    type Events = MemcachedEvent;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        super::registry::nonzero(&[("max_pending", cfg.max_pending as u64), ("max_value_bytes", cfg.max_value_bytes)])
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(cfg.memcached.settings.clone())
    }

    fn probe(p: &Probe<'_>) -> Confidence {
        probe(p.bytes, p.dir, p.transport, p.hinted)
    }

    fn new(shared: &Self::Shared, transport: Transport) -> Self {
        MemcachedParser::new(transport, shared)
    }

    fn protocol(&self) -> Protocol {
        Protocol::Memcached
    }

    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c)
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TELEMETRY
    }
}

/// How memcached commands become metrics and spans (the database conventions).
static TELEMETRY: Telemetry = Telemetry {
    duration: super::registry::DB_DURATION,
    metric_attrs: super::registry::DB_METRIC_ATTRS,
    span_name: |tx| format!("memcached {}", tx.operation),
    attributes: &[
        "db.system.name",
        "db.operation.name",
        "db.query.summary",
        "db.response.status_code",
        "podtap.memcached.protocol",
        "podtap.memcached.hits",
        "podtap.memcached.misses",
        "podtap.memcached.keys",
        "podtap.memcached.noreply",
    ],
    base: None,
};
