//! `podtap top`, end to end: three pods on a bridge (nginx in `shop/web`, clients
//! `shop/alpha` and `batch/zeta`, named by a static map), the daemon capturing their
//! veths with `control.top` on. `alpha` sends a known number of requests at a known rate
//! (hey, one connection), `zeta` a few at a lower rate to a page that fails. The JSON
//! snapshot must show both edges with rates near what hey sent and, once hey is done,
//! exactly hey's counts (each call is seen at both pods' veths and counted once). The
//! live view runs in tmux: the screen shows the edge and its rate, and a sort key and a
//! namespace filter change it as they should.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// alpha: this many requests at this rate (12 s); zeta: a few at a low rate, all 500s.
const ALPHA_REQUESTS: u32 = 240;
const ALPHA_QPS: u32 = 20;
const ZETA_REQUESTS: u32 = 36;
const ZETA_QPS: u32 = 3;

struct Node {
    _nginx: Proc,
    web: Pod,
    alpha: Pod,
    zeta: Pod,
    bridge: Bridge,
    dir: tempfile::TempDir,
    /// The control and tmux sockets' directory: root's (nginx gives `dir` to its worker
    /// user, and the daemon keeps no CAP_DAC_OVERRIDE to create a socket in someone else's).
    ctl: tempfile::TempDir,
    cfg: PathBuf,
}

/// The three pods, nginx, and a config whose `control.top` is `top`.
fn node(top: bool) -> Node {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), vec![b'x'; 2000]).unwrap();
    let mut bridge = Bridge::new();
    let (web, alpha, zeta) = (bridge.pod(), bridge.pod(), bridge.pod());
    let nginx = nginx(&web.ns, &web.ip, dir.path(), &root);
    let map = dir.path().join("map.toml");
    let mut pods = String::new();
    for (p, name, ns) in [
        (&web, "web", "shop"),
        (&alpha, "alpha", "shop"),
        (&zeta, "zeta", "batch"),
    ] {
        pods.push_str(&format!(
            "[[pod]]\nname = \"{name}\"\nnamespace = \"{ns}\"\nnetns = \"{}\"\n",
            p.ns.name
        ));
    }
    std::fs::write(&map, pods).unwrap();
    let ctl = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("podtap.toml");
    std::fs::write(
        &cfg,
        format!(
            "[control]\nsocket = \"{}\"\ntop = {top}\n[attribution]\nstatic_map = \"{}\"\n\
             [flow]\nreport_interval_secs = 1\n",
            ctl.path().join("run").join("control.sock").display(),
            map.display()
        ),
    )
    .unwrap();
    Node {
        _nginx: nginx,
        web,
        alpha,
        zeta,
        bridge,
        dir,
        ctl,
        cfg,
    }
}

impl Node {
    fn daemon(&self) -> Daemon {
        Daemon::on_interfaces(self.dir.path(), &self.cfg, &self.bridge.prefix)
    }

    fn podtap(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_podtap"));
        c.arg("--config").arg(&self.cfg).env("RUST_BACKTRACE", "0");
        c
    }

    /// `podtap top --once --output json` with rates over 5 s.
    fn snapshot(&self) -> serde_json::Value {
        let out = sh(self
            .podtap()
            .args(["top", "--once", "--output", "json", "--window", "5"]));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// hey from `client` to `path` on web: `n` requests at `qps` on one connection.
    fn hey(&self, client: &Pod, path: &str, n: u32, qps: u32) -> Proc {
        Proc(Some(
            client
                .ns
                .cmd("hey")
                .args(["-n", &n.to_string(), "-q", &qps.to_string(), "-c", "1"])
                .arg(format!("http://{}{path}", self.web.ip))
                .stdout(Stdio::piped())
                .spawn()
                .expect("hey is installed"),
        ))
    }
}

/// hey's count of responses with `status`, from its report.
fn hey_count(p: &mut Proc, status: u16) -> u64 {
    let child = p.0.take().expect("running");
    let out = child.wait_with_output().expect("hey ran");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let l = l.trim();
            l.strip_prefix(&format!("[{status}]"))?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no [{status}] in hey's report:\n{text}"))
}

/// The edge `client` → web over HTTP in a snapshot.
fn edge<'a>(snap: &'a serde_json::Value, client: &str) -> &'a serde_json::Value {
    snap["edges"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| {
            e["client"]["name"] == client
                && e["server"]["name"] == "web"
                && e["server"]["namespace"] == "shop"
                && e["protocol"] == "http"
                && e["port"] == 80
        })
        .unwrap_or_else(|| panic!("no edge {client} -> shop/web http in {snap:#}"))
}

