//! Redis: RESP2 and RESP3 over TCP, and inline commands.
//!
//! [`parser`] frames each direction (commands from the client, replies from the server);
//! [`RedisParser`] pairs them into one [`Transaction`] per command:
//!
//! * Replies come in the order of the commands (pipelining): each reply answers the oldest
//!   command still waiting for one.
//! * MULTI/EXEC: every queued command is answered by its `+QUEUED` (it is one transaction,
//!   marked `podtap.redis.queued`), EXEC by the array of results.
//! * Pub/sub: a (P|S)SUBSCRIBE or (P|S)UNSUBSCRIBE of n channels gets n confirmations; the
//!   first answers it, the others answer nothing. Published messages (`message`,
//!   `pmessage`, `smessage`), RESP3 push frames and the MONITOR feed are not replies: they
//!   are counted (`redis.push_messages`), never paired.
//! * `CLIENT REPLY OFF` and `SKIP` silence replies: those commands are reported at once,
//!   complete, with `podtap.redis.no_reply`.
//! * A reply that comes after its command was reported (timeout, `max_pending`) is
//!   recognised as that command's and dropped, so that later pairs do not shift.
//! * Errors (`-ERR`, `-WRONGTYPE`, `-MOVED`, RESP3 blob errors) have their prefix, the
//!   first word, as `db.response.status_code` and `error.type`.
//! * SELECT changes `db.namespace` for the commands answered after its `+OK`.
//!
//! Keys and values never leave podtap: a command is described by its name
//! (`db.operation.name`, with the subcommand of container commands: `CLIENT SETNAME`) and
//! the prefix of its first key up to a delimiter (`user:1234` → `user`, in
//! `db.query.summary` and `podtap.resource`). `redact = false` adds the whole command to
//! `db.query.text`, for debugging only.

mod commands;
mod names;
pub mod parser;
mod waiting;

use std::io::Write;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use self::commands::{BLOCKING, CONTAINER, Command as Spec};
use self::names::{NameId, Names};
use self::waiting::Waiting;
use self::parser::{GapEffect, Kind, Limits, Out, ParseError, Reply, ReplyParser, RequestParser};
use super::detect::Transport;
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::{
    AttrValue, Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Tally,
    Transaction,
};
use crate::bytes::same_text;
use crate::events::{DecoderCounters, Event, decoder_events};
use crate::time::Timestamp;

/// Longest command name looked up (the longest known is 29 bytes).
const NAME_MAX: usize = 32;
/// Bytes of a command kept for `db.query.text` when `redact = false`.
const QUERY_TEXT_MAX: usize = 512;
/// Largest `max_key_prefix` (the bytes of a key the parser keeps).
const KEY_PREFIX_CAP: usize = parser::ARG_CAP;

/// `[redis]`: settings of the Redis decoder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Commands awaiting a reply per connection (a pipeline's depth). Beyond it the oldest
    /// is reported without a reply (`no_response`, `l7.pending_limit`); its reply, when it
    /// comes, is still recognised as its own. Default 256.
    pub max_pending: usize,
    /// What ends a key's prefix: the key `user:1234` has the prefix `user`, reported in
    /// `db.query.summary` (`GET user`) and `podtap.resource`. A key without the delimiter
    /// within `max_key_prefix` bytes contributes nothing (it may be an identifier itself).
    /// Empty: no prefixes. Default `":"`.
    pub key_prefix_delimiter: String,
    /// Longest key prefix reported, in bytes (at most 64). Default 32.
    pub max_key_prefix: usize,
    /// Keep keys and values out of every record. Default true. DANGEROUS when false: each
    /// command with its arguments, keys and values (up to 512 bytes; passwords of AUTH,
    /// HELLO, ACL SETUSER, CONFIG SET and MIGRATE excepted) goes into `db.query.text`,
    /// and so into the JSON lines and spans. For debugging only.
    pub redact: bool,
    /// Longest bulk string accepted (redis-server's own `proto-max-bulk-len`). A longer
    /// one is counted (`redis.bulk_too_large`) and the stream resynchronised. Values are
    /// never buffered, whatever their size. Default 536870912 (512 MiB).
    pub max_bulk_bytes: u64,
    /// Deepest nesting of aggregates in a reply; deeper is counted (`redis.too_deep`) and
    /// the stream resynchronised. Default 64.
    pub max_depth: usize,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            max_pending: 256,
            key_prefix_delimiter: ":".into(),
            max_key_prefix: 32,
            redact: true,
            max_bulk_bytes: 512 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

impl RedisConfig {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_key_prefix > KEY_PREFIX_CAP {
            return Err((
                "redis.max_key_prefix",
                format!("must be at most {KEY_PREFIX_CAP}"),
            ));
        }
        if self.key_prefix_delimiter.len() > 8 {
            return Err((
                "redis.key_prefix_delimiter",
                "must be at most 8 bytes".into(),
            ));
        }
        if self.max_depth == 0 || self.max_depth > 1024 {
            return Err(("redis.max_depth", "must be between 1 and 1024".into()));
        }
        if self.max_pending == 0 {
            return Err(("redis.max_pending", "must be at least 1".into()));
        }
        if self.max_bulk_bytes == 0 {
            return Err(("redis.max_bulk_bytes", "must be at least 1".into()));
        }
        // `max_key_prefix = 0` is a choice: summaries without any part of a key.
        Ok(())
    }

    fn limits(&self) -> Limits {
        Limits {
            max_bulk: self.max_bulk_bytes,
            max_depth: self.max_depth.clamp(1, 1024),
        }
    }
}

decoder_events! {
    /// Redis's own events (`redis.*` counters).
    pub enum RedisEvent {
        Malformed => "redis.malformed", warn, "bytes of a Redis connection that are not RESP: skipped to the next plausible message";
        TooDeep => "redis.too_deep", warn, "Redis reply nested deeper than redis.max_depth: skipped to the next plausible message";
        BulkTooLarge => "redis.bulk_too_large", warn, "Redis bulk string longer than redis.max_bulk_bytes: skipped to the next plausible message";
        PushMessages => "redis.push_messages", debug, "Redis pub/sub message, RESP3 push or MONITOR line: counted, not paired with a command";
    }
}

/// What went wrong or was notable on one connection since the last `take_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RedisStats {
    /// Bytes that are not RESP; the stream was resynchronised. → `redis.malformed`
    pub malformed: u64,
    /// Replies nested deeper than `max_depth`. → `redis.too_deep`
    pub too_deep: u64,
    /// Bulk strings longer than `max_bulk_bytes`. → `redis.bulk_too_large`
    pub bulk_too_large: u64,
    /// Pub/sub messages, RESP3 pushes and MONITOR lines: not replies. → `redis.push_messages`
    pub push_messages: u64,
    /// Commands reported early because `max_pending` was reached. → `l7.pending_limit`
    pub pending_limit: u64,
    /// Commands reported by `on_tick` without a reply. → `l7.transaction_timeout`
    pub timeouts: u64,
    /// Commands whose reply was lost in a gap. → `l7.response_lost`
    pub replies_lost: u64,
}

