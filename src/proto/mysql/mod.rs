//! MySQL and MariaDB (`db.system.name` `mysql` or `mariadb`, as the server's greeting
//! says): the client/server protocol, plain or compressed (zlib), from the handshake or
//! picked up in the middle of a connection.
//!
//! Two layers: [`parser`] frames each direction's packets into messages (16 MiB payloads
//! joined, read zero-copy, only a bounded head of each kept) and reads the fields podtap
//! needs; [`MysqlParser`] follows the connection and pairs commands with replies.
//!
//! * Handshake: the greeting gives the server version (MariaDB or MySQL) and capabilities,
//!   the client's HandshakeResponse its own, its user and its database (`db.namespace`).
//!   Both sides' capabilities decide the parse: CLIENT_DEPRECATE_EOF (no EOF after column
//!   definitions, an OK ends a result set), CLIENT_QUERY_ATTRIBUTES (COM_QUERY carries
//!   attributes before its text), MariaDB's metadata caching and MySQL's optional
//!   metadata (no column definitions), CLIENT_COMPRESS (the compressed protocol after the
//!   handshake: inflated, bounded; zstd is counted as unsupported and decoding stops).
//!   An SSLRequest is counted and decoding stops. The authentication exchange (auth
//!   switch, more data) is not a transaction and its data is never kept; a refused login
//!   is reported as a `CONNECT` transaction with the server's error.
//! * Commands: one transaction per command, in order (clients that pipeline are paired in
//!   order too). COM_QUERY and COM_STMT_PREPARE give the SQL operation, table and summary
//!   of their text; PREPARE's OK carries the statement id, kept in a bounded
//!   per-connection map so COM_STMT_EXECUTE reports the prepared statement's summary.
//!   COM_STMT_CLOSE, COM_STMT_SEND_LONG_DATA and COM_QUIT get no reply: reported at once.
//! * Replies: OK (affected rows), ERR (error code, SQLSTATE; the message only with
//!   `redact = false`), result sets (column count, definitions, rows up to the EOF or
//!   OK that ends them: `db.response.returned_rows`), several results
//!   (SERVER_MORE_RESULTS_EXISTS): a CALL's result sets and final OK are one transaction;
//!   a multi-statement query is split at its semicolons (the shared SQL tokenizer) and each
//!   statement's result ends its own transaction; after an error the statements left never
//!   ran (reported `no_response`, `podtap.mysql.skipped`),
//!   LOCAL INFILE (the file's packets belong to the command).
//! * Sequence ids are checked: a reply's first packet follows its command's last, each
//!   packet the one before. A mismatch is counted and the count followed from the packet
//!   seen.
//! * Gaps: a gap inside a long payload costs nothing (only a head is read); any other
//!   loses that direction's framing until the other side shows a boundary (MySQL speaks
//!   in turns: a command follows a whole reply, a reply follows a whole command).

pub mod parser;


use compact_str::{CompactString, ToCompactString, format_compact};
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use self::parser::*;
use super::detect::Transport;
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{DecoderCounters, Event, decoder_events};
use crate::time::Timestamp;

/// `[protocols.mysql]`: settings of the MySQL/MariaDB decoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MysqlConfig {
    /// Keep what may hold secrets out of every record. Default true: error messages
    /// (they quote literals) and user names are not exported. False adds
    /// `podtap.mysql.error_message` (bounded by the head read) and `podtap.mysql.user`.
    pub redact: bool,
    /// Export `db.query.text`: the statement with every literal replaced by `?`,
    /// whitespace collapsed, at most `max_query_text` bytes. Default false (opt-in).
    pub query_text: bool,
    /// Longest `db.query.text`, in bytes. Default 1024.
    pub max_query_text: usize,
    /// Prepared statements remembered per connection (statement id → summary). When
    /// full, a new statement is not remembered (counted, `mysql.statements_dropped`) and
    /// its executions report `EXECUTE`. Default 1024.
    pub max_statements: usize,
    /// Commands awaiting a reply per connection; beyond it the oldest is reported without
    /// one (`l7.pending_limit`). Default 64.
    pub max_pending: usize,
    /// The first bytes of a client message that are read (a statement's text for its
    /// summary; the rest is skipped, never buffered). Default 4096.
    pub max_statement_bytes: usize,
    /// Longest message believed, in bytes (MySQL's max_allowed_packet is at most 1 GiB);
    /// a longer one is taken for damage: counted (`mysql.malformed`) and that direction
    /// resynchronised. Default 1073741824.
    pub max_message_bytes: u64,
}

impl Default for MysqlConfig {
    fn default() -> Self {
        MysqlConfig {
            redact: true,
            query_text: false,
            max_query_text: 1024,
            max_statements: 1024,
            max_pending: 64,
            max_statement_bytes: 4096,
            max_message_bytes: 1 << 30,
        }
    }
}

/// Bytes of a server message read: enough for an OK, an ERR's code, state and the start of
/// its message, a greeting.
const SERVER_HEAD: usize = 256;

/// What went wrong or was notable on one connection since the last `take_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MysqlStats {
    /// Messages that do not parse as what the connection's state expects, or are too
    /// long. → `mysql.malformed`
    pub malformed: u64,
    /// Packets whose sequence id does not follow. → `mysql.sequence_mismatch`
    pub seq_mismatch: u64,
    /// Replies without a command. → `mysql.no_request`
    pub no_request: u64,
    /// Commands whose reply was lost in a gap. → `l7.response_lost`
    pub responses_lost: u64,
    /// Prepared statements not remembered (the map was full). → `mysql.statements_dropped`
    pub statements_dropped: u64,
    /// COM_STMT_EXECUTE of a statement whose PREPARE was not seen (or not kept).
    /// → `mysql.unknown_statement`
    pub unknown_statement: u64,
    /// Connections switched to TLS. → `mysql.tls`
    pub tls: u64,
    /// Compressed connections that could not be read (zstd, or zlib that does not
    /// inflate). → `mysql.compression_unsupported`
    pub compression_unsupported: u64,
    /// Replication streams (COM_BINLOG_DUMP): not decoded further. → `mysql.replication`
    pub replication: u64,
    /// Bytes skipped while a direction was out of sync. → `mysql.skipped_bytes`
    pub skipped_bytes: u64,
    /// Statements of a multi-statement query that never ran (one before them failed).
    /// → `mysql.skipped`
    pub skipped: u64,
    /// → `l7.pending_limit`
    pub pending_limit: u64,
    /// → `l7.transaction_timeout`
    pub timeouts: u64,
}

decoder_events! {
    /// MySQL's own events (`mysql.*` counters).
    pub enum MysqlEvent {
        Malformed => "mysql.malformed", warn, "MySQL message that does not parse as the connection's state expects, or longer than mysql.max_message_bytes";
        SequenceMismatch => "mysql.sequence_mismatch", warn, "MySQL packet whose sequence id does not follow the one before: counted, the count followed from it";
        NoRequest => "mysql.no_request", warn, "MySQL reply without a command (its command lost in a gap, or before the capture)";
        StatementsDropped => "mysql.statements_dropped", warn, "MySQL prepared statement not remembered: the connection's map held mysql.max_statements";
        UnknownStatement => "mysql.unknown_statement", debug, "MySQL COM_STMT_EXECUTE of a statement whose PREPARE was not seen or kept: reported as EXECUTE";
        Tls => "mysql.tls", debug, "MySQL connection switched to TLS: not decoded further";
        CompressionUnsupported => "mysql.compression_unsupported", warn, "MySQL compressed connection that cannot be read (zstd, zlib that does not inflate, a gap): not decoded further";
        Replication => "mysql.replication", debug, "MySQL replication stream (COM_BINLOG_DUMP): not decoded further";
        SkippedBytes => "mysql.skipped_bytes", debug, "bytes of a MySQL connection skipped while a direction was out of sync after a gap";
        Skipped => "mysql.skipped", debug, "MySQL statements of a multi-statement query that never ran (one before them failed): reported no_response with podtap.mysql.skipped";
    }
}

