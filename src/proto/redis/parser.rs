//! RESP, the Redis serialization protocol: a streaming parser for each direction.
//!
//! * [`RequestParser`] reads what a client sends, the way redis-server reads it: a line
//!   starting with `*` opens a multibulk command (`*<n>\r\n` then `n` bulk strings
//!   `$<len>\r\n<bytes>\r\n`); any other line is an inline command (words separated by
//!   blanks, ended by `\n`). A client never sends other RESP types.
//! * [`ReplyParser`] walks any RESP2 or RESP3 value a server sends: simple strings,
//!   errors, integers, bulk strings, arrays, and RESP3's null, boolean, double, big
//!   number, blob error, verbatim string, map, set, push and attribute types, streamed
//!   strings (`$?` then `;<len>` chunks) and streamed aggregates (`*?`, `%?`, `~?` ended
//!   by `.`).
//!
//! Both parse byte by byte across any split of the stream and never buffer a message: a
//! value's bytes are skipped by count, so a 100 MB bulk string costs nothing. What the
//! pairing needs is copied into small fixed buffers as it passes (a command's first three
//! arguments, a reply's first line or first element): nothing is allocated per message.
//! Lengths beyond [`Limits::max_bulk`], nesting beyond [`Limits::max_depth`] and anything
//! that is not RESP are a [`ParseError`]; the parser then looks for the next plausible
//! start of a message (see `Lost`) instead of trusting the rest.

/// Bytes kept of each of a command's first three arguments (the name, a subcommand or
/// key, a key): enough for every command name (29 bytes at most) and a key's prefix.
pub const ARG_CAP: usize = 64;
/// Bytes kept of a reply's text: a simple string, an error's first bytes (its prefix), or
/// the first element of an aggregate (`message`, `subscribe`...).
pub const TEXT_CAP: usize = 32;
/// Longest inline command line redis-server accepts (`PROTO_INLINE_MAX_SIZE`).
pub const INLINE_MAX: u64 = 64 * 1024;
/// Inline lines accepted while looking for a start (after a gap or at a mid-stream start):
/// real inline commands are short, and longer text is more likely a value's content.
const INLINE_MAX_UNSYNCED: u64 = 1024;
/// Longest numeric header line (`*`, `$`... and their digits).
const MAX_DIGITS: u8 = 20;
/// Commands redis-server accepts in one multibulk (`*<n>` beyond it is "invalid
/// multibulk length").
const MAX_ARGS: u64 = i32::MAX as u64;

/// The first bytes of a value (up to `N`) and its full length.
#[derive(Clone, Copy)]
pub struct Capture<const N: usize> {
    buf: [u8; N],
    len: u8,
    total: u64,
}

impl<const N: usize> Default for Capture<N> {
    fn default() -> Self {
        Capture {
            buf: [0; N],
            len: 0,
            total: 0,
        }
    }
}

impl<const N: usize> std::fmt::Debug for Capture<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:?}/{}",
            String::from_utf8_lossy(self.bytes()),
            self.total
        )
    }
}

impl<const N: usize> Capture<N> {
    #[inline]
    fn clear(&mut self) {
        self.len = 0;
        self.total = 0;
    }

    #[inline]
    fn push(&mut self, b: &[u8]) {
        let at = self.len as usize;
        let n = (N - at).min(b.len());
        self.buf[at..at + n].copy_from_slice(&b[..n]);
        self.len += n as u8;
        self.total += b.len() as u64;
    }

    #[inline]
    fn push_byte(&mut self, c: u8) {
        if (self.len as usize) < N {
            self.buf[self.len as usize] = c;
            self.len += 1;
        }
        self.total += 1;
    }

    /// Keep `b[at..at + len]`, the whole value, into an empty capture. Short values are
    /// copied as one fixed 16-byte block when `b` has the bytes after them (no call to
    /// `memcpy`, whose set-up costs more than copying a short key).
    #[inline]
    fn set(&mut self, b: &[u8], at: usize, len: usize) {
        if N >= 16 && len <= 16 && self.len == 0 && at + 16 <= b.len() {
            self.buf[..16].copy_from_slice(&b[at..at + 16]);
            self.len = len as u8;
            self.total = len as u64;
        } else {
            self.push(&b[at..at + len]);
        }
    }

    /// The bytes kept.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The value's whole length.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The whole value was kept.
    pub fn is_whole(&self) -> bool {
        self.total == self.len as u64
    }
}

/// Bounds on what a peer may announce.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest bulk string (redis-server's `proto-max-bulk-len`, 512 MiB by default).
    pub max_bulk: u64,
    /// Deepest nesting of aggregates in a reply (a request has none).
    pub max_depth: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 * 1024 * 1024,
            max_depth: 64,
        }
    }
}

/// Why bytes could not be parsed; the parser has started looking for the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// Not RESP (a bad type byte or length, a missing CRLF, an over-long inline line).
    Malformed,
    /// Aggregates nested deeper than [`Limits::max_depth`].
    TooDeep,
    /// A bulk string longer than [`Limits::max_bulk`].
    BulkTooLarge,
}

/// What one call to `next` ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// All bytes consumed, no message completed.
    More,
    /// A message completed (the parser's `cmd` or `reply` describes it) after `used` bytes.
    Message,
    /// The bytes were not RESP; the parser is looking for the next message.
    Error(ParseError),
}

/// Result of feeding bytes: how many were consumed, and why the call returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub used: usize,
    pub out: Out,
}

/// What a gap did to the message under way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapEffect {
    /// No message was under way, or the gap fell inside a value's bytes: framing is kept.
    Kept,
    /// Framing was lost; `partial` says whether a message was under way.
    Lost { partial: bool },
}

