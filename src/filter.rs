//! Packet filter expressions: the IP subset of pcap-filter (tcpdump's language), compiled
//! once, run per packet.
//!
//! Used by `podtap replay --filter EXPR` and by the config's `capture.filter`. Every
//! expression podtap accepts means what it means to libpcap (tcpdump, pcap-filter(7)), and
//! every expression libpcap refuses podtap refuses too; the tests check both against
//! tcpdump itself. What podtap does not implement is refused with an error naming it.
//!
//! # Grammar
//!
//! ```text
//! expr   := term ( ("and" | "&&" | "or" | "||") (term | id) )*
//! term   := ("not" | "!") term | "(" expr ")" | head id | pname | "vlan" [pnum]
//! head   := [pname] dir [addr] | [pname] addr | [ip | ip6] "proto"
//! pname  := ip | ip6 | tcp | udp | sctp | icmp | icmp6
//! dir    := src | dst | src or dst | dst or src | src and dst | dst and src
//! addr   := host | net | port | portrange
//! id     := VALUE | ("not" | "!") id | "(" pid ")"
//! pid    := (pnum | VALUE | ("not" | "!") id) ( ("and" | "or") id )*
//! pnum   := NUMBER | "(" pnum ")"
//! ```
//!
//! **Precedence.** `and` and `or` have *equal* precedence and group from the left, as in
//! libpcap: `tcp port 5000 or tcp port 80 and host 10.0.0.1` is
//! `(tcp port 5000 or tcp port 80) and host 10.0.0.1`, and `a or b and c` is
//! `(a or b) and c`. `not` binds tightest: `not a and b` is `(not a) and b`. Use
//! parentheses to group otherwise. Keywords are lower case, as in libpcap.
//!
//! **Qualifier inheritance.** After `and`/`or` (and any `not` or `(`), a bare value repeats
//! the qualifiers of the primitive before it: `port 80 or 443` is `port 80 or port 443`,
//! `tcp dst port http or https` repeats `tcp dst port`, `host 10.0.0.1 and not 10.0.0.2`
//! is `host 10.0.0.1 and not host 10.0.0.2`. The qualifiers in force before a parenthesised
//! expression are in force after it (`port 80 or (tcp) and 443` ends in `port 443`), and
//! one qualifier may take a parenthesised group of values (`port (80 or 443)`). Primitives
//! without a value (`tcp`, `icmp`, `vlan`) leave nothing to repeat, so `tcp or 80` is an
//! error, and an expression cannot start with a bare value: `10.0.0.1` must be written
//! `host 10.0.0.1`.
//!
//! **Values** are read as libpcap reads them. Numbers are decimal, `0x` hexadecimal, or
//! octal with a leading 0 (`port 010` is port 8). `host`/`net` take an IPv4 or IPv6
//! address; a dotted IPv4 address with fewer than four parts is a network (`net 10.1` and
//! `host 10.1` are `10.1.0.0/16`), and `net N` shifts a plain number into the first octet
//! (`net 10` is `10.0.0.0/8`). `ADDR/LEN` needs `net` and an address with no bits past the
//! prefix. `port` and `portrange` match TCP, UDP and SCTP ports (never ICMP ids); a
//! service name takes the protocols it has in Debian's `/etc/services`, so `port http` is
//! `tcp port 80` while `port domain` is TCP or UDP 53. After `proto`, a protocol number
//! or an `/etc/protocols` name; a name that is also a keyword needs libpcap's backslash
//! (`proto \tcp`). The built-in name tables (below) are a fixed subset of those files, so
//! a filter means the same on every host; host and network names are never resolved.
//!
//! **Where podtap differs from libpcap by design**: the filter sees the decoded packet, so
//! it applies to the innermost (decapsulated, reassembled) addresses and ports and to the
//! innermost VLAN id. `vlan` therefore does not shift the primitives after it: `port 80`
//! matches tagged and tunnelled packets too, and `tcp and vlan 100` matches tagged TCP
//! (libpcap needs `vlan 100 and tcp`). Protocol tests (`tcp`, `proto 6`) see the transport
//! protocol after IPv6 extension headers and IPsec AH, where libpcap looks past an IPv6
//! fragment header only. Frames that are not IP (ARP, ...) are never analysed, whatever the filter. Refused although libpcap accepts them: host and network
//! names, MAC addresses, a reversed `portrange`, `vlan 0`, protocol numbers above 255,
//! arithmetic (`tcp[13] & 2 != 0`) and the keywords podtap does not implement (`arp`,
//! `ether`, `less`, `gateway`, ...).
//!
//! # Evaluation
//!
//! The expression tree is compiled into a flat, forward-only jump program in the style of
//! classic BPF: each instruction is one primitive test with a target for "true" and one
//! for "false". `and`/`or` short-circuit by construction and `not` costs nothing (it only
//! swaps targets), so evaluation is a tight loop with no allocation, recursion or locks.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::packet::{IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, IPPROTO_UDP, L4, Packet};

const IPPROTO_SCTP: u8 = 132;

/// `Test::Port`'s protocol when a port matches on TCP, UDP and SCTP alike (libpcap's
/// PROTO_UNDEF). 0 is never a port-carrying protocol.
const ANY_L4: u8 = 0;

/// Deepest parenthesis nesting accepted. Parsing recurses once per level, so this bounds
/// stack use for hostile input such as a million `(`.
const MAX_DEPTH: usize = 100;

/// Tallest expression tree accepted. Long runs of one operator stay flat, but each switch
/// between `and` and `or` (which group from the left) adds a level, and compiling and
/// dropping the tree recurse once per level.
const MAX_HEIGHT: usize = 1000;

/// Jump targets that end evaluation. Real targets are instruction indices, always greater
/// than the current one, so the loop in [`Filter::matches`] always terminates.
const ACCEPT: u32 = u32::MAX;
const REJECT: u32 = u32::MAX - 1;

// ---------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------

/// What the parser found where it expected something else.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Found {
    Token(String),
    End,
}

impl fmt::Display for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Found::Token(t) => write!(f, "'{t}'"),
            Found::End => f.write_str("end of input"),
        }
    }
}

/// A filter expression that does not parse. Columns count characters from 1.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("expected {expected} at column {column}, found {found}")]
    Expected {
        expected: String,
        column: usize,
        found: Found,
    },
    #[error(
        "unknown keyword '{token}' at column {column} (expected host, net, port, portrange, \
         proto, src, dst, ip, ip6, tcp, udp, sctp, icmp, icmp6 or vlan){hint}"
    )]
    UnknownKeyword {
        token: String,
        column: usize,
        hint: &'static str,
    },
    #[error(
        "'{token}' at column {column} has no qualifier: write one before it, such as \
         'host', 'net' or 'port' (a bare value only repeats the qualifier of a 'host', \
         'net', 'port', 'portrange' or 'proto' primitive just before it)"
    )]
    NoQualifier { token: String, column: usize },
    #[error("{what} '{token}' at column {column} is not supported by podtap: {reason}")]
    Unsupported {
        what: &'static str,
        token: String,
        column: usize,
        reason: &'static str,
    },
    #[error("invalid {what} '{token}' at column {column}: {reason}")]
    Invalid {
        what: &'static str,
        token: String,
        column: usize,
        reason: String,
    },
    #[error("unbalanced parentheses: '(' at column {column} is never closed")]
    UnclosedParen { column: usize },
    #[error("unbalanced parentheses: ')' at column {column} has no matching '('")]
    UnmatchedParen { column: usize },
    #[error("unexpected character '{ch}' at column {column}{hint}")]
    BadChar {
        ch: char,
        column: usize,
        hint: &'static str,
    },
    #[error("parentheses nested more than {limit} deep at column {column}")]
    TooDeep { limit: usize, column: usize },
    #[error(
        "expression too deeply nested at column {column}: more than {limit} levels of \
         alternating 'and'/'or', 'not' and parentheses"
    )]
    TooComplex { limit: usize, column: usize },
    #[error("expression too large ({primitives} primitives)")]
    TooLarge { primitives: usize },
}

impl FilterError {
    /// The column (1-based, in characters) the error points at; 0 when it has none.
    pub fn column(&self) -> usize {
        match self {
            FilterError::Expected { column, .. }
            | FilterError::UnknownKeyword { column, .. }
            | FilterError::NoQualifier { column, .. }
            | FilterError::Unsupported { column, .. }
            | FilterError::Invalid { column, .. }
            | FilterError::UnclosedParen { column }
            | FilterError::UnmatchedParen { column }
            | FilterError::BadChar { column, .. }
            | FilterError::TooDeep { column, .. }
            | FilterError::TooComplex { column, .. } => *column,
            FilterError::TooLarge { .. } => 0,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The compiled filter
// ---------------------------------------------------------------------------------------

/// Which address or port of the packet a primitive looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dir {
    Src,
    Dst,
    /// `src or dst`, the default.
    Either,
    /// `src and dst`.
    Both,
}

impl Dir {
    #[inline(always)]
    fn test<T: Copy>(self, src: T, dst: T, f: impl Fn(T) -> bool) -> bool {
        match self {
            Dir::Src => f(src),
            Dir::Dst => f(dst),
            Dir::Either => f(src) || f(dst),
            Dir::Both => f(src) && f(dst),
        }
    }
}

/// One primitive test. Hosts are networks with a full-length mask, and single ports are
/// one-port ranges, so the hot loop has few cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Test {
    /// IP protocol (the final one, after IPv6 extension headers), either family.
    Proto(u8),
    /// The same, IPv4 only (`ip proto`, `icmp`).
    Proto4(u8),
    /// The same, IPv6 only (`ip6 proto`, `icmp6`).
    Proto6(u8),
    Ipv4,
    Ipv6,
    VlanTagged,
    Vlan(u16),
    Net4 {
        dir: Dir,
        addr: u32,
        mask: u32,
    },
    /// The address is split into halves and the mask kept as a prefix length because a
    /// `u128` field would force 16-byte alignment and double the instruction size.
    Net6 {
        dir: Dir,
        len: u8,
        addr: [u64; 2],
    },
    /// Ports of `proto` (TCP, UDP or SCTP), or of any of the three when it is [`ANY_L4`].
    Port {
        dir: Dir,
        proto: u8,
        lo: u16,
        hi: u16,
    },
}

impl Test {
    #[inline(always)]
    fn eval(&self, p: &Packet<'_>) -> bool {
        match *self {
            Test::Proto(n) => p.ip_proto == n,
            Test::Proto4(n) => p.ip_proto == n && p.src.is_ipv4(),
            Test::Proto6(n) => p.ip_proto == n && p.src.is_ipv6(),
            Test::Ipv4 => p.src.is_ipv4(),
            Test::Ipv6 => p.src.is_ipv6(),
            // The decoder reports 0 for untagged frames.
            Test::VlanTagged => p.vlan != 0,
            Test::Vlan(id) => p.vlan == id,
            Test::Net4 { dir, addr, mask } => dir.test(p.src, p.dst, |a| match a {
                IpAddr::V4(a) => a.to_bits() & mask == addr,
                IpAddr::V6(_) => false,
            }),
            Test::Net6 { dir, len, addr } => {
                let net = (u128::from(addr[0]) << 64) | u128::from(addr[1]);
                dir.test(p.src, p.dst, |a| match a {
                    // Equal in the top `len` bits; a shift by 128 (len 0) means "any".
                    IpAddr::V6(a) => (a.to_bits() ^ net)
                        .checked_shr(128 - u32::from(len.min(128)))
                        .is_none_or(|d| d == 0),
                    IpAddr::V4(_) => false,
                })
            }
            Test::Port { dir, proto, lo, hi } => {
                // Not `Packet::ports()`: that reports ICMP echo ids as ports, and libpcap's
                // `port` never matches ICMP. It does match SCTP, whose header the decoder
                // leaves at the start of the payload.
                let any = proto == ANY_L4;
                let (s, d) = match p.l4 {
                    L4::Tcp(t) if any || proto == IPPROTO_TCP => (t.src_port, t.dst_port),
                    L4::Udp { src_port, dst_port } if any || proto == IPPROTO_UDP => {
                        (src_port, dst_port)
                    }
                    L4::Other if p.ip_proto == IPPROTO_SCTP && (any || proto == IPPROTO_SCTP) => {
                        match *p.payload {
                            [a, b, c, d, ..] => {
                                (u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d]))
                            }
                            _ => return false,
                        }
                    }
                    _ => return false,
                };
                dir.test(s, d, |x| lo <= x && x <= hi)
            }
        }
    }
}

/// A test and where to go next: an instruction index (always forward), ACCEPT or REJECT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Insn {
    test: Test,
    jt: u32,
    jf: u32,
}

/// A parsed packet filter. Cheap to evaluate from many threads at once (`Sync`, immutable).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Filter {
    expr: Box<str>,
    /// Empty for an empty expression, which matches everything.
    prog: Box<[Insn]>,
}

