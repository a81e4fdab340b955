//! Kafka wire protocol framing and field walking: each direction's bytes into messages
//! and the few fields the decoder reports, split anywhere, without buffering a message.
//!
//! Every Kafka message is a 4-byte big-endian length and that many bytes. A request starts
//! with its header: API key, API version, correlation id, client id (a 2-byte-length
//! string in every header version), and, in the flexible versions of the API (header
//! v2), tagged fields. A response starts with the correlation id and, flexible (header
//! v1), tagged fields (ApiVersions answers with header v0 always, so that a client can
//! read the answer of a version the broker does not know).
//!
//! The body is walked with a small schema per API ([`schema`]): only the fields up to
//! the last one reported are described; the rest of a message is skipped by its length.
//! Strings, byte fields and record sets are skipped by their length too, never buffered;
//! the record sets are walked batch by batch to count their records from the batch
//! headers (no decompression). Only the names reported (topic, consumer group, client
//! id; at most [`CAPTURE_MAX`] bytes each) are copied. Fixed fields split over two chunks
//! pass through a 16-byte carry, so a message may be cut at any byte.
//!
//! Most messages arrive whole in one chunk: [`frame`] finds them, and [`walk_request`] or
//! [`walk_response`] reads their fields straight from the slice (`Whole`: the same fields in
//! the same order, nothing kept between bytes), handing names and topic ids to the
//! decoder's [`Sink`] and summing the fixed fields. Produce, most of the requests of a busy
//! cluster, has a walk written for it. The field walk ([`Parser`]) reads the rest: split
//! messages, and any message the whole walk gives up on (malformed, or declined by the
//! sink). The tests hold the two walks to the same result for every API and version, and
//! feed whole and split conversations to the decoder to check they agree.
//!
//! Flexible versions use compact encodings: unsigned varint lengths (length + 1, 0 for
//! null) and tagged fields at the end of every structure; the walker reads both.

/// The longest name copied for reporting (topic names are 249 bytes at most; a longer
/// consumer group or client id is cut here).
pub const CAPTURE_MAX: usize = 255;

/// How deep schemas nest (topics > partitions > aborted transactions, with the header).
const DEPTH: usize = 6;

/// Which direction a parser reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Requests,
    Responses,
}

/// What a name capture is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Name {
    Topic,
    Group,
    ClientId,
}

/// A field of a schema.
#[derive(Clone, Copy, Debug)]
pub enum T {
    I8,
    I16,
    I32,
    I64,
    Uuid,
    /// A string (nullable or not: the encoding is the same), skipped.
    Str,
    /// A string reported as a name.
    Cap(Name),
    /// A byte field, skipped.
    Bytes,
    /// A record set: its batches counted.
    Records,
    /// An array of structures.
    Arr(&'static [F]),
    /// An array of fixed-size elements (int32 node ids, int64 offsets), skipped.
    FixArr(u8),
    /// An array of strings: the first one reported as the consumer group, and the walk
    /// stops there.
    FirstGroup,
    /// The request header's client id: a 2-byte-length string in every header version.
    ClientId,
    /// Reported: a partition index (int32).
    Partition,
    /// Reported: an error code (int16).
    Error,
    /// Reported: a topic id (uuid).
    TopicId,
    /// Reported: Produce `acks` (int16).
    Acks,
    /// Reported: FindCoordinator `key_type` (int8).
    KeyType,
    /// Nothing after this is reported: skip the rest of the message.
    Stop,
}

/// A field present in versions `lo..=hi`.
#[derive(Clone, Copy, Debug)]
pub struct F(pub T, pub u8, pub u8);

/// Open-ended version range.
pub const ANY: u8 = u8::MAX;

/// The fixed fields a message reports, summed over it as the decoder sums
/// [`Ev::Partition`], [`Ev::Error`], [`Ev::Acks`] and [`Ev::KeyType`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// Partition entries, and the first one's index.
    pub partitions: u32,
    pub partition: i32,
    /// Non-zero error codes, and the first one.
    pub errors: u32,
    pub error: i16,
    /// The last `acks` and `key_type` read.
    pub acks: Option<i16>,
    pub key_type: Option<i8>,
}

impl Fields {
    pub fn partition(p: i32) -> Fields {
        Fields {
            partitions: 1,
            partition: p,
            ..Fields::default()
        }
    }

    pub fn error(code: i16) -> Fields {
        Fields {
            errors: (code != 0) as u32,
            error: code,
            ..Fields::default()
        }
    }

    pub fn acks(a: i16) -> Fields {
        Fields {
            acks: Some(a),
            ..Fields::default()
        }
    }

    pub fn key_type(k: i8) -> Fields {
        Fields {
            key_type: Some(k),
            ..Fields::default()
        }
    }

    /// `f`, read after `self` in the same message: the first partition and the first
    /// non-zero error stay, the others are counted; the later `acks` and `key_type` win.
    #[inline]
    pub fn add(&mut self, f: Fields) {
        if self.partitions == 0 {
            self.partition = f.partition;
        }
        self.partitions += f.partitions;
        if self.errors == 0 {
            self.error = f.error;
        }
        self.errors += f.errors;
        self.acks = f.acks.or(self.acks);
        self.key_type = f.key_type.or(self.key_type);
    }
}

/// What the parser hands out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ev {
    /// A request's header: the decoder may look at its fields from here.
    Request {
        api: i16,
        version: i16,
        corr: i32,
        /// Bytes on the wire (length prefix included).
        wire: u64,
    },
    /// A response's correlation id: the decoder answers with [`Parser::expect`].
    Response {
        corr: i32,
        wire: u64,
    },
    /// A name: [`Parser::captured`] holds it.
    Name(Name),
    TopicId([u8; 16]),
    Partition(i32),
    Error(i16),
    Acks(i16),
    KeyType(i8),
    /// The message is over. `malformed`: its fields did not follow its schema (what was
    /// read before stays valid).
    End {
        malformed: bool,
    },
    /// Bytes that frame no message: the direction resynchronises.
    Malformed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// The bottom frame: the body.
    Body,
    /// The request header's client id and tagged fields (above the body).
    Header,
    /// An element of an array of structures.
    Elem,
}

#[derive(Clone, Copy, Debug)]
struct Frame {
    fields: &'static [F],
    idx: u16,
    /// Elements after this one.
    more: u32,
    kind: Kind,
    /// The structure's tagged fields are read (flexible versions).
    tags_done: bool,
}

const EMPTY: Frame = Frame {
    fields: &[],
    idx: 0,
    more: 0,
    kind: Kind::Body,
    tags_done: false,
};

