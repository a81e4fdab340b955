//! Kafka (`messaging.system = kafka`): the binary protocol of Apache Kafka brokers and
//! compatible ones, every API by name, over TCP.
//!
//! Two layers, as in every podtap decoder: [`parser`] frames each direction's bytes into
//! messages and walks the few fields reported (split anywhere, record data skipped by
//! length, never buffered), and [`KafkaParser`] pairs requests with responses into
//! [`Transaction`]s. A message whole in its chunk (nearly all) is framed, walked into its
//! `Msg` and paired in one go (`KafkaParser::whole`); the others go through the parser's
//! events one at a time.
//!
//! Pairing: a response carries its request's correlation id, and a broker answers the
//! requests of a connection in order. A response is paired with the pending request of
//! its correlation id; requests before it that got no response (lost in a gap) are
//! reported `no_response`. Produce with `acks = 0` gets no response at all: it is
//! reported at once, complete, and never waits, so the pairs after it do not shift. A
//! response whose request was never seen is reported with `no_request`. A capture that
//! took the broker for the client (no handshake seen) is decoded with the roles swapped
//! once the flow's server side shows a request and its client side did not.
//!
//! Topics: Produce, Fetch, ListOffsets, OffsetCommit, OffsetFetch, TxnOffsetCommit,
//! CreateTopics, DeleteTopics and Metadata name theirs; one topic becomes
//! `messaging.destination.name` (and `podtap.resource`), several are counted
//! (`podtap.kafka.topics`). Fetch v13+ (and Produce v13+, OffsetCommit v10+) carry topic
//! ids instead of names: the decoder learns each id's name from the Metadata responses
//! (v10+) it sees, on the connection and across the worker's connections (a client asks
//! its bootstrap broker, then fetches from the leader on another connection), bounded
//! both ways. An id not learned yet is reported as `podtap.kafka.topic_id` with
//! `podtap.kafka.topic_id_unresolved = true`.
//!
//! Errors: the first non-zero error code of a response (its own, or a partition's or a
//! topic's) becomes `error.type` (Kafka's name, `UNKNOWN_TOPIC_OR_PARTITION`), the
//! number of entries with one `podtap.kafka.errors`.
//!
//! Messages: the record batches of Produce requests and Fetch responses are counted from
//! their headers (records count; control batches left out; a batch cut by the end of a
//! Fetch response not counted), without decompressing: `messaging.batch.message_count`,
//! which feeds `messaging.client.sent.messages` and `messaging.client.consumed.messages`.
//!
//! SASL: SaslHandshake and SaslAuthenticate are reported by name and error code; their
//! payloads (mechanism data, tokens, passwords) are never read.

pub mod parser;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use compact_str::{CompactString, ToCompactString, format_compact};
use serde::{Deserialize, Serialize};

use self::parser::{Ev, Fields, Head, Name, NotWalked, Parser, Side, Sink, api_name, error_name};
use super::detect::Transport;
use super::registry::{MetricAttr, Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{DecoderCounters, Event as CoreEv, decoder_events};
use crate::stats::Metric;
use crate::time::Timestamp;

/// `[protocols.kafka]`: settings of the Kafka decoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Requests awaiting their response on one connection. When full, the oldest is
    /// reported (`no_response`) and counted as `l7.pending_limit`. Default 1024.
    pub max_pending: usize,
    /// Longest message believed, in bytes (Kafka's own `socket.request.max.bytes` is
    /// 100 MiB by default). A longer length is taken for damage: counted as
    /// `kafka.malformed`, and the direction resynchronises. Default 104857600.
    pub max_message_bytes: u32,
    /// Topic ids whose names one connection remembers (from its Metadata responses).
    /// When full, the oldest is forgotten (`kafka.topic_id_evicted`). Default 256.
    pub topic_ids_per_connection: usize,
    /// Topic ids whose names a worker remembers across its connections. When full, the
    /// oldest is forgotten (`kafka.topic_id_evicted`). Default 16384.
    pub topic_ids_per_worker: usize,
    /// Report the client id of the request header as `messaging.client.id`. Default
    /// true (client ids name applications, not users).
    pub client_id: bool,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            max_pending: 1024,
            max_message_bytes: 100 << 20,
            topic_ids_per_connection: 256,
            topic_ids_per_worker: 16384,
            client_id: true,
        }
    }
}

decoder_events! {
    /// Kafka's own events (`kafka.*` counters).
    pub enum KafkaEvent {
        Malformed => "kafka.malformed", warn, "Kafka message length out of bounds (damage, or a pickup in the middle of a message): the direction resynchronises at the next plausible message";
        BadFields => "kafka.bad_fields", warn, "Kafka message whose fields do not follow the layout of its API version: reported with the fields read before";
        NoRequest => "kafka.no_request", warn, "Kafka response without a request (lost in a gap, or before the pickup): reported with no_request";
        NoResponse => "kafka.no_response", warn, "Kafka request passed over by the response of a later one (its response lost in a gap): reported with no_response";
        AcksZero => "kafka.acks_zero", debug, "Kafka Produce requests with acks=0: the broker sends no response, reported at once";
        AcksZeroAnswered => "kafka.acks_zero_answered", debug, "Kafka responses to Produce requests with acks=0 (which Apache Kafka never sends; some compatible brokers do): dropped, the request was reported already";
        TopicIdUnresolved => "kafka.topic_id_unresolved", debug, "Kafka topic ids (Fetch v13+, Produce v13+, OffsetCommit v10+) whose name no Metadata response seen had given: reported as podtap.kafka.topic_id";
        TopicIdEvicted => "kafka.topic_id_evicted", debug, "Kafka topic id names forgotten because kafka.topic_ids_per_connection or kafka.topic_ids_per_worker was reached";
    }
}