impl MysqlStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut DecoderCounters<'_, MysqlEvent>) {
        c.add_own(MysqlEvent::Malformed, self.malformed);
        c.add_own(MysqlEvent::SequenceMismatch, self.seq_mismatch);
        c.add_own(MysqlEvent::NoRequest, self.no_request);
        c.add_own(MysqlEvent::StatementsDropped, self.statements_dropped);
        c.add_own(MysqlEvent::UnknownStatement, self.unknown_statement);
        c.add_own(MysqlEvent::Tls, self.tls);
        c.add_own(
            MysqlEvent::CompressionUnsupported,
            self.compression_unsupported,
        );
        c.add_own(MysqlEvent::Replication, self.replication);
        c.add_own(MysqlEvent::SkippedBytes, self.skipped_bytes);
        c.add_own(MysqlEvent::Skipped, self.skipped);
        c.add(Event::PendingLimit, self.pending_limit);
        c.add(Event::TransactionTimeout, self.timeouts);
        c.add(Event::ResponseLost, self.responses_lost);
    }
}

/// The shared SQL text functions, behind one place: the operation, the main table and the
/// summary of a statement, and its normalised text.
mod sqltext {
    use compact_str::CompactString;

    #[derive(Clone, Default)]
    pub struct Summary {
        pub operation: Option<CompactString>,
        pub collection: Option<CompactString>,
        pub summary: CompactString,
    }

    /// The statement's text as UTF-8, as far as it is valid.
    pub fn text(b: &[u8]) -> &str {
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
        }
    }

    /// The statement's operation (None when the first word is not a statement keyword),
    /// main table and `db.query.summary`, from the shared SQL tokenizer (MySQL dialect).
    /// What [`summarize`] made of the statement the memo remembers.
    #[derive(Clone, Default)]
    pub struct Memo {
        sql: crate::proto::sql::SummaryMemo,
        last: Summary,
        /// Heap bytes of `last`'s strings, counted when it is made (the decoder's heap is
        /// asked for after every chunk; the memo changes far less often).
        last_heap: usize,
    }

    impl Memo {
        pub fn heap_bytes(&self) -> usize {
            self.sql.heap_bytes() + self.last_heap
        }
    }

    /// [`summarize_text`], from the memo when the statement repeats the last one's shape
    /// (compared as bytes, before they are read as text).
    pub fn summarize(b: &[u8], memo: &mut Memo) -> Summary {
        if !memo.sql.repeats(b) {
            memo.last = summarize_text(b, &mut memo.sql);
            let l = &memo.last;
            memo.last_heap = [&l.operation, &l.collection]
                .into_iter()
                .flatten()
                .chain([&l.summary])
                .map(crate::proto::heap::str_heap)
                .sum();
        }
        memo.last.clone()
    }

    fn summarize_text(b: &[u8], memo: &mut crate::proto::sql::SummaryMemo) -> Summary {
        let s = memo.learn(crate::proto::sql::Dialect::MySql, text(b));
        let operation = s.operation.map(CompactString::const_new);
        // As `sql::query_summary` builds it, without a `String` on the way.
        let summary = match (s.operation, s.collection) {
            (Some(op), Some(c)) => {
                let mut v = CompactString::with_capacity(op.len() + 1 + c.len());
                v.push_str(op);
                v.push(' ');
                v.push_str(c);
                v
            }
            (Some(op), None) => CompactString::const_new(op),
            (None, _) => CompactString::const_new(""),
        };
        Summary {
            operation,
            collection: s.collection.map(CompactString::from),
            summary,
        }
    }

    /// `db.query.text`: literals replaced by `?`, whitespace collapsed, bounded.
    pub fn normalize(b: &[u8], max: usize, out: &mut String) {
        out.clear();
        crate::proto::sql::normalize_in(crate::proto::sql::Dialect::MySql, text(b), max, out);
    }
}

/// A remembered prepared statement.
#[derive(Clone, Debug)]
struct Statement {
    operation: CompactString,
    collection: Option<CompactString>,
    summary: CompactString,
    text: Option<CompactString>,
}

/// Where a reply stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reply {
    /// Waiting for the first packet of a reply (or of the next result).
    First,
    /// Column definitions still to come, then (without DEPRECATE_EOF) an EOF.
    Columns(u64),
    ColumnsEof,
    /// Rows up to the EOF or OK that ends the result.
    Rows,
    /// PREPARE's parameter definitions, then its column definitions (each list followed
    /// by an EOF without DEPRECATE_EOF).
    PrepParams(u64, u64),
    PrepParamsEof(u64),
    PrepColumns(u64),
    PrepColumnsEof,
    /// COM_FIELD_LIST: definitions up to an EOF.
    FieldList,
    /// LOCAL INFILE: the client sends the file, an empty packet, then the server's OK.
    Infile,
    /// COM_CHANGE_USER's authentication exchange, up to OK or ERR.
    Auth,
}

/// A command awaiting its reply.
struct Pending {
    command: u8,
    start: Timestamp,
    last: Timestamp,
    req_bytes: u64,
    resp_bytes: u64,
    /// The sequence id the next server packet should carry.
    seq_next: u8,
    reply: Reply,
    operation: CompactString,
    collection: Option<CompactString>,
    summary: CompactString,
    rows: u64,
    result_set: bool,
    affected: u64,
    results: u32,
    error: Option<(u16, Option<[u8; 5]>)>,
    completeness: u16,
    /// What few commands carry, boxed so the common command moves less.
    rare: Option<Box<Rare>>,
    /// COM_STMT_EXECUTE opened a cursor: its result has no rows.
    cursor: bool,
    /// Column definitions are omitted (metadata caching, optional metadata).
    statement_id: Option<u32>,
}

impl crate::proto::heap::HeapSize for Pending {
    /// The strings that did not fit inline.
    fn heap_size(&self) -> usize {
        crate::proto::heap::str_heap(&self.operation) + crate::proto::heap::str_heap(&self.summary)
    }
}

/// A command's rarer parts.
#[derive(Default)]
struct Rare {
    /// `db.query.text` (opt-in).
    text: Option<CompactString>,
    /// The ERR's message (only with `redact = false`).
    error_message: Option<CompactString>,
    /// COM_STMT_PREPARE: the statement to remember under the id its OK gives.
    prepared: Option<Statement>,
    /// COM_INIT_DB, COM_CHANGE_USER, `USE x`: the namespace once the server agrees.
    namespace: Option<CompactString>,
    /// A multi-statement COM_QUERY: the statements after the current one, each reported
    /// as its own transaction when the result before it ends (SERVER_MORE_RESULTS_EXISTS).
    more: Option<Box<str>>,
}

impl Pending {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn text(&self) -> Option<&CompactString> {
        self.rare.as_ref().and_then(|r| r.text.as_ref())
    }

    fn new(command: u8, start: Timestamp) -> Pending {
        Pending {
            command,
            start,
            last: start,
            req_bytes: 0,
            resp_bytes: 0,
            seq_next: 1,
            reply: Reply::First,
            operation: CompactString::const_new(""),
            collection: None,
            summary: CompactString::const_new(""),
            rows: 0,
            result_set: false,
            affected: 0,
            results: 0,
            error: None,
            completeness: 0,
            rare: None,
            cursor: false,
            statement_id: None,
        }
    }
}

/// Where the connection stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Nothing seen yet: a greeting, a login or a command may come first.
    Start,
    /// The greeting was seen: the client's login (or SSLRequest) comes next.
    Greeted,
    /// Login sent: authentication until the server's OK or ERR.
    Auth,
    /// Commands and replies.
    Command,
    /// Nothing more to read (TLS, replication, an unreadable compressed stream).
    Stopped,
}

