//! Typed drop and error events with named counters.
//!
//! Nothing in podtap is lost silently: every packet, segment, flow or record that is
//! skipped, truncated or dropped is one of these events. Each worker owns a
//! [`Counters`] (plain integers, no atomics on the packet path); the exporter merges them.
//! Logging is rate-limited by count (first occurrence, then at 10, 100, 1000, ...) so a
//! flood of bad packets cannot flood the log or slow the worker.

/// How an event is logged: `warn` for a real loss or error, `debug` for what is only
/// notable (a filtered packet, a fragment held, a cache hit).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Debug,
    Warn,
}

/// What one event kind is: its stable name, its help text and how it logs.
#[derive(Clone, Copy, Debug)]
pub struct EventInfo {
    /// Stable dotted name, the `podtap.event` attribute of `podtap.events`.
    pub name: &'static str,
    /// One-line description for logs and metric help text.
    pub help: &'static str,
    pub level: Level,
}

impl EventInfo {
    const EMPTY: EventInfo = EventInfo {
        name: "",
        help: "",
        level: Level::Warn,
    };
}

/// One kind of drop, error or notable condition: the core ones are the associated
/// constants below (`Event::FlowEvicted`); each decoder declares its own in its folder
/// ([`decoder_events!`]) and the registry numbers them after the core ones. `name()` is the
/// stable counter label.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Event(u16);

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Event({})", self.name())
    }
}

macro_rules! core_events {
    ($( $variant:ident => $name:literal, $level:ident, $help:literal; )*) => {
        #[allow(clippy::enum_variant_names)]
        #[repr(u16)]
        enum Core { $( $variant, )* }

        #[allow(non_upper_case_globals)]
        impl Event {
            $( #[doc = $help] pub const $variant: Event = Event(Core::$variant as u16); )*
        }

        /// The core events, in declaration order.
        const CORE: &[EventInfo] = &[
            $( EventInfo { name: $name, help: $help, level: level!($level) }, )*
        ];
    };
}

/// `warn` or `debug`, as a [`Level`].
macro_rules! level {
    (warn) => {
        $crate::events::Level::Warn
    };
    (debug) => {
        $crate::events::Level::Debug
    };
}
pub(crate) use level;

/// A decoder's own events, declared in its folder:
///
/// ```ignore
/// crate::events::decoder_events! {
///     /// Redis's own events.
///     pub enum RedisEvent {
///         Malformed => "redis.malformed", warn, "bytes that are not RESP: skipped";
///     }
/// }
/// ```
///
/// Names start with the decoder's `[protocols.<name>]` section (a test holds them to it).
/// The decoder names the type as `ProtocolDecoder::Events` and counts them through
/// [`DecoderCounters::add_own`]; the registry gives them their place among all events.
macro_rules! decoder_events {
    ($(#[$doc:meta])* $vis:vis enum $ty:ident {
        $( $variant:ident => $name:literal, $level:ident, $help:literal; )*
    }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u16)]
        $vis enum $ty { $( #[doc = $help] $variant, )* }

        impl $crate::events::DecoderEvent for $ty {
            const INFO: &'static [$crate::events::EventInfo] = &[
                $( $crate::events::EventInfo {
                    name: $name,
                    help: $help,
                    level: $crate::events::level!($level),
                }, )*
            ];
            #[inline]
            fn index(self) -> usize {
                self as usize
            }
        }
    };
}
pub(crate) use decoder_events;

/// The events of one decoder ([`decoder_events!`] implements it).
pub trait DecoderEvent: Copy {
    /// Each event's description, indexed by [`index`](DecoderEvent::index).
    const INFO: &'static [EventInfo];
    fn index(self) -> usize;
}

/// For a decoder without events of its own.
#[derive(Clone, Copy, Debug)]
pub enum NoEvents {}

impl DecoderEvent for NoEvents {
    const INFO: &'static [EventInfo] = &[];
    fn index(self) -> usize {
        match self {}
    }
}

/// Every event: the core ones, then each decoder's, in the order of the decoder list.
const TOTAL: usize = CORE.len() + crate::proto::DECODER_EVENTS;

static TABLE: [EventInfo; TOTAL] = {
    let mut t = [EventInfo::EMPTY; TOTAL];
    let mut i = 0;
    while i < CORE.len() {
        t[i] = CORE[i];
        i += 1;
    }
    let mut d = 0;
    while d < crate::proto::DECODER_EVENT_TABLES.len() {
        let own = crate::proto::DECODER_EVENT_TABLES[d];
        let mut j = 0;
        while j < own.len() {
            t[i] = own[j];
            i += 1;
            j += 1;
        }
        d += 1;
    }
    t
};

/// Where decoder `d`'s events (in the order of the list) start among all events.
pub(crate) const fn decoder_event_offset(d: usize) -> u16 {
    let mut at = CORE.len();
    let mut k = 0;
    while k < d {
        at += crate::proto::DECODER_EVENT_TABLES[k].len();
        k += 1;
    }
    at as u16
}

