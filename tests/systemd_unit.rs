//! `systemd/podtap.service` against the code it runs: systemd's own verifier accepts it,
//! the command line is one the real binary accepts, the directories podtap writes are
//! writable under `ProtectSystem=strict`, and records do not go to the journal.

use std::path::PathBuf;
use std::process::Command;

fn unit() -> String {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("systemd/podtap.service");
    std::fs::read_to_string(p).expect("systemd/podtap.service")
}

fn exec_start(unit: &str) -> Vec<String> {
    let line = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .expect("ExecStart");
    line.split_whitespace().map(str::to_string).collect()
}

fn setting<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_verifies_the_unit() {
    // systemd-analyze checks that ExecStart exists: point it at the binary just built.
    let dir = tempfile::tempdir().unwrap();
    let text = unit().replace("/usr/local/bin/podtap", env!("CARGO_BIN_EXE_podtap"));
    let path = dir.path().join("podtap.service");
    std::fs::write(&path, text).unwrap();
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&path)
        .output()
        .expect("systemd-analyze (package systemd) is installed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        !stderr.contains("podtap.service"),
        "systemd warns about the unit:\n{stderr}"
    );
}

#[test]
fn podtap_can_write_what_it_writes_under_protect_system_strict() {
    let u = unit();
    assert_eq!(setting(&u, "ProtectSystem"), ["strict"]);
    // The mirror's state file (crash recovery) goes to capture.mirror.state_dir.
    let state = podtap::config::Config::default().capture.mirror.state_dir;
    let runtime = setting(&u, "RuntimeDirectory");
    assert!(
        runtime
            .iter()
            .any(|d| PathBuf::from("/run").join(d) == state),
        "{} is not a RuntimeDirectory= of the unit",
        state.display()
    );
    assert_eq!(setting(&u, "StateDirectory"), ["podtap"]);
    assert!(setting(&u, "ReadWritePaths").contains(&"/sys/fs/bpf"));
}

#[test]
fn the_service_sends_records_to_the_exporters_not_the_journal() {
    let argv = exec_start(&unit());
    let at = argv.iter().position(|a| a == "--output").expect("--output");
    assert_eq!(argv[at + 1], "none");
    // The real binary takes this command line (--help after it: parse, do not run).
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(&argv[1..])
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