impl RedisStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut DecoderCounters<'_, RedisEvent>) {
        c.add_own(RedisEvent::Malformed, self.malformed);
        c.add_own(RedisEvent::TooDeep, self.too_deep);
        c.add_own(RedisEvent::BulkTooLarge, self.bulk_too_large);
        c.add_own(RedisEvent::PushMessages, self.push_messages);
        c.add(Event::PendingLimit, self.pending_limit);
        c.add(Event::TransactionTimeout, self.timeouts);
        c.add(Event::ResponseLost, self.replies_lost);
    }

    fn count(&mut self, e: ParseError) {
        match e {
            ParseError::Malformed => self.malformed += 1,
            ParseError::TooDeep => self.too_deep += 1,
            ParseError::BulkTooLarge => self.bulk_too_large += 1,
        }
    }
}

/// How sure it is that a connection whose first bytes (in `dir`) are `b` speaks Redis.
///
/// A client's multibulk command (`*<n>\r\n$<len>\r\n<name>`) is distinctive: Likely, and
/// Certain once its name is a known command. Inline commands and replies (`+OK`, `-ERR`,
/// `:1`...) look like other text protocols (memcached's `get foo`, POP3's `+OK`): only on
/// a port hinted for Redis, and then only when they parse as Redis.
pub fn probe(b: &[u8], dir: Direction, port_hinted: bool) -> Confidence {
    if b.is_empty() {
        return Confidence::NeedMore;
    }
    match dir {
        Direction::ToServer if b[0] == b'*' => probe_multibulk(b),
        Direction::ToServer if port_hinted => probe_inline(b),
        Direction::ToClient if port_hinted => probe_reply(b),
        _ => Confidence::No,
    }
}

/// `*<count>\r\n$<len>\r\n<name>`, as far as `b` goes.
fn probe_multibulk(b: &[u8]) -> Confidence {
    let mut i = 1;
    let Some(count) = probe_number(b, &mut i, 7) else {
        return Confidence::No;
    };
    if count.is_none() {
        return Confidence::NeedMore;
    }
    if count == Some(0) {
        return Confidence::No;
    }
    match b.get(i) {
        None => return Confidence::NeedMore,
        Some(b'$') => i += 1,
        Some(_) => return Confidence::No,
    }
    let len = match probe_number(b, &mut i, 3) {
        None => return Confidence::No,
        Some(None) => return Confidence::NeedMore,
        Some(Some(n)) if (1..=NAME_MAX as u64).contains(&n) => n as usize,
        Some(Some(_)) => return Confidence::No,
    };
    let name = &b[i..b.len().min(i + len)];
    if !name
        .iter()
        .all(|c| c.is_ascii_alphabetic() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Confidence::No;
    }
    if name.len() < len {
        // The name is cut by the end of what was seen: its shape is enough.
        return if b.len() >= 16 {
            Confidence::Likely
        } else {
            Confidence::NeedMore
        };
    }
    let upper = upper(name);
    if commands::lookup(&upper.0[..upper.1]).is_some() {
        Confidence::Certain
    } else {
        Confidence::Likely
    }
}

/// A decimal number of at most `max` digits ended by CRLF, at `b[*i..]`: `Some(None)` when
/// `b` ends first, `None` when it is not one.
fn probe_number(b: &[u8], i: &mut usize, max: usize) -> Option<Option<u64>> {
    let mut n = 0u64;
    let mut digits = 0;
    loop {
        let Some(&c) = b.get(*i) else {
            return Some(None);
        };
        *i += 1;
        match c {
            b'0'..=b'9' if digits < max && !(digits == 1 && n == 0) => {
                n = n * 10 + (c - b'0') as u64;
                digits += 1;
            }
            b'\r' if digits > 0 => {
                return match b.get(*i) {
                    None => Some(None),
                    Some(b'\n') => {
                        *i += 1;
                        Some(Some(n))
                    }
                    Some(_) => None,
                };
            }
            _ => return None,
        }
    }
}

/// An inline command: a known command's name, then printable words, then CRLF. Not an
/// HTTP request line (`GET / HTTP/1.1` names a Redis command too).
fn probe_inline(b: &[u8]) -> Confidence {
    // redis-server skips blank lines before a command.
    let Some(start) = b
        .iter()
        .position(|c| !matches!(c, b'\r' | b'\n' | b' ' | b'\t'))
    else {
        return Confidence::NeedMore;
    };
    let b = &b[start..];
    let line_end = memchr::memchr(b'\n', b);
    let line = &b[..line_end.unwrap_or(b.len())];
    if !line
        .iter()
        .all(|&c| (0x20..0x7f).contains(&c) || c == b'\t' || c == b'\r')
    {
        return Confidence::No;
    }
    let name_end = line
        .iter()
        .position(|&c| matches!(c, b' ' | b'\t' | b'\r'))
        .unwrap_or(line.len());
    if name_end == line.len() && line_end.is_none() {
        return Confidence::NeedMore;
    }
    let name = &line[..name_end];
    if name.is_empty() || name.len() > NAME_MAX || !name[0].is_ascii_alphabetic() {
        return Confidence::No;
    }
    let u = upper(name);
    if commands::lookup(&u.0[..u.1]).is_none() {
        return Confidence::No;
    }
    if memchr::memmem::find(line, b" HTTP/").is_some() {
        return Confidence::No;
    }
    if line_end.is_none() && b.len() < 32 {
        return Confidence::NeedMore;
    }
    Confidence::Port
}

