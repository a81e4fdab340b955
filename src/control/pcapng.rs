//! A small pcapng writer (the blocks `podtap sniff` needs): a Section Header with a
//! comment, one Interface Description per observation point (name, description,
//! nanosecond timestamps), and an Enhanced Packet per frame.
//!
//! Whole blocks are buffered and written together. When a write fails (a full disk), the
//! output is cut back to the end of the last block written whole, so the file stays a
//! valid capture, and the error is returned.

use std::io::{self, Write};

const SHB: u32 = 0x0A0D_0D0A;
const IDB: u32 = 1;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_OS: u16 = 3;
const SHB_USERAPPL: u16 = 4;
const IF_NAME: u16 = 2;
const IF_DESCRIPTION: u16 = 3;
const IF_TSRESOL: u16 = 9;
/// Buffered bytes that trigger a write.
const FLUSH_AT: usize = 64 << 10;

/// Where the blocks go: a file can be cut back after a failed write, a pipe cannot.
pub trait Output: Write {
    /// Cut the output back to `len` bytes (the end of the last whole block).
    fn truncate(&mut self, len: u64) -> io::Result<()>;
}

impl Output for std::fs::File {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        use std::io::Seek;
        self.set_len(len)?;
        self.seek(io::SeekFrom::Start(len)).map(drop)
    }
}

/// Standard output (`-w -`): what was written stays; the reader sees a block cut short.
impl Output for io::Stdout {
    fn truncate(&mut self, _len: u64) -> io::Result<()> {
        Ok(())
    }
}

impl Output for Vec<u8> {
    fn truncate(&mut self, len: u64) -> io::Result<()> {
        Vec::truncate(self, len as usize);
        Ok(())
    }
}

pub struct PcapngWriter<W: Output> {
    out: W,
    buf: Vec<u8>,
    /// End offsets (in `buf`) of the whole blocks buffered.
    ends: Vec<usize>,
    /// Bytes of whole blocks in the output.
    committed: u64,
    /// Interfaces described so far.
    interfaces: u32,
    /// A write failed: nothing more is written.
    failed: bool,
}

impl<W: Output> PcapngWriter<W> {
    /// Start a section whose comment is `comment`.
    pub fn new(out: W, comment: &str) -> PcapngWriter<W> {
        let mut w = PcapngWriter {
            out,
            buf: Vec::with_capacity(FLUSH_AT + 4096),
            ends: Vec::new(),
            committed: 0,
            interfaces: 0,
            failed: false,
        };
        let mut body = Vec::new();
        body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
        body.extend_from_slice(&1u16.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        // Section length unknown: it is written as it goes.
        body.extend_from_slice(&(-1i64).to_le_bytes());
        option(&mut body, OPT_COMMENT, comment.as_bytes());
        option(&mut body, SHB_OS, b"Linux");
        let appl = format!("podtap {}", env!("CARGO_PKG_VERSION"));
        option(&mut body, SHB_USERAPPL, appl.as_bytes());
        option(&mut body, OPT_END, &[]);
        w.block(SHB, &body);
        w
    }

    /// Describe an interface; returns its id for [`PcapngWriter::packet`].
    pub fn interface(&mut self, linktype: u16, snaplen: u32, name: &str, description: &str) -> u32 {
        let mut body = Vec::new();
        body.extend_from_slice(&linktype.to_le_bytes());
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&snaplen.to_le_bytes());
        option(&mut body, IF_NAME, name.as_bytes());
        if !description.is_empty() {
            option(&mut body, IF_DESCRIPTION, description.as_bytes());
        }
        // Timestamps in nanoseconds.
        option(&mut body, IF_TSRESOL, &[9]);
        option(&mut body, OPT_END, &[]);
        self.block(IDB, &body);
        self.interfaces += 1;
        self.interfaces - 1
    }

