//! MySQL/MariaDB end to end: a real mariadbd (Debian's MariaDB, a fresh data directory made
//! by mariadb-install-db) in a network namespace, driven by mysqlslap (fixed iterations),
//! PyMySQL (queries, prepared statements sent as raw COM_STMT_* packets on its
//! authenticated connection, an error, a multi-result CALL, a blob over 16 MiB) and the
//! mariadb client over the compressed protocol; captured by tcpdump on the server's veth
//! and replayed by podtap. The truth is the server's own `SHOW GLOBAL STATUS LIKE 'Com_%'`
//! delta: podtap's transactions per command and statement equal it. A secret literal
//! never appears in podtap's output. tshark's MySQL dissector finds no command podtap
//! misses. Then the shared corpus: every MySQL capture's commands and errors equal
//! tshark's.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

type Value = serde_json::Value;

fn mysql_transactions(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| {
            r["podtap.record"] == "transaction"
                && (r["podtap.protocol"] == "mysql" || r["podtap.protocol"] == "mariadb")
        })
        .collect()
}

/// Commands tshark's MySQL dissector finds (decoded as MySQL on `port`), by command code,
/// and the error codes of its error responses.
fn tshark_mysql(file: &Path, port: u16) -> (BTreeMap<u8, u64>, BTreeMap<String, u64>) {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-d", &format!("tcp.port=={port},mysql")])
        .args([
            "-T",
            "fields",
            "-e",
            "mysql.command",
            "-e",
            "mysql.error_code",
        ])
        .output()
        .expect("tshark is installed");
    let mut cmds = BTreeMap::new();
    let mut errs = BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut f = line.split('\t');
        for c in f.next().unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            *cmds.entry(c.parse().expect("command code")).or_default() += 1;
        }
        for e in f.next().unwrap_or("").split(',').filter(|c| !c.is_empty()) {
            *errs.entry(e.to_string()).or_default() += 1;
        }
    }
    (cmds, errs)
}

/// The command codes podtap reports (`podtap.mysql.command`), and its error codes.
fn podtap_mysql(txs: &[&Value]) -> (BTreeMap<u8, u64>, BTreeMap<String, u64>) {
    let mut cmds = BTreeMap::new();
    let mut errs = BTreeMap::new();
    for t in txs {
        if let Some(c) = t["podtap.mysql.command"].as_str() {
            *cmds.entry(command_code(c)).or_default() += 1;
        }
        if let Some(e) = t["db.response.status_code"].as_str() {
            *errs.entry(e.to_string()).or_default() += 1;
        }
    }
    (cmds, errs)
}

fn command_code(name: &str) -> u8 {
    match name {
        "COM_QUIT" => 1,
        "COM_INIT_DB" => 2,
        "COM_QUERY" => 3,
        "COM_FIELD_LIST" => 4,
        "COM_STATISTICS" => 9,
        "COM_PING" => 14,
        "COM_CHANGE_USER" => 17,
        "COM_STMT_PREPARE" => 22,
        "COM_STMT_EXECUTE" => 23,
        "COM_STMT_SEND_LONG_DATA" => 24,
        "COM_STMT_CLOSE" => 25,
        "COM_STMT_RESET" => 26,
        "COM_SET_OPTION" => 27,
        "COM_STMT_FETCH" => 28,
        "COM_RESET_CONNECTION" => 31,
        other => panic!("unexpected command {other}"),
    }
}

