//! MongoDB (`db.system.name = mongodb`): the wire protocol of every server version.
//!
//! [`parser`] frames each direction into messages and reads what the decoder needs of
//! their BSON bodies as the bytes come (no message is copied whole: see there);
//! [`MongoParser`] pairs requests with replies into one [`Transaction`] per command:
//!
//! * **Pairing.** A reply's `responseTo` names its request's `requestID`, so replies pair
//!   by id, never by order. Requests a reply went past (their replies will not come: a
//!   connection runs one command at a time) are reported `no_response`.
//! * **OP_MSG.** The command is the first key of the body (kind 0) section; the document
//!   sequences (kind 1, `insert`'s `documents`) are counted, not read. A request with
//!   `moreToCome` (an unacknowledged write) gets no reply: it is reported at once,
//!   complete, with `podtap.mongodb.more_to_come`, and takes no place in the pairing. A
//!   reply with `moreToCome` (an exhaust cursor, the streaming `hello`) is followed by
//!   further replies, each answering the one before: each is reported as a transaction of
//!   the same command with `podtap.mongodb.exhaust`. The CRC-32C of the checksum flag is
//!   skipped (TCP's checksum guarded the bytes).
//! * **Legacy.** OP_QUERY on `<db>.$cmd` is a command (its first key, or that of
//!   `$query`), on any other collection a `find`; OP_GET_MORE a `getMore`; both answered
//!   by OP_REPLY (`numberReturned` rows, `QueryFailure` and `CursorNotFound` errors).
//!   OP_INSERT, OP_UPDATE, OP_DELETE and OP_KILL_CURSORS (removed in MongoDB 6.0) get no
//!   reply: counted (`mongodb.legacy_writes`), not reported. Any other opcode is skipped
//!   by its length and counted (`mongodb.unknown_opcode`).
//! * **OP_COMPRESSED.** snappy, zlib and zstd (and noop) are decompressed into a buffer
//!   bounded by `max_decompressed_bytes` and read as the original opcode; beyond the
//!   bound, or undecodable, the message still pairs by its header (counted).
//! * **Attributes.** `db.namespace` is `$db` (or the legacy namespace's database),
//!   `db.collection.name` the command's value for the commands that name a collection
//!   there (and getMore's `collection`), `db.response.status_code` the `code` of a reply
//!   with `ok: 0` (or of its first write error), rows the size of `cursor.firstBatch` /
//!   `nextBatch`. `hello`/`isMaster` are flagged `podtap.mongodb.handshake`. No value of a
//!   document leaves the decoder but those names: no filter, no document, no
//!   authentication payload (`saslStart`, `saslContinue`, `authenticate` are reported by
//!   their name alone).
//!
//! Mid-stream pickup: the probe recognises a message header; a reply without its request
//! is reported `no_request`. After a gap inside a message only that message suffers;
//! elsewhere the direction resynchronises on the next plausible header.

pub mod parser;

use std::rc::Rc;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use self::parser::{
    CURSOR_NOT_FOUND, EXHAUST_ALLOWED, Ev, Facts, Framer, Header, Limits, MORE_TO_COME,
    OP_COMPRESSED, OP_DELETE, OP_GET_MORE, OP_INSERT, OP_KILL_CURSORS, OP_MSG, OP_QUERY,
    OP_REPLY, OP_UPDATE, QUERY_FAILURE,
};
use super::detect::Transport;
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{DecoderCounters, Event, decoder_events};
use crate::time::Timestamp;

/// `[protocols.mongodb]`: settings of the MongoDB decoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MongoConfig {
    /// Longest message believed, header included (MongoDB's own limit is 48 000 000
    /// bytes); a longer length is damage and the direction resynchronises. Default
    /// 48000000.
    pub max_message_bytes: u32,
    /// Largest body an OP_COMPRESSED message may decompress to, and hold compressed: the
    /// buffers of one connection grow up to it. Beyond it the message pairs by its header
    /// alone and is counted (`mongodb.decompress_limit`). Default 4194304 (4 MiB).
    pub max_decompressed_bytes: u32,
    /// Requests awaiting their reply per connection. Beyond it the oldest is reported
    /// `no_response` (`l7.pending_limit`). Default 256.
    pub max_pending: usize,
}

