//! MongoDB wire protocol framing and a streaming BSON reader: each direction's bytes into
//! messages, split anywhere, never copied whole.
//!
//! Every message is a 16-byte little-endian header (`messageLength` counting itself,
//! `requestID`, `responseTo`, `opCode`) and a body whose layout the opcode gives:
//!
//! * `OP_MSG` (2013): `flagBits`, then sections until the optional CRC-32C (flag bit 0):
//!   kind 0 is one BSON document (the command, or its reply), kind 1 a document sequence
//!   (`size`, an identifier, documents: `insert`'s `documents` say).
//! * `OP_QUERY` (2004): flags, `fullCollectionName`, skip, limit, the query document (a
//!   command when the collection is `$cmd`), an optional field selector.
//! * `OP_REPLY` (1): flags, cursor id, starting row, `numberReturned`, the documents.
//! * `OP_GET_MORE` (2005): zero, `fullCollectionName`, limit, cursor id.
//! * `OP_COMPRESSED` (2012): the original opcode, the uncompressed size, the compressor
//!   (0 noop, 1 snappy, 2 zlib, 3 zstd) and the compressed body: decompressed into a
//!   buffer bounded by `max_decompressed_bytes`, then read as the original opcode.
//!
//! An OP_MSG body that lies whole in the chunk at hand (nearly every one) is read in one
//! pass ([`Walker::whole_msg`]); any other body, and any whole one that is not well formed,
//! is read by a resumable state machine ([`Walker`]) as its bytes come: it
//! keeps no more than a 20-byte field being gathered and the few short strings it reads
//! (the command's name, its string value, `$db`, `codeName`, a legacy namespace, each cut
//! at a fixed size), and skips everything else by its length. It descends at most three
//! documents deep (the top document, `cursor`, its `firstBatch`/`nextBatch` or
//! `writeErrors`), whatever the nesting of the documents, so depth costs nothing. A body
//! that is not what its opcode says marks the message malformed and the rest of it is
//! skipped; the header's length keeps the framing. A header that is not plausible loses
//! the framing, and the direction resynchronises on the next plausible header.

use std::io::Read;

pub const OP_REPLY: u32 = 1;
pub const OP_UPDATE: u32 = 2001;
pub const OP_INSERT: u32 = 2002;
pub const OP_QUERY: u32 = 2004;
pub const OP_GET_MORE: u32 = 2005;
pub const OP_DELETE: u32 = 2006;
pub const OP_KILL_CURSORS: u32 = 2007;
pub const OP_COMPRESSED: u32 = 2012;
pub const OP_MSG: u32 = 2013;

/// OP_MSG flag bits.
pub const CHECKSUM_PRESENT: u32 = 1;
pub const MORE_TO_COME: u32 = 1 << 1;
pub const EXHAUST_ALLOWED: u32 = 1 << 16;
/// OP_REPLY `responseFlags`: the query failed (`$err` in the document).
pub const QUERY_FAILURE: u32 = 1 << 1;
/// OP_REPLY `responseFlags`: the cursor of a getMore is gone.
pub const CURSOR_NOT_FOUND: u32 = 1;

const HEADER: usize = 16;

/// Longest message of an unknown opcode framed by its length (see [`Framer::feed`]).
const MAX_UNKNOWN: u32 = 16 << 10;

/// Buffers of OP_COMPRESSED messages beyond this are freed after use (a connection that
/// once carried a large message does not keep its memory).
const KEEP_BUFFER: usize = 64 << 10;

/// Opcodes a MongoDB server or client of any version sends.
pub fn known_opcode(op: u32) -> bool {
    matches!(
        op,
        OP_REPLY
            | OP_UPDATE
            | OP_INSERT
            | OP_QUERY
            | OP_GET_MORE
            | OP_DELETE
            | OP_KILL_CURSORS
            | OP_COMPRESSED
            | OP_MSG
    )
}

/// The decoder's bounds on what it believes and buffers.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest message believed (header included); a longer length is damage.
    pub max_message: u32,
    /// Largest body an OP_COMPRESSED message may decompress to (and hold compressed).
    pub max_decompressed: u32,
}

/// A message header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Header {
    /// `messageLength`: the whole message, header included.
    pub len: u32,
    pub request_id: u32,
    pub response_to: u32,
    pub opcode: u32,
}

impl Header {
    pub fn read(b: &[u8]) -> Option<Header> {
        let w = |i: usize| Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?));
        Some(Header {
            len: w(0)?,
            request_id: w(4)?,
            response_to: w(8)?,
            opcode: w(12)?,
        })
    }

    /// The smallest length a message of this opcode can have.
    fn min_len(&self) -> u32 {
        HEADER as u32
            + match self.opcode {
                // flags, a kind-0 section of an empty document.
                OP_MSG => 4 + 1 + 5,
                OP_QUERY => 4 + 1 + 8 + 5,
                OP_REPLY => 20,
                OP_COMPRESSED => 9,
                _ => 0,
            }
    }

    /// Plausible enough to resynchronise on: a known opcode and a length it can have.
    pub fn plausible(&self, max: u32) -> bool {
        known_opcode(self.opcode) && self.len >= self.min_len() && self.len <= max
    }
}

/// A short string read from a document, cut at `N` bytes.
#[derive(Clone, Copy)]
pub struct Text<const N: usize> {
    buf: [u8; N],
    len: u16,
    /// The string was longer than `N` bytes.
    pub cut: bool,
}

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text {
            buf: [0; N],
            len: 0,
            cut: false,
        }
    }
}

impl<const N: usize> std::fmt::Debug for Text<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.as_str())
    }
}

impl<const N: usize> Text<N> {
    fn clear(&mut self) {
        self.len = 0;
        self.cut = false;
    }

