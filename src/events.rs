//! Typed drop and error events with named counters.
//!
//! Nothing in podtap is lost silently: every packet, segment, flow or record that is
//! skipped, truncated or dropped is one of these events. Each worker owns a
//! [`Counters`] (plain integers, no atomics on the packet path); the exporter merges them.
//! Logging is rate-limited by count (first occurrence, then at 10, 100, 1000, ...) so a
//! flood of bad packets cannot flood the log or slow the worker.

macro_rules! events {
    ($( $variant:ident => $name:literal, $help:literal; )*) => {
        /// One kind of drop, error or notable condition. `name()` is the stable counter label.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum Event { $( $variant, )* }

        impl Event {
            pub const ALL: &'static [Event] = &[ $( Event::$variant, )* ];
            pub const COUNT: usize = Event::ALL.len();

            /// Stable dotted name, used as the `event` label of `podtap_events_total`.
            pub fn name(self) -> &'static str {
                match self { $( Event::$variant => $name, )* }
            }

            /// A frame or header podtap could not decode (the `malformed` capture statistic).
            pub fn is_malformed(self) -> bool {
                self.name().starts_with("malformed.")
            }

            /// One-line description for logs and metric help text.
            pub fn help(self) -> &'static str {
                match self { $( Event::$variant => $help, )* }
            }
        }
    };
}

