//! `podtap sniff` and the control socket, end to end: two pods on a bridge, nginx in one,
//! curl in the other, the daemon capturing their veths. What `podtap sniff` writes must
//! open in tshark with exactly the frames and bytes tcpdump saw on the same veth over the
//! same window: tcpdump starts first and stops last, sniff runs inside its window, and
//! all the pods' traffic (a fixed number of requests) happens inside both. The pods are
//! kept quiet otherwise: no IPv6 (no router solicitations or neighbour discovery at
//! random times) and permanent ARP entries (no ARP).
//!
//! The control socket: status as root; a client that is not root is turned away both by
//! the socket's permissions and, when those are opened up, by the daemon's own check of
//! the peer's uid; garbage, oversized and late requests get error replies and the daemon
//! keeps answering.

mod common;

use common::*;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Requests per window: each a new connection (handshake, request, response, close).
const REQUESTS: usize = 20;

/// One node at a time: the tests compare exact frame counts, and the two cores are shared.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Node {
    _nginx: Proc,
    client: Pod,
    server: Pod,
    bridge: Bridge,
    dir: tempfile::TempDir,
    /// Root's, for the socket: nginx gives `dir` to its worker user, and the daemon keeps
    /// no CAP_DAC_OVERRIDE to create the socket's directory in someone else's.
    _ctl: tempfile::TempDir,
    cfg: PathBuf,
    sock: PathBuf,
}

fn sysctl(ns: Option<&Netns>, key: &str) {
    let mut c = match ns {
        Some(ns) => ns.cmd("sysctl"),
        None => Command::new("sysctl"),
    };
    sh(c.args(["-q", "-w", &format!("{key}=1")]));
}

fn mac(ns: &Netns) -> String {
    sh(ns.cmd("cat").arg("/sys/class/net/eth0/address"))
        .trim()
        .to_string()
}

fn node() -> Node {
    node_with("")
}

/// A node whose config ends with `extra` lines of `[control]`.
fn node_with(extra: &str) -> Node {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    // Readable by `nobody` (the non-root client reads the config).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), vec![b'x'; 3000]).unwrap();
    std::fs::write(root.join("big.bin"), vec![b'y'; 4 << 20]).unwrap();
    let mut bridge = Bridge::new();
    let server = bridge.pod();
    let client = bridge.pod();
    sysctl(None, &format!("net.ipv6.conf.{}.disable_ipv6", bridge.name));
    for p in [&server, &client] {
        sysctl(Some(&p.ns), "net.ipv6.conf.all.disable_ipv6");
        sysctl(None, &format!("net.ipv6.conf.{}.disable_ipv6", p.host_if));
    }
    for (p, peer) in [(&server, &client), (&client, &server)] {
        sh(p.ns.cmd("ip").args([
            "neigh",
            "replace",
            &peer.ip,
            "lladdr",
            &mac(&peer.ns),
            "dev",
            "eth0",
            "nud",
            "permanent",
        ]));
    }
    let nginx = nginx(&server.ns, &server.ip, dir.path(), &root);
    // New links announce themselves for a second or two (the bridge's IGMP reports of
    // 224.0.0.106, repeated at random times): the windows start once the veth is quiet.
    settle(&server.host_if);
    let ctl = tempfile::tempdir().unwrap();
    std::fs::set_permissions(ctl.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let sock = ctl.path().join("run").join("control.sock");
    let cfg = dir.path().join("podtap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[control]\nsocket = \"{}\"\nmax_request_bytes = 4096\nrequest_timeout_ms = 500\n{extra}",
            sock.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    Node {
        _nginx: nginx,
        client,
        server,
        bridge,
        dir,
        _ctl: ctl,
        cfg,
        sock,
    }
}

impl Node {
    fn daemon(&self) -> Daemon {
        Daemon::on_interfaces(self.dir.path(), &self.cfg, &self.bridge.prefix)
    }

    /// `REQUESTS` GETs from the client pod, one connection each.
    fn traffic(&self) {
        let url = format!("http://{}/", self.server.ip);
        for _ in 0..REQUESTS {
            sh(self
                .client
                .ns
                .cmd("curl")
                .args(["-s", "-o", "/dev/null", "--max-time", "5", &url]));
        }
    }

    fn podtap(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_podtap"));
        c.arg("--config").arg(&self.cfg).env("RUST_BACKTRACE", "0");
        c
    }

    /// `podtap sniff` of the server pod with `extra` arguments; returns once it captures,
    /// with its stderr lines so far collected as they come.
    fn sniff(&self, extra: &[&str], stdout: Stdio) -> Sniff {
        self.sniff_of(&["--pod", &self.server.ns.name], extra, stdout)
    }

    /// `podtap sniff` of `target` (`--pod ...`, `-l ...`, `--interface ...`).
    fn sniff_of(&self, target: &[&str], extra: &[&str], stdout: Stdio) -> Sniff {
        let mut child = self
            .podtap()
            .arg("sniff")
            .args(target)
            .args(extra)
            .stdout(stdout)
            .stderr(Stdio::piped())
            .spawn()
            .expect("run podtap sniff");
        let stderr = child.stderr.take().unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(l);
            }
        });
        let s = Sniff { child, log };
        s.wait_line("capturing", Duration::from_secs(30));
        s
    }
}

