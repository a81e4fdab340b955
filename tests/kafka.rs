//! Kafka end to end: a real Kafka-compatible broker (tansu, memory storage) in a network
//! namespace and a real client (kafka-python) in another: topics created, messages
//! produced in batches to two topics (acks=1, and acks=0 which gets no response),
//! consumed in a consumer group, offsets committed, and an error on purpose (Metadata of
//! a topic that does not exist, auto-create off); captured by tcpdump and run through
//! `podtap replay`. podtap's counts of requests per API, of messages sent and consumed, and
//! of errors must equal what the client counted itself (its connection's requests, the
//! records it sent and received, the error codes of the responses it decoded), and every
//! Kafka message tshark finds in the capture podtap reports.
//!
//! And the shared corpus: every Kafka capture replays, every request and response tshark's
//! dissector finds podtap reports, and deepflow's asserted results are matched.

mod common;

use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The client workload. Prints, as JSON, what the client itself counted: the requests its
/// connections sent per API, the responses per API that carried a non-zero error code
/// (anywhere in them), the records produced and consumed.
const WORKLOAD: &str = r#"
import collections, json, sys, time, uuid
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.protocol.consumer import FetchRequest
from kafka.record import MemoryRecords
from kafka.net.connection import KafkaConnection

requests = collections.Counter()
errors = collections.Counter()

def has_error(obj, depth=0):
    # Responses are slotted structures described by their class's _struct.
    if depth > 8:
        return False
    if isinstance(obj, (list, tuple)):
        return any(has_error(o, depth + 1) for o in obj)
    struct = getattr(type(obj), "_struct", None)
    if struct is None:
        return False
    for name in struct.fields:
        v = getattr(obj, name, None)
        if name == "error_code" and v:
            return True
        if isinstance(v, (list, tuple)) or getattr(type(v), "_struct", None) is not None:
            if has_error(v, depth + 1):
                return True
    return False

send_request = KafkaConnection._send_request
def counting(self, request, *a, **kw):
    api = type(request).__name__.replace("Request", "")
    requests[api] += 1
    future = send_request(self, request, *a, **kw)
    if future is not None:
        future.add_callback(lambda r: errors.update([api]) if has_error(r) else None)
    return future
KafkaConnection._send_request = counting

bs = sys.argv[1] + ":9092"
admin = KafkaAdminClient(bootstrap_servers=bs)
admin.create_topics([NewTopic("orders", 2, 1), NewTopic("payments", 1, 1)])

# Batches: everything sent before a flush goes in one Produce request (one broker).
sent = 0
p = KafkaProducer(bootstrap_servers=bs, linger_ms=60000, batch_size=1 << 20, acks=1)
for b in range(6):
    for i in range(9):
        p.send("orders", b"order-%d-%d" % (b, i), partition=i % 2)
        p.send("payments", b"payment-%d-%d" % (b, i))
        sent += 2
    p.flush()
p.close()
# acks=0: Apache Kafka sends no response. (tansu does send one, which kafka-python does
# not expect: it drops the connection, and a second request on it may never be written.
# So one batch only.)
p0 = KafkaProducer(bootstrap_servers=bs, linger_ms=60000, batch_size=1 << 20, acks=0)
for i in range(4):
    p0.send("payments", b"fire-and-forget-%d" % i)
    sent += 1
p0.flush()
time.sleep(0.3)
p0.close()

c = KafkaConsumer("orders", "payments", bootstrap_servers=bs, group_id="billing",
                  auto_offset_reset="earliest", enable_auto_commit=False,
                  allow_auto_create_topics=False, fetch_max_wait_ms=100)
consumed = 0
deadline = time.time() + 30
while consumed < sent and time.time() < deadline:
    for tp, recs in c.poll(200).items():
        consumed += len(recs)
c.commit()
c.close()

