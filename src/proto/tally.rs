//! Requests counted without records.
//!
//! A sink that only counts (the replay's `--output table`: see
//! [`crate::export::RecordSink::wants_records`]) reads five things of a transaction: its
//! protocol, operation and resource (its row), its duration, and that it succeeded. For
//! the plainest requests (answered at once, whole, without an error) a decoder that can
//! tells exactly that through a [`Tally`] instead of building a [`Transaction`]: building,
//! handing over, counting and dropping one record per Redis command was half of a
//! worker's time on a pipelined cache workload (perf/RESULTS.md, stop 43's profile).
//!
//! Requests of one *shape* (the same operation and resource on one connection, named by a
//! [`new_shape`] number) come in runs: a sink looks a shape's row up once and counts the
//! rest of the run against it.
//!
//! [`Transaction`]: crate::proto::Transaction

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use compact_str::CompactString;

use crate::proto::Protocol;

/// The next block of shape numbers; 0 is "no shape".
static SHAPES: AtomicU64 = AtomicU64::new(1);

/// Shape numbers a thread takes from [`SHAPES`] at a time: workers do not contend for
/// the counter's cache line.
const BLOCK: u64 = 4096;

thread_local! {
    /// This thread's next shape number and the end of its block.
    static BLOCK_LEFT: std::cell::Cell<(u64, u64)> = const { std::cell::Cell::new((0, 0)) };
}

/// A shape number no other connection or shape has: a decoder takes one when a
/// connection's requests change shape (most connections repeat a few), never per
/// request.
pub fn new_shape() -> u64 {
    BLOCK_LEFT.with(|b| {
        let (mut next, mut end) = b.get();
        if next == end {
            next = SHAPES.fetch_add(BLOCK, Relaxed);
            end = next + BLOCK;
        }
        b.set((next + 1, end));
        next
    })
}

/// Durations whose room a [`Tally`] keeps between packets (128 KiB): far more
/// than a full-sized packet of pipelined replies completes.
pub const KEEP: usize = 8192;

/// Consecutive counted requests of one shape.
#[derive(Debug)]
pub struct Run {
    pub protocol: Protocol,
    /// From [`new_shape`]: the same number means the same protocol, operation and
    /// resource (on the same connection).
    pub shape: u64,
    pub operation: CompactString,
    pub resource: CompactString,
    /// Where the run's durations start in [`Tally::durations`] (they end where the next
    /// run's start).
    start: usize,
}

/// The requests one packet's bytes completed that were counted without records, in
/// order. Each is complete, answered, and not an error (anything else is a record).
/// Reused from packet to packet. One packet can complete at most a request per few bytes
/// it delivers to a decoder (its own, and what reassembly held for it: at most
/// `reassembly.max_flow_bytes`); past [`KEEP`] requests the room is given back when the
/// tally is emptied.
#[derive(Debug, Default)]
pub struct Tally {
    /// Whether requests may be counted here at all (off: every request is a record).
    on: bool,
    runs: Vec<Run>,
    /// The shape of the last run (0: none), kept here: a request of the same shape as
    /// the last is one comparison and one push.
    last: u64,
    /// Where the last run's durations start.
    last_start: usize,
    /// The requests' durations in nanoseconds, each with how many requests of its run in
    /// a row took just that long: a pipelined batch is sent in one packet and answered in
    /// one, so its requests' durations are equal, and the batch is one entry.
    durations: Vec<(u64, u32)>,
    /// Requests counted.
    len: usize,
}

impl Tally {
    /// A tally that decoders may count into, or (`on` false) one they never do.
    pub fn new(on: bool) -> Tally {
        Tally {
            on,
            ..Tally::default()
        }
    }