struct Sniff {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Sniff {
    fn wait_line(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "podtap sniff never said {needle:?}:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Ctrl-C, then its exit status and stderr.
    fn interrupt(mut self) -> String {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.wait()
    }

    fn wait(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                // The stderr reader finishes with the process.
                std::thread::sleep(Duration::from_millis(100));
                let log = self.log.lock().unwrap().join("\n");
                assert!(st.success(), "podtap sniff failed ({st}):\n{log}");
                return log;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("podtap sniff did not end");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sniff {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `iface` carries nothing for a second and a half (at most 15 s).
fn settle(iface: &str) {
    for _ in 0..10 {
        let st = Command::new("timeout")
            .args(["1.5", "tcpdump", "-i", iface, "-c", "1", "-w", "/dev/null"])
            .stderr(Stdio::null())
            .status()
            .unwrap();
        // 124: timed out with nothing captured.
        if st.code() == Some(124) {
            return;
        }
    }
    panic!("{iface} never went quiet");
}

/// tcpdump on a root-namespace interface, with a filter; returns once it listens.
fn tcpdump_host(iface: &str, filter: &str, file: &Path) -> Proc {
    let mut cmd = Command::new("tcpdump");
    cmd.args([
        "-i",
        iface,
        "-s",
        "0",
        "-U",
        "--immediate-mode",
        "-B",
        "65536",
        "-w",
    ])
    .arg(file);
    if !filter.is_empty() {
        cmd.arg(filter);
    }
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("listening on") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("tcpdump did not start listening");
    Proc(Some(child))
}

/// Frames and their total length (on the wire) in a capture, by tshark, with a display
/// filter.
fn frames(file: &Path, display: &str) -> (usize, u64) {
    let out = sh(Command::new("tshark").args(["-n", "-r"]).arg(file).args([
        "-Y",
        display,
        "-T",
        "fields",
        "-e",
        "frame.len",
    ]));
    lens(&out)
}

fn lens(out: &str) -> (usize, u64) {
    let v: Vec<u64> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    (v.len(), v.iter().sum())
}

/// The same frames (count and bytes) in both captures; when not, both listed.
fn same_frames(got: &Path, want: &Path) {
    let list = |f: &Path| {
        sh(Command::new("tshark").args(["-n", "-r"]).arg(f).args([
            "-T",
            "fields",
            "-e",
            "frame.time_epoch",
            "-e",
            "frame.len",
            "-e",
            "_ws.col.Info",
        ]))
    };
    let (g, w) = (frames(got, "frame"), frames(want, "frame"));
    assert!(
        g == w,
        "sniff {g:?}, tcpdump {w:?}\nsniff:\n{}\ntcpdump:\n{}",
        list(got),
        list(want)
    );
}

/// Both directions at the server's veth: what the server sent and what it received.
fn directions(file: &Path, server_ip: &str) -> [(usize, u64); 2] {
    [
        frames(file, &format!("ip.src == {server_ip}")),
        frames(file, &format!("ip.dst == {server_ip}")),
    ]
}

/// Run one window: tcpdump (with `tcpdump_filter`) on the server's veth, `sniff` inside
/// it, the requests inside both; returns the two captures' files after both stopped.
fn window(
    n: &Node,
    name: &str,
    tcpdump_filter: &str,
    sniff_args: &[&str],
) -> (PathBuf, PathBuf, String) {
    let pod = ["--pod", n.server.ns.name.as_str()];
    window_of(n, &pod, name, tcpdump_filter, sniff_args)
}

/// [`window`] for a sniff of `target`.
fn window_of(
    n: &Node,
    target: &[&str],
    name: &str,
    tcpdump_filter: &str,
    sniff_args: &[&str],
) -> (PathBuf, PathBuf, String) {
    let want = n.dir.path().join(format!("{name}.tcpdump.pcap"));
    let got = n.dir.path().join(format!("{name}.pcapng"));
    let mut td = tcpdump_host(&n.server.host_if, tcpdump_filter, &want);
    let mut args = sniff_args.to_vec();
    let out = got.to_str().unwrap().to_string();
    args.extend(["-w", &out]);
    let s = n.sniff_of(target, &args, Stdio::null());
    std::thread::sleep(Duration::from_millis(300));
    n.traffic();
    // Frames reach the sniff through the workers' rings (retired every 10 ms) and its
    // queue: give them a moment after the last one.
    std::thread::sleep(Duration::from_millis(1500));
    let log = s.interrupt();
    std::thread::sleep(Duration::from_millis(200));
    td.interrupt();
    (want, got, log)
}

#[test]
fn sniff_of_a_pod_equals_tcpdump_on_its_veth_both_directions() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon();
    let (want, got, log) = window(&n, "all", "", &[]);
    assert!(log.contains("from the daemon's workers"), "{log}");
    assert!(
        log.contains("ended: interrupted; 0 frames dropped"),
        "{log}"
    );
    let ip = &n.server.ip;
    let [sent, received] = directions(&want, ip);
    // Every request a connection: at least a handshake, request, response and close.
    assert!(
        sent.0 >= 4 * REQUESTS && received.0 >= 4 * REQUESTS,
        "{sent:?} {received:?}"
    );
    assert_eq!(directions(&got, ip), [sent, received], "per direction");
    same_frames(&got, &want);
    // The interface block names the pod and its veth; the section comment the pod, node
    // and filter.
    let described = sh(Command::new("tshark").args(["-n", "-r"]).arg(&got).args([
        "-c",
        "1",
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.interface_description",
    ]));
    assert!(described.contains(&n.server.host_if), "{described}");
    assert!(
        described.contains(&format!("pod {}", n.server.ns.name)),
        "{described}"
    );
    let info = sh(Command::new("capinfos").arg(&got));
    assert!(
        info.contains(&format!("pod {}", n.server.ns.name)) && info.contains("filter: (none)"),
        "{info}"
    );
    // The daemon: status names the interfaces and the workers.
    let st = n.podtap().args(["status", "--json"]).output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let names: Vec<&str> = v["interfaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&n.server.host_if.as_str()), "{v}");
    assert_eq!(v["workers"].as_array().unwrap().len(), 2, "{v}");
    assert_eq!(v["sniffs_active"], 0, "{v}");
    d.stop_raw();
    assert!(!n.sock.exists(), "the socket is removed at exit");
}

#[test]
fn sniff_with_a_filter_and_to_standard_output() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let _d = n.daemon();
    // A filter: what tcpdump's own filter keeps.
    let filter = format!("tcp dst port 80 and host {}", n.client.ip);
    let (want, got, log) = window(&n, "filtered", &filter, &["--filter", &filter]);
    assert!(log.contains("ended: interrupted"), "{log}");
    let (count, _) = frames(&want, "frame");
    assert!(count >= 3 * REQUESTS, "{count}");
    same_frames(&got, &want);
    assert_eq!(
        frames(&got, "ip.src == {}".replace("{}", &n.server.ip).as_str()).0,
        0
    );
    let info = sh(Command::new("capinfos").arg(&got));
    assert!(info.contains(&format!("filter: {filter}")), "{info}");

    // `-w -` into tshark reading standard input.
    let want = n.dir.path().join("stdout.tcpdump.pcap");
    let mut td = tcpdump_host(&n.server.host_if, "", &want);
    let s = n.sniff(&["-w", "-"], Stdio::piped());
    let mut s = s;
    let pipe = s.child.stdout.take().unwrap();
    let tshark = Command::new("tshark")
        .args(["-n", "-r", "-", "-T", "fields", "-e", "frame.len"])
        .stdin(pipe)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    n.traffic();
    std::thread::sleep(Duration::from_millis(1500));
    s.interrupt();
    std::thread::sleep(Duration::from_millis(200));
    td.interrupt();
    let out = tshark.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        lens(&String::from_utf8_lossy(&out.stdout)),
        frames(&want, "frame")
    );
}

#[test]
fn sniff_ends_at_its_count_or_duration_and_without_a_daemon_captures_itself() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    // No daemon: its own capture, said on stderr, the same frames as tcpdump.
    let (want, got, log) = window(&n, "own", "", &[]);
    assert!(
        log.contains("no podtap daemon at") && log.contains("on its own"),
        "{log}"
    );
    same_frames(&got, &want);
    assert!(frames(&got, "frame").0 >= 8 * REQUESTS);

    // With the daemon: --count ends after exactly that many frames.
    let _d = n.daemon();
    let file = n.dir.path().join("count.pcapng");
    let mut s = n.sniff(
        &["--count", "7", "-w", file.to_str().unwrap()],
        Stdio::null(),
    );
    n.traffic();
    let log = s.wait();
    assert!(
        log.contains("7 frames") && log.contains("ended: count"),
        "{log}"
    );
    assert_eq!(frames(&file, "frame").0, 7);
    // --duration ends it on time, from the daemon, with a valid (here empty) capture.
    let t = Instant::now();
    let mut s = n.sniff(
        &["--duration", "1", "-w", file.to_str().unwrap()],
        Stdio::null(),
    );
    let log = s.wait();
    assert!(log.contains("ended: duration"), "{log}");
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(frames(&file, "frame").0, 0);
}

/// One raw request line (or bytes) to the socket, the reply line.
fn raw(sock: &Path, bytes: &[u8], then_wait: bool) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // The daemon may answer and close before all of an oversized request is written.
    let _ = s.write_all(bytes);
    if !then_wait {
        let _ = s.shutdown(std::net::Shutdown::Write);
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

#[test]
fn control_socket_refuses_non_root_and_survives_garbage() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&n.sock), 0o600);
    assert_eq!(mode(n.sock.parent().unwrap()), 0o750);
    let as_nobody = || {
        let out = Command::new("setpriv")
            .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_podtap"))
            .arg("--config")
            .arg(&n.cfg)
            .arg("status")
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // The file modes keep nobody out.
    let e = as_nobody();
    assert!(e.contains("permission denied"), "{e}");
    // With the modes opened up, the daemon's own check of the peer's uid does.
    std::fs::set_permissions(
        n.sock.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&n.sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let e = as_nobody();
    assert!(
        e.contains("refused: permission denied: uid 65534 is not root"),
        "{e}"
    );
    d.wait_log("client refused", Duration::from_secs(5));

    // Garbage, binary, unknown requests, oversized and unfinished ones: error replies.
    let cases: [(&[u8], bool, &str); 5] = [
        (b"garbage\n", false, "malformed request"),
        (b"\x00\xff\xfe\x01\n", false, "malformed request"),
        (b"{\"request\":\"reboot\"}\n", false, "malformed request"),
        (&[b'x'; 100_000], true, "longer than 4096 bytes"),
        (b"{\"request\":", true, "no whole request within 500 ms"),
    ];
    for (bytes, wait, want) in cases {
        let r = raw(&n.sock, bytes, wait);
        let v: serde_json::Value =
            serde_json::from_str(r.trim()).unwrap_or_else(|e| panic!("{r:?}: {e}"));
        assert_eq!(v["ok"], false, "{r}");
        assert!(v["error"].as_str().unwrap().contains(want), "{want}: {r}");
    }
    // A bad sniff request is refused with the reason.
    let r = raw(
        &n.sock,
        b"{\"request\":\"sniff\",\"pod\":\"no-such-pod\"}\n",
        false,
    );
    assert!(r.contains("no pod no-such-pod on this node"), "{r}");
    let r = raw(
        &n.sock,
        b"{\"request\":\"sniff\",\"interface\":\"lo\",\"filter\":\"port\"}\n",
        false,
    );
    assert!(r.contains("\"ok\":false") && r.contains("filter"), "{r}");
    // An interface the daemon does not capture (lo is not among the bridge's).
    let r = raw(
        &n.sock,
        b"{\"request\":\"sniff\",\"interface\":\"lo\"}\n",
        false,
    );
    assert!(
        r.contains("interface lo: lo not captured by the daemon"),
        "{r}"
    );
    // Still answering.
    let st = n.podtap().arg("status").output().unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(String::from_utf8_lossy(&st.stdout).contains(&n.server.host_if));
    assert!(d.proc.0.as_mut().unwrap().try_wait().unwrap().is_none());
    d.stop_raw();
    // No daemon: a clear error.
    let st = n.podtap().arg("status").output().unwrap();
    assert!(!st.status.success());
    let e = String::from_utf8_lossy(&st.stderr);
    assert!(
        e.contains(&format!(
            "no podtap daemon at {}: start one with",
            n.sock.display()
        )),
        "{e}"
    );
}

/// A tmpfs of `kib` KiB mounted at `dir`, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(dir: PathBuf, kib: u32) -> Tmpfs {
        std::fs::create_dir_all(&dir).unwrap();
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(&dir));
        Tmpfs(dir)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_or_the_size_limit_ends_the_file_cleanly() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let _d = n.daemon();
    // The size limit: the file stops short of it, whole, and says why.
    let file = n.dir.path().join("small.pcapng");
    let mut s = n.sniff(
        &["--max-size", "20000", "-w", file.to_str().unwrap()],
        Stdio::null(),
    );
    n.traffic();
    let log = s.wait();
    assert!(log.contains("ended: size"), "{log}");
    let len = std::fs::metadata(&file).unwrap().len();
    assert!(len <= 20000 && len > 10000, "{len}");
    let (count, _) = frames(&file, "frame");
    assert!(count > 10, "{count}");

