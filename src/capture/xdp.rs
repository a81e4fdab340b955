//! AF_XDP capture: one socket per (interface, queue), each with its own UMEM, fill,
//! completion and receive rings (xsk-rs over libxdp).
//!
//! podtap loads its own XDP program (`bpf/xsk.bpf.c`: queue q → the socket of queue q)
//! rather than libxdp's default, so it decides the attach mode and can recognise its
//! program later: one program per interface, shared by all of podtap's sockets on it,
//! detached when the last socket is dropped. A program a crashed run left on the
//! interface is recognised by name and replaced, never stacked; anyone else's program
//! is left alone and reported.
//!
//! Frames are handed to the worker straight from the UMEM. Copies made by the
//! [`mirror`](super::mirror) carry an 802.1ad tag naming the pod veth; it is removed in
//! place (the MAC addresses move forward over it) and becomes `Frame::obs`.
//!
//! Each frame carries its own time: the XDP program stamps it on arrival
//! (`bpf_ktime_get_ns`, CLOCK_MONOTONIC) in a 16-byte header it pushes in front of the
//! packet ([`STAMP_LEN`]); the source strips the header and converts the stamp to wall
//! time ([`MonoToWall`]). One time per receive batch would give every frame of a batch
//! the same time: a request and its response, or a SYN and its SYN-ACK, taken in one
//! batch would be 0 ns apart. A frame without a believable stamp (the program could not
//! move the packet's head, or the time is implausible) gets the batch's time instead
//! and is counted in [`SourceStats::unstamped`].

use std::collections::HashMap;
use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, Weak};

use serde::Deserialize;
use xsk_rs::config::{BindFlags, FrameSize, LibxdpFlags, QueueSize, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::bpfobj::{self, BpfObject};
use super::mirror::{self, Direction, TagTable};
use super::{CaptureError, Frame, Source, SourceStats};
use crate::packet::LinkType;
use crate::time::{self, MonoToWall, Timestamp};

/// `[capture.xdp]`: AF_XDP socket geometry and behaviour.
///
/// Defaults hold a 30 ms stall of the capture thread at 1.5 Mpps per queue (45 000
/// frames): 65 536 frames of 2 KiB (128 MiB of UMEM per queue, locked memory), all of
/// them in the fill ring at rest and all of them fitting in the receive ring when the
/// worker stalls, i.e. ~44 ms of headroom. 2 KiB frames take 1500-byte-MTU frames plus
/// tags and the 16-byte arrival stamp (copy mode puts 256 bytes of headroom in front);
/// raise `frame_size` to 4096 to capture larger frames.
///
/// Memory per queue (one queue per worker on the mirror device, one per NIC receive
/// queue on a `direct` interface): `frame_count * frame_size` of UMEM plus 8 bytes per
/// fill-ring entry and 16 per receive-ring entry, all locked: 128 MiB + 1.5 MiB by
/// default. [`XdpConfig::memory_per_queue`] computes it.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XdpConfig {
    /// Bytes per UMEM frame: 2048 or 4096. Default 2048.
    pub frame_size: u32,
    /// Frames in each queue's UMEM. Default 65536.
    pub frame_count: u32,
    /// Fill ring entries (power of two, at most `frame_count`). Default 65536.
    pub fill_ring: u32,
    /// Receive ring entries (power of two). Default 65536.
    pub rx_ring: u32,
    /// Frames taken from the receive ring per batch. Default 64.
    pub batch: u32,
    /// XDP attach mode: `auto` (driver mode where the driver supports XDP, else generic),
    /// `native` or `generic`. Default `auto`.
    pub attach_mode: AttachMode,
    /// Zero-copy: `auto` (where the driver supports it, else copy), `on` (fail
    /// without), `off`. Default `auto`.
    pub zero_copy: ZeroCopy,
    /// Let the driver sleep until woken (XDP_USE_NEED_WAKEUP): saves a core when idle.
    /// Default true.
    pub need_wakeup: bool,
    /// Busy-poll the device queue for this many microseconds per receive
    /// (SO_BUSY_POLL with SO_PREFER_BUSY_POLL); 0 = off. Default 0.
    pub busy_poll_us: u32,
    /// Stamp each frame with its arrival time in the XDP program. `false` times frames
    /// by receive batch (every frame of a batch gets the same time, so short durations
    /// read 0): only to measure what the stamps cost. Default true.
    pub frame_timestamps: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    #[default]
    Auto,
    Native,
    Generic,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ZeroCopy {
    #[default]
    Auto,
    On,
    Off,
}

impl Default for XdpConfig {
    fn default() -> Self {
        XdpConfig {
            frame_size: 2048,
            frame_count: 65536,
            fill_ring: 65536,
            rx_ring: 65536,
            batch: 64,
            attach_mode: AttachMode::Auto,
            zero_copy: ZeroCopy::Auto,
            need_wakeup: true,
            busy_poll_us: 0,
            frame_timestamps: true,
        }
    }
}

impl XdpConfig {
    /// Frames one queue holds while its worker is away: what the fill ring has lent the
    /// kernel, as far as the receive ring can queue them (one UMEM frame each, whatever
    /// their length).
    pub fn frames_held(&self) -> u64 {
        self.fill_ring.min(self.rx_ring).min(self.frame_count) as u64
    }

    /// How long one queue holds `pps` frames per second, in milliseconds.
    pub fn holds_ms(&self, pps: u64) -> f64 {
        self.frames_held() as f64 * 1000.0 / pps.max(1) as f64
    }

    /// Bytes one queue locks: its UMEM and its rings (fill: 8-byte addresses, receive:
    /// 16-byte descriptors; the completion and transmit rings podtap never uses have 64
    /// entries).
    pub fn memory_per_queue(&self) -> u64 {
        self.frame_count as u64 * self.frame_size as u64
            + self.fill_ring as u64 * 8
            + self.rx_ring as u64 * 16
            + 64 * 8
            + 64 * 16
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.frame_size != 2048 && self.frame_size != 4096 {
            return Err("frame_size: must be 2048 or 4096".into());
        }
        for (k, v) in [("fill_ring", self.fill_ring), ("rx_ring", self.rx_ring)] {
            if !v.is_power_of_two() || v < 64 {
                return Err(format!("{k}: must be a power of two of at least 64"));
            }
        }
        if self.frame_count < self.fill_ring {
            return Err("frame_count: must be at least fill_ring".into());
        }
        if self.batch == 0 || self.batch > self.rx_ring {
            return Err("batch: must be between 1 and rx_ring".into());
        }
        Ok(())
    }
}

/// How the XDP program runs on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native XDP).
    Native,
    /// On the generic skb path (slower, works on any interface).
    Generic,
}

