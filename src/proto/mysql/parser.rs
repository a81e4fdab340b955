//! The MySQL/MariaDB client/server protocol's framing and the fields podtap reads.
//!
//! Every message is one or more packets: a 4-byte header (3-byte little-endian payload
//! length, 1-byte sequence id) and the payload. A payload of 16 MiB - 1 bytes (0xffffff)
//! or more is split into packets of exactly 0xffffff bytes and a last, shorter one (empty
//! when the length is a multiple): [`Framer`] joins them into one [`Message`].
//!
//! The framer is streaming and zero-copy: a message whose packet lies whole in the bytes
//! given is handed out as a slice of them; otherwise its first `head_cap` bytes are
//! copied into a small reused buffer (everything podtap reads of a message is in its
//! head: a command and its SQL text, an OK's counts, an ERR's code) and the rest is
//! skipped by its length, never buffered. The header itself is buffered when cut (four
//! bytes at most).
//!
//! With the compressed protocol ([`Inflater`]) each direction is a stream of compressed
//! packets (7-byte header: compressed length, compressed sequence id, uncompressed length,
//! 0 meaning stored as is) whose payloads, joined, are the ordinary packets above.

/// A packet's payload length that says another packet of the same message follows.
pub const MAX_PACKET: u32 = 0xff_ffff;

// Commands (the first byte of a client message in the command phase).
pub const COM_SLEEP: u8 = 0x00;
pub const COM_QUIT: u8 = 0x01;
pub const COM_INIT_DB: u8 = 0x02;
pub const COM_QUERY: u8 = 0x03;
pub const COM_FIELD_LIST: u8 = 0x04;
pub const COM_STATISTICS: u8 = 0x09;
pub const COM_PROCESS_KILL: u8 = 0x0c;
pub const COM_DEBUG: u8 = 0x0d;
pub const COM_PING: u8 = 0x0e;
pub const COM_CHANGE_USER: u8 = 0x11;
pub const COM_BINLOG_DUMP: u8 = 0x12;
pub const COM_REGISTER_SLAVE: u8 = 0x15;
pub const COM_STMT_PREPARE: u8 = 0x16;
pub const COM_STMT_EXECUTE: u8 = 0x17;
pub const COM_STMT_SEND_LONG_DATA: u8 = 0x18;
pub const COM_STMT_CLOSE: u8 = 0x19;
pub const COM_STMT_RESET: u8 = 0x1a;
pub const COM_SET_OPTION: u8 = 0x1b;
pub const COM_STMT_FETCH: u8 = 0x1c;
pub const COM_BINLOG_DUMP_GTID: u8 = 0x1e;
pub const COM_RESET_CONNECTION: u8 = 0x1f;
/// MariaDB's bulk execute (many parameter sets in one command).
pub const COM_STMT_BULK_EXECUTE: u8 = 0xfa;

/// The command's name (`COM_QUERY`), or None for a byte that is not a command clients send.
pub fn command_name(c: u8) -> Option<&'static str> {
    Some(match c {
        COM_QUIT => "COM_QUIT",
        COM_INIT_DB => "COM_INIT_DB",
        COM_QUERY => "COM_QUERY",
        COM_FIELD_LIST => "COM_FIELD_LIST",
        0x05 => "COM_CREATE_DB",
        0x06 => "COM_DROP_DB",
        0x07 => "COM_REFRESH",
        0x08 => "COM_SHUTDOWN",
        COM_STATISTICS => "COM_STATISTICS",
        0x0a => "COM_PROCESS_INFO",
        COM_PROCESS_KILL => "COM_PROCESS_KILL",
        COM_DEBUG => "COM_DEBUG",
        COM_PING => "COM_PING",
        COM_CHANGE_USER => "COM_CHANGE_USER",
        COM_BINLOG_DUMP => "COM_BINLOG_DUMP",
        0x13 => "COM_TABLE_DUMP",
        COM_REGISTER_SLAVE => "COM_REGISTER_SLAVE",
        COM_STMT_PREPARE => "COM_STMT_PREPARE",
        COM_STMT_EXECUTE => "COM_STMT_EXECUTE",
        COM_STMT_SEND_LONG_DATA => "COM_STMT_SEND_LONG_DATA",
        COM_STMT_CLOSE => "COM_STMT_CLOSE",
        COM_STMT_RESET => "COM_STMT_RESET",
        COM_SET_OPTION => "COM_SET_OPTION",
        COM_STMT_FETCH => "COM_STMT_FETCH",
        COM_BINLOG_DUMP_GTID => "COM_BINLOG_DUMP_GTID",
        COM_RESET_CONNECTION => "COM_RESET_CONNECTION",
        COM_STMT_BULK_EXECUTE => "COM_STMT_BULK_EXECUTE",
        _ => return None,
    })
}

