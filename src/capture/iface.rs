//! Which interfaces podtap captures on, and noticing when they come and go.
//!
//! Interfaces are chosen by name with regular expressions (`veth.*|cali.*|lxc.*`), minus
//! exclusions. A netlink socket subscribed to link notifications (RTMGRP_LINK) reports pod
//! veths created or deleted while podtap runs, so capture follows pod churn within a poll
//! interval without restarting workers.

use regex::Regex;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// A network interface of this host (or of the namespace podtap runs in).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
}

/// Name patterns: an interface is selected when it matches an include and no exclude.
#[derive(Clone, Debug)]
pub struct Selector {
    include: Vec<Regex>,
    exclude: Vec<Regex>,
}

impl Selector {
    /// Patterns are anchored: `veth.*` matches `veth12ab` but not `myveth`.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Selector, regex::Error> {
        let anchored = |p: &String| Regex::new(&format!("^(?:{p})$"));
        Ok(Selector {
            include: include.iter().map(anchored).collect::<Result<_, _>>()?,
            exclude: exclude.iter().map(anchored).collect::<Result<_, _>>()?,
        })
    }

    pub fn matches(&self, name: &str) -> bool {
        self.include.iter().any(|r| r.is_match(name))
            && !self.exclude.iter().any(|r| r.is_match(name))
    }

    /// The selected interfaces among those that exist now.
    pub fn select(&self, all: &[Iface]) -> Vec<Iface> {
        all.iter()
            .filter(|i| self.matches(&i.name))
            .cloned()
            .collect()
    }
}

/// All interfaces, from sysfs (of the network namespace sysfs was mounted in).
pub fn list() -> Vec<Iface> {
    let Ok(dir) = std::fs::read_dir("/sys/class/net") else {
        return Vec::new();
    };
    let mut v: Vec<Iface> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let idx = std::fs::read_to_string(e.path().join("ifindex"))
                .ok()?
                .trim()
                .parse()
                .ok()?;
            Some(Iface { name, ifindex: idx })
        })
        .collect();
    v.sort_by_key(|i| i.ifindex);
    v
}

/// All interfaces of the current network namespace, from the kernel by index and name
/// (`if_nameindex(3)`): unlike sysfs this follows the calling thread's namespace.
pub fn list_current_netns() -> Vec<Iface> {
    let mut v = Vec::new();
    // SAFETY: if_nameindex returns an array terminated by a zero entry, freed below.
    unsafe {
        let head = libc::if_nameindex();
        if head.is_null() {
            return v;
        }
        let mut p = head;
        while (*p).if_index != 0 && !(*p).if_name.is_null() {
            let name = std::ffi::CStr::from_ptr((*p).if_name)
                .to_string_lossy()
                .into_owned();
            v.push(Iface {
                name,
                ifindex: (*p).if_index,
            });
            p = p.add(1);
        }
        libc::if_freenameindex(head);
    }
    v
}

/// A link appeared or disappeared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkEvent {
    Added(Iface),
    Removed(Iface),
}

/// Link notifications from rtnetlink, read without blocking.
pub struct LinkWatcher {
    fd: OwnedFd,
    buf: Vec<u8>,
}

const RTMGRP_LINK: u32 = 1;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const IFLA_IFNAME: u16 = 3;
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

impl LinkWatcher {
    /// Subscribe to link notifications of the calling thread's network namespace.
    pub fn new() -> io::Result<LinkWatcher> {
        // SAFETY: socket(2) and bind(2) with a zeroed, filled-in sockaddr_nl we own.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                libc::NETLINK_ROUTE,
            );
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            let fd = OwnedFd::from_raw_fd(fd);
            let mut sa: libc::sockaddr_nl = std::mem::zeroed();
            sa.nl_family = libc::AF_NETLINK as u16;
            sa.nl_groups = RTMGRP_LINK;
            let r = libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            );
            if r < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(LinkWatcher {
                fd,
                buf: vec![0; 64 * 1024],
            })
        }
    }

    /// Wait up to `timeout_ms` for notifications and return them (possibly none).
    pub fn poll(&mut self, timeout_ms: i32) -> io::Result<Vec<LinkEvent>> {
        let mut events = Vec::new();
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: poll(2) on one pollfd we own.
        let r = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if r <= 0 {
            return if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(events)
            };
        }
        loop {
            // SAFETY: recv(2) into our buffer with its length.
            let n = unsafe {
                libc::recv(
                    self.fd.as_raw_fd(),
                    self.buf.as_mut_ptr().cast(),
                    self.buf.len(),
                    0,
                )
            };
            if n < 0 {
                let e = io::Error::last_os_error();
                // ENOBUFS means notifications were lost: the caller re-lists interfaces.
                return if e.kind() == io::ErrorKind::WouldBlock {
                    Ok(events)
                } else {
                    Err(e)
                };
            }
            parse_messages(&self.buf[..n as usize], &mut events);
        }
    }
}

/// Parse a buffer of netlink messages into link events (malformed messages are skipped).
fn parse_messages(mut b: &[u8], out: &mut Vec<LinkEvent>) {
    while b.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let kind = u16::from_ne_bytes([b[4], b[5]]);
        if len < NLMSG_HDRLEN || len > b.len() {
            return;
        }
        let msg = &b[NLMSG_HDRLEN..len];
        if (kind == RTM_NEWLINK || kind == RTM_DELLINK) && msg.len() >= IFINFOMSG_LEN {
            let ifindex = i32::from_ne_bytes([msg[4], msg[5], msg[6], msg[7]]) as u32;
            if let Some(name) = ifname(&msg[IFINFOMSG_LEN..]) {
                let iface = Iface { name, ifindex };
                out.push(if kind == RTM_NEWLINK {
                    LinkEvent::Added(iface)
                } else {
                    LinkEvent::Removed(iface)
                });
            }
        }
        let aligned = (len + 3) & !3;
        b = b.get(aligned..).unwrap_or(&[]);
    }
}

