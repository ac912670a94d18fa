//! A backend's counters: plain atomics (`Relaxed`: each is an independent
//! tally, nothing is ordered by them), and guards that keep the active and
//! connecting counts right whatever way a connection or attempt ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Backend;

/// Counters of one backend. Read by the balancer (load), the admin API and
/// metrics; written by the proxy, one `fetch_add` per event or per chunk
/// relayed.
#[derive(Debug, Default)]
pub struct Stats {
    /// Client connections open to this backend now.
    pub active: AtomicU64,
    /// Connect attempts to this backend in flight now.
    pub connecting: AtomicU64,
    /// Client connections ever relayed to this backend.
    pub total: AtomicU64,
    /// Bytes from clients to this backend.
    pub bytes_in: AtomicU64,
    /// Bytes from this backend to clients.
    pub bytes_out: AtomicU64,
    /// Connect attempts to this backend that failed or timed out.
    pub connect_failures: AtomicU64,
}

impl Stats {
    /// Records a failed connect attempt.
    pub fn record_connect_failure(&self) {
        self.connect_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The load load-aware algorithms compare: connections open plus
    /// connects in flight. Counting attempts too keeps a burst of new
    /// clients from all picking the same idle backend before any of their
    /// connects has finished.
    pub fn outstanding(&self) -> u64 {
        self.active
            .load(Ordering::Relaxed)
            .saturating_add(self.connecting.load(Ordering::Relaxed))
    }
}

/// Counts a connection as active for as long as it lives; created when a
/// backend connect succeeds, dropped when the relay ends (or is cancelled).
#[derive(Debug)]
pub struct ConnectionGuard {
    backend: Arc<Backend>,
}

impl ConnectionGuard {
    /// Counts one more active and total connection on `backend`.
    pub fn new(backend: Arc<Backend>) -> ConnectionGuard {
        backend.stats.active.fetch_add(1, Ordering::Relaxed);
        backend.stats.total.fetch_add(1, Ordering::Relaxed);
        backend.load_changed();
        ConnectionGuard { backend }
    }

    /// The backend this connection goes to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.backend.stats.active.fetch_sub(1, Ordering::Relaxed);
        self.backend.load_changed();
    }
}

/// Counts a connect attempt as in flight for as long as it lives, even
/// when the attempt is cancelled (client gone, drain).
#[derive(Debug)]
pub struct ConnectingGuard<'a> {
    backend: &'a Backend,
}

impl<'a> ConnectingGuard<'a> {
    /// Counts one more connect in flight on `backend`.
    pub fn new(backend: &'a Backend) -> ConnectingGuard<'a> {
        backend.stats.connecting.fetch_add(1, Ordering::Relaxed);
        backend.load_changed();
        ConnectingGuard { backend }
    }
}

impl Drop for ConnectingGuard<'_> {
    fn drop(&mut self) {
        self.backend
            .stats
            .connecting
            .fetch_sub(1, Ordering::Relaxed);
        self.backend.load_changed();
    }
}