/// What the walker is in the middle of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Sub {
    /// The next field of the top frame.
    Next,
    /// Bytes of the current field to skip.
    Skip(u64),
    /// The bytes of a name being copied (`len` of them, `rest` skipped after).
    Capture { name: Name, len: u16, rest: u64 },
    /// The tagged fields at the end of a structure: the count first.
    TagCount,
    /// `left` tagged fields to go; `size`: reading the size of the current one.
    Tags { left: u32, size: bool },
    /// The value of a tagged field: `n` bytes to skip, `left` tagged fields after it.
    TagSkip { n: u64, left: u32 },
    /// A record set: `left` bytes of it.
    Records { left: u64, phase: Batch },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Batch {
    /// The 12-byte head of a batch (base offset, length).
    Head,
    /// `n` bytes of the batch header after the head, `len` the batch length.
    Header { n: u8, len: u32 },
    /// The rest of a batch.
    Body(u64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum St {
    /// The 4-byte length.
    Len,
    /// The fixed head of the header (8 bytes for a request, 4 for a response).
    Head,
    /// A response waiting for the decoder's [`Parser::expect`].
    Await,
    /// Walking fields.
    Walk,
    /// Skipping the rest of the message.
    Rest,
    /// Framing unknown: looking for a plausible message start.
    Lost,
}

/// One direction's message framer and field walker.
pub struct Parser {
    side: Side,
    st: St,
    /// Body bytes of the current message not read yet.
    left: u64,
    wire: u64,
    max_len: u32,
    carry: [u8; 64],
    carry_len: u8,
    vint: u32,
    vshift: u8,
    cap: [u8; CAPTURE_MAX],
    cap_len: u16,
    stack: [Frame; DEPTH],
    depth: u8,
    sub: Sub,
    version: u8,
    flexible: bool,
    malformed: bool,
    /// Bytes of the current message were lost in a gap.
    gap: bool,
    /// Records counted in the current message's record sets (control batches left out).
    pub records: u64,
    /// Record batches counted (whole ones; a batch cut by the end of its set, as Fetch
    /// responses may end, is not counted).
    pub batches: u32,
    /// Response resynchronisation: plausible correlation ids (the pending requests').
    pub corr_window: Option<(i32, i32)>,
}

/// A fixed read: the bytes (first `n` of 16), more input needed, or the message is
/// too short for it.
enum Take<const N: usize> {
    Got([u8; N]),
    Wait,
    Bad,
}

/// Where the bytes of a fixed read are.
enum Fill {
    Input(usize),
    Carry,
    Wait,
    Bad,
}

impl Parser {
    pub fn new(side: Side, max_len: u32) -> Parser {
        Parser {
            side,
            st: St::Len,
            left: 4,
            wire: 0,
            max_len,
            carry: [0; 64],
            carry_len: 0,
            vint: 0,
            vshift: 0,
            cap: [0; CAPTURE_MAX],
            cap_len: 0,
            stack: [EMPTY; DEPTH],
            depth: 0,
            sub: Sub::Next,
            version: 0,
            flexible: false,
            malformed: false,
            gap: false,
            records: 0,
            batches: 0,
            corr_window: None,
        }
    }

    /// The name of the last `Ev::Name`.
    pub fn captured(&self) -> &[u8] {
        &self.cap[..self.cap_len as usize]
    }

    /// Bytes of the current (or just ended) message were lost in a gap.
    pub fn gap_in_message(&self) -> bool {
        self.gap
    }

    pub fn is_lost(&self) -> bool {
        self.st == St::Lost
    }

    /// Between messages (nothing of one read yet).
    pub fn between_messages(&self) -> bool {
        self.st == St::Len && self.carry_len == 0
    }

    /// Forget the framing: resynchronise on what comes next.
    pub fn lose_sync(&mut self) {
        self.st = St::Lost;
        self.carry_len = 0;
        self.vint = 0;
        self.vshift = 0;
    }

    /// The response just announced ([`Ev::Response`]) answers `api` version `version`;
    /// `None`: the request is unknown, skip the body.
    pub fn expect(&mut self, what: Option<(i16, i16)>) {
        if self.st != St::Await {
            return;
        }
        match what.and_then(|(api, v)| Some((api, v, schema(api, v, Side::Responses)?))) {
            Some((api, v, fields)) => {
                self.begin(fields, api, v);
                // ApiVersions answers with header v0 always.
                if self.flexible && api != API_VERSIONS {
                    self.push(&[], 0, Kind::Header);
                }
            }
            None => self.st = St::Rest,
        }
    }

    fn begin(&mut self, fields: &'static [F], api: i16, version: i16) {
        self.version = version.clamp(0, ANY as i16 - 1) as u8;
        self.flexible = flexible_from(api).is_some_and(|f| version >= f);
        self.depth = 0;
        self.push(fields, 0, Kind::Body);
        self.sub = Sub::Next;
        self.st = St::Walk;
    }

    fn push(&mut self, fields: &'static [F], more: u32, kind: Kind) -> bool {
        if self.depth as usize >= DEPTH {
            return false;
        }
        self.stack[self.depth as usize] = Frame {
            fields,
            idx: 0,
            more,
            kind,
            tags_done: false,
        };
        self.depth += 1;
        true
    }

    /// `missing` bytes will never arrive. Returns true when the current message ended in
    /// them (the decoder finishes it, marked gap). Inside a longer message only the
    /// message suffers: its fields after the gap are not read, unless the gap fell in
    /// bytes being skipped anyway (record data). A gap running past the message's end, or
    /// between messages, loses the framing.
    pub fn gap(&mut self, missing: u64) -> bool {
        match self.st {
            St::Len | St::Lost | St::Head => {
                // A header cut by the gap was never announced: nothing to finish.
                self.lose_sync();
                false
            }
            _ if missing < self.left => {
                self.gap = true;
                self.left -= missing;
                let skipping = self.carry_len == 0
                    && match &mut self.sub {
                        Sub::Skip(n) if *n >= missing => {
                            *n -= missing;
                            true
                        }
                        Sub::Records {
                            left,
                            phase: Batch::Body(n),
                        } if *n >= missing => {
                            *n -= missing;
                            *left -= missing;
                            true
                        }
                        _ => false,
                    };
                if !skipping {
                    self.st = St::Rest;
                    self.carry_len = 0;
                }
                false
            }
            _ => {
                self.gap = true;
                let past = missing > self.left;
                self.left = 4;
                self.carry_len = 0;
                self.st = if past { St::Lost } else { St::Len };
                true
            }
        }
    }

    fn bad(&mut self) {
        self.malformed = true;
        self.st = St::Rest;
        self.sub = Sub::Next;
        self.carry_len = 0;
        self.vint = 0;
        self.vshift = 0;
    }

    /// `n` (at most 64) bytes of the message: where they are (in `b` from the returned
    /// offset, or in the carry when they were split over chunks).
    #[inline]
    fn fill(&mut self, b: &[u8], pos: &mut usize, n: usize) -> Fill {
        let have = self.carry_len as usize;
        if (n - have) as u64 > self.left {
            return Fill::Bad;
        }
        let avail = b.len() - *pos;
        if have == 0 && avail >= n {
            let at = *pos;
            *pos += n;
            self.left -= n as u64;
            return Fill::Input(at);
        }
        let k = (n - have).min(avail);
        self.carry[have..have + k].copy_from_slice(&b[*pos..*pos + k]);
        *pos += k;
        self.left -= k as u64;
        self.carry_len += k as u8;
        if self.carry_len as usize == n {
            self.carry_len = 0;
            Fill::Carry
        } else {
            Fill::Wait
        }
    }

    /// `N` (at most 64) bytes of the message, copied out (a size known when compiling:
    /// a few register moves, not a copy call).
    #[inline]
    fn take<const N: usize>(&mut self, b: &[u8], pos: &mut usize) -> Take<N> {
        let mut out = [0u8; N];
        match self.fill(b, pos, N) {
            Fill::Input(at) => out.copy_from_slice(&b[at..at + N]),
            Fill::Carry => out.copy_from_slice(&self.carry[..N]),
            Fill::Wait => return Take::Wait,
            Fill::Bad => return Take::Bad,
        }
        Take::Got(out)
    }

    /// Count a record batch from its header.
    fn count_batch(&mut self, h: &[u8]) {
        if let Some(n) = batch_records(h) {
            self.records += n;
            self.batches += 1;
        }
    }

    /// Skip a field of `n` bytes (-1: null).
    fn skip(&mut self, n: i64) -> Result<(), ()> {
        if n > 0 {
            if n as u64 > self.left {
                return Err(());
            }
            self.sub = Sub::Skip(n as u64);
        }
        Ok(())
    }

    /// Copy a name of `n` bytes (-1: null), at most `CAPTURE_MAX` of them.
    fn capture(&mut self, name: Name, n: i64) -> Result<(), ()> {
        if n < 0 {
            return Ok(());
        }
        if n as u64 > self.left {
            return Err(());
        }
        let len = (n as usize).min(CAPTURE_MAX);
        self.cap_len = 0;
        self.sub = Sub::Capture {
            name,
            len: len as u16,
            rest: n as u64 - len as u64,
        };
        Ok(())
    }

    /// An unsigned varint (5 bytes at most): `Ok(Some)`, `Ok(None)` for more input.
    fn varint(&mut self, b: &[u8], pos: &mut usize) -> Result<Option<u32>, ()> {
        // One byte (lengths and counts under 127, tag counts): the usual case.
        if self.vshift == 0
            && self.left > 0
            && let Some(&byte) = b.get(*pos)
            && byte < 0x80
        {
            *pos += 1;
            self.left -= 1;
            return Ok(Some(u32::from(byte)));
        }
        while self.left > 0 || *pos < b.len() {
            if self.left == 0 {
                return Err(());
            }
            if *pos >= b.len() {
                return Ok(None);
            }
            let byte = b[*pos];
            *pos += 1;
            self.left -= 1;
            self.vint |= u32::from(byte & 0x7f).wrapping_shl(self.vshift as u32);
            if byte & 0x80 == 0 {
                let v = self.vint;
                self.vint = 0;
                self.vshift = 0;
                return Ok(Some(v));
            }
            self.vshift += 7;
            if self.vshift > 28 {
                return Err(());
            }
        }
        Ok(None)
    }

    /// A length or count (-1 for null): compact (varint, + 1) in flexible versions, else
    /// 2 bytes (strings) or 4 (byte fields, arrays).
    fn length(&mut self, b: &[u8], pos: &mut usize, wide: bool) -> Result<Option<i64>, ()> {
        if self.flexible {
            return Ok(self.varint(b, pos)?.map(|v| i64::from(v) - 1));
        }
        let n = if wide {
            match self.take::<4>(b, pos) {
                Take::Got(x) => i64::from(i32::from_be_bytes(x)),
                Take::Wait => return Ok(None),
                Take::Bad => return Err(()),
            }
        } else {
            match self.take::<2>(b, pos) {
                Take::Got(x) => i64::from(i16::from_be_bytes(x)),
                Take::Wait => return Ok(None),
                Take::Bad => return Err(()),
            }
        };
        Ok(Some(n))
    }

    /// Whether a message plausibly starts at `b` (resynchronisation).
    fn plausible(&self, b: &[u8]) -> bool {
        let len = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        match self.side {
            Side::Requests => {
                if b.len() < 14 {
                    return false;
                }
                let l = len(b);
                let api = i16::from_be_bytes([b[4], b[5]]);
                let ver = i16::from_be_bytes([b[6], b[7]]);
                let client = i16::from_be_bytes([b[12], b[13]]);
                (10..=self.max_len as i32).contains(&l)
                    && api_name(api).is_some()
                    && (0..=max_version(api)).contains(&ver)
                    && client >= -1
                    && i32::from(client) <= l - 10
            }
            Side::Responses => {
                let Some((lo, hi)) = self.corr_window else {
                    return false;
                };
                if b.len() < 8 {
                    return false;
                }
                let l = len(b);
                let corr = len(&b[4..]);
                (4..=self.max_len as i32).contains(&l) && (lo..=hi).contains(&corr)
            }
        }
    }

    /// Read on from `b`: the bytes used and what they made, if anything. Call again with
    /// the rest until it returns `(n, None)` having used all of `b`.
    pub fn next(&mut self, b: &[u8]) -> (usize, Option<Ev>) {
        let mut pos = 0;
        loop {
            if self.st == St::Rest && self.left == 0 {
                self.st = St::Len;
                self.left = 4;
                return (
                    pos,
                    Some(Ev::End {
                        malformed: self.malformed,
                    }),
                );
            }
            // The walk may go on without input (structures ending, fields of other
            // versions); everything else needs bytes.
            if pos >= b.len() && self.st != St::Walk {
                return (pos, None);
            }
            match self.st {
                St::Lost => match (pos..b.len()).find(|&i| self.plausible(&b[i..])) {
                    Some(i) => {
                        pos = i;
                        self.st = St::Len;
                        self.left = 4;
                    }
                    // A chunk starting at a message (as TCP segments mostly do)
                    // resynchronises.
                    None => return (b.len(), None),
                },
                St::Len => match self.take::<4>(b, &mut pos) {
                    Take::Got(x) => {
                        let len = i32::from_be_bytes([x[0], x[1], x[2], x[3]]);
                        let min = match self.side {
                            Side::Requests => 8,
                            Side::Responses => 4,
                        };
                        if len < min || len as u32 > self.max_len {
                            self.lose_sync();
                            return (pos, Some(Ev::Malformed));
                        }
                        self.left = len as u64;
                        self.wire = len as u64 + 4;
                        self.malformed = false;
                        self.gap = false;
                        self.records = 0;
                        self.batches = 0;
                        self.st = St::Head;
                    }
                    Take::Wait => return (pos, None),
                    Take::Bad => {
                        self.lose_sync();
                        return (pos, Some(Ev::Malformed));
                    }
                },
                St::Head => {
                    let x = match self.side {
                        Side::Requests => match self.take::<8>(b, &mut pos) {
                            Take::Got(x) => Some(x),
                            Take::Wait => return (pos, None),
                            Take::Bad => None,
                        },
                        Side::Responses => match self.take::<4>(b, &mut pos) {
                            Take::Got([a, b, c, d]) => Some([a, b, c, d, 0, 0, 0, 0]),
                            Take::Wait => return (pos, None),
                            Take::Bad => None,
                        },
                    };
                    match x {
                        Some(x) => return (pos, Some(self.head(&x))),
                        None => self.bad(),
                    }
                }
                // The decoder did not say what the response answers.
                St::Await => self.st = St::Rest,
                St::Rest => {
                    let k = (self.left).min((b.len() - pos) as u64);
                    pos += k as usize;
                    self.left -= k;
                }
                St::Walk => match self.walk(b, &mut pos) {
                    Ok(Some(ev)) => return (pos, Some(ev)),
                    // Waiting for input (the walker uses all it is given first).
                    Ok(None) if self.st == St::Walk => return (pos, None),
                    Ok(None) => {}
                    Err(()) => self.bad(),
                },
            }
        }
    }

    /// The fixed head of a header.
    fn head(&mut self, x: &[u8; 8]) -> Ev {
        let wire = self.wire;
        match self.side {
            Side::Requests => {
                let api = i16::from_be_bytes([x[0], x[1]]);
                let version = i16::from_be_bytes([x[2], x[3]]);
                let corr = i32::from_be_bytes([x[4], x[5], x[6], x[7]]);
                match schema(api, version, Side::Requests) {
                    Some(fields) => self.begin(fields, api, version),
                    None => {
                        // The client id only; tagged fields after it need not be read.
                        self.begin(STOP, api, version);
                        self.flexible = false;
                    }
                }
                // ControlledShutdown v0 is the one request with header v0 (no client id).
                if !(api == 7 && version == 0) {
                    self.push(HEADER, 0, Kind::Header);
                }
                Ev::Request {
                    api,
                    version,
                    corr,
                    wire,
                }
            }
            Side::Responses => {
                self.st = St::Await;
                Ev::Response {
                    corr: i32::from_be_bytes([x[0], x[1], x[2], x[3]]),
                    wire,
                }
            }
        }
    }

    /// Walk fields until an event, the end of the walk (`st` leaves `Walk`), or the end
    /// of `b`.
    fn walk(&mut self, b: &[u8], pos: &mut usize) -> Result<Option<Ev>, ()> {
        macro_rules! take {
            ($n:expr) => {
                match self.take::<$n>(b, pos) {
                    Take::Got(x) => x,
                    Take::Wait => return Ok(None),
                    Take::Bad => return Err(()),
                }
            };
        }
        // A fixed-size field nothing is read of: passed over without copying it out.
        macro_rules! pass {
            ($n:expr) => {
                match self.fill(b, pos, $n) {
                    Fill::Input(_) | Fill::Carry => {}
                    Fill::Wait => return Ok(None),
                    Fill::Bad => return Err(()),
                }
            };
        }
        macro_rules! len {
            ($wide:expr) => {
                match self.length(b, pos, $wide)? {
                    Some(n) => n,
                    None => return Ok(None),
                }
            };
        }
        macro_rules! varint {
            () => {
                match self.varint(b, pos)? {
                    Some(n) => n,
                    None => return Ok(None),
                }
            };
        }
        loop {
            match self.sub {
                Sub::Skip(n) => {
                    let k = n.min((b.len() - *pos) as u64);
                    if k == 0 {
                        return Ok(None);
                    }
                    *pos += k as usize;
                    self.left -= k;
                    self.sub = if k == n { Sub::Next } else { Sub::Skip(n - k) };
                    continue;
                }
                Sub::Capture { name, len, rest } => {
                    let have = self.cap_len as usize;
                    let k = (len as usize - have).min(b.len() - *pos);
                    if k == 0 && have < len as usize {
                        return Ok(None);
                    }
                    self.cap[have..have + k].copy_from_slice(&b[*pos..*pos + k]);
                    *pos += k;
                    self.left -= k as u64;
                    self.cap_len += k as u16;
                    if self.cap_len < len {
                        return Ok(None);
                    }
                    self.sub = if rest > 0 { Sub::Skip(rest) } else { Sub::Next };
                    return Ok(Some(Ev::Name(name)));
                }
                Sub::TagCount => {
                    let n = varint!();
                    self.sub = if n > 0 {
                        Sub::Tags {
                            left: n,
                            size: false,
                        }
                    } else {
                        Sub::Next
                    };
                    continue;
                }
                Sub::Tags { left, size: false } => {
                    varint!();
                    self.sub = Sub::Tags { left, size: true };
                    continue;
                }
                Sub::Tags { left, size: true } => {
                    let n = u64::from(varint!());
                    if n > self.left {
                        return Err(());
                    }
                    self.sub = Sub::TagSkip { n, left: left - 1 };
                    continue;
                }
                Sub::TagSkip { n, left } => {
                    let k = n.min((b.len() - *pos) as u64);
                    if k == 0 && n > 0 {
                        return Ok(None);
                    }
                    *pos += k as usize;
                    self.left -= k;
                    self.sub = match (k == n, left) {
                        (false, _) => Sub::TagSkip { n: n - k, left },
                        (true, 0) => Sub::Next,
                        (true, left) => Sub::Tags { left, size: false },
                    };
                    continue;
                }
                Sub::Records { left, phase } => {
                    if left == 0 {
                        self.sub = Sub::Next;
                        continue;
                    }
                    match phase {
                        Batch::Head if left < 12 => self.sub = Sub::Skip(left),
                        Batch::Head => {
                            let x = take!(12);
                            let len = i32::from_be_bytes([x[8], x[9], x[10], x[11]]);
                            let left = left - 12;
                            self.sub = if len < 0 || len as u64 > left {
                                // A batch cut by the end of the set (a Fetch response
                                // filled up to its size limit): not counted.
                                Sub::Skip(left)
                            } else {
                                Sub::Records {
                                    left,
                                    phase: Batch::Header {
                                        n: (len as u32).min(49) as u8,
                                        len: len as u32,
                                    },
                                }
                            };
                        }
                        Batch::Header { n, len } => {
                            match self.fill(b, pos, n as usize) {
                                Fill::Input(at) => self.count_batch(&b[at..at + n as usize]),
                                Fill::Carry => {
                                    let c = self.carry;
                                    self.count_batch(&c[..n as usize]);
                                }
                                Fill::Wait => return Ok(None),
                                Fill::Bad => return Err(()),
                            }
                            self.sub = Sub::Records {
                                left: left - u64::from(n),
                                phase: Batch::Body(u64::from(len - u32::from(n))),
                            };
                        }
                        Batch::Body(n) => {
                            let k = n.min((b.len() - *pos) as u64);
                            if k == 0 && n > 0 {
                                return Ok(None);
                            }
                            *pos += k as usize;
                            self.left -= k;
                            self.sub = Sub::Records {
                                left: left - k,
                                phase: if k == n {
                                    Batch::Head
                                } else {
                                    Batch::Body(n - k)
                                },
                            };
                        }
                    }
                    continue;
                }
                Sub::Next => {}
            }
            // The next field of the top structure.
            let d = self.depth as usize - 1;
            let fr = self.stack[d];
            let Some(&F(t, lo, hi)) = fr.fields.get(fr.idx as usize) else {
                // The structure is over.
                if fr.kind == Kind::Body {
                    self.st = St::Rest;
                    return Ok(None);
                }
                if self.flexible && !fr.tags_done {
                    self.stack[d].tags_done = true;
                    self.sub = Sub::TagCount;
                    continue;
                }
                if fr.kind == Kind::Elem && fr.more > 0 {
                    self.stack[d] = Frame {
                        idx: 0,
                        more: fr.more - 1,
                        tags_done: false,
                        ..fr
                    };
                } else {
                    self.depth -= 1;
                }
                continue;
            };
            if self.version < lo || self.version > hi {
                self.stack[d].idx += 1;
                continue;
            }
            if let T::Stop = t {
                self.st = St::Rest;
                return Ok(None);
            }
            if self.left == 0 {
                return Err(());
            }
            if *pos >= b.len() {
                return Ok(None);
            }
            let ev = match t {
                T::I8 => {
                    pass!(1);
                    None
                }
                T::I16 => {
                    pass!(2);
                    None
                }
                T::I32 => {
                    pass!(4);
                    None
                }
                T::I64 => {
                    pass!(8);
                    None
                }
                T::Uuid => {
                    pass!(16);
                    None
                }
                T::Partition => {
                    let x = take!(4);
                    Some(Ev::Partition(i32::from_be_bytes([x[0], x[1], x[2], x[3]])))
                }
                T::Error => {
                    let x = take!(2);
                    Some(Ev::Error(i16::from_be_bytes([x[0], x[1]])))
                }
                T::Acks => {
                    let x = take!(2);
                    Some(Ev::Acks(i16::from_be_bytes([x[0], x[1]])))
                }
                T::KeyType => Some(Ev::KeyType(take!(1)[0] as i8)),
                T::TopicId => {
                    let x = take!(16);
                    Some(Ev::TopicId(x))
                }
                T::Str | T::Bytes => {
                    let n = len!(matches!(t, T::Bytes));
                    self.skip(n)?;
                    None
                }
                T::Cap(name) => {
                    let n = len!(false);
                    self.capture(name, n)?;
                    None
                }
                T::ClientId => {
                    // Never compact, even in header v2.
                    let flexible = std::mem::replace(&mut self.flexible, false);
                    let n = self.length(b, pos, false);
                    self.flexible = flexible;
                    let n = match n? {
                        Some(n) => n,
                        None => return Ok(None),
                    };
                    self.capture(Name::ClientId, n)?;
                    None
                }
                T::Records => {
                    let n = len!(true);
                    if n > 0 {
                        if n as u64 > self.left {
                            return Err(());
                        }
                        self.sub = Sub::Records {
                            left: n as u64,
                            phase: Batch::Head,
                        };
                    }
                    None
                }
                T::FixArr(size) => {
                    let n = len!(true);
                    self.skip(n.max(0) * i64::from(size))?;
                    None
                }
                T::FirstGroup => {
                    let n = len!(true);
                    if n <= 0 {
                        self.st = St::Rest;
                        return Ok(None);
                    }
                    // The first string, then the walk ends.
                    self.stack[d].idx += 1;
                    if !self.push(FIRST_GROUP, 0, Kind::Elem) {
                        return Err(());
                    }
                    continue;
                }
                T::Arr(fields) => {
                    let n = len!(true);
                    self.stack[d].idx += 1;
                    if n > 0
                        && (n as u64 > self.left || !self.push(fields, (n - 1) as u32, Kind::Elem))
                    {
                        return Err(());
                    }
                    continue;
                }
                // Handled above (it reads nothing).
                T::Stop => {
                    self.st = St::Rest;
                    return Ok(None);
                }
            };
            self.stack[d].idx += 1;
            if ev.is_some() {
                return Ok(ev);
            }
        }
    }
}

/// The records a record batch counts for, from its header (the bytes after base offset and
/// length: partition leader epoch, magic, crc, attributes, ..., records count); `None`
/// for a header too short or of an unknown magic (the batch is not counted).
fn batch_records(h: &[u8]) -> Option<u64> {
    match h.get(4) {
        Some(2) if h.len() >= 49 => {
            let attributes = u16::from_be_bytes([h[9], h[10]]);
            let n = i32::from_be_bytes([h[45], h[46], h[47], h[48]]);
            // Control batches (transaction markers) hold no messages.
            Some(if attributes & 0x20 == 0 { n.max(0) as u64 } else { 0 })
        }
        // Magic 0 and 1: a message set entry is one message (a compressed wrapper
        // counts as one: its inner messages are compressed).
        Some(0 | 1) => Some(1),
        _ => None,
    }
}

/// Where a whole-message walk hands what it reads besides the fixed fields (which it sums
/// in [`Walked::fields`]): the decoder's message, as the field walk's events would fill it.
/// An error ends the walk; the caller then reads the message with the field walk instead.
pub trait Sink<'a> {
    /// A name: its kept bytes (at most [`CAPTURE_MAX`]), a slice of the message.
    fn name(&mut self, name: Name, bytes: &'a [u8]) -> Result<(), NotWalked>;
    fn topic_id(&mut self, id: [u8; 16]) -> Result<(), NotWalked>;
}

/// A whole-message walk gave up: the message does not follow its schema, or the sink
/// declined what it read. The field walk reads the message instead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotWalked;

/// What a whole-message walk sums over the message.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Walked {
    /// Partitions, error codes, `acks` and `key_type`, as [`Fields::add`] sums them.
    pub fields: Fields,
    pub records: u64,
    pub batches: u32,
}

/// The fixed head of a message read by [`frame`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Head {
    Request { api: i16, version: i16, corr: i32 },
    Response { corr: i32 },
}

