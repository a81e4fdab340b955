//! The TLS wire format, zero-copy: record headers, ClientHello, ServerHello and alerts as
//! views that report malformed input as a [`TlsError`], and the IANA name tables.

use compact_str::{CompactString, format_compact};

pub const RECORD_HEADER_LEN: usize = 5;
/// Largest record payload a peer may send: 2^14 plus the 2048 bytes of expansion that
/// TLS 1.2 allows for ciphertext.
pub const MAX_RECORD_LEN: u16 = 16384 + 2048;

pub const CONTENT_CHANGE_CIPHER_SPEC: u8 = 20;
pub const CONTENT_ALERT: u8 = 21;
pub const CONTENT_HANDSHAKE: u8 = 22;
pub const CONTENT_APPLICATION_DATA: u8 = 23;
pub const CONTENT_HEARTBEAT: u8 = 24;

pub const HANDSHAKE_CLIENT_HELLO: u8 = 1;
pub const HANDSHAKE_SERVER_HELLO: u8 = 2;

pub const EXT_SERVER_NAME: u16 = 0;
pub const EXT_ALPN: u16 = 16;
pub const EXT_PRE_SHARED_KEY: u16 = 41;
pub const EXT_SUPPORTED_VERSIONS: u16 = 43;

/// `ServerHello.random` of a HelloRetryRequest: SHA-256 of "HelloRetryRequest"
/// (RFC 8446 §4.1.3).
pub(crate) const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Longest SNI kept (a DNS name is at most 253 characters; longer is not a host name).
pub(crate) const MAX_SNI_TEXT: usize = 255;
/// Longest comma-joined list kept for the offered ALPN protocols and versions.
pub(crate) const MAX_LIST_TEXT: usize = 256;

/// Why a TLS structure could not be decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsError {
    /// The bytes end before the structure they announce.
    Truncated,
    /// Inconsistent lengths or values.
    Malformed,
}

impl std::fmt::Display for TlsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TlsError::Truncated => "truncated",
            TlsError::Malformed => "malformed",
        })
    }
}

impl std::error::Error for TlsError {}

/// A bounds-checked cursor: every read is an `Option`-free `Result`, never a panic.
#[derive(Clone, Copy)]
pub(crate) struct Rd<'a>(&'a [u8]);

impl<'a> Rd<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], TlsError> {
        if n > self.0.len() {
            return Err(TlsError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, TlsError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, TlsError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u8()? as usize;
        self.take(n)
    }
    fn vec16(&mut self) -> Result<&'a [u8], TlsError> {
        let n = self.u16()? as usize;
        self.take(n)
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The 5-byte record header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordHeader {
    pub content_type: u8,
    pub version: u16,
    pub length: u16,
}

impl RecordHeader {
    pub fn parse(b: &[u8]) -> Result<RecordHeader, TlsError> {
        let mut r = Rd(b);
        Ok(RecordHeader {
            content_type: r.u8()?,
            version: r.u16()?,
            length: r.u16()?,
        })
    }

    /// A known content type, an SSL 3.0 to TLS 1.3 record version and a length within
    /// the protocol's limit: what real TLS records always satisfy, and random bytes
    /// rarely do (used to recognise TLS and to resume after a gap).
    pub fn is_plausible(&self) -> bool {
        (CONTENT_CHANGE_CIPHER_SPEC..=CONTENT_HEARTBEAT).contains(&self.content_type)
            && self.version >> 8 == 3
            && self.version & 0xff <= 4
            && self.length <= MAX_RECORD_LEN
    }
}

/// Iterator over an extension block: (type, data). Stops at the first malformed entry.
#[derive(Clone)]
pub struct Extensions<'a>(Rd<'a>);

impl<'a> Iterator for Extensions<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.0.is_empty() {
            return None;
        }
        let mut r = self.0;
        match (r.u16(), r.vec16()) {
            (Ok(t), Ok(data)) => {
                self.0 = r;
                Some((t, data))
            }
            _ => {
                self.0 = Rd(&[]);
                None
            }
        }
    }
}

/// Check that an extension block is exactly a sequence of well-framed extensions.
pub(crate) fn check_extensions(mut r: Rd) -> Result<(), TlsError> {
    while !r.is_empty() {
        r.u16()?;
        r.vec16()?;
    }
    Ok(())
}

/// Iterator over the protocol names of an ALPN `ProtocolNameList`.
#[derive(Clone)]
pub struct ProtocolNames<'a>(Rd<'a>);

