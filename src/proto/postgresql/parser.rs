//! PostgreSQL wire protocol (version 3) framing: each direction's bytes into messages,
//! split anywhere, zero-copy.
//!
//! Every message but the client's first ones is a one-byte type, a 4-byte big-endian
//! length (counting itself) and the body. The startup-family messages of the client
//! (StartupMessage, SSLRequest, GSSENCRequest, CancelRequest) have no type byte: their
//! length's first byte is 0, which no type byte is. The server's answer to SSLRequest and
//! GSSENCRequest is a single byte (`S`/`G` yes, `N` no), read when the decoder asks for it.
//!
//! A body is handed out borrowed from the input when the whole message is in one chunk;
//! a message split over chunks keeps at most a bounded prefix of its body (only the
//! messages whose content the decoder reads: queries, names, command tags, error fields,
//! startup parameters; never password messages or rows). Either way the decoder sees the
//! same bytes: at most `keep` of the body, whatever the cut.

/// Longest message believed (PostgreSQL's own limit on a message is 1 GB); a longer length
/// is damage, and the direction resynchronises.
pub const MAX_LEN: u32 = 1 << 30;

/// StartupMessage protocol 3.0.
pub const PROTOCOL_3: u32 = 196_608;
pub const SSL_REQUEST: u32 = 80_877_103;
pub const GSSENC_REQUEST: u32 = 80_877_104;
pub const CANCEL_REQUEST: u32 = 80_877_102;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Client,
    Server,
}

/// Message types a client sends.
pub const fn client_tag(t: u8) -> bool {
    matches!(
        t,
        b'Q' | b'P'
            | b'B'
            | b'E'
            | b'D'
            | b'C'
            | b'S'
            | b'H'
            | b'X'
            | b'F'
            | b'd'
            | b'c'
            | b'f'
            | b'p'
    )
}

/// Message types a server sends.
pub const fn server_tag(t: u8) -> bool {
    matches!(
        t,
        b'R' | b'K'
            | b'S'
            | b'Z'
            | b'T'
            | b'D'
            | b'C'
            | b'I'
            | b'E'
            | b'N'
            | b'A'
            | b'1'
            | b'2'
            | b'3'
            | b't'
            | b'n'
            | b's'
            | b'G'
            | b'H'
            | b'W'
            | b'd'
            | b'c'
            | b'V'
            | b'v'
    )
}

/// The body length a message type must have, when fixed.
const fn fixed_len(side: Side, t: u8) -> Option<u32> {
    match (side, t) {
        (Side::Server, b'Z') => Some(1),
        (Side::Server, b'1' | b'2' | b'3' | b'n' | b'I' | b's' | b'c')
        | (Side::Client, b'S' | b'H' | b'X' | b'c') => Some(0),
        (Side::Server, b'K') => Some(8),
        _ => None,
    }
}

/// Bounds on what is kept of a split message's body.
#[derive(Clone, Copy, Debug)]
pub struct Keep {
    /// Query and Parse bodies: the query text the decoder reads (plus the statement name).
    pub query: u32,
    /// ErrorResponse bodies.
    pub error: u32,
}

/// Keep bounds that come from the configuration, as [`keep_of`] names them (every other
/// bound is a number of bytes, far below these).
const KEEP_QUERY: u32 = u32::MAX;
const KEEP_PARSE: u32 = u32::MAX - 1;
const KEEP_ERROR: u32 = u32::MAX - 2;

/// The bytes kept of a message type's body, or which configured bound applies.
const fn keep_of(side: Side, tag: u8) -> u32 {
    match (side, tag) {
        (Side::Client, b'Q') => KEEP_QUERY,
        (Side::Client, b'P') => KEEP_PARSE,
        // Names only: a portal and a statement name (63 bytes each at most).
        (Side::Client, b'B' | b'E' | b'D' | b'C') => 160,
        // Startup parameters.
        (Side::Client, 0) => 1024,
        (Side::Server, b'C') => 64,
        (Side::Server, b'E') => KEEP_ERROR,
        (Side::Server, b'Z' | b'G' | b'H' | b'W') => 1,
        (Side::Server, b'R') => 4,
        _ => 0,
    }
}

