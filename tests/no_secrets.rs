//! No secret leaves the node by default, in any export: JSON lines, the table, OTLP spans
//! and metrics (what a real collector, rotel, received), Prometheus `/metrics`, and
//! podtap's own log.
//!
//! The secrets: HTTP credentials sent by curl to nginx (an `Authorization` bearer token,
//! basic-auth, a `Cookie`, query-string values, a form body), Redis values and its AUTH
//! password sent by redis-cli to a redis-server (both in namespaces, captured with
//! tcpdump), and every quoted SQL literal of the shared corpus's MySQL and PostgreSQL
//! captures (as tshark reads the queries). podtap replays all of them with every export
//! on; each secret must then be absent from everything podtap wrote or sent, while the
//! transactions themselves are there.

mod common;
mod export_common;

use common::*;
use export_common::*;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const HTTP_SECRETS: [&str; 6] = [
    "bearer-tok-7f3a9c",
    "cookie-sess-51be",
    "query-token-88d1",
    "query-user-c0ffee",
    "basic-pass-e4b2",
    "form-pw-a1b2c3",
];
const REDIS_PASSWORD: &str = "redis-auth-9d8e";
const REDIS_VALUES: [&str; 2] = ["redis-value-3c4d", "redis-field-val-77aa"];

/// HTTP and Redis traffic carrying the secrets above, captured on the server's veth.
fn capture(dir: &std::path::Path) -> PathBuf {
    let pair = Pair::new();
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("index.html"), b"hello\n").unwrap();
    let _nginx = nginx(&pair.server, SERVER_IP, dir, &root);
    let mut redis = Proc(Some(
        pair.server
            .cmd("redis-server")
            .args(["--bind", SERVER_IP, "--port", "6379", "--save", ""])
            .args(["--appendonly", "no", "--requirepass", REDIS_PASSWORD])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (make deps-test)"),
    ));
    let cli = |args: &[&str]| {
        pair.client
            .cmd("redis-cli")
            .args(["-h", SERVER_IP, "--no-auth-warning", "-a", REDIS_PASSWORD])
            .args(args)
            .output()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cli(&["PING"]).is_ok_and(|o| o.stdout.starts_with(b"PONG")) {
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pcap = dir.join("secrets.pcap");
    let mut dump = tcpdump(&pair.server, &pair.server_if, &pcap);
    let [bearer, cookie, token, user, basic, form] = HTTP_SECRETS;
    let url = format!("http://{SERVER_IP}/index.html?token={token}&user={user}");
    sh(pair.client.cmd("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-H",
        &format!("Authorization: Bearer {bearer}"),
        "-H",
        &format!("Cookie: session={cookie}"),
        &url,
    ]));
    sh(pair.client.cmd("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-u",
        &format!("admin:{basic}"),
        "--data",
        &format!("password={form}"),
        &url,
    ]));
    for args in [
        &["SET", "user:1", REDIS_VALUES[0]][..],
        &["GET", "user:1"],
        &["HSET", "h:1", "f", REDIS_VALUES[1]],
        &["HGETALL", "h:1"],
    ] {
        let out = cli(args).expect("redis-cli");
        assert!(out.status.success());
    }
    std::thread::sleep(Duration::from_millis(300));
    dump.interrupt();
    redis.interrupt();
    pcap
}

/// The shared corpus's MySQL and PostgreSQL captures, and the quoted literals of their
/// queries (at least 4 characters, so that short words that may also be names do not
/// count).
fn sql_corpus() -> (Vec<PathBuf>, Vec<String>) {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("../shared/pcaps").flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                let path = p.to_string_lossy().to_lowercase();
                if ["mysql", "pgsql", "postgres"]
                    .iter()
                    .any(|k| path.contains(k))
                    && (path.ends_with(".pcap") || path.ends_with(".pcapng"))
                {
                    out.push(p);
                }
            }
        }
    }
    let mut files = Vec::new();
    walk(&pcaps_dir(), &mut files);
    files.sort();
    let mut literals = Vec::new();
    for f in &files {
        let out = Command::new("tshark")
            .args(["-n", "-r"])
            .arg(f)
            .args(["-T", "fields", "-e", "mysql.query", "-e", "pgsql.query"])
            .output()
            .expect("tshark");
        for q in String::from_utf8_lossy(&out.stdout).lines() {
            for (i, lit) in q.split('\'').enumerate() {
                if i % 2 == 1 && lit.len() >= 4 && !literals.contains(&lit.to_string()) {
                    literals.push(lit.to_string());
                }
            }
        }
    }
    (files, literals)
}

