//! pcap and pcapng capture files, memory-mapped and read without copying.
//!
//! Classic pcap in both byte orders with micro- or nanosecond timestamps; pcapng with any
//! number of sections and interfaces (per-interface link type and `if_tsresol`), Enhanced,
//! Simple and obsolete Packet blocks. A truncated final record ends the file and is
//! counted, never a panic.
//!
//! With a fanout of N, each of N workers opens the same file and keeps only the frames whose
//! symmetric flow hash falls to it: the same split PACKET_FANOUT_HASH makes live.

use memmap2::Mmap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::file_pager::ReadProgress;
use super::{CaptureError, Frame, Source, SourceStats};
use crate::packet::{LinkType, fanout_hash};
use crate::time::Timestamp;

enum Format {
    Pcap {
        big_endian: bool,
        nanos: bool,
        link: Option<LinkType>,
        dlt: u32,
    },
    PcapNg {
        big_endian: bool,
        ifaces: Vec<Iface>,
    },
}

#[derive(Clone, Copy)]
struct Iface {
    link: Option<LinkType>,
    /// Timestamp units per second.
    units_per_sec: u64,
    snaplen: u32,
}

pub struct PcapFileSource {
    path: String,
    map: Arc<Mmap>,
    pos: usize,
    format: Format,
    fanout: (u32, u32),
    stats: SourceStats,
    done: bool,
    /// Where this reader tells a [`FilePager`](super::file_pager::FilePager) how far it
    /// has read.
    progress: Option<ReadProgress>,
}

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

impl PcapFileSource {
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        let p = path.display().to_string();
        // Captures are read by mapping them: only a regular file can be. Said before
        // opening, as opening a FIFO would wait for a writer.
        use std::os::unix::fs::FileTypeExt;
        let kind = std::fs::metadata(path).ok().map(|m| m.file_type());
        let not_a_file = match kind {
            Some(t) if t.is_dir() => Some("is a directory, not a capture file"),
            Some(t) if t.is_fifo() || t.is_char_device() || t.is_socket() => Some(
                "is not a regular file (a pipe or device): podtap replay maps capture files; \
                 write the capture to a file first (tcpdump -w FILE)",
            ),
            _ => None,
        };
        if let Some(why) = not_a_file {
            return Err(CaptureError::Format {
                path: p,
                message: why.into(),
            });
        }
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: p.clone(),
            source,
        })?;
        // SAFETY: the mapping is read-only; podtap never writes the file. A file truncated by
        // another process while mapped would fault, which is the documented mmap caveat.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| CaptureError::Open {
            path: p.clone(),
            source,
        })?;
        Self::from_map(p, Arc::new(map))
    }

    /// Another reader of the same mapping (for fanout across workers).
    pub fn share(&self) -> Result<Self, CaptureError> {
        Self::from_map(self.path.clone(), self.map.clone())
    }

    /// Keep only the frames whose flow hash modulo `count` is `index`.
    pub fn with_fanout(mut self, index: u32, count: u32) -> Self {
        self.fanout = (index, count.max(1));
        self
    }

    /// The file's mapping, for a [`FilePager`](super::file_pager::FilePager).
    pub fn mapping(&self) -> Arc<Mmap> {
        self.map.clone()
    }

    /// Publish this reader's position to a pager after each batch.
    pub fn with_progress(mut self, progress: ReadProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn from_map(path: String, map: Arc<Mmap>) -> Result<Self, CaptureError> {
        let b: &[u8] = &map;
        if b.len() < 4 {
            return Err(CaptureError::NotACapture { path, magic: 0 });
        }
        let magic_le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let magic_be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let (format, pos) = if magic_le == PCAPNG_SHB {
            // The section header block is parsed as the first block of the loop.
            (
                Format::PcapNg {
                    big_endian: false,
                    ifaces: Vec::new(),
                },
                0,
            )
        } else if let Some((big_endian, nanos)) = match (magic_le, magic_be) {
            (PCAP_MAGIC_US, _) => Some((false, false)),
            (PCAP_MAGIC_NS, _) => Some((false, true)),
            (_, PCAP_MAGIC_US) => Some((true, false)),
            (_, PCAP_MAGIC_NS) => Some((true, true)),
            _ => None,
        } {
            if b.len() < 24 {
                return Err(CaptureError::Format {
                    path,
                    message: "pcap header truncated".into(),
                });
            }
            let dlt = rd32(b, 20, big_endian) & 0x0fff_ffff;
            let link = LinkType::from_pcap(dlt);
            if link.is_none() {
                return Err(CaptureError::UnsupportedLink { path, dlt });
            }
            (
                Format::Pcap {
                    big_endian,
                    nanos,
                    link,
                    dlt,
                },
                24,
            )
        } else {
            return Err(CaptureError::NotACapture {
                path,
                magic: magic_be,
            });
        };
        Ok(PcapFileSource {
            path,
            map,
            pos,
            format,
            fanout: (0, 1),
            stats: SourceStats::default(),
            done: false,
            progress: None,
        })
    }

    /// Link type of a classic pcap file (pcapng files may mix several).
    pub fn link_type(&self) -> Option<u32> {
        match self.format {
            Format::Pcap { dlt, .. } => Some(dlt),
            Format::PcapNg { .. } => None,
        }
    }
}

