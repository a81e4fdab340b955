//! The built-in trivial consumer of reassembled streams: it counts the bytes delivered in
//! order and the bytes declared missing per direction. It exercises the `L7Parser` seam for
//! connections no protocol decoder claims, and lets tests check reassembly exactly
//! (delivered + gap bytes = the stream's length).

use super::{Direction, L7Parser, Progress, Transaction};
use crate::time::Timestamp;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStats {
    /// Bytes delivered in order, per direction (index: `Direction::index`).
    pub delivered: [u64; 2],
    /// Bytes declared missing, per direction.
    pub gap_bytes: [u64; 2],
    /// Number of gaps, per direction.
    pub gaps: [u32; 2],
    /// Number of `on_data` calls, per direction.
    pub chunks: [u64; 2],
}

impl L7Parser for StreamStats {
    fn on_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        _ts: Timestamp,
        _out: &mut Vec<Transaction>,
    ) -> Progress {
        self.delivered[dir.index()] += bytes.len() as u64;
        self.chunks[dir.index()] += 1;
        Progress::Continue
    }

    fn on_gap(&mut self, dir: Direction, missing: u32) {
        self.gap_bytes[dir.index()] += missing as u64;
        self.gaps[dir.index()] += 1;
    }

    fn on_close(&mut self, _ts: Timestamp, _reset: bool, _out: &mut Vec<Transaction>) {}
}
