//! Link layers: Ethernet with 802.1Q/802.1ad tags, Linux cooked capture (SLL and SLL2),
//! BSD loopback (DLT_NULL / DLT_LOOP) and raw IP. Each returns the ethertype of what
//! follows and where it starts.

use crate::events::Event;

/// Capture link types (pcap `LINKTYPE_*` values) podtap decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkType {
    Ethernet,
    /// Linux cooked capture v1 (`any` interface).
    LinuxSll,
    /// Linux cooked capture v2.
    LinuxSll2,
    /// Raw IPv4 or IPv6, version from the first nibble.
    RawIp,
    Ipv4,
    Ipv6,
    /// BSD loopback: 4-byte address family in host byte order of the capturing machine.
    Null,
    /// OpenBSD loopback: 4-byte address family in network byte order.
    Loop,
}

impl LinkType {
    /// From a pcap/pcapng link-type number; `None` when podtap cannot decode it.
    pub fn from_pcap(dlt: u32) -> Option<LinkType> {
        Some(match dlt {
            1 => LinkType::Ethernet,
            113 => LinkType::LinuxSll,
            276 => LinkType::LinuxSll2,
            12 | 14 | 101 => LinkType::RawIp,
            228 => LinkType::Ipv4,
            229 => LinkType::Ipv6,
            0 => LinkType::Null,
            108 => LinkType::Loop,
            _ => return None,
        })
    }
}

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
pub const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
/// Transparent Ethernet bridging (Ethernet inside GRE/GENEVE).
pub const ETHERTYPE_TEB: u16 = 0x6558;

/// How many VLAN tags podtap unwraps (QinQ plus one spare).
const MAX_VLAN_TAGS: usize = 3;

/// The result of unwrapping the link layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct L2<'a> {
    pub ethertype: u16,
    pub payload: &'a [u8],
    /// Innermost VLAN id, 0 when untagged.
    pub vlan: u16,
    /// Outer (service) VLAN id of a QinQ frame, 0 when there is none.
    pub outer_vlan: u16,
}

#[inline]
fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Unwrap the link layer of `frame`.
pub fn decode_link(frame: &[u8], link: LinkType) -> Result<L2<'_>, Event> {
    match link {
        LinkType::Ethernet => ethernet(frame),
        LinkType::LinuxSll => {
            // packet type(2) arphrd(2) addr len(2) addr(8) protocol(2)
            if frame.len() < 16 {
                return Err(Event::MalformedL2);
            }
            vlan_tags(be16(frame, 14), &frame[16..])
        }
        LinkType::LinuxSll2 => {
            // protocol(2) reserved(2) ifindex(4) arphrd(2) pkttype(1) addrlen(1) addr(8)
            if frame.len() < 20 {
                return Err(Event::MalformedL2);
            }
            vlan_tags(be16(frame, 0), &frame[20..])
        }
        LinkType::RawIp => match frame.first().map(|b| b >> 4) {
            Some(4) => Ok(plain(ETHERTYPE_IPV4, frame)),
            Some(6) => Ok(plain(ETHERTYPE_IPV6, frame)),
            Some(_) => Err(Event::NonIp),
            None => Err(Event::MalformedL2),
        },
        LinkType::Ipv4 => Ok(plain(ETHERTYPE_IPV4, frame)),
        LinkType::Ipv6 => Ok(plain(ETHERTYPE_IPV6, frame)),
        LinkType::Null | LinkType::Loop => {
            if frame.len() < 4 {
                return Err(Event::MalformedL2);
            }
            let raw = [frame[0], frame[1], frame[2], frame[3]];
            // DLT_NULL is in the byte order of the capturing host: accept either.
            let family = if link == LinkType::Loop {
                u32::from_be_bytes(raw)
            } else {
                let le = u32::from_le_bytes(raw);
                if le < 0x100 {
                    le
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            match family {
                2 => Ok(plain(ETHERTYPE_IPV4, &frame[4..])),
                // AF_INET6 differs by OS: 24 (BSD), 28 (FreeBSD), 30 (macOS), 10 (Linux).
                10 | 24 | 28 | 30 => Ok(plain(ETHERTYPE_IPV6, &frame[4..])),
                _ => Err(Event::NonIp),
            }
        }
    }
}

fn plain(ethertype: u16, payload: &[u8]) -> L2<'_> {
    L2 {
        ethertype,
        payload,
        vlan: 0,
        outer_vlan: 0,
    }
}