#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("no interface {0}")]
    NoInterface(String),
    #[error("cannot mount bpffs on /sys/fs/bpf: {0} (mount it: mount -t bpf bpf /sys/fs/bpf)")]
    BpfFs(io::Error),
    #[error("loading the XDP program: {0} (run as root with CAP_BPF and CAP_NET_ADMIN)")]
    Load(io::Error),
    #[error(
        "{ifname}: XDP program {name:?} (id {id}) of another tool is attached (remove it: ip link set dev {ifname} xdp off, or use capture.mode=tpacket)"
    )]
    ForeignProgram {
        ifname: String,
        name: String,
        id: u32,
    },
    #[error(
        "{ifname}: attaching XDP in {mode:?} mode: {source}{kernel} (use capture.mode=tpacket, or capture.xdp.attach_mode=generic where the driver refuses native XDP)"
    )]
    Attach {
        ifname: String,
        mode: XdpMode,
        source: io::Error,
        /// The kernel's own reason, as libbpf reported it (`: Kernel error message: ...`,
        /// e.g. virtio_net refusing XDP while LRO/GRO_HW is on), or empty.
        kernel: String,
    },
    #[error(
        "creating the UMEM: {0} (raise RLIMIT_MEMLOCK: ulimit -l unlimited / LimitMEMLOCK=infinity, or grant CAP_IPC_LOCK; or lower capture.xdp.frame_count)"
    )]
    Umem(String),
    #[error(
        "{ifname} queue {queue}: AF_XDP socket: {reason} (does the interface have this queue (ethtool -l)? is another AF_XDP socket bound to it? zero_copy=on without driver support?)"
    )]
    Socket {
        ifname: String,
        queue: u32,
        reason: String,
    },
    #[error("invalid [capture.xdp] config: {0}")]
    Config(String),
}

