//! Bounded IPv4/IPv6 fragment reassembly.
//!
//! A fixed number of datagram slots, each with a reusable buffer, so once warm there is no
//! allocation per fragment. When all slots are busy the oldest incomplete datagram is
//! dropped and counted; incomplete datagrams older than the timeout are dropped and
//! counted by `expire`. Overlapping fragments must agree with what is already held
//! (different bytes are an evasion trick and invalidate the datagram).

use std::net::IpAddr;

use crate::events::{Counters, Event};
use crate::time::Timestamp;

/// Limits for fragment reassembly (see `[defrag]` in config/podtap.toml).
#[derive(Clone, Copy, Debug)]
pub struct DefragLimits {
    /// Datagrams being reassembled at once, per worker.
    pub max_datagrams: usize,
    /// Largest reassembled datagram payload in bytes.
    pub max_datagram_bytes: usize,
    /// Incomplete datagrams are dropped after this long (packet clock).
    pub timeout_ns: u64,
}

impl Default for DefragLimits {
    fn default() -> Self {
        DefragLimits {
            max_datagrams: 256,
            max_datagram_bytes: 65_535,
            timeout_ns: 30_000_000_000,
        }
    }
}

/// What identifies the datagram a fragment belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    pub id: u32,
}

/// One fragment's position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub id: u32,
    /// Byte offset of this fragment's data in the datagram payload.
    pub offset: u32,
    /// More fragments follow.
    pub more: bool,
}

/// Most distinct pieces one datagram may arrive in.
const MAX_PIECES: usize = 64;

struct Slot {
    key: Option<FragKey>,
    first_seen: Timestamp,
    buf: Vec<u8>,
    /// Received byte ranges [start, end), unmerged.
    pieces: Vec<(u32, u32)>,
    /// Total payload length, known once the last fragment arrived.
    total: Option<u32>,
}

pub struct Defragmenter {
    limits: DefragLimits,
    slots: Vec<Slot>,
    /// Slot whose buffer holds the datagram handed out last; freed on the next call.
    handed_out: Option<usize>,
    pub counters: Counters,
}

impl Default for Defragmenter {
    fn default() -> Self {
        Defragmenter::new(DefragLimits::default())
    }
}

impl Defragmenter {
    pub fn new(limits: DefragLimits) -> Self {
        Defragmenter {
            limits,
            slots: Vec::new(),
            handed_out: None,
            counters: Counters::default(),
        }
    }

    /// Number of datagrams currently held incomplete.
    pub fn pending(&self) -> usize {
        self.slots.iter().filter(|s| s.key.is_some()).count()
            - usize::from(self.handed_out.is_some())
    }

    /// Offer one fragment. Returns the whole datagram payload once the last missing piece
    /// arrived, `Ok(None)` while it is still incomplete, or the reason it was dropped.
    /// A returned error is not counted here: it is this frame's decode error, and the
    /// caller counts decode errors (the worker bumps every `Err` of `packet::decode`
    /// once). `counters` only hold what concerns other frames or whole datagrams.
    pub fn push(
        &mut self,
        key: FragKey,
        frag: Fragment,
        data: &[u8],
        ts: Timestamp,
    ) -> Result<Option<&[u8]>, Event> {
        if let Some(i) = self.handed_out.take() {
            self.free(i);
        }
        let start = frag.offset;
        let end = start as usize + data.len();
        if end > self.limits.max_datagram_bytes || (frag.more && !data.len().is_multiple_of(8)) {
            self.drop_key(&key);
            return Err(Event::FragmentInvalid);
        }
        let end = end as u32;
        let i = match self.slots.iter().position(|s| s.key == Some(key)) {
            Some(i) => i,
            None => self.claim(key, ts)?,
        };
        let slot = &mut self.slots[i];
        if !frag.more {
            if slot.total.is_some_and(|t| t != end) || slot.pieces.iter().any(|&(_, e)| e > end) {
                self.free(i);
                return Err(Event::FragmentInvalid);
            }
            slot.total = Some(end);
        } else if slot.total.is_some_and(|t| end > t) {
            self.free(i);
            return Err(Event::FragmentInvalid);
        }
        if slot.buf.len() < end as usize {
            slot.buf.resize(end as usize, 0);
        }
        // Overlaps must carry identical bytes.
        for &(s, e) in &slot.pieces {
            let (os, oe) = (s.max(start), e.min(end));
            if os < oe {
                let held = &slot.buf[os as usize..oe as usize];
                let new = &data[(os - start) as usize..(oe - start) as usize];
                if held != new {
                    self.free(i);
                    return Err(Event::FragmentInvalid);
                }
            }
        }
        if slot.pieces.len() == MAX_PIECES {
            self.free(i);
            return Err(Event::FragmentOverflow);
        }
        slot.buf[start as usize..end as usize].copy_from_slice(data);
        slot.pieces.push((start, end));
        let Some(total) = slot.total else {
            self.counters.bump(Event::FragmentHeld);
            return Ok(None);
        };
        if !covers(&mut slot.pieces, total) {
            self.counters.bump(Event::FragmentHeld);
            return Ok(None);
        }
        self.counters.bump(Event::FragmentReassembled);
        self.handed_out = Some(i);
        Ok(Some(&self.slots[i].buf[..total as usize]))
    }