# Fetch v13+ names topics by id (kafka-python's consumer stops at v12): one such Fetch,
# built with kafka-python's own protocol classes, for orders partition 0 by the id the
# broker's Metadata response gave.
tid = admin.describe_topics(["orders"])[0]["topic_id"]
Part = FetchRequest.FetchTopic.FetchPartition
fetch13 = FetchRequest(
    version=13, replica_id=-1, max_wait_ms=100, min_bytes=1, max_bytes=1 << 20,
    isolation_level=0, session_id=0, session_epoch=-1,
    topics=[FetchRequest.FetchTopic(topic_id=uuid.UUID(str(tid)), partitions=[
        Part(partition=0, current_leader_epoch=-1, fetch_offset=0, last_fetched_epoch=-1,
             log_start_offset=-1, partition_max_bytes=1 << 20)])],
    forgotten_topics_data=[], rack_id="")
async def send(req):
    return await admin._manager.send(req)
r = admin._manager.run(send, fetch13)
records = MemoryRecords(bytes(r.responses[0].partitions[0].records))
while (batch := records.next_batch()) is not None:
    consumed += sum(1 for _ in batch)

# The error on purpose: a topic that does not exist (nothing creates it).
described = admin.describe_topics(["no-such-topic"])
assert described[0]["error_code"] == 3, described
admin.close()
time.sleep(0.5)
print(json.dumps({"requests": requests, "errors": errors, "sent": sent, "consumed": consumed}))
"#;

/// tansu in `ns` on `ip:9092`, memory storage; returns once it accepts connections.
fn tansu(ns: &Netns, ip: &str) -> Proc {
    let url = format!("tcp://{ip}:9092");
    let child = ns
        .cmd("tansu")
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://tansu/"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("tansu is installed (make deps-test: cargo install tansu)");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = ns
            .cmd("python3")
            .args([
                "-c",
                &format!("import socket; socket.create_connection(('{ip}', 9092), 1)"),
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "tansu did not come up");
        std::thread::sleep(Duration::from_millis(50));
    }
    Proc(Some(child))
}

fn int(t: &Value, k: &str) -> i64 {
    t[k].as_i64().unwrap_or(0)
}

/// Kafka PDUs tshark's dissector finds: (requests, responses), by API name for requests.
fn tshark_kafka(file: &Path, ports: &[u16]) -> (BTreeMap<String, u64>, u64) {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(file);
    for p in ports {
        cmd.args(["-d", &format!("tcp.port=={p},kafka")]);
    }
    let out = cmd
        .args(["-Y", "kafka", "-T", "fields", "-E", "occurrence=a"])
        .args([
            "-e",
            "kafka.request_key",
            "-e",
            "kafka.response_key",
            "-e",
            "_ws.col.Info",
        ])
        .output()
        .expect("tshark is installed");
    let mut requests = BTreeMap::new();
    let mut responses = 0;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let cols: Vec<&str> = line.split('\t').collect();
        let info = cols.get(2).copied().unwrap_or("");
        // One frame may hold several PDUs; the Info column names each.
        for pdu in info
            .split(" , ")
            .flat_map(|s| s.split("Kafka "))
            .filter(|s| !s.is_empty())
        {
            if pdu.contains("Response") {
                responses += 1;
            } else if pdu.contains("Request") {
                let api = pdu.split_whitespace().next().unwrap_or("?").to_string();
                *requests.entry(api).or_default() += 1;
            }
        }
    }
    (requests, responses)
}

