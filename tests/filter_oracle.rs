//! The packet filter (`--filter`, `capture.filter`) against libpcap itself: over real
//! captures of several link types, for every expression podtap accepts it keeps exactly
//! the frames `tcpdump -r FILE -w OUT EXPR` keeps; it refuses every expression libpcap
//! refuses; and what libpcap accepts but podtap does not implement is refused with an
//! error that says so.
//!
//! tcpdump writes the frames it keeps, which are found again, in order, among the
//! capture's frames, so the comparison is frame by frame, not a count. podtap filters only
//! the frames it decodes as IP packets (ARP and the like are never analysed, whatever the
//! filter), so those are the frames compared. The captures hold no tunnels or IP
//! fragments, where podtap by design filters the inner packet or the reassembled datagram;
//! VLAN-tagged captures are only given expressions that start with `vlan`, after which
//! libpcap, too, looks inside the tag.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use podtap::capture::Source;
use podtap::capture::pcap_file::{PcapFileSource, PcapWriter};
use podtap::filter::{Filter, FilterError};
use podtap::packet::{Decoded, Defragmenter, LinkType, TunnelKind, decode};
use podtap::time::Timestamp;

/// ARP only: no frame podtap analyses, but tcpdump keeps some (`host` matches ARP).
const ARP: &str = "packetbeat/libbeat-flowhash/arp.pcap";

/// Ethernet captures of IPv4, IPv6, TCP, UDP, SCTP, ICMP, ICMPv6, DHCP broadcasts and SIP.
const ETHERNET: [&str; 9] = [
    "packetbeat/libbeat-flowhash/icmp.pcap",
    "packetbeat/libbeat-flowhash/icmp6.pcap",
    "packetbeat/libbeat-flowhash/ipv6.pcap",
    "packetbeat/libbeat-flowhash/sctp.pcap",
    "packetbeat/libbeat-flowhash/tcp.pcap",
    "packetbeat/libbeat-flowhash/udp.pcap",
    "packetbeat/dhcp.pcap",
    "packetbeat/sip.pcap",
    "tcpdump/dns_udp.pcap",
];

/// Linux cooked (the issue's capture), BSD loopback over IPv4 and IPv6, and raw IP.
const OTHER_LINKS: [&str; 4] = [
    "packetbeat/http_minitwit.pcap",
    "packetbeat/mysql_connection.pcap",
    "suricata-verify/http-ipv6/input.pcap",
    "suricata-verify/pgsql/pgsql-cancel-request/input.pcap",
];

/// 802.1Q-tagged Ethernet (VLAN 1 and 10), IPv4 and IPv6.
const VLAN: [&str; 3] = [
    "packetbeat/http_over_vlan.pcap",
    "packetbeat/icmp/icmp4_ping_over_vlan.pcap",
    "packetbeat/icmp/icmp6_ping_over_vlan.pcap",
];