    /// Drop incomplete datagrams older than the timeout.
    pub fn expire(&mut self, now: Timestamp) {
        for i in 0..self.slots.len() {
            if self.handed_out == Some(i) {
                continue;
            }
            let s = &self.slots[i];
            if s.key.is_some() && now.since(s.first_seen) > self.limits.timeout_ns {
                self.free(i);
                self.counters.bump(Event::FragmentTimeout);
            }
        }
    }

    fn claim(&mut self, key: FragKey, ts: Timestamp) -> Result<usize, Event> {
        let i = if let Some(i) = self.slots.iter().position(|s| s.key.is_none()) {
            i
        } else if self.slots.len() < self.limits.max_datagrams {
            self.slots.push(Slot {
                key: None,
                first_seen: ts,
                buf: Vec::new(),
                pieces: Vec::new(),
                total: None,
            });
            self.slots.len() - 1
        } else {
            // All slots busy: give up the oldest incomplete datagram.
            let oldest = (0..self.slots.len())
                .min_by_key(|&i| self.slots[i].first_seen)
                .ok_or(Event::FragmentOverflow)?;
            self.free(oldest);
            self.counters.bump(Event::FragmentOverflow);
            oldest
        };
        let s = &mut self.slots[i];
        s.key = Some(key);
        s.first_seen = ts;
        Ok(i)
    }

    fn drop_key(&mut self, key: &FragKey) {
        if let Some(i) = self.slots.iter().position(|s| s.key.as_ref() == Some(key)) {
            self.free(i);
        }
    }

    fn free(&mut self, i: usize) {
        let s = &mut self.slots[i];
        s.key = None;
        s.pieces.clear();
        s.total = None;
        s.buf.clear();
    }
}

/// Do the pieces cover [0, total)? Sorts them in place.
fn covers(pieces: &mut [(u32, u32)], total: u32) -> bool {
    pieces.sort_unstable();
    let mut reached = 0;
    for &(s, e) in pieces.iter() {
        if s > reached {
            return false;
        }
        reached = reached.max(e);
    }
    reached >= total
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: Ipv4Addr::new(10, 0, 0, 1).into(),
            dst: Ipv4Addr::new(10, 0, 0, 2).into(),
            proto: 17,
            id,
        }
    }

    fn frag(offset: u32, more: bool) -> Fragment {
        Fragment {
            id: 1,
            offset,
            more,
        }
    }

    #[test]
    fn reassembles_in_any_order() {
        let mut d = Defragmenter::default();
        let data: Vec<u8> = (0..24).collect();
        assert_eq!(
            d.push(key(1), frag(16, false), &data[16..], Timestamp(1)),
            Ok(None)
        );
        assert_eq!(
            d.push(key(1), frag(0, true), &data[..8], Timestamp(2)),
            Ok(None)
        );
        assert_eq!(
            d.push(key(1), frag(8, true), &data[8..16], Timestamp(3)),
            Ok(Some(&data[..]))
        );
        assert_eq!(d.pending(), 0);
        assert_eq!(d.counters.get(Event::FragmentReassembled), 1);
    }

    #[test]
    fn conflicting_overlap_is_invalid() {
        let mut d = Defragmenter::default();
        d.push(key(1), frag(0, true), &[1; 16], Timestamp(1))
            .unwrap();
        assert_eq!(
            d.push(key(1), frag(8, false), &[2; 8], Timestamp(2)),
            Err(Event::FragmentInvalid)
        );
        assert_eq!(d.pending(), 0);
        // Returned, not counted: the caller counts the frame's error once.
        assert_eq!(d.counters.get(Event::FragmentInvalid), 0);
    }

    #[test]
    fn identical_overlap_is_fine() {
        let mut d = Defragmenter::default();
        d.push(key(1), frag(0, true), &[1; 16], Timestamp(1))
            .unwrap();
        assert_eq!(
            d.push(key(1), frag(8, false), &[1; 16], Timestamp(2))
                .unwrap()
                .map(<[u8]>::len),
            Some(24)
        );
    }

    #[test]
    fn bounded_slots_and_timeout() {
        let mut d = Defragmenter::new(DefragLimits {
            max_datagrams: 2,
            max_datagram_bytes: 1000,
            timeout_ns: 10,
        });
        for id in 0..3 {
            assert_eq!(
                d.push(key(id), frag(0, true), &[0; 8], Timestamp(id as u64)),
                Ok(None)
            );
        }
        assert_eq!(d.counters.get(Event::FragmentOverflow), 1);
        assert_eq!(d.pending(), 2);
        d.expire(Timestamp(100));
        assert_eq!(d.pending(), 0);
        assert_eq!(d.counters.get(Event::FragmentTimeout), 2);
        assert_eq!(
            d.push(key(9), frag(996, false), &[0; 8], Timestamp(101)),
            Err(Event::FragmentInvalid)
        );
    }
}