    fn push(&mut self, b: &[u8]) {
        let have = self.len as usize;
        let n = b.len().min(N - have);
        copy_short(&mut self.buf[have..have + n], &b[..n]);
        self.len += n as u16;
        self.cut |= n < b.len();
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The valid UTF-8 start (a cut may end inside a character).
    pub fn as_str(&self) -> &str {
        let b = self.as_bytes();
        // Names are nearly always ASCII: a word-at-a-time test costs a fraction of
        // `from_utf8`'s general check on a short string.
        if b.is_ascii() {
            // SAFETY: ASCII bytes are valid UTF-8.
            return unsafe { std::str::from_utf8_unchecked(b) };
        }
        match std::str::from_utf8(b) {
            Ok(s) => s,
            Err(e) => std::str::from_utf8(&b[..e.valid_up_to()]).unwrap_or_default(),
        }
    }
}

/// What one message says, as far as the decoder reads it. Values are never kept but for
/// the few strings named here.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// The opcode of the body (the original one of an OP_COMPRESSED message).
    pub opcode: u32,
    /// OP_MSG `flagBits`, OP_QUERY flags, OP_REPLY `responseFlags`.
    pub flags: u32,
    /// OP_COMPRESSED: the compressor id.
    pub compressor: Option<u8>,
    /// The first key of the top document (a command's name).
    pub command: Text<64>,
    /// The first key's value when a string (a command's collection), or a getMore's
    /// `collection`.
    pub collection: Text<256>,
    /// `$db`.
    pub db: Text<128>,
    /// OP_QUERY / OP_GET_MORE `fullCollectionName`.
    pub ns: Text<256>,
    /// A reply's `codeName`.
    pub code_name: Text<64>,
    /// A reply's `ok` (non-zero).
    pub ok: Option<bool>,
    /// A reply's `code`.
    pub code: Option<i64>,
    /// A legacy failure document (`$err`).
    pub err: bool,
    /// Elements of a reply's `writeErrors`.
    pub write_errors: u32,
    /// The `code` of the first of them.
    pub write_error_code: Option<i64>,
    /// A reply's `writeConcernError`.
    pub write_concern_error: bool,
    /// Elements of a reply's `cursor.firstBatch` or `cursor.nextBatch`.
    pub rows: Option<u64>,
    /// OP_REPLY `numberReturned`.
    pub number_returned: Option<u32>,
    /// Documents of the OP_MSG document sequences (kind 1).
    pub documents: u32,
    /// The body is not what its opcode says (the rest of it was skipped).
    pub malformed: bool,
    /// Bytes of the body were lost in a gap (what follows them was not read).
    pub gap: bool,
    /// OP_COMPRESSED beyond `max_decompressed`: the body was not read.
    pub limit: bool,
    /// OP_COMPRESSED with an unknown compressor, or data that does not decompress.
    pub undecodable: bool,
}

impl Facts {
    /// As new, without zeroing the strings' buffers (once per message).
    pub fn reset(&mut self, opcode: u32, compressor: Option<u8>) {
        // Every field named: a new one cannot be forgotten here.
        let Facts {
            opcode: op,
            flags,
            compressor: z,
            command,
            collection,
            db,
            ns,
            code_name,
            ok,
            code,
            err,
            write_errors,
            write_error_code,
            write_concern_error,
            rows,
            number_returned,
            documents,
            malformed,
            gap,
            limit,
            undecodable,
        } = self;
        *op = opcode;
        *z = compressor;
        *flags = 0;
        command.clear();
        collection.clear();
        db.clear();
        ns.clear();
        code_name.clear();
        (*ok, *code, *write_error_code, *rows, *number_returned) = (None, None, None, None, None);
        (*write_errors, *documents) = (0, 0);
        (*err, *write_concern_error, *malformed, *gap, *limit, *undecodable) =
            (false, false, false, false, false, false);
    }
}

/// `dst.copy_from_slice(src)` (same lengths) without a call for the short strings kept
/// here (names and collections of a few bytes, twice a message): two overlapping word
/// copies instead of `memcpy`'s call and size dispatch.
#[inline(always)]
pub(super) fn copy_short(dst: &mut [u8], src: &[u8]) {
    let n = src.len();
    if (8..=16).contains(&n) {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..].copy_from_slice(&src[n - 8..]);
    } else if (4..8).contains(&n) {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..].copy_from_slice(&src[n - 4..]);
    } else if n < 4 {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = *s;
        }
    } else {
        dst.copy_from_slice(src);
    }
}

/// The documents the walker descends into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ctx {
    /// The top document (or a legacy query's `$query`).
    Top,
    /// A reply's `cursor`.
    Cursor,
    /// `firstBatch` / `nextBatch`: elements counted.
    Rows,
    /// `writeErrors`: elements counted.
    WriteErrors,
    /// The first of the `writeErrors`: its `code` read.
    WriteError,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    /// Body offset just past the document.
    end: u32,
    ctx: Ctx,
    /// Elements read so far.
    index: u32,
}

/// What an element's value is to the walker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Field {
    None,
    /// The first key's value: kept when a string.
    Command,
    Db,
    Ok,
    Code,
    CodeName,
    /// getMore's `collection`.
    Collection,
    /// The first write error's `code`.
    WriteCode,
    /// A document to descend into.
    Into(Ctx),
}

/// Where the walker goes when the top document ends.
#[derive(Clone, Copy, Debug)]
enum After {
    Sections,
    Rest,
}

#[derive(Clone, Copy, Debug)]
enum St {
    MsgFlags,
    Section,
    SeqSize,
    SeqIdent { end: u32 },
    SeqDoc { end: u32, left: u32 },
    QueryFlags,
    QueryName,
    QueryNums,
    ReplyHead,
    GetMoreZero,
    GetMoreName,
    /// The length of a top document.
    Doc { after: After },
    /// An element's type byte, or the document's terminating 0.
    Elem,
    Name { ty: u8 },
    Value { ty: u8, field: Field },
    Str { left: u32, field: Field },
    Skip { left: u32 },
    /// A regular expression's pattern and options (two C strings).
    Regex { strings: u8 },
    /// Nothing more is read of this message.
    Rest,
}

/// The maximum nesting the walker follows (top, cursor, batch).
const MAX_DEPTH: usize = 3;

/// Reads one message body as its bytes come (see the module documentation).
pub struct Walker {
    st: St,
    /// Body offset of the next byte.
    pos: u32,
    /// Where the sections of an OP_MSG end (before the checksum), or the body's end.
    sect_end: u32,
    body_len: u32,
    gathered: [u8; 20],
    have: u8,
    name: Text<64>,
    stack: [Frame; MAX_DEPTH],
    depth: u8,
    after: After,
    seen_body: bool,
    pub facts: Facts,
}

impl Default for Walker {
    fn default() -> Self {
        Walker {
            st: St::Rest,
            pos: 0,
            sect_end: 0,
            body_len: 0,
            gathered: [0; 20],
            have: 0,
            name: Text::default(),
            stack: [Frame {
                end: 0,
                ctx: Ctx::Top,
                index: 0,
            }; MAX_DEPTH],
            depth: 0,
            after: After::Rest,
            seen_body: false,
            facts: Facts::default(),
        }
    }
}