    // A full disk: an error naming it, and a file tshark reads to its end without
    // complaint (it ends at the last whole block).
    let fs = Tmpfs::new(n.dir.path().join("full"), 48);
    let file = fs.0.join("full.pcapng");
    let mut child = n
        .podtap()
        .args(["sniff", "--pod", &n.server.ns.name, "-w"])
        .arg(&file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    n.traffic();
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "sniff did not stop at a full disk"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("No space left on device")
            && err.contains("ends cleanly at its last whole block"),
        "{err}"
    );
    let t = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(t.status.success(), "{}", String::from_utf8_lossy(&t.stderr));
    let complaint = String::from_utf8_lossy(&t.stderr).to_lowercase();
    assert!(
        !complaint.contains("cut short") && !complaint.contains("error"),
        "{complaint}"
    );
    assert!(String::from_utf8_lossy(&t.stdout).lines().count() > 10);
}

/// Mistakes get a clear error and an error exit (status 1, or 2 for usage), no capture.
#[test]
fn sniff_and_control_mistakes_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    let sock = dir.path().join("none.sock");
    let run = |toml: &str, args: &[&str]| {
        std::fs::write(&cfg, toml).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!err.contains("panicked"), "{err}");
        (out.status.code(), err)
    };
    let here = format!("[control]\nsocket = \"{}\"\n", sock.display());
    let out = dir.path().join("x.pcapng");
    let out = out.to_str().unwrap();
    let (code, err) = run(&here, &["sniff", "-w", out]);
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(
        &here,
        &["sniff", "--pod", "a", "--interface", "lo", "-w", out],
    );
    assert_eq!(code, Some(2), "{err}");
    let (code, err) = run(
        &here,
        &["sniff", "--interface", "lo", "--filter", "port", "-w", out],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("filter"), "{err}");
    let (code, err) = run(&here, &["sniff", "--interface", "no-such-if0", "-w", out]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no interface named \"no-such-if0\""), "{err}");
    let (code, err) = run(&format!("{here}max_sniffs = 0\n"), &["status"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("control.max_sniffs") && err.contains("c.toml"),
        "{err}"
    );
    let (code, err) = run(
        &format!("{here}group = \"no-such-group-pt\"\n"),
        &["run", "-i", "no-such-if0"],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("control.group: no group named \"no-such-group-pt\""),
        "{err}"
    );
    assert!(!sock.exists());
}