impl Default for MongoConfig {
    fn default() -> Self {
        MongoConfig {
            max_message_bytes: 48_000_000,
            max_decompressed_bytes: 4 << 20,
            max_pending: 256,
        }
    }
}

decoder_events! {
    /// MongoDB's own events (`mongodb.*` counters).
    pub enum MongoEvent {
        Malformed => "mongodb.malformed", warn, "bytes of a MongoDB connection that are no message header: the direction resynchronises at the next plausible header";
        MalformedBody => "mongodb.malformed_body", warn, "MongoDB messages whose body is not what their opcode says: paired by their header, the rest of the body skipped";
        Compressed => "mongodb.compressed", debug, "MongoDB OP_COMPRESSED messages decompressed and read";
        DecompressLimit => "mongodb.decompress_limit", warn, "MongoDB OP_COMPRESSED messages beyond mongodb.max_decompressed_bytes: paired by their header, not read";
        DecompressFailed => "mongodb.decompress_failed", warn, "MongoDB OP_COMPRESSED messages with an unknown compressor or data that does not decompress: paired by their header, not read";
        LegacyWrites => "mongodb.legacy_writes", debug, "MongoDB OP_INSERT, OP_UPDATE, OP_DELETE and OP_KILL_CURSORS (legacy, never replied to): counted, not reported";
        UnknownOpcode => "mongodb.unknown_opcode", warn, "MongoDB messages of an opcode no version sends (or a reply opcode from the client): skipped by their length";
        NoRequest => "mongodb.no_request", debug, "MongoDB replies without a request (picked up mid-stream, or lost in a gap): reported with no_request";
        Unanswered => "mongodb.unanswered", debug, "MongoDB requests a reply to a later request went past: reported no_response";
    }
}

/// What was notable on one connection since the last `take_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MongoStats {
    /// → `mongodb.malformed`
    pub malformed: u64,
    /// → `mongodb.malformed_body`
    pub malformed_body: u64,
    /// → `mongodb.compressed`
    pub compressed: u64,
    /// → `mongodb.decompress_limit`
    pub decompress_limit: u64,
    /// → `mongodb.decompress_failed`
    pub decompress_failed: u64,
    /// → `mongodb.legacy_writes`
    pub legacy_writes: u64,
    /// → `mongodb.unknown_opcode`
    pub unknown_opcode: u64,
    /// → `mongodb.no_request`
    pub no_request: u64,
    /// → `mongodb.unanswered`
    pub unanswered: u64,
    /// → `l7.pending_limit`
    pub pending_limit: u64,
    /// → `l7.transaction_timeout`
    pub timeouts: u64,
}

impl MongoStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut DecoderCounters<'_, MongoEvent>) {
        c.add_own(MongoEvent::Malformed, self.malformed);
        c.add_own(MongoEvent::MalformedBody, self.malformed_body);
        c.add_own(MongoEvent::Compressed, self.compressed);
        c.add_own(MongoEvent::DecompressLimit, self.decompress_limit);
        c.add_own(MongoEvent::DecompressFailed, self.decompress_failed);
        c.add_own(MongoEvent::LegacyWrites, self.legacy_writes);
        c.add_own(MongoEvent::UnknownOpcode, self.unknown_opcode);
        c.add_own(MongoEvent::NoRequest, self.no_request);
        c.add_own(MongoEvent::Unanswered, self.unanswered);
        c.add(Event::PendingLimit, self.pending_limit);
        c.add(Event::TransactionTimeout, self.timeouts);
    }
}

/// Commands whose first value is the collection they work on (their other first values
/// are not exported: they can be user names, scripts or other values).
const COLLECTION_COMMANDS: &[&str] = &[
    "find",
    "insert",
    "update",
    "delete",
    "aggregate",
    "count",
    "distinct",
    "findAndModify",
    "findandmodify",
    "create",
    "drop",
    "createIndexes",
    "dropIndexes",
    "deleteIndexes",
    "listIndexes",
    "collMod",
    "mapReduce",
    "mapreduce",
    "validate",
    "collStats",
    "killCursors",
    "reIndex",
    "compact",
    "geoNear",
    "geoSearch",
];