/// The IFLA_IFNAME attribute among rtattrs.
fn ifname(mut attrs: &[u8]) -> Option<String> {
    while attrs.len() >= 4 {
        let len = u16::from_ne_bytes([attrs[0], attrs[1]]) as usize;
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]);
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == IFLA_IFNAME {
            let v = &attrs[4..len];
            let end = v.iter().position(|&c| c == 0).unwrap_or(v.len());
            return Some(String::from_utf8_lossy(&v[..end]).into_owned());
        }
        attrs = attrs.get((len + 3) & !3..).unwrap_or(&[]);
    }
    None
}

/// Run `f` on a new thread that has entered the network namespace `/var/run/netns/<name>`,
/// and return its result. Tests and the node-local discovery use it.
pub fn in_netns<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> io::Result<T> {
    let path = format!("/var/run/netns/{name}");
    let file = std::fs::File::open(&path)?;
    std::thread::spawn(move || {
        // SAFETY: setns(2) on a namespace file we opened; it changes only this thread.
        if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(f())
    })
    .join()
    .map_err(|_| io::Error::other("netns thread panicked"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_is_anchored_with_excludes() {
        let s =
            Selector::new(&["veth.*".into(), "cali.*".into()], &["veth-skip.*".into()]).unwrap();
        assert!(s.matches("veth1a2b"));
        assert!(s.matches("cali0"));
        assert!(!s.matches("myveth0"));
        assert!(!s.matches("veth-skip1"));
        assert!(Selector::new(&["(".into()], &[]).is_err());
    }

    #[test]
    fn parses_newlink_and_dellink() {
        let msg = |kind: u16, idx: i32, name: &[u8]| {
            let attr_len = 4 + name.len() + 1;
            let total = NLMSG_HDRLEN + IFINFOMSG_LEN + ((attr_len + 3) & !3);
            let mut v = vec![0u8; total];
            v[0..4].copy_from_slice(&(total as u32).to_ne_bytes());
            v[4..6].copy_from_slice(&kind.to_ne_bytes());
            v[NLMSG_HDRLEN + 4..NLMSG_HDRLEN + 8].copy_from_slice(&idx.to_ne_bytes());
            let a = NLMSG_HDRLEN + IFINFOMSG_LEN;
            v[a..a + 2].copy_from_slice(&(attr_len as u16).to_ne_bytes());
            v[a + 2..a + 4].copy_from_slice(&IFLA_IFNAME.to_ne_bytes());
            v[a + 4..a + 4 + name.len()].copy_from_slice(name);
            v
        };
        let mut buf = msg(RTM_NEWLINK, 7, b"veth7");
        buf.extend(msg(RTM_DELLINK, 5, b"veth5"));
        buf.extend_from_slice(&[1, 2, 3]); // trailing garbage is ignored
        let mut ev = Vec::new();
        parse_messages(&buf, &mut ev);
        assert_eq!(
            ev,
            [
                LinkEvent::Added(Iface {
                    name: "veth7".into(),
                    ifindex: 7
                }),
                LinkEvent::Removed(Iface {
                    name: "veth5".into(),
                    ifindex: 5
                })
            ]
        );
    }

    /// A real veth pair created and deleted in a namespace of this test is reported.
    #[test]
    fn watcher_sees_veth_churn_in_a_namespace() {
        if unsafe { libc::geteuid() } != 0 {
            panic!("this test needs root (network namespaces)");
        }
        let ns = format!("ptiface{}", std::process::id());
        let ip = |args: &[&str]| {
            std::process::Command::new("ip")
                .args(args)
                .status()
                .map(|s| s.success())
                .unwrap_or(false)
        };
        assert!(ip(&["netns", "add", &ns]));
        struct Cleanup(String);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del", &self.0])
                    .status();
            }
        }
        let _cleanup = Cleanup(ns.clone());
        let ns2 = ns.clone();
        let events = in_netns(&ns, move || {
            let mut w = LinkWatcher::new().unwrap();
            let ip = |args: &[&str]| {
                std::process::Command::new("ip")
                    .args(["-n", &ns2])
                    .args(args)
                    .status()
                    .unwrap()
            };
            ip(&[
                "link", "add", "vethw0", "type", "veth", "peer", "name", "vethw1",
            ]);
            let mut seen = Vec::new();
            for _ in 0..20 {
                seen.extend(w.poll(100).unwrap());
                if seen
                    .iter()
                    .any(|e| matches!(e, LinkEvent::Added(i) if i.name == "vethw1"))
                {
                    break;
                }
            }
            let before = list_current_netns();
            ip(&["link", "del", "vethw0"]);
            for _ in 0..20 {
                seen.extend(w.poll(100).unwrap());
                if seen
                    .iter()
                    .any(|e| matches!(e, LinkEvent::Removed(i) if i.name == "vethw0"))
                {
                    break;
                }
            }
            (seen, before, list_current_netns())
        })
        .unwrap();
        let (seen, before, after) = events;
        assert!(
            seen.iter()
                .any(|e| matches!(e, LinkEvent::Added(i) if i.name == "vethw0")),
            "{seen:?}"
        );
        assert!(
            seen.iter()
                .any(|e| matches!(e, LinkEvent::Removed(i) if i.name == "vethw0")),
            "{seen:?}"
        );
        assert!(before.iter().any(|i| i.name == "vethw1"));
        assert!(!after.iter().any(|i| i.name.starts_with("vethw")));
    }
}
