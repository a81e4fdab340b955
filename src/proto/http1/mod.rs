//! HTTP/1.0 and HTTP/1.1.
//!
//! Two layers: message framing per direction (heads parsed zero-copy by `head`,
//! bodies skipped by length, chunked encoding walked without buffering the body) and the
//! pairing of requests with responses in order (keep-alive and pipelining). Interim 1xx
//! responses do not complete a request; HEAD, 204 and 304 responses have no body; a
//! response without a length runs to the end of the connection. After a 101 (WebSocket,
//! h2c) or a successful CONNECT the connection is no longer HTTP/1 and decoding stops.

use compact_str::CompactString;
use std::sync::Arc;

// Request-line starts, shared with protocol detection.
use super::detect::Transport;
use super::heap::{HeapSize, TrackedDeque};
use super::http_common::{HttpSettings, HttpStats, RouteCache, TraceHeaders, lossy};
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::scan::token_eq_lower;
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::time::Timestamp;

/// How an HTTP/1 request line starts (method and space).
pub const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];

mod parser;

/// Framing state of one direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Framing {
    /// Expecting (or inside) a message head.
    Head,
    /// Skipping a body of known remaining length.
    Body(u64),
    Chunked(Chunk),
    /// Body delimited by the end of the connection.
    UntilClose,
    /// Lost sync (gap, garbage, oversized head): look for the next message start.
    Lost,
    /// No longer HTTP/1 (after 101 or CONNECT).
    Tunnel,
}

/// Chunked transfer coding, one state per position in the grammar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Chunk {
    Size { val: u64, digits: u8, ext: bool },
    SizeLf { val: u64 },
    Data(u64),
    DataCr,
    DataLf,
    TrailerStart,
    TrailerLine,
    TrailerEndLf,
}

/// Result of walking chunked bytes.
enum ChunkStep {
    More,
    Done,
    Error,
}

/// Walk chunked framing over `b`; returns bytes consumed and whether the body ended.
fn step_chunked(st: &mut Chunk, b: &[u8]) -> (usize, ChunkStep) {
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match st {
            Chunk::Data(n) => {
                let take = (*n).min((b.len() - i) as u64);
                i += take as usize;
                *n -= take;
                if *n == 0 {
                    *st = Chunk::DataCr;
                }
                continue;
            }
            Chunk::Size { val, digits, ext } => {
                if !*ext && c.is_ascii_hexdigit() {
                    let d = (c as char).to_digit(16).unwrap_or(0) as u64;
                    match val.checked_mul(16).and_then(|v| v.checked_add(d)) {
                        Some(v) if *digits < 16 => {
                            *val = v;
                            *digits += 1;
                        }
                        _ => return (i, ChunkStep::Error),
                    }
                } else if c == b'\r' || c == b'\n' {
                    if *digits == 0 {
                        return (i, ChunkStep::Error);
                    }
                    let v = *val;
                    if c == b'\r' {
                        *st = Chunk::SizeLf { val: v };
                    } else {
                        *st = if v == 0 {
                            Chunk::TrailerStart
                        } else {
                            Chunk::Data(v)
                        };
                    }
                } else if *digits > 0 && matches!(c, b';' | b' ' | b'\t') {
                    *ext = true;
                } else if !*ext {
                    return (i, ChunkStep::Error);
                }
            }
            Chunk::SizeLf { val } => {
                if c != b'\n' {
                    return (i, ChunkStep::Error);
                }
                *st = if *val == 0 {
                    Chunk::TrailerStart
                } else {
                    Chunk::Data(*val)
                };
            }
            Chunk::DataCr => match c {
                b'\r' => *st = Chunk::DataLf,
                b'\n' => {
                    *st = Chunk::Size {
                        val: 0,
                        digits: 0,
                        ext: false,
                    }
                }
                _ => return (i, ChunkStep::Error),
            },
            Chunk::DataLf => {
                if c != b'\n' {
                    return (i, ChunkStep::Error);
                }
                *st = Chunk::Size {
                    val: 0,
                    digits: 0,
                    ext: false,
                };
            }
            Chunk::TrailerStart => match c {
                b'\r' => *st = Chunk::TrailerEndLf,
                b'\n' => return (i + 1, ChunkStep::Done),
                _ => *st = Chunk::TrailerLine,
            },
            Chunk::TrailerLine => {
                if c == b'\n' {
                    *st = Chunk::TrailerStart;
                }
            }
            Chunk::TrailerEndLf => {
                return if c == b'\n' {
                    (i + 1, ChunkStep::Done)
                } else {
                    (i, ChunkStep::Error)
                };
            }
        }
        i += 1;
    }
    (i, ChunkStep::More)
}

/// One direction's message state.
struct Side {
    framing: Framing,
    /// Head bytes when a head spans several chunks (bounded by `max_header_bytes`).
    buf: Vec<u8>,
    /// Bytes of the current message so far.
    msg_bytes: u64,
    /// Body bytes of the current message so far.
    body_bytes: u64,
    msg_start: Timestamp,
    /// The current message crossed a gap.
    gap: bool,
    /// At the start of a line (for resynchronisation).
    line_start: bool,
}

