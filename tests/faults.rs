//! Faults the daemon meets on a real node, each end to end: a bad config on SIGHUP, a
//! full disk under its JSON output, SIGTERM under heavy traffic, a captured interface
//! deleted (and created again) under its open sockets, its mirror device deleted by
//! someone else. In every case podtap keeps running (or stops cleanly when told), says
//! what happened, loses nothing without counting it and leaves no tc or XDP state behind.
//!
//! The daemon runs inside the server namespace of a veth pair and captures the server's
//! veth; nginx serves there and curl or hey ask from the client namespace.

mod common;

use common::*;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

type Setup = WebPair;

fn setup() -> Setup {
    WebPair::new(&["before.html", "after.html"])
}

/// What the tests look at beside the daemon's records.
trait Node {
    fn links(&self) -> Vec<String>;
    fn attached(&self) -> String;
    fn recreate_veth(&self);
}

impl Node for WebPair {
    /// Links of the server namespace, by name.
    fn links(&self) -> Vec<String> {
        sh(Command::new("ip").args(["-n", &self.pair.server.name, "-o", "link", "show"]))
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap().to_string())
            .collect()
    }

    /// What tc and XDP state the server's veth carries.
    fn attached(&self) -> String {
        let ns = &self.pair.server.name;
        let ifc = &self.pair.server_if;
        let qdisc = sh(Command::new("tc").args(["-n", ns, "qdisc", "show", "dev", ifc]));
        let link = sh(Command::new("ip").args(["-n", ns, "-d", "link", "show", ifc]));
        let mut v = String::new();
        if qdisc.contains("clsact") || qdisc.contains("ingress") {
            v += &format!("qdisc: {qdisc}");
        }
        if link.contains("xdp") {
            v += &format!("xdp: {link}");
        }
        v
    }

    /// The veth pair again, as `Pair::new` made it, after it was deleted.
    fn recreate_veth(&self) {
        let p = &self.pair;
        sh(Command::new("ip").args([
            "link",
            "add",
            &p.server_if,
            "netns",
            &p.server.name,
            "type",
            "veth",
            "peer",
            "name",
            &p.client_if,
            "netns",
            &p.client.name,
        ]));
        for (ns, ifc, ip) in [
            (&p.server, &p.server_if, SERVER_IP),
            (&p.client, &p.client_if, CLIENT_IP),
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
        }
    }
}

/// GET transactions for `page` answered 200.
fn gets(all: &[serde_json::Value], page: &str) -> usize {
    records(all, "transaction")
        .iter()
        .filter(|t| {
            t["http.response.status_code"] == 200
                && t["url.path"].as_str().is_some_and(|p| p.ends_with(page))
        })
        .count()
}

fn sighup(d: &Daemon) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(d.proc.0.as_ref().unwrap().id() as i32, libc::SIGHUP) };
}

#[test]
fn sighup_with_a_bad_config_keeps_the_running_one_and_names_the_error() {
    let s = setup();
    let cfg = s.config("[attribution]\nresync_secs = 10\n");
    let mut d = s.daemon(&cfg, &[]);
    assert_eq!(s.curl("before.html", 5), 5);
    // A value of the wrong type: the file does not load.
    std::fs::write(&cfg, "[attribution]\nresync_secs = \"often\"\n").unwrap();
    sighup(&d);
    let err = d.wait_log("config not reloaded", Duration::from_secs(5));
    assert!(
        err.contains("the running one stays")
            && err.contains("resync_secs")
            && err.contains(cfg.to_str().unwrap()),
        "{err}"
    );
    // An unknown operator: named with its key.
    std::fs::write(
        &cfg,
        "[attribution.selector]\nmatch_expressions = [{ key = \"app\", operator = \"Sideways\", values = [\"x\"] }]\n",
    )
    .unwrap();
    sighup(&d);
    let deadline = Instant::now() + Duration::from_secs(5);
    let err = loop {
        let found = d
            .log
            .lock()
            .unwrap()
            .iter()
            .find(|l| l.contains("not reloaded") && l.contains("Sideways"))
            .cloned();
        if let Some(l) = found {
            break l;
        }
        assert!(Instant::now() < deadline, "the second error was not logged");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(err.contains("match_expressions[0].operator"), "{err}");
    // Still running on the old settings, and still capturing.
    assert!(d.proc.0.as_mut().unwrap().try_wait().unwrap().is_none());
    assert_eq!(s.curl("after.html", 5), 5);
    std::thread::sleep(Duration::from_millis(300));
    let all = d.stop();
    assert_eq!(gets(&all, "before.html"), 5);
    assert_eq!(gets(&all, "after.html"), 5);
}

/// A small tmpfs, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn new(at: PathBuf, size: &str) -> Tmpfs {
        std::fs::create_dir_all(&at).unwrap();
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "podtap-test"])
            .arg(&at));
        Tmpfs(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_loses_counted_records_only_and_writing_resumes_when_room_returns() {
    let s = setup();
    let disk = Tmpfs::new(s.dir.path().join("disk"), "256k");
    // Most of the disk taken by someone else.
    let filler = disk.0.join("filler");
    std::fs::write(&filler, vec![b'x'; 200 * 1024]).unwrap();
    let out = disk.0.join("podtap.jsonl");
    let cfg = s.config(&format!(
        "[output]\nfile = \"{}\"\nflows = false\n\
         [export.prometheus]\nlisten = \"127.0.0.1:9469\"\n",
        out.display()
    ));
    let mut d = s.daemon(&cfg, &["--output", "jsonl"]);
    // More records than the room left: the disk fills part-way.
    const BEFORE: usize = 150;
    const AFTER: usize = 20;
    assert_eq!(s.curl("before.html", BEFORE), BEFORE);
    let err = d.wait_log("cannot write the output", Duration::from_secs(10));
    assert!(err.contains("No space left"), "{err}");
    // Room again: the next records are written.
    std::fs::remove_file(&filler).unwrap();
    assert_eq!(s.curl("after.html", AFTER), AFTER);
    d.wait_log("output writable again", Duration::from_secs(10));
    // The loss is on /metrics (the daemon's namespace is the server's), as the log says.
    let metrics = sh(s
        .pair
        .server
        .cmd("curl")
        .args(["-s", "http://127.0.0.1:9469/metrics"]));
    let exported: u64 = metrics
        .lines()
        .find(|l| l.starts_with("podtap_events_total{") && l.contains("\"output.write_failed\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no output.write_failed series:\n{metrics}"));
    d.stop_raw();
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.ends_with('\n'), "the file ends at a whole line");
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let lost = d
        .log_value("output.write_failed", "count")
        .expect("the loss is counted");
    let before = gets(&lines, "before.html");
    assert!(lost > 0 && before > 0, "lost {lost}, written {before}");
    assert_eq!(exported, lost, "/metrics counts what the log counts");
    assert_eq!(
        before as u64 + lost,
        BEFORE as u64,
        "each record written or counted"
    );
    assert_eq!(
        gets(&lines, "after.html"),
        AFTER,
        "written once room returned"
    );
}

