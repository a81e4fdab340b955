//! Helpers for end-to-end tests: network namespaces joined by veth pairs, real servers and
//! clients started inside them, tcpdump captures, and running podtap.
//!
//! Everything a test creates is removed when its guard drops, also when the test fails,
//! and names carry the process id and a counter so tests can run in parallel and twice in
//! a row. Traffic stays inside the namespaces: the root namespace is not touched.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, at most 15 characters with `prefix` <= 4.
pub fn unique(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(
        unsafe { libc::geteuid() },
        0,
        "end-to-end tests need root (network namespaces, raw sockets)"
    );
}

pub fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Netns {
        let name = unique(prefix);
        sh(Command::new("ip").args(["netns", "add", &name]));
        sh(Command::new("ip").args(["-n", &name, "link", "set", "lo", "up"]));
        Netns { name }
    }

    /// A command run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// The HTTP status `curl` in this namespace gets from `url` within `max_secs`
    /// (`000` when it gets none).
    pub fn http_status(&self, url: &str, max_secs: u32) -> String {
        let out = self
            .cmd("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time"])
            .arg(max_secs.to_string())
            .arg(url)
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what still runs inside, then remove the namespace.
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", &self.name])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by one veth pair: a client at 10.200.0.2, a server at 10.200.0.1.
pub struct Pair {
    pub client: Netns,
    pub server: Netns,
    pub client_if: String,
    pub server_if: String,
}

pub const SERVER_IP: &str = "10.200.0.1";
pub const CLIENT_IP: &str = "10.200.0.2";

impl Pair {
    pub fn new() -> Pair {
        let client = Netns::new("ptc");
        let server = Netns::new("pts");
        let client_if = unique("vc");
        let server_if = unique("vs");
        sh(Command::new("ip").args([
            "link",
            "add",
            &server_if,
            "netns",
            &server.name,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &client.name,
        ]));
        for (ns, ifc, ip) in [
            (&server, &server_if, SERVER_IP),
            (&client, &client_if, CLIENT_IP),
        ] {
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
            // Segmentation offloads would hand tcpdump 64 KiB super-segments; with them off
            // the capture holds the MTU-sized segments a physical link carries.
            sh(ns
                .cmd("ethtool")
                .args(["-K", ifc, "tso", "off", "gso", "off", "gro", "off"]));
        }
        Pair {
            client,
            server,
            client_if,
            server_if,
        }
    }
}

/// A child process killed (SIGKILL) on drop unless stopped first.
pub struct Proc(pub Option<Child>);