impl Keep {
    /// The bytes kept of a body whose type's [`keep_of`] is `k`.
    #[inline]
    fn bound(&self, k: u32) -> u32 {
        // Most types keep a fixed number of bytes: one comparison for them.
        if k < KEEP_ERROR {
            return k;
        }
        match k {
            KEEP_QUERY => self.query,
            KEEP_PARSE => self.query.saturating_add(64),
            _ => self.error,
        }
    }
}

/// What framing needs to know of one message type on one side.
#[derive(Clone, Copy, Debug)]
struct TagInfo {
    /// The side sends this type.
    ok: bool,
    /// Its body length, when fixed.
    fixed: Option<u32>,
    /// [`keep_of`].
    keep: u32,
}

const fn tag_table(side: Side) -> [TagInfo; 256] {
    let mut t = [TagInfo {
        ok: false,
        fixed: None,
        keep: 0,
    }; 256];
    let mut i = 0;
    while i < 256 {
        let tag = i as u8;
        t[i] = TagInfo {
            ok: match side {
                Side::Client => client_tag(tag),
                Side::Server => server_tag(tag),
            },
            fixed: fixed_len(side, tag),
            keep: keep_of(side, tag),
        };
        i += 1;
    }
    t
}

/// The rules above as tables, made at compile time: a header is checked with one lookup
/// instead of three matches (a pgbench statement is eight messages).
static CLIENT_TAGS: [TagInfo; 256] = tag_table(Side::Client);
static SERVER_TAGS: [TagInfo; 256] = tag_table(Side::Server);

/// One message: its type (0 for the client's untagged startup family), its body length
/// and as much of its body as the decoder reads.
#[derive(Clone, Copy, Debug)]
pub struct Msg<'a> {
    pub tag: u8,
    /// Body bytes (the type and length not counted).
    pub len: u32,
    /// The body, cut at the type's keep bound.
    pub body: &'a [u8],
    /// `body` is the whole body.
    pub whole: bool,
    /// Bytes of the body were lost in a gap.
    pub gap: bool,
}

