//! HTTP/2 over cleartext TCP (prior knowledge, h2c upgrade, or picked up midstream) and
//! gRPC on top of it.
//!
//! Layers: `frame` parses frames, `hpack` (with `huffman`) decompresses header blocks,
//! and this module streams bytes into frames per direction, follows the streams of the
//! connection and turns each into one [`Transaction`] shaped like an HTTP/1 one (same
//! attributes, from the same [`HttpSettings`]), with `podtap.protocol` `http2` or `grpc`.
//!
//! Buffering is bounded: DATA payloads are skipped as they stream, other frames are
//! buffered up to `protocols.http2.max_frame_bytes`, header blocks up to
//! `protocols.http2.max_header_block_bytes`, the HPACK table up to `protocols.http2.max_table_bytes`, open
//! streams up to `protocols.http2.max_streams`. A header block podtap cannot follow (skipped, or
//! referencing table entries it never saw) leaves the transaction marked `hpack_unknown`
//! with the fields that could be decoded; malformed framing stops decoding the connection.

pub mod hpack;
pub mod huffman;
pub mod parser;

use compact_str::CompactString;
use serde::Deserialize;
use std::sync::Arc;

use super::detect::Transport;
use super::http_common::{HttpSettings, HttpStats, TraceHeaders};
use super::registry::{MetricAttr, Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::time::Timestamp;
use parser::{FrameError, FrameHeader, HEADER_LEN};

/// `[protocols.http2]`: bounds of the HTTP/2 decoder (per connection).
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Http2Config {
    /// Largest non-DATA frame buffered (DATA is never buffered). Larger frames are
    /// skipped and counted (`l7.buffer_limit`); a skipped header block leaves the HPACK
    /// state unknown. Default 65536.
    pub max_frame_bytes: usize,
    /// Largest header block (HEADERS + CONTINUATION) assembled. Default 65536.
    pub max_header_block_bytes: usize,
    /// Largest HPACK dynamic table followed per direction; an encoder using a larger one
    /// has its oldest entries treated as unknown. Default 65536.
    pub max_table_bytes: usize,
    /// Largest decoded header list (name + value + 32 per field) per block; fields beyond
    /// are not read and the transaction is marked `truncated`. Default 65536.
    pub max_header_list_bytes: usize,
    /// Streams awaiting their response per connection; beyond it the oldest is reported
    /// unanswered (`l7.pending_limit`). Default 128.
    pub max_streams: usize,
}

impl Default for Http2Config {
    fn default() -> Self {
        Http2Config {
            max_frame_bytes: 65536,
            max_header_block_bytes: 65536,
            max_table_bytes: 65536,
            max_header_list_bytes: 65536,
            max_streams: 128,
        }
    }
}

impl Http2Config {
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.max_frame_bytes < parser::DEFAULT_MAX_FRAME as usize {
            return Err((
                "max_frame_bytes",
                "must be at least 16384 (the smallest frame size limit a peer may set)".into(),
            ));
        }
        if self.max_streams == 0 {
            return Err(("max_streams", "must be at least 1".into()));
        }
        for (key, v) in [
            ("max_header_block_bytes", self.max_header_block_bytes),
            ("max_header_list_bytes", self.max_header_list_bytes),
            ("max_table_bytes", self.max_table_bytes),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1 (0 would decode no headers)".into()));
            }
        }
        Ok(())
    }

    fn limits(&self) -> hpack::Limits {
        hpack::Limits {
            max_table_bytes: self.max_table_bytes,
            max_list_bytes: self.max_header_list_bytes,
        }
    }
}

/// Where a direction's byte stream is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rx {
    /// Nothing seen yet: the client's first bytes may be the preface.
    Start,
    /// Matching the client preface; the number of bytes matched so far.
    Preface(usize),
    /// Reading a 9-byte frame header.
    Header,
    /// Buffering a frame payload.
    Payload,
    /// Skipping a payload (DATA, unknown type, or oversized): bytes left, and for DATA
    /// whether the pad-length byte is still to come.
    Skip { left: u32, pad_pending: bool },
    /// Lost frame sync (midstream start, gap): waiting for a chunk that starts a frame.
    Lost,
}

/// The header block being assembled from HEADERS/PUSH_PROMISE and CONTINUATION frames.
#[derive(Clone, Copy, Debug, Default)]
struct BlockState {
    active: bool,
    stream: u32,
    end_stream: bool,
    /// PUSH_PROMISE: the promised stream.
    promised: Option<u32>,
    /// Too large: decoding skipped, HPACK state lost.
    skipped: bool,
    start: Timestamp,
    /// Bytes on the wire of the block's frames (headers included).
    wire: u64,
}

struct Side {
    rx: Rx,
    hdr: [u8; HEADER_LEN],
    hdr_len: usize,
    frame: FrameHeader,
    frame_start: Timestamp,
    /// Payload of the current frame when it spans chunks.
    buf: Vec<u8>,
    /// DATA frame being skipped: its pad length.
    pad: u32,
    block: BlockState,
    block_buf: Vec<u8>,
    hpack: hpack::Decoder,
    /// A frame was parsed in this direction (frame sync established).
    synced: bool,
}

