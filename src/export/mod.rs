//! Where records go: the [`RecordSink`] seam between workers and outputs, a channel sink
//! that batches records to a writer thread, JSON lines, the summary table, and the
//! exporter (statistics, OTLP metrics and spans, Prometheus, health endpoints).
//!
//! The daemon's use of the exporter:
//!
//! ```no_run
//! # use podtap::export::{Exporter, ExportSink, Health, VecSink};
//! # let cfg = podtap::config::Config::default();
//! let health = Health::new();
//! let exporter = Exporter::start(&cfg.export, health.clone()).unwrap();
//! // per worker i: wrap its sink (or none) so statistics and spans are taken from its records
//! let sink: ExportSink<VecSink> = ExportSink::new(Some(exporter.worker_handle(0)), None);
//! health.set_capturing(1);
//! // ... workers run; each calls sink.tick(&counters) on its clock tick ...
//! let totals = exporter.shutdown(std::time::Duration::from_secs(5));
//! ```

pub mod config;
pub mod exporter;
pub mod health;
pub mod http_server;
pub mod json;
pub mod jsonl;
pub mod otlp;
pub mod prometheus;
pub mod queue;
pub mod rotate;
pub mod summary;

pub use exporter::{ExportSink, ExportTotals, Exporter, MetricsFeed, WorkerExport};
pub use health::Health;

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("invalid export setting `{key}`: {message}")]
    Config { key: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the export thread: {0}")]
    Runtime(std::io::Error),
}

use crate::events::Counters;
use crate::flow::FlowRecord;
use crate::proto::Transaction;

/// One output record.
// Transactions are the common record and stay unboxed (a box each would be an allocation
// per transaction); the rare, larger flow record is the boxed one.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub enum Record {
    /// Boxed: a flow record is larger than a transaction, and every record in a batch is
    /// as large as the largest kind. Flows end far less often than transactions do.
    Flow(Box<FlowRecord>),
    Transaction(Transaction),
    /// An anomaly event (see [`crate::anomaly`]), written by the writer like the rest.
    Anomaly(Box<crate::anomaly::engine::Event>),
}

/// Receives the records a worker produces. Implementations must not block the packet
/// path for long (live capture) and must count what they drop.
pub trait RecordSink {
    fn flow(&mut self, rec: FlowRecord);
    fn transaction(&mut self, tx: Transaction);
    /// All of `txs`, in order, leaving it empty. A transaction is a few hundred bytes and
    /// every move copies it: sinks that keep records override this to move each one once.
    fn transactions(&mut self, txs: &mut Vec<Transaction>) {
        for tx in txs.drain(..) {
            self.transaction(tx);
        }
    }
    /// The flight recorder holds the records of `txs` back (see `crate::recorder`): what
    /// is taken from them at once (statistics) is taken now, the records come later
    /// through [`RecordSink::held`].
    fn observe(&mut self, _txs: &[Transaction]) {}
    /// Transactions the flight recorder held back, [`RecordSink::observe`]d already:
    /// their records (JSON lines, spans). Leaves `txs` empty.
    fn held(&mut self, txs: &mut Vec<Transaction>) {
        self.transactions(txs)
    }
    /// Does this sink use the records of plain requests? A sink that only counts says no:
    /// decoders may then count them into a [`crate::proto::Tally`] instead of building a
    /// record each, and the worker hands that over through [`RecordSink::tally`].
    fn wants_records(&self) -> bool {
        true
    }
    /// Requests counted without records (only for a sink that does not
    /// [`RecordSink::wants_records`]), of one flow to `server` with `pods`.
    fn tally(
        &mut self,
        tally: &crate::proto::Tally,
        _server: &crate::proto::Endpoint,
        _pods: Option<&std::sync::Arc<crate::k8s::FlowPods>>,
    ) {
        debug_assert!(
            tally.is_empty(),
            "a sink that wants no records counts tallies"
        );
    }
    /// An open flow's traffic since its last report (only if [`RecordSink::wants_progress`]).
    fn flow_progress(&mut self, _p: &crate::flow::FlowProgress) {}
    /// Does this sink use [`RecordSink::flow_progress`]? (Saves the worker the work.)
    fn wants_progress(&self) -> bool {
        false
    }
    /// Push out anything batched.
    fn flush(&mut self) {}
    /// The worker's periodic tick (packet clock), with its event counters so far.
    fn tick(&mut self, _counters: &Counters) {}
    /// The worker is done; `counters` are its final event counts. Called before `flush`.
    fn finish(&mut self, _counters: &Counters) {}
}

/// Collects records in memory (tests, small tools).
#[derive(Default)]
pub struct VecSink {
    pub records: Vec<Record>,
}

impl RecordSink for VecSink {
    fn flow(&mut self, rec: FlowRecord) {
        self.records.push(Record::Flow(Box::new(rec)));
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
    tx: queue::BatchSender,
    batch: Vec<Record>,
    blocking: bool,
    pub dropped: u64,
}

impl ChannelSink {
    pub fn new(tx: queue::BatchSender, blocking: bool) -> Self {
        ChannelSink {
            batch: tx.empty_batch(),
            tx,
            blocking,
            dropped: 0,
        }
    }

    #[inline]
    fn push(&mut self, r: Record) {
        self.batch.push(r);
        if self.batch.len() >= self.tx.batch_size() {
            self.flush();
        }
    }
}

impl RecordSink for ChannelSink {
    fn flow(&mut self, rec: FlowRecord) {
        self.push(Record::Flow(Box::new(rec)));
    }

    fn transaction(&mut self, tx: Transaction) {
        self.push(Record::Transaction(tx));
    }

    fn transactions(&mut self, txs: &mut Vec<Transaction>) {
        // Moved in one go and the batch checked once: a batch may run over its size by
        // the few transactions one segment completes.
        self.batch.extend(txs.drain(..).map(Record::Transaction));
        if self.batch.len() >= self.tx.batch_size() {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.batch.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut self.batch, self.tx.empty_batch());
        let sent = if self.blocking {
            self.tx.send(batch)
        } else {
            self.tx.try_send(batch)
        };
        // Full (live capture), or the writer is gone (shutting down): nothing will read
        // these.
        if let Err(b) = sent {
            self.dropped += b.len() as u64;
        }
    }
}
