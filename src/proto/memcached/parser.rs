//! Memcached's wire formats, read as a stream: the text protocol (the classic commands and
//! the meta commands `mg`/`ms`/`md`/`ma`/`mn`/`me`) and the binary protocol, and the 8-byte
//! frame header of UDP datagrams.
//!
//! A [`Parser`] reads one direction of a connection, in chunks split anywhere, and hands
//! out one typed message at a time ([`Request`] or [`Reply`]). Nothing is buffered but a
//! few short things copied into fixed inline buffers: the token being read (the command
//! word, a number, a meta flag: 40 bytes), a binary header split across chunks (24 bytes),
//! an opaque token (32 bytes) and, only when keys are wanted (`redact = false`), the first
//! key (250 bytes, allocated once per parser). Values are skipped by their length, never
//! held, so a line of a million keys or a value of a gigabyte costs no memory; a text line
//! whose whole token sits in the chunk is read in place.
//!
//! The parser knows message shapes, not pairing: a `VALUE` line is one reply, `END`
//! another; which request they answer is the state machine's business (`super`).
//!
//! Malformed input is a [`ParseError`] event, never a panic. After one, and after a gap,
//! the parser resynchronises: text resumes at the next line that parses as a command
//! (client side) or a reply (server side) memcached knows; binary at the next plausible
//! 24-byte header.

use base64::Engine;
use memchr::{memchr, memchr2};

/// Longest key memcached accepts.
pub const KEY_MAX: usize = 250;
/// Longest meta opaque token (`O` flag).
pub const OPAQUE_MAX: usize = 32;
/// Binary protocol header.
pub const BIN_HEADER_LEN: usize = 24;
/// UDP frame header: request id, sequence number, datagram count, reserved.
pub const UDP_HEADER_LEN: usize = 8;
/// Longest text line read, retrieval requests (`get` and friends, any number of keys)
/// excepted. memcached itself refuses non-retrieval lines over 2048 bytes.
pub const MAX_LINE: usize = 8 * 1024;
/// Binary magic bytes.
pub const REQUEST_MAGIC: u8 = 0x80;
pub const RESPONSE_MAGIC: u8 = 0x81;
/// Longest extras section of any binary command (INCREMENT: delta, initial, expiration).
const MAX_EXTRAS: u8 = 20;
/// Bytes of a token kept: command words, numbers (20 digits), meta flags with an opaque.
const TOK_CAP: usize = 40;

/// Which side of the connection a parser reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// Client to server: commands.
    Requests,
    /// Server to client: replies.
    Replies,
}

/// The protocol family of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    Text,
    Meta,
    Binary,
}

impl Proto {
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Text => "text",
            Proto::Meta => "meta",
            Proto::Binary => "binary",
        }
    }
}

/// A command: a text or meta command word, or a binary opcode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    Get,
    Gets,
    Gat,
    Gats,
    Set,
    Add,
    Replace,
    Append,
    Prepend,
    Cas,
    Delete,
    Incr,
    Decr,
    Touch,
    Stats,
    Version,
    FlushAll,
    Verbosity,
    Quit,
    Shutdown,
    CacheMemlimit,
    Slabs,
    Lru,
    LruCrawler,
    Watch,
    Misbehave,
    Mg,
    Ms,
    Md,
    Ma,
    Mn,
    Me,
    /// A text line that names no command memcached knows (the server answers `ERROR`).
    Unknown,
    /// A binary protocol opcode.
    Binary(u8),
}

/// What a command does, for pairing and hit/miss accounting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Looks keys up: get, gets, mg, binary GET/GETQ/GETK/GETKQ (memcached's `get_hits`).
    Get,
    /// Looks keys up and touches them: gat, gats, binary GAT family (`touch_hits`).
    Gat,
    /// set, add, replace, append, prepend, ms, binary SET family.
    Store,
    Cas,
    Delete,
    /// incr, decr, ma, binary INCREMENT/DECREMENT.
    Arith,
    Touch,
    /// Answered by many lines up to `END` (`stats`, `lru_crawler metadump`).
    Listing,
    /// Binary STAT: one reply per statistic, then an empty one.
    BinStat,
    /// mn, binary NOOP.
    Noop,
    Version,
    Quit,
    /// me (meta debug).
    Debug,
    Other,
}

const TEXT_COMMANDS: [(&[u8], Command); 32] = [
    (b"get", Command::Get),
    (b"gets", Command::Gets),
    (b"gat", Command::Gat),
    (b"gats", Command::Gats),
    (b"set", Command::Set),
    (b"add", Command::Add),
    (b"replace", Command::Replace),
    (b"append", Command::Append),
    (b"prepend", Command::Prepend),
    (b"cas", Command::Cas),
    (b"delete", Command::Delete),
    (b"incr", Command::Incr),
    (b"decr", Command::Decr),
    (b"touch", Command::Touch),
    (b"stats", Command::Stats),
    (b"version", Command::Version),
    (b"flush_all", Command::FlushAll),
    (b"verbosity", Command::Verbosity),
    (b"quit", Command::Quit),
    (b"shutdown", Command::Shutdown),
    (b"cache_memlimit", Command::CacheMemlimit),
    (b"slabs", Command::Slabs),
    (b"lru", Command::Lru),
    (b"lru_crawler", Command::LruCrawler),
    (b"watch", Command::Watch),
    (b"misbehave", Command::Misbehave),
    (b"mg", Command::Mg),
    (b"ms", Command::Ms),
    (b"md", Command::Md),
    (b"ma", Command::Ma),
    (b"mn", Command::Mn),
    (b"me", Command::Me),
];

/// Longest command or reply word (`cache_memlimit`).
pub const TEXT_WORD_MAX: usize = 14;

const REPLY_WORDS: [&[u8]; 31] = [
    b"VALUE",
    b"END",
    b"STORED",
    b"NOT_STORED",
    b"EXISTS",
    b"NOT_FOUND",
    b"DELETED",
    b"TOUCHED",
    b"OK",
    b"RESET",
    b"VERSION",
    b"STAT",
    b"ITEM",
    b"PREFIX",
    b"BUSY",
    b"BADCLASS",
    b"NOSPARE",
    b"NOTFULL",
    b"UNSAFE",
    b"SAME",
    b"ERROR",
    b"CLIENT_ERROR",
    b"SERVER_ERROR",
    b"VA",
    b"HD",
    b"EN",
    b"NF",
    b"NS",
    b"EX",
    b"MN",
    b"ME",
];

/// Whether `w` begins a command word (client side) or a reply word (server side).
pub fn is_word_prefix(w: &[u8], side: Side) -> bool {
    match side {
        Side::Requests => TEXT_COMMANDS.iter().any(|(n, _)| n.starts_with(w)),
        Side::Replies => REPLY_WORDS.iter().any(|n| n.starts_with(w)),
    }
}

impl Command {
    /// The command a text line starts with (case-sensitive, as memcached reads it).
    pub fn from_word(w: &[u8]) -> Command {
        TEXT_COMMANDS
            .iter()
            .find(|(n, _)| *n == w)
            .map_or(Command::Unknown, |(_, c)| *c)
    }