/// Parse an unsigned decimal digit into an accumulating header number.
#[inline]
fn add_digit(num: &mut u64, digits: &mut u8, c: u8) -> bool {
    let d = c.wrapping_sub(b'0');
    if d > 9 || *digits >= MAX_DIGITS {
        return false;
    }
    // redis-server's string2ll: no leading zeros (only "0" itself).
    if *digits == 1 && *num == 0 {
        return false;
    }
    match num.checked_mul(10).and_then(|n| n.checked_add(d as u64)) {
        Some(n) => {
            *num = n;
            *digits += 1;
            true
        }
        None => false,
    }
}

/// A header number wholly in `b` at `*p`: digits (no leading zero but `0` itself, at most
/// `MAX_DIGITS`) then CRLF. `None` when it is not one or `b` ends first: the byte-wise
/// path then decides.
#[inline(always)]
fn whole_number(b: &[u8], p: &mut usize) -> Option<u64> {
    // Nearly every count and length has one or two digits (`*3`, `$3`, `$16`): read
    // without the digit loop, to the same result.
    let at = *p;
    if let Some(w) = b.get(at..at + 4) {
        let (d0, d1) = (w[0].wrapping_sub(b'0'), w[1].wrapping_sub(b'0'));
        if d0 <= 9 && w[1] == b'\r' && w[2] == b'\n' {
            *p = at + 3;
            return Some(d0 as u64);
        }
        // No leading zero (redis-server's string2ll).
        if (1..=9).contains(&d0) && d1 <= 9 && w[2] == b'\r' && w[3] == b'\n' {
            *p = at + 4;
            return Some((d0 * 10 + d1) as u64);
        }
    }
    let (mut num, mut digits) = (0u64, 0u8);
    loop {
        let c = *b.get(*p)?;
        if c == b'\r' {
            break;
        }
        if !add_digit(&mut num, &mut digits, c) {
            return None;
        }
        *p += 1;
    }
    if digits == 0 || b.get(*p + 1) != Some(&b'\n') {
        return None;
    }
    *p += 2;
    Some(num)
}

/// A bulk value wholly in `b` at `*p` (after its length line): its bytes, then CRLF.
#[inline(always)]
fn whole_data<'a>(b: &'a [u8], p: &mut usize, len: u64) -> Option<&'a [u8]> {
    let start = *p;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    if b.get(end..end + 2)? != b"\r\n" {
        return None;
    }
    *p = end + 2;
    Some(&b[start..end])
}

/// A bulk string wholly in `b` at `*p` (`$<len>\r\n<bytes>\r\n`, at most `max_bulk`
/// bytes): its bytes, `*p` moved past it.
#[inline(always)]
pub fn whole_bulk<'a>(b: &'a [u8], p: &mut usize, max_bulk: u64) -> Option<&'a [u8]> {
    if b.get(*p) != Some(&b'$') {
        return None;
    }
    *p += 1;
    let len = whole_number(b, p)?;
    if len > max_bulk {
        return None;
    }
    whole_data(b, p, len)
}

