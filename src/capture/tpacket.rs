//! AF_PACKET TPACKET_V3 capture: one mmap'd block ring per worker, the workers' sockets
//! joined in one PACKET_FANOUT group in hash mode so both directions of a flow reach the
//! same worker (the kernel's fanout hash is symmetric and, with the defrag flag, sees
//! whole datagrams). With one worker there is no group (nothing to choose between).
//!
//! Each socket is bound to every interface of the network namespace and carries a
//! classic BPF filter that accepts only the selected interfaces (by ifindex). Changing the
//! selected set (a pod came or went) replaces that filter on the running sockets: workers
//! never restart and no frame of an unselected interface is copied to user space.
//!
//! The ring is walked block by block: a block the kernel has retired (full, or older than
//! the retire timeout) belongs to us until we hand it back. Frames are borrowed straight
//! from the ring; nothing is copied or allocated per frame.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{Ordering, fence};

use serde::Deserialize;

use super::{CaptureError, Frame, LiveSource, Source, SourceStats};
use crate::packet::LinkType;
use crate::time::Timestamp;

/// TPACKET_V3 ring geometry and behaviour, `[capture.tpacket]` in the config.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TpacketConfig {
    /// Bytes per ring block; a power of two, a multiple of the page size, and larger
    /// than the largest frame (GSO frames on veths reach 64 KiB). Default 1 MiB.
    pub block_size: u32,
    /// Blocks per worker ring. The ring must hold the traffic of the longest time a
    /// capture thread can be descheduled (measured: 16–32 ms on a loaded 2-core host).
    /// Default 32 (32 MiB per worker: ~150 ms of 64-byte frames at 1.5 Mpps, ~25 ms of
    /// full-size frames at 10 Gbit/s per worker).
    pub block_count: u32,
    /// A block that is not full is handed over after this long, so a quiet interface
    /// still delivers promptly. Default 10 ms.
    pub retire_timeout_ms: u32,
    /// Bytes kept of each frame. Default 262144 (whole frames, including GSO frames).
    pub snaplen: u32,
}

impl Default for TpacketConfig {
    fn default() -> Self {
        TpacketConfig {
            block_size: 1 << 20,
            block_count: 32,
            retire_timeout_ms: 10,
            snaplen: 262_144,
        }
    }
}

impl TpacketConfig {
    /// Frames of `frame_len` bytes (Ethernet header included) one worker's ring holds.
    pub fn frames_held(&self, frame_len: usize) -> u64 {
        let stride = frame_stride(frame_len.min(self.snaplen as usize));
        // The kernel opens a new block when a frame would not end strictly before the
        // block's end.
        let per_block = (self.block_size as usize).saturating_sub(BLOCK_HDR_LEN + 1) / stride;
        per_block as u64 * self.block_count as u64
    }

    /// How long one worker's ring holds `pps` frames per second of `frame_len` bytes:
    /// the longest time its capture thread may be away before the kernel drops.
    pub fn holds_ms(&self, pps: u64, frame_len: usize) -> f64 {
        self.frames_held(frame_len) as f64 * 1000.0 / pps.max(1) as f64
    }

    pub fn validate(&self) -> Result<(), String> {
        if !self.block_size.is_power_of_two() || self.block_size < 65536 {
            return Err("block_size: must be a power of two of at least 65536".into());
        }
        if self.block_count == 0 {
            return Err("block_count: must be at least 1".into());
        }
        if self.snaplen < 128 {
            return Err("snaplen: must be at least 128".into());
        }
        Ok(())
    }
}