    /// `db.operation.name`: the text or meta command as sent (`get`, `mg`), the binary
    /// opcode's name from the binary protocol specification (`GET`, `GETKQ`, `SETQ`).
    /// `None` for a binary opcode podtap does not know.
    pub fn name(self) -> Option<&'static str> {
        if let Command::Binary(op) = self {
            return opcode_name(op);
        }
        if self == Command::Unknown {
            return Some("unknown");
        }
        TEXT_COMMANDS
            .iter()
            .find(|(_, c)| *c == self)
            .and_then(|(n, _)| std::str::from_utf8(n).ok())
    }

    pub fn proto(self) -> Proto {
        match self {
            Command::Binary(_) => Proto::Binary,
            Command::Mg | Command::Ms | Command::Md | Command::Ma | Command::Mn | Command::Me => {
                Proto::Meta
            }
            _ => Proto::Text,
        }
    }

    pub fn class(self) -> Class {
        match self {
            Command::Get | Command::Gets | Command::Mg => Class::Get,
            Command::Gat | Command::Gats => Class::Gat,
            Command::Set
            | Command::Add
            | Command::Replace
            | Command::Append
            | Command::Prepend
            | Command::Ms => Class::Store,
            Command::Cas => Class::Cas,
            Command::Delete | Command::Md => Class::Delete,
            Command::Incr | Command::Decr | Command::Ma => Class::Arith,
            Command::Touch => Class::Touch,
            Command::Stats | Command::LruCrawler => Class::Listing,
            Command::Version => Class::Version,
            Command::Quit => Class::Quit,
            Command::Mn => Class::Noop,
            Command::Me => Class::Debug,
            Command::Binary(op) => match op {
                0x00 | 0x09 | 0x0c | 0x0d | 0x30 => Class::Get,
                0x1d | 0x1e | 0x23 | 0x24 => Class::Gat,
                0x01..=0x03 | 0x0e | 0x0f | 0x11..=0x13 | 0x19 | 0x1a | 0x31..=0x36 => Class::Store,
                0x04 | 0x14 | 0x37 | 0x38 => Class::Delete,
                0x05 | 0x06 | 0x15 | 0x16 | 0x39..=0x3c => Class::Arith,
                0x1c => Class::Touch,
                0x10 => Class::BinStat,
                0x0a => Class::Noop,
                0x0b => Class::Version,
                0x07 | 0x17 => Class::Quit,
                _ => Class::Other,
            },
            _ => Class::Other,
        }
    }

    /// Commands that take a trailing `noreply`.
    fn takes_noreply(self) -> bool {
        matches!(
            self,
            Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas
                | Command::Delete
                | Command::Incr
                | Command::Decr
                | Command::Touch
                | Command::FlushAll
                | Command::Verbosity
                | Command::CacheMemlimit
        )
    }
}

/// The name of a binary opcode (memcached's binary protocol, range operations included).
pub fn opcode_name(op: u8) -> Option<&'static str> {
    Some(match op {
        0x00 => "GET",
        0x01 => "SET",
        0x02 => "ADD",
        0x03 => "REPLACE",
        0x04 => "DELETE",
        0x05 => "INCREMENT",
        0x06 => "DECREMENT",
        0x07 => "QUIT",
        0x08 => "FLUSH",
        0x09 => "GETQ",
        0x0a => "NOOP",
        0x0b => "VERSION",
        0x0c => "GETK",
        0x0d => "GETKQ",
        0x0e => "APPEND",
        0x0f => "PREPEND",
        0x10 => "STAT",
        0x11 => "SETQ",
        0x12 => "ADDQ",
        0x13 => "REPLACEQ",
        0x14 => "DELETEQ",
        0x15 => "INCREMENTQ",
        0x16 => "DECREMENTQ",
        0x17 => "QUITQ",
        0x18 => "FLUSHQ",
        0x19 => "APPENDQ",
        0x1a => "PREPENDQ",
        0x1b => "VERBOSITY",
        0x1c => "TOUCH",
        0x1d => "GAT",
        0x1e => "GATQ",
        0x20 => "SASL_LIST_MECHS",
        0x21 => "SASL_AUTH",
        0x22 => "SASL_STEP",
        0x23 => "GATK",
        0x24 => "GATKQ",
        0x30 => "RGET",
        0x31 => "RSET",
        0x32 => "RSETQ",
        0x33 => "RAPPEND",
        0x34 => "RAPPENDQ",
        0x35 => "RPREPEND",
        0x36 => "RPREPENDQ",
        0x37 => "RDELETE",
        0x38 => "RDELETEQ",
        0x39 => "RINCR",
        0x3a => "RINCRQ",
        0x3b => "RDECR",
        0x3c => "RDECRQ",
        _ => return None,
    })
}

/// Quiet binary opcodes: no reply on success (a miss, for the gets).
pub fn opcode_quiet(op: u8) -> bool {
    matches!(
        op,
        0x09 | 0x0d | 0x11..=0x1a | 0x1e | 0x24 | 0x32 | 0x34 | 0x36 | 0x38 | 0x3a | 0x3c
    )
}

/// The name of a binary response status (memcached's `protocol_binary.h`); `None` for
/// success and unknown codes.
pub fn status_name(status: u16) -> Option<&'static str> {
    Some(match status {
        0x01 => "KEY_ENOENT",
        0x02 => "KEY_EEXISTS",
        0x03 => "E2BIG",
        0x04 => "EINVAL",
        0x05 => "NOT_STORED",
        0x06 => "DELTA_BADVAL",
        0x07 => "NOT_MY_VBUCKET",
        0x08 | 0x20 => "AUTH_ERROR",
        0x09 | 0x21 => "AUTH_CONTINUE",
        0x81 => "UNKNOWN_COMMAND",
        0x82 => "ENOMEM",
        0x83 => "NOT_SUPPORTED",
        0x84 => "EINTERNAL",
        0x85 => "EBUSY",
        0x86 => "ETMPFAIL",
        _ => return None,
    })
}

/// Statuses that are a normal outcome of a cache operation, not a failure: success, key
/// not found (a miss), key exists (a CAS conflict, an add of a present key), not stored,
/// and the continue step of SASL authentication.
pub fn status_is_outcome(status: u16) -> bool {
    matches!(status, 0x00 | 0x01 | 0x02 | 0x05 | 0x09 | 0x21)
}

/// A reply: its first word, or the binary protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyKind {
    /// `VALUE <key> <flags> <bytes> [<cas>]` and its data block: one hit.
    Value,
    End,
    Stored,
    NotStored,
    Exists,
    NotFound,
    Deleted,
    Touched,
    Ok,
    Reset,
    Version,
    Stat,
    /// A line of a listing other than `STAT`: `ITEM` (cachedump), `PREFIX` (detail dump),
    /// `key=...` (lru_crawler metadump).
    Item,
    /// The new value of an incr/decr.
    Number,
    /// The other status words of administrative commands (`BUSY`, `BADCLASS`, ...).
    Status,
    Error,
    ClientError,
    ServerError,
    /// Meta: `VA <size> <flags>*` and its data block.
    Va,
    Hd,
    En,
    Nf,
    Ns,
    Ex,
    Mn,
    Me,
    /// A line memcached does not send: after a loss of sync, or a server podtap does not
    /// know.
    Other,
    /// A binary response (see `Reply::opcode`, `Reply::status`).
    Binary,
}

