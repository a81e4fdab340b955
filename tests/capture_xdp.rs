//! AF_XDP capture through the tc mirror, end to end: two pod namespaces routed through a
//! "node" namespace like a CNI without a bridge (/30 per pod veth), the mirror on both
//! host-side veths, an AF_XDP source per capture queue. Every frame tcpdump sees on a
//! host veth must arrive exactly once, byte for byte, with that veth as `obs` and the
//! right direction; the pods' traffic must be unaffected; dropping the mirror and the
//! sources must leave nothing behind. A crashed run's leftovers are replaced, not
//! stacked.

mod common;

use common::{Netns, Proc, require_root, sh, unique};
use podtap::capture::iface::in_netns;
use podtap::capture::mirror::{Direction, Mirror, MirrorConfig};
use podtap::capture::xdp::{Decap, XdpConfig, XdpSource};
use podtap::capture::{Source, iface};
use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The tests share the XDP program registry and tc priorities: run them one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

const B_IP: &str = "10.213.2.2";

struct Topo {
    node: Netns,
    a: Netns,
    b: Netns,
    ha: String,
    hb: String,
    dir: tempfile::TempDir,
}

fn ipn(ns: &Netns, args: &[&str]) -> String {
    sh(Command::new("ip").arg("-n").arg(&ns.name).args(args))
}

impl Topo {
    fn new() -> Topo {
        let node = Netns::new("ptn");
        let a = Netns::new("pta");
        let b = Netns::new("ptb");
        let ha = unique("ha");
        let hb = unique("hb");
        for ns in [&node, &a, &b] {
            sh(ns
                .cmd("sysctl")
                .args(["-qw", "net.ipv6.conf.all.disable_ipv6=1"]));
            sh(ns
                .cmd("sysctl")
                .args(["-qw", "net.ipv6.conf.default.disable_ipv6=1"]));
        }
        sh(node.cmd("sysctl").args(["-qw", "net.ipv4.ip_forward=1"]));
        for (pod, host, net) in [(&a, &ha, 1), (&b, &hb, 2)] {
            sh(Command::new("ip").args([
                "link", "add", host, "netns", &node.name, "type", "veth", "peer", "name", "eth0",
                "netns", &pod.name,
            ]));
            ipn(
                &node,
                &["addr", "add", &format!("10.213.{net}.1/30"), "dev", host],
            );
            ipn(
                pod,
                &["addr", "add", &format!("10.213.{net}.2/30"), "dev", "eth0"],
            );
            ipn(&node, &["link", "set", host, "up"]);
            ipn(pod, &["link", "set", "eth0", "up"]);
            ipn(
                pod,
                &["route", "add", "default", "via", &format!("10.213.{net}.1")],
            );
            // Wire-sized segments everywhere, so tcpdump and the mirror see the same frames.
            for (ns, i) in [(&node, host.as_str()), (pod, "eth0")] {
                sh(ns
                    .cmd("ethtool")
                    .args(["-K", i, "tso", "off", "gso", "off", "gro", "off"]));
            }
        }
        Topo {
            node,
            a,
            b,
            ha,
            hb,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn mirror_cfg(&self) -> MirrorConfig {
        let n = self.node.name.trim_start_matches("ptn").to_string();
        MirrorConfig {
            device: format!("pq{n}"),
            peer: format!("pq{n}c"),
            state_dir: self.dir.path().join("state"),
            ..Default::default()
        }
    }
}

fn small_xdp() -> XdpConfig {
    XdpConfig {
        frame_count: 4096,
        fill_ring: 4096,
        rx_ring: 4096,
        ..Default::default()
    }
}

/// Ethernet frames of a pcap file.
fn pcap_frames(path: &Path) -> Vec<Vec<u8>> {
    pcap_frames_timed(path)
        .into_iter()
        .map(|(_, f)| f)
        .collect()
}

/// Ethernet frames of a pcap file with their times (ns since the epoch).
fn pcap_frames_timed(path: &Path) -> Vec<(u64, Vec<u8>)> {
    let f = std::fs::File::open(path).unwrap();
    let mut r = pcap_file::pcap::PcapReader::new(f).unwrap();
    let mut v = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.unwrap();
        v.push((p.timestamp.as_nanos() as u64, p.data.into_owned()));
    }
    v
}

fn mac_of(ns: &Netns, ifname: &str) -> [u8; 6] {
    let out = sh(ns
        .cmd("cat")
        .arg(format!("/sys/class/net/{ifname}/address")));
    let mut m = [0u8; 6];
    for (i, p) in out.trim().split(':').enumerate() {
        m[i] = u8::from_str_radix(p, 16).unwrap();
    }
    m
}

fn tcpdump_in(ns: &Netns, iface: &str, file: &Path) -> Proc {
    common::tcpdump(ns, iface, file)
}

/// Symmetric flow id of an IPv4 TCP frame (addresses and ports, sorted).
fn tcp_flow(f: &[u8]) -> Option<([u8; 6], [u8; 6])> {
    if f.len() < 54 || f[12..14] != [0x08, 0x00] || f[23] != 6 {
        return None;
    }
    let ihl = (f[14] & 0xf) as usize * 4;
    let a: [u8; 6] = [f[26], f[27], f[28], f[29], f[14 + ihl], f[15 + ihl]];
    let b: [u8; 6] = [f[30], f[31], f[32], f[33], f[16 + ihl], f[17 + ihl]];
    Some(if a < b { (a, b) } else { (b, a) })
}

#[test]
fn mirrored_traffic_arrives_once_per_veth_with_direction() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new();
    let cfg = t.mirror_cfg();
    let node = t.node.name.clone();
    let (ha, hb) = (t.ha.clone(), t.hb.clone());
    let ha_idx = in_netns(&node, {
        let ha = ha.clone();
        move || {
            iface::list_current_netns()
                .into_iter()
                .find(|i| i.name == ha)
                .unwrap()
                .ifindex
        }
    })
    .unwrap();
    let hb_idx = in_netns(&node, {
        let hb = hb.clone();
        move || {
            iface::list_current_netns()
                .into_iter()
                .find(|i| i.name == hb)
                .unwrap()
                .ifindex
        }
    })
    .unwrap();
    let mac_a_pod = mac_of(&t.a, "eth0");
    let mac_b_pod = mac_of(&t.b, "eth0");