fn le32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

/// The 4-byte little-endian length at `p` of `b`, if `b` holds it.
fn len_at(b: &[u8], p: usize) -> Option<usize> {
    b.get(p..p + 4).map(|w| le32(w) as usize)
}

/// Bytes of a fixed-size BSON value (None: length-prefixed, C strings, or unknown type).
fn fixed_size(ty: u8) -> Option<u32> {
    Some(match ty {
        0x01 | 0x09 | 0x11 | 0x12 => 8,
        0x07 => 12,
        0x08 => 1,
        0x06 | 0x0A | 0xFF | 0x7F => 0,
        0x10 => 4,
        0x13 => 16,
        _ => return None,
    })
}

fn known_type(ty: u8) -> bool {
    fixed_size(ty).is_some() || matches!(ty, 0x02..=0x05 | 0x0B..=0x0F)
}

impl Walker {
    /// Start a body of `len` bytes of opcode `opcode`.
    pub fn start(&mut self, opcode: u32, len: u32) {
        let compressor = self.facts.compressor.take();
        self.facts.reset(opcode, compressor);
        self.pos = 0;
        self.body_len = len;
        self.sect_end = len;
        self.have = 0;
        self.depth = 0;
        self.seen_body = false;
        self.st = match opcode {
            OP_MSG => St::MsgFlags,
            OP_QUERY => St::QueryFlags,
            OP_REPLY => St::ReplyHead,
            OP_GET_MORE => St::GetMoreZero,
            _ => St::Rest,
        };
    }

    /// `n` bytes of the body were lost: nothing after them is read.
    pub fn gap(&mut self, n: u32) {
        self.facts.gap = true;
        self.pos = self.pos.saturating_add(n).min(self.body_len);
        self.st = St::Rest;
    }

    fn malformed(&mut self) {
        self.facts.malformed = true;
        self.st = St::Rest;
    }

    /// Gather `n` (at most 20) bytes: Some once all of them are there.
    fn gather(&mut self, b: &[u8], i: &mut usize, n: usize) -> Option<[u8; 20]> {
        let avail = b.len() - *i;
        let mut out = [0u8; 20];
        if self.have == 0 && avail >= n {
            out[..n].copy_from_slice(&b[*i..*i + n]);
            *i += n;
            self.pos += n as u32;
            return Some(out);
        }
        let have = self.have as usize;
        let take = (n - have).min(avail);
        self.gathered[have..have + take].copy_from_slice(&b[*i..*i + take]);
        *i += take;
        self.pos += take as u32;
        if have + take < n {
            self.have = (have + take) as u8;
            return None;
        }
        self.have = 0;
        out[..n].copy_from_slice(&self.gathered[..n]);
        Some(out)
    }

    /// A 4-byte little-endian integer: read in place when it is whole in `b` (lengths are
    /// most of what the walker reads), else gathered.
    #[inline]
    fn word(&mut self, b: &[u8], i: &mut usize) -> Option<u32> {
        if self.have == 0
            && let Some(w) = b.get(*i..*i + 4)
        {
            *i += 4;
            self.pos += 4;
            return Some(le32(w));
        }
        self.gather(b, i, 4).map(|g| le32(&g))
    }

    /// The end of the innermost document (or of the sections).
    fn limit(&self) -> u32 {
        match self.depth {
            0 => self.sect_end,
            d => self.stack[d as usize - 1].end,
        }
    }

    /// Skip up to `left` bytes: how many remain.
    fn skip(&mut self, b: &[u8], i: &mut usize, left: u32) -> u32 {
        let n = (left as usize).min(b.len() - *i);
        *i += n;
        self.pos += n as u32;
        left - n as u32
    }

    /// Skip the `left` bytes of a value that is not read, as far as `b` holds them, then
    /// go on with the next element (or wait in `Skip` for the rest). Called as soon as
    /// the value's length is known: a value whole in the chunk costs no turn of the loop.
    #[inline]
    fn skip_value(&mut self, b: &[u8], i: &mut usize, left: u32) {
        let left = self.skip(b, i, left);
        self.st = if left == 0 {
            St::Elem
        } else {
            St::Skip { left }
        };
    }

    /// An element's name (or the rest of one split by the chunk), then its value begun at
    /// once: a name and value whole in the chunk cost no turn of the state loop each. The
    /// state stays `Name` while the name is incomplete, and is `Value` while the value
    /// waits for bytes.
    #[inline]
    fn name_then_value(&mut self, b: &[u8], i: &mut usize, ty: u8, end: u32) {
        let field = match self.cstr(b, i, end) {
            // Whole in this chunk (the usual case): read in place.
            Some((s, true)) if self.name.len == 0 => self.field(ty, s),
            Some((s, done)) => {
                self.name.push(s);
                if !done {
                    return;
                }
                let name = self.name;
                self.field(ty, name.as_bytes())
            }
            None => return self.malformed(),
        };
        self.st = St::Value { ty, field };
        self.value(b, i, ty, field);
    }

