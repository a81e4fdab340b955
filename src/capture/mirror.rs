//! Mirroring pod veths to a capture device for AF_XDP.
//!
//! An AF_XDP socket takes the frames it receives away from the kernel stack, so podtap
//! binds it only where it sees copies. [`Mirror`] creates a veth pair (`ptap0` →
//! `ptap0c` by default, one queue per worker) and hangs a cls_bpf program
//! (`bpf/mirror.bpf.c`, direct action) on the clsact ingress and egress hooks of every
//! selected pod veth. For each packet the program
//!
//! 1. pushes an 802.1ad tag as skb metadata whose TCI names the veth (a slot 1..32767
//!    this module assigned, in VID and PCP) and the direction (DEI bit),
//! 2. `bpf_clone_redirect`s the skb to the capture device's egress, choosing its queue
//!    from a symmetric flow hash so both directions of a flow reach the same worker,
//! 3. pops the tag again and returns `TC_ACT_OK`: the pod's packet goes on unchanged.
//!
//! Inside that clone-redirect, `podtap_mirror_ts` on the capture device's own egress
//! stamps the copy (and only the copy) with the time: a 16-byte header in front of its
//! Ethernet frame, which the AF_XDP source strips (see [`super::xdp`]). It writes the tag
//! into the copy itself, behind the MAC addresses, as the kernel would have.
//!
//! The capture device has `tx-vlan-stag-hw-insert` off, so where the stamp program has
//! not written the tag (stamps off) the kernel writes it into the clone's own header on
//! transmit; the pod's packet bytes are never written.
//! TSO/GSO are off on it too, so super-segments are split into wire-sized frames before
//! they reach the AF_XDP frames. On the receive side [`untag`] turns the tag back into
//! the veth's ifindex ([`TagTable`]) and direction and removes it.
//!
//! Why a BPF program and not `u32` match-all + `mirred egress mirror`: mirred copies
//! carry nothing that names the veth they came from, so copies would be attributed by
//! MAC address, which is ambiguous for pods behind one bridge and wrong after MAC
//! reuse; and mirred gives no say over the copy's queue, so the two directions of a flow
//! could land on different workers. Measured per-packet cost of both on this host is in
//! `docs/ARCHITECTURE.md`.
//!
//! Set-up and removal are idempotent. A previous run that crashed leaves its filters,
//! its capture device and (when it had created them) clsact qdiscs behind;
//! [`Mirror::new`] removes them first. Only filters whose program is podtap's are
//! touched, and a clsact qdisc is removed only when podtap created it and no filter of
//! anyone else is left on it.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use libxdp_sys as sys;
use serde::Deserialize;

use super::bpfobj::{self, BpfObject};
use super::iface;

/// Where a mirrored copy was seen on the pod's veth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Host-side ingress: the pod sent it.
    FromPod,
    /// Host-side egress: the pod receives it.
    ToPod,
}

/// Highest slot a tag can name (15 bits: VID and PCP).
pub const MAX_SLOT: u16 = 0x7fff;
const ETH_P_8021AD: u16 = 0x88a8;
const DEI: u16 = 0x1000;

/// The tag control information for `slot` (1..=MAX_SLOT) and `dir`, as the BPF program
/// writes it: slot bits 0-11 in the VID, bits 12-14 in the PCP, direction in DEI.
pub fn encode_tci(slot: u16, dir: Direction) -> u16 {
    (slot & 0x0fff) | ((slot & 0x7000) << 1) | if dir == Direction::ToPod { DEI } else { 0 }
}

pub fn decode_tci(tci: u16) -> (u16, Direction) {
    let slot = (tci & 0x0fff) | ((tci >> 1) & 0x7000);
    let dir = if tci & DEI != 0 {
        Direction::ToPod
    } else {
        Direction::FromPod
    };
    (slot, dir)
}