impl Msg<'_> {
    /// Bytes on the wire.
    pub fn wire_len(&self) -> u64 {
        self.len as u64 + 4 + u64::from(self.tag != 0)
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Ev<'a> {
    Msg(Msg<'a>),
    /// The server's one-byte answer to SSLRequest/GSSENCRequest.
    EncryptionAnswer(u8),
    /// Bytes that are no message: the direction resynchronises.
    Malformed,
}

#[derive(Clone, Copy, Debug)]
enum St {
    /// `have` bytes of a header are in `hdr`.
    Header { have: u8 },
    Body {
        tag: u8,
        len: u32,
        seen: u32,
        keep: u32,
        gap: bool,
    },
    /// Framing unknown: looking for a plausible header.
    Lost,
}

/// One direction's message framer.
pub struct Framer {
    side: Side,
    /// The side's [`TagInfo`] table, chosen once (not per header).
    tags: &'static [TagInfo; 256],
    st: St,
    hdr: [u8; 5],
    buf: Vec<u8>,
    keep: Keep,
    /// Server side: the next byte is the answer to an SSLRequest/GSSENCRequest.
    pub encryption_answer_next: bool,
}

impl Framer {
    /// Heap bytes of the buffer of a message split over chunks.
    pub fn heap_bytes(&self) -> usize {
        self.buf.capacity()
    }
}

impl Framer {
    pub fn new(side: Side, keep: Keep) -> Self {
        Framer {
            side,
            tags: match side {
                Side::Client => &CLIENT_TAGS,
                Side::Server => &SERVER_TAGS,
            },
            st: St::Header { have: 0 },
            hdr: [0; 5],
            buf: Vec::new(),
            keep,
            encryption_answer_next: false,
        }
    }

    /// At a message boundary (nothing of a message read yet).
    pub fn between_messages(&self) -> bool {
        matches!(self.st, St::Header { have: 0 })
    }

    pub fn is_lost(&self) -> bool {
        matches!(self.st, St::Lost)
    }

    /// Forget the framing: resynchronise on what comes next.
    pub fn lose_sync(&mut self) {
        self.st = St::Lost;
        self.buf.clear();
    }

    /// `missing` bytes will never arrive. Inside a body that is longer, only the body
    /// suffers (true); otherwise the framing is lost (false).
    pub fn gap(&mut self, missing: u64) -> bool {
        if let St::Body { len, seen, gap, .. } = &mut self.st
            && (*len - *seen) as u64 >= missing
        {
            *seen += missing as u32;
            *gap = true;
            return true;
        }
        self.lose_sync();
        false
    }

    /// What this side's message of type `t` is like.
    #[inline]
    fn info(&self, t: u8) -> TagInfo {
        self.tags[t as usize]
    }

    fn tag_ok(&self, t: u8) -> bool {
        self.info(t).ok
    }

    /// A header's body length and the bytes of the body kept, when the header is one this
    /// side sends (`untagged`: the client's startup family, typed by its code, not a byte);
    /// None is damage.
    #[inline]
    fn checked(&self, tag: u8, len: u32, untagged: bool) -> Option<(u32, u32)> {
        let info = self.info(tag);
        let min = if untagged { 8 } else { 4 };
        let body = len.wrapping_sub(4);
        let ok = (min..=MAX_LEN).contains(&len)
            && (untagged || info.ok)
            && info.fixed.is_none_or(|f| f == body);
        ok.then(|| (body, self.keep.bound(info.keep).min(body)))
    }

    /// Whether a header at the start of `b` (5 bytes at least) is plausible enough to
    /// resynchronise on.
    fn plausible(&self, b: &[u8]) -> bool {
        if b.len() < 5 || !self.tag_ok(b[0]) {
            return false;
        }
        let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]);
        if !(4..=1 << 24).contains(&len) {
            return false;
        }
        if let Some(f) = self.info(b[0]).fixed
            && len - 4 != f
        {
            return false;
        }
        match (self.side, b[0], b.get(5)) {
            (Side::Server, b'Z', Some(s)) => matches!(s, b'I' | b'T' | b'E'),
            (Side::Server, b'C', Some(c)) => c.is_ascii_uppercase(),
            (Side::Server, b'E' | b'N', Some(c)) => c.is_ascii_uppercase(),
            (Side::Client, b'Q', Some(c)) => c.is_ascii_graphic() || c.is_ascii_whitespace(),
            _ => true,
        }
    }

    /// Read the next message from `b`: the bytes used and what they made, if anything.
    /// Returns `(0, None)` only when `b` is empty.
    pub fn next<'a>(&'a mut self, b: &'a [u8]) -> (usize, Option<Ev<'a>>) {
        // The usual case first: at a boundary, a whole tagged message in the chunk, read in
        // place. Anything else (a startup message, a split or damaged one, an answer to
        // SSLRequest) takes the general path below, which frames it the same way.
        if matches!(self.st, St::Header { have: 0 })
            && !self.encryption_answer_next
            && let Some(&[tag, l0, l1, l2, l3]) = b.first_chunk::<5>()
        {
            let len = u32::from_be_bytes([l0, l1, l2, l3]);
            if let Some((body, keep)) = self.checked(tag, len, false)
                && b.len() - 5 >= body as usize
            {
                return (
                    5 + body as usize,
                    Some(Ev::Msg(Msg {
                        tag,
                        len: body,
                        body: &b[5..5 + keep as usize],
                        whole: keep == body,
                        gap: false,
                    })),
                );
            }
        }
        let mut pos = 0;
        loop {
            if pos >= b.len() {
                return (pos, None);
            }
            match self.st {
                St::Lost => {
                    match (pos..b.len()).find(|&i| self.plausible(&b[i..])) {
                        Some(i) => {
                            pos = i;
                            self.st = St::Header { have: 0 };
                        }
                        // The chunk's tail may hold the start of a header: a later chunk
                        // starting at a message (as TCP segments mostly do) resynchronises.
                        None => return (b.len(), None),
                    }
                }
                St::Header { have: 0 } if self.encryption_answer_next => {
                    self.encryption_answer_next = false;
                    let c = b[pos];
                    if matches!(c, b'S' | b'N' | b'G') {
                        return (pos + 1, Some(Ev::EncryptionAnswer(c)));
                    }
                    // Anything else (an ErrorResponse of an old server) is framed as usual.
                }
                St::Header { have } => {
                    let have = have as usize;
                    let untagged = self.side == Side::Client
                        && (if have == 0 { b[pos] } else { self.hdr[0] }) == 0;
                    let need = if untagged { 4 } else { 5 };
                    let hdr: [u8; 5] = if have == 0 && b.len() - pos >= 5 {
                        // The whole header in the chunk (the usual case): read it in place.
                        let h = [b[pos], b[pos + 1], b[pos + 2], b[pos + 3], b[pos + 4]];
                        pos += need;
                        h
                    } else {
                        let take = (need - have).min(b.len() - pos);
                        self.hdr[have..have + take].copy_from_slice(&b[pos..pos + take]);
                        pos += take;
                        if have + take < need {
                            self.st = St::Header {
                                have: (have + take) as u8,
                            };
                            return (pos, None);
                        }
                        self.hdr
                    };
                    let (tag, len) = if untagged {
                        (0, u32::from_be_bytes([hdr[0], hdr[1], hdr[2], hdr[3]]))
                    } else {
                        (hdr[0], u32::from_be_bytes([hdr[1], hdr[2], hdr[3], hdr[4]]))
                    };
                    let Some((len, keep)) = self.checked(tag, len, untagged) else {
                        self.lose_sync();
                        return (pos, Some(Ev::Malformed));
                    };
                    let avail = b.len() - pos;
                    self.st = St::Header { have: 0 };
                    if avail >= len as usize {
                        let body = &b[pos..pos + keep as usize];
                        return (
                            pos + len as usize,
                            Some(Ev::Msg(Msg {
                                tag,
                                len,
                                body,
                                whole: keep == len,
                                gap: false,
                            })),
                        );
                    }
                    self.buf.clear();
                    self.st = St::Body {
                        tag,
                        len,
                        seen: 0,
                        keep,
                        gap: false,
                    };
                }
                St::Body {
                    tag,
                    len,
                    seen,
                    keep,
                    gap,
                } => {
                    let take = ((len - seen) as usize).min(b.len() - pos);
                    if seen < keep {
                        let k = ((keep - seen) as usize).min(take);
                        self.buf.extend_from_slice(&b[pos..pos + k]);
                    }
                    let seen = seen + take as u32;
                    pos += take;
                    if seen < len {
                        self.st = St::Body {
                            tag,
                            len,
                            seen,
                            keep,
                            gap,
                        };
                        return (pos, None);
                    }
                    self.st = St::Header { have: 0 };
                    let whole = keep == len && !gap;
                    return (
                        pos,
                        Some(Ev::Msg(Msg {
                            tag,
                            len,
                            body: &self.buf,
                            whole,
                            gap,
                        })),
                    );
                }
            }
        }
    }
}