/// A message whole in one slice: its fixed head, the bytes after it, and its size on the
/// wire (length prefix included).
#[derive(Clone, Copy, Debug)]
pub struct Framed<'a> {
    pub head: Head,
    pub body: &'a [u8],
    pub wire: usize,
}

/// The message at the start of `b`, when all of it is there and its length is one
/// [`Parser`] accepts; `None` otherwise (the field walk frames it, and reports a bad
/// length).
#[inline]
pub fn frame(b: &[u8], side: Side, max_len: u32) -> Option<Framed<'_>> {
    let l = b.get(..4)?;
    let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
    let min = match side {
        Side::Requests => 8,
        Side::Responses => 4,
    };
    if len < min || len as u32 > max_len {
        return None;
    }
    let wire = 4 + len as usize;
    let m = b.get(4..wire)?;
    let head = match side {
        Side::Requests => Head::Request {
            api: i16::from_be_bytes([m[0], m[1]]),
            version: i16::from_be_bytes([m[2], m[3]]),
            corr: i32::from_be_bytes([m[4], m[5], m[6], m[7]]),
        },
        Side::Responses => Head::Response {
            corr: i32::from_be_bytes([m[0], m[1], m[2], m[3]]),
        },
    };
    let body = &m[if side == Side::Requests { 8 } else { 4 }..];
    Some(Framed { head, body, wire })
}

