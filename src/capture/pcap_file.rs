//! pcap and pcapng capture files, memory-mapped and read without copying; or streams
//! (standard input, FIFOs) read through a bounded buffer the frames borrow from.
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
use std::io::Read;
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
    backing: Backing,
    /// Parse position: in the mapping, or in the stream's buffer.
    pos: usize,
    format: Format,
    fanout: (u32, u32),
    stats: SourceStats,
    done: bool,
    /// Where this reader tells a [`FilePager`](super::file_pager::FilePager) how far it
    /// has read.
    progress: Option<ReadProgress>,
}

/// Where the capture's bytes are.
enum Backing {
    /// A regular file, mapped whole.
    Map(Arc<Mmap>),
    /// Standard input, a FIFO, a device or a socket: read through a bounded buffer.
    Stream(Box<Stream>),
}

/// A capture read from a byte stream. Frames borrow `buf`, so it is refilled only between
/// batches: a batch stops at the first incomplete record, and the next one moves that
/// record's start to the front of the buffer and reads more after it.
struct Stream {
    reader: Box<dyn Read + Send>,
    /// `buf.len()` is the buffer's size (zeroed once, when it is allocated or grown);
    /// `buf[..filled]` is what has been read.
    buf: Vec<u8>,
    filled: usize,
    /// Offset in the stream of `buf[0]`, for the offsets messages give.
    base: u64,
    /// The largest the buffer may grow to hold one record.
    max: usize,
    /// The reader said end of file.
    eof: bool,
    /// The last batch stopped at an incomplete record: read before parsing again.
    need_more: bool,
}

/// A stream's read buffer: holds a classic pcap record of the largest snapshot length
/// (256 KiB) many times over, so pcap never grows it.
pub const STREAM_BUFFER: usize = 4 << 20;
/// The largest record (pcap record or pcapng block, headers included) a stream's buffer
/// grows to hold; a longer one is an error, so a damaged length costs at most this much
/// memory. Files are mapped and have no such bound.
pub const STREAM_MAX_RECORD: usize = 16 << 20;

/// The name `replay` takes for standard input.
pub const STDIN: &str = "-";

const PCAP_MAGIC_US: u32 = 0xa1b2_c3d4;
const PCAP_MAGIC_NS: u32 = 0xa1b2_3c4d;
const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_BOM: u32 = 0x1a2b_3c4d;

