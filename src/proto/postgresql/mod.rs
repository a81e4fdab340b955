//! PostgreSQL (`db.system.name = postgresql`): the frontend/backend protocol version 3.
//!
//! [`parser`] frames each direction into messages (split anywhere, bodies borrowed, only a
//! bounded prefix kept of the few messages whose content is read); [`PgParser`] pairs
//! them into one [`Transaction`] per statement the server ran:
//!
//! * **Startup.** The StartupMessage gives the user and database (`db.namespace`: the
//!   database, else the user, as the server defaults it) and whether the connection is a
//!   replication one (`replication=true|database`: its statements carry
//!   `podtap.postgresql.replication`). An SSLRequest or GSSENCRequest the server accepts
//!   (`S`/`G`) means encryption follows: counted (`postgresql.encrypted`) and the decoder
//!   is done with the connection (after `S` it hands the connection back to detection,
//!   which finds the TLS handshake); refused (`N`), the startup follows in clear. A
//!   CancelRequest is counted (`postgresql.cancel_requests`). Authentication is not a
//!   transaction, and password messages are never read.
//! * **Simple query.** A Query may hold several statements: it is split at its top-level
//!   semicolons ([`crate::proto::sql::statements`]) and each CommandComplete (or
//!   EmptyQueryResponse) ends the next statement, the one after starting there. An
//!   ErrorResponse fails the statement under way; the server runs none after it, and
//!   those are reported `no_response` with `podtap.postgresql.skipped`.
//! * **Extended query.** Parse stores the statement's summary under its name (unnamed
//!   too) in a per-connection map bounded by `max_statements` (a Parse beyond it is
//!   counted, `postgresql.statement_limit`, and its executions are summarized from their
//!   CommandComplete tag alone); Bind points a portal at a statement (`max_portals`);
//!   each Execute is one transaction, started at its Bind, ended by its CommandComplete,
//!   EmptyQueryResponse or PortalSuspended. Many Executes may wait for one Sync
//!   (pipelining): replies are matched in order, each message type with the request that
//!   asked for it. After an ErrorResponse the server skips every message up to Sync: the
//!   error goes to the statement it stopped (the Execute after a failed Parse or Bind),
//!   and the Executes skipped are reported `no_response` with `podtap.postgresql.skipped`,
//!   never paired with a later reply.
//! * **Rows.** `db.response.returned_rows` is the count of the CommandComplete tag
//!   (`SELECT 5`, `INSERT 0 1`, `COPY 3`), else the DataRows counted.
//! * **Errors.** `db.response.status_code` and `error.type` are the SQLSTATE. The
//!   message is not exported unless `redact = false` (it can quote literals).
//! * **COPY.** One transaction: CopyData bytes of either direction are its
//!   `podtap.postgresql.copy_bytes`, the rows those of the `COPY n` tag.
//! * **Not replies.** NoticeResponse, ParameterStatus and NotificationResponse (LISTEN /
//!   NOTIFY) are counted (`postgresql.async_messages`), never paired.
//! * **Replication.** CopyBothResponse (START_REPLICATION) ends the statement that
//!   started the stream; the WAL stream after it is counted as bytes only.
//!
//! Mid-stream pickup: the probe recognises typed messages (see [`probe`]); a reply
//! without a request (its request came before the pickup, or was lost in a gap) is
//! reported with `no_request`. After a gap the direction resynchronises on the next
//! plausible message header; a gap inside a long message (rows, COPY data) costs
//! nothing but its bytes.

pub mod parser;

use std::collections::VecDeque;

use hashbrown::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use self::parser::{
    CANCEL_REQUEST, ErrorFields, Ev, Framer, GSSENC_REQUEST, Keep, Msg, SSL_REQUEST, Side,
    command_tag, cstr, cstr_lenient, error_fields, startup_code, startup_params,
};
use super::detect::Transport;
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::sql::{self, Dialect};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{DecoderCounters, Event, decoder_events};
use crate::time::Timestamp;

/// `[protocols.postgresql]`: settings of the PostgreSQL decoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PgConfig {
    /// Named prepared statements remembered per connection (name → summary). A Parse
    /// beyond it is counted (`postgresql.statement_limit`) and its executions are
    /// summarized from their CommandComplete tag. Default 1024.
    pub max_statements: usize,
    /// Named portals remembered per connection. Default 64.
    pub max_portals: usize,
    /// Requests awaiting their reply per connection (a pipeline's depth, every Parse,
    /// Bind, Describe, Execute and Sync counted). Beyond it the oldest is reported
    /// `no_response` (`l7.pending_limit`). Default 1024.
    pub max_pending: usize,
    /// Bytes of a query's text read for its summary (and its `db.query.text`); a longer
    /// query is summarized from its start. Default 4096.
    pub max_query_bytes: u32,
    /// Export `db.query.text`: the statement with every literal replaced by `?`, comments
    /// dropped, whitespace collapsed, cut at `max_query_text_bytes`. Default false.
    pub query_text: bool,
    /// Longest `db.query.text`, in bytes. Default 1024.
    pub max_query_text_bytes: usize,
    /// Keep literals out of every record. Default true. DANGEROUS when false: with
    /// `query_text` the text is exported as sent (literals included), and the
    /// ErrorResponse message (which often quotes values) as
    /// `podtap.postgresql.error.message`. For debugging only.
    pub redact: bool,
}

impl Default for PgConfig {
    fn default() -> Self {
        PgConfig {
            max_statements: 1024,
            max_portals: 64,
            max_pending: 1024,
            max_query_bytes: 4096,
            query_text: false,
            max_query_text_bytes: 1024,
            redact: true,
        }
    }
}