    /// A C string ending before `end`: its bytes in this chunk, and whether it ended (None:
    /// no NUL before `end`, malformed).
    fn cstr<'b>(&mut self, b: &'b [u8], i: &mut usize, end: u32) -> Option<(&'b [u8], bool)> {
        let room = end.saturating_sub(self.pos) as usize;
        let region = &b[*i..b.len().min(*i + room)];
        // Names are short: a plain scan of the first bytes costs less than memchr's setup.
        let short = &region[..region.len().min(24)];
        let nul = match short.iter().position(|&c| c == 0) {
            Some(n) => Some(n),
            None if region.len() > short.len() => {
                memchr::memchr(0, &region[short.len()..]).map(|n| n + short.len())
            }
            None => None,
        };
        match nul {
            Some(n) => {
                *i += n + 1;
                self.pos += n as u32 + 1;
                Some((&region[..n], true))
            }
            None if region.len() == room => None,
            None => {
                *i += region.len();
                self.pos += region.len() as u32;
                Some((region, false))
            }
        }
    }

    /// Read the body bytes `b` (never past the body's end).
    pub fn feed(&mut self, b: &[u8]) {
        let mut i = 0;
        while i < b.len() {
            match self.st {
                St::Rest => {
                    self.pos += (b.len() - i) as u32;
                    return;
                }
                St::MsgFlags => {
                    let Some(w) = self.word(b, &mut i) else {
                        return;
                    };
                    let flags = w;
                    self.facts.flags = flags;
                    if flags & CHECKSUM_PRESENT != 0 {
                        if self.body_len < 4 + 4 {
                            self.malformed();
                            continue;
                        }
                        self.sect_end = self.body_len - 4;
                    }
                    self.st = St::Section;
                }
                St::Section => {
                    if self.pos >= self.sect_end {
                        // The checksum (not verified: the transport's checksums did that).
                        self.st = St::Rest;
                        continue;
                    }
                    let kind = b[i];
                    i += 1;
                    self.pos += 1;
                    self.st = match kind {
                        0 if !self.seen_body => {
                            self.seen_body = true;
                            St::Doc {
                                after: After::Sections,
                            }
                        }
                        1 => St::SeqSize,
                        _ => {
                            self.malformed();
                            continue;
                        }
                    };
                }
                St::SeqSize => {
                    let start = self.pos - u32::from(self.have);
                    let Some(w) = self.word(b, &mut i) else {
                        return;
                    };
                    let size = w;
                    match start.checked_add(size) {
                        Some(end) if size >= 5 && end <= self.sect_end => {
                            self.st = St::SeqIdent { end }
                        }
                        _ => self.malformed(),
                    }
                }
                St::SeqIdent { end } => match self.cstr(b, &mut i, end) {
                    Some((_, true)) => self.st = St::SeqDoc { end, left: 0 },
                    Some((_, false)) => {}
                    None => self.malformed(),
                },
                St::SeqDoc { end, left } => {
                    if left > 0 {
                        let left = self.skip(b, &mut i, left);
                        self.st = St::SeqDoc { end, left };
                        continue;
                    }
                    if self.pos >= end {
                        self.st = St::Section;
                        continue;
                    }
                    let start = self.pos - u32::from(self.have);
                    let Some(w) = self.word(b, &mut i) else {
                        return;
                    };
                    let len = w;
                    if len < 5 || len > end - start {
                        self.malformed();
                        continue;
                    }
                    self.facts.documents += 1;
                    self.st = St::SeqDoc { end, left: len - 4 };
                }
                St::QueryFlags => {
                    let Some(w) = self.word(b, &mut i) else {
                        return;
                    };
                    self.facts.flags = w;
                    self.st = St::QueryName;
                }
                St::QueryName | St::GetMoreName => {
                    let end = self.body_len;
                    match self.cstr(b, &mut i, end) {
                        Some((s, done)) => {
                            self.facts.ns.push(s);
                            if done {
                                self.st = match self.st {
                                    St::QueryName => St::QueryNums,
                                    _ => St::Rest,
                                };
                            }
                        }
                        None => self.malformed(),
                    }
                }
                St::QueryNums => {
                    if self.gather(b, &mut i, 8).is_some() {
                        self.st = St::Doc { after: After::Rest };
                    }
                }
                St::GetMoreZero => {
                    if self.word(b, &mut i).is_some() {
                        self.st = St::GetMoreName;
                    }
                }
                St::ReplyHead => {
                    let Some(g) = self.gather(b, &mut i, 20) else {
                        return;
                    };
                    self.facts.flags = le32(&g);
                    let n = le32(&g[16..]);
                    self.facts.number_returned = Some(n);
                    self.st = if n > 0 {
                        St::Doc { after: After::Rest }
                    } else {
                        St::Rest
                    };
                }
                St::Doc { after } => {
                    let start = self.pos - u32::from(self.have);
                    let Some(w) = self.word(b, &mut i) else {
                        return;
                    };
                    let len = w;
                    if len < 5 || len > self.sect_end.saturating_sub(start) {
                        self.malformed();
                        continue;
                    }
                    self.after = after;
                    self.stack[0] = Frame {
                        end: start + len,
                        ctx: Ctx::Top,
                        index: 0,
                    };
                    self.depth = 1;
                    self.st = St::Elem;
                }
                St::Elem => {
                    if self.depth > 0 && self.stack[self.depth as usize - 1].ctx == Ctx::Rows {
                        self.count_rows(b, &mut i);
                        if i >= b.len() {
                            return;
                        }
                    }
                    let ty = b[i];
                    i += 1;
                    self.pos += 1;
                    let end = self.limit();
                    if ty == 0 {
                        if self.pos != end {
                            self.malformed();
                            continue;
                        }
                        self.depth -= 1;
                        self.st = if self.depth > 0 {
                            St::Elem
                        } else {
                            match self.after {
                                After::Sections => St::Section,
                                After::Rest => St::Rest,
                            }
                        };
                        continue;
                    }
                    if !known_type(ty) || self.pos >= end {
                        self.malformed();
                        continue;
                    }
                    self.name.clear();
                    self.st = St::Name { ty };
                    // In the same turn of the loop: the usual name is whole in the chunk.
                    self.name_then_value(b, &mut i, ty, end);
                }
                St::Name { ty } => {
                    let end = self.limit();
                    self.name_then_value(b, &mut i, ty, end);
                }
                St::Value { ty, field } => self.value(b, &mut i, ty, field),
                St::Str { left, field } => {
                    let n = (left as usize).min(b.len() - i);
                    // The string's bytes without its NUL.
                    let text = &b[i..i + n.min(left.saturating_sub(1) as usize)];
                    push_text(&mut self.facts, field, text);
                    i += n;
                    self.pos += n as u32;
                    let left = left - n as u32;
                    self.st = if left == 0 {
                        St::Elem
                    } else {
                        St::Str { left, field }
                    };
                }
                St::Skip { left } => self.skip_value(b, &mut i, left),
                St::Regex { strings } => {
                    let end = self.limit();
                    match self.cstr(b, &mut i, end) {
                        Some((_, true)) if strings == 2 => self.st = St::Regex { strings: 1 },
                        Some((_, true)) => self.st = St::Elem,
                        Some((_, false)) => {}
                        None => self.malformed(),
                    }
                }
            }
        }
    }

    /// Read an OP_MSG body that lies whole in `b` in one pass, with the nesting on the
    /// call stack and no state saved between elements: most messages arrive whole in one
    /// segment, and this costs a fraction of the state machine's turns. False when the
    /// body is anything but well formed (or ends early): the caller then reads it with
    /// [`Walker::start`] and [`Walker::feed`], which say what is wrong with it exactly as
    /// they would for a body split anywhere. For a body read here, `facts` are what the
    /// state machine would have found (a test compares the two on damaged bodies).
    pub fn whole_msg(&mut self, b: &[u8]) -> bool {
        let compressor = self.facts.compressor.take();
        self.facts.reset(OP_MSG, compressor);
        let Some(flags) = b.get(..4).map(le32) else {
            return false;
        };
        self.facts.flags = flags;
        let mut sect_end = b.len();
        if flags & CHECKSUM_PRESENT != 0 {
            if b.len() < 8 {
                return false;
            }
            sect_end = b.len() - 4;
        }
        let (mut p, mut seen_body) = (4, false);
        while p < sect_end {
            let kind = b[p];
            p += 1;
            let Some(len) = len_at(b, p) else {
                return false;
            };
            match kind {
                0 if !seen_body => {
                    seen_body = true;
                    if len < 5 || len > sect_end - p || !self.whole_doc(&b[..p + len], p, Ctx::Top, 1)
                    {
                        return false;
                    }
                }
                1 => {
                    // A document sequence: its identifier, then documents counted.
                    let end = p + len;
                    if len < 5 || end > sect_end {
                        return false;
                    }
                    let Some(nul) = memchr::memchr(0, &b[p + 4..end]) else {
                        return false;
                    };
                    let mut at = p + 4 + nul + 1;
                    while at < end {
                        let Some(n) = len_at(b, at) else {
                            return false;
                        };
                        if n < 5 || n > end - at {
                            return false;
                        }
                        self.facts.documents += 1;
                        at += n;
                    }
                }
                _ => return false,
            }
            p += len;
        }
        true
    }

    /// The elements of the document that starts at `start` and ends with `b` (cut there
    /// by the caller, against its container), which is a `ctx` at nesting `depth` (the
    /// top document is 1): false where the state machine would find it malformed or wait
    /// for more.
    fn whole_doc(&mut self, b: &[u8], start: usize, ctx: Ctx, depth: usize) -> bool {
        let end = b.len();
        let (mut p, mut index) = (start + 4, 0u32);
        loop {
            let Some(&ty) = b.get(p) else {
                return false;
            };
            p += 1;
            if ty == 0 {
                return p == end;
            }
            // An unknown type is refused below, with the value: nothing read before it
            // counts, as the state machine reads the body again.
            let Some(nul) = name_end(&b[p..]) else {
                return false;
            };
            let field = classify(&mut self.facts, ctx, index, ty, &b[p..p + nul]);
            index += 1;
            p += nul + 1;
            if let Some(n) = fixed_size(ty) {
                let n = n as usize;
                let Some(v) = b.get(p..p + n) else {
                    return false;
                };
                if matches!(field, Field::Ok | Field::Code | Field::WriteCode) {
                    number(&mut self.facts, ty, field, v);
                }
                p += n;
                continue;
            }
            if ty == 0x0B {
                // A regular expression: its pattern and options, two C strings.
                for _ in 0..2 {
                    match memchr::memchr(0, b.get(p..).unwrap_or_default()) {
                        Some(n) => p += n + 1,
                        None => return false,
                    }
                }
                continue;
            }
            let at = p;
            let Some(len) = len_at(b, p) else {
                return false;
            };
            p += 4;
            let room = end - p;
            let whole = end - at;
            p += match ty {
                0x02 | 0x0D | 0x0E => {
                    if len == 0 || len > room {
                        return false;
                    }
                    push_text(&mut self.facts, field, &b[p..p + len - 1]);
                    len
                }
                0x05 if len < room => len + 1,
                0x03 | 0x04 if len >= 5 && len <= whole => {
                    if let Field::Into(c) = field
                        && depth < MAX_DEPTH
                        && !self.whole_doc(&b[..at + len], at, c, depth + 1)
                    {
                        return false;
                    }
                    len - 4
                }
                0x0F if len >= 4 + 4 + 5 && len <= whole => len - 4,
                // DBPointer: a string and a 12-byte id.
                0x0C if len != 0 && len.saturating_add(12) <= room => len + 12,
                _ => return false,
            };
        }
    }

    /// Count the documents of a batch that lie whole in `b` from `i`, in one tight loop
    /// (a batch is most of a reply); stops before anything else (the array's end, another
    /// type, a document split by the chunk), which the state machine then reads.
    fn count_rows(&mut self, b: &[u8], i: &mut usize) {
        let d = self.depth as usize - 1;
        let end = self.stack[d].end;
        let mut n = 0u64;
        let mut at = *i;
        let mut pos = self.pos;
        while at < b.len() && b[at] == 0x03 {
            let room = (end.saturating_sub(pos) as usize).min(b.len() - at);
            // The smallest element: type, an empty name, an empty document.
            if room < 7 {
                break;
            }
            let Some(name) = memchr::memchr(0, &b[at + 1..at + room]) else {
                break;
            };
            let doc = at + 1 + name + 1;
            let Some(w) = b.get(doc..doc + 4) else { break };
            let len = le32(w) as usize;
            let elem = doc - at + len;
            if len < 5 || elem > room {
                break;
            }
            n += 1;
            at += elem;
            pos += elem as u32;
        }
        if n > 0 {
            *self.facts.rows.get_or_insert(0) += n;
            self.stack[d].index += n as u32;
            *i = at;
            self.pos = pos;
        }
    }

    /// What the element just named is to the decoder.
    fn field(&mut self, ty: u8, name: &[u8]) -> Field {
        let d = self.depth as usize - 1;
        let frame = &mut self.stack[d];
        let index = frame.index;
        frame.index += 1;
        classify(&mut self.facts, frame.ctx, index, ty, name)
    }

    /// An element's value.
    fn value(&mut self, b: &[u8], i: &mut usize, ty: u8, field: Field) {
        let end = self.limit();
        if let Some(n) = fixed_size(ty) {
            let at = self.pos - u32::from(self.have);
            if n > end.saturating_sub(at) {
                return self.malformed();
            }
            if !matches!(field, Field::Ok | Field::Code | Field::WriteCode) {
                return self.skip_value(b, i, n);
            }
            let Some(g) = self.gather(b, i, n as usize) else {
                return;
            };
            number(&mut self.facts, ty, field, &g);
            self.st = St::Elem;
            return;
        }
        if ty == 0x0B {
            self.st = St::Regex { strings: 2 };
            return;
        }
        let start = self.pos - u32::from(self.have);
        let Some(w) = self.word(b, i) else {
            return;
        };
        let len = w;
        let room = end.saturating_sub(self.pos);
        match ty {
            0x02 | 0x0D | 0x0E => {
                if len == 0 || len > room {
                    return self.malformed();
                }
                if matches!(
                    field,
                    Field::Command | Field::Db | Field::CodeName | Field::Collection
                ) {
                    self.st = St::Str { left: len, field };
                } else {
                    self.skip_value(b, i, len);
                }
            }
            0x05 => {
                if len >= room {
                    return self.malformed();
                }
                self.skip_value(b, i, len + 1);
            }
            0x03 | 0x04 => {
                if len < 5 || len > end.saturating_sub(start) {
                    return self.malformed();
                }
                match field {
                    Field::Into(ctx) if (self.depth as usize) < MAX_DEPTH => {
                        self.stack[self.depth as usize] = Frame {
                            end: start + len,
                            ctx,
                            index: 0,
                        };
                        self.depth += 1;
                        self.st = St::Elem;
                    }
                    _ => self.skip_value(b, i, len - 4),
                }
            }
            0x0F => {
                if len < 4 + 4 + 5 || len > end.saturating_sub(start) {
                    return self.malformed();
                }
                self.skip_value(b, i, len - 4);
            }
            // DBPointer: a string and a 12-byte id.
            0x0C => {
                if len == 0 || len.saturating_add(12) > room {
                    return self.malformed();
                }
                self.skip_value(b, i, len + 12);
            }
            _ => self.malformed(),
        }
    }
}

