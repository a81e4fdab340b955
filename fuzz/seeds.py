#!/usr/bin/env python3
"""Seed corpora for the fuzz targets, made from the shared captures (read in place, never
copied whole into the project): frames for `packet`, connections re-encoded in the
`worker` target's record format, small capture files for `pcap`, filter expressions and
config files. Usage: seeds.py PCAPS_DIR OUT_DIR"""
import os, struct, sys

PORTS = [80, 443, 53, 6379, 11211, 5432, 3306, 9092, 27017, 8080, 50051, 4000]


def records(path):
    """(linktype, [frame bytes]) of a pcap file; pcapng and others are skipped."""
    with open(path, 'rb') as f:
        data = f.read()
    if len(data) < 24:
        return None, []
    magic = data[:4]
    if magic in (b'\xd4\xc3\xb2\xa1', b'\x4d\x3c\xb2\xa1'):
        e = '<'
    elif magic in (b'\xa1\xb2\xc3\xd4', b'\xa1\xb2\x3c\x4d'):
        e = '>'
    else:
        return None, []
    link = struct.unpack(e + 'I', data[20:24])[0] & 0xffff
    out, i = [], 24
    while i + 16 <= len(data):
        incl = struct.unpack(e + 'I', data[i + 8:i + 12])[0]
        out.append(data[i + 16:i + 16 + incl])
        i += 16 + incl
    return link, out


def tcp_of(frame):
    """(src port, dst port, seq, flags, payload) of an Ethernet/IPv4/TCP frame, or None."""
    if len(frame) < 54 or frame[12:14] != b'\x08\x00' or frame[23] != 6:
        return None
    ihl = (frame[14] & 15) * 4
    t = 14 + ihl
    total = struct.unpack('>H', frame[16:18])[0]
    sp, dp, seq = struct.unpack('>HHI', frame[t:t + 8])
    off = (frame[t + 12] >> 4) * 4
    return sp, dp, seq, frame[t + 13], frame[t + off:14 + total]


def worker_seed(frames):
    """The first connection of `frames` on a known port, in the worker target's format."""
    first = None
    for fr in frames:
        p = tcp_of(fr)
        if p and (p[0] in PORTS or p[1] in PORTS):
            first = p
            break
    if not first:
        return None
    port = first[1] if first[1] in PORTS else first[0]
    out = bytearray([PORTS.index(port)])
    isn = {}
    for fr in frames:
        p = tcp_of(fr)
        if not p or port not in (p[0], p[1]):
            continue
        sp, dp, seq, flags, payload = p
        to_client = sp == port
        key = to_client
        if flags & 2:
            isn[key] = seq
        base = isn.setdefault(key, seq - 1)
        rel = (seq - base - 1) & 0xffff
        f = (1 if to_client else 0) | (2 if flags & 2 else 0) | (4 if flags & 1 else 0) | (8 if flags & 4 else 0)
        for k in range(0, max(len(payload), 1), 255):
            chunk = payload[k:k + 255]
            out += bytes([f]) + struct.pack('>H', (rel + k) & 0xffff) + bytes([len(chunk)]) + chunk
        if len(out) > 16384:
            break
    return bytes(out)


def main():
    src, dst = sys.argv[1], sys.argv[2]
    for t in ('packet', 'worker', 'pcap', 'filter', 'config'):
        os.makedirs(os.path.join(dst, t), exist_ok=True)
    n = {'packet': 0, 'worker': 0, 'pcap': 0}
    for root, _, files in sorted(os.walk(src)):
        for name in sorted(files):
            path = os.path.join(root, name)
            if not name.endswith('.pcap') or os.path.getsize(path) > 2_000_000:
                continue
            link, frames = records(path)
            if link is None:
                continue
            if os.path.getsize(path) <= 16384 and n['pcap'] < 40:
                with open(path, 'rb') as f, open(os.path.join(dst, 'pcap', f"{n['pcap']}"), 'wb') as o:
                    o.write(f.read())
                n['pcap'] += 1
            if link == 1:
                for fr in frames[:3]:
                    if n['packet'] < 300:
                        with open(os.path.join(dst, 'packet', f"{n['packet']}"), 'wb') as o:
                            o.write(b'\x00' + fr)
                        n['packet'] += 1
                s = worker_seed(frames)
                if s and n['worker'] < 200:
                    with open(os.path.join(dst, 'worker', f"{n['worker']}"), 'wb') as o:
                        o.write(s)
                    n['worker'] += 1
    for i, e in enumerate(['tcp port 80', 'udp and not port 53', 'host 10.0.0.1 or net 10.1.0.0/16',
                           'vlan and tcp[13] & 2 != 0', 'ip6 and (src port 443 or dst portrange 1-1024)']):
        with open(os.path.join(dst, 'filter', str(i)), 'w') as o:
            o.write(e)
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, '..', 'config', 'podtap.toml')) as f:
        full = f.read()
    for i, c in enumerate([full, '[memory]\nmax_bytes = 1000000\n', '[capture]\nworkers = 2\n[flow]\nmax_flows = 10\n']):
        with open(os.path.join(dst, 'config', str(i)), 'w') as o:
            o.write(c)
    print(f"seeds: {n['packet']} frames, {n['worker']} connections, {n['pcap']} captures")


main()
