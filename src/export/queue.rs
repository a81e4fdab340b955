//! The hand-off from workers to the writer thread: batches of records through one bounded
//! queue, and the emptied batches back through another.
//!
//! Two costs of a plain channel fell on the workers. A writer blocked in `recv` must be
//! woken for every batch sent: a cross-CPU wake-up (a futex call and an inter-processor
//! interrupt, tens of microseconds on a virtual machine) that was ~6% of a worker's time
//! on small HTTP transactions. And each batch was a fresh allocation of a few hundred
//! kilobytes, freed on the writer's thread, which the allocator kept faulting in as new,
//! zeroed pages. Here the writer polls: it parks when the queue is empty, 1 ms after a
//! batch and twice as long each time it finds none up to [`POLL`], and is unparked only
//! when the queue is half full or a sender leaves, so a sender's `send` is a few atomic
//! operations; and the writer hands every batch back empty, so a worker's batches are the
//! same few buffers over and over. (The short first sleep keeps few records in flight
//! while they stream: fewer transactions alive at once is less memory for the allocator
//! to fault in.)

use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError, bounded};

use super::Record;

/// Longest a writer sleeps with batches waiting: the most a record's output is delayed
/// while the queue is less than half full.
pub const POLL: Duration = Duration::from_millis(10);

/// First sleep after a batch: the writer's look-ups while records stream.
const FIRST_POLL: Duration = Duration::from_millis(1);

/// The writer thread, once it has waited for the first time.
type WriterThread = Arc<OnceLock<Thread>>;

/// Build a queue of at most `batches` batches of `batch_size` records.
pub fn record_queue(batches: usize, batch_size: usize) -> (BatchSender, BatchReceiver) {
    let batches = batches.max(1);
    let (tx, rx) = bounded(batches);
    // Emptied batches beyond what fills the queue are not worth keeping.
    let (spare_tx, spare_rx) = bounded(batches);
    let writer = WriterThread::default();
    (
        BatchSender {
            tx,
            spare: spare_rx,
            writer: writer.clone(),
            batch_size: batch_size.max(1),
            wake_at: batches.div_ceil(2),
        },
        BatchReceiver {
            rx,
            spare: spare_tx,
            writer,
            poll: POLL,
        },
    )
}

/// A worker's end. Clone one per worker.
#[derive(Clone)]
pub struct BatchSender {
    tx: Sender<Vec<Record>>,
    spare: Receiver<Vec<Record>>,
    writer: WriterThread,
    batch_size: usize,
    /// Queue length at which the writer is woken instead of left to its next poll.
    wake_at: usize,
}

impl BatchSender {
    /// An empty batch to fill: one the writer gave back, or a new one.
    pub fn empty_batch(&self) -> Vec<Record> {
        self.spare
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(self.batch_size))
    }

    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Queue `batch`, waiting for room while the queue is full. `Err` gives the batch back
    /// when the writer is gone.
    pub fn send(&self, batch: Vec<Record>) -> Result<(), Vec<Record>> {
        let r = match self.tx.try_send(batch) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(b)) => Err(b),
            Err(TrySendError::Full(b)) => {
                // Full: the writer must run now, and this worker waits for it.
                self.wake();
                self.tx.send(b).map_err(|e| e.0)
            }
        };
        self.wake_if_filling();
        r
    }

    /// Queue `batch` if there is room; `Err` gives it back when the queue is full or the
    /// writer is gone.
    pub fn try_send(&self, batch: Vec<Record>) -> Result<(), Vec<Record>> {
        let r = self.tx.try_send(batch).map_err(|e| match e {
            TrySendError::Full(b) | TrySendError::Disconnected(b) => b,
        });
        self.wake_if_filling();
        r
    }

    #[inline]
    fn wake_if_filling(&self) {
        if self.tx.len() >= self.wake_at {
            self.wake();
        }
    }

    fn wake(&self) {
        if let Some(t) = self.writer.get() {
            t.unpark();
        }
    }
}

impl Drop for BatchSender {
    fn drop(&mut self) {
        // The last sender leaving ends the writer's loop: it should not sleep through that.
        self.wake();
    }
}

/// The writer's end.
pub struct BatchReceiver {
    rx: Receiver<Vec<Record>>,
    spare: Sender<Vec<Record>>,
    writer: WriterThread,
    /// Longest sleep between looks at the queue ([`POLL`]).
    poll: Duration,
}

/// What [`BatchReceiver::recv_timeout`] found instead of a batch.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// Nothing arrived in time.
    Timeout,
    /// Every sender is gone and the queue is empty.
    Disconnected,
}