/// What an element named `name`, of type `ty`, the `index`th of a document `ctx`, is to
/// the decoder; what it says alone (a row, a write error, the command's name) goes into
/// `facts`. Shared by the state machine and the whole-body walk.
///
/// Inlined where it is called: most elements are rows, or names no document context
/// reads (`filter`, `lsid`, `id`, ...), told apart by their length and first byte; only
/// the others pay for the call and the comparisons of [`classify_named`].
#[inline(always)]
fn classify(facts: &mut Facts, ctx: Ctx, index: u32, ty: u8, name: &[u8]) -> Field {
    match ctx {
        Ctx::Rows => {
            *facts.rows.get_or_insert(0) += 1;
            Field::None
        }
        // `$db`, `$err`; `ok`; `code`, `cursor`, `codeName`, `collection`; `writeErrors`,
        // `writeConcernError` (the first element is the command, whatever its name).
        Ctx::Top
            if index > 0
                && !matches!(
                    (name.len(), name.first()),
                    (3 | 4, Some(b'$'))
                        | (2, Some(b'o'))
                        | (4 | 6 | 8 | 10, Some(b'c'))
                        | (11 | 17, Some(b'w'))
                ) =>
        {
            Field::None
        }
        // `nextBatch`, `firstBatch`.
        Ctx::Cursor if !matches!(name.len(), 9 | 10) => Field::None,
        _ => classify_named(facts, ctx, index, ty, name),
    }
}