/// What went wrong or was notable on one connection since the last `take_stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KafkaStats {
    /// → `kafka.malformed`
    pub malformed: u64,
    /// → `kafka.bad_fields`
    pub bad_fields: u64,
    /// → `kafka.no_request`
    pub no_request: u64,
    /// → `kafka.no_response`
    pub no_response: u64,
    /// → `kafka.acks_zero`
    pub acks_zero: u64,
    /// → `kafka.acks_zero_answered`
    pub acks_zero_answered: u64,
    /// → `kafka.topic_id_unresolved`
    pub topic_id_unresolved: u64,
    /// → `kafka.topic_id_evicted`
    pub topic_id_evicted: u64,
    /// → `l7.pending_limit`
    pub pending_limit: u64,
    /// → `l7.transaction_timeout`
    pub timeouts: u64,
}

impl KafkaStats {
    /// Fold the counts into the worker's event counters.
    pub fn add_to(&self, c: &mut DecoderCounters<'_, KafkaEvent>) {
        use KafkaEvent::*;
        c.add_own(Malformed, self.malformed);
        c.add_own(BadFields, self.bad_fields);
        c.add_own(NoRequest, self.no_request);
        c.add_own(NoResponse, self.no_response);
        c.add_own(AcksZero, self.acks_zero);
        c.add_own(AcksZeroAnswered, self.acks_zero_answered);
        c.add_own(TopicIdUnresolved, self.topic_id_unresolved);
        c.add_own(TopicIdEvicted, self.topic_id_evicted);
        c.add(CoreEv::PendingLimit, self.pending_limit);
        c.add(CoreEv::TransactionTimeout, self.timeouts);
    }
}

/// Topic id → name, bounded, the oldest forgotten first.
#[derive(Debug, Default)]
pub struct TopicIds {
    names: HashMap<[u8; 16], CompactString>,
    order: VecDeque<[u8; 16]>,
    cap: usize,
}

impl TopicIds {
    pub fn new(cap: usize) -> TopicIds {
        TopicIds {
            names: HashMap::new(),
            order: VecDeque::new(),
            cap,
        }
    }

    pub fn get(&self, id: &[u8; 16]) -> Option<&CompactString> {
        self.names.get(id)
    }

    /// Remember `id`'s name; true when an older entry was forgotten for it.
    pub fn insert(&mut self, id: [u8; 16], name: &CompactString) -> bool {
        if let Some(n) = self.names.get_mut(&id) {
            if n != name {
                n.clone_from(name);
            }
            return false;
        }
        let mut evicted = false;
        while self.names.len() >= self.cap.max(1) {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            self.names.remove(&old);
            evicted = true;
        }
        self.names.insert(id, name.clone());
        self.order.push_back(id);
        evicted
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What every connection of a worker shares: the settings and the worker's topic ids.
#[derive(Clone, Debug)]
pub struct KafkaShared {
    pub cfg: KafkaConfig,
    /// One per worker (the factory is): uncontended.
    pub topic_ids: Arc<Mutex<TopicIds>>,
}

impl KafkaShared {
    pub fn new(cfg: KafkaConfig) -> KafkaShared {
        KafkaShared {
            cfg,
            topic_ids: Arc::new(Mutex::new(TopicIds::new(cfg.topic_ids_per_worker))),
        }
    }
}

/// The topic(s) of one message.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Topic {
    #[default]
    None,
    Name(CompactString),
    /// A topic id no Metadata response named.
    Id([u8; 16]),
}

/// One message (request or response) as read so far.
#[derive(Clone, Debug, Default)]
struct Msg {
    api: i16,
    version: i16,
    corr: i32,
    start: Timestamp,
    last: Timestamp,
    bytes: u64,
    /// Topic entries, the first one, and whether another differs from it.
    topics: u32,
    topic: Topic,
    several_topics: bool,
    /// Partitions, error codes, `acks`, and FindCoordinator's `key_type` (1 for a
    /// transactional id, not a consumer group).
    fields: Fields,
    group: Option<CompactString>,
    client_id: Option<CompactString>,
    records: u64,
    batches: u32,
    malformed: bool,
    gap: bool,
    /// The last name read was a topic's (a Metadata topic id that follows is its id).
    named: bool,
}

impl crate::proto::heap::HeapSize for Msg {
    /// The topic name, when it did not fit inline.
    fn heap_size(&self) -> usize {
        match &self.topic {
            Topic::Name(n) => crate::proto::heap::str_heap(n),
            _ => 0,
        }
    }
}

impl Msg {
    fn new(api: i16, version: i16, corr: i32, ts: Timestamp, bytes: u64) -> Msg {
        Msg {
            api,
            version,
            corr,
            start: ts,
            last: ts,
            bytes,
            ..Msg::default()
        }
    }

    fn topic(&mut self, t: Topic) {
        self.topics += 1;
        if self.topics == 1 {
            self.topic = t;
        } else if self.topic != t {
            self.several_topics = true;
        }
    }

    /// What a whole-message walk summed.
    fn walked(&mut self, w: parser::Walked) {
        self.fields = w.fields;
        self.records = w.records;
        self.batches = w.batches;
    }