decoder_events! {
    /// PostgreSQL's own events (`postgresql.*` counters).
    pub enum PgEvent {
        Malformed => "postgresql.malformed", warn, "bytes of a PostgreSQL connection that are no message: the direction resynchronises at the next plausible message";
        Encrypted => "postgresql.encrypted", debug, "PostgreSQL SSLRequest or GSSENCRequest accepted: the connection is encrypted from there (TLS is detected afresh)";
        CancelRequests => "postgresql.cancel_requests", debug, "PostgreSQL CancelRequest connections";
        StatementLimit => "postgresql.statement_limit", warn, "PostgreSQL Parse of a named statement beyond postgresql.max_statements: its executions are summarized from their CommandComplete tag";
        PortalLimit => "postgresql.portal_limit", warn, "PostgreSQL Bind of a named portal beyond postgresql.max_portals";
        UnknownStatement => "postgresql.unknown_statement", debug, "PostgreSQL Bind or Execute of a statement or portal never seen (prepared before the pickup, or beyond the limits)";
        NoRequest => "postgresql.no_request", debug, "PostgreSQL reply without a request (picked up mid-stream, or lost in a gap): reported with no_request";
        Skipped => "postgresql.skipped", debug, "PostgreSQL statements the server skipped after an error: reported no_response with podtap.postgresql.skipped";
        AsyncMessages => "postgresql.async_messages", debug, "PostgreSQL NoticeResponse, ParameterStatus and NotificationResponse: counted, not paired";
        UnpairedErrors => "postgresql.unpaired_errors", warn, "PostgreSQL ErrorResponse with no statement to pin it on (startup, authentication, shutdown)";
    }
}

/// What was notable on one connection since the last `take_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PgStats {
    /// → `postgresql.malformed`
    pub malformed: u64,
    /// → `postgresql.encrypted`
    pub encrypted: u64,
    /// → `postgresql.cancel_requests`
    pub cancel_requests: u64,
    /// → `postgresql.statement_limit`
    pub statement_limit: u64,
    /// → `postgresql.portal_limit`
    pub portal_limit: u64,
    /// → `postgresql.unknown_statement`
    pub unknown_statement: u64,
    /// → `postgresql.no_request`
    pub no_request: u64,
    /// → `postgresql.skipped`
    pub skipped: u64,
    /// → `postgresql.async_messages`
    pub async_messages: u64,
    /// → `postgresql.unpaired_errors`
    pub unpaired_errors: u64,
    /// → `l7.pending_limit`
    pub pending_limit: u64,
    /// → `l7.transaction_timeout`
    pub timeouts: u64,
}

impl PgStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut DecoderCounters<'_, PgEvent>) {
        c.add_own(PgEvent::Malformed, self.malformed);
        c.add_own(PgEvent::Encrypted, self.encrypted);
        c.add_own(PgEvent::CancelRequests, self.cancel_requests);
        c.add_own(PgEvent::StatementLimit, self.statement_limit);
        c.add_own(PgEvent::PortalLimit, self.portal_limit);
        c.add_own(PgEvent::UnknownStatement, self.unknown_statement);
        c.add_own(PgEvent::NoRequest, self.no_request);
        c.add_own(PgEvent::Skipped, self.skipped);
        c.add_own(PgEvent::AsyncMessages, self.async_messages);
        c.add_own(PgEvent::UnpairedErrors, self.unpaired_errors);
        c.add(Event::PendingLimit, self.pending_limit);
        c.add(Event::TransactionTimeout, self.timeouts);
    }
}

/// What a statement's text says, computed once per Parse (or Query).
#[derive(Debug, Default)]
struct Stmt {
    /// The operation (empty when the text names none), made once: each execution clones
    /// it.
    op: CompactString,
    collection: CompactString,
    summary: CompactString,
    text: Option<CompactString>,
}

/// The decoder's settings, as every connection's state machine shares them.
pub struct Settings {
    cfg: PgConfig,
}

impl Settings {
    fn stmt(&self, memo: &mut sql::SummaryMemo, text: &str, truncated: bool) -> Stmt {
        let s = memo.summarize(Dialect::Postgres, text);
        let mut st = Stmt {
            op: s.operation.map(CompactString::from).unwrap_or_default(),
            collection: s.collection.map(CompactString::from).unwrap_or_default(),
            summary: CompactString::default(),
            text: None,
        };
        if let Some(op) = s.operation {
            st.summary = match s.collection {
                Some(c) => {
                    let mut x = CompactString::with_capacity(op.len() + 1 + c.len());
                    x.push_str(op);
                    x.push(' ');
                    x.push_str(c);
                    x
                }
                None => CompactString::const_new(op),
            };
        }
        if self.cfg.query_text {
            let max = self.cfg.max_query_text_bytes;
            let mut out = String::new();
            if self.cfg.redact {
                sql::normalize_in(Dialect::Postgres, text, max, &mut out);
            } else {
                let mut n = text.len().min(max);
                while !text.is_char_boundary(n) {
                    n -= 1;
                }
                out.push_str(&text[..n]);
                if n < text.len() || truncated {
                    out.push_str(sql::CUT_MARK);
                }
            }
            st.text = Some(CompactString::from(out));
        }
        st
    }
}

/// The valid UTF-8 start of `b` (query texts cut at a bound may end inside a character;
/// a client encoding other than UTF-8 is read as far as it is ASCII-compatible).
fn utf8_prefix(b: &[u8]) -> &str {
    match std::str::from_utf8(b) {
        Ok(s) => s,
        Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
    }
}

/// Where a statement's summary comes from: its own Query text (owned, no allocation of
/// its own), a prepared statement (shared with the statement map), or nowhere.
enum Src {
    None,
    /// Boxed: a pending request moves in and out of the queue, and the statement inline
    /// would make every one of them (mostly `Shared`) three times as big to move.
    Own(Box<Stmt>),
    /// `Rc`, not `Arc`: a connection's state never leaves its worker's thread, and each
    /// execution clones and drops the statement several times (Bind, the portal, the
    /// Execute): atomic counts there were measurable in a pgbench replay's time (its
    /// fastest of 31 runs 3% slower).
    Shared(Rc<Stmt>),
}

impl Src {
    fn get(&self) -> Option<&Stmt> {
        match self {
            Src::None => None,
            Src::Own(s) => Some(s),
            Src::Shared(s) => Some(s),
        }
    }
}

impl From<Option<Rc<Stmt>>> for Src {
    fn from(s: Option<Rc<Stmt>>) -> Src {
        s.map_or(Src::None, Src::Shared)
    }
}

