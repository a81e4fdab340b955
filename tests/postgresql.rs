//! PostgreSQL end to end: a real PostgreSQL 15 (Debian's binaries, a fresh cluster in a
//! temporary directory) in a network namespace, driven from another namespace by pgbench
//! in its three query modes (simple, extended, prepared) and by psql running a script with
//! COPY in both directions, failing statements, a multi-statement query and secret
//! literals. tcpdump captures the server's veth; `podtap replay` of the capture must find
//! every statement the server's own `pg_stat_statements` counted (per statement summary,
//! exactly), the errors the server logged with their SQLSTATE (exactly), and no secret.
//! Then the shared corpus: every PostgreSQL request and response tshark's dissector finds,
//! podtap reports.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use podtap::proto::sql::{Dialect, query_summary, summarize_in};

type Value = serde_json::Value;

const BIN: &str = "/usr/lib/postgresql/15/bin";
const SECRET: &str = "S3cr3tLiteral-7f2a";
/// pgbench transactions per client, and clients, per mode.
const TX: u32 = 40;
const CLIENTS: u32 = 2;

/// A temporary directory owned by the `postgres` user (the server refuses to run as root),
/// removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("ptpg"));
        std::fs::create_dir_all(&p).unwrap();
        sh(Command::new("chown").arg("postgres:postgres").arg(&p));
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn as_postgres(ns: Option<&Netns>, program: &str) -> Command {
    let mut c = match ns {
        Some(ns) => ns.cmd("runuser"),
        None => Command::new("runuser"),
    };
    c.args(["-u", "postgres", "--", program]);
    c
}