impl Filter {
    /// Parse an expression. An empty (or all-whitespace) expression matches every packet.
    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let (toks, end_col) = tokenize(expr)?;
        if toks.is_empty() {
            return Ok(Filter {
                expr: expr.into(),
                prog: Box::default(),
            });
        }
        let mut p = Parser {
            toks,
            pos: 0,
            end_col,
            depth: 0,
            carry: None,
        };
        let tree = p.parse_expr()?;
        if let Some(t) = p.peek() {
            return Err(match t.kind {
                TokKind::RParen => FilterError::UnmatchedParen { column: t.col },
                // `ip broadcast`, `net 10.0.0.0 mask 255.0.0.0`: name what is missing.
                TokKind::Word if classify_word(t.text) == WordClass::Unsupported => {
                    unsupported_keyword(t)
                }
                _ => FilterError::Expected {
                    expected: "'and', 'or' or end of input".into(),
                    column: t.col,
                    found: Found::Token(t.text.into()),
                },
            });
        }
        let node = tree.node;
        let primitives = node.leaves();
        if primitives >= REJECT as usize {
            return Err(FilterError::TooLarge { primitives });
        }
        let mut prog = Vec::with_capacity(primitives);
        compile(&node, ACCEPT, REJECT, &mut prog);
        Ok(Filter {
            expr: expr.into(),
            prog: prog.into_boxed_slice(),
        })
    }

    /// Whether the packet passes the filter. Inlined: with no filter (the usual case) a
    /// packet costs one test, where the call cost a dozen instructions.
    #[inline(always)]
    pub fn matches(&self, p: &Packet<'_>) -> bool {
        self.prog.is_empty() || self.run(p)
    }

    #[inline(never)]
    fn run(&self, p: &Packet<'_>) -> bool {
        let prog = &self.prog[..];
        let mut pc = 0usize;
        loop {
            // `get` rather than indexing: compile() only emits valid targets, but a filter
            // must never be able to panic the capture path.
            let Some(insn) = prog.get(pc) else {
                return false;
            };
            let next = if insn.test.eval(p) { insn.jt } else { insn.jf };
            match next {
                ACCEPT => return true,
                REJECT => return false,
                n => pc = n as usize,
            }
        }
    }

    /// The expression as written.
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    /// True when the filter accepts every packet (the expression was empty), so callers
    /// can skip calling [`Filter::matches`].
    pub fn is_match_all(&self) -> bool {
        self.prog.is_empty()
    }
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("expr", &self.expr)
            .field("insns", &self.prog.len())
            .finish()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

impl FromStr for Filter {
    type Err = FilterError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Filter::parse(s)
    }
}

/// A filter deserializes from its expression string, so it can sit in a config struct; a
/// parse error becomes a serde error carrying the parser's message.
impl<'de> serde::Deserialize<'de> for Filter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Filter;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a packet filter expression string")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Filter, E> {
                Filter::parse(s).map_err(|e| E::custom(format_args!("bad filter: {e}")))
            }
        }
        d.deserialize_str(V)
    }
}

// ---------------------------------------------------------------------------------------
// Compiling the tree to a jump program
// ---------------------------------------------------------------------------------------

/// The parsed expression. Runs of one operator are n-ary so that a long flat chain does
/// not become a deep tree (which would make `compile` and `Drop` recurse deeply).
#[derive(Debug)]
enum Node {
    Leaf(Test),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

impl Node {
    /// Each leaf compiles to exactly one instruction, so this is the code size.
    fn leaves(&self) -> usize {
        match self {
            Node::Leaf(_) => 1,
            Node::And(v) | Node::Or(v) => v.iter().map(Node::leaves).sum(),
            Node::Not(n) => n.leaves(),
        }
    }
}

/// Emit `node` so that it continues at `jt` when true and `jf` when false. Because a
/// subtree's size is known in advance (`leaves`), the start of the next sibling is known
/// before emitting, and every jump points forward.
fn compile(node: &Node, jt: u32, jf: u32, prog: &mut Vec<Insn>) {
    match node {
        Node::Leaf(test) => prog.push(Insn {
            test: *test,
            jt,
            jf,
        }),
        Node::Not(n) => compile(n, jf, jt, prog),
        Node::And(items) | Node::Or(items) => {
            let is_and = matches!(node, Node::And(_));
            let Some((last, init)) = items.split_last() else {
                return;
            };
            for n in init {
                // Fits: parse() checked the total size against REJECT.
                let next = (prog.len() + n.leaves()) as u32;
                if is_and {
                    compile(n, next, jf, prog);
                } else {
                    compile(n, jt, next, prog);
                }
            }
            compile(last, jt, jf, prog);
        }
    }
}

/// A parsed subexpression and the height of its tree, kept under [`MAX_HEIGHT`].
struct Tree {
    node: Node,
    height: usize,
}

impl Tree {
    fn leaf(test: Test) -> Tree {
        Tree {
            node: Node::Leaf(test),
            height: 1,
        }
    }
}

// ---------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokKind {
    LParen,
    RParen,
    Not,
    And,
    Or,
    Word,
}

#[derive(Clone, Copy, Debug)]
struct Tok<'a> {
    kind: TokKind,
    text: &'a str,
    /// 1-based character column, for error messages.
    col: usize,
}

/// libpcap's whitespace. Other spaces (a no-break space pasted from a web page) are
/// errors there, so they are errors here rather than quietly splitting words.
fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Where a word ends. A word escaped with '\' (`proto \tcp`) runs on through '&' and
/// '|', as libpcap's scanner reads it.
fn ends_word(c: char, escaped: bool) -> bool {
    is_space(c) || matches!(c, '(' | ')' | '!') || (!escaped && matches!(c, '&' | '|'))
}

fn bad_char(ch: char, column: usize) -> FilterError {
    FilterError::BadChar {
        ch,
        column,
        hint: if ch.is_whitespace() {
            " (only ASCII spaces, tabs and newlines separate words)"
        } else {
            ""
        },
    }
}

/// Characters of libpcap's byte and arithmetic expressions, which podtap does not
/// implement (none can be part of a value podtap accepts).
fn is_arithmetic(c: char) -> bool {
    matches!(c, '[' | ']' | '<' | '>' | '=' | '+' | '*' | '%' | '^')
}

fn arithmetic(c: char, column: usize) -> FilterError {
    FilterError::Unsupported {
        what: "character",
        token: c.into(),
        column,
        reason: "tcpdump's byte and arithmetic expressions (tcp[13] & 2 != 0, len > 100) \
                 are not implemented",
    }
}

/// Split into tokens. A word is any run of printable ASCII other than whitespace and the
/// operator characters, so addresses (`fd00::1`), networks (`10.0.0.0/8`) and port
/// ranges (`1-1024`) are single words, classified later the way libpcap's scanner would.
/// Also returns the column just past the end, where "found end of input" points.
fn tokenize(s: &str) -> Result<(Vec<Tok<'_>>, usize), FilterError> {
    let mut toks = Vec::new();
    let mut chars = s.char_indices().peekable();
    let mut col = 0usize;
    while let Some((i, c)) = chars.next() {
        col += 1;
        let start_col = col;
        let mut end = i + c.len_utf8();
        let kind = match c {
            c if is_space(c) => continue,
            '(' => TokKind::LParen,
            ')' => TokKind::RParen,
            '!' => TokKind::Not,
            '&' | '|' => {
                if chars.peek().map(|&(_, n)| n) != Some(c) {
                    return Err(FilterError::BadChar {
                        ch: c,
                        column: start_col,
                        hint: if c == '&' {
                            " (use '&&' or 'and')"
                        } else {
                            " (use '||' or 'or')"
                        },
                    });
                }
                chars.next();
                col += 1;
                end += 1;
                if c == '&' { TokKind::And } else { TokKind::Or }
            }
            c if !c.is_ascii_graphic() => return Err(bad_char(c, start_col)),
            c if is_arithmetic(c) => return Err(arithmetic(c, start_col)),
            _ => {
                let escaped = c == '\\';
                while let Some(&(j, n)) = chars.peek() {
                    if ends_word(n, escaped) {
                        break;
                    }
                    if !n.is_ascii_graphic() {
                        return Err(bad_char(n, col + 1));
                    }
                    if !escaped && is_arithmetic(n) {
                        return Err(arithmetic(n, col + 1));
                    }
                    chars.next();
                    col += 1;
                    end = j + n.len_utf8();
                }
                // The word operators are operators wherever they appear; like every
                // keyword, only in lower case.
                match s.get(i..end).unwrap_or_default() {
                    "and" => TokKind::And,
                    "or" => TokKind::Or,
                    "not" => TokKind::Not,
                    _ => TokKind::Word,
                }
            }
        };
        toks.push(Tok {
            kind,
            text: s.get(i..end).unwrap_or_default(),
            col: start_col,
        });
    }
    Ok((toks, col + 1))
}

/// The keywords podtap implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    Host,
    Net,
    Port,
    PortRange,
    Proto,
    Src,
    Dst,
    Ip,
    Ip6,
    Tcp,
    Udp,
    Sctp,
    Icmp,
    Icmp6,
    Vlan,
}

fn keyword(w: &str) -> Option<Kw> {
    Some(match w {
        "host" => Kw::Host,
        "net" => Kw::Net,
        "port" => Kw::Port,
        "portrange" => Kw::PortRange,
        "proto" => Kw::Proto,
        "src" => Kw::Src,
        "dst" => Kw::Dst,
        "ip" => Kw::Ip,
        "ip6" => Kw::Ip6,
        "tcp" => Kw::Tcp,
        "udp" => Kw::Udp,
        "sctp" => Kw::Sctp,
        "icmp" => Kw::Icmp,
        "icmp6" => Kw::Icmp6,
        "vlan" => Kw::Vlan,
        _ => return None,
    })
}

/// pcap-filter's other reserved words. They are keywords to libpcap, so never a value
/// here either (`port arp` is not a service name), and refused by name.
const OTHER_PCAP_KEYWORDS: &[&str] = &[
    "link",
    "ether",
    "ppp",
    "slip",
    "fddi",
    "tr",
    "wlan",
    "arp",
    "rarp",
    "igmp",
    "igrp",
    "pim",
    "vrrp",
    "carp",
    "radio",
    "ah",
    "esp",
    "atalk",
    "aarp",
    "decnet",
    "lat",
    "sca",
    "moprc",
    "mopdl",
    "iso",
    "esis",
    "es-is",
    "isis",
    "is-is",
    "l1",
    "l2",
    "iih",
    "lsp",
    "snp",
    "csnp",
    "psnp",
    "clnp",
    "stp",
    "ipx",
    "netbeui",
    "mask",
    "protochain",
    "gateway",
    "type",
    "subtype",
    "direction",
    "dir",
    "address1",
    "addr1",
    "address2",
    "addr2",
    "address3",
    "addr3",
    "address4",
    "addr4",
    "ra",
    "ta",
    "less",
    "greater",
    "byte",
    "broadcast",
    "multicast",
    "len",
    "length",
    "inbound",
    "outbound",
    "ifindex",
    "mpls",
    "pppoed",
    "pppoes",
    "geneve",
    "vxlan",
    "lane",
    "llc",
    "metac",
    "bcc",
    "oam",
    "oamf4",
    "oamf4ec",
    "oamf4sc",
    "sc",
    "ilmic",
    "vpi",
    "vci",
    "connectmsg",
    "metaconnect",
    "on",
    "ifname",
    "rset",
    "ruleset",
    "rnr",
    "rulenum",
    "srnr",
    "subrulenum",
    "reason",
    "action",
    "fisu",
    "lssu",
    "lsu",
    "msu",
    "hfisu",
    "hlssu",
    "hmsu",
    "sio",
    "opc",
    "dpc",
    "sls",
    "hsio",
    "hopc",
    "hdpc",
    "hsls",
];

/// A word as libpcap's scanner classifies it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WordClass {
    Kw(Kw),
    /// A pcap-filter keyword podtap does not implement.
    Unsupported,
    /// Anything else: a number, address, network, port range or name.
    Value,
}

fn classify_word(w: &str) -> WordClass {
    if let Some(k) = keyword(w) {
        WordClass::Kw(k)
    } else if OTHER_PCAP_KEYWORDS.contains(&w) {
        WordClass::Unsupported
    } else {
        WordClass::Value
    }
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

/// The protocol qualifier of a primitive (`tcp` in `tcp port 80`); `Default` when none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pq {
    Default,
    Ip,
    Ip6,
    Tcp,
    Udp,
    Sctp,
}

impl Pq {
    fn name(self) -> &'static str {
        match self {
            Pq::Default => "",
            Pq::Ip => "ip",
            Pq::Ip6 => "ip6",
            Pq::Tcp => "tcp",
            Pq::Udp => "udp",
            Pq::Sctp => "sctp",
        }
    }

    /// The IP protocol a `port` with this qualifier matches.
    fn l4(self) -> u8 {
        match self {
            Pq::Tcp => IPPROTO_TCP,
            Pq::Udp => IPPROTO_UDP,
            Pq::Sctp => IPPROTO_SCTP,
            Pq::Default | Pq::Ip | Pq::Ip6 => ANY_L4,
        }
    }
}

/// The address qualifier: what kind of value follows. `Default` after a bare direction
/// (`src 10.0.0.1`), where libpcap reads the value as a host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addr {
    Default,
    Host,
    Net,
    Port,
    PortRange,
    Proto,
}

impl Addr {
    fn noun(self) -> &'static str {
        match self {
            Addr::Default | Addr::Host => "an IP address",
            Addr::Net => "a network (ADDR/LEN)",
            Addr::Port => "a port number",
            Addr::PortRange => "a port range (N-M)",
            Addr::Proto => "a protocol number or name",
        }
    }
}

