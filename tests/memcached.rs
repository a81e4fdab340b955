//! Memcached end to end: a real memcached (Debian's, UDP on) in a network namespace and
//! real clients in another (pymemcache for the text protocol and, through its raw
//! command, the meta commands; libmemcached's memcslap for the binary protocol over TCP and
//! for sets over UDP; a few lines of socket code for what no client sends, gets over UDP,
//! which the real server answers), captured by tcpdump and run through `podtap replay`.
//! podtap's counts must equal memcached's own `stats` deltas.
//!
//! And the shared corpus: every memcached capture replays, and every command tshark's
//! dissector finds there, podtap reports.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The text, meta and UDP workload. Prints, as JSON, the errors the server answered.
const WORKLOAD: &str = r#"
import json, socket, struct, sys
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheClientError, MemcacheServerError, MemcacheUnknownCommandError

ip = sys.argv[1]
errors = {"CLIENT_ERROR": 0, "SERVER_ERROR": 0, "ERROR": 0}
c = Client((ip, 11211), default_noreply=False, timeout=5)

# Text protocol.
c.set("user:1", b"alice")
c.set("user:2", b"bob", noreply=True)
c.set_many({"k%d" % i: b"v%d" % i for i in range(10)})
c.get("user:1")
c.get("nope")
c.get_many(["k%d" % i for i in range(15)])
v, cas = c.gets("user:1")
c.gets_many(["user:1", "user:2", "gone"])
c.cas("user:1", b"carol", cas)
c.cas("user:1", b"dave", b"1")
c.cas("nokey", b"z", b"1")
c.add("user:1", b"dup")
c.add("fresh", b"new")
c.replace("nokey", b"x")
c.append("user:1", b"++")
c.prepend("user:1", b"--")
c.set("n", b"10")
c.incr("n", 5)
c.decr("n", 3)
c.incr("nokey", 1)
c.decr("nokey", 1)
c.touch("user:1", 100)
c.touch("nokey", 1)
c.delete("k0")
c.delete("nokey")
c.delete_many(["k2", "k3"])
c.raw_command("gat 100 user:1 k4 nope", "END\r\n")
c.raw_command("gats 100 k5", "END\r\n")
c.version()
c.stats()
c.stats("slabs")
try:
    c.incr("user:1", 1)
except MemcacheClientError:
    errors["CLIENT_ERROR"] += 1
try:
    c.set("big", b"x" * (2 * 1024 * 1024))
except MemcacheServerError:
    errors["SERVER_ERROR"] += 1
try:
    c.raw_command("bogus")
except MemcacheUnknownCommandError:
    errors["ERROR"] += 1

# Meta commands, pipelined with quiet mode and opaque tokens, ended by mn.
c.raw_command(b"ms m:1 5 T0 O1\r\nhello", "\r\n")
c.raw_command(
    b"mg m:1 v O2\r\nmg nope v q O3\r\nmg m:1 v q k O4\r\nms m:3 3 q\r\nabc\r\n"
    b"md nope q\r\nmd m:3 q\r\nma n q\r\nmg m:1 s t\r\nmn",
    "MN\r\n",
)
c.raw_command(b"mg m:1 v\r\nmg gone v\r\nmd m:1\r\nmd m:1\r\nma n v\r\nma nope\r\nmn", "MN\r\n")
c.close()

# Gets over UDP, answered by the server (a 3000-byte value spans three datagrams).
c = Client((ip, 11211), default_noreply=False, timeout=5)
c.set("udp:big", b"y" * 3000)
c.close()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(5)

def udp(rid, payload, done):
    u.sendto(struct.pack(">HHHH", rid, 0, 1, 0) + payload, (ip, 11211))
    got = b""
    while not done(got):
        d, _ = u.recvfrom(65536)
        got += d[8:]

def binary(op, key, opaque):
    return struct.pack(">BBHBBHIIQ", 0x80, op, len(key), 0, 0, 0, len(key), opaque, 0) + key

udp(1, b"get k4 k5 nope\r\n", lambda g: g.endswith(b"END\r\n"))
udp(2, b"gets udp:big\r\n", lambda g: g.endswith(b"END\r\n"))
udp(3, b"get nope\r\n", lambda g: g.endswith(b"END\r\n"))
udp(4, binary(0x0C, b"k6", 9), lambda g: len(g) >= 24)
udp(5, binary(0x00, b"nope", 10), lambda g: len(g) >= 24)
print(json.dumps(errors))
"#;

