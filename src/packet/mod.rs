//! L2-L4 decoding: a zero-copy view of one captured frame.
//!
//! `decode` unwraps the link layer, VLAN tags, tunnels (VXLAN, GENEVE, GRE, ERSPAN, IP in
//! IP) and IP fragments, and stops at the transport header. Malformed or truncated frames
//! come back as an [`Event`] naming the reason, never as a panic.

pub mod defrag;
pub mod link;
pub mod tunnel;

pub use defrag::Defragmenter;
pub use link::LinkType;
pub use tunnel::{TunnelId, TunnelKind};

use etherparse::{LaxIpSlice, LenSource};
use std::net::IpAddr;

use crate::events::Event;
use crate::time::Timestamp;
use link::{ETHERTYPE_IPV4, ETHERTYPE_IPV6};
use tunnel::Inner;

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_IPIP: u8 = 4;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_IPV6: u8 = 41;
pub const IPPROTO_GRE: u8 = 47;
/// IPsec Authentication Header: etherparse walks it as an IPv4 extension.
const IPPROTO_AH: u8 = 51;
pub const IPPROTO_ICMPV6: u8 = 58;

/// How many tunnels deep podtap unwraps.
const MAX_TUNNEL_DEPTH: usize = 3;

/// TCP flag bits as in the header's flags byte.
pub mod tcp_flags {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// The TCP header fields flow tracking needs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub window: u16,
}

impl TcpHeader {
    #[inline]
    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The transport layer of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum L4 {
    Tcp(TcpHeader),
    Udp {
        src_port: u16,
        dst_port: u16,
    },
    /// ICMP or ICMPv6. `id` is the echo identifier (0 for other messages), used in place of
    /// ports so each ping session is its own flow.
    Icmp {
        kind: u8,
        code: u8,
        id: u16,
    },
    /// Any other IP protocol (SCTP, ESP, ...): tracked by addresses only.
    Other,
}

/// A decoded packet: addresses, transport header and payload, borrowed from the frame (or
/// from the defragmenter's buffer when it was reassembled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub ts: Timestamp,
    /// Length of the frame on the wire (may exceed what was captured).
    pub wire_len: u32,
    /// Innermost VLAN id, 0 when untagged.
    pub vlan: u16,
    pub tunnel: TunnelId,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub ip_proto: u8,
    pub l4: L4,
    /// Transport payload as captured.
    pub payload: &'a [u8],
    /// Transport payload length on the wire. Larger than `payload.len()` when the capture
    /// snap length cut the frame; reassembly treats the missing tail as a gap.
    pub payload_wire_len: u32,
}

impl Packet<'_> {
    pub fn ports(&self) -> (u16, u16) {
        match self.l4 {
            L4::Tcp(t) => (t.src_port, t.dst_port),
            L4::Udp { src_port, dst_port } => (src_port, dst_port),
            L4::Icmp { id, .. } => (id, id),
            L4::Other => (0, 0),
        }
    }

    pub fn is_ipv6(&self) -> bool {
        self.src.is_ipv6()
    }
}

/// The outcome of decoding one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    Packet(Packet<'a>),
    /// An IP fragment that the defragmenter is holding until its datagram is complete.
    FragmentHeld,
}

/// Where decoding continues after a layer.
enum Next<'a> {
    Link(LinkType, &'a [u8]),
    Ip(u16, &'a [u8]),
}

/// Decode one captured frame. `defrag` holds IP fragments until their datagram is whole;
/// the returned packet then borrows the reassembled datagram from it.
///
/// Always inlined: the common frame's path (`decode_plain`) is then part of the packet
/// loop, without a call per packet; everything else is out of line.
#[inline(always)]
pub fn decode<'a>(
    frame: &'a [u8],
    link: LinkType,
    ts: Timestamp,
    wire_len: u32,
    defrag: &'a mut Defragmenter,
) -> Result<Decoded<'a>, Event> {
    match decode_plain(frame, link, ts, wire_len) {
        Some(p) => Ok(Decoded::Packet(p)),
        None => decode_layers(frame, link, ts, wire_len, defrag),
    }
}