    // tcpdump on both host veths is the reference.
    let pa = t.dir.path().join("ha.pcap");
    let pb = t.dir.path().join("hb.pcap");

    // Build everything inside the node namespace on one thread, run traffic from another.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let cfg2 = cfg.clone();
    let capture = std::thread::spawn(move || {
        in_netns(&node, move || {
            let mut m = Mirror::new(&cfg2, 2).expect("mirror");
            m.attach(ha_idx).unwrap();
            m.attach(ha_idx).unwrap(); // idempotent
            m.attach(hb_idx).unwrap();
            let mut srcs: Vec<XdpSource> = (0..2)
                .map(|q| {
                    XdpSource::open(m.capture_device(), q, &small_xdp(), Decap::Mirror(m.tags()))
                        .expect("xdp source")
                })
                .collect();
            let mode = srcs[0].mode();
            ready_tx.send(()).unwrap();
            let mut got: Vec<(u32, u32, Direction, Vec<u8>, u64)> = Vec::new();
            let mut deadline: Option<Instant> = None;
            let hard = Instant::now() + Duration::from_secs(120);
            loop {
                let mut n = 0;
                for s in srcs.iter_mut() {
                    let q = s.queue();
                    n += s
                        .next_batch_dir(64, |f, d| {
                            got.push((q, f.obs, d.unwrap(), f.data.to_vec(), f.ts.as_nanos()))
                        })
                        .unwrap()
                        .unwrap();
                }
                if deadline.is_none() && done_rx.try_recv().is_ok() {
                    deadline = Some(Instant::now() + Duration::from_millis(700));
                }
                if deadline.is_some_and(|d| Instant::now() > d) || Instant::now() > hard {
                    break;
                }
                if n == 0 {
                    srcs[0].wait(5).unwrap();
                }
            }
            let mut stats = Vec::new();
            for s in srcs.iter_mut() {
                s.refresh_kernel_stats();
                stats.push((s.stats(), s.kernel_stats(), s.by_direction()));
            }
            let ms = m.stats();
            drop(srcs);
            drop(m);
            (got, stats, ms, mode)
        })
        .unwrap()
    });
    ready_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("capture ready");
    let mut ta = tcpdump_in(&t.node, &ha, &pa);
    let mut tb = tcpdump_in(&t.node, &hb, &pb);

