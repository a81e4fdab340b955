//! The daemon's local control API: a Unix socket (never TCP) that `podtap status`,
//! `podtap sniff` and `podtap top` talk to, and that later requests (a flight recorder's
//! `record`) join as further [`Request`] variants.
//!
//! Protocol: the client sends one request, a JSON object on one line (at most
//! `control.max_request_bytes`, within `control.request_timeout_ms`); the daemon answers
//! with one JSON line ([`Reply`]). A `sniff` reply is followed by a stream of binary
//! records ([`StreamRecord`]) until the sniff ends. A malformed, oversized or late
//! request, or a client that is neither root nor in `control.group`, gets an error reply
//! and the connection is closed; the daemon carries on.
//!
//! ```text
//! podtap sniff ──connect──▶ control.sock ──▶ handler thread ──register──▶ TapHub
//!                                                 ▲                         │ (workers check
//!                                                 └── bounded queue ◀── copies ┘  once per batch)
//! ```

pub mod client;
pub mod pcapng;
pub mod server;
pub mod sniff;
pub mod tap;

use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// `[control]`: the control socket.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ControlConfig {
    /// Serve the control socket (`podtap status`, `podtap sniff`). Default true.
    pub enabled: bool,
    /// Path of the Unix socket. Its directory is created mode 0750 when missing; a stale
    /// socket left by a dead daemon is replaced, a live daemon's is left alone (this one
    /// then serves none, and says so). Default "/run/podtap/control.sock".
    pub socket: String,
    /// A group (name or number) whose members may use the socket besides root: the socket
    /// is then mode 0660 and owned by that group (its directory 0750, group too). Empty:
    /// root only, mode 0600. Default "".
    pub group: String,
    /// Longest request line in bytes; a longer one gets an error reply. Default 65536.
    pub max_request_bytes: usize,
    /// A client must send its whole request within this long (ms). Default 2000.
    pub request_timeout_ms: u64,
    /// Clients served at once; more are answered with an error. Default 16.
    pub max_clients: usize,
    /// `sniff` requests served at once. Default 4.
    pub max_sniffs: usize,
    /// Frames queued per sniff between the workers and its client. When the client reads
    /// too slowly the queue fills and further frames are dropped (counted, reported at
    /// the end): a worker never waits for a sniff. Default 16384.
    pub max_sniff_queue_frames: usize,
    /// Bytes of frames queued per sniff (the same rule). Default 67108864 (64 MiB).
    pub max_sniff_queue_bytes: usize,
    /// Longest sniff the daemon serves, whatever the client asks (s). Default 3600.
    pub max_sniff_secs: u64,
    /// Keep the statistics `podtap top` reads even when nothing exports them (no OTLP,
    /// no Prometheus): the workers then record the per-call and per-flow series as they
    /// do for export (a cost on the packet path: perf/RESULTS.md, export overhead).
    /// Default false: `top` then answers only on a daemon that exports metrics.
    pub top: bool,
    /// Rows per table a `top` answer holds at most, whatever the client asks. Default 100.
    pub max_top_rows: usize,
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            enabled: true,
            socket: DEFAULT_SOCKET.into(),
            group: String::new(),
            max_request_bytes: 65536,
            request_timeout_ms: 2000,
            max_clients: 16,
            max_sniffs: 4,
            max_sniff_queue_frames: 16384,
            max_sniff_queue_bytes: 64 << 20,
            max_sniff_secs: 3600,
            top: false,
            max_top_rows: 100,
        }
    }
}

pub const DEFAULT_SOCKET: &str = "/run/podtap/control.sock";