impl ReplyKind {
    fn from_word(w: &[u8]) -> ReplyKind {
        match w {
            b"VALUE" => ReplyKind::Value,
            b"END" => ReplyKind::End,
            b"STORED" => ReplyKind::Stored,
            b"NOT_STORED" => ReplyKind::NotStored,
            b"EXISTS" => ReplyKind::Exists,
            b"NOT_FOUND" => ReplyKind::NotFound,
            b"DELETED" => ReplyKind::Deleted,
            b"TOUCHED" => ReplyKind::Touched,
            b"OK" => ReplyKind::Ok,
            b"RESET" => ReplyKind::Reset,
            b"VERSION" => ReplyKind::Version,
            b"STAT" => ReplyKind::Stat,
            b"ITEM" | b"PREFIX" => ReplyKind::Item,
            b"BUSY" | b"BADCLASS" | b"NOSPARE" | b"NOTFULL" | b"UNSAFE" | b"SAME" => {
                ReplyKind::Status
            }
            b"ERROR" => ReplyKind::Error,
            b"CLIENT_ERROR" => ReplyKind::ClientError,
            b"SERVER_ERROR" => ReplyKind::ServerError,
            b"VA" => ReplyKind::Va,
            b"HD" => ReplyKind::Hd,
            b"EN" => ReplyKind::En,
            b"NF" => ReplyKind::Nf,
            b"NS" => ReplyKind::Ns,
            b"EX" => ReplyKind::Ex,
            b"MN" => ReplyKind::Mn,
            b"ME" => ReplyKind::Me,
            _ if w.starts_with(b"key=") => ReplyKind::Item,
            _ if !w.is_empty() && w.len() <= 20 && w.iter().all(u8::is_ascii_digit) => {
                ReplyKind::Number
            }
            _ => ReplyKind::Other,
        }
    }

    /// The word as memcached writes it (`db.response.status_code` of text replies).
    pub fn word(self) -> &'static str {
        match self {
            ReplyKind::Value => "VALUE",
            ReplyKind::End => "END",
            ReplyKind::Stored => "STORED",
            ReplyKind::NotStored => "NOT_STORED",
            ReplyKind::Exists => "EXISTS",
            ReplyKind::NotFound => "NOT_FOUND",
            ReplyKind::Deleted => "DELETED",
            ReplyKind::Touched => "TOUCHED",
            ReplyKind::Ok => "OK",
            ReplyKind::Reset => "RESET",
            ReplyKind::Version => "VERSION",
            ReplyKind::Stat => "STAT",
            ReplyKind::Item => "ITEM",
            ReplyKind::Number => "NUMBER",
            ReplyKind::Status => "STATUS",
            ReplyKind::Error => "ERROR",
            ReplyKind::ClientError => "CLIENT_ERROR",
            ReplyKind::ServerError => "SERVER_ERROR",
            ReplyKind::Va => "VA",
            ReplyKind::Hd => "HD",
            ReplyKind::En => "EN",
            ReplyKind::Nf => "NF",
            ReplyKind::Ns => "NS",
            ReplyKind::Ex => "EX",
            ReplyKind::Mn => "MN",
            ReplyKind::Me => "ME",
            ReplyKind::Other => "OTHER",
            ReplyKind::Binary => "BINARY",
        }
    }

    pub fn is_error(self) -> bool {
        matches!(
            self,
            ReplyKind::Error | ReplyKind::ClientError | ReplyKind::ServerError
        )
    }

    pub fn proto(self) -> Proto {
        match self {
            ReplyKind::Va
            | ReplyKind::Hd
            | ReplyKind::En
            | ReplyKind::Nf
            | ReplyKind::Ns
            | ReplyKind::Ex
            | ReplyKind::Mn
            | ReplyKind::Me => Proto::Meta,
            ReplyKind::Binary => Proto::Binary,
            _ => Proto::Text,
        }
    }

    /// Words a resynchronising server side accepts as the start of a reply: the ones
    /// memcached sends (a bare number or an unknown word could be anything).
    fn known(self) -> bool {
        !matches!(
            self,
            ReplyKind::Other | ReplyKind::Number | ReplyKind::Binary
        )
    }
}

/// A meta opaque token (`O` flag, up to 32 bytes) or a binary opaque (4 bytes).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Opaque {
    len: u8,
    bytes: [u8; OPAQUE_MAX],
}

impl std::fmt::Debug for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Opaque({:?})", String::from_utf8_lossy(self.as_bytes()))
    }
}

impl Opaque {
    /// `None` when longer than 32 bytes.
    pub fn new(b: &[u8]) -> Option<Opaque> {
        let mut o = Opaque::default();
        o.bytes.get_mut(..b.len())?.copy_from_slice(b);
        o.len = b.len() as u8;
        Some(o)
    }

    pub fn binary(v: u32) -> Opaque {
        let mut o = Opaque::default();
        o.bytes[..4].copy_from_slice(&v.to_be_bytes());
        o.len = 4;
        o
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    pub fn is_some(&self) -> bool {
        self.len > 0
    }
}

/// One command, once its line (or header) and its data block (or body) were read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    /// Keys named: several for the text retrieval commands, else one (zero for commands
    /// without a key).
    pub keys: u32,
    /// Text `noreply`, or a binary opcode that never answers (QUITQ): nothing comes back.
    pub noreply: bool,
    /// Meta `q` flag, or a quiet binary opcode: no reply on success (for gets: on a miss).
    pub quiet: bool,
    /// The arguments have the shape memcached accepts: token count, numbers, key length;
    /// binary: the extras and key lengths the opcode takes.
    pub valid: bool,
    /// A control character inside a text line (clients never send one).
    pub ctl: bool,
    /// Meta `O` token or binary opaque; empty when absent.
    pub opaque: Opaque,
    /// Bytes of the data block (text, meta) or value (binary).
    pub value_len: u64,
    /// Bytes on the wire: line or header, data or body.
    pub wire_len: u64,
    /// Bytes of the message were lost in a gap (the framing held).
    pub gap: bool,
    /// The value is longer than the parser's maximum: it was not skipped, and the parser
    /// is resynchronising after the line or header.
    pub too_large: bool,
}

/// One reply line (with its data block) or one binary response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    pub kind: ReplyKind,
    /// Meta `O` token or binary opaque; empty when absent.
    pub opaque: Opaque,
    /// Binary: the opcode answered, the status, and whether key and body are empty (the
    /// end of a STAT listing).
    pub opcode: u8,
    pub status: u16,
    pub empty: bool,
    pub value_len: u64,
    pub wire_len: u64,
    pub gap: bool,
    pub ctl: bool,
    /// As for [`Request::too_large`].
    pub too_large: bool,
    /// A bare number read while resynchronising: the parser stays resynchronising unless
    /// told [`Parser::confirm_sync`].
    pub tentative: bool,
}