/// A tmux server of this test's own (its socket in the test's directory), killed with
/// its sessions on drop.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// `command` in a detached 200x50 session.
    fn start(dir: &std::path::Path, command: &str) -> Tmux {
        let t = Tmux {
            socket: dir.join("tmux.sock"),
        };
        sh(t.cmd().args([
            "new-session",
            "-d",
            "-s",
            "top",
            "-x",
            "200",
            "-y",
            "50",
            command,
        ]));
        t
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket);
        c
    }

    fn screen(&self) -> String {
        sh(self.cmd().args(["capture-pane", "-p", "-t", "top"]))
    }

    fn keys(&self, keys: &[&str]) {
        sh(self.cmd().args(["send-keys", "-t", "top"]).args(keys));
    }

    /// The screen once `ok` accepts it; panics with the last screen after `timeout`.
    fn wait(&self, timeout: Duration, ok: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.screen();
            if ok(&s) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the screen never became right:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "top"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").stderr(Stdio::null()).status();
    }
}

/// The lines of the call edges table on a screen.
fn edges_table(screen: &str) -> Vec<&str> {
    screen
        .lines()
        .skip_while(|l| !l.contains("call edges"))
        .take_while(|l| !l.contains("endpoints"))
        .collect()
}

/// The REQ/S cell of the screen's edge line from `client` to shop/web over HTTP.
fn screen_rate(screen: &str, client: &str) -> Option<f64> {
    edges_table(screen).iter().find_map(|l| {
        let cells: Vec<&str> = l
            .trim_matches(|c: char| c == '│' || c.is_whitespace())
            .split_whitespace()
            .collect();
        match cells[..] {
            [c, "shop/web", "80", "http", rate, ..] if c == client => rate.parse().ok(),
            _ => None,
        }
    })
}

/// Does the screen's header line (not the help line, where a filter being typed shows)
/// contain `text`?
fn header_has(screen: &str, text: &str) -> bool {
    screen.lines().next().is_some_and(|l| l.contains(text))
}

/// Where on the edges table a client's line is.
fn row_of(screen: &str, client: &str) -> Option<usize> {
    edges_table(screen).iter().position(|l| l.contains(client))
}

