//! Tunnel headers that mirrored feeds arrive in: VXLAN, GENEVE, GRE (including IP and
//! Ethernet over GRE) and ERSPAN types I, II and III. Each parser returns what is inside
//! (an Ethernet frame or an IP packet) so the decoder can continue with the inner packet.

use super::link::{ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_TEB};
use crate::events::Event;

/// Which tunnel a packet was found in (the outermost one podtap removed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum TunnelKind {
    #[default]
    None,
    Vxlan,
    Geneve,
    Gre,
    Erspan,
    IpInIp,
}

impl TunnelKind {
    pub const ALL: [TunnelKind; 6] = [
        TunnelKind::None,
        TunnelKind::Vxlan,
        TunnelKind::Geneve,
        TunnelKind::Gre,
        TunnelKind::Erspan,
        TunnelKind::IpInIp,
    ];

    /// The kind whose `as u8` is `n` (`None` for a number no kind has).
    pub fn from_u8(n: u8) -> TunnelKind {
        Self::ALL
            .into_iter()
            .find(|k| *k as u8 == n)
            .unwrap_or_default()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            TunnelKind::None => "none",
            TunnelKind::Vxlan => "vxlan",
            TunnelKind::Geneve => "geneve",
            TunnelKind::Gre => "gre",
            TunnelKind::Erspan => "erspan",
            TunnelKind::IpInIp => "ipip",
        }
    }
}

/// Tunnel identity: kind plus the VNI, GRE key or ERSPAN session id (0 when absent). Part
/// of the flow key, so identical inner addresses in two tunnels stay two flows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct TunnelId {
    pub kind: TunnelKind,
    pub id: u32,
}

/// What a tunnel header carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inner<'a> {
    Ethernet(&'a [u8]),
    /// An IP packet with the given ethertype (IPv4 or IPv6).
    Ip(u16, &'a [u8]),
}

pub const VXLAN_PORT: u16 = 4789;
/// Linux's historical default VXLAN port (flannel and others still use it).
pub const VXLAN_LINUX_PORT: u16 = 8472;
pub const GENEVE_PORT: u16 = 6081;
pub const ETHERTYPE_ERSPAN_I_II: u16 = 0x88be;
pub const ETHERTYPE_ERSPAN_III: u16 = 0x22eb;

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be24(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([0, b[at], b[at + 1], b[at + 2]])
}

fn by_ethertype(ethertype: u16, rest: &[u8]) -> Result<Inner<'_>, Event> {
    match ethertype {
        ETHERTYPE_TEB => Ok(Inner::Ethernet(rest)),
        ETHERTYPE_IPV4 | ETHERTYPE_IPV6 => Ok(Inner::Ip(ethertype, rest)),
        _ => Err(Event::MalformedTunnel),
    }
}

/// VXLAN (RFC 7348): 8-byte header, I flag set, 24-bit VNI, Ethernet inside.
pub fn vxlan(udp_payload: &[u8]) -> Result<(TunnelId, Inner<'_>), Event> {
    if udp_payload.len() < 8 || udp_payload[0] & 0x08 == 0 {
        return Err(Event::MalformedTunnel);
    }
    let id = TunnelId {
        kind: TunnelKind::Vxlan,
        id: be24(udp_payload, 4),
    };
    Ok((id, Inner::Ethernet(&udp_payload[8..])))
}

/// GENEVE (RFC 8926): 8-byte base header plus options, protocol type names the inner.
pub fn geneve(udp_payload: &[u8]) -> Result<(TunnelId, Inner<'_>), Event> {
    if udp_payload.len() < 8 || udp_payload[0] >> 6 != 0 {
        return Err(Event::MalformedTunnel);
    }
    let opt_len = (udp_payload[0] & 0x3f) as usize * 4;
    let start = 8 + opt_len;
    if udp_payload.len() < start {
        return Err(Event::MalformedTunnel);
    }
    let id = TunnelId {
        kind: TunnelKind::Geneve,
        id: be24(udp_payload, 4),
    };
    Ok((
        id,
        by_ethertype(be16(udp_payload, 2), &udp_payload[start..])?,
    ))
}

