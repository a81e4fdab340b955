//! `podtap check`: can this host capture, and how? Each probe says what it found and, for
//! every problem, what to do about it. The probes are real (open the sockets, read the
//! limits), not guesses from the kernel version.

use crate::capture::iface::Selector;
use crate::config::Config;
use std::fmt::Write;

/// Result of one probe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub what: &'static str,
    pub ok: bool,
    pub detail: String,
    /// What to do when not ok.
    pub fix: Option<String>,
}

fn finding(what: &'static str, ok: bool, detail: impl Into<String>, fix: Option<&str>) -> Finding {
    Finding {
        what,
        ok,
        detail: detail.into(),
        fix: if ok { None } else { fix.map(str::to_string) },
    }
}

/// An interface and what podtap would do with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub name: String,
    pub ifindex: u32,
    pub kind: &'static str,
    pub up: bool,
    /// Matches `capture.interfaces` and not `capture.exclude`: `podtap run` captures it.
    pub captured: bool,
    /// What AF_XDP could do on it: `native`, `generic`, or why it cannot run.
    pub xdp: String,
    /// The engine the configured `capture.mode` picks for it (`auto`: by kind of
    /// interface and whether AF_XDP can run), and why.
    pub engine: &'static str,
    pub reason: String,
    /// `run` would bind its queues with AF_XDP, taking its frames from the kernel: it is
    /// listed in `capture.direct` and would be captured with AF_XDP.
    pub destructive: bool,
    /// Addresses (IPv4, and IPv6 other than link-local) and routes on it: a copy port
    /// has neither, so a destructive bind of an interface that has them is a mistake.
    pub live: LiveUse,
}

/// Signs that an interface carries the host's own traffic.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LiveUse {
    pub addresses: Vec<String>,
    pub routes: usize,
}

impl LiveUse {
    pub fn is_live(&self) -> bool {
        !self.addresses.is_empty() || self.routes > 0
    }
}

pub struct Report {
    pub findings: Vec<Finding>,
    pub interfaces: Vec<Interface>,
}

impl Report {
    pub fn all_ok(&self) -> bool {
        self.findings.iter().all(|f| f.ok)
    }

    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            let _ = writeln!(
                s,
                "[{}] {:<22} {}",
                if f.ok { " ok " } else { "FAIL" },
                f.what,
                f.detail
            );
            if let Some(fix) = &f.fix {
                let _ = writeln!(s, "       fix: {fix}");
            }
        }
        let _ = writeln!(
            s,
            "\n{:<16} {:>7} {:<9} {:<5} {:<8} {:<8} {:<8} {:<11} reason",
            "interface", "ifindex", "kind", "up", "captured", "xdp", "engine", "binds"
        );
        for i in &self.interfaces {
            // A long "cannot" reason goes into the last column.
            let (xdp, why) = match i.xdp.as_str() {
                m @ ("native" | "generic") => (m, String::new()),
                e => ("no", format!(" (AF_XDP: {e})")),
            };
            // "binds": whether the kernel still gets the interface's frames while podtap
            // runs ("takes all": AF_XDP redirects them to podtap's sockets).
            let binds = match (i.captured, i.destructive) {
                (false, _) => "-",
                (true, false) => "copies",
                (true, true) => "TAKES ALL",
            };
            let _ = writeln!(
                s,
                "{:<16} {:>7} {:<9} {:<5} {:<8} {:<8} {:<8} {:<11} {}{why}",
                i.name,
                i.ifindex,
                i.kind,
                i.up,
                if i.captured { "yes" } else { "no" },
                xdp,
                i.engine,
                binds,
                i.reason
            );
        }
        s
    }
}

/// Probe the host; the interface table follows `cfg`'s capture settings.
pub fn run(cfg: &Config) -> Report {
    let mut findings = vec![kernel(), capabilities()];
    findings.push(af_packet());
    findings.push(af_xdp());
    findings.push(bpffs());
    findings.push(memlock());
    findings.push(ring_headroom(&cfg.capture));
    findings.push(memory_bounds(cfg, mem_total()));
    let mut interfaces = interfaces(cfg);
    findings.push(destructive_binds(&interfaces));
    findings.push(xdp_bind(cfg, &mut interfaces));
    Report {
        findings,
        interfaces,
    }
}