/// The qualifiers of a primitive (libpcap's `struct qual`), remembered so that a bare value
/// after an operator can repeat them.
#[derive(Clone, Copy, Debug)]
struct Qual<'a> {
    proto: Pq,
    dir: Dir,
    addr: Addr,
    /// The keyword that introduced the value, and its column, for error messages: `port`,
    /// or `src` in `src 10.0.0.1`.
    kw: &'a str,
    kw_col: usize,
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
    end_col: usize,
    /// Parentheses open at the current position.
    depth: usize,
    /// The qualifiers a bare value after the next operator repeats: those of the last
    /// primitive, or None after one without a value (`tcp`, `vlan`) and at the start.
    carry: Option<Qual<'a>>,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<Tok<'a>> {
        self.toks.get(self.pos).copied()
    }

    fn peek_at(&self, ahead: usize) -> Option<Tok<'a>> {
        self.toks.get(self.pos.saturating_add(ahead)).copied()
    }

    fn next(&mut self) -> Option<Tok<'a>> {
        let t = self.peek();
        if t.is_some() {
            self.pos += 1;
        }
        t
    }

    /// The keyword of the next token, if it is one.
    fn peek_kw(&self) -> Option<Kw> {
        self.peek()
            .filter(|t| t.kind == TokKind::Word)
            .and_then(|t| keyword(t.text))
    }

    fn found(&self, t: Option<Tok<'_>>) -> (usize, Found) {
        match t {
            Some(t) => (t.col, Found::Token(t.text.into())),
            None => (self.end_col, Found::End),
        }
    }

    fn expected(&self, expected: String, t: Option<Tok<'_>>) -> FilterError {
        let (column, found) = self.found(t);
        FilterError::Expected {
            expected,
            column,
            found,
        }
    }

    /// The token before the current one, for "expected ... after 'X'".
    fn prev(&self) -> Option<Tok<'a>> {
        self.pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .copied()
    }

    /// Enter the parentheses opened by `t` (already consumed).
    fn open(&mut self, t: Tok<'a>) -> Result<(), FilterError> {
        if self.depth >= MAX_DEPTH {
            return Err(FilterError::TooDeep {
                limit: MAX_DEPTH,
                column: t.col,
            });
        }
        self.depth += 1;
        Ok(())
    }

    /// Leave the parentheses opened by `open`: the next token must close them.
    fn close(&mut self, open: Tok<'a>, expected: &str) -> Result<(), FilterError> {
        match self.next() {
            Some(c) if c.kind == TokKind::RParen => {
                self.depth -= 1;
                Ok(())
            }
            None => Err(FilterError::UnclosedParen { column: open.col }),
            other => Err(self.expected(expected.into(), other)),
        }
    }

    fn check_height(height: usize, column: usize) -> Result<(), FilterError> {
        if height > MAX_HEIGHT {
            return Err(FilterError::TooComplex {
                limit: MAX_HEIGHT,
                column,
            });
        }
        Ok(())
    }

    /// `a OP b`, flattened into `a`'s node when that is already a run of `OP`.
    fn join(op: Tok<'a>, a: Tree, b: Tree) -> Result<Tree, FilterError> {
        let is_and = op.kind == TokKind::And;
        let (node, height) = match a.node {
            Node::And(mut v) if is_and => {
                v.push(b.node);
                (Node::And(v), a.height.max(b.height + 1))
            }
            Node::Or(mut v) if !is_and => {
                v.push(b.node);
                (Node::Or(v), a.height.max(b.height + 1))
            }
            n => {
                let v = vec![n, b.node];
                let node = if is_and { Node::And(v) } else { Node::Or(v) };
                (node, a.height.max(b.height) + 1)
            }
        };
        Self::check_height(height, op.col)?;
        Ok(Tree { node, height })
    }

    fn negate(t: Tree, column: usize) -> Result<Tree, FilterError> {
        Self::check_height(t.height + 1, column)?;
        Ok(Tree {
            node: Node::Not(Box::new(t.node)),
            height: t.height + 1,
        })
    }

    /// `expr`: terms and bare values joined by `and`/`or`, which have equal precedence and
    /// group from the left.
    fn parse_expr(&mut self) -> Result<Tree, FilterError> {
        let mut acc = self.parse_term()?;
        while let Some(op) = self
            .peek()
            .filter(|t| matches!(t.kind, TokKind::And | TokKind::Or))
        {
            self.pos += 1;
            let rhs = match self.value_ahead() {
                Some(v) => match self.carry {
                    Some(q) => self.parse_id(q, true)?,
                    None => return Err(no_qualifier(v)),
                },
                None => self.parse_term()?,
            };
            acc = Self::join(op, acc, rhs)?;
        }
        Ok(acc)
    }

    /// After an operator: the value when what follows (past any `not` and `(`) is a bare
    /// value, which libpcap reads with the carried qualifiers, rather than a primitive.
    fn value_ahead(&self) -> Option<Tok<'a>> {
        self.toks
            .get(self.pos..)?
            .iter()
            .find(|t| !matches!(t.kind, TokKind::Not | TokKind::LParen))
            .filter(|t| t.kind == TokKind::Word && classify_word(t.text) == WordClass::Value)
            .copied()
    }

    /// `term`. Negations are counted in a loop, not recursed into, so `not not ... x` of
    /// any length is safe.
    fn parse_term(&mut self) -> Result<Tree, FilterError> {
        let mut negate = None;
        while self.peek().is_some_and(|t| t.kind == TokKind::Not) {
            let t = self.next();
            negate = if negate.is_some() { None } else { t };
        }
        let prev = self.prev();
        let t = self.next();
        let tree = match t {
            Some(t) if t.kind == TokKind::Word => self.parse_primitive(t)?,
            Some(t) if t.kind == TokKind::LParen => {
                self.open(t)?;
                // The qualifiers in force before the parentheses are in force inside them
                // and again after them (libpcap's `paren expr ')'`).
                let before = self.carry;
                let inner = self.parse_expr()?;
                self.close(t, "'and', 'or' or ')'")?;
                self.carry = before;
                inner
            }
            _ => {
                let expected = match prev {
                    Some(p) => format!("an expression after '{}'", p.text),
                    None => "an expression".into(),
                };
                return Err(self.expected(expected, t));
            }
        };
        match negate {
            Some(n) => Self::negate(tree, n.col),
            None => Ok(tree),
        }
    }

    /// A primitive starting with the word `t` (already consumed).
    fn parse_primitive(&mut self, t: Tok<'a>) -> Result<Tree, FilterError> {
        let kw = match classify_word(t.text) {
            WordClass::Kw(kw) => kw,
            WordClass::Unsupported => return Err(unsupported_keyword(t)),
            WordClass::Value => return Err(no_qualifier(t)),
        };
        // A protocol name qualifies the primitive when a direction or a type follows
        // (`tcp dst port 80`), and is a primitive of its own otherwise.
        let (pq, alone) = match kw {
            Kw::Ip => (Pq::Ip, Test::Ipv4),
            Kw::Ip6 => (Pq::Ip6, Test::Ipv6),
            Kw::Tcp => (Pq::Tcp, Test::Proto(IPPROTO_TCP)),
            Kw::Udp => (Pq::Udp, Test::Proto(IPPROTO_UDP)),
            Kw::Sctp => (Pq::Sctp, Test::Proto(IPPROTO_SCTP)),
            Kw::Src | Kw::Dst | Kw::Host | Kw::Net | Kw::Port | Kw::PortRange | Kw::Proto => {
                self.pos -= 1;
                return self.parse_head(Pq::Default, None);
            }
            // Never qualifiers (libpcap refuses `icmp host ...` and the like).
            Kw::Icmp => (Pq::Default, Test::Proto4(IPPROTO_ICMP)),
            Kw::Icmp6 => (Pq::Default, Test::Proto6(IPPROTO_ICMPV6)),
            Kw::Vlan => {
                self.carry = None;
                return Ok(Tree::leaf(self.parse_vlan()?));
            }
        };
        if pq != Pq::Default
            && matches!(
                self.peek_kw(),
                Some(Kw::Src | Kw::Dst | Kw::Host | Kw::Net | Kw::Port | Kw::PortRange | Kw::Proto)
            )
        {
            return self.parse_head(pq, Some(t));
        }
        // Nothing for a bare value after it to repeat.
        self.carry = None;
        Ok(Tree::leaf(alone))
    }

    /// After `vlan`: the id if one follows (a number, maybe in parentheses), else "tagged".
    fn parse_vlan(&mut self) -> Result<Test, FilterError> {
        match self.peek() {
            Some(n)
                if n.kind == TokKind::LParen
                    || (n.kind == TokKind::Word
                        && n.text.starts_with(|c: char| c.is_ascii_digit())) =>
            {
                let t = self.parse_pnum("a VLAN id", "')'")?;
                Ok(Test::Vlan(parse_vlan_id(t)?))
            }
            _ => Ok(Test::VlanTagged),
        }
    }

    /// libpcap's `pnum`: a number word, possibly in parentheses; returns the word.
    /// `closing` is what a missing ')' is reported as.
    fn parse_pnum(&mut self, noun: &str, closing: &str) -> Result<Tok<'a>, FilterError> {
        match self.next() {
            Some(t) if t.kind == TokKind::LParen => {
                self.open(t)?;
                let n = self.parse_pnum(noun, closing)?;
                self.close(t, closing)?;
                Ok(n)
            }
            Some(t) if t.kind == TokKind::Word && is_number(t.text) => Ok(t),
            other => Err(self.expected(format!("{noun} (a number)"), other)),
        }
    }

    /// `head id`: `[pname] [dir] [addr|proto]` and the value(s) they qualify.
    fn parse_head(&mut self, pq: Pq, pq_tok: Option<Tok<'a>>) -> Result<Tree, FilterError> {
        let dir_tok = self.peek();
        let dir = self.parse_dir();
        let (addr, addr_tok) = match self.peek_kw() {
            Some(Kw::Host) => (Addr::Host, self.next()),
            Some(Kw::Net) => (Addr::Net, self.next()),
            Some(Kw::Port) => (Addr::Port, self.next()),
            Some(Kw::PortRange) => (Addr::PortRange, self.next()),
            // `src proto` is not pcap-filter.
            Some(Kw::Proto) if dir.is_none() => (Addr::Proto, self.next()),
            _ => (Addr::Default, None),
        };
        let Some(kw_tok) = addr_tok.or(dir.and(dir_tok)) else {
            return Err(self.expected(
                "'host', 'net', 'port', 'portrange' or 'proto'".into(),
                self.peek(),
            ));
        };
        // Which qualifiers combine does not depend on the value: refuse early, pointing
        // at the qualifier, what libpcap refuses for every value.
        let allowed = match pq {
            Pq::Tcp | Pq::Udp | Pq::Sctp => matches!(addr, Addr::Port | Addr::PortRange),
            Pq::Ip | Pq::Ip6 => !matches!(addr, Addr::Port | Addr::PortRange),
            Pq::Default => true,
        };
        if !allowed {
            let what = if matches!(addr, Addr::Port | Addr::PortRange) {
                "'host', 'net' or 'proto'"
            } else {
                "'port' or 'portrange'"
            };
            let at = if addr == Addr::Default {
                self.peek()
            } else {
                Some(kw_tok)
            };
            let pt = pq_tok.map_or(pq.name(), |t| t.text);
            return Err(self.expected(format!("{what} after '{pt}'"), at));
        }
        let q = Qual {
            proto: pq,
            dir: dir.unwrap_or(Dir::Either),
            addr,
            kw: kw_tok.text,
            kw_col: kw_tok.col,
        };
        let tree = self.parse_id(q, false)?;
        self.carry = Some(q);
        Ok(tree)
    }

    /// `src`, `dst`, `src or dst`, `src and dst` (and the same with `dst` first).
    fn parse_dir(&mut self) -> Option<Dir> {
        let first = match self.peek_kw() {
            Some(Kw::Src) => Kw::Src,
            Some(Kw::Dst) => Kw::Dst,
            _ => return None,
        };
        self.pos += 1;
        let other = if first == Kw::Src { Kw::Dst } else { Kw::Src };
        // After `src` only a type or a value can follow, so `src or dst` is unambiguous.
        if let (Some(op), Some(second)) = (self.peek(), self.peek_at(1))
            && matches!(op.kind, TokKind::Or | TokKind::And)
            && second.kind == TokKind::Word
            && keyword(second.text) == Some(other)
        {
            self.pos += 2;
            return Some(if op.kind == TokKind::Or {
                Dir::Either
            } else {
                Dir::Both
            });
        }
        Some(if first == Kw::Src { Dir::Src } else { Dir::Dst })
    }

    /// libpcap's `id`: a value, `not id`, or a parenthesised group of values, all read
    /// with the qualifiers `q`. `carried` when `q` is repeated from an earlier primitive,
    /// which error messages say so the user sees why a value was read that way.
    fn parse_id(&mut self, q: Qual<'a>, carried: bool) -> Result<Tree, FilterError> {
        let mut negate = None;
        while self.peek().is_some_and(|t| t.kind == TokKind::Not) {
            let t = self.next();
            negate = if negate.is_some() { None } else { t };
        }
        let tree = match self.next() {
            Some(t) if t.kind == TokKind::Word => self.value(q, t, carried)?,
            Some(t) if t.kind == TokKind::LParen => {
                self.open(t)?;
                let inner = self.parse_pid(q, carried)?;
                self.close(t, "'and', 'or' or ')'")?;
                inner
            }
            other => {
                let noun = if q.addr == Addr::Default {
                    "'host', 'net', 'port', 'portrange' or an address"
                } else {
                    q.addr.noun()
                };
                return Err(self.expected(format!("{noun} {}", context(q, carried)), other));
            }
        };
        match negate {
            Some(n) => Self::negate(tree, n.col),
            None => Ok(tree),
        }
    }

    /// libpcap's `pid`, inside `( )` after a qualifier: values joined by `and`/`or`. As
    /// in libpcap's grammar, the first may be a parenthesised number but not a
    /// parenthesised group.
    fn parse_pid(&mut self, q: Qual<'a>, carried: bool) -> Result<Tree, FilterError> {
        let mut acc = if self.peek().is_some_and(|t| t.kind == TokKind::LParen) {
            let n = self.parse_pnum(
                q.addr.noun(),
                "')' (a group of values cannot start with a parenthesised group)",
            )?;
            self.value(q, n, carried)?
        } else {
            self.parse_id(q, carried)?
        };
        while let Some(op) = self
            .peek()
            .filter(|t| matches!(t.kind, TokKind::And | TokKind::Or))
        {
            self.pos += 1;
            let rhs = self.parse_id(q, carried)?;
            acc = Self::join(op, acc, rhs)?;
        }
        Ok(acc)
    }

    /// The value `v` read with the qualifiers `q`.
    fn value(&self, q: Qual<'a>, v: Tok<'a>, carried: bool) -> Result<Tree, FilterError> {
        let expected = |noun: &str| FilterError::Expected {
            expected: format!("{noun} {}", context(q, carried)),
            column: v.col,
            found: Found::Token(v.text.into()),
        };
        let invalid = |what: &'static str, reason: String| FilterError::Invalid {
            what,
            token: v.text.into(),
            column: v.col,
            reason,
        };
        let noun = q.addr.noun();
        let val = match classify_value(v.text) {
            Ok(val) => val,
            Err(ValueError::Keyword) => return Err(expected(noun)),
            Err(ValueError::Mac) => {
                return Err(FilterError::Unsupported {
                    what: "MAC address",
                    token: v.text.into(),
                    column: v.col,
                    reason: "podtap filters IP packets",
                });
            }
            Err(ValueError::Number(reason)) => return Err(invalid("number", reason)),
            // An ill-formed address after `port` is "not a port", whatever is wrong with it.
            Err(ValueError::Address(..))
                if matches!(q.addr, Addr::Port | Addr::PortRange | Addr::Proto) =>
            {
                return Err(expected(noun));
            }
            Err(ValueError::Address(what, reason)) => return Err(invalid(what, reason)),
        };
        let test = match (q.addr, val) {
            (Addr::Port | Addr::PortRange, Val::Num(n)) => {
                let p =
                    u16::try_from(n).map_err(|_| invalid("port", "ports are 0 to 65535".into()))?;
                port_test(q, p, p, ANY_L4).map_err(|r| invalid("port", r))?
            }
            (Addr::Port, Val::Name(name)) => {
                let Some(&(_, port, l4)) = PORT_NAMES.iter().find(|(n, ..)| *n == name) else {
                    return Err(expected(noun));
                };
                port_test(q, port, port, l4).map_err(|r| invalid("port", r))?
            }
            (Addr::PortRange, Val::Name(s)) => match parse_port_range(s) {
                Ok((lo, hi, l4)) if lo <= hi => {
                    port_test(q, lo, hi, l4).map_err(|r| invalid("port range", r))?
                }
                Ok((lo, hi, _)) => {
                    return Err(invalid(
                        "port range",
                        format!("the start ({lo}) is above the end ({hi})"),
                    ));
                }
                Err(PortError::NotPort) => return Err(expected(noun)),
                Err(PortError::OutOfRange) => {
                    return Err(invalid("port range", "ports are 0 to 65535".into()));
                }
            },
            (Addr::Proto, Val::Num(n)) => {
                let n = u8::try_from(n).map_err(|_| {
                    invalid("protocol number", "protocol numbers are 0 to 255".into())
                })?;
                proto_test(q.proto, n)
            }
            (Addr::Proto, Val::Name(name)) => {
                let Some(&(_, n)) = PROTO_NAMES.iter().find(|(s, _)| *s == name) else {
                    return Err(expected(noun));
                };
                proto_test(q.proto, n)
            }
            (Addr::Port | Addr::PortRange | Addr::Proto, _) => return Err(expected(noun)),
            (Addr::Default | Addr::Host | Addr::Net, val) => {
                let (addr, len) = match val {
                    // A plain number is a whole 32-bit address, except after `net`, where
                    // libpcap shifts it up to the first octet: `net 10` is 10.0.0.0/8.
                    Val::Num(n) => {
                        let n = u32::try_from(n)
                            .map_err(|_| invalid("address", "more than 32 bits".into()))?;
                        if q.addr == Addr::Net {
                            let (a, mask) = promote_net(n);
                            (
                                IpAddr::V4(Ipv4Addr::from_bits(a)),
                                mask.leading_ones() as u8,
                            )
                        } else {
                            (IpAddr::V4(Ipv4Addr::from_bits(n)), 32)
                        }
                    }
                    Val::V4 { addr, bits } => (IpAddr::V4(Ipv4Addr::from_bits(addr)), bits),
                    Val::V6(a) => (IpAddr::V6(a), 128),
                    Val::Cidr(addr, len) => {
                        let max = if addr.is_ipv4() { 32 } else { 128 };
                        // libpcap: "Mask syntax for networks only" (a full-length IPv6
                        // prefix is still a host).
                        if q.addr != Addr::Net && !(addr.is_ipv6() && len == 128) {
                            return Err(invalid(
                                "address",
                                format!("a prefix length needs 'net' ('net {}')", v.text),
                            ));
                        }
                        let len = u8::try_from(len).ok().filter(|&l| u32::from(l) <= max);
                        let Some(len) = len else {
                            return Err(invalid(
                                "network",
                                format!("prefix length {} is longer than {max}", prefix(v.text)),
                            ));
                        };
                        let masked = mask_addr(addr, len);
                        // Bits past the prefix are almost always a typo (`10.0.0.1/8`
                        // for `10.0.0.0/8`): libpcap refuses them, and so does podtap.
                        if masked != addr {
                            return Err(invalid(
                                "network",
                                format!(
                                    "bits set past the /{len} prefix (did you mean \
                                     {masked}/{len}?)"
                                ),
                            ));
                        }
                        (addr, len)
                    }
                    // Host and network names are never resolved.
                    Val::Name(_) => return Err(expected(noun)),
                };
                // `ip host ::1` can never match, and libpcap refuses it.
                let mismatch = match q.proto {
                    Pq::Ip if addr.is_ipv6() => Some(("IPv4", "ip")),
                    Pq::Ip6 if addr.is_ipv4() => Some(("IPv6", "ip6")),
                    _ => None,
                };
                if let Some((want, qual)) = mismatch {
                    return Err(invalid(
                        "address",
                        format!("'{qual}' needs an {want} address"),
                    ));
                }
                net_test(q.dir, addr, len)
            }
        };
        Ok(Tree::leaf(test))
    }
}