// Capability flags (HandshakeV10 and HandshakeResponse41).
pub const CLIENT_CONNECT_WITH_DB: u32 = 1 << 3;
pub const CLIENT_COMPRESS: u32 = 1 << 5;
pub const CLIENT_PROTOCOL_41: u32 = 1 << 9;
pub const CLIENT_SSL: u32 = 1 << 11;
pub const CLIENT_SECURE_CONNECTION: u32 = 1 << 15;
pub const CLIENT_PLUGIN_AUTH: u32 = 1 << 19;
pub const CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
pub const CLIENT_OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
pub const CLIENT_ZSTD_COMPRESSION_ALGORITHM: u32 = 1 << 26;
pub const CLIENT_QUERY_ATTRIBUTES: u32 = 1 << 27;
pub const CLIENT_DEPRECATE_EOF: u32 = 1 << 24;
/// MariaDB's extended capability (the upper 32 bits): COM_STMT_EXECUTE results may omit
/// the column definitions the client has cached.
pub const MARIADB_CLIENT_CACHE_METADATA: u32 = 1 << 4;

// Server status flags (OK and EOF packets).
pub const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;

/// One message: a packet, or the packets of a payload of 16 MiB and more, joined.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    /// Sequence id of its first packet and of its last.
    pub seq: u8,
    pub last_seq: u8,
    /// Payload bytes, all packets together.
    pub len: u64,
    /// The first bytes of the payload (all of it when it is short).
    pub head: &'a [u8],
    /// Continuation packets whose sequence id did not follow the one before.
    pub seq_errors: u32,
    /// Header and payload bytes on the wire.
    pub wire: u64,
    /// Bytes of its payload past the head were lost in a gap.
    pub gap: bool,
}

/// Reads one direction's packets into messages. See the module docs.
#[derive(Debug)]
pub struct Framer {
    hdr: [u8; 4],
    hdr_have: u8,
    /// Reading a payload (else a header).
    in_body: bool,
    /// Payload bytes of the current packet still to come.
    left: u32,
    /// The current packet is 0xffffff long: another of the same message follows.
    cont: bool,
    /// A message is under way (its first packet's header was read).
    active: bool,
    seq: u8,
    last_seq: u8,
    len: u64,
    wire: u64,
    seq_errors: u32,
    gap: bool,
    head: Vec<u8>,
    head_cap: usize,
    /// Longest message believed (bytes, all packets); a longer one is taken for damage.
    max_len: u64,
    /// Messages found longer than `max_len`, since the last `take_oversize`.
    oversize: u64,
    /// After a gap: the framing is unknown until [`Framer::rearm`].
    lost: bool,
    /// Bytes dropped while out of sync, since the last `take_skipped`.
    skipped: u64,
}

impl Framer {
    /// `head_cap`: how many first bytes of a message are kept (the rest is skipped).
    pub fn new(head_cap: usize, max_len: u64) -> Framer {
        Framer {
            hdr: [0; 4],
            hdr_have: 0,
            in_body: false,
            left: 0,
            cont: false,
            active: false,
            seq: 0,
            last_seq: 0,
            len: 0,
            wire: 0,
            seq_errors: 0,
            gap: false,
            head: Vec::new(),
            head_cap,
            max_len,
            oversize: 0,
            lost: false,
            skipped: 0,
        }
    }