/// [`classify`] for the elements whose name may matter.
#[inline(never)]
fn classify_named(facts: &mut Facts, ctx: Ctx, index: u32, ty: u8, name: &[u8]) -> Field {
    match ctx {
        // Counted by `classify`, which never sends a row here.
        Ctx::Rows => Field::None,
        Ctx::WriteErrors => {
            facts.write_errors += 1;
            if index == 0 && ty == 0x03 {
                Field::Into(Ctx::WriteError)
            } else {
                Field::None
            }
        }
        Ctx::WriteError => match name {
            b"code" => Field::WriteCode,
            _ => Field::None,
        },
        Ctx::Cursor => match name {
            b"firstBatch" | b"nextBatch" if ty == 0x04 => {
                facts.rows = Some(0);
                Field::Into(Ctx::Rows)
            }
            _ => Field::None,
        },
        Ctx::Top => {
            if index == 0 {
                facts.command.clear();
                facts.command.push(name);
                facts.collection.clear();
                // A legacy command wrapped with its read preference.
                if name == b"$query" && ty == 0x03 && facts.opcode == OP_QUERY {
                    return Field::Into(Ctx::Top);
                }
            }
            match name {
                b"$db" => Field::Db,
                b"ok" => Field::Ok,
                b"code" => Field::Code,
                b"codeName" => Field::CodeName,
                b"$err" => {
                    facts.err = true;
                    Field::None
                }
                b"writeErrors" if ty == 0x04 => {
                    facts.write_errors = 0;
                    Field::Into(Ctx::WriteErrors)
                }
                b"writeConcernError" => {
                    facts.write_concern_error = true;
                    Field::None
                }
                b"cursor" if ty == 0x03 => Field::Into(Ctx::Cursor),
                b"collection" if facts.command.as_bytes() == b"getMore" => {
                    facts.collection.clear();
                    Field::Collection
                }
                _ if index == 0 => Field::Command,
                _ => Field::None,
            }
        }
    }
}

/// Where the NUL ending an element's name is in `b`. Names are short (`$db`, `ok`,
/// `cursor`, a row's index): the first 16 bytes are tested eight at a time, a word's
/// lowest zero byte found by the borrow trick (the lowest flagged byte is always a true
/// zero), before memchr's set-up is worth it.
pub(super) fn name_end(b: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    for at in [0, 8] {
        let Some(w) = b.get(at..at + 8) else {
            return b[at.min(b.len())..].iter().position(|&c| c == 0).map(|n| at + n);
        };
        let w = u64::from_le_bytes(w.try_into().unwrap_or_default());
        let zero = w.wrapping_sub(ONES) & !w & HIGH;
        if zero != 0 {
            return Some(at + zero.trailing_zeros() as usize / 8);
        }
    }
    memchr::memchr(0, &b[16..]).map(|n| n + 16)
}

/// A string value's bytes (or part of them) for `field`, kept where the field says.
fn push_text(facts: &mut Facts, field: Field, text: &[u8]) {
    match field {
        Field::Command | Field::Collection => facts.collection.push(text),
        Field::Db => facts.db.push(text),
        Field::CodeName => facts.code_name.push(text),
        _ => {}
    }
}