/// A statement under way.
struct Tx {
    stmt: Src,
    /// A FunctionCall: its operation, there being no statement text.
    function: bool,
    start: Timestamp,
    req_bytes: u64,
    resp_bytes: u64,
    rows: u64,
    copy_bytes: u64,
    copy: bool,
    completeness: u16,
}

impl Tx {
    fn new(stmt: impl Into<Src>, start: Timestamp) -> Tx {
        Tx {
            stmt: stmt.into(),
            function: false,
            start,
            req_bytes: 0,
            resp_bytes: 0,
            rows: 0,
            copy_bytes: 0,
            copy: false,
            completeness: 0,
        }
    }
}

/// A simple Query: the statement under way and the text of those after it.
struct Query {
    cur: Option<Tx>,
    /// The statements not started yet (only for a multi-statement text).
    rest: Option<Box<str>>,
    truncated: bool,
    failed: bool,
}

/// What the server owes, in the order the client asked.
enum Exp {
    Parse(Option<Rc<Stmt>>),
    Bind(Option<Rc<Stmt>>),
    Describe,
    Close,
    Sync,
    Execute(Tx),
    Func(Tx),
    /// Boxed: the rarer request, and the biggest; inline it would make every other one
    /// bigger to move in and out of the queue.
    Query(Box<Query>),
}

impl Exp {
    fn tx_mut(&mut self) -> Option<&mut Tx> {
        match self {
            Exp::Execute(t) | Exp::Func(t) => Some(t),
            Exp::Query(q) => q.cur.as_mut(),
            _ => None,
        }
    }
}

/// How a finished statement ended.
#[derive(Default)]
struct End<'a> {
    tag: Option<(&'a [u8], Option<u64>)>,
    error: Option<ErrorFields<'a>>,
    completeness: u16,
    skipped: bool,
    suspended: bool,
}

/// The PostgreSQL state machine of one connection. See the module documentation.
pub struct PgParser {
    /// Client side, server side.
    framers: [Framer; 2],
    /// Everything else: apart, so that a message borrowed from a framer can be handled.
    c: Conn,
}

/// A statement or portal name looked up as sent: hashed as the map's `Box<[u8]>` keys
/// are, compared inline (the names are short: a call to `memcmp` per Bind was a
/// percent of a pgbench replay's time).
#[derive(Hash)]
struct Name<'a>(&'a [u8]);

impl hashbrown::Equivalent<Box<[u8]>> for Name<'_> {
    #[inline]
    fn equivalent(&self, key: &Box<[u8]>) -> bool {
        crate::bytes::same_text(self.0, key)
    }
}

/// The pairing state of one connection.
struct Conn {
    settings: Arc<Settings>,
    /// The client sent SSLRequest/GSSENCRequest: the server's next byte answers it.
    want_encryption_answer: bool,
    pending: VecDeque<Exp>,
    /// Keyed by the name's bytes as sent: a Bind or Execute looks its name up without
    /// checking it is text first (names are the server's identifiers, any bytes but NUL).
    statements: HashMap<Box<[u8]>, Rc<Stmt>>,
    unnamed: Option<Rc<Stmt>>,
    portals: HashMap<Box<[u8]>, Option<Rc<Stmt>>>,
    unnamed_portal: Option<Rc<Stmt>>,
    namespace: CompactString,
    replication: Option<&'static str>,
    /// Client bytes of Parse/Bind/Describe/Sync not yet counted to an Execute, and when
    /// the first of them came.
    req_acc: u64,
    batch_start: Option<Timestamp>,
    /// Server bytes not yet counted to a statement.
    resp_acc: u64,
    /// An ErrorResponse came and the client's Sync has not: the server skips what comes.
    skip_until_sync: bool,
    /// The replication stream (after CopyBothResponse): bytes only.
    streaming: bool,
    /// Encryption was accepted: nothing more to read.
    done: bool,
    /// ... and it is TLS (SSLRequest), which the session detects afresh.
    tls_follows: bool,
    /// No startup was seen: the connection was picked up mid-stream.
    midstream: Option<bool>,
    gap_seen: bool,
    last: [Timestamp; 2],
    stats: PgStats,
    /// The last statement's summary: the next one usually repeats its shape.
    memo: sql::SummaryMemo,
}

impl PgParser {
    pub fn new(cfg: &PgConfig) -> Self {
        Self::with_settings(Arc::new(Settings { cfg: cfg.clone() }))
    }

    fn with_settings(settings: Arc<Settings>) -> Self {
        let keep = Keep {
            query: settings.cfg.max_query_bytes,
            error: if settings.cfg.redact { 128 } else { 1024 },
        };
        PgParser {
            framers: [
                Framer::new(Side::Client, keep),
                Framer::new(Side::Server, keep),
            ],
            c: Conn {
                settings,
                want_encryption_answer: false,
                pending: VecDeque::new(),
                statements: HashMap::new(),
                unnamed: None,
                portals: HashMap::new(),
                unnamed_portal: None,
                namespace: CompactString::default(),
                replication: None,
                req_acc: 0,
                batch_start: None,
                resp_acc: 0,
                skip_until_sync: false,
                streaming: false,
                done: false,
                tls_follows: false,
                midstream: None,
                gap_seen: false,
                last: [Timestamp::ZERO; 2],
                stats: PgStats::default(),
                memo: Default::default(),
            },
        }
    }

    pub fn stats(&self) -> &PgStats {
        &self.c.stats
    }

    /// The counts since the last call, resetting them.
    pub fn take_stats(&mut self) -> PgStats {
        std::mem::take(&mut self.c.stats)
    }

    /// Statements awaiting their reply.
    pub fn pending(&self) -> usize {
        self.c.pending.len()
    }