/// A scalar reply wholly at the start of `b`: a simple string or error (`+`, `-`), an
/// integer (`:`), a bulk string or RESP2's null (`$`). Its length, its kind, and its text
/// (a simple string's or error's; empty otherwise). `None` for anything else, and for a
/// reply cut short or not well formed: [`ReplyParser`] reads those.
#[inline(always)]
pub fn peek_scalar(b: &[u8], max_bulk: u64) -> Option<(usize, Kind, &[u8])> {
    // The most common reply of all, compared whole.
    if b.get(..5) == Some(b"+OK\r\n") {
        return Some((5, Kind::SimpleString, &b[1..3]));
    }
    let ty = *b.first()?;
    let mut p = 1;
    match ty {
        b'+' | b'-' => {
            // Simple strings are short (`+OK`): a byte loop finds their end sooner than a
            // vector search is set up.
            let short = &b[..b.len().min(33)];
            let mut end = 1;
            while end < short.len() && short[end] != b'\r' && short[end] != b'\n' {
                end += 1;
            }
            if end == short.len() {
                end = memchr::memchr2(b'\r', b'\n', b)?;
            }
            if b[end] != b'\r' || b.get(end + 1) != Some(&b'\n') {
                return None;
            }
            let kind = if ty == b'+' {
                Kind::SimpleString
            } else {
                Kind::Error
            };
            Some((end + 2, kind, &b[1..end]))
        }
        b':' => {
            p += (b.get(1) == Some(&b'-')) as usize;
            whole_number(b, &mut p)?;
            Some((p, Kind::Integer, &[]))
        }
        b'$' if b.get(1..5) == Some(b"-1\r\n") => Some((5, Kind::Null, &[])),
        b'$' => {
            let len = whole_number(b, &mut p)?;
            if len > max_bulk {
                return None;
            }
            whole_data(b, &mut p, len)?;
            Some((p, Kind::BulkString, &[]))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// Requests

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Req {
    /// At a message boundary.
    Start,
    /// After `*`: the argument count's digits, up to `\r`.
    Count,
    CountLf,
    /// Expecting an argument's `$`.
    Bulk,
    BulkLen,
    BulkLenLf,
    /// Inside an argument's bytes: how many are left.
    Data(u64),
    DataCr,
    DataLf,
    /// Inside an inline command line.
    Inline,
    /// Lost sync: looking for a line that starts a command.
    Lost,
}

/// What the parser knows of the command just read (valid after [`Out::Message`]).
#[derive(Clone, Debug, Default)]
pub struct Command {
    /// Number of arguments, the name included.
    pub argc: u64,
    /// The first three arguments (name, then what follows), as far as `ARG_CAP` allows.
    pub args: [Capture<ARG_CAP>; 3],
    /// Sent as an inline command (a plain text line).
    pub inline: bool,
    /// Bytes of the message on the wire.
    pub bytes: u64,
    /// Bytes of the message were lost in a gap (inside an argument's value), or it was
    /// read while recovering from a gap.
    pub gap: bool,
    /// Read while the stream was not known to be in sync (the first message of a
    /// connection, or the first after lost sync): an inline one may be stray text.
    pub unsynced: bool,
}

/// Leave the parse loop on an error: reported unless it came while looking for the next
/// message after an earlier loss (then the search simply goes on).
macro_rules! fail {
    ($self:ident, $i:expr, $e:expr, $line_start:expr) => {{
        let report = !$self.recovering;
        $self.lose($line_start);
        if report {
            return Step {
                used: $i,
                out: Out::Error($e),
            };
        }
        continue;
    }};
}

/// The client side of a connection.
pub struct RequestParser {
    state: Req,
    limits: Limits,
    /// A whole message was read since the start or the last loss of sync: an inline
    /// command may start with any byte, as redis-server reads it.
    synced: bool,
    /// Sync was lost and no message has been read since: errors are not news.
    recovering: bool,
    /// The last loss of sync was a gap: the messages read while recovering may be
    /// commands whose start was lost.
    lost_by_gap: bool,
    /// In `Lost`: the next byte starts a line.
    line_start: bool,
    num: u64,
    digits: u8,
    neg: bool,
    /// Arguments still to come in the current multibulk.
    left: u64,
    /// Inline parsing: inside a word.
    in_word: bool,
    /// Inline parsing: the line's length so far.
    line: u64,
    pub cmd: Command,
    /// The whole command as text, for `redact = false` (bounded; `None` when redacted).
    text: Option<Vec<u8>>,
    text_cap: usize,
    /// When sync was last lost, the command under way had its name read.
    lost_named: bool,
}

impl RequestParser {
    /// `text_cap`: keep up to this many bytes of each command's arguments as text (0:
    /// none, the default; the buffer is allocated once, here).
    pub fn new(limits: Limits, text_cap: usize) -> Self {
        RequestParser {
            state: Req::Start,
            limits,
            synced: false,
            recovering: false,
            lost_by_gap: false,
            line_start: true,
            num: 0,
            digits: 0,
            neg: false,
            left: 0,
            in_word: false,
            line: 0,
            cmd: Command::default(),
            text: (text_cap > 0).then(|| Vec::with_capacity(text_cap)),
            text_cap,
            lost_named: false,
        }
    }

    /// The command's arguments as text, space-separated, when kept (`redact = false`).
    pub fn text(&self) -> Option<&[u8]> {
        self.text.as_deref()
    }

    /// No message is under way.
    pub fn at_boundary(&self) -> bool {
        self.state == Req::Start
    }

    /// Sync is lost: looking for the next message.
    pub fn is_lost(&self) -> bool {
        self.state == Req::Lost
    }

    /// Arguments of the command under way read whole (its name first).
    pub fn args_done(&self) -> u64 {
        match self.state {
            Req::Start | Req::Lost | Req::Count | Req::CountLf => 0,
            Req::Inline => self.cmd.argc - self.in_word as u64,
            _ => self.cmd.argc - self.left,
        }
    }

    /// When sync was last lost (an error or a gap), the command under way had its name
    /// read: it can be reported, cut short.
    pub fn lost_named(&self) -> bool {
        self.lost_named
    }

    fn lose(&mut self, at_line_start: bool) {
        self.lost_named = self.args_done() > 0;
        self.lost_by_gap = false;
        self.recovering = true;
        self.synced = false;
        self.state = Req::Lost;
        self.line_start = at_line_start;
    }

    fn begin(&mut self) {
        self.cmd.argc = 0;
        for a in &mut self.cmd.args {
            a.clear();
        }
        self.cmd.inline = false;
        self.cmd.bytes = 0;
        self.cmd.gap = self.recovering && self.lost_by_gap;
        self.cmd.unsynced = !self.synced;
        if let Some(t) = &mut self.text {
            t.clear();
        }
    }

    #[inline]
    fn keep_text(&mut self, b: &[u8], sep: bool) {
        if let Some(t) = &mut self.text {
            if sep && !t.is_empty() && t.len() < self.text_cap {
                t.push(b' ');
            }
            let n = (self.text_cap - t.len().min(self.text_cap)).min(b.len());
            t.extend_from_slice(&b[..n]);
        }
    }

    /// A multibulk command wholly at the start of `b` (which starts with `*`: the caller
    /// looked), well formed: read as the byte-wise path would read it; its length. `None`
    /// leaves the byte-wise path to it (cut short, malformed, or anything unusual), with
    /// nothing changed that it does not reset.
    #[inline]
    fn whole_command(&mut self, b: &[u8]) -> Option<usize> {
        let mut p = 1;
        let argc = whole_number(b, &mut p)?;
        if argc == 0 || argc > MAX_ARGS {
            return None;
        }
        // Linear in `b`: every argument takes at least 4 of its bytes.
        let mut args = [(0, 0); 3];
        for index in 0..argc {
            let value = whole_bulk(b, &mut p, self.limits.max_bulk)?;
            if let Some(a) = args.get_mut(index as usize) {
                *a = (p - 2 - value.len(), value.len());
            }
        }
        self.begin();
        for (a, &(at, len)) in self.cmd.args.iter_mut().zip(&args).take(argc as usize) {
            a.set(b, at, len);
        }
        self.cmd.argc = argc;
        self.cmd.bytes = p as u64;
        self.synced = true;
        self.recovering = false;
        Some(p)
    }

    /// At a message boundary, in sync, keeping no text: the next command, if it is whole in
    /// what follows, may be read in place without the parser, leaving it as it is.
    #[inline]
    pub fn in_step(&self) -> bool {
        self.state == Req::Start && self.synced && !self.recovering && self.text.is_none()
    }

    /// Bytes lost from the stream: see [`GapEffect`].
    pub fn gap(&mut self, missing: u64) -> GapEffect {
        match self.state {
            Req::Data(n) if n >= missing && missing > 0 => {
                self.state = if n == missing {
                    Req::DataCr
                } else {
                    Req::Data(n - missing)
                };
                self.cmd.bytes += missing;
                self.cmd.gap = true;
                GapEffect::Kept
            }
            // After a gap the next bytes usually start a segment, and segments usually
            // start messages.
            Req::Start | Req::Lost => {
                self.lose(true);
                self.lost_by_gap = true;
                GapEffect::Lost { partial: false }
            }
            _ => {
                self.lose(true);
                self.lost_by_gap = true;
                GapEffect::Lost { partial: true }
            }
        }
    }

    /// Parse from `b` until a command completes, an error, or the end of `b`.
    pub fn next(&mut self, b: &[u8]) -> Step {
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match self.state {
                Req::Start => {
                    // Nearly every command arrives whole: read it in place.
                    if c == b'*'
                        && self.text.is_none()
                        && let Some(len) = self.whole_command(&b[i..])
                    {
                        return Step {
                            used: i + len,
                            out: Out::Message,
                        };
                    }
                    if c == b'*' {
                        self.begin();
                        self.state = Req::Count;
                        self.num = 0;
                        self.digits = 0;
                        self.neg = false;
                        self.cmd.bytes = 1;
                        i += 1;
                    } else if matches!(c, b'\r' | b'\n' | b' ' | b'\t') {
                        // Blank inline lines and leading blanks: redis-server skips them.
                        i += 1;
                    } else if !self.synced && !c.is_ascii_alphabetic() {
                        // Out of sync, an inline command must at least start like a name.
                        self.lose(false);
                    } else {
                        self.begin();
                        self.cmd.inline = true;
                        self.state = Req::Inline;
                        self.in_word = false;
                        self.line = 0;
                    }
                }
                Req::Count => {
                    i += 1;
                    self.cmd.bytes += 1;
                    if c == b'\r' {
                        if self.digits == 0 {
                            fail!(self, i, ParseError::Malformed, false);
                        }
                        self.state = Req::CountLf;
                    } else if c == b'-' && self.digits == 0 && !self.neg {
                        self.neg = true;
                    } else if !add_digit(&mut self.num, &mut self.digits, c)
                        || (!self.neg && self.num > MAX_ARGS)
                    {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                }
                Req::CountLf => {
                    i += 1;
                    self.cmd.bytes += 1;
                    if c != b'\n' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    if self.neg || self.num == 0 {
                        // redis-server ignores an empty or negative multibulk (no reply);
                        // out of sync, such a line proves nothing.
                        if self.synced {
                            self.state = Req::Start;
                        } else {
                            self.lose(true);
                        }
                        continue;
                    }
                    self.cmd.argc = self.num;
                    self.left = self.num;
                    self.state = Req::Bulk;
                }
                Req::Bulk => {
                    if c != b'$' {
                        // This byte starts a line: it may start the next message.
                        fail!(self, i, ParseError::Malformed, true);
                    }
                    i += 1;
                    self.cmd.bytes += 1;
                    self.num = 0;
                    self.digits = 0;
                    self.state = Req::BulkLen;
                }
                Req::BulkLen => {
                    i += 1;
                    self.cmd.bytes += 1;
                    if c == b'\r' {
                        if self.digits == 0 {
                            fail!(self, i, ParseError::Malformed, false);
                        }
                        if self.num > self.limits.max_bulk {
                            fail!(self, i, ParseError::BulkTooLarge, false);
                        }
                        self.state = Req::BulkLenLf;
                    } else if !add_digit(&mut self.num, &mut self.digits, c) {
                        if c.is_ascii_digit() && self.num > 0 {
                            fail!(self, i, ParseError::BulkTooLarge, false);
                        }
                        fail!(self, i, ParseError::Malformed, false);
                    }
                }
                Req::BulkLenLf => {
                    i += 1;
                    self.cmd.bytes += 1;
                    if c != b'\n' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    if self.num == 0 {
                        self.keep_text(b"", true);
                        self.state = Req::DataCr;
                    } else {
                        self.state = Req::Data(self.num);
                    }
                }
                Req::Data(n) => {
                    let take = n.min((b.len() - i) as u64) as usize;
                    let piece = &b[i..i + take];
                    let index = (self.cmd.argc - self.left) as usize;
                    if let Some(a) = self.cmd.args.get_mut(index) {
                        a.push(piece);
                    }
                    if self.text.is_some() {
                        self.keep_text(piece, n == self.num);
                    }
                    i += take;
                    self.cmd.bytes += take as u64;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        Req::DataCr
                    } else {
                        Req::Data(left)
                    };
                }
                Req::DataCr => {
                    if c != b'\r' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    i += 1;
                    self.cmd.bytes += 1;
                    self.state = Req::DataLf;
                }
                Req::DataLf => {
                    if c != b'\n' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    i += 1;
                    self.cmd.bytes += 1;
                    self.left -= 1;
                    if self.left == 0 {
                        self.state = Req::Start;
                        self.synced = true;
                        self.recovering = false;
                        return Step {
                            used: i,
                            out: Out::Message,
                        };
                    }
                    self.state = Req::Bulk;
                }
                Req::Inline => {
                    // Words up to the newline; the first three are kept.
                    let limit = if self.synced {
                        INLINE_MAX
                    } else {
                        INLINE_MAX_UNSYNCED
                    };
                    let rest = &b[i..];
                    let end = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
                    if self.line + end as u64 > limit {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    let strict = !self.synced;
                    let mut bad = false;
                    for &c in &rest[..end] {
                        if matches!(c, b' ' | b'\t' | b'\r') {
                            self.in_word = false;
                            continue;
                        }
                        // Out of sync, only printable text passes for a command.
                        if strict && !(0x21..0x7f).contains(&c) {
                            bad = true;
                            break;
                        }
                        if !self.in_word {
                            self.in_word = true;
                            self.cmd.argc += 1;
                        }
                        if let Some(a) = self.cmd.args.get_mut(self.cmd.argc as usize - 1) {
                            a.push_byte(c);
                        }
                    }
                    if bad {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    if self.text.is_some() {
                        let line = &rest[..end];
                        self.keep_text(line.strip_suffix(b"\r").unwrap_or(line), false);
                    }
                    self.line += end as u64;
                    self.cmd.bytes += end as u64;
                    i += end;
                    if end < rest.len() {
                        i += 1;
                        self.cmd.bytes += 1;
                        self.state = Req::Start;
                        if self.cmd.argc > 0 {
                            // Out of sync, a plausible line is taken for a command but
                            // does not prove sync: only a multibulk command does (a
                            // value's lines would otherwise read as commands).
                            return Step {
                                used: i,
                                out: Out::Message,
                            };
                        }
                    }
                }
                Req::Lost => {
                    if self.line_start && (c == b'*' || c.is_ascii_alphabetic()) {
                        self.state = Req::Start;
                        continue;
                    }
                    match memchr::memchr(b'\n', &b[i..]) {
                        Some(at) => {
                            i += at + 1;
                            self.line_start = true;
                        }
                        None => {
                            self.line_start = false;
                            i = b.len();
                        }
                    }
                }
            }
        }
        Step {
            used: b.len(),
            out: Out::More,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Replies

/// The RESP type of a reply's top-level value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Kind {
    #[default]
    SimpleString,
    Error,
    Integer,
    BulkString,
    /// RESP2 `$-1` and `*-1`, RESP3 `_`.
    Null,
    Array,
    Map,
    Set,
    Push,
    Bool,
    Double,
    BigNumber,
    BlobError,
    Verbatim,
}

impl Kind {
    #[inline]
    fn of(type_byte: u8) -> Option<Kind> {
        Some(match type_byte {
            b'+' => Kind::SimpleString,
            b'-' => Kind::Error,
            b':' => Kind::Integer,
            b'$' => Kind::BulkString,
            b'_' => Kind::Null,
            b'*' => Kind::Array,
            b'%' => Kind::Map,
            b'~' => Kind::Set,
            b'>' => Kind::Push,
            b'#' => Kind::Bool,
            b',' => Kind::Double,
            b'(' => Kind::BigNumber,
            b'!' => Kind::BlobError,
            b'=' => Kind::Verbatim,
            _ => return None,
        })
    }

    pub fn is_aggregate(self) -> bool {
        matches!(self, Kind::Array | Kind::Map | Kind::Set | Kind::Push)
    }

    pub fn is_error(self) -> bool {
        matches!(self, Kind::Error | Kind::BlobError)
    }
}

/// What the parser knows of the reply just read (valid after [`Out::Message`]).
#[derive(Clone, Debug, Default)]
pub struct Reply {
    pub kind: Kind,
    /// Elements of a top-level aggregate (a map's pairs count once), streamed ones
    /// included; 0 otherwise.
    pub len: u64,
    /// A simple string's or error's text, a blob error's first bytes.
    pub text: Capture<TEXT_CAP>,
    /// The first element of a top-level aggregate, when it is a string.
    pub first: Capture<TEXT_CAP>,
    /// The number of elements of a top-level aggregate's second element, when that is an
    /// aggregate (the keys of a SCAN reply).
    pub second_len: Option<u64>,
    /// The last integer element of a top-level aggregate (a subscription count).
    pub last_int: Option<i64>,
    /// An attribute came with the reply (RESP3 `|`).
    pub attribute: bool,
    /// Bytes of the message on the wire.
    pub bytes: u64,
    /// Bytes of the message were lost in a gap (inside a value's bytes).
    pub gap: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rep {
    /// Expecting a value's type byte.
    Start,
    /// Inside a header line, after its type byte, up to `\r`.
    Line,
    LineLf,
    /// Inside a bulk value's bytes: how many are left.
    Data(u64),
    DataCr,
    DataLf,
    /// A streamed string: expecting `;` and a chunk length.
    Chunk,
    /// Lost sync: looking for a line that starts with a type byte.
    Lost,
}

/// Where the bytes of the bulk value being read go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Keep {
    Nothing,
    Text,
    First,
}

/// An open aggregate.
#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Elements still to come, `STREAMED` for an aggregate ended by `.`.
    left: u64,
    /// An attribute: its elements describe the value after it and are not one.
    attr: bool,
}

const STREAMED: u64 = u64::MAX;

/// What a completed header line leads to.
enum LineEnd {
    /// A whole value (a scalar, a null, an empty aggregate).
    Value,
    /// An aggregate, bulk value or chunk follows (the state is set).
    Open,
    /// An empty attribute: the value it describes follows.
    Nothing,
}

/// The server side of a connection.
pub struct ReplyParser {
    state: Rep,
    limits: Limits,
    /// Sync was lost and no message has been read since: errors are not news.
    recovering: bool,
    line_start: bool,
    /// Type byte of the header line being read.
    ty: u8,
    num: u64,
    digits: u8,
    neg: bool,
    /// The line is `?` (a streamed string or aggregate).
    streamed: bool,
    /// A non-numeric line has content.
    filled: bool,
    /// Inside a streamed string (its chunks are being read).
    in_stream: bool,
    keep: Keep,
    /// Open aggregates, outermost first (allocated once, at the first aggregate reply).
    stack: Vec<Frame>,
    /// A top-level attribute was read: the reply itself is still to come.
    top_attr: bool,
    /// The top-level aggregate is streamed (its length is counted, not announced).
    top_streamed: bool,
    /// Values completed at depth 1 of the top-level aggregate.
    index: u64,
    pub reply: Reply,
    /// When sync was last lost, a reply was under way.
    lost_partial: bool,
}

impl ReplyParser {
    pub fn new(limits: Limits) -> Self {
        ReplyParser {
            state: Rep::Start,
            limits,
            recovering: false,
            line_start: true,
            ty: 0,
            num: 0,
            digits: 0,
            neg: false,
            streamed: false,
            filled: false,
            in_stream: false,
            keep: Keep::Nothing,
            stack: Vec::new(),
            top_attr: false,
            top_streamed: false,
            index: 0,
            reply: Reply::default(),
            lost_partial: false,
        }
    }

    /// No message is under way.
    pub fn at_boundary(&self) -> bool {
        self.state == Rep::Start && self.stack.is_empty() && !self.top_attr
    }

    pub fn is_lost(&self) -> bool {
        self.state == Rep::Lost
    }

    /// At a message boundary and in sync: the next reply, if it is a whole scalar, may be
    /// read in place without the parser ([`peek_scalar`]), leaving it as it is.
    #[inline]
    pub fn in_step(&self) -> bool {
        self.state == Rep::Start && self.stack.is_empty() && !self.top_attr && !self.recovering
    }

    /// Room for open aggregates (bounded by `max_depth`).
    pub fn stack_capacity(&self) -> usize {
        self.stack.capacity()
    }

    fn begin(&mut self) {
        let r = &mut self.reply;
        r.kind = Kind::SimpleString;
        r.len = 0;
        r.text.clear();
        r.first.clear();
        r.second_len = None;
        r.last_int = None;
        r.attribute = false;
        r.bytes = 0;
        r.gap = false;
        self.index = 0;
        self.top_streamed = false;
    }

    pub fn gap(&mut self, missing: u64) -> GapEffect {
        match self.state {
            Rep::Data(n) if n >= missing && missing > 0 => {
                self.state = if n == missing {
                    Rep::DataCr
                } else {
                    Rep::Data(n - missing)
                };
                self.reply.bytes += missing;
                self.reply.gap = true;
                GapEffect::Kept
            }
            _ => {
                self.lose(true);
                GapEffect::Lost {
                    partial: self.lost_partial,
                }
            }
        }
    }

    /// When sync was last lost (an error or a gap), a reply was under way.
    pub fn lost_partial(&self) -> bool {
        self.lost_partial
    }

    fn lose(&mut self, at_line_start: bool) {
        self.lost_partial = !self.at_boundary() && self.state != Rep::Lost;
        self.recovering = true;
        self.state = Rep::Lost;
        self.line_start = at_line_start;
        self.stack.clear();
        self.top_attr = false;
        self.in_stream = false;
        self.keep = Keep::Nothing;
    }

    /// The value whose header is being read is a direct element of the top-level
    /// aggregate.
    #[inline]
    fn at_depth1(&self) -> bool {
        self.stack.len() == 1 && !self.stack[0].attr
    }

    /// A value ended; true when that completes the message.
    #[inline]
    fn value_done(&mut self) -> bool {
        loop {
            let depth = self.stack.len();
            let Some(f) = self.stack.last_mut() else {
                // A top-level scalar.
                return true;
            };
            if depth == 1 && !f.attr {
                self.index += 1;
            }
            if f.left == STREAMED {
                return false;
            }
            f.left -= 1;
            if f.left > 0 {
                return false;
            }
            let attr = f.attr;
            self.stack.pop();
            if attr {
                // An attribute is not an element of what holds it: the value after it is.
                return false;
            }
            if self.stack.is_empty() {
                return self.top_ended();
            }
        }
    }

    /// The top-level aggregate ended.
    fn top_ended(&mut self) -> bool {
        if self.top_streamed {
            self.reply.len = if self.reply.kind == Kind::Map {
                self.index / 2
            } else {
                self.index
            };
        }
        true
    }

    fn open(&mut self, left: u64, attr: bool) -> Result<LineEnd, ParseError> {
        if self.stack.len() >= self.limits.max_depth {
            return Err(ParseError::TooDeep);
        }
        if self.stack.capacity() == 0 {
            self.stack.reserve(8);
        }
        self.stack.push(Frame { left, attr });
        self.state = Rep::Start;
        Ok(LineEnd::Open)
    }

    /// Act on the header line just read (type `ty`, number `num`...).
    fn end_line(&mut self) -> Result<LineEnd, ParseError> {
        let top = self.stack.is_empty();
        match self.ty {
            b'+' | b'-' => Ok(LineEnd::Value),
            b':' => {
                if self.digits == 0 {
                    return Err(ParseError::Malformed);
                }
                if self.at_depth1() {
                    let v = self.num.min(i64::MAX as u64) as i64;
                    self.reply.last_int = Some(if self.neg { -v } else { v });
                }
                Ok(LineEnd::Value)
            }
            b',' | b'#' | b'(' => {
                if !self.filled {
                    return Err(ParseError::Malformed);
                }
                Ok(LineEnd::Value)
            }
            b'_' => Ok(LineEnd::Value),
            b'.' => {
                // The end of a streamed aggregate: it is a whole value now.
                self.stack.pop();
                if self.stack.is_empty() {
                    self.top_ended();
                    // `value_done` on an empty stack reports the message.
                }
                Ok(LineEnd::Value)
            }
            b'$' | b'=' | b'!' | b';' => {
                if self.neg {
                    // RESP2's null bulk string.
                    if self.num != 1 || self.ty == b';' {
                        return Err(ParseError::Malformed);
                    }
                    if top {
                        self.reply.kind = Kind::Null;
                    }
                    return Ok(LineEnd::Value);
                }
                if self.streamed {
                    self.in_stream = true;
                    self.keep = self.keep_for();
                    self.state = Rep::Chunk;
                    return Ok(LineEnd::Open);
                }
                if self.digits == 0 {
                    return Err(ParseError::Malformed);
                }
                if self.num > self.limits.max_bulk {
                    return Err(ParseError::BulkTooLarge);
                }
                if self.ty == b';' {
                    if self.num == 0 {
                        // The last chunk of a streamed string.
                        self.in_stream = false;
                        self.keep = Keep::Nothing;
                        return Ok(LineEnd::Value);
                    }
                } else {
                    self.keep = self.keep_for();
                }
                self.state = if self.num == 0 {
                    Rep::DataCr
                } else {
                    Rep::Data(self.num)
                };
                Ok(LineEnd::Open)
            }
            _ => {
                // `*`, `%`, `~`, `>`, `|`: an aggregate.
                let attr = self.ty == b'|';
                if self.neg {
                    if self.num != 1 || attr {
                        return Err(ParseError::Malformed);
                    }
                    if top {
                        self.reply.kind = Kind::Null;
                    }
                    return Ok(LineEnd::Value);
                }
                if top && !attr {
                    self.reply.len = self.num;
                    self.top_streamed = self.streamed;
                }
                if self.at_depth1() && self.index == 1 && !attr && !self.streamed {
                    self.reply.second_len = Some(self.num);
                }
                if self.streamed {
                    if attr {
                        return Err(ParseError::Malformed);
                    }
                    return self.open(STREAMED, false);
                }
                if self.digits == 0 {
                    return Err(ParseError::Malformed);
                }
                let pairs = matches!(self.ty, b'%' | b'|');
                let left = if pairs {
                    self.num.checked_mul(2).ok_or(ParseError::Malformed)?
                } else {
                    self.num
                };
                if left == 0 {
                    return Ok(if attr {
                        LineEnd::Nothing
                    } else {
                        LineEnd::Value
                    });
                }
                self.open(left, attr)
            }
        }
    }

    /// A reply wholly at the start of `b` that is a simple string, an error, an integer, a
    /// bulk string, a null, or an array of those: read as the byte-wise path would read
    /// it; its length. `None` leaves the byte-wise path to it, with nothing changed that it
    /// does not reset.
    #[inline]
    fn whole_reply(&mut self, b: &[u8]) -> Option<usize> {
        let ty = *b.first()?;
        let mut p = 1;
        match ty {
            b'+' | b'-' | b':' | b'$' => {
                let (used, kind, text) = peek_scalar(b, self.limits.max_bulk)?;
                self.begin();
                self.reply.kind = kind;
                self.reply.text.set(b, 1, text.len());
                p = used;
            }
            b'*' => {
                if b.get(1..5) == Some(b"-1\r\n") {
                    self.begin();
                    self.reply.kind = Kind::Null;
                    p = 5;
                } else {
                    let n = whole_number(b, &mut p)?;
                    let (mut first, mut last_int) = (None, None);
                    for index in 0..n {
                        match *b.get(p)? {
                            b'$' if b.get(p + 1..p + 5) == Some(b"-1\r\n") => p += 5,
                            b'$' => {
                                p += 1;
                                let len = whole_number(b, &mut p)?;
                                if len > self.limits.max_bulk {
                                    return None;
                                }
                                let value = whole_data(b, &mut p, len)?;
                                if index == 0 {
                                    first = Some(value);
                                }
                            }
                            b':' => {
                                p += 1;
                                let neg = b.get(p) == Some(&b'-');
                                p += neg as usize;
                                let v = whole_number(b, &mut p)?.min(i64::MAX as u64) as i64;
                                last_int = Some(if neg { -v } else { v });
                            }
                            _ => return None,
                        }
                    }
                    self.begin();
                    self.reply.kind = Kind::Array;
                    self.reply.len = n;
                    if let Some(f) = first {
                        self.reply.first.push(f);
                    }
                    self.reply.last_int = last_int;
                }
            }
            _ => return None,
        }
        self.reply.bytes = p as u64;
        Some(p)
    }

    /// Where the bytes of the bulk value starting now are kept.
    fn keep_for(&self) -> Keep {
        if self.stack.is_empty() {
            if self.ty == b'!' {
                return Keep::Text;
            }
        } else if self.at_depth1() && self.index == 0 && matches!(self.ty, b'$' | b'=') {
            return Keep::First;
        }
        Keep::Nothing
    }

    /// Parse from `b` until a reply completes, an error, or the end of `b`.
    pub fn next(&mut self, b: &[u8]) -> Step {
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match self.state {
                Rep::Start => {
                    let top = self.stack.is_empty();
                    // Nearly every reply arrives whole and is a scalar or a flat array:
                    // read it in place.
                    if top
                        && !self.top_attr
                        && let Some(len) = self.whole_reply(&b[i..])
                    {
                        return self.message(i + len);
                    }
                    let end_of_stream =
                        c == b'.' && self.stack.last().is_some_and(|f| f.left == STREAMED);
                    if Kind::of(c).is_none() && c != b'|' && !end_of_stream {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    if top {
                        if !self.top_attr {
                            self.begin();
                        }
                        if c == b'|' {
                            self.top_attr = true;
                            self.reply.attribute = true;
                        } else {
                            self.top_attr = false;
                            self.reply.kind = Kind::of(c).unwrap_or_default();
                        }
                    } else if c == b'|' {
                        self.reply.attribute = true;
                    }
                    i += 1;
                    self.reply.bytes += 1;
                    self.ty = c;
                    self.num = 0;
                    self.digits = 0;
                    self.neg = false;
                    self.streamed = false;
                    self.filled = false;
                    self.state = Rep::Line;
                }
                Rep::Line => {
                    if c == b'\r' {
                        i += 1;
                        self.reply.bytes += 1;
                        self.state = Rep::LineLf;
                        continue;
                    }
                    if c == b'\n' {
                        fail!(self, i, ParseError::Malformed, true);
                    }
                    match self.ty {
                        b'+' | b'-' => {
                            // Text up to the CR, kept at top level (a status, an error's
                            // prefix) and as a top-level aggregate's first element.
                            let rest = &b[i..];
                            let end = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                            if self.stack.is_empty() {
                                self.reply.text.push(&rest[..end]);
                            } else if self.at_depth1() && self.index == 0 {
                                self.reply.first.push(&rest[..end]);
                            }
                            i += end;
                            self.reply.bytes += end as u64;
                        }
                        b',' | b'#' | b'(' => {
                            let ok = match self.ty {
                                b'#' => !self.filled && (c == b't' || c == b'f'),
                                b'(' => c.is_ascii_digit() || (c == b'-' && !self.filled),
                                _ => c.is_ascii_graphic(),
                            };
                            if !ok {
                                fail!(self, i, ParseError::Malformed, false);
                            }
                            i += 1;
                            self.reply.bytes += 1;
                            self.filled = true;
                        }
                        // Lines without content.
                        b'_' | b'.' => fail!(self, i, ParseError::Malformed, false),
                        _ => {
                            // A number: a length, a count or an integer.
                            i += 1;
                            self.reply.bytes += 1;
                            let lengthy = matches!(self.ty, b'$' | b'*' | b'%' | b'~');
                            if c == b'-' && self.digits == 0 && !self.neg && !self.streamed {
                                self.neg = true;
                            } else if c == b'?'
                                && lengthy
                                && self.digits == 0
                                && !self.neg
                                && !self.streamed
                            {
                                self.streamed = true;
                            } else if self.streamed
                                || !add_digit(&mut self.num, &mut self.digits, c)
                            {
                                let bulk = matches!(self.ty, b'$' | b'=' | b'!' | b';');
                                if bulk && c.is_ascii_digit() && self.num > 0 && !self.neg {
                                    fail!(self, i, ParseError::BulkTooLarge, false);
                                }
                                fail!(self, i, ParseError::Malformed, false);
                            }
                        }
                    }
                }
                Rep::LineLf => {
                    if c != b'\n' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    i += 1;
                    self.reply.bytes += 1;
                    match self.end_line() {
                        Err(e) => fail!(self, i, e, true),
                        Ok(LineEnd::Value) => {
                            self.state = Rep::Start;
                            if self.value_done() {
                                return self.message(i);
                            }
                        }
                        Ok(LineEnd::Nothing) => self.state = Rep::Start,
                        Ok(LineEnd::Open) => {}
                    }
                }
                Rep::Data(n) => {
                    let take = n.min((b.len() - i) as u64) as usize;
                    match self.keep {
                        Keep::Nothing => {}
                        Keep::Text => self.reply.text.push(&b[i..i + take]),
                        Keep::First => self.reply.first.push(&b[i..i + take]),
                    }
                    i += take;
                    self.reply.bytes += take as u64;
                    let left = n - take as u64;
                    self.state = if left == 0 {
                        Rep::DataCr
                    } else {
                        Rep::Data(left)
                    };
                }
                Rep::DataCr => {
                    if c != b'\r' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    i += 1;
                    self.reply.bytes += 1;
                    self.state = Rep::DataLf;
                }
                Rep::DataLf => {
                    if c != b'\n' {
                        fail!(self, i, ParseError::Malformed, false);
                    }
                    i += 1;
                    self.reply.bytes += 1;
                    if self.in_stream {
                        self.state = Rep::Chunk;
                        continue;
                    }
                    self.keep = Keep::Nothing;
                    self.state = Rep::Start;
                    if self.value_done() {
                        return self.message(i);
                    }
                }
                Rep::Chunk => {
                    if c != b';' {
                        fail!(self, i, ParseError::Malformed, true);
                    }
                    i += 1;
                    self.reply.bytes += 1;
                    self.ty = b';';
                    self.num = 0;
                    self.digits = 0;
                    self.neg = false;
                    self.streamed = false;
                    self.filled = false;
                    self.state = Rep::Line;
                }
                Rep::Lost => {
                    if self.line_start && (Kind::of(c).is_some() || c == b'|') {
                        self.state = Rep::Start;
                        continue;
                    }
                    match memchr::memchr(b'\n', &b[i..]) {
                        Some(at) => {
                            i += at + 1;
                            self.line_start = true;
                        }
                        None => {
                            self.line_start = false;
                            i = b.len();
                        }
                    }
                }
            }
        }
        Step {
            used: b.len(),
            out: Out::More,
        }
    }

    fn message(&mut self, used: usize) -> Step {
        self.recovering = false;
        self.state = Rep::Start;
        Step {
            used,
            out: Out::Message,
        }
    }
}