/// The handshake commands.
fn is_handshake(op: &str) -> bool {
    matches!(op, "hello" | "isMaster" | "ismaster")
}

/// Which request a transaction answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// OP_MSG, or OP_QUERY on `$cmd`.
    Command,
    /// OP_QUERY on a collection.
    Query,
    /// OP_GET_MORE.
    GetMore,
}

/// A request awaiting its reply.
struct Pending {
    request_id: u32,
    start: Timestamp,
    req_bytes: u64,
    kind: Kind,
    opcode: u32,
    /// The request's strings, shared with the connection's memo of recent ones (a
    /// pending request moves in and out of the queue: a pointer moves, not five strings).
    names: Rc<Names>,
    documents: u32,
    compressor: Option<u8>,
    malformed: bool,
    /// Not a request: the further reply a `moreToCome` reply announced.
    exhaust: bool,
    completeness: u16,
}

impl crate::proto::heap::HeapSize for Pending {
    /// The strings' block, counted whole by each holder (the memo too): a bound, not
    /// an exact count.
    fn heap_size(&self) -> usize {
        self.names.block_size()
    }
}

/// A request's strings, as the transaction reports them.
#[derive(Default)]
struct Names {
    op: CompactString,
    /// The first element's string value as read (kept as `collection` for the commands
    /// that name one).
    raw_collection: CompactString,
    collection: CompactString,
    db: CompactString,
    /// `db.query.summary`: the command and its collection (empty: none).
    summary: CompactString,
}

impl Names {
    /// The heap block of an `Rc<Names>`: the counts and the strings, and what of the
    /// strings did not fit inline.
    fn block_size(&self) -> usize {
        std::mem::size_of::<Names>()
            + 2 * std::mem::size_of::<usize>()
            + [&self.op, &self.raw_collection, &self.collection, &self.db, &self.summary]
                .into_iter()
                .map(crate::proto::heap::str_heap)
                .sum::<usize>()
    }
}

/// How a reply ended a request.
struct Reply {
    bytes: u64,
    opcode: u32,
    flags: u32,
    ok: Option<bool>,
    code: Option<i64>,
    code_name: CompactString,
    err: bool,
    write_errors: u32,
    write_error_code: Option<i64>,
    write_concern_error: bool,
    rows: Option<u64>,
    number_returned: Option<u32>,
    compressor: Option<u8>,
    malformed: bool,
}

impl Reply {
    fn of(h: &Header, f: &Facts) -> Reply {
        Reply {
            bytes: u64::from(h.len),
            opcode: f.opcode,
            flags: f.flags,
            ok: f.ok,
            code: f.code,
            code_name: CompactString::from(f.code_name.as_str()),
            err: f.err,
            write_errors: f.write_errors,
            write_error_code: f.write_error_code,
            write_concern_error: f.write_concern_error,
            rows: f.rows,
            number_returned: f.number_returned,
            compressor: f.compressor,
            malformed: f.malformed || f.gap || f.limit || f.undecodable,
        }
    }
}

/// The decoder's settings, as every connection's state machine shares them.
pub struct Settings {
    cfg: MongoConfig,
}

/// The MongoDB state machine of one connection. See the module documentation.
pub struct MongoParser {
    /// Client side, server side (boxed: a framer holds the short strings it reads, and
    /// every flow's decoder slot is sized by the largest decoder).
    framers: Box<[Framer; 2]>,
    c: Conn,
}

/// The pairing state of one connection.
struct Conn {
    settings: Arc<Settings>,
    pending: crate::proto::heap::TrackedDeque<Pending>,
    stats: MongoStats,
    gap_seen: bool,
    /// Whether the connection was picked up mid-stream (decided by the first message).
    midstream: Option<bool>,
    last: [Timestamp; 2],
    /// When the message being read in each direction began.
    msg_start: [Timestamp; 2],
    /// The strings of the last two OP_MSG requests (see `Conn::names`): two pointers,
    /// kept inline.
    recent: Recent,
}