/// Per-connection state besides the framers (split so a message borrowed from a framer can
/// be handled while the state changes).
struct Conn {
    cfg: MysqlConfig,
    phase: Phase,
    mariadb: bool,
    /// The handshake was seen (capabilities known).
    handshake: bool,
    server_caps: u32,
    /// Capabilities both sides have; `None` until the handshake is seen.
    caps: Option<u32>,
    mariadb_caps: u32,
    /// DEPRECATE_EOF as inferred from a reply, when the handshake was not seen.
    deprecate_eof_seen: Option<bool>,
    namespace: Option<CompactString>,
    user: Option<CompactString>,
    login_start: Option<Timestamp>,
    login_bytes: u64,
    compressed: bool,
    statements: HashMap<u32, Statement>,
    pending: crate::proto::heap::TrackedDeque<Pending>,
    stats: MysqlStats,
    gap_seen: bool,
    scratch: String,
    /// The last statement's summary: the next one usually repeats its shape.
    memo: sqltext::Memo,
    /// A compressed packet read as an ordinary one, to be read again as compressed.
    refeed: Vec<u8>,
    /// Time of the chunk holding the first byte of each direction's current message.
    msg_start: [Timestamp; 2],
    /// A gap lost the server's framing: the replies of the commands pending then are
    /// lost (settled when the next command comes).
    resp_lost: bool,
    /// Set when a direction must be re-armed (the other reached a boundary).
    rearm: [bool; 2],
    /// The last command's `podtap.mysql.command` value: a connection mostly repeats one
    /// command, and a clone is a copy where making the name again is a copy of its text.
    command_label: (u8, CompactString),
}

/// The MySQL/MariaDB state machine of one connection. See the module docs.
pub struct MysqlParser {
    framers: [Framer; 2],
    inflaters: [Option<Box<Inflater>>; 2],
    conn: Conn,
}

impl MysqlParser {
    pub fn new(cfg: &MysqlConfig) -> Self {
        MysqlParser {
            framers: [
                Framer::new(cfg.max_statement_bytes.max(64), cfg.max_message_bytes),
                Framer::new(SERVER_HEAD, cfg.max_message_bytes),
            ],
            inflaters: [None, None],
            conn: Conn {
                cfg: cfg.clone(),
                phase: Phase::Start,
                mariadb: false,
                handshake: false,
                server_caps: 0,
                caps: None,
                mariadb_caps: 0,
                deprecate_eof_seen: None,
                namespace: None,
                user: None,
                login_start: None,
                login_bytes: 0,
                compressed: false,
                statements: HashMap::new(),
                pending: crate::proto::heap::TrackedDeque::new(),
                stats: MysqlStats::default(),
                gap_seen: false,
                scratch: String::new(),
                memo: Default::default(),
                refeed: Vec::new(),
                msg_start: [Timestamp::ZERO; 2],
                resp_lost: false,
                rearm: [false; 2],
                command_label: (0, CompactString::const_new("")),
            },
        }
    }

    pub fn stats(&self) -> &MysqlStats {
        &self.conn.stats
    }

    /// The counts since the last call, resetting them.
    pub fn take_stats(&mut self) -> MysqlStats {
        for f in &mut self.framers {
            self.conn.stats.skipped_bytes += f.take_skipped();
            self.conn.stats.malformed += f.take_oversize();
        }
        std::mem::take(&mut self.conn.stats)
    }

    /// Commands awaiting a reply.
    pub fn pending(&self) -> usize {
        self.conn.pending.len()
    }

    /// Prepared statements remembered.
    pub fn statements(&self) -> usize {
        self.conn.statements.len()
    }

    fn feed(
        &mut self,
        dir: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        while !bytes.is_empty() && self.conn.phase != Phase::Stopped {
            if self.conn.compressed {
                self.feed_compressed(dir, bytes, ts, out);
                return;
            }
            let n = Self::feed_plain(&mut self.framers, &mut self.conn, dir, bytes, ts, out);
            bytes = &bytes[n..];
            if !self.conn.refeed.is_empty() {
                // The client's compressed packet, first read as an ordinary one.
                let again = std::mem::take(&mut self.conn.refeed);
                self.feed_compressed(dir, &again, ts, out);
            }
        }
    }

    /// Inflate compressed packets and frame the ordinary packets they hold. A compressed
    /// packet first read as an ordinary one (picked up mid-connection) is fed again.
    fn feed_compressed(
        &mut self,
        dir: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        let mut inf = self.inflaters[d].take().unwrap_or_default();
        loop {
            if self.conn.phase == Phase::Stopped || (bytes.is_empty() && inf.between_packets()) {
                break;
            }
            match inf.next(bytes) {
                Ok((n, plain)) => {
                    bytes = &bytes[n..];
                    let empty = plain.is_empty();
                    if !empty {
                        Self::feed_plain(&mut self.framers, &mut self.conn, dir, plain, ts, out);
                    }
                    if n == 0 && empty {
                        break;
                    }
                }
                Err(_) => {
                    self.conn.stats.compression_unsupported += 1;
                    self.conn.stop(out);
                    return;
                }
            }
        }
        self.inflaters[d] = Some(inf);
    }

    /// Frame ordinary packets; returns the bytes consumed (all of them, unless the
    /// connection switched to the compressed protocol or stopped in between).
    fn feed_plain(
        framers: &mut [Framer; 2],
        conn: &mut Conn,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> usize {
        let d = dir.index();
        let was_compressed = conn.compressed;
        let mut used = 0;
        while used < bytes.len() && conn.phase != Phase::Stopped {
            // Set once, when the login ends.
            if conn.rearm != [false; 2] {
                for (f, rearm) in framers.iter_mut().zip(conn.rearm.iter_mut()) {
                    if std::mem::take(rearm) {
                        f.rearm();
                    }
                }
            }
            if framers[d].between_messages() {
                conn.msg_start[d] = ts;
            }
            let (n, m) = framers[d].next(&bytes[used..]);
            used += n;
            if let Some(m) = m {
                match dir {
                    Direction::ToServer => conn.on_client(&m, ts, out),
                    Direction::ToClient => conn.on_server(&m, ts, out),
                }
                // MySQL speaks in turns: a whole message from one side means the other
                // is between messages (how a side that lost its framing in a gap finds
                // it again).
                framers[1 - d].rearm();
                if conn.compressed != was_compressed {
                    // The rest of these bytes is compressed.
                    return used;
                }
            } else if n == 0 {
                break;
            }
        }
        used
    }
}

fn lossy(b: &[u8]) -> CompactString {
    String::from_utf8_lossy(b).to_compact_string()
}

/// A printable identifier (database or user name), bounded.
fn name(b: &[u8]) -> Option<CompactString> {
    (!b.is_empty() && b.len() <= 256).then(|| lossy(b))
}

impl Conn {
    fn deprecate_eof(&self) -> Option<bool> {
        match self.caps {
            Some(c) => Some(c & CLIENT_DEPRECATE_EOF != 0),
            None => self.deprecate_eof_seen,
        }
    }

    fn protocol(&self) -> Protocol {
        if self.mariadb {
            Protocol::Mariadb
        } else {
            Protocol::Mysql
        }
    }

    /// Nothing more can be read: report what is pending as cut short.
    fn stop(&mut self, out: &mut Vec<Transaction>) {
        self.phase = Phase::Stopped;
        while let Some(p) = self.pending.pop_front() {
            let end = p.last;
            self.finish(p, end, Completeness::TRUNCATED, out);
        }
    }

