//! podtap must never take a live interface's traffic away from the kernel. A "node"
//! namespace whose `eth1` (a veth made to look like a physical NIC through
//! `PODTAP_ASSUME_PHYSICAL`) carries real ping and curl traffic to nginx in a "peer"
//! namespace; podtap runs inside the node namespace on its embedded default config, which
//! captures `eth.*` in `auto` mode.
//!
//! - Defaults: the NIC is read with TPACKET_V3, no XDP program is attached to it, and
//!   every ping and every request goes through while podtap captures them all.
//! - Listed in `capture.direct`: the documented copy-port behaviour. `podtap check` fails
//!   loudly (the interface has an address and a route), `run` warns, AF_XDP takes every
//!   frame it receives (the node's pings go unanswered while podtap runs), and when podtap
//!   stops its XDP program is gone and the traffic flows again.

mod common;

use common::*;
use std::process::Command;
use std::time::Duration;

const NODE_IP: &str = "10.203.0.1";
const PEER_IP: &str = "10.203.0.2";
const REQUESTS: usize = 20;

struct Node {
    _dir: tempfile::TempDir,
    dir: std::path::PathBuf,
    _nginx: Proc,
    node: Netns,
    // Dropped after `node`: the namespace's processes die first, then the peer goes.
    _peer: Netns,
}

fn setup() -> Node {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), b"hello from the peer\n").unwrap();
    let node = Netns::new("ptnode");
    let peer = Netns::new("ptpeer");
    sh(Command::new("ip").args([
        "-n", &node.name, "link", "add", "eth1", "type", "veth", "peer", "name", "eth0", "netns",
        &peer.name,
    ]));
    for (ns, ip) in [(&node, NODE_IP), (&peer, PEER_IP)] {
        let ifc = if ns.name == node.name { "eth1" } else { "eth0" };
        sh(Command::new("ip").args([
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            ifc,
        ]));
        sh(Command::new("ip").args(["-n", &ns.name, "link", "set", ifc, "up"]));
    }
    let nginx = nginx(&peer, PEER_IP, dir.path(), &root);
    Node {
        dir: dir.path().to_path_buf(),
        _dir: dir,
        _nginx: nginx,
        node,
        _peer: peer,
    }
}

impl Node {
    /// podtap inside the node namespace, `eth1` looking physical.
    fn podtap(&self, args: &[&str]) -> Command {
        let mut c = self.node.cmd(env!("CARGO_BIN_EXE_podtap"));
        c.env("PODTAP_ASSUME_PHYSICAL", "eth1").env("NO_COLOR", "1");
        c.args(args);
        c
    }

    /// Echo replies received out of `count` pings to the peer.
    fn ping(&self, count: u32) -> u32 {
        let out = self
            .node
            .cmd("ping")
            .args([
                "-n",
                "-c",
                &count.to_string(),
                "-i",
                "0.05",
                "-W",
                "1",
                PEER_IP,
            ])
            .output()
            .expect("ping is installed");
        let text = String::from_utf8_lossy(&out.stdout);
        text.split(',')
            .find_map(|p| p.trim().strip_suffix(" received"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("ping output: {text}"))
    }

    /// Requests that got a 200, out of `n` separate curl runs with a 2 s deadline each.
    fn curl(&self, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                self.node
                    .http_status(&format!("http://{PEER_IP}/index.html"), 2)
                    == "200"
            })
            .count()
    }

    /// XDP program ids attached to the node's eth1.
    fn xdp_attached(&self) -> bool {
        let out =
            sh(Command::new("ip").args(["-n", &self.node.name, "-d", "link", "show", "eth1"]));
        out.contains("prog/xdp") || out.contains("xdp")
    }

    fn check(&self, extra: &[&str]) -> (bool, String) {
        let out = self
            .podtap(extra)
            .arg("check")
            .output()
            .expect("run podtap check");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    }
}

fn eth1_row(report: &str) -> &str {
    report
        .lines()
        .find(|l| l.starts_with("eth1 "))
        .unwrap_or_else(|| panic!("no eth1 row in:\n{report}"))
}

