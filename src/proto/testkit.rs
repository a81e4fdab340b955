//! The decoders' shared test kit: reads captures of the shared corpus and hands out UDP
//! datagrams or the in-order bytes of a TCP connection, and feeds any decoder a
//! conversation whole, one byte at a time, split at every boundary, with gaps, and from
//! the middle.

use std::net::IpAddr;

use crate::packet::{self, Decoded, Defragmenter, L4, LinkType, TcpHeader, tcp_flags};
use crate::proto::Direction;
use crate::time::Timestamp;

/// The shared capture corpus, beside the repository (`PODTAP_PCAPS` overrides it, for
/// checkouts that live elsewhere); tests skip when it is absent.
pub(crate) fn pcaps() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("PODTAP_PCAPS")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/pcaps").into());
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipping: capture corpus {} not found", dir.display());
        None
    }
}

pub(crate) struct Seg {
    pub ts: Timestamp,
    pub src: (IpAddr, u16),
    pub dst: (IpAddr, u16),
    pub tcp: Option<TcpHeader>,
    pub payload: Vec<u8>,
}

/// Every TCP and UDP packet of `rel` (relative to the corpus); `None` when absent.
pub(crate) fn read(rel: &str) -> Option<Vec<Seg>> {
    let file = std::fs::File::open(pcaps()?.join(rel)).ok()?;
    let mut r = pcap_file::pcap::PcapReader::new(file).expect("pcap header");
    let link = LinkType::from_pcap(u32::from(r.header().datalink)).expect("link type");
    let mut defrag = Defragmenter::default();
    let mut out = Vec::new();
    while let Some(p) = r.next_packet() {
        let p = p.expect("pcap record");
        let ts = Timestamp::from_secs_nanos(p.timestamp.as_secs(), p.timestamp.subsec_nanos());
        let Ok(Decoded::Packet(pkt)) = packet::decode(&p.data, link, ts, p.orig_len, &mut defrag)
        else {
            continue;
        };
        let (sp, dp) = pkt.ports();
        let tcp = match pkt.l4 {
            L4::Tcp(t) => Some(t),
            L4::Udp { .. } => None,
            _ => continue,
        };
        out.push(Seg {
            ts,
            src: (pkt.src, sp),
            dst: (pkt.dst, dp),
            tcp,
            payload: pkt.payload.to_vec(),
        });
    }
    Some(out)
}

/// UDP datagrams to or from `port`, with their direction (towards `port` = ToServer).
pub(crate) fn udp(segs: &[Seg], port: u16) -> Vec<(Direction, Vec<u8>, Timestamp)> {
    segs.iter()
        .filter(|s| s.tcp.is_none())
        .filter_map(|s| {
            let dir = if s.dst.1 == port {
                Direction::ToServer
            } else if s.src.1 == port {
                Direction::ToClient
            } else {
                return None;
            };
            Some((dir, s.payload.clone(), s.ts))
        })
        .collect()
}

/// xorshift64*: deterministic pseudo-random bytes for the robustness tests.
pub(crate) struct Rng(pub u64);
impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

pub(crate) enum Feed {
    Data(Direction, Vec<u8>, Timestamp),
    Gap(Direction, u32),
}

/// The in-order bytes of the first TCP connection to `port`: retransmitted bytes are
/// trimmed, holes become gaps (enough for clean captures; not a reassembler).
pub(crate) fn tcp(segs: &[Seg], port: u16) -> Vec<Feed> {
    let mut next: [Option<u32>; 2] = [None, None];
    let mut client = None;
    let mut out = Vec::new();
    for s in segs {
        let Some(t) = s.tcp else { continue };
        let dir = if s.dst.1 == port {
            Direction::ToServer
        } else if s.src.1 == port {
            Direction::ToClient
        } else {
            continue;
        };
        let c = if dir == Direction::ToServer {
            s.src
        } else {
            s.dst
        };
        if *client.get_or_insert(c) != c {
            continue;
        }
        let d = dir.index();
        if t.has(tcp_flags::SYN) {
            next[d] = Some(t.seq.wrapping_add(1));
            continue;
        }
        if s.payload.is_empty() {
            continue;
        }
        let mut data = &s.payload[..];
        let mut seq = t.seq;
        let expected = *next[d].get_or_insert(seq);
        let delta = seq.wrapping_sub(expected) as i32;
        if delta < 0 {
            let dup = delta.unsigned_abs() as usize;
            if dup >= data.len() {
                continue;
            }
            data = &data[dup..];
            seq = expected;
        } else if delta > 0 {
            out.push(Feed::Gap(dir, delta as u32));
        }
        next[d] = Some(seq.wrapping_add(data.len() as u32));
        out.push(Feed::Data(dir, data.to_vec(), s.ts));
    }
    out
}