    fn feed(
        &mut self,
        dir: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        let c = &mut self.c;
        while !bytes.is_empty() && !c.done {
            let (n, ev) = self.framers[d].next(bytes);
            match ev {
                Some(Ev::Msg(m)) => match dir {
                    Direction::ToServer => c.on_client(m, ts, out),
                    Direction::ToClient => c.on_server(m, ts, out),
                },
                // Refused (`N`): the startup follows in clear.
                Some(Ev::EncryptionAnswer(a)) if a != b'N' => {
                    c.stats.encrypted += 1;
                    c.done = true;
                    // TLS follows an accepted SSLRequest: another decoder's to read.
                    c.tls_follows = a == b'S';
                }
                Some(Ev::EncryptionAnswer(_)) => {}
                Some(Ev::Malformed) => c.stats.malformed += 1,
                None => {}
            }
            if c.want_encryption_answer {
                c.want_encryption_answer = false;
                self.framers[1].encryption_answer_next = true;
            }
            if n == 0 {
                break;
            }
            bytes = &bytes[n..];
        }
    }
}

impl Conn {
    fn push(&mut self, e: Exp, ts: Timestamp, out: &mut Vec<Transaction>) {
        if self.pending.len() >= self.settings.cfg.max_pending.max(1)
            && let Some(mut old) = self.pending.pop_front()
        {
            self.stats.pending_limit += 1;
            self.report_exp(&mut old, ts, Completeness::NO_RESPONSE, false, out);
        }
        self.pending.push_back(e);
    }

    fn on_client(&mut self, m: Msg<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        let first = self.midstream.is_none();
        if first {
            self.midstream = Some(m.tag != 0);
        }
        let wire = m.wire_len();
        match m.tag {
            0 => self.on_startup(m),
            b'Q' => {
                let text = utf8_prefix(cstr_lenient(m.body));
                let truncated = !m.whole;
                let mut it = sql::statements(Dialect::Postgres, text);
                let first = it.next();
                let rest = it.next().map(|second| {
                    let off = second.as_ptr() as usize - text.as_ptr() as usize;
                    Box::<str>::from(&text[off..])
                });
                let cur = first.map(|s| {
                    let stmt = self.settings.stmt(&mut self.memo, s, truncated);
                    let mut tx = Tx::new(Src::Own(Box::new(stmt)), ts);
                    tx.req_bytes = wire;
                    tx
                });
                self.push(
                    Exp::Query(Box::new(Query {
                        cur,
                        rest,
                        truncated,
                        failed: false,
                    })),
                    ts,
                    out,
                );
            }
            b'P' => {
                self.batch(wire, ts);
                let Some((name, rest)) = cstr(m.body) else {
                    return;
                };
                let text = utf8_prefix(cstr_lenient(rest));
                let stmt = Rc::new(self.settings.stmt(&mut self.memo, text, !m.whole));
                if name.is_empty() {
                    self.unnamed = Some(stmt.clone());
                } else if let Some(old) = self.statements.get_mut(&Name(name)) {
                    *old = stmt.clone();
                } else if self.statements.len() >= self.settings.cfg.max_statements {
                    self.stats.statement_limit += 1;
                } else {
                    self.statements.insert(name.into(), stmt.clone());
                }
                if !self.skip_until_sync {
                    self.push(Exp::Parse(Some(stmt)), ts, out);
                }
            }
            b'B' => {
                self.batch(wire, ts);
                let (portal, rest) = cstr(m.body).unwrap_or((m.body, &[]));
                let name = cstr_lenient(rest);
                let stmt = if name.is_empty() {
                    self.unnamed.clone()
                } else {
                    let s = self.statements.get(&Name(name)).cloned();
                    if s.is_none() {
                        self.stats.unknown_statement += 1;
                    }
                    s
                };
                if portal.is_empty() {
                    self.unnamed_portal = stmt.clone();
                } else if let Some(old) = self.portals.get_mut(&Name(portal)) {
                    *old = stmt.clone();
                } else if self.portals.len() >= self.settings.cfg.max_portals {
                    self.stats.portal_limit += 1;
                } else {
                    self.portals.insert(portal.into(), stmt.clone());
                }
                if !self.skip_until_sync {
                    self.push(Exp::Bind(stmt), ts, out);
                }
            }
            b'D' => {
                self.batch(wire, ts);
                if !self.skip_until_sync {
                    self.push(Exp::Describe, ts, out);
                }
            }
            b'C' => {
                self.batch(wire, ts);
                if let Some((&kind, rest)) = m.body.split_first() {
                    let name = cstr_lenient(rest);
                    match kind {
                        b'S' if name.is_empty() => self.unnamed = None,
                        b'S' => {
                            self.statements.remove(&Name(name));
                        }
                        b'P' if name.is_empty() => self.unnamed_portal = None,
                        b'P' => {
                            self.portals.remove(&Name(name));
                        }
                        _ => {}
                    }
                }
                if !self.skip_until_sync {
                    self.push(Exp::Close, ts, out);
                }
            }
            b'E' => {
                let portal = cstr_lenient(m.body);
                let stmt = if portal.is_empty() {
                    self.unnamed_portal.clone()
                } else {
                    match self.portals.get(&Name(portal)) {
                        Some(s) => s.clone(),
                        None => {
                            self.stats.unknown_statement += 1;
                            None
                        }
                    }
                };
                let mut tx = Tx::new(stmt, self.batch_start.take().unwrap_or(ts));
                tx.req_bytes = std::mem::take(&mut self.req_acc) + wire;
                if self.skip_until_sync {
                    self.stats.skipped += 1;
                    self.finish(
                        tx,
                        ts,
                        End {
                            completeness: Completeness::NO_RESPONSE,
                            skipped: true,
                            ..End::default()
                        },
                    out,
                    );
                } else {
                    self.push(Exp::Execute(tx), ts, out);
                }
            }
            b'S' => {
                self.req_acc += wire;
                self.skip_until_sync = false;
                self.batch_start = None;
                self.push(Exp::Sync, ts, out);
            }
            b'F' => {
                let mut tx = Tx::new(Src::None, ts);
                tx.function = true;
                tx.req_bytes = wire;
                if !self.skip_until_sync {
                    self.push(Exp::Func(tx), ts, out);
                }
            }
            b'd' | b'c' | b'f' => {
                if let Some(tx) = self.pending.front_mut().and_then(Exp::tx_mut) {
                    tx.req_bytes += wire;
                    if m.tag == b'd' {
                        tx.copy_bytes += m.len as u64;
                        tx.copy = true;
                    }
                }
            }
            // Flush asks for nothing; Terminate ends the connection; password messages
            // (`p`) are never read.
            _ => {}
        }
    }