    /// One frame of interface `id`: `data` as captured, `wire_len` as on the wire,
    /// `ts_ns` nanoseconds since the epoch. Writes when enough is buffered.
    pub fn packet(&mut self, id: u32, ts_ns: u64, wire_len: u32, data: &[u8]) -> io::Result<()> {
        let pad = (4 - data.len() % 4) % 4;
        let total = 32 + data.len() + pad;
        let start = self.buf.len();
        self.buf.extend_from_slice(&EPB.to_le_bytes());
        self.buf.extend_from_slice(&(total as u32).to_le_bytes());
        self.buf.extend_from_slice(&id.to_le_bytes());
        self.buf
            .extend_from_slice(&((ts_ns >> 32) as u32).to_le_bytes());
        self.buf.extend_from_slice(&(ts_ns as u32).to_le_bytes());
        self.buf
            .extend_from_slice(&(data.len() as u32).to_le_bytes());
        self.buf.extend_from_slice(&wire_len.to_le_bytes());
        self.buf.extend_from_slice(data);
        self.buf.extend_from_slice(&[0u8; 3][..pad]);
        self.buf.extend_from_slice(&(total as u32).to_le_bytes());
        debug_assert_eq!(self.buf.len() - start, total);
        self.ends.push(self.buf.len());
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    fn block(&mut self, kind: u32, body: &[u8]) {
        let total = (12 + body.len()) as u32;
        self.buf.extend_from_slice(&kind.to_le_bytes());
        self.buf.extend_from_slice(&total.to_le_bytes());
        self.buf.extend_from_slice(body);
        self.buf.extend_from_slice(&total.to_le_bytes());
        self.ends.push(self.buf.len());
    }

    /// Bytes of whole blocks written and buffered: the file's size after a flush.
    pub fn size(&self) -> u64 {
        self.committed + self.buf.len() as u64
    }

    /// Write what is buffered. On failure the output is cut back to its last whole block
    /// (where the output allows) and every later call fails with the same error kind.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other("an earlier write failed"));
        }
        let mut done = 0;
        while done < self.buf.len() {
            match self.out.write(&self.buf[done..]) {
                Ok(0) => {
                    return self.fail(done, io::Error::from(io::ErrorKind::WriteZero));
                }
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.fail(done, e),
            }
        }
        self.committed += self.buf.len() as u64;
        self.buf.clear();
        self.ends.clear();
        self.out.flush()
    }

    fn fail(&mut self, written: usize, e: io::Error) -> io::Result<()> {
        self.failed = true;
        // The last block that made it out whole.
        let whole = self
            .ends
            .iter()
            .rev()
            .find(|&&end| end <= written)
            .copied()
            .unwrap_or(0);
        self.committed += whole as u64;
        self.buf.clear();
        self.ends.clear();
        if let Err(t) = self.out.truncate(self.committed) {
            tracing::warn!("cannot cut the capture back to its last whole block: {t}");
        }
        Err(e)
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend_from_slice(&code.to_le_bytes());
    body.extend_from_slice(&(value.len() as u16).to_le_bytes());
    body.extend_from_slice(value);
    body.extend_from_slice(&[0u8; 3][..(4 - value.len() % 4) % 4]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Source;
    use crate::capture::pcap_file::PcapFileSource;

    /// What podtap's own pcapng reader makes of the writer's output: the frames, their
    /// times and interfaces.
    #[test]
    fn podtaps_reader_reads_it_back() {
        let mut w = PcapngWriter::new(Vec::new(), "pod default/web on node n1");
        let a = w.interface(1, 262144, "veth1", "pod default/web");
        let b = w.interface(1, 262144, "veth2", "");
        w.packet(a, 1_700_000_000_123_456_789, 60, &[0xaa; 42])
            .unwrap();
        w.packet(b, 1_700_000_001_000_000_001, 1514, &[0xbb; 100])
            .unwrap();
        w.flush().unwrap();
        let bytes = w.into_inner();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pcapng");
        std::fs::write(&path, &bytes).unwrap();
        let mut src = PcapFileSource::open(&path).unwrap();
        let mut got = Vec::new();
        while let Some(_n) = src
            .next_batch(16, |f| {
                got.push((f.obs, f.ts.as_nanos(), f.wire_len, f.data.len()))
            })
            .unwrap()
        {}
        assert_eq!(
            got,
            [
                (0, 1_700_000_000_123_456_789, 60, 42),
                (1, 1_700_000_001_000_000_001, 1514, 100)
            ]
        );
    }

    /// An output that takes `room` bytes, then reports a full disk.
    struct Full {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            let n = b.len().min(self.room - self.data.len());
            if n == 0 {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
            self.data.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Output for Full {
        fn truncate(&mut self, len: u64) -> io::Result<()> {
            self.data.truncate(len as usize);
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_leaves_whole_blocks() {
        for room in [0, 10, 100, 333, 1000, 5000] {
            let mut w = PcapngWriter::new(
                Full {
                    data: Vec::new(),
                    room,
                },
                "c",
            );
            let id = w.interface(1, 65535, "eth0", "");
            let mut res = Ok(());
            for i in 0..100u64 {
                res = w.packet(id, i, 70, &[i as u8; 70]);
                if res.is_err() {
                    break;
                }
            }
            let res = res.and_then(|_| w.flush());
            let err = res.unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::ENOSPC), "room {room}");
            let data = w.into_inner().data;
            // Every block whole: walk the lengths to the exact end.
            let mut at = 0;
            while at < data.len() {
                let len = u32::from_le_bytes(data[at + 4..at + 8].try_into().unwrap()) as usize;
                assert!(at + len <= data.len(), "room {room}: cut block at {at}");
                let trailer =
                    u32::from_le_bytes(data[at + len - 4..at + len].try_into().unwrap()) as usize;
                assert_eq!(trailer, len);
                at += len;
            }
            assert_eq!(at, data.len());
            assert!(data.len() <= room);
        }
    }
}
