//! OTLP: spans built from transactions, metrics from the stores, the resources they are
//! reported under, and the transport.

pub mod client;
pub mod metrics;
pub mod resource;
pub mod spans;
