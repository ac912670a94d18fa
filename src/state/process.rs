//! What the process as a whole is doing, for the admin API and probes:
//! whether it is serving or draining (`/ready`), and, with reload, which
//! config generation is in force.

use std::sync::atomic::{AtomicBool, Ordering};

/// The process's own state, shared by the runtime (its only writer) and
/// the admin server.
#[derive(Debug)]
pub struct Process {
    /// True while serving; false from the moment a shutdown is requested,
    /// so an outer balancer sees `/ready` fail before the listeners close.
    ready: AtomicBool,
}

impl Default for Process {
    fn default() -> Self {
        Process {
            ready: AtomicBool::new(true),
        }
    }
}

impl Process {
    /// Whether the process takes new traffic (`/ready` answers 200).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Marks the process as draining: `/ready` answers 503 from now on.
    pub fn start_draining(&self) {
        self.ready.store(false, Ordering::Relaxed);
    }
}