/// A reply's first line, well formed for its type.
fn probe_reply(b: &[u8]) -> Confidence {
    if !b"+-:$*%~>|=!_#,(".contains(&b[0]) {
        return Confidence::No;
    }
    let Some(cr) = memchr::memchr(b'\r', b) else {
        return if b.len() < 32 && !b.contains(&b'\n') {
            Confidence::NeedMore
        } else {
            Confidence::No
        };
    };
    match b.get(cr + 1) {
        None => return Confidence::NeedMore,
        Some(b'\n') => {}
        Some(_) => return Confidence::No,
    }
    let body = &b[1..cr];
    let number = |s: &[u8]| {
        let s = s.strip_prefix(b"-").unwrap_or(s);
        !s.is_empty() && s.len() <= 20 && s.iter().all(u8::is_ascii_digit)
    };
    let length = |s: &[u8]| s == b"-1" || s == b"?" || (number(s) && s[0] != b'-');
    let ok = match b[0] {
        b'+' => body.iter().all(|&c| (0x20..0x7f).contains(&c)),
        b'-' => {
            body.first().is_some_and(u8::is_ascii_uppercase)
                && body.iter().all(|&c| (0x20..0x7f).contains(&c))
        }
        b':' | b'(' => number(body),
        b'$' | b'*' | b'%' | b'~' | b'>' | b'|' | b'=' | b'!' => length(body),
        b'_' => body.is_empty(),
        b'#' => body == b"t" || body == b"f",
        b',' => !body.is_empty() && body.iter().all(u8::is_ascii_graphic),
        _ => false,
    };
    if ok { Confidence::Port } else { Confidence::No }
}

/// Whether redis-server (7.0) knows a command of this name (any case), or it is a command
/// of a usual module (`JSON.GET`). Subcommands as `CONTAINER|SUB`.
pub fn is_command(name: &[u8]) -> bool {
    if name.len() > NAME_MAX {
        return false;
    }
    let (u, n) = upper(name);
    commands::lookup(&u[..n]).is_some() || commands::is_module_command(&u[..n])
}

/// Equality of short byte strings without a call to `memcmp` (whose set-up costs more
/// than comparing a few bytes).
#[inline]
fn short_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// `name` upper-cased into a fixed buffer (bytes beyond `NAME_MAX` dropped).
fn upper(name: &[u8]) -> ([u8; NAME_MAX], usize) {
    let mut out = [0u8; NAME_MAX];
    let n = name.len().min(NAME_MAX);
    for (o, c) in out.iter_mut().zip(&name[..n]) {
        *o = c.to_ascii_uppercase();
    }
    (out, n)
}

/// `db.namespace` values of the 16 databases a default redis-server has, made once: a
/// clone is a copy, where making one from a `&str` costs a call to `memcpy`.
const DB_NAMES: [CompactString; 16] = {
    use CompactString as S;
    [
        S::const_new("0"), S::const_new("1"), S::const_new("2"), S::const_new("3"),
        S::const_new("4"), S::const_new("5"), S::const_new("6"), S::const_new("7"),
        S::const_new("8"), S::const_new("9"), S::const_new("10"), S::const_new("11"),
        S::const_new("12"), S::const_new("13"), S::const_new("14"), S::const_new("15"),
    ]
};

fn db_name(db: u32) -> CompactString {
    match DB_NAMES.get(db as usize) {
        Some(s) => s.clone(),
        None => compact_str::format_compact!("{db}"),
    }
}

/// Commands whose arguments stay out of `db.query.text` even when `redact = false`.
const SECRET_OPS: [&str; 5] = ["AUTH", "HELLO", "ACL SETUSER", "CONFIG SET", "MIGRATE"];

/// What a command does to the connection, or how its reply is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Special {
    None,
    /// SELECT of this database.
    Select(u32),
    /// A (P|S)SUBSCRIBE or (P|S)UNSUBSCRIBE: answered by `channels` confirmations (0: by
    /// one per subscription the connection has, an unsubscribe without arguments).
    Subscribe {
        channels: u32,
    },
    Multi,
    Exec,
    Discard,
    Reset,
    Monitor,
    /// SCAN and its kin: the rows are the keys, the reply's second element.
    Scan,
}

/// Whether replies are sent (`CLIENT REPLY`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ReplyMode {
    On,
    Off,
    /// The next command gets no reply.
    SkipNext,
}

/// A command waiting for its reply: what its transaction needs, without the transaction
/// (built once, when the reply comes).
struct Pending {
    start: Timestamp,
    req_bytes: u64,
    /// Its operation and key prefix, held in the connection's [`Names`] (let go when it
    /// is reported or counted); `db.query.summary` is made of the two when the command is
    /// reported (see `RedisParser::summary_of`).
    name: NameId,
    special: Special,
    blocking: bool,
    completeness: u16,
    /// Boxed (only with `redact = false`): a pending command is moved twice, into the
    /// queue and out, and without it the struct is small enough to be moved inline.
    query: Option<Box<CompactString>>,
}

impl crate::proto::heap::HeapSize for Pending {
    /// Its query text (its names are the table's: see `Names::heap_bytes`).
    fn heap_size(&self) -> usize {
        self.query
            .as_deref()
            .map_or(0, |q| std::mem::size_of_val(q) + crate::proto::heap::str_heap(q))
    }
}

/// The last command, when it was a plain one (a known command without subcommands, side
/// effects on the connection or a reply to read specially, whose key prefix, if it has
/// one, is its first argument's): a command that starts with the same bytes up to its
/// key's prefix and delimiter is reported as it was, read in place (`repeat_command`)
/// instead of through the parser and `on_command`. Most connections repeat a few
/// commands.
#[derive(Default)]
struct Repeat {
    /// How it starts on the wire: `*<argc>\r\n$<len>\r\n<name>\r\n`, the name as sent
    /// (any case).
    head: [u8; HEAD_MAX],
    head_len: u8,
    argc: u64,
    /// Its key is its first argument, and the key's prefix is part of the summary: the
    /// key must start with `lead`, the prefix and the delimiter.
    keyed: bool,
    lead: CompactString,
    blocking: bool,
    /// Its operation and prefix, held.
    name: Option<NameId>,
}

/// Longest [`Repeat::head`]: two-digit counts and a name of up to 16 bytes.
const HEAD_MAX: usize = 32;

/// How a reply is taken.
enum Class {
    Reply,
    /// A pub/sub message, a push or a monitor line: not a reply.
    Message,
    /// A (un)subscribe confirmation.
    Confirmation,
}

const CONFIRMATIONS: [&[u8]; 6] = [
    b"subscribe",
    b"psubscribe",
    b"ssubscribe",
    b"unsubscribe",
    b"punsubscribe",
    b"sunsubscribe",
];

