//! Least privilege for the daemon: before `podtap run` starts any thread, every capability
//! it will not need is dropped from the effective, permitted, inheritable and ambient sets
//! and from the bounding set, and `no_new_privs` is set, so nothing podtap runs later (it
//! runs nothing with data from traffic) and no code path it takes can regain them.
//!
//! The inheritable and ambient sets keep only those of the kept capabilities that were
//! ambient already (a non-root daemon started by systemd with `AmbientCapabilities=`
//! passes them to the `tc`/`ip`/`ethtool` it runs for the mirror); as root they end empty.
//!
//! Capabilities are per thread; dropping them first, on the only thread there is, makes
//! every thread the daemon starts afterwards (workers, exporter, attribution, control)
//! inherit the reduced sets. What stays is what the daemon needs for its whole life, not
//! only at start-up: interfaces come and go while it runs (a new pod's veth is captured,
//! mirrored and attributed as it appears) and its tc mirror and XDP programs are removed
//! at exit.
//!
//! | capability | kept when | why |
//! | --- | --- | --- |
//! | `CAP_NET_RAW` | always | AF_PACKET rings and AF_XDP sockets, also for interfaces that appear later; the health probes' ICMP echo (a raw socket where datagram ICMP sockets are not allowed) |
//! | `CAP_NET_ADMIN` | always | the tc mirror, XDP attach and detach, promiscuous mode; removing them at exit |
//! | `CAP_IPC_LOCK` | always | ring and UMEM memory is locked (RLIMIT_MEMLOCK does not apply with it) |
//! | `CAP_BPF`, `CAP_PERFMON` | `capture.mode` is `auto` or `xdp` | loading the XDP and mirror programs |
//! | `CAP_SYS_ADMIN` | `capture.mode` `auto`/`xdp` (mounting bpffs; BPF on kernels without `CAP_BPF`), or netns attribution | `setns(2)` into pod namespaces to list their addresses and sockets |
//! | `CAP_SYS_PTRACE`, `CAP_DAC_READ_SEARCH` | netns attribution | reading other processes' `/proc/<pid>/ns/net` and `/proc/<pid>/fd` |
//! | `CAP_NET_BIND_SERVICE` | `export.prometheus.listen` has a port below 1024 | binding `/metrics` there |
//! | `CAP_CHOWN` | `control.group` is set | giving the control socket to that group |
//!
//! Everything else (`CAP_DAC_OVERRIDE`, `CAP_SETUID`, `CAP_SYS_MODULE`, `CAP_KILL`, ...) is
//! dropped. Without `CAP_DAC_OVERRIDE` even a root daemon writes only where the file modes
//! let it: `output.file`'s directory and the control socket's must be root's (they are in
//! the systemd unit and the DaemonSet). `[privileges] keep` adds capabilities for setups this table does not foresee;
//! `drop = false` turns the whole step off (for debugging).

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use serde::Deserialize;

use crate::config::{CaptureMode, Config};

/// `[privileges]`: what the daemon keeps of its capabilities.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct PrivilegeConfig {
    /// Drop every capability the daemon does not need, before it starts (see the module
    /// docs for what is kept and why). Default true.
    pub drop: bool,
    /// Capabilities kept besides the needed ones, by name (`CAP_DAC_OVERRIDE` or
    /// `dac_override`). Default empty.
    pub keep: Vec<String>,
}

impl Default for PrivilegeConfig {
    fn default() -> Self {
        PrivilegeConfig {
            drop: true,
            keep: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "privileges.keep: unknown capability {0:?} (names as in capabilities(7), e.g. CAP_NET_RAW)"
    )]
    Unknown(String),
    #[error("cannot drop capabilities ({what}): {source}")]
    Caps {
        what: &'static str,
        source: caps::errors::CapsError,
    },
    #[error("cannot set no_new_privs: {0}")]
    NoNewPrivs(std::io::Error),
}

/// The capabilities the daemon keeps under `cfg`, as the module docs list them.
pub fn needed(cfg: &Config) -> Result<CapsHashSet, PrivilegeError> {
    let mut keep: CapsHashSet = [
        Capability::CAP_NET_RAW,
        Capability::CAP_NET_ADMIN,
        Capability::CAP_IPC_LOCK,
    ]
    .into_iter()
    .collect();
    if cfg.capture.mode != CaptureMode::Tpacket {
        keep.extend([
            Capability::CAP_BPF,
            Capability::CAP_PERFMON,
            Capability::CAP_SYS_ADMIN,
        ]);
    }
    if cfg.attribution.enabled && cfg.attribution.netns {
        keep.extend([
            Capability::CAP_SYS_ADMIN,
            Capability::CAP_SYS_PTRACE,
            Capability::CAP_DAC_READ_SEARCH,
        ]);
    }
    if cfg.export.prometheus_port().is_some_and(|port| port < 1024) {
        keep.insert(Capability::CAP_NET_BIND_SERVICE);
    }
    if cfg.control.enabled && !cfg.control.group.is_empty() {
        keep.insert(Capability::CAP_CHOWN);
    }
    for name in &cfg.privileges.keep {
        let canonical = caps::to_canonical(name);
        let cap =
            Capability::from_str(&canonical).map_err(|_| PrivilegeError::Unknown(name.clone()))?;
        keep.insert(cap);
    }
    Ok(keep)
}

