//! Node-local discovery without Kubernetes: every network namespace on the host (from
//! `/proc/*/ns/net` and `/var/run/netns/*`, deduplicated by inode), its interfaces and
//! addresses, the processes in it, and which veth of the node leads into it.
//!
//! A veth pair is matched from both ends: the pod-side veth's `IFLA_LINK` is the host
//! veth's ifindex and the host veth's `IFLA_LINK` is the pod-side ifindex; where the
//! kernel reports it, the host veth's `IFLA_LINK_NETNSID` must also be the id the node
//! gave that namespace (`RTM_GETNSID`), since ifindexes repeat across namespaces.
//!
//! "The node" is the network namespace of the calling thread (the daemon's own; tests
//! call this from a thread inside a namespace they made).

use compact_str::CompactString;
use hashbrown::HashMap;
use std::fs::File;
use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::model::ProcessInfo;
use super::sockets::{self, SocketOwner};

/// Processes remembered per namespace (the lowest pids), to bound memory on busy hosts.
pub const MAX_PROCS_PER_NS: usize = 8;

/// One interface of a namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    pub ifindex: u32,
    pub name: String,
    /// `IFLA_INFO_KIND`: `veth`, `bridge`, ...
    pub kind: Option<String>,
    /// `IFLA_LINK`: for a veth, the peer's ifindex (in the peer's namespace).
    pub link: Option<u32>,
    /// `IFLA_LINK_NETNSID`: the id, in this namespace, of the peer's namespace.
    pub link_netnsid: Option<i32>,
    pub addrs: Vec<IpAddr>,
}

/// One network namespace.
#[derive(Clone, Debug, Default)]
pub struct NsInfo {
    pub inode: u64,
    /// The `/var/run/netns` name, when it has one.
    pub name: Option<String>,
    pub links: Vec<Link>,
    /// Lowest pids first, at most [`MAX_PROCS_PER_NS`].
    pub processes: Vec<ProcessInfo>,
    /// Its sockets and the processes holding them (not for the node's own namespace).
    pub sockets: Vec<SocketOwner>,
    /// The id the node's namespace gives this one (`RTM_GETNSID`), when assigned.
    pub nsid: Option<i32>,
    /// Host-side veths leading into this namespace: (ifindex, name) in the node.
    pub host_ifaces: Vec<(u32, String)>,
}

impl NsInfo {
    /// Addresses of the namespace that identify it: no loopback, no link-local.
    pub fn ips(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.links
            .iter()
            .flat_map(|l| l.addrs.iter().copied())
            .filter(|ip| !ip.is_loopback() && !is_link_local(ip))
    }
}

fn is_link_local(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(a) => a.is_link_local(),
        IpAddr::V6(a) => (a.segments()[0] & 0xffc0) == 0xfe80,
    }
}

/// A listening TCP socket of the node's namespace and the process that owns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortOwner {
    pub port: u16,
    pub process: ProcessInfo,
}

/// Everything found in one pass.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// The node's own namespace (the caller's).
    pub host: NsInfo,
    /// Every other namespace.
    pub namespaces: Vec<NsInfo>,
    /// Listening TCP ports of the node's namespace (hostNetwork pods), when asked for.
    pub host_ports: Vec<PortOwner>,
}

impl Discovery {
    /// The namespace behind a host interface.
    pub fn by_host_ifindex(&self, ifindex: u32) -> Option<&NsInfo> {
        self.namespaces
            .iter()
            .find(|n| n.host_ifaces.iter().any(|(i, _)| *i == ifindex))
    }

    pub fn by_name(&self, name: &str) -> Option<&NsInfo> {
        self.namespaces
            .iter()
            .find(|n| n.name.as_deref() == Some(name))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("cannot read the node's network namespace: {0}")]
    Host(io::Error),
    #[error("cannot list the node's interfaces: {0}")]
    Links(io::Error),
}