    /// May decoders count requests here?
    #[inline(always)]
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Count one request of `shape` (taking `operation` and `resource` only when a run
    /// of a new shape starts). Inlined: left to itself the compiler made it a call per
    /// request (6% of a Redis worker's time).
    #[inline(always)]
    pub fn count(
        &mut self,
        protocol: Protocol,
        shape: u64,
        operation: &CompactString,
        resource: &CompactString,
        duration_ns: u64,
    ) {
        if shape != self.last {
            self.start_run(protocol, shape, operation, resource);
        }
        self.len += 1;
        if self.durations.len() > self.last_start
            && let Some((d, n)) = self.durations.last_mut()
            && *d == duration_ns
            && *n < u32::MAX
        {
            *n += 1;
            return;
        }
        self.durations.push((duration_ns, 1));
    }

    /// A run of a new shape starts with the next request.
    #[inline(never)]
    fn start_run(
        &mut self,
        protocol: Protocol,
        shape: u64,
        operation: &CompactString,
        resource: &CompactString,
    ) {
        self.runs.push(Run {
            protocol,
            shape,
            operation: operation.clone(),
            resource: resource.clone(),
            start: self.durations.len(),
        });
        self.last = shape;
        self.last_start = self.durations.len();
    }

    /// Requests counted.
    #[inline]
    pub fn len(&self) -> usize {
        self.len
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, each with its requests' durations (nanoseconds), each duration with how
    /// many requests in a row took it.
    pub fn runs(&self) -> impl Iterator<Item = (&Run, &[(u64, u32)])> {
        let ends = self
            .runs
            .iter()
            .skip(1)
            .map(|r| r.start)
            .chain([self.durations.len()]);
        self.runs
            .iter()
            .zip(ends)
            .map(|(r, end)| (r, &self.durations[r.start..end]))
    }

    pub fn clear(&mut self) {
        self.runs.clear();
        self.durations.clear();
        self.last = 0;
        self.last_start = 0;
        self.len = 0;
        if self.durations.capacity() > KEEP {
            // A burst (a reassembled backlog) does not keep its room.
            self.durations.shrink_to(KEEP);
            self.runs.shrink_to(KEEP / 8);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_of_one_shape_make_one_run_and_a_new_shape_starts_another() {
        let (get, set, user) = ("GET".into(), "SET".into(), "user".into());
        let (a, b) = (new_shape(), new_shape());
        assert!(a != 0 && b != 0 && a != b);
        // Other threads take other numbers.
        let theirs = std::thread::spawn(|| (0..5000).map(|_| new_shape()).collect::<Vec<_>>())
            .join()
            .unwrap();
        let mine: Vec<u64> = (0..5000).map(|_| new_shape()).collect();
        let mut all: Vec<u64> = theirs.iter().chain(&mine).copied().collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 10_000);
        let mut t = Tally::new(true);
        assert!(t.is_on() && !Tally::default().is_on());
        t.count(Protocol::Redis, a, &get, &user, 10);
        t.count(Protocol::Redis, a, &get, &user, 20);
        t.count(Protocol::Redis, a, &get, &user, 20);
        t.count(Protocol::Redis, b, &set, &user, 20);
        t.count(Protocol::Redis, b, &set, &user, 30);
        t.count(Protocol::Redis, a, &get, &user, 30);
        t.count(Protocol::Redis, a, &get, &user, 40);
        assert_eq!(t.len(), 7);
        let runs: Vec<_> = t
            .runs()
            .map(|(r, d)| (r.operation.to_string(), d.to_vec()))
            .collect();
        // Equal durations in a row are one entry, within a run, never across two.
        assert_eq!(
            runs,
            [
                ("GET".to_string(), vec![(10, 1), (20, 2)]),
                ("SET".to_string(), vec![(20, 1), (30, 1)]),
                ("GET".to_string(), vec![(30, 1), (40, 1)]),
            ]
        );
        t.clear();
        assert!(t.is_empty() && t.runs().next().is_none());
        // A burst's room is given back.
        for i in 0..(KEEP as u64 * 4) {
            t.count(Protocol::Redis, a, &get, &user, i);
        }
        assert_eq!(t.runs().count(), 1);
        t.clear();
        assert!(t.durations.capacity() <= KEEP);
    }
}