/// Input that is not memcached as podtap knows it. The parser resynchronises after each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// A reply line memcached does not send, or a data block not ended by CRLF.
    BadLine,
    /// A binary header with the wrong magic, an impossible length or a data type.
    BadHeader,
    /// A text line longer than [`MAX_LINE`].
    LineTooLong,
}

/// See [`Parser::progress`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partial<'a> {
    Nothing,
    /// A message read up to its data block or body.
    Message(&'a Event),
    /// A line whose first word is not complete yet: its bytes so far, and whether a
    /// control character was among them.
    FirstWord(&'a [u8], bool),
    /// A line whose first word is complete, and whether something was wrong so far.
    Words {
        command: Command,
        reply: ReplyKind,
        ctl: bool,
    },
    /// The first bytes of a binary header.
    Header(&'a [u8]),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Request(Request),
    Reply(Reply),
    Error(ParseError),
}

/// The fixed 24-byte binary header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BinHeader {
    pub magic: u8,
    pub opcode: u8,
    pub key_len: u16,
    pub extras_len: u8,
    pub data_type: u8,
    /// vbucket id in a request, status in a response.
    pub status: u16,
    pub body_len: u32,
    pub opaque: u32,
    pub cas: u64,
}

impl BinHeader {
    pub fn parse(b: &[u8]) -> Option<BinHeader> {
        let h: &[u8; BIN_HEADER_LEN] = b.get(..BIN_HEADER_LEN)?.try_into().ok()?;
        let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let be32 = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]);
        Some(BinHeader {
            magic: h[0],
            opcode: h[1],
            key_len: be16(2),
            extras_len: h[4],
            data_type: h[5],
            status: be16(6),
            body_len: be32(8),
            opaque: be32(12),
            cas: (be32(16) as u64) << 32 | be32(20) as u64,
        })
    }

    /// Value bytes: the body after extras and key (`None` when they do not fit in it).
    pub fn value_len(&self) -> Option<u64> {
        (self.body_len as u64).checked_sub(self.key_len as u64 + self.extras_len as u64)
    }

    /// The lengths add up, the key fits memcached's limit and the data type is raw bytes.
    pub fn sane(&self, side: Side) -> bool {
        let magic = match side {
            Side::Requests => REQUEST_MAGIC,
            Side::Replies => RESPONSE_MAGIC,
        };
        self.magic == magic
            && self.data_type == 0
            && self.key_len as usize <= KEY_MAX
            && self.extras_len <= MAX_EXTRAS
            && self.value_len().is_some()
    }

    /// A request whose extras and key are what its opcode takes (memcached's binary
    /// protocol), or a response with a defined status: strict enough to tell memcached
    /// from other binary protocols whose first byte happens to be 0x80 or 0x81.
    pub fn strict(&self, side: Side) -> bool {
        if !self.sane(side) || opcode_name(self.opcode).is_none() {
            return false;
        }
        let (e, k, v) = (
            self.extras_len,
            self.key_len,
            self.value_len().unwrap_or(u64::MAX),
        );
        match side {
            Side::Requests => match self.opcode {
                // GET family, DELETE.
                0x00 | 0x09 | 0x0c | 0x0d | 0x04 | 0x14 => e == 0 && k > 0 && v == 0,
                // SET, ADD, REPLACE.
                0x01..=0x03 | 0x11..=0x13 => e == 8 && k > 0,
                0x05 | 0x06 | 0x15 | 0x16 => e == 20 && k > 0 && v == 0,
                // QUIT, NOOP, VERSION and their quiet forms.
                0x07 | 0x0a | 0x0b | 0x17 => e == 0 && k == 0 && v == 0,
                0x08 | 0x18 => (e == 0 || e == 4) && k == 0 && v == 0,
                0x0e | 0x0f | 0x19 | 0x1a => e == 0 && k > 0,
                0x10 => e == 0 && v == 0,
                0x1b => e == 4 && k == 0 && v == 0,
                0x1c | 0x1d | 0x1e | 0x23 | 0x24 => e == 4 && k > 0 && v == 0,
                0x20 => e == 0 && k == 0 && v == 0,
                0x21 | 0x22 => e == 0 && k > 0,
                _ => true,
            },
            Side::Replies => status_name(self.status).is_some() || self.status == 0,
        }
    }
}

/// The 8-byte frame header of a UDP datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHeader {
    pub request_id: u16,
    pub seq: u16,
    pub total: u16,
}

impl UdpHeader {
    /// The header and the payload after it. The reserved field is not checked: clients
    /// put anything there (packetbeat's test captures do).
    pub fn parse(b: &[u8]) -> Option<(UdpHeader, &[u8])> {
        let h = b.get(..UDP_HEADER_LEN)?;
        let be16 = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        let hdr = UdpHeader {
            request_id: be16(0),
            seq: be16(2),
            total: be16(4),
        };
        let payload = &b[UDP_HEADER_LEN..];
        // memcached answers a quiet binary command over UDP with a bare header counting
        // zero datagrams: "done, nothing to say".
        let empty = hdr.total == 0 && hdr.seq == 0 && payload.is_empty();
        (empty || hdr.seq < hdr.total).then_some((hdr, payload))
    }
}

/// The first key of a request, when keys are wanted.
struct KeyBuf {
    bytes: [u8; KEY_MAX],
    len: usize,
}

/// What the tokens of the current text line said.
#[derive(Clone, Copy)]
struct Fields {
    /// Tokens completed.
    ntok: u32,
    command: Command,
    reply: ReplyKind,
    keys: u32,
    /// The data block length, when the line announces one.
    value_len: Option<u64>,
    /// An argument did not parse (number, key length).
    bad: bool,
    /// The last token was `noreply`.
    last_noreply: bool,
    quiet: bool,
    base64: bool,
    opaque: Opaque,
    ctl: bool,
    /// The first word is one plausible command word (lower case, digits, `_`).
    word_ok: bool,
}

impl Default for Fields {
    fn default() -> Self {
        Fields {
            ntok: 0,
            command: Command::Unknown,
            reply: ReplyKind::Other,
            keys: 0,
            value_len: None,
            bad: false,
            last_noreply: false,
            quiet: false,
            base64: false,
            opaque: Opaque::default(),
            ctl: false,
            word_ok: false,
        }
    }
}

fn parse_u64(t: &[u8]) -> Option<u64> {
    if t.is_empty() || t.len() > 20 {
        return None;
    }
    t.iter().try_fold(0u64, |n, &c| {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(d as u64)
    })
}