/// Walk the host. `with_ports` also maps the node's listening TCP ports to processes
/// (reads every process's fds: only asked for when hostNetwork pods need it).
pub fn discover(with_ports: bool) -> Result<Discovery, DiscoveryError> {
    let host_inode = std::fs::metadata("/proc/thread-self/ns/net")
        .map_err(DiscoveryError::Host)?
        .ino();
    let mut found: HashMap<u64, NsInfo> = HashMap::new();
    // Named namespaces first, so a namespace with a name keeps it.
    if let Ok(dir) = std::fs::read_dir("/var/run/netns") {
        for e in dir.flatten() {
            let Ok(md) = std::fs::metadata(e.path()) else {
                continue;
            };
            let name = e.file_name().to_string_lossy().into_owned();
            found.entry(md.ino()).or_insert_with(|| NsInfo {
                inode: md.ino(),
                name: Some(name),
                ..Default::default()
            });
        }
    }
    // Processes, by the namespace they are in.
    let mut pids: HashMap<u64, Vec<u32>> = HashMap::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(md) = std::fs::metadata(format!("/proc/{pid}/ns/net")) else {
                continue;
            };
            pids.entry(md.ino()).or_default().push(pid);
        }
    }
    for (&inode, list) in pids.iter_mut() {
        list.sort_unstable();
        let ns = found.entry(inode).or_insert_with(|| NsInfo {
            inode,
            ..Default::default()
        });
        ns.processes = list
            .iter()
            .filter_map(|&pid| process_info(pid))
            .take(MAX_PROCS_PER_NS)
            .collect();
    }
    let mut host = found.remove(&host_inode).unwrap_or(NsInfo {
        inode: host_inode,
        ..Default::default()
    });
    host.links = list_links().map_err(DiscoveryError::Links)?;
    let mut namespaces: Vec<NsInfo> = found.into_values().collect();
    namespaces.sort_by_key(|n| n.inode);
    // Which process holds which socket, per pod namespace: flows name their processes by
    // it. (The node's own namespace is not scanned: hostNetwork pods go by `with_ports`.)
    for ns in &mut namespaces {
        if let Some(list) = pids.get(&ns.inode) {
            ns.sockets = sockets::scan(list, process_info);
        }
    }

    // Ids the node gives the namespaces, then their links (from inside each).
    if let Ok(sock) = Netlink::open() {
        for ns in &mut namespaces {
            if let Some(f) = open_ns(ns, &pids) {
                ns.nsid = sock.nsid_of(&f).ok().flatten();
            }
        }
    }
    let files: Vec<Option<File>> = namespaces.iter().map(|n| open_ns(n, &pids)).collect();
    let links = std::thread::spawn(move || {
        files
            .into_iter()
            .map(|f| {
                let f = f?;
                // SAFETY: setns(2) on a namespace file we opened; only this thread moves.
                if unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                    return None;
                }
                list_links().ok()
            })
            .collect::<Vec<_>>()
    })
    .join()
    .unwrap_or_default();
    for (ns, l) in namespaces.iter_mut().zip(links) {
        ns.links = l.unwrap_or_default();
    }
    // Pair the node's veths with the namespaces they lead into.
    for ns in &mut namespaces {
        for l in ns
            .links
            .iter()
            .filter(|l| l.kind.as_deref() == Some("veth"))
        {
            let Some(peer) = l.link else { continue };
            for h in &host.links {
                let ends_match = h.ifindex == peer && h.link == Some(l.ifindex);
                let ns_matches = match (h.link_netnsid, ns.nsid) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                };
                if ends_match && ns_matches && h.kind.as_deref() == Some("veth") {
                    ns.host_ifaces.push((h.ifindex, h.name.clone()));
                }
            }
        }
    }
    let host_ports = if with_ports {
        listening_ports()
    } else {
        Vec::new()
    };
    Ok(Discovery {
        host,
        namespaces,
        host_ports,
    })
}

fn open_ns(ns: &NsInfo, pids: &HashMap<u64, Vec<u32>>) -> Option<File> {
    let check = |f: File| (f.metadata().ok()?.ino() == ns.inode).then_some(f);
    if let Some(name) = &ns.name
        && let Some(f) = File::open(Path::new("/var/run/netns").join(name))
            .ok()
            .and_then(check)
    {
        return Some(f);
    }
    // Any process still in it (the first may have exited since the scan).
    pids.get(&ns.inode)?.iter().find_map(|pid| {
        File::open(format!("/proc/{pid}/ns/net"))
            .ok()
            .and_then(check)
    })
}

fn process_info(pid: u32) -> Option<ProcessInfo> {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    Some(ProcessInfo {
        pid,
        comm: comm.trim_end().into(),
        container_id: container_id(&cgroup).map(CompactString::from),
    })
}