/// The strings of a connection's last two OP_MSG requests.
#[derive(Default)]
struct Recent {
    names: [Option<Rc<Names>>; 2],
    /// What of them lies on the heap, summed when they change: the heap count is read
    /// on every chunk.
    heap: usize,
}

impl MongoParser {
    pub fn with_settings(settings: Arc<Settings>) -> Self {
        let limits = Limits {
            max_message: settings.cfg.max_message_bytes,
            max_decompressed: settings.cfg.max_decompressed_bytes,
        };
        MongoParser {
            framers: Box::new([Framer::new(limits), Framer::new(limits)]),
            c: Conn {
                settings,
                pending: crate::proto::heap::TrackedDeque::new(),
                stats: MongoStats::default(),
                gap_seen: false,
                midstream: None,
                last: [Timestamp::default(); 2],
                msg_start: [Timestamp::default(); 2],
                recent: Recent::default(),
            },
        }
    }

    pub fn new(cfg: MongoConfig) -> Self {
        Self::with_settings(Arc::new(Settings { cfg }))
    }

    pub fn take_stats(&mut self) -> MongoStats {
        std::mem::take(&mut self.c.stats)
    }
}

/// The database of a legacy namespace (`db.collection`), and the collection.
fn split_ns(ns: &str) -> (&str, &str) {
    ns.split_once('.').unwrap_or((ns, ""))
}

impl Conn {
    fn on_msg(
        &mut self,
        dir: Direction,
        h: &Header,
        f: &Facts,
        start: Timestamp,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        if f.compressor.is_some() {
            if f.limit {
                self.stats.decompress_limit += 1;
            } else if f.undecodable {
                self.stats.decompress_failed += 1;
            } else {
                self.stats.compressed += 1;
            }
        }
        if f.malformed {
            self.stats.malformed_body += 1;
        }
        // The original opcode of a compressed message.
        let opcode = f.opcode;
        match (dir, opcode) {
            (_, OP_INSERT | OP_UPDATE | OP_DELETE | OP_KILL_CURSORS) => {
                self.stats.legacy_writes += 1;
            }
            (Direction::ToServer, OP_MSG | OP_QUERY | OP_GET_MORE) => {
                self.midstream.get_or_insert(false);
                self.request(h, f, opcode, start, ts, out);
            }
            (Direction::ToClient, OP_MSG | OP_REPLY) => {
                self.midstream.get_or_insert(true);
                self.reply(h, f, ts, out);
            }
            _ => self.stats.unknown_opcode += 1,
        }
    }

    /// A request's kind and strings. An OP_MSG command like one of the last two of the
    /// connection (a client repeats a few commands on a few collections) takes their
    /// strings made then; the others are made here and remembered.
    fn names(&mut self, f: &Facts, opcode: u32) -> (Kind, Rc<Names>) {
        if opcode == OP_MSG
            && let Some(n) = self.recent.names.iter().flatten().find(|n| {
                n.op.as_bytes() == f.command.as_bytes()
                    && n.raw_collection.as_bytes() == f.collection.as_bytes()
                    && n.db.as_bytes() == f.db.as_bytes()
            })
        {
            return (Kind::Command, Rc::clone(n));
        }
        let ns = f.ns.as_str();
        let (kind, op, raw, db) = match opcode {
            OP_QUERY => {
                let (db, coll) = split_ns(ns);
                if coll == "$cmd" || coll.starts_with("$cmd.") {
                    (
                        Kind::Command,
                        f.command.as_str(),
                        f.collection.as_str(),
                        db,
                    )
                } else {
                    (Kind::Query, "find", coll, db)
                }
            }
            OP_GET_MORE => {
                let (db, coll) = split_ns(ns);
                (Kind::GetMore, "getMore", coll, db)
            }
            _ => (
                Kind::Command,
                f.command.as_str(),
                f.collection.as_str(),
                f.db.as_str(),
            ),
        };
        // The collection only where it is one (a command's other string values are not
        // exported).
        let collection = if kind != Kind::Command
            || op == "getMore"
            || COLLECTION_COMMANDS.contains(&op)
        {
            raw
        } else {
            ""
        };
        let summary = if !collection.is_empty() {
            let mut s = CompactString::with_capacity(op.len() + 1 + collection.len());
            s.push_str(op);
            s.push(' ');
            s.push_str(collection);
            s
        } else {
            CompactString::from(op)
        };
        let names = Rc::new(Names {
            op: CompactString::from(op),
            raw_collection: CompactString::from(raw),
            collection: CompactString::from(collection),
            db: CompactString::from(db),
            summary,
        });
        if opcode == OP_MSG {
            let r = &mut self.recent;
            r.names.rotate_right(1);
            r.names[0] = Some(Rc::clone(&names));
            r.heap = r.names.iter().flatten().map(|n| n.block_size()).sum();
        }
        (kind, names)
    }