#[test]
fn sigterm_under_heavy_traffic_stops_cleanly_and_leaves_no_tc_or_xdp_state() {
    let s = setup();
    let cfg = s.config("");
    let links_before = s.links();
    let mut d = s.daemon(&cfg, &["--mode", "xdp", "--output", "none"]);
    assert!(
        s.links().len() > links_before.len(),
        "xdp mode mirrors into a capture device: {:?}",
        s.links()
    );
    assert!(
        !s.attached().is_empty(),
        "the mirror's filters are attached"
    );
    // Bounded load: at most 100k requests or 20 s, ended early by the SIGTERM below.
    let mut load = Proc(Some(
        s.pair
            .client
            .cmd("hey")
            .args(["-n", "100000", "-c", "8", "-z", "20s"])
            .arg(format!("http://{SERVER_IP}/before.html"))
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("hey is installed"),
    ));
    std::thread::sleep(Duration::from_secs(2));
    let t = Instant::now();
    d.stop_raw();
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "stopped in {:?}",
        t.elapsed()
    );
    load.interrupt();
    assert_eq!(s.links(), links_before, "the capture device is gone");
    assert_eq!(s.attached(), "", "no tc or XDP state left");
    let transactions = d.log_value("podtap stopped", "transactions").unwrap();
    assert!(transactions > 1000, "it was under load: {transactions}");
}

#[test]
fn an_interface_deleted_under_open_sockets_is_let_go_and_taken_again_when_it_returns() {
    for mode in ["tpacket", "xdp"] {
        let s = setup();
        let cfg = s.config("");
        let mut d = s.daemon(&cfg, &["--mode", mode]);
        assert_eq!(s.curl("before.html", 5), 5);
        sh(Command::new("ip").args(["-n", &s.pair.server.name, "link", "del", &s.pair.server_if]));
        std::thread::sleep(Duration::from_secs(1));
        assert!(
            d.proc.0.as_mut().unwrap().try_wait().unwrap().is_none(),
            "{mode}: still running"
        );
        s.recreate_veth();
        // Attached again (a new ifindex) within the link watcher's second.
        let deadline = Instant::now() + Duration::from_secs(10);
        let attached = || {
            d.log
                .lock()
                .unwrap()
                .iter()
                .filter(|l| {
                    l.contains(&format!("interface={}", s.pair.server_if))
                        && !l.contains("detached")
                })
                .count()
        };
        while attached() < 2 {
            assert!(Instant::now() < deadline, "{mode}: never attached again");
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(s.curl("after.html", 5), 5);
        std::thread::sleep(Duration::from_millis(300));
        let all = d.stop();
        assert_eq!(gets(&all, "before.html"), 5, "{mode}");
        assert_eq!(gets(&all, "after.html"), 5, "{mode}");
        assert_eq!(s.attached(), "", "{mode}: nothing left attached");
    }
}

#[test]
fn a_mirror_device_deleted_by_someone_else_moves_its_interfaces_to_tpacket() {
    let s = setup();
    let cfg = s.config("");
    let mut d = s.daemon(&cfg, &["--mode", "xdp"]);
    let capturing = d.wait_log("podtap: capturing", Duration::from_secs(1));
    let device = capturing
        .split("mirror=")
        .nth(1)
        .and_then(|m| m.split('"').nth(1))
        .unwrap_or_else(|| panic!("no mirror device in: {capturing}"))
        .to_string();
    assert!(s.links().contains(&device), "{device}: {:?}", s.links());
    assert_eq!(s.curl("before.html", 5), 5);
    sh(Command::new("ip").args(["-n", &s.pair.server.name, "link", "del", &device]));
    let err = d.wait_log(
        "capture device was removed by someone else",
        Duration::from_secs(5),
    );
    assert!(err.contains(&device), "{err}");
    d.wait_log(
        "reason=\"the mirror's capture device was removed\"",
        Duration::from_secs(5),
    );
    // The mirror's filters are gone with it: the veth carries nothing of podtap's.
    assert_eq!(s.attached(), "");
    assert_eq!(s.curl("after.html", 5), 5);
    std::thread::sleep(Duration::from_millis(300));
    let all = d.stop();
    assert_eq!(gets(&all, "before.html"), 5);
    assert_eq!(gets(&all, "after.html"), 5, "captured by TPACKET_V3 since");
    assert_eq!(s.attached(), "");
}