    /// Between messages (nothing of the next one read yet) and in sync.
    pub fn between_messages(&self) -> bool {
        !self.active && self.hdr_have == 0 && !self.lost
    }

    pub fn is_lost(&self) -> bool {
        self.lost
    }

    /// Bytes dropped while out of sync since the last call.
    pub fn take_skipped(&mut self) -> u64 {
        std::mem::take(&mut self.skipped)
    }

    /// Messages longer than the limit since the last call (each lost the framing).
    pub fn take_oversize(&mut self) -> u64 {
        std::mem::take(&mut self.oversize)
    }

    /// Lose the framing (the bytes cannot be this protocol's, or are no longer read).
    pub fn lose(&mut self) {
        self.reset();
        self.lost = true;
    }

    /// `n` bytes will never arrive. A gap inside a payload past the head costs nothing
    /// but those bytes (podtap reads only the head); any other loses the framing.
    pub fn gap(&mut self, n: u64) -> GapOutcome {
        if self.lost {
            return GapOutcome::Lost;
        }
        if self.in_body && self.left as u64 > n && self.head.len() >= self.head_cap {
            self.left -= n as u32;
            self.len += n;
            self.wire += n;
            self.gap = true;
            return GapOutcome::Absorbed;
        }
        self.reset();
        self.lost = true;
        GapOutcome::Lost
    }

    /// The other direction showed this one must be at a message boundary (MySQL speaks in
    /// turns: a client sends its next command only after the whole reply).
    #[inline]
    pub fn rearm(&mut self) {
        if self.lost {
            self.reset();
        }
    }

    /// Forget any partial message and be in sync.
    pub fn reset(&mut self) {
        self.hdr_have = 0;
        self.in_body = false;
        self.left = 0;
        self.cont = false;
        self.active = false;
        self.len = 0;
        self.wire = 0;
        self.seq_errors = 0;
        self.gap = false;
        self.head.clear();
        self.lost = false;
    }

    /// Read from `b`: the bytes consumed, and a message when one ended within them.
    #[inline]
    pub fn next<'a>(&'a mut self, b: &'a [u8]) -> (usize, Option<Message<'a>>) {
        if self.lost {
            self.skipped += b.len() as u64;
            return (b.len(), None);
        }
        // The fast path: a whole short packet at the start of `b`, nothing under way.
        if !self.active && self.hdr_have == 0 && b.len() >= 4 {
            let len = u32::from_le_bytes([b[0], b[1], b[2], 0]);
            if len < MAX_PACKET && b.len() - 4 >= len as usize {
                let n = 4 + len as usize;
                let m = Message {
                    seq: b[3],
                    last_seq: b[3],
                    len: len as u64,
                    head: &b[4..n],
                    seq_errors: 0,
                    wire: n as u64,
                    gap: false,
                };
                return (n, Some(m));
            }
        }
        self.slow(b)
    }

    fn slow<'a>(&'a mut self, b: &'a [u8]) -> (usize, Option<Message<'a>>) {
        let mut i = 0;
        loop {
            if !self.in_body {
                if i == b.len() {
                    return (i, None);
                }
                let have = self.hdr_have as usize;
                let take = (4 - have).min(b.len() - i);
                self.hdr[have..have + take].copy_from_slice(&b[i..i + take]);
                self.hdr_have += take as u8;
                i += take;
                if self.hdr_have < 4 {
                    return (i, None);
                }
                self.hdr_have = 0;
                let len = u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], 0]);
                let seq = self.hdr[3];
                if !self.active {
                    self.active = true;
                    self.seq = seq;
                    self.len = 0;
                    self.wire = 0;
                    self.seq_errors = 0;
                    self.gap = false;
                    self.head.clear();
                } else if seq != self.last_seq.wrapping_add(1) {
                    self.seq_errors += 1;
                }
                self.last_seq = seq;
                self.wire += 4;
                self.left = len;
                self.cont = len == MAX_PACKET;
                self.in_body = true;
                if self.len + len as u64 > self.max_len {
                    self.oversize += 1;
                    self.lose();
                    self.skipped += (b.len() - i) as u64;
                    return (b.len(), None);
                }
            }
            let take = (self.left as usize).min(b.len() - i);
            let room = self.head_cap.saturating_sub(self.head.len()).min(take);
            self.head.extend_from_slice(&b[i..i + room]);
            i += take;
            self.left -= take as u32;
            self.len += take as u64;
            self.wire += take as u64;
            if self.left > 0 {
                return (i, None);
            }
            self.in_body = false;
            if !self.cont {
                self.active = false;
                let m = Message {
                    seq: self.seq,
                    last_seq: self.last_seq,
                    len: self.len,
                    head: &self.head,
                    seq_errors: self.seq_errors,
                    wire: self.wire,
                    gap: self.gap,
                };
                return (i, Some(m));
            }
        }
    }
}

