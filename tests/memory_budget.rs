//! `memory.max_bytes` holds under a hostile mix: a flood of one million SYNs from distinct
//! clients (every one a new flow) replayed by one worker peaks, above what the same
//! million packets cost in one flow (reading the file, decoding), within the budget, and the bound is enforced by evicting flows
//! (counted), not by growing. Without the budget the same flood takes several times more.
//! Peak RSS is the kernel's (`/usr/bin/time`'s maximum resident set size).

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
fn a_syn_flood_peaks_within_the_memory_budget() {
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
}