pub struct RedisParser {
    cfg: Arc<RedisConfig>,
    /// `cfg`'s `max_bulk_bytes` and `max_pending` (at least 1), read for every command:
    /// kept here, a load away instead of two.
    max_bulk: u64,
    max_pending: usize,
    req: RequestParser,
    rep: ReplyParser,
    /// When the message under way in each direction began.
    req_start: Timestamp,
    pending: Waiting,
    /// Commands at the front of the order that were reported already (timed out, or
    /// beyond `max_pending`): the next replies are theirs.
    reported: u64,
    /// Confirmations still to come for a (un)subscribe of several channels, answered by
    /// its first.
    skip_confirms: u64,
    /// An unsubscribe without arguments was answered: its further confirmations (one per
    /// subscription) answer nothing.
    argless_unsub: bool,
    /// The connection has subscriptions (RESP2 `message` arrays are messages then).
    subscribed: bool,
    /// After MONITOR: everything the server sends is the feed.
    monitor: bool,
    reply_mode: ReplyMode,
    /// The selected database, and one a SELECT inside MULTI selects at EXEC.
    db: u32,
    queued_select: Option<u32>,
    /// Replies may have been lost (a gap, malformed bytes) since the last reply.
    resp_lost: bool,
    /// Bytes of the server's stream were lost since the last reply.
    resp_gap: bool,
    /// More than one command was seen waiting at a reply without a gap before it.
    pipelined: bool,
    last_ts: Timestamp,
    /// When the server last sent bytes.
    rep_ts: Timestamp,
    /// The name of the last command looked up, as sent, and what it names (only plain
    /// known commands: see `on_command`).
    last_name: [u8; 16],
    last_name_len: u8,
    last_spec: Option<&'static Spec>,
    /// The operations and key prefixes of the commands waiting, the repeat's and the
    /// last two looked up, each kept once.
    names: Names,
    /// The last `db.query.summary` made with a prefix (see `summary_of`).
    summary: CompactString,
    /// The last command, when the next may repeat it (boxed: every flow's decoder slot is
    /// as large as the largest decoder, and this keeps Redis's from growing).
    repeat: Option<Box<Repeat>>,
    /// Transactions finished by a gap, emitted with the next call that has an output.
    ready: Vec<Transaction>,
    stats: RedisStats,
    /// Commands and replies read in place (tests check that the shortcuts are taken).
    #[cfg(test)]
    in_place: [u32; 2],
}

impl Default for RedisParser {
    fn default() -> Self {
        RedisParser::new(Arc::new(RedisConfig::default()))
    }
}

impl RedisParser {
    pub fn new(cfg: Arc<RedisConfig>) -> Self {
        let limits = cfg.limits();
        let text = if cfg.redact { 0 } else { QUERY_TEXT_MAX };
        RedisParser {
            req: RequestParser::new(limits, text),
            rep: ReplyParser::new(limits),
            max_bulk: cfg.max_bulk_bytes,
            max_pending: cfg.max_pending.max(1),
            cfg,
            req_start: Timestamp::ZERO,
            pending: Waiting::new(),
            reported: 0,
            skip_confirms: 0,
            argless_unsub: false,
            subscribed: false,
            monitor: false,
            reply_mode: ReplyMode::On,
            db: 0,
            queued_select: None,
            resp_lost: false,
            resp_gap: false,
            pipelined: false,
            last_ts: Timestamp::ZERO,
            rep_ts: Timestamp::ZERO,
            last_name: [0; 16],
            last_name_len: 0,
            last_spec: None,
            names: Names::default(),
            summary: CompactString::default(),
            repeat: None,
            ready: Vec::new(),
            stats: RedisStats::default(),
            #[cfg(test)]
            in_place: [0; 2],
        }
    }

    pub fn take_stats(&mut self) -> RedisStats {
        std::mem::take(&mut self.stats)
    }

    /// Commands waiting for a reply.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    #[cfg(test)]
    fn rep_stack_capacity(&self) -> usize {
        self.rep.stack_capacity()
    }