const XDP_FLAGS_SKB_MODE: u32 = 2;
const XDP_FLAGS_DRV_MODE: u32 = 4;
const XDP_FLAGS_REPLACE: u32 = 16;
const NETDEV_XDP_ACT_BASIC: u64 = 1;
const NETDEV_XDP_ACT_REDIRECT: u64 = 2;
const NETDEV_XDP_ACT_XSK_ZEROCOPY: u64 = 8;
const SOL_XDP: i32 = 283;
const XDP_OPTIONS: i32 = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1;
const SO_BUSY_POLL: i32 = 46;
const SO_PREFER_BUSY_POLL: i32 = 69;
const SO_BUSY_POLL_BUDGET: i32 = 70;

fn ifindex_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

/// Programs attached to an interface now, and what its driver can do.
struct Query {
    drv_prog: u32,
    skb_prog: u32,
    features: u64,
}

fn query(ifindex: u32) -> io::Result<Query> {
    // SAFETY: a zeroed, sized opts struct filled in by libbpf.
    unsafe {
        let mut q: libxdp_sys::bpf_xdp_query_opts = std::mem::zeroed();
        // sz ends at the last field (trailing padding may not stay zero).
        q.sz = std::mem::offset_of!(libxdp_sys::bpf_xdp_query_opts, xdp_zc_max_segs) + 4;
        let r = libxdp_sys::bpf_xdp_query(ifindex as i32, 0, &mut q);
        if r < 0 {
            return Err(io::Error::from_raw_os_error(-r));
        }
        Ok(Query {
            drv_prog: q.drv_prog_id,
            skb_prog: q.skb_prog_id,
            features: q.feature_flags,
        })
    }
}

fn is_ours(name: &str) -> bool {
    name.starts_with("podtap_xsk")
}

/// Whether AF_XDP can capture on `ifname`, and in which mode; the reason when not.
/// Changes nothing on the interface. Used by `capture.mode = "auto"` and `podtap check`.
pub fn probe(ifname: &str) -> Result<XdpMode, String> {
    const AF_XDP: i32 = 44;
    let ifindex = ifindex_of(ifname).ok_or_else(|| format!("no interface {ifname}"))?;
    // SAFETY: socket(2)/close(2) on a descriptor we own.
    unsafe {
        let fd = libc::socket(AF_XDP, libc::SOCK_RAW, 0);
        if fd < 0 {
            return Err(format!(
                "AF_XDP socket: {} (kernel without CONFIG_XDP_SOCKETS, or missing CAP_NET_RAW)",
                io::Error::last_os_error()
            ));
        }
        libc::close(fd);
    }
    let q = query(ifindex).map_err(|e| format!("querying XDP state: {e}"))?;
    for id in [q.drv_prog, q.skb_prog] {
        if id != 0 {
            let name = bpfobj::prog_name(id).unwrap_or_default();
            if !is_ours(&name) {
                return Err(format!(
                    "XDP program {name:?} of another tool is attached (AF_XDP would replace it)"
                ));
            }
        }
    }
    if q.features & (NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT)
        == NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT
    {
        Ok(XdpMode::Native)
    } else {
        Ok(XdpMode::Generic)
    }
}

/// podtap's XDP program attached to one interface, shared by its sockets there.
struct Attachment {
    ifname: String,
    ifindex: u32,
    mode: XdpMode,
    obj: BpfObject,
    prog_fd: RawFd,
    xsks_fd: RawFd,
}