/// A number read for `field` (`ok`, `code`, a write error's `code`), of type `ty`, from
/// its bytes `g`.
fn number(facts: &mut Facts, ty: u8, field: Field, g: &[u8]) {
    let num: Option<f64> = match ty {
        0x01 => Some(f64::from_le_bytes(g[..8].try_into().unwrap_or_default())),
        0x10 => Some(f64::from(le32(g) as i32)),
        0x12 => Some(i64::from_le_bytes(g[..8].try_into().unwrap_or_default()) as f64),
        0x08 => Some(f64::from(g[0])),
        _ => None,
    };
    match (field, num) {
        (Field::Ok, Some(v)) => facts.ok = Some(v != 0.0),
        (Field::Code, Some(v)) if v.is_finite() => facts.code = Some(v as i64),
        (Field::WriteCode, Some(v)) if v.is_finite() => facts.write_error_code = Some(v as i64),
        _ => {}
    }
}

/// What the framer hands out.
#[derive(Debug)]
pub enum Ev<'a> {
    /// A whole message: its header, and what its body says.
    Msg(Header, &'a Facts),
    /// Bytes that are no message: the direction resynchronises.
    Malformed,
}

#[derive(Clone, Copy, Debug)]
enum FSt {
    /// `have` bytes of a header are in `hdr`.
    Header { have: u8 },
    /// The body of a plain message: `left` bytes to come.
    Body { left: u32 },
    /// OP_COMPRESSED: `have` bytes of its 9-byte prefix.
    ZHead { have: u8, left: u32 },
    /// OP_COMPRESSED data: `left` bytes to come.
    ZData { left: u32 },
    /// Framing unknown: looking for a plausible header.
    Lost,
}

/// One direction's message framer.
pub struct Framer {
    st: FSt,
    hdr: [u8; 16],
    head: Header,
    limits: Limits,
    walker: Walker,
    zhead: [u8; 9],
    /// Compressed bytes of a message split over chunks (bounded by `max_decompressed`).
    zbuf: Vec<u8>,
    /// The decompressed body.
    plain: Vec<u8>,
    /// The compressed data is not kept (beyond the bound, or lost in a gap).
    zskip: bool,
    /// Made on the first zlib message (its state is tens of kilobytes).
    zlib: Option<Box<flate2::Decompress>>,
}

impl Framer {
    /// Heap bytes of the buffers (split compressed data, the decompressed body).
    pub fn heap_bytes(&self) -> usize {
        self.zbuf.capacity() + self.plain.capacity()
    }
}

impl Framer {
    pub fn new(limits: Limits) -> Self {
        Framer {
            st: FSt::Header { have: 0 },
            hdr: [0; 16],
            head: Header::default(),
            limits,
            walker: Walker::default(),
            zhead: [0; 9],
            zbuf: Vec::new(),
            plain: Vec::new(),
            zskip: false,
            zlib: None,
        }
    }

    /// Inside a message (part of it read).
    pub fn mid_message(&self) -> bool {
        !matches!(self.st, FSt::Header { have: 0 } | FSt::Lost)
    }

    fn lose_sync(&mut self) {
        self.st = FSt::Lost;
        self.zbuf = Vec::new();
    }

    /// `missing` bytes will never arrive. Inside a body that is longer, only that
    /// message suffers (true); otherwise the framing is lost (false).
    pub fn gap(&mut self, missing: u64) -> bool {
        match &mut self.st {
            FSt::Body { left } if u64::from(*left) >= missing => {
                *left -= missing as u32;
                self.walker.gap(missing as u32);
                true
            }
            FSt::ZData { left } if u64::from(*left) >= missing => {
                *left -= missing as u32;
                self.zskip = true;
                self.zbuf.clear();
                self.walker.facts.gap = true;
                true
            }
            _ => {
                self.lose_sync();
                false
            }
        }
    }