impl ControlConfig {
    /// Checks serde cannot express; the key below `control` and a message.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.socket.is_empty() {
            return Err(("socket", "must name a path".into()));
        }
        if self.max_request_bytes < 256 {
            return Err(("max_request_bytes", "must be at least 256".into()));
        }
        for (key, v) in [
            ("request_timeout_ms", self.request_timeout_ms as usize),
            ("max_clients", self.max_clients),
            ("max_sniffs", self.max_sniffs),
            ("max_sniff_queue_frames", self.max_sniff_queue_frames),
            ("max_sniff_queue_bytes", self.max_sniff_queue_bytes),
            ("max_sniff_secs", self.max_sniff_secs as usize),
            ("max_top_rows", self.max_top_rows),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("control socket {path}: {source}")]
    Socket { path: String, source: io::Error },
    #[error("control.group: no group named {0:?}")]
    NoGroup(String),
    #[error(
        "no podtap daemon at {path}: start one with `podtap run` (or `systemctl start podtap`), or pass its config with --config"
    )]
    NoDaemon { path: String },
    #[error("{path}: permission denied: the control socket is for root (or control.group)")]
    Denied { path: String },
    #[error("the daemon refused: {0}")]
    Refused(String),
    #[error("control protocol: {0}")]
    Protocol(String),
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// One request: a JSON object on one line, `{"request": "status"}`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "request", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Interfaces, engines, workers, drops and export state.
    Status {},
    /// A copy of a pod's (or interface's) frames as they pass the workers.
    Sniff(SniffRequest),
    /// One snapshot of the busiest pods, call edges and endpoints (`podtap top`).
    Top(crate::stats::top::TopQuery),
}

/// What to sniff. Exactly one of `pod`, `selector` and `interface`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SniffRequest {
    /// A pod by name (or its network namespace's name, or `namespace/name`).
    pub pod: Option<String>,
    /// The pod's Kubernetes namespace, with `pod`.
    pub namespace: Option<String>,
    /// A label selector, `app=web,tier!=db,env in (a,b)`: every matching pod.
    pub selector: Option<String>,
    /// A host interface by name.
    pub interface: Option<String>,
    /// A packet filter in tcpdump's language (see `crate::filter`). Empty: every frame.
    pub filter: String,
    /// Bytes kept of each frame. 0: whole frames.
    pub snaplen: u32,
    /// End after this many frames. 0: no limit.
    pub count: u64,
    /// End after this many seconds (capped by `control.max_sniff_secs`). 0: the cap.
    pub duration_secs: u64,
}

/// The daemon's answer line.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Reply {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sniff: Option<SniffHeader>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top: Option<crate::stats::top::TopSnapshot>,
}

impl Reply {
    pub fn error(msg: impl Into<String>) -> Reply {
        Reply {
            ok: false,
            error: Some(msg.into()),
            ..Reply::ok()
        }
    }

    /// A success with nothing in it yet.
    pub fn ok() -> Reply {
        Reply {
            ok: true,
            error: None,
            status: None,
            sniff: None,
            top: None,
        }
    }
}