impl Attachment {
    fn attach(ifname: &str, cfg: &XdpConfig, drop_unmatched: bool) -> Result<Attachment, XdpError> {
        let ifindex = ifindex_of(ifname).ok_or_else(|| XdpError::NoInterface(ifname.into()))?;
        bpfobj::ensure_bpffs().map_err(XdpError::BpfFs)?;
        let prog = match (drop_unmatched, cfg.frame_timestamps) {
            (true, true) => "podtap_xsk_drop",
            (false, true) => "podtap_xsk_pass",
            (true, false) => "podtap_xsk_dnts",
            (false, false) => "podtap_xsk_pnts",
        };
        let obj =
            BpfObject::load("podtap_xsk", bpfobj::XSK_OBJ, &[prog]).map_err(XdpError::Load)?;
        let prog_fd = obj
            .prog_fd(prog)
            .ok_or_else(|| XdpError::Load(io::Error::other("program missing")))?;
        let xsks_fd = obj
            .map_fd("podtap_xsks")
            .ok_or_else(|| XdpError::Load(io::Error::other("map podtap_xsks missing")))?;
        // A stale program of a previous run is removed; anyone else's is reported.
        let q = query(ifindex).map_err(|e| XdpError::Attach {
            ifname: ifname.into(),
            mode: XdpMode::Native,
            source: e,
            kernel: String::new(),
        })?;
        for (id, flags) in [
            (q.drv_prog, XDP_FLAGS_DRV_MODE),
            (q.skb_prog, XDP_FLAGS_SKB_MODE),
        ] {
            if id == 0 {
                continue;
            }
            let name = bpfobj::prog_name(id).unwrap_or_default();
            if !is_ours(&name) {
                return Err(XdpError::ForeignProgram {
                    ifname: ifname.into(),
                    name,
                    id,
                });
            }
            tracing::info!(iface = ifname, id, "replacing a stale podtap XDP program");
            // SAFETY: plain libbpf call with no options.
            unsafe { libxdp_sys::bpf_xdp_detach(ifindex as i32, flags, std::ptr::null()) };
        }
        let native_ok = q.features & (NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT)
            == NETDEV_XDP_ACT_BASIC | NETDEV_XDP_ACT_REDIRECT;
        let modes: &[XdpMode] = match cfg.attach_mode {
            AttachMode::Native => &[XdpMode::Native],
            AttachMode::Generic => &[XdpMode::Generic],
            AttachMode::Auto if native_ok => &[XdpMode::Native, XdpMode::Generic],
            AttachMode::Auto => &[XdpMode::Generic],
        };
        let mut last = None;
        for &mode in modes {
            let flags = match mode {
                XdpMode::Native => XDP_FLAGS_DRV_MODE,
                XdpMode::Generic => XDP_FLAGS_SKB_MODE,
            };
            // SAFETY: prog_fd is a loaded XDP program; no options.
            let r = unsafe {
                libxdp_sys::bpf_xdp_attach(ifindex as i32, prog_fd, flags, std::ptr::null())
            };
            if r == 0 {
                tracing::info!(iface = ifname, ?mode, "XDP program attached");
                return Ok(Attachment {
                    ifname: ifname.into(),
                    ifindex,
                    mode,
                    obj,
                    prog_fd,
                    xsks_fd,
                });
            }
            last = Some((mode, io::Error::from_raw_os_error(-r)));
        }
        let (mode, source) = last.expect("at least one mode tried");
        Err(XdpError::Attach {
            ifname: ifname.into(),
            mode,
            source,
            kernel: bpfobj::take_libbpf_warning().map_or(String::new(), |w| format!(": {w}")),
        })
    }
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let flags = match self.mode {
            XdpMode::Native => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        };
        // Only our program is removed: REPLACE with the expected old program fails if
        // someone replaced it meanwhile.
        // SAFETY: a sized opts struct naming our program fd.
        unsafe {
            let mut o: libxdp_sys::bpf_xdp_attach_opts = std::mem::zeroed();
            o.sz = std::mem::offset_of!(libxdp_sys::bpf_xdp_attach_opts, old_prog_fd) + 4;
            o.old_prog_fd = self.prog_fd;
            let r =
                libxdp_sys::bpf_xdp_attach(self.ifindex as i32, -1, flags | XDP_FLAGS_REPLACE, &o);
            if r != 0 && r != -libc::ENODEV {
                tracing::warn!(iface = %self.ifname, "detaching XDP program: {}", io::Error::from_raw_os_error(-r));
            }
        }
        let _ = &self.obj;
    }
}

/// Attachments of this process by ifindex, so sockets on one interface share one program.
static ATTACHED: Mutex<Option<HashMap<u32, Weak<Attachment>>>> = Mutex::new(None);

fn shared_attachment(
    ifname: &str,
    cfg: &XdpConfig,
    drop_unmatched: bool,
) -> Result<Arc<Attachment>, XdpError> {
    let ifindex = ifindex_of(ifname).ok_or_else(|| XdpError::NoInterface(ifname.into()))?;
    let mut g = ATTACHED.lock().unwrap_or_else(|e| e.into_inner());
    let map = g.get_or_insert_with(HashMap::new);
    if let Some(a) = map.get(&ifindex).and_then(Weak::upgrade) {
        return Ok(a);
    }
    let a = Arc::new(Attachment::attach(ifname, cfg, drop_unmatched)?);
    map.insert(ifindex, Arc::downgrade(&a));
    Ok(a)
}