/// The common frame read straight through: untagged Ethernet II, a plain IPv4 header (see
/// `plain_ipv4`), and TCP or UDP that is no tunnel. It runs the same per-layer functions
/// as `decode_layers`, without the layer loop and its intermediate results, so for what
/// it accepts the packet is the same; `None` (anything else, including frames that turn
/// out malformed) sends the frame through `decode_layers`, which names the error.
#[inline(always)]
fn decode_plain(frame: &[u8], link: LinkType, ts: Timestamp, wire_len: u32) -> Option<Packet<'_>> {
    if link != LinkType::Ethernet
        || frame.len() < 14
        || u16::from_be_bytes([frame[12], frame[13]]) != ETHERTYPE_IPV4
    {
        return None;
    }
    let ip = plain_ipv4(ETHERTYPE_IPV4, &frame[14..])?;
    match ip.proto {
        IPPROTO_TCP => {}
        // UDP to a VXLAN or GENEVE port is a tunnel (when it has a whole UDP header).
        IPPROTO_UDP => match transport_ports(ip.proto, ip.payload) {
            Some((_, dst))
                if ip.payload.len() >= 8
                    && matches!(
                        dst,
                        tunnel::VXLAN_PORT | tunnel::VXLAN_LINUX_PORT | tunnel::GENEVE_PORT
                    ) =>
            {
                return None;
            }
            _ => {}
        },
        _ => return None,
    }
    transport(ip, ts, wire_len, 0, TunnelId::default()).ok()
}

/// Decode layer by layer: any link type, VLAN tags, tunnels, IPv6, fragments.
#[inline(never)]
fn decode_layers<'a>(
    frame: &'a [u8],
    link: LinkType,
    ts: Timestamp,
    wire_len: u32,
    defrag: &'a mut Defragmenter,
) -> Result<Decoded<'a>, Event> {
    let mut defrag = Some(defrag);
    let mut next = Next::Link(link, frame);
    let mut vlan = 0u16;
    let mut tunnel = TunnelId::default();
    for _depth in 0..=MAX_TUNNEL_DEPTH {
        let (ethertype, bytes) = match next {
            Next::Link(lt, bytes) => {
                let l2 = link::decode_link(bytes, lt)?;
                vlan = l2.vlan;
                (l2.ethertype, l2.payload)
            }
            Next::Ip(et, bytes) => (et, bytes),
        };
        if ethertype != ETHERTYPE_IPV4 && ethertype != ETHERTYPE_IPV6 {
            return Err(Event::NonIp);
        }
        let ip = ip_layer(ethertype, bytes, ts, &mut defrag)?;
        let Some(ip) = ip else {
            return Ok(Decoded::FragmentHeld);
        };
        // A tunnel: note the outermost one and continue with what is inside.
        let inner = match (ip.proto, transport_ports(ip.proto, ip.payload)) {
            (IPPROTO_GRE, _) => Some(tunnel::gre(ip.payload)?),
            (IPPROTO_IPIP, _) => Some((
                TunnelId {
                    kind: TunnelKind::IpInIp,
                    id: 0,
                },
                Inner::Ip(ETHERTYPE_IPV4, ip.payload),
            )),
            (IPPROTO_IPV6, _) => Some((
                TunnelId {
                    kind: TunnelKind::IpInIp,
                    id: 0,
                },
                Inner::Ip(ETHERTYPE_IPV6, ip.payload),
            )),
            (IPPROTO_UDP, Some((_, dst))) if ip.payload.len() >= 8 => match dst {
                tunnel::VXLAN_PORT | tunnel::VXLAN_LINUX_PORT => {
                    Some(tunnel::vxlan(&ip.payload[8..])?)
                }
                tunnel::GENEVE_PORT => Some(tunnel::geneve(&ip.payload[8..])?),
                _ => None,
            },
            _ => None,
        };
        match inner {
            Some((id, inner)) => {
                if tunnel.kind == TunnelKind::None {
                    tunnel = id;
                }
                next = match inner {
                    Inner::Ethernet(b) => Next::Link(LinkType::Ethernet, b),
                    Inner::Ip(et, b) => Next::Ip(et, b),
                };
            }
            None => return transport(ip, ts, wire_len, vlan, tunnel).map(Decoded::Packet),
        }
    }
    Err(Event::TunnelTooDeep)
}

/// An IP header's essentials plus its payload.
#[derive(Debug, PartialEq)]
struct IpLayer<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &'a [u8],
    payload_wire_len: u32,
}

/// The common case read directly: an unfragmented IPv4 header with a sane length and no
/// Authentication Header. Anything else (`None`) goes through etherparse, which knows every
/// corner; this path gives the same answer for what it accepts, at a fraction of the cost.
#[inline]
fn plain_ipv4(ethertype: u16, b: &[u8]) -> Option<IpLayer<'_>> {
    if ethertype != ETHERTYPE_IPV4 || b.len() < 20 || b[0] >> 4 != 4 {
        return None;
    }
    let ihl = (b[0] & 0x0f) as usize * 4;
    let total = u16::from_be_bytes([b[2], b[3]]) as usize;
    let fragment = u16::from_be_bytes([b[6], b[7]]) & 0x3fff != 0;
    let proto = b[9];
    if ihl < 20 || b.len() < ihl || total < ihl || fragment || proto == IPPROTO_AH {
        return None;
    }
    // Ethernet padding beyond the total length is not payload; a snap-length cut keeps the
    // declared length as the wire length.
    let payload = &b[ihl..total.min(b.len())];
    Some(IpLayer {
        src: IpAddr::from([b[12], b[13], b[14], b[15]]),
        dst: IpAddr::from([b[16], b[17], b[18], b[19]]),
        proto,
        payload,
        payload_wire_len: (total - ihl).max(payload.len()) as u32,
    })
}

