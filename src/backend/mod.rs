//! A backend: its address, weight, health, latency and counters, shared by
//! `Arc`.
//!
//! A `Backend` outlives any one config snapshot: the balancer reads its
//! health and load to pick, the proxy updates its counters and reports
//! connect results and latency, health checks change its state, and the
//! admin API reads all of it. Everything live is in three parts:
//!
//! - [`health`]: up, down or draining; the rise/fall counting that changes
//!   it, with the last error and last change; the slow-start ramp.
//! - [`ewma`]: the peak EWMA of connect latency (`power_of_two`).
//! - [`stats`]: counters (active, connecting, total, bytes, failures).

pub mod ewma;
pub mod health;
pub mod stats;

use std::net::SocketAddr;
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::config::BackendSpec;
use crate::logging::Throttle;
pub use ewma::PeakEwma;
pub use health::{BackendState, Health, HealthPolicy, Transition};
pub use stats::{ConnectingGuard, ConnectionGuard, Stats};

/// One backend of one listener; named by its address as written.
#[derive(Debug)]
pub struct Backend {
    /// The address as written in the config: the backend's name everywhere.
    pub address: String,
    /// The address connected to: `address` with its host resolved.
    pub resolved: SocketAddr,
    /// Relative share of traffic, at least 1: as configured, or as the
    /// admin API set it. An atomic so it can change on the shared backend
    /// (its counters and health stay); balancers read it when they are
    /// built, so a change is published by building a new snapshot
    /// (`state::change`). What an algorithm competes
    /// with is [`Backend::effective_weight`].
    weight: AtomicU32,
    /// Live counters.
    pub stats: Stats,
    /// BackendState, the evidence counted towards changing it, slow start.
    pub health: Health,
    /// Peak EWMA of connect latency.
    pub latency: PeakEwma,
    /// Keeps "connect failed" to one line per [`FAILURE_LOG_INTERVAL`]
    /// while the backend keeps failing.
    pub failure_log: Throttle,
    /// Who is told when its load changes (a `least_connections` balancer
    /// keeping loads in a tree), and as which index; empty for the other
    /// algorithms.
    load_watch: ArcSwapOption<LoadWatch>,
    /// http mode: idle keep-alive connections to it, for the next request.
    pub pool: crate::net::pool::Pool,
}

/// Something told when a backend's outstanding load changes.
pub trait LoadWatcher: Send + Sync + std::fmt::Debug {
    /// Backend `index` (of the set the watcher was built over) has a new
    /// load; read it from `backend.stats`.
    fn load_changed(&self, index: usize, backend: &Backend);
}

/// A backend's watcher and the backend's index in its set. Weak: a
/// balancer that is gone (an older snapshot's) is not kept alive by it.
#[derive(Debug)]
pub struct LoadWatch {
    /// The watcher.
    pub watcher: Weak<dyn LoadWatcher>,
    /// The backend's index in the watcher's set.
    pub index: usize,
}

/// How often a backend that keeps failing connects is logged: the first
/// failure at once, then one line per interval with the count left out.
pub const FAILURE_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Backend {
    /// A new backend, up at full weight, with zeroed counters and the
    /// default health policy (a listener's snapshot sets its own, see
    /// [`Backend::configure`]).
    pub fn new(spec: &BackendSpec) -> Backend {
        Backend {
            address: spec.address.clone(),
            resolved: spec.resolved,
            weight: AtomicU32::new(spec.weight),
            stats: Stats::default(),
            health: Health::default(),
            latency: PeakEwma::default(),
            failure_log: Throttle::new(FAILURE_LOG_INTERVAL),
            load_watch: ArcSwapOption::empty(),
            pool: crate::net::pool::Pool::default(),
        }
    }

    /// Makes `watch` the one told about this backend's load changes, or
    /// no one.
    pub fn watch_load(&self, watch: Option<LoadWatch>) {
        // Clearing what is already clear stores nothing: a store costs an
        // arc-swap debt walk, and every snapshot build of a set of 10,000
        // backends clears each one.
        if watch.is_none() && self.load_watch.load().is_none() {
            return;
        }
        self.load_watch.store(watch.map(Arc::new));
    }

    /// Tells the load watcher, if any, that the load changed (called by
    /// the guards that count connections and connects).
    pub fn load_changed(&self) {
        let watch = self.load_watch.load();
        if let Some(watch) = watch.as_ref() {
            if let Some(watcher) = watch.watcher.upgrade() {
                watcher.load_changed(watch.index, self);
            }
        }
    }

    /// The current weight (at least 1).
    pub fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Sets the weight. Callers publish a new snapshot afterwards so the
    /// balancer is rebuilt with it (`state::change`).
    pub fn set_weight(&self, weight: u32) {
        self.weight.store(weight, Ordering::Relaxed);
    }

    /// Applies a listener's health policy and EWMA decay time.
    pub fn configure(&self, policy: HealthPolicy, ewma_decay: Duration) {
        self.health.configure(policy);
        self.latency.set_decay(ewma_decay);
    }

    /// The current state.
    pub fn state(&self) -> BackendState {
        self.health.state()
    }

    /// Sets the state as an operator would (admin API, tests); returns the
    /// previous one. See [`Health::set_state`].
    pub fn set_state(&self, state: BackendState) -> BackendState {
        self.health.set_state(state, Instant::now())
    }

    /// Whether the balancer may hand this backend a new connection: it is
    /// up, or down by failed connects with its back-off over (a trial).
    pub fn is_available(&self) -> bool {
        self.health.is_available(Instant::now)
    }

    /// The weight the algorithm competes with now, in thousandths of a
    /// weight unit: `weight * 1000`, less during a slow-start ramp.
    pub fn effective_weight(&self) -> u64 {
        u64::from(self.weight()) * self.health.weight_permille(Instant::now)
    }
}