    fn request(
        &mut self,
        h: &Header,
        f: &Facts,
        opcode: u32,
        start: Timestamp,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let (kind, names) = self.names(f, opcode);
        let p = Pending {
            request_id: h.request_id,
            start,
            req_bytes: u64::from(h.len),
            kind,
            opcode,
            names,
            documents: f.documents,
            compressor: f.compressor,
            malformed: f.malformed || f.gap || f.limit || f.undecodable,
            exhaust: false,
            completeness: if f.gap { Completeness::GAP } else { 0 },
        };
        if opcode == OP_MSG && f.flags & MORE_TO_COME != 0 {
            // No reply will come.
            let t = self.finish(p, ts, None, 0, out);
            t.attr_bool("podtap.mongodb.more_to_come", true);
            return;
        }
        if self.pending.len() >= self.settings.cfg.max_pending
            && let Some(old) = self.pending.pop_front()
        {
            self.stats.pending_limit += 1;
            if !old.exhaust {
                self.finish(old, ts, None, Completeness::NO_RESPONSE, out);
            }
        }
        self.pending.push_back(p);
    }

    fn reply(&mut self, h: &Header, f: &Facts, ts: Timestamp, out: &mut Vec<Transaction>) {
        let r = Reply::of(h, f);
        let found = self
            .pending
            .iter()
            .position(|p| p.request_id == h.response_to);
        let p = match found {
            Some(i) => {
                // A connection runs one command at a time: the requests before this one
                // will not be answered.
                for _ in 0..i {
                    if let Some(old) = self.pending.pop_front()
                        && !old.exhaust
                    {
                        self.stats.unanswered += 1;
                        self.finish(old, ts, None, Completeness::NO_RESPONSE, out);
                    }
                }
                self.pending.pop_front()
            }
            None => None,
        };
        let more = r.opcode == OP_MSG && r.flags & MORE_TO_COME != 0;
        let p = match p {
            Some(p) => p,
            None => {
                self.stats.no_request += 1;
                let mut c = Completeness::NO_REQUEST;
                if self.gap_seen {
                    c |= Completeness::GAP;
                }
                Pending {
                    request_id: h.response_to,
                    start: ts,
                    req_bytes: 0,
                    kind: if r.opcode == OP_REPLY {
                        Kind::Query
                    } else {
                        Kind::Command
                    },
                    opcode: 0,
                    names: Rc::default(),
                    documents: 0,
                    compressor: None,
                    malformed: false,
                    exhaust: false,
                    completeness: c,
                }
            }
        };
        let next = more.then(|| Pending {
            request_id: h.request_id,
            start: ts,
            req_bytes: 0,
            kind: p.kind,
            opcode: p.opcode,
            names: Rc::clone(&p.names),
            documents: 0,
            compressor: None,
            malformed: false,
            exhaust: true,
            completeness: 0,
        });
        self.finish(p, ts, Some(&r), 0, out);
        if let Some(n) = next {
            self.pending.push_back(n);
        }
    }