/// Corpus captures and their server ports. Why some differ from tshark:
const CORPUS: &[(&str, u16, &str)] = &[
    ("deepflow/mysql/binary-in-sql.pcap", 2883, ""),
    ("deepflow/mysql/large-response.pcap", 6033, ""),
    // Compressed protocol picked up after the handshake: tshark reads each compressed
    // packet's header as an ordinary one (command 0, "Sleep"); podtap inflates it and
    // reports the command inside.
    (
        "deepflow/mysql/mysql-compressed-response.pcap",
        30130,
        "compressed",
    ),
    ("deepflow/mysql/mysql-database.pcap", 20130, ""),
    ("deepflow/mysql/mysql-error.pcap", 20130, ""),
    ("deepflow/mysql/mysql-exec.pcap", 30130, ""),
    ("deepflow/mysql/mysql-login-error.pcap", 3306, ""),
    ("deepflow/mysql/mysql-statement-id.pcap", 30130, ""),
    ("deepflow/mysql/mysql-statement.pcap", 30130, ""),
    ("deepflow/mysql/mysql-table-alter.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-create.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-delete.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-desc.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-destroy.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-insert.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-select.pcap", 20130, ""),
    ("deepflow/mysql/mysql-table-update.pcap", 20130, ""),
    ("deepflow/mysql/mysql-use.pcap", 3306, "compressed"),
    ("deepflow/mysql/mysql.pcap", 20130, ""),
    // Compressed, picked up mid-connection, server on 30130 and client on 20871: with no
    // SYN the flow layer takes the lower port for the server, so the query travels
    // "to the client" and nothing is decoded. tshark reads the one compressed query as
    // command 0 ("Sleep"), as in the other compressed captures.
    (
        "deepflow/mysql/partial-packet-compressed.pcap",
        30130,
        "roles",
    ),
    ("deepflow/mysql/truncate-1024.pcap", 6033, ""),
    ("packetbeat/mysql_affected_rows.pcap", 3306, ""),
    ("packetbeat/mysql_connection.pcap", 3306, ""),
    ("packetbeat/mysql_err_database_not_selected.pcap", 3306, ""),
    ("packetbeat/mysql_int_string_operations.pcap", 13001, ""),
    ("packetbeat/mysql_long.pcap", 3306, ""),
    ("packetbeat/mysql_long_result.pcap", 3306, ""),
    ("packetbeat/mysql_prepare_statement.pcap", 3307, ""),
    ("packetbeat/mysql_windows_lineending.pcap", 3306, ""),
    ("packetbeat/mysql_with_gap.pcap", 3306, ""),
    ("packetbeat/mysql_with_whitespaces.pcap", 3306, ""),
];