fn stats(ns: &Netns) -> BTreeMap<String, i64> {
    let out = sh(ns.cmd("python3").args([
        "-c",
        &format!(
            "from pymemcache.client.base import Client\n\
             for k, v in Client(('{SERVER_IP}', 11211)).stats().items():\n    \
             print(k.decode(), v)"
        ),
    ]));
    out.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            Some((k.to_string(), v.trim().parse::<f64>().ok()? as i64))
        })
        .collect()
}

/// UDP datagrams the namespace's sockets dropped for want of buffer space (memcslap sends
/// its UDP sets without waiting for the server).
fn udp_drops(ns: &Netns) -> i64 {
    let snmp = sh(ns.cmd("cat").arg("/proc/net/snmp"));
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        panic!("no Udp counters in /proc/net/snmp");
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .expect("RcvbufErrors")
}

fn memcached(ns: &Netns) -> Proc {
    let child = ns
        .cmd("memcached")
        .args([
            "-u", "nobody", "-l", SERVER_IP, "-p", "11211", "-U", "11211",
        ])
        .args(["-m", "64", "-t", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("memcached is installed (make deps-test)");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ok = ns
            .cmd("python3")
            .args([
                "-c",
                &format!("import socket; socket.create_connection(('{SERVER_IP}', 11211), 1)"),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "memcached did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(Some(child))
}

fn memcslap(ns: &Netns, args: &[&str]) {
    let server = format!("{SERVER_IP}:11211");
    sh(ns
        .cmd("memcslap")
        .args(["-s", &server, "-c", "1"])
        .args(args)
        .stdout(Stdio::null()));
}

fn int(t: &serde_json::Value, k: &str) -> i64 {
    t[k].as_i64().unwrap_or(0)
}

/// Over the transactions whose operation is in `ops`: (count, keys, hits, misses).
fn tally(txs: &[&serde_json::Value], ops: &[&str]) -> (i64, i64, i64, i64) {
    let mut r = (0, 0, 0, 0);
    for t in txs
        .iter()
        .filter(|t| ops.contains(&t["podtap.operation"].as_str().unwrap_or("")))
    {
        let (h, m) = (
            int(t, "podtap.memcached.hits"),
            int(t, "podtap.memcached.misses"),
        );
        r.0 += 1;
        r.1 += h + m;
        r.2 += h;
        r.3 += m;
    }
    r
}

#[test]
fn counts_match_memcacheds_own_stats_for_text_meta_and_binary_over_tcp_and_udp() {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let _server = memcached(&pair.server);
    let before = stats(&pair.client);
    let drops_before = udp_drops(&pair.server);
    let pcap = dir.path().join("memcached.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);

    let script = dir.path().join("workload.py");
    std::fs::write(&script, WORKLOAD).expect("write workload");
    let out = sh(pair.client.cmd("python3").arg(&script).arg(SERVER_IP));
    let errors: BTreeMap<String, i64> =
        serde_json::from_str(out.trim()).expect("workload prints its errors");
    // Binary over TCP (sets, gets, and multi-gets: GETKQ... then NOOP), text gets from
    // another client, and sets over UDP, text and binary.
    memcslap(&pair.client, &["-b", "-t", "set", "-e", "200"]);
    memcslap(&pair.client, &["-b", "-t", "get", "-e", "200", "-l", "100"]);
    memcslap(&pair.client, &["-b", "-t", "mget", "-e", "20", "-l", "40"]);
    memcslap(&pair.client, &["-t", "get", "-e", "100", "-l", "50"]);
    memcslap(&pair.client, &["-U", "-t", "set", "-e", "30"]);
    memcslap(&pair.client, &["-U", "-b", "-t", "set", "-e", "30"]);
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();
    let after = stats(&pair.client);
    let dropped = udp_drops(&pair.server) - drops_before;
    let delta = |k: &str| after.get(k).copied().unwrap_or(0) - before.get(k).copied().unwrap_or(0);

    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("replay")
        .arg(&pcap)
        .output()
        .expect("run podtap");
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stderr);
    let all: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    let txs: Vec<&serde_json::Value> = records(&all, "transaction")
        .into_iter()
        .filter(|t| t["podtap.protocol"] == "memcached")
        .collect();
    assert!(txs.len() > 900, "{} transactions", txs.len());
    for bad in [
        "memcached.malformed",
        "memcached.no_request",
        "reassembly.gap",
    ] {
        assert!(!summary.contains(bad), "{bad} in:\n{summary}");
    }
    let incomplete: Vec<_> = txs
        .iter()
        .filter(|t| t["podtap.complete"] != true)
        .collect();
    assert!(incomplete.is_empty(), "incomplete: {incomplete:#?}");

    // memcached's counters against podtap's, one family of commands at a time.
    let gets = tally(&txs, &["get", "gets", "mg", "GET", "GETQ", "GETK", "GETKQ"]);
    assert_eq!(
        (gets.1, gets.2, gets.3),
        (delta("cmd_get"), delta("get_hits"), delta("get_misses")),
        "cmd_get, get_hits, get_misses"
    );
    let touches = tally(&txs, &["touch", "gat", "gats", "TOUCH", "GAT", "GATQ"]);
    assert_eq!(
        (touches.1, touches.2, touches.3),
        (
            delta("cmd_touch"),
            delta("touch_hits"),
            delta("touch_misses")
        ),
        "cmd_touch, touch_hits, touch_misses"
    );
    let sets = tally(
        &txs,
        &[
            "set", "add", "replace", "append", "prepend", "cas", "ms", "SET", "SETQ", "ADD",
            "ADDQ", "REPLACE", "REPLACEQ", "APPEND", "APPENDQ", "PREPEND", "PREPENDQ",
        ],
    );
    // memcached counts a value refused as too large in store_too_large, not cmd_set; a
    // UDP set its socket dropped (one set per datagram) it never saw.
    assert_eq!(
        sets.0,
        delta("cmd_set") + delta("store_too_large") + dropped,
        "cmd_set + store_too_large + UDP datagrams dropped by the server's socket ({dropped})"
    );
    assert_eq!(delta("store_too_large"), 1);
    let deletes = tally(&txs, &["delete", "md", "DELETE", "DELETEQ"]);
    assert_eq!(
        (deletes.2, deletes.3),
        (delta("delete_hits"), delta("delete_misses")),
        "delete_hits, delete_misses"
    );
    let arith = tally(
        &txs,
        &[
            "incr",
            "decr",
            "ma",
            "INCREMENT",
            "INCREMENTQ",
            "DECREMENT",
            "DECREMENTQ",
        ],
    );
    assert_eq!(
        (arith.2, arith.3),
        (
            delta("incr_hits") + delta("decr_hits"),
            delta("incr_misses") + delta("decr_misses")
        ),
        "incr/decr hits and misses"
    );
    let cas = tally(&txs, &["cas"]);
    assert_eq!(
        (cas.2, cas.3),
        (delta("cas_hits") + delta("cas_badval"), delta("cas_misses")),
        "cas"
    );
    // The event counters agree with the attributes.
    let event = |name: &str| {
        summary
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|n| n.parse::<i64>().ok())
            .unwrap_or(0)
    };
    assert_eq!(
        (event("memcached.get_hits"), event("memcached.get_misses")),
        (gets.2, gets.3)
    );

    // Every family, both transports.
    let udp_ports: std::collections::BTreeSet<i64> = records(&all, "flow")
        .iter()
        .filter(|f| f["network.transport"] == "udp")
        .filter_map(|f| f["client.port"].as_i64())
        .collect();
    for (proto, udp) in [
        ("text", false),
        ("meta", false),
        ("binary", false),
        ("text", true),
        ("binary", true),
    ] {
        let n = txs
            .iter()
            .filter(|t| {
                t["podtap.memcached.protocol"] == proto
                    && udp_ports.contains(&int(t, "client.port")) == udp
            })
            .count();
        assert!(n > 0, "no {proto} transactions over udp={udp}");
    }
    // A UDP reply over three datagrams is one transaction.
    assert!(txs.iter().any(|t| t["podtap.operation"] == "gets"
        && int(t, "podtap.memcached.hits") == 1
        && int(t, "podtap.response.bytes") > 3000));

    // Errors: exactly the ones the client was told.
    let mut seen: BTreeMap<String, i64> = BTreeMap::new();
    for t in &txs {
        if let Some(e) = t["error.type"].as_str() {
            *seen.entry(e.to_string()).or_default() += 1;
        }
    }
    let want: BTreeMap<String, i64> = errors.into_iter().filter(|(_, n)| *n > 0).collect();
    assert_eq!(seen, want, "error.type counts");
    // No key leaves podtap.
    for t in &txs {
        let line = t.to_string();
        assert!(!line.contains("user:1") && !line.contains("m:1"), "{line}");
    }
}

/// tshark's memcache dissector, per capture: (request command or binary opcode) counts.
fn tshark_commands(file: &Path) -> BTreeMap<String, i64> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-Y",
            "memcache",
            "-T",
            "fields",
            "-e",
            "memcache.command",
            "-e",
            "memcache.magic",
            "-e",
            "memcache.opcode",
        ])
        .output()
        .expect("tshark is installed (make deps-test)");
    let mut bag = BTreeMap::new();
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        let f: Vec<&str> = l.split('\t').collect();
        let (cmd, magic, op) = (f[0], f.get(1).unwrap_or(&""), f.get(2).unwrap_or(&""));
        if magic.starts_with("128") {
            // Binary requests.
            for o in op.split(',') {
                *bag.entry(format!("op{o}")).or_default() += 1;
            }
        } else if magic.is_empty() {
            // Text requests: the commands are lower case (reply words upper case).
            for c in cmd
                .split(',')
                .filter(|c| !c.is_empty() && c.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
            {
                *bag.entry(c.to_string()).or_default() += 1;
            }
        }
    }
    bag
}