/// Expressions for the untagged captures: precedence, `not`, parentheses, qualifier
/// inheritance, directions, hosts, networks (and their short forms), ports, port ranges,
/// service names with their protocols, protocols, and libpcap's number syntax.
const EXPRESSIONS: &[&str] = &[
    // Precedence: `and` and `or` are equal and group from the left; `not` binds tightest.
    "tcp port 5000 or tcp port 80 and host 192.168.1.104",
    "tcp or udp and port 53",
    "udp and port 53 or tcp",
    "udp and port 53 or tcp and port 80",
    "udp || icmp && host 192.168.0.1",
    "not tcp and port 53",
    "not udp or port 53",
    "! ip6 && !udp || icmp",
    "not not tcp and not not port 80",
    "not (tcp and port 80) and (port 80 or port 53 or port 5000)",
    "tcp and (port 80 or port 443) or udp and port 53",
    "(tcp or udp) and not (port 80 or port 5000)",
    "((ip and tcp) or (ip6 and tcp)) and not port 25",
    // Qualifier inheritance: a bare value repeats the last primitive's qualifiers.
    "port 80 or 5000",
    "port 80 or 443 and tcp",
    "tcp dst port 5000 or 3306",
    "src port 80 or 5000 or 53",
    "host 192.168.0.1 or 8.8.8.8 or 127.0.0.1",
    "host 127.0.0.1 and not 192.168.1.104",
    "not host 192.168.0.1 and 255.255.255.255",
    "ip src 192.168.0.1 or 192.168.1.52",
    "src net 192.168.0.0/16 or 10.0.0.0/8",
    "port 80 or (tcp) and 5000",
    "port 80 and not not 54742",
    "not port 5000 or 80",
    "tcp and not port 5000 and not 80",
    "port (53 or 67 or 5060)",
    "host (192.168.0.1 or 66.35.250.204)",
    "port not 80",
    "port 1 or (53 and not (67 or 80))",
    "port 68 or ((67) or 53)",
    "proto 6 or 17",
    "ip proto \\udp or \\icmp",
    // Directions.
    "src host 127.0.0.1",
    "dst port 53",
    "src or dst port 5060",
    "dst or src host 8.8.8.8",
    "src and dst net 192.168.0.0/16",
    "dst and src host ::1",
    "src 192.168.170.8",
    "dst 3ffe:507:0:1:200:86ff:fe05:80da",
    // Hosts and networks, IPv4 and IPv6, and libpcap's short and numeric forms.
    "host 66.35.250.204",
    "host 2607:f8b0:400c:c03::1a",
    "ip6 host ::1",
    "host ::1 and port 8000",
    "net 192.168.0.0/24",
    "net 192.168",
    "host 192.168",
    "net 127",
    "net 10.0.2",
    "net 0",
    "src 0",
    "net 0.0.0.0/0",
    "net 255.255.255.255",
    "src 0x7f000001",
    "host 2130706433",
    "net 3ffe:507::/32",
    "ip6 src net 2001:470::/32",
    "net fe80::/10",
    "net ::/0",
    "host ::1/128",
    "net 100.88.2.140/0x20",
    "ip host 8.8.8.8",
    // Ports (TCP, UDP and SCTP alike), ranges and service names.
    "port 7",
    "port 5432",
    "sctp port 7",
    "udp port 7 or 53",
    "tcp src port 80",
    "udp dst port 67",
    "port 011610",
    "port 0x1388",
    "portrange 1-1024",
    "portrange 5000-5010",
    "src portrange 30000-65535",
    "udp portrange 50-70",
    "portrange 53",
    "portrange 05000-05001",
    "portrange ftp-http",
    "portrange 1-http",
    "portrange domain-sip",
    "port http",
    "port https or domain",
    "port sip",
    "tcp port sip or udp port sip",
    "udp port domain",
    "port mysql or postgresql",
    "port postgres",
    "port smtp",
    "port ntp or syslog or bootpc",
    // Protocols and families.
    "tcp",
    "udp",
    "sctp",
    "icmp",
    "icmp6",
    "ip",
    "ip6",
    "not ip",
    "ip or ip6 and tcp",
    "ip6 and tcp",
    "proto 132",
    "proto \\sctp",
    "ip proto 1",
    "ip6 proto 58",
    "ip6 proto 1 or ip proto 58 or icmp",
    "proto ICMP or IPv6-ICMP",
    "proto 0x11",
    "proto 06",
    "ip6 proto \\tcp",
];

/// Expressions for the tagged captures. libpcap's `vlan` makes the primitives after it
/// look inside the tag, so from there on both read the same fields.
const VLAN_EXPRESSIONS: &[&str] = &[
    "vlan",
    "not vlan",
    "vlan 10",
    "vlan 1",
    "vlan 12",
    "vlan 0xa",
    "vlan 012",
    "vlan (10)",
    "vlan and icmp",
    "vlan and icmp6",
    "vlan 1 and tcp port 8080",
    "vlan 10 and (icmp or icmp6)",
    "vlan and host 10.0.0.1 or ::2",
    "vlan and port 8080 or 60335 and tcp",
    "vlan 10 and not ip6 and host 10.0.0.2",
    "vlan and net 10.0.0.0/8 and not icmp",
];

