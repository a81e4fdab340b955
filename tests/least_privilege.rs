//! Least privilege: `podtap run` keeps only the capabilities its config needs
//! (src/privilege.rs documents which and why), in every thread, with no way back
//! (bounding set reduced, no_new_privs), and still captures and decodes everything.
//!
//! The daemon runs inside the server namespace of a veth pair, capturing the server's
//! veth; nginx serves there, curl asks from the client namespace. The truth about its
//! privileges is the kernel's: `/proc/<pid>/task/<tid>/status` of each of its threads.

mod common;

use common::*;
use std::time::Duration;

const REQUESTS: usize = 20;

/// Capability bit numbers (capabilities(7)).
const DAC_READ_SEARCH: u32 = 2;
const NET_ADMIN: u32 = 12;
const NET_RAW: u32 = 13;
const IPC_LOCK: u32 = 14;
const SYS_PTRACE: u32 = 19;
const SYS_ADMIN: u32 = 21;
const PERFMON: u32 = 38;
const BPF: u32 = 39;

fn mask(caps: &[u32]) -> u64 {
    caps.iter().fold(0, |m, c| m | 1 << c)
}

/// A `Cap*:` mask or `NoNewPrivs:` value from a status file.
fn field(status: &str, key: &str) -> u64 {
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{status}"));
    let v = line[key.len()..].trim();
    if key.starts_with("Cap") {
        u64::from_str_radix(v, 16).unwrap()
    } else {
        v.parse().unwrap()
    }
}

/// Every thread's status file of `pid`.
fn threads(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's threads")
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("status")).unwrap())
        .collect()
}

fn setup() -> WebPair {
    WebPair::new(&["index.html"])
}

trait Check {
    fn check(&self, config: &str, want: u64);
}

impl Check for WebPair {
    /// Check every thread's sets, then that the daemon still sees every request.
    fn check(&self, config: &str, want: u64) {
        let mut d = self.daemon(&self.config(config), &[]);
        let pid = d.proc.0.as_ref().unwrap().id();
        let tasks = threads(pid);
        assert!(tasks.len() > 1, "the workers run");
        for st in &tasks {
            assert_eq!(field(st, "CapEff:"), want, "effective:\n{st}");
            assert_eq!(field(st, "CapPrm:"), want, "permitted:\n{st}");
            assert_eq!(field(st, "CapBnd:"), want, "bounding:\n{st}");
            assert_eq!(field(st, "CapInh:"), 0, "inheritable:\n{st}");
            assert_eq!(field(st, "CapAmb:"), 0, "ambient:\n{st}");
            assert_eq!(field(st, "NoNewPrivs:"), 1, "no_new_privs:\n{st}");
        }
        d.wait_log("capabilities dropped", Duration::from_secs(1));
        assert_eq!(self.curl("index.html", REQUESTS), REQUESTS);
        std::thread::sleep(Duration::from_millis(300));
        let all = d.stop();
        let gets = records(&all, "transaction")
            .iter()
            .filter(|t| t["http.response.status_code"] == 200)
            .count();
        assert_eq!(
            gets, REQUESTS,
            "every request reported with the reduced privileges"
        );
    }
}

#[test]
fn default_config_keeps_capture_bpf_and_discovery_capabilities_only() {
    let s = setup();
    s.check(
        "",
        mask(&[
            DAC_READ_SEARCH,
            NET_ADMIN,
            NET_RAW,
            IPC_LOCK,
            SYS_PTRACE,
            SYS_ADMIN,
            PERFMON,
            BPF,
        ]),
    );
}

#[test]
fn tpacket_without_namespace_discovery_keeps_three() {
    let s = setup();
    s.check(
        "[capture]\nmode = \"tpacket\"\n[attribution]\nnetns = false\n",
        mask(&[NET_ADMIN, NET_RAW, IPC_LOCK]),
    );
}

#[test]
fn drop_false_keeps_everything_and_says_so() {
    let s = setup();
    let d = s.daemon(&s.config("[privileges]\ndrop = false\n"), &[]);
    let ours = field(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
        "CapEff:",
    );
    for st in threads(d.proc.0.as_ref().unwrap().id()) {
        assert_eq!(field(&st, "CapEff:"), ours, "{st}");
    }
    d.wait_log("every capability kept", Duration::from_secs(1));
}

#[test]
fn an_unknown_capability_name_is_a_config_error() {
    let s = setup();
    let cfg = s.dir.path().join("bad.toml");
    std::fs::write(&cfg, "[privileges]\nkeep = [\"CAP_FLY\"]\n").unwrap();
    let out = s
        .pair
        .server
        .cmd(env!("CARGO_BIN_EXE_podtap"))
        .args(["--config", cfg.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("privileges.keep") && err.contains("CAP_FLY"),
        "{err}"
    );
}
