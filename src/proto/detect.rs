//! Protocol detection: by content first, with the port as a hint.
//!
//! A server on a non-standard port is still recognised from its first bytes; the port only
//! breaks ties and rescues protocols whose first message is not distinctive (DNS). Each
//! protocol can be switched off or given extra ports in config (`[protocols.<name>]`).

use serde::Deserialize;

use super::http2::parser::{self, FrameHeader, HEADER_LEN};
use super::{Direction, Protocol};

/// Whether a decoder runs, and which ports hint at it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolSwitch {
    /// Decode this protocol at all. Default true.
    pub enabled: bool,
    /// Extra server ports that hint at this protocol (added to the built-in ones).
    pub ports: Vec<u16>,
}

impl Default for ProtocolSwitch {
    fn default() -> Self {
        ProtocolSwitch {
            enabled: true,
            ports: Vec::new(),
        }
    }
}

/// `[protocols]`: one switch per application protocol, and the request timeout.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProtocolsConfig {
    /// A request with no response for this long is reported incomplete (`no_response`,
    /// `error.type = "timeout"`). Default 30 s.
    pub transaction_timeout_secs: u64,
    pub http: ProtocolSwitch,
    pub http2: ProtocolSwitch,
    pub dns: ProtocolSwitch,
    pub tls: ProtocolSwitch,
}

impl Default for ProtocolsConfig {
    fn default() -> Self {
        ProtocolsConfig {
            transaction_timeout_secs: 30,
            http: ProtocolSwitch::default(),
            http2: ProtocolSwitch::default(),
            dns: ProtocolSwitch::default(),
            tls: ProtocolSwitch::default(),
        }
    }
}

impl ProtocolsConfig {
    fn switch(&self, p: Protocol) -> Option<&ProtocolSwitch> {
        match p {
            Protocol::Http => Some(&self.http),
            Protocol::Http2 | Protocol::Grpc => Some(&self.http2),
            Protocol::Dns => Some(&self.dns),
            Protocol::Tls => Some(&self.tls),
            _ => None,
        }
    }

    pub fn enabled(&self, p: Protocol) -> bool {
        self.switch(p).is_some_and(|s| s.enabled)
    }

    fn port_hint(&self, p: Protocol, port: u16) -> bool {
        let builtin: &[u16] = match p {
            Protocol::Http => &[80, 8080, 8000, 8081, 3000, 5000, 9090],
            Protocol::Http2 => &[50051],
            Protocol::Dns => &[53, 5353, 5053],
            Protocol::Tls => &[443, 8443, 6443],
            _ => &[],
        };
        builtin.contains(&port) || self.switch(p).is_some_and(|s| s.ports.contains(&port))
    }
}

/// The transport a flow runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// How an HTTP/1 request line starts (method and space).
pub const HTTP_METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"HEAD ",
    b"OPTIONS ",
    b"PATCH ",
    b"CONNECT ",
    b"TRACE ",
];
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Outcome of looking at the first bytes of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Found(Protocol),
    /// Could still be something: look at the next chunk (e.g. fewer bytes than a signature).
    NeedMore,
    /// Nothing podtap decodes.
    Unknown,
}