/// Remove the mirror tag from an Ethernet frame in place: the 12 MAC address bytes move
/// forward over the tag. Returns the TCI and where the untagged frame now starts, or
/// `None` when the frame carries no 802.1ad tag (it was not mirrored by podtap).
pub fn untag(frame: &mut [u8]) -> Option<(u16, usize)> {
    if frame.len() < 18 || u16::from_be_bytes([frame[12], frame[13]]) != ETH_P_8021AD {
        return None;
    }
    let tci = u16::from_be_bytes([frame[14], frame[15]]);
    frame.copy_within(0..12, 4);
    Some((tci, 4))
}

/// Slot → pod veth ifindex, shared by the mirror (writer) and the capture workers
/// (readers, lock-free).
pub struct TagTable {
    slots: Box<[AtomicU32]>,
}

impl TagTable {
    pub fn new() -> TagTable {
        TagTable {
            slots: (0..=MAX_SLOT as usize).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// The veth a slot names now, `None` when no veth has it.
    #[inline]
    pub fn ifindex(&self, slot: u16) -> Option<u32> {
        match self.slots.get(slot as usize)?.load(Ordering::Relaxed) {
            0 => None,
            i => Some(i),
        }
    }

    fn set(&self, slot: u16, ifindex: u32) {
        self.slots[slot as usize].store(ifindex, Ordering::Relaxed);
    }
}

impl Default for TagTable {
    fn default() -> Self {
        TagTable::new()
    }
}

/// `[capture.mirror]`: the capture device the pod veths are mirrored to.
#[derive(Clone, Debug, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MirrorConfig {
    /// Name of the capture veth the copies are sent to. Default `ptap0`.
    pub device: String,
    /// Name of its peer, where the AF_XDP sockets bind. Default `ptap0c`.
    pub peer: String,
    /// tc filter priority of the mirror on the pod veths; lower runs first. It must run
    /// before any filter that redirects or drops (a CNI's), or those packets are not
    /// seen. Default 1.
    pub tc_priority: u16,
    /// tc filter handle of the mirror, how podtap finds its filters again. Default
    /// 0x7074.
    pub tc_handle: u32,
    /// Directory for the state that lets the next run clean up after a crash. Default
    /// `/run/podtap`.
    pub state_dir: PathBuf,
}

impl Default for MirrorConfig {
    fn default() -> Self {
        MirrorConfig {
            device: "ptap0".into(),
            peer: "ptap0c".into(),
            tc_priority: 1,
            tc_handle: 0x7074,
            state_dir: PathBuf::from("/run/podtap"),
        }
    }
}

impl MirrorConfig {
    pub fn validate(&self) -> Result<(), String> {
        for (k, v) in [("device", &self.device), ("peer", &self.peer)] {
            if v.is_empty() || v.len() > 15 || v.contains(['/', ' ']) {
                return Err(format!(
                    "{k}: {v:?} is not a valid interface name (1-15 characters)"
                ));
            }
        }
        if self.device == self.peer {
            return Err("peer: must differ from device".into());
        }
        if self.tc_priority == 0 || self.tc_handle == 0 {
            return Err("tc_priority, tc_handle: must be non-zero".into());
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("`{cmd}` failed: {stderr} (is iproute2/ethtool installed and are we root?)")]
    Command { cmd: String, stderr: String },
    #[error("loading the mirror BPF program: {0} (run as root with CAP_BPF and CAP_NET_ADMIN)")]
    Load(io::Error),
    #[error("{what} on ifindex {ifindex}: {source}")]
    Tc {
        what: &'static str,
        ifindex: u32,
        source: io::Error,
    },
    #[error("all {0} mirror slots are in use: detach veths that are gone")]
    NoSlots(u16),
    #[error("invalid [capture.mirror] config: {0}")]
    Config(String),
}

/// What the mirror programs counted since the mirror was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MirrorStats {
    /// Copies sent to the capture device.
    pub copies: u64,
    /// Copies the kernel refused (clone or redirect failed).
    pub failed: u64,
    /// Packets whose tag could not be pushed (not mirrored).
    pub tag_failed: u64,
    /// Copies the capture device dropped (the AF_XDP side could not take them).
    pub device_dropped: u64,
}

struct Attached {
    slot: u16,
    created_qdisc: bool,
}

/// The mirror: the capture device and the filters on the pod veths. Dropping it removes
/// everything it added.
pub struct Mirror {
    cfg: MirrorConfig,
    obj: BpfObject,
    queues: u32,
    device_ifindex: u32,
    /// Copies carry their arrival stamp (`podtap_mirror_ts`).
    stamp: bool,
    attached: HashMap<u32, Attached>,
    tags: Arc<TagTable>,
    next_slot: u16,
    /// Freed slots wait here before reuse, so frames of a detached veth still in flight
    /// are not attributed to the next one.
    freed: VecDeque<u16>,
}

const PROG_IN: &str = "podtap_mirror_in";
const PROG_EG: &str = "podtap_mirror_eg";
/// On the capture device's egress: stamps each copy with its arrival time (a trailer).
const PROG_TS: &str = "podtap_mirror_ts";
/// MTU of the capture pair: 1500 plus the 16-byte arrival stamp.
const CAPTURE_MTU: u32 = 1500 + 16;
/// Slots kept unused after a detach before they are handed out again.
const SLOT_QUARANTINE: usize = 1024;

fn run(cmd: &mut Command) -> Result<String, MirrorError> {
    let out = cmd.output().map_err(|e| MirrorError::Command {
        cmd: format!("{cmd:?}"),
        stderr: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(MirrorError::Command {
            cmd: format!("{cmd:?}"),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ifindex_of(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: if_nametoindex reads a NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

fn hook(ifindex: u32, point: sys::bpf_tc_attach_point) -> sys::bpf_tc_hook {
    // SAFETY: a zeroed C struct is its documented initial state.
    let mut h: sys::bpf_tc_hook = unsafe { std::mem::zeroed() };
    // sz ends at the last field: libbpf rejects non-zero bytes past the fields it knows,
    // and trailing padding is not guaranteed to stay zero.
    h.sz = std::mem::offset_of!(sys::bpf_tc_hook, parent) + 4;
    h.ifindex = ifindex as i32;
    h.attach_point = point;
    h
}

fn tc_opts(handle: u32, priority: u16, prog_fd: i32) -> sys::bpf_tc_opts {
    // SAFETY: as above.
    let mut o: sys::bpf_tc_opts = unsafe { std::mem::zeroed() };
    o.sz = std::mem::offset_of!(sys::bpf_tc_opts, priority) + 4;
    o.handle = handle;
    o.priority = priority as u32;
    o.prog_fd = prog_fd;
    o
}

const POINTS: [(sys::bpf_tc_attach_point, &str); 2] = [
    (sys::bpf_tc_attach_point_BPF_TC_INGRESS, "ingress"),
    (sys::bpf_tc_attach_point_BPF_TC_EGRESS, "egress"),
];

/// Remove podtap's mirror filter at one hook if it is there. Returns whether one was.
fn remove_our_filter(ifindex: u32, point: sys::bpf_tc_attach_point, cfg: &MirrorConfig) -> bool {
    let h = hook(ifindex, point);
    let mut q = tc_opts(cfg.tc_handle, cfg.tc_priority, 0);
    // SAFETY: hook and opts are initialised C structs that outlive the calls.
    unsafe {
        if sys::bpf_tc_query(&h, &mut q) != 0 {
            return false;
        }
        let ours = bpfobj::prog_name(q.prog_id).is_some_and(|n| n.starts_with("podtap_mirror"));
        if !ours {
            return false;
        }
        let d = tc_opts(cfg.tc_handle, cfg.tc_priority, 0);
        sys::bpf_tc_detach(&h, &d) == 0
    }
}

/// Whether the clsact hooks of `name` carry no filter at all (anyone's).
fn clsact_empty(name: &str) -> bool {
    ["ingress", "egress"].iter().all(|dir| {
        Command::new("tc")
            .args(["filter", "show", "dev", name, *dir])
            .output()
            .is_ok_and(|o| o.status.success() && o.stdout.iter().all(|b| b.is_ascii_whitespace()))
    })
}

fn destroy_clsact(ifindex: u32) {
    let mut h = hook(
        ifindex,
        sys::bpf_tc_attach_point_BPF_TC_INGRESS | sys::bpf_tc_attach_point_BPF_TC_EGRESS,
    );
    // SAFETY: an initialised hook struct.
    unsafe { sys::bpf_tc_hook_destroy(&mut h) };
}

fn ifname_of(ifindex: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: the buffer holds IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    // SAFETY: if_indextoname wrote a NUL-terminated name.
    Some(
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_string_lossy()
            .into_owned(),
    )
}

impl Mirror {
    /// Remove what a previous run left behind, create the capture device with `queues`
    /// queues (one per worker) and load the mirror program. Nothing is mirrored until
    /// [`Mirror::attach`].
    pub fn new(cfg: &MirrorConfig, queues: u32) -> Result<Mirror, MirrorError> {
        cfg.validate().map_err(MirrorError::Config)?;
        let queues = queues.clamp(1, 256);
        cleanup_stale(cfg);
        let nq = queues.to_string();
        run(Command::new("ip").args([
            "link",
            "add",
            &cfg.device,
            "numtxqueues",
            &nq,
            "numrxqueues",
            &nq,
            "type",
            "veth",
            "peer",
            "name",
            &cfg.peer,
            "numtxqueues",
            &nq,
            "numrxqueues",
            &nq,
        ]))?;
        // From here on, failures must not leave the device behind.
        let device_ifindex = ifindex_of(&cfg.device).unwrap_or(0);
        let mut m = Mirror {
            cfg: cfg.clone(),
            obj: BpfObject::load(
                "podtap_mirror",
                bpfobj::MIRROR_OBJ,
                &[PROG_IN, PROG_EG, PROG_TS],
            )
            .map_err(|e| {
                let _ = Command::new("ip")
                    .args(["link", "del", &cfg.device])
                    .status();
                MirrorError::Load(e)
            })?,
            queues,
            device_ifindex,
            stamp: true,
            attached: HashMap::new(),
            tags: Arc::new(TagTable::new()),
            next_slot: 1,
            freed: VecDeque::new(),
        };
        m.setup_device()?;
        Ok(m)
    }

    fn setup_device(&mut self) -> Result<(), MirrorError> {
        let (dev, peer) = (self.cfg.device.clone(), self.cfg.peer.clone());
        // No IPv6 (router solicitations, MLD) on the pair: nothing but copies flows.
        for d in [&dev, &peer] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{d}/disable_ipv6"), "1");
        }
        // The tag is written into the copy by the kernel on transmit (no hardware tag
        // insertion), and GSO super-segments are split before they reach the peer.
        run(Command::new("ethtool").args([
            "-K",
            &dev,
            "tx-vlan-stag-hw-insert",
            "off",
            "txvlan",
            "off",
            "tso",
            "off",
            "gso",
            "off",
        ]))?;
        let _ = Command::new("ethtool")
            .args([
                "-K",
                &peer,
                "gro",
                "off",
                "rxvlan",
                "off",
                "rx-vlan-stag-hw-parse",
                "off",
            ])
            .output();
        // Room for the arrival stamp the copies carry (16 bytes in front of the frame,
        // see bpf/mirror.bpf.c) on top of a 1500-byte frame and its tag: the peer drops
        // what exceeds its MTU.
        for d in [&dev, &peer] {
            run(Command::new("ip").args(["link", "set", d, "mtu", &CAPTURE_MTU.to_string()]))?;
        }
        run(Command::new("ip").args(["link", "set", &peer, "up"]))?;
        run(Command::new("ip").args(["link", "set", &dev, "up"]))?;
        self.write_cfg()?;
        // The arrival stamp, on the device's own clsact egress (it goes with the device).
        let mut h = hook(self.device_ifindex, sys::bpf_tc_attach_point_BPF_TC_EGRESS);
        let mut o = tc_opts(
            self.cfg.tc_handle,
            self.cfg.tc_priority,
            self.obj.prog_fd(PROG_TS).unwrap_or(-1),
        );
        // SAFETY: initialised C structs that outlive the calls.
        let r = unsafe {
            match sys::bpf_tc_hook_create(&mut h) {
                0 => sys::bpf_tc_attach(&h, &mut o),
                c => c,
            }
        };
        if r != 0 {
            return Err(MirrorError::Tc {
                what: "attach the stamp on the capture device's egress",
                ifindex: self.device_ifindex,
                source: io::Error::from_raw_os_error(-r),
            });
        }
        Ok(())
    }

    /// What the mirror programs read: the capture device, its queue count, and whether
    /// copies are stamped.
    fn write_cfg(&self) -> Result<(), MirrorError> {
        let cfg_fd = self.obj.map_fd("podtap_mcfg").ok_or_else(|| {
            MirrorError::Load(io::Error::other("map podtap_mcfg missing from the object"))
        })?;
        let value: [u32; 3] = [self.device_ifindex, self.queues, self.stamp as u32];
        bpfobj::map_update(cfg_fd, &0u32, &value).map_err(MirrorError::Load)
    }

    /// Stamp each copy with the time the pod veth passed it (the default), or not
    /// (`capture.xdp.frame_timestamps = false`: the AF_XDP side then times frames by
    /// receive batch).
    pub fn set_stamping(&mut self, on: bool) -> Result<(), MirrorError> {
        self.stamp = on;
        self.write_cfg()
    }

    /// Name of the interface the AF_XDP sockets bind (queues `0..queues()`).
    /// Is the capture device still the one this mirror created? (Someone may delete it.)
    pub fn device_present(&self) -> bool {
        ifindex_of(&self.cfg.device) == Some(self.device_ifindex)
    }

    pub fn capture_device(&self) -> &str {
        &self.cfg.peer
    }

    pub fn queues(&self) -> u32 {
        self.queues
    }

    /// The slot table the capture side resolves tags with.
    pub fn tags(&self) -> Arc<TagTable> {
        self.tags.clone()
    }

    /// Interfaces mirrored now.
    pub fn attached(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.attached.keys().copied().collect();
        v.sort();
        v
    }

    fn alloc_slot(&mut self) -> Result<u16, MirrorError> {
        if self.next_slot <= MAX_SLOT {
            self.next_slot += 1;
            return Ok(self.next_slot - 1);
        }
        if (self.freed.len() > SLOT_QUARANTINE.min(MAX_SLOT as usize / 2)
            || self.attached.len() >= MAX_SLOT as usize - self.freed.len())
            && let Some(s) = self.freed.pop_front()
        {
            return Ok(s);
        }
        Err(MirrorError::NoSlots(MAX_SLOT))
    }

    /// Mirror both directions of interface `ifindex`. Attaching an interface that is
    /// already mirrored does nothing.
    pub fn attach(&mut self, ifindex: u32) -> Result<(), MirrorError> {
        if self.attached.contains_key(&ifindex) {
            return Ok(());
        }
        if ifindex == self.device_ifindex || ifindex_of(&self.cfg.peer) == Some(ifindex) {
            return Err(MirrorError::Config(
                "the capture device cannot mirror itself".into(),
            ));
        }
        let slot = self.alloc_slot()?;
        let slots_fd = self.obj.map_fd("podtap_mslots").expect("map in object");
        if let Err(source) = bpfobj::map_update(slots_fd, &ifindex, &slot) {
            self.freed.push_back(slot);
            return Err(MirrorError::Tc {
                what: "slot map update",
                ifindex,
                source,
            });
        }
        self.tags.set(slot, ifindex);
        let mut created_qdisc = false;
        for (point, what) in POINTS {
            let mut h = hook(ifindex, point);
            let prog = if point == sys::bpf_tc_attach_point_BPF_TC_INGRESS {
                PROG_IN
            } else {
                PROG_EG
            };
            let mut o = tc_opts(
                self.cfg.tc_handle,
                self.cfg.tc_priority,
                self.obj.prog_fd(prog).unwrap_or(-1),
            );
            o.flags = sys::bpf_tc_flags_BPF_TC_F_REPLACE;
            // SAFETY: initialised C structs that outlive the calls.
            let r = unsafe {
                let c = bpfobj::quietly(|| sys::bpf_tc_hook_create(&mut h));
                if c == 0 {
                    created_qdisc = true;
                }
                if c != 0 && c != -libc::EEXIST {
                    c
                } else {
                    sys::bpf_tc_attach(&h, &mut o)
                }
            };
            if r != 0 {
                let source = io::Error::from_raw_os_error(-r);
                self.attached.insert(
                    ifindex,
                    Attached {
                        slot,
                        created_qdisc,
                    },
                );
                let _ = self.detach(ifindex);
                return Err(MirrorError::Tc {
                    what: if what == "ingress" {
                        "attach tc ingress"
                    } else {
                        "attach tc egress"
                    },
                    ifindex,
                    source,
                });
            }
        }
        self.attached.insert(
            ifindex,
            Attached {
                slot,
                created_qdisc,
            },
        );
        self.save_state();
        Ok(())
    }

    /// Stop mirroring `ifindex` (also fine when the interface is already gone or was
    /// never attached).
    pub fn detach(&mut self, ifindex: u32) -> Result<(), MirrorError> {
        let Some(a) = self.attached.remove(&ifindex) else {
            return Ok(());
        };
        for (point, _) in POINTS {
            bpfobj::quietly(|| remove_our_filter(ifindex, point, &self.cfg));
        }
        if a.created_qdisc
            && let Some(name) = ifname_of(ifindex)
            && clsact_empty(&name)
        {
            destroy_clsact(ifindex);
        }
        if let Some(fd) = self.obj.map_fd("podtap_mslots") {
            let _ = bpfobj::map_delete(fd, &ifindex);
        }
        // The slot keeps naming the interface until it is reused (after the quarantine):
        // copies tagged with it may still wait in the AF_XDP rings, and must still be
        // attributed to the interface they came from.
        self.freed.push_back(a.slot);
        self.save_state();
        Ok(())
    }

    pub fn stats(&self) -> MirrorStats {
        let fd = self.obj.map_fd("podtap_mstats");
        let get = |i| {
            fd.and_then(|fd| bpfobj::percpu_sum(fd, i).ok())
                .unwrap_or(0)
        };
        let device_dropped = std::fs::read_to_string(format!(
            "/sys/class/net/{}/statistics/tx_dropped",
            self.cfg.device
        ))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
        MirrorStats {
            copies: get(0),
            failed: get(1),
            tag_failed: get(2),
            device_dropped,
        }
    }

    fn state_file(cfg: &MirrorConfig) -> PathBuf {
        cfg.state_dir.join(format!("mirror-{}.qdiscs", cfg.device))
    }

    /// Record the interfaces whose clsact qdisc podtap created, so the next run can
    /// remove them after a crash.
    fn save_state(&self) {
        let lines: String = self
            .attached
            .iter()
            .filter(|(_, a)| a.created_qdisc)
            .map(|(i, _)| format!("{i}\n"))
            .collect();
        let _ = std::fs::create_dir_all(&self.cfg.state_dir);
        if let Err(e) = std::fs::write(Self::state_file(&self.cfg), lines) {
            tracing::warn!(
                "cannot write mirror state under {}: {e}",
                self.cfg.state_dir.display()
            );
        }
    }
}

impl Drop for Mirror {
    fn drop(&mut self) {
        for i in self.attached() {
            let _ = self.detach(i);
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.cfg.device])
            .output();
        let _ = std::fs::remove_file(Self::state_file(&self.cfg));
    }
}

/// Remove a crashed run's leftovers: podtap's mirror filters on every interface, the
/// capture device, and the clsact qdiscs it had created if nothing else uses them.
pub fn cleanup_stale(cfg: &MirrorConfig) {
    let created: Vec<u32> = std::fs::read_to_string(Mirror::state_file(cfg))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    for i in iface::list_current_netns() {
        let mut removed = false;
        for (point, _) in POINTS {
            removed |= bpfobj::quietly(|| remove_our_filter(i.ifindex, point, cfg));
        }
        if removed {
            tracing::info!(iface = %i.name, "removed a stale podtap mirror filter");
        }
        if created.contains(&i.ifindex) && clsact_empty(&i.name) {
            destroy_clsact(i.ifindex);
        }
    }
    if ifindex_of(&cfg.device).is_some() {
        tracing::info!(device = %cfg.device, "removing a stale capture device");
        let _ = Command::new("ip")
            .args(["link", "del", &cfg.device])
            .output();
    }
    let _ = std::fs::remove_file(Mirror::state_file(cfg));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tci_round_trips_every_slot_and_direction() {
        for slot in 1..=MAX_SLOT {
            for dir in [Direction::FromPod, Direction::ToPod] {
                let tci = encode_tci(slot, dir);
                assert_eq!(decode_tci(tci), (slot, dir), "slot {slot}");
            }
        }
        // Layout the BPF program writes: VID low 12 bits, PCP from bit 13, DEI bit 12.
        assert_eq!(encode_tci(0x0abc, Direction::FromPod), 0x0abc);
        assert_eq!(encode_tci(0x0abc, Direction::ToPod), 0x1abc);
        assert_eq!(encode_tci(0x7fff, Direction::FromPod), 0xefff);
    }

    #[test]
    fn untag_moves_the_addresses_over_the_tag() {
        let mut f: Vec<u8> = (1..=12).collect();
        f.extend_from_slice(&[0x88, 0xa8, 0x10, 0x05, 0x08, 0x00, 0x45, 0x00]);
        let (tci, off) = untag(&mut f).unwrap();
        assert_eq!((tci, off), (0x1005, 4));
        assert_eq!(decode_tci(tci), (5, Direction::ToPod));
        let mut want: Vec<u8> = (1..=12).collect();
        want.extend_from_slice(&[0x08, 0x00, 0x45, 0x00]);
        assert_eq!(&f[off..], &want[..]);
        // Untagged, 802.1Q-tagged and short frames are left alone.
        let mut plain: Vec<u8> = vec![0; 12];
        plain.extend_from_slice(&[0x08, 0x00, 0, 0, 0, 0]);
        assert_eq!(untag(&mut plain), None);
        let mut q = plain.clone();
        q[12] = 0x81;
        assert_eq!(untag(&mut q), None);
        assert_eq!(untag(&mut [0x88; 17]), None);
    }

    #[test]
    fn tag_table_resolves_and_forgets() {
        let t = TagTable::new();
        assert_eq!(t.ifindex(3), None);
        t.set(3, 42);
        assert_eq!(t.ifindex(3), Some(42));
        t.set(3, 0);
        assert_eq!(t.ifindex(3), None);
        assert_eq!(t.ifindex(u16::MAX), None);
    }

    #[test]
    fn config_is_checked() {
        assert!(MirrorConfig::default().validate().is_ok());
        let c = MirrorConfig {
            peer: "ptap0".into(),
            ..Default::default()
        };
        assert!(c.validate().is_err());
        let c = MirrorConfig {
            device: "a-name-far-too-long".into(),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().starts_with("device"));
    }
}
