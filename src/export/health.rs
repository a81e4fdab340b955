//! The daemon's health as `/healthz` and `/readyz` report it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A cheap, cloneable handle: the daemon sets how many interfaces capture, the exporter
/// sets whether it is failing. Ready = capturing on at least one interface and the
/// exporter not failing.
#[derive(Clone, Default)]
pub struct Health(Arc<Inner>);

#[derive(Default)]
struct Inner {
    capturing: AtomicUsize,
    exporter_failing: AtomicBool,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// Interfaces (or files) currently being captured.
    pub fn set_capturing(&self, interfaces: usize) {
        self.0.capturing.store(interfaces, Ordering::Relaxed);
    }

    pub fn capturing(&self) -> usize {
        self.0.capturing.load(Ordering::Relaxed)
    }

    pub fn set_exporter_failing(&self, failing: bool) {
        self.0.exporter_failing.store(failing, Ordering::Relaxed);
    }

    pub fn exporter_failing(&self) -> bool {
        self.0.exporter_failing.load(Ordering::Relaxed)
    }

    pub fn ready(&self) -> bool {
        self.capturing() > 0 && !self.exporter_failing()
    }
}