/// Guess the protocol of a flow from the first bytes seen in `dir`.
pub fn detect(
    bytes: &[u8],
    dir: Direction,
    transport: Transport,
    server_port: u16,
    cfg: &ProtocolsConfig,
) -> Detection {
    let found = |p: Protocol| {
        if cfg.enabled(p) {
            Detection::Found(p)
        } else {
            Detection::Unknown
        }
    };
    match transport {
        Transport::Udp => {
            if looks_like_dns(bytes)
                && (cfg.port_hint(Protocol::Dns, server_port) || dir == Direction::ToServer)
            {
                return if cfg.port_hint(Protocol::Dns, server_port) || strict_dns_query(bytes) {
                    found(Protocol::Dns)
                } else {
                    Detection::Unknown
                };
            }
            Detection::Unknown
        }
        Transport::Tcp => {
            if bytes.is_empty() {
                return Detection::NeedMore;
            }
            // HTTP/2 prior knowledge: the client preface.
            let n = bytes.len().min(H2_PREFACE.len());
            if bytes[..n] == H2_PREFACE[..n] {
                return if n == H2_PREFACE.len() {
                    found(Protocol::Http2)
                } else {
                    Detection::NeedMore
                };
            }
            if HTTP_METHODS.iter().any(|m| bytes.starts_with(m)) || bytes.starts_with(b"HTTP/1.") {
                return found(Protocol::Http);
            }
            if HTTP_METHODS.iter().any(|m| m.starts_with(bytes)) || b"HTTP/1.".starts_with(bytes) {
                return Detection::NeedMore;
            }
            // TLS: handshake record (22), version 3.x, ClientHello (1) or ServerHello (2).
            if bytes[0] == 0x16 {
                if bytes.len() < 6 {
                    return Detection::NeedMore;
                }
                if bytes[1] == 3 && bytes[2] <= 4 && (bytes[5] == 1 || bytes[5] == 2) {
                    return found(Protocol::Tls);
                }
            }
            // DNS over TCP: a 2-byte length then a DNS header.
            if bytes.len() >= 14 && cfg.port_hint(Protocol::Dns, server_port) {
                let len = u16::from_be_bytes([bytes[0], bytes[1]]) as usize;
                if len >= 12 && looks_like_dns(&bytes[2..]) {
                    return found(Protocol::Dns);
                }
            }
            // HTTP/2 picked up midstream: on a port configured for it, one valid frame
            // header is enough; elsewhere the bytes must look like HTTP/2 beyond doubt.
            if bytes.len() < HEADER_LEN && bytes[0] == 0 {
                return Detection::NeedMore;
            }
            let hinted = cfg.port_hint(Protocol::Http2, server_port);
            if h2_midstream(bytes, hinted) {
                return found(Protocol::Http2);
            }
            Detection::Unknown
        }
    }
}

/// Whether `b` (the first bytes seen of a direction) is a run of valid HTTP/2 frame
/// headers. With `hinted` (a port configured for HTTP/2) one plausible header suffices;
/// otherwise it takes two chained headers, a HEADERS frame whose block starts with an
/// indexed pseudo-header (`:method`, `:scheme`, `:path`, `:status` from the static
/// table), or a SETTINGS frame whose visible parameters are all defined ones.
fn h2_midstream(b: &[u8], hinted: bool) -> bool {
    let mut at = 0;
    let mut headers = 0;
    while let Some(h) = b.get(at..).and_then(FrameHeader::parse) {
        if !h.plausible() {
            return false;
        }
        headers += 1;
        if hinted || headers >= 2 {
            return true;
        }
        let payload = &b[at + HEADER_LEN..];
        match h.ty {
            parser::HEADERS => {
                let mut i = 0;
                if h.has(parser::PADDED) {
                    i += 1;
                }
                if h.has(parser::PRIORITY_FLAG) {
                    i += 5;
                }
                if payload.get(i).is_some_and(|&c| (0x82..=0x8e).contains(&c)) {
                    return true;
                }
            }
            parser::SETTINGS if !h.has(parser::ACK) && h.len > 0 => {
                let visible = &payload[..payload.len().min(h.len as usize)];
                let ids_ok = visible
                    .chunks_exact(6)
                    .all(|p| p[0] == 0 && matches!(p[1], 1..=6 | 8 | 9));
                if ids_ok && visible.len() >= 6 {
                    return true;
                }
            }
            _ => {}
        }
        at += HEADER_LEN + h.len as usize;
    }
    false
}

/// A DNS header that is plausible: opcode 0-5, counts small, a question present.
fn looks_like_dns(b: &[u8]) -> bool {
    if b.len() < 12 {
        return false;
    }
    let opcode = (b[2] >> 3) & 0x0f;
    let qd = u16::from_be_bytes([b[4], b[5]]);
    let an = u16::from_be_bytes([b[6], b[7]]);
    let ns = u16::from_be_bytes([b[8], b[9]]);
    let ar = u16::from_be_bytes([b[10], b[11]]);
    opcode <= 5 && (1..=4).contains(&qd) && an < 512 && ns < 512 && ar < 512
}