    /// The transaction of a request, with its reply if one came, added to `out` (built
    /// where it is kept: returned, it was copied there whole).
    fn finish<'o>(
        &mut self,
        p: Pending,
        end: Timestamp,
        r: Option<&Reply>,
        completeness: u16,
        out: &'o mut Vec<Transaction>,
    ) -> &'o mut Transaction {
        let t = Transaction::push_new(out, Protocol::Mongodb, p.start);
        t.end = end.max(p.start);
        t.req_bytes = p.req_bytes;
        let mut c = p.completeness | completeness;
        if self.midstream == Some(true) {
            c |= Completeness::MIDSTREAM;
        }
        if self.gap_seen && c & (Completeness::NO_RESPONSE | Completeness::NO_REQUEST) != 0 {
            c |= Completeness::GAP;
        }
        t.completeness = Completeness(c);
        t.attr_str("db.system.name", CompactString::const_new("mongodb"));
        let n = &*p.names;
        if !n.op.is_empty() {
            t.attr_str("db.operation.name", n.op.clone());
        }
        if !n.db.is_empty() {
            t.attr_str("db.namespace", n.db.clone());
        }
        if !n.collection.is_empty() {
            t.attr_str("db.collection.name", n.collection.clone());
            t.resource = n.collection.clone();
        }
        if !n.summary.is_empty() {
            t.attr_str("db.query.summary", n.summary.clone());
        }
        if is_handshake(&n.op) {
            t.attr_bool("podtap.mongodb.handshake", true);
        }
        if p.opcode != 0 && p.opcode != OP_MSG {
            t.attr_str(
                "podtap.mongodb.opcode",
                match p.opcode {
                    OP_QUERY => "OP_QUERY",
                    OP_GET_MORE => "OP_GET_MORE",
                    _ => "other",
                },
            );
        }
        if p.documents > 0 {
            t.attr_int("podtap.mongodb.documents", i64::from(p.documents));
        }
        if let Some(z) = p.compressor.or(r.and_then(|r| r.compressor)) {
            t.attr_str("podtap.mongodb.compressor", compressor_name(z));
        }
        if p.exhaust {
            t.attr_bool("podtap.mongodb.exhaust", true);
        }
        let mut unreadable = p.malformed;
        if let Some(r) = r {
            t.resp_bytes = r.bytes;
            unreadable |= r.malformed;
            let legacy_query = r.opcode == OP_REPLY && p.kind != Kind::Command;
            let error: Option<CompactString> = if r.opcode == OP_REPLY
                && r.flags & CURSOR_NOT_FOUND != 0
            {
                Some(CompactString::const_new("CursorNotFound"))
            } else if r.ok == Some(false) || (r.opcode == OP_REPLY && (r.flags & QUERY_FAILURE != 0 || r.err)) {
                if let Some(code) = r.code {
                    t.attr_str("db.response.status_code", CompactString::from(code.to_string()));
                }
                Some(if !r.code_name.is_empty() {
                    r.code_name.clone()
                } else if let Some(code) = r.code {
                    CompactString::from(code.to_string())
                } else if r.opcode == OP_REPLY && r.ok != Some(false) {
                    CompactString::const_new("QueryFailure")
                } else {
                    CompactString::const_new("CommandFailed")
                })
            } else if r.write_errors > 0 {
                // The command ran; some of its writes failed.
                match r.write_error_code {
                    Some(code) => {
                        let code = CompactString::from(code.to_string());
                        t.attr_str("db.response.status_code", code.clone());
                        Some(code)
                    }
                    None => Some(CompactString::const_new("WriteError")),
                }
            } else {
                None
            };
            if r.write_errors > 0 {
                t.attr_int("podtap.mongodb.write_errors", i64::from(r.write_errors));
            }
            if r.write_concern_error {
                t.attr_bool("podtap.mongodb.write_concern_error", true);
            }
            let rows = match (r.rows, r.number_returned) {
                (Some(n), _) => Some(n),
                (None, Some(n)) if legacy_query && error.is_none() => Some(u64::from(n)),
                _ => None,
            };
            if let Some(n) = rows {
                t.attr_int("db.response.returned_rows", n as i64);
            }
            t.error = error;
        }
        if unreadable {
            t.attr_bool("podtap.mongodb.unread", true);
        }
        t.operation = n.op.clone();
        t
    }

    fn report_all(&mut self, ts: Timestamp, why: u16, out: &mut Vec<Transaction>) {
        while let Some(p) = self.pending.pop_front() {
            // An announced further reply is no request: nothing was lost.
            if !p.exhaust {
                self.finish(p, ts, None, why, out);
            }
        }
    }
}

