//! podtap: watch every request between the pods of a node, from mirrored traffic.
//!
//! The pipeline (see docs/ARCHITECTURE.md): a capture [`capture::Source`] hands frames to a
//! [`worker::Worker`], which decodes them ([`packet`]), tracks flows and reassembles TCP
//! ([`flow`]), decodes application protocols ([`proto`]) and emits flow and transaction
//! records to an output ([`export`]).

pub mod events;
pub mod filter;
pub mod packet;
pub mod proto;
pub mod time;
