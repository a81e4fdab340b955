//! The flight recorder, end to end: two "pods" (network namespaces on a bridge, named by
//! a static pod map), nginx in the server pod with `/fail` answering 500, `podtap run`
//! capturing the server pod's veth and recording that pod.
//!
//! - A burst of 500s makes an `http_error_burst` event; the recording it starts holds the
//!   frames from before the event (the failing requests themselves, which tshark finds),
//!   the event's JSON line names the file, and the transactions completing in the window,
//!   before the event (their records held back) and after it (JSON lines, and spans at a
//!   real collector, rotel), name the file and a frame range that holds their request and
//!   response, as tshark shows it.
//! - `podtap record --pod` writes a file, `podtap status` lists the recordings, and
//!   retention removes the oldest file.
//! - A trigger after a recording's window, while its file is still being written, starts
//!   a recording of its own: two files, both read by tshark.

mod common;
mod export_common;

use common::*;
use export_common::*;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// One node at a time: the windows are timed, and the two cores are shared.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 500s that make the burst (`anomalies.http_error_burst` is set to 10 below).
const FAILS: usize = 15;

struct Node {
    _bridge: Bridge,
    server: Pod,
    client: Pod,
    dir: tempfile::TempDir,
    /// Root's (the daemon keeps no CAP_DAC_OVERRIDE; nginx gives `dir` to its user): the
    /// control socket and the recordings.
    ctl: tempfile::TempDir,
    cfg: PathBuf,
    _nginx: Proc,
}

fn node() -> Node {
    let ShopPods {
        bridge,
        server,
        client,
        dir,
        nginx,
    } = ShopPods::new(&[("index.html", b"hello\n")]);
    let ctl = tempfile::tempdir().unwrap();
    std::fs::set_permissions(ctl.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("podtap.toml");
    Node {
        _bridge: bridge,
        server,
        client,
        dir,
        ctl,
        cfg,
        _nginx: nginx,
    }
}

impl Node {
    fn rec_dir(&self) -> PathBuf {
        self.ctl.path().join("recordings")
    }

    /// `podtap run` on the server pod's veth, recording pod shop/web, with `extra` config
    /// lines; returns once the recorder has the pod.
    fn daemon(&self, recorder: &str, extra: &str) -> Daemon {
        std::fs::write(
            &self.cfg,
            format!(
                "[attribution]\nstatic_map = \"{}\"\n\
                 [control]\nsocket = \"{}\"\n\
                 [export.prometheus]\nlisten = \"127.0.0.1:{}\"\n\
                 [anomalies]\nhttp_error_burst = 10\n\
                 [recorder]\nenabled = true\npods = [\"shop/web\"]\ndir = \"{}\"\n{recorder}\n{extra}",
                self.dir.path().join("map.toml").display(),
                self.ctl.path().join("run/control.sock").display(),
                free_port(),
                self.rec_dir().display(),
            ),
        )
        .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_podtap"));
        cmd.args(["--config", self.cfg.to_str().unwrap(), "run"])
            .args(["--workers", "2", "--interface", &self.server.host_if]);
        let d = Daemon::start_cmd(cmd, self.dir.path());
        d.wait_log("flight recorder: recording pod", Duration::from_secs(10));
        d
    }

    fn podtap(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_podtap"));
        c.arg("--config").arg(&self.cfg).env("RUST_BACKTRACE", "0");
        c
    }

    fn curl(&self, path: &str) -> String {
        self.client
            .ns
            .http_status(&format!("http://{}{path}", self.server.ip), 2)
    }

    fn status(&self) -> Value {
        let out = self.podtap().args(["status", "--json"]).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The `.pcapng` files in the recordings directory.
    fn files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.rec_dir())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        v.retain(|p| p.extension().is_some_and(|x| x == "pcapng"));
        v.sort();
        v
    }
}