fn unsupported_keyword(t: Tok<'_>) -> FilterError {
    FilterError::Unsupported {
        what: "tcpdump keyword",
        token: t.text.into(),
        column: t.col,
        reason: "podtap filters IP packets on addresses, ports, protocols and VLAN ids",
    }
}

/// How an error message describes where a value sits: after its keyword, or repeating it.
fn context(q: Qual<'_>, carried: bool) -> String {
    if carried {
        format!("(repeating '{}' from column {})", q.kw, q.kw_col)
    } else {
        format!("after '{}'", q.kw)
    }
}

/// A bare value where no qualifier is in force: libpcap's syntax error. A word that
/// looks like a name is more likely a misspelt keyword, and is reported as one.
fn no_qualifier(t: Tok<'_>) -> FilterError {
    let token = t.text.to_string();
    if t.text.starts_with(|c: char| c.is_ascii_alphabetic()) {
        let lower = t.text.to_ascii_lowercase();
        let hint = if classify_word(&lower) != WordClass::Value
            || matches!(lower.as_str(), "and" | "or" | "not")
        {
            "; keywords are lower case, as in tcpdump"
        } else {
            ""
        };
        FilterError::UnknownKeyword {
            token,
            column: t.col,
            hint,
        }
    } else {
        FilterError::NoQualifier {
            token,
            column: t.col,
        }
    }
}

/// The port test for `lo..=hi` under qualifiers `q`, where the value itself names the
/// protocol `l4` (a service name known for TCP only, say) or [`ANY_L4`].
fn port_test(q: Qual<'_>, lo: u16, hi: u16, l4: u8) -> Result<Test, String> {
    let want = q.proto.l4();
    let proto = match (want, l4) {
        (w, ANY_L4) => w,
        (ANY_L4, l) => l,
        (w, l) if w == l => w,
        (_, l) => {
            let name = match l {
                IPPROTO_TCP => "TCP",
                IPPROTO_UDP => "UDP",
                _ => "SCTP",
            };
            return Err(format!(
                "it names a {name} port only, so '{}' cannot match it",
                q.proto.name()
            ));
        }
    };
    Ok(Test::Port {
        dir: q.dir,
        proto,
        lo,
        hi,
    })
}

fn proto_test(pq: Pq, n: u8) -> Test {
    match pq {
        Pq::Ip => Test::Proto4(n),
        Pq::Ip6 => Test::Proto6(n),
        // `tcp proto` and the like were refused with their qualifiers.
        Pq::Default | Pq::Tcp | Pq::Udp | Pq::Sctp => Test::Proto(n),
    }
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// A value word, classified as libpcap's scanner and code generator read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Val<'a> {
    /// libpcap's NUM: decimal, 0x hex or 0-octal, saturated past `u32` (still an error
    /// everywhere, but reported against the right range).
    Num(u64),
    /// A dotted IPv4 address of 2 to 4 parts: libpcap shifts the parts to the top of the
    /// address and treats the missing ones as a network (`10.1` is 10.1.0.0/16).
    V4 {
        addr: u32,
        bits: u8,
    },
    V6(Ipv6Addr),
    /// `ADDR/LEN`, LEN not yet checked against the family.
    Cidr(IpAddr, u64),
    /// A name (service, protocol, host), without libpcap's escaping backslash.
    Name(&'a str),
}

enum ValueError {
    /// A keyword where a value belongs.
    Keyword,
    /// A link-layer address, which libpcap's scanner recognises before numbers and names.
    Mac,
    Number(String),
    /// What the value was taken for, and what is wrong with it.
    Address(&'static str, String),
}

fn classify_value(w: &str) -> Result<Val<'_>, ValueError> {
    if let Some(name) = w.strip_prefix('\\') {
        return if name.is_empty() {
            Err(ValueError::Address("name", "nothing after '\\'".into()))
        } else {
            Ok(Val::Name(name))
        };
    }
    if classify_word(w) != WordClass::Value {
        return Err(ValueError::Keyword);
    }
    if let Some((a, len)) = w.split_once('/') {
        let net = |r: String| Err(ValueError::Address("network", r));
        if is_mac(a) {
            return Err(ValueError::Mac);
        }
        let addr = if a.contains(':') {
            match a.parse::<Ipv6Addr>() {
                Ok(a) => IpAddr::V6(a),
                Err(_) => return net(format!("'{a}' is not an IP address")),
            }
        } else if is_number(a) {
            return net(format!(
                "'{a}' is a number: tcpdump needs a dotted address before '/' ({a}.0.0.0/{len})"
            ));
        } else {
            match parse_dotted(a) {
                Some(Ok((addr, _))) => IpAddr::V4(Ipv4Addr::from_bits(addr)),
                Some(Err(r)) => return net(r),
                None if looks_like_address(a) => {
                    return net(format!("'{a}' is not an IP address"));
                }
                None => return Err(ValueError::Address("name", format!("'{w}' is not a value"))),
            }
        };
        return match parse_number(len) {
            Some(Ok(n)) => Ok(Val::Cidr(addr, n)),
            Some(Err(r)) => Err(ValueError::Number(r)),
            None => net(format!("prefix length '{len}' is not a number")),
        };
    }
    if is_mac(w) {
        return Err(ValueError::Mac);
    }
    if let Some(n) = parse_number(w) {
        return n.map(Val::Num).map_err(ValueError::Number);
    }
    if let Some(v4) = parse_dotted(w) {
        return v4
            .map(|(addr, bits)| Val::V4 { addr, bits })
            .map_err(|r| ValueError::Address("address", r));
    }
    if w.contains(':') {
        return w
            .parse::<Ipv6Addr>()
            .map(Val::V6)
            .map_err(|_| ValueError::Address("address", format!("'{w}' is not an IP address")));
    }
    if is_id(w) {
        return Ok(Val::Name(w));
    }
    Err(ValueError::Address(
        "value",
        "not a number, address or name".into(),
    ))
}

/// Whether a word that failed to parse was meant as an address.
fn looks_like_address(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_digit()) || w.contains(':')
}

/// libpcap's `N`: decimal digits, or 0x and hex digits.
fn is_number(s: &str) -> bool {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => !h.is_empty() && h.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// A number the way libpcap's scanner reads one: 0x hex, octal after a leading 0, else
/// decimal. None when `s` is not number-shaped; saturating, so that an absurdly long
/// number is "out of range" against whatever range applies.
fn parse_number(s: &str) -> Option<Result<u64, String>> {
    if !is_number(s) {
        return None;
    }
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => (h, 16),
        None if s.len() > 1 && s.starts_with('0') => (&s[1..], 8),
        None => (s, 10),
    };
    let mut n = 0u64;
    for c in digits.chars() {
        let Some(d) = c.to_digit(radix) else {
            return Some(Err(format!(
                "a leading 0 makes it octal (as in tcpdump), and '{c}' is not an octal digit"
            )));
        };
        n = n
            .saturating_mul(u64::from(radix))
            .saturating_add(u64::from(d));
    }
    Some(Ok(n))
}

