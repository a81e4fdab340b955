//! OTLP: spans built from transactions, metrics from the stores, log records from anomaly
//! events, the resources they are
//! reported under, and the transport.

pub mod client;
pub mod logs;
pub mod metrics;
pub mod resource;
pub mod spans;