    /// A name read of the message (by either walk).
    fn name(&mut self, name: Name, bytes: &[u8], recent: &mut Recent, client_id: bool) {
        match name {
            Name::Topic => {
                // A connection keeps naming the same topic: its last name is reused.
                if recent.topic.as_bytes() != bytes {
                    recent.topic = CompactString::from_utf8_lossy(bytes);
                }
                self.topic(Topic::Name(recent.topic.clone()));
                self.named = true;
            }
            Name::Group => {
                if self.group.is_none() && !bytes.is_empty() {
                    self.group = Some(CompactString::from_utf8_lossy(bytes));
                }
            }
            Name::ClientId => {
                if client_id && !bytes.is_empty() {
                    if recent.client.as_bytes() != bytes {
                        recent.client = CompactString::from_utf8_lossy(bytes);
                    }
                    self.client_id = Some(recent.client.clone());
                }
            }
        }
    }
}

/// The last topic name and client id read on a connection (it repeats them: a clone of
/// one is a copy, or a reference count, not a new string).
#[derive(Debug, Default)]
struct Recent {
    topic: CompactString,
    client: CompactString,
}

/// Topic ids one whole-message walk keeps aside (a bound on its memory: a message with
/// more is read by the field walk, which handles each id as it reads it).
const DIRECT_IDS: usize = 64;

/// Where a whole-message walk ([`parser::walk_request`], [`parser::walk_response`]) puts
/// what it reads: the message's `Msg`, as the field walk's events fill it. Topic ids are
/// kept aside and looked up or learned once the walk has succeeded (a failed walk must
/// leave nothing changed: the field walk then reads the message again).
struct Direct<'a, 'm> {
    m: &'m mut Msg,
    recent: &'m mut Recent,
    client_id: bool,
    /// The message is a response whose request named its topics: `finish` reports the
    /// request's, so the response's topic names are passed over (not compared, kept nor
    /// counted).
    request_named: bool,
    /// The last name read (Metadata v10+ gives a topic's id after its name).
    last: &'a [u8],
    /// Each id, with the name it is learned with, or `None`: a topic of the message. (No
    /// allocation for the messages without: Produce before v13, most of them.)
    ids: Vec<([u8; 16], Option<&'a [u8]>)>,
}

impl<'a, 'm> Direct<'a, 'm> {
    fn new(m: &'m mut Msg, recent: &'m mut Recent, client_id: bool, request_named: bool) -> Self {
        Direct {
            m,
            recent,
            client_id,
            request_named,
            last: &[],
            ids: Vec::new(),
        }
    }
}

impl<'a> Sink<'a> for Direct<'a, '_> {
    fn name(&mut self, name: Name, bytes: &'a [u8]) -> Result<(), NotWalked> {
        // A topic name after a topic id: the field walk counts them in that order.
        if name == Name::Topic && self.ids.iter().any(|e| e.1.is_none()) {
            return Err(NotWalked);
        }
        if name == Name::Topic && self.request_named {
            // (Its id, should one follow, is still learned with it.)
            self.m.named = true;
        } else {
            self.m.name(name, bytes, self.recent, self.client_id);
        }
        self.last = bytes;
        Ok(())
    }

    fn topic_id(&mut self, id: [u8; 16]) -> Result<(), NotWalked> {
        if self.ids.len() >= DIRECT_IDS {
            return Err(NotWalked);
        }
        if self.m.named {
            self.m.named = false;
            self.ids.push((id, Some(self.last)));
        } else if self.m.topics > 0 {
            // A topic id after a topic name: counted in that order by the field walk.
            return Err(NotWalked);
        } else {
            self.ids.push((id, None));
        }
        Ok(())
    }
}

/// One Kafka connection: two directions' parsers, the requests awaiting responses.
pub struct KafkaParser {
    cfg: KafkaConfig,
    worker_ids: Arc<Mutex<TopicIds>>,
    /// Topic ids learned on this connection (looked up before the worker's).
    conn_ids: Vec<([u8; 16], CompactString)>,
    parsers: Box<[Parser; 2]>,
    /// The message being read in each direction.
    cur: [Option<Msg>; 2],
    /// The request the response being read answers.
    answering: Option<Msg>,
    pending: crate::proto::heap::TrackedDeque<Msg>,
    /// Correlation ids of the last Produce requests with acks=0 (reported already): a
    /// response to one (some brokers answer them) is dropped, not reported unpaired.
    acks_zero: [Option<i32>; 4],
    /// The response being read answers one of them.
    dropping: bool,
    /// Transactions finished by a gap, handed out with the next output.
    held: Vec<Transaction>,
    recent: Recent,
    stats: KafkaStats,
    gap_seen: bool,
    last_ts: Timestamp,
    /// Which side sends requests is known (the first bytes of one side were a request).
    decided: bool,
    /// The requests come from the side the flow calls the server (a capture that saw
    /// the broker speak first: its first response before the request).
    swapped: bool,
    /// The first bytes of the flow while it is not known which side sends requests
    /// (at most `EARLY_MAX`).
    early: Vec<(Direction, Vec<u8>, Timestamp)>,
    early_bytes: usize,
    /// The first bytes of each side, for the probes.
    early_head: [[u8; 64]; 2],
    early_head_len: [u8; 2],
    /// Messages read by the whole-message walk (tests check that it is taken).
    #[cfg(test)]
    direct: u32,
}

/// Bytes held until the roles are known.
const EARLY_MAX: usize = 16 << 10;

impl KafkaParser {
    pub fn new(shared: &KafkaShared) -> Self {
        let max = shared.cfg.max_message_bytes;
        KafkaParser {
            cfg: shared.cfg,
            worker_ids: shared.topic_ids.clone(),
            conn_ids: Vec::new(),
            parsers: Box::new([
                Parser::new(Side::Requests, max),
                Parser::new(Side::Responses, max),
            ]),
            cur: [None, None],
            answering: None,
            pending: crate::proto::heap::TrackedDeque::new(),
            acks_zero: [None; 4],
            dropping: false,
            held: Vec::new(),
            recent: Recent::default(),
            stats: KafkaStats::default(),
            gap_seen: false,
            last_ts: Timestamp::default(),
            decided: false,
            swapped: false,
            early: Vec::new(),
            early_bytes: 0,
            early_head: [[0; 64]; 2],
            early_head_len: [0; 2],
            #[cfg(test)]
            direct: 0,
        }
    }

