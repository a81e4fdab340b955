//! `memory.max_bytes` holds under a hostile mix: a flood of one million SYNs from distinct
//! clients (every one a new flow) replayed by one worker peaks, above what the same
//! million packets cost in one flow (reading the file, decoding), within the budget, and the bound is enforced by evicting flows
//! (counted), not by growing. Without the budget the same flood takes several times more.
//! Peak RSS is the kernel's (`/usr/bin/time`'s maximum resident set size).
//!
//! The other hostile captures of the robustness pass, each replayed under the same budget:
//! 200,000 one-byte segments behind a hole, 100,000 segments each behind a hole of its
//! own, 200,000 first fragments of datagrams that never complete, an HTTP/1 header that
//! never ends (20 MB), DNS responses with compression loops, TLS records claiming more
//! than they bring, HTTP/2 connections filling their HPACK tables, and pipelines that are
//! never answered (Redis commands; HTTP/1 requests with long paths). Each peaks within the
//! budget above the one-flow run.

use std::io::BufWriter;
use std::path::Path;
use std::process::Command;

use etherparse::PacketBuilder;
use podtap::capture::pcap_file::PcapWriter;
use podtap::time::Timestamp;

const BUDGET: u64 = 64 << 20;

/// `n` SYNs to one server, each from its own client address and port (`distinct`), or
/// all from one (the same file size and packet path, one flow).
fn syn_flood(path: &Path, n: u32, distinct: bool) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(BufWriter::new(f), 1).unwrap();
    let mut frame = Vec::with_capacity(80);
    for j in 0..n {
        let i = if distinct { j } else { 0 };
        frame.clear();
        let src = [10, (i >> 16) as u8, (i >> 8) as u8, i as u8];
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, [10, 255, 0, 1], 64)
            .tcp(
                1024 + (i % 60000) as u16,
                80,
                i.wrapping_mul(2_654_435_761),
                64240,
            )
            .syn()
            .write(&mut frame, &[])
            .unwrap();
        w.write(Timestamp(1_000_000_000 + j as u64 * 1000), &frame)
            .unwrap();
    }
}

/// A TCP frame of client `c` (port `sp`) to 10.255.0.1:80.
fn tcp(c: [u8; 4], sp: u16, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    tcp_to(c, [10, 255, 0, 1], sp, seq, syn, payload)
}

/// A TCP frame of client `c` (port `sp`) to server `s`, port 80.
fn tcp_to(c: [u8; 4], s: [u8; 4], sp: u16, seq: u32, syn: bool, payload: &[u8]) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(c, s, 64)
        .tcp(sp, 80, seq, 64240);
    if syn {
        b = b.syn();
    } else {
        b = b.ack(1);
    }
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

/// Write `frames` as a pcap.
/// `n` client connections from 10.`net`.x.y, port `port`, each a SYN and then `payload`
/// that is never answered.
fn connections(path: &Path, n: u32, net: u8, port: u16, payload: &[u8]) {
    write(
        path,
        (0..n).flat_map(|i| {
            let c = [10, net, (i >> 8) as u8, i as u8];
            [
                tcp(c, port, 1000, true, b""),
                tcp(c, port, 1001, false, payload),
            ]
        }),
    );
}

fn write(path: &Path, frames: impl Iterator<Item = Vec<u8>>) {
    let f = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(BufWriter::new(f), 1).unwrap();
    for (i, fr) in frames.enumerate() {
        w.write(Timestamp(1_000_000_000 + i as u64 * 1000), &fr)
            .unwrap();
    }
}