fn ip_layer<'a>(
    ethertype: u16,
    bytes: &'a [u8],
    ts: Timestamp,
    defrag: &mut Option<&'a mut Defragmenter>,
) -> Result<Option<IpLayer<'a>>, Event> {
    match plain_ipv4(ethertype, bytes) {
        Some(ip) => Ok(Some(ip)),
        None => ip_layer_general(ethertype, bytes, ts, defrag),
    }
}

/// Any IP header, through etherparse: options, extension headers, fragments, odd lengths.
fn ip_layer_general<'a>(
    ethertype: u16,
    bytes: &'a [u8],
    ts: Timestamp,
    defrag: &mut Option<&'a mut Defragmenter>,
) -> Result<Option<IpLayer<'a>>, Event> {
    let malformed = if ethertype == ETHERTYPE_IPV4 {
        Event::MalformedIpv4
    } else {
        Event::MalformedIpv6
    };
    let (ip, ext_err) = LaxIpSlice::from_slice(bytes).map_err(|_| malformed)?;
    if ext_err.is_some() {
        return Err(Event::MalformedIpv6);
    }
    // The first nibble must agree with the ethertype.
    let is_v4 = matches!(ip, LaxIpSlice::Ipv4(_));
    if is_v4 != (ethertype == ETHERTYPE_IPV4) {
        return Err(malformed);
    }
    let src = ip.source_addr();
    let dst = ip.destination_addr();
    let p = ip.payload();
    let proto = p.ip_number.0;
    // LenSource::Slice means the header claimed more than was captured: snap-length cut.
    let wire_len = match (&ip, p.len_source) {
        (LaxIpSlice::Ipv4(v4), LenSource::Slice) => {
            let h = v4.header();
            let auth = v4.extensions().auth.map_or(0, |a| a.slice().len());
            (h.total_len() as usize).saturating_sub(h.slice().len() + auth)
        }
        (LaxIpSlice::Ipv6(v6), LenSource::Slice) => {
            let declared = v6.header().payload_length() as usize;
            let exts = v6.extensions().slice().len();
            if declared == 0 {
                p.payload.len()
            } else {
                declared.saturating_sub(exts)
            }
        }
        _ => p.payload.len(),
    }
    .max(p.payload.len()) as u32;
    if !p.fragmented {
        return Ok(Some(IpLayer {
            src,
            dst,
            proto,
            payload: p.payload,
            payload_wire_len: wire_len,
        }));
    }
    // A fragment: offset, more-fragments flag and identification from the right header.
    let frag = match &ip {
        LaxIpSlice::Ipv4(v4) => {
            let h = v4.header();
            defrag::Fragment {
                id: h.identification() as u32,
                offset: h.fragments_offset().byte_offset() as u32,
                more: h.more_fragments(),
            }
        }
        LaxIpSlice::Ipv6(v6) => {
            let fh = v6.extensions().clone().into_iter().find_map(|e| match e {
                etherparse::Ipv6ExtensionSlice::Fragment(f) => Some(f),
                _ => None,
            });
            let Some(fh) = fh else {
                return Err(Event::MalformedIpv6);
            };
            defrag::Fragment {
                id: fh.identification(),
                offset: fh.fragment_offset().byte_offset() as u32,
                more: fh.more_fragments(),
            }
        }
    };
    if p.len_source == LenSource::Slice && frag.more {
        // A fragment cut by the snap length cannot be reassembled.
        return Err(Event::FragmentInvalid);
    }
    let Some(d) = defrag.take() else {
        // Fragments inside an already reassembled datagram: not worth a second buffer.
        return Err(Event::FragmentInvalid);
    };
    let key = defrag::FragKey {
        src,
        dst,
        proto,
        id: frag.id,
    };
    match d.push(key, frag, p.payload, ts)? {
        Some(whole) => {
            let n = whole.len() as u32;
            Ok(Some(IpLayer {
                src,
                dst,
                proto,
                payload: whole,
                payload_wire_len: n,
            }))
        }
        None => Ok(None),
    }
}

#[inline]
fn transport_ports(proto: u8, payload: &[u8]) -> Option<(u16, u16)> {
    if (proto == IPPROTO_UDP || proto == IPPROTO_TCP) && payload.len() >= 4 {
        Some((
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        ))
    } else {
        None
    }
}

