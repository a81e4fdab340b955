//! Application-layer decoding: the `L7Parser` seam, protocol identity, and the static
//! dispatch over the decoders.
//!
//! Each decoder is a pure parser (bytes to typed messages, streaming, never panics) plus a
//! small state machine that pairs requests with responses into [`Transaction`]s. The flow
//! layer feeds each decoder the in-order bytes of each direction (TCP) or whole datagrams
//! (UDP), and tells it about gaps and the close of the connection.

pub mod detect;
pub mod dns;
pub mod http1;
pub mod http2;
pub mod http_common;
pub mod scan;
pub mod session;
pub mod stream_stats;
#[cfg(test)]
pub(crate) mod testkit;
pub mod tls;
pub mod transaction;

pub use stream_stats::StreamStats;
pub use transaction::{AttrValue, Completeness, Endpoint, TraceContext, Transaction};

use crate::events::Counters;
use crate::time::Timestamp;

/// Which side sent the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From the client (connection initiator) to the server.
    ToServer,
    /// From the server back to the client.
    ToClient,
}

impl Direction {
    pub fn reverse(self) -> Direction {
        match self {
            Direction::ToServer => Direction::ToClient,
            Direction::ToClient => Direction::ToServer,
        }
    }

    /// 0 for ToServer, 1 for ToClient: index into per-direction arrays.
    #[inline]
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Application protocols podtap knows. `as_str` is the `podtap.protocol` value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Protocol {
    #[default]
    Unknown,
    Http,
    Http2,
    Grpc,
    Dns,
    Tls,
    Redis,
    Mysql,
    Postgresql,
    Kafka,
    Mongodb,
    Memcached,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Unknown => "unknown",
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Dns => "dns",
            Protocol::Tls => "tls",
            Protocol::Redis => "redis",
            Protocol::Mysql => "mysql",
            Protocol::Postgresql => "postgresql",
            Protocol::Kafka => "kafka",
            Protocol::Mongodb => "mongodb",
            Protocol::Memcached => "memcached",
        }
    }
}

/// How sure a decoder's probe is that a flow's first bytes are its protocol. Detection
/// asks every enabled decoder's probe and takes the surest answer; `NeedMore` holds the
/// decision until more bytes arrive (bounded), `Port` means only the server port points
/// at it (used when nothing looks at the bytes with more certainty).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Confidence {
    /// Not this protocol.
    No,
    /// Too few bytes to tell; ask again with the next chunk.
    NeedMore,
    /// Nothing in the bytes contradicts it, and the server port is one of its ports.
    Port,
    /// The bytes parse as this protocol's first message.
    Likely,
    /// A signature no other protocol has (a magic, a preface).
    Certain,
}

/// What the decoder wants after a call to `on_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Keep feeding this connection.
    Continue,
    /// The decoder has nothing more to learn from this connection (e.g. TLS after the
    /// handshake, or a stream it gave up on): stop feeding it, keep counting bytes.
    Done,
}

/// One protocol decoder for one connection, fed the in-order bytes of each direction.
///
/// For TCP, `bytes` is the next contiguous piece of that direction's stream; a message may
/// be split across calls at any byte. For UDP each call is one whole datagram.
/// Implementations never panic on any input and bound their own buffering.
pub trait L7Parser {
    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress;

    /// `missing` bytes of direction `dir` will never arrive; the stream resumes after them.
    fn on_gap(&mut self, dir: Direction, missing: u32);

    /// The connection is gone (FIN, RST, idle expiry, eviction or shutdown): report what is
    /// still pending, marked with why it is incomplete.
    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>);

    /// Called periodically with the packet clock: report requests whose response is overdue.
    fn on_tick(&mut self, _now: Timestamp, _timeout_ns: u64, _out: &mut Vec<Transaction>) {}
}

/// Static dispatch over the decoders (no trait objects on the packet path).
pub enum Decoder {
    /// Streams no decoder claimed: counted, not decoded.
    StreamStats(StreamStats),
    Http1(http1::Http1Parser),
    Http2(http2::Http2Parser),
    Dns(dns::DnsParser),
    Tls(tls::TlsParser),
}

impl Decoder {
    pub fn protocol(&self) -> Protocol {
        match self {
            Decoder::StreamStats(_) => Protocol::Unknown,
            Decoder::Http1(_) => Protocol::Http,
            Decoder::Http2(p) => p.protocol(),
            Decoder::Dns(_) => Protocol::Dns,
            Decoder::Tls(_) => Protocol::Tls,
        }
    }

    pub fn as_stream_stats(&self) -> Option<&StreamStats> {
        match self {
            Decoder::StreamStats(s) => Some(s),
            _ => None,
        }
    }

    /// Fold the decoder's own drop/error counts (since the last call) into `c`.
    pub fn drain_stats(&mut self, c: &mut Counters) {
        match self {
            Decoder::StreamStats(_) => {}
            Decoder::Http1(p) => p.take_stats().add_to(c),
            Decoder::Http2(p) => p.take_stats().add_to(c),
            Decoder::Dns(p) => p.take_stats().add_to(c),
            Decoder::Tls(p) => p.take_stats().add_to(c),
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $p:ident => $e:expr) => {
        match $self {
            Decoder::StreamStats($p) => $e,
            Decoder::Http1($p) => $e,
            Decoder::Http2($p) => $e,
            Decoder::Dns($p) => $e,
            Decoder::Tls($p) => $e,
        }
    };
}

impl L7Parser for Decoder {
    #[inline]
    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        dispatch!(self, p => p.on_data(dir, bytes, ts, out))
    }
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        dispatch!(self, p => p.on_gap(dir, missing))
    }
    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        dispatch!(self, p => p.on_close(ts, reset, out))
    }
    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        dispatch!(self, p => p.on_tick(now, timeout_ns, out))
    }
}

/// A small deterministic generator (xorshift64) for the decoders' randomized tests.
#[cfg(test)]
pub(crate) fn test_rng(mut seed: u64) -> impl FnMut() -> u64 {
    move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    }
}