/// Ethernet II header followed by any VLAN tags.
pub fn ethernet(frame: &[u8]) -> Result<L2<'_>, Event> {
    if frame.len() < 14 {
        return Err(Event::MalformedL2);
    }
    vlan_tags(be16(frame, 12), &frame[14..])
}

fn vlan_tags(mut ethertype: u16, mut rest: &[u8]) -> Result<L2<'_>, Event> {
    let mut tags = [0u16; MAX_VLAN_TAGS];
    let mut n = 0;
    while matches!(
        ethertype,
        ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
    ) {
        if n == MAX_VLAN_TAGS {
            return Err(Event::VlanTooDeep);
        }
        if rest.len() < 4 {
            return Err(Event::MalformedVlan);
        }
        tags[n] = be16(rest, 0) & 0x0fff;
        n += 1;
        ethertype = be16(rest, 2);
        rest = &rest[4..];
    }
    let vlan = if n > 0 { tags[n - 1] } else { 0 };
    let outer_vlan = if n > 1 { tags[0] } else { 0 };
    Ok(L2 {
        ethertype,
        payload: rest,
        vlan,
        outer_vlan,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eth(ethertype: u16, tail: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(tail);
        f
    }

    #[test]
    fn ethernet_plain() {
        let f = eth(ETHERTYPE_IPV4, &[0x45, 0]);
        let l2 = decode_link(&f, LinkType::Ethernet).unwrap();
        assert_eq!(
            (l2.ethertype, l2.vlan, l2.payload),
            (ETHERTYPE_IPV4, 0, &[0x45, 0][..])
        );
    }

    #[test]
    fn qinq_gives_inner_and_outer_vlan() {
        // 802.1ad outer tag 100, 802.1Q inner tag 200, then IPv6.
        let f = eth(
            ETHERTYPE_QINQ,
            &[0x00, 100, 0x81, 0x00, 0x00, 200, 0x86, 0xdd, 0x60],
        );
        let l2 = decode_link(&f, LinkType::Ethernet).unwrap();
        assert_eq!(
            (l2.ethertype, l2.vlan, l2.outer_vlan),
            (ETHERTYPE_IPV6, 200, 100)
        );
        assert_eq!(l2.payload, &[0x60]);
    }

    #[test]
    fn truncated_frames_are_errors() {
        assert_eq!(
            decode_link(&[0u8; 13], LinkType::Ethernet),
            Err(Event::MalformedL2)
        );
        let f = eth(ETHERTYPE_VLAN, &[0x00]);
        assert_eq!(
            decode_link(&f, LinkType::Ethernet),
            Err(Event::MalformedVlan)
        );
        let f = eth(
            ETHERTYPE_VLAN,
            &[0, 1, 0x81, 0, 0, 2, 0x81, 0, 0, 3, 0x81, 0, 0, 4, 8, 0],
        );
        assert_eq!(decode_link(&f, LinkType::Ethernet), Err(Event::VlanTooDeep));
        assert_eq!(
            decode_link(&[0u8; 10], LinkType::LinuxSll),
            Err(Event::MalformedL2)
        );
        assert_eq!(decode_link(&[], LinkType::RawIp), Err(Event::MalformedL2));
    }

    #[test]
    fn cooked_and_loopback() {
        let mut sll = vec![0u8; 16];
        sll[14..16].copy_from_slice(&ETHERTYPE_IPV6.to_be_bytes());
        sll.push(0x60);
        assert_eq!(
            decode_link(&sll, LinkType::LinuxSll).unwrap().ethertype,
            ETHERTYPE_IPV6
        );
        let mut sll2 = vec![0u8; 20];
        sll2[0..2].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        assert_eq!(
            decode_link(&sll2, LinkType::LinuxSll2).unwrap().ethertype,
            ETHERTYPE_IPV4
        );
        // DLT_NULL written on a little-endian host: AF_INET = 2.
        assert_eq!(
            decode_link(&[2, 0, 0, 0, 0x45], LinkType::Null)
                .unwrap()
                .ethertype,
            ETHERTYPE_IPV4
        );
        // ... and on a big-endian host; AF_INET6 (BSD) = 24.
        assert_eq!(
            decode_link(&[0, 0, 0, 24, 0x60], LinkType::Null)
                .unwrap()
                .ethertype,
            ETHERTYPE_IPV6
        );
        assert_eq!(
            decode_link(&[0, 0, 0, 2, 0x45], LinkType::Loop)
                .unwrap()
                .ethertype,
            ETHERTYPE_IPV4
        );
        assert_eq!(
            decode_link(&[0x60], LinkType::RawIp).unwrap().ethertype,
            ETHERTYPE_IPV6
        );
    }
}
