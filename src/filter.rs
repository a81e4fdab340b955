//! Packet filter expressions in the style of tcpdump: `host 10.0.0.1 and tcp port 80`,
//! `not udp`, `net fd00::/8 or vlan 42`, `portrange 8000-8100`.
//!
//! An expression is parsed once into a small tree stored in a vector (no pointers) and
//! evaluated per decoded packet without allocating. Precedence: `not` > `and` > `or`; a
//! value after `or`/`and` with no keyword repeats the last primitive's qualifier, as
//! tcpdump does (`port 80 or 443`).

use std::net::IpAddr;

use crate::packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, Packet};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("filter: {message} at column {column}")]
pub struct FilterError {
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Src,
    Dst,
    Either,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Prim {
    Host(Side, IpAddr),
    Net(Side, IpAddr, u8),
    Port(Side, u16, u16),
    Proto(u8),
    Ip4,
    Ip6,
    Vlan(Option<u16>),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Node {
    Prim(Prim),
    Not(usize),
    And(usize, usize),
    Or(usize, usize),
}

/// A compiled filter. The empty expression matches every packet.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    nodes: Vec<Node>,
    root: Option<usize>,
}

#[derive(Clone, Debug, PartialEq)]
struct Token<'a> {
    text: &'a str,
    column: usize,
}

fn tokenize(s: &str) -> Vec<Token<'_>> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if matches!(c, b'(' | b')' | b'!') {
            out.push(Token {
                text: &s[i..i + 1],
                column: i + 1,
            });
            i += 1;
        } else if (c == b'&' || c == b'|') && b.get(i + 1) == Some(&c) {
            out.push(Token {
                text: &s[i..i + 2],
                column: i + 1,
            });
            i += 2;
        } else {
            let start = i;
            while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'(' | b')' | b'!')
            {
                if (b[i] == b'&' || b[i] == b'|') && b.get(i + 1) == Some(&b[i]) {
                    break;
                }
                i += 1;
            }
            out.push(Token {
                text: &s[start..i],
                column: start + 1,
            });
        }
    }
    out
}

/// The qualifier of the last primitive, for tcpdump's `port 80 or 443` shorthand.
#[derive(Clone, Copy, Debug)]
enum Qual {
    Host(Side),
    Net(Side),
    Port(Side),
    PortRange(Side),
}

