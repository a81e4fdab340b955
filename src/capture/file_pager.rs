//! A window of mapped pages that moves along a memory-mapped capture file with its readers.
//!
//! Replay reads a capture through one shared read-only mapping. Left alone, each page costs
//! a page fault on the reader's thread the first time it is read, and stays mapped until the
//! end: the mapping's resident size grows to the file's size, and unmapping it tears down the
//! whole file's page tables after the last packet. The pager does this work on a thread of
//! its own, beside the workers: it maps pages ahead of the readers (`MADV_POPULATE_READ`,
//! which also reads a file that is not in the page cache yet) and drops them behind
//! (`MADV_DONTNEED`). The readers then neither fault nor wait for the disk, and the resident
//! part of the mapping stays within a window of [`AHEAD`] + [`BEHIND`] plus the spread
//! between the fastest and the slowest reader.
//!
//! Dropping pages of a shared read-only file mapping only drops their page-table entries: the
//! memory stays readable, and a read there faults the page back in from the file. A pager
//! that is early or late therefore costs time, never correctness.

use memmap2::{Advice, Mmap, UncheckedAdvice};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::Duration;

/// Bytes mapped ahead of the fastest reader. A worker reads a few GB/s at most, so this is
/// ten milliseconds or more of its work: the pager, napping [`MAX_NAP`] at the longest,
/// stays ahead.
pub const AHEAD: usize = 32 << 20;
/// Bytes kept mapped behind the slowest reader's published position. Nothing below that
/// position is read again; the margin only keeps the pager off the page a reader is in.
pub const BEHIND: usize = 1 << 20;
/// Smallest range worth one `madvise` call.
const STEP: usize = 2 << 20;
/// Pause between two looks at the readers' positions when there was nothing to do. It
/// doubles while there is nothing to do (a replay held to a packet rate moves slowly), up
/// to [`MAX_NAP`].
const NAP: Duration = Duration::from_micros(200);
const MAX_NAP: Duration = Duration::from_millis(5);
/// A reader's position once it has finished (or was dropped).
const FINISHED: usize = usize::MAX;

/// The readers' positions, shared between the readers and the pager.
struct Positions {
    at: Box<[AtomicUsize]>,
    /// The pager's thread, woken when a reader finishes: the replay joins the pager after
    /// its readers, and a pager left in its nap would hold the end of every replay up by
    /// as much as [`MAX_NAP`] (a quarter of a short replay's time).
    pager: OnceLock<Thread>,
}

impl Positions {
    /// (slowest, fastest) position over the readers that have not finished; `None` when
    /// all have.
    fn bounds(&self) -> Option<(usize, usize)> {
        // Relaxed: a stale position only makes the pager late or early (see the module
        // comment), never unsafe.
        let live = self
            .at
            .iter()
            .map(|p| p.load(Ordering::Relaxed))
            .filter(|&p| p != FINISHED);
        live.fold(None, |acc, p| match acc {
            None => Some((p, p)),
            Some((lo, hi)) => Some((lo.min(p), hi.max(p))),
        })
    }
}

/// One reader's slot: the reader publishes how far it has read. Dropping the slot (with its
/// reader) marks the reader finished, whichever way it ended.
pub struct ReadProgress {
    positions: Arc<Positions>,
    index: usize,
}

impl ReadProgress {
    /// The reader will read nothing before `pos` again.
    #[inline]
    pub fn publish(&self, pos: usize) {
        self.positions.at[self.index].store(pos, Ordering::Relaxed);
    }
}

impl Drop for ReadProgress {
    fn drop(&mut self) {
        self.publish(FINISHED);
        // A pager not running yet finds every reader finished at its first look.
        if let Some(pager) = self.positions.pager.get() {
            pager.unpark();
        }
    }
}

/// Moves the window of mapped pages along one mapping; [`FilePager::run`] on its own thread.
pub struct FilePager {
    map: Arc<Mmap>,
    positions: Arc<Positions>,
    ahead: usize,
    behind: usize,
    /// Everything below this offset has been populated.
    populated: usize,
    /// Everything below this offset has been dropped.
    dropped: usize,
    /// Cleared when `MADV_POPULATE_READ` fails (kernels before 5.14 do not have it): the
    /// readers then fault the pages in themselves, as without a pager.
    populate: bool,
    /// Cleared when `MADV_DONTNEED` fails: pages then stay mapped until the end.
    drop_behind: bool,
    /// The first and the longest pause ([`NAP`], [`MAX_NAP`]).
    naps: (Duration, Duration),
}

impl FilePager {
    /// A pager for `readers` readers of `map`, and their progress slots (one each).
    pub fn new(map: Arc<Mmap>, readers: usize) -> (FilePager, Vec<ReadProgress>) {
        Self::with_window(map, readers, AHEAD, BEHIND)
    }

    fn with_window(
        map: Arc<Mmap>,
        readers: usize,
        ahead: usize,
        behind: usize,
    ) -> (FilePager, Vec<ReadProgress>) {
        let positions = Arc::new(Positions {
            at: (0..readers).map(|_| AtomicUsize::new(0)).collect(),
            pager: OnceLock::new(),
        });
        let slots = (0..readers)
            .map(|index| ReadProgress {
                positions: positions.clone(),
                index,
            })
            .collect();
        let pager = FilePager {
            map,
            positions,
            ahead,
            behind,
            populated: 0,
            dropped: 0,
            populate: true,
            drop_behind: true,
            naps: (NAP, MAX_NAP),
        };
        (pager, slots)
    }

