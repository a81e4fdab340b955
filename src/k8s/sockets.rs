//! Which process a flow belongs to: the sockets of a pod's network namespace (its
//! `/proc/<pid>/net/{tcp,tcp6,udp,udp6}` tables, read through any process in it) joined to
//! the processes holding them (`/proc/<pid>/fd/*` links `socket:[<inode>]`).
//!
//! Read at discovery, off the packet path; a flow looks its two ends up once when it is
//! resolved (and again only when the snapshot changes), never per packet. The server end
//! is found by its listening socket (a connection accepted since the last scan is not in
//! the tables yet), or by the connected socket when the scan saw the connection; the
//! client end only by its connected socket (a connection open across a scan: pools,
//! long-lived clients). Anything else stays unnamed: no process is better than a wrong
//! one. (Not even a namespace's only process names a client: a process started after the
//! scan, such as an exec'd probe or a shell, would make that guess wrong.)

use hashbrown::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use super::model::ProcessInfo;
use crate::proto::Endpoint;

/// Sockets remembered per namespace (listeners first), to bound memory and scan time on
/// namespaces with very many connections.
pub const MAX_SOCKETS_PER_NS: usize = 4096;

const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
/// `/proc/net/tcp` states (`include/net/tcp_states.h`).
const TCP_LISTEN: u8 = 0x0A;
const TCP_CLOSE: u8 = 0x07;

/// One socket of a namespace and the process holding it (the lowest pid, when several
/// share it: the parent that opened it, such as nginx's master).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOwner {
    /// IP protocol: 6 (TCP) or 17 (UDP).
    pub proto: u8,
    pub local: (IpAddr, u16),
    /// The peer of a connected socket; `None` for a listener (TCP `LISTEN`, or a UDP
    /// socket bound but not connected).
    pub remote: Option<(IpAddr, u16)>,
    pub process: ProcessInfo,
}

/// A socket of a `/proc/net` table before its owner is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sock {
    pub proto: u8,
    pub local: (IpAddr, u16),
    pub remote: Option<(IpAddr, u16)>,
}

/// Parse one `/proc/net/{tcp,tcp6,udp,udp6}` table into `out` (inode → socket):
/// listeners and connected sockets; sockets without an inode (`TIME_WAIT`) or neither
/// listening nor connected are skipped.
pub(crate) fn parse_proc_net(text: &str, proto: u8, out: &mut HashMap<u64, Sock>) {
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().take(10).collect();
        if f.len() < 10 {
            continue;
        }
        let (Some(local), Some(remote), Ok(st), Ok(inode)) = (
            addr_port(f[1]),
            addr_port(f[2]),
            u8::from_str_radix(f[3], 16),
            f[9].parse::<u64>(),
        ) else {
            continue;
        };
        if inode == 0 {
            continue;
        }
        let unconnected = remote.1 == 0 && remote.0.is_unspecified();
        let remote = match (proto, unconnected) {
            (IPPROTO_TCP, true) if st == TCP_LISTEN => None,
            (IPPROTO_TCP, false) if st != TCP_LISTEN && st != TCP_CLOSE => Some(remote),
            (IPPROTO_UDP, true) => None,
            (IPPROTO_UDP, false) => Some(remote),
            _ => continue,
        };
        out.insert(
            inode,
            Sock {
                proto,
                local,
                remote,
            },
        );
    }
}

/// `0100007F:1F90` (IPv4) or 32 hex digits (IPv6) and a port: each 32-bit word of the
/// address is printed as the host-order number of its network-order bytes. An
/// IPv4-mapped IPv6 address (a dual-stack socket talking IPv4) becomes the IPv4 address
/// the wire carries.
fn addr_port(s: &str) -> Option<(IpAddr, u16)> {
    let (a, p) = s.split_once(':')?;
    let port = u16::from_str_radix(p, 16).ok()?;
    let word = |h: &str| u32::from_str_radix(h, 16).ok().map(u32::to_ne_bytes);
    let ip = match a.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(a)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(a.get(i * 8..i * 8 + 8)?)?);
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some((ip, port))
}

