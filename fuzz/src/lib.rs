//! Shared pieces of the fuzz targets: turning fuzz input into TCP segments of one
//! connection, so that the flow table, reassembly (any order, overlap, duplication),
//! detection and every L7 parser see what an attacker could send.

use etherparse::PacketBuilder;

/// Server ports the first input byte chooses from: each decoder's own, and one no decoder
/// claims (detection by content alone).
pub const PORTS: [u16; 12] = [
    80, 443, 53, 6379, 11211, 5432, 3306, 9092, 27017, 8080, 50051, 4000,
];

/// Frames of one TCP connection (and, for port 53, UDP datagrams) built from `data`:
/// byte 0 picks the server port; then records of `[flags][seq offset: 2][len][payload]`,
/// where flags bit 0 is the direction, bit 1 a SYN, bit 2 a FIN, bit 3 a RST, bit 4 UDP.
pub fn frames(data: &[u8]) -> Vec<Vec<u8>> {
    let Some((&p, mut rest)) = data.split_first() else {
        return Vec::new();
    };
    let port = PORTS[p as usize % PORTS.len()];
    let mut out = Vec::new();
    let (c_isn, s_isn) = (1000u32, 50_000u32);
    while rest.len() >= 4 {
        let (flags, off, len) = (rest[0], u16::from_be_bytes([rest[1], rest[2]]), rest[3]);
        let take = (len as usize).min(rest.len() - 4);
        let payload = &rest[4..4 + take];
        rest = &rest[4 + take..];
        let to_server = flags & 1 == 0;
        let (src, dst, sp, dp) = if to_server {
            ([10, 1, 0, 2], [10, 1, 0, 1], 40_000, port)
        } else {
            ([10, 1, 0, 1], [10, 1, 0, 2], port, 40_000)
        };
        let mut v = Vec::with_capacity(64 + payload.len());
        let b = PacketBuilder::ethernet2([2; 6], [4; 6]).ipv4(src, dst, 64);
        if flags & 16 != 0 {
            let _ = b.udp(sp, dp).write(&mut v, payload);
        } else {
            let (isn, peer) = if to_server {
                (c_isn, s_isn)
            } else {
                (s_isn, c_isn)
            };
            let mut t = b
                .tcp(sp, dp, isn.wrapping_add(off as u32), 64_000)
                .ack(peer);
            if flags & 2 != 0 {
                t = t.syn();
            }
            if flags & 4 != 0 {
                t = t.fin();
            }
            if flags & 8 != 0 {
                t = t.rst();
            }
            let _ = t.write(&mut v, payload);
        }
        out.push(v);
    }
    out
}