    /// Parse, Bind, Describe and Close bytes go to the next Execute, which starts with the
    /// first of them.
    fn batch(&mut self, wire: u64, ts: Timestamp) {
        self.req_acc += wire;
        self.batch_start.get_or_insert(ts);
    }

    fn on_startup(&mut self, m: Msg<'_>) {
        match startup_code(m.body) {
            Some(SSL_REQUEST | GSSENC_REQUEST) => self.want_encryption_answer = true,
            Some(CANCEL_REQUEST) => self.stats.cancel_requests += 1,
            Some(code) if code >> 16 == 3 => {
                let (mut user, mut db) = (None, None);
                for (k, v) in startup_params(m.body) {
                    match k {
                        b"user" => user = Some(v),
                        b"database" => db = Some(v),
                        b"replication" => {
                            self.replication = match v {
                                b"database" => Some("logical"),
                                b"true" | b"on" | b"yes" | b"1" => Some("physical"),
                                _ => None,
                            }
                        }
                        _ => {}
                    }
                }
                if let Some(ns) = db.filter(|d| !d.is_empty()).or(user) {
                    self.namespace = CompactString::from(utf8_prefix(ns));
                }
            }
            _ => self.stats.malformed += 1,
        }
    }

    fn on_server(&mut self, m: Msg<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        // The server never speaks first: a reply before any request means a pickup.
        self.midstream.get_or_insert(true);
        let wire = m.wire_len();
        if self.streaming {
            return;
        }
        self.resp_acc += wire;
        match m.tag {
            b'S' | b'N' | b'A' => self.stats.async_messages += 1,
            b'1' => self.answer(|e| matches!(e, Exp::Parse(_)), ts, out),
            b'2' => self.answer(|e| matches!(e, Exp::Bind(_)), ts, out),
            b'3' => self.answer(|e| matches!(e, Exp::Close), ts, out),
            b'n' => self.answer(|e| matches!(e, Exp::Describe), ts, out),
            b'T' if matches!(self.pending.front(), Some(Exp::Describe)) => {
                self.answer(|e| matches!(e, Exp::Describe), ts, out)
            }
            b'D' => {
                if let Some(tx) = self.pending.front_mut().and_then(Exp::tx_mut) {
                    tx.rows += 1;
                }
            }
            b'd' => {
                if let Some(tx) = self.pending.front_mut().and_then(Exp::tx_mut) {
                    tx.copy_bytes += m.len as u64;
                    tx.copy = true;
                }
            }
            b'G' | b'H' => {
                if let Some(tx) = self.pending.front_mut().and_then(Exp::tx_mut) {
                    tx.copy = true;
                }
            }
            b'W' => {
                // START_REPLICATION: the statement is done, the stream begins.
                self.complete(ts, End::default(), out);
                self.streaming = true;
            }
            b'C' => {
                let tag = command_tag(m.body);
                self.complete(
                    ts,
                    End {
                        tag: Some(tag),
                        ..End::default()
                    },
                    out,
                );
            }
            b'I' => self.complete(ts, End::default(), out),
            b's' => self.complete(
                ts,
                End {
                    suspended: true,
                    ..End::default()
                },
                out,
            ),
            b'V' => self.complete(ts, End::default(), out),
            b'E' => self.on_error(error_fields(m.body), ts, out),
            b'Z' => self.ready(ts, out),
            // Authentication, BackendKeyData, ParameterDescription, RowDescription of a
            // statement, CopyDone, NegotiateProtocolVersion: nothing to pair.
            _ => {}
        }
    }

    /// A reply to a Parse, Bind, Describe or Close: the first such request waiting; the
    /// requests before it lost their replies (a gap).
    fn answer(&mut self, is: impl Fn(&Exp) -> bool, ts: Timestamp, out: &mut Vec<Transaction>) {
        // Mostly the first one: no search.
        if self.pending.front().is_some_and(&is) {
            self.pending.pop_front();
            return;
        }
        let Some(i) = self.pending.iter().take(64).position(is) else {
            return;
        };
        for _ in 0..i {
            if let Some(mut e) = self.pending.pop_front() {
                self.report_exp(
                    &mut e,
                    ts,
                    Completeness::NO_RESPONSE | Completeness::GAP,
                    false,
                    out,
                );
            }
        }
        self.pending.pop_front();
    }

    /// The first statement waiting (Execute, FunctionCall or the Query's current one),
    /// with the Parse/Bind/Describe/Close before it answered or lost.
    fn statement_front(&mut self, ts: Timestamp, out: &mut Vec<Transaction>) -> bool {
        if matches!(
            self.pending.front(),
            Some(Exp::Execute(_) | Exp::Func(_) | Exp::Query(_))
        ) {
            return true;
        }
        let Some(i) = self
            .pending
            .iter()
            .take(64)
            .position(|e| matches!(e, Exp::Execute(_) | Exp::Func(_) | Exp::Query(_)))
        else {
            return false;
        };
        for _ in 0..i {
            if let Some(mut e) = self.pending.pop_front() {
                self.report_exp(
                    &mut e,
                    ts,
                    Completeness::NO_RESPONSE | Completeness::GAP,
                    false,
                    out,
                );
            }
        }
        true
    }

    /// A statement ended (CommandComplete, EmptyQueryResponse, PortalSuspended,
    /// FunctionCallResponse, CopyBothResponse).
    fn complete(&mut self, ts: Timestamp, end: End<'_>, out: &mut Vec<Transaction>) {
        if !self.statement_front(ts, out) {
            // A reply without its request.
            if end.tag.is_some() {
                self.stats.no_request += 1;
                let tx = Tx::new(Src::None, ts);
                self.finish(
                    tx,
                    ts,
                    End {
                        completeness: Completeness::NO_REQUEST,
                        ..end
                    },
                out,
                );
            }
            return;
        }
        match self.pending.front_mut() {
            Some(Exp::Query(q)) => {
                let cur = q.cur.take();
                let next = self.next_statement(ts);
                if let Some(Exp::Query(q)) = self.pending.front_mut() {
                    q.cur = next;
                }
                let tx = cur.unwrap_or_else(|| Tx::new(Src::None, ts));
                if end.tag.is_none() && tx.stmt.get().is_none() {
                    // An empty query: nothing ran.
                    return;
                }
                self.finish(tx, ts, end, out);
            }
            Some(Exp::Execute(_) | Exp::Func(_)) => {
                if let Some(Exp::Execute(tx) | Exp::Func(tx)) = self.pending.pop_front() {
                    self.finish(tx, ts, end, out);
                }
            }
            _ => {}
        }
    }

