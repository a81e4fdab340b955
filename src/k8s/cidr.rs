//! CIDR blocks and a longest-prefix-match table for static address maps.

use hashbrown::HashMap;
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IPv4 or IPv6 prefix (`10.0.0.0/8`, `fd00::/64`; a bare address is a /32 or /128).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// The address with the host bits cleared.
    pub addr: IpAddr,
    pub len: u8,
}

impl Cidr {
    pub fn new(addr: IpAddr, len: u8) -> Option<Cidr> {
        let max = max_len(addr);
        (len <= max).then(|| Cidr {
            addr: mask(addr, len),
            len,
        })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.len) == self.addr
    }
}

fn max_len(ip: IpAddr) -> u8 {
    if ip.is_ipv4() { 32 } else { 128 }
}

fn mask(ip: IpAddr, len: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = if len == 0 { 0 } else { u32::MAX << (32 - len) };
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len)
            };
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a CIDR block (want 10.0.0.0/8, fd00::/64 or a bare address)")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let err = || CidrError(s.to_string());
        let (a, l) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().map_err(|_| err())?;
        let len = match l {
            Some(l) => l.trim().parse::<u8>().map_err(|_| err())?,
            None => max_len(addr),
        };
        Cidr::new(addr, len).ok_or_else(err)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Cidr, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Longest-prefix match: one exact-match map per prefix length in use, probed from the
/// longest length down. At most 33 (IPv4) or 129 (IPv6) probes, usually a handful.
#[derive(Clone, Debug)]
pub struct CidrTable<T> {
    maps: HashMap<(bool, u8), HashMap<IpAddr, T>>,
    /// Prefix lengths present, longest first, per family (v4 = true).
    lens_v4: Vec<u8>,
    lens_v6: Vec<u8>,
}

impl<T> Default for CidrTable<T> {
    fn default() -> Self {
        CidrTable {
            maps: HashMap::new(),
            lens_v4: Vec::new(),
            lens_v6: Vec::new(),
        }
    }
}

impl<T> CidrTable<T> {
    /// Insert; an equal prefix inserted earlier is kept (first entry wins).
    pub fn insert(&mut self, c: Cidr, v: T) {
        let v4 = c.addr.is_ipv4();
        let lens = if v4 {
            &mut self.lens_v4
        } else {
            &mut self.lens_v6
        };
        if !lens.contains(&c.len) {
            lens.push(c.len);
            lens.sort_unstable_by(|a, b| b.cmp(a));
        }
        self.maps
            .entry((v4, c.len))
            .or_default()
            .entry(c.addr)
            .or_insert(v);
    }

    pub fn lookup(&self, ip: IpAddr) -> Option<&T> {
        let v4 = ip.is_ipv4();
        let lens = if v4 { &self.lens_v4 } else { &self.lens_v6 };
        lens.iter()
            .find_map(|&len| self.maps.get(&(v4, len))?.get(&mask(ip, len)))
    }

    pub fn is_empty(&self) -> bool {
        self.maps.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_and_masks() {
        let c: Cidr = "10.1.2.3/16".parse().unwrap();
        assert_eq!(c.to_string(), "10.1.0.0/16");
        assert!(c.contains(ip("10.1.255.1")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(!c.contains(ip("::1")));
        assert_eq!("10.0.0.7".parse::<Cidr>().unwrap().len, 32);
        assert_eq!("fd00::1".parse::<Cidr>().unwrap().len, 128);
        assert_eq!("fd00::/8".parse::<Cidr>().unwrap().to_string(), "fd00::/8");
        for bad in ["10.0.0.0/33", "nope", "10.0.0/8", "::/129", "1.2.3.4/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains(ip("8.8.8.8")));
    }

    #[test]
    fn longest_prefix_wins() {
        let mut t = CidrTable::default();
        t.insert("10.0.0.0/8".parse().unwrap(), "eight");
        t.insert("10.1.0.0/16".parse().unwrap(), "sixteen");
        t.insert("10.1.2.3/32".parse().unwrap(), "host");
        t.insert("0.0.0.0/0".parse().unwrap(), "default");
        t.insert("fd00::/8".parse().unwrap(), "v6");
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(&"host"));
        assert_eq!(t.lookup(ip("10.1.2.4")), Some(&"sixteen"));
        assert_eq!(t.lookup(ip("10.9.0.1")), Some(&"eight"));
        assert_eq!(t.lookup(ip("192.168.0.1")), Some(&"default"));
        assert_eq!(t.lookup(ip("fd12::1")), Some(&"v6"));
        assert_eq!(t.lookup(ip("2001:db8::1")), None);
        // The first of two equal prefixes is kept.
        t.insert("10.0.0.0/8".parse().unwrap(), "again");
        assert_eq!(t.lookup(ip("10.9.0.1")), Some(&"eight"));
    }
}