    /// Settle which side sends requests from the first bytes of the flow: a request
    /// from the flow's client, as usual; a request with a client id from the flow's
    /// server, with no request from the client before it, swaps the roles (a capture
    /// without the handshake whose flow took the broker for the client). Until then the
    /// bytes are held (bounded: `EARLY_MAX`), and fed in the order they came once it is
    /// settled. True: `bytes` are to be fed now.
    fn decide(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> bool {
        if self.decided {
            return true;
        }
        if !bytes.is_empty() {
            // Consecutive chunks of one side are held as one.
            match self.early.last_mut() {
                Some(e) if e.0 == dir => e.1.extend_from_slice(bytes),
                _ => self.early.push((dir, bytes.to_vec(), ts)),
            }
            self.early_bytes += bytes.len();
            let d = dir.index();
            let (head, len) = (&mut self.early_head[d], &mut self.early_head_len[d]);
            let k = bytes.len().min(head.len() - *len as usize);
            head[*len as usize..*len as usize + k].copy_from_slice(&bytes[..k]);
            *len += k as u8;
        }
        // What the probes look at: each side's first bytes.
        let c = &self.early_head[0][..self.early_head_len[0] as usize];
        let sv = &self.early_head[1][..self.early_head_len[1] as usize];
        let swapped = match probe(c, Direction::ToServer, false) {
            Confidence::Likely => false,
            Confidence::NeedMore if !c.is_empty() && self.early_bytes <= EARLY_MAX => {
                return false;
            }
            _ => match probe(sv, Direction::ToServer, false) {
                Confidence::Likely if sv.len() >= 14 => request_from_server(sv),
                Confidence::Likely | Confidence::NeedMore if self.early_bytes <= EARLY_MAX => {
                    return false;
                }
                _ => false,
            },
        };
        self.decided = true;
        self.swapped = swapped;
        for (d, b, ts) in std::mem::take(&mut self.early) {
            self.feed(self.role(d), &b, ts, out);
        }
        false
    }

    /// Settle the roles with the bytes held so far (a gap or the close: no more to
    /// wait for).
    fn settle(&mut self, out: &mut Vec<Transaction>) {
        if !self.decided {
            self.early_bytes = EARLY_MAX + 1;
            let ts = self.last_ts;
            self.decide(Direction::ToServer, &[], ts, out);
        }
    }

    fn role(&self, dir: Direction) -> Direction {
        if self.swapped { dir.reverse() } else { dir }
    }

    /// The counts since the last call.
    pub fn take_stats(&mut self) -> KafkaStats {
        std::mem::take(&mut self.stats)
    }

    fn learn(&mut self, id: [u8; 16], name: &[u8]) {
        let name = CompactString::from_utf8_lossy(name);
        if let Some(e) = self.conn_ids.iter_mut().find(|e| e.0 == id) {
            e.1 = name.clone();
        } else {
            if self.conn_ids.len() >= self.cfg.topic_ids_per_connection.max(1) {
                self.conn_ids.remove(0);
                self.stats.topic_id_evicted += 1;
            }
            self.conn_ids.push((id, name.clone()));
        }
        if let Ok(mut w) = self.worker_ids.lock()
            && w.insert(id, &name)
        {
            self.stats.topic_id_evicted += 1;
        }
    }

    fn resolve(&mut self, id: &[u8; 16]) -> Topic {
        if let Some(e) = self.conn_ids.iter().find(|e| &e.0 == id) {
            return Topic::Name(e.1.clone());
        }
        if let Ok(w) = self.worker_ids.lock()
            && let Some(n) = w.get(id)
        {
            return Topic::Name(n.clone());
        }
        self.stats.topic_id_unresolved += 1;
        Topic::Id(*id)
    }

    fn feed(
        &mut self,
        dir: Direction,
        mut bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        let d = dir.index();
        if dir == Direction::ToClient && self.parsers[1].is_lost() {
            // Resynchronise on a response to one of the pending requests.
            let lo = self.pending.iter().map(|p| p.corr).min();
            let hi = self.pending.iter().map(|p| p.corr).max();
            self.parsers[1].corr_window = lo.zip(hi);
        }
        if let Some(m) = &mut self.cur[d] {
            m.last = ts;
        }
        loop {
            // Most messages are whole in their chunk: read in one go.
            if self.parsers[d].between_messages()
                && let Some(n) = self.whole(dir, bytes, ts, out)
            {
                bytes = &bytes[n..];
                if bytes.is_empty() {
                    break;
                }
                continue;
            }
            let (n, ev) = self.parsers[d].next(bytes);
            bytes = &bytes[n..];
            match ev {
                Some(ev) => self.event(dir, ev, ts, out),
                None if bytes.is_empty() => break,
                None => {}
            }
        }
    }

    /// The message at the start of `b`, when all of it is there: framed, walked straight
    /// into its `Msg` and paired, as the field walk's events would have done it. The bytes
    /// it took; `None` when it is not whole or its walk failed (the field walk reads it
    /// then, and reports what it finds), with nothing changed.
    fn whole(
        &mut self,
        dir: Direction,
        b: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Option<usize> {
        let side = match dir {
            Direction::ToServer => Side::Requests,
            Direction::ToClient => Side::Responses,
        };
        let f = parser::frame(b, side, self.cfg.max_message_bytes)?;
        let wire = f.wire as u64;
        match f.head {
            Head::Request { api, version, corr } => {
                let mut m = Msg::new(api, version, corr, ts, wire);
                let mut sink = Direct::new(&mut m, &mut self.recent, self.cfg.client_id, false);
                let w = parser::walk_request(f.body, api, version, &mut sink).ok()?;
                let ids = sink.ids;
                m.walked(w);
                self.topic_ids(&mut m, &ids);
                if let Some(prev) = self.cur[0].take() {
                    self.request_done(prev, out);
                }
                self.request_done(m, out);
            }
            Head::Response { corr } => {
                let found = self.pending.iter().position(|p| p.corr == corr);
                let req = found.and_then(|i| self.pending.get(i));
                let what = req.map(|p| (p.api, p.version));
                let named = req.is_some_and(|p| p.topics > 0);
                let (api, version) = what.unwrap_or((-1, 0));
                let mut m = Msg::new(api, version, corr, ts, wire);
                let mut sink = Direct::new(&mut m, &mut self.recent, self.cfg.client_id, named);
                let w = parser::walk_response(f.body, what, &mut sink).ok()?;
                let ids = sink.ids;
                m.walked(w);
                let req = self.response_begins(corr, found, out);
                self.topic_ids(&mut m, &ids);
                self.response_done(req.as_ref(), &m, false, out);
            }
        }
        #[cfg(test)]
        {
            self.direct += 1;
        }
        Some(f.wire)
    }

    /// The topic ids a whole-message walk set aside: learned with their names, or looked
    /// up as the message's topics.
    fn topic_ids(&mut self, m: &mut Msg, ids: &[([u8; 16], Option<&[u8]>)]) {
        for (id, name) in ids {
            match name {
                Some(name) => {
                    if *id != [0; 16] && !name.is_empty() {
                        self.learn(*id, name);
                    }
                }
                None => {
                    let t = self.resolve(id);
                    m.topic(t);
                }
            }
        }
    }

    /// A response to correlation id `corr` begins; `found`: where its request is in
    /// `pending`. The requests before it get no response (a broker answers in order).
    /// Returns the request it answers, taken out of `pending`.
    fn response_begins(
        &mut self,
        corr: i32,
        found: Option<usize>,
        out: &mut Vec<Transaction>,
    ) -> Option<Msg> {
        match found {
            Some(i) => {
                // Lost in a gap, or never sent.
                let gap = if self.gap_seen { Completeness::GAP } else { 0 };
                for _ in 0..i {
                    if let Some(p) = self.pending.pop_front() {
                        self.stats.no_response += 1;
                        let end = p.last;
                        self.finish(&p, None, end, Completeness::NO_RESPONSE | gap, out);
                    }
                }
                self.pending.pop_front()
            }
            None => {
                if let Some(slot) = self.acks_zero.iter_mut().find(|c| **c == Some(corr)) {
                    *slot = None;
                    self.dropping = true;
                }
                None
            }
        }
    }

    fn event(&mut self, dir: Direction, ev: Ev, ts: Timestamp, out: &mut Vec<Transaction>) {
        let d = dir.index();
        match ev {
            Ev::Request {
                api,
                version,
                corr,
                wire,
            } => {
                if let Some(m) = self.cur[0].take() {
                    self.request_done(m, out);
                }
                self.cur[0] = Some(Msg::new(api, version, corr, ts, wire));
            }
            Ev::Response { corr, wire } => {
                let found = self.pending.iter().position(|p| p.corr == corr);
                let req = self.response_begins(corr, found, out);
                let what = req.as_ref().map(|p| (p.api, p.version));
                self.answering = req;
                self.parsers[1].expect(what);
                let (api, version) = what.unwrap_or((-1, 0));
                self.cur[1] = Some(Msg::new(api, version, corr, ts, wire));
            }
            Ev::End { malformed } => {
                let gap = self.parsers[d].gap_in_message();
                self.end(dir, malformed, gap, out);
            }
            Ev::Malformed => self.stats.malformed += 1,
            Ev::Name(name) => {
                if let Some(m) = self.cur[d].as_mut() {
                    let bytes = self.parsers[d].captured();
                    m.name(name, bytes, &mut self.recent, self.cfg.client_id);
                }
            }
            Ev::TopicId(id) => {
                let Some(mut m) = self.cur[d].take() else {
                    return;
                };
                if m.named {
                    // Metadata v10+ (and CreateTopics v7+): a name, then its id.
                    m.named = false;
                    let name = self.parsers[d].captured();
                    if id != [0; 16] && !name.is_empty() {
                        let name = CompactString::from_utf8_lossy(name);
                        self.learn(id, name.as_bytes());
                    }
                } else {
                    let t = self.resolve(&id);
                    m.topic(t);
                }
                self.cur[d] = Some(m);
            }
            Ev::Partition(p) => self.fields(d, Fields::partition(p)),
            Ev::Error(code) => self.fields(d, Fields::error(code)),
            Ev::Acks(a) => self.fields(d, Fields::acks(a)),
            Ev::KeyType(k) => self.fields(d, Fields::key_type(k)),
        }
    }

    /// Partitions, error codes, `acks` and `key_type` read of the message of `d`.
    fn fields(&mut self, d: usize, f: Fields) {
        if let Some(m) = self.cur[d].as_mut() {
            m.fields.add(f);
        }
    }

    /// The message of `dir` read by the field walk is over.
    fn end(&mut self, dir: Direction, malformed: bool, gap: bool, out: &mut Vec<Transaction>) {
        let d = dir.index();
        let Some(mut m) = self.cur[d].take() else {
            return;
        };
        m.records = self.parsers[d].records;
        m.batches = self.parsers[d].batches;
        m.malformed = malformed;
        m.gap = gap;
        if malformed {
            self.stats.bad_fields += 1;
        }
        match dir {
            Direction::ToServer => self.request_done(m, out),
            Direction::ToClient => {
                let req = self.answering.take();
                self.response_done(req.as_ref(), &m, gap, out);
            }
        }
    }

    /// Response `resp` is over: paired with its request `req`, if any.
    fn response_done(
        &mut self,
        req: Option<&Msg>,
        resp: &Msg,
        gap: bool,
        out: &mut Vec<Transaction>,
    ) {
        if std::mem::take(&mut self.dropping) {
            self.stats.acks_zero_answered += 1;
            return;
        }
        let end = resp.last;
        match req {
            Some(req) => {
                let c = if gap { Completeness::GAP } else { 0 };
                self.finish(req, Some(resp), end, c, out);
            }
            None => {
                self.stats.no_request += 1;
                let mut c = Completeness::NO_REQUEST;
                if self.gap_seen || gap {
                    c |= Completeness::GAP;
                }
                // Reported as the response of an unknown request.
                let req = Msg {
                    api: -1,
                    start: resp.start,
                    last: resp.start,
                    corr: resp.corr,
                    ..Msg::default()
                };
                self.finish(&req, Some(resp), end, c, out);
            }
        }
    }

    fn request_done(&mut self, m: Msg, out: &mut Vec<Transaction>) {
        if m.api == parser::PRODUCE && m.fields.acks == Some(0) {
            // acks=0: the broker never answers.
            self.stats.acks_zero += 1;
            self.acks_zero.rotate_right(1);
            self.acks_zero[0] = Some(m.corr);
            let end = m.last;
            let c = if m.gap { Completeness::GAP } else { 0 };
            self.finish(&m, None, end, c, out);
            return;
        }
        if self.pending.len() >= self.cfg.max_pending.max(1)
            && let Some(p) = self.pending.pop_front()
        {
            self.stats.pending_limit += 1;
            let end = p.last;
            self.finish(&p, None, end, Completeness::NO_RESPONSE, out);
        }
        self.pending.push_back(m);
    }

    /// The transaction of request `req` and its response, if any, added to `out` (built
    /// where it is kept: returned, it was copied there whole).
    fn finish<'o>(
        &self,
        req: &Msg,
        resp: Option<&Msg>,
        end: Timestamp,
        completeness: u16,
        out: &'o mut Vec<Transaction>,
    ) -> &'o mut Transaction {
        let t = Transaction::push_new(out, Protocol::Kafka, req.start);
        t.end = end.max(req.start);
        t.req_bytes = req.bytes;
        let mut c = completeness;
        if req.gap {
            c |= Completeness::GAP;
        }
        if req.malformed || resp.as_ref().is_some_and(|r| r.malformed) {
            c |= Completeness::TRUNCATED;
        }
        let api = match &resp {
            Some(r) if req.api < 0 => r.api,
            _ => req.api,
        };
        let texts = &*API_TEXTS;
        let known = usize::try_from(api).ok().and_then(|i| texts.get(i));
        t.operation = match known {
            Some(k) => k.name.clone(),
            None if api < 0 => CompactString::const_new("unknown"),
            None => format_compact!("api_{api}"),
        };
        t.attr_str("messaging.system", CompactString::const_new("kafka"));
        match known {
            Some(k) => {
                t.attr_str("messaging.operation.name", k.operation.clone());
                if let Some(ty) = &k.kind {
                    t.attr_str("messaging.operation.type", ty.clone());
                }
            }
            None => t.attr_str("messaging.operation.name", operation_name(api)),
        }
        if api >= 0 {
            t.attr_int("podtap.kafka.api_version", i64::from(req.version));
        }
        if let Some(id) = &req.client_id {
            t.attr_str("messaging.client.id", id.clone());
        }
        let group = req
            .group
            .as_ref()
            .or(resp.as_ref().and_then(|r| r.group.as_ref()));
        if let Some(g) = group
            && !(api == parser::FIND_COORDINATOR && req.fields.key_type == Some(1))
        {
            t.attr_str("messaging.consumer.group.name", g.clone());
        }
        // The request names the topics; a Fetch in a fetch session may name none (the
        // session's are implied), and its response names those with data. (A response
        // read in one go keeps no topic names when its request named some.)
        let src = match &resp {
            Some(r) if req.topics == 0 => r,
            _ => &req,
        };
        if src.topics > 0 {
            t.attr_int("podtap.kafka.topics", i64::from(src.topics));
            if !src.several_topics {
                match &src.topic {
                    Topic::Name(n) => {
                        t.attr_str("messaging.destination.name", n.clone());
                        t.resource = n.clone();
                    }
                    Topic::Id(id) => {
                        t.attr_str("podtap.kafka.topic_id", uuid(id));
                        t.attr_bool("podtap.kafka.topic_id_unresolved", true);
                    }
                    Topic::None => {}
                }
            }
        }
        if src.fields.partitions > 0 {
            t.attr_int("podtap.kafka.partitions", i64::from(src.fields.partitions));
            if src.fields.partitions == 1 {
                t.attr_str(
                    "messaging.destination.partition.id",
                    partition_text(src.fields.partition),
                );
            }
        }
        if let Some(a) = req.fields.acks {
            t.attr_int("podtap.kafka.acks", i64::from(a));
        }
        match api {
            parser::PRODUCE if req.batches > 0 => {
                t.attr_int("messaging.batch.message_count", req.records as i64);
            }
            parser::FETCH => {
                if let Some(r) = &resp
                    && r.batches > 0
                {
                    t.attr_int("messaging.batch.message_count", r.records as i64);
                }
            }
            _ => {}
        }
        if let Some(r) = &resp {
            t.resp_bytes = r.bytes;
            if r.gap {
                c |= Completeness::GAP;
            }
            let (error, errors) = (r.fields.error, r.fields.errors);
            t.status = Some(i64::from(error));
            if error != 0 {
                t.error = Some(match error_name(error) {
                    Some(n) => CompactString::const_new(n),
                    None => error.to_compact_string(),
                });
                t.attr_int("podtap.kafka.error_code", i64::from(error));
                t.attr_int("podtap.kafka.errors", i64::from(errors));
            }
        }
        t.completeness = Completeness(c);
        t
    }
}

/// An API's name, `messaging.operation.name` and `messaging.operation.type` as they go into
/// every transaction.
struct ApiText {
    name: CompactString,
    operation: CompactString,
    kind: Option<CompactString>,
}

/// [`ApiText`] of every API [`api_name`] knows, by API key, built once: a clone of a short
/// `CompactString` is a copy of 24 bytes, where building one from a `&str` copies it byte
/// by byte (three strings a transaction).
static API_TEXTS: std::sync::LazyLock<Vec<ApiText>> = std::sync::LazyLock::new(|| {
    (0..)
        .map_while(|api| {
            Some(ApiText {
                name: CompactString::const_new(api_name(api)?),
                operation: CompactString::const_new(operation_name(api)),
                kind: operation_type(api).map(CompactString::const_new),
            })
        })
        .collect()
});

/// The semantic conventions' `messaging.operation.name`: `send` (Produce), `receive`
/// (Fetch), `commit` (offset commits); other APIs by their name in snake case
/// (`find_coordinator`, `join_group`, `api_versions`).
pub fn operation_name(api: i16) -> &'static str {
    match api {
        parser::PRODUCE => "send",
        parser::FETCH => "receive",
        parser::OFFSET_COMMIT | parser::TXN_OFFSET_COMMIT => "commit",
        2 => "list_offsets",
        3 => "metadata",
        9 => "offset_fetch",
        10 => "find_coordinator",
        11 => "join_group",
        12 => "heartbeat",
        13 => "leave_group",
        14 => "sync_group",
        15 => "describe_groups",
        16 => "list_groups",
        17 => "sasl_handshake",
        18 => "api_versions",
        19 => "create_topics",
        20 => "delete_topics",
        22 => "init_producer_id",
        24 => "add_partitions_to_txn",
        25 => "add_offsets_to_txn",
        26 => "end_txn",
        36 => "sasl_authenticate",
        _ => "other",
    }
}

/// The semantic conventions' `messaging.operation.type`, for the APIs that have one.
pub fn operation_type(api: i16) -> Option<&'static str> {
    match api {
        parser::PRODUCE => Some("send"),
        parser::FETCH => Some("receive"),
        parser::OFFSET_COMMIT | parser::TXN_OFFSET_COMMIT => Some("settle"),
        _ => None,
    }
}