fn compressor_name(id: u8) -> &'static str {
    match id {
        0 => "noop",
        1 => "snappy",
        2 => "zlib",
        3 => "zstd",
        _ => "unknown",
    }
}

impl L7Parser for MongoParser {
    fn heap_bytes(&self) -> usize {
        self.c.pending.heap_bytes()
            + self.framers.iter().map(|f| f.heap_bytes()).sum::<usize>()
            + self.c.recent.heap
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        let c = &mut self.c;
        let d = dir.index();
        c.last[d] = ts;
        let framer = &mut self.framers[d];
        // A request starts at its first byte: a message split over chunks began earlier.
        if !framer.mid_message() {
            c.msg_start[d] = ts;
        }
        framer.feed(bytes, &mut |ev| {
            match ev {
                Ev::Msg(h, f) => {
                    let start = c.msg_start[d];
                    c.on_msg(dir, &h, f, start, ts, out)
                }
                Ev::Malformed => c.stats.malformed += 1,
            }
            // The next message starts in this chunk.
            c.msg_start[d] = ts;
        });
        Progress::Continue
    }

    /// A gap inside a message costs that message's body only; any other loses the
    /// framing, and the direction resynchronises on the next plausible header.
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if missing == 0 {
            return;
        }
        self.c.gap_seen = true;
        self.framers[dir.index()].gap(u64::from(missing));
        if let Some(p) = self.c.pending.front_mut() {
            p.completeness |= Completeness::GAP;
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        self.c.report_all(ts, Completeness::NO_RESPONSE | why, out);
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        let last = self.c.last[0].max(self.c.last[1]);
        if self.c.pending.is_empty() || now.since(last) < timeout_ns {
            return;
        }
        let before = out.len();
        self.c.report_all(now, Completeness::NO_RESPONSE, out);
        self.c.stats.timeouts += (out.len() - before) as u64;
        for t in &mut out[before..] {
            t.error = Some(CompactString::const_new("timeout"));
        }
    }
}