impl<'a> Iterator for ProtocolNames<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        if self.0.is_empty() {
            return None;
        }
        let name = self.0.vec8().ok();
        if name.is_none() {
            self.0 = Rd(&[]);
        }
        name
    }
}

pub(crate) fn alpn_list(ext: Option<&[u8]>) -> ProtocolNames<'_> {
    let list = ext.and_then(|e| Rd(e).vec16().ok()).unwrap_or_default();
    ProtocolNames(Rd(list))
}

/// A ClientHello handshake message body (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).
#[derive(Clone, Copy, Debug)]
pub struct ClientHello<'a> {
    pub legacy_version: u16,
    pub random: &'a [u8],
    pub session_id: &'a [u8],
    cipher_suites: &'a [u8],
    compression_methods: &'a [u8],
    extensions: &'a [u8],
}

impl<'a> ClientHello<'a> {
    pub fn parse(body: &'a [u8]) -> Result<ClientHello<'a>, TlsError> {
        let mut r = Rd(body);
        let legacy_version = r.u16()?;
        let random = r.take(32)?;
        let session_id = r.vec8()?;
        let cipher_suites = r.vec16()?;
        let compression_methods = r.vec8()?;
        // Extensions are optional before TLS 1.3 (no block at all).
        let extensions = if r.is_empty() { &[][..] } else { r.vec16()? };
        if session_id.len() > 32 || cipher_suites.len() % 2 != 0 {
            return Err(TlsError::Malformed);
        }
        check_extensions(Rd(extensions))?;
        Ok(ClientHello {
            legacy_version,
            random,
            session_id,
            cipher_suites,
            compression_methods,
            extensions,
        })
    }

    /// The offered cipher suites, GREASE values included.
    pub fn cipher_suites(&self) -> impl Iterator<Item = u16> + 'a {
        self.cipher_suites
            .chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }

    pub fn compression_methods(&self) -> &'a [u8] {
        self.compression_methods
    }

    pub fn extensions(&self) -> Extensions<'a> {
        Extensions(Rd(self.extensions))
    }

    pub fn extension(&self, t: u16) -> Option<&'a [u8]> {
        self.extensions().find(|e| e.0 == t).map(|e| e.1)
    }

    /// The first `host_name` of the server_name extension (RFC 6066 §3), as sent.
    pub fn server_name(&self) -> Option<&'a [u8]> {
        let mut list = Rd(Rd(self.extension(EXT_SERVER_NAME)?).vec16().ok()?);
        while !list.is_empty() {
            let kind = list.u8().ok()?;
            let name = list.vec16().ok()?;
            if kind == 0 {
                return Some(name);
            }
        }
        None
    }

    /// The offered application protocols (RFC 7301), in preference order.
    pub fn alpn(&self) -> ProtocolNames<'a> {
        alpn_list(self.extension(EXT_ALPN))
    }

    /// The versions of the supported_versions extension (RFC 8446 §4.2.1), GREASE
    /// included; empty when the extension is absent.
    pub fn supported_versions(&self) -> impl Iterator<Item = u16> + 'a {
        let list = self
            .extension(EXT_SUPPORTED_VERSIONS)
            .and_then(|e| Rd(e).vec8().ok())
            .unwrap_or_default();
        list.chunks_exact(2)
            .map(|c| u16::from_be_bytes([c[0], c[1]]))
    }
}

/// A ServerHello (or HelloRetryRequest) handshake message body.
#[derive(Clone, Copy, Debug)]
pub struct ServerHello<'a> {
    pub legacy_version: u16,
    pub random: &'a [u8],
    pub session_id: &'a [u8],
    pub cipher_suite: u16,
    pub compression_method: u8,
    extensions: &'a [u8],
}

impl<'a> ServerHello<'a> {
    pub fn parse(body: &'a [u8]) -> Result<ServerHello<'a>, TlsError> {
        let mut r = Rd(body);
        let legacy_version = r.u16()?;
        let random = r.take(32)?;
        let session_id = r.vec8()?;
        let cipher_suite = r.u16()?;
        let compression_method = r.u8()?;
        let extensions = if r.is_empty() { &[][..] } else { r.vec16()? };
        if session_id.len() > 32 {
            return Err(TlsError::Malformed);
        }
        check_extensions(Rd(extensions))?;
        Ok(ServerHello {
            legacy_version,
            random,
            session_id,
            cipher_suite,
            compression_method,
            extensions,
        })
    }

    /// A HelloRetryRequest is a ServerHello with a fixed random (RFC 8446 §4.1.3).
    pub fn is_hello_retry_request(&self) -> bool {
        self.random == HRR_RANDOM
    }

    pub fn extensions(&self) -> Extensions<'a> {
        Extensions(Rd(self.extensions))
    }