/// 2 to 4 dot-separated numbers: libpcap's HID, an IPv4 address or its short network
/// form. Returns the address (missing parts zero) and how many bits were given; None when
/// `s` is not dotted numbers at all. Parts are decimal whatever their leading zeros.
fn parse_dotted(s: &str) -> Option<Result<(u32, u8), String>> {
    let parts = s.split('.').count();
    if !(2..=4).contains(&parts) || !s.split('.').all(is_number) {
        return None;
    }
    let mut addr = 0u32;
    for p in s.split('.') {
        let n = match p.bytes().all(|b| b.is_ascii_digit()) {
            true => p.bytes().try_fold(0u32, |n, b| {
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u32::from(b - b'0')))
                    .filter(|&n| n <= 255)
            }),
            false => None,
        };
        let Some(n) = n else {
            return Some(Err(format!("'{s}' is not an IP address")));
        };
        addr = (addr << 8) | n;
    }
    let bits = 8 * parts as u32;
    Some(Ok((addr << (32 - bits), bits as u8)))
}

/// libpcap's scanner takes these for Ethernet addresses before numbers or IPv4 addresses:
/// six 1-2 digit hex groups joined by ':', '-' or '.', three 4-digit groups joined by
/// '.', or 12 hex digits (`000000000010` is a MAC address, not octal 8).
fn is_mac(s: &str) -> bool {
    let hex = |g: &str, lens: &[usize]| {
        lens.contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit())
    };
    if s.len() == 12 && hex(s, &[12]) {
        return true;
    }
    for sep in [':', '-', '.'] {
        let groups: Vec<&str> = s.split(sep).collect();
        if groups.len() == 6 && groups.iter().all(|g| hex(g, &[1, 2])) {
            return true;
        }
    }
    let groups: Vec<&str> = s.split('.').collect();
    groups.len() == 3 && groups.iter().all(|g| hex(g, &[4]))
}

/// libpcap's ID: a letter or digit, then letters, digits, '-', '_' or '.', not ending in
/// '-' or '_'.
fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    let inner = |c: &u8| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.');
    match (b.first(), b.last()) {
        (Some(f), Some(l)) => {
            f.is_ascii_alphanumeric()
                && (l.is_ascii_alphanumeric() || *l == b'.')
                && b.iter().all(inner)
        }
        _ => false,
    }
}

/// The text after '/' in an `ADDR/LEN` word, for messages.
fn prefix(w: &str) -> &str {
    w.split_once('/').map_or("", |(_, l)| l)
}

/// `net N` with a plain number: libpcap shifts it left a byte at a time until the top
/// byte is set, masking what it shifted in (`net 10` is 10.0.0.0/8; `net 0` stays
/// 0.0.0.0/32).
fn promote_net(n: u32) -> (u32, u32) {
    let (mut v, mut mask) = (n, u32::MAX);
    while v != 0 && v & 0xff00_0000 == 0 {
        v <<= 8;
        mask <<= 8;
    }
    (v, mask)
}

fn parse_vlan_id(t: Tok<'_>) -> Result<u16, FilterError> {
    let invalid = |reason: &str| FilterError::Invalid {
        what: "VLAN id",
        token: t.text.into(),
        column: t.col,
        reason: reason.into(),
    };
    match parse_number(t.text) {
        // 0 is how the decoder reports "untagged", so `vlan 0` could only mislead.
        Some(Ok(0)) => Err(invalid(
            "VLAN ids are 1 to 4095 (use 'not vlan' for untagged)",
        )),
        Some(Ok(n)) if n <= 4095 => Ok(n as u16),
        Some(Ok(_)) => Err(invalid("VLAN ids are 1 to 4095")),
        Some(Err(r)) => Err(invalid(&r)),
        None => Err(invalid("not a number")),
    }
}

enum PortError {
    NotPort,
    OutOfRange,
}

/// Service names: a fixed subset of Debian's `/etc/services` (netbase), names and aliases,
/// each with the port and protocols it has there; [`ANY_L4`] where TCP and UDP share the
/// port, which libpcap then matches on TCP, UDP and SCTP. libpcap looks names up on the
/// host, case-sensitively; a built-in table keeps a filter's meaning the same on every host
/// and never touches the filesystem.
const PORT_NAMES: [(&str, u16, u8); 39] = [
    ("ftp-data", 20, IPPROTO_TCP),
    ("ftp", 21, IPPROTO_TCP),
    ("ssh", 22, IPPROTO_TCP),
    ("telnet", 23, IPPROTO_TCP),
    ("smtp", 25, IPPROTO_TCP),
    ("mail", 25, IPPROTO_TCP),
    ("domain", 53, ANY_L4),
    ("bootps", 67, IPPROTO_UDP),
    ("bootpc", 68, IPPROTO_UDP),
    ("tftp", 69, IPPROTO_UDP),
    ("http", 80, IPPROTO_TCP),
    ("www", 80, IPPROTO_TCP),
    ("kerberos", 88, ANY_L4),
    ("pop3", 110, IPPROTO_TCP),
    ("ntp", 123, IPPROTO_UDP),
    ("imap2", 143, IPPROTO_TCP),
    ("imap", 143, IPPROTO_TCP),
    ("snmp", 161, ANY_L4),
    ("snmp-trap", 162, ANY_L4),
    ("bgp", 179, IPPROTO_TCP),
    ("ldap", 389, ANY_L4),
    ("https", 443, ANY_L4),
    // 514/udp is syslog, 514/tcp is shell with the alias syslog: both, as in libpcap.
    ("syslog", 514, ANY_L4),
    ("ldaps", 636, ANY_L4),
    ("domain-s", 853, ANY_L4),
    ("imaps", 993, IPPROTO_TCP),
    ("pop3s", 995, IPPROTO_TCP),
    ("nfs", 2049, ANY_L4),
    ("mysql", 3306, IPPROTO_TCP),
    ("sip", 5060, ANY_L4),
    ("sip-tls", 5061, ANY_L4),
    ("postgresql", 5432, IPPROTO_TCP),
    ("postgres", 5432, IPPROTO_TCP),
    ("amqps", 5671, IPPROTO_TCP),
    ("amqp", 5672, IPPROTO_TCP),
    ("redis", 6379, IPPROTO_TCP),
    ("http-alt", 8080, IPPROTO_TCP),
    ("webcache", 8080, IPPROTO_TCP),
    ("hkp", 11371, IPPROTO_TCP),
];

/// Protocol names after `proto`: a fixed subset of Debian's `/etc/protocols`, names and
/// aliases. Lower-case names that are also keywords (`tcp`, `esp`) need libpcap's
/// backslash (`proto \tcp`); the upper-case aliases do not.
const PROTO_NAMES: [(&str, u8); 48] = [
    ("ip", 0),
    ("IP", 0),
    ("hopopt", 0),
    ("HOPOPT", 0),
    ("icmp", IPPROTO_ICMP),
    ("ICMP", IPPROTO_ICMP),
    ("igmp", 2),
    ("IGMP", 2),
    ("ipencap", 4),
    ("IP-ENCAP", 4),
    ("tcp", IPPROTO_TCP),
    ("TCP", IPPROTO_TCP),
    ("udp", IPPROTO_UDP),
    ("UDP", IPPROTO_UDP),
    ("ipv6", 41),
    ("IPv6", 41),
    ("ipv6-route", 43),
    ("IPv6-Route", 43),
    ("ipv6-frag", 44),
    ("IPv6-Frag", 44),
    ("gre", 47),
    ("GRE", 47),
    ("esp", 50),
    ("IPSEC-ESP", 50),
    ("ah", 51),
    ("IPSEC-AH", 51),
    ("ipv6-icmp", IPPROTO_ICMPV6),
    ("IPv6-ICMP", IPPROTO_ICMPV6),
    ("ipv6-nonxt", 59),
    ("IPv6-NoNxt", 59),
    ("ipv6-opts", 60),
    ("IPv6-Opts", 60),
    ("ospf", 89),
    ("OSPFIGP", 89),
    ("ipip", 94),
    ("IPIP", 94),
    ("etherip", 97),
    ("ETHERIP", 97),
    ("pim", 103),
    ("PIM", 103),
    ("vrrp", 112),
    ("VRRP", 112),
    ("l2tp", 115),
    ("L2TP", 115),
    ("sctp", IPPROTO_SCTP),
    ("SCTP", IPPROTO_SCTP),
    ("udplite", 136),
    ("UDPLite", 136),
];

/// libpcap's `portrange` value: `N-M` in decimal (leading zeros and all), or else two
/// ports split at the first '-', each a decimal number or a service name. Returns the
/// ports and the protocol they share ([`ANY_L4`] unless both sides name the same one).
fn parse_port_range(s: &str) -> Result<(u16, u16, u8), PortError> {
    let port = |p: &str| -> Result<(u16, u8), PortError> {
        if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) {
            let n = p.bytes().try_fold(0u32, |n, b| {
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u32::from(b - b'0')))
            });
            return n
                .and_then(|n| u16::try_from(n).ok())
                .map(|n| (n, ANY_L4))
                .ok_or(PortError::OutOfRange);
        }
        PORT_NAMES
            .iter()
            .find(|(n, ..)| *n == p)
            .map(|&(_, port, l4)| (port, l4))
            .ok_or(PortError::NotPort)
    };
    let (a, b) = s.split_once('-').ok_or(PortError::NotPort)?;
    let ((lo, pa), (hi, pb)) = (port(a)?, port(b)?);
    Ok((lo, hi, if pa == pb { pa } else { ANY_L4 }))
}

fn mask4(len: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(len.min(32)))
        .unwrap_or(0)
}

fn mask6(len: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(len.min(128)))
        .unwrap_or(0)
}

fn mask_addr(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask4(len))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask6(len))),
    }
}