/// GRE (RFC 2784/2890) version 0, and the ERSPAN headers carried in it.
pub fn gre(ip_payload: &[u8]) -> Result<(TunnelId, Inner<'_>), Event> {
    if ip_payload.len() < 4 {
        return Err(Event::MalformedTunnel);
    }
    let flags = ip_payload[0];
    let version = ip_payload[1] & 0x07;
    if version != 0 {
        // Version 1 is PPTP's enhanced GRE: not a mirror feed.
        return Err(Event::MalformedTunnel);
    }
    let (has_csum, has_key, has_seq) = (flags & 0x80 != 0, flags & 0x20 != 0, flags & 0x10 != 0);
    let proto = be16(ip_payload, 2);
    let mut at = 4;
    if has_csum {
        at += 4;
    }
    let mut key = 0;
    if has_key {
        if ip_payload.len() < at + 4 {
            return Err(Event::MalformedTunnel);
        }
        key = u32::from_be_bytes([
            ip_payload[at],
            ip_payload[at + 1],
            ip_payload[at + 2],
            ip_payload[at + 3],
        ]);
        at += 4;
    }
    if has_seq {
        at += 4;
    }
    if ip_payload.len() < at {
        return Err(Event::MalformedTunnel);
    }
    let rest = &ip_payload[at..];
    match proto {
        // ERSPAN type I has no header of its own (and no GRE sequence number).
        ETHERTYPE_ERSPAN_I_II if !has_seq => Ok((
            TunnelId {
                kind: TunnelKind::Erspan,
                id: 0,
            },
            Inner::Ethernet(rest),
        )),
        ETHERTYPE_ERSPAN_I_II => {
            // Type II: ver(4)=1 vlan(12) cos(3) en(2) t(1) session(10) reserved(12) index(20)
            if rest.len() < 8 || rest[0] >> 4 != 1 {
                return Err(Event::MalformedTunnel);
            }
            let session = (be16(rest, 2) & 0x03ff) as u32;
            Ok((
                TunnelId {
                    kind: TunnelKind::Erspan,
                    id: session,
                },
                Inner::Ethernet(&rest[8..]),
            ))
        }
        ETHERTYPE_ERSPAN_III => {
            // Type III: ver(4)=2 vlan(12) cos(3) bso(2) t(1) session(10) timestamp(32)
            // sgt(16) p(1) ft(5) hw(6) d(1) gra(2) o(1); o: 8-byte platform sub-header.
            if rest.len() < 12 || rest[0] >> 4 != 2 {
                return Err(Event::MalformedTunnel);
            }
            let session = (be16(rest, 2) & 0x03ff) as u32;
            let has_platform = rest[11] & 0x01 != 0;
            let start = if has_platform { 20 } else { 12 };
            if rest.len() < start {
                return Err(Event::MalformedTunnel);
            }
            Ok((
                TunnelId {
                    kind: TunnelKind::Erspan,
                    id: session,
                },
                Inner::Ethernet(&rest[start..]),
            ))
        }
        _ => Ok((
            TunnelId {
                kind: TunnelKind::Gre,
                id: key,
            },
            by_ethertype(proto, rest)?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vxlan_header() {
        let p = [0x08, 0, 0, 0, 0x00, 0x12, 0x34, 0, 0xaa];
        let (id, inner) = vxlan(&p).unwrap();
        assert_eq!(
            id,
            TunnelId {
                kind: TunnelKind::Vxlan,
                id: 0x1234
            }
        );
        assert_eq!(inner, Inner::Ethernet(&[0xaa]));
        assert_eq!(vxlan(&p[..7]), Err(Event::MalformedTunnel));
        assert_eq!(
            vxlan(&[0u8; 8]),
            Err(Event::MalformedTunnel),
            "I flag must be set"
        );
    }

    #[test]
    fn geneve_with_options() {
        // opt len 1 (4 bytes), protocol 0x6558, VNI 7, then 4 option bytes, then payload.
        let p = [0x01, 0, 0x65, 0x58, 0, 0, 7, 0, 1, 2, 3, 4, 0xbb];
        let (id, inner) = geneve(&p).unwrap();
        assert_eq!(id.id, 7);
        assert_eq!(inner, Inner::Ethernet(&[0xbb]));
        assert_eq!(geneve(&p[..10]), Err(Event::MalformedTunnel));
    }

    #[test]
    fn gre_ip_with_key() {
        let p = [0x20, 0, 0x08, 0x00, 0, 0, 0, 42, 0x45];
        let (id, inner) = gre(&p).unwrap();
        assert_eq!(
            id,
            TunnelId {
                kind: TunnelKind::Gre,
                id: 42
            }
        );
        assert_eq!(inner, Inner::Ip(ETHERTYPE_IPV4, &[0x45]));
        assert_eq!(gre(&p[..6]), Err(Event::MalformedTunnel));
    }

    #[test]
    fn erspan_types() {
        // Type II: GRE with S bit, seq, then ver=1 session 5.
        let p = [
            0x10, 0, 0x88, 0xbe, 0, 0, 0, 1, 0x10, 0, 0x00, 0x05, 0, 0, 0, 0, 0xcc,
        ];
        let (id, inner) = gre(&p).unwrap();
        assert_eq!(
            id,
            TunnelId {
                kind: TunnelKind::Erspan,
                id: 5
            }
        );
        assert_eq!(inner, Inner::Ethernet(&[0xcc]));
        // Type III without platform sub-header, session 9.
        let p = [
            0x10, 0, 0x22, 0xeb, 0, 0, 0, 1, 0x20, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd,
        ];
        let (id, inner) = gre(&p).unwrap();
        assert_eq!(id.id, 9);
        assert_eq!(inner, Inner::Ethernet(&[0xdd]));
        // Type I: no sequence number, no ERSPAN header.
        let p = [0x00, 0, 0x88, 0xbe, 0xee];
        assert_eq!(gre(&p).unwrap().1, Inner::Ethernet(&[0xee]));
        // Truncated type III.
        assert_eq!(
            gre(&[0x10, 0, 0x22, 0xeb, 0, 0, 0, 1, 0x20]),
            Err(Event::MalformedTunnel)
        );
    }
}