impl Side {
    fn new() -> Side {
        Side {
            framing: Framing::Head,
            buf: Vec::new(),
            msg_bytes: 0,
            body_bytes: 0,
            msg_start: Timestamp::ZERO,
            gap: false,
            line_start: true,
        }
    }

    /// While sync is lost: where in `rest` the next message goes on, with the side reset
    /// to read its head; `None` when `rest` holds no start of one. The last chunk may have
    /// ended in what could begin a start line: those bytes wait in `buf` (see [`resync`]),
    /// and the first bytes of `rest` decide. When they do begin one, the head goes on at
    /// `rest[0]` with its first bytes buffered already.
    fn find_start(&mut self, rest: &[u8], dir: Direction, ts: Timestamp) -> Option<usize> {
        if !self.buf.is_empty() {
            let carried = self.buf.len();
            self.buf
                .extend_from_slice(&rest[..rest.len().min(START_MAX)]);
            let verdict = start_line(&self.buf, dir);
            self.buf.truncate(carried);
            match verdict {
                StartLine::Yes => {
                    let head = std::mem::take(&mut self.buf);
                    self.reset_message();
                    self.buf = head;
                    self.msg_bytes = carried as u64;
                    return Some(0);
                }
                StartLine::Maybe => {
                    self.buf.extend_from_slice(rest);
                    return None;
                }
                StartLine::No => {
                    self.buf.clear();
                    self.line_start = false;
                }
            }
        }
        let at = resync(rest, dir, &mut self.line_start, &mut self.buf);
        match at {
            Some(_) => self.reset_message(),
            None if !self.buf.is_empty() => self.msg_start = ts,
            None => {}
        }
        at
    }

    fn reset_message(&mut self) {
        self.framing = Framing::Head;
        self.msg_bytes = 0;
        self.body_bytes = 0;
        self.gap = false;
        self.buf.clear();
    }
}

/// A request waiting for its response.
struct Pending {
    id: u64,
    tx: Transaction,
    head_request: bool,
    connect: bool,
}

impl HeapSize for Pending {
    fn heap_size(&self) -> usize {
        self.tx.heap_size()
    }
}

pub struct Http1Parser {
    settings: Arc<HttpSettings>,
    req: Side,
    resp: Side,
    /// Requests in order, oldest first; while `answering`, the first is the one whose
    /// response is being received (it stays in place: a transaction is a few hundred bytes
    /// to copy), and those after it wait.
    pending: TrackedDeque<Pending>,
    /// A response head was read and its message is not complete yet: `pending`'s first
    /// request is the one it answers.
    answering: bool,
    /// The client was seen pipelining: a response, with no gap before it, found more than
    /// one request waiting.
    pipelined: bool,
    /// Response bytes past the end of the message they were in were lost since the last
    /// response head: whole responses may have been among them.
    resp_gap: bool,
    next_id: u64,
    /// Id of the request message being received (for its final size).
    req_id: u64,
    last_ts: Timestamp,
    /// Transactions finished by a gap, emitted with the next call that has an output.
    ready: Vec<Transaction>,
    /// After a successful CONNECT: the next bytes decide whether the tunnel carries HTTP/1.
    probe_tunnel: bool,
    /// After `Upgrade: h2c` answered by 101: the upgraded request (HTTP/2 stream 1).
    h2c: Option<Transaction>,
    /// Bytes of the last `on_data` chunk left unread when the connection left HTTP/1.
    tunnel_rest: usize,
    stats: HttpStats,
    /// The connection's last request path and its route.
    routes: RouteCache,
}

impl Default for Http1Parser {
    fn default() -> Self {
        Http1Parser::new(Arc::new(HttpSettings::default()))
    }
}

/// How a message's body is delimited.
fn body_framing(chunked: bool, content_length: Option<u64>, until_close: bool) -> Framing {
    if chunked {
        Framing::Chunked(Chunk::Size {
            val: 0,
            digits: 0,
            ext: false,
        })
    } else if let Some(n) = content_length {
        Framing::Body(n)
    } else if until_close {
        Framing::UntilClose
    } else {
        Framing::Body(0)
    }
}

fn header_has_token(v: &[u8], token: &str) -> bool {
    // Nearly every value is one token (`keep-alive`, `chunked`): compared whole, without
    // the split and its byte-at-a-time walk.
    let v = parser::field_value(v);
    if !v.contains(&b',') {
        return v.eq_ignore_ascii_case(token.as_bytes());
    }
    v.split(|&c| c == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// The length of `head` once its fields were walked to the blank line (`None` if the bytes
/// ran out first), counted into the message if the buffer did not count it already.
fn head_len(
    side: &mut Side,
    head: &[u8],
    fields: &parser::Fields<'_>,
    uncounted: bool,
) -> Option<usize> {
    if !fields.complete() {
        return None;
    }
    let len = head.len() - fields.rest().len();
    if uncounted {
        side.msg_bytes += len as u64;
    }
    Some(len)
}

/// Walk a head's fields, handing each name and raw value to `each`; `None` at a malformed
/// field. The walk may end before the blank line (`head_len` tells).
#[inline(always)]
fn walk_fields<'a>(
    block: &'a [u8],
    mut each: impl FnMut(&'a str, &'a [u8]),
) -> Option<parser::Fields<'a>> {
    let mut fields = parser::fields(block);
    for field in fields.by_ref() {
        let (name, value) = field.ok()?;
        each(name, value);
    }
    Some(fields)
}