/// initdb and start a server in `ns` on `SERVER_IP:5432` (and a unix socket in `dir`),
/// with pg_stat_statements loaded; returns once it accepts connections.
fn start_server(ns: &Netns, dir: &Path) -> Proc {
    let data = dir.join("data");
    sh(as_postgres(None, &format!("{BIN}/initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data));
    let hba = data.join("pg_hba.conf");
    let mut h = std::fs::read_to_string(&hba).unwrap();
    h.push_str("host all all 10.200.0.0/24 trust\n");
    std::fs::write(&hba, h).unwrap();
    let log = std::fs::File::create(dir.join("server.log")).unwrap();
    sh(Command::new("chown")
        .arg("postgres:postgres")
        .arg(dir.join("server.log")));
    let child = as_postgres(Some(ns), &format!("{BIN}/postgres"))
        .arg("-D")
        .arg(&data)
        .args([
            "-c",
            &format!("listen_addresses={SERVER_IP}"),
            "-c",
            "port=5432",
        ])
        .arg("-c")
        .arg(format!("unix_socket_directories={}", dir.display()))
        .args([
            "-c",
            "shared_preload_libraries=pg_stat_statements",
            "-c",
            "pg_stat_statements.max=10000",
            "-c",
            "fsync=off",
            "-c",
            "log_error_verbosity=verbose",
            "-c",
            "log_min_error_statement=error",
            "-c",
            "logging_collector=off",
        ])
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("postgres runs (make deps-test)");
    let proc = Proc(Some(child));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = Command::new(format!("{BIN}/pg_isready"))
            .arg("-h")
            .arg(dir)
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "postgres did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    proc
}

/// psql over the unix socket (not captured): setup and the server's statistics.
fn local_psql(dir: &Path, sql: &str) -> String {
    sh(Command::new(format!("{BIN}/psql"))
        .arg("-h")
        .arg(dir)
        .args([
            "-U",
            "postgres",
            "-X",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            sql,
        ]))
}

/// Per statement summary: the calls pg_stat_statements counted (statements that
/// completed; the ones reading or resetting it left out).
fn pgss(dir: &Path) -> BTreeMap<String, u64> {
    let out = local_psql(
        dir,
        "SELECT calls, replace(replace(query, E'\\n', ' '), E'\\x1f', ' ') FROM pg_stat_statements",
    );
    let mut m = BTreeMap::new();
    for l in out.lines() {
        let Some((calls, query)) = l.split_once('|') else {
            continue;
        };
        if query.contains("pg_stat_statements") {
            continue;
        }
        let s = summarize_in(Dialect::Postgres, query);
        *m.entry(query_summary(&s)).or_default() += calls.parse::<u64>().unwrap();
    }
    m
}

/// SQLSTATEs of the errors the server logged (`ERROR:  42P01: ...`, verbose).
fn logged_errors(log: &str) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for l in log.lines() {
        if let Some(rest) = l.split("ERROR:  ").nth(1)
            && let Some(code) = rest.split(':').next()
            && code.len() == 5
        {
            *m.entry(code.to_string()).or_default() += 1;
        }
    }
    m
}

fn replay_raw(file: &Path, config: Option<&Path>) -> (String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_podtap"));
    c.args(["replay", "--workers", "1", "--output", "jsonl"]);
    if let Some(cfg) = config {
        c.arg("--config").arg(cfg);
    }
    let out = c.arg(file).output().expect("run podtap");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "podtap replay failed: {stderr}");
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

fn pg_transactions(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("JSON line"))
        .filter(|r| r["podtap.record"] == "transaction" && r["podtap.protocol"] == "postgresql")
        .collect()
}

const SCRIPT: &str = "
CREATE TABLE items (id int primary key, secret text);
COPY items FROM STDIN;
1\tS3cr3tLiteral-7f2a
2\tplain
3\tother
\\.
COPY items TO STDOUT;
SELECT * FROM no_such_table WHERE secret = 'S3cr3tLiteral-7f2a';
INSERT INTO items VALUES (4, 'S3cr3tLiteral-7f2a');
SELECT count(*) FROM items WHERE secret = 'S3cr3tLiteral-7f2a';
INSERT INTO items VALUES (1, 'duplicate');
DROP TABLE items;
";

#[test]
fn real_server_statements_equal_pg_stat_statements() {
    require_root();
    let pair = Pair::new();
    let dir = TempDir::new();
    let mut server = start_server(&pair.server, &dir.0);
    local_psql(&dir.0, "CREATE EXTENSION pg_stat_statements");
    sh(Command::new(format!("{BIN}/pgbench"))
        .arg("-h")
        .arg(&dir.0)
        .args(["-U", "postgres", "-i", "-q", "-s", "1", "postgres"])
        .stderr(Stdio::null()));
    local_psql(&dir.0, "SELECT pg_stat_statements_reset()");
    let log_before = std::fs::read_to_string(dir.0.join("server.log"))
        .unwrap()
        .len();

    let pcap = dir.0.join("pg.pcap");
    let mut dump = tcpdump(&pair.server, &pair.server_if, &pcap);
    for mode in ["simple", "extended", "prepared"] {
        sh(pair
            .client
            .cmd(&format!("{BIN}/pgbench"))
            .args(["-h", SERVER_IP, "-U", "postgres", "-n", "-M", mode])
            .args([
                "-c",
                &CLIENTS.to_string(),
                "-t",
                &TX.to_string(),
                "postgres",
            ]));
    }
    let script = dir.0.join("script.sql");
    std::fs::write(&script, SCRIPT).unwrap();
    // -f: one statement per Query, COPY data inline; -c: one multi-statement Query.
    sh(pair
        .client
        .cmd(&format!("{BIN}/psql"))
        .args(["-h", SERVER_IP, "-U", "postgres", "-X", "-q", "-f"])
        .arg(&script)
        .stdout(Stdio::null())
        .stderr(Stdio::null()));
    let multi = format!(
        "SELECT 1; SELECT abalance FROM pgbench_accounts WHERE aid = 1; SELECT 1/0 WHERE '{SECRET}' <> ''; SELECT 3"
    );
    let _ = pair
        .client
        .cmd(&format!("{BIN}/psql"))
        .args(["-h", SERVER_IP, "-U", "postgres", "-X", "-q", "-c", &multi])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    std::thread::sleep(Duration::from_millis(300));
    dump.interrupt();

    let truth = pgss(&dir.0);
    let log = std::fs::read_to_string(dir.0.join("server.log")).unwrap();
    let errors_truth = logged_errors(&log[log_before..]);
    server.interrupt();

    let (stdout, stderr) = replay_raw(&pcap, None);
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "a secret literal left"
    );
    assert!(!stdout.contains("7f2a"), "part of a secret left");
    let txs = pg_transactions(&stdout);
    // Statements that completed, per summary; errors per SQLSTATE; skipped ones apart.
    let mut done: BTreeMap<String, u64> = BTreeMap::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut skipped = 0;
    for t in &txs {
        if t.get("podtap.postgresql.skipped").is_some() {
            skipped += 1;
            continue;
        }
        assert_eq!(t["podtap.complete"], true, "{t}");
        assert_eq!(t["db.system.name"], "postgresql");
        assert_eq!(t["db.namespace"], "postgres", "{t}");
        match t.get("error.type").and_then(Value::as_str) {
            Some(code) => {
                assert_eq!(t["db.response.status_code"], code);
                *errors.entry(code.to_string()).or_default() += 1;
            }
            None => {
                let s = t["db.query.summary"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                *done.entry(s).or_default() += 1;
            }
        }
    }
    // pg_stat_statements of PostgreSQL 15 counts a utility statement of a named prepared
    // statement at its first execution on a connection only (the later Executes run the
    // cached utility statement without calling its hook): pgbench -M prepared's BEGIN and
    // END are counted once per client there. pgbench's own count is the truth for those.
    let mut truth = truth;
    let tx_all = u64::from(3 * TX * CLIENTS);
    for s in ["BEGIN", "END"] {
        assert_eq!(
            truth.get(s).copied(),
            Some(u64::from(2 * TX * CLIENTS + CLIENTS)),
            "{s}"
        );
        truth.insert(s.to_string(), tx_all);
    }
    assert_eq!(done, truth, "podtap's statements vs pg_stat_statements");
    // tshark's dissector on the same capture: every CommandComplete it shows is a
    // statement podtap reports.
    let (_, completed, tshark_errors) = tshark_pgsql(&pcap);
    assert_eq!(
        completed as u64,
        done.values().sum::<u64>(),
        "tshark's CommandCompletes"
    );
    assert_eq!(
        tshark_errors as u64,
        errors.values().sum::<u64>(),
        "tshark's ErrorResponses"
    );
    assert_eq!(errors, errors_truth, "podtap's errors vs the server log");
    assert_eq!(
        errors,
        BTreeMap::from([
            ("22012".into(), 1),
            ("23505".into(), 1),
            ("42P01".into(), 1)
        ])
    );
    // The statement after the failing one in the multi-statement query never ran.
    assert_eq!(skipped, 1);
    // pgbench: every statement of every transaction in each mode.
    let updates = done.get("UPDATE pgbench_accounts").copied().unwrap_or(0);
    assert_eq!(updates, 3 * u64::from(TX * CLIENTS));
    // COPY: rows from the tag, bytes counted.
    let copies: Vec<_> = txs
        .iter()
        .filter(|t| t["db.operation.name"] == "COPY")
        .collect();
    assert_eq!(copies.len(), 2);
    assert!(copies.iter().all(|t| t["db.response.returned_rows"] == 3
        && t["podtap.postgresql.copy_bytes"].as_u64() > Some(10)));

    // Opt-in query text: normalized, still no secret.
    let cfg = dir.0.join("podtap.toml");
    std::fs::write(&cfg, "[protocols.postgresql]\nquery_text = true\n").unwrap();
    let (stdout, _) = replay_raw(&pcap, Some(&cfg));
    assert!(!stdout.contains("7f2a"));
    assert!(stdout.contains("\"db.query.text\":\"SELECT * FROM no_such_table WHERE secret = ?\""));
}

/// tshark's PostgreSQL messages of one capture: (statements asked, statements answered).
/// Asked: simple queries and Executes. Answered: CommandComplete, ErrorResponse (those
/// pinned on a statement), EmptyQueryResponse and PortalSuspended.
fn tshark_pgsql(file: &Path) -> (usize, usize, usize) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-d",
            "tcp.port==8000,pgsql",
            "-Y",
            "pgsql",
            "-T",
            "fields",
            "-e",
            "pgsql.type",
        ])
        .output()
        .expect("tshark is installed");
    let text = String::from_utf8_lossy(&out.stdout);
    let types: Vec<&str> = text.lines().flat_map(|l| l.split(',')).collect();
    let n = |t: &str| types.iter().filter(|x| **x == t).count();
    (
        n("Simple query") + n("Execute"),
        n("Command completion") + n("Empty query") + n("Portal suspended"),
        n("Error"),
    )
}