    /// The next statement of the Query at the front, starting at `ts`.
    fn next_statement(&mut self, ts: Timestamp) -> Option<Tx> {
        let Some(Exp::Query(q)) = self.pending.front_mut() else {
            return None;
        };
        let rest = q.rest.take()?;
        let truncated = q.truncated;
        let mut it = sql::statements(Dialect::Postgres, &rest);
        let s = it.next()?;
        let stmt = self.settings.stmt(&mut self.memo, s, truncated);
        let after = it.next().map(|second| {
            let off = second.as_ptr() as usize - rest.as_ptr() as usize;
            Box::<str>::from(&rest[off..])
        });
        if let Some(Exp::Query(q)) = self.pending.front_mut() {
            q.rest = after;
        }
        Some(Tx::new(Src::Own(Box::new(stmt)), ts))
    }

    fn on_error(&mut self, err: ErrorFields<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        let end = || End {
            error: Some(err),
            ..End::default()
        };
        let Some(front) = self.pending.front_mut() else {
            self.stats.unpaired_errors += 1;
            return;
        };
        match front {
            Exp::Query(q) => {
                q.failed = true;
                let tx = q.cur.take().unwrap_or_else(|| Tx::new(Src::None, ts));
                self.finish(tx, ts, end(), out);
                return;
            }
            Exp::Sync => {
                // An error of the implicit transaction's commit: no statement to pin it on.
                self.stats.unpaired_errors += 1;
                return;
            }
            _ => {}
        }
        // Extended protocol: the failed message, and every one up to Sync skipped.
        let mut failed = self.pending.pop_front();
        let mut reported = false;
        if let Some(Exp::Execute(tx) | Exp::Func(tx)) =
            failed.take_if(|e| matches!(e, Exp::Execute(_) | Exp::Func(_)))
        {
            self.finish(tx, ts, end(), out);
            reported = true;
        }
        let mut synced = false;
        while let Some(e) = self.pending.front() {
            if matches!(e, Exp::Sync | Exp::Query(_)) {
                synced = true;
                break;
            }
            let Some(mut e) = self.pending.pop_front() else {
                break;
            };
            match e {
                Exp::Execute(tx) | Exp::Func(tx) if !reported => {
                    // The statement a failed Parse, Bind or Describe stopped.
                    self.finish(tx, ts, end(), out);
                    reported = true;
                }
                _ => {
                    if e.tx_mut().is_some() {
                        self.stats.skipped += 1;
                    }
                    self.report_exp(&mut e, ts, Completeness::NO_RESPONSE, true, out);
                }
            }
        }
        if !reported {
            // No Execute (yet) to carry it: the failed Parse or Bind is reported itself.
            let stmt = match failed {
                Some(Exp::Parse(s) | Exp::Bind(s)) => s,
                _ => None,
            };
            self.finish(Tx::new(stmt, self.batch_start.unwrap_or(ts)), ts, end(), out);
        }
        self.skip_until_sync = !synced;
    }

    /// ReadyForQuery: the Sync or Query it answers is done, with whatever was still
    /// waiting before it.
    fn ready(&mut self, ts: Timestamp, out: &mut Vec<Transaction>) {
        // Mostly a Sync with nothing before it: no search, nothing to report.
        if matches!(self.pending.front(), Some(Exp::Sync)) {
            self.pending.pop_front();
            self.resp_acc = 0;
            return;
        }
        let Some(i) = self
            .pending
            .iter()
            .position(|e| matches!(e, Exp::Sync | Exp::Query(_)))
        else {
            return;
        };
        for _ in 0..i {
            if let Some(mut e) = self.pending.pop_front() {
                let gap = if self.gap_seen { Completeness::GAP } else { 0 };
                self.report_exp(&mut e, ts, Completeness::NO_RESPONSE | gap, false, out);
            }
        }
        if let Some(mut e) = self.pending.pop_front() {
            let failed = matches!(&e, Exp::Query(q) if q.failed);
            self.report_exp(&mut e, ts, Completeness::NO_RESPONSE, failed, out);
            if let Exp::Query(q) = &mut e
                && failed
            {
                // The statements after the failed one never ran.
                while let Some(rest) = q.rest.take() {
                    let mut it = sql::statements(Dialect::Postgres, &rest);
                    let Some(s) = it.next() else { break };
                    let stmt = self.settings.stmt(&mut self.memo, s, q.truncated);
                    q.rest = it.next().map(|second| {
                        let off = second.as_ptr() as usize - rest.as_ptr() as usize;
                        Box::<str>::from(&rest[off..])
                    });
                    self.stats.skipped += 1;
                    self.finish(
                        Tx::new(Src::Own(Box::new(stmt)), ts),
                        ts,
                        End {
                            completeness: Completeness::NO_RESPONSE,
                            skipped: true,
                            ..End::default()
                        },
                    out,
                    );
                }
            }
        }
        // Server bytes up to here (ReadyForQuery, ParseComplete, ...) belong to no statement.
        self.resp_acc = 0;
    }

    /// Report the statement an expectation still holds, incomplete for `why`.
    fn report_exp(
        &mut self,
        e: &mut Exp,
        ts: Timestamp,
        why: u16,
        skipped: bool,
        out: &mut Vec<Transaction>,
    ) {
        let tx = match e {
            Exp::Execute(t) | Exp::Func(t) => std::mem::replace(t, Tx::new(Src::None, ts)),
            Exp::Query(q) => match q.cur.take() {
                Some(t) => t,
                None => return,
            },
            _ => return,
        };
        self.finish(
            tx,
            ts,
            End {
                completeness: why,
                skipped,
                ..End::default()
            },
        out,
        );
    }

