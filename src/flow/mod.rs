//! Flow tracking: one [`Flow`] per conversation seen at one observation point, both
//! directions together, with TCP analysis and reassembly for TCP flows.

pub mod key;
pub mod reassembly;
pub mod table;
pub mod tcp;

pub use key::FlowKey;
pub use table::{FlowId, FlowTable};
pub use tcp::{TcpConn, TcpDirStats};

use std::net::IpAddr;

use crate::packet::{
    IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, L4, Packet, TunnelId, tcp_flags,
};
use crate::proto::session::L7Session;
use crate::proto::{Direction, Endpoint, Protocol};
use crate::time::Timestamp;

/// Why a flow was reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// Both sides sent FIN.
    Fin,
    /// A side sent RST.
    Rst,
    /// No packets for the idle timeout.
    Idle,
    /// The flow table was full and this was the least recently seen flow.
    Evicted,
    /// podtap stopped (end of the capture file or shutdown) with the flow open.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Fin => "fin",
            EndReason::Rst => "rst",
            EndReason::Idle => "idle",
            EndReason::Evicted => "evicted",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// Packets and bytes sent by one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirCounters {
    pub packets: u64,
    /// Frame bytes on the wire (as `tshark -z conv` counts them).
    pub bytes: u64,
    /// Transport payload bytes on the wire.
    pub payload_bytes: u64,
}

/// One conversation.
pub struct Flow {
    pub key: FlowKey,
    /// VLAN id of the first packet (the key holds it only with `flow.vlan_in_key`).
    pub vlan: u16,
    /// Which canonical endpoint of the key is the client (the side that opened it).
    pub client_is_a: bool,
    pub first: Timestamp,
    pub last: Timestamp,
    /// Indexed by `Direction::index()`: what the client sent, what the server sent.
    pub dirs: [DirCounters; 2],
    pub tcp: Option<TcpConn>,
    /// Application-layer detection and decoding (TCP and UDP flows).
    pub l7: Option<L7Session>,
    /// Pod attribution, resolved when the flow is created and again only when the
    /// metadata snapshot changes (`None` without attribution).
    pub pods: Option<std::sync::Arc<crate::k8s::FlowPods>>,
    /// Transactions reported so far: the index of the next one on this connection.
    pub transactions: u32,
    /// What the metrics were given so far (see [`FlowProgress`]), and when.
    pub reported: [DirDelta; 2],
    pub reported_at: Timestamp,
    /// Anomaly detection state (TCP flows; see [`crate::anomaly::tcp`]).
    pub watch: crate::anomaly::tcp::TcpWatch,
}

/// Traffic of one direction that the metrics count: frame bytes, packets and TCP
/// retransmissions sent by that side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirDelta {
    pub bytes: u64,
    pub packets: u64,
    pub retransmits: u64,
}

/// An open flow's traffic since its last report, for the metrics (the JSON flow line
/// still comes once, when the flow ends).
#[derive(Clone, Debug)]
pub struct FlowProgress {
    pub ip_proto: u8,
    pub client: Endpoint,
    pub server: Endpoint,
    pub pods: Option<std::sync::Arc<crate::k8s::FlowPods>>,
    /// Indexed by direction: sent by the client, by the server.
    pub delta: [DirDelta; 2],
}

impl Flow {
    /// A new flow for its first packet `p`; `forward` tells whether `p` goes from the key's
    /// `a` side to its `b` side.
    pub fn new(key: FlowKey, p: &Packet<'_>, forward: bool) -> Flow {
        let sender_is_client = sender_is_client(p);
        let client_is_a = sender_is_client == forward;
        let tcp = match p.l4 {
            L4::Tcp(h) => Some(TcpConn::new(&h)),
            _ => None,
        };
        Flow {
            key,
            vlan: p.vlan,
            client_is_a,
            first: p.ts,
            last: p.ts,
            dirs: [DirCounters::default(); 2],
            tcp,
            l7: None,
            pods: None,
            transactions: 0,
            reported: [DirDelta::default(); 2],
            reported_at: p.ts,
            watch: Default::default(),
        }
    }

    /// The direction of a packet travelling from the key's `a` side (`forward`) or not.
    #[inline]
    pub fn direction(&self, forward: bool) -> Direction {
        if forward == self.client_is_a {
            Direction::ToServer
        } else {
            Direction::ToClient
        }
    }

    pub fn client(&self) -> Endpoint {
        if self.client_is_a {
            Endpoint {
                addr: self.key.a(),
                port: self.key.a_port(),
            }
        } else {
            Endpoint {
                addr: self.key.b(),
                port: self.key.b_port(),
            }
        }
    }

    pub fn server(&self) -> Endpoint {
        if self.client_is_a {
            Endpoint {
                addr: self.key.b(),
                port: self.key.b_port(),
            }
        } else {
            Endpoint {
                addr: self.key.a(),
                port: self.key.a_port(),
            }
        }
    }

    pub fn protocol(&self) -> Protocol {
        self.l7.as_ref().map_or(Protocol::Unknown, |s| s.protocol())
    }