/// The container id in a cgroup path: the last run of exactly 64 hex digits
/// (`/kubepods/.../cri-containerd-<id>.scope`, `/docker/<id>`, `crio-<id>.scope`).
pub fn container_id(cgroup: &str) -> Option<&str> {
    let b = cgroup.as_bytes();
    let mut best = None;
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_hexdigit() && !b[i].is_ascii_uppercase() {
            let start = i;
            while i < b.len() && b[i].is_ascii_hexdigit() && !b[i].is_ascii_uppercase() {
                i += 1;
            }
            if i - start == 64 {
                best = Some(&cgroup[start..i]);
            }
        } else {
            i += 1;
        }
    }
    best
}

/// Listening TCP sockets of the calling thread's namespace, joined to the processes
/// holding them (`/proc/thread-self/net/tcp{,6}` inode → `/proc/*/fd` socket link).
pub fn listening_ports() -> Vec<PortOwner> {
    let mut by_inode: HashMap<u64, u16> = HashMap::new();
    for f in ["/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        parse_proc_net_tcp(&text, &mut by_inode);
    }
    let mut out = Vec::new();
    if by_inode.is_empty() {
        return out;
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let t = target.to_string_lossy();
            let Some(inode) = t
                .strip_prefix("socket:[")
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            if let Some(port) = by_inode.remove(&inode)
                && let Some(p) = process_info(pid)
            {
                out.push(PortOwner { port, process: p });
            }
        }
        if by_inode.is_empty() {
            break;
        }
    }
    out.sort_by_key(|o| o.port);
    out.dedup_by_key(|o| o.port);
    out
}

/// LISTEN (`st` 0A) sockets of a `/proc/net/tcp` table: inode → local port.
fn parse_proc_net_tcp(text: &str, out: &mut HashMap<u64, u16>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || f[3] != "0A" {
            continue;
        }
        let port = f[1]
            .rsplit_once(':')
            .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
        if let (Some(port), Ok(inode)) = (port, f[9].parse::<u64>())
            && inode != 0
        {
            out.insert(inode, port);
        }
    }
}

// --- rtnetlink -------------------------------------------------------------------------

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;
const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_LINK_NETNSID: u16 = 37;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;

struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    fn open() -> io::Result<Netlink> {
        // SAFETY: socket(2); the fd is owned from here on.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh socket we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let tv = libc::timeval {
            tv_sec: 2,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a timeval of the right size; a receive timeout keeps a
        // silent kernel from hanging discovery.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Netlink { fd })
    }

    /// Send one request and collect the bodies of the answer's messages of type `want`.
    fn request(&self, kind: u16, flags: u16, body: &[u8], want: u16) -> io::Result<Vec<Vec<u8>>> {
        let len = NLMSG_HDRLEN + body.len();
        let mut msg = Vec::with_capacity(len);
        msg.extend_from_slice(&(len as u32).to_ne_bytes());
        msg.extend_from_slice(&kind.to_ne_bytes());
        msg.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        msg.extend_from_slice(&1u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // pid: the kernel
        msg.extend_from_slice(body);
        // SAFETY: send(2) of a buffer we own.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut out = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: recv(2) into our buffer with its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut b = &buf[..n as usize];
            let mut done = flags & NLM_F_DUMP == 0;
            while b.len() >= NLMSG_HDRLEN {
                let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
                let t = u16::from_ne_bytes([b[4], b[5]]);
                if len < NLMSG_HDRLEN || len > b.len() {
                    break;
                }
                let body = &b[NLMSG_HDRLEN..len];
                match t {
                    NLMSG_DONE => done = true,
                    NLMSG_ERROR => {
                        let code = body
                            .get(..4)
                            .map(|e| i32::from_ne_bytes([e[0], e[1], e[2], e[3]]))
                            .unwrap_or(0);
                        if code != 0 {
                            return Err(io::Error::from_raw_os_error(-code));
                        }
                        done = true;
                    }
                    t if t == want => out.push(body.to_vec()),
                    _ => {}
                }
                b = b.get((len + 3) & !3..).unwrap_or(&[]);
            }
            if done {
                return Ok(out);
            }
        }
    }

    /// The id this socket's namespace gives the namespace behind `f`, if one is assigned.
    fn nsid_of(&self, f: &File) -> io::Result<Option<i32>> {
        // struct rtgenmsg (family, padded to 4) + NETNSA_FD attribute.
        let mut body = vec![0u8; 4];
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&NETNSA_FD.to_ne_bytes());
        body.extend_from_slice(&(f.as_raw_fd() as u32).to_ne_bytes());
        let msgs = self.request(RTM_GETNSID, 0, &body, RTM_NEWNSID)?;
        Ok(msgs.first().and_then(|m| {
            let v = attr(m.get(4..)?, NETNSA_NSID)?;
            let id = i32::from_ne_bytes(v.get(..4)?.try_into().ok()?);
            (id >= 0).then_some(id)
        }))
    }
}

