//! Capture sources: where frames come from. Live sources (AF_XDP, TPACKET_V3) and capture
//! files all hand the worker the same [`Frame`]s through the [`Source`] trait, so replaying
//! a file runs exactly the code that live capture runs.

pub(crate) mod bpfobj;
pub use bpfobj::route_libbpf_logs;
pub mod file_pager;
pub mod iface;
pub mod mirror;
pub mod pcap_file;
pub mod tpacket;
pub mod xdp;

use crate::packet::LinkType;
use crate::time::Timestamp;

/// One captured frame, borrowed from the source's buffer (file mapping or ring).
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    pub data: &'a [u8],
    pub ts: Timestamp,
    /// Length on the wire; larger than `data.len()` when the snap length cut it.
    pub wire_len: u32,
    pub link: LinkType,
    /// Observation point: interface index, mirror tag, or pcapng interface number.
    pub obs: u32,
}

/// Counters every source keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SourceStats {
    /// Frames handed to the worker.
    pub received: u64,
    /// Frames the kernel dropped before podtap saw them (ring full).
    pub dropped: u64,
    /// Frames skipped because the source could not make sense of them (truncated
    /// records, link types podtap does not decode).
    pub malformed: u64,
    /// Frames left to other workers by the fanout.
    pub not_mine: u64,
    /// Of `dropped`, frames lost because the receive ring was full (the worker fell
    /// behind); AF_XDP reports it apart from other drops.
    pub ring_full: u64,
    /// Frames timed by their receive batch because they carried no believable stamp of
    /// their own (AF_XDP: the driver could not reserve XDP metadata, or the stamp was
    /// stale); other sources always have a per-frame time.
    pub unstamped: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("cannot open {path}: {source}")]
    Open {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a pcap or pcapng file (magic {magic:08x})")]
    NotACapture { path: String, magic: u32 },
    #[error(
        "{path}: link type {dlt} is not supported (podtap decodes Ethernet, Linux SLL/SLL2, raw IP and BSD loopback)"
    )]
    UnsupportedLink { path: String, dlt: u32 },
    #[error("{path}: {message}")]
    Format { path: String, message: String },
    /// A live capture call failed; `fix` says what the operator can do about it.
    #[error("{what}: {source} ({fix})")]
    Live {
        what: String,
        source: std::io::Error,
        fix: &'static str,
    },
}

/// A source of frames.
pub trait Source {
    /// Visit up to `max` frames. Returns how many were visited, or `None` when the source
    /// is exhausted (end of file). A live source returns `Some(0)` when nothing is ready.
    fn next_batch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        visit: F,
    ) -> Result<Option<usize>, CaptureError>;

    fn stats(&self) -> SourceStats;
}

/// What the daemon needs of a live source beyond [`Source`]: waiting for frames without
/// spinning, and the kernel's drop counters.
pub trait LiveSource: Source + Send {
    /// Wait up to `timeout_ms` for frames.
    fn wait(&mut self, timeout_ms: i32) -> std::io::Result<()>;
    /// Fold the kernel's counters (drops, ring full) into [`Source::stats`].
    fn refresh_kernel_stats(&mut self);
    /// Times the ring was full (the kernel had nowhere to put a frame).
    fn ring_full(&self) -> u64;
}
