//! The live state the data plane reads, and its only writer path.
//!
//! Each listener has a [`ListenerSlot`]: an `ArcSwap<ListenerState>` that its
//! accept loop loads once per connection. A [`ListenerState`] is immutable
//! once published: its config, its backends (shared `Arc<Backend>`s, whose
//! counters and health outlive any one state) and the balancer built over
//! them. A change (admin API, later reload) builds a new state, reusing the
//! `Arc<Backend>` of backends that stay, and swaps it in: open connections
//! keep the state they started with, the next connection sees the new one
//! on every worker thread.
//!
//! The [`Registry`] lists every slot for readers outside the data plane
//! (admin API, metrics) and serialises writers, so two changes never race
//! and lose one another.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::backend::{Backend, HealthPolicy};
use crate::balance::{self, Balancer};
use crate::config::Listener;
use crate::runtime::stats::ListenerStats;

/// One listener's config, backends and balancer, immutable once published.
#[derive(Debug)]
pub struct ListenerState {
    /// The validated config of this listener. Its `backends` list is the
    /// config as loaded; `backends` below is what is live now.
    pub config: Listener,
    /// The live backends (the balancer's indexes point here).
    pub backends: Vec<Arc<Backend>>,
    /// The algorithm's state over `backends`.
    pub balancer: Box<dyn Balancer>,
}

impl ListenerState {
    /// Builds the state of a listener from its config, with new backends.
    pub fn new(config: Listener) -> ListenerState {
        let backends = config
            .backends
            .iter()
            .map(|spec| Arc::new(Backend::new(spec)))
            .collect();
        ListenerState::with_backends(config, backends)
    }

    /// Builds a state over existing backends (kept across a change, so their
    /// counters and health stay), with a fresh balancer over them. Every
    /// backend takes the listener's health policy and EWMA decay time.
    pub fn with_backends(config: Listener, backends: Vec<Arc<Backend>>) -> ListenerState {
        let policy = HealthPolicy::of(&config);
        for backend in &backends {
            backend.configure(policy, config.ewma_decay);
        }
        let balancer = balance::build(config.algorithm, &backends);
        ListenerState {
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

/// A listener's name, its current state, and what outlives its states.
#[derive(Debug)]
pub struct ListenerSlot {
    /// The listener's unique name.
    pub name: String,
    /// The address it really listens on (a configured port 0 resolved).
    pub listen: SocketAddr,
    /// Its counters (rejections, connection durations); they outlive the
    /// states published in `state`.
    pub stats: ListenerStats,
    /// The current state; loaded once per connection by the accept loop.
    pub state: ArcSwap<ListenerState>,
}

/// Every listener's slot, in config order; the one place changes go through.
#[derive(Debug, Default)]
pub struct Registry {
    /// The slots, in config order.
    listeners: ArcSwap<Vec<Arc<ListenerSlot>>>,
    /// Held by a writer for the whole read-modify-swap of a change (a std
    /// mutex: nothing awaits while holding it).
    writer: Mutex<()>,
}

impl Registry {
    /// A registry with no listeners.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// Adds a listener's slot (at start, or when a reload adds one), at its
    /// configured address.
    pub fn add(&self, state: ListenerState) -> Arc<ListenerSlot> {
        let listen = state.config.listen;
        self.add_bound(state, listen)
    }

    /// Adds a listener's slot that listens on `listen` (the bound socket's
    /// address, which differs from the config's for port 0).
    pub fn add_bound(&self, state: ListenerState, listen: SocketAddr) -> Arc<ListenerSlot> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = Arc::new(ListenerSlot {
            name: state.config.name.clone(),
            listen,
            stats: ListenerStats::default(),
            state: ArcSwap::from_pointee(state),
        });
        let mut list = Vec::clone(&self.listeners.load());
        list.push(Arc::clone(&slot));
        self.listeners.store(Arc::new(list));
        slot
    }

    /// Every listener's slot, in config order.
    pub fn listeners(&self) -> Arc<Vec<Arc<ListenerSlot>>> {
        self.listeners.load_full()
    }

    /// The slot of the listener named `name`.
    pub fn find(&self, name: &str) -> Option<Arc<ListenerSlot>> {
        self.listeners
            .load()
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }

    /// Replaces the state of listener `name` with what `change` builds from
    /// the current one. Writers are serialised, so `change` always sees the
    /// latest state. Returns `None` when there is no such listener.
    pub fn update<T, E>(
        &self,
        name: &str,
        change: impl FnOnce(&ListenerState) -> Result<(ListenerState, T), E>,
    ) -> Option<Result<T, E>> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = self.find(name)?;
        let current = slot.state.load();
        Some(change(&current).map(|(next, out)| {
            slot.state.store(Arc::new(next));
            out
        }))
    }
}