    /// Read `b`, calling `on` for each message and each loss of framing.
    pub fn feed(&mut self, b: &[u8], on: &mut impl FnMut(Ev<'_>)) {
        let mut pos = 0;
        while pos < b.len() {
            match self.st {
                FSt::Lost => {
                    let max = self.limits.max_message;
                    let found = (pos..b.len().saturating_sub(HEADER - 1))
                        .find(|&i| Header::read(&b[i..]).is_some_and(|h| h.plausible(max)));
                    match found {
                        Some(i) => {
                            pos = i;
                            self.st = FSt::Header { have: 0 };
                        }
                        // A later chunk that starts at a message (as segments mostly do)
                        // resynchronises.
                        None => return,
                    }
                }
                FSt::Header { have } => {
                    let have = have as usize;
                    let h = if have == 0 && b.len() - pos >= HEADER {
                        let h = Header::read(&b[pos..]);
                        pos += HEADER;
                        h
                    } else {
                        let take = (HEADER - have).min(b.len() - pos);
                        self.hdr[have..have + take].copy_from_slice(&b[pos..pos + take]);
                        pos += take;
                        if have + take < HEADER {
                            self.st = FSt::Header {
                                have: (have + take) as u8,
                            };
                            return;
                        }
                        Header::read(&self.hdr)
                    };
                    let Some(h) = h else { return };
                    // An opcode no version sends is still framed by its length (counted by
                    // the decoder), as long as the length is believable and short: a long
                    // one is more likely bytes that are no header, which would be skipped
                    // blindly.
                    let unknown_too_long = !known_opcode(h.opcode) && h.len > MAX_UNKNOWN;
                    if h.len < h.min_len() || h.len > self.limits.max_message || unknown_too_long {
                        self.lose_sync();
                        on(Ev::Malformed);
                        continue;
                    }
                    self.head = h;
                    let left = h.len - HEADER as u32;
                    if h.opcode == OP_COMPRESSED {
                        self.st = FSt::ZHead { have: 0, left };
                    } else {
                        self.walker.facts.compressor = None;
                        // A command or reply whole in this chunk (the usual case): read in
                        // one pass.
                        let rest = &b[pos..];
                        if h.opcode == OP_MSG
                            && let Some(body) = rest.get(..left as usize)
                            && self.walker.whole_msg(body)
                        {
                            pos += body.len();
                            self.end(on);
                            continue;
                        }
                        self.walker.start(h.opcode, left);
                        self.st = FSt::Body { left };
                        if left == 0 {
                            self.end(on);
                        }
                    }
                }
                FSt::Body { left } => {
                    let n = (left as usize).min(b.len() - pos);
                    self.walker.feed(&b[pos..pos + n]);
                    pos += n;
                    let left = left - n as u32;
                    self.st = FSt::Body { left };
                    if left == 0 {
                        self.end(on);
                    }
                }
                FSt::ZHead { have, left } => {
                    let have = have as usize;
                    let take = (9 - have).min(b.len() - pos);
                    self.zhead[have..have + take].copy_from_slice(&b[pos..pos + take]);
                    pos += take;
                    let left = left - take as u32;
                    if have + take < 9 {
                        self.st = FSt::ZHead {
                            have: (have + take) as u8,
                            left,
                        };
                        continue;
                    }
                    let size = le32(&self.zhead[4..]);
                    self.zbuf.clear();
                    self.zskip = size > self.limits.max_decompressed
                        || left > self.limits.max_decompressed;
                    self.walker
                        .facts
                        .reset(le32(&self.zhead), Some(self.zhead[8]));
                    self.walker.facts.limit = self.zskip;
                    self.st = FSt::ZData { left };
                    if left == 0 {
                        self.zend(&[], on);
                    }
                }
                FSt::ZData { left } => {
                    let n = (left as usize).min(b.len() - pos);
                    let chunk = &b[pos..pos + n];
                    pos += n;
                    let left = left - n as u32;
                    self.st = FSt::ZData { left };
                    if left == 0 && self.zbuf.is_empty() && !self.zskip {
                        // Whole in this chunk: decompressed from the input itself.
                        self.zend(chunk, on);
                        continue;
                    }
                    if !self.zskip {
                        self.zbuf.extend_from_slice(chunk);
                    }
                    if left == 0 {
                        let data = std::mem::take(&mut self.zbuf);
                        self.zend(&data, on);
                        self.zbuf = data;
                        self.zbuf.clear();
                        self.trim();
                    }
                }
            }
        }
    }

    /// Bytes held by the decompression buffers.
    pub fn buffered(&self) -> usize {
        self.plain.capacity() + self.zbuf.capacity()
    }

    /// Free the decompression buffers a large message left.
    fn trim(&mut self) {
        if self.plain.capacity() > KEEP_BUFFER {
            self.plain = Vec::new();
        }
        if self.zbuf.capacity() > KEEP_BUFFER {
            self.zbuf = Vec::new();
        }
    }

    /// A plain message's body is complete.
    fn end(&mut self, on: &mut impl FnMut(Ev<'_>)) {
        self.st = FSt::Header { have: 0 };
        on(Ev::Msg(self.head, &self.walker.facts));
    }

    /// An OP_COMPRESSED message's data is complete: decompress it (unless skipped) and
    /// read the original body.
    fn zend(&mut self, data: &[u8], on: &mut impl FnMut(Ev<'_>)) {
        self.st = FSt::Header { have: 0 };
        let op = le32(&self.zhead);
        let size = le32(&self.zhead[4..]);
        let id = self.zhead[8];
        if !self.zskip {
            let max = self.limits.max_decompressed;
            match decompress(id, data, size as usize, max, &mut self.plain, &mut self.zlib) {
                Ok(()) => {
                    if !(op == OP_MSG && self.walker.whole_msg(&self.plain)) {
                        self.walker.start(op, size);
                        self.walker.feed(&self.plain);
                    }
                }
                Err(()) => self.walker.facts.undecodable = true,
            }
        }
        on(Ev::Msg(self.head, &self.walker.facts));
        self.trim();
    }
}

/// Decompress `data` with compressor `id` into `out`, which must come to exactly `size`
/// bytes (the caller bounds `size`; `max` bounds zstd's window, which encoders may size
/// beyond a small message).
fn decompress(
    id: u8,
    data: &[u8],
    size: usize,
    max: u32,
    out: &mut Vec<u8>,
    zlib: &mut Option<Box<flate2::Decompress>>,
) -> Result<(), ()> {
    out.clear();
    match id {
        0 => {
            if data.len() != size {
                return Err(());
            }
            out.extend_from_slice(data);
        }
        1 => {
            if snap::raw::decompress_len(data).map_err(|_| ())? != size {
                return Err(());
            }
            out.resize(size, 0);
            let n = snap::raw::Decoder::new()
                .decompress(data, out)
                .map_err(|_| ())?;
            if n != size {
                return Err(());
            }
        }
        2 => {
            let zlib = zlib.get_or_insert_with(|| Box::new(flate2::Decompress::new(true)));
            zlib.reset(true);
            // Exactly `size` of room: a stream that would write more stops there.
            out.reserve_exact(size + 1);
            let st = zlib
                .decompress_vec(data, out, flate2::FlushDecompress::Finish)
                .map_err(|_| ())?;
            if st != flate2::Status::StreamEnd || out.len() != size {
                return Err(());
            }
        }
        3 => {
            let mut d = ruzstd::decoding::StreamingDecoder::new_with_max_window_size(
                data,
                u64::from(max).max(1 << 10),
            )
            .map_err(|_| ())?;
            out.reserve_exact(size);
            // One byte more than promised is enough to know it is wrong.
            (&mut d)
                .take(size as u64 + 1)
                .read_to_end(out)
                .map_err(|_| ())?;
            if out.len() != size {
                return Err(());
            }
        }
        _ => return Err(()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `classify`'s quick filter must pass every element the full classification reads: a
    /// name added there and not to the filter would be ignored without a word.
    #[test]
    fn the_quick_filter_passes_every_name_read() {
        let names: &[&[u8]] = &[
            b"$db", b"ok", b"code", b"codeName", b"$err", b"writeErrors",
            b"writeConcernError", b"cursor", b"collection", b"firstBatch", b"nextBatch",
            b"$query", b"find", b"insert", b"filter", b"lsid", b"n", b"id", b"ns", b"o",
            b"c", b"w", b"$", b"okay", b"cursors", b"", b"0", b"1",
        ];
        for ctx in [Ctx::Top, Ctx::Cursor, Ctx::WriteErrors, Ctx::WriteError] {
            for &name in names {
                for ty in [0x01, 0x02, 0x03, 0x04, 0x10] {
                    for index in [0, 1, 5] {
                        let (mut quick, mut full) = (Facts::default(), Facts::default());
                        quick.reset(OP_MSG, None);
                        full.reset(OP_MSG, None);
                        full.command.push(b"getMore");
                        quick.command.push(b"getMore");
                        let q = classify(&mut quick, ctx, index, ty, name);
                        let f = classify_named(&mut full, ctx, index, ty, name);
                        let what = format!("{ctx:?} {:?} {ty} {index}", name.escape_ascii());
                        assert_eq!(q, f, "{what}");
                        assert_eq!(format!("{quick:?}"), format!("{full:?}"), "{what}");
                    }
                }
            }
        }
    }
}