    // Traffic: pings, UDP datagrams, HTTP over TCP; all bounded.
    let ping =
        t.a.cmd("ping")
            .args(["-c", "20", "-i", "0.02", "-W", "2", B_IP])
            .output()
            .unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    sh(t.a.cmd("python3").args([
        "-c",
        &format!(
            "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\nfor i in range(100): s.sendto(b'x'*(i+1),('{B_IP}',9999))"
        ),
    ]));
    let www = t.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("big"), vec![b'z'; 200_000]).unwrap();
    let _nginx = common::nginx(&t.b, B_IP, t.dir.path(), &www);
    let mut curl_ok = 0;
    for _ in 0..5 {
        let o =
            t.a.cmd("curl")
                .args([
                    "-s",
                    "-o",
                    "/dev/null",
                    "-w",
                    "%{http_code}",
                    "--max-time",
                    "5",
                ])
                .arg(format!("http://{B_IP}/big"))
                .output()
                .unwrap();
        if String::from_utf8_lossy(&o.stdout) == "200" {
            curl_ok += 1;
        }
    }
    std::thread::sleep(Duration::from_millis(300));
    ta.interrupt();
    tb.interrupt();
    done_tx.send(()).unwrap();
    let (got, stats, ms, mode) = capture.join().unwrap();

    assert!(
        ping.status.success() && ping_out.contains(" 0% packet loss"),
        "{ping_out} {}",
        String::from_utf8_lossy(&ping.stderr)
    );
    assert_eq!(curl_ok, 5, "pods' HTTP traffic works through the mirror");
    eprintln!("xdp mode {mode:?}, mirror {ms:?}, sources {stats:?}");
    for (st, k, _) in &stats {
        assert_eq!(st.dropped, 0, "{k:?}");
        assert_eq!(
            k.rx_ring_full + k.rx_dropped + k.rx_invalid_descs,
            0,
            "{k:?}"
        );
        assert_eq!(st.malformed, 0, "nothing untagged or unattributed");
        assert_eq!(st.unstamped, 0, "every copy carried its arrival stamp");
    }
    assert_eq!(ms.failed + ms.tag_failed, 0, "{ms:?}");

    // Compare per observation point and direction with tcpdump, frame for frame.
    for (idx, file, pod_mac, name) in [
        (ha_idx, &pa, mac_a_pod, "ha"),
        (hb_idx, &pb, mac_b_pod, "hb"),
    ] {
        let reference = pcap_frames(file);
        for dir in [Direction::FromPod, Direction::ToPod] {
            let mut want: Vec<Vec<u8>> = reference
                .iter()
                .filter(|f| (f[6..12] == pod_mac) == (dir == Direction::FromPod))
                .cloned()
                .collect();
            let mut have: Vec<Vec<u8>> = got
                .iter()
                .filter(|g| g.1 == idx && g.2 == dir)
                .map(|g| g.3.clone())
                .collect();
            want.sort();
            have.sort();
            assert!(
                want.len() > 100,
                "{name} {dir:?}: reference has {} frames",
                want.len()
            );
            assert_eq!(have.len(), want.len(), "{name} {dir:?}: frame count");
            assert!(have == want, "{name} {dir:?}: frames differ from tcpdump's");
        }
    }
    assert!(got.iter().all(|g| g.1 == ha_idx || g.1 == hb_idx));
    // Each frame's time (the mirror's stamp at the veth, converted from the monotonic to
    // the wall clock) against the time tcpdump's packet socket gave the same frame on the
    // same veth: microseconds apart, where a wrong clock or offset would be far off.
    let mut times: HashMap<(u32, Vec<u8>), Vec<u64>> = HashMap::new();
    for g in &got {
        times.entry((g.1, g.3.clone())).or_default().push(g.4);
    }
    let mut off: Vec<i64> = Vec::new();
    for (idx, file) in [(ha_idx, &pa), (hb_idx, &pb)] {
        for (t, f) in pcap_frames_timed(file) {
            let mine = times.get_mut(&(idx, f)).expect("frame captured");
            off.push(mine.remove(0) as i64 - t as i64);
        }
    }
    off.sort_unstable_by_key(|d| d.abs());
    let (med, worst) = (off[off.len() / 2], off[off.len() - 1]);
    eprintln!("AF_XDP time - tcpdump time per frame: median {med} ns, largest {worst} ns");
    assert!(med.abs() < 100_000, "median {med} ns");
    assert!(worst.abs() < 10_000_000, "largest {worst} ns");
    // Known counts: 20 echo requests leave pod A and reach pod B, 100 datagrams likewise.
    let icmp = |obs, dir, ty| {
        got.iter()
            .filter(|g| g.1 == obs && g.2 == dir && g.3.len() > 34 && g.3[23] == 1 && g.3[34] == ty)
            .count()
    };
    assert_eq!(icmp(ha_idx, Direction::FromPod, 8), 20);
    assert_eq!(icmp(hb_idx, Direction::ToPod, 8), 20);
    assert_eq!(icmp(hb_idx, Direction::FromPod, 0), 20);
    assert_eq!(icmp(ha_idx, Direction::ToPod, 0), 20);
    let udp = |obs, dir| {
        got.iter()
            .filter(|g| {
                g.1 == obs
                    && g.2 == dir
                    && g.3.len() > 38
                    && g.3[23] == 17
                    && g.3[36..38] == [0x27, 0x0f]
            })
            .count()
    };
    assert_eq!(udp(ha_idx, Direction::FromPod), 100);
    assert_eq!(udp(hb_idx, Direction::ToPod), 100);
    // Both directions of every TCP connection reached one queue (one worker).
    type FlowAt = (u32, ([u8; 6], [u8; 6]));
    let mut queue_of: HashMap<FlowAt, u32> = HashMap::new();
    let mut queues_used = [0usize; 2];
    for g in &got {
        if let Some(flow) = tcp_flow(&g.3) {
            queues_used[g.0 as usize] += 1;
            let q = *queue_of.entry((g.1, flow)).or_insert(g.0);
            assert_eq!(q, g.0, "flow {flow:?} split across queues");
        }
    }
    eprintln!(
        "TCP frames per queue: {queues_used:?}, flows: {}",
        queue_of.len()
    );

    // Nothing left behind.
    for h in [&ha, &hb] {
        let q = ipn_tc(&t.node, &["qdisc", "show", "dev", h]);
        assert!(!q.contains("clsact"), "{h}: {q}");
        for d in ["ingress", "egress"] {
            let f = ipn_tc(&t.node, &["filter", "show", "dev", h, d]);
            assert!(f.trim().is_empty(), "{h} {d}: {f}");
        }
    }
    let links = ipn(&t.node, &["link", "show"]);
    assert!(!links.contains(&cfg.device), "{links}");
    assert!(!links.contains(" xdp"), "{links}");
}

