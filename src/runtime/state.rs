//! The live state of one listener as the data plane reads it: its config,
//! its backends (shared `Arc<Backend>`s, whose counters and health outlive
//! any one snapshot) and the balancer built over them.
//!
//! Each accept loop holds an `ArcSwap<ListenerState>` and loads it once per
//! connection, so a later writer (reload, admin changes) can publish a new
//! state without stopping the loop or touching open connections.

use std::sync::Arc;

use crate::backend::Backend;
use crate::balance::{self, Balancer};
use crate::config::Listener;

/// One listener's config, backends and balancer, immutable once published.
#[derive(Debug)]
pub struct ListenerState {
    /// The validated config of this listener.
    pub config: Listener,
    /// The backends, in config order (the balancer's indexes point here).
    pub backends: Vec<Arc<Backend>>,
    /// The algorithm's state over `backends`.
    pub balancer: Box<dyn Balancer>,
}

impl ListenerState {
    /// Builds the state of a listener from its config, with new backends.
    pub fn new(config: Listener) -> ListenerState {
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|spec| Arc::new(Backend::new(spec)))
            .collect();
        let balancer = balance::build(config.algorithm, &backends);
        ListenerState {
            config,
            backends,
            balancer,
        }
    }
}