/// Does AF_XDP really work here? `run` opens it on a capture device of its own (and on
/// `capture.direct` ports); check tries the same on a scratch capture device pair, with
/// the configured XDP settings, and removes it again, when any captured interface would
/// use AF_XDP. Where the try fails, `run` would fall back to TPACKET_V3: the interface
/// table says so, with the cause.
fn xdp_bind(cfg: &Config, ifs: &mut [Interface]) -> Finding {
    let wanted = cfg.capture.mode == crate::config::CaptureMode::Xdp
        || ifs.iter().any(|i| i.captured && i.engine == "xdp");
    if !wanted {
        return finding(
            "AF_XDP bind",
            true,
            "not tried: no captured interface uses AF_XDP under this config",
            None,
        );
    }
    match try_xdp_bind(cfg) {
        Ok(how) => {
            for i in ifs.iter_mut().filter(|i| i.destructive) {
                i.reason
                    .push_str(" (bind on the port itself not tried: it would take its frames)");
            }
            finding("AF_XDP bind", true, how, None)
        }
        Err(e) => {
            for i in ifs.iter_mut().filter(|i| i.engine == "xdp") {
                i.engine = "tpacket";
                i.destructive = false;
                i.reason = format!("AF_XDP failed here ({e}); TPACKET_V3 used");
            }
            finding(
                "AF_XDP bind",
                false,
                format!("failed on a scratch capture device: {e}"),
                Some(
                    "run falls back to TPACKET_V3 for those interfaces; fix the cause above \
                     or set capture.mode = \"tpacket\"",
                ),
            )
        }
    }
}

/// One AF_XDP socket with podtap's XDP program on a scratch capture veth pair, as
/// `run` opens on its mirror device; everything is removed on return.
fn try_xdp_bind(cfg: &Config) -> Result<String, String> {
    use crate::capture::mirror::{Mirror, MirrorConfig};
    use crate::capture::xdp::{Decap, XdpSource};
    let state = std::env::temp_dir().join(format!("podtap-check-{}", std::process::id()));
    // Named per process: two checks at once must not share a device.
    let id = std::process::id() % 100_000;
    let mcfg = MirrorConfig {
        device: format!("ptck{id}"),
        peer: format!("ptck{id}c"),
        state_dir: state.clone(),
        ..cfg.capture.mirror.clone()
    };
    // A small UMEM: the try needs one frame, not the configured capacity.
    let xcfg = crate::capture::xdp::XdpConfig {
        frame_count: 4096,
        fill_ring: 4096,
        rx_ring: 4096,
        ..cfg.capture.xdp.clone()
    };
    let _ = crate::capture::bpfobj::take_libbpf_warning();
    let cause = |e: String| match crate::capture::bpfobj::take_libbpf_warning() {
        Some(w) if !e.contains(&w) => format!("{e}: {w}"),
        _ => e,
    };
    let r = (|| {
        let m = Mirror::new(&mcfg, 1).map_err(|e| cause(e.to_string()))?;
        let src = XdpSource::open(m.capture_device(), 0, &xcfg, Decap::Mirror(m.tags()))
            .map_err(|e| cause(e.to_string()))?;
        Ok(format!(
            "an AF_XDP socket bound on a scratch capture device ({:?} XDP, {}) and removed",
            src.mode(),
            if src.zero_copy() {
                "zero-copy"
            } else {
                "copy mode"
            }
        ))
    })();
    let _ = std::fs::remove_dir_all(&state);
    r
}

