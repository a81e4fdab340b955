//! No shell-outs with data from traffic: outside test code, podtap runs other programs in
//! one place only, the mirror set-up (`src/capture/mirror.rs`), and only `ip`, `tc` and
//! `ethtool`, directly (never through a shell), with arguments that are the configured
//! capture device's names, interface indexes and constants. Nothing a packet carries can
//! reach a command line. This test fails when a new place runs a program, or when any
//! place runs a shell.

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            sources(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The file's code before its test module (`#[cfg(test)]` and what follows), or nothing
/// for a test-only file.
fn non_test_code(path: &Path) -> String {
    let name = path.file_name().unwrap().to_string_lossy();
    if name == "tests.rs" || name == "testkit.rs" {
        return String::new();
    }
    let text = std::fs::read_to_string(path).unwrap();
    match text.find("#[cfg(test)]") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

#[test]
fn only_the_mirror_runs_programs_and_never_a_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files.sort();
    let mut running = Vec::new();
    for f in &files {
        let code = non_test_code(f);
        let rel = f.strip_prefix(root).unwrap().to_string_lossy().into_owned();
        for shell in ["\"sh\"", "\"bash\"", "\"/bin/sh\"", "\"-c\""] {
            assert!(
                !code.contains(shell),
                "{rel} mentions {shell}: no shell-outs"
            );
        }
        if !(code.contains("Command::new(") || code.contains("process::Command")) {
            continue;
        }
        running.push(rel.clone());
        // Each program it starts, by name.
        for (i, _) in code.match_indices("Command::new(") {
            let arg = &code[i + "Command::new(".len()..];
            let program = arg.split(')').next().unwrap().trim();
            assert!(
                ["\"ip\"", "\"tc\"", "\"ethtool\""].contains(&program),
                "{rel} runs {program}"
            );
        }
    }
    assert_eq!(
        running,
        ["src/capture/mirror.rs"],
        "places that run programs"
    );
}
