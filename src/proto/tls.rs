//! TLS: record framing, the clear-text part of the handshake, and encrypted byte counts.
//!
//! Two layers, as in every podtap decoder:
//!
//! * Pure parsers, zero-copy views that report malformed input as a [`TlsError`]:
//!   [`RecordHeader`], [`ClientHello`] (legacy version, cipher suites, SNI, ALPN,
//!   supported_versions), [`ServerHello`] (selected version and cipher, ALPN, HelloRetryRequest)
//!   and [`Alert`], with IANA name tables ([`cipher_suite_name`], [`alert_name`],
//!   [`version_name`]).
//! * [`TlsParser`], the per-connection state machine. It frames records in each direction
//!   (headers may be split anywhere), reassembles handshake messages across records and
//!   TCP segments (only ClientHello and ServerHello are buffered, at most
//!   [`TlsConfig::max_handshake_message`] bytes each; every other message is skipped by
//!   its length) and emits ONE transaction per handshake.
//!
//! When the handshake is considered done (the transaction's `end`):
//!
//! * TLS 1.2 and older: at the first ChangeCipherSpec record from the server, or its first
//!   application_data record if that comes first. For a full handshake this is the
//!   server's final flight; for a resumed session, its only flight.
//! * TLS 1.3: at the first application_data record from the server after the ServerHello,
//!   which carries its encrypted handshake messages (EncryptedExtensions onwards). The
//!   middlebox-compatibility ChangeCipherSpec of TLS 1.3 does not count.
//!
//! The time is that of the `on_data` chunk in which that record's header completed. Until
//! then the handshake can also end with an alert (`error = "alert:<name>"`), a timeout
//! (`on_tick`), or the connection closing (`on_close`).
//!
//! In TLS 1.3 the negotiated ALPN travels in the encrypted EncryptedExtensions, so
//! `tls.next_protocol` is only reported for TLS 1.2 and older; likewise only alerts sent
//! in clear text can be named.
//!
//! After the handshake the parser keeps reading record headers only, skipping payloads by
//! their length, to count application_data bytes per direction ([`TlsParser::encrypted_bytes`]).
//! A connection whose first record is not a ClientHello (picked up mid-stream) produces no
//! transaction but is counted the same way while its record framing stays valid; bytes
//! that do not frame as TLS end the decoding ([`Progress::Done`]).

use compact_str::{CompactString, format_compact};
use serde::{Deserialize, Serialize};

use super::{Completeness, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{Counters, Event};
use crate::time::Timestamp;

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
const HRR_RANDOM: [u8; 32] = [
    0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
    0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
];

/// Longest SNI kept (a DNS name is at most 253 characters; longer is not a host name).
const MAX_SNI_TEXT: usize = 255;
/// Longest comma-joined list kept for the offered ALPN protocols and versions.
const MAX_LIST_TEXT: usize = 256;

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
struct Rd<'a>(&'a [u8]);

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
fn check_extensions(mut r: Rd) -> Result<(), TlsError> {
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

fn alpn_list(ext: Option<&[u8]>) -> ProtocolNames<'_> {
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

fn is_tls13(v: u16) -> bool {
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
fn version_text(v: u16) -> CompactString {
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

fn alert_text(d: u8) -> CompactString {
    match alert_name(d) {
        Some(n) => CompactString::const_new(n),
        None => format_compact!("{d}"),
    }
}

/// Append `bytes` as printable text, escaping others as `\DDD` (as for DNS names), up to
/// `max` characters: peer-controlled strings must stay bounded and valid UTF-8.
fn push_text(out: &mut CompactString, bytes: &[u8], max: usize) {
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

/// TLS decoder settings (`[tls]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Largest ClientHello or ServerHello buffered for decoding, in bytes. A larger one
    /// is skipped by its length (its fields are then missing and the transaction is
    /// marked `truncated`) and counted as `l7.buffer_limit`. Other handshake messages
    /// (certificates...) are never buffered. Default 65536 (64 KiB).
    pub max_handshake_message: usize,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            max_handshake_message: 65536,
        }
    }
}

/// What went wrong or was notable on one connection. `take_stats` hands out the counts
/// since the last call; [`TlsStats::add_to`] folds them into the worker's event counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsStats {
    /// Malformed hellos, and record framing that broke after valid records. → `l7.parse_error`
    pub parse_errors: u64,
    /// Hellos larger than `max_handshake_message`. → `l7.buffer_limit`
    pub buffer_limit: u64,
    /// Handshakes reported by `on_tick` before they completed. → `l7.transaction_timeout`
    pub timeouts: u64,
    /// Connections picked up after their handshake (informational).
    pub midstream: u64,
}