#[test]
fn every_memcached_capture_of_the_corpus_replays_with_every_command_tshark_finds() {
    let dir = pcaps_dir();
    let mut files: Vec<_> = ["packetbeat/memcache", "deepflow/memcached"]
        .iter()
        .flat_map(|d| std::fs::read_dir(dir.join(d)).into_iter().flatten())
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap"))
        .collect();
    if files.is_empty() {
        eprintln!("skipping: capture corpus {} not found", dir.display());
        return;
    }
    files.sort();
    assert_eq!(files.len(), 19);
    // packetbeat's expectations (its test_0025..test_0028 and test_memcache_*), and
    // deepflow's memcached.result: transactions per capture. packetbeat reports `quit`
    // (no reply) as a transaction, so does podtap; deepflow leaves it out, as it leaves
    // out every command it does not decode (its result lists set and get).
    let expected: BTreeMap<&str, usize> = [
        ("memcache_bin_tcp_counter_ops.pcap", 5),
        ("memcache_bin_tcp_delete.pcap", 4),
        ("memcache_bin_tcp_multi_store_load.pcap", 10),
        ("memcache_bin_tcp_single_load_store.pcap", 3),
        ("memcache_bin_tcp_stats.pcap", 4),
        ("memcache_bin_udp_counter_ops.pcap", 3),
        ("memcache_bin_udp_delete.pcap", 2),
        ("memcache_bin_udp_multi_store.pcap", 3),
        ("memcache_bin_udp_single_store.pcap", 1),
        ("memcache_text_tcp_counter_ops.pcap", 5),
        ("memcache_text_tcp_delete.pcap", 4),
        ("memcache_text_tcp_multi_store_load.pcap", 5),
        ("memcache_text_tcp_single_load_store.pcap", 3),
        ("memcache_text_tcp_stats.pcap", 4),
        ("memcache_text_udp_counter_ops.pcap", 3),
        ("memcache_text_udp_delete.pcap", 2),
        ("memcache_text_udp_multi_store.pcap", 3),
        ("memcache_text_udp_single_store.pcap", 1),
        // deepflow: set and get, plus quit.
        ("memcached.pcap", 3),
    ]
    .into_iter()
    .collect();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let all = replay(&[f], &[]);
        let txs: Vec<_> = records(&all, "transaction")
            .into_iter()
            .filter(|t| t["podtap.protocol"] == "memcached")
            .collect();
        assert_eq!(Some(&txs.len()), expected.get(name.as_str()), "{name}");
        assert!(txs.iter().all(|t| t["podtap.complete"] == true), "{name}");
        // Every request tshark decodes, podtap reports. (tshark decodes none of the UDP
        // ones: it does not know the frame header. Those are checked against packetbeat's
        // counts above and in the decoder's unit tests.)
        let mut ours: BTreeMap<String, i64> = BTreeMap::new();
        for t in &txs {
            let op = t["podtap.operation"].as_str().unwrap_or("").to_string();
            let key = match t["podtap.memcached.protocol"].as_str() {
                Some("binary") => {
                    let code = (0..=255u8)
                        .find(|&o| binary_name(o) == Some(op.as_str()))
                        .expect("known opcode");
                    format!("op{code}")
                }
                _ => op,
            };
            *ours.entry(key).or_default() += 1;
        }
        let theirs = tshark_commands(f);
        for (cmd, n) in &theirs {
            assert_eq!(
                ours.get(cmd),
                Some(n),
                "{name}: {cmd}: ours {ours:?}, tshark {theirs:?}"
            );
        }
    }
}

/// The binary opcodes the corpus holds, by the names podtap reports.
fn binary_name(op: u8) -> Option<&'static str> {
    Some(match op {
        0x00 => "GET",
        0x01 => "SET",
        0x04 => "DELETE",
        0x05 => "INCREMENT",
        0x06 => "DECREMENT",
        0x07 => "QUIT",
        0x0a => "NOOP",
        0x0c => "GETK",
        0x0d => "GETKQ",
        0x10 => "STAT",
        0x11 => "SETQ",
        0x14 => "DELETEQ",
        0x15 => "INCREMENTQ",
        0x16 => "DECREMENTQ",
        _ => return None,
    })
}