    pub fn extension(&self, t: u16) -> Option<&'a [u8]> {
        self.extensions().find(|e| e.0 == t).map(|e| e.1)
    }

    /// The negotiated version: the supported_versions extension when present (TLS 1.3),
    /// else the legacy version field.
    pub fn selected_version(&self) -> u16 {
        self.extension(EXT_SUPPORTED_VERSIONS)
            .and_then(|e| Rd(e).u16().ok())
            .unwrap_or(self.legacy_version)
    }

    /// The selected application protocol (TLS 1.2 and older carry it here).
    pub fn alpn(&self) -> Option<&'a [u8]> {
        alpn_list(self.extension(EXT_ALPN)).next()
    }
}

/// A clear-text alert record payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Alert {
    /// 1 = warning, 2 = fatal.
    pub level: u8,
    pub description: u8,
}

impl Alert {
    pub fn parse(b: &[u8]) -> Result<Alert, TlsError> {
        match b {
            [level, description] => Ok(Alert {
                level: *level,
                description: *description,
            }),
            _ if b.len() < 2 => Err(TlsError::Truncated),
            _ => Err(TlsError::Malformed),
        }
    }

    /// Whether the alert ends the handshake: fatal ones, and the closing ones even as
    /// warnings. Other warnings (e.g. `unrecognized_name` before TLS 1.3) let it go on.
    pub fn ends_handshake(&self) -> bool {
        self.level != 1 || matches!(self.description, 0 | 90)
    }
}

/// GREASE values (RFC 8701): reserved code points clients send to keep peers tolerant.
pub fn is_grease(v: u16) -> bool {
    v & 0x0f0f == 0x0a0a && v >> 8 == v & 0xff
}

pub(crate) fn is_tls13(v: u16) -> bool {
    // 0x7fxx are the TLS 1.3 drafts, which behave like 1.3 on the wire.
    v == 0x0304 || v >> 8 == 0x7f
}

/// (`tls.protocol.name`, `tls.protocol.version`) as OpenTelemetry spells them; TLS 1.3
/// drafts count as 1.3.
pub fn version_name(v: u16) -> Option<(&'static str, &'static str)> {
    Some(match v {
        0x0300 => ("ssl", "3"),
        0x0301 => ("tls", "1.0"),
        0x0302 => ("tls", "1.1"),
        0x0303 => ("tls", "1.2"),
        0x0304 => ("tls", "1.3"),
        _ if v >> 8 == 0x7f => ("tls", "1.3"),
        _ => return None,
    })
}

/// The exact version for lists: `1.2`, or hex for drafts and unknown values.
pub(crate) fn version_text(v: u16) -> CompactString {
    match version_name(v) {
        Some((_, n)) if v >> 8 != 0x7f => CompactString::const_new(n),
        _ => format_compact!("0x{v:04x}"),
    }
}