impl TlsStats {
    /// Add the counts that have an [`Event`] to the worker's counters.
    pub fn add_to(&self, c: &mut Counters) {
        for (e, n) in [
            (Event::L7ParseError, self.parse_errors),
            (Event::L7BufferLimit, self.buffer_limit),
            (Event::TransactionTimeout, self.timeouts),
        ] {
            if n > 0 {
                c.add(e, n);
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Nothing decoded yet: the first record tells whether a handshake is starting.
    Detect,
    /// A handshake record came first: following the clear-text handshake.
    Handshake,
    /// Handshake over (or never seen): record headers only, counting bytes.
    Track,
    /// Not TLS, or the framing broke: nothing more to do.
    Dead,
}

/// What to do with the payload of the current record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Payload {
    #[default]
    Skip,
    Handshake,
    Alert,
    AppData,
}

/// Something the handshake-message reader reports.
enum HsEvent<'a> {
    /// A message header: its type.
    Start(u8),
    /// A hello larger than the buffer limit, skipped.
    TooLarge,
    /// A complete ClientHello or ServerHello body.
    Message(u8, &'a [u8]),
}

/// Reassembles handshake messages from the payloads of handshake records. Only hellos
/// are kept (zero-copy when a message lies within one chunk, else in `buf`).
#[derive(Default)]
struct HsReader {
    hdr: [u8; 4],
    hdr_len: u8,
    msg_type: u8,
    /// Body bytes still to come.
    left: usize,
    keep: bool,
    buf: Vec<u8>,
}

impl HsReader {
    fn feed(&mut self, mut data: &[u8], max: usize, sink: &mut impl FnMut(HsEvent<'_>)) {
        while !data.is_empty() {
            if self.hdr_len < 4 {
                let at = self.hdr_len as usize;
                let n = (4 - at).min(data.len());
                self.hdr[at..at + n].copy_from_slice(&data[..n]);
                self.hdr_len += n as u8;
                data = &data[n..];
                if self.hdr_len < 4 {
                    return;
                }
                self.msg_type = self.hdr[0];
                self.left = u32::from_be_bytes([0, self.hdr[1], self.hdr[2], self.hdr[3]]) as usize;
                sink(HsEvent::Start(self.msg_type));
                let hello = matches!(
                    self.msg_type,
                    HANDSHAKE_CLIENT_HELLO | HANDSHAKE_SERVER_HELLO
                );
                self.keep = hello && self.left <= max;
                if hello && !self.keep {
                    sink(HsEvent::TooLarge);
                }
                self.buf.clear();
                if self.keep {
                    // Bounded by `max`; grown once, not per segment.
                    self.buf.reserve(self.left);
                }
                if self.left == 0 {
                    self.end(sink);
                }
                continue;
            }
            let n = self.left.min(data.len());
            let (chunk, rest) = data.split_at(n);
            data = rest;
            self.left -= n;
            if self.keep && self.buf.is_empty() && self.left == 0 {
                // The whole body is in this chunk: no copy.
                sink(HsEvent::Message(self.msg_type, chunk));
                self.hdr_len = 0;
                self.keep = false;
                continue;
            }
            if self.keep {
                self.buf.extend_from_slice(chunk);
            }
            if self.left == 0 {
                self.end(sink);
            }
        }
    }

    fn end(&mut self, sink: &mut impl FnMut(HsEvent<'_>)) {
        if self.keep {
            sink(HsEvent::Message(self.msg_type, &self.buf));
        }
        self.buf.clear();
        self.hdr_len = 0;
        self.keep = false;
    }
}

/// Record framing state of one direction.
#[derive(Default)]
struct DirState {
    hdr: [u8; RECORD_HEADER_LEN],
    hdr_len: u8,
    /// When the current header's first byte arrived (a ClientHello's start time).
    hdr_ts: Timestamp,
    /// Payload bytes of the current record still to come; 0 = a header is next.
    left: usize,
    payload: Payload,
    record_len: u16,
    alert: [u8; 2],
    alert_len: u8,
    hs: HsReader,
    /// After this side's ChangeCipherSpec in TLS 1.2 and older, its handshake records are
    /// ciphertext (Finished) and must not be parsed.
    encrypted: bool,
    /// A gap hit this side's handshake bytes: its messages are no longer framed.
    hs_broken: bool,
    /// A gap ended at an unknown place: the next bytes must look like a record header.
    resync: bool,
    /// Framing lost for good: all further bytes count as encrypted.
    lost: bool,
}

/// What the clear-text handshake revealed.
#[derive(Default)]
struct Handshake {
    /// A ClientHello header was seen: there is a transaction to report.
    started: bool,
    emitted: bool,
    start: Timestamp,
    client_hellos: u8,
    /// As sent (escaped), and lower-cased without a trailing dot for `resource`.
    sni: CompactString,
    resource: CompactString,
    client_versions: CompactString,
    client_alpn: CompactString,
    client_ciphers: u16,
    client_session_id: [u8; 32],
    client_session_id_len: u8,
    server_hello: bool,
    hello_retry: bool,
    /// Negotiated version (ServerHello or HelloRetryRequest); 0 = unknown.
    version: u16,
    cipher: Option<u16>,
    alpn: Option<CompactString>,
    resumed: bool,
    alert: Option<u8>,
    /// A warning alert that did not end the handshake.
    warning: Option<u8>,
    /// Bytes of records until the handshake was done: [from client, from server].
    bytes: [u64; 2],
    completeness: u16,
}

impl Handshake {
    fn on_client_hello(&mut self, body: &[u8], stats: &mut TlsStats) {
        self.client_hellos = self.client_hellos.saturating_add(1);
        if self.client_hellos > 1 {
            // The second ClientHello after a HelloRetryRequest (or a duplicate) repeats
            // the offer; the first one is what gets reported.
            return;
        }
        let ch = match ClientHello::parse(body) {
            Ok(ch) => ch,
            Err(_) => {
                stats.parse_errors += 1;
                return;
            }
        };
        if let Some(name) = ch.server_name() {
            push_text(&mut self.sni, name, MAX_SNI_TEXT);
            let trimmed = self.sni.strip_suffix('.').unwrap_or(&self.sni);
            self.resource = CompactString::from(trimmed);
            self.resource.as_mut_str().make_ascii_lowercase();
        }
        for v in ch.supported_versions().filter(|v| !is_grease(*v)) {
            let text = version_text(v);
            if self.client_versions.len() + text.len() + 1 > MAX_LIST_TEXT {
                break;
            }
            if !self.client_versions.is_empty() {
                self.client_versions.push(',');
            }
            self.client_versions.push_str(&text);
        }
        for proto in ch.alpn() {
            if self.client_alpn.len() + proto.len() + 1 > MAX_LIST_TEXT {
                break;
            }
            if !self.client_alpn.is_empty() {
                self.client_alpn.push(',');
            }
            push_text(&mut self.client_alpn, proto, MAX_LIST_TEXT);
        }
        self.client_ciphers = ch.cipher_suites().filter(|c| !is_grease(*c)).count() as u16;
        let sid = ch.session_id;
        if let Some(dst) = self.client_session_id.get_mut(..sid.len()) {
            dst.copy_from_slice(sid);
            self.client_session_id_len = sid.len() as u8;
        }
    }

    fn on_server_hello(&mut self, body: &[u8], stats: &mut TlsStats) {
        let sh = match ServerHello::parse(body) {
            Ok(sh) => sh,
            Err(_) => {
                stats.parse_errors += 1;
                return;
            }
        };
        self.version = sh.selected_version();
        self.cipher = Some(sh.cipher_suite);
        if sh.is_hello_retry_request() {
            self.hello_retry = true;
            return;
        }
        self.server_hello = true;
        self.alpn = sh.alpn().map(|p| {
            let mut s = CompactString::default();
            push_text(&mut s, p, MAX_LIST_TEXT);
            s
        });
        let client_sid = self
            .client_session_id
            .get(..self.client_session_id_len as usize)
            .unwrap_or_default();
        self.resumed = if is_tls13(self.version) {
            sh.extension(EXT_PRE_SHARED_KEY).is_some()
        } else {
            !sh.session_id.is_empty() && sh.session_id == client_sid
        };
    }

    fn transaction(
        &self,
        end: Timestamp,
        completeness: u16,
        error: Option<CompactString>,
    ) -> Transaction {
        let mut tx = Transaction::new(Protocol::Tls, self.start);
        tx.end = end;
        tx.operation = CompactString::const_new("handshake");
        tx.resource = self.resource.clone();
        tx.req_bytes = self.bytes[0];
        tx.resp_bytes = self.bytes[1];
        tx.completeness = Completeness(self.completeness | completeness);
        tx.status = self.alert.map(|d| d as i64);
        let established = error.is_none() && completeness == 0;
        tx.error = error;
        let version = version_name(self.version);
        tx.attr_str("tls.protocol.name", version.map_or("tls", |v| v.0));
        if let Some((_, v)) = version {
            tx.attr_str("tls.protocol.version", v);
        }
        if !self.sni.is_empty() {
            tx.attr_str("tls.client.server_name", self.sni.clone());
        }
        if !self.client_versions.is_empty() {
            tx.attr_str(
                "tls.client.supported_versions",
                self.client_versions.clone(),
            );
        }
        if !self.client_alpn.is_empty() {
            tx.attr_str("tls.client.alpn", self.client_alpn.clone());
        }
        if let Some(alpn) = &self.alpn {
            tx.attr_str("tls.next_protocol", alpn.clone());
        }
        if let Some(c) = self.cipher {
            match cipher_suite_name(c) {
                Some(name) => tx.attr_str("tls.cipher", name),
                None => tx.attr_str("tls.cipher", format_compact!("0x{c:04x}")),
            }
            tx.attr_str("podtap.tls.cipher_id", format_compact!("0x{c:04x}"));
        }
        if self.server_hello {
            tx.attr_bool("tls.resumed", self.resumed);
        }
        tx.attr_bool("tls.established", established);
        if self.client_hellos > 0 {
            tx.attr_int(
                "podtap.tls.client.cipher_suites",
                self.client_ciphers as i64,
            );
        }
        if self.client_hellos > 1 {
            tx.attr_int("podtap.tls.client_hellos", self.client_hellos as i64);
        }
        if self.hello_retry {
            tx.attr_bool("podtap.tls.hello_retry", true);
        }
        if let Some(w) = self.warning {
            tx.attr_str("podtap.tls.alert", alert_text(w));
        }
        tx.attr_int(
            "podtap.tls.handshake_duration_ns",
            end.since(self.start).min(i64::MAX as u64) as i64,
        );
        tx
    }
}

/// The TLS state machine of one connection. See the module documentation for when a
/// handshake is done and what is reported.
///
/// The transaction: `operation = "handshake"`, `resource` = the SNI lower-cased (empty
/// without SNI), `start` = the ClientHello's first byte, `req_bytes`/`resp_bytes` = the
/// record bytes each side sent until then, `status` = the alert description number and
/// `error = "alert:<name>"` when an alert ended the handshake (`alert:encrypted` when it
/// could not be read), `"timeout"` from `on_tick`. Attributes: `tls.protocol.name`,
/// `tls.protocol.version` (negotiated), `tls.client.server_name` (as sent),
/// `tls.client.supported_versions` and `tls.client.alpn` (offered, comma-separated),
/// `tls.next_protocol` (negotiated ALPN, TLS ≤ 1.2 only), `tls.cipher` (IANA name, or hex),
/// `podtap.tls.cipher_id` (hex), `tls.resumed`, `tls.established`,
/// `podtap.tls.client.cipher_suites` (offered, GREASE excluded), `podtap.tls.hello_retry`,
/// `podtap.tls.client_hellos` (when more than one), `podtap.tls.alert` (a warning that did
/// not end the handshake), `podtap.tls.handshake_duration_ns`.
pub struct TlsParser {
    max_handshake_message: usize,
    mode: Mode,
    /// The side that sent the ClientHello (by content, not by who opened the connection).
    client: Direction,
    dirs: [DirState; 2],
    hs: Handshake,
    encrypted: [u64; 2],
    stats: TlsStats,
}

impl Default for TlsParser {
    fn default() -> Self {
        Self::new(&TlsConfig::default())
    }
}

impl TlsParser {
    pub fn new(cfg: &TlsConfig) -> Self {
        TlsParser {
            max_handshake_message: cfg.max_handshake_message,
            mode: Mode::Detect,
            client: Direction::ToServer,
            dirs: Default::default(),
            hs: Handshake::default(),
            encrypted: [0; 2],
            stats: TlsStats::default(),
        }
    }

    /// Payload bytes of application_data records per direction (index:
    /// [`Direction::index`]), record headers excluded. In TLS 1.3 this includes the
    /// encrypted handshake messages, which look the same. Where a gap broke the framing,
    /// every later byte of that direction (delivered or missing) is counted.
    pub fn encrypted_bytes(&self) -> [u64; 2] {
        self.encrypted
    }

    /// The server name the client asked for (lower-cased), once the ClientHello is decoded.
    pub fn server_name(&self) -> Option<&str> {
        (!self.hs.resource.is_empty()).then_some(self.hs.resource.as_str())
    }

    /// Whether the handshake transaction has been emitted.
    pub fn handshake_reported(&self) -> bool {
        self.hs.emitted
    }

    /// Whether this connection is being followed as TLS (false once bytes did not frame
    /// as TLS records).
    pub fn is_tls(&self) -> bool {
        self.mode != Mode::Dead
    }

    pub fn stats(&self) -> &TlsStats {
        &self.stats
    }

    /// The counts since the last call, resetting them (for folding into worker counters).
    pub fn take_stats(&mut self) -> TlsStats {
        std::mem::take(&mut self.stats)
    }

    /// Report the handshake (once) and switch to counting records only.
    fn finish(
        &mut self,
        end: Timestamp,
        completeness: u16,
        error: Option<CompactString>,
        out: &mut Vec<Transaction>,
    ) {
        if self.hs.started && !self.hs.emitted {
            out.push(self.hs.transaction(end, completeness, error));
            self.hs.emitted = true;
        }
        if self.mode == Mode::Handshake {
            self.mode = Mode::Track;
        }
        // The hello buffers are not needed any more: give their memory back.
        for d in &mut self.dirs {
            d.hs = HsReader::default();
        }
    }

    fn framing_error(&mut self, ts: Timestamp, out: &mut Vec<Transaction>) {
        if self.mode != Mode::Detect {
            self.stats.parse_errors += 1;
        }
        let incomplete = if self.hs.server_hello {
            0
        } else {
            Completeness::NO_RESPONSE
        };
        self.finish(
            ts,
            incomplete,
            Some(CompactString::const_new("malformed_record")),
            out,
        );
        self.mode = Mode::Dead;
    }

    fn record_start(
        &mut self,
        dir: Direction,
        h: RecordHeader,
        ts: Timestamp,
        first_byte: Timestamp,
        out: &mut Vec<Transaction>,
    ) {
        if self.mode == Mode::Detect {
            if h.content_type == CONTENT_HANDSHAKE {
                self.mode = Mode::Handshake;
                self.client = dir;
                self.hs.start = first_byte;
            } else {
                self.mode = Mode::Track;
                self.stats.midstream += 1;
            }
        }
        let d = dir.index();
        let handshake = self.mode == Mode::Handshake;
        let st = &mut self.dirs[d];
        st.left = h.length as usize;
        st.record_len = h.length;
        st.alert_len = 0;
        st.payload = match h.content_type {
            CONTENT_APPLICATION_DATA => Payload::AppData,
            CONTENT_HANDSHAKE if handshake && !st.encrypted && !st.hs_broken => Payload::Handshake,
            CONTENT_ALERT if handshake => Payload::Alert,
            _ => Payload::Skip,
        };
        if !handshake {
            return;
        }
        let from_client = dir == self.client;
        self.hs.bytes[usize::from(!from_client)] += (RECORD_HEADER_LEN + h.length as usize) as u64;
        let tls13 = is_tls13(self.hs.version);
        match h.content_type {
            // From here on the client's handshake records are ciphertext (its Finished).
            // Not so for the dummy ChangeCipherSpec of TLS 1.3 (middlebox compatibility),
            // nor for one sent before the version is known (before a second ClientHello):
            // clear-text hellos may still follow those.
            CONTENT_CHANGE_CIPHER_SPEC if from_client && self.hs.version != 0 && !tls13 => {
                self.dirs[d].encrypted = true;
            }
            CONTENT_CHANGE_CIPHER_SPEC if from_client => {}
            CONTENT_CHANGE_CIPHER_SPEC if !tls13 && self.hs.started => {
                self.finish(ts, 0, None, out)
            }
            CONTENT_APPLICATION_DATA if !from_client && self.hs.started => {
                self.finish(ts, 0, None, out)
            }
            _ => {}
        }
    }

    fn record_end(&mut self, dir: Direction, ts: Timestamp, out: &mut Vec<Transaction>) {
        let st = &self.dirs[dir.index()];
        if st.payload != Payload::Alert || self.mode != Mode::Handshake || !self.hs.started {
            return;
        }
        let clear = !st.encrypted && st.record_len == 2 && st.alert_len == 2;
        let alert = if clear {
            Alert::parse(&st.alert).ok()
        } else {
            None
        };
        let error = match alert {
            Some(a) if !a.ends_handshake() => {
                self.hs.warning = Some(a.description);
                return;
            }
            Some(a) => {
                self.hs.alert = Some(a.description);
                format_compact!("alert:{}", alert_text(a.description))
            }
            None => CompactString::const_new("alert:encrypted"),
        };
        let incomplete = if self.hs.server_hello {
            0
        } else {
            Completeness::NO_RESPONSE
        };
        self.finish(ts, incomplete, Some(error), out);
    }

    fn feed_handshake(&mut self, dir: Direction, chunk: &[u8]) {
        let from_client = dir == self.client;
        let max = self.max_handshake_message;
        let (hs, stats, mode) = (&mut self.hs, &mut self.stats, &mut self.mode);
        self.dirs[dir.index()].hs.feed(chunk, max, &mut |ev| {
            if *mode != Mode::Handshake {
                return;
            }
            match ev {
                HsEvent::Start(t) if !hs.started => {
                    if from_client && t == HANDSHAKE_CLIENT_HELLO {
                        hs.started = true;
                    } else {
                        // Handshake records, but not from the start: picked up mid-stream.
                        *mode = Mode::Track;
                        stats.midstream += 1;
                    }
                }
                HsEvent::Start(_) => {}
                HsEvent::TooLarge => {
                    stats.buffer_limit += 1;
                    hs.completeness |= Completeness::TRUNCATED;
                }
                HsEvent::Message(HANDSHAKE_CLIENT_HELLO, body) if from_client => {
                    hs.on_client_hello(body, stats)
                }
                HsEvent::Message(HANDSHAKE_SERVER_HELLO, body) if !from_client => {
                    hs.on_server_hello(body, stats)
                }
                HsEvent::Message(..) => {}
            }
        });
    }
}

impl L7Parser for TlsParser {
    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        ts: Timestamp,
        out: &mut Vec<Transaction>,
    ) -> Progress {
        let d = dir.index();
        let mut data = bytes;
        while !data.is_empty() && self.mode != Mode::Dead {
            let st = &mut self.dirs[d];
            if st.lost {
                self.encrypted[d] += data.len() as u64;
                break;
            }
            if st.resync {
                st.resync = false;
                let ok = RecordHeader::parse(data).is_ok_and(|h| h.is_plausible());
                if !ok {
                    st.lost = true;
                    self.stats.parse_errors += 1;
                    continue;
                }
            }
            if st.left == 0 {
                // A record header, possibly split across chunks.
                if st.hdr_len == 0 {
                    st.hdr_ts = ts;
                }
                let at = st.hdr_len as usize;
                let n = (RECORD_HEADER_LEN - at).min(data.len());
                st.hdr[at..at + n].copy_from_slice(&data[..n]);
                st.hdr_len += n as u8;
                data = &data[n..];
                if (st.hdr_len as usize) < RECORD_HEADER_LEN {
                    break;
                }
                let first_byte = st.hdr_ts;
                st.hdr_len = 0;
                let h = match RecordHeader::parse(&st.hdr) {
                    Ok(h) if h.is_plausible() => h,
                    _ => {
                        self.framing_error(ts, out);
                        break;
                    }
                };
                self.record_start(dir, h, ts, first_byte, out);
                if h.length == 0 {
                    self.record_end(dir, ts, out);
                }
                continue;
            }
            let n = st.left.min(data.len());
            let (chunk, rest) = data.split_at(n);
            data = rest;
            st.left -= n;
            match st.payload {
                Payload::AppData => self.encrypted[d] += n as u64,
                Payload::Alert => {
                    for &b in chunk {
                        if let Some(slot) = st.alert.get_mut(st.alert_len as usize) {
                            *slot = b;
                            st.alert_len += 1;
                        }
                    }
                }
                Payload::Handshake => self.feed_handshake(dir, chunk),
                Payload::Skip => {}
            }
            if self.dirs[d].left == 0 {
                self.record_end(dir, ts, out);
            }
        }
        if self.mode == Mode::Dead {
            Progress::Done
        } else {
            Progress::Continue
        }
    }

    /// A gap inside a record's payload keeps the framing (the length says where the next
    /// header is); it only breaks the handshake messages of that side if it hit them. A
    /// gap past a record boundary resumes if the next bytes look like a record header,
    /// else that side's framing is lost and its bytes are counted as encrypted.
    fn on_gap(&mut self, dir: Direction, missing: u32) {
        if self.mode == Mode::Dead || missing == 0 {
            return;
        }
        if self.mode == Mode::Handshake {
            self.hs.completeness |= Completeness::GAP;
        }
        let d = dir.index();
        let st = &mut self.dirs[d];
        let missing = missing as usize;
        if st.lost {
            self.encrypted[d] += missing as u64;
            return;
        }
        if st.left > 0 && missing <= st.left {
            st.left -= missing;
            match st.payload {
                Payload::AppData => self.encrypted[d] += missing as u64,
                Payload::Handshake => {
                    st.hs = HsReader::default();
                    st.hs_broken = true;
                    st.payload = Payload::Skip;
                }
                Payload::Alert => st.payload = Payload::Skip,
                Payload::Skip => {}
            }
            return;
        }
        // Past the end of the current record: whatever we were reading is gone.
        if st.payload == Payload::AppData {
            self.encrypted[d] += st.left as u64;
        }
        // Whole records may have been lost, and a handshake message may have started in
        // one of them: this side's handshake messages can no longer be framed.
        st.hs = HsReader::default();
        st.hs_broken = true;
        st.left = 0;
        st.hdr_len = 0;
        st.payload = Payload::Skip;
        st.resync = true;
    }

    fn on_close(&mut self, ts: Timestamp, reset: bool, out: &mut Vec<Transaction>) {
        if self.mode != Mode::Handshake || !self.hs.started {
            return;
        }
        let mut why = if reset {
            Completeness::RESET
        } else {
            Completeness::CLOSED
        };
        if !self.hs.server_hello {
            why |= Completeness::NO_RESPONSE;
        }
        self.finish(ts, why, None, out);
    }

    fn on_tick(&mut self, now: Timestamp, timeout_ns: u64, out: &mut Vec<Transaction>) {
        if self.mode != Mode::Handshake || !self.hs.started || now.since(self.hs.start) < timeout_ns
        {
            return;
        }
        self.stats.timeouts += 1;
        self.finish(
            now,
            Completeness::NO_RESPONSE,
            Some(CompactString::const_new("timeout")),
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::AttrValue;

    fn hex(s: &str) -> Vec<u8> {
        let s: Vec<u8> = s.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        s.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn attr(tx: &Transaction, k: &str) -> Option<String> {
        tx.attr(k).map(|v| match v {
            AttrValue::Str(s) => s.to_string(),
            AttrValue::Int(i) => i.to_string(),
            AttrValue::Bool(b) => b.to_string(),
        })
    }

    fn a(tx: &Transaction, k: &str) -> String {
        attr(tx, k).unwrap_or_else(|| panic!("no {k} in {:?}", tx.attrs))
    }

    const C: Direction = Direction::ToServer;
    const S: Direction = Direction::ToClient;
    const T0: Timestamp = Timestamp(5_000_000_000);
    const T1: Timestamp = Timestamp(5_020_000_000);
    const T2: Timestamp = Timestamp(5_040_000_000);
    const T3: Timestamp = Timestamp(5_060_000_000);

    // packetbeat tls-sample2.pcap: a TLS 1.2 handshake with example.net.
    // Frame 4: ClientHello (SNI, ALPN h2/http1.1, no supported_versions).
    const CH12: &str = "16030100d9010000d50303d7c809b4ac3a60b62f53c9d9366ca89a703d25491ff2a246a89f32f945f7b42b000054c030c02cc028c024c014c00a009f006b0039cca9cca8ccaaff8500c400880081009d003d003500c00084c02fc02bc027c023c013c009009e0067003300be0045009c003c002f00ba0041c012c0080016000a00ff0100005800000010000e00000b6578616d706c652e6e6574000b00020100000a00080006001d00170018000d001c001a06010603efef0501050304010403eeeeeded03010303020102030010000e000c02683208687474702f312e31";
    // Frame 6, first record: ServerHello (ECDHE-RSA-AES128-GCM, ALPN h2).
    const SH12: &str = "1603030066020000620303d1fd553a5a270f08e09eda6690fb3c8f9884e9a9fe7949e9444f574e475244012023bb2aed5d215e1228220b0a51d7aa220785e9e4b83b4f430229117971e9913fc02f00001aff0100010000000000000b000403000102001000050003026832";
    // Frame 14: ClientKeyExchange, ChangeCipherSpec, encrypted Finished (type 22).
    const CKE12: &str = "16030300461000004241043487c4377b7d6e175bc6ff4848f4b4cc69bfcef9d1d29f5a22b88ca7573f55d3acaf698df905ae817131f35ed867f9ddb518c36137940fcd702c3b12f820703314030300010116030300280000000000000000ef92019e43f30d2aff307359e5151ae516a46afc237bddf0c16668983dbd0d26";
    // Frame 15: the server's ChangeCipherSpec and encrypted Finished.
    const CCS12: &str = "14030300010116030300283b5f69645967e8024ea30671361310daabd49a9c2cf5dbcaa73cea3f03d30bcca15fa6ad50d78a95";
    // Frame 16: two application_data records (63 + 37 payload bytes).
    const APP12: &str = "170303003f3b5f69645967e803c3d457120bf2ef2b710c5ecf99e965f167c7204157b4fdb39ced35aa1227db365afa23a091a04d4843bf0eb5af7564128cc0323dd34ae617030300253b5f69645967e804a254f24c9ed7f9b9f95d75e9021bfe2ffe03804bbe1699095d9e0bbfab";

    // packetbeat tls-version-13.pcap: a resumed TLS 1.3 handshake with play.google.com.
    // Frame 4: ClientHello (supported_versions 1.3..1.0, ALPN, PSK).
    const CH13: &str = "16030102720100026e030303ce74e1536e0272c1d55b0c8cdf324e82f80a276e478645572324ce25910c00205d2b9f80d34143b5764ba6b23e1d4f9d1f172148b6fd83c81f42663459eaf6f60024130113031302c02bc02fcca9cca8c02cc030c00ac009c013c01400330039002f0035000a0100020100000014001200000f706c61792e676f6f676c652e636f6d00170000ff01000100000a000e000c001d00170018001901000101000b000201000010000e000c02683208687474702f312e310005000501000000000033006b0069001d0020497d511d90b35a73f5058604375017f32d3dec08c0620a7a27b226df8f1ecd2c00170041049072102c48f886daf4620bdbde091780713e40d137951e11fd3dc3fe0cc193f6450e0c6c34c1e151f085aae0a67dc1cc04e5344178f9535539ce96f89e73ecae002b0009080304030303020301000d0018001604030503060308040805080604010501060102030201002d00020101001c000240010029010500e000da00054c6013ef3918c6c6709a8628df28c895e48922cad4976138f4fa3342c617560e88b4baca7c475329b66280d9b829cec6434d0a34c0027ad2b2118e8a6e2ad441bb29dbb1cca083bad85ef422885279974a9c4899788ba4a46da73a9a7f1503f26c81561aef8c0f7bb8a3456c66e63628b4b08eba1c393108d7599b1a1888816c3bd0267c46ca8521123a1713a5bb4ab6178755f6fbc7b44af10d8ae847ef290d46ff472b8995612ccd3e4d2acde6dfc7772feaf314f96e124a4eb22ccef7393371f8614097530107e5e7d40897c0d0a5fab7c9208fabf2fc8e7088880021206442362024b442a88dc4c9b30a3d8502e7ba39889e2c19f14581232ed4204788";
    // Frame 6: ServerHello (1.3, AES128-GCM, pre_shared_key), dummy CCS, first encrypted
    // record (68 bytes).
    const SH13: &str = "16030300800200007c0303ebd86864767a7782922db6712f487c22c6cb65e54a895fefd3f60bc851591f19205d2b9f80d34143b5764ba6b23e1d4f9d1f172148b6fd83c81f42663459eaf6f6130100003400290002000000330024001d0020e7af8809ec95b873851c9e4d6bc7f2bfc18c26214150340f54147edff80a4632002b000203041403030001011703030044789179887b5b9c4d46411baff5ef859e194ba73830ce83e6a8c6ffd8a135139e370763073e42bd8ee710c3b9ca6f7d729fd468079ea135fb0159aff2b242163a3d67c4d3";
    // Frame 8: the client's dummy CCS and encrypted Finished (53 bytes).
    const FIN13: &str = "140303000101170303003541a7585b2016b710bbafa924d465c89922125bb8964747430a106313de5e0bf4fb1d89c9c84ad2b9d2bffaa03987d8ff054cb057b9";

    fn run(chunks: &[(Direction, Vec<u8>, Timestamp)]) -> (TlsParser, Vec<Transaction>) {
        let mut p = TlsParser::default();
        let mut out = Vec::new();
        for (dir, bytes, ts) in chunks {
            assert_eq!(p.on_data(*dir, bytes, *ts, &mut out), Progress::Continue);
        }
        (p, out)
    }

    fn summary(out: &[Transaction]) -> Vec<String> {
        out.iter()
            .map(|t| {
                format!(
                    "{} {} {:?} {:?} {}..{} {}/{} {:?} {:?}",
                    t.operation,
                    t.resource,
                    t.status,
                    t.error,
                    t.start.0,
                    t.end.0,
                    t.req_bytes,
                    t.resp_bytes,
                    t.completeness,
                    t.attrs
                )
            })
            .collect()
    }

    /// The handshake message inside a one-record hello.
    fn record_body(rec: &[u8]) -> &[u8] {
        &rec[RECORD_HEADER_LEN..]
    }

    #[test]
    fn client_hello_view() {
        let rec = hex(CH12);
        let h = RecordHeader::parse(&rec).unwrap();
        assert_eq!((h.content_type, h.version, h.length), (22, 0x0301, 217));
        assert!(h.is_plausible());
        let msg = record_body(&rec);
        assert_eq!(msg[0], HANDSHAKE_CLIENT_HELLO);
        let ch = ClientHello::parse(&msg[4..]).unwrap();
        assert_eq!(ch.legacy_version, 0x0303);
        assert!(ch.session_id.is_empty());
        assert_eq!(ch.cipher_suites().count(), 42);
        assert_eq!(ch.cipher_suites().next(), Some(0xc030));
        assert_eq!(ch.server_name(), Some(&b"example.net"[..]));
        let alpn: Vec<_> = ch.alpn().collect();
        assert_eq!(alpn, [&b"h2"[..], &b"http/1.1"[..]]);
        assert_eq!(ch.supported_versions().count(), 0);
        assert_eq!(ch.compression_methods(), [0]);

        let rec = hex(CH13);
        let ch = ClientHello::parse(&record_body(&rec)[4..]).unwrap();
        assert_eq!(ch.server_name(), Some(&b"play.google.com"[..]));
        let versions: Vec<_> = ch.supported_versions().collect();
        assert_eq!(versions, [0x0304, 0x0303, 0x0302, 0x0301]);
        assert_eq!(ch.session_id.len(), 32);
        assert!(ch.extension(EXT_PRE_SHARED_KEY).is_some());
        assert_eq!(ch.extensions().count(), 13);

        // Every truncation is an error, never a panic.
        let body = &record_body(&rec)[4..];
        for cut in 0..body.len() {
            let _ = ClientHello::parse(&body[..cut]);
        }
        assert_eq!(
            ClientHello::parse(&body[..40]).err(),
            Some(TlsError::Truncated)
        );
    }

    #[test]
    fn server_hello_view() {
        let rec = hex(SH12);
        let sh = ServerHello::parse(&record_body(&rec)[4..]).unwrap();
        assert_eq!((sh.legacy_version, sh.selected_version()), (0x0303, 0x0303));
        assert_eq!(sh.cipher_suite, 0xc02f);
        assert_eq!(sh.alpn(), Some(&b"h2"[..]));
        assert!(!sh.is_hello_retry_request());
        assert_eq!(sh.session_id.len(), 32);
        // The TLS 1.3 downgrade sentinel "DOWNGRD\x01" ends the random.
        assert_eq!(&sh.random[24..], b"DOWNGRD\x01");

        let rec = hex(SH13);
        let h = RecordHeader::parse(&rec).unwrap();
        let sh = ServerHello::parse(&rec[9..5 + h.length as usize]).unwrap();
        assert_eq!((sh.legacy_version, sh.selected_version()), (0x0303, 0x0304));
        assert_eq!(sh.cipher_suite, 0x1301);
        assert_eq!(sh.alpn(), None);
        assert!(sh.extension(EXT_PRE_SHARED_KEY).is_some());
    }

    #[test]
    fn names() {
        assert_eq!(
            cipher_suite_name(0xc02f),
            Some("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256")
        );
        assert_eq!(cipher_suite_name(0x1301), Some("TLS_AES_128_GCM_SHA256"));
        assert_eq!(
            cipher_suite_name(0x1303),
            Some("TLS_CHACHA20_POLY1305_SHA256")
        );
        assert_eq!(cipher_suite_name(0xffff), None);
        assert_eq!(alert_name(40), Some("handshake_failure"));
        assert_eq!(alert_text(200), "200");
        assert_eq!(version_name(0x0303), Some(("tls", "1.2")));
        assert_eq!(version_name(0x0300), Some(("ssl", "3")));
        assert_eq!(version_name(0x7f1c), Some(("tls", "1.3")));
        assert_eq!(version_text(0x7f1c), "0x7f1c");
        assert!(is_grease(0x2a2a) && is_grease(0xfafa) && !is_grease(0x2a3a) && !is_grease(0x0303));
        assert_eq!(
            Alert::parse(&[2, 40]),
            Ok(Alert {
                level: 2,
                description: 40
            })
        );
        assert_eq!(Alert::parse(&[2]), Err(TlsError::Truncated));
        assert!(
            !Alert {
                level: 1,
                description: 112
            }
            .ends_handshake()
        );
        assert!(
            Alert {
                level: 1,
                description: 0
            }
            .ends_handshake()
        );
    }

    fn tls12_flow() -> Vec<(Direction, Vec<u8>, Timestamp)> {
        vec![
            (C, hex(CH12), T0),
            (S, hex(SH12), T1),
            (C, hex(CKE12), T2),
            (S, hex(CCS12), T3),
            (S, hex(APP12), T3.add_nanos(1000)),
        ]
    }

    #[test]
    fn tls12_handshake() {
        let (p, out) = run(&tls12_flow());
        assert_eq!(out.len(), 1);
        let tx = &out[0];
        assert_eq!(tx.protocol, Protocol::Tls);
        assert_eq!(
            (tx.operation.as_str(), tx.resource.as_str()),
            ("handshake", "example.net")
        );
        assert_eq!((tx.start, tx.end), (T0, T3));
        assert_eq!((tx.status, tx.error.as_deref()), (None, None));
        assert!(tx.completeness.is_complete());
        // Client: hello + key exchange flight; server: hello + its ChangeCipherSpec.
        assert_eq!(tx.req_bytes, 222 + 126);
        assert_eq!(tx.resp_bytes, 107 + 6);
        assert_eq!(a(tx, "tls.protocol.name"), "tls");
        assert_eq!(a(tx, "tls.protocol.version"), "1.2");
        assert_eq!(a(tx, "tls.client.server_name"), "example.net");
        assert_eq!(a(tx, "tls.cipher"), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
        assert_eq!(a(tx, "podtap.tls.cipher_id"), "0xc02f");
        assert_eq!(a(tx, "tls.client.alpn"), "h2,http/1.1");
        assert_eq!(a(tx, "tls.next_protocol"), "h2");
        assert_eq!(a(tx, "tls.resumed"), "false");
        assert_eq!(a(tx, "tls.established"), "true");
        assert_eq!(a(tx, "podtap.tls.client.cipher_suites"), "42");
        assert_eq!(a(tx, "podtap.tls.handshake_duration_ns"), "60000000");
        assert_eq!(attr(tx, "tls.client.supported_versions"), None);
        assert_eq!(attr(tx, "podtap.tls.hello_retry"), None);
        assert_eq!(p.server_name(), Some("example.net"));
        assert!(p.handshake_reported());
        // The encrypted Finished records (type 22) are skipped, not parsed; the
        // application_data of frame 16 is counted.
        assert_eq!(*p.stats(), TlsStats::default());
        assert_eq!(p.encrypted_bytes(), [0, 63 + 37]);
    }

    #[test]
    fn tls13_handshake() {
        let (mut p, mut out) = run(&[(C, hex(CH13), T0), (S, hex(SH13), T1), (C, hex(FIN13), T2)]);
        assert_eq!(out.len(), 1);
        let tx = &out[0];
        assert_eq!(tx.resource, "play.google.com");
        // Done at the first encrypted record, in the same segment as the ServerHello.
        assert_eq!((tx.start, tx.end), (T0, T1));
        assert!(tx.completeness.is_complete());
        assert_eq!(a(tx, "tls.protocol.version"), "1.3");
        assert_eq!(a(tx, "tls.cipher"), "TLS_AES_128_GCM_SHA256");
        assert_eq!(a(tx, "tls.client.supported_versions"), "1.3,1.2,1.1,1.0");
        assert_eq!(a(tx, "tls.client.alpn"), "h2,http/1.1");
        assert_eq!(attr(tx, "tls.next_protocol"), None);
        assert_eq!(a(tx, "tls.resumed"), "true");
        assert_eq!(a(tx, "podtap.tls.client.cipher_suites"), "18");
        assert_eq!(tx.resp_bytes, 133 + 6 + 73);
        assert_eq!(p.encrypted_bytes(), [53, 68]);
        // Later traffic is only counted.
        p.on_data(S, &hex(APP12), T3, &mut out);
        p.on_close(T3, false, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(p.encrypted_bytes(), [53, 68 + 100]);
    }

    #[test]
    fn split_anywhere_and_fragmented_records_give_the_same_result() {
        let flow = tls12_flow();
        let (p0, want) = run(&flow);
        // One byte at a time.
        let bytes: Vec<_> = flow
            .iter()
            .flat_map(|(d, b, ts)| b.iter().map(move |x| (*d, vec![*x], *ts)))
            .collect();
        let (p1, got) = run(&bytes);
        assert_eq!(summary(&got), summary(&want));
        assert_eq!(p1.encrypted_bytes(), p0.encrypted_bytes());
        // The ClientHello split at every point into two TCP segments.
        let ch = hex(CH13);
        let (_, want13) = run(&[(C, ch.clone(), T0), (S, hex(SH13), T1)]);
        for cut in 0..ch.len() {
            let (_, got) = run(&[
                (C, ch[..cut].to_vec(), T0),
                (C, ch[cut..].to_vec(), T0),
                (S, hex(SH13), T1),
            ]);
            assert_eq!(summary(&got), summary(&want13), "cut at {cut}");
        }
        // The ClientHello message spread over records of 50 bytes (record-layer
        // fragmentation), whole and byte by byte.
        let rec = hex(CH13);
        let msg = record_body(&rec);
        let mut frag = Vec::new();
        for part in msg.chunks(50) {
            frag.extend_from_slice(&[22, 3, 1]);
            frag.extend_from_slice(&(part.len() as u16).to_be_bytes());
            frag.extend_from_slice(part);
        }
        let (_, got) = run(&[(C, frag.clone(), T0), (S, hex(SH13), T1)]);
        let mut want_frag = summary(&want13);
        // Only the byte count differs: 13 record headers instead of one.
        let extra = (msg.len().div_ceil(50) - 1) * RECORD_HEADER_LEN;
        want_frag[0] = want_frag[0].replace(
            &format!(" {}/", rec.len()),
            &format!(" {}/", rec.len() + extra),
        );
        assert_eq!(summary(&got), want_frag);
        let bytes: Vec<_> = frag.iter().map(|x| (C, vec![*x], T0)).collect();
        let (mut p, mut got) = run(&bytes);
        p.on_data(S, &hex(SH13), T1, &mut got);
        assert_eq!(summary(&got), want_frag);
    }

    #[test]
    fn alerts_end_the_handshake() {
        // A fatal alert from the server right after the ClientHello.
        let (_, out) = run(&[(C, hex(CH12), T0), (S, hex("15030300020228"), T1)]);
        assert_eq!(out.len(), 1);
        let tx = &out[0];
        assert_eq!(tx.error.as_deref(), Some("alert:handshake_failure"));
        assert_eq!(tx.status, Some(40));
        assert_eq!(tx.end, T1);
        assert_eq!(tx.completeness.0, Completeness::NO_RESPONSE);
        assert_eq!(a(tx, "tls.established"), "false");
        assert_eq!(a(tx, "tls.client.server_name"), "example.net");

        // A client alert after the ServerHello (bad_certificate), split in two.
        let (_, out) = run(&[
            (C, hex(CH12), T0),
            (S, hex(SH12), T1),
            (C, hex("1503030002"), T2),
            (C, hex("022a"), T3),
        ]);
        assert_eq!(out[0].error.as_deref(), Some("alert:bad_certificate"));
        assert_eq!(out[0].end, T3);
        assert!(out[0].completeness.is_complete());

        // A warning does not end it; it is noted.
        let mut flow = tls12_flow();
        flow.insert(1, (S, hex("15030300020170"), T1));
        let (_, out) = run(&flow);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].error, None);
        assert_eq!(a(&out[0], "podtap.tls.alert"), "unrecognized_name");

        // An alert the client sends after its ChangeCipherSpec is encrypted.
        let (_, out) = run(&[
            (C, hex(CH12), T0),
            (S, hex(SH12), T1),
            (C, hex(CKE12), T2),
            (
                C,
                hex("1503030012000000000000000011223344556677889900aa"),
                T3,
            ),
        ]);
        assert_eq!(out[0].error.as_deref(), Some("alert:encrypted"));
        assert_eq!(out[0].status, None);

        // close_notify after the handshake is not an error and reports nothing.
        let mut flow = tls12_flow();
        flow.push((S, hex("1503030002010000"), T3.add_nanos(5)));
        let (_, out) = run(&flow);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].error, None);
    }

    #[test]
    fn hello_retry_request() {
        // The 1.3 ServerHello turned into a HelloRetryRequest (its fixed random).
        let sh = hex(SH13);
        let mut hrr = sh[..5 + 0x80].to_vec();
        hrr[11..43].copy_from_slice(&HRR_RANDOM);
        let ccs = hex("140303000101");
        let (p, out) = run(&[
            (C, hex(CH13), T0),
            (S, [hrr, ccs.clone()].concat(), T1),
            (C, [ccs, hex(CH13)].concat(), T2),
            (S, sh, T3),
        ]);
        assert_eq!(out.len(), 1);
        let tx = &out[0];
        assert_eq!((tx.start, tx.end), (T0, T3));
        assert_eq!(a(tx, "podtap.tls.hello_retry"), "true");
        assert_eq!(a(tx, "podtap.tls.client_hellos"), "2");
        assert_eq!(a(tx, "tls.protocol.version"), "1.3");
        assert_eq!(*p.stats(), TlsStats::default());
    }

    #[test]
    fn close_reset_and_timeout_before_the_end() {
        let mut p = TlsParser::default();
        let mut out = Vec::new();
        p.on_data(C, &hex(CH12), T0, &mut out);
        p.on_tick(T1, 1_000_000_000, &mut out);
        assert!(out.is_empty());
        p.on_close(T1, false, &mut out);
        assert_eq!(
            out[0].completeness.0,
            Completeness::NO_RESPONSE | Completeness::CLOSED
        );
        assert_eq!((out[0].end, out[0].error.as_deref()), (T1, None));
        assert_eq!(a(&out[0], "tls.established"), "false");
        assert_eq!(attr(&out[0], "tls.protocol.version"), None);
        p.on_close(T2, false, &mut out);
        assert_eq!(out.len(), 1, "reported once");

        let (mut p, mut out) = run(&[(C, hex(CH12), T0), (S, hex(SH12), T1)]);
        p.on_close(T2, true, &mut out);
        assert_eq!(out[0].completeness.0, Completeness::RESET);
        assert_eq!(a(&out[0], "tls.protocol.version"), "1.2");

        let mut p = TlsParser::default();
        let mut out = Vec::new();
        p.on_data(C, &hex(CH12), T0, &mut out);
        p.on_tick(T2, T2.since(T0), &mut out);
        assert_eq!(out[0].error.as_deref(), Some("timeout"));
        assert_eq!(out[0].completeness.0, Completeness::NO_RESPONSE);
        assert_eq!(p.stats().timeouts, 1);
        let mut c = Counters::default();
        p.take_stats().add_to(&mut c);
        assert_eq!(c.get(Event::TransactionTimeout), 1);
        // The late answer is only counted.
        p.on_data(S, &hex(SH12), T3, &mut out);
        p.on_data(S, &hex(CCS12), T3, &mut out);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn midstream_and_not_tls() {
        // Application data first: no transaction, bytes counted, keep going.
        let (p, out) = run(&[(S, hex(APP12), T0), (C, hex(FIN13), T1)]);
        assert!(out.is_empty());
        assert_eq!(p.encrypted_bytes(), [53, 100]);
        assert_eq!(p.stats().midstream, 1);
        // A handshake record that is not a ClientHello (the server's second flight).
        let (p, out) = run(&[(S, hex(CCS12), T0), (S, hex(SH12), T1)]);
        assert!(out.is_empty() && p.is_tls());

        let mut p = TlsParser::default();
        let mut out = Vec::new();
        assert_eq!(
            p.on_data(C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", T0, &mut out),
            Progress::Done
        );
        assert!(out.is_empty() && !p.is_tls());
        assert_eq!(
            *p.stats(),
            TlsStats::default(),
            "not TLS is not a parse error"
        );
        assert_eq!(p.on_data(C, &hex(CH12), T0, &mut out), Progress::Done);
        p.on_close(T1, false, &mut out);
        assert!(out.is_empty());

        // Framing that breaks after a good start: a parse error, and Done.
        let (mut p, mut out) = run(&[(C, hex(CH12), T0)]);
        assert_eq!(p.on_data(S, &[0x99; 12], T1, &mut out), Progress::Done);
        assert_eq!(p.stats().parse_errors, 1);
        assert_eq!(out[0].error.as_deref(), Some("malformed_record"));
    }

    #[test]
    fn gaps() {
        // Inside an application_data record: framing kept, the missing bytes counted.
        let app = hex(APP12);
        let mut p = TlsParser::default();
        let mut out = Vec::new();
        p.on_data(S, &app[..10], T0, &mut out);
        p.on_gap(S, 20);
        p.on_data(S, &app[30..], T0, &mut out);
        assert_eq!(p.encrypted_bytes(), [0, 100]);
        assert!(p.is_tls());
        // Past a record boundary, resuming on a plausible header.
        p.on_gap(S, 500);
        p.on_data(S, &app, T0, &mut out);
        assert_eq!(p.encrypted_bytes(), [0, 200]);
        // Resuming mid-record: lost, every later byte counted.
        p.on_gap(S, 3);
        p.on_data(S, &app[7..], T0, &mut out);
        assert_eq!(p.encrypted_bytes(), [0, 200 + app.len() as u64 - 7]);
        p.on_gap(S, 10);
        assert_eq!(p.encrypted_bytes(), [0, 200 + app.len() as u64 + 3]);
        assert_eq!(p.stats().parse_errors, 1);

        // A gap in the ServerHello: fields lost, the handshake still ends, marked.
        let sh = hex(SH12);
        let mut p = TlsParser::default();
        let mut out = Vec::new();
        p.on_data(C, &hex(CH12), T0, &mut out);
        p.on_data(S, &sh[..30], T1, &mut out);
        p.on_gap(S, 20);
        p.on_data(S, &sh[50..], T1, &mut out);
        p.on_data(C, &hex(CKE12), T2, &mut out);
        p.on_data(S, &hex(CCS12), T3, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].completeness.0, Completeness::GAP);
        assert_eq!(out[0].end, T3);
        assert_eq!(attr(&out[0], "tls.cipher"), None);
        assert_eq!(a(&out[0], "tls.client.server_name"), "example.net");
    }

    #[test]
    fn oversized_hello_is_skipped_and_flagged() {
        let cfg = TlsConfig {
            max_handshake_message: 100,
        };
        let mut p = TlsParser::new(&cfg);
        let mut out = Vec::new();
        for (d, b, ts) in tls12_flow() {
            p.on_data(d, &b, ts, &mut out);
        }
        assert_eq!(out.len(), 1);
        // The ClientHello (213 bytes) was too large; the ServerHello (98) was not.
        assert!(out[0].completeness.has(Completeness::TRUNCATED));
        assert_eq!(out[0].resource, "");
        assert_eq!(a(&out[0], "tls.protocol.version"), "1.2");
        assert_eq!(p.stats().buffer_limit, 1);
        let mut c = Counters::default();
        p.stats().add_to(&mut c);
        assert_eq!(c.get(Event::L7BufferLimit), 1);
    }

    #[test]
    fn config_defaults_and_unknown_fields() {
        let cfg: TlsConfig = toml::from_str("").unwrap();
        assert_eq!(cfg, TlsConfig::default());
        assert_eq!(cfg.max_handshake_message, 65536);
        assert!(toml::from_str::<TlsConfig>("max_handshake = 1").is_err());
    }

    #[test]
    fn sni_text_is_bounded_and_escaped() {
        let mut s = CompactString::default();
        push_text(&mut s, b"Ex\\ample.\x00com", 64);
        assert_eq!(s, "Ex\\092ample.\\000com");
        let mut s = CompactString::default();
        push_text(&mut s, &[b'a'; 1000], MAX_SNI_TEXT);
        assert!(s.len() <= MAX_SNI_TEXT);
    }

    #[test]
    fn fuzz_never_panics() {
        let streams: Vec<Vec<(Direction, Vec<u8>)>> = vec![
            tls12_flow().into_iter().map(|(d, b, _)| (d, b)).collect(),
            vec![
                (C, hex(CH13)),
                (S, hex(SH13)),
                (C, hex(FIN13)),
                (S, hex(APP12)),
            ],
        ];
        let mut rng = crate::proto::testkit::Rng(0x1234_5678_9abc_def1);
        let mut out = Vec::new();
        for round in 0..6_000u64 {
            let mut p = TlsParser::default();
            let flow = &streams[rng.below(streams.len())];
            for (k, (dir, bytes)) in flow.iter().enumerate() {
                let mut b = bytes.clone();
                if round % 4 != 0 {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(b.len());
                        match rng.below(4) {
                            0 => b[at] ^= 1 << rng.below(8),
                            1 => b[at] = rng.next() as u8,
                            2 => b.truncate(at),
                            _ => b.insert(at, rng.next() as u8),
                        }
                        if b.is_empty() {
                            break;
                        }
                    }
                }
                let ts = Timestamp(round * 100 + k as u64);
                let mut rest = &b[..];
                while !rest.is_empty() {
                    let n = 1 + rng.below(rest.len());
                    let _ = p.on_data(*dir, &rest[..n], ts, &mut out);
                    rest = &rest[n..];
                    if rng.below(40) == 0 {
                        p.on_gap(*dir, rng.below(400) as u32);
                    }
                }
            }
            p.on_tick(Timestamp(round * 100 + 50), 10, &mut out);
            p.on_close(Timestamp(round * 100 + 99), round % 2 == 0, &mut out);
            // Random bytes straight into the pure parsers.
            let junk: Vec<u8> = (0..rng.below(300)).map(|_| rng.next() as u8).collect();
            let _ = ClientHello::parse(&junk).map(|c| {
                (
                    c.server_name(),
                    c.alpn().count(),
                    c.supported_versions().count(),
                )
            });
            let _ = ServerHello::parse(&junk).map(|s| (s.alpn(), s.selected_version()));
            let _ = RecordHeader::parse(&junk);
            assert!(out.len() <= 1, "at most one handshake per connection");
            out.clear();
        }
    }

    fn run_capture(file: &str, port: u16) -> Vec<Transaction> {
        use crate::proto::testkit::{self as fixture, Feed};
        let segs = fixture::read(file).unwrap_or_else(|| panic!("{file}"));
        let mut p = TlsParser::default();
        let mut out = Vec::new();
        let mut last = Timestamp::ZERO;
        for f in fixture::tcp(&segs, port) {
            match f {
                Feed::Data(dir, bytes, ts) => {
                    last = ts;
                    p.on_data(dir, &bytes, ts, &mut out);
                }
                Feed::Gap(dir, n) => p.on_gap(dir, n),
            }
        }
        p.on_close(last, false, &mut out);
        out
    }

    /// Compares what podtap reports for the TLS captures of the shared corpus with what
    /// tshark shows (`-e tls.handshake.extensions_server_name -e tls.handshake.ciphersuite
    /// -e tls.handshake.extensions.supported_version -e tls.handshake.extensions_alpn_str`).
    #[test]
    fn shared_captures() {
        use crate::proto::testkit::{self as fixture, Feed};
        if fixture::pcaps().is_none() {
            return;
        }
        // (file, server port, SNI, version, cipher, negotiated ALPN)
        type Case<'a> = (&'a str, u16, &'a str, &'a str, &'a str, Option<&'a str>);
        let cases: &[Case] = &[
            (
                "packetbeat/tls-sample2.pcap",
                443,
                "example.net",
                "1.2",
                "0xc02f",
                Some("h2"),
            ),
            (
                "packetbeat/tls-version-13.pcap",
                443,
                "play.google.com",
                "1.3",
                "0x1301",
                None,
            ),
            (
                "packetbeat/http2-16-ssl.pcap",
                443,
                "localhost",
                "1.2",
                "0xc02f",
                Some("h2-16"),
            ),
            (
                "suricata-verify/tls-alpn-log-detect-02/input.pcap",
                443,
                "p130-contacts.icloud.com",
                "1.2",
                "0xc02c",
                Some("http/1.1"),
            ),
            (
                "suricata-verify/tls/tls-fin-close-data-01/debug-s13.pcap",
                443,
                "rr4---sn-5hne6nzy.googlevideo.com",
                "1.3",
                "0x1301",
                None,
            ),
            (
                "suricata-verify/tls/tls-client-hello-frag-01/dump_mtu300.pcap",
                443,
                "www.google.com",
                "1.2",
                "0xc02b",
                Some("h2"),
            ),
            (
                "suricata-verify/tls/tls13-draft28/tls13_draft28.pcap",
                4433,
                "localhost",
                "1.3",
                "0x1302",
                None,
            ),
            (
                "suricata-verify/tls-duplicate-hello/input.pcap",
                8443,
                "localhost",
                "1.3",
                "0x1301",
                None,
            ),
        ];
        // The capture ends after the server's first flight (ServerHelloDone): the
        // handshake is reported at close, with what the hellos said.
        let mut incomplete = run_capture("packetbeat/tls-sample1.pcap", 443);
        assert_eq!(incomplete.len(), 1);
        let tx = incomplete.remove(0);
        assert_eq!(tx.completeness.0, Completeness::CLOSED);
        assert_eq!(tx.resource, "www.elastic.co");
        assert_eq!(a(&tx, "tls.protocol.version"), "1.2");
        assert_eq!(
            a(&tx, "tls.cipher"),
            "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"
        );
        assert_eq!(a(&tx, "tls.next_protocol"), "h2");
        assert_eq!(a(&tx, "tls.established"), "false");

        for &(file, port, sni, version, cipher, alpn) in cases {
            let segs = fixture::read(file).unwrap_or_else(|| panic!("{file}"));
            let mut p = TlsParser::default();
            let mut out = Vec::new();
            let mut last = Timestamp::ZERO;
            for f in fixture::tcp(&segs, port) {
                match f {
                    Feed::Data(dir, bytes, ts) => {
                        last = ts;
                        assert_eq!(
                            p.on_data(dir, &bytes, ts, &mut out),
                            Progress::Continue,
                            "{file}"
                        );
                    }
                    Feed::Gap(dir, n) => p.on_gap(dir, n),
                }
            }
            p.on_close(last, false, &mut out);
            assert_eq!(out.len(), 1, "{file}");
            let tx = &out[0];
            assert!(
                tx.completeness.is_complete(),
                "{file}: {:?}",
                tx.completeness
            );
            assert_eq!(tx.resource, sni, "{file}");
            assert_eq!(a(tx, "tls.protocol.version"), version, "{file}");
            assert_eq!(a(tx, "podtap.tls.cipher_id"), cipher, "{file}");
            assert_eq!(attr(tx, "tls.next_protocol").as_deref(), alpn, "{file}");
            assert_eq!(*p.stats(), TlsStats::default(), "{file}");
            assert!(tx.end > tx.start, "{file}");
            // Handshake times (µs) checked against tshark's frame times: ClientHello → the
            // server's ChangeCipherSpec (1.2) or first encrypted record (1.3).
            let times = match file {
                "packetbeat/tls-sample2.pcap" => Some((1578768434669950, 1578768435034575)),
                "packetbeat/tls-version-13.pcap" => Some((1578852014933383, 1578852014944403)),
                "suricata-verify/tls/tls-client-hello-frag-01/dump_mtu300.pcap" => {
                    Some((1659620473165855, 1659620473171644))
                }
                _ => None,
            };
            if let Some((start_us, end_us)) = times {
                assert_eq!(
                    (tx.start.0 / 1000, tx.end.0 / 1000),
                    (start_us, end_us),
                    "{file}"
                );
            }
            // Every server sent encrypted records (in 1.3 its encrypted handshake).
            let enc = p.encrypted_bytes();
            assert!(enc[1] > 0, "{file}: {enc:?}");
            if file.contains("duplicate-hello") {
                assert_eq!(a(tx, "podtap.tls.client_hellos"), "2");
                assert_eq!(enc[0], 0, "the client never sent encrypted records");
            } else {
                assert!(enc[0] > 0, "{file}: {enc:?}");
            }
        }
    }
}