/// The interfaces of the calling thread's namespace, with addresses.
pub fn list_links() -> io::Result<Vec<Link>> {
    let nl = Netlink::open()?;
    let mut links: Vec<Link> = nl
        .request(RTM_GETLINK, NLM_F_DUMP, &[0u8; 16], RTM_NEWLINK)?
        .iter()
        .filter_map(|m| parse_link(m))
        .collect();
    for m in nl.request(RTM_GETADDR, NLM_F_DUMP, &[0u8; 8], RTM_NEWADDR)? {
        if let Some((ifindex, ip)) = parse_addr(&m)
            && let Some(l) = links.iter_mut().find(|l| l.ifindex == ifindex)
            && !l.addrs.contains(&ip)
        {
            l.addrs.push(ip);
        }
    }
    links.sort_by_key(|l| l.ifindex);
    Ok(links)
}

fn parse_link(m: &[u8]) -> Option<Link> {
    let ifindex = i32::from_ne_bytes(m.get(4..8)?.try_into().ok()?) as u32;
    let attrs = m.get(16..)?;
    let name = attr(attrs, IFLA_IFNAME).map(cstr)?;
    let u32_of = |v: &[u8]| Some(u32::from_ne_bytes(v.get(..4)?.try_into().ok()?));
    let link = attr(attrs, IFLA_LINK)
        .and_then(u32_of)
        .filter(|&l| l != 0 && l != ifindex);
    let link_netnsid = attr(attrs, IFLA_LINK_NETNSID)
        .and_then(u32_of)
        .map(|v| v as i32)
        .filter(|&v| v >= 0);
    let kind = attr(attrs, IFLA_LINKINFO)
        .and_then(|li| attr(li, IFLA_INFO_KIND))
        .map(cstr);
    Some(Link {
        ifindex,
        name,
        kind,
        link,
        link_netnsid,
        addrs: Vec::new(),
    })
}

fn parse_addr(m: &[u8]) -> Option<(u32, IpAddr)> {
    let family = *m.first()? as i32;
    let ifindex = u32::from_ne_bytes(m.get(4..8)?.try_into().ok()?);
    let attrs = m.get(8..)?;
    // IFA_LOCAL is the interface's own address on point-to-point links; IFA_ADDRESS
    // otherwise.
    let v = attr(attrs, IFA_LOCAL).or_else(|| attr(attrs, IFA_ADDRESS))?;
    let ip = match family {
        libc::AF_INET => IpAddr::from(<[u8; 4]>::try_from(v.get(..4)?).ok()?),
        libc::AF_INET6 => IpAddr::from(<[u8; 16]>::try_from(v.get(..16)?).ok()?),
        _ => return None,
    };
    Some((ifindex, ip))
}

/// The payload of the first attribute of type `kind` (nested flag bits masked off).
fn attr(mut b: &[u8], kind: u16) -> Option<&[u8]> {
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let t = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            return None;
        }
        if t == kind {
            return Some(&b[4..len]);
        }
        b = b.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

fn cstr(v: &[u8]) -> String {
    let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
    String::from_utf8_lossy(&v[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_ids_from_cgroup_paths() {
        let id = "3f2b".repeat(16);
        for path in [
            format!("0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-{id}.scope\n"),
            format!("12:memory:/docker/{id}\n"),
            format!("0::/system.slice/crio-{id}.scope"),
        ] {
            assert_eq!(container_id(&path), Some(id.as_str()), "{path}");
        }
        assert_eq!(container_id("0::/user.slice/session-2.scope\n"), None);
        assert_eq!(
            container_id(&format!("0::/x/{id}0")),
            None,
            "65 digits is not an id"
        );
    }

    #[test]
    fn proc_net_tcp_listeners() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2F0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1
";
        let mut m = HashMap::new();
        parse_proc_net_tcp(t, &mut m);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&12345], 8080);
    }

    #[test]
    fn lists_own_links() {
        let links = list_links().expect("rtnetlink works");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!(lo.ifindex, 1);
    }
}