events! {
    // Link layer and capture
    UnsupportedLinkType => "capture.unsupported_link_type", "frame of a link type podtap does not decode";
    CaptureTruncated => "capture.truncated_record", "capture record shorter than its header says";
    NonIp => "packet.non_ip", "frame carries no IP (ARP, LLDP, ...): counted, not analysed";
    MalformedL2 => "malformed.l2", "Ethernet/SLL/loopback header truncated";
    MalformedVlan => "malformed.vlan", "802.1Q/802.1ad tag truncated";
    VlanTooDeep => "malformed.vlan_depth", "more VLAN tags than podtap unwraps";
    MalformedIpv4 => "malformed.ipv4", "IPv4 header truncated or invalid";
    MalformedIpv6 => "malformed.ipv6", "IPv6 header or extension header truncated or invalid";
    MalformedTcp => "malformed.tcp", "TCP header truncated or invalid";
    MalformedUdp => "malformed.udp", "UDP header truncated or invalid";
    MalformedIcmp => "malformed.icmp", "ICMP/ICMPv6 header truncated";
    MalformedTunnel => "malformed.tunnel", "VXLAN/GENEVE/GRE/ERSPAN header truncated or invalid";
    TunnelTooDeep => "malformed.tunnel_depth", "tunnels nested deeper than podtap unwraps";
    TruncatedPayload => "packet.snaplen_truncated", "frame cut by the capture snap length: payload partly missing";
    // IP fragments
    FragmentHeld => "fragment.held", "IP fragment held until its datagram is complete";
    FragmentReassembled => "fragment.reassembled", "IP datagram reassembled from fragments";
    FragmentTimeout => "fragment.timeout", "incomplete fragmented datagram expired and dropped";
    FragmentOverflow => "fragment.overflow", "fragment dropped: reassembly memory or datagram limit reached";
    FragmentInvalid => "fragment.invalid", "fragment dropped: overlapping, oversized or inconsistent";
    // Filtering
    Filtered => "packet.filtered", "packet did not match the configured filter";
    // Flow table
    FlowEvicted => "flow.evicted", "flow table full: the least recently seen flow was closed early";
    FlowSplit => "flow.split_direction", "only one direction of a TCP flow reached this worker";
    // TCP reassembly
    ReassemblyFlowLimit => "reassembly.flow_limit", "out-of-order bytes beyond the per-flow limit: gap declared";
    ReassemblyWorkerLimit => "reassembly.worker_limit", "out-of-order bytes beyond the per-worker limit: gap declared";
    ReassemblyGap => "reassembly.gap", "bytes missing from a TCP stream (lost before capture or dropped)";
    // Application layer
    L7ParseError => "l7.parse_error", "application decoder gave up on a stream";
    L7BufferLimit => "l7.buffer_limit", "application message larger than the decoder's header buffer";
    TransactionTimeout => "l7.transaction_timeout", "request without a response before the timeout";
    PendingLimit => "l7.pending_limit", "too many requests pending on one connection: oldest reported incomplete";
    ResponseLost => "l7.response_lost", "a whole response (HTTP/1, Redis) lost in a TCP gap: its request reported without one";
    HpackError => "l7.hpack_error", "HTTP/2 header block failed to decompress: the connection's HPACK state is now unknown";
    MemcachedMalformed => "memcached.malformed", "memcached reply line, binary header, reply data block or UDP frame that does not parse: the direction resynchronises";
    MemcachedLineTooLong => "memcached.line_too_long", "memcached text line over 8 KiB (retrieval commands excepted): skipped, the direction resynchronises";
    MemcachedValueTooLarge => "memcached.value_too_large", "memcached value longer than memcached.max_value_bytes: its transaction is marked truncated and the direction resynchronises";
    MemcachedNoRequest => "memcached.no_request", "memcached reply without a request (lost in a gap): reported with no_request";
    MemcachedGetHits => "memcached.get_hits", "keys found by memcached retrieval commands (get, gets, mg, binary GET family), as memcached's get_hits";
    MemcachedGetMisses => "memcached.get_misses", "keys not found by memcached retrieval commands, as memcached's get_misses";
    RedisMalformed => "redis.malformed", "bytes of a Redis connection that are not RESP: skipped to the next plausible message";
    RedisTooDeep => "redis.too_deep", "Redis reply nested deeper than redis.max_depth: skipped to the next plausible message";
    RedisBulkTooLarge => "redis.bulk_too_large", "Redis bulk string longer than redis.max_bulk_bytes: skipped to the next plausible message";
    RedisPushMessages => "redis.push_messages", "Redis pub/sub message, RESP3 push or MONITOR line: counted, not paired with a command";
    // Attribution
    AttributionUnselected => "attribution.unselected", "flow or transaction of pods outside attribution.selector: not reported";
    // Output
    RecordDropped => "output.record_dropped", "flow or transaction record dropped: output queue full";
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
        let i = e as usize;
        self.counts[i] += n;
        if self.counts[i] >= self.next_log[i] {
            self.log(e);
        }
    }

    #[cold]
    fn log(&mut self, e: Event) {
        let i = e as usize;
        while self.next_log[i] <= self.counts[i] {
            self.next_log[i] = self.next_log[i].saturating_mul(10);
        }
        // Informational events are logged at debug level, real losses at warn.
        match e {
            Event::Filtered
            | Event::NonIp
            | Event::FragmentHeld
            | Event::FragmentReassembled
            | Event::MemcachedGetHits
            | Event::MemcachedGetMisses
            | Event::RedisPushMessages => {
                tracing::debug!(event = e.name(), count = self.counts[i], "{}", e.help())
            }
            _ => tracing::warn!(event = e.name(), count = self.counts[i], "{}", e.help()),
        }
    }

    pub fn get(&self, e: Event) -> u64 {
        self.counts[e as usize]
    }

    /// Add another worker's counts into this one (without logging again).
    pub fn merge(&mut self, other: &Counters) {
        for (a, b) in self.counts.iter_mut().zip(other.counts.iter()) {
            *a += b;
        }
    }

    /// Non-zero counters, in declaration order.
    pub fn nonzero(&self) -> impl Iterator<Item = (Event, u64)> + '_ {
        Event::ALL
            .iter()
            .map(|&e| (e, self.get(e)))
            .filter(|&(_, n)| n > 0)
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

    #[test]
    fn names_are_unique() {
        let mut names: Vec<_> = Event::ALL.iter().map(|e| e.name()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Event::COUNT);
    }
}
