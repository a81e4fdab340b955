//! Log lines carry ANSI colour codes only when stderr is a terminal (and `NO_COLOR` is
//! unset): a log file, journald or `kubectl logs` must not show escape sequences.

mod common;

use std::process::{Command, Stdio};

#[test]
fn logs_to_a_pipe_have_no_colour_codes() {
    let pcap = common::pcaps_dir().join("packetbeat/http_minitwit.pcap");
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("replay")
        .arg(&pcap)
        .args(["--output", "table"])
        .env("PODTAP_LOG", "info")
        .env_remove("NO_COLOR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run podtap");
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("INFO") && stderr.contains("replay done"),
        "a log line was written: {stderr}"
    );
    assert!(
        !stderr.contains("\x1b["),
        "colour codes in piped logs: {stderr:?}"
    );
}

/// At a terminal (a pseudo-terminal from util-linux `script`) the logs are coloured,
/// unless `NO_COLOR` is set.
#[test]
fn logs_at_a_terminal_are_coloured_unless_no_color_is_set() {
    let pcap = common::pcaps_dir().join("packetbeat/http_minitwit.pcap");
    let run = |no_color: bool| {
        let cmd = format!(
            "{} replay '{}' --output table >/dev/null",
            env!("CARGO_BIN_EXE_podtap"),
            pcap.display()
        );
        let mut c = Command::new("script");
        c.args(["-qec", &cmd, "/dev/null"])
            .env("PODTAP_LOG", "info")
            .env_remove("NO_COLOR");
        if no_color {
            c.env("NO_COLOR", "1");
        }
        let out = c.output().expect("script (util-linux) is installed");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let tty = run(false);
    assert!(tty.contains("replay done"), "{tty}");
    assert!(tty.contains("\x1b["), "coloured at a terminal: {tty:?}");
    let plain = run(true);
    assert!(plain.contains("replay done"), "{plain}");
    assert!(!plain.contains("\x1b["), "NO_COLOR honoured: {plain:?}");
}
