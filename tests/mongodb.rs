//! MongoDB end to end, three ways, each marked by where its traffic comes from:
//!
//! 1. **A real MongoDB-wire server and a real client.** No registry reachable here ships
//!    `mongod` (Debian dropped it; the npm and PyPI wrappers download it at run time, which
//!    cannot work here), nor FerretDB. PyPI does ship **SecantusDB**, a MongoDB-compatible
//!    document database (its own wire-protocol server over WiredTiger, held to `mongod`'s
//!    behaviour by its authors): it runs in one network namespace, **pymongo** (the official
//!    driver) in another, tcpdump captures, `podtap replay` must report each command
//!    exactly as often as pymongo's own command monitoring started it (by name), the
//!    failures with the server's `codeName`, the rows the replies carried, the write
//!    errors, and the server's own `serverStatus` opcounters (insert, query, getmore,
//!    update, delete). SecantusDB speaks OP_MSG (and OP_QUERY for the handshake) but not
//!    OP_COMPRESSED.
//! 2. **Hand-built server, real client, for compression.** A small Python server written
//!    here (not a MongoDB) answers with hand-built replies, compressed as the request came:
//!    pymongo with `compressors=snappy`, `zlib`, `zstd` negotiates each with it, and a
//!    raw socket sends what no current driver does (legacy OP_QUERY find, OP_GET_MORE,
//!    OP_INSERT, OP_MSG with the checksum flag, SASL messages with secret payloads). Counts
//!    against the client's monitoring and the hand-built server's own tally.
//! 3. **The shared corpus** (real third-party captures from packetbeat and deepflow): every
//!    request and reply tshark's `mongo` dissector finds, podtap reports, and the counts
//!    packetbeat's and deepflow's own tests assert hold. The same check runs on the one
//!    hand-built capture committed in `src/proto/mongodb/golden/` (made by 2.).

mod common;

use common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

type Value = serde_json::Value;

/// SecantusDB on `ip:27017`, storage in `dir`; runs until its standard input closes.
const SECANTUS: &str = r#"
import sys
from secantus import SecantusDBServer
with SecantusDBServer(host=sys.argv[1], port=27017, storage_path=sys.argv[2]) as s:
    print("ready", flush=True)
    sys.stdin.read()
"#;

/// pymongo's command monitoring as counts by command name, failures by codeName, rows of
/// the cursor batches and write errors of the replies.
const LISTENER: &str = r#"
import json, sys
from collections import Counter
from pymongo import monitoring

class Listener(monitoring.CommandListener):
    def __init__(self):
        self.commands = Counter(); self.failures = Counter(); self.rows = 0; self.write_errors = 0
    def started(self, e):
        self.commands[e.command_name] += 1
    def succeeded(self, e):
        c = e.reply.get("cursor")
        if isinstance(c, dict):
            self.rows += len(c.get("firstBatch", c.get("nextBatch", [])))
        self.write_errors += len(e.reply.get("writeErrors", []))
    def failed(self, e):
        self.failures[e.failure.get("codeName", "?")] += 1
"#;

/// The real-server workload: inserts in document sequences, finds over several batches
/// (getMore), an update, a delete, aggregations, a bulk insert with duplicate keys (write
/// errors), an unknown command (an error), an unacknowledged write (moreToCome).
const REAL_CLIENT: &str = r#"
from pymongo import MongoClient, WriteConcern
from pymongo.errors import OperationFailure, BulkWriteError
l = Listener()
c = MongoClient(sys.argv[1], 27017, event_listeners=[l], directConnection=True,
                serverSelectionTimeoutMS=10000, retryWrites=False, retryReads=False)
before = c.admin.command("serverStatus")["opcounters"]
items = c.shop.items
items.insert_many([{"_id": i, "name": "S3cretValue-%d" % i, "n": i} for i in range(250)])
for _ in range(3):
    list(items.find({"name": {"$ne": "S3cretValue"}, "n": {"$gte": 10}}, batch_size=40))
items.find_one({"_id": 7})
items.update_many({"n": {"$lt": 5}}, {"$set": {"x": "S3cretValue"}})
items.delete_one({"_id": 249})
items.count_documents({})
list(items.aggregate([{"$match": {"n": {"$lt": 100}}}, {"$group": {"_id": None, "s": {"$sum": "$n"}}}]))
try:
    items.insert_many([{"_id": 1}, {"_id": 2}, {"_id": 9999}], ordered=False)