#[test]
fn counts_match_what_a_real_client_counted_against_a_real_broker() {
    require_root();
    let pair = Pair::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let _broker = tansu(&pair.server, SERVER_IP);
    let pcap = dir.path().join("kafka.pcap");
    let mut cap = tcpdump(&pair.server, &pair.server_if, &pcap);
    let script = dir.path().join("workload.py");
    std::fs::write(&script, WORKLOAD).expect("write workload");
    let out = sh(pair.client.cmd("python3").arg(&script).arg(SERVER_IP));
    std::thread::sleep(Duration::from_millis(300));
    cap.interrupt();
    let client: Value =
        serde_json::from_str(out.lines().last().unwrap_or("")).expect("workload JSON");

    let all = replay(&[&pcap], &[]);
    let txs: Vec<&Value> = records(&all, "transaction")
        .into_iter()
        .filter(|t| t["podtap.protocol"] == "kafka")
        .collect();
    let ops = |op: &str| -> Vec<&Value> {
        txs.iter()
            .copied()
            .filter(|t| t["podtap.operation"] == op)
            .collect()
    };
    // Every request the client sent, by API, and nothing else.
    let mut by_api: BTreeMap<String, u64> = BTreeMap::new();
    for t in &txs {
        *by_api
            .entry(t["podtap.operation"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let want: BTreeMap<String, u64> = client["requests"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(
        by_api, want,
        "podtap's transactions per API vs the client's requests"
    );
    // All paired (acks=0 Produce alone, complete), none malformed.
    let incomplete: Vec<_> = txs
        .iter()
        .filter(|t| t["podtap.complete"] != true)
        .collect();
    assert!(incomplete.is_empty(), "incomplete: {incomplete:#?}");
    let produce = ops("Produce");
    assert_eq!(produce.len(), 6 + 1);
    assert_eq!(
        produce
            .iter()
            .filter(|t| int(t, "podtap.kafka.acks") == 0)
            .count(),
        1
    );
    assert!(
        produce
            .iter()
            .all(|t| t["messaging.operation.name"] == "send")
    );

    // Messages: sent (Produce request batches) and consumed (Fetch response batches).
    let sum = |v: &[&Value]| {
        v.iter()
            .map(|t| int(t, "messaging.batch.message_count"))
            .sum::<i64>()
    };
    assert_eq!(
        sum(&produce),
        client["sent"].as_i64().unwrap(),
        "messages sent"
    );
    let fetch = ops("Fetch");
    assert_eq!(
        sum(&fetch),
        client["consumed"].as_i64().unwrap(),
        "messages consumed"
    );
    assert!(
        fetch
            .iter()
            .all(|t| t["messaging.operation.name"] == "receive")
    );
    // Every Fetch names its topic(s): by name (v12), or by a topic id learned from the
    // Metadata responses on the wire (v13+).
    for t in &fetch {
        assert!(t.get("podtap.kafka.topic_id_unresolved").is_none(), "{t:#}");
    }
    let by_id: Vec<_> = fetch
        .iter()
        .filter(|t| int(t, "podtap.kafka.api_version") >= 13)
        .collect();
    assert_eq!(by_id.len(), 1);
    assert_eq!(by_id[0]["messaging.destination.name"], "orders");
    assert_eq!(int(by_id[0], "messaging.batch.message_count"), 30);
    let topics: Vec<&str> = produce
        .iter()
        .chain(&fetch)
        .filter_map(|t| t["messaging.destination.name"].as_str())
        .collect();
    assert!(topics.contains(&"payments"), "{topics:?}");

    // Errors: each response the client decoded with an error code, podtap reports failed.
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    for t in &txs {
        if t.get("error.type").is_some() {
            *errors
                .entry(t["podtap.operation"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    let want: BTreeMap<String, u64> = client["errors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
        .collect();
    assert_eq!(
        errors, want,
        "podtap's failed transactions per API vs the client's"
    );
    assert!(
        txs.iter()
            .any(|t| t["error.type"] == "UNKNOWN_TOPIC_OR_PARTITION"
                && t["podtap.operation"] == "Metadata")
    );
    // The consumer group of the group APIs.
    for op in ["JoinGroup", "SyncGroup", "OffsetCommit", "OffsetFetch"] {
        for t in ops(op) {
            assert_eq!(t["messaging.consumer.group.name"], "billing", "{op}");
        }
    }
    let commits = ops("OffsetCommit");
    assert!(
        !commits.is_empty()
            && commits
                .iter()
                .all(|t| t["messaging.operation.type"] == "settle")
    );

    // tshark on the same capture: every request and response it finds, podtap reports.
    let (requests, responses) = tshark_kafka(&pcap, &[]);
    let tshark_requests: u64 = requests.values().sum();
    let podtap_requests = txs.len() as u64;
    let podtap_responses = txs
        .iter()
        .filter(|t| int(t, "podtap.response.bytes") > 0)
        .count() as u64;
    // tansu answers the acks=0 Produce (Apache Kafka does not): tshark shows that
    // response, podtap drops it (kafka.acks_zero_answered), its request reported already.
    let acks_zero = produce
        .iter()
        .filter(|t| int(t, "podtap.kafka.acks") == 0)
        .count() as u64;
    assert_eq!(
        (tshark_requests, responses),
        (podtap_requests, podtap_responses + acks_zero),
        "tshark's Kafka requests ({requests:?}) and responses vs podtap's"
    );
}

#[test]
fn every_kafka_capture_of_the_corpus_replays_with_every_message_tshark_finds() {
    let dir = pcaps_dir().join("deepflow/kafka");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("skipping: {} not found", dir.display());
        return;
    };
    let mut files: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    assert_eq!(files.len(), 10);
    for f in &files {
        let all = replay(&[f], &[]);
        let txs: Vec<&Value> = records(&all, "transaction")
            .into_iter()
            .filter(|t| t["podtap.protocol"] == "kafka")
            .collect();
        // The brokers of these captures listen on 9092, 36333 and 30120.
        let (requests, responses) = tshark_kafka(f, &[36333, 30120]);
        let tshark_requests: u64 = requests.values().sum();
        let podtap_requests = txs
            .iter()
            .filter(|t| int(t, "podtap.request.bytes") > 0)
            .count() as u64;
        let podtap_responses = txs
            .iter()
            .filter(|t| int(t, "podtap.response.bytes") > 0)
            .count() as u64;
        let name = f.file_name().unwrap().to_string_lossy();
        assert_eq!(
            (podtap_requests, podtap_responses),
            (tshark_requests, responses),
            "{name}: podtap's requests and responses vs tshark's ({requests:?})"
        );
        // deepflow's results for these captures (agent/resources/test/flow_generator/
        // kafka/*.result): one request and one response each, paired by correlation id,
        // with the API, version and status it asserts.
        let want: &[(&str, i64, i64)] = match &*name {
            "00-produce-v2.pcap" => &[("Produce", 2, 0)],
            "00-produce-v7-sw8.pcap" => &[("Produce", 7, 0)],
            "00-produce-v9.pcap" => &[("Produce", 9, 0)],
            "01-fetch-v12-ok.pcap" => &[("Fetch", 12, 0)],
            // deepflow: ServerError, status code 5120 (not a code Kafka defines).
            "01-fetch-v12-unknown.pcap" => &[("Fetch", 12, 5120)],
            // The broker's port is taken for the client's (no handshake in the capture):
            // the roles are swapped from the first request. deepflow: ServerError -1.
            "11-join-group-v7.pcap" => &[("JoinGroup", 7, -1)],
            "13-leave-group-v4.pcap" => &[("LeaveGroup", 4, 0)],
            "14-sync-group-v5.pcap" => &[("SyncGroup", 5, -1)],
            "18-api-versions-v3.pcap" => &[("ApiVersions", 3, 0)],
            "mixed-with-unsupported.pcap" => &[
                ("OffsetCommit", 8, 0),
                ("Heartbeat", 4, 0),
                ("Fetch", 13, 0),
            ],
            other => panic!("unexpected capture {other}"),
        };
        let got: Vec<(&str, i64, i64)> = txs
            .iter()
            .map(|t| {
                (
                    t["podtap.operation"].as_str().unwrap_or(""),
                    int(t, "podtap.kafka.api_version"),
                    int(t, "podtap.status"),
                )
            })
            .collect();
        assert_eq!(got, want, "{name}");
        assert!(
            txs.iter()
                .all(|t| t["podtap.complete"] == true || name.starts_with("00-produce-v")),
            "{name}: {txs:#?}"
        );
    }
}