/// Refused by libpcap, so refused by podtap. Each is checked against tcpdump too.
const REFUSED_BY_BOTH: &[&str] = &[
    // No bare value without a qualifier to repeat.
    "10.0.0.1",
    "10.0.0.0/8",
    "(port 80) or 443",
    "tcp or 80",
    "icmp or 1",
    "ip and 1.2.3.4",
    "vlan 100 or 200",
    "not (tcp) or 80",
    "port 80 and (tcp or 443)",
    "port 80 or (443 and tcp)",
    // Only a number may open a parenthesised group of values.
    "port 1 or ((443 or 80) or 8080)",
    "port 1 or ((not 443) or 80)",
    "vlan (100 or 200)",
    // Keywords and names are case-sensitive.
    "TCP",
    "Tcp port 80",
    "tcp AND udp",
    "NOT tcp",
    "port HTTP",
    // A service name's protocols.
    "udp port http",
    "tcp port ntp",
    "udp portrange ftp-http",
    "sctp port http",
    // Masks need `net`; bad networks.
    "src 10.0.0.0/8",
    "host 10.0.0.0/8",
    "src fd00::/8",
    "net 10/8",
    "net 10.0.0.1/8",
    "net fd00::1/8",
    "net 1.2.3.4/33",
    "net fd00::/129",
    "host 10.0.0.256",
    "host 0x0a.0.0.1",
    // Numbers: octal, ranges.
    "port 080",
    "vlan 08",
    "port 65536",
    "port 99999999999",
    "portrange 1-70000",
    "portrange ftp-data-http",
    "vlan 4096",
    // Qualifiers that do not combine.
    "ip port 80",
    "ip6 portrange 1-2",
    "tcp host 1.2.3.4",
    "tcp src 80",
    "udp net 10.0.0.0/8",
    "tcp proto 6",
    "src proto 6",
    "ip host ::1",
    "ip6 host 1.2.3.4",
    "ip6 net 10.0.0.0/8",
    "ip src 10.0.0.0/8",
    "port 80 or 10.0.0.1",
    "ip6 proto 6 or 1.2.3.4",
    "src or 10.0.0.1",
    // Names libpcap does not know, or reads as keywords.
    "port dns",
    "port kafka",
    "proto \\icmp6",
    "proto tcp",
    "port \\http&&tcp",
    // MAC addresses where an IP value belongs.
    "host 000000000010",
    "port 000000000010",
    "net 0010.0020.0030",
    // Plain syntax errors.
    "tcp udp",
    "udp 53",
    "port 80 80",
    "(tcp",
    "tcp)",
    "()",
    "tcp and",
    "and tcp",
    "not",
    "tcp & udp",
    "tcp\u{a0}and udp",
    "\\tcp",
];

/// Accepted by libpcap but not implemented by podtap: refused with an error containing
/// the text given. Checked against tcpdump too.
const REFUSED_BY_PODTAP: &[(&str, &str)] = &[
    ("host localhost", "expected an IP address after 'host'"),
    (
        "net link-local",
        "expected a network (ADDR/LEN) after 'net'",
    ),
    ("host \\127.0.0.1", "expected an IP address after 'host'"),
    ("port tcp-syn", "expected a port number after 'port'"),
    (
        "arp",
        "tcpdump keyword 'arp' at column 1 is not supported by podtap",
    ),
    ("ether host 00:11:22:33:44:55", "tcpdump keyword 'ether'"),
    ("tcp and less 100", "tcpdump keyword 'less' at column 9"),
    ("ip broadcast", "tcpdump keyword 'broadcast' at column 4"),
    (
        "net 10.0.0.0 mask 255.0.0.0",
        "tcpdump keyword 'mask' at column 14",
    ),
    (
        "tcp[13] & 2 != 0",
        "not supported by podtap: tcpdump's byte and arithmetic",
    ),
    (
        "len > 100",
        "character '>' at column 5 is not supported by podtap",
    ),
    (
        "port 80 or whois",
        "expected a port number (repeating 'port' from column 1)",
    ),
    (
        "portrange 2000-1000",
        "the start (2000) is above the end (1000)",
    ),
    (
        "portrange 1-2x",
        "expected a port range (N-M) after 'portrange'",
    ),
    ("vlan 0", "use 'not vlan' for untagged"),
    ("proto 256", "protocol numbers are 0 to 255"),
    (
        "ip proto \\mptcp",
        "expected a protocol number or name after 'proto'",
    ),
    (
        "net 10.0.0.0 / 8",
        "expected 'and', 'or' or end of input at column 14, found '/'",
    ),
];