/// How a frame's observation point is found.
#[derive(Clone)]
pub enum Decap {
    /// Frames from the mirror: the 802.1ad tag names the pod veth; it is removed.
    Mirror(Arc<TagTable>),
    /// Frames of an already-mirrored interface (SPAN port): obs is its ifindex.
    Plain,
}

/// Counters beyond [`SourceStats`]: the kernel's XDP_STATISTICS for this socket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct XdpKernelStats {
    /// Dropped for other reasons (frame too large for a UMEM frame, ...).
    pub rx_dropped: u64,
    /// Dropped because the receive ring was full (the worker fell behind).
    pub rx_ring_full: u64,
    /// Times the kernel found the fill ring empty.
    pub rx_fill_ring_empty: u64,
    pub rx_invalid_descs: u64,
}

/// Bytes of the header the XDP program pushes in front of each frame: `struct
/// podtap_stamp` of `bpf/xsk.bpf.c` (monotonic ns, then the magic; native byte order).
pub const STAMP_LEN: usize = 16;
/// The header's magic word ("podtapts"). A frame the program could not stamp starts
/// with its Ethernet header, whose bytes 8..16 (source MAC tail, EtherType, payload)
/// would have to spell it to be taken for a stamp.
pub const STAMP_MAGIC: u64 = u64::from_le_bytes(*b"podtapts");
/// A stamp older than this, relative to the receive batch, is not believed: frames wait
/// in the receive ring for milliseconds, not seconds (after 1 s the worker has long been
/// dropping), so it is not this frame's arrival.
pub const STAMP_MAX_AGE_NS: u64 = 1_000_000_000;

/// The arrival stamp (monotonic ns) at the start of a received frame, if it has one.
#[inline]
pub fn parse_stamp(frame: &[u8]) -> Option<u64> {
    let h: &[u8; STAMP_LEN] = frame.get(..STAMP_LEN)?.try_into().ok()?;
    let word = |i: usize| u64::from_ne_bytes(h[i..i + 8].try_into().expect("8 bytes"));
    (word(8) == STAMP_MAGIC).then(|| word(0))
}

/// Whether a frame stamp (monotonic ns) is believable in a batch received at monotonic
/// time `now`: not in the future, and not older than [`STAMP_MAX_AGE_NS`].
#[inline]
pub fn stamp_is_fresh(stamp: u64, now: u64) -> bool {
    stamp <= now && now - stamp <= STAMP_MAX_AGE_NS
}

/// One AF_XDP socket on one queue of one interface.
pub struct XdpSource {
    queue: u32,
    // Field order is drop order: sockets and rings before the UMEM and the program.
    rx: RxQueue,
    fq: FillQueue,
    _cq: CompQueue,
    _tx: TxQueue,
    umem: Umem,
    attachment: Arc<Attachment>,
    descs: Vec<FrameDesc>,
    decap: Decap,
    obs: u32,
    zero_copy: bool,
    need_wakeup: bool,
    /// The XDP program stamps frames (`frame_timestamps`).
    stamps: bool,
    clock: MonoToWall,
    stats: SourceStats,
    kernel: XdpKernelStats,
    untagged: u64,
    by_dir: [u64; 2],
}

// SAFETY: the source is used by one thread at a time (moved into its worker); the libxdp
// objects it holds are not shared with other threads except through xsk-rs's own locks.
unsafe impl Send for XdpSource {}

