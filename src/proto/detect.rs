//! Protocol detection: by content first, with the port as a hint.
//!
//! A server on a non-standard port is still recognised from its first bytes; the port only
//! breaks ties and rescues protocols whose first message is not distinctive (DNS). The
//! knowledge of each protocol lives in its decoder's probe; this asks them all
//! ([`super::probe_all`]) and decides. Each protocol can be switched off or given extra
//! ports in config (`[protocols.<name>]`).

use super::{Confidence, DecoderKind, Direction, ProtocolsConfig};

/// The transport a flow runs over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Tcp,
    Udp,
}

/// Outcome of looking at the first bytes of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detection {
    Found(DecoderKind),
    /// Could still be something: look at the next chunk (e.g. fewer bytes than a signature).
    NeedMore,
    /// Nothing podtap decodes.
    Unknown,
}

/// Guess the decoder of a flow from the first bytes seen in `dir`. An answer the bytes
/// bear out (`Likely`, `Certain`) wins at once; while a probe still needs more bytes, the
/// decision waits, unless this is the `last` look, when a port hint suffices.
pub fn detect(
    bytes: &[u8],
    dir: Direction,
    transport: Transport,
    server_port: u16,
    cfg: &ProtocolsConfig,
    last: bool,
) -> Detection {
    let (best, kind, more) = super::probe_all(bytes, dir, transport, server_port, cfg);
    match (best, kind) {
        (Confidence::Likely | Confidence::Certain, Some(k)) => Detection::Found(k),
        _ if more && !last => Detection::NeedMore,
        (Confidence::Port, Some(k)) => Detection::Found(k),
        _ => Detection::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Direction::*;

    fn d(b: &[u8], t: Transport, port: u16) -> Detection {
        detect(b, ToServer, t, port, &ProtocolsConfig::default(), false)
    }

    #[test]
    fn http_on_any_port() {
        assert_eq!(
            d(b"GET / HTTP/1.1\r\n", Transport::Tcp, 12345),
            Detection::Found(DecoderKind::Http1)
        );
        assert_eq!(
            d(b"HTTP/1.1 200 OK\r\n", Transport::Tcp, 12345),
            Detection::Found(DecoderKind::Http1)
        );
        assert_eq!(d(b"GE", Transport::Tcp, 12345), Detection::NeedMore);
        assert_eq!(
            d(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", Transport::Tcp, 1),
            Detection::Found(DecoderKind::Http2)
        );
        assert_eq!(d(b"PRI * HT", Transport::Tcp, 1), Detection::NeedMore);
    }

    #[test]
    fn tls_and_dns() {
        assert_eq!(
            d(&[0x16, 3, 1, 0, 200, 1, 0], Transport::Tcp, 9999),
            Detection::Found(DecoderKind::Tls)
        );
        let q = [
            0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, b'c', b'o', b'm', 0, 0, 1, 0, 1,
        ];
        assert_eq!(
            d(&q, Transport::Udp, 53),
            Detection::Found(DecoderKind::Dns)
        );
        assert_eq!(
            d(&q, Transport::Udp, 4000),
            Detection::Found(DecoderKind::Dns),
            "strict parse off-port"
        );
        assert_eq!(
            d(b"hello world, not dns", Transport::Udp, 4000),
            Detection::Unknown
        );
        let mut tcp = vec![0, q.len() as u8];
        tcp.extend_from_slice(&q);
        assert_eq!(
            d(&tcp, Transport::Tcp, 53),
            Detection::Found(DecoderKind::Dns)
        );
    }

    #[test]
    fn disabled_protocols_are_not_detected() {
        let mut cfg = ProtocolsConfig::default();
        cfg.http1.enabled = false;
        assert_eq!(
            detect(
                b"GET / HTTP/1.1\r\n",
                ToServer,
                Transport::Tcp,
                80,
                &cfg,
                false
            ),
            Detection::Unknown
        );
    }

    #[test]
    fn http2_midstream_by_content_and_by_port() {
        // HEADERS on stream 1 whose block starts with :method POST (static index 3).
        let headers = [0, 0, 0x46, 1, 4, 0, 0, 0, 1, 0x83, 0x86, 0x41];
        assert_eq!(
            d(&headers, Transport::Tcp, 30035),
            Detection::Found(DecoderKind::Http2)
        );
        // SETTINGS ACK then PING: two chained valid headers.
        let mut two = vec![0, 0, 0, 4, 1, 0, 0, 0, 0];
        two.extend_from_slice(&[0, 0, 8, 6, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            d(&two, Transport::Tcp, 7070),
            Detection::Found(DecoderKind::Http2)
        );
        // A lone DATA frame header: HTTP/2 only on a port configured for it (elsewhere its
        // first bytes also read as the start of a Kafka request: more are needed).
        let data = [0, 0, 0x20, 0, 0, 0, 0, 0, 5, 1, 2, 3];
        assert_ne!(
            d(&data, Transport::Tcp, 7070),
            Detection::Found(DecoderKind::Http2)
        );
        assert_eq!(
            d(&data, Transport::Tcp, 50051),
            Detection::Found(DecoderKind::Http2)
        );
        let mut cfg = ProtocolsConfig::default();
        cfg.http2.ports.push(7070);
        assert_eq!(
            detect(&data, ToServer, Transport::Tcp, 7070, &cfg, false),
            Detection::Found(DecoderKind::Http2)
        );
        // Other binary protocols are not HTTP/2.
        for b in [
            &b"\x00\x00\x00\x0a\x00\x03\x00\x00\x00\x00\x00\x01xy"[..],
            b"\x4a\x00\x00\x00\x0a5.7.30-log\x00",
            b"\xda\xbb\xc2\x00\x00\x00\x00\x00",
        ] {
            // (Another probe may ask for more bytes: the last one could start a
            // compressed MySQL packet.)
            assert!(
                matches!(
                    d(b, Transport::Tcp, 9999),
                    Detection::Unknown | Detection::NeedMore
                ),
                "{b:?}"
            );
            let last = detect(
                b,
                ToServer,
                Transport::Tcp,
                9999,
                &ProtocolsConfig::default(),
                true,
            );
            assert_ne!(last, Detection::Found(DecoderKind::Http2), "{b:?}");
        }
    }
}