except BulkWriteError:
    pass
try:
    c.shop.command("noSuchCommand")
except OperationFailure:
    pass
items.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": 5000, "pw": "S3cretValue"})
after = c.admin.command("serverStatus")["opcounters"]
c.close()
print(json.dumps({"commands": l.commands, "failures": l.failures, "rows": l.rows,
                  "write_errors": l.write_errors,
                  "opcounters": {k: after[k] - before[k] for k in before}}))
"#;

/// The hand-built server (not a MongoDB): answers each command with a hand-built reply,
/// compressed with the compressor of the request; tallies what it saw; runs until its
/// standard input closes, then prints the tally.
const HAND_SERVER: &str = r#"
import datetime, json, select, socket, struct, sys, threading, zlib
import bson, snappy
from backports import zstd

ip, port = sys.argv[1], int(sys.argv[2])
tally = {"requests": 0, "compressed_in": 0, "compressed_out": 0, "legacy_writes": 0}
lock = threading.Lock()
next_id = [1000]

def comp(cid, data):
    return {1: snappy.compress, 2: zlib.compress, 3: zstd.compress}.get(cid, bytes)(data)

def decomp(cid, data):
    return {1: snappy.uncompress, 2: zlib.decompress, 3: zstd.decompress}.get(cid, bytes)(data)

def send(conn, to, op, body, cid):
    with lock:
        next_id[0] += 1
        rid = next_id[0]
        if cid is not None:
            tally["compressed_out"] += 1
    if cid is not None:
        body = struct.pack("<iiB", op, len(body), cid) + comp(cid, body)
        op = 2012
    conn.sendall(struct.pack("<iiii", 16 + len(body), rid, to, op) + body)

def answer(cmd, seqs):
    name = next(iter(cmd))
    if name in ("hello", "isMaster", "ismaster"):
        d = {"ismaster": True, "helloOk": True, "maxBsonObjectSize": 16777216,
             "maxMessageSizeBytes": 48000000, "maxWriteBatchSize": 100000,
             "localTime": datetime.datetime.now(datetime.timezone.utc),
             "logicalSessionTimeoutMinutes": 30, "connectionId": 1, "minWireVersion": 0,
             "maxWireVersion": 21, "readOnly": False, "ok": 1.0}
        if "compression" in cmd:
            d["compression"] = cmd["compression"][:1]
        return d
    if name == "find":
        n = cmd.get("batchSize", 3)
        return {"cursor": {"firstBatch": [{"_id": i, "v": "S3cretValue"} for i in range(n)],
                           "id": 77 if n < 3 else 0, "ns": cmd["$db"] + "." + cmd["find"]}, "ok": 1.0}
    if name == "getMore":
        return {"cursor": {"nextBatch": [{"_id": 9}, {"_id": 10}], "id": 0,
                           "ns": cmd["$db"] + "." + cmd["collection"]}, "ok": 1.0}
    if name == "insert":
        docs = seqs.get("documents", cmd.get("documents", []))
        if any(d.get("_id") == "dup" for d in docs):
            return {"n": len(docs) - 1, "ok": 1.0,
                    "writeErrors": [{"index": 0, "code": 11000, "errmsg": "dup S3cretValue"}]}
        return {"n": len(docs), "ok": 1.0}
    if name in ("saslStart", "saslContinue"):
        return {"conversationId": 1, "done": name == "saslContinue",
                "payload": b"S3cretValue", "ok": 1.0}
    if name in ("endSessions", "ping"):
        return {"ok": 1.0}
    return {"ok": 0.0, "errmsg": "no such command: S3cretValue", "code": 59, "codeName": "CommandNotFound"}