fn sockopt_u32(fd: RawFd, level: i32, name: i32, v: u32) -> io::Result<()> {
    // SAFETY: setsockopt with a u32 value we own.
    let r = unsafe { libc::setsockopt(fd, level, name, (&v as *const u32).cast(), 4) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl XdpSource {
    /// Open an AF_XDP socket on `queue` of `ifname`, attaching podtap's XDP program to
    /// the interface if this process has not yet. With [`Decap::Mirror`] frames that
    /// no socket takes are dropped (they are copies on podtap's capture device); with
    /// [`Decap::Plain`] they go on to the kernel stack.
    pub fn open(
        ifname: &str,
        queue: u32,
        cfg: &XdpConfig,
        decap: Decap,
    ) -> Result<XdpSource, XdpError> {
        cfg.validate().map_err(XdpError::Config)?;
        let drop_unmatched = matches!(decap, Decap::Mirror(_));
        let attachment = shared_attachment(ifname, cfg, drop_unmatched)?;
        let sock_err = |reason: String| XdpError::Socket {
            ifname: ifname.into(),
            queue,
            reason,
        };
        let umem_cfg = UmemConfig::builder()
            .frame_size(
                FrameSize::new(cfg.frame_size).map_err(|e| XdpError::Config(e.to_string()))?,
            )
            .fill_queue_size(
                QueueSize::new(cfg.fill_ring).map_err(|e| XdpError::Config(e.to_string()))?,
            )
            .comp_queue_size(QueueSize::new(64).expect("power of two"))
            .build()
            .map_err(|e| XdpError::Config(e.to_string()))?;
        let count = NonZeroU32::new(cfg.frame_count)
            .ok_or_else(|| XdpError::Config("frame_count: must be positive".into()))?;
        let (umem, descs) =
            Umem::new(umem_cfg, count, false).map_err(|e| XdpError::Umem(e.to_string()))?;
        let features = query(attachment.ifindex).map(|q| q.features).unwrap_or(0);
        let zc_supported = features & NETDEV_XDP_ACT_XSK_ZEROCOPY != 0;
        let mut bind = if cfg.need_wakeup {
            BindFlags::XDP_USE_NEED_WAKEUP
        } else {
            BindFlags::empty()
        };
        match (cfg.zero_copy, zc_supported) {
            (ZeroCopy::On, _) | (ZeroCopy::Auto, true) => bind |= BindFlags::XDP_ZEROCOPY,
            _ => bind |= BindFlags::XDP_COPY,
        }
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(
                QueueSize::new(cfg.rx_ring).map_err(|e| XdpError::Config(e.to_string()))?,
            )
            .tx_queue_size(QueueSize::new(64).expect("power of two"))
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind)
            .build();
        let iface: xsk_rs::config::Interface = ifname
            .parse()
            .map_err(|_| XdpError::NoInterface(ifname.into()))?;
        // SAFETY: this UMEM is new and used by this one socket only.
        let (tx, rx, fqcq) = unsafe { Socket::new(sock_cfg, &umem, &iface, queue) }
            .map_err(|e| sock_err(e.to_string()))?;
        let (mut fq, cq) =
            fqcq.ok_or_else(|| sock_err("no fill/completion rings returned".into()))?;
        let fd = rx.fd().as_raw_fd();
        bpfobj::map_update(attachment.xsks_fd, &queue, &(fd as u32))
            .map_err(|e| sock_err(format!("registering the socket in the XDP map: {e}")))?;
        if cfg.busy_poll_us > 0 {
            for (name, v) in [
                (SO_PREFER_BUSY_POLL, 1),
                (SO_BUSY_POLL, cfg.busy_poll_us),
                (SO_BUSY_POLL_BUDGET, cfg.batch),
            ] {
                if let Err(e) = sockopt_u32(fd, libc::SOL_SOCKET, name, v) {
                    tracing::warn!(iface = ifname, queue, "busy poll not enabled: {e}");
                }
            }
        }
        let mut opts = 0u32;
        let mut len = 4u32;
        // SAFETY: getsockopt into a u32 we own.
        unsafe {
            libc::getsockopt(
                fd,
                SOL_XDP,
                XDP_OPTIONS,
                (&mut opts as *mut u32).cast(),
                &mut len,
            )
        };
        let zero_copy = opts & XDP_OPTIONS_ZEROCOPY != 0;
        // All frames start in the fill ring.
        let fill_n = cfg.fill_ring.min(cfg.frame_count) as usize;
        // SAFETY: the descriptors are this UMEM's and not in any ring yet.
        let put = unsafe { fq.produce(&descs[..fill_n]) };
        if put != fill_n {
            return Err(sock_err(format!("fill ring took {put} of {fill_n} frames")));
        }
        tracing::info!(iface = ifname, queue, mode = ?attachment.mode, zero_copy, "AF_XDP socket bound");
        let obs = attachment.ifindex;
        Ok(XdpSource {
            queue,
            rx,
            fq,
            _cq: cq,
            _tx: tx,
            umem,
            attachment,
            descs: vec![FrameDesc::default(); cfg.batch as usize],
            decap,
            obs,
            zero_copy,
            need_wakeup: cfg.need_wakeup,
            stamps: cfg.frame_timestamps,
            clock: MonoToWall::new(),
            stats: SourceStats::default(),
            kernel: XdpKernelStats::default(),
            untagged: 0,
            by_dir: [0; 2],
        })
    }

    /// How the XDP program runs on this interface.
    pub fn mode(&self) -> XdpMode {
        self.attachment.mode
    }

    /// Whether the socket runs zero-copy (else the kernel copies into the UMEM).
    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    pub fn queue(&self) -> u32 {
        self.queue
    }

    pub fn kernel_stats(&self) -> XdpKernelStats {
        self.kernel
    }

    /// Frames received per direction (mirror copies only): `[from pod, to pod]`.
    pub fn by_direction(&self) -> [u64; 2] {
        self.by_dir
    }

    /// Wait up to `timeout_ms` for frames (and wake the driver when it asked for it).
    pub fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        self.rx.poll(timeout_ms).map(|_| ())
    }

    /// Read XDP_STATISTICS into the counters (a system call: call it between batches,
    /// not per frame).
    pub fn refresh_kernel_stats(&mut self) {
        if let Ok(s) = self.rx.fd().xdp_statistics() {
            self.kernel = XdpKernelStats {
                rx_dropped: s.rx_dropped(),
                rx_ring_full: s.rx_ring_full(),
                rx_fill_ring_empty: s.rx_fill_ring_empty_descs(),
                rx_invalid_descs: s.rx_invalid_descs(),
            };
            self.stats.dropped = s.rx_dropped() + s.rx_ring_full() + s.rx_invalid_descs();
            self.stats.ring_full = s.rx_ring_full();
        }
    }

    /// Like [`Source::next_batch`], also telling the direction of mirror copies (`None`
    /// for frames of a plain interface).
    pub fn next_batch_dir<F: FnMut(&Frame<'_>, Option<Direction>)>(
        &mut self,
        max: usize,
        mut visit: F,
    ) -> Result<Option<usize>, CaptureError> {
        let want = max.min(self.descs.len());
        // SAFETY: the descriptors are filled in by the receive ring of this UMEM.
        let n = unsafe { self.rx.consume(&mut self.descs[..want]) };
        if n == 0 {
            if self.need_wakeup && self.fq.needs_wakeup() {
                let fd = self.rx.fd_mut();
                let _ = self.fq.wakeup(fd, 0);
            }
            return Ok(Some(0));
        }
        // The batch's time: frames without a stamp of their own get it.
        let (now_mono, batch_ts) = if self.stamps {
            let now = time::monotonic_ns();
            self.clock.refresh(now);
            (now, self.clock.to_wall(now))
        } else {
            (0, Timestamp::now())
        };
        let mut visited = 0;
        for i in 0..n {
            let mut desc = self.descs[i];
            // SAFETY: the frame was handed to us by the receive ring and is ours until
            // it goes back to the fill ring below.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut bytes = data.contents_mut();
            let ts = if !self.stamps {
                batch_ts
            } else {
                let stamp = parse_stamp(bytes);
                if stamp.is_some() {
                    bytes = &mut bytes[STAMP_LEN..];
                }
                match stamp {
                    Some(t) if stamp_is_fresh(t, now_mono) => self.clock.to_wall(t),
                    _ => {
                        self.stats.unstamped += 1;
                        batch_ts
                    }
                }
            };
            let (start, obs, dir) = match &self.decap {
                Decap::Plain => (0, self.obs, None),
                Decap::Mirror(tags) => match mirror::untag(bytes) {
                    Some((tci, off)) => {
                        let (slot, dir) = mirror::decode_tci(tci);
                        match tags.ifindex(slot) {
                            Some(ifi) => (off, ifi, Some(dir)),
                            None => {
                                self.untagged += 1;
                                self.stats.malformed += 1;
                                continue;
                            }
                        }
                    }
                    None => {
                        self.untagged += 1;
                        self.stats.malformed += 1;
                        continue;
                    }
                },
            };
            let frame = &bytes[start..];
            let f = Frame {
                data: frame,
                ts,
                wire_len: frame.len() as u32,
                link: LinkType::Ethernet,
                obs,
            };
            if let Some(d) = dir {
                self.by_dir[(d == Direction::ToPod) as usize] += 1;
            }
            visit(&f, dir);
            visited += 1;
        }
        self.stats.received += visited as u64;
        // SAFETY: these frames came off the receive ring and are no longer borrowed.
        let put = unsafe { self.fq.produce(&self.descs[..n]) };
        debug_assert_eq!(put, n, "fill ring has room for every frame we took");
        if self.need_wakeup && self.fq.needs_wakeup() {
            let fd = self.rx.fd_mut();
            let _ = self.fq.wakeup(fd, 0);
        }
        Ok(Some(visited))
    }
}