impl BatchReceiver {
    /// Sleep up to `poll` between looks at an empty queue instead of [`POLL`] (tests: a
    /// long poll shows which wake-ups the senders give).
    pub fn with_poll(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The next batch, waiting at most `timeout`. Call from one thread only: that thread is
    /// the one senders wake.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Vec<Record>, RecvError> {
        let deadline = Instant::now() + timeout;
        self.writer.get_or_init(std::thread::current);
        let mut sleep = FIRST_POLL.min(self.poll);
        loop {
            match self.rx.try_recv() {
                Ok(b) => return Ok(b),
                Err(TryRecvError::Disconnected) => return Err(RecvError::Disconnected),
                Err(TryRecvError::Empty) => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(RecvError::Timeout);
            }
            std::thread::park_timeout(sleep.min(deadline - now));
            sleep = (sleep * 2).min(self.poll);
        }
    }

    /// The next batch; `None` once every sender is gone and the queue is empty.
    pub fn recv(&self) -> Option<Vec<Record>> {
        loop {
            match self.recv_timeout(Duration::from_secs(3600)) {
                Ok(b) => return Some(b),
                Err(RecvError::Disconnected) => return None,
                Err(RecvError::Timeout) => {}
            }
        }
    }

    /// Hand a written batch back for reuse. Its records are dropped here, on the writer's
    /// thread.
    pub fn give_back(&self, mut batch: Vec<Record>) {
        batch.clear();
        let _ = self.spare.try_send(batch);
    }

    /// Batches waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Protocol, Transaction};
    use crate::time::Timestamp;

    fn tx(i: i64) -> Record {
        let mut t = Transaction::new(Protocol::Http, Timestamp::default());
        t.status = Some(i);
        Record::Transaction(t)
    }

    fn status(r: &Record) -> i64 {
        match r {
            Record::Transaction(t) => t.status.unwrap(),
            Record::Flow(_) | Record::Anomaly(_) => unreachable!(),
        }
    }

    #[test]
    fn batches_arrive_in_order_and_come_back_for_reuse() {
        let (s, r) = record_queue(4, 8);
        let mut b = s.empty_batch();
        assert_eq!(b.capacity(), 8);
        b.push(tx(1));
        s.send(b).unwrap();
        let mut b = s.empty_batch();
        b.push(tx(2));
        s.send(b).unwrap();
        let got = r.recv_timeout(Duration::from_secs(1)).unwrap();
        assert_eq!(got.iter().map(status).collect::<Vec<_>>(), [1]);
        let ptr = got.as_ptr();
        r.give_back(got);
        // The same buffer, empty, is the next batch a sender fills.
        let again = s.empty_batch();
        assert!(again.is_empty());
        assert_eq!(again.as_ptr(), ptr);
        assert_eq!(status(&r.recv().unwrap()[0]), 2);
        assert_eq!(
            r.recv_timeout(Duration::from_millis(1)).unwrap_err(),
            RecvError::Timeout
        );
        drop(s);
        assert_eq!(
            r.recv_timeout(Duration::from_secs(1)).unwrap_err(),
            RecvError::Disconnected
        );
    }

    #[test]
    fn try_send_refuses_when_full_and_send_waits_for_the_writer() {
        let (s, r) = record_queue(2, 1);
        let r = r.with_poll(Duration::from_secs(60));
        s.try_send(vec![tx(1)]).unwrap();
        s.try_send(vec![tx(2)]).unwrap();
        assert_eq!(s.try_send(vec![tx(3)]).unwrap_err().len(), 1);
        std::thread::scope(|sc| {
            let writer = sc.spawn(|| {
                let mut seen = Vec::new();
                while let Some(b) = r.recv() {
                    seen.extend(b.iter().map(status));
                    r.give_back(b);
                }
                seen
            });
            // Blocks until the writer makes room; the last sender leaving ends its loop
            // at once, not at its next poll.
            s.send(vec![tx(4)]).unwrap();
            let start = Instant::now();
            drop(s);
            assert_eq!(writer.join().unwrap(), [1, 2, 4]);
            assert!(start.elapsed() < Duration::from_secs(5));
        });
    }

    #[test]
    fn a_sleeping_writer_is_woken_when_the_queue_fills_to_half() {
        let (s, r) = record_queue(4, 1);
        let r = r.with_poll(Duration::from_secs(60));
        std::thread::scope(|sc| {
            let writer = sc.spawn(|| {
                // A minute's poll: only a sender's wake-up ends the wait sooner.
                let t0 = Instant::now();
                let first = r.recv_timeout(Duration::from_secs(60)).unwrap();
                (first.len(), t0.elapsed())
            });
            // One batch (a quarter of the queue) does not wake the writer, the second
            // (half) does. Unparking before the writer parks is kept, so no race here.
            std::thread::sleep(Duration::from_millis(50));
            s.try_send(vec![tx(1)]).unwrap();
            s.try_send(vec![tx(2)]).unwrap();
            let (n, waited) = writer.join().unwrap();
            assert_eq!(n, 1);
            assert!(waited < Duration::from_secs(30), "{waited:?}");
        });
    }
}