    /// `on_data`, with replies that plainly answer counted into `tally` when there is one.
    #[inline(always)]
    fn data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
        tally: Option<&mut Tally>,
    ) -> Progress {
        self.last_ts = ts;
        if !self.ready.is_empty() {
            out.append(&mut self.ready);
        }
        match dir {
            Direction::ToServer => self.feed_requests(bytes, ts, out),
            Direction::ToClient => {
                self.rep_ts = ts;
                self.feed_replies(bytes, ts, out, tally)
            }
        }
        #[cfg(test)]
        self.check_holds();
        Progress::Continue
    }

    /// Every hold on a name is a waiting command's, the repeat's or one of the last two
    /// looked up: none was forgotten (a forgotten one would keep its slot forever).
    #[cfg(test)]
    fn check_holds(&self) {
        let (held, recent) = self.names.holds();
        let repeat = self.repeat.as_ref().is_some_and(|r| r.name.is_some()) as usize;
        assert_eq!(held, self.pending.entries() + recent + repeat, "a name held and never let go");
    }

    fn feed_requests(&mut self, mut rest: &[u8], ts: Timestamp, out: &mut Vec<Transaction>) {
        while !rest.is_empty() {
            if self.req.at_boundary() || self.req.is_lost() {
                self.req_start = ts;
                if let Some(used) = self.repeat_command(rest, ts, out) {
                    rest = &rest[used..];
                    continue;
                }
            }
            let step = self.req.next(rest);
            rest = &rest[step.used..];
            match step.out {
                Out::More => {}
                Out::Message => self.on_command(ts, 0, out),
                Out::Error(e) => {
                    self.stats.count(e);
                    if self.req.lost_named() {
                        // Its name was read: reported, cut short, so that its reply (an
                        // error, likely) pairs with it.
                        self.on_command(ts, Completeness::TRUNCATED, out);
                    }
                }
            }
        }
    }

    fn feed_replies(
        &mut self,
        mut rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
        mut tally: Option<&mut Tally>,
    ) {
        while !rest.is_empty() {
            if let Some(used) = self.plain_reply(rest, ts, out, tally.as_deref_mut()) {
                rest = &rest[used..];
                continue;
            }
            let step = self.rep.next(rest);
            rest = &rest[step.used..];
            match step.out {
                Out::More => {}
                Out::Message => self.on_reply(ts, out, tally.as_deref_mut()),
                Out::Error(e) => {
                    self.stats.count(e);
                    if self.rep.lost_partial() {
                        // The reply under way will not be read to its end.
                        self.reply_lost(Completeness::TRUNCATED, out);
                    }
                    self.resp_lost = true;
                }
            }
        }
    }

    /// The command at the start of `b`, when it is whole and repeats the last plain one
    /// (see [`Repeat`]): queued as `on_command` would queue it, without the parser. Its
    /// length; `None` leaves it to the parser.
    #[inline]
    fn repeat_command(
        &mut self,
        b: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Option<usize> {
        let r = self.repeat.as_deref()?;
        let name = r.name?;
        if !self.req.in_step() || self.reply_mode != ReplyMode::On {
            return None;
        }
        let head = &r.head[..r.head_len as usize];
        if !b.get(..head.len()).is_some_and(|h| same_text(h, head)) {
            return None;
        }
        let max = self.max_bulk;
        let mut at = head.len();
        let mut left = r.argc - 1;
        if r.keyed {
            // The same prefix, then the delimiter: the first delimiter is where the last
            // key's was (nothing before it differs), so the prefix is the same.
            let key = parser::whole_bulk(b, &mut at, max)?;
            if !key.get(..r.lead.len()).is_some_and(|k| same_text(k, r.lead.as_bytes())) {
                return None;
            }
            left -= 1;
        }
        for _ in 0..left {
            parser::whole_bulk(b, &mut at, max)?;
        }
        let blocking = r.blocking;
        self.pending
            .push_plain(name, self.req_start, at as u64, blocking, &mut self.names);
        self.bound_pending(ts, out);
        #[cfg(test)]
        {
            self.in_place[0] += 1;
        }
        Some(at)
    }

    /// Beyond `max_pending` commands waiting, the oldest is reported without its reply.
    #[inline]
    fn bound_pending(&mut self, ts: Timestamp, out: &mut Vec<Transaction>) {
        if self.pending.len() > self.max_pending
            && let Some(old) = self.pending.pop_front(&mut self.names)
        {
            self.stats.pending_limit += 1;
            self.reported += 1;
            let tx = self.transaction(old, ts, out);
            tx.completeness.set(Completeness::NO_RESPONSE);
        }
    }

    /// The reply at the start of `b`, when it is a whole scalar and simply answers the
    /// oldest command (no error, no `+QUEUED`, no command that reads its reply specially,
    /// nothing lost before it): paired as `on_reply` would pair it, without the parser.
    /// Its length; `None` leaves it to the parser. With a `tally`, a command whole and
    /// of a known shape is counted there, without a record.
    #[inline]
    fn plain_reply(
        &mut self,
        b: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
        tally: Option<&mut Tally>,
    ) -> Option<usize> {
        if !self.rep.in_step()
            || self.monitor
            || self.reported > 0
            || self.resp_lost
            || self.resp_gap
            || self.pending.front()?.special != Special::None
        {
            return None;
        }
        let (used, kind, text) = parser::peek_scalar(b, self.max_bulk)?;
        if kind == Kind::Error || (kind == Kind::SimpleString && text == b"QUEUED") {
            return None;
        }
        self.argless_unsub = false;
        if self.pending.len() > 1 {
            self.pipelined = true;
        }
        match tally {
            Some(t) if self.pending.front()?.completeness == 0 => {
                // Counted where it waits (plain: no special, nothing lost).
                self.count_into(t, self.pending.front()?, ts);
                self.pending.drop_front(&mut self.names);
            }
            _ => {
                let p = self.pending.pop_front(&mut self.names)?;
                self.transaction(p, ts, out).resp_bytes = used as u64;
            }
        }
        #[cfg(test)]
        {
            self.in_place[1] += 1;
        }
        Some(used)
    }

    /// Count `p`, answered plainly at `ts`, into `tally` when there is one and `p` may be
    /// counted without a record (nothing special about it, nothing lost; its name let
    /// go); else `p` back, to be reported.
    #[inline(always)]
    fn counted(&mut self, tally: Option<&mut Tally>, p: Pending, ts: Timestamp) -> Option<Pending> {
        match tally {
            Some(t) if p.special == Special::None && p.completeness == 0 => {
                self.count_into(t, &p, ts);
                self.names.release(p.name);
                // Only a query text (kept with `redact = false`) needs dropping: checked
                // here, the usual case skips a call to drop it.
                if let Some(q) = p.query {
                    drop(q);
                }
                None
            }
            _ => Some(p),
        }
    }

    /// Count `p`, answered at `ts`, into `t` by its name's shape.
    #[inline(always)]
    fn count_into(&self, t: &mut Tally, p: &Pending, ts: Timestamp) {
        let n = self.names.get(p.name);
        t.count(Protocol::Redis, n.shape, &n.op, &n.prefix, ts.since(p.start));
    }

    /// Remember the command just queued as `p` for [`Repeat`], when it is plain.
    fn remember(&mut self, spec: &'static Spec, key_at: usize, p: &Pending) {
        let cmd = &self.req.cmd;
        let name = cmd.args[0].bytes();
        // (A SELECT whose argument is not a database number is not special, but the next
        // one may be.)
        let plain = p.special == Special::None
            && spec.op != "SELECT"
            && p.completeness == 0
            && p.query.is_none()
            && !cmd.inline
            && cmd.argc < 100
            && name.len() <= 16
            && !std::ptr::eq(spec, &commands::OTHER);
        // The summary has the prefix of the key at `key_at` (1 or 2) when the command has
        // that argument. A repeat is checked for a first argument's prefix only, and only
        // for one that was found: a key without one may be followed by one with one.
        let keyed = (1..=2).contains(&key_at) && cmd.argc > key_at as u64;
        let prefix = &self.names.get(p.name).prefix;
        if !plain || (keyed && (key_at != 1 || prefix.is_empty())) {
            self.forget_repeat();
            return;
        }
        let r = self.repeat.get_or_insert_with(Box::default);
        let mut w = std::io::Cursor::new(&mut r.head[..]);
        // At most 10 bytes (`argc` and the name's length have two digits at most).
        let _ = write!(w, "*{}\r\n${}\r\n", cmd.argc, name.len());
        let n = w.position() as usize;
        r.head[n..n + name.len()].copy_from_slice(name);
        r.head[n + name.len()..n + name.len() + 2].copy_from_slice(b"\r\n");
        r.head_len = (n + name.len() + 2) as u8;
        r.argc = cmd.argc;
        r.keyed = keyed;
        r.lead.clear();
        if keyed {
            r.lead.push_str(prefix);
            r.lead.push_str(&self.cfg.key_prefix_delimiter);
        }
        r.blocking = p.blocking;
        let old = r.name.replace(p.name);
        if old != Some(p.name) {
            self.names.hold(p.name);
            if let Some(old) = old {
                self.names.release(old);
            }
        }
    }

    /// No repeat shortcut (its name let go).
    fn forget_repeat(&mut self) {
        if let Some(id) = self.repeat.as_mut().and_then(|r| r.name.take()) {
            self.names.release(id);
        }
    }

    /// A command was read (or, with `salvaged`, the start of one before a gap).
    fn on_command(&mut self, ts: Timestamp, salvaged: u16, out: &mut Vec<Transaction>) {
        let cmd = &self.req.cmd;
        let raw = cmd.args[0].bytes();
        let whole = cmd.args[0].total() <= NAME_MAX as u64;
        // A connection repeats a few commands: the same name, byte for byte, as the last
        // plain command's names the same command, found without upper-casing and hashing.
        // (Not a container or a module command: those need the upper-cased name below.)
        let (upper_name, n, mut spec, module) = match self.last_spec {
            Some(s) if whole && short_eq(raw, &self.last_name[..self.last_name_len as usize]) => {
                ([0u8; NAME_MAX], 0, s, false)
            }
            _ => {
                let (u, n) = upper(raw);
                let spec: &'static Spec = match commands::lookup(&u[..n]) {
                    Some(s) if whole => s,
                    _ => &commands::OTHER,
                };
                let module = spec.name == commands::OTHER.name
                    && whole
                    && commands::is_module_command(&u[..n]);
                if spec.name != commands::OTHER.name
                    && !spec.has(CONTAINER)
                    && raw.len() <= self.last_name.len()
                {
                    self.last_name[..raw.len()].copy_from_slice(raw);
                    self.last_name_len = raw.len() as u8;
                    self.last_spec = Some(spec);
                }
                (u, n, spec, module)
            }
        };
        let name = &upper_name[..n];
        if cmd.unsynced && cmd.inline && spec.name == commands::OTHER.name && !module {
            // Stray text while looking for sync (the middle of a value), not a command.
            return;
        }
        let container = spec.has(CONTAINER);
        if container && cmd.argc >= 2 {
            let sub = cmd.args[1].bytes();
            if cmd.args[1].is_whole() && !sub.is_empty() && n + 1 + sub.len() <= NAME_MAX {
                let mut full = [0u8; NAME_MAX];
                full[..n].copy_from_slice(name);
                full[n] = b'|';
                for (o, c) in full[n + 1..].iter_mut().zip(sub) {
                    *o = c.to_ascii_uppercase();
                }
                if let Some(s) = commands::lookup(&full[..n + 1 + sub.len()]) {
                    spec = s;
                }
            }
        }
        let module_op;
        let op = if module {
            // Known module prefix and a name-like rest (checked): valid UTF-8.
            module_op = String::from_utf8_lossy(name);
            &module_op
        } else {
            spec.op
        };
        let key_at = if module { 1 } else { spec.key as usize };
        let prefix_len = if (1..=2).contains(&key_at) && cmd.argc > key_at as u64 {
            self.prefix_len(cmd.args[key_at].bytes())
        } else {
            None
        };
        let special = special_of(spec.op, cmd);
        let query = self.query_text(spec.op, op);
        let mut completeness = salvaged;
        if cmd.gap {
            completeness |= Completeness::GAP;
        }
        let req_bytes = cmd.bytes;
        let prefix = match prefix_len {
            Some(at) => &self.req.cmd.args[key_at].bytes()[..at],
            None => &[],
        };
        let p = Pending {
            start: self.req_start,
            req_bytes,
            name: self.names.lookup(op, prefix),
            special,
            blocking: spec.has(BLOCKING),
            completeness,
            query,
        };
        let silenced = if self.reply_mode == ReplyMode::On && spec.op != "CLIENT REPLY" {
            false
        } else {
            let mode = self.req.cmd.args[2];
            self.silenced(spec.op, mode.bytes())
        };
        if silenced {
            self.forget_repeat();
            let tx = self.transaction(p, ts, out);
            tx.attr_bool("podtap.redis.no_reply", true);
            return;
        }
        if module || container {
            // Its name alone does not say what it is.
            self.forget_repeat();
        } else {
            self.remember(spec, key_at, &p);
        }
        self.pending.push(p, &mut self.names);
        self.bound_pending(ts, out);
    }

    /// Whether this command gets no reply (`CLIENT REPLY`); updates the mode.
    fn silenced(&mut self, op: &str, arg: &[u8]) -> bool {
        if op == "CLIENT REPLY" {
            if arg.eq_ignore_ascii_case(b"ON") {
                self.reply_mode = ReplyMode::On;
                return false;
            }
            if arg.eq_ignore_ascii_case(b"OFF") {
                self.reply_mode = ReplyMode::Off;
                return true;
            }
            if arg.eq_ignore_ascii_case(b"SKIP") {
                if self.reply_mode != ReplyMode::Off {
                    self.reply_mode = ReplyMode::SkipNext;
                }
                return true;
            }
        }
        match self.reply_mode {
            ReplyMode::On => false,
            ReplyMode::Off => true,
            ReplyMode::SkipNext => {
                self.reply_mode = ReplyMode::On;
                true
            }
        }
    }

    /// The part of `key` before the configured delimiter, when that comes within
    /// `max_key_prefix` bytes and the part is printable.
    fn prefix_len(&self, key: &[u8]) -> Option<usize> {
        let delim = self.cfg.key_prefix_delimiter.as_bytes();
        if delim.is_empty() {
            return None;
        }
        let window = &key[..key.len().min(self.cfg.max_key_prefix + delim.len())];
        let at = match delim {
            // The usual one-byte delimiter within a few bytes (`user:`): a byte loop,
            // without a vector search's or a substring searcher's set-up.
            [d] => window.iter().position(|c| c == d),
            _ => memchr::memmem::find(window, delim),
        }?;
        (at > 0 && at <= self.cfg.max_key_prefix && key[..at].iter().all(u8::is_ascii_graphic))
            .then_some(at)
    }

    /// `db.query.text` when `redact = false`.
    fn query_text(&self, spec_op: &str, op: &str) -> Option<Box<CompactString>> {
        let text = self.req.text()?;
        if SECRET_OPS.contains(&spec_op) {
            return Some(Box::new(compact_str::format_compact!("{op} ?")));
        }
        let mut s = CompactString::with_capacity(text.len());
        for &c in text {
            if c.is_ascii_graphic() || c == b' ' {
                s.push(c as char);
            } else {
                s.push_str(&compact_str::format_compact!("\\x{c:02x}"));
            }
        }
        Some(Box::new(s))
    }

    /// The transaction of `p` as it stands, ended at `end`, pushed onto `out` (built where
    /// it is kept: a transaction is a few hundred bytes to move).
    fn transaction<'o>(
        &mut self,
        p: Pending,
        end: Timestamp,
        out: &'o mut Vec<Transaction>,
    ) -> &'o mut Transaction {
        let n = self.names.get(p.name);
        let (op, prefix) = (n.op.clone(), n.prefix.clone());
        self.names.release(p.name);
        let summary = self.summary_of(&op, &prefix);
        let tx = Transaction::push_new(out, Protocol::Redis, p.start);
        tx.end = end.max(p.start);
        tx.req_bytes = p.req_bytes;
        tx.completeness = Completeness(p.completeness);
        // One push each: `extend` with an array of the four copied the array whole (a call
        // to `memcpy`) before moving each out of it.
        let a = &mut tx.attrs;
        a.push(("db.system.name", AttrValue::Str(CompactString::const_new("redis"))));
        a.push(("db.operation.name", AttrValue::Str(op.clone())));
        a.push(("db.namespace", AttrValue::Str(db_name(self.db))));
        a.push(("db.query.summary", AttrValue::Str(summary)));
        if let Some(q) = p.query {
            tx.attr_str("db.query.text", *q);
        }
        tx.operation = op;
        tx.resource = prefix;
        tx
    }

    /// `db.query.summary`: the command, and its key's prefix when it has one. The last
    /// one made with a prefix is kept: a connection repeats a few (made per record, not
    /// kept per waiting command: most commands are counted without a record).
    fn summary_of(&mut self, op: &CompactString, prefix: &CompactString) -> CompactString {
        if prefix.is_empty() {
            return op.clone();
        }
        let s = self.summary.as_bytes();
        let same = s.len() == op.len() + 1 + prefix.len()
            && s.starts_with(op.as_bytes())
            && s[op.len()] == b' '
            && s.ends_with(prefix.as_bytes());
        if !same {
            let mut s = CompactString::with_capacity(op.len() + 1 + prefix.len());
            s.push_str(op);
            s.push(' ');
            s.push_str(prefix);
            self.summary = s;
        }
        self.summary.clone()
    }

    fn classify(&self, r: &Reply) -> Class {
        if self.monitor {
            return Class::Message;
        }
        let first = r.first.bytes();
        match r.kind {
            Kind::Push if CONFIRMATIONS.contains(&first) => Class::Confirmation,
            Kind::Push => Class::Message,
            Kind::Array if (r.len == 3 || r.len == 4) && !first.is_empty() => {
                let confirmation = CONFIRMATIONS.contains(&first);
                let front_subscribes = matches!(
                    self.pending.front(),
                    Some(Pending {
                        special: Special::Subscribe { .. },
                        ..
                    })
                );
                let expected = self.subscribed
                    || front_subscribes
                    || self.skip_confirms > 0
                    || self.argless_unsub;
                let message = match first {
                    b"message" | b"smessage" => r.len == 3,
                    b"pmessage" => r.len == 4,
                    _ => false,
                };
                if confirmation && r.len == 3 && expected {
                    Class::Confirmation
                } else if message
                    && (self.subscribed || (self.pending.is_empty() && self.reported == 0))
                {
                    Class::Message
                } else {
                    Class::Reply
                }
            }
            _ => Class::Reply,
        }
    }

    /// A reply was read. With a `tally`, one that plainly answers a command of a known
    /// shape is counted there, without a record.
    fn on_reply(&mut self, ts: Timestamp, out: &mut Vec<Transaction>, tally: Option<&mut Tally>) {
        out.append(&mut self.ready);
        match self.classify(&self.rep.reply) {
            Class::Message => {
                self.stats.push_messages += 1;
                return;
            }
            Class::Confirmation => {
                if let Some(n) = self.rep.reply.last_int {
                    self.subscribed = n > 0;
                }
                if self.skip_confirms > 0 {
                    self.skip_confirms -= 1;
                    return;
                }
                let front_subscribes = matches!(
                    self.pending.front(),
                    Some(Pending {
                        special: Special::Subscribe { .. },
                        ..
                    })
                );
                if !front_subscribes && self.reported == 0 {
                    // Further confirmations of an unsubscribe from everything, or one
                    // whose command was not seen: not a reply.
                    if self.rep.reply.last_int == Some(0) {
                        self.argless_unsub = false;
                    }
                    return;
                }
            }
            Class::Reply => self.argless_unsub = false,
        }
        if self.reported > 0 {
            // The reply of a command reported already.
            self.reported -= 1;
            return;
        }
        let gap = self.rep.reply.gap || std::mem::take(&mut self.resp_gap);
        if std::mem::take(&mut self.resp_lost) {
            if self.pending.len() > 1 && !self.pipelined {
                // A client that does not pipeline sends a command once the one before it
                // was answered: those answers were in the gap, this one answers the last.
                while self.pending.len() > 1 {
                    if let Some(mut p) = self.pending.pop_front(&mut self.names) {
                        p.completeness |= Completeness::GAP | Completeness::NO_RESPONSE;
                        self.stats.replies_lost += 1;
                        let end = self.pending.front().map_or(ts, |n| n.start);
                        self.transaction(p, end, out);
                    }
                }
            }
        } else if self.pending.len() > 1 {
            self.pipelined = true;
        }
        let Some(mut p) = self.pending.pop_front(&mut self.names) else {
            // A reply without its command: picked up mid-stream, or the command was lost.
            let p = Pending {
                start: ts,
                req_bytes: 0,
                name: self.names.lookup("", b""),
                special: Special::None,
                blocking: false,
                completeness: Completeness::NO_REQUEST | if gap { Completeness::GAP } else { 0 },
                query: None,
            };
            let tx = self.transaction(p, ts, out);
            self.answer(tx, Special::None);
            return;
        };
        if gap {
            p.completeness |= Completeness::GAP;
        }
        let special = p.special;
        let r = &self.rep.reply;
        let plain = special == Special::None
            && !r.kind.is_error()
            && !(r.kind == Kind::SimpleString && r.text.bytes() == b"QUEUED");
        let p = if plain {
            match self.counted(tally, p, ts) {
                Some(p) => p,
                None => return,
            }
        } else {
            p
        };
        let tx = self.transaction(p, ts, out);
        self.answer(tx, special);
    }

    /// Fill `tx` from the reply just read, and apply what the command did.
    fn answer(&mut self, tx: &mut Transaction, special: Special) {
        let r = &self.rep.reply;
        tx.resp_bytes = r.bytes;
        let text = r.text.bytes();
        if r.kind.is_error() {
            let code = error_code(text);
            tx.attr_str("db.response.status_code", code.clone());
            tx.error = Some(code);
        } else if r.kind == Kind::SimpleString && text == b"QUEUED" {
            tx.attr_bool("podtap.redis.queued", true);
        } else if r.kind.is_aggregate() && r.kind != Kind::Push {
            let rows = match special {
                Special::Scan => r.second_len,
                Special::Exec | Special::Subscribe { .. } => None,
                _ => Some(r.len),
            };
            if let Some(rows) = rows {
                tx.attr_int(
                    "db.response.returned_rows",
                    rows.min(i64::MAX as u64) as i64,
                );
            }
        }
        let ok = r.kind == Kind::SimpleString && text == b"OK";
        let queued = r.kind == Kind::SimpleString && text == b"QUEUED";
        match special {
            Special::Select(db) if ok => self.db = db,
            Special::Select(db) if queued => self.queued_select = Some(db),
            Special::Exec => {
                if r.kind == Kind::Array
                    && let Some(db) = self.queued_select
                {
                    self.db = db;
                }
                self.queued_select = None;
            }
            Special::Discard | Special::Multi => self.queued_select = None,
            Special::Reset if r.kind == Kind::SimpleString => {
                self.db = 0;
                self.subscribed = false;
                self.monitor = false;
                self.reply_mode = ReplyMode::On;
                self.skip_confirms = 0;
                self.argless_unsub = false;
                self.queued_select = None;
            }
            Special::Monitor if ok => self.monitor = true,
            Special::Subscribe { channels } if !r.kind.is_error() => {
                if channels > 1 {
                    self.skip_confirms += u64::from(channels - 1);
                }
                self.argless_unsub = channels == 0;
            }
            _ => {}
        }
    }

    /// The reply under way will not be seen to its end (a gap, malformed bytes): its
    /// command is reported as it stands.
    fn reply_lost(&mut self, why: u16, out: &mut Vec<Transaction>) {
        if self.reported > 0 {
            self.reported -= 1;
            return;
        }
        if let Some(mut p) = self.pending.pop_front(&mut self.names) {
            p.completeness |= why | Completeness::NO_RESPONSE;
            let tx = self.transaction(p, self.last_ts, out);
            tx.resp_bytes = self.rep.reply.bytes;
        }
    }
}


