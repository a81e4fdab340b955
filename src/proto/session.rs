//! The application-layer state of one flow: detect the protocol from the first bytes,
//! then feed the chosen decoder. Flows no decoder claims go to the built-in byte counter,
//! so every stream still exercises the `L7Parser` seam and gets flow statistics.

use super::detect::{Detection, Transport, detect};
use super::http2::Http2Parser;
use super::{
    Decoder, DecoderFactory, DecoderKind, Direction, L7Parser, Progress, Protocol, StreamStats,
    Tally, Transaction,
};
use crate::events::Counters;
use crate::time::Timestamp;

/// Bytes of each direction held while no probe can tell yet, and how far a probe sees
/// into a chunk: the HTTP/2 preface is 24, a memcached or Redis inline command line often
/// longer. Detection decides once a direction has shown this many bytes, however many
/// segments they came in (a sender dripping one byte per segment is detected as well as
/// one sending whole messages).
const PREFIX: usize = 64;

impl DecoderFactory {
    /// Fails only on settings that loading the config rejects already.
    pub fn from_config(cfg: &crate::config::Config) -> Result<Self, String> {
        DecoderFactory::new(&cfg.protocols)
    }
}

/// The first bytes of each direction, held until detection decides, then handed to the
/// decoder in the order they came.
#[derive(Clone)]
struct Held {
    bytes: [[u8; PREFIX]; 2],
    len: [u8; 2],
    /// The direction whose bytes came first.
    first: Option<Direction>,
}

impl Held {
    const EMPTY: Held = Held {
        bytes: [[0; PREFIX]; 2],
        len: [0; 2],
        first: None,
    };

    fn of(&self, dir: Direction) -> &[u8] {
        &self.bytes[dir.index()][..self.len[dir.index()] as usize]
    }
}

enum State {
    Detecting(Held),
    Active(Box<Decoder>),
    /// The decoder has nothing more to learn from this connection.
    Done(Box<Decoder>),
    /// The worker's decoder heap was full: the decoder was dropped with its state (the
    /// protocol it had found is kept for the flow's record).
    Shed(Protocol),
}

/// What a worker's decoders hold on the heap outside their flow slots (pending requests,
/// header tables, statement maps, split messages: [`L7Parser::heap_bytes`]), against
/// `protocols.max_worker_heap_bytes`. Above it, the connection whose decoder just grew is
/// shed: it is the one growing, and dropping it frees what it held at once.
///
/// [`L7Parser::heap_bytes`]: super::L7Parser::heap_bytes
#[derive(Debug)]
pub struct DecoderHeap {
    pub used: usize,
    pub max: usize,
    /// The most held at once.
    pub peak: usize,
    /// Connections shed since the last [`DecoderHeap::take_shed`].
    shed: u64,
}

impl DecoderHeap {
    pub fn new(max: usize) -> DecoderHeap {
        DecoderHeap {
            used: 0,
            max,
            peak: 0,
            shed: 0,
        }
    }

    /// Connections shed since the last call (for `l7.memory_shed`).
    pub fn take_shed(&mut self) -> u64 {
        std::mem::take(&mut self.shed)
    }
}

pub struct L7Session {
    state: State,
    transport: Transport,
    server_port: u16,
    /// Counts of a decoder handed over to another (h2c upgrade), not yet drained. Boxed:
    /// rare, and the counters are larger than the rest of the flow's session.
    carried: Option<Box<Counters>>,
    /// What the decoder held on the heap when last accounted (see [`DecoderHeap`]).
    heap: u32,
}

impl L7Session {
    pub fn new(transport: Transport, server_port: u16) -> Self {
        let state = State::Detecting(Held::EMPTY);
        L7Session {
            state,
            transport,
            server_port,
            carried: None,
            heap: 0,
        }
    }

    pub fn protocol(&self) -> Protocol {
        match &self.state {
            State::Shed(p) => *p,
            _ => self.decoder().map_or(Protocol::Unknown, |d| d.protocol()),
        }
    }

    pub fn decoder(&self) -> Option<&Decoder> {
        match &self.state {
            State::Active(d) | State::Done(d) => Some(d),
            State::Detecting { .. } | State::Shed(_) => None,
        }
    }