    fn on_client(&mut self, m: &Message<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        match self.phase {
            Phase::Start => {
                if m.seq == 1 && m.len >= 32 && self.try_login(m, ts) {
                    return;
                }
                if m.seq != 0 {
                    self.stats.malformed += 1;
                    return;
                }
                if looks_compressed_payload(m.len, m.head) {
                    // Picked up in the middle of a compressed connection: this message
                    // was a compressed packet. Read whole, it is fed again as one (its
                    // header rebuilt from the ordinary one it was read as); cut, it is
                    // counted and decoding stops rather than guess.
                    if m.head.len() as u64 == m.len && m.seq_errors == 0 {
                        let n = m.len as u32;
                        self.refeed.clear();
                        self.refeed.extend_from_slice(&n.to_le_bytes()[..3]);
                        self.refeed.push(m.seq);
                        self.refeed.extend_from_slice(m.head);
                        self.compressed = true;
                        self.phase = Phase::Command;
                    } else {
                        self.stats.compression_unsupported += 1;
                        self.phase = Phase::Stopped;
                    }
                    return;
                }
                self.phase = Phase::Command;
                self.on_command(m, ts, out);
            }
            Phase::Greeted => {
                if !self.try_login(m, ts) {
                    self.stats.malformed += 1;
                }
            }
            Phase::Auth => {
                // Authentication data (auth switch response, more data): never kept.
                self.login_bytes += m.wire;
            }
            Phase::Command => {
                if let Some(p) = self.pending.back_mut()
                    && matches!(p.reply, Reply::Infile | Reply::Auth)
                    && m.seq != 0
                {
                    // The file of LOCAL INFILE, or COM_CHANGE_USER's auth data.
                    if m.seq != p.seq_next {
                        self.stats.seq_mismatch += 1;
                    }
                    p.seq_next = m.last_seq.wrapping_add(1);
                    p.req_bytes += m.wire;
                    p.last = ts;
                    if p.reply == Reply::Infile && m.len == 0 {
                        p.reply = Reply::First;
                    }
                    return;
                }
                if m.seq != 0 {
                    self.stats.seq_mismatch += 1;
                }
                self.on_command(m, ts, out);
            }
            Phase::Stopped => {}
        }
    }

    /// The client's first message after the greeting (or the first seen, with sequence
    /// id 1): a login or an SSLRequest.
    fn try_login(&mut self, m: &Message<'_>, ts: Timestamp) -> bool {
        if m.seq != 1 || m.len < 4 {
            return false;
        }
        let Some(login) = parse_login(m.head, m.len) else {
            return false;
        };
        if login.ssl_request {
            self.stats.tls += 1;
            self.phase = Phase::Stopped;
            return true;
        }
        let caps = if self.phase == Phase::Greeted {
            login.capabilities & self.server_caps
        } else {
            login.capabilities
        };
        self.caps = Some(caps);
        self.mariadb_caps &= login.mariadb_capabilities;
        self.handshake = true;
        self.user = name(login.user);
        if let Some(db) = login.database.and_then(name) {
            self.namespace = Some(db);
        }
        self.phase = Phase::Auth;
        self.login_start = Some(ts);
        self.login_bytes = m.wire;
        true
    }

    fn on_command(&mut self, m: &Message<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        let Some(&command) = m.head.first() else {
            self.stats.malformed += 1;
            return;
        };
        if command_name(command).is_none() {
            self.stats.malformed += 1;
            return;
        }
        if self.pending.len() >= self.cfg.max_pending.max(1)
            && let Some(p) = self.pending.pop_front()
        {
            self.stats.pending_limit += 1;
            let end = p.last;
            self.finish(p, end, Completeness::NO_RESPONSE, out);
        }
        if self.resp_lost {
            // The replies of the commands before this one were lost in a gap.
            self.resp_lost = false;
            while let Some(p) = self.pending.pop_front() {
                self.stats.responses_lost += 1;
                let end = p.last;
                let why = if p.resp_bytes > 0 {
                    Completeness::GAP | Completeness::TRUNCATED
                } else {
                    Completeness::GAP | Completeness::NO_RESPONSE
                };
                self.finish(p, end, why, out);
            }
        }
        let mut p = Pending::new(command, self.msg_start[0]);
        p.req_bytes = m.wire;
        p.seq_next = m.last_seq.wrapping_add(1);
        if m.gap {
            p.completeness |= Completeness::GAP;
        }
        if !self.handshake {
            p.completeness |= Completeness::MIDSTREAM;
        }
        let body = &m.head[1..];
        match command {
            COM_QUERY => {
                let text = self.query_text(body);
                match split_statements(text) {
                    Some((first, more)) => {
                        self.describe_query(&mut p, first.as_bytes());
                        p.rare().more = Some(more.into());
                    }
                    None => self.describe_query(&mut p, text),
                }
            }
            COM_STMT_PREPARE => {
                self.describe(&mut p, body);
                let st = Statement {
                    operation: p.operation.clone(),
                    collection: p.collection.clone(),
                    summary: p.summary.clone(),
                    text: p.text().cloned(),
                };
                p.rare().prepared = Some(st);
                p.operation = CompactString::const_new("PREPARE");
            }
            COM_STMT_EXECUTE
            | COM_STMT_BULK_EXECUTE
            | COM_STMT_FETCH
            | COM_STMT_RESET
            | COM_STMT_CLOSE
            | COM_STMT_SEND_LONG_DATA => {
                let id = body
                    .get(..4)
                    .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                p.statement_id = id;
                let st = id.and_then(|id| self.statements.get(&id));
                let verb = match command {
                    COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE => None,
                    COM_STMT_FETCH => Some("FETCH"),
                    COM_STMT_RESET => Some("RESET"),
                    COM_STMT_CLOSE => Some("DEALLOCATE"),
                    _ => Some("SEND_LONG_DATA"),
                };
                match (st, verb) {
                    (Some(st), None) => {
                        p.operation = st.operation.clone();
                        p.collection = st.collection.clone();
                        p.summary = st.summary.clone();
                        if let Some(t) = &st.text {
                            let t = t.clone();
                            p.rare().text = Some(t);
                        }
                    }
                    (None, None) => {
                        self.stats.unknown_statement += 1;
                        p.operation = CompactString::const_new("EXECUTE");
                        p.summary = p.operation.clone();
                    }
                    (st, Some(v)) => {
                        p.operation = CompactString::const_new(v);
                        p.summary = match st {
                            Some(st) => format_compact!("{v} {}", st.summary),
                            None => p.operation.clone(),
                        };
                    }
                }
                // Flags: a cursor type other than none.
                p.cursor =
                    command == COM_STMT_EXECUTE && body.get(4).is_some_and(|f| f & 0x0f != 0);
                if command == COM_STMT_CLOSE
                    && let Some(id) = id
                {
                    self.statements.remove(&id);
                }
            }
            COM_INIT_DB => {
                p.rare().namespace = name(body);
                p.operation = CompactString::const_new("INIT_DB");
                p.summary = p.operation.clone();
            }
            COM_CHANGE_USER => {
                let (_user, db) =
                    parse_change_user(m.head, self.caps.unwrap_or(CLIENT_SECURE_CONNECTION));
                p.rare().namespace = db.and_then(name);
                p.operation = CompactString::const_new("CHANGE_USER");
                p.summary = p.operation.clone();
            }
            COM_BINLOG_DUMP | COM_BINLOG_DUMP_GTID => {
                // A replication stream follows: events, not replies.
                self.stats.replication += 1;
                p.operation = CompactString::const_new(&command_name(command).unwrap_or("")[4..]);
                p.summary = p.operation.clone();
                self.finish(p, ts, 0, out);
                self.phase = Phase::Stopped;
                return;
            }
            c => {
                let n = command_name(c).unwrap_or("COM_UNKNOWN");
                p.operation = CompactString::const_new(&n[4..]);
                p.summary = p.operation.clone();
            }
        }
        if matches!(command, COM_STMT_CLOSE | COM_STMT_SEND_LONG_DATA | COM_QUIT) {
            // No reply: reported at once.
            self.finish(p, ts, 0, out);
            return;
        }
        self.pending.push_back(p);
    }