/// A reader that stops reading loses frames, counted: what it wrote plus what it was told
/// it lost is every frame tcpdump saw, and the daemon's own capture lost nothing.
#[test]
fn a_slow_reader_loses_frames_counted_and_capture_goes_on() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node_with("max_sniff_queue_frames = 64\n");
    let d = n.daemon();
    let want = n.dir.path().join("slow.tcpdump.pcap");
    let got = n.dir.path().join("slow.pcapng");
    let mut td = tcpdump_host(&n.server.host_if, "", &want);
    let s = n.sniff(&["-w", got.to_str().unwrap()], Stdio::null());
    // Status lists it.
    let st = n.podtap().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(
        v["sniffs"][0]["target"],
        format!("pod {}", n.server.ns.name),
        "{v}"
    );
    // Stopped: its socket fills, then the daemon's queue for it.
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGSTOP) };
    let url = format!("http://{}/big.bin", n.server.ip);
    for _ in 0..3 {
        sh(n.client
            .ns
            .cmd("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "20", &url]));
    }
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: as above.
    unsafe { libc::kill(s.child.id() as i32, libc::SIGCONT) };
    std::thread::sleep(Duration::from_millis(500));
    let log = s.interrupt();
    std::thread::sleep(Duration::from_millis(200));
    td.interrupt();
    let (total, _) = frames(&want, "frame");
    let (written, _) = frames(&got, "frame");
    let line = log
        .lines()
        .find(|l| l.contains("frames dropped (read too slowly)"))
        .unwrap_or_else(|| panic!("{log}"));
    let dropped: usize = line
        .split("; ")
        .find_map(|p| p.strip_suffix(" frames dropped (read too slowly)"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(dropped > 0 && written > 0, "{log}");
    assert_eq!(written + dropped, total, "{log}");
    let st = n.podtap().args(["status", "--json"]).output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["drops"]["kernel"], 0, "{v}");
    drop(d);
}

/// With `control.group`, its members may use the socket: mode 0660, that group's.
#[test]
fn a_configured_group_may_use_the_socket() {
    use std::os::unix::fs::MetadataExt;
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node_with("group = \"nogroup\"\n");
    let _d = n.daemon();
    let gid = |p: &Path| std::fs::metadata(p).unwrap().gid();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let nogroup: u32 = sh(Command::new("getent").args(["group", "nogroup"]))
        .split(':')
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((mode(&n.sock), gid(&n.sock)), (0o660, nogroup));
    let dir = n.sock.parent().unwrap();
    assert_eq!((mode(dir), gid(dir)), (0o750, nogroup));
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_podtap"))
        .arg("--config")
        .arg(&n.cfg)
        .arg("status")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains(&n.server.host_if));
}

/// A dead daemon's socket is replaced at start; a live one's is left alone (the second
/// daemon serves none and says so), and its exit does not remove the first one's.
#[test]
fn a_stale_socket_is_replaced_and_a_live_one_left_alone() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    std::fs::create_dir_all(n.sock.parent().unwrap()).unwrap();
    // Bound and closed: the file stays, nobody listens.
    drop(std::os::unix::net::UnixListener::bind(&n.sock).unwrap());
    assert!(n.sock.exists());
    let _first = n.daemon();
    let status = || n.podtap().args(["status", "--json"]).output().unwrap();
    let st = status();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let pid = |st: &std::process::Output| {
        serde_json::from_slice::<serde_json::Value>(&st.stdout).unwrap()["pid"].clone()
    };
    let first_pid = pid(&st);
    let dir = tempfile::tempdir().unwrap();
    let regex = format!("{}.*", n.bridge.prefix);
    let mut second = Daemon::start(
        dir.path(),
        &[
            "--config",
            n.cfg.to_str().unwrap(),
            "--mode",
            "tpacket",
            "-i",
            &regex,
            "--output",
            "none",
        ],
    );
    second.wait_log("another podtap daemon answers", Duration::from_secs(5));
    second.stop_raw();
    let st = status();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert_eq!(pid(&st), first_pid);
}