fn net_test(dir: Dir, addr: IpAddr, len: u8) -> Test {
    match addr {
        IpAddr::V4(a) => {
            let mask = mask4(len);
            Test::Net4 {
                dir,
                addr: a.to_bits() & mask,
                mask,
            }
        }
        IpAddr::V6(a) => {
            let net = a.to_bits() & mask6(len);
            Test::Net6 {
                dir,
                len: len.min(128),
                addr: [(net >> 64) as u64, net as u64],
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{Decoded, Defragmenter, LinkType, decode};
    use crate::time::Timestamp;
    use etherparse::{IpNumber, PacketBuilder};

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

    /// Decode a whole Ethernet frame the way the worker does. Leaks the frame and the
    /// defragmenter so the packet can be 'static: tests only.
    fn decoded(frame: Vec<u8>) -> Packet<'static> {
        let d: &'static mut Defragmenter = Box::leak(Box::default());
        let frame: &'static [u8] = Box::leak(frame.into_boxed_slice());
        match decode(
            frame,
            LinkType::Ethernet,
            Timestamp(1),
            frame.len() as u32,
            d,
        ) {
            Ok(Decoded::Packet(p)) => p,
            other => panic!("test frame did not decode: {other:?}"),
        }
    }

    fn v6(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    fn tcp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1000)
            .write(&mut f, b"x")
            .unwrap();
        decoded(f)
    }

    fn tcp4_vlan(vlan: u16, src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(vlan.try_into().unwrap())
            .ipv4(src, dst, 64)
            .tcp(sport, dport, 1, 1000)
            .write(&mut f, b"x")
            .unwrap();
        decoded(f)
    }

    fn udp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .udp(sport, dport)
            .write(&mut f, b"x")
            .unwrap();
        decoded(f)
    }

    fn icmp4_echo(src: [u8; 4], dst: [u8; 4], id: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .icmpv4_echo_request(id, 1)
            .write(&mut f, b"ping")
            .unwrap();
        decoded(f)
    }

    fn other4(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .write(&mut f, IpNumber(proto), payload)
            .unwrap();
        decoded(f)
    }

    /// An SCTP common header (ports, verification tag, checksum), which the decoder leaves
    /// in the payload.
    fn sctp4(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Packet<'static> {
        let mut h = Vec::new();
        h.extend_from_slice(&sport.to_be_bytes());
        h.extend_from_slice(&dport.to_be_bytes());
        h.extend_from_slice(&[0; 8]);
        other4(src, dst, IPPROTO_SCTP, &h)
    }

    fn tcp6(src: &str, sport: u16, dst: &str, dport: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(v6(src), v6(dst), 64)
            .tcp(sport, dport, 1, 1000)
            .write(&mut f, b"x")
            .unwrap();
        decoded(f)
    }

    fn udp6_vlan(vlan: u16, src: &str, sport: u16, dst: &str, dport: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(vlan.try_into().unwrap())
            .ipv6(v6(src), v6(dst), 64)
            .udp(sport, dport)
            .write(&mut f, b"x")
            .unwrap();
        decoded(f)
    }

    fn icmp6_echo(src: &str, dst: &str, id: u16) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(v6(src), v6(dst), 64)
            .icmpv6_echo_request(id, 1)
            .write(&mut f, b"ping")
            .unwrap();
        decoded(f)
    }

    /// A varied set of packets: every family, transport, direction and VLAN case the
    /// primitives distinguish.
    fn samples() -> Vec<Packet<'static>> {
        vec![
            tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80),
            tcp4([10, 0, 0, 2], 80, [10, 0, 0, 1], 40000),
            tcp4([192, 168, 1, 5], 5000, [10, 9, 9, 9], 443),
            tcp4_vlan(100, [10, 0, 0, 1], 1234, [10, 0, 0, 3], 6379),
            udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53),
            udp4([172, 16, 0, 1], 80, [172, 16, 0, 2], 80),
            icmp4_echo([10, 0, 0, 1], [10, 0, 0, 2], 80),
            sctp4([10, 0, 0, 1], 7, [10, 0, 0, 2], 2905),
            tcp6("fd00::1", 1234, "fd00::2", 443),
            tcp6("2001:db8::1", 80, "fd00::1", 50000),
            udp6_vlan(42, "fd00::1", 5353, "fe80::1", 53),
            icmp6_echo("fd00::1", "fd00::2", 443),
        ]
    }

    fn filter(expr: &str) -> Filter {
        Filter::parse(expr).unwrap_or_else(|e| panic!("{expr:?} should parse: {e}"))
    }

    fn m(expr: &str, p: &Packet<'_>) -> bool {
        filter(expr).matches(p)
    }

    fn err(expr: &str) -> String {
        match Filter::parse(expr) {
            Ok(f) => panic!("{expr:?} should not parse, got {f:?}"),
            Err(e) => e.to_string(),
        }
    }

    /// Every jump goes forward and stays in range (or ends): the loop must terminate and
    /// never miss an instruction.
    fn assert_well_formed(f: &Filter) {
        let n = f.prog.len();
        for (i, insn) in f.prog.iter().enumerate() {
            for t in [insn.jt, insn.jf] {
                assert!(
                    t == ACCEPT || t == REJECT || (t as usize > i && (t as usize) < n),
                    "{f:?}: insn {i} jumps to {t}"
                );
            }
        }
    }

    #[test]
    fn empty_expression_matches_everything() {
        for e in ["", "   ", "\t\n"] {
            let f = filter(e);
            assert!(f.is_match_all());
            assert!(samples().iter().all(|p| f.matches(p)));
        }
        assert!(Filter::default().matches(&samples()[0]));
    }

    #[test]
    fn hosts_v4_and_v6() {
        let p = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        assert!(m("host 10.0.0.1", &p));
        assert!(m("host 10.0.0.2", &p));
        assert!(!m("host 10.0.0.3", &p));
        assert!(m("src host 10.0.0.1", &p));
        assert!(!m("src host 10.0.0.2", &p));
        assert!(m("dst host 10.0.0.2", &p));
        assert!(!m("dst host 10.0.0.1", &p));
        assert!(m("ip src host 10.0.0.1", &p));
        // A direction alone implies `host`.
        assert!(m("src 10.0.0.1", &p));
        assert!(!m("dst 10.0.0.1", &p));
        assert!(m("ip src 10.0.0.1", &p));
        // Combined directions, in either order.
        assert!(m("src or dst host 10.0.0.2", &p));
        assert!(m("dst or src host 10.0.0.2", &p));
        assert!(!m("src and dst host 10.0.0.2", &p));
        assert!(m("dst and src net 10.0.0.0/24", &p));
        // libpcap's other spellings: a 32-bit number, decimal parts whatever their zeros,
        // and a short dotted address, which is a network.
        assert!(m("host 0x0a000001", &p) && m("host 167772161", &p));
        assert!(m("host 010.000.000.001", &p));
        assert!(m("host 10.0", &p) && m("host 10.0.0", &p) && !m("host 10.1", &p));

        let q = tcp6("fd00::1", 1234, "fd00::2", 443);
        assert!(m("host fd00::1", &q));
        assert!(m("src host fd00::1", &q));
        assert!(!m("dst host fd00::1", &q));
        assert!(m("ip6 dst host fd00::2", &q));
        assert!(m("dst fd00::2", &q));
        assert!(
            m("host fd00::2/128", &q),
            "a full-length IPv6 prefix is still a host"
        );
        // Families never cross.
        assert!(!m("host 10.0.0.1", &q));
        assert!(!m("host ::ffff:10.0.0.1", &p));
    }

    #[test]
    fn nets_v4_and_v6() {
        let p = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        assert!(m("net 10.0.0.0/8", &p));
        assert!(m("net 192.168.0.0/16", &p));
        assert!(!m("net 172.16.0.0/12", &p));
        assert!(m("src net 10.0.0.0/8", &p));
        assert!(!m("dst net 10.0.0.0/8", &p));
        assert!(m("dst net 192.168.1.0/24", &p));
        assert!(m("net 0.0.0.0/0", &p));
        assert!(m("net 10.1.2.3/32", &p));
        assert!(m("net 10.1.2.3", &p), "an address alone is a /32");
        assert!(
            m("net 10.0.0.0/010", &p),
            "the prefix length is a number like any other"
        );
        // libpcap's short networks: dotted parts, or a number shifted to the first octet.
        assert!(m("net 10", &p));
        assert!(m("net 10.1", &p) && !m("net 10.2", &p));
        assert!(m("net 192.168.1", &p));
        assert!(!m("net 192.168.2", &p));
        assert!(m("net 10.1/16", &p));
        // `net 0` is 0.0.0.0/32 (nothing to shift), not 0.0.0.0/8.
        let dhcp = udp4([0, 0, 0, 0], 68, [255, 255, 255, 255], 67);
        assert!(m("net 0", &dhcp) && m("src 0", &dhcp) && !m("net 0", &p));
        assert!(!m("net 0.0.0.0/8", &p) && m("net 0.0.0.0/4", &p));

        let q = udp6_vlan(42, "fd00::1", 5353, "fe80::1", 53);
        assert!(m("net fd00::/8", &q));
        assert!(m("src net fd00::/8", &q));
        assert!(!m("dst net fd00::/8", &q));
        assert!(m("dst net fe80::/10", &q));
        assert!(m("net ::/0", &q));
        assert!(m("ip6 net fd00::1", &q), "an address alone is a /128");
        assert!(!m("net ::/0", &p), "a v6 net never matches v4");
        assert!(!m("net 0.0.0.0/0", &q), "a v4 net never matches v6");
    }

    #[test]
    fn ports_are_tcp_udp_and_sctp() {
        let t = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let u = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        let s = sctp4([10, 0, 0, 1], 7, [10, 0, 0, 2], 2905);
        let ping = icmp4_echo([10, 0, 0, 1], [10, 0, 0, 2], 80);
        let ping6 = icmp6_echo("fd00::1", "fd00::2", 443);
        let ospf = other4([10, 0, 0, 1], [10, 0, 0, 2], 89, b"\x02\x01\0\x2c");
        assert!(m("port 80", &t));
        assert!(m("port 40000", &t));
        assert!(!m("port 81", &t));
        assert!(m("src port 40000", &t) && !m("src port 80", &t));
        assert!(m("dst port 80", &t) && !m("dst port 40000", &t));
        assert!(m("port 53", &u) && m("dst port 53", &u) && m("src port 5353", &u));
        assert!(m("portrange 50-60", &u));
        assert!(m("portrange 53-53", &u) && m("portrange 53", &u));
        assert!(!m("portrange 54-5000", &u));
        assert!(m("src portrange 5000-6000", &u) && !m("dst portrange 5000-6000", &u));
        assert!(m("portrange 0-65535", &t));
        // SCTP ports are ports too, unless another protocol is named.
        assert!(m("port 7", &s) && m("dst port 2905", &s) && m("sctp port 7", &s));
        assert!(!m("tcp port 7", &s) && !m("udp port 7", &s) && !m("sctp port 80", &t));
        assert!(m("portrange 1-10", &s) && m("sctp", &s) && !m("sctp", &t));
        // libpcap's numbers: hex, and octal after a leading 0.
        assert!(m("port 0x50", &t) && m("port 0120", &t) && !m("port 010", &t));
        assert!(err("port 080").contains("'8' is not an octal digit"));
        // ICMP echo ids are not ports, nor is anything on a portless protocol.
        assert!(!m("port 80", &ping));
        assert!(!m("port 443", &ping6));
        assert!(!m("portrange 0-65535", &ping));
        assert!(!m("port 0", &ospf));
        assert!(!m("portrange 0-65535", &ospf));
        // The same over IPv6.
        let t6 = tcp6("fd00::1", 1234, "fd00::2", 443);
        assert!(m("port 443", &t6) && m("dst port 443", &t6) && m("src port 1234", &t6));
    }

    #[test]
    fn named_ports() {
        let t = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let u = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        let u80 = udp4([172, 16, 0, 1], 80, [172, 16, 0, 2], 80);
        let r = tcp4_vlan(100, [10, 0, 0, 1], 1234, [10, 0, 0, 3], 6379);
        assert!(m("port http", &t) && m("port www", &t) && !m("port https", &t));
        assert!(m("port \\http", &t), "libpcap's escape");
        // A name takes the protocols it has in /etc/services: http is TCP only, domain
        // TCP and UDP.
        assert!(!m("port http", &u80) && m("port 80", &u80));
        assert!(m("port domain", &u) && m("udp port domain", &u) && !m("tcp port domain", &u));
        assert!(m("dst port redis", &r));
        // A range of two TCP names is TCP only; a number is any protocol.
        assert!(m("portrange ftp-http", &t) && !m("portrange ftp-http", &u80));
        assert!(m("portrange 1-http", &t) && m("portrange 1-http", &u80));
        assert!(m("tcp portrange 1-http", &t) && !m("tcp portrange 1-http", &u80));
        // Names are case-sensitive and split at the first '-', as in libpcap.
        assert_eq!(
            err("port HTTP"),
            "expected a port number after 'port' at column 6, found 'HTTP'"
        );
        assert!(err("portrange ftp-data-http").starts_with("expected a port range"));
        assert_eq!(
            err("udp port http"),
            "invalid port 'http' at column 10: it names a TCP port only, so 'udp' cannot \
             match it"
        );
        assert!(err("tcp port ntp").contains("it names a UDP port only"));
        assert!(err("udp portrange ftp-http").contains("it names a TCP port only"));
    }

    #[test]
    fn protocols_and_families() {
        let s = samples();
        let count = |e: &str| s.iter().filter(|p| m(e, p)).count();
        assert_eq!(count("tcp"), 6);
        assert_eq!(count("udp"), 3);
        assert_eq!(count("sctp"), 1);
        assert_eq!(count("icmp"), 1);
        assert_eq!(count("icmp6"), 1);
        assert_eq!(count("ip"), 8);
        assert_eq!(count("ip6"), 4);
        assert_eq!(count("proto 132"), 1);
        assert_eq!(count("proto \\sctp"), 1);
        assert_eq!(count("proto SCTP"), 1, "upper-case aliases need no escape");
        assert_eq!(count("proto 6"), count("tcp"));
        assert_eq!(count("proto \\tcp"), count("tcp"));
        assert_eq!(count("proto \\udp"), count("udp"));
        assert_eq!(count("proto 0x11"), count("udp"));
        assert_eq!(count("proto 021"), count("udp"), "octal");
        assert_eq!(count("ip proto 6"), 4);
        assert_eq!(count("ip6 proto 6"), 2);
        assert_eq!(count("ip6 proto 58"), 1);
        assert_eq!(count("ip6 proto \\ipv6-icmp"), 1);
        assert_eq!(count("ip proto \\icmp"), 1);
        assert_eq!(count("ip proto 17 or 6"), 6, "`proto` repeats");
        // The families are part of `icmp`, `icmp6` and `ip proto`.
        assert_eq!(count("ip6 proto 1"), 0);
        assert_eq!(count("ip proto 58"), 0);
        assert_eq!(count("ip or ip6"), s.len());
        // A protocol qualifier on a port: `tcp port 53` is not UDP DNS.
        let u = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        assert!(!m("tcp port 53", &u));
        assert!(m("udp port 53", &u));
        assert!(m("udp dst port 53", &u));
        assert!(m("udp src or dst portrange 50-60", &u));
        // A protocol name that is also a keyword needs libpcap's backslash.
        assert_eq!(
            err("proto sctp"),
            "expected a protocol number or name after 'proto' at column 7, found 'sctp'"
        );
        assert!(err("proto \\icmp6").starts_with("expected a protocol number or name"));
    }

    #[test]
    fn vlans() {
        let tagged4 = tcp4_vlan(100, [10, 0, 0, 1], 1234, [10, 0, 0, 3], 6379);
        let tagged6 = udp6_vlan(42, "fd00::1", 5353, "fe80::1", 53);
        let untagged = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        assert!(m("vlan", &tagged4) && m("vlan", &tagged6) && !m("vlan", &untagged));
        assert!(m("vlan 100", &tagged4) && !m("vlan 100", &tagged6));
        assert!(m("vlan 42", &tagged6));
        assert!(m("not vlan", &untagged) && !m("not vlan", &tagged4));
        assert!(m("vlan 42 and ip6 and udp port 53", &tagged6));
        assert!(m("vlan and port 6379", &tagged4));
        // The id is a number like any other, possibly in parentheses.
        assert!(
            m("vlan 0x64", &tagged4) && m("vlan 0144", &tagged4) && m("vlan ((100))", &tagged4)
        );
        // podtap filters the decoded packet: a primitive before `vlan` sees inside the
        // tag too (libpcap would need `vlan and tcp`).
        assert!(m("tcp and vlan 100", &tagged4) && m("port 6379", &tagged4));
        assert!(err("vlan 100 or 200").contains("has no qualifier"));
        assert!(err("vlan (100 or 200)").starts_with("expected ')' at column 11"));
    }

    #[test]
    fn filters_see_the_decapsulated_packet() {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(40000, 80, 1, 1000)
            .write(&mut inner, b"inner")
            .unwrap();
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 100, 0];
        vx.extend_from_slice(&inner);
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
            .udp(12345, 4789)
            .write(&mut f, &vx)
            .unwrap();
        let p = decoded(f);
        assert!(m("tcp and host 10.0.0.1 and port 80", &p));
        assert!(!m("host 192.0.2.1 or port 4789 or udp", &p));
    }

    #[test]
    fn operators_and_spellings() {
        let t = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        for e in [
            "tcp and port 80",
            "tcp && port 80",
            "tcp&&port 80",
            "udp or port 80",
            "udp || port 80",
            "udp||tcp",
            "not udp",
            "!udp",
            "! udp",
            "!!tcp",
            "not not tcp",
            "(tcp)",
            "((tcp) and (port 80))",
            "(udp or tcp) and (port 443 or port 80)",
            "not (udp or icmp)",
            "!(udp||icmp)&&!port 443",
            "tcp\tand\nport\r80",
        ] {
            assert!(m(e, &t), "{e:?} should match");
        }
        for e in [
            "tcp and port 81",
            "udp or port 81",
            "not tcp",
            "!!!tcp",
            "not (tcp or udp)",
            "(udp or tcp) and (port 443 or port 8080)",
        ] {
            assert!(!m(e, &t), "{e:?} should not match");
        }
        // Keywords and operators are lower case, as in libpcap.
        assert_eq!(
            err("TCP and port 80"),
            "unknown keyword 'TCP' at column 1 (expected host, net, port, portrange, proto, \
             src, dst, ip, ip6, tcp, udp, sctp, icmp, icmp6 or vlan); keywords are lower \
             case, as in tcpdump"
        );
        assert_eq!(
            err("tcp AND port 80"),
            "expected 'and', 'or' or end of input at column 5, found 'AND'"
        );
    }

    /// pcap-filter gives `and` and `or` equal precedence and reads them left to right;
    /// `not` binds tightest. (podtap used to bind `and` tighter, which kept more.)
    #[test]
    fn precedence_and_or_are_equal_and_left_associative() {
        let tcp80 = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let udp80 = udp4([172, 16, 0, 1], 80, [172, 16, 0, 2], 80);
        let udp53 = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        let tcp443 = tcp4([192, 168, 1, 5], 5000, [10, 9, 9, 9], 443);

        // a or b and c  ==  (a or b) and c
        let e = "tcp or udp and port 53";
        assert!(
            !m(e, &tcp443),
            "(tcp or udp) and port 53 does not keep TCP 443"
        );
        assert!(m(e, &udp53));
        assert!(!m(e, &udp80));
        assert!(!m(e, &tcp80));
        for p in [&tcp80, &udp80, &udp53, &tcp443] {
            assert_eq!(m(e, p), m("(tcp or udp) and port 53", p));
        }

        // a and b or c  ==  (a and b) or c (the same under either rule)
        let e = "udp and port 53 or tcp";
        assert!(m(e, &udp53) && m(e, &tcp80) && m(e, &tcp443) && !m(e, &udp80));

        // a and b or c and d  ==  ((a and b) or c) and d
        let e = "udp and port 53 or tcp and port 443";
        assert!(m(e, &tcp443));
        assert!(!m(e, &udp53), "((udp and port 53) or tcp) and port 443");
        assert!(!m(e, &tcp80) && !m(e, &udp80));

        // The issue's example: `tcp port 5000 or tcp port 80 and host 192.168.1.104` is
        // `(tcp port 5000 or tcp port 80) and host 192.168.1.104`.
        let e = "tcp port 443 or tcp port 80 and host 10.0.0.1";
        assert!(m(e, &tcp80));
        assert!(!m(e, &tcp443), "port 443 but not host 10.0.0.1");

        // not a and b  ==  (not a) and b
        let e = "not tcp and port 80";
        assert!(m(e, &udp80));
        assert!(!m(e, &tcp80));
        assert!(
            !m(e, &udp53),
            "would match if `not` bound looser than `and`"
        );
        // not a or b  ==  (not a) or b
        let e = "not udp or port 53";
        assert!(m(e, &tcp80) && m(e, &udp53) && !m(e, &udp80));

        // Parentheses group.
        let e = "tcp or (udp and port 53)";
        assert!(m(e, &tcp443) && m(e, &udp53) && !m(e, &udp80));
        let e = "not (tcp and port 80) and (port 80 or port 443)";
        assert!(m(e, &udp80) && m(e, &tcp443) && !m(e, &tcp80) && !m(e, &udp53));
    }

    #[test]
    fn qualifier_shorthand_repeats_the_last_qualifier() {
        let tcp80 = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let tcp443 = tcp4([192, 168, 1, 5], 5000, [10, 9, 9, 9], 443);
        let udp80 = udp4([172, 16, 0, 1], 80, [172, 16, 0, 2], 80);
        let udp53 = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        assert!(m("port 80 or 443", &tcp80) && m("port 80 or 443", &tcp443));
        assert!(!m("port 80 or 443", &udp53));
        assert!(m("port 8080 or 9090 or 53", &udp53));
        // The whole qualifier, protocol and direction included, is repeated.
        let e = "tcp dst port http or https";
        assert!(m(e, &tcp80) && m(e, &tcp443) && !m(e, &udp80));
        assert!(!m("tcp src port http or https", &tcp80));
        assert!(m("host 10.9.9.9 or 10.0.0.1", &tcp80));
        assert!(m("src net 192.168.0.0/16 or 10.0.0.0/8", &tcp80));
        assert!(!m("src net 192.168.0.0/16 or 10.0.0.0/8", &udp80));
        // tcpdump's example: `not host a and b` is `(not host a) and host b`.
        assert!(m("not host 10.0.0.1 and 10.9.9.9", &tcp443));
        assert!(!m("not host 10.0.0.1 and 10.9.9.9", &tcp80));
        // Across `not`, and a group of values in parentheses, after an operator or the
        // qualifier itself.
        assert!(m("port 80 and not 443", &tcp80));
        assert!(!m("host 10.0.0.1 and not 10.0.0.2", &tcp80));
        assert!(m("port 1 or (443 or 8080)", &tcp443));
        assert!(m("port (1 or 443)", &tcp443) && m("tcp port ((443))", &tcp443));
        assert!(m("port not 80", &tcp443) && !m("port not 80", &tcp80));
        // The qualifiers before a parenthesised expression hold after it:
        // `port 80 or (tcp) and 443` is `(port 80 or tcp) and port 443`.
        let e = "port 80 or (tcp) and 443";
        assert!(m(e, &tcp443) && !m(e, &tcp80) && !m(e, &udp80));
        // `proto` repeats like the rest.
        assert!(m("ip proto 17 or 6", &tcp80) && !m("ip6 proto 17 or 6", &tcp80));

        // Nothing to repeat after a primitive without a value, nor at the start, nor
        // inside parentheses that start afresh: all syntax errors in libpcap.
        for e in [
            "tcp or 80",
            "vlan or 10.0.0.1",
            "(port 80) or 443",
            "port 80 and (tcp or 443)",
        ] {
            let msg = err(e);
            assert!(msg.contains("has no qualifier"), "{e}: {msg}");
        }
        assert_eq!(
            err("10.0.0.1"),
            "'10.0.0.1' at column 1 has no qualifier: write one before it, such as 'host', \
             'net' or 'port' (a bare value only repeats the qualifier of a 'host', 'net', \
             'port', 'portrange' or 'proto' primitive just before it)"
        );
        // Only values join a group of values.
        assert_eq!(
            err("port 1 or (443 and tcp)"),
            "expected a port number (repeating 'port' from column 1) at column 20, found 'tcp'"
        );
        // A group of values starts with a value or a parenthesised number, not a group.
        assert_eq!(
            err("port 1 or ((443 or 80) or 8080)"),
            "expected ')' (a group of values cannot start with a parenthesised group) at \
             column 17, found 'or'"
        );
    }

    #[test]
    fn compiled_program_is_compact() {
        // `not` costs nothing and each primitive is one instruction.
        assert_eq!(filter("not not not tcp").prog.len(), 1);
        assert_eq!(filter("tcp and (udp or not icmp)").prog.len(), 3);
        assert_eq!(filter("tcp port 80").prog.len(), 1);
        assert_eq!(filter("port http").prog.len(), 1);
        assert_eq!(filter("ip proto 6").prog.len(), 1);
        assert_eq!(filter("icmp6").prog.len(), 1);
        assert_eq!(filter("host 10.0.0.1").prog.len(), 1);
        assert_eq!(filter("port (80 or 443 or 8080)").prog.len(), 3);
        assert!(size_of::<Insn>() <= 32, "{}", size_of::<Insn>());
    }

    #[test]
    fn error_messages_name_position_and_token() {
        // The brief's example, with a name podtap does not know.
        assert_eq!(
            err("port htp"),
            "expected a port number after 'port' at column 6, found 'htp'"
        );
        assert_eq!(
            err("foo"),
            "unknown keyword 'foo' at column 1 (expected host, net, port, portrange, proto, \
             src, dst, ip, ip6, tcp, udp, sctp, icmp, icmp6 or vlan)"
        );
        assert!(err("tcp and bogus").starts_with("unknown keyword 'bogus' at column 9"));
        assert!(err("tcp and hots 10.0.0.1").starts_with("unknown keyword 'hots' at column 9"));

        // Bad networks.
        assert_eq!(
            err("net 10.0.0.0/33"),
            "invalid network '10.0.0.0/33' at column 5: prefix length 33 is longer than 32"
        );
        assert_eq!(
            err("net fd00::/129"),
            "invalid network 'fd00::/129' at column 5: prefix length 129 is longer than 128"
        );
        assert_eq!(
            err("net 10.0.0.1/8"),
            "invalid network '10.0.0.1/8' at column 5: bits set past the /8 prefix \
             (did you mean 10.0.0.0/8?)"
        );
        assert_eq!(
            err("src net 10.0.0.300/8"),
            "invalid network '10.0.0.300/8' at column 9: '10.0.0.300' is not an IP address"
        );
        assert_eq!(
            err("net 10.0.0.0/x"),
            "invalid network '10.0.0.0/x' at column 5: prefix length 'x' is not a number"
        );
        assert_eq!(
            err("net lan"),
            "expected a network (ADDR/LEN) after 'net' at column 5, found 'lan'"
        );
        assert_eq!(
            err("net 10.0.0.0/99"),
            "invalid network '10.0.0.0/99' at column 5: prefix length 99 is longer than 32"
        );
        assert_eq!(
            err("net 10/8"),
            "invalid network '10/8' at column 5: '10' is a number: tcpdump needs a dotted \
             address before '/' (10.0.0.0/8)"
        );
        // A prefix length needs `net` (libpcap: "Mask syntax for networks only").
        assert_eq!(
            err("src 10.0.0.0/8"),
            "invalid address '10.0.0.0/8' at column 5: a prefix length needs 'net' \
             ('net 10.0.0.0/8')"
        );
        assert!(err("host fd00::/8").contains("a prefix length needs 'net'"));

        // Bad hosts.
        assert_eq!(
            err("host example.com"),
            "expected an IP address after 'host' at column 6, found 'example.com'"
        );
        assert_eq!(
            err("host 10.0.0.300"),
            "invalid address '10.0.0.300' at column 6: '10.0.0.300' is not an IP address"
        );
        assert_eq!(
            err("host 0x0a.0.0.1"),
            "invalid address '0x0a.0.0.1' at column 6: '0x0a.0.0.1' is not an IP address"
        );
        assert_eq!(
            err("ip host fd00::1"),
            "invalid address 'fd00::1' at column 9: 'ip' needs an IPv4 address"
        );
        assert_eq!(
            err("ip6 net 10.0.0.0/8"),
            "invalid address '10.0.0.0/8' at column 9: 'ip6' needs an IPv6 address"
        );

        // Ports out of range and malformed ranges.
        assert_eq!(
            err("port 65536"),
            "invalid port '65536' at column 6: ports are 0 to 65535"
        );
        assert_eq!(
            err("tcp dst port 99999999999999999999999"),
            "invalid port '99999999999999999999999' at column 14: ports are 0 to 65535"
        );
        assert_eq!(
            err("portrange 1-70000"),
            "invalid port range '1-70000' at column 11: ports are 0 to 65535"
        );
        assert_eq!(
            err("portrange 2000-1000"),
            "invalid port range '2000-1000' at column 11: the start (2000) is above the end (1000)"
        );
        assert_eq!(
            err("portrange 80-x"),
            "expected a port range (N-M) after 'portrange' at column 11, found '80-x'"
        );
        assert_eq!(
            err("port"),
            "expected a port number after 'port' at column 5, found end of input"
        );
        assert_eq!(
            err("port tcp"),
            "expected a port number after 'port' at column 6, found 'tcp'"
        );
        // A repeated qualifier says so.
        assert_eq!(
            err("port 80 or 10.0.0.1"),
            "expected a port number (repeating 'port' from column 1) at column 12, \
             found '10.0.0.1'"
        );

        // Unbalanced parentheses.
        assert_eq!(
            err("(tcp"),
            "unbalanced parentheses: '(' at column 1 is never closed"
        );
        assert_eq!(
            err("((tcp) or udp"),
            "unbalanced parentheses: '(' at column 1 is never closed"
        );
        assert_eq!(
            err("tcp)"),
            "unbalanced parentheses: ')' at column 4 has no matching '('"
        );
        assert_eq!(
            err("(tcp))"),
            "unbalanced parentheses: ')' at column 6 has no matching '('"
        );
        assert_eq!(
            err("()"),
            "expected an expression after '(' at column 2, found ')'"
        );
        assert_eq!(
            err("(tcp udp)"),
            "expected 'and', 'or' or ')' at column 6, found 'udp'"
        );

        // Trailing garbage and dangling operators.
        assert_eq!(
            err("tcp udp"),
            "expected 'and', 'or' or end of input at column 5, found 'udp'"
        );
        assert_eq!(
            err("port 80 80"),
            "expected 'and', 'or' or end of input at column 9, found '80'"
        );
        assert_eq!(
            err("tcp and"),
            "expected an expression after 'and' at column 8, found end of input"
        );
        assert_eq!(
            err("tcp or || udp"),
            "expected an expression after 'or' at column 8, found '||'"
        );
        assert_eq!(
            err("and tcp"),
            "expected an expression at column 1, found 'and'"
        );
        assert_eq!(
            err("not"),
            "expected an expression after 'not' at column 4, found end of input"
        );
        assert_eq!(
            err("tcp & udp"),
            "unexpected character '&' at column 5 (use '&&' or 'and')"
        );
        assert_eq!(
            err("tcp | udp"),
            "unexpected character '|' at column 5 (use '||' or 'or')"
        );

        // Misplaced qualifiers and other values.
        assert_eq!(
            err("tcp host 10.0.0.1"),
            "expected 'port' or 'portrange' after 'tcp' at column 5, found 'host'"
        );
        assert_eq!(
            err("udp src 10.0.0.1"),
            "expected 'port' or 'portrange' after 'udp' at column 9, found '10.0.0.1'"
        );
        assert_eq!(
            err("ip6 port 80"),
            "expected 'host', 'net' or 'proto' after 'ip6' at column 5, found 'port'"
        );
        assert_eq!(
            err("src"),
            "expected 'host', 'net', 'port', 'portrange' or an address after 'src' at column 4, \
             found end of input"
        );
        assert_eq!(
            err("vlan 5000"),
            "invalid VLAN id '5000' at column 6: VLAN ids are 1 to 4095"
        );
        assert!(err("vlan 0").contains("use 'not vlan' for untagged"));
        assert_eq!(
            err("proto 256"),
            "invalid protocol number '256' at column 7: protocol numbers are 0 to 255"
        );
        assert_eq!(
            err("ip proto bogus"),
            "expected a protocol number or name after 'proto' at column 10, found 'bogus'"
        );
        assert_eq!(
            err("tcp proto 6"),
            "expected 'port' or 'portrange' after 'tcp' at column 5, found 'proto'"
        );

        // What libpcap accepts and podtap does not implement is named.
        assert_eq!(
            err("tcp or arp"),
            "tcpdump keyword 'arp' at column 8 is not supported by podtap: podtap filters IP \
             packets on addresses, ports, protocols and VLAN ids"
        );
        assert!(err("ip broadcast").starts_with("tcpdump keyword 'broadcast' at column 4"));
        assert!(err("net 10.0.0.0 mask 255.0.0.0").starts_with("tcpdump keyword 'mask'"));
        assert_eq!(
            err("tcp[13] & 2 != 0"),
            "character '[' at column 4 is not supported by podtap: tcpdump's byte and \
             arithmetic expressions (tcp[13] & 2 != 0, len > 100) are not implemented"
        );
        assert_eq!(
            err("host 00:11:22:33:44:55"),
            "MAC address '00:11:22:33:44:55' at column 6 is not supported by podtap: podtap \
             filters IP packets"
        );
        assert!(err("port 000000000010").starts_with("MAC address '000000000010'"));
        assert!(err("vlan 08").contains("'8' is not an octal digit"));
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // U+00A0 is a space elsewhere, but not to libpcap; it is two bytes in UTF-8.
        assert_eq!(
            err("tcp and\u{a0}udp"),
            "unexpected character '\u{a0}' at column 8 (only ASCII spaces, tabs and newlines \
             separate words)"
        );
        assert_eq!(
            err("tcp and ünknown"),
            "unexpected character 'ü' at column 9"
        );
        assert_eq!(Filter::parse("host ü and").unwrap_err().column(), 6);
        assert_eq!(Filter::parse("tcp and").unwrap_err().column(), 8);
    }

    #[test]
    fn hostile_input_is_an_error_not_a_crash() {
        // Nesting beyond the limit is refused before the stack is at risk.
        let deep = format!("{}tcp{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = Filter::parse(&deep).unwrap_err();
        assert_eq!(e.column(), MAX_DEPTH + 1);
        assert!(
            e.to_string()
                .starts_with("parentheses nested more than 100 deep")
        );
        let ok = format!("{}tcp{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
        assert!(m(&ok, &samples()[0]));

        // Long negation runs and flat chains do not recurse.
        let nots = format!("{}tcp", "not ".repeat(100_001));
        assert!(!m(&nots, &samples()[0]));
        let chain = vec!["port 1"; 50_000].join(" or ") + " or tcp";
        let f = filter(&chain);
        assert_eq!(f.prog.len(), 50_001);
        assert!(f.matches(&samples()[0]));
        assert_well_formed(&f);
        let values = "port 1".to_string() + &" or 2".repeat(50_000);
        assert_eq!(filter(&values).prog.len(), 50_001);

        // Each switch between `and` and `or` nests the tree a level (they group from the
        // left): bounded too, and a long but reasonable mix still parses.
        let alternating = |n: usize| {
            (0..n).fold("tcp".to_string(), |s, i| {
                s + if i % 2 == 0 { " and udp" } else { " or icmp" }
            })
        };
        let e = Filter::parse(&alternating(100_000)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("expression too deeply nested at column"),
            "{e}"
        );
        let f = filter(&alternating(MAX_HEIGHT - 2));
        assert_well_formed(&f);
        assert!(f.matches(&samples()[6]), "ends in `or icmp`");
        let grouped = format!("port (1{})", " and (2 or 3".repeat(200) + &")".repeat(200));
        assert!(
            Filter::parse(&grouped)
                .unwrap_err()
                .to_string()
                .starts_with("parentheses")
        );
    }

    #[test]
    fn deserializes_from_a_string() {
        #[derive(serde::Deserialize)]
        struct Capture {
            filter: Filter,
        }
        let c: Capture = toml::from_str("filter = \"tcp port 80 or 443\"").unwrap();
        assert_eq!(c.filter.as_str(), "tcp port 80 or 443");
        assert_eq!(c.filter.to_string(), "tcp port 80 or 443");
        assert!(c.filter.matches(&samples()[0]));

        let c: Capture = serde_json::from_str(r#"{"filter": ""}"#).unwrap();
        assert!(c.filter.is_match_all());

        let e = toml::from_str::<Capture>("filter = \"port http2\"")
            .err()
            .unwrap()
            .to_string();
        assert!(
            e.contains(
                "bad filter: expected a port number after 'port' at column 6, found 'http2'"
            ),
            "{e}"
        );
        let e = serde_json::from_str::<Capture>(r#"{"filter": 80}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("a packet filter expression string"), "{e}");
    }

    #[test]
    fn from_str_and_debug() {
        let f: Filter = "tcp".parse().unwrap();
        assert_eq!(format!("{f:?}"), r#"Filter { expr: "tcp", insns: 1 }"#);
        assert!("tcp)".parse::<Filter>().is_err());
    }

    /// xorshift64*: deterministic, dependency-free randomness for the property tests.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }

        fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
            xs[self.below(xs.len())]
        }
    }

    /// Self-contained primitives: each starts with a keyword, so none is affected by the
    /// qualifier shorthand wherever it lands.
    const PRIMITIVES: [&str; 33] = [
        "tcp",
        "udp",
        "icmp",
        "icmp6",
        "ip",
        "ip6",
        "vlan",
        "vlan 42",
        "vlan 100",
        "host 10.0.0.1",
        "src host 10.0.0.1",
        "dst host 10.0.0.2",
        "host fd00::1",
        "dst host fd00::2",
        "net 10.0.0.0/8",
        "src net 192.168.0.0/16",
        "dst net fd00::/8",
        "net 0.0.0.0/0",
        "port 80",
        "src port 40000",
        "dst port 53",
        "port https",
        "portrange 1-1024",
        "dst portrange 50-60",
        "proto 132",
        "ip proto 17",
        "ip6 proto 6",
        "tcp port 80",
        "udp dst port 53",
        "src or dst port 443",
        "src and dst net 10.0.0.0/8",
        "ip6 src net fd00::/16",
        "net 172.16",
    ];

    enum Expr {
        Prim(&'static str),
        Not(Box<Expr>),
        And(Box<Expr>, Box<Expr>),
        Or(Box<Expr>, Box<Expr>),
    }

    fn gen_expr(rng: &mut Rng, depth: usize) -> Expr {
        if depth == 0 || rng.below(4) == 0 {
            return Expr::Prim(PRIMITIVES[rng.below(PRIMITIVES.len())]);
        }
        match rng.below(3) {
            0 => Expr::Not(Box::new(gen_expr(rng, depth - 1))),
            1 => Expr::And(
                Box::new(gen_expr(rng, depth - 1)),
                Box::new(gen_expr(rng, depth - 1)),
            ),
            _ => Expr::Or(
                Box::new(gen_expr(rng, depth - 1)),
                Box::new(gen_expr(rng, depth - 1)),
            ),
        }
    }

    /// The reference semantics: primitives through the filter one at a time, operators in
    /// plain Rust.
    fn reference(e: &Expr, p: &Packet<'_>) -> bool {
        match e {
            Expr::Prim(s) => m(s, p),
            Expr::Not(a) => !reference(a, p),
            Expr::And(a, b) => reference(a, p) && reference(b, p),
            Expr::Or(a, b) => reference(a, p) || reference(b, p),
        }
    }

    /// Fully parenthesised, with random operator spellings.
    fn render_full(e: &Expr, rng: &mut Rng) -> String {
        match e {
            Expr::Prim(s) => s.to_string(),
            Expr::Not(a) => format!("{} ({})", rng.pick(&["not", "!"]), render_full(a, rng)),
            Expr::And(a, b) => format!(
                "({}) {} ({})",
                render_full(a, rng),
                rng.pick(&["and", "&&"]),
                render_full(b, rng)
            ),
            Expr::Or(a, b) => format!(
                "({}) {} ({})",
                render_full(a, rng),
                rng.pick(&["or", "||"]),
                render_full(b, rng)
            ),
        }
    }

    /// With only the parentheses pcap-filter's precedence requires, so the parser's
    /// precedence is what decides the meaning: `and` and `or` are equal and group from the
    /// left, so only a right operand that is itself a binary operation needs them, and
    /// `not` binds tightest.
    fn render_min(e: &Expr, bracket_binary: bool) -> String {
        let (a, b, op) = match e {
            Expr::Prim(s) => return s.to_string(),
            Expr::Not(a) => return format!("not {}", render_min(a, true)),
            Expr::And(a, b) => (a, b, "and"),
            Expr::Or(a, b) => (a, b, "or"),
        };
        let s = format!("{} {op} {}", render_min(a, false), render_min(b, true));
        if bracket_binary { format!("({s})") } else { s }
    }

    #[test]
    fn property_not_is_negation_and_operators_match_reference() {
        let packets = samples();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..400 {
            let e = gen_expr(&mut rng, 4);
            let full = render_full(&e, &mut rng);
            let min = render_min(&e, false);
            let f_full = filter(&full);
            let f_min = filter(&min);
            let f_not = filter(&format!("not ({full})"));
            let f_bang = filter(&format!("!({min})"));
            assert_well_formed(&f_full);
            assert_well_formed(&f_min);
            for p in &packets {
                let want = reference(&e, p);
                assert_eq!(f_full.matches(p), want, "{full}\n{p:?}");
                assert_eq!(f_min.matches(p), want, "{min}\n{p:?}");
                assert_eq!(f_not.matches(p), !want, "not ({full})\n{p:?}");
                assert_eq!(f_bang.matches(p), !want, "!({min})\n{p:?}");
            }
        }
    }

    #[test]
    fn property_random_token_soup_never_panics() {
        const SOUP: [&str; 44] = [
            "(",
            ")",
            "!",
            "&&",
            "||",
            "&",
            "|",
            "and",
            "or",
            "not",
            "host",
            "net",
            "port",
            "portrange",
            "src",
            "dst",
            "tcp",
            "udp",
            "icmp",
            "icmp6",
            "ip",
            "ip6",
            "vlan",
            "proto",
            "80",
            "70000",
            "1-2",
            "2-1",
            "-",
            "10.0.0.0/8",
            "10.0.0.1/8",
            "fd00::/8",
            "::",
            "/",
            "é",
            "10.0.0.1/99",
            "http",
            "\\tcp",
            "0",
            "4095",
            "10",
            "1.2.3.4.5",
            "::/",
            "ftp-data-",
        ];
        let packets = samples();
        let mut rng = Rng(42);
        let mut parsed = 0;
        for _ in 0..5000 {
            let n = rng.below(8);
            let mut s = String::new();
            for _ in 0..n {
                s.push_str(rng.pick(&SOUP));
                s.push_str(rng.pick(&[" ", " ", ""]));
            }
            match Filter::parse(&s) {
                Ok(f) => {
                    parsed += 1;
                    assert_well_formed(&f);
                    for p in &packets {
                        let _ = f.matches(p);
                    }
                }
                Err(e) => {
                    let col = e.column();
                    assert!(col >= 1 && col <= s.chars().count() + 1, "{s:?}: {e}");
                }
            }
        }
        assert!(parsed > 100, "only {parsed} parsed: the soup is too thin");
        // Arbitrary characters, including control and non-ASCII ones.
        for _ in 0..2000 {
            let s: String = (0..rng.below(12))
                .filter_map(|_| char::from_u32(rng.below(0x3000) as u32))
                .collect();
            let _ = Filter::parse(&s);
        }
    }
}