impl Event {
    /// How many kinds of event there are, the decoders' included.
    pub const COUNT: usize = TOTAL;

    /// Every event, core first, then each decoder's.
    pub fn all() -> impl Iterator<Item = Event> {
        (0..TOTAL as u16).map(Event)
    }

    /// The event of that name, if there is one.
    pub fn named(name: &str) -> Option<Event> {
        Event::all().find(|e| e.name() == name)
    }

    /// A decoder's own event as an event among all (by its name: for tests and cold paths;
    /// decoders count through [`DecoderCounters`]).
    pub fn of<E: DecoderEvent>(e: E) -> Event {
        let name = E::INFO[e.index()].name;
        Event::named(name).unwrap_or_else(|| panic!("event {name} of a decoder not in the list"))
    }

    #[inline]
    fn index(self) -> usize {
        self.0 as usize
    }

    fn info(self) -> &'static EventInfo {
        &TABLE[self.index()]
    }

    /// Stable dotted name, used as the `event` label of `podtap_events_total`.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// One-line description for logs and metric help text.
    pub fn help(self) -> &'static str {
        self.info().help
    }

    pub fn level(self) -> Level {
        self.info().level
    }

    /// A frame or header podtap could not decode (the `malformed` capture statistic).
    pub fn is_malformed(self) -> bool {
        self.name().starts_with("malformed.")
    }
}

core_events! {
    // Link layer and capture
    UnsupportedLinkType => "capture.unsupported_link_type", warn, "frame of a link type podtap does not decode";
    CaptureTruncated => "capture.truncated_record", warn, "capture record shorter than its header says";
    NonIp => "packet.non_ip", debug, "frame carries no IP (ARP, LLDP, ...): counted, not analysed";
    MalformedL2 => "malformed.l2", warn, "Ethernet/SLL/loopback header truncated";
    MalformedVlan => "malformed.vlan", warn, "802.1Q/802.1ad tag truncated";
    VlanTooDeep => "malformed.vlan_depth", warn, "more VLAN tags than podtap unwraps";
    MalformedIpv4 => "malformed.ipv4", warn, "IPv4 header truncated or invalid";
    MalformedIpv6 => "malformed.ipv6", warn, "IPv6 header or extension header truncated or invalid";
    MalformedTcp => "malformed.tcp", warn, "TCP header truncated or invalid";
    MalformedUdp => "malformed.udp", warn, "UDP header truncated or invalid";
    MalformedIcmp => "malformed.icmp", warn, "ICMP/ICMPv6 header truncated";
    MalformedTunnel => "malformed.tunnel", warn, "VXLAN/GENEVE/GRE/ERSPAN header truncated or invalid";
    TunnelTooDeep => "malformed.tunnel_depth", warn, "tunnels nested deeper than podtap unwraps";
    TruncatedPayload => "packet.snaplen_truncated", warn, "frame cut by the capture snap length: payload partly missing";
    // IP fragments
    FragmentHeld => "fragment.held", debug, "IP fragment held until its datagram is complete";
    FragmentReassembled => "fragment.reassembled", debug, "IP datagram reassembled from fragments";
    FragmentTimeout => "fragment.timeout", warn, "incomplete fragmented datagram expired and dropped";
    FragmentOverflow => "fragment.overflow", warn, "fragment dropped: reassembly memory or datagram limit reached";
    FragmentInvalid => "fragment.invalid", warn, "fragment dropped: overlapping, oversized or inconsistent";
    // Filtering
    Filtered => "packet.filtered", debug, "packet did not match the configured filter";
    // Flow table
    FlowEvicted => "flow.evicted", warn, "flow table full: the least recently seen flow was closed early";
    FlowSplit => "flow.split_direction", warn, "only one direction of a TCP flow reached this worker";
    // TCP reassembly
    ReassemblyFlowLimit => "reassembly.flow_limit", warn, "out-of-order bytes beyond the per-flow limit: gap declared";
    ReassemblyWorkerLimit => "reassembly.worker_limit", warn, "out-of-order bytes beyond the per-worker limit: gap declared";
    ReassemblyGap => "reassembly.gap", warn, "bytes missing from a TCP stream (lost before capture or dropped)";
    // Application layer
    L7ParseError => "l7.parse_error", warn, "application decoder gave up on a stream";
    L7BufferLimit => "l7.buffer_limit", warn, "application message larger than the decoder's header buffer";
    TransactionTimeout => "l7.transaction_timeout", warn, "request without a response before the timeout";
    PendingLimit => "l7.pending_limit", warn, "too many requests pending on one connection: oldest reported incomplete";
    MemoryShed => "l7.memory_shed", warn, "a worker's decoders hold protocols.max_worker_heap_bytes: the connection that grew is no longer decoded (its pending requests reported incomplete, `memory`)";
    ResponseLost => "l7.response_lost", warn, "a whole response (HTTP/1, Redis) lost in a TCP gap: its request reported without one";
    HpackError => "l7.hpack_error", warn, "HTTP/2 header block failed to decompress: the connection's HPACK state is now unknown";
    // Attribution
    AttributionUnselected => "attribution.unselected", warn, "flow or transaction of pods outside attribution.selector: not reported";
    // Output
    RecordDropped => "output.record_dropped", warn, "flow or transaction record dropped: output queue full";
    OutputWriteFailed => "output.write_failed", warn, "flow or transaction record lost: the output could not be written (disk full, closed pipe); a file still ends at a whole line";
    // Flight recorder
    RecorderHoldFull => "recorder.hold_full", warn, "transaction records of recorded pods beyond recorder.hold_bytes: the oldest left before their time, not linked to a recording that starts later";
}

