//! Application-layer decoding: the `L7Parser` seam and the list of decoders, from which
//! the registry (`registry.rs`) makes protocol identity, dispatch, configuration,
//! detection and the telemetry lookup.
//!
//! Each decoder is a folder: a pure parser (bytes to typed messages, streaming, never panics) plus a
//! small state machine that pairs requests with responses into [`Transaction`]s. The flow
//! layer feeds each decoder the in-order bytes of each direction (TCP) or whole datagrams
//! (UDP), and tells it about gaps and the close of the connection.

pub mod detect;
pub mod heap;
pub mod http_common;
pub mod sql;
#[macro_use]
pub mod registry;
pub mod scan;
pub mod session;
pub mod stream_stats;
pub mod tally;
#[cfg(test)]
pub(crate) mod testkit;
pub mod transaction;

pub use stream_stats::StreamStats;
pub use tally::Tally;
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
    /// The decoder is done, and another protocol follows on the connection (PostgreSQL's
    /// SSLRequest accepted: a TLS handshake comes next): detect afresh on the next bytes.
    /// The decoder's counts are kept for `drain_stats`.
    Redetect,
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

    /// As [`L7Parser::on_data`], when no sink wants the records of plain requests: a
    /// decoder may count those into `tally` instead of reporting them (see
    /// [`tally`]). Default: reports every one.
    #[inline(always)]
    fn on_data_tallied(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
        _tally: &mut Tally,
    ) -> Progress {
        self.on_data(dir, bytes, ts, out)
    }

    /// `missing` bytes of direction `dir` will never arrive; the stream resumes after them.
    fn on_gap(&mut self, dir: Direction, missing: u32);

    /// The connection is gone (FIN, RST, idle expiry, eviction or shutdown): report what is
    /// still pending, marked with why it is incomplete.
    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>);

    /// Called periodically with the packet clock: report requests whose response is overdue.
    fn on_tick(&mut self, _now: Timestamp, _timeout_ns: u64, _out: &mut Vec<Transaction>) {}

    /// Bytes of heap the connection's state holds outside its flow slot (buffers, pending
    /// requests, header tables, statement maps), from capacities: O(1), counted against
    /// the worker's `protocols.max_worker_heap_bytes`. Default none.
    fn heap_bytes(&self) -> usize {
        0
    }
}

use detect::Transport;

// The decoders podtap has: the one place a protocol is wired in (see `registry`).
// Variant = "[protocols.<section>]" => module::Decoder [Protocol = "podtap.protocol", ...]
registry::decoders! {
    Http1 = "http" => http1::Http1Parser [Http = "http"],
    Http2 = "http2" => http2::Http2Parser [Http2 = "http2", Grpc = "grpc"],
    Dns = "dns" => dns::DnsParser [Dns = "dns"],
    Tls = "tls" => tls::TlsParser [Tls = "tls"],
    Memcached = "memcached" => memcached::MemcachedParser [Memcached = "memcached"],
    Redis = "redis" => redis::RedisParser [Redis = "redis"],
    Postgresql = "postgresql" => postgresql::PgParser [Postgresql = "postgresql"],
    Mysql = "mysql" => mysql::MysqlParser [Mysql = "mysql", Mariadb = "mariadb"],
    Mongodb = "mongodb" => mongodb::MongoParser [Mongodb = "mongodb"],
    Kafka = "kafka" => kafka::KafkaParser [Kafka = "kafka"],
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