    /// A snapshot of the flow for output.
    pub fn record(&self, reason: EndReason) -> FlowRecord {
        let tcp = self.tcp.as_ref().map(|t| TcpRecord {
            midstream: t.midstream,
            server_rtt_ns: t.server_rtt_ns,
            client_rtt_ns: t.client_rtt_ns,
            srtt_ns: t.srtt_ns,
            stats: t.stats,
            reassembled: [t.streams[0].delivered, t.streams[1].delivered],
            gap_bytes: [t.streams[0].gap_bytes, t.streams[1].gap_bytes],
        });
        let tls = self.l7.as_ref().and_then(|s| match s.decoder() {
            Some(crate::proto::Decoder::Tls(t)) if t.is_tls() => Some(TlsRecord {
                server_name: t.server_name().map(Into::into),
                encrypted_bytes: t.encrypted_bytes(),
            }),
            _ => None,
        });
        FlowRecord {
            obs: self.key.obs(),
            vlan: self.vlan,
            tunnel: self.key.tunnel(),
            ip_proto: self.key.proto(),
            client: self.client(),
            server: self.server(),
            first: self.first,
            last: self.last,
            dirs: self.dirs,
            reason,
            protocol: self.protocol(),
            tcp,
            tls,
            pods: self.pods.clone(),
            unreported: self.unreported(),
        }
    }

    /// What the metrics have not been given yet, per direction: the totals less earlier
    /// reports.
    fn unreported(&self) -> [DirDelta; 2] {
        let resent = |d: usize| self.tcp.as_ref().map_or(0, |t| t.stats[d].retransmits);
        [0, 1].map(|d| DirDelta {
            bytes: self.dirs[d].bytes - self.reported[d].bytes,
            packets: self.dirs[d].packets - self.reported[d].packets,
            retransmits: resent(d) - self.reported[d].retransmits,
        })
    }

    /// The traffic since the last report, if any, marked as reported at `now`.
    pub fn take_progress(&mut self, now: Timestamp) -> Option<[DirDelta; 2]> {
        let delta = self.unreported();
        if delta == [DirDelta::default(); 2] {
            return None;
        }
        for (r, d) in self.reported.iter_mut().zip(&delta) {
            r.bytes += d.bytes;
            r.packets += d.packets;
            r.retransmits += d.retransmits;
        }
        self.reported_at = now;
        Some(delta)
    }
}

/// `network.transport` value of an IP protocol number.
pub fn transport_name(ip_proto: u8) -> &'static str {
    match ip_proto {
        IPPROTO_TCP => "tcp",
        IPPROTO_UDP => "udp",
        IPPROTO_ICMP => "icmp",
        IPPROTO_ICMPV6 => "icmpv6",
        132 => "sctp",
        _ => "other",
    }
}

/// Which side of a flow is the client, judged from its first packet.
fn sender_is_client(p: &Packet<'_>) -> bool {
    // A multicast or broadcast address names a group of receivers, never the one that
    // asked: it is the server side whatever the transport suggests (a router solicitation
    // to ff02::2, a DHCP discover to 255.255.255.255, mDNS, SSDP).
    match (is_group(p.dst), is_group(p.src)) {
        (true, false) => return true,
        (false, true) => return false,
        _ => {}
    }
    let (sp, dp) = p.ports();
    match p.l4 {
        // SYN: the sender opens; SYN-ACK: the receiver opened.
        L4::Tcp(h) if h.has(tcp_flags::SYN) => !h.has(tcp_flags::ACK),
        // Requests open (echo, router and neighbour solicitation, timestamp...); replies,
        // advertisements and errors answer.
        L4::Icmp { kind, .. } => match p.ip_proto {
            IPPROTO_ICMP => matches!(kind, 8 | 10 | 13 | 15 | 17),
            IPPROTO_ICMPV6 => matches!(kind, 128 | 133 | 135),
            _ => true,
        },
        // Midstream TCP, and UDP: the side on the service port is the server.
        L4::Tcp(_) | L4::Udp { .. } => !looks_like_server_port(sp, dp),
        L4::Other => true,
    }
}

/// A multicast or (limited) broadcast address: a group, not one host.
fn is_group(a: std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_multicast(),
    }
}

/// Is `sp` the server's port in a conversation between ports `sp` and `dp`?
fn looks_like_server_port(sp: u16, dp: u16) -> bool {
    let well_known = |p: u16| p < 1024 || WELL_KNOWN_HIGH.contains(&p);
    match (well_known(sp), well_known(dp)) {
        (true, false) => true,
        (false, true) => false,
        // Both or neither: the lower port is more likely the service.
        _ => sp < dp,
    }
}

/// Service ports above 1023 that podtap's protocols commonly use.
const WELL_KNOWN_HIGH: &[u16] = &[
    1433, 1521, 2049, 2181, 2379, 3000, 3306, 4317, 4318, 5000, 5432, 5672, 6379, 8000, 8080, 8081,
    8443, 8888, 9042, 9090, 9092, 9200, 11211, 27017,
];

