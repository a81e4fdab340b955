//! OTLP: spans built from transactions, metrics from the stores, and the transport.

pub mod client;
pub mod metrics;
pub mod spans;