/// Walk a request whose bytes after the fixed head are `m` (the client id, the tagged
/// fields of header v2, the body), all of it at hand: the fields [`Parser`] reads, in the
/// same order, into `sink`.
pub fn walk_request<'a>(
    m: &'a [u8],
    api: i16,
    version: i16,
    sink: &mut impl Sink<'a>,
) -> Result<Walked, NotWalked> {
    // As `Parser::head`.
    let (body, flexible) = layout(api, version, Side::Requests).unwrap_or((STOP, false));
    let mut w = Whole::new(m, version, flexible, sink);
    // ControlledShutdown v0 is the one request with header v0 (no client id). The
    // others: [`HEADER`], then header v2's tagged fields.
    if !(api == 7 && version == 0) {
        let mut r = w.client_id();
        if r.is_ok() && flexible {
            r = w.tags();
        }
        if r.is_err() {
            return w.done(r);
        }
    }
    let r = match api {
        PRODUCE => w.produce_request(),
        _ => w.fields(body, Kind::Body, 1).map(|_| ()),
    };
    w.done(r)
}

/// Walk a response to `api` version `version` whose bytes after the correlation id are
/// `m`, as [`walk_request`]; `None` for `api`: the request is unknown, nothing is read.
pub fn walk_response<'a>(
    m: &'a [u8],
    what: Option<(i16, i16)>,
    sink: &mut impl Sink<'a>,
) -> Result<Walked, NotWalked> {
    // As `Parser::expect`.
    let Some((api, version, (body, flexible))) =
        what.and_then(|(api, v)| Some((api, v, layout(api, v, Side::Responses)?)))
    else {
        return Ok(Walked::default());
    };
    let mut w = Whole::new(m, version, flexible, sink);
    // ApiVersions answers with header v0 always.
    let mut r = Ok(());
    if flexible && api != API_VERSIONS {
        r = w.tags();
    }
    if r.is_ok() {
        r = match api {
            PRODUCE => w.produce_response(),
            _ => w.fields(body, Kind::Body, 1).map(|_| ()),
        };
    }
    w.done(r)
}

/// The schema of `api` `version` on `side` and whether that version is flexible, as
/// [`schema`] and [`flexible_from`] say (both whole-message walks read them so).
pub(super) fn layout(api: i16, version: i16, side: Side) -> Option<(&'static [F], bool)> {
    let body = schema(api, version, side)?;
    Some((body, flexible_from(api).is_some_and(|f| version >= f)))
}

/// Whether a whole-message walk goes on after a structure.
enum Flow {
    Go,
    /// Nothing more is read of the message (the body ended, or a `Stop`).
    Stop,
}

/// The walk of a message whose bytes are all in one slice (the usual case: a request or
/// response of a few hundred bytes in its own segment). It reads the same fields in the
/// same order as [`Parser::walk`], but straight from the slice, with nothing kept between
/// bytes: no carry, no per-field state to save and restore, the nesting on the call
/// stack, and what it finds handed straight to the decoder's message.
struct Whole<'a, 's, S> {
    m: &'a [u8],
    pos: usize,
    version: u8,
    flexible: bool,
    sink: &'s mut S,
    walked: Walked,
}

