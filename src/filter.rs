//! Packet filter expressions: a tcpdump-style subset, compiled once, run per packet.
//!
//! Used by `podtap replay --filter EXPR` and by the config's `capture.filter`. The filter
//! sees the decoded packet, so it applies to the innermost (decapsulated, reassembled)
//! addresses and ports, and to the innermost VLAN id.
//!
//! # Grammar
//!
//! ```text
//! expr      := and_expr ( ("or" | "||") and_expr )*
//! and_expr  := unary ( ("and" | "&&") unary )*
//! unary     := ( "not" | "!" )* primary
//! primary   := "(" expr ")" | primitive | value        ; value: see "shorthand" below
//! primitive := [tcp | udp] [dir] (port PORT | portrange PORT-PORT)
//!            | [ip | ip6] [dir] (host ADDR | net NET)
//!            | dir value                                ; `src 10.0.0.1`, `dst fd00::/8`
//!            | tcp | udp | icmp | icmp6 | ip | ip6
//!            | vlan [ID]
//!            | [ip | ip6] proto (NUMBER | NAME)
//! dir       := src | dst | src or dst | src and dst
//! ```
//!
//! `not` binds tighter than `and`, which binds tighter than `or`; both are left
//! associative. (Note: real tcpdump gives `and` and `or` *equal* precedence; podtap uses the
//! conventional ordering, so `tcp or udp and port 53` means `tcp or (udp and port 53)`.
//! Parenthesise when in doubt.) Keywords are case-insensitive.
//!
//! A bare address is `host ADDR`, a bare CIDR is `net NET`. After an operator, a bare value
//! repeats the most recent qualifier, as in tcpdump: `port 80 or 443` is
//! `port 80 or port 443`, `tcp dst port http or https` is
//! `tcp dst port http or tcp dst port https`.
//!
//! `port` and `portrange` match only TCP and UDP ports (never ICMP echo ids). `NET` is
//! `ADDR/LEN` (IPv4 or IPv6), an address alone (a single host), or a shortened IPv4
//! network as in tcpdump (`10` is `10.0.0.0/8`, `192.168.1` is `192.168.1.0/24`).
//! Host names are not resolved: a per-packet filter must not block on DNS.
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

/// Deepest parenthesis nesting accepted. Parsing and compiling recurse once per level, so
/// this bounds stack use for hostile input such as a million `(`.
const MAX_DEPTH: usize = 100;

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
         src, dst, tcp, udp, icmp, icmp6, ip, ip6, vlan, proto or an IP address)"
    )]
    UnknownKeyword { token: String, column: usize },
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
    #[error("expression too large ({primitives} primitives)")]
    TooLarge { primitives: usize },
}