// Inlined into the straight-line path too, where the packet is then built in place
// rather than returned through a `Result`.
#[inline(always)]
fn transport<'a>(
    ip: IpLayer<'a>,
    ts: Timestamp,
    wire_len: u32,
    vlan: u16,
    tunnel: TunnelId,
) -> Result<Packet<'a>, Event> {
    let b = ip.payload;
    let (l4, hdr_len) = match ip.proto {
        IPPROTO_TCP => {
            if b.len() < 20 {
                return Err(Event::MalformedTcp);
            }
            let data_offset = (b[12] >> 4) as usize * 4;
            if data_offset < 20 || b.len() < data_offset {
                return Err(Event::MalformedTcp);
            }
            let h = TcpHeader {
                src_port: u16::from_be_bytes([b[0], b[1]]),
                dst_port: u16::from_be_bytes([b[2], b[3]]),
                seq: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
                ack: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
                flags: b[13],
                window: u16::from_be_bytes([b[14], b[15]]),
            };
            (L4::Tcp(h), data_offset)
        }
        IPPROTO_UDP => {
            if b.len() < 8 {
                return Err(Event::MalformedUdp);
            }
            let udp_len = u16::from_be_bytes([b[4], b[5]]) as usize;
            if udp_len != 0 && udp_len < 8 {
                return Err(Event::MalformedUdp);
            }
            let l4 = L4::Udp {
                src_port: u16::from_be_bytes([b[0], b[1]]),
                dst_port: u16::from_be_bytes([b[2], b[3]]),
            };
            (l4, 8)
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if b.len() < 4 {
                return Err(Event::MalformedIcmp);
            }
            let is_echo = match ip.proto {
                IPPROTO_ICMP => b[0] == 0 || b[0] == 8,
                _ => b[0] == 128 || b[0] == 129,
            };
            let id = if is_echo && b.len() >= 6 {
                u16::from_be_bytes([b[4], b[5]])
            } else {
                0
            };
            (
                L4::Icmp {
                    kind: b[0],
                    code: b[1],
                    id,
                },
                4.min(b.len()),
            )
        }
        _ => (L4::Other, 0),
    };
    let payload = &b[hdr_len..];
    let payload_wire_len = (ip.payload_wire_len as usize)
        .saturating_sub(hdr_len)
        .max(payload.len()) as u32;
    Ok(Packet {
        ts,
        wire_len,
        vlan,
        tunnel,
        src: ip.src,
        dst: ip.dst,
        ip_proto: ip.proto,
        l4,
        payload,
        payload_wire_len,
    })
}

/// The worker a frame belongs to, before full decoding: a symmetric hash of its outer IP
/// addresses and, for unfragmented TCP, its ports. Both directions
/// of a flow hash alike, as with the kernel's PACKET_FANOUT_HASH. Frames that do not
/// decode hash to 0 (one worker then counts them).
pub fn fanout_hash(frame: &[u8], link: LinkType) -> u64 {
    let Ok(l2) = link::decode_link(frame, link) else {
        return 0;
    };
    let b = l2.payload;
    let (src, dst, proto, l4): (IpAddr, IpAddr, u8, Option<&[u8]>) = match l2.ethertype {
        ETHERTYPE_IPV4 if b.len() >= 20 => {
            let ihl = (b[0] & 0x0f) as usize * 4;
            let fragment = u16::from_be_bytes([b[6], b[7]]) & 0x3fff != 0;
            let src = IpAddr::from([b[12], b[13], b[14], b[15]]);
            let dst = IpAddr::from([b[16], b[17], b[18], b[19]]);
            (src, dst, b[9], if fragment { None } else { b.get(ihl..) })
        }
        ETHERTYPE_IPV6 if b.len() >= 40 => {
            let mut s = [0u8; 16];
            let mut d = [0u8; 16];
            s.copy_from_slice(&b[8..24]);
            d.copy_from_slice(&b[24..40]);
            // Extension headers (and fragments) are not walked here: addresses only.
            (IpAddr::from(s), IpAddr::from(d), b[6], b.get(40..))
        }
        _ => return 0,
    };
    let (sp, dp) = match (proto, l4) {
        // TCP rarely fragments: ports spread connections between two hosts over workers.
        (IPPROTO_TCP, Some(t)) if t.len() >= 4 => (
            u16::from_be_bytes([t[0], t[1]]),
            u16::from_be_bytes([t[2], t[3]]),
        ),
        // UDP datagrams do fragment (large DNS answers), and tunnels vary their source port
        // per inner flow: addresses only, so a datagram and its fragments meet.
        _ => (0, 0),
    };
    let proto = if sp == 0 && dp == 0 { 0 } else { proto };
    crate::flow::key::symmetric_hash(&src, &dst, sp, dp, proto)
}

#[cfg(test)]
mod tests;