/// Per-worker counters, one plain integer per [`Event`].
#[derive(Clone, Debug)]
pub struct Counters {
    counts: [u64; Event::COUNT],
    next_log: [u64; Event::COUNT],
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            counts: [0; Event::COUNT],
            next_log: [1; Event::COUNT],
        }
    }
}

impl Counters {
    /// Count one occurrence.
    #[inline]
    pub fn bump(&mut self, e: Event) {
        self.add(e, 1)
    }

    /// Count `n` occurrences (e.g. bytes of a gap, or several packets at once).
    #[inline]
    pub fn add(&mut self, e: Event, n: u64) {
        let i = e.index();
        self.counts[i] += n;
        if self.counts[i] >= self.next_log[i] {
            self.log(e);
        }
    }

    #[cold]
    fn log(&mut self, e: Event) {
        let i = e.index();
        while self.next_log[i] <= self.counts[i] {
            self.next_log[i] = self.next_log[i].saturating_mul(10);
        }
        match e.level() {
            Level::Debug => {
                tracing::debug!(event = e.name(), count = self.counts[i], "{}", e.help())
            }
            Level::Warn => {
                tracing::warn!(event = e.name(), count = self.counts[i], "{}", e.help())
            }
        }
    }

    pub fn get(&self, e: Event) -> u64 {
        self.counts[e.index()]
    }

    /// Add another worker's counts into this one (without logging again).
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Non-zero counters, in declaration order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::all()
            .map(|e| (e, self.get(e)))
            .filter(|&(_, n)| n > 0)
    }
}

/// A decoder's view of its worker's counters: the core events, and its own (numbered by
/// the registry, so the decoder needs no place in this file).
pub struct DecoderCounters<'a, E> {
    counters: &'a mut Counters,
    offset: u16,
    own: std::marker::PhantomData<E>,
}

impl<'a, E: DecoderEvent> DecoderCounters<'a, E> {
    /// `offset`: where the decoder's events start ([`decoder_event_offset`]).
    pub(crate) fn new(counters: &'a mut Counters, offset: u16) -> Self {
        DecoderCounters {
            counters,
            offset,
            own: std::marker::PhantomData,
        }
    }

    /// Count `n` of a core event (`l7.pending_limit`, ...).
    #[inline]
    pub fn add(&mut self, e: Event, n: u64) {
        if n > 0 {
            self.counters.add(e, n)
        }
    }

    /// Count `n` of one of the decoder's own events.
    #[inline]
    pub fn add_own(&mut self, e: E, n: u64) {
        if n > 0 {
            self.counters.add(Event(self.offset + e.index() as u16), n)
        }
    }

    /// The worker's counters themselves, for code shared by several decoders.
    pub fn core(&mut self) -> &mut Counters {
        self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let mut a = Counters::default();
        let mut b = Counters::default();
        for _ in 0..12 {
            a.bump(Event::MalformedIpv4);
        }
        b.add(Event::MalformedIpv4, 3);
        b.bump(Event::FlowEvicted);
        a.merge(&b);
        assert_eq!(a.get(Event::MalformedIpv4), 15);
        assert_eq!(a.get(Event::FlowEvicted), 1);
        assert_eq!(a.nonzero().count(), 2);
    }

    /// Each decoder's events carry its section's name, and the registry gives each its
    /// own counter.
    #[test]
    fn decoder_events_are_numbered_after_the_core_ones() {
        use crate::proto::DecoderKind;
        let mut seen = CORE.len();
        for (d, k) in DecoderKind::ALL.iter().enumerate() {
            let own = crate::proto::DECODER_EVENT_TABLES[d];
            assert_eq!(decoder_event_offset(d) as usize, seen);
            for (j, info) in own.iter().enumerate() {
                let e = Event(seen as u16 + j as u16);
                assert_eq!(e.name(), info.name);
                let prefix = format!("{}.", k.section());
                assert!(
                    info.name.starts_with(&prefix),
                    "{} is not {prefix}*",
                    info.name
                );
            }
            seen += own.len();
        }
        assert_eq!(seen, Event::COUNT);
    }

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Event::all().map(|e| e.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Event::COUNT);
    }
}