    /// The transaction of a finished statement, added to `out`. Built where it is kept:
    /// returned, it was copied there whole (a call to `memcpy` per statement).
    fn finish(&mut self, tx: Tx, end_ts: Timestamp, end: End<'_>, out: &mut Vec<Transaction>) {
        let t = Transaction::push_new(out, Protocol::Postgresql, tx.start);
        t.end = end_ts.max(tx.start);
        t.req_bytes = tx.req_bytes;
        t.resp_bytes = tx.resp_bytes + std::mem::take(&mut self.resp_acc);
        let mut c = tx.completeness | end.completeness;
        if self.midstream == Some(true) {
            c |= Completeness::MIDSTREAM;
        }
        if self.gap_seen && c & (Completeness::NO_RESPONSE | Completeness::NO_REQUEST) != 0 {
            c |= Completeness::GAP;
        }
        t.completeness = Completeness(c);
        let stmt = tx.stmt.get();
        // The tag's command only when the text says nothing (a prepared statement from
        // before the pickup): read lazily.
        let tag_cmd = || {
            end.tag
                .map(|(cmd, _)| utf8_prefix(cmd))
                .filter(|c| !c.is_empty())
        };
        let op: CompactString = match stmt.filter(|s| !s.op.is_empty()) {
            Some(s) => s.op.clone(),
            None => match tag_cmd() {
                Some(cmd) => CompactString::from(cmd),
                None if tx.function => CompactString::const_new("FUNCTION CALL"),
                None => CompactString::default(),
            },
        };
        t.attr_str("db.system.name", CompactString::const_new("postgresql"));
        if !self.namespace.is_empty() {
            t.attr_str("db.namespace", self.namespace.clone());
        }
        if !op.is_empty() {
            t.attr_str("db.operation.name", op.clone());
        }
        let summary = match stmt {
            Some(s) if !s.summary.is_empty() => s.summary.clone(),
            _ => op.clone(),
        };
        if let Some(s) = stmt
            && !s.collection.is_empty()
        {
            t.attr_str("db.collection.name", s.collection.clone());
            t.resource = s.collection.clone();
        }
        if !summary.is_empty() {
            t.attr_str("db.query.summary", summary);
        }
        if let Some(text) = stmt.and_then(|s| s.text.clone()) {
            t.attr_str("db.query.text", text);
        }
        if let Some(e) = end.error {
            let code = CompactString::from(utf8_prefix(e.code));
            t.attr_str("db.response.status_code", code.clone());
            t.error = Some(code);
            if !e.severity.is_empty() {
                t.attr_str("podtap.postgresql.severity", utf8_prefix(e.severity));
            }
            if !self.settings.cfg.redact && !e.message.is_empty() {
                t.attr_str("podtap.postgresql.error.message", utf8_prefix(e.message));
            }
        }
        let rows = end
            .tag
            .and_then(|(_, r)| r)
            .or((tx.rows > 0 || end.suspended).then_some(tx.rows));
        if let Some(r) = rows {
            t.attr_int("db.response.returned_rows", r as i64);
        }
        if tx.copy {
            t.attr_int("podtap.postgresql.copy_bytes", tx.copy_bytes as i64);
        }
        if end.suspended {
            t.attr_bool("podtap.postgresql.suspended", true);
        }
        if end.skipped {
            t.attr_bool("podtap.postgresql.skipped", true);
        }
        if let Some(r) = self.replication {
            t.attr_str("podtap.postgresql.replication", r);
        }
        t.operation = op;
    }
}

impl L7Parser for PgParser {
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::{deque_bytes, map_bytes};
        // A statement's name and summary strings, short; the statement itself is shared.
        let stmt = std::mem::size_of::<Stmt>() + 64;
        // Any pending request can own its statement (boxed): counted as if each did.
        deque_bytes(&self.c.pending)
            + self.c.pending.capacity() * stmt
            + map_bytes(&self.c.statements, stmt)
            + map_bytes(&self.c.portals, 32)
            + self.framers.iter().map(|f| f.heap_bytes()).sum::<usize>()
            + self.c.memo.heap_bytes()
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        self.c.last[dir.index()] = ts;
        self.feed(dir, bytes, ts, out);
        if self.c.tls_follows {
            Progress::Redetect
        } else if self.c.done {
            Progress::Done
        } else {
            Progress::Continue
        }
    }

    /// A gap inside a long message (rows, COPY data) costs that message's bytes only; any
    /// other loses the framing, and the direction resynchronises on the next plausible
    /// message header.
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if missing == 0 {
            return;
        }
        self.c.gap_seen = true;
        // Inside a message (rows, COPY data) the framing survives; either way the statement
        // under way lost part of its exchange.
        self.framers[dir.index()].gap(missing as u64);
        if let Some(tx) = self.c.pending.front_mut().and_then(Exp::tx_mut) {
            tx.completeness |= Completeness::GAP;
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        while let Some(mut e) = self.c.pending.pop_front() {
            self.c
                .report_exp(&mut e, ts, Completeness::NO_RESPONSE | why, false, out);
        }
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        let last = self.c.last[0].max(self.c.last[1]);
        if self.c.pending.is_empty() || now.since(last) < timeout_ns || self.c.streaming {
            return;
        }
        let before = out.len();
        while let Some(mut e) = self.c.pending.pop_front() {
            self.c
                .report_exp(&mut e, now, Completeness::NO_RESPONSE, false, out);
        }
        self.c.stats.timeouts += (out.len() - before) as u64;
        for t in &mut out[before..] {
            t.error = Some(CompactString::const_new("timeout"));
        }
    }
}