impl<'a, 's, S: Sink<'a>> Whole<'a, 's, S> {
    fn new(m: &'a [u8], version: i16, flexible: bool, sink: &'s mut S) -> Self {
        Whole {
            m,
            pos: 0,
            // As `Parser::begin`.
            version: version.clamp(0, ANY as i16 - 1) as u8,
            flexible,
            sink,
            walked: Walked::default(),
        }
    }

    /// What the walk summed, unless it failed.
    fn done(self, r: Result<(), ()>) -> Result<Walked, NotWalked> {
        r.map(|()| self.walked).map_err(|()| NotWalked)
    }

    fn left(&self) -> usize {
        self.m.len() - self.pos
    }

    #[inline]
    fn bytes<const N: usize>(&mut self) -> Result<[u8; N], ()> {
        let s = self.m.get(self.pos..self.pos + N).ok_or(())?;
        self.pos += N;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    /// Pass over `n` bytes nothing is read of.
    #[inline]
    fn pass(&mut self, n: usize) -> Result<(), ()> {
        if n > self.left() {
            return Err(());
        }
        self.pos += n;
        Ok(())
    }

    /// As [`Parser::varint`]: five bytes at most.
    #[inline]
    fn varint(&mut self) -> Result<u32, ()> {
        // One byte (lengths and counts under 127, tag counts): the usual case.
        let first = *self.m.get(self.pos).ok_or(())?;
        if first < 0x80 {
            self.pos += 1;
            return Ok(u32::from(first));
        }
        let mut v = 0u32;
        for shift in (0..35).step_by(7) {
            let byte = *self.m.get(self.pos).ok_or(())?;
            self.pos += 1;
            v |= u32::from(byte & 0x7f).wrapping_shl(shift);
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(())
    }

    /// As [`Parser::length`].
    fn length(&mut self, wide: bool) -> Result<i64, ()> {
        if self.flexible {
            return Ok(i64::from(self.varint()?) - 1);
        }
        Ok(if wide {
            i64::from(i32::from_be_bytes(self.bytes::<4>()?))
        } else {
            i64::from(i16::from_be_bytes(self.bytes::<2>()?))
        })
    }

    fn skip(&mut self, n: i64) -> Result<(), ()> {
        if n > 0 {
            if n as u64 > self.left() as u64 {
                return Err(());
            }
            self.pos += n as usize;
        }
        Ok(())
    }

    /// A partition index, summed in [`Walked::fields`].
    #[inline]
    fn partition(&mut self) -> Result<(), ()> {
        let p = i32::from_be_bytes(self.bytes::<4>()?);
        self.walked.fields.add(Fields::partition(p));
        Ok(())
    }

    /// An error code, summed in [`Walked::fields`].
    #[inline]
    fn error(&mut self) -> Result<(), ()> {
        let e = i16::from_be_bytes(self.bytes::<2>()?);
        self.walked.fields.add(Fields::error(e));
        Ok(())
    }

    /// As [`Parser::capture`].
    fn capture(&mut self, name: Name, n: i64) -> Result<(), ()> {
        if n < 0 {
            return Ok(());
        }
        if n as u64 > self.left() as u64 {
            return Err(());
        }
        let len = (n as usize).min(CAPTURE_MAX);
        let m = self.m;
        self.sink.name(name, &m[self.pos..self.pos + len]).map_err(|_| ())?;
        self.pos += n as usize;
        Ok(())
    }

    /// The request header's client id: never compact, even in header v2.
    #[inline]
    fn client_id(&mut self) -> Result<(), ()> {
        let n = i64::from(i16::from_be_bytes(self.bytes::<2>()?));
        self.capture(Name::ClientId, n)
    }

    /// A structure's tagged fields (flexible versions).
    #[inline]
    fn tags(&mut self) -> Result<(), ()> {
        // None: the usual case.
        if self.m.get(self.pos) == Some(&0) {
            self.pos += 1;
            return Ok(());
        }
        self.some_tags()
    }

    /// Tagged fields, as [`Whole::tags`], when there may be some.
    #[inline(never)]
    fn some_tags(&mut self) -> Result<(), ()> {
        for _ in 0..self.varint()? {
            self.varint()?;
            let n = self.varint()?;
            self.skip(i64::from(n))?;
        }
        Ok(())
    }

    /// A record set of `n` bytes, batch by batch, as the walk's `Sub::Records`.
    fn records(&mut self, n: i64) -> Result<(), ()> {
        if n <= 0 {
            return Ok(());
        }
        if n as u64 > self.left() as u64 {
            return Err(());
        }
        let mut left = n as usize;
        while left > 0 {
            if left < 12 {
                self.pos += left;
                break;
            }
            let x = self.bytes::<12>()?;
            left -= 12;
            let len = i32::from_be_bytes([x[8], x[9], x[10], x[11]]);
            if len < 0 || len as usize > left {
                // Cut by the end of the set: not counted.
                self.pos += left;
                break;
            }
            let h = (len as usize).min(49);
            if let Some(r) = batch_records(&self.m[self.pos..self.pos + h]) {
                self.walked.records += r;
                self.walked.batches += 1;
            }
            self.pos += len as usize;
            left -= len as usize;
        }
        Ok(())
    }

    /// One structure of kind `kind` at nesting `depth` (frames on the walk's stack).
    fn fields(&mut self, fields: &'static [F], kind: Kind, depth: usize) -> Result<Flow, ()> {
        for F(t, lo, hi) in fields {
            if self.version < *lo || self.version > *hi {
                continue;
            }
            // (A field with no bytes left fails on reading them, as the field walk fails.)
            match *t {
                T::I8 => self.pass(1)?,
                T::I16 => self.pass(2)?,
                T::I32 => self.pass(4)?,
                T::I64 => self.pass(8)?,
                T::Uuid => self.pass(16)?,
                T::Partition => self.partition()?,
                T::Error => self.error()?,
                T::Acks => {
                    let x = i16::from_be_bytes(self.bytes::<2>()?);
                    self.walked.fields.add(Fields::acks(x));
                }
                T::KeyType => {
                    let x = self.bytes::<1>()?[0] as i8;
                    self.walked.fields.add(Fields::key_type(x));
                }
                T::TopicId => {
                    let x = self.bytes::<16>()?;
                    self.sink.topic_id(x).map_err(|_| ())?;
                }
                T::Str | T::Bytes => {
                    let n = self.length(matches!(t, T::Bytes))?;
                    self.skip(n)?;
                }
                T::Cap(name) => {
                    let n = self.length(false)?;
                    self.capture(name, n)?;
                }
                T::ClientId => self.client_id()?,
                T::Records => {
                    let n = self.length(true)?;
                    self.records(n)?;
                }
                T::FixArr(size) => {
                    let n = self.length(true)?;
                    self.skip(n.max(0) * i64::from(size))?;
                }
                T::FirstGroup => {
                    let n = self.length(true)?;
                    if n <= 0 || depth >= DEPTH {
                        // (Too deep: the walk would call it malformed.)
                        return if n <= 0 { Ok(Flow::Stop) } else { Err(()) };
                    }
                    return self.fields(FIRST_GROUP, Kind::Elem, depth + 1);
                }
                T::Arr(inner) => {
                    let n = self.length(true)?;
                    if n > 0 {
                        if n as u64 > self.left() as u64 || depth >= DEPTH {
                            return Err(());
                        }
                        for _ in 0..n {
                            if let Flow::Stop = self.fields(inner, Kind::Elem, depth + 1)? {
                                return Ok(Flow::Stop);
                            }
                        }
                    }
                }
                T::Stop => return Ok(Flow::Stop),
            }
        }
        if kind == Kind::Body {
            return Ok(Flow::Stop);
        }
        self.struct_end()?;
        Ok(Flow::Go)
    }
}

/// Produce, most of the requests of a busy cluster, walked by code written for it: the
/// fields of [`PRODUCE_REQ`] and [`PRODUCE_RESP`] in the same order with the same checks,
/// without reading the schemas' entries one by one (which took about a sixth of a whole
/// replay's instructions on a Produce capture). The tests hold both walks to the field
/// walk's events for every version.
impl<'a, S: Sink<'a>> Whole<'a, '_, S> {
    /// An array's element count (`Arr`): none, or at most one per byte left.
    #[inline]
    fn count(&mut self) -> Result<u64, ()> {
        let n = self.length(true)?;
        if n <= 0 {
            return Ok(0);
        }
        if n as u64 > self.left() as u64 {
            return Err(());
        }
        Ok(n as u64)
    }

    /// The end of a structure: its tagged fields, in the flexible versions.
    #[inline]
    fn struct_end(&mut self) -> Result<(), ()> {
        if self.flexible { self.tags() } else { Ok(()) }
    }

    /// A string nothing is read of.
    #[inline]
    fn skip_str(&mut self) -> Result<(), ()> {
        let n = self.length(false)?;
        self.skip(n)
    }

    /// A topic's name (v0-v12) or id (v13).
    #[inline]
    fn produce_topic(&mut self) -> Result<(), ()> {
        if self.version <= 12 {
            let n = self.length(false)?;
            self.capture(Name::Topic, n)
        } else {
            let id = self.bytes::<16>()?;
            self.sink.topic_id(id).map_err(|_| ())
        }
    }

    /// As [`PRODUCE_REQ`].
    fn produce_request(&mut self) -> Result<(), ()> {
        if self.version >= 3 {
            self.skip_str()?; // transactional_id
        }
        let acks = i16::from_be_bytes(self.bytes::<2>()?);
        self.walked.fields.add(Fields::acks(acks));
        self.pass(4)?; // timeout_ms
        for _ in 0..self.count()? {
            self.produce_topic()?;
            for _ in 0..self.count()? {
                self.partition()?;
                let n = self.length(true)?;
                self.records(n)?;
                self.struct_end()?;
            }
            self.struct_end()?;
        }
        Ok(())
    }

    /// As [`PRODUCE_RESP`].
    fn produce_response(&mut self) -> Result<(), ()> {
        let v = self.version;
        for _ in 0..self.count()? {
            self.produce_topic()?;
            for _ in 0..self.count()? {
                self.partition()?;
                self.error()?;
                // base_offset, log_append_time_ms (v2+), log_start_offset (v5+)
                self.pass(8 + 8 * usize::from(v >= 2) + 8 * usize::from(v >= 5))?;
                if v >= 8 {
                    for _ in 0..self.count()? {
                        // record_errors: batch_index, batch_index_error_message
                        self.pass(4)?;
                        self.skip_str()?;
                        self.struct_end()?;
                    }
                    self.skip_str()?; // error_message
                }
                self.struct_end()?;
            }
            self.struct_end()?;
        }
        Ok(())
    }
}

// API keys the decoder treats specially.
pub const PRODUCE: i16 = 0;
pub const FETCH: i16 = 1;
pub const METADATA: i16 = 3;
pub const OFFSET_COMMIT: i16 = 8;
pub const FIND_COORDINATOR: i16 = 10;
pub const API_VERSIONS: i16 = 18;
pub const TXN_OFFSET_COMMIT: i16 = 28;

use T::*;

/// The request header after its fixed head: the client id (tagged fields follow in
/// flexible versions).
const HEADER: &[F] = &[F(ClientId, 0, ANY)];
/// Nothing to read.
const STOP: &[F] = &[F(Stop, 0, ANY)];
/// The first string of an array, reported as the consumer group.
const FIRST_GROUP: &[F] = &[F(Cap(Name::Group), 0, ANY), F(Stop, 0, ANY)];
/// throttle_time_ms (from `v`), error_code: the start of most responses.
macro_rules! throttle_error {
    ($v:expr) => {
        &[F(I32, $v, ANY), F(Error, 0, ANY), F(Stop, 0, ANY)]
    };
}
const GROUP_FIRST: &[F] = &[F(Cap(Name::Group), 0, ANY), F(Stop, 0, ANY)];
const ERROR_FIRST: &[F] = &[F(Error, 0, ANY), F(Stop, 0, ANY)];

// Produce.
const PRODUCE_REQ: &[F] = &[
    F(Str, 3, ANY), // transactional_id
    F(Acks, 0, ANY),
    F(I32, 0, ANY), // timeout_ms
    F(Arr(PRODUCE_REQ_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const PRODUCE_REQ_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 12),
    F(TopicId, 13, ANY),
    F(Arr(PRODUCE_REQ_PART), 0, ANY),
];
const PRODUCE_REQ_PART: &[F] = &[F(Partition, 0, ANY), F(Records, 0, ANY)];
const PRODUCE_RESP: &[F] = &[F(Arr(PRODUCE_RESP_TOPIC), 0, ANY), F(Stop, 0, ANY)];
const PRODUCE_RESP_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 12),
    F(TopicId, 13, ANY),
    F(Arr(PRODUCE_RESP_PART), 0, ANY),
];
const PRODUCE_RESP_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(Error, 0, ANY),
    F(I64, 0, ANY), // base_offset
    F(I64, 2, ANY), // log_append_time_ms
    F(I64, 5, ANY), // log_start_offset
    F(Arr(RECORD_ERROR), 8, ANY),
    F(Str, 8, ANY), // error_message
];
const RECORD_ERROR: &[F] = &[F(I32, 0, ANY), F(Str, 0, ANY)];

