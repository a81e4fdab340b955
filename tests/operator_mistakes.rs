//! Operator mistakes get a clear error and an error exit, never a crash, a hang or a
//! silent success (issue 27): the real binary, as an operator runs it.

use std::process::{Command, Output};

fn podtap(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(args)
        .output()
        .expect("run podtap")
}

/// The command failed cleanly (exit 1, or 2 for a command-line usage error; not a
/// signal or a panic) saying all of `what`.
fn fails_saying(out: &Output, what: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "exit status {:?}, stderr: {err}",
        out.status
    );
    assert!(!err.contains("panicked"), "{err}");
    for w in what {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

/// A small valid capture: the first one of the shared corpus that podtap reads.
fn any_capture() -> std::path::PathBuf {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/pcaps/packetbeat/redis_one_transaction.pcap");
    assert!(p.exists(), "{} missing", p.display());
    p
}

#[test]
fn an_absurd_worker_count_is_refused() {
    let cap = any_capture();
    let out = podtap(&["replay", "--workers", "40000", cap.to_str().unwrap()]);
    fails_saying(&out, &["40000", "at most 1024"]);
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("w.toml");
    std::fs::write(&cfg, "[replay]\nworkers = 40000\n").unwrap();
    let out = podtap(&[
        "--config",
        cfg.to_str().unwrap(),
        "replay",
        cap.to_str().unwrap(),
    ]);
    fails_saying(&out, &["replay.workers", "w.toml", "at most 1024"]);
}

#[test]
fn a_zero_bound_is_refused_with_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("z.toml");
    for (section, key) in [
        ("protocols.http", "max_header_bytes"),
        ("protocols.dns", "max_pending"),
        ("flow", "max_flows"),
        ("reassembly", "max_flow_segments"),
    ] {
        std::fs::write(&cfg, format!("[{section}]\n{key} = 0\n")).unwrap();
        let out = podtap(&["--config", cfg.to_str().unwrap(), "replay", "x.pcap"]);
        fails_saying(&out, &[key, "z.toml"]);
    }
}

/// A directory and a broken file are errors; a pipe is read (tests/replay_stdin.rs), and
/// one carrying no capture is an error too, not a hang.
#[test]
fn a_directory_a_pipe_of_no_capture_and_a_broken_file_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = podtap(&["replay", dir.path().to_str().unwrap()]);
    fails_saying(&out, &["is a directory"]);
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(["replay", "-"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run podtap");
    fails_saying(&out, &["standard input", "not a pcap or pcapng"]);
    // A pcapng whose section header lost its byte-order magic.
    let bad = dir.path().join("bad.pcapng");
    let mut b = Vec::new();
    for w in [0x0a0d_0d0au32, 28, 0x1234_5678, 1, u32::MAX, u32::MAX, 28] {
        b.extend_from_slice(&w.to_le_bytes());
    }
    std::fs::write(&bad, &b).unwrap();
    let out = podtap(&["replay", bad.to_str().unwrap()]);
    fails_saying(&out, &["byte-order magic"]);
}
