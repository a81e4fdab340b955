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

mod parser;
#[cfg(test)]
mod tests;

pub use parser::*;

use compact_str::{CompactString, format_compact};
use serde::{Deserialize, Serialize};

use super::detect::Transport;
use super::registry::{Probe, ProtocolDecoder, Telemetry};
use super::{Completeness, Confidence, Direction, L7Parser, Progress, Protocol, Transaction};
use crate::events::{Counters, Event};
use crate::time::Timestamp;

/// TLS decoder settings (`[protocols.tls]`).
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
                // Not reserved for the length the header claims: a peer that claims 16 KB
                // and sends 5 bytes on each of many connections must not cost 16 KB each
                // (found by the memory budget test). The buffer grows with the bytes that
                // come, up to `max`.
                self.buf.clear();
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
        if self.buf.capacity() > 4096 {
            // A large hello is over: the connection does not keep its buffer.
            self.buf = Vec::new();
        }
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
    fn heap_bytes(&self) -> usize {
        self.dirs.iter().map(|d| d.hs.buf.capacity()).sum()
    }

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

impl ProtocolDecoder for TlsParser {
    type Config = TlsConfig;
    type Shared = TlsConfig;
    const PORTS: &'static [u16] = &[443, 8443, 6443];
    const TRANSPORTS: &'static [Transport] = &[Transport::Tcp];
    type Events = crate::events::NoEvents;

    fn validate(cfg: &Self::Config) -> Result<(), String> {
        super::registry::nonzero(&[("max_handshake_message", cfg.max_handshake_message as u64)])
    }

    fn prepare(cfg: &super::ProtocolsConfig) -> Result<Self::Shared, String> {
        Ok(cfg.tls.settings.clone())
    }

    /// A handshake record of a TLS version carrying a ClientHello or ServerHello.
    fn probe(p: &Probe<'_>) -> Confidence {
        let b = p.bytes;
        if b.first() != Some(&CONTENT_HANDSHAKE) {
            return Confidence::No;
        }
        if b.len() < 6 {
            return Confidence::NeedMore;
        }
        let hello = b[5] == HANDSHAKE_CLIENT_HELLO || b[5] == HANDSHAKE_SERVER_HELLO;
        if b[1] == 3 && b[2] <= 4 && hello {
            Confidence::Likely
        } else {
            Confidence::No
        }
    }

    fn new(shared: &Self::Shared, _: Transport) -> Self {
        TlsParser::new(shared)
    }

    fn protocol(&self) -> Protocol {
        Protocol::Tls
    }

    fn drain_stats(&mut self, c: &mut crate::events::DecoderCounters<'_, Self::Events>) {
        self.take_stats().add_to(c.core())
    }

    fn telemetry(_: Protocol) -> &'static Telemetry {
        &TLS_TELEMETRY
    }
}

/// A TLS handshake is a property of its flow, not a call: no duration metric.
static TLS_TELEMETRY: Telemetry = Telemetry {
    duration: None,
    metric_attrs: &[],
    span_name: |_| "TLS handshake".into(),
    attributes: &[
        "tls.protocol.name",
        "tls.protocol.version",
        "tls.cipher",
        "tls.client.server_name",
        "tls.client.alpn",
        "tls.client.supported_versions",
        "tls.next_protocol",
        "tls.established",
        "tls.resumed",
        "podtap.tls.alert",
        "podtap.tls.cipher_id",
        "podtap.tls.client_hellos",
        "podtap.tls.client.cipher_suites",
        "podtap.tls.hello_retry",
        "podtap.tls.handshake_duration_ns",
    ],
    base: None,
};