struct Parser<'a> {
    toks: Vec<Token<'a>>,
    pos: usize,
    nodes: Vec<Node>,
    last: Option<Qual>,
    end_column: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&str> {
        self.toks.get(self.pos).map(|t| t.text)
    }

    fn column(&self) -> usize {
        self.toks
            .get(self.pos)
            .map_or(self.end_column, |t| t.column)
    }

    fn err(&self, message: impl Into<String>) -> FilterError {
        FilterError {
            column: self.column(),
            message: message.into(),
        }
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn push(&mut self, n: Node) -> usize {
        self.nodes.push(n);
        self.nodes.len() - 1
    }

    fn or(&mut self) -> Result<usize, FilterError> {
        let mut left = self.and()?;
        while matches!(self.peek(), Some("or" | "||")) {
            self.pos += 1;
            let right = self.and()?;
            left = self.push(Node::Or(left, right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<usize, FilterError> {
        let mut left = self.not()?;
        while matches!(self.peek(), Some("and" | "&&")) {
            self.pos += 1;
            let right = self.not()?;
            left = self.push(Node::And(left, right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<usize, FilterError> {
        if matches!(self.peek(), Some("not" | "!")) {
            self.pos += 1;
            let inner = self.not()?;
            return Ok(self.push(Node::Not(inner)));
        }
        if self.peek() == Some("(") {
            self.pos += 1;
            let inner = self.or()?;
            if self.peek() != Some(")") {
                return Err(self.err(format!("expected ')', found {}", self.found())));
            }
            self.pos += 1;
            return Ok(inner);
        }
        let p = self.primitive()?;
        let is_proto = matches!(p, Prim::Proto(_));
        let node = self.push(Node::Prim(p));
        // `tcp port 80`: a protocol directly followed by a qualified primitive means "and".
        if is_proto
            && matches!(
                self.peek(),
                Some("port" | "portrange" | "src" | "dst" | "host" | "net")
            )
        {
            let q = self.primitive()?;
            let q = self.push(Node::Prim(q));
            return Ok(self.push(Node::And(node, q)));
        }
        Ok(node)
    }

    fn found(&self) -> String {
        self.peek()
            .map_or("the end of the expression".into(), |t| format!("'{t}'"))
    }

    fn primitive(&mut self) -> Result<Prim, FilterError> {
        let Some(tok) = self.peek().map(str::to_string) else {
            return Err(self.err("expected a filter primitive, found the end of the expression"));
        };
        let side = match tok.as_str() {
            "src" => Some(Side::Src),
            "dst" => Some(Side::Dst),
            _ => None,
        };
        if side.is_some() {
            self.pos += 1;
        }
        let side_or = side.unwrap_or(Side::Either);
        let kw = self.peek().map(str::to_string).unwrap_or_default();
        let prim = match kw.as_str() {
            "host" => {
                self.pos += 1;
                self.last = Some(Qual::Host(side_or));
                Prim::Host(side_or, self.addr()?)
            }
            "net" => {
                self.pos += 1;
                self.last = Some(Qual::Net(side_or));
                self.net(side_or)?
            }
            "port" => {
                self.pos += 1;
                self.last = Some(Qual::Port(side_or));
                let p = self.port()?;
                Prim::Port(side_or, p, p)
            }
            "portrange" => {
                self.pos += 1;
                self.last = Some(Qual::PortRange(side_or));
                self.portrange(side_or)?
            }
            _ if side.is_some() => {
                return Err(self.err(format!(
                    "expected 'host', 'net', 'port' or 'portrange' after '{tok}', found {}",
                    self.found()
                )));
            }
            "tcp" | "udp" | "icmp" | "icmp6" => {
                self.pos += 1;
                Prim::Proto(match kw.as_str() {
                    "tcp" => IPPROTO_TCP,
                    "udp" => IPPROTO_UDP,
                    "icmp" => IPPROTO_ICMP,
                    _ => IPPROTO_ICMPV6,
                })
            }
            "ip" | "ip6" => {
                self.pos += 1;
                if kw == "ip" && self.peek() == Some("proto") {
                    self.pos += 1;
                    return Ok(Prim::Proto(self.number::<u8>("a protocol number")?));
                }
                if kw == "ip" { Prim::Ip4 } else { Prim::Ip6 }
            }
            "proto" => {
                self.pos += 1;
                Prim::Proto(self.number::<u8>("a protocol number")?)
            }
            "vlan" => {
                self.pos += 1;
                match self.peek() {
                    Some(t) if t.bytes().all(|c| c.is_ascii_digit()) => {
                        let id = self.number::<u16>("a VLAN id")?;
                        if id > 4095 {
                            return Err(FilterError {
                                column: self.toks[self.pos - 1].column,
                                message: format!("VLAN id {id} is larger than 4095"),
                            });
                        }
                        Prim::Vlan(Some(id))
                    }
                    _ => Prim::Vlan(None),
                }
            }
            _ => {
                // A bare value: an address means `host`; after a qualified primitive it
                // repeats that qualifier (`port 80 or 443`).
                if let Ok(a) = kw.parse::<IpAddr>() {
                    self.pos += 1;
                    return Ok(Prim::Host(Side::Either, a));
                }
                match self.last {
                    Some(Qual::Port(s)) if port_value(&kw).is_some() => {
                        let p = self.port()?;
                        Prim::Port(s, p, p)
                    }
                    Some(Qual::PortRange(s)) => self.portrange(s)?,
                    Some(Qual::Net(s)) if kw.contains('/') => self.net(s)?,
                    Some(Qual::Host(s)) if kw.parse::<IpAddr>().is_ok() => {
                        Prim::Host(s, self.addr()?)
                    }
                    _ => return Err(self.err(format!("unknown filter keyword '{kw}'"))),
                }
            }
        };
        Ok(prim)
    }

    fn number<T: std::str::FromStr>(&mut self, what: &str) -> Result<T, FilterError> {
        let col = self.column();
        let found = self.found();
        let t = self.next().ok_or_else(|| FilterError {
            column: col,
            message: format!("expected {what}, found {found}"),
        })?;
        t.text.parse().map_err(|_| FilterError {
            column: col,
            message: format!("expected {what}, found '{}'", t.text),
        })
    }

    fn addr(&mut self) -> Result<IpAddr, FilterError> {
        self.number("an IP address")
    }

    fn port(&mut self) -> Result<u16, FilterError> {
        let col = self.column();
        let found = self.found();
        let t = self.next().ok_or_else(|| FilterError {
            column: col,
            message: format!("expected a port number, found {found}"),
        })?;
        port_value(t.text).ok_or_else(|| FilterError {
            column: col,
            message: format!(
                "expected a port number (0-65535 or a service name), found '{}'",
                t.text
            ),
        })
    }

    fn portrange(&mut self, side: Side) -> Result<Prim, FilterError> {
        let col = self.column();
        let t = self.next().ok_or_else(|| FilterError {
            column: col,
            message: "expected a port range like 8000-8100".into(),
        })?;
        let (a, b) = t.text.split_once('-').ok_or_else(|| FilterError {
            column: col,
            message: format!("expected a port range like 8000-8100, found '{}'", t.text),
        })?;
        match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(lo), Ok(hi)) if lo <= hi => Ok(Prim::Port(side, lo, hi)),
            _ => Err(FilterError {
                column: col,
                message: format!("invalid port range '{}'", t.text),
            }),
        }
    }

    fn net(&mut self, side: Side) -> Result<Prim, FilterError> {
        let col = self.column();
        let t = self.next().ok_or_else(|| FilterError {
            column: col,
            message: "expected a network like 10.0.0.0/8".into(),
        })?;
        let bad = || FilterError {
            column: col,
            message: format!("expected a network like 10.0.0.0/8, found '{}'", t.text),
        };
        let (a, len) = t.text.split_once('/').ok_or_else(bad)?;
        let addr: IpAddr = a.parse().map_err(|_| bad())?;
        let len: u8 = len.parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(FilterError {
                column: col,
                message: format!("prefix length {len} is longer than {max}"),
            });
        }
        Ok(Prim::Net(side, addr, len))
    }
}

/// A port number or a well-known service name.
fn port_value(s: &str) -> Option<u16> {
    s.parse().ok().or(match s {
        "http" => Some(80),
        "https" => Some(443),
        "dns" | "domain" => Some(53),
        "redis" => Some(6379),
        "mysql" => Some(3306),
        "postgresql" | "postgres" => Some(5432),
        "memcached" => Some(11211),
        "kafka" => Some(9092),
        "mongodb" => Some(27017),
        _ => None,
    })
}

fn in_net(a: &IpAddr, net: &IpAddr, len: u8) -> bool {
    match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - len as u32)
            };
            u32::from(*a) & mask == u32::from(*n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - len as u32)
            };
            u128::from(*a) & mask == u128::from(*n) & mask
        }
        _ => false,
    }
}