/// AF_XDP directly on an interface (a SPAN port): the XDP program stamps each frame in a
/// header the source strips, and a frame of a queue without a socket goes on to the
/// kernel stack as it came, without the header. A two-queue veth, the socket on queue 0
/// only; trafgen sends 200 UDP datagrams from 200 source ports, which spread over both
/// queues (trafgen's frames, like a NIC's, go through the veth's XDP; a local socket's
/// mostly do not). Those of queue 0 must reach the source stamped and as sent, those of
/// queue 1 a UDP socket behind the stack, intact; each datagram exactly once.
#[test]
fn direct_interface_frames_are_stamped_and_the_rest_pass_unchanged() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let ns = Netns::new("ptd");
    let dir = tempfile::tempdir().unwrap();
    let (snd, rcv) = (unique("xd"), unique("xd"));
    ipn(
        &ns,
        &[
            "link",
            "add",
            &snd,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
            "type",
            "veth",
            "peer",
            "name",
            &rcv,
            "numtxqueues",
            "2",
            "numrxqueues",
            "2",
        ],
    );
    for (i, ip) in [(&snd, "10.214.0.1/24"), (&rcv, "10.214.0.2/24")] {
        ipn(&ns, &["addr", "add", ip, "dev", i]);
        ipn(&ns, &["link", "set", i, "up"]);
    }
    let rcv_mac = mac_of(&ns, &rcv);
    let mac: Vec<String> = rcv_mac.iter().map(|b| format!("{b:02x}")).collect();
    const N: usize = 200;
    const PAYLOAD: &str = "podtap direct payload";
    let tg = dir.path().join("udp.cfg");
    std::fs::write(
        &tg,
        format!(
            "{{ eth(da={}, sa=02:00:00:00:00:01), ipv4(saddr=10.214.0.9, daddr=10.214.0.2), \
             udp(sp=dinc(20000, {}, 1), dp=7000), \"{PAYLOAD}\" }}",
            mac.join(":"),
            20000 + N - 1
        ),
    )
    .unwrap();
    let mut listener = Proc(Some(
        ns.cmd("python3")
            .args([
                "-c",
                "import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n\
                 s.bind(('10.214.0.2',7000))\ns.settimeout(3)\nprint('READY',flush=True)\n\
                 try:\n  while True:\n    d,a=s.recvfrom(2000)\n    print(a[1],d.decode(),flush=True)\n\
                 except socket.timeout: pass",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    ));
    let out = listener.0.as_mut().unwrap().stdout.take().unwrap();
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = line_tx.send(l);
        }
    });
    assert_eq!(
        line_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        "READY"
    );

    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
    let capture = std::thread::spawn({
        let (ns, rcv) = (ns.name.clone(), rcv.clone());
        move || {
            in_netns(&ns, move || {
                let mut src = XdpSource::open(&rcv, 0, &small_xdp(), Decap::Plain).unwrap();
                ready_tx.send(()).unwrap();
                let mut got: Vec<(Vec<u8>, u64)> = Vec::new();
                let mut deadline = None;
                loop {
                    let n = src
                        .next_batch(64, |f| got.push((f.data.to_vec(), f.ts.as_nanos())))
                        .unwrap()
                        .unwrap();
                    if deadline.is_none() && done_rx.try_recv().is_ok() {
                        deadline = Some(Instant::now() + Duration::from_millis(500));
                    }
                    if deadline.is_some_and(|d| Instant::now() > d) {
                        break;
                    }
                    if n == 0 {
                        src.wait(5).unwrap();
                    }
                }
                (got, src.stats())
            })
            .unwrap()
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    let sent_at = podtap::time::Timestamp::now().as_nanos();
    sh(ns
        .cmd("trafgen")
        .args(["-o", &snd, "-n", &N.to_string(), "-P", "1", "-q", "-i"])
        .arg(&tg));
    let done_at = podtap::time::Timestamp::now().as_nanos();
    std::thread::sleep(Duration::from_millis(300));
    done_tx.send(()).unwrap();
    let (got, stats) = capture.join().unwrap();
    let mut passed = Vec::new();
    while let Ok(l) = line_rx.recv_timeout(Duration::from_secs(5)) {
        passed.push(l);
    }
    listener.interrupt();

    let udp: Vec<&(Vec<u8>, u64)> = got
        .iter()
        .filter(|(f, _)| f.len() > 42 && f[23] == 17 && f[36..38] == [0x1b, 0x58])
        .collect();
    eprintln!(
        "queue 0 (AF_XDP): {} datagrams, queue 1 (stack): {}, {stats:?}",
        udp.len(),
        passed.len()
    );
    assert_eq!(stats.unstamped, 0, "every frame carried its stamp");
    let mut seen = std::collections::HashSet::new();
    for (f, ts) in &udp {
        // The header is gone: the frame is the Ethernet frame as sent.
        assert_eq!(f[..6], rcv_mac, "destination MAC first");
        assert_eq!(&f[42..], PAYLOAD.as_bytes());
        assert!(seen.insert(u16::from_be_bytes([f[34], f[35]])));
        assert!(
            (sent_at..=done_at).contains(ts),
            "stamp {ts} outside the sending {sent_at}..{done_at}"
        );
    }
    for l in &passed {
        let (port, data) = l.split_once(' ').unwrap();
        assert_eq!(data, PAYLOAD, "through the stack unchanged");
        assert!(seen.insert(port.parse().unwrap()), "{port} seen twice");
    }
    assert!(
        !udp.is_empty() && !passed.is_empty(),
        "both queues carried datagrams"
    );
    assert_eq!(seen.len(), N, "every datagram arrived once");
    assert!(seen.iter().all(|p| (20000..20000 + N as u16).contains(p)));
}

fn ipn_tc(ns: &Netns, args: &[&str]) -> String {
    sh(ns.cmd("tc").args(args))
}

/// Child half of the stale test: set up, report, then wait to be killed.
#[test]
fn stale_child() {
    let Ok(spec) = std::env::var("PODTAP_STALE_CHILD") else {
        return;
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let (veth, ha_idx, dev, peer, state) = (
        parts[0],
        parts[1].parse().unwrap(),
        parts[2],
        parts[3],
        parts[4],
    );
    let cfg = MirrorConfig {
        device: dev.into(),
        peer: peer.into(),
        state_dir: state.into(),
        ..Default::default()
    };
    let mut m = Mirror::new(&cfg, 1).unwrap();
    m.attach(ha_idx).unwrap();
    let _s = XdpSource::open(veth, 0, &small_xdp(), Decap::Plain).unwrap();
    let _c = XdpSource::open(m.capture_device(), 0, &small_xdp(), Decap::Mirror(m.tags())).unwrap();
    println!("READY");
    std::thread::sleep(Duration::from_secs(60));
}

fn xdp_prog_ids(ns: &Netns, dev: &str) -> Vec<String> {
    let out = ipn(ns, &["-d", "link", "show", "dev", dev]);
    out.split("prog/xdp id ")
        .skip(1)
        .map(|s| s.split_whitespace().next().unwrap().to_string())
        .collect()
}

#[test]
fn stale_setup_of_a_killed_run_is_replaced_not_stacked() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new();
    let cfg = t.mirror_cfg();
    // A plain veth for the direct (no mirror) AF_XDP case.
    let (x0, x1) = (unique("xs"), unique("xs"));
    ipn(
        &t.node,
        &["link", "add", &x0, "type", "veth", "peer", "name", &x1],
    );
    ipn(&t.node, &["link", "set", &x0, "up"]);
    ipn(&t.node, &["link", "set", &x1, "up"]);
    let ha_idx: u32 = sh(t
        .node
        .cmd("cat")
        .arg(format!("/sys/class/net/{}/ifindex", t.ha)))
    .trim()
    .parse()
    .unwrap_or(0);
    let ha_idx = if ha_idx == 0 {
        panic!("no ifindex")
    } else {
        ha_idx
    };
    let spec = format!(
        "{x0},{ha_idx},{},{},{}",
        cfg.device,
        cfg.peer,
        cfg.state_dir.display()
    );
    let exe = std::env::current_exe().unwrap();
    let mut child = t
        .node
        .cmd(exe.to_str().unwrap())
        .args(["--exact", "stale_child", "--nocapture", "--test-threads=1"])
        .env("PODTAP_STALE_CHILD", &spec)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if l.contains("READY") {
                let _ = tx.send(());
            }
        }
    });
    let ready = rx.recv_timeout(Duration::from_secs(60));
    let _ = child.kill(); // SIGKILL: no destructor runs
    let _ = child.wait();
    ready.expect("child set up");
    let stale_ids = xdp_prog_ids(&t.node, &x0);
    assert_eq!(stale_ids.len(), 1, "the killed run left its program");
    let f = ipn_tc(&t.node, &["filter", "show", "dev", &t.ha, "ingress"]);
    assert!(
        f.contains("podtap_mirror_i"),
        "the killed run left its filter: {f}"
    );

    let node = t.node.name.clone();
    let (cfg2, x0b) = (cfg.clone(), x0.clone());
    let node_ns = Netns { name: node.clone() };
    let (ids_during, filters_during) = in_netns(&node, move || {
        let mut m = Mirror::new(&cfg2, 1).unwrap();
        m.attach(ha_idx).unwrap();
        let _c =
            XdpSource::open(m.capture_device(), 0, &small_xdp(), Decap::Mirror(m.tags())).unwrap();
        let _s = XdpSource::open(&x0b, 0, &small_xdp(), Decap::Plain).unwrap();
        let ids = xdp_prog_ids(&node_ns, &x0b);
        let f = sh(node_ns.cmd("tc").args([
            "filter",
            "show",
            "dev",
            &t_ha_name(&node_ns, ha_idx),
            "ingress",
        ]));
        std::mem::forget(node_ns);
        (ids, f)
    })
    .unwrap();
    assert_eq!(
        ids_during.len(),
        1,
        "one XDP program, not stacked: {ids_during:?}"
    );
    assert_ne!(ids_during, stale_ids, "the stale program was replaced");
    assert_eq!(
        filters_during
            .matches("handle 0x7074 podtap_mirror_i")
            .count(),
        1,
        "{filters_during}"
    );
    // After the second run ends, nothing is left.
    assert!(xdp_prog_ids(&t.node, &x0).is_empty());
    let q = ipn_tc(&t.node, &["qdisc", "show", "dev", &t.ha]);
    assert!(!q.contains("clsact"), "{q}");
    assert!(!ipn(&t.node, &["link", "show"]).contains(&cfg.device));
}

