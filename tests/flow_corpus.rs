//! Flow tracking against tshark on the third-party capture corpus (`../shared/pcaps`, read
//! in place): every capture replays without error, and its TCP and UDP conversations are
//! podtap's flows, with the same frames and bytes in each direction.
//!
//! tshark's `-z conv` rounds bytes to kB, so the conversations are rebuilt here from
//! per-frame fields (`tcp.stream`/`udp.stream`, endpoints, `frame.len`).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn captures() -> Vec<PathBuf> {
    let v = common::captures();
    assert!(
        v.len() > 200,
        "the capture corpus must be beside the repository (found {})",
        v.len()
    );
    v
}

/// (transport, endpoint A, endpoint B) with A < B, and [frames, bytes] A->B and B->A.
type Conv = (String, String, String);
type Counts = [u64; 4];
/// Each conversation with its packet and byte counts, as one tool reports them.
type Conversations = Vec<(Conv, Counts)>;

fn endpoint(addr: &str, port: &str) -> String {
    let a = if addr.contains(':') {
        format!("[{addr}]")
    } else {
        addr.to_string()
    };
    format!("{a}:{port}")
}

/// Conversations as tshark sees them, one entry per stream (so reused ports stay apart).
fn tshark_conversations(file: &Path) -> Conversations {
    let fields = [
        "frame.protocols",
        "frame.len",
        "tcp.stream",
        "udp.stream",
        "ip.src",
        "ip.dst",
        "ipv6.src",
        "ipv6.dst",
        "tcp.srcport",
        "tcp.dstport",
        "udp.srcport",
        "udp.dstport",
    ];
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-Y", "tcp || udp", "-T", "fields", "-E", "occurrence=l"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("tshark is installed (make deps-test)");
    let mut streams: BTreeMap<(String, u64), (Conv, Counts)> = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let g = |i: usize| f.get(i).copied().unwrap_or("");
        // Headers quoted inside ICMP errors are not conversations.
        if g(0).contains(":icmp") {
            continue;
        }
        let (proto, stream, sp, dp) = if !g(2).is_empty() {
            ("tcp", g(2), g(8), g(9))
        } else {
            ("udp", g(3), g(10), g(11))
        };
        let Ok(stream) = stream.parse::<u64>() else {
            continue;
        };
        let (src, dst) = if !g(6).is_empty() {
            (g(6), g(7))
        } else {
            (g(4), g(5))
        };
        let (s, d) = (endpoint(src, sp), endpoint(dst, dp));
        let len: u64 = g(1).parse().unwrap_or(0);
        let entry = streams
            .entry((proto.to_string(), stream))
            .or_insert_with(|| {
                let (a, b) = if s <= d {
                    (s.clone(), d.clone())
                } else {
                    (d.clone(), s.clone())
                };
                ((proto.to_string(), a, b), [0; 4])
            });
        let forward = s == entry.0.1;
        let i = if forward { 0 } else { 2 };
        entry.1[i] += 1;
        entry.1[i + 1] += len;
    }
    streams.into_values().collect()
}

fn podtap_conversations(file: &Path) -> Conversations {
    let recs = common::replay(&[file], &[]);
    common::records(&recs, "flow")
        .into_iter()
        .filter(|f| f["network.transport"] == "tcp" || f["network.transport"] == "udp")
        .map(|f| {
            let c = endpoint(
                f["client.address"].as_str().unwrap_or(""),
                &f["client.port"].to_string(),
            );
            let s = endpoint(
                f["server.address"].as_str().unwrap_or(""),
                &f["server.port"].to_string(),
            );
            let n = |k: &str| f[k].as_u64().unwrap_or(0);
            let (cp, cb, sp, sb) = (
                n("podtap.flow.client.packets"),
                n("podtap.flow.client.bytes"),
                n("podtap.flow.server.packets"),
                n("podtap.flow.server.bytes"),
            );
            let transport = f["network.transport"].as_str().unwrap_or("").to_string();
            if c <= s {
                ((transport, c, s), [cp, cb, sp, sb])
            } else {
                ((transport, s, c), [sp, sb, cp, cb])
            }
        })
        .collect()
}

/// Captures where podtap's flows differ from tshark's conversations by design.
const EXPECTED: &[(&str, &str)] = &[(
    "packetbeat/wsgi_drum.pcap",
    "frames of finished connections reappear with timestamps seconds in the past; podtap expires \
     flows on the packet clock, so the late copies form new midstream flows (tshark ignores time)",
)];