impl PcapFileSource {
    /// Open a capture: `-` is standard input; a FIFO, character device or socket is read
    /// as a stream (opening a FIFO waits for its writer, as `cat` does); a regular file is
    /// mapped.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        if path.as_os_str() == STDIN {
            return Self::from_reader("standard input", Box::new(std::io::stdin()));
        }
        let p = path.display().to_string();
        use std::os::unix::fs::FileTypeExt;
        let kind = std::fs::metadata(path).ok().map(|m| m.file_type());
        if kind.is_some_and(|t| t.is_dir()) {
            return Err(CaptureError::Format {
                path: p,
                message: "is a directory, not a capture file".into(),
            });
        }
        let streamed = kind.is_some_and(|t| t.is_fifo() || t.is_char_device() || t.is_socket());
        let file = File::open(path).map_err(|source| CaptureError::Open {
            path: p.clone(),
            source,
        })?;
        if streamed {
            return Self::from_reader(&p, Box::new(file));
        }
        // SAFETY: the mapping is read-only; podtap never writes the file. A file truncated by
        // another process while mapped would fault, which is the documented mmap caveat.
        let map = unsafe { Mmap::map(&file) }.map_err(|source| CaptureError::Open {
            path: p.clone(),
            source,
        })?;
        Self::from_map(p, Arc::new(map))
    }

    /// Read a capture from a byte stream (`name` is what messages call it), through a
    /// buffer of [`STREAM_BUFFER`] bytes that grows for a record up to
    /// [`STREAM_MAX_RECORD`].
    pub fn from_reader(name: &str, reader: Box<dyn Read + Send>) -> Result<Self, CaptureError> {
        Self::from_reader_sized(name, reader, STREAM_BUFFER, STREAM_MAX_RECORD)
    }

    fn from_reader_sized(
        name: &str,
        reader: Box<dyn Read + Send>,
        size: usize,
        max: usize,
    ) -> Result<Self, CaptureError> {
        // Room for the longest file header (24 bytes) and a record header after it.
        let size = size.max(64);
        let mut s = Stream {
            reader,
            buf: vec![0; size],
            filled: 0,
            base: 0,
            max: max.max(size),
            eof: false,
            need_more: false,
        };
        let io = |source| CaptureError::Open {
            path: name.into(),
            source,
        };
        // The file header: until 24 bytes or the end, however the reads split it.
        while s.filled < 24 && !s.eof {
            s.read_some().map_err(io)?;
        }
        let (format, pos) = detect(name, &s.buf[..s.filled])?;
        Ok(PcapFileSource {
            path: name.into(),
            backing: Backing::Stream(Box::new(s)),
            pos,
            format,
            fanout: (0, 1),
            stats: SourceStats::default(),
            done: false,
            progress: None,
        })
    }

    /// Whether this capture is read from a stream (one reader, no pager, no [`share`]).
    ///
    /// [`share`]: Self::share
    pub fn is_stream(&self) -> bool {
        matches!(self.backing, Backing::Stream(_))
    }

    /// Another reader of the same mapping (for fanout across workers). A stream has one
    /// reader.
    pub fn share(&self) -> Result<Self, CaptureError> {
        match &self.backing {
            Backing::Map(map) => Self::from_map(self.path.clone(), map.clone()),
            Backing::Stream(_) => Err(CaptureError::Format {
                path: self.path.clone(),
                message: "a stream is read by one reader".into(),
            }),
        }
    }

    /// Keep only the frames whose flow hash modulo `count` is `index`.
    pub fn with_fanout(mut self, index: u32, count: u32) -> Self {
        self.fanout = (index, count.max(1));
        self
    }

    /// The file's mapping, for a [`FilePager`](super::file_pager::FilePager); none for a
    /// stream.
    pub fn mapping(&self) -> Option<Arc<Mmap>> {
        match &self.backing {
            Backing::Map(map) => Some(map.clone()),
            Backing::Stream(_) => None,
        }
    }

    /// Publish this reader's position to a pager after each batch.
    pub fn with_progress(mut self, progress: ReadProgress) -> Self {
        self.progress = Some(progress);
        self
    }

    fn from_map(path: String, map: Arc<Mmap>) -> Result<Self, CaptureError> {
        let (format, pos) = detect(&path, &map)?;
        Ok(PcapFileSource {
            path,
            backing: Backing::Map(map),
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

/// The format of a capture from its first bytes (all of them, or at least 24), and where
/// its first record starts.
fn detect(path: &str, b: &[u8]) -> Result<(Format, usize), CaptureError> {
    let path = || path.to_string();
    if b.len() < 4 {
        return Err(CaptureError::NotACapture {
            path: path(),
            magic: 0,
        });
    }
    let magic_le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let magic_be = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    if magic_le == PCAPNG_SHB {
        // The section header block is parsed as the first block of the loop.
        return Ok((
            Format::PcapNg {
                big_endian: false,
                ifaces: Vec::new(),
            },
            0,
        ));
    }
    let Some((big_endian, nanos)) = (match (magic_le, magic_be) {
        (PCAP_MAGIC_US, _) => Some((false, false)),
        (PCAP_MAGIC_NS, _) => Some((false, true)),
        (_, PCAP_MAGIC_US) => Some((true, false)),
        (_, PCAP_MAGIC_NS) => Some((true, true)),
        _ => None,
    }) else {
        return Err(CaptureError::NotACapture {
            path: path(),
            magic: magic_be,
        });
    };
    if b.len() < 24 {
        return Err(CaptureError::Format {
            path: path(),
            message: "pcap header truncated".into(),
        });
    }
    let dlt = rd32(b, 20, big_endian) & 0x0fff_ffff;
    let link = LinkType::from_pcap(dlt);
    if link.is_none() {
        return Err(CaptureError::UnsupportedLink { path: path(), dlt });
    }
    Ok((
        Format::Pcap {
            big_endian,
            nanos,
            link,
            dlt,
        },
        24,
    ))
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
        let n = match &mut self.backing {
            Backing::Map(map) => {
                let map = map.clone();
                let (n, _) = self.parse(&map, true, 0, max, &mut visit)?;
                if let Some(p) = &self.progress {
                    p.publish(self.pos);
                }
                n
            }
            Backing::Stream(s) => {
                if s.need_more {
                    let hint = |b: &[u8]| record_len(&self.format, b);
                    if let Err(e) = s.refill(&mut self.pos, hint, &self.path) {
                        self.done = true;
                        return Err(e);
                    }
                }
                // The buffer is lent to the parse (frames borrow it) and given back after.
                let (buf, filled, eof, base) =
                    (std::mem::take(&mut s.buf), s.filled, s.eof, s.base);
                let r = self.parse(&buf[..filled], eof, base, max, &mut visit);
                let Backing::Stream(s) = &mut self.backing else {
                    unreachable!("the backing does not change")
                };
                s.buf = buf;
                let (n, incomplete) = r?;
                s.need_more = incomplete;
                n
            }
        };
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
    /// Visit up to `max` frames of `b` from `self.pos`. `eof`: nothing follows `b` (a file,
    /// or a stream at its end), so an incomplete record is a truncated capture; otherwise
    /// the batch stops before it and says so (`true`), to be read on once more has come.
    /// `base` is the offset of `b` in the capture.
    fn parse<F: FnMut(&Frame<'_>)>(
        &mut self,
        b: &[u8],
        eof: bool,
        base: u64,
        max: usize,
        visit: &mut F,
    ) -> Result<(usize, bool), CaptureError> {
        let mut n = 0;
        let mut incomplete = false;
        while n < max {
            let frame = match &mut self.format {
                Format::Pcap {
                    big_endian,
                    nanos,
                    link,
                    ..
                } => {
                    if self.pos == b.len() && eof {
                        self.done = true;
                        break;
                    }
                    if self.pos + 16 > b.len() {
                        incomplete = true;
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
                        incomplete = true;
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
                    // The usual block read here, without the call into the general path
                    // (which reads every other block, and packet blocks after them).
                    if let Some((f, n)) = enhanced_packet_le(b, self.pos, *big_endian, ifaces) {
                        self.pos += n;
                        f
                    } else {
                        match next_pcapng_frame(b, &mut self.pos, big_endian, ifaces) {
                            Ok(Some(Some(f))) => f,
                            Ok(Some(None)) => {
                                // A frame on an interface whose link type podtap cannot decode.
                                self.stats.malformed += 1;
                                continue;
                            }
                            Ok(None) if eof => {
                                self.done = true;
                                break;
                            }
                            Ok(None) | Err(Damage::Truncated) => {
                                incomplete = true;
                                break;
                            }
                            Err(Damage::BadPacket(what)) => {
                                self.stats.malformed += 1;
                                self.done = true;
                                tracing::warn!(file = %self.path, offset = base + self.pos as u64, "capture file has a broken packet block ({what}); stopping there");
                                break;
                            }
                            Err(Damage::Corrupt(what)) => {
                                self.stats.malformed += 1;
                                self.done = true;
                                return Err(CaptureError::Format {
                                    path: self.path.clone(),
                                    message: format!(
                                        "{what} (block at offset {})",
                                        base + self.pos as u64
                                    ),
                                });
                            }
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
        if incomplete && eof {
            // The capture ends inside a record: a writer cut short, read up to there.
            self.stats.malformed += 1;
            self.done = true;
            tracing::warn!(file = %self.path, offset = base + self.pos as u64, "capture file ends in a truncated record; stopping there");
            incomplete = false;
        }
        Ok((n, incomplete))
    }
}

/// The length of the record at the start of `b` (header included), once `b` holds enough
/// of it to say: what a stream's buffer must hold to parse it.
fn record_len(format: &Format, b: &[u8]) -> Option<usize> {
    match format {
        Format::Pcap { big_endian, .. } => {
            (b.len() >= 16).then(|| 16 + rd32(b, 8, *big_endian) as usize)
        }
        Format::PcapNg { big_endian, .. } => {
            if b.len() < 12 {
                return None;
            }
            // A section header block says its own byte order.
            let big = if rd32(b, 0, false) == PCAPNG_SHB {
                rd32(b, 8, false) != PCAPNG_BOM
            } else {
                *big_endian
            };
            Some(rd32(b, 4, big) as usize)
        }
    }
}

impl Stream {
    /// Before reading on from an incomplete record: move it to the front of the buffer,
    /// grow the buffer if the record fills it (within `max`), and read.
    fn refill(
        &mut self,
        pos: &mut usize,
        record_len: impl Fn(&[u8]) -> Option<usize>,
        path: &str,
    ) -> Result<(), CaptureError> {
        if *pos > 0 {
            self.buf.copy_within(*pos..self.filled, 0);
            self.filled -= *pos;
            self.base += *pos as u64;
            *pos = 0;
        }
        if self.filled == self.buf.len() {
            // One record fills the buffer: room for all of it (doubling, so a run of ever
            // longer records costs a few copies), or a clean error past the bound.
            let need = record_len(&self.buf[..self.filled]).unwrap_or(usize::MAX);
            if need > self.max {
                return Err(CaptureError::Format {
                    path: path.into(),
                    message: format!(
                        "record at offset {} is {need} bytes long; podtap reads records of \
                         up to {} bytes from a stream (write the capture to a file to read it)",
                        self.base, self.max
                    ),
                });
            }
            let size = need.max(self.buf.len() * 2).min(self.max);
            self.buf.resize(size, 0);
        }
        self.read_some().map_err(|e| CaptureError::Format {
            path: path.into(),
            message: format!("read failed: {e}"),
        })
    }

    /// One read into the free part of the buffer (what a pipe has ready, up to the
    /// room): the caller parses what came before asking for more, so a slow writer's
    /// records are decoded as they arrive.
    fn read_some(&mut self) -> std::io::Result<()> {
        while !self.eof && self.filled < self.buf.len() {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(0) => self.eof = true,
                Ok(k) => {
                    self.filled += k;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
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
    fn a_directory_is_named_for_what_it_is_and_a_fifo_is_streamed() {
        let dir = tempfile::tempdir().unwrap();
        let err = PcapFileSource::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("is a directory"), "{err}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let bytes = mixed_pcap();
        let file = dir.path().join("a.pcap");
        std::fs::write(&file, &bytes).unwrap();
        // Opening the FIFO waits for this writer; it writes in pieces, as tcpdump does.
        let writer = {
            let fifo = fifo.clone();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
                for piece in bytes.chunks(1000) {
                    std::io::Write::write_all(&mut f, piece).unwrap();
                }
            })
        };
        let mut src = PcapFileSource::open(&fifo).unwrap();
        assert!(src.is_stream());
        let streamed = (read_all(&mut src), src.stats());
        writer.join().unwrap();
        let mut mapped = PcapFileSource::open(&file).unwrap();
        assert!(!mapped.is_stream());
        assert_eq!(streamed, (read_all(&mut mapped), mapped.stats()));
        assert_eq!(streamed.0.len(), 50);
    }

    /// A reader that hands out 1 to 7 bytes a read, and now and then is interrupted: a
    /// slow pipe.
    struct Drip {
        data: Vec<u8>,
        at: usize,
        calls: usize,
    }

    impl Read for Drip {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            self.calls += 1;
            if self.calls.is_multiple_of(11) {
                return Err(std::io::ErrorKind::Interrupted.into());
            }
            let k = (self.calls % 7 + 1)
                .min(out.len())
                .min(self.data.len() - self.at);
            out[..k].copy_from_slice(&self.data[self.at..self.at + k]);
            self.at += k;
            Ok(k)
        }
    }

    type Frames = Vec<(Vec<u8>, Timestamp, u32)>;

    /// `bytes` read from a mapped file, and dripped through a stream whose buffer starts
    /// at `buffer` bytes: frames and counts, or the error.
    fn mapped_and_dripped(
        bytes: &[u8],
        buffer: usize,
        max: usize,
    ) -> [Result<(Frames, SourceStats), String>; 2] {
        let read = |src: Result<PcapFileSource, CaptureError>| {
            let mut src = src.map_err(|e| e.to_string())?;
            let mut v = Vec::new();
            while src
                .next_batch(7, |f| v.push((f.data.to_vec(), f.ts, f.obs)))
                .map_err(|e| e.to_string())?
                .is_some()
            {}
            Ok((v, src.stats()))
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x");
        std::fs::write(&path, bytes).unwrap();
        let drip = Drip {
            data: bytes.to_vec(),
            at: 0,
            calls: 0,
        };
        [
            read(PcapFileSource::open(&path)),
            read(PcapFileSource::from_reader_sized(
                "drip",
                Box::new(drip),
                buffer,
                max,
            )),
        ]
    }

    /// A classic pcap of 50 frames of 0 to 1,470 bytes.
    fn mixed_pcap() -> Vec<u8> {
        let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
        for i in 0..50u32 {
            let len = (i * 733 % 1471) as usize;
            w.write(
                Timestamp::from_secs_nanos(7 + i as u64, i * 1000),
                &vec![i as u8; len],
            )
            .unwrap();
        }
        w.into_inner()
    }

    /// A pcapng of two sections (little-, then big-endian), several interfaces (one of a
    /// link type podtap does not decode), Enhanced, Simple and obsolete Packet blocks of
    /// 0 to 1,500 bytes and blocks podtap skips.
    fn mixed_pcapng() -> Vec<u8> {
        let mut b = Vec::new();
        for word in [u32::to_le_bytes as fn(u32) -> [u8; 4], u32::to_be_bytes] {
            b.extend_from_slice(&pcapng_section(word));
            let half = |v: u16| {
                if word(1)[0] == 1 {
                    v.to_le_bytes()
                } else {
                    v.to_be_bytes()
                }
            };
            let idb = |dlt: u16, opts: &[u8]| {
                let mut v = half(dlt).to_vec();
                v.extend_from_slice(&[0, 0]);
                v.extend_from_slice(&word(0));
                v.extend_from_slice(opts);
                v
            };
            pcapng_block(&mut b, word, 1, &idb(1, &[]));
            let mut tsresol = half(9).to_vec();
            tsresol.extend_from_slice(&half(1));
            tsresol.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0]);
            pcapng_block(&mut b, word, 1, &idb(101, &tsresol));
            pcapng_block(&mut b, word, 1, &idb(0x7fff, &[]));
            for i in 0..40u32 {
                let data = vec![i as u8; (i * 389 % 1501) as usize];
                let mut body = Vec::new();
                match i % 5 {
                    3 => {
                        // Simple Packet (interface 0).
                        body.extend_from_slice(&word(data.len() as u32));
                        body.extend_from_slice(&data);
                        pcapng_block(&mut b, word, 3, &body);
                    }
                    4 => pcapng_block(&mut b, word, 5, &[1, 2, 3, 4, 5, 6, 7, 8]),
                    _ => {
                        for v in [i % 3, i, i * 1000, data.len() as u32, data.len() as u32] {
                            body.extend_from_slice(&word(v));
                        }
                        body.extend_from_slice(&data);
                        pcapng_block(&mut b, word, 6, &body);
                    }
                }
            }
        }
        b
    }

    /// Dripped a few bytes a read through a stream, a capture gives exactly the frames
    /// and counts its mapped file gives: with the usual buffer, and with a 64-byte one
    /// that records are moved to the front of and that grows for the longer ones.
    #[test]
    fn a_dripped_stream_gives_what_the_mapped_file_gives() {
        let pcap = mixed_pcap();
        let pcapng = mixed_pcapng();
        let mut cut = pcapng.clone();
        cut.truncate(cut.len() - 9);
        for (name, bytes) in [
            ("pcap", pcap.clone()),
            ("pcap cut", pcap[..pcap.len() - 100].to_vec()),
            ("pcap header only", pcap[..24].to_vec()),
            ("pcapng", pcapng.clone()),
            ("pcapng cut", cut),
        ] {
            for buffer in [64, 100, STREAM_BUFFER] {
                let [mapped, dripped] = mapped_and_dripped(&bytes, buffer, STREAM_MAX_RECORD);
                let mapped = mapped.unwrap();
                assert_eq!(Ok(&mapped), dripped.as_ref(), "{name}, buffer {buffer}");
            }
        }
        let [mapped, _] = mapped_and_dripped(&pcapng, 64, STREAM_MAX_RECORD);
        let (frames, stats) = mapped.unwrap();
        // A section's 40 blocks: 8 statistics blocks skipped, 8 packets of the undecoded
        // interface counted, 24 frames; two sections.
        assert_eq!((frames.len(), stats.malformed), (48, 16));
        let [_, dripped] = mapped_and_dripped(&pcap[..pcap.len() - 100], 64, 1 << 20);
        assert_eq!(dripped.unwrap().1.malformed, 1, "the cut record is counted");
    }

    /// A record longer than the stream's bound is a clean error, not a hang or an
    /// allocation of what its length claims; broken headers are the errors they are in a
    /// file.
    #[test]
    fn a_stream_bounds_its_records_and_reports_damage() {
        let mut w = PcapWriter::new(Vec::new(), 1).unwrap();
        w.write(Timestamp::ZERO, &[1; 100]).unwrap();
        w.write(Timestamp::ZERO, &[2; 3000]).unwrap();
        let bytes = w.into_inner();
        let [_, dripped] = mapped_and_dripped(&bytes, 64, 2048);
        let err = dripped.unwrap_err();
        assert!(
            err.contains("offset 140 is 3016 bytes long") && err.contains("up to 2048"),
            "{err}"
        );
        // A length of 4 GiB: refused at once.
        let mut huge = bytes.clone();
        huge[24 + 16 + 100 + 8..][..4].copy_from_slice(&u32::MAX.to_le_bytes());
        let [mapped, dripped] = mapped_and_dripped(&huge, 64, STREAM_MAX_RECORD);
        assert_eq!(mapped.unwrap().1.malformed, 1, "a file just ends there");
        assert!(dripped.unwrap_err().contains("4294967311 bytes long"));
        // A pcapng block at the bound is read.
        let mut ng = pcapng_section(u32::to_le_bytes);
        pcapng_block(&mut ng, u32::to_le_bytes, 1, &[1, 0, 0, 0, 0, 0, 0, 0]);
        let mut body = vec![0u8; 20];
        body[12..16].copy_from_slice(&4000u32.to_le_bytes());
        body.extend_from_slice(&[3; 4000]);
        pcapng_block(&mut ng, u32::to_le_bytes, 6, &body);
        let [mapped, dripped] = mapped_and_dripped(&ng, 64, 4032);
        assert_eq!(mapped.unwrap().0.len(), 1);
        assert_eq!(dripped.unwrap().0.len(), 1);
        // Not a capture, empty, damaged.
        for (bytes, what) in [
            (&b"hello world, not a pcap"[..], "not a pcap"),
            (&b""[..], "not a pcap"),
            (&bytes[..20], "pcap header truncated"),
        ] {
            let [mapped, dripped] = mapped_and_dripped(bytes, 64, 1 << 20);
            assert!(mapped.unwrap_err().contains(what));
            assert!(dripped.unwrap_err().contains(what), "{what}");
        }
        let mut bad = pcapng_section(u32::to_le_bytes);
        bad[8..12].copy_from_slice(&0x1234_5678u32.to_le_bytes());
        let [_, dripped] = mapped_and_dripped(&bad, 64, 1 << 20);
        assert!(dripped.unwrap_err().contains("byte-order magic"));
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