impl Side {
    fn new(cfg: &Http2Config) -> Side {
        Side {
            rx: Rx::Start,
            hdr: [0; HEADER_LEN],
            hdr_len: 0,
            frame: FrameHeader::default(),
            frame_start: Timestamp::ZERO,
            buf: Vec::new(),
            pad: 0,
            block: BlockState::default(),
            block_buf: Vec::new(),
            hpack: hpack::Decoder::new(cfg.limits(), false),
            synced: false,
        }
    }

    /// Take bytes of a 9-byte frame header from `rest` (the first one marks the frame's
    /// start time); the header once all nine are in.
    fn header_bytes(&mut self, rest: &mut &[u8], ts: Timestamp) -> Option<FrameHeader> {
        if self.hdr_len == 0 {
            self.frame_start = ts;
        }
        let take = (HEADER_LEN - self.hdr_len).min(rest.len());
        self.hdr[self.hdr_len..self.hdr_len + take].copy_from_slice(&rest[..take]);
        self.hdr_len += take;
        *rest = &rest[take..];
        if self.hdr_len < HEADER_LEN {
            return None;
        }
        self.hdr_len = 0;
        Some(FrameHeader::parse(&self.hdr).unwrap_or_default())
    }
}

/// One HTTP/2 stream awaiting (the end of) its response.
struct Stream {
    id: u32,
    tx: Transaction,
    /// The request's headers were seen (else this is a response picked up midstream).
    req_headers: bool,
    req_done: bool,
    req_body: u64,
    resp_body: u64,
    /// The final response head was seen (later HEADERS are trailers).
    resp_headers: bool,
    http_status: Option<i64>,
    grpc: bool,
    grpc_status: Option<i64>,
}

/// Fields of a header block that podtap reads.
#[derive(Default)]
struct Heads {
    method: Option<CompactString>,
    path: Option<CompactString>,
    authority: Option<CompactString>,
    status: Option<i64>,
    content_type_grpc: bool,
    user_agent: Option<CompactString>,
    grpc_status: Option<i64>,
    grpc_message: Option<CompactString>,
    trace: TraceHeaders,
    info: hpack::BlockInfo,
    failed: bool,
}

/// Longest `grpc-message` kept.
const MAX_GRPC_MESSAGE: usize = 256;

pub struct Http2Parser {
    settings: Arc<HttpSettings>,
    cfg: Http2Config,
    sides: [Side; 2],
    streams: Vec<Stream>,
    /// `Some(true)`: the client preface was seen; `Some(false)`: the client's first bytes
    /// were something else (midstream); `None`: the client has not spoken yet.
    fresh: Option<bool>,
    /// Streams with a transaction finished outside `on_data` (gap), emitted next time.
    ready: Vec<Transaction>,
    last_ts: Timestamp,
    /// A gRPC call was seen: the connection is reported as `grpc`.
    grpc: bool,
    stats: HttpStats,
}

impl Default for Http2Parser {
    fn default() -> Self {
        Http2Parser::new(Arc::new(HttpSettings::default()), Http2Config::default())
    }
}

fn lossy(v: &[u8]) -> CompactString {
    CompactString::from(super::http_common::lossy(v).as_ref())
}

/// The gRPC status code names (`error.type` of failed calls).
fn grpc_code_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "CANCELLED",
        2 => "UNKNOWN",
        3 => "INVALID_ARGUMENT",
        4 => "DEADLINE_EXCEEDED",
        5 => "NOT_FOUND",
        6 => "ALREADY_EXISTS",
        7 => "PERMISSION_DENIED",
        8 => "RESOURCE_EXHAUSTED",
        9 => "FAILED_PRECONDITION",
        10 => "ABORTED",
        11 => "OUT_OF_RANGE",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        16 => "UNAUTHENTICATED",
        _ => return None,
    })
}

impl Http2Parser {
    pub fn new(settings: Arc<HttpSettings>, cfg: Http2Config) -> Self {
        let sides = [Side::new(&cfg), Side::new(&cfg)];
        Http2Parser {
            settings,
            cfg,
            sides,
            streams: Vec::new(),
            fresh: None,
            ready: Vec::new(),
            last_ts: Timestamp::ZERO,
            grpc: false,
            stats: HttpStats::default(),
        }
    }

    /// The connection after an HTTP/1 `Upgrade: h2c` answered by 101: `request` (the
    /// HTTP/1 request) becomes stream 1, half-closed by the client; both HPACK tables
    /// start empty and known.
    pub fn upgraded(settings: Arc<HttpSettings>, cfg: Http2Config, request: Transaction) -> Self {
        let mut p = Http2Parser::new(settings, cfg);
        p.fresh = Some(true);
        for s in &mut p.sides {
            s.hpack = hpack::Decoder::new(p.cfg.limits(), true);
        }
        let mut tx = request;
        tx.protocol = Protocol::Http2;
        tx.req_bytes = 0;
        for (k, v) in tx.attrs.iter_mut() {
            if *k == "network.protocol.version" {
                *v = super::AttrValue::Str("2".into());
            }
        }
        p.streams.push(Stream {
            id: 1,
            tx,
            req_headers: true,
            req_done: true,
            req_body: 0,
            resp_body: 0,
            resp_headers: false,
            http_status: None,
            grpc: false,
            grpc_status: None,
        });
        p
    }

