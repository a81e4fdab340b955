#!/usr/bin/env python3
"""Where a replay worker's time goes, by the functions inlined into its loop.

    perf/wall_profile.sh BINARY CAPTURE [PATTERN,PATTERN,...]

Instruction counts (cachegrind, callgrind) miss what costs time without instructions:
cache misses, store-forwarding stalls, the allocator's memory traffic. This reads timer
samples (`perf record -e cpu-clock`, which works where a virtual machine has no hardware
counters) of the worker thread and charges each to the innermost frame of its inline
chain (`addr2line -i`) that matches one of the patterns, in the order the frames nest.
The release build inlines most of the packet path into two or three symbols, so
`perf report`'s per-symbol shares say little; the inline chains say which source
function a sample's instruction came from.

Reads `perf script -F comm,ip,sym,symoff` on standard input.
"""
import collections
import subprocess
import sys

DEFAULT = (
    "mi_free,mi_malloc,_mi_,drop_in_place<podtap::proto::transaction::Transaction>,"
    "count_transaction,::emit,repeat_command,plain_reply,RedisParser::transaction,"
    "push_back,pop_front,parser::,RedisParser,reassembly,tcp::,flow::,packet::,pcap_file,worker::"
)


def main():
    binary = sys.argv[1]
    patterns = (sys.argv[2] if len(sys.argv) > 2 else DEFAULT).split(",")
    samples = collections.Counter()
    anchor = None
    for line in sys.stdin:
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith("podtap-r"):
            continue
        ip = int(parts[1], 16)
        samples[ip] += 1
        if anchor is None and len(parts) >= 3 and "+0x" in parts[-1] and "podtap::" in line:
            sym, off = line.split(None, 2)[2].rsplit("+0x", 1)
            anchor = (ip, sym.strip(), int(off, 16))
    if anchor is None:
        sys.exit("no worker samples with a podtap symbol")
    # The load address: a sampled address minus its symbol's offset and address.
    nm = subprocess.run(["nm", "-C", binary], capture_output=True, text=True).stdout
    addr = next(
        (
            int(f[0], 16)
            for f in (l.split(None, 2) for l in nm.splitlines())
            if len(f) == 3 and f[2] == anchor[1]
        ),
        None,
    )
    if addr is None:
        sys.exit(f"{anchor[1]} not found in {binary}")
    base = anchor[0] - anchor[2] - addr
    inside = sorted(ip - base for ip in samples if 0 <= ip - base < 1 << 32)
    out = subprocess.run(
        ["addr2line", "-i", "-f", "-C", "-e", binary, "-a"] + [hex(a) for a in inside],
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    chains, cur, i = {}, None, 0
    while i < len(out):
        if out[i].startswith("0x"):
            cur = int(out[i], 16)
            chains[cur] = []
            i += 1
            continue
        chains[cur].append(out[i])
        i += 2
    total = sum(samples.values())
    shares = collections.Counter()
    for ip, n in samples.items():
        chain = chains.get(ip - base)
        if chain is None:
            shares["(outside the binary: kernel, libc)"] += n
            continue
        name = next((p for f in chain for p in patterns if p in f), None)
        shares[name or "other: " + chain[-1][:60]] += n
    print(f"{total} samples of the worker thread")
    for name, n in shares.most_common(30):
        print(f"{100 * n / total:6.2f}%  {name}")


if __name__ == "__main__":
    main()