/// How sure the first bytes of a flow are MongoDB: a plausible header (a known opcode,
/// a length it can have) whose opcode fits the direction (requests carry `responseTo` 0
/// or -1), and for OP_MSG flags of the protocol and a first section of a
/// known kind: `Likely`. A header alone on a MongoDB port: `Port`.
pub fn probe(b: &[u8], dir: Direction, hinted: bool, max: u32) -> Confidence {
    if b.len() < 16 {
        // What a header's start can say: a length a message can have, and a request's
        // `responseTo` (0, or -1 from old clients).
        let word = |i: usize| b.get(i..i + 4).map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        if word(0).is_some_and(|len| !(21..=max).contains(&len))
            || (dir == Direction::ToServer && word(8).is_some_and(|to| to != 0 && to != u32::MAX))
        {
            return Confidence::No;
        }
        return Confidence::NeedMore;
    }
    let Some(h) = Header::read(b) else {
        return Confidence::NeedMore;
    };
    if !h.plausible(max) {
        // An opcode no version sends, framed by a sane length, on a MongoDB port: the
        // decoder skips and counts it.
        return if hinted && h.len >= 16 && h.len <= max && !parser::known_opcode(h.opcode) {
            Confidence::Port
        } else {
            Confidence::No
        };
    }
    let fits = match dir {
        Direction::ToServer => {
            // Old clients send -1 where newer ones send 0.
            matches!(h.response_to, 0 | u32::MAX)
                && matches!(
                    h.opcode,
                    OP_MSG | OP_QUERY | OP_GET_MORE | OP_COMPRESSED | OP_INSERT | OP_UPDATE | OP_DELETE | OP_KILL_CURSORS
                )
        }
        Direction::ToClient => matches!(h.opcode, OP_MSG | OP_REPLY | OP_COMPRESSED),
    };
    if !fits {
        return Confidence::No;
    }
    if h.opcode == OP_MSG {
        if b.len() < 21 {
            return Confidence::NeedMore;
        }
        let flags = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        if flags & !(parser::CHECKSUM_PRESENT | MORE_TO_COME | EXHAUST_ALLOWED) != 0 || b[20] > 1 {
            return Confidence::No;
        }
        return Confidence::Likely;
    }
    if h.opcode == OP_COMPRESSED {
        if b.len() < 25 {
            return Confidence::NeedMore;
        }
        let orig = u32::from_le_bytes([b[16], b[17], b[18], b[19]]);
        if !parser::known_opcode(orig) || orig == OP_COMPRESSED || b[24] > 3 {
            return Confidence::No;
        }
        return Confidence::Likely;
    }
    if h.opcode == OP_QUERY {
        // The namespace: printable up to its NUL.
        let ns = &b[20..b.len().min(h.len as usize)];
        let end = memchr::memchr(0, ns);
        let printable = ns[..end.unwrap_or(ns.len())]
            .iter()
            .all(|c| c.is_ascii_graphic());
        if printable && end.is_some_and(|n| n > 2 && ns[..n].contains(&b'.')) {
            return Confidence::Likely;
        }
        if !printable {
            return Confidence::No;
        }
    }
    if hinted {
        Confidence::Port
    } else if h.opcode == OP_REPLY && b.len() >= 36 {
        // A reply's first document length fits the message.
        let docs = h.len as usize - 36;
        let n = u32::from_le_bytes([b[32], b[33], b[34], b[35]]) as usize;
        if n > 0 && docs >= 5 {
            Confidence::Likely
        } else {
            Confidence::No
        }
    } else {
        Confidence::NeedMore
    }
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for MongoParser {
    type Config = MongoConfig;
    type Shared = Arc<Settings>;
    const PORTS: &'static [u16] = &[27017, 27018, 27019];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = MongoEvent;

    fn validate(cfg: &MongoConfig) -> Result<(), String> {
        super::registry::nonzero(&[
            ("max_message_bytes", u64::from(cfg.max_message_bytes)),
            ("max_decompressed_bytes", u64::from(cfg.max_decompressed_bytes)),
            ("max_pending", cfg.max_pending as u64),
        ])?;
        if cfg.max_message_bytes < 64 {
            return Err("max_message_bytes: must be at least 64".into());
        }
        Ok(())
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(Arc::new(Settings {
            cfg: cfg.mongodb.settings.clone(),
        }))
    }

    fn probe(p: &Probe<'_>) -> Confidence {
        probe(p.bytes, p.dir, p.hinted, MongoConfig::default().max_message_bytes)
    }

    fn new(shared: &Self::Shared, _: Transport) -> Self {
        MongoParser::with_settings(shared.clone())
    }

    fn protocol(&self) -> Protocol {
        Protocol::Mongodb
    }

    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c)
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TELEMETRY
    }
}

/// How MongoDB commands become metrics and spans (the database conventions).
static TELEMETRY: Telemetry = Telemetry {
    duration: super::registry::DB_DURATION,
    metric_attrs: super::registry::DB_METRIC_ATTRS,
    span_name: |tx| super::registry::db_span_name(tx, "mongodb"),
    attributes: &[
        "db.system.name",
        "db.namespace",
        "db.operation.name",
        "db.collection.name",
        "db.query.summary",
        "db.response.status_code",
        "db.response.returned_rows",
        "podtap.mongodb.handshake",
        "podtap.mongodb.opcode",
        "podtap.mongodb.documents",
        "podtap.mongodb.compressor",
        "podtap.mongodb.more_to_come",
        "podtap.mongodb.exhaust",
        "podtap.mongodb.write_errors",
        "podtap.mongodb.write_concern_error",
        "podtap.mongodb.unread",
    ],
    base: None,
};