/// `podtap status`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub node: String,
    pub uptime_secs: u64,
    pub interfaces: Vec<IfaceStatus>,
    /// Capture device of the AF_XDP mirror, when there is one.
    pub mirror: Option<String>,
    pub workers: Vec<WorkerStatus>,
    pub drops: Drops,
    pub export: ExportStatus,
    pub sniffs_active: usize,
    /// The sniffs being served: what, how long, frames sent and lost.
    #[serde(default)]
    pub sniffs: Vec<SniffStatus>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SniffStatus {
    pub target: String,
    pub filter: String,
    pub secs: u64,
    pub frames: u64,
    pub dropped: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct IfaceStatus {
    pub name: String,
    pub ifindex: u32,
    /// `tpacket` or `xdp`.
    pub engine: String,
    /// Why that engine.
    pub reason: String,
    /// `namespace/pod` (or the network namespace's name) when attribution knows it.
    #[serde(default)]
    pub pod: Option<String>,
    #[serde(default)]
    pub frames: u64,
    #[serde(default)]
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub queue: usize,
    pub engine: String,
    pub active: bool,
    pub received: u64,
    pub kernel_dropped: u64,
    pub ring_full: u64,
    pub filtered: u64,
    pub malformed: u64,
    pub records_dropped: u64,
    pub open_flows: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Drops {
    /// Frames the kernel dropped (rings full), all queues.
    pub kernel: u64,
    pub ring_full: u64,
    /// Records the output queue refused.
    pub records: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExportStatus {
    /// OTLP or Prometheus configured.
    pub enabled: bool,
    pub ready: bool,
    pub failing: bool,
    pub prometheus: Option<String>,
    pub spans_sampled: u64,
    pub spans_exported: u64,
    pub spans_dropped: u64,
    pub points_exported: u64,
    pub points_dropped: u64,
}

/// The first line of a sniff's answer: what it captures, then [`StreamRecord`]s follow.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SniffHeader {
    pub node: String,
    /// What was asked for, in words (`pod default/web`, `interface veth1`).
    pub target: String,
    pub filter: String,
    pub interfaces: Vec<SniffIface>,
}

/// One observation point of a sniff: a pcapng interface.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SniffIface {
    pub ifindex: u32,
    pub name: String,
    pub pod: Option<String>,
    /// pcapng link type (1: Ethernet).
    pub linktype: u16,
}

/// How a sniff ended: the stream's last record.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SniffEnd {
    /// Frames sent to the client.
    pub frames: u64,
    /// Matching frames lost because the client read too slowly (queue full).
    pub dropped: u64,
    /// `count`, `duration`, `client`, `shutdown`.
    pub reason: String,
}

/// A record of the binary stream that follows a sniff's header line. Little-endian:
/// `1` frame: ifindex u32, linktype u16, 0u16, ts_ns u64, wire_len u32, caplen u32, data;
/// `2` end: len u32, a [`SniffEnd`] as JSON.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamRecord<'a> {
    Frame(StreamFrame<'a>),
    End(SniffEnd),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamFrame<'a> {
    pub ifindex: u32,
    pub linktype: u16,
    pub ts_ns: u64,
    pub wire_len: u32,
    pub data: &'a [u8],
}

const REC_FRAME: u8 = 1;
const REC_END: u8 = 2;
const FRAME_HDR: usize = 1 + 4 + 2 + 2 + 8 + 4 + 4;
/// Longest frame or end record a client accepts (a corrupt stream is an error, not an
/// allocation).
const MAX_RECORD: usize = 1 << 20;

pub fn encode_frame(out: &mut Vec<u8>, f: &StreamFrame<'_>) {
    out.push(REC_FRAME);
    out.extend_from_slice(&f.ifindex.to_le_bytes());
    out.extend_from_slice(&f.linktype.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&f.ts_ns.to_le_bytes());
    out.extend_from_slice(&f.wire_len.to_le_bytes());
    out.extend_from_slice(&(f.data.len() as u32).to_le_bytes());
    out.extend_from_slice(f.data);
}

pub fn encode_end(out: &mut Vec<u8>, end: &SniffEnd) {
    let json = serde_json::to_vec(end).expect("plain struct serializes");
    out.push(REC_END);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
}

/// Decode the record at the start of `buf`: the record and its length, `Ok(None)` when
/// `buf` holds only part of it.
pub fn decode_record(buf: &[u8]) -> Result<Option<(StreamRecord<'_>, usize)>, ControlError> {
    let le32 = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    match kind {
        REC_FRAME => {
            if buf.len() < FRAME_HDR {
                return Ok(None);
            }
            let caplen = le32(&buf[21..25]) as usize;
            if caplen > MAX_RECORD {
                return Err(ControlError::Protocol(format!("frame of {caplen} bytes")));
            }
            let end = FRAME_HDR + caplen;
            if buf.len() < end {
                return Ok(None);
            }
            let f = StreamFrame {
                ifindex: le32(&buf[1..5]),
                linktype: u16::from_le_bytes([buf[5], buf[6]]),
                ts_ns: u64::from_le_bytes(buf[9..17].try_into().expect("8 bytes")),
                wire_len: le32(&buf[17..21]),
                data: &buf[FRAME_HDR..end],
            };
            Ok(Some((StreamRecord::Frame(f), end)))
        }
        REC_END => {
            if buf.len() < 5 {
                return Ok(None);
            }
            let len = le32(&buf[1..5]) as usize;
            if len > MAX_RECORD {
                return Err(ControlError::Protocol(format!("end record of {len} bytes")));
            }
            if buf.len() < 5 + len {
                return Ok(None);
            }
            let end: SniffEnd = serde_json::from_slice(&buf[5..5 + len])
                .map_err(|e| ControlError::Protocol(format!("end record: {e}")))?;
            Ok(Some((StreamRecord::End(end), 5 + len)))
        }
        k => Err(ControlError::Protocol(format!("unknown record kind {k}"))),
    }
}