/// What a gap did to a direction's framing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GapOutcome {
    /// Inside a payload, past what podtap reads: the message goes on.
    Absorbed,
    /// The framing is lost until the direction is re-armed.
    Lost,
}

/// A length-encoded integer at `b[*i..]`, advancing `i`; None when cut short or not one
/// (0xff, and 0xfb which means NULL in rows).
pub fn lenenc(b: &[u8], i: &mut usize) -> Option<u64> {
    let first = *b.get(*i)?;
    let n = match first {
        0..=0xfa => {
            *i += 1;
            return Some(first as u64);
        }
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = b.get(*i + 1..*i + 1 + n)?;
    let mut v = 0u64;
    for (k, &x) in bytes.iter().enumerate() {
        v |= (x as u64) << (8 * k);
    }
    *i += 1 + n;
    Some(v)
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}

/// The NUL-terminated string at `b[*i..]` (to the end when there is no NUL), advancing
/// past its NUL.
fn cstr<'a>(b: &'a [u8], i: &mut usize) -> &'a [u8] {
    let rest = b.get(*i..).unwrap_or_default();
    let end = memchr::memchr(0, rest).unwrap_or(rest.len());
    *i += (end + 1).min(rest.len());
    &rest[..end]
}

/// An OK packet (header 0x00, or 0xfe when it ends a result set), or an EOF packet
/// (0xfe, 5 bytes): what they say about the command and the session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OkPacket {
    pub affected_rows: u64,
    pub status: u16,
    pub warnings: u16,
}

/// `head` is the payload of an OK or EOF packet (first byte 0x00 or 0xfe).
pub fn parse_ok(head: &[u8], len: u64) -> Option<OkPacket> {
    if head.first() == Some(&0xfe) && len < 7 {
        // EOF: warnings, then status.
        return Some(OkPacket {
            affected_rows: 0,
            warnings: u16_at(head, 1).unwrap_or(0),
            status: u16_at(head, 3).unwrap_or(0),
        });
    }
    let mut i = 1;
    let affected_rows = lenenc(head, &mut i)?;
    lenenc(head, &mut i)?;
    Some(OkPacket {
        affected_rows,
        status: u16_at(head, i).unwrap_or(0),
        warnings: u16_at(head, i + 2).unwrap_or(0),
    })
}

/// An ERR packet (header 0xff).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrPacket<'a> {
    pub code: u16,
    /// Five characters, when the server sent them (protocol 4.1).
    pub sqlstate: Option<&'a [u8]>,
    /// As far as the head holds it.
    pub message: &'a [u8],
}

pub fn parse_err(head: &[u8]) -> Option<ErrPacket<'_>> {
    if head.first() != Some(&0xff) {
        return None;
    }
    let code = u16_at(head, 1)?;
    if head.get(3) == Some(&b'#') && head.len() >= 9 {
        Some(ErrPacket {
            code,
            sqlstate: Some(&head[4..9]),
            message: &head[9..],
        })
    } else {
        Some(ErrPacket {
            code,
            sqlstate: None,
            message: head.get(3..).unwrap_or_default(),
        })
    }
}

