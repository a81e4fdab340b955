//! `podtap replay -` and FIFOs (issue 27): a capture streamed on standard input or through
//! a FIFO, as `tcpdump -w - | podtap replay -` users send it, gives the JSON lines the same
//! capture gives as a file. The real binary, shared-corpus captures (pcap, and pcapng made
//! from them by editcap), written in small pieces by another thread.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn podtap() -> Command {
    Command::new(env!("CARGO_BIN_EXE_podtap"))
}

fn corpus(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/pcaps/packetbeat")
        .join(name);
    assert!(p.exists(), "{} missing", p.display());
    p
}

/// The run succeeded: its stdout.
fn stdout_of(out: Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {err}", out.status);
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Write `bytes` to `w` in pieces of 1 to 997 bytes, as a pipe's writer does.
fn write_in_pieces(mut w: impl Write, bytes: &[u8]) {
    let mut at = 0;
    let mut k = 0;
    while at < bytes.len() {
        k = (k * 31 + 7) % 997 + 1;
        let end = (at + k).min(bytes.len());
        // A reader that stopped early (a failed run) closes the pipe: the assertions on
        // its output say why, not this write.
        if w.write_all(&bytes[at..end]).is_err() {
            return;
        }
        at = end;
    }
}

/// `podtap replay - ARGS` with `bytes` written on its standard input by another thread.
fn replay_stdin(bytes: Vec<u8>, args: &[&str]) -> String {
    let mut child = podtap()
        .args(["replay", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run podtap");
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || write_in_pieces(stdin, &bytes));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    stdout_of(out)
}

/// `podtap replay FIFO ARGS` with `bytes` written into the FIFO by another thread.
fn replay_fifo(dir: &Path, bytes: Vec<u8>, args: &[&str]) -> String {
    let fifo = dir.join("capture.fifo");
    let _ = std::fs::remove_file(&fifo);
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let writer = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            // Opening a FIFO for writing waits for its reader, podtap: tried without
            // waiting (ENXIO until podtap opens it) for at most 30 s, so a podtap that
            // failed before opening it leaves no thread behind.
            use std::os::unix::fs::OpenOptionsExt;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            let f = loop {
                match std::fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&fifo)
                {
                    Ok(f) => break f,
                    Err(_) if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(5))
                    }
                    Err(e) => panic!("no reader opened the FIFO: {e}"),
                }
            };
            // Blocking writes from here on, as a pipe's writer makes them.
            use std::os::fd::AsRawFd;
            // SAFETY: fcntl on a descriptor this thread owns.
            unsafe { libc::fcntl(f.as_raw_fd(), libc::F_SETFL, 0) };
            write_in_pieces(f, &bytes)
        })
    };
    let out = podtap()
        .arg("replay")
        .arg(&fifo)
        .args(args)
        .output()
        .unwrap();
    writer.join().unwrap();
    stdout_of(out)
}

fn replay_file(file: &Path, args: &[&str]) -> String {
    stdout_of(
        podtap()
            .arg("replay")
            .arg(file)
            .args(args)
            .output()
            .unwrap(),
    )
}

fn sorted(s: &str) -> Vec<&str> {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort_unstable();
    v
}

/// The worker's lines in their order, and the anomaly events apart (sorted): the events
/// come from the anomaly engine's own thread, so where they fall among the worker's
/// lines depends on timing (under load they came first in one run, last in the other).
fn in_order(s: &str) -> (Vec<&str>, Vec<&str>) {
    let (mut events, lines): (Vec<&str>, Vec<&str>) = s
        .lines()
        .partition(|l| l.starts_with(r#"{"podtap.record":"event""#));
    events.sort_unstable();
    (lines, events)
}

#[test]
fn stdin_and_a_fifo_give_the_json_lines_of_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["redis_session.pcap", "http_minitwit.pcap"] {
        let file = corpus(name);
        let want = replay_file(&file, &["--output", "jsonl", "--workers", "1"]);
        assert!(want.lines().count() >= 7, "{name}: {want}");
        // The same capture as pcapng.
        let ng = dir.path().join(format!("{name}ng"));
        let st = Command::new("editcap")
            .args(["-F", "pcapng"])
            .arg(&file)
            .arg(&ng)
            .status()
            .expect("run editcap");
        assert!(st.success());
        for capture in [&file, &ng] {
            let bytes = std::fs::read(capture).unwrap();
            let what = capture.display();
            // One worker reads a stream: its lines come in the file's order.
            let got = replay_stdin(bytes.clone(), &["--output", "jsonl"]);
            assert_eq!(in_order(&got), in_order(&want), "stdin {what}");
            let got = replay_fifo(dir.path(), bytes.clone(), &["--output", "jsonl"]);
            assert_eq!(in_order(&got), in_order(&want), "fifo {what}");
            // More workers asked for: still one reads the stream.
            let got = replay_stdin(bytes, &["--output", "jsonl", "--workers", "4"]);
            assert_eq!(
                in_order(&got),
                in_order(&want),
                "stdin, 4 workers asked, {what}"
            );
        }
        // The file with four workers: the same lines, in another order.
        let four = replay_file(&file, &["--output", "jsonl", "--workers", "4"]);
        assert_eq!(sorted(&four), sorted(&want), "{name}");
    }
}

/// The summary's `transactions N`.
fn transactions(table: &str) -> u64 {
    let at = table.find("transactions ").expect("a transactions count") + 13;
    let digits: String = table[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().unwrap()
}

#[test]
fn tcpdump_piped_into_replay_counts_what_the_file_counts() {
    for name in ["redis_session.pcap", "http_minitwit.pcap"] {
        let file = corpus(name);
        let want = transactions(&replay_file(&file, &["--output", "table"]));
        assert!(want > 0, "{name}");
        // tcpdump -r FILE -w - | podtap replay - --output table
        let mut tcpdump = Command::new("tcpdump")
            .args(["-n", "-r"])
            .arg(&file)
            .args(["-w", "-"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run tcpdump");
        let out = podtap()
            .args(["replay", "-", "--output", "table"])
            .stdin(tcpdump.stdout.take().unwrap())
            .output()
            .unwrap();
        assert!(tcpdump.wait().unwrap().success());
        assert_eq!(transactions(&stdout_of(out)), want, "{name}");
    }
}