/// How sure the first bytes of a flow are PostgreSQL. From the client: a StartupMessage
/// (protocol 3.x), SSLRequest, GSSENCRequest or CancelRequest, by their codes: `Certain`.
/// Mid-stream, typed messages: every complete message in the bytes has a type of its
/// direction and a plausible length (fixed ones exact), and the bytes end at a message
/// boundary or inside a plausible one. A Query whose text starts with an SQL keyword, or
/// two messages in a row: `Likely`; one other message: `Port` on a PostgreSQL port.
pub fn probe(b: &[u8], dir: Direction, hinted: bool) -> Confidence {
    let Some(&first) = b.first() else {
        return Confidence::NeedMore;
    };
    let side = match dir {
        Direction::ToServer => Side::Client,
        Direction::ToClient => Side::Server,
    };
    if side == Side::Client && first == 0 {
        if b.len() < 8 {
            return Confidence::NeedMore;
        }
        let len = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let code = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        return match code {
            SSL_REQUEST | GSSENC_REQUEST if len == 8 => Confidence::Certain,
            CANCEL_REQUEST if len == 16 => Confidence::Certain,
            c if c >> 16 == 3 && c & 0xffff < 16 && (9..=10_000).contains(&len) => {
                if startup_plausible(&b[..b.len().min(len as usize)], len as usize) {
                    Confidence::Certain
                } else {
                    Confidence::No
                }
            }
            _ => Confidence::No,
        };
    }
    let tag_ok = |t: u8| match side {
        Side::Client => parser::client_tag(t),
        Side::Server => parser::server_tag(t),
    };
    let mut i = 0;
    let mut complete = 0;
    while i < b.len() {
        if !tag_ok(b[i]) {
            return Confidence::No;
        }
        if b.len() - i < 5 {
            return if complete > 0 {
                Confidence::Likely
            } else {
                Confidence::NeedMore
            };
        }
        let tag = b[i];
        let len = u32::from_be_bytes([b[i + 1], b[i + 2], b[i + 3], b[i + 4]]);
        if !(4..=parser::MAX_LEN).contains(&len) {
            return Confidence::No;
        }
        let body = &b[i + 5..b.len().min(i + 1 + len as usize)];
        let fixed = match (side, tag) {
            (Side::Server, b'Z') => Some(5),
            (Side::Server, b'1' | b'2' | b'3' | b'n' | b'I') | (Side::Client, b'S' | b'H') => {
                Some(4)
            }
            _ => None,
        };
        if fixed.is_some_and(|f| f != len) {
            return Confidence::No;
        }
        match (side, tag) {
            (Side::Server, b'Z')
                if body
                    .first()
                    .is_some_and(|s| !matches!(s, b'I' | b'T' | b'E')) =>
            {
                return Confidence::No;
            }
            (Side::Client, b'Q') if complete == 0 => {
                let text = utf8_prefix(cstr_lenient(body));
                let words = text.trim_start();
                if sql::summarize_in(Dialect::Postgres, words)
                    .operation
                    .is_some()
                    || (words.len() < 12 && body.len() + 1 >= len as usize && !words.is_empty())
                {
                    return Confidence::Likely;
                }
                return if words.is_empty() && hinted {
                    Confidence::Port
                } else {
                    Confidence::No
                };
            }
            (Side::Server, b'C') if body.first().is_some_and(|c| !c.is_ascii_uppercase()) => {
                return Confidence::No;
            }
            _ => {}
        }
        if b.len() - i < 1 + len as usize {
            // Inside a plausible message.
            return match (complete, hinted) {
                (0, true) => Confidence::Port,
                (0, false) => Confidence::NeedMore,
                _ => Confidence::Likely,
            };
        }
        complete += 1;
        i += 1 + len as usize;
    }
    match (complete, hinted) {
        (n, _) if n >= 2 => Confidence::Likely,
        (_, true) => Confidence::Port,
        _ => Confidence::No,
    }
}

/// A StartupMessage's parameters as far as `b` (the message from its length) holds them:
/// NUL-terminated printable names and values, and, when it is whole, a `user` and the
/// final NUL as its last byte.
fn startup_plausible(b: &[u8], len: usize) -> bool {
    let params = &b[8.min(b.len())..];
    if params
        .iter()
        .any(|&c| c != 0 && (c < 0x20 && !c.is_ascii_whitespace()))
    {
        return false;
    }
    if b.len() < len {
        return true;
    }
    let mut user = false;
    let mut rest = params;
    loop {
        match cstr(rest) {
            Some((b"", r)) => return r.is_empty() && user,
            Some((k, r)) => match cstr(r) {
                Some((_, r)) => {
                    user |= k == b"user";
                    rest = r;
                }
                None => return false,
            },
            None => return false,
        }
    }
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for PgParser {
    type Config = PgConfig;
    type Shared = Arc<Settings>;
    const PORTS: &'static [u16] = &[5432];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = PgEvent;

    fn validate(cfg: &PgConfig) -> Result<(), String> {
        super::registry::nonzero(&[
            ("max_statements", cfg.max_statements as u64),
            ("max_portals", cfg.max_portals as u64),
            ("max_pending", cfg.max_pending as u64),
            ("max_query_bytes", u64::from(cfg.max_query_bytes)),
            ("max_query_text_bytes", cfg.max_query_text_bytes as u64),
        ])
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(Arc::new(Settings {
            cfg: cfg.postgresql.settings.clone(),
        }))
    }

    fn probe(p: &Probe<'_>) -> Confidence {
        probe(p.bytes, p.dir, p.hinted)
    }

    fn new(shared: &Self::Shared, _: Transport) -> Self {
        PgParser::with_settings(shared.clone())
    }

    fn protocol(&self) -> Protocol {
        Protocol::Postgresql
    }

    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c)
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TELEMETRY
    }
}

/// How PostgreSQL statements become metrics and spans (the database conventions).
static TELEMETRY: Telemetry = Telemetry {
    duration: super::registry::DB_DURATION,
    metric_attrs: super::registry::DB_METRIC_ATTRS,
    span_name: |tx| super::registry::db_span_name(tx, "postgresql"),
    attributes: &[
        "db.system.name",
        "db.namespace",
        "db.operation.name",
        "db.collection.name",
        "db.query.summary",
        "db.query.text",
        "db.response.status_code",
        "db.response.returned_rows",
        "podtap.postgresql.severity",
        "podtap.postgresql.error.message",
        "podtap.postgresql.copy_bytes",
        "podtap.postgresql.suspended",
        "podtap.postgresql.skipped",
        "podtap.postgresql.replication",
    ],
    base: None,
};