/// The error's prefix: its first word when that is an upper-case code (`ERR`,
/// `WRONGTYPE`, `MOVED`), else `ERR`.
fn error_code(text: &[u8]) -> CompactString {
    let word = text.split(|&c| c == b' ').next().unwrap_or_default();
    if !word.is_empty()
        && word
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-')
    {
        // ASCII: valid UTF-8.
        CompactString::from_utf8_lossy(word)
    } else {
        CompactString::const_new("ERR")
    }
}

fn special_of(op: &str, cmd: &parser::Command) -> Special {
    match op {
        "SELECT" => {
            let arg = cmd.args[1].bytes();
            match std::str::from_utf8(arg).ok().and_then(|s| s.parse().ok()) {
                Some(db) if cmd.argc == 2 => Special::Select(db),
                _ => Special::None,
            }
        }
        "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE"
        | "SUNSUBSCRIBE" => Special::Subscribe {
            channels: u32::try_from(cmd.argc.saturating_sub(1)).unwrap_or(u32::MAX),
        },
        "MULTI" => Special::Multi,
        "EXEC" => Special::Exec,
        "DISCARD" => Special::Discard,
        "RESET" => Special::Reset,
        "MONITOR" => Special::Monitor,
        "SCAN" | "SSCAN" | "HSCAN" | "ZSCAN" => Special::Scan,
        _ => Special::None,
    }
}