/// A frame of a capture, owned.
struct Frame {
    data: Vec<u8>,
    ts: Timestamp,
    wire_len: u32,
    link: LinkType,
}

fn read_frames(path: &Path) -> Vec<Frame> {
    let mut src = PcapFileSource::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut frames = Vec::new();
    while src
        .next_batch(256, |f| {
            frames.push(Frame {
                data: f.data.to_vec(),
                ts: f.ts,
                wire_len: f.wire_len,
                link: f.link,
            })
        })
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .is_some()
    {}
    frames
}

/// A capture and its frames, checked to be one where podtap's and libpcap's views of a
/// packet coincide: no tunnels, no fragments, and some IP packets.
struct Capture {
    name: String,
    path: PathBuf,
    frames: Vec<Frame>,
}

impl Capture {
    fn load(rel: &str) -> Capture {
        let path = common::pcaps_dir().join(rel);
        let frames = read_frames(&path);
        let mut analysed = 0;
        for (i, f) in frames.iter().enumerate() {
            let mut d = Defragmenter::default();
            match decode(&f.data, f.link, f.ts, f.wire_len, &mut d) {
                Ok(Decoded::Packet(p)) => {
                    assert_eq!(p.tunnel.kind, TunnelKind::None, "{rel} frame {}", i + 1);
                    analysed += 1;
                }
                Ok(Decoded::FragmentHeld) => panic!("{rel} frame {}: a fragment", i + 1),
                Err(_) => {}
            }
        }
        assert!(analysed > 0, "{rel}: no IP packets");
        Capture {
            name: rel.to_string(),
            path,
            frames,
        }
    }

    /// Whether podtap keeps each frame; None for frames it does not analyse at all.
    fn podtap_keeps(&self, f: &Filter) -> Vec<Option<bool>> {
        self.frames
            .iter()
            .map(|fr| {
                let mut d = Defragmenter::default();
                match decode(&fr.data, fr.link, fr.ts, fr.wire_len, &mut d) {
                    Ok(Decoded::Packet(p)) => Some(f.matches(&p)),
                    _ => None,
                }
            })
            .collect()
    }

    /// Whether tcpdump keeps each frame, or its error message. `-O`: libpcap's optimizer
    /// refuses expressions that can match nothing here ("expression rejects all packets"),
    /// which is a statement about this file, not about the expression.
    fn tcpdump_keeps(&self, expr: &str, dir: &Path) -> Result<Vec<bool>, String> {
        let out = dir.join("kept.pcap");
        let o = Command::new("tcpdump")
            .args(["-O", "-r"])
            .arg(&self.path)
            .arg("-w")
            .arg(&out)
            .arg(expr)
            .output()
            .expect("tcpdump is installed");
        if !o.status.success() {
            return Err(String::from_utf8_lossy(&o.stderr)
                .lines()
                .filter(|l| !l.starts_with("reading from file"))
                .collect::<Vec<_>>()
                .join(" "));
        }
        let kept = read_frames(&out);
        let mut next = kept.iter().peekable();
        let keeps = self
            .frames
            .iter()
            .map(|f| next.next_if(|k| k.data == f.data).is_some())
            .collect();
        assert!(
            next.peek().is_none(),
            "{}: tcpdump wrote a frame that is not in the capture, in order ({expr})",
            self.name
        );
        Ok(keeps)
    }
}

/// `f` of every item, the work split over two threads (the machine has two cores).
fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let f = &f;
    std::thread::scope(|s| {
        let halves: Vec<_> = items
            .chunks(items.len().div_ceil(2).max(1))
            .map(|chunk| s.spawn(move || chunk.iter().map(f).collect::<Vec<_>>()))
            .collect();
        halves
            .into_iter()
            .flat_map(|h| h.join().expect("worker thread"))
            .collect()
    })
}

/// Frames where podtap and tcpdump disagree, as "frame N: podtap X, tcpdump Y".
fn disagreements(podtap: &[Option<bool>], tcpdump: &[bool]) -> Vec<String> {
    podtap
        .iter()
        .zip(tcpdump)
        .enumerate()
        .filter_map(|(i, (p, t))| match p {
            Some(p) if p != t => Some(format!("frame {}: podtap {p}, tcpdump {t}", i + 1)),
            _ => None,
        })
        .collect()
}