/// A partition index as text; the small ones (a topic has a few dozen partitions at most,
/// mostly) from a table instead of formatted.
fn partition_text(p: i32) -> CompactString {
    const SMALL: [&str; 16] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
    ];
    match usize::try_from(p).ok().and_then(|i| SMALL.get(i)) {
        Some(s) => CompactString::const_new(s),
        None => p.to_compact_string(),
    }
}

/// A topic id as Kafka prints it in logs and tools: standard UUID text.
fn uuid(id: &[u8; 16]) -> CompactString {
    let h = |r: std::ops::Range<usize>| -> CompactString {
        id[r].iter().map(|b| format_compact!("{b:02x}")).collect()
    };
    format_compact!(
        "{}-{}-{}-{}-{}",
        h(0..4),
        h(4..6),
        h(6..8),
        h(8..10),
        h(10..16)
    )
}

impl L7Parser for KafkaParser {
    fn heap_bytes(&self) -> usize {
        use crate::proto::heap::vec_bytes;
        self.pending.heap_bytes()
            + vec_bytes(&self.held)
            + vec_bytes(&self.early)
            + self.early.iter().map(|(_, b, _)| b.capacity()).sum::<usize>()
    }

    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        self.last_ts = ts;
        if !self.held.is_empty() {
            out.append(&mut self.held);
        }
        if self.decided || self.decide(dir, bytes, ts, out) {
            self.feed(self.role(dir), bytes, ts, out);
        }
        Progress::Continue
    }

    /// A gap inside record data costs nothing but those records' count; elsewhere in a
    /// message it costs the fields after it; across messages the direction
    /// resynchronises (responses on a pending request's correlation id).
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if missing == 0 {
            return;
        }
        self.gap_seen = true;
        if !self.decided {
            let mut held = std::mem::take(&mut self.held);
            self.settle(&mut held);
            self.held = held;
        }
        let dir = self.role(dir);
        let d = dir.index();
        if self.parsers[d].gap(u64::from(missing)) {
            // The message ended in the gap: finished now, handed out with the next
            // output.
            let mut held = std::mem::take(&mut self.held);
            self.end(dir, false, true, &mut held);
            self.held = held;
        }
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        out.append(&mut self.held);
        self.settle(out);
        let why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        let gap = if self.gap_seen { Completeness::GAP } else { 0 };
        // A response cut by the close: its request, with what was read of it.
        if let Some(req) = self.answering.take() {
            let resp = self.cur[1].take();
            let end = resp.as_ref().map_or(ts, |r| r.last);
            self.finish(&req, resp.as_ref(), end, why | gap | Completeness::TRUNCATED, out);
        }
        if let Some(m) = self.cur[0].take() {
            let end = m.last;
            let c = Completeness::NO_RESPONSE | Completeness::TRUNCATED | why | gap;
            self.finish(&m, None, end, c, out);
        }
        while let Some(p) = self.pending.pop_front() {
            self.finish(&p, None, ts, Completeness::NO_RESPONSE | why | gap, out);
        }
        self.cur = [None, None];
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        out.append(&mut self.held);
        while let Some(p) = self.pending.front() {
            if now.since(p.last) < timeout_ns {
                break;
            }
            let Some(p) = self.pending.pop_front() else {
                break;
            };
            self.stats.timeouts += 1;
            let gap = if self.gap_seen { Completeness::GAP } else { 0 };
            let t = self.finish(&p, None, now, Completeness::NO_RESPONSE | gap, out);
            t.error = Some(CompactString::const_new("timeout"));
        }
    }
}

