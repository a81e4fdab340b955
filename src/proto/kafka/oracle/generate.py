"""Kafka messages of every version, encoded by kafka-python's protocol classes (generated
from Apache Kafka's own JSON message schemas): the test oracle of podtap's Kafka parser
(`cases.jsonl`, read by `tests.rs`). Run from this folder with kafka-python 3 installed:

    python3 generate.py > cases.jsonl

Every field gets a recognisable value: topics "orders" (or TOPIC_ID), partition 5, error
codes 3 (UNKNOWN_TOPIC_OR_PARTITION), consumer groups "billing", record sets one batch
of 3 records, tagged fields set where the schema has them (to be skipped), byte fields
(SASL tokens) "hunter2". Each line: the API key and version, the request and response
(framed, with headers; hex), and what they carry, as the schema says.
"""
import importlib, inspect, json, pkgutil, struct, sys, uuid

import kafka.protocol as P
from kafka.protocol.api_message import ApiMessage

TOPIC_ID = uuid.UUID("11223344-5566-7788-99aa-bbccddeeff00")


def batch(n):
    """A record batch (magic 2) header claiming n records, and a body never read."""
    body = b"\x5a" * 20
    head = struct.pack(">iBIhiqqqhii", 0, 2, 0, 0, n - 1, 0, 0, -1, -1, -1, n)
    return struct.pack(">qi", 0, len(head) + len(body)) + head + body


def classes():
    found = {}
    for m in pkgutil.walk_packages(P.__path__, "kafka.protocol."):
        try:
            mod = importlib.import_module(m.name)
        except Exception:
            continue
        for c in vars(mod).values():
            if (inspect.isclass(c) and issubclass(c, ApiMessage) and c is not ApiMessage
                    and getattr(c, "type", None) in ("request", "response")):
                try:
                    found.setdefault((c.API_KEY, c.type), c)
                except Exception:
                    pass
    return found


def value(cls, field, version, seen):
    j = field._json
    name, ty, ent = j["name"], j["type"], j.get("entityType")
    if ty.startswith("[]"):
        inner = ty[2:]
        sub = getattr(cls, inner, None)
        if sub is not None and "fields" in j:
            return [build(sub, sub._struct._fields, version, seen)]
        if inner == "int32" or inner == "int64":
            return [1, 2]
        if inner == "string":
            if ent == "groupId":
                seen["group"] = True
            return ["billing" if ent == "groupId" else "x"]
        return []
    if ty == "string":
        if ent == "topicName":
            seen["topic"] = True
            return "orders"
        if ent == "groupId" or (name == "Key" and cls.__name__.startswith("FindCoordinator")):
            seen["group"] = True
            return "billing"
        return "s"
    if ty == "uuid":
        if name == "TopicId":
            seen["topic_id"] = True
            return TOPIC_ID
        return uuid.UUID(int=0)
    if ty == "records":
        seen["records"] = 3
        return batch(3)
    if ty == "bytes":
        return b"hunter2"
    if ty == "bool":
        return False
    if ty == "float64":
        return 0.0
    if ty == "int16" and name == "ErrorCode":
        seen["error"] = True
        return 3
    if ty == "int16" and name == "Acks":
        return 1
    if ty == "int32" and name in ("PartitionIndex", "Index", "Partition"):
        seen["partition"] = True
        return 5
    if ty.startswith("int") or ty.startswith("uint"):
        return 0
    sub = getattr(cls, ty, None)
    if sub is not None:
        return build(sub, sub._struct._fields, version, seen)
    return None


def present(field, version):
    lo, hi = field._versions
    return lo <= version <= hi


def build(cls, fields, version, seen):
    kw = {}
    for f in fields:
        if present(f, version):
            kw[f.name] = value(cls, f, version, seen)
        elif f._tagged_versions and f._tagged_versions[0] <= version <= f._tagged_versions[1]:
            kw[f.name] = value(cls, f, version, {})
    return cls(version=version, **kw)


def main():
    found = classes()
    for (key, ty), req_cls in sorted(found.items()):
        if ty != "request" or (key, "response") not in found:
            continue
        resp_cls = found[(key, "response")]
        for v in range(req_cls.min_version, req_cls.max_version + 1):
            if not resp_cls.min_version <= v <= resp_cls.max_version:
                continue
            try:
                rs, ps = {}, {}
                req = build(req_cls, req_cls._struct._fields, v, rs)
                req.with_header(correlation_id=1000 + v, client_id="oracle")
                resp = build(resp_cls, resp_cls._struct._fields, v, ps)
                resp.with_header(correlation_id=1000 + v)
                line = {
                    "api": key,
                    "name": req_cls.__name__[: -len("Request")],
                    "version": v,
                    "flexible": bool(req_cls.flexible_version_q(v)),
                    "request": bytes(req.encode(header=True, framed=True)).hex(),
                    "response": bytes(resp.encode(header=True, framed=True)).hex(),
                    "request_has": rs,
                    "response_has": ps,
                }
            except Exception as e:  # noqa: BLE001 - a message the generator cannot fill
                print(f"skip {key} v{v}: {e!r}", file=sys.stderr)
                continue
            print(json.dumps(line, sort_keys=True))


main()