#[test]
fn flows_match_tshark_conversations() {
    let files = captures();
    let results = common::for_each_file(&files, |f| {
        (
            f.to_path_buf(),
            tshark_conversations(f),
            podtap_conversations(f),
        )
    });
    let mut failures = Vec::new();
    let mut compared = 0;
    for (file, mut want, mut got) in results {
        want.sort();
        got.sort();
        compared += want.len();
        if want != got && !EXPECTED.iter().any(|(f, _)| file.ends_with(f)) {
            let only = |a: &[(Conv, Counts)], b: &[(Conv, Counts)]| -> Vec<String> {
                a.iter()
                    .filter(|x| !b.contains(x))
                    .take(4)
                    .map(|(c, n)| format!("{} {}<->{} {n:?}", c.0, c.1, c.2))
                    .collect()
            };
            failures.push(format!(
                "{}: tshark {} conversations, podtap {}\n    tshark only: {:?}\n    podtap only: {:?}",
                file.display(),
                want.len(),
                got.len(),
                only(&want, &got),
                only(&got, &want)
            ));
        }
    }
    eprintln!("{compared} conversations compared");
    assert!(
        compared >= 350,
        "too few conversations compared: {compared}"
    );
    assert!(
        failures.is_empty(),
        "{} captures differ from tshark:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The corpus captures with packets to group addresses (tshark: `ip.dst == 224.0.0.0/4 ||
/// ip.dst == 255.255.255.255 || ipv6.dst == ff00::/8` over every capture).
const GROUP_CAPTURES: &[&str] = &[
    "packetbeat/libbeat-flowhash/icmp6.pcap",
    "packetbeat/dhcp.pcap",
];

fn is_group(a: &std::net::IpAddr) -> bool {
    match a {
        std::net::IpAddr::V4(a) => a.is_multicast() || a.is_broadcast(),
        std::net::IpAddr::V6(a) => a.is_multicast(),
    }
}

/// A multicast or broadcast address is never a flow's client. Each packet tshark shows
/// going to a group address belongs to a podtap flow whose client is the packet's source
/// and whose server is the group (the ICMPv6 router solicitation to ff02::2, router
/// advertisement to ff02::1 and neighbour solicitation to a solicited-node address of
/// `icmp6.pcap`; DHCP discovers to 255.255.255.255); and no flow of the whole corpus has a
/// group address as its client.
#[test]
fn group_addresses_are_the_server_side() {
    use std::collections::HashMap;
    use std::net::IpAddr;
    let dir = common::pcaps_dir();
    let (mut checked, mut solicitations) = (0, 0);
    let mut failures = Vec::new();
    for rel in GROUP_CAPTURES {
        let f = dir.join(rel);
        let out = Command::new("tshark")
            .arg("-r")
            .arg(&f)
            .args([
                "-Y",
                "ip.dst == 224.0.0.0/4 || ip.dst == 255.255.255.255 || ipv6.dst == ff00::/8",
                "-T",
                "fields",
                "-E",
                "occurrence=l",
            ])
            .args([
                "-e", "ip.src", "-e", "ip.dst", "-e", "ipv6.src", "-e", "ipv6.dst",
            ])
            .args(["-e", "icmpv6.type"])
            .output()
            .expect("tshark is installed");
        let mut to_groups: HashMap<(IpAddr, IpAddr), u64> = HashMap::new();
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let c: Vec<&str> = l.split('\t').collect();
            let (src, dst) = if c[2].is_empty() {
                (c[0], c[1])
            } else {
                (c[2], c[3])
            };
            solicitations += (c[4] == "133") as u64;
            *to_groups
                .entry((src.parse().unwrap(), dst.parse().unwrap()))
                .or_default() += 1;
        }
        assert!(!to_groups.is_empty(), "{rel} has group traffic");
        let recs = common::replay(&[&f], &[]);
        let mut by_ends: HashMap<(IpAddr, IpAddr), u64> = HashMap::new();
        for r in common::records(&recs, "flow") {
            let addr = |k: &str| r[k].as_str().unwrap().parse::<IpAddr>().unwrap();
            *by_ends
                .entry((addr("client.address"), addr("server.address")))
                .or_default() += r["podtap.flow.client.packets"].as_u64().unwrap();
        }
        for (ends, n) in to_groups {
            checked += n;
            if by_ends.get(&ends) != Some(&n) {
                failures.push(format!(
                    "{rel}: {} -> {}: tshark {n} packets, podtap's client sent {:?}",
                    ends.0,
                    ends.1,
                    by_ends.get(&ends)
                ));
            }
        }
    }
    assert_eq!(solicitations, 1, "the router solicitation was among them");
    assert!(checked >= 5, "group packets checked: {checked}");
    // The whole corpus, in one run.
    let files = captures();
    let paths: Vec<&Path> = files.iter().map(|p| p.as_path()).collect();
    for r in common::records(&common::replay(&paths, &[]), "flow") {
        let c: IpAddr = r["client.address"].as_str().unwrap().parse().unwrap();
        if is_group(&c) {
            failures.push(format!("group client: {r}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