// Linux uapi (linux/if_packet.h, linux/filter.h) values this module needs.
const SOL_PACKET: libc::c_int = 263;
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_VERSION: libc::c_int = 10;
const PACKET_FANOUT: libc::c_int = 18;
const TPACKET_V3: libc::c_int = 2;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;
const TP_STATUS_KERNEL: u32 = 0;
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;
const ETH_P_ALL: u16 = 0x0003;
const ARPHRD_ETHER: u16 = 1;
const ARPHRD_LOOPBACK: u16 = 772;
const ARPHRD_NONE: u16 = 0xfffe;
/// Size of `struct tpacket3_hdr` rounded to TPACKET_ALIGNMENT; `sockaddr_ll` follows.
const TPACKET3_HDR_ALIGNED: usize = 48;
/// `struct tpacket3_hdr` plus `struct sockaddr_ll`: the bytes before the frame that are
/// the kernel's. The frame's MAC header starts later (`tp_mac`), leaving slack we use to
/// put a VLAN tag the kernel took out back in front of the payload.
const TPACKET3_HDRLEN: usize = TPACKET3_HDR_ALIGNED + 20;
/// `struct tpacket_block_desc` rounded to 8 bytes: where a block's first frame starts.
const BLOCK_HDR_LEN: usize = 48;

/// Bytes a captured frame of `len` bytes takes in a block. The kernel puts the network
/// header at TPACKET_ALIGN(header + sockaddr_ll + 16), so the 14-byte Ethernet header
/// starts 14 bytes before that, and packs frames at 8-byte alignment (tpacket_rcv,
/// prb_fill_curr_block).
const fn frame_stride(len: usize) -> usize {
    const MAC_OFF: usize = ((TPACKET3_HDRLEN + 16 + 15) & !15) - 14;
    (MAC_OFF + len + 7) & !7
}

#[repr(C)]
struct TpacketReq3 {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
    tp_retire_blk_tov: u32,
    tp_sizeof_priv: u32,
    tp_feature_req_word: u32,
}

#[repr(C)]
#[derive(Default)]
struct TpacketStatsV3 {
    tp_packets: u32,
    tp_drops: u32,
    tp_freeze_q_cnt: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct SockFilter {
    code: u16,
    jt: u8,
    jf: u8,
    k: u32,
}

#[repr(C)]
struct SockFprog {
    len: u16,
    filter: *const SockFilter,
}

/// Which interfaces the kernel should hand to the ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IfaceFilter {
    /// None: the ring receives nothing (no interface selected yet).
    Nothing,
    /// Only these interface indexes.
    Only(Vec<u32>),
}

/// Most interfaces a classic BPF filter lists one by one (jump offsets are 8 bits). Past
/// that the kernel accepts every interface and the worker drops the rest by ifindex.
pub const MAX_FILTER_IFACES: usize = 250;

/// Build the classic BPF program for `filter`: load the ifindex, compare against each,
/// accept with `snaplen` bytes or drop.
fn bpf_program(filter: &IfaceFilter, snaplen: u32) -> Vec<SockFilter> {
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JEQ_K: u16 = 0x15;
    const BPF_RET_K: u16 = 0x06;
    let ins = |code, jt, jf, k| SockFilter { code, jt, jf, k };
    match filter {
        IfaceFilter::Nothing => vec![ins(BPF_RET_K, 0, 0, 0)],
        IfaceFilter::Only(ifs) if ifs.len() > MAX_FILTER_IFACES => {
            vec![ins(BPF_RET_K, 0, 0, snaplen)]
        }
        IfaceFilter::Only(ifs) => {
            let n = ifs.len();
            let mut p = Vec::with_capacity(n + 3);
            // A = skb->dev->ifindex (an ancillary load).
            p.push(ins(
                BPF_LD_W_ABS,
                0,
                0,
                (libc::SKF_AD_OFF + libc::SKF_AD_IFINDEX) as u32,
            ));
            for (j, &ifindex) in ifs.iter().enumerate() {
                // From compare j (0-based) the accept is n - j instructions further on.
                p.push(ins(BPF_JEQ_K, (n - j) as u8, 0, ifindex));
            }
            p.push(ins(BPF_RET_K, 0, 0, 0));
            p.push(ins(BPF_RET_K, 0, 0, snaplen));
            p
        }
    }
}