/// TCP details of a finished flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpRecord {
    pub midstream: bool,
    pub server_rtt_ns: Option<u64>,
    pub client_rtt_ns: Option<u64>,
    /// Smoothed RTT of the data each side sent (see `TcpConn::srtt_ns`).
    pub srtt_ns: [Option<u64>; 2],
    /// Indexed by direction: segments sent by the client, by the server.
    pub stats: [TcpDirStats; 2],
    pub reassembled: [u64; 2],
    pub gap_bytes: [u64; 2],
}

/// TLS details of a finished flow: the rest of the connection is counted as encrypted
/// bytes under the server name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsRecord {
    pub server_name: Option<compact_str::CompactString>,
    /// Application-data bytes, indexed by direction (sent by the client, by the server).
    pub encrypted_bytes: [u64; 2],
}

/// Everything reported about a flow when it ends.
#[derive(Clone, Debug)]
pub struct FlowRecord {
    pub obs: u32,
    pub vlan: u16,
    pub tunnel: TunnelId,
    pub ip_proto: u8,
    pub client: Endpoint,
    pub server: Endpoint,
    pub first: Timestamp,
    pub last: Timestamp,
    /// Indexed by direction: sent by the client, sent by the server.
    pub dirs: [DirCounters; 2],
    pub reason: EndReason,
    pub protocol: Protocol,
    pub tcp: Option<TcpRecord>,
    pub tls: Option<TlsRecord>,
    pub pods: Option<std::sync::Arc<crate::k8s::FlowPods>>,
    /// What earlier [`FlowProgress`] reports did not give the metrics yet.
    pub unreported: [DirDelta; 2],
}

impl FlowRecord {
    /// `network.transport` value.
    pub fn transport(&self) -> &'static str {
        transport_name(self.ip_proto)
    }

    /// `network.type` value.
    pub fn network_type(&self) -> &'static str {
        match self.client.addr {
            IpAddr::V4(_) => "ipv4",
            IpAddr::V6(_) => "ipv6",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_port_heuristics() {
        assert!(looks_like_server_port(80, 40000));
        assert!(!looks_like_server_port(40000, 80));
        assert!(looks_like_server_port(6379, 51000));
        assert!(
            looks_like_server_port(53, 1000),
            "both well known: the lower one"
        );
        assert!(!looks_like_server_port(50001, 50000));
    }

    fn packet(src: &str, dst: &str, ip_proto: u8, l4: L4) -> Packet<'static> {
        Packet {
            ts: crate::time::Timestamp(0),
            wire_len: 0,
            vlan: 0,
            tunnel: Default::default(),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            ip_proto,
            l4,
            payload: &[],
            payload_wire_len: 0,
        }
    }

    /// A multicast or broadcast destination is the server side, whatever the transport
    /// or ports suggest; a multicast source never is the client.
    #[test]
    fn group_addresses_are_never_the_client() {
        let icmp6 = |kind| L4::Icmp {
            kind,
            code: 0,
            id: 0,
        };
        let udp = |src_port, dst_port| L4::Udp { src_port, dst_port };
        for (src, dst, proto, l4) in [
            // Router advertisement (an answer by type) to all nodes.
            ("fe80::1", "ff02::1", IPPROTO_ICMPV6, icmp6(134)),
            // Neighbour advertisement to all nodes; MLD report to its group.
            ("fe80::1", "ff02::1", IPPROTO_ICMPV6, icmp6(136)),
            ("fe80::1", "ff02::16", IPPROTO_ICMPV6, icmp6(143)),
            // mDNS from its service port, SSDP to a high port, DHCP to broadcast.
            ("192.168.1.5", "224.0.0.251", IPPROTO_UDP, udp(5353, 5353)),
            (
                "192.168.1.5",
                "239.255.255.250",
                IPPROTO_UDP,
                udp(1900, 50000),
            ),
            ("0.0.0.0", "255.255.255.255", IPPROTO_UDP, udp(68, 67)),
            (
                "192.168.1.5",
                "255.255.255.255",
                IPPROTO_UDP,
                udp(67, 40000),
            ),
        ] {
            let p = packet(src, dst, proto, l4);
            assert!(sender_is_client(&p), "{src} -> {dst} {l4:?}");
            let mirrored = packet(dst, src, proto, l4);
            assert!(!sender_is_client(&mirrored), "{dst} -> {src} {l4:?}");
        }
        // Unicast requests open, answers do not.
        for (kind, opens) in [
            (128, true),
            (129, false),
            (133, true),
            (135, true),
            (136, false),
        ] {
            let p = packet("fe80::1", "fe80::2", IPPROTO_ICMPV6, icmp6(kind));
            assert_eq!(sender_is_client(&p), opens, "ICMPv6 type {kind}");
        }
        let icmp = |kind| L4::Icmp {
            kind,
            code: 0,
            id: 0,
        };
        for (kind, opens) in [(8, true), (0, false), (13, true), (14, false), (3, false)] {
            let p = packet("10.0.0.1", "10.0.0.2", IPPROTO_ICMP, icmp(kind));
            assert_eq!(sender_is_client(&p), opens, "ICMP type {kind}");
        }
    }
}