impl Filter {
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let toks = tokenize(expr);
        if toks.is_empty() {
            return Ok(Filter::default());
        }
        let mut p = Parser {
            toks,
            pos: 0,
            nodes: Vec::new(),
            last: None,
            end_column: expr.len() + 1,
        };
        let root = p.or()?;
        if p.pos < p.toks.len() {
            return Err(p.err(format!(
                "unexpected {} after a complete expression",
                p.found()
            )));
        }
        Ok(Filter {
            nodes: p.nodes,
            root: Some(root),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_none()
    }

    #[inline]
    pub fn matches(&self, p: &Packet<'_>) -> bool {
        self.root.is_none_or(|r| self.eval(r, p))
    }

    fn eval(&self, i: usize, p: &Packet<'_>) -> bool {
        match &self.nodes[i] {
            Node::Not(a) => !self.eval(*a, p),
            Node::And(a, b) => self.eval(*a, p) && self.eval(*b, p),
            Node::Or(a, b) => self.eval(*a, p) || self.eval(*b, p),
            Node::Prim(prim) => {
                let either = |side: Side, f: &dyn Fn(&IpAddr) -> bool| match side {
                    Side::Src => f(&p.src),
                    Side::Dst => f(&p.dst),
                    Side::Either => f(&p.src) || f(&p.dst),
                };
                match prim {
                    Prim::Host(side, a) => either(*side, &|x| x == a),
                    Prim::Net(side, n, len) => either(*side, &|x| in_net(x, n, *len)),
                    Prim::Port(side, lo, hi) => {
                        if p.ip_proto != IPPROTO_TCP && p.ip_proto != IPPROTO_UDP {
                            return false;
                        }
                        let (sp, dp) = p.ports();
                        let inr = |x: u16| (*lo..=*hi).contains(&x);
                        match side {
                            Side::Src => inr(sp),
                            Side::Dst => inr(dp),
                            Side::Either => inr(sp) || inr(dp),
                        }
                    }
                    Prim::Proto(n) => p.ip_proto == *n,
                    Prim::Ip4 => p.src.is_ipv4(),
                    Prim::Ip6 => p.src.is_ipv6(),
                    Prim::Vlan(None) => p.vlan != 0,
                    Prim::Vlan(Some(id)) => p.vlan == *id,
                }
            }
        }
    }
}

impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Filter::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Decoded, Defragmenter, LinkType, decode};
    use crate::time::Timestamp;
    use etherparse::PacketBuilder;

    fn frame_v4(
        src: [u8; 4],
        dst: [u8; 4],
        tcp: bool,
        sp: u16,
        dp: u16,
        vlan: Option<u16>,
    ) -> Vec<u8> {
        let mut v = Vec::new();
        let eth = PacketBuilder::ethernet2([2; 6], [4; 6]);
        match (vlan, tcp) {
            (Some(id), true) => eth
                .single_vlan(id.try_into().unwrap())
                .ipv4(src, dst, 64)
                .tcp(sp, dp, 1, 1)
                .write(&mut v, b"x"),
            (Some(id), false) => eth
                .single_vlan(id.try_into().unwrap())
                .ipv4(src, dst, 64)
                .udp(sp, dp)
                .write(&mut v, b"x"),
            (None, true) => eth.ipv4(src, dst, 64).tcp(sp, dp, 1, 1).write(&mut v, b"x"),
            (None, false) => eth.ipv4(src, dst, 64).udp(sp, dp).write(&mut v, b"x"),
        }
        .unwrap();
        v
    }

    fn check(expr: &str, frame: &[u8]) -> bool {
        let f = Filter::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        let mut d = Defragmenter::default();
        let Ok(Decoded::Packet(p)) = decode(
            frame,
            LinkType::Ethernet,
            Timestamp(0),
            frame.len() as u32,
            &mut d,
        ) else {
            panic!()
        };
        f.matches(&p)
    }

    #[test]
    fn primitives() {
        let f = frame_v4([10, 0, 0, 1], [10, 1, 2, 3], true, 40000, 80, None);
        for (e, want) in [
            ("", true),
            ("host 10.0.0.1", true),
            ("src host 10.0.0.1", true),
            ("dst host 10.0.0.1", false),
            ("10.1.2.3", true),
            ("net 10.1.0.0/16", true),
            ("dst net 10.0.0.0/24", false),
            ("port 80", true),
            ("port http", true),
            ("src port 80", false),
            ("dst port 80", true),
            ("portrange 79-81", true),
            ("tcp", true),
            ("udp", false),
            ("ip", true),
            ("ip6", false),
            ("ip proto 6", true),
            ("vlan", false),
            ("port 443 or 80", true),
            ("tcp and port 80 and not host 9.9.9.9", true),
        ] {
            assert_eq!(check(e, &f), want, "{e}");
        }
        let v = frame_v4([10, 0, 0, 1], [10, 0, 0, 2], false, 5353, 53, Some(42));
        assert!(check("vlan 42 and udp port domain", &v));
        assert!(!check("vlan 7", &v));
        let mut v6 = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv6([0xfd; 16], [0xfe; 16], 64)
            .udp(1, 2)
            .write(&mut v6, b"")
            .unwrap();
        assert!(check("ip6 and net fd00::/8 and udp", &v6));
        assert!(!check("net fe00::/8 and src port 2", &v6));
    }

    #[test]
    fn precedence() {
        let udp53 = frame_v4([1, 1, 1, 1], [2, 2, 2, 2], false, 1000, 53, None);
        let tcp80 = frame_v4([1, 1, 1, 1], [2, 2, 2, 2], true, 1000, 80, None);
        assert!(!check("not tcp and port 80", &tcp80));
        assert!(
            check("tcp or udp and port 80", &tcp80),
            "and binds tighter than or"
        );
        assert!(!check("(tcp or udp) and port 53", &tcp80));
        assert!(check("(tcp or udp) and port 53", &udp53));
        assert!(check("! tcp && port 53 || port 80", &udp53));
    }

    #[test]
    fn errors_name_the_column_and_token() {
        let e = Filter::parse("port http2").unwrap_err();
        assert_eq!(e.column, 6);
        assert!(e.to_string().contains("'http2'"), "{e}");
        assert!(
            Filter::parse("hots 1.2.3.4")
                .unwrap_err()
                .to_string()
                .contains("unknown filter keyword 'hots'")
        );
        assert!(
            Filter::parse("net 10.0.0.0/33")
                .unwrap_err()
                .to_string()
                .contains("longer than 32")
        );
        assert!(Filter::parse("port 70000").is_err());
        assert!(
            Filter::parse("(tcp")
                .unwrap_err()
                .to_string()
                .contains("expected ')'")
        );
        assert!(
            Filter::parse("tcp udp")
                .unwrap_err()
                .to_string()
                .contains("unexpected 'udp'")
        );
        assert!(Filter::parse("tcp and").is_err());
        assert!(Filter::parse("src tcp").is_err());
        assert!(Filter::parse("vlan 5000").is_err());
    }

    #[test]
    fn negation_is_exact_for_random_expressions() {
        let prims = [
            "tcp",
            "udp",
            "port 80",
            "host 10.0.0.1",
            "net 10.0.0.0/8",
            "vlan",
            "src port 40000",
            "ip",
        ];
        let frames = [
            frame_v4([10, 0, 0, 1], [10, 1, 2, 3], true, 40000, 80, None),
            frame_v4([192, 168, 0, 1], [10, 1, 2, 3], false, 53, 9999, Some(3)),
        ];
        let mut x: u32 = 12345;
        let mut rnd = |n: usize| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as usize % n
        };
        for _ in 0..500 {
            let mut e = prims[rnd(prims.len())].to_string();
            for _ in 0..rnd(4) {
                let op = ["and", "or"][rnd(2)];
                e = format!(
                    "({e}) {op} {}{}",
                    if rnd(2) == 0 { "not " } else { "" },
                    prims[rnd(prims.len())]
                );
            }
            for f in &frames {
                assert_eq!(check(&format!("not ({e})"), f), !check(&e, f), "{e}");
            }
        }
    }

    #[test]
    fn garbage_never_panics() {
        for e in [
            "(((",
            ")",
            "and or",
            "port -",
            "net /",
            "portrange 9-1",
            "!!!",
            "&&",
            "host ::1 and",
            "vlan abc",
        ] {
            let _ = Filter::parse(e);
        }
    }
}