/// Off the DNS ports, only accept a query whose question section parses exactly.
fn strict_dns_query(b: &[u8]) -> bool {
    if b[2] & 0x80 != 0 || u16::from_be_bytes([b[6], b[7]]) != 0 {
        return false;
    }
    let mut i = 12;
    while let Some(&len) = b.get(i) {
        if len == 0 {
            return b.len() >= i + 5;
        }
        if len > 63 {
            return false;
        }
        i += 1 + len as usize;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    fn d(b: &[u8], t: Transport, port: u16) -> Detection {
        detect(b, ToServer, t, port, &ProtocolsConfig::default())
    }

    #[test]
    fn http_on_any_port() {
        assert_eq!(
            d(b"GET / HTTP/1.1\r\n", Transport::Tcp, 12345),
            Detection::Found(Protocol::Http)
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\n", Transport::Tcp, 12345),
            Detection::Found(Protocol::Http)
        );
        assert_eq!(d(b"GE", Transport::Tcp, 12345), Detection::NeedMore);
        assert_eq!(
            d(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Transport::Tcp, 1),
            Detection::Found(Protocol::Http2)
        );
        assert_eq!(d(b"PRI * HT", Transport::Tcp, 1), Detection::NeedMore);
    }

    #[test]
    fn tls_and_dns() {
        assert_eq!(
            d(&[0x16, 3, 1, 0, 200, 1, 0], Transport::Tcp, 9999),
            Detection::Found(Protocol::Tls)
        );
        let q = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
        ];
        assert_eq!(d(&q, Transport::Udp, 53), Detection::Found(Protocol::Dns));
        assert_eq!(
            d(&q, Transport::Udp, 4000),
            Detection::Found(Protocol::Dns),
            "strict parse off-port"
        );
        assert_eq!(
            d(b"hello world, not dns", Transport::Udp, 4000),
            Detection::Unknown
        );
        let mut tcp = vec![0, q.len() as u8];
        tcp.extend_from_slice(&q);
        assert_eq!(d(&tcp, Transport::Tcp, 53), Detection::Found(Protocol::Dns));
    }

    #[test]
    fn disabled_protocols_are_not_detected() {
        let mut cfg = ProtocolsConfig::default();
        cfg.http.enabled = false;
        assert_eq!(
            detect(b"GET / HTTP/1.1\r\n", ToServer, Transport::Tcp, 80, &cfg),
            Detection::Unknown
        );
    }

    #[test]
    fn http2_midstream_by_content_and_by_port() {
        // HEADERS on stream 1 whose block starts with :method POST (static index 3).
        let headers = [0, 0, 0x46, 1, 4, 0, 0, 0, 1, 0x83, 0x86, 0x41];
        assert_eq!(
            d(&headers, Transport::Tcp, 30035),
            Detection::Found(Protocol::Http2)
        );
        // SETTINGS ACK then PING: two chained valid headers.
        let mut two = vec![0, 0, 0, 4, 1, 0, 0, 0, 0];
        two.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            d(&two, Transport::Tcp, 7070),
            Detection::Found(Protocol::Http2)
        );
        // A lone DATA frame header: only on a port configured for HTTP/2.
        let data = [0, 0, 0x20, 0, 0, 0, 0, 0, 5, 1, 2, 3];
        assert_eq!(d(&data, Transport::Tcp, 7070), Detection::Unknown);
        assert_eq!(
            d(&data, Transport::Tcp, 50051),
            Detection::Found(Protocol::Http2)
        );
        let mut cfg = ProtocolsConfig::default();
        cfg.http2.ports.push(7070);
        assert_eq!(
            detect(&data, ToServer, Transport::Tcp, 7070, &cfg),
            Detection::Found(Protocol::Http2)
        );
        // Other binary protocols are not HTTP/2.
        for b in [
            &b"\x00\x00\x00\x0a\x00\x03\x00\x00\x00\x00\x00\x01xy"[..],
            b"\x4a\x00\x00\x00\x0a5.7.30-log\x00",
            b"\xda\xbb\xc2\x00\x00\x00\x00\x00",
        ] {
            assert_eq!(d(b, Transport::Tcp, 9999), Detection::Unknown, "{b:?}");
        }
    }
}