/// Which interfaces `run` would bind with AF_XDP, so that the kernel no longer receives
/// their frames. Only `capture.direct` copy ports are; one that has addresses or routes
/// is probably not a copy port, and binding it would cut the host off that network.
fn destructive_binds(ifs: &[Interface]) -> Finding {
    let bound: Vec<&Interface> = ifs.iter().filter(|i| i.destructive).collect();
    let live: Vec<String> = bound
        .iter()
        .filter(|i| i.live.is_live())
        .map(|i| {
            format!(
                "{} (addresses: {}; routes: {})",
                i.name,
                if i.live.addresses.is_empty() {
                    "none".to_string()
                } else {
                    i.live.addresses.join(" ")
                },
                i.live.routes
            )
        })
        .collect();
    let detail = if bound.is_empty() {
        "none: every captured interface is read with TPACKET_V3 or mirrored as copies; \
         the kernel keeps receiving all traffic"
            .to_string()
    } else if live.is_empty() {
        format!(
            "AF_XDP takes every frame of {} (capture.direct copy ports: the kernel no \
             longer receives their traffic)",
            bound
                .iter()
                .map(|i| i.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "WARNING: capture.direct would take ALL traffic of {} away from the kernel, \
             but it carries the host's own traffic: this cuts the host off that network \
             while podtap runs",
            live.join(", ")
        )
    };
    finding(
        "destructive binds",
        live.is_empty(),
        detail,
        Some(
            "remove it from capture.direct: podtap then reads it with TPACKET_V3 (or, in \
             capture.mode = \"xdp\", mirrors copies to its capture device)",
        ),
    )
}

/// Addresses and routes on `name` (IPv6 link-local ones excepted: every interface that is
/// up has them).
pub fn live_use(name: &str) -> LiveUse {
    let mut addresses = Vec::new();
    // SAFETY: getifaddrs(3) hands us a list we walk read-only and free once.
    unsafe {
        let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut head) == 0 {
            let mut p = head;
            while !p.is_null() {
                let a = &*p;
                p = a.ifa_next;
                if a.ifa_addr.is_null()
                    || std::ffi::CStr::from_ptr(a.ifa_name).to_bytes() != name.as_bytes()
                {
                    continue;
                }
                match (*a.ifa_addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(a.ifa_addr as *const libc::sockaddr_in);
                        let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                        addresses.push(ip.to_string());
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a.ifa_addr as *const libc::sockaddr_in6);
                        let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                        if !ip.is_unicast_link_local() {
                            addresses.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
            libc::freeifaddrs(head);
        }
    }
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    LiveUse {
        addresses,
        routes: count_routes(&v4, &v6, name),
    }
}

/// Routes through `name` in /proc/net/route and /proc/net/ipv6_route, leaving out the
/// IPv6 ones the kernel adds to every interface (link-local fe80::/64, multicast
/// ff00::/8) and host routes of its own addresses.
fn count_routes(v4: &str, v6: &str, name: &str) -> usize {
    let ipv4 = v4
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().next() == Some(name))
        .count();
    let ipv6 = v6
        .lines()
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 10
                && f[9] == name
                && f[1] != "80"
                && !f[0].starts_with("fe8")
                && !f[0].starts_with("ff")
        })
        .count();
    ipv4 + ipv6
}

fn kernel() -> Finding {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    // AF_XDP need-wakeup and shared UMEM are 5.4+; TPACKET_V3 is far older.
    let ok = (major, minor) >= (5, 4);
    finding(
        "kernel",
        ok,
        format!("Linux {release}"),
        Some("AF_XDP needs Linux 5.4 or newer; podtap falls back to TPACKET_V3"),
    )
}

/// Effective capability bits from /proc/self/status.
fn cap_eff() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .unwrap_or(0)
}

fn capabilities() -> Finding {
    const NEEDED: [(u32, &str); 4] = [
        (12, "CAP_NET_ADMIN"),
        (13, "CAP_NET_RAW"),
        (39, "CAP_BPF"),
        (14, "CAP_IPC_LOCK"),
    ];
    let eff = cap_eff();
    let missing: Vec<&str> = NEEDED
        .iter()
        .filter(|(bit, _)| eff & (1u64 << bit) == 0)
        .map(|(_, n)| *n)
        .collect();
    let detail = if missing.is_empty() {
        "NET_ADMIN NET_RAW BPF IPC_LOCK present".to_string()
    } else {
        format!("missing {}", missing.join(" "))
    };
    finding(
        "capabilities",
        missing.is_empty(),
        detail,
        Some(
            "run as root, or grant the capabilities (systemd: AmbientCapabilities=, Kubernetes: securityContext.capabilities.add)",
        ),
    )
}