#[test]
fn corpus_every_statement_tshark_finds_podtap_reports() {
    let corpus = pcaps_dir();
    let list = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto/postgresql/golden/corpus.txt"),
    )
    .unwrap();
    let files: Vec<PathBuf> = list
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| corpus.join(l))
        .collect();
    assert_eq!(files.len(), 10);
    for f in &files {
        let (asked, completed, errors) = tshark_pgsql(f);
        let (stdout, _) = replay_raw(f, None);
        let txs = pg_transactions(&stdout);
        let ok = txs
            .iter()
            .filter(|t| {
                t.get("error.type").is_none() && t.get("podtap.postgresql.skipped").is_none()
            })
            .filter(|t| {
                t["podtap.complete"] == true
                    || t["podtap.incomplete_reason"] == "midstream"
                    || t["podtap.incomplete_reason"] == "no_request"
            })
            .count();
        let failed = txs.iter().filter(|t| t.get("error.type").is_some()).count();
        let name = f.display();
        assert_eq!(ok, completed, "{name}: statements completed");
        // Errors of authentication and of the startup are no statements.
        assert!(failed <= errors, "{name}: errors");
        // Every statement asked is reported (completed, failed or skipped).
        assert!(
            txs.len() >= asked.min(completed + failed),
            "{name}: asked {asked}"
        );
        assert!(txs.len() >= completed + failed, "{name}");
    }
}