fn parse_i64(t: &[u8]) -> Option<i64> {
    match t.split_first() {
        Some((b'-', rest)) => parse_u64(rest)
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(t).and_then(|v| i64::try_from(v).ok()),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Between messages.
    Start,
    /// Inside a text line.
    Line,
    /// Discarding the rest of a line (too long, or rejected while resynchronising).
    SkipLine,
    /// Reading a binary header.
    Header,
    /// Skipping a binary body: `left` bytes.
    Body,
    /// Skipping a text data block: `left` bytes, then the CRLF.
    Data,
    /// Reading the CRLF after a data block; the byte is how many were read.
    Trailer(u8),
}

/// The stream parser of one direction. See the module documentation.
pub struct Parser {
    side: Side,
    state: State,
    /// Looking for the start of a message after a gap or an error: messages are accepted
    /// only when they parse as one memcached sends.
    resync: bool,
    /// The next byte starts a line (after a newline or at the end of a gap).
    line_start: bool,
    /// Which family this direction speaks, once a message showed it.
    binary: Option<bool>,
    /// The current token: its first bytes and its full length.
    tok: [u8; TOK_CAP],
    tok_len: usize,
    line_len: usize,
    fields: Fields,
    hdr: [u8; BIN_HEADER_LEN],
    hdr_len: usize,
    /// Bytes still to skip in a body or data block.
    left: u64,
    /// Binary body: extras bytes still ahead of the key, key bytes still to read.
    extras_left: u64,
    key_left: u64,
    /// The message whose data block or body is being skipped.
    msg: Option<Event>,
    /// Bytes of the current message so far.
    wire: u64,
    gap: bool,
    /// Nothing read yet: the first line may be a command memcached does not know (the
    /// server answers it ERROR), as long as it is a lone plausible word.
    pristine: bool,
    /// Resynchronising, the line under way cannot start a message (its first word is
    /// none memcached uses): look for the next start from here.
    abandon: bool,
    max_value: u64,
    key: Option<Box<KeyBuf>>,
}

impl Parser {
    /// A parser for one direction. `max_value`: longest data block or binary value taken
    /// at face value; `keep_key`: copy each request's first key (see [`Parser::key`]).
    pub fn new(side: Side, max_value: u64, keep_key: bool) -> Parser {
        Parser {
            side,
            state: State::Start,
            // Until a first message parses, a flow picked up in the middle of a message is
            // not taken for garbage: the first accepted message is one memcached sends.
            resync: true,
            line_start: true,
            binary: None,
            tok: [0; TOK_CAP],
            tok_len: 0,
            line_len: 0,
            fields: Fields::default(),
            hdr: [0; BIN_HEADER_LEN],
            hdr_len: 0,
            left: 0,
            extras_left: 0,
            key_left: 0,
            msg: None,
            wire: 0,
            gap: false,
            abandon: false,
            pristine: true,
            max_value,
            key: keep_key.then(|| {
                Box::new(KeyBuf {
                    bytes: [0; KEY_MAX],
                    len: 0,
                })
            }),
        }
    }

    /// Between messages: the next byte starts one.
    pub fn idle(&self) -> bool {
        self.state == State::Start && !self.resync
    }

    /// The next byte is not inside a message (it may be skipped while resynchronising).
    pub fn between_messages(&self) -> bool {
        self.state == State::Start
    }

    /// How far the bytes read so far got, for the protocol probe: a message whose data
    /// block is still being skipped, or the state of a line cut short.
    pub fn progress(&self) -> Partial<'_> {
        match self.state {
            State::Data | State::Trailer(_) | State::Body => match &self.msg {
                Some(e) => Partial::Message(e),
                None => Partial::Nothing,
            },
            State::Line if self.fields.ntok == 0 => {
                Partial::FirstWord(&self.tok[..self.tok_len.min(TOK_CAP)], self.fields.ctl)
            }
            State::Line => Partial::Words {
                command: self.fields.command,
                reply: self.fields.reply,
                ctl: self.fields.ctl || self.fields.bad,
            },
            State::Header => Partial::Header(&self.hdr[..self.hdr_len]),
            _ => Partial::Nothing,
        }
    }

    /// Looking for the start of a message.
    pub fn resyncing(&self) -> bool {
        self.resync
    }

    /// The first key of the last request (meta base64 keys decoded), when keys are kept.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref().map(|k| &k.bytes[..k.len])
    }

    /// Forget the message under way and start afresh (a new UDP datagram: each may be
    /// text or binary).
    pub fn reset(&mut self) {
        self.begin_message();
        self.state = State::Start;
        self.resync = false;
        self.line_start = true;
        self.binary = None;
    }

    /// A tentative reply was taken: the stream is in sync again.
    pub fn confirm_sync(&mut self) {
        self.resync = false;
        self.binary = Some(false);
    }

    /// Look for the next message start (bytes were lost at an unknown place, e.g. a UDP
    /// datagram missing from a multi-datagram reply).
    pub fn lose_sync(&mut self) {
        self.pristine = false;
        self.begin_message();
        self.state = State::Start;
        self.resync = true;
        self.line_start = true;
    }

    /// `missing` bytes of this direction will never arrive. Returns true when the framing
    /// survived: the gap fell inside a value (data block or binary body) whose length
    /// says where the next message starts; the message is then marked `gap`. Otherwise
    /// the message under way is dropped and the parser resynchronises on what follows
    /// (a gap usually ends where a segment, and so often a message, starts).
    pub fn gap(&mut self, missing: u64) -> bool {
        match self.state {
            State::Data | State::Body if self.left >= missing && !self.resync => {
                self.left -= missing;
                self.wire += missing;
                self.gap = true;
                // A key cut by the gap is not worth keeping.
                let lost_key = self.key_left.min(missing.saturating_sub(self.extras_left));
                self.extras_left = self.extras_left.saturating_sub(missing);
                self.key_left -= lost_key;
                if let Some(k) = self.key.as_deref_mut()
                    && lost_key > 0
                {
                    k.len = 0;
                }
                true
            }
            _ => {
                self.lose_sync();
                false
            }
        }
    }

    fn begin_message(&mut self) {
        self.tok_len = 0;
        self.line_len = 0;
        self.fields = Fields::default();
        self.hdr_len = 0;
        self.left = 0;
        self.extras_left = 0;
        self.key_left = 0;
        self.msg = None;
        self.wire = 0;
        self.gap = false;
        self.abandon = false;
        if let Some(k) = self.key.as_deref_mut() {
            k.len = 0;
        }
    }

    /// Read from `data` until one message is complete; returns the bytes consumed and the
    /// message, or all of `data` and `None` when it ends inside one. Always consumes at
    /// least one byte when `data` is not empty, unless it returns an event.
    pub fn next(&mut self, data: &[u8]) -> (usize, Option<Event>) {
        let mut at = 0;
        while at < data.len() {
            let rest = &data[at..];
            let (n, ev) = match self.state {
                State::Start => self.start(rest),
                State::Line => self.line(rest),
                State::SkipLine => match memchr(b'\n', rest) {
                    Some(i) => {
                        self.state = State::Start;
                        self.line_start = true;
                        (i + 1, None)
                    }
                    None => (rest.len(), None),
                },
                State::Header => self.header(rest),
                State::Body => self.body(rest),
                State::Data => {
                    let n = self.left.min(rest.len() as u64) as usize;
                    self.left -= n as u64;
                    self.wire += n as u64;
                    if self.left == 0 {
                        self.state = State::Trailer(0);
                    }
                    (n, None)
                }
                State::Trailer(seen) => self.trailer(seen, rest[0]),
            };
            at += n;
            if ev.is_some() {
                return (at, ev);
            }
        }
        (at, None)
    }

    /// The first byte of a message: binary magic or the start of a text line. While
    /// resynchronising, skips to the next line start or magic byte.
    fn start(&mut self, rest: &[u8]) -> (usize, Option<Event>) {
        let magic = match self.side {
            Side::Requests => REQUEST_MAGIC,
            Side::Replies => RESPONSE_MAGIC,
        };
        if self.resync && !self.line_start {
            self.pristine = false;
            // Candidates: the byte after a newline (text), a magic byte (binary).
            let found = match self.binary {
                Some(true) => memchr(magic, rest),
                Some(false) => memchr(b'\n', rest).map(|i| i + 1),
                None => memchr2(b'\n', magic, rest).map(|i| i + (rest[i] == b'\n') as usize),
            };
            return match found {
                Some(i) => {
                    self.line_start = true;
                    (i, None)
                }
                None => (rest.len(), None),
            };
        }
        self.begin_message();
        if !self.resync && self.binary == Some(true) && rest[0] != magic {
            // A binary stream whose next message is not a header: the framing is lost.
            self.lose_sync();
            return (0, Some(Event::Error(ParseError::BadHeader)));
        }
        // In sync, a magic byte where a message starts is binary (no text line starts
        // so); while resynchronising, only on a connection not known to speak text.
        if rest[0] == magic && (!self.resync || self.binary != Some(false)) {
            self.state = State::Header;
        } else if self.resync && self.binary == Some(true) {
            self.line_start = false;
            return (1, None);
        } else {
            self.state = State::Line;
        }
        (0, None)
    }

    fn header(&mut self, rest: &[u8]) -> (usize, Option<Event>) {
        let n = (BIN_HEADER_LEN - self.hdr_len).min(rest.len());
        self.hdr[self.hdr_len..self.hdr_len + n].copy_from_slice(&rest[..n]);
        self.hdr_len += n;
        self.wire += n as u64;
        if self.hdr_len < BIN_HEADER_LEN {
            return (n, None);
        }
        self.pristine = false;
        let Some(h) = BinHeader::parse(&self.hdr) else {
            return (n, None);
        };
        let ok = if self.resync {
            h.strict(self.side)
        } else {
            h.sane(self.side)
        };
        if !ok {
            let was_resyncing = self.resync;
            self.lose_sync();
            // The 24 bytes are dropped: a real header starting inside them is missed, a
            // rare cost of resynchronising on a header split across chunks.
            self.line_start = false;
            return (
                n,
                (!was_resyncing).then_some(Event::Error(ParseError::BadHeader)),
            );
        }
        let value = h.value_len().unwrap_or(0);
        let too_large = value > self.max_value;
        if too_large && self.resync {
            self.lose_sync();
            self.line_start = false;
            return (n, None);
        }
        self.resync = false;
        self.binary = Some(true);
        let ev = match self.side {
            Side::Requests => {
                let quiet = opcode_quiet(h.opcode);
                Event::Request(Request {
                    command: Command::Binary(h.opcode),
                    keys: (h.key_len > 0) as u32,
                    // QUITQ closes the connection without a word.
                    noreply: h.opcode == 0x17,
                    quiet: quiet && h.opcode != 0x17,
                    valid: h.strict(Side::Requests),
                    ctl: false,
                    opaque: Opaque::binary(h.opaque),
                    value_len: value,
                    wire_len: 0,
                    gap: false,
                    too_large,
                })
            }
            Side::Replies => Event::Reply(Reply {
                kind: ReplyKind::Binary,
                opaque: Opaque::binary(h.opaque),
                opcode: h.opcode,
                status: h.status,
                empty: h.key_len == 0 && h.body_len == 0,
                value_len: value,
                wire_len: 0,
                gap: false,
                ctl: false,
                too_large,
                tentative: false,
            }),
        };
        self.msg = Some(ev);
        if too_large {
            // Not believed: handed out without its body, then look for the next header.
            let ev = self.finish();
            self.lose_sync();
            self.line_start = false;
            return (n, ev);
        }
        self.left = h.body_len as u64;
        self.extras_left = h.extras_len as u64;
        self.key_left = if self.side == Side::Requests && self.key.is_some() {
            h.key_len as u64
        } else {
            0
        };
        self.state = State::Body;
        if self.left == 0 {
            return (n, self.finish());
        }
        (n, None)
    }

    fn body(&mut self, rest: &[u8]) -> (usize, Option<Event>) {
        let mut n = self.left.min(rest.len() as u64) as usize;
        if self.key_left > 0 {
            // Extras first, then the key (copied), then the value (skipped).
            let skip = self.extras_left.min(n as u64) as usize;
            self.extras_left -= skip as u64;
            n = skip;
            if self.extras_left == 0 && skip < rest.len() {
                let take = self
                    .key_left
                    .min((rest.len() - skip) as u64)
                    .min(self.left - skip as u64) as usize;
                if let Some(k) = self.key.as_deref_mut() {
                    let room = KEY_MAX - k.len;
                    let c = take.min(room);
                    k.bytes[k.len..k.len + c].copy_from_slice(&rest[skip..skip + c]);
                    k.len += c;
                }
                self.key_left -= take as u64;
                n = skip + take;
            }
        }
        self.left -= n as u64;
        self.wire += n as u64;
        if self.left == 0 {
            return (n, self.finish());
        }
        (n, None)
    }

    fn trailer(&mut self, seen: u8, c: u8) -> (usize, Option<Event>) {
        self.wire += 1;
        // A client's data block is taken by its length whatever ends it (memcached reads
        // `bytes + 2` and answers CLIENT_ERROR when they do not end in CRLF); a server's
        // always ends in CRLF, so anything else there means the framing was lost.
        let want = if seen == 0 { b'\r' } else { b'\n' };
        if c != want && self.side == Side::Replies {
            let ev = (!self.resync).then_some(Event::Error(ParseError::BadLine));
            self.lose_sync();
            self.line_start = c == b'\n';
            return (1, ev);
        }
        if seen == 0 {
            self.state = State::Trailer(1);
            return (1, None);
        }
        (1, self.finish())
    }

    /// The message whose data or body was just skipped is complete.
    fn finish(&mut self) -> Option<Event> {
        self.state = State::Start;
        self.line_start = true;
        let (wire, gap) = (self.wire, self.gap);
        match self.msg.take()? {
            Event::Request(mut r) => {
                r.wire_len = wire;
                r.gap = gap;
                Some(Event::Request(r))
            }
            Event::Reply(mut r) => {
                r.wire_len = wire;
                r.gap = gap;
                Some(Event::Reply(r))
            }
            e => Some(e),
        }
    }

    /// Inside a text line: token by token, up to the newline.
    fn line(&mut self, rest: &[u8]) -> (usize, Option<Event>) {
        let mut at = 0;
        loop {
            let seg = &rest[at..];
            let Some(i) = memchr2(b' ', b'\n', seg) else {
                self.push(seg);
                at += seg.len();
                if self.abandon {
                    return self.abandon_line(at, false);
                }
                return (at, self.check_length());
            };
            let delim = seg[i];
            let mut part = &seg[..i];
            at += i + 1;
            self.line_len += i + 1;
            if delim == b'\n' {
                part = part.strip_suffix(b"\r").unwrap_or(part);
            }
            if self.tok_len == 0 {
                // The whole token is in this chunk: read in place.
                if !part.is_empty() {
                    self.note_ctl(part);
                    self.capture_key(part);
                    self.token(part, part.len());
                }
            } else {
                self.push_no_count(part);
                let mut full = self.tok_len;
                if delim == b'\n' && part.is_empty() && self.last_tok_byte() == Some(b'\r') {
                    // The CR came at the end of the previous chunk.
                    full -= 1;
                }
                let kept = full.min(TOK_CAP);
                let tok = self.tok;
                self.tok_len = 0;
                if full > 0 {
                    self.token(&tok[..kept], full);
                }
            }
            self.tok_len = 0;
            if self.abandon {
                return match delim {
                    b'\n' => self.abandon_line(at, true),
                    _ => self.abandon_line(at - 1, false),
                };
            }
            if delim == b'\n' {
                return (at, self.end_line());
            }
            if let Some(e) = self.check_length() {
                return (at, Some(e));
            }
        }
    }

    /// Resynchronising: whether a line whose first word begins with `w` may be a message.
    fn may_start(&self, w: &[u8]) -> bool {
        (w.len() <= TEXT_WORD_MAX && is_word_prefix(w, self.side))
            || (self.pristine && self.side == Side::Requests && plausible_word(w))
            || (self.side == Side::Replies && w.len() <= 20 && w.iter().all(u8::is_ascii_digit))
    }

    /// Give up the line under way (resynchronising): scanning for a message start goes
    /// on at `at` (a line start when the line ended there), so that a binary header or a
    /// newline inside the line is not missed.
    fn abandon_line(&mut self, at: usize, line_start: bool) -> (usize, Option<Event>) {
        self.abandon = false;
        self.pristine = false;
        self.state = State::Start;
        self.line_start = line_start;
        self.tok_len = 0;
        (at, None)
    }

    /// Bytes of a token that continues past this chunk.
    fn push(&mut self, b: &[u8]) {
        self.line_len += b.len();
        self.push_no_count(b);
    }

    fn push_no_count(&mut self, b: &[u8]) {
        // A CR is a control character only before something other than the newline;
        // the token's last byte decides at its end.
        if self.tok_len > 0 && self.last_tok_byte() == Some(b'\r') && !b.is_empty() {
            self.fields.ctl = true;
        }
        let stripped = b.strip_suffix(b"\r").unwrap_or(b);
        self.note_ctl(stripped);
        if self.tok_len < TOK_CAP {
            let n = (TOK_CAP - self.tok_len).min(b.len());
            self.tok[self.tok_len..self.tok_len + n].copy_from_slice(&b[..n]);
        }
        self.capture_key(b);
        self.tok_len += b.len();
        if self.resync && self.fields.ntok == 0 {
            // (A CR at the end may be the line's end.)
            let w = &self.tok[..self.tok_len.min(TOK_CAP)];
            let w = w.strip_suffix(b"\r").unwrap_or(w);
            if !self.may_start(w) {
                self.abandon = true;
            }
        }
        if self.tok_len <= TOK_CAP {
            return;
        }
        // Past the kept prefix: remember the last byte (is it the CR of the line end?).
        if let Some(&c) = b.last() {
            self.tok[TOK_CAP - 1] = c;
        }
    }

    fn last_tok_byte(&self) -> Option<u8> {
        match self.tok_len {
            0 => None,
            n => Some(self.tok[n.min(TOK_CAP) - 1]),
        }
    }

    fn note_ctl(&mut self, b: &[u8]) {
        if b.iter().any(|&c| c < 0x20 || c == 0x7f) {
            self.fields.ctl = true;
        }
    }

    /// Copy the first key's bytes (token 1, or 2 for gat/gats), when keys are kept.
    fn capture_key(&mut self, b: &[u8]) {
        let Some(k) = self.key.as_deref_mut() else {
            return;
        };
        let f = &self.fields;
        let key_tok = match f.command {
            Command::Gat | Command::Gats => 2,
            Command::Mn | Command::Unknown => return,
            _ => 1,
        };
        if self.side != Side::Requests || f.ntok != key_tok {
            return;
        }
        let b = b.strip_suffix(b"\r").unwrap_or(b);
        let n = (KEY_MAX - k.len).min(b.len());
        k.bytes[k.len..k.len + n].copy_from_slice(&b[..n]);
        k.len += n;
    }

    /// A non-retrieval line past [`MAX_LINE`] is dropped.
    fn check_length(&mut self) -> Option<Event> {
        let unbounded = self.side == Side::Requests
            && matches!(
                self.fields.command,
                Command::Get | Command::Gets | Command::Gat | Command::Gats
            );
        if self.line_len <= MAX_LINE || unbounded {
            return None;
        }
        let ev = (!self.resync).then_some(Event::Error(ParseError::LineTooLong));
        self.state = State::SkipLine;
        self.resync = true;
        self.tok_len = 0;
        ev
    }

    /// One complete token (`t` holds at most its first [`TOK_CAP`] bytes, `full` is its
    /// length).
    fn token(&mut self, t: &[u8], full: usize) {
        let i = self.fields.ntok;
        if self.resync && i == 0 && (full > t.len() || !self.may_start(t)) {
            self.abandon = true;
            return;
        }
        self.fields.ntok = i.saturating_add(1);
        self.fields.last_noreply = t == b"noreply";
        let f = &mut self.fields;
        if i == 0 {
            f.word_ok = full == t.len() && plausible_word(t);
            match self.side {
                Side::Requests => f.command = Command::from_word(t),
                Side::Replies => f.reply = ReplyKind::from_word(t),
            }
            return;
        }
        let num = || {
            if full > t.len() { None } else { parse_u64(t) }
        };
        if self.side == Side::Replies {
            match (f.reply, i) {
                (ReplyKind::Value, 3) | (ReplyKind::Va, 1) => {
                    f.value_len = num();
                    f.bad |= f.value_len.is_none();
                }
                (ReplyKind::Va, _)
                | (ReplyKind::Hd, _)
                | (ReplyKind::En, _)
                | (ReplyKind::Nf, _)
                | (ReplyKind::Ns, _)
                | (ReplyKind::Ex, _)
                | (ReplyKind::Mn, _) => meta_flag(f, t, full),
                _ => {}
            }
            return;
        }
        let key = |f: &mut Fields| {
            f.keys = f.keys.saturating_add(1);
            f.bad |= full > KEY_MAX;
        };
        match (f.command, i) {
            (Command::Get | Command::Gets, _) => key(f),
            (Command::Gat | Command::Gats, 1) => f.bad |= full > t.len() || parse_i64(t).is_none(),
            (Command::Gat | Command::Gats, _) => key(f),
            (
                Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas,
                1,
            ) => key(f),
            (
                Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas,
                2,
            ) => f.bad |= num().is_none_or(|v| v > u32::MAX as u64),
            (
                Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas,
                3,
            ) => f.bad |= full > t.len() || parse_i64(t).is_none(),
            (
                Command::Set
                | Command::Add
                | Command::Replace
                | Command::Append
                | Command::Prepend
                | Command::Cas,
                4,
            ) => {
                // memcached reads the length as a 32-bit signed number.
                f.value_len = num().filter(|&v| v <= i32::MAX as u64 - 2);
                f.bad |= f.value_len.is_none();
            }
            (Command::Cas, 5) => f.bad |= num().is_none(),
            (Command::Delete | Command::Incr | Command::Decr | Command::Touch, 1) => key(f),
            (Command::Incr | Command::Decr, 2) => f.bad |= num().is_none(),
            (Command::Touch, 2) => f.bad |= full > t.len() || parse_i64(t).is_none(),
            (Command::Mg | Command::Md | Command::Ma | Command::Me | Command::Ms, 1) => key(f),
            (Command::Ms, 2) => {
                f.value_len = num().filter(|&v| v <= i32::MAX as u64 - 2);
                f.bad |= f.value_len.is_none();
            }
            (Command::Mg | Command::Md | Command::Ma | Command::Ms, _) => meta_flag(f, t, full),
            _ => {}
        }
    }

    /// The newline: the line is a message, or it is dropped.
    fn end_line(&mut self) -> Option<Event> {
        let pristine = std::mem::take(&mut self.pristine);
        self.state = State::Start;
        self.line_start = true;
        let f = self.fields;
        let wire = self.line_len as u64;
        self.wire = wire;
        match self.side {
            Side::Requests => {
                let c = f.command;
                let valid = !f.bad && args_ok(c, f.ntok, f.last_noreply);
                // Resynchronising, a line must name a command; a known command with bad
                // arguments is taken (memcached answers it with an error).
                let lone_word = pristine && f.word_ok && f.ntok == 1;
                if self.resync && ((c == Command::Unknown && !lone_word) || f.ctl) {
                    return None;
                }
                self.resync = false;
                self.binary = Some(false);
                let noreply = (c.takes_noreply() && f.last_noreply) || c == Command::Quit;
                // memcached reads a data block only after a well-formed storage line
                // (a bad one is answered at once, and its data is read as a command).
                let data = if valid { f.value_len } else { None };
                if f.base64 {
                    self.decode_key();
                }
                let req = Request {
                    command: c,
                    keys: f.keys,
                    noreply,
                    quiet: f.quiet && c.proto() == Proto::Meta,
                    valid,
                    ctl: f.ctl,
                    opaque: f.opaque,
                    value_len: data.unwrap_or(0),
                    wire_len: wire,
                    gap: self.gap,
                    too_large: false,
                };
                self.data_block(data, Event::Request(req))
            }
            Side::Replies => {
                let k = f.reply;
                let data = matches!(k, ReplyKind::Value | ReplyKind::Va);
                let bad = f.ntok == 0 || (data && f.bad) || f.ctl;
                let too_large = data && f.value_len.is_some_and(|v| v > self.max_value);
                // A bare number could be a line of any value; while resynchronising it is
                // handed out tentatively, for the pairing to take only if an incr or decr
                // waits for it (then `confirm_sync`).
                let tentative = self.resync && k == ReplyKind::Number && !bad;
                if self.resync && !tentative && (bad || !k.known() || too_large) {
                    return None;
                }
                if bad {
                    self.lose_sync();
                    return Some(Event::Error(ParseError::BadLine));
                }
                if !tentative {
                    self.resync = false;
                    self.binary = Some(false);
                }
                let rep = Reply {
                    kind: k,
                    opaque: f.opaque,
                    opcode: 0,
                    status: 0,
                    empty: false,
                    value_len: f.value_len.unwrap_or(0),
                    wire_len: wire,
                    gap: self.gap,
                    ctl: f.ctl,
                    too_large: false,
                    tentative,
                };
                self.data_block(if data { f.value_len } else { None }, Event::Reply(rep))
            }
        }
    }

    /// Skip the data block announced by the line, if any; the message is handed out
    /// after it. A block longer than the maximum is not believed: the message is handed
    /// out at once, marked `too_large`, and the parser resynchronises (a real server
    /// refuses such an item; a length read from damaged bytes would swallow the stream).
    fn data_block(&mut self, len: Option<u64>, mut ev: Event) -> Option<Event> {
        let Some(len) = len else {
            return Some(ev);
        };
        if len > self.max_value {
            match &mut ev {
                Event::Request(r) => r.too_large = true,
                Event::Reply(r) => r.too_large = true,
                Event::Error(_) => {}
            }
            self.lose_sync();
            return Some(ev);
        }
        self.msg = Some(ev);
        self.left = len;
        self.state = if len == 0 {
            State::Trailer(0)
        } else {
            State::Data
        };
        None
    }

    /// A meta key sent base64-encoded (`b` flag): keep the decoded bytes.
    fn decode_key(&mut self) {
        let Some(k) = self.key.as_deref_mut() else {
            return;
        };
        let mut out = [0u8; KEY_MAX];
        match base64::engine::general_purpose::STANDARD.decode_slice(&k.bytes[..k.len], &mut out) {
            Ok(n) => {
                k.bytes[..n].copy_from_slice(&out[..n]);
                k.len = n;
            }
            Err(_) => k.len = 0,
        }
    }
}