#[test]
fn a_nic_on_the_default_config_keeps_its_traffic_and_is_captured_with_tpacket() {
    let n = setup();
    assert_eq!(n.ping(5), 5, "the link works before podtap starts");

    let (_, report) = n.check(&[]);
    let row = eth1_row(&report);
    assert!(row.contains("physical"), "{row}");
    assert!(row.contains("tpacket") && row.contains("copies"), "{row}");
    assert!(!row.contains("TAKES ALL"), "{row}");
    assert!(
        report.contains("[ ok ] destructive binds      none"),
        "{report}"
    );

    let mut d = Daemon::start_cmd(n.podtap(&["run"]), &n.dir);
    let attach = d.wait_log("interface=eth1", Duration::from_secs(5));
    assert!(attach.contains("tpacket"), "{attach}");
    assert!(
        !n.xdp_attached(),
        "nothing may be attached to a NIC podtap does not bind"
    );

    // The node keeps its network the whole time podtap captures.
    assert_eq!(n.ping(20), 20, "pings lost while podtap ran");
    assert_eq!(
        n.curl(REQUESTS),
        REQUESTS,
        "requests failed while podtap ran"
    );
    assert_eq!(n.ping(20), 20, "pings lost while podtap ran");
    assert!(!n.xdp_attached());

    // And podtap saw every request, once (one observation point).
    let all = d.stop();
    let gets = records(&all, "transaction")
        .iter()
        .filter(|t| t["http.request.method"] == "GET" && t["http.response.status_code"] == 200)
        .count();
    assert_eq!(gets, REQUESTS, "every request reported once");
    assert!(!n.xdp_attached());
}

#[test]
fn a_listed_copy_port_is_taken_whole_with_a_loud_warning_and_given_back_at_exit() {
    let n = setup();
    let cfg = n.dir.join("direct.toml");
    std::fs::write(&cfg, "[capture]\ndirect = [\"eth1\"]\n").unwrap();
    let cfg_arg = cfg.to_str().unwrap();
    assert_eq!(n.ping(5), 5);

    let (ok, report) = n.check(&["--config", cfg_arg]);
    assert!(
        !ok,
        "check must fail: a copy port with an address\n{report}"
    );
    assert!(
        report.contains("[FAIL] destructive binds      WARNING"),
        "{report}"
    );
    assert!(
        report.contains(&format!("eth1 (addresses: {NODE_IP}; routes: 1)")),
        "{report}"
    );
    assert!(eth1_row(&report).contains("TAKES ALL"), "{report}");

    // Also: `--output none` writes no records (the systemd unit's way).
    let mut d = Daemon::start_cmd(
        n.podtap(&["--config", cfg_arg, "run", "--output", "none"]),
        &n.dir,
    );
    let warn = d.wait_log("capture.direct lists an interface", Duration::from_secs(5));
    assert!(warn.contains("WARN") && warn.contains(NODE_IP), "{warn}");
    assert!(
        n.xdp_attached(),
        "a copy port's queues are bound with AF_XDP"
    );
    // Copy-port behaviour: every frame arriving on eth1 goes to podtap, so the peer's
    // echo replies never reach the node's stack.
    assert_eq!(n.ping(5), 0, "a bound copy port's frames belong to podtap");
    assert!(d.stop().is_empty(), "--output none wrote records");
    let packets = d.log_value("podtap stopped", "packets").unwrap_or(0);
    assert!(
        packets >= 5,
        "podtap received the replies it took: {packets}"
    );

    assert!(
        !n.xdp_attached(),
        "the XDP program is removed when podtap stops"
    );
    assert_eq!(n.ping(5), 5, "the link works again after podtap stops");
}

/// A fallback says why, in the kernel's own words: a copy port whose driver refuses XDP
/// (here a veth whose MTU is too large for native XDP) is read with TPACKET_V3, and the
/// log names the kernel's reason that libbpf reported, not a bare errno.
#[test]
fn a_refused_xdp_attach_falls_back_and_names_the_kernels_reason() {
    let n = setup();
    for ns in [&n.node, &n._peer] {
        let ifc = if ns.name == n.node.name {
            "eth1"
        } else {
            "eth0"
        };
        sh(Command::new("ip").args(["-n", &ns.name, "link", "set", ifc, "mtu", "9000"]));
    }
    let cfg = n.dir.join("native.toml");
    std::fs::write(
        &cfg,
        "[capture]\ndirect = [\"eth1\"]\n[capture.xdp]\nattach_mode = \"native\"\n",
    )
    .unwrap();
    let mut d = Daemon::start_cmd(
        n.podtap(&["--config", cfg.to_str().unwrap(), "run", "--output", "none"]),
        &n.dir,
    );
    let line = d.wait_log("interface=eth1", Duration::from_secs(5));
    assert!(
        line.contains("engine=\"tpacket\"") || line.contains("engine=tpacket"),
        "{line}"
    );
    assert!(
        line.contains("MTU is too large"),
        "the kernel's reason: {line}"
    );
    assert!(!n.xdp_attached(), "nothing left attached after the refusal");
    assert_eq!(n.ping(5), 5, "the node keeps its traffic");
    d.stop();
}