    /// COM_QUERY's text: after the query attributes when the client sends them.
    fn query_text<'a>(&self, body: &'a [u8]) -> &'a [u8] {
        if self.caps.is_some_and(|c| c & CLIENT_QUERY_ATTRIBUTES != 0) {
            let mut i = 0;
            let Some(count) = lenenc(body, &mut i) else {
                return &[];
            };
            let Some(_sets) = lenenc(body, &mut i) else {
                return &[];
            };
            if count > 0 {
                // Attribute values precede the text: the client's typed values, skipped.
                return skip_attributes(body, i, count).map_or(&[], |j| &body[j..]);
            }
            return &body[i..];
        }
        if !self.handshake && body.len() >= 2 && body[0] == 0 && body[1] == 1 {
            // Midstream, an attribute-carrying query with no attributes.
            return &body[2..];
        }
        body
    }

    /// A COM_QUERY statement: its summary, and the database of a `USE`.
    fn describe_query(&mut self, p: &mut Pending, text: &[u8]) {
        self.describe(p, text);
        if p.operation == "USE"
            && let Some(ns) = use_target(text)
        {
            p.rare().namespace = Some(ns);
        }
    }

    /// The result of a multi-statement query's statement ended and more follow: report it
    /// and start the next statement's transaction (from `ts`: the server runs them in turn).
    fn next_statement(&mut self, ts: Timestamp, out: &mut Vec<Transaction>) {
        let Some(mut p) = self.pending.pop_front() else {
            return;
        };
        let Some(more) = p.rare.as_mut().and_then(|r| r.more.take()) else {
            self.pending.push_front(p);
            return;
        };
        let mut next = Pending::new(COM_QUERY, ts);
        next.seq_next = p.seq_next;
        next.completeness = p.completeness & Completeness::MIDSTREAM;
        match split_statements(more.as_bytes()) {
            Some((s, rest)) => {
                self.describe_query(&mut next, s.as_bytes());
                next.rare().more = Some(rest.into());
            }
            None => self.describe_query(&mut next, more.as_bytes()),
        }
        self.apply_namespace(&p);
        self.finish(p, ts, 0, out);
        self.pending.push_front(next);
    }

    /// The statements of a multi-statement query after the one that failed never ran:
    /// reported `no_response` and `podtap.mysql.skipped`.
    fn skip_rest(&mut self, more: &str, ts: Timestamp, out: &mut Vec<Transaction>) {
        use crate::proto::sql::{Dialect, statements};
        for s in statements(Dialect::MySql, more) {
            let mut q = Pending::new(COM_QUERY, ts);
            if !self.handshake {
                q.completeness |= Completeness::MIDSTREAM;
            }
            self.describe(&mut q, s.as_bytes());
            self.stats.skipped += 1;
            let tx = self.finish(q, ts, Completeness::NO_RESPONSE, out);
            tx.attr_bool("podtap.mysql.skipped", true);
        }
    }

    /// A command the server accepted that names the database: the connection's new one.
    fn apply_namespace(&mut self, p: &Pending) {
        if p.error.is_none()
            && let Some(ns) = p.rare.as_ref().and_then(|r| r.namespace.as_ref())
        {
            self.namespace = Some(ns.clone());
        }
    }

    fn describe(&mut self, p: &mut Pending, text: &[u8]) {
        let s = sqltext::summarize(text, &mut self.memo);
        // A text whose first word is no statement keyword: the command's own name.
        p.operation = s.operation.unwrap_or(CompactString::const_new("QUERY"));
        p.collection = s.collection;
        p.summary = if s.summary.is_empty() {
            p.operation.clone()
        } else {
            s.summary
        };
        if self.cfg.query_text {
            sqltext::normalize(text, self.cfg.max_query_text, &mut self.scratch);
            if !self.scratch.is_empty() {
                p.rare().text = Some(CompactString::from(self.scratch.as_str()));
            }
        }
    }

    fn on_server(&mut self, m: &Message<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        match self.phase {
            Phase::Start | Phase::Greeted => {
                if m.seq == 0
                    && let Some(g) = parse_greeting(m.head)
                {
                    self.mariadb = g.is_mariadb();
                    self.server_caps = g.capabilities;
                    self.mariadb_caps = g.mariadb_capabilities;
                    self.phase = Phase::Greeted;
                    return;
                }
                if let Some(e) = parse_err(m.head)
                    && m.seq == 0
                {
                    // Refused before the greeting (host not allowed, too many connections).
                    let mut p = Pending::new(0, ts);
                    p.operation = CompactString::const_new("CONNECT");
                    p.summary = p.operation.clone();
                    p.resp_bytes = m.wire;
                    self.set_error(&mut p, &e);
                    self.finish(p, ts, 0, out);
                    return;
                }
                // Counted once per reply: its first packet follows a one-packet command.
                if m.seq == 1 {
                    self.stats.no_request += 1;
                }
            }
            Phase::Auth => match m.head.first() {
                Some(0x00) => {
                    self.phase = Phase::Command;
                    self.rearm = [true; 2];
                    let caps = self.caps.unwrap_or(0);
                    if caps & CLIENT_ZSTD_COMPRESSION_ALGORITHM != 0 && caps & CLIENT_COMPRESS == 0
                    {
                        self.stats.compression_unsupported += 1;
                        self.phase = Phase::Stopped;
                    } else if caps & CLIENT_COMPRESS != 0 {
                        self.compressed = true;
                    }
                }
                Some(0xff) => {
                    let mut p = Pending::new(0, self.login_start.unwrap_or(ts));
                    p.operation = CompactString::const_new("CONNECT");
                    p.summary = p.operation.clone();
                    p.req_bytes = self.login_bytes;
                    p.resp_bytes = m.wire;
                    if let Some(e) = parse_err(m.head) {
                        self.set_error(&mut p, &e);
                    }
                    self.finish(p, ts, 0, out);
                    self.phase = Phase::Stopped;
                }
                // Auth switch, more data: the exchange goes on.
                _ => {}
            },
            Phase::Command => self.on_reply(m, ts, out),
            Phase::Stopped => {}
        }
    }

    fn set_error(&self, p: &mut Pending, e: &ErrPacket<'_>) {
        let state = e.sqlstate.and_then(|s| <[u8; 5]>::try_from(s).ok());
        p.error = Some((e.code, state));
        if !self.cfg.redact {
            let msg = &e.message[..e.message.len().min(SERVER_HEAD)];
            p.rare().error_message = Some(lossy(msg));
        }
    }

    fn on_reply(&mut self, m: &Message<'_>, ts: Timestamp, out: &mut Vec<Transaction>) {
        let eof = m.head.first() == Some(&0xfe) && m.len < 7;
        if !eof
            && self.caps.is_none()
            && self
                .pending
                .front()
                .is_some_and(|p| p.reply == Reply::PrepColumnsEof)
            && let Some(p) = self.pending.pop_front()
        {
            // Picked up mid-connection, a PREPARE's column definitions were not followed
            // by an EOF: the client asked for DEPRECATE_EOF (learned here). The PREPARE
            // was complete, and this message starts the next reply.
            self.deprecate_eof_seen = Some(true);
            let end = p.last;
            self.finish(p, end, 0, out);
        }
        let deprecate_eof = self.deprecate_eof();
        let caps = self.caps.unwrap_or(0);
        let mariadb_caps = self.mariadb_caps;
        let Some(p) = self.pending.front_mut() else {
            // Counted once per reply: its first packet follows a one-packet command.
            if m.seq == 1 {
                self.stats.no_request += 1;
            }
            return;
        };
        if m.seq != p.seq_next {
            self.stats.seq_mismatch += 1;
        }
        self.stats.seq_mismatch += m.seq_errors as u64;
        p.seq_next = m.last_seq.wrapping_add(1);
        p.resp_bytes += m.wire;
        p.last = ts;
        if m.gap {
            p.completeness |= Completeness::GAP;
        }
        let h = m.head;
        let first = h.first().copied();
        let terminator = first == Some(0xfe) && m.len < MAX_PACKET as u64;
        let was_first = p.reply == Reply::First;
        let mut done = false;
        let mut learned_eof = None;
        match p.reply {
            Reply::First => match first {
                Some(0xff) => {
                    if let Some(e) = parse_err(h) {
                        let state = e.sqlstate.and_then(|s| <[u8; 5]>::try_from(s).ok());
                        p.error = Some((e.code, state));
                        if !self.cfg.redact {
                            p.rare().error_message =
                                Some(lossy(&e.message[..e.message.len().min(SERVER_HEAD)]));
                        }
                    } else {
                        self.stats.malformed += 1;
                    }
                    done = true;
                }
                Some(0xfe) if p.command == COM_CHANGE_USER => p.reply = Reply::Auth,
                Some(_) if p.command == COM_STMT_FETCH => {
                    // Binary rows (header 0x00) up to an EOF or OK.
                    p.result_set = true;
                    p.reply = Reply::Rows;
                    done = Self::row_or_end(p, h, m.len, terminator);
                }
                Some(0x00) if p.command == COM_STMT_PREPARE => {
                    // stmt id 4, columns 2, params 2, filler 1, warnings 2.
                    let id = h
                        .get(1..5)
                        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
                    let cols = u16_le(h, 5) as u64;
                    let params = u16_le(h, 7) as u64;
                    let prepared = p.rare.as_mut().and_then(|r| r.prepared.take());
                    if let (Some(id), Some(st)) = (id, prepared) {
                        p.statement_id = Some(id);
                        if self.statements.len() < self.cfg.max_statements
                            || self.statements.contains_key(&id)
                        {
                            self.statements.insert(id, st);
                        } else {
                            self.stats.statements_dropped += 1;
                        }
                    }
                    let optional =
                        caps & CLIENT_OPTIONAL_RESULTSET_METADATA != 0 && h.get(12) == Some(&0);
                    if optional {
                        done = true;
                    } else if params > 0 {
                        p.reply = Reply::PrepParams(params, cols);
                    } else if cols > 0 {
                        p.reply = Reply::PrepColumns(cols);
                    } else {
                        done = true;
                    }
                }
                Some(0x00) | Some(0xfe) => match parse_ok(h, m.len) {
                    Some(ok) => {
                        p.affected += ok.affected_rows;
                        p.results += 1;
                        if ok.status & SERVER_MORE_RESULTS_EXISTS != 0
                            && matches!(p.command, COM_QUERY | COM_STMT_EXECUTE)
                        {
                            p.reply = Reply::First;
                        } else {
                            done = true;
                        }
                    }
                    None => {
                        self.stats.malformed += 1;
                        done = true;
                    }
                },
                Some(0xfb) if p.command == COM_QUERY => p.reply = Reply::Infile,
                _ if p.command == COM_STATISTICS => done = true,
                _ if p.command == COM_FIELD_LIST => p.reply = Reply::FieldList,
                _ if p.command == COM_CHANGE_USER => p.reply = Reply::Auth,
                _ if matches!(
                    p.command,
                    COM_QUERY | COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE
                ) =>
                {
                    let mut i = 0;
                    match lenenc(h, &mut i) {
                        Some(n) if n > 0 && n <= 4096 => {
                            p.result_set = true;
                            p.results += 1;
                            // A metadata-follows flag after the count: 0 = definitions
                            // omitted (MySQL's optional metadata; MariaDB's cache).
                            let flagged = caps & CLIENT_OPTIONAL_RESULTSET_METADATA != 0
                                || (p.command == COM_STMT_EXECUTE
                                    && mariadb_caps & MARIADB_CLIENT_CACHE_METADATA != 0);
                            let omitted = flagged && h.get(i) == Some(&0);
                            p.reply = if omitted {
                                if deprecate_eof == Some(true) {
                                    Reply::Rows
                                } else {
                                    Reply::ColumnsEof
                                }
                            } else {
                                Reply::Columns(n)
                            };
                        }
                        _ => {
                            self.stats.malformed += 1;
                            done = true;
                        }
                    }
                }
                _ => {
                    self.stats.malformed += 1;
                    done = true;
                }
            },
            Reply::Columns(left) => {
                if first == Some(0xff) {
                    done = Self::err_into(p, h, self.cfg.redact);
                } else if left > 1 {
                    p.reply = Reply::Columns(left - 1);
                } else {
                    p.reply = match deprecate_eof {
                        Some(true) if p.cursor => {
                            done = true;
                            Reply::Rows
                        }
                        Some(true) => Reply::Rows,
                        _ => Reply::ColumnsEof,
                    };
                }
            }
            Reply::ColumnsEof => {
                if first == Some(0xff) {
                    done = Self::err_into(p, h, self.cfg.redact);
                } else if terminator && m.len < 7 {
                    learned_eof = Some(false);
                    if p.cursor {
                        done = true;
                    }
                    p.reply = Reply::Rows;
                } else {
                    // No EOF after the definitions: the client asked for DEPRECATE_EOF
                    // (learned here when the handshake was not seen). This is a row or
                    // the OK ending the result.
                    learned_eof = Some(true);
                    p.reply = Reply::Rows;
                    done = Self::row_or_end(p, h, m.len, terminator);
                }
            }
            Reply::Rows => {
                if first == Some(0xff) {
                    done = Self::err_into(p, h, self.cfg.redact);
                } else {
                    done = Self::row_or_end(p, h, m.len, terminator);
                }
            }
            Reply::PrepParams(left, cols) => {
                p.reply = if left > 1 {
                    Reply::PrepParams(left - 1, cols)
                } else if deprecate_eof == Some(true) {
                    if cols > 0 {
                        Reply::PrepColumns(cols)
                    } else {
                        done = true;
                        Reply::First
                    }
                } else {
                    Reply::PrepParamsEof(cols)
                };
            }
            Reply::PrepParamsEof(cols) => {
                if terminator && m.len < 7 {
                    learned_eof = Some(false);
                    if cols > 0 {
                        p.reply = Reply::PrepColumns(cols);
                    } else {
                        done = true;
                    }
                } else if cols > 0 {
                    // A column definition: no EOF between the lists.
                    learned_eof = Some(true);
                    p.reply = if cols > 1 {
                        Reply::PrepColumns(cols - 1)
                    } else {
                        done = true;
                        Reply::First
                    };
                } else {
                    self.stats.malformed += 1;
                    done = true;
                }
            }
            Reply::PrepColumns(left) => {
                if left > 1 {
                    p.reply = Reply::PrepColumns(left - 1);
                } else if deprecate_eof == Some(true) {
                    done = true;
                } else {
                    p.reply = Reply::PrepColumnsEof;
                }
            }
            Reply::PrepColumnsEof => {
                if terminator && m.len < 7 {
                    learned_eof = Some(false);
                } else {
                    self.stats.malformed += 1;
                }
                done = true;
            }
            Reply::FieldList => {
                if first == Some(0xff) {
                    done = Self::err_into(p, h, self.cfg.redact);
                } else if terminator {
                    done = true;
                }
            }
            Reply::Infile => {
                // The server speaks before the file's end: an error.
                if first == Some(0xff) {
                    done = Self::err_into(p, h, self.cfg.redact);
                }
            }
            Reply::Auth => match first {
                Some(0x00) => done = true,
                Some(0xff) => done = Self::err_into(p, h, self.cfg.redact),
                _ => {}
            },
        }
        if let Some(e) = learned_eof
            && self.caps.is_none()
        {
            self.deprecate_eof_seen = Some(e);
        }
        if !done
            && let Some(p) = self.pending.front()
            && p.reply == Reply::First
            && p.rare.as_ref().is_some_and(|r| r.more.is_some())
            && (was_first || p.operation != "CALL")
        {
            // A statement's result ended and the server has more: the next statement's.
            // (A CALL's own result sets come first; its final OK ends it.)
            self.next_statement(ts, out);
            return;
        }
        if done && let Some(mut p) = self.pending.pop_front() {
            self.apply_namespace(&p);
            if p.error.is_none() && matches!(p.command, COM_CHANGE_USER | COM_RESET_CONNECTION) {
                // A new session: the server dropped its prepared statements.
                self.statements.clear();
            }
            let more = p.rare.as_mut().and_then(|r| r.more.take());
            self.finish(p, ts, 0, out);
            if let Some(more) = more {
                self.skip_rest(&more, ts, out);
            }
        }
    }

    fn err_into(p: &mut Pending, h: &[u8], redact: bool) -> bool {
        if let Some(e) = parse_err(h) {
            let state = e.sqlstate.and_then(|s| <[u8; 5]>::try_from(s).ok());
            p.error = Some((e.code, state));
            if !redact {
                p.rare().error_message =
                    Some(lossy(&e.message[..e.message.len().min(SERVER_HEAD)]));
            }
        }
        true
    }

    /// A row, or the EOF/OK that ends the result; true when the reply is complete.
    fn row_or_end(p: &mut Pending, h: &[u8], len: u64, terminator: bool) -> bool {
        if !terminator {
            p.rows += 1;
            return false;
        }
        let status = parse_ok(h, len).map_or(0, |ok| ok.status);
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            p.reply = Reply::First;
            false
        } else {
            true
        }
    }

    /// The transaction of a finished command, added to `out` (built where it is kept:
    /// returned, it was copied there whole).
    fn finish<'o>(
        &mut self,
        p: Pending,
        end: Timestamp,
        extra: u16,
        out: &'o mut Vec<Transaction>,
    ) -> &'o mut Transaction {
        let tx = Transaction::push_new(out, self.protocol(), p.start);
        tx.end = end.max(p.start);
        tx.req_bytes = p.req_bytes;
        tx.resp_bytes = p.resp_bytes;
        tx.completeness = Completeness(p.completeness | extra);
        tx.attr_str(
            "db.system.name",
            // Constants: a 24-byte copy each, where a `&str` goes through `From`.
            if self.mariadb {
                CompactString::const_new("mariadb")
            } else {
                CompactString::const_new("mysql")
            },
        );
        if let Some(ns) = &self.namespace {
            tx.attr_str("db.namespace", ns.clone());
        }
        tx.attr_str("db.operation.name", p.operation.clone());
        if let Some(c) = &p.collection {
            tx.attr_str("db.collection.name", c.clone());
        }
        tx.attr_str("db.query.summary", p.summary);
        // Only what the record takes of the rare parts: a whole default `Rare` made for
        // every command that has none cost a 180-byte fill and its drop.
        let (text, error_message) = match p.rare {
            Some(r) => {
                let Rare {
                    text,
                    error_message,
                    ..
                } = *r;
                (text, error_message)
            }
            None => (None, None),
        };
        if let Some(t) = text {
            tx.attr_str("db.query.text", t);
        }
        if p.command != 0 {
            if self.command_label.0 != p.command || self.command_label.1.is_empty() {
                let name = command_name(p.command).unwrap_or_default();
                self.command_label = (p.command, CompactString::from(name));
            }
            if !self.command_label.1.is_empty() {
                tx.attr_str("podtap.mysql.command", self.command_label.1.clone());
            }
        }
        if let Some((code, state)) = p.error {
            let code_s = code.to_compact_string();
            tx.status = Some(code as i64);
            tx.attr_str("db.response.status_code", code_s.clone());
            if let Some(s) = state {
                tx.attr_str("podtap.mysql.sqlstate", lossy(&s));
            }
            if let Some(msg) = error_message {
                tx.attr_str("podtap.mysql.error_message", msg);
            }
            tx.error = Some(code_s);
        } else if p.result_set {
            tx.attr_int("db.response.returned_rows", p.rows as i64);
        } else if p.results > 0
            && matches!(
                p.command,
                COM_QUERY | COM_STMT_EXECUTE | COM_STMT_BULK_EXECUTE
            )
        {
            tx.attr_int("podtap.mysql.affected_rows", p.affected as i64);
        }
        if p.results > 1 {
            tx.attr_int("podtap.mysql.results", p.results as i64);
        }
        if let Some(id) = p.statement_id {
            tx.attr_int("podtap.mysql.statement_id", id as i64);
        }
        if !self.cfg.redact
            && let Some(u) = &self.user
        {
            tx.attr_str("podtap.mysql.user", u.clone());
        }
        tx.operation = p.operation;
        tx.resource = p.collection.unwrap_or_default();
        tx
    }
}