impl crate::capture::LiveSource for XdpSource {
    fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        XdpSource::wait(self, timeout_ms)
    }
    fn refresh_kernel_stats(&mut self) {
        XdpSource::refresh_kernel_stats(self)
    }
    fn ring_full(&self) -> u64 {
        self.stats.ring_full
    }
}

impl Source for XdpSource {
    fn next_batch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        mut visit: F,
    ) -> Result<Option<usize>, CaptureError> {
        self.next_batch_dir(max, |f, _| visit(f))
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

impl Drop for XdpSource {
    fn drop(&mut self) {
        let _ = bpfobj::map_delete(self.attachment.xsks_fd, &self.queue);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_hold_30ms_at_1_5_mpps() {
        let c = XdpConfig::default();
        c.validate().unwrap();
        assert_eq!(c.frames_held(), 65536);
        assert!(c.holds_ms(1_500_000) >= 30.0, "{}", c.holds_ms(1_500_000));
        // The smallest ring bounds what is held.
        let small = XdpConfig { rx_ring: 4096, ..c };
        assert_eq!(small.frames_held(), 4096);
    }

    #[test]
    fn bad_geometry_names_the_key() {
        let c = XdpConfig {
            frame_size: 3000,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("frame_size"));
        let c = XdpConfig {
            rx_ring: 1000,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("rx_ring"));
        let c = XdpConfig {
            frame_count: 100,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("frame_count"));
    }

    #[test]
    fn stamps_are_recognised_by_their_magic() {
        // A stamped frame: the program's header, then the Ethernet frame.
        let mut f = Vec::new();
        f.extend_from_slice(&123_456_789u64.to_ne_bytes());
        f.extend_from_slice(&STAMP_MAGIC.to_ne_bytes());
        f.extend_from_slice(&[0xff; 6]);
        assert_eq!(parse_stamp(&f), Some(123_456_789));
        // A frame the program could not stamp starts with its Ethernet header.
        let eth = [
            0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00, 0x45, 0, 0, 20,
        ];
        assert_eq!(parse_stamp(&eth), None);
        assert_eq!(parse_stamp(&[0u8; 64]), None);
        // Too short to hold a header.
        assert_eq!(parse_stamp(&f[..STAMP_LEN - 1]), None);
        assert_eq!(parse_stamp(&[]), None);
    }

    #[test]
    fn stale_and_future_stamps_are_not_believed() {
        let now = 50 * STAMP_MAX_AGE_NS;
        assert!(stamp_is_fresh(now, now));
        assert!(stamp_is_fresh(now - 1, now));
        assert!(stamp_is_fresh(now - STAMP_MAX_AGE_NS, now));
        assert!(!stamp_is_fresh(now - STAMP_MAX_AGE_NS - 1, now), "stale");
        assert!(!stamp_is_fresh(0, now), "stale");
        assert!(!stamp_is_fresh(now + 1, now), "from the future");
        assert!(!stamp_is_fresh(u64::MAX, now));
    }

    #[test]
    fn memory_per_queue_counts_umem_and_rings() {
        let c = XdpConfig::default();
        assert_eq!(
            c.memory_per_queue(),
            (128 << 20) + 65536 * 8 + 65536 * 16 + 64 * 24
        );
    }

    #[test]
    fn probe_reports_missing_interfaces() {
        assert!(probe("nonexistent0").unwrap_err().contains("no interface"));
    }
}
