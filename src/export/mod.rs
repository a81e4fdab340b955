//! Where records go: the [`RecordSink`] seam between workers and outputs, a channel sink
//! that batches records to a writer thread, JSON lines, and the summary table.

pub mod jsonl;
pub mod summary;

use crossbeam_channel::{Sender, TrySendError};

use crate::flow::FlowRecord;
use crate::proto::Transaction;

/// One output record.
#[derive(Clone, Debug)]
pub enum Record {
    Flow(FlowRecord),
    Transaction(Transaction),
}

/// Receives the records a worker produces. Implementations must not block the packet
/// path for long (live capture) and must count what they drop.
pub trait RecordSink {
    fn flow(&mut self, rec: FlowRecord);
    fn transaction(&mut self, tx: Transaction);
    /// Push out anything batched.
    fn flush(&mut self) {}
}

/// Collects records in memory (tests, small tools).
#[derive(Default)]
pub struct VecSink {
    pub records: Vec<Record>,
}

impl RecordSink for VecSink {
    fn flow(&mut self, rec: FlowRecord) {
        self.records.push(Record::Flow(rec));
    }
    fn transaction(&mut self, tx: Transaction) {
        self.records.push(Record::Transaction(tx));
    }
}

/// Batches records and sends them to a writer thread over a bounded channel.
///
/// `blocking` (replay) waits for room: a file can be read as slowly as the writer writes.
/// Non-blocking (live) never waits: a full queue drops the batch and counts every record
/// in it, so the capture path is never held up by output.
pub struct ChannelSink {
    tx: Sender<Vec<Record>>,
    batch: Vec<Record>,
    batch_size: usize,
    blocking: bool,
    pub dropped: u64,
}

impl ChannelSink {
    pub fn new(tx: Sender<Vec<Record>>, batch_size: usize, blocking: bool) -> Self {
        ChannelSink {
            tx,
            batch: Vec::with_capacity(batch_size),
            batch_size,
            blocking,
            dropped: 0,
        }
    }

    fn push(&mut self, r: Record) {
        self.batch.push(r);
        if self.batch.len() >= self.batch_size {
            self.flush();
        }
    }
}

impl RecordSink for ChannelSink {
    fn flow(&mut self, rec: FlowRecord) {
        self.push(Record::Flow(rec));
    }

    fn transaction(&mut self, tx: Transaction) {
        self.push(Record::Transaction(tx));
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(self.batch_size));
        if self.blocking {
            if let Err(e) = self.tx.send(batch) {
                // The writer is gone (shutting down): nothing will read these.
                self.dropped += e.0.len() as u64;
            }
        } else if let Err(TrySendError::Full(b) | TrySendError::Disconnected(b)) =
            self.tx.try_send(batch)
        {
            self.dropped += b.len() as u64;
        }
    }
}