/// The host of a Host header value: without its port, and without the brackets of an IPv6
/// literal (`[::1]:8080` is `::1`).
fn host_name(host: &str) -> &str {
    // A port has five digits at most: its colon is among the last six bytes (a loop over
    // those beats a general search, which costs ~150 instructions to set up). The colons
    // of a bracketed IPv6 literal come before its `]`.
    let b = host.as_bytes();
    let colon = (b.len().saturating_sub(6)..b.len())
        .rev()
        .find(|&i| b[i] == b':');
    let host = match colon {
        Some(i) if !host[i..].contains(']') => &host[..i],
        _ => host,
    };
    // Brackets are rare: look for them before trimming them.
    if host.starts_with('[') || host.ends_with(']') {
        host.trim_start_matches('[').trim_end_matches(']')
    } else {
        host
    }
}

/// A Content-Length value: decimal digits only (RFC 9110 section 8.6), no sign.
fn parse_len(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() {
        return None;
    }
    v.iter().try_fold(0u64, |n, &c| {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(d as u64)
    })
}

/// What a request head's fields say about its framing.
struct RequestFields {
    chunked: bool,
    length: Option<u64>,
    upgrade: Option<CompactString>,
}

/// Fill `tx` from a request line and walk its header fields, offering each to `trace`;
/// `None` for a malformed field. The walk may end before the blank line (the caller checks
/// `Fields::complete`). `trace` is the caller's: it is a few hundred bytes to move.
fn request_fields<'a>(
    settings: &HttpSettings,
    routes: &mut RouteCache,
    tx: &mut Transaction,
    trace: &mut TraceHeaders,
    line: &parser::RequestLine<'_>,
    block: &'a [u8],
) -> Option<(parser::Fields<'a>, RequestFields)> {
    let target = lossy(line.target);
    settings.finish_request_cached(tx, line.method, &target, routes);
    tx.attr_str(
        "network.protocol.version",
        if line.minor == 0 { "1.0" } else { "1.1" },
    );
    let (mut chunked, mut length, mut upgrade) = (false, None, None);
    let fields = walk_fields(block, |name, raw| {
        // One comparison per field, chosen by the name's length. (`raw` still has its
        // optional whitespace and CR: the token and number parsers and the trace headers
        // trim what they read.)
        let is = |lower: &[u8]| token_eq_lower(name.as_bytes(), lower);
        match name.len() {
            4 if is(b"host") => {
                let host = lossy(parser::field_value(raw));
                tx.attr_str("server.address", host_name(host.as_ref()));
            }
            10 if is(b"user-agent") => {
                let agent = lossy(parser::field_value(raw));
                tx.attr_str("user_agent.original", agent.as_ref());
            }
            17 if is(b"transfer-encoding") => chunked = header_has_token(raw, "chunked"),
            14 if is(b"content-length") => length = parse_len(raw),
            7 if is(b"upgrade") => upgrade = Some(CompactString::from(lossy(raw).trim())),
            _ => {}
        }
        trace.on_header(name.as_bytes(), raw);
        if settings.captures_headers() {
            settings.capture_header(tx, name, parser::field_value(raw));
        }
    })?;
    Some((
        fields,
        RequestFields {
            chunked,
            length,
            upgrade,
        },
    ))
}

impl Http1Parser {
    pub fn new(settings: Arc<HttpSettings>) -> Self {
        Http1Parser {
            settings,
            req: Side::new(),
            resp: Side::new(),
            pending: TrackedDeque::new(),
            answering: false,
            pipelined: false,
            resp_gap: false,
            next_id: 0,
            req_id: 0,
            last_ts: Timestamp::ZERO,
            ready: Vec::new(),
            probe_tunnel: false,
            h2c: None,
            tunnel_rest: 0,
            stats: HttpStats::default(),
            routes: RouteCache::default(),
        }
    }

    pub fn take_stats(&mut self) -> HttpStats {
        std::mem::take(&mut self.stats)
    }

    /// Requests still waiting for a response.
    /// After the connection switched to HTTP/2 (`Upgrade: h2c`, 101): the upgraded request
    /// and how many bytes at the end of the last chunk belong to HTTP/2 already.
    pub fn take_h2c_upgrade(&mut self) -> Option<(Transaction, usize)> {
        self.h2c.take().map(|tx| (tx, self.tunnel_rest))
    }

    /// Requests without a complete response (the one being answered included).
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// The request whose response is being received.
    fn current(&mut self) -> Option<&mut Pending> {
        if self.answering {
            self.pending.front_mut()
        } else {
            None
        }
    }

    /// Index in `pending` of the oldest request still waiting for its response.
    fn first_waiting(&self) -> usize {
        self.answering as usize
    }

    fn side(&mut self, dir: Direction) -> &mut Side {
        match dir {
            Direction::ToServer => &mut self.req,
            Direction::ToClient => &mut self.resp,
        }
    }