/// Every expression over every capture: tcpdump must accept it and podtap must keep the
/// same frames. Returns, per expression, how many analysed frames were kept and dropped
/// over all captures, so callers can check that each expression discriminates.
fn compare(captures: &[Capture], exprs: &[&str]) -> Vec<(usize, usize)> {
    let results = par_map(captures, |c| {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut failures = String::new();
        let mut counts = Vec::new();
        for expr in exprs {
            let f = match Filter::parse(expr) {
                Ok(f) => f,
                Err(e) => {
                    let _ = writeln!(failures, "  {expr:?}: podtap refuses it: {e}");
                    counts.push((0, 0));
                    continue;
                }
            };
            let podtap = c.podtap_keeps(&f);
            let tcpdump = match c.tcpdump_keeps(expr, dir.path()) {
                Ok(t) => t,
                Err(e) => {
                    let _ = writeln!(failures, "  {expr:?}: tcpdump refuses it: {e}");
                    counts.push((0, 0));
                    continue;
                }
            };
            let d = disagreements(&podtap, &tcpdump);
            if !d.is_empty() {
                let _ = writeln!(failures, "  {expr:?} on {}: {}", c.name, d.join("; "));
            }
            let kept = podtap.iter().filter(|k| **k == Some(true)).count();
            let dropped = podtap.iter().filter(|k| **k == Some(false)).count();
            counts.push((kept, dropped));
        }
        (failures, counts)
    });
    let failures: String = results.iter().map(|(f, _)| f.as_str()).collect();
    assert!(
        failures.is_empty(),
        "podtap and tcpdump disagree:\n{failures}"
    );
    (0..exprs.len())
        .map(|i| {
            results
                .iter()
                .fold((0, 0), |(k, d), (_, c)| (k + c[i].0, d + c[i].1))
        })
        .collect()
}

fn load(rels: &[&str]) -> Vec<Capture> {
    rels.iter().map(|r| Capture::load(r)).collect()
}

#[test]
fn expressions_keep_the_frames_tcpdump_keeps() {
    let mut captures = load(&ETHERNET);
    captures.extend(load(&OTHER_LINKS));
    let counts = compare(&captures, EXPRESSIONS);
    // Each expression must tell packets apart somewhere, or it proves little.
    let trivial: Vec<_> = EXPRESSIONS
        .iter()
        .zip(&counts)
        .filter(|(_, (kept, dropped))| *kept == 0 || *dropped == 0)
        .map(|(e, c)| format!("{e:?} kept/dropped {c:?}"))
        .collect();
    assert!(
        trivial.is_empty(),
        "expressions that keep all or nothing: {trivial:#?}"
    );
}

#[test]
fn vlan_expressions_keep_the_frames_tcpdump_keeps() {
    let captures = load(&VLAN);
    let counts = compare(&captures, VLAN_EXPRESSIONS);
    let kept: usize = counts.iter().map(|c| c.0).sum();
    let dropped: usize = counts.iter().map(|c| c.1).sum();
    assert!(kept > 0 && dropped > 0, "{counts:?}");
}

/// tcpdump's verdict on an expression alone (compiled for an Ethernet capture).
fn tcpdump_accepts(expr: &str) -> Result<(), String> {
    let file = common::pcaps_dir().join(ETHERNET[4]);
    let o = Command::new("tcpdump")
        .args(["-O", "-d", "-r"])
        .arg(&file)
        .arg(expr)
        .output()
        .expect("tcpdump is installed");
    if o.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&o.stderr).trim().to_string())
    }
}