fn af_packet() -> Finding {
    // SAFETY: plain socket(2)/setsockopt(2)/close(2) on a descriptor we own.
    unsafe {
        let fd = libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            (libc::ETH_P_ALL as u16).to_be() as i32,
        );
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            return finding(
                "AF_PACKET",
                false,
                format!("socket: {e}"),
                Some("run as root or grant CAP_NET_RAW"),
            );
        }
        // TPACKET_V3 = 2 (enum tpacket_versions in linux/if_packet.h).
        let v: libc::c_int = 2;
        let r = libc::setsockopt(
            fd,
            libc::SOL_PACKET,
            libc::PACKET_VERSION,
            &v as *const _ as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as u32,
        );
        let e = std::io::Error::last_os_error();
        libc::close(fd);
        if r < 0 {
            return finding(
                "AF_PACKET",
                false,
                format!("TPACKET_V3: {e}"),
                Some("the kernel lacks TPACKET_V3 (Linux 3.2+)"),
            );
        }
    }
    finding("AF_PACKET", true, "TPACKET_V3 rings available", None)
}

fn af_xdp() -> Finding {
    const AF_XDP: i32 = 44;
    // SAFETY: socket(2)/close(2) on a descriptor we own.
    let (fd, e) = unsafe {
        let fd = libc::socket(AF_XDP, libc::SOCK_RAW, 0);
        (fd, std::io::Error::last_os_error())
    };
    if fd >= 0 {
        // SAFETY: fd was just returned by socket(2).
        unsafe { libc::close(fd) };
        return finding("AF_XDP", true, "XDP sockets available", None);
    }
    let fix = match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => {
            "the kernel was built without CONFIG_XDP_SOCKETS: podtap uses TPACKET_V3"
        }
        _ => "run as root or grant CAP_NET_RAW and CAP_BPF",
    };
    finding("AF_XDP", false, format!("socket: {e}"), Some(fix))
}

fn bpffs() -> Finding {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let path = c"/sys/fs/bpf";
    // SAFETY: statfs(2) into a zeroed struct we own.
    let mounted = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    };
    // `run` mounts it itself before it attaches a program (bpfobj::ensure_bpffs), which
    // takes CAP_SYS_ADMIN: without that, it has to be mounted beforehand.
    let can_mount = cap_eff() & (1 << 21) != 0;
    finding(
        "bpffs",
        mounted || can_mount,
        if mounted {
            "/sys/fs/bpf is a BPF filesystem"
        } else if can_mount {
            "/sys/fs/bpf is not mounted yet: podtap mounts it when it attaches a program"
        } else {
            "/sys/fs/bpf is not mounted, and podtap may not mount it (no CAP_SYS_ADMIN)"
        },
        Some("mount -t bpf bpf /sys/fs/bpf (needed to pin the XDP program)"),
    )
}

fn memlock() -> Finding {
    // SAFETY: getrlimit(2) into a struct we own.
    let lim = unsafe {
        let mut r: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r);
        r.rlim_cur
    };
    let unlimited = lim == libc::RLIM_INFINITY;
    // AF_XDP pins its UMEM against RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
    let ipc_lock = cap_eff() & (1 << 14) != 0;
    let ok = unlimited || lim >= 256 << 20 || ipc_lock;
    let mut detail = if unlimited {
        "unlimited".to_string()
    } else {
        format!("{} KiB", lim / 1024)
    };
    if ipc_lock && !unlimited {
        detail.push_str(" (not enforced: CAP_IPC_LOCK)");
    }
    finding(
        "memlock limit",
        ok,
        detail,
        Some("raise it: ulimit -l unlimited, or LimitMEMLOCK=infinity in the systemd unit"),
    )
}

/// A capture thread on a loaded host is sometimes descheduled this long; each ring must
/// hold the traffic that arrives meanwhile.
const STALL_MS: f64 = 30.0;

fn ring_headroom(c: &crate::config::CaptureConfig) -> Finding {
    let pps = c.peak_pps_per_worker;
    // Minimum-size frames: the most frames per byte of ring.
    let tpacket = c.tpacket.holds_ms(pps, 60);
    let xdp = c.xdp.holds_ms(pps);
    finding(
        "ring headroom",
        tpacket >= STALL_MS && xdp >= STALL_MS,
        format!(
            "at {pps} packets/s per worker (64-byte frames) a TPACKET_V3 ring holds \
             {tpacket:.0} ms, an AF_XDP queue {xdp:.0} ms (needed: {STALL_MS:.0} ms)"
        ),
        Some(
            "raise capture.tpacket.block_count (TPACKET_V3) or capture.xdp.frame_count, \
             fill_ring and rx_ring (AF_XDP), or add workers to lower the rate per worker",
        ),
    )
}