#[test]
fn no_credential_or_literal_reaches_any_export() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let pcap = capture(dir.path());
    // The secrets are on the wire, in the clear, for podtap to see.
    let raw = std::fs::read(&pcap).unwrap();
    let on_wire = |s: &str| raw.windows(s.len()).any(|w| w == s.as_bytes());
    for s in HTTP_SECRETS
        .iter()
        .chain(&REDIS_VALUES)
        .chain(&[REDIS_PASSWORD])
    {
        // (Basic auth is base64 on the wire: its decoded form is what podtap could leak.)
        assert!(
            *s == HTTP_SECRETS[4] || on_wire(s),
            "{s} not in the capture"
        );
    }
    let (sql_files, literals) = sql_corpus();
    assert!(
        literals.len() >= 5,
        "the corpus has SQL literals: {literals:?}"
    );
    let mut secrets: Vec<String> = HTTP_SECRETS.iter().map(|s| s.to_string()).collect();
    // Basic auth as it crosses the wire.
    let b64 = Command::new("sh")
        .args(["-c", &format!("printf admin:{} | base64", HTTP_SECRETS[4])])
        .output()
        .unwrap();
    let b64 = String::from_utf8(b64.stdout).unwrap().trim().to_string();
    assert!(on_wire(&b64), "basic auth {b64} in the capture");
    secrets.push(b64);
    secrets.push(REDIS_PASSWORD.into());
    secrets.extend(REDIS_VALUES.iter().map(|s| s.to_string()));
    secrets.extend(literals);

    let (grpc, http, prom) = (free_port(), free_port(), free_port());
    let log = dir.path().join("rotel.out");
    let _rotel = rotel(grpc, http, &log, dir.path());
    let cfg = format!(
        "[export.otlp]\nenabled = true\nprotocol = \"grpc\"\nendpoint = \"http://127.0.0.1:{grpc}\"\n\
         [export.metrics]\ninterval_ms = 200\n\
         [export.spans]\nsample_ratio = 1.0\n\
         [export.prometheus]\nlisten = \"127.0.0.1:{prom}\"\n"
    );
    let mut files = vec![pcap.clone()];
    files.extend(sql_files);
    let mut everything = String::new();
    for output in ["jsonl", "table"] {
        let cfg_file = dir.path().join("podtap.toml");
        std::fs::write(&cfg_file, &cfg).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_podtap"))
            .arg("--config")
            .arg(&cfg_file)
            .arg("replay")
            .args(&files)
            .args(["--output", output, "--hold-secs", "3"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let child = Proc(Some(child));
        wait_listening(prom, "podtap /metrics");
        let body = wait_metrics(prom, "Redis and HTTP recorded", |b| {
            b.contains("db_client_operation_duration_seconds_count")
                && b.contains("http_server_request_duration_seconds_count")
        });
        everything += &body;
        let out = { child }.0.take().unwrap().wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        if output == "jsonl" {
            // The transactions are there: both HTTP requests, the Redis commands (AUTH
            // included) and the SQL statements.
            let all: Vec<serde_json::Value> = stdout
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let txs = records(&all, "transaction");
            let count = |p: &str| txs.iter().filter(|t| t["podtap.protocol"] == p).count();
            assert_eq!(count("http"), 2, "{stdout}");
            assert!(count("redis") >= 5, "{stdout}");
            assert!(count("mysql") + count("postgresql") > 20, "{stdout}");
        }
        everything += &stdout;
        everything += &stderr;
    }
    // The collector has logged every span and metric it received.
    let deadline = Instant::now() + Duration::from_secs(10);
    let collected = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("db.system.name") && text.contains("http.request.method")
            || Instant::now() > deadline
        {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        collected.contains("db.system.name: Str(redis)"),
        "{collected}"
    );
    assert!(collected.contains("http.request.method: Str(POST)"));
    everything += &collected;
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| everything.contains(s.as_str()))
        .collect();
    assert!(leaked.is_empty(), "secrets left podtap: {leaked:?}");
}