#[inline]
fn rd32(b: &[u8], at: usize, big: bool) -> u32 {
    // One bounds check for the four bytes (four separate indexings cost four).
    let a: [u8; 4] = b[at..at + 4].try_into().expect("a four-byte slice");
    if big {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

#[inline]
fn rd16(b: &[u8], at: usize, big: bool) -> u16 {
    let a: [u8; 2] = b[at..at + 2].try_into().expect("a two-byte slice");
    if big {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

impl Source for PcapFileSource {
    fn next_batch<F: FnMut(&Frame<'_>)>(
        &mut self,
        max: usize,
        mut visit: F,
    ) -> Result<Option<usize>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let map = self.map.clone();
        let b: &[u8] = &map;
        let mut n = 0;
        while n < max {
            let frame = match &mut self.format {
                Format::Pcap {
                    big_endian,
                    nanos,
                    link,
                    ..
                } => {
                    if self.pos == b.len() {
                        self.done = true;
                        break;
                    }
                    if self.pos + 16 > b.len() {
                        self.truncated();
                        break;
                    }
                    let h = self.pos;
                    // The record header in one piece: one bounds check for its four fields
                    // (fixed offsets into a 16-byte array need none of their own).
                    let hdr: &[u8; 16] = b[h..h + 16].try_into().expect("checked above");
                    let [secs, frac, caplen, wire] =
                        [0, 4, 8, 12].map(|i| rd32(hdr, i, *big_endian));
                    let (secs, caplen) = (secs as u64, caplen as usize);
                    let start = h + 16;
                    if start + caplen > b.len() {
                        self.truncated();
                        break;
                    }
                    self.pos = start + caplen;
                    let ts = if *nanos {
                        Timestamp::from_secs_nanos(secs, frac)
                    } else {
                        Timestamp::from_secs_nanos(secs, frac.saturating_mul(1000))
                    };
                    let Some(link) = *link else { continue };
                    Frame {
                        data: &b[start..start + caplen],
                        ts,
                        wire_len: wire.max(caplen as u32),
                        link,
                        obs: 0,
                    }
                }
                Format::PcapNg { big_endian, ifaces } => {
                    match next_pcapng_frame(b, &mut self.pos, big_endian, ifaces) {
                        Ok(Some(Some(f))) => f,
                        Ok(Some(None)) => {
                            // A frame on an interface whose link type podtap cannot decode.
                            self.stats.malformed += 1;
                            continue;
                        }
                        Ok(None) => {
                            self.done = true;
                            break;
                        }
                        Err(Damage::Truncated) => {
                            self.truncated();
                            break;
                        }
                        Err(Damage::BadPacket(what)) => {
                            self.stats.malformed += 1;
                            self.done = true;
                            tracing::warn!(file = %self.path, offset = self.pos, "capture file has a broken packet block ({what}); stopping there");
                            break;
                        }
                        Err(Damage::Corrupt(what)) => {
                            self.stats.malformed += 1;
                            self.done = true;
                            return Err(CaptureError::Format {
                                path: self.path.clone(),
                                message: format!("{what} (block at offset {})", self.pos),
                            });
                        }
                    }
                }
            };
            if self.fanout.1 > 1
                && (fanout_hash(frame.data, frame.link) % self.fanout.1 as u64) as u32
                    != self.fanout.0
            {
                self.stats.not_mine += 1;
                continue;
            }
            self.stats.received += 1;
            n += 1;
            visit(&frame);
        }
        if let Some(p) = &self.progress {
            p.publish(self.pos);
        }
        if n == 0 && self.done {
            Ok(None)
        } else {
            Ok(Some(n))
        }
    }

    fn stats(&self) -> SourceStats {
        self.stats
    }
}

impl PcapFileSource {
    fn truncated(&mut self) {
        self.stats.malformed += 1;
        self.done = true;
        tracing::warn!(file = %self.path, offset = self.pos, "capture file ends in a truncated record; stopping there");
    }
}

/// The block at `h` if it is a well-formed Enhanced Packet Block of a little-endian section
/// on an interface podtap decodes, with its length: nearly every block of nearly every
/// capture. Its header is read as one array (one bounds check, no byte-order branches);
/// anything else, malformed blocks included, is left to the general path.
#[inline(always)]
fn enhanced_packet_le<'a>(
    b: &'a [u8],
    h: usize,
    big: bool,
    ifaces: &[Iface],
) -> Option<(Frame<'a>, usize)> {
    const HDR: usize = 28;
    let hdr: &[u8; HDR] = b.get(h..h + HDR)?.try_into().ok()?;
    let word = |i: usize| u32::from_le_bytes([hdr[i], hdr[i + 1], hdr[i + 2], hdr[i + 3]]);
    let (btype, blen, iface_id) = (word(0), word(4) as usize, word(8));
    let caplen = word(20) as usize;
    if big || btype != 6 || !blen.is_multiple_of(4) || HDR + caplen + 4 > blen {
        return None;
    }
    let block = b.get(h..h + blen)?;
    let iface = ifaces.get(iface_id as usize)?;
    let link = iface.link?;
    let ticks = (word(12) as u64) << 32 | word(16) as u64;
    Some((
        Frame {
            data: &block[HDR..HDR + caplen],
            ts: ticks_to_ts(ticks, iface.units_per_sec),
            wire_len: word(24).max(caplen as u32),
            link,
            obs: iface_id,
        },
        blen,
    ))
}

/// What is wrong with a pcapng block.
#[derive(Debug)]
enum Damage {
    /// The file ends inside it: a capture cut short (the writer was killed), read up to
    /// there.
    Truncated,
    /// A packet block that contradicts itself: counted, and the read stops there, as
    /// for a cut file (what came before is good).
    BadPacket(&'static str),
    /// A section header, interface description or block frame that contradicts itself:
    /// not a capture podtap can trust, an error.
    Corrupt(&'static str),
}

/// Read pcapng blocks until the next packet. `Ok(None)`: end of file; `Ok(Some(None))`: a
/// packet on an interface podtap cannot decode.
#[allow(clippy::type_complexity)]
fn next_pcapng_frame<'a>(
    b: &'a [u8],
    pos: &mut usize,
    big: &mut bool,
    ifaces: &mut Vec<Iface>,
) -> Result<Option<Option<Frame<'a>>>, Damage> {
    loop {
        let h = *pos;
        if let Some(f) = enhanced_packet_le(b, h, *big, ifaces) {
            *pos = h + f.1;
            return Ok(Some(Some(f.0)));
        }
        if h == b.len() {
            return Ok(None);
        }
        if h + 12 > b.len() {
            return Err(Damage::Truncated);
        }
        let raw_type = u32::from_le_bytes([b[h], b[h + 1], b[h + 2], b[h + 3]]);
        if raw_type == PCAPNG_SHB {
            // Byte order of this section from its byte-order magic.
            let bom_le = u32::from_le_bytes([b[h + 8], b[h + 9], b[h + 10], b[h + 11]]);
            if bom_le != PCAPNG_BOM && bom_le != PCAPNG_BOM.swap_bytes() {
                return Err(Damage::Corrupt("section header with no byte-order magic"));
            }
            *big = bom_le != PCAPNG_BOM;
            ifaces.clear();
        }
        let btype = rd32(b, h, *big);
        let blen = rd32(b, h + 4, *big) as usize;
        if blen < 12 || !blen.is_multiple_of(4) {
            return Err(Damage::Corrupt(
                "block length not a multiple of 4 of at least 12",
            ));
        }
        if h + blen > b.len() {
            return Err(Damage::Truncated);
        }
        let body = &b[h + 8..h + blen - 4];
        *pos = h + blen;
        match btype {
            1 => {
                // Interface Description: linktype(2) reserved(2) snaplen(4) options.
                if body.len() < 8 {
                    return Err(Damage::Corrupt(
                        "interface description block shorter than its fields",
                    ));
                }
                let dlt = rd16(body, 0, *big) as u32;
                let snaplen = rd32(body, 4, *big);
                let units_per_sec = if_tsresol(&body[8..], *big).unwrap_or(1_000_000);
                ifaces.push(Iface {
                    link: LinkType::from_pcap(dlt),
                    units_per_sec,
                    snaplen,
                });
            }
            6 | 2 => {
                // Enhanced Packet: iface(4) ts_hi(4) ts_lo(4) caplen(4) origlen(4) data.
                // Obsolete Packet: iface(2) drops(2), then the same.
                if body.len() < 20 {
                    return Err(Damage::BadPacket("packet block shorter than its fields"));
                }
                let iface_id = if btype == 6 {
                    rd32(body, 0, *big)
                } else {
                    rd16(body, 0, *big) as u32
                };
                let ticks = ((rd32(body, 4, *big) as u64) << 32) | rd32(body, 8, *big) as u64;
                let caplen = rd32(body, 12, *big) as usize;
                let orig = rd32(body, 16, *big);
                if 20 + caplen > body.len() {
                    return Err(Damage::BadPacket(
                        "packet block longer than the block holding it",
                    ));
                }
                let Some(iface) = ifaces.get(iface_id as usize) else {
                    return Err(Damage::BadPacket("packet of an interface never described"));
                };
                let Some(link) = iface.link else {
                    return Ok(Some(None));
                };
                let ts = ticks_to_ts(ticks, iface.units_per_sec);
                let data = &body[20..20 + caplen];
                return Ok(Some(Some(Frame {
                    data,
                    ts,
                    wire_len: orig.max(caplen as u32),
                    link,
                    obs: iface_id,
                })));
            }
            3 => {
                // Simple Packet: origlen(4) data; always interface 0, no timestamp.
                if body.len() < 4 {
                    return Err(Damage::BadPacket(
                        "simple packet block shorter than its fields",
                    ));
                }
                let Some(iface) = ifaces.first() else {
                    return Err(Damage::BadPacket(
                        "simple packet block before any interface description",
                    ));
                };
                let orig = rd32(body, 0, *big);
                let mut caplen = (orig as usize).min(body.len() - 4);
                if iface.snaplen > 0 {
                    caplen = caplen.min(iface.snaplen as usize);
                }
                let Some(link) = iface.link else {
                    return Ok(Some(None));
                };
                let data = &body[4..4 + caplen];
                return Ok(Some(Some(Frame {
                    data,
                    ts: Timestamp::ZERO,
                    wire_len: orig,
                    link,
                    obs: 0,
                })));
            }
            _ => {} // section header, statistics, name resolution, custom: nothing to do
        }
    }
}

/// The `if_tsresol` option (code 9) of an Interface Description block, as units per second.
fn if_tsresol(mut opts: &[u8], big: bool) -> Option<u64> {
    while opts.len() >= 4 {
        let code = rd16(opts, 0, big);
        let len = rd16(opts, 2, big) as usize;
        let padded = (len + 3) & !3;
        if code == 0 || opts.len() < 4 + len {
            return None;
        }
        if code == 9 && len >= 1 {
            let v = opts[4];
            let exp = (v & 0x7f) as u32;
            return if v & 0x80 != 0 {
                2u64.checked_pow(exp)
            } else {
                10u64.checked_pow(exp)
            };
        }
        opts = opts.get(4 + padded..)?;
    }
    None
}

fn ticks_to_ts(ticks: u64, units_per_sec: u64) -> Timestamp {
    // Microseconds (the default) and nanoseconds are nearly every capture: a multiply
    // instead of three divisions per packet, one of them 128-bit.
    match units_per_sec {
        0 | 1_000_000_000 => return Timestamp(ticks),
        1_000_000 => return Timestamp(ticks.saturating_mul(1000)),
        _ => {}
    }
    let secs = ticks / units_per_sec;
    let rem = ticks % units_per_sec;
    let nanos = (rem as u128 * 1_000_000_000 / units_per_sec as u128) as u32;
    Timestamp::from_secs_nanos(secs, nanos)
}

/// Write frames as a classic pcap (microsecond timestamps). Used by `podtap synth` and tests.
pub struct PcapWriter<W: std::io::Write> {
    out: W,
}

impl<W: std::io::Write> PcapWriter<W> {
    pub fn new(mut out: W, dlt: u32) -> std::io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&PCAP_MAGIC_US.to_le_bytes());
        h.extend_from_slice(&2u16.to_le_bytes());
        h.extend_from_slice(&4u16.to_le_bytes());
        h.extend_from_slice(&0i32.to_le_bytes());
        h.extend_from_slice(&0u32.to_le_bytes());
        h.extend_from_slice(&262_144u32.to_le_bytes());
        h.extend_from_slice(&dlt.to_le_bytes());
        out.write_all(&h)?;
        Ok(PcapWriter { out })
    }

    pub fn write(&mut self, ts: Timestamp, frame: &[u8]) -> std::io::Result<()> {
        let ns = ts.as_nanos();
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&((ns / 1_000_000_000) as u32).to_le_bytes());
        h[4..8].copy_from_slice(&(((ns % 1_000_000_000) / 1000) as u32).to_le_bytes());
        h[8..12].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversion_fast_paths_match_the_division() {
        let slow = |t: u64, u: u64| {
            let nanos = ((t % u) as u128 * 1_000_000_000 / u as u128) as u32;
            Timestamp::from_secs_nanos(t / u, nanos)
        };
        for t in [
            0,
            1,
            999_999,
            1_000_001,
            1_763_900_000_123_456,
            u64::MAX / 1000,
            u64::MAX,
        ] {
            for u in [1_000_000, 1_000_000_000, 1_000, 1 << 20] {
                assert_eq!(ticks_to_ts(t, u), slow(t, u), "{t} {u}");
            }
        }
    }

    fn read_all(src: &mut PcapFileSource) -> Vec<(Vec<u8>, Timestamp, u32)> {
        let mut v = Vec::new();
        while let Some(_n) = src
            .next_batch(7, |f| v.push((f.data.to_vec(), f.ts, f.obs)))
            .unwrap()
        {}
        v
    }

    #[test]
    fn classic_pcap_roundtrip_and_truncated_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pcap");
        let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
        for i in 0..20u64 {
            w.write(Timestamp::from_secs_nanos(100 + i, 5000), &[i as u8; 60])
                .unwrap();
        }
        let mut bytes = w.into_inner();
        std::fs::write(&path, &bytes).unwrap();
        let got = read_all(&mut PcapFileSource::open(&path).unwrap());
        assert_eq!(got.len(), 20);
        assert_eq!(got[3].1, Timestamp::from_secs_nanos(103, 5000));
        // Cut the last record in half: 19 frames and one malformed, no panic.
        bytes.truncate(bytes.len() - 30);
        std::fs::write(&path, &bytes).unwrap();
        let mut src = PcapFileSource::open(&path).unwrap();
        assert_eq!(read_all(&mut src).len(), 19);
        assert_eq!(src.stats().malformed, 1);
    }

    /// Append a pcapng block (type, length, body padded to four bytes, length again) in
    /// the byte order `word` writes.
    fn pcapng_block(b: &mut Vec<u8>, word: fn(u32) -> [u8; 4], t: u32, body: &[u8]) {
        let len = (12 + body.len().div_ceil(4) * 4) as u32;
        b.extend_from_slice(&word(t));
        b.extend_from_slice(&word(len));
        b.extend_from_slice(body);
        b.resize(b.len() + (4 - body.len() % 4) % 4, 0);
        b.extend_from_slice(&word(len));
    }

    /// A section header block (byte-order magic, version 1.0, section length unknown) in
    /// the byte order `word` writes.
    fn pcapng_section(word: fn(u32) -> [u8; 4]) -> Vec<u8> {
        let mut shb = word(PCAPNG_BOM).to_vec();
        // Major 1, minor 0: two 16-bit numbers.
        let little = word(1)[0] == 1;
        shb.extend_from_slice(if little { &[1, 0, 0, 0] } else { &[0, 1, 0, 0] });
        shb.extend_from_slice(&[0xff; 8]);
        let mut b = Vec::new();
        pcapng_block(&mut b, word, PCAPNG_SHB, &shb);
        b
    }

    #[test]
    fn pcapng_with_tsresol_and_two_interfaces() {
        let mut b = pcapng_section(u32::to_le_bytes);
        let block = |b: &mut Vec<u8>, t, body: &[u8]| pcapng_block(b, u32::to_le_bytes, t, body);
        // IDB 0: Ethernet, default microseconds. IDB 1: raw IP, if_tsresol = 10^-9.
        block(&mut b, 1, &[1, 0, 0, 0, 0, 0, 1, 0]);
        block(
            &mut b,
            1,
            &[101, 0, 0, 0, 0, 0, 1, 0, 9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0],
        );
        let epb = |iface: u32, ticks: u64, data: &[u8]| {
            let mut v = iface.to_le_bytes().to_vec();
            v.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
            v.extend_from_slice(&(ticks as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(&(data.len() as u32).to_le_bytes());
            v.extend_from_slice(data);
            v
        };
        block(&mut b, 6, &epb(0, 1_500_000, &[1, 2, 3]));
        block(&mut b, 6, &epb(1, 2_000_000_001, &[4, 5]));
        // IDB 2 of a link type podtap does not decode: its packet is counted and skipped.
        block(&mut b, 1, &[0xff, 0x7f, 0, 0, 0, 0, 1, 0]);
        block(&mut b, 6, &epb(2, 7, &[6]));
        block(&mut b, 6, &epb(0, 3_000_000, &[7, 8]));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.pcapng");
        std::fs::write(&path, &b).unwrap();
        let mut src = PcapFileSource::open(&path).unwrap();
        let got = read_all(&mut src);
        assert_eq!(got.len(), 3);
        assert_eq!(
            (got[0].0.as_slice(), got[0].1, got[0].2),
            (&[1u8, 2, 3][..], Timestamp(1_500_000_000), 0)
        );
        assert_eq!(
            (got[1].0.as_slice(), got[1].1, got[1].2),
            (&[4u8, 5][..], Timestamp(2_000_000_001), 1)
        );
        assert_eq!(got[2].0, [7, 8]);
        assert_eq!(src.stats().malformed, 1);

        // Broken packet blocks stop the read there, counted: a capture length past the
        // block's end, and an interface never described.
        for (iface, caplen) in [(0u32, 200u32), (9, 2)] {
            let mut bad = b.clone();
            let mut body = epb(iface, 1, &[9, 9]);
            body[12..16].copy_from_slice(&caplen.to_le_bytes());
            block(&mut bad, 6, &body);
            block(&mut bad, 6, &epb(0, 1, &[1]));
            std::fs::write(&path, &bad).unwrap();
            let mut src = PcapFileSource::open(&path).unwrap();
            assert_eq!(read_all(&mut src).len(), 3, "iface {iface} caplen {caplen}");
            assert_eq!(src.stats().malformed, 2, "iface {iface} caplen {caplen}");
        }
    }

    #[test]
    fn pcapng_big_endian_section() {
        // The same structure with every number big-endian.
        let mut b = pcapng_section(u32::to_be_bytes);
        let block = |b: &mut Vec<u8>, t, body: &[u8]| pcapng_block(b, u32::to_be_bytes, t, body);
        block(&mut b, 1, &[0, 1, 0, 0, 0, 1, 0, 0]);
        let mut epb = 0u32.to_be_bytes().to_vec();
        for v in [0u32, 2_500_000, 3, 3] {
            epb.extend_from_slice(&v.to_be_bytes());
        }
        epb.extend_from_slice(&[1, 2, 3]);
        block(&mut b, 6, &epb);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("be.pcapng");
        std::fs::write(&path, &b).unwrap();
        let got = read_all(&mut PcapFileSource::open(&path).unwrap());
        assert_eq!(got.len(), 1);
        assert_eq!(
            (got[0].0.as_slice(), got[0].1),
            (&[1u8, 2, 3][..], Timestamp(2_500_000_000))
        );
    }

    #[test]
    fn rejects_non_captures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, b"hello world, not a pcap").unwrap();
        let err = PcapFileSource::open(&path).err().unwrap().to_string();
        assert!(err.contains("not a pcap"), "{err}");
    }

    #[test]
    fn a_directory_or_a_pipe_is_named_for_what_it_is() {
        let dir = tempfile::tempdir().unwrap();
        let err = PcapFileSource::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Answered at once (opening a FIFO for reading would wait for a writer).
        let err = PcapFileSource::open(&fifo).err().unwrap().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }

    /// A damaged section or interface header is an error; a file that ends inside its
    /// last block is read up to there.
    #[test]
    fn corrupt_pcapng_headers_are_errors_and_a_cut_tail_is_not() {
        let le: fn(u32) -> [u8; 4] = u32::to_le_bytes;
        let shb = |bom: u32| {
            let mut body = Vec::new();
            body.extend_from_slice(&bom.to_le_bytes());
            body.extend_from_slice(&[1, 0, 0, 0]);
            body.extend_from_slice(&u64::MAX.to_le_bytes());
            body
        };
        let idb = [1u8, 0, 0, 0, 0xff, 0xff, 0, 0];
        let mut epb = vec![0u8; 20];
        epb[12] = 4; // caplen
        epb[16] = 4; // origlen
        epb.extend_from_slice(&[1, 2, 3, 4]);
        let read = |bytes: &[u8]| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("x.pcapng");
            std::fs::write(&path, bytes).unwrap();
            let mut src = PcapFileSource::open(&path).map_err(|e| e.to_string())?;
            let mut frames = 0;
            while src
                .next_batch(64, |_| frames += 1)
                .map_err(|e| e.to_string())?
                .is_some()
            {}
            Ok::<_, String>(frames)
        };
        let mut good = Vec::new();
        pcapng_block(&mut good, le, PCAPNG_SHB, &shb(PCAPNG_BOM));
        pcapng_block(&mut good, le, 1, &idb);
        pcapng_block(&mut good, le, 6, &epb);
        pcapng_block(&mut good, le, 6, &epb);
        assert_eq!(read(&good), Ok(2));
        // Cut inside the last block: the first packet, and a warning.
        assert_eq!(read(&good[..good.len() - 5]), Ok(1));
        // A section header without its byte-order magic.
        let mut bad = Vec::new();
        pcapng_block(&mut bad, le, PCAPNG_SHB, &shb(0x1234_5678));
        pcapng_block(&mut bad, le, 1, &idb);
        let err = read(&bad).unwrap_err();
        assert!(err.contains("byte-order magic"), "{err}");
        // An interface description too short for its fields.
        let mut bad = Vec::new();
        pcapng_block(&mut bad, le, PCAPNG_SHB, &shb(PCAPNG_BOM));
        pcapng_block(&mut bad, le, 1, &idb[..4]);
        pcapng_block(&mut bad, le, 6, &epb);
        let err = read(&bad).unwrap_err();
        assert!(err.contains("interface description"), "{err}");
        // A broken packet block ends the read there (the packets before it are good).
        let mut cut = good.clone();
        cut.truncate(cut.len() - (12 + epb.len()));
        let mut broken = epb.clone();
        broken[12] = 200;
        pcapng_block(&mut cut, le, 6, &broken);
        pcapng_block(&mut cut, le, 6, &epb);
        assert_eq!(read(&cut), Ok(1));
        // A block length that is not a multiple of 4.
        let mut bad = good.clone();
        let at = bad.len() - (12 + epb.len());
        bad[at + 4] = 13;
        let err = read(&bad).unwrap_err();
        assert!(err.contains("multiple of 4"), "{err}");
    }
}