/// A NUL-terminated string at the start of `b`, and what follows its NUL (None without
/// a NUL).
pub fn cstr(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = first_nul(b)?;
    Some((&b[..n], &b[n + 1..]))
}

/// A NUL-terminated string, or all of `b` when the NUL was cut off (a kept prefix).
pub fn cstr_lenient(b: &[u8]) -> &[u8] {
    cstr(b).map_or(b, |(s, _)| s)
}

/// The 4-byte code at the start of an untagged client message.
pub fn startup_code(body: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(body.get(..4)?.try_into().ok()?))
}

/// The name/value parameters of a StartupMessage body (after the protocol code).
pub fn startup_params(body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    let mut rest = body.get(4..).unwrap_or_default();
    std::iter::from_fn(move || {
        let (k, r) = cstr(rest)?;
        if k.is_empty() {
            return None;
        }
        let (v, r) = cstr(r)?;
        rest = r;
        Some((k, v))
    })
}

/// What an ErrorResponse says (NoticeResponse has the same fields).
#[derive(Clone, Copy, Debug, Default)]
pub struct ErrorFields<'a> {
    /// `S`/`V`: ERROR, FATAL, PANIC (V is never localized).
    pub severity: &'a [u8],
    /// `C`: the SQLSTATE.
    pub code: &'a [u8],
    /// `M`: the message (never exported unless configured: it can quote literals).
    pub message: &'a [u8],
}

