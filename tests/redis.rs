//! Redis end to end: a real redis-server in a network namespace driven by real clients
//! (redis-benchmark pipelined and not, redis-cli in RESP2 and RESP3, subscribers and a
//! publisher, a raw client silencing replies), captured by tcpdump on the server's veth
//! and replayed by podtap. The truth is the server's own `INFO commandstats` delta and
//! what the clients printed; tshark's RESP dissector must find no command podtap misses.
//! Then the shared corpus: every Redis capture replays to the transactions the upstream
//! tests (packetbeat, deepflow) and tshark find.

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

type Value = serde_json::Value;

/// `podtap replay` of one file: its records and its summary (stderr).
fn replay_summary(file: &Path) -> (Vec<Value>, String) {
    let (stdout, stderr) = replay_text(file, &["--workers", "1", "--output", "jsonl"]);
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (records, stderr)
}

/// `podtap replay --output table` of one file: the table alone. Nothing wants the
/// records there, so plainly answered commands are counted without them (see
/// `podtap::proto::tally`).
fn replay_table(file: &Path) -> String {
    replay_text(file, &["--workers", "1", "--output", "table"]).0
}

/// The summary's rows per endpoint (protocol, server, operation, counts, percentiles).
fn endpoint_rows(summary: &str) -> Vec<&str> {
    summary
        .lines()
        .skip_while(|l| !l.starts_with("protocol "))
        .take_while(|l| !l.trim().is_empty())
        .collect()
}

/// The table counted without records is, row for row, the table the records make.
fn assert_tallied_table_is_the_records_table(file: &Path, records_summary: &str) {
    let table = replay_table(file);
    let rows = endpoint_rows(&table);
    assert!(rows.len() > 1, "{}: {table}", file.display());
    assert_eq!(rows, endpoint_rows(records_summary), "{}", file.display());
}

fn redis_transactions(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| r["podtap.record"] == "transaction" && r["podtap.protocol"] == "redis")
        .collect()
}

