//! The symmetric flow key: both directions of a conversation map to one key.

use std::net::IpAddr;

use crate::packet::{Packet, TunnelId};

/// Five-tuple plus where it was observed. The two endpoints are stored in a canonical
/// order (`a` <= `b`), so a packet and its reply produce the same key.
///
/// The addresses are kept as plain 128-bit numbers with a family flag rather than as
/// `IpAddr`s: the key is built, hashed and compared for every packet, and integers do
/// that in a few instructions where the enum goes field by field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowKey {
    /// Observation point: interface index or mirror tag the packet was captured at.
    pub obs: u32,
    pub vlan: u16,
    pub tunnel: TunnelId,
    pub proto: u8,
    pub a_port: u16,
    pub b_port: u16,
    /// Whether `a` and `b` are IPv6 addresses.
    a6: bool,
    b6: bool,
    /// The addresses as numbers: IPv4 in the low 32 bits, IPv6 in all 128.
    a: u128,
    b: u128,
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
        let head = (self.obs as u64) << 32
            | (self.vlan as u64) << 16
            | (self.tunnel.kind as u64) << 8
            | self.proto as u64;
        let ports = (self.tunnel.id as u64) << 32 | (self.a_port as u64) << 16 | self.b_port as u64;
        h.write_u128((head as u128) << 64 | ports as u128);
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
        (
            FlowKey {
                obs,
                vlan: if vlan_in_key { p.vlan } else { 0 },
                tunnel: p.tunnel,
                proto: p.ip_proto,
                a_port,
                b_port,
                a6: a.v6,
                b6: b.v6,
                a: a.n,
                b: b.n,
            },
            forward,
        )
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
}