// Fetch.
const FETCH_REQ: &[F] = &[
    F(I32, 0, 14),  // replica_id
    F(I32, 0, ANY), // max_wait_ms
    F(I32, 0, ANY), // min_bytes
    F(I32, 3, ANY), // max_bytes
    F(I8, 4, ANY),  // isolation_level
    F(I32, 7, ANY), // session_id
    F(I32, 7, ANY), // session_epoch
    F(Arr(FETCH_REQ_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const FETCH_REQ_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 12),
    F(TopicId, 13, ANY),
    F(Arr(FETCH_REQ_PART), 0, ANY),
];
const FETCH_REQ_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(I32, 9, ANY),  // current_leader_epoch
    F(I64, 0, ANY),  // fetch_offset
    F(I32, 12, ANY), // last_fetched_epoch
    F(I64, 5, ANY),  // log_start_offset
    F(I32, 0, ANY),  // partition_max_bytes
];
const FETCH_RESP: &[F] = &[
    F(I32, 1, ANY), // throttle_time_ms
    F(Error, 7, ANY),
    F(I32, 7, ANY), // session_id
    F(Arr(FETCH_RESP_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const FETCH_RESP_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 12),
    F(TopicId, 13, ANY),
    F(Arr(FETCH_RESP_PART), 0, ANY),
];
const FETCH_RESP_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(Error, 0, ANY),
    F(I64, 0, ANY), // high_watermark
    F(I64, 4, ANY), // last_stable_offset
    F(I64, 5, ANY), // log_start_offset
    F(Arr(ABORTED), 4, ANY),
    F(I32, 11, ANY), // preferred_read_replica
    F(Records, 0, ANY),
];
const ABORTED: &[F] = &[F(I64, 0, ANY), F(I64, 0, ANY)];