/// Pods by namespace and name, and by label selector, as a static map names them (what
/// Kubernetes would): the server pod is `shop/web` with labels app=web, tier=front.
#[test]
fn sniff_by_label_selector_and_by_namespaced_name() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let map = n.dir.path().join("map.toml");
    std::fs::write(
        &map,
        format!(
            "[[pod]]\nname = \"web\"\nnamespace = \"shop\"\nnetns = \"{}\"\n\
             labels = {{ app = \"web\", tier = \"front\" }}\n",
            n.server.ns.name
        ),
    )
    .unwrap();
    let mut cfg = std::fs::read_to_string(&n.cfg).unwrap();
    cfg.push_str(&format!(
        "[attribution]\nstatic_map = \"{}\"\n",
        map.display()
    ));
    std::fs::write(&n.cfg, cfg).unwrap();
    let _d = n.daemon();
    let selector = ["-l", "app=web,tier in (front, back),!canary"];
    let (want, got, log) = window_of(&n, &selector, "label", "", &[]);
    assert!(log.contains("capturing pods -l app=web"), "{log}");
    same_frames(&got, &want);
    let info = sh(Command::new("capinfos").arg(&got));
    assert!(info.contains("pods -l app=web"), "{info}");
    let described = sh(Command::new("tshark").args(["-n", "-r"]).arg(&got).args([
        "-c",
        "1",
        "-T",
        "fields",
        "-e",
        "frame.interface_description",
    ]));
    assert!(described.contains("pod shop/web"), "{described}");
    // By name and namespace, either way of writing it; a selector matching nobody and a
    // wrong namespace are refused with the reason.
    for target in [
        &["--pod", "web", "-n", "shop"][..],
        &["--pod", "shop/web"][..],
    ] {
        let file = n.dir.path().join("named.pcapng");
        let mut s = n.sniff_of(
            target,
            &["--count", "3", "-w", file.to_str().unwrap()],
            Stdio::null(),
        );
        n.traffic();
        let log = s.wait();
        assert!(
            log.contains("capturing pod shop/web") && log.contains("ended: count"),
            "{log}"
        );
    }
    for (target, why) in [
        (&["-l", "app=db"][..], "no pods -l app=db on this node"),
        (
            &["--pod", "web", "-n", "other"][..],
            "no pod other/web on this node",
        ),
    ] {
        let out = n
            .podtap()
            .arg("sniff")
            .args(target)
            .args(["-w", "/dev/null"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(why), "{err}");
    }
}