/// Replace the classic BPF filter of a packet socket (atomic in the kernel).
fn attach_filter(fd: RawFd, filter: &IfaceFilter, snaplen: u32) -> io::Result<()> {
    let prog = bpf_program(filter, snaplen);
    let fprog = SockFprog {
        len: prog.len() as u16,
        filter: prog.as_ptr(),
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &fprog)
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, v: &T) -> io::Result<()> {
    // SAFETY: setsockopt(2) with a pointer to a live value and its exact size.
    let r = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A handle that can change a running socket's interface filter from another thread.
#[derive(Clone, Copy, Debug)]
pub struct FilterHandle {
    fd: RawFd,
    snaplen: u32,
}

impl FilterHandle {
    /// Valid while the [`TpacketSource`] it came from is alive; the daemon drops its
    /// handles before it stops the workers.
    pub fn set(&self, filter: &IfaceFilter) -> io::Result<()> {
        attach_filter(self.fd, filter, self.snaplen)
    }
}

/// Per-interface counts a ring keeps (a handful of interfaces per node; a linear scan of
/// a short vector is cheaper than hashing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IfaceCount {
    pub ifindex: u32,
    pub frames: u64,
    pub bytes: u64,
}

/// One worker's TPACKET_V3 ring.
pub struct TpacketSource {
    fd: OwnedFd,
    ring: *mut u8,
    ring_len: usize,
    block_size: usize,
    block_count: usize,
    snaplen: u32,
    /// Block being read, and where in it.
    block: usize,
    pkt_left: u32,
    pkt_off: usize,
    stats: SourceStats,
    /// Frames that arrived with a link type podtap does not decode.
    unsupported: u64,
    per_iface: Vec<IfaceCount>,
    /// Ring-full events (the kernel froze the queue because no block was free).
    pub freeze_count: u64,
}

// SAFETY: the ring mapping is owned by this value and only touched through `&mut self`;
// moving it to the worker thread that uses it is sound.
unsafe impl Send for TpacketSource {}