    /// [`L7Session::data_tallied`] with every request reported (the decoders' tests).
    #[cfg(test)]
    pub fn data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        f: &DecoderFactory,
        out: &mut Vec<Transaction>,
    ) {
        self.data_tallied(dir, bytes, ts, f, out, &mut Tally::default())
    }

    /// In-order bytes (TCP) or one datagram (UDP) from `dir`, with plain requests counted
    /// into `tally` when it is on instead of reported (see [`crate::proto::tally`]).
    ///
    /// Inlined: nearly every chunk goes to an active decoder that goes on, and that path
    /// is a call less per packet this way; the rest is out of line.
    #[inline(always)]
    pub fn data_tallied(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        f: &DecoderFactory,
        out: &mut Vec<Transaction>,
        tally: &mut Tally,
    ) {
        let ended = match &mut self.state {
            State::Active(d) => match d.on_data_tallied(dir, bytes, ts, out, tally) {
                Progress::Continue => return,
                p => Some(p),
            },
            _ => None,
        };
        self.data_rest(ended, dir, bytes, ts, f, out);
    }

    /// The rest of [`L7Session::data_tallied`]: the active decoder `ended` with this chunk (it is
    /// done, or asks for detection afresh), or there is no active decoder (detection, or
    /// nothing).
    #[inline(never)]
    fn data_rest(
        &mut self,
        ended: Option<Progress>,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        f: &DecoderFactory,
        out: &mut Vec<Transaction>,
    ) {
        match ended {
            Some(Progress::Continue) => return,
            Some(Progress::Done) => {
                if !self.upgrade(dir, bytes, ts, f, out) {
                    self.finish_active();
                }
                return;
            }
            Some(Progress::Redetect) => return self.redetect(),
            None => {}
        }
        match &mut self.state {
            State::Active(_) | State::Done(_) | State::Shed(_) => {}
            State::Detecting(h) => {
                if bytes.is_empty() {
                    return;
                }
                // Bytes held from earlier chunks of the same direction come first.
                let held = h.len[dir.index()] as usize;
                let mut look = [0u8; PREFIX * 2];
                let n = held + bytes.len().min(PREFIX);
                look[..held].copy_from_slice(h.of(dir));
                look[held..n].copy_from_slice(&bytes[..n - held]);
                // Each wait holds at least one more byte of a direction, and a direction
                // holds fewer than PREFIX: bounded, without counting segments.
                let can_wait = self.transport == Transport::Tcp && n < PREFIX;
                let kind = match detect(
                    &look[..n],
                    dir,
                    self.transport,
                    self.server_port,
                    &f.protocols,
                    !can_wait,
                ) {
                    Detection::NeedMore if can_wait => {
                        h.bytes[dir.index()][..n].copy_from_slice(&look[..n]);
                        h.len[dir.index()] = n as u8;
                        h.first.get_or_insert(dir);
                        return;
                    }
                    Detection::Found(p) => Some(p),
                    _ => None,
                };
                // What the other direction showed came before this chunk; this
                // direction's own held bytes came before it too (which of the two held
                // parts came first is `first`). The other direction's are fed only if
                // the chosen decoder's probe does not reject them (bytes a client sent
                // that were no command of the protocol found in the replies are passed
                // over, as if the connection had been picked up after them).
                let h = h.clone();
                let other = dir.reverse();
                let other_bytes = match kind {
                    Some(k)
                        if super::probe_kind(
                            k,
                            h.of(other),
                            other,
                            self.transport,
                            self.server_port,
                            &f.protocols,
                        ) == super::Confidence::No =>
                    {
                        &[][..]
                    }
                    _ => h.of(other),
                };
                let dec = kind
                    .and_then(|k| f.make(k, self.transport))
                    .unwrap_or(Decoder::StreamStats(StreamStats::default()));
                let mut feed = [(dir, h.of(dir)), (other, other_bytes), (dir, bytes)];
                if h.first == Some(other) {
                    feed.swap(0, 1);
                }
                self.start(dec, &feed, ts, out);
            }
        }
    }

    /// Hand the connection to `dec`, fed `feed` (held bytes, then the chunk) in order.
    fn start(
        &mut self,
        dec: Decoder,
        feed: &[(Direction, &[u8])],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let mut dec = Box::new(dec);
        let mut progress = Progress::Continue;
        for &(dir, bytes) in feed {
            if progress != Progress::Continue {
                break;
            }
            if !bytes.is_empty() {
                progress = dec.on_data(dir, bytes, ts, out);
            }
        }
        self.state = match progress {
            Progress::Continue => State::Active(dec),
            Progress::Done => State::Done(dec),
            Progress::Redetect => {
                self.state = State::Active(dec);
                self.redetect();
                return;
            }
        };
    }

    /// The decoder handed the connection on (STARTTLS): keep its counts, and detect the
    /// protocol of what follows afresh.
    fn redetect(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Detecting(Held::EMPTY));
        if let State::Active(mut d) | State::Done(mut d) = state {
            let mut c = self.carried.take().unwrap_or_default();
            d.drain_stats(&mut c);
            self.carried = Some(c);
        }
    }

    /// HTTP/1 that switched to HTTP/2 (`Upgrade: h2c`, 101): hand the connection to an
    /// HTTP/2 decoder, with the bytes of `bytes` that were already HTTP/2.
    fn upgrade(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        f: &DecoderFactory,
        out: &mut Vec<Transaction>,
    ) -> bool {
        let State::Active(d) = &mut self.state else {
            return false;
        };
        let Decoder::Http1(h1) = &mut **d else {
            return false;
        };
        let Some((req, rest)) = h1.take_h2c_upgrade() else {
            return false;
        };
        if !f.protocols.enabled(DecoderKind::Http2) {
            return false;
        }
        // Whatever HTTP/1 still held is reported, and its counts kept for `drain_stats`.
        h1.on_close(ts, false, out);
        let mut c = self.carried.take().unwrap_or_default();
        d.drain_stats(&mut c);
        self.carried = Some(c);
        let h2 = Http2Parser::upgraded(f.http2.0.clone(), f.http2.1.clone(), req);
        let tail = &bytes[bytes.len() - rest.min(bytes.len())..];
        self.start(Decoder::Http2(h2), &[(dir, tail)], ts, out);
        true
    }

    fn finish_active(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Detecting(Held::EMPTY));
        self.state = match state {
            State::Active(d) => State::Done(d),
            other => other,
        };
    }

    pub fn gap(&mut self, dir: Direction, missing: u32) {
        match &mut self.state {
            State::Active(d) => d.on_gap(dir, missing),
            // A gap before the protocol is known: detect afresh on what follows.
            State::Detecting(h) => *h = Held::EMPTY,
            State::Done(_) | State::Shed(_) => {}
        }
    }

    /// Bring the worker's `heap` up to date with what this connection's decoder holds now
    /// (after data or a tick); over the bound, shed it: its pending requests are reported
    /// incomplete (`memory`) into `out`, its counts kept, its state freed.
    ///
    /// Inlined into the per-chunk path (a capacity read or two and a compare when nothing
    /// grew); shedding is out of line.
    #[inline(always)]
    pub fn account(&mut self, heap: &mut DecoderHeap, ts: Timestamp, out: &mut Vec<Transaction>) {
        let State::Active(d) = &self.state else {
            return;
        };
        let now = u32::try_from(d.heap_bytes()).unwrap_or(u32::MAX);
        if now == self.heap {
            return;
        }
        heap.used = heap.used - self.heap as usize + now as usize;
        self.heap = now;
        heap.peak = heap.peak.max(heap.used);
        if heap.used > heap.max {
            self.shed(heap, ts, out);
        }
    }

    #[cold]
    #[inline(never)]
    fn shed(&mut self, heap: &mut DecoderHeap, ts: Timestamp, out: &mut Vec<Transaction>) {
        let protocol = self.protocol();
        let state = std::mem::replace(&mut self.state, State::Shed(protocol));
        if let State::Active(mut d) = state {
            let from = out.len();
            d.on_close(ts, false, out);
            for tx in &mut out[from..] {
                tx.completeness.set(super::Completeness::MEMORY);
            }
            let mut c = self.carried.take().unwrap_or_default();
            d.drain_stats(&mut c);
            self.carried = Some(c);
        }
        self.release(heap);
        heap.shed += 1;
    }

    /// The flow is over (or shed): what its decoder held leaves the worker's heap.
    pub fn release(&mut self, heap: &mut DecoderHeap) {
        heap.used -= self.heap as usize;
        self.heap = 0;
    }

    pub fn close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        if let State::Active(d) = &mut self.state {
            d.on_close(ts, reset, out);
        }
    }

    /// Fold the decoder's drop/error counts into the worker's counters.
    pub fn drain_stats(&mut self, c: &mut Counters) {
        if let Some(carried) = self.carried.take() {
            for (e, n) in carried.nonzero() {
                c.add(e, n);
            }
        }
        if let State::Active(d) | State::Done(d) = &mut self.state {
            d.drain_stats(c);
        }
    }

    pub fn tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        if let State::Active(d) = &mut self.state {
            d.on_tick(now, timeout_ns, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undetected_streams_reach_the_byte_counter_including_held_prefix() {
        let f = DecoderFactory::default();
        let mut s = L7Session::new(Transport::Tcp, 80);
        let mut out = Vec::new();
        // "GE" could be HTTP: held; then "T" completes... into something that is not HTTP.
        s.data(Direction::ToServer, b"GE", Timestamp(1), &f, &mut out);
        assert!(s.decoder().is_none());
        s.data(Direction::ToServer, b"Xhello", Timestamp(2), &f, &mut out);
        let Some(Decoder::StreamStats(st)) = s.decoder() else {
            panic!("expected the byte counter")
        };
        assert_eq!(st.delivered[0], 8, "held bytes are delivered too");
    }

    /// One byte per segment: detection holds the bytes until a probe can tell (or a
    /// direction has shown PREFIX bytes), whatever the number of segments, and the decoder
    /// gets every byte, both directions in the order they came.
    #[test]
    fn dripped_bytes_are_detected_and_delivered_whole() {
        let f = DecoderFactory::default();
        let req = b"GET /drip HTTP/1.1\r\nHost: a\r\n\r\n";
        let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        let mut s = L7Session::new(Transport::Tcp, 8080);
        let mut out = Vec::new();
        for (i, b) in req.iter().enumerate() {
            s.data(
                Direction::ToServer,
                &[*b],
                Timestamp(1 + i as u64),
                &f,
                &mut out,
            );
        }
        for (i, b) in resp.iter().enumerate() {
            s.data(
                Direction::ToClient,
                &[*b],
                Timestamp(100 + i as u64),
                &f,
                &mut out,
            );
        }
        s.close(Timestamp(1000), false, &mut out);
        assert_eq!(s.protocol(), Protocol::Http);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].resource.as_str(), out[0].status),
            ("/drip", Some(200))
        );
        assert!(out[0].completeness.is_complete());

        // A PostgreSQL startup message, one byte per segment: its probe needs the length,
        // the protocol version and the parameters, many more bytes than segments.
        let mut startup = Vec::new();
        let params = b"user\0alice\0database\0shop\0\0";
        startup.extend_from_slice(&(8 + params.len() as u32).to_be_bytes());
        startup.extend_from_slice(&196_608u32.to_be_bytes());
        startup.extend_from_slice(params);
        let mut s = L7Session::new(Transport::Tcp, 5432);
        for (i, b) in startup.iter().enumerate() {
            s.data(
                Direction::ToServer,
                &[*b],
                Timestamp(1 + i as u64),
                &f,
                &mut out,
            );
        }
        assert_eq!(s.protocol(), Protocol::Postgresql);

        // Bytes no probe claims: held up to PREFIX bytes of a direction (the other
        // direction's held bytes first, as they came first), then counted, all of them.
        let mut s = L7Session::new(Transport::Tcp, 9999);
        s.data(Direction::ToClient, b"\x01\x02", Timestamp(1), &f, &mut out);
        for i in 0..100u64 {
            s.data(Direction::ToServer, &[0xfe], Timestamp(2 + i), &f, &mut out);
        }
        let Some(Decoder::StreamStats(st)) = s.decoder() else {
            panic!("expected the byte counter")
        };
        assert_eq!((st.delivered[0], st.delivered[1]), (100, 2));
    }

    #[test]
    fn tls_after_postgres_ssl_request_is_detected() {
        let f = DecoderFactory::default();
        let mut s = L7Session::new(Transport::Tcp, 5432);
        let mut out = Vec::new();
        s.data(
            Direction::ToServer,
            &[0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f],
            Timestamp(1),
            &f,
            &mut out,
        );
        s.data(Direction::ToClient, b"S", Timestamp(2), &f, &mut out);
        s.data(
            Direction::ToServer,
            &[0x16, 3, 1, 0, 40, 1, 0, 0, 36],
            Timestamp(3),
            &f,
            &mut out,
        );
        assert_eq!(s.protocol(), Protocol::Tls);
    }

    #[test]
    fn h2c_upgrade_hands_the_connection_to_http2() {
        let f = DecoderFactory::default();
        let mut s = L7Session::new(Transport::Tcp, 80);
        let mut out = Vec::new();
        let req = b"GET /robots.txt HTTP/1.1\r\nHost: example.org\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n";
        s.data(Direction::ToServer, req, Timestamp(1), &f, &mut out);
        // 101, then in the same segment the server's SETTINGS and stream 1's response.
        let mut resp =
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
                .to_vec();
        resp.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        resp.extend_from_slice(&[0, 0, 1, 1, 5, 0, 0, 0, 1, 0x88]);
        s.data(Direction::ToClient, &resp, Timestamp(2), &f, &mut out);
        assert_eq!(s.protocol(), Protocol::Http2);
        let mut c = super::super::http2::parser::PREFACE.to_vec();
        c.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        // Stream 3 on the upgraded connection, answered 404.
        c.extend_from_slice(&[0, 0, 3, 1, 5, 0, 0, 0, 3, 0x82, 0x86, 0x84]);
        s.data(Direction::ToServer, &c, Timestamp(3), &f, &mut out);
        s.data(
            Direction::ToClient,
            &[0, 0, 1, 1, 5, 0, 0, 0, 3, 0x8d],
            Timestamp(4),
            &f,
            &mut out,
        );
        let got: Vec<_> = out
            .iter()
            .map(|t| (t.protocol, t.resource.to_string(), t.status))
            .collect();
        assert_eq!(
            got,
            [
                (Protocol::Http, "/robots.txt".to_string(), Some(101)),
                (Protocol::Http2, "/robots.txt".to_string(), Some(200)),
                (Protocol::Http2, "/".to_string(), Some(404)),
            ]
        );
        assert!(out.iter().all(|t| t.completeness.is_complete()));
    }

    /// Past the worker's heap bound, the connection that grew is shed: its pending
    /// requests come out marked `memory`, what it held leaves the account, and it decodes
    /// nothing more; other connections go on.
    #[test]
    fn a_connection_over_the_heap_bound_is_shed() {
        let f = DecoderFactory::default();
        let mut heap = DecoderHeap::new(4096);
        let mut out = Vec::new();
        let mut a = L7Session::new(Transport::Tcp, 6379);
        // Two commands alternating: a run of like commands waits as one entry.
        let cmds = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nTIME\r\n".repeat(50);
        a.data(Direction::ToServer, &cmds, Timestamp(1), &f, &mut out);
        a.account(&mut heap, Timestamp(1), &mut out);
        assert_eq!(a.protocol(), Protocol::Redis, "the protocol stays known");
        assert_eq!(heap.take_shed(), 1);
        assert_eq!(heap.used, 0);
        assert_eq!(out.len(), 100, "every pending command reported");
        assert!(
            out.iter()
                .all(|t| t.completeness.has(super::super::Completeness::MEMORY))
        );
        out.clear();
        a.data(
            Direction::ToClient,
            b"+PONG\r\n",
            Timestamp(2),
            &f,
            &mut out,
        );
        assert!(out.is_empty(), "a shed connection decodes nothing more");
        // A small connection stays within the bound and is accounted until it ends.
        let mut b = L7Session::new(Transport::Tcp, 6379);
        b.data(
            Direction::ToServer,
            b"*1\r\n$4\r\nPING\r\n",
            Timestamp(3),
            &f,
            &mut out,
        );
        b.account(&mut heap, Timestamp(3), &mut out);
        assert!(heap.used > 0 && heap.used <= heap.max, "{heap:?}");
        assert_eq!(heap.take_shed(), 0);
        b.release(&mut heap);
        assert_eq!(heap.used, 0);
    }
}