#[test]
fn corpus_mysql_captures_equal_tshark() {
    let dir = pcaps_dir();
    if !dir.is_dir() {
        eprintln!("skipping: no corpus at {}", dir.display());
        return;
    }
    let listed: Vec<PathBuf> = CORPUS.iter().map(|c| dir.join(c.0)).collect();
    for f in captures() {
        let name = f.file_name().unwrap().to_string_lossy().to_lowercase();
        if name.contains("mysql") || f.parent().is_some_and(|p| p.ends_with("mysql")) {
            assert!(listed.contains(&f), "{} is not in CORPUS", f.display());
        }
    }
    let results = for_each_file(&listed, |f| {
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        let (port, why) = CORPUS
            .iter()
            .find(|c| c.0 == rel)
            .map(|c| (c.1, c.2))
            .unwrap();
        let records = replay(&[f], &["--workers", "1", "--output", "jsonl"]);
        (rel, port, why, records, tshark_mysql(f, port))
    });
    for (rel, port, why, records, (t_cmds, t_errs)) in &results {
        let txs = mysql_transactions(records);
        let (p_cmds, p_errs) = podtap_mysql(&txs);
        match *why {
            "" => {
                assert_eq!(p_cmds, *t_cmds, "{rel}: podtap vs tshark commands");
                assert_eq!(p_errs, *t_errs, "{rel}: podtap vs tshark errors");
                assert!(!txs.is_empty(), "{rel}");
                assert!(txs.iter().all(|t| t["server.port"] == *port), "{rel}");
            }
            "compressed" => {
                // Every compressed packet tshark calls a command holds one podtap found.
                let total: u64 = p_cmds.values().sum();
                assert_eq!(t_cmds.get(&0).copied(), Some(total), "{rel}");
                assert_eq!(t_cmds.len(), 1, "{rel}");
            }
            _ => {
                assert!(txs.is_empty(), "{rel}");
                assert_eq!(t_cmds.iter().collect::<Vec<_>>(), [(&0, &1)], "{rel}");
            }
        }
    }
    let get = |rel: &str| {
        let r = results.iter().find(|r| r.0 == rel).unwrap();
        mysql_transactions(&r.3)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    // What the upstream tests assert, where they do: packetbeat's affected rows and
    // returned rows, deepflow's statement ids, login error and compressed response.
    // packetbeat's mysql_with_whitespaces test: 7 queries (podtap also reports the 5
    // COM_PING between them, which packetbeat does not), the 6th a SELECT of table test
    // whose response is 118 bytes.
    let t: Vec<_> = get("packetbeat/mysql_with_whitespaces.pcap")
        .into_iter()
        .filter(|t| t["podtap.mysql.command"] == "COM_QUERY")
        .collect();
    let ops: Vec<_> = t
        .iter()
        .map(|t| t["db.operation.name"].as_str().unwrap())
        .collect();
    assert_eq!(
        ops,
        [
            "SET",
            "SET",
            "DROP TABLE",
            "CREATE TABLE",
            "INSERT",
            "SELECT",
            "SELECT"
        ]
    );
    assert_eq!(t[5]["db.collection.name"], "test");
    assert_eq!(t[5]["podtap.response.bytes"], 118);
    assert!(t.iter().all(|t| t.get("error.type").is_none()));
    let t = get("packetbeat/mysql_affected_rows.pcap");
    assert_eq!(t[0]["podtap.mysql.affected_rows"], 316);
    let t = get("packetbeat/mysql_long_result.pcap");
    assert_eq!(t[0]["db.response.returned_rows"], 15);
    let t = get("packetbeat/mysql_err_database_not_selected.pcap");
    assert_eq!(t[0]["error.type"], "1046");
    assert_eq!(t[0]["podtap.mysql.sqlstate"], "3D000");
    let t = get("deepflow/mysql/mysql-login-error.pcap");
    assert_eq!(t[0]["db.response.status_code"], "1040");
    let t = get("deepflow/mysql/mysql-compressed-response.pcap");
    assert_eq!(t[0]["db.response.returned_rows"], 5);
    let t = get("packetbeat/mysql_prepare_statement.pcap");
    assert_eq!(t[1]["podtap.mysql.command"], "COM_STMT_EXECUTE");
    assert_eq!(t[1]["db.query.summary"], t[0]["db.query.summary"]);
}

// ---------------------------------------------------------------------------------------
// A real MariaDB.

/// A secret that goes into literals (and the password) and must never come out.
const SECRET: &str = "Sup3rS3cretLiteral";

struct Mariadb {
    _proc: Proc,
    socket: PathBuf,
}

fn mariadb(ns: &Netns, ip: &str, dir: &Path) -> Mariadb {
    let data = dir.join("data");
    sh(Command::new("mariadb-install-db")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args([
            "--user=root",
            "--auth-root-authentication-method=normal",
            "--skip-test-db",
        ])
        .stdout(Stdio::null()));
    let socket = dir.join("sock");
    let child = ns
        .cmd("/usr/sbin/mariadbd")
        .arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--pid-file={}", dir.join("pid").display()))
        .arg(format!("--bind-address={ip}"))
        .args([
            "--port=3306",
            "--user=root",
            "--skip-log-bin",
            "--skip-name-resolve",
        ])
        .args(["--max-allowed-packet=64M", "--innodb-buffer-pool-size=32M"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("err.log")).unwrap())
        .spawn()
        .expect("mariadb-server is installed (make deps-test)");
    let server = Mariadb {
        _proc: Proc(Some(child)),
        socket,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.admin_ok("SELECT 1") {
        assert!(Instant::now() < deadline, "mariadbd did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.admin(&format!(
        "CREATE USER 'app'@'%' IDENTIFIED BY '{SECRET}'; GRANT ALL ON *.* TO 'app'@'%';"
    ));
    server
}

impl Mariadb {
    /// The mariadb client as root over the unix socket (never on the wire captured).
    fn admin_cmd(&self, sql: &str) -> Command {
        let mut c = Command::new("mariadb");
        c.arg("--no-defaults")
            .arg(format!("--socket={}", self.socket.display()))
            .args(["-uroot", "-N", "-B", "-e", sql]);
        c
    }

    fn admin_ok(&self, sql: &str) -> bool {
        self.admin_cmd(sql)
            .output()
            .is_ok_and(|o| o.status.success())
    }

    fn admin(&self, sql: &str) -> String {
        sh(&mut self.admin_cmd(sql))
    }

    /// `Com_*` counters.
    fn com(&self) -> BTreeMap<String, i64> {
        self.admin("SHOW GLOBAL STATUS LIKE 'Com\\_%'")
            .lines()
            .filter_map(|l| {
                let (k, v) = l.split_once('\t')?;
                Some((
                    k.trim_start_matches("Com_").to_string(),
                    v.trim().parse().ok()?,
                ))
            })
            .collect()
    }
}

fn diff(a: &BTreeMap<String, i64>, b: &BTreeMap<String, i64>) -> BTreeMap<String, i64> {
    b.iter()
        .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect()
}

/// The `Com_` counters a transaction counts in (MariaDB counts an executed prepared
/// statement both as `stmt_execute` and as its statement).
fn coms_of(t: &Value) -> Vec<String> {
    if t["podtap.mysql.skipped"] == true {
        // A statement that never ran: the server counted nothing.
        return Vec::new();
    }
    let mut v: Vec<String> = com_of(t).into_iter().collect();
    if t["podtap.mysql.command"] == "COM_STMT_EXECUTE" {
        v.push("stmt_execute".into());
    }
    v
}

/// The `Com_` counter a transaction counts in (None: one the test does not compare).
fn com_of(t: &Value) -> Option<String> {
    let cmd = t["podtap.mysql.command"].as_str()?;
    let op = t["db.operation.name"].as_str().unwrap_or("");
    let name = match cmd {
        "COM_QUERY" | "COM_STMT_EXECUTE" => match op {
            "SET" => "set_option",
            "CALL" => "call_procedure",
            "USE" => "change_db",
            "CREATE DATABASE" | "CREATE SCHEMA" => "create_db",
            "DROP DATABASE" | "DROP SCHEMA" => "drop_db",
            "SHOW" | "QUERY" => return None,
            op => return Some(op.to_lowercase().replace(' ', "_")),
        },
        "COM_INIT_DB" => "change_db",
        "COM_PING" => "admin_commands",
        "COM_STATISTICS" => "show_status",
        "COM_QUIT" => return None,
        c => return Some(c.trim_start_matches("COM_").to_lowercase()),
    };
    Some(name.to_string())
}

/// PyMySQL: statements, an error, a multi-result CALL, multi-statement queries (one
/// failing half-way), a blob over 16 MiB, and prepared
/// statements as raw packets (PyMySQL prepares client-side only).
const PY_CLIENT: &str = r#"
import pymysql, struct, sys
ip, secret = sys.argv[1], sys.argv[2]
c = pymysql.connect(host=ip, user='app', password=secret, client_flag=pymysql.constants.CLIENT.MULTI_STATEMENTS)
cur = c.cursor()
cur.execute("CREATE DATABASE shop")
c.select_db("shop")
cur.execute("CREATE TABLE users (id INT PRIMARY KEY, name VARCHAR(64), pw VARCHAR(64))")
cur.execute("CREATE TABLE blobs (id INT PRIMARY KEY, v LONGBLOB)")
for i in range(20):
    cur.execute("INSERT INTO users VALUES (%s, %s, %s)", (i, "user%d" % i, secret))
cur.execute("UPDATE users SET name = 'x' WHERE id < 5")
cur.execute("SELECT * FROM users WHERE pw = %s", (secret,))
assert len(cur.fetchall()) == 20
cur.execute("DELETE FROM users WHERE id = 19")
try:
    cur.execute("SELECT * FROM missing_table WHERE pw = %s", (secret,))
except pymysql.err.ProgrammingError as e:
    assert e.args[0] == 1146
cur.execute("CREATE PROCEDURE two() BEGIN SELECT id FROM users WHERE id < 3; SELECT name FROM users WHERE id < 2; END")
cur.execute("CALL two()")
sets = 1
while cur.nextset():
    sets += 1
assert sets == 3, sets
cur.execute("SELECT id FROM users WHERE id < 4; UPDATE users SET name = 'y' WHERE id = 2; SELECT COUNT(*) FROM users")
sets = 1
while cur.nextset():
    sets += 1
assert sets == 3, sets
cur.execute("SELECT id FROM users WHERE id = 1; SELECT * FROM missing2 WHERE pw = '%s'; DELETE FROM users WHERE id = 18" % secret)
try:
    cur.nextset()
    assert False, "no error"
except pymysql.err.ProgrammingError as e:
    assert e.args[0] == 1146
cur.execute("INSERT INTO blobs VALUES (%s, %s)", (1, b'b' * (17 << 20)))
cur.execute("SELECT LENGTH(v) FROM blobs")
assert cur.fetchone()[0] == 17 << 20
c.ping()

def send(payload):
    c._next_seq_id = 0
    c._write_bytes(struct.pack('<I', len(payload))[:3] + b'\0' + payload)
    c._next_seq_id = 1
def read():
    return c._read_packet().get_all_data()
def eof(p):
    return p[0] == 0xfe and len(p) < 9

send(b'\x16' + b'SELECT name FROM users WHERE id = ?')
ok = read()
sid = struct.unpack('<I', ok[1:5])[0]
cols, params = struct.unpack('<HH', ok[5:9])
for _ in range(params + (params > 0) + cols + (cols > 0)):
    read()
for i in range(5):
    send(b'\x17' + struct.pack('<IBI', sid, 0, 1) + b'\x00\x01\x03\x00' + struct.pack('<i', i))
    n = 0
    while n < 2:
        n += eof(read())
send(b'\x18' + struct.pack('<IH', sid, 0) + b'long data')
send(b'\x1a' + struct.pack('<I', sid))
read()
send(b'\x19' + struct.pack('<I', sid))
send(b'\x16' + b'UPDATE users SET name = ? WHERE id = 1')
ok = read()
sid2 = struct.unpack('<I', ok[1:5])[0]
cols, params = struct.unpack('<HH', ok[5:9])
for _ in range(params + (params > 0) + cols + (cols > 0)):
    read()
send(b'\x17' + struct.pack('<IBI', sid2, 0, 1) + b'\x00\x01\xfe\x00' + bytes([len(secret)]) + secret.encode())
assert read()[0] == 0
send(b'\x19' + struct.pack('<I', sid2))
cur.execute("SELECT COUNT(*) FROM users")
c.close()
"#;

#[test]
fn real_mariadb_counts_equal_its_com_status() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = Pair::new();
    let server = mariadb(&pair.server, SERVER_IP, dir.path());
    // The admin connection's own cost (its SHOW STATUS), measured: two reads back to back.
    let c0 = server.com();
    let before = server.com();
    let cost = diff(&c0, &before);
    let pcap = dir.path().join("mysql.pcap");
    let mut dump = tcpdump(&pair.server, &pair.server_if, &pcap);

    sh(pair
        .client
        .cmd("python3")
        .args(["-c", PY_CLIENT, SERVER_IP, SECRET]));
    // mysqlslap: auto-generated mixed load, fixed queries and iterations.
    sh(pair.client.cmd("mysqlslap").args([
        "--no-defaults",
        "-h",
        SERVER_IP,
        "-u",
        "app",
        &format!("-p{SECRET}"),
        "--auto-generate-sql",
        "--auto-generate-sql-load-type=mixed",
        "--number-of-queries=200",
        "--concurrency=4",
        "--iterations=2",
    ]));
    // The compressed protocol.
    sh(pair.client.cmd("mariadb").args([
        "--no-defaults",
        "--compress",
        "-h",
        SERVER_IP,
        "-u",
        "app",
        &format!("-p{SECRET}"),
        "shop",
        "-e",
        "SELECT id, name FROM users WHERE id < 7; SELECT COUNT(*) FROM users",
    ]));
    // Let the server finish the last commands before reading its counters.
    std::thread::sleep(Duration::from_millis(500));
    let after = server.com();
    dump.interrupt();
    let mut truth = diff(&before, &after);
    for (k, v) in &cost {
        *truth.entry(k.clone()).or_default() -= v;
    }
    truth.retain(|_, v| *v != 0);

    let records = replay(&[&pcap], &["--workers", "1", "--output", "jsonl"]);
    let out = serde_json::to_string(&records).unwrap();
    assert!(!out.contains(SECRET), "the secret left podtap");
    let txs = mysql_transactions(&records);
    assert!(txs.iter().all(|t| t["db.system.name"] == "mariadb"));
    let mut podtap: BTreeMap<String, i64> = BTreeMap::new();
    for t in &txs {
        for c in coms_of(t) {
            *podtap.entry(c).or_default() += 1;
        }
    }
    // The server also counts the statements a procedure runs: CALL two() runs two SELECTs.
    let calls = txs
        .iter()
        .filter(|t| t["db.operation.name"] == "CALL")
        .count() as i64;
    *podtap.entry("select".into()).or_default() += 2 * calls;
    // Every counter the server moved that podtap has a name for, and every one podtap
    // counted, agree; SHOW statements are not compared (Com_show_* per object).
    let compared: BTreeMap<String, i64> = truth
        .iter()
        .filter(|(k, _)| !k.starts_with("show_"))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    podtap.retain(|k, _| !k.starts_with("show_"));
    assert_eq!(podtap, compared, "podtap vs Com_ deltas");
    // The error, exact.
    let errors: Vec<_> = txs
        .iter()
        .filter(|t| t.get("error.type").is_some())
        .collect();
    assert_eq!(errors.len(), 2, "{errors:?}");
    for e in &errors {
        assert_eq!(e["db.response.status_code"], "1146");
        assert_eq!(e["podtap.mysql.sqlstate"], "42S02");
    }
    // The multi-statement queries: a transaction per statement, each with its own
    // result; the statement after the failed one never ran.
    let summaries = |t: &Value| {
        format!(
            "{} rows={} affected={} skipped={}",
            t["db.query.summary"].as_str().unwrap_or(""),
            t["db.response.returned_rows"],
            t["podtap.mysql.affected_rows"],
            t["podtap.mysql.skipped"],
        )
    };
    let start = txs
        .iter()
        .position(|t| t["db.query.summary"] == "CALL")
        .expect("the CALL");
    let multi: Vec<String> = txs[start + 1..start + 7]
        .iter()
        .map(|t| summaries(t))
        .collect();
    assert_eq!(
        multi,
        [
            "SELECT users rows=4 affected=null skipped=null",
            "UPDATE users rows=null affected=1 skipped=null",
            "SELECT users rows=1 affected=null skipped=null",
            "SELECT users rows=1 affected=null skipped=null",
            "SELECT missing2 rows=null affected=null skipped=null",
            "DELETE users rows=null affected=null skipped=true",
        ]
    );
    // The multi-result CALL: one transaction, three results, three rows.
    let call: Vec<_> = txs
        .iter()
        .filter(|t| t["db.operation.name"] == "CALL")
        .collect();
    assert_eq!(call.len(), 1);
    assert_eq!(call[0]["podtap.mysql.results"], 3);
    assert_eq!(call[0]["db.response.returned_rows"], 3 + 2);
    // The blob: one statement over two packets, complete.
    let blob: Vec<_> = txs
        .iter()
        .filter(|t| t["db.query.summary"] == "INSERT blobs")
        .collect();
    assert_eq!(blob.len(), 1);
    assert!(blob[0]["podtap.request.bytes"].as_u64().unwrap() > 17 << 20);
    // Complete, unless the capture itself lost some of its 17 MB (tcpdump descheduled
    // under load: tshark sees the hole too); then podtap must say it has a gap.
    if blob[0]["podtap.complete"] != true {
        let lost = tshark_count(&pcap, "tcp.analysis.lost_segment");
        let why = blob[0]["podtap.incomplete_reason"].as_str().unwrap_or("");
        assert!(
            lost > 0 && why.contains("gap"),
            "incomplete without a hole in the capture: {}",
            blob[0]
        );
        eprintln!("the capture lost {lost} segments: the blob has its gap");
    }
    // Prepared statements report the prepared text.
    let execs: Vec<_> = txs
        .iter()
        .filter(|t| t["podtap.mysql.command"] == "COM_STMT_EXECUTE")
        .collect();
    assert_eq!(execs.len(), 6);
    assert_eq!(execs[0]["db.query.summary"], "SELECT users");
    assert_eq!(execs[5]["db.query.summary"], "UPDATE users");
    // The compressed connection: its two SELECTs decoded.
    assert!(txs.iter().any(|t| t["db.response.returned_rows"] == 7));
    // tshark finds no command podtap misses. Compressed packets aside (tshark reads them as
    // command 0), and what tshark finds inside the 17 MiB statement: it takes pieces of
    // its second packet for commands of their own, named by the statement's bytes they
    // start with ("Unknown (50)"), which no client sends.
    let (mut t_cmds, t_errs) = tshark_mysql(&pcap, 3306);
    let (p_cmds, p_errs) = podtap_mysql(&txs);
    t_cmds.remove(&0);
    t_cmds.retain(|&c, _| c <= 0x1f);
    for (c, n) in &t_cmds {
        assert!(
            p_cmds.get(c).copied().unwrap_or(0) >= *n,
            "command {c}: tshark {n}, podtap {p_cmds:?}"
        );
    }
    assert_eq!(p_errs, t_errs);
    // With db.query.text on, the text is there and the secret still is not.
    let cfg = dir.path().join("podtap.toml");
    std::fs::write(
        &cfg,
        "[protocols.mysql]\nquery_text = true\nredact = false\n",
    )
    .unwrap();
    let records = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .arg("--config")
        .arg(&cfg)
        .args(["replay", "--workers", "1", "--output", "jsonl"])
        .arg(&pcap)
        .output()
        .expect("podtap");
    assert!(records.status.success());
    let text = String::from_utf8_lossy(&records.stdout);
    assert!(text.contains("db.query.text"));
    assert!(
        !text.contains(SECRET),
        "the secret left podtap with query_text on"
    );
}
