//! The symmetric flow key: both directions of a conversation map to one key.

use std::net::IpAddr;

use crate::packet::{Packet, TunnelId, TunnelKind};

/// Five-tuple plus where it was observed. The two endpoints are stored in a canonical
/// order (`a` <= `b`), so a packet and its reply produce the same key.
///
/// The key is built, hashed and compared for every packet, so it is kept as a few whole
/// integers rather than as `IpAddr`s and small fields: the addresses as plain 128-bit
/// numbers with a family flag, everything else packed into two 64-bit words. The hash and
/// the comparison then read back exactly the words the key was written as. (With small
/// fields, the compiler merged neighbouring ones into one wider load, which the processor
/// cannot serve from the narrower stores that had just written them: a stall on every
/// lookup.)
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct FlowKey {
    /// Observation point (bits 32..64), VLAN (16..32), tunnel kind (8..16), IP protocol
    /// (0..8).
    head: u64,
    /// Tunnel id (bits 32..64), port of `a` (16..32), port of `b` (0..16).
    ports: u64,
    /// The addresses as numbers: IPv4 in the low 32 bits, IPv6 in all 128.
    a: u128,
    b: u128,
    /// Whether `a` and `b` are IPv6 addresses.
    a6: bool,
    b6: bool,
}

impl std::fmt::Debug for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowKey")
            .field("obs", &self.obs())
            .field("vlan", &self.vlan())
            .field("tunnel", &self.tunnel())
            .field("proto", &self.proto())
            .field("a", &self.a())
            .field("a_port", &self.a_port())
            .field("b", &self.b())
            .field("b_port", &self.b_port())
            .finish()
    }
}

/// An address as a number, as the key stores it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Addr {
    // Field order matters for `Ord`: all IPv4 addresses sort before IPv6 ones and then by
    // value, the order of `IpAddr`.
    v6: bool,
    n: u128,
}

impl Addr {
    #[inline]
    fn of(ip: IpAddr) -> Addr {
        match ip {
            IpAddr::V4(v4) => Addr {
                v6: false,
                n: u32::from(v4) as u128,
            },
            IpAddr::V6(v6) => Addr {
                v6: true,
                n: u128::from(v6),
            },
        }
    }

    fn ip(v6: bool, n: u128) -> IpAddr {
        if v6 {
            IpAddr::from(n.to_be_bytes())
        } else {
            IpAddr::from((n as u32).to_be_bytes())
        }
    }
}

/// Hashed as a few whole 128-bit words (every field, nothing folded away; two IPv4
/// addresses share one word): the derived hash would feed the hasher field by field.
impl std::hash::Hash for FlowKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u128((self.head as u128) << 64 | self.ports as u128);
        if self.a6 || self.b6 {
            h.write_u128(self.a);
            h.write_u128(self.b);
        } else {
            h.write_u128(self.a << 32 | self.b);
        }
    }
}

impl FlowKey {
    /// The key of `p` seen at `obs`, and whether `p` travels from `a` to `b`.
    /// With `vlan_in_key` false, both directions meet whatever their VLAN tags (SPAN ports
    /// often tag only one direction).
    #[inline]
    pub fn of(p: &Packet<'_>, obs: u32, vlan_in_key: bool) -> (FlowKey, bool) {
        let (sp, dp) = p.ports();
        let (src, dst) = (Addr::of(p.src), Addr::of(p.dst));
        let forward = (src, sp) <= (dst, dp);
        let (a, a_port, b, b_port) = if forward {
            (src, sp, dst, dp)
        } else {
            (dst, dp, src, sp)
        };
        let vlan = if vlan_in_key { p.vlan } else { 0 };
        (
            FlowKey {
                head: (obs as u64) << 32
                    | (vlan as u64) << 16
                    | (p.tunnel.kind as u64) << 8
                    | p.ip_proto as u64,
                ports: (p.tunnel.id as u64) << 32 | (a_port as u64) << 16 | b_port as u64,
                a: a.n,
                b: b.n,
                a6: a.v6,
                b6: b.v6,
            },
            forward,
        )
    }