fn u16_le(b: &[u8], i: usize) -> u16 {
    match (b.get(i), b.get(i + 1)) {
        (Some(&a), Some(&c)) => u16::from_le_bytes([a, c]),
        _ => 0,
    }
}

/// A multi-statement text's first statement and the text after it; None for a single
/// statement (most queries: no `;` at all, found without the tokenizer).
fn split_statements(text: &[u8]) -> Option<(&str, &str)> {
    memchr::memchr(b';', text)?;
    let t = sqltext::text(text);
    let mut it = crate::proto::sql::statements(crate::proto::sql::Dialect::MySql, t);
    let first = it.next()?;
    let second = it.next()?;
    let off = second.as_ptr() as usize - t.as_ptr() as usize;
    Some((first, &t[off..]))
}

/// The database of `USE db` (backquotes removed), bounded.
fn use_target(text: &[u8]) -> Option<CompactString> {
    let t = sqltext::text(text).trim_start();
    let rest = t.get(3..)?.trim_start();
    let rest = rest.trim_end_matches([';', ' ', '\n', '\r', '\t']);
    let db = rest
        .strip_prefix('`')
        .and_then(|r| r.strip_suffix('`'))
        .unwrap_or(rest);
    (!db.is_empty() && db.len() <= 64 && !db.contains(char::is_whitespace))
        .then(|| CompactString::from(db))
}