/// The hostile captures besides the SYN flood, by name.
fn hostile(dir: &Path) -> Vec<(&'static str, std::path::PathBuf)> {
    let c = [10, 8, 0, 1];
    let mut v = Vec::new();
    // One-byte segments behind a one-byte hole: the first byte never comes.
    let p = dir.join("drip.pcap");
    write(
        &p,
        std::iter::once(tcp(c, 1000, 1000, true, b""))
            .chain((2..200_002u32).map(|i| tcp(c, 1000, 1000 + i, false, b"x"))),
    );
    v.push(("200,000 one-byte segments behind a hole", p));
    // Every other byte: each segment behind a hole of its own.
    let p = dir.join("comb.pcap");
    write(
        &p,
        std::iter::once(tcp(c, 1001, 1000, true, b""))
            .chain((0..100_000u32).map(|i| tcp(c, 1001, 1002 + 2 * i, false, b"y"))),
    );
    v.push(("100,000 segments, each behind its own hole", p));
    // First fragments of datagrams whose rest never comes.
    let p = dir.join("fragments.pcap");
    write(
        &p,
        (0..200_000u32).map(|i| {
            let payload = [0u8; 64];
            let src = [10, 7, (i >> 8) as u8, i as u8];
            let mut ip = etherparse::Ipv4Header::new(
                payload.len() as u16,
                64,
                etherparse::IpNumber::UDP,
                src,
                [10, 255, 0, 1],
            )
            .unwrap();
            ip.identification = (i >> 16) as u16;
            ip.more_fragments = true;
            ip.header_checksum = ip.calc_header_checksum();
            let eth = etherparse::Ethernet2Header {
                source: [2; 6],
                destination: [4; 6],
                ether_type: etherparse::EtherType::IPV4,
            };
            let mut f = Vec::new();
            eth.write(&mut f).unwrap();
            ip.write(&mut f).unwrap();
            f.extend_from_slice(&payload);
            f
        }),
    );
    v.push(("200,000 first fragments that never complete", p));
    // An HTTP/1 request whose header never ends.
    let p = dir.join("endless-header.pcap");
    let chunk: Vec<u8> =
        b"X-Endless: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n".repeat(18);
    write(
        &p,
        [
            tcp(c, 1002, 1000, true, b""),
            tcp(c, 1002, 1001, false, b"GET / HTTP/1.1\r\n"),
        ]
        .into_iter()
        .chain(
            (0..20_000_000 / chunk.len() as u32)
                .map(|i| tcp(c, 1002, 1017 + i * chunk.len() as u32, false, &chunk)),
        ),
    );
    v.push(("an HTTP/1 header that never ends (20 MB)", p));
    // DNS responses whose answer name points at itself (a compression loop), each from a
    // client of its own.
    let p = dir.join("dns-loops.pcap");
    write(
        &p,
        (0..200_000u32).map(|i| {
            // Header: 1 question, 1 answer; the question name is a pointer to offset 12.
            let mut m = vec![(i >> 8) as u8, i as u8, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1]);
            m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 1, 2, 3, 4]);
            let mut f = Vec::new();
            PacketBuilder::ethernet2([2; 6], [4; 6])
                .ipv4([10, 255, 0, 53], [10, 6, (i >> 8) as u8, i as u8], 64)
                .udp(53, 1024 + (i % 60000) as u16)
                .write(&mut f, &m)
                .unwrap();
            f
        }),
    );
    v.push(("200,000 DNS responses with a compression loop", p));
    // TLS records that claim 16 KB and bring a few bytes, on 20,000 connections.
    let p = dir.join("tls-lengths.pcap");
    write(
        &p,
        (0..20_000u32).flat_map(|i| {
            let c = [10, 5, (i >> 8) as u8, i as u8];
            let mut rec = vec![22, 3, 1, 0x40, 0];
            rec.extend_from_slice(&[1, 0, 0x3f, 0xfc, 3, 3]);
            [
                tcp(c, 2000, 1000, true, b""),
                tcp(c, 2000, 1001, false, &rec),
            ]
        }),
    );
    v.push(("20,000 TLS connections each claiming a 16 KB record", p));
    // HTTP/2 connections whose one HEADERS block (30 new literal headers with incremental
    // indexing, 128 bytes each) fills the client side's HPACK dynamic table.
    let p = dir.join("hpack.pcap");
    let mut block = Vec::new();
    for h in 0..30u8 {
        block.push(0x40);
        block.push(5);
        block.extend_from_slice(format!("x-h{h:02}").as_bytes());
        block.push(120);
        block.extend_from_slice(&[b'v'; 120]);
    }
    let mut h2 = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    h2.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    let len = block.len() as u32;
    h2.extend_from_slice(&[
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        1,
        5,
        0,
        0,
        0,
        1,
    ]);
    h2.extend_from_slice(&block);
    connections(&p, 20_000, 4, 3000, &h2);
    v.push((HPACK, p));
    // Redis connections pipelining 200 commands each that are never answered: every
    // connection's pending queue fills. Two commands alternate: a run of identical ones
    // waits as one entry, and an attacker would not send those.
    let p = dir.join("pending.pcap");
    let cmds = b"*1\r\n$4\r\nPING\r\n*1\r\n$4\r\nTIME\r\n".repeat(100);
    connections(&p, 5_000, 3, 4000, &cmds);
    v.push((PENDING, p));
    // HTTP/1 connections pipelining 40 requests with 1 KB paths each, never answered: what
    // the pending requests own (their paths) counts, not only the queue.
    let p = dir.join("paths.pcap");
    let reqs = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(1000)).repeat(40);
    connections(&p, 1_500, 2, 5000, reqs.as_bytes());
    v.push((PATHS, p));
    v
}