#[test]
fn top_shows_the_edges_their_rates_and_counts() {
    let n = node(true);
    let mut d = n.daemon();
    let top = format!(
        "{} --config {} top",
        env!("CARGO_BIN_EXE_podtap"),
        n.cfg.display()
    );
    let tmux = Tmux::start(n.ctl.path(), &top);
    tmux.wait(Duration::from_secs(10), |s| s.contains("podtap top: node"));
    let started = Instant::now();
    let mut alpha = n.hey(&n.alpha, "/", ALPHA_REQUESTS, ALPHA_QPS);
    let mut zeta = n.hey(&n.zeta, "/fail", ZETA_REQUESTS, ZETA_QPS);
    // Well inside both loads (12 s), with a whole 5 s window of them.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(started.elapsed()));
    let snap = n.snapshot();
    assert!(snap["window_secs"].as_f64().unwrap() >= 4.5, "{snap:#}");
    let a = edge(&snap, "alpha");
    let rate = a["requests_per_sec"].as_f64().unwrap();
    let want = ALPHA_QPS as f64;
    assert!(
        (want * 0.6..=want * 1.4).contains(&rate),
        "alpha -> web at {rate}/s, hey sends {want}/s: {a:#}"
    );
    assert!(a["bytes_per_sec"].as_f64().unwrap() > 0.0, "{a:#}");
    assert_eq!(a["error_ratio"], 0.0);
    let z = edge(&snap, "zeta");
    let zrate = z["requests_per_sec"].as_f64().unwrap();
    assert!(
        (1.0..=5.0).contains(&zrate),
        "zeta -> web at {zrate}/s: {z:#}"
    );
    assert_eq!(z["error_ratio"], 1.0, "every /fail is a 500: {z:#}");
    assert!(a["p50_ms"].as_f64().is_some() && a["p99_ms"].as_f64().is_some());
    let web = snap["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["pod"]["name"] == "web")
        .expect("web among the pods");
    assert!(web["requests_per_sec"].as_f64().unwrap() > rate, "{web:#}");

    // The live view: the edge with its rate, alpha (the busiest) above zeta.
    let screen = tmux.wait(Duration::from_secs(5), |s| {
        screen_rate(s, "shop/alpha").is_some() && row_of(s, "batch/zeta").is_some()
    });
    // Shown with the test's output when it fails.
    eprintln!("{screen}");
    let shown = screen_rate(&screen, "shop/alpha").unwrap();
    assert!(
        (want * 0.6..=want * 1.4).contains(&shown),
        "the screen shows {shown}/s:\n{screen}"
    );
    assert!(
        row_of(&screen, "shop/alpha") < row_of(&screen, "batch/zeta"),
        "{screen}"
    );
    assert!(header_has(&screen, "sort: rate"), "{screen}");
    assert!(
        screen.contains("q quit"),
        "the keys are on screen:\n{screen}"
    );
    // By name: batch/zeta sorts before shop/alpha.
    tmux.keys(&["n"]);
    let screen = tmux.wait(Duration::from_secs(5), |s| header_has(s, "sort: name"));
    assert!(
        row_of(&screen, "batch/zeta") < row_of(&screen, "shop/alpha"),
        "{screen}"
    );
    // Only namespace batch: zeta's edge, not alpha's.
    tmux.keys(&["/", "ns=batch", "Enter"]);
    let screen = tmux.wait(Duration::from_secs(5), |s| {
        header_has(s, "filter: ns=batch")
    });
    assert!(row_of(&screen, "batch/zeta").is_some(), "{screen}");
    assert!(row_of(&screen, "shop/alpha").is_none(), "{screen}");
    tmux.keys(&["c"]);
    tmux.wait(Duration::from_secs(5), |s| {
        header_has(s, "filter: none") && row_of(s, "shop/alpha").is_some()
    });
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.alive() {
        assert!(Instant::now() < deadline, "q did not end podtap top");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Once hey is done and the workers have reported (each second), exact counts.
    let (alpha_ok, zeta_failed) = (hey_count(&mut alpha, 200), hey_count(&mut zeta, 500));
    assert_eq!(alpha_ok, ALPHA_REQUESTS as u64);
    assert_eq!(zeta_failed, ZETA_REQUESTS as u64);
    let deadline = Instant::now() + Duration::from_secs(10);
    let snap = loop {
        let snap = n.snapshot();
        if edge(&snap, "alpha")["requests"] == alpha_ok
            && edge(&snap, "zeta")["requests"] == zeta_failed
        {
            break snap;
        }
        assert!(
            Instant::now() < deadline,
            "counts never matched hey's: {snap:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    assert_eq!(edge(&snap, "zeta")["errors"], zeta_failed);
    assert_eq!(edge(&snap, "alpha")["errors"], 0);
    let ep = snap["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["operation"] == "GET /fail")
        .unwrap_or_else(|| panic!("no GET /fail endpoint: {snap:#}"));
    assert_eq!(ep["requests"], zeta_failed);
    // The text form of the same.
    let text = sh(n.podtap().args(["top", "--once", "--window", "1"]));
    assert!(
        text.contains("call edges") && text.contains("shop/alpha"),
        "{text}"
    );
    d.stop_raw();
}

/// No daemon: a clear error naming the socket, for the view and for --once.
#[test]
fn top_without_a_daemon_names_the_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("nobody.sock");
    let cfg = dir.path().join("podtap.toml");
    std::fs::write(
        &cfg,
        format!("[control]\nsocket = \"{}\"\n", sock.display()),
    )
    .unwrap();
    for args in [&["top", "--once"][..], &["top"][..]] {
        let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
            .arg("--config")
            .arg(&cfg)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("no podtap daemon at {}", sock.display())),
            "{args:?}: {err}"
        );
    }
}

/// A daemon that neither exports metrics nor has `control.top` keeps no statistics: `top`
/// says so and names the setting.
#[test]
fn top_without_statistics_names_control_top() {
    let n = node(false);
    let mut d = n.daemon();
    let out = n
        .podtap()
        .args(["top", "--once", "--output", "json"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("control.top = true"), "{err}");
    d.stop_raw();
}