/// MemTotal of /proc/meminfo, in bytes.
fn mem_total() -> Option<u64> {
    let m = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// What the configured bounds let the workers hold at most, structure by structure, in
/// bytes: the flow table (each tracked flow's slot and index entry, and a decoder for
/// every flow in the worst case), the out-of-order reassembly buffers, and the record
/// queue to the writer (records only: their attribute strings come on top). Fails when
/// all workers together could hold more than the machine has.
fn memory_bounds(cfg: &Config, mem_total: Option<u64>) -> Finding {
    let workers = crate::memory::workers(cfg) as u64;
    let flows = cfg.flow.max_flows as u64;
    let table = flows * crate::flow::table::FLOW_BYTES as u64;
    let decoders = flows * std::mem::size_of::<crate::proto::Decoder>() as u64;
    let reassembly = cfg.reassembly.max_worker_bytes as u64;
    let heap = cfg.protocols.max_worker_heap_bytes as u64;
    let queue = cfg.output.queue_batches as u64 * crate::memory::batch_bytes();
    let spans = if cfg.export.otlp.enabled {
        cfg.export.spans.max_buffered_bytes as u64
    } else {
        0
    };
    let per_worker = table + decoders + reassembly + heap;
    // The flight recorder's rings, the copies of recordings being written and the
    // transaction records it holds back.
    let recorder = cfg.recorder.memory_bound();
    let total = per_worker * workers + queue + spans + recorder;
    // Only with `--output table` (not the daemon's default): stated, not added to the total.
    let rows = cfg.output.table_max_endpoints as u64 * crate::export::summary::endpoint_max_bytes();
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let budget = cfg.memory.max_bytes;
    let ok = mem_total.is_none_or(|m| total <= m) && (budget == 0 || total <= budget);
    finding(
        "memory bounds",
        ok,
        format!(
            "{}per worker: flow table {:.0} MiB ({} flows x {} bytes), their decoders up to \
             {:.0} MiB, reassembly {:.0} MiB, decoder heap {:.0} MiB; record queue {:.0} MiB; span buffer {:.0} MiB; \
             flight recorder {:.0} MiB (rings, recordings being written, held records); \
             {} workers: {:.0} MiB at most{}; with --output table, its endpoint rows up to {:.0} MiB \
             more ({} rows)",
            if budget > 0 {
                format!("memory.max_bytes {:.0} MiB: ", mib(budget))
            } else {
                String::new()
            },
            mib(table),
            flows,
            crate::flow::table::FLOW_BYTES,
            mib(decoders),
            mib(reassembly),
            mib(heap),
            mib(queue),
            mib(spans),
            mib(recorder),
            workers,
            mib(total),
            mem_total.map_or(String::new(), |m| format!(" of {:.0} MiB", mib(m))),
            mib(rows),
            cfg.output.table_max_endpoints,
        ),
        Some(
            "set memory.max_bytes, or lower flow.max_flows, reassembly.max_worker_bytes, \
             protocols.max_worker_heap_bytes or output.queue_batches, or capture.workers",
        ),
    )
}

fn interfaces(cfg: &Config) -> Vec<Interface> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    // The config was validated when loaded, so its regexes compile.
    let selector = Selector::new(&cfg.capture.interfaces, &cfg.capture.exclude).ok();
    let mut v: Vec<Interface> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let base = e.path();
            let ifindex = std::fs::read_to_string(base.join("ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            let up =
                std::fs::read_to_string(base.join("operstate")).is_ok_and(|s| s.trim() != "down");
            let kind = interface_kind(&name);
            let xdp = match crate::capture::xdp::probe(&name) {
                Ok(crate::capture::xdp::XdpMode::Native) => "native".to_string(),
                Ok(_) => "generic".to_string(),
                Err(e) => e,
            };
            let (engine, reason) = crate::run::choose_engine(cfg, &name);
            let captured = selector.as_ref().is_some_and(|s| s.matches(&name));
            let destructive =
                captured && engine == crate::run::Engine::Xdp && crate::run::is_direct(cfg, &name);
            Some(Interface {
                destructive,
                live: live_use(&name),
                captured,
                name,
                ifindex,
                kind,
                up,
                xdp,
                engine: engine.as_str(),
                reason,
            })
        })
        .collect();
    v.sort_by_key(|i| i.ifindex);
    v
}