/// Skip COM_QUERY's `count` attributes starting at `body[i..]` (null bitmap, the
/// new-params flag, types and names, then values): where the text starts, when every
/// type's size is known.
fn skip_attributes(body: &[u8], mut i: usize, count: u64) -> Option<usize> {
    let count = usize::try_from(count).ok().filter(|&c| c <= 1024)?;
    let bitmap = body.get(i..i + count.div_ceil(8))?;
    i += bitmap.len();
    if *body.get(i)? != 1 {
        return None;
    }
    i += 1;
    let mut types = [0u8; 64];
    if count > types.len() {
        return None;
    }
    for t in types.iter_mut().take(count) {
        *t = *body.get(i)?;
        i += 2;
        let n = lenenc(body, &mut i)?;
        i = i.checked_add(usize::try_from(n).ok()?)?;
    }
    for (k, &t) in types.iter().take(count).enumerate() {
        if bitmap[k / 8] & (1 << (k % 8)) != 0 {
            continue;
        }
        let size = match t {
            0x01 => 1,               // TINY
            0x02 | 0x0d => 2,        // SHORT, YEAR
            0x03 | 0x04 | 0x09 => 4, // LONG, FLOAT, INT24
            0x05 | 0x08 => 8,        // DOUBLE, LONGLONG
            0x07 | 0x0a | 0x0b | 0x0c => {
                // TIMESTAMP, DATE, TIME, DATETIME: a length byte first.
                1 + *body.get(i)? as usize
            }
            0x06 => 0, // NULL
            _ => {
                let n = lenenc(body, &mut i)?;
                usize::try_from(n).ok()?
            }
        };
        i = i.checked_add(size)?;
    }
    (i <= body.len()).then_some(i)
}

/// A compressed packet's payload as read after a 4-byte ordinary header (the 3-byte
/// compressed length and its sequence id): `h` starts at the 3-byte uncompressed length.
fn looks_compressed_payload(len: u64, h: &[u8]) -> bool {
    if h.len() < 7 {
        return false;
    }
    let ulen = u32::from_le_bytes([h[0], h[1], h[2], 0]) as u64;
    if ulen == 0 {
        // Stored: an ordinary packet header filling the rest, sequence 0, a command.
        let inner = u32::from_le_bytes([h[3], h[4], h[5], 0]) as u64;
        inner + 4 == len && h[6] == 0 && h.get(7).is_some_and(|&c| command_name(c).is_some())
    } else {
        // zlib: CMF 0x78 and a valid FCHECK.
        h[3] == 0x78
            && u16::from_be_bytes([h[3], h[4]]).is_multiple_of(31)
            && ulen <= MAX_PACKET as u64
    }
}