impl TpacketSource {
    /// Open a ring bound to every interface of the current network namespace, receiving
    /// only `filter`'s interfaces, joined to fanout group `group` (all workers pass the
    /// same id) when `fanout` is set.
    pub fn open(
        cfg: &TpacketConfig,
        filter: &IfaceFilter,
        fanout: Option<u16>,
    ) -> Result<TpacketSource, CaptureError> {
        let err = |what: &str, e: io::Error| CaptureError::Live {
            what: format!("AF_PACKET {what}"),
            fix: fix_for(&e),
            source: e,
        };
        // SAFETY: socket(2); protocol 0 so nothing is received before the filter and ring
        // are in place and the socket is bound.
        let fd = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                0,
            )
        };
        if fd < 0 {
            return Err(err("socket", io::Error::last_os_error()));
        }
        // SAFETY: a descriptor we just created and now own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        setsockopt(raw, SOL_PACKET, PACKET_VERSION, &TPACKET_V3)
            .map_err(|e| err("TPACKET_V3", e))?;
        attach_filter(raw, filter, cfg.snaplen).map_err(|e| err("filter", e))?;
        let frame_size = 2048u32;
        let req = TpacketReq3 {
            tp_block_size: cfg.block_size,
            tp_block_nr: cfg.block_count,
            tp_frame_size: frame_size,
            tp_frame_nr: cfg.block_size / frame_size * cfg.block_count,
            tp_retire_blk_tov: cfg.retire_timeout_ms,
            tp_sizeof_priv: 0,
            tp_feature_req_word: 0,
        };
        setsockopt(raw, SOL_PACKET, PACKET_RX_RING, &req).map_err(|e| err("ring", e))?;
        let ring_len = cfg.block_size as usize * cfg.block_count as usize;
        // SAFETY: mapping the ring the kernel just allocated for this socket.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_LOCKED | libc::MAP_POPULATE,
                raw,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(err("ring mmap", io::Error::last_os_error()));
        }
        let src = TpacketSource {
            fd,
            ring: ring.cast(),
            ring_len,
            block_size: cfg.block_size as usize,
            block_count: cfg.block_count as usize,
            snaplen: cfg.snaplen,
            block: 0,
            pkt_left: 0,
            pkt_off: 0,
            stats: SourceStats::default(),
            unsupported: 0,
            per_iface: Vec::with_capacity(64),
            freeze_count: 0,
        };
        // SAFETY: a zeroed sockaddr_ll with family, protocol and "any interface".
        let r = unsafe {
            let mut sa: libc::sockaddr_ll = std::mem::zeroed();
            sa.sll_family = libc::AF_PACKET as u16;
            sa.sll_protocol = ETH_P_ALL.to_be();
            sa.sll_ifindex = 0;
            libc::bind(
                raw,
                (&sa as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if r < 0 {
            return Err(err("bind", io::Error::last_os_error()));
        }
        if let Some(group) = fanout {
            let arg: u32 = group as u32 | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
            setsockopt(raw, SOL_PACKET, PACKET_FANOUT, &arg).map_err(|e| err("fanout", e))?;
        }
        Ok(src)
    }

    /// A handle to change this ring's interface filter while it runs.
    pub fn filter_handle(&self) -> FilterHandle {
        FilterHandle {
            fd: self.fd.as_raw_fd(),
            snaplen: self.snaplen,
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    /// Frames and bytes per interface since the start.
    pub fn per_iface(&self) -> &[IfaceCount] {
        &self.per_iface
    }

    /// Wait up to `timeout_ms` for a block to be ready.
    pub fn wait(&self, timeout_ms: i32) -> io::Result<()> {
        if self.pkt_left > 0 || self.block_ready(self.block) {
            return Ok(());
        }
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN | libc::POLLERR,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Read the kernel's counters (they reset on read) into `stats`.
    pub fn refresh_kernel_stats(&mut self) {
        let mut st = TpacketStatsV3::default();
        let mut len = std::mem::size_of::<TpacketStatsV3>() as libc::socklen_t;
        // SAFETY: getsockopt(2) into a value of the size we pass.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStatsV3).cast(),
                &mut len,
            )
        };
        if r == 0 {
            self.stats.dropped += st.tp_drops as u64;
            self.freeze_count += st.tp_freeze_q_cnt as u64;
        }
    }

    fn block_ptr(&self, i: usize) -> *mut u8 {
        // SAFETY: i < block_count, so the offset is inside the mapping.
        unsafe { self.ring.add(i * self.block_size) }
    }

    fn block_status(&self, i: usize) -> *mut u32 {
        // block_desc { u32 version; u32 offset_to_priv; tpacket_hdr_v1 { u32 block_status…
        // SAFETY: offset 8 of a block header inside the mapping.
        unsafe { self.block_ptr(i).add(8).cast::<u32>() }
    }

    fn block_ready(&self, i: usize) -> bool {
        // SAFETY: the status word is shared with the kernel: read it volatile.
        let st = unsafe { std::ptr::read_volatile(self.block_status(i)) };
        st & TP_STATUS_USER != 0
    }

    /// Hand the current block back to the kernel and move to the next one.
    fn release_block(&mut self) {
        fence(Ordering::Release);
        // SAFETY: the status word of a block we own; the kernel takes it back on this write.
        unsafe { std::ptr::write_volatile(self.block_status(self.block), TP_STATUS_KERNEL) };
        self.block = (self.block + 1) % self.block_count;
        self.pkt_left = 0;
    }

    fn count_iface(&mut self, ifindex: u32, len: u32) {
        if let Some(c) = self.per_iface.iter_mut().find(|c| c.ifindex == ifindex) {
            c.frames += 1;
            c.bytes += len as u64;
        } else if self.per_iface.len() < self.per_iface.capacity() {
            self.per_iface.push(IfaceCount {
                ifindex,
                frames: 1,
                bytes: len as u64,
            });
        }
    }
}

fn rd_u16(p: *const u8, off: usize) -> u16 {
    // SAFETY: callers pass offsets inside a frame header in the mapping.
    unsafe { std::ptr::read_unaligned(p.add(off).cast::<u16>()) }
}
fn rd_u32(p: *const u8, off: usize) -> u32 {
    // SAFETY: as above.
    unsafe { std::ptr::read_unaligned(p.add(off).cast::<u32>()) }
}

impl Source for TpacketSource {
    fn next_batch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        mut visit: F,
    ) -> Result<Option<usize>, CaptureError> {
        let mut n = 0;
        while n < max {
            if self.pkt_left == 0 {
                if !self.block_ready(self.block) {
                    break;
                }
                fence(Ordering::Acquire);
                let b = self.block_ptr(self.block);
                let num = rd_u32(b, 12);
                if num == 0 {
                    self.release_block();
                    continue;
                }
                self.pkt_left = num;
                self.pkt_off = rd_u32(b, 16) as usize;
            }
            let b = self.block_ptr(self.block);
            if self.pkt_off + TPACKET3_HDRLEN > self.block_size {
                // A corrupt offset: give the block back rather than read outside it.
                self.stats.malformed += self.pkt_left as u64;
                self.release_block();
                continue;
            }
            // SAFETY: pkt_off + header length is inside the block (checked above).
            let h = unsafe { b.add(self.pkt_off) };
            let next = rd_u32(h, 0) as usize;
            let sec = rd_u32(h, 4);
            let nsec = rd_u32(h, 8);
            let snaplen = rd_u32(h, 12);
            let wire_len = rd_u32(h, 16);
            let status = rd_u32(h, 20);
            let mac = rd_u16(h, 24) as usize;
            let ifindex = rd_u32(h, TPACKET3_HDR_ALIGNED + 4);
            let hatype = rd_u16(h, TPACKET3_HDR_ALIGNED + 8);
            self.pkt_left -= 1;
            let in_block = self.pkt_off + mac + snaplen as usize <= self.block_size;
            if in_block {
                let link = match hatype {
                    ARPHRD_ETHER | ARPHRD_LOOPBACK => Some(LinkType::Ethernet),
                    ARPHRD_NONE => Some(LinkType::RawIp),
                    _ => None,
                };
                match link {
                    Some(link) => {
                        let (start, len) = if status & TP_STATUS_VLAN_VALID != 0
                            && link == LinkType::Ethernet
                            && mac >= TPACKET3_HDRLEN + 4
                            && snaplen >= 12
                        {
                            // The kernel moved the VLAN tag out of the frame; put it back
                            // in the slack before the frame so the worker sees the wire.
                            let tci = rd_u32(h, 32) as u16;
                            let tpid = if status & TP_STATUS_VLAN_TPID_VALID != 0 {
                                rd_u16(h, 36)
                            } else {
                                0x8100
                            };
                            // SAFETY: mac - 4 >= header length, all inside the block; the
                            // 12 MAC bytes move 4 bytes towards the header.
                            unsafe {
                                std::ptr::copy(h.add(mac), h.add(mac - 4), 12);
                                let tag = h.add(mac + 8);
                                tag.cast::<[u8; 2]>().write_unaligned(tpid.to_be_bytes());
                                tag.add(2)
                                    .cast::<[u8; 2]>()
                                    .write_unaligned(tci.to_be_bytes());
                            }
                            (mac - 4, snaplen as usize + 4)
                        } else {
                            (mac, snaplen as usize)
                        };
                        // SAFETY: start..start+len lies inside this block (checked above,
                        // plus the 4 slack bytes before `mac`).
                        let data = unsafe { std::slice::from_raw_parts(h.add(start), len) };
                        let extra = (len - snaplen as usize) as u32;
                        self.stats.received += 1;
                        self.count_iface(ifindex, wire_len);
                        visit(&Frame {
                            data,
                            ts: Timestamp::from_secs_nanos(sec as u64, nsec),
                            wire_len: wire_len + extra,
                            link,
                            obs: ifindex,
                        });
                    }
                    None => {
                        self.unsupported += 1;
                        self.stats.malformed += 1;
                    }
                }
            } else {
                self.stats.malformed += 1;
            }
            n += 1;
            if self.pkt_left == 0 || next == 0 {
                self.release_block();
            } else {
                self.pkt_off += next;
            }
        }
        Ok(Some(n))
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

impl LiveSource for TpacketSource {
    fn wait(&mut self, timeout_ms: i32) -> io::Result<()> {
        TpacketSource::wait(self, timeout_ms)
    }
    fn refresh_kernel_stats(&mut self) {
        TpacketSource::refresh_kernel_stats(self)
    }
    fn ring_full(&self) -> u64 {
        self.freeze_count
    }
}

impl Drop for TpacketSource {
    fn drop(&mut self) {
        // SAFETY: unmapping the mapping we created, once.
        unsafe { libc::munmap(self.ring.cast(), self.ring_len) };
    }
}

/// What to tell the operator for a failed capture call.
fn fix_for(e: &io::Error) -> &'static str {
    match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            "run as root or grant CAP_NET_RAW and CAP_IPC_LOCK (systemd: AmbientCapabilities)"
        }
        Some(libc::ENOMEM) => {
            "lower capture.tpacket.block_count/block_size or raise RLIMIT_MEMLOCK (LimitMEMLOCK=infinity)"
        }
        Some(libc::EINVAL) => {
            "check capture.tpacket sizes (block_size a power of two, a multiple of the page size)"
        }
        Some(libc::EAFNOSUPPORT) => "the kernel lacks AF_PACKET (CONFIG_PACKET)",
        _ => "see `podtap check`",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_program_jumps_land_on_accept() {
        let p = bpf_program(&IfaceFilter::Only(vec![3, 7, 9]), 1000);
        assert_eq!(p.len(), 6);
        // Each compare's true branch lands on the final `ret snaplen`.
        for j in 0..3 {
            let at = 1 + j;
            assert_eq!(at + 1 + p[at].jt as usize, 5, "compare {j}");
        }
        assert_eq!(p[4].k, 0);
        assert_eq!(p[5].k, 1000);
        assert_eq!(bpf_program(&IfaceFilter::Nothing, 1000)[0].k, 0);
        let many: Vec<u32> = (1..=(MAX_FILTER_IFACES as u32 + 1)).collect();
        assert_eq!(bpf_program(&IfaceFilter::Only(many), 9).len(), 1);
    }

    #[test]
    fn config_validation_names_the_key() {
        let c = TpacketConfig {
            block_size: 100_000,
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("block_size"));
        assert!(TpacketConfig::default().validate().is_ok());
    }

    #[test]
    fn default_ring_holds_30_ms_of_small_frames_at_1_5_mpps() {
        let c = TpacketConfig::default();
        // 64-byte frames take 144 bytes: 7281 per 1 MiB block, 32 blocks.
        assert_eq!(frame_stride(60), 144);
        assert_eq!(c.frames_held(60), 7281 * 32);
        assert!(
            c.holds_ms(1_500_000, 60) >= 30.0,
            "{}",
            c.holds_ms(1_500_000, 60)
        );
        // Frames longer than the snap length take only the snap length.
        let short = TpacketConfig {
            snaplen: 128,
            ..c.clone()
        };
        assert_eq!(short.frames_held(9000), short.frames_held(128));
    }

    /// Loopback's ifindex and a small ring of `blocks` 64 KiB blocks; None (test skipped)
    /// without root.
    fn loopback_ring(blocks: u32) -> Option<(u32, TpacketConfig)> {
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: needs root");
            return None;
        }
        let lo = crate::capture::iface::list()
            .into_iter()
            .find(|i| i.name == "lo")
            .expect("lo")
            .ifindex;
        let cfg = TpacketConfig {
            block_size: 1 << 16,
            block_count: blocks,
            retire_timeout_ms: 1,
            snaplen: 65535,
        };
        Some((lo, cfg))
    }

    /// The ring geometry `frames_held` assumes is the kernel's: frames of a known length
    /// sent over loopback sit `frame_stride` apart in a real block, the first one right
    /// after the block header.
    #[test]
    fn frame_stride_matches_the_kernels_layout() {
        let Some((lo, mut cfg)) = loopback_ring(2) else {
            return;
        };
        // A block retires when its timer runs out; with the 1 ms of the other tests a busy
        // machine can retire it after the first datagram, leaving no stride to measure.
        cfg.retire_timeout_ms = 500;
        let src = TpacketSource::open(&cfg, &IfaceFilter::Only(vec![lo]), None).unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        for len in [1usize, 18, 100, 333] {
            tx.send_to(&vec![0x5a; len], rx.local_addr().unwrap())
                .unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while !src.block_ready(0) && std::time::Instant::now() < deadline {
            src.wait(20).unwrap();
        }
        assert!(src.block_ready(0), "no block retired");
        fence(Ordering::Acquire);
        let b = src.block_ptr(0);
        let (num, first) = (rd_u32(b, 12), rd_u32(b, 16) as usize);
        assert_eq!(first, BLOCK_HDR_LEN);
        assert!(num >= 2, "{num} frames");
        let mut off = first;
        let mut checked = 0;
        for _ in 0..num - 1 {
            // SAFETY: offsets the kernel wrote, inside the 64 KiB block.
            let h = unsafe { b.add(off) };
            let (next, snaplen) = (rd_u32(h, 0) as usize, rd_u32(h, 12) as usize);
            if rd_u16(h, TPACKET3_HDR_ALIGNED + 8) == ARPHRD_LOOPBACK {
                assert_eq!(next, frame_stride(snaplen), "frame of {snaplen} bytes");
                checked += 1;
            }
            off += next;
        }
        assert!(checked >= 1);
    }

    /// A real ring on loopback: frames sent to a UDP socket on 127.0.0.1 arrive with the
    /// loopback ifindex; a filter naming another interface keeps them out.
    #[test]
    fn loopback_frames_arrive_and_filter_switches() {
        let Some((lo, cfg)) = loopback_ring(4) else {
            return;
        };
        let mut src = TpacketSource::open(&cfg, &IfaceFilter::Nothing, None).unwrap();
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = rx.local_addr().unwrap().port();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let marker = b"podtap-tpacket-test-marker";
        let count_marked = |src: &mut TpacketSource| {
            let mut seen = 0;
            let deadline = std::time::Instant::now() + std::time::Duration::from_millis(300);
            while std::time::Instant::now() < deadline {
                src.wait(20).unwrap();
                src.next_batch(64, |f| {
                    if f.data.windows(marker.len()).any(|w| w == marker) {
                        assert_eq!(f.obs, lo);
                        assert_eq!(f.link, LinkType::Ethernet);
                        seen += 1;
                    }
                })
                .unwrap();
            }
            seen
        };
        for _ in 0..5 {
            tx.send_to(marker, ("127.0.0.1", port)).unwrap();
        }
        assert_eq!(count_marked(&mut src), 0, "filter Nothing lets nothing in");
        src.filter_handle()
            .set(&IfaceFilter::Only(vec![lo]))
            .unwrap();
        for _ in 0..5 {
            tx.send_to(marker, ("127.0.0.1", port)).unwrap();
        }
        // Loopback frames are seen once outgoing and once incoming.
        assert_eq!(count_marked(&mut src), 10);
        assert!(
            src.per_iface()
                .iter()
                .any(|c| c.ifindex == lo && c.frames >= 10)
        );
        src.refresh_kernel_stats();
        assert_eq!(src.stats().dropped, 0);
    }
}