    /// Observation point: interface index or mirror tag the packet was captured at.
    #[inline]
    pub fn obs(&self) -> u32 {
        (self.head >> 32) as u32
    }

    /// VLAN id (0 when untagged, or when VLANs are not part of the key).
    pub fn vlan(&self) -> u16 {
        (self.head >> 16) as u16
    }

    pub fn tunnel(&self) -> TunnelId {
        TunnelId {
            kind: TunnelKind::from_u8((self.head >> 8) as u8),
            id: (self.ports >> 32) as u32,
        }
    }

    /// IP protocol number.
    #[inline]
    pub fn proto(&self) -> u8 {
        self.head as u8
    }

    /// The canonical first endpoint's port.
    #[inline]
    pub fn a_port(&self) -> u16 {
        (self.ports >> 16) as u16
    }

    /// The canonical second endpoint's port.
    #[inline]
    pub fn b_port(&self) -> u16 {
        self.ports as u16
    }

    /// The canonical first endpoint's address.
    pub fn a(&self) -> IpAddr {
        Addr::ip(self.a6, self.a)
    }

    /// The canonical second endpoint's address.
    pub fn b(&self) -> IpAddr {
        Addr::ip(self.b6, self.b)
    }
}

/// A symmetric hash of a packet's addresses and ports, for spreading packets over workers
/// so that both directions of a flow land in the same worker (what PACKET_FANOUT_HASH does
/// in the kernel). Fragments carry no ports, so only addresses are hashed for IP pairs
/// that fragment; callers hash with ports = 0 for them.
#[inline]
pub fn symmetric_hash(src: &IpAddr, dst: &IpAddr, sport: u16, dport: u16, proto: u8) -> u64 {
    fn fold(ip: &IpAddr) -> u64 {
        match ip {
            IpAddr::V4(v4) => u32::from_be_bytes(v4.octets()) as u64,
            IpAddr::V6(v6) => {
                let o = v6.octets();
                let hi = u64::from_be_bytes([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]]);
                let lo = u64::from_be_bytes([o[8], o[9], o[10], o[11], o[12], o[13], o[14], o[15]]);
                hi ^ lo.rotate_left(17)
            }
        }
    }
    let x = fold(src) ^ (sport as u64) << 32;
    let y = fold(dst) ^ (dport as u64) << 32;
    // Order-independent combination, then a multiply-xorshift mix.
    let (lo, hi) = if x <= y { (x, y) } else { (y, x) };
    let mut h = lo.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ hi.rotate_left(29) ^ proto as u64;
    h ^= h >> 31;
    h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h ^ (h >> 29)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_matches_ipaddr_order() {
        use crate::packet::{L4, Packet, TunnelId};
        use crate::time::Timestamp;
        let addrs = [
            "10.0.0.1",
            "10.0.0.2",
            "9.255.255.255",
            "10.0.1.0",
            "200.1.1.1",
        ];
        for s in addrs {
            for d in addrs {
                for (sp, dp) in [(80, 40000), (40000, 80), (80, 80)] {
                    let (src, dst): (IpAddr, IpAddr) = (s.parse().unwrap(), d.parse().unwrap());
                    let p = Packet {
                        ts: Timestamp(0),
                        wire_len: 0,
                        vlan: 0,
                        tunnel: TunnelId::default(),
                        src,
                        dst,
                        ip_proto: 17,
                        l4: L4::Udp {
                            src_port: sp,
                            dst_port: dp,
                        },
                        payload: &[],
                        payload_wire_len: 0,
                    };
                    let (key, forward) = FlowKey::of(&p, 0, true);
                    assert_eq!(forward, (src, sp) <= (dst, dp), "{s}:{sp} {d}:{dp}");
                    let ends = if forward { (src, dst) } else { (dst, src) };
                    assert_eq!((key.a(), key.b()), ends);
                }
            }
        }
    }

    #[test]
    fn packed_fields_read_back_as_written() {
        use crate::packet::{L4, TunnelKind};
        use crate::time::Timestamp;
        for kind in TunnelKind::ALL {
            assert_eq!(TunnelKind::from_u8(kind as u8), kind);
            let p = Packet {
                ts: Timestamp(0),
                wire_len: 0,
                vlan: 4094,
                tunnel: TunnelId {
                    kind,
                    id: u32::MAX - 1,
                },
                src: "fe80::1".parse().unwrap(),
                dst: "10.0.0.1".parse().unwrap(),
                ip_proto: 6,
                l4: L4::Udp {
                    src_port: 65535,
                    dst_port: 1,
                },
                payload: &[],
                payload_wire_len: 0,
            };
            let (k, forward) = FlowKey::of(&p, u32::MAX, true);
            // IPv4 sorts before IPv6: the destination is `a`.
            assert!(!forward);
            assert_eq!(k.obs(), u32::MAX);
            assert_eq!(k.vlan(), 4094);
            assert_eq!(k.tunnel(), p.tunnel);
            assert_eq!(k.proto(), 6);
            assert_eq!((k.a(), k.a_port()), (p.dst, 1));
            assert_eq!((k.b(), k.b_port()), (p.src, 65535));
            let (untagged, _) = FlowKey::of(&p, u32::MAX, false);
            assert_eq!(untagged.vlan(), 0);
            assert_ne!(untagged, k);
        }
        assert_eq!(TunnelKind::from_u8(200), TunnelKind::None);
    }

    #[test]
    fn hash_is_symmetric() {
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(
            symmetric_hash(&a, &b, 1234, 80, 6),
            symmetric_hash(&b, &a, 80, 1234, 6)
        );
        assert_ne!(
            symmetric_hash(&a, &b, 1234, 80, 6),
            symmetric_hash(&a, &b, 1235, 80, 6)
        );
    }

    proptest::proptest! {
        /// The key of a packet and of its reply is one key, with opposite directions
        /// (the flow table finds both halves of a conversation), whatever the addresses,
        /// ports, protocol, VLAN and observation point; and the fanout hash agrees.
        #[test]
        fn a_packet_and_its_reply_share_one_key(
            v6 in proptest::bool::ANY,
            a in proptest::array::uniform16(0u8..),
            b in proptest::array::uniform16(0u8..),
            sp in 0u16..,
            dp in 0u16..,
            tcp in proptest::bool::ANY,
            vlan in 0u16..4095,
            obs in 0u32..,
            vlan_in_key in proptest::bool::ANY,
        ) {
            use crate::packet::{L4, Packet, TunnelId};
            use crate::time::Timestamp;
            let ip = |o: [u8; 16]| -> IpAddr {
                if v6 {
                    IpAddr::from(o)
                } else {
                    IpAddr::from([o[0], o[1], o[2], o[3]])
                }
            };
            let (src, dst) = (ip(a), ip(b));
            let packet = |src, dst, sp, dp| Packet {
                ts: Timestamp(0),
                wire_len: 0,
                vlan,
                tunnel: TunnelId::default(),
                src,
                dst,
                ip_proto: if tcp { 6 } else { 17 },
                l4: if tcp {
                    L4::Tcp(crate::packet::TcpHeader {
                        src_port: sp,
                        dst_port: dp,
                        ..Default::default()
                    })
                } else {
                    L4::Udp { src_port: sp, dst_port: dp }
                },
                payload: &[],
                payload_wire_len: 0,
            };
            let (k1, f1) = FlowKey::of(&packet(src, dst, sp, dp), obs, vlan_in_key);
            let (k2, f2) = FlowKey::of(&packet(dst, src, dp, sp), obs, vlan_in_key);
            proptest::prop_assert_eq!(k1, k2);
            if (src, sp) != (dst, dp) {
                proptest::prop_assert_ne!(f1, f2);
            }
            let proto = if tcp { 6 } else { 17 };
            proptest::prop_assert_eq!(
                symmetric_hash(&src, &dst, sp, dp, proto),
                symmetric_hash(&dst, &src, dp, sp, proto)
            );
        }
    }
}