/// Read one line of at most `max` bytes (without its newline). `Ok(None)`: the peer
/// closed before a whole line; an over-long line is `InvalidData`.
pub fn read_line(r: &mut impl Read, max: usize) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    // Byte by byte: the line is short, and nothing after it (a sniff's binary stream)
    // may be consumed into a buffer that is then lost.
    loop {
        match r.read(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) if byte[0] == b'\n' => return Ok(Some(line)),
            Ok(_) if line.len() >= max => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("request longer than {max} bytes"),
                ));
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_ones_are_errors() {
        let r: Request = serde_json::from_str(r#"{"request":"status"}"#).unwrap();
        assert_eq!(r, Request::Status {});
        let r: Request =
            serde_json::from_str(r#"{"request":"sniff","pod":"web","filter":"tcp"}"#).unwrap();
        let Request::Sniff(s) = r else { panic!() };
        assert_eq!((s.pod.as_deref(), s.filter.as_str()), (Some("web"), "tcp"));
        let r: Request =
            serde_json::from_str(r#"{"request":"top","sort":"p99","protocol":"http"}"#).unwrap();
        let Request::Top(q) = r else { panic!() };
        assert_eq!(q.sort, crate::stats::top::SortKey::P99);
        assert_eq!((q.protocol.as_deref(), q.limit), (Some("http"), 20));
        assert!(serde_json::from_str::<Request>(r#"{"request":"top","sort":"x"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"request":"reboot"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"request":"status","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>("garbage").is_err());
    }

    #[test]
    fn stream_records_round_trip_and_split_anywhere() {
        let mut buf = Vec::new();
        let f = StreamFrame {
            ifindex: 7,
            linktype: 1,
            ts_ns: 1_700_000_000_123_456_789,
            wire_len: 1514,
            data: &[1, 2, 3, 4, 5],
        };
        encode_frame(&mut buf, &f);
        let end = SniffEnd {
            frames: 1,
            dropped: 2,
            reason: "count".into(),
        };
        encode_end(&mut buf, &end);
        for cut in 0..buf.len() {
            let r = decode_record(&buf[..cut]).unwrap();
            let whole_first = FRAME_HDR + 5;
            assert_eq!(r.is_some(), cut >= whole_first, "cut {cut}");
        }
        let (r, n) = decode_record(&buf).unwrap().unwrap();
        assert_eq!(r, StreamRecord::Frame(f));
        let (r, m) = decode_record(&buf[n..]).unwrap().unwrap();
        assert_eq!(r, StreamRecord::End(end));
        assert_eq!(n + m, buf.len());
        assert!(decode_record(&[9, 0, 0]).is_err());
    }

    #[test]
    fn lines_are_bounded() {
        let mut r: &[u8] = b"{\"request\":\"status\"}\nrest";
        assert_eq!(
            read_line(&mut r, 100).unwrap().unwrap(),
            b"{\"request\":\"status\"}"
        );
        assert_eq!(r, b"rest");
        let long = vec![b'x'; 1000];
        assert!(read_line(&mut &long[..], 100).is_err());
        assert!(read_line(&mut &b"no newline"[..], 100).unwrap().is_none());
    }
}
