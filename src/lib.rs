//! podtap: watch every request between the pods of a node, from mirrored traffic.
//!
//! The pipeline (see docs/ARCHITECTURE.md): a capture [`capture::Source`] hands frames to a
//! [`worker::Worker`], which decodes them ([`packet`]), tracks flows and reassembles TCP
//! ([`flow`]), decodes application protocols ([`proto`]) and emits flow and transaction
//! records to a [`export::RecordSink`].

pub mod anomaly;
pub mod bytes;
pub mod capture;
pub mod check;
pub mod config;
pub mod control;
pub mod events;
pub mod export;
pub mod filter;
pub mod flow;
pub mod k8s;
pub mod memory;
pub mod packet;
pub mod privilege;
pub mod probes;
pub mod proto;
pub mod recorder;
pub mod replay;
pub mod run;
pub mod stats;
pub mod synth;
#[cfg(test)]
mod test_rng;
pub mod time;
pub mod top;
pub mod worker;
