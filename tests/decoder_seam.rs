//! The decoder seam holds: a decoder is its folder, one line of the list, its config
//! section (and its own end-to-end test file). Nothing else in the library names it.
//!
//! This is what lets a new protocol land without touching shared code: its events are
//! declared in its folder (`decoder_events!`), its attributes and errors are documented in
//! its folder's `SCHEMA.md`, its probe and telemetry mapping are its trait methods.

use regex::Regex;
use std::path::{Path, PathBuf};

/// One line of the decoder list in `src/proto/mod.rs`.
struct Entry {
    variant: String,
    section: String,
    module: String,
    protocols: Vec<String>,
}

fn list(root: &Path) -> Vec<Entry> {
    let text = std::fs::read_to_string(root.join("src/proto/mod.rs")).unwrap();
    let line =
        Regex::new(r#"(?m)^\s*(\w+) = "([a-z0-9_]+)" => (\w+)::\w+ \[([^\]]*)\],\s*$"#).unwrap();
    let proto = Regex::new(r"(\w+) = ").unwrap();
    let out: Vec<Entry> = line
        .captures_iter(&text)
        .map(|c| Entry {
            variant: c[1].to_string(),
            section: c[2].to_string(),
            module: c[3].to_string(),
            protocols: proto
                .captures_iter(&c[4])
                .map(|p| p[1].to_string())
                .collect(),
        })
        .collect();
    assert_eq!(
        out.len(),
        podtap::proto::DecoderKind::ALL.len(),
        "every line of the decoder list parsed"
    );
    out
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Places outside a decoder's folder that name it, with why. They predate the seam and
/// are about how the web protocols hand over to each other, not about wiring a decoder in
/// (or are names that are not the decoders').
const KNOWN: &[(&str, &str, &str)] = &[
    // h2c: an HTTP/1 connection upgraded to HTTP/2 changes decoder mid-stream.
    ("src/proto/session.rs", "Http1", "h2c upgrade"),
    ("src/proto/session.rs", "Http2", "h2c upgrade"),
    ("src/proto/session.rs", "http2", "h2c upgrade"),
    // The TLS handshake's facts are also a property of the flow record.
    ("src/flow/mod.rs", "Tls", "TLS facts on flow records"),
    // The OpenTelemetry HTTP conventions' client-side 4xx rule.
    ("src/stats/mod.rs", "Http", "HTTP 4xx rule"),
    ("src/stats/mod.rs", "Http2", "HTTP 4xx rule"),
    // Not the decoders: hyper's `http1` module, and OTLP's transport `Protocol::Grpc`.
    ("src/export/http_server.rs", "http1", "hyper"),
    ("src/export/config.rs", "Grpc", "OTLP over gRPC"),
    ("src/export/otlp/client.rs", "Grpc", "OTLP over gRPC"),
];

#[test]
fn a_decoder_is_named_only_in_its_folder_and_the_list() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let entries = list(root);
    let mut files = Vec::new();
    rust_files(&root.join("src"), &mut files);
    let mut found = Vec::new();
    for e in &entries {
        let folder = root.join("src/proto").join(&e.module);
        for need in [
            "mod.rs",
            "parser.rs",
            "tests.rs",
            "SCHEMA.md",
            "golden/corpus.txt",
        ] {
            assert!(
                folder.join(need).exists(),
                "{}: missing {need}",
                folder.display()
            );
        }
        let mut names = vec![
            (format!(r"\b{}::", e.module), e.module.clone()),
            (
                format!(r"\b(?:Decoder|DecoderKind)::{}\b", e.variant),
                e.variant.clone(),
            ),
        ];
        for p in &e.protocols {
            names.push((format!(r"\bProtocol::{p}\b"), p.clone()));
        }
        let names: Vec<(Regex, String)> = names
            .into_iter()
            .map(|(re, name)| (Regex::new(&re).unwrap(), name))
            .collect();
        for f in &files {
            if f.starts_with(&folder) || f.file_name().is_some_and(|n| n == "tests.rs") {
                continue;
            }
            let rel = f.strip_prefix(root).unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(f).unwrap();
            // Unit tests sit at the end of a file: they may build any decoder's input.
            let code = text.split("#[cfg(test)]").next().unwrap();
            for (n, line) in code.lines().enumerate() {
                let t = line.trim_start();
                if t.starts_with("//") || (rel == "src/proto/mod.rs" && t.contains(" => ")) {
                    continue;
                }
                for (re, name) in &names {
                    if re.is_match(line) && !KNOWN.iter().any(|k| k.0 == rel && k.1 == name) {
                        found.push(format!("{rel}:{}: names {name}: {}", n + 1, t));
                    }
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "shared code that names a decoder (move it into the decoder's folder, behind its \
         trait):\n  {}",
        found.join("\n  ")
    );
}

#[test]
fn each_decoder_has_its_config_section_and_documented_events() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = std::fs::read_to_string(root.join("config/podtap.toml")).unwrap();
    for (d, e) in list(root).iter().enumerate() {
        assert!(
            config.contains(&format!("\n[protocols.{}]\n", e.section)),
            "config/podtap.toml has no [protocols.{}]",
            e.section
        );
        let schema =
            std::fs::read_to_string(root.join("src/proto").join(&e.module).join("SCHEMA.md"))
                .unwrap();
        for p in &e.protocols {
            let name = podtap::proto::Protocol::ALL
                .iter()
                .find(|x| format!("{x:?}") == *p)
                .unwrap()
                .as_str();
            assert!(
                schema.contains(&format!("`{name}`")),
                "{}/SCHEMA.md does not name its protocol `{name}`",
                e.module
            );
        }
        for ev in podtap::proto::DECODER_EVENT_TABLES[d] {
            assert!(
                schema.contains(&format!("`{}`", ev.name)),
                "{}/SCHEMA.md does not document its counter `{}`",
                e.module,
                ev.name
            );
        }
    }
}