/// What [`drop_unneeded`] did: the capabilities kept (those the process had of the
/// needed ones) and how many were dropped.
#[derive(Debug)]
pub struct Dropped {
    pub kept: Vec<Capability>,
    pub dropped: usize,
}

/// Drop every capability not [`needed`] from all sets of the calling thread, and set
/// `no_new_privs`. Call it before any other thread starts: threads inherit the sets of
/// the thread that creates them, and the others would keep theirs.
pub fn drop_unneeded(cfg: &Config) -> Result<Option<Dropped>, PrivilegeError> {
    if !cfg.privileges.drop {
        return Ok(None);
    }
    let keep = needed(cfg)?;
    let err = |what| move |source| PrivilegeError::Caps { what, source };
    let supported = caps::runtime::thread_all_supported();
    let permitted = caps::read(None, CapSet::Permitted).map_err(err("reading"))?;
    // The bounding set first: dropping from it needs CAP_SETPCAP, which goes next.
    if permitted.contains(&Capability::CAP_SETPCAP) {
        for cap in supported.iter().filter(|c| !keep.contains(c)) {
            caps::drop(None, CapSet::Bounding, *cap).map_err(err("bounding set"))?;
        }
    }
    let remaining: CapsHashSet = permitted.intersection(&keep).copied().collect();
    // The helpers podtap runs (`tc`, `ip`, `ethtool` for the mirror, with interface names
    // only) need CAP_NET_ADMIN: as root they get the bounding set; a non-root daemon
    // (systemd AmbientCapabilities=) passes them its ambient capabilities, so those of
    // the kept ones that were ambient stay ambient (and inheritable, which ambient needs).
    let ambient = caps::read(None, CapSet::Ambient).unwrap_or_default();
    let ambient: CapsHashSet = ambient.intersection(&remaining).copied().collect();
    caps::clear(None, CapSet::Ambient).map_err(err("ambient set"))?;
    caps::set(None, CapSet::Inheritable, &ambient).map_err(err("inheritable set"))?;
    for cap in &ambient {
        caps::raise(None, CapSet::Ambient, *cap).map_err(err("ambient set"))?;
    }
    caps::set(None, CapSet::Effective, &remaining).map_err(err("effective set"))?;
    caps::set(None, CapSet::Permitted, &remaining).map_err(err("permitted set"))?;
    // SAFETY: prctl(2) with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(PrivilegeError::NoNewPrivs(std::io::Error::last_os_error()));
    }
    let dropped = permitted.len() - remaining.len();
    let mut kept: Vec<Capability> = remaining.into_iter().collect();
    kept.sort_by_key(|c| c.index());
    Ok(Some(Dropped { kept, dropped }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_keeps_what_the_docs_list() {
        let cfg = Config::default();
        let mut got: Vec<String> = needed(&cfg)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "CAP_BPF",
                "CAP_DAC_READ_SEARCH",
                "CAP_IPC_LOCK",
                "CAP_NET_ADMIN",
                "CAP_NET_RAW",
                "CAP_PERFMON",
                "CAP_SYS_ADMIN",
                "CAP_SYS_PTRACE",
            ]
        );
    }

    #[test]
    fn tpacket_without_netns_keeps_three() {
        let mut cfg = Config::default();
        cfg.capture.mode = CaptureMode::Tpacket;
        cfg.attribution.netns = false;
        cfg.privileges.keep = vec!["dac_override".into()];
        let mut got: Vec<String> = needed(&cfg)
            .unwrap()
            .iter()
            .map(|c| c.to_string())
            .collect();
        got.sort();
        assert_eq!(
            got,
            [
                "CAP_DAC_OVERRIDE",
                "CAP_IPC_LOCK",
                "CAP_NET_ADMIN",
                "CAP_NET_RAW"
            ]
        );
    }

    #[test]
    fn an_unknown_name_is_named() {
        let mut cfg = Config::default();
        cfg.privileges.keep = vec!["CAP_FLY".into()];
        let e = needed(&cfg).unwrap_err().to_string();
        assert!(
            e.contains("privileges.keep") && e.contains("CAP_FLY"),
            "{e}"
        );
    }
}