/// The sockets of the namespace `pids` (ascending) are in, with their owners. `info`
/// reads a process's name and container (cached by the caller across namespaces).
pub fn scan(pids: &[u32], mut info: impl FnMut(u32) -> Option<ProcessInfo>) -> Vec<SocketOwner> {
    let mut socks: HashMap<u64, Sock> = HashMap::new();
    // Any process of the namespace shows its tables; the first may have exited.
    for pid in pids {
        let mut any = false;
        for (file, proto) in [
            ("tcp", IPPROTO_TCP),
            ("tcp6", IPPROTO_TCP),
            ("udp", IPPROTO_UDP),
            ("udp6", IPPROTO_UDP),
        ] {
            if let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/net/{file}")) {
                parse_proc_net(&text, proto, &mut socks);
                any = true;
            }
        }
        if any {
            break;
        }
    }
    let mut out = Vec::new();
    if socks.is_empty() {
        return out;
    }
    for &pid in pids {
        let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let mut process: Option<Option<ProcessInfo>> = None;
        for fd in fds.flatten() {
            let Ok(target) = std::fs::read_link(fd.path()) else {
                continue;
            };
            let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|s| s.strip_suffix(']'))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            // Lowest pid first: a socket shared with children stays the parent's.
            let Some(s) = socks.remove(&inode) else {
                continue;
            };
            let Some(p) = process.get_or_insert_with(|| info(pid)) else {
                continue;
            };
            out.push(SocketOwner {
                proto: s.proto,
                local: s.local,
                remote: s.remote,
                process: p.clone(),
            });
        }
        if socks.is_empty() {
            break;
        }
    }
    // Listeners first: they name every server of the namespace.
    out.sort_by_key(|o| (o.remote.is_some(), o.proto, o.local.1));
    out.truncate(MAX_SOCKETS_PER_NS);
    out
}

/// A listening socket's local address and owner.
type Listener = (IpAddr, Arc<ProcessInfo>);

/// A pod's sockets as lookups, shared by every flow of the pod.
#[derive(Debug, Default)]
pub struct ProcessTable {
    /// (protocol, port) → the listeners on that port: local address and owner.
    listeners: HashMap<(u8, u16), Vec<Listener>>,
    /// (protocol, local port, remote address, remote port) → owner.
    connected: HashMap<(u8, u16, IpAddr, u16), Arc<ProcessInfo>>,
}

impl ProcessTable {
    /// From a namespace's sockets and their owners.
    pub fn new(owners: &[SocketOwner]) -> ProcessTable {
        let mut by_pid: HashMap<u32, Arc<ProcessInfo>> = HashMap::new();
        let mut shared = |p: &ProcessInfo| {
            by_pid
                .entry(p.pid)
                .or_insert_with(|| Arc::new(p.clone()))
                .clone()
        };
        let mut t = ProcessTable::default();
        for o in owners {
            let p = shared(&o.process);
            match o.remote {
                None => t
                    .listeners
                    .entry((o.proto, o.local.1))
                    .or_default()
                    .push((o.local.0, p)),
                Some((ip, port)) => {
                    t.connected.insert((o.proto, o.local.1, ip, port), p);
                }
            }
        }
        t
    }

    /// The process serving `local` (the flow's server end, in this namespace) to
    /// `remote`: the connection's own socket when the scan saw it, else the listener.
    pub fn server(
        &self,
        proto: u8,
        local: Endpoint,
        remote: Endpoint,
    ) -> Option<&Arc<ProcessInfo>> {
        self.connected(proto, local, remote)
            .or_else(|| self.listener(proto, local))
    }

    /// The process of the flow's client end `local`: the connection's own socket when the
    /// scan saw it.
    pub fn client(
        &self,
        proto: u8,
        local: Endpoint,
        remote: Endpoint,
    ) -> Option<&Arc<ProcessInfo>> {
        self.connected(proto, local, remote)
    }