/// The server's first message (HandshakeV10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Greeting<'a> {
    pub version: &'a [u8],
    pub capabilities: u32,
    /// MariaDB's extended capabilities (zero from MySQL).
    pub mariadb_capabilities: u32,
}

impl Greeting<'_> {
    /// MariaDB says so in its version (`5.5.5-10.11.6-MariaDB-0+deb12u1`).
    pub fn is_mariadb(&self) -> bool {
        self.version
            .windows(7)
            .any(|w| w.eq_ignore_ascii_case(b"mariadb"))
    }
}

/// Protocol version 10, a printable NUL-terminated version, the fixed fields after it.
pub fn parse_greeting(head: &[u8]) -> Option<Greeting<'_>> {
    if head.first() != Some(&10) {
        return None;
    }
    let mut i = 1;
    let version = cstr(head, &mut i);
    if version.is_empty()
        || version.len() > 100
        || !version.iter().all(|c| c.is_ascii_graphic())
        || head.get(i - 1) != Some(&0)
    {
        return None;
    }
    // thread id 4, auth data 8, filler 1
    i += 13;
    let low = u16_at(head, i)? as u32;
    // charset 1, status 2
    let high = u16_at(head, i + 5).unwrap_or(0) as u32;
    let capabilities = low | high << 16;
    // auth data length 1, reserved 6, MariaDB's extended capabilities 4 (when the server
    // does not claim CLIENT_MYSQL, bit 0).
    let mariadb_capabilities = if capabilities & 1 == 0 {
        u32_at(head, i + 7 + 1 + 6).unwrap_or(0)
    } else {
        0
    };
    Some(Greeting {
        version,
        capabilities,
        mariadb_capabilities,
    })
}

/// The client's answer to the greeting (HandshakeResponse41 or 320, or an SSLRequest).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Login<'a> {
    pub capabilities: u32,
    pub mariadb_capabilities: u32,
    /// The client asks to switch to TLS: everything after is encrypted.
    pub ssl_request: bool,
    pub user: &'a [u8],
    pub database: Option<&'a [u8]>,
}

pub fn parse_login(head: &[u8], len: u64) -> Option<Login<'_>> {
    let low = u16_at(head, 0)? as u32;
    if low & CLIENT_PROTOCOL_41 == 0 {
        // HandshakeResponse320: capabilities 2, max packet 3, user.
        let mut i = 5;
        let user = cstr(head, &mut i);
        return Some(Login {
            capabilities: low,
            mariadb_capabilities: 0,
            ssl_request: low & CLIENT_SSL != 0 && len == 5,
            user,
            database: None,
        });
    }
    let caps = u32_at(head, 0)?;
    // max packet 4, charset 1, filler 19, MariaDB's extended capabilities 4.
    let mariadb_capabilities = u32_at(head, 28)?;
    if len == 32 {
        return Some(Login {
            capabilities: caps,
            mariadb_capabilities,
            ssl_request: caps & CLIENT_SSL != 0,
            user: &[],
            database: None,
        });
    }
    let mut i = 32;
    let user = cstr(head, &mut i);
    // The auth response: never kept, only skipped.
    if caps & CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
        let n = lenenc(head, &mut i)?;
        i = i.checked_add(usize::try_from(n).ok()?)?;
    } else if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = *head.get(i)? as usize;
        i += 1 + n;
    } else {
        cstr(head, &mut i);
    }
    let database = if caps & CLIENT_CONNECT_WITH_DB != 0 && i < head.len() {
        Some(cstr(head, &mut i))
    } else {
        None
    };
    Some(Login {
        capabilities: caps,
        mariadb_capabilities,
        ssl_request: false,
        user,
        database,
    })
}

/// COM_CHANGE_USER: user and database (the auth response skipped, never kept).
pub fn parse_change_user(head: &[u8], caps: u32) -> (&[u8], Option<&[u8]>) {
    let mut i = 1;
    let user = cstr(head, &mut i);
    if caps & CLIENT_SECURE_CONNECTION != 0 {
        let n = head.get(i).copied().unwrap_or(0) as usize;
        i += 1 + n;
    } else {
        cstr(head, &mut i);
    }
    if i >= head.len() {
        return (user, None);
    }
    (user, Some(cstr(head, &mut i)))
}