/// How sure the first bytes of a flow are Kafka. A request: a length in bounds, an API
/// key Kafka has, a version of it, and a client id of a plausible length whose bytes
/// (as far as they go) are printable: `Likely`. A response (a length and a correlation
/// id, nothing distinctive): `Port` on a Kafka port only.
pub fn probe(bytes: &[u8], dir: Direction, port_hinted: bool) -> Confidence {
    let hinted = if port_hinted {
        Confidence::Port
    } else {
        Confidence::No
    };
    if dir == Direction::ToClient {
        // A request from the server's side: a capture that saw the broker's response
        // before the request it answers took the broker for the client.
        if request_from_server(bytes) {
            return Confidence::Likely;
        }
        return match bytes.get(..4) {
            None => Confidence::NeedMore.max(hinted.min(Confidence::NeedMore)),
            Some(l) => {
                let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
                if (4..=1 << 27).contains(&len) {
                    hinted
                } else {
                    Confidence::No
                }
            }
        };
    }
    let field = |at: usize| {
        bytes
            .get(at..at + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
    };
    if let Some(l) = bytes.get(..4) {
        let len = i32::from_be_bytes([l[0], l[1], l[2], l[3]]);
        if !(10..=1 << 27).contains(&len) {
            return Confidence::No;
        }
    }
    if let Some(api) = field(4)
        && api_name(api).is_none()
    {
        return Confidence::No;
    }
    if let (Some(api), Some(v)) = (field(4), field(6))
        && !(0..=parser::max_version(api)).contains(&v)
    {
        return Confidence::No;
    }
    let Some(client) = field(12) else {
        return Confidence::NeedMore;
    };
    let len = i32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    if client < -1 || i32::from(client) > len - 10 {
        return Confidence::No;
    }
    if client > 0 {
        let id = &bytes[14..bytes.len().min(14 + client as usize)];
        if !id.iter().all(|c| c.is_ascii_graphic() || *c == b' ') {
            return Confidence::No;
        }
    }
    Confidence::Likely
}

/// A request on the side the flow calls the server's: one with a client id (every
/// client sends one), which a response's first fields rarely imitate.
fn request_from_server(b: &[u8]) -> bool {
    probe(b, Direction::ToServer, false) == Confidence::Likely
        && b.get(12..14)
            .is_some_and(|c| i16::from_be_bytes([c[0], c[1]]) > 0)
}

#[cfg(test)]
mod tests;

impl ProtocolDecoder for KafkaParser {
    type Config = KafkaConfig;
    type Shared = KafkaShared;
    const PORTS: &'static [u16] = &[9092];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = KafkaEvent;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        super::registry::nonzero(&[
            ("max_pending", cfg.max_pending as u64),
            ("max_message_bytes", u64::from(cfg.max_message_bytes)),
            (
                "topic_ids_per_connection",
                cfg.topic_ids_per_connection as u64,
            ),
            ("topic_ids_per_worker", cfg.topic_ids_per_worker as u64),
        ])
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(KafkaShared::new(cfg.kafka.settings))
    }

    fn probe(p: &Probe<'_>) -> Confidence {
        probe(p.bytes, p.dir, p.hinted)
    }

    fn new(shared: &Self::Shared, _transport: Transport) -> Self {
        KafkaParser::new(shared)
    }

    fn protocol(&self) -> Protocol {
        Protocol::Kafka
    }

    fn drain_stats(&mut self, c: &mut DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c)
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TELEMETRY
    }

    /// Messages sent (Produce) and consumed (Fetch), from the record batch headers.
    fn counter(tx: &Transaction) -> Option<(Metric, u64)> {
        let Some(super::AttrValue::Int(n)) = tx.attr("messaging.batch.message_count") else {
            return None;
        };
        let metric = match tx.attr("messaging.operation.type") {
            Some(super::AttrValue::Str(s)) if s == "send" => Metric::MessagingSentMessages,
            Some(super::AttrValue::Str(s)) if s == "receive" => Metric::MessagingConsumedMessages,
            _ => return None,
        };
        Some((metric, u64::try_from(*n).ok()?))
    }
}