impl FilterError {
    /// The column (1-based, in characters) the error points at; 0 when it has none.
    pub fn column(&self) -> usize {
        match self {
            FilterError::Expected { column, .. }
            | FilterError::UnknownKeyword { column, .. }
            | FilterError::Invalid { column, .. }
            | FilterError::UnclosedParen { column }
            | FilterError::UnmatchedParen { column }
            | FilterError::BadChar { column, .. }
            | FilterError::TooDeep { column, .. } => *column,
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
    Proto(u8),
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
    Port {
        dir: Dir,
        lo: u16,
        hi: u16,
    },
}

impl Test {
    #[inline(always)]
    fn eval(&self, p: &Packet<'_>) -> bool {
        match *self {
            Test::Proto(n) => p.ip_proto == n,
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
            Test::Port { dir, lo, hi } => {
                // Not `Packet::ports()`: that reports ICMP echo ids as ports, and tcpdump's
                // `port` never matches ICMP.
                let (s, d) = match p.l4 {
                    L4::Tcp(t) => (t.src_port, t.dst_port),
                    L4::Udp { src_port, dst_port } => (src_port, dst_port),
                    L4::Icmp { .. } | L4::Other => return false,
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
        let node = p.parse_or()?;
        if let Some(t) = p.peek() {
            return Err(match t.kind {
                TokKind::RParen => FilterError::UnmatchedParen { column: t.col },
                _ => FilterError::Expected {
                    expected: "'and', 'or' or end of input".into(),
                    column: t.col,
                    found: Found::Token(t.text.into()),
                },
            });
        }
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

    /// Whether the packet passes the filter.
    #[inline]
    pub fn matches(&self, p: &Packet<'_>) -> bool {
        let prog = &self.prog[..];
        if prog.is_empty() {
            return true;
        }
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

/// The parsed expression. `and`/`or` chains are n-ary so that a long flat chain does not
/// become a deep tree (which would make `compile` and `Drop` recurse deeply).
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

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '!' | '&' | '|')
}

/// Split into tokens. A word is any run of characters other than whitespace and the
/// operator characters, so addresses (`fd00::1`), networks (`10.0.0.0/8`) and port
/// ranges (`1-1024`) are single words, validated later where their meaning is known.
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
            c if c.is_whitespace() => continue,
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
            _ => {
                while let Some(&(j, n)) = chars.peek() {
                    if is_delimiter(n) {
                        break;
                    }
                    chars.next();
                    col += 1;
                    end = j + n.len_utf8();
                }
                let word = s.get(i..end).unwrap_or_default();
                // The word operators are operators wherever they appear.
                if word.eq_ignore_ascii_case("and") {
                    TokKind::And
                } else if word.eq_ignore_ascii_case("or") {
                    TokKind::Or
                } else if word.eq_ignore_ascii_case("not") {
                    TokKind::Not
                } else {
                    TokKind::Word
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    Host,
    Net,
    Port,
    PortRange,
    Src,
    Dst,
    Tcp,
    Udp,
    Icmp,
    Icmp6,
    Ip,
    Ip6,
    Vlan,
    Proto,
}

fn keyword(w: &str) -> Option<Kw> {
    const KEYWORDS: [(&str, Kw); 14] = [
        ("host", Kw::Host),
        ("net", Kw::Net),
        ("port", Kw::Port),
        ("portrange", Kw::PortRange),
        ("src", Kw::Src),
        ("dst", Kw::Dst),
        ("tcp", Kw::Tcp),
        ("udp", Kw::Udp),
        ("icmp", Kw::Icmp),
        ("icmp6", Kw::Icmp6),
        ("ip", Kw::Ip),
        ("ip6", Kw::Ip6),
        ("vlan", Kw::Vlan),
        ("proto", Kw::Proto),
    ];
    KEYWORDS
        .iter()
        .find(|(s, _)| s.eq_ignore_ascii_case(w))
        .map(|&(_, k)| k)
}

// ---------------------------------------------------------------------------------------
// Parser
// ---------------------------------------------------------------------------------------

/// The protocol qualifier in front of a value primitive (`tcp port 80`, `ip6 host ::1`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProtoQual {
    Tcp,
    Udp,
    Ip,
    Ip6,
}

/// What kind of value a qualifier expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Host,
    Net,
    Port,
    PortRange,
    /// No type keyword (`src 10.0.0.1`, a bare address): host or net by the value's shape.
    Addr,
}

/// A full qualifier, remembered so a bare value after an operator can repeat it.
#[derive(Clone, Copy, Debug)]
struct Qual<'a> {
    proto: Option<ProtoQual>,
    dir: Dir,
    kind: Kind,
    /// The keyword that introduced the value, and its column, for error messages.
    kw: &'a str,
    kw_col: usize,
}

struct Parser<'a> {
    toks: Vec<Tok<'a>>,
    pos: usize,
    end_col: usize,
    depth: usize,
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

    fn eat(&mut self, kind: TokKind) -> bool {
        if self.peek().is_some_and(|t| t.kind == kind) {
            self.pos += 1;
            true
        } else {
            false
        }
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

    fn parse_or(&mut self) -> Result<Node, FilterError> {
        let mut items = vec![self.parse_and()?];
        while self.eat(TokKind::Or) {
            items.push(self.parse_and()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::Or(items)
        })
    }

    fn parse_and(&mut self) -> Result<Node, FilterError> {
        let mut items = vec![self.parse_unary()?];
        while self.eat(TokKind::And) {
            items.push(self.parse_unary()?);
        }
        Ok(if items.len() == 1 {
            items.swap_remove(0)
        } else {
            Node::And(items)
        })
    }

    /// Negations are counted in a loop, not recursed into, so `not not ... x` of any
    /// length is safe.
    fn parse_unary(&mut self) -> Result<Node, FilterError> {
        let mut negate = false;
        while self.eat(TokKind::Not) {
            negate = !negate;
        }
        let n = self.parse_primary()?;
        Ok(if negate { Node::Not(Box::new(n)) } else { n })
    }

    fn parse_primary(&mut self) -> Result<Node, FilterError> {
        let prev = self
            .pos
            .checked_sub(1)
            .and_then(|i| self.toks.get(i))
            .copied();
        let t = self.next();
        match t {
            Some(t) if t.kind == TokKind::Word => self.parse_primitive(t),
            Some(t) if t.kind == TokKind::LParen => {
                if self.depth >= MAX_DEPTH {
                    return Err(FilterError::TooDeep {
                        limit: MAX_DEPTH,
                        column: t.col,
                    });
                }
                self.depth += 1;
                let inner = self.parse_or()?;
                self.depth -= 1;
                match self.next() {
                    Some(c) if c.kind == TokKind::RParen => Ok(inner),
                    None => Err(FilterError::UnclosedParen { column: t.col }),
                    other => Err(self.expected("'and', 'or' or ')'".into(), other)),
                }
            }
            _ => {
                let expected = match prev {
                    Some(p) => format!("an expression after '{}'", p.text),
                    None => "an expression".into(),
                };
                Err(self.expected(expected, t))
            }
        }
    }

    /// A primitive starting with the word `t` (already consumed).
    fn parse_primitive(&mut self, t: Tok<'a>) -> Result<Node, FilterError> {
        let Some(kw) = keyword(t.text) else {
            return self.parse_bare(t);
        };
        Ok(match kw {
            Kw::Tcp | Kw::Udp => {
                let (pq, proto) = if kw == Kw::Tcp {
                    (ProtoQual::Tcp, IPPROTO_TCP)
                } else {
                    (ProtoQual::Udp, IPPROTO_UDP)
                };
                match self.peek_kw() {
                    Some(Kw::Src | Kw::Dst | Kw::Host | Kw::Net | Kw::Port | Kw::PortRange) => {
                        self.parse_qualified(Some((pq, t)))?
                    }
                    _ => Node::Leaf(Test::Proto(proto)),
                }
            }
            Kw::Ip | Kw::Ip6 => {
                let (pq, family) = if kw == Kw::Ip {
                    (ProtoQual::Ip, Test::Ipv4)
                } else {
                    (ProtoQual::Ip6, Test::Ipv6)
                };
                match self.peek_kw() {
                    Some(Kw::Proto) => {
                        let p = self.next();
                        let proto = self.parse_proto_value(p)?;
                        Node::And(vec![Node::Leaf(family), Node::Leaf(Test::Proto(proto))])
                    }
                    Some(Kw::Src | Kw::Dst | Kw::Host | Kw::Net | Kw::Port | Kw::PortRange) => {
                        self.parse_qualified(Some((pq, t)))?
                    }
                    _ => Node::Leaf(family),
                }
            }
            Kw::Icmp => Node::Leaf(Test::Proto(IPPROTO_ICMP)),
            Kw::Icmp6 => Node::Leaf(Test::Proto(IPPROTO_ICMPV6)),
            Kw::Vlan => {
                // `vlan` alone means "tagged"; a following number is the id.
                match self.peek() {
                    Some(n)
                        if n.kind == TokKind::Word
                            && n.text.starts_with(|c: char| c.is_ascii_digit()) =>
                    {
                        self.pos += 1;
                        Node::Leaf(Test::Vlan(parse_vlan_id(n)?))
                    }
                    _ => Node::Leaf(Test::VlanTagged),
                }
            }
            Kw::Proto => Node::Leaf(Test::Proto(self.parse_proto_value(Some(t))?)),
            Kw::Src | Kw::Dst | Kw::Host | Kw::Net | Kw::Port | Kw::PortRange => {
                self.pos -= 1;
                self.parse_qualified(None)?
            }
        })
    }

    /// A word that is not a keyword: a value repeating the last qualifier, or an address.
    fn parse_bare(&mut self, t: Tok<'a>) -> Result<Node, FilterError> {
        // A qualifier carried from a bare address (kw empty) is not repeated: a later
        // bare word is then either an address itself or a typo'd keyword.
        if let Some(q) = self.carry.filter(|q| !q.kw.is_empty()) {
            return self.value(q, t, true);
        }
        if looks_like_address(t.text) {
            let q = Qual {
                proto: None,
                dir: Dir::Either,
                kind: Kind::Addr,
                kw: "",
                kw_col: t.col,
            };
            return self.value(q, t, false);
        }
        Err(FilterError::UnknownKeyword {
            token: t.text.into(),
            column: t.col,
        })
    }

    /// `[dir] type value` or `dir value`, optionally after a protocol qualifier.
    fn parse_qualified(
        &mut self,
        proto: Option<(ProtoQual, Tok<'a>)>,
    ) -> Result<Node, FilterError> {
        let dir_tok = self.peek();
        let dir = self.parse_dir();
        let (kind, kw_tok) = match self.peek_kw() {
            Some(Kw::Host) => (Kind::Host, self.next()),
            Some(Kw::Net) => (Kind::Net, self.next()),
            Some(Kw::Port) => (Kind::Port, self.next()),
            Some(Kw::PortRange) => (Kind::PortRange, self.next()),
            _ => (Kind::Addr, None),
        };
        // The keyword the value follows, for messages: `port`, or `src` in `src 10.0.0.1`.
        let Some(kw_tok) = kw_tok.or(dir.and(dir_tok)) else {
            return Err(self.expected("'host', 'net', 'port' or 'portrange'".into(), self.peek()));
        };
        let allowed = match proto.map(|(p, _)| p) {
            Some(ProtoQual::Tcp | ProtoQual::Udp) => matches!(kind, Kind::Port | Kind::PortRange),
            Some(ProtoQual::Ip | ProtoQual::Ip6) => {
                matches!(kind, Kind::Host | Kind::Net | Kind::Addr)
            }
            None => true,
        };
        if !allowed {
            let (_, pt) = proto.unwrap_or((ProtoQual::Ip, kw_tok));
            let what = if matches!(kind, Kind::Port | Kind::PortRange) {
                "'host', 'net' or 'proto'"
            } else {
                "'port' or 'portrange'"
            };
            let at = if kind == Kind::Addr {
                self.peek()
            } else {
                Some(kw_tok)
            };
            return Err(self.expected(format!("{what} after '{}'", pt.text), at));
        }
        let q = Qual {
            proto: proto.map(|(p, _)| p),
            dir: dir.unwrap_or(Dir::Either),
            kind,
            kw: kw_tok.text,
            kw_col: kw_tok.col,
        };
        let v = self.next();
        match v {
            Some(v) if v.kind == TokKind::Word && keyword(v.text).is_none() => {
                self.value(q, v, false)
            }
            other => {
                // After a bare direction any type keyword could still have followed.
                let noun = match q.kind {
                    Kind::Addr => "'host', 'net', 'port', 'portrange' or an address",
                    k => k.noun(),
                };
                Err(self.expected(format!("{noun} after '{}'", q.kw), other))
            }
        }
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

    /// The value `v` for qualifier `q`; `carried` when `q` is repeated from an earlier
    /// primitive, which the error messages say so the user sees why `v` was read that way.
    fn value(&mut self, q: Qual<'a>, v: Tok<'a>, carried: bool) -> Result<Node, FilterError> {
        let ctx = if carried && !q.kw.is_empty() {
            format!("(repeating '{}' from column {})", q.kw, q.kw_col)
        } else if q.kw.is_empty() {
            String::new()
        } else {
            format!("after '{}'", q.kw)
        };
        let expected = |noun: &str| {
            let expected = if ctx.is_empty() {
                noun.to_string()
            } else {
                format!("{noun} {ctx}")
            };
            FilterError::Expected {
                expected,
                column: v.col,
                found: Found::Token(v.text.into()),
            }
        };
        let invalid = |what: &'static str, reason: String| FilterError::Invalid {
            what,
            token: v.text.into(),
            column: v.col,
            reason,
        };
        let kind = match q.kind {
            Kind::Addr if v.text.contains('/') => Kind::Net,
            Kind::Addr => Kind::Host,
            k => k,
        };
        let leaf = match kind {
            Kind::Host | Kind::Addr => {
                let Ok(addr) = v.text.parse::<IpAddr>() else {
                    return Err(expected(q.kind.noun()));
                };
                net_test(q.dir, addr, if addr.is_ipv4() { 32 } else { 128 })
            }
            Kind::Net => match parse_net(v.text) {
                Ok((addr, len)) => net_test(q.dir, addr, len),
                Err(NetError::NotAddress) => return Err(expected(kind.noun())),
                Err(NetError::Invalid(reason)) => return Err(invalid("network", reason)),
            },
            Kind::Port => match parse_port(v.text) {
                Ok(n) => Test::Port {
                    dir: q.dir,
                    lo: n,
                    hi: n,
                },
                Err(PortError::NotPort) => return Err(expected(kind.noun())),
                Err(PortError::OutOfRange) => {
                    return Err(invalid("port", "ports are 0 to 65535".into()));
                }
            },
            Kind::PortRange => match parse_port_range(v.text) {
                Ok((lo, hi)) if lo <= hi => Test::Port { dir: q.dir, lo, hi },
                Ok((lo, hi)) => {
                    return Err(invalid(
                        "port range",
                        format!("the start ({lo}) is above the end ({hi})"),
                    ));
                }
                Err(PortError::NotPort) => return Err(expected(kind.noun())),
                Err(PortError::OutOfRange) => {
                    return Err(invalid("port range", "ports are 0 to 65535".into()));
                }
            },
        };
        // `ip host ::1` can never match; say so rather than silently matching nothing.
        let family_mismatch = matches!(
            (q.proto, &leaf),
            (Some(ProtoQual::Ip), Test::Net6 { .. }) | (Some(ProtoQual::Ip6), Test::Net4 { .. })
        );
        if family_mismatch {
            let (want, qual) = if q.proto == Some(ProtoQual::Ip) {
                ("IPv4", "ip")
            } else {
                ("IPv6", "ip6")
            };
            return Err(invalid(
                "address",
                format!("'{qual}' needs an {want} address"),
            ));
        }
        self.carry = Some(q);
        Ok(match q.proto {
            Some(ProtoQual::Tcp) => {
                Node::And(vec![Node::Leaf(Test::Proto(IPPROTO_TCP)), Node::Leaf(leaf)])
            }
            Some(ProtoQual::Udp) => {
                Node::And(vec![Node::Leaf(Test::Proto(IPPROTO_UDP)), Node::Leaf(leaf)])
            }
            // The address family already implies `ip`/`ip6`.
            Some(ProtoQual::Ip | ProtoQual::Ip6) | None => Node::Leaf(leaf),
        })
    }

    /// The protocol after `proto` (the token `kw`, already consumed).
    fn parse_proto_value(&mut self, kw: Option<Tok<'a>>) -> Result<u8, FilterError> {
        let v = self.next();
        let after = kw.map_or("proto", |t| t.text);
        let Some(t) = v.filter(|t| t.kind == TokKind::Word) else {
            return Err(self.expected(format!("a protocol number or name after '{after}'"), v));
        };
        // tcpdump spells `ip proto \tcp` because `tcp` is a keyword; accept both forms.
        let name = t.text.strip_prefix('\\').unwrap_or(t.text);
        if let Some(n) = parse_decimal(name) {
            return u8::try_from(n).map_err(|_| FilterError::Invalid {
                what: "protocol number",
                token: t.text.into(),
                column: t.col,
                reason: "protocol numbers are 0 to 255".into(),
            });
        }
        const NAMES: [(&str, u8); 11] = [
            ("icmp", IPPROTO_ICMP),
            ("igmp", 2),
            ("ipip", 4),
            ("tcp", IPPROTO_TCP),
            ("udp", IPPROTO_UDP),
            ("gre", 47),
            ("esp", 50),
            ("ah", 51),
            ("icmp6", IPPROTO_ICMPV6),
            ("ipv6-icmp", IPPROTO_ICMPV6),
            ("sctp", 132),
        ];
        NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|&(_, p)| p)
            .ok_or_else(|| self.expected(format!("a protocol number or name after '{after}'"), v))
    }
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::Host => "an IP address",
            Kind::Net => "a network (ADDR/LEN)",
            Kind::Port => "a port number",
            Kind::PortRange => "a port range (N-M)",
            Kind::Addr => "an IP address or network",
        }
    }
}

// ---------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------

/// Whether an unqualified word was meant as an address, so the error can talk about a bad
/// address instead of an unknown keyword.
fn looks_like_address(w: &str) -> bool {
    w.starts_with(|c: char| c.is_ascii_digit()) || w.contains(':')
}

/// Plain decimal digits, saturating so an absurdly long number is "out of range" rather
/// than "not a number".
fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |n, b| {
        n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

fn parse_vlan_id(t: Tok<'_>) -> Result<u16, FilterError> {
    let invalid = |reason: &str| FilterError::Invalid {
        what: "VLAN id",
        token: t.text.into(),
        column: t.col,
        reason: reason.into(),
    };
    match parse_decimal(t.text) {
        // 0 is how the decoder reports "untagged", so `vlan 0` could only mislead.
        Some(0) => Err(invalid(
            "VLAN ids are 1 to 4095 (use 'not vlan' for untagged)",
        )),
        Some(n) if n <= 4095 => Ok(n as u16),
        Some(_) => Err(invalid("VLAN ids are 1 to 4095")),
        None => Err(invalid("not a number")),
    }
}

enum PortError {
    NotPort,
    OutOfRange,
}

/// Well-known service names, for `port http` and the like. Lookups happen at parse time
/// only. Kept short on purpose: no /etc/services, so a filter means the same everywhere.
const PORT_NAMES: [(&str, u16); 28] = [
    ("ftp-data", 20),
    ("ftp", 21),
    ("ssh", 22),
    ("telnet", 23),
    ("smtp", 25),
    ("domain", 53),
    ("dns", 53),
    ("http", 80),
    ("www", 80),
    ("kerberos", 88),
    ("pop3", 110),
    ("ntp", 123),
    ("imap", 143),
    ("snmp", 161),
    ("bgp", 179),
    ("ldap", 389),
    ("https", 443),
    ("syslog", 514),
    ("ldaps", 636),
    ("nfs", 2049),
    ("mysql", 3306),
    ("postgresql", 5432),
    ("postgres", 5432),
    ("amqp", 5672),
    ("redis", 6379),
    ("http-alt", 8080),
    ("kafka", 9092),
    ("memcached", 11211),
];

fn parse_port(s: &str) -> Result<u16, PortError> {
    if let Some(n) = parse_decimal(s) {
        return u16::try_from(n).map_err(|_| PortError::OutOfRange);
    }
    PORT_NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(s))
        .map(|&(_, p)| p)
        .ok_or(PortError::NotPort)
}

/// `N-M`. Names may themselves contain '-' (`ftp-data`), so try every '-' as the split.
fn parse_port_range(s: &str) -> Result<(u16, u16), PortError> {
    let mut out_of_range = false;
    for (i, _) in s.match_indices('-') {
        let (a, b) = (&s[..i], &s[i + 1..]);
        match (parse_port(a), parse_port(b)) {
            (Ok(lo), Ok(hi)) => return Ok((lo, hi)),
            (Err(PortError::OutOfRange), _) | (_, Err(PortError::OutOfRange)) => {
                out_of_range = true
            }
            _ => {}
        }
    }
    Err(if out_of_range {
        PortError::OutOfRange
    } else {
        PortError::NotPort
    })
}

enum NetError {
    /// Not shaped like an address at all: reported as "expected a network".
    NotAddress,
    /// An address-like value with something wrong: reported with the reason.
    Invalid(String),
}

/// `ADDR/LEN`, `ADDR` (full length), or a shortened IPv4 network (`10`, `10.1/16`).
fn parse_net(s: &str) -> Result<(IpAddr, u8), NetError> {
    let (a, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    let (addr, implied_len) = if let Ok(addr) = a.parse::<IpAddr>() {
        (addr, if addr.is_ipv4() { 32 } else { 128 })
    } else if let Some((addr, octets)) = parse_short_v4(a) {
        (IpAddr::V4(addr), octets * 8)
    } else if looks_like_address(a) {
        return Err(NetError::Invalid(format!("'{a}' is not an IP address")));
    } else {
        return Err(NetError::NotAddress);
    };
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let len = match len {
        None => implied_len,
        Some(l) => match parse_decimal(l) {
            Some(n) if n <= max => n as u8,
            Some(_) => {
                return Err(NetError::Invalid(format!(
                    "prefix length {l} is longer than {max}"
                )));
            }
            None => {
                return Err(NetError::Invalid(format!(
                    "prefix length '{l}' is not a number"
                )));
            }
        },
    };
    // Bits past the prefix are almost always a typo (`10.0.0.1/8` for `10.0.0.0/8`):
    // refuse them, as tcpdump does, instead of guessing.
    let masked = match addr {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from_bits(v4.to_bits() & mask4(len))),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask6(len))),
    };
    if masked != addr {
        return Err(NetError::Invalid(format!(
            "bits set past the /{len} prefix (did you mean {masked}/{len}?)"
        )));
    }
    Ok((addr, len))
}