impl L7Parser for RedisParser {
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::vec_bytes;
        self.pending.heap_bytes() + vec_bytes(&self.ready) + self.names.heap_bytes()
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        self.data(dir, bytes, ts, out, None)
    }

    fn on_data_tallied(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
        tally: &mut Tally,
    ) -> Progress {
        let tally = tally.is_on().then_some(tally);
        self.data(dir, bytes, ts, out, tally)
    }

    fn on_gap(&mut self, dir: Direction, missing: u32) {
        let missing = missing as u64;
        match dir {
            Direction::ToServer => {
                if let GapEffect::Lost { partial: true } = self.req.gap(missing)
                    && self.req.lost_named()
                {
                    // A command cut by the gap: its name is known, and its reply will
                    // come; keeping it keeps the pairs after it in order.
                    let mut ready = std::mem::take(&mut self.ready);
                    let ts = self.last_ts;
                    self.on_command(ts, Completeness::GAP | Completeness::TRUNCATED, &mut ready);
                    self.ready = ready;
                }
            }
            Direction::ToClient => {
                if let GapEffect::Lost { partial } = self.rep.gap(missing) {
                    if partial {
                        let mut ready = std::mem::take(&mut self.ready);
                        self.reply_lost(Completeness::GAP | Completeness::TRUNCATED, &mut ready);
                        self.ready = ready;
                    }
                    self.resp_lost = true;
                    self.resp_gap = true;
                }
            }
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        out.append(&mut self.ready);
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        if !self.rep.at_boundary() && !self.rep.is_lost() && self.reported == 0 {
            // A reply was under way: its command is reported with what was seen of it.
            if let Some(mut p) = self.pending.pop_front(&mut self.names) {
                p.completeness |= why | Completeness::TRUNCATED;
                let tx = self.transaction(p, self.rep_ts, out);
                tx.resp_bytes = self.rep.reply.bytes;
            }
        }
        while let Some(mut p) = self.pending.pop_front(&mut self.names) {
            p.completeness |= why | Completeness::NO_RESPONSE;
            self.transaction(p, ts, out);
        }
        self.reported = 0;
        #[cfg(test)]
        self.check_holds();
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        out.append(&mut self.ready);
        // Oldest first; a blocking command (BLPOP...) may wait as long as it likes, and
        // the commands after it wait for it.
        while let Some(p) = self.pending.front() {
            if p.blocking || now.since(p.start) < timeout_ns {
                break;
            }
            let Some(mut p) = self.pending.pop_front(&mut self.names) else {
                break;
            };
            self.stats.timeouts += 1;
            self.reported += 1;
            p.completeness |= Completeness::NO_RESPONSE;
            let tx = self.transaction(p, now, out);
            tx.error = Some(CompactString::const_new("timeout"));
        }
        #[cfg(test)]
        self.check_holds();
    }
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for RedisParser {
    type Config = RedisConfig;
    type Shared = Arc<RedisConfig>;
    const PORTS: &'static [u16] = &[6379];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = RedisEvent;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(Arc::new(cfg.redis.settings.clone()))
    }

    /// RESP commands anywhere; inline commands and replies only on a Redis port.
    fn probe(p: &Probe<'_>) -> Confidence {
        probe(p.bytes, p.dir, p.hinted)
    }

    fn new(shared: &Self::Shared, _: Transport) -> Self {
        RedisParser::new(shared.clone())
    }

    fn protocol(&self) -> Protocol {
        Protocol::Redis
    }

    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c)
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TELEMETRY
    }
}

/// How Redis commands become metrics and spans (the database conventions).
static TELEMETRY: Telemetry = Telemetry {
    duration: super::registry::DB_DURATION,
    metric_attrs: super::registry::DB_METRIC_ATTRS,
    span_name: |tx| format!("redis {}", tx.operation),
    attributes: &[
        "db.system.name",
        "db.operation.name",
        "db.namespace",
        "db.query.summary",
        "db.query.text",
        "db.response.status_code",
        "db.response.returned_rows",
        "podtap.redis.no_reply",
        "podtap.redis.queued",
    ],
    base: None,
};