pub fn error_fields(mut b: &[u8]) -> ErrorFields<'_> {
    let mut f = ErrorFields::default();
    while let Some((&t, rest)) = b.split_first() {
        if t == 0 {
            break;
        }
        let (v, r) = match cstr(rest) {
            Some(x) => x,
            None => (rest, &[][..]),
        };
        match t {
            b'S' if f.severity.is_empty() => f.severity = v,
            b'V' => f.severity = v,
            b'C' => f.code = v,
            b'M' => f.message = v,
            _ => {}
        }
        b = r;
    }
    f
}

/// The position of the first NUL in `b`. Eight bytes a step: every string of the protocol
/// is NUL-terminated (a statement's text, a CommandComplete tag once per statement), and a
/// byte loop over a tag was a fifth of its reading. Not `memchr::memchr`, which the other
/// decoders use for longer strings: for these short names and tags its call cost ~166
/// instructions more per pgbench statement (cachegrind, stop 36).
fn first_nul(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let mut words = b.chunks_exact(8);
    let mut at = 0;
    for w in words.by_ref() {
        let w = u64::from_le_bytes(w.try_into().expect("eight bytes"));
        // A high bit for each zero byte. A borrow can mark bytes above a zero byte too,
        // never below it: the lowest mark is the first zero.
        let zeros = w.wrapping_sub(ONES) & !w & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    words.remainder().iter().position(|&c| c == 0).map(|i| at + i)
}

/// A CommandComplete tag split into its command and its row count: `INSERT 0 5` →
/// (`INSERT`, 5), `SELECT 3` → (`SELECT`, 3), `CREATE TABLE` → (`CREATE TABLE`, None).
pub fn command_tag(tag: &[u8]) -> (&[u8], Option<u64>) {
    let tag = cstr_lenient(tag);
    let mut end = tag.len();
    let mut rows = None;
    // Trailing numbers: the last is the row count (INSERT has the oid before it). One
    // backward pass: a number is the digits before `end`, after a space that is not the
    // tag's first byte.
    loop {
        let mut start = end;
        while start > 0 && tag[start - 1].is_ascii_digit() {
            start -= 1;
        }
        if start == end || start == 0 || tag[start - 1] != b' ' {
            break;
        }
        let word = &tag[start..end];
        if rows.is_none() {
            // All digits: overflow is the only failure.
            rows = word.iter().try_fold(0u64, |n, &d| {
                n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
            });
        }
        end = start - 1;
    }
    (&tag[..end], rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_tags() {
        assert_eq!(command_tag(b"INSERT 0 5\0"), (&b"INSERT"[..], Some(5)));
        assert_eq!(command_tag(b"SELECT 3"), (&b"SELECT"[..], Some(3)));
        assert_eq!(command_tag(b"CREATE TABLE"), (&b"CREATE TABLE"[..], None));
        assert_eq!(command_tag(b"BEGIN\0"), (&b"BEGIN"[..], None));
        assert_eq!(command_tag(b"123"), (&b"123"[..], None));
        assert_eq!(command_tag(b""), (&b""[..], None));
        // Edges of the backward pass: a number right after the first byte's space, a
        // double space, digits glued to a word, a count too big for u64 (the oid before
        // it is taken instead, as the word-by-word reading did).
        assert_eq!(command_tag(b" 5"), (&b""[..], Some(5)));
        assert_eq!(command_tag(b"FOO  5"), (&b"FOO "[..], Some(5)));
        assert_eq!(command_tag(b"A1 2"), (&b"A1"[..], Some(2)));
        assert_eq!(
            command_tag(b"INSERT 7 99999999999999999999999\0"),
            (&b"INSERT"[..], Some(7))
        );
    }

    /// The tag read word by word from its end, as before the backward pass: the oracle.
    fn command_tag_by_words(tag: &[u8]) -> (&[u8], Option<u64>) {
        let tag = cstr_lenient(tag);
        let (mut end, mut rows) = (tag.len(), None);
        while end > 0 {
            let start = tag[..end]
                .iter()
                .rposition(|&c| c == b' ')
                .map_or(0, |p| p + 1);
            let word = &tag[start..end];
            if word.is_empty() || !word.iter().all(u8::is_ascii_digit) || start == 0 {
                break;
            }
            if rows.is_none() {
                rows = word.iter().try_fold(0u64, |n, &d| {
                    n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
                });
            }
            end = start - 1;
        }
        (&tag[..end], rows)
    }

    #[test]
    fn command_tags_read_backwards_as_word_by_word() {
        // Random tags of letters, digits, spaces and NULs (the same every run).
        let alphabet = b"A 0123456789\0 9";
        let mut r = crate::test_rng::rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..50_000 {
            let len = r(24);
            let tag: Vec<u8> = (0..len)
                .map(|_| alphabet[r(alphabet.len() as u64) as usize])
                .collect();
            assert_eq!(command_tag(&tag), command_tag_by_words(&tag), "{tag:?}");
        }
    }

    #[test]
    fn first_nul_is_the_first_zero_byte_whatever_surrounds_it() {
        // Every byte value around the zeros (0x01 above a zero is what a borrow marks).
        let mut r = crate::test_rng::rng(0x2545_f491);
        for len in 0..40usize {
            for _ in 0..200 {
                let b: Vec<u8> = (0..len)
                    .map(|_| match r(8) {
                        0 => 0,
                        1 => 1,
                        _ => r(256) as u8,
                    })
                    .collect();
                assert_eq!(first_nul(&b), b.iter().position(|&c| c == 0), "{b:?}");
            }
        }
    }

    #[test]
    fn error_fields_read() {
        let e = error_fields(b"SERROR\0VERROR\0C42P01\0Mrelation \"x\" does not exist\0\0");
        assert_eq!(e.severity, b"ERROR");
        assert_eq!(e.code, b"42P01");
        let e = error_fields(b"SERR");
        assert_eq!(e.severity, b"ERR");
    }

    #[test]
    fn framing_split_anywhere_gives_the_same_messages() {
        let mut conv = Vec::new();
        conv.extend_from_slice(&[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
        conv.extend_from_slice(b"Q\0\0\0\x0dSELECT 1\0");
        conv.extend_from_slice(b"S\0\0\0\x04");
        let keep = Keep {
            query: 4,
            error: 64,
        };
        let collect = |chunks: &[&[u8]]| {
            let mut f = Framer::new(Side::Client, keep);
            let mut got = Vec::new();
            for c in chunks {
                let mut b: &[u8] = c;
                while !b.is_empty() {
                    let (n, ev) = f.next(b);
                    if let Some(Ev::Msg(m)) = ev {
                        got.push((m.tag, m.len, m.body.to_vec(), m.whole));
                    }
                    b = &b[n..];
                }
            }
            got
        };
        let want = collect(&[&conv]);
        assert_eq!(want.len(), 3);
        assert_eq!(want[1], (b'Q', 9, b"SELE".to_vec(), false));
        for cut in 0..conv.len() {
            assert_eq!(collect(&[&conv[..cut], &conv[cut..]]), want, "cut {cut}");
        }
        let bytes: Vec<&[u8]> = conv.chunks(1).collect();
        assert_eq!(collect(&bytes), want);
    }
}