impl L7Parser for MysqlParser {
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::{map_bytes, vec_bytes};
        // A statement's strings: its operation, collection and summary, short.
        map_bytes(&self.conn.statements, 64)
            + self.conn.pending.heap_bytes()
            + vec_bytes(&self.conn.refeed)
            + self.conn.memo.heap_bytes()
            + self.conn.scratch.capacity()
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        self.feed(dir, bytes, ts, out);
        if self.conn.phase == Phase::Stopped {
            Progress::Done
        } else {
            Progress::Continue
        }
    }

    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if missing == 0 {
            return;
        }
        self.conn.gap_seen = true;
        if self.conn.compressed {
            // No way back into a compressed stream.
            self.conn.stats.compression_unsupported += 1;
            self.conn.phase = Phase::Stopped;
            return;
        }
        let d = dir.index();
        if self.framers[d].gap(missing as u64) == GapOutcome::Absorbed {
            return;
        }
        match dir {
            Direction::ToServer => {
                // Commands may be lost: replies to them find no command (counted), and
                // the reply under way still belongs to the front.
            }
            Direction::ToClient => {
                // The rest of the reply under way (and maybe whole replies) is lost: the
                // commands pending now are settled when the next command comes.
                if let Some(p) = self.conn.pending.front_mut() {
                    p.completeness |= Completeness::GAP;
                    self.conn.resp_lost = true;
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
        while let Some(p) = self.conn.pending.pop_front() {
            let (end, extra) = if p.resp_bytes > 0 {
                (p.last, why | Completeness::TRUNCATED)
            } else {
                (ts, why | Completeness::NO_RESPONSE)
            };
            self.conn.finish(p, end, extra, out);
        }
        for f in &mut self.framers {
            f.reset();
        }
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        while let Some(p) = self.conn.pending.front() {
            if now.since(p.last) < timeout_ns {
                break;
            }
            let Some(p) = self.conn.pending.pop_front() else {
                break;
            };
            self.conn.stats.timeouts += 1;
            let tx = self.conn.finish(p, now, Completeness::NO_RESPONSE, out);
            tx.error = Some(CompactString::const_new("timeout"));
        }
    }
}

/// SQL statements' first words: a COM_QUERY that starts with one is MySQL for certain.
const KEYWORDS: &[&str] = &[
    "SELECT",
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "SET",
    "SHOW",
    "USE",
    "BEGIN",
    "COMMIT",
    "ROLLBACK",
    "CALL",
    "CREATE",
    "DROP",
    "ALTER",
    "WITH",
    "EXPLAIN",
    "DESC",
    "DESCRIBE",
    "START",
    "TRUNCATE",
    "GRANT",
    "REVOKE",
    "LOCK",
    "UNLOCK",
    "SAVEPOINT",
    "RELEASE",
    "DO",
    "LOAD",
    "ANALYZE",
    "OPTIMIZE",
    "KILL",
    "FLUSH",
    "PREPARE",
    "EXECUTE",
    "DEALLOCATE",
    "XA",
    "HANDLER",
    "RENAME",
    "CHECK",
    "REPAIR",
    "SELECT",
];

/// Whether `text` starts (after blanks and comments' openers) like a SQL statement:
/// `Some(true)` with a known first keyword, `Some(false)` with a word, None otherwise.
fn sql_start(text: &[u8]) -> Option<bool> {
    let t = text.trim_ascii_start();
    let t = t.strip_prefix(b"(").unwrap_or(t);
    if t.starts_with(b"/*") || t.starts_with(b"--") || t.starts_with(b"#") {
        return Some(false);
    }
    let end = t
        .iter()
        .position(|c| !c.is_ascii_alphabetic())
        .unwrap_or(t.len());
    if end == 0 {
        return None;
    }
    let word = &t[..end];
    if end == t.len() && end < 12 {
        // Cut by the end of what was seen.
        return Some(false);
    }
    Some(
        KEYWORDS
            .iter()
            .any(|k| k.as_bytes().eq_ignore_ascii_case(word)),
    )
}

/// How sure the first bytes of a flow are MySQL. From the server: the greeting (a 4-byte
/// header with sequence 0, protocol 10, a printable version ending in NUL): Certain. From
/// the client: a packet header with sequence 0 whose length fits, and a COM_QUERY or
/// COM_STMT_PREPARE with SQL text (Certain with a known first keyword and the length
/// matching the bytes seen, else Likely), or the compressed protocol's first packet
/// (Likely); a login (sequence 1) or another command only on a hinted port.
pub fn probe(b: &[u8], dir: Direction, hinted: bool) -> Confidence {
    if b.len() < 5 {
        return Confidence::NeedMore;
    }
    let len = u32::from_le_bytes([b[0], b[1], b[2], 0]) as usize;
    let seq = b[3];
    let payload = &b[4..];
    match dir {
        Direction::ToClient => {
            if seq == 0 && len >= 20 && payload[0] == 10 {
                let seen = &payload[..payload.len().min(len)];
                if seen.len() < len && seen.len() < 40 {
                    return Confidence::NeedMore;
                }
                if parse_greeting(seen).is_some() {
                    return Confidence::Certain;
                }
                return Confidence::No;
            }
            if hinted && seq >= 1 && (payload[0] == 0x00 || payload[0] == 0xff) && len >= 7 {
                return Confidence::Port;
            }
            Confidence::No
        }
        Direction::ToServer => {
            if len == 0 || len >= MAX_PACKET as usize {
                return Confidence::No;
            }
            if seq == 1 && hinted && len >= 32 && parse_login(payload, len as u64).is_some() {
                return Confidence::Likely;
            }
            if seq != 0 {
                return Confidence::No;
            }
            let cmd = payload[0];
            if payload.len() >= 8 && looks_compressed_payload(len as u64, payload) {
                return Confidence::Likely;
            }
            if cmd == COM_SLEEP && payload.len() < 8 {
                return Confidence::NeedMore;
            }
            if cmd == COM_QUERY || cmd == COM_STMT_PREPARE {
                let mut text = &payload[1..payload.len().min(len)];
                if cmd == COM_QUERY && text.len() >= 2 && text[0] == 0 && text[1] == 1 {
                    text = &text[2..];
                }
                if text.is_empty() {
                    return Confidence::NeedMore;
                }
                let printable = text
                    .iter()
                    .take(64)
                    .all(|&c| c.is_ascii_graphic() || c.is_ascii_whitespace() || c >= 0x80);
                if !printable {
                    return Confidence::No;
                }
                return match sql_start(text) {
                    Some(true) if payload.len() >= len => Confidence::Certain,
                    Some(_) => Confidence::Likely,
                    None if hinted => Confidence::Port,
                    None => Confidence::No,
                };
            }
            if hinted && command_name(cmd).is_some() && len < 1 << 16 {
                return Confidence::Port;
            }
            Confidence::No
        }
    }
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for MysqlParser {
    type Config = MysqlConfig;
    type Shared = MysqlConfig;
    const PORTS: &'static [u16] = &[3306];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = MysqlEvent;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        super::registry::nonzero(&[
            ("max_pending", cfg.max_pending as u64),
            ("max_statements", cfg.max_statements as u64),
            ("max_query_text", cfg.max_query_text as u64),
        ])?;
        if cfg.max_statement_bytes < 64 {
            return Err("max_statement_bytes: at least 64".into());
        }
        if cfg.max_message_bytes < 1 << 16 {
            return Err("max_message_bytes: at least 65536".into());
        }
        Ok(())
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(cfg.mysql.settings.clone())
    }

    fn probe(p: &Probe<'_>) -> Confidence {
        probe(p.bytes, p.dir, p.hinted)
    }

    fn new(shared: &Self::Shared, _transport: Transport) -> Self {
        MysqlParser::new(shared)
    }

    fn protocol(&self) -> Protocol {
        self.conn.protocol()
    }

    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c)
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TELEMETRY
    }
}

/// How MySQL commands become metrics and spans (the database conventions).
static TELEMETRY: Telemetry = Telemetry {
    duration: super::registry::DB_DURATION,
    metric_attrs: super::registry::DB_METRIC_ATTRS,
    span_name: |tx| super::registry::db_span_name(tx, "mysql"),
    attributes: &[
        "db.system.name",
        "db.namespace",
        "db.operation.name",
        "db.collection.name",
        "db.query.summary",
        "db.query.text",
        "db.response.status_code",
        "db.response.returned_rows",
        "podtap.mysql.command",
        "podtap.mysql.sqlstate",
        "podtap.mysql.error_message",
        "podtap.mysql.affected_rows",
        "podtap.mysql.results",
        "podtap.mysql.skipped",
        "podtap.mysql.statement_id",
        "podtap.mysql.user",
    ],
    base: None,
};