/// How Kafka calls become metrics and spans (the messaging conventions).
static TELEMETRY: Telemetry = Telemetry {
    duration: Some([
        Metric::MessagingClientDuration,
        Metric::MessagingClientDuration,
    ]),
    metric_attrs: &[
        MetricAttr::ProtocolName("messaging.system"),
        MetricAttr::Attr("messaging.operation.name"),
        MetricAttr::Attr("messaging.operation.type"),
        MetricAttr::Attr("messaging.destination.name"),
        MetricAttr::Attr("messaging.consumer.group.name"),
        MetricAttr::Error,
        MetricAttr::Server,
    ],
    span_name: |tx| match tx.attr("messaging.destination.name") {
        Some(super::AttrValue::Str(d)) => match tx.attr("messaging.operation.name") {
            Some(super::AttrValue::Str(op)) => format!("{op} {d}"),
            _ => format!("{} {d}", tx.operation),
        },
        _ => format!("kafka {}", tx.operation),
    },
    attributes: &[
        "messaging.system",
        "messaging.operation.name",
        "messaging.operation.type",
        "messaging.destination.name",
        "messaging.destination.partition.id",
        "messaging.consumer.group.name",
        "messaging.client.id",
        "messaging.batch.message_count",
        "podtap.kafka.api_version",
        "podtap.kafka.topics",
        "podtap.kafka.partitions",
        "podtap.kafka.topic_id",
        "podtap.kafka.topic_id_unresolved",
        "podtap.kafka.acks",
        "podtap.kafka.error_code",
        "podtap.kafka.errors",
    ],
    base: None,
};