/// The kind of interface `name` is (`physical`, `veth`, `bridge`, `loopback`...), from
/// sysfs.
///
/// `PODTAP_ASSUME_PHYSICAL` (comma-separated names) makes the named interfaces count as
/// physical NICs: the end-to-end tests use it to show on a veth what podtap does with a
/// NIC, since no real NIC may be touched there.
pub fn interface_kind(name: &str) -> &'static str {
    if std::env::var("PODTAP_ASSUME_PHYSICAL").is_ok_and(|v| v.split(',').any(|n| n.trim() == name))
    {
        return "physical";
    }
    let base = std::path::Path::new("/sys/class/net").join(name);
    let uevent = std::fs::read_to_string(base.join("uevent")).unwrap_or_default();
    let devtype = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE="))
        .unwrap_or("");
    let physical = base.join("device").exists();
    match (name, devtype, physical) {
        ("lo", _, _) => "loopback",
        (_, "bridge", _) => "bridge",
        (_, "vxlan", _) => "vxlan",
        (_, "", true) => "physical",
        _ if is_veth(name) => "veth",
        (_, "", false) => "virtual",
        (_, t, _) => match t {
            "wlan" => "wireless",
            _ => "other",
        },
    }
}

fn is_veth(name: &str) -> bool {
    // A veth's driver directory is not exposed in sysfs; its peer link (iflink) differs
    // from its own index, which is what marks a pair.
    let base = std::path::Path::new("/sys/class/net").join(name);
    let read = |f: &str| {
        std::fs::read_to_string(base.join(f))
            .ok()
            .map(|s| s.trim().to_string())
    };
    matches!((read("ifindex"), read("iflink")), (Some(a), Some(b)) if a != b)
}