/// Wait (bounded) until the JSON output holds `needle`.
fn wait_output(d: &Daemon, needle: &str, secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if std::fs::read_to_string(&d.out).is_ok_and(|t| t.contains(needle)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Seconds since the epoch of an RFC 3339 time (`2026-12-06T10:15:00.123456789Z`).
fn epoch(t: &str) -> f64 {
    let out = sh(Command::new("date").args(["-u", "+%s.%N", "-d", t]));
    out.trim().parse().unwrap()
}

/// `frame.time_epoch` of the frames tshark shows for `filter`.
fn times(file: &Path, filter: &str) -> Vec<f64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-Y", filter, "-T", "fields", "-e", "frame.time_epoch"])
        .output()
        .expect("tshark");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

#[test]
fn a_burst_of_500s_is_recorded_with_the_frames_before_it_and_linked() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let (grpc, http) = (free_port(), free_port());
    let spans_log = n.dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &spans_log, n.dir.path());
    // Records of the recorded pod are held back seconds + 2 s = 10 s.
    let mut d = n.daemon(
        "seconds = 8\nafter_secs = 4\npod_bytes = 4194304\ntotal_bytes = 8388608\n",
        &format!("[export.otlp]\nenabled = true\nendpoint = \"http://127.0.0.1:{grpc}\"\n"),
    );
    for _ in 0..3 {
        assert_eq!(n.curl("/"), "200");
    }
    for _ in 0..FAILS {
        assert_eq!(n.curl("/fail"), "500");
    }
    assert!(
        wait_output(&d, "\"podtap.anomaly.kind\":\"http_error_burst\"", 10),
        "no http_error_burst event"
    );
    // Within the window after the event.
    std::thread::sleep(Duration::from_millis(300));
    let after = 3;
    for _ in 0..after {
        assert_eq!(n.curl("/fail"), "500");
    }
    d.wait_log("flight recorder: written", Duration::from_secs(15));
    // The held records leave on their own, 10 s after they completed, linked.
    let deadline = Instant::now() + Duration::from_secs(20);
    let linked_out = || {
        std::fs::read_to_string(&d.out)
            .unwrap_or_default()
            .lines()
            .filter(|l| {
                l.contains("\"url.path\":\"/fail\"") && l.contains("podtap.recording.frames")
            })
            .count()
    };
    while linked_out() < FAILS + after && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        linked_out(),
        FAILS + after,
        "the held records did not leave in time"
    );
    let st = n.status();
    let records = d.stop();

    let events: Vec<&Value> = records
        .iter()
        .filter(|r| r["podtap.record"] == "event" && r["podtap.anomaly.kind"] == "http_error_burst")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let e = events[0];
    let file = e["podtap.recording.file"]
        .as_str()
        .unwrap_or_else(|| panic!("the event names no recording: {e}"));
    let path = PathBuf::from(file);
    assert!(path.starts_with(n.rec_dir()), "{file}");
    let name = path.file_name().unwrap().to_str().unwrap();
    assert!(name.starts_with("shop_web-http_error_burst-"), "{name}");
    assert!(path.exists(), "{file} not written");

    // The failing requests are in it, those before the event included.
    let fails = times(&path, "http.response.code == 500");
    assert!(fails.len() >= FAILS, "{} 500s in {file}", fails.len());
    let t_event = epoch(e["podtap.time"].as_str().unwrap());
    let before = fails.iter().filter(|&&t| t < t_event).count();
    assert!(
        before >= 10,
        "{before} 500s before the event at {t_event} in {file}: {fails:?}"
    );
    assert!(times(&path, "").iter().all(|&t| t >= t_event - 9.0));
    // One interface, named as the pod's veth.
    let ifaces = sh(Command::new("tshark").arg("-r").arg(&path).args([
        "-T",
        "fields",
        "-e",
        "frame.interface_name",
        "-e",
        "frame.interface_description",
    ]));
    let first = ifaces.lines().next().unwrap_or_default();
    assert!(first.starts_with(&n.server.host_if), "{first}");
    assert!(first.contains("pod shop/web"), "{first}");

    // Every failing request, those that made the burst before the event and those after
    // it, names the file and a frame range: in exactly those frames tshark finds its
    // request and its 500.
    let failed: Vec<&Value> = records
        .iter()
        .filter(|r| r["podtap.record"] == "transaction" && r["url.path"] == "/fail")
        .collect();
    assert_eq!(failed.len(), FAILS + after, "{failed:?}");
    let (mut pre, mut post) = (0, 0);
    for t in &failed {
        assert_eq!(t["podtap.recording.file"], file, "{t}");
        let range = t["podtap.recording.frames"]
            .as_str()
            .unwrap_or_else(|| panic!("no frame range: {t}"));
        let (a, b) = range.split_once('-').unwrap();
        let (a, b): (u64, u64) = (a.parse().unwrap(), b.parse().unwrap());
        assert!(a <= b, "{t}");
        let within = format!("frame.number >= {a} && frame.number <= {b}");
        let port = t["client.port"].as_u64().unwrap();
        let req = tshark_count(
            &path,
            &format!(
                "{within} && http.request.method == \"GET\" && http.request.uri == \"/fail\" \
                 && tcp.srcport == {port}"
            ),
        );
        let resp = tshark_count(
            &path,
            &format!("{within} && http.response.code == 500 && tcp.dstport == {port}"),
        );
        assert_eq!((req, resp), (1, 1), "{t}: frames {range} of {file}");
        if epoch(t["podtap.end"].as_str().unwrap()) < t_event {
            pre += 1;
        } else {
            post += 1;
        }
    }
    assert!(pre >= 10, "{pre} linked before the event");
    assert!(post >= after, "{post} linked after the event");

    // The spans at the collector carry the same attributes.
    let deadline = Instant::now() + Duration::from_secs(10);
    let want = format!("podtap.recording.file: Str({file})");
    let text = loop {
        let t = std::fs::read_to_string(&spans_log).unwrap_or_default();
        if t.contains(&want) || Instant::now() > deadline {
            break t;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(text.contains(&want), "{want} missing at the collector");
    assert!(text.contains("podtap.recording.frames: Str("));

    // podtap status listed it.
    let recs = st["recorder"]["recordings"].as_array().unwrap();
    let r = recs.iter().find(|r| r["file"] == file).expect("listed");
    assert_eq!(r["state"], "written", "{r}");
    assert_eq!(r["trigger"], "http_error_burst", "{r}");
    assert_eq!(r["pods"][0], "shop/web", "{r}");
    assert_eq!(
        r["frames"].as_u64().unwrap() as usize,
        times(&path, "").len(),
        "{r}"
    );
}

#[test]
fn podtap_record_writes_a_file_and_retention_removes_the_oldest() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon("seconds = 5\nafter_secs = 1\nmax_files = 2\n", "");
    let mut written = Vec::new();
    for i in 0..3 {
        for _ in 0..2 {
            assert_eq!(n.curl("/"), "200");
        }
        let out = n
            .podtap()
            .args(["record", "--pod", "web", "-n", "shop", "--wait"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "record {i}: {err}");
        let file = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(err.contains("written"), "{err}");
        let path = PathBuf::from(&file);
        assert!(
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("shop_web-request-"),
            "{file}"
        );
        written.push(path);
        if i == 0 {
            // The requests before it are in it.
            let f = &written[0];
            assert!(tshark_count(f, "http.response.code == 200") >= 2, "{f:?}");
        }
    }
    // Three written, two kept: the oldest went.
    assert_eq!(n.files(), {
        let mut v = written[1..].to_vec();
        v.sort();
        v
    });
    let st = n.status();
    let r = &st["recorder"];
    assert_eq!(r["removed"], 1, "{r}");
    let recs = r["recordings"].as_array().unwrap();
    let state = |p: &Path| {
        recs.iter()
            .find(|x| x["file"] == p.to_str().unwrap())
            .map(|x| x["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state(&written[0]).as_deref(), Some("removed"));
    assert_eq!(state(&written[2]).as_deref(), Some("written"));
    // The human form lists them too.
    let text = n.podtap().arg("status").output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("flight recorder: 1 pods recorded (shop/web)"),
        "{text}"
    );
    assert!(text.contains(written[2].to_str().unwrap()), "{text}");
    // A pod the recorder does not record is refused.
    let out = n
        .podtap()
        .args(["record", "--pod", "buyer", "-n", "shop"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a pod the flight recorder records"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.stop();
}

/// A trigger after a recording's window, while its file is still being written (the
/// workers end their part at their next batch after the window, the recorder writes at
/// its next round: up to about 200 ms), starts a recording of its own. Tried until one
/// lands in that moment (the log says so), at most 5 times: both files are written and
/// tshark reads them.
#[test]
fn a_trigger_while_the_previous_file_is_written_records_again() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let n = node();
    let mut d = n.daemon("seconds = 5\nafter_secs = 1\n", "");
    let record = || {
        let out = n
            .podtap()
            .args(["record", "--pod", "web", "-n", "shop"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{err}");
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), err)
    };
    // Where in the log a line with both `what` and `file` is.
    let at = |what: &str, file: &str| {
        d.log
            .lock()
            .unwrap()
            .iter()
            .position(|l| l.contains(what) && l.contains(file))
    };
    let (mut hit, mut asked) = (false, 0);
    for attempt in 0..5 {
        asked += 2;
        for _ in 0..2 {
            assert_eq!(n.curl("/"), "200");
        }
        let (first, err) = record();
        // "podtap record: FILE of PODS (FROM to UNTIL): recording"
        let until = err
            .rsplit_once(" to ")
            .and_then(|(_, r)| r.split_once(')'))
            .map(|(u, _)| epoch(u))
            .unwrap_or_else(|| panic!("{err}"));
        let now = || {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
        };
        let wait = until + 0.01 - now();
        if wait > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(wait));
        }
        let (second, _) = record();
        assert_ne!(
            first, second,
            "attempt {attempt}: the second trigger joined the first"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while (at("flight recorder: written", &first).is_none()
            || at("flight recorder: written", &second).is_none())
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        for f in [&first, &second] {
            assert!(
                at("flight recorder: written", f).is_some(),
                "attempt {attempt}: {f} not written"
            );
            let out = Command::new("tshark").arg("-r").arg(f).output().unwrap();
            assert!(
                out.status.success(),
                "tshark cannot read {f}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        // The second recording started before the first was written.
        if at("flight recorder: recording", &second) < at("flight recorder: written", &first) {
            hit = true;
            // The requests before both triggers are in both.
            for f in [&first, &second] {
                assert!(
                    tshark_count(Path::new(f), "http.response.code == 200") >= 2,
                    "{f}"
                );
            }
            break;
        }
    }
    assert!(
        hit,
        "no trigger landed while the previous file was being written"
    );
    // The last requests' records were still held back (7 s): the shutdown passed them on.
    let records = d.stop();
    let got = records
        .iter()
        .filter(|r| r["podtap.record"] == "transaction" && r["url.path"] == "/")
        .count();
    assert_eq!(got, asked, "transaction records lost");
}