    /// Keep the window moving until every reader has finished.
    pub fn run(mut self) {
        // Set before the first look: a reader finishing after it wakes the nap below (an
        // unpark before the park makes the park return at once).
        let _ = self.positions.pager.set(std::thread::current());
        let (first, longest) = self.naps;
        let mut nap = first;
        while let Some(busy) = self.step() {
            if busy {
                nap = first;
            } else {
                std::thread::park_timeout(nap);
                nap = (nap * 2).min(longest);
            }
        }
    }

    /// One look at the readers: populate ahead, drop behind. `None` once every reader has
    /// finished; otherwise whether there was anything to do.
    pub fn step(&mut self) -> Option<bool> {
        let (lo, hi) = self.positions.bounds()?;
        let len = self.map.len();
        let mut busy = false;
        let want = hi.saturating_add(self.ahead).min(len);
        if self.populate && want > self.populated && (want - self.populated >= STEP || want == len)
        {
            // An error (a kernel before 5.14, or a file truncated under the mapping, which
            // the readers report themselves) ends populating.
            if let Err(e) =
                self.map
                    .advise_range(Advice::PopulateRead, self.populated, want - self.populated)
            {
                tracing::debug!(error = %e, "MADV_POPULATE_READ failed; readers fault pages in themselves");
                self.populate = false;
            }
            self.populated = want;
            busy = true;
        }
        let below = lo.saturating_sub(self.behind);
        if self.drop_behind && below >= self.dropped + STEP {
            // SAFETY: the mapping is a shared, read-only mapping of a file: DONTNEED drops
            // page-table entries only, and a later read maps the file's page again (see the
            // module comment). No reader's bytes change.
            let r = unsafe {
                self.map.unchecked_advise_range(
                    UncheckedAdvice::DontNeed,
                    self.dropped,
                    below - self.dropped,
                )
            };
            if let Err(e) = r {
                tracing::debug!(error = %e, "MADV_DONTNEED failed; pages stay mapped until the end");
                self.drop_behind = false;
            }
            self.dropped = below;
            busy = true;
        }
        Some(busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const MIB: usize = 1 << 20;

    /// Resident bytes of the mapping that starts at `addr`, from /proc/self/smaps.
    fn resident(addr: usize) -> usize {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let mut inside = false;
        for line in smaps.lines() {
            // A mapping's header line starts with its address range, "start-end".
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((start, _)) = first.split_once('-')
                && let Ok(start) = usize::from_str_radix(start, 16)
            {
                inside = start == addr;
            } else if inside && let Some(kb) = line.strip_prefix("Rss:") {
                let kb = kb.trim().trim_end_matches("kB").trim();
                return kb.parse::<usize>().unwrap() * 1024;
            }
        }
        panic!("no mapping at {addr:#x} in /proc/self/smaps");
    }

    fn mapped_file(len: usize) -> (tempfile::NamedTempFile, Arc<Mmap>) {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        let page: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        for _ in 0..len / page.len() {
            f.write_all(&page).unwrap();
        }
        f.flush().unwrap();
        // SAFETY: a read-only mapping of a file this test owns and does not change.
        let map = unsafe { Mmap::map(f.as_file()) }.unwrap();
        (f, Arc::new(map))
    }

    #[test]
    fn the_window_follows_the_readers_and_the_bytes_stay_readable() {
        let (_f, map) = mapped_file(24 * MIB);
        let addr = map.as_ptr() as usize;
        let (mut pager, slots) = FilePager::with_window(map.clone(), 2, 4 * MIB, MIB);
        assert_eq!(resident(addr), 0, "nothing read yet");

        // Both readers at the start: the first AHEAD bytes are mapped, nothing else.
        assert_eq!(pager.step(), Some(true));
        let r = resident(addr);
        assert!((4 * MIB..5 * MIB).contains(&r), "resident {r}");
        assert_eq!(pager.step(), Some(false), "nothing new to do");

        // Readers at 12 and 14 MiB: mapped up to 14 + 4, dropped below 12 - 1.
        slots[0].publish(12 * MIB);
        slots[1].publish(14 * MIB);
        assert_eq!(pager.step(), Some(true));
        let r = resident(addr);
        assert!((6 * MIB..8 * MIB).contains(&r), "resident {r}");
        assert_eq!(pager.populated, 18 * MIB);
        assert_eq!(pager.dropped, 11 * MIB);

        // Dropped pages are still the file's bytes (byte i of each page is i % 251).
        assert_eq!(map[4097], 1);
        assert_eq!(map[11 * MIB - 1], (4095 % 251) as u8);

        // A reader near the end: the rest of the file is mapped even if less than a step.
        slots[1].publish(23 * MIB);
        assert_eq!(pager.step(), Some(true));
        assert_eq!(pager.populated, 24 * MIB);

        // Finished readers (here: dropped) stop the pager, whatever their last position.
        drop(slots);
        assert_eq!(pager.step(), None);
    }

    #[test]
    fn run_returns_when_every_reader_has_gone() {
        let (_f, map) = mapped_file(4 * MIB);
        let (pager, slots) = FilePager::new(map, 3);
        let t = std::thread::spawn(move || pager.run());
        for (i, s) in slots.into_iter().enumerate() {
            s.publish(i * MIB);
            drop(s);
        }
        t.join().unwrap();
    }

    #[test]
    fn the_last_reader_to_leave_wakes_a_napping_pager() {
        let (_f, map) = mapped_file(4 * MIB);
        let (mut pager, mut slots) = FilePager::new(map, 1);
        // Naps of a minute: only the wake ends this one in time.
        pager.naps = (Duration::from_secs(60), Duration::from_secs(60));
        let t = std::thread::spawn(move || pager.run());
        // Let it populate the whole (small) file and fall asleep.
        std::thread::sleep(Duration::from_millis(100));
        let start = std::time::Instant::now();
        drop(slots.pop());
        t.join().unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the pager slept on: {:?}",
            start.elapsed()
        );
    }
}