/// What `capture.mode = "auto"` picks for a kind of interface (an interface listed in
/// `capture.direct` is decided before this). AF_XDP on veths runs in copy mode only and
/// is slower than TPACKET_V3 there (perf/RESULTS.md). A physical NIC carries the node's
/// own traffic: binding its queues would hand every frame to podtap instead of the
/// kernel, so it is read with TPACKET_V3 like everything else that is not a copy port.
pub fn auto_choice(kind: &str) -> (&'static str, &'static str) {
    match kind {
        "physical" => (
            "tpacket",
            "NIC carrying the node's traffic: AF_XDP would take its frames from the kernel \
             (list it in capture.direct only if it is a dedicated copy port)",
        ),
        "veth" => (
            "tpacket",
            "veth: AF_XDP is copy-mode only here and slower than TPACKET_V3",
        ),
        "loopback" => ("tpacket", "loopback has no XDP receive path for copies"),
        _ => (
            "tpacket",
            "virtual device: TPACKET_V3 sees both directions without mirroring",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_report_something_for_every_check() {
        let r = run(&Config::default());
        assert_eq!(r.findings.len(), 10);
        assert!(r.findings.iter().all(|f| !f.detail.is_empty()));
        assert!(
            r.findings.iter().filter(|f| !f.ok).all(|f| f.fix.is_some()),
            "every problem has a fix"
        );
        assert!(
            r.interfaces
                .iter()
                .any(|i| i.name == "lo" && i.kind == "loopback" && !i.captured)
        );
        // Without AF_XDP privileges every interface reports why; with them, a mode.
        assert!(r.interfaces.iter().all(|i| !i.xdp.is_empty()));
        assert!(r.render().contains("interface"));
    }

    fn iface(name: &str, destructive: bool, live: LiveUse) -> Interface {
        Interface {
            name: name.into(),
            ifindex: 7,
            kind: "physical",
            up: true,
            captured: true,
            xdp: "native".into(),
            engine: if destructive { "xdp" } else { "tpacket" },
            reason: String::new(),
            destructive,
            live,
        }
    }

    #[test]
    fn a_nic_is_never_bound_destructively_unless_listed_as_a_copy_port() {
        // The defaults capture eth.*/en.* in auto mode: a NIC must get TPACKET_V3.
        assert_eq!(auto_choice("physical").0, "tpacket");
        let cfg = Config::default();
        assert!(!crate::run::is_direct(&cfg, "eth0"));
        let mut cfg = Config::default();
        cfg.capture.direct = vec!["span.*".into()];
        assert!(crate::run::is_direct(&cfg, "span0"));
        assert!(!crate::run::is_direct(&cfg, "eth0"));
    }

    #[test]
    fn a_copy_port_with_addresses_or_routes_is_a_loud_failure() {
        let quiet = destructive_binds(&[iface("eth0", false, LiveUse::default())]);
        assert!(
            quiet.ok && quiet.detail.starts_with("none"),
            "{}",
            quiet.detail
        );
        let span = destructive_binds(&[iface("span0", true, LiveUse::default())]);
        assert!(span.ok, "{}", span.detail);
        assert!(span.detail.contains("AF_XDP takes every frame of span0"));
        let live = LiveUse {
            addresses: vec!["10.0.0.5".into()],
            routes: 2,
        };
        let bad = destructive_binds(&[iface("eth1", true, live)]);
        assert!(!bad.ok);
        assert!(bad.detail.starts_with("WARNING"), "{}", bad.detail);
        assert!(bad.detail.contains("eth1 (addresses: 10.0.0.5; routes: 2)"));
        assert!(bad.fix.unwrap().contains("remove it from capture.direct"));
    }

    #[test]
    fn routes_count_what_an_operator_configured_not_what_every_link_has() {
        let v4 = "Iface\tDestination\tGateway\n\
                  eth1\t0000000A\t00000000\n\
                  eth1\t00000000\t0100000A\n\
                  eth2\t0000000B\t00000000\n";
        let v6 = "fe800000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1\n\
                  ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1\n\
                  20010db8000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001 eth1\n\
                  20010db8000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000001 00000000 80200001 eth1\n";
        assert_eq!(count_routes(v4, v6, "eth1"), 3);
        assert_eq!(count_routes(v4, v6, "eth2"), 1);
        assert_eq!(count_routes(v4, v6, "eth3"), 0);
    }

    #[test]
    fn loopback_has_addresses() {
        assert!(live_use("lo").addresses.iter().any(|a| a == "127.0.0.1"));
    }

    #[test]
    fn memory_bounds_state_each_structure_and_fail_beyond_the_machine() {
        let mut cfg = Config::default();
        cfg.capture.workers = 2;
        let f = memory_bounds(&cfg, Some(64 << 30));
        assert!(f.ok, "{}", f.detail);
        let table = (262_144 * crate::flow::table::FLOW_BYTES as u64) >> 20;
        assert!(
            f.detail.contains(&format!("flow table {table} MiB")),
            "{}",
            f.detail
        );
        assert!(f.detail.contains("reassembly 64 MiB"), "{}", f.detail);
        assert!(f.detail.contains("2 workers"), "{}", f.detail);
        let bad = memory_bounds(&cfg, Some(256 << 20));
        assert!(!bad.ok);
        assert!(bad.fix.unwrap().contains("flow.max_flows"));
    }

    #[test]
    fn memory_bounds_follow_the_budget() {
        let cfg = Config::parse(
            "[memory]\nmax_bytes = 134217728\n[capture]\nworkers = 2\n",
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let f = memory_bounds(&cfg, Some(64 << 30));
        assert!(f.ok, "{}", f.detail);
        assert!(
            f.detail.starts_with("memory.max_bytes 128 MiB: "),
            "{}",
            f.detail
        );
        let d = crate::memory::derive(128 << 20, 2);
        assert!(
            f.detail.contains(&format!("({} flows", d.max_flows)),
            "{}",
            f.detail
        );
    }

    #[test]
    fn ring_headroom_fails_below_30_ms_and_says_what_to_raise() {
        let mut c = crate::config::CaptureConfig::default();
        let ok = ring_headroom(&c);
        assert!(ok.ok, "{}", ok.detail);
        assert!(ok.detail.contains("1500000 packets/s"), "{}", ok.detail);
        // 65536 AF_XDP frames last 13 ms at 5 Mpps.
        c.peak_pps_per_worker = 5_000_000;
        let bad = ring_headroom(&c);
        assert!(!bad.ok);
        assert!(bad.detail.contains("AF_XDP queue 13 ms"), "{}", bad.detail);
        assert!(bad.fix.unwrap().contains("capture.xdp.frame_count"));
    }
}