/// The IANA name of the cipher suites seen in practice.
pub fn cipher_suite_name(c: u16) -> Option<&'static str> {
    Some(match c {
        0x0000 => "TLS_NULL_WITH_NULL_NULL",
        0x0004 => "TLS_RSA_WITH_RC4_128_MD5",
        0x0005 => "TLS_RSA_WITH_RC4_128_SHA",
        0x000a => "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
        0x0016 => "TLS_DHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0x002f => "TLS_RSA_WITH_AES_128_CBC_SHA",
        0x0032 => "TLS_DHE_DSS_WITH_AES_128_CBC_SHA",
        0x0033 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
        0x0035 => "TLS_RSA_WITH_AES_256_CBC_SHA",
        0x0038 => "TLS_DHE_DSS_WITH_AES_256_CBC_SHA",
        0x0039 => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
        0x003c => "TLS_RSA_WITH_AES_128_CBC_SHA256",
        0x003d => "TLS_RSA_WITH_AES_256_CBC_SHA256",
        0x0067 => "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
        0x006b => "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
        0x008c => "TLS_PSK_WITH_AES_128_CBC_SHA",
        0x008d => "TLS_PSK_WITH_AES_256_CBC_SHA",
        0x009c => "TLS_RSA_WITH_AES_128_GCM_SHA256",
        0x009d => "TLS_RSA_WITH_AES_256_GCM_SHA384",
        0x009e => "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
        0x009f => "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
        0x00a8 => "TLS_PSK_WITH_AES_128_GCM_SHA256",
        0x00a9 => "TLS_PSK_WITH_AES_256_GCM_SHA384",
        0x00ff => "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
        0x1301 => "TLS_AES_128_GCM_SHA256",
        0x1302 => "TLS_AES_256_GCM_SHA384",
        0x1303 => "TLS_CHACHA20_POLY1305_SHA256",
        0x1304 => "TLS_AES_128_CCM_SHA256",
        0x1305 => "TLS_AES_128_CCM_8_SHA256",
        0x5600 => "TLS_FALLBACK_SCSV",
        0xc009 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
        0xc00a => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
        0xc012 => "TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA",
        0xc013 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
        0xc014 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
        0xc023 => "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
        0xc024 => "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
        0xc027 => "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
        0xc028 => "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
        0xc02b => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        0xc02c => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        0xc02f => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        0xc030 => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        0xc035 => "TLS_ECDHE_PSK_WITH_AES_128_CBC_SHA",
        0xc036 => "TLS_ECDHE_PSK_WITH_AES_256_CBC_SHA",
        0xc09c => "TLS_RSA_WITH_AES_128_CCM",
        0xc09d => "TLS_RSA_WITH_AES_256_CCM",
        0xc09e => "TLS_DHE_RSA_WITH_AES_128_CCM",
        0xc09f => "TLS_DHE_RSA_WITH_AES_256_CCM",
        0xc0ac => "TLS_ECDHE_ECDSA_WITH_AES_128_CCM",
        0xc0ad => "TLS_ECDHE_ECDSA_WITH_AES_256_CCM",
        0xcca8 => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xcca9 => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccaa => "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        0xccab => "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256",
        0xccac => "TLS_ECDHE_PSK_WITH_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

/// The name of an alert description (RFC 8446 §6, RFC 5246 §7.2, RFC 7301, RFC 8701...).
pub fn alert_name(d: u8) -> Option<&'static str> {
    Some(match d {
        0 => "close_notify",
        10 => "unexpected_message",
        20 => "bad_record_mac",
        21 => "decryption_failed",
        22 => "record_overflow",
        30 => "decompression_failure",
        40 => "handshake_failure",
        41 => "no_certificate",
        42 => "bad_certificate",
        43 => "unsupported_certificate",
        44 => "certificate_revoked",
        45 => "certificate_expired",
        46 => "certificate_unknown",
        47 => "illegal_parameter",
        48 => "unknown_ca",
        49 => "access_denied",
        50 => "decode_error",
        51 => "decrypt_error",
        60 => "export_restriction",
        70 => "protocol_version",
        71 => "insufficient_security",
        80 => "internal_error",
        86 => "inappropriate_fallback",
        90 => "user_canceled",
        100 => "no_renegotiation",
        109 => "missing_extension",
        110 => "unsupported_extension",
        111 => "certificate_unobtainable",
        112 => "unrecognized_name",
        113 => "bad_certificate_status_response",
        114 => "bad_certificate_hash_value",
        115 => "unknown_psk_identity",
        116 => "certificate_required",
        120 => "no_application_protocol",
        121 => "ech_required",
        _ => return None,
    })
}

pub(crate) fn alert_text(d: u8) -> CompactString {
    match alert_name(d) {
        Some(n) => CompactString::const_new(n),
        None => format_compact!("{d}"),
    }
}

/// Append `bytes` as printable text, escaping others as `\DDD` (as for DNS names), up to
/// `max` characters: peer-controlled strings must stay bounded and valid UTF-8.
pub(crate) fn push_text(out: &mut CompactString, bytes: &[u8], max: usize) {
    out.reserve(bytes.len().min(max.saturating_sub(out.len())));
    for &b in bytes {
        if out.len() + 4 > max {
            break;
        }
        match b {
            0x21..=0x7e if b != b'\\' => out.push(b as char),
            _ => {
                out.push('\\');
                out.push((b'0' + b / 100) as char);
                out.push((b'0' + (b / 10) % 10) as char);
                out.push((b'0' + b % 10) as char);
            }
        }
    }
}
