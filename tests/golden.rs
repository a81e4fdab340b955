//! Golden tests: each capture below is replayed and its JSON lines compared with
//! `tests/fixtures/golden/<name>.jsonl`. When the output changes on purpose, rewrite the
//! expectations with `PODTAP_BLESS=1 cargo test --test golden` and review the diff.
//!
//! The captures are the third-party corpus in `../shared/pcaps` (read in place, never
//! copied) plus captures the suite generates itself.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Captures under `../shared/pcaps` whose full output is pinned: one per protocol family
/// and per tricky case (VLAN, tunnels, IPv6, gaps, fragments).
const CORPUS: &[&str] = &[
    "packetbeat/http_post.pcap",
    "packetbeat/http_over_vlan.pcap",
    "packetbeat/http_100_continue.pcap",
    "packetbeat/gap_in_stream.pcap",
    "packetbeat/802.1q-q-in-q-icmp.pcap",
    "packetbeat/dns_google_com.pcap",
    "packetbeat/tls-version-13.pcap",
    "packetbeat/libbeat-flowhash/ipv6.pcap",
    "suricata-verify/http-ipv6/input.pcap",
    "suricata-verify/dns/dns-tcp-www-google-com/dns.pcap",
    "deepflow/http/grpc-unary.pcap",
    "deepflow/http/h2c_ascii.pcap",
    "suricata-verify/http2-keywords2/input.pcap",
    "tcpdump/dns_udp.pcap",
];

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
    String::from_utf8(out.stdout).expect("utf-8 output")
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
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let mut failures = Vec::new();
    for rel in CORPUS {
        let got = replay(&dir.join(rel));
        let path = fixtures.join(golden_name(rel));
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
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    for rel in CORPUS {
        let Ok(text) = std::fs::read_to_string(fixtures.join(golden_name(rel))) else {
            continue;
        };
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("valid JSON");
            assert!(
                matches!(v["podtap.record"].as_str(), Some("flow" | "transaction")),
                "{line}"
            );
        }
    }
}