/// The compressed protocol's framing: each compressed packet (7-byte header) holds a
/// stored or zlib-compressed run of ordinary packets. [`Inflater::next`] hands out the
/// ordinary bytes: stored ones as a slice of the input, inflated ones from a fixed buffer.
pub struct Inflater {
    hdr: [u8; 7],
    hdr_have: u8,
    /// Compressed payload bytes of the current packet still to come.
    left: u32,
    /// Uncompressed length the header declared (0: stored).
    ulen: u32,
    /// Bytes inflated from the current packet.
    produced: u64,
    /// The current packet's input is all read; output may still be pending.
    draining: bool,
    z: flate2::Decompress,
    out: Box<[u8]>,
}

/// Why a compressed stream cannot be read on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    #[error("zlib data does not inflate")]
    Corrupt,
    #[error("inflates past its declared length")]
    TooLong,
}

impl Default for Inflater {
    fn default() -> Self {
        Inflater {
            hdr: [0; 7],
            hdr_have: 0,
            left: 0,
            ulen: 0,
            produced: 0,
            draining: false,
            z: flate2::Decompress::new(true),
            out: vec![0u8; 16 * 1024].into_boxed_slice(),
        }
    }
}

impl Inflater {
    /// Read from `b`: the bytes consumed and the ordinary bytes they gave (possibly none;
    /// call again while input remains).
    pub fn next<'a>(&'a mut self, b: &'a [u8]) -> Result<(usize, &'a [u8]), InflateError> {
        if self.draining {
            return self.inflate(&[]).map(|(_, out)| (0, out));
        }
        if self.left == 0 {
            let have = self.hdr_have as usize;
            let take = (7 - have).min(b.len());
            self.hdr[have..have + take].copy_from_slice(&b[..take]);
            self.hdr_have += take as u8;
            if self.hdr_have < 7 {
                return Ok((take, &[]));
            }
            self.hdr_have = 0;
            self.left = u32::from_le_bytes([self.hdr[0], self.hdr[1], self.hdr[2], 0]);
            self.ulen = u32::from_le_bytes([self.hdr[4], self.hdr[5], self.hdr[6], 0]);
            self.produced = 0;
            if self.ulen != 0 {
                self.z.reset(true);
            }
            return Ok((take, &[]));
        }
        let take = (self.left as usize).min(b.len());
        if self.ulen == 0 {
            self.left -= take as u32;
            return Ok((take, &b[..take]));
        }
        let (used, out) = self.inflate(&b[..take])?;
        Ok((used, out))
    }

    fn inflate<'a>(&'a mut self, input: &[u8]) -> Result<(usize, &'a [u8]), InflateError> {
        let (in0, out0) = (self.z.total_in(), self.z.total_out());
        let st = self
            .z
            .decompress(input, &mut self.out, flate2::FlushDecompress::None)
            .map_err(|_| InflateError::Corrupt)?;
        let used = (self.z.total_in() - in0) as usize;
        let made = (self.z.total_out() - out0) as usize;
        self.left -= used as u32;
        self.produced += made as u64;
        if self.produced > self.ulen as u64 {
            return Err(InflateError::TooLong);
        }
        let ended = st == flate2::Status::StreamEnd;
        if ended && self.left > 0 {
            // Bytes after the end of the zlib stream: not the compressed protocol.
            return Err(InflateError::Corrupt);
        }
        // Input all read but the output buffer was filled: more may be pending.
        self.draining = self.left == 0 && !ended && made == self.out.len();
        if used == 0 && made == 0 && !input.is_empty() {
            return Err(InflateError::Corrupt);
        }
        Ok((used, &self.out[..made]))
    }

    /// Between compressed packets.
    pub fn between_packets(&self) -> bool {
        self.left == 0 && self.hdr_have == 0 && !self.draining
    }
}

impl std::fmt::Debug for Inflater {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inflater")
            .field("left", &self.left)
            .finish()
    }
}
