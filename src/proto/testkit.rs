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

/// One side's bytes, in the order the two sides sent them.
pub type Chunk<'a> = (Direction, &'a [u8]);

/// The chunk's packet time: a millisecond per chunk, so durations stay positive.
fn ts_of(i: usize) -> Timestamp {
    Timestamp::from_secs_nanos(1_700_000_000, 0).add_nanos(i as u64 * 1_000_000)
}

/// Each chunk in one call, then the close.
pub fn feed_whole<P: crate::proto::L7Parser>(
    p: &mut P,
    conv: &[Chunk],
) -> Vec<crate::proto::Transaction> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        p.on_data(*dir, bytes, ts_of(i), &mut out);
    }
    p.on_close(ts_of(conv.len()), false, &mut out);
    out
}

/// One byte per call.
pub fn feed_bytewise<P: crate::proto::L7Parser>(
    p: &mut P,
    conv: &[Chunk],
) -> Vec<crate::proto::Transaction> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        for b in bytes.chunks(1) {
            p.on_data(*dir, b, ts_of(i), &mut out);
        }
    }
    p.on_close(ts_of(conv.len()), false, &mut out);
    out
}

/// Chunk `at` split in two at `cut`.
fn feed_split<P: crate::proto::L7Parser>(
    p: &mut P,
    conv: &[Chunk],
    at: usize,
    cut: usize,
) -> Vec<crate::proto::Transaction> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        if i == at {
            p.on_data(*dir, &bytes[..cut], ts_of(i), &mut out);
            p.on_data(*dir, &bytes[cut..], ts_of(i), &mut out);
        } else {
            p.on_data(*dir, bytes, ts_of(i), &mut out);
        }
    }
    p.on_close(ts_of(conv.len()), false, &mut out);
    out
}

/// Chunk `at` lost: the decoder hears of a gap of its length instead.
pub fn feed_with_gap<P: crate::proto::L7Parser>(
    p: &mut P,
    conv: &[Chunk],
    at: usize,
) -> Vec<crate::proto::Transaction> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in conv.iter().enumerate() {
        if i == at {
            p.on_gap(*dir, bytes.len() as u32);
        } else {
            p.on_data(*dir, bytes, ts_of(i), &mut out);
        }
    }
    p.on_close(ts_of(conv.len()), false, &mut out);
    out
}

/// Picked up mid-stream: the first `skip` chunks were never seen.
pub fn feed_midstream<P: crate::proto::L7Parser>(
    p: &mut P,
    conv: &[Chunk],
    skip: usize,
) -> Vec<crate::proto::Transaction> {
    let mut out = Vec::new();
    for (i, (dir, bytes)) in conv.iter().enumerate().skip(skip) {
        p.on_data(*dir, bytes, ts_of(i), &mut out);
    }
    p.on_close(ts_of(conv.len()), false, &mut out);
    out
}

/// What the checks compare of a transaction: protocol, operation, resource, status,
/// completeness and every attribute (times differ by how the bytes were cut).
pub fn shape(t: &crate::proto::Transaction) -> String {
    format!(
        "{} {} {} {:?} {:?} {:?} {:?}",
        t.protocol.as_str(),
        t.operation,
        t.resource,
        t.status,
        t.error,
        t.completeness.reasons().collect::<Vec<_>>(),
        t.attrs
    )
}

/// The conversation fed whole, one byte at a time and split in two at every byte of
/// every chunk (a fresh decoder each time): the transactions must be the same every way.
/// Then with each chunk lost in turn (a gap in that direction) and picked up after each
/// chunk (mid-stream): those must not panic, and must never report more transactions
/// than the whole conversation holds requests plus one (a reply without its request).
/// Returns the transactions of the whole feed for the caller's own assertions.
pub fn check_all<P: crate::proto::L7Parser>(
    make: impl Fn() -> P,
    conv: &[Chunk],
) -> Vec<crate::proto::Transaction> {
    let whole = feed_whole(&mut make(), conv);
    let want: Vec<String> = whole.iter().map(shape).collect();
    let got: Vec<String> = feed_bytewise(&mut make(), conv).iter().map(shape).collect();
    assert_eq!(got, want, "one byte at a time");
    for (at, (_, bytes)) in conv.iter().enumerate() {
        for cut in 1..bytes.len() {
            let got: Vec<String> = feed_split(&mut make(), conv, at, cut)
                .iter()
                .map(shape)
                .collect();
            assert_eq!(got, want, "chunk {at} split at {cut}");
        }
    }
    for at in 0..conv.len() {
        let got = feed_with_gap(&mut make(), conv, at);
        assert!(
            got.len() <= whole.len() + 1,
            "gap at chunk {at}: {} transactions from {}",
            got.len(),
            whole.len()
        );
        let got = feed_midstream(&mut make(), conv, at);
        assert!(got.len() <= whole.len() + 1, "mid-stream from chunk {at}");
    }
    whole
}