#[test]
fn expressions_libpcap_refuses_are_refused() {
    let mut wrong = Vec::new();
    for expr in REFUSED_BY_BOTH {
        if let Ok(()) = tcpdump_accepts(expr) {
            wrong.push(format!("{expr:?}: tcpdump accepts it (fix the list)"));
        }
        match Filter::parse(expr) {
            Ok(f) => wrong.push(format!("{expr:?}: podtap accepts it: {f:?}")),
            Err(e) => {
                let col = e.column();
                if col == 0 || col > expr.chars().count() + 1 {
                    wrong.push(format!("{expr:?}: error column {col}: {e}"));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

#[test]
fn what_podtap_does_not_implement_is_refused_by_name() {
    let mut wrong = Vec::new();
    for (expr, want) in REFUSED_BY_PODTAP {
        if let Err(e) = tcpdump_accepts(expr) {
            wrong.push(format!("{expr:?}: tcpdump refuses it too ({e}): move it"));
        }
        match Filter::parse(expr) {
            Ok(f) => wrong.push(format!("{expr:?}: podtap accepts it: {f:?}")),
            Err(e) if !e.to_string().contains(want) => {
                wrong.push(format!("{expr:?}: {e}\n    wanted: {want}"));
            }
            Err(_) => {}
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}

/// xorshift64*: deterministic randomness, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len())]
    }
}

/// What kind of value a qualifier takes, for generating values that fit (mostly).
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Addr,
    Port,
    Range,
    Proto,
}

const ADDR_HEADS: [&str; 16] = [
    "host",
    "src host",
    "dst host",
    "src or dst host",
    "src and dst host",
    "src",
    "dst",
    "ip host",
    "ip src",
    "ip6 host",
    "ip6 dst",
    "net",
    "src net",
    "dst net",
    "ip6 net",
    "ip dst net",
];
const PORT_HEADS: [&str; 8] = [
    "port",
    "src port",
    "dst port",
    "tcp port",
    "udp port",
    "sctp port",
    "tcp src port",
    "udp dst or src port",
];
const RANGE_HEADS: [&str; 3] = ["portrange", "tcp portrange", "src portrange"];
const PROTO_HEADS: [&str; 3] = ["proto", "ip proto", "ip6 proto"];

const ADDRS: [&str; 30] = [
    "192.168.0.1",
    "192.168.0.10",
    "8.8.8.8",
    "192.168.1.52",
    "66.35.250.204",
    "192.168.170.8",
    "10.0.2.15",
    "0.0.0.0",
    "255.255.255.255",
    "192.168",
    "192.168.0",
    "66",
    "10.0.2",
    "0",
    "0xc0a80001",
    "3232235530",
    "2607:f8b0:400c:c03::1a",
    "fe80::200:86ff:fe05:80da",
    "3ffe:507:0:1:200:86ff:fe05:80da",
    "::1",
    "192.168.0.0/16",
    "192.168.0.0/24",
    "8.0.0.0/8",
    "0.0.0.0/0",
    "3ffe:507::/32",
    "fe80::/10",
    "::/0",
    "2607:f8b0:400c:c03::1a/128",
    "192.168.0.1/32",
    "66.35.250.0/0x18",
];
const PORTS: [&str; 20] = [
    "53", "80", "7", "67", "68", "5060", "25", "34855", "63943", "0x50", "0120", "0", "65535",
    "http", "https", "domain", "sip", "ntp", "smtp", "bootps",
];
const RANGES: [&str; 10] = [
    "1-1024",
    "0-65535",
    "50-70",
    "5000-6000",
    "30000-65535",
    "ftp-http",
    "1-http",
    "domain-sip",
    "53",
    "00053-00080",
];
const PROTOS: [&str; 12] = [
    "6",
    "17",
    "1",
    "58",
    "132",
    "0x11",
    "06",
    "\\tcp",
    "\\icmp",
    "TCP",
    "IPv6-ICMP",
    "\\sctp",
];
const PNAMES: [&str; 7] = ["tcp", "udp", "sctp", "icmp", "icmp6", "ip", "ip6"];

fn value(rng: &mut Rng, kind: Kind) -> &'static str {
    // Now and then a value of the wrong kind, to compare refusals too.
    let kind = if rng.chance(6) {
        [Kind::Addr, Kind::Port, Kind::Range, Kind::Proto][rng.below(4)]
    } else {
        kind
    };
    match kind {
        Kind::Addr => rng.pick(&ADDRS),
        Kind::Port => rng.pick(&PORTS),
        Kind::Range => rng.pick(&RANGES),
        Kind::Proto => rng.pick(&PROTOS),
    }
}

/// libpcap's `id`: values read with one qualifier, negated or grouped.
fn gen_id(rng: &mut Rng, kind: Kind, depth: usize) -> String {
    match rng.below(if depth == 0 { 1 } else { 6 }) {
        0..=2 => value(rng, kind).to_string(),
        3 => format!("not {}", gen_id(rng, kind, depth - 1)),
        _ => {
            // The first of a group may be a parenthesised number, never a group.
            let mut s = if rng.chance(15) {
                format!("({})", value(rng, kind))
            } else {
                gen_id(rng, kind, depth - 1)
            };
            for _ in 0..1 + rng.below(2) {
                let op = rng.pick(&["and", "or"]);
                let _ = write!(s, " {op} {}", gen_id(rng, kind, depth - 1));
            }
            format!("({s})")
        }
    }
}

/// A term, and the qualifier it leaves for bare values after it.
fn gen_term(rng: &mut Rng, carry: Option<Kind>, depth: usize) -> (String, Option<Kind>) {
    match rng.below(if depth == 0 { 6 } else { 9 }) {
        0 => (rng.pick(&PNAMES).to_string(), None),
        1 | 2 => {
            let k = [Kind::Addr, Kind::Port, Kind::Range, Kind::Proto][rng.below(4)];
            let head = match k {
                Kind::Addr => rng.pick(&ADDR_HEADS),
                Kind::Port => rng.pick(&PORT_HEADS),
                Kind::Range => rng.pick(&RANGE_HEADS),
                Kind::Proto => rng.pick(&PROTO_HEADS),
            };
            (format!("{head} {}", gen_id(rng, k, depth.min(1))), Some(k))
        }
        3 => ("tcp port 80".to_string(), Some(Kind::Port)),
        4 => (format!("host {}", rng.pick(&ADDRS[..9])), Some(Kind::Addr)),
        5 => (
            format!("udp port {}", rng.pick(&PORTS[..9])),
            Some(Kind::Port),
        ),
        6 => {
            let (s, c) = gen_term(rng, carry, depth - 1);
            (format!("{} {s}", rng.pick(&["not", "!"])), c)
        }
        // The qualifiers before parentheses are in force after them.
        _ => (format!("({})", gen_expr(rng, carry, depth - 1).0), carry),
    }
}

fn gen_expr(rng: &mut Rng, carry: Option<Kind>, depth: usize) -> (String, Option<Kind>) {
    let (mut s, mut carry) = gen_term(rng, carry, depth);
    for _ in 0..rng.below(4) {
        let op = rng.pick(&["and", "or", "&&", "||"]);
        match carry {
            Some(k) if rng.chance(45) => {
                let _ = write!(s, " {op} {}", gen_id(rng, k, depth.min(2)));
            }
            _ => {
                let (t, c) = gen_term(rng, carry, depth.saturating_sub(1));
                let _ = write!(s, " {op} {t}");
                carry = c;
            }
        }
    }
    (s, carry)
}

/// podtap refuses some values libpcap accepts but that can only match nothing or mislead,
/// saying why (see `REFUSED_BY_PODTAP`).
fn deliberate_refusal(e: &FilterError) -> bool {
    let msg = e.to_string();
    [
        "is not supported by podtap",
        "protocol numbers are 0 to 255",
        "above the end",
    ]
    .iter()
    .any(|r| msg.contains(r))
}

/// All the Ethernet captures, ARP included, as one file, so that each random expression
/// costs one tcpdump run.
fn merged_ethernet(dir: &Path) -> Capture {
    let merged = dir.join("ethernet.pcap");
    let mut w = PcapWriter::new(
        std::io::BufWriter::new(std::fs::File::create(&merged).unwrap()),
        1,
    )
    .unwrap();
    for rel in ETHERNET.iter().chain([&ARP]) {
        for f in read_frames(&common::pcaps_dir().join(rel)) {
            w.write(f.ts, &f.data).unwrap();
        }
    }
    w.into_inner().into_inner().unwrap();
    Capture {
        name: "merged Ethernet captures".into(),
        frames: read_frames(&merged),
        path: merged,
    }
}

/// Compare podtap and tcpdump on each expression over `capture`: the same verdict, and
/// when both accept, the same frames kept. Returns how many both accepted and how many
/// both refused.
fn agree(capture: &Capture, exprs: &[String]) -> (usize, usize) {
    let results = par_map(exprs, |expr| {
        let out = tempfile::tempdir().expect("temp dir");
        (Filter::parse(expr), capture.tcpdump_keeps(expr, out.path()))
    });
    let (mut both_accept, mut both_refuse, mut failures) = (0, 0, Vec::new());
    for (expr, (podtap, tcpdump)) in exprs.iter().zip(results) {
        match (podtap, tcpdump) {
            (Ok(f), Ok(t)) => {
                both_accept += 1;
                let d = disagreements(&capture.podtap_keeps(&f), &t);
                if !d.is_empty() {
                    failures.push(format!("{expr:?}: {}", d.join("; ")));
                }
            }
            (Err(_), Err(_)) => both_refuse += 1,
            (Ok(_), Err(e)) => failures.push(format!("{expr:?}: only tcpdump refuses: {e}")),
            (Err(e), Ok(_)) if deliberate_refusal(&e) => both_refuse += 1,
            (Err(e), Ok(_)) => failures.push(format!("{expr:?}: only podtap refuses: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} disagreements:\n{}",
        failures.len(),
        failures.join("\n")
    );
    (both_accept, both_refuse)
}

/// Random expressions mixing everything above, compared with tcpdump on all the Ethernet
/// captures at once: the same verdict on each expression, and, when both accept it, the
/// same frames kept.
#[test]
fn random_expressions_agree_with_tcpdump() {
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = merged_ethernet(dir.path());
    let mut rng = Rng(0x5eed_f11e_0000_0021);
    let exprs: Vec<String> = (0..600).map(|_| gen_expr(&mut rng, None, 3).0).collect();
    let (both_accept, both_refuse) = agree(&capture, &exprs);
    // The generator must exercise both sides.
    assert!(
        both_accept > 300 && both_refuse > 50,
        "{both_accept} accepted, {both_refuse} refused"
    );
}

/// Words and operators thrown together at random, mostly not pcap-filter at all: podtap
/// and libpcap must refuse the same ones (bar podtap's deliberate refusals), and agree on
/// the rest.
#[test]
fn token_soup_gets_the_verdicts_tcpdump_gives() {
    const SOUP: &[&str] = &[
        "(",
        ")",
        "!",
        "&&",
        "||",
        "and",
        "or",
        "not",
        "host",
        "net",
        "port",
        "portrange",
        "src",
        "dst",
        "tcp",
        "udp",
        "sctp",
        "icmp",
        "icmp6",
        "ip",
        "ip6",
        "vlan",
        "proto",
        "80",
        "53",
        "192.168.0.1",
        "192.168.0.0/16",
        "192.168",
        "8.8.8.8",
        "fe80::/10",
        "::1",
        "1-1024",
        "http",
        "domain",
        "\\tcp",
        "TCP",
        "0x11",
        "017",
        "0",
        "10",
        "4095",
        "6",
        "17",
        "ftp-http",
        "7",
        "sip",
        "66",
        "10/8",
        "080",
        "0x0a.1",
        "src or dst",
        "dst and src",
        "(80)",
        "((53))",
        "port 68 or",
        "1.2.3.4/32",
        "::/0",
        "http-alt",
        "arp",
        "mask",
        "Port",
        "ip6 proto",
        "ip proto",
        "tcp port",
        "udp dst port",
        "1.2",
        "65536",
        "0-0",
        "00053-00080",
        "fe80::1/64",
    ];
    let dir = tempfile::tempdir().expect("temp dir");
    let capture = merged_ethernet(dir.path());
    let mut rng = Rng(0x50_0b);
    let exprs: Vec<String> = (0..1000)
        .map(|_| {
            let n = 1 + rng.below(6);
            (0..n).map(|_| rng.pick(SOUP)).collect::<Vec<_>>().join(" ")
        })
        .collect();
    let (both_accept, both_refuse) = agree(&capture, &exprs);
    assert!(
        both_accept > 15 && both_refuse > 700,
        "{both_accept} accepted, {both_refuse} refused"
    );
}
