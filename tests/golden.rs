//! Golden tests: each capture below is replayed and its JSON lines compared with a pinned
//! `<name>.jsonl`. When the output changes on purpose, rewrite the expectations with
//! `PODTAP_BLESS=1 cargo test --test golden` and review the diff.
//!
//! Each decoder owns its golden files: `src/proto/<decoder>/golden/` holds `corpus.txt`
//! (the corpus captures it pins, one path a line) and their expected JSON lines, and any
//! `.pcap` captures of its own beside them (expected in `<capture>.jsonl`). This test
//! finds them there, so a new decoder adds its golden files without touching it. The
//! captures of the packet layers (VLANs, tunnels, IPv6) are listed here.
//!
//! The corpus is the third-party one in `../shared/pcaps` (read in place, never copied).

use std::path::{Path, PathBuf};
use std::process::Command;

/// Packet-layer captures under `../shared/pcaps` whose full output is pinned in
/// `tests/fixtures/golden`.
const CORPUS: &[&str] = &[
    "packetbeat/802.1q-q-in-q-icmp.pcap",
    "packetbeat/libbeat-flowhash/ipv6.pcap",
];

/// Every pinned capture: (capture, its expected JSON lines).
fn cases() -> Vec<(PathBuf, PathBuf)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut v: Vec<(PathBuf, PathBuf)> = CORPUS
        .iter()
        .map(|rel| {
            (
                shared().join(rel),
                root.join("tests/fixtures/golden").join(golden_name(rel)),
            )
        })
        .collect();
    let mut decoders: Vec<PathBuf> = std::fs::read_dir(root.join("src/proto"))
        .expect("src/proto")
        .filter_map(|e| Some(e.ok()?.path().join("golden")))
        .filter(|d| d.is_dir())
        .collect();
    decoders.sort();
    for dir in decoders {
        let listed = std::fs::read_to_string(dir.join("corpus.txt")).unwrap_or_default();
        for rel in listed
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            v.push((shared().join(rel), dir.join(golden_name(rel))));
        }
        let mut own: Vec<PathBuf> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
            .collect();
        own.sort();
        for pcap in own {
            let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
            v.push((pcap.clone(), dir.join(golden_name(&name))));
        }
    }
    v
}

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/pcaps")
}

fn golden_name(rel: &str) -> String {
    rel.trim_end_matches(".pcap")
        .trim_end_matches(".pcapng")
        .replace('/', "__")
        + ".jsonl"
}

fn replay(file: &Path) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(["replay", "--workers", "1", "--output", "jsonl"])
        .arg(file)
        .output()
        .expect("run podtap");
    assert!(
        out.status.success(),
        "podtap replay {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8 output");
    // Anomaly events come from their own thread, interleaved with the records wherever
    // they arrive: compared after the records, in a fixed order.
    let (mut events, records): (Vec<&str>, Vec<&str>) = text
        .lines()
        .partition(|l| l.starts_with(r#"{"podtap.record":"event""#));
    events.sort_unstable();
    let mut out = String::with_capacity(text.len());
    for l in records.into_iter().chain(events) {
        out.push_str(l);
        out.push('\n');
    }
    out
}

#[test]
fn corpus_output_matches_golden_files() {
    let dir = shared();
    assert!(
        dir.is_dir(),
        "the capture corpus must sit beside the repository at {}",
        dir.display()
    );
    let bless = std::env::var_os("PODTAP_BLESS").is_some();
    let mut failures = Vec::new();
    let cases = cases();
    assert!(
        cases.len() > CORPUS.len(),
        "the decoders' golden folders are found"
    );
    for (capture, path) in cases {
        let rel = capture.display();
        let got = replay(&capture);
        if bless {
            std::fs::write(&path, &got).expect("write golden file");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|_| panic!("missing {}: run with PODTAP_BLESS=1", path.display()));
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .zip(got.lines())
                .enumerate()
                .filter(|(_, (w, g))| w != g)
                .take(3)
                .map(|(i, (w, g))| format!("  line {}:\n    want {w}\n    got  {g}", i + 1))
                .collect();
            failures.push(format!(
                "{rel}: {} lines expected, {} got\n{}",
                want.lines().count(),
                got.lines().count(),
                diff.join("\n")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (PODTAP_BLESS=1 rewrites after review):\n{}",
        failures.join("\n")
    );
}

#[test]
fn every_golden_line_is_json_with_a_record_type() {
    for (_, path) in cases() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            assert!(
                matches!(
                    v["podtap.record"].as_str(),
                    Some("flow" | "transaction" | "event")
                ),
                "{line}"
            );
        }
    }
}