    /// `grpc` once a gRPC call was seen on the connection, else `http2`.
    pub fn protocol(&self) -> Protocol {
        if self.grpc {
            Protocol::Grpc
        } else {
            Protocol::Http2
        }
    }

    pub fn take_stats(&mut self) -> HttpStats {
        std::mem::take(&mut self.stats)
    }

    /// Streams still waiting for their response.
    pub fn pending(&self) -> usize {
        self.streams.len()
    }

    /// Feed one chunk of `dir`; `Err` on malformed framing.
    fn feed(
        &mut self,
        dir: Direction,
        mut rest: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Result<(), FrameError> {
        let d = dir.index();
        let chunk_len = rest.len();
        while !rest.is_empty() {
            match self.sides[d].rx {
                Rx::Start => self.start(dir, rest),
                Rx::Lost => {
                    // Frame sync is only tried at chunk starts (segment boundaries usually
                    // align with frames): a candidate header begins there (and may take
                    // more chunks to complete); the rest of a chunk that does not start a
                    // plausible frame is dropped.
                    let s = &mut self.sides[d];
                    if s.hdr_len == 0 && rest.len() != chunk_len {
                        return Ok(());
                    }
                    let Some(h) = s.header_bytes(&mut rest, ts) else {
                        return Ok(());
                    };
                    if !h.plausible() {
                        return Ok(());
                    }
                    s.block.active = false;
                    if dir == Direction::ToClient
                        && !s.synced
                        && self.fresh.is_none()
                        && h.ty == parser::SETTINGS
                        && !h.has(parser::ACK)
                    {
                        // A server's first frame is its SETTINGS: the connection is
                        // probably seen from its start (undone if the client's first
                        // bytes are not the preface).
                        s.hpack = hpack::Decoder::new(self.cfg.limits(), true);
                    }
                    s.rx = Rx::Header;
                    rest = self.on_frame_header(dir, h, rest, ts, out)?;
                }
                Rx::Preface(n) => {
                    let want = &parser::PREFACE[n..];
                    let take = want.len().min(rest.len());
                    if rest[..take] != want[..take] {
                        // Not a preface after all: treat as midstream.
                        self.sides[d].rx = Rx::Lost;
                        self.fresh = Some(false);
                        continue;
                    }
                    rest = &rest[take..];
                    self.sides[d].rx = if n + take == parser::PREFACE.len() {
                        Rx::Header
                    } else {
                        Rx::Preface(n + take)
                    };
                }
                Rx::Header => {
                    let Some(h) = self.sides[d].header_bytes(&mut rest, ts) else {
                        return Ok(());
                    };
                    rest = self.on_frame_header(dir, h, rest, ts, out)?;
                }
                Rx::Payload => {
                    let s = &mut self.sides[d];
                    let want = s.frame.len as usize - s.buf.len();
                    let take = want.min(rest.len());
                    s.buf.extend_from_slice(&rest[..take]);
                    rest = &rest[take..];
                    if s.buf.len() < s.frame.len as usize {
                        return Ok(());
                    }
                    let payload = std::mem::take(&mut s.buf);
                    let h = s.frame;
                    s.rx = Rx::Header;
                    let r = self.on_frame(dir, &h, &payload, ts, out);
                    let s = &mut self.sides[d];
                    s.buf = payload;
                    s.buf.clear();
                    r?;
                }
                Rx::Skip { left, pad_pending } => {
                    let s = &mut self.sides[d];
                    let mut left = left;
                    if pad_pending {
                        s.pad = rest[0] as u32;
                        if s.pad + 1 > s.frame.len {
                            return Err(FrameError::Padding);
                        }
                    }
                    let take = (left as usize).min(rest.len());
                    left -= take as u32;
                    rest = &rest[take..];
                    if left > 0 {
                        s.rx = Rx::Skip {
                            left,
                            pad_pending: false,
                        };
                        return Ok(());
                    }
                    s.rx = Rx::Header;
                    let h = s.frame;
                    if h.ty == parser::DATA {
                        self.on_data_frame(dir, &h, ts, out);
                    }
                }
            }
        }
        Ok(())
    }

    /// The first bytes of a direction: the preface, a frame, or the middle of something.
    fn start(&mut self, dir: Direction, rest: &[u8]) {
        let d = dir.index();
        if dir == Direction::ToServer {
            let n = rest.len().min(parser::PREFACE.len());
            if rest[..n] == parser::PREFACE[..n] {
                self.fresh = Some(true);
                self.sides[d].rx = Rx::Preface(0);
                self.sides[d].hpack = hpack::Decoder::new(self.cfg.limits(), true);
                let srv = &mut self.sides[Direction::ToClient.index()];
                if srv.rx == Rx::Start {
                    srv.hpack = hpack::Decoder::new(self.cfg.limits(), true);
                }
                return;
            }
            self.fresh = Some(false);
            // The server's table was assumed fresh from its SETTINGS: not so.
            let srv = &mut self.sides[Direction::ToClient.index()];
            if srv.synced && srv.hpack.is_known() {
                srv.hpack.lose_state();
            }
        }
        self.sides[d].rx = Rx::Lost;
        self.sides[d].hdr_len = 0;
    }

    /// A complete frame header: decide how its payload is consumed. Returns the input
    /// left after what was consumed here (a whole in-chunk payload is parsed in place).
    fn on_frame_header<'b>(
        &mut self,
        dir: Direction,
        h: FrameHeader,
        rest: &'b [u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Result<&'b [u8], FrameError> {
        let d = dir.index();
        h.validate()?;
        let s = &mut self.sides[d];
        s.frame = h;
        s.synced = true;
        // Only CONTINUATION may follow a header block that is not finished.
        if s.block.active && (h.ty != parser::CONTINUATION || h.stream != s.block.stream) {
            return Err(FrameError::ContinuationExpected(s.block.stream));
        }
        if h.ty == parser::CONTINUATION && !s.block.active {
            return Err(FrameError::UnexpectedContinuation);
        }
        let s = &mut self.sides[d];
        let buffered = h.ty != parser::DATA && h.ty <= parser::CONTINUATION;
        if !buffered {
            s.pad = 0;
            s.rx = Rx::Skip {
                left: h.len,
                pad_pending: h.ty == parser::DATA && h.has(parser::PADDED),
            };
            if h.len == 0 {
                if h.has(parser::PADDED) && h.ty == parser::DATA {
                    return Err(FrameError::Padding);
                }
                s.rx = Rx::Header;
                if h.ty == parser::DATA {
                    self.on_data_frame(dir, &h, ts, out);
                }
            }
            return Ok(rest);
        }
        if h.len as usize > self.cfg.max_frame_bytes {
            self.stats.buffer_limit += 1;
            s.rx = Rx::Skip {
                left: h.len,
                pad_pending: false,
            };
            if matches!(
                h.ty,
                parser::HEADERS | parser::PUSH_PROMISE | parser::CONTINUATION
            ) {
                // The block's table updates are lost with it.
                s.hpack.lose_state();
                let stream = h.stream;
                if h.has(parser::END_HEADERS) {
                    s.block.active = false;
                } else {
                    s.block = BlockState {
                        active: true,
                        stream,
                        skipped: true,
                        ..s.block
                    };
                }
                self.mark_stream(
                    stream,
                    Completeness::TRUNCATED | Completeness::HPACK_UNKNOWN,
                );
            }
            if h.len == 0 {
                self.sides[d].rx = Rx::Header;
            }
            return Ok(rest);
        }
        let len = h.len as usize;
        if rest.len() >= len {
            s.rx = Rx::Header;
            self.on_frame(dir, &h, &rest[..len], ts, out)?;
            return Ok(&rest[len..]);
        }
        s.buf.clear();
        s.buf.extend_from_slice(rest);
        s.rx = Rx::Payload;
        Ok(&[])
    }

    /// A complete non-DATA frame.
    fn on_frame(
        &mut self,
        dir: Direction,
        h: &FrameHeader,
        payload: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Result<(), FrameError> {
        let d = dir.index();
        match parser::parse(h, payload)? {
            parser::Frame::Headers {
                end_stream,
                end_headers,
                block,
            } => {
                let start = self.sides[d].frame_start;
                self.sides[d].block = BlockState {
                    active: true,
                    stream: h.stream,
                    end_stream,
                    promised: None,
                    skipped: false,
                    start,
                    wire: HEADER_LEN as u64 + h.len as u64,
                };
                self.block_fragment(dir, block, end_headers, ts, out);
            }
            parser::Frame::PushPromise {
                end_headers,
                promised,
                block,
            } => {
                let start = self.sides[d].frame_start;
                self.sides[d].block = BlockState {
                    active: true,
                    stream: h.stream,
                    end_stream: false,
                    promised: Some(promised),
                    skipped: false,
                    start,
                    wire: HEADER_LEN as u64 + h.len as u64,
                };
                self.block_fragment(dir, block, end_headers, ts, out);
            }
            parser::Frame::Continuation { end_headers, block } => {
                self.sides[d].block.wire += HEADER_LEN as u64 + h.len as u64;
                self.block_fragment(dir, block, end_headers, ts, out);
            }
            parser::Frame::Settings { ack: false, params } => {
                // The sender's settings bound what its peer sends: the other direction.
                let peer = &mut self.sides[dir.reverse().index()];
                for (id, v) in parser::settings(params) {
                    if id == parser::SETTINGS_HEADER_TABLE_SIZE {
                        peer.hpack.set_allowed(v);
                    }
                }
            }
            parser::Frame::RstStream { code } => {
                if let Some(i) = self.streams.iter().position(|s| s.id == h.stream) {
                    let mut st = self.streams.remove(i);
                    st.tx.error = Some("rst_stream".into());
                    st.tx
                        .attr_str("podtap.http2.error_code", parser::error_name(code));
                    st.tx.completeness.set(Completeness::RESET);
                    if st.http_status.is_none() {
                        st.tx.completeness.set(Completeness::NO_RESPONSE);
                    }
                    self.finish(st, ts, out);
                }
            }
            // From the server: the client's streams above `last_stream` were never
            // processed. (A client's GOAWAY concerns pushed streams: nothing to do.)
            parser::Frame::Goaway { last_stream, code } if dir == Direction::ToClient => {
                let mut i = 0;
                while i < self.streams.len() {
                    let s = &self.streams[i];
                    if s.id % 2 == 1 && s.id > last_stream && s.http_status.is_none() {
                        let mut st = self.streams.remove(i);
                        st.tx.error = Some("goaway".into());
                        st.tx
                            .attr_str("podtap.http2.error_code", parser::error_name(code));
                        st.tx.completeness.set(Completeness::NO_RESPONSE);
                        self.finish(st, ts, out);
                    } else {
                        i += 1;
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// A piece of a header block; decode it when the block is complete.
    fn block_fragment(
        &mut self,
        dir: Direction,
        frag: &[u8],
        end_headers: bool,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        let max = self.cfg.max_header_block_bytes;
        let s = &mut self.sides[d];
        if !end_headers {
            if !s.block.skipped {
                if s.block_buf.len() + frag.len() > max {
                    self.stats.buffer_limit += 1;
                    s.block.skipped = true;
                    s.block_buf.clear();
                    s.hpack.lose_state();
                } else {
                    s.block_buf.extend_from_slice(frag);
                }
            }
            return;
        }
        let b = s.block;
        s.block.active = false;
        if b.skipped {
            s.block_buf.clear();
            self.block_done(dir, b, None, ts, out);
            return;
        }
        if s.block_buf.is_empty() {
            self.block_done(dir, b, Some(frag), ts, out);
        } else if s.block_buf.len() + frag.len() > max {
            self.stats.buffer_limit += 1;
            s.block_buf.clear();
            s.hpack.lose_state();
            self.block_done(dir, b, None, ts, out);
        } else {
            s.block_buf.extend_from_slice(frag);
            let buf = std::mem::take(&mut s.block_buf);
            self.block_done(dir, b, Some(&buf), ts, out);
            let s = &mut self.sides[d];
            s.block_buf = buf;
            s.block_buf.clear();
        }
    }

    /// Decode a whole header block (or `None`: it was skipped) and apply it to its stream.
    fn block_done(
        &mut self,
        dir: Direction,
        b: BlockState,
        block: Option<&[u8]>,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        let mut heads = Heads::default();
        // Trace and captured headers are request-only; gathered into a scratch record.
        let is_request = dir == Direction::ToServer || b.promised.is_some();
        let mut captured = Transaction::default();
        if let Some(block) = block {
            let settings = &*self.settings;
            let r = self.sides[d].hpack.decode(block, |f| {
                if let hpack::Field::Header { name, value } = f {
                    read_field(&mut heads, settings, is_request, &mut captured, name, value);
                }
            });
            match r {
                Ok(info) => heads.info = info,
                Err(e) => {
                    self.stats.hpack_errors += 1;
                    tracing::debug!(error = %e, "HPACK decode failed; table state now unknown");
                    heads.failed = true;
                }
            }
        } else {
            heads.failed = true;
        }
        if let Some(promised) = b.promised {
            // A pushed request: the promised stream's response follows on `promised`.
            if dir == Direction::ToClient {
                self.new_stream(promised, b.start, &mut heads, captured, ts, out);
                if let Some(st) = self.streams.iter_mut().find(|s| s.id == promised) {
                    st.req_done = true;
                    st.tx.attr_bool("podtap.http2.pushed", true);
                }
            }
            return;
        }
        match dir {
            Direction::ToServer => match self.streams.iter_mut().find(|s| s.id == b.stream) {
                Some(st) if st.req_headers => {
                    // Request trailers.
                    st.tx.req_bytes += b.wire;
                    if b.end_stream {
                        st.req_done = true;
                    }
                }
                _ => {
                    self.new_stream(b.stream, b.start, &mut heads, captured, ts, out);
                    if let Some(st) = self.streams.iter_mut().find(|s| s.id == b.stream) {
                        st.tx.req_bytes += b.wire;
                        st.req_done = b.end_stream;
                    }
                }
            },
            Direction::ToClient => {
                let idx = match self.streams.iter().position(|s| s.id == b.stream) {
                    Some(i) => i,
                    None => {
                        // A response whose request podtap did not see.
                        let mut tx = Transaction::new(Protocol::Http2, b.start);
                        tx.completeness.set(Completeness::NO_REQUEST);
                        self.push_stream(
                            Stream {
                                id: b.stream,
                                tx,
                                req_headers: false,
                                req_done: true,
                                req_body: 0,
                                resp_body: 0,
                                resp_headers: false,
                                http_status: None,
                                grpc: false,
                                grpc_status: None,
                            },
                            ts,
                            out,
                        );
                        self.streams.len() - 1
                    }
                };
                let st = &mut self.streams[idx];
                st.tx.resp_bytes += b.wire;
                mark_unknown(&mut st.tx, &heads);
                if !st.resp_headers {
                    match heads.status {
                        Some(c) if (100..200).contains(&c) && c != 101 => {
                            st.tx.attr_int("podtap.http.interim_status", c);
                        }
                        Some(c) => {
                            st.http_status = Some(c);
                            st.resp_headers = true;
                        }
                        // Status unknown (dynamic entry never seen): still the response.
                        None => st.resp_headers = true,
                    }
                    if heads.content_type_grpc && !st.grpc {
                        st.grpc = true;
                    }
                }
                if heads.grpc_status.is_some() {
                    st.grpc_status = heads.grpc_status;
                    st.grpc = true;
                }
                if let Some(m) = heads.grpc_message.take().filter(|m| !m.is_empty()) {
                    st.tx.attr_str("podtap.grpc.message", m);
                }
                if b.end_stream {
                    let st = self.streams.remove(idx);
                    self.finish(st, ts, out);
                }
            }
        }
    }

    /// A request header block opened stream `id`.
    fn new_stream(
        &mut self,
        id: u32,
        start: Timestamp,
        heads: &mut Heads,
        captured: Transaction,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let mut tx = Transaction::new(Protocol::Http2, start);
        match (&heads.method, &heads.path) {
            (Some(m), Some(p)) => self.settings.finish_request(&mut tx, m, p),
            (Some(m), None) => {
                tx.operation = m.clone();
                tx.attr_str("http.request.method", m.clone());
            }
            _ => {}
        }
        tx.attr_str("network.protocol.version", "2");
        if let Some(a) = &heads.authority {
            let host = match a.rfind(':') {
                Some(i) if !a[i..].contains(']') => &a[..i],
                _ => a.as_str(),
            };
            tx.attr_str(
                "server.address",
                host.trim_start_matches('[').trim_end_matches(']'),
            );
        }
        if let Some(ua) = &heads.user_agent {
            tx.attr_str("user_agent.original", ua.clone());
        }
        tx.attrs.extend(captured.attrs);
        tx.trace = std::mem::take(&mut heads.trace).finish().map(Box::new);
        mark_unknown(&mut tx, heads);
        let grpc = heads.content_type_grpc;
        if grpc {
            tx.protocol = Protocol::Grpc;
            if let Some(p) = &heads.path {
                set_rpc(&mut tx, p);
            }
        }
        let st = Stream {
            id,
            tx,
            req_headers: true,
            req_done: false,
            req_body: 0,
            resp_body: 0,
            resp_headers: false,
            http_status: None,
            grpc,
            grpc_status: None,
        };
        self.push_stream(st, ts, out);
    }

    /// Track a stream, reporting the oldest as unanswered when the bound is reached.
    fn push_stream(&mut self, st: Stream, ts: Timestamp, out: &mut Vec<Transaction>) {
        if self.streams.len() >= self.cfg.max_streams.max(1) {
            let mut old = self.streams.remove(0);
            self.stats.pending_limit += 1;
            old.tx.completeness.set(Completeness::NO_RESPONSE);
            self.finish(old, ts, out);
        }
        self.streams.push(st);
    }

    /// A DATA frame fully skipped.
    fn on_data_frame(
        &mut self,
        dir: Direction,
        h: &FrameHeader,
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let pad = if h.has(parser::PADDED) {
            1 + self.sides[dir.index()].pad
        } else {
            0
        };
        let body = h.len.saturating_sub(pad) as u64;
        let wire = HEADER_LEN as u64 + h.len as u64;
        let Some(i) = self.streams.iter().position(|s| s.id == h.stream) else {
            return;
        };
        let st = &mut self.streams[i];
        match dir {
            Direction::ToServer => {
                st.req_body += body;
                st.tx.req_bytes += wire;
                if h.has(parser::END_STREAM) {
                    st.req_done = true;
                }
            }
            Direction::ToClient => {
                st.resp_body += body;
                st.tx.resp_bytes += wire;
                if h.has(parser::END_STREAM) {
                    let st = self.streams.remove(i);
                    self.finish(st, ts, out);
                }
            }
        }
    }

    /// Report a stream: status, error, sizes.
    fn finish(&mut self, mut st: Stream, ts: Timestamp, out: &mut Vec<Transaction>) {
        self.grpc |= st.grpc;
        let tx = &mut st.tx;
        if st.grpc && tx.protocol != Protocol::Grpc {
            tx.protocol = Protocol::Grpc;
            if let Some(super::AttrValue::Str(p)) = tx.attr("url.path").cloned() {
                set_rpc(tx, &p);
            }
        }
        if let Some(c) = st.http_status {
            tx.attr_int("http.response.status_code", c);
        }
        match (st.grpc, st.grpc_status, st.http_status) {
            (true, Some(g), _) => {
                tx.status = Some(g);
                tx.attr_int("rpc.grpc.status_code", g);
                if g != 0 {
                    tx.error = Some(
                        grpc_code_name(g)
                            .map(CompactString::from)
                            .unwrap_or_else(|| g.to_string().into()),
                    );
                }
            }
            // A gRPC call without grpc-status: only an HTTP failure says anything.
            (true, None, Some(c)) if c >= 400 => {
                tx.error = Some(c.to_string().into());
            }
            (true, None, Some(_)) => {}
            (_, _, Some(c)) => {
                tx.status = Some(c);
                // A 4xx is an error only where the client is observed (`stats::settle_error`).
                if c >= 500 {
                    tx.error = Some(c.to_string().into());
                }
            }
            _ => {}
        }
        if st.req_headers {
            tx.attr_int("http.request.body.size", st.req_body as i64);
        }
        if st.resp_headers {
            tx.attr_int("http.response.body.size", st.resp_body as i64);
        }
        tx.end = ts.max(tx.start);
        out.push(st.tx);
    }

    fn mark_stream(&mut self, id: u32, bits: u16) {
        if let Some(st) = self.streams.iter_mut().find(|s| s.id == id) {
            st.tx.completeness.0 |= bits;
        }
    }

    fn give_up_all(&mut self, ts: Timestamp, why: u16, out: &mut Vec<Transaction>) {
        for mut st in std::mem::take(&mut self.streams) {
            st.tx.completeness.set(why);
            if st.http_status.is_none() {
                st.tx.completeness.set(Completeness::NO_RESPONSE);
            }
            self.finish(st, ts, out);
        }
    }
}

/// gRPC attributes from `/package.Service/Method`; the path is the resource as it is
/// (service and method names are few, no templating).
fn set_rpc(tx: &mut Transaction, path: &str) {
    tx.operation = path.into();
    tx.resource = path.into();
    tx.attr_str("rpc.system", "grpc");
    let p = path.trim_start_matches('/');
    if let Some((svc, method)) = p.rsplit_once('/') {
        tx.attr_str("rpc.service", svc);
        tx.attr_str("rpc.method", method);
    }
}

fn mark_unknown(tx: &mut Transaction, heads: &Heads) {
    if heads.info.unknown > 0 || heads.failed {
        tx.completeness.set(Completeness::HPACK_UNKNOWN);
    }
    if heads.info.over_limit > 0 {
        tx.completeness.set(Completeness::TRUNCATED);
    }
}

/// One decoded field of a block.
fn read_field(
    h: &mut Heads,
    settings: &HttpSettings,
    is_request: bool,
    captured: &mut Transaction,
    name: &[u8],
    value: &[u8],
) {
    match name {
        b":method" => h.method = Some(lossy(value)),
        b":path" => h.path = Some(lossy(value)),
        b":authority" => h.authority = Some(lossy(value)),
        b":status" => h.status = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
        b"content-type" => {
            h.content_type_grpc =
                value.len() >= 16 && value[..16].eq_ignore_ascii_case(b"application/grpc");
        }
        b"grpc-status" => {
            h.grpc_status = std::str::from_utf8(value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
        }
        b"grpc-message" => {
            h.grpc_message = Some(lossy(&value[..value.len().min(MAX_GRPC_MESSAGE)]))
        }
        b"user-agent" if is_request => h.user_agent = Some(lossy(value)),
        b"host" if is_request && h.authority.is_none() => h.authority = Some(lossy(value)),
        _ if is_request => {
            h.trace.on_header(name, value);
            if let Ok(n) = std::str::from_utf8(name) {
                settings.capture_header(captured, n, value);
            }
        }
        _ => {}
    }
}

impl L7Parser for Http2Parser {
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::vec_bytes;
        let sides: usize = self
            .sides
            .iter()
            .map(|s| vec_bytes(&s.buf) + vec_bytes(&s.block_buf) + s.hpack.heap_bytes())
            .sum();
        sides + vec_bytes(&self.streams) + vec_bytes(&self.ready)
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
        match self.feed(dir, bytes, ts, out) {
            Ok(()) => Progress::Continue,
            Err(e) => {
                self.stats.parse_errors += 1;
                tracing::debug!(error = %e, "malformed HTTP/2 frame; decoding of the connection stops");
                self.give_up_all(ts, Completeness::TRUNCATED, out);
                Progress::Done
            }
        }
    }

    fn on_gap(&mut self, dir: Direction, _missing: u32) {
        let s = &mut self.sides[dir.index()];
        s.rx = Rx::Lost;
        s.hdr_len = 0;
        s.buf.clear();
        s.block_buf.clear();
        s.block.active = false;
        // Table insertions may have been in the lost bytes.
        s.hpack.lose_state();
        for st in &mut self.streams {
            st.tx.completeness.set(Completeness::GAP);
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        out.append(&mut self.ready);
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        self.give_up_all(ts, why, out);
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        out.append(&mut self.ready);
        let mut i = 0;
        while i < self.streams.len() {
            if now.since(self.streams[i].tx.start) < timeout_ns {
                i += 1;
                continue;
            }
            let mut st = self.streams.remove(i);
            self.stats.timeouts += 1;
            st.tx.completeness.set(Completeness::NO_RESPONSE);
            st.tx.error = Some("timeout".into());
            self.finish(st, now, out);
        }
    }
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for Http2Parser {
    type Config = Http2Config;
    /// The HTTP settings (`[protocols.http]`) and this decoder's bounds.
    type Shared = (Arc<HttpSettings>, Http2Config);
    const PORTS: &'static [u16] = &[50051];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = crate::events::NoEvents;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        cfg.validate().map_err(|(k, m)| format!("{k}: {m}"))
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        let http = HttpSettings::new(cfg.http1.settings.clone())
            .map_err(|e| format!("protocols.http.route.rules: {e}"))?;
        Ok((Arc::new(http), cfg.http2.settings.clone()))
    }

    /// The client preface is certain; picked up midstream, frame headers that chain, or a
    /// HEADERS or SETTINGS frame only HTTP/2 would send (one plausible header on a port
    /// hinted for HTTP/2).
    fn probe(p: &Probe<'_>) -> Confidence {
        let b = p.bytes;
        if b.is_empty() {
            return Confidence::NeedMore;
        }
        let n = b.len().min(parser::PREFACE.len());
        if b[..n] == parser::PREFACE[..n] {
            return if n == parser::PREFACE.len() {
                Confidence::Certain
            } else {
                Confidence::NeedMore
            };
        }
        if b.len() < HEADER_LEN && b[0] == 0 {
            return Confidence::NeedMore;
        }
        if h2_midstream(b, p.hinted) {
            Confidence::Likely
        } else {
            Confidence::No
        }
    }

    fn new(shared: &Self::Shared, _: Transport) -> Self {
        Http2Parser::new(shared.0.clone(), shared.1.clone())
    }

    fn protocol(&self) -> Protocol {
        Http2Parser::protocol(self)
    }

    fn drain_stats(&mut self, c: &mut crate::events::DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c.core())
    }

    fn telemetry(p: Protocol) -> &'static Telemetry {
        match p {
            Protocol::Grpc => &GRPC_TELEMETRY,
            _ => &super::http_common::HTTP_TELEMETRY,
        }
    }
}

/// How gRPC calls become metrics and spans.
static GRPC_TELEMETRY: Telemetry = Telemetry {
    duration: Some([
        crate::stats::Metric::RpcServerDuration,
        crate::stats::Metric::RpcClientDuration,
    ]),
    metric_attrs: &[
        MetricAttr::Const("rpc.system", "grpc"),
        MetricAttr::Attr("rpc.service"),
        MetricAttr::Attr("rpc.method"),
        MetricAttr::Status("rpc.grpc.status_code"),
        MetricAttr::Error,
        MetricAttr::Server,
    ],
    span_name: grpc_span_name,
    attributes: &[
        "rpc.system",
        "rpc.service",
        "rpc.method",
        "rpc.grpc.status_code",
        "podtap.grpc.message",
    ],
    // A gRPC call is an HTTP/2 request: its HTTP attributes come along.
    base: Some(&super::http_common::HTTP_TELEMETRY),
};

/// `package.Service/Method`, else the method and route as for HTTP.
fn grpc_span_name(tx: &Transaction) -> String {
    if tx.resource.is_empty() {
        (super::http_common::HTTP_TELEMETRY.span_name)(tx)
    } else {
        tx.resource.to_string()
    }
}

/// Whether `b` (the first bytes seen of a direction) is a run of valid HTTP/2 frame
/// headers. With `hinted` (a port configured for HTTP/2) one plausible header suffices;
/// otherwise it takes two chained headers, a HEADERS frame whose block starts with an
/// indexed pseudo-header (`:method`, `:scheme`, `:path`, `:status` from the static
/// table), or a SETTINGS frame whose visible parameters are all defined ones.
fn h2_midstream(b: &[u8], hinted: bool) -> bool {
    let mut at = 0;
    let mut headers = 0;
    while let Some(h) = b.get(at..).and_then(FrameHeader::parse) {
        if !h.plausible() {
            return false;
        }
        headers += 1;
        if hinted || headers >= 2 {
            return true;
        }
        let payload = &b[at + HEADER_LEN..];
        match h.ty {
            parser::HEADERS => {
                let mut i = 0;
                if h.has(parser::PADDED) {
                    i += 1;
                }
                if h.has(parser::PRIORITY_FLAG) {
                    i += 5;
                }
                if payload.get(i).is_some_and(|&c| (0x82..=0x8e).contains(&c)) {
                    return true;
                }
            }
            parser::SETTINGS if !h.has(parser::ACK) && h.len > 0 => {
                let visible = &payload[..payload.len().min(h.len as usize)];
                let ids_ok = visible
                    .chunks_exact(6)
                    .all(|p| p[0] == 0 && matches!(p[1], 1..=6 | 8 | 9));
                if ids_ok && visible.len() >= 6 {
                    return true;
                }
            }
            _ => {}
        }
        at += HEADER_LEN + h.len as usize;
    }
    false
}