fn t_ha_name(ns: &Netns, ifindex: u32) -> String {
    let out = sh(ns.cmd("ip").args(["-o", "link", "show"]));
    out.lines()
        .find(|l| l.starts_with(&format!("{ifindex}:")))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().split('@').next().unwrap().to_string())
        .unwrap()
}

/// Per-packet cost of the two mirror designs (run by hand: `cargo test --release --test
/// capture_xdp mirror_cost -- --ignored --nocapture`): 64-byte UDP from pod A to pod B
/// with iperf3, no mirror vs. the BPF tag mirror vs. u32 match-all + mirred, the copies
/// drained by AF_XDP on the capture device in both cases.
#[test]
#[ignore]
fn mirror_cost() {
    require_root();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t = Topo::new();
    let cfg = t.mirror_cfg();
    let node = t.node.name.clone();
    let idx = |name: &str| -> u32 {
        sh(t.node
            .cmd("cat")
            .arg(format!("/sys/class/net/{name}/ifindex")))
        .trim()
        .parse()
        .unwrap()
    };
    let (ha_idx, hb_idx) = (idx(&t.ha), idx(&t.hb));
    let _srv = Proc(Some(
        t.b.cmd("iperf3")
            .args(["-s", "-B", B_IP])
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    ));
    std::thread::sleep(Duration::from_millis(300));
    let run_iperf = |label: &str| {
        let out = sh(t
            .a
            .cmd("iperf3")
            .args(["-c", B_IP, "-u", "-b", "0", "-l", "64", "-t", "4", "-J"]));
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let s = &v["end"]["sum"];
        let pps = s["packets"].as_f64().unwrap_or(0.0) / s["seconds"].as_f64().unwrap_or(1.0);
        let lost = s["lost_percent"].as_f64().unwrap_or(0.0);
        eprintln!("{label:<28} {pps:>10.0} pkt/s sent, {lost:.1}% lost at the receiver");
        pps
    };
    let base = run_iperf("no mirror");
    let (tx, rx) = std::sync::mpsc::channel::<u8>();
    let (ack_tx, ack_rx) = std::sync::mpsc::channel::<()>();
    let cfg2 = cfg.clone();
    let (ha, hb) = (t.ha.clone(), t.hb.clone());
    let h = std::thread::spawn(move || {
        in_netns(&node, move || {
            let mut m = Mirror::new(&cfg2, 1).unwrap();
            let mut s = XdpSource::open(
                m.capture_device(),
                0,
                &XdpConfig::default(),
                Decap::Mirror(m.tags()),
            )
            .unwrap();
            let drain = |s: &mut XdpSource, until: &std::sync::mpsc::Receiver<u8>| loop {
                let n = s.next_batch(64, |_| {}).unwrap().unwrap();
                if n == 0 {
                    if let Ok(c) = until.try_recv() {
                        return c;
                    }
                    let _ = s.wait(10);
                }
            };
            m.attach(ha_idx).unwrap();
            m.attach(hb_idx).unwrap();
            ack_tx.send(()).unwrap();
            drain(&mut s, &rx);
            m.detach(ha_idx).unwrap();
            m.detach(hb_idx).unwrap();
            for h in [&ha, &hb] {
                for d in ["ingress", "egress"] {
                    let _ = Command::new("tc")
                        .args(["qdisc", "add", "dev", h, "clsact"])
                        .status();
                    sh(Command::new("tc").args([
                        "filter",
                        "add",
                        "dev",
                        h,
                        d,
                        "pref",
                        "9",
                        "u32",
                        "match",
                        "u32",
                        "0",
                        "0",
                        "action",
                        "mirred",
                        "egress",
                        "mirror",
                        "dev",
                        &cfg2.device,
                    ]));
                }
            }
            ack_tx.send(()).unwrap();
            drain(&mut s, &rx);
            for h in [&ha, &hb] {
                let _ = Command::new("tc")
                    .args(["qdisc", "del", "dev", h, "clsact"])
                    .status();
            }
            s.refresh_kernel_stats();
            eprintln!(
                "xdp source: {:?} {:?}, mirror {:?}",
                s.stats(),
                s.kernel_stats(),
                m.stats()
            );
        })
        .unwrap()
    });
    ack_rx.recv().unwrap();
    let bpf = run_iperf("BPF tag mirror");
    tx.send(1).unwrap();
    ack_rx.recv().unwrap();
    let u32m = run_iperf("u32 + mirred (no attribution)");
    tx.send(2).unwrap();
    h.join().unwrap();
    eprintln!(
        "per-packet sender cost vs no mirror: BPF +{:.0} ns, u32+mirred +{:.0} ns",
        1e9 / bpf - 1e9 / base,
        1e9 / u32m - 1e9 / base
    );
}