def serve(conn):
    buf = b""
    while True:
        while len(buf) < 16 or len(buf) < struct.unpack("<i", buf[:4])[0]:
            d = conn.recv(65536)
            if not d:
                return
            buf += d
        n, req, to, op = struct.unpack("<iiii", buf[:16])
        body, buf = buf[16:n], buf[n:]
        cid = None
        if op == 2012:
            op, size, cid = struct.unpack("<iiB", body[:9])
            body = decomp(cid, body[9:])
            with lock:
                tally["compressed_in"] += 1
        if op in (2001, 2002, 2006, 2007):
            with lock:
                tally["legacy_writes"] += 1
            continue
        with lock:
            tally["requests"] += 1
        if op == 2004:
            end = body.index(b"\0", 4)
            ns = body[4:end].decode()
            qlen = struct.unpack("<i", body[end + 9:end + 13])[0]
            q = bson.decode(body[end + 9:end + 9 + qlen])
            docs = [answer(q, {})] if ns.endswith(".$cmd") else [{"_id": i} for i in range(4)]
            payload = b"".join(bson.encode(d) for d in docs)
            send(conn, req, 1, struct.pack("<iqii", 8, 0, 0, len(docs)) + payload, cid)
            continue
        if op == 2005:
            docs = bson.encode({"_id": 1}) + bson.encode({"_id": 2})
            send(conn, req, 1, struct.pack("<iqii", 0, 0, 0, 2) + docs, cid)
            continue
        flags = struct.unpack("<I", body[:4])[0]
        end = len(body) - (4 if flags & 1 else 0)
        i, cmd, seqs = 4, None, {}
        while i < end:
            kind = body[i]
            i += 1
            size = struct.unpack("<i", body[i:i + 4])[0]
            if kind == 0:
                cmd = bson.decode(body[i:i + size])
            else:
                z = body.index(b"\0", i + 4)
                j, docs = z + 1, []
                while j < i + size:
                    k = struct.unpack("<i", body[j:j + 4])[0]
                    docs.append(bson.decode(body[j:j + k]))
                    j += k
                seqs[body[i + 4:z].decode()] = docs
            i += size
        if flags & 2:
            continue
        send(conn, req, 2013, struct.pack("<I", 0) + b"\0" + bson.encode(answer(cmd, seqs)), cid)

s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((ip, port))
s.listen(64)
print("ready", flush=True)
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 0.2)
    if sys.stdin in r and not sys.stdin.readline():
        break
    if s in r:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
print(json.dumps(tally), flush=True)
"#;

/// The hand-built server's clients: pymongo once per compressor, then a raw socket.
const HAND_CLIENT: &str = r#"
import socket, struct, zlib
import bson
from pymongo import MongoClient, WriteConcern
from pymongo.errors import OperationFailure, BulkWriteError
ip, port = sys.argv[1], 27017
l = Listener()
for comp in ("snappy", "zlib", "zstd"):
    c = MongoClient(ip, port, compressors=comp, directConnection=True, event_listeners=[l],
                    serverSelectionTimeoutMS=10000, retryWrites=False, retryReads=False)
    col = c.shop.items
    list(col.find({"name": "S3cretValue"}))
    list(col.find({}, batch_size=2))
    col.insert_many([{"_id": i, "pw": "S3cretValue"} for i in range(5)])
    try:
        col.insert_many([{"_id": "dup"}, {"_id": 1}])
    except BulkWriteError:
        pass
    try:
        c.shop.command("noSuchCommand")
    except OperationFailure:
        pass
    col.with_options(write_concern=WriteConcern(w=0)).insert_one({"_id": "w0", "pw": "S3cretValue"})
    c.close()

def msg(req, op, body):
    return struct.pack("<iiii", 16 + len(body), req, 0, op) + body

def op_msg(req, doc, flags=0):
    body = struct.pack("<I", flags) + b"\0" + bson.encode(doc)
    if flags & 1:
        body += struct.pack("<I", zlib.crc32(body))
    return msg(req, 2013, body)

def reply(sock):
    h = b""
    while len(h) < 16:
        h += sock.recv(16 - len(h))
    n = struct.unpack("<i", h[:4])[0] - 16
    b = b""
    while len(b) < n:
        b += sock.recv(n - len(b))