/// One to three dotted decimal octets: tcpdump's shorthand for a classful-looking net.
fn parse_short_v4(s: &str) -> Option<(Ipv4Addr, u8)> {
    let mut octets = [0u8; 4];
    let mut n = 0usize;
    for part in s.split('.') {
        if n >= 3 {
            return None;
        }
        let v = parse_decimal(part)?;
        *octets.get_mut(n)? = u8::try_from(v).ok()?;
        n += 1;
    }
    Some((Ipv4Addr::from(octets), n as u8))
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

    fn other4(src: [u8; 4], dst: [u8; 4], proto: u8) -> Packet<'static> {
        let mut f = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(src, dst, 64)
            .write(&mut f, IpNumber(proto), b"sctp-ish")
            .unwrap();
        decoded(f)
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
            other4([10, 0, 0, 1], [10, 0, 0, 2], 132),
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
        // A bare address is `host`, a direction alone implies `host`.
        assert!(m("10.0.0.1", &p));
        assert!(!m("10.0.0.9", &p));
        assert!(m("src 10.0.0.1", &p));
        assert!(!m("dst 10.0.0.1", &p));
        // Combined directions.
        assert!(m("src or dst host 10.0.0.2", &p));
        assert!(!m("src and dst host 10.0.0.2", &p));
        assert!(m("src and dst net 10.0.0.0/24", &p));

        let q = tcp6("fd00::1", 1234, "fd00::2", 443);
        assert!(m("host fd00::1", &q));
        assert!(m("fd00::2", &q));
        assert!(m("src host fd00::1", &q));
        assert!(!m("dst host fd00::1", &q));
        assert!(m("ip6 dst host fd00::2", &q));
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
        assert!(m("10.0.0.0/8", &p), "a bare network is `net`");
        assert!(m("src 10.0.0.0/8", &p));
        // tcpdump's shortened networks.
        assert!(m("net 10", &p));
        assert!(m("net 192.168.1", &p));
        assert!(!m("net 192.168.2", &p));
        assert!(m("net 10/8", &p));

        let q = udp6_vlan(42, "fd00::1", 5353, "fe80::1", 53);
        assert!(m("net fd00::/8", &q));
        assert!(m("src net fd00::/8", &q));
        assert!(!m("dst net fd00::/8", &q));
        assert!(m("dst net fe80::/10", &q));
        assert!(m("net ::/0", &q));
        assert!(!m("net ::/0", &p), "a v6 net never matches v4");
        assert!(!m("net 0.0.0.0/0", &q), "a v4 net never matches v6");
    }

    #[test]
    fn ports_are_tcp_and_udp_only() {
        let t = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let u = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        let ping = icmp4_echo([10, 0, 0, 1], [10, 0, 0, 2], 80);
        let ping6 = icmp6_echo("fd00::1", "fd00::2", 443);
        let sctp = other4([10, 0, 0, 1], [10, 0, 0, 2], 132);
        assert!(m("port 80", &t));
        assert!(m("port 40000", &t));
        assert!(!m("port 81", &t));
        assert!(m("src port 40000", &t) && !m("src port 80", &t));
        assert!(m("dst port 80", &t) && !m("dst port 40000", &t));
        assert!(m("port 53", &u) && m("dst port 53", &u) && m("src port 5353", &u));
        assert!(m("portrange 50-60", &u));
        assert!(m("portrange 53-53", &u));
        assert!(!m("portrange 54-5000", &u));
        assert!(m("src portrange 5000-6000", &u) && !m("dst portrange 5000-6000", &u));
        assert!(m("portrange 0-65535", &t));
        // ICMP echo ids are not ports, nor is anything on a portless protocol.
        assert!(!m("port 80", &ping));
        assert!(!m("port 443", &ping6));
        assert!(!m("portrange 0-65535", &ping));
        assert!(!m("port 0", &sctp));
        assert!(!m("portrange 0-65535", &sctp));
        // The same over IPv6.
        let t6 = tcp6("fd00::1", 1234, "fd00::2", 443);
        assert!(m("port 443", &t6) && m("dst port 443", &t6) && m("src port 1234", &t6));
    }

    #[test]
    fn named_ports() {
        let t = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let u = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        let r = tcp4_vlan(100, [10, 0, 0, 1], 1234, [10, 0, 0, 3], 6379);
        assert!(m("port http", &t) && m("port HTTP", &t) && !m("port https", &t));
        assert!(m("port dns", &u) && m("port domain", &u));
        assert!(m("dst port redis", &r));
        assert!(
            m("portrange ftp-data-http", &t),
            "names with '-' in a range"
        );
        assert!(m("portrange 1-http", &t));
    }

    #[test]
    fn protocols_and_families() {
        let s = samples();
        let count = |e: &str| s.iter().filter(|p| m(e, p)).count();
        assert_eq!(count("tcp"), 6);
        assert_eq!(count("udp"), 3);
        assert_eq!(count("icmp"), 1);
        assert_eq!(count("icmp6"), 1);
        assert_eq!(count("ip"), 8);
        assert_eq!(count("ip6"), 4);
        assert_eq!(count("proto 132"), 1);
        assert_eq!(count("proto sctp"), 1);
        assert_eq!(count("proto 6"), count("tcp"));
        assert_eq!(count("proto \\tcp"), count("tcp"));
        assert_eq!(count("proto udp"), count("udp"));
        assert_eq!(count("ip proto 6"), 4);
        assert_eq!(count("ip6 proto 6"), 2);
        assert_eq!(count("ip6 proto 58"), 1);
        assert_eq!(count("ip proto icmp"), 1);
        assert_eq!(count("ip or ip6"), s.len());
        // A protocol qualifier on a port: `tcp port 53` is not UDP DNS.
        let u = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        assert!(!m("tcp port 53", &u));
        assert!(m("udp port 53", &u));
        assert!(m("udp dst port 53", &u));
        assert!(m("udp src or dst portrange 50-60", &u));
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
            "TCP AND PORT 80",
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
    }

    #[test]
    fn precedence_not_over_and_over_or() {
        let tcp80 = tcp4([10, 0, 0, 1], 40000, [10, 0, 0, 2], 80);
        let udp80 = udp4([172, 16, 0, 1], 80, [172, 16, 0, 2], 80);
        let udp53 = udp4([10, 1, 2, 3], 5353, [192, 168, 1, 1], 53);
        let tcp443 = tcp4([192, 168, 1, 5], 5000, [10, 9, 9, 9], 443);

        // `not tcp and port 80` is `(not tcp) and port 80`, not `not (tcp and port 80)`.
        let e = "not tcp and port 80";
        assert!(m(e, &udp80));
        assert!(!m(e, &tcp80));
        assert!(
            !m(e, &udp53),
            "would match if `not` bound looser than `and`"
        );

        // `tcp or udp and port 53` is `tcp or (udp and port 53)`.
        let e = "tcp or udp and port 53";
        assert!(
            m(e, &tcp443),
            "would not match with tcpdump's equal precedence"
        );
        assert!(m(e, &udp53));
        assert!(!m(e, &udp80));
        assert_eq!(m(e, &tcp443), m("tcp or (udp and port 53)", &tcp443));
        assert_ne!(m(e, &tcp443), m("(tcp or udp) and port 53", &tcp443));

        // `and` binds tighter on both sides of an `or`.
        let e = "udp and port 53 or tcp and port 443";
        assert!(m(e, &udp53) && m(e, &tcp443) && !m(e, &tcp80) && !m(e, &udp80));
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
        // tcpdump's example: `not host a and b` is `not host a and host b`.
        assert!(m("not host 10.0.0.1 and 10.9.9.9", &tcp443));
        assert!(!m("not host 10.0.0.1 and 10.9.9.9", &tcp80));
        // Also across `not` and parentheses.
        assert!(m("port 80 and not 443", &tcp80));
        assert!(m("port 1 or (443 and tcp)", &tcp443));
        // A later bare address after a bare address is simply another host.
        assert!(m("10.0.0.99 or 10.0.0.1", &tcp80));
    }

    #[test]
    fn compiled_program_is_compact() {
        // `not` costs nothing and each primitive is one instruction.
        assert_eq!(filter("not not not tcp").prog.len(), 1);
        assert_eq!(filter("tcp and (udp or not icmp)").prog.len(), 3);
        assert_eq!(filter("tcp port 80").prog.len(), 2);
        assert_eq!(filter("ip proto 6").prog.len(), 2);
        assert_eq!(filter("host 10.0.0.1").prog.len(), 1);
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
            "unknown keyword 'foo' at column 1 (expected host, net, port, portrange, src, \
             dst, tcp, udp, icmp, icmp6, ip, ip6, vlan, proto or an IP address)"
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
            err("10.0.0.0/99"),
            "invalid network '10.0.0.0/99' at column 1: prefix length 99 is longer than 32"
        );

        // Bad hosts.
        assert_eq!(
            err("host example.com"),
            "expected an IP address after 'host' at column 6, found 'example.com'"
        );
        assert_eq!(
            err("10.0.0.300"),
            "expected an IP address or network at column 1, found '10.0.0.300'"
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
            err("portrange 80"),
            "expected a port range (N-M) after 'portrange' at column 11, found '80'"
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
    }

    #[test]
    fn columns_count_characters_not_bytes() {
        // U+00A0 is whitespace but two bytes in UTF-8.
        let e = Filter::parse("tcp\u{a0}and\u{a0}foo").unwrap_err();
        assert_eq!(e.column(), 9);
        assert!(err("tcp and ünknown").starts_with("unknown keyword 'ünknown' at column 9"));
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

    /// With only the parentheses precedence requires, so the parser's precedence is what
    /// decides the meaning. Binding strength: or 1, and 2, not 3, primitive 4.
    fn render_min(e: &Expr, min: u8) -> String {
        let (s, strength) = match e {
            Expr::Prim(s) => (s.to_string(), 4),
            Expr::Not(a) => (format!("not {}", render_min(a, 3)), 3),
            Expr::And(a, b) => (format!("{} and {}", render_min(a, 2), render_min(b, 2)), 2),
            Expr::Or(a, b) => (format!("{} or {}", render_min(a, 1), render_min(b, 1)), 1),
        };
        if strength < min { format!("({s})") } else { s }
    }

    #[test]
    fn property_not_is_negation_and_operators_match_reference() {
        let packets = samples();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        for _ in 0..400 {
            let e = gen_expr(&mut rng, 4);
            let full = render_full(&e, &mut rng);
            let min = render_min(&e, 0);
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