impl Proc {
    /// Stop with SIGINT (tcpdump flushes its file) and wait.
    pub fn interrupt(&mut self) {
        if let Some(mut c) = self.0.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// tcpdump writing every frame of `iface` in `ns` to `file`; returns once it listens.
pub fn tcpdump(ns: &Netns, iface: &str, file: &Path) -> Proc {
    let mut child = ns
        .cmd("tcpdump")
        // Immediate mode: without it libpcap hands packets over per ring block (up to a
        // second late), and the frames of the last second are lost when tcpdump stops.
        // A 64 MiB ring (default 2 MiB): with tests running in parallel on two cores,
        // tcpdump is sometimes descheduled long enough for a small ring to overflow, and
        // a capture with holes is not the truth the tests compare against.
        .args([
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
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tcpdump is installed (make deps-test)");
    let stderr = child.stderr.take().expect("piped stderr");
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

/// nginx in `ns` on `ip:80` serving `root`, with `/fail` answering 500. A request with
/// `Accept-Encoding: gzip` gets a gzip-compressed, chunked response (the length is not
/// known before compressing). Returns once it accepts connections.
pub fn nginx(ns: &Netns, ip: &str, dir: &Path, root: &Path) -> Proc {
    nginx_on(ns, ip, dir, root, false)
}

/// The same nginx speaking HTTP/2 over cleartext (prior knowledge) instead of HTTP/1.1,
/// without compression.
#[allow(dead_code)] // not every test crate uses it
pub fn nginx_h2(ns: &Netns, ip: &str, dir: &Path, root: &Path) -> Proc {
    nginx_on(ns, ip, dir, root, true)
}

fn nginx_on(ns: &Netns, ip: &str, dir: &Path, root: &Path, h2: bool) -> Proc {
    let d = dir.display();
    // HTTP/1 clients that ask for gzip get chunked responses; the HTTP/2 tests check
    // body sizes as served, so that server does not compress.
    let (listen, gzip) = if h2 {
        (" http2", "")
    } else {
        (
            "",
            "gzip on; gzip_min_length 0; gzip_types text/plain application/octet-stream;",
        )
    };
    let conf = format!(
        "daemon off; worker_processes 1; pid {d}/nginx.pid; error_log {d}/error.log;
events {{ worker_connections 256; }}
http {{ access_log off; keepalive_requests 100000;
  {gzip}
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};
  server {{ listen {ip}:80{listen}; root {}; location / {{ }} location /fail {{ return 500; }} }} }}",
        root.display()
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let child = ns
        .cmd("nginx")
        .arg("-c")
        .arg(&path)
        .stderr(Stdio::null())
        .spawn()
        .expect("nginx is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = ns.cmd("curl");
        probe.args(["-s", "-o", "/dev/null", "--max-time", "1"]);
        if h2 {
            probe.arg("--http2-prior-knowledge");
        }
        let ok = probe.arg(format!("http://{ip}/")).status();
        if ok.map(|s| s.success()).unwrap_or(false) {
            break;
        }
        assert!(Instant::now() < deadline, "nginx did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(Some(child))
}

/// Python's `http.server` in `ns` on `ip:port` serving `root`; returns once it accepts
/// connections. One process (threads, no children): its pid is the child's.
pub fn python_http(ns: &Netns, ip: &str, port: u16, root: &Path) -> Proc {
    let child = ns
        .cmd("python3")
        .args([
            "-m",
            "http.server",
            &port.to_string(),
            "--bind",
            ip,
            "--directory",
        ])
        .arg(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is installed");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = ns
            .cmd("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "1"])
            .arg(format!("http://{ip}:{port}/"))
            .status();
        if ok.map(|s| s.success()).unwrap_or(false) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "python http.server did not come up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(Some(child))
}

/// The pids of the processes named `comm` in a namespace.
pub fn pids_named(ns: &Netns, comm: &str) -> Vec<u32> {
    let out = sh(Command::new("ip").args(["netns", "pids", &ns.name]));
    out.split_whitespace()
        .filter_map(|p| p.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == comm)
        })
        .collect()
}

/// `podtap replay FILE ARGS...`, which must succeed: its stdout and stderr.
pub fn replay_text(file: &Path, args: &[&str]) -> (String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("replay")
        .args(args)
        .arg(file)
        .output()
        .expect("run podtap");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "podtap replay failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// Run `podtap replay` on files and return its JSON records.
pub fn replay(files: &[&Path], extra: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("replay")
        .args(files)
        .args(extra)
        .output()
        .expect("run podtap");
    assert!(
        out.status.success(),
        "podtap replay failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

pub fn records<'a>(all: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    all.iter().filter(|r| r["podtap.record"] == kind).collect()
}

/// Frames tshark shows for a display filter.
pub fn tshark_count(file: &Path, filter: &str) -> usize {
    tshark_frames(file, filter).len()
}

/// Numbers of the frames tshark shows for a display filter.
pub fn tshark_frames(file: &Path, filter: &str) -> Vec<u64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.number"])
        .output()
        .expect("tshark is installed");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

pub fn pcaps_dir() -> PathBuf {
    std::env::var_os("PODTAP_PCAPS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps"))
}

/// `f` of every file, in the files' order, the work split over two threads: the corpus
/// tests run tshark and podtap on every capture, and the machine has two cores.
pub fn for_each_file<T: Send>(files: &[PathBuf], f: impl Fn(&Path) -> T + Sync) -> Vec<T> {
    let f = &f;
    std::thread::scope(|s| {
        let halves: Vec<_> = files
            .chunks(files.len().div_ceil(2).max(1))
            .map(|chunk| s.spawn(move || chunk.iter().map(|p| f(p)).collect::<Vec<_>>()))
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("corpus thread"))
            .collect()
    })
}

/// Every capture of the corpus, sorted.
pub fn captures() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "pcap" || x == "pcapng") {
                out.push(p);
            }
        }
    }
    let mut v = Vec::new();
    walk(&pcaps_dir(), &mut v);
    v.sort();
    assert!(
        !v.is_empty(),
        "no captures under {} (set PODTAP_PCAPS)",
        pcaps_dir().display()
    );
    v
}

/// A bridge in the root namespace that "pod" namespaces attach to by veth pairs, the way a
/// bridge CNI (cni0) wires pods: the host end of each veth is a bridge port. The bridge
/// has no address, so no traffic reaches the root namespace's own stack.
pub struct Bridge {
    pub name: String,
    /// Prefix of the host-side veth names of this bridge's pods (a capture regex
    /// `<prefix>.*` selects exactly them).
    pub prefix: String,
    next: u8,
    /// Third octet of this bridge's subnet, 10.201.<subnet>.0/24: bridges of one test
    /// process get their own, so pods of tests running side by side never share an
    /// address (node-local attribution maps an address to every namespace holding it).
    subnet: u8,
}

/// The next bridge's subnet (see [`Bridge::subnet`]).
static SUBNETS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// A "pod": a namespace with one veth into the root namespace.
pub struct Pod {
    pub ns: Netns,
    /// Host-side veth (in the root namespace) and its ifindex.
    pub host_if: String,
    pub ifindex: u32,
    pub ip: String,
}

impl Bridge {
    pub fn new() -> Bridge {
        let name = unique("ptbr");
        let prefix = format!("pv{}", &name[4..]);
        sh(Command::new("ip").args(["link", "add", &name, "type", "bridge"]));
        sh(Command::new("ip").args(["link", "set", &name, "up"]));
        Bridge {
            name,
            prefix,
            next: 1,
            subnet: SUBNETS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// A new pod on this bridge with address 10.201.<subnet>.<n>/24.
    pub fn pod(&mut self) -> Pod {
        let n = self.next;
        self.next += 1;
        let ns = Netns::new("ptp");
        let host_if = format!("{}p{n}", self.prefix);
        assert!(host_if.len() <= 15, "{host_if}");
        let ip = format!("10.201.{}.{n}", self.subnet);
        sh(Command::new("ip").args([
            "link", "add", &host_if, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]));
        sh(Command::new("ip").args(["link", "set", &host_if, "master", &self.name, "up"]));
        sh(Command::new("ip").args([
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{ip}/24"),
            "dev",
            "eth0",
        ]));
        sh(Command::new("ip").args(["-n", &ns.name, "link", "set", "eth0", "up"]));
        for (cmd_ns, ifc) in [(None, &host_if), (Some(&ns), &"eth0".to_string())] {
            let mut c = match cmd_ns {
                Some(ns) => ns.cmd("ethtool"),
                None => Command::new("ethtool"),
            };
            sh(c.args(["-K", ifc, "tso", "off", "gso", "off", "gro", "off"]));
        }
        let ifindex = std::fs::read_to_string(format!("/sys/class/net/{host_if}/ifindex"))
            .expect("ifindex")
            .trim()
            .parse()
            .expect("ifindex number");
        Pod {
            ns,
            host_if,
            ifindex,
            ip,
        }
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.name])
            .status();
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        // Deleting the host end removes the pair (the namespace goes with Netns's drop).
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .status();
    }
}

/// `podtap run` in the root namespace with its stdout (JSON lines) going to a file and its
/// log lines collected; returns once it says it is capturing.
pub struct Daemon {
    pub proc: Proc,
    pub out: PathBuf,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Daemon {
    pub fn start(dir: &Path, args: &[&str]) -> Daemon {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podtap"));
        cmd.arg("run").args(args);
        Daemon::start_cmd(cmd, dir)
    }

    /// `podtap run` with config `cfg` on the interfaces named `prefix*` (TPACKET, two
    /// workers, no record output), once its control socket is up.
    pub fn on_interfaces(dir: &Path, cfg: &Path, prefix: &str) -> Daemon {
        let regex = format!("{prefix}.*");
        let d = Daemon::start(
            dir,
            &[
                "--config",
                cfg.to_str().unwrap(),
                "--mode",
                "tpacket",
                "--workers",
                "2",
                "-i",
                &regex,
                "--output",
                "none",
            ],
        );
        d.wait_log("control socket", Duration::from_secs(5));
        d
    }

    /// `podtap run` as `cmd` prepared it (inside a namespace, with its own environment).
    pub fn start_cmd(mut cmd: Command, dir: &Path) -> Daemon {
        let out = dir.join("podtap.jsonl");
        let mut child = cmd
            .env("PODTAP_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(std::fs::File::create(&out).expect("output file"))
            .stderr(Stdio::piped())
            .spawn()
            .expect("run podtap");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line);
            }
        });
        let d = Daemon {
            proc: Proc(Some(child)),
            out,
            log,
        };
        d.wait_log("podtap: capturing", Duration::from_secs(20));
        d
    }

    /// Wait until a log line contains `needle`; panics with the log after `timeout`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(l) = self.log.lock().unwrap().iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            if Instant::now() > deadline {
                panic!(
                    "podtap never logged {needle:?}; log:\n{}",
                    self.log.lock().unwrap().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, wait for the exit, and return the JSON records it wrote.
    pub fn stop(&mut self) -> Vec<serde_json::Value> {
        self.stop_raw();
        std::fs::read_to_string(&self.out)
            .expect("podtap output")
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect()
    }

    /// SIGTERM and wait for a clean exit; its output stays in `out`.
    pub fn stop_raw(&mut self) {
        if let Some(mut c) = self.proc.0.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                if let Ok(Some(st)) = c.try_wait() {
                    if !st.success() {
                        // What it said last (a panic's message) tells why.
                        std::thread::sleep(Duration::from_millis(200));
                        let log = self.log.lock().unwrap();
                        let tail = log[log.len().saturating_sub(30)..].join("\n");
                        panic!("podtap exited with {st}; its last log lines:\n{tail}");
                    }
                    break;
                }
                if Instant::now() > deadline {
                    let _ = c.kill();
                    panic!("podtap did not stop on SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        self.wait_log("podtap stopped", Duration::from_secs(5));
    }

    /// A `key=value` number from the last log line containing `needle`.
    pub fn log_value(&self, needle: &str, key: &str) -> Option<u64> {
        let log = self.log.lock().unwrap();
        let line = log.iter().rev().find(|l| l.contains(needle))?;
        let at = line.find(&format!(" {key}="))? + key.len() + 2;
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    }
}

/// A veth pair with nginx serving `pages` at the server end (10.200.0.1), where podtap
/// runs capturing the server's veth; curl asks from the client namespace.
pub struct WebPair {
    pub pair: Pair,
    pub dir: tempfile::TempDir,
    _nginx: Proc,
}

impl WebPair {
    pub fn new(pages: &[&str]) -> WebPair {
        require_root();
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).unwrap();
        for p in pages {
            std::fs::write(root.join(p), format!("{p}\n")).unwrap();
        }
        let pair = Pair::new();
        let nginx = nginx(&pair.server, SERVER_IP, dir.path(), &root);
        WebPair {
            pair,
            dir,
            _nginx: nginx,
        }
    }

    /// `text` as the config file in the test's directory.
    pub fn config(&self, text: &str) -> PathBuf {
        let cfg = self.dir.path().join("podtap.toml");
        std::fs::write(&cfg, text).unwrap();
        cfg
    }

    /// `podtap --config CFG run ARGS --interface <server veth>` in the server namespace,
    /// once it has attached the veth.
    pub fn daemon(&self, cfg: &Path, args: &[&str]) -> Daemon {
        let mut cmd = self.pair.server.cmd(env!("CARGO_BIN_EXE_podtap"));
        cmd.args(["--config", cfg.to_str().unwrap(), "run"])
            .args(args)
            .args(["--interface", &self.pair.server_if]);
        let d = Daemon::start_cmd(cmd, self.dir.path());
        d.wait_log(
            &format!("interface={}", self.pair.server_if),
            Duration::from_secs(10),
        );
        d
    }

    /// 200 responses out of `n` curl runs for `page`, a connection each.
    pub fn curl(&self, page: &str, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                self.pair
                    .client
                    .cmd("curl")
                    .args(["-s", "-o", "/dev/null", "-w", "%{http_code}"])
                    .args(["--max-time", "2"])
                    .arg(format!("http://{SERVER_IP}/{page}"))
                    .output()
                    .is_ok_and(|o| o.stdout == b"200")
            })
            .count()
    }
}

/// Two "pods" on a bridge, named by a static pod map (`dir/map.toml`) as Kubernetes would
/// name them: `shop/web` (nginx on port 80 serving `files` from `dir/www`, `/fail`
/// answering 500) and `shop/buyer`.
#[allow(dead_code)] // not every test crate uses it
pub struct ShopPods {
    pub bridge: Bridge,
    pub server: Pod,
    pub client: Pod,
    pub dir: tempfile::TempDir,
    pub nginx: Proc,
}

#[allow(dead_code)]
impl ShopPods {
    pub fn new(files: &[(&str, &[u8])]) -> ShopPods {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir_all(&root).unwrap();
        for (name, body) in files {
            std::fs::write(root.join(name), body).unwrap();
        }
        let mut bridge = Bridge::new();
        let server = bridge.pod();
        let client = bridge.pod();
        let nginx = nginx(&server.ns, &server.ip, dir.path(), &root);
        std::fs::write(
            dir.path().join("map.toml"),
            format!(
                "[[pod]]\nname = \"web\"\nnamespace = \"shop\"\nnetns = \"{}\"\n\
                 [[pod]]\nname = \"buyer\"\nnamespace = \"shop\"\nnetns = \"{}\"\n",
                server.ns.name, client.ns.name
            ),
        )
        .unwrap();
        ShopPods {
            bridge,
            server,
            client,
            dir,
            nginx,
        }
    }
}