// Metadata: topic names with their ids (for Fetch v13+), errors.
const METADATA_RESP: &[F] = &[
    F(I32, 3, ANY), // throttle_time_ms
    F(Arr(METADATA_BROKER), 0, ANY),
    F(Str, 2, ANY), // cluster_id
    F(I32, 1, ANY), // controller_id
    F(Arr(METADATA_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const METADATA_BROKER: &[F] = &[
    F(I32, 0, ANY), // node_id
    F(Str, 0, ANY), // host
    F(I32, 0, ANY), // port
    F(Str, 1, ANY), // rack
];
const METADATA_TOPIC: &[F] = &[
    F(Error, 0, ANY),
    F(Cap(Name::Topic), 0, ANY),
    F(TopicId, 10, ANY),
    F(I8, 1, ANY), // is_internal
    F(Arr(METADATA_PART), 0, ANY),
    F(I32, 8, ANY), // topic_authorized_operations
];
const METADATA_PART: &[F] = &[
    F(Error, 0, ANY),
    F(I32, 0, ANY),       // partition_index
    F(I32, 0, ANY),       // leader_id
    F(I32, 7, ANY),       // leader_epoch
    F(FixArr(4), 0, ANY), // replica_nodes
    F(FixArr(4), 0, ANY), // isr_nodes
    F(FixArr(4), 5, ANY), // offline_replicas
];

// ListOffsets.
const LIST_OFFSETS_REQ: &[F] = &[
    F(I32, 0, ANY), // replica_id
    F(I8, 2, ANY),  // isolation_level
    F(Arr(LIST_OFFSETS_REQ_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const LIST_OFFSETS_REQ_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, ANY),
    F(Arr(LIST_OFFSETS_REQ_PART), 0, ANY),
];
const LIST_OFFSETS_REQ_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(I32, 4, ANY), // current_leader_epoch
    F(I64, 0, ANY), // timestamp
    F(I32, 0, 0),   // max_num_offsets
];
const LIST_OFFSETS_RESP: &[F] = &[
    F(I32, 2, ANY),
    F(Arr(LIST_OFFSETS_RESP_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const LIST_OFFSETS_RESP_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, ANY),
    F(Arr(LIST_OFFSETS_RESP_PART), 0, ANY),
];
const LIST_OFFSETS_RESP_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(Error, 0, ANY),
    F(FixArr(8), 0, 0), // old_style_offsets
    F(I64, 1, ANY),     // timestamp
    F(I64, 1, ANY),     // offset
    F(I32, 4, ANY),     // leader_epoch
];

// OffsetCommit.
const OFFSET_COMMIT_REQ: &[F] = &[
    F(Cap(Name::Group), 0, ANY),
    F(I32, 1, ANY), // generation_id
    F(Str, 1, ANY), // member_id
    F(Str, 7, ANY), // group_instance_id
    F(I64, 2, 4),   // retention_time_ms
    F(Arr(OFFSET_COMMIT_REQ_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const OFFSET_COMMIT_REQ_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 9),
    F(TopicId, 10, ANY),
    F(Arr(OFFSET_COMMIT_REQ_PART), 0, ANY),
];
const OFFSET_COMMIT_REQ_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(I64, 0, ANY), // committed_offset
    F(I32, 6, ANY), // committed_leader_epoch
    F(I64, 1, 1),   // commit_timestamp
    F(Str, 0, ANY), // committed_metadata
];
const OFFSET_COMMIT_RESP: &[F] = &[
    F(I32, 3, ANY),
    F(Arr(OFFSET_COMMIT_RESP_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const OFFSET_COMMIT_RESP_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 9),
    F(TopicId, 10, ANY),
    F(Arr(PARTITION_ERROR), 0, ANY),
];
const PARTITION_ERROR: &[F] = &[F(Partition, 0, ANY), F(Error, 0, ANY)];

// OffsetFetch.
const OFFSET_FETCH_REQ: &[F] = &[
    F(Cap(Name::Group), 0, 7),
    F(Arr(FIRST_GROUP), 8, ANY),
    F(Stop, 0, ANY),
];
const OFFSET_FETCH_RESP: &[F] = &[
    F(I32, 3, ANY),
    F(Arr(OFFSET_FETCH_TOPIC), 0, 7),
    F(Error, 2, 7),
    F(Arr(OFFSET_FETCH_GROUP), 8, ANY),
    F(Stop, 0, ANY),
];
const OFFSET_FETCH_GROUP: &[F] = &[
    F(Cap(Name::Group), 0, ANY),
    F(Arr(OFFSET_FETCH_TOPIC), 0, ANY),
    F(Error, 0, ANY),
];
const OFFSET_FETCH_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, 9),
    F(TopicId, 10, ANY),
    F(Arr(OFFSET_FETCH_PART), 0, ANY),
];
const OFFSET_FETCH_PART: &[F] = &[
    F(Partition, 0, ANY),
    F(I64, 0, ANY), // committed_offset
    F(I32, 5, ANY), // committed_leader_epoch
    F(Str, 0, ANY), // metadata
    F(Error, 0, ANY),
];

// FindCoordinator.
const FIND_COORDINATOR_REQ: &[F] = &[
    F(Cap(Name::Group), 0, 3), // key
    F(KeyType, 1, ANY),
    F(FirstGroup, 4, ANY), // coordinator_keys
    F(Stop, 0, ANY),
];
const FIND_COORDINATOR_RESP: &[F] = &[
    F(I32, 1, ANY),
    F(Error, 0, 3),
    F(Arr(COORDINATOR), 4, ANY),
    F(Stop, 0, ANY),
];
const COORDINATOR: &[F] = &[
    F(Str, 0, ANY), // key
    F(I32, 0, ANY), // node_id
    F(Str, 0, ANY), // host
    F(I32, 0, ANY), // port
    F(Error, 0, ANY),
    F(Str, 0, ANY), // error_message
];

// Transactions.
const ADD_OFFSETS_TO_TXN_REQ: &[F] = &[
    F(Str, 0, ANY), // transactional_id
    F(I64, 0, ANY), // producer_id
    F(I16, 0, ANY), // producer_epoch
    F(Cap(Name::Group), 0, ANY),
    F(Stop, 0, ANY),
];
const TXN_OFFSET_COMMIT_REQ: &[F] = &[
    F(Str, 0, ANY), // transactional_id
    F(Cap(Name::Group), 0, ANY),
    F(Stop, 0, ANY),
];
const TXN_OFFSET_COMMIT_RESP: &[F] = &[F(I32, 0, ANY), F(Arr(TXN_TOPIC), 0, ANY), F(Stop, 0, ANY)];
const TXN_TOPIC: &[F] = &[F(Cap(Name::Topic), 0, ANY), F(Arr(PARTITION_ERROR), 0, ANY)];

// Topic administration.
const CREATE_TOPICS_RESP: &[F] = &[
    F(I32, 2, ANY),
    F(Arr(CREATE_TOPICS_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const CREATE_TOPICS_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, ANY),
    F(TopicId, 7, ANY),
    F(Error, 0, ANY),
    F(Str, 1, ANY), // error_message
    F(I32, 5, ANY), // num_partitions
    F(I16, 5, ANY), // replication_factor
    F(Arr(CREATE_TOPICS_CONFIG), 5, ANY),
];
const CREATE_TOPICS_CONFIG: &[F] = &[
    F(Str, 0, ANY),
    F(Str, 0, ANY),
    F(I8, 0, ANY),
    F(I8, 0, ANY),
    F(I8, 0, ANY),
];
const DELETE_TOPICS_RESP: &[F] = &[
    F(I32, 1, ANY),
    F(Arr(DELETE_TOPICS_TOPIC), 0, ANY),
    F(Stop, 0, ANY),
];
const DELETE_TOPICS_TOPIC: &[F] = &[
    F(Cap(Name::Topic), 0, ANY),
    F(TopicId, 6, ANY),
    F(Error, 0, ANY),
    F(Str, 5, ANY),
];

/// The fields walked of a message of `api` version `version` (None: the body is skipped;
/// versions newer than those known are skipped too, their layout may have changed).
pub fn schema(api: i16, version: i16, side: Side) -> Option<&'static [F]> {
    if !(0..=max_version(api)).contains(&version) {
        return None;
    }
    let req = side == Side::Requests;
    Some(match api {
        PRODUCE if req => PRODUCE_REQ,
        PRODUCE => PRODUCE_RESP,
        FETCH if req => FETCH_REQ,
        FETCH => FETCH_RESP,
        2 if req => LIST_OFFSETS_REQ,
        2 => LIST_OFFSETS_RESP,
        METADATA if req => return None,
        METADATA => METADATA_RESP,
        OFFSET_COMMIT if req => OFFSET_COMMIT_REQ,
        OFFSET_COMMIT => OFFSET_COMMIT_RESP,
        9 if req => OFFSET_FETCH_REQ,
        9 => OFFSET_FETCH_RESP,
        FIND_COORDINATOR if req => FIND_COORDINATOR_REQ,
        FIND_COORDINATOR => FIND_COORDINATOR_RESP,
        // JoinGroup, Heartbeat, LeaveGroup, SyncGroup: the group first.
        11..=14 if req => GROUP_FIRST,
        11 => throttle_error!(2),
        12..=14 => throttle_error!(1),
        // DescribeGroups: an array of groups.
        15 if req => &[F(FirstGroup, 0, ANY)],
        16 if !req => throttle_error!(1), // ListGroups
        // SaslHandshake, ApiVersions, SaslAuthenticate: the error first. Their payloads
        // (mechanism data, tokens) are never read.
        17 | API_VERSIONS | 36 if !req => ERROR_FIRST,
        19 if !req => CREATE_TOPICS_RESP,
        20 if !req => DELETE_TOPICS_RESP,
        22 | 26 if !req => throttle_error!(0), // InitProducerId, EndTxn
        25 if req => ADD_OFFSETS_TO_TXN_REQ,
        25 => throttle_error!(0),
        TXN_OFFSET_COMMIT if req => TXN_OFFSET_COMMIT_REQ,
        TXN_OFFSET_COMMIT => TXN_OFFSET_COMMIT_RESP,
        _ => return None,
    })
}

/// The newest version of `api` whose layout the schemas know (older ones are walked,
/// newer ones only framed and paired).
pub fn max_version(api: i16) -> i16 {
    match api {
        PRODUCE => 13,
        FETCH => 18,
        2 => 11,
        METADATA => 13,
        OFFSET_COMMIT => 10,
        9 => 10,
        FIND_COORDINATOR => 6,
        11 => 9,
        12 => 4,
        13 => 5,
        14 => 5,
        15 => 6,
        16 => 5,
        17 => 1,
        API_VERSIONS => 4,
        19 => 7,
        20 => 6,
        22 => 6,
        25 => 4,
        26 => 5,
        TXN_OFFSET_COMMIT => 5,
        36 => 2,
        // Framing and pairing only: any version a client may send.
        _ if api_name(api).is_some() => 20,
        _ => -1,
    }
}

/// The first flexible version of `api` (compact encodings, tagged fields, header v2 for
/// the request and v1 for the response); None: never flexible.
pub fn flexible_from(api: i16) -> Option<i16> {
    Some(match api {
        0 => 9,
        1 => 12,
        2 => 6,
        3 => 9,
        4 => 4,
        5 => 2,
        6 => 6,
        7 => 3,
        8 => 8,
        9 => 6,
        10 => 3,
        11 => 6,
        12 => 4,
        13 => 4,
        14 => 4,
        15 => 5,
        16 => 3,
        17 => return None,
        18 => 3,
        19 => 5,
        20 => 4,
        21 => 2,
        22 => 2,
        23 => 4,
        24 => 3,
        25 => 3,
        26 => 3,
        27 => 1,
        28 => 3,
        29..=31 => 2,
        32 => 4,
        33..=35 => 2,
        36..=42 => 2,
        43 => 2,
        44 => 1,
        45 | 46 => 0,
        47 => return None,
        48 | 49 => 1,
        53 | 54 => 1,
        50..=92 => 0,
        _ => return None,
    })
}

/// The API's name, as Kafka's message schemas spell it.
pub fn api_name(api: i16) -> Option<&'static str> {
    const NAMES: [&str; 93] = [
        "Produce",
        "Fetch",
        "ListOffsets",
        "Metadata",
        "LeaderAndIsr",
        "StopReplica",
        "UpdateMetadata",
        "ControlledShutdown",
        "OffsetCommit",
        "OffsetFetch",
        "FindCoordinator",
        "JoinGroup",
        "Heartbeat",
        "LeaveGroup",
        "SyncGroup",
        "DescribeGroups",
        "ListGroups",
        "SaslHandshake",
        "ApiVersions",
        "CreateTopics",
        "DeleteTopics",
        "DeleteRecords",
        "InitProducerId",
        "OffsetForLeaderEpoch",
        "AddPartitionsToTxn",
        "AddOffsetsToTxn",
        "EndTxn",
        "WriteTxnMarkers",
        "TxnOffsetCommit",
        "DescribeAcls",
        "CreateAcls",
        "DeleteAcls",
        "DescribeConfigs",
        "AlterConfigs",
        "AlterReplicaLogDirs",
        "DescribeLogDirs",
        "SaslAuthenticate",
        "CreatePartitions",
        "CreateDelegationToken",
        "RenewDelegationToken",
        "ExpireDelegationToken",
        "DescribeDelegationToken",
        "DeleteGroups",
        "ElectLeaders",
        "IncrementalAlterConfigs",
        "AlterPartitionReassignments",
        "ListPartitionReassignments",
        "OffsetDelete",
        "DescribeClientQuotas",
        "AlterClientQuotas",
        "DescribeUserScramCredentials",
        "AlterUserScramCredentials",
        "Vote",
        "BeginQuorumEpoch",
        "EndQuorumEpoch",
        "DescribeQuorum",
        "AlterPartition",
        "UpdateFeatures",
        "Envelope",
        "FetchSnapshot",
        "DescribeCluster",
        "DescribeProducers",
        "BrokerRegistration",
        "BrokerHeartbeat",
        "UnregisterBroker",
        "DescribeTransactions",
        "ListTransactions",
        "AllocateProducerIds",
        "ConsumerGroupHeartbeat",
        "ConsumerGroupDescribe",
        "ControllerRegistration",
        "GetTelemetrySubscriptions",
        "PushTelemetry",
        "AssignReplicasToDirs",
        "ListClientMetricsResources",
        "DescribeTopicPartitions",
        "ShareGroupHeartbeat",
        "ShareGroupDescribe",
        "ShareFetch",
        "ShareAcknowledge",
        "AddRaftVoter",
        "RemoveRaftVoter",
        "UpdateRaftVoter",
        "InitializeShareGroupState",
        "ReadShareGroupState",
        "WriteShareGroupState",
        "DeleteShareGroupState",
        "ReadShareGroupStateSummary",
        "StreamsGroupHeartbeat",
        "StreamsGroupDescribe",
        "DescribeShareGroupOffsets",
        "AlterShareGroupOffsets",
        "DeleteShareGroupOffsets",
    ];
    usize::try_from(api)
        .ok()
        .and_then(|i| NAMES.get(i).copied())
}

/// Kafka's name of an error code (`Errors.java`), None for 0 and codes it does not know.
pub fn error_name(code: i16) -> Option<&'static str> {
    const NAMES: [&str; 134] = [
        "NONE",
        "OFFSET_OUT_OF_RANGE",
        "CORRUPT_MESSAGE",
        "UNKNOWN_TOPIC_OR_PARTITION",
        "INVALID_FETCH_SIZE",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_OR_FOLLOWER",
        "REQUEST_TIMED_OUT",
        "BROKER_NOT_AVAILABLE",
        "REPLICA_NOT_AVAILABLE",
        "MESSAGE_TOO_LARGE",
        "STALE_CONTROLLER_EPOCH",
        "OFFSET_METADATA_TOO_LARGE",
        "NETWORK_EXCEPTION",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "COORDINATOR_NOT_AVAILABLE",
        "NOT_COORDINATOR",
        "INVALID_TOPIC_EXCEPTION",
        "RECORD_LIST_TOO_LARGE",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "INVALID_REQUIRED_ACKS",
        "ILLEGAL_GENERATION",
        "INCONSISTENT_GROUP_PROTOCOL",
        "INVALID_GROUP_ID",
        "UNKNOWN_MEMBER_ID",
        "INVALID_SESSION_TIMEOUT",
        "REBALANCE_IN_PROGRESS",
        "INVALID_COMMIT_OFFSET_SIZE",
        "TOPIC_AUTHORIZATION_FAILED",
        "GROUP_AUTHORIZATION_FAILED",
        "CLUSTER_AUTHORIZATION_FAILED",
        "INVALID_TIMESTAMP",
        "UNSUPPORTED_SASL_MECHANISM",
        "ILLEGAL_SASL_STATE",
        "UNSUPPORTED_VERSION",
        "TOPIC_ALREADY_EXISTS",
        "INVALID_PARTITIONS",
        "INVALID_REPLICATION_FACTOR",
        "INVALID_REPLICA_ASSIGNMENT",
        "INVALID_CONFIG",
        "NOT_CONTROLLER",
        "INVALID_REQUEST",
        "UNSUPPORTED_FOR_MESSAGE_FORMAT",
        "POLICY_VIOLATION",
        "OUT_OF_ORDER_SEQUENCE_NUMBER",
        "DUPLICATE_SEQUENCE_NUMBER",
        "INVALID_PRODUCER_EPOCH",
        "INVALID_TXN_STATE",
        "INVALID_PRODUCER_ID_MAPPING",
        "INVALID_TRANSACTION_TIMEOUT",
        "CONCURRENT_TRANSACTIONS",
        "TRANSACTION_COORDINATOR_FENCED",
        "TRANSACTIONAL_ID_AUTHORIZATION_FAILED",
        "SECURITY_DISABLED",
        "OPERATION_NOT_ATTEMPTED",
        "KAFKA_STORAGE_ERROR",
        "LOG_DIR_NOT_FOUND",
        "SASL_AUTHENTICATION_FAILED",
        "UNKNOWN_PRODUCER_ID",
        "REASSIGNMENT_IN_PROGRESS",
        "DELEGATION_TOKEN_AUTH_DISABLED",
        "DELEGATION_TOKEN_NOT_FOUND",
        "DELEGATION_TOKEN_OWNER_MISMATCH",
        "DELEGATION_TOKEN_REQUEST_NOT_ALLOWED",
        "DELEGATION_TOKEN_AUTHORIZATION_FAILED",
        "DELEGATION_TOKEN_EXPIRED",
        "INVALID_PRINCIPAL_TYPE",
        "NON_EMPTY_GROUP",
        "GROUP_ID_NOT_FOUND",
        "FETCH_SESSION_ID_NOT_FOUND",
        "INVALID_FETCH_SESSION_EPOCH",
        "LISTENER_NOT_FOUND",
        "TOPIC_DELETION_DISABLED",
        "FENCED_LEADER_EPOCH",
        "UNKNOWN_LEADER_EPOCH",
        "UNSUPPORTED_COMPRESSION_TYPE",
        "STALE_BROKER_EPOCH",
        "OFFSET_NOT_AVAILABLE",
        "MEMBER_ID_REQUIRED",
        "PREFERRED_LEADER_NOT_AVAILABLE",
        "GROUP_MAX_SIZE_REACHED",
        "FENCED_INSTANCE_ID",
        "ELIGIBLE_LEADERS_NOT_AVAILABLE",
        "ELECTION_NOT_NEEDED",
        "NO_REASSIGNMENT_IN_PROGRESS",
        "GROUP_SUBSCRIBED_TO_TOPIC",
        "INVALID_RECORD",
        "UNSTABLE_OFFSET_COMMIT",
        "THROTTLING_QUOTA_EXCEEDED",
        "PRODUCER_FENCED",
        "RESOURCE_NOT_FOUND",
        "DUPLICATE_RESOURCE",
        "UNACCEPTABLE_CREDENTIAL",
        "INCONSISTENT_VOTER_SET",
        "INVALID_UPDATE_VERSION",
        "FEATURE_UPDATE_FAILED",
        "PRINCIPAL_DESERIALIZATION_FAILURE",
        "SNAPSHOT_NOT_FOUND",
        "POSITION_OUT_OF_RANGE",
        "UNKNOWN_TOPIC_ID",
        "DUPLICATE_BROKER_REGISTRATION",
        "BROKER_ID_NOT_REGISTERED",
        "INCONSISTENT_TOPIC_ID",
        "INCONSISTENT_CLUSTER_ID",
        "TRANSACTIONAL_ID_NOT_FOUND",
        "FETCH_SESSION_TOPIC_ID_ERROR",
        "INELIGIBLE_REPLICA",
        "NEW_LEADER_ELECTED",
        "OFFSET_MOVED_TO_TIERED_STORAGE",
        "FENCED_MEMBER_EPOCH",
        "UNRELEASED_INSTANCE_ID",
        "UNSUPPORTED_ASSIGNOR",
        "STALE_MEMBER_EPOCH",
        "MISMATCHED_ENDPOINT_TYPE",
        "UNSUPPORTED_ENDPOINT_TYPE",
        "UNKNOWN_CONTROLLER_ID",
        "UNKNOWN_SUBSCRIPTION_ID",
        "TELEMETRY_TOO_LARGE",
        "INVALID_REGISTRATION",
        "TRANSACTION_ABORTABLE",
        "INVALID_RECORD_STATE",
        "SHARE_SESSION_NOT_FOUND",
        "INVALID_SHARE_SESSION_EPOCH",
        "FENCED_STATE_EPOCH",
        "INVALID_VOTER_KEY",
        "DUPLICATE_VOTER",
        "VOTER_NOT_FOUND",
        "INVALID_REGULAR_EXPRESSION",
        "REBOOTSTRAP_REQUIRED",
        "STREAMS_INVALID_TOPOLOGY",
        "STREAMS_INVALID_TOPOLOGY_EPOCH",
        "STREAMS_TOPOLOGY_FENCED",
        "SHARE_SESSION_LIMIT_REACHED",
    ];
    match code {
        -1 => Some("UNKNOWN_SERVER_ERROR"),
        1.. => NAMES.get(code as usize).copied(),
        _ => None,
    }
}