/// A meta flag token: `q`, `b`, `O<opaque>`.
fn meta_flag(f: &mut Fields, t: &[u8], full: usize) {
    match t.first() {
        Some(b'q') if full == 1 => f.quiet = true,
        Some(b'b') if full == 1 => f.base64 = true,
        Some(b'O') => match Opaque::new(&t[1..]) {
            Some(o) if full == t.len() => f.opaque = o,
            _ => f.bad = true,
        },
        _ => {}
    }
}

/// One word that could be a command: 1 to 14 lower-case letters, digits or `_`.
fn plausible_word(w: &[u8]) -> bool {
    (1..=TEXT_WORD_MAX).contains(&w.len())
        && w.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
}

/// Token counts memcached accepts (the command word included; a trailing `noreply` is
/// one of them).
fn args_ok(c: Command, ntok: u32, noreply: bool) -> bool {
    let n = ntok - (noreply && c.takes_noreply()) as u32;
    match c {
        Command::Get | Command::Gets => n >= 2,
        Command::Gat | Command::Gats => n >= 3,
        Command::Set | Command::Add | Command::Replace | Command::Append | Command::Prepend => {
            n == 5
        }
        Command::Cas => n == 6,
        Command::Delete => (2..=3).contains(&n),
        Command::Incr | Command::Decr | Command::Touch => n == 3,
        Command::Mg | Command::Md | Command::Ma | Command::Me => ntok >= 2,
        Command::Ms => ntok >= 3,
        Command::Mn | Command::Version | Command::Quit => ntok == 1,
        Command::FlushAll => n <= 2,
        Command::Verbosity | Command::CacheMemlimit => n == 2,
        Command::Unknown => false,
        _ => true,
    }
}

/// Whether a text line is one of the commands memcached alone uses: a `get` of one key,
/// `touch` and `quit` are also Redis inline commands and need the port to tell.
pub fn distinctive(req: &Request) -> bool {
    match req.command {
        Command::Get => req.keys > 1,
        Command::Touch | Command::Quit => false,
        _ => true,
    }
}