const HPACK: &str = "20,000 HTTP/2 connections each filling its HPACK table";
const PENDING: &str = "5,000 Redis connections each with 200 unanswered commands";
const PATHS: &str = "1,500 HTTP/1 connections each with 40 unanswered 1 KB-path requests";

/// Peak RSS in bytes of `podtap --config CFG replay FILE --output table --workers 1`, and
/// its standard output.
fn replay_peak(cfg: &Path, file: &Path) -> (u64, String) {
    let out = Command::new("/usr/bin/time")
        .args(["-f", "peak-kib %M"])
        .arg(env!("CARGO_BIN_EXE_podtap"))
        .arg("--config")
        .arg(cfg)
        .arg("replay")
        .arg(file)
        .args(["--output", "table", "--workers", "1"])
        .output()
        .expect("/usr/bin/time (make deps-test installs `time`)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let kib: u64 = stderr
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("peak-kib "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no peak in {stderr}"));
    (
        kib * 1024,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The count of `event` in the table's counter list.
fn event(table: &str, event: &str) -> u64 {
    table
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(event)).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

#[test]
fn hostile_captures_peak_within_the_memory_budget() {
    let dir = tempfile::tempdir().unwrap();
    let flood = dir.path().join("syn-flood.pcap");
    syn_flood(&flood, 1_000_000, true);
    // The same million packets in one flow: what reading and decoding them costs alone.
    let one = dir.path().join("one-flow.pcap");
    syn_flood(&one, 1_000_000, false);
    let budgeted = dir.path().join("budget.toml");
    std::fs::write(
        &budgeted,
        format!("[memory]\nmax_bytes = {BUDGET}\n[capture]\nworkers = 1\n"),
    )
    .unwrap();
    let unbudgeted = dir.path().join("none.toml");
    std::fs::write(&unbudgeted, "[capture]\nworkers = 1\n").unwrap();

    let (base, _) = replay_peak(&budgeted, &one);
    let (peak, table) = replay_peak(&budgeted, &flood);
    let (free, _) = replay_peak(&unbudgeted, &flood);
    let mib = |b: u64| b >> 20;
    eprintln!(
        "peak RSS: one flow {} MiB, flood with a {} MiB budget {} MiB, without {} MiB",
        mib(base),
        mib(BUDGET),
        mib(peak),
        mib(free)
    );
    assert!(
        peak - base <= BUDGET,
        "the flood took {} MiB above one flow's {} MiB: over the {} MiB budget",
        mib(peak - base),
        mib(base),
        mib(BUDGET)
    );
    // Enforced by evicting flows, counted.
    let d = podtap::memory::derive(BUDGET, 1);
    let evicted = event(&table, "flow.evicted");
    assert!(
        evicted >= 1_000_000 - d.max_flows as u64,
        "{evicted} evicted of 1000000 with room for {}:\n{table}",
        d.max_flows
    );
    assert!(
        free > peak * 2,
        "the budget is what bounds it: {} MiB without",
        mib(free)
    );
    for (what, file) in hostile(dir.path()) {
        let (p, table) = replay_peak(&budgeted, &file);
        eprintln!("peak RSS: {what}: {} MiB", mib(p));
        assert!(
            p.saturating_sub(base) <= BUDGET,
            "{what}: {} MiB above one flow's {} MiB",
            mib(p - base),
            mib(base)
        );
        // Decoder state outside the flow slots is bounded by shedding connections, counted.
        if [HPACK, PENDING, PATHS].contains(&what) {
            assert!(event(&table, "l7.memory_shed") > 0, "{what}:\n{table}");
        }
    }
}

/// 3,000 HTTP servers, a request each: the table keeps `output.table_max_endpoints` rows
/// and counts the other servers' transactions in the `(other endpoints)` row.
#[test]
fn table_rows_stop_at_table_max_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("servers.pcap");
    let request = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    write(
        &file,
        (0..3000u32).flat_map(|i| {
            let (c, s) = ([10, 9, 0, 1], [10, 200, (i >> 8) as u8, i as u8]);
            let sp = 2000 + i as u16;
            [
                tcp_to(c, s, sp, 1000, true, b""),
                tcp_to(c, s, sp, 1001, false, request),
            ]
        }),
    );
    let cfg = dir.path().join("rows.toml");
    std::fs::write(&cfg, "[output]\ntable_max_endpoints = 100\n").unwrap();
    let (_, table) = replay_peak(&cfg, &file);
    assert!(table.contains("transactions 3000"), "{table}");
    assert!(
        table.contains("2900 transactions of endpoints after the first 100"),
        "{table}"
    );
    assert!(table.contains("(other endpoints)"), "{table}");
}