raw = Counter()
s = socket.create_connection((ip, port))
s.sendall(msg(1, 2004, struct.pack("<i", 0) + b"shop.items\0" + struct.pack("<ii", 0, 10) + bson.encode({"pw": "S3cretValue"})))
reply(s); raw["find"] += 1
s.sendall(msg(2, 2005, struct.pack("<i", 0) + b"shop.items\0" + struct.pack("<iq", 10, 77)))
reply(s); raw["getMore"] += 1
s.sendall(msg(3, 2002, struct.pack("<i", 0) + b"shop.items\0" + bson.encode({"pw": "S3cretValue"})))
raw["legacy_writes"] += 1
s.sendall(op_msg(4, {"ping": 1, "$db": "admin"}, flags=1))
reply(s); raw["ping"] += 1
s.sendall(op_msg(5, {"saslStart": 1, "mechanism": "SCRAM-SHA-256", "payload": b"n,,n=alice,r=S3cretValue", "$db": "admin"}))
reply(s); raw["saslStart"] += 1
s.sendall(op_msg(6, {"saslContinue": 1, "conversationId": 1, "payload": b"c=biws,p=S3cretValue", "$db": "admin"}))
reply(s); raw["saslContinue"] += 1
s.close()
print(json.dumps({"commands": l.commands, "failures": l.failures, "rows": l.rows,
                  "write_errors": l.write_errors, "raw": raw}))
"#;

const SECRET: &str = "S3cretValue";

/// A temporary directory, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("ptmg"));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server script in `ns`, given `args`; returns once it printed "ready". Closing its
/// standard input stops it.
fn start_python(
    ns: &Netns,
    script: &Path,
    args: &[&str],
) -> (Proc, BufReader<std::process::ChildStdout>) {
    let mut child = ns
        .cmd("python3")
        .arg(script)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (make deps-test)");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the server did not start");
    (Proc(Some(child)), out)
}

/// Stop a server started by `start_python` (its stdin closed) and read what it printed.
fn stop_python(mut p: Proc, mut out: BufReader<std::process::ChildStdout>) -> String {
    if let Some(c) = p.0.as_mut() {
        drop(c.stdin.take());
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        let _ = c.wait();
        p.0 = None;
        return s;
    }
    String::new()
}

/// Run a client script in `ns`; its last line of output, as JSON.
fn run_client(ns: &Netns, script: &Path, args: &[&str]) -> Value {
    let out = sh(ns
        .cmd("timeout")
        .arg("120")
        .arg("python3")
        .arg(script)
        .args(args));
    serde_json::from_str(out.lines().last().expect("client output")).expect("client JSON")
}

/// `podtap replay` of `file`: the JSON lines and the summary (stderr).
fn replay_raw(file: &Path) -> (Vec<Value>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_podtap"))
        .args(["replay", "--workers", "1", "--output", "jsonl"])
        .arg(file)
        .output()
        .expect("run podtap");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains(SECRET), "a value left podtap");
    (
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn mongo_txs(all: &[Value]) -> Vec<&Value> {
    all.iter()
        .filter(|r| r["podtap.record"] == "transaction" && r["podtap.protocol"] == "mongodb")
        .collect()
}

/// The count of event `name` in podtap's summary.
fn event(summary: &str, name: &str) -> u64 {
    summary
        .lines()
        .find_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some(name)).then(|| w.next()?.parse().ok())?
        })
        .unwrap_or(0)
}

fn op(t: &Value) -> &str {
    t["podtap.operation"].as_str().unwrap_or("")
}

fn is_handshake(t: &Value) -> bool {
    t["podtap.mongodb.handshake"] == true
}

/// Transactions by operation (handshakes apart: drivers do not publish them).
fn by_op(txs: &[&Value]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for t in txs.iter().filter(|t| !is_handshake(t)) {
        *m.entry(op(t).to_string()).or_insert(0) += 1;
    }
    m
}

fn counts(v: &Value) -> BTreeMap<String, u64> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                .collect()
        })
        .unwrap_or_default()
}

fn rows(txs: &[&Value]) -> u64 {
    txs.iter()
        .filter(|t| t["podtap.mongodb.opcode"].is_null())
        .filter_map(|t| t["db.response.returned_rows"].as_u64())
        .sum()
}

fn write_errors(txs: &[&Value]) -> u64 {
    txs.iter()
        .filter_map(|t| t["podtap.mongodb.write_errors"].as_u64())
        .sum()
}

