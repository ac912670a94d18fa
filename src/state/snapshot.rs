//! One listener's [`Snapshot`]: its config, its live backends and the
//! balancer built over them, immutable once published.

use std::sync::Arc;

use crate::backend::{Backend, HealthPolicy};
use crate::balance::{self, Balancer};
use crate::config::Listener;

/// One listener's config, backends and balancer, immutable once published
/// in its slot. A connection loads the snapshot once and keeps it to its
/// end, so a change never reaches a connection already open.
#[derive(Debug)]
pub struct Snapshot {
    /// The validated config of this listener. Its `backends` list is the
    /// config as loaded; `backends` below is what is live now.
    pub config: Listener,
    /// The live backends (the balancer's indexes point here).
    pub backends: Vec<Arc<Backend>>,
    /// The algorithm's state over `backends`.
    pub balancer: Box<dyn Balancer>,
}

impl Snapshot {
    /// The snapshot of a listener from its config, with new backends.
    pub fn new(config: Listener) -> Snapshot {
        let backends = config
            .backends
            .iter()
            .map(|spec| Arc::new(Backend::new(spec)))
            .collect();
        Snapshot::with_backends(config, backends)
    }

    /// A snapshot over existing backends (kept across a change, so their
    /// counters and health stay), with a fresh balancer over them. Every
    /// backend takes the listener's health policy and EWMA decay time.
    pub fn with_backends(config: Listener, backends: Vec<Arc<Backend>>) -> Snapshot {
        let policy = HealthPolicy::of(&config);
        for backend in &backends {
            backend.configure(policy, config.ewma_decay);
        }
        let balancer = balance::build(config.algorithm, &backends);
        Snapshot {
            config,
            backends,
            balancer,
        }
    }

    /// The backend named `address` (as written in the config), if live.
    pub fn backend(&self, address: &str) -> Option<&Arc<Backend>> {
        self.backends.iter().find(|b| b.address == address)
    }
}