    fn connected(&self, proto: u8, local: Endpoint, remote: Endpoint) -> Option<&Arc<ProcessInfo>> {
        if self.connected.is_empty() {
            return None;
        }
        self.connected
            .get(&(proto, local.port, remote.addr, remote.port))
    }

    /// The listener `local` reaches: one bound to its address, else a wildcard one. Two
    /// different processes on it (`SO_REUSEPORT`) name none.
    fn listener(&self, proto: u8, local: Endpoint) -> Option<&Arc<ProcessInfo>> {
        let all = self.listeners.get(&(proto, local.port))?;
        let wildcard = |ip: &IpAddr| ip.is_unspecified() && (ip.is_ipv6() || local.addr.is_ipv4());
        let exact: Vec<&Arc<ProcessInfo>> = all
            .iter()
            .filter(|(ip, _)| *ip == local.addr)
            .map(|(_, p)| p)
            .collect();
        let hits = if exact.is_empty() {
            all.iter()
                .filter(|(ip, _)| wildcard(ip))
                .map(|(_, p)| p)
                .collect()
        } else {
            exact
        };
        let first = *hits.first()?;
        hits.iter().all(|p| p.pid == first.pid).then_some(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0
   1: 0100007F:D2F0 0100007F:1F90 01 00000000:00000000 00:00000000 00000000     0        0 23456 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D2F2 0100007F:1F90 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
   3: 0100007F:0050 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 34567 1 0000000000000000
";
    const TCP6: &str = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:1F40 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4001 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000201C90A:1F40 0000000000000000FFFF00000101C90A:B0A2 01 00000000:00000000 00:00000000 00000000     0        0 4002 1 0000000000000000 20 4 30 10 -1
   2: 000080FE00000000FF005452B1FF4E12:0035 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4003 1 0000000000000000 100 0 0 10 0
";
    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops
  100: 0201C90A:0035 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 5001 2 0000000000000000 0
  101: 0101C90A:9C40 0201C90A:0035 01 00000000:00000000 00:00000000 00000000     0        0 5002 2 0000000000000000 0
";

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn proc_net_tables_give_listeners_and_connections() {
        let mut m = HashMap::new();
        parse_proc_net(TCP, IPPROTO_TCP, &mut m);
        assert_eq!(
            m.len(),
            2,
            "TIME_WAIT (no inode) and a bound, closed socket are skipped"
        );
        assert_eq!(m[&12345].local, (ip("127.0.0.1"), 8080));
        assert_eq!(m[&12345].remote, None);
        assert_eq!(m[&23456].local, (ip("127.0.0.1"), 54000));
        assert_eq!(m[&23456].remote, Some((ip("127.0.0.1"), 8080)));
        parse_proc_net(TCP6, IPPROTO_TCP, &mut m);
        assert_eq!(m[&4001].local, (ip("::"), 8000));
        assert_eq!(
            (m[&4002].local, m[&4002].remote),
            ((ip("10.201.1.2"), 8000), Some((ip("10.201.1.1"), 45218))),
            "IPv4-mapped addresses are the IPv4 ones on the wire"
        );
        assert_eq!(m[&4003].local, (ip("fe80::5254:ff:124e:ffb1"), 53));
        parse_proc_net(UDP, IPPROTO_UDP, &mut m);
        assert_eq!(
            (m[&5001].proto, m[&5001].local, m[&5001].remote),
            (17, (ip("10.201.1.2"), 53), None)
        );
        assert_eq!(m[&5002].remote, Some((ip("10.201.1.2"), 53)));
    }

    fn proc(pid: u32, comm: &str) -> ProcessInfo {
        ProcessInfo {
            pid,
            comm: comm.into(),
            container_id: None,
        }
    }

    fn ep(a: &str, port: u16) -> Endpoint {
        Endpoint { addr: ip(a), port }
    }

    fn owner(
        proto: u8,
        local: (&str, u16),
        remote: Option<(&str, u16)>,
        p: &ProcessInfo,
    ) -> SocketOwner {
        SocketOwner {
            proto,
            local: (ip(local.0), local.1),
            remote: remote.map(|(a, port)| (ip(a), port)),
            process: p.clone(),
        }
    }

    /// nginx on :80 and a python server on :8000 in one namespace: each port names its
    /// own process; a client connection names its process only when the scan saw it.
    #[test]
    fn each_port_names_its_own_process() {
        let (nginx, python) = (proc(10, "nginx"), proc(20, "python3"));
        let t = ProcessTable::new(&[
            owner(6, ("0.0.0.0", 80), None, &nginx),
            owner(6, ("10.0.0.2", 8000), None, &python),
            owner(17, ("0.0.0.0", 53), None, &python),
            owner(6, ("10.0.0.2", 41000), Some(("10.0.0.9", 5432)), &python),
            owner(
                6,
                ("10.0.0.2", 80),
                Some(("10.0.0.1", 50001)),
                &proc(11, "nginx"),
            ),
        ]);
        let client = ep("10.0.0.1", 50000);
        let pid = |p: Option<&Arc<ProcessInfo>>| p.map(|p| p.pid);
        assert_eq!(pid(t.server(6, ep("10.0.0.2", 80), client)), Some(10));
        assert_eq!(
            pid(t.server(6, ep("10.0.0.2", 80), ep("10.0.0.1", 50001))),
            Some(11),
            "a connection the scan saw: the worker that accepted it"
        );
        assert_eq!(pid(t.server(6, ep("10.0.0.2", 8000), client)), Some(20));
        assert_eq!(pid(t.server(17, ep("10.0.0.2", 53), client)), Some(20));
        assert_eq!(
            pid(t.server(6, ep("10.0.0.2", 53), client)),
            None,
            "TCP is not UDP"
        );
        assert_eq!(
            pid(t.server(6, ep("10.0.0.3", 8000), client)),
            None,
            "bound to another address"
        );
        assert_eq!(
            pid(t.server(6, ep("10.0.0.2", 9999), client)),
            None,
            "nobody listens"
        );
        assert_eq!(
            pid(t.client(6, ep("10.0.0.2", 41000), ep("10.0.0.9", 5432))),
            Some(20)
        );
        assert_eq!(
            pid(t.client(6, ep("10.0.0.2", 41001), ep("10.0.0.9", 5432))),
            None,
            "a connection the scan did not see names no process"
        );
        // A lone process is no client's guess either.
        let t = ProcessTable::new(&[owner(6, ("0.0.0.0", 80), None, &nginx)]);
        assert_eq!(pid(t.client(6, ep("10.0.0.2", 1), ep("10.0.0.9", 2))), None);
    }

    #[test]
    fn a_port_shared_by_two_programs_names_neither() {
        let (a, b) = (proc(10, "envoy"), proc(20, "haproxy"));
        let t = ProcessTable::new(&[
            owner(6, ("0.0.0.0", 80), None, &a),
            owner(6, ("0.0.0.0", 80), None, &b),
            owner(6, ("::", 443), None, &a),
        ]);
        let c = ep("10.0.0.1", 1);
        assert!(t.server(6, ep("10.0.0.2", 80), c).is_none());
        assert_eq!(
            t.server(6, ep("10.0.0.2", 443), c).map(|p| p.pid),
            Some(10),
            "a dual-stack listener"
        );
    }

    /// The daemon's own sockets, found through /proc like a pod's.
    #[test]
    fn scan_finds_this_process_socket() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = std::process::id();
        let found = scan(&[me], |pid| Some(proc(pid, "self")));
        assert!(
            found.iter().any(|o| o.local == (ip("127.0.0.1"), port)
                && o.remote.is_none()
                && o.process.pid == me),
            "{found:?}"
        );
    }
}