    /// Feed bytes of one direction; returns false once the connection left HTTP/1.
    fn feed(
        &mut self,
        dir: Direction,
        mut rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> bool {
        if self.probe_tunnel && !rest.is_empty() {
            self.probe_tunnel = false;
            // The first byte decides: a method's first letter, or `H` of a status line.
            // TLS (0x16) and other protocols start differently.
            let plausible = match dir {
                Direction::ToServer => METHODS.iter().any(|m| m[0] == rest[0]),
                Direction::ToClient => rest[0] == b'H',
            };
            if !plausible {
                self.req.framing = Framing::Tunnel;
                self.resp.framing = Framing::Tunnel;
                return false;
            }
        }
        while !rest.is_empty() {
            let side = self.side(dir);
            match side.framing {
                Framing::Tunnel => {
                    self.tunnel_rest = rest.len();
                    return false;
                }
                Framing::Head => {
                    if side.buf.is_empty() && side.msg_bytes == 0 {
                        side.msg_start = ts;
                    }
                    // Most heads arrive whole in one chunk: parse in place, and the parse
                    // finds the blank line (no separate scan for it). A head cut short,
                    // too large or malformed goes the buffered way below, which tells
                    // those apart.
                    if side.buf.is_empty() {
                        let max = self.settings.cfg.max_header_bytes;
                        let window = &rest[..rest.len().min(max)];
                        if let Some(len) = self.on_head(dir, window, true, ts, out) {
                            rest = &rest[len..];
                            self.maybe_complete(dir, ts, out);
                            continue;
                        }
                    }
                    match self.take_head(dir, rest) {
                        HeadScan::Complete {
                            consumed,
                            head_in_buf,
                        } => {
                            let ok = if head_in_buf {
                                // Parse from the buffer, then hand it back (capacity kept).
                                let buf = std::mem::take(&mut self.side(dir).buf);
                                let ok = self.on_head(dir, &buf, false, ts, out).is_some();
                                let side = self.side(dir);
                                side.buf = buf;
                                side.buf.clear();
                                ok
                            } else {
                                self.on_head(dir, &rest[..consumed], false, ts, out)
                                    .is_some()
                            };
                            rest = &rest[consumed..];
                            if !ok {
                                self.stats.parse_errors += 1;
                                self.lose_sync(dir, false);
                            } else {
                                self.maybe_complete(dir, ts, out);
                            }
                        }
                        HeadScan::Partial => return true,
                        HeadScan::TooLarge => {
                            // Reported with what its start line says (method and path,
                            // or the status), marked truncated: a request never vanishes
                            // because its head is too large to decode.
                            self.stats.buffer_limit += 1;
                            let side = self.side(dir);
                            let start = if side.buf.is_empty() { rest } else { &side.buf };
                            let line = first_line(start);
                            self.salvage_line(dir, &line, Completeness::TRUNCATED);
                            // The rest of this chunk is searched for the next message
                            // (from the next line on), as any later chunk would be.
                            self.lose_sync(dir, false);
                            continue;
                        }
                    }
                }
                Framing::Body(n) => {
                    let take = n.min(rest.len() as u64);
                    side.framing = Framing::Body(n - take);
                    side.msg_bytes += take;
                    side.body_bytes += take;
                    rest = &rest[take as usize..];
                    self.maybe_complete(dir, ts, out);
                }
                Framing::Chunked(mut st) => {
                    let (used, step) = step_chunked(&mut st, rest);
                    side.framing = Framing::Chunked(st);
                    side.msg_bytes += used as u64;
                    side.body_bytes += used as u64;
                    rest = &rest[used..];
                    match step {
                        ChunkStep::More => {}
                        ChunkStep::Done => self.complete(dir, ts, out),
                        ChunkStep::Error => {
                            // The rest of this message cannot be framed: it is reported
                            // as decoded so far.
                            self.stats.parse_errors += 1;
                            self.mark_current(dir, Completeness::TRUNCATED);
                            self.lose_sync(dir, false);
                        }
                    }
                }
                Framing::UntilClose => {
                    side.msg_bytes += rest.len() as u64;
                    side.body_bytes += rest.len() as u64;
                    return true;
                }
                Framing::Lost => match side.find_start(rest, dir, ts) {
                    Some(at) => rest = &rest[at..],
                    None => return true,
                },
            }
        }
        true
    }

    /// Find the end of the head starting at `rest` (or continuing the buffered one).
    fn take_head(&mut self, dir: Direction, rest: &[u8]) -> HeadScan {
        let max = self.settings.cfg.max_header_bytes;
        let side = self.side(dir);
        if side.buf.is_empty() {
            // A head longer than `max` is too large wherever it ends: look no further.
            if let Some(end) = head_end(&rest[..rest.len().min(max + 3)], 0) {
                if end > max {
                    return HeadScan::TooLarge;
                }
                side.msg_bytes += end as u64;
                return HeadScan::Complete {
                    consumed: end,
                    head_in_buf: false,
                };
            }
            if rest.len() > max {
                return HeadScan::TooLarge;
            }
            side.buf.extend_from_slice(rest);
            side.msg_bytes += rest.len() as u64;
            return HeadScan::Partial;
        }
        let old = side.buf.len();
        let room = (max + 1).saturating_sub(old);
        side.buf.extend_from_slice(&rest[..rest.len().min(room)]);
        match head_end(&side.buf, old.saturating_sub(3)) {
            Some(end) => {
                side.buf.truncate(end);
                let consumed = end - old;
                side.msg_bytes += consumed as u64;
                HeadScan::Complete {
                    consumed,
                    head_in_buf: true,
                }
            }
            None if side.buf.len() > max => HeadScan::TooLarge,
            None => {
                side.msg_bytes += (side.buf.len() - old) as u64;
                HeadScan::Partial
            }
        }
    }

    /// Parse the head at the start of `head` and act on it. Returns its length, or `None`
    /// when `head` holds no complete, well-formed head; then nothing has changed.
    /// `uncounted`: the head's bytes are not yet in the message's byte count (the head is
    /// parsed in place, not from the buffer that counted them as they arrived).
    fn on_head(
        &mut self,
        dir: Direction,
        head: &[u8],
        uncounted: bool,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Option<usize> {
        match dir {
            Direction::ToServer => self.on_request_head(head, uncounted, ts, out),
            Direction::ToClient => self.on_response_head(head, uncounted, ts, out),
        }
    }

    fn on_request_head(
        &mut self,
        head: &[u8],
        uncounted: bool,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Option<usize> {
        let (line, block) = parser::request_line(head)?;
        let method = line.method;
        // The transaction is built where it waits for its response: it is a few hundred
        // bytes, and building it aside costs copies into the queue. A head that turns out
        // incomplete or malformed takes it back out (nothing else has changed then).
        self.pending.push_back_empty(Pending {
            id: 0,
            tx: Transaction::new(Protocol::Http, self.req.msg_start),
            head_request: false,
            connect: false,
        });
        let p = self.pending.back_mut()?;
        let mut trace = TraceHeaders::default();
        let (settings, routes) = (&self.settings, &mut self.routes);
        let walked = request_fields(settings, routes, &mut p.tx, &mut trace, &line, block)
            .and_then(|(fields, f)| Some((head_len(&mut self.req, head, &fields, uncounted)?, f)));
        let Some((
            len,
            RequestFields {
                chunked,
                length,
                upgrade,
            },
        )) = walked
        else {
            self.pending.pop_back();
            return None;
        };
        let tx = &mut p.tx;
        tx.trace = trace.finish().map(Box::new);
        if let Some(u) = &upgrade {
            tx.attr_str("podtap.http.upgrade", u.to_ascii_lowercase());
        }
        if self.req.gap {
            tx.completeness.set(Completeness::GAP);
        }
        self.next_id += 1;
        self.req_id = self.next_id;
        p.id = self.req_id;
        p.head_request = method.eq_ignore_ascii_case("HEAD");
        p.connect = method.eq_ignore_ascii_case("CONNECT");
        // Built in place: what it owns now counts against the worker's decoder heap.
        self.pending.recount_back();
        // The queue holds the new request already: beyond the limit by one.
        let waiting = self.pending.len() - self.first_waiting();
        if waiting > self.settings.cfg.max_pending.max(1)
            && let Some(mut old) = self.pending.remove(self.first_waiting())
        {
            self.stats.pending_limit += 1;
            old.tx.completeness.set(Completeness::NO_RESPONSE);
            old.tx.end = ts;
            out.push(old.tx);
        }
        self.req.framing = body_framing(chunked, length, false);
        Some(len)
    }

    fn on_response_head(
        &mut self,
        head: &[u8],
        uncounted: bool,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Option<usize> {
        let (minor, code, block) = parser::status_line(head)?;
        let (mut chunked, mut length, mut close) = (false, None, minor == 0);
        let fields = walk_fields(block, |name, raw| {
            // One comparison per field, chosen by the name's length; the parsers trim.
            let is = |lower: &[u8]| token_eq_lower(name.as_bytes(), lower);
            match name.len() {
                17 if is(b"transfer-encoding") => chunked = header_has_token(raw, "chunked"),
                14 if is(b"content-length") => length = parse_len(raw),
                10 if is(b"connection") => close |= header_has_token(raw, "close"),
                _ => {}
            }
        })?;
        let len = head_len(&mut self.resp, head, &fields, uncounted)?;
        let head_len = len as u64;
        // (A response still being answered has ended unseen; `lose_sync` reports such
        // responses, this is a safeguard that no path replaces one silently. Its bytes
        // are not known apart from this head's any more.)
        self.give_up_current(0, out);
        self.skip_lost_responses(out);
        if (100..200).contains(&code) && code != 101 {
            // Interim response: counted towards the request it answers, which stays open.
            if let Some(p) = self.pending.front_mut() {
                p.tx.resp_bytes += head_len;
                p.tx.attr_int("podtap.http.interim_status", code as i64);
            }
            self.resp.reset_message();
            return Some(len);
        }
        // The answered request stays at the queue's front and is completed there: each
        // move of a transaction is a copy of a few hundred bytes.
        if self.pending.is_empty() {
            // A response without its request: picked up midstream or after a gap.
            let mut tx = Transaction::new(Protocol::Http, self.resp.msg_start);
            tx.completeness.set(Completeness::NO_REQUEST);
            self.pending.push_front(Pending {
                id: 0,
                tx,
                head_request: false,
                connect: false,
            });
        }
        self.answering = true;
        let p = self.pending.front_mut()?;
        p.tx.status = Some(code as i64);
        p.tx.attr_int("http.response.status_code", code as i64);
        // A 4xx is an error only where the client is observed: `stats::settle_error`.
        if code >= 500 {
            p.tx.error = Some(code.to_string().into());
        }
        if self.resp.gap {
            p.tx.completeness.set(Completeness::GAP);
        }
        let tunnel = code == 101;
        let connected = p.connect && (200..300).contains(&code);
        let no_body = p.head_request || code == 204 || code == 304 || tunnel || connected;
        self.resp.framing = if no_body {
            Framing::Body(0)
        } else {
            body_framing(chunked, length, true)
        };
        if close && self.resp.framing == Framing::UntilClose {
            p.tx.attr_bool("podtap.http.body_until_close", true);
        }
        if tunnel
            && matches!(p.tx.attr("podtap.http.upgrade"),
                Some(super::AttrValue::Str(u)) if header_has_token(u.as_bytes(), "h2c"))
        {
            // The request before its response fields: HTTP/2 answers it on stream 1.
            let mut req = p.tx.clone();
            req.attrs.retain(|(k, _)| {
                !matches!(*k, "http.response.status_code" | "http.request.body.size")
            });
            req.status = None;
            req.error = None;
            self.h2c = Some(req);
        }
        if tunnel {
            self.complete(Direction::ToClient, ts, out);
            self.req.framing = Framing::Tunnel;
            self.resp.framing = Framing::Tunnel;
        } else if connected {
            // A proxy tunnel: keep decoding only if what flows through it is HTTP/1 too.
            self.probe_tunnel = true;
        }
        Some(len)
    }

    /// A message whose body has been fully skipped is complete.
    fn maybe_complete(&mut self, dir: Direction, ts: Timestamp, out: &mut Vec<Transaction>) {
        if self.side(dir).framing == Framing::Body(0) {
            self.complete(dir, ts, out);
        }
    }

    fn complete(&mut self, dir: Direction, ts: Timestamp, out: &mut Vec<Transaction>) {
        let side = self.side(dir);
        let (bytes, body) = (side.msg_bytes, side.body_bytes);
        let tunnel = side.framing == Framing::Tunnel;
        match dir {
            Direction::ToServer => {
                let id = self.req_id;
                // Ids are unique; the request just received is nearly always the queue's
                // last entry, so the search starts there.
                if let Some(p) = self.pending.iter_mut().rev().find(|p| p.id == id) {
                    p.tx.req_bytes = bytes;
                    p.tx.attr_int("http.request.body.size", body as i64);
                }
            }
            Direction::ToClient => {
                let req_bytes = self.req.msg_bytes;
                let req_id = self.req_id;
                if let Some(p) = self.current() {
                    p.tx.resp_bytes += bytes;
                    p.tx.end = ts;
                    p.tx.attr_int("http.response.body.size", body as i64);
                    // A request still streaming its body reports what was seen so far.
                    if p.tx.req_bytes == 0 && p.id == req_id {
                        p.tx.req_bytes = req_bytes;
                    }
                }
                // Finished in place, then moved once.
                if self.answering
                    && let Some(p) = self.pending.pop_front()
                {
                    self.answering = false;
                    out.push(p.tx);
                }
            }
        }
        if !tunnel {
            self.side(dir).reset_message();
        }
    }

    /// Called at a response head. A client that does not pipeline sends each request after
    /// reading the response to the one before, so it has more than one request waiting
    /// only when whole responses were lost in a gap: this response answers the last of
    /// them, and the others are reported unanswered. Matched in order instead, every later
    /// response of the connection would pair with the request before its own. (A client
    /// whose first pipelined requests coincide with the gap is taken for one that does not
    /// pipeline: the one case this gets wrong, and it is marked `gap` all the same.)
    fn skip_lost_responses(&mut self, out: &mut Vec<Transaction>) {
        let after_gap = std::mem::take(&mut self.resp_gap);
        let waiting = self.pending.len() - self.first_waiting();
        if waiting < 2 {
            return;
        }
        if !after_gap {
            self.pipelined = true;
            return;
        }
        if self.pipelined {
            return;
        }
        for _ in 1..waiting {
            let Some(mut p) = self.pending.pop_front() else {
                break;
            };
            p.tx.completeness.set(Completeness::GAP);
            p.tx.completeness.set(Completeness::NO_RESPONSE);
            // The lost response was read before the next request was sent.
            let next = self.pending.front().map_or(self.last_ts, |n| n.tx.start);
            p.tx.end = next.max(p.tx.start);
            self.stats.responses_lost += 1;
            out.push(p.tx);
        }
    }

    /// Give up on the current message and look for the next one. `at_line_start`: the
    /// next byte may begin a message (after a gap: the bytes after it start a segment, and
    /// messages usually start segments); otherwise only bytes after a newline can.
    fn lose_sync(&mut self, dir: Direction, at_line_start: bool) {
        if dir == Direction::ToClient {
            let mut ready = std::mem::take(&mut self.ready);
            self.give_up_current(self.resp.msg_bytes, &mut ready);
            self.ready = ready;
        }
        let side = self.side(dir);
        side.framing = Framing::Lost;
        side.buf.clear();
        side.line_start = at_line_start;
    }

    /// A response being received that will not be seen to its end (its bytes lost to a
    /// gap or malformed): reported as it stands, with the `bytes` of it seen, its
    /// completeness saying why, instead of being replaced by the next response. Pushed
    /// onto `out` rather than returned: an `Option<Transaction>` is a copy of a few hundred
    /// bytes even when it is `None`, and nearly every call has nothing to give up.
    fn give_up_current(&mut self, bytes: u64, out: &mut Vec<Transaction>) {
        if !std::mem::take(&mut self.answering) {
            return;
        }
        if let Some(mut p) = self.pending.pop_front() {
            p.tx.resp_bytes += bytes;
            p.tx.end = self.last_ts.max(p.tx.start);
            out.push(p.tx);
        }
    }

    fn mark_current(&mut self, dir: Direction, bit: u16) {
        match dir {
            Direction::ToServer => {
                if let Some(p) = self.pending.back_mut() {
                    p.tx.completeness.set(bit);
                }
            }
            Direction::ToClient => {
                // The request being answered, or else the next to be.
                if let Some(p) = self.pending.front_mut() {
                    p.tx.completeness.set(bit);
                }
            }
        }
    }

    /// The start line of a head interrupted by a gap (still in the buffer).
    fn salvage_head(&mut self, dir: Direction) {
        let line = first_line(&self.side(dir).buf);
        self.salvage_line(dir, &line, Completeness::GAP | Completeness::TRUNCATED);
    }

    /// Report what the start line of a head that cannot be decoded whole says: a request
    /// (method, target) waits for its response; a response (status) answers the request
    /// waiting for it. `incomplete`: why the rest is unknown.
    fn salvage_line(&mut self, dir: Direction, line: &str, incomplete: u16) {
        let mut parts = line.split(' ');
        match dir {
            Direction::ToServer => {
                let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
                    return;
                };
                let mut tx = Transaction::new(Protocol::Http, self.req.msg_start);
                self.settings.finish_request(&mut tx, method, target);
                tx.completeness.0 |= incomplete;
                self.next_id += 1;
                self.req_id = self.next_id;
                let head_request = method == "HEAD";
                self.pending.push_back(Pending {
                    id: self.req_id,
                    tx,
                    head_request,
                    connect: false,
                });
            }
            Direction::ToClient => {
                let status = parts.nth(1).and_then(|c| c.parse::<i64>().ok());
                let mut p = match self.pending.remove(self.first_waiting()) {
                    Some(p) => p,
                    None => return,
                };
                p.tx.completeness.0 |= incomplete;
                p.tx.status = status;
                if let Some(code) = status {
                    p.tx.attr_int("http.response.status_code", code);
                }
                p.tx.end = self.last_ts;
                self.ready.push(p.tx);
            }
        }
    }

    fn give_up_all(&mut self, ts: Timestamp, why: u16, out: &mut Vec<Transaction>) {
        // The request being answered first, then those waiting, in order.
        self.answering = false;
        for mut p in self.pending.drain() {
            p.tx.completeness.set(why);
            if p.tx.status.is_none() {
                p.tx.completeness.set(Completeness::NO_RESPONSE);
            }
            p.tx.end = ts.max(p.tx.start);
            out.push(p.tx);
        }
    }
}

enum HeadScan {
    Complete { consumed: usize, head_in_buf: bool },
    Partial,
    TooLarge,
}

/// The first line of a head (up to its line feed, or all of `head`), as text: what is
/// reported of a head that cannot be decoded whole.
fn first_line(head: &[u8]) -> String {
    let end = head.iter().position(|&c| c == b'\n').unwrap_or(head.len());
    String::from_utf8_lossy(&head[..end]).trim_end().to_string()
}

/// End of the head (index just past the blank line), searching from `from`.
fn head_end(b: &[u8], from: usize) -> Option<usize> {
    // Lines are short: a 16-bytes-a-step search per line beats a general SIMD search's
    // set-up.
    let mut i = from.min(b.len());
    loop {
        let nl = parser::find_lf(b, i);
        if nl >= b.len() {
            return None;
        }
        match (b.get(nl + 1), b.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
}

/// Longest start of a message `start_line` looks for (`OPTIONS `, `CONNECT `).
const START_MAX: usize = 8;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StartLine {
    Yes,
    /// Too short to tell: the bytes begin a method or `HTTP/1.`.
    Maybe,
    No,
}

/// Whether `tail` begins a request line (client side) or a status line (server side).
fn start_line(tail: &[u8], dir: Direction) -> StartLine {
    let status: &[&[u8]] = &[b"HTTP/1."];
    let starts: &[&[u8]] = match dir {
        Direction::ToServer => &METHODS,
        Direction::ToClient => status,
    };
    if starts.iter().any(|m| tail.starts_with(m)) {
        StartLine::Yes
    } else if starts.iter().any(|m| m.starts_with(tail)) {
        StartLine::Maybe
    } else {
        StartLine::No
    }
}

/// Where the next message starts after a loss of sync: a request line (client side) or a
/// status line (server side) at the start of a line. `line_start` carries whether the
/// previous chunk ended a line. A line that begins like a start line but is cut by the
/// chunk's end is left in `carry`, for the caller to try again with the next chunk's
/// bytes (after a gap, a segment's first bytes are usually a message's, and a segment may
/// be short). Lost sync can last for a whole large body, so the search jumps from newline
/// to newline rather than testing every byte.
fn resync(b: &[u8], dir: Direction, line_start: &mut bool, carry: &mut Vec<u8>) -> Option<usize> {
    let mut at = 0;
    if !*line_start {
        at = parser::find_lf(b, 0) + 1;
        if at > b.len() {
            return None;
        }
    }
    // `at` is the start of a line from here on.
    loop {
        if at == b.len() {
            *line_start = true;
            return None;
        }
        match start_line(&b[at..], dir) {
            StartLine::Yes => return Some(at),
            StartLine::Maybe if parser::find_lf(b, at) == b.len() => {
                carry.extend_from_slice(&b[at..]);
                *line_start = false;
                return None;
            }
            _ => {}
        }
        at = parser::find_lf(b, at) + 1;
        if at > b.len() {
            *line_start = false;
            return None;
        }
    }
}

impl L7Parser for Http1Parser {
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::vec_bytes;
        self.pending.heap_bytes()
            + vec_bytes(&self.ready)
            + vec_bytes(&self.req.buf)
            + vec_bytes(&self.resp.buf)
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        self.last_ts = ts;
        out.append(&mut self.ready);
        if self.feed(dir, bytes, ts, out) {
            Progress::Continue
        } else {
            Progress::Done
        }
    }

    fn on_gap(&mut self, dir: Direction, missing: u32) {
        // A gap inside the current response's body loses no response; any other may.
        if dir == Direction::ToClient
            && !matches!(self.resp.framing, Framing::Body(n) if n >= missing as u64)
        {
            self.resp_gap = true;
        }
        let side = self.side(dir);
        side.gap = true;
        match side.framing {
            Framing::Body(n) if n >= missing as u64 => {
                side.framing = Framing::Body(n - missing as u64);
                side.msg_bytes += missing as u64;
                side.body_bytes += missing as u64;
                self.mark_current(dir, Completeness::GAP);
            }
            Framing::UntilClose | Framing::Tunnel => self.mark_current(dir, Completeness::GAP),
            Framing::Head if side.msg_bytes > 0 => {
                // A head cut by the gap: keep what its start line tells, so that the
                // requests and responses after it still pair up in order.
                self.salvage_head(dir);
                // From the first byte after the gap on: a keep-alive connection whose
                // bodies end without a newline would otherwise never find a start again.
                self.lose_sync(dir, true);
            }
            _ => {
                self.mark_current(dir, Completeness::GAP);
                self.lose_sync(dir, true);
            }
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        out.append(&mut self.ready);
        // A body delimited by the close is complete now.
        if self.resp.framing == Framing::UntilClose {
            let end = self.last_ts;
            self.complete(Direction::ToClient, end, out);
        }
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        self.give_up_all(ts, why, out);
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        out.append(&mut self.ready);
        // Requests still waiting for a response head (the one being answered has its
        // response under way).
        let first = self.first_waiting();
        while let Some(p) = self.pending.get(first) {
            if now.since(p.tx.start) < timeout_ns {
                break;
            }
            let Some(mut p) = self.pending.remove(first) else {
                break;
            };
            self.stats.timeouts += 1;
            p.tx.completeness.set(Completeness::NO_RESPONSE);
            p.tx.error = Some("timeout".into());
            p.tx.end = now;
            out.push(p.tx);
        }
    }
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for Http1Parser {
    type Config = super::http_common::HttpConfig;
    type Shared = Arc<HttpSettings>;
    const PORTS: &'static [u16] = &[80, 8080, 8000, 8081, 3000, 5000, 9090];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = crate::events::NoEvents;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        super::http_common::HttpConfig::validate(cfg)
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        HttpSettings::new(cfg.http1.settings.clone())
            .map(Arc::new)
            .map_err(|e| format!("route.rules: {e}"))
    }

    /// A request line's method or a status line's version: nothing else starts so.
    fn probe(p: &Probe<'_>) -> Confidence {
        let b = p.bytes;
        if METHODS.iter().any(|m| b.starts_with(m)) || b.starts_with(b"HTTP/1.") {
            Confidence::Certain
        } else if !b.is_empty()
            && (METHODS.iter().any(|m| m.starts_with(b)) || b"HTTP/1.".starts_with(b))
        {
            Confidence::NeedMore
        } else {
            Confidence::No
        }
    }

    fn new(shared: &Self::Shared, _: Transport) -> Self {
        Http1Parser::new(shared.clone())
    }

    fn protocol(&self) -> Protocol {
        Protocol::Http
    }

    fn drain_stats(&mut self, c: &mut crate::events::DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c.core())
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &super::http_common::HTTP_TELEMETRY
    }
}