/// An event's count in the summary's event table (0 when absent).
fn event(summary: &str, name: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

/// Per command as `INFO commandstats` names it (`get`, `config|get`): transactions and
/// errors.
fn podtap_counts(txs: &[&Value]) -> BTreeMap<String, (u64, u64)> {
    let mut m: BTreeMap<String, (u64, u64)> = BTreeMap::new();
    for t in txs {
        let op = t["db.operation.name"].as_str().unwrap_or("");
        let e = m.entry(op.to_lowercase().replace(' ', "|")).or_default();
        e.0 += 1;
        e.1 += t.get("error.type").is_some() as u64;
    }
    m
}

/// `INFO commandstats` of the server at `ip` (asked from inside `ns`, over its loopback:
/// not on the captured veth): per command, calls (rejected ones included) and errors
/// (failed and rejected calls).
fn commandstats(ns: &Netns, ip: &str) -> BTreeMap<String, (u64, u64)> {
    let out = sh(ns.cmd("redis-cli").args(["-h", ip, "INFO", "commandstats"]));
    let mut m = BTreeMap::new();
    for line in out.lines() {
        let Some((name, fields)) = line
            .trim()
            .strip_prefix("cmdstat_")
            .and_then(|l| l.split_once(':'))
        else {
            continue;
        };
        let field = |k: &str| -> u64 {
            fields
                .split(',')
                .find_map(|f| f.strip_prefix(&format!("{k}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let rejected = field("rejected_calls");
        m.insert(
            name.to_string(),
            (field("calls") + rejected, field("failed_calls") + rejected),
        );
    }
    m
}

/// What changed between two snapshots.
fn delta(
    after: &BTreeMap<String, (u64, u64)>,
    before: &BTreeMap<String, (u64, u64)>,
) -> BTreeMap<String, (u64, u64)> {
    after
        .iter()
        .filter_map(|(k, &(c, e))| {
            let (c0, e0) = before.get(k).copied().unwrap_or_default();
            (c > c0).then(|| (k.clone(), (c - c0, e - e0)))
        })
        .collect()
}

/// The commands tshark's RESP dissector finds in what clients sent to `port`: the first
/// bulk string of each top-level array, and the first word of each inline line when it
/// names a command (the dissector shows inline lines as bare fragments, commands or not).
fn tshark_commands(file: &Path, port: u16) -> BTreeMap<String, u64> {
    let decode = format!("tcp.port=={port},resp");
    let filter = format!("resp && tcp.dstport=={port}");
    let run = |args: &[&str]| {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(file)
            .args(["-d", &decode, "-Y", &filter])
            .args(args)
            .output()
            .expect("tshark is installed");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The client's bytes per frame, to read inline lines from.
    let mut payloads = BTreeMap::new();
    for l in run(&["-T", "fields", "-e", "frame.number", "-e", "tcp.payload"]).lines() {
        if let Some((n, hex)) = l.split_once('\t') {
            payloads.insert(n.to_string(), unhex(hex));
        }
    }
    let attr = |line: &str, key: &str| -> Option<String> {
        let at = line.find(&format!(" {key}=\""))? + key.len() + 3;
        Some(line[at..].split('"').next()?.to_string())
    };
    let mut found = BTreeMap::new();
    let (mut frame, mut base) = (String::new(), 0usize);
    // The command of the top-level array being read, counted at the array's end unless
    // the dissector only partly decoded it (it decodes the array again, whole, in a
    // later frame).
    let mut array: Option<Option<String>> = None;
    let mut partial = false;
    let mut flush = |array: &mut Option<Option<String>>, partial: bool| {
        if let Some(Some(cmd)) = array.take()
            && !partial
        {
            *found.entry(cmd).or_default() += 1;
        }
    };
    for line in run(&["-T", "pdml"]).lines() {
        let indent = line.len() - line.trim_start().len();
        let name = attr(line, "name").unwrap_or_default();
        if name == "num" && frame.is_empty() {
            frame = attr(line, "show").unwrap_or_default();
        }
        let closing = line.trim_start().starts_with("</proto>");
        if closing || (indent == 4 && line.trim_start().starts_with("<field")) {
            flush(&mut array, partial);
            partial = false;
        }
        if line.trim_start().starts_with("</packet>") {
            frame.clear();
        }
        if line.trim_start().starts_with("<proto name=\"resp\"") {
            base = attr(line, "pos").and_then(|p| p.parse().ok()).unwrap_or(0);
            continue;
        }
        if indent == 4 && name == "resp.array" {
            array = Some(None);
        } else if indent == 4 && name == "resp.fragment" {
            let pos: usize = attr(line, "pos").and_then(|p| p.parse().ok()).unwrap_or(0);
            let size: usize = attr(line, "size").and_then(|p| p.parse().ok()).unwrap_or(0);
            if let Some(text) = payloads
                .get(&frame)
                .and_then(|p| p.get(pos - base..pos - base + size))
            {
                let text = String::from_utf8_lossy(text);
                if let Some(word) = text.split_whitespace().next()
                    && podtap::proto::redis::is_command(word.as_bytes())
                {
                    array = Some(Some(word.to_lowercase()));
                }
            }
        } else if name == "resp.bulk_string.value"
            && let Some(cmd @ None) = &mut array
        {
            let value = attr(line, "value").unwrap_or_default();
            *cmd = Some(String::from_utf8_lossy(&unhex(&value)).to_lowercase());
        } else if name == "resp.reassembled_in_next_frame" {
            partial = true;
        }
    }
    flush(&mut array, partial);
    found
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// podtap's transactions per command, by the command's first word (`client` for `CLIENT
/// SETNAME`), the way tshark names them.
fn by_first_word(txs: &[&Value]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for t in txs {
        if t["podtap.incomplete_reason"]
            .as_str()
            .is_some_and(|r| r.contains("no_request"))
        {
            continue;
        }
        let op = t["db.operation.name"].as_str().unwrap_or("");
        let word = op.split(' ').next().unwrap_or("").to_lowercase();
        *m.entry(word).or_default() += 1;
    }
    m
}

/// redis-server in `ns` on `ip:6379`; returns once it answers.
fn redis_server(ns: &Netns, ip: &str) -> Proc {
    let child = ns
        .cmd("redis-server")
        .args([
            "--bind",
            ip,
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .args(["--protected-mode", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed (make deps-test)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ns
        .cmd("redis-cli")
        .args(["-h", ip, "PING"])
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"PONG"))
    {
        assert!(Instant::now() < deadline, "redis-server did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(Some(child))
}

/// redis-cli in `ns` reading commands from `input`, one per line; returns what it printed.
fn redis_cli(ns: &Netns, args: &[&str], input: &str) -> String {
    let mut child = ns
        .cmd("redis-cli")
        .args(["-h", SERVER_IP])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("redis-cli is installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "redis-cli {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Lines a client printed for error replies.
fn error_lines(out: &str) -> u64 {
    out.lines()
        .filter(|l| {
            ["ERR ", "WRONGTYPE ", "EXECABORT "]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .count() as u64
}

/// A subscriber (redis-cli SUBSCRIBE) whose printed lines arrive on a channel.
struct Subscriber {
    _proc: Proc,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Subscriber {
    fn start(ns: &Netns, args: &[&str]) -> Subscriber {
        let mut child = ns
            .cmd("redis-cli")
            .args(["-h", SERVER_IP])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-cli is installed");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        Subscriber {
            _proc: Proc(Some(child)),
            lines: rx,
            seen: Vec::new(),
        }
    }

    /// Wait until `word` was printed `n` times in all.
    fn wait_for(&mut self, word: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.seen.iter().filter(|l| *l == word).count() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("subscriber printed {:?}, not {n} {word:?}", self.seen),
            }
        }
    }
}

/// What the raw client (the one client here that silences replies) sends: CLIENT REPLY
/// SKIP then SET (no reply) and GET (answered); CLIENT REPLY OFF, two INCRs (no reply),
/// CLIENT REPLY ON (answered).
const RAW_CLIENT: &str = r#"
import socket, sys
def c(*a):
    return ("*%d\r\n" % len(a) + "".join("$%d\r\n%s\r\n" % (len(x), x) for x in a)).encode()
s = socket.create_connection((sys.argv[1], 6379))
def expect(want):
    got = b""
    while not got.endswith(want):
        d = s.recv(4096)
        if not d:
            sys.exit("closed after %r" % got)
        got += d
    return got
s.sendall(c("CLIENT", "REPLY", "SKIP") + c("SET", "skip:1", "x") + c("GET", "skip:1"))
assert expect(b"$1\r\nx\r\n") == b"$1\r\nx\r\n"
s.sendall(c("CLIENT", "REPLY", "OFF") + c("INCR", "off:1") + c("INCR", "off:1") + c("CLIENT", "REPLY", "ON"))
assert expect(b"+OK\r\n") == b"+OK\r\n"
s.close()
"#;

#[test]
fn real_server_commands_equal_its_commandstats() {
    require_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let pair = Pair::new();
    let _server = redis_server(&pair.server, SERVER_IP);
    let before = commandstats(&pair.server, SERVER_IP);
    let pcap = dir.path().join("redis.pcap");
    let mut dump = tcpdump(&pair.server, &pair.server_if, &pcap);

    // Pipelined (16 commands a round trip) and not, four connections each.
    for (n, pipeline) in [("2000", "16"), ("300", "1")] {
        sh(pair.client.cmd("redis-benchmark").args([
            "-h",
            SERVER_IP,
            "-n",
            n,
            "-P",
            pipeline,
            "-c",
            "4",
            "-t",
            "get,set,incr,lpush,lpop,mset",
            "-q",
        ]));
    }
    // A session: SELECT 3, MULTI/EXEC, a MULTI aborted by a queueing error, failing
    // commands, container commands.
    let session = redis_cli(
        &pair.client,
        &[],
        "SELECT 3\nSET user:1 alice\nGET user:1\nMULTI\nSET counter:1 10\nINCR counter:1\nEXEC\n\
         MULTI\nSET a\nEXEC\nSET str:1 hello\nINCR str:1\nLPUSH str:1 x\n\
         CLIENT SETNAME podtap-test\nCONFIG GET maxmemory\nSCAN 0 MATCH user:*\n",
    );
    assert_eq!(error_lines(&session), 4, "{session}");
    // RESP3: HELLO 3, maps and sets.
    let resp3 = redis_cli(
        &pair.client,
        &["-3"],
        "HSET h:1 a 1 b 2\nHGETALL h:1\nSADD s:1 x y z\nSMEMBERS s:1\nGET str:1\n",
    );
    assert_eq!(error_lines(&resp3), 0, "{resp3}");
    // Pub/sub: a RESP2 subscriber of three channels, a RESP3 one of one.
    let mut sub2 = Subscriber::start(&pair.client, &["SUBSCRIBE", "news:eu", "news:us", "sport"]);
    let mut sub3 = Subscriber::start(&pair.client, &["-3", "SUBSCRIBE", "sport"]);
    sub2.wait_for("subscribe", 3);
    sub3.wait_for("subscribe", 1);
    let published = redis_cli(
        &pair.client,
        &[],
        "PUBLISH news:eu m1\nPUBLISH news:eu m2\nPUBLISH news:eu m3\nPUBLISH sport s1\nPUBLISH sport s2\n",
    );
    assert_eq!(
        published.lines().collect::<Vec<_>>(),
        ["1", "1", "1", "2", "2"]
    );
    sub2.wait_for("message", 5);
    sub3.wait_for("message", 2);
    let delivered = 5 + 2;
    // Replies silenced by CLIENT REPLY.
    sh(pair
        .client
        .cmd("python3")
        .args(["-c", RAW_CLIENT, SERVER_IP]));
    drop(sub2);
    drop(sub3);
    std::thread::sleep(Duration::from_millis(300));
    dump.interrupt();
    let mut truth = delta(&commandstats(&pair.server, SERVER_IP), &before);
    // The first snapshot's own INFO went over the server's loopback, not the veth.
    assert_eq!(truth.remove("info"), Some((1, 0)));

    let (records, summary) = replay_summary(&pcap);
    let txs = redis_transactions(&records);
    let got = podtap_counts(&txs);
    assert_eq!(got, truth, "podtap's transactions vs INFO commandstats");
    // Pipelined or not, every command paired with its reply: nothing incomplete.
    let incomplete: Vec<_> = txs
        .iter()
        .filter(|t| t["podtap.complete"] != true)
        .collect();
    assert!(incomplete.is_empty(), "{incomplete:#?}");
    let errors: u64 = got.values().map(|c| c.1).sum();
    assert_eq!(errors, error_lines(&session) + error_lines(&resp3));
    assert_eq!(
        event(&summary, "redis.push_messages"),
        delivered,
        "{summary}"
    );
    for e in ["redis.malformed", "redis.too_deep", "redis.bulk_too_large"] {
        assert_eq!(event(&summary, e), 0, "{summary}");
    }
    // What each transaction says.
    let find = |op: &str, summary: &str| {
        txs.iter()
            .filter(|t| t["db.operation.name"] == op && t["db.query.summary"] == summary)
            .collect::<Vec<_>>()
    };
    let user = find("GET", "GET user");
    assert_eq!(user.len(), 1);
    assert_eq!(user[0]["db.namespace"], "3", "after SELECT 3");
    assert_eq!(user[0]["db.system.name"], "redis");
    assert_eq!(user[0]["server.port"], 6379);
    let bench_get = find("GET", "GET key");
    assert_eq!(
        bench_get.len(),
        2300,
        "redis-benchmark's GETs of key:__rand_int__"
    );
    assert!(bench_get.iter().all(|t| t["db.namespace"] == "0"));
    let wrongtype = find("LPUSH", "LPUSH str");
    assert_eq!(wrongtype.len(), 1);
    assert_eq!(wrongtype[0]["error.type"], "WRONGTYPE");
    assert_eq!(wrongtype[0]["db.response.status_code"], "WRONGTYPE");
    assert_eq!(find("EXEC", "EXEC")[1]["error.type"], "EXECABORT");
    let queued = txs
        .iter()
        .filter(|t| t["podtap.redis.queued"] == true)
        .count();
    assert_eq!(queued, 2, "SET and INCR answered QUEUED");
    assert_eq!(
        find("HGETALL", "HGETALL h")[0]["db.response.returned_rows"],
        2
    );
    assert_eq!(
        find("SMEMBERS", "SMEMBERS s")[0]["db.response.returned_rows"],
        3
    );
    assert_eq!(find("SCAN", "SCAN")[0]["db.response.returned_rows"], 1);
    assert_eq!(find("SUBSCRIBE", "SUBSCRIBE news").len(), 1);
    assert_eq!(
        find("SUBSCRIBE", "SUBSCRIBE").len(),
        1,
        "sport has no key prefix"
    );
    assert_eq!(find("CLIENT SETNAME", "CLIENT SETNAME").len(), 1);
    let silent = txs
        .iter()
        .filter(|t| t["podtap.redis.no_reply"] == true)
        .count();
    assert_eq!(
        silent, 5,
        "CLIENT REPLY SKIP and OFF, the SET skipped, two INCRs"
    );
    // No key or value in any record.
    for t in &txs {
        let line = t.to_string();
        for secret in ["alice", "hello", "news:eu", "rand_int", "podtap-test", "m1"] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
    }
    // Every command tshark's dissector finds, podtap reports, and no other.
    let tshark = tshark_commands(&pcap, 6379);
    assert_eq!(by_first_word(&txs), tshark, "podtap vs tshark");
    assert_tallied_table_is_the_records_table(&pcap, &summary);
}

/// Per command (`INFO commandstats` naming): transactions and errors.
type Counts = &'static [(&'static str, u64, u64)];

/// The Redis captures of the corpus, with the server port and what podtap reports.
const CORPUS: &[(&str, u16, Counts)] = &[
    // packetbeat's test_0011: SET, GET, an LLEN error, then successes only.
    (
        "packetbeat/redis_session.pcap",
        6380,
        &[
            ("get", 1, 0),
            ("lindex", 4, 0),
            ("llen", 2, 1),
            ("lpush", 3, 0),
            ("set", 1, 0),
        ],
    ),
    (
        "packetbeat/redis_one_transaction.pcap",
        6380,
        &[("lindex", 1, 0)],
    ),
    // deepflow's redis.result: ten requests (the last one's 490 kB reply is cut by the
    // end of the capture: reported closed and truncated).
    (
        "deepflow/redis/redis.pcap",
        6379,
        &[("exists", 3, 0), ("get", 7, 0)],
    ),
    // deepflow's redis-error.result: `get abcd` answered -NOAUTH.
    ("deepflow/redis/redis-error.pcap", 6379, &[("get", 1, 1)]),
    // deepflow's redis-debug.result: LRANGE of 300 elements.
    ("deepflow/redis/redis-debug.pcap", 6379, &[("lrange", 1, 0)]),
    (
        "tcpdump/resp_1_benchmark.pcap",
        6379,
        &[
            ("get", 1, 0),
            ("incr", 1, 0),
            ("lpop", 1, 0),
            ("lpush", 2, 0),
            ("lrange", 4, 0),
            ("mset", 1, 0),
            ("ping", 2, 0),
            ("sadd", 1, 0),
            ("set", 1, 0),
            ("spop", 1, 0),
        ],
    ),
    // Inline commands, typed as on a terminal.
    (
        "tcpdump/resp_2_inline.pcap",
        6379,
        &[
            ("del", 1, 0),
            ("get", 2, 0),
            ("incr", 1, 0),
            ("lpush", 5, 0),
            ("lrange", 1, 0),
            ("set", 2, 0),
        ],
    ),
    // Hostile clients: what redis-server took for commands and answered. (Lines like
    // `$0`, `:0392...` or `$-20` are inline commands to redis-server too, answered
    // "unknown command"; they are no client's commands. Three connections whose client
    // sends only `+` are recognised by the server's RESP error replies: those replies are
    // reported, errors without a request (operation ""), as the decoder reports any reply
    // it cannot pair; the `+` itself is no command and is passed over.)
    (
        "tcpdump/resp_3_malicious.pcap",
        6379,
        &[("", 3, 3), ("incr", 3, 0), ("ping", 9, 0)],
    ),
];

#[test]
fn corpus_redis_captures_replay_to_the_known_transactions() {
    let dir = pcaps_dir();
    // Every Redis capture of the corpus is listed (by name; the port scan that found them
    // takes minutes of tshark).
    let listed: Vec<PathBuf> = CORPUS.iter().map(|c| dir.join(c.0)).collect();
    for f in captures() {
        let name = f.file_name().unwrap().to_string_lossy().to_lowercase();
        if name.contains("redis") || name.starts_with("resp_") {
            assert!(listed.contains(&f), "{} is not in CORPUS", f.display());
        }
    }
    let results = for_each_file(&listed, |f| {
        let (records, summary) = replay_summary(f);
        let rel = f.strip_prefix(&dir).unwrap().display().to_string();
        let port = CORPUS.iter().find(|c| c.0 == rel).unwrap().1;
        (rel, port, records, summary, tshark_commands(f, port))
    });
    for (rel, port, records, summary, tshark) in &results {
        let want: BTreeMap<String, (u64, u64)> = CORPUS
            .iter()
            .find(|c| c.0 == rel)
            .unwrap()
            .2
            .iter()
            .map(|&(c, n, e)| (c.to_string(), (n, e)))
            .collect();
        let txs = redis_transactions(records);
        assert!(txs.iter().all(|t| t["server.port"] == *port), "{rel}");
        assert_eq!(podtap_counts(&txs), want, "{rel}");
        // tshark finds exactly these commands.
        let tshark_total: u64 = tshark.values().sum();
        assert_eq!(by_first_word(&txs), *tshark, "{rel}: podtap vs tshark");
        assert!(tshark_total > 0, "{rel}");
        for e in ["redis.too_deep", "redis.bulk_too_large"] {
            assert_eq!(event(summary, e), 0, "{rel}: {summary}");
        }
        assert_tallied_table_is_the_records_table(&dir.join(rel), summary);
    }
    let get = |rel: &str| {
        let r = results.iter().find(|r| r.0 == rel).unwrap();
        redis_transactions(&r.2)
            .into_iter()
            .cloned()
            .collect::<Vec<_>>()
    };
    // packetbeat: the order and outcome of the first three, the rest successful.
    let session = get("packetbeat/redis_session.pcap");
    let ops: Vec<_> = session
        .iter()
        .map(|t| t["db.operation.name"].as_str().unwrap())
        .collect();
    assert_eq!(ops[..3], ["SET", "GET", "LLEN"]);
    assert_eq!(session[2]["error.type"], "ERR");
    assert!(
        session
            .iter()
            .skip(3)
            .all(|t| t.get("error.type").is_none())
    );
    assert!(session.iter().all(|t| t["podtap.complete"] == true));
    let error = get("deepflow/redis/redis-error.pcap");
    assert_eq!(error[0]["db.response.status_code"], "NOAUTH");
    assert_eq!(
        get("deepflow/redis/redis-debug.pcap")[0]["db.response.returned_rows"],
        300
    );
    let big = get("deepflow/redis/redis.pcap");
    let cut: Vec<_> = big
        .iter()
        .filter(|t| t["podtap.complete"] != true)
        .collect();
    assert_eq!(cut.len(), 1);
    assert_eq!(cut[0]["podtap.incomplete_reason"], "closed,truncated");
    assert_eq!(cut[0]["podtap.response.bytes"], 9 + 490_493);
}