/// Failures by `error.type`.
fn failures(txs: &[&Value]) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for t in txs
        .iter()
        .filter(|t| t["podtap.mongodb.write_errors"].is_null())
    {
        if let Some(e) = t["error.type"].as_str() {
            *m.entry(e.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Capture `workload` (run in the client namespace) against the server script on the
/// server namespace: (the client's JSON, the server's output, podtap's transactions and
/// summary).
fn capture(
    server_script: &str,
    server_args: &[&str],
    client_script: &str,
) -> (Value, String, Vec<Value>, String) {
    require_root();
    let dir = TempDir::new();
    let pair = Pair::new();
    let server_py = dir.0.join("server.py");
    let client_py = dir.0.join("client.py");
    std::fs::write(&server_py, server_script).unwrap();
    let mut client = std::fs::File::create(&client_py).unwrap();
    client.write_all(LISTENER.as_bytes()).unwrap();
    client.write_all(client_script.as_bytes()).unwrap();
    drop(client);
    let mut args = vec![SERVER_IP];
    args.extend_from_slice(server_args);
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let data = data.to_string_lossy().into_owned();
    let args: Vec<&str> = args
        .into_iter()
        .map(|a| if a == "DATA" { data.as_str() } else { a })
        .collect();
    let (server, out) = start_python(&pair.server, &server_py, &args);
    let pcap = dir.0.join("mongo.pcap");
    let mut dump = tcpdump(&pair.server, &pair.server_if, &pcap);
    let client_out = run_client(&pair.client, &client_py, &[SERVER_IP]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let server_out = stop_python(server, out);
    dump.interrupt();
    let (all, summary) = replay_raw(&pcap);
    (client_out, server_out, all, summary)
}

#[test]
fn real_server_secantusdb_with_pymongo_counts_match_client_and_server() {
    let (client, _, all, summary) = capture(SECANTUS, &["DATA"], REAL_CLIENT);
    let txs = mongo_txs(&all);
    // Every command pymongo started, by name, exactly.
    let mut want = counts(&client["commands"]);
    let mut got = by_op(&txs);
    // The monitor's awaitable hello still waits when the client closes; it is a handshake.
    want.retain(|_, v| *v > 0);
    got.retain(|_, v| *v > 0);
    assert_eq!(got, want, "commands by name");
    assert_eq!(
        failures(&txs),
        counts(&client["failures"]),
        "failures by codeName"
    );
    assert_eq!(
        rows(&txs),
        client["rows"].as_u64().unwrap(),
        "rows of the cursor batches"
    );
    assert_eq!(write_errors(&txs), client["write_errors"].as_u64().unwrap());
    // The server's own opcounters.
    let oc = counts(&client["opcounters"]);
    for (counter, ops) in [
        ("insert", "insert"),
        ("query", "find"),
        ("getmore", "getMore"),
        ("update", "update"),
        ("delete", "delete"),
    ] {
        assert_eq!(
            got.get(ops).copied().unwrap_or(0),
            oc[counter],
            "opcounters.{counter}"
        );
    }
    // The unacknowledged insert: reported at once, complete.
    assert_eq!(
        txs.iter()
            .filter(|t| t["podtap.mongodb.more_to_come"] == true && t["podtap.complete"] == true)
            .count(),
        1
    );
    // Every other transaction complete, but the monitor's last hello.
    for t in &txs {
        if t["podtap.complete"] != true {
            assert!(is_handshake(t), "incomplete: {t}");
            assert_eq!(t["podtap.incomplete_reason"], "no_response,closed");
        }
    }
    // Each connection starts with its handshake.
    let flows = records(&all, "flow")
        .iter()
        .filter(|f| f["podtap.protocol"] == "mongodb")
        .count();
    assert!(flows >= 2);
    assert!(txs.iter().filter(|t| is_handshake(t)).count() >= flows);
    assert_eq!(event(&summary, "mongodb.malformed"), 0);
    assert_eq!(event(&summary, "mongodb.malformed_body"), 0);
    assert_eq!(event(&summary, "mongodb.no_request"), 0);
}

#[test]
fn hand_built_server_compressed_and_legacy_counts_match() {
    let (client, server, all, summary) = capture(HAND_SERVER, &["27017"], HAND_CLIENT);
    let txs = mongo_txs(&all);
    let tally: Value = serde_json::from_str(server.lines().last().unwrap()).unwrap();
    let mut want = counts(&client["commands"]);
    for (k, v) in counts(&client["raw"]) {
        if k != "legacy_writes" {
            *want.entry(k).or_insert(0) += v;
        }
    }
    assert_eq!(by_op(&txs), want, "commands by name");
    // Every request the server read, and the unacknowledged inserts it did not answer.
    let handshakes = txs.iter().filter(|t| is_handshake(t)).count() as u64;
    assert_eq!(txs.len() as u64, tally["requests"].as_u64().unwrap());
    assert!(handshakes >= 3);
    assert_eq!(failures(&txs), counts(&client["failures"]));
    assert_eq!(write_errors(&txs), client["write_errors"].as_u64().unwrap());
    assert_eq!(rows(&txs), client["rows"].as_u64().unwrap());
    // Compressed both ways, each compressor negotiated by one client.
    let compressed =
        tally["compressed_in"].as_u64().unwrap() + tally["compressed_out"].as_u64().unwrap();
    assert!(compressed > 20);
    assert_eq!(event(&summary, "mongodb.compressed"), compressed);
    for z in ["snappy", "zlib", "zstd"] {
        assert!(
            txs.iter().any(|t| t["podtap.mongodb.compressor"] == z
                && op(t) == "find"
                && t["db.response.returned_rows"].as_u64().is_some()),
            "{z}"
        );
    }
    assert_eq!(
        event(&summary, "mongodb.legacy_writes"),
        tally["legacy_writes"].as_u64().unwrap()
    );
    // Legacy find and getMore, with their rows from OP_REPLY.
    let legacy: Vec<_> = txs
        .iter()
        .filter(|t| t["podtap.mongodb.opcode"].as_str().is_some() && !is_handshake(t))
        .map(|t| (op(t), t["db.response.returned_rows"].as_u64()))
        .collect();
    assert_eq!(legacy, [("find", Some(4)), ("getMore", Some(2))]);
    // The unacknowledged inserts: one per client.
    assert_eq!(
        txs.iter()
            .filter(|t| t["podtap.mongodb.more_to_come"] == true)
            .count(),
        3
    );
    assert!(txs.iter().all(|t| t["podtap.complete"] == true));
    assert_eq!(event(&summary, "mongodb.malformed_body"), 0);
}

/// The MongoDB captures of the corpus (real, third-party), and the hand-built one of the
/// golden folder (pymongo against the hand-built server: compressed both ways), with the
/// server port tshark must be told.
fn corpus() -> Vec<(PathBuf, u16)> {
    let list = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto/mongodb/golden/corpus.txt"),
    )
    .unwrap();
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let port = match l {
                "packetbeat/mongodb_op_msg_opcode.pcap" => 9991,
                "deepflow/mongo/mongo-msg.pcap" => 3717,
                _ => 27017,
            };
            (pcaps_dir().join(l), port)
        })
        .chain(std::iter::once((
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/proto/mongodb/golden/handbuilt_pymongo_snappy_zlib_zstd.pcap"),
            27017,
        )))
        .collect()
}

/// What tshark's `mongo` dissector finds: (requests, replies, legacy writes, messages of
/// other opcodes).
fn tshark_mongo(file: &Path, port: u16) -> (u64, u64, u64, u64) {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(["-d", &format!("tcp.port=={port},mongo")])
        .args(["-d", "tcp.port==27018,mongo"])
        .args(["-Y", "mongo", "-T", "fields", "-E", "occurrence=a"])
        .args(["-e", "mongo.opcode", "-e", "mongo.response_to"])
        .output()
        .expect("tshark is installed");
    let (mut req, mut rep, mut legacy, mut other) = (0, 0, 0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut cols = line.split('\t');
        let ops: Vec<&str> = cols.next().unwrap_or("").split(',').collect();
        let tos: Vec<&str> = cols.next().unwrap_or("").split(',').collect();
        for (i, o) in ops.iter().enumerate() {
            let to = tos.get(i).copied().unwrap_or("0x00000000");
            let to_zero = matches!(to, "0x00000000" | "0xffffffff" | "0" | "-1");
            match *o {
                "1" => rep += 1,
                // OP_COMPRESSED both ways: a request has no responseTo.
                "2013" | "2012" if to_zero => req += 1,
                "2013" | "2012" => rep += 1,
                "2004" | "2005" => req += 1,
                "2001" | "2002" | "2006" | "2007" => legacy += 1,
                "" => {}
                _ => other += 1,
            }
        }
    }
    (req, rep, legacy, other)
}

#[test]
fn corpus_every_request_and_reply_tshark_finds_podtap_reports() {
    if !pcaps_dir().is_dir() {
        eprintln!("skipping: no capture corpus");
        return;
    }
    let cases = corpus();
    assert_eq!(cases.len(), 14);
    let mut seen = BTreeMap::new();
    for (f, port) in &cases {
        let (req, rep, legacy, other) = tshark_mongo(f, *port);
        let (all, summary) = replay_raw(f);
        let txs = mongo_txs(&all);
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let with_request = txs
            .iter()
            .filter(|t| {
                !t["podtap.incomplete_reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no_request")
            })
            .count() as u64;
        // A moreToCome request is complete without a reply.
        let with_reply = txs
            .iter()
            .filter(|t| t["podtap.mongodb.more_to_come"].is_null())
            .filter(|t| {
                !t["podtap.incomplete_reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("no_response")
            })
            .count() as u64;
        assert_eq!(with_request, req, "{name}: requests");
        assert_eq!(with_reply, rep, "{name}: replies");
        assert_eq!(
            event(&summary, "mongodb.legacy_writes"),
            legacy,
            "{name}: legacy writes"
        );
        assert_eq!(
            event(&summary, "mongodb.unknown_opcode"),
            other,
            "{name}: other opcodes"
        );
        seen.insert(name, txs.into_iter().cloned().collect::<Vec<Value>>());
    }
    let ops = |name: &str, o: &str| seen[name].iter().filter(|t| op(t) == o).count();
    // packetbeat's test_0025_mongodb_basic.py.
    let s = "mongo_3.0_session.pcap";
    assert_eq!(
        (
            ops(s, "insert"),
            ops(s, "update"),
            ops(s, "findandmodify"),
            ops(s, "listCollections")
        ),
        (2, 1, 1, 5)
    );
    let one = &seen["mongo_one_row.pcap"];
    assert_eq!(one.len(), 1);
    assert_eq!(
        (
            op(&one[0]),
            one[0]["podtap.request.bytes"].as_u64(),
            one[0]["podtap.response.bytes"].as_u64()
        ),
        ("find", Some(50), Some(514))
    );
    // send_response_more_rows: 101 documents in the reply.
    let more = &seen["mongodb_more_rows.pcap"];
    assert_eq!(more.len(), 1);
    assert_eq!(more[0]["db.response.returned_rows"], 101);
    let find = &seen["mongodb_find.pcap"];
    assert_eq!(op(&find[0]), "find");
    assert!(find[0]["error.type"].is_null());
    assert_eq!(ops("mongodb_inserts.pcap", "insert"), 2);
    // test_write_errors: the insert with a duplicate key failed.
    assert!(
        seen["mongodb_insert_duplicate_key.pcap"]
            .iter()
            .any(|t| op(t) == "insert" && t["error.type"] == "11000")
    );
    // test_request_after_reply: the lone reply is its own transaction; the durations are
    // not negative.
    assert!(
        seen["mongodb_reply_request_reply.pcap"]
            .iter()
            .all(|t| t["podtap.duration_ns"].as_u64().is_some())
    );
    // test_opmsg: OP_MSG decoded, no unknown opcode (checked above: tshark finds none).
    assert_eq!(seen["mongodb_op_msg_opcode.pcap"].len(), 101);
    // deepflow's mongo.result: 15 request/response pairs, replSetGetStatus failing with 76.
    let df = &seen["mongo.pcap"];
    assert_eq!(df.len(), 15);
    assert!(
        df.iter()
            .any(|t| op(t) == "replSetGetStatus" && t["db.response.status_code"] == "76")
    );
    // deepflow's mongo-msg.result: one find of collection `query` in `sky-test`, one row.
    let m = &seen["mongo-msg.pcap"];
    assert_eq!(m.len(), 1);
    assert_eq!(
        (
            op(&m[0]),
            m[0]["db.collection.name"].as_str(),
            m[0]["db.namespace"].as_str(),
            m[0]["db.response.returned_rows"].as_u64()
        ),
        ("find", Some("query"), Some("sky-test"), Some(1))
    );
}
